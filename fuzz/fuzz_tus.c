/*
 * fuzz_tus.c — libFuzzer over the parsers of the tus headers a device sends (server/tus.c):
 * Upload-Metadata (comma-separated "key base64(value)" pairs), the decimal Upload-Length and
 * Upload-Offset, and Upload-Checksum ("<algorithm> <base64 digest>").
 *
 * The first input byte picks the parser, the rest is the header value:
 *   0  Upload-Metadata: the values of "kind" and "hash" (and of a key taken from the value itself)
 *      into buffers of several sizes; a value found must be NUL-terminated within its buffer and
 *      hold no NUL before that;
 *   1  Upload-Length / Upload-Offset: a value that parses is all digits, at most 18 of them, and
 *      equals strtoll's reading;
 *   2  Upload-Checksum: an algorithm found comes with exactly its digest length (20, 32 or 64).
 * Seeds: fuzz/corpus/fuzz_tus/.
 */
#include "srv_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void metadata(const char *v)
{
    static const size_t caps[] = {1, 2, 8, 16, 80, 300};
    const char *keys[3] = {"kind", "hash", NULL};
    char own[32] = "";
    size_t kl = strcspn(v, " ,");
    if (kl > 0 && kl < sizeof own) {
        memcpy(own, v, kl);
        own[kl] = '\0';
        keys[2] = own;
    }
    for (size_t k = 0; k < 3; k++) {
        if (!keys[k])
            continue;
        for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
            char *out = malloc(caps[c]);
            if (!out)
                return;
            if (srv_tus_metadata_get(v, keys[k], out, caps[c]) && strnlen(out, caps[c]) >= caps[c])
                abort(); /* not terminated inside the buffer */
            free(out);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > 8192)
        return 0;
    char *v = malloc(size);
    if (!v)
        return 0;
    memcpy(v, data + 1, size - 1);
    v[size - 1] = '\0';
    switch (data[0] % 3) {
    case 0:
        metadata(v);
        break;
    case 1: {
        int64_t n = -1;
        if (srv_tus_parse_u64(v, &n)) {
            size_t len = strlen(v);
            if (len == 0 || len > 18 || strspn(v, "0123456789") != len || n < 0 ||
                n != strtoll(v, NULL, 10))
                abort();
        }
        break;
    }
    default: {
        uint8_t digest[SRV_TUS_DIGEST_MAX];
        size_t len = 0;
        int alg = srv_tus_checksum_parse(v, digest, &len);
        static const size_t want[] = {0, 20, 32, 64};
        if (alg < 0 || alg > 3 || (alg && len != want[alg]))
            abort();
    }
    }
    free(v);
    return 0;
}

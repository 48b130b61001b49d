/*
 * fuzz_auth.c — libFuzzer over the parser of the Pd-Auth request header (srv_auth_parse,
 * server/http.c; PROTOCOL.md §4), the first thing the server reads of every authenticated request,
 * before it knows who is asking.
 *
 * The input is the header's value. Besides "no crash, no leak, no read past the end", an oracle:
 * a header that parses describes a valid device id, a time of at most 12 digits, a nonce whose hex
 * is the lowercase hex of its bytes; and writing the parsed fields back in the canonical form must
 * parse again to exactly the same fields.
 * Seeds: fuzz/corpus/fuzz_auth/ (real headers, and near misses of each rule).
 */
#include "srv_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096)
        return 0;
    char *h = malloc(size + 1);
    if (!h)
        return 0;
    memcpy(h, data, size);
    h[size] = '\0';
    srv_auth a;
    if (srv_auth_parse(h, &a)) {
        if (!srv_valid_id(a.device) || a.time < 0 || a.time > 999999999999LL)
            abort();
        char hex[2 * PD_SRV_NONCE_BYTES + 1];
        srv_hex(a.nonce, PD_SRV_NONCE_BYTES, hex);
        if (strcmp(hex, a.nonce_hex) != 0)
            abort();
        char sig[2 * PD_SIG_BYTES + 1], again[512];
        srv_hex(a.sig, PD_SIG_BYTES, sig);
        snprintf(again, sizeof again, "PD1 device=%s,time=%lld,nonce=%s,sig=%s", a.device,
                 (long long)a.time, a.nonce_hex, sig);
        srv_auth b;
        if (!srv_auth_parse(again, &b) || strcmp(a.device, b.device) != 0 || a.time != b.time ||
            memcmp(a.nonce, b.nonce, sizeof a.nonce) != 0 || memcmp(a.sig, b.sig, sizeof a.sig))
            abort();
    }
    free(h);
    return 0;
}

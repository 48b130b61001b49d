/*
 * cmd_photo.c — `pendata photo add HOUSEHOLD_ID --kind K FILE.jpg`: attach a JPEG to a household
 * (pd_photo_add); prints its BLAKE2b-256 hash. The file is read with a bound: a file over the
 * photo size limit is refused before it is read.
 */
#include "cli_visits.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *USAGE =
    "photo add HOUSEHOLD_ID --kind front|wall|floor|kitchen|toilet|kk|ktp|head|roof "
    "[--visit VISIT_ID] [--taken-at T] FILE.jpg [--json]";

static void print_help(void)
{
    printf("usage: pendata %s\n\n"
           "Attach a photo (a JPEG of at most %u bytes) to a household and, with --visit, to one\n"
           "of its visits. It is stored encrypted in the store under its BLAKE2b-256 hash, which\n"
           "is printed.\n",
           USAGE, PD_PHOTO_MAX_BYTES);
}

/* Read at most PD_PHOTO_MAX_BYTES + 1 bytes (one more tells "too big"). */
static uint8_t *read_bounded(const char *path, size_t *len, const char **why)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        *why = "cannot open the file";
        return NULL;
    }
    size_t cap = (size_t)PD_PHOTO_MAX_BYTES + 1;
    struct stat st;
    if (fstat(fileno(f), &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size < cap)
        cap = (size_t)st.st_size + 1;
    uint8_t *buf = malloc(cap);
    size_t n = 0;
    if (buf) {
        size_t r;
        while (n < cap && (r = fread(buf + n, 1, cap - n, f)) > 0)
            n += r;
        if (ferror(f)) {
            free(buf);
            buf = NULL;
            *why = "cannot read the file";
        }
    } else {
        *why = "out of memory";
    }
    fclose(f);
    *len = n;
    return buf;
}

int cmd_photo(cli *c, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        print_help();
        return CLI_OK;
    }
    if (argc < 3 || strcmp(argv[1], "add") != 0)
        return cli_usage(c, USAGE);
    const char *household = argv[2], *kind = NULL, *visit = NULL, *taken = NULL, *file = NULL;
    for (int i = 3; i < argc; i++) {
        const char *v = NULL;
        const char **dst = NULL;
        if (!strcmp(argv[i], "--json")) {
            c->json = true;
            continue;
        }
        if (cli_opt(argc, argv, &i, "--kind", &v))
            dst = &kind;
        else if (cli_opt(argc, argv, &i, "--visit", &v))
            dst = &visit;
        else if (cli_opt(argc, argv, &i, "--taken-at", &v))
            dst = &taken;
        else if (argv[i][0] != '-' && !file)
            dst = &file, v = argv[i];
        if (!dst || !v)
            return cli_usage(c, USAGE);
        *dst = v;
    }
    if (!kind || !file)
        return cli_usage(c, USAGE);
    int64_t taken_at = 0;
    if (taken && cli_parse_time(taken, &taken_at) != 0)
        return cli_fail(c, "--taken-at", "expected now, Unix milliseconds or YYYY-MM-DDTHH:MM:SSZ");
    size_t len = 0;
    const char *why = NULL;
    uint8_t *bytes = read_bounded(file, &len, &why);
    if (!bytes)
        return cli_fail(c, file, why);
    pd_store *store = cli_open_store(c);
    int ret = CLI_FAIL;
    if (store) {
        uint8_t hash[PD_HASH_BYTES];
        if (pd_photo_add(store, household, visit, kind, bytes, len, taken_at, hash) != PD_OK) {
            ret = cli_fail_store(c, file, store);
        } else {
            char hex[2 * PD_HASH_BYTES + 1];
            for (size_t i = 0; i < PD_HASH_BYTES; i++)
                snprintf(hex + 2 * i, 3, "%02x", hash[i]);
            if (c->json) {
                cJSON *o = cJSON_CreateObject();
                if (o) {
                    cJSON_AddStringToObject(o, "hash", hex);
                    cJSON_AddNumberToObject(o, "size", (double)len);
                }
                ret = cli_print_json(c, o);
            } else {
                printf("%s\n", hex);
                ret = CLI_OK;
            }
        }
        pd_store_close(store);
    }
    free(bytes);
    return ret;
}

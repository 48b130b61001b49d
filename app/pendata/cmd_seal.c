/*
 * cmd_seal.c — `pendata seal`: seal every pending change into the next signed batch of this
 * device's enumerator (see pd_batch_seal in sync/pd_sync.h). The batch waits in the outbox for
 * the supervisor's review (`pendata outbox`).
 */
#include "cli_batch.h"

#include <string.h>

static const char *USAGE = "seal [--json]";

static void print_help(void)
{
    printf("usage: pendata %s\n\n"
           "Seal every pending change (see `pendata ops --pending`) and the photos they name into\n"
           "the next batch: encoded, compressed, signed with the enumerator's key and chained to\n"
           "the previous batch. Exit 1 when there is nothing to seal.\n"
           "  --json   the result as one JSON object\n",
           USAGE);
}

int cmd_seal(cli *c, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        print_help();
        return CLI_OK;
    }
    if (argc > 1) {
        fprintf(stderr, "%s: seal: unexpected argument '%s'\n", c->prog, argv[1]);
        return cli_usage(c, USAGE);
    }
    pd_store *s = cli_open_store(c);
    if (!s)
        return CLI_FAIL;
    pd_seal_result r;
    int status = CLI_OK;
    if (pd_batch_seal(s, &r) != PD_OK) {
        status = cli_fail_store(c, "seal", s);
        goto out;
    }
    char hex[2 * PD_HASH_BYTES + 1];
    cli_hex(hex, r.hash, PD_HASH_BYTES);
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        if (j) {
            cJSON_AddNumberToObject(j, "seq", (double)r.seq);
            cJSON_AddStringToObject(j, "hash", hex);
            cJSON_AddNumberToObject(j, "ops", (double)r.op_count);
            cJSON_AddNumberToObject(j, "photos", (double)r.photo_count);
            cJSON_AddNumberToObject(j, "bytes", (double)r.bytes);
            cJSON_AddNumberToObject(j, "remaining", (double)r.remaining);
        }
        status = cli_print_json(c, j);
    } else {
        printf("batch %llu sealed: %zu ops, %zu photos, %zu bytes, hash %.16s\n",
               (unsigned long long)r.seq, r.op_count, r.photo_count, r.bytes, hex);
        if (r.remaining && !c->quiet)
            fprintf(stderr, "%s: %zu changes are still pending: run `pendata seal` again\n",
                    c->prog, r.remaining);
    }
out:
    pd_store_close(s);
    return status;
}

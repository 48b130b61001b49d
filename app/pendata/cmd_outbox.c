/*
 * cmd_outbox.c — `pendata outbox`: the enumerator's batches and their review state; a batch file
 * for the supervisor (export), the supervisor's decisions coming back (import), and which key
 * supervises this enumerator.
 */
#include "cli_batch.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "outbox [list] [--json] | outbox export SEQ -o FILE | outbox import FILE |\n"
    "       outbox supervisor PUBLIC_KEY [--name NAME] | outbox key";

static void print_help(void)
{
    printf(
        "usage: pendata %s\n\n"
        "  outbox [list]          this device's batches: seq, state (sealed, approved, voided,\n"
        "                         uploaded, acknowledged), time, ops, size, return reason\n"
        "  outbox export SEQ -o FILE\n"
        "                         write batch SEQ (and its review, if any) as a batch file for\n"
        "                         the supervisor (SD card, Bluetooth); FILE - is stdout\n"
        "  outbox import FILE     take in the supervisor's decisions from a batch file: an\n"
        "                         approval makes a batch uploadable; a return voids it and puts\n"
        "                         its changes back in the queue for the next seal\n"
        "  outbox supervisor PK   record the public key (64 hex) of this enumerator's\n"
        "                         supervisor: only that key's decisions are accepted\n"
        "  outbox key             print this enumerator's public key (for the supervisor)\n"
        "  --json                 machine-readable output (list)\n",
        USAGE);
}

typedef struct list_ctx {
    cJSON *array;
    size_t n;
} list_ctx;

static int list_one(void *ctx, const pd_outbox_entry *e)
{
    list_ctx *l = ctx;
    char hex[2 * PD_HASH_BYTES + 1], when[32];
    cli_hex(hex, e->hash, PD_HASH_BYTES);
    l->n++;
    if (l->array) {
        cJSON *j = cJSON_CreateObject();
        if (!j)
            return PD_ERR_NOMEM;
        cJSON_AddNumberToObject(j, "seq", (double)e->seq);
        cJSON_AddStringToObject(j, "state", e->state);
        cJSON_AddNumberToObject(j, "created_at", (double)e->created_at);
        cJSON_AddNumberToObject(j, "ops", (double)e->op_count);
        cJSON_AddNumberToObject(j, "bytes", (double)e->bytes);
        cJSON_AddStringToObject(j, "hash", hex);
        if (e->reason[0])
            cJSON_AddStringToObject(j, "reason", e->reason);
        else
            cJSON_AddNullToObject(j, "reason");
        cJSON_AddItemToArray(l->array, j);
        return 0;
    }
    if (l->n == 1)
        printf("%5s  %-9s %-16s %6s %7s  %-16s %s\n", "SEQ", "STATE", "CREATED (UTC)", "OPS",
               "BYTES", "HASH", "REASON");
    printf("%5llu  %-9s %-16s %6lld %7zu  %.16s %s\n", (unsigned long long)e->seq, e->state,
           cli_time_text(e->created_at, when, sizeof when), (long long)e->op_count, e->bytes, hex,
           e->reason);
    return 0;
}

static int do_list(cli *c, pd_store *s)
{
    list_ctx l = {0};
    if (c->json && !(l.array = cJSON_CreateArray()))
        return cli_fail(c, "outbox", "out of memory");
    if (pd_outbox_list(s, list_one, &l) != PD_OK) {
        cJSON_Delete(l.array);
        return cli_fail_store(c, "outbox", s);
    }
    if (c->json)
        return cli_print_json(c, l.array);
    if (l.n == 0 && !c->quiet)
        fprintf(stderr, "%s: the outbox is empty (nothing sealed yet)\n", c->prog);
    return CLI_OK;
}

static int do_export(cli *c, pd_store *s, int argc, char **argv)
{
    uint64_t seq = 0;
    const char *file = NULL;
    for (int i = 2; i < argc; i++) {
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 < argc)
            file = argv[++i];
        else if (!seq && cli_parse_u64(argv[i], &seq) == 0)
            continue;
        else
            return cli_usage(c, "outbox export SEQ -o FILE");
    }
    if (!seq || !file)
        return cli_usage(c, "outbox export SEQ -o FILE");
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (pd_outbox_export(s, seq, &bytes, &len) != PD_OK)
        return cli_fail_store(c, "outbox export", s);
    int rc = cli_write_all(c, file, bytes, len);
    free(bytes);
    if (rc)
        return CLI_FAIL;
    if (!c->quiet && strcmp(file, "-"))
        fprintf(stderr, "%s: batch %llu written to %s (%zu bytes)\n", c->prog,
                (unsigned long long)seq, file, len);
    return CLI_OK;
}

static int do_import(cli *c, pd_store *s, int argc, char **argv)
{
    if (argc != 3)
        return cli_usage(c, "outbox import FILE");
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (cli_read_all(c, argv[2], PD_BUNDLE_MAX_BYTES, &bytes, &len) != 0)
        return CLI_FAIL;
    pd_import_result r;
    int rc = pd_outbox_import(s, bytes, len, &r);
    free(bytes);
    if (rc != PD_OK)
        return cli_fail_store(c, "outbox import", s);
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        if (j) {
            cJSON_AddNumberToObject(j, "approved", (double)r.approved);
            cJSON_AddNumberToObject(j, "returned", (double)r.returned);
            cJSON_AddNumberToObject(j, "requeued_ops", (double)r.requeued);
            cJSON_AddNumberToObject(j, "already_known", (double)r.known);
        }
        return cli_print_json(c, j);
    }
    printf("%zu approved, %zu returned (%zu changes back in the queue), %zu already known\n",
           r.approved, r.returned, r.requeued, r.known);
    return CLI_OK;
}

static int do_supervisor(cli *c, pd_store *s, int argc, char **argv)
{
    const char *name = NULL;
    uint8_t sup[PD_PUBKEY_BYTES];
    if (argc < 3 || cli_parse_pk(argv[2], sup) != 0)
        return cli_usage(c, "outbox supervisor PUBLIC_KEY(64 hex) [--name NAME]");
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--name") && i + 1 < argc)
            name = argv[++i];
        else
            return cli_usage(c, "outbox supervisor PUBLIC_KEY(64 hex) [--name NAME]");
    }
    pd_keyring_entry me = {0}, e = {0};
    if (pd_keyring_self(s, "enumerator", me.pk) != PD_OK)
        return cli_fail_store(c, "outbox supervisor", s);
    /* keep what the keyring already says about this enumerator */
    if (pd_keyring_get(s, me.pk, &me) != PD_OK) {
        memset(&me, 0, sizeof me);
        pd_keyring_self(s, "enumerator", me.pk);
    }
    snprintf(me.role, sizeof me.role, "enumerator");
    me.has_supervisor = true;
    memcpy(me.supervisor_pk, sup, sizeof sup);
    memcpy(e.pk, sup, sizeof sup);
    snprintf(e.role, sizeof e.role, "supervisor");
    if (name)
        snprintf(e.name, sizeof e.name, "%s", name);
    if (pd_keyring_put(s, &e) != PD_OK || pd_keyring_put(s, &me) != PD_OK)
        return cli_fail_store(c, "outbox supervisor", s);
    if (!c->quiet)
        fprintf(stderr, "%s: decisions signed by %.16s... will be accepted\n", c->prog, argv[2]);
    return CLI_OK;
}

static int do_key(cli *c, pd_store *s)
{
    uint8_t pk[PD_PUBKEY_BYTES];
    char hex[2 * PD_PUBKEY_BYTES + 1];
    if (pd_keyring_self(s, "enumerator", pk) != PD_OK)
        return cli_fail_store(c, "outbox key", s);
    printf("%s\n", cli_hex(hex, pk, PD_PUBKEY_BYTES));
    return CLI_OK;
}

int cmd_outbox(cli *c, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        print_help();
        return CLI_OK;
    }
    const char *sub = argc > 1 ? argv[1] : "list";
    if (strcmp(sub, "list") && strcmp(sub, "export") && strcmp(sub, "import") &&
        strcmp(sub, "supervisor") && strcmp(sub, "key")) {
        fprintf(stderr, "%s: outbox: unknown subcommand '%s'\n", c->prog, sub);
        return cli_usage(c, USAGE);
    }
    if ((!strcmp(sub, "list") || !strcmp(sub, "key")) && argc > 2)
        return cli_usage(c, USAGE);
    pd_store *s = cli_open_store(c);
    if (!s)
        return CLI_FAIL;
    int status;
    if (!strcmp(sub, "list"))
        status = do_list(c, s);
    else if (!strcmp(sub, "export"))
        status = do_export(c, s, argc, argv);
    else if (!strcmp(sub, "import"))
        status = do_import(c, s, argc, argv);
    else if (!strcmp(sub, "supervisor"))
        status = do_supervisor(c, s, argc, argv);
    else
        status = do_key(c, s);
    pd_store_close(s);
    return status;
}

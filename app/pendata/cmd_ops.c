/*
 * cmd_ops.c — `pendata ops [--pending] [--json]`: the op log, oldest first (every change this
 * device made, field by field, as sync will send it).
 */
#include "cli_visits.h"

#include <stdlib.h>
#include <string.h>

static const char *USAGE = "ops [--pending] [--since SEQ] [--json]";

static void print_help(void)
{
    printf("usage: pendata %s\n\n"
           "List the op log: seq, clock, kind, entity, target, field, old -> new, base revision.\n"
           "  --pending   only ops not yet sealed into a batch\n"
           "  --since N   only ops after seq N\n"
           "  --json      one JSON array on stdout\n",
           USAGE);
}

typedef struct out {
    cJSON *array;
} out;

static int print_op(void *ctx, const pd_op *op)
{
    out *o = ctx;
    if (o->array) {
        cJSON *j = cJSON_CreateObject();
        if (!j)
            return PD_ERR_NOMEM;
        cJSON_AddItemToObject(j, "seq", cli_int_json(op->seq));
        cJSON_AddStringToObject(j, "device_id", op->device_id);
        cJSON_AddItemToObject(j, "hlc", cli_int_json(op->hlc));
        cJSON_AddStringToObject(j, "kind", op->kind);
        cJSON_AddStringToObject(j, "entity", op->entity);
        cJSON_AddStringToObject(j, "target", op->target);
        cJSON_AddStringToObject(j, "field", op->field);
        cJSON_AddItemToObject(j, "old", cli_value_json(&op->old_value));
        cJSON_AddItemToObject(j, "new", cli_value_json(&op->new_value));
        cJSON_AddItemToObject(j, "base_rev", cli_int_json(op->base_rev));
        cJSON_AddItemToArray(o->array, j);
        return 0;
    }
    char a[256], b[256];
    printf("%6lld  %lld  %-6s %-9s %-24s %-14s %s -> %s  (rev %lld)\n", (long long)op->seq,
           (long long)op->hlc, op->kind, op->entity, op->target, op->field,
           cli_value_text(&op->old_value, a, sizeof a), cli_value_text(&op->new_value, b, sizeof b),
           (long long)op->base_rev);
    return 0;
}

int cmd_ops(cli *c, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        print_help();
        return CLI_OK;
    }
    bool pending = false;
    long long since = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (!strcmp(argv[i], "--pending"))
            pending = true;
        else if (!strcmp(argv[i], "--json"))
            c->json = true;
        else if (cli_opt(argc, argv, &i, "--since", &v) && v)
            since = atoll(v);
        else
            return cli_usage(c, USAGE);
    }
    pd_store *store = cli_open_store(c);
    if (!store)
        return CLI_FAIL;
    out o = {.array = c->json ? cJSON_CreateArray() : NULL};
    int rc = pending ? pd_oplog_pending(store, print_op, &o)
                     : pd_oplog_since(store, since, print_op, &o);
    int ret = CLI_OK;
    if (rc != PD_OK) {
        ret = cli_fail_store(c, "ops", store);
        cJSON_Delete(o.array);
    } else if (o.array) {
        ret = cli_print_json(c, o.array);
    }
    pd_store_close(store);
    return ret;
}

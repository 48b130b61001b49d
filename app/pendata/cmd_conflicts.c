/*
 * cmd_conflicts.c — `pendata conflicts`: conflict reconciliation from the command line.
 *
 * On a korcam's device (an identity of role korcam) it works the server's queue of the
 * kecamatan (sync/pd_korcam.h, PROTOCOL.md §9): list with filters, show one conflict side by side
 * with the household's history and GPS points, resolve it, the summary per desa. On any other
 * device (and with --local) it lists what deltas brought: the decisions on conflicts of the
 * device's area and the households sent back for a revisit.
 */
#include "cli_batch.h"
#include "pd_korcam.h"

#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "conflicts [list] [--kind K] [--desa CODE] [--enumerator ID] [--age HOURS]\n"
    "       [--state open|resolved|all] [--limit N] [--offset N] [--local] [--json] |\n"
    "       conflicts show ID [--json] | conflicts summary [--json] |\n"
    "       conflicts resolve ID (--take server|device | --value V | --merge-into HOUSEHOLD |\n"
    "       --split MEMBER | --revisit) [--note TEXT] [--json] | conflicts tasks [--json]";

static void print_help(void)
{
    printf("usage: pendata %s\n\n"
           "On a korcam's device, the conflict queue of the kecamatan on the server:\n"
           "  list                 open conflicts, newest first: id, kind, desa, household,\n"
           "                       field, the enumerator of the device side, age, state\n"
           "      --kind K         field, create, duplicate_nik, double_visit,\n"
           "                       duplicate_household, moved_active\n"
           "      --desa CODE      one desa (or any code under the kecamatan)\n"
           "      --enumerator ID  changes by this enumerator (either side)\n"
           "      --age HOURS      only conflicts at least this old\n"
           "      --state S        open (default), resolved or all\n"
           "  show ID              both sides (base, server, device: value, who, device, when,\n"
           "                       batch), the household and its members, its history from the\n"
           "                       audit log and its GPS points\n"
           "  resolve ID           decide it (a second decision is refused):\n"
           "      --take server    the server's side stands (written again for every device)\n"
           "      --take device    the device's side stands\n"
           "      --value V        this value stands (\"\" clears an optional field)\n"
           "      --merge-into H   the conflict's household joins household H\n"
           "      --split MEMBER   the member leaves into a new household it heads\n"
           "      --revisit        the enumerator gets a task to visit the household again\n"
           "      --note TEXT      why (kept with the decision and sent to the devices)\n"
           "  summary              per desa: households, visited, pending, conflicts\n\n"
           "On any device (or with --local), what syncs brought:\n"
           "  list --local         decisions on conflicts of this device's area\n"
           "  tasks                households sent back for a revisit (done once visited again)\n",
           USAGE);
}

/* Text from the server or a delta, printed without control characters. */
static void put(const char *s, int width)
{
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p; p++, n++)
        putchar(*p < 0x20 || *p == 0x7f ? '?' : *p);
    for (; n < width; n++)
        putchar(' ');
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : 0;
}

/* A JSON value as text: strings as they are, others as JSON, null as "-". */
static void put_value(const cJSON *v, int width)
{
    char buf[512];
    if (!v || cJSON_IsNull(v)) {
        snprintf(buf, sizeof buf, "-");
    } else if (cJSON_IsString(v)) {
        snprintf(buf, sizeof buf, "%s", v->valuestring);
    } else {
        char *t = cJSON_PrintUnformatted(v);
        snprintf(buf, sizeof buf, "%s", t ? t : "?");
        free(t);
    }
    put(buf, width);
}

static void put_time(double ms, int width)
{
    char buf[32];
    put(ms > 0 ? cli_time_text((int64_t)ms, buf, sizeof buf) : "-", width);
}

static int fail_korcam(cli *c, const char *what, pd_store *store)
{
    return cli_fail_store(c, what, store);
}

static int print_server_json(cli *c, char *json)
{
    cJSON *j = cJSON_Parse(json);
    free(json);
    return cli_print_json(c, j);
}

/* The server's answer `json` (taken: freed here): as it is with --json, else parsed and shown by
 * `show`. `what` names the command in the message when the answer is not JSON. */
static int print_answer(cli *c, const char *what, char *json, void (*show)(const cJSON *))
{
    if (c->json)
        return print_server_json(c, json);
    cJSON *j = cJSON_Parse(json);
    free(json);
    if (!j)
        return cli_fail(c, what, "the answer is not JSON");
    show(j);
    cJSON_Delete(j);
    return CLI_OK;
}

/* ---- the server's queue ------------------------------------------------------------------------
 */

static void print_list(const cJSON *j)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, "conflicts"), *it;
    printf("%-6s %-20s %-14s %-34s %-16s %-12s %6s  %s\n", "ID", "KIND", "DESA", "HOUSEHOLD",
           "FIELD", "ENUMERATOR", "AGE", "STATE");
    cJSON_ArrayForEach(it, arr)
    {
        char hh[160], age[24], id[24];
        snprintf(id, sizeof id, "%.0f", jnum(it, "id"));
        snprintf(hh, sizeof hh, "%s %s", jstr(it, "household_id"), jstr(it, "head_name"));
        snprintf(age, sizeof age, "%.0fh", jnum(it, "age_hours"));
        const cJSON *dev = cJSON_GetObjectItemCaseSensitive(it, "device");
        put(id, 7);
        put(jstr(it, "kind"), 21);
        put(jstr(it, "desa"), 15);
        put(hh, 35);
        put(jstr(it, "field")[0] ? jstr(it, "field") : "-", 17);
        put(jstr(dev, "user"), 13);
        printf("%6s  ", age);
        put(jstr(it, "state"), 0);
        putchar('\n');
    }
    printf("%.0f of %.0f shown\n", (double)cJSON_GetArraySize(arr), jnum(j, "total"));
}

static void print_side_row(const char *label, const cJSON *c, const char *key, bool time)
{
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(c, "base");
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(c, "server");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "device");
    printf("  ");
    put(label, 10);
    if (!strcmp(key, "value"))
        put_value(cJSON_GetObjectItemCaseSensitive(b, "value"), 24);
    else if (time) {
        char rev[32];
        snprintf(rev, sizeof rev, "rev %.0f", jnum(b, "rev"));
        put(rev, 24);
    } else
        put("", 24);
    for (int i = 0; i < 2; i++) {
        const cJSON *side = i ? d : s;
        if (time)
            put_time(jnum(side, "time"), 30);
        else if (!strcmp(key, "who")) {
            char who[300];
            snprintf(who, sizeof who, "%s (%s)", jstr(side, "name"),
                     jstr(side, "user")[0] ? jstr(side, "user") : "?");
            put(jstr(side, "user")[0] || jstr(side, "device")[0] ? who : "prelist", 30);
        } else if (!strcmp(key, "batch")) {
            char b2[64];
            snprintf(b2, sizeof b2, "%s%.12s", i ? "#" : "", jstr(side, "batch"));
            if (i) {
                char n[24];
                snprintf(n, sizeof n, "#%.0f ", jnum(side, "batch_seq"));
                snprintf(b2, sizeof b2, "%s%.12s", n, jstr(side, "batch"));
            }
            put(b2, 30);
        } else
            put_value(cJSON_GetObjectItemCaseSensitive(side, key), 30);
    }
    putchar('\n');
}

static void print_household(const char *title, const cJSON *h)
{
    if (!h || cJSON_IsNull(h))
        return;
    printf("%s ", title);
    put(jstr(h, "id"), 0);
    printf(": head ");
    put(jstr(h, "head_name"), 0);
    printf(", desa %s, ", jstr(h, "desa"));
    put(jstr(h, "address"), 0);
    printf(", status %s\n", jstr(h, "status")[0] ? jstr(h, "status") : "not visited");
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(h, "members"))
    {
        printf("  %2.0f ", jnum(m, "member_no"));
        put(jstr(m, "id"), 22);
        put(jstr(m, "name"), 28);
        put(jstr(m, "nik")[0] ? jstr(m, "nik") : "-", 18);
        put(jstr(m, "status"), 0);
        putchar('\n');
    }
}

static void print_show(const cJSON *j)
{
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(j, "conflict");
    printf("conflict %.0f: %s on %s ", jnum(c, "id"), jstr(c, "kind"), jstr(c, "entity"));
    put(jstr(c, "target"), 0);
    if (jstr(c, "field")[0])
        printf(", field %s", jstr(c, "field"));
    printf(", desa %s\n", jstr(c, "desa"));
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(c, "resolution");
    if (cJSON_IsObject(res)) {
        printf("  resolved: %s -> ", jstr(res, "action"));
        put_value(cJSON_GetObjectItemCaseSensitive(res, "value"), 0);
        printf(" by ");
        put(jstr(res, "by_name"), 0);
        printf(" (%s) ", jstr(res, "by"));
        put_time(jnum(res, "at"), 0);
        if (jstr(res, "note")[0]) {
            printf(": ");
            put(jstr(res, "note"), 0);
        }
        putchar('\n');
    } else {
        printf("  open since ");
        put_time(jnum(c, "created_at"), 0);
        putchar('\n');
    }
    printf("  %-10s%-24s%-30s%s\n", "", "base", "server side", "device side");
    print_side_row("value", c, "value", false);
    print_side_row("who", c, "who", false);
    print_side_row("device", c, "device", false);
    print_side_row("when", c, "time", true);
    print_side_row("batch", c, "batch", false);
    if (jstr(c, "related")[0]) {
        printf("  other record: ");
        put(jstr(c, "related"), 0);
        putchar('\n');
    }
    const cJSON *acts = cJSON_GetObjectItemCaseSensitive(c, "actions"), *a;
    if (cJSON_GetArraySize(acts)) {
        printf("  decide with:");
        cJSON_ArrayForEach(a, acts)
        {
            if (!cJSON_IsString(a))
                continue;
            const char *s = a->valuestring;
            printf(" %s", !strcmp(s, "server")   ? "--take server"
                          : !strcmp(s, "device") ? "--take device"
                          : !strcmp(s, "value")  ? "--value V"
                          : !strcmp(s, "merge")  ? "--merge-into H"
                          : !strcmp(s, "split")  ? "--split MEMBER"
                                                 : "--revisit");
        }
        putchar('\n');
    }
    print_household("household", cJSON_GetObjectItemCaseSensitive(j, "household"));
    print_household("other household", cJSON_GetObjectItemCaseSensitive(j, "related_household"));
    const cJSON *p;
    printf("GPS points:\n");
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(j, "points"))
    {
        printf("  %-8s %-9s %11.6f %11.6f  ", jstr(p, "role"), jstr(p, "kind"), jnum(p, "lat"),
               jnum(p, "lon"));
        if (!strcmp(jstr(p, "kind"), "visit")) {
            printf("±%.0f m ", jnum(p, "accuracy_m"));
            put(jstr(p, "outcome"), 0);
            printf(" by ");
            put(jstr(p, "user")[0] ? jstr(p, "user") : jstr(p, "device"), 0);
            printf(" ");
            put_time(jnum(p, "at"), 0);
        } else {
            put(jstr(p, "household_id"), 0);
        }
        putchar('\n');
    }
    printf("history:\n");
    const cJSON *h;
    cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(j, "history"))
    {
        printf("  ");
        put_time(jnum(h, "at"), 17);
        put(jstr(h, "action"), 9);
        char who[80];
        snprintf(who, sizeof who, "%s%s%s", jstr(h, "actor"), jstr(h, "device")[0] ? "@" : "",
                 jstr(h, "device"));
        put(who, 24);
        put(jstr(h, "entity"), 10);
        put(jstr(h, "target"), 22);
        put(jstr(h, "field"), 16);
        put_value(cJSON_GetObjectItemCaseSensitive(h, "old"), 0);
        printf(" -> ");
        put_value(cJSON_GetObjectItemCaseSensitive(h, "new"), 0);
        putchar('\n');
    }
}

static void print_summary(const cJSON *j)
{
    printf("%-16s %-24s %10s %8s %8s %6s %8s %8s\n", "DESA", "NAME", "HOUSEHOLDS", "VISITED",
           "PENDING", "OPEN", "RESOLVED", "REVISITS");
    const cJSON *d;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(j, "desa"))
    {
        put(jstr(d, "desa"), 17);
        put(jstr(d, "name")[0] ? jstr(d, "name") : "-", 25);
        printf("%10.0f %8.0f %8.0f %6.0f %8.0f %8.0f\n", jnum(d, "households"), jnum(d, "visited"),
               jnum(d, "pending"), jnum(d, "conflicts_open"), jnum(d, "conflicts_resolved"),
               jnum(d, "tasks"));
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "total");
    printf("%-16s %-24s %10.0f %8.0f %8.0f %6.0f %8.0f %8.0f\n", "all", jstr(j, "area"),
           jnum(t, "households"), jnum(t, "visited"), jnum(t, "pending"), jnum(t, "conflicts_open"),
           jnum(t, "conflicts_resolved"), jnum(t, "tasks"));
}

/* ---- what this device received ----------------------------------------------------------------
 */

typedef struct local_ctx {
    cJSON *arr; /* --json */
    size_t n;
} local_ctx;

static int notice_cb(void *ctx, const pd_korcam_notice *n)
{
    local_ctx *l = ctx;
    l->n++;
    if (l->arr) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return PD_ERR_NOMEM;
        cJSON_AddNumberToObject(o, "id", (double)n->id);
        cJSON_AddStringToObject(o, "kind", n->kind);
        cJSON_AddStringToObject(o, "entity", n->entity);
        cJSON_AddStringToObject(o, "target", n->target);
        cJSON_AddStringToObject(o, "field", n->field);
        cJSON_AddStringToObject(o, "household_id", n->household_id);
        cJSON_AddStringToObject(o, "head_name", n->head_name);
        cJSON_AddStringToObject(o, "state", n->state);
        if (n->resolution[0])
            cJSON_AddStringToObject(o, "resolution", n->resolution);
        else
            cJSON_AddNullToObject(o, "resolution");
        cJSON_AddItemToObject(o, "resolved_value", cli_value_json(&n->resolved_value));
        cJSON_AddStringToObject(o, "resolved_by", n->resolved_by);
        cJSON_AddNumberToObject(o, "resolved_at", (double)n->resolved_at);
        cJSON_AddStringToObject(o, "note", n->note);
        cJSON_AddItemToArray(l->arr, o);
        return 0;
    }
    char val[300], when[32];
    printf("  #%lld ", (long long)n->id);
    put(n->kind, 20);
    put(n->entity, 10);
    put(n->target, 0);
    if (n->field[0])
        printf(".%s", n->field);
    if (n->head_name[0]) {
        printf(" (");
        put(n->head_name, 0);
        printf(")");
    }
    if (!strcmp(n->state, "resolved")) {
        printf(": %s -> ", n->resolution);
        put(cli_value_text(&n->resolved_value, val, sizeof val), 0);
        printf(" by ");
        put(n->resolved_by, 0);
        printf(" %s", cli_time_text(n->resolved_at, when, sizeof when));
        if (n->note[0]) {
            printf(" \"");
            put(n->note, 0);
            printf("\"");
        }
    } else {
        printf(": open, waiting for the korcam");
    }
    putchar('\n');
    return 0;
}

static int task_cb(void *ctx, const pd_korcam_task *t)
{
    local_ctx *l = ctx;
    l->n++;
    if (l->arr) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return PD_ERR_NOMEM;
        cJSON_AddNumberToObject(o, "id", (double)t->id);
        cJSON_AddStringToObject(o, "kind", t->kind);
        cJSON_AddStringToObject(o, "household_id", t->household_id);
        cJSON_AddStringToObject(o, "head_name", t->head_name);
        cJSON_AddStringToObject(o, "note", t->note);
        cJSON_AddStringToObject(o, "created_by", t->created_by);
        cJSON_AddNumberToObject(o, "created_at", (double)t->created_at);
        if (t->conflict_id)
            cJSON_AddNumberToObject(o, "conflict_id", (double)t->conflict_id);
        else
            cJSON_AddNullToObject(o, "conflict_id");
        cJSON_AddBoolToObject(o, "done", t->revisited_at != 0);
        cJSON_AddItemToArray(l->arr, o);
        return 0;
    }
    char when[32];
    printf("  task %lld: %s household ", (long long)t->id, t->kind);
    put(t->household_id, 0);
    if (t->head_name[0]) {
        printf(" (");
        put(t->head_name, 0);
        printf(")");
    }
    printf(" asked by ");
    put(t->created_by, 0);
    printf(" %s", cli_time_text(t->created_at, when, sizeof when));
    if (t->conflict_id)
        printf(" for conflict #%lld", (long long)t->conflict_id);
    if (t->note[0]) {
        printf(": \"");
        put(t->note, 0);
        printf("\"");
    }
    printf(t->revisited_at ? " [done: visited %s]\n" : " [to visit]\n",
           t->revisited_at ? cli_time_text(t->revisited_at, when, sizeof when) : "");
    return 0;
}

static int cmd_local(cli *c, pd_store *store, bool notices, bool tasks)
{
    local_ctx ln = {0}, lt = {0};
    cJSON *doc = NULL;
    if (c->json) {
        doc = cJSON_CreateObject();
        if (!doc)
            return cli_fail(c, "conflicts", "out of memory");
        if (notices)
            ln.arr = cJSON_AddArrayToObject(doc, "conflicts");
        if (tasks)
            lt.arr = cJSON_AddArrayToObject(doc, "tasks");
    }
    int rc = PD_OK;
    if (notices) {
        if (!c->json)
            printf("conflicts on this device's area, as the last sync brought them:\n");
        rc = pd_korcam_notices(store, notice_cb, &ln);
        if (rc == PD_OK && !c->json && !ln.n)
            printf("  none\n");
    }
    if (rc == PD_OK && tasks) {
        if (!c->json)
            printf("households to visit again:\n");
        rc = pd_korcam_tasks(store, task_cb, &lt);
        if (rc == PD_OK && !c->json && !lt.n)
            printf("  none\n");
    }
    if (rc != PD_OK) {
        cJSON_Delete(doc);
        return fail_korcam(c, "conflicts", store);
    }
    return c->json ? cli_print_json(c, doc) : CLI_OK;
}

/* ---- the command
 * --------------------------------------------------------------------------------- */

static bool is_korcam(pd_store *store)
{
    uint8_t pk[PD_PUBKEY_BYTES];
    return pd_keyring_self(store, "korcam", pk) == PD_OK ||
           pd_keyring_self(store, "admin", pk) == PD_OK;
}

static int parse_id(cli *c, const char *s, int64_t *id)
{
    uint64_t v;
    if (!s || cli_parse_u64(s, &v) != 0 || v == 0 || v > INT64_MAX) {
        fprintf(stderr, "%s: conflicts: '%s' is not a conflict id\n", c->prog, s ? s : "");
        return -1;
    }
    *id = (int64_t)v;
    return 0;
}

static int run_list(cli *c, pd_store *store, int argc, char **argv, int i)
{
    pd_korcam_filter f = {0};
    bool local = false;
    for (; i < argc; i++) {
        const char *v = NULL;
        uint64_t n;
        if (!strcmp(argv[i], "--json")) {
            c->json = true;
        } else if (!strcmp(argv[i], "--local")) {
            local = true;
        } else if (cli_opt(argc, argv, &i, "--kind", &v)) {
            if (!(f.kind = v))
                return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--desa", &v)) {
            if (!(f.desa = v))
                return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--enumerator", &v)) {
            if (!(f.enumerator = v))
                return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--state", &v)) {
            if (!(f.state = v))
                return CLI_USAGE;
        } else if (cli_opt(argc, argv, &i, "--age", &v)) {
            if (!v || cli_parse_u64(v, &n) != 0 || n > 87600)
                return cli_usage(c, USAGE);
            f.age_hours = (int64_t)n;
        } else if (cli_opt(argc, argv, &i, "--limit", &v)) {
            if (!v || cli_parse_u64(v, &n) != 0 || n == 0 || n > 500)
                return cli_usage(c, USAGE);
            f.limit = (int64_t)n;
        } else if (cli_opt(argc, argv, &i, "--offset", &v)) {
            if (!v || cli_parse_u64(v, &n) != 0 || n > 100000000)
                return cli_usage(c, USAGE);
            f.offset = (int64_t)n;
        } else {
            return cli_usage(c, USAGE);
        }
    }
    if (local || !is_korcam(store))
        return cmd_local(c, store, true, true);
    char *json = NULL;
    if (pd_korcam_list(store, &f, NULL, &json) != PD_OK)
        return fail_korcam(c, "conflicts list", store);
    return print_answer(c, "conflicts list", json, print_list);
}

static int run_show(cli *c, pd_store *store, int argc, char **argv)
{
    int64_t id;
    if (argc < 3 || parse_id(c, argv[2], &id) != 0)
        return cli_usage(c, USAGE);
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            c->json = true;
        else
            return cli_usage(c, USAGE);
    }
    char *json = NULL;
    if (pd_korcam_show(store, id, NULL, &json) != PD_OK)
        return fail_korcam(c, "conflicts show", store);
    return print_answer(c, "conflicts show", json, print_show);
}

static void print_resolution(const cJSON *j)
{
    const cJSON *cf = cJSON_GetObjectItemCaseSensitive(j, "conflict");
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(cf, "resolution");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(cf, "id");
    printf("conflict %.0f resolved: %s -> ", cJSON_IsNumber(id) ? id->valuedouble : 0.0,
           jstr(res, "action"));
    put_value(cJSON_GetObjectItemCaseSensitive(res, "value"), 0);
    const cJSON *task = cJSON_GetObjectItemCaseSensitive(j, "task");
    if (cJSON_IsNumber(task))
        printf(" (task %.0f for the enumerator)", task->valuedouble);
    putchar('\n');
}

static int run_resolve(cli *c, pd_store *store, int argc, char **argv)
{
    int64_t id;
    if (argc < 3 || parse_id(c, argv[2], &id) != 0)
        return cli_usage(c, USAGE);
    pd_korcam_resolution r = {0};
    int chosen = 0;
    for (int i = 3; i < argc; i++) {
        const char *v = NULL;
        if (!strcmp(argv[i], "--json")) {
            c->json = true;
        } else if (!strcmp(argv[i], "--revisit")) {
            r.action = "revisit";
            chosen++;
        } else if (cli_opt(argc, argv, &i, "--take", &v)) {
            if (!v || (strcmp(v, "server") != 0 && strcmp(v, "device") != 0)) {
                fprintf(stderr, "%s: conflicts resolve: --take server or --take device\n", c->prog);
                return CLI_USAGE;
            }
            r.action = v;
            chosen++;
        } else if (cli_opt(argc, argv, &i, "--value", &v)) {
            if (!v)
                return CLI_USAGE;
            r.action = "value";
            r.value = *v ? v : NULL;
            chosen++;
        } else if (cli_opt(argc, argv, &i, "--merge-into", &v)) {
            if (!v)
                return CLI_USAGE;
            r.action = "merge";
            r.into = v;
            chosen++;
        } else if (cli_opt(argc, argv, &i, "--split", &v)) {
            if (!v)
                return CLI_USAGE;
            r.action = "split";
            r.member = v;
            chosen++;
        } else if (cli_opt(argc, argv, &i, "--note", &v)) {
            if (!v)
                return CLI_USAGE;
            r.note = v;
        } else {
            return cli_usage(c, USAGE);
        }
    }
    if (chosen != 1) {
        fprintf(stderr,
                "%s: conflicts resolve: give exactly one of --take, --value, "
                "--merge-into, --split, --revisit\n",
                c->prog);
        return CLI_USAGE;
    }
    char *json = NULL;
    if (pd_korcam_resolve(store, id, &r, NULL, &json) != PD_OK)
        return fail_korcam(c, "conflicts resolve", store);
    return print_answer(c, "conflicts resolve", json, print_resolution);
}

static int run_summary(cli *c, pd_store *store, int argc, char **argv)
{
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            c->json = true;
        else
            return cli_usage(c, USAGE);
    }
    char *json = NULL;
    if (pd_korcam_summary(store, NULL, &json) != PD_OK)
        return fail_korcam(c, "conflicts summary", store);
    return print_answer(c, "conflicts summary", json, print_summary);
}

int cmd_conflicts(cli *c, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        print_help();
        return CLI_OK;
    }
    const char *sub = argc >= 2 && argv[1][0] != '-' ? argv[1] : "list";
    bool known = !strcmp(sub, "list") || !strcmp(sub, "show") || !strcmp(sub, "resolve") ||
                 !strcmp(sub, "summary") || !strcmp(sub, "tasks");
    if (!known)
        return cli_usage(c, USAGE);
    pd_store *store = cli_open_store(c);
    if (!store)
        return CLI_FAIL;
    int rc;
    if (!strcmp(sub, "list")) {
        rc = run_list(c, store, argc, argv, argc >= 2 && argv[1][0] != '-' ? 2 : 1);
    } else if (!strcmp(sub, "tasks")) {
        rc = CLI_OK;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--json"))
                c->json = true;
            else
                rc = cli_usage(c, USAGE);
        }
        if (rc == CLI_OK)
            rc = cmd_local(c, store, false, true);
    } else if (!is_korcam(store)) {
        rc = cli_fail(c, "conflicts",
                      "only a korcam's device works the conflict queue (this "
                      "device has no korcam identity); `pendata conflicts` lists what syncs "
                      "brought");
    } else if (!strcmp(sub, "show")) {
        rc = run_show(c, store, argc, argv);
    } else if (!strcmp(sub, "resolve")) {
        rc = run_resolve(c, store, argc, argv);
    } else {
        rc = run_summary(c, store, argc, argv);
    }
    pd_store_close(store);
    return rc;
}

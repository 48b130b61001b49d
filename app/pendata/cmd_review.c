/*
 * cmd_review.c — `pendata review`: the supervisor's side. Batches come from this device's own
 * enumerator (a review on the enumerator's phone) or from batch files (`review import`); the
 * supervisor lists them, reads each change before → after with its warnings, looks at the map,
 * and approves or returns them. The decision goes back to the enumerator in a batch file
 * (`review export`, then `pendata outbox import` on the enumerator's device).
 */
#include "cli_batch.h"

#include <stdlib.h>
#include <string.h>

#define COUNT_OF(a) (sizeof(a) / sizeof((a)[0]))

static const char *USAGE =
    "review list [--all] [--json] | review show N [--json] | review map N --svg FILE |\n"
    "       review approve N | review return N --reason TEXT | review import FILE |\n"
    "       review export N -o FILE | review enumerator add PUBLIC_KEY [--name NAME]\n"
    "       [--area CODES] [--person ID] | review key";

static void print_help(void)
{
    printf(
        "usage: pendata %s\n\n"
        "  review list [--all]    batches waiting for review (--all: every batch held), with\n"
        "                         author, area, visits per outcome and warnings; N is the first\n"
        "                         column\n"
        "  review show N          every visit and change of batch N, before -> after, with the\n"
        "                         visit warnings and the batch-level ones (too fast, too far,\n"
        "                         outside the area, duplicated NIK, household visited twice)\n"
        "  review map N --svg FILE\n"
        "                         an SVG map of the visits over the area outline\n"
        "  review approve N       countersign batch N\n"
        "  review return N --reason TEXT\n"
        "                         return batch N to the enumerator with a signed reason\n"
        "  review import FILE     take in a batch file from an enumerator\n"
        "  review export N -o FILE\n"
        "                         batch N with the decision, for the enumerator (or onward)\n"
        "  review enumerator add PK [--name NAME] [--area CODES] [--person ID]\n"
        "                         an enumerator this supervisor reviews (64-hex public key)\n"
        "  review key             print this supervisor's public key\n",
        USAGE);
}

/* ---- helpers ----------------------------------------------------------------------------------
 */

static int parse_id(cli *c, const char *s, int64_t *id)
{
    uint64_t v;
    if (!s || cli_parse_u64(s, &v) != 0 || v > (uint64_t)INT64_MAX) {
        fprintf(stderr, "%s: review: '%s' is not a batch number (see pendata review list)\n",
                c->prog, s ? s : "");
        return -1;
    }
    *id = (int64_t)v;
    return 0;
}

static const char *author_text(const pd_keyring_entry *a, char *buf, size_t cap)
{
    char hex[17];
    cli_hex(hex, a->pk, 8);
    if (a->name[0])
        snprintf(buf, cap, "%s (%s...)", a->name, hex);
    else
        snprintf(buf, cap, "%s...", hex);
    return buf;
}

typedef struct counts {
    size_t visits;
    char text[256];
} counts;

/* "found 12, not_found 3" over the visit ops of b. */
static void outcome_counts(const pd_batch *b, counts *out, cJSON *json)
{
    static const char *const outcomes[] = {"found",        "found_new_head", "moved_within",
                                           "moved_out",    "joined_other",   "not_found",
                                           "all_deceased", "refused",        "new_household"};
    size_t n, per[COUNT_OF(outcomes) + 1] = {0};
    const pd_op *ops = pd_batch_ops(b, &n);
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ops[i].kind, "visit") != 0)
            continue;
        out->visits++;
        char *s = ops[i].new_value.type == PD_VAL_TEXT
                      ? strndup((const char *)ops[i].new_value.p, ops[i].new_value.len)
                      : NULL;
        cJSON *j = s ? cJSON_Parse(s) : NULL;
        const cJSON *o = j ? cJSON_GetObjectItemCaseSensitive(j, "outcome") : NULL;
        size_t k = 0;
        while (k < COUNT_OF(outcomes) &&
               !(cJSON_IsString(o) && !strcmp(o->valuestring, outcomes[k])))
            k++;
        per[k]++;
        cJSON_Delete(j);
        free(s);
    }
    size_t used = 0;
    for (size_t k = 0; k <= COUNT_OF(outcomes); k++) {
        if (!per[k])
            continue;
        const char *name = k < COUNT_OF(outcomes) ? outcomes[k] : "other";
        if (json)
            cJSON_AddNumberToObject(json, name, (double)per[k]);
        int w = snprintf(out->text + used, sizeof out->text - used, "%s%s %zu", used ? ", " : "",
                         name, per[k]);
        if (w > 0 && (size_t)w < sizeof out->text - used)
            used += (size_t)w;
    }
}

/* ---- list -------------------------------------------------------------------------------------
 */

typedef struct list_ctx {
    cli *c;
    pd_store *s;
    cJSON *array;
    size_t n;
} list_ctx;

static int list_one(void *ctx, const pd_outbox_entry *e)
{
    list_ctx *l = ctx;
    pd_batch *b = NULL;
    pd_keyring_entry a;
    pd_review_warning *w = NULL;
    size_t nw = 0;
    int rc = pd_review_load(l->s, e->id, &b, &a);
    if (rc == PD_OK)
        rc = pd_review_warnings(l->s, b, &w, &nw);
    if (rc != PD_OK) {
        pd_batch_free(b);
        return rc;
    }
    const pd_batch_header *h = pd_batch_header_get(b);
    char who[PD_KEYRING_NAME_MAX + 32], when[32], hex[2 * PD_PUBKEY_BYTES + 1];
    counts oc;
    l->n++;
    if (l->array) {
        cJSON *j = cJSON_CreateObject(), *per = cJSON_CreateObject();
        if (!j || !per) {
            cJSON_Delete(j);
            cJSON_Delete(per);
            pd_batch_free(b);
            free(w);
            return PD_ERR_NOMEM;
        }
        outcome_counts(b, &oc, per);
        cJSON_AddNumberToObject(j, "id", (double)e->id);
        cJSON_AddStringToObject(j, "author_pk", cli_hex(hex, e->author_pk, PD_PUBKEY_BYTES));
        cJSON_AddStringToObject(j, "author_name", a.name);
        cJSON_AddNumberToObject(j, "seq", (double)e->seq);
        cJSON_AddStringToObject(j, "area", h->area);
        cJSON_AddStringToObject(j, "state", e->state);
        cJSON_AddNumberToObject(j, "created_at", (double)e->created_at);
        cJSON_AddNumberToObject(j, "ops", (double)e->op_count);
        cJSON_AddNumberToObject(j, "visits", (double)oc.visits);
        cJSON_AddItemToObject(j, "outcomes", per);
        cJSON_AddNumberToObject(j, "warnings", (double)nw);
        cJSON_AddItemToArray(l->array, j);
    } else {
        outcome_counts(b, &oc, NULL);
        if (l->n == 1)
            printf("%4s  %-28s %4s  %-14s %-9s %-16s %6s %4s  %s\n", "N", "AUTHOR", "SEQ", "AREA",
                   "STATE", "CREATED (UTC)", "VISITS", "WARN", "OUTCOMES");
        printf("%4lld  %-28.28s %4llu  %-14s %-9s %-16s %6zu %4zu  %s\n", (long long)e->id,
               author_text(&a, who, sizeof who), (unsigned long long)e->seq, h->area, e->state,
               cli_time_text(e->created_at, when, sizeof when), oc.visits, nw, oc.text);
    }
    free(w);
    pd_batch_free(b);
    return 0;
}

static int do_list(cli *c, pd_store *s, int argc, char **argv)
{
    bool all = false;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--all"))
            all = true;
        else
            return cli_usage(c, "review list [--all] [--json]");
    }
    list_ctx l = {.c = c, .s = s};
    if (c->json && !(l.array = cJSON_CreateArray()))
        return cli_fail(c, "review", "out of memory");
    if (pd_review_list(s, all, list_one, &l) != PD_OK) {
        cJSON_Delete(l.array);
        return cli_fail_store(c, "review list", s);
    }
    if (c->json)
        return cli_print_json(c, l.array);
    if (l.n == 0 && !c->quiet)
        fprintf(stderr, "%s: nothing to review%s\n", c->prog,
                all ? "" : " (--all lists every batch)");
    return CLI_OK;
}

/* ---- show -------------------------------------------------------------------------------------
 */

static cJSON *text_json(const pd_value *v)
{
    if (v->type != PD_VAL_TEXT)
        return NULL;
    char *s = strndup((const char *)v->p, v->len);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    if (j && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        j = NULL;
    }
    return j;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(it) ? it->valuestring : "";
}

static double jnum(const cJSON *o, const char *k, double dflt)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(it) ? it->valuedouble : dflt;
}

/* Members of a record object as "k=v, k=v" (strings and numbers, nulls left out). */
static void fields_text(const cJSON *o, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (const cJSON *it = o ? o->child : NULL; it; it = it->next) {
        char val[96];
        if (cJSON_IsString(it) && it->valuestring[0])
            snprintf(val, sizeof val, "%s", it->valuestring);
        else if (cJSON_IsNumber(it))
            snprintf(val, sizeof val, "%.10g", it->valuedouble);
        else
            continue;
        int w = snprintf(buf + used, cap - used, "%s%s=%s", used ? ", " : "", it->string, val);
        if (w < 0 || (size_t)w >= cap - used) {
            if (cap > 4)
                strcpy(buf + cap - 4, "...");
            return;
        }
        used += (size_t)w;
    }
}

static void print_op(const pd_op *op)
{
    char a[160], b[160], when[32], line[400];
    cJSON *j = text_json(&op->new_value);
    if (!strcmp(op->kind, "visit") && j) {
        double lat = jnum(j, "lat", 1000), lon = jnum(j, "lon", 1000);
        char gps[96] = "no GPS fix";
        if (lat < 1000 && lon < 1000)
            snprintf(gps, sizeof gps, "GPS %.6f,%.6f ±%.0f m", lat, lon, jnum(j, "accuracy_m", 0));
        printf("  visit     %s  household %s: %s at %s UTC, %s\n", op->target,
               jstr(j, "household_id"), jstr(j, "outcome"),
               cli_time_text((int64_t)jnum(j, "visited_at", 0), when, sizeof when), gps);
        if (jstr(j, "notes")[0])
            printf("            notes: %s\n", jstr(j, "notes"));
    } else if (!strcmp(op->kind, "create")) {
        fields_text(j, line, sizeof line);
        printf("  new %-6s %s: %s\n", op->entity, op->target,
               j ? line : cli_value_text(&op->new_value, b, sizeof b));
    } else if (!strcmp(op->kind, "photo") && j) {
        printf("  photo     %s photo of household %s, %.0f kB (%.16s...)\n", jstr(j, "kind"),
               jstr(j, "household_id"), jnum(j, "size", 0) / 1024, op->target);
    } else if (!strcmp(op->kind, "end")) {
        printf("  end       %s %s: %s → %s\n", op->entity, op->target,
               cli_value_text(&op->old_value, a, sizeof a),
               cli_value_text(&op->new_value, b, sizeof b));
    } else {
        printf("  %-9s %s %s %s: %s → %s\n", op->kind, op->entity, op->target, op->field,
               cli_value_text(&op->old_value, a, sizeof a),
               cli_value_text(&op->new_value, b, sizeof b));
    }
    cJSON_Delete(j);
}

static int do_show(cli *c, pd_store *s, int argc, char **argv)
{
    int64_t id;
    if (argc != 3 || parse_id(c, argv[2], &id) != 0)
        return cli_usage(c, "review show N [--json]");
    pd_batch *b = NULL;
    pd_keyring_entry a;
    pd_review_warning *w = NULL;
    size_t nw = 0, n, np;
    if (pd_review_load(s, id, &b, &a) != PD_OK || pd_review_warnings(s, b, &w, &nw) != PD_OK) {
        pd_batch_free(b);
        return cli_fail_store(c, "review show", s);
    }
    const pd_batch_header *h = pd_batch_header_get(b);
    const pd_op *ops = pd_batch_ops(b, &n);
    pd_batch_photos(b, &np);
    char who[PD_KEYRING_NAME_MAX + 32], when[32], hex[2 * PD_HASH_BYTES + 1],
        prev[2 * PD_HASH_BYTES + 1];
    cli_hex(hex, pd_batch_hash(b), PD_HASH_BYTES);
    cli_hex(prev, h->prev_hash, PD_HASH_BYTES);
    int status = CLI_OK;
    if (c->json) {
        cJSON *j = cJSON_CreateObject(), *arr = cJSON_CreateArray(), *wa = cJSON_CreateArray();
        char pkhex[2 * PD_PUBKEY_BYTES + 1];
        if (j && arr && wa) {
            cJSON_AddNumberToObject(j, "id", (double)id);
            cJSON_AddNumberToObject(j, "seq", (double)h->seq);
            cJSON_AddStringToObject(j, "author_pk", cli_hex(pkhex, h->author_pk, PD_PUBKEY_BYTES));
            cJSON_AddStringToObject(j, "author_name", a.name);
            cJSON_AddStringToObject(j, "device_id", h->device_id);
            cJSON_AddStringToObject(j, "area", h->area);
            cJSON_AddNumberToObject(j, "created_at", (double)h->created_at);
            cJSON_AddStringToObject(j, "hash", hex);
            cJSON_AddStringToObject(j, "prev_hash", prev);
            cJSON_AddBoolToObject(j, "amends", (h->flags & PD_BATCH_FLAG_AMENDS) != 0);
            cJSON_AddNumberToObject(j, "photos", (double)np);
            for (size_t i = 0; i < n; i++) {
                cJSON *o = cJSON_CreateObject();
                if (!o)
                    break;
                cJSON_AddNumberToObject(o, "seq", (double)ops[i].seq);
                cJSON_AddStringToObject(o, "kind", ops[i].kind);
                cJSON_AddStringToObject(o, "entity", ops[i].entity);
                cJSON_AddStringToObject(o, "target", ops[i].target);
                cJSON_AddStringToObject(o, "field", ops[i].field);
                cJSON *ov = text_json(&ops[i].old_value), *nv = text_json(&ops[i].new_value);
                cJSON_AddItemToObject(o, "old", ov ? ov : cli_value_json(&ops[i].old_value));
                cJSON_AddItemToObject(o, "new", nv ? nv : cli_value_json(&ops[i].new_value));
                cJSON_AddNumberToObject(o, "base_rev", (double)ops[i].base_rev);
                cJSON_AddItemToArray(arr, o);
            }
            for (size_t k = 0; k < nw; k++) {
                cJSON *o = cJSON_CreateObject();
                if (!o)
                    break;
                cJSON_AddStringToObject(o, "code", w[k].code);
                cJSON_AddStringToObject(o, "text", w[k].text);
                cJSON_AddNumberToObject(o, "op", (double)w[k].op);
                cJSON_AddBoolToObject(o, "batch_level", w[k].kind != PD_REVIEW_WARN_VISIT);
                cJSON_AddItemToArray(wa, o);
            }
            cJSON_AddItemToObject(j, "ops", arr);
            cJSON_AddItemToObject(j, "warnings", wa);
            status = cli_print_json(c, j);
        } else {
            cJSON_Delete(j);
            cJSON_Delete(arr);
            cJSON_Delete(wa);
            status = cli_fail(c, "review show", "out of memory");
        }
        goto out;
    }
    counts oc;
    outcome_counts(b, &oc, NULL);
    printf("Batch %llu (N %lld) by %s\n", (unsigned long long)h->seq, (long long)id,
           author_text(&a, who, sizeof who));
    printf("  device %s, area %s, sealed %s UTC%s\n", h->device_id, h->area[0] ? h->area : "(none)",
           cli_time_text(h->created_at, when, sizeof when),
           (h->flags & PD_BATCH_FLAG_AMENDS) ? ", re-seals a returned batch" : "");
    printf("  %zu changes, %zu visits (%s), %zu photos, %zu warnings\n", n, oc.visits,
           oc.visits ? oc.text : "none", np, nw);
    printf("  hash %s\n  prev %s\n\n", hex, prev);
    for (size_t i = 0; i < n; i++) {
        print_op(&ops[i]);
        for (size_t k = 0; k < nw; k++)
            if (w[k].op == i)
                printf("            ! %s: %s\n", w[k].code, w[k].text);
    }
    if (nw) {
        printf("\nWarnings (%zu)\n", nw);
        for (size_t k = 0; k < nw; k++)
            printf("  ! %-22s %s\n", w[k].code, w[k].text);
    }
out:
    free(w);
    pd_batch_free(b);
    return status;
}

/* ---- map, decisions, files, keys ------------------------------------------------------------- */

static int do_map(cli *c, pd_store *s, int argc, char **argv)
{
    int64_t id;
    const char *file = NULL;
    if (argc != 5 || parse_id(c, argv[2], &id) != 0 || strcmp(argv[3], "--svg") != 0)
        return cli_usage(c, "review map N --svg FILE");
    file = argv[4];
    pd_batch *b = NULL;
    char *svg = NULL;
    size_t len = 0;
    if (pd_review_load(s, id, &b, NULL) != PD_OK || pd_review_map_svg(s, b, &svg, &len) != PD_OK) {
        pd_batch_free(b);
        return cli_fail_store(c, "review map", s);
    }
    int rc = cli_write_all(c, file, svg, len);
    free(svg);
    pd_batch_free(b);
    if (rc)
        return CLI_FAIL;
    if (!c->quiet && strcmp(file, "-"))
        fprintf(stderr, "%s: map of batch %lld written to %s\n", c->prog, (long long)id, file);
    return CLI_OK;
}

static int do_decide(cli *c, pd_store *s, int argc, char **argv, bool approve)
{
    int64_t id;
    const char *reason = NULL;
    if (argc < 3 || parse_id(c, argv[2], &id) != 0)
        return cli_usage(c, approve ? "review approve N" : "review return N --reason TEXT");
    for (int i = 3; i < argc; i++) {
        if (!approve && !strcmp(argv[i], "--reason") && i + 1 < argc)
            reason = argv[++i];
        else
            return cli_usage(c, approve ? "review approve N" : "review return N --reason TEXT");
    }
    if (!approve && !reason)
        return cli_usage(c, "review return N --reason TEXT");
    int rc = approve ? pd_review_approve(s, id) : pd_review_return(s, id, reason);
    if (rc != PD_OK)
        return cli_fail_store(c, approve ? "review approve" : "review return", s);
    if (c->json)
        printf("{\"id\":%lld,\"decision\":\"%s\"}\n", (long long)id,
               approve ? "approved" : "returned");
    else
        printf("batch %lld %s\n", (long long)id, approve ? "approved" : "returned");
    if (!c->quiet)
        fprintf(stderr,
                "%s: give the decision to the enumerator: pendata review export %lld -o FILE\n",
                c->prog, (long long)id);
    return CLI_OK;
}

static int do_import(cli *c, pd_store *s, int argc, char **argv)
{
    if (argc != 3)
        return cli_usage(c, "review import FILE");
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (cli_read_all(c, argv[2], PD_BUNDLE_MAX_BYTES, &bytes, &len) != 0)
        return CLI_FAIL;
    pd_import_result r;
    int rc = pd_review_import(s, bytes, len, &r);
    free(bytes);
    if (rc != PD_OK)
        return cli_fail_store(c, "review import", s);
    if (c->json)
        printf("{\"new\":%zu,\"already_held\":%zu}\n", r.batches, r.known);
    else
        printf("%zu new batches to review, %zu already held\n", r.batches, r.known);
    return CLI_OK;
}

static int do_export(cli *c, pd_store *s, int argc, char **argv)
{
    int64_t id = 0;
    const char *file = NULL;
    for (int i = 2; i < argc; i++) {
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 < argc)
            file = argv[++i];
        else if (!id && parse_id(c, argv[i], &id) == 0)
            continue;
        else
            return cli_usage(c, "review export N -o FILE");
    }
    if (!id || !file)
        return cli_usage(c, "review export N -o FILE");
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (pd_review_export(s, id, &bytes, &len) != PD_OK)
        return cli_fail_store(c, "review export", s);
    int rc = cli_write_all(c, file, bytes, len);
    free(bytes);
    return rc ? CLI_FAIL : CLI_OK;
}

static int do_enumerator(cli *c, pd_store *s, int argc, char **argv)
{
    static const char *u = "review enumerator add PUBLIC_KEY(64 hex) [--name NAME] "
                           "[--area CODES] [--person ID]";
    pd_keyring_entry e = {0};
    if (argc < 4 || strcmp(argv[2], "add") != 0 || cli_parse_pk(argv[3], e.pk) != 0)
        return cli_usage(c, u);
    for (int i = 4; i < argc; i += 2) { /* every option takes a value */
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            return cli_usage(c, u);
        if (!strcmp(argv[i], "--name") && strlen(v) < sizeof e.name)
            snprintf(e.name, sizeof e.name, "%s", v);
        else if (!strcmp(argv[i], "--area") && strlen(v) < sizeof e.area)
            snprintf(e.area, sizeof e.area, "%s", v);
        else if (!strcmp(argv[i], "--person") && strlen(v) < sizeof e.person_id)
            snprintf(e.person_id, sizeof e.person_id, "%s", v);
        else
            return cli_usage(c, u);
    }
    snprintf(e.role, sizeof e.role, "enumerator");
    e.has_supervisor = true;
    if (pd_keyring_self(s, "supervisor", e.supervisor_pk) != PD_OK ||
        pd_keyring_put(s, &e) != PD_OK)
        return cli_fail_store(c, "review enumerator add", s);
    if (!c->quiet)
        fprintf(stderr, "%s: enumerator %.16s... added: its batches can be reviewed here\n",
                c->prog, argv[3]);
    return CLI_OK;
}

static int do_key(cli *c, pd_store *s)
{
    uint8_t pk[PD_PUBKEY_BYTES];
    char hex[2 * PD_PUBKEY_BYTES + 1];
    if (pd_keyring_self(s, "supervisor", pk) != PD_OK)
        return cli_fail_store(c, "review key", s);
    printf("%s\n", cli_hex(hex, pk, PD_PUBKEY_BYTES));
    return CLI_OK;
}

int cmd_review(cli *c, int argc, char **argv)
{
    if (cli_wants_help(argc, argv) || argc < 2) {
        if (argc < 2) {
            cli_usage(c, USAGE);
            return CLI_USAGE;
        }
        print_help();
        return CLI_OK;
    }
    static const char *const subs[] = {"list",   "show",   "map",        "approve", "return",
                                       "import", "export", "enumerator", "key"};
    size_t k = 0;
    while (k < COUNT_OF(subs) && strcmp(argv[1], subs[k]) != 0)
        k++;
    if (k == COUNT_OF(subs)) {
        fprintf(stderr, "%s: review: unknown subcommand '%s'\n", c->prog, argv[1]);
        return cli_usage(c, USAGE);
    }
    pd_store *s = cli_open_store(c);
    if (!s)
        return CLI_FAIL;
    int status;
    switch (k) {
    case 0:
        status = do_list(c, s, argc, argv);
        break;
    case 1:
        status = do_show(c, s, argc, argv);
        break;
    case 2:
        status = do_map(c, s, argc, argv);
        break;
    case 3:
        status = do_decide(c, s, argc, argv, true);
        break;
    case 4:
        status = do_decide(c, s, argc, argv, false);
        break;
    case 5:
        status = do_import(c, s, argc, argv);
        break;
    case 6:
        status = do_export(c, s, argc, argv);
        break;
    case 7:
        status = do_enumerator(c, s, argc, argv);
        break;
    default:
        status = argc == 2 ? do_key(c, s) : cli_usage(c, "review key");
    }
    pd_store_close(s);
    return status;
}

/*
 * korcam.c — korcam reconciliation: the conflicts a merge cannot settle, decided by the
 * coordinator of a kecamatan (PROTOCOL.md §9).
 *
 * What lives here:
 *   - merge-time checks apply.c calls (srv_korcam_check_nik, srv_korcam_after_op): one NIK in two
 *     households or twice in one (duplicate_nik), the head of a proposed household who heads
 *     another one, or a proposal with another household's KK or a similar head name within 50 m
 *     (duplicate_household), a member reported deceased or moved out who is active elsewhere
 *     (moved_active). A conflict is queued once: the same kind, target, other record and value
 *     again (a later batch, a replay) finds the first;
 *   - the queue API: list (filters kind, desa, enumerator, age, state), show (both sides, the
 *     household's history from the audit log, its GPS points and the desa outline), resolve:
 *     take the server's side, the device's, a value, merge two households, split a member out,
 *     or send it back for a revisit (a task the enumerator's device receives in its delta). A
 *     resolution is ONE storage transaction: every record it changes takes a new revision (so
 *     devices pull it), each change has an audit row (who, when, which conflict, why), and the
 *     conflict row is marked with the decision — a second decision is refused (409);
 *   - who may: a korcam (or admin) of the conflict's area. A conflict outside the asker's area is
 *     answered like one that does not exist (404), so a korcam of another kecamatan learns
 *     nothing;
 *   - the web page at /korcam/: its embedded files (server/web/), login with a password the
 *     operator set (Argon2id, crypto_pwhash_str), a random session token in an HttpOnly,
 *     SameSite=Strict cookie (kept on the server only as its hash), a CSRF token every POST must
 *     echo, failed logins rate-limited per user id, a strict Content-Security-Policy, JSON only
 *     (the page builds its DOM with textContent: nothing from the data is ever parsed as HTML);
 *   - the delta's share: resolutions on the area's conflicts and the revisit tasks.
 *
 * Storage goes through the korcam block of storage.h; a backend that lacks it answers 501.
 */
#include "korcam.h"

#include "fields.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NEAR_M 50.0      /* "a similar head name within 50 m" */
#define NAME_SIMILAR 0.8 /* 1 - edit distance / length, at least */
#define LIST_LIMIT_DEFAULT 100
#define LIST_LIMIT_MAX 500
#define HISTORY_MAX 200
#define SESSION_TTL_MS (8LL * 3600 * 1000)
#define LOGIN_WINDOW_MS (15LL * 60 * 1000)
#define LOGIN_FAILURES_MAX 5 /* per user id within the window */
#define PASSWORD_MIN 10
#define PASSWORD_MAX 1024
#define COOKIE_NAME "pd_korcam"
#define TOKEN_BYTES 32
#define MAX_HOLDERS 16 /* conflicts one NIK check may queue */
#define MAX_ROWS 100   /* members of one household (member_no <= 99) */

static const char CSP[] = "default-src 'none'; script-src 'self'; style-src 'self'; "
                          "img-src 'self'; connect-src 'self'; form-action 'self'; "
                          "frame-ancestors 'none'; base-uri 'none'";

/* ---- small helpers ----------------------------------------------------------------------------
 */

static bool has_korcam_ops(const pd_storage *st)
{
    const pd_storage_ops *o = st->ops;
    return o->conflicts_list && o->conflict_get && o->conflict_relate && o->conflict_exists &&
           o->conflict_resolve && o->nik_members && o->kk_households && o->points_in_box &&
           o->household_points && o->household_audit && o->record_get && o->household_members &&
           o->task_add && o->tasks_since && o->password_set && o->password_get && o->session_add &&
           o->session_get && o->session_delete && o->sessions_purge && o->login_failure_add &&
           o->login_failures && o->login_failures_clear && o->desa_summary;
}

static pd_value text_value(const char *s)
{
    pd_value v = {
        .type = s ? PD_VAL_TEXT : PD_VAL_NULL, .p = (const uint8_t *)s, .len = s ? strlen(s) : 0};
    return v;
}

static bool is_placeholder_nik(const char *nik)
{
    return strlen(nik) == 16 && !strncmp(nik, "99999999999999", 14);
}

/* A TEXT value as a NUL-terminated copy into buf; false if not text or too long. */
static bool value_text(const pd_value *v, char *buf, size_t cap)
{
    if (!v || v->type != PD_VAL_TEXT || v->len >= cap || (v->len && memchr(v->p, 0, v->len)))
        return false;
    if (v->len)
        memcpy(buf, v->p, v->len);
    buf[v->len] = '\0';
    return true;
}

static bool values_equal(const pd_value *a, const pd_value *b)
{
    if (a->type == PD_VAL_INT && b->type == PD_VAL_REAL)
        return (double)a->i == b->r;
    if (a->type == PD_VAL_REAL && b->type == PD_VAL_INT)
        return a->r == (double)b->i;
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case PD_VAL_NULL:
        return true;
    case PD_VAL_INT:
        return a->i == b->i;
    case PD_VAL_REAL:
        return a->r == b->r;
    default:
        return a->len == b->len && (a->len == 0 || !memcmp(a->p, b->p, a->len));
    }
}

/* An owned copy of a value. */
static int value_copy(pd_srv_value *dst, const pd_value *src)
{
    memset(dst, 0, sizeof *dst);
    dst->v = *src;
    if (src->type == PD_VAL_TEXT || src->type == PD_VAL_BLOB) {
        dst->buf = malloc(src->len + 1);
        if (!dst->buf)
            return PD_ERR_NOMEM;
        if (src->len)
            memcpy(dst->buf, src->p, src->len);
        dst->buf[src->len] = '\0';
        dst->v.p = dst->buf;
    }
    return PD_OK;
}

static cJSON *json_value(const pd_value *v)
{
    switch (v->type) {
    case PD_VAL_INT:
        return cJSON_CreateNumber((double)v->i);
    case PD_VAL_REAL:
        return cJSON_CreateNumber(v->r);
    case PD_VAL_TEXT: {
        char *s = malloc(v->len + 1);
        if (!s)
            return NULL;
        if (v->len)
            memcpy(s, v->p, v->len);
        s[v->len] = '\0';
        cJSON *o = cJSON_CreateString(s);
        free(s);
        return o;
    }
    case PD_VAL_BLOB: {
        char *s = malloc(2 * v->len + 1);
        if (!s)
            return NULL;
        srv_hex(v->p, v->len, s);
        cJSON *o = cJSON_CreateString(s);
        free(s);
        return o;
    }
    default:
        return cJSON_CreateNull();
    }
}

static void add_value(cJSON *o, const char *name, const pd_value *v)
{
    cJSON *j = json_value(v);
    if (j)
        cJSON_AddItemToObject(o, name, j);
}

static void add_hex(cJSON *o, const char *name, const uint8_t *p, size_t n)
{
    if (!p) {
        cJSON_AddNullToObject(o, name);
        return;
    }
    char hex[2 * 64 + 1];
    srv_hex(p, n, hex);
    cJSON_AddStringToObject(o, name, hex);
}

/* Great-circle distance in metres. */
static double distance_m(double lat1, double lon1, double lat2, double lon2)
{
    const double r = 6371008.8, d2r = M_PI / 180.0;
    double dlat = (lat2 - lat1) * d2r, dlon = (lon2 - lon1) * d2r;
    double a = sin(dlat / 2) * sin(dlat / 2) +
               cos(lat1 * d2r) * cos(lat2 * d2r) * sin(dlon / 2) * sin(dlon / 2);
    return 2 * r * atan2(sqrt(a), sqrt(1 - a));
}

/* A name reduced to lower-case ASCII letters and single spaces ("Hj. Siti  Aminah" -> "hj siti
 * aminah"); other bytes (accents, punctuation) separate words. */
static void name_norm(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    bool space = true;
    for (const unsigned char *p = (const unsigned char *)in; *p && n + 1 < cap; p++) {
        int c = *p < 0x80 ? tolower(*p) : ' ';
        if (c >= 'a' && c <= 'z') {
            out[n++] = (char)c;
            space = false;
        } else if (!space) {
            out[n++] = ' ';
            space = true;
        }
    }
    while (n && out[n - 1] == ' ')
        n--;
    out[n] = '\0';
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t prev[128], cur[128];
    if (la > 127 || lb > 127)
        return la > lb ? la : lb;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (lb + 1) * sizeof *prev);
    }
    return prev[lb];
}

/* Every word of 3+ letters of a appears in b. */
static bool words_within(const char *a, const char *b)
{
    char wa[128];
    snprintf(wa, sizeof wa, "%s", a);
    size_t words = 0;
    for (char *save = NULL, *w = strtok_r(wa, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
        if (strlen(w) < 3)
            continue;
        words++;
        const char *p = b;
        bool found = false;
        size_t wl = strlen(w);
        while ((p = strstr(p, w)) != NULL) {
            if ((p == b || p[-1] == ' ') && (p[wl] == '\0' || p[wl] == ' ')) {
                found = true;
                break;
            }
            p += wl;
        }
        if (!found)
            return false;
    }
    return words > 0;
}

/* Do two head names name the same person, allowing for spelling ("Muhamad" / "Muhammad") and
 * a dropped or added name ("Siti Aminah" / "Siti Aminah binti Umar")? */
static bool names_similar(const char *x, const char *y)
{
    char a[128], b[128];
    name_norm(x, a, sizeof a);
    name_norm(y, b, sizeof b);
    size_t la = strlen(a), lb = strlen(b);
    if (!la || !lb)
        return false;
    if (!strcmp(a, b))
        return true;
    size_t longest = la > lb ? la : lb;
    if (1.0 - (double)edit_distance(a, b) / (double)longest >= NAME_SIMILAR)
        return true;
    return la <= lb ? words_within(a, b) : words_within(b, a);
}

/* ---- a copied record row ------------------------------------------------------------------------
 */

typedef struct ko_row {
    pd_entity e;
    size_t n;
    const char *name[48];
    pd_srv_value v[48];
} ko_row;

static void row_clear(ko_row *r)
{
    for (size_t i = 0; i < r->n; i++)
        pd_srv_value_clear(&r->v[i]);
    memset(r, 0, sizeof *r);
}

static int row_fill(ko_row *r, pd_entity e, const pd_srv_field *f, size_t n)
{
    memset(r, 0, sizeof *r);
    r->e = e;
    for (size_t i = 0; i < n && i < PD_ARRAY_LEN(r->v); i++) {
        r->name[i] = f[i].name; /* static column names */
        if (value_copy(&r->v[i], &f[i].value) != PD_OK) {
            r->n = i;
            row_clear(r);
            return PD_ERR_NOMEM;
        }
        r->n = i + 1;
    }
    return PD_OK;
}

static int row_cb(void *ctx, pd_entity e, const pd_srv_field *f, size_t n)
{
    return row_fill(ctx, e, f, n) == PD_OK ? 0 : PD_ERR_NOMEM;
}

static const pd_value *row_get(const ko_row *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->name[i], name))
            return &r->v[i].v;
    return NULL;
}

static const char *row_text(const ko_row *r, const char *name)
{
    const pd_value *v = row_get(r, name);
    return v && v->type == PD_VAL_TEXT ? (const char *)v->p : NULL;
}

static int64_t row_int(const ko_row *r, const char *name, int64_t def)
{
    const pd_value *v = row_get(r, name);
    if (!v || v->type == PD_VAL_NULL)
        return def;
    return v->type == PD_VAL_INT ? v->i : (int64_t)v->r;
}

static bool row_real(const ko_row *r, const char *name, double *out)
{
    const pd_value *v = row_get(r, name);
    if (!v || (v->type != PD_VAL_REAL && v->type != PD_VAL_INT))
        return false;
    *out = v->type == PD_VAL_REAL ? v->r : (double)v->i;
    return true;
}

static cJSON *row_json(const ko_row *r)
{
    cJSON *o = cJSON_CreateObject();
    size_t ncols;
    const pd_column *cols = pd_entity_columns(r->e, &ncols);
    for (size_t i = 0; o && i < r->n; i++) {
        if (cols && i < ncols && !cols[i].device)
            continue;
        add_value(o, r->name[i], &r->v[i].v);
    }
    return o;
}

/* A household's members, copied. */
typedef struct ko_rows {
    ko_row *v;
    size_t n;
} ko_rows;

static void rows_clear(ko_rows *l)
{
    for (size_t i = 0; i < l->n; i++)
        row_clear(&l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int rows_cb(void *ctx, pd_entity e, const pd_srv_field *f, size_t n)
{
    ko_rows *l = ctx;
    if (l->n >= MAX_ROWS)
        return 0;
    if (!l->v && !(l->v = calloc(MAX_ROWS, sizeof *l->v)))
        return PD_ERR_NOMEM;
    if (row_fill(&l->v[l->n], e, f, n) != PD_OK)
        return PD_ERR_NOMEM;
    l->n++;
    return 0;
}

static int load_members(pd_storage *st, const char *household_id, ko_rows *out)
{
    memset(out, 0, sizeof *out);
    int rc = st->ops->household_members(st, household_id, rows_cb, out);
    if (rc == PD_ERR_NOMEM)
        return pd_storage_fail(st, PD_ERR_NOMEM, "out of memory reading members");
    return rc;
}

static int load_row(pd_storage *st, pd_entity e, const char *id, ko_row *out)
{
    memset(out, 0, sizeof *out);
    int rc = st->ops->record_get(st, e, id, row_cb, out);
    if (rc == PD_ERR_NOMEM)
        return pd_storage_fail(st, PD_ERR_NOMEM, "out of memory reading a record");
    if (rc == PD_OK && out->n == 0)
        return pd_storage_fail(st, PD_ERR_NOTFOUND, "no %s %s", pd_entity_name(e), id);
    return rc;
}

/* ==== merge-time checks
 * ============================================================================ */

/* The audit line of a change the checks make for a batch's op (its batch, author and device). */
static int audit_batch_op(pd_storage *st, const srv_korcam_batch *b, const pd_op *op,
                          const char *action, const char *entity, const char *target,
                          const char *field, const pd_value *old_v, const pd_value *new_v,
                          int64_t rev)
{
    pd_srv_audit au = {.at = b->now,
                       .action = action,
                       .actor = b->author_id,
                       .device_id = b->device_id,
                       .batch_hash = b->batch_hash,
                       .seq = op->seq,
                       .entity = entity,
                       .target = target,
                       .field = field,
                       .old_value = old_v,
                       .new_value = new_v,
                       .rev = rev};
    return st->ops->audit_add(st, &au);
}

/* Add a conflict found by these checks: its row (related to the record it met, when related is
 * not NULL), its audit line, and the batch's count. */
static int add_conflict(pd_server *srv, const srv_korcam_batch *b, const pd_op *op,
                        const char *kind, const char *entity, const char *target, const char *field,
                        const char *desa, const char *related, const pd_value *base,
                        const pd_value *server_v, const pd_value *device_v)
{
    pd_storage *st = srv_store(srv);
    int64_t rev, id;
    int rc;
    if ((rc = st->ops->revision_next(st, &rev)) != PD_OK)
        return rc;
    pd_srv_conflict c = {.kind = kind,
                         .entity = entity,
                         .target = target,
                         .field = field,
                         .area = desa,
                         .base_rev = op->base_rev,
                         .base_value = base,
                         .server_value = server_v,
                         .device_value = device_v,
                         .device_id = b->device_id,
                         .device_author = b->author_pk,
                         .device_seq = op->seq,
                         .device_hlc = op->hlc,
                         .batch_seq = b->batch_seq,
                         .batch_hash = b->batch_hash,
                         .created_at = b->now,
                         .rev = rev};
    if ((rc = st->ops->conflict_add(st, &c, &id)) != PD_OK ||
        (related && (rc = st->ops->conflict_relate(st, id, related)) != PD_OK) ||
        (rc = audit_batch_op(st, b, op, "conflict", entity, target, field, server_v, device_v,
                             rev)) != PD_OK)
        return rc;
    if (b->conflicted)
        (*b->conflicted)++;
    return PD_OK;
}

/* Queue a conflict found by these checks, unless the same one is queued (or was decided). */
static int queue_conflict(pd_server *srv, const srv_korcam_batch *b, const pd_op *op,
                          const char *kind, const char *entity, const char *target,
                          const char *field, const char *desa, const char *related,
                          const pd_value *base, const pd_value *server_v, const pd_value *device_v)
{
    bool exists = false;
    /* A proposal matches a household once, whatever matched (head NIK, KK, name and place); a
     * NIK or status conflict again with another value is a new situation. */
    bool any_value = !strcmp(kind, "duplicate_household");
    int rc = srv_store(srv)->ops->conflict_exists(srv_store(srv), kind, target, related,
                                                  any_value ? NULL : device_v, &exists);
    if (rc != PD_OK || exists)
        return rc;
    return add_conflict(srv, b, op, kind, entity, target, field, desa, related, base, server_v,
                        device_v);
}

typedef struct holder_list {
    struct {
        char member[256], household[256], status[16], source[16], name[128];
        int64_t relationship;
    } h[MAX_HOLDERS];
    size_t n;
} holder_list;

static int holder_cb(void *ctx, const pd_srv_holder *h)
{
    holder_list *l = ctx;
    if (l->n >= MAX_HOLDERS)
        return 0;
    snprintf(l->h[l->n].member, sizeof l->h[l->n].member, "%s", h->member_id);
    snprintf(l->h[l->n].household, sizeof l->h[l->n].household, "%s", h->household_id);
    snprintf(l->h[l->n].status, sizeof l->h[l->n].status, "%s", h->status);
    snprintf(l->h[l->n].source, sizeof l->h[l->n].source, "%s", h->household_source);
    snprintf(l->h[l->n].name, sizeof l->h[l->n].name, "%s", h->name);
    l->h[l->n].relationship = h->relationship;
    l->n++;
    return 0;
}

static bool inactive(const char *status)
{
    return !strcmp(status, "deceased") || !strcmp(status, "moved");
}

/* A backend without the korcam block still queues a NIK held in another household (as the
 * merge engine did before the korcam kinds), with the base operations only. */
typedef struct basic_nik {
    const char *member_id, *household_id;
    char other[400];
    bool found;
} basic_nik;

static int basic_nik_cb(void *ctx, const char *member, const char *household, const char *unused)
{
    (void)unused;
    basic_nik *c = ctx;
    if (!strcmp(member, c->member_id) || !strcmp(household, c->household_id))
        return 0;
    snprintf(c->other, sizeof c->other, "member %s of household %s holds this NIK", member,
             household);
    c->found = true;
    return 1;
}

static int basic_nik_check(pd_server *srv, const srv_korcam_batch *b, const pd_op *op,
                           const char *member_id, const char *household_id, const char *desa,
                           const pd_value *nik, const char *s)
{
    pd_storage *st = srv_store(srv);
    basic_nik c = {.member_id = member_id, .household_id = household_id};
    int rc = st->ops->nik_holders(st, s, basic_nik_cb, &c);
    if (rc != PD_OK && rc != 1)
        return rc;
    if (!c.found)
        return PD_OK;
    pd_value other = text_value(c.other);
    return add_conflict(srv, b, op, "duplicate_nik", "member", member_id, "nik", desa, NULL, NULL,
                        &other, nik);
}

int srv_korcam_check_nik(pd_server *srv, const srv_korcam_batch *b, const pd_op *op,
                         const char *member_id, const char *household_id, const char *desa,
                         const pd_value *nik)
{
    pd_storage *st = srv_store(srv);
    char s[32];
    if (!value_text(nik, s, sizeof s) || !*s || is_placeholder_nik(s))
        return PD_OK;
    if (!has_korcam_ops(st))
        return basic_nik_check(srv, b, op, member_id, household_id, desa, nik, s);
    holder_list l;
    memset(&l, 0, sizeof l);
    int rc = st->ops->nik_members(st, s, holder_cb, &l);
    if (rc != PD_OK)
        return rc;
    /* what this member is */
    const char *self_status = "active", *self_source = "";
    int64_t self_rel = 0;
    for (size_t i = 0; i < l.n; i++)
        if (!strcmp(l.h[i].member, member_id)) {
            self_status = l.h[i].status;
            self_source = l.h[i].source;
            self_rel = l.h[i].relationship;
        }
    for (size_t i = 0; i < l.n; i++) {
        if (!strcmp(l.h[i].member, member_id))
            continue;
        char why[1024];
        pd_value server_v;
        if (!strcmp(l.h[i].household, household_id)) {
            snprintf(why, sizeof why, "member %s (%s) of the same household holds this NIK",
                     l.h[i].member, l.h[i].name);
            server_v = text_value(why);
            rc = queue_conflict(srv, b, op, "duplicate_nik", "member", member_id, "nik", desa,
                                l.h[i].member, &op->old_value, &server_v, nik);
        } else if (self_rel == 1 && !strcmp(self_source, "new") && l.h[i].relationship == 1) {
            /* the head of a proposed household heads another one: the proposal is a duplicate */
            snprintf(why, sizeof why, "same head NIK as household %s", l.h[i].household);
            server_v = text_value(why);
            rc = queue_conflict(srv, b, op, "duplicate_household", "household", household_id, "",
                                desa, l.h[i].household, NULL, &server_v, nik);
        } else if (inactive(l.h[i].status) && !strcmp(self_status, "active")) {
            snprintf(why, sizeof why, "member %s of household %s is %s", l.h[i].member,
                     l.h[i].household, l.h[i].status);
            server_v = text_value(why);
            rc = queue_conflict(srv, b, op, "moved_active", "member", member_id, "nik", desa,
                                l.h[i].member, &op->old_value, &server_v, nik);
        } else {
            snprintf(why, sizeof why, "member %s of household %s holds this NIK", l.h[i].member,
                     l.h[i].household);
            server_v = text_value(why);
            rc = queue_conflict(srv, b, op, "duplicate_nik", "member", member_id, "nik", desa,
                                l.h[i].member, &op->old_value, &server_v, nik);
        }
        if (rc != PD_OK)
            return rc;
    }
    return PD_OK;
}

/* A proposed household near another one whose head has a similar name. */
typedef struct near_ctx {
    const char *self, *name;
    double lat, lon;
    struct {
        char id[256];
        char why[300];
    } hit[8];
    size_t n;
} near_ctx;

static int near_cb(void *ctx, const pd_srv_point *p)
{
    near_ctx *c = ctx;
    if (!strcmp(p->household_id, c->self) || c->n >= PD_ARRAY_LEN(c->hit))
        return 0;
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->hit[i].id, p->household_id))
            return 0;
    double d = distance_m(c->lat, c->lon, p->lat, p->lon);
    if (d > NEAR_M || !names_similar(c->name, p->head_name))
        return 0;
    snprintf(c->hit[c->n].id, sizeof c->hit[c->n].id, "%s", p->household_id);
    snprintf(c->hit[c->n].why, sizeof c->hit[c->n].why,
             "household %s is %.0f m away%s and its head's name is similar", p->household_id, d,
             p->visit_id[0] ? " (visited there)" : "");
    c->n++;
    return 0;
}

static int check_near(pd_server *srv, const srv_korcam_batch *b, const pd_op *op, const char *self,
                      const char *desa, const char *name, double lat, double lon)
{
    if (!name || !*name || !isfinite(lat) || !isfinite(lon))
        return PD_OK;
    pd_storage *st = srv_store(srv);
    near_ctx c = {.self = self, .name = name, .lat = lat, .lon = lon};
    double dlat = NEAR_M / 111320.0 * 1.01;
    double coslat = cos(lat * M_PI / 180.0);
    double dlon = coslat > 0.01 ? dlat / coslat : 1.0;
    int rc =
        st->ops->points_in_box(st, lat - dlat, lat + dlat, lon - dlon, lon + dlon, near_cb, &c);
    if (rc != PD_OK)
        return rc;
    pd_value mine = text_value(name);
    for (size_t i = 0; i < c.n; i++) {
        pd_value why = text_value(c.hit[i].why);
        if ((rc = queue_conflict(srv, b, op, "duplicate_household", "household", self, "", desa,
                                 c.hit[i].id, NULL, &why, &mine)) != PD_OK)
            return rc;
    }
    return PD_OK;
}

typedef struct kk_ctx {
    const char *self;
    struct {
        char id[256], head[128];
    } hit[8];
    size_t n;
} kk_ctx;

static int kk_cb(void *ctx, const char *id, const char *head, const char *unused)
{
    (void)unused;
    kk_ctx *c = ctx;
    if (!strcmp(id, c->self) || c->n >= PD_ARRAY_LEN(c->hit))
        return 0;
    snprintf(c->hit[c->n].id, sizeof c->hit[c->n].id, "%s", id);
    snprintf(c->hit[c->n].head, sizeof c->hit[c->n].head, "%s", head);
    c->n++;
    return 0;
}

/* A proposed household (its create op, or its visit with a fix). */
static int check_proposal(pd_server *srv, const srv_korcam_batch *b, const pd_op *op,
                          const char *household_id, const double *fix_lat, const double *fix_lon)
{
    pd_storage *st = srv_store(srv);
    ko_row h;
    int rc = load_row(st, PD_ENT_HOUSEHOLD, household_id, &h);
    if (rc == PD_ERR_NOTFOUND)
        return PD_OK;
    if (rc != PD_OK)
        return rc;
    const char *source = row_text(&h, "source"), *desa = row_text(&h, "desa");
    const char *head = row_text(&h, "head_name"), *kk = row_text(&h, "kk");
    if (!source || strcmp(source, "new") != 0 || !desa)
        goto out;
    if (!fix_lat && kk && *kk) {
        kk_ctx c = {.self = household_id};
        if ((rc = st->ops->kk_households(st, kk, kk_cb, &c)) != PD_OK)
            goto out;
        pd_value mine = text_value(kk);
        for (size_t i = 0; i < c.n; i++) {
            char why[1024];
            snprintf(why, sizeof why, "same KK %.32s as household %s", kk, c.hit[i].id);
            pd_value sv = text_value(why);
            if ((rc = queue_conflict(srv, b, op, "duplicate_household", "household", household_id,
                                     "", desa, c.hit[i].id, NULL, &sv, &mine)) != PD_OK)
                goto out;
        }
    }
    double lat, lon;
    if (fix_lat && fix_lon) {
        lat = *fix_lat;
        lon = *fix_lon;
    } else if (!row_real(&h, "lat", &lat) || !row_real(&h, "lon", &lon)) {
        goto out;
    }
    rc = check_near(srv, b, op, household_id, desa, head, lat, lon);
out:
    row_clear(&h);
    return rc;
}

/* A member ended as deceased or moved while another member with the NIK is active elsewhere. */
static int check_ended(pd_server *srv, const srv_korcam_batch *b, const pd_op *op)
{
    pd_storage *st = srv_store(srv);
    char status[16];
    if (!value_text(&op->new_value, status, sizeof status) || !inactive(status))
        return PD_OK;
    ko_row m;
    int rc = load_row(st, PD_ENT_MEMBER, op->target, &m);
    if (rc == PD_ERR_NOTFOUND)
        return PD_OK;
    if (rc != PD_OK)
        return rc;
    const char *now = row_text(&m, "status"), *nik = row_text(&m, "nik");
    const char *hh = row_text(&m, "household_id");
    char desa[PD_SRV_CODE_MAX + 1];
    if (!now || strcmp(now, status) != 0 || !nik || !*nik || is_placeholder_nik(nik) || !hh ||
        st->ops->record_area(st, PD_ENT_MEMBER, op->target, desa) != PD_OK)
        goto out; /* the op did not stand (a conflict), or nothing to compare */
    holder_list l;
    memset(&l, 0, sizeof l);
    if ((rc = st->ops->nik_members(st, nik, holder_cb, &l)) != PD_OK)
        goto out;
    for (size_t i = 0; i < l.n; i++) {
        if (!strcmp(l.h[i].member, op->target) || !strcmp(l.h[i].household, hh) ||
            strcmp(l.h[i].status, "active") != 0)
            continue;
        char why[1024];
        snprintf(why, sizeof why, "member %s of household %s is active", l.h[i].member,
                 l.h[i].household);
        pd_value sv = text_value(why);
        if ((rc = queue_conflict(srv, b, op, "moved_active", "member", op->target, "status", desa,
                                 l.h[i].member, &op->old_value, &sv, &op->new_value)) != PD_OK)
            break;
    }
out:
    row_clear(&m);
    return rc;
}

/* A member was created: the household's member_count must count at least its active members.
 * A proposed household arrives with member_count 0 (its head is created by the next op), and a
 * device refuses a household whose count is not 1..99 — every device of the desa would refuse
 * the delta that carries it. The change is the op's (its device, author, batch). */
static int keep_member_count(pd_server *srv, const srv_korcam_batch *b, const pd_op *op)
{
    pd_storage *st = srv_store(srv);
    ko_row m, h;
    memset(&h, 0, sizeof h);
    int rc = load_row(st, PD_ENT_MEMBER, op->target, &m);
    if (rc == PD_ERR_NOTFOUND) {
        row_clear(&m);
        return PD_OK;
    }
    const char *hid = rc == PD_OK ? row_text(&m, "household_id") : NULL;
    if (!hid || (rc = load_row(st, PD_ENT_HOUSEHOLD, hid, &h)) != PD_OK)
        goto out;
    ko_rows mm;
    if ((rc = load_members(st, hid, &mm)) != PD_OK) {
        rows_clear(&mm);
        goto out;
    }
    int64_t active = 0;
    for (size_t i = 0; i < mm.n; i++) {
        const char *s = row_text(&mm.v[i], "status");
        active += s && !strcmp(s, "active");
    }
    rows_clear(&mm);
    int64_t count = row_int(&h, "member_count", 0);
    if (active <= count || count >= 99)
        goto out;
    int64_t rev;
    if ((rc = st->ops->revision_next(st, &rev)) != PD_OK)
        goto out;
    pd_srv_change ch;
    memset(&ch, 0, sizeof ch);
    ch.rev = rev;
    snprintf(ch.device_id, sizeof ch.device_id, "%s", b->device_id);
    ch.has_author = true;
    memcpy(ch.author_pk, b->author_pk, PD_PUBKEY_BYTES);
    ch.seq = op->seq;
    ch.hlc = op->hlc;
    ch.has_batch = true;
    memcpy(ch.batch_hash, b->batch_hash, PD_HASH_BYTES);
    pd_value nv = {.type = PD_VAL_INT, .i = active > 99 ? 99 : active};
    pd_value ov = {.type = PD_VAL_INT, .i = count};
    if ((rc = st->ops->field_set(st, PD_ENT_HOUSEHOLD, hid,
                                 pd_entity_column(PD_ENT_HOUSEHOLD, "member_count"), &nv, &ch)) !=
        PD_OK)
        goto out;
    rc = audit_batch_op(st, b, op, "apply", "household", hid, "member_count", &ov, &nv, rev);
out:
    row_clear(&m);
    row_clear(&h);
    return rc;
}

int srv_korcam_after_batch(pd_server *srv, const srv_korcam_batch *b, const pd_op *ops, size_t n)
{
    if (!has_korcam_ops(srv_store(srv)))
        return PD_OK;
    /* every member is in by now: the first member created in a household raises its count to
     * all of them (the change is that op's), the others find nothing left to do */
    for (size_t i = 0; i < n; i++) {
        const pd_op *op = &ops[i];
        if (!op->kind || strcmp(op->kind, "create") != 0 || !op->entity ||
            strcmp(op->entity, "member") != 0 || !op->target)
            continue;
        srv_korcam_batch ob = *b;
        ob.device_id = op->device_id && *op->device_id ? op->device_id : b->device_id;
        int rc = keep_member_count(srv, &ob, op);
        if (rc != PD_OK)
            return rc;
    }
    return PD_OK;
}

int srv_korcam_after_op(pd_server *srv, const srv_korcam_batch *b, const pd_op *op)
{
    if (!has_korcam_ops(srv_store(srv)) || !op->kind || !op->entity || !op->target)
        return PD_OK;
    if (!strcmp(op->kind, "create") && !strcmp(op->entity, "household"))
        return check_proposal(srv, b, op, op->target, NULL, NULL);
    if (!strcmp(op->kind, "visit") && op->new_value.type == PD_VAL_TEXT) {
        cJSON *j = srv_json_parse(op->new_value.p, op->new_value.len);
        const cJSON *hh = cJSON_GetObjectItemCaseSensitive(j, "household_id");
        const cJSON *lat = cJSON_GetObjectItemCaseSensitive(j, "lat");
        const cJSON *lon = cJSON_GetObjectItemCaseSensitive(j, "lon");
        int rc = PD_OK;
        if (cJSON_IsString(hh) && cJSON_IsNumber(lat) && cJSON_IsNumber(lon)) {
            double la = lat->valuedouble, lo = lon->valuedouble;
            rc = check_proposal(srv, b, op, hh->valuestring, &la, &lo);
        }
        cJSON_Delete(j);
        return rc;
    }
    if ((!strcmp(op->kind, "set") || !strcmp(op->kind, "end")) && !strcmp(op->entity, "member") &&
        op->field && (!strcmp(op->field, "status") || (!*op->field && !strcmp(op->kind, "end"))))
        return check_ended(srv, b, op);
    return PD_OK;
}

/* ==== conflicts as JSON
 * ============================================================================ */

typedef struct name_cache {
    struct {
        char id[PD_SRV_ID_MAX + 1];
        char name[PD_SRV_NAME_MAX + 1];
    } e[32];
    size_t n;
} name_cache;

static const char *user_name(pd_server *srv, name_cache *nc, const char *id)
{
    if (!id || !*id)
        return "";
    for (size_t i = 0; i < nc->n; i++)
        if (!strcmp(nc->e[i].id, id))
            return nc->e[i].name;
    pd_srv_user u;
    if (srv_store(srv)->ops->user_get(srv_store(srv), id, &u) != PD_OK)
        return "";
    size_t k = nc->n < PD_ARRAY_LEN(nc->e) ? nc->n++ : PD_ARRAY_LEN(nc->e) - 1;
    snprintf(nc->e[k].id, sizeof nc->e[k].id, "%s", id);
    snprintf(nc->e[k].name, sizeof nc->e[k].name, "%s", u.name);
    return nc->e[k].name;
}

enum {
    A_SERVER = 1 << 0,
    A_DEVICE = 1 << 1,
    A_VALUE = 1 << 2,
    A_MERGE = 1 << 3,
    A_SPLIT = 1 << 4,
    A_REVISIT = 1 << 5,
};

static const char *const action_names[] = {"server", "device", "value",
                                           "merge",  "split",  "revisit"};

static unsigned actions_of(const char *kind)
{
    static const struct {
        const char *kind;
        unsigned mask;
    } table[] = {
        {"field", A_SERVER | A_DEVICE | A_VALUE | A_SPLIT | A_REVISIT},
        {"create", A_SERVER | A_DEVICE | A_REVISIT},
        {"duplicate_nik", A_SERVER | A_DEVICE | A_VALUE | A_MERGE | A_SPLIT | A_REVISIT},
        {"double_visit", A_SERVER | A_DEVICE | A_VALUE | A_SPLIT | A_REVISIT},
        {"duplicate_household", A_SERVER | A_DEVICE | A_MERGE | A_SPLIT | A_REVISIT},
        {"moved_active", A_SERVER | A_DEVICE | A_VALUE | A_REVISIT},
    };
    for (size_t i = 0; i < PD_ARRAY_LEN(table); i++)
        if (!strcmp(table[i].kind, kind))
            return table[i].mask;
    return A_REVISIT;
}

static bool known_kind(const char *kind)
{
    static const char *const kinds[] = {
        "field", "create", "duplicate_nik", "double_visit", "duplicate_household", "moved_active"};
    for (size_t i = 0; i < PD_ARRAY_LEN(kinds); i++)
        if (!strcmp(kinds[i], kind))
            return true;
    return false;
}

/* The side of a conflict as JSON. */
static cJSON *side_json(pd_server *srv, name_cache *nc, const pd_value *v, const char *device,
                        const char *user, const uint8_t *author, int64_t seq, int64_t hlc,
                        const uint8_t *batch, const char *kind)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON *val = NULL;
    if (!strcmp(kind, "create") && v->type == PD_VAL_TEXT) {
        val = srv_json_parse(v->p, v->len);
        if (val && !cJSON_IsObject(val)) {
            cJSON_Delete(val);
            val = NULL;
        }
    }
    if (!val)
        val = json_value(v);
    if (val)
        cJSON_AddItemToObject(o, "value", val);
    if (device && *device)
        cJSON_AddStringToObject(o, "device", device);
    else
        cJSON_AddNullToObject(o, "device");
    cJSON_AddStringToObject(o, "user", user ? user : "");
    cJSON_AddStringToObject(o, "name", user_name(srv, nc, user));
    add_hex(o, "author", author, PD_PUBKEY_BYTES);
    cJSON_AddNumberToObject(o, "seq", (double)seq);
    if (hlc > 0)
        cJSON_AddNumberToObject(o, "time", (double)(hlc >> 16));
    else
        cJSON_AddNullToObject(o, "time");
    add_hex(o, "batch", batch, PD_HASH_BYTES);
    return o;
}

static cJSON *conflict_json(pd_server *srv, name_cache *nc, const pd_srv_conflict_row *c,
                            int64_t now)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "id", (double)c->id);
    cJSON_AddStringToObject(o, "kind", c->kind);
    cJSON_AddStringToObject(o, "entity", c->entity);
    cJSON_AddStringToObject(o, "target", c->target);
    cJSON_AddStringToObject(o, "field", c->field);
    cJSON_AddStringToObject(o, "desa", c->area);
    cJSON_AddStringToObject(o, "related", c->related);
    cJSON_AddStringToObject(o, "household_id", c->household_id);
    cJSON_AddStringToObject(o, "head_name", c->head_name);
    cJSON_AddStringToObject(o, "state", c->resolved ? "resolved" : "open");
    cJSON_AddNumberToObject(o, "created_at", (double)c->created_at);
    cJSON_AddNumberToObject(o, "age_hours",
                            (double)(now > c->created_at ? (now - c->created_at) / 3600000 : 0));
    cJSON_AddNumberToObject(o, "rev", (double)c->rev);
    cJSON *base = cJSON_AddObjectToObject(o, "base");
    if (base) {
        cJSON_AddNumberToObject(base, "rev", (double)c->base_rev);
        add_value(base, "value", &c->base_value);
    }
    cJSON *sv = side_json(srv, nc, &c->server_value, c->server_device, c->server_user,
                          c->server_author, c->server_seq, c->server_hlc, c->server_batch, c->kind);
    if (sv)
        cJSON_AddItemToObject(o, "server", sv);
    cJSON *dv = side_json(srv, nc, &c->device_value, c->device_device, c->device_user,
                          c->device_author, c->device_seq, c->device_hlc, c->batch_hash, c->kind);
    if (dv) {
        cJSON_AddNumberToObject(dv, "batch_seq", (double)c->batch_seq);
        cJSON_AddItemToObject(o, "device", dv);
    }
    if (c->resolved) {
        cJSON *res = cJSON_AddObjectToObject(o, "resolution");
        if (res) {
            cJSON_AddStringToObject(res, "action", c->resolution);
            add_value(res, "value", &c->resolved_value);
            cJSON_AddStringToObject(res, "by", c->resolved_by);
            cJSON_AddStringToObject(res, "by_name", user_name(srv, nc, c->resolved_by));
            cJSON_AddNumberToObject(res, "at", (double)c->resolved_at);
            cJSON_AddStringToObject(res, "note", c->note);
        }
    } else {
        cJSON_AddNullToObject(o, "resolution");
    }
    cJSON *acts = cJSON_AddArrayToObject(o, "actions");
    unsigned mask = c->resolved ? 0 : actions_of(c->kind);
    for (size_t i = 0; acts && i < PD_ARRAY_LEN(action_names); i++)
        if (mask & (1u << i))
            cJSON_AddItemToArray(acts, cJSON_CreateString(action_names[i]));
    return o;
}

/* ==== the delta's share
 * ============================================================================ */

typedef struct delta_ctx {
    pd_server *srv;
    cJSON *obj;
} delta_ctx;

static int delta_conflict_cb(void *ctx, const pd_srv_conflict_row *c)
{
    delta_ctx *d = ctx;
    cJSON *o = d->obj;
    cJSON_AddStringToObject(o, "related", c->related);
    cJSON_AddStringToObject(o, "household_id", c->household_id);
    cJSON_AddStringToObject(o, "desa", c->area);
    if (c->resolved) {
        cJSON_AddStringToObject(o, "resolution", c->resolution);
        cJSON_AddStringToObject(o, "resolved_by", c->resolved_by);
        cJSON_AddNumberToObject(o, "resolved_at", (double)c->resolved_at);
        cJSON_AddStringToObject(o, "note", c->note);
    } else {
        cJSON_AddNullToObject(o, "resolution");
    }
    return 0;
}

typedef struct tasks_ctx {
    cJSON *arr;
    int64_t *cursor;
    bool nomem;
} tasks_ctx;

static cJSON *task_json(const pd_srv_task *t)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "id", (double)t->id);
    cJSON_AddStringToObject(o, "kind", t->kind);
    cJSON_AddStringToObject(o, "household_id", t->household_id);
    cJSON_AddStringToObject(o, "desa", t->area);
    cJSON_AddStringToObject(o, "assignee", t->assignee);
    if (t->conflict_id)
        cJSON_AddNumberToObject(o, "conflict_id", (double)t->conflict_id);
    else
        cJSON_AddNullToObject(o, "conflict_id");
    cJSON_AddStringToObject(o, "note", t->note);
    cJSON_AddStringToObject(o, "created_by", t->created_by);
    cJSON_AddNumberToObject(o, "created_at", (double)t->created_at);
    cJSON_AddNumberToObject(o, "rev", (double)t->rev);
    return o;
}

static int delta_task_cb(void *ctx, const pd_srv_task *t)
{
    tasks_ctx *c = ctx;
    cJSON *o = task_json(t);
    if (!o) {
        c->nomem = true;
        return 1;
    }
    cJSON_AddItemToArray(c->arr, o);
    if (t->rev > *c->cursor)
        *c->cursor = t->rev;
    return 0;
}

int srv_korcam_delta(pd_server *srv, const pd_srv_user *u, int64_t since, cJSON *conflicts,
                     cJSON *tasks, int64_t *cursor)
{
    pd_storage *st = srv_store(srv);
    if (!has_korcam_ops(st))
        return PD_OK;
    cJSON *it;
    cJSON_ArrayForEach(it, conflicts)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "id");
        if (!cJSON_IsNumber(id))
            continue;
        delta_ctx d = {.srv = srv, .obj = it};
        int rc = st->ops->conflict_get(st, (int64_t)id->valuedouble, delta_conflict_cb, &d);
        if (rc != PD_OK)
            return rc;
    }
    tasks_ctx t = {.arr = tasks, .cursor = cursor};
    bool enumerator = !strcmp(u->role, "enumerator");
    int rc = st->ops->tasks_since(st, u->area, enumerator ? u->id : NULL, since, delta_task_cb, &t);
    if (t.nomem)
        return pd_storage_fail(st, PD_ERR_NOMEM, "out of memory listing tasks");
    return rc;
}

/* ==== the API
 * ======================================================================================= */

typedef struct actor {
    pd_srv_user user;
    bool web;
} actor;

static int not_found(srv_resp *r, int64_t id)
{
    return srv_resp_error(r, 404, "not_found", "no conflict %lld in your area", (long long)id);
}

static int storage_error(pd_server *srv, srv_resp *r)
{
    int code = pd_storage_error(srv_store(srv))->code;
    const char *msg = pd_storage_errmsg(srv_store(srv));
    if (code == PD_ERR_BUSY)
        return srv_resp_error(r, 503, "busy", "storage: %s", msg);
    return srv_resp_error(r, 500, "internal", "storage: %s", msg);
}

/* A strictly positive decimal id. */
static bool parse_id(const char *s, size_t len, int64_t *out)
{
    if (len == 0 || len > 15)
        return false;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return v > 0;
}

/* ---- list --------------------------------------------------------------------------------------
 */

typedef struct list_ctx {
    pd_server *srv;
    name_cache nc;
    cJSON *arr;
    int64_t now;
    bool nomem;
} list_ctx;

static int list_cb(void *ctx, const pd_srv_conflict_row *c)
{
    list_ctx *l = ctx;
    cJSON *o = conflict_json(l->srv, &l->nc, c, l->now);
    if (!o) {
        l->nomem = true;
        return 1;
    }
    cJSON_AddItemToArray(l->arr, o);
    return 0;
}

/* A query parameter into buf ("" when absent); false, with r answered 400, when it is there but
 * unusable (longer than buf, a bad %-escape, a NUL): read as absent, it would widen the list
 * to what the korcam did not ask for. */
static bool query_arg(const srv_req *q, const char *name, char *buf, size_t cap, srv_resp *r)
{
    buf[0] = '\0';
    if (srv_query_get(q->query, name, buf, cap) >= 0)
        return true;
    buf[0] = '\0';
    srv_resp_error(r, 400, "bad_request", "%s is too long, or not text", name);
    return false;
}

static int api_list(pd_server *srv, const actor *a, const srv_req *q, srv_resp *r)
{
    char kind[32], desa[PD_SRV_CODE_MAX + 2], who[PD_SRV_ID_MAX + 2], state[16], age[24], limit[24],
        offset[24];
    pd_srv_conflict_filter f = {
        .areas = a->user.area, .state = "open", .limit = LIST_LIMIT_DEFAULT};
    if (!query_arg(q, "kind", kind, sizeof kind, r) ||
        !query_arg(q, "desa", desa, sizeof desa, r) ||
        !query_arg(q, "enumerator", who, sizeof who, r) ||
        !query_arg(q, "state", state, sizeof state, r) ||
        !query_arg(q, "age", age, sizeof age, r) ||
        !query_arg(q, "limit", limit, sizeof limit, r) ||
        !query_arg(q, "offset", offset, sizeof offset, r))
        return r->status;
    if (kind[0]) {
        if (!known_kind(kind))
            return srv_resp_error(r, 400, "bad_request",
                                  "kind must be field, create, "
                                  "duplicate_nik, double_visit, duplicate_household or "
                                  "moved_active");
        f.kind = kind;
    }
    if (desa[0]) {
        pd_error e = {0};
        if (strchr(desa, ',') || srv_areas_check(desa, &e) != PD_OK)
            return srv_resp_error(r, 400, "bad_request", "desa must be one area code");
        f.desa = desa;
    }
    if (who[0]) {
        if (!srv_valid_id(who))
            return srv_resp_error(r, 400, "bad_request", "enumerator must be a user id");
        f.enumerator = who;
    }
    if (state[0]) {
        if (!strcmp(state, "all"))
            f.state = NULL;
        else if (!strcmp(state, "open") || !strcmp(state, "resolved"))
            f.state = state;
        else
            return srv_resp_error(r, 400, "bad_request", "state must be open, resolved or all");
    }
    if (age[0]) {
        int64_t h;
        if (!strcmp(age, "0"))
            h = 0;
        else if (!parse_id(age, strlen(age), &h) || h > 24 * 3650)
            return srv_resp_error(r, 400, "bad_request", "age must be hours (0..87600)");
        if (h)
            f.created_before = srv_now_ms() - h * 3600000;
    }
    if (limit[0]) {
        if (!parse_id(limit, strlen(limit), &f.limit) || f.limit > LIST_LIMIT_MAX)
            return srv_resp_error(r, 400, "bad_request", "limit must be 1..%d", LIST_LIMIT_MAX);
    }
    if (offset[0] && strcmp(offset, "0")) {
        if (!parse_id(offset, strlen(offset), &f.offset))
            return srv_resp_error(r, 400, "bad_request", "offset must be a count");
    }
    cJSON *o = cJSON_CreateObject();
    list_ctx *l = calloc(1, sizeof *l);
    if (!o || !l || !(l->arr = cJSON_AddArrayToObject(o, "conflicts"))) {
        cJSON_Delete(o);
        free(l);
        return srv_resp_error(r, 500, "internal", "out of memory");
    }
    l->srv = srv;
    l->now = srv_now_ms();
    int64_t total = 0;
    int rc = srv_store(srv)->ops->conflicts_list(srv_store(srv), &f, list_cb, l, &total);
    bool nomem = l->nomem;
    free(l);
    if (rc != PD_OK || nomem) {
        cJSON_Delete(o);
        return nomem ? srv_resp_error(r, 500, "internal", "out of memory") : storage_error(srv, r);
    }
    cJSON_AddNumberToObject(o, "total", (double)total);
    cJSON_AddNumberToObject(o, "limit", (double)f.limit);
    cJSON_AddNumberToObject(o, "offset", (double)f.offset);
    cJSON_AddStringToObject(o, "area", a->user.area);
    r->json = o;
    r->status = 200;
    return 200;
}

/* ---- show --------------------------------------------------------------------------------------
 */

/* A conflict copied out of its callback. */
typedef struct ko_conflict {
    int64_t id;
    char kind[24], entity[16], target[256], field[40], area[PD_SRV_CODE_MAX + 1];
    char related[256], household_id[256], device_user[PD_SRV_ID_MAX + 1];
    char resolved_by[PD_SRV_ID_MAX + 1];
    pd_srv_value base, server, device;
    bool resolved;
    int64_t resolved_at;
    cJSON *json; /* when asked for */
    name_cache *nc;
    pd_server *srv;
    bool nomem;
} ko_conflict;

static void conflict_clear(ko_conflict *c)
{
    pd_srv_value_clear(&c->base);
    pd_srv_value_clear(&c->server);
    pd_srv_value_clear(&c->device);
    cJSON_Delete(c->json);
    c->json = NULL;
}

static int conflict_copy_cb(void *ctx, const pd_srv_conflict_row *r)
{
    ko_conflict *c = ctx;
    c->id = r->id;
    snprintf(c->kind, sizeof c->kind, "%s", r->kind);
    snprintf(c->entity, sizeof c->entity, "%s", r->entity);
    snprintf(c->target, sizeof c->target, "%s", r->target);
    snprintf(c->field, sizeof c->field, "%s", r->field);
    snprintf(c->area, sizeof c->area, "%s", r->area);
    snprintf(c->related, sizeof c->related, "%s", r->related);
    snprintf(c->household_id, sizeof c->household_id, "%s", r->household_id);
    snprintf(c->device_user, sizeof c->device_user, "%s", r->device_user);
    snprintf(c->resolved_by, sizeof c->resolved_by, "%s", r->resolved_by);
    c->resolved = r->resolved;
    c->resolved_at = r->resolved_at;
    if (value_copy(&c->base, &r->base_value) != PD_OK ||
        value_copy(&c->server, &r->server_value) != PD_OK ||
        value_copy(&c->device, &r->device_value) != PD_OK) {
        c->nomem = true;
        return PD_ERR_NOMEM;
    }
    if (c->nc && !(c->json = conflict_json(c->srv, c->nc, r, srv_now_ms()))) {
        c->nomem = true;
        return PD_ERR_NOMEM;
    }
    return 0;
}

/* Read conflict id as actor a may see it: 0 with *c filled, or an HTTP status with r filled. */
static int conflict_for(pd_server *srv, const actor *a, int64_t id, ko_conflict *c, name_cache *nc,
                        srv_resp *r)
{
    memset(c, 0, sizeof *c);
    c->nc = nc;
    c->srv = srv;
    int rc = srv_store(srv)->ops->conflict_get(srv_store(srv), id, conflict_copy_cb, c);
    if (rc == PD_ERR_NOTFOUND)
        return not_found(r, id);
    if (c->nomem || rc == PD_ERR_NOMEM) {
        conflict_clear(c);
        return srv_resp_error(r, 500, "internal", "out of memory");
    }
    if (rc != PD_OK) {
        conflict_clear(c);
        return storage_error(srv, r);
    }
    if (!srv_areas_cover(a->user.area, c->area)) {
        conflict_clear(c);
        return not_found(r, id); /* the same answer as for a conflict that does not exist */
    }
    return 0;
}

/* The household (and members) a related record belongs to: "" if none. */
static void related_household(pd_server *srv, const ko_conflict *c, char *out, size_t cap)
{
    out[0] = '\0';
    if (!c->related[0])
        return;
    if (!strcmp(c->kind, "duplicate_household")) {
        snprintf(out, cap, "%s", c->related);
        return;
    }
    if (!strcmp(c->kind, "duplicate_nik") || !strcmp(c->kind, "moved_active")) {
        ko_row m;
        if (load_row(srv_store(srv), PD_ENT_MEMBER, c->related, &m) == PD_OK) {
            const char *h = row_text(&m, "household_id");
            snprintf(out, cap, "%s", h ? h : "");
        }
        row_clear(&m);
    }
}

static cJSON *household_json(pd_server *srv, const char *id)
{
    ko_row h;
    if (load_row(srv_store(srv), PD_ENT_HOUSEHOLD, id, &h) != PD_OK) {
        row_clear(&h);
        return NULL;
    }
    cJSON *o = row_json(&h);
    row_clear(&h);
    ko_rows mm;
    cJSON *arr = o ? cJSON_AddArrayToObject(o, "members") : NULL;
    if (arr && load_members(srv_store(srv), id, &mm) == PD_OK) {
        for (size_t i = 0; i < mm.n; i++) {
            cJSON *m = row_json(&mm.v[i]);
            if (m)
                cJSON_AddItemToArray(arr, m);
        }
    }
    rows_clear(&mm);
    return o;
}

typedef struct points_ctx {
    pd_server *srv;
    name_cache *nc;
    cJSON *arr;
    const char *role; /* "this" or "related" */
} points_ctx;

static int points_cb(void *ctx, const pd_srv_point *p)
{
    points_ctx *c = ctx;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return 1;
    cJSON_AddStringToObject(o, "household_id", p->household_id);
    cJSON_AddStringToObject(o, "role", c->role);
    cJSON_AddStringToObject(o, "kind", p->visit_id[0] ? "visit" : "household");
    cJSON_AddStringToObject(o, "visit_id", p->visit_id);
    cJSON_AddNumberToObject(o, "lat", p->lat);
    cJSON_AddNumberToObject(o, "lon", p->lon);
    if (p->accuracy_m >= 0)
        cJSON_AddNumberToObject(o, "accuracy_m", p->accuracy_m);
    else
        cJSON_AddNullToObject(o, "accuracy_m");
    if (p->at)
        cJSON_AddNumberToObject(o, "at", (double)p->at);
    else
        cJSON_AddNullToObject(o, "at");
    cJSON_AddStringToObject(o, "outcome", p->outcome);
    cJSON_AddStringToObject(o, "device", p->device_id);
    const char *user = "";
    pd_srv_person_key k;
    if (p->enumerator_pk &&
        srv_store(c->srv)->ops->person_key_get(srv_store(c->srv), p->enumerator_pk, &k) == PD_OK)
        user = k.user_id;
    cJSON_AddStringToObject(o, "user", user);
    cJSON_AddStringToObject(o, "name", user_name(c->srv, c->nc, user));
    cJSON_AddItemToArray(c->arr, o);
    return 0;
}

static int history_cb(void *ctx, const pd_srv_audit_row *a)
{
    cJSON *arr = ctx;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return 1;
    cJSON_AddNumberToObject(o, "at", (double)a->at);
    cJSON_AddStringToObject(o, "action", a->action);
    cJSON_AddStringToObject(o, "actor", a->actor);
    cJSON_AddStringToObject(o, "device", a->device_id);
    cJSON_AddStringToObject(o, "entity", a->entity);
    cJSON_AddStringToObject(o, "target", a->target);
    cJSON_AddStringToObject(o, "field", a->field);
    add_value(o, "old", &a->old_value);
    add_value(o, "new", &a->new_value);
    cJSON_AddNumberToObject(o, "rev", (double)a->rev);
    add_hex(o, "batch", a->batch_hash, PD_HASH_BYTES);
    cJSON_AddItemToArray(arr, o);
    return 0;
}

static int shape_cb(void *ctx, const char *code, const char *name, const char *shape, int64_t rev)
{
    (void)rev;
    cJSON *o = ctx;
    cJSON_AddStringToObject(o, "code", code);
    cJSON_AddStringToObject(o, "name", name);
    cJSON_AddStringToObject(o, "ring", shape);
    return 1; /* the first (the desa itself) */
}

static int api_show(pd_server *srv, const actor *a, int64_t id, srv_resp *r)
{
    name_cache *nc = calloc(1, sizeof *nc);
    if (!nc)
        return srv_resp_error(r, 500, "internal", "out of memory");
    ko_conflict c;
    int e = conflict_for(srv, a, id, &c, nc, r);
    if (e) {
        free(nc);
        return e;
    }
    pd_storage *st = srv_store(srv);
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        conflict_clear(&c);
        free(nc);
        return srv_resp_error(r, 500, "internal", "out of memory");
    }
    cJSON_AddItemToObject(o, "conflict", c.json);
    c.json = NULL;
    char rel[256];
    related_household(srv, &c, rel, sizeof rel);
    int rc = PD_OK;
    if (c.household_id[0]) {
        cJSON *h = household_json(srv, c.household_id);
        if (h)
            cJSON_AddItemToObject(o, "household", h);
        else
            cJSON_AddNullToObject(o, "household");
    } else {
        cJSON_AddNullToObject(o, "household");
    }
    /* the other household only when it lies in the asker's area too (a NIK may be held in
     * another kecamatan: that korcam's business) */
    char rdesa[PD_SRV_CODE_MAX + 1] = "";
    bool rel_visible = rel[0] && strcmp(rel, c.household_id) != 0 &&
                       st->ops->record_area(st, PD_ENT_HOUSEHOLD, rel, rdesa) == PD_OK &&
                       srv_areas_cover(a->user.area, rdesa);
    cJSON *rh = rel_visible ? household_json(srv, rel) : NULL;
    if (rh)
        cJSON_AddItemToObject(o, "related_household", rh);
    else
        cJSON_AddNullToObject(o, "related_household");
    cJSON_AddBoolToObject(o, "related_elsewhere",
                          rel[0] && strcmp(rel, c.household_id) != 0 && !rel_visible);
    cJSON *hist = cJSON_AddArrayToObject(o, "history");
    if (hist && c.household_id[0])
        rc = st->ops->household_audit(st, c.household_id, HISTORY_MAX, history_cb, hist);
    cJSON *pts = cJSON_AddArrayToObject(o, "points");
    points_ctx pc = {.srv = srv, .nc = nc, .arr = pts, .role = "this"};
    if (rc == PD_OK && pts && c.household_id[0])
        rc = st->ops->household_points(st, c.household_id, points_cb, &pc);
    if (rc == PD_OK && pts && rh) {
        pc.role = "related";
        rc = st->ops->household_points(st, rel, points_cb, &pc);
    }
    cJSON *shape = cJSON_CreateObject();
    if (rc == PD_OK && shape) {
        int src = st->ops->shapes_in(st, c.area, shape_cb, shape);
        if (src != PD_OK && src != 1)
            rc = src;
    }
    if (shape && cJSON_GetObjectItemCaseSensitive(shape, "ring"))
        cJSON_AddItemToObject(o, "shape", shape);
    else {
        cJSON_Delete(shape);
        cJSON_AddNullToObject(o, "shape");
    }
    conflict_clear(&c);
    free(nc);
    if (rc != PD_OK) {
        cJSON_Delete(o);
        return storage_error(srv, r);
    }
    r->json = o;
    r->status = 200;
    return 200;
}

/* ---- resolve ------------------------------------------------------------------------------------
 */

typedef struct resolve_req {
    const char *action;
    const cJSON *value; /* NULL if absent */
    const char *into;   /* merge */
    const char *member; /* split */
    char note[PD_SRV_NOTE_MAX + 1];
} resolve_req;

/* One resolution in progress (inside its transaction). */
typedef struct ko_act {
    pd_server *srv;
    pd_storage *st;
    const actor *who;
    const ko_conflict *c;
    int64_t now;
    char change_dev[PD_SRV_ID_MAX + 1]; /* field_rev's "device" of a korcam's change */
    char stands[512];                   /* what the decision left, for the conflict row */
    int64_t task_id;
    /* the failure to answer with */
    int status;
    const char *error;
} ko_act;

static int act_fail(ko_act *a, int status, const char *error, const char *fmt, ...) PD_PRINTF(4, 5);
static int act_fail(ko_act *a, int status, const char *error, const char *fmt, ...)
{
    a->status = status;
    a->error = error;
    pd_error *e = srv_err(a->srv);
    e->code = status == 409 ? PD_ERR_STATE : PD_ERR_INVALID;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return e->code;
}

static int act_storage(ko_act *a)
{
    int code = pd_storage_error(a->st)->code ? pd_storage_error(a->st)->code : PD_ERR_INTERNAL;
    a->status = code == PD_ERR_BUSY ? 503 : code == PD_ERR_NOTFOUND ? 404 : 500;
    a->error = code == PD_ERR_BUSY ? "busy" : code == PD_ERR_NOTFOUND ? "not_found" : "internal";
    if (code == PD_ERR_INVALID) {
        a->status = 400;
        a->error = "bad_request";
    }
    srv_fail(a->srv, code, "%s", pd_storage_errmsg(a->st));
    return code;
}

static int act_audit(ko_act *a, const char *entity, const char *target, const char *field,
                     const pd_value *old_v, const pd_value *new_v, int64_t rev)
{
    pd_srv_audit au = {.at = a->now,
                       .action = "resolve",
                       .actor = a->who->user.id,
                       .entity = entity,
                       .target = target,
                       .field = field,
                       .old_value = old_v,
                       .new_value = new_v,
                       .rev = rev};
    return a->st->ops->audit_add(a->st, &au) == PD_OK ? PD_OK : act_storage(a);
}

/* The record must exist and lie in the korcam's area. */
static int act_check_area(ko_act *a, pd_entity e, const char *id)
{
    char desa[PD_SRV_CODE_MAX + 1];
    int rc = a->st->ops->record_area(a->st, e, id, desa);
    if (rc == PD_ERR_NOTFOUND || (rc == PD_OK && !srv_areas_cover(a->who->user.area, desa)))
        return act_fail(a, 404, "not_found", "no %s %s in your area", pd_entity_name(e), id);
    return rc == PD_OK ? PD_OK : act_storage(a);
}

/* Set one field of a household or member at a new revision, checked as a device would check it
 * (a delta with a value a device refuses would stop that device's sync). */
static int act_set(ko_act *a, pd_entity e, const char *id, const char *field, const pd_value *v)
{
    int col = pd_entity_column(e, field);
    const pd_record *rec = pd_record_of(pd_entity_name(e));
    const pd_field *f = rec ? pd_record_field(rec, field) : NULL;
    if (col < 0 || !f)
        return act_fail(a, 400, "bad_request", "%s has no field %s", pd_entity_name(e), field);
    pd_value val = *v;
    pd_error err = {0};
    if (pd_field_check(rec, f, &val, a->now, NULL, &err) != PD_OK)
        return act_fail(a, 400, "bad_request", "%s", err.msg);
    pd_srv_value old = {0};
    int64_t rev;
    int rc = a->st->ops->field_get(a->st, e, id, col, &old);
    if (rc != PD_OK)
        return act_storage(a);
    if ((rc = a->st->ops->revision_next(a->st, &rev)) != PD_OK) {
        pd_srv_value_clear(&old);
        return act_storage(a);
    }
    pd_srv_change ch;
    memset(&ch, 0, sizeof ch);
    ch.rev = rev;
    ch.hlc = a->now << 16;
    snprintf(ch.device_id, sizeof ch.device_id, "%s", a->change_dev);
    rc = a->st->ops->field_set(a->st, e, id, col, &val, &ch);
    if (rc != PD_OK) {
        pd_srv_value_clear(&old);
        return act_storage(a);
    }
    rc = act_audit(a, pd_entity_name(e), id, field, &old.v, &val, rev);
    pd_srv_value_clear(&old);
    return rc;
}

static int act_set_text(ko_act *a, pd_entity e, const char *id, const char *field, const char *text)
{
    pd_value v = text_value(text);
    return act_set(a, e, id, field, &v);
}

/* Write the record's current value of field again at a new revision (devices pull it). */
static int act_reassert(ko_act *a, pd_entity e, const char *id, const char *field)
{
    pd_srv_value cur = {0};
    int col = pd_entity_column(e, field);
    if (col < 0)
        return act_fail(a, 400, "bad_request", "%s has no field %s", pd_entity_name(e), field);
    if (a->st->ops->field_get(a->st, e, id, col, &cur) != PD_OK)
        return act_storage(a);
    int rc = act_set(a, e, id, field, &cur.v);
    pd_srv_value_clear(&cur);
    return rc;
}

/* A value the korcam typed, for a column: a JSON string, number or null. */
static int value_from_json(ko_act *a, const cJSON *j, pd_entity e, const char *field, pd_value *out,
                           char *buf, size_t cap)
{
    size_t ncols;
    const pd_column *cols = pd_entity_columns(e, &ncols);
    int col = pd_entity_column(e, field);
    if (col < 0 || !cols[col].settable)
        return act_fail(a, 400, "bad_request", "%s.%s cannot be given a value", pd_entity_name(e),
                        field);
    memset(out, 0, sizeof *out);
    if (!j || cJSON_IsNull(j)) {
        out->type = PD_VAL_NULL;
        return PD_OK;
    }
    pd_value_type t = cols[col].type;
    if (cJSON_IsString(j)) {
        const char *s = j->valuestring;
        if (strlen(s) >= cap)
            return act_fail(a, 400, "bad_request", "the value is too long");
        if (t == PD_VAL_TEXT) {
            snprintf(buf, cap, "%s", s);
            *out = text_value(buf);
            return PD_OK;
        }
        char *end = NULL;
        if (t == PD_VAL_INT) {
            long long v = strtoll(s, &end, 10);
            if (!*s || *end || strlen(s) > 18)
                return act_fail(a, 400, "bad_request", "%s must be a whole number", field);
            out->type = PD_VAL_INT;
            out->i = v;
            return PD_OK;
        }
        double d = strtod(s, &end);
        if (!*s || *end || !isfinite(d))
            return act_fail(a, 400, "bad_request", "%s must be a number", field);
        out->type = PD_VAL_REAL;
        out->r = d;
        return PD_OK;
    }
    if (cJSON_IsNumber(j) && t != PD_VAL_TEXT) {
        double d = j->valuedouble;
        if (!isfinite(d))
            return act_fail(a, 400, "bad_request", "%s must be a number", field);
        if (t == PD_VAL_INT) {
            if (d != floor(d) || fabs(d) > 9007199254740992.0)
                return act_fail(a, 400, "bad_request", "%s must be a whole number", field);
            out->type = PD_VAL_INT;
            out->i = (int64_t)d;
        } else {
            out->type = PD_VAL_REAL;
            out->r = d;
        }
        return PD_OK;
    }
    return act_fail(a, 400, "bad_request", "the value for %s must be %s", field,
                    t == PD_VAL_TEXT ? "a string" : "a number");
}

static pd_entity entity_of(const ko_conflict *c)
{
    return !strcmp(c->entity, "member") ? PD_ENT_MEMBER : PD_ENT_HOUSEHOLD;
}

/* Active members of a household. */
static int64_t active_count(const ko_rows *mm)
{
    int64_t n = 0;
    for (size_t i = 0; i < mm->n; i++) {
        const char *s = row_text(&mm->v[i], "status");
        if (s && !strcmp(s, "active"))
            n++;
    }
    return n;
}

static int act_member_count(ko_act *a, const char *household_id)
{
    ko_rows mm;
    if (load_members(a->st, household_id, &mm) != PD_OK) {
        rows_clear(&mm);
        return act_storage(a);
    }
    int64_t n = active_count(&mm);
    rows_clear(&mm);
    if (n < 1)
        return PD_OK; /* a household's count is at least 1 on devices; it keeps the old one */
    pd_value v = {.type = PD_VAL_INT, .i = n > 99 ? 99 : n};
    return act_set(a, PD_ENT_HOUSEHOLD, household_id, "member_count", &v);
}

/* Insert a copy of member row m into household hh as member_no no, with overrides. */
static int act_copy_member(ko_act *a, const ko_row *m, const char *hh, int64_t no,
                           int64_t relationship, char *new_id, size_t cap)
{
    int n = snprintf(new_id, cap, "%s%02d", hh, (int)no);
    if (n < 0 || (size_t)n >= cap || n > 63)
        return act_fail(a, 400, "bad_request", "household id %s is too long for member ids", hh);
    pd_srv_field f[48];
    size_t k = 0;
    pd_value idv = text_value(new_id), hv = text_value(hh), active = text_value("active"),
             fresh = text_value("new");
    pd_value nov = {.type = PD_VAL_INT, .i = no}, relv = {.type = PD_VAL_INT, .i = relationship};
    for (size_t i = 0; i < m->n && k < PD_ARRAY_LEN(f); i++) {
        const char *name = m->name[i];
        if (!strcmp(name, "rev"))
            continue;
        f[k].name = name;
        if (!strcmp(name, "id"))
            f[k].value = idv;
        else if (!strcmp(name, "household_id"))
            f[k].value = hv;
        else if (!strcmp(name, "member_no"))
            f[k].value = nov;
        else if (!strcmp(name, "relationship"))
            f[k].value = relv;
        else if (!strcmp(name, "status"))
            f[k].value = active;
        else if (!strcmp(name, "outcome"))
            f[k].value = fresh;
        else
            f[k].value = m->v[i].v;
        k++;
    }
    int64_t rev;
    if (a->st->ops->revision_next(a->st, &rev) != PD_OK)
        return act_storage(a);
    int rc = a->st->ops->record_insert(a->st, PD_ENT_MEMBER, f, k, rev);
    if (rc == PD_ERR_EXISTS)
        return act_fail(a, 409, "conflict", "member %s exists already", new_id);
    if (rc != PD_OK)
        return act_storage(a);
    char what[300];
    snprintf(what, sizeof what, "copy of member %s", row_text(m, "id") ? row_text(m, "id") : "");
    pd_value wv = text_value(what);
    return act_audit(a, "member", new_id, "", NULL, &wv, rev);
}

/* Merge household src into dst: its active members join dst (one already there by NIK is marked
 * a duplicate instead), each old member row is ended as moved, src becomes "joined_other". */
static int act_merge(ko_act *a, const char *src, const char *dst)
{
    if (!src[0] || !dst[0] || !strcmp(src, dst))
        return act_fail(a, 400, "bad_request",
                        "merge needs two different households (give "
                        "the one to merge into)");
    int rc;
    if ((rc = act_check_area(a, PD_ENT_HOUSEHOLD, src)) != PD_OK ||
        (rc = act_check_area(a, PD_ENT_HOUSEHOLD, dst)) != PD_OK)
        return rc;
    ko_rows sm, dm;
    if (load_members(a->st, dst, &dm) != PD_OK || load_members(a->st, src, &sm) != PD_OK) {
        rows_clear(&dm);
        return act_storage(a);
    }
    int64_t max_no = 0;
    for (size_t i = 0; i < dm.n; i++) {
        int64_t no = row_int(&dm.v[i], "member_no", 0);
        if (no > max_no)
            max_no = no;
    }
    for (size_t i = 0; rc == PD_OK && i < sm.n; i++) {
        const ko_row *m = &sm.v[i];
        const char *status = row_text(m, "status"), *nik = row_text(m, "nik");
        const char *mid = row_text(m, "id");
        if (!status || strcmp(status, "active") != 0 || !mid)
            continue;
        bool dup = false;
        for (size_t j = 0; nik && *nik && !is_placeholder_nik(nik) && j < dm.n; j++) {
            const char *dn = row_text(&dm.v[j], "nik"), *ds = row_text(&dm.v[j], "status");
            if (dn && !strcmp(dn, nik) && ds && !strcmp(ds, "active"))
                dup = true;
        }
        if (dup) {
            if ((rc = act_set_text(a, PD_ENT_MEMBER, mid, "status", "duplicate")) == PD_OK)
                rc = act_set_text(a, PD_ENT_MEMBER, mid, "outcome", "duplicate");
            continue;
        }
        if (max_no >= 99) {
            rc = act_fail(a, 400, "bad_request", "household %s has no member number left", dst);
            break;
        }
        int64_t rel = row_int(m, "relationship", 9);
        char new_id[80];
        if ((rc = act_copy_member(a, m, dst, ++max_no, rel == 1 ? 9 : rel, new_id,
                                  sizeof new_id)) == PD_OK &&
            (rc = act_set_text(a, PD_ENT_MEMBER, mid, "status", "moved")) == PD_OK)
            rc = act_set_text(a, PD_ENT_MEMBER, mid, "outcome", "moved");
    }
    rows_clear(&sm);
    rows_clear(&dm);
    if (rc == PD_OK)
        rc = act_set_text(a, PD_ENT_HOUSEHOLD, src, "status", "joined_other");
    if (rc == PD_OK)
        rc = act_member_count(a, dst);
    if (rc == PD_OK)
        snprintf(a->stands, sizeof a->stands, "household %.63s merged into %.63s", src, dst);
    return rc;
}

/* Split member mid out of its household into a new one it heads. */
static int act_split(ko_act *a, const char *mid, const char *allowed1, const char *allowed2)
{
    ko_row m, h;
    memset(&h, 0, sizeof h);
    int rc = load_row(a->st, PD_ENT_MEMBER, mid, &m);
    if (rc == PD_ERR_NOTFOUND) {
        row_clear(&m);
        return act_fail(a, 404, "not_found", "no member %s in your area", mid);
    }
    if (rc != PD_OK) {
        row_clear(&m);
        return act_storage(a);
    }
    const char *hh = row_text(&m, "household_id"), *status = row_text(&m, "status");
    const char *name = row_text(&m, "name");
    char hid[256], nid[256];
    snprintf(hid, sizeof hid, "%s", hh ? hh : "");
    if ((rc = act_check_area(a, PD_ENT_MEMBER, mid)) != PD_OK)
        goto out;
    if (strcmp(hid, allowed1) != 0 && strcmp(hid, allowed2) != 0) {
        rc = act_fail(a, 400, "bad_request", "member %s is not in a household of this conflict",
                      mid);
        goto out;
    }
    if (!status || strcmp(status, "active") != 0 || !name) {
        rc = act_fail(a, 400, "bad_request", "member %s is not active", mid);
        goto out;
    }
    ko_rows mm;
    if (load_members(a->st, hid, &mm) != PD_OK) {
        rows_clear(&mm);
        rc = act_storage(a);
        goto out;
    }
    int64_t active = active_count(&mm);
    rows_clear(&mm);
    if (active < 2) {
        rc = act_fail(a, 400, "bad_request",
                      "member %s is the only active member of %s: "
                      "nothing to split",
                      mid, hid);
        goto out;
    }
    int n = snprintf(nid, sizeof nid, "%s-s%02d", hid, (int)row_int(&m, "member_no", 0));
    if (n < 0 || n > 61) {
        rc = act_fail(a, 400, "bad_request", "household id %s is too long to split", hid);
        goto out;
    }
    int64_t rev;
    if (a->st->ops->record_rev(a->st, PD_ENT_HOUSEHOLD, nid, &rev) == PD_OK) {
        rc = act_fail(a, 409, "conflict", "member %s was split out already (%s)", mid, nid);
        goto out;
    }
    if ((rc = load_row(a->st, PD_ENT_HOUSEHOLD, hid, &h)) != PD_OK) {
        rc = act_storage(a);
        goto out;
    }
    /* the new household: the old one's place, this member as its head */
    static const char *const keep[] = {"prov", "kab",     "kec", "desa",
                                       "sls",  "address", "lat", "lon"};
    pd_srv_field f[16];
    size_t k = 0;
    pd_value idv = text_value(nid), src = text_value("new"), head = text_value(name);
    pd_value one = {.type = PD_VAL_INT, .i = 1};
    const pd_value *kk = row_get(&m, "kk");
    f[k++] = (pd_srv_field){"id", idv};
    f[k++] = (pd_srv_field){"source", src};
    f[k++] = (pd_srv_field){"head_name", head};
    f[k++] = (pd_srv_field){"member_count", one};
    if (kk)
        f[k++] = (pd_srv_field){"kk", *kk};
    for (size_t i = 0; i < PD_ARRAY_LEN(keep); i++) {
        const pd_value *v = row_get(&h, keep[i]);
        if (v)
            f[k++] = (pd_srv_field){keep[i], *v};
    }
    if (a->st->ops->revision_next(a->st, &rev) != PD_OK ||
        a->st->ops->record_insert(a->st, PD_ENT_HOUSEHOLD, f, k, rev) != PD_OK) {
        rc = act_storage(a);
        goto out;
    }
    char what[300];
    snprintf(what, sizeof what, "split out of household %s", hid);
    pd_value wv = text_value(what);
    char new_mid[80];
    if ((rc = act_audit(a, "household", nid, "", NULL, &wv, rev)) != PD_OK ||
        (rc = act_copy_member(a, &m, nid, 1, 1, new_mid, sizeof new_mid)) != PD_OK ||
        (rc = act_set_text(a, PD_ENT_MEMBER, mid, "status", "moved")) != PD_OK ||
        (rc = act_set_text(a, PD_ENT_MEMBER, mid, "outcome", "moved")) != PD_OK ||
        (rc = act_member_count(a, hid)) != PD_OK)
        goto out;
    snprintf(a->stands, sizeof a->stands, "member %.63s split out of %.63s into %.63s", mid, hid,
             nid);
out:
    row_clear(&m);
    row_clear(&h);
    return rc;
}

static int act_revisit(ko_act *a, const resolve_req *q)
{
    const ko_conflict *c = a->c;
    int64_t rev;
    if (a->st->ops->revision_next(a->st, &rev) != PD_OK)
        return act_storage(a);
    pd_srv_task t = {.kind = "revisit",
                     .household_id = c->household_id[0] ? c->household_id : c->target,
                     .area = c->area,
                     .assignee = c->device_user,
                     .conflict_id = c->id,
                     .note = q->note,
                     .created_by = a->who->user.id,
                     .created_at = a->now,
                     .rev = rev};
    if (a->st->ops->task_add(a->st, &t, &a->task_id) != PD_OK)
        return act_storage(a);
    pd_value nv = text_value(q->note);
    int rc = act_audit(a, "household", t.household_id, "", NULL, &nv, rev);
    if (rc != PD_OK)
        return rc;
    snprintf(a->stands, sizeof a->stands, "revisit of household %.255s (task %lld)", t.household_id,
             (long long)a->task_id);
    return PD_OK;
}

/* The other member a NIK conflict is about (the related id), which must be set. */
static int need_related(ko_act *a)
{
    if (!a->c->related[0])
        return act_fail(a, 400, "bad_request",
                        "conflict %lld does not name the other record; "
                        "enter a value, split or send it for a revisit",
                        (long long)a->c->id);
    return PD_OK;
}

/* "server" and "device" for each kind (PROTOCOL.md §9.3). */
static int act_take(ko_act *a, bool device)
{
    const ko_conflict *c = a->c;
    pd_entity e = entity_of(c);
    int rc;
    if (!strcmp(c->kind, "field")) {
        if (device) {
            rc = act_set(a, e, c->target, c->field, &c->device.v);
        } else {
            rc = act_reassert(a, e, c->target, c->field);
        }
        return rc;
    }
    if (!strcmp(c->kind, "double_visit")) {
        const pd_value *v = device ? &c->device.v : &c->server.v;
        return act_set(a, PD_ENT_HOUSEHOLD, c->target, "status", v);
    }
    if (!strcmp(c->kind, "create")) {
        if (!device)
            return act_reassert(a, e, c->target, e == PD_ENT_MEMBER ? "name" : "head_name");
        if (c->device.v.type != PD_VAL_TEXT)
            return act_fail(a, 400, "bad_request", "the device's record is not readable");
        cJSON *j = srv_json_parse(c->device.v.p, c->device.v.len);
        if (!cJSON_IsObject(j)) {
            cJSON_Delete(j);
            return act_fail(a, 400, "bad_request", "the device's record is not readable");
        }
        size_t ncols;
        const pd_column *cols = pd_entity_columns(e, &ncols);
        const cJSON *it;
        rc = PD_OK;
        cJSON_ArrayForEach(it, j)
        {
            int col = pd_entity_column(e, it->string);
            if (col < 0 || !cols[col].settable)
                continue;
            pd_value v;
            char buf[512];
            if ((rc = value_from_json(a, it, e, it->string, &v, buf, sizeof buf)) != PD_OK)
                break;
            pd_srv_value cur = {0};
            if (a->st->ops->field_get(a->st, e, c->target, col, &cur) != PD_OK) {
                rc = act_storage(a);
                break;
            }
            bool same = values_equal(&cur.v, &v);
            pd_srv_value_clear(&cur);
            if (!same && (rc = act_set(a, e, c->target, it->string, &v)) != PD_OK)
                break;
        }
        cJSON_Delete(j);
        return rc;
    }
    if (!strcmp(c->kind, "duplicate_household")) {
        if (device)
            return act_reassert(a, PD_ENT_HOUSEHOLD, c->target, "head_name"); /* keep both */
        /* the existing household stands: the proposal is dropped */
        ko_rows mm;
        if (load_members(a->st, c->target, &mm) != PD_OK) {
            rows_clear(&mm);
            return act_storage(a);
        }
        rc = PD_OK;
        for (size_t i = 0; rc == PD_OK && i < mm.n; i++) {
            const char *s = row_text(&mm.v[i], "status"), *mid = row_text(&mm.v[i], "id");
            if (s && mid && !strcmp(s, "active") &&
                (rc = act_set_text(a, PD_ENT_MEMBER, mid, "status", "duplicate")) == PD_OK)
                rc = act_set_text(a, PD_ENT_MEMBER, mid, "outcome", "duplicate");
        }
        rows_clear(&mm);
        return rc == PD_OK ? act_set_text(a, PD_ENT_HOUSEHOLD, c->target, "status", "joined_other")
                           : rc;
    }
    if (!strcmp(c->kind, "duplicate_nik")) {
        if (!device) /* the other holder keeps the NIK: this member's goes back */
            return act_set(a, PD_ENT_MEMBER, c->target, "nik", &c->base.v);
        if ((rc = need_related(a)) != PD_OK)
            return rc;
        ko_row o;
        if (load_row(a->st, PD_ENT_MEMBER, c->related, &o) != PD_OK) {
            row_clear(&o);
            return act_fail(a, 404, "not_found", "member %s is gone", c->related);
        }
        const char *oh = row_text(&o, "household_id");
        bool same = oh && !strcmp(oh, c->household_id);
        row_clear(&o);
        if ((rc = act_check_area(a, PD_ENT_MEMBER, c->related)) != PD_OK)
            return rc;
        if (same) /* one person listed twice in a household: the other row is the duplicate */
            return (rc = act_set_text(a, PD_ENT_MEMBER, c->related, "status", "duplicate")) == PD_OK
                       ? act_set_text(a, PD_ENT_MEMBER, c->related, "outcome", "duplicate")
                       : rc;
        pd_value null = {.type = PD_VAL_NULL};
        return act_set(a, PD_ENT_MEMBER, c->related, "nik", &null);
    }
    if (!strcmp(c->kind, "moved_active")) {
        bool status = !strcmp(c->field, "status");
        if (!device) /* the other record stands: this member's change goes back */
            return act_set(a, PD_ENT_MEMBER, c->target, status ? "status" : "nik", &c->base.v);
        if ((rc = need_related(a)) != PD_OK ||
            (rc = act_check_area(a, PD_ENT_MEMBER, c->related)) != PD_OK)
            return rc;
        char v[16] = "";
        if (status) {
            /* the report stands: a person who died is deceased everywhere; one who moved out
             * may well be active where they went */
            if (value_text(&c->device.v, v, sizeof v) && !strcmp(v, "deceased") &&
                (rc = act_set_text(a, PD_ENT_MEMBER, c->related, "status", "deceased")) == PD_OK)
                rc = act_set_text(a, PD_ENT_MEMBER, c->related, "outcome", "deceased");
            return rc == PD_OK ? act_reassert(a, PD_ENT_MEMBER, c->target, "status") : rc;
        }
        /* this member is the person, alive and here: the other record moved away */
        if ((rc = act_set_text(a, PD_ENT_MEMBER, c->related, "status", "moved")) == PD_OK)
            rc = act_set_text(a, PD_ENT_MEMBER, c->related, "outcome", "moved");
        return rc;
    }
    return act_fail(a, 400, "bad_request", "a %s conflict cannot be decided that way", c->kind);
}

static int act_value(ko_act *a, const resolve_req *q)
{
    const ko_conflict *c = a->c;
    if (!q->value)
        return act_fail(a, 400, "bad_request", "give the value");
    pd_entity e = entity_of(c);
    const char *field = c->field;
    if (!strcmp(c->kind, "double_visit")) {
        e = PD_ENT_HOUSEHOLD;
        field = "status";
    }
    if (!field[0])
        return act_fail(a, 400, "bad_request", "a %s conflict has no single field to set", c->kind);
    pd_value v;
    char buf[1024];
    int rc = value_from_json(a, q->value, e, field, &v, buf, sizeof buf);
    return rc == PD_OK ? act_set(a, e, c->target, field, &v) : rc;
}

/* The value that stands on the conflict's field after the decision (for the conflict row). */
static void standing_value(ko_act *a, pd_srv_value *out)
{
    memset(out, 0, sizeof *out);
    const ko_conflict *c = a->c;
    if (a->stands[0]) {
        pd_value v = text_value(a->stands);
        value_copy(out, &v);
        return;
    }
    pd_entity e = entity_of(c);
    const char *field = !strcmp(c->kind, "double_visit") ? "status" : c->field;
    int col = field[0] ? pd_entity_column(e, field) : -1;
    if (col >= 0)
        a->st->ops->field_get(a->st, e, c->target, col, out);
}

static int resolve_body(ko_act *a, const resolve_req *q)
{
    const ko_conflict *c = a->c;
    unsigned mask = actions_of(c->kind);
    int which = -1;
    for (size_t i = 0; i < PD_ARRAY_LEN(action_names); i++)
        if (!strcmp(action_names[i], q->action))
            which = (int)i;
    if (which < 0)
        return act_fail(a, 400, "bad_request",
                        "action must be server, device, value, merge, "
                        "split or revisit");
    if (!(mask & (1u << which)))
        return act_fail(a, 400, "bad_request", "a %s conflict cannot be resolved by %s", c->kind,
                        q->action);
    int rc;
    switch (1u << which) {
    case A_SERVER:
        rc = act_take(a, false);
        break;
    case A_DEVICE:
        rc = act_take(a, true);
        break;
    case A_VALUE:
        rc = act_value(a, q);
        break;
    case A_MERGE: {
        char rel[256];
        related_household(a->srv, c, rel, sizeof rel);
        const char *src = c->household_id, *dst = rel;
        if (q->into && *q->into) {
            dst = q->into;
            src = strcmp(c->household_id, q->into) ? c->household_id : rel;
        }
        rc = act_merge(a, src, dst);
        break;
    }
    case A_SPLIT: {
        if (!q->member || !*q->member)
            return act_fail(a, 400, "bad_request", "give the member to split out");
        char rel[256];
        related_household(a->srv, c, rel, sizeof rel);
        rc = act_split(a, q->member, c->household_id, rel[0] ? rel : c->household_id);
        break;
    }
    default:
        rc = act_revisit(a, q);
    }
    if (rc != PD_OK)
        return rc;
    int64_t rev;
    if (a->st->ops->revision_next(a->st, &rev) != PD_OK)
        return act_storage(a);
    pd_srv_value stands;
    standing_value(a, &stands);
    pd_srv_resolution res = {.id = c->id,
                             .resolution = q->action,
                             .value = &stands.v,
                             .by = a->who->user.id,
                             .at = a->now,
                             .note = q->note,
                             .rev = rev};
    rc = a->st->ops->conflict_resolve(a->st, &res);
    if (rc == PD_ERR_STATE) {
        pd_srv_value_clear(&stands);
        return act_fail(a, 409, "conflict", "%s", pd_storage_errmsg(a->st));
    }
    if (rc != PD_OK) {
        pd_srv_value_clear(&stands);
        return act_storage(a);
    }
    /* the decision itself: who, when, why */
    cJSON *why = cJSON_CreateObject();
    char *text = NULL;
    if (why) {
        cJSON_AddStringToObject(why, "resolution", q->action);
        cJSON_AddStringToObject(why, "note", q->note);
        cJSON_AddItemToObject(why, "value", json_value(&stands.v));
        text = cJSON_PrintUnformatted(why);
        cJSON_Delete(why);
    }
    pd_srv_value_clear(&stands);
    if (!text)
        return act_fail(a, 500, "internal", "out of memory");
    char idtxt[24];
    snprintf(idtxt, sizeof idtxt, "%lld", (long long)c->id);
    pd_value tv = text_value(text), kv = text_value("open");
    rc = act_audit(a, "conflict", idtxt, c->kind, &kv, &tv, rev);
    free(text);
    return rc;
}

static int api_resolve(pd_server *srv, const actor *who, int64_t id, const srv_req *q, srv_resp *r)
{
    cJSON *in = srv_json_parse(q->body, q->body_len);
    if (!cJSON_IsObject(in)) {
        cJSON_Delete(in);
        return srv_resp_error(r, 400, "bad_request",
                              "the body must be a JSON object "
                              "{\"action\": ..., \"note\": ...} with no \\u0000 in its strings");
    }
    resolve_req rq;
    memset(&rq, 0, sizeof rq);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(in, "action");
    const cJSON *note = cJSON_GetObjectItemCaseSensitive(in, "note");
    const cJSON *into = cJSON_GetObjectItemCaseSensitive(in, "into");
    const cJSON *member = cJSON_GetObjectItemCaseSensitive(in, "member");
    rq.value = cJSON_GetObjectItemCaseSensitive(in, "value");
    int status = 0;
    if (!cJSON_IsString(act)) {
        status = srv_resp_error(r, 400, "bad_request", "action must be a string");
    } else if (note && !cJSON_IsNull(note) &&
               (!cJSON_IsString(note) || strlen(note->valuestring) > PD_SRV_NOTE_MAX)) {
        status = srv_resp_error(r, 400, "bad_request", "note must be text of at most %d bytes",
                                PD_SRV_NOTE_MAX);
    } else if ((into && !cJSON_IsNull(into) &&
                (!cJSON_IsString(into) || strlen(into->valuestring) > 63)) ||
               (member && !cJSON_IsNull(member) &&
                (!cJSON_IsString(member) || strlen(member->valuestring) > 63))) {
        status = srv_resp_error(r, 400, "bad_request", "into and member must be record ids");
    }
    if (!status && cJSON_IsString(note) && note->valuestring[0]) {
        snprintf(rq.note, sizeof rq.note, "%s", note->valuestring);
        for (char *p = rq.note; *p; p++)
            if (*p == '\n' || *p == '\r' || *p == '\t')
                *p = ' ';
        if (!srv_valid_text(rq.note, PD_SRV_NOTE_MAX))
            status = srv_resp_error(r, 400, "bad_request",
                                    "note must be UTF-8 text without "
                                    "control characters");
    }
    if (status) {
        cJSON_Delete(in);
        return status;
    }
    rq.action = act->valuestring;
    rq.into = cJSON_IsString(into) ? into->valuestring : NULL;
    rq.member = cJSON_IsString(member) ? member->valuestring : NULL;

    pd_storage *st = srv_store(srv);
    if (st->ops->begin(st) != PD_OK) {
        cJSON_Delete(in);
        return storage_error(srv, r);
    }
    name_cache *nc = calloc(1, sizeof *nc);
    ko_conflict c;
    memset(&c, 0, sizeof c);
    int e = nc ? conflict_for(srv, who, id, &c, NULL, r)
               : srv_resp_error(r, 500, "internal", "out of memory");
    if (e) {
        st->ops->rollback(st);
        cJSON_Delete(in);
        free(nc);
        return e;
    }
    if (c.resolved) {
        st->ops->rollback(st);
        char when[40];
        srv_http_date(c.resolved_at, when);
        status = srv_resp_error(r, 409, "already_resolved",
                                "conflict %lld was resolved by %s "
                                "on %s",
                                (long long)id, c.resolved_by, when);
        conflict_clear(&c);
        cJSON_Delete(in);
        free(nc);
        return status;
    }
    ko_act a = {.srv = srv, .st = st, .who = who, .c = &c, .now = srv_now_ms()};
    /* a device id is [0-9A-Za-z_-]: the colon keeps a korcam's change apart from any device */
    snprintf(a.change_dev, sizeof a.change_dev, "korcam:%.25s", who->user.id);
    int rc = resolve_body(&a, &rq);
    if (rc == PD_OK && st->ops->commit(st) != PD_OK)
        rc = act_storage(&a);
    if (rc != PD_OK) {
        st->ops->rollback(st);
        status = srv_resp_error(r, a.status ? a.status : 500, a.error ? a.error : "internal", "%s",
                                pd_server_errmsg(srv));
        conflict_clear(&c);
        cJSON_Delete(in);
        free(nc);
        return status;
    }
    conflict_clear(&c);
    cJSON_Delete(in);
    /* answer with the conflict as it is now */
    ko_conflict now;
    e = conflict_for(srv, who, id, &now, nc, r);
    if (e) {
        free(nc);
        return e;
    }
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        conflict_clear(&now);
        free(nc);
        return srv_resp_error(r, 500, "internal", "out of memory");
    }
    cJSON_AddItemToObject(o, "conflict", now.json);
    now.json = NULL;
    if (a.task_id)
        cJSON_AddNumberToObject(o, "task", (double)a.task_id);
    else
        cJSON_AddNullToObject(o, "task");
    conflict_clear(&now);
    free(nc);
    r->json = o;
    r->status = 200;
    return 200;
}

/* ---- summary ------------------------------------------------------------------------------------
 */

typedef struct sum_ctx {
    cJSON *arr;
    int64_t t[6];
} sum_ctx;

static int summary_cb(void *ctx, const pd_srv_desa_summary *d)
{
    sum_ctx *s = ctx;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return 1;
    cJSON_AddStringToObject(o, "desa", d->desa);
    cJSON_AddStringToObject(o, "name", d->name);
    int64_t v[6] = {d->households,         d->visited, d->pending, d->conflicts_open,
                    d->conflicts_resolved, d->tasks};
    static const char *const names[6] = {
        "households", "visited", "pending", "conflicts_open", "conflicts_resolved", "tasks"};
    for (int i = 0; i < 6; i++) {
        cJSON_AddNumberToObject(o, names[i], (double)v[i]);
        s->t[i] += v[i];
    }
    cJSON_AddItemToArray(s->arr, o);
    return 0;
}

static int api_summary(pd_server *srv, const actor *a, srv_resp *r)
{
    cJSON *o = cJSON_CreateObject();
    sum_ctx s = {0};
    if (!o || !(s.arr = cJSON_AddArrayToObject(o, "desa"))) {
        cJSON_Delete(o);
        return srv_resp_error(r, 500, "internal", "out of memory");
    }
    int rc = srv_store(srv)->ops->desa_summary(srv_store(srv), a->user.area, summary_cb, &s);
    if (rc != PD_OK) {
        cJSON_Delete(o);
        return rc == 1 ? srv_resp_error(r, 500, "internal", "out of memory")
                       : storage_error(srv, r);
    }
    cJSON_AddStringToObject(o, "area", a->user.area);
    cJSON *t = cJSON_AddObjectToObject(o, "total");
    static const char *const names[6] = {
        "households", "visited", "pending", "conflicts_open", "conflicts_resolved", "tasks"};
    for (int i = 0; t && i < 6; i++)
        cJSON_AddNumberToObject(t, names[i], (double)s.t[i]);
    r->json = o;
    r->status = 200;
    return 200;
}

/* ---- routing inside the API (shared by the device API and the web page) --------------------- */

static int api_route(pd_server *srv, const actor *a, const char *method, const char *rest,
                     const srv_req *q, srv_resp *r)
{
    bool get = !strcmp(method, "GET"), post = !strcmp(method, "POST");
    if (!strcmp(rest, "conflicts")) {
        if (!get)
            return srv_resp_error(r, 405, "method_not_allowed", "use GET");
        return api_list(srv, a, q, r);
    }
    if (!strcmp(rest, "summary")) {
        if (!get)
            return srv_resp_error(r, 405, "method_not_allowed", "use GET");
        return api_summary(srv, a, r);
    }
    if (!strncmp(rest, "conflicts/", 10)) {
        const char *p = rest + 10;
        size_t n = strcspn(p, "/");
        int64_t id;
        if (!parse_id(p, n, &id))
            return srv_resp_error(r, 404, "not_found", "no such resource");
        if (p[n] == '\0') {
            if (!get)
                return srv_resp_error(r, 405, "method_not_allowed", "use GET");
            return api_show(srv, a, id, r);
        }
        if (!strcmp(p + n, "/resolve")) {
            if (!post)
                return srv_resp_error(r, 405, "method_not_allowed", "use POST");
            return api_resolve(srv, a, id, q, r);
        }
    }
    return srv_resp_error(r, 404, "not_found", "no such resource");
}

static bool may_reconcile(const pd_srv_user *u)
{
    return !strcmp(u->role, "korcam") || !strcmp(u->role, "admin");
}

/* ==== the web page
 * ================================================================================= */

static void web_headers(srv_resp *r)
{
    srv_resp_header(r, "Content-Security-Policy", "%s", CSP);
    srv_resp_header(r, "X-Content-Type-Options", "nosniff");
    srv_resp_header(r, "X-Frame-Options", "DENY");
    srv_resp_header(r, "Referrer-Policy", "no-referrer");
    srv_resp_header(r, "Cache-Control", "no-store");
}

static int web_file(const char *name, srv_resp *r)
{
    for (size_t i = 0; i < srv_korcam_web_count; i++) {
        if (strcmp(srv_korcam_web[i].name, name) != 0)
            continue;
        r->body = malloc(srv_korcam_web[i].len ? srv_korcam_web[i].len : 1);
        if (!r->body)
            return srv_resp_error(r, 500, "internal", "out of memory");
        memcpy(r->body, srv_korcam_web[i].data, srv_korcam_web[i].len);
        r->body_len = srv_korcam_web[i].len;
        r->content_type = srv_korcam_web[i].type;
        r->status = 200;
        return 200;
    }
    return srv_resp_error(r, 404, "not_found", "no such file");
}

/* The session token of the request's cookie, hashed: false if there is none. */
static bool cookie_token(const srv_req *q, uint8_t hash[PD_HASH_BYTES])
{
    const char *h = q->header ? q->header(q->hctx, "Cookie") : NULL;
    if (!h)
        return false;
    const char *p = h;
    size_t nl = strlen(COOKIE_NAME);
    while ((p = strstr(p, COOKIE_NAME "=")) != NULL) {
        if (p == h || p[-1] == ' ' || p[-1] == ';') {
            const char *v = p + nl + 1;
            size_t n = strcspn(v, "; ");
            uint8_t tok[TOKEN_BYTES];
            char hex[2 * TOKEN_BYTES + 1];
            if (n != 2 * TOKEN_BYTES)
                return false;
            memcpy(hex, v, n);
            hex[n] = '\0';
            if (!srv_unhex(hex, tok, sizeof tok))
                return false;
            crypto_generichash(hash, PD_HASH_BYTES, tok, sizeof tok, NULL, 0);
            sodium_memzero(tok, sizeof tok);
            sodium_memzero(hex, sizeof hex);
            return true;
        }
        p += nl;
    }
    return false;
}

/* A POST from the page must come from the page: JSON (a cross-site form cannot send it without a
 * CORS preflight this server never grants) and, when the browser says, from this origin. */
static bool same_origin_post(const srv_req *q)
{
    const char *ct = q->header(q->hctx, "Content-Type");
    if (!ct || strncmp(ct, "application/json", 16) != 0)
        return false;
    const char *site = q->header(q->hctx, "Sec-Fetch-Site");
    if (site && strcmp(site, "same-origin") != 0)
        return false;
    const char *origin = q->header(q->hctx, "Origin");
    const char *host = q->header(q->hctx, "Host");
    if (origin && strcmp(origin, "null") != 0) {
        const char *o = !strncmp(origin, "http://", 7)    ? origin + 7
                        : !strncmp(origin, "https://", 8) ? origin + 8
                                                          : NULL;
        if (!o || !host || strcmp(o, host) != 0)
            return false;
    } else if (origin) {
        return false;
    }
    return true;
}

/* The session of a web request: 0 with *a filled, or an HTTP status. POSTs must echo the
 * session's CSRF token in X-CSRF-Token. */
static int web_session(pd_server *srv, const srv_req *q, bool post, actor *a, pd_srv_session *se,
                       srv_resp *r)
{
    uint8_t th[PD_HASH_BYTES];
    if (!cookie_token(q, th))
        return srv_resp_error(r, 401, "login_required", "log in first");
    pd_storage *st = srv_store(srv);
    int rc = st->ops->session_get(st, th, se);
    if (rc == PD_ERR_NOTFOUND || (rc == PD_OK && se->expires_at <= srv_now_ms()))
        return srv_resp_error(r, 401, "login_required", "the session ended: log in again");
    if (rc != PD_OK)
        return storage_error(srv, r);
    if (post) {
        const char *t = q->header(q->hctx, "X-CSRF-Token");
        if (!same_origin_post(q) || !t || strlen(t) != PD_SRV_CSRF_LEN ||
            sodium_memcmp(t, se->csrf, PD_SRV_CSRF_LEN) != 0)
            return srv_resp_error(r, 403, "csrf", "the request did not come from the page");
    }
    memset(a, 0, sizeof *a);
    a->web = true;
    rc = st->ops->user_get(st, se->user_id, &a->user);
    if (rc != PD_OK || !may_reconcile(&a->user))
        return srv_resp_error(r, 403, "denied", "only a korcam may use this page");
    return 0;
}

static void user_json(cJSON *o, const pd_srv_user *u)
{
    cJSON *j = cJSON_AddObjectToObject(o, "user");
    if (!j)
        return;
    cJSON_AddStringToObject(j, "id", u->id);
    cJSON_AddStringToObject(j, "name", u->name);
    cJSON_AddStringToObject(j, "role", u->role);
    cJSON_AddStringToObject(j, "area", u->area);
}

/* The hash an unknown user's password is checked against (the same work as a known user's, no
 * timing oracle): of a random password, made once. */
static char dummy_hash[crypto_pwhash_STRBYTES];

static void make_dummy_hash(void)
{
    char pw[33];
    uint8_t rnd[16];
    randombytes_buf(rnd, sizeof rnd);
    srv_hex(rnd, sizeof rnd, pw);
    if (crypto_pwhash_str(dummy_hash, pw, strlen(pw), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0)
        dummy_hash[0] = '\0';
}

static int web_login(pd_server *srv, const srv_req *q, srv_resp *r)
{
    if (!same_origin_post(q))
        return srv_resp_error(r, 403, "csrf", "log in from the page");
    cJSON *in = srv_json_parse(q->body, q->body_len);
    /* the raw body held the password: wipe it (http.c frees it after this handler) */
    if (q->body && q->body_len)
        sodium_memzero((void *)q->body, q->body_len);
    const cJSON *uj = cJSON_GetObjectItemCaseSensitive(in, "user");
    cJSON *pj = cJSON_GetObjectItemCaseSensitive(in, "password");
    int status = 0;
    char user_id[PD_SRV_ID_MAX + 1];
    char *password = NULL;
    size_t plen = 0;
    if (!cJSON_IsString(uj) || !srv_valid_id(uj->valuestring) || !cJSON_IsString(pj) ||
        (plen = strlen(pj->valuestring)) == 0 || plen > PASSWORD_MAX) {
        status = srv_resp_error(r, 400, "bad_request",
                                "give {\"user\": \"<user id>\", \"password\": \"...\"}");
        goto out;
    }
    snprintf(user_id, sizeof user_id, "%s", uj->valuestring);
    password = sodium_malloc(plen + 1);
    if (!password) {
        status = srv_resp_error(r, 500, "internal", "out of memory");
        goto out;
    }
    memcpy(password, pj->valuestring, plen + 1);
    sodium_memzero(pj->valuestring, plen);

    pd_storage *st = srv_store(srv);
    int64_t now = srv_now_ms(), fails = 0;
    if (st->ops->login_failures(st, user_id, now - LOGIN_WINDOW_MS, &fails) != PD_OK) {
        status = storage_error(srv, r);
        goto out;
    }
    if (fails >= LOGIN_FAILURES_MAX) {
        srv_resp_header(r, "Retry-After", "%lld", (long long)(LOGIN_WINDOW_MS / 1000));
        status = srv_resp_error(r, 429, "rate_limited",
                                "too many failed logins for %s: try "
                                "again in %lld minutes",
                                user_id, (long long)(LOGIN_WINDOW_MS / 60000));
        goto out;
    }
    char hash[crypto_pwhash_STRBYTES];
    pd_srv_user u;
    bool known = st->ops->user_get(st, user_id, &u) == PD_OK &&
                 st->ops->password_get(st, user_id, hash, sizeof hash) == PD_OK;
    if (!known) {
        /* the same work for an unknown user (no timing oracle): a hash of a random password */
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pthread_once(&once, make_dummy_hash); /* logins run in parallel on PostgreSQL */
        snprintf(hash, sizeof hash, "%s", dummy_hash);
    }
    /* Argon2id takes a while and 64 MiB: not under the storage lock */
    srv_unlock(srv);
    bool ok = hash[0] && crypto_pwhash_str_verify(hash, password, plen) == 0 && known;
    srv_lock(srv);
    sodium_memzero(hash, sizeof hash);
    if (!ok) {
        st->ops->login_failure_add(st, user_id, now);
        status = srv_resp_error(r, 401, "bad_login", "wrong user id or password");
        goto out;
    }
    if (!may_reconcile(&u)) {
        status = srv_resp_error(r, 403, "denied", "only a korcam may use this page");
        goto out;
    }
    uint8_t tok[TOKEN_BYTES], csrf[32];
    char tok_hex[2 * TOKEN_BYTES + 1];
    pd_srv_session se;
    memset(&se, 0, sizeof se);
    randombytes_buf(tok, sizeof tok);
    randombytes_buf(csrf, sizeof csrf);
    srv_hex(tok, sizeof tok, tok_hex);
    srv_hex(csrf, sizeof csrf, se.csrf);
    crypto_generichash(se.token_hash, sizeof se.token_hash, tok, sizeof tok, NULL, 0);
    sodium_memzero(tok, sizeof tok);
    snprintf(se.user_id, sizeof se.user_id, "%s", u.id);
    se.created_at = now;
    se.expires_at = now + SESSION_TTL_MS;
    if (st->ops->sessions_purge(st, now) != PD_OK || st->ops->session_add(st, &se) != PD_OK ||
        st->ops->login_failures_clear(st, user_id) != PD_OK) {
        sodium_memzero(tok_hex, sizeof tok_hex);
        status = storage_error(srv, r);
        goto out;
    }
    srv_resp_header(r, "Set-Cookie",
                    COOKIE_NAME "=%s; Path=/korcam/; HttpOnly; "
                                "SameSite=Strict; Max-Age=%lld",
                    tok_hex, (long long)(SESSION_TTL_MS / 1000));
    sodium_memzero(tok_hex, sizeof tok_hex);
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        status = srv_resp_error(r, 500, "internal", "out of memory");
        goto out;
    }
    user_json(o, &u);
    cJSON_AddStringToObject(o, "csrf", se.csrf);
    cJSON_AddNumberToObject(o, "expires_at", (double)se.expires_at);
    r->json = o;
    r->status = status = 200;
out:
    if (password) {
        sodium_memzero(password, plen);
        sodium_free(password);
    }
    cJSON_Delete(in);
    return status;
}

static int web_api(pd_server *srv, const srv_req *q, const char *rest, srv_resp *r)
{
    bool post = !strcmp(q->method, "POST");
    if (!strcmp(rest, "login")) {
        if (!post)
            return srv_resp_error(r, 405, "method_not_allowed", "use POST");
        return web_login(srv, q, r);
    }
    actor a;
    pd_srv_session se;
    int e = web_session(srv, q, post, &a, &se, r);
    if (!strcmp(rest, "logout")) {
        if (!post)
            return srv_resp_error(r, 405, "method_not_allowed", "use POST");
        if (e)
            return e;
        if (srv_store(srv)->ops->session_delete(srv_store(srv), se.token_hash) != PD_OK)
            return storage_error(srv, r);
        srv_resp_header(r, "Set-Cookie",
                        COOKIE_NAME "=; Path=/korcam/; HttpOnly; "
                                    "SameSite=Strict; Max-Age=0");
        r->json = cJSON_CreateObject();
        r->status = 200;
        return 200;
    }
    if (e)
        return e;
    if (!strcmp(rest, "me")) {
        cJSON *o = cJSON_CreateObject();
        if (!o)
            return srv_resp_error(r, 500, "internal", "out of memory");
        user_json(o, &a.user);
        cJSON_AddStringToObject(o, "csrf", se.csrf);
        cJSON_AddNumberToObject(o, "expires_at", (double)se.expires_at);
        r->json = o;
        r->status = 200;
        return 200;
    }
    return api_route(srv, &a, q->method, rest, q, r);
}

int srv_korcam_handle(pd_server *srv, const srv_req *q, srv_resp *r)
{
    if (!has_korcam_ops(srv_store(srv)))
        return srv_resp_error(r, 501, "not_implemented",
                              "the %s storage backend has no "
                              "conflict queue",
                              srv_store(srv)->ops->name);
    if (q->device) { /* /v1/korcam/... from a korcam's device */
        actor a;
        memset(&a, 0, sizeof a);
        if (srv_store(srv)->ops->user_get(srv_store(srv), q->device->user_id, &a.user) != PD_OK)
            return srv_resp_error(r, 403, "denied", "unknown user");
        if (!may_reconcile(&a.user))
            return srv_resp_error(r, 403, "denied", "only a korcam reconciles conflicts");
        const char *rest = q->path + strlen("/v1/korcam/");
        return api_route(srv, &a, q->method, rest, q, r);
    }
    web_headers(r);
    const char *p = q->path;
    if (!strcmp(p, "/korcam")) {
        srv_resp_header(r, "Location", "/korcam/");
        r->status = 308;
        return 308;
    }
    const char *rest = p + strlen("/korcam/");
    if (!strncmp(rest, "api/", 4))
        return web_api(srv, q, rest + 4, r);
    if (strcmp(q->method, "GET") != 0)
        return srv_resp_error(r, 405, "method_not_allowed", "use GET");
    if (!*rest)
        return web_file("index.html", r);
    if (strchr(rest, '/'))
        return srv_resp_error(r, 404, "not_found", "no such file");
    return web_file(rest, r);
}

/* ==== operator: a web password
 * ==================================================================== */

int pd_server_user_passwd(pd_server *srv, const char *user_id, const char *password, size_t len)
{
    if (!user_id || !srv_valid_id(user_id))
        return srv_fail(srv, PD_ERR_INVALID, "user id '%s' is not a valid id",
                        user_id ? user_id : "");
    if (!password || len < PASSWORD_MIN || len > PASSWORD_MAX || memchr(password, 0, len))
        return srv_fail(srv, PD_ERR_INVALID, "the password must be %d..%d bytes", PASSWORD_MIN,
                        PASSWORD_MAX);
    srv_lock(srv);
    pd_storage *st = srv_store(srv);
    pd_srv_user u;
    int rc;
    if (!has_korcam_ops(st)) {
        rc = srv_fail(srv, PD_ERR_STATE, "the %s storage backend has no web logins", st->ops->name);
        goto out;
    }
    rc = st->ops->user_get(st, user_id, &u);
    if (rc == PD_ERR_NOTFOUND) {
        rc = srv_fail(srv, PD_ERR_NOTFOUND, "no user %s", user_id);
        goto out;
    }
    if (rc != PD_OK) {
        rc = srv_fail_storage(srv);
        goto out;
    }
    if (!may_reconcile(&u)) {
        rc = srv_fail(srv, PD_ERR_INVALID,
                      "user %s is a %s: only a korcam or admin logs in to "
                      "the web page",
                      user_id, u.role);
        goto out;
    }
    srv_unlock(srv);
    char hash[crypto_pwhash_STRBYTES];
    int h = crypto_pwhash_str(hash, password, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE);
    srv_lock(srv);
    if (h != 0) {
        rc = srv_fail(srv, PD_ERR_NOMEM, "not enough memory to hash the password");
        goto out;
    }
    pd_srv_audit au = {.at = srv_now_ms(),
                       .action = "passwd",
                       .actor = "operator",
                       .entity = "user",
                       .target = user_id};
    if ((rc = st->ops->begin(st)) != PD_OK ||
        (rc = st->ops->password_set(st, user_id, hash, au.at)) != PD_OK ||
        (rc = st->ops->audit_add(st, &au)) != PD_OK || (rc = st->ops->commit(st)) != PD_OK) {
        st->ops->rollback(st);
        rc = srv_fail_storage(srv);
    }
    sodium_memzero(hash, sizeof hash);
out:
    srv_unlock(srv);
    return rc;
}

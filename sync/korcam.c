/*
 * korcam.c — conflict reconciliation on a device (pd_korcam.h): the korcam's requests to the
 * server's conflict queue (PROTOCOL.md §9), and what every device keeps of the conflicts and
 * revisit tasks its deltas bring.
 *
 * Requests go through the sync client's HTTP layer (client_http.c): signed with the device key,
 * the answer's Pd-Server-Signature checked against the pinned server key, the clock skew learnt
 * by syncs reused. Nothing of the answer is interpreted here beyond its status: the JSON text is
 * the result.
 *
 * Delta entries are checked before they are kept (types, sizes, UTF-8 without control
 * characters, known kinds and states); an entry without that shape is left out — it is a notice
 * about records the page carries anyway — and the page is applied.
 */
#include "pd_korcam.h"

#include "client_internal.h"
#include "keys.h"
#include "validate.h"

#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_MAX 1000 /* a note (PD_SRV_NOTE_MAX on the server) */
#define ID_MAX 255
#define SKIP (-1) /* an entry without the shape of PROTOCOL.md §9.4: left out */

/* ---- requests
 * ------------------------------------------------------------------------------------ */

static int call(pd_store *store, const pd_sync_options *opt, const char *method, const char *path,
                const char *body, char **json)
{
    *json = NULL;
    uint8_t sign_pk[PD_PUBKEY_BYTES], device_pk[PD_PUBKEY_BYTES];
    char url[PD_HTTP_URL_MAX], what[160];
    int rc = pd_client_setting_blob(store, "server_sign_pk", sign_pk, sizeof sign_pk);
    if (rc == PD_ERR_NOTFOUND)
        return pd_store_fail(store, PD_ERR_STATE,
                             "this device is not enrolled: run 'pendata enroll' first");
    if (rc != PD_OK)
        return rc;
    if (opt && opt->server_url)
        snprintf(url, sizeof url, "%s", opt->server_url);
    else if ((rc = pd_client_setting_text(store, "server_url", url, sizeof url)) != PD_OK)
        return rc;
    uint8_t *sk = sodium_malloc(PD_SECKEY_BYTES);
    if (!sk)
        return pd_store_fail(store, PD_ERR_NOMEM, "no secure memory for the device key");
    pd_http h;
    memset(&h, 0, sizeof h);
    pd_error e = {0};
    pd_http_resp r;
    memset(&r, 0, sizeof r);
    snprintf(what, sizeof what, "%s %.120s", method, path);
    if ((rc = pd_keys_identity(store, "device", device_pk, sk)) != PD_OK)
        goto out;
    if ((rc = pd_http_init(&h, url, opt, &e)) != PD_OK) {
        rc = pd_store_fail(store, rc, "%s", e.msg);
        goto out;
    }
    pd_http_pin(&h, sign_pk);
    if ((rc = pd_http_set_device(&h, pd_store_device_id(store), sk)) != PD_OK) {
        rc = pd_store_fail(store, rc, "%s", h.err.msg);
        goto out;
    }
    int64_t skew = 0;
    if (pd_sync_state_get_int(store, "clock_skew_ms", &skew) == PD_OK)
        h.skew_ms = skew;
    char full[PD_HTTP_URL_MAX];
    if ((rc = pd_http_url(&h, path, full)) != PD_OK) {
        rc = pd_store_fail(store, rc, "%s: the URL is too long", what);
        goto out;
    }
    pd_http_req req = {.method = method,
                       .url = full,
                       .body = (const uint8_t *)body,
                       .body_len = body ? strlen(body) : 0,
                       .content_type = body ? "application/json" : NULL,
                       .sign = true,
                       .phase = PD_SYNC_PHASE_DELTA};
    rc = pd_http_call(&h, &req, &r);
    if (rc == PD_OK && r.status != 200)
        rc = pd_http_fail_status(&h, what, &r);
    if (rc == PD_OK) {
        cJSON *j = pd_http_json(&h, what, &r);
        if (!j) {
            rc = h.err.code;
        } else {
            cJSON_Delete(j);
            *json = r.body;
            r.body = NULL;
        }
    }
    if (rc != PD_OK)
        pd_store_fail(store, rc, "%s", h.err.msg[0] ? h.err.msg : pd_strerror(rc));
out:
    if (h.skew_changed)
        pd_sync_state_set_int(store, "clock_skew_ms", h.skew_ms);
    pd_http_resp_free(&r);
    pd_http_close(&h);
    sodium_free(sk);
    return rc;
}

/* Query values are restricted to what ids and codes hold: no encoding needed, nothing smuggled. */
static bool plain(const char *s)
{
    if (!s || !*s || strlen(s) > 64)
        return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              *p == '.' || *p == '_' || *p == '-'))
            return false;
    return true;
}

int pd_korcam_list(pd_store *store, const pd_korcam_filter *f, const pd_sync_options *opt,
                   char **json)
{
    *json = NULL;
    pd_korcam_filter none = {0};
    if (!f)
        f = &none;
    char path[512];
    size_t n = (size_t)snprintf(path, sizeof path, "/v1/korcam/conflicts?state=%s",
                                f->state ? f->state : "open");
    if (f->state && !plain(f->state))
        return pd_store_fail(store, PD_ERR_INVALID, "state must be open, resolved or all");
    const struct {
        const char *key, *value;
    } params[] = {{"kind", f->kind}, {"desa", f->desa}, {"enumerator", f->enumerator}};
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        if (!params[i].value)
            continue;
        if (!plain(params[i].value))
            return pd_store_fail(store, PD_ERR_INVALID, "%s '%.64s' is not an id or code",
                                 params[i].key, params[i].value);
        n += (size_t)snprintf(path + n, sizeof path - n, "&%s=%s", params[i].key, params[i].value);
    }
    if (f->age_hours < 0 || f->limit < 0 || f->offset < 0)
        return pd_store_fail(store, PD_ERR_INVALID, "age, limit and offset must be >= 0");
    if (f->age_hours)
        n += (size_t)snprintf(path + n, sizeof path - n, "&age=%lld", (long long)f->age_hours);
    if (f->limit)
        n += (size_t)snprintf(path + n, sizeof path - n, "&limit=%lld", (long long)f->limit);
    if (f->offset)
        snprintf(path + n, sizeof path - n, "&offset=%lld", (long long)f->offset);
    return call(store, opt, "GET", path, NULL, json);
}

int pd_korcam_show(pd_store *store, int64_t id, const pd_sync_options *opt, char **json)
{
    *json = NULL;
    if (id <= 0)
        return pd_store_fail(store, PD_ERR_INVALID, "a conflict id is a positive number");
    char path[64];
    snprintf(path, sizeof path, "/v1/korcam/conflicts/%lld", (long long)id);
    return call(store, opt, "GET", path, NULL, json);
}

int pd_korcam_resolve(pd_store *store, int64_t id, const pd_korcam_resolution *r,
                      const pd_sync_options *opt, char **json)
{
    *json = NULL;
    if (id <= 0)
        return pd_store_fail(store, PD_ERR_INVALID, "a conflict id is a positive number");
    if (!r || !r->action)
        return pd_store_fail(store, PD_ERR_INVALID, "no decision given");
    if (r->note && strlen(r->note) > TEXT_MAX)
        return pd_store_fail(store, PD_ERR_INVALID, "the note is over %d bytes", TEXT_MAX);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return pd_store_fail(store, PD_ERR_NOMEM, "out of memory");
    cJSON_AddStringToObject(o, "action", r->action);
    if (!strcmp(r->action, "value")) {
        if (r->value)
            cJSON_AddStringToObject(o, "value", r->value);
        else
            cJSON_AddNullToObject(o, "value");
    }
    if (r->into)
        cJSON_AddStringToObject(o, "into", r->into);
    if (r->member)
        cJSON_AddStringToObject(o, "member", r->member);
    if (r->note)
        cJSON_AddStringToObject(o, "note", r->note);
    char *body = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!body)
        return pd_store_fail(store, PD_ERR_NOMEM, "out of memory");
    char path[80];
    snprintf(path, sizeof path, "/v1/korcam/conflicts/%lld/resolve", (long long)id);
    int rc = call(store, opt, "POST", path, body, json);
    free(body);
    return rc;
}

int pd_korcam_summary(pd_store *store, const pd_sync_options *opt, char **json)
{
    return call(store, opt, "GET", "/v1/korcam/summary", NULL, json);
}

/* ---- what deltas bring
 * --------------------------------------------------------------------------- */

static const char *const conflict_upsert =
    "INSERT INTO conflict (id, kind, entity, target, field, household_id, related, state, "
    "resolution, resolved_value, resolved_by, resolved_at, note, rev, received_at) VALUES "
    "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) ON CONFLICT (id) DO "
    "UPDATE SET kind = excluded.kind, entity = excluded.entity, target = excluded.target, "
    "field = excluded.field, household_id = excluded.household_id, related = excluded.related, "
    "state = excluded.state, resolution = excluded.resolution, "
    "resolved_value = excluded.resolved_value, resolved_by = excluded.resolved_by, "
    "resolved_at = excluded.resolved_at, note = excluded.note, rev = excluded.rev, "
    "received_at = excluded.received_at WHERE excluded.rev >= conflict.rev";

static const char *const task_upsert =
    "INSERT INTO task (id, household_id, kind, note, created_at, conflict_id, created_by, rev) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO UPDATE SET "
    "household_id = excluded.household_id, kind = excluded.kind, note = excluded.note, "
    "conflict_id = excluded.conflict_id, created_by = excluded.created_by, rev = excluded.rev "
    "WHERE excluded.rev >= task.rev";

/* A string member: absent or null -> def; else UTF-8 of at most max bytes, no control chars. */
static bool jtext(const cJSON *o, const char *k, size_t max, const char *def, const char **out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return def != NULL;
    }
    if (!cJSON_IsString(v))
        return false;
    size_t n = strlen(v->valuestring);
    if (n > max || !pd_utf8_valid((const uint8_t *)v->valuestring, n))
        return false;
    for (const unsigned char *p = (const unsigned char *)v->valuestring; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    *out = v->valuestring;
    return true;
}

/* A whole number >= 0 (absent/null -> def; def < 0: required). */
static bool jint(const cJSON *o, const char *k, int64_t def, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return def >= 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > 9007199254740992.0)
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

static bool one_of(const char *s, const char *const *set, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strcmp(s, set[i]))
            return true;
    return false;
}

static int bind_json_value(sqlite3_stmt *q, int i, const cJSON *v)
{
    if (!v || cJSON_IsNull(v))
        return sqlite3_bind_null(q, i);
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) <= 9007199254740992.0)
            return sqlite3_bind_int64(q, i, (sqlite3_int64)d);
        return sqlite3_bind_double(q, i, d);
    }
    if (cJSON_IsString(v))
        return sqlite3_bind_text(q, i, v->valuestring, -1, SQLITE_TRANSIENT);
    if (cJSON_IsBool(v))
        return sqlite3_bind_int(q, i, cJSON_IsTrue(v));
    return SQLITE_MISMATCH;
}

static int store_conflict(sqlite3 *db, sqlite3_stmt *q, const cJSON *c, int64_t now, pd_error *err)
{
    static const char *const kinds[] = {
        "field", "create", "duplicate_nik", "double_visit", "duplicate_household", "moved_active"};
    static const char *const states[] = {"open", "resolved"};
    static const char *const actions[] = {"server", "device", "value", "merge", "split", "revisit"};
    int64_t id, rev, at;
    const char *kind, *entity, *target, *field, *hh, *rel, *state, *res, *by, *note;
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(c, "resolved_value");
    if (!cJSON_IsObject(c) || !jint(c, "id", -1, &id) || id == 0 || !jint(c, "rev", -1, &rev) ||
        !jtext(c, "kind", 32, NULL, &kind) ||
        !one_of(kind, kinds, sizeof kinds / sizeof kinds[0]) ||
        !jtext(c, "entity", 16, NULL, &entity) || !jtext(c, "target", ID_MAX, NULL, &target) ||
        !jtext(c, "field", 64, "", &field) || !jtext(c, "household_id", ID_MAX, "", &hh) ||
        !jtext(c, "related", ID_MAX, "", &rel) || !jtext(c, "state", 16, NULL, &state) ||
        !one_of(state, states, 2) || !jtext(c, "resolution", 16, "", &res) ||
        (*res && !one_of(res, actions, sizeof actions / sizeof actions[0])) ||
        !jtext(c, "resolved_by", 64, "", &by) || !jint(c, "resolved_at", 0, &at) ||
        !jtext(c, "note", TEXT_MAX, "", &note) ||
        (rv && !cJSON_IsNull(rv) && !cJSON_IsNumber(rv) && !cJSON_IsString(rv) &&
         !cJSON_IsBool(rv)) ||
        (cJSON_IsString(rv) && strlen(rv->valuestring) > 4096))
        return SKIP;
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    sqlite3_bind_int64(q, 1, id);
    sqlite3_bind_text(q, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, entity, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, target, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 5, field, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 6, hh, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 7, rel, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 8, state, -1, SQLITE_STATIC);
    if (*res)
        sqlite3_bind_text(q, 9, res, -1, SQLITE_STATIC);
    bind_json_value(q, 10, rv);
    if (*by)
        sqlite3_bind_text(q, 11, by, -1, SQLITE_STATIC);
    if (at)
        sqlite3_bind_int64(q, 12, at);
    sqlite3_bind_text(q, 13, note, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 14, rev);
    sqlite3_bind_int64(q, 15, now);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? PD_OK : pd_error_sqlite(err, db, rc, "delta: keeping a conflict");
}

static int store_task(sqlite3 *db, sqlite3_stmt *q, const cJSON *t, pd_error *err)
{
    int64_t id, rev, at, cid;
    const char *kind, *hh, *note, *by;
    if (!cJSON_IsObject(t) || !jint(t, "id", -1, &id) || id == 0 || !jint(t, "rev", -1, &rev) ||
        !jtext(t, "kind", 16, NULL, &kind) || strcmp(kind, "revisit") != 0 ||
        !jtext(t, "household_id", ID_MAX, NULL, &hh) || !*hh ||
        !jtext(t, "note", TEXT_MAX, "", &note) || !jtext(t, "created_by", 64, "", &by) ||
        !jint(t, "created_at", -1, &at) || !jint(t, "conflict_id", 0, &cid))
        return SKIP;
    char ids[24];
    snprintf(ids, sizeof ids, "%lld", (long long)id);
    sqlite3_reset(q);
    sqlite3_clear_bindings(q);
    sqlite3_bind_text(q, 1, ids, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(q, 2, hh, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 3, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(q, 4, note, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 5, at);
    if (cid)
        sqlite3_bind_int64(q, 6, cid);
    sqlite3_bind_text(q, 7, by, -1, SQLITE_STATIC);
    sqlite3_bind_int64(q, 8, rev);
    int rc = sqlite3_step(q);
    sqlite3_reset(q);
    return rc == SQLITE_DONE ? PD_OK : pd_error_sqlite(err, db, rc, "delta: keeping a task");
}

int pd_korcam_delta_store(pd_store *store, const cJSON *conflicts, const cJSON *tasks,
                          pd_error *err)
{
    if ((conflicts && !cJSON_IsNull(conflicts) && !cJSON_IsArray(conflicts)) ||
        (tasks && !cJSON_IsNull(tasks) && !cJSON_IsArray(tasks)))
        return pd_error_set(err, PD_ERR_PROTOCOL, "delta: conflicts and tasks must be arrays");
    if (cJSON_GetArraySize(conflicts) == 0 && cJSON_GetArraySize(tasks) == 0)
        return PD_OK;
    sqlite3 *db = pd_store_sqlite(store);
    sqlite3_stmt *qc = NULL, *qt = NULL;
    int rc = sqlite3_prepare_v2(db, conflict_upsert, -1, &qc, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, task_upsert, -1, &qt, NULL);
    int code = rc == SQLITE_OK ? PD_OK
                               : pd_error_sqlite(err, db, rc,
                                                 "delta: preparing the korcam "
                                                 "statements");
    int64_t now = pd_now_ms();
    const cJSON *it;
    cJSON_ArrayForEach(it, conflicts)
    {
        if (code != PD_OK)
            break;
        if ((code = store_conflict(db, qc, it, now, err)) == SKIP)
            code = PD_OK;
    }
    cJSON_ArrayForEach(it, tasks)
    {
        if (code != PD_OK)
            break;
        if ((code = store_task(db, qt, it, err)) == SKIP)
            code = PD_OK;
    }
    sqlite3_finalize(qc);
    sqlite3_finalize(qt);
    return code;
}

/* ---- what this device received ------------------------------------------------------------------
 */

static const char *col_text(sqlite3_stmt *q, int i)
{
    const unsigned char *t = sqlite3_column_text(q, i);
    return t ? (const char *)t : "";
}

int pd_korcam_notices(pd_store *store, pd_korcam_notice_fn fn, void *ctx)
{
    sqlite3 *db = pd_store_sqlite(store);
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(
        db,
        "SELECT c.id, c.kind, c.entity, c.target, c.field, c.household_id, "
        "COALESCE(h.head_name, ''), c.related, c.state, COALESCE(c.resolution, ''), "
        "c.resolved_value, COALESCE(c.resolved_by, ''), c.note, COALESCE(c.resolved_at, 0), "
        "c.rev FROM conflict c LEFT JOIN household h ON h.id = c.household_id "
        "ORDER BY c.state = 'open', c.resolved_at DESC, c.id DESC",
        -1, &q, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "listing received conflicts");
    int stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        pd_korcam_notice n = {.id = sqlite3_column_int64(q, 0),
                              .kind = col_text(q, 1),
                              .entity = col_text(q, 2),
                              .target = col_text(q, 3),
                              .field = col_text(q, 4),
                              .household_id = col_text(q, 5),
                              .head_name = col_text(q, 6),
                              .related = col_text(q, 7),
                              .state = col_text(q, 8),
                              .resolution = col_text(q, 9),
                              .resolved_by = col_text(q, 11),
                              .note = col_text(q, 12),
                              .resolved_at = sqlite3_column_int64(q, 13),
                              .rev = sqlite3_column_int64(q, 14)};
        switch (sqlite3_column_type(q, 10)) {
        case SQLITE_INTEGER:
            n.resolved_value.type = PD_VAL_INT;
            n.resolved_value.i = sqlite3_column_int64(q, 10);
            break;
        case SQLITE_FLOAT:
            n.resolved_value.type = PD_VAL_REAL;
            n.resolved_value.r = sqlite3_column_double(q, 10);
            break;
        case SQLITE_TEXT:
            n.resolved_value.type = PD_VAL_TEXT;
            n.resolved_value.p = sqlite3_column_text(q, 10);
            n.resolved_value.len = (size_t)sqlite3_column_bytes(q, 10);
            break;
        default:
            n.resolved_value.type = PD_VAL_NULL;
        }
        if ((stop = fn(ctx, &n)) != 0)
            break;
    }
    sqlite3_finalize(q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : pd_store_fail_sqlite(store, rc, "listing conflicts");
}

int pd_korcam_tasks(pd_store *store, pd_korcam_task_fn fn, void *ctx)
{
    sqlite3 *db = pd_store_sqlite(store);
    sqlite3_stmt *q = NULL;
    int rc = sqlite3_prepare_v2(
        db,
        "SELECT t.id, t.kind, t.household_id, COALESCE(h.head_name, ''), t.note, "
        "t.created_by, COALESCE(t.conflict_id, 0), t.created_at, COALESCE((SELECT "
        "min(v.visited_at) FROM visit v WHERE v.household_id = t.household_id AND "
        "v.visited_at > t.created_at), 0) FROM task t LEFT JOIN household h ON "
        "h.id = t.household_id ORDER BY t.created_at DESC, t.rowid DESC",
        -1, &q, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "listing tasks");
    int stop = 0;
    while ((rc = sqlite3_step(q)) == SQLITE_ROW) {
        pd_korcam_task t = {.id = sqlite3_column_int64(q, 0),
                            .kind = col_text(q, 1),
                            .household_id = col_text(q, 2),
                            .head_name = col_text(q, 3),
                            .note = col_text(q, 4),
                            .created_by = col_text(q, 5),
                            .conflict_id = sqlite3_column_int64(q, 6),
                            .created_at = sqlite3_column_int64(q, 7),
                            .revisited_at = sqlite3_column_int64(q, 8)};
        if ((stop = fn(ctx, &t)) != 0)
            break;
    }
    sqlite3_finalize(q);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? PD_OK : pd_store_fail_sqlite(store, rc, "listing tasks");
}

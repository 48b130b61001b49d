/*
 * download.c — what devices pull (PROTOCOL.md §6): GET /v1/prelist, the signed prelist package of
 * the person's assigned area built from the server's current records, and GET /v1/delta, the
 * records (and conflicts, keys) of that area whose revision rose since the device's cursor.
 *
 * The package is Range-able: it is a file cached per (area list, revision) under
 * <data dir>/packages, so a resumed download gets the very same bytes. The delta is rendered
 * deterministically from the state of the area (no clock inside; the cursor is the highest
 * revision it carries) and is a JSON answer signed, like every other, over the request's nonce:
 * a page is bounded by `limit`, so a cut one is asked for again rather than resumed, and a
 * recorded page cannot be replayed to a device (PROTOCOL.md §2, §6).
 */
#include "srv_internal.h"

#include "korcam.h"

#include "pd_prelist.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DELTA_LIMIT_DEFAULT 5000
#define DELTA_LIMIT_MAX 10000
#define MAX_MEMBERS PD_PRELIST_MAX_MEMBERS_PER_HH

static int person_of(pd_server *srv, const srv_req *q, pd_srv_user *u, srv_resp *r)
{
    if (srv_store(srv)->ops->user_get(srv_store(srv), q->device->user_id, u) != PD_OK)
        return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(srv_store(srv)));
    if (!u->area[0])
        return srv_resp_error(r, 404, "no_area", "user %s has no assigned area", u->id);
    return 0;
}

/* ---- a copied row ------------------------------------------------------------------------------
 */

typedef struct row {
    size_t n;
    const char *name[48];
    pd_value v[48];
    char *text[48];
} row;

static void row_free(row *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->text[i]);
    memset(r, 0, sizeof *r);
}

static bool row_copy(row *dst, const pd_srv_field *f, size_t n)
{
    memset(dst, 0, sizeof *dst);
    for (size_t i = 0; i < n && i < PD_ARRAY_LEN(dst->v); i++) {
        dst->name[i] = f[i].name; /* static column names */
        dst->v[i] = f[i].value;
        if (f[i].value.type == PD_VAL_TEXT || f[i].value.type == PD_VAL_BLOB) {
            dst->text[i] = malloc(f[i].value.len + 1);
            if (!dst->text[i]) {
                dst->n = i;
                row_free(dst);
                return false;
            }
            if (f[i].value.len)
                memcpy(dst->text[i], f[i].value.p, f[i].value.len);
            dst->text[i][f[i].value.len] = '\0';
            dst->v[i].p = (const uint8_t *)dst->text[i];
        }
        dst->n = i + 1;
    }
    return true;
}

static const pd_value *row_get(const row *r, const char *name)
{
    for (size_t i = 0; i < r->n; i++)
        if (!strcmp(r->name[i], name))
            return &r->v[i];
    return NULL;
}

static const char *row_text(const row *r, const char *name)
{
    const pd_value *v = row_get(r, name);
    return v && v->type == PD_VAL_TEXT ? (const char *)v->p : NULL;
}

static int64_t row_int(const row *r, const char *name)
{
    const pd_value *v = row_get(r, name);
    if (!v || v->type == PD_VAL_NULL)
        return PD_PRELIST_NULL;
    return v->type == PD_VAL_INT ? v->i : (int64_t)v->r;
}

static double row_real(const row *r, const char *name)
{
    const pd_value *v = row_get(r, name);
    if (!v || v->type == PD_VAL_NULL)
        return NAN;
    return v->type == PD_VAL_REAL ? v->r : (double)v->i;
}

/* ---- GET /v1/prelist ------------------------------------------------------------------------- */

typedef struct pkg_ctx {
    pd_prelist_writer *w;
    pd_error err;
    int rc;
    row hh;
    bool have_hh;
    row members[MAX_MEMBERS];
    size_t nmembers;
    bool too_many;
    int64_t min_skipped; /* lowest rev of a record left out (0: none) */
} pkg_ctx;

static void skip_rev(pkg_ctx *c, int64_t rev)
{
    if (c->min_skipped == 0 || rev < c->min_skipped)
        c->min_skipped = rev;
}

/* Write the buffered household with its members. */
static int flush_household(pkg_ctx *c)
{
    if (!c->have_hh)
        return PD_OK;
    int rc = PD_OK;
    if (c->nmembers == 0 || c->too_many) {
        skip_rev(c, row_int(&c->hh, "rev")); /* reaches devices by delta instead */
        goto out;
    }
    const row *r = &c->hh;
    pd_prelist_household h = {
        .id = row_text(r, "id"),
        .rev = row_int(r, "rev"),
        .prov = row_text(r, "prov"),
        .kab = row_text(r, "kab"),
        .kec = row_text(r, "kec"),
        .desa = row_text(r, "desa"),
        .sls = row_text(r, "sls"),
        .address = row_text(r, "address"),
        .head_name = row_text(r, "head_name"),
        .kk = row_text(r, "kk"),
        .member_count = (int64_t)c->nmembers,
        .tenure = row_int(r, "tenure"),
        .floor_area = row_int(r, "floor_area"),
        .floor_material = row_int(r, "floor_material"),
        .wall_material = row_int(r, "wall_material"),
        .roof_material = row_int(r, "roof_material"),
        .rooms = row_int(r, "rooms"),
        .water_source = row_int(r, "water_source"),
        .lighting = row_int(r, "lighting"),
        .power_va = row_int(r, "power_va"),
        .cooking_fuel = row_int(r, "cooking_fuel"),
        .toilet = row_int(r, "toilet"),
        .asset_flags = row_int(r, "asset_flags"),
        .cattle = row_int(r, "cattle"),
        .goats = row_int(r, "goats"),
        .pigs = row_int(r, "pigs"),
        .poultry = row_int(r, "poultry"),
        .land_m2 = row_int(r, "land_m2"),
        .desil = row_int(r, "desil"),
        .percentile = row_int(r, "percentile"),
        .lat = row_real(r, "lat"),
        .lon = row_real(r, "lon"),
    };
    rc = pd_prelist_writer_household(c->w, &h, &c->err);
    for (size_t i = 0; rc == PD_OK && i < c->nmembers; i++) {
        const row *m = &c->members[i];
        pd_prelist_member pm = {
            .id = row_text(m, "id"),
            .household_id = row_text(m, "household_id"),
            .rev = row_int(m, "rev"),
            .member_no = row_int(m, "member_no"),
            .name = row_text(m, "name"),
            .nik = row_text(m, "nik"),
            .kk = row_text(m, "kk"),
            .sex = row_int(m, "sex"),
            .birth_place = row_text(m, "birth_place"),
            .birth_date = row_text(m, "birth_date"),
            .relationship = row_int(m, "relationship"),
            .marital = row_int(m, "marital"),
            .disability = row_int(m, "disability"),
            .chronic_illness = row_int(m, "chronic_illness"),
            .schooling = row_int(m, "schooling"),
            .work = row_int(m, "work"),
            .programmes = row_int(m, "programmes"),
        };
        rc = pd_prelist_writer_member(c->w, &pm, &c->err);
    }
out:
    row_free(&c->hh);
    for (size_t i = 0; i < c->nmembers; i++)
        row_free(&c->members[i]);
    c->nmembers = 0;
    c->have_hh = false;
    c->too_many = false;
    return rc;
}

static int pkg_row(void *ctx, pd_entity e, const pd_srv_field *f, size_t n)
{
    pkg_ctx *c = ctx;
    if (e == PD_ENT_HOUSEHOLD) {
        if ((c->rc = flush_household(c)) != PD_OK)
            return 1;
        if (!row_copy(&c->hh, f, n)) {
            c->rc = pd_error_set(&c->err, PD_ERR_NOMEM, "out of memory");
            return 1;
        }
        c->have_hh = true;
        return 0;
    }
    if (c->nmembers >= MAX_MEMBERS) {
        c->too_many = true;
        return 0;
    }
    if (!row_copy(&c->members[c->nmembers], f, n)) {
        c->rc = pd_error_set(&c->err, PD_ERR_NOMEM, "out of memory");
        return 1;
    }
    c->nmembers++;
    return 0;
}

static int pkg_shape(void *ctx, const char *code, const char *name, const char *shape, int64_t rev)
{
    pkg_ctx *c = ctx;
    pd_prelist_shape s = {.code = code, .name = name, .shape = shape, .rev = rev};
    c->rc = pd_prelist_writer_shape(c->w, &s, &c->err);
    return c->rc != PD_OK;
}

/* The package's area id: the one code, or the codes' common ancestor + ":" + a part naming the
 * person (PD_PRELIST_AREA_ID_MAX bytes at most). */
static void package_area(const pd_srv_user *u, char out[PD_PRELIST_AREA_ID_MAX + 1])
{
    const char *a = u->area;
    if (!strchr(a, ',')) {
        snprintf(out, PD_PRELIST_AREA_ID_MAX + 1, "%.*s", PD_PRELIST_AREA_ID_MAX, a);
        return;
    }
    char anc[PD_SRV_CODE_MAX + 1];
    size_t n = strcspn(a, ",");
    snprintf(anc, sizeof anc, "%.*s", (int)(n < PD_SRV_CODE_MAX ? n : PD_SRV_CODE_MAX), a);
    for (const char *p = a + n; *p;) {
        p++;
        size_t m = strcspn(p, ",");
        size_t k = 0;
        while (k < m && anc[k] && anc[k] == p[k])
            k++;
        if (anc[k] || (k < m && p[k] != '.')) {
            /* cut back to the last whole level both share */
            while (k > 0 && anc[k] != '.')
                k--;
            anc[k] = '\0';
        }
        p += m;
    }
    if (!anc[0])
        snprintf(anc, sizeof anc, "%.2s", a);
    char part[PD_SRV_ID_MAX + 1];
    snprintf(part, sizeof part, "%s", u->id);
    if (strlen(anc) + 1 + strlen(part) > PD_PRELIST_AREA_ID_MAX) {
        uint8_t h[8];
        crypto_generichash(h, sizeof h, (const uint8_t *)u->id, strlen(u->id), NULL, 0);
        srv_hex(h, 4, part);
    }
    int an = (int)strlen(anc);
    snprintf(out, PD_PRELIST_AREA_ID_MAX + 1, "%.*s:%.*s", an, anc, PD_PRELIST_AREA_ID_MAX - 1 - an,
             part);
}

/* Remove cached packages of this key other than keep. */
static void prune_packages(pd_server *srv, const char *key, const char *keep)
{
    char *dir = srv_path(srv, "packages", NULL);
    DIR *d = dir ? opendir(dir) : NULL;
    struct dirent *de;
    size_t kl = strlen(key);
    while (d && (de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, key, kl) != 0 || de->d_name[kl] != '-' || !strcmp(de->d_name, keep))
            continue;
        char *p = srv_path(srv, "packages", de->d_name);
        if (p)
            unlink(p);
        free(p);
    }
    if (d)
        closedir(d);
    free(dir);
}

int srv_handle_prelist(pd_server *srv, const srv_req *q, srv_resp *r)
{
    pd_srv_user u;
    int e = person_of(srv, q, &u, r);
    if (e)
        return e;
    pd_storage *st = srv_store(srv);
    int64_t area_rev;
    if (st->ops->area_revision(st, u.area, &area_rev) != PD_OK)
        return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(st));
    if (area_rev == 0)
        return srv_resp_error(r, 404, "no_area", "no records in user %s's area yet", u.id);

    /* cache key: the area list and the person (the package's area id names them) */
    char area_id[PD_PRELIST_AREA_ID_MAX + 1];
    package_area(&u, area_id);
    uint8_t kh[16];
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, sizeof kh);
    crypto_generichash_update(&hs, (const uint8_t *)u.area, strlen(u.area) + 1);
    crypto_generichash_update(&hs, (const uint8_t *)area_id, strlen(area_id));
    crypto_generichash_final(&hs, kh, sizeof kh);
    char key[33], name[80];
    srv_hex(kh, sizeof kh, key);
    snprintf(name, sizeof name, "%s-%lld.pdpl", key, (long long)area_rev);
    char *path = srv_path(srv, "packages", name);
    char *cursor_path = NULL;
    if (!path)
        return srv_resp_error(r, 500, "internal", "out of memory");
    int status;
    pkg_ctx *c = NULL;
    bool pkg_locked = false;
    int64_t cursor = area_rev;
    /* the cursor a package starts devices at sits beside it */
    size_t cpl = strlen(path) + 8;
    cursor_path = malloc(cpl);
    if (!cursor_path) {
        status = srv_resp_error(r, 500, "internal", "out of memory");
        goto out;
    }
    snprintf(cursor_path, cpl, "%s.cursor", path);
    /* one builder at a time (requests run in parallel on PostgreSQL): two would share the
     * package's temp file, and a reader could find the package before its cursor file */
    pthread_mutex_lock(&srv->pkg_lock);
    pkg_locked = true;
    if (access(path, R_OK) != 0) {
        c = calloc(1, sizeof *c);
        if (!c) {
            status = srv_resp_error(r, 500, "internal", "out of memory");
            goto out;
        }
        int rc =
            pd_prelist_writer_open(&c->w, path, srv->keys.sign_sk, area_id, srv_now_ms(), &c->err);
        if (rc == PD_OK) {
            c->rc = PD_OK;
            rc = st->ops->shapes_in(st, u.area, pkg_shape, c);
            if (rc == PD_OK || rc == 1)
                rc = c->rc;
        }
        if (rc == PD_OK) {
            rc = st->ops->area_records(st, u.area, pkg_row, c);
            if (rc == PD_OK || rc == 1)
                rc = c->rc;
            if (rc == PD_OK)
                rc = flush_household(c);
        }
        if (rc == PD_OK)
            rc = pd_prelist_writer_finish(c->w, NULL, &c->err);
        if (rc != PD_OK) {
            status = srv_resp_error(r, 500, "internal", "cannot build the prelist package: %s",
                                    c->err.msg[0] ? c->err.msg : pd_storage_errmsg(st));
            goto out;
        }
        if (c->min_skipped)
            cursor = c->min_skipped - 1;
        FILE *f = fopen(cursor_path, "w");
        if (f) {
            fprintf(f, "%lld\n", (long long)cursor);
            fclose(f);
        }
        prune_packages(srv, key, name);
    } else {
        FILE *f = fopen(cursor_path, "r");
        long long v;
        if (f && fscanf(f, "%lld", &v) == 1)
            cursor = v;
        if (f)
            fclose(f);
    }
    pthread_mutex_unlock(&srv->pkg_lock);
    pkg_locked = false;
    pd_prelist_info info;
    pd_error pe = {0};
    if (pd_prelist_peek(path, &info, &pe) != PD_OK) {
        status = srv_resp_error(r, 500, "internal", "prelist package: %s", pe.msg);
        goto out;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0) {
        if (fd >= 0)
            close(fd);
        status = srv_resp_error(r, 500, "internal", "cannot open the prelist package");
        goto out;
    }
    char hex[2 * PD_HASH_BYTES + 1];
    srv_hex(info.id, PD_HASH_BYTES, hex);
    r->fd = fd;
    r->body_len = (size_t)sb.st_size;
    r->content_type = "application/octet-stream";
    snprintf(r->etag, sizeof r->etag, "\"%s\"", hex);
    r->ranges = true;
    srv_resp_header(r, "Pd-Cursor", "%lld", (long long)cursor);
    r->status = status = 200;
out:
    if (pkg_locked)
        pthread_mutex_unlock(&srv->pkg_lock);
    if (c) {
        flush_household(c); /* frees buffered rows after a failure */
        pd_prelist_writer_free(c->w);
        free(c);
    }
    free(cursor_path);
    free(path);
    return status;
}

/* ---- GET /v1/delta ----------------------------------------------------------------------------
 */

static void add_value(cJSON *o, const char *name, const pd_value *v)
{
    switch (v->type) {
    case PD_VAL_INT:
        cJSON_AddItemToObject(o, name, srv_json_int(v->i));
        break;
    case PD_VAL_REAL:
        cJSON_AddItemToObject(o, name, srv_json_real(v->r));
        break;
    case PD_VAL_TEXT: {
        char *s = malloc(v->len + 1);
        if (!s)
            return;
        if (v->len)
            memcpy(s, v->p, v->len);
        s[v->len] = '\0';
        cJSON_AddStringToObject(o, name, s);
        free(s);
        break;
    }
    case PD_VAL_BLOB: {
        char *s = malloc(2 * v->len + 1);
        if (!s)
            return;
        srv_hex(v->p, v->len, s);
        cJSON_AddStringToObject(o, name, s);
        free(s);
        break;
    }
    default:
        cJSON_AddNullToObject(o, name);
    }
}

typedef struct delta_ctx {
    cJSON *households, *members, *conflicts;
    int64_t count;
    int64_t cursor;       /* highest rev of the records sent */
    int64_t extra_cursor; /* highest rev of the conflicts and keys sent */
    bool nomem;
} delta_ctx;

static int delta_row(void *ctx, pd_entity e, const pd_srv_field *f, size_t n)
{
    delta_ctx *c = ctx;
    cJSON *o = cJSON_CreateObject();
    if (!o) {
        c->nomem = true;
        return 1;
    }
    size_t ncols;
    const pd_column *cols = (unsigned)e < PD_ENT__COUNT ? pd_entity_columns(e, &ncols) : NULL;
    for (size_t i = 0; i < n; i++) {
        if (cols && i < ncols && !cols[i].device)
            continue;
        add_value(o, f[i].name, &f[i].value);
        if (!strcmp(f[i].name, "rev") && f[i].value.type == PD_VAL_INT) {
            int64_t *cur = (unsigned)e < PD_ENT__COUNT ? &c->cursor : &c->extra_cursor;
            if (f[i].value.i > *cur)
                *cur = f[i].value.i;
        }
    }
    if (e == PD_ENT_HOUSEHOLD) {
        cJSON_AddItemToArray(c->households, o);
        c->count++;
    } else if (e == PD_ENT_MEMBER) {
        cJSON_AddItemToArray(c->members, o);
        c->count++;
    } else {
        cJSON_AddItemToArray(c->conflicts, o);
    }
    return 0;
}

int srv_handle_delta(pd_server *srv, const srv_req *q, srv_resp *r)
{
    pd_srv_user u;
    int e = person_of(srv, q, &u, r);
    if (e)
        return e;
    char buf[24];
    int64_t since = 0, limit = DELTA_LIMIT_DEFAULT;
    int got = srv_query_get(q->query, "since", buf, sizeof buf);
    if (got != 0) {
        char *end = NULL;
        since = got > 0 ? strtoll(buf, &end, 10) : -1;
        if (got < 0 || *end || since < 0 || !buf[0])
            return srv_resp_error(r, 400, "bad_request", "since must be a cursor (>= 0)");
    }
    got = srv_query_get(q->query, "limit", buf, sizeof buf);
    if (got != 0) {
        char *end = NULL;
        limit = got > 0 ? strtoll(buf, &end, 10) : 0;
        if (got < 0 || *end || limit < 1 || limit > DELTA_LIMIT_MAX || !buf[0])
            return srv_resp_error(r, 400, "bad_request", "limit must be 1..%d", DELTA_LIMIT_MAX);
    }
    cJSON *o = cJSON_CreateObject();
    delta_ctx c = {.cursor = since};
    cJSON *keyring = NULL, *tasks = NULL;
    if (!o || !cJSON_AddStringToObject(o, "format", "pd-delta-1") ||
        !cJSON_AddNumberToObject(o, "since", (double)since) ||
        !(c.households = cJSON_AddArrayToObject(o, "households")) ||
        !(c.members = cJSON_AddArrayToObject(o, "members")) ||
        !(c.conflicts = cJSON_AddArrayToObject(o, "conflicts")) ||
        !(keyring = cJSON_AddArrayToObject(o, "keyring")) ||
        !(tasks = cJSON_AddArrayToObject(o, "tasks"))) {
        cJSON_Delete(o);
        return srv_resp_error(r, 500, "internal", "out of memory");
    }
    pd_storage *st = srv_store(srv);
    int rc = st->ops->records_since(st, u.area, since, limit, delta_row, &c);
    if (rc == PD_OK)
        rc = st->ops->conflicts_since(st, u.area, since, delta_row, &c);
    if (rc == PD_OK && !c.nomem) /* resolutions and revisit tasks (server/korcam.c) */
        rc = srv_korcam_delta(srv, &u, since, c.conflicts, tasks, &c.extra_cursor);
    if (rc == PD_OK && !c.nomem)
        rc = srv_keyring_json(srv, &u, since, keyring);
    if (rc != PD_OK || c.nomem) {
        cJSON_Delete(o);
        return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(st));
    }
    const cJSON *k;
    cJSON_ArrayForEach(k, keyring)
    {
        const cJSON *kr = cJSON_GetObjectItemCaseSensitive(k, "rev");
        if (cJSON_IsNumber(kr) && (int64_t)kr->valuedouble > c.extra_cursor)
            c.extra_cursor = (int64_t)kr->valuedouble;
    }
    /* While records remain, the cursor may not pass the last record sent (conflicts and keys
     * above it come again on the next page: they are idempotent); on the last page it covers
     * everything sent. */
    bool more = c.count >= limit;
    if (!more && c.extra_cursor > c.cursor)
        c.cursor = c.extra_cursor;
    cJSON_AddNumberToObject(o, "cursor", (double)c.cursor);
    cJSON_AddBoolToObject(o, "more", more);
    /* A JSON answer like any other: http.c signs it over the request's nonce (PROTOCOL.md §2), so
     * a recorded page cannot be replayed to a device. */
    r->json = o;
    srv_resp_header(r, "Pd-Server-Time", "%lld", (long long)srv_now_ms());
    r->status = 200;
    return 200;
}

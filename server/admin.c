/*
 * admin.c — creating and opening a server, and the operator's acts: users, enrolment codes,
 * revocation, loading prelists, status. These are what `pendata-server init | user add |
 * enroll-code | revoke | load-prelist | status` call; each act is one storage transaction with an
 * audit row.
 *
 * Where a server's state lives: the database (any storage.h URL), and beside it a data directory
 * (uploads/, blobs/, packages/) and the key file. For sqlite:PATH they default to PATH.d/ and
 * PATH.key; for any other URL (postgres://…) the data directory must be given and the key file
 * is DIR/server.key — every instance of a server shares that directory (docs/postgres.md).
 */
#include "srv_internal.h"

#include "pd_prelist.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The path of a sqlite: URL (or a bare path); NULL for other schemes. */
static const char *sqlite_path(const char *url)
{
    if (!url)
        return NULL;
    if (!strncmp(url, "sqlite:", 7))
        return url + 7;
    if (strstr(url, "://"))
        return NULL;
    return url;
}

static char *concat(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s", a, b);
    return p;
}

static int make_data_dirs(const char *dir, pd_error *err)
{
    static const char *const subs[] = {"", "/uploads", "/blobs", "/packages"};
    for (size_t i = 0; i < PD_ARRAY_LEN(subs); i++) {
        char *p = concat(dir, subs[i]);
        if (!p)
            return pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        int rc = srv_mkdirs(p, err);
        free(p);
        if (rc != PD_OK)
            return rc;
    }
    return PD_OK;
}

/* Does the database already hold a server's data? Nobody can have pinned a key of a server
 * without users, so an empty database (at most earlier `init` audit rows) may get fresh keys; one
 * with users, devices, records or batches belongs to keys that exist somewhere else. (A URL other
 * than sqlite: is never repeated in a message: it may hold a password.) */
static int refuse_used_database(pd_storage *st, const char *db_url, pd_error *err)
{
    pd_srv_stats s = {0};
    if (st->ops->stats(st, &s) != PD_OK)
        return pd_error_set(
            err, pd_storage_error(st)->code ? pd_storage_error(st)->code : PD_ERR_INTERNAL, "%s",
            pd_storage_errmsg(st));
    if (s.users || s.devices || s.households || s.members || s.batches || s.revision)
        return pd_error_set(err, PD_ERR_EXISTS,
                            "%s already holds a server's data: open it with the data directory "
                            "that has its key file instead of making new keys",
                            sqlite_path(db_url) ? sqlite_path(db_url) : "the database");
    return PD_OK;
}

int pd_server_create(const char *db_url, const char *data_dir, pd_error *err)
{
    if (sodium_init() < 0)
        return pd_error_set(err, PD_ERR_INTERNAL, "libsodium failed to initialise");
    if (!db_url || !*db_url)
        return pd_error_set(err, PD_ERR_INVALID, "no database URL");
    const char *path = sqlite_path(db_url);
    if (path && !*path)
        return pd_error_set(err, PD_ERR_INVALID, "%s: no database path", db_url);
    if (!path && (!data_dir || !*data_dir))
        return pd_error_set(err, PD_ERR_INVALID,
                            "a database other than sqlite: needs a data directory (--data DIR): "
                            "the server's key file and blobs live there");
    /* The same places pd_server_open looks in. */
    char *keyfile = path ? concat(path, ".key") : concat(data_dir, "/server.key");
    char *data = data_dir ? strdup(data_dir) : concat(path, ".d");
    pd_storage *st = NULL;
    int rc = PD_OK;
    if (!keyfile || !data) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        goto out;
    }
    if (access(keyfile, F_OK) == 0) {
        rc = pd_error_set(err, PD_ERR_EXISTS,
                          "%s: a server is already set up here (keys "
                          "exist; they are never overwritten)",
                          keyfile);
        goto out;
    }
    rc = pd_storage_open(&st, db_url, err);
    if (rc != PD_OK)
        goto out;
    rc = refuse_used_database(st, db_url, err);
    if (rc != PD_OK)
        goto out;
    rc = make_data_dirs(data, err);
    if (rc != PD_OK)
        goto out;
    rc = srv_keys_create(keyfile, err);
    if (rc != PD_OK)
        goto out;
    pd_srv_audit a = {.at = srv_now_ms(), .action = "init", .actor = "operator"};
    if ((rc = st->ops->begin(st)) != PD_OK || (rc = st->ops->audit_add(st, &a)) != PD_OK ||
        (rc = st->ops->commit(st)) != PD_OK) {
        st->ops->rollback(st);
        rc = pd_error_set(err, rc, "%s", pd_storage_errmsg(st));
    }
out:
    pd_storage_close(st);
    free(keyfile);
    free(data);
    return rc;
}

int pd_server_init(const char *db_url, pd_error *err)
{
    return pd_server_create(db_url, NULL, err);
}

int pd_server_open(pd_server **out, const char *db_url, const char *data_dir, pd_error *err)
{
    *out = NULL;
    if (sodium_init() < 0)
        return pd_error_set(err, PD_ERR_INTERNAL, "libsodium failed to initialise");
    const char *path = sqlite_path(db_url);
    if (!db_url || !*db_url)
        return pd_error_set(err, PD_ERR_INVALID, "no database URL");
    if (!path && !data_dir)
        return pd_error_set(err, PD_ERR_INVALID,
                            "a database other than sqlite: needs a data directory (--data DIR): "
                            "the server's key file and blobs live there");
    pd_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory");
    pthread_mutex_init(&srv->lock, NULL);
    pthread_mutex_init(&srv->log_lock, NULL);
    pthread_mutex_init(&srv->state_lock, NULL);
    pthread_mutex_init(&srv->pkg_lock, NULL);
    int rc = PD_OK;
    char *keyfile = NULL;
    srv->db_url = strdup(db_url);
    srv->data_dir = data_dir ? strdup(data_dir) : path ? concat(path, ".d") : NULL;
    keyfile = path ? concat(path, ".key") : concat(data_dir, "/server.key");
    if (!srv->db_url || !srv->data_dir || !keyfile) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (path && access(keyfile, F_OK) != 0) {
        rc = pd_error_set(err, PD_ERR_NOTFOUND,
                          "%s: no server here (no key file %s); run `pendata-server init`", path,
                          keyfile);
        goto fail;
    }
    rc = srv_keys_load(&srv->keys, keyfile, err);
    if (rc != PD_OK)
        goto fail;
    rc = pd_storage_open(&srv->st, db_url, err);
    if (rc != PD_OK)
        goto fail;
    rc = make_data_dirs(srv->data_dir, err);
    if (rc != PD_OK)
        goto fail;
    free(keyfile);
    *out = srv;
    return PD_OK;
fail:
    free(keyfile);
    pd_server_close(srv);
    return rc;
}

void pd_server_close(pd_server *srv)
{
    if (!srv)
        return;
    pd_server_stop(srv);
    pd_storage_close(srv->st);
    srv_keys_free(&srv->keys);
    while (srv->busy) {
        srv_busy *b = srv->busy;
        srv->busy = b->next;
        free(b);
    }
    pthread_mutex_destroy(&srv->lock);
    pthread_mutex_destroy(&srv->log_lock);
    pthread_mutex_destroy(&srv->state_lock);
    pthread_mutex_destroy(&srv->pkg_lock);
    free(srv->db_url);
    free(srv->data_dir);
    free(srv);
}

const char *pd_server_errmsg(const pd_server *srv)
{
    if (!srv)
        return "no server";
    const pd_error *e = srv_err(srv);
    return e->msg[0] ? e->msg : pd_strerror(e->code);
}

/* Run one storage transaction under the server lock: body(srv, ctx) inside begin/commit. */
static int in_txn(pd_server *srv, int (*body)(pd_server *, void *), void *ctx)
{
    srv_lock(srv);
    pd_storage *st = srv->st;
    int rc = st->ops->begin(st);
    if (rc != PD_OK) {
        srv_fail_storage(srv);
        goto out;
    }
    rc = body(srv, ctx);
    if (rc != PD_OK) {
        st->ops->rollback(st);
        goto out;
    }
    rc = st->ops->commit(st);
    if (rc != PD_OK)
        srv_fail_storage(srv);
out:
    srv_unlock(srv);
    /* durable before we return, also when it ran while a request deferred its flush (storage.h
     * sync_defer) */
    if (rc == PD_OK && st->ops->sync_flush && st->ops->sync_flush(st) != PD_OK) {
        srv_lock(srv);
        rc = srv_fail(srv, PD_ERR_IO, "the change was written but could not be made durable");
        srv_unlock(srv);
    }
    return rc;
}

static int audit(pd_server *srv, const char *action, const char *entity, const char *target)
{
    pd_srv_audit a = {.at = srv_now_ms(),
                      .action = action,
                      .actor = "operator",
                      .entity = entity,
                      .target = target};
    int rc = srv->st->ops->audit_add(srv->st, &a);
    return rc == PD_OK ? PD_OK : srv_fail_storage(srv);
}

/* ---- users ------------------------------------------------------------------------------- */

static bool valid_role(const char *r)
{
    return r && (!strcmp(r, "enumerator") || !strcmp(r, "supervisor") || !strcmp(r, "korcam") ||
                 !strcmp(r, "admin"));
}

static int user_add_body(pd_server *srv, void *ctx)
{
    const pd_server_user *u = ctx;
    pd_storage *st = srv->st;
    pd_srv_user rec;
    memset(&rec, 0, sizeof rec);
    snprintf(rec.id, sizeof rec.id, "%s", u->id);
    snprintf(rec.role, sizeof rec.role, "%s", u->role);
    snprintf(rec.name, sizeof rec.name, "%s", u->name);
    snprintf(rec.area, sizeof rec.area, "%s", u->area ? u->area : "");
    snprintf(rec.supervisor_id, sizeof rec.supervisor_id, "%s",
             u->supervisor_id ? u->supervisor_id : "");
    rec.created_at = srv_now_ms();
    if (rec.supervisor_id[0]) {
        pd_srv_user sup;
        int rc = st->ops->user_get(st, rec.supervisor_id, &sup);
        if (rc == PD_ERR_NOTFOUND)
            return srv_fail(srv, PD_ERR_NOTFOUND, "supervisor %s does not exist (add it first)",
                            rec.supervisor_id);
        if (rc != PD_OK)
            return srv_fail_storage(srv);
        if (strcmp(sup.role, "supervisor") != 0)
            return srv_fail(srv, PD_ERR_INVALID, "user %s is a %s, not a supervisor", sup.id,
                            sup.role);
    }
    pd_srv_user old;
    int rc = st->ops->user_get(st, rec.id, &old);
    if (rc == PD_OK)
        return srv_fail(srv, PD_ERR_EXISTS, "user %s already exists", rec.id);
    if (rc != PD_ERR_NOTFOUND)
        return srv_fail_storage(srv);
    if (st->ops->user_add(st, &rec) != PD_OK)
        return srv_fail_storage(srv);
    return audit(srv, "user_add", "user", rec.id);
}

int pd_server_user_add(pd_server *srv, const pd_server_user *u)
{
    if (!u || !srv_valid_id(u->id))
        return srv_fail(srv, PD_ERR_INVALID,
                        "user id '%s' must be 1..32 characters of [0-9A-Za-z_-]",
                        u && u->id ? u->id : "");
    if (!valid_role(u->role))
        return srv_fail(srv, PD_ERR_INVALID,
                        "role '%s' must be enumerator, supervisor, korcam or admin",
                        u->role ? u->role : "");
    if (!srv_valid_text(u->name, PD_SRV_NAME_MAX))
        return srv_fail(srv, PD_ERR_INVALID,
                        "name must be 1..%d bytes of UTF-8 without control characters",
                        PD_SRV_NAME_MAX);
    if (u->supervisor_id && *u->supervisor_id && !srv_valid_id(u->supervisor_id))
        return srv_fail(srv, PD_ERR_INVALID, "supervisor id '%s' is not a valid id",
                        u->supervisor_id);
    pd_error e = {0};
    if (srv_areas_check(u->area, &e) != PD_OK)
        return srv_fail(srv, e.code, "%s", e.msg);
    if (!strcmp(u->role, "enumerator") && (!u->area || !*u->area))
        return srv_fail(srv, PD_ERR_INVALID, "an enumerator needs an area (--area CODES)");
    return in_txn(srv, user_add_body, (void *)u);
}

/* ---- enrolment codes ------------------------------------------------------------------------ */

static const char code_alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

bool srv_code_hash(const char *input, uint8_t hash[PD_HASH_BYTES])
{
    char norm[13];
    size_t n = 0;
    if (!input)
        return false;
    for (const char *p = input; *p; p++) {
        char c = *p;
        if (c == '-' || c == ' ')
            continue;
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (c == 'O')
            c = '0';
        else if (c == 'I' || c == 'L')
            c = '1';
        if (!strchr(code_alphabet, c) || c == '\0' || n >= 12)
            return false;
        norm[n++] = c;
    }
    if (n != 12)
        return false;
    norm[n] = '\0';
    static const char domain[] = "pendata-enroll-v1:";
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, PD_HASH_BYTES);
    crypto_generichash_update(&h, (const uint8_t *)domain, sizeof domain - 1);
    crypto_generichash_update(&h, (const uint8_t *)norm, 12);
    crypto_generichash_final(&h, hash, PD_HASH_BYTES);
    sodium_memzero(norm, sizeof norm);
    return true;
}

typedef struct code_ctx {
    const char *user_id;
    int64_t ttl_ms;
    uint8_t hash[PD_HASH_BYTES];
} code_ctx;

static int code_body(pd_server *srv, void *ctx)
{
    code_ctx *c = ctx;
    pd_storage *st = srv->st;
    pd_srv_user u;
    int rc = st->ops->user_get(st, c->user_id, &u);
    if (rc == PD_ERR_NOTFOUND)
        return srv_fail(srv, rc, "no user %s (add it with `user add`)", c->user_id);
    if (rc != PD_OK)
        return srv_fail_storage(srv);
    int64_t now = srv_now_ms();
    if (st->ops->code_add(st, c->hash, u.id, now, now + c->ttl_ms) != PD_OK)
        return srv_fail_storage(srv);
    return audit(srv, "enroll_code", "user", u.id);
}

int pd_server_enroll_code(pd_server *srv, const char *user_id, int64_t ttl_ms,
                          char code[PD_ENROLL_CODE_LEN + 1])
{
    code[0] = '\0';
    if (!srv_valid_id(user_id))
        return srv_fail(srv, PD_ERR_INVALID, "user id '%s' is not valid", user_id ? user_id : "");
    char raw[PD_ENROLL_CODE_LEN + 1];
    size_t o = 0;
    for (int i = 0; i < 12; i++) {
        if (i && i % 4 == 0)
            raw[o++] = '-';
        raw[o++] = code_alphabet[randombytes_uniform(32)];
    }
    raw[o] = '\0';
    code_ctx c = {.user_id = user_id, .ttl_ms = ttl_ms > 0 ? ttl_ms : PD_ENROLL_TTL_DEFAULT_MS};
    srv_code_hash(raw, c.hash);
    int rc = in_txn(srv, code_body, &c);
    if (rc == PD_OK)
        memcpy(code, raw, sizeof raw);
    sodium_memzero(raw, sizeof raw);
    return rc;
}

static int revoke_body(pd_server *srv, void *ctx)
{
    const char *id = ctx;
    int rc = srv->st->ops->device_revoke(srv->st, id, srv_now_ms());
    if (rc != PD_OK)
        return srv_fail_storage(srv);
    return audit(srv, "revoke", "device", id);
}

int pd_server_revoke(pd_server *srv, const char *device_id)
{
    if (!srv_valid_id(device_id))
        return srv_fail(srv, PD_ERR_INVALID, "device id '%s' is not valid",
                        device_id ? device_id : "");
    return in_txn(srv, revoke_body, (void *)device_id);
}

/* ---- loading prelists ----------------------------------------------------------------------- */

typedef struct load_ctx {
    pd_server *srv;
    pd_server_load_stats *stats;
    bool hh_skipped; /* the current household existed: its members are skipped too */
} load_ctx;

static void add_text(pd_srv_field *f, size_t *n, const char *name, const char *v)
{
    f[*n].name = name;
    if (v) {
        f[*n].value.type = PD_VAL_TEXT;
        f[*n].value.p = (const uint8_t *)v;
        f[*n].value.len = strlen(v);
    } else {
        f[*n].value.type = PD_VAL_NULL;
    }
    (*n)++;
}

static void add_int(pd_srv_field *f, size_t *n, const char *name, int64_t v)
{
    f[*n].name = name;
    if (v == PD_PRELIST_NULL) {
        f[*n].value.type = PD_VAL_NULL;
    } else {
        f[*n].value.type = PD_VAL_INT;
        f[*n].value.i = v;
    }
    (*n)++;
}

static void add_real(pd_srv_field *f, size_t *n, const char *name, double v)
{
    f[*n].name = name;
    if (isnan(v)) {
        f[*n].value.type = PD_VAL_NULL;
    } else {
        f[*n].value.type = PD_VAL_REAL;
        f[*n].value.r = v;
    }
    (*n)++;
}

static int load_fail(load_ctx *c, pd_error *err)
{
    int code = pd_storage_error(c->srv->st)->code;
    return pd_error_set(err, code ? code : PD_ERR_INTERNAL, "%s", pd_storage_errmsg(c->srv->st));
}

static int load_shape(void *ud, const pd_prelist_shape *s, pd_error *err)
{
    load_ctx *c = ud;
    pd_storage *st = c->srv->st;
    int64_t rev;
    if (st->ops->revision_next(st, &rev) != PD_OK)
        return load_fail(c, err);
    int rc = st->ops->shape_put(st, s->code, s->name, s->shape, rev);
    if (rc == PD_ERR_EXISTS) {
        c->stats->skipped++;
        return PD_OK;
    }
    if (rc != PD_OK)
        return load_fail(c, err);
    c->stats->shapes++;
    return PD_OK;
}

static int load_household(void *ud, const pd_prelist_household *h, pd_error *err)
{
    load_ctx *c = ud;
    pd_storage *st = c->srv->st;
    int64_t rev;
    int rc = st->ops->record_rev(st, PD_ENT_HOUSEHOLD, h->id, &rev);
    if (rc == PD_OK) {
        c->hh_skipped = true;
        c->stats->skipped++;
        return PD_OK;
    }
    if (rc != PD_ERR_NOTFOUND)
        return load_fail(c, err);
    c->hh_skipped = false;
    if (st->ops->revision_next(st, &rev) != PD_OK)
        return load_fail(c, err);
    pd_srv_field f[40];
    size_t n = 0;
    add_text(f, &n, "id", h->id);
    add_text(f, &n, "source", "prelist");
    add_text(f, &n, "prov", h->prov);
    add_text(f, &n, "kab", h->kab);
    add_text(f, &n, "kec", h->kec);
    add_text(f, &n, "desa", h->desa);
    add_text(f, &n, "sls", h->sls ? h->sls : "");
    add_text(f, &n, "address", h->address ? h->address : "");
    add_text(f, &n, "head_name", h->head_name ? h->head_name : "");
    add_text(f, &n, "kk", h->kk);
    add_int(f, &n, "member_count", h->member_count == PD_PRELIST_NULL ? 0 : h->member_count);
    add_int(f, &n, "tenure", h->tenure);
    add_int(f, &n, "floor_area", h->floor_area);
    add_int(f, &n, "floor_material", h->floor_material);
    add_int(f, &n, "wall_material", h->wall_material);
    add_int(f, &n, "roof_material", h->roof_material);
    add_int(f, &n, "rooms", h->rooms);
    add_int(f, &n, "water_source", h->water_source);
    add_int(f, &n, "lighting", h->lighting);
    add_int(f, &n, "power_va", h->power_va);
    add_int(f, &n, "cooking_fuel", h->cooking_fuel);
    add_int(f, &n, "toilet", h->toilet);
    add_int(f, &n, "asset_flags", h->asset_flags == PD_PRELIST_NULL ? 0 : h->asset_flags);
    add_int(f, &n, "cattle", h->cattle == PD_PRELIST_NULL ? 0 : h->cattle);
    add_int(f, &n, "goats", h->goats == PD_PRELIST_NULL ? 0 : h->goats);
    add_int(f, &n, "pigs", h->pigs == PD_PRELIST_NULL ? 0 : h->pigs);
    add_int(f, &n, "poultry", h->poultry == PD_PRELIST_NULL ? 0 : h->poultry);
    add_int(f, &n, "land_m2", h->land_m2 == PD_PRELIST_NULL ? 0 : h->land_m2);
    add_int(f, &n, "desil", h->desil);
    add_int(f, &n, "percentile", h->percentile);
    add_real(f, &n, "lat", h->lat);
    add_real(f, &n, "lon", h->lon);
    if (st->ops->record_insert(st, PD_ENT_HOUSEHOLD, f, n, rev) != PD_OK)
        return load_fail(c, err);
    c->stats->households++;
    return PD_OK;
}

static int load_member(void *ud, const pd_prelist_member *m, pd_error *err)
{
    load_ctx *c = ud;
    pd_storage *st = c->srv->st;
    if (c->hh_skipped) {
        c->stats->skipped++;
        return PD_OK;
    }
    int64_t rev;
    if (st->ops->revision_next(st, &rev) != PD_OK)
        return load_fail(c, err);
    pd_srv_field f[24];
    size_t n = 0;
    add_text(f, &n, "id", m->id);
    add_text(f, &n, "household_id", m->household_id);
    add_int(f, &n, "member_no", m->member_no);
    add_text(f, &n, "name", m->name);
    add_text(f, &n, "nik", m->nik);
    add_text(f, &n, "kk", m->kk);
    add_int(f, &n, "sex", m->sex);
    add_text(f, &n, "birth_place", m->birth_place);
    add_text(f, &n, "birth_date", m->birth_date);
    add_int(f, &n, "relationship", m->relationship);
    add_int(f, &n, "marital", m->marital);
    add_int(f, &n, "disability", m->disability == PD_PRELIST_NULL ? 0 : m->disability);
    add_int(f, &n, "chronic_illness",
            m->chronic_illness == PD_PRELIST_NULL ? 0 : m->chronic_illness);
    add_int(f, &n, "schooling", m->schooling);
    add_int(f, &n, "work", m->work);
    add_int(f, &n, "programmes", m->programmes == PD_PRELIST_NULL ? 0 : m->programmes);
    if (st->ops->record_insert(st, PD_ENT_MEMBER, f, n, rev) != PD_OK)
        return load_fail(c, err);
    c->stats->members++;
    return PD_OK;
}

typedef struct load_job {
    const char *area; /* generate */
    uint64_t seed;
    uint32_t households;
    const char *path; /* or read */
    const uint8_t *issuer_pk;
    pd_server_load_stats *stats;
} load_job;

static int load_body(pd_server *srv, void *ctx)
{
    load_job *j = ctx;
    load_ctx c = {.srv = srv, .stats = j->stats};
    pd_prelist_handler h = {
        .shape = load_shape, .household = load_household, .member = load_member, .ud = &c};
    pd_error e = {0};
    int rc;
    if (j->path) {
        rc =
            pd_prelist_read(j->path, j->issuer_pk ? j->issuer_pk : srv->keys.sign_pk, &h, NULL, &e);
    } else {
        pd_prelist_gen_options o = {.seed = j->seed, .households = j->households};
        rc = pd_prelist_generate(j->area, &o, &h, &e);
    }
    if (rc != PD_OK)
        return srv_fail(srv, rc, "%s", e.msg[0] ? e.msg : pd_strerror(rc));
    return audit(srv, "load", "prelist", j->path ? j->path : j->area);
}

int pd_server_load_generated(pd_server *srv, const char *area, uint64_t seed, uint32_t households,
                             pd_server_load_stats *stats)
{
    pd_server_load_stats local;
    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    if (!area || !*area)
        return srv_fail(srv, PD_ERR_INVALID, "no area code");
    load_job j = {.area = area, .seed = seed, .households = households, .stats = stats};
    return in_txn(srv, load_body, &j);
}

int pd_server_load_file(pd_server *srv, const char *path, const uint8_t *issuer_pk,
                        pd_server_load_stats *stats)
{
    pd_server_load_stats local;
    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    load_job j = {.path = path, .issuer_pk = issuer_pk, .stats = stats};
    return in_txn(srv, load_body, &j);
}

int pd_server_get_status(pd_server *srv, pd_server_status *out)
{
    memset(out, 0, sizeof *out);
    pd_srv_stats s = {0};
    srv_lock(srv);
    int rc = srv->st->ops->stats(srv->st, &s);
    if (rc != PD_OK)
        srv_fail_storage(srv);
    srv_unlock(srv);
    if (rc != PD_OK)
        return rc;
    out->users = s.users;
    out->devices = s.devices;
    out->devices_revoked = s.devices_revoked;
    out->households = s.households;
    out->members = s.members;
    out->visits = s.visits;
    out->photos = s.photos;
    out->batches = s.batches;
    out->batches_held = s.batches_held;
    out->forks = s.forks;
    out->conflicts_open = s.conflicts_open;
    out->uploads_open = s.uploads_open;
    out->revision = s.revision;
    return PD_OK;
}

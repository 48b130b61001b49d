/*
 * enroll.c — POST /v1/enroll (PROTOCOL.md §3): a device trades a one-time code for its identity,
 * its assignment, the server's public keys (which it pins) and the keyring it needs; and the
 * keyring itself, which deltas send again as keys are enrolled.
 *
 * The code is checked and consumed, the device and the person's key are registered, in one
 * transaction: a failure stores nothing. A device that repeats its own successful enrolment (the
 * answer was lost on the way) gets the same answer again instead of "code used".
 */
#include "srv_internal.h"

#include <cjson/cJSON.h>
#include <string.h>

static const char *json_str(const cJSON *o, const char *name)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(it) ? it->valuestring : NULL;
}

static void add_hex(cJSON *o, const char *name, const uint8_t *p, size_t n)
{
    char hex[2 * 64 + 1];
    srv_hex(p, n, hex);
    cJSON_AddStringToObject(o, name, hex);
}

/* ---- keyring --------------------------------------------------------------------------------- */

typedef struct key_ctx {
    cJSON *arr;
    const pd_srv_user *user;
    const uint8_t *supervisor_pk; /* for enumerator rows */
    int64_t since;
    bool latest_only; /* find the newest key instead of listing */
    bool found;
    uint8_t latest[PD_PUBKEY_BYTES];
} key_ctx;

static int key_cb(void *ctx, const pd_srv_person_key *k)
{
    key_ctx *c = ctx;
    if (c->latest_only) {
        memcpy(c->latest, k->pk, PD_PUBKEY_BYTES); /* keys come oldest first */
        c->found = true;
        return 0;
    }
    if (k->rev <= c->since)
        return 0;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return PD_ERR_NOMEM;
    cJSON_AddItemToArray(c->arr, o);
    add_hex(o, "pk", k->pk, PD_PUBKEY_BYTES);
    cJSON_AddStringToObject(o, "role", c->user->role);
    cJSON_AddStringToObject(o, "person_id", c->user->id);
    cJSON_AddStringToObject(o, "name", c->user->name);
    if (c->supervisor_pk)
        add_hex(o, "supervisor_pk", c->supervisor_pk, PD_PUBKEY_BYTES);
    else
        cJSON_AddNullToObject(o, "supervisor_pk");
    cJSON_AddStringToObject(o, "area", c->user->area);
    cJSON_AddNumberToObject(o, "rev", (double)k->rev);
    return 0;
}

/* The newest key of a user (false if none enrolled). */
static bool latest_key(pd_server *srv, const char *user_id, uint8_t pk[PD_PUBKEY_BYTES])
{
    key_ctx c = {.latest_only = true};
    if (srv_store(srv)->ops->person_keys_of(srv_store(srv), user_id, key_cb, &c) != PD_OK ||
        !c.found)
        return false;
    memcpy(pk, c.latest, PD_PUBKEY_BYTES);
    return true;
}

static int list_keys(pd_server *srv, cJSON *arr, const pd_srv_user *u, int64_t since)
{
    uint8_t sup_pk[PD_PUBKEY_BYTES];
    bool has_sup = u->supervisor_id[0] && latest_key(srv, u->supervisor_id, sup_pk);
    key_ctx c = {.arr = arr, .user = u, .supervisor_pk = has_sup ? sup_pk : NULL, .since = since};
    int rc = srv_store(srv)->ops->person_keys_of(srv_store(srv), u->id, key_cb, &c);
    return rc == PD_OK ? PD_OK : srv_fail_storage(srv);
}

typedef struct sup_ctx {
    pd_server *srv;
    cJSON *arr;
    int64_t since;
} sup_ctx;

static int supervised_cb(void *ctx, const pd_srv_user *u)
{
    sup_ctx *c = ctx;
    return list_keys(c->srv, c->arr, u, c->since);
}

int srv_keyring_json(pd_server *srv, const pd_srv_user *u, int64_t since, cJSON *arr)
{
    if (!strcmp(u->role, "enumerator") && u->supervisor_id[0]) {
        pd_srv_user sup;
        int rc = srv_store(srv)->ops->user_get(srv_store(srv), u->supervisor_id, &sup);
        if (rc == PD_OK)
            rc = list_keys(srv, arr, &sup, since);
        else if (rc != PD_ERR_NOTFOUND)
            return srv_fail_storage(srv);
        return rc == PD_ERR_NOTFOUND ? PD_OK : rc;
    }
    if (!strcmp(u->role, "supervisor")) {
        sup_ctx c = {.srv = srv, .arr = arr, .since = since};
        int rc = srv_store(srv)->ops->users_supervised(srv_store(srv), u->id, supervised_cb, &c);
        return rc == PD_OK ? PD_OK : (srv_err(srv)->code ? rc : srv_fail_storage(srv));
    }
    return PD_OK; /* korcam and admin: nothing in version 1 */
}

/* ---- POST /v1/enroll ------------------------------------------------------------------------- */

typedef struct enroll_in {
    const char *code, *device_id;
    uint8_t device_pk[PD_PUBKEY_BYTES], user_pk[PD_PUBKEY_BYTES];
    uint8_t code_hash[PD_HASH_BYTES];
} enroll_in;

/* In the transaction: consume the code, register device and key. Returns an HTTP status and
 * fills r on failure; 200 and *user on success. */
static int enroll_txn(pd_server *srv, const enroll_in *in, pd_srv_user *user, srv_resp *r)
{
    pd_storage *st = srv_store(srv);
    int64_t now = srv_now_ms();
    pd_srv_code_state state;
    char user_id[PD_SRV_ID_MAX + 1] = "";
    if (st->ops->code_take(st, in->code_hash, now, in->device_id, &state, user_id) != PD_OK)
        return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(st));
    pd_srv_device dev;
    int drc = st->ops->device_get(st, in->device_id, &dev);
    if (drc != PD_OK && drc != PD_ERR_NOTFOUND)
        return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(st));
    bool same_device = drc == PD_OK && !memcmp(dev.pk, in->device_pk, PD_PUBKEY_BYTES) &&
                       !strcmp(dev.user_id, user_id);
    switch (state) {
    case PD_CODE_UNKNOWN:
        return srv_resp_error(r, 403, "code_unknown", "no such enrolment code");
    case PD_CODE_EXPIRED:
        return srv_resp_error(r, 403, "code_expired",
                              "this enrolment code has expired; ask for a new one");
    case PD_CODE_USED: {
        pd_srv_person_key k;
        if (same_device && st->ops->person_key_get(st, in->user_pk, &k) == PD_OK &&
            !strcmp(k.user_id, user_id) && !strcmp(k.device_id, in->device_id))
            break; /* this device's own enrolment, asked again */
        return srv_resp_error(r, 403, "code_used", "this enrolment code was already used");
    }
    case PD_CODE_OK:
        if (drc == PD_OK)
            return srv_resp_error(r, 409, "device_exists",
                                  "device %s is already enrolled with another key", in->device_id);
        pd_srv_person_key k;
        int krc = st->ops->person_key_get(st, in->user_pk, &k);
        if (krc == PD_OK && strcmp(k.user_id, user_id) != 0)
            return srv_resp_error(r, 409, "key_in_use",
                                  "this person key belongs to someone "
                                  "else");
        if (krc != PD_OK && krc != PD_ERR_NOTFOUND)
            return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(st));
        pd_srv_device d = {.enrolled_at = now};
        snprintf(d.id, sizeof d.id, "%s", in->device_id);
        snprintf(d.user_id, sizeof d.user_id, "%s", user_id);
        memcpy(d.pk, in->device_pk, PD_PUBKEY_BYTES);
        if (st->ops->device_add(st, &d) != PD_OK)
            return srv_resp_error(r, 409, "device_exists", "%s", pd_storage_errmsg(st));
        if (krc == PD_ERR_NOTFOUND) {
            pd_srv_person_key nk = {.added_at = now};
            memcpy(nk.pk, in->user_pk, PD_PUBKEY_BYTES);
            snprintf(nk.user_id, sizeof nk.user_id, "%s", user_id);
            snprintf(nk.device_id, sizeof nk.device_id, "%s", in->device_id);
            if (st->ops->revision_next(st, &nk.rev) != PD_OK ||
                st->ops->person_key_add(st, &nk) != PD_OK)
                return srv_resp_error(r, 409, "key_in_use", "%s", pd_storage_errmsg(st));
        }
        pd_srv_audit a = {.at = now,
                          .action = "enroll",
                          .actor = user_id,
                          .device_id = in->device_id,
                          .entity = "device",
                          .target = in->device_id};
        if (st->ops->audit_add(st, &a) != PD_OK)
            return srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(st));
        break;
    }
    if (st->ops->user_get(st, user_id, user) != PD_OK)
        return srv_resp_error(r, 500, "internal", "the code's user %s is gone", user_id);
    return 200;
}

int srv_handle_enroll(pd_server *srv, const srv_req *q, srv_resp *r)
{
    cJSON *in = srv_json_parse(q->body, q->body_len);
    enroll_in e = {0};
    int status;
    if (!in || !cJSON_IsObject(in)) {
        status = srv_resp_error(r, 400, "bad_request",
                                "the body must be a JSON object, no string holding \\u0000");
        goto out;
    }
    e.code = json_str(in, "code");
    e.device_id = json_str(in, "device_id");
    const char *dpk = json_str(in, "device_pk"), *upk = json_str(in, "user_pk");
    if (!e.code || !e.device_id || !dpk || !upk) {
        status = srv_resp_error(r, 400, "bad_request",
                                "code, device_id, device_pk and user_pk are required strings");
        goto out;
    }
    if (!srv_valid_id(e.device_id)) {
        status = srv_resp_error(r, 400, "bad_request",
                                "device_id must be 1..32 characters of [0-9A-Za-z_-]");
        goto out;
    }
    if (!srv_unhex(dpk, e.device_pk, PD_PUBKEY_BYTES) ||
        !srv_unhex(upk, e.user_pk, PD_PUBKEY_BYTES)) {
        status =
            srv_resp_error(r, 400, "bad_request", "device_pk and user_pk must be 64 hex digits");
        goto out;
    }
    if (!srv_code_hash(e.code, e.code_hash)) {
        status = srv_resp_error(r, 403, "code_unknown", "no such enrolment code");
        goto out;
    }
    pd_storage *st = srv_store(srv);
    if (st->ops->begin(st) != PD_OK) {
        status = srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(st));
        goto out;
    }
    pd_srv_user user;
    status = enroll_txn(srv, &e, &user, r);
    if (status != 200) {
        st->ops->rollback(st);
        goto out;
    }
    if (st->ops->commit(st) != PD_OK) {
        status = srv_resp_error(r, 503, "busy", "storage: %s", pd_storage_errmsg(st));
        goto out;
    }

    cJSON *o = cJSON_CreateObject(), *u = NULL, *s = NULL, *areas = NULL, *ring = NULL;
    if (!o || !(u = cJSON_AddObjectToObject(o, "user")) ||
        !(s = cJSON_AddObjectToObject(o, "server")) ||
        !(areas = cJSON_AddArrayToObject(u, "area")) ||
        !(ring = cJSON_AddArrayToObject(o, "keyring"))) {
        cJSON_Delete(o);
        status = srv_resp_error(r, 500, "internal", "out of memory");
        goto out;
    }
    cJSON_AddStringToObject(o, "device_id", e.device_id);
    cJSON_AddStringToObject(u, "id", user.id);
    cJSON_AddStringToObject(u, "role", user.role);
    cJSON_AddStringToObject(u, "name", user.name);
    for (const char *p = user.area; *p;) {
        size_t n = strcspn(p, ",");
        char code[PD_SRV_CODE_MAX + 1];
        if (n > 0 && n <= PD_SRV_CODE_MAX) {
            memcpy(code, p, n);
            code[n] = '\0';
            cJSON_AddItemToArray(areas, cJSON_CreateString(code));
        }
        p += n;
        if (*p == ',')
            p++;
    }
    if (user.supervisor_id[0])
        cJSON_AddStringToObject(u, "supervisor", user.supervisor_id);
    else
        cJSON_AddNullToObject(u, "supervisor");
    char fp[PD_SERVER_FINGERPRINT_LEN + 1];
    pd_server_fingerprint(srv, fp);
    add_hex(s, "sign_pk", srv->keys.sign_pk, PD_PUBKEY_BYTES);
    add_hex(s, "recovery_pk", srv->keys.box_pk, PD_PUBKEY_BYTES);
    cJSON_AddStringToObject(s, "fingerprint", fp);
    srv_keyring_json(srv, &user, 0, ring);
    cJSON_AddNumberToObject(o, "server_time", (double)srv_now_ms());
    r->json = o;
    r->status = status = 200;
out:
    cJSON_Delete(in);
    return status;
}

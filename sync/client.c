/*
 * client.c — the sync client's two acts on a device store: enrolment (pd_sync_enroll) and a sync
 * (pd_sync_run: upload, receipts, then pull), with the small key/value state they keep.
 *
 * A sync, in order (PROTOCOL.md; the pull only after the upload queue drained, PowerSync's rule):
 *   1. an upload left unfinished by an earlier run (sync_state upload.*) is resumed at the server's
 *      offset and committed;
 *   2. batches sent earlier without a final receipt (state 'uploaded': held, or the answer lost),
 *      and this device's own sealed batches that someone else may have uploaded, are asked about
 *      (GET /v1/receipts); one the server does not know goes back to the queue;
 *   3. every approved or voided batch not yet acknowledged goes up in bundles (pd_bundle, at
 *      most BUNDLE_MAX_BATCHES each): first the photos they name, then the bundle (tus), then
 * commit; the bundle bytes are saved before the upload is created, its URL and offset before any
 *      byte is sent, so an interrupted upload resumes byte-exact in the next run;
 *   4. receipts are checked with the pinned key: a valid applied/voided receipt is stored on its
 *      batch (state 'acknowledged'), held and forked batches wait ('uploaded'), a rejected one
 * stays in the queue with its message in sync_state;
 *   5. the pull (client_pull.c) — also when the upload failed for good (a bundle or photo refused)
 *      or the server takes no new upload from the device (429 upload_quota): the batches stay
 *      queued and the failure is returned, but resolutions, reassignments and keys still
 *      arrive; only a link that is down (or no memory) skips it.
 * An upload given up on (a saved bundle damaged or refused, a photo upload not resumed, one that
 * is gone or not what it seemed) is terminated (tus DELETE), so that it never holds a place of
 * the device's cap on the server for the 24 h until it expires; one that cannot be DELETEd for
 * want of an answer is kept in sync_state and DELETEd at the start of a later run.
 *
 * Keys used: settings server_url, server_sign_pk, server_recovery_pk, server_fingerprint,
 * person_id, role, enrolled_at; sync_state clock_skew_ms, upload.url, upload.offset,
 * upload.bundle, photo.url, photo.hash, rejected.<batch hash hex>, enroll.user_sk (the person key
 * of an enrolment not answered yet), abandoned.<upload id> (the URL of an upload to DELETE), and
 * those of client_pull.c.
 */
#include "client_internal.h"
#include "keys.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define BUNDLE_MAX_BATCHES 500u      /* a batch and its record each: ≤ 1024 entries */
#define BUNDLE_MAX_BYTES (48u << 20) /* under the server's 64 MiB Tus-Max-Size */
#define BUNDLE_ENTRY_MAX (16u << 20)
#define CODE_ALPHABET "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#define CODE_LEN 12
#define NAME_MAX_BYTES PD_KEYRING_NAME_MAX
#define AREA_LIST_MAX PD_KEYRING_AREA_MAX

/* ---- small key/value state ------------------------------------------------------------------- */

static int kv_get(pd_store *store, const char *table, const char *key, sqlite3_stmt **out)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT value FROM %s WHERE key = ?1", table);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store), sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, table);
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = st;
        return PD_OK;
    }
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return PD_ERR_NOTFOUND;
    return pd_store_fail_sqlite(store, rc, table);
}

typedef struct kv_val {
    int type;
    int64_t i;
    const void *p;
    size_t n;
} kv_val;

static int kv_set(pd_store *store, const char *table, const char *key, const kv_val *v)
{
    char sql[128];
    snprintf(sql, sizeof sql,
             "INSERT INTO %s (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET "
             "value = excluded.value",
             table);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store), sql, -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        if (v->type == SQLITE_INTEGER)
            sqlite3_bind_int64(st, 2, v->i);
        else if (v->type == SQLITE_TEXT)
            sqlite3_bind_text(st, 2, v->p, (int)v->n, SQLITE_STATIC);
        else
            sqlite3_bind_blob64(st, 2, v->p, v->n, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return pd_store_fail_sqlite(store, rc, table);
    return PD_OK;
}

int pd_sync_state_get_int(pd_store *store, const char *key, int64_t *v)
{
    sqlite3_stmt *st;
    int rc = kv_get(store, "sync_state", key, &st);
    if (rc != PD_OK)
        return rc;
    *v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return PD_OK;
}

int pd_sync_state_get_text(pd_store *store, const char *key, char *buf, size_t cap)
{
    sqlite3_stmt *st;
    int rc = kv_get(store, "sync_state", key, &st);
    if (rc != PD_OK)
        return rc;
    const unsigned char *t = sqlite3_column_text(st, 0);
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    if (!t || n >= cap)
        rc = pd_store_fail(store, PD_ERR_CORRUPT, "sync state %s: missing or too long", key);
    else
        memcpy(buf, t, n + 1);
    sqlite3_finalize(st);
    return rc;
}

int pd_sync_state_get_blob(pd_store *store, const char *key, uint8_t **p, size_t *n)
{
    sqlite3_stmt *st;
    *p = NULL;
    *n = 0;
    int rc = kv_get(store, "sync_state", key, &st);
    if (rc != PD_OK)
        return rc;
    size_t len = (size_t)sqlite3_column_bytes(st, 0);
    const void *b = sqlite3_column_blob(st, 0);
    *p = malloc(len ? len : 1);
    if (!*p)
        rc = pd_store_fail(store, PD_ERR_NOMEM, "out of memory");
    else {
        if (len)
            memcpy(*p, b, len);
        *n = len;
    }
    sqlite3_finalize(st);
    return rc;
}

int pd_sync_state_set_int(pd_store *store, const char *key, int64_t v)
{
    kv_val x = {.type = SQLITE_INTEGER, .i = v};
    return kv_set(store, "sync_state", key, &x);
}

int pd_sync_state_set_text(pd_store *store, const char *key, const char *v)
{
    kv_val x = {.type = SQLITE_TEXT, .p = v, .n = strlen(v)};
    return kv_set(store, "sync_state", key, &x);
}

int pd_sync_state_set_blob(pd_store *store, const char *key, const uint8_t *p, size_t n)
{
    kv_val x = {.type = SQLITE_BLOB, .p = p, .n = n};
    return kv_set(store, "sync_state", key, &x);
}

int pd_sync_state_del(pd_store *store, const char *key)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store), "DELETE FROM sync_state WHERE key = ?1", -1,
                                &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return pd_store_fail_sqlite(store, rc, "sync state");
    return PD_OK;
}

int pd_client_setting_text(pd_store *store, const char *key, char *buf, size_t cap)
{
    sqlite3_stmt *st;
    int rc = kv_get(store, "settings", key, &st);
    if (rc != PD_OK)
        return rc;
    const unsigned char *t = sqlite3_column_text(st, 0);
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    if (!t || n >= cap)
        rc = pd_store_fail(store, PD_ERR_CORRUPT, "setting %s: missing or too long", key);
    else
        memcpy(buf, t, n + 1);
    sqlite3_finalize(st);
    return rc;
}

int pd_client_setting_blob(pd_store *store, const char *key, uint8_t *buf, size_t n)
{
    sqlite3_stmt *st;
    int rc = kv_get(store, "settings", key, &st);
    if (rc != PD_OK)
        return rc;
    if ((size_t)sqlite3_column_bytes(st, 0) != n || sqlite3_column_type(st, 0) != SQLITE_BLOB)
        rc = pd_store_fail(store, PD_ERR_CORRUPT, "setting %s: not a %zu-byte key", key, n);
    else
        memcpy(buf, sqlite3_column_blob(st, 0), n);
    sqlite3_finalize(st);
    return rc;
}

static int setting_set_text(pd_store *store, const char *key, const char *v)
{
    kv_val x = {.type = SQLITE_TEXT, .p = v, .n = strlen(v)};
    return kv_set(store, "settings", key, &x);
}

static int setting_set_blob(pd_store *store, const char *key, const uint8_t *p, size_t n)
{
    kv_val x = {.type = SQLITE_BLOB, .p = p, .n = n};
    return kv_set(store, "settings", key, &x);
}

static int setting_set_int(pd_store *store, const char *key, int64_t v)
{
    kv_val x = {.type = SQLITE_INTEGER, .i = v};
    return kv_set(store, "settings", key, &x);
}

/* ---- fingerprints, codes, JSON helpers ----------------------------------------------------------
 */

void pd_sync_fingerprint(const uint8_t sign_pk[PD_PUBKEY_BYTES],
                         char out[PD_SYNC_FINGERPRINT_LEN + 1])
{
    uint8_t h[PD_HASH_BYTES];
    crypto_generichash(h, sizeof h, sign_pk, PD_PUBKEY_BYTES, NULL, 0);
    char hex[33];
    pd_sync_hex(hex, h, 16);
    size_t k = 0;
    for (int g = 0; g < 8; g++) {
        if (g)
            out[k++] = '-';
        memcpy(out + k, hex + 4 * g, 4);
        k += 4;
    }
    out[k] = '\0';
}

/* Lower-case hex digits of a fingerprint without its dashes; -1 unless exactly 32. */
static int fingerprint_norm(const char *in, char out[33])
{
    size_t k = 0;
    for (const char *p = in; *p; p++) {
        if (*p == '-' || *p == ' ' || *p == ':')
            continue;
        char c = *p;
        if (c >= 'A' && c <= 'F')
            c = (char)(c - 'A' + 'a');
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) || k >= 32)
            return -1;
        out[k++] = c;
    }
    out[k] = '\0';
    return k == 32 ? 0 : -1;
}

/* An enrolment code: 12 characters of the alphabet, dashes and spaces ignored, any case. */
static int code_norm(const char *in, char out[CODE_LEN + 1])
{
    size_t k = 0;
    for (const char *p = in; *p; p++) {
        if (*p == '-' || *p == ' ')
            continue;
        char c = *p;
        if (c >= 'a' && c <= 'z')
            c = (char)(c - 'a' + 'A');
        if (!c || !strchr(CODE_ALPHABET, c) || k >= CODE_LEN)
            return -1;
        out[k++] = c;
    }
    out[k] = '\0';
    return k == CODE_LEN ? 0 : -1;
}

static bool valid_id(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool valid_role(const char *r)
{
    return r && (!strcmp(r, "enumerator") || !strcmp(r, "supervisor") || !strcmp(r, "korcam") ||
                 !strcmp(r, "admin"));
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static bool jkey(const cJSON *o, const char *k, uint8_t out[PD_PUBKEY_BYTES])
{
    const char *s = jstr(o, k);
    return s && pd_sync_unhex(out, PD_PUBKEY_BYTES, s) == 0;
}

static bool text_ok(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max || !pd_sync_utf8_valid((const uint8_t *)s, n))
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

/* Copy UTF-8 text into cap bytes, cutting at a character boundary. */
static void copy_utf8(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)src[n] & 0xc0) == 0x80)
            n--;
    }
    memcpy(dst, src, n);
    dst[n] = '\0';
}

/* A comma-separated area list: each code real (pd_validate_area). */
static int areas_check(const char *list, pd_error *err)
{
    if (strlen(list) > AREA_LIST_MAX)
        return pd_error_set(err, PD_ERR_TOOBIG, "area list longer than %d bytes", AREA_LIST_MAX);
    char code[64];
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0 || n >= sizeof code)
            return pd_error_set(err, PD_ERR_INVALID, "area list: malformed entry");
        memcpy(code, p, n);
        code[n] = '\0';
        int rc = pd_validate_area("area", code, err);
        if (rc != PD_OK)
            return rc;
        p = e ? e + 1 : p + n;
    }
    return PD_OK;
}

int pd_client_keyring_json(pd_store *store, const cJSON *arr, size_t *count, pd_error *err)
{
    if (count)
        *count = 0;
    if (!arr || cJSON_IsNull(arr))
        return PD_OK;
    if (!cJSON_IsArray(arr))
        return pd_error_set(err, PD_ERR_PROTOCOL, "keyring: not an array");
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        pd_keyring_entry e;
        memset(&e, 0, sizeof e);
        const char *role = jstr(it, "role"), *pid = jstr(it, "person_id");
        const char *name = jstr(it, "name"), *area = jstr(it, "area");
        const cJSON *sup = cJSON_GetObjectItemCaseSensitive(it, "supervisor_pk");
        if (!cJSON_IsObject(it) || !jkey(it, "pk", e.pk) || !valid_role(role))
            return pd_error_set(err, PD_ERR_PROTOCOL,
                                "keyring: an entry lacks a 64-hex pk or a known role");
        if (pid && !valid_id(pid, sizeof e.person_id - 1))
            return pd_error_set(err, PD_ERR_PROTOCOL, "keyring: malformed person_id");
        if (name && strlen(name) > NAME_MAX_BYTES)
            return pd_error_set(err, PD_ERR_TOOBIG, "keyring %s: a name longer than %d bytes",
                                pid ? pid : "?", NAME_MAX_BYTES);
        if (name && !text_ok(name, NAME_MAX_BYTES))
            return pd_error_set(err, PD_ERR_PROTOCOL, "keyring %s: malformed name",
                                pid ? pid : "?");
        if (sup && !cJSON_IsNull(sup)) {
            if (!jkey(it, "supervisor_pk", e.supervisor_pk))
                return pd_error_set(err, PD_ERR_PROTOCOL, "keyring %s: malformed supervisor_pk",
                                    pid ? pid : "?");
            e.has_supervisor = true;
        }
        if (area && *area) {
            int rc = areas_check(area, err);
            if (rc != PD_OK) {
                char why[sizeof err->msg];
                memcpy(why, err->msg, sizeof why);
                return pd_error_set(err, rc, "keyring %s: %s", pid ? pid : "?", why);
            }
        }
        /* name and area were checked against the entry's sizes (the server's limits): whole */
        snprintf(e.role, sizeof e.role, "%s", role);
        snprintf(e.person_id, sizeof e.person_id, "%s", pid ? pid : "");
        snprintf(e.name, sizeof e.name, "%s", name ? name : "");
        snprintf(e.area, sizeof e.area, "%s", area ? area : "");
        int rc = pd_keyring_put(store, &e);
        if (rc != PD_OK)
            return pd_error_set(err, rc, "%s", pd_store_errmsg(store));
        if (count)
            (*count)++;
    }
    return PD_OK;
}

int pd_client_link_self(pd_store *store)
{
    char sup_id[64];
    pd_keyring_entry me;
    memset(&me, 0, sizeof me);
    if (pd_client_setting_text(store, "supervisor_id", sup_id, sizeof sup_id) != PD_OK ||
        pd_keys_identity(store, "enumerator", me.pk, NULL) != PD_OK)
        return PD_OK; /* not an enumerator, or nobody supervises it */
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "SELECT pk FROM keyring WHERE person_id = ?1 AND role = "
                                "'supervisor' ORDER BY added_at DESC, pk LIMIT 1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, sup_id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == PD_PUBKEY_BYTES) {
        memcpy(me.supervisor_pk, sqlite3_column_blob(st, 0), PD_PUBKEY_BYTES);
        me.has_supervisor = true;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return pd_store_fail_sqlite(store, rc, "keyring");
    if (!me.has_supervisor)
        return PD_OK; /* the supervisor has not enrolled yet: a later delta brings the key */
    pd_keyring_entry old;
    if (pd_keyring_get(store, me.pk, &old) == PD_OK && old.has_supervisor &&
        !memcmp(old.supervisor_pk, me.supervisor_pk, PD_PUBKEY_BYTES))
        return PD_OK;
    char person[64] = "", name[256] = "";
    pd_client_setting_text(store, "person_id", person, sizeof person);
    pd_client_setting_text(store, "person_name", name, sizeof name);
    snprintf(me.role, sizeof me.role, "enumerator");
    snprintf(me.person_id, sizeof me.person_id, "%s", person);
    copy_utf8(me.name, sizeof me.name, name);
    return pd_keyring_put(store, &me);
}

/* The store's failure from a pd_error / the http handle. */
static int store_fail_err(pd_store *store, const pd_error *e, int fallback)
{
    int code = e->code ? e->code : fallback;
    return pd_store_fail(store, code, "%s", e->msg[0] ? e->msg : pd_strerror(code));
}

/* ---- enrolment
 * ------------------------------------------------------------------------------------ */

static int find_person_identity(pd_store *store, const char *role, char found_role[16],
                                uint8_t pk[PD_PUBKEY_BYTES], uint8_t *sk, bool *found)
{
    *found = false;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "SELECT role FROM identity WHERE role <> 'device' AND "
                                "(?1 IS NULL OR role = ?1) ORDER BY role",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "identity");
    if (role)
        sqlite3_bind_text(st, 1, role, -1, SQLITE_STATIC);
    int n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n++ == 0)
            snprintf(found_role, 16, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return pd_store_fail_sqlite(store, rc, "identity");
    if (n > 1)
        return pd_store_fail(store, PD_ERR_INVALID,
                             "this device holds several person identities: say which role to "
                             "enrol (--role)");
    if (n == 0)
        return PD_OK;
    *found = true;
    return pd_keys_identity(store, found_role, pk, sk);
}

/* The person key of an enrolment not yet answered (sync_state enroll.user_sk, inside the
 * encrypted store): made and saved before the first request goes out, so that a retry after a
 * lost answer, in this run or a later one, sends the very same key and the server recognises its
 * own enrolment (PROTOCOL.md §3) instead of answering code_used. Deleted with the enrolment's
 * commit. */
static int pending_person_key(pd_store *store, uint8_t pk[PD_PUBKEY_BYTES], uint8_t *sk)
{
    uint8_t *saved = NULL;
    size_t n = 0;
    int rc = pd_sync_state_get_blob(store, "enroll.user_sk", &saved, &n);
    if (rc == PD_OK && n == PD_SECKEY_BYTES) {
        memcpy(sk, saved, PD_SECKEY_BYTES);
        crypto_sign_ed25519_sk_to_pk(pk, sk);
    } else if (rc == PD_OK || rc == PD_ERR_NOTFOUND) {
        crypto_sign_keypair(pk, sk);
        rc = pd_sync_state_set_blob(store, "enroll.user_sk", sk, PD_SECKEY_BYTES);
    }
    if (saved) {
        sodium_memzero(saved, n);
        free(saved);
    }
    return rc;
}

static int store_identity(pd_store *store, const char *role, const char *person_id,
                          const char *name, const uint8_t pk[PD_PUBKEY_BYTES], const uint8_t *sk)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "INSERT INTO identity (role, person_id, name, sign_pk, sign_sk, "
                                "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (role) "
                                "DO UPDATE SET person_id = excluded.person_id, name = "
                                "excluded.name WHERE sign_pk = excluded.sign_pk",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, role, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, person_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 4, pk, PD_PUBKEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_blob(st, 5, sk, PD_SECKEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(st, 6, pd_sync_now_ms());
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return pd_store_fail_sqlite(store, rc, "identity");
    if (sqlite3_changes(pd_store_sqlite(store)) != 1)
        return pd_store_fail(store, PD_ERR_STATE, "this device already has a different %s key",
                             role);
    return PD_OK;
}

static int store_assignment(pd_store *store, const cJSON *areas)
{
    sqlite3 *db = pd_store_sqlite(store);
    int rc = sqlite3_exec(db, "DELETE FROM assignment", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "assignment");
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO assignment (desa, sls) VALUES (?1, '')", -1,
                            &st, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "assignment");
    const cJSON *it;
    cJSON_ArrayForEach(it, areas)
    {
        sqlite3_reset(st);
        sqlite3_bind_text(st, 1, it->valuestring, -1, SQLITE_STATIC);
        if ((rc = sqlite3_step(st)) != SQLITE_DONE)
            break;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE && rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "assignment");
    return PD_OK;
}

/* Everything the enrolment answer must hold, checked before anything is stored. */
typedef struct enrol_answer {
    const char *person_id, *role, *name, *supervisor_id;
    const cJSON *areas, *keyring;
    uint8_t sign_pk[PD_PUBKEY_BYTES], recovery_pk[PD_PUBKEY_BYTES];
    char fingerprint[PD_SYNC_FINGERPRINT_LEN + 1];
    int64_t server_time;
} enrol_answer;

static int parse_enrol(pd_http *h, const cJSON *j, const char *device_id, enrol_answer *a)
{
    pd_error *err = &h->err;
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(j, "user");
    const cJSON *server = cJSON_GetObjectItemCaseSensitive(j, "server");
    const char *dev = jstr(j, "device_id");
    if (!cJSON_IsObject(user) || !cJSON_IsObject(server))
        return pd_error_set(err, PD_ERR_PROTOCOL, "enrolment answer: no user or server object");
    if (!jkey(server, "sign_pk", a->sign_pk) || !jkey(server, "recovery_pk", a->recovery_pk))
        return pd_error_set(err, PD_ERR_PROTOCOL, "enrolment answer: server keys malformed");
    pd_sync_fingerprint(a->sign_pk, a->fingerprint);
    const char *fp = jstr(server, "fingerprint");
    char n1[33], n2[33];
    if (fp && (fingerprint_norm(fp, n1) != 0 || fingerprint_norm(a->fingerprint, n2) != 0 ||
               strcmp(n1, n2) != 0))
        return pd_error_set(err, PD_ERR_SIGNATURE,
                            "enrolment answer: the fingerprint it states is not its key's");
    if (!dev || strcmp(dev, device_id) != 0)
        return pd_error_set(err, PD_ERR_PROTOCOL,
                            "enrolment answer names another device than this one (%s)", device_id);
    a->person_id = jstr(user, "id");
    a->role = jstr(user, "role");
    a->name = jstr(user, "name");
    a->areas = cJSON_GetObjectItemCaseSensitive(user, "area");
    a->keyring = cJSON_GetObjectItemCaseSensitive(j, "keyring");
    if (!a->person_id || !valid_id(a->person_id, 32))
        return pd_error_set(err, PD_ERR_PROTOCOL, "enrolment answer: malformed user id");
    if (!valid_role(a->role))
        return pd_error_set(err, PD_ERR_PROTOCOL, "enrolment answer: unknown role");
    a->supervisor_id = jstr(user, "supervisor");
    if (a->supervisor_id && !*a->supervisor_id)
        a->supervisor_id = NULL;
    if (a->supervisor_id && !valid_id(a->supervisor_id, 32))
        return pd_error_set(err, PD_ERR_PROTOCOL, "enrolment answer: malformed supervisor id");
    if (!a->name || !text_ok(a->name, NAME_MAX_BYTES))
        return pd_error_set(err, PD_ERR_PROTOCOL, "enrolment answer: malformed name");
    if (a->areas && !cJSON_IsArray(a->areas))
        return pd_error_set(err, PD_ERR_PROTOCOL, "enrolment answer: area is not an array");
    const cJSON *it;
    cJSON_ArrayForEach(it, a->areas)
    {
        if (!cJSON_IsString(it))
            return pd_error_set(err, PD_ERR_PROTOCOL, "enrolment answer: an area is not text");
        pd_error e = {0};
        if (pd_validate_area("area", it->valuestring, &e) != PD_OK)
            return pd_error_set(err, PD_ERR_PROTOCOL, "enrolment answer: %s", e.msg);
    }
    if (a->keyring && !cJSON_IsNull(a->keyring) && !cJSON_IsArray(a->keyring))
        return pd_error_set(err, PD_ERR_PROTOCOL, "enrolment answer: keyring is not an array");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "server_time");
    a->server_time = cJSON_IsNumber(t) && t->valuedouble > 0 ? (int64_t)t->valuedouble : 0;
    return PD_OK;
}

static int is_enrolled(pd_store *store, bool *yes)
{
    uint8_t pk[PD_PUBKEY_BYTES];
    int rc = pd_client_setting_blob(store, "server_sign_pk", pk, sizeof pk);
    *yes = rc == PD_OK;
    return rc == PD_ERR_NOTFOUND ? PD_OK : rc;
}

int pd_sync_enroll(pd_store *store, const char *server_url, const char *code,
                   const char *fingerprint, const char *role, const pd_sync_options *opt,
                   pd_enroll_result *out)
{
    if (!store)
        return PD_ERR_INVALID;
    char norm_code[CODE_LEN + 1], want_fp[33];
    if (!code || code_norm(code, norm_code) != 0)
        return pd_store_fail(store, PD_ERR_INVALID,
                             "enrolment code: 12 characters of %s expected (XXXX-XXXX-XXXX)",
                             CODE_ALPHABET);
    if (fingerprint && fingerprint_norm(fingerprint, want_fp) != 0)
        return pd_store_fail(store, PD_ERR_INVALID,
                             "fingerprint: 32 hex digits expected (xxxx-xxxx-...-xxxx)");
    if (role && !valid_role(role))
        return pd_store_fail(store, PD_ERR_INVALID,
                             "role '%s' is not enumerator, supervisor, korcam or admin", role);
    bool enrolled;
    int rc = is_enrolled(store, &enrolled);
    if (rc != PD_OK)
        return rc;
    if (enrolled) {
        char url[PD_HTTP_URL_MAX] = "";
        pd_client_setting_text(store, "server_url", url, sizeof url);
        return pd_store_fail(store, PD_ERR_EXISTS, "this device is already enrolled with %s",
                             url[0] ? url : "a server");
    }

    pd_http h;
    memset(&h, 0, sizeof h);
    uint8_t *user_sk = sodium_malloc(PD_SECKEY_BYTES);
    char *body = NULL;
    cJSON *req_json = NULL, *ans = NULL;
    pd_http_resp r;
    memset(&r, 0, sizeof r);
    bool in_tx = false;
    if (!user_sk) {
        rc = pd_store_fail(store, PD_ERR_NOMEM, "no secure memory for keys");
        goto out;
    }
    uint8_t user_pk[PD_PUBKEY_BYTES], device_pk[PD_PUBKEY_BYTES];
    char have_role[16] = "";
    bool reused = false;
    if ((rc = find_person_identity(store, role, have_role, user_pk, user_sk, &reused)) != PD_OK)
        goto out;
    if (!reused && (rc = pending_person_key(store, user_pk, user_sk)) != PD_OK)
        goto out;
    if ((rc = pd_keys_identity(store, "device", device_pk, NULL)) != PD_OK)
        goto out;
    const char *device_id = pd_store_device_id(store);

    char hex_dev[65], hex_user[65];
    pd_sync_hex(hex_dev, device_pk, sizeof device_pk);
    pd_sync_hex(hex_user, user_pk, sizeof user_pk);
    req_json = cJSON_CreateObject();
    if (!req_json || !cJSON_AddStringToObject(req_json, "code", norm_code) ||
        !cJSON_AddStringToObject(req_json, "device_id", device_id) ||
        !cJSON_AddStringToObject(req_json, "device_pk", hex_dev) ||
        !cJSON_AddStringToObject(req_json, "user_pk", hex_user) ||
        !(body = cJSON_PrintUnformatted(req_json))) {
        rc = pd_store_fail(store, PD_ERR_NOMEM, "out of memory");
        goto out;
    }
    pd_error e = {0};
    if ((rc = pd_http_init(&h, server_url, opt, &e)) != PD_OK) {
        rc = store_fail_err(store, &e, rc);
        goto out;
    }
    char url[PD_HTTP_URL_MAX];
    pd_http_url(&h, "/v1/enroll", url);
    pd_http_req req = {.method = "POST",
                       .url = url,
                       .body = (const uint8_t *)body,
                       .body_len = strlen(body),
                       .content_type = "application/json",
                       .gzip = true,
                       .phase = PD_SYNC_PHASE_ENROLL};
    if ((rc = pd_http_call(&h, &req, &r)) != PD_OK) {
        rc = store_fail_err(store, &h.err, rc);
        goto out;
    }
    if (r.status != 200) {
        rc = pd_http_fail_status(&h, "enrolment refused", &r);
        rc = store_fail_err(store, &h.err, rc);
        goto out;
    }
    enrol_answer a;
    memset(&a, 0, sizeof a);
    if (!(ans = pd_http_json(&h, "enrolment", &r)) ||
        (rc = parse_enrol(&h, ans, device_id, &a)) != PD_OK) {
        rc = store_fail_err(store, &h.err, PD_ERR_PROTOCOL);
        goto out;
    }
    char got_fp[33];
    fingerprint_norm(a.fingerprint, got_fp);
    if (fingerprint && strcmp(got_fp, want_fp) != 0) {
        rc = pd_store_fail(store, PD_ERR_SIGNATURE,
                           "the server's key has fingerprint %s, not the one given: refusing "
                           "it (nothing stored)",
                           a.fingerprint);
        goto out;
    }
    char req_hash[2 * PD_HASH_BYTES + 1];
    pd_http_hash_hex((const uint8_t *)body, strlen(body), req_hash);
    if ((rc = pd_http_check_sig(&h, &r, req_hash, a.sign_pk)) != PD_OK) {
        rc = store_fail_err(store, &h.err, rc);
        goto out;
    }
    if (reused && strcmp(have_role, a.role) != 0) {
        rc = pd_store_fail(store, PD_ERR_STATE,
                           "the server enrolled this device's %s key as %s; enrol with a code "
                           "for the %s role",
                           have_role, a.role, have_role);
        goto out;
    }

    /* The data key goes to the recovery key first: a store sealed to a server it is then not
     * enrolled with loses nothing, the other order could leave an enrolled device unrecoverable. */
    if ((rc = pd_store_set_recovery(store, a.recovery_pk)) != PD_OK)
        goto out;
    if ((rc = pd_store_begin(store)) != PD_OK)
        goto out;
    in_tx = true;
    pd_keyring_entry server_entry;
    memset(&server_entry, 0, sizeof server_entry);
    memcpy(server_entry.pk, a.sign_pk, PD_PUBKEY_BYTES);
    snprintf(server_entry.role, sizeof server_entry.role, "server");
    copy_utf8(server_entry.name, sizeof server_entry.name, h.base);
    size_t keys = 0;
    int64_t skew = a.server_time ? a.server_time - pd_sync_now_ms() : 0;
    if ((rc = store_identity(store, a.role, a.person_id, a.name, user_pk, user_sk)) != PD_OK ||
        (rc = setting_set_text(store, "server_url", h.base)) != PD_OK ||
        (rc = setting_set_blob(store, "server_sign_pk", a.sign_pk, PD_PUBKEY_BYTES)) != PD_OK ||
        (rc = setting_set_blob(store, "server_recovery_pk", a.recovery_pk, PD_PUBKEY_BYTES)) !=
            PD_OK ||
        (rc = setting_set_text(store, "server_fingerprint", a.fingerprint)) != PD_OK ||
        (rc = setting_set_text(store, "person_id", a.person_id)) != PD_OK ||
        (rc = setting_set_text(store, "role", a.role)) != PD_OK ||
        (rc = setting_set_text(store, "person_name", a.name)) != PD_OK ||
        (a.supervisor_id &&
         (rc = setting_set_text(store, "supervisor_id", a.supervisor_id)) != PD_OK) ||
        (rc = setting_set_int(store, "enrolled_at", pd_sync_now_ms())) != PD_OK ||
        (rc = pd_keyring_put(store, &server_entry)) != PD_OK ||
        (rc = store_assignment(store, a.areas)) != PD_OK ||
        (rc = pd_sync_state_set_int(store, "clock_skew_ms", skew)) != PD_OK ||
        (rc = pd_sync_state_del(store, "enroll.user_sk")) != PD_OK)
        goto out;
    e = (pd_error){0};
    if ((rc = pd_client_keyring_json(store, a.keyring, &keys, &e)) != PD_OK) {
        rc = store_fail_err(store, &e, rc);
        goto out;
    }
    if ((rc = pd_client_link_self(store)) != PD_OK)
        goto out;
    if ((rc = pd_store_commit(store)) != PD_OK) {
        in_tx = false;
        goto out;
    }
    in_tx = false;
    if (out) {
        memset(out, 0, sizeof *out);
        snprintf(out->person_id, sizeof out->person_id, "%s", a.person_id);
        snprintf(out->role, sizeof out->role, "%s", a.role);
        copy_utf8(out->name, sizeof out->name, a.name);
        memcpy(out->fingerprint, a.fingerprint, sizeof out->fingerprint);
        memcpy(out->user_pk, user_pk, PD_PUBKEY_BYTES);
        out->areas = (size_t)cJSON_GetArraySize(a.areas);
        out->keys = keys;
        out->key_reused = reused;
    }
out:
    if (in_tx)
        pd_store_rollback(store);
    pd_http_resp_free(&r);
    cJSON_Delete(ans);
    cJSON_Delete(req_json);
    cJSON_free(body);
    sodium_free(user_sk);
    pd_http_close(&h);
    return rc;
}

/* ---- receipts
 * ------------------------------------------------------------------------------------- */

int pd_receipt_parse(pd_receipt *out, const uint8_t *buf, size_t len,
                     const uint8_t server_pk[PD_PUBKEY_BYTES], pd_error *err)
{
    if (!out || !buf || !server_pk)
        return pd_error_set(err, PD_ERR_INVALID, "receipt: missing argument");
    if (len != PD_RECEIPT_BYTES_V1)
        return pd_error_set(err, PD_ERR_CORRUPT, "receipt: %zu bytes, not %d", len,
                            PD_RECEIPT_BYTES_V1);
    if (memcmp(buf, "PDRC", 4) != 0 || buf[4] != 1)
        return pd_error_set(err, PD_ERR_CORRUPT, "receipt: bad magic or version");
    if (crypto_sign_verify_detached(buf + PD_RECEIPT_SIGNED_V1, buf, PD_RECEIPT_SIGNED_V1,
                                    server_pk) != 0)
        return pd_error_set(err, PD_ERR_SIGNATURE, "receipt: not signed by the pinned server key");
    if (buf[5] < 1 || buf[5] > 4 || buf[6] || buf[7] || pd_sync_get_u32(buf + 92) != 0)
        return pd_error_set(err, PD_ERR_CORRUPT, "receipt: bad status or reserved bytes");
    memset(out, 0, sizeof *out);
    out->status = buf[5];
    memcpy(out->batch_hash, buf + 8, PD_HASH_BYTES);
    memcpy(out->author_pk, buf + 40, PD_PUBKEY_BYTES);
    out->seq = pd_sync_get_u64(buf + 72);
    out->applied = pd_sync_get_u32(buf + 80);
    out->merged = pd_sync_get_u32(buf + 84);
    out->conflicted = pd_sync_get_u32(buf + 88);
    out->server_time = (int64_t)pd_sync_get_u64(buf + 96);
    memcpy(out->device_id, buf + 104, 32);
    out->device_id[32] = '\0';
    return PD_OK;
}

/* A batch of this store, as the upload side needs it. */
typedef struct up_batch {
    uint8_t hash[PD_HASH_BYTES];
    uint8_t author_pk[PD_PUBKEY_BYTES];
    uint64_t seq;
    char device[PD_BATCH_DEVICE_ID_MAX + 1];
    bool voided;   /* its review record is a return */
    bool uploaded; /* state 'uploaded' (ask_receipts) */
} up_batch;

typedef struct up_list {
    up_batch *v;
    size_t n, cap;
} up_list;

static int up_push(up_list *l, const up_batch *b)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        up_batch *p = realloc(l->v, cap * sizeof *p);
        if (!p)
            return PD_ERR_NOMEM;
        l->v = p;
        l->cap = cap;
    }
    l->v[l->n++] = *b;
    return PD_OK;
}

static bool up_has(const up_list *l, const uint8_t hash[PD_HASH_BYTES])
{
    for (size_t i = 0; i < l->n; i++)
        if (!memcmp(l->v[i].hash, hash, PD_HASH_BYTES))
            return true;
    return false;
}

static int batch_set_state(pd_store *store, const uint8_t hash[PD_HASH_BYTES], const char *state,
                           const uint8_t *receipt)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "UPDATE batch SET state = ?2, receipt = coalesce(?3, receipt) "
                                "WHERE hash = ?1 AND state <> 'acknowledged'",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, hash, PD_HASH_BYTES, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, state, -1, SQLITE_STATIC);
        if (receipt)
            sqlite3_bind_blob(st, 3, receipt, PD_RECEIPT_BYTES_V1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return pd_store_fail_sqlite(store, rc, "batch state");
    return PD_OK;
}

/* server_diff rows whose record has no unacknowledged op left are settled: the server has (or
 * has decided about) the local change, and the next delta brings the record as it now is. */
static int settle_server_diff(pd_store *store)
{
    uint8_t self[PD_PUBKEY_BYTES];
    bool have_self = pd_keys_identity(store, "enumerator", self, NULL) == PD_OK;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        pd_store_sqlite(store),
        "DELETE FROM server_diff WHERE NOT EXISTS (SELECT 1 FROM op WHERE op.entity = "
        "server_diff.entity AND op.target = server_diff.target AND (op.batch_seq IS NULL OR "
        "op.batch_seq NOT IN (SELECT seq FROM batch WHERE author_pk = ?1 AND state = "
        "'acknowledged')))",
        -1, &st, NULL);
    if (rc == SQLITE_OK) {
        if (have_self)
            sqlite3_bind_blob(st, 1, self, PD_PUBKEY_BYTES, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return pd_store_fail_sqlite(store, rc, "server_diff");
    return PD_OK;
}

/* The stored row of a batch by hash: author key and seq. PD_ERR_NOTFOUND (quietly) if none. */
static int batch_by_hash(pd_store *store, const uint8_t hash[PD_HASH_BYTES],
                         uint8_t author[PD_PUBKEY_BYTES], uint64_t *seq, char state[16])
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "SELECT author_pk, seq, state FROM batch WHERE hash = ?1", -1, &st,
                                NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, hash, PD_HASH_BYTES, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    int code = PD_OK;
    if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == PD_PUBKEY_BYTES) {
        memcpy(author, sqlite3_column_blob(st, 0), PD_PUBKEY_BYTES);
        *seq = (uint64_t)sqlite3_column_int64(st, 1);
        snprintf(state, 16, "%s", (const char *)sqlite3_column_text(st, 2));
    } else if (rc == SQLITE_DONE || rc == SQLITE_ROW) {
        code = PD_ERR_NOTFOUND;
    } else {
        code = pd_store_fail_sqlite(store, rc, "batch");
    }
    sqlite3_finalize(st);
    return code;
}

/* One result object of a commit or a receipts answer. `mentioned` (may be NULL) collects the
 * hashes it names. Joins the caller's transaction. */
static int take_result(pd_store *store, pd_http *h, const cJSON *res, pd_sync_stats *stats,
                       up_list *mentioned)
{
    const char *status = jstr(res, "status"), *hash_hex = jstr(res, "hash");
    uint8_t hash[PD_HASH_BYTES];
    if (!cJSON_IsObject(res) || !status || !hash_hex ||
        pd_sync_unhex(hash, sizeof hash, hash_hex) != 0)
        return pd_error_set(&h->err, PD_ERR_PROTOCOL, "commit result without a status or hash");
    uint8_t author[PD_PUBKEY_BYTES];
    uint64_t seq = 0;
    char state[16];
    int rc = batch_by_hash(store, hash, author, &seq, state);
    if (rc == PD_ERR_NOTFOUND)
        return PD_OK; /* not a batch of ours (a receipts list covers more) */
    if (rc != PD_OK)
        return pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
    if (mentioned) {
        up_batch b = {.seq = seq};
        memcpy(b.hash, hash, PD_HASH_BYTES);
        if (up_push(mentioned, &b) != PD_OK)
            return pd_error_set(&h->err, PD_ERR_NOMEM, "out of memory");
    }
    if (!strcmp(state, "acknowledged"))
        return PD_OK;
    if (!strcmp(status, "rejected")) {
        const char *msg = jstr(res, "message"), *code = jstr(res, "error");
        char key[96], text[400];
        snprintf(key, sizeof key, "rejected.%s", hash_hex);
        snprintf(text, sizeof text, "%s: %s", code ? code : "rejected", msg ? msg : "");
        stats->batches_rejected++;
        if ((rc = pd_sync_state_set_text(store, key, text)) != PD_OK)
            return pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
        return PD_OK;
    }
    int want = !strcmp(status, "applied")  ? 1
               : !strcmp(status, "voided") ? 2
               : !strcmp(status, "held")   ? 3
               : !strcmp(status, "fork")   ? 4
                                           : 0;
    if (!want)
        return pd_error_set(&h->err, PD_ERR_PROTOCOL, "commit result: unknown status '%s'", status);
    const char *rhex = jstr(res, "receipt");
    uint8_t receipt[PD_RECEIPT_BYTES_V1];
    pd_receipt rec;
    pd_error e = {0};
    if (!rhex || pd_sync_unhex(receipt, sizeof receipt, rhex) != 0)
        return pd_error_set(&h->err, PD_ERR_PROTOCOL,
                            "batch %llu: result '%s' without a "
                            "receipt",
                            (unsigned long long)seq, status);
    if ((rc = pd_receipt_parse(&rec, receipt, sizeof receipt, h->sign_pk, &e)) != PD_OK)
        return pd_error_set(&h->err, rc, "batch %llu: %s", (unsigned long long)seq, e.msg);
    if (memcmp(rec.batch_hash, hash, PD_HASH_BYTES) ||
        memcmp(rec.author_pk, author, PD_PUBKEY_BYTES) || rec.seq != seq || rec.status != want)
        return pd_error_set(&h->err, PD_ERR_PROTOCOL,
                            "batch %llu: the receipt is for another batch or status",
                            (unsigned long long)seq);
    if (want == 1 || want == 2) {
        if ((rc = batch_set_state(store, hash, "acknowledged", receipt)) != PD_OK)
            return pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
        char key[96];
        snprintf(key, sizeof key, "rejected.%s", hash_hex);
        pd_sync_state_del(store, key);
        stats->batches_acknowledged++;
    } else {
        if (strcmp(state, "sealed") != 0 &&
            (rc = batch_set_state(store, hash, "uploaded", NULL)) != PD_OK)
            return pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
        if (want == 3)
            stats->batches_held++;
        else
            stats->batches_forked++;
    }
    return PD_OK;
}

static int take_results(pd_store *store, pd_http *h, const cJSON *arr, pd_sync_stats *stats,
                        up_list *mentioned)
{
    if (!cJSON_IsArray(arr))
        return pd_error_set(&h->err, PD_ERR_PROTOCOL, "answer without a results array");
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        int rc = take_result(store, h, it, stats, mentioned);
        if (rc != PD_OK)
            return rc;
    }
    return PD_OK;
}

/* ---- the upload queue
 * ------------------------------------------------------------------------------ */

/* Build an up_batch from stored bytes and review record (checks they agree with the row). */
static int describe(pd_store *store, const uint8_t *bytes, size_t len, const uint8_t *rec,
                    size_t rec_len, up_batch *b)
{
    pd_batch_header hdr;
    pd_error e = {0};
    memset(b, 0, sizeof *b);
    int rc = pd_batch_peek(&hdr, b->hash, bytes, len, &e);
    if (rc != PD_OK)
        return pd_store_fail(store, rc, "a stored batch does not parse: %s", e.msg);
    memcpy(b->author_pk, hdr.author_pk, PD_PUBKEY_BYTES);
    b->seq = hdr.seq;
    snprintf(b->device, sizeof b->device, "%s", hdr.device_id);
    if (rec) {
        pd_review r;
        if ((rc = pd_review_parse(&r, rec, rec_len, &e)) != PD_OK)
            return pd_store_fail(store, rc, "batch %llu: its review record: %s",
                                 (unsigned long long)hdr.seq, e.msg);
        if (memcmp(r.batch_hash, b->hash, PD_HASH_BYTES) != 0)
            return pd_store_fail(store, PD_ERR_CORRUPT,
                                 "batch %llu: its review record names another batch",
                                 (unsigned long long)hdr.seq);
        b->voided = r.kind == PD_REVIEW_RETURN;
    }
    return PD_OK;
}

/* The batches of a stored bundle (to know what a resumed upload carries). */
static int bundle_batches(pd_store *store, const uint8_t *p, size_t n, up_list *out)
{
    pd_bundle_item *items = NULL;
    size_t count = 0;
    pd_error e = {0};
    int rc = pd_bundle_parse(&items, &count, p, n, &e);
    if (rc != PD_OK)
        return pd_store_fail(store, rc, "the saved upload: %s", e.msg);
    for (size_t i = 0; i < count && rc == PD_OK; i++) {
        if (items[i].type != PD_BUNDLE_BATCH)
            continue;
        up_batch b;
        if ((rc = describe(store, items[i].bytes, items[i].len, NULL, 0, &b)) == PD_OK &&
            up_push(out, &b) != PD_OK)
            rc = pd_store_fail(store, PD_ERR_NOMEM, "out of memory");
    }
    free(items);
    return rc;
}

/* The next bundle (pd_bundle: the same container batch files use, which the server parses):
 * approved / returned / voided batches each followed by its review record, not acknowledged,
 * not in `skip`; *bundle NULL when there is nothing to send. */
static int build_bundle(pd_store *store, const up_list *skip, uint8_t **bundle, size_t *len,
                        up_list *in)
{
    *bundle = NULL;
    *len = 0;
    sqlite3_stmt *st = NULL;
    pd_bundle *b = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "SELECT bytes, approval FROM batch WHERE state IN ('approved', "
                                "'returned', 'voided') AND approval IS NOT NULL AND receipt IS "
                                "NULL ORDER BY author_pk, seq",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "batch");
    int code = pd_bundle_new(&b);
    if (code != PD_OK) {
        sqlite3_finalize(st);
        return pd_store_fail(store, code, "out of memory");
    }
    size_t blen_total = 0;
    while (code == PD_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const uint8_t *bytes = sqlite3_column_blob(st, 0);
        size_t blen = (size_t)sqlite3_column_bytes(st, 0);
        const uint8_t *rec = sqlite3_column_blob(st, 1);
        size_t rlen = (size_t)sqlite3_column_bytes(st, 1);
        up_batch ub;
        if ((code = describe(store, bytes, blen, rec, rlen, &ub)) != PD_OK)
            break;
        if (up_has(skip, ub.hash))
            continue;
        if (blen > BUNDLE_ENTRY_MAX) {
            code = pd_store_fail(store, PD_ERR_TOOBIG, "batch %llu is over 16 MiB",
                                 (unsigned long long)ub.seq);
            break;
        }
        pd_bundle_bytes(b, &blen_total);
        if (in->n >= BUNDLE_MAX_BATCHES ||
            (in->n && blen_total + blen + rlen + 10 > BUNDLE_MAX_BYTES))
            break; /* the rest go in the next bundle */
        if ((code = pd_bundle_add(b, PD_BUNDLE_BATCH, bytes, blen)) != PD_OK ||
            (code = pd_bundle_add(b, PD_BUNDLE_REVIEW, rec, rlen)) != PD_OK) {
            code = pd_store_fail(store, code, "cannot add batch %llu to the bundle",
                                 (unsigned long long)ub.seq);
            break;
        }
        if (up_push(in, &ub) != PD_OK)
            code = pd_store_fail(store, PD_ERR_NOMEM, "out of memory");
    }
    sqlite3_finalize(st);
    if (code == PD_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        code = pd_store_fail_sqlite(store, rc, "batch");
    if (code == PD_OK && in->n) {
        const uint8_t *p = pd_bundle_bytes(b, len);
        if (!(*bundle = malloc(*len)))
            code = pd_store_fail(store, PD_ERR_NOMEM, "out of memory");
        else
            memcpy(*bundle, p, *len);
    }
    pd_bundle_free(b);
    return code;
}

typedef struct state_ctx {
    pd_store *store;
    const char *url_key, *offset_key;
} state_ctx;

/* The resume point, saved before any byte past it is sent. */
static int save_resume_point(void *ctx, const char *url, uint64_t offset)
{
    state_ctx *s = ctx;
    int rc = pd_store_begin(s->store);
    if (rc != PD_OK)
        return rc;
    if ((rc = pd_sync_state_set_text(s->store, s->url_key, url)) != PD_OK ||
        (rc = pd_sync_state_set_int(s->store, s->offset_key, (int64_t)offset)) != PD_OK) {
        pd_store_rollback(s->store);
        return rc;
    }
    return pd_store_commit(s->store);
}

/* ---- uploads given up on: terminated, so that they never hold the device's cap -------------- */

#define ABANDONED_PREFIX "abandoned."
#define ABANDONED_SWEEP_MAX 64

/* Terminate an upload this device gives up on (a saved bundle it cannot resume, a photo it will
 * not finish, an upload that is not what it thought): the server keeps an unfinished upload for
 * 24 h and counts it against the device's 16 (PROTOCOL.md §5). It is recorded first (sync_state
 * abandoned.<upload id>), so that one the link does not let us DELETE now goes in a later run
 * (sweep_abandoned). A failure to terminate is not the caller's failure: h->err is kept. */
static int abandon_upload(pd_store *store, pd_http *h, const char *url)
{
    if (!url || !url[0])
        return PD_OK;
    const char *slash = strrchr(url, '/');
    char key[PD_HTTP_URL_MAX + sizeof ABANDONED_PREFIX];
    snprintf(key, sizeof key, ABANDONED_PREFIX "%s", slash ? slash + 1 : url);
    int rc = pd_sync_state_set_text(store, key, url);
    if (rc != PD_OK)
        return pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
    pd_error keep = h->err;
    rc = pd_tus_terminate(h, url, true);
    h->err = keep;
    /* gone, or refused for good (not ours to delete): nothing more to do; no answer: later */
    if (rc != PD_ERR_NETWORK && rc != PD_ERR_BUSY && (rc = pd_sync_state_del(store, key)) != PD_OK)
        return pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
    return PD_OK;
}

/* Terminate the uploads earlier runs gave up on but could not DELETE then (no answer). Stops at
 * the first that gets no answer (the link is down: the sync will say so). */
static void sweep_abandoned(pd_store *store, pd_http *h)
{
    char *urls[ABANDONED_SWEEP_MAX];
    size_t n = 0;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(pd_store_sqlite(store),
                           "SELECT value FROM sync_state WHERE key > ?1 AND key < ?2 ORDER BY key",
                           -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return;
    }
    sqlite3_bind_text(st, 1, ABANDONED_PREFIX, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, "abandoned/", -1, SQLITE_STATIC); /* '/' follows '.' */
    while (n < ABANDONED_SWEEP_MAX && sqlite3_step(st) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        if (v && (urls[n] = strdup(v)) != NULL)
            n++;
    }
    sqlite3_finalize(st);
    pd_error keep = h->err;
    bool down = false;
    for (size_t i = 0; i < n; i++) {
        if (!down) {
            int rc = pd_tus_terminate(h, urls[i], true);
            down = rc == PD_ERR_NETWORK || rc == PD_ERR_BUSY;
            if (!down) {
                const char *slash = strrchr(urls[i], '/');
                char key[PD_HTTP_URL_MAX + sizeof ABANDONED_PREFIX];
                snprintf(key, sizeof key, ABANDONED_PREFIX "%s", slash ? slash + 1 : urls[i]);
                pd_sync_state_del(store, key);
            }
        }
        free(urls[i]);
    }
    h->err = keep;
}

/* Photos named by the batches of `in` that this store holds and has not sent. */
static int upload_photos(pd_store *store, pd_http *h, const up_list *in, pd_sync_stats *stats)
{
    sqlite3 *db = pd_store_sqlite(store);
    int rc = PD_OK;
    for (size_t i = 0; i < in->n && rc == PD_OK; i++) {
        /* The batch's photo list (verified with its own author key: we only need the list). */
        sqlite3_stmt *st = NULL;
        uint8_t *bytes = NULL;
        size_t blen = 0;
        if (sqlite3_prepare_v2(db, "SELECT bytes FROM batch WHERE hash = ?1", -1, &st, NULL) ==
            SQLITE_OK) {
            sqlite3_bind_blob(st, 1, in->v[i].hash, PD_HASH_BYTES, SQLITE_STATIC);
            if (sqlite3_step(st) == SQLITE_ROW) {
                blen = (size_t)sqlite3_column_bytes(st, 0);
                bytes = malloc(blen ? blen : 1);
                if (bytes && blen)
                    memcpy(bytes, sqlite3_column_blob(st, 0), blen);
            }
        }
        sqlite3_finalize(st);
        if (!bytes)
            continue;
        pd_batch *b = NULL;
        pd_error e = {0};
        rc = pd_batch_verify(&b, bytes, blen, in->v[i].author_pk, &e);
        free(bytes);
        if (rc != PD_OK) {
            rc = pd_error_set(&h->err, rc, "batch %llu does not verify: %s",
                              (unsigned long long)in->v[i].seq, e.msg);
            break;
        }
        size_t np = 0;
        const pd_batch_photo *ph = pd_batch_photos(b, &np);
        for (size_t k = 0; k < np && rc == PD_OK; k++) {
            uint8_t *jpeg = NULL;
            size_t jlen = 0;
            st = NULL;
            if (sqlite3_prepare_v2(db, "SELECT bytes FROM photo WHERE hash = ?1 AND uploaded = 0",
                                   -1, &st, NULL) == SQLITE_OK) {
                sqlite3_bind_blob(st, 1, ph[k].hash, PD_HASH_BYTES, SQLITE_STATIC);
                if (sqlite3_step(st) == SQLITE_ROW) {
                    jlen = (size_t)sqlite3_column_bytes(st, 0);
                    jpeg = malloc(jlen ? jlen : 1);
                    if (jpeg && jlen)
                        memcpy(jpeg, sqlite3_column_blob(st, 0), jlen);
                }
            }
            sqlite3_finalize(st);
            if (!jpeg)
                continue; /* not here (a supervisor's device), or sent already */
            char hex[2 * PD_HASH_BYTES + 1], saved_hash[2 * PD_HASH_BYTES + 1] = "";
            pd_sync_hex(hex, ph[k].hash, PD_HASH_BYTES);
            const char *keys[] = {"kind", "hash"};
            const char *vals[] = {"photo", hex};
            char *meta = NULL;
            if (pd_tus_metadata(&meta, keys, vals, 2) != PD_OK) {
                free(jpeg);
                rc = pd_error_set(&h->err, PD_ERR_NOMEM, "out of memory");
                break;
            }
            pd_tus_upload u;
            memset(&u, 0, sizeof u);
            u.data = jpeg;
            u.length = jlen;
            u.metadata = meta;
            u.sign = true;
            u.checksum = true;
            u.phase = PD_SYNC_PHASE_PHOTOS;
            /* The photo rides in its creation POST (up to a chunk): one round trip a photo
             * instead of two, which on a 2G link is most of a small photo's time. The price: a
             * POST cut on the way keeps nothing (the client never learnt its Location), so its
             * bytes go again; and a photo the server holds already (the same bytes from another
             * device, a device set up again) is sent and dropped instead of skipped. Once a
             * transfer of this sync has failed on the network, the link is taken as one that
             * cuts, and photos go by POST then PATCH: each byte once, resumed where it stopped. */
            u.create_with_body = !h->link_failed;
            if (pd_sync_state_get_text(store, "photo.url", u.url, sizeof u.url) != PD_OK)
                u.url[0] = '\0';
            if (u.url[0] && (pd_sync_state_get_text(store, "photo.hash", saved_hash,
                                                    sizeof saved_hash) != PD_OK ||
                             strcmp(saved_hash, hex) != 0)) {
                /* an earlier run's upload of another photo: not resumed now, so given up */
                if ((rc = abandon_upload(store, h, u.url)) == PD_OK &&
                    ((rc = pd_sync_state_del(store, "photo.url")) != PD_OK ||
                     (rc = pd_sync_state_del(store, "photo.offset")) != PD_OK))
                    rc = pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
                u.url[0] = '\0';
            }
            state_ctx sc = {store, "photo.url", "photo.offset"};
            pd_tus_store ts = {save_resume_point, &sc};
            char create[PD_HTTP_URL_MAX];
            pd_http_url(h, "/v1/uploads", create);
            if (rc == PD_OK && (rc = pd_sync_state_set_text(store, "photo.hash", hex)) != PD_OK)
                rc = pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
            if (rc == PD_OK) {
                rc = pd_tus_send(h, create, &u, &ts);
                if (rc == PD_ERR_NOTFOUND && u.url[0]) {
                    /* gone, or not this photo's: terminate it (404/410 if gone), start over */
                    rc = abandon_upload(store, h, u.url);
                    u.url[0] = '\0';
                    if (rc == PD_OK)
                        rc = pd_tus_send(h, create, &u, &ts);
                }
            }
            free(meta);
            free(jpeg);
            if (rc != PD_OK)
                break;
            if (u.complete_at_create)
                stats->photos_skipped++;
            else
                stats->photos_uploaded++;
            st = NULL;
            int src = sqlite3_prepare_v2(db, "UPDATE photo SET uploaded = 1 WHERE hash = ?1", -1,
                                         &st, NULL);
            if (src == SQLITE_OK) {
                sqlite3_bind_blob(st, 1, ph[k].hash, PD_HASH_BYTES, SQLITE_STATIC);
                src = sqlite3_step(st);
            }
            sqlite3_finalize(st);
            if (src != SQLITE_DONE) {
                pd_store_fail_sqlite(store, src, "photo");
                rc = pd_error_set(&h->err, PD_ERR_IO, "%s", pd_store_errmsg(store));
                break;
            }
            pd_sync_state_del(store, "photo.url");
            pd_sync_state_del(store, "photo.offset");
            pd_sync_state_del(store, "photo.hash");
        }
        pd_batch_free(b);
    }
    return rc;
}

static int clear_upload_state(pd_store *store)
{
    int rc;
    if ((rc = pd_sync_state_del(store, "upload.url")) != PD_OK ||
        (rc = pd_sync_state_del(store, "upload.offset")) != PD_OK ||
        (rc = pd_sync_state_del(store, "upload.bundle")) != PD_OK)
        return rc;
    return PD_OK;
}

/* Give up the saved bundle upload: terminate it (abandon_upload) and forget it. */
static int drop_upload(pd_store *store, pd_http *h)
{
    char url[PD_HTTP_URL_MAX];
    int rc = PD_OK;
    if (pd_sync_state_get_text(store, "upload.url", url, sizeof url) == PD_OK)
        rc = abandon_upload(store, h, url);
    if (rc == PD_OK && (rc = clear_upload_state(store)) != PD_OK)
        rc = pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
    return rc;
}

/* POST /v1/batches/commit for a complete upload: the results of every batch of its bundle,
 * with their receipts. PD_OK with the answer in r (any status). */
static int commit_upload(pd_http *h, const pd_tus_upload *u, pd_http_resp *r)
{
    const char *slash = strrchr(u->url, '/');
    const char *id = slash ? slash + 1 : u->url;
    char body[128], url[PD_HTTP_URL_MAX];
    int bn = snprintf(body, sizeof body, "{\"upload\":\"%s\"}", id);
    if (bn < 0 || (size_t)bn >= sizeof body || !valid_id(id, 64))
        return pd_error_set(&h->err, PD_ERR_PROTOCOL, "upload URL %s has no usable id", u->url);
    pd_http_url(h, "/v1/batches/commit", url);
    pd_http_req req = {.method = "POST",
                       .url = url,
                       .body = (const uint8_t *)body,
                       .body_len = (size_t)bn,
                       .content_type = "application/json",
                       .sign = true,
                       .gzip = true,
                       .phase = PD_SYNC_PHASE_RECEIPTS};
    return pd_http_call(h, &req, r);
}

/* Send (or resume) the saved bundle and commit it. PD_ERR_NOTFOUND: the upload is gone, start
 * over. On success the upload state is cleared in the transaction that stores the receipts. */
static int send_bundle(pd_store *store, pd_http *h, const uint8_t *bundle, size_t len,
                       const up_list *in, const char *resume_url, pd_sync_stats *stats)
{
    char create[PD_HTTP_URL_MAX];
    pd_http_url(h, "/v1/uploads", create);
    char *meta = NULL;
    const char *keys[] = {"kind"};
    const char *vals[] = {"bundle"};
    if (pd_tus_metadata(&meta, keys, vals, 1) != PD_OK)
        return pd_error_set(&h->err, PD_ERR_NOMEM, "out of memory");
    int rc = upload_photos(store, h, in, stats);
    if (rc != PD_OK) {
        free(meta);
        return rc;
    }
    pd_tus_upload u;
    memset(&u, 0, sizeof u);
    u.data = bundle;
    u.length = len;
    u.metadata = meta;
    u.sign = true;
    u.checksum = true;
    u.phase = PD_SYNC_PHASE_UPLOAD;
    if (resume_url)
        snprintf(u.url, sizeof u.url, "%s", resume_url);
    state_ctx sc = {store, "upload.url", "upload.offset"};
    pd_tus_store ts = {save_resume_point, &sc};
    pd_http_resp r;
    memset(&r, 0, sizeof r);
    cJSON *j = NULL;
    /* A new bundle goes in the creation POST, whose answer, when the server took it whole,
     * carries the commit's answer: create, send, apply and receipts in one request
     * (PROTOCOL.md §5). */
    u.create_with_body = true;
    u.create_answer = &r;
    /* A commit answered 409 incomplete (the server lost bytes it had not made durable, say)
     * sends the rest again (HEAD, PATCH) and commits once more. */
    for (int tries = 0;; tries++) {
        rc = pd_tus_send(h, create, &u, &ts);
        if (rc != PD_OK) {
            free(meta);
            pd_http_resp_free(&r);
            return rc;
        }
        if (r.status == 201 && r.body_len && strstr(r.content_type, "json")) {
            r.status = 200; /* the commit's answer, as a commit request would have had it */
            break;
        }
        pd_http_resp_free(&r);
        rc = commit_upload(h, &u, &r);
        if (rc != PD_OK || r.status != 409 || tries == 1)
            break;
        pd_http_resp_free(&r);
    }
    free(meta);
    if (rc != PD_OK)
        goto out;
    stats->batches_uploaded += in->n;

    if (r.status == 404) {
        rc = pd_error_set(&h->err, PD_ERR_NOTFOUND, "commit: the server no longer knows %s", u.url);
        goto out;
    }
    if (r.status != 200) {
        rc = pd_http_fail_status(h, "commit", &r);
        goto out;
    }
    if (!(j = pd_http_json(h, "commit", &r))) {
        rc = h->err.code;
        goto out;
    }
    if ((rc = pd_store_begin(store)) != PD_OK) {
        rc = pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
        goto out;
    }
    up_list mentioned = {0};
    rc = take_results(store, h, cJSON_GetObjectItemCaseSensitive(j, "results"), stats, &mentioned);
    /* A batch the answer does not mention waits for GET /v1/receipts. */
    for (size_t i = 0; rc == PD_OK && i < in->n; i++)
        if (!up_has(&mentioned, in->v[i].hash) &&
            (rc = batch_set_state(store, in->v[i].hash, "uploaded", NULL)) != PD_OK)
            pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
    free(mentioned.v);
    if (rc == PD_OK &&
        ((rc = clear_upload_state(store)) != PD_OK || (rc = settle_server_diff(store)) != PD_OK))
        pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
    if (rc != PD_OK) {
        pd_store_rollback(store);
        goto out;
    }
    if ((rc = pd_store_commit(store)) != PD_OK)
        pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
out:
    cJSON_Delete(j);
    pd_http_resp_free(&r);
    return rc;
}

/* Step 1: an upload an earlier run left. `done` collects its batches. */
static int resume_pending(pd_store *store, pd_http *h, up_list *done, pd_sync_stats *stats)
{
    uint8_t *bundle = NULL;
    size_t len = 0;
    char url[PD_HTTP_URL_MAX] = "";
    int rc = pd_sync_state_get_blob(store, "upload.bundle", &bundle, &len);
    if (rc == PD_ERR_NOTFOUND)
        return PD_OK;
    if (rc != PD_OK)
        return pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
    up_list in = {0};
    if (pd_sync_state_get_text(store, "upload.url", url, sizeof url) != PD_OK)
        url[0] = '\0';
    rc = bundle_batches(store, bundle, len, &in);
    if (rc != PD_OK) {
        /* a damaged saved bundle: give its upload up, build a new one */
        memset(&h->err, 0, sizeof h->err);
        rc = drop_upload(store, h);
        goto out;
    }
    rc = send_bundle(store, h, bundle, len, &in, url[0] ? url : NULL, stats);
    if (rc == PD_ERR_INVALID) {
        /* the server refused the bundle (422), or a request of its upload, for good: never
         * resume it; the batches stay queued and the error is reported */
        pd_error keep = h->err;
        drop_upload(store, h);
        h->err = keep;
        goto out;
    }
    if (rc == PD_ERR_NOTFOUND) {
        /* Gone (expired, or lost by the server), or not this bundle's: the batches are still
         * queued; a new bundle carries them. */
        memset(&h->err, 0, sizeof h->err);
        rc = drop_upload(store, h);
        goto out;
    }
    for (size_t i = 0; rc == PD_OK && i < in.n; i++)
        if (up_push(done, &in.v[i]) != PD_OK)
            rc = pd_error_set(&h->err, PD_ERR_NOMEM, "out of memory");
out:
    free(in.v);
    free(bundle);
    return rc;
}

/* Step 2: ask about batches without a final receipt. */
static int ask_receipts(pd_store *store, pd_http *h, pd_sync_stats *stats)
{
    uint8_t self[PD_PUBKEY_BYTES];
    bool have_self = pd_keys_identity(store, "enumerator", self, NULL) == PD_OK;
    sqlite3_stmt *st = NULL;
    up_list ask = {0}, mentioned = {0};
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "SELECT bytes, approval, state FROM batch WHERE state = "
                                "'uploaded' OR (state = 'sealed' AND author_pk = ?1) ORDER BY "
                                "author_pk, seq",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return pd_error_set(&h->err, pd_store_fail_sqlite(store, rc, "batch"), "%s",
                            pd_store_errmsg(store));
    if (have_self)
        sqlite3_bind_blob(st, 1, self, PD_PUBKEY_BYTES, SQLITE_STATIC);
    int code = PD_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        up_batch b;
        const uint8_t *rec = sqlite3_column_blob(st, 1);
        if ((code = describe(store, sqlite3_column_blob(st, 0), (size_t)sqlite3_column_bytes(st, 0),
                             rec, rec ? (size_t)sqlite3_column_bytes(st, 1) : 0, &b)) != PD_OK)
            break;
        b.uploaded = !strcmp((const char *)sqlite3_column_text(st, 2), "uploaded");
        if (up_push(&ask, &b) != PD_OK) {
            code = pd_store_fail(store, PD_ERR_NOMEM, "out of memory");
            break;
        }
    }
    sqlite3_finalize(st);
    if (code == PD_OK && rc != SQLITE_DONE && rc != SQLITE_ROW)
        code = pd_store_fail_sqlite(store, rc, "batch");
    if (code != PD_OK) {
        free(ask.v);
        return pd_error_set(&h->err, code, "%s", pd_store_errmsg(store));
    }
    /* One request per device, from just before its lowest seq in question. */
    for (size_t i = 0; i < ask.n && code == PD_OK; i++) {
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = !strcmp(ask.v[k].device, ask.v[i].device);
        if (seen)
            continue;
        if (!valid_id(ask.v[i].device, 32))
            continue;
        uint64_t min = ask.v[i].seq;
        for (size_t k = i; k < ask.n; k++)
            if (!strcmp(ask.v[k].device, ask.v[i].device) && ask.v[k].seq < min)
                min = ask.v[k].seq;
        char path[160], url[PD_HTTP_URL_MAX];
        snprintf(path, sizeof path, "/v1/receipts?device=%s&since=%llu", ask.v[i].device,
                 (unsigned long long)(min - 1));
        pd_http_url(h, path, url);
        pd_http_req req = {.method = "GET",
                           .url = url,
                           .sign = true,
                           .gzip = true,
                           .phase = PD_SYNC_PHASE_RECEIPTS};
        pd_http_resp r;
        cJSON *j = NULL;
        code = pd_http_call(h, &req, &r);
        if (code == PD_OK && r.status == 403) {
            /* Not ours to ask (another supervisor's enumerator): their receipts come later. */
            pd_http_resp_free(&r);
            continue;
        }
        if (code == PD_OK && r.status != 200)
            code = pd_http_fail_status(h, "receipts", &r);
        if (code == PD_OK && !(j = pd_http_json(h, "receipts", &r)))
            code = h->err.code;
        if (code == PD_OK) {
            if ((code = pd_store_begin(store)) != PD_OK) {
                pd_error_set(&h->err, code, "%s", pd_store_errmsg(store));
            } else {
                code = take_results(store, h, cJSON_GetObjectItemCaseSensitive(j, "receipts"),
                                    stats, &mentioned);
                /* An uploaded batch of this device the server does not know goes back to
                 * the queue (approved or voided, as its record says). */
                for (size_t k = i; code == PD_OK && k < ask.n; k++) {
                    if (strcmp(ask.v[k].device, ask.v[i].device) || !ask.v[k].uploaded ||
                        up_has(&mentioned, ask.v[k].hash))
                        continue;
                    if ((code = batch_set_state(store, ask.v[k].hash,
                                                ask.v[k].voided ? "voided" : "approved", NULL)) !=
                        PD_OK)
                        pd_error_set(&h->err, code, "%s", pd_store_errmsg(store));
                }
                if (code == PD_OK && (code = settle_server_diff(store)) != PD_OK)
                    pd_error_set(&h->err, code, "%s", pd_store_errmsg(store));
                if (code == PD_OK) {
                    if ((code = pd_store_commit(store)) != PD_OK)
                        pd_error_set(&h->err, code, "%s", pd_store_errmsg(store));
                } else {
                    pd_store_rollback(store);
                }
            }
        }
        cJSON_Delete(j);
        pd_http_resp_free(&r);
    }
    free(ask.v);
    free(mentioned.v);
    return code;
}

/* Step 3: new bundles until the queue is empty (each batch tried once per run). */
static int upload_queue(pd_store *store, pd_http *h, up_list *done, pd_sync_stats *stats)
{
    for (;;) {
        up_list in = {0};
        uint8_t *bundle = NULL;
        size_t len = 0;
        int rc = build_bundle(store, done, &bundle, &len, &in);
        if (rc != PD_OK) {
            free(in.v);
            return pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
        }
        if (!bundle) {
            free(in.v);
            return PD_OK;
        }
        /* Saved before the upload is created: a resumed run must send the very same bytes. */
        rc = pd_store_begin(store);
        if (rc == PD_OK) {
            if ((rc = clear_upload_state(store)) != PD_OK ||
                (rc = pd_sync_state_set_blob(store, "upload.bundle", bundle, len)) != PD_OK)
                pd_store_rollback(store);
            else
                rc = pd_store_commit(store);
        }
        if (rc != PD_OK) {
            free(bundle);
            free(in.v);
            return pd_error_set(&h->err, rc, "%s", pd_store_errmsg(store));
        }
        rc = send_bundle(store, h, bundle, len, &in, NULL, stats);
        free(bundle);
        if (rc == PD_ERR_INVALID) {
            pd_error keep = h->err;
            drop_upload(store, h); /* refused for good (422): never resume it */
            h->err = keep;
        }
        for (size_t i = 0; rc == PD_OK && i < in.n; i++)
            if (up_push(done, &in.v[i]) != PD_OK)
                rc = pd_error_set(&h->err, PD_ERR_NOMEM, "out of memory");
        free(in.v);
        if (rc != PD_OK)
            return rc;
    }
}

/* ---- the sync run
 * ---------------------------------------------------------------------------------- */

static void progress_none(void *ctx, pd_sync_phase phase, uint64_t done, uint64_t total)
{
    (void)ctx;
    (void)phase;
    (void)done;
    (void)total;
}

int pd_sync_run(pd_store *store, const pd_sync_options *opt, pd_sync_stats *stats)
{
    if (!store)
        return PD_ERR_INVALID;
    pd_sync_stats local;
    if (!stats)
        stats = &local;
    memset(stats, 0, sizeof *stats);
    uint8_t sign_pk[PD_PUBKEY_BYTES], device_pk[PD_PUBKEY_BYTES];
    char url[PD_HTTP_URL_MAX];
    int rc = pd_client_setting_blob(store, "server_sign_pk", sign_pk, sizeof sign_pk);
    if (rc == PD_ERR_NOTFOUND)
        return pd_store_fail(store, PD_ERR_STATE,
                             "this device is not enrolled: run 'pendata enroll' first");
    if (rc != PD_OK)
        return rc;
    if ((rc = pd_client_forget_plain_part(store)) != PD_OK)
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
    up_list done = {0};
    if ((rc = pd_keys_identity(store, "device", device_pk, sk)) != PD_OK)
        goto out;
    if ((rc = pd_http_init(&h, url, opt, &e)) != PD_OK) {
        rc = store_fail_err(store, &e, rc);
        goto out;
    }
    if (!h.cfg.progress)
        h.cfg.progress = progress_none;
    h.stats = stats;
    pd_http_pin(&h, sign_pk);
    if ((rc = pd_http_set_device(&h, pd_store_device_id(store), sk)) != PD_OK) {
        rc = store_fail_err(store, &h.err, rc);
        goto out;
    }
    int64_t skew = 0;
    if (pd_sync_state_get_int(store, "clock_skew_ms", &skew) == PD_OK)
        h.skew_ms = skew;

    sweep_abandoned(store, &h);
    if ((rc = resume_pending(store, &h, &done, stats)) != PD_OK ||
        (rc = ask_receipts(store, &h, stats)) != PD_OK ||
        (rc = upload_queue(store, &h, &done, stats)) != PD_OK) {
        if (h.err.msg[0] && h.err.code == rc)
            store_fail_err(store, &h.err, rc);
        stats->upload_error = rc;
        /* Refused for good (a bundle refused, a photo that does not match its hash, ...): the
         * batches stay queued, and the pull still brings what the device needs (resolutions,
         * reassignments, keys); local unacknowledged changes keep their values over it. With
         * the link down (or no memory) there is no point trying; a server that only refuses
         * new uploads for the device's cap (429 upload_quota) still serves the pull. */
        if (rc == PD_ERR_NETWORK || (rc == PD_ERR_BUSY && !h.over_quota) || rc == PD_ERR_NOMEM)
            goto out;
        char up[PD_ERRMSG_MAX];
        snprintf(up, sizeof up, "%s", pd_store_errmsg(store));
        memset(&h.err, 0, sizeof h.err);
        int prc = pd_client_pull(store, &h, stats);
        if (prc == PD_OK) {
            stats->pulled = true;
            pd_store_fail(store, rc, "upload: %s (the pull went on: cursor %lld)", up,
                          (long long)stats->cursor);
        } else {
            pd_store_fail(store, rc, "upload: %s; the pull failed too: %s", up,
                          h.err.msg[0] ? h.err.msg : pd_strerror(prc));
        }
        goto out;
    }
    if ((rc = pd_client_pull(store, &h, stats)) != PD_OK) {
        if (h.err.msg[0] && h.err.code == rc)
            store_fail_err(store, &h.err, rc);
        goto out;
    }
    stats->pulled = true;
out:
    if (h.skew_changed)
        pd_sync_state_set_int(store, "clock_skew_ms", h.skew_ms);
    free(done.v);
    sodium_free(sk);
    pd_http_close(&h);
    return rc;
}

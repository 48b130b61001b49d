/*
 * keys.c — the keys the sync layer signs and verifies with, as the device store holds them:
 * this device's own identities (table identity: one Ed25519 key pair per role; the secret key
 * never leaves the encrypted database except into locked memory for one signature) and the
 * keyring (table keyring: other people's public keys, with who supervises whom).
 *
 * Who may approve whom is decided here: an enumerator's keyring row carries the public key of its
 * supervisor; nothing else gives a key that authority.
 */
#include "keys.h"

#include <sodium.h>
#include <stdio.h>
#include <string.h>

static void copy_text(char *dst, size_t cap, const unsigned char *src)
{
    snprintf(dst, cap, "%s", src ? (const char *)src : "");
}

int pd_keyring_put(pd_store *store, const pd_keyring_entry *e)
{
    if (!e || !e->role[0])
        return pd_store_fail(store, PD_ERR_INVALID, "keyring: an entry needs a key and a role");
    if (strlen(e->role) >= sizeof e->role || strlen(e->name) >= sizeof e->name ||
        strlen(e->area) >= sizeof e->area || strlen(e->person_id) >= sizeof e->person_id)
        return pd_store_fail(store, PD_ERR_INVALID, "keyring: a field is not terminated");
    if (!pd_sync_utf8_valid((const uint8_t *)e->name, strlen(e->name)))
        return pd_store_fail(store, PD_ERR_INVALID, "keyring: name is not valid UTF-8");
    sqlite3 *db = pd_store_sqlite(store);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "INSERT INTO keyring (pk, role, person_id, name, supervisor_pk, "
                                "area, added_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                                "ON CONFLICT (pk) DO UPDATE SET role = excluded.role, "
                                "person_id = excluded.person_id, name = excluded.name, "
                                "supervisor_pk = excluded.supervisor_pk, area = excluded.area",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, e->pk, PD_PUBKEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, e->role, -1, SQLITE_STATIC);
        if (e->person_id[0])
            sqlite3_bind_text(st, 3, e->person_id, -1, SQLITE_STATIC);
        if (e->name[0])
            sqlite3_bind_text(st, 4, e->name, -1, SQLITE_STATIC);
        if (e->has_supervisor)
            sqlite3_bind_blob(st, 5, e->supervisor_pk, PD_PUBKEY_BYTES, SQLITE_STATIC);
        if (e->area[0])
            sqlite3_bind_text(st, 6, e->area, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, pd_sync_now_ms());
        rc = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return pd_store_fail_sqlite(store, rc, "keyring: storing a key");
    return PD_OK;
}

int pd_keyring_get(pd_store *store, const uint8_t pk[PD_PUBKEY_BYTES], pd_keyring_entry *e)
{
    sqlite3 *db = pd_store_sqlite(store);
    sqlite3_stmt *st = NULL;
    memset(e, 0, sizeof *e);
    int rc = sqlite3_prepare_v2(db,
                                "SELECT role, person_id, name, supervisor_pk, area FROM keyring "
                                "WHERE pk = ?1",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_blob(st, 1, pk, PD_PUBKEY_BYTES, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    int code = PD_OK;
    if (rc == SQLITE_ROW) {
        memcpy(e->pk, pk, PD_PUBKEY_BYTES);
        copy_text(e->role, sizeof e->role, sqlite3_column_text(st, 0));
        copy_text(e->person_id, sizeof e->person_id, sqlite3_column_text(st, 1));
        copy_text(e->name, sizeof e->name, sqlite3_column_text(st, 2));
        if (sqlite3_column_bytes(st, 3) == PD_PUBKEY_BYTES) {
            e->has_supervisor = true;
            memcpy(e->supervisor_pk, sqlite3_column_blob(st, 3), PD_PUBKEY_BYTES);
        }
        copy_text(e->area, sizeof e->area, sqlite3_column_text(st, 4));
    } else if (rc == SQLITE_DONE) {
        char hex[17];
        pd_sync_hex(hex, pk, 8);
        code = pd_store_fail(store, PD_ERR_NOTFOUND, "key %s... is not in the keyring", hex);
    } else {
        code = pd_store_fail_sqlite(store, rc, "keyring");
    }
    sqlite3_finalize(st);
    return code;
}

int pd_keys_identity(pd_store *store, const char *role, uint8_t pk[PD_PUBKEY_BYTES], uint8_t *sk)
{
    sqlite3 *db = pd_store_sqlite(store);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT sign_pk, sign_sk FROM identity WHERE role = ?1", -1,
                                &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, role, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    int code = PD_OK;
    if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == PD_PUBKEY_BYTES &&
        sqlite3_column_bytes(st, 1) == PD_SECKEY_BYTES) {
        if (pk)
            memcpy(pk, sqlite3_column_blob(st, 0), PD_PUBKEY_BYTES);
        if (sk)
            memcpy(sk, sqlite3_column_blob(st, 1), PD_SECKEY_BYTES);
    } else if (rc == SQLITE_DONE) {
        code = pd_store_fail(store, PD_ERR_NOTFOUND,
                             "this device has no %s identity (pendata init --role %s)", role, role);
    } else if (rc == SQLITE_ROW) {
        code = pd_store_fail(store, PD_ERR_CORRUPT, "the %s identity's keys are malformed", role);
    } else {
        code = pd_store_fail_sqlite(store, rc, "identity");
    }
    sqlite3_finalize(st);
    return code;
}

int pd_keyring_self(pd_store *store, const char *role, uint8_t pk[PD_PUBKEY_BYTES])
{
    if (!role)
        return pd_store_fail(store, PD_ERR_INVALID, "no role given");
    return pd_keys_identity(store, role, pk, NULL);
}

int pd_keys_supervisor_of(pd_store *store, const uint8_t author_pk[PD_PUBKEY_BYTES],
                          uint8_t supervisor_pk[PD_PUBKEY_BYTES], pd_keyring_entry *author)
{
    pd_keyring_entry e;
    int rc = pd_keyring_get(store, author_pk, &e);
    char hex[17];
    pd_sync_hex(hex, author_pk, 8);
    if (rc == PD_ERR_NOTFOUND)
        return pd_store_fail(store, PD_ERR_DENIED,
                             "enumerator %s... is not in this device's keyring: nobody here may "
                             "review its batches",
                             hex);
    if (rc)
        return rc;
    if (!e.has_supervisor)
        return pd_store_fail(store, PD_ERR_DENIED,
                             "the keyring names no supervisor for enumerator %s...", hex);
    memcpy(supervisor_pk, e.supervisor_pk, PD_PUBKEY_BYTES);
    if (author)
        *author = e;
    return PD_OK;
}

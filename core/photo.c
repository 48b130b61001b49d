/*
 * photo.c — attaching a photo of a household (front, wall, floor, kitchen, toilet, KK, KTP, head,
 * roof — the nine SIKS-Droid asks for).
 *
 * The JPEG is checked (pd_validate_jpeg) before anything is stored, then kept in table photo —
 * encrypted like every other page of the store — under its BLAKE2b-256 hash, so the same bytes
 * are stored and sent once. The "photo" op carries the hash and the photo's metadata; the bytes
 * travel beside the batch as a content-addressed blob (they are most of what a device uploads).
 */
#include "household_internal.h"

#include "validate.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int pd_photo_add(pd_store *store, const char *household_id, const char *visit_id, const char *kind,
                 const uint8_t *jpeg, size_t len, int64_t taken_at, uint8_t hash_out[PD_HASH_BYTES])
{
    pd_error err = {0};
    int64_t now = pd_now_ms();
    int rc = pd_validate_photo_kind(kind, &err);
    if (rc == PD_OK)
        rc = pd_validate_jpeg(jpeg, len, &err);
    if (rc == PD_OK && taken_at != 0 &&
        (taken_at < 946684800000LL || taken_at > now + PD_GPS_SKEW_MS))
        rc = pd_error_set(&err, PD_ERR_INVALID, "photo.taken_at: before 2000 or in the future");
    if (rc == PD_OK && (!household_id || !*household_id))
        rc = pd_error_set(&err, PD_ERR_INVALID, "photo.household_id: missing");
    if (rc != PD_OK)
        return pd_store_fail(store, rc, "%s", err.msg);
    uint8_t hash[PD_HASH_BYTES];
    char hex[2 * PD_HASH_BYTES + 1];
    crypto_generichash(hash, sizeof hash, jpeg, len, NULL, 0);
    pd_hex(hash, sizeof hash, hex);

    pd_change ch;
    if ((rc = pd_change_begin(store, &ch)) != PD_OK)
        return rc;
    pd_household_row hh;
    char *json = NULL;
    if ((rc = pd_household_rev(ch.db, household_id, &hh, &err)) != PD_OK) {
        pd_store_fail(store, rc, "%s", err.msg);
        goto fail;
    }
    if (visit_id) {
        sqlite3_stmt *st = NULL;
        int s = sqlite3_prepare_v2(ch.db, "SELECT household_id FROM visit WHERE id = ?1", -1, &st,
                                   NULL);
        if (s == SQLITE_OK) {
            sqlite3_bind_text(st, 1, visit_id, -1, SQLITE_STATIC);
            s = sqlite3_step(st);
        }
        if (s == SQLITE_DONE)
            rc = pd_store_fail(store, PD_ERR_NOTFOUND, "photo.visit_id: visit %.63s not found",
                               visit_id);
        else if (s != SQLITE_ROW)
            rc = pd_store_fail_sqlite(store, s, "visit");
        else if (strcmp((const char *)sqlite3_column_text(st, 0), household_id) != 0)
            rc = pd_store_fail(store, PD_ERR_INVALID,
                               "photo.visit_id: visit %s is of household %s, not %s", visit_id,
                               sqlite3_column_text(st, 0), household_id);
        sqlite3_finalize(st);
        if (rc != PD_OK)
            goto fail;
    }
    cJSON *o = cJSON_CreateObject();
    pd_value hv = pd_text_value(household_id), vv = pd_text_value(visit_id);
    pd_value kv = pd_text_value(kind), sz = pd_int_value((int64_t)len);
    pd_value tv = pd_int_value(taken_at ? taken_at : now);
    if (o && pd_json_add_value(o, "household_id", &hv) && pd_json_add_value(o, "visit_id", &vv) &&
        pd_json_add_value(o, "kind", &kv) && pd_json_add_value(o, "size", &sz) &&
        pd_json_add_value(o, "taken_at", &tv))
        json = pd_json_print(o);
    cJSON_Delete(o);
    if (!json) {
        rc = pd_store_fail(store, PD_ERR_NOMEM, "photo: out of memory");
        goto fail;
    }
    ch.photo = jpeg;
    ch.photo_len = len;
    pd_op op = {.kind = "photo",
                .entity = "photo",
                .target = hex,
                .new_value = pd_text_value(json),
                .base_rev = hh.rev};
    if ((rc = pd_change_apply(&ch, &op)) != PD_OK)
        goto fail;
    free(json);
    if ((rc = pd_change_commit(&ch)) != PD_OK)
        return rc;
    if (hash_out)
        memcpy(hash_out, hash, sizeof hash);
    return PD_OK;
fail:
    free(json);
    pd_change_rollback(&ch);
    return rc;
}

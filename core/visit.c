/*
 * visit.c — recording a visit to a household: the outcome, the GPS fix, notes, the members'
 * outcomes, and the warnings a supervisor should see.
 *
 * One visit is one transaction of ops (oplog.h): the visit record ("visit" op), the household's
 * status ("set" household.status, when it changes), each member outcome ("set" member.outcome,
 * and an "end" op for deceased / moved / duplicate). The household's location in household_geo
 * follows from the visit op (oplog.c). Warnings never refuse a visit; they are stored in
 * visit.warnings (comma-separated codes, see validate.h) and returned to the caller with their
 * messages: fix outside the desa's shape, accuracy worse than 50 m, > 5 km from another visit
 * within a minute, a member's NIK held in another household on this device, a mock location.
 */
#include "household_internal.h"

#include "validate.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VISIT_MEMBERS_MAX 99

/* Validate everything that needs no store. */
static int check_input(const pd_visit_in *v, int64_t now, pd_warnings *w, pd_error *err)
{
    if (!v)
        return pd_error_set(err, PD_ERR_INVALID, "visit: missing");
    if (!v->household_id || !*v->household_id)
        return pd_error_set(err, PD_ERR_INVALID, "visit.household_id: missing");
    int rc = pd_validate_visit_outcome(v->outcome, err);
    if (rc != PD_OK)
        return rc;
    if (v->visited_at != 0 &&
        (v->visited_at < 946684800000LL || v->visited_at > now + PD_GPS_SKEW_MS))
        return pd_error_set(err, PD_ERR_INVALID,
                            "visit.visited_at: %" PRId64 " ms is before 2000 or in the future",
                            v->visited_at);
    if (v->gps && (rc = pd_validate_gps(v->gps, now, w, err)) != PD_OK)
        return rc;
    if (v->notes && (rc = pd_validate_text("visit.notes", v->notes, PD_NOTES_MAX, 1, err)))
        return rc;
    if (v->member_count > VISIT_MEMBERS_MAX || (v->member_count && !v->members))
        return pd_error_set(err, PD_ERR_INVALID, "visit.members: at most %d member outcomes",
                            VISIT_MEMBERS_MAX);
    for (size_t i = 0; i < v->member_count; i++) {
        const pd_member_outcome *m = &v->members[i];
        if (!m->member_id || !*m->member_id)
            return pd_error_set(err, PD_ERR_INVALID, "visit.members[%zu]: member id missing", i);
        if ((rc = pd_validate_member_outcome(m->outcome, err)) != PD_OK) {
            char prefix[128];
            snprintf(prefix, sizeof prefix, "visit.members[%zu] (%.40s): ", i, m->member_id);
            return pd_error_prefix(err, prefix);
        }
        if (!strcmp(m->outcome, "new"))
            return pd_error_set(err, PD_ERR_INVALID,
                                "visit.members[%zu]: 'new' is given by adding the member", i);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(v->members[j].member_id, m->member_id))
                return pd_error_set(err, PD_ERR_INVALID, "visit.members: %.40s given twice",
                                    m->member_id);
    }
    return PD_OK;
}

/* Warnings that need the store. */
static int store_warnings(sqlite3 *db, const pd_visit_in *v, const pd_household_row *hh, int64_t at,
                          pd_warnings *w, pd_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = SQLITE_OK;
    if (v->gps) {
        rc = sqlite3_prepare_v2(db, "SELECT shape FROM area_shape WHERE code = ?1", -1, &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(st, 1, hh->desa, -1, SQLITE_STATIC);
            rc = sqlite3_step(st);
        }
        if (rc == SQLITE_ROW && pd_shape_contains((const char *)sqlite3_column_text(st, 0),
                                                  v->gps->lat, v->gps->lon) == 0)
            pd_warn_add(w, PD_WARN_GPS_OUTSIDE_AREA, "gps: %.6f,%.6f is outside desa %s",
                        v->gps->lat, v->gps->lon, hh->desa);
        sqlite3_finalize(st);
        st = NULL;
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return pd_error_sqlite(err, db, rc, "area shape");
        rc = sqlite3_prepare_v2(db,
                                "SELECT id, lat, lon, visited_at FROM visit WHERE visited_at "
                                "BETWEEN ?1 AND ?2 AND lat IS NOT NULL AND lon IS NOT NULL",
                                -1, &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_int64(st, 1, at - PD_GPS_JUMP_MS);
            sqlite3_bind_int64(st, 2, at + PD_GPS_JUMP_MS);
            while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
                double d = pd_geo_distance_m(v->gps->lat, v->gps->lon, sqlite3_column_double(st, 1),
                                             sqlite3_column_double(st, 2));
                if (d > PD_GPS_JUMP_M) {
                    pd_warn_add(w, PD_WARN_GPS_JUMP, "gps: %.1f km from visit %s made %lld s apart",
                                d / 1000.0, (const char *)sqlite3_column_text(st, 0),
                                llabs(at - sqlite3_column_int64(st, 3)) / 1000);
                    rc = SQLITE_DONE;
                    break;
                }
            }
        }
        sqlite3_finalize(st);
        st = NULL;
        if (rc != SQLITE_DONE)
            return pd_error_sqlite(err, db, rc, "nearby visits");
    }
    /* NIKs of this household's active members held by an active member elsewhere. */
    rc = sqlite3_prepare_v2(db,
                            "SELECT m.nik, m.id, o.id, o.household_id FROM member m JOIN member o "
                            "ON o.nik = m.nik AND o.household_id <> m.household_id AND "
                            "o.status = 'active' WHERE m.household_id = ?1 AND m.status = 'active' "
                            "AND m.nik IS NOT NULL AND m.nik NOT LIKE '99999999999999%' "
                            "ORDER BY m.id, o.id",
                            -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, v->household_id, -1, SQLITE_STATIC);
        while ((rc = sqlite3_step(st)) == SQLITE_ROW)
            pd_warn_add(
                w, PD_WARN_NIK_DUPLICATE,
                "nik %s of member %s is also member %s of "
                "household %s",
                (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1),
                (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return pd_error_sqlite(err, db, rc, "duplicate NIKs");
    return PD_OK;
}

/* The enumerator's public key, if this device has an enumerator identity. */
static int enumerator_pk(sqlite3 *db, uint8_t pk[PD_PUBKEY_BYTES], bool *have, pd_error *err)
{
    *have = false;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, "SELECT sign_pk FROM identity WHERE role = 'enumerator'", -1,
                                &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == PD_PUBKEY_BYTES) {
        memcpy(pk, sqlite3_column_blob(st, 0), PD_PUBKEY_BYTES);
        *have = true;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return pd_error_sqlite(err, db, rc, "identity");
    return PD_OK;
}

static char *visit_json(const pd_visit_in *v, int64_t at, const uint8_t *pk, const char *warnings)
{
    cJSON *o = cJSON_CreateObject();
    pd_value hh = pd_text_value(v->household_id), outcome = pd_text_value(v->outcome);
    pd_value vat = pd_int_value(at), none = {0};
    pd_value pkv = pk ? (pd_value){.type = PD_VAL_BLOB, .p = pk, .len = PD_PUBKEY_BYTES} : none;
    pd_value lat = none, lon = none, acc = none, alt = none, fix = none, prov = none;
    pd_value mock = pd_int_value(0);
    if (v->gps) {
        lat = (pd_value){.type = PD_VAL_REAL, .r = v->gps->lat};
        lon = (pd_value){.type = PD_VAL_REAL, .r = v->gps->lon};
        acc = (pd_value){.type = PD_VAL_REAL, .r = v->gps->accuracy};
        if (!isnan(v->gps->altitude))
            alt = (pd_value){.type = PD_VAL_REAL, .r = v->gps->altitude};
        fix = pd_int_value(v->gps->fix_time);
        prov = pd_text_value(v->gps->provider);
        mock = pd_int_value(v->gps->mock ? 1 : 0);
    }
    pd_value notes = pd_text_value(v->notes ? v->notes : ""), warn = pd_text_value(warnings);
    bool ok = o && pd_json_add_value(o, "household_id", &hh) &&
              pd_json_add_value(o, "outcome", &outcome) &&
              pd_json_add_value(o, "visited_at", &vat) &&
              pd_json_add_value(o, "enumerator_pk", &pkv) && pd_json_add_value(o, "lat", &lat) &&
              pd_json_add_value(o, "lon", &lon) && pd_json_add_value(o, "accuracy_m", &acc) &&
              pd_json_add_value(o, "altitude_m", &alt) && pd_json_add_value(o, "fix_time", &fix) &&
              pd_json_add_value(o, "provider", &prov) && pd_json_add_value(o, "mock", &mock) &&
              pd_json_add_value(o, "notes", &notes) && pd_json_add_value(o, "warnings", &warn);
    char *s = ok ? pd_json_print(o) : NULL;
    cJSON_Delete(o);
    return s;
}

/* A member's household, status and outcome, for the member outcomes of a visit. */
static int member_state(sqlite3 *db, const char *id, char *household, char *status, char *outcome,
                        int64_t *rev, pd_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(
        db, "SELECT household_id, status, outcome, rev FROM member WHERE id = ?1", -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
    }
    int code = PD_OK;
    if (rc == SQLITE_ROW) {
        snprintf(household, PD_ID_MAX, "%s", sqlite3_column_text(st, 0));
        snprintf(status, 16, "%s", sqlite3_column_text(st, 1));
        snprintf(outcome, 16, "%s",
                 sqlite3_column_type(st, 2) == SQLITE_NULL
                     ? ""
                     : (const char *)sqlite3_column_text(st, 2));
        *rev = sqlite3_column_int64(st, 3);
    } else if (rc == SQLITE_DONE) {
        code = pd_error_set(err, PD_ERR_NOTFOUND, "visit.members: member %.63s not found", id);
    } else {
        code = pd_error_sqlite(err, db, rc, "member");
    }
    sqlite3_finalize(st);
    return code;
}

int pd_visit_record(pd_store *store, const pd_visit_in *v, char id_out[PD_ID_MAX], pd_warnings *w)
{
    pd_error err = {0};
    pd_warnings local = {0};
    int64_t now = pd_now_ms();
    int rc = check_input(v, now, &local, &err);
    if (rc != PD_OK)
        return pd_store_fail(store, rc, "%s", err.msg);
    int64_t at = v->visited_at ? v->visited_at : now;
    pd_change ch;
    if ((rc = pd_change_begin(store, &ch)) != PD_OK)
        return rc;
    pd_household_row hh;
    if ((rc = pd_household_rev(ch.db, v->household_id, &hh, &err)) != PD_OK) {
        pd_store_fail(store, rc, "%s", err.msg);
        goto fail;
    }
    if (!strcmp(v->outcome, "new_household") && !hh.is_new) {
        rc = pd_store_fail(store, PD_ERR_INVALID,
                           "visit.outcome: new_household is for a household proposed in the field; "
                           "%s is from the prelist",
                           v->household_id);
        goto fail;
    }
    for (size_t i = 0; i < v->member_count; i++) {
        char household[PD_ID_MAX], status[16], outcome[16];
        int64_t rev;
        const pd_member_outcome *m = &v->members[i];
        if ((rc = member_state(ch.db, m->member_id, household, status, outcome, &rev, &err))) {
            pd_store_fail(store, rc, "%s", err.msg);
            goto fail;
        }
        if (strcmp(household, v->household_id) != 0) {
            rc = pd_store_fail(store, PD_ERR_INVALID,
                               "visit.members: member %s belongs to household %s, not %s",
                               m->member_id, household, v->household_id);
            goto fail;
        }
    }
    if ((rc = store_warnings(ch.db, v, &hh, at, &local, &err)) != PD_OK) {
        pd_store_fail(store, rc, "%s", err.msg);
        goto fail;
    }
    uint8_t pk[PD_PUBKEY_BYTES];
    bool have_pk = false;
    if ((rc = enumerator_pk(ch.db, pk, &have_pk, &err)) != PD_OK) {
        pd_store_fail(store, rc, "%s", err.msg);
        goto fail;
    }
    char warnings[512];
    pd_warnings_join(&local, warnings, sizeof warnings);
    char id[PD_ID_MAX];
    snprintf(id, sizeof id, "V%s-%06" PRId64, ch.device_id, pd_change_next_seq(&ch));
    char *json = visit_json(v, at, have_pk ? pk : NULL, warnings);
    if (!json) {
        rc = pd_store_fail(store, PD_ERR_NOMEM, "visit: out of memory");
        goto fail;
    }
    pd_op op = {.kind = "visit",
                .entity = "visit",
                .target = id,
                .new_value = pd_text_value(json),
                .base_rev = hh.rev};
    rc = pd_change_apply(&ch, &op);
    free(json);
    if (rc != PD_OK)
        goto fail;
    if (strcmp(hh.status, v->outcome) != 0) {
        pd_op set = {.kind = "set",
                     .entity = "household",
                     .target = v->household_id,
                     .field = "status",
                     .old_value = pd_text_value(hh.status[0] ? hh.status : NULL),
                     .new_value = pd_text_value(v->outcome),
                     .base_rev = hh.rev};
        if ((rc = pd_change_apply(&ch, &set)) != PD_OK)
            goto fail;
    }
    for (size_t i = 0; i < v->member_count; i++) {
        const pd_member_outcome *m = &v->members[i];
        char household[PD_ID_MAX], status[16], outcome[16];
        int64_t rev;
        if ((rc = member_state(ch.db, m->member_id, household, status, outcome, &rev, &err))) {
            pd_store_fail(store, rc, "%s", err.msg);
            goto fail;
        }
        bool ends = !strcmp(m->outcome, "deceased") || !strcmp(m->outcome, "moved") ||
                    !strcmp(m->outcome, "duplicate");
        if (ends && !strcmp(status, "active")) {
            if ((rc = pd_member_end_in(&ch, m->member_id, m->outcome)) != PD_OK)
                goto fail;
        } else if (strcmp(outcome, m->outcome) != 0) {
            if (ends) {
                rc = pd_store_fail(store, PD_ERR_STATE,
                                   "visit.members: member %s has already ended (%s)", m->member_id,
                                   status);
                goto fail;
            }
            pd_op set = {.kind = "set",
                         .entity = "member",
                         .target = m->member_id,
                         .field = "outcome",
                         .old_value = pd_text_value(outcome[0] ? outcome : NULL),
                         .new_value = pd_text_value(m->outcome),
                         .base_rev = rev};
            if ((rc = pd_change_apply(&ch, &set)) != PD_OK)
                goto fail;
        }
    }
    if ((rc = pd_change_commit(&ch)) != PD_OK)
        return rc;
    if (id_out)
        snprintf(id_out, PD_ID_MAX, "%s", id);
    for (size_t i = 0; w && i < local.count; i++)
        pd_warn_add(w, local.item[i].code, "%s", local.item[i].msg);
    return PD_OK;
fail:
    pd_change_rollback(&ch);
    return rc;
}

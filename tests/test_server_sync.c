/*
 * test_server_sync.c — batches through the real server, end to end over HTTP: a signed, approved
 * batch uploaded by tus and committed is applied exactly once (the same batch again gets the very
 * same signed receipt and changes nothing); a batch for another area, one approved by someone who
 * is not the author's supervisor, or one with no review, is refused and changes nothing; two
 * devices editing different fields of one household are both kept, the same field gives a
 * conflict row with the base and both values; duplicate NIKs and double visits are queued; a gap
 * is held until it closes; a fork is quarantined; a returned batch advances the chain without its
 * ops; new households and members arrive; the prelist download with Range; delta pages, each
 * signed over its own request's nonce.
 */
#include "test_server_client.h"

#include "pd_prelist.h"

#include <zlib.h>

static tsrv S;

/* gunzip a whole buffer (a test's own decoder: zlib, not the code under test) */
static bool pd_gunzip_test(const uint8_t *in, size_t n, uint8_t **out, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return false;
    size_t cap = 1 << 22;
    uint8_t *buf = malloc(cap);
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    z.next_out = buf;
    z.avail_out = (uInt)cap;
    bool ok = buf && inflate(&z, Z_FINISH) == Z_STREAM_END;
    *out_len = z.total_out;
    inflateEnd(&z);
    if (!ok) {
        free(buf);
        return false;
    }
    *out = buf;
    return true;
}
static tdev E1, E2, E3, S1;

typedef struct hh_info {
    char id[64];
    int64_t rev;
    int64_t rooms;
} hh_info;

static hh_info HH[8];
static char MEMBER_ID[64], MEMBER_HH[64], OTHER_NIK[32];

static pd_value T(const char *s)
{
    pd_value v = {
        .type = s ? PD_VAL_TEXT : PD_VAL_NULL, .p = (const uint8_t *)s, .len = s ? strlen(s) : 0};
    return v;
}

static pd_value I(int64_t i)
{
    pd_value v = {.type = PD_VAL_INT, .i = i};
    return v;
}

static pd_op set_op(const char *entity, const char *target, const char *field, pd_value old,
                    pd_value nv, int64_t base)
{
    pd_op op = {.kind = "set",
                .entity = entity,
                .target = target,
                .field = field,
                .old_value = old,
                .new_value = nv,
                .base_rev = base};
    return op;
}

static cJSON *get_delta(const tdev *d, int64_t since, int limit, tresp *keep)
{
    char target[96];
    snprintf(target, sizeof target, "/v1/delta?since=%lld&limit=%d", (long long)since, limit);
    tresp r;
    ts_request(&S, d, "GET", target, NULL, NULL, 0, &r);
    cJSON *o = r.status == 200 ? cJSON_Parse(r.body) : NULL;
    if (keep)
        *keep = r;
    else
        tresp_free(&r);
    return o;
}

/* A household's row in a delta, or NULL. */
static const cJSON *find_row(const cJSON *delta, const char *array, const char *id)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(delta, array))
    {
        if (!strcmp(ts_str(it, "id"), id))
            return it;
    }
    return NULL;
}

/* The current row of a household, fetched by a full delta. Caller cJSON_Deletes *root. */
static const cJSON *household_now(const char *id, cJSON **root)
{
    *root = get_delta(&E1, 0, 10000, NULL);
    return *root ? find_row(*root, "households", id) : NULL;
}

static int64_t hh_int(const char *id, const char *field)
{
    cJSON *root;
    const cJSON *h = household_now(id, &root);
    int64_t v = h ? (int64_t)ts_num(h, field) : -999;
    cJSON_Delete(root);
    return v;
}

static int64_t revision(void)
{
    pd_server_status st;
    return pd_server_get_status(S.srv, &st) == PD_OK ? st.revision : -1;
}

/* Seal ops as dev, approve (or return) by S1, upload and commit as uploader; results[0]. */
static cJSON *sync_one(tdev *dev, const tdev *uploader, const char *area, pd_op *ops, size_t n,
                       const tdev *reviewer, const char *return_reason)
{
    uint8_t *batch = NULL;
    size_t len = 0;
    if (tb_seal(dev, area, ops, n, &batch, &len) != PD_OK)
        return NULL;
    pd_bundle *b = NULL;
    pd_bundle_new(&b);
    if (reviewer)
        tb_add(b, batch, len, reviewer, return_reason);
    else
        pd_bundle_add(b, PD_BUNDLE_BATCH, batch, len);
    long st;
    cJSON *o = ts_sync(&S, uploader, b, &st);
    if (!o)
        fprintf(stderr, "sync: status %ld\n", st);
    pd_bundle_free(b);
    free(batch);
    return o;
}

/* Decode and check a receipt's hex; returns its status byte (0 if invalid). */
static int receipt_check(const char *hex, uint8_t out[200])
{
    if (!hex || strlen(hex) != 400 || sodium_hex2bin(out, 200, hex, 400, NULL, NULL, NULL) != 0 ||
        memcmp(out, "PDRC", 4) != 0)
        return 0;
    if (crypto_sign_verify_detached(out + 136, out, 136, S.sign_pk) != 0)
        return 0;
    return out[5];
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ---- setup ----------------------------------------------------------------------------------- */

static bool load_households(void)
{
    cJSON *d = get_delta(&E1, 0, 10000, NULL);
    if (!d)
        return false;
    const cJSON *hs = cJSON_GetObjectItemCaseSensitive(d, "households");
    if (cJSON_GetArraySize(hs) < 40) {
        cJSON_Delete(d);
        return false;
    }
    for (int i = 0; i < 8; i++) {
        const cJSON *h = cJSON_GetArrayItem(hs, i);
        snprintf(HH[i].id, sizeof HH[i].id, "%s", ts_str(h, "id"));
        HH[i].rev = (int64_t)ts_num(h, "rev");
        HH[i].rooms = (int64_t)ts_num(h, "rooms");
    }
    /* a member of household 3 and a real NIK of a member of household 4 */
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(d, "members"))
    {
        const char *hh = ts_str(m, "household_id");
        const char *nik = ts_str(m, "nik");
        if (!MEMBER_ID[0] && !strcmp(hh, HH[3].id)) {
            snprintf(MEMBER_ID, sizeof MEMBER_ID, "%s", ts_str(m, "id"));
            snprintf(MEMBER_HH, sizeof MEMBER_HH, "%s", hh);
        }
        if (!OTHER_NIK[0] && !strcmp(hh, HH[4].id) && strlen(nik) == 16 &&
            strncmp(nik, "99999999999999", 14) != 0)
            snprintf(OTHER_NIK, sizeof OTHER_NIK, "%s", nik);
    }
    cJSON_Delete(d);
    return MEMBER_ID[0] && OTHER_NIK[0];
}

/* ---- tests ------------------------------------------------------------------------------------
 */

static void test_batch_applied_once_and_again_gets_the_same_receipt(void)
{
    int64_t roof = hh_int(HH[0].id, "roof_material");
    int64_t nr = roof == 2 ? 3 : 2;
    pd_op op = set_op("household", HH[0].id, "roof_material", I(roof), I(nr), HH[0].rev);
    uint8_t *batch = NULL;
    size_t len;
    REQUIRE_V(tb_seal(&E1, TS_DESA, &op, 1, &batch, &len) == PD_OK);
    pd_bundle *b;
    pd_bundle_new(&b);
    REQUIRE_V(tb_add(b, batch, len, &S1, NULL) == PD_OK);

    cJSON *c = ts_sync(&S, &E1, b, NULL);
    REQUIRE_V(c);
    const cJSON *r0 = ts_result(c, 0);
    CHECK(!strcmp(ts_str(r0, "status"), "applied"));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r0, "again")));
    CHECK_EQ_INT(ts_num(r0, "applied"), 1);
    CHECK_EQ_INT(ts_num(r0, "merged"), 0);
    CHECK_EQ_INT(ts_num(r0, "conflicted"), 0);
    uint8_t rc1[200];
    CHECK_EQ_INT(receipt_check(ts_str(r0, "receipt"), rc1), 1);
    CHECK_EQ_INT(le64(rc1 + 72), 1);
    CHECK(!memcmp(rc1 + 8, E1.last_hash, 32));
    CHECK_EQ_INT(hh_int(HH[0].id, "roof_material"), nr);
    /* a whole bundle in one PATCH is applied from memory: no upload file was ever written */
    char uploads[4300];
    snprintf(uploads, sizeof uploads, "%s/uploads", S.data_dir);
    CHECK_EQ_INT(pd_test_dir_entries(uploads), 0);
    char first[401];
    snprintf(first, sizeof first, "%s", ts_str(r0, "receipt"));
    cJSON_Delete(c);

    /* the very same bundle again, as a new upload: same receipt, nothing applied twice */
    int64_t rev = revision();
    c = ts_sync(&S, &E1, b, NULL);
    REQUIRE_V(c);
    r0 = ts_result(c, 0);
    CHECK(!strcmp(ts_str(r0, "status"), "applied"));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r0, "again")));
    CHECK(!strcmp(ts_str(r0, "receipt"), first));
    CHECK_EQ_INT(revision(), rev);
    cJSON_Delete(c);

    /* and the receipts endpoint has it */
    tresp r;
    ts_request(&S, &E1, "GET", "/v1/receipts?device=dev-e1", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.body && strstr(r.body, first));
    tresp_free(&r);
    /* another enumerator may not read them; the supervisor may */
    ts_request(&S, &E2, "GET", "/v1/receipts?device=dev-e1", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 403);
    tresp_free(&r);
    ts_request(&S, &S1, "GET", "/v1/receipts?device=dev-e1", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 200);
    tresp_free(&r);
    pd_bundle_free(b);
    free(batch);
}

/* POST /v1/uploads with the bundle as its body (creation-with-upload): created, applied and
 * answered 201 with the commit's answer in one request; a commit of that upload answers the
 * same; the same bundle POSTed again gets the same receipt and applies nothing twice. */
static void test_bundle_in_the_creation_post_answers_with_its_receipt(void)
{
    int64_t v = hh_int(HH[1].id, "roof_material");
    int64_t nv = v == 4 ? 5 : 4;
    pd_op op = set_op("household", HH[1].id, "roof_material", I(v), I(nv), HH[1].rev);
    uint8_t *batch = NULL;
    size_t len, blen;
    REQUIRE_V(tb_seal(&E1, TS_DESA, &op, 1, &batch, &len) == PD_OK);
    pd_bundle *b;
    pd_bundle_new(&b);
    REQUIRE_V(tb_add(b, batch, len, &S1, NULL) == PD_OK);
    const uint8_t *bytes = pd_bundle_bytes(b, &blen);

    char id[33];
    long st = 0;
    cJSON *c = ts_post_bundle(&S, &E1, bytes, blen, &st, id);
    CHECK_EQ_INT(st, 201);
    REQUIRE_V(c && strlen(id) == 32);
    CHECK(!strcmp(ts_str(c, "upload"), id));
    const cJSON *r0 = ts_result(c, 0);
    CHECK(!strcmp(ts_str(r0, "status"), "applied"));
    CHECK(cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(r0, "again")));
    uint8_t rc1[200];
    CHECK_EQ_INT(receipt_check(ts_str(r0, "receipt"), rc1), 1);
    CHECK(!memcmp(rc1 + 8, E1.last_hash, 32));
    CHECK_EQ_INT(hh_int(HH[1].id, "roof_material"), nv);
    char first[401];
    snprintf(first, sizeof first, "%s", ts_str(r0, "receipt"));
    cJSON_Delete(c);
    char uploads[4300];
    snprintf(uploads, sizeof uploads, "%s/uploads", S.data_dir);
    CHECK_EQ_INT(pd_test_dir_entries(uploads), 0); /* held in memory, as a whole PATCH is */

    /* a commit of the same upload: the same answer */
    char body[80];
    snprintf(body, sizeof body, "{\"upload\":\"%s\"}", id);
    tresp r;
    ts_request(&S, &E1, "POST", "/v1/batches/commit", NULL, body, strlen(body), &r);
    CHECK_EQ_INT(r.status, 200);
    c = r.body ? cJSON_Parse(r.body) : NULL;
    tresp_free(&r);
    CHECK(c && !strcmp(ts_str(ts_result(c, 0), "receipt"), first));
    cJSON_Delete(c);
    /* HEAD: complete */
    char path[80];
    snprintf(path, sizeof path, "/v1/uploads/%s", id);
    const char *th[] = {"Tus-Resumable: 1.0.0", NULL};
    ts_request(&S, &E1, "HEAD", path, th, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 200);
    const char *off = tresp_header(&r, "Upload-Offset");
    CHECK(off && atol(off) == (long)blen);
    tresp_free(&r);

    /* the same bundle POSTed again (an answer lost on the way): same receipt, nothing twice */
    int64_t rev = revision();
    char id2[33];
    c = ts_post_bundle(&S, &E1, bytes, blen, &st, id2);
    CHECK_EQ_INT(st, 201);
    CHECK(strcmp(id, id2) != 0);
    r0 = ts_result(c, 0);
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r0, "again")));
    CHECK(!strcmp(ts_str(r0, "receipt"), first));
    CHECK_EQ_INT(revision(), rev);
    cJSON_Delete(c);
    pd_bundle_free(b);
    free(batch);
}

static void test_batches_outside_rights_are_refused_and_change_nothing(void)
{
    int64_t rev = revision();
    int64_t rooms = hh_int(HH[1].id, "rooms");
    /* E3's area is another kecamatan */
    pd_op op = set_op("household", HH[1].id, "rooms", I(rooms), I(rooms + 1), HH[1].rev);
    cJSON *c = sync_one(&E3, &E3, "32.73.02", &op, 1, &S1, NULL);
    REQUIRE_V(c);
    const cJSON *r0 = ts_result(c, 0);
    CHECK(!strcmp(ts_str(r0, "status"), "rejected"));
    CHECK(!strcmp(ts_str(r0, "error"), "denied"));
    CHECK(strstr(ts_str(r0, "message"), "outside"));
    CHECK(cJSON_GetObjectItemCaseSensitive(r0, "receipt") == NULL);
    cJSON_Delete(c);
    E3.seq--; /* it is not in the server's chain */
    CHECK_EQ_INT(hh_int(HH[1].id, "rooms"), rooms);
    CHECK_EQ_INT(revision(), rev);

    /* approved by someone who is not the author's supervisor */
    pd_op op2 = set_op("household", HH[1].id, "rooms", I(rooms), I(rooms + 2), HH[1].rev);
    c = sync_one(&E1, &E1, TS_DESA, &op2, 1, &E2, NULL);
    REQUIRE_V(c);
    r0 = ts_result(c, 0);
    CHECK(!strcmp(ts_str(r0, "status"), "rejected"));
    CHECK(!strcmp(ts_str(r0, "error"), "denied"));
    cJSON_Delete(c);
    /* not reviewed at all */
    c = sync_one(&E1, &E1, TS_DESA, &op2, 1, NULL, NULL);
    REQUIRE_V(c);
    r0 = ts_result(c, 0);
    CHECK(!strcmp(ts_str(r0, "status"), "rejected"));
    cJSON_Delete(c);
    CHECK_EQ_INT(hh_int(HH[1].id, "rooms"), rooms);
    CHECK_EQ_INT(revision(), rev);
}

/* E1's chain head as the server holds it: restore the local chain state after refusals. */
static void e1_resync_head(void)
{
    tresp r;
    ts_request(&S, &E1, "GET", "/v1/receipts?device=dev-e1", NULL, NULL, 0, &r);
    cJSON *o = cJSON_Parse(r.body);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "receipts");
    const cJSON *last = cJSON_GetArrayItem(arr, cJSON_GetArraySize(arr) - 1);
    E1.seq = (uint64_t)ts_num(last, "seq");
    sodium_hex2bin(E1.last_hash, 32, ts_str(last, "hash"), 64, NULL, NULL, NULL);
    cJSON_Delete(o);
    tresp_free(&r);
}

static void test_two_devices_different_fields_both_kept(void)
{
    e1_resync_head(); /* E1's refused batches are not in the server's chain */
    int64_t wall = hh_int(HH[2].id, "wall_material");
    int64_t floor_m = hh_int(HH[2].id, "floor_material");
    int64_t nw = wall == 1 ? 2 : 1, nf = floor_m == 1 ? 2 : 1;
    pd_op a = set_op("household", HH[2].id, "wall_material", I(wall), I(nw), HH[2].rev);
    pd_op b = set_op("household", HH[2].id, "floor_material", I(floor_m), I(nf), HH[2].rev);
    cJSON *c = sync_one(&E1, &E1, TS_DESA, &a, 1, &S1, NULL);
    REQUIRE_V(c);
    CHECK_EQ_INT(ts_num(ts_result(c, 0), "applied"), 1);
    cJSON_Delete(c);
    c = sync_one(&E2, &E2, TS_DESA, &b, 1, &S1, NULL);
    REQUIRE_V(c);
    const cJSON *r0 = ts_result(c, 0);
    CHECK(!strcmp(ts_str(r0, "status"), "applied"));
    CHECK_EQ_INT(ts_num(r0, "merged"), 1);
    CHECK_EQ_INT(ts_num(r0, "conflicted"), 0);
    cJSON_Delete(c);
    CHECK_EQ_INT(hh_int(HH[2].id, "wall_material"), nw);
    CHECK_EQ_INT(hh_int(HH[2].id, "floor_material"), nf);
}

static void test_same_field_changed_twice_makes_a_conflict_row(void)
{
    int64_t rooms = hh_int(HH[5].id, "rooms");
    pd_op a = set_op("household", HH[5].id, "rooms", I(rooms), I(rooms + 1), HH[5].rev);
    pd_op b = set_op("household", HH[5].id, "rooms", I(rooms), I(rooms + 2), HH[5].rev);
    cJSON *c = sync_one(&E1, &E1, TS_DESA, &a, 1, &S1, NULL);
    REQUIRE_V(c);
    CHECK_EQ_INT(ts_num(ts_result(c, 0), "applied"), 1);
    cJSON_Delete(c);
    c = sync_one(&E2, &E2, TS_DESA, &b, 1, &S1, NULL);
    REQUIRE_V(c);
    const cJSON *r0 = ts_result(c, 0);
    CHECK(!strcmp(ts_str(r0, "status"), "applied"));
    CHECK_EQ_INT(ts_num(r0, "conflicted"), 1);
    CHECK_EQ_INT(ts_num(r0, "applied"), 0);
    cJSON_Delete(c);
    /* the server's value stays */
    CHECK_EQ_INT(hh_int(HH[5].id, "rooms"), rooms + 1);
    pd_server_status st;
    REQUIRE_V(pd_server_get_status(S.srv, &st) == PD_OK);
    CHECK_EQ_INT(st.conflicts_open, 1);

    /* the row: base and both values, each side's device, the batch (read beside the server,
     * on either backend: one text row, the same SQL for SQLite and PostgreSQL) */
    char q[1024], row[512], want[512];
    snprintf(q, sizeof q,
             "SELECT kind || '|' || CAST(base_value AS TEXT) || '|' || CAST(server_value AS TEXT) "
             "|| '|' || CAST(device_value AS TEXT) || '|' || server_device || '|' || device_device "
             "|| '|' || CAST(base_rev AS TEXT) || '|' || CAST(length(batch_hash) AS TEXT) || '|' "
             "|| CAST(length(server_batch) AS TEXT) || '|' || CASE WHEN device_seq > 0 THEN 1 "
             "ELSE 0 END || '|' || CASE WHEN resolved_value IS NULL THEN 1 ELSE 0 END FROM "
             "conflicts WHERE target = '%s' AND field = 'rooms'",
             HH[5].id);
    REQUIRE_V(td_text(S.url, q, row, sizeof row));
    snprintf(want, sizeof want, "field|%lld|%lld|%lld|dev-e1|dev-e2|%lld|32|32|1|1",
             (long long)rooms, (long long)rooms + 1, (long long)rooms + 2, (long long)HH[5].rev);
    CHECK(!strcmp(row, want));
    if (strcmp(row, want) != 0)
        fprintf(stderr, "conflict row: %s, want %s\n", row, want);
    /* and the audit log knows who changed what from which batch */
    snprintf(q, sizeof q,
             "SELECT count(*) FROM audit WHERE target = '%s' AND field = 'rooms' AND "
             "length(batch_hash) = 32",
             HH[5].id);
    CHECK_EQ_INT(td_int(S.url, q), 2); /* E1's apply, E2's conflict */

    /* devices of the area see it in their delta */
    cJSON *d = get_delta(&E2, 0, 10000, NULL);
    const cJSON *cf = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(d, "conflicts"), 0);
    CHECK(cf && !strcmp(ts_str(cf, "field"), "rooms") && !strcmp(ts_str(cf, "state"), "open"));
    cJSON_Delete(d);
}

static void test_duplicate_nik_is_queued(void)
{
    pd_op op = set_op("member", MEMBER_ID, "nik", T(NULL), T(OTHER_NIK), HH[3].rev);
    op.old_value.type = PD_VAL_NULL;
    /* the op's old value is the member's current one: read it */
    cJSON *d = get_delta(&E1, 0, 10000, NULL);
    const cJSON *m = find_row(d, "members", MEMBER_ID);
    char cur[32] = "";
    if (m && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "nik")))
        snprintf(cur, sizeof cur, "%s", ts_str(m, "nik"));
    int64_t mrev = m ? (int64_t)ts_num(m, "rev") : 0;
    cJSON_Delete(d);
    op.old_value = cur[0] ? T(cur) : T(NULL);
    op.base_rev = mrev;
    cJSON *c = sync_one(&E1, &E1, TS_DESA, &op, 1, &S1, NULL);
    REQUIRE_V(c);
    const cJSON *r0 = ts_result(c, 0);
    CHECK(!strcmp(ts_str(r0, "status"), "applied"));
    CHECK_EQ_INT(ts_num(r0, "applied"), 1);
    CHECK_EQ_INT(ts_num(r0, "conflicted"), 1);
    cJSON_Delete(c);
    pd_server_status st;
    REQUIRE_V(pd_server_get_status(S.srv, &st) == PD_OK);
    CHECK_EQ_INT(st.conflicts_open, 2);
}

static char *visit_json(const char *hh, const char *outcome)
{
    char *s = malloc(512);
    snprintf(s, 512,
             "{\"household_id\":\"%s\",\"outcome\":\"%s\",\"visited_at\":%lld,"
             "\"enumerator_pk\":null,\"lat\":-6.88,\"lon\":107.58,\"accuracy_m\":8.5,"
             "\"altitude_m\":null,\"fix_time\":%lld,\"provider\":\"gps\",\"mock\":0,"
             "\"notes\":\"\",\"warnings\":\"\"}",
             hh, outcome, (long long)time(NULL) * 1000, (long long)time(NULL) * 1000);
    return s;
}

static void test_double_visit_is_queued(void)
{
    char *j1 = visit_json(HH[6].id, "found"), *j2 = visit_json(HH[6].id, "not_found");
    pd_op v1[2] = {{.kind = "visit",
                    .entity = "visit",
                    .target = "Vdev-e1-000900",
                    .new_value = T(j1),
                    .base_rev = HH[6].rev},
                   set_op("household", HH[6].id, "status", T(NULL), T("found"), HH[6].rev)};
    cJSON *c = sync_one(&E1, &E1, TS_DESA, v1, 2, &S1, NULL);
    REQUIRE_V(c);
    CHECK_EQ_INT(ts_num(ts_result(c, 0), "applied"), 2);
    cJSON_Delete(c);
    pd_op v2[2] = {{.kind = "visit",
                    .entity = "visit",
                    .target = "Vdev-e2-000900",
                    .new_value = T(j2),
                    .base_rev = HH[6].rev},
                   set_op("household", HH[6].id, "status", T(NULL), T("not_found"), HH[6].rev)};
    c = sync_one(&E2, &E2, TS_DESA, v2, 2, &S1, NULL);
    REQUIRE_V(c);
    const cJSON *r0 = ts_result(c, 0);
    CHECK(!strcmp(ts_str(r0, "status"), "applied"));
    CHECK_EQ_INT(ts_num(r0, "conflicted"), 2); /* the visit and its status: one conflict */
    cJSON_Delete(c);
    pd_server_status st;
    REQUIRE_V(pd_server_get_status(S.srv, &st) == PD_OK);
    CHECK_EQ_INT(st.conflicts_open, 3);
    CHECK_EQ_INT(st.visits, 2);
    cJSON *root;
    const cJSON *h = household_now(HH[6].id, &root);
    CHECK(h && !strcmp(ts_str(h, "status"), "found"));
    cJSON_Delete(root);
    free(j1);
    free(j2);
}

static void test_gap_is_held_until_it_closes(void)
{
    int64_t rooms = hh_int(HH[7].id, "rooms");
    int64_t tenure = hh_int(HH[7].id, "tenure"); /* -1 when NULL */
    int64_t nt = tenure == 2 ? 3 : 2;
    pd_op a = set_op("household", HH[7].id, "rooms", I(rooms), I(rooms + 1), HH[7].rev);
    pd_op b =
        set_op("household", HH[7].id, "tenure", tenure < 0 ? T(NULL) : I(tenure), I(nt), HH[7].rev);
    uint8_t *ba, *bb;
    size_t la, lb;
    REQUIRE_V(tb_seal(&E1, TS_DESA, &a, 1, &ba, &la) == PD_OK);
    REQUIRE_V(tb_seal(&E1, TS_DESA, &b, 1, &bb, &lb) == PD_OK);
    pd_bundle *first, *second;
    pd_bundle_new(&first);
    pd_bundle_new(&second);
    tb_add(first, bb, lb, &S1, NULL); /* the later batch arrives first */
    tb_add(second, ba, la, &S1, NULL);
    cJSON *c = ts_sync(&S, &E1, first, NULL);
    REQUIRE_V(c);
    CHECK(!strcmp(ts_str(ts_result(c, 0), "status"), "held"));
    uint8_t rc[200];
    CHECK_EQ_INT(receipt_check(ts_str(ts_result(c, 0), "receipt"), rc), 3);
    cJSON_Delete(c);
    CHECK_EQ_INT(hh_int(HH[7].id, "tenure"), tenure); /* not applied yet */
    c = ts_sync(&S, &E1, second, NULL);
    REQUIRE_V(c);
    CHECK(!strcmp(ts_str(ts_result(c, 0), "status"), "applied"));
    cJSON_Delete(c);
    /* both applied, in order */
    CHECK_EQ_INT(hh_int(HH[7].id, "rooms"), rooms + 1);
    CHECK_EQ_INT(hh_int(HH[7].id, "tenure"), nt);
    tresp r;
    ts_request(&S, &E1, "GET", "/v1/receipts?device=dev-e1", NULL, NULL, 0, &r);
    cJSON *o = cJSON_Parse(r.body);
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(o, "receipts");
    const cJSON *last = cJSON_GetArrayItem(arr, cJSON_GetArraySize(arr) - 1);
    CHECK_EQ_INT(ts_num(last, "seq"), (double)E1.seq);
    CHECK(!strcmp(ts_str(last, "status"), "applied"));
    cJSON_Delete(o);
    tresp_free(&r);
    pd_bundle_free(first);
    pd_bundle_free(second);
    free(ba);
    free(bb);
}

static void test_fork_is_quarantined_not_applied(void)
{
    uint64_t seq = E1.seq;
    uint8_t head[32];
    memcpy(head, E1.last_hash, 32);
    int64_t pigs = hh_int(HH[0].id, "pigs");
    pd_op a = set_op("household", HH[0].id, "pigs", I(pigs), I(pigs + 1), HH[0].rev);
    cJSON *c = sync_one(&E1, &E1, TS_DESA, &a, 1, &S1, NULL);
    REQUIRE_V(c);
    CHECK(!strcmp(ts_str(ts_result(c, 0), "status"), "applied"));
    cJSON_Delete(c);
    /* another batch at the same seq, the same previous hash: a fork */
    E1.seq = seq;
    memcpy(E1.last_hash, head, 32);
    pd_op b = set_op("household", HH[0].id, "pigs", I(pigs), I(pigs + 50), HH[0].rev);
    c = sync_one(&E1, &E1, TS_DESA, &b, 1, &S1, NULL);
    REQUIRE_V(c);
    const cJSON *r0 = ts_result(c, 0);
    CHECK(!strcmp(ts_str(r0, "status"), "fork"));
    uint8_t rc[200];
    CHECK_EQ_INT(receipt_check(ts_str(r0, "receipt"), rc), 4);
    cJSON_Delete(c);
    CHECK_EQ_INT(hh_int(HH[0].id, "pigs"), pigs + 1);
    pd_server_status st;
    REQUIRE_V(pd_server_get_status(S.srv, &st) == PD_OK);
    CHECK_EQ_INT(st.forks, 1);
    e1_resync_head();
}

static void test_returned_batch_advances_the_chain_without_its_ops(void)
{
    int64_t goats = hh_int(HH[1].id, "goats");
    pd_op a = set_op("household", HH[1].id, "goats", I(goats), I(goats + 9), HH[1].rev);
    cJSON *c = sync_one(&E1, &E1, TS_DESA, &a, 1, &S1, "goats counted twice, check again");
    REQUIRE_V(c);
    const cJSON *r0 = ts_result(c, 0);
    CHECK(!strcmp(ts_str(r0, "status"), "voided"));
    uint8_t rc[200];
    CHECK_EQ_INT(receipt_check(ts_str(r0, "receipt"), rc), 2);
    cJSON_Delete(c);
    CHECK_EQ_INT(hh_int(HH[1].id, "goats"), goats);
    /* the next batch continues the chain after the voided one */
    pd_op b = set_op("household", HH[1].id, "goats", I(goats), I(goats + 1), HH[1].rev);
    c = sync_one(&E1, &E1, TS_DESA, &b, 1, &S1, NULL);
    REQUIRE_V(c);
    CHECK(!strcmp(ts_str(ts_result(c, 0), "status"), "applied"));
    cJSON_Delete(c);
    CHECK_EQ_INT(hh_int(HH[1].id, "goats"), goats + 1);
}

static void test_new_household_and_member_arrive_in_deltas(void)
{
    cJSON *before = get_delta(&E2, 0, 10000, NULL);
    REQUIRE_V(before);
    int64_t cursor = (int64_t)ts_num(before, "cursor");
    cJSON_Delete(before);
    const char *hj = "{\"rev\":0,\"source\":\"new\",\"prov\":\"32\",\"kab\":\"32.73\","
                     "\"kec\":\"32.73.01\",\"desa\":\"32.73.01.1001\",\"sls\":\"RT 001 / RW 002\","
                     "\"address\":\"Jl. Baru 1\",\"head_name\":\"Siti Aminah\",\"kk\":null,"
                     "\"member_count\":0,\"asset_flags\":0,\"lat\":null,\"lon\":null}";
    const char *mj = "{\"household_id\":\"Ndev-e1-1\",\"rev\":0,\"member_no\":1,"
                     "\"name\":\"Siti Aminah\",\"nik\":null,\"kk\":null,\"sex\":2,"
                     "\"birth_place\":null,\"birth_date\":\"1980-02-03\",\"relationship\":1,"
                     "\"marital\":2,\"disability\":0,\"chronic_illness\":0,\"schooling\":null,"
                     "\"work\":null,\"programmes\":0,\"status\":\"active\",\"outcome\":\"new\"}";
    pd_op ops[3] = {
        {.kind = "create", .entity = "household", .target = "Ndev-e1-1", .new_value = T(hj)},
        {.kind = "create",
         .entity = "member",
         .target = "Ndev-e1-101",
         .field = "joined",
         .new_value = T(mj)},
        set_op("household", "Ndev-e1-1", "member_count", I(0), I(1), 0)};
    cJSON *c = sync_one(&E1, &E1, TS_DESA, ops, 3, &S1, NULL);
    REQUIRE_V(c);
    const cJSON *r0 = ts_result(c, 0);
    CHECK(!strcmp(ts_str(r0, "status"), "applied"));
    CHECK_EQ_INT(ts_num(r0, "applied"), 3);
    cJSON_Delete(c);
    /* E2 gets them in its next delta, and only what changed */
    cJSON *d = get_delta(&E2, cursor, 10000, NULL);
    REQUIRE_V(d);
    const cJSON *h = find_row(d, "households", "Ndev-e1-1");
    CHECK(h && !strcmp(ts_str(h, "head_name"), "Siti Aminah") && ts_num(h, "member_count") == 1);
    CHECK(find_row(d, "members", "Ndev-e1-101") != NULL);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(d, "households")) < 10);
    CHECK(ts_num(d, "cursor") > (double)cursor);
    cJSON_Delete(d);
}

static void test_prelist_download_resumes_with_range(void)
{
    tresp r;
    ts_request(&S, &E1, "GET", "/v1/prelist", NULL, NULL, 0, &r);
    REQUIRE_V(r.status == 200);
    const char *cur = tresp_header(&r, "Pd-Cursor");
    CHECK(cur && atoll(cur) > 0);
    char etag[80];
    const char *et = tresp_header(&r, "ETag");
    REQUIRE_V(et);
    snprintf(etag, sizeof etag, "%s", et);
    pd_prelist_info info;
    pd_error err = {0};
    CHECK(pd_prelist_verify_mem((const uint8_t *)r.body, r.len, S.sign_pk, &info, &err) == PD_OK);
    CHECK(info.households >= 40);
    size_t full_len = r.len;
    char *full = malloc(full_len);
    memcpy(full, r.body, full_len);
    tresp_free(&r);

    /* a cut download resumes at the byte it got to */
    char range[64], ifr[120];
    snprintf(range, sizeof range, "Range: bytes=%zu-", full_len / 3);
    snprintf(ifr, sizeof ifr, "If-Range: %s", etag);
    const char *h1[] = {range, ifr, NULL};
    ts_request(&S, &E1, "GET", "/v1/prelist", h1, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 206);
    CHECK(r.len == full_len - full_len / 3 && !memcmp(r.body, full + full_len / 3, r.len));
    const char *cr = tresp_header(&r, "Content-Range");
    char want[80];
    snprintf(want, sizeof want, "bytes %zu-%zu/%zu", full_len / 3, full_len - 1, full_len);
    CHECK(cr && !strcmp(cr, want));
    tresp_free(&r);
    /* a stale validator gets the whole thing */
    const char *h2[] = {range, "If-Range: \"0000\"", NULL};
    ts_request(&S, &E1, "GET", "/v1/prelist", h2, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK_EQ_INT(r.len, full_len);
    tresp_free(&r);
    /* past the end */
    snprintf(range, sizeof range, "Range: bytes=%zu-", full_len + 10);
    const char *h3[] = {range, NULL};
    ts_request(&S, &E1, "GET", "/v1/prelist", h3, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 416);
    tresp_free(&r);
    free(full);
}

static void test_delta_pages_are_signed_for_their_request(void)
{
    /* paging: limit 7 until more is false; every household arrives once */
    int64_t since = 0;
    int pages = 0, households = 0;
    for (;;) {
        cJSON *d = get_delta(&E2, since, 7, NULL);
        REQUIRE_V(d);
        households += cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(d, "households"));
        since = (int64_t)ts_num(d, "cursor");
        bool more = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(d, "more"));
        cJSON_Delete(d);
        pages++;
        if (!more || pages > 100)
            break;
    }
    CHECK(pages > 5);
    CHECK_EQ_INT(households, 41); /* 40 from the prelist + the new one */

    /* a delta page is signed over the request's nonce, never over "-" (a recorded page must not
     * verify for another request); a Range header is ignored: the whole page again, signed for
     * that request */
    tresp full, again;
    char n1[33], n2[33];
    ts_request_ex(&S, &E2, "GET", "/v1/delta?since=0&limit=10000", NULL, NULL, 0, NULL, &full, n1);
    REQUIRE_V(full.status == 200);
    CHECK(tresp_signed(&full, S.sign_pk, n1));
    CHECK(!tresp_signed(&full, S.sign_pk, "-"));
    const char *h[] = {"Range: bytes=100-", NULL};
    ts_request_ex(&S, &E2, "GET", "/v1/delta?since=0&limit=10000", h, NULL, 0, NULL, &again, n2);
    CHECK_EQ_INT(again.status, 200);
    CHECK(again.len == full.len && !memcmp(again.body, full.body, full.len));
    CHECK(tresp_signed(&again, S.sign_pk, n2));
    CHECK(!tresp_signed(&again, S.sign_pk, n1));
    tresp_free(&full);
    tresp_free(&again);
}

/* JSON answers travel gzip'd when the request accepts it (the signature stays over the JSON
 * text), and as they are when it does not. */
static void test_json_answers_are_gzipped_when_accepted(void)
{
    tresp plain, gz;
    const char *accept[] = {"Accept-Encoding: gzip", NULL};
    ts_request(&S, &S1, "GET", "/v1/delta?since=0", NULL, NULL, 0, &plain);
    ts_request(&S, &S1, "GET", "/v1/delta?since=0", accept, NULL, 0, &gz);
    CHECK_EQ_INT(plain.status, 200);
    CHECK_EQ_INT(gz.status, 200);
    CHECK(tresp_header(&plain, "Content-Encoding") == NULL);
    const char *ce = tresp_header(&gz, "Content-Encoding");
    CHECK(ce && !strcmp(ce, "gzip"));
    REQUIRE_V(plain.len > 1024 && gz.len > 2);
    CHECK((uint8_t)gz.body[0] == 0x1f && (uint8_t)gz.body[1] == 0x8b);
    CHECK(gz.len * 3 < plain.len); /* JSON shrinks several times */
    /* decoded, it is a signed delta like the plain one (this request's own nonce) */
    uint8_t *text = NULL;
    size_t tlen = 0;
    REQUIRE_V(pd_gunzip_test((const uint8_t *)gz.body, gz.len, &text, &tlen));
    CHECK(tlen > 1024 && text[0] == '{');
    CHECK(tresp_header(&gz, "Pd-Server-Signature") != NULL);
    free(text);
    tresp_free(&plain);
    tresp_free(&gz);
}

/* Odd and hostile Accept-Encoding values: gzip only where it is listed with a weight above 0,
 * the plain answer otherwise; never an error, and the answer is the same delta either way. */
static void test_odd_accept_encodings(void)
{
    static const struct {
        const char *header;
        bool gzip;
    } cases[] = {
        {"Accept-Encoding: GZIP", true},
        {"Accept-Encoding: deflate, gzip;q=0.5", true},
        {"Accept-Encoding: x-gzip", true},
        {"Accept-Encoding: br ; q=1, gzip ; q=0.001", true},
        {"Accept-Encoding: gzip;q=0", false},
        {"Accept-Encoding: gzip;q=0.0", false},
        {"Accept-Encoding: gzip; q=0.000", false},
        {"Accept-Encoding: gzip;q=-1", false},
        {"Accept-Encoding: gzip;q=nan", false},
        {"Accept-Encoding: gzip;q=", false},
        {"Accept-Encoding: gzip;level=9", false},
        {"Accept-Encoding: gzipped, xgzip, gzip2", false},
        {"Accept-Encoding: identity;q=0, *", false},
        {"Accept-Encoding: ;;;,,,;q=1;", false},
        {"Accept-Encoding: br", false},
        {"Accept-Encoding:", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *hdr[] = {cases[i].header, NULL};
        tresp r;
        ts_request(&S, &S1, "GET", "/v1/delta?since=0", hdr, NULL, 0, &r);
        CHECK_EQ_INT(r.status, 200);
        const char *ce = tresp_header(&r, "Content-Encoding");
        if (cases[i].gzip) {
            CHECK(ce && !strcmp(ce, "gzip"));
            CHECK(r.len > 2 && (uint8_t)r.body[0] == 0x1f && (uint8_t)r.body[1] == 0x8b);
        } else {
            CHECK(ce == NULL);
            CHECK(r.len > 1024 && r.body[0] == '{');
        }
        if (ce && strcmp(ce, "gzip"))
            fprintf(stderr, "case %zu: Content-Encoding %s\n", i, ce);
        tresp_free(&r);
    }
}

/* A bundle complete on disk whose processing was cut off (state 'complete') is processed by its
 * commit: the commit's read-only path hands it to the writer. Sent in two PATCHes (the file
 * path), then put back to 'complete' through the storage interface, as a crash would leave it. */
static void test_commit_processes_a_bundle_left_unprocessed(void)
{
    int64_t roof = hh_int(HH[7].id, "roof_material");
    int64_t nr = roof == 2 ? 3 : 2;
    pd_op op = set_op("household", HH[7].id, "roof_material", I(roof), I(nr), HH[7].rev);
    uint8_t *batch = NULL;
    size_t len, blen;
    REQUIRE_V(tb_seal(&E1, TS_DESA, &op, 1, &batch, &len) == PD_OK);
    pd_bundle *b;
    pd_bundle_new(&b);
    REQUIRE_V(tb_add(b, batch, len, &S1, NULL) == PD_OK);
    const uint8_t *bytes = pd_bundle_bytes(b, &blen);
    char hl[64], md[64], id[33] = "", path[80], off[64];
    snprintf(hl, sizeof hl, "Upload-Length: %zu", blen);
    snprintf(md, sizeof md, "Upload-Metadata: kind YnVuZGxl"); /* base64("bundle") */
    const char *create[] = {"Tus-Resumable: 1.0.0", hl, md, NULL};
    tresp r;
    ts_request(&S, &E1, "POST", "/v1/uploads", create, NULL, 0, &r);
    const char *loc = tresp_header(&r, "Location");
    if (loc && strlen(loc) == 44)
        snprintf(id, sizeof id, "%s", loc + 12);
    tresp_free(&r);
    REQUIRE_V(id[0]);
    snprintf(path, sizeof path, "/v1/uploads/%s", id);
    size_t half = blen / 2;
    for (int k = 0; k < 2; k++) {
        snprintf(off, sizeof off, "Upload-Offset: %zu", k ? half : (size_t)0);
        const char *ph[] = {"Tus-Resumable: 1.0.0", off,
                            "Content-Type: application/offset+octet-stream", NULL};
        ts_request(&S, &E1, "PATCH", path, ph, bytes + (k ? half : 0), k ? blen - half : half, &r);
        CHECK_EQ_INT(r.status, 204);
        tresp_free(&r);
    }
    CHECK_EQ_INT(hh_int(HH[7].id, "roof_material"), nr);
    /* as if the server had died between the last byte and the end of processing */
    pd_storage *st = NULL;
    pd_error err = {0};
    REQUIRE_V(pd_storage_open(&st, S.url, &err) == PD_OK);
    CHECK_EQ_INT(st->ops->upload_update(st, id, (int64_t)blen, INT64_MAX / 2, "complete"), PD_OK);
    pd_storage_close(st);
    char body[80];
    snprintf(body, sizeof body, "{\"upload\":\"%s\"}", id);
    ts_request(&S, &E1, "POST", "/v1/batches/commit", NULL, body, strlen(body), &r);
    CHECK_EQ_INT(r.status, 200);
    cJSON *c = r.status == 200 ? cJSON_Parse(r.body) : NULL;
    const cJSON *r0 = c ? ts_result(c, 0) : NULL;
    CHECK(r0 && !strcmp(ts_str(r0, "status"), "applied"));
    CHECK(r0 && ts_str(r0, "receipt")[0]);
    cJSON_Delete(c);
    tresp_free(&r);
    /* processed now: the commit again only reads */
    ts_request(&S, &E1, "POST", "/v1/batches/commit", NULL, body, strlen(body), &r);
    CHECK_EQ_INT(r.status, 200);
    tresp_free(&r);
    CHECK_EQ_INT(hh_int(HH[7].id, "roof_material"), nr);
    pd_bundle_free(b);
    free(batch);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    REQUIRE(sodium_init() >= 0);
    REQUIRE(ts_start(&S, "server-sync", false));
    tdev_init(&E1, "dev-e1");
    tdev_init(&E2, "dev-e2");
    tdev_init(&E3, "dev-e3");
    tdev_init(&S1, "dev-s1");
    REQUIRE(ts_enroll(&S, &E1, "E1") == 200);
    REQUIRE(ts_enroll(&S, &E2, "E2") == 200);
    REQUIRE(ts_enroll(&S, &E3, "E3") == 200);
    REQUIRE(ts_enroll(&S, &S1, "S1") == 200);
    REQUIRE(load_households());
    RUN(test_batch_applied_once_and_again_gets_the_same_receipt);
    RUN(test_bundle_in_the_creation_post_answers_with_its_receipt);
    RUN(test_batches_outside_rights_are_refused_and_change_nothing);
    RUN(test_two_devices_different_fields_both_kept);
    RUN(test_same_field_changed_twice_makes_a_conflict_row);
    RUN(test_duplicate_nik_is_queued);
    RUN(test_double_visit_is_queued);
    RUN(test_gap_is_held_until_it_closes);
    RUN(test_fork_is_quarantined_not_applied);
    RUN(test_returned_batch_advances_the_chain_without_its_ops);
    RUN(test_new_household_and_member_arrive_in_deltas);
    RUN(test_prelist_download_resumes_with_range);
    RUN(test_delta_pages_are_signed_for_their_request);
    RUN(test_commit_processes_a_bundle_left_unprocessed);
    RUN(test_json_answers_are_gzipped_when_accepted);
    RUN(test_odd_accept_encodings);
    ts_stop(&S);
    curl_global_cleanup();
    return pd_test_finish();
}

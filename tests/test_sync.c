/*
 * test_sync.c — the sync client against the real `pendata-server` (a child process on port 0),
 * over real HTTP on loopback through libcurl: enrolment and what it pins, the field flow
 * enrol → pull → visit → seal → approve → sync → receipt with its request count, refusals that
 * store nothing, the pinned key, a recorded delta answer replayed (refused: it is signed for
 * another nonce), clock skew, local changes kept over a delta, held batches asked
 * about later, voided batches, photos the server already holds, an upload refused for good that
 * does not stop the pull, an enrolment whose answer was
 * lost (the retry with the same code is answered again; another device is still refused).
 */
#include "keys.h"
#include "test_sync_harness.h"
#include "testutil.h"

#include <dirent.h>
#include <math.h>

static char *dir;
static th_server srv;
static pd_store *enu, *sup, *enu2;

static void test_enrol_pins_the_server_and_stores_the_assignment(void)
{
    enu = th_device(dir, "enu", "enumerator");
    sup = th_device(dir, "sup", "supervisor");
    REQUIRE_VOID(enu && sup);
    CHECK_EQ_INT(th_enrol(enu, &srv, srv.port, "E0001"), PD_OK);
    CHECK_EQ_INT(th_enrol(sup, &srv, srv.port, "S0001"), PD_OK);
    uint8_t pk[PD_PUBKEY_BYTES];
    CHECK_EQ_INT(pd_client_setting_blob(enu, "server_sign_pk", pk, sizeof pk), PD_OK);
    char fp[PD_SYNC_FINGERPRINT_LEN + 1];
    pd_sync_fingerprint(pk, fp);
    CHECK(!strcmp(fp, srv.fingerprint));
    CHECK_EQ_INT(th_count(enu, "SELECT count(*) FROM assignment WHERE desa = '" TH_AREA "'"), 1);
    CHECK_EQ_INT(th_count(enu, "SELECT count(*) FROM keyring WHERE role = 'server'"), 1);
    /* the supervisor enrolled second: its keyring holds the enumerator with its supervisor */
    CHECK_EQ_INT(th_count(sup, "SELECT count(*) FROM keyring WHERE role = 'enumerator' AND "
                               "supervisor_pk IS NOT NULL"),
                 1);
    /* the data key is sealed to the recovery key: store.key changed after enrolment */
    CHECK(th_count(enu, "SELECT count(*) FROM identity WHERE role = 'enumerator' AND "
                        "person_id = 'E0001'") == 1);
}

static void test_enrol_again_is_refused(void)
{
    char code[PD_ENROLL_CODE_LEN + 1], url[64];
    REQUIRE_VOID(th_code(&srv, "E0001", code) == PD_OK);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", srv.port);
    pd_sync_options o = th_options();
    CHECK_EQ_INT(pd_sync_enroll(enu, url, code, srv.fingerprint, NULL, &o, NULL), PD_ERR_EXISTS);
}

static void test_enrol_with_a_wrong_fingerprint_stores_nothing(void)
{
    pd_store *d = th_device(dir, "fp", "enumerator");
    REQUIRE_VOID(d);
    char code[PD_ENROLL_CODE_LEN + 1], url[64];
    REQUIRE_VOID(th_code(&srv, "E0002", code) == PD_OK);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", srv.port);
    pd_sync_options o = th_options();
    CHECK_EQ_INT(
        pd_sync_enroll(d, url, code, "0000-1111-2222-3333-4444-5555-6666-7777", NULL, &o, NULL),
        PD_ERR_SIGNATURE);
    CHECK(strstr(pd_store_errmsg(d), "fingerprint") != NULL);
    CHECK_EQ_INT(th_count(d, "SELECT count(*) FROM settings WHERE key LIKE 'server%'"), 0);
    CHECK_EQ_INT(th_count(d, "SELECT count(*) FROM keyring"), 0);
    CHECK_EQ_INT(th_count(d, "SELECT count(*) FROM assignment"), 0);
    /* a malformed code never leaves the device; an unknown one is refused by the server */
    CHECK_EQ_INT(pd_sync_enroll(d, url, "not-a-code", NULL, NULL, &o, NULL), PD_ERR_INVALID);
    CHECK_EQ_INT(pd_sync_enroll(d, url, "AAAA-BBBB-CCCC", srv.fingerprint, NULL, &o, NULL),
                 PD_ERR_DENIED);
    CHECK(strstr(pd_store_errmsg(d), "code_unknown") != NULL);
    CHECK_EQ_INT(th_count(d, "SELECT count(*) FROM settings WHERE key LIKE 'server%'"), 0);
    /* nothing listens here */
    CHECK_EQ_INT(pd_sync_enroll(d, "http://127.0.0.1:1", code, NULL, NULL, &o, NULL),
                 PD_ERR_NETWORK);
    pd_store_close(d);
}

static void test_first_sync_pulls_the_prelist_then_nothing_to_do_costs_one_request(void)
{
    pd_sync_options o = th_options();
    pd_sync_stats st;
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    CHECK(st.prelist_imported);
    CHECK(st.records_pulled > 100);
    CHECK_EQ_INT(st.requests, 2); /* prelist + delta */
    CHECK_EQ_INT(th_count(enu, "SELECT count(*) FROM household"), 40);
    char *part = pd_test_path(pd_store_home(enu), "prelist.part");
    CHECK(!pd_test_file_exists(part));
    free(part);
    CHECK_EQ_INT(th_count(enu, "SELECT count(*) FROM prelist_part"), 0); /* imported, deleted */
    CHECK_EQ_INT(pd_sync_run(sup, &o, &st), PD_OK);
    /* the enumerator learns its supervisor's key from a delta (the supervisor enrolled later) */
    pd_keyring_entry me;
    uint8_t pk[PD_PUBKEY_BYTES];
    REQUIRE_VOID(pd_keyring_self(enu, "enumerator", pk) == PD_OK);
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    CHECK_EQ_INT(st.requests, 1);
    CHECK(!st.prelist_imported);
    CHECK_EQ_INT(pd_keyring_get(enu, pk, &me), PD_OK);
    CHECK(me.has_supervisor);
}

static void test_visit_seal_approve_sync_gives_a_receipt_in_one_upload_request(void)
{
    int seq = th_field_work(enu, 0, 5, 0, 0);
    REQUIRE_VOID(seq == 1);
    REQUIRE_VOID(th_review(enu, sup, 1, NULL) == PD_OK);
    char state[16];
    th_batch_state(enu, 1, state);
    CHECK(!strcmp(state, "approved"));
    long mark = th_log_size(&srv);
    pd_sync_options o = th_options();
    pd_sync_stats st;
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    CHECK_EQ_INT(st.batches_uploaded, 1);
    CHECK_EQ_INT(st.batches_acknowledged, 1);
    th_batch_state(enu, 1, state);
    CHECK(!strcmp(state, "acknowledged"));
    th_log log;
    th_log_read(&srv, mark, &log);
    /* the bundle rides in the creation POST, whose answer carries the receipts: no PATCH, no
     * commit (PROTOCOL.md §5) */
    CHECK_EQ_INT(log.posts, 1);
    CHECK_EQ_INT(log.patch_ok + log.patch_other + log.commits, 0);
    CHECK_EQ_INT(log.deltas, 1);
    CHECK_EQ_INT(st.requests, 2);
    /* the stored receipt verifies with the pinned key and names the batch */
    sqlite3_stmt *q = NULL;
    uint8_t pk[PD_PUBKEY_BYTES];
    REQUIRE_VOID(pd_client_setting_blob(enu, "server_sign_pk", pk, sizeof pk) == PD_OK);
    REQUIRE_VOID(sqlite3_prepare_v2(pd_store_sqlite(enu),
                                    "SELECT receipt, hash FROM batch WHERE seq = 1", -1, &q,
                                    NULL) == SQLITE_OK);
    REQUIRE_VOID(sqlite3_step(q) == SQLITE_ROW);
    pd_receipt r;
    pd_error e = {0};
    CHECK_EQ_INT(
        pd_receipt_parse(&r, sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0), pk, &e),
        PD_OK);
    CHECK_EQ_INT(r.status, 1);
    CHECK(!memcmp(r.batch_hash, sqlite3_column_blob(q, 1), PD_HASH_BYTES));
    CHECK_EQ_INT(r.seq, 1);
    CHECK(r.applied + r.merged + r.conflicted >= 10);
    /* a receipt with one bit changed does not verify */
    uint8_t bad[PD_RECEIPT_BYTES_V1];
    memcpy(bad, sqlite3_column_blob(q, 0), sizeof bad);
    bad[80] ^= 1;
    CHECK_EQ_INT(pd_receipt_parse(&r, bad, sizeof bad, pk, &e), PD_ERR_SIGNATURE);
    sqlite3_finalize(q);
    /* and nothing left: one request (the delta) */
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    CHECK_EQ_INT(st.requests, 1);
    CHECK_EQ_INT(st.batches_uploaded, 0);
}

/* A bundle bigger than a chunk: the creation POST carries its first chunk (no more than a PATCH
 * would lose to a cut), PATCH the rest, then commit for the receipts. */
static void test_a_bundle_bigger_than_a_chunk_goes_post_then_patch_then_commit(void)
{
    int seq = th_field_work(enu, 20, 6, 0, 0);
    REQUIRE_VOID(seq > 0);
    REQUIRE_VOID(th_review(enu, sup, (uint64_t)seq, NULL) == PD_OK);
    long mark = th_log_size(&srv);
    pd_sync_options o = th_options();
    o.chunk_bytes = 512;
    pd_sync_stats st;
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    CHECK_EQ_INT(st.batches_acknowledged, 1);
    char state[16];
    th_batch_state(enu, (uint64_t)seq, state);
    CHECK(!strcmp(state, "acknowledged"));
    th_log log;
    th_log_read(&srv, mark, &log);
    CHECK_EQ_INT(log.posts, 1);
    CHECK(log.patch_ok >= 1);
    CHECK_EQ_INT(log.patch_other, 0);
    CHECK_EQ_INT(log.commits, 1);
    CHECK(st.upload_length > 512);
    CHECK_EQ_INT(log.patch_in, st.upload_length); /* each byte taken once */
    CHECK_EQ_INT(st.upload_body_bytes, st.upload_length);
}

static void test_an_answer_not_signed_by_the_pinned_key_is_refused(void)
{
    uint8_t real[PD_PUBKEY_BYTES], fake[PD_PUBKEY_BYTES], sk[PD_SECKEY_BYTES];
    REQUIRE_VOID(pd_client_setting_blob(enu, "server_sign_pk", real, sizeof real) == PD_OK);
    crypto_sign_keypair(fake, sk);
    sqlite3_stmt *st = NULL;
    const char *sql = "UPDATE settings SET value = ?1 WHERE key = 'server_sign_pk'";
    REQUIRE_VOID(sqlite3_prepare_v2(pd_store_sqlite(enu), sql, -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_blob(st, 1, fake, sizeof fake, SQLITE_STATIC);
    CHECK(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
    long long cursor = th_count(enu, "SELECT value FROM sync_state WHERE key = 'cursor'");
    pd_sync_options o = th_options();
    pd_sync_stats s;
    CHECK_EQ_INT(pd_sync_run(enu, &o, &s), PD_ERR_SIGNATURE);
    CHECK(strstr(pd_store_errmsg(enu), "pinned") != NULL);
    CHECK_EQ_INT(th_count(enu, "SELECT value FROM sync_state WHERE key = 'cursor'"), cursor);
    REQUIRE_VOID(sqlite3_prepare_v2(pd_store_sqlite(enu), sql, -1, &st, NULL) == SQLITE_OK);
    sqlite3_bind_blob(st, 1, real, sizeof real, SQLITE_STATIC);
    CHECK(sqlite3_step(st) == SQLITE_DONE);
    sqlite3_finalize(st);
}

/* A one-shot HTTP server on loopback that answers the first request with recorded bytes. */
typedef struct replayer {
    int fd, port;
    char *answer;
    size_t answer_len;
    char request_line[256];
    pthread_t thread;
} replayer;

static void *replay_main(void *arg)
{
    replayer *rp = arg;
    int c = accept(rp->fd, NULL, NULL);
    if (c < 0)
        return NULL;
    char buf[8192];
    size_t n = 0;
    while (n + 1 < sizeof buf) {
        ssize_t k = read(c, buf + n, sizeof buf - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
        buf[n] = '\0';
        if (strstr(buf, "\r\n\r\n"))
            break;
    }
    buf[n] = '\0';
    size_t line = strcspn(buf, "\r\n");
    snprintf(rp->request_line, sizeof rp->request_line, "%.*s", (int)line, buf);
    for (size_t off = 0; off < rp->answer_len;) {
        ssize_t w = write(c, rp->answer + off, rp->answer_len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    close(c);
    return NULL;
}

static void test_a_recorded_delta_answer_replayed_is_refused(void)
{
    /* record a genuine, signed delta answer for this device's cursor */
    int64_t cursor = 0;
    REQUIRE_VOID(pd_sync_state_get_int(enu, "cursor", &cursor) == PD_OK);
    uint8_t pin[PD_PUBKEY_BYTES], dpk[PD_PUBKEY_BYTES];
    uint8_t *sk = sodium_malloc(PD_SECKEY_BYTES);
    REQUIRE_VOID(sk);
    REQUIRE_VOID(pd_client_setting_blob(enu, "server_sign_pk", pin, sizeof pin) == PD_OK);
    REQUIRE_VOID(pd_keys_identity(enu, "device", dpk, sk) == PD_OK);
    char base[64], url[PD_HTTP_URL_MAX], path[96];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", srv.port);
    snprintf(path, sizeof path, "/v1/delta?since=%lld", (long long)cursor);
    pd_sync_options o = th_options();
    pd_http h;
    pd_error e = {0};
    REQUIRE_VOID(pd_http_init(&h, base, &o, &e) == PD_OK);
    pd_http_pin(&h, pin);
    REQUIRE_VOID(pd_http_set_device(&h, pd_store_device_id(enu), sk) == PD_OK);
    pd_http_url(&h, path, url);
    pd_http_req req = {.method = "GET", .url = url, .sign = true};
    pd_http_resp r;
    CHECK_EQ_INT(pd_http_once(&h, &req, &r), PD_OK); /* genuine: it checks for its own nonce */
    CHECK_EQ_INT(r.status, 200);
    pd_http_close(&h);

    /* the same bytes, served to the client's next pull */
    replayer rp = {.fd = socket(AF_INET, SOCK_STREAM, 0)};
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof a;
    REQUIRE_VOID(rp.fd >= 0 && bind(rp.fd, (struct sockaddr *)&a, sizeof a) == 0 &&
                 listen(rp.fd, 4) == 0 && getsockname(rp.fd, (struct sockaddr *)&a, &alen) == 0);
    rp.port = ntohs(a.sin_port);
    size_t cap = r.body_len + 1024;
    rp.answer = malloc(cap);
    REQUIRE_VOID(rp.answer);
    int hn = snprintf(rp.answer, cap,
                      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nPd-Server-Signature: "
                      "%s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                      r.sig, r.body_len);
    memcpy(rp.answer + hn, r.body, r.body_len);
    rp.answer_len = (size_t)hn + r.body_len;
    pd_http_resp_free(&r);
    REQUIRE_VOID(pthread_create(&rp.thread, NULL, replay_main, &rp) == 0);

    snprintf(base, sizeof base, "http://127.0.0.1:%d", rp.port);
    o.max_attempts = 1;
    REQUIRE_VOID(pd_http_init(&h, base, &o, &e) == PD_OK);
    pd_http_pin(&h, pin);
    REQUIRE_VOID(pd_http_set_device(&h, pd_store_device_id(enu), sk) == PD_OK);
    pd_sync_stats st;
    memset(&st, 0, sizeof st);
    CHECK_EQ_INT(pd_client_pull(enu, &h, &st), PD_ERR_SIGNATURE);
    CHECK(strstr(h.err.msg, "not signed by the pinned server") != NULL);
    pd_http_close(&h);
    pthread_join(rp.thread, NULL);
    close(rp.fd);
    free(rp.answer);
    sodium_free(sk);
    CHECK(strncmp(rp.request_line, "GET /v1/delta?since=", 20) == 0);
    CHECK_EQ_INT(th_count(enu, "SELECT value FROM sync_state WHERE key = 'cursor'"), cursor);
}

static void test_a_device_clock_an_hour_off_is_corrected_by_stale_time(void)
{
    REQUIRE_VOID(pd_sync_state_set_int(enu, "clock_skew_ms", -3600 * 1000LL) == PD_OK);
    pd_sync_options o = th_options();
    pd_sync_stats st;
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    CHECK_EQ_INT(st.requests, 2); /* refused once as stale, then right */
    int64_t skew = 0;
    CHECK_EQ_INT(pd_sync_state_get_int(enu, "clock_skew_ms", &skew), PD_OK);
    CHECK(skew > -60000 && skew < 60000);
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    CHECK_EQ_INT(st.requests, 1);
}

static void test_a_local_unsent_change_is_kept_over_the_servers_value(void)
{
    /* E0002 corrects household 21's roof and it reaches the server; E0001 changed the same
     * field meanwhile and has not sealed it yet. */
    enu2 = th_device(dir, "enu2", "enumerator");
    REQUIRE_VOID(enu2);
    REQUIRE_VOID(th_enrol(enu2, &srv, srv.port, "E0002") == PD_OK);
    pd_sync_options o = th_options();
    pd_sync_stats st;
    REQUIRE_VOID(pd_sync_run(enu2, &o, &st) == PD_OK);
    REQUIRE_VOID(pd_sync_run(sup, &o, &st) == PD_OK); /* the supervisor learns E0002's key */
    const char *hh = "3273011001000021";
    long long now = th_count(enu, "SELECT roof_material FROM household WHERE id = "
                                  "'3273011001000021'");
    /* two values, each different from the current one and from each other */
    int64_t x = now == 7 ? 8 : 7, y = now == 4 ? 5 : 4;
    pd_value v2 = {.type = PD_VAL_INT, .i = x}, v1 = {.type = PD_VAL_INT, .i = y};
    REQUIRE_VOID(pd_household_set(enu2, hh, "roof_material", &v2, NULL) == PD_OK);
    pd_seal_result sr;
    REQUIRE_VOID(pd_batch_seal(enu2, &sr) == PD_OK);
    REQUIRE_VOID(th_review(enu2, sup, sr.seq, NULL) == PD_OK);
    REQUIRE_VOID(pd_sync_run(enu2, &o, &st) == PD_OK);
    CHECK_EQ_INT(st.batches_acknowledged, 1);

    REQUIRE_VOID(pd_household_set(enu, hh, "roof_material", &v1, NULL) == PD_OK);
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    CHECK(st.fields_kept >= 1);
    CHECK_EQ_INT(th_count(enu, "SELECT roof_material FROM household WHERE id = "
                               "'3273011001000021'"),
                 y);
    CHECK_EQ_INT(th_count(enu, "SELECT server_value FROM server_diff WHERE target = "
                               "'3273011001000021' AND field = 'roof_material'"),
                 x);
    /* a field without a local change does take the server's value (the rev rose) */
    CHECK(th_count(enu, "SELECT rev FROM household WHERE id = '3273011001000021'") > 1);
    /* once the local change is acknowledged the difference is settled */
    REQUIRE_VOID(pd_batch_seal(enu, &sr) == PD_OK);
    REQUIRE_VOID(th_review(enu, sup, sr.seq, NULL) == PD_OK);
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    CHECK_EQ_INT(st.batches_acknowledged, 1);
    CHECK_EQ_INT(th_count(enu, "SELECT count(*) FROM server_diff"), 0);
}

static void test_a_batch_held_for_a_missing_one_is_asked_about_later(void)
{
    int a = th_field_work(enu, 10, 1, 0, 0);
    int b = th_field_work(enu, 11, 1, 0, 0);
    REQUIRE_VOID(a > 0 && b == a + 1);
    /* only the second is approved: the server holds it until the first arrives */
    uint8_t *file = NULL, *back = NULL;
    size_t len = 0, blen = 0;
    pd_import_result ir;
    REQUIRE_VOID(pd_outbox_export(enu, (uint64_t)a, &file, &len) == PD_OK);
    REQUIRE_VOID(pd_review_import(sup, file, len, &ir) == PD_OK);
    free(file);
    REQUIRE_VOID(th_review(enu, sup, (uint64_t)b, NULL) == PD_OK);
    pd_sync_options o = th_options();
    pd_sync_stats st;
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    CHECK_EQ_INT(st.batches_held, 1);
    char state[16];
    th_batch_state(enu, (uint64_t)b, state);
    CHECK(!strcmp(state, "uploaded"));
    /* now the first is approved too */
    th_first f = {0, 0, 0};
    REQUIRE_VOID(pd_review_list(sup, false, th_first_queued, &f) == PD_OK && f.n == 1);
    REQUIRE_VOID(pd_review_approve(sup, f.id) == PD_OK);
    REQUIRE_VOID(pd_review_export(sup, f.id, &back, &blen) == PD_OK);
    REQUIRE_VOID(pd_outbox_import(enu, back, blen, &ir) == PD_OK);
    free(back);
    long mark = th_log_size(&srv);
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    th_batch_state(enu, (uint64_t)a, state);
    CHECK(!strcmp(state, "acknowledged"));
    th_batch_state(enu, (uint64_t)b, state);
    CHECK(!strcmp(state, "acknowledged") || !strcmp(state, "uploaded"));
    if (strcmp(state, "acknowledged") != 0) {
        CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
        th_batch_state(enu, (uint64_t)b, state);
        CHECK(!strcmp(state, "acknowledged"));
    }
    th_log log;
    th_log_read(&srv, mark, &log);
    CHECK(log.receipts >= 1); /* the held one was asked about */
}

static void test_a_returned_batch_travels_voided_and_is_acknowledged(void)
{
    int seq = th_field_work(enu, 12, 1, 0, 0);
    REQUIRE_VOID(seq > 0);
    REQUIRE_VOID(th_review(enu, sup, (uint64_t)seq, "foto rumah kurang jelas") == PD_OK);
    char state[16];
    th_batch_state(enu, (uint64_t)seq, state);
    CHECK(!strcmp(state, "voided"));
    pd_sync_options o = th_options();
    pd_sync_stats st;
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    CHECK_EQ_INT(st.batches_acknowledged, 1);
    th_batch_state(enu, (uint64_t)seq, state);
    CHECK(!strcmp(state, "acknowledged"));
    pd_receipt r;
    pd_error e = {0};
    uint8_t pk[PD_PUBKEY_BYTES];
    pd_client_setting_blob(enu, "server_sign_pk", pk, sizeof pk);
    sqlite3_stmt *q = NULL;
    sqlite3_prepare_v2(pd_store_sqlite(enu), "SELECT receipt FROM batch WHERE seq = ?1", -1, &q,
                       NULL);
    sqlite3_bind_int64(q, 1, seq);
    REQUIRE_VOID(sqlite3_step(q) == SQLITE_ROW);
    CHECK_EQ_INT(
        pd_receipt_parse(&r, sqlite3_column_blob(q, 0), (size_t)sqlite3_column_bytes(q, 0), pk, &e),
        PD_OK);
    CHECK_EQ_INT(r.status, 2);
    sqlite3_finalize(q);
}

/* Files in the server's content-addressed photo store (<data>/blobs/xx/<hash>). */
static int blob_files(void)
{
    char top[700];
    snprintf(top, sizeof top, "%s/blobs", srv.data);
    DIR *d = opendir(top);
    int n = 0;
    for (const struct dirent *e; d && (e = readdir(d));) {
        char sub[1000];
        snprintf(sub, sizeof sub, "%s/%s", top, e->d_name);
        if (e->d_name[0] != '.')
            n += pd_test_dir_entries(sub);
    }
    if (d)
        closedir(d);
    return n;
}

/* Photos ride in their creation POSTs (one round trip each); a photo the server holds already is
 * not stored twice: its bytes go once and are dropped (client.c says why that is the trade). */
static void test_photos_go_up_once_and_a_known_one_is_stored_once(void)
{
    int seq = th_field_work(enu, 13, 1, 2, 20000);
    REQUIRE_VOID(seq > 0);
    REQUIRE_VOID(th_review(enu, sup, (uint64_t)seq, NULL) == PD_OK);
    pd_sync_options o = th_options();
    pd_sync_stats st;
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    CHECK_EQ_INT(st.photos_uploaded, 2);
    CHECK_EQ_INT(st.batches_acknowledged, 1);
    CHECK_EQ_INT(th_count(enu, "SELECT count(*) FROM photo WHERE uploaded = 0"), 0);
    int blobs = blob_files();
    CHECK(blobs >= 2);
    /* the second enumerator attaches the very same bytes: the server has them already */
    const char *hh = "3273011001000030";
    char vid[PD_ID_MAX];
    pd_gps fix = {.lat = -6.9,
                  .lon = 107.6,
                  .accuracy = 5,
                  .altitude = NAN,
                  .fix_time = pd_sync_now_ms() - 1000,
                  .provider = "gps"};
    pd_visit_in v = {.household_id = hh, .outcome = "found", .gps = &fix};
    REQUIRE_VOID(pd_visit_record(enu2, &v, vid, NULL) == PD_OK);
    size_t len;
    uint8_t *jpeg = th_jpeg(20000, 13 * 100 + 1, &len);
    REQUIRE_VOID(jpeg && pd_photo_add(enu2, hh, vid, "front", jpeg, len, 0, NULL) == PD_OK);
    free(jpeg);
    pd_seal_result sr;
    REQUIRE_VOID(pd_batch_seal(enu2, &sr) == PD_OK);
    REQUIRE_VOID(th_review(enu2, sup, sr.seq, NULL) == PD_OK);
    CHECK_EQ_INT(pd_sync_run(enu2, &o, &st), PD_OK);
    CHECK_EQ_INT(st.photos_skipped, 1);
    CHECK_EQ_INT(st.photos_uploaded, 0);
    /* sent once, in the creation POST, with the bundle: not twice */
    CHECK(st.upload_body_bytes >= 20000 && st.upload_body_bytes < 2 * 20000);
    CHECK_EQ_INT(blob_files(), blobs);
    CHECK_EQ_INT(th_count(enu2, "SELECT count(*) FROM photo WHERE uploaded = 0"), 0);
}

static void test_the_supervisor_uploads_and_the_enumerator_learns_its_receipt(void)
{
    int seq = th_field_work(enu, 14, 1, 0, 0);
    REQUIRE_VOID(seq > 0);
    uint8_t *file = NULL;
    size_t len = 0;
    pd_import_result ir;
    REQUIRE_VOID(pd_outbox_export(enu, (uint64_t)seq, &file, &len) == PD_OK);
    REQUIRE_VOID(pd_review_import(sup, file, len, &ir) == PD_OK);
    free(file);
    th_first f = {0, 0, 0};
    REQUIRE_VOID(pd_review_list(sup, false, th_first_queued, &f) == PD_OK && f.n == 1);
    REQUIRE_VOID(pd_review_approve(sup, f.id) == PD_OK);
    pd_sync_options o = th_options();
    pd_sync_stats st;
    CHECK_EQ_INT(pd_sync_run(sup, &o, &st), PD_OK);
    /* this one, and the supervisor's copies of batches the enumerators sent themselves (the
     * server answers those with the receipts it already gave) */
    CHECK(st.batches_acknowledged >= 1);
    CHECK_EQ_INT(th_count(sup, "SELECT count(*) FROM batch WHERE state <> 'acknowledged'"), 0);
    /* the enumerator never saw the approval: its batch is still 'sealed'; a sync asks */
    char state[16];
    th_batch_state(enu, (uint64_t)seq, state);
    CHECK(!strcmp(state, "sealed"));
    CHECK_EQ_INT(pd_sync_run(enu, &o, &st), PD_OK);
    th_batch_state(enu, (uint64_t)seq, state);
    CHECK(!strcmp(state, "acknowledged"));
}

static void test_an_upload_refused_for_good_still_pulls(void)
{
    /* E0002 corrects household 31 and it reaches the server */
    const char *hh = "3273011001000031";
    long long now = th_count(enu, "SELECT roof_material FROM household WHERE id = "
                                  "'3273011001000031'");
    pd_value v = {.type = PD_VAL_INT, .i = now == 3 ? 4 : 3};
    pd_sync_options o = th_options();
    pd_sync_stats st;
    REQUIRE_VOID(pd_household_set(enu2, hh, "roof_material", &v, NULL) == PD_OK);
    pd_seal_result sr;
    REQUIRE_VOID(pd_batch_seal(enu2, &sr) == PD_OK);
    REQUIRE_VOID(th_review(enu2, sup, sr.seq, NULL) == PD_OK);
    REQUIRE_VOID(pd_sync_run(enu2, &o, &st) == PD_OK);
    long long cursor = th_count(enu, "SELECT value FROM sync_state WHERE key = 'cursor'");
    /* E0001's next batch names a photo whose bytes no longer match its hash: refused for good */
    int seq = th_field_work(enu, 32, 1, 1, 20000);
    REQUIRE_VOID(seq > 0);
    REQUIRE_VOID(th_review(enu, sup, (uint64_t)seq, NULL) == PD_OK);
    sqlite3_stmt *q = NULL;
    REQUIRE_VOID(sqlite3_prepare_v2(pd_store_sqlite(enu),
                                    "UPDATE photo SET bytes = zeroblob(size) WHERE uploaded = 0",
                                    -1, &q, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(q) == SQLITE_DONE);
    sqlite3_finalize(q);
    int rc = pd_sync_run(enu, &o, &st);
    CHECK(rc != PD_OK && rc != PD_ERR_NETWORK);
    CHECK_EQ_INT(st.upload_error, rc);
    CHECK(strstr(pd_store_errmsg(enu), "the pull went on") != NULL);
    /* the pull ran all the same: E0002's correction is here */
    CHECK(st.pulled);
    CHECK(th_count(enu, "SELECT value FROM sync_state WHERE key = 'cursor'") > cursor);
    CHECK_EQ_INT(th_count(enu, "SELECT roof_material FROM household WHERE id = "
                               "'3273011001000031'"),
                 v.i);
    /* and the refused batch is still queued */
    char state[16];
    th_batch_state(enu, (uint64_t)seq, state);
    CHECK(strcmp(state, "acknowledged") != 0);
}

static void test_a_person_without_an_area_has_nothing_to_pull(void)
{
    pd_store *a = th_device(dir, "admin", "admin");
    REQUIRE_VOID(a);
    REQUIRE_VOID(th_enrol(a, &srv, srv.port, "A0001") == PD_OK);
    pd_sync_options o = th_options();
    pd_sync_stats st;
    CHECK_EQ_INT(pd_sync_run(a, &o, &st), PD_OK);
    CHECK(!st.prelist_imported);
    CHECK_EQ_INT(st.requests, 1);
    CHECK_EQ_INT(th_count(a, "SELECT count(*) FROM household"), 0);
    CHECK_EQ_INT(th_count(a, "SELECT count(*) FROM sync_state WHERE key = 'cursor'"), 0);
    pd_store_close(a);
}

static void test_an_enrolment_whose_answer_was_lost_is_answered_again(void)
{
    th_proxy px;
    REQUIRE_VOID(th_proxy_start(&px, srv.port) == 0);
    /* a new phone with no person key yet: enrolment makes one (and must send the same one when
     * it asks again) */
    char *home = pd_test_path(dir, "phone2");
    pd_store *d = NULL;
    pd_error err = {0};
    REQUIRE_VOID(pd_store_create(&d, home, TH_PIN, &PD_KDF_TEST, &err) == PD_OK);
    free(home);
    pd_store *other = th_device(dir, "phone3", "enumerator");
    char code[PD_ENROLL_CODE_LEN + 1], via[64], direct[64];
    REQUIRE_VOID(d && other && th_code(&srv, "E0001", code) == PD_OK);
    snprintf(via, sizeof via, "http://127.0.0.1:%d", px.port);
    snprintf(direct, sizeof direct, "http://127.0.0.1:%d", srv.port);
    pd_server_status s0, s1;
    REQUIRE_VOID(th_server_status(&srv, &s0) == PD_OK);
    /* the server enrols the device, and its answer is cut on the way back */
    pd_sync_options o = th_options();
    o.max_attempts = 1;
    atomic_store(&px.cut_down_after, 40);
    CHECK_EQ_INT(pd_sync_enroll(d, via, code, srv.fingerprint, NULL, &o, NULL), PD_ERR_NETWORK);
    CHECK_EQ_INT(atomic_load(&px.cuts), 1);
    REQUIRE_VOID(th_server_status(&srv, &s1) == PD_OK);
    CHECK_EQ_INT(s1.devices, s0.devices + 1);
    CHECK_EQ_INT(th_count(d, "SELECT count(*) FROM settings WHERE key = 'server_sign_pk'"), 0);
    /* the retry with the same code (a later run) is the same enrolment, answered again */
    o = th_options();
    pd_enroll_result res;
    CHECK_EQ_INT(pd_sync_enroll(d, via, code, srv.fingerprint, NULL, &o, &res), PD_OK);
    CHECK(!strcmp(res.person_id, "E0001"));
    CHECK_EQ_INT(th_count(d, "SELECT count(*) FROM sync_state WHERE key = 'enroll.user_sk'"), 0);
    REQUIRE_VOID(th_server_status(&srv, &s1) == PD_OK);
    CHECK_EQ_INT(s1.devices, s0.devices + 1);
    /* its person key is the one the server holds: it syncs */
    CHECK_EQ_INT(pd_sync_run(d, &o, NULL), PD_OK);
    /* another device (another key) with the same code is still refused */
    CHECK_EQ_INT(pd_sync_enroll(other, direct, code, srv.fingerprint, NULL, &o, NULL),
                 PD_ERR_DENIED);
    CHECK(strstr(pd_store_errmsg(other), "code_used") != NULL);
    pd_store_close(d);
    pd_store_close(other);
    th_proxy_stop(&px);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    dir = pd_test_tmpdir("sync");
    REQUIRE(th_server_create(&srv, dir, 40) == PD_OK);
    REQUIRE(th_server_start(&srv, 0) == 0);
    RUN(test_enrol_pins_the_server_and_stores_the_assignment);
    if (enu && sup) {
        RUN(test_enrol_again_is_refused);
        RUN(test_enrol_with_a_wrong_fingerprint_stores_nothing);
        RUN(test_first_sync_pulls_the_prelist_then_nothing_to_do_costs_one_request);
        RUN(test_visit_seal_approve_sync_gives_a_receipt_in_one_upload_request);
        RUN(test_a_bundle_bigger_than_a_chunk_goes_post_then_patch_then_commit);
        RUN(test_an_answer_not_signed_by_the_pinned_key_is_refused);
        RUN(test_a_recorded_delta_answer_replayed_is_refused);
        RUN(test_a_device_clock_an_hour_off_is_corrected_by_stale_time);
        RUN(test_a_local_unsent_change_is_kept_over_the_servers_value);
        if (enu2) {
            RUN(test_a_batch_held_for_a_missing_one_is_asked_about_later);
            RUN(test_a_returned_batch_travels_voided_and_is_acknowledged);
            RUN(test_photos_go_up_once_and_a_known_one_is_stored_once);
            RUN(test_the_supervisor_uploads_and_the_enumerator_learns_its_receipt);
            RUN(test_an_upload_refused_for_good_still_pulls);
        }
        RUN(test_a_person_without_an_area_has_nothing_to_pull);
        RUN(test_an_enrolment_whose_answer_was_lost_is_answered_again);
    }
    pd_store_close(enu);
    pd_store_close(enu2);
    pd_store_close(sup);
    th_server_kill(&srv, SIGTERM);
    pd_test_rmtree(dir);
    free(dir);
    return pd_test_finish();
}

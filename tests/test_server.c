/*
 * test_server.c — the server over real HTTP on loopback: routing, enrolment (codes single use,
 * expiring, unknown; a device repeating its own enrolment), request authentication (stale time,
 * replayed nonce, bad signature, tampered target, unknown and revoked devices: each a clear JSON
 * error, nothing stored), the replay cache surviving a restart, body limits, signed responses and
 * the access log.
 */
#include "test_server_client.h"

#include <unistd.h>

static tsrv S;

static void test_health_routing_and_methods(void)
{
    tresp r;
    ts_request(&S, NULL, "GET", "/v1/health", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 200);
    char fp[PD_SERVER_FINGERPRINT_LEN + 1];
    pd_server_fingerprint(S.srv, fp);
    CHECK(r.body && strstr(r.body, fp));
    tresp_free(&r);

    ts_request(&S, NULL, "GET", "/v1/nothing-here", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 404);
    CHECK(!strcmp(tresp_error(&r), "not_found"));
    tresp_free(&r);

    ts_request(&S, NULL, "DELETE", "/v1/health", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 405);
    CHECK(!strcmp(tresp_error(&r), "method_not_allowed"));
    tresp_free(&r);
}

static char *enroll_body(const char *code, const tdev *d)
{
    char pk[65], upk[65];
    sodium_bin2hex(pk, sizeof pk, d->pk, 32);
    sodium_bin2hex(upk, sizeof upk, d->upk, 32);
    char *b = malloc(512);
    snprintf(b, 512,
             "{\"code\":\"%s\",\"device_id\":\"%s\",\"device_pk\":\"%s\",\"user_pk\":\"%s\"}", code,
             d->id, pk, upk);
    return b;
}

static void test_enrolment_code_is_single_use_and_answer_is_signed(void)
{
    char code[PD_ENROLL_CODE_LEN + 1];
    REQUIRE_V(pd_server_enroll_code(S.srv, "E1", 0, code) == PD_OK);
    CHECK(strlen(code) == 14 && code[4] == '-' && code[9] == '-');
    tdev d;
    tdev_init(&d, "dev-e1a");
    char *body = enroll_body(code, &d);
    tresp r;
    ts_request(&S, NULL, "POST", "/v1/enroll", NULL, body, strlen(body), &r);
    CHECK_EQ_INT(r.status, 200);
    /* the answer is signed by the server key, bound to this request's body */
    uint8_t bh[32];
    char ctx[65];
    crypto_generichash(bh, sizeof bh, (const uint8_t *)body, strlen(body), NULL, 0);
    sodium_bin2hex(ctx, sizeof ctx, bh, sizeof bh);
    CHECK(tresp_signed(&r, S.sign_pk, ctx));
    cJSON *o = cJSON_Parse(r.body);
    const cJSON *user = cJSON_GetObjectItemCaseSensitive(o, "user");
    const cJSON *srv = cJSON_GetObjectItemCaseSensitive(o, "server");
    CHECK(!strcmp(ts_str(user, "id"), "E1"));
    CHECK(!strcmp(ts_str(user, "role"), "enumerator"));
    CHECK(!strcmp(ts_str(user, "supervisor"), "S1"));
    char spk[65];
    sodium_bin2hex(spk, sizeof spk, S.sign_pk, 32);
    CHECK(!strcmp(ts_str(srv, "sign_pk"), spk));
    char fp[PD_SERVER_FINGERPRINT_LEN + 1];
    pd_server_fingerprint(S.srv, fp);
    CHECK(!strcmp(ts_str(srv, "fingerprint"), fp));
    cJSON_Delete(o);
    tresp_free(&r);

    /* the same device asking again (its answer was lost) gets the same identity */
    ts_request(&S, NULL, "POST", "/v1/enroll", NULL, body, strlen(body), &r);
    CHECK_EQ_INT(r.status, 200);
    tresp_free(&r);
    free(body);

    /* another device with the used code: refused, and not enrolled */
    tdev other;
    tdev_init(&other, "dev-e1b");
    body = enroll_body(code, &other);
    ts_request(&S, NULL, "POST", "/v1/enroll", NULL, body, strlen(body), &r);
    CHECK_EQ_INT(r.status, 403);
    CHECK(!strcmp(tresp_error(&r), "code_used"));
    tresp_free(&r);
    free(body);
    ts_request(&S, &other, "GET", "/v1/delta", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 401);
    CHECK(!strcmp(tresp_error(&r), "unknown_device"));
    tresp_free(&r);

    /* a code typed in lower case without dashes works */
    REQUIRE_V(pd_server_enroll_code(S.srv, "S1", 0, code) == PD_OK);
    char loose[16];
    size_t o2 = 0;
    for (const char *p = code; *p; p++)
        if (*p != '-')
            loose[o2++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
    loose[o2] = '\0';
    tdev sup;
    tdev_init(&sup, "dev-s1");
    body = enroll_body(loose, &sup);
    ts_request(&S, NULL, "POST", "/v1/enroll", NULL, body, strlen(body), &r);
    CHECK_EQ_INT(r.status, 200);
    /* the supervisor's keyring holds its enumerator E1's person key */
    char upk[65];
    sodium_bin2hex(upk, sizeof upk, d.upk, 32);
    CHECK(r.body && strstr(r.body, upk));
    tresp_free(&r);
    free(body);
}

static void test_enrolment_expired_and_unknown_codes(void)
{
    char code[PD_ENROLL_CODE_LEN + 1];
    REQUIRE_V(pd_server_enroll_code(S.srv, "E2", 1, code) == PD_OK); /* valid 1 ms */
    usleep(20 * 1000);
    tdev d;
    tdev_init(&d, "dev-e2x");
    char *body = enroll_body(code, &d);
    tresp r;
    ts_request(&S, NULL, "POST", "/v1/enroll", NULL, body, strlen(body), &r);
    CHECK_EQ_INT(r.status, 403);
    CHECK(!strcmp(tresp_error(&r), "code_expired"));
    tresp_free(&r);
    free(body);
    ts_request(&S, &d, "GET", "/v1/delta", NULL, NULL, 0, &r);
    CHECK(!strcmp(tresp_error(&r), "unknown_device"));
    tresp_free(&r);

    body = enroll_body("ZZZZ-ZZZZ-ZZZZ", &d);
    ts_request(&S, NULL, "POST", "/v1/enroll", NULL, body, strlen(body), &r);
    CHECK_EQ_INT(r.status, 403);
    CHECK(!strcmp(tresp_error(&r), "code_unknown"));
    tresp_free(&r);
    free(body);

    const char *bad[] = {
        "not json",
        "{\"code\":\"AAAA-BBBB-CCCC\"}",
        "{\"code\":\"AAAA-BBBB-CCCC\",\"device_id\":\"a "
        "b\",\"device_pk\":\"00\",\"user_pk\":\"00\"}",
        "{\"code\":\"AAAA-BBBB-CCCC\",\"device_id\":\"ok\",\"device_pk\":\"zz\",\"user_pk\":"
        "\"00\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ts_request(&S, NULL, "POST", "/v1/enroll", NULL, bad[i], strlen(bad[i]), &r);
        CHECK_EQ_INT(r.status, 400);
        CHECK(!strcmp(tresp_error(&r), "bad_request"));
        tresp_free(&r);
    }

    /* a device id already enrolled with another key */
    REQUIRE_V(pd_server_enroll_code(S.srv, "E2", 0, code) == PD_OK);
    tdev clash;
    tdev_init(&clash, "dev-e1a"); /* E1's device id, another key */
    body = enroll_body(code, &clash);
    ts_request(&S, NULL, "POST", "/v1/enroll", NULL, body, strlen(body), &r);
    CHECK_EQ_INT(r.status, 409);
    CHECK(!strcmp(tresp_error(&r), "device_exists"));
    tresp_free(&r);
    free(body);
    /* that failure used nothing up: the code still works for a fresh device */
    tdev fresh;
    tdev_init(&fresh, "dev-e2");
    body = enroll_body(code, &fresh);
    ts_request(&S, NULL, "POST", "/v1/enroll", NULL, body, strlen(body), &r);
    CHECK_EQ_INT(r.status, 200);
    tresp_free(&r);
    free(body);
}

static void test_signed_requests_are_checked_and_failures_store_nothing(void)
{
    tdev d;
    tdev_init(&d, "dev-auth");
    REQUIRE_V(ts_enroll(&S, &d, "E1") == 200);
    tresp r;
    char nonce[33];

    /* a good request: answered, and the answer signed for this nonce */
    ts_request_ex(&S, &d, "GET", "/v1/delta?since=0&limit=3", NULL, NULL, 0, NULL, &r, nonce);
    CHECK_EQ_INT(r.status, 200);
    CHECK(tresp_signed(&r, S.sign_pk, nonce)); /* deltas too bind to the request's nonce */
    tresp_free(&r);
    /* the same nonce again: a replay */
    topt replay = {.nonce_hex = nonce};
    ts_request_ex(&S, &d, "GET", "/v1/delta?since=0&limit=3", NULL, NULL, 0, &replay, &r, NULL);
    CHECK_EQ_INT(r.status, 401);
    CHECK(!strcmp(tresp_error(&r), "replayed_nonce"));
    CHECK(tresp_signed(&r, S.sign_pk, nonce));
    tresp_free(&r);

    /* stale time: refused with the server's time to correct by */
    topt stale = {.time_offset = -1000};
    ts_request_ex(&S, &d, "GET", "/v1/delta", NULL, NULL, 0, &stale, &r, NULL);
    CHECK_EQ_INT(r.status, 401);
    CHECK(!strcmp(tresp_error(&r), "stale_time"));
    CHECK(r.body && strstr(r.body, "\"server_time\""));
    tresp_free(&r);
    stale.time_offset = 1000;
    ts_request_ex(&S, &d, "GET", "/v1/delta", NULL, NULL, 0, &stale, &r, NULL);
    CHECK(!strcmp(tresp_error(&r), "stale_time"));
    tresp_free(&r);

    /* a bad signature is refused ... and its nonce was not stored: a good request may use it */
    const char *fixed = "00112233445566778899aabbccddeeff";
    topt bad = {.bad_sig = true, .nonce_hex = fixed};
    ts_request_ex(&S, &d, "GET", "/v1/delta", NULL, NULL, 0, &bad, &r, NULL);
    CHECK_EQ_INT(r.status, 401);
    CHECK(!strcmp(tresp_error(&r), "bad_signature"));
    tresp_free(&r);
    topt good = {.nonce_hex = fixed};
    ts_request_ex(&S, &d, "GET", "/v1/delta", NULL, NULL, 0, &good, &r, NULL);
    CHECK_EQ_INT(r.status, 200);
    tresp_free(&r);

    /* the signature covers the target and the body */
    topt moved = {.sign_target = "/v1/delta?since=0"};
    ts_request_ex(&S, &d, "GET", "/v1/delta?since=5", NULL, NULL, 0, &moved, &r, NULL);
    CHECK(!strcmp(tresp_error(&r), "bad_signature"));
    tresp_free(&r);

    /* no header, a malformed one */
    topt none = {.no_auth = true};
    ts_request_ex(&S, &d, "GET", "/v1/delta", NULL, NULL, 0, &none, &r, NULL);
    CHECK_EQ_INT(r.status, 401);
    CHECK(!strcmp(tresp_error(&r), "auth_missing"));
    tresp_free(&r);
    const char *mal[] = {"Pd-Auth: PD1 device=dev-auth,time=1,nonce=00,sig=00", NULL};
    ts_request(&S, NULL, "GET", "/v1/delta", mal, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 401);
    CHECK(!strcmp(tresp_error(&r), "auth_malformed"));
    tresp_free(&r);

    /* revoked: 403, and it stays so */
    REQUIRE_V(pd_server_revoke(S.srv, "dev-auth") == PD_OK);
    ts_request(&S, &d, "GET", "/v1/delta", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 403);
    CHECK(!strcmp(tresp_error(&r), "device_revoked"));
    tresp_free(&r);
    CHECK(pd_server_revoke(S.srv, "dev-auth") == PD_ERR_STATE);
    CHECK(pd_server_revoke(S.srv, "no-such-device") == PD_ERR_NOTFOUND);
}

static void test_replay_cache_survives_a_restart(void)
{
    tdev d;
    tdev_init(&d, "dev-restart");
    REQUIRE_V(ts_enroll(&S, &d, "E2") == 200);
    tresp r;
    char nonce[33];
    ts_request_ex(&S, &d, "GET", "/v1/delta", NULL, NULL, 0, NULL, &r, nonce);
    CHECK_EQ_INT(r.status, 200);
    tresp_free(&r);
    pd_server_close(S.srv);
    pd_error err = {0};
    REQUIRE_V(pd_server_open(&S.srv, S.url, S.data_dir, &err) == PD_OK);
    pd_server_config cfg = {.listen = "127.0.0.1:0", .threads = 2, .access_log = S.log};
    REQUIRE_V(pd_server_start(S.srv, &cfg) == PD_OK);
    S.port = pd_server_port(S.srv);
    topt replay = {.nonce_hex = nonce};
    ts_request_ex(&S, &d, "GET", "/v1/delta", NULL, NULL, 0, &replay, &r, NULL);
    CHECK_EQ_INT(r.status, 401);
    CHECK(!strcmp(tresp_error(&r), "replayed_nonce"));
    tresp_free(&r);
}

static void test_oversize_json_body_refused(void)
{
    tdev d;
    tdev_init(&d, "dev-big");
    REQUIRE_V(ts_enroll(&S, &d, "E1") == 200);
    size_t n = 200 * 1024;
    char *big = malloc(n);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    tresp r;
    ts_request(&S, &d, "POST", "/v1/batches/commit", NULL, big, n, &r);
    CHECK_EQ_INT(r.status, 413);
    CHECK(!strcmp(tresp_error(&r), "too_large"));
    tresp_free(&r);
    ts_request(&S, NULL, "POST", "/v1/enroll", NULL, big, n, &r);
    CHECK_EQ_INT(r.status, 413);
    tresp_free(&r);
    free(big);
}

static void test_access_log_lines_hold_no_personal_data(void)
{
    fflush(S.log);
    size_t len;
    char *log = (char *)pd_test_read_file(S.log_path, &len);
    REQUIRE_V(log);
    char *text = realloc(log, len + 1);
    REQUIRE_V(text);
    text[len] = '\0';
    CHECK(strstr(text, "device=dev-auth method=GET path=/v1/delta status=200"));
    CHECK(strstr(text, "method=POST path=/v1/enroll status=403"));
    CHECK(strstr(text, " ms="));
    /* no names, no codes, no query strings */
    CHECK(!strstr(text, "Dewi"));
    CHECK(!strstr(text, "since="));
    CHECK(!strstr(text, "ZZZZ"));
    int lines = 0;
    for (char *p = text; *p; p++)
        lines += *p == '\n';
    CHECK(lines >= 20);
    free(text);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    REQUIRE(sodium_init() >= 0);
    REQUIRE(ts_start(&S, "server", true));
    RUN(test_health_routing_and_methods);
    RUN(test_enrolment_code_is_single_use_and_answer_is_signed);
    RUN(test_enrolment_expired_and_unknown_codes);
    RUN(test_signed_requests_are_checked_and_failures_store_nothing);
    RUN(test_replay_cache_survives_a_restart);
    RUN(test_oversize_json_body_refused);
    RUN(test_access_log_lines_hold_no_personal_data);
    ts_stop(&S);
    curl_global_cleanup();
    return pd_test_finish();
}

/*
 * test_korcam.c — korcam reconciliation end to end: enumerators' devices make changes with the
 * real library, a supervisor approves them, they sync to the real `pendata-server` (a child
 * process on loopback), the merge queues a conflict, the korcam's device lists, shows and
 * resolves it over signed HTTP, and the enumerators' devices pull the decision in their next
 * sync. Every conflict kind goes this way: a field changed by two devices, a field changed on a
 * device against a korcam's correction, one NIK in two households and twice in one, a household
 * visited twice with different outcomes, a proposed household matching an existing one (head
 * NIK, KK, a similar head name within 50 m), a member moved out or deceased who is active
 * elsewhere. Then the rules: a second decision is refused (409) and a decided conflict never
 * comes back; a korcam of another kecamatan sees and decides nothing (device API and web page);
 * an enumerator's device cannot use the queue; a bad decision changes nothing; the web login
 * (Argon2id password, HttpOnly SameSite=Strict cookie, CSRF token, rate limit, CSP).
 */
#include "pd_korcam.h"
#include "test_sync_harness.h"
#include "testutil.h"

#include <cjson/cJSON.h>
#include <curl/curl.h>

static char *dir;
static th_server srv;
static pd_store *enu1, *enu2, *sup, *kor, *kor2;
static pd_sync_options O;

#define K1_PASSWORD "rahasia-kecamatan-satu"
#define K2_PASSWORD "rahasia-kecamatan-dua"

/* ---- helpers ------------------------------------------------------------------------------------
 */

static bool q_text(pd_store *s, const char *sql, char *out, size_t cap)
{
    sqlite3_stmt *st = NULL;
    bool ok = false;
    out[0] = '\0';
    if (sqlite3_prepare_v2(pd_store_sqlite(s), sql, -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0)) {
        snprintf(out, cap, "%s", (const char *)sqlite3_column_text(st, 0));
        ok = true;
    }
    sqlite3_finalize(st);
    return ok;
}

/* A count (or any integer) from the server's database, read beside the running server. */
static long long srv_count(const char *sql)
{
    return td_int(srv.db, sql);
}

static bool srv_text(const char *sql, char *out, size_t cap)
{
    return td_text(srv.db, sql, out, cap);
}

/* The server's revision (the SQLite meta row, the PostgreSQL sequence: asked through the API). */
static long long srv_revision(void)
{
    pd_server_status st;
    return th_server_status(&srv, &st) == PD_OK ? st.revision : -1;
}

static int sync_dev(pd_store *d)
{
    pd_sync_stats st;
    int rc = pd_sync_run(d, &O, &st);
    if (rc != PD_OK)
        fprintf(stderr, "sync: %s\n", pd_store_errmsg(d));
    return rc;
}

/* Seal what the enumerator changed, have it approved, sync: the batch acknowledged. */
static int submit(pd_store *enu)
{
    pd_seal_result sr;
    if (pd_batch_seal(enu, &sr) != PD_OK) {
        fprintf(stderr, "seal: %s\n", pd_store_errmsg(enu));
        return -1;
    }
    if (th_review(enu, sup, sr.seq, NULL) != PD_OK)
        return -1;
    pd_sync_stats st;
    if (pd_sync_run(enu, &O, &st) != PD_OK) {
        fprintf(stderr, "sync: %s\n", pd_store_errmsg(enu));
        return -1;
    }
    return st.batches_acknowledged == 1 && st.batches_rejected == 0 ? 0 : -1;
}

static cJSON *k_list(pd_store *k, const char *kind, const char *state)
{
    pd_korcam_filter f = {.kind = kind, .state = state};
    char *json = NULL;
    if (pd_korcam_list(k, &f, &O, &json) != PD_OK) {
        fprintf(stderr, "list: %s\n", pd_store_errmsg(k));
        return NULL;
    }
    cJSON *j = cJSON_Parse(json);
    free(json);
    return j;
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : "";
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* The first conflict of kind on target in the korcam's open queue (0 if none); *out (may be
 * NULL) gets its JSON (cJSON_Delete it). */
static int64_t find_open(const char *kind, const char *target, cJSON **out)
{
    if (out)
        *out = NULL;
    cJSON *l = k_list(kor, kind, "open");
    const cJSON *c;
    int64_t id = 0;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(l, "conflicts"))
    {
        if (!strcmp(jstr(c, "target"), target)) {
            id = (int64_t)jnum(c, "id");
            if (out)
                *out = cJSON_Duplicate(c, 1);
            break;
        }
    }
    cJSON_Delete(l);
    return id;
}

static int resolve(pd_store *k, int64_t id, const char *action, const char *value, const char *into,
                   const char *member, const char *note)
{
    pd_korcam_resolution r = {
        .action = action, .value = value, .into = into, .member = member, .note = note};
    char *json = NULL;
    int rc = pd_korcam_resolve(k, id, &r, &O, &json);
    free(json);
    return rc;
}

typedef struct found {
    int64_t id;
    char resolution[16], by[40], note[200];
    size_t n;
} found;

static int notice_cb(void *ctx, const pd_korcam_notice *n)
{
    found *f = ctx;
    f->n++;
    if (n->id == f->id) {
        snprintf(f->resolution, sizeof f->resolution, "%s", n->resolution);
        snprintf(f->by, sizeof f->by, "%s", n->resolved_by);
        snprintf(f->note, sizeof f->note, "%s", n->note);
    }
    return 0;
}

/* ---- web requests (libcurl, the page's own API) -------------------------------------------------
 */

typedef struct wresp {
    long status;
    char *body;
    size_t len;
    char headers[8192];
    size_t hlen;
} wresp;

static size_t w_body(char *p, size_t sz, size_t n, void *ud)
{
    wresp *r = ud;
    char *nb = realloc(r->body, r->len + sz * n + 1);
    if (!nb)
        return 0;
    r->body = nb;
    memcpy(r->body + r->len, p, sz * n);
    r->len += sz * n;
    r->body[r->len] = '\0';
    return sz * n;
}

static size_t w_head(char *p, size_t sz, size_t n, void *ud)
{
    wresp *r = ud;
    if (r->hlen + sz * n < sizeof r->headers) {
        memcpy(r->headers + r->hlen, p, sz * n);
        r->hlen += sz * n;
        r->headers[r->hlen] = '\0';
    }
    return sz * n;
}

/* One request to the page's API: cookie "pd_korcam=..." (may be NULL), csrf (may be NULL),
 * origin (NULL: the server's own). */
static void web(const char *method, const char *path, const char *body, const char *cookie,
                const char *csrf, const char *origin, wresp *out)
{
    memset(out, 0, sizeof *out);
    CURL *c = curl_easy_init();
    char url[256], h[3][256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", srv.port, path);
    struct curl_slist *hl = curl_slist_append(NULL, "Content-Type: application/json");
    snprintf(h[0], sizeof h[0], "Origin: %s", origin ? origin : "");
    if (!origin)
        snprintf(h[0], sizeof h[0], "Origin: http://127.0.0.1:%d", srv.port);
    hl = curl_slist_append(hl, h[0]);
    if (cookie) {
        snprintf(h[1], sizeof h[1], "Cookie: %s", cookie);
        hl = curl_slist_append(hl, h[1]);
    }
    if (csrf) {
        snprintf(h[2], sizeof h[2], "X-CSRF-Token: %s", csrf);
        hl = curl_slist_append(hl, h[2]);
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, w_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, w_head);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (!strcmp(method, "POST")) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
    }
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
    else
        out->status = -1;
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
}

static void wfree(wresp *r)
{
    free(r->body);
    r->body = NULL;
}

static bool has_header(const wresp *r, const char *line)
{
    return strstr(r->headers, line) != NULL;
}

/* Log in: the cookie ("pd_korcam=<hex>") and the CSRF token; the status. */
static long web_login(const char *user, const char *password, char cookie[100], char csrf[80])
{
    char body[256];
    snprintf(body, sizeof body, "{\"user\":\"%s\",\"password\":\"%s\"}", user, password);
    wresp r;
    web("POST", "/korcam/api/login", body, NULL, NULL, NULL, &r);
    cookie[0] = csrf[0] = '\0';
    const char *sc = strstr(r.headers, "Set-Cookie: pd_korcam=");
    if (sc)
        snprintf(cookie, 100, "%.74s", sc + strlen("Set-Cookie: "));
    cJSON *j = r.body ? cJSON_Parse(r.body) : NULL;
    snprintf(csrf, 80, "%s", jstr(j, "csrf"));
    cJSON_Delete(j);
    long st = r.status;
    wfree(&r);
    return st;
}

/* ---- the tests
 * ----------------------------------------------------------------------------------- */

static void test_devices_enrol_and_pull(void)
{
    enu1 = th_device(dir, "enu1", "enumerator");
    enu2 = th_device(dir, "enu2", "enumerator");
    sup = th_device(dir, "sup", "supervisor");
    kor = th_device(dir, "kor", "korcam");
    kor2 = th_device(dir, "kor2", "korcam");
    REQUIRE_VOID(enu1 && enu2 && sup && kor && kor2);
    REQUIRE_VOID(th_enrol(enu1, &srv, srv.port, "E0001") == PD_OK);
    REQUIRE_VOID(th_enrol(enu2, &srv, srv.port, "E0002") == PD_OK);
    REQUIRE_VOID(th_enrol(sup, &srv, srv.port, "S0001") == PD_OK);
    REQUIRE_VOID(th_enrol(kor, &srv, srv.port, "K0001") == PD_OK);
    REQUIRE_VOID(th_enrol(kor2, &srv, srv.port, "K0002") == PD_OK);
    /* first syncs: prelists, then the supervisor's key reaches the enumerators */
    CHECK_EQ_INT(sync_dev(enu1), PD_OK);
    CHECK_EQ_INT(sync_dev(enu2), PD_OK);
    CHECK_EQ_INT(sync_dev(sup), PD_OK);
    CHECK_EQ_INT(sync_dev(enu1), PD_OK);
    CHECK_EQ_INT(sync_dev(enu2), PD_OK);
    CHECK_EQ_INT(th_count(enu1, "SELECT count(*) FROM household"), 20);
}

static void test_field_changed_by_two_devices_is_decided_and_pulled(void)
{
    const char *hh = "3273011001000003";
    char now[16];
    REQUIRE_VOID(q_text(enu1,
                        "SELECT roof_material FROM household WHERE id = "
                        "'3273011001000003'",
                        now, sizeof now));
    int64_t base = atoll(now), x = base == 2 ? 3 : 2, y = base == 4 ? 5 : 4;
    pd_value vx = {.type = PD_VAL_INT, .i = x}, vy = {.type = PD_VAL_INT, .i = y};
    REQUIRE_VOID(pd_household_set(enu1, hh, "roof_material", &vx, NULL) == PD_OK);
    REQUIRE_VOID(pd_household_set(enu2, hh, "roof_material", &vy, NULL) == PD_OK);
    REQUIRE_VOID(submit(enu1) == 0);
    REQUIRE_VOID(submit(enu2) == 0);

    cJSON *c = NULL;
    int64_t id = find_open("field", hh, &c);
    REQUIRE_VOID(id > 0);
    /* both sides, with who, when and which batch */
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(c, "server");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(c, "device");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(c, "base");
    CHECK(!strcmp(jstr(c, "field"), "roof_material"));
    CHECK_EQ_INT((int64_t)jnum(b, "value"), base);
    CHECK_EQ_INT((int64_t)jnum(s, "value"), x);
    CHECK_EQ_INT((int64_t)jnum(d, "value"), y);
    CHECK(!strcmp(jstr(s, "user"), "E0001") && !strcmp(jstr(s, "name"), "Dewi Lestari"));
    CHECK(!strcmp(jstr(d, "user"), "E0002"));
    CHECK(!strcmp(jstr(d, "device"), pd_store_device_id(enu2)));
    CHECK(jnum(s, "time") > 0 && jnum(d, "time") > 0);
    CHECK(strlen(jstr(d, "batch")) == 64 && jnum(d, "batch_seq") >= 1);
    CHECK(strlen(jstr(s, "batch")) == 64);
    cJSON_Delete(c);

    /* show: the household, its history from the audit log and its GPS points */
    char *json = NULL;
    REQUIRE_VOID(pd_korcam_show(kor, id, &O, &json) == PD_OK);
    cJSON *j = cJSON_Parse(json);
    free(json);
    CHECK(!strcmp(jstr(cJSON_GetObjectItemCaseSensitive(j, "household"), "id"), hh));
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "history")) >= 2);
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(j, "points")) >= 1);
    CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(j, "shape")));
    cJSON_Delete(j);

    long long rev0 = srv_revision();
    CHECK_EQ_INT(resolve(kor, id, "device", NULL, NULL, NULL, "the roof was repaired in May"),
                 PD_OK);
    /* a new revision, an audit row with who and why */
    CHECK(srv_revision() > rev0);
    CHECK_EQ_INT(srv_count("SELECT count(*) FROM audit WHERE action = 'resolve' AND actor = "
                           "'K0001' AND entity = 'conflict' AND CAST(new_value AS TEXT) LIKE "
                           "'%repaired in May%'"),
                 1);
    /* resolving twice is refused; the conflict never comes back to the queue */
    CHECK_EQ_INT(resolve(kor, id, "server", NULL, NULL, NULL, NULL), PD_ERR_STATE);
    CHECK(strstr(pd_store_errmsg(kor), "409") != NULL);
    CHECK_EQ_INT(find_open("field", hh, NULL), 0);
    CHECK_EQ_INT(srv_count("SELECT roof_material FROM household WHERE id = '3273011001000003'"), y);

    /* E0001's device pulls the decision: its value follows, and it knows who decided and why */
    REQUIRE_VOID(sync_dev(enu1) == PD_OK);
    CHECK_EQ_INT(th_count(enu1, "SELECT roof_material FROM household WHERE id = "
                                "'3273011001000003'"),
                 y);
    found f = {.id = id};
    CHECK_EQ_INT(pd_korcam_notices(enu1, notice_cb, &f), PD_OK);
    CHECK(!strcmp(f.resolution, "device") && !strcmp(f.by, "K0001"));
    CHECK(strstr(f.note, "repaired in May") != NULL);
}

static void test_device_change_against_a_korcam_correction(void)
{
    /* the korcam corrects a field (a value) while E0002 changes it offline from the old base */
    const char *hh = "3273011001000004";
    char now[16];
    REQUIRE_VOID(
        q_text(enu1, "SELECT rooms FROM household WHERE id = '3273011001000004'", now, sizeof now));
    int64_t base = atoll(now);
    pd_value a = {.type = PD_VAL_INT, .i = base == 3 ? 4 : 3};
    pd_value bv = {.type = PD_VAL_INT, .i = base == 6 ? 7 : 6};
    REQUIRE_VOID(pd_household_set(enu1, hh, "rooms", &a, NULL) == PD_OK);
    REQUIRE_VOID(pd_household_set(enu2, hh, "rooms", &bv, NULL) == PD_OK);
    REQUIRE_VOID(submit(enu1) == 0);
    REQUIRE_VOID(submit(enu2) == 0);
    int64_t id = find_open("field", hh, NULL);
    REQUIRE_VOID(id > 0);
    CHECK_EQ_INT(resolve(kor, id, "value", "9", NULL, NULL, "counted on site"), PD_OK);
    CHECK_EQ_INT(srv_count("SELECT rooms FROM household WHERE id = '3273011001000004'"), 9);

    /* E0001 has not pulled the correction and changes rooms again: its base is older */
    pd_value c = {.type = PD_VAL_INT, .i = 2};
    REQUIRE_VOID(pd_household_set(enu1, hh, "rooms", &c, NULL) == PD_OK);
    REQUIRE_VOID(submit(enu1) == 0);
    cJSON *j = NULL;
    int64_t id2 = find_open("field", hh, &j);
    REQUIRE_VOID(id2 > 0 && id2 != id);
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "server");
    CHECK(!strcmp(jstr(s, "device"), "korcam:K0001")); /* the server side is the korcam's */
    CHECK_EQ_INT((int64_t)jnum(s, "value"), 9);
    CHECK_EQ_INT((int64_t)jnum(cJSON_GetObjectItemCaseSensitive(j, "device"), "value"), 2);
    cJSON_Delete(j);
    CHECK_EQ_INT(resolve(kor, id2, "server", NULL, NULL, NULL, NULL), PD_OK);
    /* written again at a new revision: E0001's device gets 9 back */
    REQUIRE_VOID(sync_dev(enu1) == PD_OK);
    CHECK_EQ_INT(th_count(enu1, "SELECT rooms FROM household WHERE id = '3273011001000004'"), 9);
}

static void test_duplicate_nik_in_two_households_merged(void)
{
    /* E0001 gives a member of household 5 the NIK of a member of household 6 (both women: a
     * NIK says the sex) */
    char nik[32];
    REQUIRE_VOID(
        q_text(enu1, "SELECT nik FROM member WHERE id = '327301100100000602'", nik, sizeof nik));
    pd_value v = {.type = PD_VAL_TEXT, .p = (const uint8_t *)nik, .len = strlen(nik)};
    REQUIRE_VOID(pd_member_set(enu1, "327301100100000502", "nik", &v, NULL) == PD_OK);
    REQUIRE_VOID(submit(enu1) == 0);
    cJSON *c = NULL;
    int64_t id = find_open("duplicate_nik", "327301100100000502", &c);
    REQUIRE_VOID(id > 0);
    CHECK(!strcmp(jstr(c, "related"), "327301100100000602"));
    CHECK(!strcmp(jstr(c, "household_id"), "3273011001000005"));
    cJSON_Delete(c);
    long long members6 = srv_count("SELECT count(*) FROM member WHERE household_id = "
                                   "'3273011001000006'");
    long long active5 = srv_count("SELECT count(*) FROM member WHERE household_id = "
                                  "'3273011001000005' AND status = 'active'");
    /* the two households are one: 5 joins 6 */
    CHECK_EQ_INT(resolve(kor, id, "merge", NULL, "3273011001000006", NULL, "one family"), PD_OK);
    CHECK_EQ_INT(srv_count("SELECT count(*) FROM household WHERE id = '3273011001000005' AND "
                           "status = 'joined_other'"),
                 1);
    /* the member with the same NIK is not copied twice; the others are */
    CHECK_EQ_INT(srv_count("SELECT count(*) FROM member WHERE household_id = "
                           "'3273011001000006'"),
                 members6 + active5 - 1);
    CHECK_EQ_INT(srv_count("SELECT count(*) FROM member WHERE id = '327301100100000502' AND "
                           "status = 'duplicate'"),
                 1);
    REQUIRE_VOID(sync_dev(enu2) == PD_OK);
    CHECK_EQ_INT(th_count(enu2, "SELECT count(*) FROM household WHERE id = '3273011001000005' "
                                "AND status = 'joined_other'"),
                 1);
    CHECK_EQ_INT(th_count(enu2, "SELECT count(*) FROM member WHERE household_id = "
                                "'3273011001000006'"),
                 members6 + active5 - 1);
}

static void test_nik_twice_in_one_household_split(void)
{
    /* E0002 gives member 02 of household 19 the NIK of member 03: one household, twice */
    char nik[32];
    REQUIRE_VOID(
        q_text(enu2, "SELECT nik FROM member WHERE id = '327301100100001903'", nik, sizeof nik));
    REQUIRE_VOID(th_count(enu2, "SELECT count(*) FROM member WHERE household_id = "
                                "'3273011001000019'") >= 2);
    pd_value v = {.type = PD_VAL_TEXT, .p = (const uint8_t *)nik, .len = strlen(nik)};
    REQUIRE_VOID(pd_member_set(enu2, "327301100100001902", "nik", &v, NULL) == PD_OK);
    REQUIRE_VOID(submit(enu2) == 0);
    cJSON *c = NULL;
    int64_t id = find_open("duplicate_nik", "327301100100001902", &c);
    REQUIRE_VOID(id > 0);
    CHECK(!strcmp(jstr(c, "related"), "327301100100001903"));
    CHECK(strstr(jstr(cJSON_GetObjectItemCaseSensitive(c, "server"), "value"), "same household"));
    /* merging a household into itself makes no sense: refused, nothing changes */
    const cJSON *acts = cJSON_GetObjectItemCaseSensitive(c, "actions");
    CHECK(cJSON_GetArraySize(acts) == 6);
    cJSON_Delete(c);
    CHECK_EQ_INT(resolve(kor, id, "merge", NULL, NULL, NULL, NULL), PD_ERR_INVALID);
    CHECK(find_open("duplicate_nik", "327301100100001902", NULL) == id);
    /* member 02 is someone else: split out into a household of its own */
    CHECK_EQ_INT(resolve(kor, id, "split", NULL, NULL, "327301100100001902", NULL), PD_OK);
    CHECK_EQ_INT(srv_count("SELECT count(*) FROM household WHERE id = '3273011001000019-s02' "
                           "AND source = 'new' AND member_count = 1"),
                 1);
    CHECK_EQ_INT(srv_count("SELECT relationship FROM member WHERE id = "
                           "'3273011001000019-s0201'"),
                 1);
    REQUIRE_VOID(sync_dev(enu1) == PD_OK);
    CHECK_EQ_INT(th_count(enu1, "SELECT count(*) FROM member WHERE id = "
                                "'3273011001000019-s0201' AND status = 'active'"),
                 1);
    CHECK_EQ_INT(th_count(enu1, "SELECT count(*) FROM member WHERE id = '327301100100001902' "
                                "AND status = 'moved'"),
                 1);
}

static int visit(pd_store *d, const char *hh, const char *outcome, double lat, double lon)
{
    pd_gps fix = {.lat = lat,
                  .lon = lon,
                  .accuracy = 12,
                  .altitude = NAN,
                  .fix_time = pd_sync_now_ms() - 1000,
                  .provider = "gps"};
    pd_visit_in v = {.household_id = hh, .outcome = outcome, .gps = &fix};
    char vid[PD_ID_MAX];
    int rc = pd_visit_record(d, &v, vid, NULL);
    if (rc != PD_OK)
        fprintf(stderr, "visit: %s\n", pd_store_errmsg(d));
    return rc;
}

typedef struct task_seen {
    int64_t conflict;
    size_t n;
    bool found, done;
    char note[200];
} task_seen;

static int task_cb(void *ctx, const pd_korcam_task *t)
{
    task_seen *s = ctx;
    s->n++;
    if (t->conflict_id == s->conflict) {
        s->found = true;
        s->done = t->revisited_at != 0;
        snprintf(s->note, sizeof s->note, "%s", t->note);
    }
    return 0;
}

static void test_double_visit_goes_back_for_a_revisit(void)
{
    const char *hh = "3273011001000008";
    REQUIRE_VOID(visit(enu1, hh, "found", -6.5150, 108.2790) == PD_OK);
    REQUIRE_VOID(visit(enu2, hh, "not_found", -6.5151, 108.2791) == PD_OK);
    REQUIRE_VOID(submit(enu1) == 0);
    REQUIRE_VOID(submit(enu2) == 0);
    cJSON *c = NULL;
    int64_t id = find_open("double_visit", hh, &c);
    REQUIRE_VOID(id > 0);
    CHECK(!strcmp(jstr(cJSON_GetObjectItemCaseSensitive(c, "server"), "value"), "found"));
    CHECK(!strcmp(jstr(cJSON_GetObjectItemCaseSensitive(c, "device"), "value"), "not_found"));
    cJSON_Delete(c);
    /* show: both visits' GPS fixes */
    char *json = NULL;
    REQUIRE_VOID(pd_korcam_show(kor, id, &O, &json) == PD_OK);
    cJSON *j = cJSON_Parse(json);
    free(json);
    int visits = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(j, "points")) visits +=
        !strcmp(jstr(p, "kind"), "visit");
    CHECK_EQ_INT(visits, 2);
    cJSON_Delete(j);
    CHECK_EQ_INT(resolve(kor, id, "revisit", NULL, NULL, NULL, "ask the neighbours too"), PD_OK);
    /* the task goes to E0002 (the device side), not to E0001 */
    REQUIRE_VOID(sync_dev(enu2) == PD_OK);
    REQUIRE_VOID(sync_dev(enu1) == PD_OK);
    task_seen t2 = {.conflict = id}, t1 = {.conflict = id};
    CHECK_EQ_INT(pd_korcam_tasks(enu2, task_cb, &t2), PD_OK);
    CHECK_EQ_INT(pd_korcam_tasks(enu1, task_cb, &t1), PD_OK);
    CHECK(t2.found && !t2.done && !strcmp(t2.note, "ask the neighbours too"));
    CHECK(!t1.found);
    /* the revisit done, the task shows it */
    REQUIRE_VOID(visit(enu2, hh, "found", -6.5150, 108.2790) == PD_OK);
    t2 = (task_seen){.conflict = id};
    CHECK_EQ_INT(pd_korcam_tasks(enu2, task_cb, &t2), PD_OK);
    CHECK(t2.found && t2.done);
    CHECK(submit(enu2) == 0);
}

static void test_proposed_households_matching_existing_ones(void)
{
    char nik[32], kk[32], lat[32], lon[32], head[128];
    /* 1: the head of household 9 is proposed again as the head of a new household */
    REQUIRE_VOID(
        q_text(enu1, "SELECT nik FROM member WHERE id = '327301100100000901'", nik, sizeof nik));
    pd_household_new h1 = {.desa = TH_AREA,
                           .address = "Gg. Mawar 3",
                           .lat = NAN,
                           .lon = NAN,
                           .head = {.name = "Bapak Baru", .nik = nik, .relationship = 1}};
    char id1[PD_ID_MAX], id2[PD_ID_MAX], id3[PD_ID_MAX];
    REQUIRE_VOID(pd_household_propose(enu1, &h1, id1, NULL) == PD_OK);
    /* 2: the KK of household 10, and its head's NIK too: one match of one household */
    char nik10[32];
    REQUIRE_VOID(
        q_text(enu1, "SELECT kk FROM household WHERE id = '3273011001000010'", kk, sizeof kk));
    REQUIRE_VOID(q_text(enu1, "SELECT nik FROM member WHERE id = '327301100100001001'", nik10,
                        sizeof nik10));
    pd_household_new h2 = {.desa = TH_AREA,
                           .kk = kk,
                           .lat = NAN,
                           .lon = NAN,
                           .head = {.name = "Ibu Lain", .nik = nik10, .relationship = 1}};
    REQUIRE_VOID(pd_household_propose(enu1, &h2, id2, NULL) == PD_OK);
    /* 3: household 11's head, a little differently spelt, a few metres away */
    REQUIRE_VOID(
        q_text(enu1, "SELECT lat FROM household WHERE id = '3273011001000011'", lat, sizeof lat));
    REQUIRE_VOID(
        q_text(enu1, "SELECT lon FROM household WHERE id = '3273011001000011'", lon, sizeof lon));
    REQUIRE_VOID(q_text(enu1, "SELECT head_name FROM household WHERE id = '3273011001000011'", head,
                        sizeof head));
    char spelt[160];
    snprintf(spelt, sizeof spelt, "%s bin Umar", head);
    pd_household_new h3 = {.desa = TH_AREA,
                           .lat = atof(lat) + 0.0001,
                           .lon = atof(lon),
                           .head = {.name = spelt, .relationship = 1}};
    REQUIRE_VOID(pd_household_propose(enu1, &h3, id3, NULL) == PD_OK);
    REQUIRE_VOID(submit(enu1) == 0);

    cJSON *c1 = NULL, *c2 = NULL, *c3 = NULL;
    int64_t k1 = find_open("duplicate_household", id1, &c1);
    int64_t k2 = find_open("duplicate_household", id2, &c2);
    int64_t k3 = find_open("duplicate_household", id3, &c3);
    CHECK(k1 > 0 && k2 > 0 && k3 > 0);
    CHECK(!strcmp(jstr(c1, "related"), "3273011001000009"));
    CHECK(!strcmp(jstr(c2, "related"), "3273011001000010"));
    CHECK(!strcmp(jstr(c3, "related"), "3273011001000011"));
    CHECK(strstr(jstr(cJSON_GetObjectItemCaseSensitive(c1, "server"), "value"), "head NIK"));
    CHECK(strstr(jstr(cJSON_GetObjectItemCaseSensitive(c2, "server"), "value"), "same KK"));
    CHECK(strstr(jstr(cJSON_GetObjectItemCaseSensitive(c3, "server"), "value"), " m away"));
    char q1[200];
    snprintf(q1, sizeof q1, "SELECT count(*) FROM conflicts WHERE target = '%s'", id2);
    CHECK_EQ_INT(srv_count(q1), 1);
    /* the head NIK is one conflict (the proposal), not a second duplicate_nik */
    CHECK_EQ_INT(srv_count("SELECT count(*) FROM conflicts WHERE kind = 'duplicate_nik' AND "
                           "related = '327301100100000901'"),
                 0);
    cJSON_Delete(c1);
    cJSON_Delete(c2);
    cJSON_Delete(c3);
    if (!(k1 > 0 && k2 > 0 && k3 > 0))
        return;
    /* 1 is household 9 (merge); 2 is dropped (the existing one stands); 3 is really new */
    CHECK_EQ_INT(resolve(kor, k1, "merge", NULL, NULL, NULL, NULL), PD_OK);
    CHECK_EQ_INT(resolve(kor, k2, "server", NULL, NULL, NULL, "same family card"), PD_OK);
    CHECK_EQ_INT(resolve(kor, k3, "device", NULL, NULL, NULL, "neighbours, not the same"), PD_OK);
    char q[256];
    snprintf(q, sizeof q,
             "SELECT count(*) FROM household WHERE id IN ('%s', '%s') AND status "
             "= 'joined_other'",
             id1, id2);
    CHECK_EQ_INT(srv_count(q), 2);
    snprintf(q, sizeof q,
             "SELECT count(*) FROM member WHERE household_id = '%s' AND status = "
             "'duplicate'",
             id2);
    CHECK_EQ_INT(srv_count(q), 1);
    snprintf(q, sizeof q, "SELECT count(*) FROM household WHERE id = '%s' AND status IS NULL", id3);
    CHECK_EQ_INT(srv_count(q), 1);
    REQUIRE_VOID(sync_dev(enu1) == PD_OK);
    snprintf(q, sizeof q,
             "SELECT count(*) FROM household WHERE id IN ('%s', '%s') AND status "
             "= 'joined_other'",
             id1, id2);
    CHECK_EQ_INT(th_count(enu1, q), 2);
    /* a decided proposal is not queued again: its visit, with a fix at the same place, finds
     * the same match and leaves it decided */
    REQUIRE_VOID(visit(enu1, id3, "new_household", atof(lat) + 0.0001, atof(lon)) == PD_OK);
    REQUIRE_VOID(submit(enu1) == 0);
    CHECK_EQ_INT(find_open("duplicate_household", id3, NULL), 0);
    snprintf(q, sizeof q, "SELECT count(*) FROM conflicts WHERE target = '%s'", id3);
    CHECK_EQ_INT(srv_count(q), 1);
}

static void test_member_moved_out_or_deceased_but_active_elsewhere(void)
{
    /* moved out of household 12, then added as a new, active member of household 13 */
    char nik[32], name[128];
    REQUIRE_VOID(
        q_text(enu1, "SELECT nik FROM member WHERE id = '327301100100001201'", nik, sizeof nik));
    REQUIRE_VOID(
        q_text(enu1, "SELECT name FROM member WHERE id = '327301100100001201'", name, sizeof name));
    REQUIRE_VOID(pd_member_end(enu1, "327301100100001201", "moved") == PD_OK);
    REQUIRE_VOID(submit(enu1) == 0);
    pd_member_new m = {.name = name, .nik = nik, .relationship = 9, .reason = "joined"};
    char mid[PD_ID_MAX];
    REQUIRE_VOID(pd_member_add(enu2, "3273011001000013", &m, mid, NULL) == PD_OK);
    REQUIRE_VOID(submit(enu2) == 0);
    cJSON *c = NULL;
    int64_t id = find_open("moved_active", mid, &c);
    REQUIRE_VOID(id > 0);
    CHECK(!strcmp(jstr(c, "related"), "327301100100001201"));
    CHECK(!strcmp(jstr(c, "field"), "nik"));
    cJSON_Delete(c);
    /* the same person, alive and living in 13 now: the record in 12 stays moved */
    CHECK_EQ_INT(resolve(kor, id, "device", NULL, NULL, NULL, NULL), PD_OK);
    CHECK_EQ_INT(srv_count("SELECT count(*) FROM member WHERE id = '327301100100001201' AND "
                           "status = 'moved'"),
                 1);

    /* deceased in household 14 while an active member of household 15 holds the NIK */
    char nik2[32], name2[128];
    REQUIRE_VOID(
        q_text(enu1, "SELECT nik FROM member WHERE id = '327301100100001401'", nik2, sizeof nik2));
    REQUIRE_VOID(q_text(enu1, "SELECT name FROM member WHERE id = '327301100100001401'", name2,
                        sizeof name2));
    pd_member_new m2 = {.name = name2, .nik = nik2, .relationship = 9, .reason = "joined"};
    char mid2[PD_ID_MAX];
    REQUIRE_VOID(pd_member_add(enu2, "3273011001000015", &m2, mid2, NULL) == PD_OK);
    REQUIRE_VOID(submit(enu2) == 0); /* (a duplicate NIK, both active) */
    REQUIRE_VOID(pd_member_end(enu1, "327301100100001401", "deceased") == PD_OK);
    REQUIRE_VOID(submit(enu1) == 0);
    c = NULL;
    int64_t id2 = find_open("moved_active", "327301100100001401", &c);
    REQUIRE_VOID(id2 > 0);
    CHECK(!strcmp(jstr(c, "related"), mid2));
    CHECK(!strcmp(jstr(c, "field"), "status"));
    CHECK(!strcmp(jstr(cJSON_GetObjectItemCaseSensitive(c, "device"), "value"), "deceased"));
    cJSON_Delete(c);
    /* the report stands: a person who died is deceased in household 15 too */
    CHECK_EQ_INT(resolve(kor, id2, "device", NULL, NULL, NULL, "death certificate seen"), PD_OK);
    char q[200];
    snprintf(q, sizeof q, "SELECT count(*) FROM member WHERE id = '%s' AND status = 'deceased'",
             mid2);
    CHECK_EQ_INT(srv_count(q), 1);
    REQUIRE_VOID(sync_dev(enu2) == PD_OK);
    CHECK_EQ_INT(th_count(enu2, q), 1);
}

static void test_korcam_of_another_kecamatan_sees_and_decides_nothing(void)
{
    int64_t open_id = (int64_t)srv_count("SELECT min(id) FROM conflicts WHERE resolved_at IS "
                                         "NULL");
    REQUIRE_VOID(open_id > 0);
    cJSON *l = k_list(kor2, NULL, "all");
    REQUIRE_VOID(l);
    CHECK_EQ_INT((int64_t)jnum(l, "total"), 0);
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(l, "conflicts")), 0);
    cJSON_Delete(l);
    char *json = NULL;
    CHECK_EQ_INT(pd_korcam_show(kor2, open_id, &O, &json), PD_ERR_NOTFOUND);
    free(json);
    CHECK_EQ_INT(resolve(kor2, open_id, "server", NULL, NULL, NULL, NULL), PD_ERR_NOTFOUND);
    CHECK_EQ_INT(srv_count("SELECT count(*) FROM conflicts WHERE resolved_at IS NULL AND id = "
                           "(SELECT min(id) FROM conflicts WHERE resolved_at IS NULL)"),
                 1);
    /* the summary of the other kecamatan holds none of this one's desa */
    CHECK_EQ_INT(pd_korcam_summary(kor2, &O, &json), PD_OK);
    CHECK(json && !strstr(json, "32.73.01.1001"));
    free(json);

    /* and through the web page */
    char cookie[100], csrf[80], path[96], body[64];
    REQUIRE_VOID(web_login("K0002", K2_PASSWORD, cookie, csrf) == 200);
    wresp r;
    web("GET", "/korcam/api/conflicts?state=all", NULL, cookie, NULL, NULL, &r);
    CHECK(r.status == 200 && strstr(r.body, "\"total\":0"));
    wfree(&r);
    snprintf(path, sizeof path, "/korcam/api/conflicts/%lld", (long long)open_id);
    web("GET", path, NULL, cookie, NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 404);
    wfree(&r);
    snprintf(path, sizeof path, "/korcam/api/conflicts/%lld/resolve", (long long)open_id);
    snprintf(body, sizeof body, "{\"action\":\"server\"}");
    web("POST", path, body, cookie, csrf, NULL, &r);
    CHECK_EQ_INT(r.status, 404);
    wfree(&r);
    CHECK_EQ_INT(srv_count("SELECT count(*) FROM conflicts WHERE resolved_by = 'K0002'"), 0);
}

static void test_a_nik_held_in_another_kecamatan_shows_nothing_of_it(void)
{
    /* member 02 of household 17 gets the NIK of a woman in kecamatan 32.73.02 */
    char nik[32], other[64];
    REQUIRE_VOID(srv_text("SELECT m.nik FROM member m JOIN household h ON h.id = m.household_id "
                          "WHERE h.desa = '32.73.02.1001' AND m.sex = (SELECT sex FROM member "
                          "WHERE id = '327301100100001702') ORDER BY m.id LIMIT 1",
                          nik, sizeof nik));
    REQUIRE_VOID(srv_text("SELECT m.id FROM member m JOIN household h ON h.id = m.household_id "
                          "WHERE h.desa = '32.73.02.1001' AND m.sex = (SELECT sex FROM member "
                          "WHERE id = '327301100100001702') ORDER BY m.id LIMIT 1",
                          other, sizeof other));
    pd_value v = {.type = PD_VAL_TEXT, .p = (const uint8_t *)nik, .len = strlen(nik)};
    REQUIRE_VOID(pd_member_set(enu1, "327301100100001702", "nik", &v, NULL) == PD_OK);
    REQUIRE_VOID(submit(enu1) == 0);
    cJSON *c = NULL;
    int64_t id = find_open("duplicate_nik", "327301100100001702", &c);
    REQUIRE_VOID(id > 0);
    CHECK(!strcmp(jstr(c, "related"), other));
    cJSON_Delete(c);
    char *json = NULL;
    REQUIRE_VOID(pd_korcam_show(kor, id, &O, &json) == PD_OK);
    cJSON *j = cJSON_Parse(json);
    /* the other kecamatan's household and names stay out of this korcam's view */
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "related_household")));
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "related_elsewhere")));
    char name[128];
    REQUIRE_VOID(srv_text("SELECT name FROM member WHERE nik = (SELECT nik FROM member WHERE id "
                          "= '327301100100001702') AND id <> '327301100100001702'",
                          name, sizeof name));
    CHECK(strstr(json, name) == NULL);
    const cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItemCaseSensitive(j, "points"))
        CHECK(!strcmp(jstr(p, "role"), "this"));
    cJSON_Delete(j);
    free(json);
    /* nor can a decision touch it: clearing the other member's NIK is refused */
    char q[160];
    snprintf(q, sizeof q, "SELECT count(*) FROM member WHERE id = '%s' AND nik IS NOT NULL", other);
    CHECK_EQ_INT(resolve(kor, id, "device", NULL, NULL, NULL, NULL), PD_ERR_NOTFOUND);
    CHECK_EQ_INT(srv_count(q), 1);
    /* the korcam of that kecamatan does not see this conflict (its target is not theirs) */
    CHECK_EQ_INT(pd_korcam_show(kor2, id, &O, &json), PD_ERR_NOTFOUND);
    free(json);
    CHECK_EQ_INT(resolve(kor, id, "server", NULL, NULL, NULL, "the NIK was mistyped"), PD_OK);
}

static void test_an_enumerators_device_cannot_use_the_queue(void)
{
    char *json = NULL;
    pd_korcam_filter f = {0};
    CHECK_EQ_INT(pd_korcam_list(enu1, &f, &O, &json), PD_ERR_DENIED);
    free(json);
    CHECK(strstr(pd_store_errmsg(enu1), "403") != NULL);
    /* the enumerator's own list is what its syncs brought */
    found fd = {.id = -1};
    CHECK_EQ_INT(pd_korcam_notices(enu1, notice_cb, &fd), PD_OK);
    CHECK(fd.n >= 3);
}

static void test_bad_decisions_change_nothing(void)
{
    /* a fresh field conflict to decide badly */
    const char *hh = "3273011001000016";
    long long cur = th_count(enu1, "SELECT toilet FROM household WHERE id = "
                                   "'3273011001000016'");
    pd_value a = {.type = PD_VAL_INT, .i = cur == 2 ? 3 : 2};
    pd_value b = {.type = PD_VAL_INT, .i = cur == 4 ? 3 : 4};
    REQUIRE_VOID(pd_household_set(enu1, hh, "toilet", &a, NULL) == PD_OK);
    REQUIRE_VOID(pd_household_set(enu2, hh, "toilet", &b, NULL) == PD_OK);
    REQUIRE_VOID(submit(enu1) == 0);
    REQUIRE_VOID(submit(enu2) == 0);
    int64_t id = find_open("field", hh, NULL);
    REQUIRE_VOID(id > 0);
    long long rev = srv_revision();
    long long audit = srv_count("SELECT count(*) FROM audit");
    CHECK_EQ_INT(resolve(kor, id, "bogus", NULL, NULL, NULL, NULL), PD_ERR_INVALID);
    CHECK_EQ_INT(resolve(kor, id, "value", "not a number", NULL, NULL, NULL), PD_ERR_INVALID);
    CHECK_EQ_INT(resolve(kor, id, "value", "777", NULL, NULL, NULL), PD_ERR_INVALID); /* no code */
    CHECK_EQ_INT(resolve(kor, id, "merge", NULL, "3273011001000017", NULL, NULL), PD_ERR_INVALID);
    CHECK_EQ_INT(resolve(kor, id, "split", NULL, NULL, "327301100100000101", NULL),
                 PD_ERR_INVALID); /* a member of another household */
    CHECK_EQ_INT(resolve(kor, 999999, "server", NULL, NULL, NULL, NULL), PD_ERR_NOTFOUND);
    CHECK_EQ_INT(srv_revision(), rev);
    CHECK_EQ_INT(srv_count("SELECT count(*) FROM audit"), audit);
    CHECK(find_open("field", hh, NULL) == id);
    CHECK_EQ_INT(resolve(kor, id, "value", "1", NULL, NULL, NULL), PD_OK);
}

static void test_web_login_session_csrf_and_rate_limit(void)
{
    wresp r;
    /* the page itself: strict CSP, no sniffing */
    web("GET", "/korcam/", NULL, NULL, NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(has_header(&r, "Content-Security-Policy: default-src 'none'; script-src 'self'"));
    CHECK(has_header(&r, "X-Content-Type-Options: nosniff"));
    CHECK(r.body && strstr(r.body, "app.js"));
    wfree(&r);
    web("GET", "/korcam/api/conflicts", NULL, NULL, NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 401);
    wfree(&r);
    char cookie[100], csrf[80];
    CHECK_EQ_INT(web_login("K0001", "wrong-password-1", cookie, csrf), 401);
    CHECK(!cookie[0]);
    /* a login from another site is refused before the password is looked at */
    web("POST", "/korcam/api/login", "{\"user\":\"K0001\",\"password\":\"" K1_PASSWORD "\"}", NULL,
        NULL, "http://evil.example", &r);
    CHECK_EQ_INT(r.status, 403);
    wfree(&r);
    CHECK_EQ_INT(web_login("K0001", K1_PASSWORD, cookie, csrf), 200);
    CHECK(strlen(cookie) == 74 && strlen(csrf) == 64);
    web("POST", "/korcam/api/login", "{\"user\":\"K0001\",\"password\":\"" K1_PASSWORD "\"}", NULL,
        NULL, NULL, &r);
    CHECK(has_header(&r, "HttpOnly") && has_header(&r, "SameSite=Strict"));
    CHECK(has_header(&r, "Path=/korcam/"));
    wfree(&r);
    web("GET", "/korcam/api/summary", NULL, cookie, NULL, NULL, &r);
    CHECK(r.status == 200 && strstr(r.body, "32.73.01.1002"));
    wfree(&r);
    /* a POST without the CSRF token, or with another origin, is refused */
    int64_t id = (int64_t)srv_count("SELECT min(id) FROM conflicts WHERE resolved_at IS NULL");
    char path[96];
    snprintf(path, sizeof path, "/korcam/api/conflicts/%lld/resolve", (long long)id);
    web("POST", path, "{\"action\":\"server\"}", cookie, NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 403);
    wfree(&r);
    web("POST", path, "{\"action\":\"server\"}", cookie, csrf, "http://evil.example", &r);
    CHECK_EQ_INT(r.status, 403);
    wfree(&r);
    CHECK(srv_count("SELECT count(*) FROM conflicts WHERE id = (SELECT min(id) FROM conflicts "
                    "WHERE resolved_at IS NULL)") == 1);
    /* with both, it works; and a second time is refused */
    if (id > 0) {
        web("POST", path, "{\"action\":\"revisit\",\"note\":\"from the page\"}", cookie, csrf, NULL,
            &r);
        CHECK_EQ_INT(r.status, 200);
        wfree(&r);
        web("POST", path, "{\"action\":\"server\"}", cookie, csrf, NULL, &r);
        CHECK_EQ_INT(r.status, 409);
        CHECK(r.body && strstr(r.body, "already_resolved"));
        wfree(&r);
    }
    /* logout ends the session on the server */
    web("POST", "/korcam/api/logout", "{}", cookie, csrf, NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    wfree(&r);
    web("GET", "/korcam/api/me", NULL, cookie, NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 401);
    wfree(&r);
    /* failed logins are limited: after 5, even the right password waits */
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(web_login("K0002", "not-the-password", cookie, csrf), 401);
    web("POST", "/korcam/api/login", "{\"user\":\"K0002\",\"password\":\"" K2_PASSWORD "\"}", NULL,
        NULL, NULL, &r);
    CHECK_EQ_INT(r.status, 429);
    CHECK(has_header(&r, "Retry-After:"));
    wfree(&r);
    /* an enumerator has no password and gets the same answer as a wrong one */
    CHECK_EQ_INT(web_login("E0001", "whatever-it-is", cookie, csrf), 401);
}

static void test_summary_per_desa(void)
{
    char *json = NULL;
    REQUIRE_VOID(pd_korcam_summary(kor, &O, &json) == PD_OK);
    cJSON *j = cJSON_Parse(json);
    free(json);
    const cJSON *d, *d1 = NULL, *d2 = NULL;
    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(j, "desa"))
    {
        if (!strcmp(jstr(d, "desa"), TH_AREA))
            d1 = d;
        if (!strcmp(jstr(d, "desa"), "32.73.01.1002"))
            d2 = d;
    }
    REQUIRE_VOID(d1 && d2);
    CHECK(jnum(d1, "visited") >= 1);
    CHECK_EQ_INT((int64_t)(jnum(d1, "visited") + jnum(d1, "pending")),
                 (int64_t)jnum(d1, "households"));
    CHECK(jnum(d1, "conflicts_resolved") >= 8);
    CHECK_EQ_INT((int64_t)jnum(d1, "conflicts_open"),
                 srv_count("SELECT count(*) FROM conflicts WHERE resolved_at IS NULL"));
    CHECK_EQ_INT((int64_t)jnum(d2, "households"), 5);
    CHECK_EQ_INT((int64_t)jnum(d2, "visited"), 0);
    cJSON_Delete(j);
}

/* Users and passwords the harness's server lacks: two korcams, a second desa. */
static int extra_setup(void)
{
    pd_error err = {0};
    pd_server *s = NULL;
    int rc = pd_server_open(&s, srv.db, srv.data, &err);
    if (rc != PD_OK) {
        fprintf(stderr, "open: %s\n", err.msg);
        return rc;
    }
    pd_server_user k1 = {"K0001", "korcam", "Hendra Gunawan", "32.73.01", NULL};
    pd_server_user k2 = {"K0002", "korcam", "Yuli Astuti", "32.73.02", NULL};
    pd_server_load_stats ls;
    if ((rc = pd_server_user_add(s, &k1)) != PD_OK || (rc = pd_server_user_add(s, &k2)) != PD_OK ||
        (rc = pd_server_load_generated(s, "32.73.01.1002", 3, 5, &ls)) != PD_OK ||
        (rc = pd_server_load_generated(s, "32.73.02.1001", 5, 3, &ls)) != PD_OK ||
        (rc = pd_server_user_passwd(s, "K0001", K1_PASSWORD, strlen(K1_PASSWORD))) != PD_OK ||
        (rc = pd_server_user_passwd(s, "K0002", K2_PASSWORD, strlen(K2_PASSWORD))) != PD_OK)
        fprintf(stderr, "setup: %s\n", pd_server_errmsg(s));
    /* refusals of the operator's act */
    if (rc == PD_OK) {
        CHECK_EQ_INT(pd_server_user_passwd(s, "K0001", "short", 5), PD_ERR_INVALID);
        CHECK_EQ_INT(pd_server_user_passwd(s, "E0001", "long-enough-pw", 14), PD_ERR_INVALID);
        CHECK_EQ_INT(pd_server_user_passwd(s, "NOBODY", "long-enough-pw", 14), PD_ERR_NOTFOUND);
    }
    pd_server_close(s);
    return rc;
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    O = th_options();
    dir = pd_test_tmpdir("korcam");
    REQUIRE(dir && th_server_create(&srv, dir, 20) == PD_OK);
    REQUIRE(extra_setup() == PD_OK);
    REQUIRE(th_server_start(&srv, 0) == 0);
    RUN(test_devices_enrol_and_pull);
    RUN(test_field_changed_by_two_devices_is_decided_and_pulled);
    RUN(test_device_change_against_a_korcam_correction);
    RUN(test_duplicate_nik_in_two_households_merged);
    RUN(test_nik_twice_in_one_household_split);
    RUN(test_double_visit_goes_back_for_a_revisit);
    RUN(test_proposed_households_matching_existing_ones);
    RUN(test_member_moved_out_or_deceased_but_active_elsewhere);
    RUN(test_korcam_of_another_kecamatan_sees_and_decides_nothing);
    RUN(test_a_nik_held_in_another_kecamatan_shows_nothing_of_it);
    RUN(test_an_enumerators_device_cannot_use_the_queue);
    RUN(test_bad_decisions_change_nothing);
    RUN(test_web_login_session_csrf_and_rate_limit);
    RUN(test_summary_per_desa);
    th_server_kill(&srv, SIGTERM);
    pd_store_close(enu1);
    pd_store_close(enu2);
    pd_store_close(sup);
    pd_store_close(kor);
    pd_store_close(kor2);
    pd_test_rmtree(dir);
    free(dir);
    curl_global_cleanup();
    return pd_test_finish();
}

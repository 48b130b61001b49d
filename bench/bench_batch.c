/*
 * bench_batch.c — what a day of fieldwork costs on the wire, and how long sealing and verifying a
 * batch take.
 *
 *   bench_batch [DIR]     (default $TMPDIR or /tmp; the stores are removed afterwards)
 *
 * A realistic day of one enumerator, made through the real library on a real encrypted store (so
 * the ops are exactly what the op log records): 20 visits, each with an outcome and a GPS fix,
 * two corrections per visited household (one household field, one member field), and a new
 * member (a birth) in one household of five. pd_batch_seal turns the day into one batch; its
 * bytes — header, author signature and payload — plus the supervisor's approval record are what
 * travels, amortised over the 20 visits.
 *
 * Beside it, the same 20 visits as ODK Collect would send them: one XForm instance per visit for
 * a DTKS verification form (<data id="dtks_verval" version="...">, meta/instanceID uuid, start and
 * end, deviceid, household, outcome, geopoint "lat lon alt acc", a repeat of corrections, a repeat
 * of new members), counted as uncompressed XML bytes (Collect posts the XML as is).
 * Goals from the issue: <= 150 bytes a visit, >= 10x smaller than the XML.
 *
 * Timings: pd_batch_build (encode, deflate, sign) and pd_batch_verify (checks, signature,
 * inflate, decode) of the day's batch, median of 200 runs each; pd_batch_seal on the store
 * (op log read, photo lookup, build, insert, marking the ops), median over 10 days.
 */
#include "batch_internal.h"
#include "pd_sync.h"
#include "store_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VISITS 20
#define DAYS 10
#define RUNS 200
#define PIN "135790"

static const int64_t DAY0 = 1740787200000; /* 2025-03-01 00:00 UTC = 07:00 WIB */

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t rng = 0x2545f4914f6cdd1dull;
static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

static int exec(pd_store *s, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(pd_store_sqlite(s), sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK)
        fprintf(stderr, "bench_batch: %s\n", msg);
    sqlite3_free(msg);
    return rc == SQLITE_OK ? 0 : -1;
}

/* A prelist of DAYS * VISITS households of one desa, with three members each. */
static int load_prelist(pd_store *s)
{
    static const char *const heads[] = {"Komar", "Oding",        "Tuti",        "Asep Saepudin",
                                        "Dedeh", "Ujang Rohman", "Siti Aminah", "Nining"};
    if (exec(s, "BEGIN") || exec(s, "INSERT INTO assignment (desa) VALUES ('32.73.01.1001')"))
        return -1;
    for (int h = 1; h <= DAYS * VISITS; h++) {
        char sql[768];
        snprintf(sql, sizeof sql,
                 "INSERT INTO household (id, rev, prov, kab, kec, desa, sls, address, head_name, "
                 "member_count, floor_area, water_source, lat, lon) VALUES ('3273011001%06d', 1, "
                 "'32', '32.73', '32.73.01', '32.73.01.1001', 'RT 00%d RW 001', "
                 "'Jl. Sam Ratulangi No. %d, RT 00%d RW 001', '%s', 3, %d, %d, %.6f, %.6f)",
                 h, h % 5 + 1, h, h % 5 + 1, heads[h % 8], 24 + h % 40, 1 + h % 6,
                 -6.5150 + (h % 20) * 0.0003, 108.2760 + (h / 20) * 0.0004);
        if (exec(s, sql))
            return -1;
        for (int m = 1; m <= 3; m++) {
            snprintf(sql, sizeof sql,
                     "INSERT INTO member (id, household_id, rev, member_no, name, nik, sex, "
                     "birth_date, relationship, schooling, work) VALUES ('3273011001%06d%02d', "
                     "'3273011001%06d', 1, %d, 'Anggota %d-%d', '327301%02d%02d%02d%04d', %d, "
                     "'19%02d-%02d-%02d', %d, 3, 2)",
                     h, m, h, m, h, m, 1 + m * 3 + (m == 2 ? 40 : 0), 1 + m, 80 + m, h,
                     m == 2 ? 2 : 1, 80 + m, 1 + m, 1 + m * 3,
                     m == 1   ? 1
                     : m == 2 ? 2
                              : 3);
            if (exec(s, sql))
                return -1;
        }
    }
    return exec(s, "COMMIT");
}

/* One day's work on households day*VISITS+1 .. +VISITS. */
static int fieldwork(pd_store *s, int day)
{
    static const char *const outcomes[] = {"found",     "found",         "found",     "found",
                                           "found",     "found",         "not_found", "refused",
                                           "moved_out", "found_new_head"};
    int64_t t = DAY0 + (int64_t)day * 86400000 + 2 * 3600000; /* 09:00 WIB */
    for (int v = 0; v < VISITS; v++) {
        int h = day * VISITS + v + 1;
        char hh[32], mem[40];
        snprintf(hh, sizeof hh, "3273011001%06d", h);
        t += 900000 + rnd(600000); /* 15-25 minutes a household */
        pd_gps g = {.lat = -6.5150 + (h % 20) * 0.0003 + ((int)rnd(200) - 100) * 1e-6,
                    .lon = 108.2760 + (h / 20) * 0.0004 + ((int)rnd(200) - 100) * 1e-6,
                    .accuracy = 3 + rnd(120) / 10.0,
                    .altitude = 700 + rnd(300) / 10.0,
                    .fix_time = t - rnd(20000),
                    .provider = "gps"};
        pd_visit_in in = {
            .household_id = hh, .outcome = outcomes[rnd(10)], .visited_at = t, .gps = &g};
        char id[PD_ID_MAX];
        if (pd_visit_record(s, &in, id, NULL) != PD_OK)
            return fprintf(stderr, "visit: %s\n", pd_store_errmsg(s)), -1;
        pd_value floor = {.type = PD_VAL_INT, .i = 30 + rnd(60)};
        if (pd_household_set(s, hh, "floor_area", &floor, NULL) != PD_OK)
            return fprintf(stderr, "correction: %s\n", pd_store_errmsg(s)), -1;
        snprintf(mem, sizeof mem, "%s%02d", hh, 3);
        pd_value school = {.type = PD_VAL_INT, .i = 4 + rnd(3)};
        if (pd_member_set(s, mem, "schooling", &school, NULL) != PD_OK)
            return fprintf(stderr, "correction: %s\n", pd_store_errmsg(s)), -1;
        if (v % 5 == 4) { /* a baby girl born last month: NIK day + 40 */
            char nik[17], bd[11];
            int dd = 10 + (int)rnd(8);
            snprintf(nik, sizeof nik, "327301%02d0225%04d", dd + 40, h % 10000);
            snprintf(bd, sizeof bd, "2025-02-%02d", dd);
            pd_member_new m = {.name = "Bayi Putri Lestari",
                               .nik = nik,
                               .sex = 2,
                               .birth_place = "Bandung",
                               .birth_date = bd,
                               .relationship = 3,
                               .reason = "born"};
            if (pd_member_add(s, hh, &m, id, NULL) != PD_OK)
                return fprintf(stderr, "member: %s\n", pd_store_errmsg(s)), -1;
        }
    }
    return 0;
}

/* ---- ODK Collect submissions of the same visits ------------------------------------------------
 */

static void iso(char *buf, size_t cap, int64_t ms)
{
    time_t t = (time_t)(ms / 1000) + 7 * 3600; /* WIB, as the phone shows it */
    struct tm tm;
    gmtime_r(&t, &tm);
    char s[32];
    strftime(s, sizeof s, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, cap, "%s.%03d+07:00", s, (int)((ms % 1000 + 1000) % 1000));
}

static void uuid(char *out)
{
    uint8_t b[16];
    randombytes_buf(b, sizeof b);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
             b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
             b[14], b[15]);
}

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(it) ? it->valuestring : "";
}

static double jnum(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(it) ? it->valuedouble : 0;
}

/* The XForm instances of a day's visits, decoded from the batch: one per visit. */
static size_t odk_bytes(const pd_batch *b, size_t *count, char **example)
{
    size_t n, total = 0;
    const pd_op *ops = pd_batch_ops(b, &n);
    *count = 0;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ops[i].kind, "visit") != 0)
            continue;
        char *txt = strndup((const char *)ops[i].new_value.p, ops[i].new_value.len);
        cJSON *j = txt ? cJSON_Parse(txt) : NULL;
        free(txt);
        if (!j)
            continue;
        const char *hh = jstr(j, "household_id");
        double at = jnum(j, "visited_at");
        char start[64], end[64], id[37], xml[8192];
        iso(start, sizeof start, (int64_t)at - 11 * 60000 - 23456);
        iso(end, sizeof end, (int64_t)at);
        uuid(id);
        size_t len = (size_t)snprintf(
            xml, sizeof xml,
            "<?xml version='1.0' ?><data id=\"dtks_verval\" version=\"2025022801\" "
            "xmlns:jr=\"http://openrosa.org/javarosa\" xmlns:orx=\"http://openrosa.org/xforms\">"
            "<start>%s</start><end>%s</end><today>%.10s</today>"
            "<deviceid>collect:Xk3v9QmT2sLp8RzA</deviceid><username>enum.3273.0042</username>"
            "<household><id_dtks>%s</id_dtks><prov>32</prov><kab>3273</kab><kec>327301</kec>"
            "<desa>3273011001</desa><sls>RT 003 RW 001</sls><outcome>%s</outcome>"
            "<location>%.7f %.7f %.1f %.1f</location></household>",
            start, end, start, hh, jstr(j, "outcome"), jnum(j, "lat"), jnum(j, "lon"),
            jnum(j, "altitude_m"), jnum(j, "accuracy_m"));
        /* the corrections and new members of this household */
        size_t members = 0;
        for (size_t k = 0; k < n; k++) {
            if (strncmp(ops[k].target, hh, strlen(hh)) != 0 || k == i)
                continue;
            if (!strcmp(ops[k].kind, "set") && strcmp(ops[k].field, "status") != 0) {
                char old[64] = "", nw[64] = "";
                if (ops[k].old_value.type == PD_VAL_INT)
                    snprintf(old, sizeof old, "%lld", (long long)ops[k].old_value.i);
                if (ops[k].new_value.type == PD_VAL_INT)
                    snprintf(nw, sizeof nw, "%lld", (long long)ops[k].new_value.i);
                len += (size_t)snprintf(xml + len, sizeof xml - len,
                                        "<corrections><record>%s</record><field>%s</field>"
                                        "<old_value>%s</old_value><new_value>%s</new_value>"
                                        "</corrections>",
                                        ops[k].entity, ops[k].field, old, nw);
            } else if (!strcmp(ops[k].kind, "create") && !strcmp(ops[k].entity, "member")) {
                char *ms = strndup((const char *)ops[k].new_value.p, ops[k].new_value.len);
                cJSON *m = ms ? cJSON_Parse(ms) : NULL;
                free(ms);
                if (!m)
                    continue;
                members++;
                len += (size_t)snprintf(
                    xml + len, sizeof xml - len,
                    "<new_member><member_name>%s</member_name><nik>%s</nik><sex>%d</sex>"
                    "<birth_place>%s</birth_place><birth_date>%s</birth_date>"
                    "<relationship>%d</relationship><member_reason>born</member_reason>"
                    "</new_member>",
                    jstr(m, "name"), jstr(m, "nik"), (int)jnum(m, "sex"), jstr(m, "birth_place"),
                    jstr(m, "birth_date"), (int)jnum(m, "relationship"));
                cJSON_Delete(m);
            }
        }
        len += (size_t)snprintf(xml + len, sizeof xml - len,
                                "<new_member_count>%zu</new_member_count><notes/>"
                                "<meta><instanceID>uuid:%s</instanceID>"
                                "<instanceName>%s %.10s</instanceName></meta></data>",
                                members, id, hh, start);
        total += len;
        if (example && !*example)
            *example = strdup(xml);
        (*count)++;
        cJSON_Delete(j);
    }
    return total;
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    const char *base = argc > 1 ? argv[1] : getenv("TMPDIR");
    char home[4096];
    snprintf(home, sizeof home, "%s/pd-bench-batch-%ld", base && *base ? base : "/tmp",
             (long)time(NULL));
    pd_store *s = NULL;
    pd_error err = {0};
    int status = 1;
    uint8_t pk[PD_PUBKEY_BYTES], sk[PD_SECKEY_BYTES];
    crypto_sign_keypair(pk, sk);
    if (pd_store_create(&s, home, PIN, &PD_KDF_TEST, &err) != PD_OK)
        return fprintf(stderr, "bench_batch: %s\n", err.msg), 1;
    uint8_t epk[PD_PUBKEY_BYTES];
    if (pd_store_add_role(s, "enumerator", epk) != PD_OK || load_prelist(s) != 0)
        goto out;

    /* Day 1 on the wire. */
    double seal_ms[DAYS];
    pd_seal_result r;
    if (fieldwork(s, 0) != 0)
        goto out;
    double t0 = now_ms();
    if (pd_batch_seal(s, &r) != PD_OK) {
        fprintf(stderr, "seal: %s\n", pd_store_errmsg(s));
        goto out;
    }
    seal_ms[0] = now_ms() - t0;
    uint8_t *file = NULL;
    size_t flen = 0;
    if (pd_outbox_export(s, 1, &file, &flen) != PD_OK)
        goto out;
    pd_bundle_item *items = NULL;
    size_t nitems = 0;
    pd_batch *b = NULL;
    if (pd_bundle_parse(&items, &nitems, file, flen, NULL) != PD_OK ||
        pd_batch_verify(&b, items[0].bytes, items[0].len, epk, &err) != PD_OK) {
        fprintf(stderr, "bench_batch: %s\n", err.msg);
        free(items);
        free(file);
        goto out;
    }
    const pd_batch_header *h = pd_batch_header_get(b);
    size_t nops, batch_bytes = items[0].len;
    const pd_op *ops = pd_batch_ops(b, &nops);
    size_t text = 0;
    for (size_t i = 0; i < nops; i++)
        text += strlen(ops[i].target) + strlen(ops[i].field) + ops[i].old_value.len +
                ops[i].new_value.len + 24;
    size_t wire = batch_bytes + PD_REVIEW_FIXED_BYTES;
    double per_visit = (double)wire / VISITS;
    size_t nxml = 0;
    char *example = NULL;
    size_t xml = odk_bytes(b, &nxml, &example);
    double xml_per_visit = nxml ? (double)xml / (double)nxml : 0;

    /* Build and verify of the same ops, pure. */
    double build[RUNS], verify[RUNS];
    pd_batch_params p = {
        .device_id = h->device_id, .area = h->area, .seq = 1, .created_at = h->created_at};
    size_t nph;
    const pd_batch_photo *ph = pd_batch_photos(b, &nph);
    for (int i = 0; i < RUNS; i++) {
        uint8_t *bytes = NULL;
        size_t len = 0;
        double a = now_ms();
        int rc = pd_batch_build(&bytes, &len, &p, ops, nops, ph, nph, sk, &err);
        double m = now_ms();
        if (rc == PD_OK)
            rc = pd_batch_verify(NULL, bytes, len, pk, &err);
        double z = now_ms();
        free(bytes);
        if (rc != PD_OK) {
            fprintf(stderr, "bench_batch: %s\n", err.msg);
            pd_batch_free(b);
            free(items);
            free(file);
            free(example);
            goto out;
        }
        build[i] = m - a;
        verify[i] = z - m;
    }
    /* More days sealed on the store. */
    for (int d = 1; d < DAYS; d++) {
        if (fieldwork(s, d) != 0)
            break;
        t0 = now_ms();
        if (pd_batch_seal(s, &r) != PD_OK) {
            fprintf(stderr, "seal: %s\n", pd_store_errmsg(s));
            break;
        }
        seal_ms[d] = now_ms() - t0;
    }

    printf("bench_batch: one enumerator's day: %d visits (outcome + GPS fix), 2 corrections each,"
           " a new member in 1 household of 5\n",
           VISITS);
    printf("  ops in the batch                    %8zu  (%zu bytes as text)\n", nops, text);
    printf("  payload inflated / deflated         %8u / %u bytes\n", h->inflated_len,
           h->payload_len);
    printf("  batch on the wire                   %8zu bytes (header %d + signature %d + payload)"
           "\n",
           batch_bytes, PD_BATCH_HEADER_BYTES, PD_SIG_BYTES);
    printf("  + supervisor's approval record      %8d bytes\n", PD_REVIEW_FIXED_BYTES);
    printf("  wire bytes per visit                %8.1f   (goal <= 150: %s)\n", per_visit,
           per_visit <= 150 ? "met" : "MISSED");
    printf("  ODK Collect XML per visit           %8.1f   (%zu submissions, %zu bytes)\n",
           xml_per_visit, nxml, xml);
    printf("  ODK / pendata                       %8.1fx  (goal >= 10x: %s)\n",
           xml_per_visit / per_visit, xml_per_visit / per_visit >= 10 ? "met" : "MISSED");
    printf("  build (encode+deflate+sign), median %8.3f ms over %d runs\n", median(build, RUNS),
           RUNS);
    printf("  verify (check+inflate+decode), med. %8.3f ms over %d runs\n", median(verify, RUNS),
           RUNS);
    printf("  pd_batch_seal on the store, median  %8.3f ms over %d days\n", median(seal_ms, DAYS),
           DAYS);
    if (getenv("PD_BENCH_VERBOSE") && example)
        printf("\n  one ODK submission (%zu bytes):\n%s\n", strlen(example), example);
    status = 0;
    pd_batch_free(b);
    free(items);
    free(file);
    free(example);
out:
    if (status)
        fprintf(stderr, "bench_batch: failed: %s\n", s ? pd_store_errmsg(s) : "");
    sodium_memzero(sk, sizeof sk);
    pd_store_close(s);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", home);
    if (!strchr(home, '\''))
        status |= system(cmd) != 0;
    return status;
}

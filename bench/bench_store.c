/*
 * bench_store.c — the encrypted device store against plain SQLite on the same work, in one run.
 *
 *   bench_store [DIR]     (default $TMPDIR or /tmp; the files are removed afterwards)
 *
 * Both sides use the device schema (schema/device, through pd_schema_apply) and the same pragmas:
 * journal_mode=WAL, synchronous=FULL, temp_store=MEMORY, secure_delete=ON, mmap_size=0,
 * foreign_keys=ON, cache_size=-PD_STORE_CACHE_KIB (the store's page cache; the environment
 * variable PD_BENCH_CACHE_KIB=N sets another on both sides, e.g. 2000 for SQLite's default, to
 * see what the cache is worth: a page missing from the cache costs the encrypted side a
 * decryption, the plain side only a copy from the OS). synchronous=FULL because it is what the
 * store runs with (a visit acknowledged to the enumerator must survive a power cut, and cryptvfs.c
 * relies on it for journal recovery); giving the plain side NORMAL would measure fsync policy, not
 * encryption. The encrypted side is a real pd_store (pdcrypt VFS, key from store.key); its Argon2id
 * unlock is not timed.
 *
 * Phases (each timed for both sides; bulk encrypted then plain, the others alternating in blocks
 * of 50 so that load from elsewhere on the machine falls on both alike):
 *   bulk     10,000 households with 40,000 members, one transaction (a prelist import)
 *   visits   1,000 transactions, each: insert a visit, update the household's status, append an op
 *   lookups  10,000 member lookups by NIK (joined to their household; 1,000 took ~20 ms, too
 *            close to a scheduler slice on a busy machine to compare)
 * The goal from the issue: encrypted <= 1.15x plain.
 */
#include "internal.h"
#include "schema.h"
#include "store_internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define HOUSEHOLDS 10000
#define MEMBERS_PER 4
#define VISITS 1000
#define LOOKUPS 10000
#define BLOCK 50 /* visits and lookups alternate between the sides in blocks of this many */
#define PIN "135790"

/* Wall-clock and process CPU time. The CPU figure is what encryption costs and is steadier than
 * the wall clock on a machine busy with other work; the wall clock also holds the fsyncs. */
typedef struct span {
    double wall, cpu;
} span;

static double clock_s(clockid_t id)
{
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static span span_start(void)
{
    return (span){clock_s(CLOCK_MONOTONIC), clock_s(CLOCK_PROCESS_CPUTIME_ID)};
}

static span span_since(span t0)
{
    span t = span_start();
    return (span){t.wall - t0.wall, t.cpu - t0.cpu};
}

static void span_add(span *sum, span t)
{
    sum->wall += t.wall;
    sum->cpu += t.cpu;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static const char *const given[] = {"Siti", "Ahmad", "Dewi", "Budi",   "Nur",  "Agus",
                                    "Sri",  "Eko",   "Rina", "Joko",   "Wati", "Hadi",
                                    "Ayu",  "Rudi",  "Yuni", "Bambang"};
static const char *const family[] = {"Nurhaliza", "Santoso", "Wijaya",  "Lestari", "Hidayat",
                                     "Pratama",   "Saputra", "Kusuma",  "Rahayu",  "Setiawan",
                                     "Gunawan",   "Susanti", "Purnama", "Halim"};

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench_store: %s: %s\n", what, msg);
    exit(1);
}

static void exec_or_die(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        die(sql, msg ? msg : "failed");
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        die(sql, sqlite3_errmsg(db));
    return st;
}

static void step_done(sqlite3 *db, sqlite3_stmt *st)
{
    if (sqlite3_step(st) != SQLITE_DONE)
        die("step", sqlite3_errmsg(db));
    sqlite3_reset(st);
}

static void nik_of(char out[17], unsigned hh, unsigned m)
{
    /* kecamatan 327301, birth date (women +40 on the day), serial: unique per (hh, m) */
    unsigned day = 1 + (hh + m) % 28 + ((m % 2) ? 40 : 0);
    unsigned month = 1 + hh % 12;
    unsigned year = (60 + hh % 40) % 100;
    snprintf(out, 17, "327301%02u%02u%02u%04u", day % 100, month % 100, year % 100,
             (hh * MEMBERS_PER + m) % 10000);
    /* unique: serial, month and year fix hh modulo lcm(2500, 12, 40) = 15000 > HOUSEHOLDS */
}

static span phase_bulk(sqlite3 *db)
{
    rng = 0x9e3779b97f4a7c15ull;
    span t = span_start();
    exec_or_die(db, "BEGIN IMMEDIATE");
    sqlite3_stmt *h = prep(db, "INSERT INTO household (id, prov, kab, kec, desa, sls, address, "
                               "head_name, kk, member_count, tenure, floor_area, floor_material, "
                               "wall_material, roof_material, rooms, water_source, lighting, "
                               "power_va, cooking_fuel, toilet, asset_flags, desil, lat, lon) "
                               "VALUES (?1, '32', '32.73', '32.73.01', ?2, ?3, ?4, ?5, ?6, ?7, "
                               "?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, "
                               "?21, ?22)");
    sqlite3_stmt *m = prep(db, "INSERT INTO member (id, household_id, member_no, name, nik, kk, "
                               "sex, birth_place, birth_date, relationship, marital, schooling, "
                               "work, programmes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'Bandung', "
                               "?8, ?9, ?10, ?11, ?12, ?13)");
    for (int i = 0; i < HOUSEHOLDS; i++) {
        char id[32], desa[32], sls[16], addr[96], head[96], kk[17];
        snprintf(id, sizeof id, "32730110%08d", i);
        snprintf(desa, sizeof desa, "32.73.01.%04d", 1001 + i % 7);
        snprintf(sls, sizeof sls, "RT%03d/RW%02d", 1 + i % 30, 1 + i % 9);
        snprintf(addr, sizeof addr, "Jl. %s No. %d, Gang %d", family[next_rand() % 14],
                 1 + (int)(next_rand() % 200), 1 + i % 12);
        snprintf(head, sizeof head, "%s %s", given[next_rand() % 16], family[next_rand() % 14]);
        snprintf(kk, sizeof kk, "3273010101%06d", i);
        sqlite3_bind_text(h, 1, id, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(h, 2, desa, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(h, 3, sls, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(h, 4, addr, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(h, 5, head, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(h, 6, kk, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int(h, 7, MEMBERS_PER);
        for (int k = 8; k <= 19; k++)
            sqlite3_bind_int(h, k, 1 + (int)(next_rand() % 6));
        sqlite3_bind_int(h, 20, 1 + (int)(next_rand() % 10));
        sqlite3_bind_double(h, 21, -6.9 + (double)(next_rand() % 10000) / 1e5);
        sqlite3_bind_double(h, 22, 107.6 + (double)(next_rand() % 10000) / 1e5);
        step_done(db, h);
        for (int j = 0; j < MEMBERS_PER; j++) {
            char mid[40], name[96], nik[17], birth[16];
            snprintf(mid, sizeof mid, "%s%02d", id, j + 1);
            snprintf(name, sizeof name, "%s %s %s", given[next_rand() % 16],
                     given[next_rand() % 16], family[next_rand() % 14]);
            nik_of(nik, i, j);
            snprintf(birth, sizeof birth, "19%02d-%02d-%02d", 60 + i % 40, 1 + i % 12,
                     1 + (i + j) % 28);
            sqlite3_bind_text(m, 1, mid, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(m, 2, id, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(m, 3, j + 1);
            sqlite3_bind_text(m, 4, name, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(m, 5, nik, -1, SQLITE_TRANSIENT);
            sqlite3_bind_text(m, 6, kk, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(m, 7, 1 + j % 2);
            sqlite3_bind_text(m, 8, birth, -1, SQLITE_TRANSIENT);
            sqlite3_bind_int(m, 9, j == 0 ? 1 : j == 1 ? 2 : 3);
            sqlite3_bind_int(m, 10, j < 2 ? 2 : 1);
            sqlite3_bind_int(m, 11, 1 + (int)(next_rand() % 7));
            sqlite3_bind_int(m, 12, 1 + (int)(next_rand() % 9));
            sqlite3_bind_int(m, 13, (int)(next_rand() % 16));
            step_done(db, m);
        }
    }
    sqlite3_finalize(h);
    sqlite3_finalize(m);
    exec_or_die(db, "COMMIT");
    return span_since(t);
}

/* Visits first .. first+count-1; each one's random choices depend only on its number. */
static span phase_visits(sqlite3 *db, int first, int count)
{
    static const char *const outcomes[] = {"found", "found_new_head", "moved_within", "not_found",
                                           "refused"};
    span t = span_start();
    sqlite3_stmt *v = prep(db, "INSERT INTO visit (id, household_id, outcome, visited_at, lat, "
                               "lon, accuracy_m, fix_time, provider, notes) VALUES (?1, ?2, ?3, "
                               "?4, ?5, ?6, ?7, ?4, 'gps', ?8)");
    sqlite3_stmt *u = prep(db, "UPDATE household SET status = ?2 WHERE id = ?1");
    sqlite3_stmt *o = prep(db, "INSERT INTO op (device_id, hlc, kind, entity, target, field, "
                               "new_value, base_rev) VALUES ('0123456789abcdef', ?1, 'visit', "
                               "'visit', ?2, '', ?3, 0)");
    for (int i = first; i < first + count; i++) {
        char vid[40], hid[32], json[256];
        rng = 0x1234567887654321ull ^ ((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull);
        int hh = (int)(next_rand() % HOUSEHOLDS);
        const char *outcome = outcomes[next_rand() % 5];
        int64_t when = 1700000000000ll + (int64_t)i * 60000;
        snprintf(vid, sizeof vid, "0123456789abcdef-%d", i + 1);
        snprintf(hid, sizeof hid, "32730110%08d", hh);
        snprintf(json, sizeof json,
                 "{\"household_id\":\"%s\",\"outcome\":\"%s\",\"visited_at\":%lld,"
                 "\"lat\":-6.91234,\"lon\":107.61234,\"accuracy_m\":8.5}",
                 hid, outcome, (long long)when);
        exec_or_die(db, "BEGIN IMMEDIATE");
        sqlite3_bind_text(v, 1, vid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(v, 2, hid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(v, 3, outcome, -1, SQLITE_STATIC);
        sqlite3_bind_int64(v, 4, when);
        sqlite3_bind_double(v, 5, -6.91234);
        sqlite3_bind_double(v, 6, 107.61234);
        sqlite3_bind_double(v, 7, 8.5);
        sqlite3_bind_text(v, 8, "rumah semi permanen, pemilik di rumah", -1, SQLITE_STATIC);
        step_done(db, v);
        sqlite3_bind_text(u, 1, hid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(u, 2, outcome, -1, SQLITE_STATIC);
        step_done(db, u);
        sqlite3_bind_int64(o, 1, when << 16);
        sqlite3_bind_text(o, 2, vid, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(o, 3, json, -1, SQLITE_TRANSIENT);
        step_done(db, o);
        exec_or_die(db, "COMMIT");
    }
    sqlite3_finalize(v);
    sqlite3_finalize(u);
    sqlite3_finalize(o);
    return span_since(t);
}

static span phase_lookups(sqlite3 *db, int first, int count)
{
    span t = span_start();
    sqlite3_stmt *q = prep(db, "SELECT m.id, m.name, m.birth_date, h.address, h.head_name, "
                               "h.status FROM member m JOIN household h ON h.id = m.household_id "
                               "WHERE m.nik = ?1");
    int found = 0;
    for (int i = first; i < first + count; i++) {
        char nik[17];
        rng = 0xabcdef0123456789ull ^ ((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull);
        nik_of(nik, (int)(next_rand() % HOUSEHOLDS), (int)(next_rand() % MEMBERS_PER));
        sqlite3_bind_text(q, 1, nik, -1, SQLITE_TRANSIENT);
        while (sqlite3_step(q) == SQLITE_ROW)
            found++;
        sqlite3_reset(q);
    }
    sqlite3_finalize(q);
    if (found < count)
        die("lookups", "a NIK was not found");
    return span_since(t);
}

static void plain_pragmas(sqlite3 *db)
{
    exec_or_die(db, "PRAGMA temp_store = MEMORY; PRAGMA secure_delete = ON; "
                    "PRAGMA mmap_size = 0; PRAGMA foreign_keys = ON; "
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL");
}

/* The page cache both sides run with, in KiB: PD_BENCH_CACHE_KIB or the store's own. */
static long cache_kib(void)
{
    const char *e = getenv("PD_BENCH_CACHE_KIB");
    char *end = NULL;
    long v = e && *e ? strtol(e, &end, 10) : PD_STORE_CACHE_KIB;
    if (end && (*end || v < 100 || v > 1 << 20))
        die("PD_BENCH_CACHE_KIB", "not a number of KiB from 100 to 1048576");
    return v;
}

static void set_cache(sqlite3 *db, long kib)
{
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA cache_size = -%ld", kib);
    exec_or_die(db, sql);
}

static long long db_kib(sqlite3 *db)
{
    sqlite3_stmt *st = prep(db, "SELECT page_count * page_size FROM pragma_page_count, "
                                "pragma_page_size");
    long long v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) / 1024 : -1;
    sqlite3_finalize(st);
    return v;
}

static void report(const char *phase, span enc, span plain)
{
    printf("  %-8s  encrypted %8.1f ms   plain %8.1f ms   ratio %.3f   (cpu %7.1f / %7.1f ms, "
           "ratio %.3f)\n",
           phase, enc.wall * 1e3, plain.wall * 1e3, enc.wall / plain.wall, enc.cpu * 1e3,
           plain.cpu * 1e3, enc.cpu / plain.cpu);
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (!p)
        die("join", "out of memory");
    snprintf(p, n, "%s/%s", a, b);
    return p;
}

static void remove_files(const char *dir, const char *const *names)
{
    for (; *names; names++) {
        char *p = join(dir, *names);
        unlink(p);
        free(p);
    }
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    const char *base = argc > 1 ? argv[1] : getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    char *dir = join(base, "pd-bench-store-XXXXXX");
    if (!mkdtemp(dir))
        die(dir, "cannot create the directory");
    char *home = join(dir, "home");
    char *plain_path = join(dir, "plain.db");

    pd_store *s = NULL;
    pd_error err = {0};
    if (pd_store_create(&s, home, PIN, &PD_KDF_TEST, &err) != PD_OK)
        die("pd_store_create", err.msg);
    sqlite3 *enc = pd_store_sqlite(s);
    sqlite3 *plain = NULL;
    if (sqlite3_open(plain_path, &plain) != SQLITE_OK)
        die(plain_path, "cannot open");
    plain_pragmas(plain);
    long kib = cache_kib();
    set_cache(plain, kib);
    set_cache(enc, kib);
    if (pd_schema_apply(plain, pd_schema_device, pd_schema_device_count, &err) != PD_OK)
        die("schema", err.msg);

    printf("bench_store: %d households, %d members, %d visit transactions, %d NIK lookups\n"
           "  (WAL, synchronous=FULL, cache_size %ld KiB on both; files in %s)\n",
           HOUSEHOLDS, HOUSEHOLDS * MEMBERS_PER, VISITS, LOOKUPS, kib, dir);
    span e1 = phase_bulk(enc), p1 = phase_bulk(plain);
    report("bulk", e1, p1);
    /* The short phases run in alternating blocks (each side first in turn), so that load from
     * elsewhere on the machine falls on both sides alike. */
    span e2 = {0}, p2 = {0}, e3 = {0}, p3 = {0};
    for (int b = 0; b < VISITS; b += BLOCK) {
        if ((b / BLOCK) % 2 == 0) {
            span_add(&e2, phase_visits(enc, b, BLOCK));
            span_add(&p2, phase_visits(plain, b, BLOCK));
        } else {
            span_add(&p2, phase_visits(plain, b, BLOCK));
            span_add(&e2, phase_visits(enc, b, BLOCK));
        }
    }
    report("visits", e2, p2);
    for (int b = 0; b < LOOKUPS; b += BLOCK) {
        if ((b / BLOCK) % 2 == 0) {
            span_add(&e3, phase_lookups(enc, b, BLOCK));
            span_add(&p3, phase_lookups(plain, b, BLOCK));
        } else {
            span_add(&p3, phase_lookups(plain, b, BLOCK));
            span_add(&e3, phase_lookups(enc, b, BLOCK));
        }
    }
    report("lookups", e3, p3);
    span te = e1, tp = p1;
    span_add(&te, e2);
    span_add(&te, e3);
    span_add(&tp, p2);
    span_add(&tp, p3);
    report("total", te, tp);
    printf("  database  encrypted %lld KiB, plain %lld KiB\n", db_kib(enc), db_kib(plain));

    sqlite3_close(plain);
    pd_store_close(s);
    static const char *const home_files[] = {"store.db", "store.db-wal", "store.db-shm",
                                             "store.key", NULL};
    static const char *const dir_files[] = {"plain.db", "plain.db-wal", "plain.db-shm", NULL};
    remove_files(home, home_files);
    remove_files(dir, dir_files);
    free(plain_path);
    free(home);
    free(dir);
    return 0;
}

/*
 * test_cryptvfs.c — the encrypting VFS ("pdcrypt", core/cryptvfs.c) on real files.
 *
 * Proves: no plaintext reaches the database, the WAL or the rollback journal (and the same
 * scenarios through the default VFS do show it, so the searches can fail); pages, WAL frames and
 * journal records that were flipped, swapped or relabelled are refused with SQLITE_IOERR_DATA;
 * a different key or database id is refused; a hot WAL or hot journal left by a SIGKILLed writer
 * recovers every committed transaction; a torn uncommitted WAL tail is ignored like SQLite
 * ignores a bad checksum; temp files never reach the disk; page size and reserve are enforced;
 * the file layer keeps the caller's buffers intact and zeroes the reserved bytes it returns;
 * page nonces count up within an open file, differ between opens, and pages sealed with a
 * random nonce (format 1 as first written) still read.
 * Uses sqlite3 directly with random keys: no dependency on the store.
 */
#include "cryptvfs.h"
#include "testutil.h"

#include <signal.h>
#include <sodium.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE PD_PAGE_SIZE
#define WAL_FRAME (24 + PAGE)
#define WAL_FRAME_OFF(i) (32 + (long)(i)*WAL_FRAME) /* frame i, 0-based */

/* Stop the current test function (not the program) when a precondition fails. */
#define NEED(cond)                                                                                 \
    do {                                                                                           \
        pd_test_checks++;                                                                          \
        if (!(cond)) {                                                                             \
            pd_test_failures++;                                                                    \
            fprintf(stderr, "%s:%d: NEED failed: %s\n", __FILE__, __LINE__, #cond);                \
            return;                                                                                \
        }                                                                                          \
    } while (0)

static const char NAME[] = "Siti Nurhaliza Binti Zulkarnain";
static const char NIK[] = "3273014508900001";

/* ---- helpers ------------------------------------------------------------------------------ */

/* The last line pdcrypt wrote to sqlite3_log and how many refusals of temp files it logged. */
static char log_last[1024];
static int log_temp_refusals;

static void log_cb(void *arg, int code, const char *msg)
{
    (void)arg;
    if (strncmp(msg, "pdcrypt:", 8) != 0)
        return;
    snprintf(log_last, sizeof log_last, "%d %s", code, msg);
    if (strstr(msg, "temp_store=MEMORY"))
        log_temp_refusals++;
}

typedef struct tkey {
    uint8_t key[PD_KEY_BYTES];
    uint8_t dbid[PD_DBID_BYTES];
    unsigned slot;
} tkey;

static void tkey_new(tkey *k)
{
    randombytes_buf(k->key, sizeof k->key);
    randombytes_buf(k->dbid, sizeof k->dbid);
    k->slot = 0;
    CHECK_EQ_INT(pd_cryptvfs_key_add(k->key, k->dbid, &k->slot), PD_OK);
}

static void tkey_free(tkey *k)
{
    pd_cryptvfs_key_remove(k->slot);
    sodium_memzero(k, sizeof *k);
}

/* Open through pdcrypt with key slot `slot` (0: a name without the pdslot parameter). */
static int open_enc(const char *path, unsigned slot, sqlite3 **db)
{
    char uri[1024];
    if (slot)
        snprintf(uri, sizeof uri, "file:%s?pdslot=%u", path, slot);
    else
        snprintf(uri, sizeof uri, "file:%s", path);
    int rc = sqlite3_open_v2(uri, db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI |
                                 SQLITE_OPEN_EXRESCODE,
                             PD_CRYPTVFS_NAME);
    if (*db)
        sqlite3_extended_result_codes(*db, 1);
    return rc;
}

static int exec_q(sqlite3 *db, const char *sql, bool quiet)
{
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK && !quiet)
        fprintf(stderr, "  sql \"%.80s\" -> %d %s\n", sql, rc, err ? err : "");
    sqlite3_free(err);
    return rc;
}

static int exec(sqlite3 *db, const char *sql)
{
    return exec_q(db, sql, false);
}

/* The first column of the first row of sql as an integer; *rc gets SQLITE_OK or the error. */
static long long q_int(sqlite3 *db, const char *sql, int *rc)
{
    sqlite3_stmt *st = NULL;
    long long v = -1;
    int r = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (r == SQLITE_OK) {
        r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
            v = sqlite3_column_int64(st, 0);
            r = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    if (rc)
        *rc = r;
    return v;
}

static bool integrity_ok(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    bool ok = false;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW) {
        const char *r = (const char *)sqlite3_column_text(st, 0);
        ok = r && strcmp(r, "ok") == 0;
        if (!ok)
            fprintf(stderr, "  integrity_check: %s\n", r ? r : "(null)");
    }
    sqlite3_finalize(st);
    return ok;
}

/* Open the way the store does: pdcrypt (slot != 0) or the default VFS (slot == 0, the control),
 * prepare, temp_store=MEMORY, synchronous=FULL, the journal mode. NULL on failure. */
static sqlite3 *open_store(const char *path, unsigned slot, const char *journal_mode)
{
    sqlite3 *db = NULL;
    int rc;
    if (slot) {
        rc = open_enc(path, slot, &db);
        if (rc == SQLITE_OK)
            rc = pd_cryptvfs_prepare(db);
    } else {
        rc = sqlite3_open_v2(
            path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_EXRESCODE, NULL);
        if (db)
            sqlite3_extended_result_codes(db, 1);
    }
    if (rc == SQLITE_OK)
        rc = exec(db, "PRAGMA temp_store=MEMORY; PRAGMA synchronous=FULL");
    if (rc == SQLITE_OK && journal_mode) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA journal_mode=%s", journal_mode);
        rc = exec(db, sql);
    }
    if (rc != SQLITE_OK) {
        fprintf(stderr, "  open_store %s: %d %s\n", path, rc, db ? sqlite3_errmsg(db) : "");
        sqlite3_close(db);
        return NULL;
    }
    return db;
}

/* Table t: rows id..id+n-1 with a 200-character payload derived from the id. It is the only
 * object in the database, so a full scan of t reads every page but page 1. */
static int fill_t(sqlite3 *db, int first, int n)
{
    int rc = exec(db, "CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, payload TEXT)");
    sqlite3_stmt *st = NULL;
    if (rc == SQLITE_OK)
        rc =
            sqlite3_prepare_v2(db, "INSERT INTO t VALUES(?1, printf('%0200d', ?1))", -1, &st, NULL);
    for (int i = first; rc == SQLITE_OK && i < first + n; i++) {
        sqlite3_bind_int(st, 1, i);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

/* Rows of t whose payload is the original one for its id; *rc gets the scan's result code. */
static long long t_good_rows(sqlite3 *db, int *rc)
{
    return q_int(db, "SELECT count(*) FROM t WHERE payload = printf('%0200d', id)", rc);
}

/* Overwrite len bytes of a file at offset. */
static int patch_file(const char *path, long off, const void *data, size_t len)
{
    FILE *f = fopen(path, "r+b");
    if (!f)
        return -1;
    int rc = (fseek(f, off, SEEK_SET) == 0 && fwrite(data, 1, len, f) == len) ? 0 : -1;
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

static long file_size(const char *path)
{
    size_t n = 0;
    uint8_t *b = pd_test_read_file(path, &n);
    if (!b)
        return -1;
    free(b);
    return (long)n;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Copy a file (or remove dst if src does not exist). */
static void copy_file(const char *src, const char *dst)
{
    size_t n = 0;
    uint8_t *b = pd_test_read_file(src, &n);
    if (!b) {
        unlink(dst);
        return;
    }
    CHECK(pd_test_write_file(dst, b, n) == 0);
    free(b);
}

static char *sfx(const char *path, const char *suffix)
{
    size_t n = strlen(path) + strlen(suffix) + 1;
    char *p = malloc(n);
    if (!p)
        abort();
    snprintf(p, n, "%s%s", path, suffix);
    return p;
}

/* Child processes: the parent reads one byte, 'R' when the child is ready to be killed. */
static const char *g_path;
static unsigned g_slot;
static int g_n;

typedef void (*child_fn)(int wfd);

static pid_t spawn(child_fn fn, int *rfd)
{
    int p[2];
    if (pipe(p) != 0)
        return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        fn(p[1]);
        _exit(0);
    }
    close(p[1]);
    *rfd = p[0];
    return pid;
}

static bool child_ready(int rfd)
{
    char c = 0;
    bool ok = read(rfd, &c, 1) == 1 && c == 'R';
    close(rfd);
    return ok;
}

static void kill_child(pid_t pid)
{
    int st;
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}

static void child_signal_and_wait(int wfd)
{
    if (write(wfd, "R", 1) != 1)
        _exit(3);
    for (;;)
        pause();
}

/* ---- file layer --------------------------------------------------------------------------- */

/* The file layer alone: the pdcrypt VFS, a fresh key, a database path in a fresh directory and its
 * name as SQLite gives it to xOpen (with the -journal and -wal names and the pdslot parameter),
 * and room for one sqlite3_file (not open). */
typedef struct file_fixture {
    char *dir, *path, *jpath, *wpath;
    tkey k;
    sqlite3_vfs *vfs;
    sqlite3_filename fname;
    sqlite3_file *fd;
} file_fixture;

static bool file_fixture_make(file_fixture *x, const char *tag)
{
    memset(x, 0, sizeof *x);
    x->dir = pd_test_tmpdir(tag);
    x->path = pd_test_path(x->dir, "f.db");
    x->jpath = sfx(x->path, "-journal");
    x->wpath = sfx(x->path, "-wal");
    tkey_new(&x->k);
    if (pd_cryptvfs_register() != SQLITE_OK || !(x->vfs = sqlite3_vfs_find(PD_CRYPTVFS_NAME)))
        return false;
    char slot[16];
    snprintf(slot, sizeof slot, "%u", x->k.slot);
    const char *params[] = {"pdslot", slot};
    x->fname = sqlite3_create_filename(x->path, x->jpath, x->wpath, 1, params);
    x->fd = sqlite3_malloc(x->vfs->szOsFile);
    return x->fname && x->fd;
}

static void file_fixture_free(file_fixture *x)
{
    sqlite3_free(x->fd);
    sqlite3_free_filename(x->fname);
    free(x->jpath);
    free(x->wpath);
    tkey_free(&x->k);
    free(x->path);
    pd_test_rmtree(x->dir);
    free(x->dir);
}

static void file_layer_seals_into_scratch_and_zeroes_reserve(void)
{
    file_fixture x;
    NEED(file_fixture_make(&x, "cv-file"));
    sqlite3_vfs *vfs = x.vfs;
    sqlite3_filename fname = x.fname;
    sqlite3_file *fd = x.fd;
    const char *path = x.path, *jpath = x.jpath, *wpath = x.wpath;
    uint8_t page[PAGE], copy[PAGE], back[PAGE], raw[PAGE];
    for (int i = 0; i < PAGE - PD_PAGE_RESERVE; i++)
        page[i] = (uint8_t)(i * 7);
    memset(page + PAGE - PD_PAGE_RESERVE, 0xAA, PD_PAGE_RESERVE); /* SQLite's reserve: ignored */
    memcpy(copy, page, PAGE);
    int out = 0;
    int rc = vfs->xOpen(vfs, fname, fd,
                        SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &out);
    NEED(rc == SQLITE_OK);

    /* page 2: the caller's buffer is untouched, the file holds no plaintext */
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, page, PAGE, PAGE), SQLITE_OK);
    CHECK(memcmp(page, copy, PAGE) == 0);
    CHECK(!pd_test_file_contains(path, page + 100, 32));
    CHECK_EQ_INT(fd->pMethods->xRead(fd, back, PAGE, PAGE), SQLITE_OK);
    CHECK(memcmp(back, page, PAGE - PD_PAGE_RESERVE) == 0);
    CHECK(memcmp(back + PAGE - PD_PAGE_RESERVE, (uint8_t[PD_PAGE_RESERVE]){0}, PD_PAGE_RESERVE) ==
          0);
    /* a slice inside a page is decrypted from the whole page */
    uint8_t slice[50];
    CHECK_EQ_INT(fd->pMethods->xRead(fd, slice, 50, PAGE + 100), SQLITE_OK);
    CHECK(memcmp(slice, page + 100, 50) == 0);
    /* the same plaintext written again gives other ciphertext (fresh nonce) */
    size_t n1 = 0, n2 = 0;
    uint8_t *f1 = pd_test_read_file(path, &n1);
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, page, PAGE, PAGE), SQLITE_OK);
    uint8_t *f2 = pd_test_read_file(path, &n2);
    CHECK(f1 && f2 && n1 == 2 * PAGE && n2 == n1 && memcmp(f1 + PAGE, f2 + PAGE, PAGE) != 0);
    free(f1);
    free(f2);
    /* writes that are not one whole aligned page are refused and change nothing */
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, page, 100, PAGE), SQLITE_IOERR_WRITE);
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, page, PAGE, PAGE + 8), SQLITE_IOERR_WRITE);
    CHECK_EQ_INT(fd->pMethods->xRead(fd, back, PAGE, PAGE), SQLITE_OK);
    CHECK(memcmp(back, page, PAGE - PD_PAGE_RESERVE) == 0);
    /* reads spanning two pages are refused */
    CHECK_EQ_INT(fd->pMethods->xRead(fd, back, 100, 2 * PAGE - 50), SQLITE_IOERR_READ);
    /* page 1 must say 4096-byte pages with 40 reserved bytes; its first 24 bytes stay clear */
    memcpy(page, "SQLite format 3", 16);
    page[16] = 0x10, page[17] = 0x00, page[20] = 0;
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, page, PAGE, 0), SQLITE_IOERR_WRITE);
    CHECK(strstr(log_last, "reserved") != NULL);
    page[20] = PD_PAGE_RESERVE;
    page[16] = 0x20; /* 8192 */
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, page, PAGE, 0), SQLITE_IOERR_WRITE);
    page[16] = 0x10;
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, page, PAGE, 0), SQLITE_OK);
    CHECK_EQ_INT(fd->pMethods->xRead(fd, raw, 24, 0), SQLITE_OK);
    CHECK(memcmp(raw, page, 24) == 0);
    uint8_t *f3 = pd_test_read_file(path, &n1);
    CHECK(f3 && memcmp(f3, page, 24) == 0 && memcmp(f3 + 24, page + 24, 64) != 0);
    free(f3);
    /* the 100-byte header read and the 16-byte read at 24 */
    CHECK_EQ_INT(fd->pMethods->xRead(fd, raw, 100, 0), SQLITE_OK);
    CHECK(memcmp(raw, page, 100) == 0);
    CHECK_EQ_INT(fd->pMethods->xRead(fd, raw, 16, 24), SQLITE_OK);
    CHECK(memcmp(raw, page + 24, 16) == 0);
    /* past the end: zero-filled short read */
    memset(back, 1, PAGE);
    CHECK_EQ_INT(fd->pMethods->xRead(fd, back, PAGE, 5 * PAGE), SQLITE_IOERR_SHORT_READ);
    CHECK(memcmp(back, (uint8_t[PAGE]){0}, PAGE) == 0);
    /* no memory map of ciphertext */
    void *map = (void *)1;
    CHECK_EQ_INT(fd->pMethods->xFetch(fd, 0, PAGE, &map), SQLITE_OK);
    CHECK(map == NULL);
    sqlite3_int64 mm = 1 << 20;
    CHECK_EQ_INT(fd->pMethods->xFileControl(fd, SQLITE_FCNTL_MMAP_SIZE, &mm), SQLITE_OK);
    CHECK_EQ_INT(mm, 0);
    char *vfsname = NULL;
    CHECK_EQ_INT(fd->pMethods->xFileControl(fd, SQLITE_FCNTL_VFSNAME, &vfsname), SQLITE_OK);
    CHECK(vfsname && strncmp(vfsname, "pdcrypt/", 8) == 0);
    sqlite3_free(vfsname);
    fd->pMethods->xClose(fd);

    /* rollback journal: the page number before the page is bound into the page */
    rc = vfs->xOpen(vfs, sqlite3_filename_journal(fname), fd,
                    SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &out);
    NEED(rc == SQLITE_OK);
    uint8_t hdr[PAGE] = {0};
    uint8_t pg7[4] = {0, 0, 0, 7}, pg8[4] = {0, 0, 0, 8};
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, hdr, PAGE, 0), SQLITE_OK); /* header: clear */
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, pg7, 4, PAGE), SQLITE_OK);
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, copy, PAGE, PAGE + 4), SQLITE_OK);
    CHECK_EQ_INT(fd->pMethods->xRead(fd, back, PAGE, PAGE + 4), SQLITE_OK);
    CHECK(memcmp(back, copy, PAGE - PD_PAGE_RESERVE) == 0);
    CHECK(!pd_test_file_contains(jpath, copy + 100, 32));
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, pg8, 4, PAGE), SQLITE_OK); /* relabel the record */
    CHECK_EQ_INT(fd->pMethods->xRead(fd, back, PAGE, PAGE + 4), SQLITE_IOERR_DATA);
    CHECK(memcmp(back, (uint8_t[PAGE]){0}, PAGE) == 0); /* nothing unauthenticated returned */
    fd->pMethods->xClose(fd);

    /* WAL: the page alone and header + page in one read */
    rc = vfs->xOpen(vfs, sqlite3_filename_wal(fname), fd,
                    SQLITE_OPEN_WAL | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &out);
    NEED(rc == SQLITE_OK);
    uint8_t whdr[32] = {0x37, 0x7f, 0x06, 0x82}, fhdr[24] = {0, 0, 0, 5, 0, 0, 0, 9};
    uint8_t frame[WAL_FRAME];
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, whdr, 32, 0), SQLITE_OK);
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, fhdr, 24, WAL_FRAME_OFF(0)), SQLITE_OK);
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, copy, PAGE, WAL_FRAME_OFF(0) + 24), SQLITE_OK);
    CHECK_EQ_INT(fd->pMethods->xRead(fd, back, PAGE, WAL_FRAME_OFF(0) + 24), SQLITE_OK);
    CHECK(memcmp(back, copy, PAGE - PD_PAGE_RESERVE) == 0);
    CHECK_EQ_INT(fd->pMethods->xRead(fd, frame, WAL_FRAME, WAL_FRAME_OFF(0)), SQLITE_OK);
    CHECK(memcmp(frame, fhdr, 24) == 0 && memcmp(frame + 24, back, PAGE) == 0);
    CHECK(!pd_test_file_contains(wpath, copy + 100, 32));
    /* header and page written in one call work too */
    memcpy(frame, fhdr, 24);
    memcpy(frame + 24, copy, PAGE);
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, frame, WAL_FRAME, WAL_FRAME_OFF(1)), SQLITE_OK);
    CHECK(memcmp(frame + 24, copy, PAGE) == 0);
    CHECK_EQ_INT(fd->pMethods->xRead(fd, back, PAGE, WAL_FRAME_OFF(1) + 24), SQLITE_OK);
    CHECK(memcmp(back, copy, PAGE - PD_PAGE_RESERVE) == 0);
    /* a frame relabelled to another page fails on the page-alone path */
    uint8_t other[4] = {0, 0, 0, 6};
    CHECK(patch_file(wpath, WAL_FRAME_OFF(0), other, 4) == 0);
    CHECK_EQ_INT(fd->pMethods->xRead(fd, back, PAGE, WAL_FRAME_OFF(0) + 24), SQLITE_IOERR_DATA);
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, copy, 100, WAL_FRAME_OFF(1) + 30), SQLITE_IOERR_WRITE);
    fd->pMethods->xClose(fd);

    /* temp files never reach the disk; super-journals (file names only) pass through */
    CHECK_EQ_INT(vfs->xOpen(vfs, NULL, fd,
                            SQLITE_OPEN_TEMP_DB | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                SQLITE_OPEN_DELETEONCLOSE,
                            &out),
                 SQLITE_CANTOPEN);
    CHECK(fd->pMethods == NULL);
    CHECK_EQ_INT(vfs->xOpen(vfs, NULL, fd,
                            SQLITE_OPEN_SUBJOURNAL | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                SQLITE_OPEN_DELETEONCLOSE,
                            &out),
                 SQLITE_CANTOPEN);
    CHECK_EQ_INT(vfs->xOpen(vfs, NULL, fd,
                            SQLITE_OPEN_TRANSIENT_DB | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                SQLITE_OPEN_DELETEONCLOSE,
                            &out),
                 SQLITE_CANTOPEN);
    char *spath = pd_test_path(x.dir, "super");
    rc = vfs->xOpen(vfs, spath, fd,
                    SQLITE_OPEN_SUPER_JOURNAL | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, &out);
    CHECK_EQ_INT(rc, SQLITE_OK);
    if (rc == SQLITE_OK) {
        CHECK_EQ_INT(fd->pMethods->xWrite(fd, "a-journal", 10, 0), SQLITE_OK);
        fd->pMethods->xClose(fd);
        CHECK(pd_test_file_contains(spath, "a-journal", 9));
    }
    free(spath);
    file_fixture_free(&x);
}

/* The 24-byte nonce stored in page `pgno` (1-based) of the file at path; false if unreadable. */
static bool stored_nonce(const char *path, uint32_t pgno, uint8_t nonce[24])
{
    size_t n = 0;
    uint8_t *b = pd_test_read_file(path, &n);
    bool ok = b && n >= (size_t)pgno * PAGE;
    if (ok)
        memcpy(nonce, b + (size_t)pgno * PAGE - PD_PAGE_RESERVE, 24);
    free(b);
    return ok;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static void nonces_count_within_an_open_file_and_random_nonces_still_read(void)
{
    file_fixture x;
    NEED(file_fixture_make(&x, "cv-nonce"));
    sqlite3_vfs *vfs = x.vfs;
    sqlite3_file *fd = x.fd;
    const char *path = x.path;
    const int flags = SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    uint8_t page[PAGE] = {0}, back[PAGE], n1[24], n2[24], n3[24], n4[24];
    for (int i = 0; i < PAGE - PD_PAGE_RESERVE; i++)
        page[i] = (uint8_t)(i * 13);
    int out = 0;

    /* one open file: a random first write, then +1 on the last 8 bytes per write, any page */
    NEED(vfs->xOpen(vfs, x.fname, fd, flags, &out) == SQLITE_OK);
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, page, PAGE, PAGE), SQLITE_OK);
    CHECK(stored_nonce(path, 2, n1));
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, page, PAGE, PAGE), SQLITE_OK);
    CHECK(stored_nonce(path, 2, n2));
    CHECK_EQ_INT(fd->pMethods->xWrite(fd, page, PAGE, 2 * PAGE), SQLITE_OK);
    CHECK(stored_nonce(path, 3, n3));
    CHECK(memcmp(n1, n2, 16) == 0 && memcmp(n1, n3, 16) == 0);
    CHECK(le64(n2 + 16) == le64(n1 + 16) + 1 && le64(n3 + 16) == le64(n2 + 16) + 1);
    CHECK(memcmp(n1, (uint8_t[16]){0}, 16) != 0);
    /* a second open file of the same database (another connection) has its own random prefix */
    sqlite3_file *fd2 = sqlite3_malloc(vfs->szOsFile);
    NEED(fd2);
    CHECK_EQ_INT(vfs->xOpen(vfs, x.fname, fd2, flags, &out), SQLITE_OK);
    if (fd2->pMethods) {
        CHECK_EQ_INT(fd2->pMethods->xWrite(fd2, page, PAGE, PAGE), SQLITE_OK);
        CHECK(stored_nonce(path, 2, n4));
        CHECK(memcmp(n4, n1, 16) != 0);
        CHECK_EQ_INT(fd2->pMethods->xRead(fd2, back, PAGE, 2 * PAGE), SQLITE_OK);
        CHECK(memcmp(back, page, PAGE - PD_PAGE_RESERVE) == 0);
        fd2->pMethods->xClose(fd2);
    }
    sqlite3_free(fd2);

    /* format 1 as first written (a fresh random nonce per page) reads unchanged: the reader takes
     * the nonce from the page; AD = pgno (big-endian) || database id || format version 1 */
    uint8_t sealed[PAGE] = {0};
    uint8_t ad[4 + PD_DBID_BYTES + 1] = {0, 0, 0, 4};
    memcpy(ad + 4, x.k.dbid, PD_DBID_BYTES);
    ad[4 + PD_DBID_BYTES] = 1;
    uint8_t *nonce = sealed + PAGE - PD_PAGE_RESERVE;
    randombytes_buf(nonce, 24);
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(sealed, nonce + 24, NULL, page,
                                                        PAGE - PD_PAGE_RESERVE, ad, sizeof ad, NULL,
                                                        nonce, x.k.key);
    CHECK(patch_file(path, 3 * PAGE, sealed, PAGE) == 0);
    memset(back, 1, PAGE);
    CHECK_EQ_INT(fd->pMethods->xRead(fd, back, PAGE, 3 * PAGE), SQLITE_OK);
    CHECK(memcmp(back, page, PAGE - PD_PAGE_RESERVE) == 0);
    fd->pMethods->xClose(fd);
    file_fixture_free(&x);
}

/* ---- keys, opening, preparing ------------------------------------------------------------- */

static void key_registry_gives_distinct_slots_and_forgets(void)
{
    tkey a, b;
    tkey_new(&a);
    tkey_new(&b);
    CHECK(a.slot != 0 && b.slot != 0 && a.slot != b.slot);
    unsigned s = 0;
    CHECK_EQ_INT(pd_cryptvfs_key_add(NULL, a.dbid, &s), PD_ERR_INVALID);
    pd_cryptvfs_key_remove(a.slot);
    pd_cryptvfs_key_remove(a.slot); /* twice: harmless */
    pd_cryptvfs_key_remove(999999); /* unknown: harmless */

    char *dir = pd_test_tmpdir("cv-keys");
    char *path = pd_test_path(dir, "k.db");
    sqlite3 *db = NULL;
    CHECK_EQ_INT(open_enc(path, a.slot, &db), SQLITE_CANTOPEN); /* removed slot */
    sqlite3_close(db);
    CHECK(strstr(log_last, "no key registered") != NULL);
    db = NULL;
    CHECK_EQ_INT(open_enc(path, 0, &db), SQLITE_CANTOPEN); /* no pdslot at all */
    sqlite3_close(db);
    CHECK(strstr(log_last, "pdslot") != NULL);
    CHECK(!pd_test_file_exists(path));

    /* files already open keep their own copy of the key: removing the slot does not cut off a
     * connection whose database and WAL are open, but no new file can be opened with it */
    tkey c;
    tkey_new(&c);
    sqlite3 *live = open_store(path, c.slot, "WAL");
    NEED(live);
    CHECK_EQ_INT(fill_t(live, 1, 50), SQLITE_OK);
    pd_cryptvfs_key_remove(c.slot);
    int rc;
    CHECK_EQ_INT(t_good_rows(live, &rc), 50);
    CHECK_EQ_INT(fill_t(live, 51, 50), SQLITE_OK);
    CHECK_EQ_INT(t_good_rows(live, &rc), 100);
    db = NULL;
    CHECK_EQ_INT(open_enc(path, c.slot, &db), SQLITE_CANTOPEN);
    sqlite3_close(db);
    sqlite3_close(live);
    tkey_free(&b);
    free(path);
    pd_test_rmtree(dir);
    free(dir);
}

static void new_database_gets_4096_pages_and_40_reserved_bytes(void)
{
    char *dir = pd_test_tmpdir("cv-new");
    char *path = pd_test_path(dir, "n.db");
    tkey k;
    tkey_new(&k);

    sqlite3 *db = open_store(path, k.slot, "WAL");
    NEED(db);
    CHECK_EQ_INT(fill_t(db, 1, 10), SQLITE_OK);
    CHECK_EQ_INT(sqlite3_close(db), SQLITE_OK);
    size_t n = 0;
    uint8_t *b = pd_test_read_file(path, &n);
    NEED(b && n >= PAGE);
    CHECK(memcmp(b, "SQLite format 3", 16) == 0);
    CHECK(b[16] == 0x10 && b[17] == 0x00);
    CHECK_EQ_INT(b[20], PD_PAGE_RESERVE);
    CHECK_EQ_INT(n % PAGE, 0);
    free(b);

    /* reopening: prepare verifies, the data reads back, integrity holds */
    db = open_store(path, k.slot, NULL);
    NEED(db);
    int rc;
    CHECK_EQ_INT(t_good_rows(db, &rc), 10);
    CHECK_EQ_INT(q_int(db, "PRAGMA page_size", &rc), PAGE);
    CHECK(integrity_ok(db));
    /* page size is fixed: PRAGMA page_size to anything else is an error, 4096 is fine */
    CHECK_EQ_INT(exec_q(db, "PRAGMA page_size=8192", true), SQLITE_ERROR);
    CHECK(strstr(sqlite3_errmsg(db), "fixed") != NULL);
    CHECK_EQ_INT(exec(db, "PRAGMA page_size=4096"), SQLITE_OK);
    /* no mmap of ciphertext whatever is asked */
    CHECK_EQ_INT(q_int(db, "PRAGMA mmap_size=268435456", &rc), 0);
    CHECK_EQ_INT(t_good_rows(db, &rc), 10);
    /* VACUUM works and keeps the format */
    CHECK_EQ_INT(exec(db, "PRAGMA journal_mode=DELETE; VACUUM"), SQLITE_OK);
    CHECK_EQ_INT(t_good_rows(db, &rc), 10);
    sqlite3_close(db);
    b = pd_test_read_file(path, &n);
    CHECK(b && b[20] == PD_PAGE_RESERVE && b[16] == 0x10);
    free(b);

    /* prepare refuses a connection that does not go through pdcrypt */
    db = NULL;
    CHECK_EQ_INT(sqlite3_open(":memory:", &db), SQLITE_OK);
    CHECK_EQ_INT(pd_cryptvfs_prepare(db), SQLITE_MISUSE);
    sqlite3_close(db);

    tkey_free(&k);
    free(path);
    pd_test_rmtree(dir);
    free(dir);
}

static void first_write_without_prepare_is_refused(void)
{
    char *dir = pd_test_tmpdir("cv-noprep");
    char *path = pd_test_path(dir, "p.db");
    tkey k;
    tkey_new(&k);
    sqlite3 *db = NULL;
    NEED(open_enc(path, k.slot, &db) == SQLITE_OK);
    exec(db, "PRAGMA temp_store=MEMORY");
    CHECK_EQ_INT(exec_q(db, "CREATE TABLE x(a)", true), SQLITE_IOERR_WRITE);
    CHECK(strstr(log_last, "pd_cryptvfs_prepare") != NULL);
    sqlite3_close(db);
    CHECK_EQ_INT(file_size(path), 0); /* nothing stored */
    /* after the refusal, the proper way still works */
    db = open_store(path, k.slot, "DELETE");
    NEED(db);
    CHECK_EQ_INT(fill_t(db, 1, 3), SQLITE_OK);
    sqlite3_close(db);
    tkey_free(&k);
    free(path);
    pd_test_rmtree(dir);
    free(dir);
}

/* ---- no plaintext on disk ----------------------------------------------------------------- */

static int fill_people(sqlite3 *db)
{
    int rc = exec(db, "CREATE TABLE person(id INTEGER PRIMARY KEY, name TEXT, nik TEXT UNIQUE)");
    sqlite3_stmt *st = NULL;
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "INSERT INTO person(name, nik) VALUES(?1, ?2)", -1, &st, NULL);
    for (int i = 0; rc == SQLITE_OK && i < 200; i++) {
        char nik[32];
        if (i == 0)
            snprintf(nik, sizeof nik, "%s", NIK);
        else
            snprintf(nik, sizeof nik, "3273015508%06d", i);
        sqlite3_bind_text(st, 1, NAME, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, nik, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc;
}

static bool holds_plaintext(const char *path)
{
    return pd_test_file_contains(path, NAME, strlen(NAME)) ||
           pd_test_file_contains(path, NIK, strlen(NIK));
}

/* WAL mode, no autocheckpoint, a second connection keeping the WAL: where is the plaintext?
 * found[0]: WAL before a checkpoint, found[1]: database after, found[2]: WAL after. */
static void wal_scenario(unsigned slot, bool found[3])
{
    char *dir = pd_test_tmpdir("cv-walpt");
    char *path = pd_test_path(dir, "w.db");
    char *wal = sfx(path, "-wal");
    sqlite3 *a = open_store(path, slot, "WAL");
    sqlite3 *b = open_store(path, slot, NULL);
    CHECK(a != NULL && b != NULL);
    if (!a || !b)
        goto out;
    CHECK_EQ_INT(exec(a, "PRAGMA wal_autocheckpoint=0"), SQLITE_OK);
    CHECK_EQ_INT(exec(a, "BEGIN"), SQLITE_OK);
    CHECK_EQ_INT(fill_people(a), SQLITE_OK);
    CHECK_EQ_INT(exec(a, "COMMIT"), SQLITE_OK);
    int rc;
    CHECK_EQ_INT(q_int(b,
                       "SELECT count(*) FROM person WHERE name = 'Siti Nurhaliza Binti "
                       "Zulkarnain' AND nik LIKE '3273%'",
                       &rc),
                 200);
    CHECK(file_size(wal) > 32);
    found[0] = holds_plaintext(wal);
    CHECK_EQ_INT(exec(a, "PRAGMA wal_checkpoint(FULL)"), SQLITE_OK);
    CHECK(file_size(path) > PAGE);
    found[1] = holds_plaintext(path);
    found[2] = holds_plaintext(wal);
out:
    sqlite3_close(b);
    sqlite3_close(a);
    free(wal);
    free(path);
    pd_test_rmtree(dir);
    free(dir);
}

static void wal_and_database_hold_no_plaintext(void)
{
    tkey k;
    tkey_new(&k);
    bool enc[3] = {true, true, true}, plain[3] = {false, false, false};
    wal_scenario(k.slot, enc);
    wal_scenario(0, plain);
    CHECK(!enc[0] && !enc[1] && !enc[2]);
    CHECK(plain[0] && plain[1]); /* the control: the default VFS shows them */
    tkey_free(&k);
}

/* Rollback mode: the original pages go to the journal during an update.
 * found[0]: journal during the transaction, found[1]: database, found[2]: journal after commit
 * (PERSIST keeps the records). */
static void journal_scenario(unsigned slot, const char *mode, bool found[3])
{
    char *dir = pd_test_tmpdir("cv-jrnpt");
    char *path = pd_test_path(dir, "j.db");
    char *jrnl = sfx(path, "-journal");
    sqlite3 *db = open_store(path, slot, mode);
    CHECK(db != NULL);
    if (!db)
        goto out;
    CHECK_EQ_INT(exec(db, "BEGIN"), SQLITE_OK);
    CHECK_EQ_INT(fill_people(db), SQLITE_OK);
    CHECK_EQ_INT(exec(db, "COMMIT"), SQLITE_OK);
    found[1] = holds_plaintext(path);
    CHECK_EQ_INT(exec(db, "BEGIN; UPDATE person SET name = 'x', nik = 'y' || id"), SQLITE_OK);
    CHECK(file_size(jrnl) > PAGE);
    found[0] = holds_plaintext(jrnl);
    CHECK_EQ_INT(exec(db, "COMMIT"), SQLITE_OK);
    found[2] = holds_plaintext(jrnl);
    int rc;
    CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM person WHERE name = 'x'", &rc), 200);
out:
    sqlite3_close(db);
    free(jrnl);
    free(path);
    pd_test_rmtree(dir);
    free(dir);
}

static void journal_holds_no_plaintext(void)
{
    tkey k;
    tkey_new(&k);
    bool enc[3] = {true, true, true}, plain[3] = {false, false, false};
    journal_scenario(k.slot, "DELETE", enc);
    CHECK(!enc[0] && !enc[1]);
    journal_scenario(0, "DELETE", plain);
    CHECK(plain[0] && plain[1]);
    bool encp[3] = {true, true, true}, plainp[3] = {false, false, false};
    journal_scenario(k.slot, "PERSIST", encp);
    CHECK(!encp[0] && !encp[1] && !encp[2]);
    journal_scenario(0, "PERSIST", plainp);
    CHECK(plainp[0] && plainp[2]);
    tkey_free(&k);
}

/* ---- tampering with the database file ----------------------------------------------------- */

/* Reopen path (already tampered) and scan: the SQLite code of the open or the first failure. */
static int open_and_scan(const char *path, unsigned slot, long long *good)
{
    sqlite3 *db = NULL;
    int rc = open_enc(path, slot, &db);
    if (rc == SQLITE_OK)
        rc = exec_q(db, "PRAGMA temp_store=MEMORY", true);
    if (rc == SQLITE_OK)
        *good = t_good_rows(db, &rc);
    sqlite3_close(db);
    return rc;
}

static void tampered_database_pages_are_refused(void)
{
    char *dir = pd_test_tmpdir("cv-tamper");
    char *path = pd_test_path(dir, "t.db");
    tkey k, other, sameid;
    tkey_new(&k);
    tkey_new(&other);
    randombytes_buf(sameid.key, sizeof sameid.key);
    memcpy(sameid.dbid, k.dbid, sizeof sameid.dbid);
    CHECK_EQ_INT(pd_cryptvfs_key_add(sameid.key, sameid.dbid, &sameid.slot), PD_OK);
    tkey wrongid = k;
    randombytes_buf(wrongid.dbid, sizeof wrongid.dbid);
    CHECK_EQ_INT(pd_cryptvfs_key_add(wrongid.key, wrongid.dbid, &wrongid.slot), PD_OK);

    sqlite3 *db = open_store(path, k.slot, "DELETE");
    NEED(db);
    CHECK_EQ_INT(fill_t(db, 1, 400), SQLITE_OK);
    sqlite3_close(db);
    size_t n = 0;
    uint8_t *orig = pd_test_read_file(path, &n);
    NEED(orig && n >= 8 * PAGE);
    long long good = 0;
    CHECK_EQ_INT(open_and_scan(path, k.slot, &good), SQLITE_OK);
    CHECK_EQ_INT(good, 400);

    struct {
        const char *what;
        long off;
    } flips[] = {
        {"page 3, content", 2 * PAGE + 1000}, {"page 5, nonce", 5 * PAGE - 30},
        {"page 6, tag", 6 * PAGE - 1},        {"page 1, beyond byte 24", 60},
        {"page 1, clear header byte 21", 21},
    };
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        CHECK(pd_test_write_file(path, orig, n) == 0);
        CHECK(pd_test_flip_bit(path, flips[i].off, 3) == 0);
        size_t m = 0;
        uint8_t *before = pd_test_read_file(path, &m);
        int rc = open_and_scan(path, k.slot, &good);
        if (rc != SQLITE_IOERR_DATA)
            fprintf(stderr, "  %s: rc %d\n", flips[i].what, rc);
        CHECK_EQ_INT(rc, SQLITE_IOERR_DATA);
        uint8_t *after = pd_test_read_file(path, &m);
        CHECK(before && after && memcmp(before, after, m) == 0); /* nothing changed */
        free(before);
        free(after);
    }

    /* swapping pages: page 3's image copied over page 4 */
    CHECK(pd_test_write_file(path, orig, n) == 0);
    CHECK(patch_file(path, 3 * PAGE, orig + 2 * PAGE, PAGE) == 0);
    CHECK_EQ_INT(open_and_scan(path, k.slot, &good), SQLITE_IOERR_DATA);
    CHECK(strstr(log_last, "page 4") != NULL);

    /* a truncated last page is refused, not read as zeros */
    CHECK(pd_test_write_file(path, orig, n - 100) == 0);
    CHECK_EQ_INT(open_and_scan(path, k.slot, &good), SQLITE_IOERR_DATA);

    /* the untouched file with a different key, or the right key with another database id */
    CHECK(pd_test_write_file(path, orig, n) == 0);
    CHECK_EQ_INT(open_and_scan(path, other.slot, &good), SQLITE_IOERR_DATA);
    CHECK_EQ_INT(open_and_scan(path, sameid.slot, &good), SQLITE_IOERR_DATA);
    CHECK_EQ_INT(open_and_scan(path, wrongid.slot, &good), SQLITE_IOERR_DATA);
    /* and a plain SQLite database through pdcrypt */
    char *plain = pd_test_path(dir, "plain.db");
    db = open_store(plain, 0, "DELETE");
    NEED(db);
    CHECK_EQ_INT(fill_t(db, 1, 5), SQLITE_OK);
    sqlite3_close(db);
    CHECK_EQ_INT(open_and_scan(plain, k.slot, &good), SQLITE_IOERR_DATA);
    /* after all that, the original still opens */
    CHECK_EQ_INT(open_and_scan(path, k.slot, &good), SQLITE_OK);
    CHECK_EQ_INT(good, 400);

    free(plain);
    free(orig);
    tkey_free(&wrongid);
    tkey_free(&sameid);
    tkey_free(&other);
    tkey_free(&k);
    free(path);
    pd_test_rmtree(dir);
    free(dir);
}

/* ---- hot journal -------------------------------------------------------------------------- */

/* Child: a transaction that updates every row with a tiny cache, so the journal is synced and
 * pages reach the database before the transaction ends; killed while it is open. */
static void child_journal_spill(int wfd)
{
    sqlite3 *db = open_store(g_path, g_slot, "DELETE");
    if (!db)
        _exit(2);
    if (exec(db, "PRAGMA cache_size=5; BEGIN; UPDATE t SET payload = printf('%0300d', -id)") !=
        SQLITE_OK)
        _exit(2);
    child_signal_and_wait(wfd);
}

static void hot_journal_rolls_back_and_tampered_journal_is_refused(void)
{
    char *dir = pd_test_tmpdir("cv-hotj");
    char *path = pd_test_path(dir, "h.db");
    char *jrnl = sfx(path, "-journal");
    tkey k;
    tkey_new(&k);
    sqlite3 *db = open_store(path, k.slot, "DELETE");
    NEED(db);
    CHECK_EQ_INT(exec(db, "BEGIN"), SQLITE_OK);
    CHECK_EQ_INT(fill_t(db, 1, 2000), SQLITE_OK);
    CHECK_EQ_INT(exec(db, "COMMIT"), SQLITE_OK);
    sqlite3_close(db);
    size_t n0 = 0;
    uint8_t *committed = pd_test_read_file(path, &n0);

    g_path = path;
    g_slot = k.slot;
    int rfd = -1;
    pid_t pid = spawn(child_journal_spill, &rfd);
    NEED(pid > 0);
    bool ready = child_ready(rfd);
    kill_child(pid);
    NEED(ready);

    size_t nd = 0, nj = 0;
    uint8_t *dbb = pd_test_read_file(path, &nd);
    uint8_t *jb = pd_test_read_file(jrnl, &nj);
    NEED(dbb && jb && nj > 2 * PAGE);
    uint32_t nrec = be32(jb + 8), sector = be32(jb + 20);
    CHECK(nrec > 0);                                    /* synced records: a hot journal */
    CHECK(nd != n0 || memcmp(dbb, committed, nd) != 0); /* the database was written */
    CHECK(!holds_plaintext(jrnl));

    /* the hot journal rolls back through the shim: the committed rows, intact */
    long long good = 0;
    CHECK_EQ_INT(open_and_scan(path, k.slot, &good), SQLITE_OK);
    CHECK_EQ_INT(good, 2000);
    db = open_store(path, k.slot, NULL);
    NEED(db);
    CHECK(integrity_ok(db));
    sqlite3_close(db);
    CHECK(!pd_test_file_exists(jrnl));

    /* the same hot journal with one byte flipped in its first record's page */
    CHECK(pd_test_write_file(path, dbb, nd) == 0);
    CHECK(pd_test_write_file(jrnl, jb, nj) == 0);
    CHECK(pd_test_flip_bit(jrnl, (long)sector + 4 + 1000, 0) == 0);
    CHECK_EQ_INT(open_and_scan(path, k.slot, &good), SQLITE_IOERR_DATA);
    CHECK(strstr(log_last, "journal page") != NULL);
    CHECK(pd_test_file_exists(jrnl)); /* not consumed: the evidence stays */

    /* ... or a record relabelled to another page number */
    CHECK(pd_test_write_file(path, dbb, nd) == 0);
    CHECK(pd_test_write_file(jrnl, jb, nj) == 0);
    uint8_t pg[4];
    memcpy(pg, jb + sector, 4);
    pg[3] ^= 1;
    CHECK(patch_file(jrnl, (long)sector, pg, 4) == 0);
    CHECK_EQ_INT(open_and_scan(path, k.slot, &good), SQLITE_IOERR_DATA);

    free(committed);
    free(dbb);
    free(jb);
    tkey_free(&k);
    free(jrnl);
    free(path);
    pd_test_rmtree(dir);
    free(dir);
}

/* ---- hot WAL ------------------------------------------------------------------------------ */

/* Child: g_n committed transactions in WAL mode (synchronous=FULL, no checkpoint), then killed. */
static void child_wal_commits(int wfd)
{
    sqlite3 *db = open_store(g_path, g_slot, "WAL");
    if (!db || exec(db, "PRAGMA wal_autocheckpoint=0") != SQLITE_OK)
        _exit(2);
    for (int i = 1; i <= g_n; i++) {
        if (exec(db, "BEGIN") != SQLITE_OK || fill_t(db, i, 1) != SQLITE_OK ||
            exec(db, "COMMIT") != SQLITE_OK)
            _exit(2);
    }
    child_signal_and_wait(wfd);
}

/* Child: as above, then a large update spilled to the WAL uncommitted, then killed. */
static void child_wal_commits_then_spill(int wfd)
{
    sqlite3 *db = open_store(g_path, g_slot, "WAL");
    if (!db || exec(db, "PRAGMA wal_autocheckpoint=0") != SQLITE_OK)
        _exit(2);
    if (exec(db, "BEGIN") != SQLITE_OK || fill_t(db, 1, g_n) != SQLITE_OK ||
        exec(db, "COMMIT") != SQLITE_OK)
        _exit(2);
    if (exec(db, "PRAGMA cache_size=5; BEGIN; UPDATE t SET payload = printf('%0300d', -id)") !=
        SQLITE_OK)
        _exit(2);
    child_signal_and_wait(wfd);
}

/* Index of the last commit frame of the WAL's current generation, -1 if none; *frames = count. */
static long last_commit_frame(const uint8_t *wal, size_t n, long *frames)
{
    long last = -1, i = 0;
    for (; WAL_FRAME_OFF(i) + WAL_FRAME <= (long)n; i++) {
        const uint8_t *f = wal + WAL_FRAME_OFF(i);
        if (memcmp(f + 8, wal + 16, 8) != 0)
            break;
        if (be32(f + 4) != 0)
            last = i;
    }
    *frames = i;
    return last;
}

static void hot_wal_recovers_every_commit(void)
{
    char *dir = pd_test_tmpdir("cv-hotw");
    char *path = pd_test_path(dir, "w.db");
    char *wal = sfx(path, "-wal"), *shm = sfx(path, "-shm");
    char *save_db = pd_test_path(dir, "save.db"), *save_wal = pd_test_path(dir, "save.db-wal");
    tkey k;
    tkey_new(&k);
    g_path = path;
    g_slot = k.slot;
    g_n = 40;
    int rfd = -1;
    pid_t pid = spawn(child_wal_commits, &rfd);
    NEED(pid > 0);
    bool ready = child_ready(rfd);
    kill_child(pid);
    NEED(ready);
    long frames = 0;
    size_t nw = 0;
    uint8_t *w = pd_test_read_file(wal, &nw);
    NEED(w);
    long last = last_commit_frame(w, nw, &frames);
    CHECK(last + 1 >= g_n); /* every transaction is still only in the WAL */
    CHECK(!holds_plaintext(wal));
    copy_file(path, save_db);
    copy_file(wal, save_wal);

    /* recovery through the shim keeps every committed transaction */
    sqlite3 *db = open_store(path, k.slot, NULL);
    NEED(db);
    int rc;
    CHECK_EQ_INT(t_good_rows(db, &rc), g_n);
    CHECK_EQ_INT(rc, SQLITE_OK);
    CHECK(integrity_ok(db));
    sqlite3_close(db);

    /* one byte flipped in the first transaction's frames, later transactions intact: tamper */
    copy_file(save_db, path);
    copy_file(save_wal, wal);
    unlink(shm);
    CHECK(pd_test_flip_bit(wal, WAL_FRAME_OFF(0) + 24 + 2000, 5) == 0);
    long long good = 0;
    rc = open_and_scan(path, k.slot, &good);
    CHECK_EQ_INT(rc, SQLITE_IOERR_DATA);
    CHECK(strstr(log_last, "WAL page") != NULL);

    /* a frame relabelled (page number in its clear header changed): tamper */
    copy_file(save_db, path);
    copy_file(save_wal, wal);
    unlink(shm);
    uint8_t pg[4];
    memcpy(pg, w + WAL_FRAME_OFF(1), 4);
    pg[3] ^= 2;
    CHECK(patch_file(wal, WAL_FRAME_OFF(1), pg, 4) == 0);
    CHECK_EQ_INT(open_and_scan(path, k.slot, &good), SQLITE_IOERR_DATA);

    /* damage in the last transaction cannot be told from a torn tail: SQLite stops before it,
     * like it does for a bad checksum; the damaged page is never read as data */
    copy_file(save_db, path);
    copy_file(save_wal, wal);
    unlink(shm);
    CHECK(pd_test_flip_bit(wal, WAL_FRAME_OFF(last) + 24 + 100, 1) == 0);
    rc = open_and_scan(path, k.slot, &good);
    CHECK_EQ_INT(rc, SQLITE_OK);
    CHECK_EQ_INT(good, g_n - 1);
    CHECK(strstr(log_last, "torn") != NULL);

    free(w);
    tkey_free(&k);
    free(save_db);
    free(save_wal);
    free(wal);
    free(shm);
    free(path);
    pd_test_rmtree(dir);
    free(dir);
}

static void torn_uncommitted_wal_tail_is_ignored(void)
{
    char *dir = pd_test_tmpdir("cv-torn");
    char *path = pd_test_path(dir, "w.db");
    char *wal = sfx(path, "-wal");
    tkey k;
    tkey_new(&k);
    g_path = path;
    g_slot = k.slot;
    g_n = 2000;
    int rfd = -1;
    pid_t pid = spawn(child_wal_commits_then_spill, &rfd);
    NEED(pid > 0);
    bool ready = child_ready(rfd);
    kill_child(pid);
    NEED(ready);
    size_t nw = 0;
    uint8_t *w = pd_test_read_file(wal, &nw);
    NEED(w);
    long frames = 0, last = last_commit_frame(w, nw, &frames);
    CHECK(last >= 0 && frames > last + 2); /* uncommitted frames follow the last commit */
    free(w);
    /* tear the first uncommitted frame (a power cut while it was being written) */
    CHECK(pd_test_flip_bit(wal, WAL_FRAME_OFF(last + 1) + 24 + 3000, 4) == 0);
    long long good = 0;
    CHECK_EQ_INT(open_and_scan(path, k.slot, &good), SQLITE_OK);
    CHECK_EQ_INT(good, g_n);
    sqlite3 *db = open_store(path, k.slot, NULL);
    NEED(db);
    CHECK(integrity_ok(db));
    sqlite3_close(db);
    tkey_free(&k);
    free(wal);
    free(path);
    pd_test_rmtree(dir);
    free(dir);
}

static void tampered_frame_in_live_wal_is_refused(void)
{
    char *dir = pd_test_tmpdir("cv-livew");
    char *path = pd_test_path(dir, "l.db");
    char *wal = sfx(path, "-wal");
    tkey k;
    tkey_new(&k);
    sqlite3 *a = open_store(path, k.slot, "WAL");
    NEED(a);
    CHECK_EQ_INT(exec(a, "PRAGMA wal_autocheckpoint=0; BEGIN"), SQLITE_OK);
    CHECK_EQ_INT(fill_t(a, 1, 300), SQLITE_OK);
    CHECK_EQ_INT(exec(a, "COMMIT"), SQLITE_OK);
    sqlite3 *b = open_store(path, k.slot, NULL);
    NEED(b);
    size_t nw = 0;
    uint8_t *w = pd_test_read_file(wal, &nw);
    NEED(w);
    long frames = 0;
    long last = last_commit_frame(w, nw, &frames);
    CHECK(last > 3);
    free(w);
    /* flip a byte in the newest frame: b reads it through the wal-index, page alone */
    CHECK(pd_test_flip_bit(wal, WAL_FRAME_OFF(last) + 24 + 500, 2) == 0);
    int rc;
    t_good_rows(b, &rc);
    CHECK_EQ_INT(rc, SQLITE_IOERR_DATA);
    sqlite3_close(b);
    sqlite3_close(a);
    tkey_free(&k);
    free(wal);
    free(path);
    pd_test_rmtree(dir);
    free(dir);
}

/* ---- temporary files ---------------------------------------------------------------------- */

static void temp_files_never_reach_the_disk(void)
{
    char *dir = pd_test_tmpdir("cv-temp");
    char *path = pd_test_path(dir, "tmp.db");
    tkey k;
    tkey_new(&k);
    sqlite3 *db = open_store(path, k.slot, "WAL");
    NEED(db);
    CHECK_EQ_INT(exec(db, "BEGIN"), SQLITE_OK);
    CHECK_EQ_INT(fill_t(db, 1, 20000), SQLITE_OK);
    CHECK_EQ_INT(exec(db, "COMMIT"), SQLITE_OK);
    int before = log_temp_refusals;
    int rc;
    /* with temp_store=MEMORY: a big sort with a tiny cache, an index build, a temp table,
     * statement journals far beyond the spill size, VACUUM — no temp file requested */
    CHECK_EQ_INT(exec(db, "PRAGMA cache_size=10"), SQLITE_OK);
    CHECK_EQ_INT(
        q_int(db, "SELECT count(*) FROM (SELECT payload FROM t ORDER BY payload DESC)", &rc),
        20000);
    CHECK_EQ_INT(q_int(db, "SELECT count(DISTINCT substr(payload, 150)) FROM t", &rc), 20000);
    CHECK_EQ_INT(exec(db, "CREATE INDEX t_payload ON t(payload)"), SQLITE_OK);
    CHECK_EQ_INT(exec(db, "CREATE TEMP TABLE scratch AS SELECT * FROM t"), SQLITE_OK);
    CHECK_EQ_INT(exec(db, "CREATE TABLE u(a INTEGER PRIMARY KEY, b TEXT CHECK (b <> 'stop'))"),
                 SQLITE_OK);
    CHECK_EQ_INT(exec(db, "BEGIN; INSERT INTO u SELECT id, payload FROM t"), SQLITE_OK);
    CHECK_EQ_INT(
        exec_q(db, "UPDATE u SET b = CASE WHEN a = 20000 THEN 'stop' ELSE b || 'x' END", true),
        SQLITE_CONSTRAINT_CHECK);
    CHECK_EQ_INT(exec(db, "COMMIT"), SQLITE_OK);
    CHECK_EQ_INT(q_int(db, "SELECT count(*) FROM u WHERE b NOT LIKE '%x'", &rc), 20000);
    CHECK_EQ_INT(exec(db, "PRAGMA journal_mode=DELETE; VACUUM"), SQLITE_OK);
    CHECK_EQ_INT(log_temp_refusals, before);
    CHECK(!holds_plaintext(path));

    /* without temp_store=MEMORY, a temp database that outgrows its cache (and so would be
     * written to a file) is refused, loudly */
    CHECK_EQ_INT(exec(db, "PRAGMA temp_store=FILE"), SQLITE_OK);
    CHECK_EQ_INT(exec(db, "PRAGMA temp.cache_size=10"), SQLITE_OK);
    rc = exec_q(db, "CREATE TEMP TABLE leak AS SELECT * FROM t", true);
    CHECK_EQ_INT(rc & 0xff, SQLITE_CANTOPEN);
    CHECK(log_temp_refusals > before);
    sqlite3_close(db);
    tkey_free(&k);
    free(path);
    pd_test_rmtree(dir);
    free(dir);
}

/* ---- VACUUM INTO -------------------------------------------------------------------------- */

static void vacuum_into_copies_under_another_key(void)
{
    char *dir = pd_test_tmpdir("cv-vacinto");
    char *path = pd_test_path(dir, "src.db");
    char *dst = pd_test_path(dir, "dst.db");
    tkey k, k2;
    tkey_new(&k);
    tkey_new(&k2);
    sqlite3 *db = open_store(path, k.slot, "WAL");
    NEED(db);
    CHECK_EQ_INT(fill_people(db), SQLITE_OK);
    CHECK_EQ_INT(fill_t(db, 1, 100), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    char uri[1024];
    snprintf(uri, sizeof uri, "file:%s?pdslot=%u", dst, k2.slot);
    CHECK_EQ_INT(sqlite3_prepare_v2(db, "VACUUM INTO ?1", -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_text(st, 1, uri, -1, SQLITE_STATIC);
    CHECK_EQ_INT(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);
    CHECK(pd_test_file_exists(dst));
    CHECK(!holds_plaintext(dst));
    long long good = 0;
    CHECK_EQ_INT(open_and_scan(dst, k2.slot, &good), SQLITE_OK);
    CHECK_EQ_INT(good, 100);
    CHECK_EQ_INT(open_and_scan(dst, k.slot, &good), SQLITE_IOERR_DATA);
    tkey_free(&k2);
    tkey_free(&k);
    free(dst);
    free(path);
    pd_test_rmtree(dir);
    free(dir);
}

int main(void)
{
    sqlite3_config(SQLITE_CONFIG_LOG, log_cb, NULL);
    REQUIRE(sodium_init() >= 0);
    REQUIRE(pd_cryptvfs_register() == SQLITE_OK);
    REQUIRE(pd_cryptvfs_register() == SQLITE_OK);                          /* idempotent */
    REQUIRE(sqlite3_vfs_find(NULL) != sqlite3_vfs_find(PD_CRYPTVFS_NAME)); /* not the default */
    RUN(file_layer_seals_into_scratch_and_zeroes_reserve);
    RUN(nonces_count_within_an_open_file_and_random_nonces_still_read);
    RUN(key_registry_gives_distinct_slots_and_forgets);
    RUN(new_database_gets_4096_pages_and_40_reserved_bytes);
    RUN(first_write_without_prepare_is_refused);
    RUN(wal_and_database_hold_no_plaintext);
    RUN(journal_holds_no_plaintext);
    RUN(tampered_database_pages_are_refused);
    RUN(hot_journal_rolls_back_and_tampered_journal_is_refused);
    RUN(hot_wal_recovers_every_commit);
    RUN(torn_uncommitted_wal_tail_is_ignored);
    RUN(tampered_frame_in_live_wal_is_refused);
    RUN(temp_files_never_reach_the_disk);
    RUN(vacuum_into_copies_under_another_key);
    sqlite3_shutdown();
    return pd_test_finish();
}

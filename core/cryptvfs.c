/*
 * cryptvfs.c — "pdcrypt", the SQLite VFS shim that encrypts every page of a device database.
 *
 * What it is
 *   A wrapper around the default VFS (sqlite3_vfs_find(NULL)), built like SQLite's
 *   ext/misc/cksumvfs.c: each page carries PD_PAGE_RESERVE (40) reserved bytes at its end, and
 *   the shim keeps an XChaCha20-Poly1305-IETF nonce (24 bytes) and tag (16 bytes) there. SQLite
 *   never sees them: it reads plaintext pages whose reserved bytes are zero, and writes pages
 *   that the shim seals into a scratch buffer (never in the caller's buffer) on their way down.
 *   It is registered as "pdcrypt", not as the default; a store opens its database with
 *   "file:/abs/store.db?pdslot=<n>", SQLITE_OPEN_URI and PD_CRYPTVFS_NAME, then calls
 *   pd_cryptvfs_prepare(db), then sets journal_mode and temp_store=MEMORY (see cryptvfs.h).
 *
 * On-disk format (format version 1); every page is PD_PAGE_SIZE (4096) bytes:
 *     [0 .. 4056)     ciphertext (page 1: bytes 0..23 stay in the clear, see below)
 *     [4056 .. 4080)  nonce, never used twice under the key (see "Nonces" below)
 *     [4080 .. 4096)  Poly1305 tag
 *   Associated data: pgno (u32 big-endian) || database id (16 bytes) || format version (1 byte),
 *   and for page 1 also its first 24 bytes. Those 24 bytes (SQLite magic, page size, file format
 *   versions, reserve byte = 40, payload fractions) are kept in the clear so the page size and
 *   the reserve can be read without the key; binding them into the AD makes them tamper-evident.
 *   The pgno is the page's own number wherever the page image sits: in the database file (from
 *   the offset), in a WAL frame (from the frame header) and in a rollback-journal record (from the
 *   4-byte record prefix). So a page cannot be moved to another place or another database, and a
 *   frame or record cannot be relabelled, without failing authentication.
 *   Why XChaCha20-Poly1305 and not AES-GCM: low-end Android phones often lack the ARMv8 crypto
 *   extensions, where software AES is slow and not constant-time; ChaCha20 is fast and
 *   constant-time everywhere, and 192-bit nonces make nonce reuse a non-issue (next paragraph).
 *
 * Nonces
 *   Each open file (each sqlite3_file: a connection's database, WAL or journal) draws one random
 *   24-byte nonce from randombytes_buf when it is opened; every page it seals uses the current
 *   value and then adds one to its last 8 bytes (a little-endian 64-bit counter, sodium_increment).
 *   So within one open file no nonce repeats before 2^64 writes, and two open files (other
 *   connections, other processes, earlier runs, the same key) repeat one only if their random
 *   first 16 bytes collide: the odds are those of random 128-bit values, below 2^-60 even after
 *   2^32 opens under one key. This is XChaCha20's intended use: the first 16 bytes select a
 *   subkey (HChaCha20), the last 8 are the ChaCha20 nonce, so each open file is a fresh subkey
 *   with a counter nonce. Why not a fresh random nonce per page, as format 1 first did: on Linux
 *   randombytes_buf is a getrandom() system call, measured at 1.25 us against 4.3 us for
 *   sealing the page itself (+30% per page write). Readers take the nonce from the page and
 *   never care how it was chosen, so the on-disk format (version 1) is unchanged and old files
 *   read as before. The counter lives in the open file, which SQLite uses from one thread at a
 *   time; a process must not fork and write through a file opened before the fork (SQLite
 *   forbids carrying a connection across fork() anyway).
 *
 * Which files
 *   MAIN_DB, MAIN_JOURNAL and WAL are encrypted. SUPER_JOURNAL files hold only file names and are
 *   passed through untouched. TEMP_DB, TEMP_JOURNAL, SUBJOURNAL and TRANSIENT_DB files are refused
 *   (SQLITE_CANTOPEN, with a line in sqlite3_log): with PRAGMA temp_store=MEMORY SQLite 3.40 keeps
 *   them all in memory (statement journals become memory journals, the sorter never spills to a
 *   PMA file, ephemeral tables and VACUUM's scratch database are in-memory btrees), so a request
 *   for one on disk means the store forgot temp_store=MEMORY, and plaintext would leak. Files of
 *   no known type are refused too. The key comes from the URI parameter "pdslot", which SQLite
 *   makes visible on journal and WAL names as well; an unknown or missing slot is SQLITE_CANTOPEN
 *   (never silently unencrypted). Each open file keeps its own copy of the key in sodium_malloc'd
 *   (guarded, locked) memory until it is closed.
 *
 * The zero-reserve invariant (why WAL and journal recovery works)
 *   SQLite computes WAL frame checksums and rollback-journal record checksums over the page as it
 *   holds it in memory, before calling xWrite. Pages it holds were either read through this shim
 *   (reserved bytes returned as zero) or created by the pager (zero-filled), and the b-tree layer
 *   never writes into the reserved area; so the checksums are always over zero reserved bytes,
 *   and when recovery re-reads the frame or record through the shim it gets the same bytes and
 *   the same checksum. If this did not hold, SQLite would silently drop WAL frames on recovery
 *   (SQLite3MultipleCiphers lost committed data exactly this way). tests/test_crash.c proves it.
 *
 * How SQLite's I/O maps onto pages
 *   Database file: full-page reads and writes at page-aligned offsets. A shorter read inside one
 *   page (the 100-byte header read at 0, the 16-byte change-counter read at 24) reads, decrypts
 *   and slices the whole page. A read past the end of the file (SQLITE_IOERR_SHORT_READ, all
 *   zero) passes through zero-filled; a partial page with content is a truncated page and fails.
 *   A page-1 write whose page size is not 4096 or whose reserve byte is not 40 is refused
 *   (SQLITE_IOERR_WRITE, logged), which also blocks "PRAGMA page_size=N; VACUUM"; "PRAGMA
 *   page_size" to anything but 4096 is rejected up front through SQLITE_FCNTL_PRAGMA. xFetch
 *   returns NULL (no memory map of ciphertext) and SQLITE_FCNTL_MMAP_SIZE is forced to 0.
 *   Rollback journal: a record is pgno (4) + page + checksum (4). SQLite writes and reads the
 *   page as its own pageSize-sized call at an offset = 4 (mod 8): journal headers start at
 *   multiples of the sector size (>= 512) and records are 4104 = 8 * 513 bytes, so a header
 *   write, even a 4096-byte one with 4096-byte sectors, is at an offset = 0 (mod 8). The pgno is
 *   the 4 bytes before the page in the file (SQLite writes it first; the shim remembers the value
 *   it just wrote and only re-reads it from the file otherwise). Headers, pgnos and checksums
 *   pass through in the clear.
 *   WAL: a 32-byte header, then frames of a 24-byte header (pgno, commit size, salts, checksums;
 *   in the clear) and a page. SQLite writes the frame header and the page separately; it reads
 *   the page alone (the shim reads header and page in one call to learn the pgno) or header and
 *   page together (recovery, checksum rewrites); both work.
 *
 * Tampering and torn writes
 *   A page that fails authentication is never returned: the read fails with SQLITE_IOERR_DATA
 *   (pd_status_from_sqlite maps it to PD_ERR_CORRUPT) and sqlite3_log says which file and page.
 *   One case needs judgement: WAL recovery reading a frame (header + page in one read) that fails
 *   authentication. With synchronous=FULL SQLite syncs the WAL at every commit and starts the
 *   next transaction only afterwards, so after a power loss only the frames of the last, never
 *   acknowledged transaction can be torn, in any order. Therefore: if the failing frame's salts
 *   do not match the WAL header, SQLite ignores it anyway; otherwise, if some frame of a LATER
 *   transaction (after the next commit frame at or after the failing one, with matching salts)
 *   authenticates, the failure is in the middle of synced data: tampering, SQLITE_IOERR_DATA.
 *   If none does, the failing frame belongs to the torn tail: the shim hands SQLite the frame
 *   with a zeroed page and inverted salts, which SQLite rejects deterministically and stops
 *   replay there, exactly as it treats a bad checksum with the default VFS. (A stricter rule,
 *   "any later valid frame means tampering", would refuse to open a database whose last
 *   transaction was torn by a power cut with its own commit frame reaching the disk first.)
 *   What this cannot detect, and no per-page scheme can: rolling the database back to an older
 *   consistent state, e.g. by deleting or truncating the WAL or damaging the clear frame headers
 *   (SQLite then stops at the damaged frame), or by replacing all files with older copies.
 *   Rollback journals are strict: every record SQLite plays back must authenticate. With
 *   synchronous=FULL SQLite syncs the records before it writes the record count into the
 *   journal header, and writes the database only after that, so a hot journal never holds a
 *   torn record within its count; with synchronous=NORMAL a power cut could leave one, and the
 *   open would fail with SQLITE_IOERR_DATA instead of rolling back. The store must therefore use
 *   synchronous=FULL (WAL and rollback alike).
 *
 * What leaks
 *   File sizes, which pages are written when (and, through the nonce counter, which writes came
 *   through the same open file and in what order), the clear page-1 header bytes, WAL frame headers
 *   and journal headers, and the checksums SQLite stores next to each WAL frame (64 bits) and
 *   journal record (32 bits): SQLite computes them over the plaintext, so they would let someone
 *   confirm a guess of a whole page, not read one. The -shm file (wal-index) holds page numbers
 *   and frame numbers only.
 */
#include "cryptvfs.h"
#include "internal.h"

#include <pthread.h>
#include <sodium.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CV_FORMAT_VERSION 1
#define CV_PAGE PD_PAGE_SIZE
#define CV_RESERVE PD_PAGE_RESERVE
#define CV_NONCE crypto_aead_xchacha20poly1305_ietf_NPUBBYTES
#define CV_TAG crypto_aead_xchacha20poly1305_ietf_ABYTES
#define CV_BODY (CV_PAGE - CV_RESERVE) /* bytes of a page SQLite may use */
#define CV_CLEAR1 24                   /* clear bytes at the start of page 1 */
#define CV_AD_MAX (4 + PD_DBID_BYTES + 1 + CV_CLEAR1)
#define CV_SECRET (PD_KEY_BYTES + PD_DBID_BYTES) /* key || database id */
#define CV_WAL_HDR 32
#define CV_WAL_FHDR 24
#define CV_WAL_FRAME (CV_WAL_FHDR + CV_PAGE)
#define CV_JRNL_PGNO 4
#define CV_SCRATCH (CV_WAL_FRAME + CV_PAGE) /* one sealed frame + one plaintext page */

_Static_assert(CV_NONCE + CV_TAG == CV_RESERVE, "nonce and tag fill the reserved bytes");
_Static_assert(crypto_aead_xchacha20poly1305_ietf_KEYBYTES == PD_KEY_BYTES, "key size");
_Static_assert(CV_PAGE <= 65536 && CV_PAGE % 512 == 0, "page size");

enum cv_kind { CV_MAIN, CV_JOURNAL, CV_WAL };

/* ---- key registry ------------------------------------------------------------------------- */

typedef struct cv_key {
    unsigned slot;
    uint8_t *secret; /* sodium_malloc'd key || dbid */
} cv_key;

static pthread_mutex_t reg_mutex = PTHREAD_MUTEX_INITIALIZER;
static cv_key *reg_keys;
static size_t reg_count, reg_cap;
static unsigned reg_next = 1;

int pd_cryptvfs_key_add(const uint8_t key[PD_KEY_BYTES], const uint8_t dbid[PD_DBID_BYTES],
                        unsigned *slot)
{
    if (!key || !dbid || !slot)
        return PD_ERR_INVALID;
    if (sodium_init() < 0)
        return PD_ERR_INTERNAL;
    uint8_t *secret = sodium_malloc(CV_SECRET);
    if (!secret)
        return PD_ERR_NOMEM;
    memcpy(secret, key, PD_KEY_BYTES);
    memcpy(secret + PD_KEY_BYTES, dbid, PD_DBID_BYTES);
    sodium_mprotect_readonly(secret);

    int rc = PD_OK;
    pthread_mutex_lock(&reg_mutex);
    if (reg_count == reg_cap) {
        size_t cap = reg_cap ? reg_cap * 2 : 8, bytes = 0;
        cv_key *n = NULL;
        if (pd_size_mul(cap, sizeof *n, &bytes))
            n = realloc(reg_keys, bytes);
        if (!n) {
            rc = PD_ERR_NOMEM;
            goto out;
        }
        reg_keys = n;
        reg_cap = cap;
    }
    if (reg_next == 0) { /* 2^32 keys added in one process: refuse rather than reuse a number */
        rc = PD_ERR_INTERNAL;
        goto out;
    }
    reg_keys[reg_count].slot = reg_next;
    reg_keys[reg_count].secret = secret;
    reg_count++;
    *slot = reg_next++;
    secret = NULL;
out:
    pthread_mutex_unlock(&reg_mutex);
    sodium_free(secret);
    return rc;
}

void pd_cryptvfs_key_remove(unsigned slot)
{
    uint8_t *secret = NULL;
    pthread_mutex_lock(&reg_mutex);
    for (size_t i = 0; i < reg_count; i++) {
        if (reg_keys[i].slot == slot) {
            secret = reg_keys[i].secret;
            reg_keys[i] = reg_keys[--reg_count];
            break;
        }
    }
    if (reg_count == 0) {
        free(reg_keys);
        reg_keys = NULL;
        reg_cap = 0;
    }
    pthread_mutex_unlock(&reg_mutex);
    sodium_free(secret); /* sodium_free wipes before unmapping */
}

/* A copy of the secret of `slot` in fresh locked memory; NULL if the slot is unknown or no memory.
 */
static uint8_t *key_copy(unsigned slot)
{
    uint8_t *copy = sodium_malloc(CV_SECRET);
    if (!copy)
        return NULL;
    bool found = false;
    pthread_mutex_lock(&reg_mutex);
    for (size_t i = 0; i < reg_count; i++) {
        if (reg_keys[i].slot == slot) {
            memcpy(copy, reg_keys[i].secret, CV_SECRET);
            found = true;
            break;
        }
    }
    pthread_mutex_unlock(&reg_mutex);
    if (!found) {
        sodium_free(copy);
        return NULL;
    }
    sodium_mprotect_readonly(copy);
    return copy;
}

/* "pdslot=<decimal>" from a file name SQLite gave to xOpen; 0 if absent or malformed. */
static unsigned slot_from_name(const char *zName)
{
    const char *s = sqlite3_uri_parameter(zName, PD_CRYPTVFS_SLOT_PARAM);
    if (!s || !*s)
        return 0;
    unsigned long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return 0;
        v = v * 10 + (unsigned long)(*s - '0');
        if (v > 0xffffffffUL)
            return 0;
    }
    return (unsigned)v;
}

/* ---- page sealing ------------------------------------------------------------------------- */

typedef struct cv_file {
    sqlite3_file base;       /* must be first: SQLite sees this */
    sqlite3_file *real;      /* the wrapped file, stored right after this struct */
    const char *name;        /* for messages; SQLite keeps it valid until xClose */
    uint8_t *secret;         /* this file's copy of key || dbid */
    uint8_t *scratch;        /* CV_SCRATCH bytes */
    uint8_t nonce[CV_NONCE]; /* the next page write's nonce: random at open, then counted */
    int kind;
    sqlite3_int64 hint_off; /* where we last wrote a pgno (journal) or frame header (WAL) */
    uint32_t hint_pgno;
} cv_file;

#define REAL(f) ((sqlite3_file *)(((cv_file *)(f)) + 1))

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static size_t make_ad(uint8_t ad[CV_AD_MAX], uint32_t pgno, const uint8_t *dbid,
                      const uint8_t *page)
{
    ad[0] = (uint8_t)(pgno >> 24);
    ad[1] = (uint8_t)(pgno >> 16);
    ad[2] = (uint8_t)(pgno >> 8);
    ad[3] = (uint8_t)pgno;
    memcpy(ad + 4, dbid, PD_DBID_BYTES);
    ad[4 + PD_DBID_BYTES] = CV_FORMAT_VERSION;
    size_t n = 4 + PD_DBID_BYTES + 1;
    if (pgno == 1) {
        memcpy(ad + n, page, CV_CLEAR1);
        n += CV_CLEAR1;
    }
    return n;
}

/* Seal the plaintext page `plain` (page number pgno) into `out` (CV_PAGE bytes, distinct). */
static void page_seal(cv_file *f, uint32_t pgno, const uint8_t *plain, uint8_t *out)
{
    size_t clear = pgno == 1 ? CV_CLEAR1 : 0;
    uint8_t *nonce = out + CV_BODY;
    uint8_t *tag = nonce + CV_NONCE;
    uint8_t ad[CV_AD_MAX];
    size_t adlen = make_ad(ad, pgno, f->secret + PD_KEY_BYTES, plain);

    memcpy(out, plain, clear);
    memcpy(nonce, f->nonce, CV_NONCE);
    sodium_increment(f->nonce + CV_NONCE - 8, 8);
    crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
        out + clear, tag, NULL, plain + clear, CV_BODY - clear, ad, adlen, NULL, nonce, f->secret);
}

/* Open the sealed page `in` into `out` (distinct buffers) with reserved bytes zeroed.
 * Returns 0, or -1 with `out` zeroed if the page does not authenticate. */
static int page_open(const cv_file *f, uint32_t pgno, const uint8_t *in, uint8_t *out)
{
    size_t clear = pgno == 1 ? CV_CLEAR1 : 0;
    const uint8_t *nonce = in + CV_BODY;
    const uint8_t *tag = nonce + CV_NONCE;
    uint8_t ad[CV_AD_MAX];
    size_t adlen = make_ad(ad, pgno, f->secret + PD_KEY_BYTES, in);

    if (crypto_aead_xchacha20poly1305_ietf_decrypt_detached(out + clear, NULL, in + clear,
                                                            CV_BODY - clear, tag, ad, adlen, nonce,
                                                            f->secret) != 0) {
        memset(out, 0, CV_PAGE);
        return -1;
    }
    memcpy(out, in, clear);
    memset(out + CV_BODY, 0, CV_RESERVE);
    return 0;
}

/* Page 1 as SQLite writes it must say 4096-byte pages and 40 reserved bytes. */
static bool page1_format_ok(const uint8_t *p)
{
    unsigned size = (unsigned)p[16] << 8 | p[17];
    return size == CV_PAGE && p[20] == CV_RESERVE;
}

static const char *kind_name(int kind)
{
    return kind == CV_MAIN ? "database" : kind == CV_WAL ? "WAL" : "journal";
}

static int fail_auth(cv_file *f, void *buf, int amt, uint32_t pgno, sqlite3_int64 off)
{
    memset(buf, 0, (size_t)amt);
    sqlite3_log(SQLITE_IOERR_DATA,
                "pdcrypt: %s: %s page %u at offset %lld fails authentication "
                "(tampered, corrupted, or a different key or database id)",
                f->name, kind_name(f->kind), pgno, (long long)off);
    return SQLITE_IOERR_DATA;
}

static int refuse_io(cv_file *f, int code, const char *what, int amt, sqlite3_int64 off)
{
    sqlite3_log(code, "pdcrypt: %s: refusing %s of %d bytes at offset %lld of the %s", f->name,
                what, amt, (long long)off, kind_name(f->kind));
    return code;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc |= p[i];
    return acc == 0;
}

/* Read from the wrapped file (SQLITE_IOERR_SHORT_READ zero-fills the rest of dst). */
static int real_read(cv_file *f, uint8_t *dst, int amt, sqlite3_int64 off)
{
    return f->real->pMethods->xRead(f->real, dst, amt, off);
}

/* ---- database file ------------------------------------------------------------------------ */

static int main_read(cv_file *f, uint8_t *buf, int amt, sqlite3_int64 off)
{
    sqlite3_int64 page_off = off - off % CV_PAGE;
    if (off + amt > page_off + CV_PAGE || page_off / CV_PAGE >= 0xffffffffLL)
        return refuse_io(f, SQLITE_IOERR_READ, "a read spanning pages", amt, off);
    uint32_t pgno = (uint32_t)(page_off / CV_PAGE) + 1;
    uint8_t *sealed = f->scratch;
    int rc = real_read(f, sealed, CV_PAGE, page_off);
    if (rc == SQLITE_IOERR_SHORT_READ) {
        memset(buf, 0, (size_t)amt);
        if (!all_zero(sealed, CV_PAGE)) {
            sqlite3_log(SQLITE_IOERR_DATA, "pdcrypt: %s: page %u is truncated", f->name, pgno);
            return SQLITE_IOERR_DATA;
        }
        return SQLITE_IOERR_SHORT_READ;
    }
    if (rc != SQLITE_OK)
        return rc;
    if (amt == CV_PAGE)
        return page_open(f, pgno, sealed, buf) == 0 ? SQLITE_OK
                                                    : fail_auth(f, buf, amt, pgno, page_off);
    uint8_t *plain = f->scratch + CV_WAL_FRAME;
    if (page_open(f, pgno, sealed, plain) != 0)
        return fail_auth(f, buf, amt, pgno, page_off);
    memcpy(buf, plain + (off - page_off), (size_t)amt);
    sodium_memzero(plain, CV_PAGE);
    return SQLITE_OK;
}

static int main_write(cv_file *f, const uint8_t *buf, int amt, sqlite3_int64 off)
{
    if (amt != CV_PAGE || off % CV_PAGE != 0 || off / CV_PAGE >= 0xffffffffLL)
        return refuse_io(f, SQLITE_IOERR_WRITE, "a database write that is not one whole page", amt,
                         off);
    uint32_t pgno = (uint32_t)(off / CV_PAGE) + 1;
    if (pgno == 1 && !page1_format_ok(buf)) {
        sqlite3_log(SQLITE_IOERR_WRITE,
                    "pdcrypt: %s: refusing to write page 1 with page size %u and %u reserved "
                    "bytes (must be %d and %d; call pd_cryptvfs_prepare before the first write, "
                    "and do not change page_size)",
                    f->name, (unsigned)buf[16] << 8 | buf[17], buf[20], CV_PAGE, CV_RESERVE);
        return SQLITE_IOERR_WRITE;
    }
    page_seal(f, pgno, buf, f->scratch);
    return f->real->pMethods->xWrite(f->real, f->scratch, CV_PAGE, off);
}

/* ---- rollback journal --------------------------------------------------------------------- */

static bool jrnl_is_page(int amt, sqlite3_int64 off)
{
    return amt == CV_PAGE && off >= CV_JRNL_PGNO && off % 8 == CV_JRNL_PGNO;
}

static int jrnl_read(cv_file *f, uint8_t *buf, int amt, sqlite3_int64 off)
{
    if (!jrnl_is_page(amt, off))
        return f->real->pMethods->xRead(f->real, buf, amt, off);
    /* pgno and page in one read */
    uint8_t *rec = f->scratch;
    int rc = real_read(f, rec, CV_JRNL_PGNO + CV_PAGE, off - CV_JRNL_PGNO);
    if (rc == SQLITE_IOERR_SHORT_READ) {
        memset(buf, 0, (size_t)amt);
        return rc;
    }
    if (rc != SQLITE_OK)
        return rc;
    uint32_t pgno = get_be32(rec);
    if (page_open(f, pgno, rec + CV_JRNL_PGNO, buf) != 0)
        return fail_auth(f, buf, amt, pgno, off);
    return SQLITE_OK;
}

static int jrnl_write(cv_file *f, const uint8_t *buf, int amt, sqlite3_int64 off)
{
    sqlite3_file *r = f->real;
    if (!jrnl_is_page(amt, off)) {
        int rc = r->pMethods->xWrite(r, buf, amt, off);
        if (rc == SQLITE_OK && amt == CV_JRNL_PGNO) {
            f->hint_off = off;
            f->hint_pgno = get_be32(buf);
        } else if (off < f->hint_off + CV_JRNL_PGNO && f->hint_off < off + amt) {
            f->hint_off = -1;
        }
        return rc;
    }
    uint32_t pgno;
    if (f->hint_off == off - CV_JRNL_PGNO) {
        pgno = f->hint_pgno;
    } else {
        uint8_t b[CV_JRNL_PGNO];
        int rc = r->pMethods->xRead(r, b, CV_JRNL_PGNO, off - CV_JRNL_PGNO);
        if (rc != SQLITE_OK)
            return refuse_io(f, SQLITE_IOERR_WRITE, "a page write with no page number before it",
                             amt, off);
        pgno = get_be32(b);
    }
    page_seal(f, pgno, buf, f->scratch);
    return r->pMethods->xWrite(r, f->scratch, CV_PAGE, off);
}

/* ---- WAL ---------------------------------------------------------------------------------- */

/* Offset within its frame of a WAL offset past the WAL header. */
static sqlite3_int64 wal_in_frame(sqlite3_int64 off)
{
    return (off - CV_WAL_HDR) % CV_WAL_FRAME;
}

/* A frame SQLite will reject for sure: header with inverted salts, zero page. */
static void wal_reject_frame(uint8_t *frame)
{
    for (int i = 8; i < 16; i++)
        frame[i] ^= 0xff;
    memset(frame + CV_WAL_FHDR, 0, CV_PAGE);
}

/* A frame read as header + page at `off` failed authentication; `frame` holds its clear header.
 * Decide between torn tail (returns SQLITE_OK with a frame SQLite rejects) and tampering
 * (SQLITE_IOERR_DATA). See "Tampering and torn writes" at the top of this file. */
static int wal_failed_frame(cv_file *f, uint8_t *frame, sqlite3_int64 off)
{
    uint32_t pgno = get_be32(frame);
    uint8_t hdr[CV_WAL_HDR];
    int rc = real_read(f, hdr, CV_WAL_HDR, 0);
    if (rc != SQLITE_OK)
        return fail_auth(f, frame, CV_WAL_FRAME, pgno, off);
    const uint8_t *salts = hdr + 16;
    if (memcmp(frame + 8, salts, 8) != 0) { /* not of this WAL generation: SQLite skips it */
        wal_reject_frame(frame);
        return SQLITE_OK;
    }
    sqlite3_int64 size = 0;
    rc = f->real->pMethods->xFileSize(f->real, &size);
    if (rc != SQLITE_OK)
        return fail_auth(f, frame, CV_WAL_FRAME, pgno, off);

    bool past_commit = get_be32(frame + 4) != 0;
    bool later_valid = false;
    uint8_t *sealed = f->scratch, *plain = f->scratch + CV_WAL_FRAME;
    for (sqlite3_int64 o = off + CV_WAL_FRAME; o + CV_WAL_FRAME <= size; o += CV_WAL_FRAME) {
        if (real_read(f, sealed, CV_WAL_FRAME, o) != SQLITE_OK)
            break;
        if (memcmp(sealed + 8, salts, 8) != 0)
            continue;
        if (!past_commit) {
            past_commit = get_be32(sealed + 4) != 0;
            continue;
        }
        if (page_open(f, get_be32(sealed), sealed + CV_WAL_FHDR, plain) == 0) {
            later_valid = true;
            break;
        }
    }
    sodium_memzero(plain, CV_PAGE);
    if (later_valid)
        return fail_auth(f, frame, CV_WAL_FRAME, pgno, off);
    sqlite3_log(SQLITE_NOTICE_RECOVER_WAL,
                "pdcrypt: %s: WAL frame at offset %lld (page %u) does not authenticate and no "
                "later transaction does: a torn, unacknowledged tail; recovery stops there",
                f->name, (long long)off, pgno);
    wal_reject_frame(frame);
    return SQLITE_OK;
}

static int wal_read(cv_file *f, uint8_t *buf, int amt, sqlite3_int64 off)
{
    sqlite3_file *r = f->real;
    if (off + amt <= CV_WAL_HDR)
        return r->pMethods->xRead(r, buf, amt, off);
    if (off < CV_WAL_HDR)
        return refuse_io(f, SQLITE_IOERR_READ, "a read across the WAL header", amt, off);
    sqlite3_int64 in = wal_in_frame(off);
    if (in == CV_WAL_FHDR && amt == CV_PAGE) { /* the page alone: read its header with it */
        uint8_t *frame = f->scratch;
        int rc = real_read(f, frame, CV_WAL_FRAME, off - CV_WAL_FHDR);
        if (rc == SQLITE_IOERR_SHORT_READ) {
            memset(buf, 0, (size_t)amt);
            return rc;
        }
        if (rc != SQLITE_OK)
            return rc;
        uint32_t pgno = get_be32(frame);
        if (page_open(f, pgno, frame + CV_WAL_FHDR, buf) != 0)
            return fail_auth(f, buf, amt, pgno, off);
        return SQLITE_OK;
    }
    if (in == 0 && amt == CV_WAL_FRAME) { /* header and page together */
        uint8_t *frame = f->scratch;
        int rc = real_read(f, frame, CV_WAL_FRAME, off);
        if (rc == SQLITE_IOERR_SHORT_READ) {
            memset(buf, 0, (size_t)amt);
            return rc;
        }
        if (rc != SQLITE_OK)
            return rc;
        memcpy(buf, frame, CV_WAL_FHDR);
        uint32_t pgno = get_be32(frame);
        if (page_open(f, pgno, frame + CV_WAL_FHDR, buf + CV_WAL_FHDR) == 0)
            return SQLITE_OK;
        return wal_failed_frame(f, buf, off);
    }
    if (in + amt <= CV_WAL_FHDR) /* frame header fields */
        return r->pMethods->xRead(r, buf, amt, off);
    return refuse_io(f, SQLITE_IOERR_READ, "an unexpected WAL read", amt, off);
}

static int wal_write(cv_file *f, const uint8_t *buf, int amt, sqlite3_int64 off)
{
    sqlite3_file *r = f->real;
    if (off + amt <= CV_WAL_HDR)
        return r->pMethods->xWrite(r, buf, amt, off);
    if (off < CV_WAL_HDR)
        return refuse_io(f, SQLITE_IOERR_WRITE, "a write across the WAL header", amt, off);
    sqlite3_int64 in = wal_in_frame(off);
    if (in + amt <= CV_WAL_FHDR) { /* frame header (fields) */
        int rc = r->pMethods->xWrite(r, buf, amt, off);
        if (rc == SQLITE_OK && in == 0 && amt >= 4) {
            f->hint_off = off;
            f->hint_pgno = get_be32(buf);
        } else if (off < f->hint_off + 4 && f->hint_off < off + amt) {
            f->hint_off = -1;
        }
        return rc;
    }
    uint32_t pgno;
    const uint8_t *page;
    sqlite3_int64 page_off;
    if (in == CV_WAL_FHDR && amt == CV_PAGE) {
        page = buf;
        page_off = off;
        if (f->hint_off == off - CV_WAL_FHDR) {
            pgno = f->hint_pgno;
        } else {
            uint8_t b[4];
            if (real_read(f, b, 4, off - CV_WAL_FHDR) != SQLITE_OK)
                return refuse_io(f, SQLITE_IOERR_WRITE, "a WAL page write with no frame header",
                                 amt, off);
            pgno = get_be32(b);
        }
    } else if (in == 0 && amt == CV_WAL_FRAME) {
        int rc = r->pMethods->xWrite(r, buf, CV_WAL_FHDR, off);
        if (rc != SQLITE_OK)
            return rc;
        pgno = get_be32(buf);
        page = buf + CV_WAL_FHDR;
        page_off = off + CV_WAL_FHDR;
    } else {
        return refuse_io(f, SQLITE_IOERR_WRITE, "an unexpected WAL write", amt, off);
    }
    if (pgno == 1 && !page1_format_ok(page)) {
        sqlite3_log(SQLITE_IOERR_WRITE,
                    "pdcrypt: %s: refusing a WAL frame of page 1 with page size %u and %u "
                    "reserved bytes",
                    f->name, (unsigned)page[16] << 8 | page[17], page[20]);
        return SQLITE_IOERR_WRITE;
    }
    page_seal(f, pgno, page, f->scratch);
    return r->pMethods->xWrite(r, f->scratch, CV_PAGE, page_off);
}

/* ---- sqlite3_io_methods ------------------------------------------------------------------- */

static int cv_close(sqlite3_file *pFile)
{
    cv_file *f = (cv_file *)pFile;
    int rc = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
    sodium_free(f->secret);
    f->secret = NULL;
    if (f->scratch) {
        sodium_memzero(f->scratch, CV_SCRATCH);
        sqlite3_free(f->scratch);
        f->scratch = NULL;
    }
    return rc;
}

static int cv_read(sqlite3_file *pFile, void *buf, int amt, sqlite3_int64 off)
{
    cv_file *f = (cv_file *)pFile;
    if (amt <= 0 || off < 0)
        return refuse_io(f, SQLITE_IOERR_READ, "a read", amt, off);
    switch (f->kind) {
    case CV_MAIN:
        return main_read(f, buf, amt, off);
    case CV_JOURNAL:
        return jrnl_read(f, buf, amt, off);
    default:
        return wal_read(f, buf, amt, off);
    }
}

static int cv_write(sqlite3_file *pFile, const void *buf, int amt, sqlite3_int64 off)
{
    cv_file *f = (cv_file *)pFile;
    if (amt <= 0 || off < 0)
        return refuse_io(f, SQLITE_IOERR_WRITE, "a write", amt, off);
    switch (f->kind) {
    case CV_MAIN:
        return main_write(f, buf, amt, off);
    case CV_JOURNAL:
        return jrnl_write(f, buf, amt, off);
    default:
        return wal_write(f, buf, amt, off);
    }
}

static int cv_truncate(sqlite3_file *pFile, sqlite3_int64 size)
{
    cv_file *f = (cv_file *)pFile;
    f->hint_off = -1;
    return f->real->pMethods->xTruncate(f->real, size);
}

static int cv_sync(sqlite3_file *pFile, int flags)
{
    sqlite3_file *r = REAL(pFile);
    return r->pMethods->xSync(r, flags);
}

static int cv_file_size(sqlite3_file *pFile, sqlite3_int64 *pSize)
{
    sqlite3_file *r = REAL(pFile);
    return r->pMethods->xFileSize(r, pSize);
}

static int cv_lock(sqlite3_file *pFile, int lock)
{
    sqlite3_file *r = REAL(pFile);
    return r->pMethods->xLock(r, lock);
}

static int cv_unlock(sqlite3_file *pFile, int lock)
{
    sqlite3_file *r = REAL(pFile);
    return r->pMethods->xUnlock(r, lock);
}

static int cv_check_reserved_lock(sqlite3_file *pFile, int *pResOut)
{
    sqlite3_file *r = REAL(pFile);
    return r->pMethods->xCheckReservedLock(r, pResOut);
}

/* "PRAGMA page_size=N" with N != 4096 is an error on an encrypted database. */
static int pragma_control(cv_file *f, char **az)
{
    if (f->kind != CV_MAIN || !az[1] || sqlite3_stricmp(az[1], "page_size") != 0 || !az[2])
        return SQLITE_NOTFOUND;
    char *end = NULL;
    long v = strtol(az[2], &end, 10);
    if (end != az[2] && *end == '\0' && v == CV_PAGE)
        return SQLITE_NOTFOUND; /* let SQLite set what is already the size */
    az[0] =
        sqlite3_mprintf("pdcrypt: the page size of an encrypted database is fixed at %d", CV_PAGE);
    return SQLITE_ERROR;
}

static int cv_file_control(sqlite3_file *pFile, int op, void *pArg)
{
    cv_file *f = (cv_file *)pFile;
    sqlite3_file *r = f->real;
    if (op == SQLITE_FCNTL_PRAGMA) {
        int rc = pragma_control(f, (char **)pArg);
        if (rc != SQLITE_NOTFOUND)
            return rc;
    } else if (op == SQLITE_FCNTL_MMAP_SIZE) {
        /* no memory map of ciphertext: the limit stays 0 whatever is asked */
        sqlite3_int64 zero = 0;
        r->pMethods->xFileControl(r, SQLITE_FCNTL_MMAP_SIZE, &zero);
        *(sqlite3_int64 *)pArg = 0;
        return SQLITE_OK;
    }
    int rc = r->pMethods->xFileControl(r, op, pArg);
    if (op == SQLITE_FCNTL_VFSNAME && rc == SQLITE_OK)
        *(char **)pArg = sqlite3_mprintf(PD_CRYPTVFS_NAME "/%z", *(char **)pArg);
    return rc;
}

static int cv_sector_size(sqlite3_file *pFile)
{
    sqlite3_file *r = REAL(pFile);
    return r->pMethods->xSectorSize(r);
}

static int cv_device_characteristics(sqlite3_file *pFile)
{
    sqlite3_file *r = REAL(pFile);
    return r->pMethods->xDeviceCharacteristics(r);
}

static int cv_shm_map(sqlite3_file *pFile, int iPg, int pgsz, int bExtend, void volatile **pp)
{
    sqlite3_file *r = REAL(pFile);
    return r->pMethods->xShmMap(r, iPg, pgsz, bExtend, pp);
}

static int cv_shm_lock(sqlite3_file *pFile, int offset, int n, int flags)
{
    sqlite3_file *r = REAL(pFile);
    return r->pMethods->xShmLock(r, offset, n, flags);
}

static void cv_shm_barrier(sqlite3_file *pFile)
{
    sqlite3_file *r = REAL(pFile);
    r->pMethods->xShmBarrier(r);
}

static int cv_shm_unmap(sqlite3_file *pFile, int deleteFlag)
{
    sqlite3_file *r = REAL(pFile);
    return r->pMethods->xShmUnmap(r, deleteFlag);
}

static int cv_fetch(sqlite3_file *pFile, sqlite3_int64 off, int amt, void **pp)
{
    (void)pFile;
    (void)off;
    (void)amt;
    *pp = NULL; /* a mapping would expose ciphertext; SQLite falls back to xRead */
    return SQLITE_OK;
}

static int cv_unfetch(sqlite3_file *pFile, sqlite3_int64 off, void *p)
{
    sqlite3_file *r = REAL(pFile);
    if (r->pMethods->iVersion >= 3 && r->pMethods->xUnfetch)
        return r->pMethods->xUnfetch(r, off, p);
    return SQLITE_OK;
}

static const sqlite3_io_methods cv_methods_v3 = {
    3,
    cv_close,
    cv_read,
    cv_write,
    cv_truncate,
    cv_sync,
    cv_file_size,
    cv_lock,
    cv_unlock,
    cv_check_reserved_lock,
    cv_file_control,
    cv_sector_size,
    cv_device_characteristics,
    cv_shm_map,
    cv_shm_lock,
    cv_shm_barrier,
    cv_shm_unmap,
    cv_fetch,
    cv_unfetch,
};

/* For an underlying file without shared-memory methods (no WAL). */
static const sqlite3_io_methods cv_methods_v1 = {
    1,
    cv_close,
    cv_read,
    cv_write,
    cv_truncate,
    cv_sync,
    cv_file_size,
    cv_lock,
    cv_unlock,
    cv_check_reserved_lock,
    cv_file_control,
    cv_sector_size,
    cv_device_characteristics,
};

/* ---- sqlite3_vfs -------------------------------------------------------------------------- */

#define ORIG_VFS(v) ((sqlite3_vfs *)((v)->pAppData))

static int cv_open(sqlite3_vfs *vfs, const char *zName, sqlite3_file *pFile, int flags,
                   int *pOutFlags)
{
    sqlite3_vfs *orig = ORIG_VFS(vfs);
    cv_file *f = (cv_file *)pFile;
    int type = flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_TEMP_DB | SQLITE_OPEN_TRANSIENT_DB |
                        SQLITE_OPEN_MAIN_JOURNAL | SQLITE_OPEN_TEMP_JOURNAL |
                        SQLITE_OPEN_SUBJOURNAL | SQLITE_OPEN_SUPER_JOURNAL | SQLITE_OPEN_WAL);

    if (type == SQLITE_OPEN_SUPER_JOURNAL) /* only file names inside: the plain file, as is */
        return orig->xOpen(orig, zName, pFile, flags, pOutFlags);

    memset(f, 0, sizeof *f);
    f->hint_off = -1;
    f->name = zName ? zName : "(temporary file)";
    if (type == SQLITE_OPEN_MAIN_DB)
        f->kind = CV_MAIN;
    else if (type == SQLITE_OPEN_MAIN_JOURNAL)
        f->kind = CV_JOURNAL;
    else if (type == SQLITE_OPEN_WAL)
        f->kind = CV_WAL;
    else {
        sqlite3_log(SQLITE_CANTOPEN,
                    "pdcrypt: %s: refusing to open a temporary or unknown file on disk (flags "
                    "0x%x); keep temporary data in memory with PRAGMA temp_store=MEMORY",
                    f->name, (unsigned)flags);
        return SQLITE_CANTOPEN;
    }
    if (!zName) {
        sqlite3_log(SQLITE_CANTOPEN, "pdcrypt: refusing a %s without a name", kind_name(f->kind));
        return SQLITE_CANTOPEN;
    }
    unsigned slot = slot_from_name(zName);
    if (slot == 0) {
        sqlite3_log(
            SQLITE_CANTOPEN,
            "pdcrypt: %s: no key: the name has no valid \"" PD_CRYPTVFS_SLOT_PARAM
            "\" URI parameter (open with SQLITE_OPEN_URI and file:...?" PD_CRYPTVFS_SLOT_PARAM
            "=N)",
            zName);
        return SQLITE_CANTOPEN;
    }
    int rc = SQLITE_OK;
    f->secret = key_copy(slot);
    if (!f->secret) {
        sqlite3_log(SQLITE_CANTOPEN, "pdcrypt: %s: no key registered in slot %u", zName, slot);
        rc = SQLITE_CANTOPEN;
        goto out;
    }
    f->scratch = sqlite3_malloc(CV_SCRATCH);
    if (!f->scratch) {
        rc = SQLITE_NOMEM;
        goto out;
    }
    randombytes_buf(f->nonce, CV_NONCE);
    f->real = REAL(f);
    rc = orig->xOpen(orig, zName, f->real, flags, pOutFlags);
    if (rc != SQLITE_OK) {
        if (f->real->pMethods)
            f->real->pMethods->xClose(f->real);
        goto out;
    }
    pFile->pMethods = f->real->pMethods->iVersion >= 2 ? &cv_methods_v3 : &cv_methods_v1;
    if (f->kind == CV_MAIN && f->real->pMethods->iVersion >= 3) {
        sqlite3_int64 zero = 0;
        f->real->pMethods->xFileControl(f->real, SQLITE_FCNTL_MMAP_SIZE, &zero);
    }
out:
    if (rc != SQLITE_OK) {
        sodium_free(f->secret);
        sqlite3_free(f->scratch);
        f->secret = NULL;
        f->scratch = NULL;
        pFile->pMethods = NULL;
    }
    return rc;
}

static int cv_delete(sqlite3_vfs *vfs, const char *zName, int syncDir)
{
    return ORIG_VFS(vfs)->xDelete(ORIG_VFS(vfs), zName, syncDir);
}

static int cv_access(sqlite3_vfs *vfs, const char *zName, int flags, int *pResOut)
{
    return ORIG_VFS(vfs)->xAccess(ORIG_VFS(vfs), zName, flags, pResOut);
}

static int cv_full_pathname(sqlite3_vfs *vfs, const char *zName, int nOut, char *zOut)
{
    return ORIG_VFS(vfs)->xFullPathname(ORIG_VFS(vfs), zName, nOut, zOut);
}

static void *cv_dl_open(sqlite3_vfs *vfs, const char *zPath)
{
    return ORIG_VFS(vfs)->xDlOpen(ORIG_VFS(vfs), zPath);
}

static void cv_dl_error(sqlite3_vfs *vfs, int nByte, char *zErrMsg)
{
    ORIG_VFS(vfs)->xDlError(ORIG_VFS(vfs), nByte, zErrMsg);
}

static void (*cv_dl_sym(sqlite3_vfs *vfs, void *p, const char *zSym))(void)
{
    return ORIG_VFS(vfs)->xDlSym(ORIG_VFS(vfs), p, zSym);
}

static void cv_dl_close(sqlite3_vfs *vfs, void *pHandle)
{
    ORIG_VFS(vfs)->xDlClose(ORIG_VFS(vfs), pHandle);
}

static int cv_randomness(sqlite3_vfs *vfs, int nByte, char *zOut)
{
    return ORIG_VFS(vfs)->xRandomness(ORIG_VFS(vfs), nByte, zOut);
}

static int cv_sleep(sqlite3_vfs *vfs, int microseconds)
{
    return ORIG_VFS(vfs)->xSleep(ORIG_VFS(vfs), microseconds);
}

static int cv_current_time(sqlite3_vfs *vfs, double *pTime)
{
    return ORIG_VFS(vfs)->xCurrentTime(ORIG_VFS(vfs), pTime);
}

static int cv_get_last_error(sqlite3_vfs *vfs, int n, char *z)
{
    return ORIG_VFS(vfs)->xGetLastError(ORIG_VFS(vfs), n, z);
}

static int cv_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *p)
{
    return ORIG_VFS(vfs)->xCurrentTimeInt64(ORIG_VFS(vfs), p);
}

static int cv_set_system_call(sqlite3_vfs *vfs, const char *zName, sqlite3_syscall_ptr pCall)
{
    return ORIG_VFS(vfs)->xSetSystemCall(ORIG_VFS(vfs), zName, pCall);
}

static sqlite3_syscall_ptr cv_get_system_call(sqlite3_vfs *vfs, const char *zName)
{
    return ORIG_VFS(vfs)->xGetSystemCall(ORIG_VFS(vfs), zName);
}

static const char *cv_next_system_call(sqlite3_vfs *vfs, const char *zName)
{
    return ORIG_VFS(vfs)->xNextSystemCall(ORIG_VFS(vfs), zName);
}

static sqlite3_vfs cv_vfs = {
    3,                /* iVersion (lowered to the wrapped VFS's at registration) */
    0,                /* szOsFile (set at registration) */
    0,                /* mxPathname (set at registration) */
    NULL,             /* pNext */
    PD_CRYPTVFS_NAME, /* zName */
    NULL,             /* pAppData: the wrapped VFS */
    cv_open,
    cv_delete,
    cv_access,
    cv_full_pathname,
    cv_dl_open,
    cv_dl_error,
    cv_dl_sym,
    cv_dl_close,
    cv_randomness,
    cv_sleep,
    cv_current_time,
    cv_get_last_error,
    cv_current_time_int64,
    cv_set_system_call,
    cv_get_system_call,
    cv_next_system_call,
};

static pthread_once_t register_once = PTHREAD_ONCE_INIT;
static int register_rc = SQLITE_ERROR;

static void register_vfs(void)
{
    if (sodium_init() < 0) {
        register_rc = SQLITE_ERROR;
        return;
    }
    int rc = sqlite3_initialize();
    if (rc != SQLITE_OK) {
        register_rc = rc;
        return;
    }
    sqlite3_vfs *orig = sqlite3_vfs_find(NULL);
    if (!orig) {
        register_rc = SQLITE_ERROR;
        return;
    }
    cv_vfs.iVersion = orig->iVersion < 3 ? orig->iVersion : 3;
    cv_vfs.szOsFile = (int)sizeof(cv_file) + orig->szOsFile;
    cv_vfs.mxPathname = orig->mxPathname;
    cv_vfs.pAppData = orig;
    register_rc = sqlite3_vfs_register(&cv_vfs, 0);
}

int pd_cryptvfs_register(void)
{
    pthread_once(&register_once, register_vfs);
    return register_rc;
}

/* ---- pd_cryptvfs_prepare ------------------------------------------------------------------ */

static int query_int(sqlite3 *db, const char *sql, int *out)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        goto out;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *out = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_ERROR;
    }
out:
    sqlite3_finalize(st);
    return rc;
}

int pd_cryptvfs_prepare(sqlite3 *db)
{
    if (!db)
        return SQLITE_MISUSE;
    sqlite3_vfs *vfs = NULL;
    int rc = sqlite3_file_control(db, "main", SQLITE_FCNTL_VFS_POINTER, &vfs);
    if (rc != SQLITE_OK || vfs != &cv_vfs) {
        sqlite3_log(SQLITE_MISUSE, "pdcrypt: pd_cryptvfs_prepare on a connection whose main "
                                   "database is not opened through " PD_CRYPTVFS_NAME);
        return SQLITE_MISUSE;
    }
    int pages = -1;
    rc = query_int(db, "PRAGMA main.page_count", &pages);
    if (rc != SQLITE_OK)
        return rc;
    if (pages == 0) {
        rc = sqlite3_exec(db, "PRAGMA main.page_size=4096", NULL, NULL, NULL);
        if (rc != SQLITE_OK)
            return rc;
        int reserve = CV_RESERVE;
        rc = sqlite3_file_control(db, "main", SQLITE_FCNTL_RESERVE_BYTES, &reserve);
        if (rc != SQLITE_OK)
            return rc;
    }
    int page_size = 0, reserve = -1; /* -1: only ask */
    rc = query_int(db, "PRAGMA main.page_size", &page_size);
    if (rc != SQLITE_OK)
        return rc;
    rc = sqlite3_file_control(db, "main", SQLITE_FCNTL_RESERVE_BYTES, &reserve);
    if (rc != SQLITE_OK)
        return rc;
    if (page_size != CV_PAGE || reserve != CV_RESERVE) {
        sqlite3_log(SQLITE_CORRUPT,
                    "pdcrypt: %s: page size %d with %d reserved bytes (must be %d and %d)",
                    sqlite3_db_filename(db, "main"), page_size, reserve, CV_PAGE, CV_RESERVE);
        return SQLITE_CORRUPT;
    }
    return SQLITE_OK;
}

/*
 * store.c — the encrypted device store: creating and opening a device's home directory, its
 * connection through the encrypting VFS, schema migrations, PIN change and recovery, the device
 * identity, and the helpers the rest of the core builds on (store_internal.h).
 *
 * A home directory (created 0700) holds
 *   store.db    SQLite through the "pdcrypt" VFS (core/cryptvfs.c): every page of the file, its
 *               WAL and its rollback journal is encrypted with the data key; 0600
 *   store.key   the sidecar (core/keyfile.c): the data key wrapped by the PIN (Argon2id) and
 *               optionally sealed to the server's recovery key, the database id, the failed-PIN
 *               counter; 0600
 * The data key and database id are random, made once by pd_store_create. A PIN change or a
 * recovery rewrites store.key only; store.db is never re-encrypted.
 *
 * Opening: the sidecar is read under an flock of the home directory (so two processes never lose
 * each other's counter update), the PIN tried under the policy of keyfile.c, the key registered
 * with the VFS in a slot and named in the URI (`file:<abs>/store.db?pdslot=N`), then the pragmas
 * every store runs with:
 *   temp_store=MEMORY    the VFS refuses temp files on disk: none may hold plaintext
 *   secure_delete=ON     freed pages are zeroed (inside the encryption: cheap defence in depth)
 *   mmap_size=0          no mapping of ciphertext (the VFS returns none anyway)
 *   foreign_keys=ON, busy_timeout 5 s
 *   cache_size           PD_STORE_CACHE_KIB (12 MiB; SQLite's default is 2 MB). Every page the
 *                        cache misses is read and decrypted again (4.3 us a page here), where plain
 *                        SQLite only copies it from the OS cache: with 2 MB, 10,000 NIK lookups in
 *                        a 10,000-household store (14.8 MB) cost 1.5-1.7x plain; 8 MiB 1.07x,
 *                        12 MiB 1.00-1.05x (bench_store, CPU time). The cache grows only as pages
 *                        are read, so a store of one enumerator area (a few hundred households,
 *                        under 1 MB) costs what it holds, and the ceiling is modest on a phone
 *                        with 1-2 GB; a prelist import raises its own cache (prelist/import.c)
 *                        only when it is below 10 MiB.
 *   journal_mode=WAL, synchronous=FULL: a visit acknowledged to the enumerator survives a power
 *                        cut (NORMAL in WAL mode may lose the last commits)
 * and pending migrations (core/migrate.c) in one transaction. A store whose schema is newer than
 * this build is refused without being changed (PD_ERR_VERSION).
 *
 * On create the store gets its device identity: an Ed25519 key pair (identity row, role
 * 'device') and a device id of 16 lowercase hex characters (64 random bits: among 10^5 devices
 * the chance of any collision is ~3e-10) in settings('device_id').
 *
 * Key material lives in sodium_malloc'd memory (guarded pages, mlock'd where the system allows),
 * kept PROT_NONE while not in use and wiped on every path. A store handle is used by one thread
 * at a time (SQLITE_OPEN_NOMUTEX).
 */
#include "cryptvfs.h"
#include "keyfile.h"
#include "schema.h"
#include "store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STORE_DB "store.db"
#define STORE_KEY "store.key"
#define BUSY_TIMEOUT_MS 5000
#define DEVICE_ID_BYTES 8
#define STR_(x) #x
#define STR(x) STR_(x) /* a numeric macro as an SQL literal */

struct pd_store {
    sqlite3 *db;
    char *home;   /* absolute */
    uint8_t *key; /* sodium_malloc'd, PROT_NONE while idle */
    uint8_t dbid[PD_DBID_BYTES];
    unsigned slot;
    int have_slot;
    int depth; /* transaction nesting */
    char device_id[2 * DEVICE_ID_BYTES + 1];
    int errcode;
    char errmsg[PD_ERRMSG_MAX];
};

int pd_schema_device_latest(void)
{
    return pd_schema_latest(pd_schema_device, pd_schema_device_count);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the handle's error and transactions (store_internal.h) ----------------------------- */

int pd_store_fail(pd_store *store, int code, const char *fmt, ...)
{
    if (!store)
        return code;
    store->errcode = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(store->errmsg, sizeof store->errmsg, fmt, ap);
    va_end(ap);
    return code;
}

int pd_store_fail_sqlite(pd_store *store, int rc, const char *ctx)
{
    pd_error e;
    int code = pd_error_sqlite(&e, store ? store->db : NULL, rc, ctx);
    return pd_store_fail(store, code, "%s", e.msg);
}

const char *pd_store_errmsg(const pd_store *store)
{
    if (!store)
        return "no store";
    return store->errmsg[0] ? store->errmsg : pd_strerror(store->errcode);
}

int pd_store_errcode(const pd_store *store)
{
    return store ? store->errcode : PD_ERR_INVALID;
}

sqlite3 *pd_store_sqlite(pd_store *store)
{
    return store ? store->db : NULL;
}

const char *pd_store_home(pd_store *store)
{
    return store ? store->home : NULL;
}

const char *pd_store_device_id(pd_store *store)
{
    return store ? store->device_id : NULL;
}

int pd_store_begin(pd_store *store)
{
    const char *sql = store->depth == 0 ? "BEGIN IMMEDIATE" : "SAVEPOINT pd_nested";
    int rc = sqlite3_exec(store->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "beginning a transaction");
    store->depth++;
    return PD_OK;
}

int pd_store_commit(pd_store *store)
{
    if (store->depth <= 0)
        return pd_store_fail(store, PD_ERR_INTERNAL, "commit without a transaction");
    const char *sql = store->depth == 1 ? "COMMIT" : "RELEASE pd_nested";
    int rc = sqlite3_exec(store->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        int code = pd_store_fail_sqlite(store, rc, "committing a transaction");
        pd_store_rollback(store);
        return code;
    }
    store->depth--;
    return PD_OK;
}

void pd_store_rollback(pd_store *store)
{
    if (!store || store->depth <= 0)
        return;
    if (store->depth == 1) {
        if (!sqlite3_get_autocommit(store->db))
            sqlite3_exec(store->db, "ROLLBACK", NULL, NULL, NULL);
    } else if (!sqlite3_get_autocommit(store->db)) {
        sqlite3_exec(store->db, "ROLLBACK TO pd_nested; RELEASE pd_nested", NULL, NULL, NULL);
    }
    store->depth--;
}

/* ---- paths ------------------------------------------------------------------------------ */

static char *join(const char *dir, const char *name)
{
    if (!dir)
        return NULL;
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    p[a] = '/';
    memcpy(p + a + 1, name, b + 1);
    return p;
}

static int check_home_arg(const char *home, pd_error *err)
{
    if (!home || !*home)
        return pd_error_set(err, PD_ERR_INVALID, "no home directory given");
    if (strnlen(home, PATH_MAX) >= PATH_MAX - 32)
        return pd_error_set(err, PD_ERR_INVALID, "home directory path is too long");
    return PD_OK;
}

/* mkdir -p with mode 0700 for what it creates. */
static int make_dirs(const char *home, pd_error *err)
{
    char *p = strdup(home);
    if (!p)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory");
    int rc = PD_OK;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char c = *s;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            rc = pd_error_set(err, PD_ERR_IO, "%s: cannot create the directory: %s", p,
                              strerror(errno));
            break;
        }
        *s = c;
        if (c == '\0')
            break;
    }
    free(p);
    if (rc != PD_OK)
        return rc;
    struct stat st;
    if (stat(home, &st) != 0 || !S_ISDIR(st.st_mode))
        return pd_error_set(err, PD_ERR_IO, "%s: not a directory", home);
    return PD_OK;
}

static int absolute_home(const char *home, char **out, pd_error *err)
{
    char *abs = realpath(home, NULL);
    if (!abs) {
        if (errno == ENOENT || errno == ENOTDIR)
            return pd_error_set(err, PD_ERR_NOTFOUND, "%s: no such directory (no store here)",
                                home);
        return pd_error_set(err, PD_ERR_IO, "%s: %s", home, strerror(errno));
    }
    *out = abs;
    return PD_OK;
}

/* "file:<path, percent-encoded>?pdslot=N" */
static char *make_uri(const char *path, unsigned slot)
{
    size_t n = strlen(path);
    char *uri = malloc(5 + 3 * n + 32);
    if (!uri)
        return NULL;
    char *o = uri;
    memcpy(o, "file:", 5);
    o += 5;
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
        if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
            strchr("/._-~", *c)) {
            *o++ = (char)*c;
        } else {
            *o++ = '%';
            *o++ = hex[*c >> 4];
            *o++ = hex[*c & 15];
        }
    }
    snprintf(o, 32, "?%s=%u", PD_CRYPTVFS_SLOT_PARAM, slot);
    return uri;
}

static void remove_store_files(const char *home)
{
    static const char *const names[] = {STORE_DB,        STORE_DB "-wal",
                                        STORE_DB "-shm", STORE_DB "-journal",
                                        STORE_KEY,       STORE_KEY ".tmp"};
    for (size_t i = 0; i < PD_ARRAY_LEN(names); i++) {
        char *p = join(home, names[i]);
        if (p)
            unlink(p);
        free(p);
    }
}

/* ---- the connection --------------------------------------------------------------------- */

static int exec(pd_store *s, const char *sql, pd_error *err)
{
    int rc = sqlite3_exec(s->db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) {
        char ctx[96];
        snprintf(ctx, sizeof ctx, "%s: %s", STORE_DB, sql);
        return pd_error_sqlite(err, s->db, rc, ctx);
    }
    return PD_OK;
}

/* The first reads of store.db: a page that fails authentication there means the key in
 * store.key is not this database's (or page 1 is damaged). */
static int key_mismatch_or(pd_store *s, int rc, const char *ctx, pd_error *err)
{
    if (pd_status_from_sqlite(rc) == PD_ERR_CORRUPT)
        return pd_error_set(err, PD_ERR_CORRUPT,
                            "%s: does not decrypt with the key in %s (a damaged file, or another "
                            "store's database): %s",
                            STORE_DB, STORE_KEY,
                            s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    return pd_error_sqlite(err, s->db, rc, ctx);
}

/* Register s->key with the VFS and open store.db through it, with the store's pragmas. */
static int open_connection(pd_store *s, int create, pd_error *err)
{
    int rc = pd_cryptvfs_register();
    if (rc != SQLITE_OK)
        return pd_error_set(err, PD_ERR_INTERNAL, "cannot register the pdcrypt VFS: %s",
                            sqlite3_errstr(rc));
    sodium_mprotect_readonly(s->key);
    rc = pd_cryptvfs_key_add(s->key, s->dbid, &s->slot);
    sodium_mprotect_noaccess(s->key);
    if (rc != PD_OK)
        return pd_error_set(err, rc, "cannot register the data key with the VFS");
    s->have_slot = 1;

    char *path = join(s->home, STORE_DB);
    char *uri = path ? make_uri(path, s->slot) : NULL;
    free(path);
    if (!uri)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory");
    int flags =
        SQLITE_OPEN_URI | SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE;
    if (create)
        flags |= SQLITE_OPEN_CREATE;
    rc = sqlite3_open_v2(uri, &s->db, flags, PD_CRYPTVFS_NAME);
    free(uri);
    if (rc != SQLITE_OK)
        return key_mismatch_or(s, rc, "opening " STORE_DB, err);
    sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS);

    int prc;
    if ((prc = exec(s, "PRAGMA temp_store = MEMORY", err)) != PD_OK ||
        (prc = exec(s, "PRAGMA secure_delete = ON", err)) != PD_OK ||
        (prc = exec(s, "PRAGMA mmap_size = 0", err)) != PD_OK ||
        (prc = exec(s, "PRAGMA foreign_keys = ON", err)) != PD_OK ||
        (prc = exec(s, "PRAGMA cache_size = -" STR(PD_STORE_CACHE_KIB), err)) != PD_OK)
        return prc;
    if (create) {
        rc = pd_cryptvfs_prepare(s->db);
        if (rc != SQLITE_OK)
            return pd_error_sqlite(err, s->db, rc, "preparing the encrypted " STORE_DB);
    }
    /* The first read of the file: a key that does not match fails here. */
    rc = sqlite3_exec(s->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(s->db, "SELECT count(*) FROM sqlite_schema", NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return key_mismatch_or(s, rc, "reading " STORE_DB, err);
    return exec(s, "PRAGMA synchronous = FULL", err);
}

static int read_user_version(pd_store *s, int *version, pd_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        *version = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_OK)
        return pd_error_sqlite(err, s->db, rc, "reading the schema version of " STORE_DB);
    return PD_OK;
}

static int migrate(pd_store *s, pd_error *err)
{
    int version = 0, latest = pd_schema_device_latest();
    int rc = read_user_version(s, &version, err);
    if (rc != PD_OK)
        return rc;
    if (version > latest)
        return pd_error_set(err, PD_ERR_VERSION,
                            "%s is schema version %d; this pendata knows up to %d: update pendata",
                            STORE_DB, version, latest);
    pd_error merr = {0};
    rc = pd_schema_apply(s->db, pd_schema_device, pd_schema_device_count, &merr);
    if (rc != PD_OK)
        return pd_error_set(err, rc, "%s: %s", STORE_DB, merr.msg);
    return PD_OK;
}

static int load_device_id(pd_store *s, pd_error *err)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT value FROM settings WHERE key = 'device_id'", -1,
                                &st, NULL);
    int code = PD_OK;
    if (rc != SQLITE_OK) {
        code = pd_error_sqlite(err, s->db, rc, "reading the device id");
        goto out;
    }
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        code = rc == SQLITE_DONE
                   ? pd_error_set(err, PD_ERR_CORRUPT, "%s: has no device id", STORE_DB)
                   : pd_error_sqlite(err, s->db, rc, "reading the device id");
        goto out;
    }
    const unsigned char *v = sqlite3_column_text(st, 0);
    if (!v || strlen((const char *)v) != 2 * DEVICE_ID_BYTES ||
        strspn((const char *)v, "0123456789abcdef") != 2 * DEVICE_ID_BYTES) {
        code = pd_error_set(err, PD_ERR_CORRUPT, "%s: the device id is malformed", STORE_DB);
        goto out;
    }
    memcpy(s->device_id, v, sizeof s->device_id);
out:
    sqlite3_finalize(st);
    return code;
}

static int insert_identity(pd_store *s, const char *role, uint8_t pk_out[PD_PUBKEY_BYTES],
                           pd_error *err)
{
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t *sk = sodium_malloc(crypto_sign_SECRETKEYBYTES);
    if (!sk)
        return pd_error_set(err, PD_ERR_NOMEM, "no secure memory for a signing key");
    crypto_sign_keypair(pk, sk);
    sqlite3_stmt *st = NULL;
    int code = PD_OK;
    int rc = sqlite3_prepare_v2(s->db,
                                "INSERT INTO identity (role, sign_pk, sign_sk, created_at) "
                                "VALUES (?1, ?2, ?3, ?4)",
                                -1, &st, NULL);
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(st, 1, role, -1, SQLITE_STATIC);
        sqlite3_bind_blob(st, 2, pk, sizeof pk, SQLITE_STATIC);
        sqlite3_bind_blob(st, 3, sk, crypto_sign_SECRETKEYBYTES, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, now_ms());
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_DONE) {
        if ((rc & 0xff) == SQLITE_CONSTRAINT)
            code = pd_error_set(err, PD_ERR_EXISTS, "this device already has a %s identity", role);
        else
            code = pd_error_sqlite(err, s->db, rc, "storing the identity key pair");
    } else if (pk_out) {
        memcpy(pk_out, pk, sizeof pk);
    }
    sqlite3_finalize(st); /* the statement held the secret key bound: finalize, then wipe */
    sodium_free(sk);
    return code;
}

static int create_identity(pd_store *s, pd_error *err)
{
    uint8_t raw[DEVICE_ID_BYTES];
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(s->device_id, sizeof s->device_id, raw, sizeof raw);
    int rc = exec(s, "BEGIN IMMEDIATE", err);
    if (rc != PD_OK)
        return rc;
    rc = insert_identity(s, "device", NULL, err);
    if (rc != PD_OK)
        goto fail;
    sqlite3_stmt *st = NULL;
    int src = sqlite3_prepare_v2(s->db,
                                 "INSERT INTO settings (key, value) VALUES ('device_id', ?1), "
                                 "('created_at', ?2)",
                                 -1, &st, NULL);
    if (src == SQLITE_OK) {
        sqlite3_bind_text(st, 1, s->device_id, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 2, now_ms());
        src = sqlite3_step(st);
    }
    sqlite3_finalize(st);
    if (src != SQLITE_DONE) {
        rc = pd_error_sqlite(err, s->db, src, "storing the device id");
        goto fail;
    }
    rc = exec(s, "COMMIT", err);
    if (rc == PD_OK)
        return PD_OK;
fail:
    sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

static pd_store *store_new(pd_error *err)
{
    pd_store *s = calloc(1, sizeof *s);
    if (!s) {
        pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        return NULL;
    }
    s->key = sodium_malloc(PD_KEY_BYTES);
    if (!s->key) {
        free(s);
        pd_error_set(err, PD_ERR_NOMEM, "no secure memory for the data key");
        return NULL;
    }
    return s;
}

void pd_store_close(pd_store *store)
{
    if (!store)
        return;
    if (store->db)
        sqlite3_close_v2(store->db); /* v2: statements a caller leaked do not keep it open */
    if (store->have_slot)
        pd_cryptvfs_key_remove(store->slot);
    sodium_free(store->key); /* wipes */
    free(store->home);
    sodium_memzero(store, sizeof *store);
    free(store);
}

static int check_pin(const char *pin, const char *what, pd_error *err)
{
    if (!pin)
        return pd_error_set(err, PD_ERR_INVALID, "no %s given", what);
    size_t n = strnlen(pin, PD_PIN_MAX + 1);
    if (n < PD_PIN_MIN || n > PD_PIN_MAX)
        return pd_error_set(err, PD_ERR_INVALID, "the %s must have %d to %d characters", what,
                            PD_PIN_MIN, PD_PIN_MAX);
    return PD_OK;
}

/* ---- create / open ---------------------------------------------------------------------- */

int pd_store_create(pd_store **out, const char *home, const char *pin, const pd_kdf_params *kdf,
                    pd_error *err)
{
    pd_error_clear(err);
    if (!out)
        return pd_error_set(err, PD_ERR_INVALID, "pd_store_create: no output handle");
    *out = NULL;
    if (!kdf)
        kdf = &PD_KDF_DEFAULT;
    int rc;
    if ((rc = check_home_arg(home, err)) != PD_OK || (rc = check_pin(pin, "PIN", err)) != PD_OK ||
        (rc = pd_kdf_check(kdf, err)) != PD_OK)
        return rc;
    if ((rc = make_dirs(home, err)) != PD_OK)
        return rc;
    pd_store *s = store_new(err);
    if (!s)
        return PD_ERR_NOMEM;
    int lock = -1, made_files = 0;
    char *db_path = NULL, *key_path = NULL;
    if ((rc = absolute_home(home, &s->home, err)) != PD_OK ||
        (rc = pd_keyfile_lock(s->home, &lock, err)) != PD_OK)
        goto fail;
    db_path = join(s->home, STORE_DB);
    key_path = join(s->home, STORE_KEY);
    if (!db_path || !key_path) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (access(key_path, F_OK) == 0) {
        rc = pd_error_set(err, PD_ERR_EXISTS, "%s: already holds a store (%s exists)", s->home,
                          STORE_KEY);
        goto fail;
    }
    /* Made here, empty, 0600 and exclusively, so that SQLite's -wal and -shm inherit 0600. */
    int fd = open(db_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = errno == EEXIST
                 ? pd_error_set(err, PD_ERR_EXISTS,
                                "%s: %s exists without %s (an interrupted create, or a store "
                                "whose key file is lost): move it away first",
                                s->home, STORE_DB, STORE_KEY)
                 : pd_error_set(err, PD_ERR_IO, "%s: cannot create: %s", db_path, strerror(errno));
        goto fail;
    }
    close(fd);
    made_files = 1;

    randombytes_buf(s->dbid, sizeof s->dbid);
    randombytes_buf(s->key, PD_KEY_BYTES);
    sodium_mprotect_noaccess(s->key);
    if ((rc = open_connection(s, 1, err)) != PD_OK || (rc = migrate(s, err)) != PD_OK ||
        (rc = create_identity(s, err)) != PD_OK)
        goto fail;

    pd_keyfile kf;
    memset(&kf, 0, sizeof kf);
    memcpy(kf.dbid, s->dbid, sizeof kf.dbid);
    sodium_mprotect_readonly(s->key);
    rc = pd_keyfile_wrap_pin(&kf, s->key, pin, kdf, err);
    sodium_mprotect_noaccess(s->key);
    if (rc != PD_OK || (rc = pd_keyfile_write(&kf, key_path, err)) != PD_OK)
        goto fail;
    pd_keyfile_unlock(lock);
    free(db_path);
    free(key_path);
    *out = s;
    return PD_OK;

fail:
    if (s->db) {
        sqlite3_close_v2(s->db);
        s->db = NULL;
    }
    if (made_files)
        remove_store_files(s->home);
    pd_keyfile_unlock(lock);
    free(db_path);
    free(key_path);
    pd_store_close(s);
    return rc;
}

int pd_store_open(pd_store **out, const char *home, const char *pin, pd_error *err)
{
    pd_error_clear(err);
    if (!out)
        return pd_error_set(err, PD_ERR_INVALID, "pd_store_open: no output handle");
    *out = NULL;
    int rc = check_home_arg(home, err);
    if (rc != PD_OK)
        return rc;
    if (!pin)
        return pd_error_set(err, PD_ERR_INVALID, "no PIN given");
    pd_store *s = store_new(err);
    if (!s)
        return PD_ERR_NOMEM;
    int lock = -1;
    char *key_path = NULL, *db_path = NULL;
    pd_keyfile kf;
    if ((rc = absolute_home(home, &s->home, err)) != PD_OK)
        goto fail;
    key_path = join(s->home, STORE_KEY);
    db_path = join(s->home, STORE_DB);
    if (!key_path || !db_path) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        goto fail;
    }
    if (access(db_path, F_OK) != 0) {
        rc = pd_error_set(err, PD_ERR_NOTFOUND, "%s: no store here (%s is missing)", s->home,
                          STORE_DB);
        goto fail;
    }
    if ((rc = pd_keyfile_lock(s->home, &lock, err)) != PD_OK)
        goto fail;
    sodium_mprotect_readwrite(s->key);
    rc = pd_keyfile_try_pin(key_path, pin, s->key, &kf, err);
    sodium_mprotect_noaccess(s->key);
    pd_keyfile_unlock(lock);
    if (rc != PD_OK)
        goto fail;
    memcpy(s->dbid, kf.dbid, sizeof s->dbid);
    if ((rc = open_connection(s, 0, err)) != PD_OK || (rc = migrate(s, err)) != PD_OK ||
        (rc = load_device_id(s, err)) != PD_OK)
        goto fail;
    free(key_path);
    free(db_path);
    *out = s;
    return PD_OK;

fail:
    free(key_path);
    free(db_path);
    pd_store_close(s);
    return rc;
}

int pd_store_schema_version(pd_store *store)
{
    if (!store || !store->db)
        return -1;
    pd_error e;
    int v = 0;
    if (read_user_version(store, &v, &e) != PD_OK) {
        pd_store_fail(store, e.code, "%s", e.msg);
        return -1;
    }
    return v;
}

int pd_store_add_role(pd_store *store, const char *role, uint8_t pk_out[PD_PUBKEY_BYTES])
{
    static const char *const roles[] = {"enumerator", "supervisor", "korcam", "admin"};
    if (!store)
        return PD_ERR_INVALID;
    int known = 0;
    for (size_t i = 0; role && i < PD_ARRAY_LEN(roles); i++)
        known |= strcmp(role, roles[i]) == 0;
    if (!known)
        return pd_store_fail(store, PD_ERR_INVALID,
                             "role '%s' is not one of enumerator, supervisor, korcam, admin",
                             role ? role : "(none)");
    int rc = pd_store_begin(store);
    if (rc != PD_OK)
        return rc;
    pd_error e = {0};
    rc = insert_identity(store, role, pk_out, &e);
    if (rc != PD_OK) {
        pd_store_rollback(store);
        return pd_store_fail(store, rc, "%s", e.msg);
    }
    return pd_store_commit(store);
}

/* ---- PIN change, recovery --------------------------------------------------------------- */

int pd_store_set_recovery(pd_store *store, const uint8_t recovery_pk[PD_PUBKEY_BYTES])
{
    if (!store || !recovery_pk)
        return pd_store_fail(store, PD_ERR_INVALID, "no recovery public key given");
    pd_error e = {0};
    char *key_path = join(store->home, STORE_KEY);
    if (!key_path)
        return pd_store_fail(store, PD_ERR_NOMEM, "out of memory");
    int lock = -1;
    pd_keyfile kf;
    int rc = pd_keyfile_lock(store->home, &lock, &e);
    if (rc == PD_OK)
        rc = pd_keyfile_read(&kf, key_path, &e);
    if (rc == PD_OK && sodium_memcmp(kf.dbid, store->dbid, PD_DBID_BYTES) != 0)
        rc = pd_error_set(&e, PD_ERR_CORRUPT, "%s: belongs to another database than the open %s",
                          STORE_KEY, STORE_DB);
    if (rc == PD_OK) {
        sodium_mprotect_readonly(store->key);
        rc = pd_keyfile_seal_recovery(&kf, store->key, recovery_pk, &e);
        sodium_mprotect_noaccess(store->key);
    }
    if (rc == PD_OK)
        rc = pd_keyfile_write(&kf, key_path, &e);
    pd_keyfile_unlock(lock);
    free(key_path);
    if (rc != PD_OK)
        return pd_store_fail(store, rc, "%s", e.msg);
    return PD_OK;
}

/* Does key open store.db? (A recovered key is checked before a PIN is put on it.) */
static int verify_key(const char *abs_home, const uint8_t *key, const uint8_t dbid[PD_DBID_BYTES],
                      pd_error *err)
{
    pd_store *s = store_new(err);
    if (!s)
        return PD_ERR_NOMEM;
    int rc = PD_OK;
    if (!(s->home = strdup(abs_home))) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        goto out;
    }
    memcpy(s->key, key, PD_KEY_BYTES);
    sodium_mprotect_noaccess(s->key);
    memcpy(s->dbid, dbid, PD_DBID_BYTES);
    rc = open_connection(s, 0, err);
out:
    pd_store_close(s);
    return rc;
}

/* How a new PIN gets the data key, under the sidecar's lock: key_path is store.key in abs_home;
 * fills key and kf (the sidecar as read) or sets err. */
typedef int (*key_source)(const char *abs_home, const char *key_path, const void *arg, uint8_t *key,
                          pd_keyfile *kf, pd_error *err);

static int key_from_pin(const char *abs_home, const char *key_path, const void *old_pin,
                        uint8_t *key, pd_keyfile *kf, pd_error *err)
{
    (void)abs_home;
    return pd_keyfile_try_pin(key_path, old_pin, key, kf, err);
}

typedef struct recovery_pair {
    const uint8_t *pk, *sk;
} recovery_pair;

static int key_from_recovery(const char *abs_home, const char *key_path, const void *pair,
                             uint8_t *key, pd_keyfile *kf, pd_error *err)
{
    const recovery_pair *r = pair;
    int rc;
    if ((rc = pd_keyfile_read(kf, key_path, err)) != PD_OK ||
        (rc = pd_keyfile_open_recovery(kf, r->pk, r->sk, key, err)) != PD_OK)
        return rc;
    return verify_key(abs_home, key, kf->dbid, err);
}

/* What a PIN change and a recovery share: get the data key from `get` (under the lock), wrap it
 * with new_pin (with kdf, or the sidecar's parameters), reset the counter, replace store.key. */
static int put_new_pin(const char *home, const char *new_pin, const pd_kdf_params *kdf,
                       key_source get, const void *arg, pd_error *err)
{
    int rc;
    if ((rc = check_home_arg(home, err)) != PD_OK ||
        (rc = check_pin(new_pin, "new PIN", err)) != PD_OK)
        return rc;
    if (kdf && (rc = pd_kdf_check(kdf, err)) != PD_OK)
        return rc;
    char *abs = NULL, *key_path = NULL;
    int lock = -1;
    uint8_t *key = sodium_malloc(PD_KEY_BYTES);
    if (!key)
        return pd_error_set(err, PD_ERR_NOMEM, "no secure memory for the data key");
    pd_keyfile kf;
    if ((rc = absolute_home(home, &abs, err)) != PD_OK)
        goto out;
    if (!(key_path = join(abs, STORE_KEY))) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        goto out;
    }
    if ((rc = pd_keyfile_lock(abs, &lock, err)) != PD_OK ||
        (rc = get(abs, key_path, arg, key, &kf, err)) != PD_OK)
        goto out;
    pd_kdf_params params = kdf ? *kdf : kf.kdf;
    if ((rc = pd_keyfile_wrap_pin(&kf, key, new_pin, &params, err)) != PD_OK)
        goto out;
    kf.failures = 0;
    rc = pd_keyfile_write(&kf, key_path, err);
out:
    pd_keyfile_unlock(lock);
    sodium_free(key);
    free(key_path);
    free(abs);
    return rc;
}

int pd_store_change_pin(const char *home, const char *old_pin, const char *new_pin,
                        const pd_kdf_params *kdf, pd_error *err)
{
    pd_error_clear(err);
    if (!old_pin)
        return pd_error_set(err, PD_ERR_INVALID, "no old PIN given");
    return put_new_pin(home, new_pin, kdf, key_from_pin, old_pin, err);
}

int pd_store_recover(const char *home, const uint8_t recovery_pk[PD_PUBKEY_BYTES],
                     const uint8_t recovery_sk[PD_KEY_BYTES], const char *new_pin,
                     const pd_kdf_params *kdf, pd_error *err)
{
    pd_error_clear(err);
    if (!recovery_pk || !recovery_sk)
        return pd_error_set(err, PD_ERR_INVALID, "no recovery key pair given");
    const recovery_pair pair = {recovery_pk, recovery_sk};
    return put_new_pin(home, new_pin, kdf, key_from_recovery, &pair, err);
}

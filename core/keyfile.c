/*
 * keyfile.c — the store's sidecar, `<home>/store.key`, and the PIN policy.
 *
 * Why a sidecar: store.db is encrypted (core/cryptvfs.c) with a random 32-byte data key that never
 * changes. The key is kept here wrapped by a key derived from the PIN, so a PIN change or a
 * recovery rewrites these 272 bytes and never re-encrypts the database (rekeying a WAL database
 * is where peers break).
 *
 * Format, version 1 (all integers little-endian, PD_KEYFILE_BYTES = 272 bytes, fixed):
 *
 *   off  size  field
 *     0     5  magic "PDKEY"
 *     5     1  format version (1)
 *     6     1  flags: 0x01 PIN copy present, 0x02 recovery copy present; other bits zero
 *     7     1  reserved, zero
 *     8    16  database id (also bound into every page of store.db)
 *    24     4  Argon2id opslimit (passes)
 *    28     8  Argon2id memlimit (bytes)
 *    36    16  Argon2id salt
 *    52    24  XChaCha20-Poly1305 nonce of the PIN copy
 *    76    48  PIN copy: data key (32) + tag (16), key = Argon2id(PIN, salt, opslimit, memlimit),
 *              associated data = magic||version||dbid||opslimit||memlimit||salt (50 bytes),
 *              so neither the parameters nor the database id can be swapped under the copy
 *    124   32  recovery X25519 public key
 *    156   96  recovery copy: crypto_box_seal(dbid || data key) to that public key (48 + 48)
 *    252    4  consecutive failed PIN attempts
 *    256   16  checksum: BLAKE2b-128 of bytes 0..255 (catches damage in fields no key covers:
 *              the counter, flags, the public key; it is not a defence against a forger)
 *
 * An absent copy (flag clear) is all zero bytes; the parser rejects anything else. Parsing is
 * bounded (the file is read up to 273 bytes), strict and names what is wrong.
 *
 * Writes are atomic: `store.key.tmp` (0600) is written and fsync'd, renamed over store.key, and
 * the directory is fsync'd; a crash leaves the old file or the new one, never a mix.
 *
 * The PIN policy (pd_keyfile_try_pin). A 6-digit PIN is only 10^6 guesses, so:
 *   - every attempt costs one Argon2id derivation (PD_KDF_DEFAULT, see kdf below) — no sleeps,
 *     the cost is the work itself;
 *   - the counter is raised and written to disk BEFORE the derivation, so pulling the battery
 *     after seeing a slow failure does not save the count; a correct PIN resets it;
 *   - after PD_KEYFILE_SLOW_AFTER (5) consecutive failures each attempt does k extra derivations,
 *     k = failures - 4, capped at PD_KEYFILE_EXTRA_MAX (8): attempt 13 and later cost 9x;
 *   - the attempt that reaches PD_KEYFILE_ERASE_AFTER (10) consecutive failures erases the PIN
 *     copy if a recovery copy exists (PD_ERR_LOCKED: only recovery with the server's key opens the
 *     store now). Without a recovery copy nothing is ever erased — nothing could bring the data
 *     back — and attempts just stay slow.
 * What this does and does not defend: the counter lives in a file, so an attacker who copies
 * store.key and store.db off the phone bypasses it and pays only Argon2id per guess: all 10^6
 * six-digit PINs at 44 ms (PD_KDF_DEFAULT on one desktop core) is about 12 core-hours, so a short
 * PIN does not resist that attacker; a long passphrase does. The counter
 * defends the handset in hand: a stolen phone running pendata. The next layer is a hardware
 * keystore (Android Keystore / StrongBox, iOS Secure Enclave) holding a second wrapping key that
 * enforces its own attempt limit; the format has a version byte for that.
 */
#include "keyfile.h"

#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/*
 * Argon2id cost. PD_KDF_DEFAULT: 3 passes over 32 MiB. Measured 44 ms on this build machine (AMD
 * EPYC, one core); 3 / 19 MiB took 21 ms and 2 / 64 MiB (libsodium's INTERACTIVE) 82 ms. Argon2 is
 * bound by memory bandwidth, which on a low-end Android phone (Cortex-A53, LPDDR3) is 10-15x lower,
 * so about 0.45-0.65 s there: inside the 0.5-1 s an unlock may take, above the 19 MiB floor, and
 * small enough not to be killed on a 1 GiB phone. PD_KDF_TEST is libsodium's minimum, for tests.
 */
const pd_kdf_params PD_KDF_DEFAULT = {3, 32u * 1024 * 1024};
const pd_kdf_params PD_KDF_TEST = {1, 8192};

#define KDF_OPS_MAX 64u
#define KDF_MEM_MAX (1024ull * 1024 * 1024)

/* offsets of the format above */
enum {
    OFF_MAGIC = 0,
    OFF_VERSION = 5,
    OFF_FLAGS = 6,
    OFF_RESERVED = 7,
    OFF_DBID = 8,
    OFF_OPS = 24,
    OFF_MEM = 28,
    OFF_SALT = 36,
    OFF_NONCE = 52,
    OFF_WRAPPED = 76,
    OFF_RPK = 124,
    OFF_SEALED = 156,
    OFF_FAILURES = 252,
    OFF_CHECKSUM = 256,
    CHECKSUM_BYTES = 16,
    AD_BYTES = 5 + 1 + PD_DBID_BYTES + 4 + 8 + PD_KEYFILE_SALT_BYTES,
};

_Static_assert(OFF_NONCE == OFF_SALT + PD_KEYFILE_SALT_BYTES, "layout");
_Static_assert(OFF_WRAPPED == OFF_NONCE + PD_KEYFILE_NONCE_BYTES, "layout");
_Static_assert(OFF_RPK == OFF_WRAPPED + PD_KEYFILE_WRAPPED_BYTES, "layout");
_Static_assert(OFF_SEALED == OFF_RPK + PD_PUBKEY_BYTES, "layout");
_Static_assert(OFF_FAILURES == OFF_SEALED + PD_KEYFILE_SEALED_BYTES, "layout");
_Static_assert(OFF_CHECKSUM + CHECKSUM_BYTES == PD_KEYFILE_BYTES, "layout");

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    return sodium_is_zero(p, n) == 1;
}

/* ---- KDF -------------------------------------------------------------------------------- */

int pd_kdf_check(const pd_kdf_params *kdf, pd_error *err)
{
    if (!kdf)
        return pd_error_set(err, PD_ERR_INVALID, "Argon2id parameters missing");
    if (kdf->opslimit < crypto_pwhash_argon2id_OPSLIMIT_MIN || kdf->opslimit > KDF_OPS_MAX)
        return pd_error_set(err, PD_ERR_INVALID, "Argon2id opslimit %u is outside %u..%u",
                            (unsigned)kdf->opslimit, (unsigned)crypto_pwhash_argon2id_OPSLIMIT_MIN,
                            KDF_OPS_MAX);
    if (kdf->memlimit < crypto_pwhash_argon2id_MEMLIMIT_MIN || kdf->memlimit > KDF_MEM_MAX)
        return pd_error_set(err, PD_ERR_INVALID,
                            "Argon2id memlimit %llu bytes is outside %llu..%llu",
                            (unsigned long long)kdf->memlimit,
                            (unsigned long long)crypto_pwhash_argon2id_MEMLIMIT_MIN, KDF_MEM_MAX);
    return PD_OK;
}

static _Atomic unsigned long kdf_runs;

unsigned long pd_kdf_derivations(void)
{
    return kdf_runs;
}

int pd_kdf_derive(uint8_t out[PD_KEY_BYTES], const char *pin,
                  const uint8_t salt[PD_KEYFILE_SALT_BYTES], const pd_kdf_params *kdf,
                  pd_error *err)
{
    if (!pin)
        return pd_error_set(err, PD_ERR_INVALID, "no PIN given");
    size_t n = strnlen(pin, PD_PIN_MAX + 1);
    if (n > PD_PIN_MAX)
        return pd_error_set(err, PD_ERR_INVALID, "PIN is longer than %d bytes", PD_PIN_MAX);
    int rc = pd_kdf_check(kdf, err);
    if (rc != PD_OK)
        return rc;
    kdf_runs++;
    if (crypto_pwhash(out, PD_KEY_BYTES, pin, n, salt, kdf->opslimit, (size_t)kdf->memlimit,
                      crypto_pwhash_ALG_ARGON2ID13) != 0)
        return pd_error_set(err, PD_ERR_NOMEM, "Argon2id could not get %llu bytes of memory",
                            (unsigned long long)kdf->memlimit);
    return PD_OK;
}

/* ---- encode / decode -------------------------------------------------------------------- */

static void checksum(uint8_t out[CHECKSUM_BYTES], const uint8_t *buf)
{
    crypto_generichash(out, CHECKSUM_BYTES, buf, OFF_CHECKSUM, NULL, 0);
}

void pd_keyfile_encode(const pd_keyfile *kf, uint8_t out[PD_KEYFILE_BYTES])
{
    memset(out, 0, PD_KEYFILE_BYTES);
    memcpy(out + OFF_MAGIC, PD_KEYFILE_MAGIC, PD_KEYFILE_MAGIC_BYTES);
    out[OFF_VERSION] = PD_KEYFILE_VERSION;
    out[OFF_FLAGS] = kf->flags;
    memcpy(out + OFF_DBID, kf->dbid, PD_DBID_BYTES);
    put_u32(out + OFF_OPS, kf->kdf.opslimit);
    put_u64(out + OFF_MEM, kf->kdf.memlimit);
    if (kf->flags & PD_KEYFILE_HAS_PIN) {
        memcpy(out + OFF_SALT, kf->salt, sizeof kf->salt);
        memcpy(out + OFF_NONCE, kf->pin_nonce, sizeof kf->pin_nonce);
        memcpy(out + OFF_WRAPPED, kf->pin_wrapped, sizeof kf->pin_wrapped);
    }
    if (kf->flags & PD_KEYFILE_HAS_RECOVERY) {
        memcpy(out + OFF_RPK, kf->recovery_pk, sizeof kf->recovery_pk);
        memcpy(out + OFF_SEALED, kf->recovery_sealed, sizeof kf->recovery_sealed);
    }
    put_u32(out + OFF_FAILURES, kf->failures);
    checksum(out + OFF_CHECKSUM, out);
}

int pd_keyfile_decode(pd_keyfile *kf, const uint8_t *buf, size_t len, const char *name,
                      pd_error *err)
{
    if (!name)
        name = "store.key";
    memset(kf, 0, sizeof *kf);
    if (len < OFF_VERSION + 1 || memcmp(buf, PD_KEYFILE_MAGIC, PD_KEYFILE_MAGIC_BYTES) != 0)
        return pd_error_set(err, PD_ERR_CORRUPT, "%s: not a pendata key file (no PDKEY magic)",
                            name);
    if (buf[OFF_VERSION] != PD_KEYFILE_VERSION)
        return pd_error_set(err, PD_ERR_VERSION,
                            "%s: key file format version %u; this pendata reads version %u", name,
                            (unsigned)buf[OFF_VERSION], (unsigned)PD_KEYFILE_VERSION);
    if (len != PD_KEYFILE_BYTES)
        return pd_error_set(err, PD_ERR_CORRUPT, "%s: %s (%zu bytes; version %u has %u)", name,
                            len < PD_KEYFILE_BYTES ? "truncated" : "too long", len,
                            (unsigned)PD_KEYFILE_VERSION, (unsigned)PD_KEYFILE_BYTES);
    uint8_t sum[CHECKSUM_BYTES];
    checksum(sum, buf);
    if (sodium_memcmp(sum, buf + OFF_CHECKSUM, CHECKSUM_BYTES) != 0)
        return pd_error_set(err, PD_ERR_CORRUPT, "%s: checksum mismatch: the file is damaged",
                            name);
    uint8_t flags = buf[OFF_FLAGS];
    if (flags & ~(PD_KEYFILE_HAS_PIN | PD_KEYFILE_HAS_RECOVERY))
        return pd_error_set(err, PD_ERR_CORRUPT, "%s: unknown flags 0x%02x", name, (unsigned)flags);
    if (buf[OFF_RESERVED] != 0)
        return pd_error_set(err, PD_ERR_CORRUPT, "%s: reserved byte is not zero", name);
    if (all_zero(buf + OFF_DBID, PD_DBID_BYTES))
        return pd_error_set(err, PD_ERR_CORRUPT, "%s: database id is all zero", name);
    if (!(flags & PD_KEYFILE_HAS_PIN) && !all_zero(buf + OFF_SALT, OFF_RPK - OFF_SALT))
        return pd_error_set(err, PD_ERR_CORRUPT, "%s: PIN copy flagged absent but not empty", name);
    if (!(flags & PD_KEYFILE_HAS_RECOVERY) && !all_zero(buf + OFF_RPK, OFF_FAILURES - OFF_RPK))
        return pd_error_set(err, PD_ERR_CORRUPT, "%s: recovery copy flagged absent but not empty",
                            name);
    if (!flags)
        return pd_error_set(err, PD_ERR_CORRUPT, "%s: holds no copy of the key at all", name);
    kf->flags = flags;
    memcpy(kf->dbid, buf + OFF_DBID, PD_DBID_BYTES);
    kf->kdf.opslimit = get_u32(buf + OFF_OPS);
    kf->kdf.memlimit = get_u64(buf + OFF_MEM);
    pd_error kerr;
    if (pd_kdf_check(&kf->kdf, &kerr) != PD_OK)
        return pd_error_set(err, PD_ERR_CORRUPT, "%s: %s", name, kerr.msg);
    memcpy(kf->salt, buf + OFF_SALT, sizeof kf->salt);
    memcpy(kf->pin_nonce, buf + OFF_NONCE, sizeof kf->pin_nonce);
    memcpy(kf->pin_wrapped, buf + OFF_WRAPPED, sizeof kf->pin_wrapped);
    memcpy(kf->recovery_pk, buf + OFF_RPK, sizeof kf->recovery_pk);
    memcpy(kf->recovery_sealed, buf + OFF_SEALED, sizeof kf->recovery_sealed);
    kf->failures = get_u32(buf + OFF_FAILURES);
    return PD_OK;
}

/* ---- files ------------------------------------------------------------------------------ */

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

int pd_keyfile_read(pd_keyfile *kf, const char *path, pd_error *err)
{
    uint8_t buf[PD_KEYFILE_BYTES + 1];
    memset(kf, 0, sizeof *kf);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        if (errno == ENOENT)
            return pd_error_set(err, PD_ERR_NOTFOUND, "%s: no key file (is this a store?)", path);
        return pd_error_set(err, PD_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    }
    size_t n = 0;
    int rc = PD_OK;
    while (n < sizeof buf) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = pd_error_set(err, PD_ERR_IO, "%s: read failed: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (rc == PD_OK)
        rc = pd_keyfile_decode(kf, buf, n, base_name(path), err);
    return rc;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int fsync_dir_of(const char *path)
{
    char *dir = strdup(path);
    if (!dir)
        return -1;
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        slash[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int pd_keyfile_write(const pd_keyfile *kf, const char *path, pd_error *err)
{
    uint8_t buf[PD_KEYFILE_BYTES];
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp)
        return pd_error_set(err, PD_ERR_NOMEM, "%s: out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    pd_keyfile_encode(kf, buf);

    int rc = PD_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
        goto out;
    }
    if (fchmod(fd, 0600) != 0 || write_all(fd, buf, sizeof buf) != 0 || fsync(fd) != 0) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto out;
    }
    if (close(fd) != 0) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: close failed: %s", tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: rename to %s failed: %s", tmp, base_name(path),
                          strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (fsync_dir_of(path) != 0)
        rc = pd_error_set(err, PD_ERR_IO, "%s: fsync of its directory failed: %s", path,
                          strerror(errno));
out:
    free(tmp);
    return rc;
}

int pd_keyfile_lock(const char *dir, int *fd, pd_error *err)
{
    *fd = -1;
    int d = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (d < 0)
        return pd_error_set(err, errno == ENOENT ? PD_ERR_NOTFOUND : PD_ERR_IO,
                            "%s: cannot open the directory: %s", dir, strerror(errno));
    while (flock(d, LOCK_EX) != 0) {
        if (errno == EINTR)
            continue;
        int e = errno;
        close(d);
        return pd_error_set(err, PD_ERR_IO, "%s: cannot lock: %s", dir, strerror(e));
    }
    *fd = d;
    return PD_OK;
}

void pd_keyfile_unlock(int fd)
{
    if (fd >= 0) {
        flock(fd, LOCK_UN);
        close(fd);
    }
}

/* ---- the copies of the key -------------------------------------------------------------- */

static void pin_ad(const pd_keyfile *kf, uint8_t ad[AD_BYTES])
{
    uint8_t *p = ad;
    memcpy(p, PD_KEYFILE_MAGIC, PD_KEYFILE_MAGIC_BYTES);
    p += PD_KEYFILE_MAGIC_BYTES;
    *p++ = PD_KEYFILE_VERSION;
    memcpy(p, kf->dbid, PD_DBID_BYTES);
    p += PD_DBID_BYTES;
    put_u32(p, kf->kdf.opslimit);
    p += 4;
    put_u64(p, kf->kdf.memlimit);
    p += 8;
    memcpy(p, kf->salt, PD_KEYFILE_SALT_BYTES);
}

int pd_keyfile_wrap_pin(pd_keyfile *kf, const uint8_t key[PD_KEY_BYTES], const char *pin,
                        const pd_kdf_params *kdf, pd_error *err)
{
    uint8_t ad[AD_BYTES];
    uint8_t *wk = sodium_malloc(PD_KEY_BYTES);
    if (!wk)
        return pd_error_set(err, PD_ERR_NOMEM, "no secure memory for the PIN key");
    pd_keyfile next = *kf;
    next.kdf = *kdf;
    randombytes_buf(next.salt, sizeof next.salt);
    randombytes_buf(next.pin_nonce, sizeof next.pin_nonce);
    int rc = pd_kdf_derive(wk, pin, next.salt, &next.kdf, err);
    if (rc != PD_OK)
        goto out;
    pin_ad(&next, ad);
    crypto_aead_xchacha20poly1305_ietf_encrypt(next.pin_wrapped, NULL, key, PD_KEY_BYTES, ad,
                                               sizeof ad, NULL, next.pin_nonce, wk);
    next.flags |= PD_KEYFILE_HAS_PIN;
    *kf = next;
out:
    sodium_free(wk);
    return rc;
}

int pd_keyfile_unwrap_pin(const pd_keyfile *kf, const char *pin, uint8_t key[PD_KEY_BYTES],
                          pd_error *err)
{
    if (!(kf->flags & PD_KEYFILE_HAS_PIN))
        return pd_error_set(err, PD_ERR_LOCKED,
                            "the PIN copy of the key was erased after %d wrong PINs: only "
                            "recovery opens this store",
                            PD_KEYFILE_ERASE_AFTER);
    uint8_t ad[AD_BYTES];
    uint8_t *wk = sodium_malloc(PD_KEY_BYTES);
    if (!wk)
        return pd_error_set(err, PD_ERR_NOMEM, "no secure memory for the PIN key");
    int rc = pd_kdf_derive(wk, pin, kf->salt, &kf->kdf, err);
    if (rc != PD_OK)
        goto out;
    pin_ad(kf, ad);
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(key, NULL, NULL, kf->pin_wrapped,
                                                   sizeof kf->pin_wrapped, ad, sizeof ad,
                                                   kf->pin_nonce, wk) != 0) {
        sodium_memzero(key, PD_KEY_BYTES);
        rc = pd_error_set(err, PD_ERR_BADPIN, "wrong PIN");
    }
out:
    sodium_free(wk);
    return rc;
}

int pd_keyfile_seal_recovery(pd_keyfile *kf, const uint8_t key[PD_KEY_BYTES],
                             const uint8_t recovery_pk[PD_PUBKEY_BYTES], pd_error *err)
{
    uint8_t *plain = sodium_malloc(PD_DBID_BYTES + PD_KEY_BYTES);
    if (!plain)
        return pd_error_set(err, PD_ERR_NOMEM, "no secure memory for the recovery seal");
    int rc = PD_OK;
    memcpy(plain, kf->dbid, PD_DBID_BYTES);
    memcpy(plain + PD_DBID_BYTES, key, PD_KEY_BYTES);
    if (crypto_box_seal(kf->recovery_sealed, plain, PD_DBID_BYTES + PD_KEY_BYTES, recovery_pk) !=
        0) {
        rc = pd_error_set(err, PD_ERR_INVALID, "the recovery public key is not usable");
        goto out;
    }
    memcpy(kf->recovery_pk, recovery_pk, PD_PUBKEY_BYTES);
    kf->flags |= PD_KEYFILE_HAS_RECOVERY;
out:
    sodium_free(plain);
    return rc;
}

int pd_keyfile_open_recovery(const pd_keyfile *kf, const uint8_t recovery_pk[PD_PUBKEY_BYTES],
                             const uint8_t recovery_sk[PD_KEY_BYTES], uint8_t key[PD_KEY_BYTES],
                             pd_error *err)
{
    if (!(kf->flags & PD_KEYFILE_HAS_RECOVERY))
        return pd_error_set(err, PD_ERR_NOTFOUND,
                            "this store has no recovery copy of its key: it cannot be recovered");
    uint8_t derived[PD_PUBKEY_BYTES];
    if (crypto_scalarmult_base(derived, recovery_sk) != 0 ||
        sodium_memcmp(derived, recovery_pk, PD_PUBKEY_BYTES) != 0)
        return pd_error_set(err, PD_ERR_INVALID,
                            "the recovery secret key does not match the recovery public key");
    if (sodium_memcmp(recovery_pk, kf->recovery_pk, PD_PUBKEY_BYTES) != 0)
        return pd_error_set(err, PD_ERR_DENIED,
                            "this store's key was sealed to another recovery key");
    uint8_t *plain = sodium_malloc(PD_DBID_BYTES + PD_KEY_BYTES);
    if (!plain)
        return pd_error_set(err, PD_ERR_NOMEM, "no secure memory for the recovery seal");
    int rc = PD_OK;
    if (crypto_box_seal_open(plain, kf->recovery_sealed, sizeof kf->recovery_sealed, recovery_pk,
                             recovery_sk) != 0) {
        rc = pd_error_set(err, PD_ERR_CORRUPT, "the recovery copy of the key does not open");
        goto out;
    }
    if (sodium_memcmp(plain, kf->dbid, PD_DBID_BYTES) != 0) {
        rc = pd_error_set(err, PD_ERR_CORRUPT,
                          "the recovery copy of the key belongs to another database");
        goto out;
    }
    memcpy(key, plain + PD_DBID_BYTES, PD_KEY_BYTES);
out:
    sodium_free(plain);
    return rc;
}

/* ---- the PIN policy --------------------------------------------------------------------- */

int pd_keyfile_try_pin(const char *path, const char *pin, uint8_t key[PD_KEY_BYTES],
                       pd_keyfile *kf_out, pd_error *err)
{
    pd_keyfile kf;
    int rc = pd_keyfile_read(&kf, path, err);
    if (rc != PD_OK)
        return rc;
    if (!(kf.flags & PD_KEYFILE_HAS_PIN)) {
        rc = pd_keyfile_unwrap_pin(&kf, pin, key, err); /* PD_ERR_LOCKED with its message */
        goto out;
    }
    uint32_t before = kf.failures;
    if (kf.failures < UINT32_MAX)
        kf.failures++;
    rc = pd_keyfile_write(&kf, path, err);
    if (rc != PD_OK)
        goto out;

    /* Slowing down: extra derivations with the same inputs; their result is thrown away. */
    if (before >= PD_KEYFILE_SLOW_AFTER) {
        uint32_t extra = before - (PD_KEYFILE_SLOW_AFTER - 1);
        if (extra > PD_KEYFILE_EXTRA_MAX)
            extra = PD_KEYFILE_EXTRA_MAX;
        uint8_t *scratch = sodium_malloc(PD_KEY_BYTES);
        if (!scratch) {
            rc = pd_error_set(err, PD_ERR_NOMEM, "no secure memory for the PIN key");
            goto out;
        }
        for (uint32_t i = 0; i < extra && rc == PD_OK; i++)
            rc = pd_kdf_derive(scratch, pin, kf.salt, &kf.kdf, err);
        sodium_free(scratch);
        if (rc != PD_OK)
            goto out;
    }

    rc = pd_keyfile_unwrap_pin(&kf, pin, key, err);
    if (rc == PD_OK) {
        kf.failures = 0;
        rc = pd_keyfile_write(&kf, path, err);
        if (rc != PD_OK)
            sodium_memzero(key, PD_KEY_BYTES);
        goto out;
    }
    if (rc != PD_ERR_BADPIN)
        goto out;
    if (kf.failures >= PD_KEYFILE_ERASE_AFTER && (kf.flags & PD_KEYFILE_HAS_RECOVERY)) {
        kf.flags &= (uint8_t)~PD_KEYFILE_HAS_PIN;
        sodium_memzero(kf.salt, sizeof kf.salt);
        sodium_memzero(kf.pin_nonce, sizeof kf.pin_nonce);
        sodium_memzero(kf.pin_wrapped, sizeof kf.pin_wrapped);
        rc = pd_keyfile_write(&kf, path, err);
        if (rc == PD_OK)
            rc = pd_error_set(err, PD_ERR_LOCKED,
                              "wrong PIN %u times in a row: the PIN copy of the key is erased; "
                              "only recovery opens this store now",
                              (unsigned)kf.failures);
        goto out;
    }
    if (kf.flags & PD_KEYFILE_HAS_RECOVERY)
        rc = pd_error_set(err, PD_ERR_BADPIN,
                          "wrong PIN (%u failed in a row; at %d the PIN is erased and only "
                          "recovery opens the store)",
                          (unsigned)kf.failures, PD_KEYFILE_ERASE_AFTER);
    else
        rc = pd_error_set(err, PD_ERR_BADPIN,
                          "wrong PIN (%u failed in a row; after %d each attempt takes longer)",
                          (unsigned)kf.failures, PD_KEYFILE_SLOW_AFTER);
out:
    if (kf_out)
        *kf_out = kf;
    return rc;
}

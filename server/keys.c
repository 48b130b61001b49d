/*
 * keys.c — the server's key file and what the keys do: sign (prelists, deltas, receipts, JSON
 * responses) and show a fingerprint for devices to pin.
 *
 * The key file sits next to the database (PATH.key), mode 0600, created once by `init` and never
 * overwritten. It is not encrypted: the operator protects the server's disk (an HSM or a
 * passphrase-wrapped file is a later step). Format, 168 bytes:
 *
 *     0   4  magic "PDSK"
 *     4   1  version = 1
 *     5   3  zero
 *     8  64  Ed25519 secret key (seed || public key)
 *    72  32  X25519 recovery public key
 *   104  32  X25519 recovery secret key
 *   136  32  BLAKE2b-256 of bytes 0..135 (catches truncation and bit rot, not an attacker)
 *
 * Loading refuses a file others can read, a wrong size, magic, version or checksum, and keys
 * whose public halves do not match their secret halves.
 */
#include "srv_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEYFILE_MAGIC "PDSK"
#define KEYFILE_VERSION 1

int srv_keys_create(const char *path, pd_error *err)
{
    uint8_t *buf = sodium_malloc(PD_SERVER_KEY_FILE_BYTES);
    if (!buf)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory making keys");
    memset(buf, 0, PD_SERVER_KEY_FILE_BYTES);
    memcpy(buf, KEYFILE_MAGIC, 4);
    buf[4] = KEYFILE_VERSION;
    uint8_t pk[PD_PUBKEY_BYTES];
    crypto_sign_keypair(pk, buf + 8);
    crypto_box_keypair(buf + 72, buf + 104);
    crypto_generichash(buf + 136, PD_HASH_BYTES, buf, 136, NULL, 0);

    int rc = PD_OK;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        rc = pd_error_set(err, errno == EEXIST ? PD_ERR_EXISTS : PD_ERR_IO, "%s: %s", path,
                          errno == EEXIST ? "a key file is already there (never overwritten)"
                                          : strerror(errno));
        goto out;
    }
    ssize_t w = write(fd, buf, PD_SERVER_KEY_FILE_BYTES);
    if (w != PD_SERVER_KEY_FILE_BYTES || fsync(fd) != 0) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: cannot write the key file: %s", path,
                          strerror(errno));
        close(fd);
        unlink(path);
        goto out;
    }
    close(fd);
    /* make the new name durable too */
    char *dir = strdup(path);
    if (dir) {
        char *slash = strrchr(dir, '/');
        if (slash && slash != dir)
            *slash = '\0';
        else if (slash)
            slash[1] = '\0';
        else
            strcpy(dir, ".");
        srv_fsync_dir(dir);
        free(dir);
    }
out:
    sodium_free(buf);
    return rc;
}

void srv_keys_free(srv_keys *k)
{
    if (!k)
        return;
    sodium_free(k->sign_sk);
    sodium_free(k->box_sk);
    k->sign_sk = k->box_sk = NULL;
}

int srv_keys_load(srv_keys *k, const char *path, pd_error *err)
{
    memset(k, 0, sizeof *k);
    uint8_t *buf = sodium_malloc(PD_SERVER_KEY_FILE_BYTES + 1);
    k->sign_sk = sodium_malloc(PD_SECKEY_BYTES);
    k->box_sk = sodium_malloc(PD_KEY_BYTES);
    int rc = PD_OK;
    int fd = -1;
    if (!buf || !k->sign_sk || !k->box_sk) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory loading keys");
        goto out;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = pd_error_set(err, errno == ENOENT ? PD_ERR_NOTFOUND : PD_ERR_IO,
                          "%s: cannot open the server key file: %s (run `pendata-server init`)",
                          path, strerror(errno));
        goto out;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        rc = pd_error_set(err, PD_ERR_IO, "%s: %s", path, strerror(errno));
        goto out;
    }
    if (sb.st_mode & 077) {
        rc = pd_error_set(err, PD_ERR_DENIED,
                          "%s: the key file is open to other users (mode %03o); chmod 600 it", path,
                          (unsigned)(sb.st_mode & 0777));
        goto out;
    }
    ssize_t n = read(fd, buf, PD_SERVER_KEY_FILE_BYTES + 1);
    if (n != PD_SERVER_KEY_FILE_BYTES) {
        rc = pd_error_set(err, PD_ERR_CORRUPT, "%s: the key file is %zd bytes, not %d", path, n,
                          PD_SERVER_KEY_FILE_BYTES);
        goto out;
    }
    uint8_t sum[PD_HASH_BYTES];
    crypto_generichash(sum, sizeof sum, buf, 136, NULL, 0);
    if (memcmp(buf, KEYFILE_MAGIC, 4) != 0 || sodium_memcmp(sum, buf + 136, PD_HASH_BYTES)) {
        rc = pd_error_set(err, PD_ERR_CORRUPT, "%s: not a pendata server key file, or damaged",
                          path);
        goto out;
    }
    if (buf[4] != KEYFILE_VERSION || buf[5] || buf[6] || buf[7]) {
        rc =
            pd_error_set(err, PD_ERR_VERSION, "%s: key file version %u is not known", path, buf[4]);
        goto out;
    }
    memcpy(k->sign_sk, buf + 8, PD_SECKEY_BYTES);
    crypto_sign_ed25519_sk_to_pk(k->sign_pk, k->sign_sk);
    memcpy(k->box_pk, buf + 72, PD_PUBKEY_BYTES);
    memcpy(k->box_sk, buf + 104, PD_KEY_BYTES);
    uint8_t check[PD_PUBKEY_BYTES];
    crypto_scalarmult_base(check, k->box_sk);
    if (memcmp(k->sign_pk, buf + 8 + 32, PD_PUBKEY_BYTES) != 0 ||
        memcmp(check, k->box_pk, PD_PUBKEY_BYTES) != 0) {
        rc = pd_error_set(err, PD_ERR_CORRUPT, "%s: public and secret keys do not match", path);
        goto out;
    }
out:
    if (fd >= 0)
        close(fd);
    sodium_free(buf);
    if (rc != PD_OK)
        srv_keys_free(k);
    return rc;
}

void srv_sign(const pd_server *srv, const uint8_t *msg, size_t len, uint8_t sig[PD_SIG_BYTES])
{
    crypto_sign_detached(sig, NULL, msg, len, srv->keys.sign_sk);
}

void srv_fingerprint_of(const uint8_t pk[PD_PUBKEY_BYTES], char out[PD_SERVER_FINGERPRINT_LEN + 1])
{
    uint8_t h[PD_HASH_BYTES];
    crypto_generichash(h, sizeof h, pk, PD_PUBKEY_BYTES, NULL, 0);
    char hex[33];
    srv_hex(h, 16, hex);
    size_t o = 0;
    for (int g = 0; g < 8; g++) {
        if (g)
            out[o++] = '-';
        memcpy(out + o, hex + 4 * g, 4);
        o += 4;
    }
    out[o] = '\0';
}

void pd_server_fingerprint(const pd_server *srv, char out[PD_SERVER_FINGERPRINT_LEN + 1])
{
    srv_fingerprint_of(srv->keys.sign_pk, out);
}

void pd_server_public_keys(const pd_server *srv, uint8_t sign_pk[PD_PUBKEY_BYTES],
                           uint8_t recovery_pk[PD_PUBKEY_BYTES])
{
    if (sign_pk)
        memcpy(sign_pk, srv->keys.sign_pk, PD_PUBKEY_BYTES);
    if (recovery_pk)
        memcpy(recovery_pk, srv->keys.box_pk, PD_PUBKEY_BYTES);
}

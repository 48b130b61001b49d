/*
 * keyfile.h — the store's sidecar, `<home>/store.key`: the random data key of store.db wrapped by
 * a key derived from the PIN (Argon2id), optionally sealed to a recovery X25519 public key, the
 * database id, and the failed-PIN counter. See keyfile.c for the format and the PIN policy.
 *
 * Internal to libpendata (store.c and the tests); not installed.
 */
#ifndef PD_KEYFILE_H
#define PD_KEYFILE_H

#include "pendata.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdint.h>

#define PD_KEYFILE_MAGIC "PDKEY"
#define PD_KEYFILE_MAGIC_BYTES 5
#define PD_KEYFILE_VERSION 1
#define PD_KEYFILE_BYTES 272 /* the whole file, format version 1 */

#define PD_KEYFILE_SALT_BYTES crypto_pwhash_SALTBYTES                       /* 16 */
#define PD_KEYFILE_NONCE_BYTES crypto_aead_xchacha20poly1305_ietf_NPUBBYTES /* 24 */
#define PD_KEYFILE_WRAPPED_BYTES (PD_KEY_BYTES + crypto_aead_xchacha20poly1305_ietf_ABYTES)
#define PD_KEYFILE_SEALED_BYTES (PD_DBID_BYTES + PD_KEY_BYTES + crypto_box_SEALBYTES)

/* flags */
#define PD_KEYFILE_HAS_PIN 0x01      /* the PIN-wrapped copy is present (cleared by the lockout) */
#define PD_KEYFILE_HAS_RECOVERY 0x02 /* the recovery-sealed copy is present */

/* PIN policy (keyfile.c top comment). */
#define PD_KEYFILE_SLOW_AFTER 5   /* consecutive failures after which each attempt costs more */
#define PD_KEYFILE_EXTRA_MAX 8    /* at most this many extra Argon2id derivations per attempt */
#define PD_KEYFILE_ERASE_AFTER 10 /* failures that erase the PIN copy when recovery exists */

#define PD_PIN_MIN 4   /* characters (bytes) of a new PIN */
#define PD_PIN_MAX 256 /* bytes of any PIN */

/* The decoded sidecar. Holds no secret: the data key in it is wrapped or sealed. */
typedef struct pd_keyfile {
    uint8_t flags;
    uint8_t dbid[PD_DBID_BYTES];
    pd_kdf_params kdf;
    uint8_t salt[PD_KEYFILE_SALT_BYTES];
    uint8_t pin_nonce[PD_KEYFILE_NONCE_BYTES];
    uint8_t pin_wrapped[PD_KEYFILE_WRAPPED_BYTES];
    uint8_t recovery_pk[PD_PUBKEY_BYTES];
    uint8_t recovery_sealed[PD_KEYFILE_SEALED_BYTES];
    uint32_t failures; /* consecutive wrong PINs */
} pd_keyfile;

/* Are these Argon2id parameters within the bounds this build accepts (opslimit 1..64, memlimit
 * 8 KiB..1 GiB)? PD_OK or PD_ERR_INVALID with the reason. */
int pd_kdf_check(const pd_kdf_params *kdf, pd_error *err);

/* Argon2id (crypto_pwhash_ALG_ARGON2ID13) of pin with salt into out[PD_KEY_BYTES]. */
int pd_kdf_derive(uint8_t out[PD_KEY_BYTES], const char *pin,
                  const uint8_t salt[PD_KEYFILE_SALT_BYTES], const pd_kdf_params *kdf,
                  pd_error *err);

/* How many Argon2id derivations pd_kdf_derive has run in this process: the PIN policy's cost is
 * counted in derivations (tests check the count per attempt; CPU time alone is noisy). */
unsigned long pd_kdf_derivations(void);

/* Serialise to exactly PD_KEYFILE_BYTES bytes (with the trailing checksum). */
void pd_keyfile_encode(const pd_keyfile *kf, uint8_t out[PD_KEYFILE_BYTES]);

/* Parse strictly: magic, version (PD_ERR_VERSION for another), exact length, checksum, known
 * flags, zero reserved bytes, absent copies all zero, KDF bounds. `name` prefixes messages.
 * PD_OK or PD_ERR_CORRUPT / PD_ERR_VERSION with a message. */
int pd_keyfile_decode(pd_keyfile *kf, const uint8_t *buf, size_t len, const char *name,
                      pd_error *err);

/* Read and decode a file (at most PD_KEYFILE_BYTES + 1 bytes are read). PD_ERR_NOTFOUND if it
 * does not exist. */
int pd_keyfile_read(pd_keyfile *kf, const char *path, pd_error *err);

/* Replace the file atomically: `<path>.tmp` written (0600), fsync'd, renamed over path, the
 * directory fsync'd. On failure the temp file is removed and the old file is untouched. */
int pd_keyfile_write(const pd_keyfile *kf, const char *path, pd_error *err);

/* Wrap key under pin: fresh salt and nonce, kdf stored with it, HAS_PIN set. */
int pd_keyfile_wrap_pin(pd_keyfile *kf, const uint8_t key[PD_KEY_BYTES], const char *pin,
                        const pd_kdf_params *kdf, pd_error *err);

/* Unwrap with pin (one derivation, no counter, no policy: see pd_keyfile_try_pin). PD_ERR_BADPIN
 * if the PIN (or any authenticated field) is wrong; PD_ERR_LOCKED if there is no PIN copy. */
int pd_keyfile_unwrap_pin(const pd_keyfile *kf, const char *pin, uint8_t key[PD_KEY_BYTES],
                          pd_error *err);

/* Seal dbid || key to the recovery public key (crypto_box_seal); HAS_RECOVERY set. */
int pd_keyfile_seal_recovery(pd_keyfile *kf, const uint8_t key[PD_KEY_BYTES],
                             const uint8_t recovery_pk[PD_PUBKEY_BYTES], pd_error *err);

/* Open the sealed copy with the recovery key pair. PD_ERR_INVALID if sk does not match pk,
 * PD_ERR_DENIED if pk is not the key the store was sealed to, PD_ERR_NOTFOUND without a sealed
 * copy, PD_ERR_CORRUPT if the seal does not open or names another database. */
int pd_keyfile_open_recovery(const pd_keyfile *kf, const uint8_t recovery_pk[PD_PUBKEY_BYTES],
                             const uint8_t recovery_sk[PD_KEY_BYTES], uint8_t key[PD_KEY_BYTES],
                             pd_error *err);

/* One PIN attempt under the policy: the failure counter is raised and written before the
 * derivation (so killing the process mid-attempt does not save the attacker the count), extra
 * derivations after PD_KEYFILE_SLOW_AFTER failures, the counter reset on success, the PIN copy
 * erased after PD_KEYFILE_ERASE_AFTER failures when a recovery copy exists. The caller holds the
 * directory lock (pd_keyfile_lock). kf_out (may be NULL) gets the sidecar as it is afterwards.
 * PD_OK with key filled, PD_ERR_BADPIN, PD_ERR_LOCKED, or a read/write failure. */
int pd_keyfile_try_pin(const char *path, const char *pin, uint8_t key[PD_KEY_BYTES],
                       pd_keyfile *kf_out, pd_error *err);

/* Take an exclusive lock (flock) on directory dir, serialising read-modify-write of its sidecar
 * between processes. *fd gets the descriptor to give to pd_keyfile_unlock. */
int pd_keyfile_lock(const char *dir, int *fd, pd_error *err);
void pd_keyfile_unlock(int fd);

#endif /* PD_KEYFILE_H */

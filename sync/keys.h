/*
 * keys.h — inside the sync layer: reading this device's key pairs and the keyring's supervision
 * relation (keys.c). Not installed; front ends use pd_keyring_* of pd_sync.h.
 */
#ifndef PD_SYNC_KEYS_H
#define PD_SYNC_KEYS_H

#include "batch_internal.h"
#include "store_internal.h"

/* This device's key pair for a role. sk (PD_SECKEY_BYTES, may be NULL) should be locked memory
 * the caller wipes. PD_ERR_NOTFOUND (message on the store) if there is no such identity. */
int pd_keys_identity(pd_store *store, const char *role, uint8_t pk[PD_PUBKEY_BYTES], uint8_t *sk);

/* The supervisor key the keyring gives for an author; PD_ERR_DENIED (message on the store) if the
 * author is unknown or has no supervisor. author (may be NULL) gets the author's row. */
int pd_keys_supervisor_of(pd_store *store, const uint8_t author_pk[PD_PUBKEY_BYTES],
                          uint8_t supervisor_pk[PD_PUBKEY_BYTES], pd_keyring_entry *author);

#endif

/*
 * cli_batch.h — what the seal, outbox and review subcommands share: whole-file reads with a size
 * limit, atomic file writes, public keys given in hex, batch states and hashes for people.
 */
#ifndef PD_CLI_BATCH_H
#define PD_CLI_BATCH_H

#include "cli_visits.h"
#include "pd_sync.h"

/* Read a whole file of at most max bytes ("-" is stdin). 0, or -1 with the error printed. */
int cli_read_all(cli *c, const char *path, size_t max, uint8_t **out, size_t *len);

/* Write a file atomically (a temporary file, fsync, rename); "-" is stdout. 0 or -1 (printed). */
int cli_write_all(cli *c, const char *path, const void *data, size_t len);

/* 64 hex characters into a public key; 0 or -1. */
int cli_parse_pk(const char *hex, uint8_t pk[PD_PUBKEY_BYTES]);

/* The first n bytes of a key or hash as hex (2n + 1 bytes). */
const char *cli_hex(char *out, const uint8_t *p, size_t n);

/* A Unix-ms time as "YYYY-MM-DD HH:MM" UTC. */
const char *cli_time_text(int64_t ms, char *buf, size_t cap);

/* A positive integer argument; 0 or -1. */
int cli_parse_u64(const char *s, uint64_t *out);

#endif

/*
 * prelist_fixture.h — what the prelist tests, benchmark and fuzz target share: a fixed test
 * issuer key, a store in a temporary directory, a digest of EVERY table of a store (to prove that
 * bad input changed nothing), and a package built from a raw payload.
 *
 * Header-only (static functions), like visits_fixture.h, whose typed row hash it reuses.
 */
#ifndef PD_PRELIST_FIXTURE_H
#define PD_PRELIST_FIXTURE_H

#include "pd_prelist.h"
#include "prelist_internal.h"
#include "visits_fixture.h"

#include <sodium.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define PD_FIXTURE_PIN "246810"

/* A deterministic issuer key pair: n selects one of many. */
static inline void pd_fixture_issuer(unsigned n, uint8_t pk[PD_PUBKEY_BYTES],
                                     uint8_t sk[PD_SECKEY_BYTES])
{
    uint8_t seed[32];
    memset(seed, 0x5a, sizeof seed);
    seed[0] = (uint8_t)n;
    seed[1] = (uint8_t)(n >> 8);
    crypto_sign_seed_keypair(pk, sk, seed);
}

/* BLAKE2b-256 of every row of every table (shadow tables of FTS and R*Tree included), table by
 * table in name order. 0 on success. */
static inline int pd_fixture_store_digest(sqlite3 *db, uint8_t out[32])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT "
                           "LIKE 'sqlite_%' ORDER BY name",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    int rc = 0;
    while (rc == 0 && sqlite3_step(st) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        crypto_generichash_update(&h, (const uint8_t *)name, strlen(name) + 1);
        char *sql = sqlite3_mprintf("SELECT * FROM \"%w\"", name);
        if (!sql)
            rc = -1;
        else
            rc = pd_fixture_hash_query(db, sql, &h);
        sqlite3_free(sql);
    }
    sqlite3_finalize(st);
    crypto_generichash_final(&h, out, 32);
    return rc;
}

/* One integer from a query (-1 if none). */
static inline int64_t pd_fixture_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* A package from a raw NDJSON payload with the given header counts, signed by sk. *out malloc'd. */
static inline int pd_fixture_pack(const char *payload, size_t len, const char *area,
                                  uint32_t shapes, uint32_t households, uint32_t members,
                                  const uint8_t sk[PD_SECKEY_BYTES], uint8_t **out,
                                  size_t *out_len)
{
    pd_prelist_info hdr;
    memset(&hdr, 0, sizeof hdr);
    snprintf(hdr.area, sizeof hdr.area, "%s", area);
    hdr.issued_at = PD_PRELIST_DEFAULT_ISSUED_AT;
    hdr.shapes = shapes;
    hdr.households = households;
    hdr.members = members;
    return pd_prelist_pack_mem((const uint8_t *)payload, len, &hdr, sk, out, out_len, NULL);
}

/* A small valid payload (desa 32.73.01.1001): one area, one household with two members. The
 * head's name is `head` (inserted into the JSON as it is: the caller escapes). */
static inline int pd_fixture_payload(char *buf, size_t cap, const char *head)
{
    return snprintf(
        buf, cap,
        "{\"type\":\"area\",\"code\":\"32.73.01.1001\",\"name\":\"Sukarasa\",\"rev\":1,"
        "\"shape\":\"-6.5 108.2,-6.5 108.3,-6.4 108.3,-6.4 108.2,-6.5 108.2\"}\n"
        "{\"type\":\"household\",\"id\":\"3273011001900001\",\"rev\":1,\"prov\":\"32\","
        "\"kab\":\"32.73\",\"kec\":\"32.73.01\",\"desa\":\"32.73.01.1001\","
        "\"sls\":\"RT 001 / RW 001\",\"address\":\"Jl. Merdeka No. 1\",\"head_name\":\"%s\","
        "\"member_count\":2,\"asset_flags\":0,\"cattle\":0,\"goats\":0,\"pigs\":0,\"poultry\":0,"
        "\"land_m2\":0,\"desil\":1,\"lat\":-6.45,\"lon\":108.25}\n"
        "{\"type\":\"member\",\"id\":\"327301100190000101\",\"household_id\":\"3273011001900001\","
        "\"rev\":1,\"member_no\":1,\"name\":\"%s\",\"nik\":\"3273011203800001\",\"sex\":1,"
        "\"birth_date\":\"1980-03-12\",\"relationship\":1,\"disability\":0,\"chronic_illness\":0,"
        "\"programmes\":0}\n"
        "{\"type\":\"member\",\"id\":\"327301100190000102\",\"household_id\":\"3273011001900001\","
        "\"rev\":1,\"member_no\":2,\"name\":\"Siti Aminah\",\"nik\":\"3273015507820001\","
        "\"sex\":2,\"birth_date\":\"1982-07-15\",\"relationship\":2,\"disability\":0,"
        "\"chronic_illness\":0,\"programmes\":4}\n",
        head, head);
}

#endif /* PD_PRELIST_FIXTURE_H */

/*
 * visits_fixture.h — what the household/visit tests and the visit benchmark share: a tiny valid
 * JPEG made in memory, and a digest of every domain table of a store (to prove that bad input
 * changed nothing, and that a replay reproduced the state).
 *
 * Header-only (static functions) so that tests/ and bench/ can both include it without another
 * library target.
 */
#ifndef PD_VISITS_FIXTURE_H
#define PD_VISITS_FIXTURE_H

#include <sodium.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* A baseline JPEG of w×h grey pixels (w, h < 256): SOI, DQT, SOF0, DHT (DC and AC: one 1-bit
 * code each), SOS with one entropy-coded MCU (DC difference 0, end of block) per 8×8 block, EOI.
 * `variant` goes into a COM segment so tests can make distinct photos. Returns its length;
 * out must hold 256 bytes plus one byte per MCU. */
static inline size_t pd_fixture_jpeg(uint8_t *out, unsigned w, unsigned h, unsigned variant)
{
    size_t n = 0;
    static const uint8_t soi[] = {0xFF, 0xD8};
    memcpy(out + n, soi, sizeof soi);
    n += sizeof soi;
    /* COM with the variant */
    out[n++] = 0xFF, out[n++] = 0xFE, out[n++] = 0x00, out[n++] = 0x06;
    out[n++] = (uint8_t)(variant >> 24), out[n++] = (uint8_t)(variant >> 16);
    out[n++] = (uint8_t)(variant >> 8), out[n++] = (uint8_t)variant;
    /* DQT: table 0, all ones */
    out[n++] = 0xFF, out[n++] = 0xDB, out[n++] = 0x00, out[n++] = 0x43, out[n++] = 0x00;
    for (int i = 0; i < 64; i++)
        out[n++] = 1;
    /* SOF0: 8-bit, h×w, one component id 1, sampling 1×1, table 0 */
    out[n++] = 0xFF, out[n++] = 0xC0, out[n++] = 0x00, out[n++] = 0x0B, out[n++] = 0x08;
    out[n++] = 0x00, out[n++] = (uint8_t)h, out[n++] = 0x00, out[n++] = (uint8_t)w;
    out[n++] = 0x01, out[n++] = 0x01, out[n++] = 0x11, out[n++] = 0x00;
    /* DHT DC 0 and AC 0: one code of length 1 for symbol 0 (DC: category 0; AC: EOB) */
    for (int cls = 0; cls < 2; cls++) {
        out[n++] = 0xFF, out[n++] = 0xC4, out[n++] = 0x00, out[n++] = 0x14;
        out[n++] = (uint8_t)(cls << 4);
        out[n++] = 1;
        for (int i = 1; i < 16; i++)
            out[n++] = 0;
        out[n++] = 0x00;
    }
    /* SOS: one component, tables 0/0, spectral 0..63 */
    out[n++] = 0xFF, out[n++] = 0xDA, out[n++] = 0x00, out[n++] = 0x08, out[n++] = 0x01;
    out[n++] = 0x01, out[n++] = 0x00, out[n++] = 0x00, out[n++] = 0x3F, out[n++] = 0x00;
    /* two bits "00" per block, padded with ones */
    unsigned blocks = ((w + 7) / 8) * ((h + 7) / 8);
    unsigned bits = 2 * blocks;
    for (unsigned b = 0; b < (bits + 7) / 8; b++) {
        unsigned used = bits - b * 8 < 8 ? bits - b * 8 : 8;
        out[n++] = (uint8_t)(0xFF >> used); /* zeros for the codes, ones to pad */
    }
    out[n++] = 0xFF, out[n++] = 0xD9;
    return n;
}

/* BLAKE2b-256 over the rows of one query (every column, typed), in its ORDER BY. */
static inline int pd_fixture_hash_query(sqlite3 *db, const char *sql, crypto_generichash_state *h)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) {
        fprintf(stderr, "fixture: %s: %s\n", sql, sqlite3_errmsg(db));
        return -1;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (int c = 0; c < sqlite3_column_count(st); c++) {
            uint8_t t = (uint8_t)sqlite3_column_type(st, c);
            crypto_generichash_update(h, &t, 1);
            if (t == SQLITE_INTEGER) {
                int64_t v = sqlite3_column_int64(st, c);
                crypto_generichash_update(h, (const uint8_t *)&v, sizeof v);
            } else if (t == SQLITE_FLOAT) {
                double v = sqlite3_column_double(st, c);
                crypto_generichash_update(h, (const uint8_t *)&v, sizeof v);
            } else if (t != SQLITE_NULL) {
                const uint8_t *p = t == SQLITE_TEXT ? sqlite3_column_text(st, c)
                                                    : (const uint8_t *)sqlite3_column_blob(st, c);
                uint64_t len = (uint64_t)sqlite3_column_bytes(st, c);
                crypto_generichash_update(h, (const uint8_t *)&len, sizeof len);
                if (len)
                    crypto_generichash_update(h, p, (size_t)len);
            }
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* The domain tables, each in a stable order, without rowids that are not data. */
static const char *const pd_fixture_domain_sql[] = {
    "SELECT * FROM household ORDER BY id",
    "SELECT * FROM member ORDER BY id",
    "SELECT * FROM visit ORDER BY id",
    "SELECT * FROM photo ORDER BY hash",
    ("SELECT h.id, g.min_lat, g.max_lat, g.min_lon, g.max_lon FROM household_geo g "
     "JOIN household h ON h.hh_rowid = g.hh_rowid ORDER BY h.id"),
    "SELECT rowid, name FROM person_fts ORDER BY rowid",
    "SELECT rowid, address, head_name FROM address_fts ORDER BY rowid",
};

/* Digest of the domain tables (households, members, visits, photos, their location index and
 * their search indexes). With `with_log`, also the op log and settings. 0 on success. */
static inline int pd_fixture_digest(sqlite3 *db, int with_log, uint8_t out[32])
{
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, 32);
    for (size_t i = 0; i < sizeof pd_fixture_domain_sql / sizeof pd_fixture_domain_sql[0]; i++)
        if (pd_fixture_hash_query(db, pd_fixture_domain_sql[i], &h) != 0)
            return -1;
    if (with_log && (pd_fixture_hash_query(db, "SELECT * FROM op ORDER BY seq", &h) != 0 ||
                     pd_fixture_hash_query(db, "SELECT * FROM settings ORDER BY key", &h) != 0))
        return -1;
    crypto_generichash_final(&h, out, 32);
    return 0;
}

#endif /* PD_VISITS_FIXTURE_H */

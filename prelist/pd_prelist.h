/*
 * pd_prelist.h — the prelist layer of libpendata: Indonesia's area codes, synthetic prelists,
 * signed prelist packages (write, verify, read), import into a device store, and splitting an
 * area among enumerators.
 *
 * ---- Area codes ---------------------------------------------------------------------------------
 * The Kemendagri list (prelist/data, from "idn-area-data", ODbL) is embedded in the library at
 * build time: 38 provinces "32", 514 regencies "32.73", 7,285 kecamatan "32.73.01", 83,762
 * desa/kelurahan "32.73.01.1001". Lookups need no file at run time. The first call builds an index
 * (about 3 MB of heap, kept for the life of the process; thread-safe). core/validate.c checks
 * area codes with pd_area_exists.
 *
 * ---- Package format, version 1 ("PDPL") ---------------------------------------------------------
 * A package carries the prelist of one area (a kecamatan, a desa, or a split part of one) from the
 * issuer (the server) to devices. All integers are little-endian.
 *
 *   offset size  field
 *        0    4  magic "PDPL"
 *        4    2  format version (1)
 *        6    2  header size (144)
 *        8   32  issuer's Ed25519 public key
 *       40    8  issued_at, Unix milliseconds (signed)
 *       48   32  area id, ASCII, NUL-padded: "<area code>" or "<area code>:<part>" (a split part)
 *       80    4  number of area shapes
 *       84    4  number of households
 *       88    4  number of members
 *       92    8  compressed payload size (bytes)
 *      100    8  uncompressed payload size (bytes)
 *      108   32  BLAKE2b-256 of the compressed payload
 *      140    4  reserved, zero
 *      144   64  Ed25519 signature of bytes 0..143
 *      208    …  the payload, zlib-deflated (RFC 1950); the file ends exactly where it ends
 *
 * The payload is UTF-8 text, one JSON object per line ("\n" after every record):
 *   {"type":"area","code":"32.73.01.1001","name":"…","rev":1,"shape":"lat lon,lat lon,…"}
 *   {"type":"household","id":"…","rev":1,"prov":"32",…}        then its member_count members:
 *   {"type":"member","id":"…01","household_id":"…","rev":1,…}
 * Every shape comes first; each household is followed at once by exactly its members. Keys are
 * the column names of schema/device/001_init.sql; a field that is NULL is left out; unknown or
 * repeated keys are refused. `rev` is the server revision of the record.
 *
 * Verification order (nothing is inflated before the signature and hash hold): declared sizes
 * and ratio within the PD_PRELIST_MAX_* limits → issuer key equals the pinned key → signature of
 * the header → file length → BLAKE2b of the compressed bytes → inflate, streaming, with every
 * line, string and count bounded and the total held to the declared size (a decompression bomb
 * is PD_ERR_TOOBIG) → each record validated (UTF-8, area codes, codes, ranges, order) → counts
 * equal to the header's. The reader holds one line at a time: memory is bounded whatever the size.
 *
 * A package's identity (prelist_package.hash) is BLAKE2b-256 of its first 208 bytes: the header
 * commits to the payload through its hash, so equal identities mean equal packages.
 *
 * Conventions as in pendata.h: PD_OK or a PD_ERR_* code, messages with context in a pd_error (or on
 * the store handle for pd_prelist_import), whoever creates frees, the library never prints.
 */
#ifndef PD_PRELIST_H
#define PD_PRELIST_H

#include "pendata.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Areas ------------------------------------------------------------------------------- */

#define PD_AREA_CODE_MAX 14 /* "32.73.01.1001" and its NUL */

typedef enum pd_area_level {
    PD_AREA_PROVINCE = 1, /* "32" */
    PD_AREA_REGENCY = 2,  /* "32.73" (kabupaten 01–69, kota 71–99) */
    PD_AREA_KECAMATAN = 3, /* "32.73.01" */
    PD_AREA_DESA = 4      /* "32.73.01.1001" (1xxx kelurahan, 2xxx desa) */
} pd_area_level;

typedef struct pd_area {
    char code[PD_AREA_CODE_MAX]; /* dotted */
    const char *name;            /* static (lives as long as the process) */
    pd_area_level level;
} pd_area;

/* Is code a real area of the list (any level, dotted form)? */
bool pd_area_exists(const char *code);

/* Name of a real area ("Sukasari"), or NULL when code is malformed or not in the list. The string
 * is static. */
const char *pd_area_name(const char *code);

/* Look an area up. PD_ERR_INVALID if code is not a well-formed dotted code, PD_ERR_NOTFOUND if it
 * is not in the list, PD_ERR_NOMEM if the index could not be built. */
int pd_area_lookup(const char *code, pd_area *out, pd_error *err);

/* The direct children of parent (NULL or "": the provinces; a province: its regencies; a regency:
 * its kecamatan; a kecamatan: its desa), in code order. *count gets how many there are; out (may
 * be NULL) gets the first min(count, cap). Errors as pd_area_lookup. */
int pd_area_children(const char *parent, pd_area *out, size_t cap, size_t *count, pd_error *err);

/* The dotted code of a digit string of 2, 4, 6 or 10 digits ("327301" → "32.73.01"), e.g. the
 * first 6 digits of a NIK. PD_ERR_INVALID if n or a character is wrong; does not look it up. */
int pd_area_code_from_digits(const char *digits, size_t n, char out[PD_AREA_CODE_MAX]);

/* A latitude/longitude box. */
typedef struct pd_area_box {
    double min_lat, min_lon, max_lat, max_lon;
} pd_area_box;

/* The synthetic outline of a kecamatan or desa. We have no real polygons: each kecamatan gets a
 * deterministic centre inside its province's rough extent (its regency's centre plus an offset,
 * both from a hash of the code) and its desa are laid out around it as a grid of ~2 km cells; a
 * kecamatan's box is its grid. Provinces and regencies get the province's rough extent.
 * Deterministic: the same code always gives the same box. */
int pd_area_box_of(const char *code, pd_area_box *out, pd_error *err);

/* ---- Prelist records --------------------------------------------------------------------- */

/* An integer field with no value (SQL NULL). A real field with no value is NAN. */
#define PD_PRELIST_NULL INT64_MIN

/* Strings are NUL-terminated UTF-8, owned by whoever produced the record (the generator or the
 * reader) and valid only during the callback that receives it. NULL: SQL NULL. */
typedef struct pd_prelist_shape {
    const char *code;  /* desa (or kecamatan) code */
    const char *name;
    const char *shape; /* closed ring "lat lon,lat lon,…" (area_shape.shape) */
    int64_t rev;
} pd_prelist_shape;

typedef struct pd_prelist_household {
    const char *id; /* ID DTKS: for generated prelists the desa's 10 digits + a 6-digit serial */
    int64_t rev;
    const char *prov, *kab, *kec, *desa; /* dotted codes, each the prefix of the next */
    const char *sls;                     /* "RT 001 / RW 002" */
    const char *address;
    const char *head_name;
    const char *kk;                      /* 16 digits, or NULL */
    int64_t member_count;                /* 1..PD_PRELIST_MAX_MEMBERS_PER_HH, = members that follow */
    int64_t tenure, floor_area, floor_material, wall_material, roof_material, rooms;
    int64_t water_source, lighting, power_va, cooking_fuel, toilet;
    int64_t asset_flags, cattle, goats, pigs, poultry, land_m2;
    int64_t desil, percentile;
    double lat, lon; /* NAN when unknown */
} pd_prelist_household;

typedef struct pd_prelist_member {
    const char *id;           /* household id + 2-digit member_no */
    const char *household_id;
    int64_t rev;
    int64_t member_no;        /* 1 head, 2 spouse, 3 first child, … */
    const char *name;
    const char *nik;          /* 16 digits (placeholders 99999999999999xx allowed), or NULL */
    const char *kk;
    int64_t sex;              /* 1 male, 2 female */
    const char *birth_place;
    const char *birth_date;   /* YYYY-MM-DD */
    int64_t relationship, marital, disability, chronic_illness, schooling, work, programmes;
} pd_prelist_member;

/* Where records go: the generator and the reader call these in package order (every shape, then
 * each household followed by its members). A callback returns PD_OK to go on, or a PD_ERR_* code
 * (with err filled) to stop; that code is then returned by the function that called it. A NULL
 * callback skips that kind of record. */
typedef struct pd_prelist_handler {
    int (*shape)(void *ud, const pd_prelist_shape *s, pd_error *err);
    int (*household)(void *ud, const pd_prelist_household *h, pd_error *err);
    int (*member)(void *ud, const pd_prelist_member *m, pd_error *err);
    void *ud;
} pd_prelist_handler;

/* ---- Limits ------------------------------------------------------------------------------ */

#define PD_PRELIST_MAGIC "PDPL"
#define PD_PRELIST_VERSION 1
#define PD_PRELIST_HEADER_BYTES 144
#define PD_PRELIST_PREFIX_BYTES (PD_PRELIST_HEADER_BYTES + PD_SIG_BYTES) /* header + signature */
#define PD_PRELIST_AREA_ID_MAX 32

#define PD_PRELIST_MAX_COMPRESSED (256u * 1024 * 1024) /* bytes of compressed payload */
#define PD_PRELIST_MAX_INFLATED (1024u * 1024 * 1024)  /* bytes of payload once inflated */
#define PD_PRELIST_MAX_RATIO 40    /* inflated ≤ compressed × ratio + PD_PRELIST_RATIO_SLACK */
#define PD_PRELIST_RATIO_SLACK 65536
#define PD_PRELIST_MAX_LINE (256u * 1024) /* one record, in bytes */
#define PD_PRELIST_MAX_TEXT 256           /* bytes of a name, address, SLS, place */
#define PD_PRELIST_MAX_SHAPE (200u * 1024) /* bytes of a shape ring */
#define PD_PRELIST_MAX_SHAPES 100000
#define PD_PRELIST_MAX_HOUSEHOLDS 2000000u
#define PD_PRELIST_MAX_MEMBERS 20000000u
#define PD_PRELIST_MAX_MEMBERS_PER_HH 99 /* member numbers have two digits */

/* Default issued_at of generated packages (2025-01-01T00:00:00Z): output is deterministic unless
 * the caller passes the time. */
#define PD_PRELIST_DEFAULT_ISSUED_AT INT64_C(1735689600000)

/* ---- Packages: verify and read ----------------------------------------------------------- */

/* What a package's header says, plus its identity. */
typedef struct pd_prelist_info {
    uint16_t version;
    uint8_t issuer_pk[PD_PUBKEY_BYTES];
    int64_t issued_at;
    char area[PD_PRELIST_AREA_ID_MAX + 1];
    uint32_t shapes, households, members;
    uint64_t compressed_size, inflated_size;
    uint8_t payload_hash[PD_HASH_BYTES];
    uint8_t id[PD_HASH_BYTES]; /* BLAKE2b-256 of header + signature: the package's identity */
} pd_prelist_info;

/* Read the header of a package file WITHOUT authenticating it (for `show` before the issuer key is
 * known, or to pick the key to pin). Never trust what it returns for anything else. */
int pd_prelist_peek(const char *path, pd_prelist_info *info, pd_error *err);

/* Verify a package completely against the pinned issuer public key (required): signature, hash,
 * every record and the counts. info (may be NULL) gets the header. PD_ERR_SIGNATURE for another
 * issuer or a bad signature, PD_ERR_CORRUPT for a damaged or inconsistent package, PD_ERR_TOOBIG
 * for a size over a limit, PD_ERR_INVALID for a record that fails validation, PD_ERR_VERSION
 * for another format version, PD_ERR_IO when the file cannot be read. */
int pd_prelist_verify(const char *path, const uint8_t pinned_pk[PD_PUBKEY_BYTES],
                      pd_prelist_info *info, pd_error *err);
int pd_prelist_verify_mem(const uint8_t *buf, size_t len, const uint8_t pinned_pk[PD_PUBKEY_BYTES],
                          pd_prelist_info *info, pd_error *err);

/* Verify as above and hand every record to handler (may be NULL), streaming. A record reaches the
 * handler only after the signature and hash held and the record itself validated; a failure
 * later in the payload still fails the call, so a caller that stores records must do so in a
 * transaction it can roll back. */
int pd_prelist_read(const char *path, const uint8_t pinned_pk[PD_PUBKEY_BYTES],
                    const pd_prelist_handler *handler, pd_prelist_info *info, pd_error *err);
int pd_prelist_read_mem(const uint8_t *buf, size_t len, const uint8_t pinned_pk[PD_PUBKEY_BYTES],
                        const pd_prelist_handler *handler, pd_prelist_info *info, pd_error *err);

/* ---- Packages: write --------------------------------------------------------------------- */

/* A package being written: records are validated, deflated and hashed as they come, into
 * "<path>.tmp"; pd_prelist_writer_finish writes the header, signs it, syncs the file and renames
 * it to path. The issuer's secret key is copied and wiped when the writer is freed. */
typedef struct pd_prelist_writer pd_prelist_writer;

/* area is the package's area id: a real area code, optionally followed by ":<part>" (printable
 * ASCII, at most PD_PRELIST_AREA_ID_MAX bytes in all); every household must lie in that area. */
int pd_prelist_writer_open(pd_prelist_writer **out, const char *path,
                           const uint8_t issuer_sk[PD_SECKEY_BYTES], const char *area,
                           int64_t issued_at, pd_error *err);

/* Add records, in package order. PD_ERR_INVALID for a record that fails validation or comes out
 * of order (the writer is then unusable: free it). */
int pd_prelist_writer_shape(pd_prelist_writer *w, const pd_prelist_shape *s, pd_error *err);
int pd_prelist_writer_household(pd_prelist_writer *w, const pd_prelist_household *h,
                                pd_error *err);
int pd_prelist_writer_member(pd_prelist_writer *w, const pd_prelist_member *m, pd_error *err);

/* Finish, sign, sync and rename into place; info (may be NULL) gets the header written. */
int pd_prelist_writer_finish(pd_prelist_writer *w, pd_prelist_info *info, pd_error *err);

/* Free a writer; an unfinished package's temporary file is removed. Accepts NULL. */
void pd_prelist_writer_free(pd_prelist_writer *w);

/* A handler whose callbacks add each record to the writer given as ud (to copy or filter a
 * package: pd_prelist_read into pd_prelist_writer_handler(w)). */
pd_prelist_handler pd_prelist_writer_handler(pd_prelist_writer *w);

/* ---- Generator --------------------------------------------------------------------------- */

typedef struct pd_prelist_gen_options {
    uint64_t seed;       /* the same seed, area and options give the same records */
    uint32_t households; /* in all; 0: about 150 per desa */
    int64_t issued_at;   /* Unix ms; the reference date for ages. 0: PD_PRELIST_DEFAULT_ISSUED_AT */
    int64_t rev;         /* revision given to every record; 0: 1 */
} pd_prelist_gen_options;

/* Generate a realistic synthetic prelist for a real kecamatan or desa and hand it to handler:
 * first one shape per desa (its box from pd_area_box_of), then households with their members.
 * Households have 1–10 members (mean about 3.6): head, spouse, children born when their mother
 * was 17–45, sometimes parents, children-in-law and grandchildren; Indonesian names in the
 * region's patterns (Javanese and Sundanese names, Batak marga, "bin/binti", Balinese birth-order
 * names, family names of the east); NIKs whose first 6 digits are the kecamatan (sometimes a
 * neighbouring one) and whose date part is the birth date (+40 on the day for women) with a serial
 * unique per (kecamatan, date), a few placeholders; KK numbers; addresses, SLS "RT 001 / RW 002",
 * housing, utilities, assets, desil and percentile, and a GPS point inside the desa's box.
 * PD_ERR_INVALID if area is not a real kecamatan or desa or households is over
 * PD_PRELIST_MAX_HOUSEHOLDS. */
int pd_prelist_generate(const char *area, const pd_prelist_gen_options *opt,
                        const pd_prelist_handler *handler, pd_error *err);

/* Generate straight into a signed package file (area id = area). info may be NULL. */
int pd_prelist_generate_file(const char *path, const char *area, const pd_prelist_gen_options *opt,
                             const uint8_t issuer_sk[PD_SECKEY_BYTES], pd_prelist_info *info,
                             pd_error *err);

/* ---- Import into a device store ---------------------------------------------------------- */

typedef struct pd_prelist_import_stats {
    bool already;             /* this very package was imported before: nothing was done */
    bool pinned;              /* the issuer key was pinned by this import */
    uint32_t shapes;
    uint32_t households_added, households_updated, households_unchanged;
    uint32_t members_added, members_updated, members_unchanged;
    uint32_t fields_kept;     /* local unsynced values kept; the server's went to server_diff */
} pd_prelist_import_stats;

/* The issuer (server) key pinned in the store (keyring row with role 'server'). PD_ERR_NOTFOUND
 * when none is. */
int pd_prelist_pinned_issuer(pd_store *store, uint8_t pk[PD_PUBKEY_BYTES]);

/* Verify the package against the issuer key and load it in ONE transaction.
 *   issuer_pk: NULL uses the key pinned in the store (PD_ERR_NOTFOUND if none); otherwise it must
 *   equal the pinned key (PD_ERR_DENIED if another is pinned), or, when none is pinned yet, it is
 *   pinned (keyring, role 'server') by this import.
 * The same package again is a no-op (stats->already). A package for an area whose imported
 * package was issued later or at the same time is refused (PD_ERR_STATE). Households and
 * members are added, or updated when their rev rose, except fields with a local change not yet
 * acknowledged by the server (op rows not in an acknowledged batch): the local value stays and the
 * server's goes to table server_diff for sync to resolve. household_geo follows lat/lon (unless a
 * visit has a fix). Any failure rolls everything back and is set on the store's handle. */
int pd_prelist_import(pd_store *store, const char *path, const uint8_t issuer_pk[PD_PUBKEY_BYTES],
                      pd_prelist_import_stats *stats);
/* The same for a package held in memory (len bytes at buf, kept by the caller): the sync client
 * imports a download it kept inside the encrypted store, so the package's names and NIKs never
 * lie in a plain file. */
int pd_prelist_import_mem(pd_store *store, const uint8_t *buf, size_t len,
                          const uint8_t issuer_pk[PD_PUBKEY_BYTES], pd_prelist_import_stats *stats);

/* ---- Split among enumerators ------------------------------------------------------------- */

/* One SLS (RT/RW) of one desa: the unit an enumerator is given whole. */
typedef struct pd_prelist_unit {
    char desa[PD_AREA_CODE_MAX];
    char sls[PD_PRELIST_MAX_TEXT + 1];
    uint32_t households, members;
    unsigned part; /* 0-based index of the enumerator it went to */
} pd_prelist_unit;

typedef struct pd_prelist_part {
    char area[PD_PRELIST_AREA_ID_MAX + 1]; /* "<area>:e01" */
    char *path;                            /* the package written */
    uint32_t shapes, households, members, units;
} pd_prelist_part;

typedef struct pd_prelist_split {
    unsigned nparts;
    pd_prelist_part *parts;
    size_t nunits;
    pd_prelist_unit *units; /* largest first, as assigned */
} pd_prelist_split;

#define PD_PRELIST_MAX_PARTS 256

/* Split a package among n enumerators (1..PD_PRELIST_MAX_PARTS): whole SLS units, greedy largest
 * first, each to the enumerator with the fewest households so far. Writes out_dir/<area>-eNN.pdpl
 * (area id "<area>:eNN", ':' in the area becoming '-' in the file name), each signed by issuer_sk,
 * issued at issued_at (0: the input's), holding the shapes of its desa. The input is verified
 * against the public half of issuer_sk. PD_ERR_INVALID when there are fewer units than
 * enumerators; on any failure no part is left behind. *out (free with pd_prelist_split_free)
 * describes the result. */
int pd_prelist_split_file(const char *path, unsigned n, const char *out_dir,
                          const uint8_t issuer_sk[PD_SECKEY_BYTES], int64_t issued_at,
                          pd_prelist_split **out, pd_error *err);
void pd_prelist_split_free(pd_prelist_split *s);

#ifdef __cplusplus
}
#endif
#endif /* PD_PRELIST_H */

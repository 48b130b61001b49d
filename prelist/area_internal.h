/*
 * area_internal.h — inside the prelist layer: the embedded area CSVs (area_data.c) and the
 * index over them (area.c) in the compact form the generator and the package reader use.
 */
#ifndef PD_AREA_INTERNAL_H
#define PD_AREA_INTERNAL_H

#include "pd_prelist.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PD_AREA_HIDDEN __attribute__((visibility("hidden")))

/* The embedded CSV files (area_data.c): [x, x_end), then a NUL byte. */
extern const char pd_area_csv_provinces[] PD_AREA_HIDDEN, pd_area_csv_provinces_end[] PD_AREA_HIDDEN;
extern const char pd_area_csv_regencies[] PD_AREA_HIDDEN, pd_area_csv_regencies_end[] PD_AREA_HIDDEN;
extern const char pd_area_csv_districts[] PD_AREA_HIDDEN, pd_area_csv_districts_end[] PD_AREA_HIDDEN;
extern const char pd_area_csv_villages[] PD_AREA_HIDDEN, pd_area_csv_villages_end[] PD_AREA_HIDDEN;

/* An area as a key: its code's digits as one number ("32.73.01" → 327301) and its level. Keys of
 * one level sort like their codes. */
typedef struct pd_area_key {
    uint64_t key;
    pd_area_level level;
} pd_area_key;

/* Parse a dotted code strictly. false if malformed (it is not looked up). */
bool pd_area_parse(const char *code, pd_area_key *out);

/* Parse the dotted code in s[0..n) (not NUL-terminated). */
bool pd_area_parse_n(const char *s, size_t n, pd_area_key *out);

/* Format a key as a dotted code. */
void pd_area_format(pd_area_key k, char out[PD_AREA_CODE_MAX]);

/* Index of a key in its level's table, or -1 if it is not there (or the index failed to build).
 * The tables are in code order. */
long pd_area_index(pd_area_key k);

/* Number of areas of a level, and the i-th one (0 ≤ i < count) in code order. */
size_t pd_area_level_count(pd_area_level level);
pd_area_key pd_area_at(pd_area_level level, size_t i, const char **name);

/* The range [*first, *first + *n) of level+1 indexes that are children of k. */
void pd_area_child_range(pd_area_key k, size_t *first, size_t *n);

/* The parent of a key (its code's prefix one level up); a province is its own parent. */
pd_area_key pd_area_parent(pd_area_key k);

/* Is child (at any deeper or equal level) inside area? */
bool pd_area_contains(pd_area_key area, pd_area_key child);

/* The synthetic box of an area key (see pd_area_box_of); false if the key is not in the list. */
bool pd_area_box_key(pd_area_key k, pd_area_box *out);

#endif /* PD_AREA_INTERNAL_H */

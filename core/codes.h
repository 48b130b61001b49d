/*
 * codes.h — the integer codes of the schema's categorical fields, with their labels.
 *
 * The device schema (schema/device/001_init.sql) stores every categorical answer of the DTKS /
 * PBDT questionnaire as a small integer. This header names those integers; core/codes.c holds
 * one table per field (value → Indonesian label, as on the form) used by validation (a value not
 * in the table is refused), by the CLI to print labels, and by the prelist generator.
 *
 * Bit-set fields (household.asset_flags, member.programmes) are sums of the PD_ASSET_* and
 * PD_PROG_* bits; a value with a bit outside the known mask is refused.
 */
#ifndef PD_CODES_H
#define PD_CODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- member ------------------------------------------------------------------------------- */

enum pd_sex { PD_SEX_MALE = 1, PD_SEX_FEMALE = 2 };

enum pd_relationship {
    PD_REL_HEAD = 1,
    PD_REL_SPOUSE = 2,
    PD_REL_CHILD = 3,
    PD_REL_CHILD_IN_LAW = 4,
    PD_REL_GRANDCHILD = 5,
    PD_REL_PARENT = 6,
    PD_REL_PARENT_IN_LAW = 7,
    PD_REL_HELP = 8,
    PD_REL_OTHER = 9
};

enum pd_marital {
    PD_MARITAL_SINGLE = 1,
    PD_MARITAL_MARRIED = 2,
    PD_MARITAL_DIVORCED = 3,
    PD_MARITAL_WIDOWED = 4
};

/* disability: 0 none, 1..12 as PBDT "jenis cacat"; chronic_illness: 0 none, 1..9 (PBDT). */
#define PD_DISABILITY_NONE 0
#define PD_ILLNESS_NONE 0

/* schooling: highest level attended. */
enum pd_schooling {
    PD_SCHOOL_NONE = 1,
    PD_SCHOOL_SD = 2,
    PD_SCHOOL_SMP = 3,
    PD_SCHOOL_SMA = 4,
    PD_SCHOOL_DIPLOMA = 5,
    PD_SCHOOL_S1 = 6,
    PD_SCHOOL_S2S3 = 7
};

/* work: main field of work (lapangan usaha), 1 = not working. */
enum pd_work {
    PD_WORK_NONE = 1,
    PD_WORK_FARMING = 2,
    PD_WORK_FISHERY = 3,
    PD_WORK_TRADE = 4,
    PD_WORK_INDUSTRY = 5,
    PD_WORK_CONSTRUCTION = 6,
    PD_WORK_SERVICES = 7,
    PD_WORK_CIVIL_SERVANT = 8,
    PD_WORK_OTHER = 9
};

/* member.programmes bits */
#define PD_PROG_PKH 0x1
#define PD_PROG_BPNT 0x2
#define PD_PROG_KIS_PBI 0x4
#define PD_PROG_KIP 0x8
#define PD_PROG_MASK 0xF

/* ---- household ---------------------------------------------------------------------------- */

enum pd_tenure {
    PD_TENURE_OWN = 1,
    PD_TENURE_RENT = 2,
    PD_TENURE_FREE = 3,
    PD_TENURE_OFFICIAL = 4,
    PD_TENURE_OTHER = 5
};

/* floor_material 1..10, wall_material 1..7, roof_material 1..10, water_source 1..12,
 * lighting 1..3, cooking_fuel 1..9, toilet 1..4: see the label tables in codes.c. */
enum pd_lighting { PD_LIGHT_PLN = 1, PD_LIGHT_NON_PLN = 2, PD_LIGHT_NONE = 3 };

/* household.asset_flags bits */
#define PD_ASSET_GAS_CYLINDER 0x0001 /* gas cylinder of 5.5 kg or more */
#define PD_ASSET_FRIDGE 0x0002
#define PD_ASSET_AC 0x0004
#define PD_ASSET_WATER_HEATER 0x0008
#define PD_ASSET_TV 0x0010
#define PD_ASSET_GOLD 0x0020 /* gold or jewellery of 10 g or more */
#define PD_ASSET_COMPUTER 0x0040
#define PD_ASSET_BICYCLE 0x0080
#define PD_ASSET_MOTORBIKE 0x0100
#define PD_ASSET_CAR 0x0200
#define PD_ASSET_BOAT 0x0400
#define PD_ASSET_MOTORBOAT 0x0800
#define PD_ASSET_SMARTPHONE 0x1000
#define PD_ASSET_LANDLINE 0x2000
#define PD_ASSET_MASK 0x3FFF

/* power_va is the meter's rating in VA (0 = no meter of its own), not a code. */
#define PD_POWER_VA_MAX 200000

/* ---- lookups ------------------------------------------------------------------------------ */

typedef struct pd_code {
    int value;
    const char *label;
} pd_code;

/* The codes of a categorical field ("sex", "relationship", "marital", "disability",
 * "chronic_illness", "schooling", "work", "tenure", "floor_material", "wall_material",
 * "roof_material", "water_source", "lighting", "cooking_fuel", "toilet"), or NULL for a field
 * that has no code table. *count gets the number of entries. */
const pd_code *pd_codes_of(const char *field, size_t *count);

/* Label of a value ("perempuan" for sex 2), or NULL if the field has no such code. */
const char *pd_code_label(const char *field, int64_t value);

/* Is value one of the field's codes? (false for a field without a table) */
bool pd_code_valid(const char *field, int64_t value);

/* Label of a bit of asset_flags or programmes (field "asset_flags" / "programmes"); NULL if not a
 * known single bit. */
const char *pd_code_bit_label(const char *field, int64_t bit);

#endif /* PD_CODES_H */

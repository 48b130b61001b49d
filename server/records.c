/*
 * records.c — the column tables of the server's records (see records.h). Kept in step with
 * schema/server/001_init.sql (test_server_storage checks every column here exists there).
 */
#include "records.h"

#include "internal.h"

#include <string.h>

#define I PD_VAL_INT
#define R PD_VAL_REAL
#define T PD_VAL_TEXT
#define B PD_VAL_BLOB

/* name, type, nullable, settable, sent to devices */
static const pd_column household_cols[] = {
    {"id", T, false, false, true},
    {"rev", I, false, false, true},
    {"source", T, false, false, true},
    {"prov", T, false, false, true},
    {"kab", T, false, false, true},
    {"kec", T, false, false, true},
    {"desa", T, false, false, true},
    {"sls", T, false, true, true},
    {"address", T, false, true, true},
    {"head_name", T, false, true, true},
    {"kk", T, true, true, true},
    {"member_count", I, false, true, true},
    {"tenure", I, true, true, true},
    {"floor_area", I, true, true, true},
    {"floor_material", I, true, true, true},
    {"wall_material", I, true, true, true},
    {"roof_material", I, true, true, true},
    {"rooms", I, true, true, true},
    {"water_source", I, true, true, true},
    {"lighting", I, true, true, true},
    {"power_va", I, true, true, true},
    {"cooking_fuel", I, true, true, true},
    {"toilet", I, true, true, true},
    {"asset_flags", I, false, true, true},
    {"cattle", I, false, true, true},
    {"goats", I, false, true, true},
    {"pigs", I, false, true, true},
    {"poultry", I, false, true, true},
    {"land_m2", I, false, true, true},
    {"desil", I, true, true, true},
    {"percentile", I, true, true, true},
    {"lat", R, true, true, true},
    {"lon", R, true, true, true},
    {"status", T, true, true, true},
};

static const pd_column member_cols[] = {
    {"id", T, false, false, true},         {"household_id", T, false, false, true},
    {"rev", I, false, false, true},        {"member_no", I, false, false, true},
    {"name", T, false, true, true},        {"nik", T, true, true, true},
    {"kk", T, true, true, true},           {"sex", I, true, true, true},
    {"birth_place", T, true, true, true},  {"birth_date", T, true, true, true},
    {"relationship", I, true, true, true}, {"marital", I, true, true, true},
    {"disability", I, false, true, true},  {"chronic_illness", I, false, true, true},
    {"schooling", I, true, true, true},    {"work", I, true, true, true},
    {"programmes", I, false, true, true},  {"status", T, false, true, true},
    {"outcome", T, true, true, true},
};

static const pd_column visit_cols[] = {
    {"id", T, false, false, true},         {"household_id", T, false, false, true},
    {"rev", I, false, false, true},        {"outcome", T, false, false, true},
    {"visited_at", I, false, false, true}, {"enumerator_pk", B, true, false, true},
    {"lat", R, true, false, true},         {"lon", R, true, false, true},
    {"accuracy_m", R, true, false, true},  {"altitude_m", R, true, false, true},
    {"fix_time", I, true, false, true},    {"provider", T, true, false, true},
    {"mock", I, false, false, true},       {"notes", T, false, false, true},
    {"warnings", T, false, false, true},   {"device_id", T, false, false, false},
    {"batch_hash", B, true, false, false},
};

static const pd_column photo_cols[] = {
    {"hash", T, false, false, true},       {"household_id", T, false, false, true},
    {"visit_id", T, true, false, true},    {"kind", T, false, false, true},
    {"size", I, false, false, true},       {"taken_at", I, false, false, true},
    {"rev", I, false, false, true},        {"device_id", T, false, false, false},
    {"batch_hash", B, true, false, false},
};

#undef I
#undef R
#undef T
#undef B

static const struct {
    const char *name;
    const pd_column *cols;
    size_t n;
} entities[PD_ENT__COUNT] = {
    [PD_ENT_HOUSEHOLD] = {"household", household_cols, PD_ARRAY_LEN(household_cols)},
    [PD_ENT_MEMBER] = {"member", member_cols, PD_ARRAY_LEN(member_cols)},
    [PD_ENT_VISIT] = {"visit", visit_cols, PD_ARRAY_LEN(visit_cols)},
    [PD_ENT_PHOTO] = {"photo", photo_cols, PD_ARRAY_LEN(photo_cols)},
};

const char *pd_entity_name(pd_entity e)
{
    return (unsigned)e < PD_ENT__COUNT ? entities[e].name : NULL;
}

int pd_entity_parse(const char *name)
{
    if (!name)
        return -1;
    for (int e = 0; e < PD_ENT__COUNT; e++)
        if (!strcmp(entities[e].name, name))
            return e;
    return -1;
}

const pd_column *pd_entity_columns(pd_entity e, size_t *n)
{
    if ((unsigned)e >= PD_ENT__COUNT) {
        *n = 0;
        return NULL;
    }
    *n = entities[e].n;
    return entities[e].cols;
}

int pd_entity_column(pd_entity e, const char *name)
{
    size_t n;
    const pd_column *c = pd_entity_columns(e, &n);
    if (!name)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!strcmp(c[i].name, name))
            return (int)i;
    return -1;
}

bool pd_column_accepts(const pd_column *c, const pd_value *v)
{
    if (v->type == PD_VAL_NULL)
        return c->nullable;
    if (c->type == PD_VAL_REAL)
        return v->type == PD_VAL_REAL || v->type == PD_VAL_INT;
    return v->type == c->type;
}

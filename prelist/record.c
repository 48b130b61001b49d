/*
 * record.c — prelist records: the one table per kind that names each field (its JSON key, which
 * is also its column in schema/device/001_init.sql), its type and its check; decoding one JSON
 * line into a record, validating a record, encoding it back, and the order every package follows.
 *
 * Writers and readers both validate with the same functions, so a package pendata writes is
 * always one it can read, and a package it reads holds nothing a writer would have refused.
 * Decoding is strict: UTF-8 checked before parsing, no "\u0000", unknown or repeated keys
 * refused, integers must be integral and within 2^53, every string and number range-checked.
 */
#include "prelist_internal.h"

#include "codes.h"
#include "validate.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- field tables ------------------------------------------------------------------------- */

enum ftype { FT_TEXT, FT_INT, FT_REAL };

enum fcheck {
    FC_ID,       /* 1..64 of [0-9A-Za-z._-] */
    FC_TEXT,     /* a..b bytes of UTF-8 without control characters */
    FC_DIGITS16, /* exactly 16 ASCII digits */
    FC_AREA,     /* a real area code of level a */
    FC_DATE,     /* YYYY-MM-DD, a real date, 1900..2100 */
    FC_SHAPE,    /* closed ring "lat lon,lat lon,…" */
    FC_CODE,     /* one of the field's codes (codes.h) */
    FC_RANGE,    /* integer a..b, or real a..b */
    FC_MASK      /* integer ≥ 0 with no bit outside b */
};

typedef struct field {
    const char *name;
    uint8_t type;
    uint8_t check;
    bool required;
    size_t off;
    int64_t a, b;
} field;

#define MAX_ID 64
#define INT53 INT64_C(9007199254740992)
#define MAX_RING_POINTS 10000

#define H(f) offsetof(pd_prelist_household, f)
static const field hh_fields[] = {
    {"id", FT_TEXT, FC_ID, true, H(id), 0, 0},
    {"rev", FT_INT, FC_RANGE, true, H(rev), 0, INT53},
    {"prov", FT_TEXT, FC_AREA, true, H(prov), PD_AREA_PROVINCE, 0},
    {"kab", FT_TEXT, FC_AREA, true, H(kab), PD_AREA_REGENCY, 0},
    {"kec", FT_TEXT, FC_AREA, true, H(kec), PD_AREA_KECAMATAN, 0},
    {"desa", FT_TEXT, FC_AREA, true, H(desa), PD_AREA_DESA, 0},
    {"sls", FT_TEXT, FC_TEXT, true, H(sls), 0, PD_PRELIST_MAX_TEXT},
    {"address", FT_TEXT, FC_TEXT, true, H(address), 0, PD_PRELIST_MAX_TEXT},
    {"head_name", FT_TEXT, FC_TEXT, true, H(head_name), 1, PD_PRELIST_MAX_TEXT},
    {"kk", FT_TEXT, FC_DIGITS16, false, H(kk), 0, 0},
    {"member_count", FT_INT, FC_RANGE, true, H(member_count), 1, PD_PRELIST_MAX_MEMBERS_PER_HH},
    {"tenure", FT_INT, FC_CODE, false, H(tenure), 0, 0},
    {"floor_area", FT_INT, FC_RANGE, false, H(floor_area), 1, 100000},
    {"floor_material", FT_INT, FC_CODE, false, H(floor_material), 0, 0},
    {"wall_material", FT_INT, FC_CODE, false, H(wall_material), 0, 0},
    {"roof_material", FT_INT, FC_CODE, false, H(roof_material), 0, 0},
    {"rooms", FT_INT, FC_RANGE, false, H(rooms), 0, 100},
    {"water_source", FT_INT, FC_CODE, false, H(water_source), 0, 0},
    {"lighting", FT_INT, FC_CODE, false, H(lighting), 0, 0},
    {"power_va", FT_INT, FC_RANGE, false, H(power_va), 0, PD_POWER_VA_MAX},
    {"cooking_fuel", FT_INT, FC_CODE, false, H(cooking_fuel), 0, 0},
    {"toilet", FT_INT, FC_CODE, false, H(toilet), 0, 0},
    {"asset_flags", FT_INT, FC_MASK, true, H(asset_flags), 0, PD_ASSET_MASK},
    {"cattle", FT_INT, FC_RANGE, true, H(cattle), 0, 100000},
    {"goats", FT_INT, FC_RANGE, true, H(goats), 0, 100000},
    {"pigs", FT_INT, FC_RANGE, true, H(pigs), 0, 100000},
    {"poultry", FT_INT, FC_RANGE, true, H(poultry), 0, 1000000},
    {"land_m2", FT_INT, FC_RANGE, true, H(land_m2), 0, INT64_C(100000000000)},
    {"desil", FT_INT, FC_RANGE, false, H(desil), 1, 10},
    {"percentile", FT_INT, FC_RANGE, false, H(percentile), 1, 100},
    {"lat", FT_REAL, FC_RANGE, false, H(lat), -90, 90},
    {"lon", FT_REAL, FC_RANGE, false, H(lon), -180, 180},
};
#undef H

#define M(f) offsetof(pd_prelist_member, f)
static const field member_fields[] = {
    {"id", FT_TEXT, FC_ID, true, M(id), 0, 0},
    {"household_id", FT_TEXT, FC_ID, true, M(household_id), 0, 0},
    {"rev", FT_INT, FC_RANGE, true, M(rev), 0, INT53},
    {"member_no", FT_INT, FC_RANGE, true, M(member_no), 1, PD_PRELIST_MAX_MEMBERS_PER_HH},
    {"name", FT_TEXT, FC_TEXT, true, M(name), 1, PD_PRELIST_MAX_TEXT},
    {"nik", FT_TEXT, FC_DIGITS16, false, M(nik), 0, 0},
    {"kk", FT_TEXT, FC_DIGITS16, false, M(kk), 0, 0},
    {"sex", FT_INT, FC_CODE, false, M(sex), 0, 0},
    {"birth_place", FT_TEXT, FC_TEXT, false, M(birth_place), 0, PD_PRELIST_MAX_TEXT},
    {"birth_date", FT_TEXT, FC_DATE, false, M(birth_date), 0, 0},
    {"relationship", FT_INT, FC_CODE, false, M(relationship), 0, 0},
    {"marital", FT_INT, FC_CODE, false, M(marital), 0, 0},
    {"disability", FT_INT, FC_CODE, true, M(disability), 0, 0},
    {"chronic_illness", FT_INT, FC_CODE, true, M(chronic_illness), 0, 0},
    {"schooling", FT_INT, FC_CODE, false, M(schooling), 0, 0},
    {"work", FT_INT, FC_CODE, false, M(work), 0, 0},
    {"programmes", FT_INT, FC_MASK, true, M(programmes), 0, PD_PROG_MASK},
};
#undef M

#define S(f) offsetof(pd_prelist_shape, f)
static const field shape_fields[] = {
    {"code", FT_TEXT, FC_AREA, true, S(code), 0, 0}, /* kecamatan or desa: checked below */
    {"name", FT_TEXT, FC_TEXT, true, S(name), 1, PD_PRELIST_MAX_TEXT},
    {"rev", FT_INT, FC_RANGE, true, S(rev), 0, INT53},
    {"shape", FT_TEXT, FC_SHAPE, true, S(shape), 0, 0},
};
#undef S

typedef struct kind_desc {
    pd_rec_kind kind;
    const char *type; /* the "type" of its lines */
    const char *noun; /* in messages */
    const field *fields;
    size_t nfields;
} kind_desc;

static const kind_desc kinds[] = {
    {PD_REC_SHAPE, "area", "area", shape_fields, PD_ARRAY_LEN(shape_fields)},
    {PD_REC_HOUSEHOLD, "household", "household", hh_fields, PD_ARRAY_LEN(hh_fields)},
    {PD_REC_MEMBER, "member", "member", member_fields, PD_ARRAY_LEN(member_fields)},
};

_Static_assert(PD_ARRAY_LEN(hh_fields) <= 64 && PD_ARRAY_LEN(member_fields) <= 64,
               "the seen-set of pd_rec_decode is a 64-bit mask");

static const char **text_at(const void *rec, const field *f)
{
    return (const char **)((const char *)rec + f->off);
}
static int64_t *int_at(const void *rec, const field *f)
{
    return (int64_t *)((const char *)rec + f->off);
}
static double *real_at(const void *rec, const field *f)
{
    return (double *)((const char *)rec + f->off);
}

/* ---- small parsers --------------------------------------------------------------- */

/* YYYY-MM-DD, a real date, 1900..2100 */
static bool date_ok(const char *s)
{
    int y, m, d;
    return pd_date_parse(s, &y, &m, &d) && y >= 1900 && y <= 2100;
}

/* A decimal number "[-]d+[.d+]" at *p; advances *p. Locale-independent. */
static bool parse_decimal(const char **p, double *out)
{
    const char *s = *p;
    bool neg = false;
    if (*s == '-') {
        neg = true;
        s++;
    }
    if (*s < '0' || *s > '9')
        return false;
    double v = 0;
    int digits = 0;
    while (*s >= '0' && *s <= '9') {
        v = v * 10 + (*s++ - '0');
        if (++digits > 3)
            return false; /* degrees have at most 3 integer digits */
    }
    if (*s == '.') {
        s++;
        if (*s < '0' || *s > '9')
            return false;
        double scale = 0.1;
        int frac = 0;
        while (*s >= '0' && *s <= '9') {
            v += (*s++ - '0') * scale;
            scale /= 10;
            if (++frac > 12)
                return false;
        }
    }
    *out = neg ? -v : v;
    *p = s;
    return true;
}

/* "lat lon,lat lon,…": at least 4 points, closed, every point in range. */
static bool ring_ok(const char *s, size_t *points)
{
    double first_lat = 0, first_lon = 0, lat = 0, lon = 0;
    size_t n = 0;
    const char *p = s;
    for (;;) {
        if (!parse_decimal(&p, &lat) || *p++ != ' ' || !parse_decimal(&p, &lon))
            return false;
        if (lat < -90 || lat > 90 || lon < -180 || lon > 180)
            return false;
        if (n == 0) {
            first_lat = lat;
            first_lon = lon;
        }
        if (++n > MAX_RING_POINTS)
            return false;
        if (*p == '\0')
            break;
        if (*p++ != ',')
            return false;
    }
    *points = n;
    return n >= 4 && lat == first_lat && lon == first_lon;
}

/* ---- validation ---------------------------------------------------------------------------- */

static bool id_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= MAX_ID || !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
                             (c >= 'a' && c <= 'z') || c == '.' || c == '_' || c == '-'))
            return false;
    }
    return n > 0;
}

static bool text_ok(const char *s, size_t *len)
{
    size_t n = strlen(s);
    *len = n;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return pd_utf8_valid((const uint8_t *)s, n);
}

static bool digits16(const char *s)
{
    for (int i = 0; i < 16; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return s[16] == '\0';
}

/* The code tables of codes.h, looked up once per field (pd_codes_of compares names). */
static struct {
    const pd_code *codes;
    size_t n;
} code_cache[3][64];
static pthread_once_t code_once = PTHREAD_ONCE_INIT;

static void code_cache_fill(void)
{
    for (size_t k = 0; k < PD_ARRAY_LEN(kinds); k++)
        for (size_t i = 0; i < kinds[k].nfields && i < 64; i++)
            if (kinds[k].fields[i].check == FC_CODE)
                code_cache[k][i].codes = pd_codes_of(kinds[k].fields[i].name, &code_cache[k][i].n);
}

static bool code_ok(const kind_desc *k, const field *f, int64_t v)
{
    pthread_once(&code_once, code_cache_fill);
    size_t ki = (size_t)(k - kinds), fi = (size_t)(f - k->fields);
    for (size_t i = 0; i < code_cache[ki][fi].n; i++)
        if (code_cache[ki][fi].codes[i].value == v)
            return true;
    return false;
}

/* Check one field's value (present) against its table entry. */
static int field_check(const kind_desc *k, const char *who, const void *rec, const field *f,
                       pd_error *err)
{
    if (f->type == FT_TEXT) {
        const char *v = *text_at(rec, f);
        size_t len;
        switch (f->check) {
        case FC_ID:
            if (!id_ok(v))
                return pd_error_set(err, PD_ERR_INVALID,
                                    "%s %s: %s must be 1 to %d of 0-9 A-Z a-z . _ -", k->noun,
                                    who, f->name, MAX_ID);
            return PD_OK;
        case FC_TEXT:
            if (strlen(v) > (size_t)f->b)
                return pd_error_set(err, PD_ERR_TOOBIG, "%s %s: %s is longer than %d bytes",
                                    k->noun, who, f->name, (int)f->b);
            if (!text_ok(v, &len))
                return pd_error_set(err, PD_ERR_INVALID,
                                    "%s %s: %s holds invalid UTF-8 or a control character",
                                    k->noun, who, f->name);
            if (len < (size_t)f->a)
                return pd_error_set(err, PD_ERR_INVALID, "%s %s: %s is empty", k->noun, who,
                                    f->name);
            return PD_OK;
        case FC_DIGITS16:
            if (!digits16(v))
                return pd_error_set(err, PD_ERR_INVALID, "%s %s: %s must be 16 digits", k->noun,
                                    who, f->name);
            return PD_OK;
        case FC_AREA: {
            pd_area_key key;
            if (!pd_area_parse(v, &key) || (f->a && key.level != (pd_area_level)f->a) ||
                pd_area_index(key) < 0)
                return pd_error_set(err, PD_ERR_INVALID, "%s %s: %s '%.20s' is not a real %s code",
                                    k->noun, who, f->name, v,
                                    f->a == PD_AREA_PROVINCE    ? "province"
                                    : f->a == PD_AREA_REGENCY   ? "regency"
                                    : f->a == PD_AREA_KECAMATAN ? "kecamatan"
                                    : f->a == PD_AREA_DESA      ? "desa"
                                                                : "area");
            return PD_OK;
        }
        case FC_DATE:
            if (!date_ok(v))
                return pd_error_set(err, PD_ERR_INVALID,
                                    "%s %s: %s must be a real date YYYY-MM-DD (1900-2100)",
                                    k->noun, who, f->name);
            return PD_OK;
        case FC_SHAPE: {
            size_t n = strlen(v), points;
            if (n > PD_PRELIST_MAX_SHAPE)
                return pd_error_set(err, PD_ERR_TOOBIG, "%s %s: shape is longer than %u bytes",
                                    k->noun, who, (unsigned)PD_PRELIST_MAX_SHAPE);
            if (!ring_ok(v, &points))
                return pd_error_set(err, PD_ERR_INVALID,
                                    "%s %s: shape must be a closed ring \"lat lon,lat lon,...\" "
                                    "of 4 to %d points in range",
                                    k->noun, who, MAX_RING_POINTS);
            return PD_OK;
        }
        default:
            return pd_error_set(err, PD_ERR_INTERNAL, "field %s: bad check", f->name);
        }
    }
    if (f->type == FT_REAL) {
        double v = *real_at(rec, f);
        if (!isfinite(v) || v < (double)f->a || v > (double)f->b)
            return pd_error_set(err, PD_ERR_INVALID, "%s %s: %s must be %lld..%lld", k->noun, who,
                                f->name, (long long)f->a, (long long)f->b);
        return PD_OK;
    }
    int64_t v = *int_at(rec, f);
    switch (f->check) {
    case FC_CODE:
        if (!code_ok(k, f, v))
            return pd_error_set(err, PD_ERR_INVALID, "%s %s: %s %" PRId64 " is not a known code",
                                k->noun, who, f->name, v);
        return PD_OK;
    case FC_RANGE:
        if (v < f->a || v > f->b)
            return pd_error_set(err, PD_ERR_INVALID,
                                "%s %s: %s must be %" PRId64 "..%" PRId64 ", got %" PRId64,
                                k->noun, who, f->name, f->a, f->b, v);
        return PD_OK;
    case FC_MASK:
        if (v < 0 || (v & ~f->b) != 0)
            return pd_error_set(err, PD_ERR_INVALID,
                                "%s %s: %s %" PRId64 " has a bit outside 0x%" PRIx64, k->noun,
                                who, f->name, v, (uint64_t)f->b);
        return PD_OK;
    default:
        return pd_error_set(err, PD_ERR_INTERNAL, "field %s: bad check", f->name);
    }
}

static bool is_null(const void *rec, const field *f)
{
    switch (f->type) {
    case FT_TEXT: return *text_at(rec, f) == NULL;
    case FT_INT: return *int_at(rec, f) == PD_PRELIST_NULL;
    default: return isnan(*real_at(rec, f));
    }
}

static int validate_fields(const kind_desc *k, const void *rec, const char *id, pd_error *err)
{
    /* the id is checked first so that later messages can name the record */
    const char *who = (id && id_ok(id)) ? id : "(bad id)";
    for (size_t i = 0; i < k->nfields; i++) {
        const field *f = &k->fields[i];
        if (is_null(rec, f)) {
            if (f->required)
                return pd_error_set(err, PD_ERR_INVALID, "%s %s: %s is missing", k->noun, who,
                                    f->name);
            continue;
        }
        int rc = field_check(k, who, rec, f, err);
        if (rc != PD_OK)
            return rc;
    }
    return PD_OK;
}

int pd_shape_validate(const pd_prelist_shape *s, pd_error *err)
{
    int rc = validate_fields(&kinds[0], s, s->code, err);
    if (rc != PD_OK)
        return rc;
    pd_area_key k;
    pd_area_parse(s->code, &k);
    if (k.level != PD_AREA_KECAMATAN && k.level != PD_AREA_DESA)
        return pd_error_set(err, PD_ERR_INVALID, "area %s: a shape is for a kecamatan or a desa",
                            s->code);
    return PD_OK;
}

int pd_household_validate(const pd_prelist_household *h, pd_error *err)
{
    int rc = validate_fields(&kinds[1], h, h->id, err);
    if (rc != PD_OK)
        return rc;
    pd_area_key prov, kab, kec, desa;
    pd_area_parse(h->prov, &prov);
    pd_area_parse(h->kab, &kab);
    pd_area_parse(h->kec, &kec);
    pd_area_parse(h->desa, &desa);
    if (!pd_area_contains(prov, kab) || !pd_area_contains(kab, kec) ||
        !pd_area_contains(kec, desa))
        return pd_error_set(err, PD_ERR_INVALID,
                            "household %s: prov %s, kab %s, kec %s and desa %s do not nest", h->id,
                            h->prov, h->kab, h->kec, h->desa);
    if (isnan(h->lat) != isnan(h->lon))
        return pd_error_set(err, PD_ERR_INVALID, "household %s: lat and lon come together",
                            h->id);
    return PD_OK;
}

int pd_member_validate(const pd_prelist_member *m, pd_error *err)
{
    int rc = validate_fields(&kinds[2], m, m->id, err);
    if (rc != PD_OK)
        return rc;
    char want[MAX_ID + 8];
    snprintf(want, sizeof want, "%s%02d", m->household_id, (int)m->member_no);
    if (strcmp(want, m->id) != 0)
        return pd_error_set(err, PD_ERR_INVALID,
                            "member %s: id must be the household id and the 2-digit member_no "
                            "(%s)",
                            m->id, want);
    return PD_OK;
}

/* ---- field access ------------------------------------------------------------------------ */

static const kind_desc *kind_of(pd_rec_kind kind)
{
    for (size_t i = 0; i < PD_ARRAY_LEN(kinds); i++)
        if (kinds[i].kind == kind)
            return &kinds[i];
    return NULL;
}

size_t pd_rec_nfields(pd_rec_kind kind)
{
    const kind_desc *k = kind_of(kind);
    return k ? k->nfields : 0;
}

const char *pd_rec_field_name(pd_rec_kind kind, size_t i)
{
    const kind_desc *k = kind_of(kind);
    return k && i < k->nfields ? k->fields[i].name : NULL;
}

void pd_rec_field_get(pd_rec_kind kind, const void *rec, size_t i, pd_value *out)
{
    memset(out, 0, sizeof *out);
    const kind_desc *k = kind_of(kind);
    if (!k || i >= k->nfields || is_null(rec, &k->fields[i])) {
        out->type = PD_VAL_NULL;
        return;
    }
    const field *f = &k->fields[i];
    switch (f->type) {
    case FT_TEXT:
        out->type = PD_VAL_TEXT;
        out->p = (const uint8_t *)*text_at(rec, f);
        out->len = strlen(*text_at(rec, f));
        break;
    case FT_INT:
        out->type = PD_VAL_INT;
        out->i = *int_at(rec, f);
        break;
    default:
        out->type = PD_VAL_REAL;
        out->r = *real_at(rec, f);
        break;
    }
}

/* ---- decoding ------------------------------------------------------------------------------ */

void pd_rec_clear(pd_rec *r)
{
    if (!r)
        return;
    cJSON_Delete(r->json);
    memset(r, 0, sizeof *r);
}

static void init_nulls(const kind_desc *k, void *rec)
{
    for (size_t i = 0; i < k->nfields; i++) {
        const field *f = &k->fields[i];
        switch (f->type) {
        case FT_TEXT: *text_at(rec, f) = NULL; break;
        case FT_INT: *int_at(rec, f) = PD_PRELIST_NULL; break;
        default: *real_at(rec, f) = NAN; break;
        }
    }
}

/* Does the JSON text hold the escape \u0000 (which cJSON would silently cut a string at)? */
static bool has_nul_escape(const char *s, size_t len)
{
    for (size_t i = 0; i + 5 < len; i++) {
        if (s[i] != '\\')
            continue;
        if (s[i + 1] == 'u' && s[i + 2] == '0' && s[i + 3] == '0' && s[i + 4] == '0' &&
            s[i + 5] == '0')
            return true;
        i++; /* skip the escaped character, so "\\u0000" (an escaped backslash) is not taken */
    }
    return false;
}

int pd_rec_decode(pd_rec *r, const char *line, size_t len, pd_error *err)
{
    memset(r, 0, sizeof *r);
    if (len == 0)
        return pd_error_set(err, PD_ERR_INVALID, "empty line");
    if (!pd_utf8_valid((const uint8_t *)line, len))
        return pd_error_set(err, PD_ERR_INVALID, "not valid UTF-8");
    if (memchr(line, '\0', len) || has_nul_escape(line, len))
        return pd_error_set(err, PD_ERR_INVALID, "holds a NUL character");
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(line, len, &end, false);
    if (!j) {
        if (!end) /* cJSON leaves end unset when it ran out of memory */
            return pd_error_set(err, PD_ERR_INVALID, "not a JSON object");
        return pd_error_set(err, PD_ERR_INVALID, "not valid JSON (at byte %zu)",
                            (size_t)(end - line));
    }
    r->json = j;
    int rc;
    if (end != line + len) {
        rc = pd_error_set(err, PD_ERR_INVALID, "bytes after the JSON object");
        goto fail;
    }
    if (!cJSON_IsObject(j)) {
        rc = pd_error_set(err, PD_ERR_INVALID, "not a JSON object");
        goto fail;
    }
    const cJSON *type = j->child;
    if (!type || !type->string || strcmp(type->string, "type") != 0 || !cJSON_IsString(type)) {
        rc = pd_error_set(err, PD_ERR_INVALID, "the first key must be \"type\"");
        goto fail;
    }
    const kind_desc *k = NULL;
    for (size_t i = 0; i < PD_ARRAY_LEN(kinds); i++)
        if (!strcmp(type->valuestring, kinds[i].type))
            k = &kinds[i];
    if (!k) {
        rc = pd_error_set(err, PD_ERR_INVALID, "unknown record type \"%.20s\"", type->valuestring);
        goto fail;
    }
    r->kind = k->kind;
    void *rec = &r->u;
    init_nulls(k, rec);
    uint64_t seen = 0;
    size_t next = 0; /* keys usually come in table order: try the next one first */
    for (const cJSON *c = type->next; c; c = c->next) {
        size_t fi = k->nfields;
        for (size_t tries = 0; tries < k->nfields; tries++) {
            size_t i = (next + tries) % k->nfields;
            if (!strcmp(c->string, k->fields[i].name)) {
                fi = i;
                break;
            }
        }
        if (fi == k->nfields) {
            rc = pd_error_set(err, PD_ERR_INVALID, "%s: unknown key \"%.40s\"", k->noun,
                              c->string);
            goto fail;
        }
        const field *f = &k->fields[fi];
        if (seen & (UINT64_C(1) << fi)) {
            rc = pd_error_set(err, PD_ERR_INVALID, "%s: key \"%s\" appears twice", k->noun,
                              f->name);
            goto fail;
        }
        seen |= UINT64_C(1) << fi;
        next = fi + 1;
        if (cJSON_IsNull(c))
            continue;
        if (f->type == FT_TEXT) {
            if (!cJSON_IsString(c)) {
                rc = pd_error_set(err, PD_ERR_INVALID, "%s: %s must be a string", k->noun,
                                  f->name);
                goto fail;
            }
            *text_at(rec, f) = c->valuestring;
            continue;
        }
        if (!cJSON_IsNumber(c) || !isfinite(c->valuedouble)) {
            rc = pd_error_set(err, PD_ERR_INVALID, "%s: %s must be a number", k->noun, f->name);
            goto fail;
        }
        double d = c->valuedouble;
        if (f->type == FT_REAL) {
            *real_at(rec, f) = d;
            continue;
        }
        if (d != floor(d) || d < -(double)INT53 || d > (double)INT53) {
            rc = pd_error_set(err, PD_ERR_INVALID, "%s: %s must be an integer within 2^53",
                              k->noun, f->name);
            goto fail;
        }
        *int_at(rec, f) = (int64_t)d;
    }
    switch (k->kind) {
    case PD_REC_SHAPE: rc = pd_shape_validate(&r->u.shape, err); break;
    case PD_REC_HOUSEHOLD: rc = pd_household_validate(&r->u.hh, err); break;
    default: rc = pd_member_validate(&r->u.m, err); break;
    }
    if (rc != PD_OK)
        goto fail;
    return PD_OK;
fail:
    pd_rec_clear(r);
    return rc;
}

/* ---- encoding ------------------------------------------------------------------------------ */

void pd_buf_free(pd_buf *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

static int buf_put(pd_buf *b, const char *s, size_t n)
{
    size_t need;
    if (!pd_size_add(b->len, n, &need) || (b->max && need > b->max))
        return PD_ERR_TOOBIG;
    if (need > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < need)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return PD_ERR_NOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len = need;
    return PD_OK;
}

static int buf_str(pd_buf *b, const char *s)
{
    return buf_put(b, s, strlen(s));
}

static int buf_json_string(pd_buf *b, const char *s)
{
    int rc = buf_put(b, "\"", 1);
    const char *run = s;
    for (const char *p = s; rc == PD_OK; p++) {
        unsigned char c = (unsigned char)*p;
        if (c != '\0' && c != '"' && c != '\\' && c >= 0x20)
            continue;
        rc = buf_put(b, run, (size_t)(p - run));
        if (rc != PD_OK || c == '\0')
            break;
        char esc[8];
        if (c == '"' || c == '\\')
            snprintf(esc, sizeof esc, "\\%c", c);
        else
            snprintf(esc, sizeof esc, "\\u%04x", c);
        rc = buf_str(b, esc);
        run = p + 1;
    }
    return rc == PD_OK ? buf_put(b, "\"", 1) : rc;
}

static int encode(pd_buf *b, const kind_desc *k, const void *rec)
{
    size_t start = b->len;
    int rc = buf_str(b, "{\"type\":");
    if (rc == PD_OK)
        rc = buf_json_string(b, k->type);
    for (size_t i = 0; rc == PD_OK && i < k->nfields; i++) {
        const field *f = &k->fields[i];
        if (is_null(rec, f))
            continue;
        char tmp[64];
        snprintf(tmp, sizeof tmp, ",\"%s\":", f->name);
        rc = buf_str(b, tmp);
        if (rc != PD_OK)
            break;
        switch (f->type) {
        case FT_TEXT: rc = buf_json_string(b, *text_at(rec, f)); break;
        case FT_INT:
            snprintf(tmp, sizeof tmp, "%" PRId64, *int_at(rec, f));
            rc = buf_str(b, tmp);
            break;
        default:
            snprintf(tmp, sizeof tmp, "%.6f", *real_at(rec, f));
            rc = buf_str(b, tmp);
            break;
        }
    }
    if (rc == PD_OK)
        rc = buf_put(b, "}\n", 2);
    if (rc != PD_OK)
        b->len = start;
    return rc;
}

int pd_shape_encode(pd_buf *b, const pd_prelist_shape *s)
{
    return encode(b, &kinds[0], s);
}
int pd_household_encode(pd_buf *b, const pd_prelist_household *h)
{
    return encode(b, &kinds[1], h);
}
int pd_member_encode(pd_buf *b, const pd_prelist_member *m)
{
    return encode(b, &kinds[2], m);
}

/* ---- order ---------------------------------------------------------------------------------- */

static int seq_finish_household(pd_seq *q, pd_error *err)
{
    if (q->in_households && q->hh_seen != q->hh_expected)
        return pd_error_set(err, PD_ERR_CORRUPT,
                            "household %s says member_count %" PRId64 " but %" PRId64
                            " members follow it",
                            q->hh_id, q->hh_expected, q->hh_seen);
    return PD_OK;
}

int pd_seq_shape(pd_seq *q, const pd_prelist_shape *s, pd_error *err)
{
    if (q->in_households)
        return pd_error_set(err, PD_ERR_CORRUPT, "area %s comes after the first household",
                            s->code);
    pd_area_key k;
    pd_area_parse(s->code, &k);
    if (!pd_area_contains(q->area, k))
        return pd_error_set(err, PD_ERR_INVALID, "area %s is outside the package's area",
                            s->code);
    uint32_t limit = q->limit_to_declared ? q->declared_shapes : PD_PRELIST_MAX_SHAPES;
    if (q->shapes >= limit)
        return pd_error_set(err, q->limit_to_declared ? PD_ERR_CORRUPT : PD_ERR_TOOBIG,
                            "more than %u areas", limit);
    q->shapes++;
    return PD_OK;
}

int pd_seq_household(pd_seq *q, const pd_prelist_household *h, pd_error *err)
{
    int rc = seq_finish_household(q, err);
    if (rc != PD_OK)
        return rc;
    pd_area_key k;
    pd_area_parse(h->desa, &k);
    if (!pd_area_contains(q->area, k))
        return pd_error_set(err, PD_ERR_INVALID,
                            "household %s: desa %s is outside the package's area", h->id, h->desa);
    uint32_t limit = q->limit_to_declared ? q->declared_households : PD_PRELIST_MAX_HOUSEHOLDS;
    if (q->households >= limit)
        return pd_error_set(err, q->limit_to_declared ? PD_ERR_CORRUPT : PD_ERR_TOOBIG,
                            "more than %u households", limit);
    q->households++;
    q->in_households = true;
    snprintf(q->hh_id, sizeof q->hh_id, "%s", h->id);
    q->hh_expected = h->member_count;
    q->hh_seen = 0;
    return PD_OK;
}

int pd_seq_member(pd_seq *q, const pd_prelist_member *m, pd_error *err)
{
    if (!q->in_households)
        return pd_error_set(err, PD_ERR_CORRUPT, "member %s comes before any household", m->id);
    if (strcmp(m->household_id, q->hh_id) != 0)
        return pd_error_set(err, PD_ERR_CORRUPT,
                            "member %s of household %s follows household %s: members must come "
                            "right after their household",
                            m->id, m->household_id, q->hh_id);
    if (q->hh_seen >= q->hh_expected)
        return pd_error_set(err, PD_ERR_CORRUPT,
                            "household %s has more members than its member_count %" PRId64,
                            q->hh_id, q->hh_expected);
    if (q->hh_seen > 0 && m->member_no <= q->last_member_no)
        return pd_error_set(err, PD_ERR_CORRUPT,
                            "member %s: member numbers of household %s must increase", m->id,
                            q->hh_id);
    uint32_t limit = q->limit_to_declared ? q->declared_members : PD_PRELIST_MAX_MEMBERS;
    if (q->members >= limit)
        return pd_error_set(err, q->limit_to_declared ? PD_ERR_CORRUPT : PD_ERR_TOOBIG,
                            "more than %u members", limit);
    q->members++;
    q->hh_seen++;
    q->last_member_no = m->member_no;
    return PD_OK;
}

int pd_seq_end(pd_seq *q, pd_error *err)
{
    int rc = seq_finish_household(q, err);
    if (rc != PD_OK)
        return rc;
    if (q->limit_to_declared &&
        (q->shapes != q->declared_shapes || q->households != q->declared_households ||
         q->members != q->declared_members))
        return pd_error_set(err, PD_ERR_CORRUPT,
                            "the header counts %u areas, %u households and %u members; the "
                            "payload holds %u, %u and %u",
                            q->declared_shapes, q->declared_households, q->declared_members,
                            q->shapes, q->households, q->members);
    return PD_OK;
}

/*
 * generate.c — synthetic but realistic prelists for any real kecamatan or desa, for tests,
 * demos and benchmarks (no real person's data is ever needed to exercise pendata).
 *
 * Deterministic: one xoshiro256** stream per desa, seeded from the caller's seed and the desa's
 * code; the same seed, area and options give the same records byte for byte. The reference date
 * for ages is opt->issued_at.
 *
 * What it models (see pd_prelist.h for the summary):
 *   household size 1–10 (mean ≈ 3.6), made of a head, usually a spouse, children, and sometimes a
 *   parent, a married child with spouse and grandchildren, or another relative; every child born
 *   when its mother was 17–45; names in the region's tradition (names.c);
 *   NIK = kecamatan of issue (the household's, sometimes a neighbouring one of the same regency)
 *   + DDMMYY of birth (+40 on the day for women) + a serial unique per (kecamatan, date), with a
 *   few placeholders; KK = household's kecamatan + DDMMYY of issue + serial;
 *   SLS = "RT nnn / RW nnn", 8–25 prelist households a RT, 3–7 RT a RW; addresses "Jl. …" in a
 *   kelurahan and "Dusun …" in a desa; housing, utilities and assets that follow the welfare rank
 *   (desil, weighted to the poor as a prelist is); a GPS point near its RT's centre, inside the
 *   desa's box (pd_area_box_of).
 */
#include "gen_internal.h"
#include "prelist_internal.h"

#include "codes.h"
#include "validate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HH_SIZE 10

/* ---- random numbers ----------------------------------------------------------------------- */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void rng_seed(rng *r, uint64_t a, uint64_t b)
{
    uint64_t x = a ^ (b * UINT64_C(0xd1b54a32d192ed03));
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&x);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* uniform in [0, n) */
static uint32_t below(rng *r, uint32_t n)
{
    return n ? (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32) : 0;
}

/* uniform in [lo, hi] */
static int range(rng *r, int lo, int hi)
{
    return hi <= lo ? lo : lo + (int)below(r, (uint32_t)(hi - lo + 1));
}

static double unit(rng *r)
{
    return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

static bool chance(rng *r, double p)
{
    return unit(r) < p;
}

/* index drawn with the given weights */
static int weighted(rng *r, const unsigned *w, int n)
{
    unsigned total = 0;
    for (int i = 0; i < n; i++)
        total += w[i];
    unsigned x = below(r, total);
    for (int i = 0; i < n; i++) {
        if (x < w[i])
            return i;
        x -= w[i];
    }
    return n - 1;
}

static const char *pick(rng *r, const pd_name_list *l)
{
    return l->v[below(r, (uint32_t)l->n)];
}

/* ---- dates: days since 1970-01-01 (validate.c makes them; civil_from_days reads them) -- */

static int32_t days_from_civil(int y, int m, int d)
{
    return (int32_t)pd_days_from_civil(y, m, d);
}

static void civil_from_days(int32_t z, int *y, int *m, int *d)
{
    z += 719468;
    int era = (z >= 0 ? z : z - 146096) / 146097;
    int doe = z - era * 146097;
    int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp + (mp < 10 ? 3 : -9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int month_days(int y, int m)
{
    static const int md[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return md[m - 1] + (m == 2 && leap);
}

/* the same calendar day n years later (29 Feb → 28 Feb) */
static int32_t add_years(int32_t day, int n)
{
    int y, m, d;
    civil_from_days(day, &y, &m, &d);
    y += n;
    if (d > month_days(y, m))
        d = month_days(y, m);
    return days_from_civil(y, m, d);
}

/* whole years from birth to day */
static int age_at(int32_t birth, int32_t day)
{
    int by, bm, bd, y, m, d;
    civil_from_days(birth, &by, &bm, &bd);
    civil_from_days(day, &y, &m, &d);
    int a = y - by;
    if (m < bm || (m == bm && d < bd))
        a--;
    return a;
}

/* a birth day for someone exactly `age` years old on `today` */
static int32_t birth_for_age(rng *r, int32_t today, int age)
{
    int32_t latest = add_years(today, -age), earliest = add_years(today, -age - 1) + 1;
    return earliest + range(r, 0, latest - earliest);
}

static void ymd(int32_t day, char out[11])
{
    int y, m, d;
    civil_from_days(day, &y, &m, &d);
    char t[40];
    snprintf(t, sizeof t, "%04d-%02d-%02d", y % 10000, m, d);
    memcpy(out, t, 10);
    out[10] = '\0';
}

/* ---- serial counters: (6-digit area, DDMMYY) → next serial ------------------------------------ */

typedef struct counter {
    uint64_t *keys;
    uint16_t *vals;
    size_t cap, n;
    bool oom;
} counter;

static void counter_free(counter *c)
{
    free(c->keys);
    free(c->vals);
    memset(c, 0, sizeof *c);
}

static bool counter_grow(counter *c)
{
    size_t cap = c->cap ? c->cap * 2 : 4096;
    uint64_t *keys = calloc(cap, sizeof *keys);
    uint16_t *vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return false;
    }
    for (size_t i = 0; i < c->cap; i++) {
        if (!c->keys[i])
            continue;
        size_t j = (size_t)(c->keys[i] * UINT64_C(0x9e3779b97f4a7c15) >> 20) & (cap - 1);
        while (keys[j])
            j = (j + 1) & (cap - 1);
        keys[j] = c->keys[i];
        vals[j] = c->vals[i];
    }
    free(c->keys);
    free(c->vals);
    c->keys = keys;
    c->vals = vals;
    c->cap = cap;
    return true;
}

/* the next serial (1, 2, …) for key; 0 when out of memory or past 9999 */
static unsigned counter_next(counter *c, uint64_t key)
{
    key += 1; /* 0 marks an empty slot */
    if ((c->n + 1) * 2 > c->cap && !counter_grow(c)) {
        c->oom = true;
        return 0;
    }
    size_t j = (size_t)(key * UINT64_C(0x9e3779b97f4a7c15) >> 20) & (c->cap - 1);
    while (c->keys[j] && c->keys[j] != key)
        j = (j + 1) & (c->cap - 1);
    if (!c->keys[j]) {
        c->keys[j] = key;
        c->n++;
    }
    if (c->vals[j] >= 9999)
        return 0;
    return ++c->vals[j];
}

/* ---- naming traditions ---------------------------------------------------------------------- */

enum style { ST_JAWA, ST_SUNDA, ST_BATAK, ST_MUSLIM, ST_MALAY, ST_BALI, ST_EAST, ST__COUNT };

/* share (per cent) of households of each naming tradition, by province */
static const struct {
    int prov;
    unsigned w[ST__COUNT]; /* jawa sunda batak muslim(bin/binti) malay bali east */
} style_mix[] = {
    {11, {5, 0, 0, 85, 10, 0, 0}},   {12, {25, 0, 55, 5, 15, 0, 0}},
    {13, {5, 0, 0, 0, 95, 0, 0}},    {14, {30, 0, 10, 5, 55, 0, 0}},
    {15, {35, 5, 5, 0, 55, 0, 0}},   {16, {35, 5, 5, 0, 55, 0, 0}},
    {17, {35, 5, 0, 0, 60, 0, 0}},   {18, {55, 15, 0, 0, 30, 0, 0}},
    {19, {35, 5, 5, 0, 55, 0, 0}},   {21, {25, 0, 15, 0, 55, 0, 5}},
    {31, {35, 25, 10, 10, 15, 0, 5}}, {32, {12, 85, 0, 0, 3, 0, 0}},
    {33, {100, 0, 0, 0, 0, 0, 0}},   {34, {100, 0, 0, 0, 0, 0, 0}},
    {35, {80, 0, 0, 20, 0, 0, 0}},   {36, {10, 75, 0, 15, 0, 0, 0}},
    {51, {10, 0, 0, 0, 0, 90, 0}},   {52, {5, 0, 0, 85, 0, 10, 0}},
    {53, {0, 0, 0, 10, 0, 0, 90}},   {61, {20, 0, 5, 0, 45, 0, 30}},
    {71, {0, 0, 0, 20, 0, 0, 80}},   {81, {0, 0, 0, 45, 0, 0, 55}},
    {82, {0, 0, 0, 75, 0, 0, 25}},
};
static const unsigned style_kalimantan[ST__COUNT] = {30, 0, 0, 15, 50, 0, 5};
static const unsigned style_sulawesi[ST__COUNT] = {0, 0, 0, 80, 10, 0, 10};
static const unsigned style_papua[ST__COUNT] = {12, 0, 0, 8, 0, 0, 80};

static const unsigned *styles_of(int prov)
{
    for (size_t i = 0; i < PD_ARRAY_LEN(style_mix); i++)
        if (style_mix[i].prov == prov)
            return style_mix[i].w;
    if (prov >= 62 && prov <= 65)
        return style_kalimantan;
    if (prov >= 72 && prov <= 76)
        return style_sulawesi;
    return style_papua;
}

static const pd_name_list *east_families(rng *r, int prov)
{
    switch (prov) {
    case 53: return &pd_names_family_ntt;
    case 71: return &pd_names_family_sulut;
    case 81:
    case 82: return &pd_names_family_maluku;
    default:
        if (prov >= 91)
            return &pd_names_family_papua;
        switch (below(r, 4)) {
        case 0: return &pd_names_family_ntt;
        case 1: return &pd_names_family_sulut;
        case 2: return &pd_names_family_maluku;
        default: return &pd_names_family_papua;
        }
    }
}

/* ---- people and households ------------------------------------------------------------------ */

typedef struct person {
    char name[PD_PRELIST_MAX_TEXT];
    int sex, rel, marital, order;
    int32_t birth;
    char nik[17];
    const char *place;
    int schooling, work, disability, chronic, programmes;
    const char *family; /* marga / family name carried (Batak, east) */
    const char *given;  /* first word source for "bin/binti" */
} person;

typedef struct gen {
    const pd_prelist_gen_options *opt;
    const pd_prelist_handler *h;
    pd_error *err;
    int32_t today;
    counter nik, kk;
    char prov[PD_AREA_CODE_MAX], kab[PD_AREA_CODE_MAX], kec[PD_AREA_CODE_MAX];
    int prov_num;
    pd_area_key kec_key;
    size_t kec_first, kec_count; /* kecamatan of the same regency (for neighbouring NIKs) */
    size_t reg_first, reg_count; /* regencies of the province (for birth places) */
    size_t reg_index;
    const unsigned *styles;
} gen;

typedef struct desa {
    pd_area_key key;
    char code[PD_AREA_CODE_MAX];
    char digits[11];
    const char *name;
    pd_area_box box;
    bool urban;
    rng r;
    int rw, rt, rt_left, rts_left, house_no;
    double rt_lat, rt_lon;
    const char *street, *dusun;
    char gang[64];
} desa;

/* A regency's name as people write a birth place: "Kabupaten Bandung Barat" → "Bandung Barat". */
static const char *place_name(const char *regency)
{
    static const char *const prefixes[] = {"Kabupaten Administrasi ", "Kota Administrasi ",
                                           "Kabupaten ", "Kota "};
    for (size_t i = 0; i < PD_ARRAY_LEN(prefixes); i++) {
        size_t n = strlen(prefixes[i]);
        if (!strncmp(regency, prefixes[i], n))
            return regency + n;
    }
    return regency;
}

static const char *birth_place(gen *g, rng *r)
{
    const char *name;
    double x = unit(r);
    if (x < 0.8 || g->reg_count <= 1) {
        pd_area_at(PD_AREA_REGENCY, g->reg_index, &name);
    } else if (x < 0.95) {
        pd_area_at(PD_AREA_REGENCY, g->reg_first + below(r, (uint32_t)g->reg_count), &name);
    } else {
        pd_area_at(PD_AREA_REGENCY, below(r, (uint32_t)pd_area_level_count(PD_AREA_REGENCY)),
                   &name);
    }
    return place_name(name);
}

/* household sizes 1..10: per mille */
static const unsigned size_weights[MAX_HH_SIZE] = {120, 190, 210, 210, 130, 70, 35, 20, 10, 5};

/* the first word of a name */
static void first_word(const char *s, char *out, size_t cap)
{
    size_t n = strcspn(s, " ");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, s, n);
    out[n] = '\0';
}

#define GIVEN_MAX 96

/* A name of the children's generation: often the first word of one common name and the last of
 * another ("Dimas" + "Saputra"), which gives thousands of names from a short list. */
static void modern_name(rng *r, bool male, char *out, size_t cap)
{
    const pd_name_list *l = male ? &pd_names_modern_m : &pd_names_modern_f;
    const char *a = pick(r, l);
    if (chance(r, 0.6)) {
        const char *b = pick(r, l), *last = strrchr(b, ' ');
        char fw[GIVEN_MAX];
        first_word(a, fw, sizeof fw);
        if (snprintf(out, cap, "%s %s", fw, last ? last + 1 : b) >= (int)cap)
            out[cap - 1] = '\0'; /* cut (never with the lists of names.c) */
    } else {
        snprintf(out, cap, "%s", a);
    }
}

/* A given name in a tradition (young: born 1990 or later). */
static void given_name(rng *r, int style, int sex, bool young, char *out, size_t cap)
{
    bool m = sex == PD_SEX_MALE;
    const pd_name_list *own;
    double modern;
    switch (style) {
    case ST_JAWA:
        own = m ? &pd_names_jawa_m : &pd_names_jawa_f, modern = young ? 0.7 : 0.15;
        break;
    case ST_SUNDA:
        own = m ? &pd_names_sunda_m : &pd_names_sunda_f, modern = young ? 0.6 : 0.0;
        break;
    case ST_BATAK:
        own = m ? &pd_names_batak_m : &pd_names_batak_f, modern = young ? 0.4 : 0.0;
        break;
    case ST_MUSLIM:
    case ST_MALAY:
        own = m ? &pd_names_muslim_m : &pd_names_muslim_f, modern = young ? 0.4 : 0.0;
        break;
    case ST_EAST:
        own = m ? &pd_names_east_m : &pd_names_east_f, modern = young ? 0.2 : 0.0;
        break;
    default:
        own = NULL, modern = 1.0;
        break;
    }
    if (!own || chance(r, modern)) {
        modern_name(r, m, out, cap);
        return;
    }
    if (style == ST_SUNDA && chance(r, m ? 0.6 : 0.45)) { /* "Asep Suryana", "Euis Rohaeti" */
        snprintf(out, cap, "%s %s", pick(r, own),
                 pick(r, m ? &pd_names_sunda_m2 : &pd_names_sunda_f2));
        return;
    }
    snprintf(out, cap, "%s", pick(r, own));
}

/* Give p a name. father: the person whose name a "bin/binti" name carries (may be NULL). */
static void name_person(gen *g, rng *r, int style, person *p, const person *father)
{
    bool m = p->sex == PD_SEX_MALE;
    int born_year, mo, d;
    civil_from_days(p->birth, &born_year, &mo, &d);
    bool young = born_year >= 1990;
    char given[GIVEN_MAX], fw[GIVEN_MAX];
    given_name(r, style, p->sex, young, given, sizeof given);
    switch (style) {
    case ST_BATAK: /* one given name, then the marga */
        first_word(given, fw, sizeof fw);
        snprintf(p->name, sizeof p->name, "%s %s", fw,
                 p->family ? p->family : pick(r, &pd_names_batak_marga));
        break;
    case ST_MUSLIM:
        first_word(father ? father->name : pick(r, &pd_names_muslim_m), fw, sizeof fw);
        snprintf(p->name, sizeof p->name, "%s %s %s", given, m ? "bin" : "binti", fw);
        break;
    case ST_BALI: {
        int o = p->order >= 1 && p->order <= 4 ? p->order - 1 : (int)below(r, 4);
        const pd_name_list *order = m ? (chance(r, 0.5) ? &pd_names_bali_order_m
                                                        : &pd_names_bali_order_m2)
                                      : (chance(r, 0.5) ? &pd_names_bali_order_f
                                                        : &pd_names_bali_order_f2);
        snprintf(p->name, sizeof p->name, "%s %s %s", m ? "I" : "Ni", order->v[o],
                 pick(r, m ? &pd_names_bali_m : &pd_names_bali_f));
        break;
    }
    case ST_EAST:
        snprintf(p->name, sizeof p->name, "%s %s", given,
                 p->family ? p->family : pick(r, east_families(r, g->prov_num)));
        break;
    default: /* Javanese, Sundanese, Malay: given names only */
        snprintf(p->name, sizeof p->name, "%s", given);
        break;
    }
}

/* NIK: kecamatan of issue + DDMMYY (+40 for women) + serial; placeholders for a few. */
static void make_nik(gen *g, rng *r, person *p)
{
    int age = age_at(p->birth, g->today);
    if ((age < 17 && chance(r, 0.10)) || (age >= 17 && chance(r, 0.01))) {
        snprintf(p->nik, sizeof p->nik, "%s", age < 17 ? "9999999999999995" : "9999999999999996");
        return;
    }
    pd_area_key k = g->kec_key;
    if (g->kec_count > 1 && chance(r, 0.12))
        k = pd_area_at(PD_AREA_KECAMATAN, g->kec_first + below(r, (uint32_t)g->kec_count), NULL);
    int y, m, d;
    civil_from_days(p->birth, &y, &m, &d);
    if (p->sex == PD_SEX_FEMALE)
        d += 40;
    unsigned date = (unsigned)(d * 10000 + m * 100 + y % 100);
    unsigned serial = counter_next(&g->nik, k.key * 1000000 + date);
    if (serial == 0) {
        snprintf(p->nik, sizeof p->nik, "%s", age < 17 ? "9999999999999995" : "9999999999999996");
        return;
    }
    char t[40];
    snprintf(t, sizeof t, "%06u%06u%04u", (unsigned)(k.key % 1000000), date % 1000000,
             serial % 10000);
    memcpy(p->nik, t, 17);
}

static void make_kk(gen *g, rng *r, int32_t youngest_birth, char out[17])
{
    int32_t from = days_from_civil(2005, 1, 1), to = g->today - 7;
    if (youngest_birth > from)
        from = youngest_birth;
    if (from > to)
        from = to;
    int32_t issued = from + range(r, 0, to - from);
    int y, m, d;
    civil_from_days(issued, &y, &m, &d);
    unsigned date = (unsigned)(d * 10000 + m * 100 + y % 100);
    unsigned serial = counter_next(&g->kk, g->kec_key.key * 1000000 + date);
    if (serial == 0)
        serial = 9999;
    char t[40];
    snprintf(t, sizeof t, "%06u%06u%04u", (unsigned)(g->kec_key.key % 1000000), date % 1000000,
             serial % 10000);
    memcpy(out, t, 17);
}

/* schooling, work, health and programmes from age, sex and the household's desil */
static void profile(rng *r, person *p, int age, int desil, bool rural)
{
    if (age < 7)
        p->schooling = PD_SCHOOL_NONE;
    else if (age <= 12)
        p->schooling = PD_SCHOOL_SD;
    else if (age <= 15)
        p->schooling = chance(r, 0.9) ? PD_SCHOOL_SMP : PD_SCHOOL_SD;
    else if (age <= 18)
        p->schooling = chance(r, 0.75) ? PD_SCHOOL_SMA : PD_SCHOOL_SMP;
    else {
        static const unsigned poor[7] = {10, 40, 22, 24, 2, 2, 0};
        static const unsigned better[7] = {4, 22, 22, 38, 6, 7, 1};
        p->schooling = 1 + weighted(r, desil <= 3 ? poor : better, 7);
    }
    if (age < 15 || (age <= 18 && chance(r, 0.8)))
        p->work = PD_WORK_NONE;
    else if (age >= 65 && chance(r, 0.6))
        p->work = PD_WORK_NONE;
    else if (p->sex == PD_SEX_FEMALE && chance(r, 0.5))
        p->work = PD_WORK_NONE;
    else {
        /* none farming fishery trade industry construction services civil other */
        static const unsigned rural_w[9] = {4, 40, 5, 14, 7, 10, 10, 2, 8};
        static const unsigned urban_w[9] = {6, 5, 2, 26, 16, 14, 22, 3, 6};
        p->work = 1 + weighted(r, rural ? rural_w : urban_w, 9);
    }
    p->disability = chance(r, 0.02) ? range(r, 1, 12) : PD_DISABILITY_NONE;
    double ill = age >= 60 ? 0.25 : age >= 18 ? 0.07 : 0.01;
    p->chronic = chance(r, ill) ? range(r, 1, 9) : PD_ILLNESS_NONE;
    p->programmes = 0;
    if (chance(r, desil <= 2 ? 0.85 : desil <= 4 ? 0.6 : 0.2))
        p->programmes |= PD_PROG_KIS_PBI;
    if (age >= 6 && age <= 21 && p->schooling != PD_SCHOOL_NONE && desil <= 3 && chance(r, 0.5))
        p->programmes |= PD_PROG_KIP;
}

/* Sorted birth days of k children in [lo, hi], at least `gap` days apart when there is room. */
static void spread_births(rng *r, int32_t lo, int32_t hi, int k, int32_t *out)
{
    if (k <= 0)
        return;
    if (hi < lo)
        hi = lo;
    int32_t span = hi - lo, gap = 300;
    if ((int64_t)gap * (k - 1) > span)
        gap = k > 1 ? span / (k - 1) : 0;
    int32_t free_span = span - gap * (k - 1);
    int32_t offs[MAX_HH_SIZE];
    for (int i = 0; i < k; i++)
        offs[i] = range(r, 0, free_span);
    for (int i = 1; i < k; i++) /* insertion sort: k ≤ 10 */
        for (int j = i; j > 0 && offs[j - 1] > offs[j]; j--) {
            int32_t t = offs[j];
            offs[j] = offs[j - 1];
            offs[j - 1] = t;
        }
    for (int i = 0; i < k; i++)
        out[i] = lo + offs[i] + gap * i;
}

/* An age with a hump in the middle: the mean of three draws over [lo, hi]. */
static int hump(rng *r, int lo, int hi)
{
    return (range(r, lo, hi) + range(r, lo, hi) + range(r, lo, hi)) / 3;
}

/* Build the people of one household. Returns how many. */
static int make_people(gen *g, rng *r, int style, person *pp)
{
    int size = 1 + weighted(r, size_weights, MAX_HH_SIZE);
    memset(pp, 0, sizeof(person) * MAX_HH_SIZE);
    int n = 0;
    int32_t today = g->today;
    if (size == 1) {
        person *h = &pp[n++];
        h->rel = PD_REL_HEAD;
        double x = unit(r);
        if (x < 0.45) {
            h->sex = PD_SEX_FEMALE, h->marital = PD_MARITAL_WIDOWED;
            h->birth = birth_for_age(r, today, range(r, 60, 88));
        } else if (x < 0.65) {
            h->sex = PD_SEX_MALE, h->marital = PD_MARITAL_WIDOWED;
            h->birth = birth_for_age(r, today, range(r, 60, 85));
        } else if (x < 0.85) {
            h->sex = PD_SEX_MALE, h->marital = PD_MARITAL_SINGLE;
            h->birth = birth_for_age(r, today, range(r, 20, 40));
        } else {
            h->sex = PD_SEX_FEMALE;
            h->marital = chance(r, 0.6) ? PD_MARITAL_SINGLE : PD_MARITAL_DIVORCED;
            h->birth = birth_for_age(r, today, range(r, 22, 45));
        }
        h->order = range(r, 1, 4);
        name_person(g, r, style, h, NULL);
        return n;
    }
    bool couple = chance(r, 0.86);
    int rem = size - (couple ? 2 : 1);
    bool parent = false, grand = false, other = false;
    int grandkids = 0;
    if (rem >= 1 && chance(r, 0.10))
        parent = true, rem--;
    if (rem >= 3 && chance(r, 0.18)) {
        grand = true;
        grandkids = range(r, 1, rem - 2);
        rem -= grandkids + 1; /* the child-in-law; the married child is one of the children */
    }
    if (rem >= 2 && chance(r, 0.05))
        other = true, rem--;
    int kids = rem;

    /* the mother's age must leave room for her children: the eldest born when she was ≥ 17 */
    int eldest_min = grand ? (grandkids + 18 > 21 ? grandkids + 18 : 21) : 0;
    int mother_min = kids ? 18 + (kids - 1) : 18;
    if (grand && mother_min < eldest_min + 18)
        mother_min = eldest_min + 18;

    person *head = &pp[n++];
    head->rel = PD_REL_HEAD;
    head->order = range(r, 1, 4);
    person *spouse = NULL;
    int head_age, mother_age;
    if (couple) {
        head->sex = PD_SEX_MALE;
        head->marital = PD_MARITAL_MARRIED;
        head_age = hump(r, 22, 78);
        mother_age = head_age - range(r, 0, 8);
        if (mother_age < mother_min)
            mother_age = mother_min + range(r, 0, 5);
        if (head_age < mother_age)
            head_age = mother_age + range(r, 0, 6);
        spouse = &pp[n++];
        spouse->rel = PD_REL_SPOUSE;
        spouse->sex = PD_SEX_FEMALE;
        spouse->marital = PD_MARITAL_MARRIED;
        spouse->order = range(r, 1, 4);
        spouse->birth = birth_for_age(r, today, mother_age);
    } else {
        head->sex = chance(r, 0.75) ? PD_SEX_FEMALE : PD_SEX_MALE;
        head->marital = chance(r, 0.6) ? PD_MARITAL_WIDOWED : PD_MARITAL_DIVORCED;
        head_age = hump(r, 25, 72);
        if (head_age < mother_min)
            head_age = mother_min + range(r, 0, 5);
        mother_age = head->sex == PD_SEX_FEMALE ? head_age : head_age - range(r, 0, 5);
        if (mother_age < mother_min)
            mother_age = mother_min, head_age = mother_min + range(r, 0, 5);
    }
    if (parent && head_age > 68) { /* nobody's parent is that old: make it a relative */
        parent = false;
        other = true;
    }
    head->birth = birth_for_age(r, today, head_age);
    int32_t mother_birth = head->sex == PD_SEX_FEMALE ? head->birth
                           : spouse                   ? spouse->birth
                                                      : birth_for_age(r, today, mother_age);

    /* children, eldest first, each born when the mother was 17..45 */
    int32_t births[MAX_HH_SIZE];
    int32_t lo = add_years(mother_birth, 17) + 1, hi = add_years(mother_birth, 45);
    if (hi > today - 30)
        hi = today - 30;
    spread_births(r, lo, hi, kids, births);
    if (grand) {
        int32_t eldest_hi = add_years(today, -eldest_min);
        if (births[0] > eldest_hi)
            births[0] = lo + range(r, 0, eldest_hi > lo ? eldest_hi - lo : 0);
    }
    const char *family = NULL;
    if (style == ST_BATAK)
        family = pick(r, &pd_names_batak_marga);
    else if (style == ST_EAST)
        family = pick(r, east_families(r, g->prov_num));
    /* the father's line: the head's if he is a man */
    head->family = family;
    if (spouse)
        spouse->family = NULL; /* she keeps her own */
    const person *father = head->sex == PD_SEX_MALE ? head : NULL;
    name_person(g, r, style, head, NULL);
    if (spouse)
        name_person(g, r, style, spouse, NULL);

    person *married = NULL;
    for (int i = 0; i < kids; i++) {
        person *c = &pp[n++];
        c->rel = PD_REL_CHILD;
        c->sex = chance(r, 0.5) ? PD_SEX_MALE : PD_SEX_FEMALE;
        c->birth = births[i];
        c->order = i + 1;
        c->family = family;
        c->marital = PD_MARITAL_SINGLE;
        if (grand && i == 0) {
            married = c;
            c->marital = PD_MARITAL_MARRIED;
        } else if (age_at(c->birth, today) >= 25 && chance(r, 0.15)) {
            c->marital = PD_MARITAL_DIVORCED;
        }
        name_person(g, r, style, c, father);
    }
    if (grand) {
        person *cil = &pp[n++];
        cil->rel = PD_REL_CHILD_IN_LAW;
        cil->sex = married->sex == PD_SEX_MALE ? PD_SEX_FEMALE : PD_SEX_MALE;
        cil->marital = PD_MARITAL_MARRIED;
        cil->order = range(r, 1, 4);
        /* the wife is no younger than 17 at her first child: make her about her husband's age */
        int32_t base = married->birth;
        cil->birth = cil->sex == PD_SEX_FEMALE ? base - range(r, 0, 3 * 365)
                                               : base - range(r, 0, 6 * 365);
        if (cil->sex == PD_SEX_MALE && style != ST_BATAK && style != ST_EAST)
            cil->family = NULL;
        else if (cil->sex == PD_SEX_MALE)
            cil->family = style == ST_BATAK ? pick(r, &pd_names_batak_marga)
                                            : pick(r, east_families(r, g->prov_num));
        name_person(g, r, style, cil, NULL);
        const person *gm = married->sex == PD_SEX_FEMALE ? married : cil;
        const person *gf = married->sex == PD_SEX_MALE ? married : cil;
        /* both parents of a grandchild were at least 17 when it was born */
        int32_t glo = add_years(gm->birth, 17) + 1, ghi = add_years(gm->birth, 45);
        if (add_years(gf->birth, 17) + 1 > glo)
            glo = add_years(gf->birth, 17) + 1;
        if (ghi > today - 30)
            ghi = today - 30;
        int32_t gb[MAX_HH_SIZE];
        spread_births(r, glo, ghi, grandkids, gb);
        for (int i = 0; i < grandkids; i++) {
            person *c = &pp[n++];
            c->rel = PD_REL_GRANDCHILD;
            c->sex = chance(r, 0.5) ? PD_SEX_MALE : PD_SEX_FEMALE;
            c->birth = gb[i];
            c->order = i + 1;
            c->family = gf->family;
            c->marital = PD_MARITAL_SINGLE;
            name_person(g, r, style, c, gf);
        }
    }
    if (parent) {
        person *p = &pp[n++];
        bool in_law = spouse && chance(r, 0.5);
        const person *child = in_law ? spouse : head;
        p->rel = in_law ? PD_REL_PARENT_IN_LAW : PD_REL_PARENT;
        p->sex = chance(r, 0.7) ? PD_SEX_FEMALE : PD_SEX_MALE;
        p->marital = PD_MARITAL_WIDOWED;
        p->order = range(r, 1, 4);
        /* a parent had this child at 20..35, and is at most 95 now */
        int upper = 94 - age_at(child->birth, today);
        p->birth = add_years(child->birth, -range(r, 20, upper < 35 ? upper : 35)) -
                   range(r, 0, 364);
        if (p->sex == PD_SEX_MALE && child == head)
            p->family = head->family;
        name_person(g, r, style, p, NULL);
    }
    if (other) {
        person *o = &pp[n++];
        o->rel = PD_REL_OTHER;
        o->sex = chance(r, 0.5) ? PD_SEX_MALE : PD_SEX_FEMALE;
        o->marital = PD_MARITAL_SINGLE;
        o->order = range(r, 1, 4);
        o->birth = birth_for_age(r, today, range(r, 5, 30));
        name_person(g, r, style, o, NULL);
    }
    return n;
}

/* ---- housing -------------------------------------------------------------------------------- */

static void housing(rng *r, pd_prelist_household *h, int desil, bool rural, int prov, int people)
{
    h->tenure = 1 + weighted(r, (const unsigned[]){80, 8, 10, 0, 2}, 5);
    h->floor_area = 18 + desil * 6 + people * 4 + range(r, 0, 40);
    bool poor = desil <= 3;
    /* floor: marmer keramik parket ubin kayu-hi semen bambu kayu-lo tanah other */
    h->floor_material = 1 + weighted(r, poor ? (const unsigned[]){0, 15, 0, 10, 2, 38, 5, 10, 19, 1}
                                             : (const unsigned[]){1, 50, 1, 18, 4, 20, 1, 3, 2, 0},
                                     10);
    /* wall: tembok plester kayu anyaman batang bambu other */
    h->wall_material = 1 + weighted(r, poor ? (const unsigned[]){45, 10, 18, 15, 3, 8, 1}
                                            : (const unsigned[]){85, 3, 9, 2, 0, 1, 0},
                                    7);
    /* roof: beton keramik metal tanah-liat asbes seng sirap bambu jerami other */
    h->roof_material = 1 + weighted(r, poor ? (const unsigned[]){1, 2, 5, 38, 14, 30, 2, 1, 6, 1}
                                            : (const unsigned[]){5, 10, 15, 40, 12, 16, 1, 0, 1, 0},
                                    10);
    h->rooms = 1 + (people > 3) + (desil > 3) + range(r, 0, 2);
    /* water: kemasan isi-ulang leding-m leding-e sumur-bor terlindung tak-terlindung mata-air
     * terlindung/tak sungai hujan other */
    h->water_source = 1 + weighted(r, rural ? (const unsigned[]){0, 8, 4, 2, 25, 25, 12, 10, 5, 6, 2, 1}
                                            : (const unsigned[]){2, 40, 20, 5, 20, 8, 2, 1, 0, 1, 0, 1},
                                   12);
    double x = unit(r);
    h->lighting = x < 0.93 ? PD_LIGHT_PLN : x < 0.97 ? PD_LIGHT_NON_PLN : PD_LIGHT_NONE;
    if (h->lighting == PD_LIGHT_PLN)
        h->power_va = poor ? (chance(r, 0.7) ? 450 : 900) : (int[]){900, 1300, 2200}[range(r, 0, 2)];
    else
        h->power_va = 0;
    /* cooking: listrik gas>3 gas3 kota/bio minyak briket arang kayu tidak */
    h->cooking_fuel = 1 + weighted(r, rural ? (const unsigned[]){1, 2, 60, 0, 2, 0, 1, 33, 1}
                                            : (const unsigned[]){2, 8, 80, 1, 3, 0, 1, 3, 2},
                                   9);
    h->toilet = 1 + weighted(r, poor ? (const unsigned[]){62, 16, 7, 15} : (const unsigned[]){88, 7, 2, 3},
                             4);
    int64_t a = 0;
    if (chance(r, poor ? 0.05 : 0.25))
        a |= PD_ASSET_GAS_CYLINDER;
    if (chance(r, poor ? 0.2 : 0.6))
        a |= PD_ASSET_FRIDGE;
    if (chance(r, poor ? 0.0 : 0.06))
        a |= PD_ASSET_AC;
    if (chance(r, 0.01))
        a |= PD_ASSET_WATER_HEATER;
    if (chance(r, poor ? 0.65 : 0.9))
        a |= PD_ASSET_TV;
    if (chance(r, poor ? 0.03 : 0.12))
        a |= PD_ASSET_GOLD;
    if (chance(r, poor ? 0.02 : 0.15))
        a |= PD_ASSET_COMPUTER;
    if (chance(r, 0.3))
        a |= PD_ASSET_BICYCLE;
    if (chance(r, poor ? 0.5 : 0.85))
        a |= PD_ASSET_MOTORBIKE;
    if (chance(r, poor ? 0.0 : 0.08))
        a |= PD_ASSET_CAR;
    if (chance(r, 0.02))
        a |= PD_ASSET_BOAT;
    if (chance(r, 0.01))
        a |= PD_ASSET_MOTORBOAT;
    if (chance(r, poor ? 0.6 : 0.9))
        a |= PD_ASSET_SMARTPHONE;
    if (chance(r, 0.01))
        a |= PD_ASSET_LANDLINE;
    h->asset_flags = a;
    bool pigs_ok = prov == 12 || prov == 51 || prov == 53 || prov == 71 || prov >= 91;
    h->cattle = rural && chance(r, 0.15) ? range(r, 1, 4) : 0;
    h->goats = rural && chance(r, 0.2) ? range(r, 1, 10) : 0;
    h->pigs = rural && pigs_ok && chance(r, 0.3) ? range(r, 1, 5) : 0;
    h->poultry = chance(r, rural ? 0.45 : 0.1) ? range(r, 2, 30) : 0;
    h->land_m2 = rural && chance(r, 0.5) ? range(r, 1, 100) * 100 : 0;
}

/* ---- desa layout: RW, RT, address, point ------------------------------------------------------- */

static double inside(double v, double lo, double hi)
{
    double eps = (hi - lo) * 0.01;
    if (v < lo + eps)
        v = lo + eps;
    if (v > hi - eps)
        v = hi - eps;
    return round(v * 1e6) / 1e6;
}

static void next_rt(desa *d)
{
    rng *r = &d->r;
    if (d->rts_left == 0) {
        d->rw++;
        d->rt = 0;
        d->rts_left = range(r, 3, 7);
        d->dusun = pick(r, &pd_names_dusun);
    }
    d->rt++;
    d->rts_left--;
    d->rt_left = range(r, 8, 25);
    double h = d->box.max_lat - d->box.min_lat, w = d->box.max_lon - d->box.min_lon;
    d->rt_lat = d->box.min_lat + h * (0.1 + 0.8 * unit(r));
    d->rt_lon = d->box.min_lon + w * (0.1 + 0.8 * unit(r));
    d->street = pick(r, &pd_names_street);
    d->house_no = range(r, 1, 20);
    if (chance(r, 0.2))
        snprintf(d->gang, sizeof d->gang, " Gg. %s", pick(r, &pd_names_gang));
    else
        d->gang[0] = '\0';
}

/* ---- one household -------------------------------------------------------------------------- */

static int emit_household(gen *g, desa *d, unsigned serial)
{
    rng *r = &d->r;
    if (d->rt_left == 0)
        next_rt(d);
    d->rt_left--;
    int style = weighted(r, g->styles, ST__COUNT);
    person pp[MAX_HH_SIZE];
    int n = make_people(g, r, style, pp);
    static const unsigned desil_w[10] = {25, 20, 15, 12, 9, 7, 5, 3, 2, 2};
    int desil = 1 + weighted(r, desil_w, 10);
    bool rural = !d->urban;

    pd_prelist_household h;
    memset(&h, 0, sizeof h);
    char id[32], sls[40], address[PD_PRELIST_MAX_TEXT], kk[17];
    snprintf(id, sizeof id, "%s%06u", d->digits, serial);
    snprintf(sls, sizeof sls, "RT %03d / RW %03d", d->rt % 1000, d->rw % 1000);
    if (d->urban)
        snprintf(address, sizeof address, "Jl. %s%s No. %d, RT %03d RW %03d", d->street, d->gang,
                 d->house_no, d->rt % 1000, d->rw % 1000);
    else
        snprintf(address, sizeof address, "Dusun %s, RT %03d RW %03d", d->dusun, d->rt % 1000,
                 d->rw % 1000);
    d->house_no += range(r, 1, 3);
    int32_t youngest = pp[0].birth;
    for (int i = 0; i < n; i++) {
        if (pp[i].birth > youngest)
            youngest = pp[i].birth;
        pp[i].place = birth_place(g, r);
        make_nik(g, r, &pp[i]);
        profile(r, &pp[i], age_at(pp[i].birth, g->today), desil, rural);
    }
    make_kk(g, r, youngest, kk);
    /* household programmes are recorded on the head */
    if (desil <= 2 && chance(r, 0.4))
        pp[0].programmes |= PD_PROG_PKH;
    if (desil <= 3 && chance(r, 0.6))
        pp[0].programmes |= PD_PROG_BPNT;

    h.id = id;
    h.rev = g->opt->rev;
    h.prov = g->prov;
    h.kab = g->kab;
    h.kec = g->kec;
    h.desa = d->code;
    h.sls = sls;
    h.address = address;
    h.head_name = pp[0].name;
    h.kk = kk;
    h.member_count = n;
    housing(r, &h, desil, rural, g->prov_num, n);
    h.desil = desil;
    h.percentile = (desil - 1) * 10 + range(r, 1, 10);
    double jitter = 0.0015;
    h.lat = inside(d->rt_lat + jitter * (2 * unit(r) - 1), d->box.min_lat, d->box.max_lat);
    h.lon = inside(d->rt_lon + jitter * (2 * unit(r) - 1), d->box.min_lon, d->box.max_lon);

    int rc = PD_OK;
    if (g->h->household)
        rc = g->h->household(g->h->ud, &h, g->err);
    for (int i = 0; rc == PD_OK && i < n; i++) {
        char mid[48], bd[11];
        snprintf(mid, sizeof mid, "%s%02d", id, i + 1);
        ymd(pp[i].birth, bd);
        pd_prelist_member m = {
            .id = mid,
            .household_id = id,
            .rev = g->opt->rev,
            .member_no = i + 1,
            .name = pp[i].name,
            .nik = pp[i].nik,
            .kk = kk,
            .sex = pp[i].sex,
            .birth_place = pp[i].place,
            .birth_date = bd,
            .relationship = pp[i].rel,
            .marital = pp[i].marital,
            .disability = pp[i].disability,
            .chronic_illness = pp[i].chronic,
            .schooling = pp[i].schooling,
            .work = pp[i].work,
            .programmes = pp[i].programmes,
        };
        if (g->h->member)
            rc = g->h->member(g->h->ud, &m, g->err);
    }
    return rc;
}

/* ---- the whole area ------------------------------------------------------------------------- */

static void fmt_ring(const pd_area_box *b, char *out, size_t cap)
{
    snprintf(out, cap, "%.6f %.6f,%.6f %.6f,%.6f %.6f,%.6f %.6f,%.6f %.6f", b->min_lat, b->min_lon,
             b->min_lat, b->max_lon, b->max_lat, b->max_lon, b->max_lat, b->min_lon, b->min_lat,
             b->min_lon);
}

int pd_prelist_generate(const char *area, const pd_prelist_gen_options *opt_in,
                        const pd_prelist_handler *handler, pd_error *err)
{
    pd_prelist_gen_options opt = opt_in ? *opt_in : (pd_prelist_gen_options){0};
    if (!opt.issued_at)
        opt.issued_at = PD_PRELIST_DEFAULT_ISSUED_AT;
    if (!opt.rev)
        opt.rev = 1;
    if (opt.rev < 0)
        return pd_error_set(err, PD_ERR_INVALID, "rev must be positive");
    if (opt.households > PD_PRELIST_MAX_HOUSEHOLDS)
        return pd_error_set(err, PD_ERR_INVALID, "at most %u households",
                            PD_PRELIST_MAX_HOUSEHOLDS);
    pd_area_key k;
    if (!pd_area_parse(area, &k) || (k.level != PD_AREA_KECAMATAN && k.level != PD_AREA_DESA))
        return pd_error_set(err, PD_ERR_INVALID,
                            "area '%.20s': give a kecamatan (32.73.01) or desa (32.73.01.1001) code",
                            area ? area : "(null)");
    if (pd_area_index(k) < 0)
        return pd_error_set(err, PD_ERR_INVALID, "area %s is not in the Kemendagri list", area);
    static const pd_prelist_handler none = {0};
    gen g = {.opt = &opt, .h = handler ? handler : &none, .err = err};
    g.today = (int32_t)(opt.issued_at / 86400000);
    if (opt.issued_at < 0 && opt.issued_at % 86400000)
        g.today--;
    g.kec_key = k.level == PD_AREA_DESA ? pd_area_parent(k) : k;
    pd_area_key kab = pd_area_parent(g.kec_key), prov = pd_area_parent(kab);
    pd_area_format(g.kec_key, g.kec);
    pd_area_format(kab, g.kab);
    pd_area_format(prov, g.prov);
    g.prov_num = (int)prov.key;
    g.styles = styles_of(g.prov_num);
    pd_area_child_range(kab, &g.kec_first, &g.kec_count);
    pd_area_child_range(prov, &g.reg_first, &g.reg_count);
    g.reg_index = (size_t)pd_area_index(kab);

    /* the desa of the area */
    size_t first = 0, ndesa = 1;
    if (k.level == PD_AREA_KECAMATAN)
        pd_area_child_range(k, &first, &ndesa);
    else
        first = (size_t)pd_area_index(k);
    if (ndesa == 0)
        return pd_error_set(err, PD_ERR_INVALID, "kecamatan %s has no desa", area);
    int rc = PD_OK;
    desa *ds = calloc(ndesa, sizeof *ds);
    uint32_t *count = calloc(ndesa, sizeof *count);
    if (!ds || !count) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        goto out;
    }
    rng split;
    rng_seed(&split, opt.seed, k.key * 7 + (uint64_t)k.level);
    uint64_t wsum = 0;
    uint32_t *weight = count; /* reused: weights first, then counts */
    for (size_t i = 0; i < ndesa; i++) {
        desa *d = &ds[i];
        d->key = pd_area_at(PD_AREA_DESA, first + i, &d->name);
        pd_area_format(d->key, d->code);
        snprintf(d->digits, sizeof d->digits, "%010llu", (unsigned long long)d->key.key);
        d->urban = d->key.key % 10000 / 1000 == 1;
        pd_area_box_key(d->key, &d->box);
        rng_seed(&d->r, opt.seed, d->key.key);
        weight[i] = opt.households ? 600 + below(&split, 801) : 120 + below(&split, 61);
        wsum += weight[i];
    }
    if (opt.households) { /* share the total out by weight; the remainder one by one */
        uint64_t given = 0;
        for (size_t i = 0; i < ndesa; i++) {
            count[i] = (uint32_t)((uint64_t)opt.households * weight[i] / wsum);
            given += count[i];
        }
        for (size_t i = 0; given < opt.households; i = (i + 1) % ndesa, given++)
            count[i]++;
    }
    char ring[256];
    for (size_t i = 0; rc == PD_OK && i < ndesa; i++) {
        fmt_ring(&ds[i].box, ring, sizeof ring);
        pd_prelist_shape s = {ds[i].code, ds[i].name, ring, opt.rev};
        if (g.h->shape)
            rc = g.h->shape(g.h->ud, &s, err);
    }
    for (size_t i = 0; rc == PD_OK && i < ndesa; i++)
        for (uint32_t j = 0; rc == PD_OK && j < count[i]; j++)
            rc = emit_household(&g, &ds[i], j + 1);
    if (rc == PD_OK && (g.nik.oom || g.kk.oom))
        rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory");
out:
    counter_free(&g.nik);
    counter_free(&g.kk);
    free(ds);
    free(count);
    return rc;
}

int pd_prelist_generate_file(const char *path, const char *area, const pd_prelist_gen_options *opt,
                             const uint8_t issuer_sk[PD_SECKEY_BYTES], pd_prelist_info *info,
                             pd_error *err)
{
    int64_t issued_at = opt && opt->issued_at ? opt->issued_at : PD_PRELIST_DEFAULT_ISSUED_AT;
    pd_prelist_writer *w;
    int rc = pd_prelist_writer_open(&w, path, issuer_sk, area, issued_at, err);
    if (rc != PD_OK)
        return rc;
    pd_prelist_handler h = pd_prelist_writer_handler(w);
    rc = pd_prelist_generate(area, opt, &h, err);
    if (rc == PD_OK)
        rc = pd_prelist_writer_finish(w, info, err);
    pd_prelist_writer_free(w);
    return rc;
}

/*
 * area.c — Indonesia's area codes (Kemendagri): lookup by code, names, children, and the
 * synthetic outline (box) of each kecamatan and desa.
 *
 * The four CSV files embedded by area_data.c are parsed once (pthread_once) into one sorted
 * table per level: the code's digits as a 64-bit key and the name's offset in an arena of
 * NUL-terminated names. The CSVs are sorted by code (checked while parsing: an unsorted or
 * malformed embedded file makes every lookup fail rather than answer wrongly), so lookups are
 * binary searches and the children of an area are one contiguous range of the next level.
 *
 * Boxes: we have no real polygons. Each province has a rough land extent (table below, degrees,
 * hand-made from the map: good enough to put points on the right island); a regency's centre is
 * a hash of its code inside that extent; a kecamatan's centre is its regency's plus a hashed
 * offset; the kecamatan's desa are laid out in code order as a grid of AREA_CELL_DEG cells
 * around it. Everything derives from the codes, so boxes never change between runs.
 */
#include "area_internal.h"
#include "internal.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    uint64_t key;
    uint32_t name; /* offset in the arena */
} entry;

typedef struct table {
    entry *e;
    size_t n;
} table;

static struct {
    table level[4]; /* PD_AREA_PROVINCE - 1 .. PD_AREA_DESA - 1 */
    char *arena;
    size_t arena_len;
    bool ok;
} idx;

static pthread_once_t idx_once = PTHREAD_ONCE_INIT;

/* digits each level adds to the key, and the dotted length of a code of that level */
static const unsigned level_digits[5] = {0, 2, 2, 2, 4};
static const size_t level_len[5] = {0, 2, 5, 8, 13};

static uint64_t pow10u(unsigned n)
{
    uint64_t p = 1;
    while (n--)
        p *= 10;
    return p;
}

bool pd_area_parse_n(const char *s, size_t n, pd_area_key *out)
{
    int level = 0;
    for (int l = 1; l <= 4; l++)
        if (n == level_len[l])
            level = l;
    if (!level)
        return false;
    uint64_t key = 0;
    for (size_t i = 0; i < n; i++) {
        bool dot = (i == 2 || i == 5 || i == 8);
        if (dot) {
            if (s[i] != '.')
                return false;
            continue;
        }
        if (s[i] < '0' || s[i] > '9')
            return false;
        key = key * 10 + (uint64_t)(s[i] - '0');
    }
    out->key = key;
    out->level = (pd_area_level)level;
    return true;
}

bool pd_area_parse(const char *code, pd_area_key *out)
{
    if (!code)
        return false;
    size_t n = strnlen(code, PD_AREA_CODE_MAX);
    return n < PD_AREA_CODE_MAX && pd_area_parse_n(code, n, out);
}

void pd_area_format(pd_area_key k, char out[PD_AREA_CODE_MAX])
{
    unsigned total = 0;
    for (int l = 1; l <= (int)k.level; l++)
        total += level_digits[l];
    char digits[16];
    for (unsigned i = 0; i < total; i++) {
        digits[total - 1 - i] = (char)('0' + k.key % 10);
        k.key /= 10;
    }
    size_t o = 0;
    for (unsigned i = 0; i < total; i++) {
        if (i == 2 || i == 4 || i == 6)
            out[o++] = '.';
        out[o++] = digits[i];
    }
    out[o] = '\0';
}

/* ---- building the index -------------------------------------------------------------------- */

/* Parse one embedded CSV (header line first) into t, names appended to the arena. */
static bool parse_csv(const char *p, const char *end, pd_area_level level, table *t, size_t *arena_used)
{
    /* count lines for the allocation */
    size_t lines = 0;
    for (const char *q = p; q < end; q++)
        if (*q == '\n')
            lines++;
    t->e = malloc((lines ? lines : 1) * sizeof *t->e);
    if (!t->e)
        return false;
    t->n = 0;
    const char *nl = memchr(p, '\n', (size_t)(end - p)); /* skip the header */
    if (!nl)
        return false;
    p = nl + 1;
    while (p < end) {
        const char *line_end = memchr(p, '\n', (size_t)(end - p));
        if (!line_end)
            line_end = end;
        const char *comma = memchr(p, ',', (size_t)(line_end - p));
        pd_area_key k;
        if (!comma || !pd_area_parse_n(p, (size_t)(comma - p), &k) || k.level != level)
            return false;
        const char *q = comma + 1; /* provinces.csv: code,name; the others: code,parent,name */
        if (level != PD_AREA_PROVINCE) {
            q = memchr(q, ',', (size_t)(line_end - q));
            if (!q)
                return false;
            q++;
        }
        char *dst = idx.arena + *arena_used;
        size_t len = 0;
        if (q < line_end && *q == '"') { /* RFC 4180: "" inside quotes is one quote */
            q++;
            for (;;) {
                if (q >= line_end)
                    return false;
                if (*q == '"') {
                    if (q + 1 < line_end && q[1] == '"') {
                        dst[len++] = '"';
                        q += 2;
                        continue;
                    }
                    q++;
                    break;
                }
                dst[len++] = *q++;
            }
            if (q != line_end)
                return false;
        } else {
            len = (size_t)(line_end - q);
            memcpy(dst, q, len);
        }
        if (len == 0)
            return false;
        dst[len] = '\0';
        if (t->n && t->e[t->n - 1].key >= k.key)
            return false; /* not sorted: refuse rather than answer wrongly */
        t->e[t->n].key = k.key;
        t->e[t->n].name = (uint32_t)*arena_used;
        t->n++;
        *arena_used += len + 1;
        p = line_end + 1;
    }
    return true;
}

static void build_index(void)
{
    const char *const start[4] = {pd_area_csv_provinces, pd_area_csv_regencies,
                                  pd_area_csv_districts, pd_area_csv_villages};
    const char *const end[4] = {pd_area_csv_provinces_end, pd_area_csv_regencies_end,
                                pd_area_csv_districts_end, pd_area_csv_villages_end};
    size_t total = 0;
    for (int l = 0; l < 4; l++)
        total += (size_t)(end[l] - start[l]);
    idx.arena = malloc(total + 1);
    if (!idx.arena)
        goto fail;
    size_t used = 0;
    for (int l = 0; l < 4; l++)
        if (!parse_csv(start[l], end[l], (pd_area_level)(l + 1), &idx.level[l], &used))
            goto fail;
    char *shrunk = realloc(idx.arena, used ? used : 1);
    if (shrunk)
        idx.arena = shrunk;
    idx.arena_len = used;
    idx.ok = true;
    return;
fail:
    for (int l = 0; l < 4; l++) {
        free(idx.level[l].e);
        idx.level[l].e = NULL;
        idx.level[l].n = 0;
    }
    free(idx.arena);
    idx.arena = NULL;
}

static bool ready(void)
{
    pthread_once(&idx_once, build_index);
    return idx.ok;
}

/* ---- lookups ------------------------------------------------------------------------------- */

/* first index in t with key >= k */
static size_t lower_bound(const table *t, uint64_t k)
{
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->e[mid].key < k)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

long pd_area_index(pd_area_key k)
{
    if (!ready() || k.level < PD_AREA_PROVINCE || k.level > PD_AREA_DESA)
        return -1;
    const table *t = &idx.level[k.level - 1];
    size_t i = lower_bound(t, k.key);
    return (i < t->n && t->e[i].key == k.key) ? (long)i : -1;
}

size_t pd_area_level_count(pd_area_level level)
{
    if (!ready() || level < PD_AREA_PROVINCE || level > PD_AREA_DESA)
        return 0;
    return idx.level[level - 1].n;
}

pd_area_key pd_area_at(pd_area_level level, size_t i, const char **name)
{
    const entry *e = &idx.level[level - 1].e[i];
    if (name)
        *name = idx.arena + e->name;
    return (pd_area_key){e->key, level};
}

void pd_area_child_range(pd_area_key k, size_t *first, size_t *n)
{
    *first = 0;
    *n = 0;
    if (!ready() || k.level >= PD_AREA_DESA)
        return;
    uint64_t scale = pow10u(level_digits[k.level + 1]);
    const table *t = &idx.level[k.level];
    size_t a = lower_bound(t, k.key * scale), b = lower_bound(t, (k.key + 1) * scale);
    *first = a;
    *n = b - a;
}

pd_area_key pd_area_parent(pd_area_key k)
{
    if (k.level <= PD_AREA_PROVINCE)
        return k;
    return (pd_area_key){k.key / pow10u(level_digits[k.level]), (pd_area_level)(k.level - 1)};
}

bool pd_area_contains(pd_area_key area, pd_area_key child)
{
    if (area.level < PD_AREA_PROVINCE || area.level > PD_AREA_DESA)
        return false; /* not a key pd_area_parse made */
    while (child.level > area.level)
        child = pd_area_parent(child);
    return child.level == area.level && child.key == area.key;
}

bool pd_area_exists(const char *code)
{
    pd_area_key k;
    return pd_area_parse(code, &k) && pd_area_index(k) >= 0;
}

const char *pd_area_name(const char *code)
{
    pd_area_key k;
    if (!pd_area_parse(code, &k))
        return NULL;
    long i = pd_area_index(k);
    if (i < 0)
        return NULL;
    const char *name;
    pd_area_at(k.level, (size_t)i, &name);
    return name;
}

static int lookup_key(const char *code, pd_area_key *k, long *i, pd_error *err)
{
    if (!pd_area_parse(code, k))
        return pd_error_set(err, PD_ERR_INVALID,
                            "area code '%.32s' is not of the form 32, 32.73, 32.73.01 or "
                            "32.73.01.1001",
                            code ? code : "(null)");
    if (!ready())
        return pd_error_set(err, PD_ERR_NOMEM, "the area index could not be built");
    *i = pd_area_index(*k);
    if (*i < 0)
        return pd_error_set(err, PD_ERR_NOTFOUND, "area %s is not in the Kemendagri list", code);
    return PD_OK;
}

int pd_area_lookup(const char *code, pd_area *out, pd_error *err)
{
    pd_area_key k;
    long i = -1;
    int rc = lookup_key(code, &k, &i, err);
    if (rc != PD_OK)
        return rc;
    if (out) {
        pd_area_format(k, out->code);
        pd_area_at(k.level, (size_t)i, &out->name);
        out->level = k.level;
    }
    return PD_OK;
}

int pd_area_children(const char *parent, pd_area *out, size_t cap, size_t *count, pd_error *err)
{
    size_t first = 0, n = 0;
    pd_area_level child_level;
    if (!parent || !*parent) {
        if (!ready())
            return pd_error_set(err, PD_ERR_NOMEM, "the area index could not be built");
        n = idx.level[0].n;
        child_level = PD_AREA_PROVINCE;
    } else {
        pd_area_key k;
        long i;
        int rc = lookup_key(parent, &k, &i, err);
        if (rc != PD_OK)
            return rc;
        pd_area_child_range(k, &first, &n);
        child_level = (pd_area_level)(k.level + 1);
    }
    if (count)
        *count = n;
    for (size_t j = 0; out && j < n && j < cap; j++) {
        pd_area_key c = pd_area_at(child_level, first + j, &out[j].name);
        pd_area_format(c, out[j].code);
        out[j].level = child_level;
    }
    return PD_OK;
}

int pd_area_code_from_digits(const char *digits, size_t n, char out[PD_AREA_CODE_MAX])
{
    int level;
    switch (n) {
    case 2: level = PD_AREA_PROVINCE; break;
    case 4: level = PD_AREA_REGENCY; break;
    case 6: level = PD_AREA_KECAMATAN; break;
    case 10: level = PD_AREA_DESA; break;
    default: return PD_ERR_INVALID;
    }
    uint64_t key = 0;
    for (size_t i = 0; i < n; i++) {
        if (digits[i] < '0' || digits[i] > '9')
            return PD_ERR_INVALID;
        key = key * 10 + (uint64_t)(digits[i] - '0');
    }
    pd_area_format((pd_area_key){key, (pd_area_level)level}, out);
    return PD_OK;
}

/* ---- synthetic boxes ----------------------------------------------------------------------- */

/* Rough land extent of each province: the main inhabited part, degrees. */
static const struct {
    int code;
    float min_lat, max_lat, min_lon, max_lon;
} provinces[] = {
    {11, 2.6f, 5.5f, 95.3f, 97.8f},       /* Aceh */
    {12, 1.0f, 3.9f, 98.0f, 100.2f},      /* Sumatera Utara */
    {13, -2.3f, 0.6f, 99.8f, 101.5f},     /* Sumatera Barat */
    {14, -0.8f, 2.0f, 100.5f, 103.3f},    /* Riau */
    {15, -2.6f, -1.0f, 101.4f, 104.3f},   /* Jambi */
    {16, -4.6f, -1.8f, 102.3f, 105.8f},   /* Sumatera Selatan */
    {17, -5.0f, -2.5f, 101.3f, 103.4f},   /* Bengkulu */
    {18, -5.8f, -3.8f, 103.9f, 105.8f},   /* Lampung */
    {19, -3.2f, -1.6f, 105.2f, 108.1f},   /* Kepulauan Bangka Belitung */
    {21, 0.4f, 1.2f, 103.8f, 104.7f},     /* Kepulauan Riau */
    {31, -6.35f, -6.10f, 106.70f, 106.97f}, /* DKI Jakarta */
    {32, -7.6f, -6.1f, 106.4f, 108.7f},   /* Jawa Barat */
    {33, -7.9f, -6.6f, 108.9f, 111.6f},   /* Jawa Tengah */
    {34, -8.1f, -7.6f, 110.1f, 110.7f},   /* DI Yogyakarta */
    {35, -8.4f, -7.0f, 111.2f, 114.3f},   /* Jawa Timur */
    {36, -6.9f, -5.95f, 105.4f, 106.7f},  /* Banten */
    {51, -8.7f, -8.1f, 114.5f, 115.6f},   /* Bali */
    {52, -9.0f, -8.2f, 116.0f, 119.0f},   /* Nusa Tenggara Barat */
    {53, -10.3f, -8.3f, 119.9f, 124.9f},  /* Nusa Tenggara Timur */
    {61, -2.5f, 1.8f, 109.0f, 113.0f},    /* Kalimantan Barat */
    {62, -3.2f, 0.5f, 111.0f, 115.5f},    /* Kalimantan Tengah */
    {63, -4.0f, -1.5f, 114.5f, 116.4f},   /* Kalimantan Selatan */
    {64, -2.2f, 2.0f, 115.0f, 118.5f},    /* Kalimantan Timur */
    {65, 1.5f, 4.2f, 115.5f, 117.7f},     /* Kalimantan Utara */
    {71, 0.4f, 1.6f, 123.5f, 125.2f},     /* Sulawesi Utara */
    {72, -2.8f, 1.2f, 119.8f, 123.5f},    /* Sulawesi Tengah */
    {73, -5.5f, -2.5f, 119.4f, 121.0f},   /* Sulawesi Selatan */
    {74, -5.6f, -3.5f, 121.5f, 123.2f},   /* Sulawesi Tenggara */
    {75, 0.4f, 0.9f, 121.9f, 123.2f},     /* Gorontalo */
    {76, -3.4f, -1.2f, 118.9f, 119.8f},   /* Sulawesi Barat */
    {81, -3.8f, -2.9f, 127.8f, 130.5f},   /* Maluku */
    {82, -1.0f, 2.2f, 127.3f, 128.6f},    /* Maluku Utara */
    {91, -3.3f, -1.8f, 136.5f, 140.8f},   /* Papua */
    {92, -3.9f, -1.0f, 132.2f, 134.5f},   /* Papua Barat */
    {93, -8.4f, -5.5f, 138.0f, 140.9f},   /* Papua Selatan */
    {94, -4.6f, -3.0f, 135.2f, 138.0f},   /* Papua Tengah */
    {95, -4.7f, -3.6f, 138.5f, 140.5f},   /* Papua Pegunungan */
    {96, -1.6f, -0.6f, 131.0f, 132.8f},   /* Papua Barat Daya */
};

#define AREA_CELL_DEG 0.02   /* one desa cell: about 2.2 km */
#define AREA_CELL_MARGIN 0.05 /* fraction of a cell left between neighbouring desa */

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= UINT64_C(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x *= UINT64_C(0x94d049bb133111eb);
    x ^= x >> 31;
    return x;
}

/* a uniform number in [0, 1) from a key and a salt */
static double unit(uint64_t key, uint64_t salt)
{
    return (double)(mix64(key * 0x9e3779b97f4a7c15u + salt) >> 11) / 9007199254740992.0;
}

static bool province_box(uint64_t prov, pd_area_box *out)
{
    for (size_t i = 0; i < PD_ARRAY_LEN(provinces); i++)
        if ((uint64_t)provinces[i].code == prov) {
            out->min_lat = provinces[i].min_lat;
            out->max_lat = provinces[i].max_lat;
            out->min_lon = provinces[i].min_lon;
            out->max_lon = provinces[i].max_lon;
            return true;
        }
    return false;
}

static double clampd(double v, double lo, double hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* centre of a kecamatan */
static bool kecamatan_centre(pd_area_key kec, double *lat, double *lon)
{
    pd_area_key reg = pd_area_parent(kec), prov = pd_area_parent(reg);
    pd_area_box pb;
    if (!province_box(prov.key, &pb))
        return false;
    double h = pb.max_lat - pb.min_lat, w = pb.max_lon - pb.min_lon;
    double rlat = pb.min_lat + h * (0.15 + 0.7 * unit(reg.key, 1));
    double rlon = pb.min_lon + w * (0.15 + 0.7 * unit(reg.key, 2));
    bool kota = reg.key % 100 >= 71; /* a city is compact */
    double spread = kota ? 0.04 : 0.25;
    *lat = clampd(rlat + spread * (2 * unit(kec.key, 3) - 1), pb.min_lat, pb.max_lat);
    *lon = clampd(rlon + spread * (2 * unit(kec.key, 4) - 1), pb.min_lon, pb.max_lon);
    return true;
}

bool pd_area_box_key(pd_area_key k, pd_area_box *out)
{
    long i = pd_area_index(k);
    if (i < 0)
        return false;
    if (k.level <= PD_AREA_REGENCY) {
        pd_area_key p = k;
        while (p.level > PD_AREA_PROVINCE)
            p = pd_area_parent(p);
        return province_box(p.key, out);
    }
    pd_area_key kec = k.level == PD_AREA_DESA ? pd_area_parent(k) : k;
    double clat, clon;
    if (!kecamatan_centre(kec, &clat, &clon))
        return false;
    size_t first, n;
    pd_area_child_range(kec, &first, &n);
    if (n == 0)
        n = 1;
    size_t cols = (size_t)ceil(sqrt((double)n)), rows = (n + cols - 1) / cols;
    double top = clat + rows * AREA_CELL_DEG / 2, left = clon - cols * AREA_CELL_DEG / 2;
    if (k.level == PD_AREA_KECAMATAN) {
        out->max_lat = top;
        out->min_lat = top - rows * AREA_CELL_DEG;
        out->min_lon = left;
        out->max_lon = left + cols * AREA_CELL_DEG;
        return true;
    }
    size_t j = (size_t)i - first, r = j / cols, c = j % cols;
    double m = AREA_CELL_DEG * AREA_CELL_MARGIN / 2;
    out->max_lat = top - r * AREA_CELL_DEG - m;
    out->min_lat = top - (r + 1) * AREA_CELL_DEG + m;
    out->min_lon = left + c * AREA_CELL_DEG + m;
    out->max_lon = left + (c + 1) * AREA_CELL_DEG - m;
    return true;
}

int pd_area_box_of(const char *code, pd_area_box *out, pd_error *err)
{
    pd_area_key k;
    long i;
    int rc = lookup_key(code, &k, &i, err);
    if (rc != PD_OK)
        return rc;
    if (!pd_area_box_key(k, out))
        return pd_error_set(err, PD_ERR_NOTFOUND, "area %s: no extent known for its province",
                            code);
    return PD_OK;
}

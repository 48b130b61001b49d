/*
 * test_prelist_generate.c — the synthetic prelist generator (prelist/generate.c): the same seed
 * gives the same bytes; every NIK's structure matches its holder's birth date and sex and is
 * unique, serials counting from 0001; ages are consistent (children born when their mother was
 * 17–45, parents older than their children); every area code is real; every GPS point lies
 * inside its desa's shape; households have 1–10 members with a realistic mean; names follow the
 * region's traditions.
 */
#include "codes.h"
#include "gen_internal.h"
#include "prelist_fixture.h"
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* REQUIRE for functions that return nothing */
#define REQUIRE_VOID(cond)                                                                    \
    do {                                                                                      \
        pd_test_checks++;                                                                     \
        if (!(cond)) {                                                                        \
            pd_test_failures++;                                                               \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);        \
            return;                                                                           \
        }                                                                                     \
    } while (0)
#define REQUIRE_OK(expr) REQUIRE_VOID((expr) == PD_OK)

#define REF_Y 2025
#define REF_M 1
#define REF_D 1

/* ---- a copy of everything generated ------------------------------------------------------ */

typedef struct mem {
    char id[24], name[PD_PRELIST_MAX_TEXT + 1], nik[17], kk[17], birth[11];
    int sex, rel, marital, no;
} mem;

typedef struct hh {
    char id[24], desa[PD_AREA_CODE_MAX], kec[PD_AREA_CODE_MAX], kab[PD_AREA_CODE_MAX];
    char prov[PD_AREA_CODE_MAX], sls[64], kk[17];
    char address[PD_PRELIST_MAX_TEXT + 1], head[PD_PRELIST_MAX_TEXT + 1];
    double lat, lon;
    int count, desil, percentile;
    mem m[10];
    int nm;
} hh;

typedef struct shape {
    char code[PD_AREA_CODE_MAX];
    double min_lat, min_lon, max_lat, max_lon;
} shape;

typedef struct corpus {
    hh *h;
    size_t n, cap;
    shape s[256];
    size_t ns;
    bool overflow; /* a household with more than 10 members */
    crypto_generichash_state digest;
} corpus;

static int c_shape(void *ud, const pd_prelist_shape *s, pd_error *err)
{
    (void)err;
    corpus *c = ud;
    crypto_generichash_update(&c->digest, (const uint8_t *)s->shape, strlen(s->shape));
    if (c->ns >= 256)
        return PD_OK;
    shape *x = &c->s[c->ns++];
    snprintf(x->code, sizeof x->code, "%s", s->code);
    x->min_lat = x->min_lon = 1e9;
    x->max_lat = x->max_lon = -1e9;
    const char *p = s->shape;
    while (*p) {
        char *end;
        double lat = strtod(p, &end), lon = strtod(end, &end);
        x->min_lat = fmin(x->min_lat, lat), x->max_lat = fmax(x->max_lat, lat);
        x->min_lon = fmin(x->min_lon, lon), x->max_lon = fmax(x->max_lon, lon);
        p = *end == ',' ? end + 1 : end;
    }
    return PD_OK;
}

static int c_household(void *ud, const pd_prelist_household *h, pd_error *err)
{
    (void)err;
    corpus *c = ud;
    crypto_generichash_update(&c->digest, (const uint8_t *)h->id, strlen(h->id));
    crypto_generichash_update(&c->digest, (const uint8_t *)h->head_name, strlen(h->head_name));
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 1024;
        c->h = realloc(c->h, c->cap * sizeof *c->h);
    }
    hh *x = &c->h[c->n++];
    memset(x, 0, sizeof *x);
    snprintf(x->id, sizeof x->id, "%s", h->id);
    snprintf(x->desa, sizeof x->desa, "%s", h->desa);
    snprintf(x->kec, sizeof x->kec, "%s", h->kec);
    snprintf(x->kab, sizeof x->kab, "%s", h->kab);
    snprintf(x->prov, sizeof x->prov, "%s", h->prov);
    snprintf(x->sls, sizeof x->sls, "%s", h->sls);
    snprintf(x->kk, sizeof x->kk, "%s", h->kk ? h->kk : "");
    snprintf(x->address, sizeof x->address, "%s", h->address);
    snprintf(x->head, sizeof x->head, "%s", h->head_name);
    x->lat = h->lat;
    x->lon = h->lon;
    x->count = (int)h->member_count;
    x->desil = (int)h->desil;
    x->percentile = (int)h->percentile;
    return PD_OK;
}

static int c_member(void *ud, const pd_prelist_member *m, pd_error *err)
{
    (void)err;
    corpus *c = ud;
    crypto_generichash_update(&c->digest, (const uint8_t *)m->nik, strlen(m->nik));
    crypto_generichash_update(&c->digest, (const uint8_t *)m->name, strlen(m->name));
    hh *x = &c->h[c->n - 1];
    if (x->nm >= 10) {
        c->overflow = true;
        return PD_OK;
    }
    mem *y = &x->m[x->nm++];
    snprintf(y->id, sizeof y->id, "%s", m->id);
    snprintf(y->name, sizeof y->name, "%s", m->name);
    snprintf(y->nik, sizeof y->nik, "%s", m->nik ? m->nik : "");
    snprintf(y->kk, sizeof y->kk, "%s", m->kk ? m->kk : "");
    snprintf(y->birth, sizeof y->birth, "%s", m->birth_date);
    y->sex = (int)m->sex;
    y->rel = (int)m->relationship;
    y->marital = (int)m->marital;
    y->no = (int)m->member_no;
    return PD_OK;
}

static int generate(const char *area, uint64_t seed, uint32_t households, corpus *c,
                    uint8_t digest[32])
{
    memset(c, 0, sizeof *c);
    crypto_generichash_init(&c->digest, NULL, 0, 32);
    pd_prelist_gen_options o = {.seed = seed, .households = households};
    pd_prelist_handler h = {c_shape, c_household, c_member, c};
    pd_error err = {0};
    int rc = pd_prelist_generate(area, &o, &h, &err);
    if (rc != PD_OK)
        fprintf(stderr, "   generate %s: %s\n", area, err.msg);
    uint8_t d[32];
    crypto_generichash_final(&c->digest, digest ? digest : d, 32);
    return rc;
}

/* ---- dates ---------------------------------------------------------------------------------- */

static void ymd(const char *s, int *y, int *m, int *d)
{
    *y = atoi(s);
    *m = atoi(s + 5);
    *d = atoi(s + 8);
}

/* whole years from date a to date b */
static int years(const char *a, int by, int bm, int bd)
{
    int y, m, d;
    ymd(a, &y, &m, &d);
    int n = by - y;
    if (bm < m || (bm == m && bd < d))
        n--;
    return n;
}

static int age(const char *birth)
{
    return years(birth, REF_Y, REF_M, REF_D);
}

static int years_between(const char *older, const char *younger)
{
    int y, m, d;
    ymd(younger, &y, &m, &d);
    return years(older, y, m, d);
}

static bool real_date(int y, int m, int d)
{
    static const int md[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12 || d < 1)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= md[m - 1] + (m == 2 && leap);
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void same_seed_gives_the_same_bytes(void)
{
    uint8_t pk[32], sk[64];
    pd_fixture_issuer(1, pk, sk);
    char *dir = pd_test_tmpdir("gen");
    char *a = pd_test_path(dir, "a.pdpl"), *b = pd_test_path(dir, "b.pdpl"),
         *c = pd_test_path(dir, "c.pdpl");
    pd_prelist_gen_options o = {.seed = 99};
    pd_prelist_info ia, ib, ic;
    CHECK_EQ_INT(pd_prelist_generate_file(a, "32.73.01", &o, sk, &ia, NULL), PD_OK);
    CHECK_EQ_INT(pd_prelist_generate_file(b, "32.73.01", &o, sk, &ib, NULL), PD_OK);
    o.seed = 100;
    CHECK_EQ_INT(pd_prelist_generate_file(c, "32.73.01", &o, sk, &ic, NULL), PD_OK);
    size_t la = 0, lb = 0, lc = 0;
    uint8_t *da = pd_test_read_file(a, &la), *db = pd_test_read_file(b, &lb),
            *dc = pd_test_read_file(c, &lc);
    CHECK(da && db && dc);
    CHECK(la == lb && la > PD_PRELIST_PREFIX_BYTES && memcmp(da, db, la) == 0);
    CHECK(memcmp(ia.id, ib.id, 32) == 0);
    CHECK(la != lc || memcmp(da, dc, la) != 0);
    CHECK(memcmp(ia.id, ic.id, 32) != 0);
    CHECK_EQ_INT(ia.issued_at, PD_PRELIST_DEFAULT_ISSUED_AT);
    char *tmp = pd_test_path(dir, "a.pdpl.tmp");
    CHECK(!pd_test_file_exists(tmp));
    free(tmp);
    /* the records themselves, straight from the generator */
    corpus c1, c2;
    uint8_t d1[32], d2[32];
    CHECK_EQ_INT(generate("32.73.01.1001", 5, 0, &c1, d1), PD_OK);
    CHECK_EQ_INT(generate("32.73.01.1001", 5, 0, &c2, d2), PD_OK);
    CHECK(memcmp(d1, d2, 32) == 0);
    CHECK_EQ_INT(c1.n, c2.n);
    free(c1.h);
    free(c2.h);
    free(da);
    free(db);
    free(dc);
    pd_test_rmtree(dir);
    free(a);
    free(b);
    free(c);
    free(dir);
}

/* Everything a generated corpus must satisfy. */
static void check_corpus(const corpus *c, const char *area)
{
    size_t members = 0, sizes[11] = {0};
    pd_area_key area_key;
    REQUIRE_VOID(pd_area_parse(area, &area_key));
    CHECK(!c->overflow);
    /* NIK uniqueness and serials: (first 12 digits) → highest serial, count */
    size_t cap = 1;
    for (size_t i = 0; i < c->n; i++)
        cap += (size_t)c->h[i].nm;
    char (*niks)[17] = calloc(cap, sizeof *niks);
    size_t nniks = 0;
    for (size_t i = 0; i < c->n; i++) {
        const hh *h = &c->h[i];
        /* areas: real, nested, in the generated area */
        CHECK(pd_area_exists(h->prov) && pd_area_exists(h->kab) && pd_area_exists(h->kec) &&
              pd_area_exists(h->desa));
        CHECK(strncmp(h->desa, h->kec, 8) == 0 && strncmp(h->kec, h->kab, 5) == 0 &&
              strncmp(h->kab, h->prov, 2) == 0);
        pd_area_key dk;
        pd_area_parse(h->desa, &dk);
        CHECK(pd_area_contains(area_key, dk));
        /* ids */
        char digits[11];
        snprintf(digits, sizeof digits, "%.2s%.2s%.2s%.4s", h->desa, h->desa + 3, h->desa + 6,
                 h->desa + 9);
        CHECK(strlen(h->id) == 16 && strncmp(h->id, digits, 10) == 0);
        /* size */
        CHECK(h->count >= 1 && h->count <= 10);
        CHECK_EQ_INT(h->nm, h->count);
        if (h->count >= 1 && h->count <= 10)
            sizes[h->count]++;
        members += (size_t)h->nm;
        /* GPS inside the desa's shape */
        const shape *s = NULL;
        for (size_t k = 0; k < c->ns; k++)
            if (!strcmp(c->s[k].code, h->desa))
                s = &c->s[k];
        CHECK(s != NULL);
        if (s)
            CHECK(h->lat > s->min_lat && h->lat < s->max_lat && h->lon > s->min_lon &&
                  h->lon < s->max_lon);
        /* SLS, address, welfare rank */
        int rt = 0, rw = 0;
        CHECK(sscanf(h->sls, "RT %3d / RW %3d", &rt, &rw) == 2 && rt >= 1 && rw >= 1);
        CHECK(strlen(h->address) > 5);
        CHECK(h->desil >= 1 && h->desil <= 10);
        CHECK(h->percentile > (h->desil - 1) * 10 && h->percentile <= h->desil * 10);
        /* KK: 6-digit kecamatan of the household, a real issue date, a serial */
        CHECK(strlen(h->kk) == 16 && strncmp(h->kk, h->id, 6) == 0);
        int kd = (h->kk[6] - '0') * 10 + (h->kk[7] - '0'), km = (h->kk[8] - '0') * 10 + (h->kk[9] - '0');
        int ky = 2000 + (h->kk[10] - '0') * 10 + (h->kk[11] - '0');
        CHECK(real_date(ky, km, kd));
        CHECK(atoi(h->kk + 12) >= 1);
        CHECK(strcmp(h->head, h->m[0].name) == 0);

        /* the people */
        const mem *head = &h->m[0], *mother = NULL, *spouse = NULL;
        int heads = 0, spouses = 0;
        for (int j = 0; j < h->nm; j++) {
            const mem *m = &h->m[j];
            if (m->rel == PD_REL_HEAD)
                heads++;
            if (m->rel == PD_REL_SPOUSE)
                spouses++, spouse = m;
        }
        CHECK_EQ_INT(heads, 1);
        CHECK(spouses <= 1);
        CHECK_EQ_INT(head->rel, PD_REL_HEAD);
        if (head->sex == PD_SEX_FEMALE)
            mother = head;
        else if (spouse && spouse->sex == PD_SEX_FEMALE)
            mother = spouse;
        CHECK(age(head->birth) >= 17);
        if (spouse)
            CHECK(age(spouse->birth) >= 17);
        for (int j = 0; j < h->nm; j++) {
            const mem *m = &h->m[j];
            char want[48];
            snprintf(want, sizeof want, "%s%02d", h->id, j + 1);
            CHECK(strcmp(m->id, want) == 0 && m->no == j + 1);
            CHECK(m->sex == PD_SEX_MALE || m->sex == PD_SEX_FEMALE);
            CHECK(strcmp(m->kk, h->kk) == 0);
            int by, bmo, bd;
            ymd(m->birth, &by, &bmo, &bd);
            CHECK(real_date(by, bmo, bd));
            CHECK(age(m->birth) >= 0 && age(m->birth) <= 100);
            if (age(m->birth) < 17)
                CHECK_EQ_INT(m->marital, PD_MARITAL_SINGLE);
            if (m->rel == PD_REL_CHILD) {
                CHECK(years_between(head->birth, m->birth) >= 0);
                if (mother) {
                    int at = years_between(mother->birth, m->birth);
                    CHECK(at >= 17 && at <= 45);
                    if (at < 17 || at > 45)
                        fprintf(stderr, "   %s: mother %s, child %s\n", m->id, mother->birth,
                                m->birth);
                }
            }
            if (m->rel == PD_REL_GRANDCHILD)
                CHECK(years_between(head->birth, m->birth) >= 34);
            if (m->rel == PD_REL_PARENT)
                CHECK(years_between(m->birth, head->birth) >= 15);
            if (m->rel == PD_REL_PARENT_IN_LAW && spouse)
                CHECK(years_between(m->birth, spouse->birth) >= 15);
            /* NIK */
            if (!strcmp(m->nik, "9999999999999995")) {
                CHECK(age(m->birth) < 17);
                continue;
            }
            if (!strcmp(m->nik, "9999999999999996")) {
                CHECK(age(m->birth) >= 17);
                continue;
            }
            CHECK(strlen(m->nik) == 16);
            char kec[PD_AREA_CODE_MAX];
            CHECK_EQ_INT(pd_area_code_from_digits(m->nik, 6, kec), PD_OK);
            CHECK(pd_area_exists(kec));
            CHECK(strncmp(kec, h->kab, 5) == 0); /* its own kecamatan or a neighbour */
            int nd = (m->nik[6] - '0') * 10 + (m->nik[7] - '0');
            int nm = (m->nik[8] - '0') * 10 + (m->nik[9] - '0');
            int ny = (m->nik[10] - '0') * 10 + (m->nik[11] - '0');
            if (m->sex == PD_SEX_FEMALE) {
                CHECK(nd > 40);
                nd -= 40;
            } else {
                CHECK(nd <= 31);
            }
            CHECK(nd == bd && nm == bmo && ny == by % 100);
            CHECK(atoi(m->nik + 12) >= 1);
            memcpy(niks[nniks++], m->nik, 17);
        }
    }
    /* NIKs unique; serials per (kecamatan, date) run 0001..k without gaps */
    qsort(niks, nniks, sizeof *niks, (int (*)(const void *, const void *))strcmp);
    for (size_t i = 0; i < nniks; i++) {
        if (i > 0)
            CHECK(strcmp(niks[i - 1], niks[i]) != 0);
        bool first = i == 0 || strncmp(niks[i - 1], niks[i], 12) != 0;
        int serial = atoi(niks[i] + 12), prev = first ? 0 : atoi(niks[i - 1] + 12);
        CHECK(serial == prev + 1);
    }
    free(niks);
    CHECK(c->n > 0);
    double mean = (double)members / (double)c->n;
    fprintf(stderr, "   %s: %zu households, %zu members, mean %.2f; sizes", area, c->n, members,
            mean);
    for (int i = 1; i <= 10; i++)
        fprintf(stderr, " %zu", sizes[i]);
    fprintf(stderr, "\n");
}

static void one_kecamatan_is_consistent(void)
{
    corpus c;
    REQUIRE_OK(generate("32.73.01", 1, 0, &c, NULL));
    check_corpus(&c, "32.73.01");
    CHECK_EQ_INT(c.ns, 4); /* Sukasari has 4 kelurahan: one shape each */
    free(c.h);
}

static void sizes_follow_a_realistic_distribution(void)
{
    corpus c;
    REQUIRE_OK(generate("33.74.01", 7, 6000, &c, NULL)); /* Kota Semarang, Semarang Tengah */
    CHECK_EQ_INT(c.n, 6000);
    check_corpus(&c, "33.74.01");
    size_t sizes[11] = {0}, members = 0, distinct = 0;
    for (size_t i = 0; i < c.n; i++)
        sizes[c.h[i].count]++, members += (size_t)c.h[i].count;
    double mean = (double)members / (double)c.n;
    CHECK(mean >= 3.2 && mean <= 4.0);
    for (int s = 1; s <= 10; s++)
        CHECK(sizes[s] > 0);
    CHECK(sizes[3] > sizes[7] && sizes[2] > sizes[8] && sizes[4] > sizes[10]);
    /* name variety: enough distinct names for search tests */
    char (*names)[PD_PRELIST_MAX_TEXT + 1] = malloc(members * sizeof *names);
    size_t k = 0;
    for (size_t i = 0; i < c.n; i++)
        for (int j = 0; j < c.h[i].nm; j++)
            memcpy(names[k++], c.h[i].m[j].name, sizeof names[0]);
    qsort(names, k, sizeof *names, (int (*)(const void *, const void *))strcmp);
    for (size_t i = 0; i < k; i++)
        distinct += i == 0 || strcmp(names[i - 1], names[i]) != 0;
    CHECK(distinct >= 400);
    free(names);
    free(c.h);
}

/* The share of heads whose name matches pred. */
static double share(const corpus *c, bool (*pred)(const char *))
{
    size_t n = 0;
    for (size_t i = 0; i < c->n; i++)
        n += pred(c->h[i].head);
    return c->n ? (double)n / (double)c->n : 0;
}

static bool has_marga(const char *name)
{
    const char *last = strrchr(name, ' ');
    for (size_t i = 0; last && i < pd_names_batak_marga.n; i++)
        if (!strcmp(last + 1, pd_names_batak_marga.v[i]))
            return true;
    return false;
}
static bool has_bin(const char *name)
{
    return strstr(name, " bin ") || strstr(name, " binti ");
}
static bool is_balinese(const char *name)
{
    return !strncmp(name, "I ", 2) || !strncmp(name, "Ni ", 3);
}

static const char *first_kecamatan(const char *regency, char out[PD_AREA_CODE_MAX])
{
    pd_area a[1];
    size_t n = 0;
    pd_area_children(regency, a, 1, &n, NULL);
    snprintf(out, PD_AREA_CODE_MAX, "%s", n ? a[0].code : "");
    return out;
}

static void names_follow_the_region(void)
{
    char kec[PD_AREA_CODE_MAX];
    corpus c;
    /* Sumatera Utara: Batak marga */
    REQUIRE_OK(generate(first_kecamatan("12.12", kec), 3, 800, &c, NULL));
    check_corpus(&c, kec);
    CHECK(share(&c, has_marga) > 0.3);
    free(c.h);
    /* Aceh: "bin" / "binti" */
    REQUIRE_OK(generate(first_kecamatan("11.06", kec), 3, 800, &c, NULL));
    check_corpus(&c, kec);
    CHECK(share(&c, has_bin) > 0.5);
    free(c.h);
    /* Bali: birth-order names */
    REQUIRE_OK(generate(first_kecamatan("51.71", kec), 3, 800, &c, NULL));
    check_corpus(&c, kec);
    CHECK(share(&c, is_balinese) > 0.7);
    free(c.h);
    /* Papua Pegunungan and NTT: the generator works at the edges of the map too */
    REQUIRE_OK(generate(first_kecamatan("95.01", kec), 3, 300, &c, NULL));
    check_corpus(&c, kec);
    free(c.h);
    REQUIRE_OK(generate(first_kecamatan("53.07", kec), 3, 300, &c, NULL));
    check_corpus(&c, kec);
    free(c.h);
}

static void a_desa_alone_and_an_exact_count(void)
{
    corpus c;
    REQUIRE_OK(generate("32.73.01.1003", 11, 37, &c, NULL));
    CHECK_EQ_INT(c.n, 37);
    CHECK_EQ_INT(c.ns, 1);
    check_corpus(&c, "32.73.01.1003");
    free(c.h);
}

static void bad_areas_are_refused(void)
{
    pd_error e = {0};
    pd_prelist_gen_options o = {.seed = 1};
    CHECK_EQ_INT(pd_prelist_generate("32", &o, NULL, &e), PD_ERR_INVALID);
    CHECK(strstr(e.msg, "kecamatan") != NULL);
    CHECK_EQ_INT(pd_prelist_generate("32.73", &o, NULL, &e), PD_ERR_INVALID);
    CHECK_EQ_INT(pd_prelist_generate("32.73.99", &o, NULL, &e), PD_ERR_INVALID);
    CHECK_EQ_INT(pd_prelist_generate("32.73.01.9999", &o, NULL, &e), PD_ERR_INVALID);
    CHECK_EQ_INT(pd_prelist_generate(NULL, &o, NULL, &e), PD_ERR_INVALID);
    o.households = PD_PRELIST_MAX_HOUSEHOLDS + 1;
    CHECK_EQ_INT(pd_prelist_generate("32.73.01", &o, NULL, &e), PD_ERR_INVALID);
}

static int stop_at_five(void *ud, const pd_prelist_household *h, pd_error *err)
{
    (void)h;
    int *n = ud;
    if (++*n == 5)
        return pd_error_set(err, PD_ERR_DENIED, "stop here");
    return PD_OK;
}

static void a_handler_can_stop_generation(void)
{
    int n = 0;
    pd_prelist_handler h = {NULL, stop_at_five, NULL, &n};
    pd_error e = {0};
    CHECK_EQ_INT(pd_prelist_generate("32.73.01", NULL, &h, &e), PD_ERR_DENIED);
    CHECK_EQ_INT(n, 5);
    CHECK(strcmp(e.msg, "stop here") == 0);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    RUN(same_seed_gives_the_same_bytes);
    RUN(one_kecamatan_is_consistent);
    RUN(sizes_follow_a_realistic_distribution);
    RUN(names_follow_the_region);
    RUN(a_desa_alone_and_an_exact_count);
    RUN(bad_areas_are_refused);
    RUN(a_handler_can_stop_generation);
    return pd_test_finish();
}

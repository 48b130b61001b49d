/*
 * test_prelist_split.c — sharing an area among enumerators (prelist/split.c): every household
 * lands in exactly one part, SLS units stay whole, the parts are balanced (the largest within one
 * unit of the ideal), each part is a package signed by the issuer and carries the shapes of its
 * desa, and impossible splits are refused without leaving files behind.
 */
#include "prelist_fixture.h"
#include "testutil.h"

#include <dirent.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE_VOID(cond)                                                                    \
    do {                                                                                      \
        pd_test_checks++;                                                                     \
        if (!(cond)) {                                                                        \
            pd_test_failures++;                                                               \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #cond);        \
            return;                                                                           \
        }                                                                                     \
    } while (0)

static char *dir;
static uint8_t pk[32], sk[64];

/* what one part holds */
typedef struct seen {
    char (*ids)[24];
    size_t n, cap;
    char units[512][96];
    size_t nunits;
    char shapes[64][PD_AREA_CODE_MAX];
    size_t nshapes;
    unsigned members;
} seen;

static int s_shape(void *ud, const pd_prelist_shape *s, pd_error *e)
{
    (void)e;
    seen *x = ud;
    if (x->nshapes < 64)
        snprintf(x->shapes[x->nshapes++], PD_AREA_CODE_MAX, "%s", s->code);
    return PD_OK;
}

static int s_household(void *ud, const pd_prelist_household *h, pd_error *e)
{
    (void)e;
    seen *x = ud;
    if (x->n == x->cap) {
        x->cap = x->cap ? 2 * x->cap : 256;
        x->ids = realloc(x->ids, x->cap * sizeof *x->ids);
    }
    snprintf(x->ids[x->n++], 24, "%s", h->id);
    char unit[96];
    snprintf(unit, sizeof unit, "%s|%s", h->desa, h->sls);
    size_t i = 0;
    while (i < x->nunits && strcmp(x->units[i], unit))
        i++;
    if (i == x->nunits && x->nunits < 512)
        snprintf(x->units[x->nunits++], 96, "%s", unit);
    return PD_OK;
}

static int s_member(void *ud, const pd_prelist_member *m, pd_error *e)
{
    (void)m;
    (void)e;
    ((seen *)ud)->members++;
    return PD_OK;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void parts_are_whole_balanced_and_signed(void)
{
    char *in = pd_test_path(dir, "kec.pdpl"), *out = pd_test_path(dir, "parts");
    REQUIRE_VOID(mkdir(out, 0755) == 0);
    pd_prelist_gen_options o = {.seed = 12, .households = 900};
    pd_prelist_info info;
    REQUIRE_VOID(pd_prelist_generate_file(in, "32.73.01", &o, sk, &info, NULL) == PD_OK);
    seen all = {0};
    pd_prelist_handler h = {s_shape, s_household, s_member, &all};
    REQUIRE_VOID(pd_prelist_read(in, pk, &h, NULL, NULL) == PD_OK);

    pd_prelist_split *sp = NULL;
    pd_error e = {0};
    const unsigned n = 5;
    CHECK_EQ_INT(pd_prelist_split_file(in, n, out, sk, 0, &sp, &e), PD_OK);
    REQUIRE_VOID(sp != NULL);
    CHECK_EQ_INT(sp->nparts, n);
    CHECK_EQ_INT(sp->nunits, all.nunits);
    uint32_t largest_unit = 0, total = 0, most = 0, least = UINT32_MAX;
    for (size_t u = 0; u < sp->nunits; u++) {
        if (sp->units[u].households > largest_unit)
            largest_unit = sp->units[u].households;
        if (u > 0) /* dealt largest first */
            CHECK(sp->units[u - 1].households >= sp->units[u].households);
    }
    seen parts[5];
    memset(parts, 0, sizeof parts);
    char (*every)[24] = malloc(info.households * sizeof *every);
    size_t nevery = 0;
    unsigned members = 0;
    for (unsigned p = 0; p < n; p++) {
        const pd_prelist_part *part = &sp->parts[p];
        char want[40];
        snprintf(want, sizeof want, "32.73.01:e%02u", p + 1);
        CHECK(strcmp(part->area, want) == 0);
        pd_prelist_handler hp = {s_shape, s_household, s_member, &parts[p]};
        pd_prelist_info pi;
        CHECK_EQ_INT(pd_prelist_read(part->path, pk, &hp, &pi, &e), PD_OK);
        CHECK(strcmp(pi.area, want) == 0);
        CHECK_EQ_INT(pi.issued_at, info.issued_at);
        CHECK_EQ_INT(pi.households, part->households);
        CHECK_EQ_INT(pi.members, part->members);
        CHECK_EQ_INT(parts[p].n, part->households);
        CHECK_EQ_INT(parts[p].nunits, part->units);
        total += part->households;
        members += parts[p].members;
        if (part->households > most)
            most = part->households;
        if (part->households < least)
            least = part->households;
        for (size_t i = 0; i < parts[p].n && nevery < info.households; i++)
            memcpy(every[nevery++], parts[p].ids[i], 24);
        /* each desa of the part has its shape, and no other shape is there */
        for (size_t u = 0; u < parts[p].nunits; u++) {
            bool found = false;
            for (size_t k = 0; k < parts[p].nshapes; k++)
                found |= !strncmp(parts[p].units[u], parts[p].shapes[k], 13);
            CHECK(found);
        }
        for (size_t k = 0; k < parts[p].nshapes; k++) {
            bool used = false;
            for (size_t u = 0; u < parts[p].nunits; u++)
                used |= !strncmp(parts[p].units[u], parts[p].shapes[k], 13);
            CHECK(used);
        }
    }
    /* every household exactly once */
    CHECK_EQ_INT(total, info.households);
    CHECK_EQ_INT(members, info.members);
    CHECK_EQ_INT(nevery, info.households);
    qsort(every, nevery, sizeof *every, cmp_id);
    qsort(all.ids, all.n, sizeof *all.ids, cmp_id);
    CHECK_EQ_INT(nevery, all.n);
    for (size_t i = 0; i < nevery && i < all.n; i++)
        CHECK(strcmp(every[i], all.ids[i]) == 0);
    /* SLS units whole: no unit in two parts */
    for (unsigned p = 0; p < n; p++)
        for (unsigned q = p + 1; q < n; q++)
            for (size_t a = 0; a < parts[p].nunits; a++)
                for (size_t b = 0; b < parts[q].nunits; b++)
                    CHECK(strcmp(parts[p].units[a], parts[q].units[b]) != 0);
    /* balanced: greedy largest-first keeps the spread within one unit */
    fprintf(stderr, "   %u households in %zu units over %u parts: %u..%u (largest unit %u)\n",
            total, sp->nunits, n, least, most, largest_unit);
    CHECK(most - least <= largest_unit);
    CHECK(most <= (total + n - 1) / n + largest_unit);

    /* a part imports into a device store next to nothing else */
    char *home = pd_test_path(dir, "home");
    pd_store *s = NULL;
    REQUIRE_VOID(pd_store_create(&s, home, PD_FIXTURE_PIN, &PD_KDF_TEST, &e) == PD_OK);
    pd_prelist_import_stats st;
    CHECK_EQ_INT(pd_prelist_import(s, sp->parts[0].path, pk, &st), PD_OK);
    CHECK_EQ_INT(st.households_added, sp->parts[0].households);
    pd_store_close(s);

    for (unsigned p = 0; p < n; p++)
        free(parts[p].ids);
    free(all.ids);
    free(every);
    pd_prelist_split_free(sp);
    free(home);
    free(in);
    free(out);
}

static size_t files_in(const char *path)
{
    DIR *d = opendir(path);
    size_t n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static void impossible_splits_are_refused(void)
{
    char *in = pd_test_path(dir, "small.pdpl"), *out = pd_test_path(dir, "small");
    REQUIRE_VOID(mkdir(out, 0755) == 0);
    pd_prelist_gen_options o = {.seed = 3, .households = 12};
    REQUIRE_VOID(pd_prelist_generate_file(in, "32.73.01.1001", &o, sk, NULL, NULL) == PD_OK);
    pd_prelist_split *sp = NULL;
    pd_error e = {0};
    /* 12 households make one or two RT: not enough for 10 enumerators */
    CHECK_EQ_INT(pd_prelist_split_file(in, 10, out, sk, 0, &sp, &e), PD_ERR_INVALID);
    CHECK(strstr(e.msg, "cannot be shared") != NULL);
    CHECK(sp == NULL);
    CHECK_EQ_INT(pd_prelist_split_file(in, 0, out, sk, 0, &sp, &e), PD_ERR_INVALID);
    CHECK_EQ_INT(pd_prelist_split_file(in, PD_PRELIST_MAX_PARTS + 1, out, sk, 0, &sp, &e),
                 PD_ERR_INVALID);
    /* the input must verify with the issuer's key */
    uint8_t pk2[32], sk2[64];
    pd_fixture_issuer(2, pk2, sk2);
    CHECK_EQ_INT(pd_prelist_split_file(in, 1, out, sk2, 0, &sp, &e), PD_ERR_SIGNATURE);
    CHECK_EQ_INT(files_in(out), 0);
    /* one enumerator: the whole area, re-signed as part e01 */
    CHECK_EQ_INT(pd_prelist_split_file(in, 1, out, sk, 0, &sp, &e), PD_OK);
    CHECK(sp && sp->parts[0].households == 12);
    CHECK_EQ_INT(files_in(out), 1);
    pd_prelist_split_free(sp);
    free(in);
    free(out);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    dir = pd_test_tmpdir("prelist-split");
    pd_fixture_issuer(1, pk, sk);
    RUN(parts_are_whole_balanced_and_signed);
    RUN(impossible_splits_are_refused);
    pd_test_rmtree(dir);
    free(dir);
    return pd_test_finish();
}

/*
 * split.c — sharing one area's prelist among enumerators: whole SLS units (RT/RW of a desa),
 * balanced by household count, each part a package of its own signed by the same issuer.
 *
 * Two streaming passes over the verified input: the first counts households and members per
 * (desa, SLS); the units are then dealt greedily, largest first, each to the part with the fewest
 * households so far (ties to the lower part; units of equal size in code order), which keeps the
 * largest part within one unit of the ideal. The second pass writes every record to its part's
 * writer (shapes to every part that has households in that area). Nothing but the unit table is
 * held in memory.
 */
#include "prelist_internal.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct unit_map {
    pd_prelist_unit *units;
    size_t n, cap;
    uint32_t *slots; /* index + 1, 0 empty */
    size_t nslots;
} unit_map;

static uint64_t fnv(const char *a, const char *b)
{
    uint64_t h = UINT64_C(14695981039346656037);
    for (const char *p = a; *p; p++)
        h = (h ^ (uint8_t)*p) * UINT64_C(1099511628211);
    h = (h ^ 0x1f) * UINT64_C(1099511628211);
    for (const char *p = b; *p; p++)
        h = (h ^ (uint8_t)*p) * UINT64_C(1099511628211);
    return h;
}

static bool map_rehash(unit_map *m)
{
    size_t ns = m->nslots ? m->nslots * 2 : 1024;
    uint32_t *slots = calloc(ns, sizeof *slots);
    if (!slots)
        return false;
    for (size_t i = 0; i < m->n; i++) {
        size_t j = fnv(m->units[i].desa, m->units[i].sls) & (ns - 1);
        while (slots[j])
            j = (j + 1) & (ns - 1);
        slots[j] = (uint32_t)i + 1;
    }
    free(m->slots);
    m->slots = slots;
    m->nslots = ns;
    return true;
}

/* The unit of (desa, sls), added when new; NULL when out of memory. */
static pd_prelist_unit *map_get(unit_map *m, const char *desa, const char *sls, bool add)
{
    if (add && (m->n + 1) * 2 > m->nslots && !map_rehash(m))
        return NULL;
    if (!m->nslots)
        return NULL;
    size_t j = fnv(desa, sls) & (m->nslots - 1);
    while (m->slots[j]) {
        pd_prelist_unit *u = &m->units[m->slots[j] - 1];
        if (!strcmp(u->desa, desa) && !strcmp(u->sls, sls))
            return u;
        j = (j + 1) & (m->nslots - 1);
    }
    if (!add)
        return NULL;
    if (m->n == m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        pd_prelist_unit *u = realloc(m->units, cap * sizeof *u);
        if (!u)
            return NULL;
        m->units = u;
        m->cap = cap;
    }
    pd_prelist_unit *u = &m->units[m->n];
    memset(u, 0, sizeof *u);
    snprintf(u->desa, sizeof u->desa, "%s", desa);
    snprintf(u->sls, sizeof u->sls, "%s", sls);
    m->slots[j] = (uint32_t)++m->n;
    return u;
}

/* ---- pass 1: count ------------------------------------------------------------------------- */

typedef struct count_ctx {
    unit_map map;
    pd_prelist_unit *cur;
} count_ctx;

static int count_household(void *ud, const pd_prelist_household *h, pd_error *err)
{
    count_ctx *c = ud;
    c->cur = map_get(&c->map, h->desa, h->sls, true);
    if (!c->cur)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory");
    c->cur->households++;
    return PD_OK;
}

static int count_member(void *ud, const pd_prelist_member *m, pd_error *err)
{
    (void)m;
    (void)err;
    count_ctx *c = ud;
    c->cur->members++;
    return PD_OK;
}

/* ---- pass 2: write -------------------------------------------------------------------------- */

typedef struct write_ctx {
    unit_map *map;
    pd_prelist_writer **w;
    unsigned n;
    unsigned cur;
} write_ctx;

static int write_shape(void *ud, const pd_prelist_shape *s, pd_error *err)
{
    write_ctx *c = ud;
    pd_area_key shape_key;
    pd_area_parse(s->code, &shape_key);
    /* to every part with a unit inside this area */
    bool *has = calloc(c->n, sizeof *has);
    if (!has)
        return pd_error_set(err, PD_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < c->map->n; i++) {
        pd_area_key k;
        pd_area_parse(c->map->units[i].desa, &k);
        if (pd_area_contains(shape_key, k))
            has[c->map->units[i].part] = true;
    }
    int rc = PD_OK;
    for (unsigned p = 0; rc == PD_OK && p < c->n; p++)
        if (has[p])
            rc = pd_prelist_writer_shape(c->w[p], s, err);
    free(has);
    return rc;
}

static int write_household(void *ud, const pd_prelist_household *h, pd_error *err)
{
    write_ctx *c = ud;
    pd_prelist_unit *u = map_get(c->map, h->desa, h->sls, false);
    if (!u) /* the file changed between the passes; its hash check would catch it too */
        return pd_error_set(err, PD_ERR_CORRUPT, "household %s: unit not seen before", h->id);
    c->cur = u->part;
    return pd_prelist_writer_household(c->w[c->cur], h, err);
}

static int write_member(void *ud, const pd_prelist_member *m, pd_error *err)
{
    write_ctx *c = ud;
    return pd_prelist_writer_member(c->w[c->cur], m, err);
}

/* ---- dealing -------------------------------------------------------------------------------- */

static int unit_order(const void *a, const void *b)
{
    const pd_prelist_unit *x = a, *y = b;
    if (x->households != y->households)
        return x->households > y->households ? -1 : 1;
    int c = strcmp(x->desa, y->desa);
    return c ? c : strcmp(x->sls, y->sls);
}

void pd_prelist_split_free(pd_prelist_split *s)
{
    if (!s)
        return;
    for (unsigned i = 0; s->parts && i < s->nparts; i++)
        free(s->parts[i].path);
    free(s->parts);
    free(s->units);
    free(s);
}

int pd_prelist_split_file(const char *path, unsigned n, const char *out_dir,
                          const uint8_t issuer_sk[PD_SECKEY_BYTES], int64_t issued_at,
                          pd_prelist_split **out, pd_error *err)
{
    *out = NULL;
    if (n < 1 || n > PD_PRELIST_MAX_PARTS)
        return pd_error_set(err, PD_ERR_INVALID, "enumerators must be 1 to %d, not %u",
                            PD_PRELIST_MAX_PARTS, n);
    uint8_t pk[PD_PUBKEY_BYTES];
    crypto_sign_ed25519_sk_to_pk(pk, issuer_sk);
    count_ctx cc = {0};
    pd_prelist_writer **w = NULL;
    pd_prelist_split *res = NULL;
    pd_prelist_info info;
    pd_prelist_handler h1 = {NULL, count_household, count_member, &cc};
    int rc = pd_prelist_read(path, pk, &h1, &info, err);
    if (rc != PD_OK)
        goto out;
    if (cc.map.n < n) {
        rc = pd_error_set(err, PD_ERR_INVALID,
                          "%s: %zu SLS unit%s cannot be shared among %u enumerators", path,
                          cc.map.n, cc.map.n == 1 ? "" : "s", n);
        goto out;
    }
    /* deal the units: largest first, to the part with the fewest households */
    qsort(cc.map.units, cc.map.n, sizeof *cc.map.units, unit_order);
    if (!map_rehash(&cc.map)) { /* the slots point at the old order */
        rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        goto out;
    }
    res = calloc(1, sizeof *res);
    if (!res || !(res->parts = calloc(n, sizeof *res->parts)) ||
        !(w = calloc(n, sizeof *w))) {
        rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory");
        goto out;
    }
    res->nparts = n;
    for (size_t i = 0; i < cc.map.n; i++) {
        unsigned best = 0;
        for (unsigned p = 1; p < n; p++)
            if (res->parts[p].households < res->parts[best].households)
                best = p;
        cc.map.units[i].part = best;
        res->parts[best].households += cc.map.units[i].households;
        res->parts[best].members += cc.map.units[i].members;
        res->parts[best].units++;
    }
    /* one writer per part */
    if (!issued_at)
        issued_at = info.issued_at;
    for (unsigned p = 0; p < n; p++) {
        pd_prelist_part *part = &res->parts[p];
        int len = snprintf(part->area, sizeof part->area, "%s:e%02u", info.area, p + 1);
        if (len < 0 || (size_t)len >= sizeof part->area) {
            rc = pd_error_set(err, PD_ERR_TOOBIG, "%s: area id '%s' is too long to split", path,
                              info.area);
            goto out;
        }
        char file[PD_PRELIST_AREA_ID_MAX + 16];
        snprintf(file, sizeof file, "%s.pdpl", part->area);
        for (char *q = file; *q; q++)
            if (*q == ':')
                *q = '-';
        size_t plen = strlen(out_dir) + strlen(file) + 2;
        part->path = malloc(plen);
        if (!part->path) {
            rc = pd_error_set(err, PD_ERR_NOMEM, "out of memory");
            goto out;
        }
        snprintf(part->path, plen, "%s/%s", out_dir, file);
        rc = pd_prelist_writer_open(&w[p], part->path, issuer_sk, part->area, issued_at, err);
        if (rc != PD_OK)
            goto out;
    }
    write_ctx wc = {&cc.map, w, n, 0};
    pd_prelist_handler h2 = {write_shape, write_household, write_member, &wc};
    rc = pd_prelist_read(path, pk, &h2, NULL, err);
    unsigned finished = 0;
    for (; rc == PD_OK && finished < n; finished++) {
        pd_prelist_info pi;
        rc = pd_prelist_writer_finish(w[finished], &pi, err);
        if (rc == PD_OK)
            res->parts[finished].shapes = pi.shapes;
    }
    if (rc != PD_OK) { /* remove the parts this call put in place: all or nothing */
        for (unsigned p = 0; p + 1 < finished; p++)
            unlink(res->parts[p].path);
        goto out;
    }
    res->units = cc.map.units;
    res->nunits = cc.map.n;
    cc.map.units = NULL;
    *out = res;
    res = NULL;
out:
    for (unsigned p = 0; w && p < n; p++)
        pd_prelist_writer_free(w[p]);
    free(w);
    free(cc.map.units);
    free(cc.map.slots);
    pd_prelist_split_free(res);
    return rc;
}

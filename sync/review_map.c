/*
 * review_map.c — what a supervisor looks at before deciding: the warnings of a batch and its map.
 *
 * Warnings come from two places. Visit-level ones were worked out by the enumerator's device and
 * travel inside each visit op (the "warnings" member of its JSON: gps_accuracy, gps_mock, ...).
 * Batch-level ones can only be seen across visits, so they are worked out here, over the decoded
 * ops: visits less than 2 minutes apart, more than 5 km apart within a minute, a visit point
 * outside the area's outline (from the supervisor's own prelist: table area_shape), a NIK given to
 * two different members (in the batch, or already held by another member here), and a household
 * visited twice. They are advice for a person, never refusals.
 *
 * The map is a standalone SVG: the area outline(s), the visit points in time order joined by a thin
 * route line, coloured by outcome, a red ring on every visit with a warning, a legend and a scale
 * bar. Each point has a <title> (hover text) naming the visit, household, time and warnings.
 */
#include "keys.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SHAPE_POINTS 20000
#define DEG2RAD (3.14159265358979323846 / 180.0)

typedef struct visit_pt {
    size_t op;
    char household[PD_ID_MAX];
    char outcome[24];
    int64_t at;
    bool fix;
    double lat, lon;
    char warnings[256];
} visit_pt;

typedef struct shape {
    char code[32];
    size_t n;
    double *lat, *lon;
} shape;

typedef struct wlist {
    pd_review_warning *w;
    size_t n, cap;
    bool oom;
} wlist;

static void wadd(wlist *l, pd_review_warn_kind kind, size_t op, size_t other, const char *code,
                 const char *fmt, ...) PD_PRINTF(6, 7);

static void wadd(wlist *l, pd_review_warn_kind kind, size_t op, size_t other, const char *code,
                 const char *fmt, ...)
{
    if (l->oom)
        return;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        pd_review_warning *nw = realloc(l->w, cap * sizeof *nw);
        if (!nw) {
            l->oom = true;
            return;
        }
        l->w = nw;
        l->cap = cap;
    }
    pd_review_warning *w = &l->w[l->n++];
    memset(w, 0, sizeof *w);
    w->kind = kind;
    w->op = op;
    w->other = other;
    snprintf(w->code, sizeof w->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->text, sizeof w->text, fmt, ap);
    va_end(ap);
}

/* A text value as a NUL-terminated copy (NULL if not text). */
static char *text_of(const pd_value *v)
{
    if (v->type != PD_VAL_TEXT)
        return NULL;
    char *s = malloc(v->len + 1);
    if (!s)
        return NULL;
    memcpy(s, v->p, v->len);
    s[v->len] = '\0';
    return s;
}

static cJSON *json_of(const pd_value *v)
{
    char *s = text_of(v);
    if (!s)
        return NULL;
    cJSON *j = cJSON_Parse(s);
    free(s);
    if (j && !cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return NULL;
    }
    return j;
}

static void json_str(const cJSON *o, const char *name, char *out, size_t cap)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    snprintf(out, cap, "%s", cJSON_IsString(it) && it->valuestring ? it->valuestring : "");
}

static bool json_num(const cJSON *o, const char *name, double *out)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, name);
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return false;
    *out = it->valuedouble;
    return true;
}

/* The visits of a batch, in op order. */
static int collect_visits(const pd_batch *b, visit_pt **out, size_t *count)
{
    size_t n;
    const pd_op *ops = pd_batch_ops(b, &n);
    visit_pt *v = calloc(n ? n : 1, sizeof *v);
    size_t k = 0;
    if (!v)
        return PD_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ops[i].kind, "visit") != 0)
            continue;
        cJSON *j = json_of(&ops[i].new_value);
        if (!j)
            continue;
        visit_pt *p = &v[k++];
        p->op = i;
        json_str(j, "household_id", p->household, sizeof p->household);
        json_str(j, "outcome", p->outcome, sizeof p->outcome);
        json_str(j, "warnings", p->warnings, sizeof p->warnings);
        double at = 0;
        json_num(j, "visited_at", &at);
        p->at = (int64_t)at;
        p->fix = json_num(j, "lat", &p->lat) && json_num(j, "lon", &p->lon) && fabs(p->lat) <= 90 &&
                 fabs(p->lon) <= 180;
        cJSON_Delete(j);
    }
    *out = v;
    *count = k;
    return PD_OK;
}

/* ---- Area outlines
 * ------------------------------------------------------------------------------- */

static void shapes_free(shape *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(s[i].lat);
        free(s[i].lon);
    }
    free(s);
}

/* Parse "lat lon,lat lon,..." (bounded). */
static bool parse_ring(const char *text, shape *s)
{
    size_t cap = 0;
    const char *p = text;
    while (*p) {
        char *end;
        double lat = strtod(p, &end);
        if (end == p)
            return false;
        p = end;
        double lon = strtod(p, &end);
        if (end == p || !isfinite(lat) || !isfinite(lon))
            return false;
        p = end;
        while (*p == ' ')
            p++;
        if (*p == ',')
            p++;
        if (s->n == cap) {
            if (cap >= MAX_SHAPE_POINTS)
                return false;
            cap = cap ? cap * 2 : 16;
            double *a = realloc(s->lat, cap * sizeof *a);
            if (!a)
                return false;
            s->lat = a;
            double *o = realloc(s->lon, cap * sizeof *o);
            if (!o)
                return false;
            s->lon = o;
        }
        s->lat[s->n] = lat;
        s->lon[s->n] = lon;
        s->n++;
    }
    return s->n >= 3;
}

/* The outlines held for codes under `prefix` ("" for all). */
static int load_shapes(pd_store *store, const char *prefix, shape **out, size_t *count)
{
    *out = NULL;
    *count = 0;
    if (!store)
        return PD_OK;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(pd_store_sqlite(store),
                                "SELECT code, shape FROM area_shape WHERE substr(code, 1, "
                                "length(?1)) = ?1 ORDER BY code LIMIT 200",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "area_shape");
    sqlite3_bind_text(st, 1, prefix, -1, SQLITE_STATIC);
    shape *s = NULL;
    size_t n = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        shape *ns = realloc(s, (n + 1) * sizeof *ns);
        if (!ns)
            break;
        s = ns;
        memset(&s[n], 0, sizeof s[n]);
        snprintf(s[n].code, sizeof s[n].code, "%s", (const char *)sqlite3_column_text(st, 0));
        const char *ring = (const char *)sqlite3_column_text(st, 1);
        if (ring && parse_ring(ring, &s[n]))
            n++;
        else {
            free(s[n].lat);
            free(s[n].lon);
        }
    }
    sqlite3_finalize(st);
    *out = s;
    *count = n;
    return PD_OK;
}

static bool inside(const shape *s, double lat, double lon)
{
    bool in = false;
    for (size_t i = 0, j = s->n - 1; i < s->n; j = i++) {
        if ((s->lat[i] > lat) != (s->lat[j] > lat) &&
            lon < (s->lon[j] - s->lon[i]) * (lat - s->lat[i]) / (s->lat[j] - s->lat[i]) + s->lon[i])
            in = !in;
    }
    return in;
}

/* The household's desa from the store, if it is held here. */
static void household_desa(pd_store *store, const char *id, char *desa, size_t cap)
{
    desa[0] = '\0';
    if (!store)
        return;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(pd_store_sqlite(store), "SELECT desa FROM household WHERE id = ?1", -1,
                           &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            snprintf(desa, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    }
    sqlite3_finalize(st);
}

/* ---- Warnings
 * ------------------------------------------------------------------------------------ */

static int cmp_time(const void *a, const void *b)
{
    const visit_pt *x = *(visit_pt *const *)a, *y = *(visit_pt *const *)b;
    return (x->at > y->at) - (x->at < y->at);
}

static bool placeholder_nik(const char *nik)
{
    return !strncmp(nik, "99999999999999", 14);
}

typedef struct nik_use {
    char nik[24];
    char member[PD_ID_MAX];
    size_t op;
} nik_use;

static void nik_warnings(pd_store *store, const pd_op *ops, size_t n, wlist *l)
{
    nik_use *u = calloc(n ? n : 1, sizeof *u);
    size_t k = 0;
    if (!u) {
        l->oom = true;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(ops[i].entity, "member") != 0)
            continue;
        char nik[24] = "";
        if (!strcmp(ops[i].kind, "create")) {
            cJSON *j = json_of(&ops[i].new_value);
            if (j)
                json_str(j, "nik", nik, sizeof nik);
            cJSON_Delete(j);
        } else if (!strcmp(ops[i].kind, "set") && !strcmp(ops[i].field, "nik") &&
                   ops[i].new_value.type == PD_VAL_TEXT && ops[i].new_value.len < sizeof nik) {
            memcpy(nik, ops[i].new_value.p, ops[i].new_value.len);
            nik[ops[i].new_value.len] = '\0';
        }
        if (!nik[0] || placeholder_nik(nik))
            continue;
        bool reported = false;
        for (size_t m = 0; m < k && !reported; m++) {
            if (!strcmp(u[m].nik, nik) && strcmp(u[m].member, ops[i].target) != 0) {
                wadd(l, PD_REVIEW_WARN_DUP_NIK, i, u[m].op, "dup_nik",
                     "NIK %s given to member %.40s and to member %.40s", nik, u[m].member,
                     ops[i].target);
                reported = true;
            }
        }
        if (!reported && store) {
            sqlite3_stmt *st = NULL;
            if (sqlite3_prepare_v2(pd_store_sqlite(store),
                                   "SELECT id FROM member WHERE nik = ?1 AND id <> ?2 AND "
                                   "substr(id, 1, length(?3)) <> ?3 LIMIT 1",
                                   -1, &st, NULL) == SQLITE_OK) {
                /* a member of the same household (its id starts with the household id) moving
                 * between numbers is not a duplicate; the household id is the member id minus
                 * its 2-digit number */
                size_t tl = strlen(ops[i].target);
                char hh[PD_ID_MAX];
                snprintf(hh, sizeof hh, "%.*s", (int)(tl > 2 ? tl - 2 : tl), ops[i].target);
                sqlite3_bind_text(st, 1, nik, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 2, ops[i].target, -1, SQLITE_STATIC);
                sqlite3_bind_text(st, 3, hh, -1, SQLITE_STATIC);
                if (sqlite3_step(st) == SQLITE_ROW)
                    wadd(l, PD_REVIEW_WARN_DUP_NIK, i, i, "dup_nik",
                         "NIK %s of member %.40s is already held by member %.40s", nik,
                         ops[i].target, (const char *)sqlite3_column_text(st, 0));
            }
            sqlite3_finalize(st);
        }
        if (k < n) {
            snprintf(u[k].nik, sizeof u[k].nik, "%s", nik);
            snprintf(u[k].member, sizeof u[k].member, "%s", ops[i].target);
            u[k].op = i;
            k++;
        }
    }
    free(u);
}

static void outside_warnings(pd_store *store, const pd_batch_header *h, visit_pt *v, size_t nv,
                             wlist *l)
{
    shape *all = NULL;
    size_t ns = 0;
    if (load_shapes(store, h->area, &all, &ns) != PD_OK || ns == 0) {
        shapes_free(all, ns);
        return;
    }
    for (size_t i = 0; i < nv; i++) {
        if (!v[i].fix || strstr(v[i].warnings, PD_WARN_GPS_OUTSIDE_AREA))
            continue;
        char desa[32];
        household_desa(store, v[i].household, desa, sizeof desa);
        bool in = false, known = false;
        for (size_t s = 0; s < ns && !in; s++) {
            if (desa[0] && strcmp(all[s].code, desa) != 0)
                continue;
            known = true;
            in = inside(&all[s], v[i].lat, v[i].lon);
        }
        if (known && !in)
            wadd(l, PD_REVIEW_WARN_OUTSIDE, v[i].op, v[i].op, "outside_area",
                 "visit to household %.40s at %.5f,%.5f is outside %s", v[i].household, v[i].lat,
                 v[i].lon,
                 desa[0]      ? desa
                 : h->area[0] ? h->area
                              : "the area");
    }
    shapes_free(all, ns);
}

int pd_review_warnings(pd_store *store, const pd_batch *b, pd_review_warning **out, size_t *count)
{
    wlist l = {0};
    visit_pt *v = NULL, **byt = NULL;
    size_t nv = 0, n;
    *out = NULL;
    *count = 0;
    const pd_op *ops = pd_batch_ops(b, &n);
    int rc = collect_visits(b, &v, &nv);
    if (rc)
        return store ? pd_store_fail(store, rc, "out of memory") : rc;
    /* visit-level warnings, as the device recorded them */
    for (size_t i = 0; i < nv; i++) {
        char list[256];
        snprintf(list, sizeof list, "%s", v[i].warnings);
        for (char *save = NULL, *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save))
            wadd(&l, PD_REVIEW_WARN_VISIT, v[i].op, v[i].op, w,
                 "visit to household %.40s: %s (recorded on the device)", v[i].household, w);
    }
    /* across visits, in time order */
    byt = calloc(nv ? nv : 1, sizeof *byt);
    if (!byt) {
        l.oom = true;
        goto out;
    }
    for (size_t i = 0; i < nv; i++)
        byt[i] = &v[i];
    qsort(byt, nv, sizeof *byt, cmp_time);
    for (size_t i = 1; i < nv; i++) {
        const visit_pt *a = byt[i - 1], *c = byt[i];
        int64_t dt = c->at - a->at;
        if (dt < PD_REVIEW_TOO_FAST_MS)
            wadd(&l, PD_REVIEW_WARN_TOO_FAST, c->op, a->op, "too_fast",
                 "visit to household %.40s only %lld s after the visit to %.40s", c->household,
                 (long long)(dt / 1000), a->household);
        if (dt <= PD_REVIEW_TOO_FAR_MS && a->fix && c->fix) {
            double d = pd_geo_distance_m(a->lat, a->lon, c->lat, c->lon);
            if (d > PD_REVIEW_TOO_FAR_M)
                wadd(&l, PD_REVIEW_WARN_TOO_FAR, c->op, a->op, "too_far",
                     "visit to household %.40s is %.1f km from the visit to %.40s %lld s "
                     "earlier",
                     c->household, d / 1000.0, a->household, (long long)(dt / 1000));
        }
    }
    for (size_t i = 0; i < nv; i++)
        for (size_t k = 0; k < i; k++)
            if (v[i].household[0] && !strcmp(v[i].household, v[k].household)) {
                wadd(&l, PD_REVIEW_WARN_TWICE, v[i].op, v[k].op, "visited_twice",
                     "household %.40s is visited twice in this batch (%s, then %s)", v[i].household,
                     v[k].outcome, v[i].outcome);
                break;
            }
    outside_warnings(store, pd_batch_header_get(b), v, nv, &l);
    nik_warnings(store, ops, n, &l);
out:
    free(byt);
    free(v);
    if (l.oom) {
        free(l.w);
        return store ? pd_store_fail(store, PD_ERR_NOMEM, "out of memory") : PD_ERR_NOMEM;
    }
    *out = l.w;
    *count = l.n;
    return PD_OK;
}

/* ---- The map --------------------------------------------------------------------------------- */

static const struct {
    const char *outcome, *colour, *label;
} palette[] = {
    {"found", "#2e7d32", "found"},
    {"found_new_head", "#81c784", "found, new head"},
    {"moved_within", "#1e88e5", "moved within the area"},
    {"moved_out", "#8e24aa", "moved out"},
    {"joined_other", "#5e35b1", "joined another household"},
    {"not_found", "#f9a825", "not found"},
    {"all_deceased", "#424242", "all members deceased"},
    {"refused", "#e53935", "refused"},
    {"new_household", "#00acc1", "new household"},
};

static const char *colour_of(const char *outcome)
{
    for (size_t i = 0; i < PD_ARRAY_LEN(palette); i++)
        if (!strcmp(palette[i].outcome, outcome))
            return palette[i].colour;
    return "#9e9e9e";
}

/* Text for XML: escaped, and only if it is valid UTF-8 (else its ASCII part). */
static void xml_text(pd_sbuf *b, const char *s)
{
    if (pd_sync_utf8_valid((const uint8_t *)s, strlen(s))) {
        pd_sbuf_xml(b, s);
        return;
    }
    for (; *s; s++) {
        char one[2] = {(unsigned char)*s < 0x80 ? *s : '?', 0};
        pd_sbuf_xml(b, one);
    }
}

typedef struct proj {
    double minlat, maxlat, minlon, maxlon, k, coslat;
    double w, h, pad;
} proj;

static double px(const proj *p, double lon)
{
    return p->pad + (lon - p->minlon) * p->coslat * p->k;
}

static double py(const proj *p, double lat)
{
    return p->pad + (p->maxlat - lat) * p->k;
}

int pd_review_map_svg(pd_store *store, const pd_batch *b, char **svg, size_t *len)
{
    visit_pt *v = NULL;
    size_t nv = 0, ns = 0, nw = 0;
    shape *sh = NULL;
    pd_review_warning *w = NULL;
    pd_sbuf o = {.max = 64u << 20};
    const pd_batch_header *h = pd_batch_header_get(b);
    *svg = NULL;
    if (len)
        *len = 0;
    int rc = collect_visits(b, &v, &nv);
    if (rc)
        goto out;
    if ((rc = load_shapes(store, h->area, &sh, &ns)) != PD_OK ||
        (rc = pd_review_warnings(store, b, &w, &nw)) != PD_OK)
        goto out;

    /* bounds over the fixes and the outlines */
    proj p = {.minlat = 90, .maxlat = -90, .minlon = 180, .maxlon = -180, .w = 760, .pad = 30};
    size_t fixes = 0;
    for (size_t i = 0; i < nv; i++)
        if (v[i].fix) {
            fixes++;
            p.minlat = fmin(p.minlat, v[i].lat);
            p.maxlat = fmax(p.maxlat, v[i].lat);
            p.minlon = fmin(p.minlon, v[i].lon);
            p.maxlon = fmax(p.maxlon, v[i].lon);
        }
    for (size_t s = 0; s < ns; s++)
        for (size_t i = 0; i < sh[s].n; i++) {
            p.minlat = fmin(p.minlat, sh[s].lat[i]);
            p.maxlat = fmax(p.maxlat, sh[s].lat[i]);
            p.minlon = fmin(p.minlon, sh[s].lon[i]);
            p.maxlon = fmax(p.maxlon, sh[s].lon[i]);
        }
    if (p.minlat > p.maxlat) { /* nothing to place: an empty frame around 0,0 */
        p.minlat = p.minlon = -0.01;
        p.maxlat = p.maxlon = 0.01;
    }
    double dlat = fmax(p.maxlat - p.minlat, 0.002), dlon = fmax(p.maxlon - p.minlon, 0.002);
    double mid = (p.maxlat + p.minlat) / 2;
    p.minlat = mid - dlat / 2;
    p.maxlat = mid + dlat / 2;
    double midlon = (p.maxlon + p.minlon) / 2;
    p.minlon = midlon - dlon / 2;
    p.maxlon = midlon + dlon / 2;
    p.coslat = cos(mid * DEG2RAD);
    if (p.coslat < 0.05)
        p.coslat = 0.05;
    p.k = fmin(p.w / (dlon * p.coslat), 700.0 / dlat);
    double mapw = dlon * p.coslat * p.k + 2 * p.pad, maph = dlat * p.k + 2 * p.pad;
    double legend_x = mapw + 10, width = mapw + 260;
    double height = fmax(maph, 60 + 22.0 * (double)(PD_ARRAY_LEN(palette) + 4)) + 40;

    char hex[17];
    pd_sync_hex(hex, h->author_pk, 8);
    pd_sbuf_str(&o, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    pd_sbuf_printf(&o,
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                   "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
                   width, height, width, height);
    pd_sbuf_str(&o, "<title>Batch ");
    pd_sbuf_printf(&o, "%llu of enumerator %s... (device ", (unsigned long long)h->seq, hex);
    xml_text(&o, h->device_id);
    pd_sbuf_str(&o, ", area ");
    xml_text(&o, h->area[0] ? h->area : "unknown");
    pd_sbuf_printf(&o, "): %zu visits, %zu with a GPS fix, %zu warnings</title>\n", nv, fixes, nw);
    pd_sbuf_printf(&o, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n",
                   width, height);

    /* outlines */
    for (size_t s = 0; s < ns; s++) {
        pd_sbuf_str(&o, "<polygon fill=\"#e8eef7\" stroke=\"#5c6f8f\" stroke-width=\"1.5\" "
                        "points=\"");
        for (size_t i = 0; i < sh[s].n; i++)
            pd_sbuf_printf(&o, "%s%.1f,%.1f", i ? " " : "", px(&p, sh[s].lon[i]),
                           py(&p, sh[s].lat[i]));
        pd_sbuf_str(&o, "\"><title>");
        xml_text(&o, sh[s].code);
        pd_sbuf_str(&o, "</title></polygon>\n");
    }

    /* the route, in time order */
    if (fixes > 1) {
        visit_pt **byt = calloc(nv, sizeof *byt);
        if (byt) {
            for (size_t i = 0; i < nv; i++)
                byt[i] = &v[i];
            qsort(byt, nv, sizeof *byt, cmp_time);
            pd_sbuf_str(&o, "<polyline fill=\"none\" stroke=\"#9e9e9e\" stroke-width=\"1\" "
                            "stroke-dasharray=\"4 3\" points=\"");
            bool first = true;
            for (size_t i = 0; i < nv; i++)
                if (byt[i]->fix) {
                    pd_sbuf_printf(&o, "%s%.1f,%.1f", first ? "" : " ", px(&p, byt[i]->lon),
                                   py(&p, byt[i]->lat));
                    first = false;
                }
            pd_sbuf_str(&o, "\"/>\n");
            free(byt);
        }
    }

    /* visit points, warnings ringed */
    for (size_t i = 0; i < nv; i++) {
        if (!v[i].fix)
            continue;
        size_t nwarn = 0;
        for (size_t k = 0; k < nw; k++)
            if (w[k].op == v[i].op || w[k].other == v[i].op)
                nwarn++;
        double x = px(&p, v[i].lon), y = py(&p, v[i].lat);
        if (nwarn)
            pd_sbuf_printf(&o,
                           "<circle class=\"warning\" cx=\"%.1f\" cy=\"%.1f\" r=\"10\" "
                           "fill=\"none\" stroke=\"#d50000\" stroke-width=\"2.5\"/>\n",
                           x, y);
        pd_sbuf_printf(&o,
                       "<circle class=\"visit\" cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\" "
                       "stroke=\"#ffffff\" stroke-width=\"1\"><title>",
                       x, y, colour_of(v[i].outcome));
        xml_text(&o, v[i].household);
        pd_sbuf_str(&o, ": ");
        xml_text(&o, v[i].outcome);
        time_t t = (time_t)(v[i].at / 1000);
        struct tm tm;
        char when[32] = "";
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof when, " at %Y-%m-%d %H:%M UTC", &tm);
        pd_sbuf_str(&o, when);
        for (size_t k = 0; k < nw; k++)
            if (w[k].op == v[i].op || w[k].other == v[i].op) {
                pd_sbuf_str(&o, "\n! ");
                xml_text(&o, w[k].text);
            }
        pd_sbuf_str(&o, "</title></circle>\n");
    }

    /* scale bar: a round distance near a fifth of the map's width */
    double m_per_px = 111320.0 / p.k;
    double target = m_per_px * (mapw - 2 * p.pad) / 5, bar = 1;
    while (bar * 10 <= target)
        bar *= 10;
    if (bar * 5 <= target)
        bar *= 5;
    else if (bar * 2 <= target)
        bar *= 2;
    double barpx = bar / m_per_px;
    pd_sbuf_printf(&o,
                   "<g class=\"scale\"><line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                   "stroke=\"#000000\" stroke-width=\"2\"/><text x=\"%.1f\" y=\"%.1f\">%g %s</text>"
                   "</g>\n",
                   p.pad, maph - 8, p.pad + barpx, maph - 8, p.pad, maph - 12,
                   bar >= 1000 ? bar / 1000 : bar, bar >= 1000 ? "km" : "m");

    /* legend */
    double ly = 30;
    pd_sbuf_printf(&o, "<g class=\"legend\"><text x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\">",
                   legend_x, ly);
    pd_sbuf_printf(&o, "Batch %llu</text>\n", (unsigned long long)h->seq);
    ly += 18;
    pd_sbuf_printf(&o, "<text x=\"%.1f\" y=\"%.1f\">%zu visits, %zu warnings</text>\n", legend_x,
                   ly, nv, nw);
    ly += 24;
    for (size_t i = 0; i < PD_ARRAY_LEN(palette); i++, ly += 22) {
        size_t c = 0;
        for (size_t k = 0; k < nv; k++)
            c += !strcmp(v[k].outcome, palette[i].outcome);
        pd_sbuf_printf(&o,
                       "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\"/><text x=\"%.1f\" "
                       "y=\"%.1f\">%s (%zu)</text>\n",
                       legend_x + 8, ly - 4, palette[i].colour, legend_x + 22, ly, palette[i].label,
                       c);
    }
    pd_sbuf_printf(&o,
                   "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"9\" fill=\"none\" stroke=\"#d50000\" "
                   "stroke-width=\"2.5\"/><text x=\"%.1f\" y=\"%.1f\">warning (hover a point)"
                   "</text>\n",
                   legend_x + 8, ly - 4, legend_x + 22, ly);
    ly += 22;
    pd_sbuf_printf(&o,
                   "<rect x=\"%.1f\" y=\"%.1f\" width=\"16\" height=\"10\" fill=\"#e8eef7\" "
                   "stroke=\"#5c6f8f\"/><text x=\"%.1f\" y=\"%.1f\">area outline%s</text>\n",
                   legend_x, ly - 12, legend_x + 22, ly, ns ? "" : " (none held here)");
    ly += 22;
    pd_sbuf_printf(&o,
                   "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#9e9e9e\" "
                   "stroke-dasharray=\"4 3\"/><text x=\"%.1f\" y=\"%.1f\">route in time order"
                   "</text>\n",
                   legend_x, ly - 4, legend_x + 16, ly - 4, legend_x + 22, ly);
    if (fixes < nv) {
        ly += 22;
        pd_sbuf_printf(&o, "<text x=\"%.1f\" y=\"%.1f\">%zu visits without a GPS fix</text>\n",
                       legend_x, ly, nv - fixes);
    }
    pd_sbuf_str(&o, "</g>\n</svg>\n");
    pd_sbuf_byte(&o, 0);
    if (o.failed) {
        rc = store ? pd_store_fail(store, o.failed, "making the map: %s", pd_strerror(o.failed))
                   : o.failed;
        goto out;
    }
    *svg = (char *)o.p;
    if (len)
        *len = o.len - 1;
    o.p = NULL;
out:
    pd_sbuf_free(&o);
    shapes_free(sh, ns);
    free(w);
    free(v);
    return rc;
}

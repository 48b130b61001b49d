/*
 * search.c — finding households on the device: by name (person_fts / address_fts, accent and case
 * insensitive, each word a prefix), NIK, KK number, address words, desa (or kecamatan), status,
 * and nearest to a point (household_geo R*Tree, then a true great-circle sort).
 *
 * Every criterion given must hold. One criterion "drives" the query (the most selective one
 * given: NIK, KK, name, address, area, then the R*Tree, then a scan for status alone); all of them
 * are then checked on each candidate. The statements are constant strings with bound parameters;
 * user words reach FTS5 only as quoted terms ("word"*) inside a bound MATCH parameter.
 *
 * Nearest: the R*Tree is queried with boxes of growing radius r (250 m, ×4 each round) that
 * contain every point within r; once `limit` households are surely within r, no household outside
 * the box can be nearer. The R*Tree's float32 entries place a household within a few metres, so
 * the few candidates that could be among the nearest are then ranked by their exact location
 * (haversine), as every other distance here.
 */
#include "validate.h"

#include "store_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- statements --------------------------------------------------------------------------- */

#define HIT_COLS                                                                                   \
    "h.hh_rowid, h.id, h.desa, h.sls, h.address, h.head_name, h.kk, h.status, h.member_count, "    \
    "CASE WHEN v.rowid IS NOT NULL THEN v.lat ELSE h.lat END, "                                    \
    "CASE WHEN v.rowid IS NOT NULL THEN v.lon ELSE h.lon END"

/* The latest visit with a fix (the same rule as household_geo). */
#define LOC_JOIN                                                                                   \
    " LEFT JOIN visit v ON v.rowid = (SELECT rowid FROM visit WHERE household_id = h.id AND "      \
    "lat IS NOT NULL AND lon IS NOT NULL ORDER BY rowid DESC LIMIT 1)"

/* Residual criteria: ?1 nik, ?2 kk, ?3 area, ?4 status, ?5 address match, ?6 member name match,
 * ?7 head name match.
 * NULL: not asked (or already enforced by the driver). */
#define RESIDUAL                                                                                   \
    "(?1 IS NULL OR h.id IN (SELECT household_id FROM member WHERE nik = ?1)) AND "                \
    "(?2 IS NULL OR h.kk = ?2 OR h.id IN (SELECT household_id FROM member WHERE kk = ?2)) AND "    \
    "(?3 IS NULL OR h.desa = ?3 OR h.kec = ?3) AND "                                               \
    "(?4 IS NULL OR (?4 = 'unvisited' AND h.status IS NULL) OR "                                   \
    " (?4 = 'visited' AND h.status IS NOT NULL) OR h.status = ?4) AND "                            \
    "(?5 IS NULL OR h.hh_rowid IN (SELECT rowid FROM address_fts WHERE address_fts MATCH ?5)) "    \
    "AND (?6 IS NULL OR h.id IN (SELECT m.household_id FROM person_fts JOIN member m ON "          \
    " m.rowid = person_fts.rowid WHERE person_fts MATCH ?6) OR "                                   \
    " h.hh_rowid IN (SELECT rowid FROM address_fts WHERE address_fts MATCH ?7))"

/* ?8 limit (-1: none). Drivers use ?21.. so the residual can skip what they enforce. The
 * candidates stream from the driver (CROSS JOIN keeps it the outer loop, run as a co-routine),
 * duplicates are dropped as they come (DISTINCT), and the households are picked (criteria,
 * order, limit) before their location is looked up, so the per-row location subquery runs only
 * for the rows returned. */
#define FIND_SQL_ORDERED(driver, order)                                                            \
    "WITH cand(id) AS (" driver "), pick(r, id) AS (SELECT DISTINCT h.hh_rowid, h.id FROM "        \
    "cand CROSS JOIN household h ON h.id = cand.id WHERE " RESIDUAL order " LIMIT ?8) "            \
    "SELECT " HIT_COLS " FROM pick JOIN household h ON h.hh_rowid = pick.r" LOC_JOIN               \
    " ORDER BY h.id"
#define FIND_SQL(driver) FIND_SQL_ORDERED(driver, " ORDER BY h.id")

enum driver { DRV_NIK, DRV_KK, DRV_NAME, DRV_ADDRESS, DRV_AREA, DRV_BOX, DRV_SCAN, DRV__COUNT };

/* A name is searched in person_fts (every member) and then in address_fts's head_name (a head
 * name corrected by hand). Its candidates are not sorted before the limit, so the first `limit`
 * matching households (in index order) are found without reading every match of a common name;
 * they are returned sorted by id. */
static const char *const find_sql[DRV__COUNT] = {
    [DRV_NIK] = FIND_SQL("SELECT household_id FROM member WHERE nik = ?21"),
    [DRV_KK] = FIND_SQL("SELECT id FROM household WHERE kk = ?22 UNION "
                        "SELECT household_id FROM member WHERE kk = ?22"),
    [DRV_NAME] = FIND_SQL_ORDERED("SELECT m.household_id FROM person_fts JOIN member m ON "
                                  "m.rowid = person_fts.rowid WHERE person_fts MATCH ?26 "
                                  "UNION ALL SELECT x.id FROM address_fts JOIN household x ON "
                                  "x.hh_rowid = address_fts.rowid WHERE address_fts MATCH ?27",
                                  ""),
    [DRV_ADDRESS] = FIND_SQL("SELECT x.id FROM address_fts JOIN household x ON "
                             "x.hh_rowid = address_fts.rowid WHERE address_fts MATCH ?25"),
    [DRV_AREA] = FIND_SQL("SELECT id FROM household WHERE desa = ?23 UNION "
                          "SELECT id FROM household WHERE kec = ?23"),
    [DRV_SCAN] = FIND_SQL("SELECT id FROM household"),
};

/* Nearest, by the R*Tree: households whose box meets ?31..?34 (min lat, max lat, min lon, max
 * lon) and the residual criteria, with the centre of their entry (float32, within a couple of
 * metres of the exact location). */
static const char near_box_sql[] =
    "SELECT g.hh_rowid, (g.min_lat + g.max_lat) / 2, (g.min_lon + g.max_lon) / 2 "
    "FROM household_geo g CROSS JOIN household h ON h.hh_rowid = g.hh_rowid "
    "WHERE g.max_lat >= ?31 AND g.min_lat <= ?32 AND g.max_lon >= ?33 AND g.min_lon <= ?34 "
    "AND " RESIDUAL;

/* The same with no other criterion: the R*Tree alone. */
static const char near_box_only_sql[] =
    "SELECT hh_rowid, (min_lat + max_lat) / 2, (min_lon + max_lon) / 2 FROM household_geo "
    "WHERE max_lat >= ?31 AND min_lat <= ?32 AND max_lon >= ?33 AND min_lon <= ?34";

static const char detail_sql[] =
    "SELECT " HIT_COLS " FROM household h" LOC_JOIN " WHERE h.hh_rowid = ?1";

/* ---- the query ---------------------------------------------------------------------------- */

#define FIND_TEXT_MAX 200
#define FIND_WORDS_MAX 16
#define FIND_WORD_MAX 64
#define FIND_CANDIDATES_MAX 2000000

/* FTS5 expression of the words of s: "w1"* AND "w2"*, each optionally prefixed by a column
 * filter. Words are split at ASCII spaces and punctuation (so no quote can reach FTS5);
 * letters outside ASCII stay in the word for the tokenizer (which folds case and accents). */
static int fts_expr(const char *what, const char *s, const char *column, char *out, size_t cap,
                    pd_error *err)
{
    size_t used = 0, words = 0;
    out[0] = '\0';
    const char *p = s;
    while (*p) {
        while (*p && (unsigned char)*p < 0x80 &&
               !((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            p++;
        const char *start = p;
        while (*p && ((unsigned char)*p >= 0x80 || (*p >= '0' && *p <= '9') ||
                      (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')))
            p++;
        size_t n = (size_t)(p - start);
        if (n == 0)
            continue;
        if (n > FIND_WORD_MAX || ++words > FIND_WORDS_MAX)
            return pd_error_set(err, PD_ERR_INVALID, "find.%s: at most %d words of %d bytes each",
                                what, FIND_WORDS_MAX, FIND_WORD_MAX);
        int k = snprintf(out + used, cap - used, "%s%s%s\"%.*s\"*", used ? " AND " : "",
                         column ? column : "", column ? " : " : "", (int)n, start);
        if (k < 0 || (size_t)k >= cap - used)
            return pd_error_set(err, PD_ERR_INVALID, "find.%s: too long", what);
        used += (size_t)k;
    }
    if (words == 0)
        return pd_error_set(err, PD_ERR_INVALID, "find.%s: no words to search for", what);
    return PD_OK;
}

typedef struct query {
    const char *nik, *kk, *area, *status;
    char address[1024], person[1024], head[1280];
    bool has_address, has_name;
    enum driver drv;
    int64_t limit;
} query;

static int check_digits16(const char *field, const char *s, pd_error *err)
{
    if (strnlen(s, 17) != 16)
        return pd_error_set(err, PD_ERR_INVALID, "find.%s: must be 16 digits", field);
    for (int i = 0; i < 16; i++)
        if (s[i] < '0' || s[i] > '9')
            return pd_error_set(err, PD_ERR_INVALID, "find.%s: must be 16 digits", field);
    return PD_OK;
}

static int prepare_query(const pd_find_query *q, query *out, pd_error *err)
{
    memset(out, 0, sizeof *out);
    if (!q)
        return pd_error_set(err, PD_ERR_INVALID, "find: no query");
    const char *texts[] = {q->name, q->nik, q->kk, q->address, q->desa, q->status};
    const char *names[] = {"name", "nik", "kk", "address", "desa", "status"};
    bool any = q->near;
    for (size_t i = 0; i < PD_ARRAY_LEN(texts); i++) {
        if (!texts[i])
            continue;
        char field[16];
        snprintf(field, sizeof field, "find.%s", names[i]);
        int rc = pd_validate_text(field, texts[i], FIND_TEXT_MAX, 0, err);
        if (rc != PD_OK)
            return rc;
        any = true;
    }
    if (!any)
        return pd_error_set(
            err, PD_ERR_INVALID,
            "find: give at least one of name, nik, kk, address, desa, status, near");
    int rc;
    if (q->nik && (rc = check_digits16("nik", q->nik, err)) != PD_OK)
        return rc;
    if (q->kk && (rc = check_digits16("kk", q->kk, err)) != PD_OK)
        return rc;
    if (q->desa && (rc = pd_validate_area("find.desa", q->desa, err)) != PD_OK)
        return rc;
    if (q->status && strcmp(q->status, "visited") && strcmp(q->status, "unvisited") &&
        pd_validate_visit_outcome(q->status, err) != PD_OK)
        return pd_error_set(err, PD_ERR_INVALID,
                            "find.status: '%.40s' is not visited, unvisited or a visit outcome",
                            q->status);
    if (q->near && (!isfinite(q->near_lat) || !isfinite(q->near_lon) || fabs(q->near_lat) > 90 ||
                    fabs(q->near_lon) > 180))
        return pd_error_set(err, PD_ERR_INVALID, "find.near: %g,%g is not a point on Earth",
                            q->near_lat, q->near_lon);
    if (q->limit > PD_FIND_MAX_LIMIT)
        return pd_error_set(err, PD_ERR_INVALID, "find.limit: at most %d", PD_FIND_MAX_LIMIT);
    out->limit = q->limit ? (int64_t)q->limit : PD_FIND_DEFAULT_LIMIT;
    if (q->name) {
        if ((rc = fts_expr("name", q->name, NULL, out->person, sizeof out->person, err)) ||
            (rc = fts_expr("name", q->name, "head_name", out->head, sizeof out->head, err)))
            return rc;
        out->has_name = true;
    }
    if (q->address) {
        if ((rc = fts_expr("address", q->address, "address", out->address, sizeof out->address,
                           err)))
            return rc;
        out->has_address = true;
    }
    out->nik = q->nik;
    out->kk = q->kk;
    out->area = q->desa;
    out->status = q->status;
    /* Nearest goes through the R*Tree unless a selective criterion (NIK, KK, name) drives. */
    out->drv = q->nik       ? DRV_NIK
               : q->kk      ? DRV_KK
               : q->name    ? DRV_NAME
               : q->near    ? DRV_BOX
               : q->address ? DRV_ADDRESS
               : q->desa    ? DRV_AREA
                            : DRV_SCAN;
    return PD_OK;
}

static void bind_text_or_null(sqlite3_stmt *st, int idx, const char *s, bool use)
{
    if (use && s)
        sqlite3_bind_text(st, idx, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, idx);
}

static void bind_query(sqlite3_stmt *st, const query *q, int64_t limit)
{
    bind_text_or_null(st, 1, q->nik, q->drv != DRV_NIK);
    bind_text_or_null(st, 2, q->kk, q->drv != DRV_KK);
    bind_text_or_null(st, 3, q->area, q->drv != DRV_AREA);
    bind_text_or_null(st, 4, q->status, true);
    bind_text_or_null(st, 5, q->address, q->has_address && q->drv != DRV_ADDRESS);
    bind_text_or_null(st, 6, q->person, q->has_name && q->drv != DRV_NAME);
    bind_text_or_null(st, 7, q->head, q->has_name && q->drv != DRV_NAME);
    sqlite3_bind_int64(st, 8, limit);
    switch (q->drv) {
    case DRV_NIK:
        sqlite3_bind_text(st, 21, q->nik, -1, SQLITE_STATIC);
        break;
    case DRV_KK:
        sqlite3_bind_text(st, 22, q->kk, -1, SQLITE_STATIC);
        break;
    case DRV_AREA:
        sqlite3_bind_text(st, 23, q->area, -1, SQLITE_STATIC);
        break;
    case DRV_ADDRESS:
        sqlite3_bind_text(st, 25, q->address, -1, SQLITE_STATIC);
        break;
    case DRV_NAME:
        sqlite3_bind_text(st, 26, q->person, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 27, q->head, -1, SQLITE_STATIC);
        break;
    default:
        break;
    }
}

static const char *col_text(sqlite3_stmt *st, int c)
{
    return (const char *)sqlite3_column_text(st, c);
}

static void row_hit(sqlite3_stmt *st, pd_household_hit *hit)
{
    memset(hit, 0, sizeof *hit);
    hit->id = col_text(st, 1);
    hit->desa = col_text(st, 2);
    hit->sls = col_text(st, 3);
    hit->address = col_text(st, 4);
    hit->head_name = col_text(st, 5);
    hit->kk = col_text(st, 6);
    hit->status = col_text(st, 7);
    hit->member_count = sqlite3_column_int64(st, 8);
    bool loc =
        sqlite3_column_type(st, 9) != SQLITE_NULL && sqlite3_column_type(st, 10) != SQLITE_NULL;
    hit->lat = loc ? sqlite3_column_double(st, 9) : NAN;
    hit->lon = loc ? sqlite3_column_double(st, 10) : NAN;
    hit->distance_m = NAN;
}

/* ---- nearest ------------------------------------------------------------------------------ */

typedef struct cand {
    double d;
    int64_t rowid;
} cand;

static int cand_cmp(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->d != y->d)
        return x->d < y->d ? -1 : 1;
    return (x->rowid > y->rowid) - (x->rowid < y->rowid);
}

/* Metres per degree of latitude, rounded down (so boxes err on the large side). */
#define M_PER_DEG 110000.0
#define EARTH_HALF_CIRCUMFERENCE_M 20100000.0

static void box_around(double lat, double lon, double r, double box[4], bool *world)
{
    double dlat = r / M_PER_DEG;
    box[0] = lat - dlat;
    box[1] = lat + dlat;
    double maxabs = fmax(fabs(box[0]), fabs(box[1]));
    *world = r >= EARTH_HALF_CIRCUMFERENCE_M;
    if (*world || maxabs >= 89.0 || r > 2000000.0) {
        box[2] = -180.0;
        box[3] = 180.0;
    } else {
        double dlon = r / (M_PER_DEG * cos(maxabs * M_PI / 180.0));
        box[2] = lon - dlon;
        box[3] = lon + dlon;
        if (box[2] < -180.0 || box[3] > 180.0) { /* across the antimeridian: all longitudes */
            box[2] = -180.0;
            box[3] = 180.0;
        }
    }
    if (*world) {
        box[0] = -90.0;
        box[1] = 90.0;
    }
}

/* How far an R*Tree entry's centre may be from the exact location: float32 rounds each bound
 * outward by at most about one unit in the last place (under 2 m at longitude 180). */
#define GEO_MARGIN_M 5.0

static int push(pd_store *store, cand **c, size_t *n, size_t *cap, double d, int64_t rowid)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 256;
        if (ncap > FIND_CANDIDATES_MAX)
            return pd_store_fail(store, PD_ERR_TOOBIG, "find: more than %d candidates",
                                 FIND_CANDIDATES_MAX);
        cand *nc = realloc(*c, ncap * sizeof **c);
        if (!nc)
            return pd_store_fail(store, PD_ERR_NOMEM, "find: out of memory");
        *c = nc;
        *cap = ncap;
    }
    (*c)[*n].d = d;
    (*c)[*n].rowid = rowid;
    (*n)++;
    return PD_OK;
}

static int find_near(pd_store *store, sqlite3 *db, const pd_find_query *q, const query *qq,
                     pd_hit_fn fn, void *ctx)
{
    sqlite3_stmt *st = NULL, *det = NULL;
    cand *c = NULL;
    size_t n = 0, cap = 0;
    int code = PD_OK, rc;
    /* With a selective driver (NIK, KK, name) there is one pass over its candidates, with exact
     * locations. Otherwise the R*Tree, in rounds of growing boxes, until `limit` households are
     * surely within the radius (or the box is the world); its distances are approximate (the
     * entries' centres) until the last step. */
    bool boxed = qq->drv == DRV_BOX;
    int lat_col = boxed ? 1 : 9, lon_col = boxed ? 2 : 10;
    double r = 250.0;
    bool only_near = boxed && !qq->status && !qq->area && !qq->has_address;
    rc = sqlite3_prepare_v2(db,
                            only_near ? near_box_only_sql
                            : boxed   ? near_box_sql
                                      : find_sql[qq->drv],
                            -1, &st, NULL);
    if (rc != SQLITE_OK)
        goto sqlfail;
    for (;;) {
        bool world = !boxed;
        sqlite3_reset(st);
        if (!only_near)
            bind_query(st, qq, -1);
        if (boxed) {
            double box[4];
            box_around(q->near_lat, q->near_lon, r + GEO_MARGIN_M, box, &world);
            for (int i = 0; i < 4; i++)
                sqlite3_bind_double(st, 31 + i, box[i]);
        }
        n = 0;
        int64_t sure = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            if (sqlite3_column_type(st, lat_col) == SQLITE_NULL ||
                sqlite3_column_type(st, lon_col) == SQLITE_NULL)
                continue;
            double d =
                pd_geo_distance_m(q->near_lat, q->near_lon, sqlite3_column_double(st, lat_col),
                                  sqlite3_column_double(st, lon_col));
            if (!world && d > r + GEO_MARGIN_M)
                continue; /* in the box's corner: it may not be among the nearest yet */
            if ((code = push(store, &c, &n, &cap, d, sqlite3_column_int64(st, 0))) != PD_OK)
                goto out;
            sure += d <= r - GEO_MARGIN_M;
        }
        if (rc != SQLITE_DONE)
            goto sqlfail;
        if (world || sure >= qq->limit)
            break;
        r *= 4.0;
    }
    if (n > 1)
        qsort(c, n, sizeof *c, cand_cmp);
    rc = sqlite3_prepare_v2(db, detail_sql, -1, &det, NULL);
    if (rc != SQLITE_OK)
        goto sqlfail;
    if (boxed) {
        /* The exact `limit` nearest are among the candidates whose approximate distance is within
         * two margins of the limit-th one: make those exact and sort again. */
        double cutoff = (int64_t)n > qq->limit ? c[qq->limit - 1].d + 2 * GEO_MARGIN_M : INFINITY;
        size_t m = 0;
        while (m < n && c[m].d <= cutoff)
            m++;
        for (size_t i = 0; i < m; i++) {
            sqlite3_reset(det);
            sqlite3_bind_int64(det, 1, c[i].rowid);
            if ((rc = sqlite3_step(det)) != SQLITE_ROW)
                goto sqlfail;
            c[i].d = pd_geo_distance_m(q->near_lat, q->near_lon, sqlite3_column_double(det, 9),
                                       sqlite3_column_double(det, 10));
        }
        n = m;
        qsort(c, n, sizeof *c, cand_cmp);
    }
    for (size_t i = 0; i < n && (int64_t)i < qq->limit; i++) {
        sqlite3_reset(det);
        sqlite3_bind_int64(det, 1, c[i].rowid);
        if ((rc = sqlite3_step(det)) != SQLITE_ROW)
            goto sqlfail;
        pd_household_hit hit;
        row_hit(det, &hit);
        hit.distance_m = c[i].d;
        if ((code = fn(ctx, &hit)) != 0)
            goto out;
    }
    goto out;
sqlfail:
    code = pd_store_fail_sqlite(store, rc, "find");
out:
    sqlite3_finalize(st);
    sqlite3_finalize(det);
    free(c);
    return code;
}

int pd_household_find(pd_store *store, const pd_find_query *q, pd_hit_fn fn, void *ctx)
{
    pd_error err = {0};
    query qq;
    int rc = prepare_query(q, &qq, &err);
    if (rc != PD_OK)
        return pd_store_fail(store, rc, "%s", err.msg);
    if (!fn)
        return pd_store_fail(store, PD_ERR_INVALID, "find: no callback");
    sqlite3 *db = pd_store_sqlite(store);
    if (q->near)
        return find_near(store, db, q, &qq, fn, ctx);
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(db, find_sql[qq.drv], -1, &st, NULL);
    if (rc != SQLITE_OK)
        return pd_store_fail_sqlite(store, rc, "find");
    bind_query(st, &qq, qq.limit);
    int code = PD_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        pd_household_hit hit;
        row_hit(st, &hit);
        if ((code = fn(ctx, &hit)) != 0)
            break;
    }
    if (code == PD_OK && rc != SQLITE_DONE)
        code = pd_store_fail_sqlite(store, rc, "find");
    sqlite3_finalize(st);
    return code;
}

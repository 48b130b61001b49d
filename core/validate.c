/*
 * validate.c — field validation: NIK, KK number, GPS fixes, dates, area codes, categorical codes,
 * UTF-8 text, JPEG photos; and the warnings list.
 *
 * Every validator is a pure function of its input (and of the real area list, through
 * pd_area_exists from the prelist layer): no store, no I/O. A refusal is PD_ERR_INVALID with a
 * message that names the field and the reason ("nik: month 13 in digits 7-12 (011390) does not
 * exist"); things worth a second look but not a refusal are appended to a pd_warnings instead.
 * Store-dependent checks (area within the assignment, NIK present elsewhere, GPS outside the
 * desa's shape, visits too far apart) live with the operations that need them.
 */
#include "validate.h"

#include "../prelist/pd_prelist.h"
#include "codes.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- warnings ----------------------------------------------------------------------------- */

void pd_warn_add(pd_warnings *w, const char *code, const char *fmt, ...)
{
    if (!w)
        return;
    if (w->count >= PD_WARN_MAX) {
        w->dropped++;
        return;
    }
    pd_warning *it = &w->item[w->count++];
    it->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->msg, sizeof it->msg, fmt, ap);
    va_end(ap);
}

int pd_warnings_has(const pd_warnings *w, const char *code)
{
    if (!w || !code)
        return 0;
    for (size_t i = 0; i < w->count; i++)
        if (w->item[i].code && !strcmp(w->item[i].code, code))
            return 1;
    return 0;
}

void pd_warnings_join(const pd_warnings *w, char *buf, size_t cap)
{
    if (!cap)
        return;
    buf[0] = '\0';
    if (!w)
        return;
    size_t used = 0;
    for (size_t i = 0; i < w->count; i++) {
        const char *code = w->item[i].code;
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++)
            seen = !strcmp(w->item[j].code, code);
        if (seen)
            continue;
        int n = snprintf(buf + used, cap - used, "%s%s", used ? "," : "", code);
        if (n < 0 || (size_t)n >= cap - used) {
            buf[used] = '\0'; /* never store half a code */
            return;
        }
        used += (size_t)n;
    }
}

int pd_error_prefix(pd_error *err, const char *prefix)
{
    if (!err)
        return PD_OK;
    char old[PD_ERRMSG_MAX];
    memcpy(old, err->msg, sizeof old);
    old[sizeof old - 1] = '\0';
    snprintf(err->msg, sizeof err->msg, "%s%s", prefix, old);
    return err->code;
}

int64_t pd_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- dates -------------------------------------------------------------------------------- */

static bool leap(int y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int days_in_month(int y, int m)
{
    static const int dm[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && leap(y) ? 29 : dm[m - 1];
}

bool pd_date_real(int y, int m, int d)
{
    return y >= 1 && y <= 9999 && m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m);
}

/* Howard Hinnant's days_from_civil. */
int64_t pd_days_from_civil(int y, int m, int d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const int64_t yoe = y - era * 400;
    const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int num(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

bool pd_date_parse(const char *ymd, int *y, int *m, int *d)
{
    if (!ymd || strlen(ymd) != 10 || ymd[4] != '-' || ymd[7] != '-' || !all_digits(ymd, 4) ||
        !all_digits(ymd + 5, 2) || !all_digits(ymd + 8, 2))
        return false;
    *y = num(ymd, 4);
    *m = num(ymd + 5, 2);
    *d = num(ymd + 8, 2);
    return pd_date_real(*y, *m, *d);
}

int pd_validate_date(const char *field, const char *ymd, int64_t now_ms, pd_error *err)
{
    int y, m, d;
    if (!ymd || !*ymd)
        return pd_error_set(err, PD_ERR_INVALID, "%s: missing", field);
    if (!pd_date_parse(ymd, &y, &m, &d)) {
        if (strlen(ymd) == 10 && ymd[4] == '-' && ymd[7] == '-' && all_digits(ymd, 4) &&
            all_digits(ymd + 5, 2) && all_digits(ymd + 8, 2))
            return pd_error_set(err, PD_ERR_INVALID, "%s: %s does not exist in the calendar", field,
                                ymd);
        return pd_error_set(err, PD_ERR_INVALID, "%s: '%.40s' is not a date YYYY-MM-DD", field,
                            ymd);
    }
    if (y < 1900)
        return pd_error_set(err, PD_ERR_INVALID, "%s: %s is before 1900", field, ymd);
    if (now_ms > 0 && pd_days_from_civil(y, m, d) * 86400000LL > now_ms)
        return pd_error_set(err, PD_ERR_INVALID, "%s: %s is in the future", field, ymd);
    return PD_OK;
}

/* ---- text --------------------------------------------------------------------------------- */

bool pd_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            n = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            n = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            n = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (len - i <= n)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += n + 1;
    }
    return true;
}

int pd_validate_text(const char *field, const char *s, size_t max_bytes, int multiline,
                     pd_error *err)
{
    if (!s)
        return pd_error_set(err, PD_ERR_INVALID, "%s: missing", field);
    size_t len = strnlen(s, max_bytes + 1);
    if (len > max_bytes)
        return pd_error_set(err, PD_ERR_INVALID, "%s: longer than %zu bytes", field, max_bytes);
    if (!pd_utf8_valid((const uint8_t *)s, len))
        return pd_error_set(err, PD_ERR_INVALID, "%s: not valid UTF-8", field);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == 0x7F || (c < 0x20 && !(multiline && (c == '\n' || c == '\r' || c == '\t'))))
            return pd_error_set(err, PD_ERR_INVALID,
                                "%s: control character 0x%02X at byte %zu is not allowed", field, c,
                                i);
    }
    return PD_OK;
}

/* ---- codes and areas ---------------------------------------------------------------------- */

int pd_validate_code(const char *field, int64_t value, pd_error *err)
{
    size_t n = 0;
    const pd_code *codes = pd_codes_of(field, &n);
    if (!codes)
        return pd_error_set(err, PD_ERR_INTERNAL, "%s: no code table for this field", field);
    if (pd_code_valid(field, value))
        return PD_OK;
    return pd_error_set(err, PD_ERR_INVALID, "%s: %lld is not a known code (%d..%d)", field,
                        (long long)value, codes[0].value, codes[n - 1].value);
}

/* "NN", "NN.NN", "NN.NN.NN" or "NN.NN.NN.NNNN". */
static bool area_shape_ok(const char *code)
{
    static const size_t lens[] = {2, 5, 8, 13};
    size_t len = strlen(code);
    bool known = false;
    for (size_t i = 0; i < PD_ARRAY_LEN(lens); i++)
        known |= len == lens[i];
    if (!known)
        return false;
    for (size_t i = 0; i < len; i++) {
        bool dot = i == 2 || i == 5 || i == 8;
        if (dot ? code[i] != '.' : (code[i] < '0' || code[i] > '9'))
            return false;
    }
    return true;
}

int pd_validate_area(const char *field, const char *code, pd_error *err)
{
    if (!code || !*code)
        return pd_error_set(err, PD_ERR_INVALID, "%s: missing", field);
    if (strnlen(code, 14) > 13 || !area_shape_ok(code))
        return pd_error_set(
            err, PD_ERR_INVALID,
            "%s: '%.20s' is not an area code (32, 32.73, 32.73.01 or 32.73.01.1001)", field, code);
    if (!pd_area_exists(code))
        return pd_error_set(err, PD_ERR_INVALID, "%s: %s is not a real area code", field, code);
    return PD_OK;
}

/* A kecamatan code from 6 digits: "327301" -> "32.73.01". */
static bool kecamatan_exists(const char *digits6, char out[9])
{
    snprintf(out, 9, "%.2s.%.2s.%.2s", digits6, digits6 + 2, digits6 + 4);
    return pd_area_exists(out);
}

/* ---- NIK and KK --------------------------------------------------------------------------- */

static const struct {
    const char *nik;
    const char *meaning;
} placeholders[] = {
    {"9999999999999994", "refused to give a NIK"},
    {"9999999999999995", "under 17, no NIK yet"},
    {"9999999999999996", "17 or older, no NIK"},
    {"9999999999999999", "foreign citizen"},
};

/* Common shape of NIK and KK: 16 digits. */
static int sixteen_digits(const char *field, const char *s, pd_error *err)
{
    if (!s || !*s)
        return pd_error_set(err, PD_ERR_INVALID, "%s: missing", field);
    size_t len = strnlen(s, 17);
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return pd_error_set(err, PD_ERR_INVALID,
                                "%s: must be 16 digits; character %zu is not a digit", field,
                                i + 1);
    if (len != 16)
        return pd_error_set(err, PD_ERR_INVALID, "%s: must be 16 digits, got %s%zu", field,
                            len > 16 ? "more than " : "", len > 16 ? (size_t)16 : len);
    return PD_OK;
}

int pd_validate_nik(const char *nik, int sex, const char *birth_date, pd_warnings *w, pd_error *err)
{
    int rc = sixteen_digits("nik", nik, err);
    if (rc != PD_OK)
        return rc;
    for (size_t i = 0; i < PD_ARRAY_LEN(placeholders); i++)
        if (!strcmp(nik, placeholders[i].nik)) {
            pd_warn_add(w, PD_WARN_NIK_PLACEHOLDER, "nik: placeholder %s (%s)", nik,
                        placeholders[i].meaning);
            return PD_OK;
        }
    char kec[9];
    if (!kecamatan_exists(nik, kec))
        return pd_error_set(err, PD_ERR_INVALID,
                            "nik: digits 1-6 (%.6s) are not a known kecamatan code (%s)", nik, kec);
    int dd = num(nik + 6, 2), mm = num(nik + 8, 2), yy = num(nik + 10, 2);
    bool female = dd > 40;
    int day = female ? dd - 40 : dd;
    /* The century is not in the NIK; 2000 is a leap year, so a year YY has 29 February in
     * one of 19YY / 20YY exactly when YY % 4 == 0. */
    int probe_year = 2000 + yy;
    if (mm < 1 || mm > 12)
        return pd_error_set(err, PD_ERR_INVALID,
                            "nik: month %02d in digits 7-12 (%.6s) does not exist", mm, nik + 6);
    if (day < 1 || day > days_in_month(probe_year, mm))
        return pd_error_set(err, PD_ERR_INVALID,
                            "nik: birth date in digits 7-12 (%.6s): day %02d%s of month %02d does "
                            "not exist",
                            nik + 6, day, female ? " (day - 40, a woman)" : "", mm);
    if (sex == PD_SEX_MALE && female)
        return pd_error_set(err, PD_ERR_INVALID,
                            "nik: day %02d (day + 40) means a woman, but sex is male", dd);
    if (sex == PD_SEX_FEMALE && !female)
        return pd_error_set(err, PD_ERR_INVALID,
                            "nik: day %02d means a man (a woman's day has 40 added), but sex is "
                            "female",
                            dd);
    if (sex != 0 && sex != PD_SEX_MALE && sex != PD_SEX_FEMALE)
        return pd_error_set(err, PD_ERR_INVALID, "sex: %d is not 1 (male) or 2 (female)", sex);
    if (!strcmp(nik + 12, "0000"))
        return pd_error_set(err, PD_ERR_INVALID,
                            "nik: serial (digits 13-16) is 0000; serials start at 0001");
    int by, bm, bd;
    if (birth_date && pd_date_parse(birth_date, &by, &bm, &bd) &&
        (bd != day || bm != mm || by % 100 != yy))
        pd_warn_add(w, PD_WARN_NIK_BIRTH_DATE,
                    "nik: date part %02d-%02d-%02d differs from the birth date %s", day, mm, yy,
                    birth_date);
    return PD_OK;
}

static void civil_from_ms(int64_t ms, int *y, int *m, int *d)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    *y = tm.tm_year + 1900;
    *m = tm.tm_mon + 1;
    *d = tm.tm_mday;
}

int pd_validate_kk(const char *kk, int64_t now_ms, pd_error *err)
{
    int rc = sixteen_digits("kk", kk, err);
    if (rc != PD_OK)
        return rc;
    char kec[9];
    if (!kecamatan_exists(kk, kec))
        return pd_error_set(err, PD_ERR_INVALID,
                            "kk: digits 1-6 (%.6s) are not a known kecamatan code (%s)", kk, kec);
    int dd = num(kk + 6, 2), mm = num(kk + 8, 2), yy = num(kk + 10, 2);
    int ny, nm, nd;
    civil_from_ms(now_ms > 0 ? now_ms : pd_now_ms(), &ny, &nm, &nd);
    int year = 2000 + yy <= ny ? 2000 + yy : 1900 + yy;
    if (!pd_date_real(year, mm, dd))
        return pd_error_set(err, PD_ERR_INVALID,
                            "kk: issue date in digits 7-12 (%.6s) does not exist (day %02d, month "
                            "%02d)",
                            kk + 6, dd, mm);
    if (pd_days_from_civil(year, mm, dd) > pd_days_from_civil(ny, nm, nd))
        return pd_error_set(err, PD_ERR_INVALID,
                            "kk: issue date %04d-%02d-%02d (digits 7-12) is in the future", year,
                            mm, dd);
    if (!strcmp(kk + 12, "0000"))
        return pd_error_set(err, PD_ERR_INVALID,
                            "kk: serial (digits 13-16) is 0000; serials start at 0001");
    return PD_OK;
}

/* ---- GPS ---------------------------------------------------------------------------------- */

/* Indonesia, roughly: Sabang to Merauke, Miangas to Rote, with a margin. */
#define ID_LAT_MIN -11.5
#define ID_LAT_MAX 6.5
#define ID_LON_MIN 94.5
#define ID_LON_MAX 141.5

#define GPS_EPOCH_MS 946684800000LL /* 2000-01-01 */

int pd_validate_gps(const pd_gps *fix, int64_t now_ms, pd_warnings *w, pd_error *err)
{
    if (!fix)
        return pd_error_set(err, PD_ERR_INVALID, "gps: missing");
    if (!isfinite(fix->lat))
        return pd_error_set(err, PD_ERR_INVALID, "gps.lat: not a finite number");
    if (!isfinite(fix->lon))
        return pd_error_set(err, PD_ERR_INVALID, "gps.lon: not a finite number");
    if (fix->lat < -90.0 || fix->lat > 90.0)
        return pd_error_set(err, PD_ERR_INVALID, "gps.lat: %.6f is outside -90..90", fix->lat);
    if (fix->lon < -180.0 || fix->lon > 180.0)
        return pd_error_set(err, PD_ERR_INVALID, "gps.lon: %.6f is outside -180..180", fix->lon);
    if (!isfinite(fix->accuracy) || fix->accuracy <= 0.0)
        return pd_error_set(err, PD_ERR_INVALID,
                            "gps.accuracy: must be a finite number of metres above 0");
    if (!isnan(fix->altitude) &&
        (!isfinite(fix->altitude) || fix->altitude < -500.0 || fix->altitude > 9000.0))
        return pd_error_set(err, PD_ERR_INVALID, "gps.altitude: outside -500..9000 m");
    if (fix->fix_time < GPS_EPOCH_MS)
        return pd_error_set(err, PD_ERR_INVALID,
                            "gps.fix_time: %lld ms is before 2000 (not unix milliseconds?)",
                            (long long)fix->fix_time);
    int64_t now = now_ms > 0 ? now_ms : pd_now_ms();
    if (fix->fix_time > now + PD_GPS_SKEW_MS)
        return pd_error_set(err, PD_ERR_INVALID,
                            "gps.fix_time: %lld s in the future (more than the %d s allowed skew)",
                            (long long)((fix->fix_time - now) / 1000), PD_GPS_SKEW_MS / 1000);
    if (fix->provider) {
        static const char *const providers[] = {"gps", "network", "fused", "manual"};
        bool ok = false;
        for (size_t i = 0; i < PD_ARRAY_LEN(providers); i++)
            ok |= !strcmp(fix->provider, providers[i]);
        if (!ok)
            return pd_error_set(err, PD_ERR_INVALID,
                                "gps.provider: '%.20s' is not gps, network, fused or manual",
                                fix->provider);
    }
    if (fix->lat < ID_LAT_MIN || fix->lat > ID_LAT_MAX || fix->lon < ID_LON_MIN ||
        fix->lon > ID_LON_MAX)
        pd_warn_add(w, PD_WARN_GPS_OUTSIDE_COUNTRY, "gps: %.6f,%.6f is outside Indonesia", fix->lat,
                    fix->lon);
    if (fix->accuracy > PD_GPS_ACCURACY_WARN_M)
        pd_warn_add(w, PD_WARN_GPS_ACCURACY, "gps: accuracy %.0f m is worse than %.0f m",
                    fix->accuracy, PD_GPS_ACCURACY_WARN_M);
    if (fix->mock)
        pd_warn_add(w, PD_WARN_GPS_MOCK, "gps: the device reports a mock location");
    return PD_OK;
}

double pd_geo_distance_m(double lat1, double lon1, double lat2, double lon2)
{
    const double r = 6371008.8, rad = M_PI / 180.0;
    double dlat = (lat2 - lat1) * rad, dlon = (lon2 - lon1) * rad;
    double a = sin(dlat / 2) * sin(dlat / 2) +
               cos(lat1 * rad) * cos(lat2 * rad) * sin(dlon / 2) * sin(dlon / 2);
    if (a > 1.0)
        a = 1.0;
    return 2.0 * r * asin(sqrt(a));
}

/* Ray casting over "lat lon,lat lon,...". Edges are straight in lat/lon, which is what a
 * prelist's desa box or polygon means at this scale. */
int pd_shape_contains(const char *shape, double lat, double lon)
{
    if (!shape)
        return -1;
    const char *p = shape;
    double first_lat = 0, first_lon = 0, prev_lat = 0, prev_lon = 0;
    size_t n = 0;
    bool inside = false;
    for (;;) {
        char *end;
        double la = strtod(p, &end);
        if (end == p)
            return -1;
        p = end;
        double lo = strtod(p, &end);
        if (end == p || !isfinite(la) || !isfinite(lo))
            return -1;
        p = end;
        if (n == 0) {
            first_lat = la;
            first_lon = lo;
        } else if (((prev_lat > lat) != (la > lat)) &&
                   lon < (lo - prev_lon) * (lat - prev_lat) / (la - prev_lat) + prev_lon) {
            inside = !inside;
        }
        prev_lat = la;
        prev_lon = lo;
        n++;
        while (*p == ' ')
            p++;
        if (*p == ',') {
            p++;
            continue;
        }
        if (*p != '\0')
            return -1;
        break;
    }
    if (n < 3)
        return -1;
    /* Close the ring if the shape did not repeat its first point. */
    if (prev_lat != first_lat || prev_lon != first_lon) {
        if (((prev_lat > lat) != (first_lat > lat)) &&
            lon < (first_lon - prev_lon) * (lat - prev_lat) / (first_lat - prev_lat) + prev_lon)
            inside = !inside;
    }
    return inside ? 1 : 0;
}

/* ---- enumerations of the schema ------------------------------------------------------------ */

static int one_of(const char *field, const char *v, const char *const *allowed, size_t n,
                  pd_error *err)
{
    if (v)
        for (size_t i = 0; i < n; i++)
            if (!strcmp(v, allowed[i]))
                return PD_OK;
    char list[256];
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n && used < sizeof list; i++) {
        int k = snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", allowed[i]);
        if (k < 0)
            break;
        used += (size_t)k;
    }
    if (!v || !*v)
        return pd_error_set(err, PD_ERR_INVALID, "%s: missing (one of %s)", field, list);
    return pd_error_set(err, PD_ERR_INVALID, "%s: '%.40s' is not one of %s", field, v, list);
}

#define ONE_OF(field, v, ...)                                                                      \
    do {                                                                                           \
        static const char *const allowed_[] = {__VA_ARGS__};                                       \
        return one_of(field, v, allowed_, PD_ARRAY_LEN(allowed_), err);                            \
    } while (0)

int pd_validate_visit_outcome(const char *outcome, pd_error *err)
{
    ONE_OF("outcome", outcome, "found", "found_new_head", "moved_within", "moved_out",
           "joined_other", "not_found", "all_deceased", "refused", "new_household");
}

int pd_validate_member_outcome(const char *outcome, pd_error *err)
{
    ONE_OF("member outcome", outcome, "confirmed", "not_confirmed", "duplicate", "deceased",
           "moved", "new");
}

int pd_validate_photo_kind(const char *kind, pd_error *err)
{
    ONE_OF("photo kind", kind, "front", "wall", "floor", "kitchen", "toilet", "kk", "ktp", "head",
           "roof");
}

int pd_validate_end_reason(const char *reason, pd_error *err)
{
    ONE_OF("reason", reason, "deceased", "moved", "duplicate");
}

/* ---- JPEG --------------------------------------------------------------------------------- */

static bool is_sof(uint8_t m)
{
    return m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
}

int pd_validate_jpeg(const uint8_t *p, size_t len, pd_error *err)
{
    if (!p || len == 0)
        return pd_error_set(err, PD_ERR_INVALID, "photo: empty");
    if (len > PD_PHOTO_MAX_BYTES)
        return pd_error_set(err, PD_ERR_TOOBIG, "photo: %zu bytes is over the %u byte limit", len,
                            PD_PHOTO_MAX_BYTES);
    if (len < 4 || p[0] != 0xFF || p[1] != 0xD8 || p[2] != 0xFF)
        return pd_error_set(err, PD_ERR_INVALID,
                            "photo: not a JPEG (does not start with FF D8 FF)");
    if (p[len - 2] != 0xFF || p[len - 1] != 0xD9)
        return pd_error_set(err, PD_ERR_INVALID,
                            "photo: no end-of-image marker (FF D9) at the end: truncated?");
    size_t i = 2;
    bool sof = false;
    for (;;) {
        if (i + 1 >= len || p[i] != 0xFF)
            return pd_error_set(err, PD_ERR_INVALID,
                                "photo: expected a marker at byte %zu; the segments are broken", i);
        while (i + 2 < len && p[i + 1] == 0xFF) /* fill bytes */
            i++;
        uint8_t m = p[i + 1];
        i += 2;
        if (m == 0xD9 || m == 0x00)
            return pd_error_set(err, PD_ERR_INVALID, "photo: no image scan before byte %zu", i);
        if ((m >= 0xD0 && m <= 0xD7) || m == 0x01) /* standalone markers */
            continue;
        if (i + 2 > len - 2)
            return pd_error_set(err, PD_ERR_INVALID, "photo: segment FF %02X truncated", m);
        size_t seg = ((size_t)p[i] << 8) | p[i + 1];
        if (seg < 2 || seg > len - 2 - i)
            return pd_error_set(err, PD_ERR_INVALID,
                                "photo: segment FF %02X at byte %zu has a bad length %zu", m, i - 2,
                                seg);
        const uint8_t *b = p + i + 2;
        size_t blen = seg - 2;
        if (is_sof(m)) {
            if (sof)
                return pd_error_set(err, PD_ERR_INVALID, "photo: more than one frame header");
            if (blen < 6)
                return pd_error_set(err, PD_ERR_INVALID, "photo: frame header too short");
            unsigned precision = b[0];
            unsigned h = ((unsigned)b[1] << 8) | b[2], wdt = ((unsigned)b[3] << 8) | b[4];
            unsigned nc = b[5];
            if (precision != 8 && precision != 12 && precision != 16)
                return pd_error_set(err, PD_ERR_INVALID, "photo: frame header: sample precision %u",
                                    precision);
            if (h == 0 || wdt == 0 || h > PD_PHOTO_MAX_PIXELS || wdt > PD_PHOTO_MAX_PIXELS)
                return pd_error_set(err, PD_ERR_INVALID,
                                    "photo: frame header says %ux%u pixels (1..%d each way)", wdt,
                                    h, PD_PHOTO_MAX_PIXELS);
            if (nc < 1 || nc > 4 || blen != 6 + 3 * (size_t)nc)
                return pd_error_set(err, PD_ERR_INVALID,
                                    "photo: frame header: %u components in %zu bytes", nc, blen);
            for (unsigned k = 0; k < nc; k++) {
                unsigned hs = b[6 + 3 * k + 1] >> 4, vs = b[6 + 3 * k + 1] & 15;
                if (hs < 1 || hs > 4 || vs < 1 || vs > 4)
                    return pd_error_set(err, PD_ERR_INVALID,
                                        "photo: frame header: component %u sampling %ux%u", k, hs,
                                        vs);
            }
            sof = true;
        } else if (m == 0xDA) {
            if (!sof)
                return pd_error_set(err, PD_ERR_INVALID,
                                    "photo: no frame header (SOF) before the image scan");
            return PD_OK;
        }
        i += seg;
    }
}

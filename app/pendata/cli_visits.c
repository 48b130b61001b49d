/*
 * cli_visits.c — shared plumbing of the household, member, visit, photo, find and ops commands
 * (see cli_visits.h).
 */
#include "cli_visits.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool cli_opt(int argc, char **argv, int *i, const char *name, const char **val)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return false;
    if (a[n] == '=') {
        *val = a + n + 1;
        return true;
    }
    if (a[n] != '\0')
        return false;
    if (*i + 1 >= argc) {
        fprintf(stderr, "pendata: %s needs a value\n", name);
        *val = NULL;
        return true;
    }
    *val = argv[++*i];
    return true;
}

int cli_parse_time(const char *s, int64_t *ms)
{
    if (!s || !*s)
        return -1;
    if (!strcmp(s, "now")) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        *ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        return 0;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end == '\0' && !errno && v > 0) {
        *ms = v;
        return 0;
    }
    /* YYYY-MM-DDTHH:MM:SS[.mmm]Z */
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    size_t len = strlen(s);
    if (len < sizeof shape - 1)
        return -1;
    for (size_t i = 0; i < sizeof shape - 1; i++)
        if (shape[i] == 'd' ? (s[i] < '0' || s[i] > '9') : s[i] != shape[i])
            return -1;
    struct tm tm = {0};
    tm.tm_year = atoi(s) - 1900;
    tm.tm_mon = atoi(s + 5) - 1;
    tm.tm_mday = atoi(s + 8);
    tm.tm_hour = atoi(s + 11);
    tm.tm_min = atoi(s + 14);
    tm.tm_sec = atoi(s + 17);
    if (tm.tm_mon > 11 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
        tm.tm_sec > 60)
        return -1;
    const char *p = s + sizeof shape - 1;
    int frac = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 3) {
            frac = frac * 10 + (*p++ - '0');
            digits++;
        }
        while (digits++ < 3)
            frac *= 10;
    }
    if (strcmp(p, "Z") != 0)
        return -1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    *ms = (int64_t)t * 1000 + frac;
    return 0;
}

static bool parse_double(const char *s, size_t n, double *out)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return false;
    memcpy(buf, s, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    *out = strtod(buf, &end);
    return *end == '\0' && !errno;
}

int cli_parse_gps(const char *s, pd_gps *g)
{
    double v[4];
    int k = 0;
    const char *p = s;
    while (k < 4) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        if (!parse_double(p, n, &v[k]))
            return -1;
        k++;
        if (!comma)
            break;
        p = comma + 1;
    }
    if (k < 2 || (k == 4 && strchr(p, ',')))
        return -1;
    memset(g, 0, sizeof *g);
    g->lat = v[0];
    g->lon = v[1];
    g->accuracy = k >= 3 ? v[2] : 50.0;
    g->altitude = k >= 4 ? v[3] : NAN;
    g->provider = k >= 3 ? "gps" : "manual";
    return 0;
}

int cli_parse_sex(const char *s)
{
    if (!s)
        return 0;
    static const char *const male[] = {"1", "male", "m", "laki-laki", "l"};
    static const char *const female[] = {"2", "female", "f", "perempuan", "p"};
    for (size_t i = 0; i < sizeof male / sizeof male[0]; i++) {
        if (!strcmp(s, male[i]))
            return 1;
        if (!strcmp(s, female[i]))
            return 2;
    }
    return 0;
}

void cli_print_warnings(cli *c, const pd_warnings *w)
{
    if (c->quiet || !w)
        return;
    for (size_t i = 0; i < w->count; i++)
        fprintf(stderr, "%s: warning: %s [%s]\n", c->prog, w->item[i].msg, w->item[i].code);
    if (w->dropped)
        fprintf(stderr, "%s: warning: %zu more warnings\n", c->prog, w->dropped);
}

cJSON *cli_warnings_json(const pd_warnings *w)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a && w && i < w->count; i++) {
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddStringToObject(o, "code", w->item[i].code) ||
            !cJSON_AddStringToObject(o, "message", w->item[i].msg)) {
            cJSON_Delete(o);
            cJSON_Delete(a);
            return NULL;
        }
        cJSON_AddItemToArray(a, o);
    }
    return a;
}

int cli_print_json(cli *c, cJSON *doc)
{
    char *s = doc ? cJSON_PrintUnformatted(doc) : NULL;
    cJSON_Delete(doc);
    if (!s)
        return cli_fail(c, "json", "out of memory");
    puts(s);
    free(s);
    return CLI_OK;
}

cJSON *cli_int_json(int64_t i)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)i);
    return cJSON_CreateRaw(buf);
}

cJSON *cli_value_json(const pd_value *v)
{
    switch (v->type) {
    case PD_VAL_NULL:
        return cJSON_CreateNull();
    case PD_VAL_INT:
        return cli_int_json(v->i);
    case PD_VAL_REAL:
        return cJSON_CreateNumber(v->r);
    case PD_VAL_TEXT:
    case PD_VAL_BLOB: {
        size_t n = v->type == PD_VAL_TEXT ? v->len + 1 : 2 * v->len + 1;
        char *s = malloc(n);
        if (!s)
            return NULL;
        if (v->type == PD_VAL_TEXT) {
            memcpy(s, v->p, v->len);
            s[v->len] = '\0';
        } else {
            for (size_t i = 0; i < v->len; i++)
                snprintf(s + 2 * i, 3, "%02x", v->p[i]);
            s[2 * v->len] = '\0';
        }
        cJSON *j = cJSON_CreateString(s);
        free(s);
        return j;
    }
    }
    return NULL;
}

const char *cli_value_text(const pd_value *v, char *buf, size_t cap)
{
    switch (v->type) {
    case PD_VAL_NULL:
        snprintf(buf, cap, "NULL");
        break;
    case PD_VAL_INT:
        snprintf(buf, cap, "%lld", (long long)v->i);
        break;
    case PD_VAL_REAL:
        snprintf(buf, cap, "%.9g", v->r);
        break;
    case PD_VAL_TEXT:
        snprintf(buf, cap, "'%.*s'", v->len > 200 ? 200 : (int)v->len, (const char *)v->p);
        break;
    case PD_VAL_BLOB:
        snprintf(buf, cap, "%zu bytes", v->len);
        break;
    }
    return buf;
}

int cli_fail_store(cli *c, const char *what, pd_store *store)
{
    return cli_fail(c, what, pd_store_errmsg(store));
}

/*
 * util.c — small helpers of the server layer: time, messages on the handle, hex, id and text
 * validation, area-code lists, directories and paths.
 */
#include "srv_internal.h"

#include "json_text.h"
#include "pd_prelist.h"

#include <cjson/cJSON.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t srv_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void srv_lock(pd_server *srv)
{
    if (!srv->st->ops->concurrent)
        pthread_mutex_lock(&srv->lock);
}

void srv_unlock(pd_server *srv)
{
    if (!srv->st->ops->concurrent)
        pthread_mutex_unlock(&srv->lock);
}

/* The reader the calling thread's request holds (srv_read_begin), or NULL. */
static _Thread_local pd_storage *thread_reader;

pd_storage *srv_store(const pd_server *srv)
{
    return thread_reader ? thread_reader : srv->st;
}

bool srv_on_reader(const pd_server *srv)
{
    (void)srv;
    return thread_reader != NULL;
}

bool srv_read_begin(pd_server *srv)
{
    if (!srv->nreaders || thread_reader)
        return false;
    int slot = -1;
    pthread_mutex_lock(&srv->state_lock);
    for (int i = 0; i < srv->nreaders && slot < 0; i++)
        if (!srv->reader_busy[i])
            srv->reader_busy[slot = i] = true;
    pthread_mutex_unlock(&srv->state_lock);
    if (slot < 0)
        return false;
    pd_storage *rd = srv->readers[slot];
    if (rd->ops->begin(rd) != PD_OK) {
        pthread_mutex_lock(&srv->state_lock);
        srv->reader_busy[slot] = false;
        pthread_mutex_unlock(&srv->state_lock);
        return false;
    }
    thread_reader = rd;
    return true;
}

bool srv_read_end(pd_server *srv, bool answered)
{
    pd_storage *rd = thread_reader;
    if (!rd)
        return true;
    rd->ops->rollback(rd); /* (it only read) */
    thread_reader = NULL;
    pthread_mutex_lock(&srv->state_lock);
    for (int i = 0; i < srv->nreaders; i++)
        if (srv->readers[i] == rd)
            srv->reader_busy[i] = false;
    pthread_mutex_unlock(&srv->state_lock);
    return !answered || srv->st->ops->read_flush(srv->st) == PD_OK;
}

int srv_readers_open(pd_server *srv, int n)
{
    if (!srv->st->ops->reader_open || srv->st->ops->concurrent)
        return PD_OK;
    if (n > SRV_READERS_MAX)
        n = SRV_READERS_MAX;
    pd_error err = {0};
    while (srv->nreaders < n) {
        pd_storage *rd = NULL;
        if (srv->st->ops->reader_open(srv->st, &rd, &err) != PD_OK) {
            srv_readers_close(srv);
            return srv_fail(srv, err.code ? err.code : PD_ERR_IO, "%s", err.msg);
        }
        srv->reader_busy[srv->nreaders] = false;
        srv->readers[srv->nreaders++] = rd;
    }
    return PD_OK;
}

void srv_readers_close(pd_server *srv)
{
    while (srv->nreaders > 0) {
        pd_storage_close(srv->readers[--srv->nreaders]);
        srv->readers[srv->nreaders] = NULL;
    }
}

/* One per thread: a request runs on one thread from its handler to its answer (libmicrohttpd's
 * thread pool keeps a connection on its thread), and an operator act on its caller's. */
static _Thread_local pd_error thread_err;

pd_error *srv_err(const pd_server *srv)
{
    (void)srv;
    return &thread_err;
}

int srv_fail(pd_server *srv, int code, const char *fmt, ...)
{
    pd_error *e = srv_err(srv);
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

int srv_fail_storage(pd_server *srv)
{
    int code = pd_storage_error(srv_store(srv))->code;
    return srv_fail(srv, code ? code : PD_ERR_INTERNAL, "%s", pd_storage_errmsg(srv_store(srv)));
}

void srv_hex(const uint8_t *p, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

bool srv_unhex(const char *s, uint8_t *out, size_t n)
{
    if (!s || strlen(s) != 2 * n)
        return false;
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return true;
}

bool srv_valid_id(const char *id)
{
    if (!id)
        return false;
    size_t n = strlen(id);
    if (n < 1 || n > PD_SRV_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = id[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

/* One scan for \u0000 in JSON strings, shared with the sync client (sync/json_text.c). */
cJSON *srv_json_parse(const uint8_t *body, size_t len)
{
    return body ? pd_json_parse((const char *)body, len) : NULL;
}

bool srv_valid_text(const char *s, size_t max)
{
    if (!s)
        return false;
    size_t n = strlen(s);
    if (n < 1 || n > max)
        return false;
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            if (c < 0x20 || c == 0x7f)
                return false;
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        /* overlong forms, surrogates, beyond Unicode */
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
            return false;
        i += len;
    }
    return true;
}

int srv_areas_check(const char *areas, pd_error *err)
{
    if (!areas || !*areas)
        return PD_OK;
    if (strlen(areas) > PD_SRV_AREA_MAX)
        return pd_error_set(err, PD_ERR_TOOBIG, "area list is longer than %d bytes",
                            PD_SRV_AREA_MAX);
    const char *p = areas;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char code[PD_SRV_CODE_MAX + 1];
        if (n == 0 || n > PD_SRV_CODE_MAX)
            return pd_error_set(err, PD_ERR_INVALID, "area list '%s': an empty or overlong code",
                                areas);
        memcpy(code, p, n);
        code[n] = '\0';
        for (size_t i = 0; i < n; i++)
            if (!((code[i] >= '0' && code[i] <= '9') || code[i] == '.'))
                return pd_error_set(err, PD_ERR_INVALID,
                                    "area code '%s' is not a dotted Kemendagri code", code);
        if (!pd_area_exists(code))
            return pd_error_set(err, PD_ERR_INVALID, "area code '%s' is not a real area", code);
        p += n;
        if (*p == ',')
            p++;
        if (end && !*p)
            return pd_error_set(err, PD_ERR_INVALID, "area list '%s' ends with a comma", areas);
    }
    return PD_OK;
}

bool srv_areas_cover(const char *areas, const char *code)
{
    if (!areas || !code || !*code)
        return false;
    size_t cn = strlen(code);
    const char *p = areas;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > 0 && n <= cn && !memcmp(p, code, n) && (cn == n || code[n] == '.'))
            return true;
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

bool srv_areas_overlap(const char *areas, const char *code)
{
    if (srv_areas_cover(areas, code))
        return true;
    if (!areas || !code || !*code)
        return false;
    /* Or some listed area lies inside code: code covers that one entry. */
    const char *p = areas;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char one[PD_SRV_CODE_MAX + 1];
        if (n > 0 && n < sizeof one) {
            memcpy(one, p, n);
            one[n] = '\0';
            if (srv_areas_cover(code, one))
                return true;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return false;
}

int srv_mkdirs(const char *path, pd_error *err)
{
    char buf[4096];
    if (!path || strlen(path) >= sizeof buf)
        return pd_error_set(err, PD_ERR_INVALID, "directory path too long");
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return pd_error_set(err, PD_ERR_IO, "%s: cannot create directory: %s", buf,
                                strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0700) != 0 && errno != EEXIST)
        return pd_error_set(err, PD_ERR_IO, "%s: cannot create directory: %s", buf,
                            strerror(errno));
    return PD_OK;
}

int srv_fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

char *srv_path(const pd_server *srv, const char *sub, const char *name)
{
    size_t n = strlen(srv->data_dir) + (sub ? strlen(sub) : 0) + (name ? strlen(name) : 0) + 3;
    char *p = malloc(n);
    if (!p)
        return NULL;
    if (sub && name)
        snprintf(p, n, "%s/%s/%s", srv->data_dir, sub, name);
    else if (sub)
        snprintf(p, n, "%s/%s", srv->data_dir, sub);
    else
        snprintf(p, n, "%s", srv->data_dir);
    return p;
}

cJSON *srv_json_int(int64_t i)
{
    if (i >= INT32_MIN && i <= INT32_MAX)
        return cJSON_CreateNumber((double)i); /* (printed with "%d") */
    char digits[24];
    snprintf(digits, sizeof digits, "%lld", (long long)i);
    return cJSON_CreateRaw(digits);
}

cJSON *srv_json_real(double r)
{
    if (!isfinite(r))
        return cJSON_CreateNull();
    char digits[40];
    snprintf(digits, sizeof digits, "%1.15g", r);
    if (strtod(digits, NULL) != r)
        snprintf(digits, sizeof digits, "%1.17g", r);
    return cJSON_CreateRaw(digits);
}

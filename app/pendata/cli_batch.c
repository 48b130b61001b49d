/*
 * cli_batch.c — see cli_batch.h.
 */
#include "cli_batch.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_read_all(cli *c, const char *path, size_t max, uint8_t **out, size_t *len)
{
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    *out = NULL;
    *len = 0;
    if (!f)
        return cli_fail(c, path, strerror(errno)), -1;
    size_t cap = 65536, n = 0;
    uint8_t *buf = malloc(cap);
    int rc = -1;
    while (buf) {
        if (n == cap) {
            if (cap > max) {
                cli_fail(c, path, "the file is over the size limit");
                break;
            }
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) {
            if (ferror(f))
                cli_fail(c, path, "read error");
            else if (n > max)
                cli_fail(c, path, "the file is over the size limit");
            else
                rc = 0;
            break;
        }
    }
    if (!buf)
        cli_fail(c, path, "out of memory");
    if (f != stdin)
        fclose(f);
    if (rc == 0) {
        *out = buf;
        *len = n;
    } else {
        free(buf);
    }
    return rc;
}

int cli_write_all(cli *c, const char *path, const void *data, size_t len)
{
    if (!strcmp(path, "-")) {
        if (fwrite(data, 1, len, stdout) != len || fflush(stdout) != 0)
            return cli_fail(c, "stdout", strerror(errno)), -1;
        return 0;
    }
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp)
        return cli_fail(c, path, "out of memory"), -1;
    snprintf(tmp, n, "%s.tmp%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    int rc = -1;
    if (fd < 0) {
        cli_fail(c, tmp, strerror(errno));
        goto out;
    }
    const uint8_t *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            cli_fail(c, tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            goto out;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) != 0 || close(fd) != 0) {
        cli_fail(c, tmp, strerror(errno));
        unlink(tmp);
        goto out;
    }
    if (rename(tmp, path) != 0) {
        cli_fail(c, path, strerror(errno));
        unlink(tmp);
        goto out;
    }
    rc = 0;
out:
    free(tmp);
    return rc;
}

int cli_parse_pk(const char *hex, uint8_t pk[PD_PUBKEY_BYTES])
{
    size_t bin = 0;
    if (!hex || strlen(hex) != 2 * PD_PUBKEY_BYTES)
        return -1;
    if (sodium_hex2bin(pk, PD_PUBKEY_BYTES, hex, strlen(hex), NULL, &bin, NULL) != 0 ||
        bin != PD_PUBKEY_BYTES)
        return -1;
    return 0;
}

const char *cli_hex(char *out, const uint8_t *p, size_t n)
{
    sodium_bin2hex(out, 2 * n + 1, p, n);
    return out;
}

const char *cli_time_text(int64_t ms, char *buf, size_t cap)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(buf, cap, "%Y-%m-%d %H:%M", &tm))
        snprintf(buf, cap, "%lld", (long long)ms);
    return buf;
}

int cli_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s || *s == '-')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v == 0)
        return -1;
    *out = v;
    return 0;
}

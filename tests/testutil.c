/*
 * testutil.c — see testutil.h.
 */
#define _GNU_SOURCE
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int pd_test_failures;
int pd_test_checks;

int pd_test_finish(void)
{
    /* The plain closing line CI reads. */
    printf("%d passed, %d failed\n", pd_test_checks - pd_test_failures, pd_test_failures);
    fflush(stdout);
    return pd_test_failures ? 1 : 0;
}

char *pd_test_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    size_t n = strlen(base) + strlen(tag) + 32;
    char *p = malloc(n);
    if (!p)
        abort();
    snprintf(p, n, "%s/pd-%s-XXXXXX", base, tag);
    if (!mkdtemp(p)) {
        perror("mkdtemp");
        abort();
    }
    return p;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void pd_test_rmtree(const char *path)
{
    if (path && !getenv("PD_KEEP_TMP"))
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

uint8_t *pd_test_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    uint8_t *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? cap * 2 : 65536;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    if (len)
        *len = n;
    return buf;
}

int pd_test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, len, f);
    int rc = fclose(f);
    return (w == len && rc == 0) ? 0 : -1;
}

bool pd_test_file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int pd_test_dir_entries(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    const struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

bool pd_test_file_contains(const char *path, const void *needle, size_t n)
{
    size_t len = 0;
    uint8_t *buf = pd_test_read_file(path, &len);
    if (!buf)
        return false;
    bool found = memmem(buf, len, needle, n) != NULL;
    free(buf);
    return found;
}

int pd_test_flip_bit(const char *path, long offset, int bit)
{
    FILE *f = fopen(path, "r+b");
    if (!f)
        return -1;
    int rc = -1;
    if (fseek(f, offset, SEEK_SET) == 0) {
        int c = fgetc(f);
        if (c != EOF && fseek(f, offset, SEEK_SET) == 0 && fputc(c ^ (1 << bit), f) != EOF)
            rc = 0;
    }
    if (fclose(f) != 0)
        rc = -1;
    return rc;
}

char *pd_test_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p)
        abort();
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/*
 * cmd_prelist.c — `pendata prelist`: generate, import, show and split prelist packages, and list
 * the Kemendagri areas. The work is in libpendata (prelist/pd_prelist.h); this file reads options
 * and keys, and prints.
 *
 * Issuer keys. A package is signed by its issuer (normally the server). `generate` and `split`
 * take the issuer's secret key with --issuer-key FILE: a server key file ("PDSK", from
 * pendata-server init) or a file holding the 64-byte Ed25519 secret key in hex. Without it they
 * use a development issuer key, <home>/prelist-issuer.key (made on first use, mode 0600, with its
 * public key beside it in prelist-issuer.pub), and say so on stderr. `import` and `show` take the
 * issuer's public key: 64 hex characters, or a file holding them (or a secret key file, whose
 * public half is used). `import` pins the key in the store at the first import; later imports
 * must match it.
 */
#include "cli.h"
#include "pd_prelist.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEYFILE_MAX 4096
#define DEV_KEY_NAME "prelist-issuer.key"
#define DEV_PUB_NAME "prelist-issuer.pub"
#define PDSK_BYTES 168 /* server/keys.c */

static const char *USAGE =
    "prelist generate --area CODE [--seed N] [--households N] [--issuer-key FILE]\n"
    "                        [--issued-at MS | --now] -o FILE\n"
    "       pendata prelist import FILE [--issuer-key HEX|FILE]\n"
    "       pendata prelist show FILE [--issuer-key HEX|FILE]\n"
    "       pendata prelist split FILE --enumerators N -o DIR [--issuer-key FILE]\n"
    "       pendata prelist areas [CODE]";

static void print_help(void)
{
    printf("usage: pendata %s\n\n"
           "Prelist packages: the signed list of households of an area that a device works on.\n\n"
           "  generate   make a realistic synthetic prelist for a real kecamatan or desa (same\n"
           "             --seed, same bytes); --households N in all (default about 150 a desa);\n"
           "             issued at 2025-01-01 unless --issued-at MS or --now\n"
           "  import     verify a package with the issuer key and load it into this device's\n"
           "             store in one transaction (asks for the PIN); the first import pins the key\n"
           "  show       verify a package and summarise it (--json for machines)\n"
           "  split      share a package among N enumerators by whole SLS (RT/RW), balanced by\n"
           "             households; writes DIR/<area>-eNN.pdpl and prints the assignment\n"
           "  areas      list provinces, or the regencies, kecamatan or desa of CODE\n\n"
           "--issuer-key: for generate and split the issuer's SECRET key (a pendata-server key\n"
           "file, or 128 hex characters); without it a development key %s in the home\n"
           "directory is used (made on first use). For import and show the issuer's PUBLIC key\n"
           "(64 hex characters, or a file with them, e.g. %s).\n",
           USAGE, DEV_KEY_NAME, DEV_PUB_NAME);
}

/* ---- keys ----------------------------------------------------------------------------------- */

/* Read at most KEYFILE_MAX bytes; *len gets the count. -1 with a message on failure. */
static int read_small(cli *c, const char *path, uint8_t *buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        cli_fail(c, path, strerror(errno));
        return -1;
    }
    *len = fread(buf, 1, KEYFILE_MAX, f);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        cli_fail(c, path, "cannot read");
        return -1;
    }
    if (*len == KEYFILE_MAX) {
        cli_fail(c, path, "too big for a key file");
        return -1;
    }
    return 0;
}

/* hex (surrounding whitespace ignored) of exactly n bytes */
static bool hex_exact(const uint8_t *s, size_t len, uint8_t *out, size_t n)
{
    while (len && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' '))
        len--;
    while (len && (*s == ' ' || *s == '\n'))
        s++, len--;
    size_t got = 0;
    return len == 2 * n &&
           sodium_hex2bin(out, n, (const char *)s, len, NULL, &got, NULL) == 0 && got == n;
}

/* An issuer secret key from a key file. */
static int load_sk(cli *c, const char *path, uint8_t sk[PD_SECKEY_BYTES])
{
    uint8_t buf[KEYFILE_MAX];
    size_t len;
    int rc = -1;
    if (read_small(c, path, buf, &len) != 0)
        goto out;
    if (len == PDSK_BYTES && !memcmp(buf, "PDSK", 4))
        memcpy(sk, buf + 8, PD_SECKEY_BYTES);
    else if (!hex_exact(buf, len, sk, PD_SECKEY_BYTES)) {
        cli_fail(c, path, "not an issuer secret key (a PDSK server key file or 128 hex characters)");
        goto out;
    }
    uint8_t pk[PD_PUBKEY_BYTES];
    crypto_sign_ed25519_sk_to_pk(pk, sk);
    uint8_t seed[32], pk2[PD_PUBKEY_BYTES], sk2[PD_SECKEY_BYTES];
    crypto_sign_ed25519_sk_to_seed(seed, sk);
    crypto_sign_seed_keypair(pk2, sk2, seed);
    bool ok = !memcmp(pk, pk2, sizeof pk);
    sodium_memzero(seed, sizeof seed);
    sodium_memzero(sk2, sizeof sk2);
    if (!ok) {
        cli_fail(c, path, "the secret key's public half does not match");
        goto out;
    }
    rc = 0;
out:
    sodium_memzero(buf, sizeof buf);
    return rc;
}

/* The development issuer key in the home directory, made on first use. */
static int dev_sk(cli *c, uint8_t sk[PD_SECKEY_BYTES])
{
    size_t n = strlen(c->home) + sizeof DEV_KEY_NAME + 2;
    char *path = malloc(n), *pub = malloc(n);
    int rc = -1;
    if (!path || !pub) {
        cli_fail(c, "prelist", "out of memory");
        goto out;
    }
    snprintf(path, n, "%s/%s", c->home, DEV_KEY_NAME);
    snprintf(pub, n, "%s/%s", c->home, DEV_PUB_NAME);
    if (access(path, F_OK) == 0) {
        rc = load_sk(c, path, sk);
        if (rc == 0 && !c->quiet)
            fprintf(stderr, "%s: no --issuer-key: signing with the development issuer key %s\n",
                    c->prog, path);
        goto out;
    }
    if (mkdir(c->home, 0700) != 0 && errno != EEXIST) {
        cli_fail(c, c->home, strerror(errno));
        goto out;
    }
    uint8_t pk[PD_PUBKEY_BYTES];
    crypto_sign_keypair(pk, sk);
    char hex[2 * PD_SECKEY_BYTES + 2];
    sodium_bin2hex(hex, sizeof hex, sk, PD_SECKEY_BYTES);
    strcat(hex, "\n");
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write(fd, hex, strlen(hex)) == (ssize_t)strlen(hex) && fsync(fd) == 0;
    if (fd >= 0)
        close(fd);
    sodium_memzero(hex, sizeof hex);
    if (!ok) {
        cli_fail(c, path, strerror(errno));
        goto out;
    }
    sodium_bin2hex(hex, sizeof hex, pk, PD_PUBKEY_BYTES);
    strcat(hex, "\n");
    FILE *f = fopen(pub, "w");
    if (!f || fputs(hex, f) < 0 || fclose(f) != 0) {
        cli_fail(c, pub, "cannot write the public key");
        goto out;
    }
    if (!c->quiet)
        fprintf(stderr,
                "%s: no --issuer-key: made a development issuer key %s (public key in %s)\n",
                c->prog, path, pub);
    rc = 0;
out:
    free(path);
    free(pub);
    return rc;
}

static int issuer_sk(cli *c, const char *arg, uint8_t sk[PD_SECKEY_BYTES])
{
    return arg ? load_sk(c, arg, sk) : dev_sk(c, sk);
}

/* An issuer public key: 64 hex characters, or a file of them, or a secret key file. */
static int issuer_pk(cli *c, const char *arg, uint8_t pk[PD_PUBKEY_BYTES])
{
    if (hex_exact((const uint8_t *)arg, strlen(arg), pk, PD_PUBKEY_BYTES))
        return 0;
    uint8_t buf[KEYFILE_MAX];
    size_t len;
    if (read_small(c, arg, buf, &len) != 0)
        return -1;
    int rc = 0;
    uint8_t tmp[PD_SECKEY_BYTES];
    bool sk_hex = hex_exact(buf, len, tmp, sizeof tmp);
    sodium_memzero(tmp, sizeof tmp);
    if (hex_exact(buf, len, pk, PD_PUBKEY_BYTES)) {
        /* a public key file */
    } else if ((len == PDSK_BYTES && !memcmp(buf, "PDSK", 4)) || sk_hex) {
        uint8_t sk[PD_SECKEY_BYTES];
        rc = load_sk(c, arg, sk);
        if (rc == 0)
            crypto_sign_ed25519_sk_to_pk(pk, sk);
        sodium_memzero(sk, sizeof sk);
    } else {
        cli_fail(c, arg, "not an issuer public key (64 hex characters, or a file of them)");
        rc = -1;
    }
    sodium_memzero(buf, sizeof buf);
    return rc;
}

/* ---- output helpers ------------------------------------------------------------------------- */

static void print_json(cJSON *j)
{
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    if (s)
        printf("%s\n", s);
    free(s);
    cJSON_Delete(j);
}

static void iso_time(int64_t ms, char out[32])
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    else
        snprintf(out, 32, "%lld ms", (long long)ms);
}

static void hex(const uint8_t *p, size_t n, char *out)
{
    sodium_bin2hex(out, 2 * n + 1, p, n);
}

/* "Sukasari, Kota Bandung, Jawa Barat" for an area id's code */
static void area_path(const char *area_id, char *out, size_t cap)
{
    char code[PD_AREA_CODE_MAX];
    size_t n = strcspn(area_id, ":");
    if (n >= sizeof code) {
        snprintf(out, cap, "?");
        return;
    }
    memcpy(code, area_id, n);
    code[n] = '\0';
    out[0] = '\0';
    size_t used = 0;
    for (int cut = (int)n; cut > 0;) {
        code[cut] = '\0';
        const char *name = pd_area_name(code);
        if (name)
            used += (size_t)snprintf(out + used, used < cap ? cap - used : 0, "%s%s",
                                     used ? ", " : "", name);
        const char *dot = strrchr(code, '.');
        cut = dot ? (int)(dot - code) : 0;
        if (used >= cap)
            break;
    }
}

/* ---- generate ------------------------------------------------------------------------------- */

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s)
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || s[0] == '-')
        return false;
    *out = v;
    return true;
}

static int run_generate(cli *c, int argc, char **argv)
{
    const char *area = NULL, *out = NULL, *key = NULL;
    pd_prelist_gen_options o = {0};
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t n;
        if (!strcmp(a, "--area") && v)
            area = v, i++;
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v)
            out = v, i++;
        else if (!strcmp(a, "--issuer-key") && v)
            key = v, i++;
        else if (!strcmp(a, "--seed") && v && parse_u64(v, &n))
            o.seed = n, i++;
        else if (!strcmp(a, "--households") && v && parse_u64(v, &n) && n >= 1 &&
                 n <= PD_PRELIST_MAX_HOUSEHOLDS)
            o.households = (uint32_t)n, i++;
        else if (!strcmp(a, "--issued-at") && v && parse_u64(v, &n) && n > 0 && n < INT64_MAX)
            o.issued_at = (int64_t)n, i++;
        else if (!strcmp(a, "--now")) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            o.issued_at = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
        } else {
            fprintf(stderr, "%s: prelist generate: bad or incomplete option '%s'\n", c->prog, a);
            return cli_usage(c, USAGE);
        }
    }
    if (!area || !out) {
        fprintf(stderr, "%s: prelist generate: --area and -o are required\n", c->prog);
        return cli_usage(c, USAGE);
    }
    uint8_t sk[PD_SECKEY_BYTES];
    if (issuer_sk(c, key, sk) != 0)
        return CLI_FAIL;
    pd_prelist_info info;
    pd_error err = {0};
    int rc = pd_prelist_generate_file(out, area, &o, sk, &info, &err);
    sodium_memzero(sk, sizeof sk);
    if (rc != PD_OK)
        return cli_fail_err(c, "prelist generate", &err);
    char where[256], idhex[2 * PD_HASH_BYTES + 1], pkhex[2 * PD_PUBKEY_BYTES + 1];
    area_path(info.area, where, sizeof where);
    hex(info.id, PD_HASH_BYTES, idhex);
    hex(info.issuer_pk, PD_PUBKEY_BYTES, pkhex);
    uint64_t size = PD_PRELIST_PREFIX_BYTES + info.compressed_size;
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "path", out);
        cJSON_AddStringToObject(j, "area", info.area);
        cJSON_AddStringToObject(j, "area_name", where);
        cJSON_AddNumberToObject(j, "issued_at", (double)info.issued_at);
        cJSON_AddStringToObject(j, "issuer_pk", pkhex);
        cJSON_AddStringToObject(j, "id", idhex);
        cJSON_AddNumberToObject(j, "areas", info.shapes);
        cJSON_AddNumberToObject(j, "households", info.households);
        cJSON_AddNumberToObject(j, "members", info.members);
        cJSON_AddNumberToObject(j, "bytes", (double)size);
        cJSON_AddNumberToObject(j, "inflated_bytes", (double)info.inflated_size);
        print_json(j);
    } else {
        printf("%s: area %s (%s): %u desa, %u households, %u members, %llu bytes\n", out,
               info.area, where, info.shapes, info.households, info.members,
               (unsigned long long)size);
    }
    return CLI_OK;
}

/* ---- import --------------------------------------------------------------------------------- */

static int run_import(cli *c, int argc, char **argv)
{
    const char *file = NULL, *key = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--issuer-key") && i + 1 < argc)
            key = argv[++i];
        else if (argv[i][0] != '-' && !file)
            file = argv[i];
        else {
            fprintf(stderr, "%s: prelist import: bad or incomplete option '%s'\n", c->prog,
                    argv[i]);
            return cli_usage(c, USAGE);
        }
    }
    if (!file)
        return cli_usage(c, USAGE);
    uint8_t pk[PD_PUBKEY_BYTES];
    if (key && issuer_pk(c, key, pk) != 0)
        return CLI_FAIL;
    pd_store *s = cli_open_store(c);
    if (!s)
        return CLI_FAIL;
    pd_prelist_import_stats st;
    int rc = pd_prelist_import(s, file, key ? pk : NULL, &st);
    if (rc != PD_OK) {
        cli_fail(c, "prelist import", pd_store_errmsg(s));
        if (rc == PD_ERR_NOTFOUND && !key)
            fprintf(stderr, "%s: hint: --issuer-key HEX|FILE (a development key's public half is "
                            "%s/%s)\n",
                    c->prog, c->home, DEV_PUB_NAME);
        pd_store_close(s);
        return CLI_FAIL;
    }
    pd_store_close(s);
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "path", file);
        cJSON_AddBoolToObject(j, "already", st.already);
        cJSON_AddBoolToObject(j, "pinned", st.pinned);
        cJSON_AddNumberToObject(j, "areas", st.shapes);
        cJSON_AddNumberToObject(j, "households_added", st.households_added);
        cJSON_AddNumberToObject(j, "households_updated", st.households_updated);
        cJSON_AddNumberToObject(j, "households_unchanged", st.households_unchanged);
        cJSON_AddNumberToObject(j, "members_added", st.members_added);
        cJSON_AddNumberToObject(j, "members_updated", st.members_updated);
        cJSON_AddNumberToObject(j, "members_unchanged", st.members_unchanged);
        cJSON_AddNumberToObject(j, "fields_kept", st.fields_kept);
        print_json(j);
    } else if (st.already) {
        printf("%s: already imported; nothing to do\n", file);
    } else {
        printf("%s: households %u added, %u updated, %u unchanged; members %u added, %u updated, "
               "%u unchanged; %u areas\n",
               file, st.households_added, st.households_updated, st.households_unchanged,
               st.members_added, st.members_updated, st.members_unchanged, st.shapes);
        if (st.fields_kept)
            printf("%u locally changed field(s) kept; the server's values wait in server_diff\n",
                   st.fields_kept);
        if (st.pinned && !c->quiet)
            fprintf(stderr, "%s: the issuer key is now pinned in this store\n", c->prog);
    }
    return CLI_OK;
}

/* ---- show ----------------------------------------------------------------------------------- */

typedef struct desa_count {
    char code[PD_AREA_CODE_MAX];
    uint32_t households, members;
} desa_count;

typedef struct show_ctx {
    desa_count *d;
    size_t n, cap;
    desa_count *cur;
} show_ctx;

static int show_household(void *ud, const pd_prelist_household *h, pd_error *err)
{
    show_ctx *s = ud;
    if (!s->n || strcmp(s->d[s->n - 1].code, h->desa)) {
        size_t i = 0;
        while (i < s->n && strcmp(s->d[i].code, h->desa))
            i++;
        if (i == s->n) {
            if (s->n == s->cap) {
                size_t cap = s->cap ? 2 * s->cap : 64;
                desa_count *d = realloc(s->d, cap * sizeof *d);
                if (!d) {
                    err->code = PD_ERR_NOMEM;
                    snprintf(err->msg, sizeof err->msg, "out of memory");
                    return PD_ERR_NOMEM;
                }
                s->d = d;
                s->cap = cap;
            }
            memset(&s->d[s->n], 0, sizeof s->d[s->n]);
            snprintf(s->d[s->n].code, sizeof s->d[s->n].code, "%s", h->desa);
            s->n++;
        }
        s->cur = &s->d[i];
    } else {
        s->cur = &s->d[s->n - 1];
    }
    s->cur->households++;
    return PD_OK;
}

static int show_member(void *ud, const pd_prelist_member *m, pd_error *err)
{
    (void)m;
    (void)err;
    ((show_ctx *)ud)->cur->members++;
    return PD_OK;
}

static int run_show(cli *c, int argc, char **argv)
{
    const char *file = NULL, *key = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--issuer-key") && i + 1 < argc)
            key = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            c->json = true;
        else if (argv[i][0] != '-' && !file)
            file = argv[i];
        else {
            fprintf(stderr, "%s: prelist show: bad or incomplete option '%s'\n", c->prog, argv[i]);
            return cli_usage(c, USAGE);
        }
    }
    if (!file)
        return cli_usage(c, USAGE);
    uint8_t pk[PD_PUBKEY_BYTES];
    pd_error err = {0};
    pd_prelist_info info;
    if (key) {
        if (issuer_pk(c, key, pk) != 0)
            return CLI_FAIL;
    } else {
        if (pd_prelist_peek(file, &info, &err) != PD_OK)
            return cli_fail_err(c, "prelist show", &err);
        memcpy(pk, info.issuer_pk, sizeof pk);
        if (!c->quiet)
            fprintf(stderr, "%s: no --issuer-key: checked against the key the package names, "
                            "which proves integrity, not who issued it\n",
                    c->prog);
    }
    show_ctx sc = {0};
    pd_prelist_handler h = {NULL, show_household, show_member, &sc};
    int rc = pd_prelist_read(file, pk, &h, &info, &err);
    if (rc != PD_OK) {
        free(sc.d);
        return cli_fail_err(c, "prelist show", &err);
    }
    char where[256], when[32], idhex[2 * PD_HASH_BYTES + 1], pkhex[2 * PD_PUBKEY_BYTES + 1];
    area_path(info.area, where, sizeof where);
    iso_time(info.issued_at, when);
    hex(info.id, PD_HASH_BYTES, idhex);
    hex(info.issuer_pk, PD_PUBKEY_BYTES, pkhex);
    uint64_t size = PD_PRELIST_PREFIX_BYTES + info.compressed_size;
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "path", file);
        cJSON_AddBoolToObject(j, "valid", true);
        cJSON_AddStringToObject(j, "verified_with", key ? "given key" : "key in the package");
        cJSON_AddNumberToObject(j, "version", info.version);
        cJSON_AddStringToObject(j, "area", info.area);
        cJSON_AddStringToObject(j, "area_name", where);
        cJSON_AddNumberToObject(j, "issued_at", (double)info.issued_at);
        cJSON_AddStringToObject(j, "issuer_pk", pkhex);
        cJSON_AddStringToObject(j, "id", idhex);
        cJSON_AddNumberToObject(j, "areas", info.shapes);
        cJSON_AddNumberToObject(j, "households", info.households);
        cJSON_AddNumberToObject(j, "members", info.members);
        cJSON_AddNumberToObject(j, "bytes", (double)size);
        cJSON_AddNumberToObject(j, "inflated_bytes", (double)info.inflated_size);
        cJSON *arr = cJSON_AddArrayToObject(j, "desa");
        for (size_t i = 0; arr && i < sc.n; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "code", sc.d[i].code);
            const char *name = pd_area_name(sc.d[i].code);
            cJSON_AddStringToObject(o, "name", name ? name : "");
            cJSON_AddNumberToObject(o, "households", sc.d[i].households);
            cJSON_AddNumberToObject(o, "members", sc.d[i].members);
            cJSON_AddItemToArray(arr, o);
        }
        print_json(j);
    } else {
        printf("package    %s (valid; format %u)\n", file, info.version);
        printf("area       %s — %s\n", info.area, where);
        printf("issued     %s\n", when);
        printf("issuer     %s%s\n", pkhex, key ? "" : " (not checked against a pinned key)");
        printf("id         %s\n", idhex);
        printf("records    %u areas, %u households, %u members\n", info.shapes, info.households,
               info.members);
        printf("size       %llu bytes (%llu inflated)\n", (unsigned long long)size,
               (unsigned long long)info.inflated_size);
        for (size_t i = 0; i < sc.n; i++) {
            const char *name = pd_area_name(sc.d[i].code);
            printf("  %-14s %-28s %6u households %6u members\n", sc.d[i].code, name ? name : "",
                   sc.d[i].households, sc.d[i].members);
        }
    }
    free(sc.d);
    return CLI_OK;
}

/* ---- split ---------------------------------------------------------------------------------- */

static int run_split(cli *c, int argc, char **argv)
{
    const char *file = NULL, *dir = NULL, *key = NULL;
    uint64_t n = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--issuer-key") && v)
            key = v, i++;
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v)
            dir = v, i++;
        else if (!strcmp(a, "--enumerators") && v && parse_u64(v, &n))
            i++;
        else if (a[0] != '-' && !file)
            file = a;
        else {
            fprintf(stderr, "%s: prelist split: bad or incomplete option '%s'\n", c->prog, a);
            return cli_usage(c, USAGE);
        }
    }
    if (!file || !dir || n < 1 || n > PD_PRELIST_MAX_PARTS) {
        fprintf(stderr, "%s: prelist split: FILE, --enumerators 1..%d and -o DIR are required\n",
                c->prog, PD_PRELIST_MAX_PARTS);
        return cli_usage(c, USAGE);
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return cli_fail(c, dir, strerror(errno));
    uint8_t sk[PD_SECKEY_BYTES];
    if (issuer_sk(c, key, sk) != 0)
        return CLI_FAIL;
    pd_prelist_split *res = NULL;
    pd_error err = {0};
    int rc = pd_prelist_split_file(file, (unsigned)n, dir, sk, 0, &res, &err);
    sodium_memzero(sk, sizeof sk);
    if (rc != PD_OK)
        return cli_fail_err(c, "prelist split", &err);
    if (c->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "path", file);
        cJSON *parts = cJSON_AddArrayToObject(j, "parts");
        for (unsigned p = 0; parts && p < res->nparts; p++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddNumberToObject(o, "enumerator", p + 1);
            cJSON_AddStringToObject(o, "area", res->parts[p].area);
            cJSON_AddStringToObject(o, "path", res->parts[p].path);
            cJSON_AddNumberToObject(o, "households", res->parts[p].households);
            cJSON_AddNumberToObject(o, "members", res->parts[p].members);
            cJSON *units = cJSON_AddArrayToObject(o, "units");
            for (size_t u = 0; units && u < res->nunits; u++) {
                if (res->units[u].part != p)
                    continue;
                cJSON *x = cJSON_CreateObject();
                cJSON_AddStringToObject(x, "desa", res->units[u].desa);
                cJSON_AddStringToObject(x, "sls", res->units[u].sls);
                cJSON_AddNumberToObject(x, "households", res->units[u].households);
                cJSON_AddItemToArray(units, x);
            }
            cJSON_AddItemToArray(parts, o);
        }
        print_json(j);
    } else {
        printf("%-4s %-40s %10s %8s %6s\n", "enum", "package", "households", "members", "SLS");
        for (unsigned p = 0; p < res->nparts; p++)
            printf("e%02u  %-40s %10u %8u %6u\n", p + 1, res->parts[p].path,
                   res->parts[p].households, res->parts[p].members, res->parts[p].units);
        printf("\nassignment (largest SLS first):\n");
        for (size_t u = 0; u < res->nunits; u++) {
            const char *name = pd_area_name(res->units[u].desa);
            printf("  e%02u  %-14s %-24s %-18s %5u households\n", res->units[u].part + 1,
                   res->units[u].desa, name ? name : "", res->units[u].sls,
                   res->units[u].households);
        }
    }
    pd_prelist_split_free(res);
    return CLI_OK;
}

/* ---- areas ---------------------------------------------------------------------------------- */

static int run_areas(cli *c, int argc, char **argv)
{
    const char *code = argc > 2 ? argv[2] : NULL;
    if (argc > 3)
        return cli_usage(c, USAGE);
    pd_error err = {0};
    size_t n = 0;
    if (pd_area_children(code, NULL, 0, &n, &err) != PD_OK)
        return cli_fail_err(c, "prelist areas", &err);
    pd_area *a = calloc(n ? n : 1, sizeof *a);
    if (!a)
        return cli_fail(c, "prelist areas", "out of memory");
    pd_area_children(code, a, n, &n, &err);
    static const char *const levels[] = {"", "province", "regency", "kecamatan", "desa"};
    if (c->json) {
        cJSON *arr = cJSON_CreateArray();
        for (size_t i = 0; arr && i < n; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "code", a[i].code);
            cJSON_AddStringToObject(o, "name", a[i].name);
            cJSON_AddStringToObject(o, "level", levels[a[i].level]);
            cJSON_AddItemToArray(arr, o);
        }
        print_json(arr);
    } else {
        if (code) {
            pd_area self;
            if (pd_area_lookup(code, &self, NULL) == PD_OK && !c->quiet)
                fprintf(stderr, "%s %s (%s): %zu below it\n", self.code, self.name,
                        levels[self.level], n);
        }
        for (size_t i = 0; i < n; i++)
            printf("%-14s %s\n", a[i].code, a[i].name);
    }
    free(a);
    return CLI_OK;
}

int cmd_prelist(cli *c, int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        if (argc < 2)
            return cli_usage(c, USAGE);
        print_help();
        return CLI_OK;
    }
    if (cli_wants_help(argc, argv)) {
        print_help();
        return CLI_OK;
    }
    const char *sub = argv[1];
    if (!strcmp(sub, "generate"))
        return run_generate(c, argc, argv);
    if (!strcmp(sub, "import"))
        return run_import(c, argc, argv);
    if (!strcmp(sub, "show"))
        return run_show(c, argc, argv);
    if (!strcmp(sub, "split"))
        return run_split(c, argc, argv);
    if (!strcmp(sub, "areas"))
        return run_areas(c, argc, argv);
    fprintf(stderr, "%s: prelist: unknown subcommand '%s'\n", c->prog, sub);
    return cli_usage(c, USAGE);
}

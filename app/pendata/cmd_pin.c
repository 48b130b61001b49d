/*
 * cmd_pin.c — `pendata pin change|recover|set-recovery|keygen`: the PIN of the device store.
 *
 *   pin change         old PIN (as for every command), then the new one: $PENDATA_NEW_PIN,
 *                      --new-pin-file, or asked twice on the terminal. store.db is not touched.
 *   pin recover        --recovery-key FILE (the recovery X25519 secret key, 64 hex characters):
 *                      sets a new PIN on a store whose PIN is lost or erased by the lockout.
 *   pin set-recovery   --recovery-pk FILE (64 hex characters): seal the data key to that key.
 *   pin keygen         --out FILE: make a recovery key pair (for a server operator or a test);
 *                      the secret key goes to FILE (0600), the public key to stdout.
 *
 * Also home to the helpers `pendata init` shares (reading a new PIN, reading a key file).
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PIN_CAP 257 /* PD_PIN_MAX bytes + NUL */
#define KEY_HEX 64

/* shared with cmd_init.c */
int pin_read_new(cli *c, const char *env, const char *file, char *buf, size_t cap);
int pin_read_key_file(cli *c, const char *path, uint8_t key[32]);
int pin_parse_kdf(cli *c, const char *name, const pd_kdf_params **out);

/* A new PIN: from $env, else the first line of file, else asked twice on the terminal. */
int pin_read_new(cli *c, const char *env, const char *file, char *buf, size_t cap)
{
    const char *v = env ? getenv(env) : NULL;
    if (v && *v) {
        if (strlen(v) >= cap)
            return cli_fail(c, "new PIN", "too long"), -1;
        memcpy(buf, v, strlen(v) + 1);
        return 0;
    }
    if (file) {
        if (cli_read_first_line(file, buf, cap) != 0)
            return cli_fail(c, file, "cannot read a PIN from this file"), -1;
        return 0;
    }
    char again[PIN_CAP];
    if (cli_prompt_secret("New PIN: ", buf, cap) != 0)
        return cli_fail(c, "new PIN",
                        "no terminal to ask on: give it in a file or the environment"),
               -1;
    int rc = 0;
    if (cli_prompt_secret("New PIN again: ", again, sizeof again) != 0 || strcmp(again, buf) != 0) {
        cli_fail(c, "new PIN", "the two entries differ");
        sodium_memzero(buf, cap);
        rc = -1;
    }
    sodium_memzero(again, sizeof again);
    return rc;
}

int pin_read_key_file(cli *c, const char *path, uint8_t key[32])
{
    char hex[KEY_HEX + 8];
    size_t n = 0;
    int rc = -1;
    if (cli_read_first_line(path, hex, sizeof hex) != 0) {
        cli_fail(c, path, "cannot read the key file");
        goto out;
    }
    n = strlen(hex);
    while (n > 0 && (hex[n - 1] == ' ' || hex[n - 1] == '\t'))
        hex[--n] = '\0';
    if (n != KEY_HEX || sodium_hex2bin(key, 32, hex, n, NULL, NULL, NULL) != 0) {
        cli_fail(c, path, "a key file holds one key as 64 hexadecimal characters");
        goto out;
    }
    rc = 0;
out:
    sodium_memzero(hex, sizeof hex);
    return rc;
}

int pin_parse_kdf(cli *c, const char *name, const pd_kdf_params **out)
{
    if (!strcmp(name, "default"))
        *out = &PD_KDF_DEFAULT;
    else if (!strcmp(name, "test"))
        *out = &PD_KDF_TEST;
    else
        return cli_fail(c, "--kdf", "must be 'default' or 'test'"), -1;
    return 0;
}

static const char *USAGE = "pin change [--new-pin-file FILE]\n"
                           "       pendata pin recover --recovery-key FILE [--new-pin-file FILE]\n"
                           "       pendata pin set-recovery --recovery-pk FILE\n"
                           "       pendata pin keygen --out FILE";

static void print_help(void)
{
    printf("usage: pendata %s\n\n"
           "  change        change the store's PIN: the current PIN as for every command\n"
           "                (--pin-file, $PENDATA_PIN or asked), the new one from --new-pin-file,\n"
           "                $PENDATA_NEW_PIN or asked twice. The database is not rewritten.\n"
           "  recover       set a new PIN with the recovery secret key (after a lost PIN or\n"
           "                the lockout that follows 10 wrong PINs)\n"
           "  set-recovery  seal the store's key to a recovery public key (normally the server's)\n"
           "  keygen        make a recovery key pair: secret key to FILE, public key to stdout\n",
           USAGE);
}

static int do_change(cli *c, const char *new_file, const pd_kdf_params *kdf)
{
    char old_pin[PIN_CAP], new_pin[PIN_CAP];
    int rc = CLI_FAIL;
    if (cli_read_pin(c, "Current PIN: ", old_pin, sizeof old_pin) != 0)
        goto out;
    if (pin_read_new(c, "PENDATA_NEW_PIN", new_file, new_pin, sizeof new_pin) != 0)
        goto out;
    pd_error err = {0};
    if (pd_store_change_pin(c->home, old_pin, new_pin, kdf, &err) != PD_OK) {
        cli_fail_err(c, "pin change", &err);
        goto out;
    }
    if (c->json)
        printf("{\"changed\":true}\n");
    else if (!c->quiet)
        fprintf(stderr, "%s: PIN changed\n", c->prog);
    rc = CLI_OK;
out:
    sodium_memzero(old_pin, sizeof old_pin);
    sodium_memzero(new_pin, sizeof new_pin);
    return rc;
}

static int do_recover(cli *c, const char *key_file, const char *new_file, const pd_kdf_params *kdf)
{
    uint8_t *sk = sodium_malloc(32);
    uint8_t pk[32];
    char new_pin[PIN_CAP];
    int rc = CLI_FAIL;
    if (!sk)
        return cli_fail(c, "pin recover", "out of memory");
    if (pin_read_key_file(c, key_file, sk) != 0)
        goto out;
    crypto_scalarmult_base(pk, sk);
    if (pin_read_new(c, "PENDATA_NEW_PIN", new_file, new_pin, sizeof new_pin) != 0)
        goto out;
    pd_error err = {0};
    if (pd_store_recover(c->home, pk, sk, new_pin, kdf, &err) != PD_OK) {
        cli_fail_err(c, "pin recover", &err);
        goto out;
    }
    if (c->json)
        printf("{\"recovered\":true}\n");
    else if (!c->quiet)
        fprintf(stderr, "%s: new PIN set\n", c->prog);
    rc = CLI_OK;
out:
    sodium_free(sk);
    sodium_memzero(new_pin, sizeof new_pin);
    return rc;
}

static int do_set_recovery(cli *c, const char *pk_file)
{
    uint8_t pk[32];
    if (pin_read_key_file(c, pk_file, pk) != 0)
        return CLI_FAIL;
    pd_store *s = cli_open_store(c);
    if (!s)
        return CLI_FAIL;
    int rc = CLI_OK;
    if (pd_store_set_recovery(s, pk) != PD_OK)
        rc = cli_fail(c, "pin set-recovery", pd_store_errmsg(s));
    else if (c->json)
        printf("{\"recovery\":true}\n");
    else if (!c->quiet)
        fprintf(stderr, "%s: the store's key is now also sealed to that recovery key\n", c->prog);
    pd_store_close(s);
    return rc;
}

static int do_keygen(cli *c, const char *out)
{
    uint8_t pk[32];
    uint8_t *sk = sodium_malloc(32);
    char *hex = sodium_malloc(KEY_HEX + 2);
    int rc = CLI_FAIL;
    if (!sk || !hex) {
        cli_fail(c, "pin keygen", "out of memory");
        goto out;
    }
    crypto_box_keypair(pk, sk);
    sodium_bin2hex(hex, KEY_HEX + 1, sk, 32);
    hex[KEY_HEX] = '\n';
    int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) {
        cli_fail(c, out, errno == EEXIST ? "exists already: not overwritten" : strerror(errno));
        goto out;
    }
    ssize_t w = write(fd, hex, KEY_HEX + 1);
    if (fsync(fd) != 0 || close(fd) != 0 || w != KEY_HEX + 1) {
        cli_fail(c, out, "write failed");
        unlink(out);
        goto out;
    }
    char pkhex[KEY_HEX + 1];
    sodium_bin2hex(pkhex, sizeof pkhex, pk, sizeof pk);
    if (c->json)
        printf("{\"recovery_pk\":\"%s\"}\n", pkhex);
    else
        printf("%s\n", pkhex);
    rc = CLI_OK;
out:
    sodium_free(sk);
    sodium_free(hex);
    return rc;
}

int cmd_pin(cli *c, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        print_help();
        return CLI_OK;
    }
    if (argc < 2)
        return cli_usage(c, USAGE);
    const char *sub = argv[1];
    const char *new_file = NULL, *key_file = NULL, *pk_file = NULL, *out = NULL;
    const pd_kdf_params *kdf = NULL;
    for (int i = 2; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--new-pin-file") && v)
            new_file = v;
        else if (!strcmp(a, "--recovery-key") && v)
            key_file = v;
        else if (!strcmp(a, "--recovery-pk") && v)
            pk_file = v;
        else if (!strcmp(a, "--out") && v)
            out = v;
        else if (!strcmp(a, "--kdf") && v) { /* hidden: tests */
            if (pin_parse_kdf(c, v, &kdf) != 0)
                return CLI_USAGE;
        } else {
            fprintf(stderr, "%s: pin: unknown or incomplete option '%s'\n", c->prog, a);
            return cli_usage(c, USAGE);
        }
    }
    if (!strcmp(sub, "change"))
        return do_change(c, new_file, kdf);
    if (!strcmp(sub, "recover")) {
        if (!key_file)
            return cli_usage(c, USAGE);
        return do_recover(c, key_file, new_file, kdf);
    }
    if (!strcmp(sub, "set-recovery")) {
        if (!pk_file)
            return cli_usage(c, USAGE);
        return do_set_recovery(c, pk_file);
    }
    if (!strcmp(sub, "keygen")) {
        if (!out)
            return cli_usage(c, USAGE);
        return do_keygen(c, out);
    }
    fprintf(stderr, "%s: pin: unknown subcommand '%s'\n", c->prog, sub);
    return cli_usage(c, USAGE);
}

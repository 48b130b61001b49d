/*
 * cmd_init.c — `pendata init`: create the encrypted device store in --home and print the new
 * device id.
 *
 * The PIN comes from $PENDATA_PIN or --pin-file, else it is asked twice on the terminal. The
 * store gets the device identity and the identity of --role (enumerator by default). The hidden
 * option `--kdf test` uses the cheapest Argon2id so that system tests stay fast.
 */
#include "cli.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* defined in cmd_pin.c */
int pin_read_new(cli *c, const char *env, const char *file, char *buf, size_t cap);
int pin_read_key_file(cli *c, const char *path, uint8_t key[32]);
int pin_parse_kdf(cli *c, const char *name, const pd_kdf_params **out);

#define PIN_CAP 257

static const char *USAGE = "init [--role enumerator|supervisor|korcam] [--recovery-pk FILE]";

static void print_help(void)
{
    printf("usage: pendata %s\n\n"
           "Create the encrypted store in the home directory (--home, $PENDATA_HOME or\n"
           "~/.pendata) and print the new device id. The PIN comes from $PENDATA_PIN or\n"
           "--pin-file, else it is asked twice.\n\n"
           "  --role ROLE          the person role this device serves (default enumerator):\n"
           "                       an Ed25519 key pair is made for it\n"
           "  --recovery-pk FILE   also seal the store's key to this recovery public key (64 hex\n"
           "                       characters), so that `pendata pin recover` can reset the PIN\n",
           USAGE);
}

int cmd_init(cli *c, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        print_help();
        return CLI_OK;
    }
    const char *role = "enumerator", *pk_file = NULL;
    const pd_kdf_params *kdf = &PD_KDF_DEFAULT;
    for (int i = 1; i < argc; i += 2) { /* every option takes a value */
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--role") && v) {
            if (strcmp(v, "enumerator") && strcmp(v, "supervisor") && strcmp(v, "korcam")) {
                fprintf(stderr, "%s: init: --role must be enumerator, supervisor or korcam\n",
                        c->prog);
                return cli_usage(c, USAGE);
            }
            role = v;
        } else if (!strcmp(a, "--recovery-pk") && v) {
            pk_file = v;
        } else if (!strcmp(a, "--kdf") && v) { /* hidden: tests */
            if (pin_parse_kdf(c, v, &kdf) != 0)
                return CLI_USAGE;
        } else {
            fprintf(stderr, "%s: init: unknown or incomplete option '%s'\n", c->prog, a);
            return cli_usage(c, USAGE);
        }
    }

    uint8_t recovery_pk[32];
    if (pk_file && pin_read_key_file(c, pk_file, recovery_pk) != 0)
        return CLI_FAIL;
    char pin[PIN_CAP];
    if (pin_read_new(c, "PENDATA_PIN", c->pin_file, pin, sizeof pin) != 0)
        return CLI_FAIL;
    pd_store *s = NULL;
    pd_error err = {0};
    int rc = pd_store_create(&s, c->home, pin, kdf, &err);
    sodium_memzero(pin, sizeof pin);
    if (rc != PD_OK)
        return cli_fail_err(c, "init", &err);

    uint8_t role_pk[PD_PUBKEY_BYTES];
    int status = CLI_FAIL;
    if (pd_store_add_role(s, role, role_pk) != PD_OK) {
        cli_fail(c, "init", pd_store_errmsg(s));
        goto out;
    }
    if (pk_file && pd_store_set_recovery(s, recovery_pk) != PD_OK) {
        cli_fail(c, "init", pd_store_errmsg(s));
        goto out;
    }
    char pkhex[2 * PD_PUBKEY_BYTES + 1];
    sodium_bin2hex(pkhex, sizeof pkhex, role_pk, sizeof role_pk);
    if (c->json) {
        /* the home path is the only free text: escape what JSON needs */
        printf("{\"device_id\":\"%s\",\"role\":\"%s\",\"role_pk\":\"%s\",\"recovery\":%s,"
               "\"home\":\"",
               pd_store_device_id(s), role, pkhex, pk_file ? "true" : "false");
        for (const unsigned char *p = (const unsigned char *)c->home; *p; p++) {
            if (*p == '"' || *p == '\\')
                printf("\\%c", *p);
            else if (*p < 0x20)
                printf("\\u%04x", *p);
            else
                putchar(*p);
        }
        printf("\"}\n");
    } else {
        printf("%s\n", pd_store_device_id(s));
        if (!c->quiet)
            fprintf(stderr, "%s: store created in %s (role %s); device id %s\n", c->prog, c->home,
                    role, pd_store_device_id(s));
    }
    status = CLI_OK;
out:
    pd_store_close(s);
    return status;
}

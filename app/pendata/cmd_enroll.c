/*
 * cmd_enroll.c — `pendata enroll`: enrol this device with the server using a one-time code
 * (pd_sync_enroll). The server key's fingerprint, given by the operator with the code, is checked
 * against the key the server presents; without --fingerprint the key is trusted on first use and
 * its fingerprint shown so the enumerator can compare it.
 */
#include "cli.h"
#include "pd_sync.h"

#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "enroll --server URL --code CODE [--fingerprint FP] [--role ROLE] [--ca-file PEM]";

static void print_help(void)
{
    printf("usage: pendata %s\n\n"
           "Enrol this device with the pendata server at URL using the one-time code the\n"
           "operator issued (pendata-server enroll-code). The server's keys are pinned: every\n"
           "later answer must be signed by them.\n\n"
           "  --server URL       http:// or https:// (system CA store) address of the server\n"
           "  --code CODE        the one-time code, XXXX-XXXX-XXXX (dashes and case optional)\n"
           "  --fingerprint FP   the server key fingerprint printed beside the code; a server\n"
           "                     whose key does not match is refused (strongly recommended)\n"
           "  --role ROLE        reuse this device's key of ROLE (default: its only person key,\n"
           "                     or a new one)\n"
           "  --ca-file PEM      an extra CA bundle for https\n",
           USAGE);
}

int cmd_enroll(cli *c, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        print_help();
        return CLI_OK;
    }
    const char *server = NULL, *code = NULL, *fp = NULL, *role = NULL, *ca = NULL;
    for (int i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "%s: enroll: option '%s' needs a value\n", c->prog, a);
            return cli_usage(c, USAGE);
        }
        if (!strcmp(a, "--server"))
            server = v;
        else if (!strcmp(a, "--code"))
            code = v;
        else if (!strcmp(a, "--fingerprint"))
            fp = v;
        else if (!strcmp(a, "--role"))
            role = v;
        else if (!strcmp(a, "--ca-file"))
            ca = v;
        else {
            fprintf(stderr, "%s: enroll: unknown option '%s'\n", c->prog, a);
            return cli_usage(c, USAGE);
        }
    }
    if (!server || !code)
        return cli_usage(c, USAGE);
    pd_store *s = cli_open_store(c);
    if (!s)
        return CLI_FAIL;
    pd_sync_options opt;
    memset(&opt, 0, sizeof opt);
    opt.ca_file = ca;
    pd_enroll_result r;
    int status = CLI_FAIL;
    if (pd_sync_enroll(s, server, code, fp, role, &opt, &r) != PD_OK) {
        cli_fail(c, "enroll", pd_store_errmsg(s));
        goto out;
    }
    if (!fp)
        fprintf(stderr,
                "%s: enroll: WARNING: no --fingerprint given; the server's key was trusted as "
                "presented.\n  Compare its fingerprint with the one the operator gave you: %s\n",
                c->prog, r.fingerprint);
    if (c->json) {
        char pk[2 * PD_PUBKEY_BYTES + 1];
        for (size_t i = 0; i < PD_PUBKEY_BYTES; i++)
            snprintf(pk + 2 * i, 3, "%02x", r.user_pk[i]);
        /* person_id and role are [0-9A-Za-z_-]; the name is left out (free text) */
        printf("{\"device_id\":\"%s\",\"person_id\":\"%s\",\"role\":\"%s\",\"user_pk\":\"%s\","
               "\"fingerprint\":\"%s\",\"areas\":%zu,\"keys\":%zu,\"key_reused\":%s}\n",
               pd_store_device_id(s), r.person_id, r.role, pk, r.fingerprint, r.areas, r.keys,
               r.key_reused ? "true" : "false");
    } else {
        printf("enrolled device %s as %s %s (%s)\nserver fingerprint %s; %zu area(s), %zu "
               "key(s) in the keyring\n",
               pd_store_device_id(s), r.role, r.person_id, r.name, r.fingerprint, r.areas, r.keys);
    }
    status = CLI_OK;
out:
    pd_store_close(s);
    return status;
}

/*
 * main.c — `pendata`, the field tool for enumerators, supervisors and korcam.
 *
 * Global options come before the subcommand; each subcommand lives in its own cmd_*.c file and
 * is listed in the table below.
 */
#include "cli.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

/* One line per subcommand: declare it here and list it in the table. */
int cmd_version(cli *c, int argc, char **argv);
int cmd_init(cli *c, int argc, char **argv);
int cmd_pin(cli *c, int argc, char **argv);
int cmd_find(cli *c, int argc, char **argv);
int cmd_household(cli *c, int argc, char **argv);
int cmd_member(cli *c, int argc, char **argv);
int cmd_visit(cli *c, int argc, char **argv);
int cmd_photo(cli *c, int argc, char **argv);
int cmd_ops(cli *c, int argc, char **argv);
int cmd_prelist(cli *c, int argc, char **argv);
int cmd_seal(cli *c, int argc, char **argv);
int cmd_outbox(cli *c, int argc, char **argv);
int cmd_review(cli *c, int argc, char **argv);
int cmd_enroll(cli *c, int argc, char **argv);
int cmd_sync(cli *c, int argc, char **argv);
int cmd_conflicts(cli *c, int argc, char **argv);

static const cli_command commands[] = {
    {"version", "print the version", cmd_version},
    {"init", "create the encrypted store on this device", cmd_init},
    {"pin", "change the PIN, or recover the store with the recovery key", cmd_pin},
    {"find", "find households by name, NIK, KK, address, desa, status or nearness", cmd_find},
    {"household", "show, correct or propose a household", cmd_household},
    {"member", "correct, add or end a member of a household", cmd_member},
    {"visit", "record a visit: outcome, GPS fix, member outcomes", cmd_visit},
    {"photo", "attach a photo (JPEG) to a household", cmd_photo},
    {"ops", "list the op log (every change, field by field)", cmd_ops},
    {"prelist", "generate, import, show or split prelist packages; list areas", cmd_prelist},
    {"seal", "seal pending changes into the next signed batch", cmd_seal},
    {"outbox", "this device's batches; batch files to and from the supervisor", cmd_outbox},
    {"review", "supervisor: list, read, map, approve or return batches", cmd_review},
    {"enroll", "enrol this device with the server (one-time code, pinned key)", cmd_enroll},
    {"sync", "upload batches and photos, get receipts, pull the prelist and changes", cmd_sync},
    {"conflicts", "korcam: the conflict queue; others: decisions and revisits received", cmd_conflicts},
};

static void print_help(FILE *f)
{
    fprintf(f, "pendata %s — offline-first field enumeration\n\n"
               "usage: pendata [--home DIR] [--pin-file FILE] [--json] COMMAND [ARGS]\n\n"
               "  --home DIR       the device's data directory (default $PENDATA_HOME, ~/.pendata)\n"
               "  --pin-file FILE  read the PIN from FILE (or set $PENDATA_PIN); else asked, no echo\n"
               "  --json           machine-readable output\n\ncommands:\n",
            PD_VERSION_STRING);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'pendata COMMAND --help' tells more.\n");
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0) {
        fprintf(stderr, "pendata: libsodium failed to initialise\n");
        return CLI_FAIL;
    }
    cli c = {.prog = "pendata"};
    c.home = getenv("PENDATA_HOME");
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (!strcmp(argv[i], "--home") && i + 1 < argc)
            c.home = argv[++i];
        else if (!strcmp(argv[i], "--pin-file") && i + 1 < argc)
            c.pin_file = argv[++i];
        else if (!strcmp(argv[i], "--json"))
            c.json = true;
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q"))
            c.quiet = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            print_help(stdout);
            return CLI_OK;
        } else if (!strcmp(argv[i], "--version")) {
            printf("pendata %s\n", PD_VERSION_STRING);
            return CLI_OK;
        } else {
            fprintf(stderr, "pendata: unknown option %s\n", argv[i]);
            print_help(stderr);
            return CLI_USAGE;
        }
    }
    if (i >= argc) {
        print_help(stderr);
        return CLI_USAGE;
    }
    static char default_home[4096];
    if (!c.home || !*c.home) {
        const char *h = getenv("HOME");
        snprintf(default_home, sizeof default_home, "%s/.pendata", h ? h : ".");
        c.home = default_home;
    }
    for (size_t k = 0; k < sizeof commands / sizeof commands[0]; k++)
        if (!strcmp(argv[i], commands[k].name))
            return commands[k].run(&c, argc - i, argv + i);
    fprintf(stderr, "pendata: unknown command '%s'\n", argv[i]);
    print_help(stderr);
    return CLI_USAGE;
}

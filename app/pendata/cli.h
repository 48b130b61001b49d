/*
 * cli.h — what every subcommand of the `pendata` field tool shares: global options (--home,
 * --pin-file, --json), reading the PIN without echo, opening the store, and reporting errors.
 *
 * Conventions: data on stdout, messages on stderr; exit 0 ok, 1 failure, 2 usage.
 */
#ifndef PD_CLI_H
#define PD_CLI_H

#include "pendata.h"

#include <stdbool.h>
#include <stdio.h>

enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

typedef struct cli {
    const char *prog;     /* "pendata" */
    const char *home;     /* --home, $PENDATA_HOME, or ~/.pendata */
    const char *pin_file; /* --pin-file */
    bool json;            /* --json */
    bool quiet;           /* --quiet */
} cli;

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(cli *c, int argc, char **argv); /* argv[0] is the subcommand name */
} cli_command;

/* Get the PIN: $PENDATA_PIN, --pin-file, or a no-echo prompt on the terminal. `prompt` is shown
 * only when asking. Returns 0 and fills buf (NUL-terminated), or -1 with a message printed. */
int cli_read_pin(cli *c, const char *prompt, char *buf, size_t cap);

/* Ask on the terminal (/dev/tty) without echo; 0 or -1 (no terminal, or end of input). */
int cli_prompt_secret(const char *prompt, char *buf, size_t cap);

/* The first line of a file, without its line ending; 0 or -1. */
int cli_read_first_line(const char *path, char *buf, size_t cap);

/* Open the store in c->home with the PIN; prints the error and returns NULL on failure. */
pd_store *cli_open_store(cli *c);

/* Print "pendata: <what>: <message>" to stderr; returns CLI_FAIL. */
int cli_fail(cli *c, const char *what, const char *msg);
int cli_fail_err(cli *c, const char *what, const pd_error *err);
int cli_usage(cli *c, const char *usage);

/* Does argv contain -h or --help? */
bool cli_wants_help(int argc, char **argv);

#endif

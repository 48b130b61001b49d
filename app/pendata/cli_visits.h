/*
 * cli_visits.h — what the household, member, visit, photo, find and ops subcommands share:
 * option matching, times and GPS fixes from the command line, warnings and values printed as
 * text or JSON. The logic stays in the library; this is only how a terminal talks to it.
 */
#ifndef PD_CLI_VISITS_H
#define PD_CLI_VISITS_H

#include "cli.h"

#include <cjson/cJSON.h>
#include <stdint.h>

/* Does argv[*i] name option `name` ("--name VALUE" or "--name=VALUE")? On a match *val gets the
 * value (argv[*i] advances past a separate value); a missing value prints the usage error and
 * sets *val to NULL. */
bool cli_opt(int argc, char **argv, int *i, const char *name, const char **val);

/* A time: "now", Unix milliseconds, or ISO 8601 UTC "YYYY-MM-DDTHH:MM:SS[.mmm]Z". */
int cli_parse_time(const char *s, int64_t *ms);

/* "LAT,LON[,ACC[,ALT]]" into g (accuracy defaults to 50 m and the provider to "manual"; the
 * altitude to unknown). */
int cli_parse_gps(const char *s, pd_gps *g);

/* A sex: 1, 2, male, female, m, f, laki-laki, perempuan. 0 if not one of these. */
int cli_parse_sex(const char *s);

/* Print warnings on stderr ("pendata: warning: ..."), unless --quiet. */
void cli_print_warnings(cli *c, const pd_warnings *w);

/* Warnings as a JSON array [{code, message}]. NULL on allocation failure. */
cJSON *cli_warnings_json(const pd_warnings *w);

/* Print a JSON document on stdout (and free it). Returns CLI_OK, or CLI_FAIL if it is NULL. */
int cli_print_json(cli *c, cJSON *doc);

/* A 64-bit integer as an exact JSON number (a double holds only 53 bits: a clock value would
 * lose its low bits). */
cJSON *cli_int_json(int64_t i);

/* A value as JSON (BLOB as hex, integers exact). */
cJSON *cli_value_json(const pd_value *v);

/* A value as text into buf ("NULL", 42, 'text', 32 bytes). */
const char *cli_value_text(const pd_value *v, char *buf, size_t cap);

/* Report a failure on the store handle: "pendata: <what>: <message>"; returns CLI_FAIL. */
int cli_fail_store(cli *c, const char *what, pd_store *store);

#endif /* PD_CLI_VISITS_H */

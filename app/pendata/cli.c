/*
 * cli.c — shared plumbing of the field tool (see cli.h).
 */
#include "cli.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define PIN_MAX 256

static int read_line(FILE *f, char *buf, size_t cap)
{
    if (!fgets(buf, (int)cap, f))
        return -1;
    buf[strcspn(buf, "\r\n")] = '\0';
    return 0;
}

int cli_read_first_line(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int rc = read_line(f, buf, cap);
    fclose(f);
    return rc;
}

int cli_prompt_secret(const char *prompt, char *buf, size_t cap)
{
    FILE *tty = fopen("/dev/tty", "r+");
    if (!tty)
        return -1;
    struct termios old, quiet;
    int have_term = tcgetattr(fileno(tty), &old) == 0;
    if (have_term) {
        quiet = old;
        quiet.c_lflag &= ~(tcflag_t)ECHO;
        tcsetattr(fileno(tty), TCSAFLUSH, &quiet);
    }
    fprintf(tty, "%s", prompt);
    fflush(tty);
    int rc = read_line(tty, buf, cap);
    if (have_term)
        tcsetattr(fileno(tty), TCSAFLUSH, &old);
    fprintf(tty, "\n");
    fclose(tty);
    return rc;
}

int cli_read_pin(cli *c, const char *prompt, char *buf, size_t cap)
{
    const char *env = getenv("PENDATA_PIN");
    if (env && *env) {
        if (strlen(env) >= cap)
            return cli_fail(c, "PIN", "PENDATA_PIN is too long"), -1;
        memcpy(buf, env, strlen(env) + 1);
        return 0;
    }
    if (c->pin_file) {
        if (cli_read_first_line(c->pin_file, buf, cap) != 0)
            return cli_fail(c, c->pin_file, "cannot read a PIN from this file"), -1;
        return 0;
    }
    if (cli_prompt_secret(prompt ? prompt : "PIN: ", buf, cap) != 0)
        return cli_fail(c, "PIN", "no PIN given, and no terminal to ask on: use --pin-file or PENDATA_PIN"), -1;
    return 0;
}

pd_store *cli_open_store(cli *c)
{
    char pin[PIN_MAX];
    if (cli_read_pin(c, "PIN: ", pin, sizeof pin) != 0)
        return NULL;
    pd_store *store = NULL;
    pd_error err = {0};
    int rc = pd_store_open(&store, c->home, pin, &err);
    sodium_memzero(pin, sizeof pin);
    if (rc != PD_OK) {
        cli_fail_err(c, c->home, &err);
        return NULL;
    }
    return store;
}

int cli_fail(cli *c, const char *what, const char *msg)
{
    fprintf(stderr, "%s: %s: %s\n", c->prog, what, msg);
    return CLI_FAIL;
}

int cli_fail_err(cli *c, const char *what, const pd_error *err)
{
    return cli_fail(c, what, err->msg[0] ? err->msg : pd_strerror(err->code));
}

int cli_usage(cli *c, const char *usage)
{
    fprintf(stderr, "usage: %s %s\n", c->prog, usage);
    return CLI_USAGE;
}

bool cli_wants_help(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
            return true;
    return false;
}

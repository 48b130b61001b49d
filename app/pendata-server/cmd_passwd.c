/*
 * cmd_passwd.c — `pendata-server user passwd --id ID [--password-file FILE]`: set the password
 * a korcam (or admin) logs in to the web page (/korcam/) with. The password is read from FILE
 * (its first line) or from stdin (its first line; asked without echo on a terminal), never from
 * the command line, where `ps` and the shell history would show it. Kept by the server only as
 * an Argon2id hash (pd_server_user_passwd); the buffer is wiped after use.
 */
#include "pd_server.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#define PW_MAX 1024

int cmd_user_passwd(const char *db, const char *data, int argc, char **argv);

/* The first line of f into buf (without its line ending); -1 if too long or empty. */
static int read_line(FILE *f, char *buf, size_t cap, size_t *len)
{
    if (!fgets(buf, (int)cap, f))
        return -1;
    size_t n = strlen(buf);
    if (n && buf[n - 1] == '\n')
        buf[--n] = '\0';
    else if (n == cap - 1 && !feof(f))
        return -1; /* longer than the buffer */
    if (n && buf[n - 1] == '\r')
        buf[--n] = '\0';
    *len = n;
    return n ? 0 : -1;
}

static int read_password(const char *file, char *buf, size_t cap, size_t *len)
{
    if (file) {
        FILE *f = fopen(file, "r");
        if (!f) {
            fprintf(stderr, "pendata-server: user passwd: cannot read %s\n", file);
            return -1;
        }
        int rc = read_line(f, buf, cap, len);
        fclose(f);
        return rc;
    }
    struct termios old, quiet;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &old) == 0;
    if (tty) {
        quiet = old;
        quiet.c_lflag &= (tcflag_t)~ECHO;
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
        fprintf(stderr, "password: ");
    }
    int rc = read_line(stdin, buf, cap, len);
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
        fprintf(stderr, "\n");
    }
    return rc;
}

int cmd_user_passwd(const char *db, const char *data, int argc, char **argv)
{
    const char *id = NULL, *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--id") && i + 1 < argc)
            id = argv[++i];
        else if (!strcmp(argv[i], "--password-file") && i + 1 < argc)
            file = argv[++i];
        else {
            fprintf(stderr, "usage: pendata-server user passwd --id ID [--password-file FILE]\n"
                            "  the password (10..1024 bytes) is the first line of FILE, or of "
                            "stdin\n");
            return !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") ? 0 : 2;
        }
    }
    if (!id) {
        fprintf(stderr, "usage: pendata-server user passwd --id ID [--password-file FILE]\n");
        return 2;
    }
    char *pw = sodium_malloc(PW_MAX + 2);
    if (!pw) {
        fprintf(stderr, "pendata-server: user passwd: out of memory\n");
        return 1;
    }
    size_t len = 0;
    int rc = 1;
    pd_server *srv = NULL;
    if (read_password(file, pw, PW_MAX + 2, &len) != 0) {
        fprintf(stderr, "pendata-server: user passwd: no password (one line of 10..%d bytes)\n",
                PW_MAX);
        goto out;
    }
    pd_error err = {0};
    if (pd_server_open(&srv, db, data, &err) != PD_OK) {
        fprintf(stderr, "pendata-server: cannot open the server: %s\n", err.msg);
        goto out;
    }
    if (pd_server_user_passwd(srv, id, pw, len) != PD_OK) {
        fprintf(stderr, "pendata-server: user passwd: %s\n", pd_server_errmsg(srv));
        goto out;
    }
    printf("password set for %s\n", id);
    rc = 0;
out:
    pd_server_close(srv);
    sodium_memzero(pw, PW_MAX + 2);
    sodium_free(pw);
    return rc;
}

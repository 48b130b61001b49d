/*
 * test_server_cli.c — the `pendata-server` program as an operator uses it: init (and never twice),
 * user add, load-prelist, enroll-code, status, revoke with their exit codes (0 ok, 1 failure,
 * 2 usage) and --json; and `serve` on port 0, which prints the port it took on stdout, answers
 * HTTP, enrols a device with a code the operator printed, logs each request, and stops cleanly
 * on SIGTERM.
 */
#include "test_server_client.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

static char prog[4200], db[4300], data[4300], *dir;

/* Run the program with args; stdout into out (malloc'd). Returns the exit code (-1: signal). */
static int run(const char *const *args, char **out)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = prog;
    argv[n++] = "--db";
    argv[n++] = db;
    argv[n++] = "--data";
    argv[n++] = data;
    for (const char *const *a = args; *a && n < 30; a++)
        argv[n++] = *a;
    argv[n] = NULL;
    int fds[2];
    if (pipe(fds) != 0)
        return -2;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv(prog, (char *const *)argv);
        _exit(127);
    }
    close(fds[1]);
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    ssize_t r;
    while ((r = read(fds[0], buf + len, cap - len - 1)) > 0) {
        len += (size_t)r;
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    close(fds[0]);
    int st;
    waitpid(pid, &st, 0);
    if (out)
        *out = buf;
    else
        free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_operator_commands_and_exit_codes(void)
{
    char *out = NULL;
    CHECK_EQ_INT(run((const char *[]){"init", NULL}, &out), 0);
    CHECK(strstr(out, "fingerprint"));
    free(out);
    CHECK_EQ_INT(run((const char *[]){"init", NULL}, NULL), 1); /* keys are never overwritten */
    CHECK_EQ_INT(run((const char *[]){"frobnicate", NULL}, NULL), 2);
    CHECK_EQ_INT(run((const char *[]){"user", "add", "--id", "S1", NULL}, NULL), 2);
    CHECK_EQ_INT(run((const char *[]){"user", "add", "--id", "S1", "--role", "supervisor", "--name",
                                      "Budi", "--area", "32.73.01", NULL},
                     NULL),
                 0);
    CHECK_EQ_INT(run((const char *[]){"user", "add", "--id", "E1", "--role", "enumerator", "--name",
                                      "Dewi", "--area", TS_DESA, "--supervisor", "S1", NULL},
                     NULL),
                 0);
    CHECK_EQ_INT(
        run((const char *[]){"user", "add", "--id", "E2", "--role", "chief", "--name", "X", NULL},
            NULL),
        1);
    CHECK_EQ_INT(run((const char *[]){"--json", "load-prelist", "--area", TS_DESA, "--seed", "3",
                                      "--households", "20", NULL},
                     &out),
                 0);
    CHECK(strstr(out, "\"households\":20"));
    free(out);
    CHECK_EQ_INT(run((const char *[]){"load-prelist", "--area", "99.99", NULL}, NULL), 1);
    CHECK_EQ_INT(run((const char *[]){"load-prelist", NULL}, NULL), 2);
    CHECK_EQ_INT(run((const char *[]){"--json", "status", NULL}, &out), 0);
    CHECK(strstr(out, "\"households\":20") && strstr(out, "\"users\":2"));
    free(out);
    CHECK_EQ_INT(run((const char *[]){"revoke", "--device", "nobody", NULL}, NULL), 1);
    CHECK_EQ_INT(run((const char *[]){"enroll-code", "--user", "NOBODY", NULL}, NULL), 1);
    /* a database that holds a server's data gets no second set of keys, and nothing is made */
    char other[4400];
    snprintf(other, sizeof other, "%s/other.d", dir);
    CHECK_EQ_INT(run((const char *[]){"--data", other, "init", NULL}, NULL), 1);
    CHECK(!pd_test_file_exists(other));
}

static void test_serve_on_port_zero_enrols_and_stops_on_sigterm(void)
{
    char *out = NULL;
    REQUIRE_V(run((const char *[]){"--json", "enroll-code", "--user", "E1", NULL}, &out) == 0);
    cJSON *o = cJSON_Parse(out);
    free(out);
    char code[32];
    snprintf(code, sizeof code, "%s", ts_str(o, "code"));
    cJSON_Delete(o);
    CHECK(strlen(code) == 14);

    char logpath[4400];
    snprintf(logpath, sizeof logpath, "%s/access.log", dir);
    int fds[2];
    REQUIRE_V(pipe(fds) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl(prog, prog, "--db", db, "--data", data, "serve", "--listen", "127.0.0.1:0",
              "--access-log", logpath, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    char line[32] = "";
    size_t n = 0;
    while (n + 1 < sizeof line && read(fds[0], line + n, 1) == 1 && line[n] != '\n')
        n++;
    line[n] = '\0';
    tsrv s = {.port = (uint16_t)atoi(line)};
    CHECK(s.port > 0);

    tresp r;
    ts_request(&s, NULL, "GET", "/v1/health", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 200);
    tresp_free(&r);
    tdev d;
    tdev_init(&d, "dev-cli");
    char pk[65], upk[65], body[512];
    sodium_bin2hex(pk, sizeof pk, d.pk, 32);
    sodium_bin2hex(upk, sizeof upk, d.upk, 32);
    snprintf(body, sizeof body,
             "{\"code\":\"%s\",\"device_id\":\"dev-cli\",\"device_pk\":\"%s\",\"user_pk\":\"%s\"}",
             code, pk, upk);
    ts_request(&s, NULL, "POST", "/v1/enroll", NULL, body, strlen(body), &r);
    CHECK_EQ_INT(r.status, 200);
    tresp_free(&r);
    ts_request(&s, &d, "GET", "/v1/delta?since=0", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.body && strstr(r.body, "\"households\":["));
    tresp_free(&r);

    kill(pid, SIGTERM);
    int st = 0;
    waitpid(pid, &st, 0);
    close(fds[0]);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    size_t len;
    char *log = (char *)pd_test_read_file(logpath, &len);
    CHECK(log && len > 0);
    if (log) {
        log = realloc(log, len + 1);
        log[len] = '\0';
        CHECK(strstr(log, "device=dev-cli method=GET path=/v1/delta status=200"));
    }
    free(log);

    /* revoke works from the command line while the server is stopped */
    CHECK_EQ_INT(run((const char *[]){"revoke", "--device", "dev-cli", NULL}, NULL), 0);
    CHECK_EQ_INT(run((const char *[]){"revoke", "--device", "dev-cli", NULL}, NULL), 1);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    REQUIRE(sodium_init() >= 0);
    signal(SIGPIPE, SIG_IGN);
    const char *build = getenv("PD_BUILD");
    REQUIRE(build && *build);
    snprintf(prog, sizeof prog, "%s/pendata-server", build);
    REQUIRE(access(prog, X_OK) == 0);
    dir = pd_test_tmpdir("server-cli");
    REQUIRE(td_make(db, sizeof db, dir, NULL) == 0);
    snprintf(data, sizeof data, "%s/server.db.d", dir);
    RUN(test_operator_commands_and_exit_codes);
    RUN(test_serve_on_port_zero_enrols_and_stops_on_sigterm);
    pd_test_rmtree(dir);
    free(dir);
    curl_global_cleanup();
    return pd_test_finish();
}

/*
 * bench_prelist.c — how fast a prelist is generated, verified and imported, and how much memory
 * an import takes. Goal (design: a low-end phone): a 10,000-household prelist imported into the
 * encrypted store in at most 1 s here, with a peak resident set of at most 32 MB.
 *
 *   bench_prelist [--households N] [--area CODE]
 *
 * The package is generated and the store created in this process; the verification and the import
 * each run in a FRESH process (this program re-executed) so that getrusage's ru_maxrss is theirs
 * alone. Prints one line per figure and a JSON summary line.
 */
#define _GNU_SOURCE
#include "prelist_fixture.h"

#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss; /* KiB on Linux */
}

/* CPU seconds (user + system) of this process so far: steadier than the wall clock on a busy
 * machine. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* Child: "verify PKG" or "import HOME PKG". Prints "<seconds> <cpu seconds> <maxrss KiB>". */
static int child(int argc, char **argv)
{
    uint8_t pk[32], sk[64];
    pd_fixture_issuer(1, pk, sk);
    pd_error e = {0};
    double t0, t1, c0, c1;
    if (!strcmp(argv[2], "verify") && argc == 4) {
        c0 = cpu_s();
        t0 = now_s();
        int rc = pd_prelist_verify(argv[3], pk, NULL, &e);
        t1 = now_s();
        c1 = cpu_s();
        if (rc != PD_OK) {
            fprintf(stderr, "verify: %s\n", e.msg);
            return 1;
        }
    } else if (!strcmp(argv[2], "import") && argc == 5) {
        pd_store *s = NULL;
        if (pd_store_open(&s, argv[3], PD_FIXTURE_PIN, &e) != PD_OK) {
            fprintf(stderr, "open: %s\n", e.msg);
            return 1;
        }
        pd_prelist_import_stats st;
        c0 = cpu_s();
        t0 = now_s();
        int rc = pd_prelist_import(s, argv[4], pk, &st);
        t1 = now_s();
        c1 = cpu_s();
        if (rc != PD_OK) {
            fprintf(stderr, "import: %s\n", pd_store_errmsg(s));
            pd_store_close(s);
            return 1;
        }
        pd_store_close(s);
    } else {
        return 2;
    }
    printf("%.4f %.4f %ld\n", t1 - t0, c1 - c0, maxrss_kb());
    return 0;
}

/* Run this program again with args; parse what child() prints. */
static int run_child(char *const args[], double *secs, double *cpu, long *kb)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(fds[1]);
    char buf[128] = {0};
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (n <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        sscanf(buf, "%lf %lf %ld", secs, cpu, kb) != 3)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    if (argc >= 3 && !strcmp(argv[1], "--child"))
        return child(argc, argv);
    uint32_t households = 10000;
    const char *area = "32.73.01";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--households") && i + 1 < argc)
            households = (uint32_t)strtoul(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--area") && i + 1 < argc)
            area = argv[++i];
        else {
            fprintf(stderr, "usage: bench_prelist [--households N] [--area CODE]\n");
            return 2;
        }
    }
    uint8_t pk[32], sk[64];
    pd_fixture_issuer(1, pk, sk);
    const char *tmp = getenv("TMPDIR");
    char dir[4096], pkg[4200], home[4200];
    snprintf(dir, sizeof dir, "%s/pd-bench-prelist-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    snprintf(pkg, sizeof pkg, "%s/prelist.pdpl", dir);
    snprintf(home, sizeof home, "%s/home", dir);
    pd_error e = {0};
    pd_prelist_gen_options o = {.seed = 1, .households = households};
    pd_prelist_info info;
    double t0 = now_s();
    if (pd_prelist_generate_file(pkg, area, &o, sk, &info, &e) != PD_OK) {
        fprintf(stderr, "generate: %s\n", e.msg);
        return 1;
    }
    double gen_s = now_s() - t0;
    pd_store *s = NULL;
    if (pd_store_create(&s, home, PD_FIXTURE_PIN, &PD_KDF_TEST, &e) != PD_OK) {
        fprintf(stderr, "store: %s\n", e.msg);
        return 1;
    }
    pd_store_close(s);

    double verify_s = 0, import_s = 0, again_s = 0, verify_cpu = 0, import_cpu = 0, again_cpu = 0;
    long verify_kb = 0, import_kb = 0, again_kb = 0;
    char *vargs[] = {argv[0], "--child", "verify", pkg, NULL};
    char *iargs[] = {argv[0], "--child", "import", home, pkg, NULL};
    if (run_child(vargs, &verify_s, &verify_cpu, &verify_kb) != 0 ||
        run_child(iargs, &import_s, &import_cpu, &import_kb) != 0 ||
        run_child(iargs, &again_s, &again_cpu, &again_kb) != 0) {
        fprintf(stderr, "bench_prelist: a child failed\n");
        return 1;
    }
    uint64_t bytes = PD_PRELIST_PREFIX_BYTES + info.compressed_size;
    printf("prelist %s: %u households, %u members, package %.2f MB (%.2f MB inflated)\n", area,
           info.households, info.members, (double)bytes / 1e6, (double)info.inflated_size / 1e6);
    printf("generate + sign        %8.3f s   (%.0f households/s)\n", gen_s,
           info.households / gen_s);
    printf("verify (fresh process) %8.3f s (cpu %.3f s)   peak RSS %6.1f MB\n", verify_s,
           verify_cpu, verify_kb / 1024.0);
    printf("import (fresh process) %8.3f s (cpu %.3f s)   peak RSS %6.1f MB   goal <= 1 s, "
           "<= 32 MB: %s\n",
           import_s, import_cpu, import_kb / 1024.0,
           import_s <= 1.0 && import_kb <= 32 * 1024 ? "met" : "MISSED");
    printf("import again (no-op)   %8.3f s (cpu %.3f s)   peak RSS %6.1f MB\n", again_s,
           again_cpu, again_kb / 1024.0);
    printf("{\"bench\":\"prelist\",\"households\":%u,\"members\":%u,\"package_bytes\":%llu,"
           "\"generate_s\":%.4f,\"verify_s\":%.4f,\"verify_rss_kb\":%ld,\"import_s\":%.4f,"
           "\"import_cpu_s\":%.4f,\"import_rss_kb\":%ld,\"noop_s\":%.4f}\n",
           info.households, info.members, (unsigned long long)bytes, gen_s, verify_s, verify_kb,
           import_s, import_cpu, import_kb, again_s);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

/*
 * cmd_sync.c — `pendata sync`: one sync with the server this device enrolled with
 * (pd_sync_run): upload approved/voided batches and their photos (resumable), receipts, then the
 * prelist or the deltas. A progress bar is drawn on stderr when it is a terminal; --json prints
 * the figures of the sync (also after a failure: what was done before it).
 *
 * `pendata sync --tus-upload URL FILE [--state FILE]` (not in the main help) uploads a plain
 * file to any tus 1.0 server, without the store or Pd-Auth: the interop tests use it.
 */
#include "cli.h"
#include "pd_sync.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *USAGE =
    "sync [--server URL] [--chunk BYTES] [--connect-timeout MS] [--stall-timeout S] "
    "[--attempts N] [--backoff MS] [--ca-file PEM]";

static void print_help(void)
{
    printf(
        "usage: pendata %s\n\n"
        "Sync with the server: approved and voided batches (and the photos they name) go up\n"
        "as one resumable upload, their signed receipts come back, then the prelist (first\n"
        "time) or the changes since the last sync come down. An interrupted sync resumes\n"
        "where it stopped: no byte the server already holds is sent again.\n\n"
        "  --server URL          another address of the same server (default: the one enrolled)\n"
        "  --chunk BYTES         bytes per upload request (default 256 KiB)\n"
        "  --connect-timeout MS  give up connecting after MS (default 15000)\n"
        "  --stall-timeout S     a transfer that stalls S seconds is retried (default 60)\n"
        "  --attempts N          tries of a request that makes no progress (default 8)\n"
        "  --backoff MS          first retry delay; doubles, full jitter, capped at 30 s\n"
        "  --ca-file PEM         an extra CA bundle for https\n\n"
        "Exit status 0 when the sync completed (held, rejected or forked batches are\n"
        "reported), 1 otherwise; --json prints the figures either way.\n",
        USAGE);
}

/* ---- progress bar (stderr, terminals only) ------------------------------------------------- */

typedef struct bar {
    bool drawn;
    struct timespec last;
    int last_phase;
    uint64_t last_done;
} bar;

static const char *phase_name(pd_sync_phase p)
{
    switch (p) {
    case PD_SYNC_PHASE_ENROLL:
        return "enrol";
    case PD_SYNC_PHASE_PHOTOS:
        return "photos";
    case PD_SYNC_PHASE_UPLOAD:
        return "upload";
    case PD_SYNC_PHASE_RECEIPTS:
        return "receipts";
    case PD_SYNC_PHASE_PRELIST:
        return "prelist";
    case PD_SYNC_PHASE_DELTA:
        return "changes";
    }
    return "sync";
}

static void on_progress(void *ctx, pd_sync_phase phase, uint64_t done, uint64_t total)
{
    bar *b = ctx;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long ms = (now.tv_sec - b->last.tv_sec) * 1000 + (now.tv_nsec - b->last.tv_nsec) / 1000000;
    bool end = total && done >= total;
    if (b->drawn && (int)phase == b->last_phase && (done == b->last_done || (ms < 100 && !end)))
        return;
    b->last_done = done;
    b->last = now;
    b->last_phase = (int)phase;
    char line[96];
    if (total) {
        int width = 30, fill = (int)((double)done / (double)total * width);
        if (fill > width)
            fill = width;
        char cells[31];
        for (int i = 0; i < width; i++)
            cells[i] = i < fill ? '#' : '.';
        cells[width] = '\0';
        snprintf(line, sizeof line, "%-8s [%s] %3d%% %8.1f KiB", phase_name(phase), cells,
                 (int)(done * 100 / total), (double)done / 1024.0);
    } else {
        snprintf(line, sizeof line, "%-8s %8.1f KiB", phase_name(phase), (double)done / 1024.0);
    }
    fprintf(stderr, "\r%-70s", line);
    fflush(stderr);
    b->drawn = true;
}

/* ---- options -------------------------------------------------------------------------------- */

static int parse_num(cli *c, const char *name, const char *v, long long min, long long max,
                     long long *out)
{
    char *end;
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || n < min || n > max) {
        fprintf(stderr, "%s: sync: %s must be a number from %lld to %lld\n", c->prog, name, min,
                max);
        return -1;
    }
    *out = n;
    return 0;
}

static void print_stats(const pd_sync_stats *s, bool ok, bool json)
{
    if (json) {
        printf("{\"ok\":%s,\"requests\":%llu,\"bytes_sent\":%llu,\"bytes_received\":%llu,"
               "\"retries\":%llu,\"upload_body_bytes\":%llu,\"upload_length\":%llu,"
               "\"uploads_resumed\":%llu,"
               "\"resume_offset\":%llu,\"photos_uploaded\":%llu,\"photos_skipped\":%llu,"
               "\"batches_uploaded\":%llu,\"batches_acknowledged\":%llu,\"batches_held\":%llu,"
               "\"batches_rejected\":%llu,\"batches_forked\":%llu,\"records_pulled\":%llu,"
               "\"fields_kept\":%llu,\"conflicts_pulled\":%llu,\"keys_pulled\":%llu,"
               "\"prelist_imported\":%s,\"cursor\":%lld,\"pulled\":%s,\"upload_error\":%s%s%s}\n",
               ok ? "true" : "false", (unsigned long long)s->requests,
               (unsigned long long)s->bytes_sent, (unsigned long long)s->bytes_received,
               (unsigned long long)s->retries, (unsigned long long)s->upload_body_bytes,
               (unsigned long long)s->upload_length, (unsigned long long)s->upload_resumed,
               (unsigned long long)s->upload_resume_offset, (unsigned long long)s->photos_uploaded,
               (unsigned long long)s->photos_skipped, (unsigned long long)s->batches_uploaded,
               (unsigned long long)s->batches_acknowledged, (unsigned long long)s->batches_held,
               (unsigned long long)s->batches_rejected, (unsigned long long)s->batches_forked,
               (unsigned long long)s->records_pulled, (unsigned long long)s->fields_kept,
               (unsigned long long)s->conflicts_pulled, (unsigned long long)s->keys_pulled,
               s->prelist_imported ? "true" : "false", (long long)s->cursor,
               s->pulled ? "true" : "false", s->upload_error ? "\"" : "",
               s->upload_error ? pd_strerror(s->upload_error) : "null",
               s->upload_error ? "\"" : "");
        return;
    }
    printf("%llu request(s), %llu bytes sent, %llu received\n", (unsigned long long)s->requests,
           (unsigned long long)s->bytes_sent, (unsigned long long)s->bytes_received);
    printf("batches: %llu uploaded, %llu acknowledged", (unsigned long long)s->batches_uploaded,
           (unsigned long long)s->batches_acknowledged);
    if (s->batches_held)
        printf(", %llu held (asked again next sync)", (unsigned long long)s->batches_held);
    if (s->batches_rejected)
        printf(", %llu REJECTED", (unsigned long long)s->batches_rejected);
    if (s->batches_forked)
        printf(", %llu FORKED (tell your supervisor)", (unsigned long long)s->batches_forked);
    printf("\nphotos: %llu uploaded, %llu already on the server\n",
           (unsigned long long)s->photos_uploaded, (unsigned long long)s->photos_skipped);
    printf("%s%llu record(s) pulled, %llu local change(s) kept over the server's; cursor %lld\n",
           s->prelist_imported ? "prelist imported; " : "", (unsigned long long)s->records_pulled,
           (unsigned long long)s->fields_kept, (long long)s->cursor);
}

static int tus_upload(cli *c, const char *url, const char *file, const char *state,
                      const pd_sync_options *opt)
{
    pd_sync_stats st;
    memset(&st, 0, sizeof st);
    pd_error err = {0};
    char where[2048];
    int rc = pd_tus_upload_file(url, file, state, opt, &st, where, sizeof where, &err);
    if (rc != PD_OK) {
        if (c->json)
            print_stats(&st, false, true);
        return cli_fail_err(c, "tus-upload", &err);
    }
    if (c->json)
        printf("{\"ok\":true,\"url\":\"%s\",\"requests\":%llu,\"upload_body_bytes\":%llu,"
               "\"uploads_resumed\":%llu,\"resume_offset\":%llu,\"retries\":%llu}\n",
               where, (unsigned long long)st.requests, (unsigned long long)st.upload_body_bytes,
               (unsigned long long)st.upload_resumed, (unsigned long long)st.upload_resume_offset,
               (unsigned long long)st.retries);
    else
        printf("%s\n", where);
    return CLI_OK;
}

int cmd_sync(cli *c, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        print_help();
        return CLI_OK;
    }
    pd_sync_options opt;
    memset(&opt, 0, sizeof opt);
    opt.chunk_bytes = 256u << 10;
    const char *tus_url = NULL, *tus_file = NULL, *tus_state = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        if (!strcmp(a, "--tus-upload") && v && i + 2 < argc) {
            tus_url = v;
            tus_file = argv[i + 2];
            i += 2;
            continue;
        }
        if (!v) {
            fprintf(stderr, "%s: sync: unknown or incomplete option '%s'\n", c->prog, a);
            return cli_usage(c, USAGE);
        }
        i++;
        if (!strcmp(a, "--server"))
            opt.server_url = v;
        else if (!strcmp(a, "--ca-file"))
            opt.ca_file = v;
        else if (!strcmp(a, "--state"))
            tus_state = v;
        else if (!strcmp(a, "--chunk")) {
            if (parse_num(c, a, v, 1024, 64LL << 20, &n) != 0)
                return CLI_USAGE;
            opt.chunk_bytes = (size_t)n;
        } else if (!strcmp(a, "--connect-timeout")) {
            if (parse_num(c, a, v, 100, 600000, &n) != 0)
                return CLI_USAGE;
            opt.connect_timeout_ms = (long)n;
        } else if (!strcmp(a, "--stall-timeout")) {
            if (parse_num(c, a, v, 1, 3600, &n) != 0)
                return CLI_USAGE;
            opt.stall_timeout_s = (long)n;
        } else if (!strcmp(a, "--attempts")) {
            if (parse_num(c, a, v, 1, 1000, &n) != 0)
                return CLI_USAGE;
            opt.max_attempts = (unsigned)n;
        } else if (!strcmp(a, "--backoff-cap")) { /* hidden: tests */
            if (parse_num(c, a, v, 1, 600000, &n) != 0)
                return CLI_USAGE;
            opt.backoff_cap_ms = (unsigned)n;
        } else if (!strcmp(a, "--backoff")) {
            if (parse_num(c, a, v, 1, 30000, &n) != 0)
                return CLI_USAGE;
            opt.backoff_base_ms = (unsigned)n;
        } else {
            fprintf(stderr, "%s: sync: unknown option '%s'\n", c->prog, a);
            return cli_usage(c, USAGE);
        }
    }
    bar b;
    memset(&b, 0, sizeof b);
    b.last_phase = -1;
    if (!c->quiet && !c->json && isatty(STDERR_FILENO)) {
        opt.progress = on_progress;
        opt.progress_ctx = &b;
    }
    if (tus_url) {
        int rc = tus_upload(c, tus_url, tus_file, tus_state, &opt);
        if (b.drawn)
            fputc('\n', stderr);
        return rc;
    }
    pd_store *s = cli_open_store(c);
    if (!s)
        return CLI_FAIL;
    pd_sync_stats st;
    int rc = pd_sync_run(s, &opt, &st);
    if (b.drawn)
        fputc('\n', stderr);
    if (rc != PD_OK)
        cli_fail(c, "sync", pd_store_errmsg(s));
    if (c->json || (rc == PD_OK && !c->quiet))
        print_stats(&st, rc == PD_OK, c->json);
    if (rc == PD_OK && (st.batches_rejected || st.batches_forked))
        fprintf(stderr, "%s: sync: %llu batch(es) rejected, %llu forked: see 'pendata outbox'\n",
                c->prog, (unsigned long long)st.batches_rejected,
                (unsigned long long)st.batches_forked);
    pd_store_close(s);
    return rc == PD_OK ? CLI_OK : CLI_FAIL;
}

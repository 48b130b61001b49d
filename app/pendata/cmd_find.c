/*
 * cmd_find.c — `pendata find`: households on this device by name, NIK, KK, address, desa,
 * status, or nearest to a point (pd_household_find).
 */
#include "cli_visits.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "find [--name S] [--nik N] [--kk K] [--address S] [--desa CODE] [--status S] "
    "[--near LAT,LON] [--limit N] [--json]";

static void print_help(void)
{
    printf("usage: pendata %s\n\n"
           "Find households on this device. Every criterion given must hold.\n\n"
           "  --name S        words of a member's or the head's name (accents and case ignored;\n"
           "                  each word matches as a prefix: \"sit nur\" finds Siti Nurhaliza)\n"
           "  --nik N         a member's NIK (16 digits)\n"
           "  --kk K          a KK number (16 digits)\n"
           "  --address S     words of the address\n"
           "  --desa CODE     a desa (or kecamatan) code, e.g. 32.73.01.1001\n"
           "  --status S      visited, unvisited, or a visit outcome (found, refused, ...)\n"
           "  --near LAT,LON  nearest first, with the distance\n"
           "  --limit N       at most N households (default %d, at most %d)\n"
           "  --json          one JSON array on stdout\n",
           USAGE, PD_FIND_DEFAULT_LIMIT, PD_FIND_MAX_LIMIT);
}

typedef struct out {
    cli *c;
    cJSON *array;
    size_t n;
} out;

static int print_hit(void *ctx, const pd_household_hit *h)
{
    out *o = ctx;
    o->n++;
    if (o->array) {
        cJSON *j = cJSON_CreateObject();
        if (!j)
            return PD_ERR_NOMEM;
        cJSON_AddStringToObject(j, "id", h->id);
        cJSON_AddStringToObject(j, "desa", h->desa);
        cJSON_AddStringToObject(j, "sls", h->sls);
        cJSON_AddStringToObject(j, "address", h->address);
        cJSON_AddStringToObject(j, "head_name", h->head_name);
        if (h->kk)
            cJSON_AddStringToObject(j, "kk", h->kk);
        else
            cJSON_AddNullToObject(j, "kk");
        if (h->status)
            cJSON_AddStringToObject(j, "status", h->status);
        else
            cJSON_AddNullToObject(j, "status");
        cJSON_AddNumberToObject(j, "member_count", (double)h->member_count);
        if (!isnan(h->lat)) {
            cJSON_AddNumberToObject(j, "lat", h->lat);
            cJSON_AddNumberToObject(j, "lon", h->lon);
        }
        if (!isnan(h->distance_m))
            cJSON_AddNumberToObject(j, "distance_m", round(h->distance_m * 10) / 10);
        cJSON_AddItemToArray(o->array, j);
        return 0;
    }
    if (!isnan(h->distance_m))
        printf("%8.0f m  ", h->distance_m);
    printf("%-20s %-13s %-14s %2lld  %-30s %s\n", h->id, h->desa,
           h->status ? h->status : "(not visited)", (long long)h->member_count, h->head_name,
           h->address);
    return 0;
}

int cmd_find(cli *c, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        print_help();
        return CLI_OK;
    }
    pd_find_query q = {0};
    const char *near = NULL, *limit = NULL;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        const char **dst = NULL;
        if (!strcmp(argv[i], "--json")) {
            c->json = true;
            continue;
        }
        if (cli_opt(argc, argv, &i, "--name", &v))
            dst = &q.name;
        else if (cli_opt(argc, argv, &i, "--nik", &v))
            dst = &q.nik;
        else if (cli_opt(argc, argv, &i, "--kk", &v))
            dst = &q.kk;
        else if (cli_opt(argc, argv, &i, "--address", &v))
            dst = &q.address;
        else if (cli_opt(argc, argv, &i, "--desa", &v))
            dst = &q.desa;
        else if (cli_opt(argc, argv, &i, "--status", &v))
            dst = &q.status;
        else if (cli_opt(argc, argv, &i, "--near", &v))
            dst = &near;
        else if (cli_opt(argc, argv, &i, "--limit", &v))
            dst = &limit;
        if (!dst || !v)
            return cli_usage(c, USAGE);
        *dst = v;
    }
    if (near) {
        pd_gps g;
        if (cli_parse_gps(near, &g) != 0)
            return cli_fail(c, "--near", "expected LAT,LON");
        q.near = 1;
        q.near_lat = g.lat;
        q.near_lon = g.lon;
    }
    if (limit) {
        char *end;
        long n = strtol(limit, &end, 10);
        if (*end || n < 1)
            return cli_fail(c, "--limit", "expected a positive number");
        q.limit = (size_t)n;
    }
    pd_store *store = cli_open_store(c);
    if (!store)
        return CLI_FAIL;
    out o = {.c = c, .array = c->json ? cJSON_CreateArray() : NULL};
    int rc = pd_household_find(store, &q, print_hit, &o);
    int ret = CLI_OK;
    if (rc != PD_OK) {
        ret = cli_fail_store(c, "find", store);
        cJSON_Delete(o.array);
    } else if (o.array) {
        ret = cli_print_json(c, o.array);
    } else if (o.n == 0 && !c->quiet) {
        fprintf(stderr, "%s: find: no household matches\n", c->prog);
    }
    pd_store_close(store);
    return ret;
}

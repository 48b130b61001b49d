/*
 * cmd_visit.c — `pendata visit ID`: record a visit to a household (pd_visit_record): outcome, GPS
 * fix, notes, member outcomes. Prints the visit id; warnings go to stderr (or into the JSON).
 */
#include "cli_visits.h"

#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "visit HOUSEHOLD_ID --outcome O --gps LAT,LON[,ACC[,ALT]] [--fix-time T] [--provider P] "
    "[--mock] [--notes S] [--at T] [--member MEMBER_ID=OUTCOME ...] [--json]";

static void print_help(void)
{
    printf("usage: pendata %s\n\n"
           "Record a visit to a household.\n\n"
           "  --outcome O       found, found_new_head, moved_within, moved_out, joined_other,\n"
           "                    not_found, all_deceased, refused, new_household\n"
           "  --gps LAT,LON[,ACC[,ALT]]  the fix: degrees, accuracy and altitude in metres\n"
           "                    (without ACC: a manual fix of 50 m)\n"
           "  --fix-time T      when the fix was taken (default now)\n"
           "  --provider P      gps, network, fused or manual\n"
           "  --mock            the platform reported a mock location\n"
           "  --notes S         free text\n"
           "  --at T            when the visit happened (default now)\n"
           "  --member ID=O     a member's outcome: confirmed, not_confirmed, duplicate,\n"
           "                    deceased, moved (the last three end the member); repeatable\n"
           "Times are \"now\", Unix milliseconds or YYYY-MM-DDTHH:MM:SSZ.\n",
           USAGE);
}

#define MEMBERS_MAX 99

int cmd_visit(cli *c, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        print_help();
        return CLI_OK;
    }
    if (argc < 2 || argv[1][0] == '-')
        return cli_usage(c, USAGE);
    pd_visit_in in = {.household_id = argv[1]};
    const char *gps = NULL, *fix_time = NULL, *provider = NULL, *at = NULL;
    bool mock = false;
    pd_member_outcome members[MEMBERS_MAX];
    char *member_args[MEMBERS_MAX];
    size_t nmembers = 0;
    for (int i = 2; i < argc; i++) {
        const char *v = NULL;
        const char **dst = NULL;
        if (!strcmp(argv[i], "--json")) {
            c->json = true;
            continue;
        }
        if (!strcmp(argv[i], "--mock")) {
            mock = true;
            continue;
        }
        if (cli_opt(argc, argv, &i, "--outcome", &v))
            dst = &in.outcome;
        else if (cli_opt(argc, argv, &i, "--gps", &v))
            dst = &gps;
        else if (cli_opt(argc, argv, &i, "--fix-time", &v))
            dst = &fix_time;
        else if (cli_opt(argc, argv, &i, "--provider", &v))
            dst = &provider;
        else if (cli_opt(argc, argv, &i, "--notes", &v))
            dst = &in.notes;
        else if (cli_opt(argc, argv, &i, "--at", &v))
            dst = &at;
        else if (cli_opt(argc, argv, &i, "--member", &v)) {
            if (!v)
                return cli_usage(c, USAGE);
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || nmembers == MEMBERS_MAX)
                return cli_fail(c, "--member", "expected MEMBER_ID=OUTCOME (at most 99)");
            member_args[nmembers] = strdup(v);
            if (!member_args[nmembers])
                return cli_fail(c, "--member", "out of memory");
            member_args[nmembers][eq - v] = '\0';
            members[nmembers].member_id = member_args[nmembers];
            members[nmembers].outcome = member_args[nmembers] + (eq - v) + 1;
            nmembers++;
            continue;
        }
        if (!dst || !v) {
            for (size_t k = 0; k < nmembers; k++)
                free(member_args[k]);
            return cli_usage(c, USAGE);
        }
        *dst = v;
    }
    int ret = CLI_OK;
    pd_store *store = NULL;
    pd_gps g;
    if (!in.outcome || !gps) {
        ret = cli_usage(c, USAGE);
        goto out;
    }
    if (cli_parse_gps(gps, &g) != 0) {
        ret = cli_fail(c, "--gps", "expected LAT,LON[,ACC[,ALT]] in degrees and metres");
        goto out;
    }
    if (cli_parse_time(fix_time ? fix_time : "now", &g.fix_time) != 0) {
        ret = cli_fail(c, "--fix-time", "expected now, Unix milliseconds or YYYY-MM-DDTHH:MM:SSZ");
        goto out;
    }
    if (at && cli_parse_time(at, &in.visited_at) != 0) {
        ret = cli_fail(c, "--at", "expected now, Unix milliseconds or YYYY-MM-DDTHH:MM:SSZ");
        goto out;
    }
    if (provider)
        g.provider = provider;
    g.mock = mock;
    in.gps = &g;
    in.members = members;
    in.member_count = nmembers;
    if (!(store = cli_open_store(c))) {
        ret = CLI_FAIL;
        goto out;
    }
    char id[PD_ID_MAX];
    pd_warnings w = {0};
    if (pd_visit_record(store, &in, id, &w) != PD_OK) {
        ret = cli_fail_store(c, "visit", store);
        goto out;
    }
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "id", id);
            cJSON_AddItemToObject(o, "warnings", cli_warnings_json(&w));
        }
        ret = cli_print_json(c, o);
    } else {
        printf("%s\n", id);
        cli_print_warnings(c, &w);
    }
out:
    pd_store_close(store);
    for (size_t k = 0; k < nmembers; k++)
        free(member_args[k]);
    return ret;
}

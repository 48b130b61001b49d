/*
 * cmd_member.c — `pendata member set|add|end`: correct a member's field, add a member who was
 * born or joined, end a member who died, moved or was a duplicate.
 */
#include "cli_visits.h"

#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "member set MEMBER_ID FIELD VALUE | member add HOUSEHOLD_ID --name S --relationship N "
    "[--nik N] [--sex S] [--birth-date D] [--birth-place P] [--marital N] [--kk K] "
    "[--reason born|joined] | member end MEMBER_ID --reason deceased|moved|duplicate";

static void print_help(void)
{
    printf("usage: pendata %s\n\n"
           "  set MEMBER_ID FIELD VALUE  correct one field: name, nik, kk, sex, birth_place,\n"
           "                  birth_date, relationship, marital, disability, chronic_illness,\n"
           "                  schooling, work, programmes (codes as numbers; \"\" clears)\n"
           "  add HOUSEHOLD_ID ...  a member born (--birth-date required) or joined (default);\n"
           "                  --relationship: 1 head, 2 spouse, 3 child, 4 child-in-law,\n"
           "                  5 grandchild, 6 parent, 7 parent-in-law, 8 help, 9 other;\n"
           "                  prints the new member id\n"
           "  end MEMBER_ID --reason deceased|moved|duplicate\n",
           USAGE);
}

static int report(cli *c, const char *id, const pd_warnings *w, bool print_id)
{
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "id", id);
            cJSON_AddItemToObject(o, "warnings", cli_warnings_json(w));
        }
        return cli_print_json(c, o);
    }
    if (print_id)
        printf("%s\n", id);
    cli_print_warnings(c, w);
    return CLI_OK;
}

static int add(cli *c, pd_store *store, const char *household_id, const pd_member_new *m)
{
    char id[PD_ID_MAX];
    pd_warnings w = {0};
    if (pd_member_add(store, household_id, m, id, &w) != PD_OK)
        return cli_fail_store(c, "member add", store);
    return report(c, id, &w, true);
}

int cmd_member(cli *c, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        print_help();
        return CLI_OK;
    }
    if (argc < 3)
        return cli_usage(c, USAGE);
    const char *verb = argv[1], *id = argv[2];
    pd_member_new m = {.reason = "joined"};
    const char *sex = NULL, *rel = NULL, *marital = NULL, *reason = NULL;
    pd_value value;
    pd_error err = {0};
    if (!strcmp(verb, "set")) {
        if (argc < 5)
            return cli_usage(c, USAGE);
        for (int i = 5; i < argc; i++) {
            if (strcmp(argv[i], "--json") != 0)
                return cli_usage(c, USAGE);
            c->json = true;
        }
        if (pd_field_parse("member", argv[3], argv[4], &value, &err) != PD_OK)
            return cli_fail_err(c, "member set", &err);
    } else if (!strcmp(verb, "add") || !strcmp(verb, "end")) {
        bool is_add = !strcmp(verb, "add");
        for (int i = 3; i < argc; i++) {
            const char *v = NULL;
            const char **dst = NULL;
            if (!strcmp(argv[i], "--json")) {
                c->json = true;
                continue;
            }
            if (cli_opt(argc, argv, &i, "--reason", &v))
                dst = &reason;
            else if (is_add && cli_opt(argc, argv, &i, "--name", &v))
                dst = &m.name;
            else if (is_add && cli_opt(argc, argv, &i, "--nik", &v))
                dst = &m.nik;
            else if (is_add && cli_opt(argc, argv, &i, "--kk", &v))
                dst = &m.kk;
            else if (is_add && cli_opt(argc, argv, &i, "--sex", &v))
                dst = &sex;
            else if (is_add && cli_opt(argc, argv, &i, "--birth-date", &v))
                dst = &m.birth_date;
            else if (is_add && cli_opt(argc, argv, &i, "--birth-place", &v))
                dst = &m.birth_place;
            else if (is_add && cli_opt(argc, argv, &i, "--relationship", &v))
                dst = &rel;
            else if (is_add && cli_opt(argc, argv, &i, "--marital", &v))
                dst = &marital;
            if (!dst || !v)
                return cli_usage(c, USAGE);
            *dst = v;
        }
        if (is_add) {
            if (!m.name || !rel)
                return cli_usage(c, USAGE);
            if (sex && !(m.sex = cli_parse_sex(sex)))
                return cli_fail(c, "--sex", "expected male (1) or female (2)");
            char *end;
            m.relationship = (int)strtol(rel, &end, 10);
            if (*end || m.relationship < 1)
                return cli_fail(c, "--relationship", "expected a number 1..9");
            if (marital)
                m.marital = atoi(marital);
            if (reason)
                m.reason = reason;
        } else if (!reason) {
            return cli_usage(c, USAGE);
        }
    } else {
        return cli_usage(c, USAGE);
    }
    pd_store *store = cli_open_store(c);
    if (!store)
        return CLI_FAIL;
    int ret;
    if (!strcmp(verb, "set")) {
        pd_warnings w = {0};
        ret = pd_member_set(store, id, argv[3], &value, &w) == PD_OK
                  ? report(c, id, &w, false)
                  : cli_fail_store(c, "member set", store);
    } else if (!strcmp(verb, "add")) {
        ret = add(c, store, id, &m);
    } else {
        pd_warnings none = {0};
        ret = pd_member_end(store, id, reason) == PD_OK ? report(c, id, &none, false)
                                                        : cli_fail_store(c, "member end", store);
    }
    pd_store_close(store);
    return ret;
}

/*
 * cmd_household.c — `pendata household show|set|new`: one household with its members, visits and
 * photos; a correction of one of its fields; a household proposed in the field ("usulan baru").
 */
#include "cli_visits.h"

#include "codes.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "household show ID [--json] | household set ID FIELD VALUE | household new --desa CODE "
    "--head NAME [--nik N] [--sex S] [--birth-date D] [--birth-place P] [--marital N] [--kk K] "
    "[--sls S] [--address S] [--gps LAT,LON]";

static void print_help(void)
{
    printf("usage: pendata %s\n\n"
           "  show ID           the household, its members, visits and photos (--json: as stored)\n"
           "  set ID FIELD VALUE  correct one field (codes as numbers; \"\" or null clears an\n"
           "                    optional field). Correctable: sls, address, head_name, kk, desa\n"
           "                    (within the kecamatan), tenure, floor_area, floor_material,\n"
           "                    wall_material, roof_material, rooms, water_source, lighting,\n"
           "                    power_va, cooking_fuel, toilet, asset_flags, cattle, goats, pigs,\n"
           "                    poultry, land_m2\n"
           "  new --desa CODE --head NAME ...  propose a new household; prints its id\n",
           USAGE);
}

/* ---- show ----------------------------------------------------------------------------------- */

static void print_value(const char *field, const cJSON *v)
{
    if (cJSON_IsNull(v)) {
        printf("-");
    } else if (cJSON_IsString(v)) {
        printf("%s", v->valuestring);
    } else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 9e15) {
            printf("%lld", (long long)d);
            const char *label = pd_code_label(field, (int64_t)d);
            if (label)
                printf(" (%s)", label);
        } else {
            printf("%.7f", d);
        }
    }
}

static void print_object(const cJSON *o, const char *indent)
{
    for (const cJSON *it = o ? o->child : NULL; it; it = it->next) {
        printf("%s%-16s ", indent, it->string);
        print_value(it->string, it);
        printf("\n");
    }
}

static int show(cli *c, pd_store *store, const char *id)
{
    char *json = NULL;
    if (pd_household_json(store, id, &json) != PD_OK)
        return cli_fail_store(c, "household show", store);
    if (c->json) {
        puts(json);
        pd_free(json);
        return CLI_OK;
    }
    cJSON *doc = cJSON_Parse(json);
    pd_free(json);
    if (!doc)
        return cli_fail(c, "household show", "out of memory");
    printf("household %s\n", id);
    print_object(cJSON_GetObjectItem(doc, "household"), "  ");
    const char *sections[] = {"members", "visits", "photos"};
    for (size_t s = 0; s < 3; s++) {
        const cJSON *arr = cJSON_GetObjectItem(doc, sections[s]);
        printf("%s: %d\n", sections[s], cJSON_GetArraySize(arr));
        for (const cJSON *it = arr ? arr->child : NULL; it; it = it->next) {
            const cJSON *key = cJSON_GetObjectItem(it, s == 2 ? "hash" : "id");
            printf("  - %s\n", cJSON_IsString(key) ? key->valuestring : "?");
            print_object(it, "      ");
        }
    }
    cJSON_Delete(doc);
    return CLI_OK;
}

/* ---- set ------------------------------------------------------------------------------------ */

static int set(cli *c, pd_store *store, const char *id, const char *field, const char *text)
{
    pd_value v;
    pd_error err = {0};
    if (pd_field_parse("household", field, text, &v, &err) != PD_OK)
        return cli_fail_err(c, "household set", &err);
    pd_warnings w = {0};
    if (pd_household_set(store, id, field, &v, &w) != PD_OK)
        return cli_fail_store(c, "household set", store);
    if (c->json) {
        cJSON *o = cJSON_CreateObject();
        if (o) {
            cJSON_AddStringToObject(o, "id", id);
            cJSON_AddStringToObject(o, "field", field);
            cJSON_AddItemToObject(o, "warnings", cli_warnings_json(&w));
        }
        return cli_print_json(c, o);
    }
    cli_print_warnings(c, &w);
    return CLI_OK;
}

/* ---- new ------------------------------------------------------------------------------------ */

static int propose(cli *c, int argc, char **argv)
{
    pd_household_new h = {.lat = NAN, .lon = NAN};
    const char *sex = NULL, *marital = NULL, *gps = NULL;
    for (int i = 2; i < argc; i++) {
        const char *v = NULL;
        const char **dst = NULL;
        if (!strcmp(argv[i], "--json")) {
            c->json = true;
            continue;
        }
        if (cli_opt(argc, argv, &i, "--desa", &v))
            dst = &h.desa;
        else if (cli_opt(argc, argv, &i, "--head", &v))
            dst = &h.head.name;
        else if (cli_opt(argc, argv, &i, "--nik", &v))
            dst = &h.head.nik;
        else if (cli_opt(argc, argv, &i, "--sex", &v))
            dst = &sex;
        else if (cli_opt(argc, argv, &i, "--birth-date", &v))
            dst = &h.head.birth_date;
        else if (cli_opt(argc, argv, &i, "--birth-place", &v))
            dst = &h.head.birth_place;
        else if (cli_opt(argc, argv, &i, "--marital", &v))
            dst = &marital;
        else if (cli_opt(argc, argv, &i, "--kk", &v))
            dst = &h.kk;
        else if (cli_opt(argc, argv, &i, "--sls", &v))
            dst = &h.sls;
        else if (cli_opt(argc, argv, &i, "--address", &v))
            dst = &h.address;
        else if (cli_opt(argc, argv, &i, "--gps", &v))
            dst = &gps;
        if (!dst || !v)
            return cli_usage(c, USAGE);
        *dst = v;
    }
    if (!h.desa || !h.head.name)
        return cli_usage(c, USAGE);
    if (sex && !(h.head.sex = cli_parse_sex(sex)))
        return cli_fail(c, "--sex", "expected male (1) or female (2)");
    if (marital)
        h.head.marital = atoi(marital);
    h.head.kk = h.kk;
    if (gps) {
        pd_gps g;
        if (cli_parse_gps(gps, &g) != 0)
            return cli_fail(c, "--gps", "expected LAT,LON");
        h.lat = g.lat;
        h.lon = g.lon;
    }
    pd_store *store = cli_open_store(c);
    if (!store)
        return CLI_FAIL;
    char id[PD_ID_MAX];
    pd_warnings w = {0};
    int ret = CLI_OK;
    if (pd_household_propose(store, &h, id, &w) != PD_OK) {
        ret = cli_fail_store(c, "household new", store);
    } else if (c->json) {
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
    pd_store_close(store);
    return ret;
}

int cmd_household(cli *c, int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        print_help();
        return CLI_OK;
    }
    if (argc < 2)
        return cli_usage(c, USAGE);
    if (!strcmp(argv[1], "new"))
        return propose(c, argc, argv);
    bool is_show = !strcmp(argv[1], "show"), is_set = !strcmp(argv[1], "set");
    if (is_show) {
        for (int i = 3; i < argc; i++) {
            if (strcmp(argv[i], "--json") != 0)
                return cli_usage(c, USAGE);
            c->json = true;
        }
        if (argc < 3)
            return cli_usage(c, USAGE);
    } else if (!is_set || argc != 5) {
        return cli_usage(c, USAGE);
    }
    pd_store *store = cli_open_store(c);
    if (!store)
        return CLI_FAIL;
    int ret = is_show ? show(c, store, argv[2]) : set(c, store, argv[2], argv[3], argv[4]);
    pd_store_close(store);
    return ret;
}

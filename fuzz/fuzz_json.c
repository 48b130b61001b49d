/*
 * fuzz_json.c — libFuzzer over the JSON bodies the two sides take from each other: the server's
 * enrolment (POST /v1/enroll, unauthenticated: anyone on the network can send it) and commit
 * (POST /v1/batches/commit) handlers, and a delta page applied on a device (what a server sends
 * back, signature aside).
 *
 * The first input byte picks the target, the rest is the body:
 *   0  srv_handle_enroll on a real server (a temporary SQLite database): the answer must be a
 *      refusal with a JSON error, 400 or 403 (no code can be guessed; never a 5xx);
 *   1  srv_handle_commit as an enrolled device: 400 or 404 (no such upload), never a 5xx;
 *   2  pd_client_apply_delta on a real device store, inside a transaction rolled back after each
 *      input (so every input meets the same store);
 *   3  srv_json_parse against cJSON: whatever the server's parser accepts, cJSON accepts too.
 * Seeds: fuzz/corpus/fuzz_json/ (real bodies of each kind).
 */
#define _GNU_SOURCE
#include "client_internal.h"
#include "srv_internal.h"

#include <cjson/cJSON.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[64];
static pd_server *srv;
static pd_store *dev;
static pd_srv_device device = {.id = "fuzz-device", .user_id = "E1"};

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    pd_server_close(srv);
    pd_store_close(dev);
    if (dir[0])
        nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void init_once(void)
{
    if (srv)
        return;
    if (sodium_init() < 0)
        abort();
    snprintf(dir, sizeof dir, "/tmp/pd-fuzz-json-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    char url[128], home[128];
    snprintf(url, sizeof url, "sqlite:%s/server.db", dir);
    snprintf(home, sizeof home, "%s/device", dir);
    pd_error err = {0};
    pd_server_user e1 = {.id = "E1", .role = "enumerator", .name = "Fuzz", .area = "32.73.01.1001"};
    if (pd_server_init(url, &err) != PD_OK || pd_server_open(&srv, url, NULL, &err) != PD_OK ||
        pd_server_user_add(srv, &e1) != PD_OK)
        abort();
    char code[PD_ENROLL_CODE_LEN + 1];
    if (pd_server_enroll_code(srv, "E1", 0, code) != PD_OK) /* one live code to miss */
        abort();
    if (pd_store_create(&dev, home, "135790", &PD_KDF_TEST, &err) != PD_OK ||
        pd_store_add_role(dev, "enumerator", NULL) != PD_OK)
        abort();
    sqlite3_exec(pd_store_sqlite(dev), "PRAGMA synchronous = OFF", NULL, NULL, NULL);
    if (pd_sync_state_set_int(dev, "cursor", 0) != PD_OK) /* pages start at since=0 */
        abort();
    atexit(cleanup);
}

static const char *no_header(const void *hctx, const char *name)
{
    (void)hctx;
    (void)name;
    return NULL;
}

static void handler(int which, const uint8_t *body, size_t len)
{
    srv_req q = {.method = "POST",
                 .path = which ? "/v1/batches/commit" : "/v1/enroll",
                 .query = "",
                 .body = body,
                 .body_len = len,
                 .device = which ? &device : NULL,
                 .header = no_header};
    srv_resp r;
    memset(&r, 0, sizeof r);
    r.fd = -1;
    int status = which ? srv_handle_commit(srv, &q, &r) : srv_handle_enroll(srv, &q, &r);
    bool ok = which ? (status == 400 || status == 404) : (status == 400 || status == 403);
    if (!ok || !r.json || !cJSON_GetObjectItemCaseSensitive(r.json, "error"))
        abort();
    cJSON_Delete(r.json);
    free(r.body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    if (size < 1 || size > 65536)
        return 0;
    uint8_t mode = data[0] & 3;
    const uint8_t *body = data + 1;
    size_t len = size - 1;
    /* the HTTP layer hands handlers a NUL-terminated copy */
    uint8_t *copy = malloc(len + 1);
    if (!copy)
        return 0;
    memcpy(copy, body, len);
    copy[len] = '\0';
    switch (mode) {
    case 0:
    case 1:
        handler(mode, copy, len);
        break;
    case 2: {
        cJSON *page = cJSON_ParseWithLength((const char *)copy, len);
        if (page && pd_store_begin(dev) == PD_OK) {
            pd_sync_stats st;
            memset(&st, 0, sizeof st);
            pd_client_apply_delta(dev, page, &st);
            pd_store_rollback(dev);
        }
        cJSON_Delete(page);
        break;
    }
    default: {
        cJSON *a = srv_json_parse(copy, len);
        cJSON *b = cJSON_ParseWithLength((const char *)copy, len);
        if (a && !b)
            abort();
        cJSON_Delete(a);
        cJSON_Delete(b);
    }
    }
    free(copy);
    return 0;
}

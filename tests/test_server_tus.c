/*
 * test_server_tus.c — resumable uploads (tus 1.0.0 core, creation, creation-with-upload,
 * checksum, termination, expiration) over real HTTP: OPTIONS, create, first bytes in the POST,
 * PATCH in pieces, HEAD resuming at the exact offset,
 * 409 on a wrong offset, 415 on a wrong content type, 460 on a bad checksum (nothing kept), 412
 * on another version, termination, oversize refused, photos content-addressed and hash-checked,
 * uploads private to their device, a cap on each device's unfinished uploads (count and bytes,
 * expired ones not counted) — and a server killed with SIGKILL in the middle of a PATCH
 * resumes at exactly the byte it acknowledged. Also SHA-1 against the FIPS 180 vectors.
 */
#include "sha1.h"
#include "test_server_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static tsrv S;
static tdev A, B;

static const char *const tus_hdr[] = {"Tus-Resumable: 1.0.0", NULL};

static void test_sha1_matches_fips_vectors(void)
{
    static const struct {
        const char *in;
        const char *hex;
    } v[] = {
        {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        pd_sha1 s;
        uint8_t out[PD_SHA1_BYTES];
        char hex[41];
        pd_sha1_init(&s);
        /* fed one byte at a time, to cross block edges */
        for (const char *p = v[i].in; *p; p++)
            pd_sha1_update(&s, p, 1);
        pd_sha1_final(&s, out);
        sodium_bin2hex(hex, sizeof hex, out, sizeof out);
        CHECK(!strcmp(hex, v[i].hex));
    }
    pd_sha1 s;
    uint8_t out[PD_SHA1_BYTES];
    char hex[41], a[1000];
    memset(a, 'a', sizeof a);
    pd_sha1_init(&s);
    for (int i = 0; i < 1000; i++)
        pd_sha1_update(&s, a, sizeof a);
    pd_sha1_final(&s, out);
    sodium_bin2hex(hex, sizeof hex, out, sizeof out);
    CHECK(!strcmp(hex, "34aa973cd4c4daa4f61eeb2bdbad27316534016f"));
}

static void test_options_advertise_the_extensions(void)
{
    tresp r;
    ts_request(&S, NULL, "OPTIONS", "/v1/uploads", NULL, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 204);
    const char *v = tresp_header(&r, "Tus-Version");
    CHECK(v && !strcmp(v, "1.0.0"));
    v = tresp_header(&r, "Tus-Extension");
    CHECK(v && strstr(v, "creation") && strstr(v, "creation-with-upload") &&
          strstr(v, "checksum") && strstr(v, "termination") && strstr(v, "expiration"));
    v = tresp_header(&r, "Tus-Checksum-Algorithm");
    CHECK(v && strstr(v, "sha1"));
    v = tresp_header(&r, "Tus-Max-Size");
    CHECK(v && atol(v) == 1 << 20);
    CHECK(tresp_header(&r, "Tus-Resumable") == NULL); /* not on OPTIONS */
    tresp_free(&r);
}

/* Create an upload; id gets its id. Returns the status. */
static long create(const tdev *d, const char *kind, const char *hash_hex, size_t len, char id[33],
                   tresp *keep)
{
    char hl[64], md[256], k64[32], h64[128];
    sodium_bin2base64(k64, sizeof k64, (const uint8_t *)kind, strlen(kind),
                      sodium_base64_VARIANT_ORIGINAL);
    if (hash_hex) {
        sodium_bin2base64(h64, sizeof h64, (const uint8_t *)hash_hex, strlen(hash_hex),
                          sodium_base64_VARIANT_ORIGINAL);
        snprintf(md, sizeof md, "Upload-Metadata: kind %s,hash %s", k64, h64);
    } else {
        snprintf(md, sizeof md, "Upload-Metadata: kind %s", k64);
    }
    snprintf(hl, sizeof hl, "Upload-Length: %zu", len);
    const char *h[] = {"Tus-Resumable: 1.0.0", hl, md, NULL};
    tresp r;
    ts_request(&S, d, "POST", "/v1/uploads", h, NULL, 0, &r);
    const char *loc = tresp_header(&r, "Location");
    id[0] = '\0';
    if (loc && strlen(loc) == 44)
        snprintf(id, 33, "%s", loc + 12);
    long st = r.status;
    if (keep)
        *keep = r;
    else
        tresp_free(&r);
    return st;
}

static long patch(const tdev *d, const char *id, long offset, const uint8_t *p, size_t n,
                  const char *checksum, const char *ctype, tresp *keep)
{
    char path[80], off[64], ck[160], ct[96];
    snprintf(path, sizeof path, "/v1/uploads/%s", id);
    snprintf(off, sizeof off, "Upload-Offset: %ld", offset);
    snprintf(ct, sizeof ct, "Content-Type: %s", ctype ? ctype : "application/offset+octet-stream");
    const char *h[6] = {"Tus-Resumable: 1.0.0", off, ct, NULL, NULL, NULL};
    if (checksum) {
        snprintf(ck, sizeof ck, "Upload-Checksum: %s", checksum);
        h[3] = ck;
    }
    tresp r;
    ts_request(&S, d, "PATCH", path, h, p, n, &r);
    long st = r.status;
    if (keep)
        *keep = r;
    else
        tresp_free(&r);
    return st;
}

/* HEAD: the Upload-Offset, or -status on a failure. */
static long head_offset(const tdev *d, const char *id)
{
    char path[80];
    snprintf(path, sizeof path, "/v1/uploads/%s", id);
    tresp r;
    ts_request(&S, d, "HEAD", path, tus_hdr, NULL, 0, &r);
    long out = -r.status;
    const char *v = tresp_header(&r, "Upload-Offset"); /* (a static buffer: read it now) */
    if (r.status == 200 && v)
        out = atol(v);
    const char *cc = tresp_header(&r, "Cache-Control");
    CHECK(cc && !strcmp(cc, "no-store"));
    tresp_free(&r);
    return out;
}

static void b64(const uint8_t *p, size_t n, char *out, size_t cap)
{
    sodium_bin2base64(out, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
}

static void sha1_b64(const uint8_t *p, size_t n, char *out, size_t cap)
{
    pd_sha1 s;
    uint8_t d[PD_SHA1_BYTES];
    pd_sha1_init(&s);
    pd_sha1_update(&s, p, n);
    pd_sha1_final(&s, d);
    char b[64];
    b64(d, sizeof d, b, sizeof b);
    snprintf(out, cap, "sha1 %s", b);
}

static void photo_bytes(uint8_t *p, size_t n, uint8_t seed, char hash_hex[65])
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + seed);
    uint8_t h[32];
    crypto_generichash(h, sizeof h, p, n, NULL, 0);
    sodium_bin2hex(hash_hex, 65, h, sizeof h);
}

static void test_create_patch_in_pieces_and_resume_by_head(void)
{
    enum { N = 10000 };
    static uint8_t data[N];
    char hash[65], id[33], ck[128];
    photo_bytes(data, N, 1, hash);
    tresp r;
    REQUIRE_V(create(&A, "photo", hash, N, id, &r) == 201);
    CHECK(tresp_header(&r, "Upload-Expires") != NULL);
    const char *tr = tresp_header(&r, "Tus-Resumable");
    CHECK(tr && !strcmp(tr, "1.0.0"));
    tresp_free(&r);
    CHECK_EQ_INT(head_offset(&A, id), 0);

    sha1_b64(data, 3000, ck, sizeof ck);
    CHECK_EQ_INT(patch(&A, id, 0, data, 3000, ck, NULL, &r), 204);
    const char *off = tresp_header(&r, "Upload-Offset");
    CHECK(off && atol(off) == 3000);
    tresp_free(&r);
    CHECK_EQ_INT(head_offset(&A, id), 3000);

    /* a stale offset: 409 with the offset the server holds */
    CHECK_EQ_INT(patch(&A, id, 0, data, 3000, NULL, NULL, &r), 409);
    off = tresp_header(&r, "Upload-Offset");
    CHECK(off && atol(off) == 3000);
    tresp_free(&r);
    /* the wrong content type */
    CHECK_EQ_INT(patch(&A, id, 3000, data + 3000, 100, NULL, "application/octet-stream", NULL),
                 415);
    /* a checksum that does not match: 460, and nothing of it kept */
    sha1_b64(data, 100, ck, sizeof ck); /* of other bytes */
    CHECK_EQ_INT(patch(&A, id, 3000, data + 3000, 2000, ck, NULL, NULL), 460);
    CHECK_EQ_INT(head_offset(&A, id), 3000);
    /* an unknown algorithm */
    CHECK_EQ_INT(patch(&A, id, 3000, data + 3000, 100, "md5 AAAA", NULL, NULL), 400);
    /* sha256 works too */
    uint8_t d256[32];
    crypto_hash_sha256(d256, data + 3000, 4000);
    char b[64];
    b64(d256, sizeof d256, b, sizeof b);
    snprintf(ck, sizeof ck, "sha256 %s", b);
    CHECK_EQ_INT(patch(&A, id, 3000, data + 3000, 4000, ck, NULL, NULL), 204);
    CHECK_EQ_INT(head_offset(&A, id), 7000);
    /* running past Upload-Length: refused, offset unchanged */
    static uint8_t more[N];
    CHECK_EQ_INT(patch(&A, id, 7000, more, 3001, NULL, NULL, NULL), 413);
    CHECK_EQ_INT(head_offset(&A, id), 7000);
    /* another device cannot see or touch it */
    CHECK_EQ_INT(head_offset(&B, id), -404);
    CHECK_EQ_INT(patch(&B, id, 7000, data + 7000, 3000, NULL, NULL, NULL), 404);
    /* the last piece completes it: the photo is stored */
    CHECK_EQ_INT(patch(&A, id, 7000, data + 7000, 3000, NULL, NULL, NULL), 204);
    CHECK_EQ_INT(head_offset(&A, id), N);
    char blob[4400];
    snprintf(blob, sizeof blob, "%s/server.db.d/blobs/%.2s/%s", S.dir, hash, hash);
    size_t blen;
    uint8_t *stored = pd_test_read_file(blob, &blen);
    CHECK(stored && blen == N && !memcmp(stored, data, N));
    free(stored);

    /* the same photo again, from anyone: complete at once, nothing to send */
    char id2[33];
    REQUIRE_V(create(&B, "photo", hash, N, id2, &r) == 201);
    const char *pc = tresp_header(&r, "Pd-Complete");
    CHECK(pc && !strcmp(pc, "1"));
    off = tresp_header(&r, "Upload-Offset");
    CHECK(off && atol(off) == N);
    tresp_free(&r);
    CHECK_EQ_INT(head_offset(&B, id2), N);
}

/* creation-with-upload: a POST carrying the first bytes (with their checksum) creates the upload
 * at the offset those bytes reach; HEAD agrees; PATCH sends the rest and the photo is stored. */
static void test_creation_with_upload_takes_the_first_bytes(void)
{
    enum { N = 9000, FIRST = 4000 };
    static uint8_t data[N];
    char hash[65], ck[128], hl[64], md[256], k64[32], h64[128], ckh[160];
    photo_bytes(data, N, 7, hash);
    b64((const uint8_t *)"photo", 5, k64, sizeof k64);
    b64((const uint8_t *)hash, 64, h64, sizeof h64);
    snprintf(md, sizeof md, "Upload-Metadata: kind %s,hash %s", k64, h64);
    snprintf(hl, sizeof hl, "Upload-Length: %d", N);
    sha1_b64(data, FIRST, ck, sizeof ck);
    snprintf(ckh, sizeof ckh, "Upload-Checksum: %s", ck);
    const char *h[] = {
        "Tus-Resumable: 1.0.0", hl, md, "Content-Type: application/offset+octet-stream", ckh, NULL};
    tresp r;
    ts_request(&S, &A, "POST", "/v1/uploads", h, data, FIRST, &r);
    CHECK_EQ_INT(r.status, 201);
    const char *loc = tresp_header(&r, "Location");
    char id[33] = "";
    if (loc && strlen(loc) == 44)
        snprintf(id, sizeof id, "%s", loc + 12);
    const char *off = tresp_header(&r, "Upload-Offset");
    CHECK(off && atol(off) == FIRST);
    CHECK(tresp_header(&r, "Upload-Expires") != NULL);
    tresp_free(&r);
    REQUIRE_V(id[0]);
    CHECK_EQ_INT(head_offset(&A, id), FIRST);
    CHECK_EQ_INT(patch(&A, id, FIRST, data + FIRST, N - FIRST, NULL, NULL, NULL), 204);
    CHECK_EQ_INT(head_offset(&A, id), N);
    char blob[4400];
    snprintf(blob, sizeof blob, "%s/server.db.d/blobs/%.2s/%s", S.dir, hash, hash);
    size_t blen;
    uint8_t *stored = pd_test_read_file(blob, &blen);
    CHECK(stored && blen == N && !memcmp(stored, data, N));
    free(stored);
}

/* A bundle sent whole in one PATCH is held in memory (server/tus.c): a checksum that does not
 * match acknowledges nothing and writes no file; bytes that are not a bundle are refused (422)
 * and the upload fails (410) — nothing on disk either way. */
static void test_whole_bundle_in_one_patch_stays_off_the_disk(void)
{
    enum { N = 3000 };
    static uint8_t junk[N];
    for (size_t i = 0; i < N; i++)
        junk[i] = (uint8_t)(i * 7 + 1);
    char id[33], ck[128], file[4400];
    REQUIRE_V(create(&A, "bundle", NULL, N, id, NULL) == 201);
    snprintf(file, sizeof file, "%s/server.db.d/uploads/%s", S.dir, id);
    CHECK(!pd_test_file_exists(file)); /* creation writes no file */
    sha1_b64(junk, 10, ck, sizeof ck); /* of other bytes */
    CHECK_EQ_INT(patch(&A, id, 0, junk, N, ck, NULL, NULL), 460);
    CHECK_EQ_INT(head_offset(&A, id), 0);
    CHECK(!pd_test_file_exists(file));
    tresp r;
    CHECK_EQ_INT(patch(&A, id, 0, junk, N, NULL, NULL, &r), 422);
    CHECK(!strcmp(tresp_error(&r), "bad_bundle"));
    tresp_free(&r);
    CHECK_EQ_INT(head_offset(&A, id), -410);
    CHECK(!pd_test_file_exists(file));
}

static void test_other_versions_get_412(void)
{
    const char *old[] = {"Tus-Resumable: 0.2.2", "Upload-Length: 10", NULL};
    tresp r;
    ts_request(&S, &A, "POST", "/v1/uploads", old, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 412);
    const char *v = tresp_header(&r, "Tus-Version");
    CHECK(v && !strcmp(v, "1.0.0"));
    tresp_free(&r);
    const char *none[] = {"Upload-Length: 10", NULL};
    ts_request(&S, &A, "POST", "/v1/uploads", none, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 412);
    tresp_free(&r);
}

static void test_creation_refuses_bad_and_oversize_uploads(void)
{
    char id[33];
    CHECK_EQ_INT(create(&A, "bundle", NULL, (1 << 20) + 1, id, NULL), 413);
    CHECK_EQ_INT(create(&A, "video", NULL, 10, id, NULL), 400);
    CHECK_EQ_INT(create(&A, "photo", NULL, 10, id, NULL), 400); /* no hash */
    CHECK_EQ_INT(create(&A, "bundle", NULL, 0, id, NULL), 400);
    const char *defer[] = {"Tus-Resumable: 1.0.0", "Upload-Defer-Length: 1",
                           "Upload-Metadata: kind YnVuZGxl", NULL};
    tresp r;
    ts_request(&S, &A, "POST", "/v1/uploads", defer, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 400);
    tresp_free(&r);
    const char *nolen[] = {"Tus-Resumable: 1.0.0", "Upload-Metadata: kind YnVuZGxl", NULL};
    ts_request(&S, &A, "POST", "/v1/uploads", nolen, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 400);
    CHECK(!strcmp(tresp_error(&r), "bad_request"));
    tresp_free(&r);
    /* unauthenticated creation */
    ts_request(&S, NULL, "POST", "/v1/uploads", tus_hdr, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 401);
    tresp_free(&r);
}

static void test_termination_removes_the_upload(void)
{
    char id[33], path[80];
    REQUIRE_V(create(&A, "bundle", NULL, 5000, id, NULL) == 201);
    static uint8_t junk[2000];
    CHECK_EQ_INT(patch(&A, id, 0, junk, 2000, NULL, NULL, NULL), 204);
    char file[4400];
    snprintf(file, sizeof file, "%s/server.db.d/uploads/%s", S.dir, id);
    CHECK(pd_test_file_exists(file));
    snprintf(path, sizeof path, "/v1/uploads/%s", id);
    tresp r;
    ts_request(&S, &B, "DELETE", path, tus_hdr, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 404); /* not B's */
    tresp_free(&r);
    ts_request(&S, &A, "DELETE", path, tus_hdr, NULL, 0, &r);
    CHECK_EQ_INT(r.status, 204);
    tresp_free(&r);
    CHECK(!pd_test_file_exists(file));
    CHECK_EQ_INT(head_offset(&A, id), -410);
    CHECK_EQ_INT(patch(&A, id, 2000, junk, 10, NULL, NULL, NULL), 410);
}

static void test_photo_whose_bytes_do_not_match_its_hash_is_refused(void)
{
    enum { N = 4096 };
    static uint8_t data[N];
    char hash[65], id[33];
    photo_bytes(data, N, 7, hash);
    data[100] ^= 1; /* not what was announced */
    REQUIRE_V(create(&A, "photo", hash, N, id, NULL) == 201);
    tresp r;
    CHECK_EQ_INT(patch(&A, id, 0, data, N, NULL, NULL, &r), 422);
    CHECK(!strcmp(tresp_error(&r), "hash_mismatch"));
    tresp_free(&r);
    CHECK_EQ_INT(head_offset(&A, id), -410);
    char blob[4400];
    snprintf(blob, sizeof blob, "%s/server.db.d/blobs/%.2s/%s", S.dir, hash, hash);
    CHECK(!pd_test_file_exists(blob));
}

/* DELETE an upload; the status. */
static long terminate(const tdev *d, const char *id)
{
    char path[80];
    snprintf(path, sizeof path, "/v1/uploads/%s", id);
    tresp r;
    ts_request(&S, d, "DELETE", path, tus_hdr, NULL, 0, &r);
    long st = r.status;
    tresp_free(&r);
    return st;
}

/* A creation refused for the device's caps: 429 upload_quota, a message and a Retry-After. */
static void check_quota_refusal(const tdev *d, size_t len)
{
    char id[33];
    tresp r;
    CHECK_EQ_INT(create(d, "bundle", NULL, len, id, &r), 429);
    CHECK(!strcmp(tresp_error(&r), "upload_quota"));
    CHECK(r.body && strstr(r.body, "\"message\":\"this device"));
    const char *ra = tresp_header(&r, "Retry-After");
    CHECK(ra && atol(ra) >= 1 && atol(ra) <= 24 * 3600);
    CHECK(id[0] == '\0');
    tresp_free(&r);
}

static void test_a_device_has_a_cap_on_unfinished_uploads(void)
{
    /* PROTOCOL.md §5: 16 open uploads, and 4 × Tus-Max-Size (here 4 MiB) of declared bytes */
    tdev c, d;
    tdev_init(&c, "dev-quota-c");
    tdev_init(&d, "dev-quota-d");
    REQUIRE_V(ts_enroll(&S, &c, "E1") == 200);
    REQUIRE_V(ts_enroll(&S, &d, "E2") == 200);
    enum { N = 1000 };
    static uint8_t photo[N];
    char hash[65], ids[16][33], extra[33];
    photo_bytes(photo, N, 42, hash);
    REQUIRE_V(create(&c, "photo", hash, N, ids[0], NULL) == 201);
    for (int i = 1; i < 16; i++)
        REQUIRE_V(create(&c, "bundle", NULL, 1000, ids[i], NULL) == 201);
    check_quota_refusal(&c, 1000);
    /* the device's own uploads go on; another device is not touched */
    CHECK_EQ_INT(head_offset(&c, ids[5]), 0);
    CHECK_EQ_INT(create(&d, "bundle", NULL, 1000, extra, NULL), 201);
    CHECK_EQ_INT(terminate(&d, extra), 204);
    /* finishing one frees its room */
    CHECK_EQ_INT(patch(&c, ids[0], 0, photo, N, NULL, NULL, NULL), 204);
    CHECK_EQ_INT(create(&c, "bundle", NULL, 1000, extra, NULL), 201);
    check_quota_refusal(&c, 1000);
    /* a photo the server holds needs no room: complete at creation */
    char known[33];
    tresp r;
    CHECK_EQ_INT(create(&c, "photo", hash, N, known, &r), 201);
    CHECK(tresp_header(&r, "Pd-Complete") != NULL);
    tresp_free(&r);
    /* deleting one frees its room */
    CHECK_EQ_INT(terminate(&c, ids[1]), 204);
    CHECK_EQ_INT(create(&c, "bundle", NULL, 1000, ids[1], NULL), 201);
    for (int i = 1; i < 16; i++)
        CHECK_EQ_INT(terminate(&c, ids[i]), 204);
    CHECK_EQ_INT(terminate(&c, extra), 204);

    /* bytes: four uploads of Tus-Max-Size fill them, one more byte does not fit */
    for (int i = 0; i < 4; i++)
        REQUIRE_V(create(&c, "bundle", NULL, 1 << 20, ids[i], NULL) == 201);
    check_quota_refusal(&c, 1);
    CHECK_EQ_INT(create(&d, "bundle", NULL, 1 << 20, extra, NULL), 201);
    CHECK_EQ_INT(terminate(&d, extra), 204);
    CHECK_EQ_INT(terminate(&c, ids[3]), 204);
    CHECK_EQ_INT(create(&c, "bundle", NULL, 1 << 20, ids[3], NULL), 201);
    for (int i = 0; i < 4; i++)
        CHECK_EQ_INT(terminate(&c, ids[i]), 204);
}

/* Restart the in-process server with cfg. */
static bool restart(const pd_server_config *cfg)
{
    pd_server_close(S.srv);
    S.srv = NULL;
    pd_error err = {0};
    if (pd_server_open(&S.srv, S.url, S.data_dir, &err) != PD_OK ||
        pd_server_start(S.srv, cfg) != PD_OK)
        return false;
    S.port = pd_server_port(S.srv);
    return true;
}

static void test_uploads_expire(void)
{
    pd_server_config quick = {
        .listen = "127.0.0.1:0", .threads = 2, .max_upload_bytes = 1 << 20, .upload_ttl_ms = 300};
    REQUIRE_V(restart(&quick));
    char id[33];
    tresp r;
    REQUIRE_V(create(&A, "bundle", NULL, 5000, id, &r) == 201);
    const char *exp = tresp_header(&r, "Upload-Expires");
    CHECK(exp && strstr(exp, " GMT"));
    tresp_free(&r);
    static uint8_t junk[1000];
    CHECK_EQ_INT(patch(&A, id, 0, junk, 1000, NULL, NULL, NULL), 204);
    usleep(500 * 1000);
    CHECK_EQ_INT(head_offset(&A, id), -410);
    CHECK_EQ_INT(patch(&A, id, 1000, junk, 1000, NULL, NULL, NULL), 410);
    char file[4400];
    snprintf(file, sizeof file, "%s/server.db.d/uploads/%s", S.dir, id);
    CHECK(!pd_test_file_exists(file));
    /* expired uploads leave the device's cap (a TTL the 16 creations take well within) */
    pd_server_config second = {
        .listen = "127.0.0.1:0", .threads = 2, .max_upload_bytes = 1 << 20, .upload_ttl_ms = 1000};
    REQUIRE_V(restart(&second));
    tdev e;
    tdev_init(&e, "dev-quota-e");
    REQUIRE_V(ts_enroll(&S, &e, "E1") == 200);
    for (int i = 0; i < 16; i++)
        REQUIRE_V(create(&e, "bundle", NULL, 100, id, NULL) == 201);
    CHECK_EQ_INT(create(&e, "bundle", NULL, 100, id, NULL), 429);
    usleep(1100 * 1000);
    CHECK_EQ_INT(create(&e, "bundle", NULL, 100, id, NULL), 201);
    /* the caps are the server's config */
    pd_server_config tight = {.listen = "127.0.0.1:0",
                              .threads = 2,
                              .max_upload_bytes = 1 << 20,
                              .max_open_uploads = 2,
                              .max_open_bytes = 3000};
    REQUIRE_V(restart(&tight));
    tdev f;
    tdev_init(&f, "dev-quota-f");
    REQUIRE_V(ts_enroll(&S, &f, "E1") == 200);
    char a[33], b[33];
    CHECK_EQ_INT(create(&f, "bundle", NULL, 2000, a, NULL), 201);
    CHECK_EQ_INT(create(&f, "bundle", NULL, 1001, b, NULL), 429); /* 3001 bytes */
    CHECK_EQ_INT(create(&f, "bundle", NULL, 1000, b, NULL), 201);
    CHECK_EQ_INT(create(&f, "bundle", NULL, 1, id, NULL), 429); /* a third */
    pd_server_config normal = {.listen = "127.0.0.1:0", .threads = 2, .max_upload_bytes = 1 << 20};
    REQUIRE_V(restart(&normal));
}

static void test_patch_with_expect_100_continue(void)
{
    enum { N = 300000 };
    static uint8_t data[N];
    char hash[65], id[33], path[80];
    photo_bytes(data, N, 9, hash);
    REQUIRE_V(create(&A, "photo", hash, N, id, NULL) == 201);
    snprintf(path, sizeof path, "/v1/uploads/%s", id);
    const char *h[] = {"Tus-Resumable: 1.0.0", "Upload-Offset: 0",
                       "Content-Type: application/offset+octet-stream", NULL};
    topt o = {.expect = true};
    tresp r;
    ts_request_ex(&S, &A, "PATCH", path, h, data, N, &o, &r, NULL);
    CHECK_EQ_INT(r.status, 204);
    tresp_free(&r);
    CHECK_EQ_INT(head_offset(&A, id), N);
    /* refused at the headers (wrong offset) without reading the body */
    const char *bad[] = {"Tus-Resumable: 1.0.0", "Upload-Offset: 5",
                         "Content-Type: application/offset+octet-stream", NULL};
    ts_request_ex(&S, &A, "PATCH", path, bad, data, N, &o, &r, NULL);
    CHECK_EQ_INT(r.status, 409);
    tresp_free(&r);
}

/* ---- SIGKILL in the middle of a PATCH ------------------------------------------------------ */

/* Run the server of S's database in a child process; its port comes back through a pipe. */
static pid_t spawn_server(uint16_t *port)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        pd_server *srv = NULL;
        pd_error err = {0};
        pd_server_config cfg = {.listen = "127.0.0.1:0", .threads = 2, .max_upload_bytes = 1 << 20};
        if (pd_server_open(&srv, S.url, S.data_dir, &err) != PD_OK ||
            pd_server_start(srv, &cfg) != PD_OK)
            _exit(3);
        uint16_t p = pd_server_port(srv);
        if (write(fds[1], &p, sizeof p) != sizeof p)
            _exit(4);
        for (;;)
            pause();
    }
    close(fds[1]);
    ssize_t n = read(fds[0], port, sizeof *port);
    close(fds[0]);
    return n == sizeof *port ? pid : -1;
}

static void test_sigkill_mid_patch_resumes_at_the_acknowledged_byte(void)
{
    enum { N = 100000, ACKED = 40000, SENT = 30000 };
    static uint8_t data[N];
    char hash[65], id[33];
    photo_bytes(data, N, 3, hash);
    REQUIRE_V(create(&A, "photo", hash, N, id, NULL) == 201);
    REQUIRE_V(patch(&A, id, 0, data, ACKED, NULL, NULL, NULL) == 204);

    /* hand the database to a server in a child process */
    pd_server_close(S.srv);
    S.srv = NULL;
    uint16_t port = 0;
    pid_t child = spawn_server(&port);
    REQUIRE_V(child > 0);

    /* a PATCH of the rest whose body stops part way; the server is killed while it waits */
    char target[80], auth[512], head[2048];
    snprintf(target, sizeof target, "/v1/uploads/%s", id);
    ts_auth_header(&A, "PATCH", target, data + ACKED, N - ACKED, auth, sizeof auth);
    int hn = snprintf(head, sizeof head,
                      "PATCH %s HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                      "Upload-Offset: %d\r\nContent-Type: application/offset+octet-stream\r\n"
                      "Content-Length: %d\r\n%s\r\n\r\n",
                      target, ACKED, N - ACKED, auth);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    REQUIRE_V(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(write(fd, head, (size_t)hn) == hn);
    CHECK(write(fd, data + ACKED, SENT) == SENT);
    char file[4400];
    snprintf(file, sizeof file, "%s/server.db.d/uploads/%s", S.dir, id);
    /* wait until the server has written what it received (never acknowledged) */
    struct stat sb = {0};
    for (int i = 0; i < 200 && (stat(file, &sb) != 0 || sb.st_size < ACKED + SENT); i++)
        usleep(10 * 1000);
    CHECK_EQ_INT(sb.st_size, ACKED + SENT);
    kill(child, SIGKILL);
    int wst;
    waitpid(child, &wst, 0);
    CHECK(WIFSIGNALED(wst) && WTERMSIG(wst) == SIGKILL);
    close(fd);

    /* back up: the offset is exactly the acknowledged one */
    pd_error err = {0};
    REQUIRE_V(pd_server_open(&S.srv, S.url, S.data_dir, &err) == PD_OK);
    pd_server_config cfg = {.listen = "127.0.0.1:0", .threads = 2, .max_upload_bytes = 1 << 20};
    REQUIRE_V(pd_server_start(S.srv, &cfg) == PD_OK);
    S.port = pd_server_port(S.srv);
    CHECK_EQ_INT(head_offset(&A, id), ACKED);
    /* resuming from there gives exactly the photo (its hash is checked on completion) */
    CHECK_EQ_INT(patch(&A, id, ACKED, data + ACKED, N - ACKED, NULL, NULL, NULL), 204);
    CHECK_EQ_INT(head_offset(&A, id), N);
    char blob[4400];
    snprintf(blob, sizeof blob, "%s/server.db.d/blobs/%.2s/%s", S.dir, hash, hash);
    CHECK(pd_test_file_exists(blob));
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    REQUIRE(sodium_init() >= 0);
    signal(SIGPIPE, SIG_IGN);
    REQUIRE(ts_start(&S, "server-tus", false));
    tdev_init(&A, "dev-a");
    tdev_init(&B, "dev-b");
    REQUIRE(ts_enroll(&S, &A, "E1") == 200);
    REQUIRE(ts_enroll(&S, &B, "E2") == 200);
    RUN(test_sha1_matches_fips_vectors);
    RUN(test_options_advertise_the_extensions);
    RUN(test_create_patch_in_pieces_and_resume_by_head);
    RUN(test_whole_bundle_in_one_patch_stays_off_the_disk);
    RUN(test_creation_with_upload_takes_the_first_bytes);
    RUN(test_other_versions_get_412);
    RUN(test_creation_refuses_bad_and_oversize_uploads);
    RUN(test_termination_removes_the_upload);
    RUN(test_photo_whose_bytes_do_not_match_its_hash_is_refused);
    RUN(test_a_device_has_a_cap_on_unfinished_uploads);
    RUN(test_uploads_expire);
    RUN(test_patch_with_expect_100_continue);
    RUN(test_sigkill_mid_patch_resumes_at_the_acknowledged_byte);
    ts_stop(&S);
    curl_global_cleanup();
    return pd_test_finish();
}

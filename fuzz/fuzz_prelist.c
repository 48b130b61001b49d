/*
 * fuzz_prelist.c — libFuzzer target over the prelist package decoder (prelist/package.c and
 * record.c): header checks, signature, hash, bounded inflation, line splitting, JSON records,
 * validation and order.
 *
 * A fixed test issuer key (the seed below; fuzz/corpus/fuzz_prelist/ is signed with it) lets the
 * fuzzer get past the signature. The first input byte picks a mode:
 *   0  raw: the rest is a whole package, read as it is (reaches the parser only for the seeds
 *      and what stays signed: mostly the header checks);
 *   1  re-sign: the rest is a package whose issuer field, compressed size and payload hash are
 *      fixed up and whose header is signed again, so every mutation of the other header fields
 *      and of the compressed bytes reaches inflation and parsing;
 *   2  payload: the rest is 3 count bytes (areas, households, members) and then the plain NDJSON
 *      payload, which is deflated, wrapped and signed for area 32.73.01: mutations reach the
 *      record parser directly.
 * Every record handed to the callbacks is read whole (ASan checks the strings end).
 */
#include "prelist_internal.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static uint8_t pk[PD_PUBKEY_BYTES], sk[PD_SECKEY_BYTES];

/* the same key as tests/prelist_fixture.h's pd_fixture_issuer(1) */
static void init_key(void)
{
    uint8_t seed[32];
    memset(seed, 0x5a, sizeof seed);
    seed[0] = 1;
    seed[1] = 0;
    if (sodium_init() < 0)
        abort();
    crypto_sign_seed_keypair(pk, sk, seed);
}

static volatile size_t sink;

static void touch(const char *s)
{
    if (s)
        sink += strlen(s);
}

static int on_shape(void *ud, const pd_prelist_shape *s, pd_error *err)
{
    (void)ud;
    (void)err;
    touch(s->code), touch(s->name), touch(s->shape);
    return PD_OK;
}

static int on_household(void *ud, const pd_prelist_household *h, pd_error *err)
{
    (void)ud;
    (void)err;
    touch(h->id), touch(h->prov), touch(h->kab), touch(h->kec), touch(h->desa);
    touch(h->sls), touch(h->address), touch(h->head_name), touch(h->kk);
    sink += (size_t)h->member_count;
    return PD_OK;
}

static int on_member(void *ud, const pd_prelist_member *m, pd_error *err)
{
    (void)ud;
    (void)err;
    touch(m->id), touch(m->household_id), touch(m->name), touch(m->nik), touch(m->kk);
    touch(m->birth_place), touch(m->birth_date);
    return PD_OK;
}

static const pd_prelist_handler handler = {on_shape, on_household, on_member, NULL};

static void decode(const uint8_t *p, size_t n)
{
    pd_error err = {0};
    pd_prelist_info info;
    int rc = pd_prelist_read_mem(p, n, pk, &handler, &info, &err);
    if (rc != PD_OK && err.msg[0] == '\0')
        abort(); /* every failure must say why */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        init_key();
        ready = 1;
    }
    if (size < 1)
        return 0;
    int mode = data[0] % 3;
    data++, size--;
    if (mode == 0) {
        decode(data, size);
        return 0;
    }
    if (mode == 1) {
        if (size < PD_PRELIST_PREFIX_BYTES)
            return 0;
        uint8_t *p = malloc(size);
        if (!p)
            return 0;
        memcpy(p, data, size);
        memcpy(p + PD_PL_OFF_ISSUER, pk, PD_PUBKEY_BYTES);
        pd_le64(p + PD_PL_OFF_ZSIZE, size - PD_PRELIST_PREFIX_BYTES);
        crypto_generichash(p + PD_PL_OFF_HASH, PD_HASH_BYTES, p + PD_PRELIST_PREFIX_BYTES,
                           size - PD_PRELIST_PREFIX_BYTES, NULL, 0);
        pd_prelist_resign(p, sk);
        decode(p, size);
        free(p);
        return 0;
    }
    if (size < 3 || size > (1u << 20))
        return 0;
    pd_prelist_info hdr;
    memset(&hdr, 0, sizeof hdr);
    memcpy(hdr.area, "32.73.01", 9);
    hdr.issued_at = PD_PRELIST_DEFAULT_ISSUED_AT;
    hdr.shapes = data[0];
    hdr.households = data[1];
    hdr.members = data[2];
    uint8_t *pkg = NULL;
    size_t len = 0;
    if (pd_prelist_pack_mem(data + 3, size - 3, &hdr, sk, &pkg, &len, NULL) == PD_OK)
        decode(pkg, len);
    free(pkg);
    return 0;
}

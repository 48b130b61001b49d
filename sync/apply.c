/*
 * apply.c — applying a chain of verified batches onto tables: the chain is checked first, then
 * the ops of every batch that is not voided go through pd_oplog_apply (core/oplog.c: the same
 * function a device's own changes and a replay use). A voided batch is skipped as a whole: that
 * is the one place the rule "a returned batch's ops are never applied" is enforced for everyone
 * who applies batches (tests, replay, the server).
 */
#include "batch_internal.h"

#include <stdlib.h>

int pd_chain_apply(struct sqlite3 *db, const pd_chain_item *items, size_t n,
                   const pd_chain_link *anchor, pd_photo_fetch_fn fetch, void *fetch_ctx,
                   size_t *applied, pd_error *err)
{
    size_t count = 0;
    if (applied)
        *applied = 0;
    if (!db || (n && !items))
        return pd_error_set(err, PD_ERR_INVALID, "apply: missing argument");
    pd_chain_link *links = calloc(n ? n : 1, sizeof *links);
    if (!links)
        return pd_error_set(err, PD_ERR_NOMEM, "apply: out of memory");
    int rc = PD_OK;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].batch) {
            rc = pd_error_set(err, PD_ERR_INVALID, "apply: item %zu has no batch", i);
            goto out;
        }
        pd_chain_link_set(&links[i], pd_batch_header_get(items[i].batch),
                          pd_batch_hash(items[i].batch));
    }
    if ((rc = pd_chain_check(links, n, anchor, NULL, err)) != PD_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (items[i].voided)
            continue;
        size_t nops;
        const pd_op *ops = pd_batch_ops(items[i].batch, &nops);
        for (size_t k = 0; k < nops; k++) {
            pd_error e = {0};
            rc = pd_oplog_apply(db, &ops[k], fetch, fetch_ctx, &e);
            if (rc) {
                pd_error_set(err, rc, "batch %llu, op %zu (seq %lld): %s",
                             (unsigned long long)links[i].seq, k, (long long)ops[k].seq, e.msg);
                goto out;
            }
            count++;
        }
    }
out:
    free(links);
    if (applied)
        *applied = count;
    return rc;
}

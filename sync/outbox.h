/*
 * outbox.h — inside the sync layer: what review.c needs from the enumerator's side (outbox.c).
 * Not installed.
 */
#ifndef PD_SYNC_OUTBOX_H
#define PD_SYNC_OUTBOX_H

#include "keys.h"

/* Copy the ops of batch `batch_seq` (this device's, now voided) as new pending ops: same kind,
 * entity, target, field, values, base_rev and clock; new seqs after every existing op (the op log
 * is append-only, the originals keep their batch). The next seal carries PD_BATCH_FLAG_AMENDS.
 * Joins the caller's transaction. The number of ops copied is added to *copied (may be NULL). */
int pd_outbox_requeue(pd_store *store, uint64_t batch_seq, size_t *copied);

#endif

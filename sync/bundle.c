/*
 * bundle.c — the batch file container ("PDF1"): batches and review records one after another, for
 * an SD card, Bluetooth, or a single upload of several batches. The container only frames; each
 * item is verified by its own parser (pd_batch_verify, pd_review_parse). Format at the top of
 * pd_sync.h.
 */
#include "batch_internal.h"

#include <stdlib.h>
#include <string.h>

#define BUNDLE_HEAD 5 /* magic + version */
#define ITEM_HEAD 5   /* type + u32 length */

struct pd_bundle {
    pd_sbuf buf;
    size_t items;
};

int pd_bundle_new(pd_bundle **out)
{
    pd_bundle *b = calloc(1, sizeof *b);
    if (!b)
        return PD_ERR_NOMEM;
    b->buf.max = PD_BUNDLE_MAX_BYTES;
    pd_sbuf_put(&b->buf, PD_BUNDLE_MAGIC, 4);
    pd_sbuf_byte(&b->buf, 1);
    if (b->buf.failed) {
        pd_bundle_free(b);
        return PD_ERR_NOMEM;
    }
    *out = b;
    return PD_OK;
}

int pd_bundle_add(pd_bundle *b, pd_bundle_type type, const uint8_t *bytes, size_t len)
{
    if (!b || (type != PD_BUNDLE_BATCH && type != PD_BUNDLE_REVIEW) || (len && !bytes))
        return PD_ERR_INVALID;
    if (b->items >= PD_BUNDLE_MAX_ITEMS || len > UINT32_MAX ||
        len > PD_BUNDLE_MAX_BYTES - b->buf.len ||
        PD_BUNDLE_MAX_BYTES - b->buf.len - len < ITEM_HEAD)
        return PD_ERR_TOOBIG;
    size_t mark = b->buf.len;
    pd_sbuf_byte(&b->buf, (uint8_t)type);
    pd_sbuf_u32(&b->buf, (uint32_t)len);
    pd_sbuf_put(&b->buf, bytes, len);
    if (b->buf.failed) {
        int rc = b->buf.failed;
        b->buf.failed = PD_OK;
        b->buf.len = mark;
        return rc;
    }
    b->items++;
    return PD_OK;
}

const uint8_t *pd_bundle_bytes(const pd_bundle *b, size_t *len)
{
    *len = b->buf.len;
    return b->buf.p;
}

void pd_bundle_free(pd_bundle *b)
{
    if (!b)
        return;
    pd_sbuf_free(&b->buf);
    free(b);
}

int pd_bundle_parse(pd_bundle_item **items, size_t *count, const uint8_t *buf, size_t len,
                    pd_error *err)
{
    *items = NULL;
    *count = 0;
    if (!buf || len < BUNDLE_HEAD || memcmp(buf, PD_BUNDLE_MAGIC, 4) != 0)
        return pd_error_set(err, PD_ERR_CORRUPT, "not a pendata batch file (magic is not PDF1)");
    if (buf[4] != 1)
        return pd_error_set(err, PD_ERR_VERSION,
                            "batch file version %u; this pendata reads version 1", buf[4]);
    if (len > PD_BUNDLE_MAX_BYTES)
        return pd_error_set(err, PD_ERR_TOOBIG, "batch file of %zu bytes is over the %u limit", len,
                            PD_BUNDLE_MAX_BYTES);
    /* first pass: count and check the framing, so the array is sized once */
    size_t n = 0;
    for (size_t pos = BUNDLE_HEAD; pos < len; n++) {
        if (len - pos < ITEM_HEAD)
            return pd_error_set(err, PD_ERR_CORRUPT, "batch file: item %zu is truncated", n);
        uint8_t type = buf[pos];
        uint32_t ilen = pd_sync_get_u32(buf + pos + 1);
        if (type != PD_BUNDLE_BATCH && type != PD_BUNDLE_REVIEW)
            return pd_error_set(err, PD_ERR_CORRUPT, "batch file: item %zu has unknown type %u", n,
                                type);
        if (ilen > len - pos - ITEM_HEAD)
            return pd_error_set(err, PD_ERR_CORRUPT,
                                "batch file: item %zu runs past the end of the file", n);
        if (n >= PD_BUNDLE_MAX_ITEMS)
            return pd_error_set(err, PD_ERR_TOOBIG, "batch file: more than %u items",
                                PD_BUNDLE_MAX_ITEMS);
        pos += ITEM_HEAD + ilen;
    }
    pd_bundle_item *it = calloc(n ? n : 1, sizeof *it);
    if (!it)
        return pd_error_set(err, PD_ERR_NOMEM, "batch file: out of memory");
    size_t pos = BUNDLE_HEAD;
    for (size_t i = 0; i < n; i++) {
        it[i].type = (pd_bundle_type)buf[pos];
        it[i].len = pd_sync_get_u32(buf + pos + 1);
        it[i].bytes = buf + pos + ITEM_HEAD;
        pos += ITEM_HEAD + it[i].len;
    }
    *items = it;
    *count = n;
    return PD_OK;
}

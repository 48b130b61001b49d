/*
 * record.c — review records: a supervisor's approval (Ed25519 over "approve" || batch hash) or
 * return (over "return" || batch hash || reason), their binary form (top of pd_sync.h), and the
 * check of who may review whom. Pure: no store, so the server links it without the device side.
 *
 * A record is only ever trusted through pd_review_check: a valid signature is not enough, the
 * signer must be the supervisor the keyring names for the batch's author (PD_ERR_DENIED).
 */
#include "batch_internal.h"

#include <sodium.h>
#include <string.h>

#define APPROVE_TAG "approve"
#define RETURN_TAG "return"

/* ---- Records ------------------------------------------------------------------------------ */

static int check_reason(const char *reason, size_t len, int code, pd_error *err)
{
    if (len == 0)
        return pd_error_set(err, code, "a return needs a reason");
    if (len > PD_REVIEW_REASON_MAX)
        return pd_error_set(err, code, "the reason is %zu bytes, at most %d are allowed", len,
                            PD_REVIEW_REASON_MAX);
    if (!pd_sync_utf8_valid((const uint8_t *)reason, len))
        return pd_error_set(err, code, "the reason is not valid UTF-8");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)reason[i];
        if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
            return pd_error_set(err, code, "the reason holds a control character at byte %zu", i);
    }
    return PD_OK;
}

/* The bytes a record's signature covers. */
static size_t signed_message(uint8_t *msg, const pd_review *r)
{
    size_t n = 0;
    const char *tag = r->kind == PD_REVIEW_APPROVE ? APPROVE_TAG : RETURN_TAG;
    memcpy(msg, tag, strlen(tag));
    n += strlen(tag);
    memcpy(msg + n, r->batch_hash, PD_HASH_BYTES);
    n += PD_HASH_BYTES;
    if (r->kind == PD_REVIEW_RETURN) {
        memcpy(msg + n, r->reason, r->reason_len);
        n += r->reason_len;
    }
    return n;
}

#define MSG_MAX (sizeof APPROVE_TAG + PD_HASH_BYTES + PD_REVIEW_REASON_MAX)

int pd_review_make(pd_review *out, pd_review_kind kind, const uint8_t batch_hash[PD_HASH_BYTES],
                   const char *reason, const uint8_t supervisor_sk[PD_SECKEY_BYTES], pd_error *err)
{
    if (!out || !batch_hash || !supervisor_sk)
        return pd_error_set(err, PD_ERR_INVALID, "review: missing argument");
    memset(out, 0, sizeof *out);
    if (kind == PD_REVIEW_APPROVE) {
        if (reason && *reason)
            return pd_error_set(err, PD_ERR_INVALID, "an approval carries no reason");
    } else if (kind == PD_REVIEW_RETURN) {
        size_t len = reason ? strlen(reason) : 0;
        int rc = check_reason(reason, len, PD_ERR_INVALID, err);
        if (rc)
            return rc;
        memcpy(out->reason, reason, len);
        out->reason_len = len;
    } else {
        return pd_error_set(err, PD_ERR_INVALID, "review: unknown kind %d", (int)kind);
    }
    out->kind = kind;
    memcpy(out->batch_hash, batch_hash, PD_HASH_BYTES);
    crypto_sign_ed25519_sk_to_pk(out->supervisor_pk, supervisor_sk);
    uint8_t msg[MSG_MAX];
    size_t n = signed_message(msg, out);
    crypto_sign_detached(out->sig, NULL, msg, n, supervisor_sk);
    return PD_OK;
}

int pd_review_encode(const pd_review *r, uint8_t *buf, size_t cap, size_t *len)
{
    if (!r || !buf || r->reason_len > PD_REVIEW_REASON_MAX)
        return PD_ERR_INVALID;
    size_t n = PD_REVIEW_FIXED_BYTES + r->reason_len;
    if (cap < n)
        return PD_ERR_TOOBIG;
    memcpy(buf, PD_REVIEW_MAGIC, 4);
    buf[4] = (uint8_t)r->kind;
    buf[5] = 0;
    pd_sync_put_u16(buf + 6, (uint16_t)r->reason_len);
    memcpy(buf + 8, r->batch_hash, PD_HASH_BYTES);
    memcpy(buf + 40, r->supervisor_pk, PD_PUBKEY_BYTES);
    memcpy(buf + 72, r->sig, PD_SIG_BYTES);
    memcpy(buf + PD_REVIEW_FIXED_BYTES, r->reason, r->reason_len);
    if (len)
        *len = n;
    return PD_OK;
}

static int verify_sig(const pd_review *r, pd_error *err)
{
    uint8_t msg[MSG_MAX];
    size_t n = signed_message(msg, r);
    if (crypto_sign_verify_detached(r->sig, msg, n, r->supervisor_pk) != 0)
        return pd_error_set(err, PD_ERR_SIGNATURE, "the review record's signature does not verify");
    return PD_OK;
}

int pd_review_parse(pd_review *out, const uint8_t *buf, size_t len, pd_error *err)
{
    if (!out || !buf)
        return pd_error_set(err, PD_ERR_INVALID, "review: missing argument");
    memset(out, 0, sizeof *out);
    if (len < PD_REVIEW_FIXED_BYTES)
        return pd_error_set(err, PD_ERR_CORRUPT,
                            "review record is truncated: %zu bytes, at least %d", len,
                            PD_REVIEW_FIXED_BYTES);
    if (memcmp(buf, PD_REVIEW_MAGIC, 4) != 0)
        return pd_error_set(err, PD_ERR_CORRUPT, "not a review record (magic is not PDR1)");
    uint8_t kind = buf[4];
    size_t rlen = pd_sync_get_u16(buf + 6);
    if ((kind != PD_REVIEW_APPROVE && kind != PD_REVIEW_RETURN) || buf[5] != 0)
        return pd_error_set(err, PD_ERR_CORRUPT, "review record of unknown kind %u", kind);
    if (rlen > PD_REVIEW_REASON_MAX || len != PD_REVIEW_FIXED_BYTES + rlen)
        return pd_error_set(err, PD_ERR_CORRUPT,
                            "review record is %zu bytes but says its reason has %zu", len, rlen);
    if (kind == PD_REVIEW_APPROVE && rlen)
        return pd_error_set(err, PD_ERR_CORRUPT, "an approval record carries a reason");
    out->kind = (pd_review_kind)kind;
    memcpy(out->batch_hash, buf + 8, PD_HASH_BYTES);
    memcpy(out->supervisor_pk, buf + 40, PD_PUBKEY_BYTES);
    memcpy(out->sig, buf + 72, PD_SIG_BYTES);
    memcpy(out->reason, buf + PD_REVIEW_FIXED_BYTES, rlen);
    out->reason[rlen] = '\0';
    out->reason_len = rlen;
    int rc;
    if (kind == PD_REVIEW_RETURN && (rc = check_reason(out->reason, rlen, PD_ERR_CORRUPT, err)))
        return rc;
    return verify_sig(out, err);
}

/* The review is about this batch and by this supervisor (its signature checked elsewhere). */
static int check_binding(const pd_review *r, const uint8_t batch_hash[PD_HASH_BYTES],
                         const uint8_t supervisor_pk[PD_PUBKEY_BYTES], pd_error *err)
{
    if (sodium_memcmp(r->batch_hash, batch_hash, PD_HASH_BYTES) != 0)
        return pd_error_set(err, PD_ERR_INVALID, "the review record is about another batch");
    if (sodium_memcmp(r->supervisor_pk, supervisor_pk, PD_PUBKEY_BYTES) != 0) {
        char by[17], want[17];
        pd_sync_hex(by, r->supervisor_pk, 8);
        pd_sync_hex(want, supervisor_pk, 8);
        return pd_error_set(err, PD_ERR_DENIED,
                            "%s by key %s..., which is not the author's supervisor (%s...)",
                            r->kind == PD_REVIEW_APPROVE ? "approved" : "returned", by, want);
    }
    return PD_OK;
}

int pd_review_check(const pd_review *r, const uint8_t batch_hash[PD_HASH_BYTES],
                    const uint8_t supervisor_pk[PD_PUBKEY_BYTES], pd_error *err)
{
    if (!r || !batch_hash || !supervisor_pk)
        return pd_error_set(err, PD_ERR_INVALID, "review: missing argument");
    if (r->kind != PD_REVIEW_APPROVE && r->kind != PD_REVIEW_RETURN)
        return pd_error_set(err, PD_ERR_INVALID, "review record of unknown kind");
    if (r->reason_len > PD_REVIEW_REASON_MAX)
        return pd_error_set(err, PD_ERR_INVALID, "review reason too long");
    int rc = verify_sig(r, err);
    if (rc)
        return rc;
    return check_binding(r, batch_hash, supervisor_pk, err);
}

int pd_batch_verify_reviewed(pd_batch **out, bool *voided, const uint8_t *batch, size_t batch_len,
                             const uint8_t author_pk[PD_PUBKEY_BYTES], const uint8_t *review,
                             size_t review_len, const uint8_t supervisor_pk[PD_PUBKEY_BYTES],
                             pd_error *err)
{
    if (out)
        *out = NULL;
    pd_batch *b = NULL;
    int rc = pd_batch_verify(&b, batch, batch_len, author_pk, err);
    if (rc)
        return rc;
    pd_review r;
    if (!review) {
        rc = pd_error_set(err, PD_ERR_DENIED,
                          "batch %llu has not been reviewed: only an approved or voided batch "
                          "may be uploaded",
                          (unsigned long long)pd_batch_header_get(b)->seq);
        goto out;
    }
    /* pd_review_parse has verified the signature: only the binding is left to check */
    if ((rc = pd_review_parse(&r, review, review_len, err)) != PD_OK ||
        (rc = check_binding(&r, pd_batch_hash(b), supervisor_pk, err)) != PD_OK)
        goto out;
    if (voided)
        *voided = r.kind == PD_REVIEW_RETURN;
out:
    if (rc == PD_OK && out)
        *out = b;
    else
        pd_batch_free(b);
    return rc;
}

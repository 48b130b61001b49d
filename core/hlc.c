/*
 * hlc.c — the hybrid logical clock stamped on every op: (unix ms << 16) | counter.
 *
 * The clock follows the wall clock when it moves forward and never goes back when the wall clock
 * does (a phone whose time was wrong, then corrected by the network): the millisecond part stays
 * at the highest value seen and the 16-bit counter counts up; a full counter carries into the
 * milliseconds. So values are strictly increasing on one device, and close to real time. The last
 * value is kept in settings('hlc') by the op log (oplog.c), in the same transaction as the ops it
 * stamped, so it survives restarts.
 */
#include "internal.h"

#define HLC_COUNTER_BITS 16
#define HLC_COUNTER_MASK ((INT64_C(1) << HLC_COUNTER_BITS) - 1)

int64_t pd_hlc_next(int64_t last, int64_t now_ms)
{
    if (last < 0)
        last = 0;
    if (now_ms < 0)
        now_ms = 0;
    int64_t last_ms = last >> HLC_COUNTER_BITS;
    if (now_ms > last_ms)
        return now_ms << HLC_COUNTER_BITS;
    /* The wall clock did not move forward (same millisecond, or it went back): count. Adding 1
     * to the whole value carries a full counter into the milliseconds. */
    return last + 1;
}

int64_t pd_hlc_merge(int64_t last, int64_t remote, int64_t now_ms)
{
    return pd_hlc_next(remote > last ? remote : last, now_ms);
}

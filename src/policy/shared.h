/* Limits and budgets shared by every gateway instance, in Redis.
 *
 * Each instance admits a request in memory first (src/policy/policy.h: the cheap refusals, and
 * what this instance alone knows). When Redis is configured, the request is then admitted by
 * one Lua script that checks and counts, atomically for all of the request's levels (key, team,
 * user, end user, the key's model): the RPM window of the current minute (Redis' clock), the
 * TPM window, the requests in flight, and the budget: spend plus every live connection's
 * reservations against max_budget, reserving the worst case or the most the budget can still
 * pay (the output limit is then lowered). When the request ends, a second script turns the
 * reservation into the real cost, counts its tokens and frees its in-flight slot.
 *
 * Spend in Redis is seeded from an instance's own view (the database's totals plus what it
 * settled since) when absent or when a budget period begins; then every instance adds to it.
 * In-flight counts and reservations are held per connection (src/store/redis.h), so what a
 * crashed instance held is dropped when its heartbeat expires.
 *
 * Redis down, slow (past redis_timeout_ms) or not configured: the request goes on with the
 * in-memory admission alone; limits are then per instance until Redis is back.
 *
 * One struct sb_shared per worker loop; not thread-safe. */
#ifndef SB_POLICY_SHARED_H
#define SB_POLICY_SHARED_H

#include "policy/policy.h"
#include "store/redis.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct sb_shared;
struct sb_shared_call;

/* What a request holds in Redis until it ends. */
struct sb_shared_ticket {
    struct sb_shared_level lv[SB_SHARED_LEVELS];
    size_t n;
    char conn[33];    /* the connection the in-flight counts and the reservation belong to */
    int64_t reserved; /* nano, at every level with a budget */
    bool active;      /* held: sb_shared_finish it exactly once */
};

enum sb_shared_outcome {
    SB_SHARED_ADMITTED, /* counted and reserved in Redis (the admission may be lowered) */
    SB_SHARED_REFUSED,  /* the admission now holds the refusal (status, type, code, message) */
    SB_SHARED_LOCAL,    /* Redis did not answer in time: the in-memory admission stands */
};

typedef void (*sb_shared_cb)(void *ud, enum sb_shared_outcome outcome);

struct sb_shared *sb_shared_new(uv_loop_t *loop, const struct sb_redis_url *url, int timeout_ms);
/* Sends the settlements queued in this loop pass, then closes the connection (see
 * sb_redis_close): admissions still waiting end with SB_SHARED_LOCAL (or with Redis' answer,
 * if it comes before the connection closes). The struct is freed once its handle has closed
 * and every call has had its answer (the loop must keep running); nothing may be called on it
 * after this. */
void sb_shared_close(struct sb_shared *s);
bool sb_shared_ready(const struct sb_shared *s);

/* Starts the shared admission of a request the policy admitted (`a`, with its handle). Returns
 * false when there is nothing to wait for (no level with a limit or budget, or Redis not
 * connected): the in-memory admission stands and cb is not called. True: cb(ud, outcome)
 * comes later from the loop, having updated `a` (lowered output limit, x-ratelimit values
 * from the shared counts, or the refusal) and `t`; *call may be passed to sb_shared_cancel
 * until then. `a` and `t` must stay valid until cb or sb_shared_cancel. The admissions of one
 * pass of the loop go to Redis together (one script call per 32, from the prepare handle that
 * sends the settlements too), each checked and counted in turn as if alone; each has the
 * deadline of that call. */
bool sb_shared_admit(struct sb_shared *s, struct sb_policy *p, struct sb_admission *a,
                     struct sb_shared_ticket *t, sb_shared_cb cb, void *ud,
                     struct sb_shared_call **call);
/* The request is gone before its answer: cb will not be called; what Redis admitted for it
 * is released when the answer comes. */
void sb_shared_cancel(struct sb_shared_call *call);

/* The request ended: cost (nano, 0 when released without usage) goes to the budgets' spend,
 * tokens to the TPM windows, the reservation and the in-flight slot are freed. No-op unless
 * t->active; clears it. What the ticket holds is copied (it may be freed on return) and
 * queued: the settlements of one pass of the loop go to Redis together, in one script call per
 * 64, from a prepare handle (before the loop next waits for I/O). Without a connection, or when
 * the call fails, they are dropped: the holdings expire with the connection's heartbeat. */
void sb_shared_finish(struct sb_shared *s, struct sb_shared_ticket *t, int64_t cost_nano,
                      int64_t tokens);

/* What one struct sb_shared sent and how it went (tests; a NOSCRIPT resend is not counted
 * again). */
struct sb_shared_stats {
    uint64_t admit_calls;      /* admission script calls, each carrying 1..32 admissions */
    uint64_t admissions_sent;  /* the admissions in them */
    uint64_t settle_calls;     /* settlement script calls, each carrying 1..64 settlements */
    uint64_t settlements_sent; /* the settlements in them */
    uint64_t settled;          /* settlements Redis answered as applied */
    uint64_t dropped;          /* settlements not sent, or whose call failed or timed out */
};
/* Zeros for NULL. */
void sb_shared_get_stats(const struct sb_shared *s, struct sb_shared_stats *out);

/* ---- the script's answer (exposed for tests and fuzzing) ---- */

struct sb_shared_verdict {
    int status;    /* 0 admitted, 1 RPM, 2 TPM, 3 parallel requests, 4 budget */
    int level;     /* refused: the level (0-based) */
    int64_t value; /* refused: the count, or the spend (nano) of the budget */
    int64_t reserve, reset_ms;
    int64_t rpm[SB_SHARED_LEVELS], tpm[SB_SHARED_LEVELS]; /* admitted: counts, -1 untracked */
};

/* Reads one verdict of the admission script's reply, for n levels. 0, or -1 when it is not
 * one. */
int sb_shared_parse_verdict(const redisReply *reply, size_t n, struct sb_shared_verdict *v);
/* Reads the reply to a call of `count` admissions (n[i] levels each): 0 when it is an array of
 * exactly `count` elements, each then read into v[i] with rc[i] its sb_shared_parse_verdict
 * result; -1 otherwise (v and rc untouched). */
int sb_shared_parse_verdicts(const redisReply *reply, size_t count, const size_t *n,
                             struct sb_shared_verdict *v, int *rc);

/* Applies a verdict to the admission and the ticket; returns the outcome. */
enum sb_shared_outcome sb_shared_apply(const struct sb_shared_verdict *v, struct sb_admission *a,
                                       struct sb_shared_ticket *t);

#endif

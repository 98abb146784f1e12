/* Deployment health and choice: which deployment of a model group serves the next attempt,
 * and which deployments are cooling down after failures.
 *
 * Health is shared by every worker (relaxed atomics, one slot per deployment), so a
 * deployment that fails is taken out of rotation for the whole process, not one worker.
 * Counting is approximate under races by design: it decides rotation, not billing.
 *
 * Cooldown (LiteLLM's allowed_fails / cooldown_time): `allowed_fails` failures within a
 * minute take a deployment out of rotation for `cooldown_time`; an authentication or
 * not-found answer (the deployment itself is misconfigured) does at once. When the cooldown
 * ends the deployment is half-open: its next failure cools it down again at once, its next
 * success clears it. Any thread may call any function. */
#ifndef SB_ROUTER_ROUTER_H
#define SB_ROUTER_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sb_router;

/* `n_deployments` slots; cooldown_ms > 0; allowed_fails >= 1. */
struct sb_router *sb_router_new(size_t n_deployments, int allowed_fails, uint64_t cooldown_ms);
void sb_router_free(struct sb_router *r);

/* Milliseconds on a clock shared by all threads. */
uint64_t sb_router_now_ms(void);

/* LiteLLM's routing_strategy names, and round-robin. */
enum sb_strategy {
    SB_STRATEGY_SHUFFLE,     /* "simple-shuffle": random, weighted by weight, else rpm/tpm */
    SB_STRATEGY_ROUND_ROBIN, /* "round-robin" */
    SB_STRATEGY_LEAST_BUSY,  /* "least-busy": fewest requests in flight */
    SB_STRATEGY_LATENCY,     /* "latency-based-routing": lowest moving average, 1/16 explores */
    SB_STRATEGY_USAGE,       /* "usage-based-routing(-v2)": most rpm/tpm headroom this minute */
    SB_STRATEGY_COST,        /* "cost-based-routing": lowest price per token */
};
/* The strategy for a name; simple-shuffle for anything else. */
enum sb_strategy sb_router_strategy(const char *name);
/* Whether a routing_strategy name is one of the above. */
bool sb_router_strategy_known(const char *name);
/* The name a strategy is shown by. */
const char *sb_router_strategy_name(enum sb_strategy s);

/* A model group as the router sees it, built once at startup. */
struct sb_router_group {
    const int *deps;       /* deployment indexes */
    const double *weights; /* per deps[i] for simple-shuffle; NULL: all equal */
    const int *order;      /* per deps[i]: priority tier, 1 first, 0 last; NULL: one tier */
    size_t n;
    const int64_t *rpm; /* per deps[i]: limits for usage-based routing (0: none); NULL: none */
    const int64_t *tpm;
    const double *cost; /* per deps[i]: price per token for cost-based routing (< 0: unknown) */
};

/* Picks the deployment for the next attempt: among the deployments not cooling down (and not
 * in tried[0..ntried) when there is such a one), in the first `order` tier that has any, by
 * the strategy. *rr and *rng are the caller's (per worker) counter and random state. Returns
 * the deployment index, or -1 when every one is cooling down. */
int sb_router_pick(struct sb_router *r, enum sb_strategy strategy, const struct sb_router_group *g,
                   uint32_t *rr, uint64_t *rng, const int *tried, size_t ntried, uint64_t now_ms);

/* A call to dep starts (fallback: on behalf of another alias) / ends; latency_s >= 0 is a
 * sample for latency-based routing. */
void sb_router_begin(struct sb_router *r, int dep, bool fallback, uint64_t now_ms);
void sb_router_end(struct sb_router *r, int dep, double latency_s);

/* What the router knows of dep, for metrics and the admin view. */
struct sb_router_state {
    bool cooling;
    uint64_t cooldown_left_ms;
    int fails;
    int in_flight;
    double latency_s;   /* moving average; 0: no sample yet */
    uint64_t calls;     /* since start */
    uint64_t failures;  /* failures the router counted (toward cooldowns) since start */
    uint64_t fallbacks; /* calls made as a fallback for another alias since start */
};
void sb_router_state(const struct sb_router *r, int dep, uint64_t now_ms,
                     struct sb_router_state *out);

void sb_router_success(struct sb_router *r, int dep);
/* hard: a failure that cools the deployment down at once (401, 403, 404). allowed > 0
 * replaces allowed_fails for this failure's class (allowed_fails_policy). */
void sb_router_failure(struct sb_router *r, int dep, bool hard, int allowed, uint64_t now_ms);
/* Tokens a call to dep used, for usage-based routing (counted per minute). */
void sb_router_tokens(struct sb_router *r, int dep, uint64_t tokens, uint64_t now_ms);

bool sb_router_cooling(const struct sb_router *r, int dep, uint64_t now_ms);
/* Milliseconds until the first of deps[0..n) leaves its cooldown (0 if one is available). */
uint64_t sb_router_wait_ms(const struct sb_router *r, const int *deps, size_t n, uint64_t now_ms);

#endif

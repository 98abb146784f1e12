#include "router/router.h"

#include "core/rand.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAIL_WINDOW_MS 60000

/* One cache line per deployment: workers update them concurrently. */
struct health {
    _Alignas(64) _Atomic uint64_t cooldown_until; /* ms; 0: not cooled since its last success */
    _Atomic uint64_t window_start;
    _Atomic uint64_t latency_us; /* moving average (1/8 per sample); 0: no sample */
    _Atomic uint64_t calls;      /* every call started */
    _Atomic uint64_t failures;   /* every failure recorded */
    _Atomic uint64_t fallbacks;  /* calls made as a fallback for another alias */
    _Atomic uint64_t minute;     /* the minute the counts below are for */
    _Atomic uint64_t min_calls;  /* calls started this minute */
    _Atomic uint64_t min_tokens; /* tokens used this minute */
    _Atomic int fails;
    _Atomic int in_flight;
};

struct sb_router {
    struct health *h;
    size_t n;
    int allowed_fails;
    uint64_t cooldown_ms;
};

struct sb_router *sb_router_new(size_t n_deployments, int allowed_fails, uint64_t cooldown_ms)
{
    struct sb_router *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->h = aligned_alloc(64, (n_deployments ? n_deployments : 1) * sizeof *r->h);
    if (!r->h) {
        free(r);
        return NULL;
    }
    memset(r->h, 0, (n_deployments ? n_deployments : 1) * sizeof *r->h);
    r->n = n_deployments;
    r->allowed_fails = allowed_fails > 0 ? allowed_fails : 1;
    r->cooldown_ms = cooldown_ms ? cooldown_ms : 1;
    return r;
}

void sb_router_free(struct sb_router *r)
{
    if (!r)
        return;
    free(r->h);
    free(r);
}

uint64_t sb_router_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

bool sb_router_cooling(const struct sb_router *r, int dep, uint64_t now_ms)
{
    if (dep < 0 || (size_t)dep >= r->n)
        return false;
    return atomic_load_explicit(&r->h[dep].cooldown_until, memory_order_relaxed) > now_ms;
}

static bool was_tried(int dep, const int *tried, size_t ntried)
{
    for (size_t i = 0; i < ntried; i++)
        if (tried[i] == dep)
            return true;
    return false;
}

/* LiteLLM's names, and round-robin; the first name of a strategy is the one shown. */
static const struct {
    const char *name;
    enum sb_strategy strategy;
} strategies[] = {
    {"simple-shuffle", SB_STRATEGY_SHUFFLE},    {"round-robin", SB_STRATEGY_ROUND_ROBIN},
    {"least-busy", SB_STRATEGY_LEAST_BUSY},     {"latency-based-routing", SB_STRATEGY_LATENCY},
    {"usage-based-routing", SB_STRATEGY_USAGE}, {"usage-based-routing-v2", SB_STRATEGY_USAGE},
    {"cost-based-routing", SB_STRATEGY_COST},
};

bool sb_router_strategy_known(const char *name)
{
    for (size_t i = 0; name && i < sizeof strategies / sizeof strategies[0]; i++)
        if (strcmp(name, strategies[i].name) == 0)
            return true;
    return false;
}

enum sb_strategy sb_router_strategy(const char *name)
{
    for (size_t i = 0; name && i < sizeof strategies / sizeof strategies[0]; i++)
        if (strcmp(name, strategies[i].name) == 0)
            return strategies[i].strategy;
    return SB_STRATEGY_SHUFFLE;
}

const char *sb_router_strategy_name(enum sb_strategy s)
{
    for (size_t i = 0; i < sizeof strategies / sizeof strategies[0]; i++)
        if (strategies[i].strategy == s)
            return strategies[i].name;
    return "simple-shuffle";
}

#define PICK_MAX 256

int sb_router_pick(struct sb_router *r, enum sb_strategy strategy, const struct sb_router_group *g,
                   uint32_t *rr, uint64_t *rng, const int *tried, size_t ntried, uint64_t now_ms)
{
    size_t n = g->n < PICK_MAX ? g->n : PICK_MAX;
    size_t cand[PICK_MAX]; /* positions in g->deps */
    size_t nc = 0;
    /* Available and untried first; a tried one only when nothing else is left. */
    for (int pass = 0; pass < 2 && nc == 0; pass++)
        for (size_t i = 0; i < n; i++) {
            int d = g->deps[i];
            if (sb_router_cooling(r, d, now_ms) || (pass == 0) == was_tried(d, tried, ntried))
                continue;
            cand[nc++] = i;
        }
    if (!nc)
        return -1;
    if (g->order) { /* the first tier that has a candidate; 0 means "no order": last */
        unsigned best = UINT32_MAX;
        for (size_t i = 0; i < nc; i++) {
            unsigned o = g->order[cand[i]] ? (unsigned)g->order[cand[i]] : UINT32_MAX - 1;
            if (o < best)
                best = o;
        }
        size_t k = 0;
        for (size_t i = 0; i < nc; i++) {
            unsigned o = g->order[cand[i]] ? (unsigned)g->order[cand[i]] : UINT32_MAX - 1;
            if (o == best)
                cand[k++] = cand[i];
        }
        nc = k;
    }
    uint32_t start = (*rr)++;
    switch (strategy) {
    case SB_STRATEGY_ROUND_ROBIN:
        return g->deps[cand[start % nc]];
    case SB_STRATEGY_LEAST_BUSY: {
        size_t best = cand[start % nc];
        int low = INT32_MAX;
        for (size_t i = 0; i < nc; i++) {
            size_t c = cand[(start + i) % nc];
            int f = atomic_load_explicit(&r->h[g->deps[c]].in_flight, memory_order_relaxed);
            if (f < low) {
                low = f;
                best = c;
            }
        }
        return g->deps[best];
    }
    case SB_STRATEGY_LATENCY: {
        /* Unmeasured deployments first, then 1 call in 16 explores, else the fastest. */
        for (size_t i = 0; i < nc; i++) {
            size_t c = cand[(start + i) % nc];
            if (!atomic_load_explicit(&r->h[g->deps[c]].latency_us, memory_order_relaxed))
                return g->deps[c];
        }
        uint64_t rnd = sb_rand_next(rng);
        if ((rnd >> 60) == 0)
            return g->deps[cand[(rnd >> 8) % nc]];
        size_t best = cand[0];
        uint64_t low = UINT64_MAX;
        for (size_t i = 0; i < nc; i++) {
            uint64_t l =
                atomic_load_explicit(&r->h[g->deps[cand[i]]].latency_us, memory_order_relaxed);
            if (l < low) {
                low = l;
                best = cand[i];
            }
        }
        return g->deps[best];
    }
    case SB_STRATEGY_USAGE: {
        /* The most headroom against rpm/tpm this minute; deployments at a limit only when
         * every one is (limits are refused by keys, not here). No limits: fewest tokens. */
        uint64_t minute = now_ms / 60000;
        size_t best = cand[start % nc];
        double low = 1e300;
        for (int pass = 0; pass < 2 && low == 1e300; pass++)
            for (size_t i = 0; i < nc; i++) {
                size_t c = cand[(start + i) % nc];
                struct health *h = &r->h[g->deps[c]];
                bool fresh = atomic_load_explicit(&h->minute, memory_order_relaxed) == minute;
                double calls =
                    fresh ? (double)atomic_load_explicit(&h->min_calls, memory_order_relaxed) : 0;
                double toks =
                    fresh ? (double)atomic_load_explicit(&h->min_tokens, memory_order_relaxed) : 0;
                double rpm = g->rpm ? (double)g->rpm[c] : 0, tpm = g->tpm ? (double)g->tpm[c] : 0;
                if (pass == 0 && ((rpm > 0 && calls >= rpm) || (tpm > 0 && toks >= tpm)))
                    continue;
                double score = rpm > 0 || tpm > 0 ? 0 : toks / 1e12;
                if (rpm > 0 && calls / rpm > score)
                    score = calls / rpm;
                if (tpm > 0 && toks / tpm > score)
                    score = toks / tpm;
                if (score < low) {
                    low = score;
                    best = c;
                }
            }
        return g->deps[best];
    }
    case SB_STRATEGY_COST: {
        size_t best = cand[start % nc];
        double low = 1e300;
        for (size_t i = 0; i < nc; i++) {
            size_t c = cand[(start + i) % nc];
            double cost = g->cost && g->cost[c] >= 0 ? g->cost[c] : 1e299; /* unknown: last */
            if (cost < low) {
                low = cost;
                best = c;
            }
        }
        return g->deps[best];
    }
    case SB_STRATEGY_SHUFFLE:
    default: {
        double total = 0;
        for (size_t i = 0; i < nc; i++)
            total += g->weights ? g->weights[cand[i]] : 1.0;
        double x = sb_rand_unit(rng) * total;
        for (size_t i = 0; i < nc; i++) {
            x -= g->weights ? g->weights[cand[i]] : 1.0;
            if (x < 0)
                return g->deps[cand[i]];
        }
        return g->deps[cand[nc - 1]];
    }
    }
}

/* Moves the per-minute counts to the current minute (racy by design: approximate). */
static void roll_minute(struct health *h, uint64_t now_ms)
{
    uint64_t minute = now_ms / 60000;
    if (atomic_load_explicit(&h->minute, memory_order_relaxed) != minute) {
        atomic_store_explicit(&h->minute, minute, memory_order_relaxed);
        atomic_store_explicit(&h->min_calls, 0, memory_order_relaxed);
        atomic_store_explicit(&h->min_tokens, 0, memory_order_relaxed);
    }
}

void sb_router_tokens(struct sb_router *r, int dep, uint64_t tokens, uint64_t now_ms)
{
    if (dep < 0 || (size_t)dep >= r->n)
        return;
    roll_minute(&r->h[dep], now_ms);
    atomic_fetch_add_explicit(&r->h[dep].min_tokens, tokens, memory_order_relaxed);
}

void sb_router_begin(struct sb_router *r, int dep, bool fallback, uint64_t now_ms)
{
    if (dep < 0 || (size_t)dep >= r->n)
        return;
    roll_minute(&r->h[dep], now_ms);
    atomic_fetch_add_explicit(&r->h[dep].min_calls, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->h[dep].in_flight, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&r->h[dep].calls, 1, memory_order_relaxed);
    if (fallback)
        atomic_fetch_add_explicit(&r->h[dep].fallbacks, 1, memory_order_relaxed);
}

void sb_router_end(struct sb_router *r, int dep, double latency_s)
{
    if (dep < 0 || (size_t)dep >= r->n)
        return;
    struct health *h = &r->h[dep];
    atomic_fetch_sub_explicit(&h->in_flight, 1, memory_order_relaxed);
    if (latency_s < 0)
        return;
    uint64_t sample = (uint64_t)(latency_s * 1e6) + 1;
    uint64_t old = atomic_load_explicit(&h->latency_us, memory_order_relaxed);
    atomic_store_explicit(&h->latency_us, old ? (old * 7 + sample) / 8 : sample,
                          memory_order_relaxed);
}

void sb_router_state(const struct sb_router *r, int dep, uint64_t now_ms,
                     struct sb_router_state *out)
{
    struct health *h = &r->h[dep];
    uint64_t until = atomic_load_explicit(&h->cooldown_until, memory_order_relaxed);
    out->cooling = until > now_ms;
    out->cooldown_left_ms = until > now_ms ? until - now_ms : 0;
    out->fails = atomic_load_explicit(&h->fails, memory_order_relaxed);
    out->in_flight = atomic_load_explicit(&h->in_flight, memory_order_relaxed);
    out->latency_s = (double)atomic_load_explicit(&h->latency_us, memory_order_relaxed) / 1e6;
    out->calls = atomic_load_explicit(&h->calls, memory_order_relaxed);
    out->failures = atomic_load_explicit(&h->failures, memory_order_relaxed);
    out->fallbacks = atomic_load_explicit(&h->fallbacks, memory_order_relaxed);
}

void sb_router_success(struct sb_router *r, int dep)
{
    if (dep < 0 || (size_t)dep >= r->n)
        return;
    struct health *h = &r->h[dep];
    atomic_store_explicit(&h->fails, 0, memory_order_relaxed);
    atomic_store_explicit(&h->cooldown_until, 0, memory_order_relaxed);
}

void sb_router_failure(struct sb_router *r, int dep, bool hard, int allowed, uint64_t now_ms)
{
    if (dep < 0 || (size_t)dep >= r->n)
        return;
    struct health *h = &r->h[dep];
    atomic_fetch_add_explicit(&h->failures, 1, memory_order_relaxed);
    /* Cooled before and no success since: the first failure after the cooldown is enough. */
    uint64_t until = atomic_load_explicit(&h->cooldown_until, memory_order_relaxed);
    bool half_open = until && until <= now_ms;
    uint64_t start = atomic_load_explicit(&h->window_start, memory_order_relaxed);
    /* The minute is counted from the first failure since the count was last cleared. */
    if (now_ms - start > FAIL_WINDOW_MS ||
        atomic_load_explicit(&h->fails, memory_order_relaxed) == 0) {
        atomic_store_explicit(&h->window_start, now_ms, memory_order_relaxed);
        atomic_store_explicit(&h->fails, 0, memory_order_relaxed);
    }
    int fails = atomic_fetch_add_explicit(&h->fails, 1, memory_order_relaxed) + 1;
    if (hard || half_open || fails >= (allowed > 0 ? allowed : r->allowed_fails)) {
        atomic_store_explicit(&h->cooldown_until, now_ms + r->cooldown_ms, memory_order_relaxed);
        atomic_store_explicit(&h->fails, 0, memory_order_relaxed);
    }
}

uint64_t sb_router_wait_ms(const struct sb_router *r, const int *deps, size_t n, uint64_t now_ms)
{
    uint64_t best = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        int d = deps[i];
        if (d < 0 || (size_t)d >= r->n)
            continue;
        uint64_t until = atomic_load_explicit(&r->h[d].cooldown_until, memory_order_relaxed);
        uint64_t left = until > now_ms ? until - now_ms : 0;
        if (left < best)
            best = left;
    }
    return best == UINT64_MAX ? 0 : best;
}

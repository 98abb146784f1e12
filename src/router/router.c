#include "router/router.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FAIL_WINDOW_MS 60000

/* One cache line per deployment: workers update them concurrently. */
struct health {
    _Alignas(64) _Atomic uint64_t cooldown_until; /* ms; 0: not cooled since its last success */
    _Atomic uint64_t window_start;
    _Atomic int fails;
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

int sb_router_pick(struct sb_router *r, const int *deps, size_t n, uint32_t *rr, const int *tried,
                   size_t ntried, uint64_t now_ms)
{
    if (!n)
        return -1;
    uint32_t start = (*rr)++;
    int fallback = -1;
    for (size_t i = 0; i < n; i++) {
        int d = deps[(start + i) % n];
        if (sb_router_cooling(r, d, now_ms))
            continue;
        if (!was_tried(d, tried, ntried))
            return d;
        if (fallback < 0)
            fallback = d;
    }
    return fallback;
}

void sb_router_success(struct sb_router *r, int dep)
{
    if (dep < 0 || (size_t)dep >= r->n)
        return;
    struct health *h = &r->h[dep];
    atomic_store_explicit(&h->fails, 0, memory_order_relaxed);
    atomic_store_explicit(&h->cooldown_until, 0, memory_order_relaxed);
}

void sb_router_failure(struct sb_router *r, int dep, bool hard, uint64_t now_ms)
{
    if (dep < 0 || (size_t)dep >= r->n)
        return;
    struct health *h = &r->h[dep];
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
    if (hard || half_open || fails >= r->allowed_fails) {
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

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

/* Picks a deployment from deps[0..n) for the next attempt: round robin from *rr, skipping
 * deployments that are cooling down, and preferring ones not in tried[0..ntried). Returns
 * the deployment index, or -1 when every one is cooling down. */
int sb_router_pick(struct sb_router *r, const int *deps, size_t n, uint32_t *rr, const int *tried,
                   size_t ntried, uint64_t now_ms);

void sb_router_success(struct sb_router *r, int dep);
/* hard: a failure that cools the deployment down at once (401, 403, 404). */
void sb_router_failure(struct sb_router *r, int dep, bool hard, uint64_t now_ms);

bool sb_router_cooling(const struct sb_router *r, int dep, uint64_t now_ms);
/* Milliseconds until the first of deps[0..n) leaves its cooldown (0 if one is available). */
uint64_t sb_router_wait_ms(const struct sb_router *r, const int *deps, size_t n, uint64_t now_ms);

#endif

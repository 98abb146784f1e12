/* A small, fast pseudo-random generator (xorshift64*) for load balancing, jitter and request
 * ids: not for secrets. The state belongs to its caller (one per worker); any value is a
 * valid state (0 is replaced by a fixed seed). */
#ifndef SB_CORE_RAND_H
#define SB_CORE_RAND_H

#include <stdint.h>

static inline uint64_t sb_rand_next(uint64_t *state)
{
    uint64_t v = *state ? *state : 0x9E3779B97F4A7C15ULL;
    v ^= v >> 12, v ^= v << 25, v ^= v >> 27;
    *state = v;
    return v * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, 1). */
static inline double sb_rand_unit(uint64_t *state)
{
    return (double)(sb_rand_next(state) >> 11) / 9007199254740992.0;
}

#endif

/* Deployment choice and cooldowns (src/router/router.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "router/router.h"

#define RR SB_STRATEGY_ROUND_ROBIN

/* A group of the given deployments with equal weights and one tier. */
static struct sb_router_group group(const int *deps, size_t n)
{
    return (struct sb_router_group){deps, NULL, NULL, n, NULL, NULL, NULL};
}

static int pick(struct sb_router *r, const int *deps, size_t n, uint32_t *rr, const int *tried,
                size_t ntried, uint64_t now)
{
    struct sb_router_group g = group(deps, n);
    uint64_t rng = 1;
    return sb_router_pick(r, RR, &g, rr, &rng, tried, ntried, now);
}

static void test_round_robin_and_tried(void **state)
{
    (void)state;
    struct sb_router *r = sb_router_new(4, 3, 1000);
    const int deps[] = {1, 2, 3};
    uint32_t rr = 0;
    assert_int_equal(pick(r, deps, 3, &rr, NULL, 0, 10), 1);
    assert_int_equal(pick(r, deps, 3, &rr, NULL, 0, 10), 2);
    assert_int_equal(pick(r, deps, 3, &rr, NULL, 0, 10), 3);
    assert_int_equal(pick(r, deps, 3, &rr, NULL, 0, 10), 1);
    /* Untried ones first; a tried one only when nothing else is left. */
    const int tried[] = {2, 3};
    rr = 1;
    assert_int_equal(pick(r, deps, 3, &rr, tried, 2, 10), 1);
    const int all[] = {1, 2, 3};
    rr = 1;
    assert_int_equal(pick(r, deps, 3, &rr, all, 3, 10), 2);
    assert_int_equal(pick(r, deps, 0, &rr, NULL, 0, 10), -1);
    sb_router_free(r);
}

static void test_cooldown_after_allowed_fails(void **state)
{
    (void)state;
    struct sb_router *r = sb_router_new(2, 3, 1000);
    const int deps[] = {0, 1};
    uint32_t rr = 0;
    sb_router_failure(r, 0, false, 0, 100);
    sb_router_failure(r, 0, false, 0, 200);
    assert_false(sb_router_cooling(r, 0, 300));
    sb_router_failure(r, 0, false, 0, 300); /* the third in a minute */
    assert_true(sb_router_cooling(r, 0, 301));
    for (int i = 0; i < 5; i++)
        assert_int_equal(pick(r, deps, 2, &rr, NULL, 0, 500), 1);
    assert_int_equal(sb_router_wait_ms(r, deps, 1, 500), 800);
    assert_int_equal(sb_router_wait_ms(r, deps, 2, 500), 0); /* one is available */
    /* Back after cooldown_time; half-open: one more failure cools it again at once. */
    assert_false(sb_router_cooling(r, 0, 1300));
    sb_router_failure(r, 0, false, 0, 1400);
    assert_true(sb_router_cooling(r, 0, 1401));
    /* A success clears it: failures count from zero again. */
    sb_router_success(r, 0);
    assert_false(sb_router_cooling(r, 0, 1402));
    sb_router_failure(r, 0, false, 0, 1500);
    assert_false(sb_router_cooling(r, 0, 1501));
    sb_router_free(r);
}

static void test_hard_failure_and_window(void **state)
{
    (void)state;
    struct sb_router *r = sb_router_new(1, 3, 5000);
    sb_router_failure(r, 0, true, 0, 100); /* 401/404: at once */
    assert_true(sb_router_cooling(r, 0, 101));
    const int deps[] = {0};
    uint32_t rr = 0;
    assert_int_equal(pick(r, deps, 1, &rr, NULL, 0, 200), -1);
    assert_int_equal(sb_router_wait_ms(r, deps, 1, 200), 4900);
    sb_router_success(r, 0);
    /* Failures spread over more than a minute do not add up. */
    sb_router_failure(r, 0, false, 0, 10000);
    sb_router_failure(r, 0, false, 0, 20000);
    sb_router_failure(r, 0, false, 0, 80001);
    assert_false(sb_router_cooling(r, 0, 80002));
    /* Out-of-range deployments are ignored. */
    sb_router_failure(r, 7, true, 0, 1);
    sb_router_success(r, -1);
    assert_false(sb_router_cooling(r, 7, 2));
    sb_router_free(r);
}

static void test_strategies(void **state)
{
    (void)state;
    struct sb_router *r = sb_router_new(3, 3, 1000);
    const int deps[] = {0, 1, 2};
    uint32_t rr = 0;
    uint64_t rng = 42;
    /* simple-shuffle follows the weights (1:3:0 here): measured over many picks. */
    const double w[] = {1, 3, 0};
    struct sb_router_group g = {deps, w, NULL, 3, NULL, NULL, NULL};
    int count[3] = {0};
    for (int i = 0; i < 40000; i++)
        count[sb_router_pick(r, SB_STRATEGY_SHUFFLE, &g, &rr, &rng, NULL, 0, 10)]++;
    assert_int_equal(count[2], 0);
    assert_in_range(count[1], 28500, 31500); /* 3/4 of 40000 = 30000 */
    /* Equal weights spread evenly. */
    struct sb_router_group eq = {deps, NULL, NULL, 3, NULL, NULL, NULL};
    int even[3] = {0};
    for (int i = 0; i < 30000; i++)
        even[sb_router_pick(r, SB_STRATEGY_SHUFFLE, &eq, &rr, &rng, NULL, 0, 10)]++;
    for (int i = 0; i < 3; i++)
        assert_in_range(even[i], 9000, 11000);
    /* least-busy: the fewest calls in flight. */
    sb_router_begin(r, 0, false, 10);
    sb_router_begin(r, 0, false, 10);
    sb_router_begin(r, 2, true, 10);
    for (int i = 0; i < 5; i++)
        assert_int_equal(sb_router_pick(r, SB_STRATEGY_LEAST_BUSY, &eq, &rr, &rng, NULL, 0, 10), 1);
    sb_router_end(r, 0, -1);
    sb_router_end(r, 0, -1);
    sb_router_end(r, 2, -1);
    /* latency-based: unmeasured ones first, then mostly the fastest (1 in 16 explores). */
    sb_router_end(r, 0, 0.200); /* samples (in-flight counts are not checked here) */
    sb_router_end(r, 1, 0.050);
    assert_int_equal(sb_router_pick(r, SB_STRATEGY_LATENCY, &eq, &rr, &rng, NULL, 0, 10), 2);
    sb_router_end(r, 2, 0.500);
    int fast = 0;
    for (int i = 0; i < 1600; i++)
        fast += sb_router_pick(r, SB_STRATEGY_LATENCY, &eq, &rr, &rng, NULL, 0, 10) == 1;
    assert_in_range(fast, 1400, 1600);
    assert_true(fast < 1600); /* it explores */
    struct sb_router_state st;
    sb_router_state(r, 1, 10, &st);
    assert_true(st.latency_s > 0.049 && st.latency_s < 0.051);
    sb_router_state(r, 0, 10, &st);
    assert_int_equal(st.calls, 2);
    assert_int_equal(st.fallbacks, 0);
    sb_router_state(r, 2, 10, &st);
    assert_int_equal(st.fallbacks, 1);
    assert_false(st.cooling);
    sb_router_free(r);
}

static void test_order_tiers(void **state)
{
    (void)state;
    struct sb_router *r = sb_router_new(3, 1, 1000);
    const int deps[] = {0, 1, 2};
    const int order[] = {2, 1, 0}; /* 1 first, then 2, then the one without an order */
    struct sb_router_group g = {deps, NULL, order, 3, NULL, NULL, NULL};
    uint32_t rr = 0;
    uint64_t rng = 7;
    for (int i = 0; i < 10; i++)
        assert_int_equal(sb_router_pick(r, SB_STRATEGY_SHUFFLE, &g, &rr, &rng, NULL, 0, 10), 1);
    sb_router_failure(r, 1, false, 0, 10); /* allowed_fails 1: cools */
    assert_int_equal(sb_router_pick(r, SB_STRATEGY_SHUFFLE, &g, &rr, &rng, NULL, 0, 11), 0);
    sb_router_failure(r, 0, false, 0, 11);
    assert_int_equal(sb_router_pick(r, SB_STRATEGY_SHUFFLE, &g, &rr, &rng, NULL, 0, 12), 2);
    /* A retry prefers another tier's untried deployment over the same one again. */
    const int tried[] = {1};
    assert_int_equal(sb_router_pick(r, SB_STRATEGY_SHUFFLE, &g, &rr, &rng, tried, 1, 5000), 0);
    assert_int_equal(sb_router_strategy("least-busy"), SB_STRATEGY_LEAST_BUSY);
    assert_int_equal(sb_router_strategy("whatever"), SB_STRATEGY_SHUFFLE);
    sb_router_free(r);
}

static void test_usage_and_cost(void **state)
{
    (void)state;
    struct sb_router *r = sb_router_new(3, 3, 1000);
    const int deps[] = {0, 1, 2};
    const int64_t rpm[] = {10, 30, 0};
    const int64_t tpm[] = {0, 0, 0};
    struct sb_router_group g = {deps, NULL, NULL, 2, rpm, tpm, NULL}; /* deployments 0 and 1 */
    uint32_t rr = 0;
    uint64_t rng = 3;
    uint64_t now = 120000; /* minute 2 */
    int count[2] = {0};
    for (int i = 0; i < 40; i++) {
        int d = sb_router_pick(r, SB_STRATEGY_USAGE, &g, &rr, &rng, NULL, 0, now);
        count[d]++;
        sb_router_begin(r, d, false, now);
        sb_router_end(r, d, -1);
    }
    /* Headroom-proportional: 10 of 40 to the rpm-10 deployment, 30 to the rpm-30 one. */
    assert_in_range(count[0], 9, 11);
    assert_in_range(count[1], 29, 31);
    /* No limits: the fewest tokens this minute. */
    const int64_t none[] = {0, 0, 0};
    struct sb_router_group nl = {deps, NULL, NULL, 3, none, none, NULL};
    sb_router_tokens(r, 0, 500, now);
    sb_router_tokens(r, 1, 100, now);
    sb_router_tokens(r, 2, 300, now);
    assert_int_equal(sb_router_pick(r, SB_STRATEGY_USAGE, &nl, &rr, &rng, NULL, 0, now), 1);
    /* cost-based: the cheapest; an unknown price last. */
    const double cost[] = {0.00002, -1, 0.000001};
    struct sb_router_group cg = {deps, NULL, NULL, 3, NULL, NULL, cost};
    for (int i = 0; i < 5; i++)
        assert_int_equal(sb_router_pick(r, SB_STRATEGY_COST, &cg, &rr, &rng, NULL, 0, now), 2);
    sb_router_failure(r, 2, true, 0, now); /* cooling: the next cheapest */
    assert_int_equal(sb_router_pick(r, SB_STRATEGY_COST, &cg, &rr, &rng, NULL, 0, now + 1), 0);
    /* allowed > 0 replaces allowed_fails for one class. */
    sb_router_failure(r, 1, false, 1, now);
    assert_true(sb_router_cooling(r, 1, now + 1));
    assert_int_equal(sb_router_strategy("usage-based-routing-v2"), SB_STRATEGY_USAGE);
    assert_int_equal(sb_router_strategy("cost-based-routing"), SB_STRATEGY_COST);
    sb_router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_usage_and_cost),
        cmocka_unit_test(test_strategies),
        cmocka_unit_test(test_order_tiers),
        cmocka_unit_test(test_round_robin_and_tried),
        cmocka_unit_test(test_cooldown_after_allowed_fails),
        cmocka_unit_test(test_hard_failure_and_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

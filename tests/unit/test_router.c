/* Deployment choice and cooldowns (src/router/router.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "router/router.h"

static void test_round_robin_and_tried(void **state)
{
    (void)state;
    struct sb_router *r = sb_router_new(4, 3, 1000);
    const int deps[] = {1, 2, 3};
    uint32_t rr = 0;
    assert_int_equal(sb_router_pick(r, deps, 3, &rr, NULL, 0, 10), 1);
    assert_int_equal(sb_router_pick(r, deps, 3, &rr, NULL, 0, 10), 2);
    assert_int_equal(sb_router_pick(r, deps, 3, &rr, NULL, 0, 10), 3);
    assert_int_equal(sb_router_pick(r, deps, 3, &rr, NULL, 0, 10), 1);
    /* Untried ones first; a tried one only when nothing else is left. */
    const int tried[] = {2, 3};
    rr = 1;
    assert_int_equal(sb_router_pick(r, deps, 3, &rr, tried, 2, 10), 1);
    const int all[] = {1, 2, 3};
    rr = 1;
    assert_int_equal(sb_router_pick(r, deps, 3, &rr, all, 3, 10), 2);
    assert_int_equal(sb_router_pick(r, deps, 0, &rr, NULL, 0, 10), -1);
    sb_router_free(r);
}

static void test_cooldown_after_allowed_fails(void **state)
{
    (void)state;
    struct sb_router *r = sb_router_new(2, 3, 1000);
    const int deps[] = {0, 1};
    uint32_t rr = 0;
    sb_router_failure(r, 0, false, 100);
    sb_router_failure(r, 0, false, 200);
    assert_false(sb_router_cooling(r, 0, 300));
    sb_router_failure(r, 0, false, 300); /* the third in a minute */
    assert_true(sb_router_cooling(r, 0, 301));
    for (int i = 0; i < 5; i++)
        assert_int_equal(sb_router_pick(r, deps, 2, &rr, NULL, 0, 500), 1);
    assert_int_equal(sb_router_wait_ms(r, deps, 1, 500), 800);
    assert_int_equal(sb_router_wait_ms(r, deps, 2, 500), 0); /* one is available */
    /* Back after cooldown_time; half-open: one more failure cools it again at once. */
    assert_false(sb_router_cooling(r, 0, 1300));
    sb_router_failure(r, 0, false, 1400);
    assert_true(sb_router_cooling(r, 0, 1401));
    /* A success clears it: failures count from zero again. */
    sb_router_success(r, 0);
    assert_false(sb_router_cooling(r, 0, 1402));
    sb_router_failure(r, 0, false, 1500);
    assert_false(sb_router_cooling(r, 0, 1501));
    sb_router_free(r);
}

static void test_hard_failure_and_window(void **state)
{
    (void)state;
    struct sb_router *r = sb_router_new(1, 3, 5000);
    sb_router_failure(r, 0, true, 100); /* 401/404: at once */
    assert_true(sb_router_cooling(r, 0, 101));
    const int deps[] = {0};
    uint32_t rr = 0;
    assert_int_equal(sb_router_pick(r, deps, 1, &rr, NULL, 0, 200), -1);
    assert_int_equal(sb_router_wait_ms(r, deps, 1, 200), 4900);
    sb_router_success(r, 0);
    /* Failures spread over more than a minute do not add up. */
    sb_router_failure(r, 0, false, 10000);
    sb_router_failure(r, 0, false, 20000);
    sb_router_failure(r, 0, false, 80001);
    assert_false(sb_router_cooling(r, 0, 80002));
    /* Out-of-range deployments are ignored. */
    sb_router_failure(r, 7, true, 1);
    sb_router_success(r, -1);
    assert_false(sb_router_cooling(r, 7, 2));
    sb_router_free(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_and_tried),
        cmocka_unit_test(test_cooldown_after_allowed_fails),
        cmocka_unit_test(test_hard_failure_and_window),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

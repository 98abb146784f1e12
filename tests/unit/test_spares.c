/* core/spares.h: the bounded stack of kept structs, and (under AddressSanitizer, as make test
 * builds) the poisoning that makes a use of a kept struct a reported error. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/spares.h"

#include <stdlib.h>
#include <string.h>

struct thing {
    char before[40];
    struct sb_spare spare;
    char after[24];
    struct sb_buf buf;
};

#ifdef SB_SPARES_ASAN
static bool poisoned(const void *p)
{
    return __asan_address_is_poisoned(p) != 0;
}
#endif

static void test_lifo_and_bound(void **state)
{
    (void)state;
    struct sb_spares sp = {0};
    struct thing *t[3];
    for (int i = 0; i < 3; i++)
        assert_non_null(t[i] = calloc(1, sizeof *t[i]));
    assert_true(SB_SPARES_KEEP(&sp, t[0], spare, 2));
    assert_true(SB_SPARES_KEEP(&sp, t[1], spare, 2));
    assert_false(SB_SPARES_KEEP(&sp, t[2], spare, 2)); /* full: the caller frees it */
    assert_int_equal(sp.n, 2);
    assert_ptr_equal(SB_SPARES_TAKE(&sp, struct thing, spare), t[1]); /* last kept first */
    assert_ptr_equal(SB_SPARES_TAKE(&sp, struct thing, spare), t[0]);
    assert_null(SB_SPARES_TAKE(&sp, struct thing, spare));
    assert_int_equal(sp.n, 0);
    for (int i = 0; i < 3; i++)
        free(t[i]);
}

static void test_kept_struct_is_poisoned(void **state)
{
    (void)state;
#ifndef SB_SPARES_ASAN
    skip();
#else
    struct sb_spares sp = {0};
    struct thing *t = calloc(1, sizeof *t);
    assert_non_null(t);
    sb_buf_init(&t->buf, 1024);
    assert_int_equal(sb_buf_append_str(&t->buf, "kept memory"), 0);

    sb_buf_recycle(&t->buf, t->buf.max, 4096);
    sb_spares_hide_buf(&t->buf);
    char *data = t->buf.data;
    assert_true(SB_SPARES_KEEP(&sp, t, spare, 4));
    assert_true(poisoned(&t->before[0]));
    assert_true(poisoned(&t->before[39]));
    assert_false(poisoned(&t->spare)); /* the link stays usable: the stack runs through it */
    assert_true(poisoned(&t->after[0]));
    assert_true(poisoned(&t->buf));
    assert_true(poisoned(data));

    struct thing *back = SB_SPARES_TAKE(&sp, struct thing, spare);
    assert_ptr_equal(back, t);
    assert_false(poisoned(&t->before[0]));
    assert_false(poisoned(&t->after[23]));
    assert_false(poisoned(&t->buf));
    assert_true(poisoned(data)); /* until the owner shows it */
    sb_spares_show_buf(&t->buf);
    assert_false(poisoned(data));
    assert_int_equal(t->buf.len, 0); /* recycled: empty, memory kept */
    assert_ptr_equal(t->buf.data, data);
    sb_buf_free(&t->buf);
    free(t);
#endif
}

static void test_recycle_limits(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 1 << 20);
    assert_int_equal(sb_buf_reserve(&b, 5000), 0);
    char *p = b.data;
    sb_buf_recycle(&b, 1 << 20, 16384); /* small enough: kept */
    assert_ptr_equal(b.data, p);
    assert_int_equal(b.len, 0);
    sb_buf_recycle(&b, 1000, 16384); /* more than the new maximum allows: let go */
    assert_null(b.data);
    assert_int_equal(b.max, 1000);
    assert_int_equal(sb_buf_reserve(&b, 1000), 0);
    assert_true(b.cap <= 1001);
    sb_buf_recycle(&b, 1 << 20, 512); /* more than the keep limit: let go */
    assert_null(b.data);
    assert_int_equal(b.max, 1 << 20);
    sb_buf_free(&b);
}

/* A taken struct zeroed but for its buffers, which keep their memory; the keep/show pair on a
 * list of buffers empties them, lets large ones go, and makes them usable again. */
static void test_zero_but_bufs(void **state)
{
    (void)state;
    struct thing *t = calloc(1, sizeof *t);
    assert_non_null(t);
    memset(t->before, 'x', sizeof t->before);
    memset(t->after, 'y', sizeof t->after);
    sb_buf_init(&t->buf, 1 << 20);
    assert_int_equal(sb_buf_append_str(&t->buf, "kept"), 0);
    char *data = t->buf.data;
    struct sb_buf *bufs[] = {&t->buf};

    sb_spares_keep_bufs(bufs, 1, 4096);
    sb_spares_show_bufs(bufs, 1);
    sb_spares_zero_but_bufs(t, sizeof *t, bufs, 1);
    assert_int_equal(t->before[0], 0);
    assert_int_equal(t->before[39], 0);
    assert_int_equal(t->after[23], 0);
    assert_ptr_equal(t->buf.data, data); /* the memory stays */
    assert_int_equal(t->buf.len, 0);
    assert_int_equal(t->buf.max, 1 << 20);

    assert_int_equal(sb_buf_reserve(&t->buf, 10000), 0);
    sb_spares_keep_bufs(bufs, 1, 4096); /* past the keep limit: let go */
    assert_null(t->buf.data);
    sb_spares_show_bufs(bufs, 1);
    sb_buf_free(&t->buf);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lifo_and_bound),
        cmocka_unit_test(test_kept_struct_is_poisoned),
        cmocka_unit_test(test_recycle_limits),
        cmocka_unit_test(test_zero_but_bufs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

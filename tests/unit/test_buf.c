/* core: the bounded buffer and the OpenAI error envelope. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/error.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_cap_is_hard(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 8);
    assert_int_equal(sb_buf_append(&b, "12345678", 8), 0);
    assert_int_equal(b.len, 8);
    /* One byte more fails and leaves the buffer as it was. */
    assert_int_equal(sb_buf_append(&b, "9", 1), -E2BIG);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data, "12345678", 9); /* NUL-terminated */
    assert_int_equal(sb_buf_reserve(&b, SIZE_MAX), -E2BIG);
    assert_int_equal(sb_buf_printf(&b, "%s", "x"), -E2BIG);
    sb_buf_free(&b);
}

static void test_consume_take_swap(void **state)
{
    (void)state;
    struct sb_buf a, c;
    sb_buf_init(&a, 64);
    sb_buf_init(&c, 64);
    assert_int_equal(sb_buf_append_str(&a, "hello world"), 0);
    sb_buf_consume(&a, 6);
    assert_string_equal(a.data, "world");
    sb_buf_swap(&a, &c);
    assert_int_equal(a.len, 0);
    assert_string_equal(c.data, "world");
    size_t len;
    char *p = sb_buf_take(&c, &len);
    assert_int_equal(len, 5);
    assert_string_equal(p, "world");
    assert_null(c.data);
    free(p);
    sb_buf_consume(&a, 10); /* consuming from an empty buffer is harmless */
    sb_buf_free(&a);
}

static void test_numbers(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 256);
    sb_buf_append_u64(&b, 0);
    sb_buf_append_char(&b, ' ');
    sb_buf_append_u64(&b, UINT64_MAX);
    sb_buf_append_char(&b, ' ');
    sb_buf_append_i64(&b, INT64_MIN);
    sb_buf_append_char(&b, ' ');
    sb_buf_append_i64(&b, -42);
    assert_string_equal(b.data, "0 18446744073709551615 -9223372036854775808 -42");
    sb_buf_free(&b);
}

/* Every digit count and both sides of each power of ten, against printf. */
static void test_numbers_match_printf(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 64);
    uint64_t p = 1;
    for (int digits = 1; digits <= 20; digits++) {
        uint64_t vals[] = {p - 1, p, p + 1, p * 5 + 7, p + p / 3};
        for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
            char want[32];
            sb_buf_reset(&b);
            assert_int_equal(sb_buf_append_u64(&b, vals[i]), 0);
            snprintf(want, sizeof want, "%" PRIu64, vals[i]);
            assert_string_equal(b.data, want);
            int64_t s = (int64_t)(vals[i] & INT64_MAX);
            sb_buf_reset(&b);
            assert_int_equal(sb_buf_append_i64(&b, -s), 0);
            snprintf(want, sizeof want, "%" PRId64, -s);
            assert_string_equal(b.data, want);
        }
        if (digits < 20)
            p *= 10;
    }
    sb_buf_free(&b);
}

/* Appends that exactly fill the room, then one byte more: the maximum holds both ways. */
static void test_append_at_capacity(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 300);
    assert_int_equal(sb_buf_append(&b, "x", 1), 0); /* first allocation: 256 bytes */
    size_t room = b.cap - b.len - 1;
    char fill[512];
    memset(fill, 'y', sizeof fill);
    assert_int_equal(sb_buf_append(&b, fill, room), 0);
    assert_int_equal(b.len, b.cap - 1);
    assert_int_equal(b.data[b.len], '\0');
    assert_int_equal(sb_buf_append_char(&b, 'z'), 0); /* grows, to the maximum */
    assert_int_equal(b.cap, 301);
    assert_int_equal(sb_buf_append(&b, fill, 300 - b.len), 0);
    assert_int_equal(b.len, 300);
    assert_int_equal(sb_buf_append_char(&b, 'z'), -E2BIG);
    assert_int_equal(sb_buf_append(&b, fill, 0), 0);
    assert_int_equal(b.len, 300);
    assert_int_equal(b.data[300], '\0');

    char room2[8];
    struct sb_buf s = {.data = room2, .len = 0, .cap = sizeof room2, .max = sizeof room2 - 1};
    assert_int_equal(sb_buf_append_str(&s, "1234567"), 0);
    assert_int_equal(sb_buf_append_char(&s, '8'), -E2BIG); /* never reallocates the array */
    assert_string_equal(room2, "1234567");
    sb_buf_free(&b);
}

static void test_json_string(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 256);
    static const char in[] = "a\"b\\c\n\r\t\x01\x1f\xc3\xa9";
    assert_int_equal(sb_buf_append_json_str(&b, in, sizeof in - 1), 0);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\r\\t\\u0001\\u001f\xc3\xa9\"");
    /* At the cap: fails cleanly. */
    struct sb_buf small;
    sb_buf_init(&small, 4);
    assert_int_equal(sb_buf_append_json_str(&small, "abcdef", 6), -E2BIG);
    sb_buf_free(&small);
    sb_buf_free(&b);

    /* A string whose escaped form is exactly the room left goes in; one byte more, and
     * nothing goes in (no half string). */
    sb_buf_init(&small, 11);
    assert_int_equal(sb_buf_append(&small, "xy", 2), 0);
    assert_int_equal(sb_buf_append_json_str(&small, "a\n\x01", 3), -E2BIG); /* needs 11 */
    assert_int_equal(small.len, 2);
    assert_int_equal(sb_buf_append_json_str(&small, "a\x01", 2), 0); /* "a\u0001": 9 */
    assert_string_equal(small.data, "xy\"a\\u0001\"");
    sb_buf_reset(&small);
    assert_int_equal(sb_buf_append(&small, "xy", 2), 0);
    assert_int_equal(sb_buf_append_json_str(&small, "\x01\x02", 2), -E2BIG); /* needs 14 */
    assert_int_equal(small.len, 2);
    assert_string_equal(small.data, "xy");
    sb_buf_reset(&small);
    assert_int_equal(sb_buf_append_json_str(&small, "\"\"\"\"a", 5), 0); /* 11 exactly */
    assert_string_equal(small.data, "\"\\\"\\\"\\\"\\\"a\"");
    assert_int_equal(sb_buf_append_char(&small, 'z'), -E2BIG);
    sb_buf_free(&small);
}

static void test_printf_grows(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 4096);
    char big[1000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(sb_buf_printf(&b, "[%s]", big), 0);
    assert_int_equal(b.len, 1001);
    assert_int_equal(b.data[0], '[');
    assert_int_equal(b.data[1000], ']');
    sb_buf_free(&b);
}

static void test_error_envelope(void **state)
{
    (void)state;
    struct sb_error e;
    sb_error_set(&e, 404, "invalid_request_error", "model_not_found", "model",
                 "The model '%s' does not exist.", "g\"pt");
    struct sb_buf b;
    sb_buf_init(&b, 1024);
    assert_int_equal(sb_error_render_openai(&e, &b), 0);
    assert_string_equal(b.data, "{\"error\":{\"message\":\"The model 'g\\\"pt' does not exist.\","
                                "\"type\":\"invalid_request_error\",\"param\":\"model\","
                                "\"code\":\"model_not_found\"}}");
    sb_buf_reset(&b);
    sb_error_set(&e, 502, "api_error", NULL, NULL, "x");
    assert_int_equal(sb_error_render_openai(&e, &b), 0);
    assert_string_equal(b.data, "{\"error\":{\"message\":\"x\",\"type\":\"api_error\","
                                "\"param\":null,\"code\":null}}");
    assert_string_equal(sb_http_reason(431), "Request Header Fields Too Large");
    assert_string_equal(sb_http_reason(299), "Unknown");
    sb_buf_free(&b);
}

static void test_str_copy(void **state)
{
    (void)state;
    char d[5];
    sb_str_copy(d, sizeof d, "abc");
    assert_string_equal(d, "abc");
    sb_str_copy(d, sizeof d, "abcdefgh"); /* cut, still terminated */
    assert_string_equal(d, "abcd");
    sb_str_copy(d, sizeof d, NULL);
    assert_string_equal(d, "");
    char one[1] = {'x'};
    sb_str_copy(one, sizeof one, "long");
    assert_int_equal(one[0], '\0');
}

/* sb_put_u64 against snprintf at every digit-count boundary and around the pair table's
 * edges; the byte after the digits is never touched. */
static void test_put_u64(void **state)
{
    (void)state;
    uint64_t vs[80];
    size_t n = 0;
    uint64_t p10 = 1;
    for (int d = 0; d < 20; d++) {
        vs[n++] = p10;
        vs[n++] = p10 - 1;
        vs[n++] = p10 + 1;
        if (d < 19)
            p10 *= 10;
    }
    vs[n++] = UINT64_MAX;
    vs[n++] = UINT64_MAX - 1;
    vs[n++] = 42;
    vs[n++] = 99;
    vs[n++] = 100;
    vs[n++] = 12345678901234567u;
    for (size_t i = 0; i < n; i++) {
        char want[32], got[SB_PUT_INT_MAX + 1];
        int wn = snprintf(want, sizeof want, "%" PRIu64, vs[i]);
        memset(got, '#', sizeof got);
        char *end = sb_put_u64(got, vs[i]);
        assert_int_equal(end - got, wn);
        assert_memory_equal(got, want, (size_t)wn);
        if (wn < (int)sizeof got)
            assert_int_equal(got[wn], '#');
    }
}

static void test_put_i64_and_3digits(void **state)
{
    (void)state;
    int64_t vs[] = {0, -1, 1, -9, -10, 9, 10, -100, INT64_MAX, INT64_MIN, INT64_MIN + 1, 499};
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        char want[32], got[SB_PUT_INT_MAX + 1];
        int wn = snprintf(want, sizeof want, "%" PRId64, vs[i]);
        char *end = sb_put_i64(got, vs[i]);
        assert_int_equal(end - got, wn);
        assert_memory_equal(got, want, (size_t)wn);
    }
    char d[4] = "###";
    assert_ptr_equal(sb_put_3digits(d, 7), d + 3);
    assert_memory_equal(d, "007", 3);
    sb_put_3digits(d, 999);
    assert_memory_equal(d, "999", 3);
    sb_put_3digits(d, 1042); /* v % 1000 */
    assert_memory_equal(d, "042", 3);
    sb_put_3digits(d, 0);
    assert_memory_equal(d, "000", 3);
}

/* sb_put_json_str writes what sb_buf_append_json_str appends, and never more than its bound. */
static void test_put_json_str(void **state)
{
    (void)state;
    static const char *const in[] = {
        "",
        "plain",
        "a\"b\\c",
        "tab\there\nnl\rcr",
        "\x01\x1f\x7f",
        "\xc3\xa9 \xff",
        "sixteen plain ch\"",
        "\"\"\"\"\"\"\"\"\"",
        "0123456789abcdef0123456789abcdef\x02",
    };
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) {
        size_t n = strlen(in[i]);
        struct sb_buf want;
        sb_buf_init(&want, 1024);
        assert_int_equal(sb_buf_append_json_str(&want, in[i], n), 0);
        char got[512];
        char *end = sb_put_json_str(got, in[i], n);
        assert_int_equal((size_t)(end - got), want.len);
        assert_true((size_t)(end - got) <= SB_PUT_JSON_STR_MAX(n));
        assert_memory_equal(got, want.data, want.len);
        sb_buf_free(&want);
    }
    /* The bound is reached: every byte a \u00XX escape. */
    char ctl[40], got[SB_PUT_JSON_STR_MAX(40)];
    memset(ctl, 1, sizeof ctl);
    assert_int_equal(sb_put_json_str(got, ctl, sizeof ctl) - got, SB_PUT_JSON_STR_MAX(40));
    /* Embedded NUL bytes count as data. */
    assert_int_equal(sb_put_json_str(got, "a\0b", 3) - got, 10);
    assert_memory_equal(got, "\"a\\u0000b\"", 10);
}

/* Reserve, cursor writes, commit: the content and the NUL, and appends continue after it. */
static void test_cursor_commit(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 64);
    assert_int_equal(sb_buf_append_str(&b, "ab"), 0);
    assert_int_equal(sb_buf_reserve(&b, 10), 0);
    char *p = sb_buf_end(&b);
    assert_ptr_equal(p, b.data + 2);
    p = SB_PUT_LIT(p, "cd");
    p = sb_put(p, "efg", 3);
    p = sb_put_u64(p, 12345);
    assert_int_equal(p - b.data, 12);
    sb_buf_commit(&b, p);
    assert_int_equal(b.len, 12);
    assert_string_equal(b.data, "abcdefg12345");
    assert_int_equal(sb_buf_append_char(&b, '!'), 0);
    assert_string_equal(b.data, "abcdefg12345!");
    /* The reserve fails cleanly at the cap and leaves the buffer as it was. */
    assert_int_equal(sb_buf_reserve(&b, 64 - 13 + 1), -E2BIG);
    assert_int_equal(sb_buf_reserve(&b, 64 - 13), 0);
    assert_int_equal(b.len, 13);
    assert_true(b.cap >= 65);
    sb_buf_free(&b);
    /* From an empty, never allocated buffer. */
    sb_buf_init(&b, 8);
    assert_int_equal(sb_buf_reserve(&b, 0), 0);
    sb_buf_commit(&b, sb_buf_end(&b));
    assert_int_equal(b.len, 0);
    assert_string_equal(b.data, "");
    assert_int_equal(sb_buf_reserve(&b, 9), -E2BIG);
    assert_int_equal(sb_buf_reserve(&b, 8), 0);
    sb_buf_commit(&b, SB_PUT_LIT(sb_buf_end(&b), "12345678"));
    assert_string_equal(b.data, "12345678");
    sb_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap_is_hard),
        cmocka_unit_test(test_consume_take_swap),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_numbers_match_printf),
        cmocka_unit_test(test_append_at_capacity),
        cmocka_unit_test(test_json_string),
        cmocka_unit_test(test_printf_grows),
        cmocka_unit_test(test_error_envelope),
        cmocka_unit_test(test_str_copy),
        cmocka_unit_test(test_put_u64),
        cmocka_unit_test(test_put_i64_and_3digits),
        cmocka_unit_test(test_put_json_str),
        cmocka_unit_test(test_cursor_commit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

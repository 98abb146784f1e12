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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

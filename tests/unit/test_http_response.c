/* The upstream response-head parser (src/http/response.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "http/response.h"

#include <string.h>

static int parse(const char *s, struct sb_http_response *r)
{
    return sb_http_parse_response(s, strlen(s), 65536, r);
}

static void test_basic(void **state)
{
    (void)state;
    struct sb_http_response r;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n"
                    "X-Empty:\r\n\r\n{\"a\":1}";
    int rc = parse(s, &r);
    assert_int_equal(rc, (int)(strstr(s, "\r\n\r\n") - s) + 4);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.minor_version, 1);
    assert_int_equal(r.content_length, 12);
    assert_false(r.chunked);
    assert_false(r.close);
    assert_int_equal(r.nheaders, 3);
    assert_int_equal(r.headers[2].value.n, 0);
    assert_memory_equal(r.headers[0].value.p, "application/json", 16);
}

static void test_variants(void **state)
{
    (void)state;
    struct sb_http_response r;
    assert_true(parse("HTTP/1.1 204\r\n\r\n", &r) > 0); /* no reason phrase */
    assert_int_equal(r.status, 204);
    assert_false(sb_http_response_has_body(204));
    assert_false(sb_http_response_has_body(304));
    assert_true(sb_http_response_has_body(200));
    assert_true(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n", &r) > 0);
    assert_true(r.chunked);
    assert_true(parse("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\n\r\n", &r) > 0);
    assert_true(r.close);
    assert_true(parse("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", &r) > 0);
    assert_true(r.close); /* HTTP/1.0 closes unless it says keep-alive */
    assert_true(
        parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n", &r) > 0);
    assert_false(r.close);
    assert_true(parse("HTTP/1.1 100 Continue\r\n\r\n", &r) > 0);
    assert_int_equal(r.status, 100);
    assert_true(parse("HTTP/1.1 200 OK\nContent-Length: 0\n\n", &r) > 0); /* bare LF lines */
    assert_true(parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", &r) > 0);
    assert_int_equal(r.content_length, 5);
    assert_true(parse("HTTP/1.1 429 Too Many Requests\r\nRetry-After:  3 \r\n\r\n", &r) > 0);
    assert_int_equal(r.headers[0].value.n, 1); /* trimmed */
}

static void test_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "HTTP/2 200\r\n\r\n",
        "HTTP/1.2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 099 OK\r\n\r\n",
        "HTTP/1.1 200OK\r\n\r\n",
        "HTTP/1.1 200 O\rK\r\n\r\n",
        "http/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nName : x\r\n\r\n",
        "HTTP/1.1 200 OK\r\n: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\x01\r\n\r\n",
        "HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct sb_http_response r;
        int rc = parse(bad[i], &r);
        if (rc != SB_HTTP_E_BAD)
            fail_msg("accepted or misreported (%d): %s", rc, bad[i]);
    }
}

static void test_incomplete_and_limits(void **state)
{
    (void)state;
    struct sb_http_response r;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sb_http_parse_response(s, i, 65536, &r), SB_HTTP_AGAIN);
    assert_int_equal(sb_http_parse_response(s, n, 65536, &r), (int)n);
    /* A head that does not end within max_head. */
    char big[300];
    memset(big, 'a', sizeof big);
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    assert_int_equal(sb_http_parse_response(big, sizeof big, 256, &r), SB_HTTP_E_TOO_LARGE);
    assert_int_equal(sb_http_parse_response(big, 100, 256, &r), SB_HTTP_AGAIN);
    /* More headers than the parser holds. */
    char many[8192];
    size_t len = 0;
    memcpy(many, "HTTP/1.1 200 OK\r\n", 17);
    len = 17;
    for (int i = 0; i <= SB_HTTP_MAX_HEADERS; i++) {
        memcpy(many + len, "A: b\r\n", 6);
        len += 6;
    }
    memcpy(many + len, "\r\n", 2);
    len += 2;
    assert_int_equal(sb_http_parse_response(many, len, sizeof many, &r), SB_HTTP_E_TOO_LARGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_variants),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_incomplete_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#include "http/parser.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define MAX_HEAD 16384

/* Parses a heap copy of the exact length, so ASan catches any read past what was offered.
 * The copy lives until the next call (req points into it) or the group teardown. */
static char *last_copy;

static int parse_n(const char *s, size_t n, struct sb_http_request *req)
{
    free(last_copy);
    last_copy = malloc(n ? n : 1);
    assert_non_null(last_copy);
    memcpy(last_copy, s, n);
    return sb_http_parse_request(last_copy, n, MAX_HEAD, req);
}

static int free_copy(void **state)
{
    (void)state;
    free(last_copy);
    last_copy = NULL;
    return 0;
}

static int parse(const char *s)
{
    struct sb_http_request req;
    return parse_n(s, strlen(s), &req);
}

static bool str_is(struct sb_http_str s, const char *want)
{
    return s.n == strlen(want) && memcmp(s.p, want, s.n) == 0;
}

/* ---- valid requests ---- */

static void test_get(void **state)
{
    (void)state;
    const char *s = "GET /v1/models?limit=5 HTTP/1.1\r\nHost: gw\r\nAccept: */*\r\n\r\n";
    struct sb_http_request req;
    int rc = sb_http_parse_request(s, strlen(s), MAX_HEAD, &req);
    assert_int_equal(rc, (int)strlen(s));
    assert_int_equal(req.head_len, strlen(s));
    assert_true(str_is(req.method, "GET"));
    assert_true(str_is(req.target, "/v1/models?limit=5"));
    assert_true(str_is(req.path, "/v1/models"));
    assert_true(str_is(req.query, "limit=5"));
    assert_int_equal(req.minor_version, 1);
    assert_int_equal(req.nheaders, 2);
    assert_true(str_is(req.headers[0].name, "Host"));
    assert_true(str_is(req.headers[0].value, "gw"));
    assert_true(str_is(req.headers[1].name, "Accept"));
    assert_true(str_is(req.headers[1].value, "*/*"));
    assert_int_equal(req.content_length, -1);
    assert_false(req.chunked);
    assert_true(req.keep_alive);
    assert_false(req.expect_continue);
    assert_false(req.expect_other);
}

static void test_get_no_query(void **state)
{
    (void)state;
    const char *s = "GET /health HTTP/1.1\r\nHost: gw\r\n\r\n";
    struct sb_http_request req;
    assert_int_equal(sb_http_parse_request(s, strlen(s), MAX_HEAD, &req), (int)strlen(s));
    assert_true(str_is(req.path, "/health"));
    assert_int_equal(req.query.n, 0);
    assert_non_null(req.query.p);
}

static void test_post_content_length(void **state)
{
    (void)state;
    const char *head = "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
                       "Content-Type: application/json\r\nContent-Length: 13\r\n\r\n";
    char s[256];
    int n = snprintf(s, sizeof s, "%s{\"model\":\"x\"}", head);
    assert_true(n > 0 && (size_t)n < sizeof s);
    struct sb_http_request req;
    int rc = sb_http_parse_request(s, (size_t)n, MAX_HEAD, &req);
    assert_int_equal(rc, (int)strlen(head));
    assert_true(str_is(req.method, "POST"));
    assert_int_equal(req.content_length, 13);
    assert_false(req.chunked);
    assert_int_equal((size_t)n - (size_t)rc, 13);
}

static void test_post_chunked(void **state)
{
    (void)state;
    const char *s = "POST /x HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: Chunked\r\n\r\n";
    struct sb_http_request req;
    assert_int_equal(sb_http_parse_request(s, strlen(s), MAX_HEAD, &req), (int)strlen(s));
    assert_true(req.chunked);
    assert_int_equal(req.content_length, -1);
}

static void test_content_length_zero_and_max(void **state)
{
    (void)state;
    struct sb_http_request req;
    const char *z = "POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 000\r\n\r\n";
    assert_int_equal(parse_n(z, strlen(z), &req), (int)strlen(z));
    assert_int_equal(req.content_length, 0);
    const char *m = "POST /x HTTP/1.1\r\nHost: gw\r\nContent-Length: 9223372036854775807\r\n\r\n";
    assert_int_equal(parse_n(m, strlen(m), &req), (int)strlen(m));
    assert_int_equal(req.content_length, INT64_MAX);
}

static void test_pipelined(void **state)
{
    (void)state;
    const char *a = "GET /a HTTP/1.1\r\nHost: gw\r\n\r\n";
    const char *b = "POST /b HTTP/1.1\r\nHost: gw\r\nContent-Length: 0\r\n\r\n";
    char s[256];
    int n = snprintf(s, sizeof s, "%s%s", a, b);
    assert_true(n > 0 && (size_t)n < sizeof s);
    struct sb_http_request req;
    int rc = sb_http_parse_request(s, (size_t)n, MAX_HEAD, &req);
    assert_int_equal(rc, (int)strlen(a));
    assert_true(str_is(req.target, "/a"));
    int rc2 = sb_http_parse_request(s + rc, (size_t)n - (size_t)rc, MAX_HEAD, &req);
    assert_int_equal(rc2, (int)strlen(b));
    assert_true(str_is(req.method, "POST"));
    assert_true(str_is(req.target, "/b"));
    assert_int_equal(req.content_length, 0);
}

static void test_headers_trimmed(void **state)
{
    (void)state;
    const char *s = "GET / HTTP/1.1\r\nHost:gw\r\nX-A: \t a b \t \r\nX-Empty:\r\nX-Ws:  \t \r\n"
                    "X-Utf8: caf\xc3\xa9\r\n\r\n";
    struct sb_http_request req;
    assert_int_equal(sb_http_parse_request(s, strlen(s), MAX_HEAD, &req), (int)strlen(s));
    assert_int_equal(req.nheaders, 5);
    assert_true(str_is(req.headers[0].value, "gw"));
    assert_true(str_is(req.headers[1].value, "a b"));
    assert_int_equal(req.headers[2].value.n, 0);
    assert_int_equal(req.headers[3].value.n, 0);
    assert_true(str_is(req.headers[4].value, "caf\xc3\xa9"));
}

static void test_header_get(void **state)
{
    (void)state;
    const char *s = "GET / HTTP/1.1\r\nHost: gw\r\nX-Api-Key: one\r\nx-api-key: two\r\n\r\n";
    struct sb_http_request req;
    assert_int_equal(sb_http_parse_request(s, strlen(s), MAX_HEAD, &req), (int)strlen(s));
    const struct sb_http_str *v = sb_http_header_get(&req, "X-API-KEY");
    assert_non_null(v);
    assert_true(str_is(*v, "one"));
    v = sb_http_header_get(&req, "host");
    assert_non_null(v);
    assert_true(str_is(*v, "gw"));
    assert_null(sb_http_header_get(&req, "X-Api-Ke"));
    assert_null(sb_http_header_get(&req, "X-Api-Keys"));
    assert_null(sb_http_header_get(&req, ""));
}

static void test_leading_empty_lines(void **state)
{
    (void)state;
    const char *s = "\r\n\r\nGET / HTTP/1.1\r\nHost: gw\r\n\r\n";
    struct sb_http_request req;
    assert_int_equal(sb_http_parse_request(s, strlen(s), MAX_HEAD, &req), (int)strlen(s));
    assert_true(str_is(req.method, "GET"));
    assert_int_equal(sb_http_parse_request(s, 4, MAX_HEAD, &req), SB_HTTP_AGAIN);
}

static void test_absolute_form(void **state)
{
    (void)state;
    struct sb_http_request req;
    const char *s = "GET http://gw:8080/v1/models?x=1 HTTP/1.1\r\nHost: gw\r\n\r\n";
    assert_int_equal(parse_n(s, strlen(s), &req), (int)strlen(s));
    assert_true(str_is(req.path, "/v1/models"));
    assert_true(str_is(req.query, "x=1"));
    const char *bare = "GET https://gw HTTP/1.1\r\nHost: gw\r\n\r\n";
    assert_int_equal(parse_n(bare, strlen(bare), &req), (int)strlen(bare));
    assert_true(str_is(req.path, "/"));
    assert_int_equal(parse("GET http:///x HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET 1http://gw/ HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    /* authority-form (CONNECT) is not served */
    assert_int_equal(parse("CONNECT gw:443 HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
}

static void test_asterisk_form(void **state)
{
    (void)state;
    struct sb_http_request req;
    const char *s = "OPTIONS * HTTP/1.1\r\nHost: gw\r\n\r\n";
    assert_int_equal(parse_n(s, strlen(s), &req), (int)strlen(s));
    assert_true(str_is(req.path, "*"));
    assert_int_equal(parse("GET * HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("OPTIONS *x HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
}

/* ---- keep-alive and Expect ---- */

static bool keep_alive_of(const char *s)
{
    struct sb_http_request req;
    assert_int_equal(parse_n(s, strlen(s), &req), (int)strlen(s));
    return req.keep_alive;
}

static void test_keep_alive(void **state)
{
    (void)state;
    assert_true(keep_alive_of("GET / HTTP/1.1\r\nHost: gw\r\n\r\n"));
    assert_false(keep_alive_of("GET / HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"));
    assert_false(keep_alive_of("GET / HTTP/1.1\r\nHost: gw\r\nConnection: TE,  CLOSE \r\n\r\n"));
    assert_false(keep_alive_of("GET / HTTP/1.1\r\nHost: gw\r\nConnection: ,,close,\r\n\r\n"));
    assert_false(keep_alive_of("GET / HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive\r\n"
                               "Connection: close\r\n\r\n"));
    assert_true(keep_alive_of("GET / HTTP/1.1\r\nHost: gw\r\nConnection: closed\r\n\r\n"));
    assert_true(keep_alive_of("GET / HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive\r\n\r\n"));
    assert_false(keep_alive_of("GET / HTTP/1.0\r\n\r\n"));
    assert_false(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alivex\r\n\r\n"));
    assert_true(keep_alive_of("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    assert_true(keep_alive_of("GET / HTTP/1.0\r\nConnection: foo, keep-alive\r\n\r\n"));
    assert_false(keep_alive_of("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
}

static void test_expect(void **state)
{
    (void)state;
    struct sb_http_request req;
    const char *a = "POST / HTTP/1.1\r\nHost: gw\r\nExpect: 100-Continue\r\n\r\n";
    assert_int_equal(parse_n(a, strlen(a), &req), (int)strlen(a));
    assert_true(req.expect_continue);
    assert_false(req.expect_other);
    const char *b = "POST / HTTP/1.1\r\nHost: gw\r\nExpect: 200-ok\r\n\r\n";
    assert_int_equal(parse_n(b, strlen(b), &req), (int)strlen(b));
    assert_false(req.expect_continue);
    assert_true(req.expect_other);
    const char *c = "POST / HTTP/1.1\r\nHost: gw\r\nexpect: 100-continue, x\r\n\r\n";
    assert_int_equal(parse_n(c, strlen(c), &req), (int)strlen(c));
    assert_false(req.expect_continue);
    assert_true(req.expect_other);
    /* RFC 9110 §10.1.1: ignored in HTTP/1.0 */
    const char *d = "POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n";
    assert_int_equal(parse_n(d, strlen(d), &req), (int)strlen(d));
    assert_false(req.expect_continue);
    assert_false(req.expect_other);
}

/* ---- refusals, one each ---- */

static void test_refuse_cl_and_te(void **state)
{
    (void)state;
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n"),
                     SB_HTTP_E_BAD);
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n"
                           "Content-Length: 5\r\n\r\n"),
                     SB_HTTP_E_BAD);
}

static void test_refuse_cl_duplicate(void **state)
{
    (void)state;
    assert_int_equal(
        parse("POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\ncontent-length: 5\r\n\r\n"),
        SB_HTTP_E_BAD);
}

static void test_refuse_cl_list(void **state)
{
    (void)state;
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5, 5\r\n\r\n"),
                     SB_HTTP_E_BAD);
}

static void test_refuse_cl_syntax(void **state)
{
    (void)state;
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: +5\r\n\r\n"),
                     SB_HTTP_E_BAD);
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: -1\r\n\r\n"),
                     SB_HTTP_E_BAD);
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 0x5\r\n\r\n"),
                     SB_HTTP_E_BAD);
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5 5\r\n\r\n"),
                     SB_HTTP_E_BAD);
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: gw\r\nContent-Length:\r\n\r\n"),
                     SB_HTTP_E_BAD);
}

static void test_refuse_cl_overflow(void **state)
{
    (void)state;
    assert_int_equal(
        parse("POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 9223372036854775808\r\n\r\n"),
        SB_HTTP_E_BAD);
    assert_int_equal(
        parse("POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 99999999999999999999\r\n\r\n"),
        SB_HTTP_E_BAD);
}

static void test_refuse_te_other(void **state)
{
    (void)state;
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip\r\n\r\n"),
                     SB_HTTP_E_NOT_IMPLEMENTED);
    assert_int_equal(
        parse("POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        SB_HTTP_E_NOT_IMPLEMENTED);
    assert_int_equal(
        parse("POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
        SB_HTTP_E_NOT_IMPLEMENTED);
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunkedx\r\n\r\n"),
                     SB_HTTP_E_NOT_IMPLEMENTED);
    assert_int_equal(sb_http_error_status(SB_HTTP_E_NOT_IMPLEMENTED), 501);
}

static void test_refuse_te_empty(void **state)
{
    (void)state;
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: \r\n\r\n"),
                     SB_HTTP_E_BAD);
}

static void test_refuse_te_duplicate(void **state)
{
    (void)state;
    assert_int_equal(parse("POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n"),
                     SB_HTTP_E_BAD);
}

static void test_refuse_te_http10(void **state)
{
    (void)state;
    assert_int_equal(parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), SB_HTTP_E_BAD);
}

static void test_refuse_obs_fold(void **state)
{
    (void)state;
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: gw\r\nX-A: a\r\n b\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: gw\r\nX-A: a\r\n\tb\r\n\r\n"), SB_HTTP_E_BAD);
    /* whitespace before the first field line (RFC 9112 §2.2) */
    assert_int_equal(parse("GET / HTTP/1.1\r\n Host: gw\r\n\r\n"), SB_HTTP_E_BAD);
}

static void test_refuse_bare_cr(void **state)
{
    (void)state;
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: gw\r\nX-A: a\rb\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\rX\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: gw\r\n\rX: y\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: gw\r\nX-A\r: b\r\n\r\n"), SB_HTTP_E_BAD);
}

static void test_refuse_bare_lf(void **state)
{
    (void)state;
    assert_int_equal(parse("GET / HTTP/1.1\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: gw\nX: y\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: gw\r\n\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("\n"), SB_HTTP_E_BAD);
    /* refused as soon as it is seen, not after waiting for a blank line */
    assert_int_equal(parse("GET / HTTP/1.1\n"), SB_HTTP_E_BAD);
}

static void test_refuse_space_before_colon(void **state)
{
    (void)state;
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: gw\r\nX-A : a\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: gw\r\nX-A\t: a\r\n\r\n"), SB_HTTP_E_BAD);
}

static void test_refuse_bad_header_name(void **state)
{
    (void)state;
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: gw\r\n: a\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: gw\r\nX(A): a\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: gw\r\nNoColon\r\n\r\n"), SB_HTTP_E_BAD);
}

static void test_refuse_control_in_value(void **state)
{
    (void)state;
    static const char ctl[] = {0x00, 0x01, 0x08, 0x0b, 0x1b, 0x1f, 0x7f};
    for (size_t i = 0; i < sizeof ctl; i++) {
        char s[64];
        int n = snprintf(s, sizeof s, "GET / HTTP/1.1\r\nHost: gw\r\nX-A: a#b\r\n\r\n");
        assert_true(n > 0 && (size_t)n < sizeof s);
        char *hash = memchr(s, '#', (size_t)n);
        *hash = ctl[i];
        struct sb_http_request req;
        assert_int_equal(parse_n(s, (size_t)n, &req), SB_HTTP_E_BAD);
    }
}

static void test_refuse_bad_method(void **state)
{
    (void)state;
    assert_int_equal(parse("G(T / HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse(" GET / HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET\t/ HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
}

static void test_refuse_version_unsupported(void **state)
{
    (void)state;
    assert_int_equal(parse("GET / HTTP/2.0\r\nHost: gw\r\n\r\n"), SB_HTTP_E_VERSION);
    assert_int_equal(parse("GET / HTTP/1.2\r\nHost: gw\r\n\r\n"), SB_HTTP_E_VERSION);
    assert_int_equal(parse("GET / HTTP/0.9\r\nHost: gw\r\n\r\n"), SB_HTTP_E_VERSION);
    assert_int_equal(parse("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), SB_HTTP_E_VERSION);
    assert_int_equal(sb_http_error_status(SB_HTTP_E_VERSION), 505);
}

static void test_refuse_version_garbage(void **state)
{
    (void)state;
    assert_int_equal(parse("GET / HTTX/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / http/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.1 \r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/11\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.10\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET /\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
}

static void test_refuse_bad_target(void **state)
{
    (void)state;
    assert_int_equal(parse("GET  HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET /a b HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET /a\tb HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET /a\x01 HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET /a\x7f HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET /caf\xc3\xa9 HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET x HTTP/1.1\r\nHost: gw\r\n\r\n"), SB_HTTP_E_BAD);
}

static void test_refuse_missing_host(void **state)
{
    (void)state;
    assert_int_equal(parse("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"), SB_HTTP_E_BAD);
    /* HTTP/1.0 may omit it */
    assert_true(parse("GET / HTTP/1.0\r\n\r\n") > 0);
}

static void test_refuse_two_hosts(void **state)
{
    (void)state;
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n"), SB_HTTP_E_BAD);
}

static void test_host_value(void **state)
{
    (void)state;
    assert_true(parse("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n") > 0);
    assert_true(parse("GET / HTTP/1.1\r\nHost: my_gw.example-1.com\r\n\r\n") > 0);
    /* empty is allowed: a target without authority (RFC 9112 §3.2) */
    assert_true(parse("GET / HTTP/1.1\r\nHost:\r\n\r\n") > 0);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: gw/x\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: u@gw\r\n\r\n"), SB_HTTP_E_BAD);
    assert_int_equal(parse("GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n"), SB_HTTP_E_BAD);
}

/* ---- block boundaries ----
 * Field values, the target and the search for the blank line are scanned 16 bytes at a time
 * while that many bytes remain. Each case puts the byte of interest at every offset of a
 * block, on an exactly sized copy (parse_n), so reads past the end show under ASan. */

static int parse_parts(const char *a, const char *mid, size_t mid_len, const char *b,
                       struct sb_http_request *req)
{
    char buf[512];
    size_t n = 0, la = strlen(a), lb = strlen(b);
    assert_true(la + mid_len + lb <= sizeof buf);
    memcpy(buf, a, la);
    n += la;
    memcpy(buf + n, mid, mid_len);
    n += mid_len;
    memcpy(buf + n, b, lb);
    n += lb;
    return parse_n(buf, n, req);
}

static void test_value_bytes_at_every_offset(void **state)
{
    (void)state;
    struct sb_http_request req;
    char mid[64];
    for (int c = 0; c < 256; c++) {
        bool ok = c == '\t' || (c >= 0x20 && c != 0x7f);
        if (c == '\r')
            continue; /* a bare CR: covered below */
        for (size_t pre = 0; pre <= 34; pre++) {
            /* 'u' first, so a leading SP or HTAB is inside the value, not trimmed OWS */
            mid[0] = 'u';
            memset(mid + 1, 'v', pre);
            mid[pre + 1] = (char)c;
            mid[pre + 2] = 'w';
            int rc =
                parse_parts("GET / HTTP/1.1\r\nHost: h\r\nX-V: ", mid, pre + 3, "\r\n\r\n", &req);
            if (c == '\n' || !ok) {
                assert_int_equal(rc, SB_HTTP_E_BAD); /* a bare LF, a control byte or DEL */
                continue;
            }
            assert_true(rc > 0);
            assert_int_equal(req.nheaders, 2);
            assert_int_equal(req.headers[1].value.n, pre + 3);
            assert_int_equal((unsigned char)req.headers[1].value.p[pre + 1], c);
        }
    }
    /* values of every length, ending right before CRLF CRLF at the buffer's end */
    for (size_t len = 0; len <= 40; len++) {
        memset(mid, 'v', len);
        assert_true(parse_parts("GET / HTTP/1.1\r\nHost: h\r\nX-V: ", mid, len, "\r\n\r\n", &req) >
                    0);
        assert_int_equal(req.headers[1].value.n, len);
        /* and a bare CR at the end of it */
        assert_int_equal(
            parse_parts("GET / HTTP/1.1\r\nHost: h\r\nX-V: ", mid, len, "\rx\r\n\r\n", &req),
            SB_HTTP_E_BAD);
    }
}

static void test_target_bytes_at_every_offset(void **state)
{
    (void)state;
    struct sb_http_request req;
    char mid[64];
    static const unsigned char bad[] = {0x00, 0x01, '\t', 0x1f, 0x7f, 0x80, 0xc3, 0xff};
    for (size_t pre = 0; pre <= 40; pre++) {
        mid[0] = '/';
        memset(mid + 1, 'p', pre);
        int rc = parse_parts("GET ", mid, pre + 1, " HTTP/1.1\r\nHost: h\r\n\r\n", &req);
        assert_true(rc > 0);
        assert_int_equal(req.target.n, pre + 1);
        assert_int_equal(req.path.n, pre + 1);
        for (size_t b = 0; b < sizeof bad; b++) {
            mid[pre + 1] = (char)bad[b];
            mid[pre + 2] = 'q';
            assert_int_equal(
                parse_parts("GET ", mid, pre + 3, " HTTP/1.1\r\nHost: h\r\n\r\n", &req),
                SB_HTTP_E_BAD);
        }
        /* every VCHAR is taken as it is */
        for (int c = 0x21; c < 0x7f; c++) {
            mid[pre + 1] = (char)c;
            assert_true(parse_parts("GET ", mid, pre + 2, " HTTP/1.1\r\nHost: h\r\n\r\n", &req) >
                        0);
            assert_int_equal(req.target.n, pre + 2);
        }
    }
}

/* The blank line and a bare LF, at every offset; an incomplete head is SB_HTTP_AGAIN. */
static void test_head_end_at_every_offset(void **state)
{
    (void)state;
    struct sb_http_request req;
    char mid[64];
    for (size_t len = 0; len <= 40; len++) {
        memset(mid, 'h', len);
        int rc = parse_parts("GET / HTTP/1.1\r\nHost: ", mid, len, "\r\n\r\n", &req);
        assert_int_equal(rc, (int)(len + 16 + 6 + 4));
        assert_int_equal(req.head_len, (size_t)rc);
        assert_int_equal(parse_parts("GET / HTTP/1.1\r\nHost: ", mid, len, "\r\n\r", &req),
                         SB_HTTP_AGAIN);
        assert_int_equal(parse_parts("GET / HTTP/1.1\r\nHost: ", mid, len, "\n", &req),
                         SB_HTTP_E_BAD);
        assert_int_equal(parse_parts("GET / HTTP/1.1\r\nHost: ", mid, len, "\r\n\n", &req),
                         SB_HTTP_E_BAD);
    }
}

/* Every byte in a Host value: accepted exactly for uri-host [":" port] characters. */
static void test_host_every_byte(void **state)
{
    (void)state;
    struct sb_http_request req;
    for (int c = 0; c < 256; c++) {
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c && strchr("-._~%!$&'()*+,;=[]:", c));
        bool field = c == '\t' || (c >= 0x20 && c != 0x7f);
        char mid[3] = {'a', (char)c, 'b'};
        int rc = parse_parts("GET / HTTP/1.1\r\nHost: ", mid, 3, "\r\n\r\n", &req);
        if (c == '\n' || c == '\r' || !field)
            assert_int_equal(rc, SB_HTTP_E_BAD);
        else if (ok)
            assert_true(rc > 0);
        else
            assert_int_equal(rc, SB_HTTP_E_BAD);
    }
}

/* Names and values matched case-insensitively, and near misses that are not matches. */
static void test_case_and_near_names(void **state)
{
    (void)state;
    struct sb_http_request req;
    assert_true(parse_n("POST / HTTP/1.1\r\nhOsT: h\r\nTRANSFER-ENCODING: ChUnKeD\r\n"
                        "CONNECTION: Keep-Alive, CLOSE\r\nEXPECT: 100-CONTINUE\r\n\r\n",
                        109, &req) > 0);
    assert_true(req.chunked);
    assert_false(req.keep_alive);
    assert_true(req.expect_continue);
    const char *near = "GET / HTTP/1.1\r\nHost: h\r\nContent_Length: 5\r\nContent-Lengthx: 1\r\n"
                       "Transfer-Encodin: chunked\r\nXontent-length: 7\r\nExpect: 100-continu\r\n"
                       "Connection: clos\r\n\r\n";
    assert_true(parse_n(near, strlen(near), &req) > 0);
    assert_int_equal(req.content_length, -1);
    assert_false(req.chunked);
    assert_true(req.keep_alive);
    assert_false(req.expect_continue);
    assert_true(req.expect_other);
    /* a value that differs from "chunked" only in one byte's case bit outside the letters */
    const char *te = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\x7f\r\n\r\n";
    assert_int_equal(parse_n(te, strlen(te), &req), SB_HTTP_E_BAD);
    te = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunke\xc4\r\n\r\n";
    assert_int_equal(parse_n(te, strlen(te), &req), SB_HTTP_E_NOT_IMPLEMENTED);
    te = "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunkeD\r\n\r\n";
    assert_true(parse_n(te, strlen(te), &req) > 0);
    /* lookups: exact case, other case, and a name of the same length that differs */
    const char *h = "GET / HTTP/1.1\r\nHost: h\r\nX-Api-Key: k1\r\nx-api-key: k2\r\n\r\n";
    assert_true(parse_n(h, strlen(h), &req) > 0);
    assert_true(str_is(*sb_http_header_get(&req, "X-Api-Key"), "k1"));
    assert_true(str_is(*sb_http_header_get(&req, "x-API-key"), "k1"));
    assert_null(sb_http_header_get(&req, "x-api-kez"));
    assert_null(sb_http_header_get(&req, "x_api-key"));
}

static void test_too_many_headers(void **state)
{
    (void)state;
    char s[4096];
    size_t n = 0;
    int w = snprintf(s, sizeof s, "GET / HTTP/1.1\r\nHost: gw\r\n");
    n += (size_t)w;
    for (int i = 1; i < SB_HTTP_MAX_HEADERS; i++) {
        w = snprintf(s + n, sizeof s - n, "X%d: v\r\n", i);
        assert_true(w > 0 && (size_t)w < sizeof s - n);
        n += (size_t)w;
    }
    memcpy(s + n, "\r\n", 3);
    struct sb_http_request req;
    assert_int_equal(parse_n(s, n + 2, &req), (int)(n + 2));
    assert_int_equal(req.nheaders, SB_HTTP_MAX_HEADERS);
    memcpy(s + n, "Y: v\r\n\r\n", 9);
    assert_int_equal(parse_n(s, n + 8, &req), SB_HTTP_E_TOO_LARGE);
}

/* ---- size limit and incremental input ---- */

/* A valid head of exactly `len` bytes, padded with one long header value. */
static char *head_of_size(size_t len)
{
    const char *pre = "GET / HTTP/1.1\r\nHost: gw\r\nX-Pad: ";
    size_t pn = strlen(pre);
    assert_true(len > pn + 4);
    char *s = malloc(len);
    assert_non_null(s);
    memcpy(s, pre, pn);
    memset(s + pn, 'a', len - pn - 4);
    memcpy(s + len - 4, "\r\n\r\n", 4);
    return s;
}

static void test_head_limit(void **state)
{
    (void)state;
    struct sb_http_request req;
    char *s = head_of_size(MAX_HEAD);
    assert_int_equal(sb_http_parse_request(s, MAX_HEAD, MAX_HEAD, &req), MAX_HEAD);
    free(s);

    s = head_of_size(MAX_HEAD + 1);
    assert_int_equal(sb_http_parse_request(s, MAX_HEAD + 1, MAX_HEAD, &req), SB_HTTP_E_TOO_LARGE);
    /* exactly max_head bytes buffered with no end in sight: no more may come */
    assert_int_equal(sb_http_parse_request(s, MAX_HEAD, MAX_HEAD, &req), SB_HTTP_E_TOO_LARGE);
    /* one byte short of the cap: the head could still end */
    assert_int_equal(sb_http_parse_request(s, MAX_HEAD - 1, MAX_HEAD, &req), SB_HTTP_AGAIN);
    free(s);
    assert_int_equal(sb_http_error_status(SB_HTTP_E_TOO_LARGE), 431);
}

static void test_every_prefix_again(void **state)
{
    (void)state;
    const char *s = "\r\nPOST /v1/chat/completions?stream=1 HTTP/1.1\r\nHost: gw\r\n"
                    "Content-Length: 2\r\nConnection: close\r\nX-Empty:\r\n\r\n";
    size_t n = strlen(s);
    struct sb_http_request req;
    for (size_t i = 0; i < n; i++)
        assert_int_equal(parse_n(s, i, &req), SB_HTTP_AGAIN);
    assert_int_equal(parse_n(s, n, &req), (int)n);
    assert_int_equal(req.content_length, 2);
    assert_false(req.keep_alive);
}

static void test_error_strings(void **state)
{
    (void)state;
    int errs[] = {SB_HTTP_E_BAD,
                  SB_HTTP_E_TOO_LARGE,
                  SB_HTTP_E_VERSION,
                  SB_HTTP_E_NOT_IMPLEMENTED,
                  SB_HTTP_E_BODY_TOO_LARGE,
                  -99};
    int want[] = {400, 431, 505, 501, 413, 400};
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        assert_int_equal(sb_http_error_status(errs[i]), want[i]);
        assert_non_null(sb_http_strerror(errs[i]));
        assert_true(strlen(sb_http_strerror(errs[i])) > 0);
    }
    assert_string_not_equal(sb_http_strerror(SB_HTTP_E_BAD), sb_http_strerror(SB_HTTP_E_VERSION));
}

/* ---- chunked decoder ---- */

/* Feeds `s` in pieces of `step` bytes (0: all at once); returns the final result. */
static ssize_t feed_steps(const char *s, size_t n, size_t step, struct sb_buf *out,
                          struct sb_http_chunked *c)
{
    sb_http_chunked_init(c);
    size_t off = 0;
    while (off < n) {
        size_t piece = step && step < n - off ? step : n - off;
        ssize_t r = sb_http_chunked_feed(c, s + off, piece, out);
        if (r < 0)
            return r;
        off += (size_t)r;
        if ((size_t)r < piece || c->done)
            break;
    }
    return (ssize_t)off;
}

static ssize_t feed_all(const char *s, struct sb_buf *out, size_t max)
{
    struct sb_http_chunked c;
    sb_buf_init(out, max);
    return feed_steps(s, strlen(s), 0, out, &c);
}

static const char CHUNKED_BODY[] = "5\r\nhello\r\n7;name=val;q=\"a b\"\r\n, world\r\n"
                                   "0000a\r\n0123456789\r\n0\r\nX-Sum: abc\r\nX-T:\t1 \r\n\r\n";
static const char CHUNKED_DATA[] = "hello, world0123456789";

static void test_chunked_one_feed(void **state)
{
    (void)state;
    struct sb_buf out;
    struct sb_http_chunked c;
    sb_buf_init(&out, 1024);
    ssize_t r = feed_steps(CHUNKED_BODY, strlen(CHUNKED_BODY), 0, &out, &c);
    assert_int_equal(r, (ssize_t)strlen(CHUNKED_BODY));
    assert_true(c.done);
    assert_int_equal(out.len, strlen(CHUNKED_DATA));
    assert_memory_equal(out.data, CHUNKED_DATA, out.len);
    /* finished: takes nothing more */
    assert_int_equal(sb_http_chunked_feed(&c, "5\r\n", 3, &out), 0);
    sb_buf_free(&out);
}

static void test_chunked_every_split(void **state)
{
    (void)state;
    size_t n = strlen(CHUNKED_BODY);
    for (size_t cut = 0; cut <= n; cut++) {
        struct sb_buf out;
        struct sb_http_chunked c;
        sb_buf_init(&out, 1024);
        sb_http_chunked_init(&c);
        ssize_t a = sb_http_chunked_feed(&c, CHUNKED_BODY, cut, &out);
        assert_int_equal(a, (ssize_t)cut);
        assert_int_equal(c.done, cut == n);
        ssize_t b = sb_http_chunked_feed(&c, CHUNKED_BODY + cut, n - cut, &out);
        assert_int_equal(b, (ssize_t)(n - cut));
        assert_true(c.done);
        assert_int_equal(out.len, strlen(CHUNKED_DATA));
        assert_memory_equal(out.data, CHUNKED_DATA, out.len);
        sb_buf_free(&out);
    }
}

static void test_chunked_byte_at_a_time(void **state)
{
    (void)state;
    struct sb_buf out;
    struct sb_http_chunked c;
    sb_buf_init(&out, 1024);
    ssize_t r = feed_steps(CHUNKED_BODY, strlen(CHUNKED_BODY), 1, &out, &c);
    assert_int_equal(r, (ssize_t)strlen(CHUNKED_BODY));
    assert_true(c.done);
    assert_int_equal(out.len, strlen(CHUNKED_DATA));
    assert_memory_equal(out.data, CHUNKED_DATA, out.len);
    sb_buf_free(&out);
}

static void test_chunked_empty_body(void **state)
{
    (void)state;
    struct sb_buf out;
    assert_int_equal(feed_all("0\r\n\r\n", &out, 16), 5);
    assert_int_equal(out.len, 0);
    sb_buf_free(&out);
    assert_int_equal(feed_all("0;x=1\r\n\r\n", &out, 16), 9);
    sb_buf_free(&out);
}

static void test_chunked_pipelined(void **state)
{
    (void)state;
    const char *s = "3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n";
    struct sb_buf out;
    struct sb_http_chunked c;
    sb_buf_init(&out, 64);
    sb_http_chunked_init(&c);
    ssize_t r = sb_http_chunked_feed(&c, s, strlen(s), &out);
    assert_int_equal(r, 13);
    assert_true(c.done);
    assert_memory_equal(s + r, "GET ", 4);
    assert_int_equal(out.len, 3);
    sb_buf_free(&out);

    /* the same when the final CRLF and the next request arrive together */
    sb_buf_init(&out, 64);
    sb_http_chunked_init(&c);
    assert_int_equal(sb_http_chunked_feed(&c, s, 11, &out), 11);
    assert_false(c.done);
    assert_int_equal(sb_http_chunked_feed(&c, s + 11, strlen(s) - 11, &out), 2);
    assert_true(c.done);
    sb_buf_free(&out);
}

static void expect_chunk_error(const char *s, ssize_t want)
{
    struct sb_buf out;
    for (size_t step = 0; step <= 1; step++) {
        struct sb_http_chunked c;
        sb_buf_init(&out, 1024);
        assert_int_equal(feed_steps(s, strlen(s), step, &out, &c), want);
        assert_false(c.done);
        /* after an error the decoder refuses everything */
        assert_true(sb_http_chunked_feed(&c, "0\r\n\r\n", 5, &out) < 0);
        sb_buf_free(&out);
    }
}

static void test_chunked_bad_sizes(void **state)
{
    (void)state;
    expect_chunk_error("\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("+5\r\nhello\r\n0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("-5\r\nhello\r\n0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error(" 5\r\nhello\r\n0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("5 \r\nhello\r\n0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("5\t\r\nhello\r\n0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("5 ;x\r\nhello\r\n0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("0x5\r\nhello\r\n0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("g\r\n0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("5\nhello\r\n0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("5\rhello\r\n0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("5;a\nb\r\nhello\r\n0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("5;a\x01\r\nhello\r\n0\r\n\r\n", SB_HTTP_E_BAD);
}

static void test_chunked_overflow(void **state)
{
    (void)state;
    /* 17 digits, even with leading zeros, is refused before any value is computed */
    expect_chunk_error("00000000000000001\r\na\r\n0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("10000000000000000\r\n", SB_HTTP_E_BAD);
    /* 16 digits fit, and the cap refuses the chunk before its data arrives */
    expect_chunk_error("FFFFFFFFFFFFFFFF\r\n", SB_HTTP_E_BODY_TOO_LARGE);
    struct sb_buf out;
    assert_int_equal(feed_all("000000000000000a\r\n0123456789\r\n0\r\n\r\n", &out, 64), 35);
    assert_int_equal(out.len, 10);
    sb_buf_free(&out);
}

static void test_chunked_missing_crlf(void **state)
{
    (void)state;
    expect_chunk_error("5\r\nhelloX\r\n0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("5\r\nhello\n0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("5\r\nhello\rX0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("5\r\nhello0\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("0\r\n\n", SB_HTTP_E_BAD);
    expect_chunk_error("0\r\n\rX", SB_HTTP_E_BAD);
}

static void test_chunked_body_cap(void **state)
{
    (void)state;
    struct sb_buf out;
    /* exactly the cap is fine */
    assert_int_equal(feed_all("6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n", &out, 10), 25);
    assert_int_equal(out.len, 10);
    sb_buf_free(&out);
    /* one byte more is not */
    struct sb_http_chunked c;
    sb_buf_init(&out, 10);
    const char *s = "6\r\nabcdef\r\n5\r\nghijk\r\n0\r\n\r\n";
    assert_int_equal(feed_steps(s, strlen(s), 0, &out, &c), SB_HTTP_E_BODY_TOO_LARGE);
    assert_int_equal(out.len, 6);
    sb_buf_free(&out);
    assert_int_equal(sb_http_error_status(SB_HTTP_E_BODY_TOO_LARGE), 413);
}

static void test_chunked_ext_line_limit(void **state)
{
    (void)state;
    size_t n = 5000;
    char *s = malloc(n + 1);
    assert_non_null(s);
    s[0] = '1';
    s[1] = ';';
    memset(s + 2, 'e', n - 2);
    s[n] = '\0';
    expect_chunk_error(s, SB_HTTP_E_BAD);
    /* just under the bound is accepted */
    memcpy(s + 4000, "\r\na\r\n0\r\n\r\n", 11);
    struct sb_buf out;
    assert_int_equal(feed_all(s, &out, 16), 4010);
    sb_buf_free(&out);
    free(s);
}

static void test_chunked_trailers(void **state)
{
    (void)state;
    struct sb_buf out;
    assert_int_equal(feed_all("0\r\nA: 1\r\nB:\r\nC: x y\t\r\n\r\nNEXT", &out, 16), 24);
    sb_buf_free(&out);
    expect_chunk_error("0\r\nA: 1\r\n folded\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("0\r\nA : 1\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("0\r\n: 1\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("0\r\nNoColon\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("0\r\nA: 1\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("0\r\nA: 1\rB\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("0\r\nA: \x01\r\n\r\n", SB_HTTP_E_BAD);
    expect_chunk_error("0\r\nA: \x7f\r\n\r\n", SB_HTTP_E_BAD);
}

static void test_chunked_trailer_limit(void **state)
{
    (void)state;
    /* three 3000-byte trailer lines: each under the line bound, together over 8 KiB */
    size_t n = 3 + 3 * 3000 + 2;
    char *s = malloc(n + 1);
    assert_non_null(s);
    memcpy(s, "0\r\n", 3);
    for (int i = 0; i < 3; i++) {
        char *l = s + 3 + (size_t)i * 3000;
        memcpy(l, "X: ", 3);
        memset(l + 3, 'v', 3000 - 5);
        memcpy(l + 2998, "\r\n", 2);
    }
    memcpy(s + n - 2, "\r\n", 3);
    expect_chunk_error(s, SB_HTTP_E_TOO_LARGE);
    /* two of them fit */
    memcpy(s + 3 + 2 * 3000, "\r\n", 3);
    struct sb_buf out;
    assert_int_equal(feed_all(s, &out, 16), 3 + 2 * 3000 + 2);
    sb_buf_free(&out);

    /* one line over 4 KiB */
    char *l = malloc(5000);
    assert_non_null(l);
    memcpy(l, "0\r\nX: ", 6);
    memset(l + 6, 'v', 5000 - 6 - 5);
    memcpy(l + 5000 - 5, "\r\n\r\n", 5);
    expect_chunk_error(l, SB_HTTP_E_TOO_LARGE);
    free(l);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_get_no_query),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_post_chunked),
        cmocka_unit_test(test_content_length_zero_and_max),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_headers_trimmed),
        cmocka_unit_test(test_header_get),
        cmocka_unit_test(test_leading_empty_lines),
        cmocka_unit_test(test_absolute_form),
        cmocka_unit_test(test_asterisk_form),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_refuse_cl_and_te),
        cmocka_unit_test(test_refuse_cl_duplicate),
        cmocka_unit_test(test_refuse_cl_list),
        cmocka_unit_test(test_refuse_cl_syntax),
        cmocka_unit_test(test_refuse_cl_overflow),
        cmocka_unit_test(test_refuse_te_other),
        cmocka_unit_test(test_refuse_te_empty),
        cmocka_unit_test(test_refuse_te_duplicate),
        cmocka_unit_test(test_refuse_te_http10),
        cmocka_unit_test(test_refuse_obs_fold),
        cmocka_unit_test(test_refuse_bare_cr),
        cmocka_unit_test(test_refuse_bare_lf),
        cmocka_unit_test(test_refuse_space_before_colon),
        cmocka_unit_test(test_refuse_bad_header_name),
        cmocka_unit_test(test_refuse_control_in_value),
        cmocka_unit_test(test_refuse_bad_method),
        cmocka_unit_test(test_refuse_version_unsupported),
        cmocka_unit_test(test_refuse_version_garbage),
        cmocka_unit_test(test_refuse_bad_target),
        cmocka_unit_test(test_refuse_missing_host),
        cmocka_unit_test(test_refuse_two_hosts),
        cmocka_unit_test(test_host_value),
        cmocka_unit_test(test_value_bytes_at_every_offset),
        cmocka_unit_test(test_target_bytes_at_every_offset),
        cmocka_unit_test(test_head_end_at_every_offset),
        cmocka_unit_test(test_host_every_byte),
        cmocka_unit_test(test_case_and_near_names),
        cmocka_unit_test(test_too_many_headers),
        cmocka_unit_test(test_head_limit),
        cmocka_unit_test(test_every_prefix_again),
        cmocka_unit_test(test_error_strings),
        cmocka_unit_test(test_chunked_one_feed),
        cmocka_unit_test(test_chunked_every_split),
        cmocka_unit_test(test_chunked_byte_at_a_time),
        cmocka_unit_test(test_chunked_empty_body),
        cmocka_unit_test(test_chunked_pipelined),
        cmocka_unit_test(test_chunked_bad_sizes),
        cmocka_unit_test(test_chunked_overflow),
        cmocka_unit_test(test_chunked_missing_crlf),
        cmocka_unit_test(test_chunked_body_cap),
        cmocka_unit_test(test_chunked_ext_line_limit),
        cmocka_unit_test(test_chunked_trailers),
        cmocka_unit_test(test_chunked_trailer_limit),
    };
    return cmocka_run_group_tests(tests, NULL, free_copy);
}

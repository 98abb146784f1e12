/* Event-stream framing: the published AWS SDK test vectors, round trips fed whole and one
 * byte at a time, and every corruption (CRCs, lengths, header types and bounds). */
#include "canon/eventstream.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* From the AWS SDK's event-stream test vectors. */
static const unsigned char v_empty[] = {0, 0,   0,  16,  0,   0,   0,   0,
                                        5, 194, 72, 235, 125, 152, 200, 255};
static const unsigned char v_int32_header[] = {
    0,   0,   0,   45, 0,   0,   0,   16,  65,  196, 36,  184, 10,  101, 118,
    101, 110, 116, 45, 116, 121, 112, 101, 4,   0,   0,   160, 12,  123, 39,
    102, 111, 111, 39, 58,  39,  98,  97,  114, 39,  125, 54,  244, 128, 160};
static const unsigned char v_payload_no_headers[] = {0,   0,  0,   29, 0,   0,   0,   0,  253, 82,
                                                     140, 90, 123, 39, 102, 111, 111, 39, 58,  39,
                                                     98,  97, 114, 39, 125, 195, 101, 57, 54};
static const unsigned char v_one_str_header[] = {
    0,   0,   0,   61,  0,   0,   0,   32,  7,   253, 131, 150, 12,  99,  111, 110,
    116, 101, 110, 116, 45,  116, 121, 112, 101, 7,   0,   16,  97,  112, 112, 108,
    105, 99,  97,  116, 105, 111, 110, 47,  106, 115, 111, 110, 123, 39,  102, 111,
    111, 39,  58,  39,  98,  97,  114, 39,  125, 141, 156, 8,   177};

struct rec {
    int n;
    char log[4096];
    size_t used;
    int stop_at; /* return non-zero on this message number (1-based), 0 never */
};

static int on_msg(void *ud, const struct sb_evstream_msg *m)
{
    struct rec *r = ud;
    r->n++;
    int w = snprintf(r->log + r->used, sizeof r->log - r->used, "[%s|%s|%s|%s|%.*s]",
                     m->message_type ? m->message_type : "-", m->event_type ? m->event_type : "-",
                     m->exception_type ? m->exception_type : "-",
                     m->content_type ? m->content_type : "-", (int)m->payload_len, m->payload);
    if (w > 0 && (size_t)w < sizeof r->log - r->used)
        r->used += (size_t)w;
    return r->stop_at && r->n == r->stop_at;
}

static int feed_whole(const void *p, size_t n, size_t max, struct rec *r, bool *partial)
{
    struct sb_evstream d;
    sb_evstream_init(&d, max);
    int rc = sb_evstream_feed(&d, p, n, on_msg, r);
    if (partial)
        *partial = sb_evstream_partial(&d);
    sb_evstream_free(&d);
    return rc;
}

static int feed_bytes(const void *p, size_t n, size_t max, struct rec *r, bool *partial)
{
    struct sb_evstream d;
    sb_evstream_init(&d, max);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = sb_evstream_feed(&d, (const char *)p + i, 1, on_msg, r);
    if (partial)
        *partial = sb_evstream_partial(&d);
    sb_evstream_free(&d);
    return rc;
}

static void test_vectors(void **state)
{
    (void)state;
    struct rec r = {0};
    assert_int_equal(feed_whole(v_empty, sizeof v_empty, 1024, &r, NULL), 0);
    assert_string_equal(r.log, "[-|-|-|-|]");
    memset(&r, 0, sizeof r);
    /* an int32 header named "event-type" is skipped, not taken for ":event-type" */
    assert_int_equal(feed_whole(v_int32_header, sizeof v_int32_header, 1024, &r, NULL), 0);
    assert_string_equal(r.log, "[-|-|-|-|{'foo':'bar'}]");
    memset(&r, 0, sizeof r);
    assert_int_equal(feed_whole(v_payload_no_headers, sizeof v_payload_no_headers, 1024, &r, NULL),
                     0);
    assert_string_equal(r.log, "[-|-|-|-|{'foo':'bar'}]");
    memset(&r, 0, sizeof r);
    /* "content-type" without the colon is not ":content-type" */
    assert_int_equal(feed_bytes(v_one_str_header, sizeof v_one_str_header, 1024, &r, NULL), 0);
    assert_string_equal(r.log, "[-|-|-|-|{'foo':'bar'}]");
}

static void test_encode_known_frames(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 4096);
    const char *names[] = {"content-type"}, *vals[] = {"application/json"};
    assert_int_equal(sb_evstream_encode(&b, names, vals, 1, "{'foo':'bar'}", 13), 0);
    assert_int_equal(b.len, sizeof v_one_str_header);
    assert_memory_equal(b.data, v_one_str_header, sizeof v_one_str_header);
    sb_buf_reset(&b);
    assert_int_equal(sb_evstream_encode(&b, NULL, NULL, 0, NULL, 0), 0);
    assert_memory_equal(b.data, v_empty, sizeof v_empty);
    sb_buf_reset(&b);
    assert_int_equal(sb_evstream_encode(&b, NULL, NULL, 0, "{'foo':'bar'}", 13), 0);
    assert_memory_equal(b.data, v_payload_no_headers, sizeof v_payload_no_headers);
    sb_buf_free(&b);
}

static void build_stream(struct sb_buf *b)
{
    const char *n3[] = {":event-type", ":content-type", ":message-type"};
    const char *v1[] = {"messageStart", "application/json", "event"};
    const char *v2[] = {"contentBlockDelta", "application/json", "event"};
    const char *n2[] = {":exception-type", ":message-type"};
    const char *v3[] = {"throttlingException", "exception"};
    assert_int_equal(sb_evstream_encode(b, n3, v1, 3, "{\"role\":\"assistant\"}", 20), 0);
    assert_int_equal(sb_evstream_encode(b, n3, v2, 3, "{\"x\":1}", 7), 0);
    assert_int_equal(sb_evstream_encode(b, n2, v3, 2, "{\"message\":\"slow\"}", 18), 0);
}

static const char *stream_log = "[event|messageStart|-|application/json|{\"role\":\"assistant\"}]"
                                "[event|contentBlockDelta|-|application/json|{\"x\":1}]"
                                "[exception|-|throttlingException|-|{\"message\":\"slow\"}]";

static void test_round_trip(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 1 << 16);
    build_stream(&b);
    struct rec r = {0};
    bool partial = true;
    assert_int_equal(feed_whole(b.data, b.len, 1024, &r, &partial), 0);
    assert_false(partial);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.log, stream_log);
    memset(&r, 0, sizeof r);
    assert_int_equal(feed_bytes(b.data, b.len, 1024, &r, &partial), 0);
    assert_false(partial);
    assert_string_equal(r.log, stream_log);
    /* a cut stream leaves a partial message */
    memset(&r, 0, sizeof r);
    assert_int_equal(feed_whole(b.data, b.len - 1, 1024, &r, &partial), 0);
    assert_true(partial);
    assert_int_equal(r.n, 2);
    memset(&r, 0, sizeof r);
    assert_int_equal(feed_bytes(b.data, 5, 1024, &r, &partial), 0);
    assert_true(partial);
    /* a callback that stops */
    memset(&r, 0, sizeof r);
    r.stop_at = 2;
    assert_int_equal(feed_whole(b.data, b.len, 1024, &r, NULL), SB_EVSTREAM_E_STOP);
    assert_int_equal(r.n, 2);
    sb_buf_free(&b);
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Fixes both CRCs after a deliberate change, so only the structural error remains. */
static void recrc(unsigned char *m, size_t total)
{
    put32(m + 8, (uint32_t)crc32(0, m, 8));
    put32(m + total - 4, (uint32_t)crc32(0, m, (uInt)(total - 4)));
}

static void expect_both(const unsigned char *m, size_t n, size_t max, int want)
{
    struct rec r = {0};
    assert_int_equal(feed_whole(m, n, max, &r, NULL), want);
    assert_int_equal(r.n, 0);
    memset(&r, 0, sizeof r);
    assert_int_equal(feed_bytes(m, n, max, &r, NULL), want);
    assert_int_equal(r.n, 0);
}

static void test_corruptions(void **state)
{
    (void)state;
    unsigned char m[sizeof v_one_str_header];
    size_t n = sizeof m;

    memcpy(m, v_one_str_header, n);
    m[9] ^= 1; /* prelude CRC */
    expect_both(m, n, 1024, SB_EVSTREAM_E_PRELUDE_CRC);
    memcpy(m, v_one_str_header, n);
    m[3] ^= 1; /* total length, CRC not fixed */
    expect_both(m, n, 1024, SB_EVSTREAM_E_PRELUDE_CRC);
    memcpy(m, v_one_str_header, n);
    m[n - 1] ^= 1; /* message CRC */
    expect_both(m, n, 1024, SB_EVSTREAM_E_MESSAGE_CRC);
    memcpy(m, v_one_str_header, n);
    m[50] ^= 1; /* payload */
    expect_both(m, n, 1024, SB_EVSTREAM_E_MESSAGE_CRC);

    /* total below the 16-byte minimum, with a correct prelude CRC */
    memcpy(m, v_one_str_header, n);
    put32(m, 15);
    put32(m + 8, (uint32_t)crc32(0, m, 8));
    expect_both(m, n, 1024, SB_EVSTREAM_E_LENGTH);
    /* over the configured maximum */
    expect_both(v_one_str_header, n, 60, SB_EVSTREAM_E_TOO_BIG);
    {
        struct rec r = {0};
        assert_int_equal(feed_whole(v_one_str_header, n, 61, &r, NULL), 0);
        assert_int_equal(r.n, 1);
    }
    /* headers longer than the message allows */
    memcpy(m, v_one_str_header, n);
    put32(m + 4, 46);
    recrc(m, n);
    expect_both(m, n, 1024, SB_EVSTREAM_E_LENGTH);
    /* headers length cutting a header in two */
    memcpy(m, v_one_str_header, n);
    put32(m + 4, 20);
    recrc(m, n);
    expect_both(m, n, 1024, SB_EVSTREAM_E_HEADER);
    /* unknown value type */
    memcpy(m, v_one_str_header, n);
    m[25] = 10;
    recrc(m, n);
    expect_both(m, n, 1024, SB_EVSTREAM_E_HEADER);
    /* string length past the headers */
    memcpy(m, v_one_str_header, n);
    m[27] = 17;
    recrc(m, n);
    expect_both(m, n, 1024, SB_EVSTREAM_E_HEADER);
    /* zero-length name */
    memcpy(m, v_one_str_header, n);
    m[12] = 0;
    recrc(m, n);
    expect_both(m, n, 1024, SB_EVSTREAM_E_HEADER);
    /* name length past the headers */
    memcpy(m, v_one_str_header, n);
    m[12] = 40;
    recrc(m, n);
    expect_both(m, n, 1024, SB_EVSTREAM_E_HEADER);
    /* fixed-size types that overrun: int32 header value cut by the headers length */
    unsigned char i[sizeof v_int32_header];
    memcpy(i, v_int32_header, sizeof i);
    put32(i + 4, 15);
    recrc(i, sizeof i);
    expect_both(i, sizeof i, 1024, SB_EVSTREAM_E_HEADER);

    /* an error is sticky */
    struct sb_evstream d;
    sb_evstream_init(&d, 1024);
    memcpy(m, v_one_str_header, n);
    m[n - 1] ^= 1;
    assert_int_equal(sb_evstream_feed(&d, (const char *)m, n, on_msg, &(struct rec){0}),
                     SB_EVSTREAM_E_MESSAGE_CRC);
    assert_int_equal(
        sb_evstream_feed(&d, (const char *)v_empty, sizeof v_empty, on_msg, &(struct rec){0}),
        SB_EVSTREAM_E_MESSAGE_CRC);
    sb_evstream_free(&d);
}

/* Every header type is skipped with its right size, and the string headers after them are
 * still found. */
static void test_all_header_types(void **state)
{
    (void)state;
    unsigned char h[256];
    size_t k = 0;
#define NAME(s)                                                                                    \
    do {                                                                                           \
        h[k++] = (unsigned char)strlen(s);                                                         \
        memcpy(h + k, s, strlen(s));                                                               \
        k += strlen(s);                                                                            \
    } while (0)
    NAME("t");
    h[k++] = 0;
    NAME("f");
    h[k++] = 1;
    NAME("b");
    h[k++] = 2;
    h[k++] = 0xff;
    NAME("s");
    h[k++] = 3;
    k += 2;
    NAME("i");
    h[k++] = 4;
    k += 4;
    NAME("l");
    h[k++] = 5;
    k += 8;
    NAME("y");
    h[k++] = 6;
    h[k++] = 0;
    h[k++] = 3;
    k += 3;
    NAME(":event-type");
    h[k++] = 6; /* a byte array, not a string: not reported */
    h[k++] = 0;
    h[k++] = 1;
    h[k++] = 'x';
    NAME("ts");
    h[k++] = 8;
    k += 8;
    NAME("u");
    h[k++] = 9;
    k += 16;
    NAME(":message-type");
    h[k++] = 7;
    h[k++] = 0;
    h[k++] = 5;
    memcpy(h + k, "event", 5);
    k += 5;
#undef NAME
    unsigned char m[512];
    memset(m, 0, sizeof m);
    size_t total = 16 + k + 2;
    put32(m, (uint32_t)total);
    put32(m + 4, (uint32_t)k);
    memcpy(m + 12, h, k);
    memcpy(m + 12 + k, "{}", 2);
    recrc(m, total);
    struct rec r = {0};
    assert_int_equal(feed_bytes(m, total, 1024, &r, NULL), 0);
    assert_string_equal(r.log, "[event|-|-|-|{}]");
    /* a known string header whose value is too long */
    struct sb_buf b;
    sb_buf_init(&b, 4096);
    char longv[200];
    memset(longv, 'a', sizeof longv - 1);
    longv[sizeof longv - 1] = '\0';
    const char *nm[] = {":event-type"}, *vl[] = {longv};
    assert_int_equal(sb_evstream_encode(&b, nm, vl, 1, "{}", 2), 0);
    memset(&r, 0, sizeof r);
    assert_int_equal(feed_whole(b.data, b.len, 4096, &r, NULL), SB_EVSTREAM_E_HEADER);
    /* but an unknown header may be long */
    const char *nm2[] = {"other"};
    sb_buf_reset(&b);
    assert_int_equal(sb_evstream_encode(&b, nm2, vl, 1, "{}", 2), 0);
    memset(&r, 0, sizeof r);
    assert_int_equal(feed_whole(b.data, b.len, 4096, &r, NULL), 0);
    assert_int_equal(r.n, 1);
    sb_buf_free(&b);
}

static void test_encode_refusals(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 40);
    const char *nm[] = {""}, *vl[] = {"x"};
    assert_int_equal(sb_evstream_encode(&b, nm, vl, 1, NULL, 0), -EINVAL);
    assert_int_equal(sb_evstream_encode(&b, NULL, NULL, 0, NULL, 3), -EINVAL);
    assert_int_equal(sb_evstream_encode(&b, NULL, NULL, 0, "0123456789", 10), 0);
    size_t before = b.len;
    assert_int_equal(sb_evstream_encode(&b, NULL, NULL, 0, "0123456789", 10), -E2BIG);
    assert_int_equal(b.len, before);
    sb_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),          cmocka_unit_test(test_encode_known_frames),
        cmocka_unit_test(test_round_trip),       cmocka_unit_test(test_corruptions),
        cmocka_unit_test(test_all_header_types), cmocka_unit_test(test_encode_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

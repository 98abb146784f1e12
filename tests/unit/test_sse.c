#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "http/sse.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CAP (64 * 1024)

/* ---- recording events ------------------------------------------------------------------ */

struct rec_event {
    char *event;
    size_t event_len;
    char *data;
    size_t data_len;
    char *id; /* NULL when the event had none */
    size_t id_len;
    bool is_comment;
};

struct rec {
    struct rec_event ev[256];
    size_t n;
    size_t stop_at; /* return stop_rc from the callback for event number stop_at (1-based) */
    int stop_rc;
};

static char *dup_bytes(const char *p, size_t n)
{
    char *d = malloc(n + 1);
    assert_non_null(d);
    if (n)
        memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

static int on_record(void *ud, const struct sb_sse_event *ev)
{
    struct rec *r = ud;
    assert_true(r->n < sizeof r->ev / sizeof r->ev[0]);
    struct rec_event *e = &r->ev[r->n++];
    assert_non_null(ev->event);
    assert_non_null(ev->data);
    e->event = dup_bytes(ev->event, ev->event_len);
    e->event_len = ev->event_len;
    e->data = dup_bytes(ev->data, ev->data_len);
    e->data_len = ev->data_len;
    e->id = ev->id ? dup_bytes(ev->id, ev->id_len) : NULL;
    e->id_len = ev->id_len;
    e->is_comment = ev->is_comment;
    if (r->stop_at && r->n == r->stop_at)
        return r->stop_rc;
    return 0;
}

static void rec_free(struct rec *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->ev[i].event);
        free(r->ev[i].data);
        free(r->ev[i].id);
    }
    r->n = 0;
}

static int feed_str(struct sb_sse_parser *p, struct rec *r, const char *s)
{
    return sb_sse_parser_feed(p, s, strlen(s), on_record, r);
}

/* Parses `in` whole, then checks that 1-byte feeds and every two-piece split give the same
 * events. Leaves the events of the whole feed in `r`. */
static void parse_all_ways(const char *in, size_t len, struct rec *r);

static void assert_event(const struct rec *r, size_t i, const char *event, const char *data,
                         const char *id)
{
    assert_true(i < r->n);
    const struct rec_event *e = &r->ev[i];
    assert_false(e->is_comment);
    assert_int_equal(e->event_len, strlen(event));
    assert_memory_equal(e->event, event, e->event_len + 1);
    assert_int_equal(e->data_len, strlen(data));
    assert_memory_equal(e->data, data, e->data_len + 1);
    if (id) {
        assert_non_null(e->id);
        assert_int_equal(e->id_len, strlen(id));
        assert_memory_equal(e->id, id, e->id_len + 1);
    } else {
        assert_null(e->id);
    }
}

static void assert_comment(const struct rec *r, size_t i, const char *text)
{
    assert_true(i < r->n);
    assert_true(r->ev[i].is_comment);
    assert_int_equal(r->ev[i].event_len, 0);
    assert_null(r->ev[i].id);
    assert_int_equal(r->ev[i].data_len, strlen(text));
    assert_memory_equal(r->ev[i].data, text, r->ev[i].data_len);
}

/* ---- serialized event sequences, for comparing whole and split feeds -------------------- */

static int on_serialize(void *ud, const struct sb_sse_event *ev)
{
    struct sb_buf *b = ud;
    uint64_t hdr[4] = {ev->is_comment, ev->event_len, ev->data_len, ev->id ? ev->id_len + 1 : 0};
    int rc = sb_buf_append(b, hdr, sizeof hdr);
    if (rc == 0)
        rc = sb_buf_append(b, ev->event, ev->event_len);
    if (rc == 0)
        rc = sb_buf_append(b, ev->data, ev->data_len);
    if (rc == 0 && ev->id)
        rc = sb_buf_append(b, ev->id, ev->id_len);
    return rc ? 100 : 0;
}

static size_t count_events(const struct sb_buf *b, bool comments)
{
    size_t n = 0;
    for (size_t off = 0; off < b->len;) {
        uint64_t hdr[4];
        memcpy(hdr, b->data + off, sizeof hdr);
        if ((hdr[0] != 0) == comments)
            n++;
        off += sizeof hdr + hdr[1] + hdr[2] + (hdr[3] ? hdr[3] - 1 : 0);
    }
    return n;
}

/* Feeds `in` in pieces ending at the offsets in `cuts` (ascending, each < len), then the
 * rest; returns the first non-zero feed result or 0. */
static int feed_cut(const char *in, size_t len, const size_t *cuts, size_t ncuts,
                    struct sb_buf *out, bool *partial)
{
    struct sb_sse_parser p;
    sb_sse_parser_init(&p, CAP);
    size_t at = 0;
    int rc = 0;
    for (size_t i = 0; i <= ncuts && rc == 0; i++) {
        size_t to = i < ncuts ? cuts[i] : len;
        rc = sb_sse_parser_feed(&p, in + at, to - at, on_serialize, out);
        at = to;
    }
    *partial = sb_sse_parser_end(&p);
    sb_sse_parser_free(&p);
    return rc;
}

static void check_splits(const char *in, size_t len, const struct sb_buf *whole, int whole_rc,
                         bool whole_partial)
{
    struct sb_buf got;
    sb_buf_init(&got, 64u << 20);
    bool partial;
    for (size_t k = 1; k < len; k++) {
        sb_buf_reset(&got);
        int rc = feed_cut(in, len, &k, 1, &got, &partial);
        assert_int_equal(rc, whole_rc);
        assert_int_equal(partial, whole_partial);
        assert_int_equal(got.len, whole->len);
        if (got.len)
            assert_memory_equal(got.data, whole->data, got.len);
    }
    /* One byte per feed. */
    size_t *cuts = malloc((len ? len : 1) * sizeof *cuts);
    assert_non_null(cuts);
    for (size_t k = 1; k < len; k++)
        cuts[k - 1] = k;
    sb_buf_reset(&got);
    int rc = feed_cut(in, len, cuts, len ? len - 1 : 0, &got, &partial);
    free(cuts);
    assert_int_equal(rc, whole_rc);
    assert_int_equal(partial, whole_partial);
    assert_int_equal(got.len, whole->len);
    if (got.len)
        assert_memory_equal(got.data, whole->data, got.len);
    sb_buf_free(&got);
}

static void parse_all_ways(const char *in, size_t len, struct rec *r)
{
    struct sb_sse_parser p;
    sb_sse_parser_init(&p, CAP);
    assert_int_equal(sb_sse_parser_feed(&p, in, len, on_record, r), 0);
    sb_sse_parser_end(&p);
    sb_sse_parser_free(&p);

    struct sb_buf whole;
    sb_buf_init(&whole, 64u << 20);
    bool partial;
    int rc = feed_cut(in, len, NULL, 0, &whole, &partial);
    assert_int_equal(rc, 0);
    check_splits(in, len, &whole, rc, partial);
    sb_buf_free(&whole);
}

#define PARSE(str, r) parse_all_ways((str), sizeof(str) - 1, (r))

/* ---- parser: line endings ---------------------------------------------------------------- */

static void test_lf(void **state)
{
    (void)state;
    struct rec r = {0};
    PARSE("data: a\n\ndata: b\n\n", &r);
    assert_int_equal(r.n, 2);
    assert_event(&r, 0, "", "a", NULL);
    assert_event(&r, 1, "", "b", NULL);
    rec_free(&r);
}

static void test_crlf(void **state)
{
    (void)state;
    struct rec r = {0};
    PARSE("data: a\r\n\r\ndata: b\r\ndata: c\r\n\r\n", &r);
    assert_int_equal(r.n, 2);
    assert_event(&r, 0, "", "a", NULL);
    assert_event(&r, 1, "", "b\nc", NULL);
    rec_free(&r);
}

static void test_cr(void **state)
{
    (void)state;
    struct rec r = {0};
    PARSE("data: a\r\rdata: b\rdata: c\r\r", &r);
    assert_int_equal(r.n, 2);
    assert_event(&r, 0, "", "a", NULL);
    assert_event(&r, 1, "", "b\nc", NULL);
    rec_free(&r);
}

static void test_mixed_endings(void **state)
{
    (void)state;
    struct rec r = {0};
    /* "\n\r" is two line ends (LF, then CR), so it is a blank line. */
    PARSE("data: a\n\rdata: b\r\n\ndata: c\r\r\n", &r);
    assert_int_equal(r.n, 3);
    assert_event(&r, 0, "", "a", NULL);
    assert_event(&r, 1, "", "b", NULL);
    assert_event(&r, 2, "", "c", NULL);
    rec_free(&r);
}

static void test_cr_then_lf_in_next_feed(void **state)
{
    (void)state;
    struct sb_sse_parser p;
    struct rec r = {0};
    sb_sse_parser_init(&p, CAP);
    assert_int_equal(feed_str(&p, &r, "data: a\r"), 0);
    assert_int_equal(r.n, 0);
    /* The LF completes the CR; it is not a second, blank line. */
    assert_int_equal(feed_str(&p, &r, "\n"), 0);
    assert_int_equal(r.n, 0);
    assert_int_equal(feed_str(&p, &r, "data: b\r"), 0);
    assert_int_equal(feed_str(&p, &r, ""), 0); /* an empty feed keeps the pending CR */
    assert_int_equal(feed_str(&p, &r, "\n\r"), 0);
    assert_int_equal(feed_str(&p, &r, "\n"), 0);
    assert_int_equal(r.n, 1);
    assert_event(&r, 0, "", "a\nb", NULL);
    /* A CR at the end of a feed followed by a non-LF: the next byte starts a new line. */
    assert_int_equal(feed_str(&p, &r, "data: c\r"), 0);
    assert_int_equal(feed_str(&p, &r, "\r"), 0);
    assert_int_equal(r.n, 2);
    assert_event(&r, 1, "", "c", NULL);
    assert_false(sb_sse_parser_end(&p));
    sb_sse_parser_free(&p);
    rec_free(&r);
}

/* ---- parser: fields ---------------------------------------------------------------------- */

static void test_space_after_colon(void **state)
{
    (void)state;
    struct rec r = {0};
    PARSE("data:a\n\ndata: b\n\ndata:  c\n\ndata:\td\n\ndata: \n\n", &r);
    assert_int_equal(r.n, 5);
    assert_event(&r, 0, "", "a", NULL);
    assert_event(&r, 1, "", "b", NULL);
    assert_event(&r, 2, "", " c", NULL);
    assert_event(&r, 3, "", "\td", NULL);
    assert_event(&r, 4, "", "", NULL);
    rec_free(&r);
}

static void test_comments(void **state)
{
    (void)state;
    struct rec r = {0};
    PARSE(": OPENROUTER PROCESSING\n\n:keep-alive\ndata: x\n:  two spaces\n\n:\n", &r);
    assert_int_equal(r.n, 5);
    assert_comment(&r, 0, " OPENROUTER PROCESSING");
    assert_comment(&r, 1, "keep-alive");
    /* A comment inside an event is reported at once, before the event it sits in. */
    assert_comment(&r, 2, "  two spaces");
    assert_event(&r, 3, "", "x", NULL);
    assert_comment(&r, 4, "");
    rec_free(&r);
}

static void test_only_comments_no_data_event(void **state)
{
    (void)state;
    struct rec r = {0};
    PARSE(": ping\n: ping\n\n\n\n", &r);
    assert_int_equal(r.n, 2);
    assert_true(r.ev[0].is_comment);
    assert_true(r.ev[1].is_comment);
    rec_free(&r);
}

static void test_multiline_data(void **state)
{
    (void)state;
    struct rec r = {0};
    PARSE("data: {\ndata: \"a\": 1\ndata\ndata: }\n\n", &r);
    assert_int_equal(r.n, 1);
    assert_event(&r, 0, "", "{\n\"a\": 1\n\n}", NULL);
    rec_free(&r);
}

static void test_event_and_id(void **state)
{
    (void)state;
    struct rec r = {0};
    PARSE("event: message_start\nid: 7\ndata: {}\n\n"
          "data: plain\n\n"
          "event: a\nevent: b\nid: 1\nid\ndata: x\n\n"
          "id: bad\0id\ndata: y\n\n",
          &r);
    assert_int_equal(r.n, 4);
    assert_event(&r, 0, "message_start", "{}", "7");
    /* Name and id do not carry over to the next event. */
    assert_event(&r, 1, "", "plain", NULL);
    /* The last field wins; "id" with no colon sets an empty id. */
    assert_event(&r, 2, "b", "x", "");
    /* An id holding NUL is ignored. */
    assert_event(&r, 3, "", "y", NULL);
    rec_free(&r);
}

static void test_named_event_without_data(void **state)
{
    (void)state;
    struct rec r = {0};
    PARSE("event: ping\n\nid: 3\n\nretry: 10\n\n", &r);
    assert_int_equal(r.n, 1);
    assert_event(&r, 0, "ping", "", NULL);
    rec_free(&r);
}

static void test_fields_without_colon(void **state)
{
    (void)state;
    struct rec r = {0};
    PARSE("data\n\nevent\ndata\ndata\n\n", &r);
    assert_int_equal(r.n, 2);
    assert_event(&r, 0, "", "", NULL);
    assert_event(&r, 1, "", "\n", NULL);
    rec_free(&r);
}

static void test_unknown_fields_ignored(void **state)
{
    (void)state;
    struct rec r = {0};
    PARSE("foo: bar\nretry: 100\nDATA: no\ndata : no\n data: no\ndat: no\ndatum: no\n\n"
          "foo: bar\ndata: yes\nevents: no\nidx: no\n\n",
          &r);
    assert_int_equal(r.n, 1);
    assert_event(&r, 0, "", "yes", NULL);
    rec_free(&r);
}

static void test_bom(void **state)
{
    (void)state;
    struct rec r = {0};
    PARSE("\xEF\xBB\xBF"
          "data: a\n\n",
          &r);
    assert_int_equal(r.n, 1);
    assert_event(&r, 0, "", "a", NULL);
    rec_free(&r);

    /* Only one, and only at the very start: a second BOM is part of the field name. */
    PARSE("\xEF\xBB\xBF\xEF\xBB\xBF"
          "data: a\n\ndata: \xEF\xBB\xBF\n\n",
          &r);
    assert_int_equal(r.n, 1);
    assert_event(&r, 0, "", "\xEF\xBB\xBF", NULL);
    rec_free(&r);

    PARSE("data: a\n\n\xEF\xBB\xBF"
          "data: b\n\n",
          &r);
    assert_int_equal(r.n, 1);
    assert_event(&r, 0, "", "a", NULL);
    rec_free(&r);

    /* A BOM prefix that is not a BOM belongs to the first line. */
    PARSE("\xEF\xBB:x\n\xEF:y\n\n", &r);
    assert_int_equal(r.n, 0);
    PARSE("\xEF\xBB"
          "data: z\n\n",
          &r);
    assert_int_equal(r.n, 0);
    rec_free(&r);
}

static void test_bom_split_then_end(void **state)
{
    (void)state;
    struct sb_sse_parser p;
    struct rec r = {0};
    sb_sse_parser_init(&p, CAP);
    assert_int_equal(feed_str(&p, &r, "\xEF"), 0);
    assert_int_equal(feed_str(&p, &r, "\xBB"), 0);
    assert_true(sb_sse_parser_end(&p)); /* a cut BOM is a partial line */
    /* After end the parser is fresh again, BOM check included. */
    assert_int_equal(feed_str(&p, &r, "\xEF\xBB"), 0);
    assert_int_equal(feed_str(&p, &r,
                              "\xBF"
                              "data: q\n\n"),
                     0);
    assert_int_equal(r.n, 1);
    assert_event(&r, 0, "", "q", NULL);
    assert_false(sb_sse_parser_end(&p));
    sb_sse_parser_free(&p);
    rec_free(&r);
}

static void test_utf8_split(void **state)
{
    (void)state;
    struct rec r = {0};
    PARSE("data: h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80\n\n", &r);
    assert_int_equal(r.n, 1);
    assert_event(&r, 0, "", "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9F\x98\x80", NULL);
    rec_free(&r);
}

/* ---- parser: limits, callback stop, end of stream ------------------------------------------ */

static void test_too_big_data(void **state)
{
    (void)state;
    struct sb_sse_parser p;
    struct rec r = {0};
    sb_sse_parser_init(&p, 16);
    /* Exactly at the cap is fine: 16 bytes of joined data. */
    assert_int_equal(feed_str(&p, &r, "data: 0123456\ndata: 01234567\n\n"), 0);
    assert_int_equal(r.n, 1);
    assert_int_equal(r.ev[0].data_len, 16);
    /* One byte more is an error, not a truncated event. */
    assert_int_equal(feed_str(&p, &r, "data: 0123456\ndata: 012345678\n\n"), SB_SSE_E_TOO_BIG);
    assert_int_equal(r.n, 1);
    sb_sse_parser_free(&p);
    rec_free(&r);
}

static void test_too_big_line(void **state)
{
    (void)state;
    static const char line[] = "data: 0123456789abcdef\n\n"; /* 22-byte line */
    for (int split = 0; split < 2; split++) {
        struct sb_sse_parser p;
        struct rec r = {0};
        sb_sse_parser_init(&p, 21);
        int rc = 0;
        if (split) {
            for (size_t i = 0; i < sizeof line - 1 && rc == 0; i++)
                rc = sb_sse_parser_feed(&p, line + i, 1, on_record, &r);
        } else {
            rc = feed_str(&p, &r, line);
        }
        assert_int_equal(rc, SB_SSE_E_TOO_BIG);
        assert_int_equal(r.n, 0);
        /* After an error the parser is still safe to end and free. */
        sb_sse_parser_end(&p);
        sb_sse_parser_free(&p);
    }

    /* A comment line and an unknown field are lines too, and capped the same way. */
    struct sb_sse_parser p;
    struct rec r = {0};
    sb_sse_parser_init(&p, 8);
    assert_int_equal(feed_str(&p, &r, ": 1234567"), SB_SSE_E_TOO_BIG);
    sb_sse_parser_free(&p);
    sb_sse_parser_init(&p, 8);
    assert_int_equal(feed_str(&p, &r, "x: 123456\n"), SB_SSE_E_TOO_BIG);
    sb_sse_parser_free(&p);
    assert_int_equal(r.n, 0);
}

static void test_too_big_tiny_cap_with_bom(void **state)
{
    (void)state;
    /* The BOM is not part of any line, so it passes even a cap smaller than itself. */
    static const char in[] = "\xEF\xBB\xBF\n";
    for (int split = 0; split < 2; split++) {
        struct sb_sse_parser p;
        struct rec r = {0};
        sb_sse_parser_init(&p, 1);
        int rc = 0;
        for (size_t i = 0; i < sizeof in - 1 && rc == 0; i += split ? 1 : sizeof in - 1)
            rc = sb_sse_parser_feed(&p, in + i, split ? 1 : sizeof in - 1, on_record, &r);
        assert_int_equal(rc, 0);
        assert_false(sb_sse_parser_end(&p));
        /* ...but a BOM prefix that turns out to be text counts against it. */
        static const char bad[] = "\xEF\xBB\n";
        rc = 0;
        for (size_t i = 0; i < sizeof bad - 1 && rc == 0; i += split ? 1 : sizeof bad - 1)
            rc = sb_sse_parser_feed(&p, bad + i, split ? 1 : sizeof bad - 1, on_record, &r);
        assert_int_equal(rc, SB_SSE_E_TOO_BIG);
        sb_sse_parser_free(&p);
    }
}

static void test_callback_stop(void **state)
{
    (void)state;
    struct sb_sse_parser p;
    struct rec r = {.stop_at = 2, .stop_rc = 42};
    sb_sse_parser_init(&p, CAP);
    assert_int_equal(feed_str(&p, &r, "data: a\n\ndata: b\n: c\n\ndata: never\n\n"), 42);
    assert_int_equal(r.n, 2);
    assert_event(&r, 0, "", "a", NULL);
    assert_comment(&r, 1, " c");
    sb_sse_parser_free(&p); /* a pending data line must not leak */
    rec_free(&r);

    struct rec r2 = {.stop_at = 1, .stop_rc = -7};
    sb_sse_parser_init(&p, CAP);
    assert_int_equal(feed_str(&p, &r2, "event: e\ndata: x\n\ndata: y\n\n"), -7);
    assert_int_equal(r2.n, 1);
    assert_event(&r2, 0, "e", "x", NULL);
    sb_sse_parser_free(&p);
    rec_free(&r2);
}

static void test_end_reports_partial(void **state)
{
    (void)state;
    static const char *const cut[] = {
        "data: a\n\ndata: b",     /* partial line */
        "data: a\n\ndata: b\n",   /* data, no blank line */
        "data: a\n\nevent: x\n",  /* name only */
        "data: a\n\nid: 1\n",     /* id only */
        "data: a\n\nfoo",         /* unknown field, unterminated */
        "data: a\n\ndata: b\r\n", /* CRLF framing, no blank line */
    };
    static const char *const complete[] = {
        "",
        "data: a\n\n",
        "data: a\r\n\r\n",
        "data: a\r\r",
        "data: a\n\n: trailing comment\n",
        "data: a\n\nretry: 5\nfoo\n",
    };
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        struct sb_sse_parser p;
        struct rec r = {0};
        sb_sse_parser_init(&p, CAP);
        assert_int_equal(feed_str(&p, &r, cut[i]), 0);
        assert_int_equal(r.n, 1);
        assert_true(sb_sse_parser_end(&p));
        assert_int_equal(r.n, 1); /* the cut event is never dispatched */
        assert_false(sb_sse_parser_end(&p));
        sb_sse_parser_free(&p);
        rec_free(&r);
    }
    for (size_t i = 0; i < sizeof complete / sizeof complete[0]; i++) {
        struct sb_sse_parser p;
        struct rec r = {0};
        sb_sse_parser_init(&p, CAP);
        assert_int_equal(feed_str(&p, &r, complete[i]), 0);
        assert_false(sb_sse_parser_end(&p));
        sb_sse_parser_free(&p);
        rec_free(&r);
    }
}

static void test_data_pointer_survives_across_feeds(void **state)
{
    (void)state;
    /* The first data line is held by pointer within a feed; it must be copied before the
     * caller's buffer is reused for the next feed. */
    struct sb_sse_parser p;
    struct rec r = {0};
    char buf[32];
    sb_sse_parser_init(&p, CAP);
    memcpy(buf, "data: first\n", 12);
    assert_int_equal(sb_sse_parser_feed(&p, buf, 12, on_record, &r), 0);
    memset(buf, 'X', sizeof buf);
    memcpy(buf, "data: second\n\n", 14);
    assert_int_equal(sb_sse_parser_feed(&p, buf, 14, on_record, &r), 0);
    memcpy(buf, "data: third\n", 12);
    assert_int_equal(sb_sse_parser_feed(&p, buf, 12, on_record, &r), 0);
    memset(buf, 'Y', sizeof buf);
    assert_int_equal(sb_sse_parser_feed(&p, "\n", 1, on_record, &r), 0);
    assert_int_equal(r.n, 2);
    assert_event(&r, 0, "", "first\nsecond", NULL);
    assert_event(&r, 1, "", "third", NULL);
    sb_sse_parser_free(&p);
    rec_free(&r);
}

/* ---- replay of recorded provider streams ---------------------------------------------------- */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    assert_int_equal(fseek(f, 0, SEEK_SET), 0);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    *len = (size_t)n;
    return buf;
}

static void whole_events(const char *in, size_t len, struct sb_buf *out, bool *partial)
{
    sb_buf_init(out, 64u << 20);
    assert_int_equal(feed_cut(in, len, NULL, 0, out, partial), 0);
}

static size_t replay_dir(const char *sub)
{
    char dir[1024];
    int w = snprintf(dir, sizeof dir, "%s/tests/data/fixtures/%s", SB_SOURCE_DIR, sub);
    assert_true(w > 0 && (size_t)w < sizeof dir);
    DIR *d = opendir(dir);
    assert_non_null(d);
    size_t files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl < 4 || strcmp(e->d_name + nl - 4, ".sse") != 0)
            continue;
        char path[2048];
        w = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        assert_true(w > 0 && (size_t)w < sizeof path);
        size_t len;
        char *in = read_file(path, &len);
        struct sb_buf whole;
        bool partial;
        whole_events(in, len, &whole, &partial);
        assert_false(partial); /* every recording ends with a blank line */
        assert_true(count_events(&whole, false) > 0);
        check_splits(in, len, &whole, 0, partial);
        sb_buf_free(&whole);
        free(in);
        files++;
    }
    closedir(d);
    return files;
}

static void test_replay_fixtures(void **state)
{
    (void)state;
    assert_true(replay_dir("openai") >= 5);
    assert_true(replay_dir("anthropic") >= 5);
    assert_true(replay_dir("gemini") >= 3);
}

static void load_fixture(const char *name, struct rec *r)
{
    char path[1024];
    int w = snprintf(path, sizeof path, "%s/tests/data/fixtures/%s", SB_SOURCE_DIR, name);
    assert_true(w > 0 && (size_t)w < sizeof path);
    size_t len;
    char *in = read_file(path, &len);
    struct sb_sse_parser p;
    sb_sse_parser_init(&p, CAP);
    assert_int_equal(sb_sse_parser_feed(&p, in, len, on_record, r), 0);
    assert_false(sb_sse_parser_end(&p));
    sb_sse_parser_free(&p);
    free(in);
}

static void test_fixture_openai_chat(void **state)
{
    (void)state;
    struct rec r = {0};
    load_fixture("openai/chat_stream_text.sse", &r);
    assert_int_equal(r.n, 51);
    for (size_t i = 0; i < r.n; i++) {
        assert_false(r.ev[i].is_comment);
        assert_int_equal(r.ev[i].event_len, 0);
        assert_null(r.ev[i].id);
    }
    assert_true(r.ev[0].data_len > 0 && r.ev[0].data[0] == '{');
    assert_event(&r, 50, "", "[DONE]", NULL);
    rec_free(&r);
}

static void test_fixture_gemini_crlf(void **state)
{
    (void)state;
    struct rec r = {0};
    load_fixture("gemini/stream_text_with_thoughts.sse", &r);
    assert_int_equal(r.n, 6);
    for (size_t i = 0; i < r.n; i++) {
        /* CRLF framing: no CR may leak into the payload. */
        assert_null(memchr(r.ev[i].data, '\r', r.ev[i].data_len));
        assert_true(r.ev[i].data_len > 2 && r.ev[i].data[0] == '{');
        assert_int_equal(r.ev[i].data[r.ev[i].data_len - 1], '}');
    }
    rec_free(&r);
}

static void test_fixture_anthropic_named(void **state)
{
    (void)state;
    struct rec r = {0};
    load_fixture("anthropic/messages_stream_text.sse", &r);
    assert_int_equal(r.n, 9);
    assert_int_equal(r.ev[0].event_len, strlen("message_start"));
    assert_string_equal(r.ev[0].event, "message_start");
    assert_string_equal(r.ev[r.n - 1].event, "message_stop");
    for (size_t i = 0; i < r.n; i++) {
        char want[64];
        int w = snprintf(want, sizeof want, "\"%s\"", r.ev[i].event);
        assert_true(w > 0 && (size_t)w < sizeof want);
        assert_non_null(strstr(r.ev[i].data, want));
    }
    rec_free(&r);
}

/* ---- writer -----------------------------------------------------------------------------------
 */

static void roundtrip_n(const char *event, const char *data, size_t data_len, const char *expect,
                        size_t expect_len)
{
    struct sb_buf out;
    sb_buf_init(&out, 1 << 20);
    assert_int_equal(sb_sse_write(&out, event, strlen(event), data, data_len), 0);
    struct rec r = {0};
    parse_all_ways(out.data, out.len, &r);
    assert_int_equal(r.n, 1);
    assert_false(r.ev[0].is_comment);
    assert_string_equal(r.ev[0].event, event);
    assert_int_equal(r.ev[0].data_len, expect_len);
    assert_memory_equal(r.ev[0].data, expect, expect_len);
    assert_null(r.ev[0].id);
    rec_free(&r);
    sb_buf_free(&out);
}

static void roundtrip(const char *event, const char *data, size_t data_len, const char *expect)
{
    roundtrip_n(event, data, data_len, expect, strlen(expect));
}

static void test_write_format(void **state)
{
    (void)state;
    struct sb_buf out;
    sb_buf_init(&out, 1 << 20);
    assert_int_equal(sb_sse_write(&out, NULL, 0, "{\"a\":1}", 7), 0);
    assert_string_equal(out.data, "data: {\"a\":1}\n\n");
    sb_buf_reset(&out);
    assert_int_equal(sb_sse_write(&out, "message_start", 13, "x\ny", 3), 0);
    assert_string_equal(out.data, "event: message_start\ndata: x\ndata: y\n\n");
    sb_buf_reset(&out);
    assert_int_equal(sb_sse_write(&out, NULL, 0, NULL, 0), 0);
    assert_string_equal(out.data, "data: \n\n");
    sb_buf_reset(&out);
    assert_int_equal(sb_sse_write(&out, NULL, 0, "a\r\nb\rc\n", 7), 0);
    assert_string_equal(out.data, "data: a\ndata: b\ndata: c\ndata: \n\n");
    /* Appends: a second event follows the first. */
    assert_int_equal(sb_sse_write(&out, "e", 1, "[DONE]", 6), 0);
    assert_string_equal(out.data,
                        "data: a\ndata: b\ndata: c\ndata: \n\nevent: e\ndata: [DONE]\n\n");
    sb_buf_free(&out);
}

static void test_write_roundtrip(void **state)
{
    (void)state;
    roundtrip("", "{\"choices\":[]}", 14, "{\"choices\":[]}");
    roundtrip("content_block_delta", "a\nb\n\nc", 6, "a\nb\n\nc");
    roundtrip("", "", 0, "");
    roundtrip("", "\n", 1, "\n");
    roundtrip("", " leading space", 14, " leading space");
    roundtrip("", ": not a comment", 15, ": not a comment");
    roundtrip("", "data: x\n\ndata: y", 16, "data: x\n\ndata: y");
    roundtrip("", "a\r\nb\rc", 6, "a\nb\nc"); /* CR and CRLF become LF */
    roundtrip_n("", "nul\0inside", 10, "nul\0inside", 10);
    roundtrip("x:y",
              "\xEF\xBB\xBF"
              "bom",
              6,
              "\xEF\xBB\xBF"
              "bom");
}

static void test_write_errors(void **state)
{
    (void)state;
    struct sb_buf out;
    sb_buf_init(&out, 24);
    assert_int_equal(sb_sse_write(&out, "a\nb", 3, "x", 1), -EINVAL);
    assert_int_equal(sb_sse_write(&out, "a\rb", 3, "x", 1), -EINVAL);
    assert_int_equal(out.len, 0);
    assert_int_equal(sb_sse_write(&out, NULL, 0, "0123456789", 10), 0); /* 18 bytes */
    /* A write that passes the cap fails whole: `out` keeps only the first event. */
    assert_int_equal(sb_sse_write(&out, NULL, 0, "ab", 2), -E2BIG);
    assert_int_equal(out.len, 18);
    assert_string_equal(out.data, "data: 0123456789\n\n");
    assert_int_equal(sb_sse_write(&out, "e", 1, "", 0), -E2BIG);
    assert_string_equal(out.data, "data: 0123456789\n\n");
    sb_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lf),
        cmocka_unit_test(test_crlf),
        cmocka_unit_test(test_cr),
        cmocka_unit_test(test_mixed_endings),
        cmocka_unit_test(test_cr_then_lf_in_next_feed),
        cmocka_unit_test(test_space_after_colon),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_only_comments_no_data_event),
        cmocka_unit_test(test_multiline_data),
        cmocka_unit_test(test_event_and_id),
        cmocka_unit_test(test_named_event_without_data),
        cmocka_unit_test(test_fields_without_colon),
        cmocka_unit_test(test_unknown_fields_ignored),
        cmocka_unit_test(test_bom),
        cmocka_unit_test(test_bom_split_then_end),
        cmocka_unit_test(test_utf8_split),
        cmocka_unit_test(test_too_big_data),
        cmocka_unit_test(test_too_big_line),
        cmocka_unit_test(test_too_big_tiny_cap_with_bom),
        cmocka_unit_test(test_callback_stop),
        cmocka_unit_test(test_end_reports_partial),
        cmocka_unit_test(test_data_pointer_survives_across_feeds),
        cmocka_unit_test(test_replay_fixtures),
        cmocka_unit_test(test_fixture_openai_chat),
        cmocka_unit_test(test_fixture_gemini_crlf),
        cmocka_unit_test(test_fixture_anthropic_named),
        cmocka_unit_test(test_write_format),
        cmocka_unit_test(test_write_roundtrip),
        cmocka_unit_test(test_write_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

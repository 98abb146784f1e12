/* SSE parser: feeding a stream in arbitrary pieces must give exactly the events of one whole
 * feed (same names, data, ids, comments, and the same TOO_BIG outcome and end-of-stream
 * report). Piece sizes come from the input's own bytes, so the seeds are plain SSE streams.
 * Also checks that anything the writer produces parses back to one event. */
#include "http/sse.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CAP (64 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Each event as [is_comment, event_len, data_len, id_len + 1 or 0] then the bytes. */
static int on_event(void *ud, const struct sb_sse_event *ev)
{
    struct sb_buf *b = ud;
    if (!ev->event || !ev->data || (ev->is_comment && (ev->event_len || ev->id)))
        abort();
    uint64_t hdr[4] = {ev->is_comment, ev->event_len, ev->data_len, ev->id ? ev->id_len + 1 : 0};
    if (sb_buf_append(b, hdr, sizeof hdr) || sb_buf_append(b, ev->event, ev->event_len) ||
        sb_buf_append(b, ev->data, ev->data_len) ||
        (ev->id && sb_buf_append(b, ev->id, ev->id_len)))
        abort();
    return 0;
}

struct run {
    struct sb_buf events;
    int rc;
    bool partial;
};

/* Feeds the input whole (mode 0), one byte at a time (mode 1), or in pieces whose sizes
 * are read from the input itself (mode 2). */
static void run_parser(struct run *r, const uint8_t *data, size_t size, size_t cap, int mode)
{
    struct sb_sse_parser p;
    sb_sse_parser_init(&p, cap);
    sb_buf_init(&r->events, SIZE_MAX / 2);
    const char *in = (const char *)data;
    size_t key = size ? data[0] : 0;
    size_t span = 1 + (key & 0x3f);
    size_t at = 0;
    int rc = 0;
    for (size_t i = 0; at < size && rc == 0; i++) {
        size_t n;
        if (mode == 0) {
            n = size;
        } else if (mode == 1) {
            n = 1;
        } else {
            uint8_t b = data[(i + key) % size];
            n = 1 + b % span;
            if ((key & 0x40) && b == 0xFF)
                n = size; /* now and then, the whole rest in one piece */
            if ((key & 0x80) && (b & 0x0F) == 0)
                rc = sb_sse_parser_feed(&p, in + at, 0, on_event, &r->events);
        }
        if (n > size - at)
            n = size - at;
        if (rc == 0)
            rc = sb_sse_parser_feed(&p, in + at, n, on_event, &r->events);
        at += n;
    }
    r->rc = rc;
    r->partial = sb_sse_parser_end(&p);
    sb_sse_parser_free(&p);
}

static void same(const struct run *a, const struct run *b)
{
    if (a->rc != b->rc || a->events.len != b->events.len ||
        (a->events.len && memcmp(a->events.data, b->events.data, a->events.len) != 0))
        abort();
    /* After an error the rest of the stream is dropped, so what is left pending differs. */
    if (a->rc == 0 && a->partial != b->partial)
        abort();
    if (a->rc != 0 && a->rc != SB_SSE_E_TOO_BIG)
        abort();
}

static void check_splits(const uint8_t *data, size_t size, size_t cap)
{
    struct run whole, split;
    run_parser(&whole, data, size, cap, 0);
    run_parser(&split, data, size, cap, 2);
    same(&whole, &split);
    sb_buf_free(&split.events);
    if (size <= 4096) {
        run_parser(&split, data, size, cap, 1);
        same(&whole, &split);
        sb_buf_free(&split.events);
    }
    sb_buf_free(&whole.events);
}

struct one_event {
    int n;
    struct sb_buf data;
    struct sb_buf event;
};

static int on_written(void *ud, const struct sb_sse_event *ev)
{
    struct one_event *o = ud;
    if (ev->is_comment || ev->id)
        abort();
    o->n++;
    if (sb_buf_append(&o->event, ev->event, ev->event_len) ||
        sb_buf_append(&o->data, ev->data, ev->data_len))
        abort();
    return 0;
}

/* The writer splits the input into a name (up to the first CR/LF, at most 32 bytes) and
 * data; reading its output back must give the name and the data with CR and CRLF as LF. */
static void check_writer(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    size_t name_len = 0;
    while (name_len < size && name_len < 32 && in[name_len] != '\n' && in[name_len] != '\r')
        name_len++;
    struct sb_buf out;
    sb_buf_init(&out, CAP * 4);
    if (sb_sse_write(&out, in, name_len, in, size) != 0)
        abort();

    struct sb_buf want;
    sb_buf_init(&want, CAP * 4);
    for (size_t i = 0; i < size; i++) {
        char c = in[i];
        if (c == '\r') {
            c = '\n';
            if (i + 1 < size && in[i + 1] == '\n')
                i++;
        }
        if (sb_buf_append_char(&want, c))
            abort();
    }

    struct one_event o = {.n = 0};
    sb_buf_init(&o.data, CAP * 4);
    sb_buf_init(&o.event, CAP * 4);
    struct sb_sse_parser p;
    sb_sse_parser_init(&p, CAP * 4);
    if (sb_sse_parser_feed(&p, out.data, out.len, on_written, &o) != 0 || sb_sse_parser_end(&p))
        abort();
    if (o.n != 1 || o.event.len != name_len ||
        memcmp(o.event.data ? o.event.data : "", in, name_len) != 0)
        abort();
    if (o.data.len != want.len || (want.len && memcmp(o.data.data, want.data, want.len) != 0))
        abort();
    sb_sse_parser_free(&p);
    sb_buf_free(&o.data);
    sb_buf_free(&o.event);
    sb_buf_free(&want);
    sb_buf_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_splits(data, size, CAP);
    /* A small cap taken from the input, so TOO_BIG is reached on short inputs too. */
    if (size >= 2)
        check_splits(data, size, 1 + data[size - 1] % 64);
    if (size <= CAP)
        check_writer(data, size);
    return 0;
}

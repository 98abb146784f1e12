/* Anthropic provider decoders: a whole response body, an error body, and a stream split in
 * two at a position taken from the first byte, the whole stream then fed again one byte at a
 * time. Every event sequence must fold cleanly into a canonical response (the aggregator
 * checks the order), and both feeds of a stream must give the same outcome. */
#include "canon/codecs.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_EVENT (64 * 1024)
#define MAX_TEXT  (1024 * 1024)

struct sink {
    struct sb_canon_resp resp;
    size_t events;
};

static int on_event(void *ud, const struct sb_canon_event *ev)
{
    struct sink *s = ud;
    s->events++;
    /* An order violation by the decoder is a bug: the aggregator reports it. */
    int rc = sb_canon_resp_event(&s->resp, ev);
    if (rc == SB_CANON_E_INVALID)
        abort();
    return rc;
}

static int run_stream(const char *p, size_t size, size_t split, bool bytewise, size_t *events)
{
    const struct sb_provider_codec *c = &sb_codec_anthropic;
    struct sink s;
    sb_canon_resp_init(&s.resp, MAX_TEXT);
    s.events = 0;
    void *st = c->stream_new(MAX_EVENT);
    if (!st)
        abort();
    int rc = 0;
    if (bytewise) {
        for (size_t i = 0; i < size && rc == 0; i++)
            rc = c->stream_feed(st, p + i, 1, on_event, &s);
    } else {
        rc = c->stream_feed(st, p, split, on_event, &s);
        if (rc == 0)
            rc = c->stream_feed(st, p + split, size - split, on_event, &s);
    }
    if (rc == 0)
        rc = c->stream_end(st, on_event, &s);
    c->stream_free(st);
    *events = s.events;
    sb_canon_resp_free(&s.resp);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct sb_provider_codec *c = &sb_codec_anthropic;
    const char *p = (const char *)data;

    struct sink s;
    sb_canon_resp_init(&s.resp, MAX_TEXT);
    s.events = 0;
    (void)c->decode_response(p, size, on_event, &s);
    sb_canon_resp_free(&s.resp);

    struct sb_canon_error err;
    memset(&err, 0, sizeof err);
    (void)c->decode_error(size ? data[0] + 300 : 500, p, size, &err);
    if (memchr(err.type, '\0', sizeof err.type) == NULL ||
        memchr(err.message, '\0', sizeof err.message) == NULL)
        abort();

    size_t split = size ? (size_t)data[0] * size / 256 : 0;
    size_t n1 = 0, n2 = 0;
    int rc1 = run_stream(p, size, split, false, &n1);
    if (size <= 4096) {
        int rc2 = run_stream(p, size, 0, true, &n2);
        if (rc1 != rc2 || n1 != n2)
            abort();
    }
    return 0;
}

/* Event-stream framing: any bytes, fed whole and split at a position taken from the first
 * byte and one byte at a time, must give the same messages and the same outcome; every
 * message reported must re-encode to a frame that decodes to the same headers and payload. */
#include "canon/eventstream.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_MSG (64 * 1024)

static int on_msg(void *ud, const struct sb_evstream_msg *m)
{
    struct sb_buf *log = ud;
    const char *v[4] = {m->message_type, m->event_type, m->exception_type, m->content_type};
    for (int i = 0; i < 4; i++) {
        if (v[i] && strlen(v[i]) > SB_EVSTREAM_HEADER_VALUE_MAX)
            abort();
        if (sb_buf_append_str(log, v[i] ? v[i] : "\x01") || sb_buf_append_char(log, '\0'))
            abort();
    }
    uint64_t n = m->payload_len;
    if (n > MAX_MSG || sb_buf_append(log, &n, sizeof n) || sb_buf_append(log, m->payload, n))
        abort();
    return 0;
}

static int run(const uint8_t *d, size_t n, size_t split, bool bytewise, struct sb_buf *log,
               bool *partial)
{
    struct sb_evstream es;
    sb_evstream_init(&es, MAX_MSG);
    int rc = 0;
    if (bytewise) {
        for (size_t i = 0; i < n && !rc; i++)
            rc = sb_evstream_feed(&es, (const char *)d + i, 1, on_msg, log);
    } else {
        rc = sb_evstream_feed(&es, (const char *)d, split, on_msg, log);
        if (!rc)
            rc = sb_evstream_feed(&es, (const char *)d + split, n - split, on_msg, log);
    }
    *partial = sb_evstream_partial(&es);
    if (rc && sb_evstream_feed(&es, "x", 1, on_msg, log) != rc)
        abort(); /* errors are sticky */
    sb_evstream_free(&es);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t split = size > 1 ? data[0] % size : 0;
    struct sb_buf a, b, c;
    sb_buf_init(&a, 1 << 22);
    sb_buf_init(&b, 1 << 22);
    sb_buf_init(&c, 1 << 22);
    bool pa, pb, pc;
    int ra = run(data, size, size, false, &a, &pa);
    int rb = run(data, size, split, false, &b, &pb);
    int rc = size <= 4096 ? run(data, size, 0, true, &c, &pc) : ra;
    if (size > 4096) {
        pc = pa;
        sb_buf_free(&c);
        c = a;
        sb_buf_init(&a, 0);
        sb_buf_append(&a, c.data ? c.data : "", c.len);
    }
    if (ra != rb || ra != rc || a.len != b.len || a.len != c.len ||
        (a.len && (memcmp(a.data, b.data, a.len) || memcmp(a.data, c.data, a.len))))
        abort();
    if (!ra && (pa != pb || pa != pc))
        abort();
    sb_buf_free(&a);
    sb_buf_free(&b);
    sb_buf_free(&c);

    /* the encoder's frames always decode */
    const char *names[] = {":event-type", ":message-type"};
    char val[64];
    size_t vl = size < sizeof val - 1 ? size : sizeof val - 1;
    for (size_t i = 0; i < vl; i++)
        val[i] = (char)(data[i] ? data[i] : 'z');
    val[vl] = '\0';
    const char *vals[] = {val, "event"};
    struct sb_buf f, log;
    sb_buf_init(&f, MAX_MSG);
    sb_buf_init(&log, 1 << 20);
    if (sb_evstream_encode(&f, names, vals, vl ? 2 : 0, (const char *)data,
                           size < 1024 ? size : 1024) == 0) {
        bool p;
        if (run((const uint8_t *)f.data, f.len, f.len / 2, false, &log, &p) != 0 || p)
            abort();
    }
    sb_buf_free(&f);
    sb_buf_free(&log);
    return 0;
}

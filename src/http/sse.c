#include "http/sse.h"

#include <errno.h>
#include <string.h>

static const unsigned char utf8_bom[3] = {0xEF, 0xBB, 0xBF};

/* State that lives only for one sb_sse_parser_feed call. The first data line of an event is
 * kept as a pointer into the caller's bytes while those bytes are alive, so the common
 * one-line event ("data: {...}" + blank line in one read) is dispatched without a copy. */
struct feed_ctx {
    sb_sse_event_cb cb;
    void *ud;
    const char *pend; /* first data value, still in the caller's buffer; NULL when none */
    size_t pend_len;
};

static int map_buf_err(int rc)
{
    return rc == -E2BIG ? SB_SSE_E_TOO_BIG : rc;
}

void sb_sse_parser_init(struct sb_sse_parser *p, size_t max_event_bytes)
{
    sb_buf_init(&p->line, max_event_bytes);
    sb_buf_init(&p->data, max_event_bytes);
    sb_buf_init(&p->event, max_event_bytes);
    sb_buf_init(&p->id, max_event_bytes);
    p->has_id = false;
    p->has_data = false;
    p->last_was_cr = false;
    p->bom_checked = false;
    p->max_event_bytes = max_event_bytes;
}

void sb_sse_parser_free(struct sb_sse_parser *p)
{
    sb_buf_free(&p->line);
    sb_buf_free(&p->data);
    sb_buf_free(&p->event);
    sb_buf_free(&p->id);
}

static void reset_event(struct sb_sse_parser *p, struct feed_ctx *ctx)
{
    sb_buf_reset(&p->data);
    sb_buf_reset(&p->event);
    sb_buf_reset(&p->id);
    p->has_data = false;
    p->has_id = false;
    ctx->pend = NULL;
    ctx->pend_len = 0;
}

/* Moves a data value that still points into the caller's bytes into the parser, before
 * those bytes go away or before a second data line is joined to it. */
static int flush_pend(struct sb_sse_parser *p, struct feed_ctx *ctx)
{
    if (!ctx->pend)
        return 0;
    int rc = sb_buf_append(&p->data, ctx->pend, ctx->pend_len);
    ctx->pend = NULL;
    ctx->pend_len = 0;
    return map_buf_err(rc);
}

static int dispatch(struct sb_sse_parser *p, struct feed_ctx *ctx)
{
    /* WHATWG drops an event with an empty data buffer; a named event with no data is kept
     * (see sse.h) so that a bare "event: x" from a provider is not lost. */
    if (!p->has_data && p->event.len == 0) {
        reset_event(p, ctx);
        return 0;
    }
    struct sb_sse_event ev = {
        .event = p->event.len ? p->event.data : "",
        .event_len = p->event.len,
        .data = ctx->pend ? ctx->pend : (p->data.len ? p->data.data : ""),
        .data_len = ctx->pend ? ctx->pend_len : p->data.len,
        .id = p->has_id ? (p->id.len ? p->id.data : "") : NULL,
        .id_len = p->has_id ? p->id.len : 0,
        .is_comment = false,
    };
    int rc = ctx->cb(ctx->ud, &ev);
    reset_event(p, ctx);
    return rc;
}

static int add_data(struct sb_sse_parser *p, struct feed_ctx *ctx, const char *v, size_t n,
                    bool stable)
{
    if (!p->has_data) {
        p->has_data = true;
        if (stable) {
            ctx->pend = v;
            ctx->pend_len = n;
            return 0;
        }
        return map_buf_err(sb_buf_append(&p->data, v, n));
    }
    int rc = flush_pend(p, ctx);
    if (rc)
        return rc;
    /* Reserve both bytes first so a failure leaves the joined data as it was. */
    rc = sb_buf_reserve(&p->data, n + 1);
    if (rc)
        return map_buf_err(rc);
    sb_buf_append_char(&p->data, '\n');
    sb_buf_append(&p->data, v, n);
    return 0;
}

static int set_field(struct sb_buf *b, const char *v, size_t n)
{
    sb_buf_reset(b);
    return map_buf_err(sb_buf_append(b, v, n));
}

/* One complete line without its terminator. `stable` says the bytes stay valid until the
 * end of the current feed (they are the caller's, not the parser's line buffer). */
static int process_line(struct sb_sse_parser *p, struct feed_ctx *ctx, const char *l, size_t n,
                        bool stable)
{
    /* Checked here as well as by the line buffer so that a long line fails the same way
     * whether it arrived in one feed or in many. */
    if (n > p->max_event_bytes)
        return SB_SSE_E_TOO_BIG;
    if (n == 0)
        return dispatch(p, ctx);
    if (l[0] == ':') {
        struct sb_sse_event ev = {
            .event = "",
            .event_len = 0,
            .data = l + 1,
            .data_len = n - 1,
            .id = NULL,
            .id_len = 0,
            .is_comment = true,
        };
        return ctx->cb(ctx->ud, &ev);
    }
    const char *colon = memchr(l, ':', n);
    size_t flen = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vlen = colon ? n - flen - 1 : 0;
    if (vlen && v[0] == ' ') {
        v++;
        vlen--;
    }
    switch (flen) {
    case 4:
        if (memcmp(l, "data", 4) == 0)
            return add_data(p, ctx, v, vlen, stable);
        break;
    case 5:
        if (memcmp(l, "event", 5) == 0)
            return set_field(&p->event, v, vlen);
        break;
    case 2:
        if (memcmp(l, "id", 2) == 0 && !memchr(v, '\0', vlen)) {
            p->has_id = true;
            return set_field(&p->id, v, vlen);
        }
        break;
    default:
        break;
    }
    return 0; /* "retry" and unknown fields are ignored */
}

/* Called until the first bytes of the stream decide whether it starts with a BOM. While
 * undecided, the line buffer holds the BOM bytes matched so far; if the stream turns out
 * not to start with a BOM they are simply the start of the first line. Returns how many
 * bytes of `buf` were consumed, or a negative error. */
static long skip_bom(struct sb_sse_parser *p, const char *buf, size_t len)
{
    size_t have = p->line.len;
    size_t i = 0;
    while (have + i < sizeof utf8_bom && i < len && (unsigned char)buf[i] == utf8_bom[have + i])
        i++;
    if (have + i == sizeof utf8_bom) {
        sb_buf_reset(&p->line);
        p->bom_checked = true;
        return (long)i;
    }
    if (i == len) {
        /* Still a BOM prefix. Let up to three bytes in even under a tiny cap: a line
         * made of them is measured against the cap in process_line anyway. */
        size_t keep = p->line.max;
        if (p->line.max < sizeof utf8_bom)
            p->line.max = sizeof utf8_bom;
        int rc = sb_buf_append(&p->line, buf, len);
        p->line.max = keep;
        return rc ? map_buf_err(rc) : (long)len;
    }
    p->bom_checked = true;
    return 0;
}

int sb_sse_parser_feed(struct sb_sse_parser *p, const char *buf, size_t len, sb_sse_event_cb cb,
                       void *ud)
{
    struct feed_ctx ctx = {.cb = cb, .ud = ud, .pend = NULL, .pend_len = 0};
    const char *s = buf;
    const char *end = buf + len;
    int rc = 0;

    if (len == 0)
        return 0;
    if (!p->bom_checked) {
        long used = skip_bom(p, buf, len);
        if (used < 0)
            return (int)used;
        s += used;
    }
    if (p->last_was_cr && s < end) {
        p->last_was_cr = false;
        if (*s == '\n')
            s++;
    }

    /* Next '\n' at or after s, kept across lines so that a stream framed with bare CRs
     * is not rescanned to its end for every line. */
    const char *nl = NULL;
    bool nl_known = false;
    while (s < end) {
        if (!nl_known || (nl && nl < s)) {
            nl = memchr(s, '\n', (size_t)(end - s));
            nl_known = true;
        }
        const char *stop = nl ? nl : end;
        const char *eol = memchr(s, '\r', (size_t)(stop - s));
        if (!eol)
            eol = nl;
        if (!eol) {
            rc = map_buf_err(sb_buf_append(&p->line, s, (size_t)(end - s)));
            break;
        }
        if (p->line.len) {
            rc = map_buf_err(sb_buf_append(&p->line, s, (size_t)(eol - s)));
            if (rc == 0)
                rc = process_line(p, &ctx, p->line.data, p->line.len, false);
            sb_buf_reset(&p->line);
        } else {
            rc = process_line(p, &ctx, s, (size_t)(eol - s), true);
        }
        if (rc)
            break;
        s = eol + 1;
        if (*eol == '\r') {
            if (s == end)
                p->last_was_cr = true;
            else if (*s == '\n')
                s++;
        }
    }

    int frc = flush_pend(p, &ctx);
    return rc ? rc : frc;
}

bool sb_sse_parser_end(struct sb_sse_parser *p)
{
    bool partial = p->line.len > 0 || p->has_data || p->event.len > 0 || p->has_id;
    sb_buf_reset(&p->line);
    sb_buf_reset(&p->data);
    sb_buf_reset(&p->event);
    sb_buf_reset(&p->id);
    p->has_data = false;
    p->has_id = false;
    p->last_was_cr = false;
    p->bom_checked = false;
    return partial;
}

/* Appends `n` bytes of `data` as data lines. CR, LF and CRLF all end a line, so a value
 * carrying any of them still frames as exactly one event. */
static int write_data_lines(struct sb_buf *out, const char *data, size_t n)
{
    const char *s = data;
    const char *end = data + n;
    const char *nl = NULL;
    bool nl_known = false;
    for (;;) {
        if (!nl_known || (nl && nl < s)) {
            nl = s < end ? memchr(s, '\n', (size_t)(end - s)) : NULL;
            nl_known = true;
        }
        const char *stop = nl ? nl : end;
        const char *eol = memchr(s, '\r', (size_t)(stop - s));
        if (!eol)
            eol = nl;
        const char *line_end = eol ? eol : end;
        int rc = sb_buf_append(out, "data: ", 6);
        if (rc == 0)
            rc = sb_buf_append(out, s, (size_t)(line_end - s));
        if (rc == 0)
            rc = sb_buf_append_char(out, '\n');
        if (rc || !eol)
            return rc;
        s = eol + 1;
        if (*eol == '\r' && s < end && *s == '\n')
            s++;
    }
}

int sb_sse_write(struct sb_buf *out, const char *event, size_t event_len, const char *data,
                 size_t data_len)
{
    if (event_len && (memchr(event, '\n', event_len) || memchr(event, '\r', event_len)))
        return -EINVAL;
    size_t start = out->len;
    int rc = 0;
    if (event_len) {
        rc = sb_buf_append(out, "event: ", 7);
        if (rc == 0)
            rc = sb_buf_append(out, event, event_len);
        if (rc == 0)
            rc = sb_buf_append_char(out, '\n');
    }
    if (rc == 0)
        rc = write_data_lines(out, data_len ? data : "", data_len);
    if (rc == 0)
        rc = sb_buf_append_char(out, '\n');
    if (rc && out->data) {
        out->len = start;
        out->data[start] = '\0';
    }
    return rc;
}

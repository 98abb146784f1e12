#include "canon/eventstream.h"

#include <zlib.h>

#include <errno.h>
#include <string.h>

#define PRELUDE 12
#define MIN_MSG 16

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static void put_u32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

static uint32_t crc(const void *p, size_t n)
{
    return (uint32_t)crc32(0L, p, (uInt)n);
}

void sb_evstream_init(struct sb_evstream *d, size_t max_message_bytes)
{
    memset(d, 0, sizeof *d);
    d->max = max_message_bytes < MIN_MSG ? MIN_MSG : max_message_bytes;
    if (d->max > UINT32_MAX)
        d->max = UINT32_MAX;
    sb_buf_init(&d->buf, d->max);
}

void sb_evstream_free(struct sb_evstream *d)
{
    sb_buf_free(&d->buf);
}

bool sb_evstream_partial(const struct sb_evstream *d)
{
    return d->buf.len > 0;
}

/* Copies a string header's value into `dst` (NUL-terminated). */
static int keep(char *dst, const unsigned char *v, size_t n)
{
    if (n > SB_EVSTREAM_HEADER_VALUE_MAX || memchr(v, '\0', n))
        return SB_EVSTREAM_E_HEADER;
    memcpy(dst, v, n);
    dst[n] = '\0';
    return 0;
}

static int dispatch(struct sb_evstream *d, sb_evstream_cb cb, void *ud)
{
    const unsigned char *m = (const unsigned char *)d->buf.data;
    size_t total = d->need;
    size_t hlen = get_u32(m + 4);
    if (crc(m, total - 4) != get_u32(m + total - 4))
        return SB_EVSTREAM_E_MESSAGE_CRC;

    char vals[4][SB_EVSTREAM_HEADER_VALUE_MAX + 1];
    bool have[4] = {false, false, false, false};
    static const char *const names[4] = {":message-type", ":event-type", ":exception-type",
                                         ":content-type"};
    const unsigned char *h = m + PRELUDE, *end = h + hlen;
    while (h < end) {
        size_t nlen = *h++;
        if (nlen == 0 || (size_t)(end - h) < nlen + 1)
            return SB_EVSTREAM_E_HEADER;
        const unsigned char *name = h;
        h += nlen;
        unsigned type = *h++;
        size_t vlen;
        switch (type) {
        case 0:
        case 1:
            vlen = 0;
            break;
        case 2:
            vlen = 1;
            break;
        case 3:
            vlen = 2;
            break;
        case 4:
            vlen = 4;
            break;
        case 5:
        case 8:
            vlen = 8;
            break;
        case 9:
            vlen = 16;
            break;
        case 6:
        case 7:
            if (end - h < 2)
                return SB_EVSTREAM_E_HEADER;
            vlen = (size_t)h[0] << 8 | h[1];
            h += 2;
            break;
        default:
            return SB_EVSTREAM_E_HEADER;
        }
        if ((size_t)(end - h) < vlen)
            return SB_EVSTREAM_E_HEADER;
        if (type == 7) {
            for (int i = 0; i < 4; i++) {
                if (strlen(names[i]) == nlen && memcmp(names[i], name, nlen) == 0) {
                    int rc = keep(vals[i], h, vlen);
                    if (rc)
                        return rc;
                    have[i] = true;
                }
            }
        }
        h += vlen;
    }
    struct sb_evstream_msg msg = {
        .message_type = have[0] ? vals[0] : NULL,
        .event_type = have[1] ? vals[1] : NULL,
        .exception_type = have[2] ? vals[2] : NULL,
        .content_type = have[3] ? vals[3] : NULL,
        .payload = (const char *)end,
        .payload_len = total - PRELUDE - hlen - 4,
    };
    if (cb && cb(ud, &msg))
        return SB_EVSTREAM_E_STOP;
    return 0;
}

int sb_evstream_feed(struct sb_evstream *d, const char *data, size_t len, sb_evstream_cb cb,
                     void *ud)
{
    if (d->err)
        return d->err;
    while (len > 0) {
        /* take only what the current stage needs, so the buffer never exceeds a message */
        size_t want = d->need ? d->need - d->buf.len : PRELUDE - d->buf.len;
        size_t take = len < want ? len : want;
        int rc = sb_buf_append(&d->buf, data, take);
        if (rc)
            return d->err = (rc == -E2BIG ? SB_EVSTREAM_E_TOO_BIG : rc);
        data += take;
        len -= take;
        if (!d->need) {
            if (d->buf.len < PRELUDE)
                break;
            const unsigned char *p = (const unsigned char *)d->buf.data;
            if (crc(p, 8) != get_u32(p + 8))
                return d->err = SB_EVSTREAM_E_PRELUDE_CRC;
            uint32_t total = get_u32(p), hlen = get_u32(p + 4);
            if (total > d->max)
                return d->err = SB_EVSTREAM_E_TOO_BIG;
            if (total < MIN_MSG || hlen > total - MIN_MSG)
                return d->err = SB_EVSTREAM_E_LENGTH;
            d->need = total;
        }
        if (d->buf.len < d->need)
            continue;
        rc = dispatch(d, cb, ud);
        sb_buf_reset(&d->buf);
        d->need = 0;
        if (rc)
            return d->err = rc;
    }
    return 0;
}

int sb_evstream_encode(struct sb_buf *out, const char *const *header_names,
                       const char *const *header_values, size_t nheaders, const char *payload,
                       size_t len)
{
    size_t hlen = 0;
    for (size_t i = 0; i < nheaders; i++) {
        size_t n = strlen(header_names[i]), v = strlen(header_values[i]);
        if (n == 0 || n > 255 || v > 65535)
            return -EINVAL;
        hlen += 1 + n + 1 + 2 + v;
    }
    if (!payload && len)
        return -EINVAL;
    if (hlen > UINT32_MAX - MIN_MSG || len > UINT32_MAX - MIN_MSG - hlen)
        return -E2BIG;
    size_t total = MIN_MSG + hlen + len;
    size_t start = out->len;
    int rc = sb_buf_reserve(out, total);
    if (rc)
        return rc;
    unsigned char pre[PRELUDE];
    put_u32(pre, (uint32_t)total);
    put_u32(pre + 4, (uint32_t)hlen);
    put_u32(pre + 8, crc(pre, 8));
    rc = sb_buf_append(out, pre, sizeof pre);
    for (size_t i = 0; !rc && i < nheaders; i++) {
        size_t n = strlen(header_names[i]), v = strlen(header_values[i]);
        unsigned char nl = (unsigned char)n;
        unsigned char tv[3] = {7, (unsigned char)(v >> 8), (unsigned char)v};
        rc = sb_buf_append(out, &nl, 1);
        if (!rc)
            rc = sb_buf_append(out, header_names[i], n);
        if (!rc)
            rc = sb_buf_append(out, tv, 3);
        if (!rc)
            rc = sb_buf_append(out, header_values[i], v);
    }
    if (!rc && len)
        rc = sb_buf_append(out, payload, len);
    if (!rc) {
        unsigned char c[4];
        put_u32(c, crc(out->data + start, total - 4));
        rc = sb_buf_append(out, c, 4);
    }
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

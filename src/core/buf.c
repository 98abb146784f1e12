#include "core/buf.h"

#include "core/plain.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sb_buf_init(struct sb_buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

void sb_buf_free(struct sb_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void sb_buf_reset(struct sb_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void sb_buf_recycle(struct sb_buf *b, size_t max, size_t keep)
{
    if (b->cap > keep || b->cap > max + 1)
        sb_buf_free(b);
    else
        sb_buf_reset(b);
    b->max = max;
}

int sb_buf_reserve(struct sb_buf *b, size_t extra)
{
    if (extra > b->max || b->len > b->max - extra)
        return -E2BIG;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (cap > b->max + 1)
        cap = b->max + 1;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int sb_buf_append_slow(struct sb_buf *b, const void *p, size_t n)
{
    int rc = sb_buf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

/* v in decimal, ending at end: two digits per division. Returns where the digits start. */
static char *format_u64(char *end, uint64_t v)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324"
                                "25262728293031323334353637383940414243444546474849"
                                "50515253545556575859606162636465666768697071727374"
                                "75767778798081828384858687888990919293949596979899";
    char *p = end;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        p -= 2;
        memcpy(p, pairs + 2 * r, 2);
    }
    if (v >= 10) {
        p -= 2;
        memcpy(p, pairs + 2 * v, 2);
    } else {
        *--p = (char)('0' + v);
    }
    return p;
}

int sb_buf_append_u64(struct sb_buf *b, uint64_t v)
{
    char tmp[20]; /* UINT64_MAX has 20 digits */
    char *p = format_u64(tmp + sizeof tmp, v);
    return sb_buf_append(b, p, (size_t)(tmp + sizeof tmp - p));
}

int sb_buf_append_i64(struct sb_buf *b, int64_t v)
{
    char tmp[21];
    char *end = tmp + sizeof tmp;
    char *p = format_u64(end, v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v);
    if (v < 0)
        *--p = '-';
    return sb_buf_append(b, p, (size_t)(end - p));
}

int sb_buf_append_json_str(struct sb_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    int rc = sb_buf_reserve(b, n + 2); /* the usual case: nothing to escape */
    if (rc == 0)
        rc = sb_buf_append_char(b, '"');
    for (size_t i = 0; i < n && rc == 0;) {
        size_t run = sb_plain_run(s, i, n, false);
        if (run > i) {
            rc = sb_buf_append(b, s + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = (unsigned char)s[i++];
        char e[6] = {'\\', (char)c};
        size_t elen = 2;
        switch (c) {
        case '"':
        case '\\':
            break;
        case '\n':
            e[1] = 'n';
            break;
        case '\r':
            e[1] = 'r';
            break;
        case '\t':
            e[1] = 't';
            break;
        default:
            e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[c >> 4], e[5] = hex[c & 15];
            elen = 6;
        }
        rc = sb_buf_append(b, e, elen);
    }
    if (rc == 0)
        rc = sb_buf_append_char(b, '"');
    return rc;
}

int sb_buf_vprintf(struct sb_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    char small[256];
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -EINVAL;
    if ((size_t)n < sizeof small)
        return sb_buf_append(b, small, (size_t)n);
    int rc = sb_buf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int sb_buf_printf(struct sb_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = sb_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void sb_buf_consume(struct sb_buf *b, size_t n)
{
    if (n >= b->len) {
        sb_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

char *sb_buf_take(struct sb_buf *b, size_t *len)
{
    char *p = b->data;
    if (len)
        *len = b->len;
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    return p;
}

void sb_buf_swap(struct sb_buf *a, struct sb_buf *b)
{
    struct sb_buf t = *a;
    *a = *b;
    *b = t;
}

void sb_str_copy(char *dst, size_t cap, const char *src)
{
    size_t n = src != NULL ? strnlen(src, cap - 1) : 0;
    if (n > 0)
        memcpy(dst, src, n);
    dst[n] = '\0';
}

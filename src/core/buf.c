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

int sb_buf_append_u64(struct sb_buf *b, uint64_t v)
{
    char tmp[SB_PUT_INT_MAX];
    return sb_buf_append(b, tmp, (size_t)(sb_put_u64(tmp, v) - tmp));
}

int sb_buf_append_i64(struct sb_buf *b, int64_t v)
{
    char tmp[SB_PUT_INT_MAX + 1];
    return sb_buf_append(b, tmp, (size_t)(sb_put_i64(tmp, v) - tmp));
}

/* The length of s[0, n) as sb_put_json_str writes it, quotes included. */
static size_t json_str_len(const char *s, size_t n)
{
    size_t len = n + 2;
    for (size_t i = 0; i < n;) {
        size_t run = sb_plain_run(s, i, n, false);
        if (run > i) {
            i = run;
            continue;
        }
        unsigned char c = (unsigned char)s[i++];
        len += c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t' ? 1 : 5;
    }
    return len;
}

int sb_buf_append_json_str(struct sb_buf *b, const char *s, size_t n)
{
    /* Room for the worst case is usually there already; else the exact length is counted
     * first, so the string goes in whole or not at all. */
    if (n > (SIZE_MAX - 2) / 6 || SB_PUT_JSON_STR_MAX(n) >= b->cap - b->len) {
        int rc = sb_buf_reserve(b, json_str_len(s, n));
        if (rc)
            return rc;
    }
    sb_buf_commit(b, sb_put_json_str(sb_buf_end(b), s, n));
    return 0;
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

static const char digit_pairs[201] = "00010203040506070809"
                                     "10111213141516171819"
                                     "20212223242526272829"
                                     "30313233343536373839"
                                     "40414243444546474849"
                                     "50515253545556575859"
                                     "60616263646566676869"
                                     "70717273747576777879"
                                     "80818283848586878889"
                                     "90919293949596979899";

char *sb_put_u64(char *p, uint64_t v)
{
    /* The length first, so the digits go straight to their place: most values the gateway
     * writes (statuses, token counts, milliseconds) have one to four digits. */
    static const uint64_t pow10[SB_PUT_INT_MAX - 1] = {
        10u,
        100u,
        1000u,
        10000u,
        100000u,
        1000000u,
        10000000u,
        100000000u,
        1000000000u,
        10000000000u,
        100000000000u,
        1000000000000u,
        10000000000000u,
        100000000000000u,
        1000000000000000u,
        10000000000000000u,
        100000000000000000u,
        1000000000000000000u,
        10000000000000000000u,
    };
    size_t n = 1;
    while (n < SB_PUT_INT_MAX && v >= pow10[n - 1])
        n++;
    char *end = p + n;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        end -= 2;
        memcpy(end, digit_pairs + 2 * r, 2);
    }
    if (v >= 10)
        memcpy(end - 2, digit_pairs + 2 * v, 2);
    else
        end[-1] = (char)('0' + v);
    return p + n;
}

char *sb_put_i64(char *p, int64_t v)
{
    if (v >= 0)
        return sb_put_u64(p, (uint64_t)v);
    *p++ = '-';
    return sb_put_u64(p, (uint64_t)0 - (uint64_t)v);
}

char *sb_put_3digits(char *p, unsigned v)
{
    v %= 1000;
    p[0] = (char)('0' + v / 100);
    memcpy(p + 1, digit_pairs + 2 * (v % 100), 2);
    return p + 3;
}

char *sb_put_json_str(char *p, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    *p++ = '"';
    for (size_t i = 0; i < n;) {
        size_t run = sb_plain_run(s, i, n, false);
        if (run > i) {
            memcpy(p, s + i, run - i);
            p += run - i;
            i = run;
            continue;
        }
        unsigned char c = (unsigned char)s[i++];
        *p++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *p++ = (char)c;
            break;
        case '\n':
            *p++ = 'n';
            break;
        case '\r':
            *p++ = 'r';
            break;
        case '\t':
            *p++ = 't';
            break;
        default:
            p = SB_PUT_LIT(p, "u00");
            *p++ = hex[c >> 4];
            *p++ = hex[c & 15];
        }
    }
    *p++ = '"';
    return p;
}

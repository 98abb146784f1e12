/* Bounded, growable byte buffer: the only buffer type the data path uses.
 *
 * Every buffer has a hard maximum (`max`) fixed at init. An append that would pass it fails
 * with -E2BIG and leaves the buffer unchanged, so a size chosen by a client or a provider can
 * never grow memory without bound; callers turn -E2BIG into 413, 431 or 502. Allocation
 * failure returns -ENOMEM. The data is always NUL-terminated past `len` once anything has
 * been appended (the NUL is not counted), so it can be handed to functions that want C
 * strings. Not thread-safe; a buffer belongs to one owner. */
#ifndef SB_CORE_BUF_H
#define SB_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct sb_buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
};

void sb_buf_init(struct sb_buf *b, size_t max);
void sb_buf_free(struct sb_buf *b);
/* Empties the buffer but keeps its allocation. */
void sb_buf_reset(struct sb_buf *b);
/* Empties the buffer for reuse with the maximum `max`. Its memory stays when that is at most
 * `keep` bytes and within the new maximum, and is freed otherwise, so a buffer kept between
 * uses holds at most `keep` bytes and its room never passes its maximum. */
void sb_buf_recycle(struct sb_buf *b, size_t max, size_t keep);
/* Ensures room for `extra` more bytes (plus the NUL). */
int sb_buf_reserve(struct sb_buf *b, size_t extra);
/* sb_buf_append past the room already reserved: grows the buffer, or fails. */
int sb_buf_append_slow(struct sb_buf *b, const void *p, size_t n);

/* Appends are inline: the data path makes about a hundred per request, nearly all into room
 * already there, and a literal's length is then known where it is written. cap never passes
 * max + 1, so room for the bytes and the NUL within cap is within the maximum too. */
static inline int sb_buf_append(struct sb_buf *b, const void *p, size_t n)
{
    if (n < b->cap - b->len) {
        if (n) /* p may be NULL when n is 0 */
            memcpy(b->data + b->len, p, n);
        b->len += n;
        b->data[b->len] = '\0';
        return 0;
    }
    return sb_buf_append_slow(b, p, n);
}

static inline int sb_buf_append_str(struct sb_buf *b, const char *s)
{
    return sb_buf_append(b, s, strlen(s));
}

static inline int sb_buf_append_char(struct sb_buf *b, char c)
{
    return sb_buf_append(b, &c, 1);
}

int sb_buf_append_u64(struct sb_buf *b, uint64_t v);
int sb_buf_append_i64(struct sb_buf *b, int64_t v);
/* Appends `n` bytes as a JSON string literal, quotes included. Invalid UTF-8 is passed
 * through byte for byte; control characters are escaped. */
int sb_buf_append_json_str(struct sb_buf *b, const char *s, size_t n);
int sb_buf_printf(struct sb_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sb_buf_vprintf(struct sb_buf *b, const char *fmt, va_list ap)
    __attribute__((format(printf, 2, 0)));
/* Drops the first `n` bytes (n <= len). */
void sb_buf_consume(struct sb_buf *b, size_t n);
/* Hands the allocation to the caller (who frees it with free()) and empties the buffer. */
char *sb_buf_take(struct sb_buf *b, size_t *len);
void sb_buf_swap(struct sb_buf *a, struct sb_buf *b);

/* Cursor writes, for a line built from many small pieces whose total has a known maximum:
 * reserve that maximum once with sb_buf_reserve, take the cursor with sb_buf_end, write with
 * the sb_put_* functions (which check nothing: each states the most it writes, and the
 * caller's reserve must cover the sum), then end with sb_buf_commit. Nothing is NUL-terminated
 * until the commit. */
static inline char *sb_buf_end(struct sb_buf *b)
{
    return b->data + b->len;
}

/* Makes [data, end) the content and writes the NUL the reserve left room for. */
static inline void sb_buf_commit(struct sb_buf *b, char *end)
{
    b->len = (size_t)(end - b->data);
    *end = '\0';
}

static inline char *sb_put(char *p, const void *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

/* A string literal, its length known at compile time (the "" refuses anything else). */
#define SB_PUT_LIT(p, lit) sb_put((p), "" lit, sizeof(lit) - 1)

/* The most sb_put_u64 / sb_put_i64 write. */
#define SB_PUT_INT_MAX 20
/* The most sb_put_json_str writes for n bytes: every byte escaped as \u00XX, two quotes. */
#define SB_PUT_JSON_STR_MAX(n) (6 * (size_t)(n) + 2)

/* Decimal, two digits at a time; at most SB_PUT_INT_MAX bytes. */
char *sb_put_u64(char *p, uint64_t v);
char *sb_put_i64(char *p, int64_t v);
/* Exactly three digits: v % 1000 zero-padded ("007"), as after a decimal point. */
char *sb_put_3digits(char *p, unsigned v);
/* What sb_buf_append_json_str appends, byte for byte; at most SB_PUT_JSON_STR_MAX(n) bytes. */
char *sb_put_json_str(char *p, const char *s, size_t n);

/* Copies the C string `src` (NULL: empty) into dst[cap] (cap >= 1), cut at cap - 1 bytes,
 * always NUL-terminated: snprintf(dst, cap, "%s", src) without the format machinery. */
void sb_str_copy(char *dst, size_t cap, const char *src);

#endif

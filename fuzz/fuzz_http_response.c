/* Upstream response heads (src/http/response.c) and the chunked bodies that follow them,
 * decoded whole and in irregular pieces: both must agree. */
#include "http/parser.h"
#include "http/response.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int decode(const char *p, size_t n, const uint8_t *sizes, size_t nsizes, struct sb_buf *out,
                  size_t *consumed)
{
    struct sb_http_chunked ch;
    sb_http_chunked_init(&ch);
    size_t off = 0, k = 0;
    while (off < n && !ch.done) {
        size_t piece = nsizes ? (size_t)(sizes[k++ % nsizes] % 9) + 1 : n - off;
        if (piece > n - off)
            piece = n - off;
        ssize_t used = sb_http_chunked_feed(&ch, p + off, piece, out);
        if (used < 0)
            return (int)used;
        CHECK((size_t)used <= piece);
        off += (size_t)used;
        if ((size_t)used < piece && !ch.done)
            return -100; /* the decoder stops early only at the end of the message */
    }
    *consumed = off;
    return ch.done ? 1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    struct sb_http_response r;
    int rc = sb_http_parse_response(s, size, 16384, &r);
    CHECK(rc == SB_HTTP_AGAIN || rc == SB_HTTP_E_BAD || rc == SB_HTTP_E_TOO_LARGE || rc > 0);
    if (rc <= 0)
        return 0;
    size_t head = (size_t)rc;
    CHECK(head <= size && head == r.head_len);
    CHECK(r.status >= 100 && r.status <= 999);
    CHECK(r.nheaders <= SB_HTTP_MAX_HEADERS);
    CHECK(!(r.chunked && r.content_length >= 0));
    for (size_t i = 0; i < r.nheaders; i++) {
        const struct sb_http_header *h = &r.headers[i];
        CHECK(h->name.n > 0);
        CHECK(h->name.p >= s && h->name.p + h->name.n <= s + head);
        CHECK(h->value.p >= s && h->value.p + h->value.n <= s + head);
        for (size_t k = 0; k < h->value.n; k++) {
            unsigned char c = (unsigned char)h->value.p[k];
            CHECK(c >= 0x20 || c == '\t');
            CHECK(c != 0x7f);
        }
        if (h->value.n)
            CHECK(h->value.p[0] != ' ' && h->value.p[h->value.n - 1] != ' ');
    }
    /* The same head, one byte short, is never complete. */
    struct sb_http_response r2;
    CHECK(sb_http_parse_response(s, head - 1, 16384, &r2) != rc);
    if (!r.chunked)
        return 0;
    const char *body = s + head;
    size_t n = size - head;
    struct sb_buf whole, pieces;
    sb_buf_init(&whole, 1u << 20);
    sb_buf_init(&pieces, 1u << 20);
    size_t c1 = 0, c2 = 0;
    int a = decode(body, n, NULL, 0, &whole, &c1);
    int b = decode(body, n, data, size < 16 ? size : 16, &pieces, &c2);
    CHECK(a != -100 && b != -100);
    CHECK(a == b);
    if (a == 1) {
        CHECK(c1 == c2);
        CHECK(whole.len == pieces.len);
        CHECK(whole.len == 0 || memcmp(whole.data, pieces.data, whole.len) == 0);
    }
    sb_buf_free(&whole);
    sb_buf_free(&pieces);
    return 0;
}

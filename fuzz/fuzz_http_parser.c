/* Fuzzes the request-head parser and the chunked decoder.
 *
 * The input is parsed as a head (max_head 16384). If that succeeds and the request is
 * chunked, the bytes after the head are the body; otherwise the whole input is fed to the
 * decoder too, so the decoder is exercised by every input. The body is decoded twice: in one
 * feed, and in small irregular pieces whose sizes come from the input's own bytes. Both runs
 * must agree exactly, which is what "byte-at-a-time safe" means. Invariants abort. */
#include "http/parser.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_HEAD (16 * 1024)
#define MAX_BODY (1024 * 1024)

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if (!(x))                                                                                  \
            abort();                                                                               \
    } while (0)

static void check_span(const struct sb_http_str *s, const char *lo, const char *hi)
{
    CHECK(s->p != NULL);
    CHECK(s->p >= lo && s->p <= hi);
    CHECK(s->n <= (size_t)(hi - s->p));
}

static void check_head(const char *buf, size_t len, int rc, const struct sb_http_request *req)
{
    const char *lo = buf, *hi = buf + rc;
    CHECK((size_t)rc <= len && rc <= MAX_HEAD);
    CHECK(req->head_len == (size_t)rc);
    CHECK(buf[rc - 1] == '\n' && buf[rc - 2] == '\r' && buf[rc - 3] == '\n');
    check_span(&req->method, lo, hi);
    check_span(&req->target, lo, hi);
    CHECK(req->method.n > 0 && req->target.n > 0);
    for (size_t i = 0; i < req->target.n; i++)
        CHECK(req->target.p[i] > 0x20 && req->target.p[i] < 0x7f);
    if (!(req->path.n == 1 && req->path.p[0] == '/'))
        check_span(&req->path, req->target.p, req->target.p + req->target.n);
    check_span(&req->query, req->target.p, req->target.p + req->target.n);
    CHECK(req->minor_version == 0 || req->minor_version == 1);
    CHECK(req->nheaders <= SB_HTTP_MAX_HEADERS);
    CHECK(sb_http_header_get(req, "") == NULL);
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct sb_http_header *h = &req->headers[i];
        check_span(&h->name, lo, hi);
        check_span(&h->value, lo, hi);
        CHECK(h->name.n > 0);
        for (size_t j = 0; j < h->value.n; j++) {
            unsigned char c = (unsigned char)h->value.p[j];
            CHECK(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (h->value.n) {
            CHECK(h->value.p[0] != ' ' && h->value.p[0] != '\t');
            CHECK(h->value.p[h->value.n - 1] != ' ' && h->value.p[h->value.n - 1] != '\t');
        }
    }
    CHECK(req->content_length >= -1);
    if (req->chunked)
        CHECK(req->content_length == -1 && req->minor_version == 1);
    if (req->minor_version == 1)
        CHECK(sb_http_header_get(req, "host") != NULL);
    CHECK(!(req->expect_continue && req->minor_version == 0));
}

/* Decodes in[0..len) in pieces; returns the final result (consumed total or error). */
static ssize_t decode(const uint8_t *in, size_t len, const uint8_t *sizes, size_t nsizes,
                      struct sb_buf *out, bool *done)
{
    struct sb_http_chunked c;
    sb_http_chunked_init(&c);
    size_t off = 0, k = 0;
    while (off < len) {
        size_t piece = len - off;
        if (nsizes) {
            piece = (size_t)(sizes[k++ % nsizes] % 7) + 1;
            if (piece > len - off)
                piece = len - off;
        }
        ssize_t r = sb_http_chunked_feed(&c, (const char *)in + off, piece, out);
        if (r < 0) {
            CHECK(r == SB_HTTP_E_BAD || r == SB_HTTP_E_BODY_TOO_LARGE || r == SB_HTTP_E_TOO_LARGE);
            CHECK(!c.done);
            *done = false;
            return r;
        }
        CHECK((size_t)r <= piece);
        off += (size_t)r;
        CHECK(out->len <= out->max);
        if ((size_t)r < piece) {
            /* It only stops early at the end of the message, and then takes nothing more. */
            CHECK(c.done);
            CHECK(sb_http_chunked_feed(&c, (const char *)in + off, len - off, out) == 0);
            break;
        }
        if (c.done)
            break;
    }
    *done = c.done;
    return (ssize_t)off;
}

static void fuzz_body(const uint8_t *body, size_t len, const uint8_t *sizes, size_t nsizes)
{
    struct sb_buf whole, pieces;
    sb_buf_init(&whole, MAX_BODY);
    sb_buf_init(&pieces, MAX_BODY);
    bool done_whole = false, done_pieces = false;
    ssize_t a = decode(body, len, NULL, 0, &whole, &done_whole);
    ssize_t b = decode(body, len, sizes, nsizes, &pieces, &done_pieces);
    CHECK(a == b);
    CHECK(done_whole == done_pieces);
    if (a >= 0) {
        CHECK(whole.len == pieces.len);
        CHECK(whole.len == 0 || memcmp(whole.data, pieces.data, whole.len) == 0);
        /* A finished body is at least as long as its data plus "0\r\n\r\n". */
        if (done_whole)
            CHECK((size_t)a >= whole.len + 5);
    }
    sb_buf_free(&whole);
    sb_buf_free(&pieces);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A heap copy of the exact size, so ASan sees any read past the input. */
    char *buf = malloc(size ? size : 1);
    if (!buf)
        return 0;
    if (size)
        memcpy(buf, data, size);

    struct sb_http_request *req = malloc(sizeof *req);
    if (!req) {
        free(buf);
        return 0;
    }
    int rc = sb_http_parse_request(buf, size, MAX_HEAD, req);
    CHECK(rc >= SB_HTTP_E_NOT_IMPLEMENTED);
    CHECK(sb_http_strerror(rc) != NULL);
    if (rc < 0)
        CHECK(sb_http_error_status(rc) >= 400);
    if (rc == SB_HTTP_AGAIN)
        CHECK(size < MAX_HEAD);

    if (rc > 0) {
        check_head(buf, size, rc, req);
        /* The head is found at the same place however the buffer is cut or bounded. */
        CHECK(sb_http_parse_request(buf, (size_t)rc - 1, MAX_HEAD, req) == SB_HTTP_AGAIN);
        CHECK(sb_http_parse_request(buf, (size_t)rc - 1, (size_t)rc - 1, req) ==
              SB_HTTP_E_TOO_LARGE);
        CHECK(sb_http_parse_request(buf, (size_t)rc, (size_t)rc, req) == rc);
        check_head(buf, size, rc, req);
    }
    bool chunked = rc > 0 && req->chunked;
    size_t body_off = chunked ? (size_t)rc : 0;
    /* Piece sizes come from the input itself, read from the end backwards. */
    size_t nsizes = size < 64 ? size : 64;
    fuzz_body((const uint8_t *)buf + body_off, size - body_off, data + size - nsizes, nsizes);

    free(req);
    free(buf);
    return 0;
}

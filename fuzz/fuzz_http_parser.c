/* Fuzzes the request-head parser and the chunked decoder.
 *
 * The input is parsed as a head (max_head 16384). If that succeeds and the request is
 * chunked, the bytes after the head are the body; otherwise the whole input is fed to the
 * decoder too, so the decoder is exercised by every input. The body is decoded twice: in one
 * feed, and in small irregular pieces whose sizes come from the input's own bytes. Both runs
 * must agree exactly, which is what "byte-at-a-time safe" means. Invariants abort.
 *
 * The head parser is also compared, result and every field, with a plain reference parser
 * written from the header's contract below: one byte at a time, character classes spelled
 * out as sets instead of a table, no word or vector scans. It is slow and obvious on
 * purpose, so a faster sb_http_parse_request has something to agree with. */
#include "http/parser.h"

#include <stdbool.h>
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

/* ---- Reference head parser ----------------------------------------------------------- */

static bool ref_alnum(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool ref_tchar(unsigned char c)
{
    return ref_alnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool ref_vchar(unsigned char c)
{
    return c >= 0x21 && c <= 0x7e;
}

static bool ref_field_byte(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool ref_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static unsigned char ref_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 32) : c;
}

static bool ref_ieq(const char *p, size_t n, const char *lit)
{
    if (n != strlen(lit))
        return false;
    for (size_t i = 0; i < n; i++)
        if (ref_lower((unsigned char)p[i]) != ref_lower((unsigned char)lit[i]))
            return false;
    return true;
}

static int ref_target(struct sb_http_request *r)
{
    const char *t = r->target.p;
    size_t n = r->target.n, ps = 0;
    if (t[0] == '*') {
        if (n != 1 || r->method.n != 7 || memcmp(r->method.p, "OPTIONS", 7) != 0)
            return SB_HTTP_E_BAD;
        r->path = r->target;
        r->query = (struct sb_http_str){t + n, 0};
        return 0;
    }
    if (t[0] != '/') {
        size_t i = 0;
        if (!((t[0] >= 'a' && t[0] <= 'z') || (t[0] >= 'A' && t[0] <= 'Z')))
            return SB_HTTP_E_BAD;
        while (i < n &&
               (ref_alnum((unsigned char)t[i]) || t[i] == '+' || t[i] == '-' || t[i] == '.'))
            i++;
        if (n - i < 4 || memcmp(t + i, "://", 3) != 0)
            return SB_HTTP_E_BAD;
        i += 3;
        size_t a = i;
        while (i < n && t[i] != '/' && t[i] != '?' && t[i] != '#')
            i++;
        if (i == a)
            return SB_HTTP_E_BAD;
        ps = i;
    }
    size_t pe = ps;
    while (pe < n && t[pe] != '?')
        pe++;
    r->path = pe == ps ? (struct sb_http_str){"/", 1} : (struct sb_http_str){t + ps, pe - ps};
    r->query =
        pe < n ? (struct sb_http_str){t + pe + 1, n - pe - 1} : (struct sb_http_str){t + n, 0};
    return 0;
}

/* buf[start..end) is a complete head whose every LF follows a CR. */
static int ref_head(const char *buf, size_t start, size_t end, struct sb_http_request *r)
{
    size_t i = start, s;
    for (s = i; ref_tchar((unsigned char)buf[i]); i++)
        ;
    if (i == s || buf[i] != ' ')
        return SB_HTTP_E_BAD;
    r->method = (struct sb_http_str){buf + s, i - s};
    for (s = ++i; ref_vchar((unsigned char)buf[i]); i++)
        ;
    if (i == s || buf[i] != ' ')
        return SB_HTTP_E_BAD;
    r->target = (struct sb_http_str){buf + s, i - s};
    for (s = ++i; ref_vchar((unsigned char)buf[i]); i++)
        ;
    if (buf[i] != '\r' || buf[i + 1] != '\n')
        return SB_HTTP_E_BAD;
    const char *v = buf + s;
    if (i - s != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' || v[5] > '9' || v[6] != '.' ||
        v[7] < '0' || v[7] > '9')
        return SB_HTTP_E_BAD;
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return SB_HTTP_E_VERSION;
    r->minor_version = v[7] - '0';
    i += 2;
    int rc = ref_target(r);
    if (rc)
        return rc;
    r->nheaders = 0;
    r->content_length = -1;
    r->expect_continue = r->expect_other = false;
    bool cl = false, te = false, te_chunked = false, close = false, keep = false;
    int hosts = 0;
    while (buf[i] != '\r') {
        if (ref_ows((unsigned char)buf[i]))
            return SB_HTTP_E_BAD;
        for (s = i; ref_tchar((unsigned char)buf[i]); i++)
            ;
        if (i == s || buf[i] != ':')
            return SB_HTTP_E_BAD;
        struct sb_http_str name = {buf + s, i - s};
        for (i++; ref_ows((unsigned char)buf[i]); i++)
            ;
        for (s = i; ref_field_byte((unsigned char)buf[i]); i++)
            ;
        if (buf[i] != '\r' || buf[i + 1] != '\n')
            return SB_HTTP_E_BAD;
        size_t e = i;
        while (e > s && ref_ows((unsigned char)buf[e - 1]))
            e--;
        i += 2;
        if (r->nheaders == SB_HTTP_MAX_HEADERS)
            return SB_HTTP_E_TOO_LARGE;
        struct sb_http_str val = {buf + s, e - s};
        r->headers[r->nheaders++] = (struct sb_http_header){name, val};
        if (ref_ieq(name.p, name.n, "host")) {
            for (size_t k = 0; k < val.n; k++) {
                unsigned char c = (unsigned char)val.p[k];
                if (!ref_alnum(c) && !(c && strchr("-._~%!$&'()*+,;=[]:", c)))
                    return SB_HTTP_E_BAD;
            }
            hosts++;
        } else if (ref_ieq(name.p, name.n, "expect")) {
            if (ref_ieq(val.p, val.n, "100-continue"))
                r->expect_continue = true;
            else
                r->expect_other = true;
        } else if (ref_ieq(name.p, name.n, "connection")) {
            size_t k = 0;
            while (k <= val.n) {
                size_t a = k;
                while (k < val.n && val.p[k] != ',')
                    k++;
                size_t b = k;
                while (a < b && ref_ows((unsigned char)val.p[a]))
                    a++;
                while (b > a && ref_ows((unsigned char)val.p[b - 1]))
                    b--;
                close |= ref_ieq(val.p + a, b - a, "close");
                keep |= ref_ieq(val.p + a, b - a, "keep-alive");
                k++;
            }
        } else if (ref_ieq(name.p, name.n, "content-length")) {
            if (cl || val.n == 0)
                return SB_HTTP_E_BAD;
            cl = true;
            int64_t x = 0;
            for (size_t k = 0; k < val.n; k++) {
                if (val.p[k] < '0' || val.p[k] > '9' || x > (INT64_MAX - (val.p[k] - '0')) / 10)
                    return SB_HTTP_E_BAD;
                x = x * 10 + (val.p[k] - '0');
            }
            r->content_length = x;
        } else if (ref_ieq(name.p, name.n, "transfer-encoding")) {
            if (te || r->minor_version == 0 || val.n == 0)
                return SB_HTTP_E_BAD;
            te = true;
            te_chunked = ref_ieq(val.p, val.n, "chunked");
        }
    }
    if (buf[i + 1] != '\n') /* a bare CR where the blank line should be */
        return SB_HTTP_E_BAD;
    if (te && cl)
        return SB_HTTP_E_BAD;
    if (te && !te_chunked)
        return SB_HTTP_E_NOT_IMPLEMENTED;
    if (hosts > 1 || (hosts == 0 && r->minor_version == 1))
        return SB_HTTP_E_BAD;
    r->chunked = te;
    if (r->minor_version == 0)
        r->expect_continue = false;
    r->keep_alive = !close && (r->minor_version == 1 || keep);
    r->head_len = end;
    return (int)end;
}

static int ref_parse(const char *buf, size_t len, size_t max_head, struct sb_http_request *r)
{
    size_t limit = len < max_head ? len : max_head, line = 0, start = 0;
    bool seen = false;
    for (size_t i = 0; i < limit; i++) {
        if (buf[i] != '\n')
            continue;
        if (i == 0 || buf[i - 1] != '\r')
            return SB_HTTP_E_BAD;
        if (i - line == 1) {
            if (seen)
                return ref_head(buf, start, i + 1, r);
            start = i + 1;
        } else {
            seen = true;
        }
        line = i + 1;
    }
    return len >= max_head ? SB_HTTP_E_TOO_LARGE : SB_HTTP_AGAIN;
}

static bool same_str(const struct sb_http_str *a, const struct sb_http_str *b)
{
    return a->n == b->n && (a->p == b->p || (a->n == 1 && memcmp(a->p, b->p, 1) == 0));
}

/* Same result, and on success the same fields pointing at the same bytes. */
static void check_reference(const char *buf, size_t len, size_t max_head, int rc,
                            const struct sb_http_request *got)
{
    static struct sb_http_request want;
    int ref = ref_parse(buf, len, max_head, &want);
    CHECK(ref == rc);
    if (rc <= 0)
        return;
    CHECK(same_str(&got->method, &want.method) && same_str(&got->target, &want.target));
    CHECK(same_str(&got->path, &want.path) && same_str(&got->query, &want.query));
    CHECK(got->minor_version == want.minor_version && got->nheaders == want.nheaders);
    for (size_t i = 0; i < want.nheaders; i++) {
        CHECK(same_str(&got->headers[i].name, &want.headers[i].name));
        CHECK(same_str(&got->headers[i].value, &want.headers[i].value));
    }
    CHECK(got->content_length == want.content_length && got->chunked == want.chunked);
    CHECK(got->keep_alive == want.keep_alive && got->expect_continue == want.expect_continue);
    CHECK(got->expect_other == want.expect_other && got->head_len == want.head_len);
    /* Lookups: each name, as sent and upper-cased, finds its first occurrence. */
    for (size_t i = 0; i < want.nheaders && i < 8; i++) {
        char name[64];
        const struct sb_http_str *n = &want.headers[i].name;
        if (n->n >= sizeof name)
            continue;
        for (size_t k = 0; k < n->n; k++)
            name[k] = (char)(n->p[k] >= 'a' && n->p[k] <= 'z' ? n->p[k] - 32 : n->p[k]);
        name[n->n] = '\0';
        size_t first = 0;
        while (!ref_ieq(want.headers[first].name.p, want.headers[first].name.n, name))
            first++;
        const struct sb_http_str *v = sb_http_header_get(got, name);
        CHECK(v == &got->headers[first].value);
    }
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
    check_reference(buf, size, MAX_HEAD, rc, req);
    /* A small bound too, so heads cut by max_head are compared as well. */
    check_reference(buf, size, 64, sb_http_parse_request(buf, size, 64, req), req);
    rc = sb_http_parse_request(buf, size, MAX_HEAD, req);
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

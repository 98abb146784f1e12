/* The fake provider's HTTP/1.1 request reader (RFC 9112, the subset clients send to an API).
 *
 * It is stateless: the connection calls it on everything buffered so far and it either finds
 * a whole request or asks for more. Re-scanning a head is cheap next to the bodies a test
 * sends, and it keeps the reader free of the pointer-fixing a resumable parser needs when
 * the input buffer moves. */
#include "fake.h"

#include "core/hex.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#define MAX_CHUNK_LINE 1024

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Finds the end of the line starting at `p`: `*next` is past the '\n', the returned length
 * excludes the optional '\r'. -1 when no '\n' is there yet. */
static long line_at(const char *data, size_t len, size_t p, size_t *next)
{
    const char *nl = memchr(data + p, '\n', len - p);
    if (!nl)
        return -1;
    size_t end = (size_t)(nl - data);
    *next = end + 1;
    if (end > p && data[end - 1] == '\r')
        end--;
    return (long)(end - p);
}

static bool str_ieq(struct sb_fake_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && strncasecmp(s.p, lit, n) == 0;
}

/* True when the comma-separated token list `s` holds `tok` (case-insensitive). */
static bool list_has(struct sb_fake_str s, const char *tok)
{
    size_t n = strlen(tok);
    size_t i = 0;
    while (i < s.n) {
        while (i < s.n && (s.p[i] == ' ' || s.p[i] == '\t' || s.p[i] == ','))
            i++;
        size_t start = i;
        while (i < s.n && s.p[i] != ',')
            i++;
        size_t end = i;
        while (end > start && (s.p[end - 1] == ' ' || s.p[end - 1] == '\t'))
            end--;
        if (end - start == n && strncasecmp(s.p + start, tok, n) == 0)
            return true;
    }
    return false;
}

const struct sb_fake_str *sb_fake_http_header(const struct sb_fake_req *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++) {
        if (str_ieq(req->headers[i].name, name))
            return &req->headers[i].value;
    }
    return NULL;
}

static int parse_request_line(const char *s, size_t n, struct sb_fake_req *req)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i > 32 || i >= n || s[i] != ' ')
        return -400;
    req->method = (struct sb_fake_str){s, i};
    size_t t = ++i;
    while (i < n && s[i] != ' ') {
        if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f)
            return -400;
        i++;
    }
    if (i == t || i >= n)
        return -400;
    req->target = (struct sb_fake_str){s + t, i - t};
    i++;
    if (n - i != 8 || memcmp(s + i, "HTTP/", 5) != 0 || s[i + 6] != '.' || s[i + 5] < '0' ||
        s[i + 5] > '9' || s[i + 7] < '0' || s[i + 7] > '9')
        return -400;
    if (s[i + 5] != '1')
        return -505;
    req->minor_version = s[i + 7] - '0';
    return 0;
}

static int parse_header_line(const char *s, size_t n, struct sb_fake_req *req)
{
    size_t i = 0;
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    /* No name, or whitespace before the colon (RFC 9112 section 5.1), or obs-fold. */
    if (i == 0 || i >= n || s[i] != ':')
        return -400;
    if (req->nheaders == SB_FAKE_MAX_HEADERS)
        return -431;
    struct sb_fake_header *h = &req->headers[req->nheaders++];
    h->name = (struct sb_fake_str){s, i};
    i++;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    size_t end = n;
    while (end > i && (s[end - 1] == ' ' || s[end - 1] == '\t'))
        end--;
    for (size_t k = i; k < end; k++) {
        unsigned char c = (unsigned char)s[k];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return -400;
    }
    h->value = (struct sb_fake_str){s + i, end - i};
    return 0;
}

static int parse_content_length(struct sb_fake_str v, uint64_t *out)
{
    if (v.n == 0 || v.n > 19)
        return v.n == 0 ? -400 : -413;
    uint64_t x = 0;
    for (size_t i = 0; i < v.n; i++) {
        if (v.p[i] < '0' || v.p[i] > '9')
            return -400;
        x = x * 10 + (uint64_t)(v.p[i] - '0');
    }
    *out = x;
    return 0;
}

/* Walks a chunked body starting at `p`. With `out`, copies the data there. Returns 1 and the
 * offset past the body, 0 for more input, or a negative status. */
static int walk_chunked(const char *data, size_t len, size_t p, size_t max, struct sb_buf *out,
                        size_t *end)
{
    size_t total = 0;
    for (;;) {
        size_t next;
        long ln = line_at(data, len, p, &next);
        if (ln < 0)
            return len - p > MAX_CHUNK_LINE ? -400 : 0;
        if (ln > MAX_CHUNK_LINE)
            return -400;
        const char *s = data + p;
        size_t i = 0;
        uint64_t size = 0;
        while (i < (size_t)ln && sb_hex_val(s[i]) >= 0) {
            size = size * 16 + (uint64_t)sb_hex_val(s[i]);
            if (size > max)
                return -413;
            i++;
        }
        if (i == 0 || (i < (size_t)ln && s[i] != ';' && s[i] != ' ' && s[i] != '\t'))
            return -400;
        p = next;
        if (size == 0)
            break;
        if (total + size > max)
            return -413;
        if (len - p < size + 1)
            return 0;
        if (out && sb_buf_append(out, data + p, (size_t)size) != 0)
            return -413;
        total += size;
        p += size;
        if (data[p] == '\r') {
            if (len - p < 2)
                return 0;
            p++;
        }
        if (data[p] != '\n')
            return -400;
        p++;
    }
    /* Trailer fields, then the empty line. */
    for (int lines = 0;; lines++) {
        size_t next;
        long ln = line_at(data, len, p, &next);
        if (ln < 0)
            return len - p > SB_FAKE_MAX_HEAD ? -431 : 0;
        p = next;
        if (ln == 0)
            break;
        if (lines >= SB_FAKE_MAX_HEADERS)
            return -431;
    }
    *end = p;
    return 1;
}

int sb_fake_http_parse(const char *data, size_t len, struct sb_fake_req *req,
                       struct sb_buf *chunk_body, size_t *consumed)
{
    memset(req, 0, offsetof(struct sb_fake_req, headers));
    req->nheaders = 0;
    req->body = NULL;
    req->body_len = 0;
    req->keep_alive = false;
    req->expect_continue = false;
    req->head_complete = false;

    /* RFC 9112 section 2.2: ignore empty lines before the request line. */
    size_t p = 0;
    while (p < len && (data[p] == '\r' || data[p] == '\n'))
        p++;
    if (p > 64)
        return -400;

    bool first = true;
    for (;;) {
        size_t next;
        long ln = line_at(data, len, p, &next);
        if (ln < 0)
            return len - p > SB_FAKE_MAX_HEAD ? -431 : 0;
        if (next > SB_FAKE_MAX_HEAD + 64)
            return -431;
        int rc;
        if (first) {
            rc = parse_request_line(data + p, (size_t)ln, req);
            first = false;
        } else if (ln == 0) {
            p = next;
            break;
        } else {
            rc = parse_header_line(data + p, (size_t)ln, req);
        }
        if (rc < 0)
            return rc;
        p = next;
    }
    req->head_complete = true;

    const struct sb_fake_str *conn = sb_fake_http_header(req, "connection");
    if (req->minor_version >= 1)
        req->keep_alive = !(conn && list_has(*conn, "close"));
    else
        req->keep_alive = conn && list_has(*conn, "keep-alive");
    const struct sb_fake_str *expect = sb_fake_http_header(req, "expect");
    req->expect_continue = expect && str_ieq(*expect, "100-continue");

    const struct sb_fake_str *te = sb_fake_http_header(req, "transfer-encoding");
    if (te) {
        if (!list_has(*te, "chunked"))
            return -501;
        size_t end;
        int rc = walk_chunked(data, len, p, chunk_body->max, NULL, &end);
        if (rc <= 0)
            return rc;
        sb_buf_reset(chunk_body);
        rc = walk_chunked(data, len, p, chunk_body->max, chunk_body, &end);
        if (rc <= 0)
            return rc < 0 ? rc : -400;
        req->body = chunk_body->data ? chunk_body->data : "";
        req->body_len = chunk_body->len;
        *consumed = end;
        return 1;
    }

    uint64_t cl = 0;
    bool have_cl = false;
    for (size_t i = 0; i < req->nheaders; i++) {
        if (!str_ieq(req->headers[i].name, "content-length"))
            continue;
        uint64_t v;
        int rc = parse_content_length(req->headers[i].value, &v);
        if (rc < 0)
            return rc;
        if (have_cl && v != cl)
            return -400;
        cl = v;
        have_cl = true;
    }
    if (cl > SB_FAKE_MAX_BODY)
        return -413;
    if (len - p < cl)
        return 0;
    req->body = data + p;
    req->body_len = (size_t)cl;
    *consumed = p + (size_t)cl;
    return 1;
}

#include "http/parser.h"

#include "core/hex.h"

#include <errno.h>
#include <string.h>

#if defined(__SSE2__) && !defined(SB_HTTP_NO_SIMD)
#include <emmintrin.h>
#define PARSE_SIMD 1
#endif

/* Byte classes (RFC 9110 §5.6.2 tchar, §5.5 field-vchar / obs-text, RFC 9112 §3.2 target,
 * RFC 9110 §7.2 / RFC 3986 §3.2.2 what a Host value may hold). */
#define C_TCHAR  1 /* token character */
#define C_TARGET 2 /* VCHAR: 0x21-0x7E, what a request target may hold */
#define C_VALUE  4 /* HTAB, SP, VCHAR, obs-text: what a field value may hold */
#define C_HOST   8 /* ALPHA, DIGIT and "-._~%!$&'()*+,;=[]:" */

static const unsigned char cls[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  4,  0,  0,  0,  0,  0,  0,  /* 0x00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
    4,  15, 6,  7,  15, 15, 15, 15, 14, 14, 15, 15, 14, 15, 15, 6,  /* 0x20 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 14, 6,  14, 6,  6,  /* 0x30 */
    6,  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x40 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 6,  14, 7,  15, /* 0x50 */
    7,  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x60 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6,  7,  6,  15, 0,  /* 0x70 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0x80 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0x90 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xa0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xb0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xc0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xd0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xe0 */
    4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  4,  /* 0xf0 */
};

#define IS(c, k) (cls[(unsigned char)(c)] & (k))

static int lower(int c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

/* Case-insensitive equality with a literal made only of lowercase letters, digits and '-'
 * (every SPAN_IS below). Setting bit 0x20 of a byte maps 'A'-'Z' onto 'a'-'z' and leaves
 * lowercase letters, digits and '-' alone; the only other bytes it maps into the literal's
 * alphabet are 0x0D and 0x10-0x19, control bytes that no field name or value reaching here
 * can hold. So one OR per byte, and 8 bytes at a time, give the same answer as lowering
 * each letter. ASCII-only, so the locale cannot change what a header name matches. */
static bool span_ieq(const char *p, size_t n, const char *lit, size_t litn)
{
    if (n != litn)
        return false;
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t a, b;
        memcpy(&a, p + i, 8);
        memcpy(&b, lit + i, 8);
        if ((a | 0x2020202020202020ULL) != b)
            return false;
    }
    for (; i < n; i++)
        if (((unsigned char)p[i] | 0x20) != (unsigned char)lit[i])
            return false;
    return true;
}

#define SPAN_IS(p, n, lit) span_ieq((p), (n), lit, sizeof(lit) - 1)

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The first byte at or after p that a field value may not hold (a control byte other than
 * HTAB, or DEL), 16 bytes at a time where they fit before `lim`: tokens, keys and long
 * cookies make values the bulk of a head. */
static inline const char *value_end(const char *p, const char *lim)
{
#ifdef PARSE_SIMD
    while (lim - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* unsigned v <= 0x1F: min(v, 0x1F) == v */
        __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1F)), v);
        ctl = _mm_andnot_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('\t')), ctl);
        ctl = _mm_or_si128(ctl, _mm_cmpeq_epi8(v, _mm_set1_epi8(0x7F)));
        unsigned m = (unsigned)_mm_movemask_epi8(ctl);
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
#else
    (void)lim;
#endif
    while (IS(*p, C_VALUE))
        p++;
    return p;
}

/* The first byte at or after p that a request target may not hold (anything but VCHAR),
 * 16 bytes at a time where they fit before `lim`. */
static inline const char *target_end(const char *p, const char *lim)
{
#ifdef PARSE_SIMD
    while (lim - p >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* VCHAR is 0x21-0x7E: as signed bytes, > 0x20 and not 0x7F (0x80-0xFF are negative) */
        __m128i ok = _mm_andnot_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8(0x7F)),
                                      _mm_cmpgt_epi8(v, _mm_set1_epi8(0x20)));
        unsigned m = (unsigned)_mm_movemask_epi8(ok) ^ 0xFFFFu;
        if (m)
            return p + __builtin_ctz(m);
        p += 16;
    }
#else
    (void)lim;
#endif
    while (IS(*p, C_TARGET))
        p++;
    return p;
}

/* Content-Length = 1*DIGIT (RFC 9110 §8.6). A list, a sign or any space inside is refused
 * rather than reconciled, because a peer that reconciles differently could be smuggled. */
static int parse_content_length(const char *p, size_t n, int64_t *out)
{
    if (n == 0)
        return SB_HTTP_E_BAD;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return SB_HTTP_E_BAD;
        int d = p[i] - '0';
        if (v > (INT64_MAX - d) / 10)
            return SB_HTTP_E_BAD;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* Host = uri-host [ ":" port ] (RFC 9110 §7.2); RFC 9112 §3.2 requires 400 for an invalid
 * one. Checked by character class only: enough to refuse spaces, paths, userinfo and lists. */
static bool host_valid(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!IS(p[i], C_HOST))
            return false;
    return true;
}

/* Connection = #connection-option (RFC 9110 §7.6.1): a comma list, empty elements allowed. */
static void scan_connection(const char *p, size_t n, bool *close, bool *keep)
{
    size_t i = 0;
    while (i < n) {
        size_t s = i;
        while (i < n && p[i] != ',')
            i++;
        size_t e = i;
        while (s < e && is_ows(p[s]))
            s++;
        while (e > s && is_ows(p[e - 1]))
            e--;
        if (SPAN_IS(p + s, e - s, "close"))
            *close = true;
        else if (SPAN_IS(p + s, e - s, "keep-alive"))
            *keep = true;
        i++; /* past the comma */
    }
}

/* Splits the target into path and query. Absolute-form (RFC 9112 §3.2.2) is reduced to its
 * path so routing sees the same path either way. */
static int split_target(struct sb_http_request *req)
{
    const char *t = req->target.p;
    size_t n = req->target.n;
    size_t path_start = 0;

    if (t[0] == '*') {
        /* Asterisk-form is for OPTIONS only (RFC 9112 §3.2.4). */
        if (n != 1 || req->method.n != 7 || memcmp(req->method.p, "OPTIONS", 7) != 0)
            return SB_HTTP_E_BAD;
        req->path = req->target;
        req->query.p = t + n;
        req->query.n = 0;
        return 0;
    }
    if (t[0] != '/') {
        /* absolute-form: scheme "://" authority path-abempty [ "?" query ]; authority-form
         * (CONNECT) is not served, so anything else is refused. */
        size_t i = 0;
        if (!((t[0] >= 'a' && t[0] <= 'z') || (t[0] >= 'A' && t[0] <= 'Z')))
            return SB_HTTP_E_BAD;
        while (i < n && ((t[i] >= 'a' && t[i] <= 'z') || (t[i] >= 'A' && t[i] <= 'Z') ||
                         (t[i] >= '0' && t[i] <= '9') || t[i] == '+' || t[i] == '-' || t[i] == '.'))
            i++;
        if (n - i < 4 || t[i] != ':' || t[i + 1] != '/' || t[i + 2] != '/')
            return SB_HTTP_E_BAD;
        i += 3;
        size_t a = i;
        while (i < n && t[i] != '/' && t[i] != '?' && t[i] != '#')
            i++;
        if (i == a)
            return SB_HTTP_E_BAD;
        path_start = i;
    }
    const char *q = memchr(t + path_start, '?', n - path_start);
    size_t pe = q ? (size_t)(q - t) : n;
    if (pe == path_start) {
        req->path.p = "/";
        req->path.n = 1;
    } else {
        req->path.p = t + path_start;
        req->path.n = pe - path_start;
    }
    if (q) {
        req->query.p = q + 1;
        req->query.n = n - pe - 1;
    } else {
        req->query.p = t + n;
        req->query.n = 0;
    }
    return 0;
}

/* Parses a head known to be complete: buf[start..end) holds the request line and the field
 * lines, every LF in it is preceded by CR, and it ends with the CRLF of the blank line. The
 * loops below stop at the first byte outside their class, and the trailing CRLF CRLF is
 * outside every class, so no loop can run past `end`. */
static int parse_head(const char *buf, size_t start, size_t end, struct sb_http_request *req)
{
    const char *p = buf + start;
    const char *lim = buf + end;

    /* request-line = method SP request-target SP HTTP-version (RFC 9112 §3) */
    const char *s = p;
    while (IS(*p, C_TCHAR))
        p++;
    if (p == s || *p != ' ')
        return SB_HTTP_E_BAD;
    req->method.p = s;
    req->method.n = (size_t)(p - s);
    s = ++p;
    p = target_end(p, lim);
    if (p == s || *p != ' ')
        return SB_HTTP_E_BAD;
    req->target.p = s;
    req->target.n = (size_t)(p - s);
    s = ++p;
    while (IS(*p, C_TARGET))
        p++;
    if (*p != '\r' || p[1] != '\n')
        return SB_HTTP_E_BAD;
    /* HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 §2.3). */
    if (p - s != 8 || memcmp(s, "HTTP/", 5) != 0 || s[5] < '0' || s[5] > '9' || s[6] != '.' ||
        s[7] < '0' || s[7] > '9')
        return SB_HTTP_E_BAD;
    if (s[5] != '1' || s[7] > '1')
        return SB_HTTP_E_VERSION;
    req->minor_version = s[7] - '0';
    p += 2;

    int rc = split_target(req);
    if (rc)
        return rc;

    req->nheaders = 0;
    req->content_length = -1;
    req->chunked = false;
    req->expect_continue = false;
    req->expect_other = false;
    bool have_cl = false, have_te = false, te_chunked = false;
    bool conn_close = false, conn_keep = false;
    int hosts = 0;

    for (;;) {
        if (*p == '\r') {
            if (p[1] != '\n')
                return SB_HTTP_E_BAD;
            break; /* the blank line: the caller found it, so p + 2 == buf + end */
        }
        /* obs-fold (RFC 9112 §5.2) and whitespace before the first name (§2.2). */
        if (is_ows(*p))
            return SB_HTTP_E_BAD;
        s = p;
        while (IS(*p, C_TCHAR))
            p++;
        /* No whitespace between name and colon (RFC 9112 §5.1); empty names are refused. */
        if (p == s || *p != ':')
            return SB_HTTP_E_BAD;
        const char *name = s;
        size_t name_n = (size_t)(p - s);
        p++;
        while (is_ows(*p))
            p++;
        s = p;
        p = value_end(p, lim);
        /* Anything but CRLF here is a control byte or a bare CR (RFC 9110 §5.5). */
        if (*p != '\r' || p[1] != '\n')
            return SB_HTTP_E_BAD;
        const char *ve = p;
        while (ve > s && is_ows(ve[-1]))
            ve--;
        p += 2;

        if (req->nheaders == SB_HTTP_MAX_HEADERS)
            return SB_HTTP_E_TOO_LARGE;
        struct sb_http_header *h = &req->headers[req->nheaders++];
        h->name.p = name;
        h->name.n = name_n;
        h->value.p = s;
        h->value.n = (size_t)(ve - s);

        switch (name_n) {
        case 4:
            if (SPAN_IS(name, name_n, "host")) {
                if (!host_valid(h->value.p, h->value.n))
                    return SB_HTTP_E_BAD;
                hosts++;
            }
            break;
        case 6:
            if (SPAN_IS(name, name_n, "expect")) {
                if (SPAN_IS(h->value.p, h->value.n, "100-continue"))
                    req->expect_continue = true;
                else
                    req->expect_other = true;
            }
            break;
        case 10:
            if (SPAN_IS(name, name_n, "connection"))
                scan_connection(h->value.p, h->value.n, &conn_close, &conn_keep);
            break;
        case 14:
            if (SPAN_IS(name, name_n, "content-length")) {
                if (have_cl)
                    return SB_HTTP_E_BAD;
                have_cl = true;
                rc = parse_content_length(h->value.p, h->value.n, &req->content_length);
                if (rc)
                    return rc;
            }
            break;
        case 17:
            if (SPAN_IS(name, name_n, "transfer-encoding")) {
                /* RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing. */
                if (have_te || req->minor_version == 0)
                    return SB_HTTP_E_BAD;
                have_te = true;
                te_chunked = SPAN_IS(h->value.p, h->value.n, "chunked");
                if (h->value.n == 0)
                    return SB_HTTP_E_BAD;
            }
            break;
        default:
            break;
        }
    }

    /* RFC 9112 §6.1: a request with both is a smuggling attempt or a broken client; the
     * server MAY reject it, and we do rather than guess which one a peer honoured. */
    if (have_te && have_cl)
        return SB_HTTP_E_BAD;
    if (have_te && !te_chunked)
        return SB_HTTP_E_NOT_IMPLEMENTED;
    req->chunked = have_te;
    /* RFC 9112 §3.2: exactly one Host in HTTP/1.1; at most one in HTTP/1.0. */
    if (hosts > 1 || (hosts == 0 && req->minor_version == 1))
        return SB_HTTP_E_BAD;
    /* RFC 9110 §10.1.1: a 100-continue expectation in HTTP/1.0 is ignored. */
    if (req->minor_version == 0)
        req->expect_continue = false;
    /* RFC 9112 §9.3: persistent by default in 1.1; in 1.0 only with keep-alive. */
    req->keep_alive = !conn_close && (req->minor_version == 1 || conn_keep);
    req->head_len = end;
    return (int)end;
}

/* Index of the first LF in buf[from..limit), or limit. Inline and 16 bytes a step: a head is
 * a handful of short lines, where a call to memchr per line costs more than the scan. */
static inline size_t find_lf(const char *buf, size_t from, size_t limit)
{
#ifdef PARSE_SIMD
    while (limit - from >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(buf + from));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('\n')));
        if (m)
            return from + (size_t)__builtin_ctz(m);
        from += 16;
    }
#endif
    while (from < limit && buf[from] != '\n')
        from++;
    return from;
}

int sb_http_parse_request(const char *buf, size_t len, size_t max_head, struct sb_http_request *req)
{
    size_t limit = len < max_head ? len : max_head;
    size_t line = 0;  /* start of the current line */
    size_t start = 0; /* start of the request line, past any leading empty lines */
    bool seen_request_line = false;

    /* Find the blank line first: re-offering an incomplete head then costs one scan per
     * line. Every LF is checked for its CR here, so a bare LF is refused at once instead of
     * leaving the client waiting for a blank line that a strict reader will never see. */
    while (line < limit) {
        size_t i = find_lf(buf, line, limit);
        if (i == limit)
            break;
        if (i == 0 || buf[i - 1] != '\r')
            return SB_HTTP_E_BAD;
        if (i - line == 1) {
            if (seen_request_line) {
                size_t end = i + 1;
                if (end > INT32_MAX)
                    return SB_HTTP_E_TOO_LARGE;
                return parse_head(buf, start, end, req);
            }
            /* RFC 9112 §2.2: empty lines before the request line SHOULD be ignored. */
            start = i + 1;
        } else {
            seen_request_line = true;
        }
        line = i + 1;
    }
    if (len >= max_head)
        return SB_HTTP_E_TOO_LARGE;
    return SB_HTTP_AGAIN;
}

const struct sb_http_str *sb_http_header_get(const struct sb_http_request *req, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct sb_http_str *h = &req->headers[i].name;
        if (h->n != n)
            continue;
        size_t j = 0;
        while (j < n) {
            unsigned char a = (unsigned char)h->p[j], b = (unsigned char)name[j];
            if (a != b && lower(a) != lower(b))
                break;
            j++;
        }
        if (j == n)
            return &req->headers[i].value;
    }
    return NULL;
}

int sb_http_error_status(int err)
{
    switch (err) {
    case SB_HTTP_E_TOO_LARGE:
        return 431;
    case SB_HTTP_E_VERSION:
        return 505;
    case SB_HTTP_E_NOT_IMPLEMENTED:
        return 501;
    case SB_HTTP_E_BODY_TOO_LARGE:
        return 413;
    default:
        return 400;
    }
}

const char *sb_http_strerror(int err)
{
    switch (err) {
    case SB_HTTP_AGAIN:
        return "incomplete request";
    case SB_HTTP_E_BAD:
        return "malformed request";
    case SB_HTTP_E_TOO_LARGE:
        return "request header fields too large";
    case SB_HTTP_E_VERSION:
        return "HTTP version not supported";
    case SB_HTTP_E_NOT_IMPLEMENTED:
        return "transfer coding not implemented";
    case SB_HTTP_E_BODY_TOO_LARGE:
        return "request body too large";
    default:
        return "bad request";
    }
}

/* ---- chunked body (RFC 9112 §7.1) ---- */

#define CHUNK_LINE_MAX    4096
#define CHUNK_TRAILER_MAX 8192
#define CHUNK_DIGITS_MAX  16

enum {
    CK_SIZE = 0,      /* chunk-size digits */
    CK_EXT,           /* after ';' up to CR */
    CK_SIZE_LF,       /* LF ending the size line */
    CK_DATA,          /* chunk-data */
    CK_DATA_CR,       /* CR after chunk-data */
    CK_DATA_LF,       /* LF after chunk-data */
    CK_TRAILER_START, /* start of a trailer line, or CR of the final blank line */
    CK_TRAILER_NAME,  /* field-name up to ':' */
    CK_TRAILER_VALUE, /* field-value up to CR */
    CK_TRAILER_LF,    /* LF ending a trailer line */
    CK_FINAL_LF,      /* LF of the blank line that ends the message */
    CK_DONE,
    CK_ERROR,
};

void sb_http_chunked_init(struct sb_http_chunked *c)
{
    c->state = CK_SIZE;
    c->remaining = 0;
    c->line_len = 0;
    c->trailer_len = 0;
    c->digits = 0;
    c->saw_ext = false;
    c->done = false;
}

static ssize_t chunk_fail(struct sb_http_chunked *c, int err)
{
    c->state = CK_ERROR;
    return err;
}

ssize_t sb_http_chunked_feed(struct sb_http_chunked *c, const char *in, size_t len,
                             struct sb_buf *out)
{
    size_t i = 0;
    if (c->state == CK_ERROR)
        return SB_HTTP_E_BAD;
    while (i < len) {
        unsigned char ch = (unsigned char)in[i];
        switch (c->state) {
        case CK_SIZE: {
            int v = sb_hex_val(ch);
            if (v >= 0) {
                /* 16 digits fill a uint64_t, so the limit also rules out overflow. */
                if (c->digits == CHUNK_DIGITS_MAX)
                    return chunk_fail(c, SB_HTTP_E_BAD);
                c->remaining = (c->remaining << 4) | (uint64_t)v;
                c->digits++;
                c->line_len++;
                i++;
                break;
            }
            /* No sign, no whitespace: a size that another reader parses differently is a
             * smuggling vector (RFC 9112 §11.2). */
            if (c->digits == 0)
                return chunk_fail(c, SB_HTTP_E_BAD);
            if (ch == ';') {
                c->saw_ext = true;
                c->state = CK_EXT;
            } else if (ch == '\r') {
                c->state = CK_SIZE_LF;
            } else {
                return chunk_fail(c, SB_HTTP_E_BAD);
            }
            c->line_len++;
            i++;
            break;
        }
        case CK_EXT:
            /* Extensions are ignored, but only CRLF may end them: a bare CR or LF inside
             * is where lenient readers disagree about where the data starts. */
            while (i < len && IS(in[i], C_VALUE)) {
                if (++c->line_len > CHUNK_LINE_MAX)
                    return chunk_fail(c, SB_HTTP_E_BAD);
                i++;
            }
            if (i == len)
                break;
            if (in[i] != '\r')
                return chunk_fail(c, SB_HTTP_E_BAD);
            c->state = CK_SIZE_LF;
            i++;
            break;
        case CK_SIZE_LF:
            if (ch != '\n')
                return chunk_fail(c, SB_HTTP_E_BAD);
            i++;
            c->line_len = 0;
            c->digits = 0;
            if (c->remaining == 0) {
                c->state = CK_TRAILER_START;
                break;
            }
            /* Refuse a chunk that cannot fit before reading its data. */
            if (out->len > out->max || c->remaining > out->max - out->len)
                return chunk_fail(c, SB_HTTP_E_BODY_TOO_LARGE);
            c->state = CK_DATA;
            break;
        case CK_DATA: {
            size_t n = len - i;
            if ((uint64_t)n > c->remaining)
                n = (size_t)c->remaining;
            int rc = sb_buf_append(out, in + i, n);
            if (rc)
                return chunk_fail(c, SB_HTTP_E_BODY_TOO_LARGE);
            c->remaining -= n;
            i += n;
            if (c->remaining == 0)
                c->state = CK_DATA_CR;
            break;
        }
        case CK_DATA_CR:
            if (ch != '\r')
                return chunk_fail(c, SB_HTTP_E_BAD);
            c->state = CK_DATA_LF;
            i++;
            break;
        case CK_DATA_LF:
            if (ch != '\n')
                return chunk_fail(c, SB_HTTP_E_BAD);
            c->state = CK_SIZE;
            i++;
            break;
        case CK_TRAILER_START:
            if (ch == '\r') {
                c->state = CK_FINAL_LF;
                i++;
                break;
            }
            /* A trailer line must start with a field name: no obs-fold, no empty name. */
            if (!IS(ch, C_TCHAR))
                return chunk_fail(c, SB_HTTP_E_BAD);
            c->state = CK_TRAILER_NAME;
            c->line_len = 0;
            break;
        case CK_TRAILER_NAME:
        case CK_TRAILER_VALUE:
        case CK_TRAILER_LF:
            /* Trailers are header fields, so their limits answer 431 like the head's. */
            if (++c->line_len > CHUNK_LINE_MAX || ++c->trailer_len > CHUNK_TRAILER_MAX)
                return chunk_fail(c, SB_HTTP_E_TOO_LARGE);
            if (c->state == CK_TRAILER_NAME) {
                if (ch == ':')
                    c->state = CK_TRAILER_VALUE;
                else if (!IS(ch, C_TCHAR))
                    return chunk_fail(c, SB_HTTP_E_BAD);
            } else if (c->state == CK_TRAILER_VALUE) {
                if (ch == '\r')
                    c->state = CK_TRAILER_LF;
                else if (!IS(ch, C_VALUE))
                    return chunk_fail(c, SB_HTTP_E_BAD);
            } else {
                if (ch != '\n')
                    return chunk_fail(c, SB_HTTP_E_BAD);
                c->state = CK_TRAILER_START;
            }
            i++;
            break;
        case CK_FINAL_LF:
            if (ch != '\n')
                return chunk_fail(c, SB_HTTP_E_BAD);
            c->state = CK_DONE;
            c->done = true;
            return (ssize_t)(i + 1);
        case CK_DONE:
            return (ssize_t)i;
        default:
            return chunk_fail(c, SB_HTTP_E_BAD);
        }
    }
    return (ssize_t)i;
}

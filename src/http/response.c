#include "http/response.h"

#include <string.h>
#include <strings.h>

static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool eq_nocase(const struct sb_http_str *s, const char *lit)
{
    size_t n = strlen(lit);
    return s->n == n && strncasecmp(s->p, lit, n) == 0;
}

/* Whether a comma-separated token list (Connection) contains `tok`. */
static bool list_has(const struct sb_http_str *v, const char *tok)
{
    size_t n = strlen(tok), i = 0;
    while (i < v->n) {
        while (i < v->n && (v->p[i] == ' ' || v->p[i] == '\t' || v->p[i] == ','))
            i++;
        size_t start = i;
        while (i < v->n && v->p[i] != ',' && v->p[i] != ' ' && v->p[i] != '\t')
            i++;
        if (i - start == n && strncasecmp(v->p + start, tok, n) == 0)
            return true;
    }
    return false;
}

/* Finds the end of the head: the index just past the blank line, or 0. */
static size_t find_head_end(const char *buf, size_t len)
{
    const char *p = buf;
    const char *end = buf + len;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        p++;
        if (p < end && *p == '\n')
            return (size_t)(p + 1 - buf);
        if (end - p >= 2 && p[0] == '\r' && p[1] == '\n')
            return (size_t)(p + 2 - buf);
    }
    return 0;
}

/* One line [*pos, eol) without its line end; returns false at a bare CR. */
static bool next_line(const char *buf, size_t head_len, size_t *pos, size_t *line_end)
{
    const char *p = buf + *pos;
    const char *lf = memchr(p, '\n', head_len - *pos);
    if (!lf)
        return false;
    size_t e = (size_t)(lf - buf);
    size_t next = e + 1;
    if (e > *pos && buf[e - 1] == '\r')
        e--;
    if (memchr(p, '\r', e - *pos))
        return false;
    *line_end = e;
    *pos = next;
    return true;
}

int sb_http_parse_response(const char *buf, size_t len, size_t max_head,
                           struct sb_http_response *res)
{
    size_t head_len = find_head_end(buf, len < max_head ? len : max_head);
    if (!head_len)
        return len >= max_head ? SB_HTTP_E_TOO_LARGE : SB_HTTP_AGAIN;

    size_t pos = 0, eol;
    if (!next_line(buf, head_len, &pos, &eol))
        return SB_HTTP_E_BAD;
    /* "HTTP/1.x SP ddd [SP reason]" */
    if (eol < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || (buf[7] != '0' && buf[7] != '1') ||
        buf[8] != ' ')
        return SB_HTTP_E_BAD;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9')
            return SB_HTTP_E_BAD;
        status = status * 10 + (buf[i] - '0');
    }
    if (status < 100 || (eol > 12 && buf[12] != ' '))
        return SB_HTTP_E_BAD;
    for (size_t i = 13; i < eol; i++) {
        unsigned char c = (unsigned char)buf[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return SB_HTTP_E_BAD;
    }
    res->status = status;
    res->minor_version = buf[7] - '0';
    res->nheaders = 0;
    res->content_length = -1;
    res->chunked = false;
    res->close = res->minor_version == 0;
    bool keep_alive_10 = false, saw_te = false;

    for (;;) {
        size_t start = pos;
        if (!next_line(buf, head_len, &pos, &eol))
            return SB_HTTP_E_BAD;
        if (eol == start)
            break; /* the blank line */
        if (buf[start] == ' ' || buf[start] == '\t')
            return SB_HTTP_E_BAD; /* obs-fold */
        size_t i = start;
        while (i < eol && is_tchar((unsigned char)buf[i]))
            i++;
        if (i == start || i >= eol || buf[i] != ':')
            return SB_HTTP_E_BAD;
        struct sb_http_str name = {buf + start, i - start};
        i++;
        while (i < eol && (buf[i] == ' ' || buf[i] == '\t'))
            i++;
        size_t vend = eol;
        while (vend > i && (buf[vend - 1] == ' ' || buf[vend - 1] == '\t'))
            vend--;
        for (size_t k = i; k < vend; k++) {
            unsigned char c = (unsigned char)buf[k];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return SB_HTTP_E_BAD;
        }
        struct sb_http_str value = {buf + i, vend - i};
        if (res->nheaders == SB_HTTP_MAX_HEADERS)
            return SB_HTTP_E_TOO_LARGE;
        res->headers[res->nheaders].name = name;
        res->headers[res->nheaders].value = value;
        res->nheaders++;

        if (eq_nocase(&name, "content-length")) {
            if (value.n == 0 || value.n > 18)
                return SB_HTTP_E_BAD;
            int64_t v = 0;
            for (size_t k = 0; k < value.n; k++) {
                if (value.p[k] < '0' || value.p[k] > '9')
                    return SB_HTTP_E_BAD;
                v = v * 10 + (value.p[k] - '0');
            }
            if (res->content_length >= 0 && res->content_length != v)
                return SB_HTTP_E_BAD;
            res->content_length = v;
        } else if (eq_nocase(&name, "transfer-encoding")) {
            if (saw_te || !eq_nocase(&value, "chunked"))
                return SB_HTTP_E_BAD;
            saw_te = true;
            res->chunked = true;
        } else if (eq_nocase(&name, "connection")) {
            if (list_has(&value, "close"))
                res->close = true;
            if (list_has(&value, "keep-alive"))
                keep_alive_10 = true;
        }
    }
    if (res->chunked && res->content_length >= 0)
        return SB_HTTP_E_BAD; /* RFC 9112 §6.3: a smuggling shape; never trust either */
    if (res->minor_version == 0 && keep_alive_10 && res->content_length >= 0)
        res->close = false;
    if (res->minor_version == 0 && res->chunked)
        return SB_HTTP_E_BAD;
    res->head_len = head_len;
    return (int)head_len;
}

bool sb_http_response_has_body(int status)
{
    return status >= 200 && status != 204 && status != 304;
}

#include "canon/sigv4.h"

#include "core/hex.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define URL_MAX       8192
#define CANON_MAX     (64 * 1024)
#define QUERY_MAX_ARG 256

static const char hexu[] = "0123456789ABCDEF";
static const char hexl[] = "0123456789abcdef";

static bool unreserved(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '.' || ch == '_' || ch == '~';
}

static int encode_bytes(struct sb_buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        int rc;
        if (unreserved(ch)) {
            rc = sb_buf_append_char(out, (char)ch);
        } else {
            char e[3] = {'%', hexu[ch >> 4], hexu[ch & 15]};
            rc = sb_buf_append(out, e, 3);
        }
        if (rc)
            return rc;
    }
    return 0;
}

int sb_sigv4_encode_path(const char *raw, struct sb_buf *out)
{
    return encode_bytes(out, raw, strlen(raw));
}

/* Decodes one query component and appends it re-encoded with the unreserved set, so an
 * already-encoded query is not encoded twice. '+' is a literal plus (%2B), not a space. */
static int requote(struct sb_buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '%' && i + 2 < n && sb_hex_val(s[i + 1]) >= 0 && sb_hex_val(s[i + 2]) >= 0) {
            ch = (unsigned char)(sb_hex_val(s[i + 1]) * 16 + sb_hex_val(s[i + 2]));
            i += 2;
        }
        char c = (char)ch;
        int rc = encode_bytes(out, &c, 1);
        if (rc)
            return rc;
    }
    return 0;
}

struct qarg {
    const char *s;   /* the encoded "name=value", set once the buffer stops moving */
    size_t off, len; /* where it is in the buffer */
    size_t name_len;
};

static int qarg_cmp(const void *a, const void *b)
{
    const struct qarg *x = a, *y = b;
    size_t nx = x->name_len, ny = y->name_len;
    int c = memcmp(x->s, y->s, nx < ny ? nx : ny);
    if (c)
        return c;
    if (nx != ny)
        return nx < ny ? -1 : 1;
    size_t vx = x->len - nx, vy = y->len - ny;
    c = memcmp(x->s + nx, y->s + ny, vx < vy ? vx : vy);
    if (c)
        return c;
    return vx < vy ? -1 : vx > vy;
}

/* The canonical query string of `q` (without '?'): components decoded and re-encoded,
 * sorted by name then value, "name=value" joined by '&'. */
static int canonical_query(const char *q, size_t qlen, struct sb_buf *out)
{
    struct qarg args[QUERY_MAX_ARG];
    size_t nargs = 0;
    struct sb_buf tmp;
    sb_buf_init(&tmp, CANON_MAX);
    int rc = 0;
    size_t i = 0;
    while (i < qlen) {
        size_t j = i;
        while (j < qlen && q[j] != '&')
            j++;
        if (j > i) {
            if (nargs == QUERY_MAX_ARG) {
                rc = -1;
                goto out;
            }
            const char *eq = memchr(q + i, '=', j - i);
            size_t nlen = eq ? (size_t)(eq - (q + i)) : j - i;
            struct qarg *a = &args[nargs++];
            a->off = tmp.len;
            if ((rc = requote(&tmp, q + i, nlen)) != 0)
                goto out;
            a->name_len = tmp.len - a->off;
            if ((rc = sb_buf_append_char(&tmp, '=')) != 0)
                goto out;
            if (eq && (rc = requote(&tmp, eq + 1, (size_t)(q + j - (eq + 1)))) != 0)
                goto out;
            a->len = tmp.len - a->off;
        }
        i = j + 1;
    }
    for (size_t k = 0; k < nargs; k++)
        args[k].s = tmp.data + args[k].off;
    if (nargs > 1)
        qsort(args, nargs, sizeof args[0], qarg_cmp);
    for (size_t k = 0; k < nargs; k++) {
        if ((k && (rc = sb_buf_append_char(out, '&')) != 0) ||
            (rc = sb_buf_append(out, args[k].s, args[k].len)) != 0)
            goto out;
    }
out:
    sb_buf_free(&tmp);
    return rc;
}

static void hex_of(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexl[d[i] >> 4];
        out[2 * i + 1] = hexl[d[i] & 15];
    }
    out[2 * n] = '\0';
}

static void sha256_hex(const void *d, size_t n, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(d ? d : (const void *)"", n, md);
    hex_of(md, sizeof md, out);
}

static int hmac(const void *key, size_t klen, const char *msg, size_t mlen, unsigned char out[32])
{
    unsigned int olen = 0;
    if (!HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)msg, mlen, out, &olen) ||
        olen != 32)
        return -1;
    return 0;
}

/* Appends a header value trimmed, with inner runs of spaces collapsed to one. */
static int append_trimmed(struct sb_buf *b, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    bool space = false;
    for (size_t i = 0; i < n; i++) {
        bool s = v[i] == ' ' || v[i] == '\t';
        if (s && space)
            continue;
        space = s;
        int rc = sb_buf_append_char(b, s ? ' ' : v[i]);
        if (rc)
            return rc;
    }
    return 0;
}

static bool has_ctl(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

/* `sign_sha`: whether x-amz-content-sha256 is a signed header. Always true for callers of
 * sb_sigv4_sign; the AWS test suite signs only host and x-amz-date, so tests turn it off. */
static int sign_impl(const struct sb_sigv4_creds *c, const char *method, const char *url,
                     const char *content_type, const char *body, size_t body_len, time_t now,
                     bool sign_sha, struct sb_sigv4_out *out)
{
    if (!c || !c->access_key || !c->secret_key || !c->region || !c->service || !method || !url ||
        !*c->access_key || !*c->secret_key || !*c->region || !*c->service || !*method)
        return -1;
    if (strlen(url) > URL_MAX || has_ctl(url) || has_ctl(c->access_key) || has_ctl(c->region) ||
        has_ctl(c->service) || has_ctl(method) || (content_type && has_ctl(content_type)) ||
        (c->session_token && has_ctl(c->session_token)) || (!body && body_len))
        return -1;

    bool https;
    const char *p;
    if (strncasecmp(url, "https://", 8) == 0) {
        https = true;
        p = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        https = false;
        p = url + 7;
    } else {
        return -1;
    }
    size_t hlen = strcspn(p, "/?#");
    if (hlen == 0 || memchr(p, '@', hlen))
        return -1;
    const char *path = p + hlen;
    size_t plen = strcspn(path, "?#");
    const char *query = NULL;
    size_t qlen = 0;
    if (path[plen] == '?') {
        query = path + plen + 1;
        qlen = strcspn(query, "#");
    }
    /* curl leaves a scheme's default port out of Host, so the signed host does too. */
    size_t host_sig_len = hlen;
    if (https && hlen > 4 && memcmp(p + hlen - 4, ":443", 4) == 0)
        host_sig_len -= 4;
    else if (!https && hlen > 3 && memcmp(p + hlen - 3, ":80", 3) == 0)
        host_sig_len -= 3;

    struct tm tm;
    if (!gmtime_r(&now, &tm) ||
        strftime(out->amz_date, sizeof out->amz_date, "%Y%m%dT%H%M%SZ", &tm) != 16)
        return -1;
    char date[9];
    memcpy(date, out->amz_date, 8);
    date[8] = '\0';
    sha256_hex(body, body_len, out->content_sha256);

    struct sb_buf creq, sts;
    sb_buf_init(&creq, CANON_MAX);
    sb_buf_init(&sts, CANON_MAX);
    int rc = -1;
    bool s3 = strcmp(c->service, "s3") == 0;

    /* method, canonical URI */
    if (sb_buf_append_str(&creq, method) || sb_buf_append_char(&creq, '\n'))
        goto out;
    if (plen == 0) {
        if (sb_buf_append_char(&creq, '/'))
            goto out;
    } else if (s3) {
        if (sb_buf_append(&creq, path, plen))
            goto out;
    } else {
        for (size_t i = 0; i < plen;) {
            size_t j = i;
            while (j < plen && path[j] != '/')
                j++;
            if (encode_bytes(&creq, path + i, j - i))
                goto out;
            if (j < plen && sb_buf_append_char(&creq, '/'))
                goto out;
            i = j + 1;
        }
    }
    if (sb_buf_append_char(&creq, '\n'))
        goto out;
    if (query && canonical_query(query, qlen, &creq))
        goto out;
    if (sb_buf_append_char(&creq, '\n'))
        goto out;

    /* canonical headers, already in sorted order */
    char signed_headers[96];
    signed_headers[0] = '\0';
    if (content_type) {
        if (sb_buf_append_str(&creq, "content-type:") || append_trimmed(&creq, content_type) ||
            sb_buf_append_char(&creq, '\n'))
            goto out;
        snprintf(signed_headers, sizeof signed_headers, "content-type;");
    }
    if (sb_buf_append_str(&creq, "host:"))
        goto out;
    for (size_t i = 0; i < host_sig_len; i++) {
        char ch = p[i];
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a');
        if (sb_buf_append_char(&creq, ch))
            goto out;
    }
    if (sb_buf_append_char(&creq, '\n'))
        goto out;
    size_t sl = strlen(signed_headers);
    snprintf(signed_headers + sl, sizeof signed_headers - sl, "host;");
    if (sign_sha) {
        if (sb_buf_printf(&creq, "x-amz-content-sha256:%s\n", out->content_sha256))
            goto out;
        sl = strlen(signed_headers);
        snprintf(signed_headers + sl, sizeof signed_headers - sl, "x-amz-content-sha256;");
    }
    if (sb_buf_printf(&creq, "x-amz-date:%s\n", out->amz_date))
        goto out;
    sl = strlen(signed_headers);
    snprintf(signed_headers + sl, sizeof signed_headers - sl, "x-amz-date");
    if (c->session_token) {
        if (sb_buf_append_str(&creq, "x-amz-security-token:") ||
            append_trimmed(&creq, c->session_token) || sb_buf_append_char(&creq, '\n'))
            goto out;
        sl = strlen(signed_headers);
        snprintf(signed_headers + sl, sizeof signed_headers - sl, ";x-amz-security-token");
    }
    if (sb_buf_printf(&creq, "\n%s\n%s", signed_headers, out->content_sha256))
        goto out;

    char creq_hash[65];
    sha256_hex(creq.data, creq.len, creq_hash);
    if (sb_buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", out->amz_date, date,
                      c->region, c->service, creq_hash))
        goto out;

    /* signing key: HMAC chain over date, region, service, "aws4_request" */
    struct sb_buf key;
    sb_buf_init(&key, 4096);
    if (sb_buf_append_str(&key, "AWS4") || sb_buf_append_str(&key, c->secret_key)) {
        sb_buf_free(&key);
        goto out;
    }
    unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
    int hrc = hmac(key.data, key.len, date, 8, k1);
    sb_buf_free(&key);
    if (hrc || hmac(k1, 32, c->region, strlen(c->region), k2) ||
        hmac(k2, 32, c->service, strlen(c->service), k3) || hmac(k3, 32, "aws4_request", 12, k4) ||
        hmac(k4, 32, sts.data, sts.len, sig))
        goto out;
    char sighex[65];
    hex_of(sig, 32, sighex);
    int n = snprintf(out->authorization, sizeof out->authorization,
                     "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, "
                     "Signature=%s",
                     c->access_key, date, c->region, c->service, signed_headers, sighex);
    if (n < 0 || (size_t)n >= sizeof out->authorization)
        goto out;
    rc = 0;
out:
    if (rc)
        out->authorization[0] = '\0';
    sb_buf_free(&creq);
    sb_buf_free(&sts);
    return rc;
}

int sb_sigv4_sign(const struct sb_sigv4_creds *c, const char *method, const char *url,
                  const char *content_type, const char *body, size_t body_len, time_t now,
                  struct sb_sigv4_out *out)
{
    return sign_impl(c, method, url, content_type, body, body_len, now, true, out);
}

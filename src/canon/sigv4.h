/* AWS Signature Version 4 for one HTTP request (Bedrock runtime calls).
 *
 * The signature covers the method, the canonical URI, the canonical query string and the
 * headers content-type (when given), host, x-amz-content-sha256, x-amz-date and
 * x-amz-security-token (when a session token is given). The caller must send exactly those
 * headers with exactly the values signed:
 *
 *   host                  implicit: the URL's host (and port when not the scheme's default)
 *   content-type          the `content_type` argument, verbatim
 *   x-amz-date            out->amz_date
 *   x-amz-content-sha256  out->content_sha256
 *   x-amz-security-token  creds->session_token, when set
 *   authorization         out->authorization
 *
 * Canonical URI: the URL's path is taken as already percent-encoded once for transmission;
 * for every service but "s3" each segment is encoded again (a model id "a:b" travels as
 * "/model/a%3Ab/converse" and is signed as "/model/a%253Ab/converse"), as AWS requires for
 * non-S3 services. No dot-segment normalisation is done. Query parameters are decoded, then
 * re-encoded with the RFC 3986 unreserved set and sorted by name, then value.
 *
 * Pure functions: no clock (the caller passes `now`), no I/O, thread-safe. */
#ifndef SB_CANON_SIGV4_H
#define SB_CANON_SIGV4_H

#include "core/buf.h"

#include <stddef.h>
#include <time.h>

struct sb_sigv4_creds {
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* or NULL */
    const char *region;
    const char *service; /* "bedrock" */
};

struct sb_sigv4_out {
    char amz_date[17];       /* "20150830T123600Z" */
    char content_sha256[65]; /* lowercase hex SHA-256 of the body */
    char authorization[768]; /* the whole Authorization header value */
};

/* Signs one request. `url` is absolute (http:// or https://, no userinfo, at most 8 KiB);
 * `content_type` may be NULL (then it is not signed); `body` may be NULL when body_len is 0.
 * Returns 0, or -1 for a bad URL, missing credentials or a result that does not fit. */
int sb_sigv4_sign(const struct sb_sigv4_creds *c, const char *method, const char *url,
                  const char *content_type, const char *body, size_t body_len, time_t now,
                  struct sb_sigv4_out *out);

/* Appends `raw` percent-encoded as one URL path segment: every byte but the unreserved
 * A-Za-z0-9-._~ becomes %XX (uppercase hex), '/' included. Returns 0 or -E2BIG / -ENOMEM
 * from the buffer. */
int sb_sigv4_encode_path(const char *raw, struct sb_buf *out);

#endif

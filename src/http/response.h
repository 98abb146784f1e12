/* Strict HTTP/1.1 response-head parser for the upstream client (RFC 9112 §4, §6).
 *
 * Like the request parser it is non-incremental and zero-copy: the caller offers the bytes
 * received so far; the parser finds the blank line first, then reads the head in one pass.
 * A provider that frames its response ambiguously could make the gateway pass another
 * response's bytes to a client, so the rules are strict:
 *   - status line "HTTP/1.x SP 3DIGIT [SP reason]" CRLF; the reason may be empty;
 *   - lines end in CRLF (a bare LF is tolerated, as RFC 9112 §2.2 allows a recipient to);
 *     a bare CR is an error;
 *   - header names are tokens with no whitespace before the colon; obs-fold is refused;
 *     values hold no control bytes but HTAB;
 *   - Content-Length must be digits; two different values, or Content-Length with
 *     Transfer-Encoding, are errors; Transfer-Encoding other than "chunked" is an error;
 *   - at most SB_HTTP_MAX_HEADERS headers and max_head bytes.
 * Thread-safe; never allocates. */
#ifndef SB_HTTP_RESPONSE_H
#define SB_HTTP_RESPONSE_H

#include "http/parser.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sb_http_response {
    int status;
    int minor_version;
    struct sb_http_header headers[SB_HTTP_MAX_HEADERS];
    size_t nheaders;
    int64_t content_length; /* -1 when absent */
    bool chunked;
    bool close; /* Connection: close, or HTTP/1.0 without keep-alive */
    size_t head_len;
};

/* > 0: head_len of a complete head; SB_HTTP_AGAIN: need more; SB_HTTP_E_BAD or
 * SB_HTTP_E_TOO_LARGE. */
int sb_http_parse_response(const char *buf, size_t len, size_t max_head,
                           struct sb_http_response *res);

/* Whether a response with this status to a POST or GET has a body at all (RFC 9112 §6.3):
 * 1xx, 204 and 304 never do. */
bool sb_http_response_has_body(int status);

#endif

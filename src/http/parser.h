/* Strict HTTP/1.1 request parser (RFC 9110, RFC 9112), zero-copy and non-incremental:
 * the caller re-offers the whole buffered head until it is complete (the parser first looks
 * for the blank line that ends the head, so re-offering costs a memchr, not a re-parse).
 *
 * Strictness, because a gateway that reads a request differently from the proxy in front of
 * it can be smuggled through (RFC 9112 §6.3, §11.2):
 *   - lines end in CRLF; a bare CR anywhere, or a bare LF, is an error; empty lines before
 *     the request line are skipped (RFC 9112 §2.2) and counted in head_len;
 *   - request line: token method, SP, target, SP, "HTTP/1.0" or "HTTP/1.1" (any other
 *     "HTTP/" DIGIT "." DIGIT: SB_HTTP_E_VERSION; anything else: SB_HTTP_E_BAD). The target
 *     is non-empty VCHAR (no spaces, controls or non-ASCII) in origin-form ("/..."),
 *     absolute-form ("scheme://authority..."), or asterisk-form ("*", OPTIONS only);
 *     authority-form (CONNECT) is refused;
 *   - header names are tokens, with no whitespace before the colon; obs-fold (a line
 *     starting with SP or HTAB) is refused; values may not contain control bytes other than
 *     HTAB (so no NUL, no CR, no LF, no DEL); leading and trailing OWS is trimmed;
 *   - Content-Length must be 1*DIGIT with no sign, fits in int64; two Content-Length
 *     headers, or one with a list ("5, 5"), are refused;
 *   - Transfer-Encoding must be exactly "chunked" (case-insensitive) and only in HTTP/1.1;
 *     any other coding is SB_HTTP_E_NOT_IMPLEMENTED; Transfer-Encoding together with
 *     Content-Length is refused; two Transfer-Encoding headers are refused;
 *   - HTTP/1.1 needs exactly one Host, HTTP/1.0 at most one; a Host value with characters
 *     outside uri-host [":" port] is refused (RFC 9112 §3.2);
 *   - more than SB_HTTP_MAX_HEADERS headers, or a head longer than max_head bytes, is
 *     SB_HTTP_E_TOO_LARGE (431).
 *
 * A bare LF is reported as soon as it is buffered; every other error once the whole head is.
 *
 * Thread-safe (no state); never allocates. */
#ifndef SB_HTTP_PARSER_H
#define SB_HTTP_PARSER_H

#include "core/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SB_HTTP_MAX_HEADERS 100

/* Results: > 0 the length of a complete head; 0 (SB_HTTP_AGAIN) need more bytes; < 0 one of
 * these errors. */
#define SB_HTTP_AGAIN             0
#define SB_HTTP_E_BAD             (-1) /* 400 */
#define SB_HTTP_E_TOO_LARGE       (-2) /* 431 */
#define SB_HTTP_E_VERSION         (-3) /* 505 */
#define SB_HTTP_E_NOT_IMPLEMENTED (-4) /* 501: a transfer coding we do not accept */
#define SB_HTTP_E_BODY_TOO_LARGE  (-5) /* 413: from the chunked decoder */

struct sb_http_str {
    const char *p;
    size_t n;
};

struct sb_http_header {
    struct sb_http_str name;
    struct sb_http_str value;
};

struct sb_http_request {
    struct sb_http_str method;
    struct sb_http_str target; /* as sent: path and query */
    struct sb_http_str path;   /* target up to '?'; for absolute-form, the URI's path (a
                                  static "/" when it is empty) */
    struct sb_http_str query;  /* after '?', without it; n == 0 if none */
    int minor_version;         /* 0 or 1 */
    struct sb_http_header headers[SB_HTTP_MAX_HEADERS];
    size_t nheaders;
    int64_t content_length; /* -1 when absent */
    bool chunked;
    bool keep_alive;      /* from version and Connection: close / keep-alive (a case-
                             insensitive token list; close wins) */
    bool expect_continue; /* Expect: 100-continue (other expectations: SB_HTTP_E_BAD is not
                             used; the caller answers 417 when `expect_other` is set). Always
                             false in HTTP/1.0, which must ignore it (RFC 9110 §10.1.1) */
    bool expect_other;
    size_t head_len; /* bytes of request line + headers + the blank line */
};

/* Parses the head at the start of buf[0..len). Fills *req (pointers into buf) and returns
 * head_len when complete; *req is unspecified after any other result. max_head bounds the
 * head: if no complete head is found within the first max_head bytes, returns
 * SB_HTTP_E_TOO_LARGE (SB_HTTP_AGAIN only while len < max_head). */
int sb_http_parse_request(const char *buf, size_t len, size_t max_head,
                          struct sb_http_request *req);

/* Case-insensitive lookup of the first header with that name; NULL if absent. */
const struct sb_http_str *sb_http_header_get(const struct sb_http_request *req, const char *name);

/* Status code for an error result (400, 431, 505, 501, 413); 400 for anything unknown. */
int sb_http_error_status(int err);
/* A short, client-safe description of an error result. */
const char *sb_http_strerror(int err);

/* Chunked request-body decoder (RFC 9112 §7.1). Chunk sizes are 1*HEXDIG (no sign, no
 * leading/trailing whitespace; at most 16 hex digits and the value must not overflow), chunk
 * extensions are accepted and ignored (bounded, like every line, at 4 KiB; no whitespace
 * before the ';', no control bytes), each chunk's data must be followed by CRLF, trailer
 * fields are parsed for syntax and discarded (at most 4 KiB a line and 8 KiB in total; past
 * either, SB_HTTP_E_TOO_LARGE, since trailers are header fields). */
struct sb_http_chunked {
    int state;
    uint64_t remaining; /* bytes left in the current chunk */
    size_t line_len;    /* bytes seen of the current size/trailer line */
    size_t trailer_len; /* total trailer bytes */
    uint32_t digits;
    bool saw_ext;
    bool done; /* the last chunk and the trailers have been consumed */
};

void sb_http_chunked_init(struct sb_http_chunked *c);

/* Decodes from in[0..len), appending chunk data to `out` (whose `max` bounds the body).
 * Returns the number of input bytes consumed (it stops right after the message ends, so
 * pipelined bytes that follow are left for the next request; once done it consumes 0), or
 * SB_HTTP_E_BAD for bad framing (including a size/extension line over 4 KiB), or
 * SB_HTTP_E_TOO_LARGE for oversized trailers, or SB_HTTP_E_BODY_TOO_LARGE when the body
 * would pass out->max (refused as soon as a chunk's size says so, before its data; also when
 * `out` cannot grow). Input may be split anywhere, down to one byte per call. After an error
 * the decoder must not be fed again (it keeps returning an error). */
ssize_t sb_http_chunked_feed(struct sb_http_chunked *c, const char *in, size_t len,
                             struct sb_buf *out);

#endif

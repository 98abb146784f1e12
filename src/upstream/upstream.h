/* Upstream HTTP client: libcurl's multi interface driven by a worker's libuv loop (the
 * integration curl documents in docs/examples/multi-uv.c): one CURLM per worker, a uv_timer
 * for curl's timeouts and one uv_poll_t per socket curl asks to watch. Connections are
 * pooled by the multi handle and reused across transfers; HTTP/2 is negotiated over TLS when
 * the provider offers it.
 *
 * Threading: everything here belongs to the worker thread that created it.
 *
 * Callbacks: the transfer's callbacks run from inside libcurl (never synchronously from
 * sb_transfer_start). From inside a callback, the owner may call sb_transfer_pause, but must
 * not cancel that transfer: cancellation happens from the owner's own loop callbacks. After
 * on_done returns, the transfer is gone. sb_transfer_cancel never calls back. */
#ifndef SB_UPSTREAM_UPSTREAM_H
#define SB_UPSTREAM_UPSTREAM_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

/* Result codes for on_done. */
#define SB_UP_OK 0
#define SB_UP_E_CONNECT                                                                            \
    (-1) /* DNS, connect, TLS handshake, or connection reset before a response */
#define SB_UP_E_TIMEOUT  (-2) /* connect, total, or stream-silence timeout */
#define SB_UP_E_PROTOCOL (-3) /* malformed HTTP from the upstream, or body cut short */
#define SB_UP_E_ABORTED  (-4) /* the owner's on_body refused the data (e.g. a size cap) */
#define SB_UP_E_INTERNAL (-5)

/* on_body may return this to pause the transfer (curl redelivers the same bytes later). */
#define SB_UP_PAUSE ((size_t)-2)

struct sb_transfer_cbs {
    /* The final response status (interim 1xx responses are skipped). */
    void (*on_status)(void *ud, int status);
    /* Each response header of the final response, name and value trimmed. */
    void (*on_header)(void *ud, const char *name, size_t name_len, const char *value,
                      size_t value_len);
    /* Body bytes. Return len to accept them, SB_UP_PAUSE to pause, anything else to abort
     * the transfer with SB_UP_E_ABORTED. */
    size_t (*on_body)(void *ud, const char *data, size_t len);
    /* Called exactly once unless cancelled. detail is a short, secret-free text. */
    void (*on_done)(void *ud, int result, const char *detail);
};

struct sb_transfer_opts {
    const char *url;
    /* Borrowed; must live until on_done or cancel. */
    const struct curl_slist *headers;
    const char *body; /* borrowed likewise */
    size_t body_len;
    const char *proxy;   /* "" or NULL: none (libcurl then skips its environment lookup) */
    const char *noproxy; /* hosts that bypass the proxy; NULL: none */
    long connect_timeout_ms;
    long timeout_ms; /* total; 0: none */
    /* Longest silence from the provider (before the response and between body bytes),
     * enforced to 100 ms; 0: none. */
    uint64_t idle_timeout_ms;
    /* Longest wait for the response's status line (time to first token, for streams); a
     * timeout before any byte is a failure the router may retry. 0: none. */
    uint64_t first_byte_timeout_ms;
};

struct sb_upstream;
struct sb_transfer;

/* native_h1: plain-http upstreams with a numeric host (or localhost) use the gateway's own
 * HTTP/1.1 client (h1.c) instead of libcurl; everything else always goes through libcurl. */
struct sb_upstream *sb_upstream_new(uv_loop_t *loop, long max_connections, bool native_h1);
/* Cancels every transfer still running (without callbacks) and closes the uv handles; the
 * object is freed from their close callbacks, so the loop must run once more afterwards. */
void sb_upstream_close(struct sb_upstream *u);

/* Starts a POST (body given) or GET (body NULL). Returns NULL on failure to start (out of
 * memory or a libcurl setup error); then no callback will be made. */
struct sb_transfer *sb_transfer_start(struct sb_upstream *u, const struct sb_transfer_opts *o,
                                      const struct sb_transfer_cbs *cbs, void *ud);
void sb_transfer_pause(struct sb_transfer *t);
void sb_transfer_resume(struct sb_transfer *t);
/* Stops the transfer; no callback is made after this returns. */
void sb_transfer_cancel(struct sb_transfer *t);

/* Seconds from the start of the transfer until the first response byte, or -1. */
double sb_transfer_ttfb(const struct sb_transfer *t);

#endif

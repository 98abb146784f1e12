/* The HTTP/1.1 server: worker threads, each with its own libuv loop and SO_REUSEPORT listener,
 * connections, and exchanges (one request and its response).
 *
 * Writes only append to the connection's output; a prepare hook (run once per loop
 * iteration, just before the loop sleeps) flushes every connection with pending output, so
 * many SSE events that become ready together cost one write. The same hook is the only place
 * that closes connections and ends exchanges, so nothing is freed while a caller up the
 * stack (a libcurl callback, say) still holds it.
 *
 * An exchange ends exactly once, through its handler's on_end: after the handler finished
 * the response (aborted = false), or when the client went away or the server gave up on it
 * first (aborted = true; the handler must then stop all its work synchronously). */
#ifndef SB_HTTP_SERVER_H
#define SB_HTTP_SERVER_H

#include "core/buf.h"
#include "core/spares.h"
#include "core/error.h"
#include "http/parser.h"

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

struct sb_worker;
struct sb_conn;
struct sb_exchange;

typedef void (*sb_exchange_cb)(struct sb_exchange *x);
typedef void (*sb_exchange_end_cb)(struct sb_exchange *x, bool aborted);

struct sb_exchange {
    struct sb_conn *conn;
    struct sb_worker *worker;
    struct sb_http_request req; /* points into `head` */
    char *head;
    struct sb_buf body;
    uint64_t t_start_ns;      /* head complete (uv_hrtime) */
    uint64_t t_first_byte_ns; /* first response byte queued; 0 until then */
    int status;               /* sent to the client; 0 until a response began */
    uint64_t bytes_in;        /* request head and body */
    uint64_t bytes_out;
    bool finished; /* the handler completed the response */
    bool streaming;
    bool ended;
    /* Set by the handler. */
    void *hdata;
    sb_exchange_end_cb on_end;
    sb_exchange_cb on_drain; /* output fell below the low-water mark after being above it */
    bool want_drain;
    /* The server's own. */
    size_t head_cap;       /* bytes allocated at `head` */
    struct sb_spare spare; /* while kept for reuse */
};

struct sb_server_opts {
    const char *host;
    int port;
    int workers;
    size_t max_header_bytes;
    size_t max_body_bytes;
    uint64_t header_timeout_ms;
    uint64_t body_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t drain_timeout_ms;
    size_t max_connections; /* per worker */
    /* Called on the worker thread for each complete request. */
    sb_exchange_cb on_request;
    /* Called once on each worker thread after its loop is set up, and once before the
     * loop is torn down. */
    void (*on_worker_start)(struct sb_worker *w);
    void (*on_worker_stop)(struct sb_worker *w);
    void *ud;
};

struct sb_server;

/* Binds every worker's listener (so bind errors are reported here, before any thread runs).
 * Returns NULL and logs on failure. */
struct sb_server *sb_server_new(const struct sb_server_opts *o);
/* Starts the worker threads. */
int sb_server_start(struct sb_server *s);
/* Any thread, async-signal-unsafe: begin draining (stop accepting; finish in-flight
 * exchanges; close idle connections; stop after drain_timeout_ms). */
void sb_server_drain(struct sb_server *s);
bool sb_server_draining(const struct sb_server *s);
/* Joins the workers. */
void sb_server_wait(struct sb_server *s);
void sb_server_free(struct sb_server *s);

/* Worker accessors. */
int sb_worker_index(const struct sb_worker *w);
uv_loop_t *sb_worker_loop(struct sb_worker *w);
void *sb_worker_ud(const struct sb_worker *w);   /* sb_server_opts.ud */
void *sb_worker_data(const struct sb_worker *w); /* per-worker slot for the handler */
void sb_worker_set_data(struct sb_worker *w, void *data);
bool sb_worker_draining(const struct sb_worker *w);
/* Called by the flush hook at the end of each loop iteration; for batching (access log). */
void sb_worker_set_flush_hook(struct sb_worker *w, void (*hook)(struct sb_worker *w));
/* Called before each pass that writes responses (at least once per loop iteration), so what
 * must be durable before a client sees its response (the spend journal) is written first. */
void sb_worker_set_before_flush_hook(struct sb_worker *w, void (*hook)(struct sb_worker *w));

/* Responding. `headers` are extra header lines, each ending in "\r\n" (may be NULL). The
 * server adds Date, Content-Length or Transfer-Encoding, and Connection: close when the
 * connection will close. */
void sb_http_respond(struct sb_exchange *x, int status, const char *content_type,
                     const char *headers, size_t headers_len, const char *body, size_t body_len);
/* The OpenAI error envelope for e. */
void sb_http_respond_error(struct sb_exchange *x, const struct sb_error *e, const char *headers,
                           size_t headers_len);
/* Chunked streaming response. */
void sb_http_stream_start(struct sb_exchange *x, int status, const char *content_type,
                          const char *headers, size_t headers_len);
/* One chunk; an empty write is ignored. Returns -1 if the connection is gone or the output
 * passed its hard cap (the exchange is then aborted from the flush hook). */
int sb_http_stream_write(struct sb_exchange *x, const char *data, size_t len);
void sb_http_stream_end(struct sb_exchange *x);
/* Bytes queued for the client and not yet written. */
size_t sb_http_pending(const struct sb_exchange *x);
/* Forces the connection to close after this response. */
void sb_http_close_after(struct sb_exchange *x);

#define SB_HTTP_HIGH_WATER (1u << 20)
#define SB_HTTP_LOW_WATER  (256u << 10)

#endif

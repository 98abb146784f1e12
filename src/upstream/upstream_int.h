/* Internals shared by the two upstream clients: libcurl (upstream.c) and the native
 * HTTP/1.1 client for plain-http upstreams (h1.c). Not for use outside src/upstream/. */
#ifndef SB_UPSTREAM_UPSTREAM_INT_H
#define SB_UPSTREAM_UPSTREAM_INT_H

#include "core/buf.h"
#include "http/parser.h"
#include "upstream/upstream.h"

#include <stdbool.h>
#include <stdint.h>

struct poll_ctx;
struct h1_state;
struct h1_xfer;

struct sb_upstream {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    CURL **idle; /* reusable easy handles: creating one costs more than resetting one */
    size_t n_idle;
    size_t cap_idle;
    struct sb_transfer *active; /* doubly linked, for timeouts and cancellation at close */
    struct poll_ctx *polls;     /* doubly linked, for closing at shutdown */
    uv_timer_t sweep;           /* enforces idle (silence) timeouts and native deadlines */
    int pending_closes;
    bool closing;
    bool native_h1;
    size_t max_idle;     /* idle connections kept per upstream address (native client) */
    struct h1_state *h1; /* the native client's pools and connections */
};

struct sb_transfer {
    struct sb_upstream *u;
    CURL *easy;         /* libcurl transfers */
    struct h1_xfer *h1; /* native transfers */
    struct sb_transfer_cbs cbs;
    void *ud;
    struct sb_transfer *prev, *next;
    int status;
    bool in_headers_of_final; /* true once the final (non-1xx) status line was seen */
    bool paused;
    bool got_body;
    bool retried;                 /* sent once more after a reused connection died */
    uint64_t idle_ms;             /* 0: no silence limit */
    uint64_t last_activity;       /* uv_now of the last byte received (or of the start) */
    uint64_t deadline;            /* uv_now after which a native transfer times out; 0: none */
    uint64_t first_byte_deadline; /* uv_now by which a status line must arrive; 0: none */
    char errbuf[CURL_ERROR_SIZE];
};

void sb_upstream_link(struct sb_upstream *u, struct sb_transfer *t);
void sb_upstream_unlink(struct sb_upstream *u, struct sb_transfer *t);
/* Drops one pending close while closing; frees the upstream after the last. */
void sb_upstream_maybe_free(struct sb_upstream *u);

/* The native client (h1.c). */
void sb_h1_init(struct sb_upstream *u);
/* Whether a URL is served natively: http://, a numeric IPv4/IPv6 host or localhost. */
bool sb_h1_eligible(const char *url);
struct sb_transfer *sb_h1_start(struct sb_upstream *u, const struct sb_transfer_opts *o,
                                const struct sb_transfer_cbs *cbs, void *ud);
void sb_h1_pause(struct sb_transfer *t);
void sb_h1_resume(struct sb_transfer *t);
void sb_h1_cancel(struct sb_transfer *t);
/* Ends a transfer with an error: its connection is closed, on_done is called. */
void sb_h1_fail(struct sb_transfer *t, int result, const char *detail);
/* At shutdown, after every transfer was cancelled: closes idle connections. */
void sb_h1_close(struct sb_upstream *u);
void sb_h1_free(struct sb_upstream *u);

#endif

/* The fake LLM provider: contracts shared by the files of tests/fakes/.
 *
 * fake_http.c     HTTP/1.1 request reader (stateless: re-run on the whole input each time)
 * fake_server.c   workers, connections, the response pump (delays, drips, splits, cuts)
 * fake_openai.c   the OpenAI dialect, directives and fault injection
 * fake_store.c    fixture cache and the request recorder (both shared by all workers)
 * fake_provider.c command line, signals, start and stop
 *
 * The server only links the `sb` library for core/buf.h. See docs/internals/fake-provider.md. */
#ifndef SB_FAKE_H
#define SB_FAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define SB_FAKE_MAX_HEADERS 100
#define SB_FAKE_MAX_HEAD    (64 * 1024)
#define SB_FAKE_MAX_BODY    (64 * 1024 * 1024)
/* Input buffered per connection: one head, one body and its chunk framing. */
#define SB_FAKE_MAX_INPUT (2 * SB_FAKE_MAX_BODY)
/* A generated response (body_bytes, embeddings, fixture replay) never grows past this. */
#define SB_FAKE_MAX_OUTPUT      (256 * 1024 * 1024)
#define SB_FAKE_MAX_EVENTS      (1024 * 1024)
#define SB_FAKE_RECORD_MAX      64
#define SB_FAKE_RECORD_BODY_MAX (1024 * 1024)

struct sb_fake_str {
    const char *p;
    size_t n;
};

struct sb_fake_header {
    struct sb_fake_str name;
    struct sb_fake_str value;
};

/* A parsed request. Every pointer borrows the connection's input buffer (or `body` for a
 * chunked body) and is valid only until the handler returns. */
struct sb_fake_req {
    struct sb_fake_str method;
    struct sb_fake_str target; /* path and query as sent */
    int minor_version;         /* HTTP/1.<minor> */
    struct sb_fake_header headers[SB_FAKE_MAX_HEADERS];
    size_t nheaders;
    const char *body;
    size_t body_len;
    bool keep_alive;
    bool expect_continue;
    bool head_complete; /* set even when the body is still missing */
};

/* Parses one request from the start of `data`. Returns 1 with `*consumed` set when the whole
 * request (head and body) is there, 0 when more bytes are needed, or a negative HTTP status
 * (-400, -413, -431, -501, -505) for input that can never become a valid request. A chunked
 * body is decoded into `chunk_body` (reset first; its max bounds the body). */
int sb_fake_http_parse(const char *data, size_t len, struct sb_fake_req *req,
                       struct sb_buf *chunk_body, size_t *consumed);
/* Case-insensitive header lookup; the first match or NULL. */
const struct sb_fake_str *sb_fake_http_header(const struct sb_fake_req *req, const char *name);

/* What a handler asks the server to send. The server frames it: Content-Length for a plain
 * body, chunked transfer encoding when `chunked`. A body is a list of events (`ends` holds
 * the end offset of each); a plain body is one event. The fault knobs act on events:
 * `cut_after` closes the connection after that many events, `drip_ms` waits between
 * events, `split` writes the body one byte per write. */
struct sb_fake_resp {
    int status;
    const char *content_type; /* static or owned by the fixture cache */
    struct sb_buf headers;    /* extra header lines, each ending in CRLF */
    struct sb_buf body;
    size_t *ends;
    size_t nends;
    size_t ends_cap;
    bool chunked;
    bool close; /* send `connection: close` and close after the response */
    bool drop;  /* close after the response without saying so (keep-alive race tests) */
    bool hang;  /* never answer */
    int64_t delay_ms;
    int64_t drip_ms;
    int64_t cut_after; /* -1: never */
    bool split;
};

void sb_fake_resp_init(struct sb_fake_resp *r);
/* Empties the response for the next request but keeps its allocations. */
void sb_fake_resp_reset(struct sb_fake_resp *r);
void sb_fake_resp_free(struct sb_fake_resp *r);
/* Ends the current event at the body's current length. -E2BIG past SB_FAKE_MAX_EVENTS. */
int sb_fake_resp_end_event(struct sb_fake_resp *r);

struct sb_fake_config {
    const char *host;
    int port;
    int threads;
    const char *fixtures; /* root folder holding openai/, anthropic/, ... */
    bool quiet;
};

/* Answers one request. Called on a worker thread; fills `resp` (already reset). Never fails:
 * every problem becomes an error response. */
void sb_fake_openai_handle(const struct sb_fake_config *cfg, const struct sb_fake_req *req,
                           struct sb_fake_resp *resp);

/* A fixture file, read once and kept until sb_fake_store_free(). */
struct sb_fake_fixture {
    char *name;
    char *data;
    size_t len;
    size_t *ends; /* SSE: end offset of each event (split at "\n\n"); NULL for JSON */
    size_t nends;
    int status;
    char *content_type;
    struct sb_fake_fixture *next;
};

/* Thread-safe. `name` is relative to <fixtures>/openai/ unless it holds a '/', then it is
 * relative to <fixtures>/. Names with "..", a leading '/' or bytes other than [A-Za-z0-9._/-]
 * are refused. Returns NULL (and errno-style `*err`: -EINVAL, -ENOENT, -E2BIG, -ENOMEM). */
const struct sb_fake_fixture *sb_fake_fixture_get(const char *fixtures_dir, const char *name,
                                                  int *err);

/* Keeps a bounded copy (body up to SB_FAKE_RECORD_BODY_MAX) of the request in a ring of the
 * last SB_FAKE_RECORD_MAX requests. Thread-safe. */
void sb_fake_record_add(const struct sb_fake_req *req);
/* Appends the ring as a JSON array, oldest first. */
int sb_fake_record_dump(struct sb_buf *out);
void sb_fake_record_clear(void);

/* Frees the fixture cache and the recorder. Call once, after every worker has stopped. */
void sb_fake_store_free(void);

/* Starts the workers (listening sockets are bound before this returns), prints the
 * "listening" line, runs until SIGTERM or SIGINT, stops and frees everything. Returns the
 * process exit code. */
int sb_fake_server_run(const struct sb_fake_config *cfg);

/* The value of a hex digit, or -1. */
int sb_fake_hex_val(char c);

#endif

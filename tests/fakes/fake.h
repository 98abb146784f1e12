/* The fake LLM provider: contracts shared by the files of tests/fakes/.
 *
 * fake_http.c     HTTP/1.1 request reader (stateless: re-run on the whole input each time)
 * fake_server.c   workers, connections, the response pump (delays, drips, splits, cuts)
 * fake_openai.c   entry point, directives, fault injection and the OpenAI dialect
 * fake_dialect.c  what every dialect shares: the generation plan, usage, stream helpers
 * fake_anthropic.c, fake_gemini.c, fake_bedrock.c, fake_cohere.c   the other dialects
 * fake_store.c    fixture cache and the request recorder (both shared by all workers)
 * fake_provider.c command line, signals, start and stop
 *
 * The server links the `sb` library for core/buf.h (and jansson, OpenSSL's SHA-256 and zlib's
 * crc32 through it); it never uses the gateway's translation code. See
 * docs/internals/fake-provider.md. */
#ifndef SB_FAKE_H
#define SB_FAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#include <jansson.h>

#define SB_FAKE_MAX_KEY    512
#define SB_FAKE_ECHO_LIMIT 200

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

/* Directives of one request (see docs/internals/fake-provider.md). */
struct sb_fake_directives {
    int status;
    int64_t retry_after;
    int64_t retry_after_ms;
    char fixture[256];
    int64_t delay_ms;
    int64_t drip_ms;
    int64_t cut_after;
    int64_t body_bytes;
    int64_t cached; /* cached=N: N cache-read input tokens */
    bool split;
    bool hang;
    char code[64];   /* code=<s>: the error code of a status= answer */
    bool close_conn; /* close=1: "connection: close", then close */
    bool drop;       /* drop=1: close after the response without a header saying so */
    bool malformed;
    int stream_error; /* 1, or 2 for Bedrock's throttlingException */
    bool echo_key;
    bool thinking; /* thinking=1: a thinking block first (Anthropic, Gemini, Bedrock) */
    bool gemini3;  /* gemini3=1: Gemini function calls carry an id and a thoughtSignature */
    bool has_key;
    char key[SB_FAKE_MAX_KEY + 1];
};

/* One request being answered. */
struct sb_fake_call {
    const struct sb_fake_config *cfg;
    const struct sb_fake_req *req;
    struct sb_fake_resp *resp;
    struct sb_fake_directives d;
    struct sb_fake_str path;       /* without directives and query */
    struct sb_fake_str query;      /* after '?', empty when none */
    struct sb_fake_str got_key;    /* the key the client sent, if any */
    struct sb_fake_str deployment; /* Azure: /openai/deployments/<name>/... */
    uint64_t id;
    int64_t created;
};

/* ---- fake_openai.c, shared with the other dialects ---- */

/* Replays the fixture named by the `fixture` directive. */
void sb_fake_fixture_reply(struct sb_fake_call *x);
/* The OpenAI error envelope (pretty-printed as the real API prints it). */
void sb_fake_openai_error(struct sb_fake_call *x, int status, const char *type, const char *message,
                          const char *param, const char *code);
/* A unit vector of `dims` floats (<= SB_FAKE_MAX_DIMENSIONS) seeded by `seed`, as a JSON array
 * or (base64) a JSON string of little-endian float32 values. */
int sb_fake_embedding_append(struct sb_buf *b, uint64_t seed, int dims, bool base64);
uint64_t sb_fake_hash(uint64_t h, const void *p, size_t n);
#define SB_FAKE_HASH_SEED      0xcbf29ce484222325ULL
#define SB_FAKE_MAX_DIMENSIONS 4096

/* ---- fake_dialect.c ---- */

enum sb_fake_dialect {
    SB_FAKE_OPENAI,
    SB_FAKE_ANTHROPIC,
    SB_FAKE_GEMINI,
    SB_FAKE_BEDROCK,
    SB_FAKE_COHERE,
};

/* The dialect a request belongs to, from its method and (directive-free) path. */
enum sb_fake_dialect sb_fake_dialect_of(struct sb_fake_str method, struct sb_fake_str path);
/* Answers a request of a dialect other than OpenAI: its auth check, status=, fixture=, then
 * the endpoint. */
void sb_fake_dialect_handle(struct sb_fake_call *x, enum sb_fake_dialect dialect);

/* What a chat request asks for, extracted by each dialect from its own request shape. */
struct sb_fake_input {
    uint64_t prompt_words;
    struct sb_buf user_text;   /* the last user turn's text (first bytes only) */
    struct sb_buf result_text; /* the last turn's tool result, as text or compact JSON */
    bool last_is_result;       /* the last turn holds a tool result */
    bool last_is_user_text;    /* the last turn is a user turn with text */
    bool tools_on;             /* tools declared and tool choice is not "none" */
    char tool_name[256];       /* the tool to call: the named choice, else the first tool */
    char tool_arg[256];        /* its first parameter name, else "input" */
    bool stream;
    char model[256];
};

/* What every dialect answers, so a tool loop runs the same against each of them. */
struct sb_fake_plan {
    bool tool_call;
    struct sb_buf text; /* the text reply (empty for a tool call) */
    struct sb_buf args; /* the tool call's arguments, compact JSON */
    char tool_name[256];
    bool thinking;
    uint64_t prompt_tokens;   /* uncached input words (at least 1) */
    uint64_t cached_tokens;   /* cached=N */
    uint64_t output_tokens;   /* words of the reply or of the arguments (at least 1) */
    uint64_t thinking_tokens; /* words of the thinking text when thinking=1 */
};

#define SB_FAKE_THINKING_TEXT "Let me think about that."

void sb_fake_input_init(struct sb_fake_input *in);
void sb_fake_input_free(struct sb_fake_input *in);
/* Copies at most SB_FAKE_ECHO_LIMIT bytes (UTF-8 safe) of `s` into `b`, replacing it. */
void sb_fake_keep_text(struct sb_buf *b, const char *s, size_t n);
/* Words of every "text" / "content" string under `v` (recursively). */
uint64_t sb_fake_json_words(const json_t *v);
/* Sets tool_name / tool_arg from a tool's name and its parameter schema (may be NULL). */
void sb_fake_input_tool(struct sb_fake_input *in, const char *name, const json_t *schema);
/* A tool result's text: a string as it is, text parts joined, anything else compact JSON. */
void sb_fake_result_text(struct sb_fake_input *in, const json_t *content);

int sb_fake_plan_make(const struct sb_fake_call *x, const struct sb_fake_input *in,
                      struct sb_fake_plan *p);
void sb_fake_plan_free(struct sb_fake_plan *p);
/* Pieces of the arguments for streams: at least two, cut on UTF-8 boundaries. Returns the
 * end of the piece starting at `pos`. */
size_t sb_fake_args_piece(const struct sb_fake_plan *p, size_t pos);
/* The word deltas of a text: returns the end of the delta starting at `pos`. */
size_t sb_fake_next_delta(const char *s, size_t n, size_t pos);
uint64_t sb_fake_count_words(const char *s, size_t n);

/* Appends `v` as compact JSON and drops the reference. -ENOMEM / -E2BIG. */
int sb_fake_put_json(struct sb_buf *b, json_t *v);
/* One SSE event: "event: <name>\n" (when name) then "data: <json>" and `sep`; ends the event. */
int sb_fake_sse(struct sb_fake_call *x, const char *name, json_t *data, const char *sep);
/* Sets the response to `status`, `content_type` and `body` (a plain, unchunked body). */
void sb_fake_plain(struct sb_fake_call *x, int status, const char *content_type, json_t *body,
                   bool pretty);
/* The value of query parameter `name`, or false. */
bool sb_fake_query(const struct sb_fake_call *x, const char *name, struct sb_fake_str *out);
/* Whether the message of an error gets " (api key: <key>)" appended: echo_key and a key. */
void sb_fake_error_message(const struct sb_fake_call *x, const char *msg, struct sb_buf *out);

/* ---- one handler per endpoint of each dialect ---- */

/* Answers the dialect's auth error and returns true when the credentials do not pass. */
bool sb_fake_anthropic_auth_failed(struct sb_fake_call *x);
void sb_fake_anthropic_status(struct sb_fake_call *x, int status);
void sb_fake_anthropic_route(struct sb_fake_call *x);

/* Answers the dialect's auth error and returns true when the credentials do not pass. */
bool sb_fake_gemini_auth_failed(struct sb_fake_call *x);
void sb_fake_gemini_status(struct sb_fake_call *x, int status);
void sb_fake_gemini_route(struct sb_fake_call *x);

/* Answers the dialect's auth error and returns true when the credentials do not pass. */
bool sb_fake_bedrock_auth_failed(struct sb_fake_call *x);
void sb_fake_bedrock_status(struct sb_fake_call *x, int status);
void sb_fake_bedrock_route(struct sb_fake_call *x);

/* Answers the dialect's auth error and returns true when the credentials do not pass. */
bool sb_fake_cohere_auth_failed(struct sb_fake_call *x);
void sb_fake_cohere_status(struct sb_fake_call *x, int status);
void sb_fake_cohere_route(struct sb_fake_call *x);

/* Bedrock's event-stream frame (binary, with both CRC-32s). -E2BIG at the body's cap. */
int sb_fake_eventstream_frame(struct sb_buf *b, const char *const *headers, size_t nheaders,
                              const char *payload, size_t payload_len);

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

#endif

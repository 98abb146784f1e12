/* The canonical form: one request shape and one event stream that every dialect translates
 * to and from (DESIGN.md, "Dialects and the canonical form").
 *
 * A dialect has up to seven codecs (one file per dialect):
 *
 *   client side (OpenAI, Anthropic):
 *     decode_request   client body              -> struct sb_canon_req
 *     render_response  struct sb_canon_resp     -> complete response body
 *     stream encoder   struct sb_canon_event... -> the dialect's SSE bytes
 *     render_error     struct sb_canon_error    -> error body (the dialect's envelope)
 *   provider side (OpenAI, Anthropic, Gemini, Bedrock, Cohere):
 *     encode_request   struct sb_canon_req      -> provider body
 *     decode_response  provider body            -> events (the same events a stream gives)
 *     stream decoder   provider stream bytes    -> events
 *     decode_error     status + provider body   -> struct sb_canon_error
 *
 * Same-dialect traffic does not come here (pass-through, DESIGN.md principle 2).
 *
 * The event stream is block-structured, as Anthropic's is, because that is the strictest of
 * the dialects: every content block is opened, receives deltas, and is closed, one block at a
 * time (no interleaving), numbered from 0 in order of opening. Decoders of looser dialects
 * (OpenAI, Gemini, Cohere) synthesize the block boundaries. A decoder emits, in order:
 *
 *   START  (once, first)
 *   { BLOCK_START, DELTA*, SIGNATURE?, BLOCK_STOP }*
 *   FINISH (once)  USAGE (at most once, the final cumulative counts)
 *
 * or ERROR at any point, after which nothing more is emitted. A stream that ends before
 * FINISH is a cut stream: the stream decoder's end function reports it (SB_CANON_E_CUT).
 *
 * Ownership: everything in a struct sb_canon_req / sb_canon_resp is owned by it (malloc'd
 * strings, jansson references) and freed by its _free function. Event fields are borrowed
 * and valid only during the emit callback. */
#ifndef SB_CANON_CANON_H
#define SB_CANON_CANON_H

#include "core/buf.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sb_dialect {
    SB_DIALECT_OPENAI,    /* OpenAI chat completions, Azure and OpenAI-compatible servers */
    SB_DIALECT_ANTHROPIC, /* Anthropic Messages */
    SB_DIALECT_GEMINI,    /* Gemini generateContent (AI Studio and Vertex AI) */
    SB_DIALECT_BEDROCK,   /* Bedrock Converse / ConverseStream */
    SB_DIALECT_COHERE,    /* Cohere v2 chat */
};

const char *sb_dialect_name(enum sb_dialect d);

/* Return codes of the codecs (negative errno values are also possible: -ENOMEM, -E2BIG). */
#define SB_CANON_E_INVALID (-1001) /* the input is not what the dialect allows */
#define SB_CANON_E_CUT     (-1002) /* a stream ended before its end (no FINISH) */
#define SB_CANON_E_STOP    (-1003) /* the emit callback asked to stop */

/* ------------------------------------------------------------------ request */

enum sb_role {
    SB_ROLE_SYSTEM, /* OpenAI system and developer messages; Anthropic `system`; Gemini
                       systemInstruction. Encoders hoist them where the dialect needs it. */
    SB_ROLE_USER,
    SB_ROLE_ASSISTANT,
    SB_ROLE_TOOL, /* an OpenAI tool message: exactly one TOOL_RESULT part */
};

enum sb_part_type {
    SB_PART_TEXT,
    SB_PART_IMAGE,             /* media_type + data (base64), or url */
    SB_PART_DOCUMENT,          /* a PDF or text file: media_type + data, or url */
    SB_PART_TOOL_CALL,         /* assistant: id, name, arguments (JSON text) */
    SB_PART_TOOL_RESULT,       /* user or tool: id (of the call), name if known, parts */
    SB_PART_THINKING,          /* assistant: text (the thinking), signature */
    SB_PART_REDACTED_THINKING, /* assistant: text holds the opaque `data` */
};

struct sb_part {
    enum sb_part_type type;
    char *text;            /* TEXT, THINKING; REDACTED_THINKING: the data */
    char *signature;       /* THINKING: its signature, or NULL. A Gemini thoughtSignature attached
                              to another part travels as an empty THINKING part holding only a
                              signature, right before that part. */
    char *media_type;      /* IMAGE, DOCUMENT: "image/png"...; NULL when not known */
    char *data;            /* IMAGE, DOCUMENT: base64 (no data: prefix), or NULL */
    char *url;             /* IMAGE, DOCUMENT: http(s):// or gs:// when not inline, else NULL */
    char *detail;          /* IMAGE: OpenAI `detail`, or NULL */
    char *id;              /* TOOL_CALL: the call id; TOOL_RESULT: the id of the call it answers */
    char *name;            /* TOOL_CALL: function name; TOOL_RESULT: the function's name when the
                              dialect carried it (Gemini needs it; the encoder looks it up by id
                              in the earlier assistant turns otherwise) */
    char *arguments;       /* TOOL_CALL: JSON text exactly as received; may be invalid JSON, then
                              encoders that need an object send {} ... never crash */
    struct sb_part *parts; /* TOOL_RESULT: its content (TEXT and IMAGE parts) */
    size_t nparts;
    bool is_error;         /* TOOL_RESULT: Anthropic is_error, Bedrock status "error" */
    json_t *cache_control; /* Anthropic prompt caching on this block, passed on; or NULL */
};

struct sb_msg {
    enum sb_role role;
    struct sb_part *parts;
    size_t nparts;
    char *name; /* OpenAI message `name`, or NULL */
};

struct sb_tool {
    char *name;
    char *description;     /* or NULL */
    json_t *parameters;    /* JSON Schema object, or NULL (encoders default to an empty
                              object schema) */
    int strict;            /* -1 unset, 0, 1 */
    json_t *cache_control; /* or NULL */
};

enum sb_tool_choice {
    SB_TC_UNSET,
    SB_TC_AUTO,
    SB_TC_NONE,
    SB_TC_REQUIRED, /* OpenAI "required", Anthropic "any", Gemini ANY */
    SB_TC_NAMED,    /* tool_choice_name */
};

enum sb_response_format {
    SB_RF_UNSET,
    SB_RF_TEXT,
    SB_RF_JSON_OBJECT,
    SB_RF_JSON_SCHEMA, /* rf_name, rf_schema, rf_strict */
};

struct sb_canon_req {
    char *model; /* as the client sent it */
    struct sb_msg *msgs;
    size_t nmsgs;
    struct sb_tool *tools;
    size_t ntools;
    enum sb_tool_choice tool_choice;
    char *tool_choice_name;
    int parallel_tool_calls; /* -1 unset, 0, 1 */
    int64_t max_tokens;      /* max_completion_tokens, else max_tokens; -1 unset */
    bool has_temperature, has_top_p, has_presence_penalty, has_frequency_penalty;
    double temperature, top_p, presence_penalty, frequency_penalty;
    int64_t top_k; /* -1 unset */
    char **stop;   /* stop sequences */
    size_t nstop;
    bool stream;
    bool include_usage; /* OpenAI stream_options.include_usage */
    int64_t n;          /* -1 unset */
    bool has_seed;
    int64_t seed;
    bool logprobs;
    int64_t top_logprobs; /* -1 unset */
    enum sb_response_format response_format;
    char *rf_name;
    json_t *rf_schema;
    int rf_strict;           /* -1 unset */
    char *reasoning_effort;  /* "none" "minimal" "low" "medium" "high" "xhigh" "max", or NULL */
    int64_t thinking_budget; /* Anthropic thinking.budget_tokens / Gemini thinkingBudget; -1
                                unset, 0 thinking disabled */
    char *user;              /* OpenAI `user`, Anthropic metadata.user_id */
    json_t *metadata;        /* OpenAI metadata object, or NULL */
    json_t *cache_control;   /* request-level Anthropic cache_control, or NULL */
};

void sb_canon_req_free(struct sb_canon_req *r);

/* Default output limit for dialects that require one (Anthropic max_tokens) when the client
 * gave none. */
#define SB_CANON_DEFAULT_MAX_TOKENS 4096

/* Thinking budget for a reasoning_effort level, and the reverse (nearest level). */
int64_t sb_canon_effort_budget(const char *effort);
const char *sb_canon_budget_effort(int64_t budget);

/* ------------------------------------------------------------------ events */

enum sb_block_kind {
    SB_BLOCK_TEXT,
    SB_BLOCK_THINKING,
    SB_BLOCK_REDACTED_THINKING, /* one DELTA carries the whole opaque data */
    SB_BLOCK_TOOL_CALL,         /* DELTAs carry argument JSON fragments */
};

/* Why generation stopped, finer than any one dialect so both directions map well. */
enum sb_finish {
    SB_FINISH_NONE,           /* not known */
    SB_FINISH_STOP,           /* natural end: OpenAI stop, Anthropic end_turn, Gemini STOP */
    SB_FINISH_STOP_SEQUENCE,  /* a stop sequence matched (stop_sequence says which if known) */
    SB_FINISH_LENGTH,         /* output limit: length / max_tokens / MAX_TOKENS */
    SB_FINISH_TOOL_CALLS,     /* the model called tools */
    SB_FINISH_CONTENT_FILTER, /* blocked by a safety or content filter */
    SB_FINISH_REFUSAL,        /* Anthropic refusal */
    SB_FINISH_CONTEXT_WINDOW, /* Anthropic model_context_window_exceeded */
    SB_FINISH_PAUSE,          /* Anthropic pause_turn */
    SB_FINISH_ERROR,          /* Cohere ERROR / TIMEOUT, OpenRouter error */
};

const char *sb_finish_openai(enum sb_finish f);    /* "stop" "length" "tool_calls" ... */
const char *sb_finish_anthropic(enum sb_finish f); /* "end_turn" "max_tokens" "tool_use" ... */

/* Token counts. The input categories are disjoint: the whole prompt is
 * input + cache_read + cache_write. output includes reasoning. -1: not reported. */
struct sb_usage {
    int64_t input;       /* prompt tokens not read from or written to a cache */
    int64_t cache_read;  /* prompt tokens read from a cache */
    int64_t cache_write; /* prompt tokens written to a cache */
    int64_t output;      /* generated tokens, reasoning included */
    int64_t reasoning;   /* of which reasoning / thinking */
};

void sb_usage_init(struct sb_usage *u); /* all -1 */
/* Copies into dst the counts src knows (>= 0), keeping dst's others. */
void sb_usage_merge(struct sb_usage *dst, const struct sb_usage *src);
/* The whole prompt: input + cache_read + cache_write (unknown parts count as 0); -1 if
 * input is unknown. */
int64_t sb_usage_prompt(const struct sb_usage *u);

enum sb_err_kind {
    SB_ERRK_INVALID_REQUEST, /* 400 */
    SB_ERRK_AUTH,            /* 401, and Gemini's 400 API_KEY_INVALID */
    SB_ERRK_PERMISSION,      /* 403 */
    SB_ERRK_BILLING,         /* 402, credit balance, insufficient_quota: not retryable */
    SB_ERRK_NOT_FOUND,       /* 404 */
    SB_ERRK_TOO_LARGE,       /* 413 */
    SB_ERRK_CONTEXT_WINDOW,  /* the prompt does not fit the model */
    SB_ERRK_CONTENT_POLICY,  /* refused by a content filter */
    SB_ERRK_RATE_LIMIT,      /* 429, Gemini RESOURCE_EXHAUSTED, Bedrock Throttling: retryable */
    SB_ERRK_OVERLOADED,      /* Anthropic 529, 503: retryable */
    SB_ERRK_TIMEOUT,         /* 408, 504: retryable */
    SB_ERRK_SERVER,          /* other 5xx: retryable */
};

struct sb_canon_error {
    int status; /* the HTTP status the client should see (529 kept) */
    enum sb_err_kind kind;
    char type[64];          /* the provider's own error type/status/name, or "" */
    char message[512];      /* the provider's message (keys redacted by the caller) */
    int64_t retry_after_ms; /* a retry hint found in the body (Gemini RetryInfo), or -1 */
};

void sb_canon_error_set(struct sb_canon_error *e, int status, enum sb_err_kind kind,
                        const char *type, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The kind a bare HTTP status implies (used when a body says nothing better). */
enum sb_err_kind sb_err_kind_of_status(int status);

enum sb_ev_type {
    SB_EV_START,       /* id, model (either may be NULL); usage: what is known at start
                          (Anthropic message_start input counts), else all -1 */
    SB_EV_BLOCK_START, /* index, block; TOOL_CALL: id, name */
    SB_EV_DELTA,       /* index, text/len: text, thinking, redacted data or argument JSON */
    SB_EV_SIGNATURE,   /* index, text/len: a THINKING block's signature (a Gemini
                          thoughtSignature arrives as an empty THINKING block holding one,
                          right before the block of the part it was attached to) */
    SB_EV_BLOCK_STOP,  /* index */
    SB_EV_FINISH,      /* finish; stop_sequence (or NULL) */
    SB_EV_USAGE,       /* usage: the final counts */
    SB_EV_ERROR,       /* error: an error inside a 200 stream (or a body with an error) */
};

struct sb_canon_event {
    enum sb_ev_type type;
    int index;
    enum sb_block_kind block;
    const char *id;
    const char *name;
    const char *model;
    const char *text;
    size_t len;
    enum sb_finish finish;
    const char *stop_sequence;
    struct sb_usage usage;
    const struct sb_canon_error *error;
};

/* Returns 0 to go on; non-zero stops the decoder, which returns SB_CANON_E_STOP. */
typedef int (*sb_canon_emit_cb)(void *ud, const struct sb_canon_event *ev);

/* ------------------------------------------------------------------ response */

/* A whole response, built from events (sb_canon_resp_event), rendered by each client
 * dialect's render_response. */
struct sb_canon_block {
    enum sb_block_kind kind;
    struct sb_buf text; /* text / thinking / redacted data / argument JSON */
    char *signature;    /* or NULL */
    char *id;           /* TOOL_CALL */
    char *name;         /* TOOL_CALL */
};

struct sb_canon_resp {
    char *id;    /* or NULL: the renderer makes one */
    char *model; /* or NULL: the renderer uses the requested model */
    struct sb_canon_block *blocks;
    size_t nblocks;
    enum sb_finish finish;
    char *stop_sequence;
    struct sb_usage usage;
    bool started, finished;
    bool has_error;
    struct sb_canon_error error;
    /* internal */
    bool open;        /* a block is open */
    size_t total;     /* bytes of all blocks */
    size_t max_bytes; /* bound on total */
};

/* max_bytes bounds the text of all blocks together (past it: -E2BIG, never truncation). */
void sb_canon_resp_init(struct sb_canon_resp *r, size_t max_bytes);
void sb_canon_resp_free(struct sb_canon_resp *r);
/* Folds one event into the response; usable directly as an sb_canon_emit_cb (ud = resp).
 * Returns non-zero on an event out of order or past the size bound. */
int sb_canon_resp_event(void *resp, const struct sb_canon_event *ev);

/* Replays a whole response as the event sequence a stream of it would give (START, the
 * blocks each with one DELTA, FINISH, USAGE). */
int sb_canon_resp_replay(const struct sb_canon_resp *r, sb_canon_emit_cb emit, void *ud);

/* ------------------------------------------------------------------ block synthesis */

/* For decoders of dialects without explicit blocks (OpenAI, Cohere): opens, numbers and
 * closes the blocks, and emits START, FINISH and USAGE once each. Every function returns 0,
 * SB_CANON_E_STOP when the callback asked to stop, or SB_CANON_E_INVALID. */
struct sb_canon_synth {
    sb_canon_emit_cb emit;
    void *ud;
    int nblocks;
    bool open;               /* a block is open ... */
    enum sb_block_kind kind; /* ... of this kind */
    bool started, finished, usage_sent, failed;
};

int sb_canon_synth_start(struct sb_canon_synth *s, const char *id, const char *model);
/* Closes the open block, if any, and opens a new one. */
int sb_canon_synth_open(struct sb_canon_synth *s, enum sb_block_kind kind, const char *id,
                        const char *name);
int sb_canon_synth_close(struct sb_canon_synth *s);
/* A delta of the open block. */
int sb_canon_synth_delta(struct sb_canon_synth *s, const char *text, size_t len);
/* Text of a kind without identity (text, thinking): appended to the open block of that kind,
 * else to a new one. Empty text opens nothing. */
int sb_canon_synth_text(struct sb_canon_synth *s, enum sb_block_kind kind, const char *text,
                        size_t len);
/* Closes the open block, then FINISH. */
int sb_canon_synth_finish(struct sb_canon_synth *s, enum sb_finish f);
int sb_canon_synth_usage(struct sb_canon_synth *s, const struct sb_usage *u);
int sb_canon_synth_error(struct sb_canon_synth *s, const struct sb_canon_error *e);

/* ------------------------------------------------------------------ embeddings */

struct sb_embed_req {
    char *model;
    char **inputs; /* strings only (token arrays are refused for non-OpenAI providers) */
    size_t ninputs;
    int64_t dimensions; /* -1 unset */
    bool base64;        /* encoding_format "base64" */
    char *input_type;   /* Cohere input_type / Gemini taskType hint, or NULL */
    char *user;
};

struct sb_embed_resp {
    double **vectors; /* ninputs vectors of dims[i] values */
    size_t *dims;
    size_t n;
    int64_t input_tokens; /* -1 unknown */
    char *model;          /* or NULL */
};

void sb_embed_req_free(struct sb_embed_req *r);
void sb_embed_resp_free(struct sb_embed_resp *r);

/* ------------------------------------------------------------------ small helpers */

/* Appends `root` as compact JSON to `out`. 0; -E2BIG at out's cap or -ENOMEM, then `out` is
 * left as it was. */
int sb_canon_dump_json(const json_t *root, struct sb_buf *out);

/* Appends `n` bytes of `s` as a new malloc'd NUL-terminated string; NULL on ENOMEM. */
char *sb_canon_strndup(const char *s, size_t n);

/* Parses a `data:` URI ("data:image/png;base64,AAAA"): media type and base64 payload
 * (both malloc'd). Returns 0, or -1 if it is not a base64 data URI. */
int sb_canon_data_uri(const char *uri, char **media_type, char **data);

/* A random id with a prefix ("chatcmpl-", "msg_", "call_", "toolu_"): prefix + 24
 * alphanumerics, NUL-terminated in out (cap >= strlen(prefix) + 25). */
void sb_canon_random_id(const char *prefix, char *out, size_t cap);

#endif

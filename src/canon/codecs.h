/* The codecs of each dialect, behind two tables the proxy uses (see canon.h for the model).
 *
 * One file per dialect implements its table:
 *   src/canon/openai_client.c     sb_client_openai, OpenAI embeddings requests and responses
 *   src/canon/openai.c            sb_codec_openai
 *   src/canon/anthropic_client.c  sb_client_anthropic (and count_tokens)
 *   src/canon/anthropic.c         sb_codec_anthropic
 *   src/canon/gemini.c            sb_codec_gemini, sb_embed_gemini; sb_embed_vertex and
 *                                 countTokens in gemini.h
 *   src/canon/bedrock.c           sb_codec_bedrock, sb_embed_bedrock (eventstream.h, sigv4.h)
 *   src/canon/cohere.c            sb_codec_cohere, sb_embed_cohere
 *
 * Rules every codec keeps:
 * - Never crash, leak or loop on any input; bounded output (struct sb_buf caps); invalid input
 *   gives SB_CANON_E_INVALID (or an sb_error for request decoding), never a silent guess.
 * - Unknown fields and event types of a provider are ignored, not errors.
 * - Numbers are copied exactly (integers as integers); JSON text the client sent inside a
 *   field (tool arguments, schemas) is carried as JSON, not re-typed. */
#ifndef SB_CANON_CODECS_H
#define SB_CANON_CODECS_H

#include "canon/canon.h"
#include "core/buf.h"
#include "core/error.h"

#include <stdbool.h>
#include <stddef.h>

/* The provider side of a dialect. */
struct sb_provider_codec {
    enum sb_dialect dialect;
    /* The body for the provider. `model` is the upstream model id (placed in the body by
     * dialects that carry it there; Gemini and Bedrock put it in the URL and ignore it).
     * req->stream says whether to ask for a stream (OpenAI: stream_options.include_usage is
     * always asked for, the gateway bills from it). A request the dialect cannot express
     * (n > 1 where it has no choices, logprobs where it has none, an image kind it refuses)
     * fails with a 400 sb_error naming the parameter, rather than being silently changed.
     * Returns 0, or -1 with err set. */
    int (*encode_request)(const struct sb_canon_req *req, const char *model, struct sb_buf *out,
                          struct sb_error *err);
    /* A complete 2xx body -> the events a stream of it would give (START ... FINISH USAGE).
     * An error object inside a 2xx body becomes one ERROR event. Returns 0, SB_CANON_E_INVALID,
     * SB_CANON_E_STOP, or a negative errno. */
    int (*decode_response)(const char *body, size_t len, sb_canon_emit_cb emit, void *ud);
    /* A non-2xx response (any body, possibly empty or not JSON) -> error. Always fills `out`;
     * returns 0. */
    int (*decode_error)(int status, const char *body, size_t len, struct sb_canon_error *out);
    /* Streams: raw bytes of a 2xx streaming body, split anywhere, in order. max_event_bytes
     * bounds one event/frame (past it: -E2BIG). stream_feed returns 0, SB_CANON_E_INVALID,
     * SB_CANON_E_STOP or a negative errno; after a non-zero return only stream_free may be
     * called. stream_end is called at the end of the body: it emits what the dialect leaves
     * implicit (Gemini has no terminal event: FINISH and USAGE come out here) and returns
     * SB_CANON_E_CUT when the stream stopped before its end. */
    void *(*stream_new)(size_t max_event_bytes);
    int (*stream_feed)(void *st, const char *data, size_t len, sb_canon_emit_cb emit, void *ud);
    int (*stream_end)(void *st, sb_canon_emit_cb emit, void *ud);
    void (*stream_free)(void *st);
};

/* The client side of a dialect (OpenAI and Anthropic). */
struct sb_client_codec {
    enum sb_dialect dialect;
    /* The client's body -> request. Returns 0, or -1 with a 400 err (param named). */
    int (*decode_request)(const char *body, size_t len, struct sb_canon_req *out,
                          struct sb_error *err);
    /* A complete response. `model` is used when r->model is NULL. */
    int (*render_response)(const struct sb_canon_resp *r, const char *model, struct sb_buf *out);
    /* A provider error in this dialect's envelope; *status is the HTTP status to send (an
     * OpenAI client gets 503 for Anthropic's 529, an Anthropic client gets 529). */
    int (*render_error)(const struct sb_canon_error *e, struct sb_buf *out, int *status);
    /* Stream encoder: events in, the dialect's SSE bytes appended to out. `model` is the
     * model name to report when the provider gives none; include_usage: OpenAI's
     * stream_options.include_usage (Anthropic always reports usage). enc_end writes what
     * closes a stream ([DONE]; Anthropic's held message_delta and message_stop) after
     * FINISH/USAGE were seen; enc_error writes an in-stream error event (after which the
     * stream is over). */
    void *(*enc_new)(const char *model, bool include_usage);
    int (*enc_event)(void *enc, const struct sb_canon_event *ev, struct sb_buf *out);
    int (*enc_end)(void *enc, struct sb_buf *out);
    int (*enc_error)(void *enc, const struct sb_canon_error *e, struct sb_buf *out);
    void (*enc_free)(void *enc);
};

/* Embeddings of a provider dialect. */
struct sb_embed_codec {
    enum sb_dialect dialect;
    size_t batch_max; /* inputs per upstream call (Bedrock Titan: 1, so a batch fans out) */
    /* The body for inputs [from, to). */
    int (*encode)(const struct sb_embed_req *req, size_t from, size_t to, const char *model,
                  struct sb_buf *out, struct sb_error *err);
    /* Appends the vectors of one response to out (and adds its token count). Returns 0 or
     * SB_CANON_E_INVALID / negative errno. */
    int (*decode)(const char *body, size_t len, struct sb_embed_resp *out);
};

extern const struct sb_client_codec sb_client_openai;
extern const struct sb_client_codec sb_client_anthropic;

extern const struct sb_provider_codec sb_codec_openai;
extern const struct sb_provider_codec sb_codec_anthropic;
extern const struct sb_provider_codec sb_codec_gemini;
extern const struct sb_provider_codec sb_codec_bedrock;
extern const struct sb_provider_codec sb_codec_cohere;

extern const struct sb_embed_codec sb_embed_gemini;
extern const struct sb_embed_codec sb_embed_bedrock;
extern const struct sb_embed_codec sb_embed_cohere;

/* Bedrock names its errors in the x-amzn-ErrorType header, which decode_error does not see:
 * this refines an error decoded from the body with it (src/canon/bedrock.c). */
void sb_bedrock_error_type(struct sb_canon_error *e, const char *amzn_error_type);

/* OpenAI embeddings requests and responses, for every provider's embeddings. */
int sb_openai_decode_embed_request(const char *body, size_t len, struct sb_embed_req *out,
                                   struct sb_error *err);
int sb_openai_render_embeddings(const struct sb_embed_resp *r, const char *model, bool base64,
                                struct sb_buf *out);

#endif

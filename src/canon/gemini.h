/* Gemini and Vertex AI specifics beside the codec tables of codecs.h (sb_codec_gemini,
 * sb_embed_gemini): Vertex AI text embeddings, and token counting for the Anthropic
 * POST /v1/messages/count_tokens route. All of it lives in src/canon/gemini.c; the mapping
 * decisions are listed in docs/translation/gemini.md. Every function is pure (no I/O, no
 * callbacks) and may be called from any thread. */
#ifndef SB_CANON_GEMINI_H
#define SB_CANON_GEMINI_H

#include "canon/canon.h"
#include "canon/codecs.h"
#include "core/buf.h"
#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

/* Vertex AI text embeddings (text-embedding-005, text-multilingual-embedding-002,
 * gemini-embedding-001): POST .../publishers/google/models/<model>:predict. The model is in
 * the URL; encode ignores its `model` argument.
 *
 * encode: {"instances":[{"content":"<input>","task_type"?:T}...],
 *          "parameters":{"outputDimensionality"?:dims,"autoTruncate":false}}
 *   T is the task type of req->input_type (the same names sb_embed_gemini takes:
 *   search_document -> RETRIEVAL_DOCUMENT, search_query -> RETRIEVAL_QUERY, classification,
 *   clustering, semantic_similarity, question_answering, fact_verification,
 *   code_retrieval_query...); an unknown input_type is a 400 naming "input_type".
 *   autoTruncate is always false: an input too long fails upstream (400) instead of being
 *   embedded silently cut, as OpenAI does. An empty range [from, to) is a 400 naming "input";
 *   the body past out's cap is a 413, out of memory a 500 (out is left as it was).
 * decode: {"predictions":[{"embeddings":{"values":[...],"statistics":{"token_count":N,
 *   ...}}}...]} appends one vector per prediction, in order. The token counts of the
 *   predictions that report one are added to out->input_tokens: -1 (unknown) is replaced by
 *   the first known count, later ones add (saturating). A body without predictions, a
 *   prediction without a values array, a non-number value, more than 4096 vectors in one answer or
 *   more than 65536 values in one: SB_CANON_E_INVALID, out unchanged.
 * batch_max is 1: gemini-embedding-001 takes one instance per call, and a batch of the
 * others is bounded by 20,000 input tokens as well as 250 instances, which no count of
 * inputs keeps under; so every input is its own call (the proxy fans the batch out). */
extern const struct sb_embed_codec sb_embed_vertex;

/* The body for POST .../models/<model>:countTokens on Gemini's AI Studio API:
 *   {"generateContentRequest":{"model":"models/<model>","contents":[...],
 *    "systemInstruction"?:{...},"tools"?:[{"functionDeclarations":[...]}]}}
 * contents, systemInstruction and tools are exactly what sb_codec_gemini.encode_request
 * builds for `req` (same refusals: a tool result whose call cannot be found, media without a
 * type, a schema that cannot be cleaned: 400 with err->param set). Generation settings and
 * toolConfig are not sent: they do not change the count, and refusals of sampling
 * parameters (n > 1...) must not fail a count. `model` is the upstream model id ("models/"
 * prefix optional); NULL or "" falls back to req->model; neither: 400 naming "model".
 * Appends to `out`; past its cap 413, out of memory 500, and out is left as it was.
 * Returns 0, or -1 with err set. */
int sb_gemini_encode_count_tokens(const struct sb_canon_req *req, const char *model,
                                  struct sb_buf *out, struct sb_error *err);

/* The same for Vertex AI, whose CountTokensRequest has no generateContentRequest: the body
 * for POST .../publishers/google/models/<model>:countTokens is
 *   {"contents":[...],"systemInstruction"?:{...},"tools"?:[...]}
 * (the model is in the URL; `model` is ignored). Same errors as above, but no 400 for a
 * missing model. */
int sb_vertex_encode_count_tokens(const struct sb_canon_req *req, const char *model,
                                  struct sb_buf *out, struct sb_error *err);

/* A 2xx countTokens answer of either API: {"totalTokens":N,"totalBillableCharacters"?:..,
 * "promptTokensDetails"?:[...]}. *tokens = N (capped at 2^48). totalTokens absent from an
 * object that is empty or holds only the other fields of that answer means 0 (proto3 JSON
 * leaves zero out). Anything else (not an object, an "error" object, totalTokens not a
 * non-negative integer, an object with none of those fields): SB_CANON_E_INVALID and
 * *tokens untouched. Returns 0 or SB_CANON_E_INVALID. */
int sb_gemini_decode_count_tokens(const char *body, size_t len, int64_t *tokens);

#endif

/* The Anthropic Messages client dialect beyond its codec table (sb_client_anthropic in
 * codecs.h): what POST /v1/messages/count_tokens needs.
 *
 * Request decoding (sb_client_anthropic.decode_request and the function below) reports a 400
 * whose `param` names the field in Anthropic's dotted form ("messages.1.content.0"). That name
 * is built per request and lives in thread-local storage: it stays valid until the next
 * decode on the same thread, which is long enough to render the error. */
#ifndef SB_CANON_ANTHROPIC_CLIENT_H
#define SB_CANON_ANTHROPIC_CLIENT_H

#include "canon/canon.h"
#include "core/error.h"

#include <stddef.h>
#include <stdint.h>

/* Same as sb_client_anthropic.decode_request, but `max_tokens` is optional (the
 * count_tokens body has none). Returns 0, or -1 with a 400 err; `out` is always left safe to
 * pass to sb_canon_req_free. */
int sb_anthropic_decode_count_tokens(const char *body, size_t len, struct sb_canon_req *out,
                                     struct sb_error *err);

/* An estimate of the prompt tokens of `r`, for count_tokens when the provider has no
 * counting endpoint. About 4 bytes per token over every text, thinking text, tool name,
 * description, schema (compact JSON) and call arguments, plus 4 tokens per message, 1600
 * per image or document (Anthropic's cap for one image), 8 per tool and 300 once when tools
 * are present (the tool-use preamble models add). Deliberately simple and stable: the same
 * request always gives the same number; it is not any model's tokenizer. Never negative;
 * saturates at INT64_MAX. */
int64_t sb_canon_estimate_tokens(const struct sb_canon_req *r);

#endif

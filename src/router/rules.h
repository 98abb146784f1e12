/* Conditional routing: queries over a request, in Portkey's operator language.
 *
 * The context a query reads is a JSON object built from the request:
 *   {"metadata": {...},   the body's metadata, merged with the x-switchboard-metadata header
 *    "params": {...},     the request body
 *    "request": {"prompt_bytes": N, "last_user_message": "..."}}
 * A query is an object whose keys are dotted paths into the context ("metadata.plan",
 * "params.temperature", "request.prompt_bytes") or "$and" / "$or" (lists of queries). A
 * path's value is a literal (equality) or an object of operators: $eq, $ne, $gt, $gte, $lt,
 * $lte (numbers), $in, $nin (lists), $regex (a PCRE2 pattern, matched against strings, with
 * match and depth limits), $exists (true/false). Every key of a query must hold.
 * Thread-safe; regular expressions are compiled for each evaluation (routing rules are the
 * slow path, taken only by requests they apply to). */
#ifndef SB_ROUTER_RULES_H
#define SB_ROUTER_RULES_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* 0 if the query is well formed (known operators, operands of the right type, patterns that
 * compile); -1 with a message in err. */
int sb_rules_validate(const json_t *query, char *err, size_t errlen);

/* Whether the (validated) query holds for ctx. */
bool sb_rules_match(const json_t *query, const json_t *ctx);

/* Builds the context for a request body (a JSON object) and an optional metadata header
 * value (a JSON object, may be NULL). Returns a new reference, or NULL if the body is not an
 * object. */
json_t *sb_rules_context(const char *body, size_t body_len, const char *meta_hdr, size_t meta_len);

#endif

/* Prices and cost: a table shipped with the project (the main models of every supported
 * provider) and per-deployment overrides (litellm_params / model_info input_cost_per_token,
 * output_cost_per_token).
 *
 * Prices are nano-dollars (1e-9 USD) per token as doubles (2.5 USD per million tokens is
 * 2500 nano-dollars per token); costs are integer nano-dollars, rounded to nearest. */
#ifndef SB_POLICY_PRICES_H
#define SB_POLICY_PRICES_H

#include "canon/canon.h"

#include <stdbool.h>
#include <stdint.h>

struct sb_price {
    double input;       /* per uncached input token */
    double output;      /* per output token (reasoning included unless `reasoning` >= 0) */
    double cache_read;  /* per cache-read input token; < 0: billed as input */
    double cache_write; /* per cache-write input token; < 0: billed as input */
    double reasoning;   /* per reasoning token; < 0: billed as output */
};

/* The built-in price of an upstream model of a provider ("openai", "azure", "anthropic",
 * "gemini", "vertex_ai", "bedrock", "cohere", "groq", "mistral", "deepseek", "xai", ...;
 * OpenAI-compatible prefixes fall back to OpenAI's names). Matches the exact id first, then
 * the id without a date or version suffix ("claude-sonnet-4-5-20250929" ->
 * "claude-sonnet-4-5", "gpt-4o-2024-08-06" -> "gpt-4o"), then Bedrock's regional and
 * versioned ids ("us.anthropic.claude-sonnet-4-5-20250929-v1:0"). Returns false when the
 * model has no price. */
bool sb_price_lookup(const char *provider, const char *model, struct sb_price *out);

/* The cost of a usage record (canon.h: disjoint input categories, output includes
 * reasoning). Unknown counts (-1) count as 0. Saturates instead of overflowing. */
int64_t sb_price_cost_nano(const struct sb_price *p, const struct sb_usage *u);

/* The table as JSON for /model/info and docs: [{"provider","model","input_cost_per_token",
 * "output_cost_per_token","cache_read_input_token_cost","cache_creation_input_token_cost"}]
 * (dollars per token, LiteLLM's names). New reference. */
json_t *sb_price_table_json(void);

#endif

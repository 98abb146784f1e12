/* The built-in price table and cost arithmetic (contract in prices.h; figures and lookup rules
 * in docs/prices.md). */
#include "policy/prices.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

/* Figures are USD per million tokens, as the providers publish them; a negative cache or
 * reasoning figure means "billed as input" (cache) or "billed as output" (reasoning). */
struct price_row {
    const char *provider;
    const char *model;
    double input;
    double output;
    double cache_read;
    double cache_write;
    double reasoning;
    unsigned flags;
};

/* An embedding model: no output tokens, so no output price. */
#define ROW_EMBEDDING 1u
/* Bedrock bills the geographic and in-country cross-region profiles ("us.", "eu.", "apac.",
 * "jp.", "au.", ...) of these models 10% above the global profile and the plain model id. */
#define ROW_GEO_PREMIUM 2u

#define GEO_PREMIUM 1.1

/* Anthropic's prompt caching: a 5-minute cache write costs 1.25x input, a read 0.1x. */
#define CLAUDE(prov, name, in, out)                                                                \
    {                                                                                              \
        prov, name, in, out, (in)*0.1, (in)*1.25, -1, 0                                            \
    }
#define CLAUDE_GEO(prov, name, in, out)                                                            \
    {                                                                                              \
        prov, name, in, out, (in)*0.1, (in)*1.25, -1, ROW_GEO_PREMIUM                              \
    }
/* Claude 3 Haiku predates the 1.25x / 0.1x rule: its cache prices are rounded figures. */
#define CLAUDE_3_HAIKU(prov, name)                                                                 \
    {                                                                                              \
        prov, name, 0.25, 1.25, 0.03, 0.30, -1, 0                                                  \
    }
#define CHAT(prov, name, in, out, cread)                                                           \
    {                                                                                              \
        prov, name, in, out, cread, -1, -1, 0                                                      \
    }
#define EMBED(prov, name, in)                                                                      \
    {                                                                                              \
        prov, name, in, 0, -1, -1, -1, ROW_EMBEDDING                                               \
    }

/* Sorted by (provider, model) in strcmp order for the binary search (a unit test checks it).
 * Models are stored without the date or version suffixes the lookup strips. */
static const struct price_row rows[] = {
    CLAUDE("anthropic", "claude-3-5-haiku", 0.80, 4.00),
    CLAUDE("anthropic", "claude-3-5-sonnet", 3.00, 15.00),
    CLAUDE("anthropic", "claude-3-7-sonnet", 3.00, 15.00),
    CLAUDE_3_HAIKU("anthropic", "claude-3-haiku"),
    CLAUDE("anthropic", "claude-3-opus", 15.00, 75.00),
    CLAUDE("anthropic", "claude-haiku-4-5", 1.00, 5.00),
    CLAUDE("anthropic", "claude-opus-4", 15.00, 75.00),
    CLAUDE("anthropic", "claude-opus-4-0", 15.00, 75.00),
    CLAUDE("anthropic", "claude-opus-4-1", 15.00, 75.00),
    CLAUDE("anthropic", "claude-sonnet-4", 3.00, 15.00),
    CLAUDE("anthropic", "claude-sonnet-4-0", 3.00, 15.00),
    CLAUDE("anthropic", "claude-sonnet-4-5", 3.00, 15.00),

    /* Nova: cache reads at a quarter of input, cache writes billed as input. */
    CHAT("bedrock", "amazon.nova-lite", 0.06, 0.24, 0.015),
    CHAT("bedrock", "amazon.nova-micro", 0.035, 0.14, 0.00875),
    CHAT("bedrock", "amazon.nova-pro", 0.80, 3.20, 0.20),
    EMBED("bedrock", "amazon.titan-embed-text-v1", 0.10),
    EMBED("bedrock", "amazon.titan-embed-text-v2", 0.02),
    CLAUDE("bedrock", "anthropic.claude-3-5-haiku", 0.80, 4.00),
    CLAUDE("bedrock", "anthropic.claude-3-5-sonnet", 3.00, 15.00),
    CLAUDE("bedrock", "anthropic.claude-3-7-sonnet", 3.00, 15.00),
    CLAUDE_3_HAIKU("bedrock", "anthropic.claude-3-haiku"),
    CLAUDE_GEO("bedrock", "anthropic.claude-haiku-4-5", 1.00, 5.00),
    CLAUDE("bedrock", "anthropic.claude-opus-4", 15.00, 75.00),
    CLAUDE("bedrock", "anthropic.claude-opus-4-1", 15.00, 75.00),
    CLAUDE("bedrock", "anthropic.claude-sonnet-4", 3.00, 15.00),
    CLAUDE_GEO("bedrock", "anthropic.claude-sonnet-4-5", 3.00, 15.00),
    CHAT("bedrock", "meta.llama3-1-70b-instruct", 0.72, 0.72, -1),
    CHAT("bedrock", "meta.llama3-1-8b-instruct", 0.22, 0.22, -1),
    CHAT("bedrock", "meta.llama3-3-70b-instruct", 0.72, 0.72, -1),
    CHAT("bedrock", "meta.llama3-70b-instruct", 2.65, 3.50, -1),
    CHAT("bedrock", "meta.llama3-8b-instruct", 0.30, 0.60, -1),

    CHAT("cohere", "command-a-03-2025", 2.50, 10.00, -1),
    CHAT("cohere", "command-r-08-2024", 0.15, 0.60, -1),
    CHAT("cohere", "command-r-plus-08-2024", 2.50, 10.00, -1),
    CHAT("cohere", "command-r7b-12-2024", 0.0375, 0.15, -1),
    EMBED("cohere", "embed-english-v3.0", 0.10),
    EMBED("cohere", "embed-multilingual-v3.0", 0.10),
    EMBED("cohere", "embed-v4.0", 0.12),

    /* Since V3.2-Exp (2025-09-29) both names run the same model at one price. */
    CHAT("deepseek", "deepseek-chat", 0.28, 0.42, 0.028),
    CHAT("deepseek", "deepseek-reasoner", 0.28, 0.42, 0.028),

    /* Gemini 2.5 Pro: the price of prompts up to 200k tokens (longer ones cost more). Cache
     * writes are billed as input (storage is billed per hour, outside any request). */
    CHAT("gemini", "gemini-2.0-flash", 0.10, 0.40, 0.025),
    CHAT("gemini", "gemini-2.0-flash-lite", 0.075, 0.30, -1),
    CHAT("gemini", "gemini-2.5-flash", 0.30, 2.50, 0.03),
    CHAT("gemini", "gemini-2.5-flash-lite", 0.10, 0.40, 0.01),
    CHAT("gemini", "gemini-2.5-pro", 1.25, 10.00, 0.125),
    EMBED("gemini", "gemini-embedding-001", 0.15),
    EMBED("gemini", "text-embedding-004", 0.10),

    CHAT("groq", "llama-3.1-8b-instant", 0.05, 0.08, -1),
    CHAT("groq", "llama-3.3-70b-versatile", 0.59, 0.79, -1),
    CHAT("groq", "meta-llama/llama-4-maverick-17b-128e-instruct", 0.20, 0.60, -1),
    CHAT("groq", "meta-llama/llama-4-scout-17b-16e-instruct", 0.11, 0.34, -1),
    CHAT("groq", "moonshotai/kimi-k2-instruct", 1.00, 3.00, -1),
    CHAT("groq", "openai/gpt-oss-120b", 0.15, 0.60, -1),
    CHAT("groq", "openai/gpt-oss-20b", 0.075, 0.30, -1),
    CHAT("groq", "qwen/qwen3-32b", 0.29, 0.59, -1),

    CHAT("mistral", "codestral", 0.30, 0.90, -1),
    EMBED("mistral", "mistral-embed", 0.10),
    CHAT("mistral", "mistral-large", 2.00, 6.00, -1),
    CHAT("mistral", "mistral-medium", 0.40, 2.00, -1),
    CHAT("mistral", "mistral-small", 0.10, 0.30, -1),

    /* OpenAI bills cache writes as ordinary input. */
    CHAT("openai", "chatgpt-4o", 5.00, 15.00, -1),
    CHAT("openai", "gpt-4.1", 2.00, 8.00, 0.50),
    CHAT("openai", "gpt-4.1-mini", 0.40, 1.60, 0.10),
    CHAT("openai", "gpt-4.1-nano", 0.10, 0.40, 0.025),
    CHAT("openai", "gpt-4o", 2.50, 10.00, 1.25),
    /* The first gpt-4o snapshot kept its launch price. */
    CHAT("openai", "gpt-4o-2024-05-13", 5.00, 15.00, -1),
    CHAT("openai", "gpt-4o-mini", 0.15, 0.60, 0.075),
    CHAT("openai", "gpt-5", 1.25, 10.00, 0.125),
    CHAT("openai", "gpt-5-chat", 1.25, 10.00, 0.125),
    CHAT("openai", "gpt-5-codex", 1.25, 10.00, 0.125),
    CHAT("openai", "gpt-5-mini", 0.25, 2.00, 0.025),
    CHAT("openai", "gpt-5-nano", 0.05, 0.40, 0.005),
    CHAT("openai", "o1", 15.00, 60.00, 7.50),
    CHAT("openai", "o1-mini", 1.10, 4.40, 0.55),
    CHAT("openai", "o3", 2.00, 8.00, 0.50),
    CHAT("openai", "o3-mini", 1.10, 4.40, 0.55),
    CHAT("openai", "o4-mini", 1.10, 4.40, 0.275),
    EMBED("openai", "text-embedding-3-large", 0.13),
    EMBED("openai", "text-embedding-3-small", 0.02),
    EMBED("openai", "text-embedding-ada-002", 0.10),

    /* Where Vertex AI's price differs from the Gemini API's; the rest falls back to gemini. */
    CHAT("vertex_ai", "gemini-2.0-flash", 0.15, 0.60, 0.0375),

    CHAT("xai", "grok-3", 3.00, 15.00, 0.75),
    CHAT("xai", "grok-3-mini", 0.30, 0.50, 0.075),
    CHAT("xai", "grok-4", 3.00, 15.00, 0.75),
    CHAT("xai", "grok-4-fast-non-reasoning", 0.20, 0.50, 0.05),
    CHAT("xai", "grok-4-fast-reasoning", 0.20, 0.50, 0.05),
    CHAT("xai", "grok-code-fast-1", 0.20, 1.50, 0.02),
};

#define N_ROWS (sizeof(rows) / sizeof(rows[0]))

/* Longer ids are not model names; refusing them keeps the work buffers fixed. */
#define MODEL_MAX 256
/* Provider fallbacks chain (vertex_ai -> gemini, "openai/..." -> openai); this bounds it. */
#define DEPTH_MAX 4

static int row_cmp(const char *provider, const char *model, size_t model_len,
                   const struct price_row *r)
{
    int c = strcmp(provider, r->provider);
    if (c != 0) {
        return c;
    }
    c = strncmp(model, r->model, model_len);
    if (c != 0) {
        return c;
    }
    return r->model[model_len] == '\0' ? 0 : -1;
}

static const struct price_row *find_row(const char *provider, const char *model, size_t len)
{
    size_t lo = 0, hi = N_ROWS;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = row_cmp(provider, model, len, &rows[mid]);
        if (c == 0) {
            return &rows[mid];
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return NULL;
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return false;
        }
    }
    return true;
}

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len > n && memcmp(s + len - n, suffix, n) == 0;
}

/* Shortens model[0..*len) by one date or version suffix; false when there is none. One at a
 * time, because the caller tries each shorter id: "amazon.titan-embed-text-v2:0" must stop at
 * "...-v2" and not lose the "-v2" that tells it from v1. */
static bool strip_suffix(const char *m, size_t *len)
{
    size_t n = *len;
    /* Vertex AI's "claude-sonnet-4-5@20250929". */
    const char *at = memchr(m, '@', n);
    if (at != NULL && at > m) {
        *len = (size_t)(at - m);
        return true;
    }
    /* Bedrock's ":0" version. */
    for (size_t i = n; i > 1; i--) {
        if (m[i - 1] == ':') {
            if (i < n && all_digits(m + i, n - i)) {
                *len = i - 1;
                return true;
            }
            break;
        }
        if (m[i - 1] < '0' || m[i - 1] > '9') {
            break;
        }
    }
    if (ends_with(m, n, "-latest")) {
        *len = n - 7;
        return true;
    }
    /* "-YYYY-MM-DD" (OpenAI, xAI). */
    if (n > 11 && m[n - 11] == '-' && all_digits(m + n - 10, 4) && m[n - 6] == '-' &&
        all_digits(m + n - 5, 2) && m[n - 3] == '-' && all_digits(m + n - 2, 2)) {
        *len = n - 11;
        return true;
    }
    /* "-v1" (Bedrock), "-YYYYMMDD" (Anthropic), "-MMDD" / "-YYMM" (OpenAI's older snapshots,
     * xAI, Mistral), "-001" (Gemini). */
    size_t d = 0;
    while (d < n && m[n - 1 - d] >= '0' && m[n - 1 - d] <= '9') {
        d++;
    }
    if (d > 0 && d < n) {
        char before = m[n - 1 - d];
        if (before == 'v' && n - d > 2 && m[n - d - 2] == '-') {
            *len = n - d - 2;
            return true;
        }
        if (before == '-' && (d == 3 || d == 4 || d == 8) && n - d - 1 > 0) {
            *len = n - d - 1;
            return true;
        }
    }
    return false;
}

/* The model as given, then shorter by one suffix at a time. */
static const struct price_row *find_stripped(const char *provider, const char *model, size_t len)
{
    for (;;) {
        const struct price_row *r = find_row(provider, model, len);
        if (r != NULL || !strip_suffix(model, &len)) {
            return r;
        }
    }
}

/* Bedrock's cross-region inference profiles. "global." is billed as the plain model id; the
 * others may carry a premium (ROW_GEO_PREMIUM). */
static const char *const geo_prefixes[] = {"us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov."};

static size_t region_prefix(const char *model, bool *geo)
{
    if (strncmp(model, "global.", 7) == 0) {
        *geo = false;
        return 7;
    }
    for (size_t i = 0; i < sizeof(geo_prefixes) / sizeof(geo_prefixes[0]); i++) {
        size_t n = strlen(geo_prefixes[i]);
        if (strncmp(model, geo_prefixes[i], n) == 0) {
            *geo = true;
            return n;
        }
    }
    return 0;
}

/* The providers a "vendor/model" id names (OpenRouter's and LiteLLM's spelling). */
static const struct {
    const char *vendor;
    const char *provider;
} vendors[] = {
    {"anthropic", "anthropic"},
    {"azure", "azure"},
    {"bedrock", "bedrock"},
    {"cohere", "cohere"},
    {"deepseek", "deepseek"},
    {"gemini", "gemini"},
    {"google", "gemini"},
    {"groq", "groq"},
    {"mistral", "mistral"},
    {"mistralai", "mistral"},
    {"openai", "openai"},
    {"vertex_ai", "vertex_ai"},
    {"x-ai", "xai"},
    {"xai", "xai"},
};

static const char *vendor_provider(const char *model, size_t *skip)
{
    const char *slash = strchr(model, '/');
    if (slash == NULL) {
        return NULL;
    }
    size_t n = (size_t)(slash - model);
    for (size_t i = 0; i < sizeof(vendors) / sizeof(vendors[0]); i++) {
        if (strlen(vendors[i].vendor) == n && memcmp(model, vendors[i].vendor, n) == 0) {
            *skip = n + 1;
            return vendors[i].provider;
        }
    }
    return NULL;
}

static void fill(const struct price_row *r, double factor, struct sb_price *out)
{
    /* USD per million tokens to nano-dollars per token. */
    const double k = 1e3 * factor;
    out->input = r->input * k;
    out->output = r->output * k;
    out->cache_read = r->cache_read >= 0 ? r->cache_read * k : -1;
    out->cache_write = r->cache_write >= 0 ? r->cache_write * k : -1;
    out->reasoning = r->reasoning >= 0 ? r->reasoning * k : -1;
}

static bool lookup(const char *provider, const char *model, int depth, struct sb_price *out)
{
    if (depth > DEPTH_MAX || *model == '\0') {
        return false;
    }
    size_t len = strlen(model);
    const struct price_row *r = find_stripped(provider, model, len);
    if (r != NULL) {
        fill(r, 1.0, out);
        return true;
    }
    bool geo = false;
    size_t skip = region_prefix(model, &geo);
    if (skip > 0 && model[skip] != '\0') {
        r = find_stripped(provider, model + skip, len - skip);
        if (r != NULL) {
            fill(r, geo && (r->flags & ROW_GEO_PREMIUM) ? GEO_PREMIUM : 1.0, out);
            return true;
        }
    }
    /* The Gemini API's "models/gemini-2.5-pro". */
    if (strncmp(model, "models/", 7) == 0) {
        return lookup(provider, model + 7, depth + 1, out);
    }
    const char *vp = vendor_provider(model, &skip);
    if (vp != NULL && model[skip] != '\0') {
        return lookup(vp, model + skip, depth + 1, out);
    }
    /* Azure OpenAI serves OpenAI's models at OpenAI's prices; Vertex AI serves Gemini at the
     * Gemini API's prices (except the rows it has) and Claude at Anthropic's. */
    if (strcmp(provider, "azure") == 0) {
        return lookup("openai", model, depth + 1, out);
    }
    if (strcmp(provider, "vertex_ai") == 0) {
        if (strncmp(model, "claude-", 7) == 0) {
            return lookup("anthropic", model, depth + 1, out);
        }
        return lookup("gemini", model, depth + 1, out);
    }
    if (strcmp(provider, "cohere_chat") == 0) {
        return lookup("cohere", model, depth + 1, out);
    }
    return false;
}

bool sb_price_lookup(const char *provider, const char *model, struct sb_price *out)
{
    if (provider == NULL || model == NULL || out == NULL ||
        strnlen(model, MODEL_MAX + 1) > MODEL_MAX) {
        return false;
    }
    return lookup(provider, model, 0, out);
}

/* Zero tokens cost nothing, whatever the price (0 * inf would be NaN); unknown counts (< 0)
 * are zero; a negative or NaN price bills nothing rather than a credit. */
static double term(int64_t n, double price)
{
    return n > 0 && price > 0 ? (double)n * price : 0.0;
}

int64_t sb_price_cost_nano(const struct sb_price *p, const struct sb_usage *u)
{
    if (p == NULL || u == NULL) {
        return 0;
    }
    int64_t out = u->output > 0 ? u->output : 0;
    int64_t reasoning = u->reasoning > 0 ? u->reasoning : 0;
    /* Output includes reasoning; a provider that reports more reasoning than output has its
     * reasoning billed in full and nothing else. */
    int64_t visible = out > reasoning ? out - reasoning : 0;
    double in = p->input;
    double total =
        term(u->input, in) + term(u->cache_read, p->cache_read >= 0 ? p->cache_read : in) +
        term(u->cache_write, p->cache_write >= 0 ? p->cache_write : in) + term(visible, p->output) +
        term(reasoning, p->reasoning >= 0 ? p->reasoning : p->output);
    if (isnan(total) || total <= 0) {
        return 0;
    }
    /* 2^63: every double below it converts without overflow. */
    if (total >= 9223372036854775808.0) {
        return INT64_MAX;
    }
    return (int64_t)llround(total);
}

static double dollars(double nano)
{
    return nano / 1e9;
}

json_t *sb_price_table_json(void)
{
    json_t *arr = json_array();
    if (arr == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < N_ROWS; i++) {
        struct sb_price p;
        fill(&rows[i], 1.0, &p);
        json_t *o = json_pack(
            "{s:s, s:s, s:s, s:f, s:f, s:f, s:f}", "provider", rows[i].provider, "model",
            rows[i].model, "mode", (rows[i].flags & ROW_EMBEDDING) ? "embedding" : "chat",
            "input_cost_per_token", dollars(p.input), "output_cost_per_token", dollars(p.output),
            "cache_read_input_token_cost", dollars(p.cache_read >= 0 ? p.cache_read : p.input),
            "cache_creation_input_token_cost",
            dollars(p.cache_write >= 0 ? p.cache_write : p.input));
        if (o == NULL) {
            json_decref(arr);
            return NULL;
        }
        if (p.reasoning >= 0 && json_object_set_new(o, "output_cost_per_reasoning_token",
                                                    json_real(dollars(p.reasoning))) != 0) {
            json_decref(o);
            json_decref(arr);
            return NULL;
        }
        if (json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

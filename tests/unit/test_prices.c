/* policy: the built-in price table, its lookup rules and the cost arithmetic. The .c is
 * included to check every row of the table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "policy/prices.c"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Nano-dollars per token from USD per million tokens. */
#define PM(x) ((x)*1e3)

static void assert_close(double got, double want)
{
    if (fabs(got - want) > 1e-9 * (fabs(want) + 1)) {
        fail_msg("got %.12g, want %.12g", got, want);
    }
}

static struct sb_price must_find(const char *provider, const char *model)
{
    struct sb_price p;
    memset(&p, 0x55, sizeof(p));
    if (!sb_price_lookup(provider, model, &p)) {
        fail_msg("no price for %s %s", provider, model);
    }
    return p;
}

static void assert_unknown(const char *provider, const char *model)
{
    struct sb_price p;
    if (sb_price_lookup(provider, model, &p)) {
        fail_msg("unexpected price for %s %s: %g", provider ? provider : "(null)",
                 model ? model : "(null)", p.input);
    }
}

static struct sb_usage usage(int64_t in, int64_t cr, int64_t cw, int64_t out, int64_t rs)
{
    struct sb_usage u = {
        .input = in, .cache_read = cr, .cache_write = cw, .output = out, .reasoning = rs};
    return u;
}

static void test_table_rows_valid(void **state)
{
    (void)state;
    assert_true(N_ROWS > 80);
    for (size_t i = 0; i < N_ROWS; i++) {
        const struct price_row *r = &rows[i];
        if (!(r->input > 0)) {
            fail_msg("%s %s: input price %g", r->provider, r->model, r->input);
        }
        /* Embeddings produce no output tokens; everything else has an output price. */
        if ((r->flags & ROW_EMBEDDING) ? r->output != 0 : !(r->output > 0)) {
            fail_msg("%s %s: output price %g", r->provider, r->model, r->output);
        }
        if (r->cache_read >= 0 && !(r->cache_read > 0 && r->cache_read <= r->input)) {
            fail_msg("%s %s: cache read %g", r->provider, r->model, r->cache_read);
        }
        assert_true(r->cache_write < 0 || r->cache_write > 0);
        /* Sorted strictly: the binary search needs it, and it rules out duplicates. */
        if (i > 0) {
            int c = strcmp(rows[i - 1].provider, r->provider);
            if (c == 0) {
                c = strcmp(rows[i - 1].model, r->model);
            }
            if (c >= 0) {
                fail_msg("rows out of order or duplicate at %s %s", r->provider, r->model);
            }
        }
        /* Every row is found by its own name. */
        struct sb_price p = must_find(r->provider, r->model);
        assert_close(p.input, PM(r->input));
        assert_close(p.output, PM(r->output));
    }
}

static void test_openai_and_azure(void **state)
{
    (void)state;
    struct sb_price p = must_find("openai", "gpt-4o");
    assert_close(p.input, 2500);
    assert_close(p.output, 10000);
    assert_close(p.cache_read, 1250);
    assert_true(p.cache_write < 0);
    assert_true(p.reasoning < 0);

    p = must_find("openai", "gpt-4o-2024-08-06");
    assert_close(p.input, PM(2.50));
    /* The exact snapshot wins over the stripped name. */
    p = must_find("openai", "gpt-4o-2024-05-13");
    assert_close(p.input, PM(5.00));
    p = must_find("openai", "gpt-5-2025-08-07");
    assert_close(p.input, PM(1.25));
    assert_close(p.cache_read, PM(0.125));
    p = must_find("openai", "gpt-5-chat-latest");
    assert_close(p.output, PM(10.00));
    p = must_find("openai", "gpt-4.1-mini-2025-04-14");
    assert_close(p.input, PM(0.40));
    p = must_find("openai", "o3-mini-2025-01-31");
    assert_close(p.output, PM(4.40));
    p = must_find("openai", "o4-mini");
    assert_close(p.cache_read, PM(0.275));
    p = must_find("openai", "text-embedding-3-small");
    assert_close(p.input, PM(0.02));
    assert_close(p.output, 0);
    p = must_find("openai", "text-embedding-ada-002");
    assert_close(p.input, PM(0.10));

    /* Azure uses OpenAI's names and prices. */
    p = must_find("azure", "gpt-4.1-nano");
    assert_close(p.input, PM(0.10));
    p = must_find("azure", "o1");
    assert_close(p.output, PM(60.00));
    p = must_find("azure", "text-embedding-3-large");
    assert_close(p.input, PM(0.13));

    assert_unknown("openai", "gpt-9");
    assert_unknown("openai", "gpt-4o-realtime-preview");
    assert_unknown("azure", "my-deployment");
    /* Strip suffixes only: no prefix matching. */
    assert_unknown("openai", "gpt-4");
    assert_unknown("openai", "gpt-5-mini-pro");
}

static void test_anthropic(void **state)
{
    (void)state;
    struct sb_price p = must_find("anthropic", "claude-sonnet-4-5-20250929");
    assert_close(p.input, PM(3.00));
    assert_close(p.output, PM(15.00));
    assert_close(p.cache_write, PM(3.75));
    assert_close(p.cache_read, PM(0.30));
    p = must_find("anthropic", "claude-opus-4-1-20250805");
    assert_close(p.cache_write, PM(18.75));
    assert_close(p.cache_read, PM(1.50));
    p = must_find("anthropic", "claude-haiku-4-5");
    assert_close(p.input, PM(1.00));
    p = must_find("anthropic", "claude-3-5-haiku-latest");
    assert_close(p.cache_read, PM(0.08));
    assert_close(p.cache_write, PM(1.00));
    p = must_find("anthropic", "claude-3-7-sonnet-20250219");
    assert_close(p.output, PM(15.00));
    p = must_find("anthropic", "claude-sonnet-4-0");
    assert_close(p.input, PM(3.00));
    p = must_find("anthropic", "claude-opus-4-20250514");
    assert_close(p.input, PM(15.00));

    assert_unknown("anthropic", "claude-2.1");
    assert_unknown("anthropic", "claude-sonnet-9");
    assert_unknown("anthropic", "gpt-4o");
}

static void test_gemini_and_vertex(void **state)
{
    (void)state;
    struct sb_price p = must_find("gemini", "gemini-2.5-pro");
    assert_close(p.input, PM(1.25));
    assert_close(p.output, PM(10.00));
    assert_close(p.cache_read, PM(0.125));
    assert_true(p.cache_write < 0);
    p = must_find("gemini", "models/gemini-2.5-flash");
    assert_close(p.input, PM(0.30));
    p = must_find("gemini", "gemini-2.0-flash-001");
    assert_close(p.input, PM(0.10));
    p = must_find("gemini", "gemini-2.0-flash-lite");
    assert_close(p.output, PM(0.30));
    p = must_find("gemini", "gemini-2.5-flash-lite");
    assert_close(p.cache_read, PM(0.01));
    p = must_find("gemini", "text-embedding-004");
    assert_close(p.output, 0);
    p = must_find("gemini", "gemini-embedding-001");
    assert_close(p.input, PM(0.15));

    /* Vertex AI: its own row where it differs, Gemini's otherwise, Anthropic's for Claude. */
    p = must_find("vertex_ai", "gemini-2.0-flash-001");
    assert_close(p.input, PM(0.15));
    p = must_find("vertex_ai", "gemini-2.5-pro");
    assert_close(p.input, PM(1.25));
    p = must_find("vertex_ai", "gemini-embedding-001");
    assert_close(p.input, PM(0.15));
    p = must_find("vertex_ai", "claude-sonnet-4-5@20250929");
    assert_close(p.cache_write, PM(3.75));

    assert_unknown("gemini", "gemini-1.0-ultra");
    assert_unknown("gemini", "gemini-2.5-pro-preview-tts");
    assert_unknown("vertex_ai", "claude-unknown@20250101");
    assert_unknown("vertex_ai", "text-bison");
}

static void test_bedrock(void **state)
{
    (void)state;
    struct sb_price p = must_find("bedrock", "anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_close(p.input, PM(3.00));
    assert_close(p.cache_write, PM(3.75));
    p = must_find("bedrock", "global.anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_close(p.input, PM(3.00));
    /* The geographic profiles of the newest Claude models cost 10% more. */
    p = must_find("bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_close(p.input, PM(3.30));
    assert_close(p.output, PM(16.50));
    assert_close(p.cache_read, PM(0.33));
    p = must_find("bedrock", "eu.anthropic.claude-haiku-4-5-20251001-v1:0");
    assert_close(p.input, PM(1.10));
    /* ... older models do not. */
    p = must_find("bedrock", "apac.anthropic.claude-sonnet-4-20250514-v1:0");
    assert_close(p.input, PM(3.00));
    p = must_find("bedrock", "us.anthropic.claude-opus-4-1-20250805-v1:0");
    assert_close(p.output, PM(75.00));
    p = must_find("bedrock", "anthropic.claude-3-5-sonnet-20241022-v2:0");
    assert_close(p.input, PM(3.00));
    p = must_find("bedrock", "us.anthropic.claude-3-7-sonnet-20250219-v1:0");
    assert_close(p.input, PM(3.00));

    p = must_find("bedrock", "amazon.titan-embed-text-v2:0");
    assert_close(p.input, PM(0.02));
    p = must_find("bedrock", "amazon.titan-embed-text-v1");
    assert_close(p.input, PM(0.10));
    p = must_find("bedrock", "amazon.nova-pro-v1:0");
    assert_close(p.output, PM(3.20));
    p = must_find("bedrock", "us.amazon.nova-lite-v1:0");
    assert_close(p.input, PM(0.06));
    p = must_find("bedrock", "amazon.nova-micro-v1:0");
    assert_close(p.output, PM(0.14));
    p = must_find("bedrock", "meta.llama3-70b-instruct-v1:0");
    assert_close(p.output, PM(3.50));
    p = must_find("bedrock", "us.meta.llama3-3-70b-instruct-v1:0");
    assert_close(p.input, PM(0.72));

    /* Version suffixes come off one at a time: v2 is never confused with v1. */
    assert_unknown("bedrock", "amazon.titan-embed-text-v3:0");
    assert_unknown("bedrock", "amazon.titan-embed-text");
    assert_unknown("bedrock", "anthropic.claude-v2:1");
    assert_unknown("bedrock", "us.");
    assert_unknown("bedrock", "xx.anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_unknown("bedrock", "claude-sonnet-4-5");
}

static void test_other_providers(void **state)
{
    (void)state;
    struct sb_price p = must_find("cohere", "command-a-03-2025");
    assert_close(p.output, PM(10.00));
    p = must_find("cohere_chat", "command-r-08-2024");
    assert_close(p.input, PM(0.15));
    p = must_find("cohere", "command-r7b-12-2024");
    assert_close(p.input, PM(0.0375));
    p = must_find("cohere", "embed-v4.0");
    assert_close(p.input, PM(0.12));
    p = must_find("cohere", "embed-english-v3.0");
    assert_close(p.input, PM(0.10));
    assert_unknown("cohere", "command-r-plus-04-2024");
    assert_unknown("cohere", "command-r-plus");

    p = must_find("mistral", "mistral-large-latest");
    assert_close(p.output, PM(6.00));
    p = must_find("mistral", "mistral-large-2411");
    assert_close(p.input, PM(2.00));
    p = must_find("mistral", "mistral-small-latest");
    assert_close(p.input, PM(0.10));

    p = must_find("deepseek", "deepseek-chat");
    assert_close(p.cache_read, PM(0.028));
    p = must_find("deepseek", "deepseek-reasoner");
    assert_close(p.output, PM(0.42));

    p = must_find("xai", "grok-4-0709");
    assert_close(p.input, PM(3.00));
    p = must_find("xai", "grok-4-latest");
    assert_close(p.cache_read, PM(0.75));
    p = must_find("xai", "grok-3-mini");
    assert_close(p.output, PM(0.50));
    p = must_find("xai", "grok-3");
    assert_close(p.output, PM(15.00));

    p = must_find("groq", "llama-3.3-70b-versatile");
    assert_close(p.output, PM(0.79));
    p = must_find("groq", "openai/gpt-oss-120b");
    assert_close(p.input, PM(0.15));
    p = must_find("groq", "moonshotai/kimi-k2-instruct-0905");
    assert_close(p.input, PM(1.00));
    assert_unknown("groq", "mixtral-8x7b-32768");

    assert_unknown("deepseek", "deepseek-coder");
    assert_unknown("xai", "grok-2-vision");
    assert_unknown("ollama", "llama3");
    assert_unknown("hosted_vllm", "gpt-4o");
    assert_unknown("", "gpt-4o");
}

static void test_vendor_prefixes(void **state)
{
    (void)state;
    struct sb_price p = must_find("openrouter", "openai/gpt-4o");
    assert_close(p.input, PM(2.50));
    p = must_find("openrouter", "anthropic/claude-sonnet-4");
    assert_close(p.cache_write, PM(3.75));
    p = must_find("openrouter", "google/gemini-2.5-flash");
    assert_close(p.output, PM(2.50));
    p = must_find("openrouter", "x-ai/grok-4");
    assert_close(p.input, PM(3.00));
    p = must_find("together_ai", "openai/gpt-4o-mini");
    assert_close(p.input, PM(0.15));
    p = must_find("fireworks_ai", "deepseek/deepseek-chat");
    assert_close(p.input, PM(0.28));
    p = must_find("openai", "openai/gpt-5-mini");
    assert_close(p.input, PM(0.25));
    p = must_find("groq", "mistralai/mistral-small-latest");
    assert_close(p.output, PM(0.30));

    /* A vendor prefix names where to look, not a guess: an unknown model stays unknown. */
    assert_unknown("openrouter", "openai/gpt-oss-120b");
    assert_unknown("together_ai", "meta-llama/Llama-3.3-70B-Instruct-Turbo");
    assert_unknown("openrouter", "openai/");
    assert_unknown("openrouter", "/gpt-4o");
    assert_unknown("openrouter", "gpt-4o");
    assert_unknown("openrouter", "openai/openai/openai/openai/openai/openai/gpt-4o");
}

static void test_lookup_bad_arguments(void **state)
{
    (void)state;
    struct sb_price p;
    assert_false(sb_price_lookup(NULL, "gpt-4o", &p));
    assert_false(sb_price_lookup("openai", NULL, &p));
    assert_false(sb_price_lookup("openai", "gpt-4o", NULL));
    assert_unknown("openai", "");
    assert_unknown("openai", "-latest");
    assert_unknown("openai", "@20250101");
    assert_unknown("openai", ":0");
    assert_unknown("openai", "-v1");
    assert_unknown("OpenAI", "gpt-4o");
    assert_unknown("openai", "GPT-4O");

    /* Over the length cap: refused, even when the start is a known model. */
    char big[MODEL_MAX + 16];
    memset(big, 'a', sizeof(big));
    memcpy(big, "gpt-4o", 6);
    big[sizeof(big) - 1] = '\0';
    assert_unknown("openai", big);

    /* Every suffix rule, one after another. */
    assert_true(sb_price_lookup("openai", "gpt-4o-latest", &p));
    assert_true(sb_price_lookup("openai", "gpt-4o-0806", &p));
    assert_true(sb_price_lookup("openai", "gpt-4o-20240806", &p));
    assert_true(sb_price_lookup("openai", "gpt-4o@2024", &p));
    assert_true(sb_price_lookup("openai", "gpt-4o-v2:3", &p));
    assert_true(sb_price_lookup("openai", "gpt-4o-2024-08-06-latest", &p));
    assert_false(sb_price_lookup("openai", "gpt-4o-12", &p));
    assert_false(sb_price_lookup("openai", "gpt-4o-123456", &p));
    assert_false(sb_price_lookup("openai", "gpt-4o-2024-8-06", &p));
    assert_false(sb_price_lookup("openai", "gpt-4o:", &p));
    assert_false(sb_price_lookup("openai", "gpt-4o:x", &p));
    assert_false(sb_price_lookup("openai", "gpt-4ov1", &p));
}

static void test_cost_basic(void **state)
{
    (void)state;
    struct sb_price p = must_find("openai", "gpt-4o");
    struct sb_usage u = usage(1000, 0, 0, 500, 0);
    /* 1000 * 2500 + 500 * 10000 nano-dollars. */
    assert_int_equal(sb_price_cost_nano(&p, &u), 7500000);

    u = usage(1000000, -1, -1, 1000000, -1);
    assert_int_equal(sb_price_cost_nano(&p, &u), 12500000000LL); /* $12.50 */

    /* Unknown counts are zero. */
    u = usage(-1, -1, -1, -1, -1);
    assert_int_equal(sb_price_cost_nano(&p, &u), 0);
    u = usage(-1, -1, -1, 10, -1);
    assert_int_equal(sb_price_cost_nano(&p, &u), 100000);
    u = usage(INT64_MIN, -5, -7, -9, -11);
    assert_int_equal(sb_price_cost_nano(&p, &u), 0);

    assert_int_equal(sb_price_cost_nano(NULL, &u), 0);
    assert_int_equal(sb_price_cost_nano(&p, NULL), 0);
}

static void test_cost_cache(void **state)
{
    (void)state;
    struct sb_price p = must_find("anthropic", "claude-sonnet-4-5");
    /* 100 input at 3000, 1000 cache reads at 300, 200 cache writes at 3750, 10 output at
     * 15000. */
    struct sb_usage u = usage(100, 1000, 200, 10, -1);
    assert_int_equal(sb_price_cost_nano(&p, &u), 300000 + 300000 + 750000 + 150000);

    /* OpenAI bills cache writes as input. */
    p = must_find("openai", "gpt-4.1");
    u = usage(0, 0, 100, 0, 0);
    assert_int_equal(sb_price_cost_nano(&p, &u), 200000);
    u = usage(0, 100, 0, 0, 0);
    assert_int_equal(sb_price_cost_nano(&p, &u), 50000);

    /* A price with no cache figures bills both as input. */
    struct sb_price flat = {
        .input = 10, .output = 20, .cache_read = -1, .cache_write = -1, .reasoning = -1};
    u = usage(1, 2, 3, 4, -1);
    assert_int_equal(sb_price_cost_nano(&flat, &u), 10 + 20 + 30 + 80);
}

static void test_cost_reasoning_and_rounding(void **state)
{
    (void)state;
    struct sb_price p = {
        .input = 1, .output = 10, .cache_read = -1, .cache_write = -1, .reasoning = 40};
    /* 100 output of which 30 reasoning: 70 at 10, 30 at 40. */
    struct sb_usage u = usage(0, 0, 0, 100, 30);
    assert_int_equal(sb_price_cost_nano(&p, &u), 700 + 1200);
    /* More reasoning than output: the reasoning is billed, nothing else. */
    u = usage(0, 0, 0, 10, 30);
    assert_int_equal(sb_price_cost_nano(&p, &u), 1200);
    u = usage(0, 0, 0, -1, 30);
    assert_int_equal(sb_price_cost_nano(&p, &u), 1200);
    /* Reasoning billed as output when it has no price of its own. */
    p.reasoning = -1;
    u = usage(0, 0, 0, 100, 30);
    assert_int_equal(sb_price_cost_nano(&p, &u), 1000);

    /* Rounded to nearest once, on the total. */
    struct sb_price tiny = {
        .input = 0.3, .output = 0.3, .cache_read = -1, .cache_write = -1, .reasoning = -1};
    u = usage(1, 0, 0, 0, 0);
    assert_int_equal(sb_price_cost_nano(&tiny, &u), 0);
    u = usage(1, 0, 0, 1, 0);
    assert_int_equal(sb_price_cost_nano(&tiny, &u), 1);
    u = usage(5, 0, 0, 0, 0);
    assert_int_equal(sb_price_cost_nano(&tiny, &u), 2);
    p = must_find("gemini", "gemini-2.0-flash-lite"); /* 75 nano-dollars per input token */
    u = usage(3, 0, 0, 0, 0);
    assert_int_equal(sb_price_cost_nano(&p, &u), 225);
    p = must_find("bedrock", "amazon.nova-micro-v1:0"); /* cache read 8.75 */
    u = usage(0, 4, 0, 0, 0);
    assert_int_equal(sb_price_cost_nano(&p, &u), 35);

    /* Negative or NaN prices bill nothing rather than credit. */
    struct sb_price bad = {
        .input = -5, .output = NAN, .cache_read = -1, .cache_write = -1, .reasoning = -1};
    u = usage(10, 10, 10, 10, 0);
    assert_int_equal(sb_price_cost_nano(&bad, &u), 0);
}

static void test_cost_saturates(void **state)
{
    (void)state;
    struct sb_price p = must_find("openai", "o1");
    struct sb_usage u = usage(INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX, INT64_MAX);
    assert_int_equal(sb_price_cost_nano(&p, &u), INT64_MAX);
    u = usage(0, 0, 0, INT64_MAX / 60000 + 1, 0);
    assert_int_equal(sb_price_cost_nano(&p, &u), INT64_MAX);
    /* Just under the limit is still exact enough to be below it. */
    struct sb_price one = {
        .input = 1, .output = 1, .cache_read = -1, .cache_write = -1, .reasoning = -1};
    u = usage(INT64_MAX / 4, 0, 0, 0, 0);
    int64_t c = sb_price_cost_nano(&one, &u);
    assert_true(c > 0 && c < INT64_MAX);
    struct sb_price inf = {
        .input = INFINITY, .output = 1, .cache_read = -1, .cache_write = -1, .reasoning = -1};
    u = usage(1, 0, 0, 0, 0);
    assert_int_equal(sb_price_cost_nano(&inf, &u), INT64_MAX);
}

static void test_table_json(void **state)
{
    (void)state;
    json_t *t = sb_price_table_json();
    assert_non_null(t);
    assert_true(json_is_array(t));
    assert_int_equal(json_array_size(t), N_ROWS);
    bool seen_sonnet = false, seen_embed = false;
    size_t i;
    json_t *o;
    json_array_foreach(t, i, o)
    {
        const char *prov = json_string_value(json_object_get(o, "provider"));
        const char *model = json_string_value(json_object_get(o, "model"));
        assert_non_null(prov);
        assert_non_null(model);
        assert_true(json_real_value(json_object_get(o, "input_cost_per_token")) > 0);
        assert_true(json_is_real(json_object_get(o, "output_cost_per_token")));
        assert_true(json_real_value(json_object_get(o, "cache_read_input_token_cost")) > 0);
        assert_true(json_real_value(json_object_get(o, "cache_creation_input_token_cost")) > 0);
        if (strcmp(prov, "anthropic") == 0 && strcmp(model, "claude-sonnet-4-5") == 0) {
            seen_sonnet = true;
            assert_close(json_real_value(json_object_get(o, "input_cost_per_token")), 3e-6);
            assert_close(json_real_value(json_object_get(o, "output_cost_per_token")), 15e-6);
            assert_close(json_real_value(json_object_get(o, "cache_read_input_token_cost")),
                         0.3e-6);
            assert_close(json_real_value(json_object_get(o, "cache_creation_input_token_cost")),
                         3.75e-6);
            assert_string_equal(json_string_value(json_object_get(o, "mode")), "chat");
        }
        if (strcmp(prov, "openai") == 0 && strcmp(model, "text-embedding-3-large") == 0) {
            seen_embed = true;
            assert_string_equal(json_string_value(json_object_get(o, "mode")), "embedding");
            assert_close(json_real_value(json_object_get(o, "output_cost_per_token")), 0);
            /* No cache figure: the effective price is the input's. */
            assert_close(json_real_value(json_object_get(o, "cache_read_input_token_cost")),
                         0.13e-6);
        }
    }
    assert_true(seen_sonnet);
    assert_true(seen_embed);
    json_decref(t);
}

/* Lookups happen once per request; this keeps an eye on their cost. */
static void test_lookup_speed(void **state)
{
    (void)state;
    static const char *const ids[][2] = {
        {"openai", "gpt-4o-2024-08-06"},
        {"bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0"},
        {"openrouter", "anthropic/claude-sonnet-4"},
        {"vertex_ai", "claude-sonnet-4-5@20250929"},
        {"openai", "no-such-model-2024-01-01"},
    };
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int n = 0;
    for (int i = 0; i < 20000; i++) {
        struct sb_price p;
        n += sb_price_lookup(ids[i % 5][0], ids[i % 5][1], &p);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    assert_int_equal(n, 16000);
    double us =
        ((double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3) / 20000;
    print_message("lookup: %.3f us each\n", us);
    assert_true(us < 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_rows_valid),
        cmocka_unit_test(test_openai_and_azure),
        cmocka_unit_test(test_anthropic),
        cmocka_unit_test(test_gemini_and_vertex),
        cmocka_unit_test(test_bedrock),
        cmocka_unit_test(test_other_providers),
        cmocka_unit_test(test_vendor_prefixes),
        cmocka_unit_test(test_lookup_bad_arguments),
        cmocka_unit_test(test_cost_basic),
        cmocka_unit_test(test_cost_cache),
        cmocka_unit_test(test_cost_reasoning_and_rounding),
        cmocka_unit_test(test_cost_saturates),
        cmocka_unit_test(test_table_json),
        cmocka_unit_test(test_lookup_speed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "canon/codecs.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX SB_SOURCE_DIR "/tests/data/fixtures/"

static const struct sb_provider_codec *C = &sb_codec_openai;

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* ---- running decoders into a response --------------------------------------------------- */

struct run {
    struct sb_canon_resp r;
    int feed_rc, end_rc;
    int nevents;
    int stop_after; /* ask to stop at this event (1-based), 0 never */
};

static int on_event(void *ud, const struct sb_canon_event *ev)
{
    struct run *run = ud;
    run->nevents++;
    if (run->stop_after && run->nevents == run->stop_after)
        return 1;
    int rc = sb_canon_resp_event(&run->r, ev);
    assert_int_equal(rc, 0); /* events in order */
    return 0;
}

static void run_stream(struct run *run, const char *data, size_t len, bool bytewise)
{
    memset(run, 0, sizeof *run);
    sb_canon_resp_init(&run->r, 1 << 20);
    void *st = C->stream_new(64 * 1024);
    assert_non_null(st);
    run->feed_rc = 0;
    if (bytewise) {
        for (size_t i = 0; i < len && run->feed_rc == 0; i++)
            run->feed_rc = C->stream_feed(st, data + i, 1, on_event, run);
    } else {
        run->feed_rc = C->stream_feed(st, data, len, on_event, run);
    }
    run->end_rc = run->feed_rc == 0 ? C->stream_end(st, on_event, run) : 0;
    C->stream_free(st);
}

static void run_str(struct run *run, const char *s, bool bytewise)
{
    run_stream(run, s, strlen(s), bytewise);
}

static void run_done(struct run *run)
{
    sb_canon_resp_free(&run->r);
}

static const struct sb_canon_block *block_of(const struct sb_canon_resp *r, enum sb_block_kind kind,
                                             size_t nth)
{
    for (size_t i = 0; i < r->nblocks; i++)
        if (r->blocks[i].kind == kind && nth-- == 0)
            return &r->blocks[i];
    return NULL;
}

static const char *btext(const struct sb_canon_block *b)
{
    return b->text.data ? b->text.data : "";
}

/* The arguments of a tool block parse as a JSON object whose `key` is the string `value`. */
static void assert_arg(const struct sb_canon_block *b, const char *key, const char *value)
{
    json_t *j = json_loads(btext(b), 0, NULL);
    assert_true(json_is_object(j));
    assert_string_equal(json_string_value(json_object_get(j, key)), value);
    json_decref(j);
}

/* ---- fixture streams ------------------------------------------------------------------- */

struct stream_case {
    const char *file;
    const char *text_prefix;
    size_t text_len;
    size_t ntools;
    const char *id0, *name0, *key0, *val0;
    const char *id1, *name1, *key1, *val1;
    enum sb_finish finish;
    int64_t input, output, reasoning;
};

static const struct stream_case stream_cases[] = {
    {"openai/chat_stream_text.sse", "Hi there! How can I help today?", 213, 0, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, SB_FINISH_STOP, -1, -1, -1},
    {"openai/chat_stream_include_usage.sse", "", 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, SB_FINISH_LENGTH, 12, 100, 100},
    {"openai/chat_stream_refusal.sse", "I'm sorry, I can't assist with that request.", 44, 0, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL, NULL, SB_FINISH_STOP, 79, 11, 0},
    {"openai/chat_stream_tool_call.sse", "", 0, 1, "call_4XzlGBLtUe9dy3GVNV4jhq7h", "get_weather",
     "city", "New York City", NULL, NULL, NULL, NULL, SB_FINISH_TOOL_CALLS, 44, 16, 0},
    {"openai/chat_stream_parallel_tool_calls.sse", "", 0, 2, "call_JMW1whyEaYG438VE1OIflxA2",
     "GetWeatherArgs", "city", "Edinburgh", "call_DNYTawLBoN8fj3KN6qU9N1Ou", "get_stock_price",
     "ticker", "AAPL", SB_FINISH_TOOL_CALLS, 149, 60, 0},
};

static void check_stream_case(const struct stream_case *c, bool bytewise)
{
    char path[512];
    snprintf(path, sizeof path, FIX "%s", c->file);
    size_t len;
    char *data = slurp(path, &len);
    struct run run;
    run_stream(&run, data, len, bytewise);
    assert_int_equal(run.feed_rc, 0);
    assert_int_equal(run.end_rc, 0);
    const struct sb_canon_resp *r = &run.r;
    assert_true(r->started);
    assert_true(r->finished);
    assert_non_null(r->id);
    assert_true(strncmp(r->id, "chatcmpl-", 9) == 0);
    assert_non_null(r->model);
    const struct sb_canon_block *t = block_of(r, SB_BLOCK_TEXT, 0);
    if (c->text_len) {
        assert_non_null(t);
        assert_int_equal(t->text.len, c->text_len);
        assert_true(strncmp(btext(t), c->text_prefix, strlen(c->text_prefix)) == 0);
        assert_null(block_of(r, SB_BLOCK_TEXT, 1));
    } else {
        assert_null(t); /* the first chunk's content "" opens no block */
    }
    const struct sb_canon_block *t0 = block_of(r, SB_BLOCK_TOOL_CALL, 0);
    const struct sb_canon_block *t1 = block_of(r, SB_BLOCK_TOOL_CALL, 1);
    if (c->ntools >= 1) {
        assert_non_null(t0);
        assert_string_equal(t0->id, c->id0);
        assert_string_equal(t0->name, c->name0);
        assert_arg(t0, c->key0, c->val0);
    } else {
        assert_null(t0);
    }
    if (c->ntools >= 2) {
        assert_non_null(t1);
        assert_string_equal(t1->id, c->id1);
        assert_string_equal(t1->name, c->name1);
        assert_arg(t1, c->key1, c->val1);
    } else {
        assert_null(t1);
    }
    assert_int_equal(r->nblocks, (c->text_len ? 1 : 0) + c->ntools);
    assert_int_equal(r->finish, c->finish);
    assert_int_equal(r->usage.input, c->input);
    assert_int_equal(r->usage.output, c->output);
    assert_int_equal(r->usage.reasoning, c->reasoning);
    run_done(&run);
    free(data);
}

static void test_fixture_streams(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof stream_cases / sizeof stream_cases[0]; i++) {
        check_stream_case(&stream_cases[i], false);
        check_stream_case(&stream_cases[i], true);
    }
}

static void test_stream_error_fixture(void **state)
{
    (void)state;
    size_t len;
    char *data = slurp(FIX "openai/error_in_stream.synthetic.sse", &len);
    for (int bw = 0; bw < 2; bw++) {
        struct run run;
        run_stream(&run, data, len, bw);
        assert_int_equal(run.feed_rc, 0);
        assert_int_equal(run.end_rc, 0);
        assert_true(run.r.has_error);
        assert_int_equal(run.r.error.kind, SB_ERRK_SERVER);
        assert_int_equal(run.r.error.status, 500);
        assert_string_equal(run.r.error.type, "server_error");
        assert_non_null(strstr(run.r.error.message, "server had an error"));
        run_done(&run);
    }
    free(data);
}

/* ---- synthetic streams ----------------------------------------------------------------- */

static void test_stream_azure_reasoning_groq(void **state)
{
    (void)state;
    size_t alen;
    char *azure = slurp(FIX "other/azure_stream_first_chunk_prompt_filter.json", &alen);
    json_t *aj = json_loadb(azure, alen, 0, NULL);
    assert_non_null(aj);
    char *first = json_dumps(aj, JSON_COMPACT);
    json_decref(aj);
    free(azure);
    char *s = NULL;
    int n = asprintf(&s,
                     "data: %s\r\n\r\n"
                     ": keep-alive\r\n\r\n"
                     "data:{\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                     "\"content\":\"\",\"reasoning_content\":\"Let me \"}}]}\r\n\r\n"
                     "data: {\"choices\":[{\"index\":0,\"delta\":{\"reasoning_content\":"
                     "\"think.\"}}]}\r\n\r\n"
                     "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Answer\"},"
                     "\"finish_reason\":null}]}\r\n\r\n"
                     "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"!\"},"
                     "\"finish_reason\":\"eos\"}],\"x_groq\":{\"usage\":{\"prompt_tokens\":10,"
                     "\"completion_tokens\":4}}}\r\n\r\n"
                     "data: [DONE]\r\n\r\n",
                     first);
    assert_true(n > 0);
    free(first);
    for (int bw = 0; bw < 2; bw++) {
        struct run run;
        run_str(&run, s, bw);
        assert_int_equal(run.feed_rc, 0);
        assert_int_equal(run.end_rc, 0);
        assert_null(run.r.id); /* no chunk carried an id */
        assert_int_equal(run.r.nblocks, 2);
        assert_int_equal(run.r.blocks[0].kind, SB_BLOCK_THINKING);
        assert_string_equal(btext(&run.r.blocks[0]), "Let me think.");
        assert_int_equal(run.r.blocks[1].kind, SB_BLOCK_TEXT);
        assert_string_equal(btext(&run.r.blocks[1]), "Answer!"); /* content with finish */
        assert_int_equal(run.r.finish, SB_FINISH_STOP);
        assert_int_equal(run.r.usage.input, 10);
        assert_int_equal(run.r.usage.output, 4);
        run_done(&run);
    }
    free(s);
}

static const char tools_in_sequence[] =
    "data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"Checking.\"}}]}\n\n"
    "data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\","
    "\"function\":{\"name\":\"a\",\"arguments\":\"{\\\"k\\\":\"}}]}}]}\n\n"
    "data: {\"id\":\"x\",\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\"\\\"v\\\"}\"}},{\"index\":1,\"id\":\"c2\",\"function\":{\"name\":\"b\","
    "\"arguments\":\"{}\"}}]}}]}\n\n"
    "data: {\"id\":\"x\",\"choices\":[{\"delta\":{},\"finish_reason\":\"function_call\"}]}\n\n"
    "data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":5,"
    "\"prompt_tokens_details\":{\"cached_tokens\":8}}}\n\n";

static void test_stream_tools_usage_without_done(void **state)
{
    (void)state;
    for (int bw = 0; bw < 2; bw++) {
        struct run run;
        run_str(&run, tools_in_sequence, bw);
        assert_int_equal(run.feed_rc, 0);
        assert_int_equal(run.end_rc, 0); /* FINISH seen, no [DONE]: usage still comes out */
        assert_int_equal(run.r.nblocks, 3);
        assert_string_equal(btext(&run.r.blocks[0]), "Checking.");
        assert_string_equal(run.r.blocks[1].id, "c1");
        assert_arg(&run.r.blocks[1], "k", "v");
        assert_string_equal(run.r.blocks[2].id, "c2");
        assert_string_equal(run.r.blocks[2].name, "b");
        assert_string_equal(btext(&run.r.blocks[2]), "{}");
        assert_int_equal(run.r.finish, SB_FINISH_TOOL_CALLS);
        assert_int_equal(run.r.usage.input, 12);
        assert_int_equal(run.r.usage.cache_read, 8);
        assert_int_equal(run.r.usage.output, 5);
        run_done(&run);
    }
}

static void test_stream_invalid_and_cut(void **state)
{
    (void)state;
    struct run run;
    /* a fragment for a tool call whose block was closed */
    run_str(&run,
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"a\","
            "\"function\":{\"name\":\"f\"}}]}}]}\n\n"
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"b\","
            "\"function\":{\"name\":\"g\"}}]}}]}\n\n"
            "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
            "{\"arguments\":\"{}\"}}]}}]}\n\n",
            false);
    assert_int_equal(run.feed_rc, SB_CANON_E_INVALID);
    run_done(&run);
    /* a negative tool index */
    run_str(&run, "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":-1}]}}]}\n\n", false);
    assert_int_equal(run.feed_rc, SB_CANON_E_INVALID);
    run_done(&run);
    /* not JSON */
    run_str(&run, "data: {\"choices\":[\n\n", true);
    assert_int_equal(run.feed_rc, SB_CANON_E_INVALID);
    run_done(&run);
    run_str(&run, "data: 42\n\n", false);
    assert_int_equal(run.feed_rc, SB_CANON_E_INVALID);
    run_done(&run);
    /* cut before the finish chunk, even with [DONE] */
    run_str(&run, "data: {\"id\":\"a\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n", true);
    assert_int_equal(run.feed_rc, 0);
    assert_int_equal(run.end_rc, SB_CANON_E_CUT);
    run_done(&run);
    run_str(&run, "data: [DONE]\n\n", false);
    assert_int_equal(run.end_rc, SB_CANON_E_CUT);
    run_done(&run);
    /* an error chunk ends the stream; what follows is ignored */
    run_str(&run,
            "data: {\"id\":\"a\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n"
            "data: {\"error\":{\"code\":429,\"message\":\"slow down\"},\"choices\":[{\"delta\":"
            "{},\"finish_reason\":\"error\"}]}\n\n"
            "data: garbage\n\n",
            false);
    assert_int_equal(run.feed_rc, 0);
    assert_int_equal(run.end_rc, 0);
    assert_true(run.r.has_error);
    assert_int_equal(run.r.error.status, 429);
    assert_int_equal(run.r.error.kind, SB_ERRK_RATE_LIMIT);
    assert_false(run.r.finished);
    run_done(&run);
    /* the emit callback stops the decoder */
    memset(&run, 0, sizeof run);
    sb_canon_resp_init(&run.r, 1 << 20);
    run.stop_after = 2;
    void *st = C->stream_new(1024);
    assert_int_equal(
        C->stream_feed(st, tools_in_sequence, strlen(tools_in_sequence), on_event, &run),
        SB_CANON_E_STOP);
    C->stream_free(st);
    run_done(&run);
}

static void test_stream_too_big(void **state)
{
    (void)state;
    char big[600];
    memset(big, 'a', sizeof big);
    memcpy(big, "data: ", 6);
    big[sizeof big - 1] = '\n';
    void *st = C->stream_new(256);
    struct run run;
    memset(&run, 0, sizeof run);
    sb_canon_resp_init(&run.r, 1 << 20);
    assert_int_equal(C->stream_feed(st, big, sizeof big, on_event, &run), -E2BIG);
    C->stream_free(st);
    run_done(&run);
}

/* ---- whole responses ------------------------------------------------------------------- */

static void decode_file(struct run *run, const char *path)
{
    size_t len;
    char *data = slurp(path, &len);
    memset(run, 0, sizeof *run);
    sb_canon_resp_init(&run->r, 1 << 20);
    run->feed_rc = C->decode_response(data, len, on_event, run);
    free(data);
}

static void test_responses(void **state)
{
    (void)state;
    struct run run;
    decode_file(&run, FIX "openai/chat_text.response.json");
    assert_int_equal(run.feed_rc, 0);
    assert_string_equal(run.r.id, "chatcmpl-C4Gm9xikLXbgE8He0BHWeoM03aa72");
    assert_string_equal(run.r.model, "gpt-5-nano-2025-08-07");
    assert_int_equal(run.r.nblocks, 1);
    assert_true(strncmp(btext(&run.r.blocks[0]), "Hi there! How can I help you today?", 35) == 0);
    assert_int_equal(run.r.finish, SB_FINISH_STOP);
    assert_int_equal(run.r.usage.input, 8);
    assert_int_equal(run.r.usage.output, 377);
    assert_int_equal(run.r.usage.reasoning, 320);
    run_done(&run);

    decode_file(&run, FIX "openai/chat_tool_call.response.json");
    assert_int_equal(run.feed_rc, 0);
    assert_int_equal(run.r.nblocks, 1);
    assert_int_equal(run.r.blocks[0].kind, SB_BLOCK_TOOL_CALL);
    assert_string_equal(run.r.blocks[0].id, "call_8fxy20OEu9ulvvaa5b5CzVA4");
    assert_string_equal(run.r.blocks[0].name, "get_current_weather");
    assert_arg(&run.r.blocks[0], "location", "Boston, MA");
    assert_int_equal(run.r.finish, SB_FINISH_TOOL_CALLS);
    assert_int_equal(run.r.usage.input, 162);
    run_done(&run);

    decode_file(&run, FIX "openai/chat_finish_length_reasoning_tokens.response.json");
    assert_int_equal(run.feed_rc, 0);
    assert_int_equal(run.r.nblocks, 0);
    assert_int_equal(run.r.finish, SB_FINISH_LENGTH);
    assert_int_equal(run.r.usage.reasoning, 100);
    run_done(&run);

    decode_file(&run, FIX "openai/azure_chat_text.response.json");
    assert_int_equal(run.feed_rc, 0);
    assert_int_equal(run.r.nblocks, 1);
    assert_int_equal(run.r.usage.output, 271);
    run_done(&run);

    decode_file(&run, FIX "other/deepseek_chat.response.json");
    assert_int_equal(run.feed_rc, 0);
    assert_string_equal(btext(&run.r.blocks[0]), "Hello! How can I assist you today?");
    assert_int_equal(run.r.usage.input, 14);
    assert_int_equal(run.r.usage.cache_read, 0);
    run_done(&run);

    decode_file(&run, FIX "other/mistral_chat.response.json");
    assert_int_equal(run.feed_rc, 0);
    assert_int_equal(run.r.usage.output, 61);
    run_done(&run);

    decode_file(&run, FIX "other/groq_chat.response.json");
    assert_int_equal(run.feed_rc, 0);
    assert_int_equal(run.r.usage.input, 30);
    run_done(&run);
}

static void decode_str(struct run *run, const char *s)
{
    memset(run, 0, sizeof *run);
    sb_canon_resp_init(&run->r, 1 << 20);
    run->feed_rc = C->decode_response(s, strlen(s), on_event, run);
}

static void test_response_variants(void **state)
{
    (void)state;
    struct run run;
    decode_str(&run, "{\"id\":\"r\",\"choices\":[{\"message\":{\"content\":null,"
                     "\"reasoning_content\":\"hmm\",\"tool_calls\":[{\"type\":\"function\","
                     "\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]},"
                     "\"finish_reason\":\"model_length\"}],\"usage\":{\"prompt_tokens\":9,"
                     "\"completion_tokens\":3,\"prompt_cache_hit_tokens\":4}}");
    assert_int_equal(run.feed_rc, 0);
    assert_int_equal(run.r.nblocks, 2);
    assert_int_equal(run.r.blocks[0].kind, SB_BLOCK_THINKING);
    assert_string_equal(btext(&run.r.blocks[0]), "hmm");
    assert_string_equal(btext(&run.r.blocks[1]), "{\"a\":1}");
    assert_true(strncmp(run.r.blocks[1].id, "call_", 5) == 0);
    assert_int_equal(run.r.finish, SB_FINISH_LENGTH);
    assert_int_equal(run.r.usage.input, 5);
    assert_int_equal(run.r.usage.cache_read, 4);
    run_done(&run);

    decode_str(&run, "{\"choices\":[{\"message\":{\"content\":\"\",\"refusal\":\"no\"},"
                     "\"finish_reason\":\"content_filter\"}]}");
    assert_int_equal(run.feed_rc, 0);
    assert_string_equal(btext(&run.r.blocks[0]), "no");
    assert_int_equal(run.r.finish, SB_FINISH_CONTENT_FILTER);
    assert_int_equal(run.r.usage.input, -1);
    run_done(&run);

    decode_str(&run, "{\"choices\":[{\"message\":{\"content\":\"x\"},\"finish_reason\":"
                     "\"something_new\"}]}");
    assert_int_equal(run.r.finish, SB_FINISH_STOP);
    run_done(&run);

    decode_str(&run, "{\"error\":{\"message\":\"bad\",\"type\":\"invalid_request_error\"}}");
    assert_int_equal(run.feed_rc, 0);
    assert_true(run.r.has_error);
    assert_false(run.r.started);
    assert_int_equal(run.r.error.status, 400);
    run_done(&run);

    decode_str(&run, "[1,2]");
    assert_int_equal(run.feed_rc, SB_CANON_E_INVALID);
    run_done(&run);
    decode_str(&run, "");
    assert_int_equal(run.feed_rc, SB_CANON_E_INVALID);
    run_done(&run);
}

/* ---- errors ------------------------------------------------------------------------------ */

static void err_file(const char *path, int status, struct sb_canon_error *e)
{
    size_t len;
    char *data = slurp(path, &len);
    memset(e, 0, sizeof *e);
    assert_int_equal(C->decode_error(status, data, len, e), 0);
    free(data);
}

static void test_errors(void **state)
{
    (void)state;
    struct sb_canon_error e;
    err_file(FIX "openai/error_401_invalid_api_key.json", 401, &e);
    assert_int_equal(e.status, 401);
    assert_int_equal(e.kind, SB_ERRK_AUTH);
    assert_string_equal(e.type, "invalid_request_error");
    assert_true(strncmp(e.message, "Incorrect API key provided", 26) == 0);

    err_file(FIX "openai/error_429_insufficient_quota.json", 429, &e);
    assert_int_equal(e.kind, SB_ERRK_BILLING);
    assert_int_equal(e.status, 429);

    err_file(FIX "openai/error_429_rate_limit_tokens.json", 429, &e);
    assert_int_equal(e.kind, SB_ERRK_RATE_LIMIT);
    assert_string_equal(e.type, "tokens");

    err_file(FIX "openai/error_404_model_not_found.json", 404, &e);
    assert_int_equal(e.kind, SB_ERRK_NOT_FOUND);

    err_file(FIX "openai/error_400_unsupported_parameter.json", 400, &e);
    assert_int_equal(e.kind, SB_ERRK_INVALID_REQUEST);
    assert_non_null(strstr(e.message, "max_completion_tokens"));

    err_file(FIX "openai/error_400_empty_messages.json", 400, &e);
    assert_int_equal(e.kind, SB_ERRK_INVALID_REQUEST);

    err_file(FIX "other/vllm_error_legacy_flat_shape.json", 400, &e);
    assert_int_equal(e.kind, SB_ERRK_CONTEXT_WINDOW);
    assert_string_equal(e.type, "BadRequestError");
    assert_true(strncmp(e.message, "This model's maximum context length", 35) == 0);

    err_file(FIX "other/mistral_error_invalid_tool_call_id.json", 400, &e);
    assert_int_equal(e.kind, SB_ERRK_INVALID_REQUEST);
    assert_string_equal(e.type, "invalid_function_call");
    assert_non_null(strstr(e.message, "Tool call id"));

    static const struct {
        int status;
        const char *body;
        enum sb_err_kind kind;
        const char *type;
        const char *msg;
    } cases[] = {
        {402, "{\"error\":{\"code\":402,\"message\":\"Insufficient credits\"}}", SB_ERRK_BILLING,
         "", "Insufficient credits"},
        {400,
         "{\"error\":{\"message\":\"x\",\"type\":\"invalid_request_error\",\"code\":"
         "\"context_length_exceeded\"}}",
         SB_ERRK_CONTEXT_WINDOW, "invalid_request_error", "x"},
        {400,
         "{\"error\":{\"message\":\"blocked\",\"type\":\"invalid_request_error\",\"code\":"
         "\"content_policy_violation\"}}",
         SB_ERRK_CONTENT_POLICY, "invalid_request_error", "blocked"},
        {400, "{\"error\":{\"message\":\"f\",\"code\":\"content_filter\"}}", SB_ERRK_CONTENT_POLICY,
         "content_filter", "f"},
        {503, "{\"error\":\"upstream unavailable\"}", SB_ERRK_OVERLOADED, "",
         "upstream unavailable"},
        {502, "", SB_ERRK_SERVER, "", "OpenAI-compatible provider returned HTTP 502"},
        {504, "<html>gateway timeout</html>", SB_ERRK_TIMEOUT, "",
         "OpenAI-compatible provider returned HTTP 504"},
        {500, "{\"detail\":\"x\"}", SB_ERRK_SERVER, "",
         "OpenAI-compatible provider returned HTTP 500"},
        {429, "{\"error\":{\"type\":\"requests\"}}", SB_ERRK_RATE_LIMIT, "requests",
         "OpenAI-compatible provider returned HTTP 429"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memset(&e, 0, sizeof e);
        assert_int_equal(C->decode_error(cases[i].status, cases[i].body, strlen(cases[i].body), &e),
                         0);
        assert_int_equal(e.status, cases[i].status);
        assert_int_equal(e.kind, cases[i].kind);
        assert_string_equal(e.type, cases[i].type);
        assert_string_equal(e.message, cases[i].msg);
        assert_int_equal(e.retry_after_ms, -1);
    }
    /* a very long message is cut to the field, NUL-terminated */
    char *big = malloc(5000);
    assert_non_null(big);
    int n = snprintf(big, 5000, "{\"error\":{\"message\":\"");
    memset(big + n, 'm', 2000);
    snprintf(big + n + 2000, 5000 - (size_t)n - 2000, "\"}}");
    assert_int_equal(C->decode_error(400, big, strlen(big), &e), 0);
    assert_int_equal(strlen(e.message), sizeof e.message - 1);
    free(big);
}

/* ---- encode_request ---------------------------------------------------------------------- */

static json_t *encode(const struct sb_canon_req *req, struct sb_error *err, int *rc)
{
    struct sb_buf out;
    sb_buf_init(&out, 1 << 20);
    *rc = C->encode_request(req, "gpt-upstream", &out, err);
    json_t *j = *rc == 0 ? json_loadb(out.data, out.len, 0, NULL) : NULL;
    if (*rc == 0)
        assert_non_null(j);
    sb_buf_free(&out);
    return j;
}

static void req_init(struct sb_canon_req *r)
{
    memset(r, 0, sizeof *r);
    r->parallel_tool_calls = -1;
    r->max_tokens = -1;
    r->top_k = -1;
    r->n = -1;
    r->top_logprobs = -1;
    r->rf_strict = -1;
    r->thinking_budget = -1;
}

static void test_encode_request(void **state)
{
    (void)state;
    struct sb_part sys[] = {{.type = SB_PART_TEXT, .text = "Be brief."}};
    struct sb_part u1[] = {
        {.type = SB_PART_TEXT, .text = "What is this?"},
        {.type = SB_PART_IMAGE, .media_type = "image/png", .data = "iVBOR", .detail = "low"},
        {.type = SB_PART_IMAGE, .url = "https://x/y.jpg"},
        {.type = SB_PART_DOCUMENT, .media_type = "application/pdf", .data = "JVBER"},
    };
    struct sb_part a1[] = {
        {.type = SB_PART_THINKING, .text = "secret", .signature = "sig"},
        {.type = SB_PART_REDACTED_THINKING, .text = "opaque"},
        {.type = SB_PART_TEXT, .text = "Let me check."},
        {.type = SB_PART_TOOL_CALL, .id = "toolu_1", .name = "look", .arguments = "{\"q\":1}"},
        {.type = SB_PART_TOOL_CALL, .id = "toolu_2", .name = "look", .arguments = "{}"},
    };
    struct sb_part r1[] = {{.type = SB_PART_TEXT, .text = "result one"}};
    struct sb_part r2[] = {{.type = SB_PART_TEXT, .text = "two "},
                           {.type = SB_PART_TEXT, .text = "parts"},
                           {.type = SB_PART_IMAGE, .url = "https://x/chart.png"}};
    struct sb_part u2[] = {
        {.type = SB_PART_TOOL_RESULT, .id = "toolu_1", .parts = r1, .nparts = 1},
        {.type = SB_PART_TOOL_RESULT, .id = "toolu_2", .parts = r2, .nparts = 3, .is_error = true},
        {.type = SB_PART_TEXT, .text = "Thanks"},
    };
    struct sb_part a2[] = {{.type = SB_PART_TOOL_CALL, .id = "c3", .name = "look"}};
    struct sb_part t3[] = {{.type = SB_PART_TOOL_RESULT, .id = "c3", .parts = r1, .nparts = 1}};
    struct sb_msg msgs[] = {
        {.role = SB_ROLE_SYSTEM, .parts = sys, .nparts = 1},
        {.role = SB_ROLE_USER, .parts = u1, .nparts = 4, .name = "ann"},
        {.role = SB_ROLE_ASSISTANT, .parts = a1, .nparts = 5},
        {.role = SB_ROLE_USER, .parts = u2, .nparts = 3},
        {.role = SB_ROLE_ASSISTANT, .parts = a2, .nparts = 1},
        {.role = SB_ROLE_TOOL, .parts = t3, .nparts = 1},
    };
    json_t *schema = json_pack("{s:s}", "type", "object");
    struct sb_tool tools[] = {
        {.name = "look", .description = "Looks.", .parameters = schema, .strict = 1},
        {.name = "bare", .strict = -1},
    };
    char *stop[] = {"END"};
    struct sb_canon_req req;
    req_init(&req);
    req.model = "claude-client-name";
    req.msgs = msgs;
    req.nmsgs = 6;
    req.tools = tools;
    req.ntools = 2;
    req.tool_choice = SB_TC_NAMED;
    req.tool_choice_name = "look";
    req.parallel_tool_calls = 0;
    req.max_tokens = 1000;
    req.has_temperature = true;
    req.temperature = 0.5;
    req.stop = stop;
    req.nstop = 1;
    req.thinking_budget = 3000;
    req.user = "u-1";
    req.stream = true;
    req.has_seed = true;
    req.seed = 7;
    req.response_format = SB_RF_JSON_SCHEMA;
    req.rf_schema = schema;
    req.rf_strict = 1;

    struct sb_error err;
    int rc;
    json_t *j = encode(&req, &err, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "gpt-upstream");
    json_t *m = json_object_get(j, "messages");
    assert_int_equal(json_array_size(m), 8);
    const char *roles[] = {"system", "user", "assistant", "tool",
                           "tool",   "user", "assistant", "tool"};
    for (size_t i = 0; i < 8; i++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(m, i), "role")),
                            roles[i]);
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "content")),
                        "Be brief.");
    json_t *um = json_array_get(m, 1);
    assert_string_equal(json_string_value(json_object_get(um, "name")), "ann");
    json_t *uc = json_object_get(um, "content");
    assert_int_equal(json_array_size(uc), 4);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(uc, 1), "image_url"), "url")),
                        "data:image/png;base64,iVBOR");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(uc, 1), "image_url"), "detail")),
                        "low");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(uc, 2), "image_url"), "url")),
                        "https://x/y.jpg");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(uc, 3), "file"), "file_data")),
                        "data:application/pdf;base64,JVBER");
    json_t *am = json_array_get(m, 2);
    assert_string_equal(json_string_value(json_object_get(am, "content")), "Let me check.");
    json_t *tc = json_object_get(am, "tool_calls");
    assert_int_equal(json_array_size(tc), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(tc, 0), "id")), "toolu_1");
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(tc, 0), "function"), "arguments")),
                        "{\"q\":1}");
    assert_null(json_object_get(am, "reasoning_content"));
    json_t *t1 = json_array_get(m, 3);
    assert_string_equal(json_string_value(json_object_get(t1, "tool_call_id")), "toolu_1");
    assert_string_equal(json_string_value(json_object_get(t1, "content")), "result one");
    json_t *t2 = json_array_get(m, 4);
    assert_string_equal(json_string_value(json_object_get(t2, "content")), "two parts");
    json_t *u2m = json_object_get(json_array_get(m, 5), "content");
    assert_int_equal(json_array_size(u2m), 2); /* the tool result's image, then "Thanks" */
    assert_string_equal(json_string_value(json_object_get(json_array_get(u2m, 0), "type")),
                        "image_url");
    assert_string_equal(json_string_value(json_object_get(json_array_get(u2m, 1), "text")),
                        "Thanks");
    json_t *a2m = json_array_get(m, 6);
    assert_true(json_is_null(json_object_get(a2m, "content")));
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_array_get(json_object_get(a2m, "tool_calls"), 0), "function"),
            "arguments")),
        "{}");

    json_t *tl = json_object_get(j, "tools");
    assert_int_equal(json_array_size(tl), 2);
    json_t *f0 = json_object_get(json_array_get(tl, 0), "function");
    assert_true(json_is_true(json_object_get(f0, "strict")));
    assert_string_equal(json_string_value(json_object_get(f0, "description")), "Looks.");
    json_t *f1 = json_object_get(json_array_get(tl, 1), "function");
    assert_null(json_object_get(f1, "strict"));
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(f1, "parameters"), "type")), "object");
    assert_string_equal(
        json_string_value(json_object_get(
            json_object_get(json_object_get(j, "tool_choice"), "function"), "name")),
        "look");
    assert_true(json_is_false(json_object_get(j, "parallel_tool_calls")));
    assert_int_equal(json_integer_value(json_object_get(j, "max_completion_tokens")), 1000);
    assert_null(json_object_get(j, "max_tokens"));
    assert_true(json_is_integer(json_object_get(j, "seed")));
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "stop"), 0)), "END");
    assert_string_equal(json_string_value(json_object_get(j, "reasoning_effort")), "high");
    assert_string_equal(json_string_value(json_object_get(j, "user")), "u-1");
    assert_true(json_is_true(json_object_get(j, "stream")));
    assert_true(
        json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")));
    json_t *rf = json_object_get(j, "response_format");
    assert_string_equal(json_string_value(json_object_get(rf, "type")), "json_schema");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(rf, "json_schema"), "name")), "response");
    json_decref(j);

    /* explicit effort wins; no tools: no parallel_tool_calls; no stream: no stream_options */
    req.ntools = 0;
    req.tool_choice = SB_TC_REQUIRED;
    req.reasoning_effort = "low";
    req.stream = false;
    req.nmsgs = 1;
    req.response_format = SB_RF_JSON_OBJECT;
    req.logprobs = true;
    req.top_logprobs = 3;
    j = encode(&req, &err, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(json_string_value(json_object_get(j, "reasoning_effort")), "low");
    assert_null(json_object_get(j, "parallel_tool_calls"));
    assert_null(json_object_get(j, "stream_options"));
    assert_string_equal(json_string_value(json_object_get(j, "tool_choice")), "required");
    assert_true(json_is_true(json_object_get(j, "logprobs")));
    assert_int_equal(json_integer_value(json_object_get(j, "top_logprobs")), 3);
    json_decref(j);

    /* a zero budget sends no effort */
    req.reasoning_effort = NULL;
    req.thinking_budget = 0;
    j = encode(&req, &err, &rc);
    assert_null(json_object_get(j, "reasoning_effort"));
    json_decref(j);
    json_decref(schema);
}

static void test_encode_refusals(void **state)
{
    (void)state;
    struct sb_part u[] = {{.type = SB_PART_DOCUMENT, .url = "https://x/doc.pdf"}};
    struct sb_msg msgs[] = {{.role = SB_ROLE_USER, .parts = u, .nparts = 1}};
    struct sb_canon_req req;
    req_init(&req);
    req.msgs = msgs;
    req.nmsgs = 1;
    struct sb_error err;
    int rc;
    json_t *j = encode(&req, &err, &rc);
    assert_null(j);
    assert_int_equal(rc, -1);
    assert_int_equal(err.status, 400);
    assert_string_equal(err.code, "unsupported_parameter");

    struct sb_part img[] = {{.type = SB_PART_IMAGE}};
    msgs[0].parts = img;
    j = encode(&req, &err, &rc);
    assert_int_equal(rc, -1);
    assert_int_equal(err.status, 400);

    /* output cap */
    struct sb_part t[] = {{.type = SB_PART_TEXT, .text = "hello there, a long enough text"}};
    msgs[0].parts = t;
    struct sb_buf out;
    sb_buf_init(&out, 16);
    assert_int_equal(C->encode_request(&req, "m", &out, &err), -1);
    assert_int_equal(err.status, 413);
    assert_int_equal(out.len, 0);
    sb_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_streams),
        cmocka_unit_test(test_stream_error_fixture),
        cmocka_unit_test(test_stream_azure_reasoning_groq),
        cmocka_unit_test(test_stream_tools_usage_without_done),
        cmocka_unit_test(test_stream_invalid_and_cut),
        cmocka_unit_test(test_stream_too_big),
        cmocka_unit_test(test_responses),
        cmocka_unit_test(test_response_variants),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_encode_request),
        cmocka_unit_test(test_encode_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

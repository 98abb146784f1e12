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

#define CORPUS SB_SOURCE_DIR "/fuzz/corpus/cohere/"

static const struct sb_provider_codec *C = &sb_codec_cohere;

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

/* The payloads are written after Cohere's v2 API reference (there are no recordings); they
 * double as the fuzz seeds. */
static char *payload(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, CORPUS "%s", name);
    return slurp(path, len);
}

/* ---- streams ------------------------------------------------------------------------------ */

static void test_stream_text(void **state)
{
    (void)state;
    size_t len;
    char *data = payload("stream_text.sse", &len);
    for (int bw = 0; bw < 2; bw++) {
        struct run run;
        run_stream(&run, data, len, bw);
        assert_int_equal(run.feed_rc, 0);
        assert_int_equal(run.end_rc, 0);
        assert_string_equal(run.r.id, "29f14a5a-11de-4cae-9800-25e4747408ea");
        assert_null(run.r.model);
        assert_int_equal(run.r.nblocks, 1);
        assert_int_equal(run.r.blocks[0].kind, SB_BLOCK_TEXT);
        assert_string_equal(btext(&run.r.blocks[0]), "Hello world");
        assert_int_equal(run.r.finish, SB_FINISH_STOP);
        assert_int_equal(run.r.usage.input, 69); /* tokens, not billed_units */
        assert_int_equal(run.r.usage.output, 2);
        run_done(&run);
    }
    free(data);
}

static void test_stream_tools(void **state)
{
    (void)state;
    size_t len;
    char *data = payload("stream_tool.sse", &len);
    for (int bw = 0; bw < 2; bw++) {
        struct run run;
        run_stream(&run, data, len, bw);
        assert_int_equal(run.feed_rc, 0);
        assert_int_equal(run.end_rc, 0);
        assert_int_equal(run.r.nblocks, 3);
        assert_int_equal(run.r.blocks[0].kind, SB_BLOCK_TEXT); /* the tool plan */
        assert_string_equal(btext(&run.r.blocks[0]), "I will look up the weather.");
        assert_int_equal(run.r.blocks[1].kind, SB_BLOCK_TOOL_CALL);
        assert_string_equal(run.r.blocks[1].id, "get_weather_1byjy32y4hvq");
        assert_string_equal(run.r.blocks[1].name, "get_weather");
        assert_arg(&run.r.blocks[1], "location", "Toronto");
        assert_string_equal(run.r.blocks[2].id, "get_weather_2");
        assert_arg(&run.r.blocks[2], "location", "Paris");
        assert_int_equal(run.r.finish, SB_FINISH_TOOL_CALLS);
        assert_int_equal(run.r.usage.input, 913);
        assert_int_equal(run.r.usage.output, 83);
        run_done(&run);
    }
    free(data);
}

static void test_stream_thinking(void **state)
{
    (void)state;
    size_t len;
    char *data = payload("stream_thinking.sse", &len);
    for (int bw = 0; bw < 2; bw++) {
        struct run run;
        run_stream(&run, data, len, bw);
        assert_int_equal(run.feed_rc, 0);
        assert_int_equal(run.end_rc, 0);
        assert_int_equal(run.r.nblocks, 2);
        assert_int_equal(run.r.blocks[0].kind, SB_BLOCK_THINKING);
        assert_string_equal(btext(&run.r.blocks[0]), "Let me think.");
        assert_int_equal(run.r.blocks[1].kind, SB_BLOCK_TEXT);
        assert_string_equal(btext(&run.r.blocks[1]), "42");
        assert_int_equal(run.r.finish, SB_FINISH_LENGTH);
        assert_int_equal(run.r.usage.input, 5); /* billed_units, written as 5.0 */
        assert_int_equal(run.r.usage.output, 10);
        run_done(&run);
    }
    free(data);
}

static void test_stream_failures(void **state)
{
    (void)state;
    size_t len;
    char *data = payload("stream_cut.sse", &len);
    struct run run;
    run_stream(&run, data, len, true);
    assert_int_equal(run.feed_rc, 0);
    assert_int_equal(run.end_rc, SB_CANON_E_CUT);
    assert_string_equal(btext(&run.r.blocks[0]), "partial"); /* a delta with no start */
    run_done(&run);
    free(data);

    data = payload("stream_error.sse", &len);
    run_stream(&run, data, len, false);
    assert_int_equal(run.feed_rc, 0);
    assert_int_equal(run.end_rc, 0);
    assert_true(run.r.has_error);
    assert_string_equal(run.r.error.message, "internal server error");
    run_done(&run);
    free(data);

    data = payload("stream_orphan_delta.sse", &len);
    run_stream(&run, data, len, false);
    assert_int_equal(run.feed_rc, SB_CANON_E_INVALID);
    run_done(&run);
    free(data);

    run_str(&run, "event: content-delta\ndata: [1]\n\n", false);
    assert_int_equal(run.feed_rc, SB_CANON_E_INVALID);
    run_done(&run);

    /* event types named only by the SSE event field; unknown types and citations ignored */
    run_str(&run,
            "event: message-start\ndata: {\"id\":\"m\"}\n\n"
            "event: citation-start\ndata: {\"type\":\"citation-start\",\"index\":0}\n\n"
            "event: debug\ndata: {}\n\n"
            "event: content-delta\ndata: {\"delta\":{\"message\":{\"content\":{\"text\":\"\"}}}}"
            "\n\n"
            "event: content-delta\ndata: {\"delta\":{\"message\":{\"content\":{\"text\":\"a\"}}}}"
            "\n\n"
            "event: message-end\ndata: {\"delta\":{\"finish_reason\":\"ERROR\"}}\n\n"
            "event: content-delta\ndata: not json, ignored after the end\n\n",
            true);
    assert_int_equal(run.feed_rc, 0);
    assert_int_equal(run.end_rc, 0);
    assert_string_equal(run.r.id, "m");
    assert_int_equal(run.r.nblocks, 1); /* the empty delta opened none */
    assert_string_equal(btext(&run.r.blocks[0]), "a");
    assert_int_equal(run.r.finish, SB_FINISH_ERROR);
    assert_int_equal(run.r.usage.input, -1);
    run_done(&run);

    /* the callback stops the decoder */
    data = payload("stream_text.sse", &len);
    memset(&run, 0, sizeof run);
    sb_canon_resp_init(&run.r, 1 << 20);
    run.stop_after = 1;
    void *st = C->stream_new(4096);
    assert_int_equal(C->stream_feed(st, data, len, on_event, &run), SB_CANON_E_STOP);
    C->stream_free(st);
    run_done(&run);
    /* an event past the bound */
    st = C->stream_new(64);
    memset(&run, 0, sizeof run);
    sb_canon_resp_init(&run.r, 1 << 20);
    assert_int_equal(C->stream_feed(st, data, len, on_event, &run), -E2BIG);
    C->stream_free(st);
    run_done(&run);
    free(data);
}

/* ---- whole responses ---------------------------------------------------------------------- */

static void decode_payload(struct run *run, const char *name)
{
    size_t len;
    char *data = payload(name, &len);
    memset(run, 0, sizeof *run);
    sb_canon_resp_init(&run->r, 1 << 20);
    run->feed_rc = C->decode_response(data, len, on_event, run);
    free(data);
}

static void test_responses(void **state)
{
    (void)state;
    struct run run;
    decode_payload(&run, "response_text.json");
    assert_int_equal(run.feed_rc, 0);
    assert_string_equal(run.r.id, "c14c80c3-18eb-4519-9460-6c92edd8cfb4");
    assert_int_equal(run.r.nblocks, 1);
    assert_string_equal(btext(&run.r.blocks[0]), "LLMs stand for Large Language Models.");
    assert_int_equal(run.r.finish, SB_FINISH_STOP);
    assert_int_equal(run.r.usage.input, 71);
    assert_int_equal(run.r.usage.output, 418);
    run_done(&run);

    decode_payload(&run, "response_tool.json");
    assert_int_equal(run.feed_rc, 0);
    assert_int_equal(run.r.nblocks, 2);
    assert_string_equal(btext(&run.r.blocks[0]), "I will find the weather for Toronto.");
    assert_string_equal(run.r.blocks[1].id, "get_weather_1byjy32y4hvq");
    assert_arg(&run.r.blocks[1], "location", "Toronto");
    assert_int_equal(run.r.finish, SB_FINISH_TOOL_CALLS);
    run_done(&run);

    decode_payload(&run, "response_thinking.json");
    assert_int_equal(run.feed_rc, 0);
    assert_int_equal(run.r.nblocks, 2);
    assert_int_equal(run.r.blocks[0].kind, SB_BLOCK_THINKING); /* first, though listed last */
    assert_string_equal(btext(&run.r.blocks[0]), "Reasoning");
    assert_string_equal(btext(&run.r.blocks[1]), "Answer");
    assert_int_equal(run.r.finish, SB_FINISH_STOP_SEQUENCE);
    assert_int_equal(run.r.usage.input, 2);
    run_done(&run);

    static const struct {
        const char *body;
        enum sb_finish finish;
    } fin[] = {
        {"{\"message\":{},\"finish_reason\":\"TIMEOUT\"}", SB_FINISH_ERROR},
        {"{\"message\":{},\"finish_reason\":\"MAX_TOKENS\"}", SB_FINISH_LENGTH},
        {"{\"message\":{},\"finish_reason\":\"NEW_REASON\"}", SB_FINISH_STOP},
        {"{\"message\":{\"tool_calls\":[{\"function\":{\"name\":\"f\",\"arguments\":{\"a\":1}}}]},"
         "\"finish_reason\":\"TOOL_CALL\"}",
         SB_FINISH_TOOL_CALLS},
    };
    for (size_t i = 0; i < sizeof fin / sizeof fin[0]; i++) {
        memset(&run, 0, sizeof run);
        sb_canon_resp_init(&run.r, 1 << 20);
        assert_int_equal(C->decode_response(fin[i].body, strlen(fin[i].body), on_event, &run), 0);
        assert_int_equal(run.r.finish, fin[i].finish);
        run_done(&run);
    }
    const char *obj_args = fin[3].body;
    memset(&run, 0, sizeof run);
    sb_canon_resp_init(&run.r, 1 << 20);
    assert_int_equal(C->decode_response(obj_args, strlen(obj_args), on_event, &run), 0);
    assert_string_equal(btext(&run.r.blocks[0]), "{\"a\":1}");
    assert_true(strncmp(run.r.blocks[0].id, "call_", 5) == 0);
    run_done(&run);

    const char *err = "{\"message\":\"model overloaded\"}";
    memset(&run, 0, sizeof run);
    sb_canon_resp_init(&run.r, 1 << 20);
    assert_int_equal(C->decode_response(err, strlen(err), on_event, &run), 0);
    assert_true(run.r.has_error);
    assert_string_equal(run.r.error.message, "model overloaded");
    run_done(&run);

    memset(&run, 0, sizeof run);
    sb_canon_resp_init(&run.r, 1 << 20);
    assert_int_equal(C->decode_response("nope", 4, on_event, &run), SB_CANON_E_INVALID);
    run_done(&run);
}

/* ---- errors ------------------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    static const struct {
        int status;
        const char *body;
        enum sb_err_kind kind;
        const char *msg;
    } cases[] = {
        {401, "{\"message\":\"invalid api token\"}", SB_ERRK_AUTH, "invalid api token"},
        {498, "{\"message\":\"invalid api token\"}", SB_ERRK_AUTH, "invalid api token"},
        {429,
         "{\"message\":\"You are using a Trial key, which is limited to 10 API calls / "
         "minute.\"}",
         SB_ERRK_RATE_LIMIT,
         "You are using a Trial key, which is limited to 10 API calls / minute."},
        {400,
         "{\"id\":\"x\",\"message\":\"too many tokens: total number of tokens in the prompt "
         "cannot exceed 128000\"}",
         SB_ERRK_CONTEXT_WINDOW,
         "too many tokens: total number of tokens in the prompt cannot exceed 128000"},
        {402, "{\"message\":\"Please add a payment method\"}", SB_ERRK_BILLING,
         "Please add a payment method"},
        {404, "{\"message\":\"model 'x' not found\"}", SB_ERRK_NOT_FOUND, "model 'x' not found"},
        {499, "{\"message\":\"request cancelled\"}", SB_ERRK_TIMEOUT, "request cancelled"},
        {500, "", SB_ERRK_SERVER, "Cohere returned HTTP 500"},
        {503, "upstream connect error", SB_ERRK_OVERLOADED, "Cohere returned HTTP 503"},
        {422, "{\"error\":{\"message\":\"nested\"}}", SB_ERRK_INVALID_REQUEST, "nested"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sb_canon_error e;
        memset(&e, 0, sizeof e);
        assert_int_equal(C->decode_error(cases[i].status, cases[i].body, strlen(cases[i].body), &e),
                         0);
        assert_int_equal(e.status, cases[i].status);
        assert_int_equal(e.kind, cases[i].kind);
        assert_string_equal(e.message, cases[i].msg);
        assert_string_equal(e.type, "");
    }
}

/* ---- encode_request ----------------------------------------------------------------------- */

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

static json_t *encode(const struct sb_canon_req *req, struct sb_error *err, int *rc)
{
    struct sb_buf out;
    sb_buf_init(&out, 1 << 20);
    *rc = C->encode_request(req, "command-a-03-2025", &out, err);
    json_t *j = *rc == 0 ? json_loadb(out.data, out.len, 0, NULL) : NULL;
    if (*rc == 0)
        assert_non_null(j);
    sb_buf_free(&out);
    return j;
}

static const char *path_str(json_t *j, const char *path)
{
    /* "a.0.b": object keys and array indexes */
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *t = strtok_r(buf, ".", &save); t && j; t = strtok_r(NULL, ".", &save))
        j = (*t >= '0' && *t <= '9') ? json_array_get(j, strtoul(t, NULL, 10))
                                     : json_object_get(j, t);
    return json_string_value(j);
}

static void test_encode_request(void **state)
{
    (void)state;
    struct sb_part sys[] = {{.type = SB_PART_TEXT, .text = "Be brief."}};
    struct sb_part u1[] = {
        {.type = SB_PART_TEXT, .text = "Weather?"},
        {.type = SB_PART_IMAGE, .media_type = "image/jpeg", .data = "/9j/", .detail = "high"},
    };
    struct sb_part a1[] = {
        {.type = SB_PART_THINKING, .text = "hidden", .signature = "s"},
        {.type = SB_PART_TEXT, .text = "I will check."},
        {.type = SB_PART_TOOL_CALL,
         .id = "call_1",
         .name = "get_weather",
         .arguments = "{\"location\":\"Toronto\"}"},
    };
    struct sb_part r1[] = {{.type = SB_PART_TEXT, .text = "-5C"}};
    struct sb_part u2[] = {
        {.type = SB_PART_TOOL_RESULT, .id = "call_1", .parts = r1, .nparts = 1},
        {.type = SB_PART_TEXT, .text = "And tomorrow?"},
    };
    struct sb_part a2[] = {{.type = SB_PART_TEXT, .text = "Cold."}};
    struct sb_msg msgs[] = {
        {.role = SB_ROLE_SYSTEM, .parts = sys, .nparts = 1},
        {.role = SB_ROLE_USER, .parts = u1, .nparts = 2},
        {.role = SB_ROLE_ASSISTANT, .parts = a1, .nparts = 3},
        {.role = SB_ROLE_USER, .parts = u2, .nparts = 2},
        {.role = SB_ROLE_ASSISTANT, .parts = a2, .nparts = 1},
    };
    json_t *schema = json_pack("{s:s}", "type", "object");
    struct sb_tool tools[] = {
        {.name = "get_weather", .description = "Weather.", .parameters = schema, .strict = -1},
        {.name = "other", .strict = -1},
    };
    char *stop[] = {"END", "STOP"};
    struct sb_canon_req req;
    req_init(&req);
    req.msgs = msgs;
    req.nmsgs = 5;
    req.tools = tools;
    req.ntools = 2;
    req.tool_choice = SB_TC_AUTO;
    req.max_tokens = 300;
    req.has_temperature = true;
    req.temperature = 0.3;
    req.has_top_p = true;
    req.top_p = 0.9;
    req.top_k = 40;
    req.stop = stop;
    req.nstop = 2;
    req.has_seed = true;
    req.seed = 11;
    req.has_frequency_penalty = true;
    req.frequency_penalty = 0.1;
    req.has_presence_penalty = true;
    req.presence_penalty = 0.2;
    req.response_format = SB_RF_JSON_SCHEMA;
    req.rf_schema = schema;
    req.stream = true;
    req.reasoning_effort = "high";
    req.user = "dropped";

    struct sb_error err;
    int rc;
    json_t *j = encode(&req, &err, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(path_str(j, "model"), "command-a-03-2025");
    json_t *m = json_object_get(j, "messages");
    assert_int_equal(json_array_size(m), 6);
    assert_string_equal(path_str(m, "0.role"), "system");
    assert_string_equal(path_str(m, "0.content"), "Be brief.");
    assert_string_equal(path_str(m, "1.content.0.text"), "Weather?");
    assert_string_equal(path_str(m, "1.content.1.type"), "image_url");
    assert_string_equal(path_str(m, "1.content.1.image_url.url"), "data:image/jpeg;base64,/9j/");
    assert_string_equal(path_str(m, "1.content.1.image_url.detail"), "high");
    assert_string_equal(path_str(m, "2.role"), "assistant");
    assert_string_equal(path_str(m, "2.tool_plan"), "I will check.");
    assert_null(json_object_get(json_array_get(m, 2), "content"));
    assert_string_equal(path_str(m, "2.tool_calls.0.id"), "call_1");
    assert_string_equal(path_str(m, "2.tool_calls.0.type"), "function");
    assert_string_equal(path_str(m, "2.tool_calls.0.function.arguments"),
                        "{\"location\":\"Toronto\"}");
    assert_string_equal(path_str(m, "3.role"), "tool");
    assert_string_equal(path_str(m, "3.tool_call_id"), "call_1");
    assert_string_equal(path_str(m, "3.content"), "-5C");
    assert_string_equal(path_str(m, "4.role"), "user");
    assert_string_equal(path_str(m, "4.content"), "And tomorrow?");
    assert_string_equal(path_str(m, "5.content.0.text"), "Cold.");
    assert_int_equal(json_array_size(json_object_get(j, "tools")), 2);
    assert_string_equal(path_str(j, "tools.1.function.parameters.type"), "object");
    assert_null(json_object_get(j, "tool_choice")); /* auto: left out */
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 300);
    assert_true(json_is_real(json_object_get(j, "p")));
    assert_int_equal(json_integer_value(json_object_get(j, "k")), 40);
    assert_string_equal(path_str(j, "stop_sequences.1"), "STOP");
    assert_int_equal(json_integer_value(json_object_get(j, "seed")), 11);
    assert_true(json_is_real(json_object_get(j, "frequency_penalty")));
    assert_true(json_is_real(json_object_get(j, "presence_penalty")));
    assert_string_equal(path_str(j, "response_format.type"), "json_object");
    assert_string_equal(path_str(j, "response_format.json_schema.type"), "object");
    assert_true(json_is_true(json_object_get(j, "stream")));
    assert_null(json_object_get(j, "reasoning_effort"));
    assert_null(json_object_get(j, "user"));
    assert_null(json_object_get(j, "top_p"));
    json_decref(j);

    /* a named tool: only that tool, REQUIRED */
    req.tool_choice = SB_TC_NAMED;
    req.tool_choice_name = "other";
    j = encode(&req, &err, &rc);
    assert_int_equal(rc, 0);
    assert_int_equal(json_array_size(json_object_get(j, "tools")), 1);
    assert_string_equal(path_str(j, "tools.0.function.name"), "other");
    assert_string_equal(path_str(j, "tool_choice"), "REQUIRED");
    json_decref(j);
    req.tool_choice_name = "missing";
    j = encode(&req, &err, &rc);
    assert_int_equal(rc, -1);
    assert_string_equal(err.param, "tool_choice");
    req.tool_choice = SB_TC_NONE;
    j = encode(&req, &err, &rc);
    assert_string_equal(path_str(j, "tool_choice"), "NONE");
    json_decref(j);
    req.tool_choice = SB_TC_REQUIRED;
    req.ntools = 0;
    j = encode(&req, &err, &rc);
    assert_int_equal(rc, -1);
    assert_int_equal(err.status, 400);
    req.tool_choice = SB_TC_UNSET;
    req.response_format = SB_RF_TEXT;
    j = encode(&req, &err, &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(path_str(j, "response_format.type"), "text");
    assert_null(json_object_get(j, "tools"));
    json_decref(j);
    json_decref(schema);
}

static void test_encode_refusals(void **state)
{
    (void)state;
    struct sb_part r1[] = {{.type = SB_PART_TEXT, .text = "x"}};
    struct sb_part t[] = {{.type = SB_PART_TOOL_RESULT, .id = "nowhere", .parts = r1, .nparts = 1}};
    struct sb_msg msgs[] = {{.role = SB_ROLE_TOOL, .parts = t, .nparts = 1}};
    struct sb_canon_req req;
    req_init(&req);
    req.msgs = msgs;
    req.nmsgs = 1;
    struct sb_error err;
    int rc;
    json_t *j = encode(&req, &err, &rc);
    assert_null(j);
    assert_int_equal(err.status, 400);
    assert_non_null(strstr(err.message, "messages[0].tool_call_id"));

    struct sb_part d[] = {{.type = SB_PART_DOCUMENT, .media_type = "application/pdf", .data = "J"}};
    msgs[0].role = SB_ROLE_USER;
    msgs[0].parts = d;
    j = encode(&req, &err, &rc);
    assert_int_equal(rc, -1);
    assert_string_equal(err.param, "document");

    struct sb_part txt[] = {{.type = SB_PART_TEXT, .text = "hi"}};
    msgs[0].parts = txt;
    req.n = 2;
    j = encode(&req, &err, &rc);
    assert_int_equal(rc, -1);
    assert_string_equal(err.code, "unsupported_parameter");
    assert_string_equal(err.param, "n");
    assert_string_equal(err.message, "'n' is not supported by Cohere models");
    req.n = 1;
    req.logprobs = true;
    j = encode(&req, &err, &rc);
    assert_int_equal(rc, -1);
    assert_string_equal(err.param, "logprobs");
    req.logprobs = false;

    struct sb_buf out;
    sb_buf_init(&out, 8);
    assert_int_equal(C->encode_request(&req, "m", &out, &err), -1);
    assert_int_equal(err.status, 413);
    sb_buf_free(&out);
}

/* ---- embeddings --------------------------------------------------------------------------- */

static void test_embed(void **state)
{
    (void)state;
    const struct sb_embed_codec *E = &sb_embed_cohere;
    assert_int_equal(E->batch_max, 96);
    char *inputs[] = {"a", "b", "c"};
    struct sb_embed_req req = {.inputs = inputs, .ninputs = 3, .dimensions = -1};
    struct sb_buf out;
    struct sb_error err;
    sb_buf_init(&out, 4096);
    assert_int_equal(E->encode(&req, 1, 3, "embed-v4.0", &out, &err), 0);
    json_t *j = json_loadb(out.data, out.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(path_str(j, "model"), "embed-v4.0");
    assert_int_equal(json_array_size(json_object_get(j, "texts")), 2);
    assert_string_equal(path_str(j, "texts.0"), "b");
    assert_string_equal(path_str(j, "input_type"), "search_document");
    assert_string_equal(path_str(j, "embedding_types.0"), "float");
    assert_null(json_object_get(j, "output_dimension"));
    json_decref(j);

    sb_buf_reset(&out);
    req.dimensions = 256;
    req.input_type = "search_query";
    assert_int_equal(E->encode(&req, 0, 1, "embed-v4.0", &out, &err), 0);
    j = json_loadb(out.data, out.len, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(j, "output_dimension")), 256);
    assert_string_equal(path_str(j, "input_type"), "search_query");
    json_decref(j);
    assert_int_equal(E->encode(&req, 2, 5, "m", &out, &err), -1);
    sb_buf_free(&out);
    sb_buf_init(&out, 8);
    assert_int_equal(E->encode(&req, 0, 3, "m", &out, &err), -1);
    assert_int_equal(err.status, 413);
    sb_buf_free(&out);

    size_t len;
    char *data = payload("embed_float.json", &len);
    struct sb_embed_resp r;
    memset(&r, 0, sizeof r);
    r.input_tokens = -1;
    assert_int_equal(E->decode(data, len, &r), 0);
    assert_int_equal(E->decode(data, len, &r), 0); /* a second batch appends */
    assert_int_equal(r.n, 4);
    assert_int_equal(r.dims[0], 3);
    assert_true(r.vectors[0][0] > 0.0162 && r.vectors[0][0] < 0.0164);
    assert_true(r.vectors[3][2] == -1.0);
    assert_int_equal(r.input_tokens, 4);
    free(data);

    const char *bad[] = {"",
                         "{}",
                         "{\"embeddings\":{\"float\":[[]]}}",
                         "{\"embeddings\":{\"float\":[[1,\"x\"]]}}",
                         "{\"embeddings\":{\"float\":[1]}}",
                         "{\"embeddings\":{\"int8\":[[1]]}}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(E->decode(bad[i], strlen(bad[i]), &r), SB_CANON_E_INVALID);
    assert_int_equal(r.n, 4); /* failures append nothing */
    sb_embed_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_text),     cmocka_unit_test(test_stream_tools),
        cmocka_unit_test(test_stream_thinking), cmocka_unit_test(test_stream_failures),
        cmocka_unit_test(test_responses),       cmocka_unit_test(test_errors),
        cmocka_unit_test(test_encode_request),  cmocka_unit_test(test_encode_refusals),
        cmocka_unit_test(test_embed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Bedrock Converse codec: request encoding (every mapping and refusal), whole responses,
 * ConverseStream frames fed whole and one byte at a time, in-stream exceptions, errors and
 * Titan embeddings. Payloads follow the shapes of the Bedrock API reference. */
#include "canon/bedrock.h"
#include "canon/codecs.h"
#include "canon/eventstream.h"
#include "core/error.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

static char *dup_s(const char *s)
{
    return s ? strdup(s) : NULL;
}

static struct sb_part text_part(const char *t)
{
    struct sb_part p = {0};
    p.type = SB_PART_TEXT;
    p.text = dup_s(t);
    return p;
}

static void req_init(struct sb_canon_req *r)
{
    memset(r, 0, sizeof *r);
    r->max_tokens = -1;
    r->top_k = -1;
    r->n = -1;
    r->top_logprobs = -1;
    r->thinking_budget = -1;
    r->parallel_tool_calls = -1;
    r->rf_strict = -1;
}

static struct sb_msg *add_msg(struct sb_canon_req *r, enum sb_role role)
{
    r->msgs = realloc(r->msgs, (r->nmsgs + 1) * sizeof *r->msgs);
    assert_non_null(r->msgs);
    struct sb_msg *m = &r->msgs[r->nmsgs++];
    memset(m, 0, sizeof *m);
    m->role = role;
    return m;
}

static struct sb_part *add_part(struct sb_msg *m, struct sb_part p)
{
    m->parts = realloc(m->parts, (m->nparts + 1) * sizeof *m->parts);
    assert_non_null(m->parts);
    m->parts[m->nparts] = p;
    return &m->parts[m->nparts++];
}

static void add_tool(struct sb_canon_req *r, const char *name, const char *schema)
{
    r->tools = realloc(r->tools, (r->ntools + 1) * sizeof *r->tools);
    assert_non_null(r->tools);
    struct sb_tool *t = &r->tools[r->ntools++];
    memset(t, 0, sizeof *t);
    t->name = dup_s(name);
    t->description = dup_s("desc");
    t->parameters = schema ? json_loads(schema, 0, NULL) : NULL;
    t->strict = -1;
}

/* Encodes and parses the body; NULL on an encode error (err filled). */
static json_t *encode(const struct sb_canon_req *r, struct sb_error *err)
{
    struct sb_buf out;
    sb_buf_init(&out, 1 << 20);
    memset(err, 0, sizeof *err);
    int rc = sb_codec_bedrock.encode_request(r, "ignored", &out, err);
    json_t *j = NULL;
    if (rc == 0) {
        j = json_loadb(out.data, out.len, 0, NULL);
        assert_non_null(j);
    } else {
        assert_int_equal(rc, -1);
    }
    sb_buf_free(&out);
    return j;
}

static char *dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    assert_non_null(s);
    return s;
}

static void assert_json(json_t *j, const char *want)
{
    json_t *w = json_loads(want, JSON_DECODE_ANY, NULL);
    assert_non_null(w);
    char *a = dump(j), *b = dump(w);
    if (strcmp(a, b) != 0)
        fprintf(stderr, "got  %s\nwant %s\n", a, b);
    assert_string_equal(a, b);
    free(a);
    free(b);
    json_decref(w);
}

/* Event log: one line per event. */
struct log {
    struct sb_buf b;
    int stop_after; /* stop the decoder after this many events (0: never) */
    int n;
};

static int on_ev(void *ud, const struct sb_canon_event *ev)
{
    struct log *l = ud;
    struct sb_buf *b = &l->b;
    int rc = 0;
    switch (ev->type) {
    case SB_EV_START:
        rc = sb_buf_printf(b, "START\n");
        break;
    case SB_EV_BLOCK_START:
        rc = sb_buf_printf(b, "BLOCK %d %d %s %s\n", ev->index, (int)ev->block,
                           ev->id ? ev->id : "-", ev->name ? ev->name : "-");
        break;
    case SB_EV_DELTA:
        rc = sb_buf_printf(b, "DELTA %d [%.*s]\n", ev->index, (int)ev->len, ev->text);
        break;
    case SB_EV_SIGNATURE:
        rc = sb_buf_printf(b, "SIG %d [%.*s]\n", ev->index, (int)ev->len, ev->text);
        break;
    case SB_EV_BLOCK_STOP:
        rc = sb_buf_printf(b, "STOP %d\n", ev->index);
        break;
    case SB_EV_FINISH:
        rc = sb_buf_printf(b, "FINISH %d %s\n", (int)ev->finish,
                           ev->stop_sequence ? ev->stop_sequence : "-");
        break;
    case SB_EV_USAGE:
        rc = sb_buf_printf(b, "USAGE %lld %lld %lld %lld\n", (long long)ev->usage.input,
                           (long long)ev->usage.cache_read, (long long)ev->usage.cache_write,
                           (long long)ev->usage.output);
        break;
    case SB_EV_ERROR:
        rc = sb_buf_printf(b, "ERROR %d %d %s [%s]\n", ev->error->status, (int)ev->error->kind,
                           ev->error->type, ev->error->message);
        break;
    }
    assert_int_equal(rc, 0);
    l->n++;
    return l->stop_after && l->n >= l->stop_after;
}

static void log_init(struct log *l)
{
    memset(l, 0, sizeof *l);
    sb_buf_init(&l->b, 1 << 20);
}

/* ------------------------------------------------------------------ encode */

static void test_encode_conversation(void **state)
{
    (void)state;
    struct sb_canon_req r;
    req_init(&r);
    add_part(add_msg(&r, SB_ROLE_SYSTEM), text_part("Be brief."));
    struct sb_msg *u = add_msg(&r, SB_ROLE_USER);
    add_part(u, text_part("Weather in Paris?"));
    struct sb_part img = {0};
    img.type = SB_PART_IMAGE;
    img.media_type = dup_s("image/png");
    img.data = dup_s("iVBORw0KGgo=");
    add_part(u, img);
    struct sb_part doc = {0};
    doc.type = SB_PART_DOCUMENT;
    doc.media_type = dup_s("application/pdf");
    doc.data = dup_s("JVBERi0=");
    add_part(u, doc);
    add_part(add_msg(&r, SB_ROLE_USER), text_part("Please.")); /* merged into one turn */
    struct sb_msg *a = add_msg(&r, SB_ROLE_ASSISTANT);
    struct sb_part th = {0};
    th.type = SB_PART_THINKING;
    th.text = dup_s("thinking...");
    th.signature = dup_s("sig1");
    add_part(a, th);
    struct sb_part sigonly = {0};
    sigonly.type = SB_PART_THINKING;
    sigonly.text = dup_s("");
    sigonly.signature = dup_s("gemini-sig");
    add_part(a, sigonly); /* dropped */
    struct sb_part red = {0};
    red.type = SB_PART_REDACTED_THINKING;
    red.text = dup_s("b3BhcXVl");
    add_part(a, red);
    add_part(a, text_part("Checking."));
    struct sb_part call = {0};
    call.type = SB_PART_TOOL_CALL;
    call.id = dup_s("call.1:x");
    call.name = dup_s("get_weather");
    call.arguments = dup_s("{\"city\":\"Paris\"}");
    add_part(a, call);
    struct sb_part call2 = {0};
    call2.type = SB_PART_TOOL_CALL;
    call2.id = dup_s("call_2");
    call2.name = dup_s("get_time");
    call2.arguments = dup_s("{not json");
    add_part(a, call2);
    /* OpenAI-style tool messages, then a user text: one user turn, results first */
    struct sb_msg *t1 = add_msg(&r, SB_ROLE_TOOL);
    struct sb_part res = {0};
    res.type = SB_PART_TOOL_RESULT;
    res.id = dup_s("call.1:x");
    res.parts = calloc(1, sizeof *res.parts);
    res.parts[0] = text_part("{\"temp\":21}");
    res.nparts = 1;
    add_part(t1, res);
    struct sb_msg *t2 = add_msg(&r, SB_ROLE_TOOL);
    struct sb_part res2 = {0};
    res2.type = SB_PART_TOOL_RESULT;
    res2.id = dup_s("call_2");
    res2.is_error = true;
    res2.parts = calloc(1, sizeof *res2.parts);
    res2.parts[0] = text_part("clock broken");
    res2.nparts = 1;
    add_part(t2, res2);
    add_part(add_msg(&r, SB_ROLE_USER), text_part("Thanks"));
    add_part(add_msg(&r, SB_ROLE_SYSTEM), text_part("Second system."));
    add_tool(&r, "get_weather",
             "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}");
    add_tool(&r, "get_time", NULL);
    r.tool_choice = SB_TC_AUTO;
    r.max_tokens = 100;
    r.has_temperature = true;
    r.temperature = 1.5; /* clamped */
    r.has_top_p = true;
    r.top_p = 0.5;
    r.stop = calloc(1, sizeof *r.stop);
    r.stop[0] = dup_s("END");
    r.nstop = 1;
    r.has_seed = true; /* dropped */
    r.has_presence_penalty = true;

    struct sb_error err;
    json_t *j = encode(&r, &err);
    assert_non_null(j);
    assert_json(
        j,
        "{\"system\":[{\"text\":\"Be brief.\"},{\"text\":\"Second system.\"}],"
        "\"messages\":["
        "{\"role\":\"user\",\"content\":[{\"text\":\"Weather in Paris?\"},"
        "{\"image\":{\"format\":\"png\",\"source\":{\"bytes\":\"iVBORw0KGgo=\"}}},"
        "{\"document\":{\"format\":\"pdf\",\"name\":\"document-1\",\"source\":{\"bytes\":\"JVBERi0="
        "\"}}},"
        "{\"text\":\"Please.\"}]},"
        "{\"role\":\"assistant\",\"content\":["
        "{\"reasoningContent\":{\"reasoningText\":{\"text\":\"thinking...\",\"signature\":\"sig1\"}"
        "}},"
        "{\"reasoningContent\":{\"redactedContent\":\"b3BhcXVl\"}},"
        "{\"text\":\"Checking.\"},"
        "{\"toolUse\":{\"toolUseId\":\"call_1_x\",\"name\":\"get_weather\",\"input\":{\"city\":"
        "\"Paris\"}}},"
        "{\"toolUse\":{\"toolUseId\":\"call_2\",\"name\":\"get_time\",\"input\":{}}}]},"
        "{\"role\":\"user\",\"content\":["
        "{\"toolResult\":{\"toolUseId\":\"call_1_x\",\"content\":[{\"json\":{\"temp\":21}}]}},"
        "{\"toolResult\":{\"toolUseId\":\"call_2\",\"content\":[{\"text\":\"clock "
        "broken\"}],\"status\":\"error\"}},"
        "{\"text\":\"Thanks\"}]}],"
        "\"inferenceConfig\":{\"maxTokens\":100,\"temperature\":1.0,\"topP\":0.5,\"stopSequences\":"
        "[\"END\"]},"
        "\"toolConfig\":{\"tools\":["
        "{\"toolSpec\":{\"name\":\"get_weather\",\"description\":\"desc\",\"inputSchema\":{"
        "\"json\":"
        "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}},"
        "{\"toolSpec\":{\"name\":\"get_time\",\"description\":\"desc\",\"inputSchema\":{\"json\":"
        "{\"type\":\"object\",\"properties\":{}}}}}],"
        "\"toolChoice\":{\"auto\":{}}}}");
    json_decref(j);
    sb_canon_req_free(&r);
}

static void test_encode_tool_choice(void **state)
{
    (void)state;
    struct sb_canon_req r;
    req_init(&r);
    add_part(add_msg(&r, SB_ROLE_USER), text_part("hi"));
    add_tool(&r, "f", NULL);
    struct sb_error err;
    json_t *j;

    r.tool_choice = SB_TC_REQUIRED;
    j = encode(&r, &err);
    assert_json(json_object_get(json_object_get(j, "toolConfig"), "toolChoice"), "{\"any\":{}}");
    json_decref(j);

    r.tool_choice = SB_TC_NAMED;
    r.tool_choice_name = dup_s("f");
    j = encode(&r, &err);
    assert_json(json_object_get(json_object_get(j, "toolConfig"), "toolChoice"),
                "{\"tool\":{\"name\":\"f\"}}");
    json_decref(j);

    r.tool_choice = SB_TC_UNSET;
    j = encode(&r, &err);
    assert_non_null(json_object_get(j, "toolConfig"));
    assert_null(json_object_get(json_object_get(j, "toolConfig"), "toolChoice"));
    json_decref(j);

    /* none without tool history: no tools at all */
    r.tool_choice = SB_TC_NONE;
    j = encode(&r, &err);
    assert_null(json_object_get(j, "toolConfig"));
    json_decref(j);

    /* none with tool use in the history: tools kept (Bedrock requires them), no choice */
    struct sb_msg *a = add_msg(&r, SB_ROLE_ASSISTANT);
    struct sb_part call = {0};
    call.type = SB_PART_TOOL_CALL;
    call.id = dup_s("t1");
    call.name = dup_s("f");
    call.arguments = dup_s("");
    add_part(a, call);
    struct sb_part res = {0};
    res.type = SB_PART_TOOL_RESULT;
    res.id = dup_s("t1");
    add_part(add_msg(&r, SB_ROLE_TOOL), res);
    j = encode(&r, &err);
    json_t *tc = json_object_get(j, "toolConfig");
    assert_non_null(tc);
    assert_null(json_object_get(tc, "toolChoice"));
    /* empty arguments -> {}, a result without content -> one empty text */
    json_t *msgs = json_object_get(j, "messages");
    assert_json(json_array_get(msgs, 1),
                "{\"role\":\"assistant\",\"content\":[{\"toolUse\":{\"toolUseId\":\"t1\","
                "\"name\":\"f\",\"input\":{}}}]}");
    assert_json(json_array_get(msgs, 2),
                "{\"role\":\"user\",\"content\":[{\"toolResult\":{\"toolUseId\":\"t1\","
                "\"content\":[{\"text\":\"\"}]}}]}");
    json_decref(j);

    /* a named choice without a name */
    free(r.tool_choice_name);
    r.tool_choice_name = NULL;
    r.tool_choice = SB_TC_NAMED;
    assert_null(encode(&r, &err));
    assert_int_equal(err.status, 400);
    assert_string_equal(err.param, "tool_choice");
    sb_canon_req_free(&r);
}

static void test_encode_thinking_and_extras(void **state)
{
    (void)state;
    struct sb_canon_req r;
    req_init(&r);
    add_part(add_msg(&r, SB_ROLE_USER), text_part("hi"));
    struct sb_error err;

    /* defaults: maxTokens, nothing else */
    json_t *j = encode(&r, &err);
    assert_json(j, "{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"hi\"}]}],"
                   "\"inferenceConfig\":{\"maxTokens\":4096}}");
    json_decref(j);

    r.thinking_budget = 2000;
    r.top_k = 40;
    j = encode(&r, &err);
    assert_json(json_object_get(j, "additionalModelRequestFields"),
                "{\"top_k\":40,\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":2000}}");
    assert_json(json_object_get(j, "inferenceConfig"), "{\"maxTokens\":6096}");
    json_decref(j);

    /* max_tokens above the budget is kept; at or below it is raised */
    r.max_tokens = 3000;
    j = encode(&r, &err);
    assert_json(json_object_get(j, "inferenceConfig"), "{\"maxTokens\":3000}");
    json_decref(j);
    r.max_tokens = 2000;
    j = encode(&r, &err);
    assert_json(json_object_get(j, "inferenceConfig"), "{\"maxTokens\":6096}");
    json_decref(j);

    /* reasoning_effort -> budget; "none" -> no thinking */
    r.thinking_budget = -1;
    r.max_tokens = -1;
    r.top_k = -1;
    r.reasoning_effort = dup_s("high");
    j = encode(&r, &err);
    assert_json(json_object_get(j, "additionalModelRequestFields"),
                "{\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":4096}}");
    json_decref(j);
    free(r.reasoning_effort);
    r.reasoning_effort = dup_s("none");
    j = encode(&r, &err);
    assert_null(json_object_get(j, "additionalModelRequestFields"));
    json_decref(j);

    /* cache_control -> cachePoint after the block */
    r.msgs[0].parts[0].cache_control = json_pack("{s:s}", "type", "ephemeral");
    j = encode(&r, &err);
    assert_json(json_object_get(json_array_get(json_object_get(j, "messages"), 0), "content"),
                "[{\"text\":\"hi\"},{\"cachePoint\":{\"type\":\"default\"}}]");
    json_decref(j);
    sb_canon_req_free(&r);
}

static void test_encode_refusals(void **state)
{
    (void)state;
    struct sb_canon_req r;
    struct sb_error err;

    req_init(&r);
    add_part(add_msg(&r, SB_ROLE_USER), text_part("hi"));
    r.n = 2;
    assert_null(encode(&r, &err));
    assert_int_equal(err.status, 400);
    assert_string_equal(err.code, "unsupported_parameter");
    assert_string_equal(err.param, "n");
    assert_string_equal(err.message, "'n' is not supported by bedrock models");
    r.n = 1;
    r.logprobs = true;
    assert_null(encode(&r, &err));
    assert_string_equal(err.param, "logprobs");
    r.logprobs = false;
    r.top_logprobs = 3; /* without logprobs: dropped */
    json_t *j = encode(&r, &err);
    assert_non_null(j);
    json_decref(j);
    sb_canon_req_free(&r);

    /* image by URL */
    req_init(&r);
    struct sb_part img = {0};
    img.type = SB_PART_IMAGE;
    img.url = dup_s("https://example.com/cat.png");
    add_part(add_msg(&r, SB_ROLE_USER), img);
    assert_null(encode(&r, &err));
    assert_int_equal(err.status, 400);
    assert_string_equal(err.param, "messages");
    assert_non_null(strstr(err.message, "image URLs"));
    assert_non_null(strstr(err.message, "messages[0]"));
    sb_canon_req_free(&r);

    /* image type Bedrock lacks; document type it lacks; document by URL */
    req_init(&r);
    struct sb_part bmp = {0};
    bmp.type = SB_PART_IMAGE;
    bmp.media_type = dup_s("image/bmp");
    bmp.data = dup_s("Qk0=");
    add_part(add_msg(&r, SB_ROLE_USER), bmp);
    assert_null(encode(&r, &err));
    assert_non_null(strstr(err.message, "png, jpeg, gif, webp"));
    sb_canon_req_free(&r);
    req_init(&r);
    struct sb_part zip = {0};
    zip.type = SB_PART_DOCUMENT;
    zip.media_type = dup_s("application/zip");
    zip.data = dup_s("UEs=");
    add_part(add_msg(&r, SB_ROLE_USER), zip);
    assert_null(encode(&r, &err));
    assert_int_equal(err.status, 400);
    sb_canon_req_free(&r);
    req_init(&r);
    struct sb_part durl = {0};
    durl.type = SB_PART_DOCUMENT;
    durl.url = dup_s("https://example.com/a.pdf");
    add_part(add_msg(&r, SB_ROLE_USER), durl);
    assert_null(encode(&r, &err));
    assert_non_null(strstr(err.message, "document URLs"));
    sb_canon_req_free(&r);

    /* the conversation must start with the user; and must have a message */
    req_init(&r);
    add_part(add_msg(&r, SB_ROLE_SYSTEM), text_part("sys"));
    assert_null(encode(&r, &err));
    assert_string_equal(err.param, "messages");
    add_part(add_msg(&r, SB_ROLE_ASSISTANT), text_part("I start"));
    add_part(add_msg(&r, SB_ROLE_USER), text_part("then you"));
    assert_null(encode(&r, &err));
    assert_non_null(strstr(err.message, "start with a user message"));
    sb_canon_req_free(&r);

    /* the output cap */
    req_init(&r);
    add_part(add_msg(&r, SB_ROLE_USER), text_part("a long enough message"));
    struct sb_buf small;
    sb_buf_init(&small, 16);
    assert_int_equal(sb_codec_bedrock.encode_request(&r, NULL, &small, &err), -1);
    assert_int_equal(err.status, 413);
    sb_buf_free(&small);
    sb_canon_req_free(&r);
}

static void test_encode_empty_turns_merge(void **state)
{
    (void)state;
    /* an assistant turn holding only a signature-only thinking part vanishes, and the user
     * turns around it merge */
    struct sb_canon_req r;
    req_init(&r);
    add_part(add_msg(&r, SB_ROLE_USER), text_part("a"));
    struct sb_part th = {0};
    th.type = SB_PART_THINKING;
    th.signature = dup_s("s");
    add_part(add_msg(&r, SB_ROLE_ASSISTANT), th);
    add_part(add_msg(&r, SB_ROLE_USER), text_part(""));
    add_part(add_msg(&r, SB_ROLE_USER), text_part("b"));
    struct sb_error err;
    json_t *j = encode(&r, &err);
    assert_json(json_object_get(j, "messages"),
                "[{\"role\":\"user\",\"content\":[{\"text\":\"a\"},{\"text\":\"b\"}]}]");
    json_decref(j);
    sb_canon_req_free(&r);
}

/* ------------------------------------------------------------------ responses */

static char *decode_log(const char *body, int *rc)
{
    struct log l;
    log_init(&l);
    *rc = sb_codec_bedrock.decode_response(body, strlen(body), on_ev, &l);
    char *s = strdup(l.b.data ? l.b.data : "");
    sb_buf_free(&l.b);
    return s;
}

static void test_decode_response(void **state)
{
    (void)state;
    int rc;
    char *s =
        decode_log("{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":["
                   "{\"reasoningContent\":{\"reasoningText\":{\"text\":\"Let me "
                   "think\",\"signature\":\"EqoB\"}}},"
                   "{\"reasoningContent\":{\"redactedContent\":\"cmVk\"}},"
                   "{\"text\":\"Checking.\"},{\"image\":{}},"
                   "{\"toolUse\":{\"toolUseId\":\"tooluse_1\",\"name\":\"get_weather\",\"input\":{"
                   "\"city\":\"Paris\"}}}]}},"
                   "\"stopReason\":\"tool_use\",\"usage\":{\"inputTokens\":300,\"outputTokens\":40,"
                   "\"totalTokens\":340,\"cacheReadInputTokens\":100,\"cacheWriteInputTokens\":20},"
                   "\"metrics\":{\"latencyMs\":412}}",
                   &rc);
    assert_int_equal(rc, 0);
    assert_string_equal(s,
                        "START\n"
                        "BLOCK 0 1 - -\nDELTA 0 [Let me think]\nSIG 0 [EqoB]\nSTOP 0\n"
                        "BLOCK 1 2 - -\nDELTA 1 [cmVk]\nSTOP 1\n"
                        "BLOCK 2 0 - -\nDELTA 2 [Checking.]\nSTOP 2\n"
                        "BLOCK 3 3 tooluse_1 get_weather\nDELTA 3 [{\"city\":\"Paris\"}]\nSTOP 3\n"
                        "FINISH 4 -\nUSAGE 300 100 20 40\n");
    free(s);

    /* the aggregator takes the events as they come */
    const char *body =
        "{\"output\":{\"message\":{\"content\":[{\"text\":\"Hi\"}]}},"
        "\"stopReason\":\"stop_sequence\",\"additionalModelResponseFields\":"
        "{\"stop_sequence\":\"###\"},\"usage\":{\"inputTokens\":5,\"outputTokens\":9}}";
    struct sb_canon_resp resp;
    sb_canon_resp_init(&resp, 1 << 16);
    assert_int_equal(
        sb_codec_bedrock.decode_response(body, strlen(body), sb_canon_resp_event, &resp), 0);
    assert_int_equal(resp.nblocks, 1);
    assert_string_equal(resp.blocks[0].text.data, "Hi");
    assert_int_equal(resp.finish, SB_FINISH_STOP_SEQUENCE);
    assert_string_equal(resp.stop_sequence, "###");
    assert_int_equal(resp.usage.input, 5);
    assert_int_equal(resp.usage.output, 9);
    assert_int_equal(resp.usage.cache_read, -1);
    sb_canon_resp_free(&resp);

    /* every stop reason */
    static const struct {
        const char *r;
        enum sb_finish f;
    } map[] = {
        {"end_turn", SB_FINISH_STOP},
        {"stop_sequence", SB_FINISH_STOP_SEQUENCE},
        {"max_tokens", SB_FINISH_LENGTH},
        {"tool_use", SB_FINISH_TOOL_CALLS},
        {"guardrail_intervened", SB_FINISH_CONTENT_FILTER},
        {"content_filtered", SB_FINISH_CONTENT_FILTER},
        {"model_context_window_exceeded", SB_FINISH_CONTEXT_WINDOW},
        {"malformed_tool_use", SB_FINISH_ERROR},
        {"something_new", SB_FINISH_STOP},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        char b[256];
        snprintf(b, sizeof b, "{\"output\":{\"message\":{\"content\":[]}},\"stopReason\":\"%s\"}",
                 map[i].r);
        s = decode_log(b, &rc);
        assert_int_equal(rc, 0);
        char want[64];
        snprintf(want, sizeof want, "FINISH %d -", (int)map[i].f);
        assert_non_null(strstr(s, want));
        free(s);
    }

    /* not a Converse response */
    s = decode_log("{\"message\":\"x\"}", &rc);
    assert_int_equal(rc, SB_CANON_E_INVALID);
    free(s);
    s = decode_log("not json", &rc);
    assert_int_equal(rc, SB_CANON_E_INVALID);
    free(s);
    s = decode_log("{\"output\":{\"message\":{\"content\":[{\"toolUse\":{\"name\":\"f\"}}]}}}",
                   &rc);
    assert_int_equal(rc, SB_CANON_E_INVALID);
    free(s);
    /* the callback stops the decoder */
    struct log l;
    log_init(&l);
    l.stop_after = 2;
    body =
        "{\"output\":{\"message\":{\"content\":[{\"text\":\"Hi\"}]}},\"stopReason\":\"end_turn\"}";
    assert_int_equal(sb_codec_bedrock.decode_response(body, strlen(body), on_ev, &l),
                     SB_CANON_E_STOP);
    sb_buf_free(&l.b);
}

/* ------------------------------------------------------------------ streams */

static void frame(struct sb_buf *b, const char *event_type, const char *payload)
{
    const char *n[] = {":event-type", ":content-type", ":message-type"};
    const char *v[] = {event_type, "application/json", "event"};
    assert_int_equal(sb_evstream_encode(b, n, v, 3, payload, strlen(payload)), 0);
}

static void exception_frame(struct sb_buf *b, const char *type, const char *payload)
{
    const char *n[] = {":exception-type", ":content-type", ":message-type"};
    const char *v[] = {type, "application/json", "exception"};
    assert_int_equal(sb_evstream_encode(b, n, v, 3, payload, strlen(payload)), 0);
}

/* Runs the stream decoder over `b` whole (bytewise=false) or one byte at a time. Returns the
 * feed result, and the end result in *end (1 if end was not called). */
static char *run_stream(const struct sb_buf *b, bool bytewise, size_t max, int *feed_rc,
                        int *end_rc)
{
    struct log l;
    log_init(&l);
    void *st = sb_codec_bedrock.stream_new(max);
    assert_non_null(st);
    int rc = 0;
    if (bytewise) {
        for (size_t i = 0; i < b->len && !rc; i++)
            rc = sb_codec_bedrock.stream_feed(st, b->data + i, 1, on_ev, &l);
    } else {
        rc = sb_codec_bedrock.stream_feed(st, b->data, b->len, on_ev, &l);
    }
    *feed_rc = rc;
    *end_rc = rc ? 1 : sb_codec_bedrock.stream_end(st, on_ev, &l);
    sb_codec_bedrock.stream_free(st);
    char *s = strdup(l.b.data ? l.b.data : "");
    sb_buf_free(&l.b);
    return s;
}

static void expect_stream(const struct sb_buf *b, const char *want, int want_feed, int want_end)
{
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        int f, e;
        char *s = run_stream(b, bytewise, 1 << 16, &f, &e);
        if (strcmp(s, want) != 0)
            fprintf(stderr, "got:\n%s\nwant:\n%s\n", s, want);
        assert_string_equal(s, want);
        assert_int_equal(f, want_feed);
        assert_int_equal(e, want_end);
        free(s);
    }
}

static void test_stream_text_tool(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 1 << 16);
    frame(&b, "messageStart", "{\"role\":\"assistant\",\"p\":\"abcdefgh\"}");
    frame(&b, "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Let me\"}}");
    frame(&b, "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\" check.\"}}");
    frame(&b, "contentBlockStop", "{\"contentBlockIndex\":0}");
    frame(&b, "contentBlockStart",
          "{\"contentBlockIndex\":1,\"start\":{\"toolUse\":{\"toolUseId\":\"tooluse_abc\","
          "\"name\":\"get_weather\"}}}");
    frame(&b, "contentBlockDelta",
          "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":{\"input\":\"\"}}}");
    frame(&b, "contentBlockDelta",
          "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":{\"input\":\"{\\\"city\\\":\"}}}");
    frame(&b, "contentBlockDelta",
          "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":{\"input\":\"\\\"Paris\\\"}\"}}}");
    frame(&b, "contentBlockStop", "{\"contentBlockIndex\":1}");
    frame(&b, "messageStop", "{\"stopReason\":\"tool_use\"}");
    frame(
        &b, "metadata",
        "{\"usage\":{\"inputTokens\":100,\"outputTokens\":20,\"totalTokens\":120,"
        "\"cacheReadInputTokens\":50,\"cacheWriteInputTokens\":7},\"metrics\":{\"latencyMs\":9}}");
    expect_stream(&b,
                  "START\nBLOCK 0 0 - -\nDELTA 0 [Let me]\nDELTA 0 [ check.]\nSTOP 0\n"
                  "BLOCK 1 3 tooluse_abc get_weather\nDELTA 1 []\nDELTA 1 [{\"city\":]\n"
                  "DELTA 1 [\"Paris\"}]\nSTOP 1\nFINISH 4 -\nUSAGE 100 50 7 20\n",
                  0, 0);
    /* frames after the end are ignored */
    frame(&b, "contentBlockDelta", "{\"contentBlockIndex\":5,\"delta\":{\"text\":\"late\"}}");
    int f, e;
    char *s = run_stream(&b, false, 1 << 16, &f, &e);
    assert_null(strstr(s, "late"));
    assert_int_equal(f, 0);
    assert_int_equal(e, 0);
    free(s);
    sb_buf_free(&b);
}

static void test_stream_reasoning(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 1 << 16);
    frame(&b, "messageStart", "{\"role\":\"assistant\"}");
    frame(&b, "contentBlockDelta",
          "{\"contentBlockIndex\":0,\"delta\":{\"reasoningContent\":{\"text\":\"Think\"}}}");
    frame(&b, "contentBlockDelta",
          "{\"contentBlockIndex\":0,\"delta\":{\"reasoningContent\":{\"text\":\"ing\"}}}");
    frame(&b, "contentBlockDelta",
          "{\"contentBlockIndex\":0,\"delta\":{\"reasoningContent\":{\"signature\":\"sig==\"}}}");
    frame(&b, "contentBlockStop", "{\"contentBlockIndex\":0}");
    frame(&b, "contentBlockDelta",
          "{\"contentBlockIndex\":1,\"delta\":{\"reasoningContent\":{\"redactedContent\":\"cmVk\"}}"
          "}");
    /* no stop for block 1: the text of block 2 closes it */
    frame(&b, "contentBlockDelta", "{\"contentBlockIndex\":2,\"delta\":{\"text\":\"42\"}}");
    frame(&b, "contentBlockDelta", "{\"contentBlockIndex\":2,\"delta\":{\"citation\":{}}}");
    frame(&b, "contentBlockStop", "{\"contentBlockIndex\":2}");
    frame(&b, "contentBlockStop", "{\"contentBlockIndex\":3}"); /* nothing open: ignored */
    frame(&b, "messageStop", "{\"stopReason\":\"max_tokens\"}");
    frame(&b, "metadata", "{\"usage\":{\"inputTokens\":1,\"outputTokens\":2}}");
    expect_stream(&b,
                  "START\nBLOCK 0 1 - -\nDELTA 0 [Think]\nDELTA 0 [ing]\nSIG 0 [sig==]\nSTOP 0\n"
                  "BLOCK 1 2 - -\nDELTA 1 [cmVk]\nSTOP 1\nBLOCK 2 0 - -\nDELTA 2 [42]\nSTOP 2\n"
                  "FINISH 3 -\nUSAGE 1 -1 -1 2\n",
                  0, 0);
    sb_buf_free(&b);
}

static void test_stream_endings(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 1 << 16);
    /* messageStop without metadata: FINISH at the end, no usage */
    frame(&b, "messageStart", "{\"role\":\"assistant\"}");
    frame(&b, "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"x\"}}");
    frame(&b, "messageStop",
          "{\"stopReason\":\"stop_sequence\",\"additionalModelResponseFields\":"
          "{\"stop_sequence\":\"END\"}}");
    expect_stream(&b, "START\nBLOCK 0 0 - -\nDELTA 0 [x]\nSTOP 0\nFINISH 2 END\n", 0, 0);

    /* cut before messageStop */
    sb_buf_reset(&b);
    frame(&b, "messageStart", "{\"role\":\"assistant\"}");
    frame(&b, "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"part\"}}");
    expect_stream(&b, "START\nBLOCK 0 0 - -\nDELTA 0 [part]\n", 0, SB_CANON_E_CUT);
    /* an empty body is cut too */
    sb_buf_reset(&b);
    expect_stream(&b, "", 0, SB_CANON_E_CUT);

    /* metadata before messageStop: held until it */
    sb_buf_reset(&b);
    frame(&b, "messageStart", "{\"role\":\"assistant\"}");
    frame(&b, "metadata", "{\"usage\":{\"inputTokens\":3,\"outputTokens\":4}}");
    frame(&b, "messageStop", "{\"stopReason\":\"end_turn\"}");
    expect_stream(&b, "START\nFINISH 1 -\nUSAGE 3 -1 -1 4\n", 0, 0);
    sb_buf_free(&b);
}

static void test_stream_exceptions(void **state)
{
    (void)state;
    static const struct {
        const char *type;
        int status;
        enum sb_err_kind kind;
    } cases[] = {
        {"throttlingException", 429, SB_ERRK_RATE_LIMIT},
        {"modelStreamErrorException", 424, SB_ERRK_SERVER},
        {"validationException", 400, SB_ERRK_INVALID_REQUEST},
        {"internalServerException", 500, SB_ERRK_SERVER},
        {"serviceUnavailableException", 503, SB_ERRK_OVERLOADED},
        {"modelTimeoutException", 408, SB_ERRK_TIMEOUT},
        {"somethingElse", 500, SB_ERRK_SERVER},
    };
    struct sb_buf b;
    sb_buf_init(&b, 1 << 16);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sb_buf_reset(&b);
        frame(&b, "messageStart", "{\"role\":\"assistant\"}");
        frame(&b, "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"Hi\"}}");
        exception_frame(&b, cases[i].type, "{\"message\":\"went wrong\"}");
        frame(&b, "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"no\"}}");
        char want[256];
        snprintf(want, sizeof want,
                 "START\nBLOCK 0 0 - -\nDELTA 0 [Hi]\nERROR %d %d %s [went wrong]\n",
                 cases[i].status, (int)cases[i].kind, cases[i].type);
        expect_stream(&b, want, 0, 0);
    }
    /* the context-window wording in a validation exception */
    sb_buf_reset(&b);
    exception_frame(&b, "validationException",
                    "{\"message\":\"Input is too long for requested model.\"}");
    char want[256];
    snprintf(want, sizeof want,
             "ERROR 400 %d validationException [Input is too long for requested model.]\n",
             (int)SB_ERRK_CONTEXT_WINDOW);
    expect_stream(&b, want, 0, 0);
    sb_buf_free(&b);
}

static void test_stream_invalid(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 1 << 16);
    int f, e;
    char *s;

    /* a tool input delta with no tool block open */
    frame(&b, "messageStart", "{}");
    frame(&b, "contentBlockDelta",
          "{\"contentBlockIndex\":0,\"delta\":{\"toolUse\":{\"input\":\"{}\"}}}");
    expect_stream(&b, "START\n", SB_CANON_E_INVALID, 1);
    /* a payload that is not JSON */
    sb_buf_reset(&b);
    frame(&b, "messageStart", "nope");
    expect_stream(&b, "", SB_CANON_E_INVALID, 1);
    /* missing contentBlockIndex */
    sb_buf_reset(&b);
    frame(&b, "contentBlockDelta", "{\"delta\":{\"text\":\"x\"}}");
    expect_stream(&b, "START\n", SB_CANON_E_INVALID, 1);
    /* content after messageStop */
    sb_buf_reset(&b);
    frame(&b, "messageStop", "{\"stopReason\":\"end_turn\"}");
    frame(&b, "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"x\"}}");
    expect_stream(&b, "START\n", SB_CANON_E_INVALID, 1);
    /* a broken frame CRC */
    sb_buf_reset(&b);
    frame(&b, "messageStart", "{}");
    b.data[b.len - 1] ^= 1;
    expect_stream(&b, "", SB_CANON_E_INVALID, 1);
    /* a frame over the bound */
    sb_buf_reset(&b);
    frame(&b, "messageStart", "{}");
    s = run_stream(&b, false, 20, &f, &e);
    assert_int_equal(f, -E2BIG);
    free(s);
    /* unknown events and message types are ignored */
    sb_buf_reset(&b);
    frame(&b, "messageStart", "{}");
    frame(&b, "somethingNew", "{}");
    const char *n[] = {":message-type", ":event-type"}, *v[] = {"ping", "x"};
    assert_int_equal(sb_evstream_encode(&b, n, v, 2, "garbage", 7), 0);
    frame(&b, "messageStop", "{\"stopReason\":\"end_turn\"}");
    expect_stream(&b, "START\nFINISH 1 -\n", 0, 0);
    /* the callback stops the decoder */
    sb_buf_reset(&b);
    frame(&b, "messageStart", "{}");
    struct log l;
    log_init(&l);
    l.stop_after = 1;
    void *st = sb_codec_bedrock.stream_new(1 << 16);
    assert_int_equal(sb_codec_bedrock.stream_feed(st, b.data, b.len, on_ev, &l), SB_CANON_E_STOP);
    sb_codec_bedrock.stream_free(st);
    sb_buf_free(&l.b);
    sb_buf_free(&b);
}

/* ------------------------------------------------------------------ errors */

static void decode_err(int status, const char *body, struct sb_canon_error *e)
{
    memset(e, 0x33, sizeof *e);
    assert_int_equal(sb_codec_bedrock.decode_error(status, body, body ? strlen(body) : 0, e), 0);
}

static void test_errors(void **state)
{
    (void)state;
    struct sb_canon_error e;
    decode_err(400, "{\"message\":\"Malformed input request, please reformat.\"}", &e);
    assert_int_equal(e.status, 400);
    assert_int_equal(e.kind, SB_ERRK_INVALID_REQUEST);
    assert_string_equal(e.message, "Malformed input request, please reformat.");
    assert_string_equal(e.type, "");
    sb_bedrock_error_type(
        &e, "ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/");
    assert_string_equal(e.type, "ValidationException");
    assert_int_equal(e.kind, SB_ERRK_INVALID_REQUEST);
    assert_int_equal(e.status, 400);

    decode_err(400, "{\"message\":\"Input is too long for requested model.\"}", &e);
    assert_int_equal(e.kind, SB_ERRK_CONTEXT_WINDOW);
    decode_err(400, "{\"Message\":\"prompt is too long: 210000 tokens > 200000 maximum\"}", &e);
    assert_int_equal(e.kind, SB_ERRK_CONTEXT_WINDOW);

    decode_err(403, "{\"message\":\"The security token included in the request is invalid.\"}", &e);
    assert_int_equal(e.kind, SB_ERRK_AUTH);
    assert_int_equal(e.status, 403);
    decode_err(403,
               "{\"message\":\"You don't have access to the model with the specified model ID.\"}",
               &e);
    assert_int_equal(e.kind, SB_ERRK_PERMISSION);
    decode_err(403,
               "{\"Message\":\"User: arn:aws:iam::1:user/x is not authorized to perform: "
               "bedrock:InvokeModel\"}",
               &e);
    assert_int_equal(e.kind, SB_ERRK_PERMISSION);
    decode_err(403, "", &e);
    assert_int_equal(e.kind, SB_ERRK_AUTH);
    sb_bedrock_error_type(&e, "AccessDeniedException");
    assert_int_equal(e.kind, SB_ERRK_PERMISSION);

    decode_err(404, "{\"message\":\"Model not found\"}", &e);
    assert_int_equal(e.kind, SB_ERRK_NOT_FOUND);
    decode_err(408, "{\"message\":\"Model has timed out\"}", &e);
    assert_int_equal(e.kind, SB_ERRK_TIMEOUT);
    decode_err(424, "{\"message\":\"Model error\"}", &e);
    assert_int_equal(e.kind, SB_ERRK_SERVER);
    decode_err(429, "{\"message\":\"Too many requests, please wait before trying again.\"}", &e);
    assert_int_equal(e.kind, SB_ERRK_RATE_LIMIT);
    decode_err(500, "{\"message\":\"Internal\"}", &e);
    assert_int_equal(e.kind, SB_ERRK_SERVER);
    decode_err(503, "{\"message\":\"Service unavailable\"}", &e);
    assert_int_equal(e.kind, SB_ERRK_OVERLOADED);

    /* not JSON, empty */
    decode_err(502, "<html>bad gateway</html>", &e);
    assert_int_equal(e.kind, SB_ERRK_SERVER);
    assert_string_equal(e.message, "bedrock returned HTTP 502");
    decode_err(500, NULL, &e);
    assert_string_equal(e.message, "bedrock returned HTTP 500");
    assert_int_equal(e.retry_after_ms, -1);

    /* the body's __type */
    decode_err(400,
               "{\"__type\":\"com.amazon.coral.service#ThrottlingException\","
               "\"message\":\"slow down\"}",
               &e);
    assert_string_equal(e.type, "ThrottlingException");
    assert_int_equal(e.kind, SB_ERRK_RATE_LIMIT);

    /* header names */
    static const struct {
        const char *h;
        enum sb_err_kind k;
    } hs[] = {
        {"ThrottlingException", SB_ERRK_RATE_LIMIT},
        {"ServiceQuotaExceededException", SB_ERRK_RATE_LIMIT},
        {"ModelNotReadyException", SB_ERRK_OVERLOADED},
        {"ModelTimeoutException", SB_ERRK_TIMEOUT},
        {"ModelErrorException", SB_ERRK_SERVER},
        {"ResourceNotFoundException", SB_ERRK_NOT_FOUND},
        {"UnrecognizedClientException", SB_ERRK_AUTH},
        {"ExpiredTokenException", SB_ERRK_AUTH},
        {"InternalServerException", SB_ERRK_SERVER},
        {"ServiceUnavailableException", SB_ERRK_OVERLOADED},
    };
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++) {
        decode_err(400, "{\"message\":\"m\"}", &e);
        sb_bedrock_error_type(&e, hs[i].h);
        assert_int_equal(e.kind, hs[i].k);
        assert_string_equal(e.type, hs[i].h);
        assert_int_equal(e.status, 400);
    }
    /* unknown: type kept, kind unchanged; NULL: nothing */
    decode_err(429, "{}", &e);
    sb_bedrock_error_type(&e, "NewException:x");
    assert_string_equal(e.type, "NewException");
    assert_int_equal(e.kind, SB_ERRK_RATE_LIMIT);
    sb_bedrock_error_type(&e, NULL);
    assert_string_equal(e.type, "NewException");
    /* a long header value is bounded */
    char longh[200];
    memset(longh, 'X', sizeof longh - 1);
    longh[sizeof longh - 1] = '\0';
    sb_bedrock_error_type(&e, longh);
    assert_int_equal(strlen(e.type), sizeof e.type - 1);
}

/* ------------------------------------------------------------------ embeddings */

static void test_embeddings(void **state)
{
    (void)state;
    assert_int_equal(sb_embed_bedrock.batch_max, 1);
    struct sb_embed_req r = {0};
    char *inputs[] = {"hello", "world"};
    r.inputs = inputs;
    r.ninputs = 2;
    r.dimensions = -1;
    struct sb_buf out;
    sb_buf_init(&out, 4096);
    struct sb_error err;
    assert_int_equal(sb_embed_bedrock.encode(&r, 1, 2, "amazon.titan-embed-text-v2:0", &out, &err),
                     0);
    json_t *j = json_loadb(out.data, out.len, 0, NULL);
    assert_json(j, "{\"inputText\":\"world\",\"normalize\":true}");
    json_decref(j);
    sb_buf_reset(&out);
    r.dimensions = 256;
    assert_int_equal(sb_embed_bedrock.encode(&r, 0, 1, NULL, &out, &err), 0);
    j = json_loadb(out.data, out.len, 0, NULL);
    assert_json(j, "{\"inputText\":\"hello\",\"dimensions\":256,\"normalize\":true}");
    json_decref(j);
    sb_buf_reset(&out);
    assert_int_equal(sb_embed_bedrock.encode(&r, 0, 2, NULL, &out, &err), -1);
    assert_int_equal(err.status, 400);
    sb_buf_free(&out);
    sb_buf_init(&out, 8);
    assert_int_equal(sb_embed_bedrock.encode(&r, 0, 1, NULL, &out, &err), -1);
    assert_int_equal(err.status, 413);
    sb_buf_free(&out);

    struct sb_embed_resp resp = {0};
    resp.input_tokens = -1;
    const char *b1 = "{\"embedding\":[0.5,-1,2.25],\"inputTextTokenCount\":3}";
    const char *b2 = "{\"embedding\":[1e-3],\"inputTextTokenCount\":4,\"embeddingsByType\":{}}";
    assert_int_equal(sb_embed_bedrock.decode(b1, strlen(b1), &resp), 0);
    assert_int_equal(sb_embed_bedrock.decode(b2, strlen(b2), &resp), 0);
    assert_int_equal(resp.n, 2);
    assert_int_equal(resp.dims[0], 3);
    assert_int_equal(resp.dims[1], 1);
    assert_true(resp.vectors[0][1] == -1.0);
    assert_true(resp.vectors[0][2] == 2.25);
    assert_true(resp.vectors[1][0] == 1e-3);
    assert_int_equal(resp.input_tokens, 7);
    const char *bad[] = {"{\"embedding\":[1,\"x\"]}", "{\"embedding\":[]}", "{}", "[]", "nope"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sb_embed_bedrock.decode(bad[i], strlen(bad[i]), &resp),
                         SB_CANON_E_INVALID);
    assert_int_equal(resp.n, 2);
    sb_embed_resp_free(&resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_encode_conversation),
        cmocka_unit_test(test_encode_tool_choice),
        cmocka_unit_test(test_encode_thinking_and_extras),
        cmocka_unit_test(test_encode_refusals),
        cmocka_unit_test(test_encode_empty_turns_merge),
        cmocka_unit_test(test_decode_response),
        cmocka_unit_test(test_stream_text_tool),
        cmocka_unit_test(test_stream_reasoning),
        cmocka_unit_test(test_stream_endings),
        cmocka_unit_test(test_stream_exceptions),
        cmocka_unit_test(test_stream_invalid),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_embeddings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

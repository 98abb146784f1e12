#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "canon/codecs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX SB_SOURCE_DIR "/tests/data/fixtures/anthropic/"

static const struct sb_provider_codec *C = &sb_codec_anthropic;

/* ---- reading fixtures ------------------------------------------------------------------ */

static char *slurp(const char *name, size_t *len)
{
    char path[512];
    snprintf(path, sizeof path, FIX "%s", name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)n, f), (size_t)n);
    b[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* ---- recording events ------------------------------------------------------------------ */

struct rec {
    struct sb_canon_resp resp; /* folds the events and checks their order */
    struct sb_buf log;         /* every event, to compare two feeds of one stream */
    int nusage, nfinish, nerror;
    struct sb_canon_error err;
    struct sb_usage start_usage;
    int stop_at; /* return 1 at this event number (1-based), 0: never */
    int n;
};

static void rec_init(struct rec *r)
{
    memset(r, 0, sizeof *r);
    sb_canon_resp_init(&r->resp, 1 << 20);
    sb_buf_init(&r->log, 1 << 20);
    sb_usage_init(&r->start_usage);
}

static void rec_free(struct rec *r)
{
    sb_canon_resp_free(&r->resp);
    sb_buf_free(&r->log);
}

static int on_event(void *ud, const struct sb_canon_event *ev)
{
    struct rec *r = ud;
    r->n++;
    if (r->stop_at && r->n == r->stop_at)
        return 1;
    assert_int_equal(sb_canon_resp_event(&r->resp, ev), 0);
    assert_int_equal(
        sb_buf_printf(&r->log, "%d:%d:%d:%zu:", (int)ev->type, ev->index, (int)ev->block, ev->len),
        0);
    if (ev->text)
        assert_int_equal(sb_buf_append(&r->log, ev->text, ev->len), 0);
    assert_int_equal(sb_buf_append_char(&r->log, '\n'), 0);
    if (ev->type == SB_EV_START)
        r->start_usage = ev->usage;
    if (ev->type == SB_EV_USAGE)
        r->nusage++;
    if (ev->type == SB_EV_FINISH)
        r->nfinish++;
    if (ev->type == SB_EV_ERROR) {
        r->nerror++;
        r->err = *ev->error;
    }
    return 0;
}

static void decode_fixture(const char *name, struct rec *r)
{
    size_t len;
    char *body = slurp(name, &len);
    rec_init(r);
    assert_int_equal(C->decode_response(body, len, on_event, r), 0);
    free(body);
}

/* Feeds a stream whole, then one byte at a time; both must give the same events. Returns
 * stream_end's result; r holds the whole feed's events. */
static int feed_both(const char *data, size_t len, struct rec *r)
{
    rec_init(r);
    void *st = C->stream_new(64 * 1024);
    assert_non_null(st);
    int rc = C->stream_feed(st, data, len, on_event, r);
    int end = rc == 0 ? C->stream_end(st, on_event, r) : rc;
    C->stream_free(st);

    struct rec b;
    rec_init(&b);
    st = C->stream_new(64 * 1024);
    int rc2 = 0;
    for (size_t i = 0; i < len && rc2 == 0; i++)
        rc2 = C->stream_feed(st, data + i, 1, on_event, &b);
    int end2 = rc2 == 0 ? C->stream_end(st, on_event, &b) : rc2;
    C->stream_free(st);
    assert_int_equal(end, end2);
    assert_int_equal(r->log.len, b.log.len);
    if (r->log.len)
        assert_memory_equal(r->log.data, b.log.data, r->log.len);
    rec_free(&b);
    return end;
}

static int stream_fixture(const char *name, struct rec *r)
{
    size_t len;
    char *body = slurp(name, &len);
    int rc = feed_both(body, len, r);
    free(body);
    return rc;
}

static const char *block_text(const struct rec *r, size_t i)
{
    assert_true(i < r->resp.nblocks);
    return r->resp.blocks[i].text.data ? r->resp.blocks[i].text.data : "";
}

static void assert_args_equal(const struct rec *r, size_t i, const char *expect_json)
{
    json_t *got = json_loads(block_text(r, i), 0, NULL);
    if (!got && r->resp.blocks[i].text.len == 0)
        got = json_object(); /* "" means {} */
    json_t *want = json_loads(expect_json, 0, NULL);
    assert_non_null(got);
    assert_non_null(want);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
}

/* ---- whole responses ------------------------------------------------------------------- */

static void test_response_text(void **state)
{
    (void)state;
    struct rec r;
    decode_fixture("messages_text.response.json", &r);
    assert_string_equal(r.resp.id, "msg_01QgNtCXZKCJgpWHW3NEwmdP");
    assert_string_equal(r.resp.model, "claude-3-5-sonnet-20240620");
    assert_int_equal(r.resp.nblocks, 1);
    assert_int_equal(r.resp.blocks[0].kind, SB_BLOCK_TEXT);
    assert_string_equal(block_text(&r, 0), "Hello! How can I assist you today? Is there anything "
                                           "specific you'd like to know or discuss?");
    assert_int_equal(r.resp.finish, SB_FINISH_STOP);
    assert_null(r.resp.stop_sequence);
    assert_int_equal(r.nfinish, 1);
    assert_int_equal(r.nusage, 1);
    assert_int_equal(r.resp.usage.input, 16);
    assert_int_equal(r.resp.usage.output, 24);
    assert_int_equal(r.resp.usage.cache_read, 0);
    assert_int_equal(r.resp.usage.cache_write, 0);
    assert_int_equal(r.resp.usage.reasoning, -1);
    assert_int_equal(r.start_usage.input, 16);
    assert_int_equal(r.start_usage.output, -1);
    rec_free(&r);

    decode_fixture("messages_text_sonnet45.response.json", &r);
    assert_int_equal(r.resp.nblocks, 1);
    assert_true(strncmp(block_text(&r, 0), "Hello! I'm doing well", 21) == 0);
    assert_int_equal(r.resp.usage.input, 12);
    assert_int_equal(r.resp.usage.output, 29);
    assert_int_equal(sb_usage_prompt(&r.resp.usage), 12);
    rec_free(&r);
}

static void test_response_tool_use(void **state)
{
    (void)state;
    struct rec r;
    decode_fixture("messages_text_and_tool_use.response.json", &r);
    assert_int_equal(r.resp.nblocks, 2);
    assert_int_equal(r.resp.blocks[0].kind, SB_BLOCK_TEXT);
    assert_true(strncmp(block_text(&r, 0), "<thinking>\nThe updateIssueList", 30) == 0);
    assert_int_equal(r.resp.blocks[1].kind, SB_BLOCK_TOOL_CALL);
    assert_string_equal(r.resp.blocks[1].id, "toolu_01LRmxn9vGM1d2DZSDBowdZ1");
    assert_string_equal(r.resp.blocks[1].name, "updateIssueList");
    assert_string_equal(block_text(&r, 1), "{}");
    assert_int_equal(r.resp.finish, SB_FINISH_TOOL_CALLS);
    assert_int_equal(r.resp.usage.input, 602);
    assert_int_equal(r.resp.usage.output, 93);
    rec_free(&r);
}

static void test_response_thinking(void **state)
{
    (void)state;
    struct rec r;
    decode_fixture("messages_thinking_tool_use.response.json", &r);
    assert_string_equal(r.resp.model, "claude-sonnet-4-6");
    assert_int_equal(r.resp.nblocks, 2);
    assert_int_equal(r.resp.blocks[0].kind, SB_BLOCK_THINKING);
    assert_string_equal(block_text(&r, 0),
                        "The user wants me to call checkSandboxErrors immediately.");
    assert_non_null(r.resp.blocks[0].signature);
    assert_true(strncmp(r.resp.blocks[0].signature, "Eq4CCpIBCBIYAipAM+SGYGx7", 24) == 0);
    assert_true(strlen(r.resp.blocks[0].signature) > 200);
    assert_int_equal(r.resp.blocks[1].kind, SB_BLOCK_TOOL_CALL);
    assert_string_equal(r.resp.blocks[1].id, "toolu_017R7ACrx7NF7sLDDtvdQ1u9");
    assert_string_equal(r.resp.blocks[1].name, "checkSandboxErrors");
    assert_args_equal(&r, 1, "{}");
    assert_int_equal(r.resp.finish, SB_FINISH_TOOL_CALLS);
    assert_int_equal(r.resp.usage.input, 599);
    assert_int_equal(r.resp.usage.output, 59);
    assert_int_equal(r.resp.usage.reasoning, 18);
    rec_free(&r);
}

static void test_response_synthetic(void **state)
{
    (void)state;
    static const char body[] =
        "{\"type\":\"message\",\"id\":\"m1\",\"content\":["
        "{\"type\":\"redacted_thinking\",\"data\":\"OPAQUE\"},"
        "{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"web_search\",\"input\":{}},"
        "{\"type\":\"web_search_tool_result\",\"tool_use_id\":\"srvtoolu_1\",\"content\":[]},"
        "{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"f\",\"input\":{\"a\":[1,2],\"b\":"
        "\"x\"}},"
        "{\"type\":\"text\",\"text\":\"done\"}],"
        "\"stop_reason\":\"stop_sequence\",\"stop_sequence\":\"END\","
        "\"usage\":{\"input_tokens\":5,\"cache_read_input_tokens\":100,"
        "\"cache_creation_input_tokens\":20,\"output_tokens\":9}}";
    struct rec r;
    rec_init(&r);
    assert_int_equal(C->decode_response(body, strlen(body), on_event, &r), 0);
    assert_int_equal(r.resp.nblocks, 3);
    assert_int_equal(r.resp.blocks[0].kind, SB_BLOCK_REDACTED_THINKING);
    assert_string_equal(block_text(&r, 0), "OPAQUE");
    assert_int_equal(r.resp.blocks[1].kind, SB_BLOCK_TOOL_CALL);
    assert_string_equal(block_text(&r, 1), "{\"a\":[1,2],\"b\":\"x\"}");
    assert_string_equal(block_text(&r, 2), "done");
    assert_int_equal(r.resp.finish, SB_FINISH_STOP_SEQUENCE);
    assert_string_equal(r.resp.stop_sequence, "END");
    assert_int_equal(sb_usage_prompt(&r.resp.usage), 125);
    assert_int_equal(r.start_usage.cache_read, 100);
    assert_int_equal(r.start_usage.cache_write, 20);
    rec_free(&r);

    /* Every stop reason. */
    static const struct {
        const char *reason;
        enum sb_finish f;
    } reasons[] = {{"end_turn", SB_FINISH_STOP},
                   {"max_tokens", SB_FINISH_LENGTH},
                   {"tool_use", SB_FINISH_TOOL_CALLS},
                   {"refusal", SB_FINISH_REFUSAL},
                   {"pause_turn", SB_FINISH_PAUSE},
                   {"model_context_window_exceeded", SB_FINISH_CONTEXT_WINDOW},
                   {"compaction", SB_FINISH_STOP}};
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++) {
        char b[256];
        snprintf(b, sizeof b, "{\"type\":\"message\",\"content\":[],\"stop_reason\":\"%s\"}",
                 reasons[i].reason);
        rec_init(&r);
        assert_int_equal(C->decode_response(b, strlen(b), on_event, &r), 0);
        assert_int_equal(r.resp.finish, reasons[i].f);
        assert_int_equal(r.resp.nblocks, 0);
        rec_free(&r);
    }
}

/* Responses and stream events of the common shapes are read without a tree, the rest with
 * jansson; these are the inputs where the two could part ways. */
static void test_fast_and_tree_agree(void **state)
{
    (void)state;
    /* jansson keeps the last of duplicate keys; escapes are unescaped. */
    static const char body[] =
        "{\"type\":\"message\",\"id\":\"m\\u00e9\",\"model\":\"c\\/1\",\"content\":[{\"type\":"
        "\"text\",\"text\":\"a\",\"text\":\"b\\n\\ud83d\\ude00\"},{\"type\":\"te\\u0078t\","
        "\"text\":\"c\"},{\"type\":\"thinking\",\"thinking\":\"t\",\"signature\":\"s\"}],"
        "\"stop_reason\":\"max_tokens\",\"usage\":{\"input_tokens\":-0,\"output_tokens\":2.0,"
        "\"cache_read_input_tokens\":3,\"output_tokens_details\":{\"thinking_tokens\":1}}}";
    struct rec r;
    rec_init(&r);
    assert_int_equal(C->decode_response(body, strlen(body), on_event, &r), 0);
    assert_string_equal(r.resp.id, "m\xc3\xa9");
    assert_string_equal(r.resp.model, "c/1");
    assert_int_equal(r.resp.nblocks, 3);
    assert_string_equal(block_text(&r, 0), "b\n\xf0\x9f\x98\x80");
    assert_string_equal(block_text(&r, 1), "c");
    assert_int_equal(r.resp.blocks[2].kind, SB_BLOCK_THINKING);
    assert_string_equal(r.resp.blocks[2].signature, "s");
    assert_int_equal(r.resp.finish, SB_FINISH_LENGTH);
    assert_int_equal(r.resp.usage.input, 0);
    assert_int_equal(r.resp.usage.output, -1); /* 2.0 is not an integer */
    assert_int_equal(r.resp.usage.cache_read, 3);
    assert_int_equal(r.resp.usage.reasoning, 1);
    rec_free(&r);
    /* What jansson refuses is refused, wherever it is. */
    static const char *const bad[] = {
        "{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"\\u0000\"}]}",
        "{\"type\":\"message\",\"content\":[],\"x\":\"\\udc00\"}",
        "{\"type\":\"message\",\"content\":[],\"x\":-1e999}",
        "{\"type\":\"message\",\"content\":[{\"type\":\"tool_use\",\"id\":\"t\"}]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rec_init(&r);
        assert_int_equal(C->decode_response(bad[i], strlen(bad[i]), on_event, &r),
                         SB_CANON_E_INVALID);
        assert_int_equal(r.resp.nblocks, 0);
        rec_free(&r);
    }

    /* A stream with every event kind in uncommon spellings. */
    static const char stream[] =
        "event: message_start\n"
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\\u00e9\",\"model\":\"c\","
        "\"usage\":{\"input_tokens\":4,\"input_tokens\":5}}}\n\n"
        "event: ping\ndata: {\"type\":\"ping\"}\n\n"
        "event: content_block_start\n"
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":"
        "\"server_tool_use\",\"id\":\"s\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
        "event: content_block_start\n"
        "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":"
        "\"tool_use\",\"id\":\"t\\u0031\",\"name\":\"f\",\"input\":{}}}\n\n"
        "event: content_block_delta\n"
        "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
        "\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
        "event: content_block_start\n"
        "data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":"
        "\"text\",\"text\":\"pre\\n\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n"
        "event: message_delta\n"
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"stop_sequence\","
        "\"stop_sequence\":\"E\\tND\"},\"usage\":{\"output_tokens\":9}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    assert_int_equal(feed_both(stream, strlen(stream), &r), 0);
    assert_string_equal(r.resp.id, "m\xc3\xa9");
    assert_int_equal(r.start_usage.input, 5);
    assert_int_equal(r.resp.nblocks, 2);
    assert_string_equal(r.resp.blocks[0].id, "t1");
    assert_string_equal(block_text(&r, 0), "{}");
    assert_string_equal(block_text(&r, 1), "pre\n");
    assert_int_equal(r.resp.finish, SB_FINISH_STOP_SEQUENCE);
    assert_string_equal(r.resp.stop_sequence, "E\tND");
    assert_int_equal(r.resp.usage.output, 9);
    rec_free(&r);
    /* A second message_start and a refused escape still fail the stream. */
    static const char *const bad_streams[] = {
        "data: {\"type\":\"message_start\",\"message\":{}}\n\n"
        "data: {\"type\":\"message_start\",\"message\":{}}\n\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"\\u0000\"}}\n\n",
    };
    for (size_t i = 0; i < sizeof bad_streams / sizeof bad_streams[0]; i++) {
        assert_int_equal(feed_both(bad_streams[i], strlen(bad_streams[i]), &r), SB_CANON_E_INVALID);
        rec_free(&r);
    }
}

static void test_response_errors(void **state)
{
    (void)state;
    struct rec r;
    static const char err[] =
        "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}";
    rec_init(&r);
    assert_int_equal(C->decode_response(err, strlen(err), on_event, &r), 0);
    assert_int_equal(r.nerror, 1);
    assert_int_equal(r.err.kind, SB_ERRK_OVERLOADED);
    assert_int_equal(r.err.status, 529);
    assert_string_equal(r.err.message, "Overloaded");
    assert_int_equal(r.nfinish, 0);
    rec_free(&r);

    static const char *const bad[] = {"", "not json", "[1,2]", "{\"content\":{}}",
                                      "{\"content\":[{\"type\":\"tool_use\",\"name\":\"f\"}]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rec_init(&r);
        assert_int_equal(C->decode_response(bad[i], strlen(bad[i]), on_event, &r),
                         SB_CANON_E_INVALID);
        rec_free(&r);
    }

    /* The callback asks to stop. */
    size_t len;
    char *body = slurp("messages_text.response.json", &len);
    for (int at = 1; at <= 5; at++) {
        rec_init(&r);
        r.stop_at = at;
        assert_int_equal(C->decode_response(body, len, on_event, &r), SB_CANON_E_STOP);
        assert_int_equal(r.n, at);
        rec_free(&r);
    }
    free(body);
}

/* ---- streams --------------------------------------------------------------------------- */

static void test_stream_text(void **state)
{
    (void)state;
    struct rec r;
    assert_int_equal(stream_fixture("messages_stream_text_basic.sse", &r), 0);
    assert_string_equal(r.resp.id, "msg_4QpJur2dWWDjF6C758FbBw5vm12BaVipnK");
    assert_string_equal(r.resp.model, "claude-3-opus-latest");
    assert_int_equal(r.resp.nblocks, 1);
    assert_string_equal(block_text(&r, 0), "Hello there!");
    assert_int_equal(r.resp.finish, SB_FINISH_STOP);
    assert_int_equal(r.resp.usage.input, 11);
    assert_int_equal(r.resp.usage.output, 6);
    assert_int_equal(r.nusage, 1);
    assert_int_equal(r.start_usage.input, 11);
    assert_int_equal(r.start_usage.output, -1);
    rec_free(&r);

    /* Padded JSON, and input counts repeated in message_delta. */
    assert_int_equal(stream_fixture("messages_stream_text.sse", &r), 0);
    assert_string_equal(block_text(&r, 0),
                        "The sky is blue because sunlight scatters off nitrogen and oxygen "
                        "molecules in the atmosphere, and blue light scatters more efficiently "
                        "than other colors.");
    assert_int_equal(r.resp.usage.input, 19);
    assert_int_equal(r.resp.usage.output, 34);
    rec_free(&r);
}

static void test_stream_cache_read(void **state)
{
    (void)state;
    struct rec r;
    assert_int_equal(stream_fixture("messages_stream_cache_read.sse", &r), 0);
    assert_string_equal(block_text(&r, 0), "OK.");
    assert_int_equal(r.resp.usage.input, 9);
    assert_int_equal(r.resp.usage.cache_read, 4202);
    assert_int_equal(r.resp.usage.cache_write, 0);
    assert_int_equal(r.resp.usage.output, 5);
    assert_int_equal(sb_usage_prompt(&r.resp.usage), 9 + 4202);
    assert_int_equal(r.start_usage.cache_read, 4202);
    rec_free(&r);
}

static void test_stream_tool_use(void **state)
{
    (void)state;
    struct rec r;
    assert_int_equal(stream_fixture("messages_stream_tool_use.sse", &r), 0);
    assert_int_equal(r.resp.nblocks, 2);
    assert_string_equal(block_text(&r, 0), "I'll check the current weather in Paris for you.");
    assert_int_equal(r.resp.blocks[1].kind, SB_BLOCK_TOOL_CALL);
    assert_string_equal(r.resp.blocks[1].id, "toolu_01NRLabsLyVHZPKxbKvkfSMn");
    assert_string_equal(r.resp.blocks[1].name, "get_weather");
    json_t *args = json_loads(block_text(&r, 1), 0, NULL);
    assert_non_null(args);
    assert_string_equal(json_string_value(json_object_get(args, "location")), "Paris");
    json_decref(args);
    assert_int_equal(r.resp.finish, SB_FINISH_TOOL_CALLS);
    assert_int_equal(r.resp.usage.input, 377);
    assert_int_equal(r.resp.usage.output, 65);
    /* The empty first fragment is passed on. */
    assert_non_null(strstr(r.log.data, "\n2:1:3:0:\n"));
    rec_free(&r);

    assert_int_equal(stream_fixture("messages_stream_tool_use_no_args.reconstructed.sse", &r), 0);
    assert_int_equal(r.resp.nblocks, 2);
    assert_string_equal(r.resp.blocks[1].name, "updateIssueList");
    assert_string_equal(block_text(&r, 1), "");
    assert_args_equal(&r, 1, "{}");
    assert_int_equal(r.resp.finish, SB_FINISH_TOOL_CALLS);
    assert_int_equal(r.resp.usage.input, 565);
    assert_int_equal(r.resp.usage.output, 48);
    rec_free(&r);
}

static void test_stream_thinking(void **state)
{
    (void)state;
    struct rec r;
    assert_int_equal(stream_fixture("messages_stream_thinking.reconstructed.sse", &r), 0);
    assert_int_equal(r.resp.nblocks, 2);
    assert_int_equal(r.resp.blocks[0].kind, SB_BLOCK_THINKING);
    assert_true(
        strncmp(block_text(&r, 0), "The previous result was 925. Now I need to divide", 49) == 0);
    assert_non_null(r.resp.blocks[0].signature);
    assert_true(strncmp(r.resp.blocks[0].signature, "EvQBCkYICxgCKkAxhD4N", 20) == 0);
    assert_int_equal(r.resp.blocks[1].kind, SB_BLOCK_TEXT);
    assert_int_equal(r.resp.usage.input, 69);
    assert_int_equal(r.resp.usage.output, 53);
    rec_free(&r);
}

static void test_stream_error_event(void **state)
{
    (void)state;
    struct rec r;
    assert_int_equal(stream_fixture("error_in_stream_overloaded.sse", &r), 0);
    assert_int_equal(r.nerror, 1);
    assert_int_equal(r.err.kind, SB_ERRK_OVERLOADED);
    assert_int_equal(r.err.status, 529);
    assert_string_equal(r.err.type, "overloaded_error");
    assert_string_equal(r.err.message, "Overloaded");
    rec_free(&r);

    /* After an error mid-stream nothing more comes out. */
    static const char s[] =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\"}}\n\n"
        "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\","
        "\"message\":\"slow\"}}\n\n"
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    assert_int_equal(feed_both(s, strlen(s), &r), 0);
    assert_int_equal(r.nerror, 1);
    assert_int_equal(r.err.kind, SB_ERRK_RATE_LIMIT);
    assert_int_equal(r.err.status, 429);
    assert_int_equal(r.nfinish, 0);
    rec_free(&r);

    static const char s2[] = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
                             "\"api_error\",\"message\":\"Internal\"}}\n\n";
    assert_int_equal(feed_both(s2, strlen(s2), &r), 0);
    assert_int_equal(r.err.kind, SB_ERRK_SERVER);
    assert_int_equal(r.err.status, 500);
    rec_free(&r);

    static const char s3[] = "event: error\ndata: <html>oops</html>\n\n";
    assert_int_equal(feed_both(s3, strlen(s3), &r), 0);
    assert_int_equal(r.nerror, 1);
    assert_int_equal(r.err.kind, SB_ERRK_SERVER);
    rec_free(&r);
}

#define START                                                                                      \
    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\","           \
    "\"usage\":{\"input_tokens\":3,\"cache_creation_input_tokens\":2}}}\n\n"
#define STOP "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"

static void test_stream_renumber_and_skip(void **state)
{
    (void)state;
    static const char s[] = START
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
        "\"content_block\":{\"type\":\"server_tool_use\",\"id\":\"srvtoolu_1\",\"name\":\"web_"
        "search\",\"input\":{}}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
        "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,"
        "\"content_block\":{\"type\":\"redacted_thinking\",\"data\":\"SECRET\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
        "event: brand_new_event\ndata: not even json\n\n"
        ": a comment\n\n"
        "event: ping\ndata: {\"type\":\"ping\"}\n\n"
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,"
        "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,"
        "\"delta\":{\"type\":\"citations_delta\",\"citation\":{}}}\n\n"
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,"
        "\"delta\":{\"type\":\"text_delta\",\"text\":\"hi\"}}\n\n"
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n"
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
        "\"stop_sequence\",\"stop_sequence\":\"END\"},\"usage\":{\"output_tokens\":7,"
        "\"cache_read_input_tokens\":null}}\n\n" STOP;
    struct rec r;
    assert_int_equal(feed_both(s, strlen(s), &r), 0);
    assert_int_equal(r.resp.nblocks, 2);
    assert_int_equal(r.resp.blocks[0].kind, SB_BLOCK_REDACTED_THINKING);
    assert_string_equal(block_text(&r, 0), "SECRET");
    assert_int_equal(r.resp.blocks[1].kind, SB_BLOCK_TEXT);
    assert_string_equal(block_text(&r, 1), "hi");
    assert_int_equal(r.resp.finish, SB_FINISH_STOP_SEQUENCE);
    assert_string_equal(r.resp.stop_sequence, "END");
    assert_int_equal(r.resp.usage.input, 3);
    assert_int_equal(r.resp.usage.cache_write, 2);
    assert_int_equal(r.resp.usage.cache_read, -1);
    assert_int_equal(r.resp.usage.output, 7);
    rec_free(&r);
}

static void test_stream_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        /* delta for a block that is not open */
        START "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
              "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
              "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,"
              "\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n",
        /* delta after the block stopped */
        START "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
              "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
              "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
              "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
              "\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n",
        /* a delta of the wrong kind */
        START "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
              "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
              "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
              "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\"}}\n\n",
        /* a block before message_start */
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
        "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        /* two blocks open at once */
        START "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
              "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n"
              "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,"
              "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        /* a known event that is not JSON */
        START "event: content_block_delta\ndata: {oops\n\n",
        /* a second message_start */
        START START,
        /* a tool block without id */
        START "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
              "\"content_block\":{\"type\":\"tool_use\",\"name\":\"f\"}}\n\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct rec r;
        rec_init(&r);
        void *st = C->stream_new(64 * 1024);
        assert_int_equal(C->stream_feed(st, bad[i], strlen(bad[i]), on_event, &r),
                         SB_CANON_E_INVALID);
        C->stream_free(st);
        rec_free(&r);
    }
}

static void test_stream_cut_stop_big(void **state)
{
    (void)state;
    struct rec r;
    /* Cut before message_stop, and a final event with no blank line. */
    static const char cut[] =
        START "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
              "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n" STOP;
    assert_int_equal(feed_both(cut, strlen(cut) - 1, &r), SB_CANON_E_CUT);
    assert_int_equal(r.nfinish, 0);
    rec_free(&r);
    assert_int_equal(feed_both("", 0, &r), SB_CANON_E_CUT);
    rec_free(&r);

    /* message_stop with a block still open closes it first. */
    assert_int_equal(feed_both(cut, strlen(cut), &r), 0);
    assert_int_equal(r.nfinish, 1);
    assert_int_equal(r.resp.finish, SB_FINISH_STOP);
    rec_free(&r);

    /* Stop from the callback. */
    size_t len;
    char *body = slurp("messages_stream_text_basic.sse", &len);
    rec_init(&r);
    r.stop_at = 3;
    void *st = C->stream_new(64 * 1024);
    assert_int_equal(C->stream_feed(st, body, len, on_event, &r), SB_CANON_E_STOP);
    C->stream_free(st);
    rec_free(&r);

    /* An event larger than the bound. */
    rec_init(&r);
    st = C->stream_new(64);
    assert_int_equal(C->stream_feed(st, body, len, on_event, &r), -E2BIG);
    C->stream_free(st);
    rec_free(&r);
    free(body);
}

/* ---- errors ---------------------------------------------------------------------------- */

static void check_error_fixture(const char *name, int status, enum sb_err_kind kind,
                                const char *type, const char *msg_prefix)
{
    size_t len;
    char *body = slurp(name, &len);
    struct sb_canon_error e;
    assert_int_equal(C->decode_error(status, body, len, &e), 0);
    assert_int_equal(e.status, status);
    assert_int_equal(e.kind, kind);
    assert_string_equal(e.type, type);
    assert_true(strncmp(e.message, msg_prefix, strlen(msg_prefix)) == 0);
    assert_int_equal(e.retry_after_ms, -1);
    free(body);
}

static void test_errors(void **state)
{
    (void)state;
    check_error_fixture("error_400_credit_balance.json", 400, SB_ERRK_BILLING,
                        "invalid_request_error", "Your credit balance is too low");
    check_error_fixture("error_400_invalid_request.json", 400, SB_ERRK_INVALID_REQUEST,
                        "invalid_request_error", "max_tokens: Field required");
    check_error_fixture("error_400_orphan_tool_result.json", 400, SB_ERRK_INVALID_REQUEST,
                        "invalid_request_error", "messages.8.content.0: unexpected tool_use_id");
    check_error_fixture("error_400_tool_use_without_result.json", 400, SB_ERRK_INVALID_REQUEST,
                        "invalid_request_error", "messages.14: `tool_use` ids");
    check_error_fixture("error_401_authentication.json", 401, SB_ERRK_AUTH, "authentication_error",
                        "invalid x-api-key");
    check_error_fixture("error_529_overloaded.json", 529, SB_ERRK_OVERLOADED, "overloaded_error",
                        "Overloaded");

    static const struct {
        int status;
        const char *type, *msg;
        enum sb_err_kind kind;
    } cases[] = {
        {403, "permission_error", "no", SB_ERRK_PERMISSION},
        {404, "not_found_error", "model: x", SB_ERRK_NOT_FOUND},
        {429, "rate_limit_error", "slow", SB_ERRK_RATE_LIMIT},
        {500, "api_error", "Internal", SB_ERRK_SERVER},
        {504, "timeout_error", "late", SB_ERRK_TIMEOUT},
        {413, "request_too_large", "big", SB_ERRK_TOO_LARGE},
        {402, "billing_error", "pay", SB_ERRK_BILLING},
        {400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum",
         SB_ERRK_CONTEXT_WINDOW},
        {418, "teapot_error", "short and stout", SB_ERRK_INVALID_REQUEST},
        {503, "something_new", "later", SB_ERRK_OVERLOADED},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char b[512];
        snprintf(b, sizeof b,
                 "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"%s\","
                 "\"details\":null},\"request_id\":null}",
                 cases[i].type, cases[i].msg);
        struct sb_canon_error e;
        assert_int_equal(C->decode_error(cases[i].status, b, strlen(b), &e), 0);
        assert_int_equal(e.kind, cases[i].kind);
        assert_int_equal(e.status, cases[i].status);
        assert_string_equal(e.type, cases[i].type);
        assert_string_equal(e.message, cases[i].msg);
    }

    /* Bodies that say nothing useful. */
    struct sb_canon_error e;
    assert_int_equal(C->decode_error(502, "<html>Bad gateway</html>", 24, &e), 0);
    assert_int_equal(e.status, 502);
    assert_int_equal(e.kind, SB_ERRK_SERVER);
    assert_string_equal(e.message, "Anthropic returned HTTP 502");
    assert_int_equal(C->decode_error(429, NULL, 0, &e), 0);
    assert_int_equal(e.kind, SB_ERRK_RATE_LIMIT);
    assert_int_equal(C->decode_error(401, "{\"error\":\"x\"}", 13, &e), 0);
    assert_int_equal(e.kind, SB_ERRK_AUTH);
    static const char nomsg[] = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\"}}";
    assert_int_equal(C->decode_error(529, nomsg, strlen(nomsg), &e), 0);
    assert_int_equal(e.kind, SB_ERRK_OVERLOADED);
    assert_string_equal(e.message, "Anthropic returned HTTP 529");

    /* A long message is cut to the buffer, NUL-terminated. */
    char big[4096];
    int n = snprintf(big, sizeof big,
                     "{\"type\":\"error\",\"error\":{\"type\":\"api_error\","
                     "\"message\":\"");
    memset(big + n, 'x', 3000);
    snprintf(big + n + 3000, sizeof big - (size_t)n - 3000, "\"}}");
    assert_int_equal(C->decode_error(500, big, strlen(big), &e), 0);
    assert_int_equal(strlen(e.message), sizeof e.message - 1);
}

/* ---- requests -------------------------------------------------------------------------- */

static void req_init(struct sb_canon_req *r)
{
    memset(r, 0, sizeof *r);
    r->model = strdup("claude-x");
    r->max_tokens = r->top_k = r->n = r->top_logprobs = r->thinking_budget = -1;
    r->parallel_tool_calls = r->rf_strict = -1;
}

static struct sb_msg *add_msg(struct sb_canon_req *r, enum sb_role role)
{
    struct sb_msg *m = realloc(r->msgs, (r->nmsgs + 1) * sizeof *m);
    assert_non_null(m);
    r->msgs = m;
    memset(&m[r->nmsgs], 0, sizeof *m);
    m[r->nmsgs].role = role;
    return &m[r->nmsgs++];
}

static struct sb_part *add_part_to(struct sb_part **parts, size_t *n, enum sb_part_type t)
{
    struct sb_part *p = realloc(*parts, (*n + 1) * sizeof *p);
    assert_non_null(p);
    *parts = p;
    memset(&p[*n], 0, sizeof *p);
    p[*n].type = t;
    return &p[(*n)++];
}

static struct sb_part *add_part(struct sb_msg *m, enum sb_part_type t)
{
    return add_part_to(&m->parts, &m->nparts, t);
}

static char *dup(const char *s)
{
    char *c = strdup(s);
    assert_non_null(c);
    return c;
}

static void add_text(struct sb_msg *m, const char *text)
{
    add_part(m, SB_PART_TEXT)->text = dup(text);
}

static void add_call(struct sb_msg *m, const char *id, const char *name, const char *args)
{
    struct sb_part *p = add_part(m, SB_PART_TOOL_CALL);
    p->id = dup(id);
    p->name = dup(name);
    p->arguments = args ? dup(args) : NULL;
}

static struct sb_part *add_result(struct sb_msg *m, const char *id, const char *text)
{
    struct sb_part *p = add_part(m, SB_PART_TOOL_RESULT);
    p->id = dup(id);
    if (text)
        add_part_to(&p->parts, &p->nparts, SB_PART_TEXT)->text = dup(text);
    return p;
}

static json_t *encode_ok(struct sb_canon_req *r)
{
    struct sb_buf b;
    sb_buf_init(&b, 1 << 20);
    struct sb_error err;
    memset(&err, 0, sizeof err);
    int rc = C->encode_request(r, "claude-upstream", &b, &err);
    if (rc != 0)
        fail_msg("encode failed: %d %s", err.status, err.message);
    json_error_t je;
    json_t *j = json_loadb(b.data, b.len, 0, &je);
    assert_non_null(j);
    sb_buf_free(&b);
    sb_canon_req_free(r);
    return j;
}

static void encode_fails(struct sb_canon_req *r, int status, const char *param, const char *code)
{
    struct sb_buf b;
    sb_buf_init(&b, 1 << 20);
    struct sb_error err;
    memset(&err, 0, sizeof err);
    assert_int_equal(C->encode_request(r, "claude-upstream", &b, &err), -1);
    assert_int_equal(err.status, status);
    if (param)
        assert_string_equal(err.param, param);
    if (code)
        assert_string_equal(err.code, code);
    assert_true(strlen(err.message) > 0);
    sb_buf_free(&b);
    sb_canon_req_free(r);
}

static json_t *jget(json_t *j, const char *path)
{
    /* "messages.1.content.0.type" */
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ".", &save); tok && j; tok = strtok_r(NULL, ".", &save)) {
        if (json_is_array(j))
            j = json_array_get(j, strtoul(tok, NULL, 10));
        else
            j = json_object_get(j, tok);
    }
    return j;
}

static const char *jstr(json_t *j, const char *path)
{
    return json_string_value(jget(j, path));
}

static void test_encode_basic(void **state)
{
    (void)state;
    struct sb_canon_req r;
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_SYSTEM), "Be brief.");
    add_text(add_msg(&r, SB_ROLE_USER), "Hi");
    json_t *j = encode_ok(&r);
    assert_string_equal(jstr(j, "model"), "claude-upstream");
    assert_int_equal(json_integer_value(jget(j, "max_tokens")), SB_CANON_DEFAULT_MAX_TOKENS);
    assert_true(json_is_integer(jget(j, "max_tokens")));
    assert_string_equal(jstr(j, "system"), "Be brief.");
    assert_int_equal(json_array_size(jget(j, "messages")), 1);
    assert_string_equal(jstr(j, "messages.0.role"), "user");
    assert_string_equal(jstr(j, "messages.0.content.0.type"), "text");
    assert_string_equal(jstr(j, "messages.0.content.0.text"), "Hi");
    assert_null(jget(j, "stream"));
    assert_null(jget(j, "tools"));
    assert_null(jget(j, "thinking"));
    assert_null(jget(j, "temperature"));
    json_decref(j);

    /* Parameters. */
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "Hi");
    r.max_tokens = 100;
    r.stream = true;
    r.has_temperature = true;
    r.temperature = 1.7;
    r.has_top_p = true;
    r.top_p = 0.5;
    r.top_k = 40;
    r.nstop = 3;
    r.stop = calloc(3, sizeof *r.stop);
    r.stop[0] = dup("END");
    r.stop[1] = dup(" \n");
    r.stop[2] = dup("###");
    r.user = dup("user-42");
    r.has_seed = true;
    r.seed = 7;
    r.has_presence_penalty = true;
    r.presence_penalty = 1;
    j = encode_ok(&r);
    assert_int_equal(json_integer_value(jget(j, "max_tokens")), 100);
    assert_true(json_is_true(jget(j, "stream")));
    assert_true(json_real_value(jget(j, "temperature")) == 1.0);
    assert_true(json_real_value(jget(j, "top_p")) == 0.5);
    assert_int_equal(json_integer_value(jget(j, "top_k")), 40);
    assert_int_equal(json_array_size(jget(j, "stop_sequences")), 2);
    assert_string_equal(jstr(j, "stop_sequences.0"), "END");
    assert_string_equal(jstr(j, "stop_sequences.1"), "###");
    assert_string_equal(jstr(j, "metadata.user_id"), "user-42");
    assert_null(jget(j, "seed"));
    assert_null(jget(j, "presence_penalty"));
    json_decref(j);

    /* Negative temperature clamped; an e-mail user left out. */
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "Hi");
    r.has_temperature = true;
    r.temperature = -0.5;
    r.user = dup("jane@example.com");
    j = encode_ok(&r);
    assert_true(json_real_value(jget(j, "temperature")) == 0.0);
    assert_null(jget(j, "metadata"));
    json_decref(j);
}

static void test_encode_system_and_merging(void **state)
{
    (void)state;
    struct sb_canon_req r;
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_SYSTEM), "One.");
    add_text(add_msg(&r, SB_ROLE_USER), "a");
    add_text(add_msg(&r, SB_ROLE_USER), "b");
    struct sb_msg *sys2 = add_msg(&r, SB_ROLE_SYSTEM);
    add_text(sys2, "Two.");
    sys2->parts[0].cache_control = json_pack("{s:s}", "type", "ephemeral");
    add_text(add_msg(&r, SB_ROLE_ASSISTANT), "c");
    add_msg(&r, SB_ROLE_ASSISTANT); /* empty: no block, no split */
    add_text(add_msg(&r, SB_ROLE_ASSISTANT), "d");
    add_text(add_msg(&r, SB_ROLE_USER), "");
    add_text(add_msg(&r, SB_ROLE_USER), "e");
    json_t *j = encode_ok(&r);
    assert_true(json_is_array(jget(j, "system")));
    assert_int_equal(json_array_size(jget(j, "system")), 2);
    assert_string_equal(jstr(j, "system.0.text"), "One.");
    assert_null(jget(j, "system.0.cache_control"));
    assert_string_equal(jstr(j, "system.1.text"), "Two.");
    assert_string_equal(jstr(j, "system.1.cache_control.type"), "ephemeral");
    assert_int_equal(json_array_size(jget(j, "messages")), 3);
    assert_string_equal(jstr(j, "messages.0.role"), "user");
    assert_int_equal(json_array_size(jget(j, "messages.0.content")), 2);
    assert_string_equal(jstr(j, "messages.0.content.1.text"), "b");
    assert_string_equal(jstr(j, "messages.1.role"), "assistant");
    assert_string_equal(jstr(j, "messages.1.content.0.text"), "c");
    assert_string_equal(jstr(j, "messages.1.content.1.text"), "d");
    assert_string_equal(jstr(j, "messages.2.role"), "user");
    assert_int_equal(json_array_size(jget(j, "messages.2.content")), 1);
    json_decref(j);

    /* A conversation that starts with the assistant is refused. */
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_SYSTEM), "S");
    add_text(add_msg(&r, SB_ROLE_ASSISTANT), "Hello");
    add_text(add_msg(&r, SB_ROLE_USER), "Hi");
    encode_fails(&r, 400, "messages", NULL);

    /* Only system messages. */
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_SYSTEM), "S");
    encode_fails(&r, 400, "messages", NULL);
}

static void test_encode_tools_roundtrip(void **state)
{
    (void)state;
    struct sb_canon_req r;
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "weather?");
    struct sb_msg *a = add_msg(&r, SB_ROLE_ASSISTANT);
    add_text(a, "Let me check.");
    add_call(a, "call_abc.1:x", "get_weather", "{\"city\":\"Paris\"}");
    add_call(a, "toolu_2", "get_time", "");
    add_call(a, "toolu_3", "bad", "{not json");
    struct sb_part *th = add_part(a, SB_PART_THINKING);
    th->text = dup("I should call tools.");
    th->signature = dup("SIG1");
    add_part(a, SB_PART_THINKING)->signature = dup("gemini-thought-signature");
    add_part(a, SB_PART_THINKING)->text = dup("unsigned thinking");
    add_part(a, SB_PART_REDACTED_THINKING)->text = dup("REDACTED");
    /* A user text between the call and the results, then the results as tool messages. */
    add_text(add_msg(&r, SB_ROLE_USER), "Also hurry.");
    add_result(add_msg(&r, SB_ROLE_TOOL), "call_abc.1:x", "18C");
    struct sb_part *res2 = add_result(add_msg(&r, SB_ROLE_TOOL), "toolu_2", NULL);
    res2->is_error = true;
    add_part_to(&res2->parts, &res2->nparts, SB_PART_TEXT)->text = dup("part one");
    struct sb_part *img = add_part_to(&res2->parts, &res2->nparts, SB_PART_IMAGE);
    img->media_type = dup("image/png");
    img->data = dup("iVBORw0KGgo=");
    add_result(add_msg(&r, SB_ROLE_TOOL), "toolu_3", "");

    r.ntools = 2;
    r.tools = calloc(2, sizeof *r.tools);
    r.tools[0].name = dup("get_weather");
    r.tools[0].description = dup("Weather");
    r.tools[0].parameters = json_pack("{s:s,s:{s:{s:s}},s:[s]}", "type", "object", "properties",
                                      "city", "type", "string", "required", "city");
    r.tools[0].strict = 1;
    r.tools[1].name = dup("get_time");
    r.tools[1].cache_control = json_pack("{s:s}", "type", "ephemeral");
    r.tool_choice = SB_TC_REQUIRED;
    r.parallel_tool_calls = 0;

    json_t *j = encode_ok(&r);
    assert_int_equal(json_array_size(jget(j, "messages")), 3);
    /* assistant: thinking blocks first, then text, then tool_use */
    json_t *ac = jget(j, "messages.1.content");
    assert_int_equal(json_array_size(ac), 6);
    assert_string_equal(jstr(ac, "0.type"), "thinking");
    assert_string_equal(jstr(ac, "0.thinking"), "I should call tools.");
    assert_string_equal(jstr(ac, "0.signature"), "SIG1");
    assert_string_equal(jstr(ac, "1.type"), "redacted_thinking");
    assert_string_equal(jstr(ac, "1.data"), "REDACTED");
    assert_string_equal(jstr(ac, "2.type"), "text");
    assert_string_equal(jstr(ac, "3.type"), "tool_use");
    assert_string_equal(jstr(ac, "3.id"), "call_abc_1_x");
    assert_string_equal(jstr(ac, "3.name"), "get_weather");
    assert_string_equal(jstr(ac, "3.input.city"), "Paris");
    assert_true(json_is_object(jget(ac, "4.input")));
    assert_int_equal(json_object_size(jget(ac, "4.input")), 0);
    assert_true(json_is_object(jget(ac, "5.input")));
    assert_int_equal(json_object_size(jget(ac, "5.input")), 0);
    /* user: all results first, then the text */
    json_t *uc = jget(j, "messages.2.content");
    assert_string_equal(jstr(j, "messages.2.role"), "user");
    assert_int_equal(json_array_size(uc), 4);
    assert_string_equal(jstr(uc, "0.type"), "tool_result");
    assert_string_equal(jstr(uc, "0.tool_use_id"), "call_abc_1_x");
    assert_string_equal(jstr(uc, "0.content"), "18C");
    assert_null(jget(uc, "0.is_error"));
    assert_string_equal(jstr(uc, "1.tool_use_id"), "toolu_2");
    assert_true(json_is_true(jget(uc, "1.is_error")));
    assert_string_equal(jstr(uc, "1.content.0.text"), "part one");
    assert_string_equal(jstr(uc, "1.content.1.type"), "image");
    assert_string_equal(jstr(uc, "1.content.1.source.type"), "base64");
    assert_string_equal(jstr(uc, "1.content.1.source.media_type"), "image/png");
    assert_string_equal(jstr(uc, "2.tool_use_id"), "toolu_3");
    assert_string_equal(jstr(uc, "2.content"), "");
    assert_string_equal(jstr(uc, "3.type"), "text");
    assert_string_equal(jstr(uc, "3.text"), "Also hurry.");
    /* tools */
    assert_int_equal(json_array_size(jget(j, "tools")), 2);
    assert_string_equal(jstr(j, "tools.0.name"), "get_weather");
    assert_string_equal(jstr(j, "tools.0.description"), "Weather");
    assert_string_equal(jstr(j, "tools.0.input_schema.properties.city.type"), "string");
    assert_null(jget(j, "tools.0.strict"));
    assert_null(jget(j, "tools.1.description"));
    assert_string_equal(jstr(j, "tools.1.input_schema.type"), "object");
    assert_true(json_is_object(jget(j, "tools.1.input_schema.properties")));
    assert_string_equal(jstr(j, "tools.1.cache_control.type"), "ephemeral");
    assert_string_equal(jstr(j, "tool_choice.type"), "any");
    assert_true(json_is_true(jget(j, "tool_choice.disable_parallel_tool_use")));
    json_decref(j);
}

static void test_encode_tool_choice(void **state)
{
    (void)state;
    static const struct {
        enum sb_tool_choice tc;
        int parallel;
        const char *type; /* NULL: no tool_choice */
        bool disable;
    } cases[] = {
        {SB_TC_UNSET, -1, NULL, false}, {SB_TC_UNSET, 0, "auto", true},
        {SB_TC_UNSET, 1, NULL, false},  {SB_TC_AUTO, -1, "auto", false},
        {SB_TC_NONE, 0, "none", false}, {SB_TC_REQUIRED, 1, "any", false},
        {SB_TC_NAMED, 0, "tool", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sb_canon_req r;
        req_init(&r);
        add_text(add_msg(&r, SB_ROLE_USER), "x");
        r.ntools = 1;
        r.tools = calloc(1, sizeof *r.tools);
        r.tools[0].name = dup("f");
        r.tool_choice = cases[i].tc;
        r.parallel_tool_calls = cases[i].parallel;
        if (cases[i].tc == SB_TC_NAMED)
            r.tool_choice_name = dup("f");
        json_t *j = encode_ok(&r);
        if (!cases[i].type) {
            assert_null(jget(j, "tool_choice"));
        } else {
            assert_string_equal(jstr(j, "tool_choice.type"), cases[i].type);
            assert_int_equal(json_is_true(jget(j, "tool_choice.disable_parallel_tool_use")),
                             cases[i].disable);
        }
        if (cases[i].tc == SB_TC_NAMED)
            assert_string_equal(jstr(j, "tool_choice.name"), "f");
        json_decref(j);
    }

    /* tool_choice without tools is not sent. */
    struct sb_canon_req r;
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "x");
    r.tool_choice = SB_TC_AUTO;
    json_t *j = encode_ok(&r);
    assert_null(jget(j, "tool_choice"));
    json_decref(j);
}

static void test_encode_thinking(void **state)
{
    (void)state;
    struct sb_canon_req r;
    /* effort -> budget; max_tokens raised above it; sampling knobs left out */
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "x");
    r.reasoning_effort = dup("high");
    r.max_tokens = 1000;
    r.has_temperature = true;
    r.temperature = 0.2;
    r.top_k = 5;
    json_t *j = encode_ok(&r);
    assert_string_equal(jstr(j, "thinking.type"), "enabled");
    assert_int_equal(json_integer_value(jget(j, "thinking.budget_tokens")), 4096);
    assert_int_equal(json_integer_value(jget(j, "max_tokens")), 4096 + SB_CANON_DEFAULT_MAX_TOKENS);
    assert_null(jget(j, "temperature"));
    assert_null(jget(j, "top_k"));
    json_decref(j);

    /* small budget raised to 1024; a large enough max_tokens kept */
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "x");
    r.thinking_budget = 500;
    r.max_tokens = 20000;
    j = encode_ok(&r);
    assert_int_equal(json_integer_value(jget(j, "thinking.budget_tokens")), 1024);
    assert_int_equal(json_integer_value(jget(j, "max_tokens")), 20000);
    json_decref(j);

    /* default max_tokens equal to the budget is raised */
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "x");
    r.thinking_budget = SB_CANON_DEFAULT_MAX_TOKENS;
    j = encode_ok(&r);
    assert_int_equal(json_integer_value(jget(j, "max_tokens")), 2 * SB_CANON_DEFAULT_MAX_TOKENS);
    json_decref(j);

    /* budget 0 and effort none: no thinking */
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "x");
    r.thinking_budget = 0;
    r.reasoning_effort = dup("high");
    j = encode_ok(&r);
    assert_null(jget(j, "thinking"));
    json_decref(j);
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "x");
    r.reasoning_effort = dup("none");
    j = encode_ok(&r);
    assert_null(jget(j, "thinking"));
    assert_int_equal(json_integer_value(jget(j, "max_tokens")), SB_CANON_DEFAULT_MAX_TOKENS);
    json_decref(j);
}

static void test_encode_media_and_formats(void **state)
{
    (void)state;
    struct sb_canon_req r;
    req_init(&r);
    struct sb_msg *u = add_msg(&r, SB_ROLE_USER);
    add_text(u, "look");
    struct sb_part *p = add_part(u, SB_PART_IMAGE);
    p->media_type = dup("image/jpeg");
    p->data = dup("/9j/4AAQ");
    p->detail = dup("high");
    p = add_part(u, SB_PART_IMAGE);
    p->url = dup("https://example.com/cat.png");
    p->cache_control = json_pack("{s:s,s:s}", "type", "ephemeral", "ttl", "1h");
    p = add_part(u, SB_PART_DOCUMENT);
    p->data = dup("JVBERi0=");
    p = add_part(u, SB_PART_DOCUMENT);
    p->url = dup("https://example.com/a.pdf");
    r.response_format = SB_RF_JSON_SCHEMA;
    r.rf_name = dup("out");
    r.rf_schema = json_pack("{s:s}", "type", "object");
    r.cache_control = json_pack("{s:s}", "type", "ephemeral");
    json_t *j = encode_ok(&r);
    json_t *c = jget(j, "messages.0.content");
    assert_int_equal(json_array_size(c), 5);
    assert_string_equal(jstr(c, "1.type"), "image");
    assert_string_equal(jstr(c, "1.source.type"), "base64");
    assert_string_equal(jstr(c, "1.source.media_type"), "image/jpeg");
    assert_string_equal(jstr(c, "1.source.data"), "/9j/4AAQ");
    assert_null(jget(c, "1.detail"));
    assert_string_equal(jstr(c, "2.source.type"), "url");
    assert_string_equal(jstr(c, "2.source.url"), "https://example.com/cat.png");
    assert_string_equal(jstr(c, "2.cache_control.ttl"), "1h");
    assert_string_equal(jstr(c, "3.type"), "document");
    assert_string_equal(jstr(c, "3.source.media_type"), "application/pdf");
    assert_string_equal(jstr(c, "4.source.url"), "https://example.com/a.pdf");
    assert_string_equal(jstr(j, "output_config.format.type"), "json_schema");
    assert_string_equal(jstr(j, "output_config.format.schema.type"), "object");
    assert_string_equal(jstr(j, "cache_control.type"), "ephemeral");
    json_decref(j);

    /* One cached system text stays an array. */
    req_init(&r);
    struct sb_msg *s = add_msg(&r, SB_ROLE_SYSTEM);
    add_text(s, "cached");
    s->parts[0].cache_control = json_pack("{s:s}", "type", "ephemeral");
    add_text(add_msg(&r, SB_ROLE_USER), "x");
    j = encode_ok(&r);
    assert_true(json_is_array(jget(j, "system")));
    assert_string_equal(jstr(j, "system.0.cache_control.type"), "ephemeral");
    json_decref(j);
}

static void test_encode_refusals(void **state)
{
    (void)state;
    struct sb_canon_req r;
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "x");
    r.n = 2;
    encode_fails(&r, 400, "n", "unsupported_parameter");

    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "x");
    r.n = 1;
    r.logprobs = true;
    encode_fails(&r, 400, "logprobs", "unsupported_parameter");

    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "x");
    r.response_format = SB_RF_JSON_OBJECT;
    encode_fails(&r, 400, "response_format", "unsupported_parameter");

    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "x");
    r.response_format = SB_RF_JSON_SCHEMA;
    encode_fails(&r, 400, "response_format", NULL);

    req_init(&r);
    struct sb_part *p = add_part(add_msg(&r, SB_ROLE_USER), SB_PART_IMAGE);
    p->data = dup("AAAA");
    encode_fails(&r, 400, "messages", NULL);

    req_init(&r);
    add_part(add_msg(&r, SB_ROLE_USER), SB_PART_IMAGE)->url = dup("gs://bucket/x.png");
    encode_fails(&r, 400, "messages", NULL);

    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "x");
    add_part(add_msg(&r, SB_ROLE_ASSISTANT), SB_PART_TOOL_CALL)->name = dup("f");
    encode_fails(&r, 400, "messages", NULL);

    req_init(&r);
    add_part(add_msg(&r, SB_ROLE_TOOL), SB_PART_TOOL_RESULT);
    encode_fails(&r, 400, "messages", NULL);

    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "x");
    r.ntools = 1;
    r.tools = calloc(1, sizeof *r.tools);
    encode_fails(&r, 400, "tools", NULL);

    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "x");
    r.ntools = 1;
    r.tools = calloc(1, sizeof *r.tools);
    r.tools[0].name = dup("f");
    r.tool_choice = SB_TC_NAMED;
    encode_fails(&r, 400, "tool_choice", NULL);

    /* The body does not fit the caller's buffer. */
    req_init(&r);
    add_text(add_msg(&r, SB_ROLE_USER), "a message longer than the tiny buffer below");
    struct sb_buf b;
    sb_buf_init(&b, 32);
    struct sb_error err;
    assert_int_equal(C->encode_request(&r, "m", &b, &err), -1);
    assert_int_equal(err.status, 413);
    assert_int_equal(b.len, 0);
    sb_buf_free(&b);
    sb_canon_req_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_response_text),
        cmocka_unit_test(test_response_tool_use),
        cmocka_unit_test(test_response_thinking),
        cmocka_unit_test(test_response_synthetic),
        cmocka_unit_test(test_response_errors),
        cmocka_unit_test(test_fast_and_tree_agree),
        cmocka_unit_test(test_stream_text),
        cmocka_unit_test(test_stream_cache_read),
        cmocka_unit_test(test_stream_tool_use),
        cmocka_unit_test(test_stream_thinking),
        cmocka_unit_test(test_stream_error_event),
        cmocka_unit_test(test_stream_renumber_and_skip),
        cmocka_unit_test(test_stream_invalid),
        cmocka_unit_test(test_stream_cut_stop_big),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_encode_basic),
        cmocka_unit_test(test_encode_system_and_merging),
        cmocka_unit_test(test_encode_tools_roundtrip),
        cmocka_unit_test(test_encode_tool_choice),
        cmocka_unit_test(test_encode_thinking),
        cmocka_unit_test(test_encode_media_and_formats),
        cmocka_unit_test(test_encode_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

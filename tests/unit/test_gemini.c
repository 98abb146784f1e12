#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "canon/codecs.h"
#include "canon/gemini.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIX SB_SOURCE_DIR "/tests/data/fixtures/gemini/"
#define CAP (1024 * 1024)

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    buf[n] = '\0';
    fclose(f);
    *len = (size_t)n;
    return buf;
}

/* ---- collecting events ------------------------------------------------------------------ */

struct coll {
    struct sb_canon_resp resp;
    int types[256]; /* event types in order */
    size_t ntypes;
    int stop_after; /* > 0: ask the decoder to stop at that event */
    struct sb_canon_error err;
    bool has_err;
};

static int on_event(void *ud, const struct sb_canon_event *ev)
{
    struct coll *c = ud;
    if (c->ntypes < 256)
        c->types[c->ntypes] = ev->type;
    c->ntypes++;
    if (ev->type == SB_EV_ERROR) {
        assert_non_null(ev->error);
        c->err = *ev->error;
        c->has_err = true;
    }
    /* The aggregator checks the order (one block at a time, numbered 0..n-1). */
    assert_int_equal(sb_canon_resp_event(&c->resp, ev), 0);
    if (c->stop_after > 0 && (int)c->ntypes >= c->stop_after)
        return 1;
    return 0;
}

static void coll_init(struct coll *c)
{
    memset(c, 0, sizeof *c);
    sb_canon_resp_init(&c->resp, CAP);
}

static void coll_free(struct coll *c)
{
    sb_canon_resp_free(&c->resp);
}

static const char *block_text(const struct coll *c, size_t i)
{
    assert_true(i < c->resp.nblocks);
    return c->resp.blocks[i].text.data ? c->resp.blocks[i].text.data : "";
}

static int decode_body(const char *body, struct coll *c)
{
    coll_init(c);
    return sb_codec_gemini.decode_response(body, strlen(body), on_event, c);
}

static int decode_fixture(const char *name, struct coll *c)
{
    size_t len;
    char *body = read_file(name, &len);
    coll_init(c);
    int rc = sb_codec_gemini.decode_response(body, len, on_event, c);
    free(body);
    return rc;
}

/* Feeds a stream whole (step 0) or `step` bytes at a time; returns stream_end's code, or the
 * first non-zero feed code. */
static int stream_run(const char *data, size_t len, size_t step, struct coll *c)
{
    coll_init(c);
    void *st = sb_codec_gemini.stream_new(CAP);
    assert_non_null(st);
    int rc = 0;
    if (step == 0)
        step = len ? len : 1;
    for (size_t off = 0; off < len && rc == 0; off += step) {
        size_t n = len - off < step ? len - off : step;
        rc = sb_codec_gemini.stream_feed(st, data + off, n, on_event, c);
    }
    if (rc == 0)
        rc = sb_codec_gemini.stream_end(st, on_event, c);
    sb_codec_gemini.stream_free(st);
    return rc;
}

static int stream_fixture(const char *name, size_t step, struct coll *c)
{
    size_t len;
    char *body = read_file(name, &len);
    int rc = stream_run(body, len, step, c);
    free(body);
    return rc;
}

static void assert_args(const char *text, const char *expected)
{
    json_t *a = json_loads(text, 0, NULL);
    json_t *b = json_loads(expected, 0, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
}

static void assert_synth_id(const char *id)
{
    assert_non_null(id);
    assert_int_equal(strlen(id), 29);
    assert_memory_equal(id, "call_", 5);
    for (size_t i = 5; i < 29; i++)
        assert_true((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z') ||
                    (id[i] >= '0' && id[i] <= '9'));
}

/* ---- decode_response: fixtures --------------------------------------------------------- */

static void test_response_text(void **state)
{
    (void)state;
    struct coll c;
    assert_int_equal(decode_fixture(FIX "generate_content_text.response.json", &c), 0);
    assert_string_equal(c.resp.id, "udSfaNTNEPP0n9kPrJGHuQ4");
    assert_string_equal(c.resp.model, "gemini-2.0-flash");
    assert_int_equal(c.resp.nblocks, 1);
    assert_int_equal(c.resp.blocks[0].kind, SB_BLOCK_TEXT);
    assert_memory_equal(block_text(&c, 0), "The sky is blue because", 23);
    assert_non_null(strstr(block_text(&c, 0), "go straight through.\n"));
    assert_true(c.resp.finished);
    assert_int_equal(c.resp.finish, SB_FINISH_STOP);
    assert_int_equal(c.resp.usage.input, 6);
    assert_int_equal(c.resp.usage.output, 353);
    assert_int_equal(c.resp.usage.cache_read, -1);
    assert_int_equal(c.resp.usage.reasoning, -1);
    /* START, BLOCK_START, DELTA, BLOCK_STOP, FINISH, USAGE */
    assert_int_equal(c.ntypes, 6);
    assert_int_equal(c.types[0], SB_EV_START);
    assert_int_equal(c.types[4], SB_EV_FINISH);
    assert_int_equal(c.types[5], SB_EV_USAGE);
    coll_free(&c);
}

static void test_response_function_call(void **state)
{
    (void)state;
    struct coll c;
    assert_int_equal(decode_fixture(FIX "generate_content_function_call.response.json", &c), 0);
    assert_string_equal(c.resp.id, "x9SfaLCQBs7shMIP2Mei0AI");
    assert_int_equal(c.resp.nblocks, 1);
    assert_int_equal(c.resp.blocks[0].kind, SB_BLOCK_TOOL_CALL);
    assert_string_equal(c.resp.blocks[0].name, "customDivide");
    assert_synth_id(c.resp.blocks[0].id);
    assert_args(block_text(&c, 0), "{\"denominator\":2,\"numerator\":100}");
    assert_int_equal(c.resp.finish, SB_FINISH_TOOL_CALLS);
    assert_int_equal(c.resp.usage.input, 21);
    assert_int_equal(c.resp.usage.output, 6);
    coll_free(&c);
}

static void test_response_after_function_response(void **state)
{
    (void)state;
    struct coll c;
    assert_int_equal(
        decode_fixture(FIX "generate_content_function_response_turn.response.json", &c), 0);
    assert_int_equal(c.resp.nblocks, 1);
    assert_string_equal(block_text(&c, 0), "I've divided 10 by 2 using the customDivide "
                                           "function, and the result is 42.\n");
    assert_int_equal(c.resp.finish, SB_FINISH_STOP);
    assert_int_equal(c.resp.usage.input, 27);
    assert_int_equal(c.resp.usage.output, 25);
    coll_free(&c);
}

/* ---- decode_response: hand-written ------------------------------------------------------ */

static void test_response_thoughts_signatures_usage(void **state)
{
    (void)state;
    struct coll c;
    const char *body =
        "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":["
        "{\"text\":\"think 1 \",\"thought\":true},{\"text\":\"think 2\",\"thought\":true,"
        "\"thoughtSignature\":\"SIGT\"},"
        "{\"text\":\"Hello \"},{\"text\":\"world\"},"
        "{\"text\":\"signed\",\"thoughtSignature\":\"SIGX\"},"
        "{\"functionCall\":{\"name\":\"f\",\"args\":{\"a\":[1,2]},\"id\":\"abc123\"},"
        "\"thoughtSignature\":\"SIGF\"},"
        "{\"functionCall\":{\"name\":\"g\"}},{\"inlineData\":{\"mimeType\":\"image/png\","
        "\"data\":\"AAAA\"},\"thoughtSignature\":\"SIGI\"}]},\"finishReason\":\"STOP\"}],"
        "\"usageMetadata\":{\"promptTokenCount\":100,\"cachedContentTokenCount\":40,"
        "\"candidatesTokenCount\":10,\"thoughtsTokenCount\":5,\"toolUsePromptTokenCount\":7,"
        "\"totalTokenCount\":122},\"modelVersion\":\"gemini-3-pro\",\"responseId\":\"r1\"}";
    assert_int_equal(decode_body(body, &c), 0);
    assert_int_equal(c.resp.nblocks, 8);
    /* thoughts share one block; its signature closes it */
    assert_int_equal(c.resp.blocks[0].kind, SB_BLOCK_THINKING);
    assert_string_equal(block_text(&c, 0), "think 1 think 2");
    assert_string_equal(c.resp.blocks[0].signature, "SIGT");
    /* consecutive text parts share one TEXT block */
    assert_int_equal(c.resp.blocks[1].kind, SB_BLOCK_TEXT);
    assert_string_equal(block_text(&c, 1), "Hello world");
    /* a signature on a text part: an empty THINKING block right before a new TEXT block */
    assert_int_equal(c.resp.blocks[2].kind, SB_BLOCK_THINKING);
    assert_int_equal(c.resp.blocks[2].text.len, 0);
    assert_string_equal(c.resp.blocks[2].signature, "SIGX");
    assert_int_equal(c.resp.blocks[3].kind, SB_BLOCK_TEXT);
    assert_string_equal(block_text(&c, 3), "signed");
    assert_int_equal(c.resp.blocks[4].kind, SB_BLOCK_THINKING);
    assert_string_equal(c.resp.blocks[4].signature, "SIGF");
    assert_int_equal(c.resp.blocks[5].kind, SB_BLOCK_TOOL_CALL);
    assert_string_equal(c.resp.blocks[5].id, "abc123");
    assert_string_equal(c.resp.blocks[5].name, "f");
    assert_string_equal(block_text(&c, 5), "{\"a\":[1,2]}");
    assert_int_equal(c.resp.blocks[6].kind, SB_BLOCK_TOOL_CALL);
    assert_synth_id(c.resp.blocks[6].id);
    assert_string_equal(block_text(&c, 6), "{}");
    /* a part with no canonical block keeps its signature */
    assert_int_equal(c.resp.blocks[7].kind, SB_BLOCK_THINKING);
    assert_string_equal(c.resp.blocks[7].signature, "SIGI");
    assert_int_equal(c.resp.finish, SB_FINISH_TOOL_CALLS);
    /* input = prompt - cached + toolUse; output = candidates + thoughts */
    assert_int_equal(c.resp.usage.input, 67);
    assert_int_equal(c.resp.usage.cache_read, 40);
    assert_int_equal(c.resp.usage.cache_write, -1);
    assert_int_equal(c.resp.usage.output, 15);
    assert_int_equal(c.resp.usage.reasoning, 5);
    assert_int_equal(sb_usage_prompt(&c.resp.usage), 107);
    coll_free(&c);
}

static void test_response_finish_reasons(void **state)
{
    (void)state;
    static const struct {
        const char *reason;
        enum sb_finish f;
    } cases[] = {
        {"STOP", SB_FINISH_STOP},
        {"MAX_TOKENS", SB_FINISH_LENGTH},
        {"SAFETY", SB_FINISH_CONTENT_FILTER},
        {"RECITATION", SB_FINISH_CONTENT_FILTER},
        {"PROHIBITED_CONTENT", SB_FINISH_CONTENT_FILTER},
        {"OTHER", SB_FINISH_CONTENT_FILTER},
        {"MALFORMED_FUNCTION_CALL", SB_FINISH_STOP},
        {"SOMETHING_NEW", SB_FINISH_STOP},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[256];
        snprintf(body, sizeof body,
                 "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]},"
                 "\"finishReason\":\"%s\"}]}",
                 cases[i].reason);
        struct coll c;
        assert_int_equal(decode_body(body, &c), 0);
        assert_int_equal(c.resp.finish, cases[i].f);
        assert_string_equal(block_text(&c, 0), "x");
        coll_free(&c);
    }
    /* MAX_TOKENS with a call is not overridden */
    struct coll c;
    assert_int_equal(decode_body("{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":"
                                 "{\"name\":\"f\",\"args\":{}}}]},\"finishReason\":"
                                 "\"MAX_TOKENS\"}]}",
                                 &c),
                     0);
    assert_int_equal(c.resp.finish, SB_FINISH_LENGTH);
    coll_free(&c);
}

static void test_response_blocked_and_errors(void **state)
{
    (void)state;
    struct coll c;
    assert_int_equal(decode_body("{\"promptFeedback\":{\"blockReason\":\"SAFETY\"},"
                                 "\"usageMetadata\":{\"promptTokenCount\":9}}",
                                 &c),
                     0);
    assert_int_equal(c.resp.nblocks, 0);
    assert_true(c.resp.finished);
    assert_int_equal(c.resp.finish, SB_FINISH_CONTENT_FILTER);
    assert_int_equal(c.resp.usage.input, 9);
    assert_int_equal(c.resp.usage.output, 0);
    coll_free(&c);

    assert_int_equal(decode_body("{\"error\":{\"code\":503,\"message\":\"busy\",\"status\":"
                                 "\"UNAVAILABLE\"}}",
                                 &c),
                     0);
    assert_true(c.has_err);
    assert_int_equal(c.ntypes, 1);
    assert_int_equal(c.err.status, 503);
    assert_int_equal(c.err.kind, SB_ERRK_OVERLOADED);
    assert_string_equal(c.err.message, "busy");
    coll_free(&c);

    static const char *const bad[] = {"",           "nope", "[]", "42", "{}", "{\"candidates\":[",
                                      "{\"foo\":1}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(decode_body(bad[i], &c), SB_CANON_E_INVALID);
        coll_free(&c);
    }
    /* the emit callback can stop the decoder */
    coll_init(&c);
    c.stop_after = 2;
    const char *body = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]}}]}";
    assert_int_equal(sb_codec_gemini.decode_response(body, strlen(body), on_event, &c),
                     SB_CANON_E_STOP);
    assert_int_equal(c.ntypes, 2);
    coll_free(&c);
}

/* ---- streams ---------------------------------------------------------------------------- */

static void check_same(const struct coll *a, const struct coll *b)
{
    assert_int_equal(a->resp.nblocks, b->resp.nblocks);
    for (size_t i = 0; i < a->resp.nblocks; i++) {
        assert_int_equal(a->resp.blocks[i].kind, b->resp.blocks[i].kind);
        assert_string_equal(block_text(a, i), block_text(b, i));
        if (a->resp.blocks[i].kind == SB_BLOCK_TOOL_CALL &&
            strncmp(a->resp.blocks[i].id, "call_", 5))
            assert_string_equal(a->resp.blocks[i].id, b->resp.blocks[i].id);
    }
    assert_int_equal(a->resp.finish, b->resp.finish);
    assert_memory_equal(&a->resp.usage, &b->resp.usage, sizeof a->resp.usage);
}

/* Whole, one byte at a time, and 7 bytes at a time must agree. */
static void stream_all_ways(const char *name, struct coll *c)
{
    struct coll one, seven;
    assert_int_equal(stream_fixture(name, 0, c), 0);
    assert_int_equal(stream_fixture(name, 1, &one), 0);
    assert_int_equal(stream_fixture(name, 7, &seven), 0);
    check_same(c, &one);
    check_same(c, &seven);
    assert_int_equal(c->ntypes, one.ntypes);
    coll_free(&one);
    coll_free(&seven);
    /* exactly one FINISH then one USAGE, last */
    assert_true(c->ntypes >= 2);
    assert_int_equal(c->types[c->ntypes - 2], SB_EV_FINISH);
    assert_int_equal(c->types[c->ntypes - 1], SB_EV_USAGE);
}

static void test_stream_text(void **state)
{
    (void)state;
    struct coll c;
    stream_all_ways(FIX "stream_text.reconstructed.sse", &c);
    assert_string_equal(c.resp.id, "pdSfaOurIPqAm9IPucqbqA4");
    assert_string_equal(c.resp.model, "gemini-2.0-flash");
    assert_int_equal(c.resp.nblocks, 1);
    assert_int_equal(c.resp.blocks[0].kind, SB_BLOCK_TEXT);
    assert_memory_equal(block_text(&c, 0), "The sky is blue due to a phenomenon", 35);
    const char *t = block_text(&c, 0);
    const char *tail = "or even a hazy appearance.";
    assert_string_equal(t + strlen(t) - strlen(tail), tail);
    assert_int_equal(c.resp.finish, SB_FINISH_STOP);
    /* the last usageMetadata, not the first */
    assert_int_equal(c.resp.usage.input, 6);
    assert_int_equal(c.resp.usage.output, 377);
    coll_free(&c);
}

static void test_stream_text_with_thoughts(void **state)
{
    (void)state;
    struct coll c;
    stream_all_ways(FIX "stream_text_with_thoughts.sse", &c);
    assert_string_equal(c.resp.model, "gemini-2.5-flash");
    assert_int_equal(c.resp.nblocks, 2);
    assert_int_equal(c.resp.blocks[0].kind, SB_BLOCK_THINKING);
    assert_memory_equal(block_text(&c, 0), "**Defining Atmospheric Color**", 30);
    assert_non_null(strstr(block_text(&c, 0), "**Condensing Final Explanation**"));
    assert_null(c.resp.blocks[0].signature);
    assert_int_equal(c.resp.blocks[1].kind, SB_BLOCK_TEXT);
    assert_memory_equal(block_text(&c, 1), "The sky is blue because the Earth's atmosphere", 46);
    assert_int_equal(c.resp.finish, SB_FINISH_STOP);
    assert_int_equal(c.resp.usage.input, 12);
    assert_int_equal(c.resp.usage.output, 35 + 697);
    assert_int_equal(c.resp.usage.reasoning, 697);
    coll_free(&c);
}

static void test_stream_function_call_gemini3(void **state)
{
    (void)state;
    struct coll c;
    stream_all_ways(FIX "stream_function_call_with_thoughts_gemini3.sse", &c);
    assert_string_equal(c.resp.id, "VYEPauj2Noe3jMcP_dvjoQg");
    assert_string_equal(c.resp.model, "gemini-3.1-pro-preview");
    assert_int_equal(c.resp.nblocks, 4);
    assert_int_equal(c.resp.blocks[0].kind, SB_BLOCK_THINKING);
    assert_memory_equal(block_text(&c, 0), "**Defining the Problem**", 24);
    assert_int_equal(c.resp.blocks[1].kind, SB_BLOCK_TEXT);
    assert_memory_equal(block_text(&c, 1), "To determine which of these three cities", 40);
    assert_non_null(strstr(block_text(&c, 1), "Cairo is the only city on this list"));
    /* the functionCall's signature: an empty THINKING block right before it */
    assert_int_equal(c.resp.blocks[2].kind, SB_BLOCK_THINKING);
    assert_int_equal(c.resp.blocks[2].text.len, 0);
    assert_non_null(c.resp.blocks[2].signature);
    assert_int_equal(strlen(c.resp.blocks[2].signature), 1404);
    assert_memory_equal(c.resp.blocks[2].signature, "Ep", 2);
    assert_int_equal(c.resp.blocks[3].kind, SB_BLOCK_TOOL_CALL);
    assert_string_equal(c.resp.blocks[3].id, "u959pftr");
    assert_string_equal(c.resp.blocks[3].name, "get_weather");
    assert_args(block_text(&c, 3), "{\"country\":\"Egypt\",\"unit\":\"C\",\"city\":\"Cairo\"}");
    assert_int_equal(c.resp.finish, SB_FINISH_TOOL_CALLS);
    assert_int_equal(c.resp.usage.input, 135);
    assert_int_equal(c.resp.usage.output, 136 + 226);
    assert_int_equal(c.resp.usage.reasoning, 226);
    coll_free(&c);
}

static void test_stream_function_call(void **state)
{
    (void)state;
    struct coll c;
    stream_all_ways(FIX "stream_function_call.reconstructed.sse", &c);
    assert_int_equal(c.resp.nblocks, 1);
    assert_int_equal(c.resp.blocks[0].kind, SB_BLOCK_TOOL_CALL);
    assert_synth_id(c.resp.blocks[0].id);
    assert_string_equal(c.resp.blocks[0].name, "customDivide");
    assert_args(block_text(&c, 0), "{\"denominator\":2,\"numerator\":100}");
    assert_int_equal(c.resp.finish, SB_FINISH_TOOL_CALLS);
    assert_int_equal(c.resp.usage.input, 21);
    assert_int_equal(c.resp.usage.output, 6);
    coll_free(&c);
}

static void test_stream_cut_and_errors(void **state)
{
    (void)state;
    struct coll c;
    /* a stream without a finishReason is cut */
    size_t len;
    char *body = read_file(FIX "stream_text_with_thoughts.sse", &len);
    const char *last = strstr(body, "\"finishReason\"");
    assert_non_null(last);
    while (last > body && !(last[0] == 'd' && last[-1] == '\n'))
        last--;
    assert_int_equal(stream_run(body, (size_t)(last - body), 1, &c), SB_CANON_E_CUT);
    assert_false(c.resp.finished);
    coll_free(&c);
    free(body);
    assert_int_equal(stream_run("", 0, 0, &c), SB_CANON_E_CUT);
    assert_int_equal(c.ntypes, 0);
    coll_free(&c);

    /* an error chunk in a 200 stream: one ERROR, the rest ignored */
    const char *err =
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\r\n\r\n"
        "data: {\"error\":{\"code\":429,\"message\":\"slow down\",\"status\":"
        "\"RESOURCE_EXHAUSTED\",\"details\":[{\"@type\":\"type.googleapis.com/"
        "google.rpc.RetryInfo\",\"retryDelay\":\"2s\"}]}}\r\n\r\n"
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]}}]}\r\n\r\n";
    for (size_t step = 0; step <= 1; step++) {
        assert_int_equal(stream_run(err, strlen(err), step, &c), 0);
        assert_true(c.has_err);
        assert_int_equal(c.err.status, 429);
        assert_int_equal(c.err.kind, SB_ERRK_RATE_LIMIT);
        assert_int_equal(c.err.retry_after_ms, 2000);
        assert_int_equal(c.types[c.ntypes - 1], SB_EV_ERROR);
        assert_string_equal(block_text(&c, 0), "a");
        coll_free(&c);
    }
    /* a plain JSON error body, whole or split */
    body = read_file(FIX "error_404_model_not_found.json", &len);
    for (size_t step = 0; step <= 1; step++) {
        assert_int_equal(stream_run(body, len, step, &c), 0);
        assert_true(c.has_err);
        assert_int_equal(c.err.status, 404);
        assert_int_equal(c.err.kind, SB_ERRK_NOT_FOUND);
        coll_free(&c);
    }
    free(body);
    /* the array form some streaming endpoints return */
    const char *arr = "[{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"x\"}]}}]},"
                      "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"y\"}]},"
                      "\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":3,"
                      "\"candidatesTokenCount\":2}}]";
    assert_int_equal(stream_run(arr, strlen(arr), 1, &c), 0);
    assert_string_equal(block_text(&c, 0), "xy");
    assert_int_equal(c.resp.usage.output, 2);
    coll_free(&c);
    const char *aerr = "[{\"error\":{\"code\":500,\"status\":\"INTERNAL\"}}]";
    assert_int_equal(stream_run(aerr, strlen(aerr), 0, &c), 0);
    assert_int_equal(c.err.kind, SB_ERRK_SERVER);
    coll_free(&c);
    assert_int_equal(stream_run("{\"candid", 8, 0, &c), SB_CANON_E_CUT);
    coll_free(&c);
    /* invalid JSON in an event */
    assert_int_equal(stream_run("data: {nope\r\n\r\n", 15, 0, &c), SB_CANON_E_INVALID);
    coll_free(&c);
    /* the empty last text part opens no block; comments and [DONE] are ignored */
    const char *s = ": keep-alive\n\ndata: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":"
                    "\"\"}]},\"finishReason\":\"STOP\"}]}\n\ndata: [DONE]\n\n";
    assert_int_equal(stream_run(s, strlen(s), 1, &c), 0);
    assert_int_equal(c.resp.nblocks, 0);
    assert_true(c.resp.finished);
    coll_free(&c);
    /* an event past the bound */
    void *st = sb_codec_gemini.stream_new(16);
    coll_init(&c);
    const char *big = "data: {\"candidates\":[{\"content\":{}}]}\n\n";
    assert_int_equal(sb_codec_gemini.stream_feed(st, big, strlen(big), on_event, &c), -E2BIG);
    sb_codec_gemini.stream_free(st);
    coll_free(&c);
    /* stop asked by the callback */
    coll_init(&c);
    c.stop_after = 1;
    st = sb_codec_gemini.stream_new(CAP);
    const char *one = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}]}\n\n";
    assert_int_equal(sb_codec_gemini.stream_feed(st, one, strlen(one), on_event, &c),
                     SB_CANON_E_STOP);
    sb_codec_gemini.stream_free(st);
    coll_free(&c);
}

/* ---- decode_error ----------------------------------------------------------------------- */

static void error_fixture(const char *name, int status, struct sb_canon_error *e)
{
    size_t len;
    char *body = read_file(name, &len);
    assert_int_equal(sb_codec_gemini.decode_error(status, body, len, e), 0);
    free(body);
}

static void test_errors_fixtures(void **state)
{
    (void)state;
    struct sb_canon_error e;
    error_fixture(FIX "error_400_api_key_invalid.json", 400, &e);
    assert_int_equal(e.status, 401);
    assert_int_equal(e.kind, SB_ERRK_AUTH);
    assert_string_equal(e.type, "INVALID_ARGUMENT");
    assert_string_equal(e.message, "API key not valid. Please pass a valid API key.");
    assert_int_equal(e.retry_after_ms, -1);

    error_fixture(FIX "error_400_thinking_level.json", 400, &e);
    assert_int_equal(e.status, 400);
    assert_int_equal(e.kind, SB_ERRK_INVALID_REQUEST);
    assert_non_null(strstr(e.message, "thinking level"));

    error_fixture(FIX "error_404_model_not_found.json", 404, &e);
    assert_int_equal(e.status, 404);
    assert_int_equal(e.kind, SB_ERRK_NOT_FOUND);
    assert_string_equal(e.type, "NOT_FOUND");
    assert_memory_equal(e.message, "models/custom-gemini-2.0-flash is not found", 43);

    error_fixture(FIX "error_429_resource_exhausted.json", 429, &e);
    assert_int_equal(e.status, 429);
    assert_int_equal(e.kind, SB_ERRK_RATE_LIMIT);
    assert_string_equal(e.type, "RESOURCE_EXHAUSTED");
    assert_int_equal(e.retry_after_ms, 34400);
}

static void error_body(int status, const char *body, struct sb_canon_error *e)
{
    assert_int_equal(sb_codec_gemini.decode_error(status, body, strlen(body), e), 0);
}

static void test_errors_hand(void **state)
{
    (void)state;
    static const struct {
        int http;
        const char *status;
        enum sb_err_kind kind;
    } cases[] = {
        {401, "UNAUTHENTICATED", SB_ERRK_AUTH},
        {403, "PERMISSION_DENIED", SB_ERRK_PERMISSION},
        {400, "FAILED_PRECONDITION", SB_ERRK_INVALID_REQUEST},
        {500, "INTERNAL", SB_ERRK_SERVER},
        {503, "UNAVAILABLE", SB_ERRK_OVERLOADED},
        {504, "DEADLINE_EXCEEDED", SB_ERRK_TIMEOUT},
        {409, "ABORTED", SB_ERRK_INVALID_REQUEST},
        {502, "WHATEVER", SB_ERRK_SERVER},
    };
    struct sb_canon_error e;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[200];
        snprintf(body, sizeof body,
                 "{\"error\":{\"code\":%d,\"message\":\"m%zu\",\"status\":\"%s\"}}", cases[i].http,
                 i, cases[i].status);
        error_body(cases[i].http, body, &e);
        assert_int_equal(e.kind, cases[i].kind);
        assert_int_equal(e.status, cases[i].http);
        assert_string_equal(e.type, cases[i].status);
    }
    error_body(
        400,
        "{\"error\":{\"code\":400,\"message\":\"The input token count (1200000) exceeds "
        "the maximum number of tokens allowed (1048576).\",\"status\":\"INVALID_ARGUMENT\"}}",
        &e);
    assert_int_equal(e.kind, SB_ERRK_CONTEXT_WINDOW);
    /* the array form */
    error_body(429,
               "[{\"error\":{\"code\":429,\"message\":\"q\",\"status\":\"RESOURCE_EXHAUSTED\","
               "\"details\":[{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\","
               "\"retryDelay\":\"0.5s\"}]}}]",
               &e);
    assert_int_equal(e.kind, SB_ERRK_RATE_LIMIT);
    assert_int_equal(e.retry_after_ms, 500);
    error_body(429,
               "{\"error\":{\"status\":\"RESOURCE_EXHAUSTED\",\"details\":[{\"@type\":"
               "\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"1s\"}]}}",
               &e);
    assert_int_equal(e.retry_after_ms, 1000);
    assert_string_equal(e.message, "gemini returned HTTP 429");
    error_body(429,
               "{\"error\":{\"status\":\"RESOURCE_EXHAUSTED\",\"details\":[{\"@type\":"
               "\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"soon\"}]}}",
               &e);
    assert_int_equal(e.retry_after_ms, -1);
    /* not JSON, empty, JSON without error */
    error_body(502, "<html>bad gateway</html>", &e);
    assert_int_equal(e.status, 502);
    assert_int_equal(e.kind, SB_ERRK_SERVER);
    assert_string_equal(e.message, "gemini returned HTTP 502");
    assert_int_equal(sb_codec_gemini.decode_error(503, NULL, 0, &e), 0);
    assert_int_equal(e.kind, SB_ERRK_OVERLOADED);
    error_body(404, "{\"foo\":1}", &e);
    assert_int_equal(e.kind, SB_ERRK_NOT_FOUND);
    assert_string_equal(e.type, "");
}

/* ---- encode_request --------------------------------------------------------------------- */

static char *xstrdup(const char *s)
{
    if (!s)
        return NULL;
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

static struct sb_part text_part(const char *t)
{
    struct sb_part p = {.type = SB_PART_TEXT, .text = xstrdup(t)};
    return p;
}

static struct sb_part call_part(const char *id, const char *name, const char *args)
{
    struct sb_part p = {.type = SB_PART_TOOL_CALL,
                        .id = xstrdup(id),
                        .name = xstrdup(name),
                        .arguments = xstrdup(args)};
    return p;
}

static struct sb_part result_part(const char *id, const char *name, const char *text)
{
    struct sb_part p = {.type = SB_PART_TOOL_RESULT, .id = xstrdup(id), .name = xstrdup(name)};
    p.parts = calloc(1, sizeof *p.parts);
    assert_non_null(p.parts);
    p.parts[0] = text_part(text);
    p.nparts = 1;
    return p;
}

static struct sb_part thinking_part(const char *text, const char *sig)
{
    struct sb_part p = {.type = SB_PART_THINKING, .text = xstrdup(text), .signature = xstrdup(sig)};
    return p;
}

static struct sb_part media(enum sb_part_type t, const char *mt, const char *data, const char *url)
{
    struct sb_part p = {
        .type = t, .media_type = xstrdup(mt), .data = xstrdup(data), .url = xstrdup(url)};
    return p;
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

static void add_msg(struct sb_canon_req *r, enum sb_role role, size_t n, ...)
{
    struct sb_msg *m = realloc(r->msgs, (r->nmsgs + 1) * sizeof *m);
    assert_non_null(m);
    r->msgs = m;
    m = &r->msgs[r->nmsgs++];
    memset(m, 0, sizeof *m);
    m->role = role;
    m->parts = calloc(n ? n : 1, sizeof *m->parts);
    assert_non_null(m->parts);
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        m->parts[i] = va_arg(ap, struct sb_part);
    va_end(ap);
    m->nparts = n;
}

static void add_tool(struct sb_canon_req *r, const char *name, const char *schema)
{
    struct sb_tool *t = realloc(r->tools, (r->ntools + 1) * sizeof *t);
    assert_non_null(t);
    r->tools = t;
    t = &r->tools[r->ntools++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->description = xstrdup("d");
    t->strict = -1;
    if (schema) {
        t->parameters = json_loads(schema, 0, NULL);
        assert_non_null(t->parameters);
    }
}

/* Encodes and returns the parsed body (NULL and *err filled when the encoder refuses). */
static json_t *encode(const struct sb_canon_req *r, struct sb_error *err)
{
    struct sb_buf out;
    sb_buf_init(&out, CAP);
    int rc = sb_codec_gemini.encode_request(r, "gemini-2.5-flash", &out, err);
    json_t *j = NULL;
    if (rc == 0) {
        j = json_loadb(out.data, out.len, 0, NULL);
        assert_non_null(j);
    }
    sb_buf_free(&out);
    return j;
}

static void assert_json(const json_t *got, const char *expected)
{
    json_t *e = json_loads(expected, 0, NULL);
    assert_non_null(e);
    if (!json_equal(got, e)) {
        char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
        char *x = json_dumps(e, JSON_COMPACT | JSON_SORT_KEYS);
        print_error("got      %s\nexpected %s\n", g, x);
        free(g);
        free(x);
        fail();
    }
    json_decref(e);
}

static json_t *fixture_json(const char *name)
{
    size_t len;
    char *s = read_file(name, &len);
    json_t *j = json_loadb(s, len, 0, NULL);
    free(s);
    assert_non_null(j);
    return j;
}

/* The recorded requests spell schema types in upper case (OBJECT, NUMBER); Gemini takes
 * either, the encoder passes the client's lower case on. */
static void lower_types(json_t *j)
{
    const char *k;
    json_t *v;
    size_t i;
    if (json_is_object(j)) {
        json_object_foreach(j, k, v)
        {
            if (strcmp(k, "type") == 0 && json_is_string(v)) {
                char buf[32];
                snprintf(buf, sizeof buf, "%s", json_string_value(v));
                for (char *c = buf; *c; c++)
                    *c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
                assert_int_equal(json_string_set(v, buf), 0);
            } else {
                lower_types(v);
            }
        }
    } else if (json_is_array(j)) {
        json_array_foreach(j, i, v) lower_types(v);
    }
}

static void test_encode_fixture_shapes(void **state)
{
    (void)state;
    struct sb_error err;
    /* text */
    struct sb_canon_req r;
    req_init(&r);
    r.stream = true;
    r.model = xstrdup("gemini/gemini-2.0-flash");
    add_msg(&r, SB_ROLE_USER, 1, text_part("why is the sky blue?"));
    json_t *got = encode(&r, &err);
    json_t *want = fixture_json(FIX "generate_content_text.request.json");
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    sb_canon_req_free(&r);

    /* a function declaration (both the plain and the streaming recording) */
    static const char *const fc[] = {FIX "generate_content_function_call.request.json",
                                     FIX "stream_function_call.request.json"};
    for (size_t i = 0; i < 2; i++) {
        req_init(&r);
        r.stream = i == 1;
        add_msg(&r, SB_ROLE_USER, 1, text_part("what is the result of 100/2"));
        add_tool(&r, "customDivide",
                 "{\"type\":\"object\",\"properties\":{\"denominator\":{\"type\":\"number\"},"
                 "\"numerator\":{\"type\":\"number\"}},\"additionalProperties\":false}");
        free(r.tools[0].description);
        r.tools[0].description = xstrdup("Custom divide function");
        got = encode(&r, &err);
        want = fixture_json(fc[i]);
        lower_types(want);
        assert_true(json_equal(got, want));
        json_decref(got);
        json_decref(want);
        sb_canon_req_free(&r);
    }

    /* the function-response turn: name looked up by id, response object, AUTO */
    req_init(&r);
    add_msg(&r, SB_ROLE_USER, 1, text_part("Divide 10 by 2 using the customDivide function"));
    add_msg(&r, SB_ROLE_ASSISTANT, 1,
            call_part("call_AbCdEf", "customDivide", "{\"denominator\":2,\"numerator\":10}"));
    add_msg(&r, SB_ROLE_TOOL, 1, result_part("call_AbCdEf", NULL, "{\"output\":42}"));
    add_tool(&r, "customDivide",
             "{\"type\":\"object\",\"properties\":{\"denominator\":{\"type\":\"number\"},"
             "\"numerator\":{\"type\":\"number\"}}}");
    free(r.tools[0].description);
    r.tools[0].description = xstrdup("Custom divide function");
    r.tool_choice = SB_TC_AUTO;
    got = encode(&r, &err);
    want = fixture_json(FIX "generate_content_function_response_turn.request.json");
    assert_true(json_equal(json_object_get(got, "contents"), json_object_get(want, "contents")));
    assert_true(
        json_equal(json_object_get(got, "toolConfig"), json_object_get(want, "toolConfig")));
    assert_json(json_object_get(got, "tools"),
                "[{\"functionDeclarations\":[{\"name\":\"customDivide\",\"description\":"
                "\"Custom divide function\",\"parameters\":{\"type\":\"object\",\"properties\":"
                "{\"denominator\":{\"type\":\"number\"},\"numerator\":{\"type\":\"number\"}}}}]}]");
    json_decref(got);
    json_decref(want);
    sb_canon_req_free(&r);
}

static void test_encode_system_merge_and_parts(void **state)
{
    (void)state;
    struct sb_error err;
    struct sb_canon_req r;
    req_init(&r);
    add_msg(&r, SB_ROLE_SYSTEM, 2, text_part("Be brief."), text_part(""));
    add_msg(&r, SB_ROLE_USER, 1, text_part("a"));
    add_msg(&r, SB_ROLE_USER, 2, text_part("b"),
            media(SB_PART_IMAGE, "image/png", "iVBORw0KGgo=", NULL));
    add_msg(&r, SB_ROLE_SYSTEM, 1, text_part("Second system."));
    add_msg(&r, SB_ROLE_ASSISTANT, 1, text_part("c"));
    add_msg(&r, SB_ROLE_ASSISTANT, 1,
            (struct sb_part){.type = SB_PART_REDACTED_THINKING, .text = xstrdup("opaque")});
    add_msg(&r, SB_ROLE_USER, 3, media(SB_PART_IMAGE, NULL, NULL, "https://x.test/a/cat.JPG?s=1"),
            media(SB_PART_DOCUMENT, NULL, NULL, "gs://bucket/doc.pdf"),
            media(SB_PART_IMAGE, NULL, NULL, "data:image/gif;base64,R0lG"));
    add_msg(&r, SB_ROLE_ASSISTANT, 1, text_part("d"));
    add_msg(&r, SB_ROLE_USER, 1, text_part(""));
    json_t *got = encode(&r, &err);
    assert_non_null(got);
    assert_json(json_object_get(got, "systemInstruction"),
                "{\"parts\":[{\"text\":\"Be brief.\"},{\"text\":\"Second system.\"}]}");
    assert_json(json_object_get(got, "contents"),
                "[{\"role\":\"user\",\"parts\":[{\"text\":\"a\"},{\"text\":\"b\"},{\"inlineData\":"
                "{\"mimeType\":\"image/png\",\"data\":\"iVBORw0KGgo=\"}}]},"
                "{\"role\":\"model\",\"parts\":[{\"text\":\"c\"}]},"
                "{\"role\":\"user\",\"parts\":[{\"fileData\":{\"mimeType\":\"image/jpeg\","
                "\"fileUri\":\"https://x.test/a/cat.JPG?s=1\"}},{\"fileData\":{\"mimeType\":"
                "\"application/pdf\",\"fileUri\":\"gs://bucket/doc.pdf\"}},{\"inlineData\":"
                "{\"mimeType\":\"image/gif\",\"data\":\"R0lG\"}}]},"
                "{\"role\":\"model\",\"parts\":[{\"text\":\"d\"}]},"
                "{\"role\":\"user\",\"parts\":[{\"text\":\" \"}]}]");
    assert_json(json_object_get(got, "generationConfig"), "{}");
    assert_null(json_object_get(got, "tools"));
    json_decref(got);
    sb_canon_req_free(&r);

    /* a URL whose type cannot be told from its extension */
    req_init(&r);
    add_msg(&r, SB_ROLE_USER, 2, text_part("look"),
            media(SB_PART_IMAGE, NULL, NULL, "https://x.test/image?id=3"));
    assert_null(encode(&r, &err));
    assert_int_equal(err.status, 400);
    assert_non_null(strstr(err.message, "messages[0].content[1]"));
    sb_canon_req_free(&r);
    /* inline data without a media type */
    req_init(&r);
    add_msg(&r, SB_ROLE_USER, 1, media(SB_PART_IMAGE, NULL, "AAAA", NULL));
    assert_null(encode(&r, &err));
    assert_int_equal(err.status, 400);
    sb_canon_req_free(&r);
}

static void test_encode_tools_results_signatures(void **state)
{
    (void)state;
    struct sb_error err;
    struct sb_canon_req r;
    req_init(&r);
    add_msg(&r, SB_ROLE_USER, 1, text_part("weather?"));
    add_msg(&r, SB_ROLE_ASSISTANT, 5, thinking_part("I should call", "SIG1"), text_part("Calling."),
            thinking_part("", "SIG2"), call_part("u959pftr", "get_weather", "{\"city\":\"Cairo\"}"),
            call_part("call_x", "get_time", "not json"));
    add_msg(&r, SB_ROLE_TOOL, 1, result_part("u959pftr", NULL, "sunny"));
    add_msg(&r, SB_ROLE_TOOL, 1, result_part("call_x", NULL, "[1,2]"));
    add_msg(&r, SB_ROLE_USER, 2, result_part("call_y", "explicit", "{\"ok\":true}"),
            text_part("and then?"));
    add_msg(&r, SB_ROLE_ASSISTANT, 1, call_part("call_z", "noargs", ""));
    json_t *got = encode(&r, &err);
    assert_non_null(got);
    assert_json(json_object_get(got, "contents"),
                "[{\"role\":\"user\",\"parts\":[{\"text\":\"weather?\"}]},"
                "{\"role\":\"model\",\"parts\":["
                "{\"text\":\"I should call\",\"thought\":true,\"thoughtSignature\":\"SIG1\"},"
                "{\"text\":\"Calling.\"},"
                "{\"functionCall\":{\"name\":\"get_weather\",\"args\":{\"city\":\"Cairo\"},"
                "\"id\":\"u959pftr\"},\"thoughtSignature\":\"SIG2\"},"
                "{\"functionCall\":{\"name\":\"get_time\",\"args\":{}}}]},"
                "{\"role\":\"user\",\"parts\":["
                "{\"functionResponse\":{\"name\":\"get_weather\",\"response\":{\"content\":"
                "\"sunny\"},\"id\":\"u959pftr\"}},"
                "{\"functionResponse\":{\"name\":\"get_time\",\"response\":{\"content\":"
                "\"[1,2]\"}}},"
                "{\"functionResponse\":{\"name\":\"explicit\",\"response\":{\"ok\":true}}},"
                "{\"text\":\"and then?\"}]},"
                "{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"noargs\","
                "\"args\":{}}}]}]");
    json_decref(got);
    sb_canon_req_free(&r);

    /* a result whose call cannot be found */
    req_init(&r);
    add_msg(&r, SB_ROLE_USER, 1, text_part("q"));
    add_msg(&r, SB_ROLE_ASSISTANT, 1, call_part("call_a", "f", "{}"));
    add_msg(&r, SB_ROLE_TOOL, 1, result_part("call_b", NULL, "r"));
    assert_null(encode(&r, &err));
    assert_int_equal(err.status, 400);
    assert_non_null(strstr(err.message, "messages[2].tool_call_id"));
    sb_canon_req_free(&r);

    /* thinking sent first (OpenAI thinking_blocks): the signature still reaches the call */
    req_init(&r);
    add_msg(&r, SB_ROLE_USER, 1, text_part("q"));
    add_msg(&r, SB_ROLE_ASSISTANT, 4, thinking_part("hmm", NULL), thinking_part("", "SIGF"),
            text_part("To determine"), call_part("u959pftr", "get_weather", "{}"));
    add_msg(&r, SB_ROLE_ASSISTANT, 4, thinking_part(NULL, "SIGT"), thinking_part(NULL, "SIGC"),
            text_part("Text"), call_part("call_q", "f", "{}"));
    got = encode(&r, &err);
    assert_json(json_object_get(got, "contents"),
                "[{\"role\":\"user\",\"parts\":[{\"text\":\"q\"}]},{\"role\":\"model\",\"parts\":["
                "{\"text\":\"hmm\",\"thought\":true},{\"text\":\"To determine\"},"
                "{\"functionCall\":{\"name\":\"get_weather\",\"args\":{},\"id\":\"u959pftr\"},"
                "\"thoughtSignature\":\"SIGF\"},"
                "{\"text\":\"Text\",\"thoughtSignature\":\"SIGT\"},"
                "{\"functionCall\":{\"name\":\"f\",\"args\":{}},\"thoughtSignature\":\"SIGC\"}]}]");
    json_decref(got);
    sb_canon_req_free(&r);

    /* a trailing signature stays with the part before it */
    req_init(&r);
    add_msg(&r, SB_ROLE_USER, 1, text_part("q"));
    add_msg(&r, SB_ROLE_ASSISTANT, 2, text_part("answer"), thinking_part(NULL, "SIGEND"));
    got = encode(&r, &err);
    assert_json(json_object_get(got, "contents"),
                "[{\"role\":\"user\",\"parts\":[{\"text\":\"q\"}]},{\"role\":\"model\",\"parts\":"
                "[{\"text\":\"answer\",\"thoughtSignature\":\"SIGEND\"}]}]");
    json_decref(got);
    sb_canon_req_free(&r);
}

static void test_encode_schema_cleaning(void **state)
{
    (void)state;
    struct sb_error err;
    struct sb_canon_req r;
    req_init(&r);
    add_msg(&r, SB_ROLE_USER, 1, text_part("q"));
    add_tool(
        &r, "f",
        "{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"type\":\"object\","
        "\"additionalProperties\":false,\"strict\":true,\"$id\":\"x\",\"$comment\":\"c\","
        "\"properties\":{"
        "\"loc\":{\"$ref\":\"#/$defs/Loc\",\"description\":\"where\"},"
        "\"old\":{\"$ref\":\"#/definitions/Old\"},"
        "\"maybe\":{\"anyOf\":[{\"type\":\"string\",\"format\":\"email\"},{\"type\":\"null\"}],"
        "\"default\":null},"
        "\"either\":{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]},"
        "\"arr\":{\"type\":[\"array\",\"null\"],\"items\":{\"type\":\"string\","
        "\"examples\":[\"a\"]},\"minItems\":1},"
        "\"multi\":{\"type\":[\"string\",\"number\"]},"
        "\"k\":{\"const\":\"fixed\",\"title\":\"K\"},"
        "\"nul\":{\"anyOf\":[{\"type\":\"null\"}]},"
        "\"when\":{\"type\":\"string\",\"format\":\"date-time\"},"
        "\"n\":{\"type\":\"integer\",\"format\":\"int64\",\"minimum\":0,\"maximum\":9}},"
        "\"required\":[\"loc\"],"
        "\"$defs\":{\"Loc\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":"
        "\"string\",\"enum\":[\"a\",\"b\"]}},\"additionalProperties\":false}},"
        "\"definitions\":{\"Old\":{\"type\":\"boolean\"}}}");
    add_tool(&r, "noparams", "{\"type\":\"object\",\"properties\":{}}");
    add_tool(&r, "nothing", NULL);
    r.tool_choice = SB_TC_NAMED;
    r.tool_choice_name = xstrdup("f");
    json_t *got = encode(&r, &err);
    assert_non_null(got);
    assert_json(json_object_get(got, "tools"),
                "[{\"functionDeclarations\":[{\"name\":\"f\",\"description\":\"d\","
                "\"parameters\":{\"type\":\"object\",\"properties\":{"
                "\"loc\":{\"type\":\"object\",\"description\":\"where\",\"properties\":{"
                "\"city\":{\"type\":\"string\",\"enum\":[\"a\",\"b\"]}}},"
                "\"old\":{\"type\":\"boolean\"},"
                "\"maybe\":{\"type\":\"string\",\"nullable\":true},"
                "\"either\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]},"
                "\"arr\":{\"type\":\"array\",\"nullable\":true,\"items\":{\"type\":\"string\"},"
                "\"minItems\":1},"
                "\"multi\":{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"number\"}]},"
                "\"k\":{\"enum\":[\"fixed\"],\"title\":\"K\"},"
                "\"nul\":{\"nullable\":true},"
                "\"when\":{\"type\":\"string\",\"format\":\"date-time\"},"
                "\"n\":{\"type\":\"integer\",\"format\":\"int64\",\"minimum\":0,\"maximum\":9}},"
                "\"required\":[\"loc\"]}},"
                "{\"name\":\"noparams\",\"description\":\"d\"},"
                "{\"name\":\"nothing\",\"description\":\"d\"}]}]");
    assert_json(json_object_get(got, "toolConfig"),
                "{\"functionCallingConfig\":{\"mode\":\"ANY\",\"allowedFunctionNames\":[\"f\"]}}");
    json_decref(got);

    r.tool_choice = SB_TC_REQUIRED;
    got = encode(&r, &err);
    assert_json(json_object_get(got, "toolConfig"),
                "{\"functionCallingConfig\":{\"mode\":\"ANY\"}}");
    json_decref(got);
    r.tool_choice = SB_TC_NONE;
    got = encode(&r, &err);
    assert_json(json_object_get(got, "toolConfig"),
                "{\"functionCallingConfig\":{\"mode\":\"NONE\"}}");
    json_decref(got);
    sb_canon_req_free(&r);

    /* a $ref cycle, and a $ref that does not resolve: 400 */
    static const char *const bad[] = {
        ("{\"type\":\"object\",\"properties\":{\"n\":{\"$ref\":\"#/$defs/N\"}},\"$defs\":{\"N\":"
         "{\"type\":\"object\",\"properties\":{\"next\":{\"$ref\":\"#/$defs/N\"}}}}}"),
        "{\"type\":\"object\",\"properties\":{\"n\":{\"$ref\":\"#/$defs/Missing\"}}}",
        "{\"type\":\"object\",\"properties\":{\"n\":{\"$ref\":\"https://x.test/s.json\"}}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        req_init(&r);
        add_msg(&r, SB_ROLE_USER, 1, text_part("q"));
        add_tool(&r, "ok", NULL);
        add_tool(&r, "f", bad[i]);
        assert_null(encode(&r, &err));
        assert_int_equal(err.status, 400);
        assert_non_null(strstr(err.message, "tools[1]"));
        sb_canon_req_free(&r);
    }
}

/* Definitions referenced twice at every level: exponential once expanded, refused. */
static void test_encode_schema_blowup(void **state)
{
    (void)state;
    json_t *defs = json_object();
    for (int i = 0; i < 14; i++) {
        char name[8], next[32];
        snprintf(name, sizeof name, "D%d", i);
        snprintf(next, sizeof next, "#/$defs/D%d", i + 1);
        json_t *d = i == 13 ? json_pack("{s:s}", "type", "string")
                            : json_pack("{s:s,s:{s:{s:s},s:{s:s}}}", "type", "object", "properties",
                                        "a", "$ref", next, "b", "$ref", next);
        assert_non_null(d);
        assert_int_equal(json_object_set_new(defs, name, d), 0);
    }
    json_t *schema = json_pack("{s:s,s:{s:{s:s}},s:o}", "type", "object", "properties", "x", "$ref",
                               "#/$defs/D0", "$defs", defs);
    assert_non_null(schema);
    struct sb_canon_req r;
    req_init(&r);
    add_msg(&r, SB_ROLE_USER, 1, text_part("q"));
    add_tool(&r, "f", NULL);
    r.tools[0].parameters = schema;
    struct sb_error err;
    assert_null(encode(&r, &err));
    assert_int_equal(err.status, 400);
    assert_non_null(strstr(err.message, "too large"));
    sb_canon_req_free(&r);
}

static void test_encode_generation_config(void **state)
{
    (void)state;
    struct sb_error err;
    struct sb_canon_req r;
    req_init(&r);
    add_msg(&r, SB_ROLE_USER, 1, text_part("q"));
    r.has_temperature = r.has_top_p = r.has_presence_penalty = r.has_frequency_penalty = true;
    r.temperature = 0.5;
    r.top_p = 0.25;
    r.presence_penalty = 0.5;
    r.frequency_penalty = -0.5;
    r.top_k = 40;
    r.n = 1;
    r.max_tokens = 1024;
    r.stop = calloc(2, sizeof *r.stop);
    r.stop[0] = xstrdup("\n\n");
    r.stop[1] = xstrdup("END");
    r.nstop = 2;
    r.has_seed = true;
    r.seed = 7;
    r.logprobs = true;
    r.top_logprobs = 30;
    r.response_format = SB_RF_JSON_SCHEMA;
    r.rf_schema = json_loads("{\"type\":\"object\",\"additionalProperties\":false}", 0, NULL);
    r.thinking_budget = 2000;
    r.reasoning_effort = xstrdup("low");
    r.user = xstrdup("u1");
    r.parallel_tool_calls = 0;
    json_t *got = encode(&r, &err);
    assert_json(json_object_get(got, "generationConfig"),
                "{\"temperature\":0.5,\"topP\":0.25,\"topK\":40,\"candidateCount\":1,"
                "\"maxOutputTokens\":1024,\"stopSequences\":[\"\\n\\n\",\"END\"],"
                "\"presencePenalty\":0.5,\"frequencyPenalty\":-0.5,\"seed\":7,"
                "\"responseLogprobs\":true,\"logprobs\":20,\"responseMimeType\":"
                "\"application/json\",\"responseJsonSchema\":{\"type\":\"object\","
                "\"additionalProperties\":false},\"thinkingConfig\":{\"thinkingBudget\":2000,"
                "\"includeThoughts\":true}}");
    assert_int_equal(json_object_size(got), 2); /* contents, generationConfig: user dropped */
    json_decref(got);

    /* reasoning_effort when there is no budget; "none" turns thinking off */
    r.thinking_budget = -1;
    r.response_format = SB_RF_JSON_OBJECT;
    r.logprobs = false;
    got = encode(&r, &err);
    json_t *g = json_object_get(got, "generationConfig");
    assert_json(json_object_get(g, "thinkingConfig"),
                "{\"thinkingBudget\":1024,\"includeThoughts\":true}");
    assert_null(json_object_get(g, "responseJsonSchema"));
    assert_null(json_object_get(g, "responseLogprobs"));
    assert_string_equal(json_string_value(json_object_get(g, "responseMimeType")),
                        "application/json");
    json_decref(got);
    free(r.reasoning_effort);
    r.reasoning_effort = xstrdup("none");
    got = encode(&r, &err);
    assert_json(json_object_get(json_object_get(got, "generationConfig"), "thinkingConfig"),
                "{\"thinkingBudget\":0}");
    json_decref(got);
    free(r.reasoning_effort);
    r.reasoning_effort = xstrdup("extreme");
    assert_null(encode(&r, &err));
    assert_int_equal(err.status, 400);
    assert_string_equal(err.param, "reasoning_effort");
    free(r.reasoning_effort);
    r.reasoning_effort = NULL;
    r.n = 3;
    assert_null(encode(&r, &err));
    assert_int_equal(err.status, 400);
    assert_string_equal(err.param, "n");
    assert_string_equal(err.code, "unsupported_parameter");
    r.n = -1;

    /* the output cap: 413, buffer left as it was */
    struct sb_buf out;
    sb_buf_init(&out, 16);
    assert_int_equal(sb_codec_gemini.encode_request(&r, "m", &out, &err), -1);
    assert_int_equal(err.status, 413);
    assert_int_equal(out.len, 0);
    sb_buf_free(&out);
    sb_canon_req_free(&r);
}

/* ---- embeddings ------------------------------------------------------------------------- */

static void test_embeddings(void **state)
{
    (void)state;
    struct sb_embed_req r = {.dimensions = 256};
    r.ninputs = 3;
    r.inputs = calloc(3, sizeof *r.inputs);
    r.inputs[0] = xstrdup("a");
    r.inputs[1] = xstrdup("b");
    r.inputs[2] = xstrdup("c");
    r.input_type = xstrdup("search_query");
    assert_int_equal(sb_embed_gemini.batch_max, 100);
    struct sb_buf out;
    sb_buf_init(&out, CAP);
    struct sb_error err;
    assert_int_equal(sb_embed_gemini.encode(&r, 1, 3, "text-embedding-004", &out, &err), 0);
    json_t *j = json_loadb(out.data, out.len, 0, NULL);
    assert_json(j, "{\"requests\":[{\"model\":\"models/text-embedding-004\",\"content\":{"
                   "\"parts\":[{\"text\":\"b\"}]},\"outputDimensionality\":256,\"taskType\":"
                   "\"RETRIEVAL_QUERY\"},{\"model\":\"models/text-embedding-004\",\"content\":{"
                   "\"parts\":[{\"text\":\"c\"}]},\"outputDimensionality\":256,\"taskType\":"
                   "\"RETRIEVAL_QUERY\"}]}");
    json_decref(j);
    sb_buf_reset(&out);
    free(r.input_type);
    r.input_type = NULL;
    r.dimensions = -1;
    assert_int_equal(sb_embed_gemini.encode(&r, 0, 1, "models/gemini-embedding-001", &out, &err),
                     0);
    j = json_loadb(out.data, out.len, 0, NULL);
    assert_json(j, "{\"requests\":[{\"model\":\"models/gemini-embedding-001\",\"content\":{"
                   "\"parts\":[{\"text\":\"a\"}]}}]}");
    json_decref(j);
    sb_buf_reset(&out);
    r.input_type = xstrdup("nonsense");
    assert_int_equal(sb_embed_gemini.encode(&r, 0, 1, "m", &out, &err), -1);
    assert_int_equal(err.status, 400);
    assert_int_equal(sb_embed_gemini.encode(&r, 2, 2, "m", &out, &err), -1);
    sb_buf_free(&out);
    sb_embed_req_free(&r);

    struct sb_embed_resp resp = {.input_tokens = -1};
    const char *b1 = "{\"embeddings\":[{\"values\":[0.5,-1,2]},{\"values\":[1.25]}]}";
    const char *b2 = "{\"embedding\":{\"values\":[3,4]}}";
    assert_int_equal(sb_embed_gemini.decode(b1, strlen(b1), &resp), 0);
    assert_int_equal(sb_embed_gemini.decode(b2, strlen(b2), &resp), 0);
    assert_int_equal(resp.n, 3);
    assert_int_equal(resp.dims[0], 3);
    assert_true(resp.vectors[0][0] == 0.5 && resp.vectors[0][1] == -1.0);
    assert_int_equal(resp.dims[1], 1);
    assert_true(resp.vectors[1][0] == 1.25);
    assert_int_equal(resp.dims[2], 2);
    assert_true(resp.vectors[2][1] == 4.0);
    assert_int_equal(resp.input_tokens, -1);
    static const char *const bad[] = {"",
                                      "[]",
                                      "{}",
                                      "{\"embeddings\":[{\"values\":[\"x\"]}]}",
                                      "{\"embeddings\":[{}]}",
                                      "{\"embedding\":[1]}"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sb_embed_gemini.decode(bad[i], strlen(bad[i]), &resp), SB_CANON_E_INVALID);
    assert_int_equal(resp.n, 3); /* failures append nothing */
    sb_embed_resp_free(&resp);

    /* No count from Gemini: a count known from elsewhere is left as it is. */
    struct sb_embed_resp known = {.input_tokens = 7};
    assert_int_equal(sb_embed_gemini.decode(b2, strlen(b2), &known), 0);
    assert_int_equal(known.input_tokens, 7);
    sb_embed_resp_free(&known);
}

static void test_vertex_embeddings(void **state)
{
    (void)state;
    struct sb_embed_req r = {.dimensions = 256};
    r.ninputs = 3;
    r.inputs = calloc(3, sizeof *r.inputs);
    assert_non_null(r.inputs);
    r.inputs[0] = xstrdup("a");
    r.inputs[1] = xstrdup("b \"q\"");
    r.inputs[2] = xstrdup("c");
    r.input_type = xstrdup("search_document");
    assert_int_equal(sb_embed_vertex.batch_max, 1);
    assert_int_equal(sb_embed_vertex.dialect, SB_DIALECT_GEMINI);
    struct sb_buf out;
    sb_buf_init(&out, CAP);
    struct sb_error err;
    assert_int_equal(sb_embed_vertex.encode(&r, 1, 3, "text-embedding-005", &out, &err), 0);
    json_t *j = json_loadb(out.data, out.len, 0, NULL);
    assert_json(j, "{\"instances\":[{\"content\":\"b \\\"q\\\"\",\"task_type\":"
                   "\"RETRIEVAL_DOCUMENT\"},{\"content\":\"c\",\"task_type\":"
                   "\"RETRIEVAL_DOCUMENT\"}],\"parameters\":{\"outputDimensionality\":256,"
                   "\"autoTruncate\":false}}");
    json_decref(j);
    sb_buf_reset(&out);
    free(r.input_type);
    r.input_type = NULL;
    r.dimensions = -1;
    assert_int_equal(sb_embed_vertex.encode(&r, 0, 1, "gemini-embedding-001", &out, &err), 0);
    j = json_loadb(out.data, out.len, 0, NULL);
    assert_json(j, "{\"instances\":[{\"content\":\"a\"}],\"parameters\":{\"autoTruncate\":"
                   "false}}");
    json_decref(j);

    /* Refusals leave out as it was. */
    size_t before = out.len;
    r.input_type = xstrdup("nonsense");
    assert_int_equal(sb_embed_vertex.encode(&r, 0, 1, "m", &out, &err), -1);
    assert_int_equal(err.status, 400);
    assert_string_equal(err.param, "input_type");
    free(r.input_type);
    r.input_type = NULL;
    assert_int_equal(sb_embed_vertex.encode(&r, 2, 2, "m", &out, &err), -1);
    assert_int_equal(err.status, 400);
    assert_int_equal(sb_embed_vertex.encode(&r, 2, 4, "m", &out, &err), -1);
    assert_int_equal(out.len, before);
    sb_buf_free(&out);
    struct sb_buf tiny;
    sb_buf_init(&tiny, 10);
    assert_int_equal(sb_embed_vertex.encode(&r, 0, 3, "m", &tiny, &err), -1);
    assert_int_equal(err.status, 413);
    assert_int_equal(tiny.len, 0);
    sb_buf_free(&tiny);
    sb_embed_req_free(&r);

    /* Token counts: -1 until one is known, then added up. */
    struct sb_embed_resp resp = {.input_tokens = -1};
    const char *none = "{\"predictions\":[{\"embeddings\":{\"values\":[1,2]}}]}";
    assert_int_equal(sb_embed_vertex.decode(none, strlen(none), &resp), 0);
    assert_int_equal(resp.input_tokens, -1);
    const char *b1 = "{\"predictions\":[{\"embeddings\":{\"values\":[0.5,-1,2],\"statistics\":"
                     "{\"token_count\":6,\"truncated\":false}}},{\"embeddings\":{\"values\":["
                     "1.25],\"statistics\":{\"token_count\":4.0,\"truncated\":false}}}],"
                     "\"metadata\":{\"billableCharacterCount\":30}}";
    assert_int_equal(sb_embed_vertex.decode(b1, strlen(b1), &resp), 0);
    assert_int_equal(resp.input_tokens, 10);
    const char *b2 = "{\"predictions\":[{\"embeddings\":{\"values\":[3,4],\"statistics\":{"
                     "\"token_count\":0}}},{\"embeddings\":{\"values\":[5],\"statistics\":{"
                     "\"token_count\":2.5}}},{\"embeddings\":{\"values\":[6],\"statistics\":{"
                     "\"token_count\":-3}}}]}";
    assert_int_equal(sb_embed_vertex.decode(b2, strlen(b2), &resp), 0);
    assert_int_equal(resp.input_tokens, 10); /* 0 known; 2.5 and -3 are not counts */
    assert_int_equal(resp.n, 6);
    assert_int_equal(resp.dims[0], 2);
    assert_int_equal(resp.dims[1], 3);
    assert_true(resp.vectors[1][0] == 0.5 && resp.vectors[1][1] == -1.0);
    assert_int_equal(resp.dims[2], 1);
    assert_true(resp.vectors[2][0] == 1.25);
    assert_true(resp.vectors[3][1] == 4.0);
    const char *first = "{\"predictions\":[{\"embeddings\":{\"values\":[1],\"statistics\":{"
                        "\"token_count\":0}}}]}";
    struct sb_embed_resp zero = {.input_tokens = -1};
    assert_int_equal(sb_embed_vertex.decode(first, strlen(first), &zero), 0);
    assert_int_equal(zero.input_tokens, 0); /* a known zero is not unknown */
    sb_embed_resp_free(&zero);
    const char *huge = "{\"predictions\":[{\"embeddings\":{\"values\":[1],\"statistics\":{"
                       "\"token_count\":1e300}}}]}";
    struct sb_embed_resp big = {.input_tokens = INT64_MAX - 1};
    assert_int_equal(sb_embed_vertex.decode(huge, strlen(huge), &big), 0);
    assert_true(big.input_tokens == INT64_MAX); /* saturates */
    sb_embed_resp_free(&big);

    static const char *const bad[] = {
        "",
        "[]",
        "{}",
        "{\"predictions\":{}}",
        "{\"predictions\":[{}]}",
        "{\"predictions\":[1]}",
        "{\"predictions\":[{\"embeddings\":{}}]}",
        "{\"predictions\":[{\"embeddings\":{\"values\":[\"x\"]}}]}",
        ("{\"predictions\":[{\"embeddings\":{\"values\":[1],\"statistics\":{\"token_count\":5}}},"
         "{\"embeddings\":{\"values\":{}}}]}"),
        "{\"error\":{\"code\":400,\"message\":\"x\",\"status\":\"INVALID_ARGUMENT\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sb_embed_vertex.decode(bad[i], strlen(bad[i]), &resp), SB_CANON_E_INVALID);
    assert_int_equal(resp.n, 6); /* failures append nothing and count nothing */
    assert_int_equal(resp.input_tokens, 10);
    sb_embed_resp_free(&resp);

    /* More predictions than any answer may hold. */
    struct sb_buf many;
    sb_buf_init(&many, CAP);
    assert_int_equal(sb_buf_append_str(&many, "{\"predictions\":["), 0);
    for (int i = 0; i < 4097; i++)
        assert_int_equal(sb_buf_append_str(&many, i ? ",{\"embeddings\":{\"values\":[1]}}"
                                                    : "{\"embeddings\":{\"values\":[1]}}"),
                         0);
    assert_int_equal(sb_buf_append_str(&many, "]}"), 0);
    struct sb_embed_resp r2 = {.input_tokens = -1};
    assert_int_equal(sb_embed_vertex.decode(many.data, many.len, &r2), SB_CANON_E_INVALID);
    assert_int_equal(r2.n, 0);
    sb_embed_resp_free(&r2);
    sb_buf_free(&many);
}

/* ---- countTokens ------------------------------------------------------------------------ */

static json_t *count_body(int vertex, const struct sb_canon_req *r, const char *model,
                          struct sb_error *err)
{
    struct sb_buf out;
    sb_buf_init(&out, CAP);
    int rc = vertex ? sb_vertex_encode_count_tokens(r, model, &out, err)
                    : sb_gemini_encode_count_tokens(r, model, &out, err);
    json_t *j = NULL;
    if (rc == 0) {
        j = json_loadb(out.data, out.len, 0, NULL);
        assert_non_null(j);
    } else {
        assert_int_equal(rc, -1);
        assert_int_equal(out.len, 0);
    }
    sb_buf_free(&out);
    return j;
}

static void test_count_tokens_encode(void **state)
{
    (void)state;
    struct sb_canon_req r;
    req_init(&r);
    r.model = xstrdup("claude-sonnet-4-5");
    r.n = 3;                    /* refused by generateContent, but no part of a count */
    r.max_tokens = 100;         /* not sent */
    r.tool_choice = SB_TC_AUTO; /* toolConfig is not sent */
    add_msg(&r, SB_ROLE_SYSTEM, 1, text_part("Be brief."));
    add_msg(&r, SB_ROLE_USER, 1, text_part("What is 6/3?"));
    add_msg(&r, SB_ROLE_ASSISTANT, 2, thinking_part("", "SIG"),
            call_part("toolu_1", "divide", "{\"a\":6,\"b\":3}"));
    add_msg(&r, SB_ROLE_USER, 1, result_part("toolu_1", NULL, "2"));
    add_tool(&r, "divide",
             "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"number\"},\"b\":{"
             "\"type\":\"number\"}},\"required\":[\"a\",\"b\"],\"additionalProperties\":false}");

    /* The same contents, systemInstruction and tools as generateContent. */
    struct sb_error err;
    r.n = -1;
    json_t *full = encode(&r, &err);
    assert_non_null(full);
    r.n = 3;
    const char *const same[] = {"contents", "systemInstruction", "tools"};

    struct sb_error cerr;
    json_t *g = count_body(0, &r, "models/gemini-2.5-flash", &cerr);
    assert_non_null(g);
    assert_int_equal(json_object_size(g), 1);
    json_t *gcr = json_object_get(g, "generateContentRequest");
    assert_true(json_is_object(gcr));
    assert_string_equal(json_string_value(json_object_get(gcr, "model")),
                        "models/gemini-2.5-flash");
    assert_int_equal(json_object_size(gcr), 4);
    for (size_t i = 0; i < 3; i++)
        assert_true(json_equal(json_object_get(gcr, same[i]), json_object_get(full, same[i])));
    assert_json(json_object_get(gcr, "systemInstruction"),
                "{\"parts\":[{\"text\":\"Be brief.\"}]}");
    assert_json(json_object_get(gcr, "contents"),
                "[{\"role\":\"user\",\"parts\":[{\"text\":\"What is 6/3?\"}]},"
                "{\"role\":\"model\",\"parts\":[{\"functionCall\":{\"name\":\"divide\","
                "\"args\":{\"a\":6,\"b\":3},\"id\":\"toolu_1\"},\"thoughtSignature\":\"SIG\"}]},"
                "{\"role\":\"user\",\"parts\":[{\"functionResponse\":{\"name\":\"divide\","
                "\"response\":{\"content\":\"2\"},\"id\":\"toolu_1\"}}]}]");
    json_decref(g);

    json_t *v = count_body(1, &r, "gemini-2.5-flash", &cerr);
    assert_non_null(v);
    assert_int_equal(json_object_size(v), 3);
    for (size_t i = 0; i < 3; i++)
        assert_true(json_equal(json_object_get(v, same[i]), json_object_get(full, same[i])));
    json_decref(v);
    json_decref(full);

    /* The model: the argument without "models/", else the request's; neither is a 400. */
    g = count_body(0, &r, NULL, &cerr);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(g, "generateContentRequest"), "model")),
        "models/claude-sonnet-4-5");
    json_decref(g);
    free(r.model);
    r.model = NULL;
    assert_null(count_body(0, &r, "", &cerr));
    assert_int_equal(cerr.status, 400);
    assert_string_equal(cerr.param, "model");
    assert_null(count_body(0, &r, "models/", &cerr));
    assert_int_equal(cerr.status, 400);
    v = count_body(1, &r, NULL, &cerr); /* Vertex: the model is only in the URL */
    assert_non_null(v);
    json_decref(v);

    /* A body past the cap: 413, nothing written. */
    struct sb_buf tiny;
    sb_buf_init(&tiny, 16);
    assert_int_equal(sb_gemini_encode_count_tokens(&r, "m", &tiny, &cerr), -1);
    assert_int_equal(cerr.status, 413);
    assert_int_equal(sb_vertex_encode_count_tokens(&r, "m", &tiny, &cerr), -1);
    assert_int_equal(cerr.status, 413);
    assert_int_equal(tiny.len, 0);
    sb_buf_free(&tiny);

    /* The refusals of the contents encoder hold: a result whose call is unknown. */
    add_msg(&r, SB_ROLE_USER, 1, result_part("toolu_9", NULL, "x"));
    assert_null(count_body(0, &r, "m", &cerr));
    assert_int_equal(cerr.status, 400);
    assert_string_equal(cerr.param, "messages");
    assert_null(count_body(1, &r, "m", &cerr));
    assert_int_equal(cerr.status, 400);
    sb_canon_req_free(&r);
}

static void test_count_tokens_decode(void **state)
{
    (void)state;
    int64_t n = -5;
    const char *ok = "{\"totalTokens\":31,\"totalBillableCharacters\":96,"
                     "\"promptTokensDetails\":[{\"modality\":\"TEXT\",\"tokenCount\":31}]}";
    assert_int_equal(sb_gemini_decode_count_tokens(ok, strlen(ok), &n), 0);
    assert_int_equal(n, 31);
    const char *studio = "{\"totalTokens\":12,\"cachedContentTokenCount\":4}";
    assert_int_equal(sb_gemini_decode_count_tokens(studio, strlen(studio), &n), 0);
    assert_int_equal(n, 12);
    const char *zero[] = {"{}", "{\"promptTokensDetails\":[]}", "{\"totalBillableCharacters\":0}"};
    for (size_t i = 0; i < sizeof zero / sizeof zero[0]; i++) {
        n = -5;
        assert_int_equal(sb_gemini_decode_count_tokens(zero[i], strlen(zero[i]), &n), 0);
        assert_int_equal(n, 0);
    }
    const char *big = "{\"totalTokens\":9223372036854775807}";
    assert_int_equal(sb_gemini_decode_count_tokens(big, strlen(big), &n), 0);
    assert_true(n == ((int64_t)1 << 48));
    static const char *const bad[] = {
        "",
        "nope",
        "[]",
        "31",
        "{\"totalTokens\":-1}",
        "{\"totalTokens\":\"31\"}",
        "{\"totalTokens\":3.5}",
        "{\"totalTokens\":null}",
        "{\"candidates\":[]}",
        "{\"error\":{\"code\":400,\"message\":\"x\"}}",
        "{\"totalTokens\":3,\"error\":{}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = 77;
        assert_int_equal(sb_gemini_decode_count_tokens(bad[i], strlen(bad[i]), &n),
                         SB_CANON_E_INVALID);
        assert_int_equal(n, 77);
    }
    assert_int_equal(sb_gemini_decode_count_tokens(NULL, 0, &n), SB_CANON_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_response_text),
        cmocka_unit_test(test_response_function_call),
        cmocka_unit_test(test_response_after_function_response),
        cmocka_unit_test(test_response_thoughts_signatures_usage),
        cmocka_unit_test(test_response_finish_reasons),
        cmocka_unit_test(test_response_blocked_and_errors),
        cmocka_unit_test(test_stream_text),
        cmocka_unit_test(test_stream_text_with_thoughts),
        cmocka_unit_test(test_stream_function_call_gemini3),
        cmocka_unit_test(test_stream_function_call),
        cmocka_unit_test(test_stream_cut_and_errors),
        cmocka_unit_test(test_errors_fixtures),
        cmocka_unit_test(test_errors_hand),
        cmocka_unit_test(test_encode_fixture_shapes),
        cmocka_unit_test(test_encode_system_merge_and_parts),
        cmocka_unit_test(test_encode_tools_results_signatures),
        cmocka_unit_test(test_encode_schema_cleaning),
        cmocka_unit_test(test_encode_schema_blowup),
        cmocka_unit_test(test_encode_generation_config),
        cmocka_unit_test(test_embeddings),
        cmocka_unit_test(test_vertex_embeddings),
        cmocka_unit_test(test_count_tokens_encode),
        cmocka_unit_test(test_count_tokens_decode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

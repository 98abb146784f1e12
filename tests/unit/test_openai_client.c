#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "canon/codecs.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SB_SOURCE_DIR
#define SB_SOURCE_DIR "."
#endif

#define FIX SB_SOURCE_DIR "/tests/data/fixtures/openai/"
#define CAP (1024 * 1024)

static const struct sb_client_codec *C = &sb_client_openai;

/* ---- helpers ---------------------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len)
{
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

static int dec(const char *body, struct sb_canon_req *r, struct sb_error *e)
{
    memset(e, 0, sizeof *e);
    return C->decode_request(body, strlen(body), r, e);
}

/* Decodes and expects a 400 naming `param` with `code`. */
static void expect_400(const char *body, const char *param, const char *code)
{
    struct sb_canon_req r;
    struct sb_error e;
    int rc = dec(body, &r, &e);
    if (rc != -1)
        fail_msg("accepted: %s", body);
    assert_int_equal(e.status, 400);
    assert_string_equal(e.type, "invalid_request_error");
    if (param) {
        assert_non_null(e.param);
        if (strcmp(e.param, param) != 0)
            fail_msg("param %s, want %s (%s)", e.param, param, body);
    } else {
        assert_null(e.param);
    }
    if (code) {
        assert_non_null(e.code);
        if (strcmp(e.code, code) != 0)
            fail_msg("code %s, want %s (%s)", e.code, code, body);
    }
    assert_true(e.message[0] != '\0');
    assert_null(r.msgs);
    assert_null(r.model);
}

static struct sb_canon_req ok(const char *body)
{
    struct sb_canon_req r;
    struct sb_error e;
    int rc = dec(body, &r, &e);
    if (rc != 0)
        fail_msg("rejected (%s: %s): %s", e.param ? e.param : "-", e.message, body);
    return r;
}

#define MSGS_USER "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

/* ---- request: fixtures ------------------------------------------------------------------ */

static void test_fixture_requests(void **state)
{
    (void)state;
    DIR *d = opendir(FIX);
    assert_non_null(d);
    struct dirent *de;
    int chat = 0;
    while ((de = readdir(d))) {
        size_t nl = strlen(de->d_name);
        if (nl < 13 || strcmp(de->d_name + nl - 13, ".request.json") != 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, FIX "%s", de->d_name);
        size_t len;
        char *body = read_file(path, &len);
        json_t *j = json_loadb(body, len, 0, NULL);
        assert_non_null(j);
        bool is_chat = json_object_get(j, "messages") != NULL;
        json_decref(j);
        if (!is_chat) {
            free(body);
            continue;
        }
        chat++;
        struct sb_canon_req r;
        struct sb_error e;
        int rc = C->decode_request(body, len, &r, &e);
        if (strncmp(de->d_name, "error_400_empty_messages", 24) == 0) {
            assert_int_equal(rc, -1);
            assert_string_equal(e.code, "empty_array");
            assert_string_equal(e.param, "messages");
        } else if (strncmp(de->d_name, "error_400_unsupported_parameter", 31) == 0) {
            /* user content null */
            assert_int_equal(rc, -1);
            assert_int_equal(e.status, 400);
        } else {
            if (rc != 0)
                fail_msg("%s: %s", de->d_name, e.message);
            assert_non_null(r.model);
            assert_true(r.nmsgs >= 1);
            sb_canon_req_free(&r);
        }
        free(body);
    }
    closedir(d);
    assert_true(chat >= 8);
}

static struct sb_canon_req fixture(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, FIX "%s", name);
    size_t len;
    char *body = read_file(path, &len);
    struct sb_canon_req r;
    struct sb_error e;
    assert_int_equal(C->decode_request(body, len, &r, &e), 0);
    free(body);
    return r;
}

static void test_fixture_fields(void **state)
{
    (void)state;
    struct sb_canon_req r = fixture("chat_stream_include_usage.request.json");
    assert_string_equal(r.model, "gpt-5-nano");
    assert_int_equal(r.nmsgs, 1);
    assert_int_equal(r.msgs[0].role, SB_ROLE_SYSTEM); /* developer */
    assert_int_equal(r.msgs[0].parts[0].type, SB_PART_TEXT);
    assert_string_equal(r.msgs[0].parts[0].text, "Hello, I'm a developer!");
    assert_int_equal(r.max_tokens, 100);
    assert_true(r.stream);
    assert_true(r.include_usage);
    assert_true(r.has_temperature);
    assert_true(r.temperature == 1.0);
    sb_canon_req_free(&r);

    r = fixture("chat_tool_call.request.json");
    assert_int_equal(r.tool_choice, SB_TC_AUTO);
    assert_int_equal(r.ntools, 1);
    assert_string_equal(r.tools[0].name, "get_current_weather");
    assert_string_equal(r.tools[0].description, "Get the current weather in a given location");
    assert_non_null(
        json_object_get(json_object_get(r.tools[0].parameters, "properties"), "location"));
    assert_int_equal(r.tools[0].strict, -1);
    assert_int_equal(r.parallel_tool_calls, -1);
    assert_false(r.stream);
    sb_canon_req_free(&r);

    r = fixture("chat_tool_call_parallel_enabled.request.json");
    assert_int_equal(r.parallel_tool_calls, 1);
    sb_canon_req_free(&r);

    r = fixture("chat_text.request.json");
    assert_int_equal(r.msgs[0].role, SB_ROLE_USER);
    assert_string_equal(r.msgs[0].parts[0].text, "Hello!");
    assert_int_equal(r.max_tokens, -1);
    assert_int_equal(r.n, -1);
    assert_false(r.has_temperature);
    assert_int_equal(r.tool_choice, SB_TC_UNSET);
    sb_canon_req_free(&r);
}

/* ---- request: mappings ------------------------------------------------------------------ */

static void test_request_messages(void **state)
{
    (void)state;
    struct sb_canon_req r = ok(
        "{\"model\":\"m\",\"messages\":["
        "{\"role\":\"system\",\"content\":\"sys\"},"
        "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"dev\"}]},"
        "{\"role\":\"user\",\"name\":\"bob\",\"content\":[{\"type\":\"text\",\"text\":\"look\"},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBO\","
        "\"detail\":\"high\"}},"
        "{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x.example/a.jpg\"}},"
        "{\"type\":\"file\",\"file\":{\"file_data\":\"data:application/pdf;base64,JVBE\","
        "\"filename\":\"a.pdf\"}},"
        "{\"type\":\"file\",\"file\":{\"file_data\":\"SGVsbG8=\",\"filename\":\"a.txt\"}}]},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"ok\"},"
        "{\"type\":\"refusal\",\"refusal\":\"no\"}],"
        "\"thinking_blocks\":[{\"type\":\"thinking\",\"thinking\":\"hmm\",\"signature\":\"SIG\"},"
        "{\"type\":\"redacted_thinking\",\"data\":\"REDACT\"}],"
        "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{\\\"a\\\": 1}\"}},"
        "{\"id\":\"call_2\",\"type\":\"function\",\"function\":{\"name\":\"g\","
        "\"arguments\":\"{bad\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"42\"},"
        "{\"role\":\"tool\",\"tool_call_id\":\"call_2\",\"content\":[{\"type\":\"text\","
        "\"text\":\"a\"},{\"type\":\"text\",\"text\":\"b\"}]},"
        "{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"c3\",\"function\":"
        "{\"name\":\"h\",\"arguments\":{\"x\":[1,2]}}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c3\",\"content\":\"\"}"
        "]}");
    assert_int_equal(r.nmsgs, 8);
    assert_int_equal(r.msgs[0].role, SB_ROLE_SYSTEM);
    assert_string_equal(r.msgs[0].parts[0].text, "sys");
    assert_int_equal(r.msgs[1].role, SB_ROLE_SYSTEM);
    assert_string_equal(r.msgs[1].parts[0].text, "dev");

    const struct sb_msg *u = &r.msgs[2];
    assert_int_equal(u->role, SB_ROLE_USER);
    assert_string_equal(u->name, "bob");
    assert_int_equal(u->nparts, 5);
    assert_int_equal(u->parts[1].type, SB_PART_IMAGE);
    assert_string_equal(u->parts[1].media_type, "image/png");
    assert_string_equal(u->parts[1].data, "iVBO");
    assert_string_equal(u->parts[1].detail, "high");
    assert_null(u->parts[1].url);
    assert_string_equal(u->parts[2].url, "https://x.example/a.jpg");
    assert_null(u->parts[2].data);
    assert_int_equal(u->parts[3].type, SB_PART_DOCUMENT);
    assert_string_equal(u->parts[3].media_type, "application/pdf");
    assert_string_equal(u->parts[3].data, "JVBE");
    assert_string_equal(u->parts[4].media_type, "text/plain");
    assert_string_equal(u->parts[4].data, "SGVsbG8=");

    const struct sb_msg *a = &r.msgs[3];
    assert_int_equal(a->role, SB_ROLE_ASSISTANT);
    assert_int_equal(a->nparts, 5); /* refusal dropped */
    assert_int_equal(a->parts[0].type, SB_PART_THINKING);
    assert_string_equal(a->parts[0].text, "hmm");
    assert_string_equal(a->parts[0].signature, "SIG");
    assert_int_equal(a->parts[1].type, SB_PART_REDACTED_THINKING);
    assert_string_equal(a->parts[1].text, "REDACT");
    assert_int_equal(a->parts[2].type, SB_PART_TEXT);
    assert_string_equal(a->parts[2].text, "ok");
    assert_int_equal(a->parts[3].type, SB_PART_TOOL_CALL);
    assert_string_equal(a->parts[3].id, "call_1");
    assert_string_equal(a->parts[3].name, "f");
    assert_string_equal(a->parts[3].arguments, "{\"a\": 1}"); /* kept exactly */
    assert_string_equal(a->parts[4].arguments, "{bad");

    assert_int_equal(r.msgs[4].role, SB_ROLE_TOOL);
    assert_int_equal(r.msgs[4].nparts, 1);
    assert_int_equal(r.msgs[4].parts[0].type, SB_PART_TOOL_RESULT);
    assert_string_equal(r.msgs[4].parts[0].id, "call_1");
    assert_null(r.msgs[4].parts[0].name);
    assert_int_equal(r.msgs[4].parts[0].nparts, 1);
    assert_string_equal(r.msgs[4].parts[0].parts[0].text, "42");
    assert_int_equal(r.msgs[5].parts[0].nparts, 2);
    assert_string_equal(r.msgs[5].parts[0].parts[1].text, "b");

    assert_int_equal(r.msgs[6].nparts, 1); /* "" beside the call is not carried */
    assert_string_equal(r.msgs[6].parts[0].arguments, "{\"x\":[1,2]}");
    assert_int_equal(r.msgs[7].parts[0].nparts, 0);
    sb_canon_req_free(&r);

    /* empty text parts of an assistant are dropped; a user's "" is kept */
    r = ok("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\"},"
           "{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"\"},"
           "{\"type\":\"text\",\"text\":\"x\"}]},{\"role\":\"assistant\",\"content\":\"\"}]}");
    assert_int_equal(r.msgs[0].nparts, 1);
    assert_string_equal(r.msgs[0].parts[0].text, "");
    assert_int_equal(r.msgs[1].nparts, 1);
    assert_string_equal(r.msgs[1].parts[0].text, "x");
    assert_int_equal(r.msgs[2].nparts, 0);
    sb_canon_req_free(&r);
}

static void test_request_legacy_functions(void **state)
{
    (void)state;
    struct sb_canon_req r =
        ok("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"w?\"},"
           "{\"role\":\"assistant\",\"content\":null,\"function_call\":{\"name\":\"get\","
           "\"arguments\":\"{}\"}},"
           "{\"role\":\"function\",\"name\":\"get\",\"content\":\"sunny\"}],"
           "\"functions\":[{\"name\":\"get\",\"description\":\"d\",\"parameters\":"
           "{\"type\":\"object\"}}],\"function_call\":{\"name\":\"get\"}}");
    assert_int_equal(r.nmsgs, 3);
    assert_int_equal(r.msgs[1].parts[0].type, SB_PART_TOOL_CALL);
    assert_string_equal(r.msgs[1].parts[0].id, "call_fn_1");
    assert_string_equal(r.msgs[1].parts[0].name, "get");
    assert_int_equal(r.msgs[2].role, SB_ROLE_TOOL);
    assert_string_equal(r.msgs[2].parts[0].id, "call_fn_1");
    assert_string_equal(r.msgs[2].parts[0].name, "get");
    assert_string_equal(r.msgs[2].parts[0].parts[0].text, "sunny");
    assert_null(r.msgs[2].name);
    assert_int_equal(r.ntools, 1);
    assert_string_equal(r.tools[0].name, "get");
    assert_int_equal(r.tool_choice, SB_TC_NAMED);
    assert_string_equal(r.tool_choice_name, "get");
    sb_canon_req_free(&r);

    r = ok("{\"model\":\"m\"," MSGS_USER ",\"functions\":[{\"name\":\"a\"}],"
           "\"function_call\":\"none\"}");
    assert_int_equal(r.tool_choice, SB_TC_NONE);
    sb_canon_req_free(&r);

    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"function\",\"name\":\"nope\","
               "\"content\":\"x\"}]}",
               "messages[0].name", "invalid_value");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"function\",\"content\":\"x\"}]}",
               "messages[0].name", "missing_required_parameter");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"function_call\":\"required\"}", "function_call",
               "invalid_value");
}

static void test_request_params(void **state)
{
    (void)state;
    struct sb_canon_req r =
        ok("{\"model\":\"m\"," MSGS_USER ",\"tools\":[{\"type\":\"function\",\"function\":"
           "{\"name\":\"f\",\"strict\":true,\"parameters\":{\"type\":\"object\"}}}],"
           "\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"f\"}},"
           "\"parallel_tool_calls\":false,\"max_tokens\":50,\"max_completion_tokens\":70,"
           "\"temperature\":0.5,\"top_p\":0.9,\"stop\":[\"a\",\"b\"],\"stream\":true,"
           "\"stream_options\":{\"include_usage\":false},\"n\":2,\"seed\":-7,\"logprobs\":true,"
           "\"top_logprobs\":3,\"presence_penalty\":-1.5,\"frequency_penalty\":2,"
           "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"S\","
           "\"schema\":{\"type\":\"object\"},\"strict\":true}},\"reasoning_effort\":\"high\","
           "\"user\":\"u1\",\"metadata\":{\"k\":\"v\"},\"unknown_field\":{\"x\":1},"
           "\"service_tier\":\"auto\"}");
    assert_int_equal(r.tools[0].strict, 1);
    assert_int_equal(r.tool_choice, SB_TC_NAMED);
    assert_string_equal(r.tool_choice_name, "f");
    assert_int_equal(r.parallel_tool_calls, 0);
    assert_int_equal(r.max_tokens, 70);
    assert_true(r.has_temperature && r.temperature == 0.5);
    assert_true(r.has_top_p && r.top_p == 0.9);
    assert_int_equal(r.nstop, 2);
    assert_string_equal(r.stop[1], "b");
    assert_true(r.stream);
    assert_false(r.include_usage);
    assert_int_equal(r.n, 2);
    assert_true(r.has_seed);
    assert_int_equal(r.seed, -7);
    assert_true(r.logprobs);
    assert_int_equal(r.top_logprobs, 3);
    assert_true(r.has_presence_penalty && r.presence_penalty == -1.5);
    assert_true(r.has_frequency_penalty && r.frequency_penalty == 2);
    assert_int_equal(r.response_format, SB_RF_JSON_SCHEMA);
    assert_string_equal(r.rf_name, "S");
    assert_string_equal(json_string_value(json_object_get(r.rf_schema, "type")), "object");
    assert_int_equal(r.rf_strict, 1);
    assert_string_equal(r.reasoning_effort, "high");
    assert_string_equal(r.user, "u1");
    assert_string_equal(json_string_value(json_object_get(r.metadata, "k")), "v");
    assert_int_equal(r.thinking_budget, -1);
    assert_int_equal(r.top_k, -1);
    sb_canon_req_free(&r);

    r = ok("{\"model\":\"m\"," MSGS_USER ",\"stop\":\"END\",\"max_tokens\":9,"
           "\"tool_choice\":\"required\",\"response_format\":{\"type\":\"json_object\"},"
           "\"top_logprobs\":2,\"temperature\":null,\"stop\":\"END\"}");
    assert_int_equal(r.nstop, 1);
    assert_string_equal(r.stop[0], "END");
    assert_int_equal(r.max_tokens, 9);
    assert_int_equal(r.tool_choice, SB_TC_REQUIRED);
    assert_int_equal(r.response_format, SB_RF_JSON_OBJECT);
    assert_int_equal(r.top_logprobs, -1); /* dropped without logprobs */
    assert_false(r.has_temperature);
    sb_canon_req_free(&r);

    r = ok("{\"model\":\"m\"," MSGS_USER ",\"response_format\":{\"type\":\"text\"},"
           "\"tool_choice\":\"none\"}");
    assert_int_equal(r.response_format, SB_RF_TEXT);
    assert_int_equal(r.tool_choice, SB_TC_NONE);
    sb_canon_req_free(&r);
}

/* The request decoder reads the common shapes without a tree and hands everything else to
 * jansson; these are the inputs where the two could part ways. */
static void test_request_fast_and_tree_agree(void **state)
{
    (void)state;
    /* jansson keeps the last of duplicate keys. */
    struct sb_canon_req r =
        ok("{\"model\":\"a\",\"messages\":[{\"role\":\"user\",\"content\":\"x\","
           "\"content\":\"y\"}],\"model\":\"b\"}");
    assert_string_equal(r.model, "b");
    assert_string_equal(r.msgs[0].parts[0].text, "y");
    sb_canon_req_free(&r);
    /* An escaped key is the key it spells. */
    r = ok("{\"mod\\u0065l\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    assert_string_equal(r.model, "m");
    sb_canon_req_free(&r);
    /* -0 is the integer 0 for jansson, so the temperature is +0. */
    r = ok("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
           "\"temperature\":-0,\"top_p\":0.25}");
    assert_true(r.has_temperature);
    assert_false(signbit(r.temperature));
    assert_true(r.has_top_p);
    assert_true(r.top_p == 0.25);
    sb_canon_req_free(&r);
    /* Escapes are unescaped; a surrogate pair becomes one UTF-8 sequence. */
    r = ok("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":"
           "\"a\\n\\u00e9\\ud83d\\ude00\"}]}");
    assert_string_equal(r.msgs[0].parts[0].text, "a\n\xc3\xa9\xf0\x9f\x98\x80");
    sb_canon_req_free(&r);
    /* Everything the fast path reads, in one request. */
    r = ok(
        "{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":\"text\","
        "\"text\":\"s\",\"cache_control\":{\"type\":\"ephemeral\"}}]},{\"role\":\"user\","
        "\"content\":\"u\",\"name\":\"bob\"},{\"role\":\"assistant\",\"content\":\"\","
        "\"tool_calls\":[{\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"f\","
        "\"arguments\":\"{}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"r\"}],"
        "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"description\":\"d\","
        "\"parameters\":{\"type\":\"object\"},\"strict\":true}}],\"tool_choice\":\"required\","
        "\"stop\":[\"x\",\"y\"],\"n\":1,\"seed\":-5,\"logprobs\":false,\"top_logprobs\":3,"
        "\"parallel_tool_calls\":false,\"reasoning_effort\":\"low\",\"user\":\"u\","
        "\"metadata\":{\"k\":\"v\"},\"stream\":true,\"stream_options\":{\"include_usage\":true},"
        "\"max_tokens\":7,\"max_completion_tokens\":5,\"unknown\":[1,{\"a\":null}]}");
    assert_int_equal(r.nmsgs, 4);
    assert_int_equal(r.msgs[0].role, SB_ROLE_SYSTEM);
    assert_non_null(r.msgs[0].parts[0].cache_control);
    assert_string_equal(r.msgs[1].name, "bob");
    assert_int_equal(r.msgs[2].nparts, 1); /* the empty text is not carried */
    assert_string_equal(r.msgs[2].parts[0].id, "c1");
    assert_string_equal(r.msgs[2].parts[0].arguments, "{}");
    assert_int_equal(r.msgs[3].role, SB_ROLE_TOOL);
    assert_string_equal(r.msgs[3].parts[0].parts[0].text, "r");
    assert_int_equal(r.ntools, 1);
    assert_int_equal(r.tools[0].strict, 1);
    assert_string_equal(json_string_value(json_object_get(r.tools[0].parameters, "type")),
                        "object");
    assert_int_equal(r.tool_choice, SB_TC_REQUIRED);
    assert_int_equal(r.nstop, 2);
    assert_string_equal(r.stop[1], "y");
    assert_int_equal(r.n, 1);
    assert_true(r.has_seed);
    assert_int_equal(r.seed, -5);
    assert_int_equal(r.top_logprobs, -1); /* without logprobs: dropped */
    assert_int_equal(r.parallel_tool_calls, 0);
    assert_string_equal(r.reasoning_effort, "low");
    assert_string_equal(r.user, "u");
    assert_string_equal(json_string_value(json_object_get(r.metadata, "k")), "v");
    assert_true(r.stream);
    assert_true(r.include_usage);
    assert_int_equal(r.max_tokens, 5);
    sb_canon_req_free(&r);
    /* What jansson refuses anywhere in the body is refused, even in a member nobody reads. */
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\\u0000\"}]}",
               NULL, "invalid_json");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\\ud800\"}]}", NULL,
               "invalid_json");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"x\":1e999}",
               NULL, "invalid_json");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
               "\"x\":123456789012345678901234567890}",
               NULL, "invalid_json");
    /* Errors in what the fast path reads keep their messages. */
    expect_400(
        "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":3}",
        "temperature", "decimal_above_max_value");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
               "messages[0].tool_call_id", "missing_required_parameter");
}

static void test_request_errors(void **state)
{
    (void)state;
    expect_400("", NULL, "invalid_json");
    expect_400("{\"model\":", NULL, "invalid_json");
    expect_400("[1]", NULL, "invalid_json");
    expect_400("{" MSGS_USER "}", "model", "missing_required_parameter");
    expect_400("{\"model\":3," MSGS_USER "}", "model", "invalid_type");
    expect_400("{\"model\":\"m\"}", "messages", "missing_required_parameter");
    expect_400("{\"model\":\"m\",\"messages\":[]}", "messages", "empty_array");
    expect_400("{\"model\":\"m\",\"messages\":{}}", "messages", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[\"hi\"]}", "messages[0]", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}", "messages[0].role",
               "missing_required_parameter");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}",
               "messages[0].role", "invalid_value");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":1,\"content\":\"x\"}]}",
               "messages[0].role", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"a\"},"
               "{\"role\":\"user\",\"content\":\"b\"},{\"role\":\"user\",\"content\":5}]}",
               "messages[2].content", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", "messages[0].content",
               "missing_required_parameter");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":null}]}",
               "messages[0].content", "missing_required_parameter");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"name\":5,\"content\":\"a\"}]}",
               "messages[0].name", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
               "\"input_audio\",\"input_audio\":{\"data\":\"AA\",\"format\":\"wav\"}}]}]}",
               "messages[0].content[0]", "unsupported_parameter");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
               "\"video\"}]}]}",
               "messages[0].content[0].type", "invalid_value");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":"
               "\"x\"}]}]}",
               "messages[0].content[0].type", "missing_required_parameter");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
               "\"text\",\"text\":3}]}]}",
               "messages[0].content[0].text", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[7]}]}",
               "messages[0].content[0]", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":[{\"type\":"
               "\"image_url\",\"image_url\":{\"url\":\"https://a/b.png\"}}]}]}",
               "messages[0].content[0].type", "invalid_value");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
               "\"image_url\",\"image_url\":{\"url\":\"data:image/png,abc\"}}]}]}",
               "messages[0].content[0].image_url.url", "invalid_image_url");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
               "\"image_url\",\"image_url\":{\"url\":\"ftp://a/b.png\"}}]}]}",
               "messages[0].content[0].image_url.url", "invalid_image_url");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
               "\"image_url\",\"image_url\":{}}]}]}",
               "messages[0].content[0].image_url.url", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
               "\"image_url\"}]}]}",
               "messages[0].content[0].image_url", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
               "\"file\",\"file\":{\"file_id\":\"file-abc\"}}]}]}",
               "messages[0].content[0].file.file_id", "unsupported_parameter");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
               "\"file\",\"file\":{}}]}]}",
               "messages[0].content[0].file.file_data", "missing_required_parameter");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}",
               "messages[0].tool_call_id", "missing_required_parameter");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"tool_call_id\":1,"
               "\"content\":\"x\"}]}",
               "messages[0].tool_call_id", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"tool_call_id\":\"c\"}]}",
               "messages[0].content", "missing_required_parameter");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\"}]}", "messages[0].content",
               "missing_required_parameter");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":null,"
               "\"tool_calls\":[]}]}",
               "messages[0].content", "missing_required_parameter");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":{}}]}",
               "messages[0].tool_calls", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":"
               "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}]}",
               "messages[0].tool_calls[0].id", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":"
               "[{\"id\":\"c\",\"function\":{\"arguments\":\"{}\"}}]}]}",
               "messages[0].tool_calls[0].function.name", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":"
               "[{\"id\":\"c\",\"function\":{\"name\":\"f\",\"arguments\":5}}]}]}",
               "messages[0].tool_calls[0].function.arguments", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"tool_calls\":"
               "[{\"id\":\"c\",\"type\":\"custom\",\"custom\":{}}]}]}",
               "messages[0].tool_calls[0].type", "unsupported_parameter");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":\"x\","
               "\"thinking_blocks\":[{\"type\":\"other\"}]}]}",
               "messages[0].thinking_blocks[0].type", "invalid_value");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":\"x\","
               "\"thinking_blocks\":[{\"type\":\"redacted_thinking\"}]}]}",
               "messages[0].thinking_blocks[0].data", "invalid_type");
    expect_400("{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":"
               "\"image_url\",\"image_url\":\"https://a\"}]}]}",
               "messages[0].content[0].type", "invalid_value");

    /* top-level parameters */
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"tools\":{}}", "tools", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"tools\":[{\"type\":\"function\","
               "\"function\":{\"description\":\"d\"}}]}",
               "tools[0].function", "missing_required_parameter");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"tools\":[{\"type\":\"custom\","
               "\"custom\":{\"name\":\"x\"}}]}",
               "tools[0].type", "unsupported_parameter");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"tools\":[{\"type\":\"function\","
               "\"function\":{\"name\":\"f\",\"parameters\":[]}}]}",
               "tools[0].function", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"tool_choice\":\"sometimes\"}", "tool_choice",
               "invalid_value");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"tool_choice\":{\"type\":\"function\"}}",
               "tool_choice", "missing_required_parameter");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"tool_choice\":{\"type\":\"allowed_tools\"}}",
               "tool_choice", "unsupported_parameter");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"tool_choice\":3}", "tool_choice", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"max_tokens\":0}", "max_tokens",
               "integer_below_min_value");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"max_completion_tokens\":\"5\"}",
               "max_completion_tokens", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"max_completion_tokens\":1.5}",
               "max_completion_tokens", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"temperature\":2.5}", "temperature",
               "decimal_above_max_value");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"temperature\":-0.5}", "temperature",
               "decimal_below_min_value");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"temperature\":\"hot\"}", "temperature",
               "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"top_p\":1.1}", "top_p", "decimal_above_max_value");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"presence_penalty\":-3}", "presence_penalty",
               "decimal_below_min_value");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"stop\":5}", "stop", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"stop\":[\"a\",1]}", "stop[1]", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\","
               "\"7\",\"8\",\"9\",\"10\",\"11\",\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}",
               "stop", "array_above_max_length");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"stream\":\"yes\"}", "stream", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"stream_options\":[]}", "stream_options",
               "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"stream_options\":{\"include_usage\":1}}",
               "stream_options.include_usage", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"n\":0}", "n", "integer_below_min_value");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"seed\":1.5}", "seed", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"logprobs\":1}", "logprobs", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"top_logprobs\":21}", "top_logprobs",
               "integer_above_max_value");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"parallel_tool_calls\":\"no\"}",
               "parallel_tool_calls", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"response_format\":\"json\"}", "response_format",
               "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"response_format\":{\"type\":\"xml\"}}",
               "response_format.type", "invalid_value");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"response_format\":{\"type\":\"json_schema\"}}",
               "response_format.json_schema", "missing_required_parameter");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"response_format\":{\"type\":\"json_schema\","
               "\"json_schema\":{\"schema\":{}}}}",
               "response_format.json_schema.name", "missing_required_parameter");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"response_format\":{\"type\":\"json_schema\","
               "\"json_schema\":{\"name\":\"n\",\"schema\":true}}}",
               "response_format.json_schema.schema", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"reasoning_effort\":\"extreme\"}",
               "reasoning_effort", "invalid_value");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"reasoning_effort\":2}", "reasoning_effort",
               "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"user\":5}", "user", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"metadata\":\"x\"}", "metadata", "invalid_type");
    expect_400("{\"model\":\"m\"," MSGS_USER ",\"functions\":[{\"name\":\"\"}]}", "functions[0]",
               "missing_required_parameter");
}

/* ---- response ---------------------------------------------------------------------------- */

static struct sb_canon_event ev0(enum sb_ev_type t, int index)
{
    struct sb_canon_event e;
    memset(&e, 0, sizeof e);
    e.type = t;
    e.index = index;
    sb_usage_init(&e.usage);
    return e;
}

static struct sb_canon_event ev_block(int index, enum sb_block_kind k, const char *id,
                                      const char *name)
{
    struct sb_canon_event e = ev0(SB_EV_BLOCK_START, index);
    e.block = k;
    e.id = id;
    e.name = name;
    return e;
}

static struct sb_canon_event ev_text(enum sb_ev_type t, int index, const char *s)
{
    struct sb_canon_event e = ev0(t, index);
    e.text = s;
    e.len = strlen(s);
    return e;
}

static struct sb_canon_event ev_finish(enum sb_finish f)
{
    struct sb_canon_event e = ev0(SB_EV_FINISH, 0);
    e.finish = f;
    return e;
}

static struct sb_canon_event ev_usage(int64_t in, int64_t cr, int64_t cw, int64_t out, int64_t reas)
{
    struct sb_canon_event e = ev0(SB_EV_USAGE, 0);
    e.usage.input = in;
    e.usage.cache_read = cr;
    e.usage.cache_write = cw;
    e.usage.output = out;
    e.usage.reasoning = reas;
    return e;
}

/* thinking(sig) + text "Hello " "world" + two tool calls + redacted; FINISH; USAGE */
static size_t build_sequence(struct sb_canon_event *evs, enum sb_finish fin)
{
    size_t n = 0;
    struct sb_canon_event s = ev0(SB_EV_START, 0);
    s.id = "msg_1";
    s.model = "claude-x";
    evs[n++] = s;
    evs[n++] = ev_block(0, SB_BLOCK_THINKING, NULL, NULL);
    evs[n++] = ev_text(SB_EV_DELTA, 0, "Let me ");
    evs[n++] = ev_text(SB_EV_DELTA, 0, "think.");
    evs[n++] = ev_text(SB_EV_SIGNATURE, 0, "SIG==");
    evs[n++] = ev0(SB_EV_BLOCK_STOP, 0);
    evs[n++] = ev_block(1, SB_BLOCK_TEXT, NULL, NULL);
    evs[n++] = ev_text(SB_EV_DELTA, 1, "Hello ");
    evs[n++] = ev_text(SB_EV_DELTA, 1, "");
    evs[n++] = ev_text(SB_EV_DELTA, 1, "world");
    evs[n++] = ev0(SB_EV_BLOCK_STOP, 1);
    evs[n++] = ev_block(2, SB_BLOCK_TOOL_CALL, "toolu_1", "get_weather");
    evs[n++] = ev_text(SB_EV_DELTA, 2, "");
    evs[n++] = ev_text(SB_EV_DELTA, 2, "{\"city\":");
    evs[n++] = ev_text(SB_EV_DELTA, 2, "\"Paris\"}");
    evs[n++] = ev0(SB_EV_BLOCK_STOP, 2);
    evs[n++] = ev_block(3, SB_BLOCK_REDACTED_THINKING, NULL, NULL);
    evs[n++] = ev_text(SB_EV_DELTA, 3, "OPAQUE");
    evs[n++] = ev0(SB_EV_BLOCK_STOP, 3);
    evs[n++] = ev_block(4, SB_BLOCK_TOOL_CALL, "toolu_2", "get_time");
    evs[n++] = ev0(SB_EV_BLOCK_STOP, 4);
    evs[n++] = ev_finish(fin);
    evs[n++] = ev_usage(10, 5, 3, 20, 7);
    return n;
}

static json_t *render(const struct sb_canon_resp *r, const char *model)
{
    struct sb_buf out;
    sb_buf_init(&out, CAP);
    assert_int_equal(C->render_response(r, model, &out), 0);
    json_t *j = json_loadb(out.data, out.len, 0, NULL);
    assert_non_null(j);
    sb_buf_free(&out);
    return j;
}

static void test_render_full(void **state)
{
    (void)state;
    struct sb_canon_event evs[64];
    size_t n = build_sequence(evs, SB_FINISH_TOOL_CALLS);
    struct sb_canon_resp r;
    sb_canon_resp_init(&r, CAP);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sb_canon_resp_event(&r, &evs[i]), 0);
    json_t *j = render(&r, "alias");
    assert_string_equal(json_string_value(json_object_get(j, "id")), "msg_1");
    assert_string_equal(json_string_value(json_object_get(j, "object")), "chat.completion");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "claude-x");
    assert_true(json_is_integer(json_object_get(j, "created")));
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    assert_int_equal(json_integer_value(json_object_get(ch, "index")), 0);
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "tool_calls");
    assert_true(json_is_null(json_object_get(ch, "logprobs")));
    json_t *m = json_object_get(ch, "message");
    assert_string_equal(json_string_value(json_object_get(m, "role")), "assistant");
    assert_string_equal(json_string_value(json_object_get(m, "content")), "Hello world");
    assert_true(json_is_null(json_object_get(m, "refusal")));
    assert_string_equal(json_string_value(json_object_get(m, "reasoning_content")),
                        "Let me think.");
    json_t *tb = json_object_get(m, "thinking_blocks");
    assert_int_equal(json_array_size(tb), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(tb, 0), "type")),
                        "thinking");
    assert_string_equal(json_string_value(json_object_get(json_array_get(tb, 0), "signature")),
                        "SIG==");
    assert_string_equal(json_string_value(json_object_get(json_array_get(tb, 1), "data")),
                        "OPAQUE");
    json_t *tc = json_object_get(m, "tool_calls");
    assert_int_equal(json_array_size(tc), 2);
    json_t *t0 = json_array_get(tc, 0);
    assert_string_equal(json_string_value(json_object_get(t0, "id")), "toolu_1");
    assert_string_equal(json_string_value(json_object_get(t0, "type")), "function");
    json_t *f0 = json_object_get(t0, "function");
    assert_string_equal(json_string_value(json_object_get(f0, "name")), "get_weather");
    json_t *args = json_loads(json_string_value(json_object_get(f0, "arguments")), 0, NULL);
    assert_string_equal(json_string_value(json_object_get(args, "city")), "Paris");
    json_decref(args);
    assert_string_equal(json_string_value(json_object_get(
                            json_object_get(json_array_get(tc, 1), "function"), "arguments")),
                        "");
    json_t *u = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 18);
    assert_int_equal(json_integer_value(json_object_get(u, "completion_tokens")), 20);
    assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 38);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"),
                                                        "cached_tokens")),
                     5);
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(u, "completion_tokens_details"), "reasoning_tokens")),
                     7);
    json_decref(j);
    sb_canon_resp_free(&r);
}

static void test_render_simple(void **state)
{
    (void)state;
    struct sb_canon_resp r;
    sb_canon_resp_init(&r, CAP);
    /* tools only: content null, generated ids, requested model */
    struct sb_canon_event e = ev0(SB_EV_START, 0);
    assert_int_equal(sb_canon_resp_event(&r, &e), 0);
    e = ev_block(0, SB_BLOCK_TOOL_CALL, NULL, "f");
    assert_int_equal(sb_canon_resp_event(&r, &e), 0);
    e = ev0(SB_EV_BLOCK_STOP, 0);
    assert_int_equal(sb_canon_resp_event(&r, &e), 0);
    e = ev_finish(SB_FINISH_TOOL_CALLS);
    assert_int_equal(sb_canon_resp_event(&r, &e), 0);
    json_t *j = render(&r, "gpt-x");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "gpt-x");
    assert_int_equal(strncmp(json_string_value(json_object_get(j, "id")), "chatcmpl-", 9), 0);
    assert_int_equal(strlen(json_string_value(json_object_get(j, "id"))), 9 + 24);
    json_t *m = json_object_get(json_array_get(json_object_get(j, "choices"), 0), "message");
    assert_true(json_is_null(json_object_get(m, "content")));
    json_t *t0 = json_array_get(json_object_get(m, "tool_calls"), 0);
    assert_int_equal(strncmp(json_string_value(json_object_get(t0, "id")), "call_", 5), 0);
    assert_null(json_object_get(m, "reasoning_content"));
    assert_null(json_object_get(m, "thinking_blocks"));
    assert_null(json_object_get(j, "usage")); /* nothing known */
    json_decref(j);
    sb_canon_resp_free(&r);

    /* no blocks at all: content "" ; length; usage with only output known */
    sb_canon_resp_init(&r, CAP);
    e = ev0(SB_EV_START, 0);
    assert_int_equal(sb_canon_resp_event(&r, &e), 0);
    e = ev_finish(SB_FINISH_CONTEXT_WINDOW);
    assert_int_equal(sb_canon_resp_event(&r, &e), 0);
    e = ev_usage(-1, -1, -1, 100, 100);
    assert_int_equal(sb_canon_resp_event(&r, &e), 0);
    j = render(&r, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "");
    json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
    assert_string_equal(json_string_value(json_object_get(ch, "finish_reason")), "length");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(ch, "message"), "content")), "");
    json_t *u = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 0);
    assert_int_equal(json_integer_value(json_object_get(u, "completion_tokens")), 100);
    assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 100);
    json_decref(j);
    sb_canon_resp_free(&r);

    /* provider counts near the limit saturate instead of overflowing */
    sb_canon_resp_init(&r, CAP);
    e = ev0(SB_EV_START, 0);
    assert_int_equal(sb_canon_resp_event(&r, &e), 0);
    e = ev_finish(SB_FINISH_STOP);
    assert_int_equal(sb_canon_resp_event(&r, &e), 0);
    e = ev_usage(INT64_MAX, INT64_MAX, 5, INT64_MAX, -1);
    assert_int_equal(sb_canon_resp_event(&r, &e), 0);
    j = render(&r, "m");
    u = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), INT64_MAX);
    assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), INT64_MAX);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(u, "prompt_tokens_details"),
                                                        "cache_write_tokens")),
                     5);
    json_decref(j);
    sb_canon_resp_free(&r);

    /* finish reasons */
    static const struct {
        enum sb_finish f;
        const char *s;
    } fins[] = {{SB_FINISH_STOP, "stop"},
                {SB_FINISH_STOP_SEQUENCE, "stop"},
                {SB_FINISH_LENGTH, "length"},
                {SB_FINISH_CONTENT_FILTER, "content_filter"},
                {SB_FINISH_REFUSAL, "content_filter"},
                {SB_FINISH_PAUSE, "stop"}};
    for (size_t i = 0; i < sizeof fins / sizeof fins[0]; i++) {
        sb_canon_resp_init(&r, CAP);
        e = ev0(SB_EV_START, 0);
        assert_int_equal(sb_canon_resp_event(&r, &e), 0);
        e = ev_finish(fins[i].f);
        assert_int_equal(sb_canon_resp_event(&r, &e), 0);
        j = render(&r, "m");
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(json_object_get(j, "choices"), 0), "finish_reason")),
                            fins[i].s);
        json_decref(j);
        sb_canon_resp_free(&r);
    }
}

static void test_render_response_error_and_cap(void **state)
{
    (void)state;
    struct sb_canon_resp r;
    sb_canon_resp_init(&r, CAP);
    struct sb_canon_error ce;
    sb_canon_error_set(&ce, 529, SB_ERRK_OVERLOADED, "overloaded_error", "Overloaded");
    struct sb_canon_event e = ev0(SB_EV_ERROR, 0);
    e.error = &ce;
    assert_int_equal(sb_canon_resp_event(&r, &e), 0);
    json_t *j = render(&r, "m");
    json_t *er = json_object_get(j, "error");
    assert_non_null(er);
    assert_string_equal(json_string_value(json_object_get(er, "message")), "Overloaded");
    assert_null(json_object_get(j, "choices"));
    json_decref(j);
    sb_canon_resp_free(&r);

    /* a tiny output cap fails cleanly and leaves nothing half-written */
    sb_canon_resp_init(&r, CAP);
    e = ev0(SB_EV_START, 0);
    assert_int_equal(sb_canon_resp_event(&r, &e), 0);
    e = ev_finish(SB_FINISH_STOP);
    assert_int_equal(sb_canon_resp_event(&r, &e), 0);
    struct sb_buf out;
    sb_buf_init(&out, 20);
    assert_int_equal(C->render_response(&r, "m", &out), -E2BIG);
    assert_int_equal(out.len, 0);
    sb_buf_free(&out);
    sb_canon_resp_free(&r);
}

/* ---- errors ------------------------------------------------------------------------------ */

static json_t *render_err(int status, enum sb_err_kind k, const char *msg, int *st)
{
    struct sb_canon_error ce;
    sb_canon_error_set(&ce, status, k, "x", "%s", msg);
    struct sb_buf out;
    sb_buf_init(&out, CAP);
    assert_int_equal(C->render_error(&ce, &out, st), 0);
    json_t *j = json_loadb(out.data, out.len, 0, NULL);
    assert_non_null(j);
    sb_buf_free(&out);
    json_t *e = json_object_get(j, "error");
    assert_non_null(e);
    /* all four keys, param null */
    assert_true(json_is_string(json_object_get(e, "message")));
    assert_true(json_is_string(json_object_get(e, "type")));
    assert_true(json_is_null(json_object_get(e, "param")));
    assert_non_null(json_object_get(e, "code"));
    json_incref(e);
    json_decref(j);
    return e;
}

static void check_err(int status, enum sb_err_kind k, int want_status, const char *type,
                      const char *code)
{
    int st = 0;
    json_t *e = render_err(status, k, "boom", &st);
    assert_int_equal(st, want_status);
    assert_string_equal(json_string_value(json_object_get(e, "type")), type);
    if (code)
        assert_string_equal(json_string_value(json_object_get(e, "code")), code);
    else
        assert_true(json_is_null(json_object_get(e, "code")));
    assert_string_equal(json_string_value(json_object_get(e, "message")), "boom");
    json_decref(e);
}

static void test_render_error(void **state)
{
    (void)state;
    check_err(400, SB_ERRK_INVALID_REQUEST, 400, "invalid_request_error", NULL);
    check_err(401, SB_ERRK_AUTH, 401, "authentication_error", "invalid_api_key");
    check_err(400, SB_ERRK_AUTH, 400, "authentication_error", "invalid_api_key");
    check_err(403, SB_ERRK_PERMISSION, 403, "permission_error", NULL);
    check_err(402, SB_ERRK_BILLING, 402, "insufficient_quota", "insufficient_quota");
    check_err(404, SB_ERRK_NOT_FOUND, 404, "invalid_request_error", NULL);
    check_err(413, SB_ERRK_TOO_LARGE, 413, "invalid_request_error", "request_too_large");
    check_err(400, SB_ERRK_CONTEXT_WINDOW, 400, "invalid_request_error", "context_length_exceeded");
    check_err(400, SB_ERRK_CONTENT_POLICY, 400, "invalid_request_error",
              "content_policy_violation");
    check_err(429, SB_ERRK_RATE_LIMIT, 429, "rate_limit_error", "rate_limit_exceeded");
    check_err(529, SB_ERRK_OVERLOADED, 503, "service_unavailable", "overloaded");
    check_err(503, SB_ERRK_OVERLOADED, 503, "service_unavailable", "overloaded");
    check_err(504, SB_ERRK_TIMEOUT, 504, "timeout", "timeout");
    check_err(500, SB_ERRK_SERVER, 500, "server_error", NULL);
    check_err(502, SB_ERRK_SERVER, 502, "server_error", NULL);
    /* a status that is not an error status: the kind decides */
    check_err(200, SB_ERRK_RATE_LIMIT, 429, "rate_limit_error", "rate_limit_exceeded");
    check_err(0, SB_ERRK_SERVER, 500, "server_error", NULL);

    int st;
    json_t *e = render_err(404, SB_ERRK_NOT_FOUND, "The model `x` does not exist", &st);
    assert_string_equal(json_string_value(json_object_get(e, "code")), "model_not_found");
    json_decref(e);
    e = render_err(500, SB_ERRK_SERVER, "", &st);
    assert_non_null(strstr(json_string_value(json_object_get(e, "message")), "500"));
    json_decref(e);
    /* invalid UTF-8 in a provider message still renders */
    e = render_err(500, SB_ERRK_SERVER, "bad \xff\xfe bytes", &st);
    assert_string_equal(json_string_value(json_object_get(e, "message")),
                        "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes");
    json_decref(e);
}

/* ---- stream ------------------------------------------------------------------------------ */

/* Splits SSE output into the JSON of each `data:` event; [DONE] becomes the string "[DONE]". */
static json_t *parse_sse(const char *s, size_t len)
{
    json_t *arr = json_array();
    size_t i = 0;
    while (i < len) {
        const char *end = strstr(s + i, "\n\n");
        assert_non_null(end);
        size_t el = (size_t)(end - (s + i));
        assert_true(el > 6);
        assert_memory_equal(s + i, "data: ", 6);
        assert_null(memchr(s + i, '\n', el)); /* one line per event */
        const char *d = s + i + 6;
        size_t dl = el - 6;
        if (dl == 6 && memcmp(d, "[DONE]", 6) == 0) {
            json_array_append_new(arr, json_string("[DONE]"));
        } else {
            json_error_t je;
            json_t *j = json_loadb(d, dl, 0, &je);
            if (!j)
                fail_msg("bad chunk JSON: %s: %.*s", je.text, (int)dl, d);
            json_array_append_new(arr, j);
        }
        i += el + 2;
    }
    return arr;
}

static json_t *delta_of(json_t *chunk)
{
    return json_object_get(json_array_get(json_object_get(chunk, "choices"), 0), "delta");
}

static json_t *run_stream(const struct sb_canon_event *evs, size_t n, bool include_usage, bool end)
{
    void *enc = C->enc_new("alias", include_usage);
    assert_non_null(enc);
    struct sb_buf out;
    sb_buf_init(&out, CAP);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(C->enc_event(enc, &evs[i], &out), 0);
    if (end)
        assert_int_equal(C->enc_end(enc, &out), 0);
    C->enc_free(enc);
    json_t *arr = parse_sse(out.data ? out.data : "", out.len);
    sb_buf_free(&out);
    return arr;
}

static void check_common(json_t *chunks, bool include_usage)
{
    const char *id = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(chunks, i, c)
    {
        if (json_is_string(c))
            continue;
        const char *cid = json_string_value(json_object_get(c, "id"));
        assert_non_null(cid);
        if (!id)
            id = cid;
        assert_string_equal(cid, id);
        assert_string_equal(json_string_value(json_object_get(c, "object")),
                            "chat.completion.chunk");
        assert_true(json_is_integer(json_object_get(c, "created")));
        assert_string_equal(json_string_value(json_object_get(c, "model")), "claude-x");
        json_t *ch = json_object_get(c, "choices");
        assert_true(json_is_array(ch));
        if (json_array_size(ch)) {
            json_t *c0 = json_array_get(ch, 0);
            assert_int_equal(json_integer_value(json_object_get(c0, "index")), 0);
            assert_true(json_is_null(json_object_get(c0, "logprobs")));
            assert_non_null(json_object_get(c0, "finish_reason"));
            if (include_usage)
                assert_true(json_is_null(json_object_get(c, "usage")));
            else
                assert_null(json_object_get(c, "usage"));
        } else {
            assert_true(include_usage);
            assert_true(json_is_object(json_object_get(c, "usage")));
        }
    }
    assert_int_equal(strncmp(id, "chatcmpl-", 9), 0);
}

static void test_stream_sequence(void **state)
{
    (void)state;
    struct sb_canon_event evs[64];
    size_t n = build_sequence(evs, SB_FINISH_TOOL_CALLS);
    for (int iu = 0; iu < 2; iu++) {
        json_t *ch = run_stream(evs, n, iu == 1, true);
        check_common(ch, iu == 1);
        size_t k = 0;
        json_t *d = delta_of(json_array_get(ch, k++));
        assert_string_equal(json_string_value(json_object_get(d, "role")), "assistant");
        assert_string_equal(json_string_value(json_object_get(d, "content")), "");
        d = delta_of(json_array_get(ch, k++));
        assert_string_equal(json_string_value(json_object_get(d, "reasoning_content")), "Let me ");
        assert_int_equal(json_object_size(d), 1);
        d = delta_of(json_array_get(ch, k++));
        assert_string_equal(json_string_value(json_object_get(d, "reasoning_content")), "think.");
        d = delta_of(json_array_get(ch, k++));
        json_t *tb = json_array_get(json_object_get(d, "thinking_blocks"), 0);
        assert_string_equal(json_string_value(json_object_get(tb, "type")), "thinking");
        assert_string_equal(json_string_value(json_object_get(tb, "thinking")), "");
        assert_string_equal(json_string_value(json_object_get(tb, "signature")), "SIG==");
        d = delta_of(json_array_get(ch, k++));
        assert_string_equal(json_string_value(json_object_get(d, "content")), "Hello ");
        d = delta_of(json_array_get(ch, k++)); /* the empty delta was skipped */
        assert_string_equal(json_string_value(json_object_get(d, "content")), "world");
        d = delta_of(json_array_get(ch, k++));
        json_t *tc = json_array_get(json_object_get(d, "tool_calls"), 0);
        assert_int_equal(json_integer_value(json_object_get(tc, "index")), 0);
        assert_string_equal(json_string_value(json_object_get(tc, "id")), "toolu_1");
        assert_string_equal(json_string_value(json_object_get(tc, "type")), "function");
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(tc, "function"), "name")),
            "get_weather");
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(tc, "function"), "arguments")), "");
        d = delta_of(json_array_get(ch, k++));
        tc = json_array_get(json_object_get(d, "tool_calls"), 0);
        assert_int_equal(json_integer_value(json_object_get(tc, "index")), 0);
        assert_null(json_object_get(tc, "id"));
        assert_null(json_object_get(json_object_get(tc, "function"), "name"));
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(tc, "function"), "arguments")),
            "{\"city\":");
        d = delta_of(json_array_get(ch, k++));
        tc = json_array_get(json_object_get(d, "tool_calls"), 0);
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(tc, "function"), "arguments")),
            "\"Paris\"}");
        d = delta_of(json_array_get(ch, k++));
        tb = json_array_get(json_object_get(d, "thinking_blocks"), 0);
        assert_string_equal(json_string_value(json_object_get(tb, "type")), "redacted_thinking");
        assert_string_equal(json_string_value(json_object_get(tb, "data")), "OPAQUE");
        d = delta_of(json_array_get(ch, k++));
        tc = json_array_get(json_object_get(d, "tool_calls"), 0);
        assert_int_equal(json_integer_value(json_object_get(tc, "index")), 1);
        assert_string_equal(json_string_value(json_object_get(tc, "id")), "toolu_2");
        json_t *fin = json_array_get(ch, k++);
        assert_int_equal(json_object_size(delta_of(fin)), 0);
        assert_string_equal(
            json_string_value(json_object_get(json_array_get(json_object_get(fin, "choices"), 0),
                                              "finish_reason")),
            "tool_calls");
        /* every earlier chunk has finish_reason null */
        for (size_t q = 0; q + 1 < k; q++)
            assert_true(json_is_null(json_object_get(
                json_array_get(json_object_get(json_array_get(ch, q), "choices"), 0),
                "finish_reason")));
        if (iu) {
            json_t *u = json_array_get(ch, k++);
            assert_int_equal(json_array_size(json_object_get(u, "choices")), 0);
            json_t *us = json_object_get(u, "usage");
            assert_int_equal(json_integer_value(json_object_get(us, "prompt_tokens")), 18);
            assert_int_equal(json_integer_value(json_object_get(us, "completion_tokens")), 20);
            assert_int_equal(json_integer_value(json_object_get(us, "total_tokens")), 38);
        }
        assert_string_equal(json_string_value(json_array_get(ch, k++)), "[DONE]");
        assert_int_equal(json_array_size(ch), k);
        json_decref(ch);
    }
}

static void test_stream_fixture_shape(void **state)
{
    (void)state;
    /* The shape of chat_stream_include_usage.sse: role chunk, finish, usage, [DONE]. */
    struct sb_canon_event evs[4];
    struct sb_canon_event s = ev0(SB_EV_START, 0);
    s.model = "gpt-5-nano-2025-08-07";
    evs[0] = s;
    evs[1] = ev_finish(SB_FINISH_LENGTH);
    evs[2] = ev_usage(12, 0, -1, 100, 100);
    void *enc = C->enc_new("gpt-5-nano", true);
    struct sb_buf out;
    sb_buf_init(&out, CAP);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(C->enc_event(enc, &evs[i], &out), 0);
    assert_int_equal(C->enc_end(enc, &out), 0);
    C->enc_free(enc);
    json_t *ch = parse_sse(out.data, out.len);
    assert_int_equal(json_array_size(ch), 4);
    size_t fl;
    char *fx = read_file(FIX "chat_stream_include_usage.sse", &fl);
    json_t *want = parse_sse(fx, fl);
    free(fx);
    assert_int_equal(json_array_size(want), 4);
    for (size_t i = 0; i < 3; i++) {
        json_t *a = json_array_get(ch, i), *b = json_array_get(want, i);
        assert_string_equal(json_string_value(json_object_get(a, "model")),
                            json_string_value(json_object_get(b, "model")));
        assert_true(json_equal(json_object_get(a, "usage"), json_object_get(b, "usage")) || i == 2);
        json_t *ca = json_array_get(json_object_get(a, "choices"), 0);
        json_t *cb = json_array_get(json_object_get(b, "choices"), 0);
        if (cb)
            assert_true(json_equal(json_object_get(ca, "finish_reason"),
                                   json_object_get(cb, "finish_reason")));
        else
            assert_null(ca);
    }
    json_t *ua = json_object_get(json_array_get(ch, 2), "usage");
    json_t *ub = json_object_get(json_array_get(want, 2), "usage");
    static const char *keys[] = {"prompt_tokens", "completion_tokens", "total_tokens"};
    for (size_t i = 0; i < 3; i++)
        assert_true(json_equal(json_object_get(ua, keys[i]), json_object_get(ub, keys[i])));
    assert_true(json_equal(
        json_object_get(json_object_get(ua, "completion_tokens_details"), "reasoning_tokens"),
        json_object_get(json_object_get(ub, "completion_tokens_details"), "reasoning_tokens")));
    json_decref(ch);
    json_decref(want);
    sb_buf_free(&out);
}

static void test_stream_no_usage_and_model(void **state)
{
    (void)state;
    /* START without model: the enc_new model is reported; USAGE without include_usage is
     * swallowed. */
    struct sb_canon_event evs[3] = {ev0(SB_EV_START, 0), ev_finish(SB_FINISH_STOP),
                                    ev_usage(1, -1, -1, 2, -1)};
    json_t *ch = run_stream(evs, 3, false, true);
    assert_int_equal(json_array_size(ch), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ch, 0), "model")),
                        "alias");
    assert_null(json_object_get(json_array_get(ch, 1), "usage"));
    assert_string_equal(json_string_value(json_array_get(ch, 2)), "[DONE]");
    json_decref(ch);

    /* USAGE before FINISH is held and sent after the finish chunk */
    struct sb_canon_event ev1[3] = {ev0(SB_EV_START, 0), ev_usage(4, -1, -1, 6, -1),
                                    ev_finish(SB_FINISH_STOP)};
    ch = run_stream(ev1, 3, true, true);
    assert_int_equal(json_array_size(ch), 4);
    assert_string_equal(
        json_string_value(json_object_get(
            json_array_get(json_object_get(json_array_get(ch, 1), "choices"), 0), "finish_reason")),
        "stop");
    assert_int_equal(json_integer_value(json_object_get(
                         json_object_get(json_array_get(ch, 2), "usage"), "total_tokens")),
                     10);
    assert_string_equal(json_string_value(json_array_get(ch, 3)), "[DONE]");
    json_decref(ch);
    ch = run_stream(ev1, 3, false, true);
    assert_int_equal(json_array_size(ch), 3);
    json_decref(ch);

    /* tool block without id gets one */
    struct sb_canon_event ev2[4] = {ev0(SB_EV_START, 0), ev_block(0, SB_BLOCK_TOOL_CALL, NULL, "f"),
                                    ev0(SB_EV_BLOCK_STOP, 0), ev_finish(SB_FINISH_TOOL_CALLS)};
    ch = run_stream(ev2, 4, true, false);
    json_t *tc = json_array_get(json_object_get(delta_of(json_array_get(ch, 1)), "tool_calls"), 0);
    assert_int_equal(strncmp(json_string_value(json_object_get(tc, "id")), "call_", 5), 0);
    json_decref(ch);
}

static void test_stream_error(void **state)
{
    (void)state;
    void *enc = C->enc_new("m", false);
    struct sb_buf out;
    sb_buf_init(&out, CAP);
    struct sb_canon_event e = ev0(SB_EV_START, 0);
    assert_int_equal(C->enc_event(enc, &e, &out), 0);
    e = ev_block(0, SB_BLOCK_TEXT, NULL, NULL);
    assert_int_equal(C->enc_event(enc, &e, &out), 0);
    e = ev_text(SB_EV_DELTA, 0, "partial");
    assert_int_equal(C->enc_event(enc, &e, &out), 0);
    struct sb_canon_error ce;
    sb_canon_error_set(&ce, 500, SB_ERRK_SERVER, "server_error",
                       "The server had an error while processing your request. Sorry about "
                       "that!");
    assert_int_equal(C->enc_error(enc, &ce, &out), 0);
    /* the stream is over: nothing more, not even [DONE] */
    size_t len = out.len;
    assert_int_equal(C->enc_event(enc, &e, &out), SB_CANON_E_INVALID);
    assert_int_equal(C->enc_end(enc, &out), SB_CANON_E_INVALID);
    assert_int_equal(C->enc_error(enc, &ce, &out), SB_CANON_E_INVALID);
    assert_int_equal(out.len, len);
    C->enc_free(enc);
    json_t *ch = parse_sse(out.data, out.len);
    assert_int_equal(json_array_size(ch), 3);
    /* the exact shape of error_in_stream.synthetic.sse */
    size_t fl;
    char *fx = read_file(FIX "error_in_stream.synthetic.sse", &fl);
    const char *p = fx;
    while (*p == '\n')
        p++;
    json_t *want = parse_sse(p, fl - (size_t)(p - fx));
    free(fx);
    assert_true(json_equal(json_array_get(ch, 2), json_array_get(want, 0)));
    json_decref(want);
    json_decref(ch);
    sb_buf_free(&out);

    /* a stream cut before its finish: enc_end refuses and writes nothing; the error goes out */
    enc = C->enc_new("m", false);
    sb_buf_init(&out, CAP);
    assert_int_equal(C->enc_end(enc, &out), SB_CANON_E_CUT); /* not even started */
    e = ev0(SB_EV_START, 0);
    assert_int_equal(C->enc_event(enc, &e, &out), 0);
    e = ev_block(0, SB_BLOCK_TEXT, NULL, NULL);
    assert_int_equal(C->enc_event(enc, &e, &out), 0);
    len = out.len;
    assert_int_equal(C->enc_end(enc, &out), SB_CANON_E_CUT);
    assert_int_equal(out.len, len);
    assert_int_equal(C->enc_error(enc, &ce, &out), 0);
    C->enc_free(enc);
    ch = parse_sse(out.data, out.len);
    assert_int_equal(json_array_size(ch), 2);
    assert_non_null(json_object_get(json_array_get(ch, 1), "error"));
    json_decref(ch);
    sb_buf_free(&out);

    /* an ERROR event does the same */
    enc = C->enc_new("m", true);
    sb_buf_init(&out, CAP);
    e = ev0(SB_EV_ERROR, 0);
    e.error = &ce;
    assert_int_equal(C->enc_event(enc, &e, &out), 0);
    assert_int_equal(C->enc_end(enc, &out), SB_CANON_E_INVALID);
    C->enc_free(enc);
    ch = parse_sse(out.data, out.len);
    assert_int_equal(json_array_size(ch), 1);
    assert_non_null(json_object_get(json_array_get(ch, 0), "error"));
    json_decref(ch);
    sb_buf_free(&out);
}

static void expect_invalid_seq(const struct sb_canon_event *evs, size_t n)
{
    void *enc = C->enc_new("m", true);
    struct sb_buf out;
    sb_buf_init(&out, CAP);
    for (size_t i = 0; i + 1 < n; i++)
        assert_int_equal(C->enc_event(enc, &evs[i], &out), 0);
    assert_int_equal(C->enc_event(enc, &evs[n - 1], &out), SB_CANON_E_INVALID);
    C->enc_free(enc);
    sb_buf_free(&out);
}

static void test_stream_out_of_order(void **state)
{
    (void)state;
    struct sb_canon_event s = ev0(SB_EV_START, 0);
    struct sb_canon_event a[] = {ev_text(SB_EV_DELTA, 0, "x")};
    expect_invalid_seq(a, 1);
    struct sb_canon_event b[] = {s, s};
    expect_invalid_seq(b, 2);
    struct sb_canon_event c[] = {s, ev_block(1, SB_BLOCK_TEXT, NULL, NULL)};
    expect_invalid_seq(c, 2);
    struct sb_canon_event d[] = {s, ev_block(0, SB_BLOCK_TEXT, NULL, NULL),
                                 ev_block(1, SB_BLOCK_TEXT, NULL, NULL)};
    expect_invalid_seq(d, 3);
    struct sb_canon_event e[] = {s, ev_block(0, SB_BLOCK_TEXT, NULL, NULL),
                                 ev_text(SB_EV_DELTA, 1, "x")};
    expect_invalid_seq(e, 3);
    struct sb_canon_event f[] = {s, ev_block(0, SB_BLOCK_TEXT, NULL, NULL),
                                 ev_text(SB_EV_SIGNATURE, 0, "sig")};
    expect_invalid_seq(f, 3);
    struct sb_canon_event g[] = {s, ev_block(0, SB_BLOCK_TEXT, NULL, NULL),
                                 ev_finish(SB_FINISH_STOP)};
    expect_invalid_seq(g, 3);
    struct sb_canon_event h[] = {s, ev_usage(1, 1, 1, 1, 1), ev_usage(1, 1, 1, 1, 1)};
    expect_invalid_seq(h, 3);
    struct sb_canon_event i[] = {s, ev_finish(SB_FINISH_STOP), ev_finish(SB_FINISH_STOP)};
    expect_invalid_seq(i, 3);
    struct sb_canon_event j[] = {s, ev_finish(SB_FINISH_STOP), ev_usage(1, 1, 1, 1, 1),
                                 ev_usage(1, 1, 1, 1, 1)};
    expect_invalid_seq(j, 4);
    struct sb_canon_event k[] = {s, ev_finish(SB_FINISH_STOP),
                                 ev_block(0, SB_BLOCK_TEXT, NULL, NULL)};
    expect_invalid_seq(k, 3);
    struct sb_canon_event l[] = {s, ev0(SB_EV_BLOCK_STOP, 0)};
    expect_invalid_seq(l, 2);
    struct sb_canon_event m[] = {s, ev0(SB_EV_ERROR, 0)}; /* no error object */
    expect_invalid_seq(m, 2);
}

static void test_stream_cap_and_utf8(void **state)
{
    (void)state;
    void *enc = C->enc_new("m", false);
    struct sb_buf out;
    sb_buf_init(&out, 600);
    struct sb_canon_event e = ev0(SB_EV_START, 0);
    assert_int_equal(C->enc_event(enc, &e, &out), 0);
    e = ev_block(0, SB_BLOCK_TEXT, NULL, NULL);
    assert_int_equal(C->enc_event(enc, &e, &out), 0);
    /* a character split between deltas: replaced, chunk still valid JSON */
    e = ev_text(SB_EV_DELTA, 0, "caf\xC3");
    assert_int_equal(C->enc_event(enc, &e, &out), 0);
    size_t len = out.len;
    char big[700];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    e = ev_text(SB_EV_DELTA, 0, big);
    assert_int_equal(C->enc_event(enc, &e, &out), -E2BIG);
    assert_int_equal(out.len, len); /* nothing partial */
    C->enc_free(enc);
    json_t *ch = parse_sse(out.data, out.len);
    assert_string_equal(
        json_string_value(json_object_get(delta_of(json_array_get(ch, 1)), "content")),
        "caf\xEF\xBF\xBD");
    json_decref(ch);
    sb_buf_free(&out);
    C->enc_free(NULL);
}

/* ---- embeddings -------------------------------------------------------------------------- */

static void expect_embed_400(const char *body, const char *param, const char *code)
{
    struct sb_embed_req r;
    struct sb_error e;
    memset(&e, 0, sizeof e);
    if (sb_openai_decode_embed_request(body, strlen(body), &r, &e) != -1)
        fail_msg("accepted: %s", body);
    assert_int_equal(e.status, 400);
    if (param)
        assert_string_equal(e.param, param);
    assert_string_equal(e.code, code);
    assert_null(r.inputs);
    assert_null(r.model);
}

static void test_embed_request(void **state)
{
    (void)state;
    size_t len;
    char *body = read_file(FIX "embeddings_base64_dimensions.request.json", &len);
    struct sb_embed_req r;
    struct sb_error e;
    assert_int_equal(sb_openai_decode_embed_request(body, len, &r, &e), 0);
    free(body);
    assert_string_equal(r.model, "text-embedding-3-small");
    assert_int_equal(r.ninputs, 1);
    assert_string_equal(r.inputs[0], "Generate embeddings with specific dimensions");
    assert_int_equal(r.dimensions, 256);
    assert_true(r.base64);
    assert_null(r.input_type);
    sb_embed_req_free(&r);

    const char *b = "{\"model\":\"e\",\"input\":[\"a\",\"b\",\"c\"],\"encoding_format\":"
                    "\"float\",\"user\":\"u\",\"input_type\":\"search_query\",\"x\":1}";
    assert_int_equal(sb_openai_decode_embed_request(b, strlen(b), &r, &e), 0);
    assert_int_equal(r.ninputs, 3);
    assert_string_equal(r.inputs[2], "c");
    assert_false(r.base64);
    assert_int_equal(r.dimensions, -1);
    assert_string_equal(r.user, "u");
    assert_string_equal(r.input_type, "search_query");
    sb_embed_req_free(&r);

    body = read_file(FIX "error_400_embeddings_invalid_dimensions.request.json", &len);
    assert_int_equal(sb_openai_decode_embed_request(body, len, &r, &e), -1);
    assert_string_equal(e.param, "input"); /* token arrays come first */
    assert_string_equal(e.code, "unsupported_parameter");
    free(body);

    expect_embed_400("nope", NULL, "invalid_json");
    expect_embed_400("[]", NULL, "invalid_json");
    expect_embed_400("{\"input\":\"a\"}", "model", "missing_required_parameter");
    expect_embed_400("{\"model\":1,\"input\":\"a\"}", "model", "invalid_type");
    expect_embed_400("{\"model\":\"e\"}", "input", "missing_required_parameter");
    expect_embed_400("{\"model\":\"e\",\"input\":[]}", "input", "empty_array");
    expect_embed_400("{\"model\":\"e\",\"input\":\"\"}", "input", "invalid_value");
    expect_embed_400("{\"model\":\"e\",\"input\":[\"a\",\"\"]}", "input", "invalid_value");
    expect_embed_400("{\"model\":\"e\",\"input\":[1,2,3]}", "input", "unsupported_parameter");
    expect_embed_400("{\"model\":\"e\",\"input\":[[1,2],[3]]}", "input", "unsupported_parameter");
    expect_embed_400("{\"model\":\"e\",\"input\":[\"a\",{}]}", "input", "invalid_type");
    expect_embed_400("{\"model\":\"e\",\"input\":5}", "input", "invalid_type");
    expect_embed_400("{\"model\":\"e\",\"input\":\"a\",\"dimensions\":0}", "dimensions",
                     "integer_below_min_value");
    expect_embed_400("{\"model\":\"e\",\"input\":\"a\",\"dimensions\":\"8\"}", "dimensions",
                     "invalid_type");
    expect_embed_400("{\"model\":\"e\",\"input\":\"a\",\"encoding_format\":\"hex\"}",
                     "encoding_format", "invalid_value");
    expect_embed_400("{\"model\":\"e\",\"input\":\"a\",\"user\":1}", "user", "invalid_type");
    expect_embed_400("{\"model\":\"e\",\"input\":\"a\",\"input_type\":[]}", "input_type",
                     "invalid_type");

    /* more inputs than one call may carry */
    struct sb_buf big;
    sb_buf_init(&big, CAP);
    assert_int_equal(sb_buf_append_str(&big, "{\"model\":\"e\",\"input\":["), 0);
    for (int i = 0; i < 2049; i++)
        assert_int_equal(sb_buf_append_str(&big, i ? ",\"x\"" : "\"x\""), 0);
    assert_int_equal(sb_buf_append_str(&big, "]}"), 0);
    expect_embed_400(big.data, "input", "array_above_max_length");
    sb_buf_free(&big);
}

static int b64val(char c)
{
    const char *t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const char *p = strchr(t, c);
    return p && c ? (int)(p - t) : -1;
}

static size_t b64dec(const char *s, unsigned char *out, size_t cap)
{
    size_t n = 0, len = strlen(s);
    assert_int_equal(len % 4, 0);
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        for (int k = 0; k < 4; k++)
            v[k] = s[i + k] == '=' ? 0 : b64val(s[i + k]);
        for (int k = 0; k < 4; k++)
            assert_true(v[k] >= 0);
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        unsigned char b[3] = {(unsigned char)(w >> 16), (unsigned char)(w >> 8), (unsigned char)w};
        size_t take = s[i + 2] == '=' ? 1 : s[i + 3] == '=' ? 2 : 3;
        for (size_t k = 0; k < take; k++) {
            assert_true(n < cap);
            out[n++] = b[k];
        }
    }
    return n;
}

static void test_embed_render(void **state)
{
    (void)state;
    /* vectors from the fixture */
    size_t len;
    char *body = read_file(FIX "embeddings_float.response.json", &len);
    json_t *fx = json_loadb(body, len, 0, NULL);
    free(body);
    assert_non_null(fx);
    json_t *fv = json_object_get(json_array_get(json_object_get(fx, "data"), 0), "embedding");
    size_t dims = json_array_size(fv);
    assert_true(dims > 10);

    struct sb_embed_resp r;
    memset(&r, 0, sizeof r);
    r.n = 2;
    r.vectors = calloc(2, sizeof *r.vectors);
    r.dims = calloc(2, sizeof *r.dims);
    assert_non_null(r.vectors);
    assert_non_null(r.dims);
    r.vectors[0] = calloc(dims, sizeof(double));
    r.vectors[1] = calloc(3, sizeof(double));
    for (size_t i = 0; i < dims; i++)
        r.vectors[0][i] = json_number_value(json_array_get(fv, i));
    r.dims[0] = dims;
    r.vectors[1][0] = 1.0;
    r.vectors[1][1] = -0.5;
    r.vectors[1][2] = 3.4028234663852886e38;
    r.dims[1] = 3;
    r.input_tokens = 8;

    struct sb_buf out;
    sb_buf_init(&out, CAP);
    assert_int_equal(sb_openai_render_embeddings(&r, "text-embedding-3-small", false, &out), 0);
    json_t *j = json_loadb(out.data, out.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "object")), "list");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "text-embedding-3-small");
    json_t *data = json_object_get(j, "data");
    assert_int_equal(json_array_size(data), 2);
    json_t *d1 = json_array_get(data, 1);
    assert_string_equal(json_string_value(json_object_get(d1, "object")), "embedding");
    assert_int_equal(json_integer_value(json_object_get(d1, "index")), 1);
    json_t *v0 = json_object_get(json_array_get(data, 0), "embedding");
    assert_int_equal(json_array_size(v0), dims);
    for (size_t i = 0; i < dims; i++)
        assert_true((float)json_number_value(json_array_get(v0, i)) ==
                    (float)json_number_value(json_array_get(fv, i)));
    assert_true((float)json_number_value(json_array_get(json_object_get(d1, "embedding"), 2)) ==
                3.4028234663852886e38f);
    json_t *u = json_object_get(j, "usage");
    assert_int_equal(json_integer_value(json_object_get(u, "prompt_tokens")), 8);
    assert_int_equal(json_integer_value(json_object_get(u, "total_tokens")), 8);
    assert_null(json_object_get(u, "completion_tokens"));
    json_decref(j);

    /* base64: little-endian float32 */
    sb_buf_reset(&out);
    free(r.model);
    r.model = strdup("served-model");
    r.input_tokens = -1;
    assert_int_equal(sb_openai_render_embeddings(&r, "asked", true, &out), 0);
    j = json_loadb(out.data, out.len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "served-model");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "usage"), "prompt_tokens")), 0);
    data = json_object_get(j, "data");
    for (size_t k = 0; k < 2; k++) {
        const char *s = json_string_value(json_object_get(json_array_get(data, k), "embedding"));
        assert_non_null(s);
        unsigned char bytes[8192];
        size_t nb = b64dec(s, bytes, sizeof bytes);
        assert_int_equal(nb, r.dims[k] * 4);
        for (size_t i = 0; i < r.dims[k]; i++) {
            uint32_t w = (uint32_t)bytes[4 * i] | (uint32_t)bytes[4 * i + 1] << 8 |
                         (uint32_t)bytes[4 * i + 2] << 16 | (uint32_t)bytes[4 * i + 3] << 24;
            float f;
            memcpy(&f, &w, sizeof f);
            assert_true(f == (float)r.vectors[k][i]);
        }
    }
    json_decref(j);

    /* the first vector of the base64 fixture decodes the same way */
    body = read_file(FIX "embeddings_base64_dimensions.response.json", &len);
    j = json_loadb(body, len, 0, NULL);
    free(body);
    const char *s = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "data"), 0), "embedding"));
    unsigned char bytes[8192];
    assert_int_equal(b64dec(s, bytes, sizeof bytes), 256 * 4);
    json_decref(j);

    /* non-finite values cannot be JSON; cap fails cleanly */
    r.vectors[1][0] = NAN;
    sb_buf_reset(&out);
    assert_int_equal(sb_openai_render_embeddings(&r, "m", false, &out), SB_CANON_E_INVALID);
    assert_int_equal(out.len, 0);
    struct sb_buf small;
    sb_buf_init(&small, 64);
    assert_int_equal(sb_openai_render_embeddings(&r, "m", true, &small), -E2BIG);
    assert_int_equal(small.len, 0);
    sb_buf_free(&small);

    sb_buf_free(&out);
    json_decref(fx);
    sb_embed_resp_free(&r);

    /* a response claiming vectors it does not hold */
    struct sb_embed_resp bad = {.n = 1, .input_tokens = -1};
    sb_buf_init(&out, CAP);
    assert_int_equal(sb_openai_render_embeddings(&bad, "m", false, &out), SB_CANON_E_INVALID);
    assert_int_equal(out.len, 0);
    sb_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_requests),
        cmocka_unit_test(test_fixture_fields),
        cmocka_unit_test(test_request_messages),
        cmocka_unit_test(test_request_legacy_functions),
        cmocka_unit_test(test_request_params),
        cmocka_unit_test(test_request_errors),
        cmocka_unit_test(test_request_fast_and_tree_agree),
        cmocka_unit_test(test_render_full),
        cmocka_unit_test(test_render_simple),
        cmocka_unit_test(test_render_response_error_and_cap),
        cmocka_unit_test(test_render_error),
        cmocka_unit_test(test_stream_sequence),
        cmocka_unit_test(test_stream_fixture_shape),
        cmocka_unit_test(test_stream_no_usage_and_model),
        cmocka_unit_test(test_stream_error),
        cmocka_unit_test(test_stream_out_of_order),
        cmocka_unit_test(test_stream_cap_and_utf8),
        cmocka_unit_test(test_embed_request),
        cmocka_unit_test(test_embed_render),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* The Anthropic Messages client dialect: request decoding (every mapping and every 400),
 * responses, errors, and the stream encoder checked event by event, including against the
 * recorded Anthropic streams. */
#include "canon/anthropic_client.h"
#include "canon/codecs.h"

#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define FIX SB_SOURCE_DIR "/tests/data/fixtures/anthropic/"

static const struct sb_client_codec *C = &sb_client_anthropic;

/* ------------------------------------------------------------------ helpers */

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct sb_buf b;
    sb_buf_init(&b, 1 << 22);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        assert_int_equal(sb_buf_append(&b, chunk, n), 0);
    fclose(f);
    return sb_buf_take(&b, len);
}

static void decode_ok(const char *body, struct sb_canon_req *r)
{
    struct sb_error err;
    memset(&err, 0, sizeof err);
    int rc = C->decode_request(body, strlen(body), r, &err);
    if (rc != 0)
        fail_msg("decode failed: %s (param %s)", err.message, err.param ? err.param : "-");
}

/* Decoding fails with a 400 naming `param` (NULL: no param), with `code` (NULL: none) and a
 * message containing `needle`. */
static void decode_bad(const char *body, const char *param, const char *code, const char *needle)
{
    struct sb_canon_req r;
    struct sb_error err;
    memset(&err, 0, sizeof err);
    int rc = C->decode_request(body, strlen(body), &r, &err);
    if (rc != -1)
        fail_msg("accepted: %s", body);
    assert_int_equal(err.status, 400);
    assert_string_equal(err.type, "invalid_request_error");
    if (param) {
        assert_non_null(err.param);
        assert_string_equal(err.param, param);
    } else {
        assert_null(err.param);
    }
    if (code) {
        assert_non_null(err.code);
        assert_string_equal(err.code, code);
    } else {
        assert_null(err.code);
    }
    if (needle && !strstr(err.message, needle))
        fail_msg("message \"%s\" lacks \"%s\"", err.message, needle);
    /* Whatever was decoded before the error is already freed; a second free is harmless. */
    sb_canon_req_free(&r);
}

static json_t *parse(const char *s, size_t len)
{
    json_error_t je;
    json_t *j = json_loadb(s, len, 0, &je);
    if (!j)
        fail_msg("invalid JSON (%s): %.*s", je.text, (int)len, s);
    return j;
}

/* SSE text -> [{"event": name, "data": object}], checking the framing and that each event
 * line names the data's type. */
static json_t *parse_sse(const char *s, size_t len, bool check_types)
{
    json_t *arr = json_array();
    size_t i = 0;
    while (i < len) {
        const char *end = strstr(s + i, "\n\n");
        assert_non_null(end);
        size_t elen = (size_t)(end - (s + i));
        const char *ev = s + i;
        assert_true(elen > 7 && strncmp(ev, "event: ", 7) == 0);
        const char *nl = memchr(ev, '\n', elen);
        assert_non_null(nl);
        char name[64];
        size_t nlen = (size_t)(nl - ev) - 7;
        assert_true(nlen < sizeof name);
        memcpy(name, ev + 7, nlen);
        name[nlen] = '\0';
        assert_true(strncmp(nl + 1, "data: ", 6) == 0);
        const char *d = nl + 7;
        json_t *data = parse(d, (size_t)(end - d));
        if (check_types)
            assert_string_equal(json_string_value(json_object_get(data, "type")), name);
        json_array_append_new(arr, json_pack("{s:s, s:o}", "event", name, "data", data));
        i += elen + 2;
    }
    return arr;
}

static const char *ev_name(const json_t *evs, size_t i)
{
    return json_string_value(json_object_get(json_array_get(evs, i), "event"));
}

static json_t *ev_data(const json_t *evs, size_t i)
{
    return json_object_get(json_array_get(evs, i), "data");
}

static json_t *jpath(json_t *j, const char *path)
{
    char key[64];
    while (*path && j) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        assert_true(n < sizeof key);
        memcpy(key, path, n);
        key[n] = '\0';
        if (json_is_array(j))
            j = json_array_get(j, strtoul(key, NULL, 10));
        else
            j = json_object_get(j, key);
        path += n + (dot ? 1 : 0);
    }
    return j;
}

static void assert_jstr(json_t *j, const char *path, const char *want)
{
    json_t *v = jpath(j, path);
    if (!json_is_string(v))
        fail_msg("%s is not a string", path);
    assert_string_equal(json_string_value(v), want);
}

static void assert_jint(json_t *j, const char *path, json_int_t want)
{
    json_t *v = jpath(j, path);
    if (!json_is_integer(v))
        fail_msg("%s is not an integer", path);
    assert_int_equal(json_integer_value(v), want);
}

static void assert_jnull(json_t *j, const char *path)
{
    json_t *v = jpath(j, path);
    if (!json_is_null(v))
        fail_msg("%s is not null", path);
}

/* ------------------------------------------------------------------ decode */

static const char *FULL_REQUEST =
    "{\"model\":\"gpt-4o\",\"max_tokens\":1024,"
    "\"system\":[{\"type\":\"text\",\"text\":\"Be "
    "brief.\",\"cache_control\":{\"type\":\"ephemeral\"}},"
    "{\"type\":\"text\",\"text\":\"Use tools.\"}],"
    "\"messages\":["
    "{\"role\":\"user\",\"content\":["
    "{\"type\":\"text\",\"text\":\"Look:\",\"cache_control\":{\"type\":\"ephemeral\",\"ttl\":"
    "\"1h\"}},"
    "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/"
    "png\",\"data\":\"iVBO\"}},"
    "{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":\"https://x.test/a.jpg\"}},"
    "{\"type\":\"document\",\"source\":{\"type\":\"base64\",\"media_type\":\"application/"
    "pdf\",\"data\":\"JVBE\"}},"
    "{\"type\":\"document\",\"source\":{\"type\":\"url\",\"url\":\"https://x.test/a.pdf\"}},"
    "{\"type\":\"document\",\"source\":{\"type\":\"text\",\"media_type\":\"text/"
    "plain\",\"data\":\"plain\"}}]},"
    "{\"role\":\"assistant\",\"content\":["
    "{\"type\":\"thinking\",\"thinking\":\"hmm\",\"signature\":\"sig1\"},"
    "{\"type\":\"redacted_thinking\",\"data\":\"opaque\"},"
    "{\"type\":\"text\",\"text\":\"Calling.\"},"
    "{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{\"city\": "
    "\"Paris\", \"n\": 2}},"
    "{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"noargs\",\"input\":{}}]},"
    "{\"role\":\"user\",\"content\":["
    "{\"type\":\"text\",\"text\":\"and then?\"},"
    "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\",\"content\":\"18C\"},"
    "{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_2\",\"is_error\":true,\"content\":["
    "{\"type\":\"text\",\"text\":\"failed\"},"
    "{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/"
    "gif\",\"data\":\"R0lG\"}}]}]}],"
    "\"stop_sequences\":[\"END\",\"STOP\"],\"temperature\":0.5,\"top_p\":0.9,\"top_k\":40,"
    "\"stream\":true,"
    "\"tools\":[{\"name\":\"get_weather\",\"description\":\"Weather\",\"input_schema\":{\"type\":"
    "\"object\","
    "\"properties\":{\"city\":{\"type\":\"string\"}}},\"cache_control\":{\"type\":\"ephemeral\"}},"
    "{\"type\":\"custom\",\"name\":\"noargs\",\"input_schema\":{\"type\":\"object\"}}],"
    "\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true},"
    "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":2048},"
    "\"metadata\":{\"user_id\":\"u-42\"},"
    "\"output_config\":{\"effort\":\"high\",\"format\":{\"type\":\"json_schema\",\"schema\":{"
    "\"type\":\"object\"}}},"
    "\"cache_control\":{\"type\":\"ephemeral\"},\"service_tier\":\"auto\",\"unknown_field\":1}";

static void test_decode_full(void **state)
{
    (void)state;
    struct sb_canon_req r;
    decode_ok(FULL_REQUEST, &r);
    assert_string_equal(r.model, "gpt-4o");
    assert_int_equal(r.max_tokens, 1024);
    assert_int_equal(r.nmsgs, 5);

    /* system blocks first, as SYSTEM messages, cache_control kept */
    assert_int_equal(r.msgs[0].role, SB_ROLE_SYSTEM);
    assert_string_equal(r.msgs[0].parts[0].text, "Be brief.");
    assert_non_null(r.msgs[0].parts[0].cache_control);
    assert_int_equal(r.msgs[1].role, SB_ROLE_SYSTEM);
    assert_string_equal(r.msgs[1].parts[0].text, "Use tools.");
    assert_null(r.msgs[1].parts[0].cache_control);

    const struct sb_msg *u = &r.msgs[2];
    assert_int_equal(u->role, SB_ROLE_USER);
    assert_int_equal(u->nparts, 6);
    assert_int_equal(u->parts[0].type, SB_PART_TEXT);
    assert_string_equal(json_string_value(json_object_get(u->parts[0].cache_control, "ttl")), "1h");
    assert_int_equal(u->parts[1].type, SB_PART_IMAGE);
    assert_string_equal(u->parts[1].media_type, "image/png");
    assert_string_equal(u->parts[1].data, "iVBO");
    assert_null(u->parts[1].url);
    assert_int_equal(u->parts[2].type, SB_PART_IMAGE);
    assert_string_equal(u->parts[2].url, "https://x.test/a.jpg");
    assert_null(u->parts[2].data);
    assert_int_equal(u->parts[3].type, SB_PART_DOCUMENT);
    assert_string_equal(u->parts[3].media_type, "application/pdf");
    assert_string_equal(u->parts[3].data, "JVBE");
    assert_int_equal(u->parts[4].type, SB_PART_DOCUMENT);
    assert_string_equal(u->parts[4].url, "https://x.test/a.pdf");
    assert_int_equal(u->parts[5].type, SB_PART_TEXT);
    assert_string_equal(u->parts[5].text, "plain");

    const struct sb_msg *a = &r.msgs[3];
    assert_int_equal(a->role, SB_ROLE_ASSISTANT);
    assert_int_equal(a->nparts, 5);
    assert_int_equal(a->parts[0].type, SB_PART_THINKING);
    assert_string_equal(a->parts[0].text, "hmm");
    assert_string_equal(a->parts[0].signature, "sig1");
    assert_int_equal(a->parts[1].type, SB_PART_REDACTED_THINKING);
    assert_string_equal(a->parts[1].text, "opaque");
    assert_int_equal(a->parts[2].type, SB_PART_TEXT);
    assert_string_equal(a->parts[2].text, "Calling.");
    assert_int_equal(a->parts[3].type, SB_PART_TOOL_CALL);
    assert_string_equal(a->parts[3].id, "toolu_1");
    assert_string_equal(a->parts[3].name, "get_weather");
    assert_string_equal(a->parts[3].arguments, "{\"city\":\"Paris\",\"n\":2}");
    assert_string_equal(a->parts[4].arguments, "{}");

    /* tool results first in their user message, the text after them */
    const struct sb_msg *t = &r.msgs[4];
    assert_int_equal(t->role, SB_ROLE_USER);
    assert_int_equal(t->nparts, 3);
    assert_int_equal(t->parts[0].type, SB_PART_TOOL_RESULT);
    assert_string_equal(t->parts[0].id, "toolu_1");
    assert_false(t->parts[0].is_error);
    assert_int_equal(t->parts[0].nparts, 1);
    assert_string_equal(t->parts[0].parts[0].text, "18C");
    assert_int_equal(t->parts[1].type, SB_PART_TOOL_RESULT);
    assert_string_equal(t->parts[1].id, "toolu_2");
    assert_true(t->parts[1].is_error);
    assert_int_equal(t->parts[1].nparts, 2);
    assert_string_equal(t->parts[1].parts[0].text, "failed");
    assert_int_equal(t->parts[1].parts[1].type, SB_PART_IMAGE);
    assert_string_equal(t->parts[1].parts[1].media_type, "image/gif");
    assert_int_equal(t->parts[2].type, SB_PART_TEXT);
    assert_string_equal(t->parts[2].text, "and then?");

    assert_int_equal(r.nstop, 2);
    assert_string_equal(r.stop[0], "END");
    assert_string_equal(r.stop[1], "STOP");
    assert_true(r.has_temperature);
    assert_true(r.temperature == 0.5);
    assert_true(r.has_top_p);
    assert_true(r.top_p == 0.9);
    assert_int_equal(r.top_k, 40);
    assert_true(r.stream);

    assert_int_equal(r.ntools, 2);
    assert_string_equal(r.tools[0].name, "get_weather");
    assert_string_equal(r.tools[0].description, "Weather");
    assert_non_null(json_object_get(r.tools[0].parameters, "properties"));
    assert_non_null(r.tools[0].cache_control);
    assert_int_equal(r.tools[0].strict, -1);
    assert_string_equal(r.tools[1].name, "noargs");
    assert_null(r.tools[1].description);
    assert_null(r.tools[1].cache_control);

    assert_int_equal(r.tool_choice, SB_TC_REQUIRED);
    assert_int_equal(r.parallel_tool_calls, 0);
    assert_int_equal(r.thinking_budget, 2048);
    assert_string_equal(r.user, "u-42");
    assert_string_equal(r.reasoning_effort, "high");
    assert_int_equal(r.response_format, SB_RF_JSON_SCHEMA);
    assert_string_equal(json_string_value(json_object_get(r.rf_schema, "type")), "object");
    assert_non_null(r.rf_name);
    assert_non_null(r.cache_control);
    /* fields Anthropic has no use for stay unset */
    assert_int_equal(r.n, -1);
    assert_int_equal(r.top_logprobs, -1);
    assert_false(r.logprobs);
    assert_false(r.has_seed);
    sb_canon_req_free(&r);
}

static void test_decode_minimal(void **state)
{
    (void)state;
    struct sb_canon_req r;
    decode_ok("{\"model\":\"m\",\"max_tokens\":0,\"system\":\"sys\","
              "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
              "{\"role\":\"assistant\",\"content\":\"prefill\"}]}",
              &r);
    assert_int_equal(r.max_tokens, 0);
    assert_int_equal(r.nmsgs, 3);
    assert_int_equal(r.msgs[0].role, SB_ROLE_SYSTEM);
    assert_string_equal(r.msgs[0].parts[0].text, "sys");
    assert_int_equal(r.msgs[1].role, SB_ROLE_USER);
    assert_string_equal(r.msgs[1].parts[0].text, "hi");
    assert_int_equal(r.msgs[2].role, SB_ROLE_ASSISTANT);
    assert_string_equal(r.msgs[2].parts[0].text, "prefill");
    assert_false(r.stream);
    assert_false(r.has_temperature);
    assert_false(r.has_top_p);
    assert_int_equal(r.top_k, -1);
    assert_int_equal(r.tool_choice, SB_TC_UNSET);
    assert_int_equal(r.parallel_tool_calls, -1);
    assert_int_equal(r.thinking_budget, -1);
    assert_null(r.reasoning_effort);
    assert_null(r.user);
    assert_null(r.cache_control);
    assert_int_equal(r.response_format, SB_RF_UNSET);
    sb_canon_req_free(&r);

    /* empty messages list and empty system list are accepted */
    decode_ok("{\"model\":\"m\",\"max_tokens\":1,\"system\":[],\"messages\":[]}", &r);
    assert_int_equal(r.nmsgs, 0);
    sb_canon_req_free(&r);
}

static void test_decode_choices(void **state)
{
    (void)state;
    static const struct {
        const char *tc;
        enum sb_tool_choice want;
        const char *name;
        int parallel;
    } cases[] = {
        {"{\"type\":\"auto\"}", SB_TC_AUTO, NULL, -1},
        {"{\"type\":\"auto\",\"disable_parallel_tool_use\":false}", SB_TC_AUTO, NULL, -1},
        {"{\"type\":\"none\"}", SB_TC_NONE, NULL, -1},
        {"{\"type\":\"any\"}", SB_TC_REQUIRED, NULL, -1},
        {"{\"type\":\"tool\",\"name\":\"f\",\"disable_parallel_tool_use\":true}", SB_TC_NAMED, "f",
         0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[512];
        snprintf(body, sizeof body,
                 "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"tool_choice\":%s}",
                 cases[i].tc);
        struct sb_canon_req r;
        decode_ok(body, &r);
        assert_int_equal(r.tool_choice, cases[i].want);
        assert_int_equal(r.parallel_tool_calls, cases[i].parallel);
        if (cases[i].name)
            assert_string_equal(r.tool_choice_name, cases[i].name);
        else
            assert_null(r.tool_choice_name);
        sb_canon_req_free(&r);
    }

    struct sb_canon_req r;
    decode_ok(
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"thinking\":{\"type\":\"disabled\"}}",
        &r);
    assert_int_equal(r.thinking_budget, 0);
    sb_canon_req_free(&r);
    decode_ok(
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"thinking\":{\"type\":\"adaptive\"},"
        "\"output_config\":{\"effort\":\"medium\"}}",
        &r);
    assert_int_equal(r.thinking_budget, -1);
    assert_string_equal(r.reasoning_effort, "medium");
    assert_int_equal(r.response_format, SB_RF_UNSET);
    sb_canon_req_free(&r);
    decode_ok(
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[],\"thinking\":{\"type\":\"adaptive\"}}",
        &r);
    assert_int_equal(r.thinking_budget, -1);
    assert_null(r.reasoning_effort);
    sb_canon_req_free(&r);
    /* a thinking block without a signature, a tool_use without input */
    decode_ok(
        "{\"model\":\"m\",\"max_tokens\":5,\"messages\":[{\"role\":\"assistant\",\"content\":["
        "{\"type\":\"thinking\",\"thinking\":\"\"},"
        "{\"type\":\"tool_use\",\"id\":\"a\",\"name\":\"b\"}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"a\"}]}]}",
        &r);
    assert_null(r.msgs[0].parts[0].signature);
    assert_string_equal(r.msgs[0].parts[1].arguments, "{}");
    assert_int_equal(r.msgs[1].parts[0].type, SB_PART_TOOL_RESULT);
    assert_int_equal(r.msgs[1].parts[0].nparts, 0);
    sb_canon_req_free(&r);
}

#define MSGS_OK "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"
#define HEAD    "{\"model\":\"m\",\"max_tokens\":10,"

static void test_decode_errors(void **state)
{
    (void)state;
    decode_bad("", NULL, NULL, "not valid JSON");
    decode_bad("{\"model\":", NULL, NULL, "not valid JSON");
    decode_bad("[1,2]", NULL, NULL, "JSON object");
    decode_bad("{\"max_tokens\":1," MSGS_OK "}", "model", NULL, "model: Field required");
    decode_bad("{\"model\":5,\"max_tokens\":1," MSGS_OK "}", "model", NULL, "valid string");
    decode_bad("{\"model\":\"m\"," MSGS_OK "}", "max_tokens", NULL, "max_tokens: Field required");
    decode_bad("{\"model\":\"m\",\"max_tokens\":\"5\"," MSGS_OK "}", "max_tokens", NULL, NULL);
    decode_bad("{\"model\":\"m\",\"max_tokens\":-1," MSGS_OK "}", "max_tokens", NULL, NULL);
    decode_bad("{\"model\":\"m\",\"max_tokens\":1.5," MSGS_OK "}", "max_tokens", NULL, NULL);
    decode_bad(HEAD "\"stream\":true}", "messages", NULL, "messages: Field required");
    decode_bad(HEAD "\"messages\":{}}", "messages", NULL, "valid list");
    decode_bad(HEAD "\"messages\":[5]}", "messages.0", NULL, NULL);
    decode_bad(HEAD "\"messages\":[{\"content\":\"x\"}]}", "messages.0.role", NULL,
               "Field required");
    decode_bad(HEAD "\"messages\":[{\"role\":\"system\",\"content\":\"x\"}]}", "messages.0.role",
               NULL, "'user' or 'assistant'");
    decode_bad(HEAD "\"messages\":[{\"role\":\"user\"}]}", "messages.0.content", NULL,
               "Field required");
    decode_bad(HEAD "\"messages\":[{\"role\":\"user\",\"content\":7}]}", "messages.0.content", NULL,
               NULL);
    decode_bad(HEAD "\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"user\","
                    "\"content\":[\"x\"]}]}",
               "messages.1.content.0", NULL, NULL);
    decode_bad(HEAD "\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"x\"}]}]}",
               "messages.0.content.0.type", NULL, NULL);
    decode_bad(HEAD "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}",
               "messages.0.content.0.text", NULL, "Field required");
    decode_bad(HEAD
               "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":1}]}]}",
               "messages.0.content.0.text", NULL, "valid string");
    decode_bad(HEAD
               "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},"
               "{\"type\":\"server_tool_use\",\"id\":\"x\"}]}]}",
               "messages.0.content.1.type", NULL, "server_tool_use");
    decode_bad(HEAD
               "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\","
               "\"name\":\"b\",\"input\":{}}]}]}",
               "messages.0.content.0.type", NULL, "assistant");
    decode_bad(
        HEAD
        "\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"a\","
        "\"name\":\"b\",\"input\":[]}]}]}",
        "messages.0.content.0.input", NULL, "dictionary");
    decode_bad(HEAD "\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\","
                    "\"name\":\"b\"}]}]}",
               "messages.0.content.0.id", NULL, NULL);
    decode_bad(HEAD "\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_result\","
                    "\"tool_use_id\":\"a\"}]}]}",
               "messages.0.content.0.type", NULL, "user");
    decode_bad(HEAD "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
                    "\"content\":\"x\"}]}]}",
               "messages.0.content.0.tool_use_id", NULL, "Field required");
    decode_bad(HEAD "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
                    "\"tool_use_id\":\"a\",\"is_error\":\"yes\"}]}]}",
               "messages.0.content.0.is_error", NULL, NULL);
    decode_bad(HEAD "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
                    "\"tool_use_id\":\"a\",\"content\":5}]}]}",
               "messages.0.content.0.content", NULL, NULL);
    decode_bad(HEAD "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\","
                    "\"tool_use_id\":\"a\",\"content\":[{\"type\":\"tool_use\"}]}]}]}",
               "messages.0.content.0.content.0.type", NULL, NULL);
    decode_bad(HEAD "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"thinking\","
                    "\"thinking\":\"x\"}]}]}",
               "messages.0.content.0.type", NULL, "assistant");
    decode_bad(HEAD "\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"thinking\","
                    "\"thinking\":\"x\",\"signature\":3}]}]}",
               "messages.0.content.0.signature", NULL, NULL);
    decode_bad(
        HEAD
        "\"messages\":[{\"role\":\"assistant\",\"content\":[{\"type\":\"redacted_thinking\"}]}]}",
        "messages.0.content.0.data", NULL, NULL);
    decode_bad(HEAD "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\"}]}]}",
               "messages.0.content.0.source", NULL, NULL);
    decode_bad(HEAD "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":"
                    "{\"type\":\"base64\",\"data\":\"x\"}}]}]}",
               "messages.0.content.0.source.media_type", NULL, NULL);
    decode_bad(HEAD "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":"
                    "{\"type\":\"file\",\"file_id\":\"f\"}}]}]}",
               "messages.0.content.0.source.type", "unsupported_parameter", "file");
    decode_bad(HEAD "\"system\":5," MSGS_OK "}", "system", NULL, NULL);
    decode_bad(HEAD "\"system\":[{\"type\":\"image\"}]," MSGS_OK "}", "system.0.type", NULL, NULL);
    decode_bad(HEAD "\"system\":[{\"type\":\"text\"}]," MSGS_OK "}", "system.0.text", NULL, NULL);
    decode_bad(HEAD "\"temperature\":1.5," MSGS_OK "}", "temperature", NULL, "between 0 and 1");
    decode_bad(HEAD "\"temperature\":\"hot\"," MSGS_OK "}", "temperature", NULL, NULL);
    decode_bad(HEAD "\"top_p\":-0.1," MSGS_OK "}", "top_p", NULL, NULL);
    decode_bad(HEAD "\"top_k\":2.5," MSGS_OK "}", "top_k", NULL, NULL);
    decode_bad(HEAD "\"stream\":\"yes\"," MSGS_OK "}", "stream", NULL, NULL);
    decode_bad(HEAD "\"stop_sequences\":\"END\"," MSGS_OK "}", "stop_sequences", NULL, NULL);
    decode_bad(HEAD "\"stop_sequences\":[\"a\",1]," MSGS_OK "}", "stop_sequences.1", NULL, NULL);
    decode_bad(HEAD "\"metadata\":[]," MSGS_OK "}", "metadata", NULL, NULL);
    decode_bad(HEAD "\"metadata\":{\"user_id\":5}," MSGS_OK "}", "metadata.user_id", NULL, NULL);
    decode_bad(HEAD "\"tools\":{}," MSGS_OK "}", "tools", NULL, NULL);
    decode_bad(
        HEAD "\"tools\":[{\"type\":\"web_search_20250305\",\"name\":\"web_search\"}]," MSGS_OK "}",
        "tools.0", "unsupported_parameter", "web_search_20250305");
    decode_bad(HEAD "\"tools\":[{\"name\":\"a\",\"input_schema\":{}},{\"type\":\"bash_20250124\","
                    "\"name\":\"bash\"}]," MSGS_OK "}",
               "tools.1", "unsupported_parameter", NULL);
    decode_bad(HEAD "\"tools\":[{\"input_schema\":{}}]," MSGS_OK "}", "tools.0.name", NULL, NULL);
    decode_bad(HEAD "\"tools\":[{\"name\":\"a\"}]," MSGS_OK "}", "tools.0.input_schema", NULL,
               "Field required");
    decode_bad(HEAD "\"tools\":[{\"name\":\"a\",\"input_schema\":\"{}\"}]," MSGS_OK "}",
               "tools.0.input_schema", NULL, NULL);
    decode_bad(HEAD "\"tools\":[{\"name\":\"a\",\"description\":1,\"input_schema\":{}}]," MSGS_OK
                    "}",
               "tools.0.description", NULL, NULL);
    decode_bad(HEAD "\"tool_choice\":\"auto\"," MSGS_OK "}", "tool_choice", NULL, NULL);
    decode_bad(HEAD "\"tool_choice\":{}," MSGS_OK "}", "tool_choice.type", NULL, NULL);
    decode_bad(HEAD "\"tool_choice\":{\"type\":\"required\"}," MSGS_OK "}", "tool_choice.type",
               NULL, NULL);
    decode_bad(HEAD "\"tool_choice\":{\"type\":\"tool\"}," MSGS_OK "}", "tool_choice.name", NULL,
               NULL);
    decode_bad(HEAD "\"tool_choice\":{\"type\":\"auto\",\"disable_parallel_tool_use\":1}," MSGS_OK
                    "}",
               "tool_choice.disable_parallel_tool_use", NULL, NULL);
    decode_bad(HEAD "\"thinking\":{\"type\":\"enabled\"}," MSGS_OK "}",
               "thinking.enabled.budget_tokens", NULL, "Field required");
    decode_bad(HEAD "\"thinking\":{\"type\":\"enabled\",\"budget_tokens\":0}," MSGS_OK "}",
               "thinking.enabled.budget_tokens", NULL, NULL);
    decode_bad(HEAD "\"thinking\":{\"type\":\"on\"}," MSGS_OK "}", "thinking.type", NULL, NULL);
    decode_bad(HEAD "\"thinking\":true," MSGS_OK "}", "thinking", NULL, NULL);
    decode_bad(HEAD "\"output_config\":{\"effort\":\"extreme\"}," MSGS_OK "}",
               "output_config.effort", NULL, NULL);
    decode_bad(HEAD "\"output_config\":{\"format\":{\"type\":\"json_object\"}}," MSGS_OK "}",
               "output_config.format.type", NULL, NULL);
    decode_bad(HEAD "\"output_config\":{\"format\":{\"type\":\"json_schema\"}}," MSGS_OK "}",
               "output_config.format.schema", NULL, NULL);
    decode_bad(HEAD "\"mcp_servers\":[{\"type\":\"url\"}]," MSGS_OK "}", "mcp_servers",
               "unsupported_parameter", NULL);
}

static void test_count_tokens(void **state)
{
    (void)state;
    struct sb_canon_req r;
    struct sb_error err;
    const char *body = "{\"model\":\"m\",\"system\":\"abcd\",\"messages\":["
                       "{\"role\":\"user\",\"content\":\"12345678\"}]}";
    assert_int_equal(sb_anthropic_decode_count_tokens(body, strlen(body), &r, &err), 0);
    assert_int_equal(r.max_tokens, -1);
    /* 12 bytes of text = 3 tokens, two messages = 8 */
    assert_int_equal(sb_canon_estimate_tokens(&r), 3 + 2 * 4);
    sb_canon_req_free(&r);

    /* the same body through decode_request still needs max_tokens */
    assert_int_equal(C->decode_request(body, strlen(body), &r, &err), -1);
    assert_string_equal(err.param, "max_tokens");

    /* other errors still apply */
    const char *bad = "{\"model\":\"m\",\"messages\":[{\"role\":\"tool\",\"content\":\"x\"}]}";
    assert_int_equal(sb_anthropic_decode_count_tokens(bad, strlen(bad), &r, &err), -1);
    assert_string_equal(err.param, "messages.0.role");

    /* images, tools, tool calls and results all count */
    const char *rich =
        "{\"model\":\"m\",\"messages\":["
        "{\"role\":\"user\",\"content\":[{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":"
        "\"u\"}}]},"
        "{\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"i\",\"name\":\"fn\","
        "\"input\":{\"a\":1}}]},"
        "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":\"i\","
        "\"content\":\"ok!\"}]}],"
        "\"tools\":[{\"name\":\"fn\",\"description\":\"d\",\"input_schema\":{\"type\":\"object\"}}]"
        "}";
    assert_int_equal(sb_anthropic_decode_count_tokens(rich, strlen(rich), &r, &err), 0);
    /* text bytes: "fn" + "{\"a\":1}" (7) + "ok!" (3) + tool "fn" + "d" + schema (17) = 32 -> 8
     * fixed: 3 messages * 4 + image 1600 + tool 8 + preamble 300 */
    assert_int_equal(sb_canon_estimate_tokens(&r), 8 + 12 + 1600 + 8 + 300);
    sb_canon_req_free(&r);

    struct sb_canon_req empty;
    memset(&empty, 0, sizeof empty);
    assert_int_equal(sb_canon_estimate_tokens(&empty), 0);
}

/* ------------------------------------------------------------------ render_response */

static void add_block(struct sb_canon_resp *r, enum sb_block_kind k, const char *text,
                      const char *sig, const char *id, const char *name)
{
    struct sb_canon_event ev;
    memset(&ev, 0, sizeof ev);
    sb_usage_init(&ev.usage);
    int i = (int)r->nblocks;
    ev.type = SB_EV_BLOCK_START;
    ev.index = i;
    ev.block = k;
    ev.id = id;
    ev.name = name;
    assert_int_equal(sb_canon_resp_event(r, &ev), 0);
    ev.id = ev.name = NULL;
    if (text) {
        ev.type = SB_EV_DELTA;
        ev.text = text;
        ev.len = strlen(text);
        assert_int_equal(sb_canon_resp_event(r, &ev), 0);
    }
    if (sig) {
        ev.type = SB_EV_SIGNATURE;
        ev.text = sig;
        ev.len = strlen(sig);
        assert_int_equal(sb_canon_resp_event(r, &ev), 0);
    }
    ev.type = SB_EV_BLOCK_STOP;
    ev.text = NULL;
    ev.len = 0;
    assert_int_equal(sb_canon_resp_event(r, &ev), 0);
}

static void resp_start(struct sb_canon_resp *r, const char *id, const char *model)
{
    sb_canon_resp_init(r, 1 << 20);
    struct sb_canon_event ev;
    memset(&ev, 0, sizeof ev);
    sb_usage_init(&ev.usage);
    ev.type = SB_EV_START;
    ev.id = id;
    ev.model = model;
    assert_int_equal(sb_canon_resp_event(r, &ev), 0);
}

static void resp_finish(struct sb_canon_resp *r, enum sb_finish f, const char *seq,
                        const struct sb_usage *u)
{
    struct sb_canon_event ev;
    memset(&ev, 0, sizeof ev);
    sb_usage_init(&ev.usage);
    ev.type = SB_EV_FINISH;
    ev.finish = f;
    ev.stop_sequence = seq;
    assert_int_equal(sb_canon_resp_event(r, &ev), 0);
    if (u) {
        ev.type = SB_EV_USAGE;
        ev.usage = *u;
        assert_int_equal(sb_canon_resp_event(r, &ev), 0);
    }
}

static json_t *render(const struct sb_canon_resp *r, const char *model)
{
    struct sb_buf out;
    sb_buf_init(&out, 1 << 20);
    assert_int_equal(C->render_response(r, model, &out), 0);
    json_t *j = parse(out.data, out.len);
    sb_buf_free(&out);
    return j;
}

static void test_render_response(void **state)
{
    (void)state;
    struct sb_canon_resp r;
    resp_start(&r, "msg_abc", "gemini-2.5-pro");
    add_block(&r, SB_BLOCK_THINKING, "let me think", "sig==", NULL, NULL);
    add_block(&r, SB_BLOCK_THINKING, NULL, "gemsig", NULL, NULL);
    add_block(&r, SB_BLOCK_REDACTED_THINKING, "opaque", NULL, NULL, NULL);
    add_block(&r, SB_BLOCK_TEXT, "Hello \"world\"\n", NULL, NULL, NULL);
    add_block(&r, SB_BLOCK_TOOL_CALL, "{\"city\": \"Paris\"}", NULL, "call_1", "get_weather");
    add_block(&r, SB_BLOCK_TOOL_CALL, "{\"broken", NULL, "call_2", "f");
    add_block(&r, SB_BLOCK_TOOL_CALL, NULL, NULL, "call_3", "g");
    add_block(&r, SB_BLOCK_TOOL_CALL, "[1,2]", NULL, "call_4", "h");
    struct sb_usage u = {
        .input = 100, .cache_read = 20, .cache_write = -1, .output = 50, .reasoning = 12};
    resp_finish(&r, SB_FINISH_TOOL_CALLS, NULL, &u);

    json_t *j = render(&r, "requested");
    assert_jstr(j, "id", "msg_abc");
    assert_jstr(j, "type", "message");
    assert_jstr(j, "role", "assistant");
    assert_jstr(j, "model", "gemini-2.5-pro");
    assert_int_equal(json_array_size(json_object_get(j, "content")), 8);
    assert_jstr(j, "content.0.type", "thinking");
    assert_jstr(j, "content.0.thinking", "let me think");
    assert_jstr(j, "content.0.signature", "sig==");
    assert_jstr(j, "content.1.type", "thinking");
    assert_jstr(j, "content.1.thinking", "");
    assert_jstr(j, "content.1.signature", "gemsig");
    assert_jstr(j, "content.2.type", "redacted_thinking");
    assert_jstr(j, "content.2.data", "opaque");
    assert_jstr(j, "content.3.type", "text");
    assert_jstr(j, "content.3.text", "Hello \"world\"\n");
    assert_jstr(j, "content.4.type", "tool_use");
    assert_jstr(j, "content.4.id", "call_1");
    assert_jstr(j, "content.4.name", "get_weather");
    assert_jstr(j, "content.4.input.city", "Paris");
    assert_true(json_is_object(jpath(j, "content.5.input")));
    assert_int_equal(json_object_size(jpath(j, "content.5.input")), 0);
    assert_int_equal(json_object_size(jpath(j, "content.6.input")), 0);
    assert_true(json_is_object(jpath(j, "content.7.input")));
    assert_jstr(j, "stop_reason", "tool_use");
    assert_jnull(j, "stop_sequence");
    assert_jint(j, "usage.input_tokens", 100);
    assert_jint(j, "usage.cache_read_input_tokens", 20);
    assert_jint(j, "usage.cache_creation_input_tokens", 0);
    assert_jint(j, "usage.output_tokens", 50);
    assert_jint(j, "usage.output_tokens_details.thinking_tokens", 12);
    json_decref(j);
    sb_canon_resp_free(&r);

    /* a foreign id is replaced, the requested model is used, stop sequence and unknown usage */
    resp_start(&r, "chatcmpl-123", NULL);
    add_block(&r, SB_BLOCK_TEXT, "x", NULL, NULL, NULL);
    resp_finish(&r, SB_FINISH_STOP_SEQUENCE, "END", NULL);
    j = render(&r, "claude-x");
    const char *id = json_string_value(json_object_get(j, "id"));
    assert_non_null(id);
    assert_int_equal(strncmp(id, "msg_", 4), 0);
    assert_int_equal(strlen(id), 28);
    assert_jstr(j, "model", "claude-x");
    assert_jstr(j, "stop_reason", "stop_sequence");
    assert_jstr(j, "stop_sequence", "END");
    assert_jint(j, "usage.input_tokens", 0);
    assert_jint(j, "usage.output_tokens", 0);
    assert_null(jpath(j, "usage.output_tokens_details"));
    json_decref(j);
    sb_canon_resp_free(&r);

    static const struct {
        enum sb_finish f;
        const char *want;
    } fin[] = {
        {SB_FINISH_STOP, "end_turn"},
        {SB_FINISH_NONE, "end_turn"},
        {SB_FINISH_LENGTH, "max_tokens"},
        {SB_FINISH_CONTENT_FILTER, "refusal"},
        {SB_FINISH_CONTEXT_WINDOW, "model_context_window_exceeded"},
        {SB_FINISH_PAUSE, "pause_turn"},
    };
    for (size_t i = 0; i < sizeof fin / sizeof fin[0]; i++) {
        resp_start(&r, NULL, "m");
        resp_finish(&r, fin[i].f, NULL, NULL);
        j = render(&r, NULL);
        assert_jstr(j, "stop_reason", fin[i].want);
        assert_int_equal(json_array_size(json_object_get(j, "content")), 0);
        json_decref(j);
        sb_canon_resp_free(&r);
    }

    /* a response holding an error renders the error envelope */
    resp_start(&r, NULL, "m");
    struct sb_canon_error e;
    sb_canon_error_set(&e, 429, SB_ERRK_RATE_LIMIT, "RESOURCE_EXHAUSTED", "slow down");
    struct sb_canon_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = SB_EV_ERROR;
    ev.error = &e;
    assert_int_equal(sb_canon_resp_event(&r, &ev), 0);
    j = render(&r, "m");
    assert_jstr(j, "type", "error");
    assert_jstr(j, "error.type", "rate_limit_error");
    assert_jstr(j, "error.message", "slow down");
    json_decref(j);
    sb_canon_resp_free(&r);

    /* the cap: nothing half-written */
    resp_start(&r, "msg_1", "m");
    add_block(&r, SB_BLOCK_TEXT, "a rather long text that does not fit", NULL, NULL, NULL);
    resp_finish(&r, SB_FINISH_STOP, NULL, NULL);
    struct sb_buf small;
    sb_buf_init(&small, 64);
    assert_int_equal(sb_buf_append_str(&small, "keep"), 0);
    assert_int_equal(C->render_response(&r, "m", &small), -E2BIG);
    assert_int_equal(small.len, 4);
    assert_string_equal(small.data, "keep");
    sb_buf_free(&small);
    sb_canon_resp_free(&r);
}

/* ------------------------------------------------------------------ render_error */

static void test_render_error(void **state)
{
    (void)state;
    static const struct {
        int status;
        enum sb_err_kind kind;
        const char *type;
        int want_status;
    } cases[] = {
        {400, SB_ERRK_INVALID_REQUEST, "invalid_request_error", 400},
        {422, SB_ERRK_INVALID_REQUEST, "invalid_request_error", 422},
        {500, SB_ERRK_INVALID_REQUEST, "invalid_request_error", 400},
        {400, SB_ERRK_CONTEXT_WINDOW, "invalid_request_error", 400},
        {400, SB_ERRK_CONTENT_POLICY, "invalid_request_error", 400},
        {401, SB_ERRK_AUTH, "authentication_error", 401},
        {400, SB_ERRK_AUTH, "authentication_error", 401},
        {403, SB_ERRK_PERMISSION, "permission_error", 403},
        {429, SB_ERRK_BILLING, "billing_error", 402},
        {404, SB_ERRK_NOT_FOUND, "not_found_error", 404},
        {413, SB_ERRK_TOO_LARGE, "request_too_large", 413},
        {429, SB_ERRK_RATE_LIMIT, "rate_limit_error", 429},
        {503, SB_ERRK_OVERLOADED, "overloaded_error", 529},
        {529, SB_ERRK_OVERLOADED, "overloaded_error", 529},
        {504, SB_ERRK_TIMEOUT, "timeout_error", 504},
        {408, SB_ERRK_TIMEOUT, "timeout_error", 408},
        {500, SB_ERRK_TIMEOUT, "timeout_error", 504},
        {500, SB_ERRK_SERVER, "api_error", 500},
        {502, SB_ERRK_SERVER, "api_error", 502},
        {200, SB_ERRK_SERVER, "api_error", 500},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sb_canon_error e;
        sb_canon_error_set(&e, cases[i].status, cases[i].kind, "whatever", "msg %zu", i);
        struct sb_buf out;
        sb_buf_init(&out, 4096);
        int status = 0;
        assert_int_equal(C->render_error(&e, &out, &status), 0);
        assert_int_equal(status, cases[i].want_status);
        json_t *j = parse(out.data, out.len);
        assert_jstr(j, "type", "error");
        assert_jstr(j, "error.type", cases[i].type);
        char want[32];
        snprintf(want, sizeof want, "msg %zu", i);
        assert_jstr(j, "error.message", want);
        assert_true(json_is_null(json_object_get(j, "request_id")));
        json_decref(j);
        sb_buf_free(&out);
    }
    /* an empty message still says something */
    struct sb_canon_error e;
    sb_canon_error_set(&e, 529, SB_ERRK_OVERLOADED, NULL, "%s", "");
    struct sb_buf out;
    sb_buf_init(&out, 4096);
    int status;
    assert_int_equal(C->render_error(&e, &out, &status), 0);
    json_t *j = parse(out.data, out.len);
    assert_jstr(j, "error.message", "Overloaded");
    json_decref(j);
    sb_buf_free(&out);
}

/* ------------------------------------------------------------------ stream encoder */

struct encoding {
    void *enc;
    struct sb_buf out;
};

static void enc_open(struct encoding *x, const char *model)
{
    x->enc = C->enc_new(model, false);
    assert_non_null(x->enc);
    sb_buf_init(&x->out, 1 << 20);
}

static void enc_close(struct encoding *x)
{
    C->enc_free(x->enc);
    sb_buf_free(&x->out);
}

static int emit(struct encoding *x, enum sb_ev_type t, int index, enum sb_block_kind k,
                const char *text)
{
    struct sb_canon_event ev;
    memset(&ev, 0, sizeof ev);
    sb_usage_init(&ev.usage);
    ev.type = t;
    ev.index = index;
    ev.block = k;
    ev.text = text;
    ev.len = text ? strlen(text) : 0;
    return C->enc_event(x->enc, &ev, &x->out);
}

static int emit_ev(void *ud, const struct sb_canon_event *ev)
{
    struct encoding *x = ud;
    return C->enc_event(x->enc, ev, &x->out);
}

static void test_stream_synthetic(void **state)
{
    (void)state;
    struct encoding x;
    enc_open(&x, "requested-model");
    struct sb_canon_event ev;
    memset(&ev, 0, sizeof ev);
    sb_usage_init(&ev.usage);
    ev.type = SB_EV_START;
    ev.id = "chatcmpl-xyz";
    ev.model = "gpt-4o-2024";
    ev.usage.input = 42;
    ev.usage.cache_read = 8;
    assert_int_equal(emit_ev(&x, &ev), 0);

    /* 0: text */
    assert_int_equal(emit(&x, SB_EV_BLOCK_START, 0, SB_BLOCK_TEXT, NULL), 0);
    assert_int_equal(emit(&x, SB_EV_DELTA, 0, SB_BLOCK_TEXT, ""), 0);
    assert_int_equal(emit(&x, SB_EV_DELTA, 0, SB_BLOCK_TEXT, "Hel"), 0);
    assert_int_equal(emit(&x, SB_EV_DELTA, 0, SB_BLOCK_TEXT, "lo"), 0);
    assert_int_equal(emit(&x, SB_EV_BLOCK_STOP, 0, SB_BLOCK_TEXT, NULL), 0);
    /* 1: an empty text block: never shown */
    assert_int_equal(emit(&x, SB_EV_BLOCK_START, 1, SB_BLOCK_TEXT, NULL), 0);
    assert_int_equal(emit(&x, SB_EV_BLOCK_STOP, 1, SB_BLOCK_TEXT, NULL), 0);
    /* 2: thinking with signature */
    assert_int_equal(emit(&x, SB_EV_BLOCK_START, 2, SB_BLOCK_THINKING, NULL), 0);
    assert_int_equal(emit(&x, SB_EV_DELTA, 2, SB_BLOCK_THINKING, "hmm"), 0);
    assert_int_equal(emit(&x, SB_EV_SIGNATURE, 2, SB_BLOCK_THINKING, "SIG"), 0);
    assert_int_equal(emit(&x, SB_EV_BLOCK_STOP, 2, SB_BLOCK_THINKING, NULL), 0);
    /* 3, 4: two tool calls */
    memset(&ev, 0, sizeof ev);
    sb_usage_init(&ev.usage);
    ev.type = SB_EV_BLOCK_START;
    ev.index = 3;
    ev.block = SB_BLOCK_TOOL_CALL;
    ev.id = "call_A";
    ev.name = "get_weather";
    assert_int_equal(emit_ev(&x, &ev), 0);
    assert_int_equal(emit(&x, SB_EV_DELTA, 3, SB_BLOCK_TOOL_CALL, ""), 0);
    assert_int_equal(emit(&x, SB_EV_DELTA, 3, SB_BLOCK_TOOL_CALL, "{\"city\":"), 0);
    assert_int_equal(emit(&x, SB_EV_DELTA, 3, SB_BLOCK_TOOL_CALL, "\"Paris\"}"), 0);
    assert_int_equal(emit(&x, SB_EV_BLOCK_STOP, 3, SB_BLOCK_TOOL_CALL, NULL), 0);
    ev.index = 4;
    ev.id = "call_B";
    ev.name = "noargs";
    assert_int_equal(emit_ev(&x, &ev), 0);
    assert_int_equal(emit(&x, SB_EV_BLOCK_STOP, 4, SB_BLOCK_TOOL_CALL, NULL), 0);
    /* 5: redacted thinking, held until its data */
    assert_int_equal(emit(&x, SB_EV_BLOCK_START, 5, SB_BLOCK_REDACTED_THINKING, NULL), 0);
    size_t before = x.out.len;
    assert_int_equal(emit(&x, SB_EV_DELTA, 5, SB_BLOCK_REDACTED_THINKING, "DATA"), 0);
    assert_true(x.out.len > before);
    assert_int_equal(emit(&x, SB_EV_BLOCK_STOP, 5, SB_BLOCK_REDACTED_THINKING, NULL), 0);

    memset(&ev, 0, sizeof ev);
    sb_usage_init(&ev.usage);
    ev.type = SB_EV_FINISH;
    ev.finish = SB_FINISH_TOOL_CALLS;
    before = x.out.len;
    assert_int_equal(emit_ev(&x, &ev), 0);
    assert_int_equal(x.out.len, before); /* held until usage */
    ev.type = SB_EV_USAGE;
    ev.usage.output = 77;
    ev.usage.cache_write = 3;
    assert_int_equal(emit_ev(&x, &ev), 0);
    before = x.out.len;
    assert_int_equal(C->enc_end(x.enc, &x.out), 0);
    assert_int_equal(x.out.len, before);
    /* nothing more after the end */
    assert_int_equal(emit(&x, SB_EV_DELTA, 0, SB_BLOCK_TEXT, "late"), SB_CANON_E_INVALID);

    json_t *evs = parse_sse(x.out.data, x.out.len, true);
    static const char *const want[] = {
        "message_start",       "ping",
        "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta",
        "content_block_delta", "content_block_delta",
        "content_block_stop",  "content_block_start",
        "content_block_stop",  "content_block_start",
        "content_block_stop",  "message_delta",
        "message_stop",
    };
    size_t n = sizeof want / sizeof want[0];
    assert_int_equal(json_array_size(evs), n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(ev_name(evs, i), want[i]);

    json_t *d = ev_data(evs, 0);
    assert_jstr(d, "message.id", json_string_value(jpath(d, "message.id")));
    assert_int_equal(strncmp(json_string_value(jpath(d, "message.id")), "msg_", 4), 0);
    assert_jstr(d, "message.type", "message");
    assert_jstr(d, "message.role", "assistant");
    assert_jstr(d, "message.model", "gpt-4o-2024");
    assert_int_equal(json_array_size(jpath(d, "message.content")), 0);
    assert_jnull(d, "message.stop_reason");
    assert_jnull(d, "message.stop_sequence");
    assert_jint(d, "message.usage.input_tokens", 42);
    assert_jint(d, "message.usage.cache_read_input_tokens", 8);
    assert_jint(d, "message.usage.cache_creation_input_tokens", 0);
    assert_jint(d, "message.usage.output_tokens", 0);

    d = ev_data(evs, 2);
    assert_jint(d, "index", 0);
    assert_jstr(d, "content_block.type", "text");
    assert_jstr(d, "content_block.text", "");
    d = ev_data(evs, 3);
    assert_jint(d, "index", 0);
    assert_jstr(d, "delta.type", "text_delta");
    assert_jstr(d, "delta.text", "Hel");
    assert_jstr(ev_data(evs, 4), "delta.text", "lo");
    assert_jint(ev_data(evs, 5), "index", 0);

    d = ev_data(evs, 6);
    assert_jint(d, "index", 1);
    assert_jstr(d, "content_block.type", "thinking");
    assert_jstr(d, "content_block.thinking", "");
    assert_jstr(d, "content_block.signature", "");
    assert_jstr(ev_data(evs, 7), "delta.type", "thinking_delta");
    assert_jstr(ev_data(evs, 7), "delta.thinking", "hmm");
    assert_jstr(ev_data(evs, 8), "delta.type", "signature_delta");
    assert_jstr(ev_data(evs, 8), "delta.signature", "SIG");
    assert_jint(ev_data(evs, 9), "index", 1);

    d = ev_data(evs, 10);
    assert_jint(d, "index", 2);
    assert_jstr(d, "content_block.type", "tool_use");
    assert_jstr(d, "content_block.id", "call_A");
    assert_jstr(d, "content_block.name", "get_weather");
    assert_int_equal(json_object_size(jpath(d, "content_block.input")), 0);
    assert_jstr(ev_data(evs, 11), "delta.type", "input_json_delta");
    assert_jstr(ev_data(evs, 11), "delta.partial_json", "");
    assert_jstr(ev_data(evs, 12), "delta.partial_json", "{\"city\":");
    assert_jstr(ev_data(evs, 13), "delta.partial_json", "\"Paris\"}");
    assert_jint(ev_data(evs, 13), "index", 2);

    d = ev_data(evs, 15);
    assert_jint(d, "index", 3);
    assert_jstr(d, "content_block.id", "call_B");
    assert_jstr(d, "content_block.name", "noargs");
    assert_jint(ev_data(evs, 16), "index", 3);

    d = ev_data(evs, 17);
    assert_jint(d, "index", 4);
    assert_jstr(d, "content_block.type", "redacted_thinking");
    assert_jstr(d, "content_block.data", "DATA");
    assert_jint(ev_data(evs, 18), "index", 4);

    d = ev_data(evs, 19);
    assert_jstr(d, "delta.stop_reason", "tool_use");
    assert_jnull(d, "delta.stop_sequence");
    assert_jint(d, "usage.input_tokens", 42);
    assert_jint(d, "usage.cache_read_input_tokens", 8);
    assert_jint(d, "usage.cache_creation_input_tokens", 3);
    assert_jint(d, "usage.output_tokens", 77);
    json_decref(evs);
    enc_close(&x);
}

static void test_stream_end_without_usage(void **state)
{
    (void)state;
    struct encoding x;
    enc_open(&x, "fallback-model");
    assert_int_equal(emit(&x, SB_EV_START, 0, SB_BLOCK_TEXT, NULL), 0);
    assert_int_equal(emit(&x, SB_EV_BLOCK_START, 0, SB_BLOCK_THINKING, NULL), 0);
    assert_int_equal(emit(&x, SB_EV_SIGNATURE, 0, SB_BLOCK_THINKING, "gem"), 0);
    assert_int_equal(emit(&x, SB_EV_BLOCK_STOP, 0, SB_BLOCK_THINKING, NULL), 0);
    struct sb_canon_event ev;
    memset(&ev, 0, sizeof ev);
    sb_usage_init(&ev.usage);
    ev.type = SB_EV_FINISH;
    ev.finish = SB_FINISH_STOP_SEQUENCE;
    ev.stop_sequence = "###";
    assert_int_equal(emit_ev(&x, &ev), 0);
    assert_int_equal(C->enc_end(x.enc, &x.out), 0);
    assert_int_equal(C->enc_end(x.enc, &x.out), 0); /* idempotent */
    json_t *evs = parse_sse(x.out.data, x.out.len, true);
    assert_int_equal(json_array_size(evs), 7);
    assert_jstr(ev_data(evs, 0), "message.model", "fallback-model");
    assert_jint(ev_data(evs, 0), "message.usage.input_tokens", 0);
    /* a signature-only thinking block (Gemini) is shown */
    assert_jstr(ev_data(evs, 2), "content_block.type", "thinking");
    assert_jstr(ev_data(evs, 3), "delta.signature", "gem");
    assert_string_equal(ev_name(evs, 5), "message_delta");
    assert_jstr(ev_data(evs, 5), "delta.stop_reason", "stop_sequence");
    assert_jstr(ev_data(evs, 5), "delta.stop_sequence", "###");
    assert_jint(ev_data(evs, 5), "usage.output_tokens", 0);
    assert_string_equal(ev_name(evs, 6), "message_stop");
    json_decref(evs);
    enc_close(&x);
}

static void test_stream_errors_and_order(void **state)
{
    (void)state;
    struct encoding x;

    /* events before START, or out of order, are refused and write nothing */
    enc_open(&x, "m");
    assert_int_equal(emit(&x, SB_EV_BLOCK_START, 0, SB_BLOCK_TEXT, NULL), SB_CANON_E_INVALID);
    assert_int_equal(emit(&x, SB_EV_FINISH, 0, SB_BLOCK_TEXT, NULL), SB_CANON_E_INVALID);
    assert_int_equal(C->enc_end(x.enc, &x.out), SB_CANON_E_CUT);
    assert_int_equal(x.out.len, 0);
    assert_int_equal(emit(&x, SB_EV_START, 0, SB_BLOCK_TEXT, NULL), 0);
    assert_int_equal(emit(&x, SB_EV_START, 0, SB_BLOCK_TEXT, NULL), SB_CANON_E_INVALID);
    assert_int_equal(emit(&x, SB_EV_BLOCK_START, 1, SB_BLOCK_TEXT, NULL), SB_CANON_E_INVALID);
    assert_int_equal(emit(&x, SB_EV_DELTA, 0, SB_BLOCK_TEXT, "x"), SB_CANON_E_INVALID);
    assert_int_equal(emit(&x, SB_EV_USAGE, 0, SB_BLOCK_TEXT, NULL), SB_CANON_E_INVALID);
    assert_int_equal(emit(&x, SB_EV_BLOCK_START, 0, SB_BLOCK_TEXT, NULL), 0);
    assert_int_equal(emit(&x, SB_EV_BLOCK_START, 1, SB_BLOCK_TEXT, NULL), SB_CANON_E_INVALID);
    assert_int_equal(emit(&x, SB_EV_SIGNATURE, 0, SB_BLOCK_TEXT, "s"), SB_CANON_E_INVALID);
    assert_int_equal(emit(&x, SB_EV_DELTA, 1, SB_BLOCK_TEXT, "x"), SB_CANON_E_INVALID);
    assert_int_equal(emit(&x, SB_EV_FINISH, 0, SB_BLOCK_TEXT, NULL), SB_CANON_E_INVALID);
    assert_int_equal(emit(&x, SB_EV_DELTA, 0, SB_BLOCK_TEXT, "partial"), 0);
    /* the stream is cut: enc_end says so, enc_error ends it */
    assert_int_equal(C->enc_end(x.enc, &x.out), SB_CANON_E_CUT);
    struct sb_canon_error e;
    sb_canon_error_set(&e, 529, SB_ERRK_OVERLOADED, "overloaded_error", "Overloaded");
    assert_int_equal(C->enc_error(x.enc, &e, &x.out), 0);
    assert_int_equal(emit(&x, SB_EV_BLOCK_STOP, 0, SB_BLOCK_TEXT, NULL), SB_CANON_E_INVALID);
    size_t len = x.out.len;
    assert_int_equal(C->enc_error(x.enc, &e, &x.out), 0);
    assert_int_equal(x.out.len, len);
    json_t *evs = parse_sse(x.out.data, x.out.len, true);
    size_t n = json_array_size(evs);
    assert_int_equal(n, 5);
    assert_string_equal(ev_name(evs, n - 1), "error");
    assert_jstr(ev_data(evs, n - 1), "error.type", "overloaded_error");
    assert_jstr(ev_data(evs, n - 1), "error.message", "Overloaded");
    json_decref(evs);
    enc_close(&x);

    /* an ERROR event in the stream is written the same way */
    enc_open(&x, "m");
    assert_int_equal(emit(&x, SB_EV_START, 0, SB_BLOCK_TEXT, NULL), 0);
    struct sb_canon_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = SB_EV_ERROR;
    sb_canon_error_set(&e, 429, SB_ERRK_RATE_LIMIT, "x", "too many");
    ev.error = &e;
    assert_int_equal(emit_ev(&x, &ev), 0);
    assert_int_equal(emit(&x, SB_EV_FINISH, 0, SB_BLOCK_TEXT, NULL), SB_CANON_E_INVALID);
    evs = parse_sse(x.out.data, x.out.len, true);
    assert_int_equal(json_array_size(evs), 3);
    assert_jstr(ev_data(evs, 2), "error.type", "rate_limit_error");
    json_decref(evs);
    enc_close(&x);

    /* signature on a text block, a second redacted delta */
    enc_open(&x, "m");
    assert_int_equal(emit(&x, SB_EV_START, 0, SB_BLOCK_TEXT, NULL), 0);
    assert_int_equal(emit(&x, SB_EV_BLOCK_START, 0, SB_BLOCK_REDACTED_THINKING, NULL), 0);
    assert_int_equal(emit(&x, SB_EV_DELTA, 0, SB_BLOCK_REDACTED_THINKING, "a"), 0);
    assert_int_equal(emit(&x, SB_EV_DELTA, 0, SB_BLOCK_REDACTED_THINKING, "b"), SB_CANON_E_INVALID);
    assert_int_equal(emit(&x, SB_EV_SIGNATURE, 0, SB_BLOCK_REDACTED_THINKING, "s"),
                     SB_CANON_E_INVALID);
    enc_close(&x);

    /* the cap: an event that does not fit leaves the buffer as it was */
    x.enc = C->enc_new(NULL, true);
    assert_non_null(x.enc);
    sb_buf_init(&x.out, 600);
    assert_int_equal(emit(&x, SB_EV_START, 0, SB_BLOCK_TEXT, NULL), 0);
    assert_int_equal(emit(&x, SB_EV_BLOCK_START, 0, SB_BLOCK_TEXT, NULL), 0);
    len = x.out.len;
    char big[700];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_int_equal(emit(&x, SB_EV_DELTA, 0, SB_BLOCK_TEXT, big), -E2BIG);
    assert_int_equal(x.out.len, len);
    sb_buf_reset(&x.out);
    assert_int_equal(emit(&x, SB_EV_DELTA, 0, SB_BLOCK_TEXT, "small"), 0);
    evs = parse_sse(x.out.data, x.out.len, true);
    assert_int_equal(json_array_size(evs), 2);
    assert_jstr(ev_data(evs, 1), "delta.text", "small");
    json_decref(evs);
    enc_close(&x);
}

/* A response shaped like messages_text_and_tool_use.response.json replayed as a stream. */
static void test_stream_replay(void **state)
{
    (void)state;
    size_t len;
    char *body = read_file(FIX "messages_text_and_tool_use.response.json", &len);
    json_t *fx = parse(body, len);
    free(body);

    struct sb_canon_resp r;
    resp_start(&r, json_string_value(json_object_get(fx, "id")),
               json_string_value(json_object_get(fx, "model")));
    json_t *content = json_object_get(fx, "content");
    for (size_t i = 0; i < json_array_size(content); i++) {
        json_t *b = json_array_get(content, i);
        const char *t = json_string_value(json_object_get(b, "type"));
        if (strcmp(t, "text") == 0) {
            add_block(&r, SB_BLOCK_TEXT, json_string_value(json_object_get(b, "text")), NULL, NULL,
                      NULL);
        } else {
            char *args = json_dumps(json_object_get(b, "input"), JSON_COMPACT);
            add_block(&r, SB_BLOCK_TOOL_CALL, args, NULL,
                      json_string_value(json_object_get(b, "id")),
                      json_string_value(json_object_get(b, "name")));
            free(args);
        }
    }
    struct sb_usage u;
    sb_usage_init(&u);
    u.input = json_integer_value(jpath(fx, "usage.input_tokens"));
    u.output = json_integer_value(jpath(fx, "usage.output_tokens"));
    u.cache_read = 0;
    u.cache_write = 0;
    resp_finish(&r, SB_FINISH_TOOL_CALLS, NULL, &u);

    /* the whole response renders back to the fixture's fields */
    json_t *j = render(&r, "x");
    assert_true(json_equal(json_object_get(j, "content"), content));
    assert_jstr(j, "id", json_string_value(json_object_get(fx, "id")));
    assert_jstr(j, "stop_reason", "tool_use");
    assert_jint(j, "usage.input_tokens", 602);
    assert_jint(j, "usage.output_tokens", 93);
    json_decref(j);

    struct encoding x;
    enc_open(&x, "x");
    assert_int_equal(sb_canon_resp_replay(&r, emit_ev, &x), 0);
    assert_int_equal(C->enc_end(x.enc, &x.out), 0);
    json_t *evs = parse_sse(x.out.data, x.out.len, true);
    assert_int_equal(json_array_size(evs), 10);
    assert_jstr(ev_data(evs, 0), "message.id", "msg_01GCBaV8gyWAYgMVggRqZbuQ");
    assert_jstr(ev_data(evs, 0), "message.model", "claude-3-opus-20240229");
    assert_jint(ev_data(evs, 0), "message.usage.input_tokens", 0);
    assert_jstr(ev_data(evs, 3), "delta.text", json_string_value(jpath(fx, "content.0.text")));
    assert_jstr(ev_data(evs, 5), "content_block.id", "toolu_01LRmxn9vGM1d2DZSDBowdZ1");
    assert_jstr(ev_data(evs, 6), "delta.partial_json", "{}");
    assert_jstr(ev_data(evs, 8), "delta.stop_reason", "tool_use");
    assert_jint(ev_data(evs, 8), "usage.input_tokens", 602);
    assert_jint(ev_data(evs, 8), "usage.output_tokens", 93);
    assert_string_equal(ev_name(evs, 9), "message_stop");
    json_decref(evs);
    enc_close(&x);
    sb_canon_resp_free(&r);
    json_decref(fx);
}

/* Each recorded Anthropic stream, turned into canonical events and encoded again, gives the
 * same events (pings aside, and the empty thinking_delta Anthropic sometimes sends). */
static enum sb_finish finish_of(const char *s)
{
    if (!s || strcmp(s, "end_turn") == 0)
        return SB_FINISH_STOP;
    if (strcmp(s, "tool_use") == 0)
        return SB_FINISH_TOOL_CALLS;
    if (strcmp(s, "max_tokens") == 0)
        return SB_FINISH_LENGTH;
    if (strcmp(s, "stop_sequence") == 0)
        return SB_FINISH_STOP_SEQUENCE;
    fail_msg("unexpected stop_reason %s", s);
    return SB_FINISH_NONE;
}

static int64_t iv(json_t *j, const char *path)
{
    json_t *v = jpath(j, path);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

static void check_fixture_roundtrip(const char *name)
{
    char path[512];
    snprintf(path, sizeof path, FIX "%s", name);
    size_t len;
    char *body = read_file(path, &len);
    json_t *in = parse_sse(body, len, false);
    free(body);

    struct encoding x;
    enc_open(&x, "m");
    json_t *expect = json_array();
    enum sb_block_kind kind = SB_BLOCK_TEXT;
    for (size_t i = 0; i < json_array_size(in); i++) {
        json_t *d = ev_data(in, i);
        const char *t = json_string_value(json_object_get(d, "type"));
        struct sb_canon_event ev;
        memset(&ev, 0, sizeof ev);
        sb_usage_init(&ev.usage);
        ev.index = (int)iv(d, "index");
        ev.block = kind;
        if (strcmp(t, "ping") == 0)
            continue;
        if (strcmp(t, "message_start") == 0) {
            ev.type = SB_EV_START;
            ev.id = json_string_value(jpath(d, "message.id"));
            ev.model = json_string_value(jpath(d, "message.model"));
            ev.usage.input = iv(d, "message.usage.input_tokens");
            ev.usage.cache_read = iv(d, "message.usage.cache_read_input_tokens");
            ev.usage.cache_write = iv(d, "message.usage.cache_creation_input_tokens");
        } else if (strcmp(t, "content_block_start") == 0) {
            const char *bt = json_string_value(jpath(d, "content_block.type"));
            kind = strcmp(bt, "text") == 0       ? SB_BLOCK_TEXT
                   : strcmp(bt, "thinking") == 0 ? SB_BLOCK_THINKING
                                                 : SB_BLOCK_TOOL_CALL;
            ev.type = SB_EV_BLOCK_START;
            ev.block = kind;
            ev.id = json_string_value(jpath(d, "content_block.id"));
            ev.name = json_string_value(jpath(d, "content_block.name"));
        } else if (strcmp(t, "content_block_delta") == 0) {
            const char *dt = json_string_value(jpath(d, "delta.type"));
            const char *field = strcmp(dt, "text_delta") == 0        ? "delta.text"
                                : strcmp(dt, "thinking_delta") == 0  ? "delta.thinking"
                                : strcmp(dt, "signature_delta") == 0 ? "delta.signature"
                                                                     : "delta.partial_json";
            ev.type = dt[1] == 'i' && dt[2] == 'g' ? SB_EV_SIGNATURE : SB_EV_DELTA;
            ev.text = json_string_value(jpath(d, field));
            ev.len = json_string_length(jpath(d, field));
            if (kind == SB_BLOCK_THINKING && ev.type == SB_EV_DELTA && ev.len == 0) {
                assert_int_equal(emit_ev(&x, &ev), 0);
                continue; /* left out by the encoder */
            }
        } else if (strcmp(t, "content_block_stop") == 0) {
            ev.type = SB_EV_BLOCK_STOP;
        } else if (strcmp(t, "message_delta") == 0) {
            ev.type = SB_EV_FINISH;
            ev.finish = finish_of(json_string_value(jpath(d, "delta.stop_reason")));
            assert_int_equal(emit_ev(&x, &ev), 0);
            ev.type = SB_EV_USAGE;
            ev.usage.output = iv(d, "usage.output_tokens");
        } else if (strcmp(t, "message_stop") == 0) {
            json_array_append(expect, json_array_get(in, i));
            continue;
        } else {
            fail_msg("unexpected event %s", t);
        }
        assert_int_equal(emit_ev(&x, &ev), 0);
        json_array_append(expect, json_array_get(in, i));
    }
    assert_int_equal(C->enc_end(x.enc, &x.out), 0);
    json_t *got = parse_sse(x.out.data, x.out.len, true);
    /* ours has one ping, right after message_start */
    assert_string_equal(ev_name(got, 1), "ping");
    json_array_remove(got, 1);
    assert_int_equal(json_array_size(got), json_array_size(expect));
    for (size_t i = 0; i < json_array_size(got); i++) {
        assert_string_equal(ev_name(got, i), ev_name(expect, i));
        json_t *g = ev_data(got, i), *w = ev_data(expect, i);
        const char *t = json_string_value(json_object_get(w, "type"));
        if (strcmp(t, "message_start") == 0) {
            assert_jstr(g, "message.id", json_string_value(jpath(w, "message.id")));
            assert_jstr(g, "message.model", json_string_value(jpath(w, "message.model")));
            assert_jint(g, "message.usage.input_tokens", iv(w, "message.usage.input_tokens"));
            int64_t cr = iv(w, "message.usage.cache_read_input_tokens");
            assert_jint(g, "message.usage.cache_read_input_tokens", cr < 0 ? 0 : cr);
        } else if (strcmp(t, "message_delta") == 0) {
            assert_jstr(g, "delta.stop_reason", json_string_value(jpath(w, "delta.stop_reason")));
            assert_jnull(g, "delta.stop_sequence");
            assert_jint(g, "usage.output_tokens", iv(w, "usage.output_tokens"));
        } else if (!json_equal(g, w)) {
            char *gs = json_dumps(g, JSON_COMPACT), *ws = json_dumps(w, JSON_COMPACT);
            fail_msg("%s event %zu:\n got  %s\n want %s", name, i, gs, ws);
        }
    }
    json_decref(got);
    json_decref(expect);
    json_decref(in);
    enc_close(&x);
}

static void test_stream_fixtures(void **state)
{
    (void)state;
    check_fixture_roundtrip("messages_stream_text.sse");
    check_fixture_roundtrip("messages_stream_text_basic.sse");
    check_fixture_roundtrip("messages_stream_cache_read.sse");
    check_fixture_roundtrip("messages_stream_thinking.reconstructed.sse");
    check_fixture_roundtrip("messages_stream_tool_use.sse");
    check_fixture_roundtrip("messages_stream_tool_use_no_args.reconstructed.sse");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_full),
        cmocka_unit_test(test_decode_minimal),
        cmocka_unit_test(test_decode_choices),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_count_tokens),
        cmocka_unit_test(test_render_response),
        cmocka_unit_test(test_render_error),
        cmocka_unit_test(test_stream_synthetic),
        cmocka_unit_test(test_stream_end_without_usage),
        cmocka_unit_test(test_stream_errors_and_order),
        cmocka_unit_test(test_stream_replay),
        cmocka_unit_test(test_stream_fixtures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Golden translation tests: every recorded provider response and stream in
 * tests/data/fixtures (OpenAI and OpenAI-compatible, Anthropic, Gemini) is decoded by its
 * dialect's codec, re-encoded for each client dialect (OpenAI, Anthropic) both as a complete
 * response and as a stream, and read back with that client dialect's own decoder. The result
 * must say the same thing field by field: text, thinking, tool calls (ids, names, parsed
 * arguments), finish reason (in that client's vocabulary), usage. Streams are also fed one
 * byte at a time and must give the same result as whole. Every recorded error body is mapped
 * into each client's envelope with a status that keeps its class. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "canon/codecs.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BYTES (16u << 20)

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    struct sb_buf b;
    sb_buf_init(&b, MAX_BYTES);
    char tmp[8192];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0)
        assert_int_equal(sb_buf_append(&b, tmp, n), 0);
    fclose(f);
    if (!b.data)
        sb_buf_append(&b, "", 0);
    return sb_buf_take(&b, len);
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

/* ---- decoding into a whole canonical response ---- */

static int decode_whole(const struct sb_provider_codec *c, bool stream, const char *data,
                        size_t len, size_t step, struct sb_canon_resp *out)
{
    sb_canon_resp_init(out, MAX_BYTES);
    if (!stream)
        return c->decode_response(data, len, sb_canon_resp_event, out);
    void *st = c->stream_new(4u << 20);
    assert_non_null(st);
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0; i += step) {
        size_t n = len - i < step ? len - i : step;
        rc = c->stream_feed(st, data + i, n, sb_canon_resp_event, out);
    }
    if (rc == 0 && !out->has_error)
        rc = c->stream_end(st, sb_canon_resp_event, out);
    c->stream_free(st);
    return rc;
}

/* ---- comparing ---- */

static void join_kind(const struct sb_canon_resp *r, enum sb_block_kind k, struct sb_buf *out)
{
    for (size_t i = 0; i < r->nblocks; i++)
        if (r->blocks[i].kind == k && r->blocks[i].text.len)
            assert_int_equal(sb_buf_append(out, r->blocks[i].text.data, r->blocks[i].text.len), 0);
}

static void assert_same_text(const struct sb_canon_resp *a, const struct sb_canon_resp *b,
                             enum sb_block_kind k, const char *what, const char *name)
{
    struct sb_buf x, y;
    sb_buf_init(&x, MAX_BYTES);
    sb_buf_init(&y, MAX_BYTES);
    join_kind(a, k, &x);
    join_kind(b, k, &y);
    if (x.len != y.len || (x.len && memcmp(x.data, y.data, x.len) != 0))
        fail_msg("%s: %s differs:\n  want [%.*s]\n  got  [%.*s]", name, what, (int)x.len,
                 x.data ? x.data : "", (int)y.len, y.data ? y.data : "");
    sb_buf_free(&x);
    sb_buf_free(&y);
}

static size_t tool_blocks(const struct sb_canon_resp *r, const struct sb_canon_block **out,
                          size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < r->nblocks; i++)
        if (r->blocks[i].kind == SB_BLOCK_TOOL_CALL && n < cap)
            out[n++] = &r->blocks[i];
    return n;
}

/* Arguments compared as JSON values ("" and "{}" both mean no arguments). */
static void assert_same_args(const struct sb_canon_block *a, const struct sb_canon_block *b,
                             const char *name)
{
    const char *sa = a->text.len ? a->text.data : "{}";
    const char *sb = b->text.len ? b->text.data : "{}";
    json_t *ja = json_loads(sa, JSON_DECODE_ANY, NULL);
    json_t *jb = json_loads(sb, JSON_DECODE_ANY, NULL);
    if (ja && jb) {
        if (!json_equal(ja, jb))
            fail_msg("%s: tool arguments differ: %s vs %s", name, sa, sb);
    } else if (ja || strcmp(sa, sb) != 0) {
        fail_msg("%s: tool arguments differ: %s vs %s", name, sa, sb);
    }
    json_decref(ja);
    json_decref(jb);
}

static int64_t nz(int64_t v)
{
    return v < 0 ? 0 : v;
}

/* Ids synthesized by a decoder (Gemini before version 3 sends none) differ between two
 * decodings of the same bytes; everything else must not. */
static bool same_ids = true;

static void assert_same(const struct sb_canon_resp *a, const struct sb_canon_resp *b,
                        enum sb_dialect client, const char *name)
{
    if (a->has_error) {
        if (!b->has_error)
            fail_msg("%s: the error was lost", name);
        return;
    }
    if (b->has_error)
        fail_msg("%s: an error appeared: %s", name, b->error.message);
    assert_same_text(a, b, SB_BLOCK_TEXT, "text", name);
    assert_same_text(a, b, SB_BLOCK_THINKING, "thinking", name);
    const struct sb_canon_block *ta[64], *tb[64];
    size_t na = tool_blocks(a, ta, 64), nb = tool_blocks(b, tb, 64);
    if (na != nb)
        fail_msg("%s: %zu tool calls became %zu", name, na, nb);
    for (size_t i = 0; i < na; i++) {
        if (!ta[i]->name || !tb[i]->name || strcmp(ta[i]->name, tb[i]->name) != 0)
            fail_msg("%s: tool call %zu: name %s became %s", name, i,
                     ta[i]->name ? ta[i]->name : "(null)", tb[i]->name ? tb[i]->name : "(null)");
        if (same_ids && ta[i]->id && (!tb[i]->id || strcmp(ta[i]->id, tb[i]->id) != 0))
            fail_msg("%s: tool call %zu: id %s became %s", name, i, ta[i]->id,
                     tb[i]->id ? tb[i]->id : "(null)");
        assert_same_args(ta[i], tb[i], name);
    }
    if (client == SB_DIALECT_OPENAI) {
        if (strcmp(sb_finish_openai(a->finish), sb_finish_openai(b->finish)) != 0)
            fail_msg("%s: finish %s became %s", name, sb_finish_openai(a->finish),
                     sb_finish_openai(b->finish));
    } else if (strcmp(sb_finish_anthropic(a->finish), sb_finish_anthropic(b->finish)) != 0) {
        fail_msg("%s: stop_reason %s became %s", name, sb_finish_anthropic(a->finish),
                 sb_finish_anthropic(b->finish));
    }
    /* Usage: what the client is told must add up to what the provider counted. */
    if (a->usage.input >= 0) {
        if (sb_usage_prompt(&a->usage) != sb_usage_prompt(&b->usage))
            fail_msg("%s: prompt tokens %lld became %lld", name,
                     (long long)sb_usage_prompt(&a->usage), (long long)sb_usage_prompt(&b->usage));
        if (nz(a->usage.cache_read) != nz(b->usage.cache_read))
            fail_msg("%s: cached tokens %lld became %lld", name, (long long)a->usage.cache_read,
                     (long long)b->usage.cache_read);
    }
    if (a->usage.output >= 0 && a->usage.output != b->usage.output)
        fail_msg("%s: output tokens %lld became %lld", name, (long long)a->usage.output,
                 (long long)b->usage.output);
    if (client == SB_DIALECT_OPENAI && a->usage.reasoning > 0 &&
        a->usage.reasoning != b->usage.reasoning)
        fail_msg("%s: reasoning tokens %lld became %lld", name, (long long)a->usage.reasoning,
                 (long long)b->usage.reasoning);
}

/* ---- re-encoding for a client ---- */

struct enc_ctx {
    const struct sb_client_codec *c;
    void *enc;
    struct sb_buf out;
};

static int to_encoder(void *ud, const struct sb_canon_event *ev)
{
    struct enc_ctx *e = ud;
    return e->c->enc_event(e->enc, ev, &e->out);
}

static const struct sb_provider_codec *reader_of(enum sb_dialect d)
{
    return d == SB_DIALECT_ANTHROPIC ? &sb_codec_anthropic : &sb_codec_openai;
}

static void round_trip(const struct sb_canon_resp *a, const struct sb_client_codec *c,
                       const char *fixture)
{
    char name[512];
    const struct sb_provider_codec *reader = reader_of(c->dialect);
    /* A complete response. */
    snprintf(name, sizeof name, "%s -> %s response", fixture, sb_dialect_name(c->dialect));
    struct sb_buf body;
    sb_buf_init(&body, MAX_BYTES);
    struct sb_canon_resp b;
    if (a->has_error) {
        int status = 0;
        assert_int_equal(c->render_error(&a->error, &body, &status), 0);
        assert_true(status >= 400);
    } else {
        assert_int_equal(c->render_response(a, "fallback-model", &body), 0);
        int rc = decode_whole(reader, false, body.data, body.len, 1, &b);
        if (rc != 0)
            fail_msg("%s: the rendered body does not decode (%d): %.*s", name, rc, (int)body.len,
                     body.data);
        assert_same(a, &b, c->dialect, name);
        sb_canon_resp_free(&b);
    }
    sb_buf_free(&body);

    /* A stream of it. */
    snprintf(name, sizeof name, "%s -> %s stream", fixture, sb_dialect_name(c->dialect));
    struct enc_ctx e = {.c = c, .enc = c->enc_new("fallback-model", true)};
    assert_non_null(e.enc);
    sb_buf_init(&e.out, MAX_BYTES);
    if (a->has_error) {
        assert_int_equal(c->enc_error(e.enc, &a->error, &e.out), 0);
    } else {
        assert_int_equal(sb_canon_resp_replay(a, to_encoder, &e), 0);
        assert_int_equal(c->enc_end(e.enc, &e.out), 0);
    }
    c->enc_free(e.enc);
    int rc = decode_whole(reader, true, e.out.data, e.out.len, 1, &b);
    if (rc != 0 && !(a->has_error && b.has_error))
        fail_msg("%s: the rendered stream does not decode (%d): %.*s", name, rc, (int)e.out.len,
                 e.out.data);
    assert_same(a, &b, c->dialect, name);
    sb_canon_resp_free(&b);
    sb_buf_free(&e.out);
}

/* ---- the fixtures ---- */

static size_t checked;

static void golden_file(const struct sb_provider_codec *c, const char *dir, const char *file,
                        bool stream)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/fixtures/%s/%s", SB_SOURCE_DIR, dir, file);
    size_t len;
    char *data = slurp(path, &len);
    assert_non_null(data);
    char name[600];
    snprintf(name, sizeof name, "%s/%s", dir, file);
    struct sb_canon_resp a;
    int rc = decode_whole(c, stream, data, len, len ? len : 1, &a);
    if (rc != 0 && !a.has_error)
        fail_msg("%s: does not decode: %d", name, rc);
    if (!a.has_error && (!a.started || !a.finished))
        fail_msg("%s: decoded without a start or a finish", name);
    if (stream) { /* one byte at a time: the same answer */
        struct sb_canon_resp a1;
        decode_whole(c, true, data, len, 1, &a1);
        char n1[640];
        snprintf(n1, sizeof n1, "%s (byte by byte)", name);
        same_ids = false;
        assert_same(&a, &a1, SB_DIALECT_OPENAI, n1);
        assert_same(&a, &a1, SB_DIALECT_ANTHROPIC, n1);
        same_ids = true;
        sb_canon_resp_free(&a1);
    }
    round_trip(&a, &sb_client_openai, name);
    round_trip(&a, &sb_client_anthropic, name);
    sb_canon_resp_free(&a);
    free(data);
    checked++;
}

static void golden_error(const struct sb_provider_codec *c, const char *dir, const char *file,
                         int status)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/fixtures/%s/%s", SB_SOURCE_DIR, dir, file);
    size_t len;
    char *data = slurp(path, &len);
    assert_non_null(data);
    struct sb_canon_error e;
    memset(&e, 0, sizeof e);
    assert_int_equal(c->decode_error(status, data, len, &e), 0);
    assert_true(e.message[0] != '\0');
    const struct sb_client_codec *clients[] = {&sb_client_openai, &sb_client_anthropic};
    for (size_t i = 0; i < 2; i++) {
        struct sb_buf out;
        sb_buf_init(&out, 1 << 20);
        int st = 0;
        assert_int_equal(clients[i]->render_error(&e, &out, &st), 0);
        json_t *j = json_loadb(out.data, out.len, 0, NULL);
        if (!j)
            fail_msg("%s/%s: the %s error body is not JSON", dir, file,
                     sb_dialect_name(clients[i]->dialect));
        json_t *err = json_object_get(j, "error");
        assert_true(json_is_object(err));
        assert_true(json_is_string(json_object_get(err, "message")));
        assert_true(json_is_string(json_object_get(err, "type")));
        /* The class survives: a client error stays a client error, a server error a
         * server error, a rate limit a rate limit. */
        if (e.kind == SB_ERRK_RATE_LIMIT)
            assert_int_equal(st, 429);
        else if (e.kind == SB_ERRK_AUTH)
            assert_int_equal(st, 401);
        else if (status < 500 && e.kind == SB_ERRK_INVALID_REQUEST)
            assert_true(st >= 400 && st < 500);
        else if (e.kind == SB_ERRK_OVERLOADED || e.kind == SB_ERRK_SERVER)
            assert_true(st >= 500);
        json_decref(j);
        sb_buf_free(&out);
    }
    free(data);
    checked++;
}

static int status_of_name(const char *file)
{
    const char *p = strstr(file, "error_");
    if (!p)
        return 400;
    p += 6;
    int st = 0;
    for (int i = 0; i < 3 && p[i] >= '0' && p[i] <= '9'; i++)
        st = st * 10 + (p[i] - '0');
    return st >= 400 && st < 600 ? st : 400;
}

static void walk(const char *dir, const struct sb_provider_codec *c)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/data/fixtures/%s", SB_SOURCE_DIR, dir);
    DIR *d = opendir(path);
    assert_non_null(d);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        const char *f = de->d_name;
        if (f[0] == '.')
            continue;
        bool openai = c == &sb_codec_openai;
        if (strncmp(f, "error_in_stream", 15) == 0) {
            golden_file(c, dir, f, true);
            continue;
        }
        if (strncmp(f, "error_", 6) == 0 && ends_with(f, ".json") &&
            !ends_with(f, ".request.json") && !ends_with(f, ".headers.json")) {
            golden_error(c, dir, f, status_of_name(f));
            continue;
        }
        if (strstr(f, "error") && ends_with(f, ".json") && !ends_with(f, ".headers.json") &&
            !ends_with(f, ".request.json")) {
            golden_error(c, dir, f, 400);
            continue;
        }
        /* Chat responses only: not embeddings, models, legacy completions or Responses. */
        if (openai && !(strstr(f, "chat") && !strstr(f, "ollama_native")) &&
            strncmp(f, "error_in_stream", 15) != 0)
            continue;
        if (ends_with(f, ".response.json"))
            golden_file(c, dir, f, false);
        else if (ends_with(f, ".sse"))
            golden_file(c, dir, f, true);
    }
    closedir(d);
}

static void test_openai_fixtures(void **state)
{
    (void)state;
    checked = 0;
    walk("openai", &sb_codec_openai);
    walk("other", &sb_codec_openai);
    assert_true(checked >= 20);
}

static void test_anthropic_fixtures(void **state)
{
    (void)state;
    checked = 0;
    walk("anthropic", &sb_codec_anthropic);
    assert_true(checked >= 17);
}

static void test_gemini_fixtures(void **state)
{
    (void)state;
    checked = 0;
    walk("gemini", &sb_codec_gemini);
    assert_true(checked >= 10);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_openai_fixtures),
        cmocka_unit_test(test_anthropic_fixtures),
        cmocka_unit_test(test_gemini_fixtures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

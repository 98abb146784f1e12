/* Gemini decoders: a response body, an error body, a stream (fed whole and split at a
 * position taken from the first byte, which must give the same blocks, finish and usage) and
 * an embeddings body (Gemini and Vertex AI), a countTokens answer; the input also goes into
 * requests (as a schema, arguments, a result, an embeddings input). Every event sequence goes
 * through the response aggregator, which refuses events out of order; any refusal aborts. Seeds are
 * recorded Gemini bodies. */
#include "canon/codecs.h"
#include "canon/gemini.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct sink {
    struct sb_canon_resp resp;
    size_t events;
    bool error;
};

static int on_event(void *ud, const struct sb_canon_event *ev)
{
    struct sink *s = ud;
    s->events++;
    if (s->error) /* nothing may follow an ERROR */
        abort();
    if (ev->type == SB_EV_ERROR) {
        s->error = true;
        if (!ev->error || ev->error->status < 400 || ev->error->status > 599 ||
            !memchr(ev->error->message, '\0', sizeof ev->error->message))
            abort();
    }
    if (sb_canon_resp_event(&s->resp, ev) != 0)
        abort();
    return 0;
}

static void sink_init(struct sink *s, size_t size)
{
    memset(s, 0, sizeof *s);
    /* Re-serialized arguments can be longer than their source (escapes); never by 4x. */
    sb_canon_resp_init(&s->resp, size * 4 + 4096);
}

static int run_stream(const uint8_t *data, size_t size, size_t split, struct sink *s)
{
    void *st = sb_codec_gemini.stream_new(size + 16);
    if (!st)
        abort();
    int rc = sb_codec_gemini.stream_feed(st, (const char *)data, split, on_event, s);
    if (rc == 0)
        rc = sb_codec_gemini.stream_feed(st, (const char *)data + split, size - split, on_event, s);
    if (rc == 0)
        rc = sb_codec_gemini.stream_end(st, on_event, s);
    sb_codec_gemini.stream_free(st);
    return rc;
}

static void same(const struct sink *a, const struct sink *b)
{
    const struct sb_canon_resp *x = &a->resp, *y = &b->resp;
    if (x->nblocks != y->nblocks || x->finished != y->finished || x->finish != y->finish ||
        a->error != b->error || memcmp(&x->usage, &y->usage, sizeof x->usage) != 0)
        abort();
    for (size_t i = 0; i < x->nblocks; i++) {
        if (x->blocks[i].kind != y->blocks[i].kind ||
            x->blocks[i].text.len != y->blocks[i].text.len ||
            (x->blocks[i].text.len &&
             memcmp(x->blocks[i].text.data, y->blocks[i].text.data, x->blocks[i].text.len)))
            abort();
    }
}

/* The input as a tool schema, a tool result and call arguments of a request: the encoder
 * must give valid JSON or a 4xx, whatever the schema holds ($ref cycles included). */
static void encode_with(const uint8_t *data, size_t size)
{
    json_t *schema = json_loadb((const char *)data, size, 0, NULL);
    if (!json_is_object(schema)) {
        json_decref(schema);
        return;
    }
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    struct sb_part call = {
        .type = SB_PART_TOOL_CALL, .id = "call_1", .name = "f", .arguments = text};
    struct sb_part sig = {.type = SB_PART_THINKING, .signature = "S"};
    struct sb_part assistant[2] = {sig, call};
    struct sb_part inner = {.type = SB_PART_TEXT, .text = text};
    struct sb_part result = {
        .type = SB_PART_TOOL_RESULT, .id = "call_1", .parts = &inner, .nparts = 1};
    struct sb_msg msgs[2] = {{.role = SB_ROLE_ASSISTANT, .parts = assistant, .nparts = 2},
                             {.role = SB_ROLE_TOOL, .parts = &result, .nparts = 1}};
    struct sb_tool tool = {.name = "f", .parameters = schema, .strict = -1};
    struct sb_canon_req req = {.msgs = msgs,
                               .nmsgs = 2,
                               .tools = &tool,
                               .ntools = 1,
                               .tool_choice = SB_TC_AUTO,
                               .max_tokens = -1,
                               .top_k = -1,
                               .n = -1,
                               .top_logprobs = -1,
                               .thinking_budget = -1,
                               .response_format = SB_RF_JSON_SCHEMA,
                               .rf_schema = schema};
    struct sb_buf out;
    sb_buf_init(&out, size * 8 + 4096);
    struct sb_error err;
    int rc = sb_codec_gemini.encode_request(&req, "m", &out, &err);
    if (rc == 0) {
        json_t *j = json_loadb(out.data, out.len, 0, NULL);
        if (!json_is_object(j))
            abort();
        json_decref(j);
    } else if (err.status != 400 && err.status != 413) {
        abort();
    }
    /* countTokens bodies of the same request: valid JSON, or a 4xx with nothing written. */
    for (int vertex = 0; vertex < 2; vertex++) {
        sb_buf_reset(&out);
        rc = vertex ? sb_vertex_encode_count_tokens(&req, "m", &out, &err)
                    : sb_gemini_encode_count_tokens(&req, "models/m", &out, &err);
        if (rc == 0) {
            json_t *j = json_loadb(out.data, out.len, 0, NULL);
            if (!json_is_object(j))
                abort();
            json_decref(j);
        } else if ((err.status != 400 && err.status != 413) || out.len != 0) {
            abort();
        }
    }
    sb_buf_free(&out);
    free(text);
    json_decref(schema);
}

/* The input as the text to embed on Vertex AI. */
static void embed_encode_with(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        abort();
    memcpy(text, data, size);
    text[size] = '\0';
    char *inputs[2] = {text, "x"};
    struct sb_embed_req req = {.inputs = inputs,
                               .ninputs = 2,
                               .dimensions = size ? data[0] : -1,
                               .input_type = size > 1 && data[1] & 1 ? "search_query" : NULL};
    struct sb_buf out;
    sb_buf_init(&out, size * 8 + 256);
    struct sb_error err;
    if (sb_embed_vertex.encode(&req, 0, 2, "m", &out, &err) == 0) {
        json_t *j = json_loadb(out.data, out.len, 0, NULL);
        if (json_array_size(json_object_get(j, "instances")) != 2)
            abort();
        json_decref(j);
    } else if ((err.status != 413 && err.status != 500) || out.len != 0) {
        abort(); /* 500: text jansson refuses (not UTF-8), which a decoded request never holds */
    }
    sb_buf_free(&out);
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    encode_with(data, size);

    struct sink s;
    sink_init(&s, size);
    int rc = sb_codec_gemini.decode_response((const char *)data, size, on_event, &s);
    if (rc == 0 && !s.error && !s.resp.finished)
        abort();
    sb_canon_resp_free(&s.resp);

    struct sb_canon_error e;
    int status = 400 + (size ? data[0] % 200 : 0);
    sb_codec_gemini.decode_error(status, (const char *)data, size, &e);
    if (e.status < 400 || e.status > 599 || !memchr(e.message, '\0', sizeof e.message))
        abort();

    size_t split = size ? (size_t)data[0] * size / 256 : 0;
    struct sink whole, parts;
    sink_init(&whole, size);
    sink_init(&parts, size);
    int rw = run_stream(data, size, size, &whole);
    int rp = run_stream(data, size, split, &parts);
    if (rw != rp)
        abort();
    if (rw == 0)
        same(&whole, &parts);
    sb_canon_resp_free(&whole.resp);
    sb_canon_resp_free(&parts.resp);

    struct sb_embed_resp er;
    memset(&er, 0, sizeof er);
    er.input_tokens = -1;
    if (sb_embed_gemini.decode((const char *)data, size, &er) == 0 &&
        (er.input_tokens != -1 || er.n > 4096))
        abort();
    for (size_t i = 0; i < er.n; i++)
        if (er.dims[i] && !er.vectors[i])
            abort();
    sb_embed_resp_free(&er);

    /* Vertex AI: decoded twice into one response, the second count adds to the first. */
    memset(&er, 0, sizeof er);
    er.input_tokens = -1;
    if (sb_embed_vertex.decode((const char *)data, size, &er) == 0) {
        size_t n1 = er.n;
        int64_t t1 = er.input_tokens;
        if (n1 > 4096 || t1 < -1 || sb_embed_vertex.decode((const char *)data, size, &er) != 0 ||
            er.n != 2 * n1 || (t1 == -1 ? er.input_tokens != -1 : er.input_tokens != 2 * t1))
            abort();
    } else if (er.n != 0 || er.input_tokens != -1) {
        abort();
    }
    for (size_t i = 0; i < er.n; i++)
        if (er.dims[i] && !er.vectors[i])
            abort();
    sb_embed_resp_free(&er);
    embed_encode_with(data, size);

    int64_t tokens = -7;
    rc = sb_gemini_decode_count_tokens((const char *)data, size, &tokens);
    if (rc == 0 ? tokens < 0 || tokens > ((int64_t)1 << 48)
                : rc != SB_CANON_E_INVALID || tokens != -7)
        abort();
    return 0;
}

/* Gemini decoders: a response body, an error body, a stream (fed whole and split at a
 * position taken from the first byte, which must give the same blocks, finish and usage) and
 * an embeddings body. Every event sequence goes through the response aggregator, which
 * refuses events out of order; any refusal aborts. Seeds are recorded Gemini bodies. */
#include "canon/codecs.h"

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
    sb_buf_free(&out);
    free(text);
    json_decref(schema);
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
    if (sb_embed_gemini.decode((const char *)data, size, &er) == 0 &&
        (er.input_tokens != -1 || er.n > 4096))
        abort();
    for (size_t i = 0; i < er.n; i++)
        if (er.dims[i] && !er.vectors[i])
            abort();
    sb_embed_resp_free(&er);
    return 0;
}

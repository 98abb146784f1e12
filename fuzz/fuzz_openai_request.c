/* OpenAI client dialect: the chat and embeddings request decoders on arbitrary bytes (never
 * crash or leak; a failure is always a 400 naming a parameter or a bad body), then the same
 * bytes read as a program of canonical events driving the stream encoder and the response
 * renderer, whose every output must be well-formed: each chunk one `data: <JSON>` event. */
#include "canon/codecs.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CAP (256 * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_req(const struct sb_canon_req *r)
{
    if (!r->model || r->nmsgs == 0 || !r->msgs)
        abort();
    for (size_t i = 0; i < r->nmsgs; i++) {
        const struct sb_msg *m = &r->msgs[i];
        if (m->role == SB_ROLE_TOOL &&
            (m->nparts != 1 || m->parts[0].type != SB_PART_TOOL_RESULT || !m->parts[0].id))
            abort();
        for (size_t j = 0; j < m->nparts; j++) {
            const struct sb_part *p = &m->parts[j];
            if (p->type == SB_PART_TOOL_CALL && (!p->id || !p->name || !p->arguments))
                abort();
            if ((p->type == SB_PART_TEXT || p->type == SB_PART_THINKING) && !p->text)
                abort();
            if ((p->type == SB_PART_IMAGE || p->type == SB_PART_DOCUMENT) && !p->data && !p->url)
                abort();
        }
    }
}

static void check_err(const struct sb_error *e)
{
    if ((e->status != 400 && e->status != 500) || !e->type || !e->message[0])
        abort();
}

/* Every byte appended since `from` must be whole `data: <JSON or [DONE]>\n\n` events. */
static void check_sse(const struct sb_buf *out, size_t from)
{
    size_t i = from;
    while (i < out->len) {
        if (out->len - i < 8 || memcmp(out->data + i, "data: ", 6) != 0)
            abort();
        const char *end = memmem(out->data + i, out->len - i, "\n\n", 2);
        if (!end)
            abort();
        const char *d = out->data + i + 6;
        size_t dl = (size_t)(end - d);
        if (memchr(d, '\n', dl))
            abort();
        if (!(dl == 6 && memcmp(d, "[DONE]", 6) == 0)) {
            json_t *j = json_loadb(d, dl, JSON_ALLOW_NUL, NULL);
            if (!json_is_object(j))
                abort();
            json_decref(j);
        }
        i = (size_t)(end - out->data) + 2;
    }
}

static void run_events(const uint8_t *data, size_t size)
{
    if (size < 1)
        return;
    void *enc = sb_client_openai.enc_new("fuzz-model", data[0] & 1);
    if (!enc)
        return;
    struct sb_canon_resp resp;
    sb_canon_resp_init(&resp, CAP);
    struct sb_buf out;
    sb_buf_init(&out, CAP);
    struct sb_canon_error ce;
    sb_canon_error_set(&ce, 529, SB_ERRK_OVERLOADED, "overloaded_error", "over\xff");
    size_t i = 1;
    while (i < size) {
        uint8_t op = data[i++];
        size_t tl = 0;
        if (i < size) {
            tl = data[i++] % 24;
            if (tl > size - i)
                tl = size - i;
        }
        char text[32];
        memcpy(text, data + i, tl);
        text[tl] = '\0';
        i += tl;
        struct sb_canon_event ev;
        memset(&ev, 0, sizeof ev);
        sb_usage_init(&ev.usage);
        ev.type = (enum sb_ev_type)(op % 8);
        ev.index = (op >> 3) & 7;
        ev.block = (enum sb_block_kind)((op >> 6) & 3);
        ev.text = text;
        ev.len = tl;
        ev.id = (op & 0x20) ? text : NULL;
        ev.name = text;
        ev.model = (op & 0x40) ? text : NULL;
        ev.finish = (enum sb_finish)(tl % 10);
        ev.usage.input = (int64_t)tl - 3;
        ev.usage.output = (int64_t)op;
        ev.usage.cache_read = (op & 1) ? (int64_t)tl : -1;
        ev.usage.cache_write = (op & 0x10) ? INT64_MAX : -1;
        ev.error = &ce;
        size_t before = out.len;
        int rc = sb_client_openai.enc_event(enc, &ev, &out);
        if (rc == 0)
            check_sse(&out, before);
        else if (out.len != before)
            abort();
        sb_canon_resp_event(&resp, &ev);
    }
    size_t before = out.len;
    if (sb_client_openai.enc_end(enc, &out) == 0)
        check_sse(&out, before);
    sb_client_openai.enc_free(enc);
    sb_buf_reset(&out);
    if (sb_client_openai.render_response(&resp, "fuzz-model", &out) == 0) {
        json_t *j = json_loadb(out.data, out.len, JSON_ALLOW_NUL, NULL);
        if (!json_is_object(j))
            abort();
        json_decref(j);
    }
    sb_buf_free(&out);
    sb_canon_resp_free(&resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sb_canon_req r;
    struct sb_error e;
    memset(&e, 0, sizeof e);
    if (sb_client_openai.decode_request((const char *)data, size, &r, &e) == 0) {
        check_req(&r);
        sb_canon_req_free(&r);
    } else {
        check_err(&e);
        if (r.msgs || r.model)
            abort();
    }
    struct sb_embed_req er;
    memset(&e, 0, sizeof e);
    if (sb_openai_decode_embed_request((const char *)data, size, &er, &e) == 0) {
        if (!er.model || er.ninputs == 0)
            abort();
        sb_embed_req_free(&er);
    } else {
        check_err(&e);
    }
    run_events(data, size);
    return 0;
}

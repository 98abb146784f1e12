/* Fuzz target for the Anthropic Messages client dialect (src/canon/anthropic_client.c).
 *
 * Every input goes through decode_request and sb_anthropic_decode_count_tokens; both must
 * either succeed or fail with a 400 naming an invalid_request_error, and free everything.
 * A request that decodes is turned into a response (its assistant text, thinking and tool
 * calls as blocks) which is rendered whole and as a stream: both must be valid JSON (the
 * strings came through jansson, so they are valid UTF-8), and every stream event line must
 * name its data's type. */
#include "canon/anthropic_client.h"
#include "canon/codecs.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CAP (1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_json(const char *s, size_t n)
{
    json_t *j = json_loadb(s, n, 0, NULL);
    if (!j)
        abort();
    json_decref(j);
}

static void check_sse(const struct sb_buf *b)
{
    size_t i = 0;
    while (i < b->len) {
        const char *ev = b->data + i;
        const char *end = strstr(ev, "\n\n");
        if (!end || strncmp(ev, "event: ", 7) != 0)
            abort();
        const char *nl = memchr(ev, '\n', (size_t)(end - ev));
        if (!nl || strncmp(nl + 1, "data: ", 6) != 0)
            abort();
        json_t *j = json_loadb(nl + 7, (size_t)(end - (nl + 7)), 0, NULL);
        const char *t = json_string_value(json_object_get(j, "type"));
        size_t nlen = (size_t)(nl - ev) - 7;
        if (!t || strlen(t) != nlen || memcmp(t, ev + 7, nlen) != 0)
            abort();
        json_decref(j);
        i = (size_t)(end - b->data) + 2;
    }
}

static void add(struct sb_canon_resp *r, enum sb_block_kind k, const struct sb_part *p)
{
    struct sb_canon_event ev;
    memset(&ev, 0, sizeof ev);
    sb_usage_init(&ev.usage);
    ev.type = SB_EV_BLOCK_START;
    ev.index = (int)r->nblocks;
    ev.block = k;
    ev.id = p->id;
    ev.name = p->name;
    if (sb_canon_resp_event(r, &ev))
        abort();
    ev.id = ev.name = NULL;
    const char *t = k == SB_BLOCK_TOOL_CALL ? p->arguments : p->text;
    ev.type = SB_EV_DELTA;
    ev.text = t ? t : "";
    ev.len = strlen(ev.text);
    if (sb_canon_resp_event(r, &ev))
        abort();
    if (p->signature) {
        ev.type = SB_EV_SIGNATURE;
        ev.text = p->signature;
        ev.len = strlen(p->signature);
        if (sb_canon_resp_event(r, &ev))
            abort();
    }
    ev.type = SB_EV_BLOCK_STOP;
    if (sb_canon_resp_event(r, &ev))
        abort();
}

static int on_event(void *ud, const struct sb_canon_event *ev)
{
    void **x = ud;
    return sb_client_anthropic.enc_event(x[0], ev, x[1]);
}

static void render_back(const struct sb_canon_req *req)
{
    struct sb_canon_resp r;
    sb_canon_resp_init(&r, CAP);
    struct sb_canon_event ev;
    memset(&ev, 0, sizeof ev);
    sb_usage_init(&ev.usage);
    ev.type = SB_EV_START;
    ev.model = req->model;
    if (sb_canon_resp_event(&r, &ev))
        abort();
    for (size_t i = 0; i < req->nmsgs; i++) {
        for (size_t j = 0; j < req->msgs[i].nparts; j++) {
            const struct sb_part *p = &req->msgs[i].parts[j];
            switch (p->type) {
            case SB_PART_TEXT:
                add(&r, SB_BLOCK_TEXT, p);
                break;
            case SB_PART_THINKING:
                add(&r, SB_BLOCK_THINKING, p);
                break;
            case SB_PART_REDACTED_THINKING:
                add(&r, SB_BLOCK_REDACTED_THINKING, p);
                break;
            case SB_PART_TOOL_CALL:
                add(&r, SB_BLOCK_TOOL_CALL, p);
                break;
            default:
                break;
            }
        }
    }
    memset(&ev, 0, sizeof ev);
    sb_usage_init(&ev.usage);
    ev.type = SB_EV_FINISH;
    ev.finish = (enum sb_finish)(req->nstop % (SB_FINISH_ERROR + 1));
    ev.stop_sequence = req->nstop ? req->stop[0] : NULL;
    if (sb_canon_resp_event(&r, &ev))
        abort();
    ev.type = SB_EV_USAGE;
    ev.usage.input = req->max_tokens;
    ev.usage.output = req->top_k;
    if (sb_canon_resp_event(&r, &ev))
        abort();

    struct sb_buf out;
    sb_buf_init(&out, 4 * CAP);
    if (sb_client_anthropic.render_response(&r, "m", &out) != 0)
        abort();
    check_json(out.data, out.len);
    sb_buf_reset(&out);

    void *enc = sb_client_anthropic.enc_new(req->model, false);
    if (!enc)
        abort();
    void *x[2] = {enc, &out};
    if (sb_canon_resp_replay(&r, on_event, x) != 0)
        abort();
    if (sb_client_anthropic.enc_end(enc, &out) != 0)
        abort();
    check_sse(&out);
    sb_client_anthropic.enc_free(enc);
    sb_buf_free(&out);
    sb_canon_resp_free(&r);
}

static void check_err(const struct sb_error *err)
{
    if (err->status != 400 || !err->type || strcmp(err->type, "invalid_request_error") != 0)
        abort();
    if (strnlen(err->message, sizeof err->message) == sizeof err->message)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = (const char *)data;
    struct sb_canon_req req;
    struct sb_error err;
    memset(&err, 0, sizeof err);
    if (sb_client_anthropic.decode_request(body, size, &req, &err) == 0) {
        if (sb_canon_estimate_tokens(&req) < 0 || req.max_tokens < 0)
            abort();
        render_back(&req);
        sb_canon_req_free(&req);
    } else {
        check_err(&err);
    }
    memset(&err, 0, sizeof err);
    if (sb_anthropic_decode_count_tokens(body, size, &req, &err) == 0) {
        if (sb_canon_estimate_tokens(&req) < 0)
            abort();
        sb_canon_req_free(&req);
    } else {
        check_err(&err);
    }

    if (size > 0) {
        struct sb_canon_error e;
        sb_canon_error_set(&e, 400 + data[0], (enum sb_err_kind)(data[0] % (SB_ERRK_SERVER + 1)),
                           NULL, "%.*s", (int)(size > 64 ? 64 : size), body);
        struct sb_buf out;
        sb_buf_init(&out, 4096);
        int status = 0;
        if (sb_client_anthropic.render_error(&e, &out, &status) != 0 || status < 400 ||
            status > 599)
            abort();
        sb_buf_free(&out);
    }
    return 0;
}

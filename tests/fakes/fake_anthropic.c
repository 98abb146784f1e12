/* The Anthropic Messages dialect of the fake provider: POST /v1/messages (and its stream) and
 * /v1/messages/count_tokens. Shapes follow tests/data/fixtures/anthropic/. */
#include "fake.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char sse_type[] = "text/event-stream; charset=utf-8";
/* Byte for byte tests/data/fixtures/anthropic/error_in_stream_overloaded.sse. */
static const char stream_error_event[] =
    "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", "
    "\"message\": \"Overloaded\"}}\n\n";

static bool str_is(struct sb_fake_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

static void send_error(struct sb_fake_call *x, int status, const char *type, const char *message)
{
    struct sb_buf m;
    sb_buf_init(&m, 64 * 1024);
    sb_fake_error_message(x, message, &m);
    char rid[64];
    snprintf(rid, sizeof rid, "req_fake_%" PRIu64, x->id);
    json_t *body = json_pack("{s:s, s:{s:s, s:s%}, s:s}", "type", "error", "error", "type", type,
                             "message", m.data ? m.data : "", m.len, "request_id", rid);
    sb_buf_free(&m);
    sb_fake_plain(x, status, "application/json", body, true);
}

bool sb_fake_anthropic_auth_failed(struct sb_fake_call *x)
{
    sb_buf_printf(&x->resp->headers, "request-id: req_fake_%" PRIu64 "\r\n", x->id);
    const struct sb_fake_str *k = sb_fake_http_header(x->req, "x-api-key");
    if (k)
        x->got_key = *k;
    if (!k || k->n == 0) {
        send_error(x, 401, "authentication_error", "x-api-key header is required");
        return true;
    }
    if (x->d.has_key && (k->n != strlen(x->d.key) || memcmp(k->p, x->d.key, k->n) != 0)) {
        send_error(x, 401, "authentication_error", "invalid x-api-key");
        return true;
    }
    if (!sb_fake_http_header(x->req, "anthropic-version")) {
        send_error(x, 400, "invalid_request_error", "anthropic-version: header is required");
        return true;
    }
    return false;
}

void sb_fake_anthropic_status(struct sb_fake_call *x, int status)
{
    const char *type = status >= 500 ? "api_error" : "invalid_request_error";
    const char *msg = NULL;
    char buf[160];
    switch (status) {
    case 401:
        type = "authentication_error";
        msg = "invalid x-api-key";
        break;
    case 402:
        type = "billing_error";
        break;
    case 403:
        type = "permission_error";
        msg = "Your API key does not have permission to use the specified resource.";
        break;
    case 404:
        type = "not_found_error";
        msg = "model: not-a-model";
        break;
    case 413:
        type = "request_too_large";
        msg = "Request exceeds the maximum allowed number of bytes.";
        break;
    case 429:
        type = "rate_limit_error";
        msg = "This request would exceed the rate limit for your organization of 50 input "
              "tokens per minute.";
        break;
    case 500:
        msg = "Internal server error";
        break;
    case 504:
        type = "timeout_error";
        msg = "Request timed out";
        break;
    case 529:
        type = "overloaded_error";
        msg = "Overloaded";
        break;
    default:
        break;
    }
    if (strcmp(x->d.code, "context_length_exceeded") == 0)
        msg = "prompt is too long: 210000 tokens > 200000 maximum";
    else if (strcmp(x->d.code, "insufficient_quota") == 0)
        msg = "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
              "Billing to upgrade or purchase credits.";
    if (!msg) {
        snprintf(buf, sizeof buf, "fake-provider: injected status %d%s%s%s", status,
                 x->d.code[0] ? " (" : "", x->d.code, x->d.code[0] ? ")" : "");
        msg = buf;
    }
    send_error(x, status, type, msg);
}

/* ---- request ---- */

static int read_request(struct sb_fake_call *x, json_t *root, struct sb_fake_input *in)
{
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0) {
        send_error(x, 400, "invalid_request_error", "messages: Field required");
        return -1;
    }
    const char *model = json_string_value(json_object_get(root, "model"));
    if (!model) {
        send_error(x, 400, "invalid_request_error", "model: Field required");
        return -1;
    }
    snprintf(in->model, sizeof in->model, "%s", model);
    in->stream = json_is_true(json_object_get(root, "stream"));
    in->prompt_words =
        sb_fake_json_words(msgs) + sb_fake_json_words(json_object_get(root, "system"));
    if (json_is_string(json_object_get(root, "system")))
        in->prompt_words +=
            sb_fake_count_words(json_string_value(json_object_get(root, "system")),
                                json_string_length(json_object_get(root, "system")));

    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    json_t *content = json_object_get(last, "content");
    if (role && strcmp(role, "user") == 0) {
        if (json_is_string(content)) {
            sb_fake_keep_text(&in->user_text, json_string_value(content),
                              json_string_length(content));
            in->last_is_user_text = true;
        } else {
            size_t i;
            json_t *b;
            json_array_foreach(content, i, b)
            {
                const char *type = json_string_value(json_object_get(b, "type"));
                if (type && strcmp(type, "tool_result") == 0 && !in->last_is_result) {
                    in->last_is_result = true;
                    sb_fake_result_text(in, json_object_get(b, "content"));
                } else if (type && strcmp(type, "text") == 0 && !in->last_is_user_text) {
                    json_t *t = json_object_get(b, "text");
                    sb_fake_keep_text(&in->user_text,
                                      json_string_value(t) ? json_string_value(t) : "",
                                      json_string_length(t));
                    in->last_is_user_text = true;
                }
            }
        }
    }
    json_t *tools = json_object_get(root, "tools");
    json_t *choice = json_object_get(root, "tool_choice");
    const char *ctype = json_string_value(json_object_get(choice, "type"));
    if (json_array_size(tools) > 0 && !(ctype && strcmp(ctype, "none") == 0)) {
        const char *want = ctype && strcmp(ctype, "tool") == 0
                               ? json_string_value(json_object_get(choice, "name"))
                               : NULL;
        json_t *pick = json_array_get(tools, 0);
        size_t i;
        json_t *t;
        json_array_foreach(tools, i, t)
        {
            const char *name = json_string_value(json_object_get(t, "name"));
            if (want && name && strcmp(want, name) == 0)
                pick = t;
        }
        const char *name = json_string_value(json_object_get(pick, "name"));
        if (name) {
            in->tools_on = true;
            sb_fake_input_tool(in, name, json_object_get(pick, "input_schema"));
        }
    }
    return 0;
}

/* ---- response ---- */

static json_t *usage_json(const struct sb_fake_plan *p, bool start)
{
    return json_pack("{s:I, s:i, s:I, s:I}", "input_tokens", (json_int_t)p->prompt_tokens,
                     "cache_creation_input_tokens", 0, "cache_read_input_tokens",
                     (json_int_t)p->cached_tokens, "output_tokens",
                     (json_int_t)(start ? 1 : p->output_tokens + p->thinking_tokens));
}

static void reply_json(struct sb_fake_call *x, const struct sb_fake_input *in,
                       const struct sb_fake_plan *p)
{
    char id[64], sig[64];
    snprintf(id, sizeof id, "msg_fake_%" PRIu64, x->id);
    snprintf(sig, sizeof sig, "sig-fake-%" PRIu64, x->id);
    json_t *content = json_array();
    if (p->thinking)
        json_array_append_new(content, json_pack("{s:s, s:s, s:s}", "type", "thinking", "thinking",
                                                 SB_FAKE_THINKING_TEXT, "signature", sig));
    if (p->tool_call) {
        char tid[64];
        snprintf(tid, sizeof tid, "toolu_fake_%" PRIu64, x->id);
        json_t *input = json_loadb(p->args.data, p->args.len, 0, NULL);
        json_array_append_new(content, json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id",
                                                 tid, "name", p->tool_name, "input",
                                                 input ? input : json_object()));
    } else {
        json_array_append_new(
            content, json_pack("{s:s, s:s%}", "type", "text", "text", p->text.data, p->text.len));
    }
    json_t *body = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:n, s:o}", "id", id, "type",
                             "message", "role", "assistant", "model", in->model, "content", content,
                             "stop_reason", p->tool_call ? "tool_use" : "end_turn", "stop_sequence",
                             "usage", usage_json(p, false));
    sb_fake_plain(x, 200, "application/json", body, false);
    if (x->d.malformed && x->resp->body.len > 1)
        x->resp->body.len /= 2;
}

/* After the first delta of a stream: the in-stream error, or a broken event. Returns 1 when
 * the stream ends there. */
static int fault(struct sb_fake_call *x, size_t *deltas, int *rc)
{
    if ((*deltas)++ != 0)
        return 0;
    if (x->d.stream_error) {
        *rc |= sb_buf_append_str(&x->resp->body, stream_error_event);
        *rc |= sb_fake_resp_end_event(x->resp);
        return 1;
    }
    if (x->d.malformed) {
        *rc |= sb_buf_append_str(&x->resp->body,
                                 "event: content_block_delta\ndata: {\"type\":\"content_block_"
                                 "delta\",\"index\":0,\"delta\":{\"type\":\"text_del\n\n");
        *rc |= sb_fake_resp_end_event(x->resp);
    }
    return 0;
}

static int ev(struct sb_fake_call *x, const char *name, json_t *data)
{
    return sb_fake_sse(x, name, data, "\n\n");
}

static int delta(struct sb_fake_call *x, int index, const char *type, const char *key,
                 const char *s, size_t n)
{
    return ev(x, "content_block_delta",
              json_pack("{s:s, s:i, s:{s:s, s:s%}}", "type", "content_block_delta", "index", index,
                        "delta", "type", type, key, s, n));
}

static int reply_stream(struct sb_fake_call *x, const struct sb_fake_input *in,
                        const struct sb_fake_plan *p)
{
    x->resp->chunked = true;
    x->resp->content_type = sse_type;
    char id[64], sig[64];
    snprintf(id, sizeof id, "msg_fake_%" PRIu64, x->id);
    snprintf(sig, sizeof sig, "sig-fake-%" PRIu64, x->id);
    int rc = ev(x, "message_start",
                json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:[], s:n, s:n, s:o}}", "type",
                          "message_start", "message", "id", id, "type", "message", "role",
                          "assistant", "model", in->model, "content", "stop_reason",
                          "stop_sequence", "usage", usage_json(p, true)));
    int index = 0;
    size_t deltas = 0;
    bool pinged = false;
    if (p->thinking) {
        rc |= ev(x, "content_block_start",
                 json_pack("{s:s, s:i, s:{s:s, s:s, s:s}}", "type", "content_block_start", "index",
                           index, "content_block", "type", "thinking", "thinking", "", "signature",
                           ""));
        rc |= ev(x, "ping", json_pack("{s:s}", "type", "ping"));
        pinged = true;
        const char *t = SB_FAKE_THINKING_TEXT;
        size_t n = strlen(t), pos = 0;
        while (pos < n && !rc) {
            size_t e = sb_fake_next_delta(t, n, pos);
            rc |= delta(x, index, "thinking_delta", "thinking", t + pos, e - pos);
            if (fault(x, &deltas, &rc))
                return rc;
            pos = e;
        }
        rc |= delta(x, index, "signature_delta", "signature", sig, strlen(sig));
        rc |= ev(x, "content_block_stop",
                 json_pack("{s:s, s:i}", "type", "content_block_stop", "index", index));
        index++;
    }
    if (p->tool_call) {
        char tid[64];
        snprintf(tid, sizeof tid, "toolu_fake_%" PRIu64, x->id);
        rc |= ev(x, "content_block_start",
                 json_pack("{s:s, s:i, s:{s:s, s:s, s:s, s:{}}}", "type", "content_block_start",
                           "index", index, "content_block", "type", "tool_use", "id", tid, "name",
                           p->tool_name, "input"));
        if (!pinged)
            rc |= ev(x, "ping", json_pack("{s:s}", "type", "ping"));
        rc |= delta(x, index, "input_json_delta", "partial_json", "", 0);
        size_t pos = 0;
        while (pos < p->args.len && !rc) {
            size_t e = sb_fake_args_piece(p, pos);
            rc |= delta(x, index, "input_json_delta", "partial_json", p->args.data + pos, e - pos);
            if (fault(x, &deltas, &rc))
                return rc;
            pos = e;
        }
    } else {
        rc |= ev(x, "content_block_start",
                 json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_start", "index",
                           index, "content_block", "type", "text", "text", ""));
        if (!pinged)
            rc |= ev(x, "ping", json_pack("{s:s}", "type", "ping"));
        size_t pos = 0;
        while (pos < p->text.len && !rc) {
            size_t e = sb_fake_next_delta(p->text.data, p->text.len, pos);
            rc |= delta(x, index, "text_delta", "text", p->text.data + pos, e - pos);
            if (fault(x, &deltas, &rc))
                return rc;
            pos = e;
        }
    }
    rc |= ev(x, "content_block_stop",
             json_pack("{s:s, s:i}", "type", "content_block_stop", "index", index));
    rc |= ev(x, "message_delta",
             json_pack("{s:s, s:{s:s, s:n}, s:{s:I}}", "type", "message_delta", "delta",
                       "stop_reason", p->tool_call ? "tool_use" : "end_turn", "stop_sequence",
                       "usage", "output_tokens",
                       (json_int_t)(p->output_tokens + p->thinking_tokens)));
    rc |= ev(x, "message_stop", json_pack("{s:s}", "type", "message_stop"));
    return rc;
}

static void handle_messages(struct sb_fake_call *x, bool count_only)
{
    json_t *root = json_loadb(x->req->body ? x->req->body : "", x->req->body_len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        send_error(x, 400, "invalid_request_error", "There was an error parsing the body.");
        return;
    }
    struct sb_fake_input in;
    sb_fake_input_init(&in);
    struct sb_fake_plan p;
    memset(&p, 0, sizeof p);
    if (read_request(x, root, &in) != 0)
        goto out;
    if (count_only) {
        uint64_t n = in.prompt_words ? in.prompt_words : 1;
        sb_fake_plain(x, 200, "application/json", json_pack("{s:I}", "input_tokens", (json_int_t)n),
                      false);
        goto out;
    }
    if (!json_is_integer(json_object_get(root, "max_tokens"))) {
        send_error(x, 400, "invalid_request_error", "max_tokens: Field required");
        goto out;
    }
    int rc = sb_fake_plan_make(x, &in, &p);
    if (!rc) {
        if (in.stream)
            rc = reply_stream(x, &in, &p);
        else
            reply_json(x, &in, &p);
    }
    if (rc)
        send_error(x, 500, "api_error", "fake-provider: response too large");
out:
    sb_fake_plan_free(&p);
    sb_fake_input_free(&in);
    json_decref(root);
}

void sb_fake_anthropic_route(struct sb_fake_call *x)
{
    struct sb_fake_str p = x->path;
    while (p.n > 1 && p.p[p.n - 1] == '/')
        p.n--;
    bool post = str_is(x->req->method, "POST");
    if (post && p.n >= 13 && memcmp(p.p + p.n - 13, "/count_tokens", 13) == 0)
        handle_messages(x, true);
    else if (post)
        handle_messages(x, false);
    else
        send_error(x, 405, "invalid_request_error", "Method not allowed");
}

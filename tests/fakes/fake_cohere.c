/* The Cohere v2 dialect of the fake provider: POST /v2/chat (and its typed SSE stream) and
 * POST /v2/embed. */
#include "fake.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_DIMS 8
#define MAX_TEXTS    2048

static void send_error(struct sb_fake_call *x, int status, const char *message)
{
    struct sb_buf m;
    sb_buf_init(&m, 64 * 1024);
    sb_fake_error_message(x, message, &m);
    sb_fake_plain(x, status, "application/json",
                  json_pack("{s:s%}", "message", m.data ? m.data : "", m.len), false);
    sb_buf_free(&m);
}

bool sb_fake_cohere_auth_failed(struct sb_fake_call *x)
{
    const struct sb_fake_str *a = sb_fake_http_header(x->req, "authorization");
    if (a && a->n > 7 && strncasecmp(a->p, "bearer ", 7) == 0)
        x->got_key = (struct sb_fake_str){a->p + 7, a->n - 7};
    if (!x->got_key.n) {
        send_error(x, 401, "no api key supplied");
        return true;
    }
    if (x->d.has_key &&
        (x->got_key.n != strlen(x->d.key) || memcmp(x->got_key.p, x->d.key, x->got_key.n) != 0)) {
        send_error(x, 401, "invalid api token");
        return true;
    }
    return false;
}

void sb_fake_cohere_status(struct sb_fake_call *x, int status)
{
    const char *msg = NULL;
    char buf[160];
    switch (status) {
    case 400:
        msg = "invalid request: message must not be empty.";
        break;
    case 401:
        msg = "invalid api token";
        break;
    case 404:
        msg = "model 'not-a-model' not found, make sure the correct model ID was used and that "
              "you have access to the model.";
        break;
    case 429:
        msg = "You are using a Trial key, which is limited to 20 API calls / minute.";
        break;
    case 500:
        msg = "internal server error, this has been reported to our developers.";
        break;
    case 503:
        msg = "service unavailable";
        break;
    default:
        break;
    }
    if (strcmp(x->d.code, "context_length_exceeded") == 0)
        msg = "invalid request: prompt is too long: maximum context length exceeded.";
    if (!msg) {
        snprintf(buf, sizeof buf, "fake-provider: injected status %d", status);
        msg = buf;
    }
    send_error(x, status, msg);
}

static void read_request(json_t *root, struct sb_fake_input *in)
{
    json_t *msgs = json_object_get(root, "messages");
    in->prompt_words = sb_fake_json_words(msgs);
    in->stream = json_is_true(json_object_get(root, "stream"));
    const char *model = json_string_value(json_object_get(root, "model"));
    snprintf(in->model, sizeof in->model, "%s", model ? model : "");
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    json_t *content = json_object_get(last, "content");
    if (role && strcmp(role, "tool") == 0) {
        in->last_is_result = true;
        /* [{"type":"document","document":{"data":"..."}}] carries the result as a string. */
        json_t *doc =
            json_object_get(json_object_get(json_array_get(content, 0), "document"), "data");
        sb_fake_result_text(in, doc ? doc : content);
    } else if (role && strcmp(role, "user") == 0) {
        if (json_is_string(content)) {
            sb_fake_keep_text(&in->user_text, json_string_value(content),
                              json_string_length(content));
            in->last_is_user_text = true;
        } else {
            size_t i;
            json_t *part;
            json_array_foreach(content, i, part)
            {
                json_t *t = json_object_get(part, "text");
                if (json_is_string(t) && !in->last_is_user_text) {
                    sb_fake_keep_text(&in->user_text, json_string_value(t), json_string_length(t));
                    in->last_is_user_text = true;
                }
            }
        }
    }
    const char *choice = json_string_value(json_object_get(root, "tool_choice"));
    json_t *tools = json_object_get(root, "tools");
    if (json_array_size(tools) > 0 && !(choice && strcasecmp(choice, "NONE") == 0)) {
        json_t *fn = json_object_get(json_array_get(tools, 0), "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (name) {
            in->tools_on = true;
            sb_fake_input_tool(in, name, json_object_get(fn, "parameters"));
        }
    }
}

static json_t *usage_json(const struct sb_fake_plan *p)
{
    return json_pack("{s:{s:I, s:I}, s:{s:I, s:I}}", "billed_units", "input_tokens",
                     (json_int_t)p->prompt_tokens, "output_tokens", (json_int_t)p->output_tokens,
                     "tokens", "input_tokens", (json_int_t)p->prompt_tokens, "output_tokens",
                     (json_int_t)p->output_tokens);
}

static int ev(struct sb_fake_call *x, const char *type, json_t *data)
{
    json_object_set_new(data, "type", json_string(type));
    /* "type" first, as Cohere prints it. */
    json_t *ordered = json_pack("{s:s}", "type", type);
    json_object_update(ordered, data);
    json_decref(data);
    return sb_fake_sse(x, type, ordered, "\n\n");
}

static int fault(struct sb_fake_call *x, size_t *deltas, int *rc)
{
    if ((*deltas)++ != 0)
        return 0;
    if (x->d.stream_error) {
        *rc |= sb_buf_append_str(&x->resp->body,
                                 "event: error\ndata: {\"type\":\"error\",\"message\":\"internal "
                                 "server error, this has been reported to our developers.\"}\n\n");
        *rc |= sb_fake_resp_end_event(x->resp);
        return 1;
    }
    if (x->d.malformed) {
        *rc |= sb_buf_append_str(&x->resp->body, "event: content-delta\ndata: {\"type\":\"content-"
                                                 "delta\",\"index\":0,\"delta\":{\"mess\n\n");
        *rc |= sb_fake_resp_end_event(x->resp);
    }
    return 0;
}

static int reply_stream(struct sb_fake_call *x, const struct sb_fake_plan *p)
{
    x->resp->chunked = true;
    x->resp->content_type = "text/event-stream";
    char id[64];
    snprintf(id, sizeof id, "fake-%" PRIu64, x->id);
    int rc =
        ev(x, "message-start",
           json_pack("{s:s, s:{s:{s:s, s:[], s:s, s:[], s:[]}}}", "id", id, "delta", "message",
                     "role", "assistant", "content", "tool_plan", "", "tool_calls", "citations"));
    size_t deltas = 0;
    if (p->tool_call) {
        char plan[320], tid[64];
        snprintf(plan, sizeof plan, "I will use %s.", p->tool_name);
        snprintf(tid, sizeof tid, "cohere_fake_%" PRIu64, x->id);
        size_t n = strlen(plan), pos = 0;
        while (pos < n && !rc) {
            size_t e = sb_fake_next_delta(plan, n, pos);
            rc |= ev(
                x, "tool-plan-delta",
                json_pack("{s:{s:{s:s%}}}", "delta", "message", "tool_plan", plan + pos, e - pos));
            pos = e;
        }
        rc |= ev(x, "tool-call-start",
                 json_pack("{s:i, s:{s:{s:{s:s, s:s, s:{s:s, s:s}}}}}", "index", 0, "delta",
                           "message", "tool_calls", "id", tid, "type", "function", "function",
                           "name", p->tool_name, "arguments", ""));
        pos = 0;
        while (pos < p->args.len && !rc) {
            size_t e = sb_fake_args_piece(p, pos);
            rc |= ev(x, "tool-call-delta",
                     json_pack("{s:i, s:{s:{s:{s:{s:s%}}}}}", "index", 0, "delta", "message",
                               "tool_calls", "function", "arguments", p->args.data + pos, e - pos));
            if (fault(x, &deltas, &rc))
                return rc;
            pos = e;
        }
        rc |= ev(x, "tool-call-end", json_pack("{s:i}", "index", 0));
    } else {
        rc |= ev(x, "content-start",
                 json_pack("{s:i, s:{s:{s:{s:s, s:s}}}}", "index", 0, "delta", "message", "content",
                           "type", "text", "text", ""));
        size_t pos = 0;
        while (pos < p->text.len && !rc) {
            size_t e = sb_fake_next_delta(p->text.data, p->text.len, pos);
            rc |= ev(x, "content-delta",
                     json_pack("{s:i, s:{s:{s:{s:s%}}}}", "index", 0, "delta", "message", "content",
                               "text", p->text.data + pos, e - pos));
            if (fault(x, &deltas, &rc))
                return rc;
            pos = e;
        }
        rc |= ev(x, "content-end", json_pack("{s:i}", "index", 0));
    }
    rc |= ev(x, "message-end",
             json_pack("{s:{s:s, s:o}}", "delta", "finish_reason",
                       p->tool_call ? "TOOL_CALL" : "COMPLETE", "usage", usage_json(p)));
    return rc;
}

static void reply_json(struct sb_fake_call *x, const struct sb_fake_plan *p)
{
    char id[64];
    snprintf(id, sizeof id, "fake-%" PRIu64, x->id);
    json_t *msg;
    if (p->tool_call) {
        char plan[320], tid[64];
        snprintf(plan, sizeof plan, "I will use %s.", p->tool_name);
        snprintf(tid, sizeof tid, "cohere_fake_%" PRIu64, x->id);
        msg = json_pack("{s:s, s:s, s:[{s:s, s:s, s:{s:s, s:s%}}]}", "role", "assistant",
                        "tool_plan", plan, "tool_calls", "id", tid, "type", "function", "function",
                        "name", p->tool_name, "arguments", p->args.data, p->args.len);
    } else {
        msg = json_pack("{s:s, s:[{s:s, s:s%}]}", "role", "assistant", "content", "type", "text",
                        "text", p->text.data, p->text.len);
    }
    sb_fake_plain(x, 200, "application/json",
                  json_pack("{s:s, s:o, s:s, s:o}", "id", id, "message", msg, "finish_reason",
                            p->tool_call ? "TOOL_CALL" : "COMPLETE", "usage", usage_json(p)),
                  false);
    if (x->d.malformed && x->resp->body.len > 1)
        x->resp->body.len /= 2;
}

static void chat(struct sb_fake_call *x, json_t *root)
{
    if (json_array_size(json_object_get(root, "messages")) == 0) {
        send_error(x, 400, "invalid request: messages must not be empty.");
        return;
    }
    if (!json_is_string(json_object_get(root, "model"))) {
        send_error(x, 400, "invalid request: model must be specified.");
        return;
    }
    struct sb_fake_input in;
    sb_fake_input_init(&in);
    read_request(root, &in);
    struct sb_fake_plan p;
    int rc = sb_fake_plan_make(x, &in, &p);
    if (!rc && in.stream)
        rc = reply_stream(x, &p);
    else if (!rc)
        reply_json(x, &p);
    if (rc)
        send_error(x, 500, "fake-provider: response too large");
    sb_fake_plan_free(&p);
    sb_fake_input_free(&in);
}

static void embed(struct sb_fake_call *x, json_t *root)
{
    json_t *texts = json_object_get(root, "texts");
    if (!json_is_array(texts) || json_array_size(texts) == 0 ||
        json_array_size(texts) > MAX_TEXTS) {
        send_error(x, 400, "invalid request: texts must be a non-empty list of strings.");
        return;
    }
    json_t *d = json_object_get(root, "output_dimension");
    json_int_t dims = json_is_integer(d) ? json_integer_value(d) : DEFAULT_DIMS;
    if (dims < 1 || dims > SB_FAKE_MAX_DIMENSIONS) {
        send_error(x, 400, "invalid request: output_dimension is not supported.");
        return;
    }
    struct sb_buf *b = &x->resp->body;
    uint64_t words = 0;
    int rc = sb_buf_printf(b, "{\"id\":\"fake-%" PRIu64 "\",\"embeddings\":{\"float\":[", x->id);
    size_t i;
    json_t *t;
    json_array_foreach(texts, i, t)
    {
        const char *s = json_string_value(t) ? json_string_value(t) : "";
        size_t n = json_string_length(t);
        words += sb_fake_count_words(s, n);
        if (i)
            rc |= sb_buf_append_char(b, ',');
        rc |= sb_fake_embedding_append(b, sb_fake_hash(SB_FAKE_HASH_SEED, s, n), (int)dims, false);
    }
    rc |= sb_buf_append_str(b, "]},\"texts\":");
    rc |= sb_fake_put_json(b, json_incref(texts));
    rc |= sb_buf_printf(b,
                        ",\"meta\":{\"api_version\":{\"version\":\"2\"},\"billed_units\":{"
                        "\"input_tokens\":%" PRIu64 "}},\"response_type\":\"embeddings_by_type\"}",
                        words ? words : 1);
    if (rc)
        send_error(x, 500, "fake-provider: response too large");
    else if (x->d.malformed && b->len > 1)
        b->len /= 2;
}

void sb_fake_cohere_route(struct sb_fake_call *x)
{
    struct sb_fake_str p = x->path;
    while (p.n > 1 && p.p[p.n - 1] == '/')
        p.n--;
    json_t *root = json_loadb(x->req->body ? x->req->body : "", x->req->body_len, 0, NULL);
    if (!json_is_object(root))
        send_error(x, 400, "invalid request: could not parse the JSON body.");
    else if (p.n >= 6 && memcmp(p.p + p.n - 6, "/embed", 6) == 0)
        embed(x, root);
    else
        chat(x, root);
    json_decref(root);
}

/* Cohere v2 chat and embed, provider side (protocols README §6.2; Cohere's v2 API reference
 * for /v2/chat, its streaming events and /v2/embed).
 *
 * Cohere's answer has content items, a `tool_plan` (the model's visible note before it calls
 * tools) and tool calls. The decoders give THINKING blocks for `thinking` items, TEXT blocks
 * for text and for the tool plan, and one TOOL_CALL block per call. The encoder reverses the
 * tool plan: the text of an assistant turn that calls tools travels as its `tool_plan`. */
#include "canon/codecs.h"
#include "http/sse.h"

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ shared helpers */

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* A token count: Cohere's schema types them as numbers, so 12.0 is accepted as 12. */
static int64_t jcount(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v))
        return json_integer_value(v) < 0 ? -1 : (int64_t)json_integer_value(v);
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d >= 0 && d < 9007199254740992.0)
            return (int64_t)d;
    }
    return -1;
}

static int set_new(json_t *o, const char *key, json_t *v)
{
    if (!v)
        return -1;
    return json_object_set_new(o, key, v);
}

/* ------------------------------------------------------------------ event synthesis */

/* Text of a JSON string value, through the shared block synthesis (canon.h). */
static int synth_text(struct sb_canon_synth *s, enum sb_block_kind kind, const json_t *v)
{
    return sb_canon_synth_text(s, kind, json_string_value(v), json_string_length(v));
}

/* ------------------------------------------------------------------ encode_request */

static void set_unsupported(struct sb_error *err, const char *param)
{
    sb_error_set(err, 400, "invalid_request_error", "unsupported_parameter", param,
                 "'%s' is not supported by Cohere models", param);
}

static void set_oom(struct sb_error *err)
{
    sb_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
}

static json_t *joined_text(const struct sb_part *parts, size_t n, bool *any)
{
    struct sb_buf b;
    sb_buf_init(&b, SIZE_MAX / 2);
    *any = false;
    for (size_t i = 0; i < n; i++) {
        if (parts[i].type != SB_PART_TEXT || !parts[i].text)
            continue;
        *any = true;
        if (sb_buf_append_str(&b, parts[i].text) != 0) {
            sb_buf_free(&b);
            return NULL;
        }
    }
    json_t *s = json_stringn(b.data ? b.data : "", b.len);
    sb_buf_free(&b);
    return s;
}

static json_t *image_part(const struct sb_part *p)
{
    json_t *url;
    if (p->url) {
        url = json_string(p->url);
    } else {
        const char *mt = p->media_type ? p->media_type : "image/png";
        struct sb_buf b;
        sb_buf_init(&b, SIZE_MAX / 2);
        if (sb_buf_append_str(&b, "data:") || sb_buf_append_str(&b, mt) ||
            sb_buf_append_str(&b, ";base64,") || sb_buf_append_str(&b, p->data)) {
            sb_buf_free(&b);
            return NULL;
        }
        url = json_stringn(b.data, b.len);
        sb_buf_free(&b);
    }
    json_t *iu = json_object();
    if (!url || !iu) {
        json_decref(url);
        json_decref(iu);
        return NULL;
    }
    json_object_set_new(iu, "url", url);
    if (p->detail)
        set_new(iu, "detail", json_string(p->detail));
    return json_pack("{s:s,s:o}", "type", "image_url", "image_url", iu);
}

/* Whether an assistant turn before message `upto` made a call with this id. */
static bool call_known(const struct sb_canon_req *req, size_t upto, const char *id)
{
    for (size_t i = 0; i < upto; i++) {
        const struct sb_msg *m = &req->msgs[i];
        if (m->role != SB_ROLE_ASSISTANT)
            continue;
        for (size_t k = 0; k < m->nparts; k++)
            if (m->parts[k].type == SB_PART_TOOL_CALL && m->parts[k].id &&
                strcmp(m->parts[k].id, id) == 0)
                return true;
    }
    return false;
}

/* A user or tool turn: its tool results first, as role:"tool" messages (Cohere pairs them
 * with the calls of the previous assistant turn), then the rest of the turn as one user
 * message. Images a result held follow in that user message (a tool message carries text
 * and documents only). */
static int encode_user(const struct sb_canon_req *req, json_t *msgs, size_t mi,
                       struct sb_error *err)
{
    const struct sb_msg *m = &req->msgs[mi];
    json_t *rest = json_array();
    if (!rest)
        goto oom;
    size_t ntext = 0, nother = 0;
    const char *only_text = NULL;
    for (size_t i = 0; i < m->nparts; i++) {
        const struct sb_part *p = &m->parts[i];
        switch (p->type) {
        case SB_PART_TOOL_RESULT: {
            if (!p->id || !call_known(req, mi, p->id)) {
                sb_error_set(err, 400, "invalid_request_error", "invalid_value",
                             "messages.tool_call_id",
                             "messages[%zu].tool_call_id: no earlier assistant tool call "
                             "has the id '%.64s'",
                             mi, p->id ? p->id : "");
                goto fail;
            }
            bool any;
            json_t *content = joined_text(p->parts, p->nparts, &any);
            json_t *tm = json_object();
            if (!content || !tm || json_array_append_new(msgs, tm) != 0) {
                json_decref(content);
                json_decref(tm);
                goto oom;
            }
            set_new(tm, "role", json_string("tool"));
            set_new(tm, "tool_call_id", json_string(p->id));
            json_object_set_new(tm, "content", content);
            for (size_t k = 0; k < p->nparts; k++) {
                if (p->parts[k].type != SB_PART_IMAGE || (!p->parts[k].url && !p->parts[k].data))
                    continue;
                json_t *ip = image_part(&p->parts[k]);
                if (!ip || json_array_append_new(rest, ip) != 0)
                    goto oom;
                nother++;
            }
            break;
        }
        case SB_PART_TEXT: {
            json_t *tp = json_pack("{s:s,s:s}", "type", "text", "text", p->text ? p->text : "");
            if (!tp || json_array_append_new(rest, tp) != 0)
                goto oom;
            ntext++;
            only_text = p->text ? p->text : "";
            break;
        }
        case SB_PART_IMAGE: {
            if (!p->url && !p->data) {
                sb_error_set(err, 400, "invalid_request_error", "invalid_value", "messages",
                             "messages[%zu]: an image needs data or a url", mi);
                goto fail;
            }
            json_t *ip = image_part(p);
            if (!ip || json_array_append_new(rest, ip) != 0)
                goto oom;
            nother++;
            break;
        }
        case SB_PART_DOCUMENT:
            set_unsupported(err, "document");
            goto fail;
        default:
            break;
        }
    }
    if (ntext + nother == 0) {
        json_decref(rest);
        if (m->nparts > 0)
            return 0;
        json_t *um = json_pack("{s:s,s:s}", "role", "user", "content", "");
        if (!um || json_array_append_new(msgs, um) != 0)
            goto oom_norest;
        return 0;
    }
    json_t *um = json_object();
    if (!um || json_array_append_new(msgs, um) != 0)
        goto oom;
    set_new(um, "role", json_string("user"));
    if (ntext == 1 && nother == 0) {
        set_new(um, "content", json_string(only_text));
        json_decref(rest);
    } else {
        json_object_set_new(um, "content", rest);
    }
    return 0;
oom:
    json_decref(rest);
oom_norest:
    set_oom(err);
    return -1;
fail:
    json_decref(rest);
    return -1;
}

static int encode_assistant(json_t *msgs, const struct sb_msg *m)
{
    bool any;
    json_t *text = joined_text(m->parts, m->nparts, &any);
    json_t *am = json_object();
    json_t *calls = json_array();
    if (!text || !am || !calls || json_array_append_new(msgs, am) != 0) {
        json_decref(text);
        json_decref(am);
        json_decref(calls);
        return -1;
    }
    set_new(am, "role", json_string("assistant"));
    for (size_t i = 0; i < m->nparts; i++) {
        const struct sb_part *p = &m->parts[i];
        if (p->type != SB_PART_TOOL_CALL)
            continue;
        json_t *tc = json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", p->id ? p->id : "", "type",
                               "function", "function", "name", p->name ? p->name : "", "arguments",
                               p->arguments ? p->arguments : "{}");
        if (!tc || json_array_append_new(calls, tc) != 0) {
            json_decref(text);
            json_decref(calls);
            return -1;
        }
    }
    if (json_array_size(calls) > 0) {
        json_object_set_new(am, "tool_calls", calls);
        if (any)
            json_object_set_new(am, "tool_plan", text);
        else
            json_decref(text);
    } else {
        json_decref(calls);
        if (any)
            set_new(am, "content", json_pack("[{s:s,s:o}]", "type", "text", "text", text));
        else
            json_decref(text);
    }
    return 0;
}

static json_t *tool_json(const struct sb_tool *t)
{
    json_t *fn = json_object();
    if (!fn)
        return NULL;
    set_new(fn, "name", json_string(t->name ? t->name : ""));
    if (t->description)
        set_new(fn, "description", json_string(t->description));
    if (t->parameters)
        json_object_set(fn, "parameters", t->parameters);
    else
        set_new(fn, "parameters", json_pack("{s:s,s:{}}", "type", "object", "properties"));
    return json_pack("{s:s,s:o}", "type", "function", "function", fn);
}

static int encode_tools(const struct sb_canon_req *req, json_t *root, struct sb_error *err)
{
    if (req->ntools == 0) {
        if (req->tool_choice == SB_TC_REQUIRED || req->tool_choice == SB_TC_NAMED) {
            sb_error_set(err, 400, "invalid_request_error", "invalid_value", "tool_choice",
                         "'tool_choice' requires tools");
            return -1;
        }
        return 0;
    }
    json_t *tools = json_array();
    if (!tools || json_object_set_new(root, "tools", tools) != 0)
        goto oom;
    bool found = false;
    for (size_t i = 0; i < req->ntools; i++) {
        const struct sb_tool *t = &req->tools[i];
        /* Cohere has no "this tool" choice: a named choice sends only that tool, required. */
        if (req->tool_choice == SB_TC_NAMED &&
            (!t->name || !req->tool_choice_name || strcmp(t->name, req->tool_choice_name) != 0))
            continue;
        found = true;
        json_t *tj = tool_json(t);
        if (!tj || json_array_append_new(tools, tj) != 0)
            goto oom;
    }
    if (req->tool_choice == SB_TC_NAMED && !found) {
        sb_error_set(err, 400, "invalid_request_error", "invalid_value", "tool_choice",
                     "'tool_choice' names a tool that is not in 'tools'");
        return -1;
    }
    if (req->tool_choice == SB_TC_REQUIRED || req->tool_choice == SB_TC_NAMED)
        set_new(root, "tool_choice", json_string("REQUIRED"));
    else if (req->tool_choice == SB_TC_NONE)
        set_new(root, "tool_choice", json_string("NONE"));
    return 0;
oom:
    set_oom(err);
    return -1;
}

static int encode_request(const struct sb_canon_req *req, const char *model, struct sb_buf *out,
                          struct sb_error *err)
{
    memset(err, 0, sizeof *err);
    if (req->n > 1) {
        set_unsupported(err, "n");
        return -1;
    }
    if (req->logprobs) {
        set_unsupported(err, "logprobs");
        return -1;
    }
    json_t *root = json_object();
    json_t *msgs = json_array();
    if (!root || !msgs) {
        json_decref(root);
        json_decref(msgs);
        set_oom(err);
        return -1;
    }
    json_object_set_new(root, "model", json_string(model ? model : (req->model ? req->model : "")));
    json_object_set_new(root, "messages", msgs);
    for (size_t i = 0; i < req->nmsgs; i++) {
        const struct sb_msg *m = &req->msgs[i];
        if (m->role == SB_ROLE_SYSTEM) {
            bool any;
            json_t *t = joined_text(m->parts, m->nparts, &any);
            json_t *sm = t ? json_pack("{s:s,s:o}", "role", "system", "content", t) : NULL;
            if (!sm || json_array_append_new(msgs, sm) != 0)
                goto oom;
        } else if (m->role == SB_ROLE_ASSISTANT) {
            if (encode_assistant(msgs, m) != 0)
                goto oom;
        } else if (encode_user(req, msgs, i, err) != 0) {
            goto fail;
        }
    }
    if (encode_tools(req, root, err) != 0)
        goto fail;
    if (req->max_tokens >= 0)
        set_new(root, "max_tokens", json_integer(req->max_tokens));
    if (req->has_temperature)
        set_new(root, "temperature", json_real(req->temperature));
    if (req->has_top_p)
        set_new(root, "p", json_real(req->top_p));
    if (req->top_k >= 0)
        set_new(root, "k", json_integer(req->top_k));
    if (req->nstop > 0) {
        json_t *stop = json_array();
        if (!stop || json_object_set_new(root, "stop_sequences", stop) != 0)
            goto oom;
        for (size_t i = 0; i < req->nstop; i++)
            json_array_append_new(stop, json_string(req->stop[i] ? req->stop[i] : ""));
    }
    if (req->has_seed)
        set_new(root, "seed", json_integer(req->seed));
    if (req->has_frequency_penalty)
        set_new(root, "frequency_penalty", json_real(req->frequency_penalty));
    if (req->has_presence_penalty)
        set_new(root, "presence_penalty", json_real(req->presence_penalty));
    if (req->response_format == SB_RF_TEXT) {
        set_new(root, "response_format", json_pack("{s:s}", "type", "text"));
    } else if (req->response_format == SB_RF_JSON_OBJECT ||
               req->response_format == SB_RF_JSON_SCHEMA) {
        json_t *rf = json_pack("{s:s}", "type", "json_object");
        if (!rf)
            goto oom;
        if (req->response_format == SB_RF_JSON_SCHEMA && req->rf_schema)
            json_object_set(rf, "json_schema", req->rf_schema);
        json_object_set_new(root, "response_format", rf);
    }
    if (req->stream)
        set_new(root, "stream", json_true());
    if (sb_canon_dump_json(root, out) != 0) {
        json_decref(root);
        sb_error_set(err, 413, "invalid_request_error", "request_too_large", NULL,
                     "the translated request is larger than the gateway allows");
        return -1;
    }
    json_decref(root);
    return 0;
oom:
    set_oom(err);
fail:
    json_decref(root);
    return -1;
}

/* ------------------------------------------------------------------ responses */

static enum sb_finish map_finish(const char *r)
{
    if (!r)
        return SB_FINISH_STOP;
    if (strcmp(r, "MAX_TOKENS") == 0)
        return SB_FINISH_LENGTH;
    if (strcmp(r, "STOP_SEQUENCE") == 0)
        return SB_FINISH_STOP_SEQUENCE;
    if (strcmp(r, "TOOL_CALL") == 0)
        return SB_FINISH_TOOL_CALLS;
    if (strcmp(r, "ERROR") == 0 || strcmp(r, "TIMEOUT") == 0)
        return SB_FINISH_ERROR;
    return SB_FINISH_STOP;
}

static bool parse_usage(const json_t *u, struct sb_usage *out)
{
    if (!json_is_object(u))
        return false;
    const json_t *t = json_object_get(u, "tokens");
    int64_t in = jcount(t, "input_tokens"), o = jcount(t, "output_tokens");
    if (in < 0 && o < 0) {
        t = json_object_get(u, "billed_units");
        in = jcount(t, "input_tokens");
        o = jcount(t, "output_tokens");
    }
    if (in < 0 && o < 0)
        return false;
    sb_usage_init(out);
    out->input = in;
    out->output = o;
    return true;
}

static int emit_tool_call(struct sb_canon_synth *s, const json_t *tc)
{
    const json_t *fn = json_object_get(tc, "function");
    const char *id = jstr(tc, "id");
    const char *name = jstr(fn, "name");
    char gen[32];
    if (!id || !*id) {
        sb_canon_random_id("call_", gen, sizeof gen);
        id = gen;
    }
    int rc = sb_canon_synth_open(s, SB_BLOCK_TOOL_CALL, id, name ? name : "");
    if (rc)
        return rc;
    const json_t *args = json_object_get(fn, "arguments");
    if (json_is_string(args))
        return sb_canon_synth_delta(s, json_string_value(args), json_string_length(args));
    if (args && !json_is_null(args)) {
        char *t = json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!t)
            return -ENOMEM;
        rc = sb_canon_synth_delta(s, t, strlen(t));
        free(t);
        return rc;
    }
    return sb_canon_synth_delta(s, "", 0);
}

static int decode_response(const char *body, size_t len, sb_canon_emit_cb emit, void *ud)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return SB_CANON_E_INVALID;
    }
    struct sb_canon_synth s = {.emit = emit, .ud = ud};
    int rc;
    const json_t *m = json_object_get(root, "message");
    if (!json_is_object(m) && jstr(root, "message")) {
        struct sb_canon_error e;
        sb_canon_error_set(&e, 500, SB_ERRK_SERVER, "", "%s", jstr(root, "message"));
        rc = sb_canon_synth_error(&s, &e);
        goto out;
    }
    if ((rc = sb_canon_synth_start(&s, jstr(root, "id"), NULL)))
        goto out;
    size_t i;
    const json_t *c;
    /* Thinking first, whatever the order of the items, as every dialect expects it. */
    json_array_foreach(json_object_get(m, "content"), i, c)
    {
        const char *type = jstr(c, "type");
        if (type && strcmp(type, "thinking") == 0 &&
            (rc = synth_text(&s, SB_BLOCK_THINKING, json_object_get(c, "thinking"))))
            goto out;
    }
    json_array_foreach(json_object_get(m, "content"), i, c)
    {
        const char *type = jstr(c, "type");
        if ((!type || strcmp(type, "text") == 0) &&
            (rc = synth_text(&s, SB_BLOCK_TEXT, json_object_get(c, "text"))))
            goto out;
    }
    if ((rc = synth_text(&s, SB_BLOCK_TEXT, json_object_get(m, "tool_plan"))))
        goto out;
    json_array_foreach(json_object_get(m, "tool_calls"), i, c)
    {
        if ((rc = emit_tool_call(&s, c)))
            goto out;
    }
    if ((rc = sb_canon_synth_finish(&s, map_finish(jstr(root, "finish_reason")))))
        goto out;
    struct sb_usage u;
    if (parse_usage(json_object_get(root, "usage"), &u))
        rc = sb_canon_synth_usage(&s, &u);
out:
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------ errors */

static bool contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

static int decode_error(int status, const char *body, size_t len, struct sb_canon_error *out)
{
    json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    const char *msg = jstr(root, "message");
    if (!msg)
        msg = jstr(json_object_get(root, "error"), "message");
    enum sb_err_kind kind;
    if (status == 498)
        kind = SB_ERRK_AUTH; /* Cohere: invalid token */
    else if (status == 499)
        kind = SB_ERRK_TIMEOUT; /* Cohere: request cancelled */
    else if (contains(msg, "too many tokens") || contains(msg, "context length") ||
             contains(msg, "context window"))
        kind = SB_ERRK_CONTEXT_WINDOW;
    else
        kind = sb_err_kind_of_status(status);
    if (msg)
        sb_canon_error_set(out, status, kind, "", "%s", msg);
    else
        sb_canon_error_set(out, status, kind, "", "Cohere returned HTTP %d", status);
    json_decref(root);
    return 0;
}

/* ------------------------------------------------------------------ stream decoder */

struct co_stream {
    struct sb_sse_parser sse;
    struct sb_canon_synth s;
    bool done;
};

static void *stream_new(size_t max_event_bytes)
{
    struct co_stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    sb_sse_parser_init(&st->sse, max_event_bytes);
    return st;
}

static void stream_free(void *p)
{
    struct co_stream *st = p;
    if (!st)
        return;
    sb_sse_parser_free(&st->sse);
    free(st);
}

static const json_t *delta_msg(const json_t *ev)
{
    return json_object_get(json_object_get(ev, "delta"), "message");
}

static int stream_content(struct sb_canon_synth *s, const json_t *content, bool start)
{
    const json_t *th = json_object_get(content, "thinking");
    const json_t *tx = json_object_get(content, "text");
    const char *type = jstr(content, "type");
    enum sb_block_kind kind;
    if ((type && strcmp(type, "thinking") == 0) || (!type && json_is_string(th) && !tx))
        kind = SB_BLOCK_THINKING;
    else
        kind = SB_BLOCK_TEXT;
    const json_t *v = kind == SB_BLOCK_THINKING ? th : tx;
    bool has_text = json_is_string(v) && json_string_length(v) > 0;
    int rc;
    if (!start && !has_text)
        return 0; /* an empty delta opens no block */
    if (start || !s->open || s->kind != kind) {
        if ((rc = sb_canon_synth_open(s, kind, NULL, NULL)))
            return rc;
    }
    if (has_text)
        return sb_canon_synth_delta(s, json_string_value(v), json_string_length(v));
    return 0;
}

static int stream_event(struct co_stream *st, const json_t *ev, const char *name)
{
    struct sb_canon_synth *s = &st->s;
    const char *type = jstr(ev, "type");
    if (!type)
        type = name;
    int rc;
    if (!type || !*type) {
        const char *msg = jstr(ev, "message");
        if (!msg)
            return 0;
        struct sb_canon_error e;
        sb_canon_error_set(&e, 500, SB_ERRK_SERVER, "", "%s", msg);
        st->done = true;
        return sb_canon_synth_error(s, &e);
    }
    if (strcmp(type, "message-start") == 0)
        return sb_canon_synth_start(s, jstr(ev, "id"), NULL);
    if (strncmp(type, "content-", 8) == 0 || strncmp(type, "tool-", 5) == 0 ||
        strcmp(type, "message-end") == 0) {
        if (s->finished)
            return SB_CANON_E_INVALID;
        if ((rc = sb_canon_synth_start(s, NULL, NULL)))
            return rc;
    } else {
        return 0; /* citation-start, citation-end, debug, and what comes later */
    }
    const json_t *m = delta_msg(ev);
    if (strcmp(type, "content-start") == 0)
        return stream_content(s, json_object_get(m, "content"), true);
    if (strcmp(type, "content-delta") == 0)
        return stream_content(s, json_object_get(m, "content"), false);
    if (strcmp(type, "content-end") == 0 || strcmp(type, "tool-call-end") == 0)
        return sb_canon_synth_close(s);
    if (strcmp(type, "tool-plan-delta") == 0)
        return synth_text(s, SB_BLOCK_TEXT, json_object_get(m, "tool_plan"));
    if (strcmp(type, "tool-call-start") == 0) {
        const json_t *tc = json_object_get(m, "tool_calls");
        if (json_is_array(tc))
            tc = json_array_get(tc, 0);
        return emit_tool_call(s, tc);
    }
    if (strcmp(type, "tool-call-delta") == 0) {
        if (!s->open || s->kind != SB_BLOCK_TOOL_CALL)
            return SB_CANON_E_INVALID;
        const json_t *tc = json_object_get(m, "tool_calls");
        if (json_is_array(tc))
            tc = json_array_get(tc, 0);
        const json_t *a = json_object_get(json_object_get(tc, "function"), "arguments");
        if (json_is_string(a) && json_string_length(a) > 0)
            return sb_canon_synth_delta(s, json_string_value(a), json_string_length(a));
        return 0;
    }
    if (strcmp(type, "message-end") == 0) {
        const json_t *d = json_object_get(ev, "delta");
        if ((rc = sb_canon_synth_finish(s, map_finish(jstr(d, "finish_reason")))))
            return rc;
        struct sb_usage u;
        st->done = true;
        if (parse_usage(json_object_get(d, "usage"), &u))
            return sb_canon_synth_usage(s, &u);
        return 0;
    }
    return 0;
}

static int on_sse(void *ud, const struct sb_sse_event *sev)
{
    struct co_stream *st = ud;
    if (sev->is_comment || st->done)
        return 0;
    const char *d = sev->data;
    size_t n = sev->data_len;
    while (n && (*d == ' ' || *d == '\t' || *d == '\r' || *d == '\n'))
        d++, n--;
    if (n == 0)
        return 0;
    if (n >= 6 && memcmp(d, "[DONE]", 6) == 0)
        return 0;
    json_t *ev = json_loadb(d, n, 0, NULL);
    if (!json_is_object(ev)) {
        json_decref(ev);
        return SB_CANON_E_INVALID;
    }
    char name[32];
    size_t nl = sev->event_len < sizeof name - 1 ? sev->event_len : sizeof name - 1;
    memcpy(name, sev->event, nl);
    name[nl] = '\0';
    int rc = stream_event(st, ev, name);
    json_decref(ev);
    return rc;
}

static int stream_feed(void *p, const char *data, size_t len, sb_canon_emit_cb emit, void *ud)
{
    struct co_stream *st = p;
    st->s.emit = emit;
    st->s.ud = ud;
    if (st->done)
        return 0;
    int rc = sb_sse_parser_feed(&st->sse, data, len, on_sse, st);
    return rc == SB_SSE_E_TOO_BIG ? -E2BIG : rc;
}

static int stream_end(void *p, sb_canon_emit_cb emit, void *ud)
{
    struct co_stream *st = p;
    st->s.emit = emit;
    st->s.ud = ud;
    sb_sse_parser_end(&st->sse);
    if (st->s.failed || st->s.finished)
        return 0;
    return SB_CANON_E_CUT;
}

const struct sb_provider_codec sb_codec_cohere = {
    .dialect = SB_DIALECT_COHERE,
    .encode_request = encode_request,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_new = stream_new,
    .stream_feed = stream_feed,
    .stream_end = stream_end,
    .stream_free = stream_free,
};

/* ------------------------------------------------------------------ embeddings */

#define EMBED_MAX_DIMS 65536

static int embed_encode(const struct sb_embed_req *req, size_t from, size_t to, const char *model,
                        struct sb_buf *out, struct sb_error *err)
{
    memset(err, 0, sizeof *err);
    if (from > to || to > req->ninputs) {
        sb_error_set(err, 500, "server_error", NULL, NULL, "embedding batch out of range");
        return -1;
    }
    json_t *texts = json_array();
    json_t *root =
        texts ? json_pack("{s:s,s:o,s:s,s:[s]}", "model",
                          model ? model : (req->model ? req->model : ""), "texts", texts,
                          "input_type", req->input_type ? req->input_type : "search_document",
                          "embedding_types", "float")
              : NULL;
    if (!root)
        goto oom;
    for (size_t i = from; i < to; i++)
        if (json_array_append_new(texts, json_string(req->inputs[i] ? req->inputs[i] : "")))
            goto oom;
    if (req->dimensions >= 0)
        set_new(root, "output_dimension", json_integer(req->dimensions));
    if (sb_canon_dump_json(root, out) != 0) {
        json_decref(root);
        sb_error_set(err, 413, "invalid_request_error", "request_too_large", NULL,
                     "the translated request is larger than the gateway allows");
        return -1;
    }
    json_decref(root);
    return 0;
oom:
    json_decref(root);
    set_oom(err);
    return -1;
}

static int embed_decode(const char *body, size_t len, struct sb_embed_resp *out)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    const json_t *emb = json_object_get(root, "embeddings");
    const json_t *vecs = json_is_object(emb) ? json_object_get(emb, "float") : emb;
    int rc = SB_CANON_E_INVALID;
    if (!json_is_array(vecs))
        goto out;
    size_t n = json_array_size(vecs);
    if (n > SIZE_MAX / sizeof(double *) - out->n)
        goto out;
    size_t i;
    const json_t *v;
    json_array_foreach(vecs, i, v)
    {
        size_t d = json_array_size(v);
        if (!json_is_array(v) || d == 0 || d > EMBED_MAX_DIMS)
            goto out;
        const json_t *x;
        size_t k;
        json_array_foreach(v, k, x)
        {
            if (!json_is_number(x))
                goto out;
        }
    }
    if (n == 0) {
        rc = 0;
        goto tokens;
    }
    double **nv = realloc(out->vectors, (out->n + n) * sizeof *nv);
    if (!nv) {
        rc = -ENOMEM;
        goto out;
    }
    out->vectors = nv;
    size_t *nd = realloc(out->dims, (out->n + n) * sizeof *nd);
    if (!nd) {
        rc = -ENOMEM;
        goto out;
    }
    out->dims = nd;
    json_array_foreach(vecs, i, v)
    {
        size_t d = json_array_size(v);
        double *vec = malloc(d * sizeof *vec);
        if (!vec) {
            rc = -ENOMEM;
            goto out;
        }
        for (size_t k = 0; k < d; k++)
            vec[k] = json_number_value(json_array_get(v, k));
        out->vectors[out->n] = vec;
        out->dims[out->n] = d;
        out->n++;
    }
tokens:;
    int64_t t =
        jcount(json_object_get(json_object_get(root, "meta"), "billed_units"), "input_tokens");
    if (t >= 0)
        out->input_tokens = (out->input_tokens > 0 ? out->input_tokens : 0) + t;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

const struct sb_embed_codec sb_embed_cohere = {
    .dialect = SB_DIALECT_COHERE,
    .batch_max = 96,
    .encode = embed_encode,
    .decode = embed_decode,
};

/* OpenAI chat completions, provider side: the body sent to an OpenAI-compatible upstream and
 * the decoders of its answers (protocols README §1, §5.4, §6.1; canon.md for the event rules).
 *
 * OpenAI has no explicit content blocks, so the decoders synthesize them: reasoning text
 * (DeepSeek and vLLM `reasoning_content`, OpenRouter `reasoning`) becomes a THINKING block,
 * content and refusal text a TEXT block, every tool call (keyed by its `index`) a TOOL_CALL
 * block. The usage chunk comes after the finish chunk, so FINISH is emitted when seen and
 * USAGE at `[DONE]` or at the end of the body. */
#include "canon/codecs.h"
#include "http/sse.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ shared helpers */

static const char *jstr(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static int64_t jint(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return -1;
    json_int_t n = json_integer_value(v);
    return n < 0 ? -1 : (int64_t)n;
}

/* ------------------------------------------------------------------ encode_request */

static int set_new(json_t *o, const char *key, json_t *v)
{
    if (!v)
        return -1;
    return json_object_set_new(o, key, v);
}

static json_t *data_uri(const char *media_type, const char *data)
{
    size_t ml = strlen(media_type), dl = strlen(data);
    if (ml > SIZE_MAX / 2 || dl > SIZE_MAX / 2)
        return NULL;
    char *s = malloc(5 + ml + 8 + dl + 1);
    if (!s)
        return NULL;
    memcpy(s, "data:", 5);
    memcpy(s + 5, media_type, ml);
    memcpy(s + 5 + ml, ";base64,", 8);
    memcpy(s + 13 + ml, data, dl);
    s[13 + ml + dl] = '\0';
    json_t *j = json_string(s);
    free(s);
    return j;
}

static json_t *image_part(const struct sb_part *p)
{
    json_t *url = p->url ? json_string(p->url)
                         : data_uri(p->media_type ? p->media_type : "image/png", p->data);
    json_t *iu = json_object();
    json_t *part = json_object();
    if (!url || !iu || !part)
        goto fail;
    json_object_set_new(iu, "url", url);
    url = NULL;
    if (p->detail)
        set_new(iu, "detail", json_string(p->detail));
    set_new(part, "type", json_string("image_url"));
    json_object_set_new(part, "image_url", iu);
    return part;
fail:
    json_decref(url);
    json_decref(iu);
    json_decref(part);
    return NULL;
}

static json_t *file_part(const struct sb_part *p)
{
    const char *mt = p->media_type ? p->media_type : "application/pdf";
    json_t *fd = data_uri(mt, p->data);
    json_t *f = json_object();
    json_t *part = json_object();
    if (!fd || !f || !part) {
        json_decref(fd);
        json_decref(f);
        json_decref(part);
        return NULL;
    }
    json_object_set_new(f, "file_data", fd);
    set_new(f, "filename",
            json_string(strcmp(mt, "application/pdf") == 0 ? "document.pdf" : "document"));
    set_new(part, "type", json_string("file"));
    json_object_set_new(part, "file", f);
    return part;
}

static json_t *text_part(const char *text)
{
    json_t *part = json_object();
    if (!part)
        return NULL;
    set_new(part, "type", json_string("text"));
    set_new(part, "text", json_string(text ? text : ""));
    return part;
}

/* Joins the TEXT parts of parts[0..n) (others skipped) into one string. */
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

/* One user-side content part (TEXT, IMAGE, DOCUMENT), or NULL with err set. */
static json_t *content_part(const struct sb_part *p, size_t mi, struct sb_error *err)
{
    switch (p->type) {
    case SB_PART_TEXT:
        return text_part(p->text);
    case SB_PART_IMAGE:
        if (!p->url && !p->data)
            break;
        return image_part(p);
    case SB_PART_DOCUMENT:
        if (!p->data) {
            sb_error_set(err, 400, "invalid_request_error", "unsupported_parameter", "messages",
                         "messages[%zu]: documents by URL are not supported by "
                         "OpenAI-compatible models",
                         mi);
            return NULL;
        }
        return file_part(p);
    default:
        return NULL;
    }
    sb_error_set(err, 400, "invalid_request_error", "invalid_value", "messages",
                 "messages[%zu]: an image needs data or a url", mi);
    return NULL;
}

static int append_msg(json_t *msgs, json_t *m)
{
    if (!m)
        return -1;
    return json_array_append_new(msgs, m);
}

/* A user turn: one role:"tool" message per TOOL_RESULT part first (OpenAI wants them right
 * after the assistant's tool_calls), then the rest of the turn, plus any images the results
 * held (a tool message carries text only), as one user message. */
static int encode_user(json_t *msgs, const struct sb_msg *m, size_t mi, struct sb_error *err)
{
    json_t *rest = json_array();
    if (!rest)
        return -1;
    size_t ntext = 0, nother = 0;
    const char *only_text = NULL;
    for (size_t i = 0; i < m->nparts; i++) {
        const struct sb_part *p = &m->parts[i];
        if (p->type == SB_PART_TOOL_RESULT) {
            bool any;
            json_t *tm = json_object();
            json_t *content = joined_text(p->parts, p->nparts, &any);
            if (!tm || !content) {
                json_decref(tm);
                json_decref(content);
                goto fail;
            }
            set_new(tm, "role", json_string("tool"));
            set_new(tm, "tool_call_id", json_string(p->id ? p->id : ""));
            json_object_set_new(tm, "content", content);
            if (append_msg(msgs, tm) != 0)
                goto fail;
            for (size_t k = 0; k < p->nparts; k++) {
                if (p->parts[k].type != SB_PART_IMAGE)
                    continue;
                json_t *ip = content_part(&p->parts[k], mi, err);
                if (!ip || json_array_append_new(rest, ip) != 0)
                    goto fail_err;
                nother++;
            }
            continue;
        }
        if (p->type != SB_PART_TEXT && p->type != SB_PART_IMAGE && p->type != SB_PART_DOCUMENT)
            continue;
        json_t *cp = content_part(p, mi, err);
        if (!cp || json_array_append_new(rest, cp) != 0)
            goto fail_err;
        if (p->type == SB_PART_TEXT) {
            ntext++;
            only_text = p->text ? p->text : "";
        } else {
            nother++;
        }
    }
    if (ntext + nother == 0 && m->nparts > 0) {
        json_decref(rest);
        return 0;
    }
    json_t *um = json_object();
    if (!um)
        goto fail;
    set_new(um, "role", json_string("user"));
    if (ntext == 1 && nother == 0) {
        set_new(um, "content", json_string(only_text));
        json_decref(rest);
    } else if (ntext + nother == 0) {
        set_new(um, "content", json_string(""));
        json_decref(rest);
    } else {
        json_object_set_new(um, "content", rest);
    }
    rest = NULL;
    if (m->name)
        set_new(um, "name", json_string(m->name));
    return append_msg(msgs, um);
fail:
    sb_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
fail_err:
    json_decref(rest);
    return -1;
}

static int encode_assistant(json_t *msgs, const struct sb_msg *m)
{
    json_t *am = json_object();
    json_t *calls = json_array();
    bool any;
    json_t *content = joined_text(m->parts, m->nparts, &any);
    if (!am || !calls || !content)
        goto fail;
    set_new(am, "role", json_string("assistant"));
    for (size_t i = 0; i < m->nparts; i++) {
        const struct sb_part *p = &m->parts[i];
        if (p->type != SB_PART_TOOL_CALL)
            continue;
        json_t *tc = json_object();
        json_t *fn = json_object();
        if (!tc || !fn) {
            json_decref(tc);
            json_decref(fn);
            goto fail;
        }
        set_new(fn, "name", json_string(p->name ? p->name : ""));
        set_new(fn, "arguments", json_string(p->arguments ? p->arguments : "{}"));
        set_new(tc, "id", json_string(p->id ? p->id : ""));
        set_new(tc, "type", json_string("function"));
        json_object_set_new(tc, "function", fn);
        if (json_array_append_new(calls, tc) != 0)
            goto fail;
    }
    if (any) {
        json_object_set_new(am, "content", content);
    } else {
        json_decref(content);
        json_object_set_new(am, "content", json_null());
    }
    content = NULL;
    if (json_array_size(calls) > 0)
        json_object_set_new(am, "tool_calls", calls);
    else
        json_decref(calls);
    calls = NULL;
    if (m->name)
        set_new(am, "name", json_string(m->name));
    return append_msg(msgs, am);
fail:
    json_decref(am);
    json_decref(calls);
    json_decref(content);
    return -1;
}

static int encode_messages(json_t *root, const struct sb_canon_req *req, struct sb_error *err)
{
    json_t *msgs = json_array();
    if (!msgs || json_object_set_new(root, "messages", msgs) != 0)
        goto oom;
    for (size_t i = 0; i < req->nmsgs; i++) {
        const struct sb_msg *m = &req->msgs[i];
        int rc = 0;
        switch (m->role) {
        case SB_ROLE_SYSTEM: {
            bool any;
            json_t *sm = json_object();
            json_t *content = joined_text(m->parts, m->nparts, &any);
            if (!sm || !content) {
                json_decref(sm);
                json_decref(content);
                goto oom;
            }
            set_new(sm, "role", json_string("system"));
            json_object_set_new(sm, "content", content);
            if (m->name)
                set_new(sm, "name", json_string(m->name));
            rc = append_msg(msgs, sm);
            break;
        }
        case SB_ROLE_USER:
        case SB_ROLE_TOOL:
            if (encode_user(msgs, m, i, err) != 0) {
                if (err->status == 0)
                    goto oom;
                return -1;
            }
            break;
        case SB_ROLE_ASSISTANT:
            rc = encode_assistant(msgs, m);
            break;
        }
        if (rc != 0)
            goto oom;
    }
    return 0;
oom:
    sb_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    return -1;
}

static json_t *encode_tools(const struct sb_canon_req *req)
{
    json_t *tools = json_array();
    if (!tools)
        return NULL;
    for (size_t i = 0; i < req->ntools; i++) {
        const struct sb_tool *t = &req->tools[i];
        json_t *fn = json_object();
        json_t *tool = json_object();
        if (!fn || !tool || json_array_append_new(tools, tool) != 0) {
            json_decref(fn);
            json_decref(tools);
            return NULL;
        }
        set_new(tool, "type", json_string("function"));
        set_new(fn, "name", json_string(t->name ? t->name : ""));
        if (t->description)
            set_new(fn, "description", json_string(t->description));
        if (t->parameters)
            json_object_set(fn, "parameters", t->parameters);
        else
            set_new(fn, "parameters", json_pack("{s:s,s:{}}", "type", "object", "properties"));
        if (t->strict >= 0)
            set_new(fn, "strict", json_boolean(t->strict));
        json_object_set_new(tool, "function", fn);
    }
    return tools;
}

static json_t *encode_response_format(const struct sb_canon_req *req)
{
    switch (req->response_format) {
    case SB_RF_UNSET:
        return NULL;
    case SB_RF_TEXT:
        return json_pack("{s:s}", "type", "text");
    case SB_RF_JSON_OBJECT:
        return json_pack("{s:s}", "type", "json_object");
    case SB_RF_JSON_SCHEMA: {
        json_t *js = json_object();
        if (!js)
            return NULL;
        set_new(js, "name", json_string(req->rf_name ? req->rf_name : "response"));
        if (req->rf_schema)
            json_object_set(js, "schema", req->rf_schema);
        if (req->rf_strict >= 0)
            set_new(js, "strict", json_boolean(req->rf_strict));
        return json_pack("{s:s,s:o}", "type", "json_schema", "json_schema", js);
    }
    }
    return NULL;
}

static int encode_request(const struct sb_canon_req *req, const char *model, struct sb_buf *out,
                          struct sb_error *err)
{
    memset(err, 0, sizeof *err);
    json_t *root = json_object();
    if (!root)
        goto oom;
    set_new(root, "model", json_string(model ? model : (req->model ? req->model : "")));
    if (encode_messages(root, req, err) != 0) {
        json_decref(root);
        return -1;
    }
    if (req->ntools > 0) {
        json_t *tools = encode_tools(req);
        if (!tools)
            goto oom;
        json_object_set_new(root, "tools", tools);
        if (req->parallel_tool_calls >= 0)
            set_new(root, "parallel_tool_calls", json_boolean(req->parallel_tool_calls));
    }
    switch (req->tool_choice) {
    case SB_TC_UNSET:
        break;
    case SB_TC_AUTO:
        set_new(root, "tool_choice", json_string("auto"));
        break;
    case SB_TC_NONE:
        set_new(root, "tool_choice", json_string("none"));
        break;
    case SB_TC_REQUIRED:
        set_new(root, "tool_choice", json_string("required"));
        break;
    case SB_TC_NAMED:
        set_new(root, "tool_choice",
                json_pack("{s:s,s:{s:s}}", "type", "function", "function", "name",
                          req->tool_choice_name ? req->tool_choice_name : ""));
        break;
    }
    if (req->max_tokens >= 0)
        set_new(root, "max_completion_tokens", json_integer(req->max_tokens));
    if (req->has_temperature)
        set_new(root, "temperature", json_real(req->temperature));
    if (req->has_top_p)
        set_new(root, "top_p", json_real(req->top_p));
    if (req->nstop > 0) {
        json_t *stop = json_array();
        if (!stop)
            goto oom;
        for (size_t i = 0; i < req->nstop; i++)
            json_array_append_new(stop, json_string(req->stop[i] ? req->stop[i] : ""));
        json_object_set_new(root, "stop", stop);
    }
    if (req->n >= 0)
        set_new(root, "n", json_integer(req->n));
    if (req->has_seed)
        set_new(root, "seed", json_integer(req->seed));
    if (req->logprobs) {
        set_new(root, "logprobs", json_true());
        if (req->top_logprobs >= 0)
            set_new(root, "top_logprobs", json_integer(req->top_logprobs));
    }
    if (req->has_presence_penalty)
        set_new(root, "presence_penalty", json_real(req->presence_penalty));
    if (req->has_frequency_penalty)
        set_new(root, "frequency_penalty", json_real(req->frequency_penalty));
    json_t *rf = encode_response_format(req);
    if (rf)
        json_object_set_new(root, "response_format", rf);
    /* A zero budget means "thinking off", which is the default of models that have no
     * reasoning_effort at all; sending "none" to them would be refused. */
    const char *effort = req->reasoning_effort;
    if (!effort && req->thinking_budget > 0)
        effort = sb_canon_budget_effort(req->thinking_budget);
    if (effort)
        set_new(root, "reasoning_effort", json_string(effort));
    if (req->user)
        set_new(root, "user", json_string(req->user));
    if (req->stream) {
        set_new(root, "stream", json_true());
        set_new(root, "stream_options", json_pack("{s:b}", "include_usage", 1));
    }
    int rc = sb_canon_dump_json(root, out);
    json_decref(root);
    if (rc != 0) {
        sb_error_set(err, 413, "invalid_request_error", "request_too_large", NULL,
                     "the translated request is larger than the gateway allows");
        return -1;
    }
    return 0;
oom:
    json_decref(root);
    sb_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    return -1;
}

/* ------------------------------------------------------------------ errors */

static bool contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

static bool is_context_window(const char *code, const char *message)
{
    return contains(code, "context_length_exceeded") ||
           contains(message, "maximum context length") ||
           contains(message, "context_length_exceeded") ||
           contains(message, "prompt is too long") || contains(message, "context window");
}

/* Fills `out` from an error object (the envelope's `error`, or a flat vLLM/Mistral body).
 * status 0: an error inside a 2xx body, whose status comes from the body. */
static void error_from_obj(const json_t *e, int status, struct sb_canon_error *out)
{
    const char *message = jstr(e, "message");
    const char *type = jstr(e, "type");
    const json_t *codev = json_object_get(e, "code");
    const char *code = json_string_value(codev);
    if (!message && json_is_string(e))
        message = json_string_value(e);
    if (status == 0) {
        json_int_t c = json_is_integer(codev) ? json_integer_value(codev) : 0;
        if (c >= 400 && c <= 599)
            status = (int)c;
        else if (contains(type, "invalid_request"))
            status = 400;
        else
            status = 500;
    }
    enum sb_err_kind kind;
    if (contains(code, "insufficient_quota") || contains(type, "insufficient_quota") ||
        contains(code, "credit_balance_exhausted"))
        kind = SB_ERRK_BILLING;
    else if (is_context_window(code, message))
        kind = SB_ERRK_CONTEXT_WINDOW;
    else if (contains(code, "content_policy_violation") || contains(code, "content_filter") ||
             contains(type, "content_filter"))
        kind = SB_ERRK_CONTENT_POLICY;
    else
        kind = sb_err_kind_of_status(status);
    const char *t = type ? type : (code ? code : "");
    if (message)
        sb_canon_error_set(out, status, kind, t, "%s", message);
    else
        sb_canon_error_set(out, status, kind, t, "OpenAI-compatible provider returned HTTP %d",
                           status);
}

static int decode_error(int status, const char *body, size_t len, struct sb_canon_error *out)
{
    json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    const json_t *e = NULL;
    if (json_is_object(root)) {
        e = json_object_get(root, "error");
        if (!json_is_object(e) && !json_is_string(e))
            e = (jstr(root, "message") ||
                 (jstr(root, "object") && strcmp(jstr(root, "object"), "error") == 0))
                    ? root
                    : NULL;
    }
    if (e) {
        error_from_obj(e, status, out);
    } else {
        sb_canon_error_set(out, status, sb_err_kind_of_status(status), "",
                           "OpenAI-compatible provider returned HTTP %d", status);
    }
    json_decref(root);
    return 0;
}

/* ------------------------------------------------------------------ event synthesis */

/* Text of a JSON string value, through the shared block synthesis (canon.h). */
static int synth_text(struct sb_canon_synth *s, enum sb_block_kind kind, const json_t *v)
{
    return sb_canon_synth_text(s, kind, json_string_value(v), json_string_length(v));
}

static enum sb_finish map_finish(const char *r)
{
    static const struct {
        const char *name;
        enum sb_finish f;
    } table[] = {
        {"stop", SB_FINISH_STOP},
        {"length", SB_FINISH_LENGTH},
        {"model_length", SB_FINISH_LENGTH},
        {"tool_calls", SB_FINISH_TOOL_CALLS},
        {"function_call", SB_FINISH_TOOL_CALLS},
        {"content_filter", SB_FINISH_CONTENT_FILTER},
        {"eos", SB_FINISH_STOP},
        {"insufficient_system_resource", SB_FINISH_STOP},
        {"error", SB_FINISH_ERROR},
    };
    if (!r)
        return SB_FINISH_STOP;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (strcmp(r, table[i].name) == 0)
            return table[i].f;
    return SB_FINISH_STOP;
}

/* OpenAI usage -> canonical (prompt_tokens includes the cached tokens; completion_tokens
 * includes reasoning). Returns false when `u` holds no usage. */
static bool parse_usage(const json_t *u, struct sb_usage *out)
{
    if (!json_is_object(u))
        return false;
    int64_t prompt = jint(u, "prompt_tokens");
    int64_t completion = jint(u, "completion_tokens");
    if (prompt < 0 && completion < 0)
        return false;
    const json_t *pd = json_object_get(u, "prompt_tokens_details");
    int64_t cached = jint(pd, "cached_tokens");
    if (cached < 0)
        cached = jint(u, "prompt_cache_hit_tokens"); /* DeepSeek */
    int64_t written = jint(pd, "cache_write_tokens");
    sb_usage_init(out);
    if (prompt >= 0) {
        int64_t rest = prompt;
        if (cached > 0) {
            out->cache_read = cached < rest ? cached : rest;
            rest -= out->cache_read;
        } else if (cached == 0) {
            out->cache_read = 0;
        }
        if (written > 0) {
            out->cache_write = written < rest ? written : rest;
            rest -= out->cache_write;
        }
        out->input = rest;
    }
    out->output = completion;
    out->reasoning = jint(json_object_get(u, "completion_tokens_details"), "reasoning_tokens");
    return true;
}

static const json_t *reasoning_of(const json_t *m)
{
    const json_t *r = json_object_get(m, "reasoning_content");
    if (!json_is_string(r) || json_string_length(r) == 0)
        r = json_object_get(m, "reasoning"); /* OpenRouter */
    return r;
}

/* ------------------------------------------------------------------ decode_response */

static int emit_message(struct sb_canon_synth *s, const json_t *m)
{
    int rc = synth_text(s, SB_BLOCK_THINKING, reasoning_of(m));
    if (rc)
        return rc;
    const json_t *content = json_object_get(m, "content");
    if (json_is_array(content)) {
        size_t i;
        const json_t *p;
        json_array_foreach(content, i, p)
        {
            if ((rc = synth_text(s, SB_BLOCK_TEXT, json_object_get(p, "text"))))
                return rc;
        }
    } else if (json_is_string(content) && json_string_length(content) > 0) {
        if ((rc = synth_text(s, SB_BLOCK_TEXT, content)))
            return rc;
    } else if ((rc = synth_text(s, SB_BLOCK_TEXT, json_object_get(m, "refusal")))) {
        return rc;
    }
    const json_t *calls = json_object_get(m, "tool_calls");
    size_t i;
    const json_t *tc;
    json_array_foreach(calls, i, tc)
    {
        const json_t *fn = json_object_get(tc, "function");
        const char *id = jstr(tc, "id");
        char gen[32];
        if (!id || !*id) {
            sb_canon_random_id("call_", gen, sizeof gen);
            id = gen;
        }
        const char *name = jstr(fn, "name");
        if ((rc = sb_canon_synth_open(s, SB_BLOCK_TOOL_CALL, id, name ? name : "")))
            return rc;
        const json_t *args = json_object_get(fn, "arguments");
        if (json_is_string(args)) {
            rc = sb_canon_synth_delta(s, json_string_value(args), json_string_length(args));
        } else if (args && !json_is_null(args)) {
            char *t = json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY);
            if (!t)
                return -ENOMEM;
            rc = sb_canon_synth_delta(s, t, strlen(t));
            free(t);
        } else {
            rc = sb_canon_synth_delta(s, "", 0);
        }
        if (rc)
            return rc;
    }
    return sb_canon_synth_close(s);
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
    const json_t *e = json_object_get(root, "error");
    if (e && !json_is_null(e)) {
        struct sb_canon_error err;
        error_from_obj(e, 0, &err);
        rc = sb_canon_synth_error(&s, &err);
        goto out;
    }
    if ((rc = sb_canon_synth_start(&s, jstr(root, "id"), jstr(root, "model"))))
        goto out;
    const json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    const json_t *m = json_object_get(choice, "message");
    if (json_is_object(m) && (rc = emit_message(&s, m)))
        goto out;
    if ((rc = sb_canon_synth_finish(&s, map_finish(jstr(choice, "finish_reason")))))
        goto out;
    struct sb_usage u;
    if (parse_usage(json_object_get(root, "usage"), &u))
        rc = sb_canon_synth_usage(&s, &u);
out:
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------ stream decoder */

#define MAX_TOOL_INDEX 4096

struct oai_stream {
    struct sb_sse_parser sse;
    struct sb_canon_synth s;
    bool done;     /* [DONE] seen, or an error was reported: the rest is ignored */
    int open_tool; /* OpenAI index of the open TOOL_CALL block, or -1 */
    unsigned char seen[MAX_TOOL_INDEX / 8];
    bool has_usage;
    struct sb_usage usage;
};

static void *stream_new(size_t max_event_bytes)
{
    struct oai_stream *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    sb_sse_parser_init(&st->sse, max_event_bytes);
    st->open_tool = -1;
    sb_usage_init(&st->usage);
    return st;
}

static void stream_free(void *p)
{
    struct oai_stream *st = p;
    if (!st)
        return;
    sb_sse_parser_free(&st->sse);
    free(st);
}

static int stream_tool_fragment(struct oai_stream *st, const json_t *frag)
{
    struct sb_canon_synth *s = &st->s;
    const json_t *iv = json_object_get(frag, "index");
    json_int_t idx;
    if (json_is_integer(iv))
        idx = json_integer_value(iv);
    else if (iv && !json_is_null(iv))
        return SB_CANON_E_INVALID;
    else
        idx = st->open_tool >= 0 ? st->open_tool : 0; /* providers that leave it out */
    if (idx < 0 || idx >= MAX_TOOL_INDEX)
        return SB_CANON_E_INVALID;
    const json_t *fn = json_object_get(frag, "function");
    int rc;
    if (idx != st->open_tool || !s->open || s->kind != SB_BLOCK_TOOL_CALL) {
        if (st->seen[idx / 8] & (1u << (idx % 8)))
            return SB_CANON_E_INVALID; /* its block is closed: nothing can be appended */
        st->seen[idx / 8] |= (unsigned char)(1u << (idx % 8));
        const char *id = jstr(frag, "id");
        const char *name = jstr(fn, "name");
        char gen[32];
        if (!id || !*id) {
            sb_canon_random_id("call_", gen, sizeof gen);
            id = gen;
        }
        if ((rc = sb_canon_synth_open(s, SB_BLOCK_TOOL_CALL, id, name ? name : "")))
            return rc;
        st->open_tool = (int)idx;
    }
    const json_t *args = json_object_get(fn, "arguments");
    if (json_is_string(args) && json_string_length(args) > 0)
        return sb_canon_synth_delta(s, json_string_value(args), json_string_length(args));
    return 0;
}

static int stream_chunk(struct oai_stream *st, const json_t *c)
{
    struct sb_canon_synth *s = &st->s;
    int rc;
    const json_t *e = json_object_get(c, "error");
    if (e && !json_is_null(e)) {
        struct sb_canon_error err;
        error_from_obj(e, 0, &err);
        st->done = true;
        return sb_canon_synth_error(s, &err);
    }
    struct sb_usage u;
    if (parse_usage(json_object_get(c, "usage"), &u) ||
        parse_usage(json_object_get(json_object_get(c, "x_groq"), "usage"), &u)) {
        st->usage = u;
        st->has_usage = true;
    }
    const json_t *choices = json_object_get(c, "choices");
    if (json_array_size(choices) == 0)
        return 0; /* Azure's prompt-filter chunk, the usage chunk */
    if ((rc = sb_canon_synth_start(s, jstr(c, "id"), jstr(c, "model"))))
        return rc;
    size_t i;
    const json_t *ch;
    json_array_foreach(choices, i, ch)
    {
        const json_t *iv = json_object_get(ch, "index");
        if (json_is_integer(iv) && json_integer_value(iv) != 0)
            continue;
        if (s->finished)
            continue;
        const json_t *d = json_object_get(ch, "delta");
        if (json_is_object(d)) {
            if ((rc = synth_text(s, SB_BLOCK_THINKING, reasoning_of(d))) ||
                (rc = synth_text(s, SB_BLOCK_TEXT, json_object_get(d, "content"))) ||
                (rc = synth_text(s, SB_BLOCK_TEXT, json_object_get(d, "refusal"))))
                return rc;
            const json_t *calls = json_object_get(d, "tool_calls");
            size_t k;
            const json_t *frag;
            json_array_foreach(calls, k, frag)
            {
                if ((rc = stream_tool_fragment(st, frag)))
                    return rc;
            }
        }
        const char *fr = jstr(ch, "finish_reason");
        if (fr && (rc = sb_canon_synth_finish(s, map_finish(fr))))
            return rc;
    }
    return 0;
}

static int on_sse(void *ud, const struct sb_sse_event *ev)
{
    struct oai_stream *st = ud;
    if (ev->is_comment || st->done)
        return 0;
    const char *d = ev->data;
    size_t n = ev->data_len;
    while (n && (*d == ' ' || *d == '\t' || *d == '\r' || *d == '\n'))
        d++, n--;
    while (n && (d[n - 1] == ' ' || d[n - 1] == '\t' || d[n - 1] == '\r' || d[n - 1] == '\n'))
        n--;
    if (n == 0)
        return 0;
    if (n == 6 && memcmp(d, "[DONE]", 6) == 0) {
        st->done = true;
        if (st->s.finished && st->has_usage)
            return sb_canon_synth_usage(&st->s, &st->usage);
        return 0;
    }
    json_t *c = json_loadb(d, n, 0, NULL);
    int rc = json_is_object(c) ? stream_chunk(st, c) : SB_CANON_E_INVALID;
    json_decref(c);
    return rc;
}

static int stream_feed(void *p, const char *data, size_t len, sb_canon_emit_cb emit, void *ud)
{
    struct oai_stream *st = p;
    st->s.emit = emit;
    st->s.ud = ud;
    if (st->done)
        return 0;
    int rc = sb_sse_parser_feed(&st->sse, data, len, on_sse, st);
    if (rc == SB_SSE_E_TOO_BIG)
        return -E2BIG;
    return rc;
}

static int stream_end(void *p, sb_canon_emit_cb emit, void *ud)
{
    struct oai_stream *st = p;
    st->s.emit = emit;
    st->s.ud = ud;
    sb_sse_parser_end(&st->sse);
    if (st->s.failed)
        return 0;
    if (!st->s.finished)
        return SB_CANON_E_CUT;
    if (st->has_usage)
        return sb_canon_synth_usage(&st->s, &st->usage);
    return 0;
}

const struct sb_provider_codec sb_codec_openai = {
    .dialect = SB_DIALECT_OPENAI,
    .encode_request = encode_request,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_new = stream_new,
    .stream_feed = stream_feed,
    .stream_end = stream_end,
    .stream_free = stream_free,
};

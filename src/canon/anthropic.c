/* Anthropic Messages, provider side: canonical requests -> Messages bodies; Messages
 * responses, streams and errors -> canonical events (protocols README §3, §5.1-5.3, §5.7-5.10).
 * The mapping decisions are listed in docs/translation/anthropic.md. */
#include "canon/codecs.h"

#include "http/sse.h"
#include "json/scan.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Anthropic's smallest accepted thinking budget (thinking.budget_tokens >= 1024). */
#define MIN_THINKING_BUDGET 1024

/* ================================================================== request */

/* Builds the body; every failure sets err (400 for what Anthropic cannot express). */
struct enc {
    const struct sb_canon_req *req;
    struct sb_error *err;
    json_t *system;   /* array of text blocks */
    json_t *messages; /* finished turns */
    int role;         /* role of the turn being built, -1 before the first */
    json_t *first;    /* user: tool_result blocks; assistant: thinking blocks */
    json_t *middle;   /* text, images, documents */
    json_t *last;     /* assistant: tool_use blocks */
};

static int fail_oom(struct enc *e)
{
    sb_error_set(e->err, 500, "api_error", NULL, NULL,
                 "could not build the Anthropic request body (out of memory or invalid UTF-8)");
    return -1;
}

static int unsupported(struct sb_error *err, const char *param)
{
    sb_error_set(err, 400, "invalid_request_error", "unsupported_parameter", param,
                 "'%s' is not supported by Anthropic models", param);
    return -1;
}

static int invalid(struct sb_error *err, const char *param, const char *msg, size_t idx)
{
    sb_error_set(err, 400, "invalid_request_error", "invalid_value", param, "messages[%zu]: %s",
                 idx, msg);
    return -1;
}

/* Anthropic ids must match ^[A-Za-z0-9_-]+$; foreign ids (Gemini, Mistral, clients) are
 * rewritten byte by byte, the same way in tool_use and tool_result, so they keep pairing. */
static json_t *clean_id(const char *id)
{
    size_t n = strlen(id);
    char *c = sb_canon_strndup(id, n);
    if (!c)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)c[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '-'))
            c[i] = '_';
    }
    json_t *s = json_string(c);
    free(c);
    return s;
}

static int with_cache_control(json_t *block, const json_t *cc)
{
    if (!cc)
        return 0;
    return json_object_set(block, "cache_control", (json_t *)cc);
}

static json_t *text_block(const char *text, const json_t *cc)
{
    json_t *b = json_pack("{s:s,s:s}", "type", "text", "text", text);
    if (b && with_cache_control(b, cc) != 0) {
        json_decref(b);
        return NULL;
    }
    return b;
}

static bool is_http_url(const char *u)
{
    return strncmp(u, "https://", 8) == 0 || strncmp(u, "http://", 7) == 0;
}

/* IMAGE or DOCUMENT -> {type, source}. *out stays NULL when the part carries nothing. */
static int media_block(struct enc *e, const struct sb_part *p, size_t idx, json_t **out)
{
    *out = NULL;
    bool doc = p->type == SB_PART_DOCUMENT;
    json_t *src;
    if (p->data) {
        const char *mt = p->media_type;
        if (!mt && doc)
            mt = "application/pdf";
        if (!mt)
            return invalid(e->err, "messages", "an inline image needs a media type", idx);
        src = json_pack("{s:s,s:s,s:s}", "type", "base64", "media_type", mt, "data", p->data);
    } else if (p->url) {
        if (!is_http_url(p->url))
            return invalid(e->err, "messages",
                           "Anthropic only fetches http(s) URLs; send the file inline", idx);
        src = json_pack("{s:s,s:s}", "type", "url", "url", p->url);
    } else {
        return 0;
    }
    if (!src)
        return fail_oom(e);
    json_t *b = json_pack("{s:s,s:o}", "type", doc ? "document" : "image", "source", src);
    if (!b || with_cache_control(b, p->cache_control) != 0) {
        json_decref(b);
        return fail_oom(e);
    }
    *out = b;
    return 0;
}

/* A tool_result's content: a plain string when it is one text without cache_control, else an
 * array of text / image / document blocks (empty texts left out: Anthropic rejects them). */
static int result_content(struct enc *e, const struct sb_part *r, size_t idx, json_t **out)
{
    *out = NULL;
    if (r->nparts == 0)
        return 0;
    if (r->nparts == 1 && r->parts[0].type == SB_PART_TEXT && !r->parts[0].cache_control) {
        *out = json_string(r->parts[0].text ? r->parts[0].text : "");
        return *out ? 0 : fail_oom(e);
    }
    json_t *arr = json_array();
    if (!arr)
        return fail_oom(e);
    for (size_t i = 0; i < r->nparts; i++) {
        const struct sb_part *p = &r->parts[i];
        json_t *b = NULL;
        if (p->type == SB_PART_TEXT) {
            if (!p->text || !*p->text)
                continue;
            if (!(b = text_block(p->text, p->cache_control))) {
                json_decref(arr);
                return fail_oom(e);
            }
        } else if (p->type == SB_PART_IMAGE || p->type == SB_PART_DOCUMENT) {
            if (media_block(e, p, idx, &b) != 0) {
                json_decref(arr);
                return -1;
            }
            if (!b)
                continue;
        } else {
            continue;
        }
        if (json_array_append_new(arr, b) != 0) {
            json_decref(arr);
            return fail_oom(e);
        }
    }
    *out = arr;
    return 0;
}

static int tool_result_block(struct enc *e, const struct sb_part *p, size_t idx, json_t **out)
{
    *out = NULL;
    if (!p->id || !*p->id)
        return invalid(e->err, "messages", "a tool result without tool_call_id", idx);
    json_t *b = json_pack("{s:s,s:o}", "type", "tool_result", "tool_use_id", clean_id(p->id));
    if (!b)
        return fail_oom(e);
    json_t *content = NULL;
    if (result_content(e, p, idx, &content) != 0) {
        json_decref(b);
        return -1;
    }
    if ((content && json_object_set_new(b, "content", content) != 0) ||
        (p->is_error && json_object_set_new(b, "is_error", json_true()) != 0) ||
        with_cache_control(b, p->cache_control) != 0) {
        json_decref(b);
        return fail_oom(e);
    }
    *out = b;
    return 0;
}

/* Arguments are JSON text; Anthropic wants an object: anything else (empty, invalid, an
 * array) becomes {} rather than a failed request. */
static json_t *tool_input(const char *args)
{
    if (args && *args) {
        json_t *v = json_loads(args, 0, NULL);
        if (json_is_object(v))
            return v;
        json_decref(v);
    }
    return json_object();
}

static int tool_use_block(struct enc *e, const struct sb_part *p, size_t idx, json_t **out)
{
    *out = NULL;
    if (!p->id || !*p->id)
        return invalid(e->err, "messages", "a tool call without an id", idx);
    if (!p->name || !*p->name)
        return invalid(e->err, "messages", "a tool call without a function name", idx);
    json_t *b = json_pack("{s:s,s:o,s:s,s:o}", "type", "tool_use", "id", clean_id(p->id), "name",
                          p->name, "input", tool_input(p->arguments));
    if (!b || with_cache_control(b, p->cache_control) != 0) {
        json_decref(b);
        return fail_oom(e);
    }
    *out = b;
    return 0;
}

/* Appends the blocks of one canonical part to the three slots of a turn (slot arrays are
 * the caller's). A part Anthropic cannot carry is dropped (b stays NULL). */
static int part_blocks(struct enc *e, enum sb_role role, const struct sb_part *p, size_t idx,
                       json_t *first, json_t *middle, json_t *last)
{
    json_t *b = NULL;
    json_t *slot = middle;
    switch (p->type) {
    case SB_PART_TEXT:
        /* Anthropic rejects empty text blocks. */
        if (!p->text || !*p->text)
            return 0;
        if (!(b = text_block(p->text, p->cache_control)))
            return fail_oom(e);
        break;
    case SB_PART_IMAGE:
    case SB_PART_DOCUMENT:
        if (media_block(e, p, idx, &b) != 0)
            return -1;
        break;
    case SB_PART_TOOL_CALL:
        if (role != SB_ROLE_ASSISTANT)
            return 0;
        if (tool_use_block(e, p, idx, &b) != 0)
            return -1;
        slot = last;
        break;
    case SB_PART_TOOL_RESULT:
        if (role == SB_ROLE_ASSISTANT)
            return 0;
        if (tool_result_block(e, p, idx, &b) != 0)
            return -1;
        slot = first;
        break;
    case SB_PART_THINKING:
        /* Only Anthropic's own signed thinking goes back: an unsigned block is rejected, and
         * an empty one holding a Gemini thought signature means nothing here. */
        if (role != SB_ROLE_ASSISTANT || !p->text || !*p->text || !p->signature || !*p->signature)
            return 0;
        if (!(b = json_pack("{s:s,s:s,s:s}", "type", "thinking", "thinking", p->text, "signature",
                            p->signature)))
            return fail_oom(e);
        slot = first;
        break;
    case SB_PART_REDACTED_THINKING:
        if (role != SB_ROLE_ASSISTANT || !p->text || !*p->text)
            return 0;
        if (!(b = json_pack("{s:s,s:s}", "type", "redacted_thinking", "data", p->text)))
            return fail_oom(e);
        slot = first;
        break;
    }
    if (!b)
        return 0;
    if (json_array_append_new(slot, b) != 0)
        return fail_oom(e);
    return 0;
}

static int flush_turn(struct enc *e)
{
    if (e->role < 0)
        return 0;
    json_t *content = json_array();
    if (!content || json_array_extend(content, e->first) != 0 ||
        json_array_extend(content, e->middle) != 0 || json_array_extend(content, e->last) != 0) {
        json_decref(content);
        return fail_oom(e);
    }
    json_array_clear(e->first);
    json_array_clear(e->middle);
    json_array_clear(e->last);
    const char *role = e->role == SB_ROLE_ASSISTANT ? "assistant" : "user";
    if (json_array_append_new(e->messages,
                              json_pack("{s:s,s:o}", "role", role, "content", content)) != 0)
        return fail_oom(e);
    return 0;
}

static int add_system(struct enc *e, const struct sb_msg *m)
{
    for (size_t i = 0; i < m->nparts; i++) {
        const struct sb_part *p = &m->parts[i];
        if (p->type != SB_PART_TEXT || !p->text || !*p->text)
            continue;
        if (json_array_append_new(e->system, text_block(p->text, p->cache_control)) != 0)
            return fail_oom(e);
    }
    return 0;
}

/* Turns: system messages hoisted; user and tool messages are user turns; consecutive
 * same-role turns merged, tool_result blocks first in a user turn, thinking first and
 * tool_use last in an assistant turn. A message that gives no block does not split turns. */
static int build_messages(struct enc *e)
{
    const struct sb_canon_req *r = e->req;
    json_t *first = json_array(), *middle = json_array(), *last = json_array();
    int rc = -1;
    if (!first || !middle || !last) {
        fail_oom(e);
        goto out;
    }
    for (size_t i = 0; i < r->nmsgs; i++) {
        const struct sb_msg *m = &r->msgs[i];
        if (m->role == SB_ROLE_SYSTEM) {
            if (add_system(e, m) != 0)
                goto out;
            continue;
        }
        int role = m->role == SB_ROLE_ASSISTANT ? SB_ROLE_ASSISTANT : SB_ROLE_USER;
        for (size_t j = 0; j < m->nparts; j++)
            if (part_blocks(e, (enum sb_role)m->role, &m->parts[j], i, first, middle, last) != 0)
                goto out;
        if (json_array_size(first) + json_array_size(middle) + json_array_size(last) == 0)
            continue;
        if (role != e->role) {
            if (flush_turn(e) != 0)
                goto out;
            if (json_array_size(e->messages) == 0 && role == SB_ROLE_ASSISTANT) {
                invalid(e->err, "messages",
                        "Anthropic requires the conversation to start with a user message", i);
                goto out;
            }
            e->role = role;
        }
        if (json_array_extend(e->first, first) != 0 || json_array_extend(e->middle, middle) != 0 ||
            json_array_extend(e->last, last) != 0) {
            fail_oom(e);
            goto out;
        }
        json_array_clear(first);
        json_array_clear(middle);
        json_array_clear(last);
    }
    if (flush_turn(e) != 0)
        goto out;
    if (json_array_size(e->messages) == 0) {
        sb_error_set(e->err, 400, "invalid_request_error", "invalid_value", "messages",
                     "Anthropic requires at least one user message");
        goto out;
    }
    rc = 0;
out:
    json_decref(first);
    json_decref(middle);
    json_decref(last);
    return rc;
}

static int build_tools(struct enc *e, json_t *root)
{
    const struct sb_canon_req *r = e->req;
    if (r->ntools == 0)
        return 0;
    json_t *tools = json_array();
    if (!tools || json_object_set_new(root, "tools", tools) != 0)
        return fail_oom(e);
    for (size_t i = 0; i < r->ntools; i++) {
        const struct sb_tool *t = &r->tools[i];
        if (!t->name || !*t->name) {
            sb_error_set(e->err, 400, "invalid_request_error", "invalid_value", "tools",
                         "tools[%zu]: a tool needs a name", i);
            return -1;
        }
        json_t *schema = json_is_object(t->parameters)
                             ? json_incref(t->parameters)
                             : json_pack("{s:s,s:{}}", "type", "object", "properties");
        json_t *o = json_pack("{s:s,s:o}", "name", t->name, "input_schema", schema);
        if (!o ||
            (t->description &&
             json_object_set_new(o, "description", json_string(t->description)) != 0) ||
            with_cache_control(o, t->cache_control) != 0 || json_array_append_new(tools, o) != 0)
            return fail_oom(e);
    }
    /* Anthropic refuses tool_choice without tools, so it only goes with them. */
    const char *type = NULL;
    switch (r->tool_choice) {
    case SB_TC_UNSET:
        break;
    case SB_TC_AUTO:
        type = "auto";
        break;
    case SB_TC_NONE:
        type = "none";
        break;
    case SB_TC_REQUIRED:
        type = "any";
        break;
    case SB_TC_NAMED:
        type = "tool";
        break;
    }
    bool no_parallel = r->parallel_tool_calls == 0 && r->tool_choice != SB_TC_NONE;
    if (!type && no_parallel)
        type = "auto";
    if (!type)
        return 0;
    json_t *tc = json_pack("{s:s}", "type", type);
    if (!tc || json_object_set_new(root, "tool_choice", tc) != 0)
        return fail_oom(e);
    if (r->tool_choice == SB_TC_NAMED) {
        if (!r->tool_choice_name || !*r->tool_choice_name) {
            sb_error_set(e->err, 400, "invalid_request_error", "invalid_value", "tool_choice",
                         "tool_choice names no function");
            return -1;
        }
        if (json_object_set_new(tc, "name", json_string(r->tool_choice_name)) != 0)
            return fail_oom(e);
    }
    if (no_parallel && json_object_set_new(tc, "disable_parallel_tool_use", json_true()) != 0)
        return fail_oom(e);
    return 0;
}

static bool all_space(const char *s)
{
    for (; *s; s++)
        if (!(*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v'))
            return false;
    return true;
}

/* Anthropic asks that metadata.user_id carry no personal data: an e-mail address is left out. */
static bool looks_like_email(const char *s)
{
    const char *at = strchr(s, '@');
    return at && at > s && strchr(at + 1, '.') != NULL;
}

static int build_params(struct enc *e, json_t *root, int64_t budget)
{
    const struct sb_canon_req *r = e->req;
    if (r->nstop) {
        json_t *stops = json_array();
        if (!stops || json_object_set_new(root, "stop_sequences", stops) != 0)
            return fail_oom(e);
        for (size_t i = 0; i < r->nstop; i++) {
            /* Anthropic rejects whitespace-only stop sequences. */
            if (!r->stop[i] || all_space(r->stop[i]))
                continue;
            if (json_array_append_new(stops, json_string(r->stop[i])) != 0)
                return fail_oom(e);
        }
        if (json_array_size(stops) == 0)
            json_object_del(root, "stop_sequences");
    }
    /* With thinking on, Anthropic accepts only the default temperature and top_k, and top_p
     * of at least 0.95: the sampling knobs are left to the provider then. */
    if (budget <= 0) {
        if (r->has_temperature) {
            double t = r->temperature < 0 ? 0 : r->temperature > 1 ? 1 : r->temperature;
            if (json_object_set_new(root, "temperature", json_real(t)) != 0)
                return fail_oom(e);
        }
        if (r->has_top_p && json_object_set_new(root, "top_p", json_real(r->top_p)) != 0)
            return fail_oom(e);
        if (r->top_k >= 0 && json_object_set_new(root, "top_k", json_integer(r->top_k)) != 0)
            return fail_oom(e);
    }
    if (r->user && *r->user && !looks_like_email(r->user)) {
        if (json_object_set_new(root, "metadata", json_pack("{s:s}", "user_id", r->user)) != 0)
            return fail_oom(e);
    }
    if (budget > 0 && json_object_set_new(root, "thinking",
                                          json_pack("{s:s,s:I}", "type", "enabled", "budget_tokens",
                                                    (json_int_t)budget)) != 0)
        return fail_oom(e);
    if (r->response_format == SB_RF_JSON_SCHEMA &&
        json_object_set_new(root, "output_config",
                            json_pack("{s:{s:s,s:O}}", "format", "type", "json_schema", "schema",
                                      r->rf_schema)) != 0)
        return fail_oom(e);
    if (r->cache_control && json_object_set(root, "cache_control", r->cache_control) != 0)
        return fail_oom(e);
    if (r->stream && json_object_set_new(root, "stream", json_true()) != 0)
        return fail_oom(e);
    return 0;
}

static int64_t thinking_budget(const struct sb_canon_req *r)
{
    int64_t b = r->thinking_budget;
    if (b < 0)
        b = sb_canon_effort_budget(r->reasoning_effort);
    if (b <= 0)
        return 0;
    if (b < MIN_THINKING_BUDGET)
        b = MIN_THINKING_BUDGET;
    if (b > INT64_MAX - SB_CANON_DEFAULT_MAX_TOKENS)
        b = INT64_MAX - SB_CANON_DEFAULT_MAX_TOKENS;
    return b;
}

/* A JSON string exactly as jansson dumps it (the value is valid UTF-8, jansson checked it):
 * '"', '\\' and control characters escaped with jansson's short forms and upper-case \u00XX. */
static int write_str(struct sb_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = sb_buf_reserve(b, len + 2);
    if (rc == 0)
        rc = sb_buf_append_char(b, '"');
    size_t run = 0;
    for (size_t i = 0; i < len && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        char esc[6] = {'\\', (char)c, 0, 0, 0, 0};
        size_t el = 2;
        if (c == '\b')
            esc[1] = 'b';
        else if (c == '\f')
            esc[1] = 'f';
        else if (c == '\n')
            esc[1] = 'n';
        else if (c == '\r')
            esc[1] = 'r';
        else if (c == '\t')
            esc[1] = 't';
        else if (c < 0x20) {
            esc[1] = 'u', esc[2] = '0', esc[3] = '0';
            esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
            el = 6;
        }
        rc = sb_buf_append(b, s + run, i - run);
        if (rc == 0)
            rc = sb_buf_append(b, esc, el);
        run = i + 1;
    }
    if (rc == 0)
        rc = sb_buf_append(b, s + run, len - run);
    return rc ? rc : sb_buf_append_char(b, '"');
}

/* Appends the compact JSON text of `v`, byte for byte what json_dumps(JSON_COMPACT) gives,
 * without jansson's two passes (one to size, one to write) and its per-character UTF-8
 * decoding: the request body is dumped once, straight into the caller's buffer. Objects keep
 * insertion order, as jansson's dump does. */
static int write_json(struct sb_buf *b, const json_t *v, int depth)
{
    /* Trees come from json_loadb (at most 2048 deep) plus a few levels of ours. */
    if (depth > 4096)
        return -ENOMEM;
    int rc = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        rc = sb_buf_append_char(b, '{');
        bool first = true;
        for (void *it = json_object_iter((json_t *)v); it && rc == 0;
             it = json_object_iter_next((json_t *)v, it)) {
            if (!first)
                rc = sb_buf_append_char(b, ',');
            first = false;
            if (rc == 0)
                rc = write_str(b, json_object_iter_key(it), json_object_iter_key_len(it));
            if (rc == 0)
                rc = sb_buf_append_char(b, ':');
            if (rc == 0)
                rc = write_json(b, json_object_iter_value(it), depth + 1);
        }
        return rc ? rc : sb_buf_append_char(b, '}');
    }
    case JSON_ARRAY: {
        rc = sb_buf_append_char(b, '[');
        size_t n = json_array_size(v);
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (i)
                rc = sb_buf_append_char(b, ',');
            if (rc == 0)
                rc = write_json(b, json_array_get(v, i), depth + 1);
        }
        return rc ? rc : sb_buf_append_char(b, ']');
    }
    case JSON_STRING:
        return write_str(b, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        return sb_buf_append_i64(b, (int64_t)json_integer_value(v));
    case JSON_REAL: {
        /* jansson's own formatting of doubles (precision, ".0", exponent form). */
        char tmp[64];
        size_t n = json_dumpb(v, tmp, sizeof tmp, JSON_COMPACT | JSON_ENCODE_ANY);
        if (n == 0 || n > sizeof tmp)
            return -ENOMEM;
        return sb_buf_append(b, tmp, n);
    }
    case JSON_TRUE:
        return sb_buf_append(b, "true", 4);
    case JSON_FALSE:
        return sb_buf_append(b, "false", 5);
    case JSON_NULL:
        return sb_buf_append(b, "null", 4);
    }
    return -ENOMEM;
}

static int encode_request(const struct sb_canon_req *req, const char *model, struct sb_buf *out,
                          struct sb_error *err)
{
    if (req->n > 1)
        return unsupported(err, "n");
    if (req->logprobs)
        return unsupported(err, "logprobs");
    if (req->response_format == SB_RF_JSON_OBJECT) {
        sb_error_set(err, 400, "invalid_request_error", "unsupported_parameter", "response_format",
                     "'response_format' of type 'json_object' is not supported by Anthropic "
                     "models; use 'json_schema' with a schema");
        return -1;
    }
    if (req->response_format == SB_RF_JSON_SCHEMA && !json_is_object(req->rf_schema)) {
        sb_error_set(err, 400, "invalid_request_error", "invalid_value", "response_format",
                     "'response_format' of type 'json_schema' needs a schema object");
        return -1;
    }
    const char *m = model ? model : req->model;
    if (!m || !*m) {
        sb_error_set(err, 400, "invalid_request_error", "invalid_value", "model",
                     "no model to send to Anthropic");
        return -1;
    }

    struct enc e = {.req = req, .err = err, .role = -1};
    int rc = -1;
    json_t *root = json_object();
    e.system = json_array();
    e.messages = json_array();
    e.first = json_array();
    e.middle = json_array();
    e.last = json_array();
    if (!root || !e.system || !e.messages || !e.first || !e.middle || !e.last) {
        fail_oom(&e);
        goto out;
    }
    int64_t budget = thinking_budget(req);
    int64_t max_tokens = req->max_tokens >= 0 ? req->max_tokens : SB_CANON_DEFAULT_MAX_TOKENS;
    if (budget > 0 && max_tokens <= budget)
        max_tokens = budget + SB_CANON_DEFAULT_MAX_TOKENS;
    if (json_object_set_new(root, "model", json_string(m)) != 0 ||
        json_object_set_new(root, "max_tokens", json_integer((json_int_t)max_tokens)) != 0) {
        fail_oom(&e);
        goto out;
    }
    if (build_messages(&e) != 0)
        goto out;
    size_t nsys = json_array_size(e.system);
    if (nsys == 1 && !json_object_get(json_array_get(e.system, 0), "cache_control")) {
        json_t *text = json_object_get(json_array_get(e.system, 0), "text");
        if (json_object_set(root, "system", text) != 0) {
            fail_oom(&e);
            goto out;
        }
    } else if (nsys > 0 && json_object_set(root, "system", e.system) != 0) {
        fail_oom(&e);
        goto out;
    }
    if (json_object_set(root, "messages", e.messages) != 0) {
        fail_oom(&e);
        goto out;
    }
    if (build_tools(&e, root) != 0 || build_params(&e, root, budget) != 0)
        goto out;

    size_t before = out->len;
    int r = write_json(out, root, 0);
    if (r != 0) {
        if (out->len > before) {
            out->len = before;
            out->data[before] = '\0';
        }
        if (r == -E2BIG)
            sb_error_set(err, 413, "invalid_request_error", "request_too_large", NULL,
                         "the request for Anthropic is larger than the configured limit");
        else
            fail_oom(&e);
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    json_decref(e.system);
    json_decref(e.messages);
    json_decref(e.first);
    json_decref(e.middle);
    json_decref(e.last);
    return rc;
}

/* ================================================================== errors */

struct err_type {
    const char *type;
    int status;
    enum sb_err_kind kind;
};

static const struct err_type err_types[] = {
    {"invalid_request_error", 400, SB_ERRK_INVALID_REQUEST},
    {"authentication_error", 401, SB_ERRK_AUTH},
    {"billing_error", 402, SB_ERRK_BILLING},
    {"permission_error", 403, SB_ERRK_PERMISSION},
    {"not_found_error", 404, SB_ERRK_NOT_FOUND},
    {"request_too_large", 413, SB_ERRK_TOO_LARGE},
    {"rate_limit_error", 429, SB_ERRK_RATE_LIMIT},
    {"api_error", 500, SB_ERRK_SERVER},
    {"timeout_error", 504, SB_ERRK_TIMEOUT},
    {"overloaded_error", 529, SB_ERRK_OVERLOADED},
};

static const struct err_type *err_type_find(const char *type)
{
    if (!type)
        return NULL;
    for (size_t i = 0; i < sizeof err_types / sizeof err_types[0]; i++)
        if (strcmp(err_types[i].type, type) == 0)
            return &err_types[i];
    return NULL;
}

static bool contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0)
            return true;
    return false;
}

/* Fills out from an Anthropic error object {type, message}. status 0: the status the type
 * implies (errors inside a 200 stream carry none). */
static void error_from_obj(int status, const json_t *obj, struct sb_canon_error *out)
{
    const char *type = json_string_value(json_object_get(obj, "type"));
    const char *msg = json_string_value(json_object_get(obj, "message"));
    const struct err_type *t = err_type_find(type);
    if (status <= 0)
        status = t ? t->status : 500;
    enum sb_err_kind kind = t ? t->kind : sb_err_kind_of_status(status);
    if (msg) {
        /* Anthropic reports an empty credit balance as a 400 invalid_request_error. */
        if (contains_ci(msg, "credit balance"))
            kind = SB_ERRK_BILLING;
        else if (contains_ci(msg, "prompt is too long") || contains_ci(msg, "exceed context limit"))
            kind = SB_ERRK_CONTEXT_WINDOW;
    }
    if (msg && *msg)
        sb_canon_error_set(out, status, kind, type, "%s", msg);
    else
        sb_canon_error_set(out, status, kind, type, "Anthropic returned HTTP %d", status);
}

static int decode_error(int status, const char *body, size_t len, struct sb_canon_error *out)
{
    json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *eo = json_object_get(root, "error");
    if (json_is_object(eo)) {
        error_from_obj(status, eo, out);
    } else {
        sb_canon_error_set(out, status, sb_err_kind_of_status(status), "",
                           "Anthropic returned HTTP %d", status);
    }
    json_decref(root);
    return 0;
}

/* ================================================================== events */

static void ev_init(struct sb_canon_event *ev, enum sb_ev_type type)
{
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    sb_usage_init(&ev->usage);
}

static int emit_ev(sb_canon_emit_cb emit, void *ud, const struct sb_canon_event *ev)
{
    return emit(ud, ev) ? SB_CANON_E_STOP : 0;
}

static enum sb_finish finish_of(const char *s)
{
    if (!s)
        return SB_FINISH_NONE;
    if (strcmp(s, "stop_sequence") == 0)
        return SB_FINISH_STOP_SEQUENCE;
    if (strcmp(s, "max_tokens") == 0)
        return SB_FINISH_LENGTH;
    if (strcmp(s, "tool_use") == 0)
        return SB_FINISH_TOOL_CALLS;
    if (strcmp(s, "refusal") == 0)
        return SB_FINISH_REFUSAL;
    if (strcmp(s, "model_context_window_exceeded") == 0)
        return SB_FINISH_CONTEXT_WINDOW;
    if (strcmp(s, "pause_turn") == 0)
        return SB_FINISH_PAUSE;
    return SB_FINISH_STOP;
}

static void usage_field(const json_t *o, const char *key, int64_t *dst)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_integer(v) && json_integer_value(v) >= 0)
        *dst = (int64_t)json_integer_value(v);
}

/* Latest non-null values win: message_delta repeats the cumulative counts. */
static void usage_read(const json_t *u, struct sb_usage *dst)
{
    if (!json_is_object(u))
        return;
    usage_field(u, "input_tokens", &dst->input);
    usage_field(u, "cache_read_input_tokens", &dst->cache_read);
    usage_field(u, "cache_creation_input_tokens", &dst->cache_write);
    usage_field(u, "output_tokens", &dst->output);
    usage_field(json_object_get(u, "output_tokens_details"), "thinking_tokens", &dst->reasoning);
}

static void usage_input_only(struct sb_usage *u)
{
    u->output = u->reasoning = -1;
}

static const char *str_or_empty(const json_t *v, size_t *len)
{
    if (json_is_string(v)) {
        *len = json_string_length(v);
        return json_string_value(v);
    }
    *len = 0;
    return "";
}

static int emit_error_obj(const json_t *eo, sb_canon_emit_cb emit, void *ud)
{
    struct sb_canon_error err;
    error_from_obj(0, eo, &err);
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_ERROR);
    ev.error = &err;
    return emit_ev(emit, ud, &ev);
}

/* One content block of a whole response. Server tool blocks and unknown types are skipped. */
static int response_block(const json_t *blk, int *index, sb_canon_emit_cb emit, void *ud)
{
    const char *type = json_string_value(json_object_get(blk, "type"));
    if (!type)
        return 0;
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_BLOCK_START);
    ev.index = *index;
    const json_t *text = NULL, *sig = NULL;
    char *args = NULL;
    if (strcmp(type, "text") == 0) {
        ev.block = SB_BLOCK_TEXT;
        text = json_object_get(blk, "text");
    } else if (strcmp(type, "thinking") == 0) {
        ev.block = SB_BLOCK_THINKING;
        text = json_object_get(blk, "thinking");
        sig = json_object_get(blk, "signature");
    } else if (strcmp(type, "redacted_thinking") == 0) {
        ev.block = SB_BLOCK_REDACTED_THINKING;
        text = json_object_get(blk, "data");
    } else if (strcmp(type, "tool_use") == 0) {
        ev.block = SB_BLOCK_TOOL_CALL;
        ev.id = json_string_value(json_object_get(blk, "id"));
        ev.name = json_string_value(json_object_get(blk, "name"));
        if (!ev.id || !ev.name)
            return SB_CANON_E_INVALID;
        const json_t *input = json_object_get(blk, "input");
        args = input ? json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY) : strdup("{}");
        if (!args)
            return -ENOMEM;
    } else {
        return 0;
    }
    int rc = emit_ev(emit, ud, &ev);
    if (rc)
        goto out;
    ev.type = SB_EV_DELTA;
    ev.id = ev.name = NULL;
    if (args) {
        ev.text = args;
        ev.len = strlen(args);
    } else {
        ev.text = str_or_empty(text, &ev.len);
    }
    if ((rc = emit_ev(emit, ud, &ev)))
        goto out;
    if (json_is_string(sig) && json_string_length(sig) > 0) {
        ev.type = SB_EV_SIGNATURE;
        ev.text = json_string_value(sig);
        ev.len = json_string_length(sig);
        if ((rc = emit_ev(emit, ud, &ev)))
            goto out;
    }
    ev.type = SB_EV_BLOCK_STOP;
    ev.text = NULL;
    ev.len = 0;
    rc = emit_ev(emit, ud, &ev);
    (*index)++;
out:
    free(args);
    return rc;
}

/* ------------------------------------------------------------------ response, fast path */

/* A whole response is read from the scanner's spans in two passes: the first checks every
 * member the decoder reads and copies the strings, emitting nothing; the second emits. A
 * document the first pass is not sure to read exactly as jansson does (see lex_ok), or any
 * shape that would end in an error, goes to the tree path before anything was emitted. */
#define RESP_FAST_DEPTH  64
#define RESP_FAST_BLOCKS 64
#define RESP_FAST_STRS   (5 + 4 * RESP_FAST_BLOCKS)

struct rfast {
    const char *s;
    size_t n;
    char *strs[RESP_FAST_STRS]; /* copies the events point into, freed at the end */
    size_t nstrs;
};

struct rfast_block {
    enum sb_block_kind kind;
    const char *text, *sig, *id, *name;
    size_t len, sig_len;
    char *args; /* TOOL_CALL: json_dumps of input, owned */
};

/* A string value's unescaped copy (NUL-terminated, kept in f->strs); NULL for anything but a
 * string, and *ok false when it cannot be copied. */
static const char *rf_str(struct rfast *f, const struct sb_json_span *v, size_t *len, bool *ok)
{
    if (len)
        *len = 0;
    if (v->type != SB_JSON_STRING)
        return NULL;
    size_t raw = v->end - v->start - 2, l = raw;
    char *c = f->nstrs < RESP_FAST_STRS ? malloc(raw + 1) : NULL;
    if (!c) {
        *ok = false;
        return NULL;
    }
    f->strs[f->nstrs++] = c;
    const char *src = f->s + v->start + 1;
    if (!memchr(src, '\\', raw)) {
        memcpy(c, src, raw);
        c[raw] = '\0';
    } else if (sb_json_string_copy(f->s, f->n, v, c, raw + 1, &l) != 0 || memchr(c, '\0', l)) {
        *ok = false;
        return NULL;
    }
    if (len)
        *len = l;
    return c;
}

static bool rf_get(const struct rfast *f, const struct sb_json_span *obj, const char *const *keys,
                   size_t nkeys, struct sb_json_member *out)
{
    int counts[SB_JSON_MANY_MAX];
    if (sb_json_object_get_many(f->s, f->n, obj, keys, nkeys, out, counts) != 0)
        return false;
    for (size_t i = 0; i < nkeys; i++)
        if (counts[i] > 1)
            return false;
    return true;
}

/* usage_field on a span: a non-negative integer replaces *dst. */
static void rf_usage_field(const struct rfast *f, const struct sb_json_span *v, int64_t *dst)
{
    int64_t x;
    if (v->type == SB_JSON_NUMBER && sb_json_int64(f->s, f->n, v, &x) == 0 && x >= 0)
        *dst = x;
}

static bool rf_usage(const struct rfast *f, const struct sb_json_span *u, struct sb_usage *dst)
{
    static const char *const keys[] = {"input_tokens", "cache_read_input_tokens",
                                       "cache_creation_input_tokens", "output_tokens",
                                       "output_tokens_details"};
    static const char *const dkeys[] = {"thinking_tokens"};
    struct sb_json_member m[5], dm;
    if (u->type != SB_JSON_OBJECT)
        return true;
    if (!rf_get(f, u, keys, 5, m))
        return false;
    rf_usage_field(f, &m[0].value, &dst->input);
    rf_usage_field(f, &m[1].value, &dst->cache_read);
    rf_usage_field(f, &m[2].value, &dst->cache_write);
    rf_usage_field(f, &m[3].value, &dst->output);
    if (m[4].value.type == SB_JSON_OBJECT) {
        if (!rf_get(f, &m[4].value, dkeys, 1, &dm))
            return false;
        rf_usage_field(f, &dm.value, &dst->reasoning);
    }
    return true;
}

/* First pass over one content block; *skip for what response_block skips. */
static bool rf_block(struct rfast *f, const struct sb_json_span *blk, struct rfast_block *b,
                     bool *skip)
{
    enum { B_TYPE, B_TEXT, B_THINKING, B_SIG, B_DATA, B_ID, B_NAME, B_INPUT, B_N };
    static const char *const keys[] = {"type", "text", "thinking", "signature",
                                       "data", "id",   "name",     "input"};
    struct sb_json_member m[B_N];
    *skip = true;
    if (blk->type != SB_JSON_OBJECT)
        return true;
    if (!rf_get(f, blk, keys, B_N, m))
        return false;
    const struct sb_json_span *t = &m[B_TYPE].value;
    if (t->type != SB_JSON_STRING)
        return true;
    const char *type = f->s + t->start + 1;
    size_t tl = t->end - t->start - 2;
    if (memchr(type, '\\', tl))
        return false; /* an escaped spelling: the tree path compares it */
#define TYPE_IS(lit) (tl == sizeof(lit) - 1 && memcmp(type, lit, tl) == 0)
    bool ok = true;
    const struct sb_json_span *text;
    if (TYPE_IS("text")) {
        b->kind = SB_BLOCK_TEXT;
        text = &m[B_TEXT].value;
    } else if (TYPE_IS("thinking")) {
        b->kind = SB_BLOCK_THINKING;
        text = &m[B_THINKING].value;
        b->sig = rf_str(f, &m[B_SIG].value, &b->sig_len, &ok);
    } else if (TYPE_IS("redacted_thinking")) {
        b->kind = SB_BLOCK_REDACTED_THINKING;
        text = &m[B_DATA].value;
    } else if (TYPE_IS("tool_use")) {
        b->kind = SB_BLOCK_TOOL_CALL;
        b->id = rf_str(f, &m[B_ID].value, NULL, &ok);
        b->name = rf_str(f, &m[B_NAME].value, NULL, &ok);
        if (!ok || !b->id || !b->name)
            return false; /* the tree path reports it, after the blocks before it */
        const struct sb_json_span *in = &m[B_INPUT].value;
        if (in->type == SB_JSON_INVALID) {
            b->args = strdup("{}");
        } else {
            json_t *j = json_loadb(f->s + in->start, in->end - in->start, JSON_DECODE_ANY, NULL);
            b->args = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            json_decref(j);
        }
        *skip = false;
        return b->args != NULL;
    } else {
        return true;
    }
#undef TYPE_IS
    *skip = false;
    b->text = rf_str(f, text, &b->len, &ok);
    if (!b->text)
        b->text = "";
    return ok;
}

static int rf_emit_block(const struct rfast_block *b, int index, sb_canon_emit_cb emit, void *ud)
{
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_BLOCK_START);
    ev.index = index;
    ev.block = b->kind;
    ev.id = b->id;
    ev.name = b->name;
    int rc = emit_ev(emit, ud, &ev);
    if (rc)
        return rc;
    ev.type = SB_EV_DELTA;
    ev.id = ev.name = NULL;
    if (b->args) {
        ev.text = b->args;
        ev.len = strlen(b->args);
    } else {
        ev.text = b->text;
        ev.len = b->len;
    }
    if ((rc = emit_ev(emit, ud, &ev)))
        return rc;
    if (b->sig && b->sig_len > 0) {
        ev.type = SB_EV_SIGNATURE;
        ev.text = b->sig;
        ev.len = b->sig_len;
        if ((rc = emit_ev(emit, ud, &ev)))
            return rc;
    }
    ev.type = SB_EV_BLOCK_STOP;
    ev.text = NULL;
    ev.len = 0;
    return emit_ev(emit, ud, &ev);
}

/* 1: not taken (nothing emitted), the tree path decodes it; otherwise decode_response's
 * result. */
static int decode_response_fast(const char *body, size_t len, sb_canon_emit_cb emit, void *ud)
{
    enum { R_TYPE, R_CONTENT, R_ID, R_MODEL, R_USAGE, R_STOP_REASON, R_STOP_SEQ, R_N };
    static const char *const keys[] = {"type",  "content",     "id",           "model",
                                       "usage", "stop_reason", "stop_sequence"};
    struct sb_json_index idx;
    struct sb_json_member m[R_N];
    int counts[R_N];
    if (!body || sb_json_validate_index(body, len, RESP_FAST_DEPTH, &idx) != 0 ||
        idx.root.type != SB_JSON_OBJECT || !sb_json_jansson_same(body, len) ||
        sb_json_index_get_many(body, len, &idx, keys, R_N, m, counts) != 0)
        return 1;
    for (size_t i = 0; i < R_N; i++)
        if (counts[i] > 1)
            return 1;
    const struct sb_json_span *type = &m[R_TYPE].value, *content = &m[R_CONTENT].value;
    if (type->type == SB_JSON_STRING &&
        (memchr(body + type->start, '\\', type->end - type->start) ||
         (type->end - type->start == 7 && memcmp(body + type->start, "\"error\"", 7) == 0)))
        return 1;
    if (content->type != SB_JSON_INVALID && content->type != SB_JSON_ARRAY)
        return 1;
    struct rfast fs = {.s = body, .n = len, .nstrs = 0}, *f = &fs;
    struct rfast_block blocks[RESP_FAST_BLOCKS];
    int rc = 1, nb = 0;
    bool ok = true;
    size_t pos = 0;
    struct sb_json_span e;
    int r;
    while (ok && content->type == SB_JSON_ARRAY &&
           (r = sb_json_array_next(body, len, content, &pos, &e)) != SB_JSON_NOT_FOUND) {
        bool skip;
        if (nb < RESP_FAST_BLOCKS)
            memset(&blocks[nb], 0, sizeof blocks[nb]);
        if (r != 0 || nb == RESP_FAST_BLOCKS || !rf_block(f, &e, &blocks[nb], &skip)) {
            ok = false;
            nb += nb < RESP_FAST_BLOCKS; /* the block's args, if any, are freed below */
            break;
        }
        if (!skip)
            nb++;
    }
    struct sb_usage usage;
    sb_usage_init(&usage);
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_START);
    ev.id = rf_str(f, &m[R_ID].value, NULL, &ok);
    ev.model = rf_str(f, &m[R_MODEL].value, NULL, &ok);
    const char *stop_reason = rf_str(f, &m[R_STOP_REASON].value, NULL, &ok);
    const char *stop_seq = rf_str(f, &m[R_STOP_SEQ].value, NULL, &ok);
    if (!ok || !rf_usage(f, &m[R_USAGE].value, &usage))
        goto out;
    /* Nothing can fail from here on: the events are the tree path's. */
    ev.usage = usage;
    usage_input_only(&ev.usage);
    if ((rc = emit_ev(emit, ud, &ev)))
        goto out;
    for (int i = 0; i < nb; i++)
        if ((rc = rf_emit_block(&blocks[i], i, emit, ud)))
            goto out;
    ev_init(&ev, SB_EV_FINISH);
    ev.finish = finish_of(stop_reason);
    ev.stop_sequence = stop_seq;
    if ((rc = emit_ev(emit, ud, &ev)))
        goto out;
    ev_init(&ev, SB_EV_USAGE);
    ev.usage = usage;
    rc = emit_ev(emit, ud, &ev);
out:
    for (int i = 0; i < nb; i++)
        free(blocks[i].args);
    for (size_t i = 0; i < f->nstrs; i++)
        free(f->strs[i]);
    return rc;
}

/* The tree path: every response the fast path passes on. */
static int decode_response_tree(const char *body, size_t len, sb_canon_emit_cb emit, void *ud)
{
    json_t *root = body ? json_loadb(body, len, 0, NULL) : NULL;
    int rc = SB_CANON_E_INVALID;
    if (!json_is_object(root))
        goto out;
    const char *type = json_string_value(json_object_get(root, "type"));
    if (type && strcmp(type, "error") == 0) {
        json_t *eo = json_object_get(root, "error");
        rc = emit_error_obj(json_is_object(eo) ? eo : root, emit, ud);
        goto out;
    }
    const json_t *content = json_object_get(root, "content");
    if (content && !json_is_array(content))
        goto out;
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_START);
    ev.id = json_string_value(json_object_get(root, "id"));
    ev.model = json_string_value(json_object_get(root, "model"));
    struct sb_usage usage;
    sb_usage_init(&usage);
    usage_read(json_object_get(root, "usage"), &usage);
    ev.usage = usage;
    usage_input_only(&ev.usage);
    if ((rc = emit_ev(emit, ud, &ev)))
        goto out;
    int index = 0;
    size_t i;
    const json_t *blk;
    json_array_foreach(content, i, blk)
    {
        if (!json_is_object(blk))
            continue;
        if ((rc = response_block(blk, &index, emit, ud)))
            goto out;
    }
    ev_init(&ev, SB_EV_FINISH);
    ev.finish = finish_of(json_string_value(json_object_get(root, "stop_reason")));
    ev.stop_sequence = json_string_value(json_object_get(root, "stop_sequence"));
    if ((rc = emit_ev(emit, ud, &ev)))
        goto out;
    ev_init(&ev, SB_EV_USAGE);
    ev.usage = usage;
    rc = emit_ev(emit, ud, &ev);
out:
    json_decref(root);
    return rc;
}

static int decode_response(const char *body, size_t len, sb_canon_emit_cb emit, void *ud)
{
    int rc = decode_response_fast(body, len, emit, ud);
    return rc == 1 ? decode_response_tree(body, len, emit, ud) : rc;
}

/* ================================================================== stream */

struct astream {
    struct sb_sse_parser sse;
    sb_canon_emit_cb emit;
    void *ud;
    bool started;
    bool done;   /* message_stop or an error event: the rest of the body is ignored */
    bool failed; /* a feed returned non-zero */
    bool open;   /* a block is open (open_skip: one this decoder does not pass on) */
    bool open_skip;
    json_int_t open_aidx; /* Anthropic's index of the open block */
    int open_cidx;        /* its canonical index */
    enum sb_block_kind open_kind;
    int nblocks;
    struct sb_usage usage;
    bool has_finish;
    enum sb_finish finish;
    char *stop_sequence;
    struct sb_buf text; /* fast_delta's unescaped text, reused across events */
};

static void *stream_new(size_t max_event_bytes)
{
    struct astream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    sb_sse_parser_init(&s->sse, max_event_bytes);
    sb_usage_init(&s->usage);
    /* An unescaped string is never longer than the event that held it. */
    sb_buf_init(&s->text, max_event_bytes ? max_event_bytes + 1 : SIZE_MAX / 2);
    return s;
}

static void stream_free(void *st)
{
    struct astream *s = st;
    if (!s)
        return;
    sb_sse_parser_free(&s->sse);
    sb_buf_free(&s->text);
    free(s->stop_sequence);
    free(s);
}

static int st_emit(struct astream *s, const struct sb_canon_event *ev)
{
    return emit_ev(s->emit, s->ud, ev);
}

static int on_message_start(struct astream *s, const json_t *d)
{
    if (s->started)
        return SB_CANON_E_INVALID;
    const json_t *msg = json_object_get(d, "message");
    if (!json_is_object(msg))
        return SB_CANON_E_INVALID;
    s->started = true;
    usage_read(json_object_get(msg, "usage"), &s->usage);
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_START);
    ev.id = json_string_value(json_object_get(msg, "id"));
    ev.model = json_string_value(json_object_get(msg, "model"));
    ev.usage = s->usage;
    usage_input_only(&ev.usage);
    return st_emit(s, &ev);
}

static int on_block_start(struct astream *s, const json_t *d)
{
    const json_t *idx = json_object_get(d, "index");
    const json_t *cb = json_object_get(d, "content_block");
    if (!s->started || s->open || !json_is_integer(idx) || json_integer_value(idx) < 0 ||
        !json_is_object(cb))
        return SB_CANON_E_INVALID;
    const char *type = json_string_value(json_object_get(cb, "type"));
    s->open = true;
    s->open_aidx = json_integer_value(idx);
    s->open_skip = false;
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_BLOCK_START);
    const json_t *initial = NULL;
    if (type && strcmp(type, "text") == 0) {
        ev.block = SB_BLOCK_TEXT;
        initial = json_object_get(cb, "text");
    } else if (type && strcmp(type, "thinking") == 0) {
        ev.block = SB_BLOCK_THINKING;
        initial = json_object_get(cb, "thinking");
    } else if (type && strcmp(type, "redacted_thinking") == 0) {
        ev.block = SB_BLOCK_REDACTED_THINKING;
        initial = json_object_get(cb, "data");
    } else if (type && strcmp(type, "tool_use") == 0) {
        ev.block = SB_BLOCK_TOOL_CALL;
        ev.id = json_string_value(json_object_get(cb, "id"));
        ev.name = json_string_value(json_object_get(cb, "name"));
        if (!ev.id || !ev.name)
            return SB_CANON_E_INVALID;
    } else {
        /* server_tool_use, web_search_tool_result and types yet to come: skipped with their
         * deltas. */
        s->open_skip = true;
        return 0;
    }
    if (s->nblocks == INT_MAX)
        return SB_CANON_E_INVALID;
    s->open_cidx = s->nblocks++;
    s->open_kind = ev.block;
    ev.index = s->open_cidx;
    int rc = st_emit(s, &ev);
    /* Text and thinking starts are empty in practice; anything in them is content, and a
     * redacted block's data arrives only here. */
    if (rc == 0 && json_is_string(initial) &&
        (json_string_length(initial) > 0 || ev.block == SB_BLOCK_REDACTED_THINKING)) {
        ev_init(&ev, SB_EV_DELTA);
        ev.index = s->open_cidx;
        ev.block = s->open_kind;
        ev.text = json_string_value(initial);
        ev.len = json_string_length(initial);
        rc = st_emit(s, &ev);
    }
    return rc;
}

static int on_block_delta(struct astream *s, const json_t *d)
{
    const json_t *idx = json_object_get(d, "index");
    const json_t *delta = json_object_get(d, "delta");
    if (!s->open || !json_is_integer(idx) || json_integer_value(idx) != s->open_aidx ||
        !json_is_object(delta))
        return SB_CANON_E_INVALID;
    if (s->open_skip)
        return 0;
    const char *type = json_string_value(json_object_get(delta, "type"));
    if (!type)
        return SB_CANON_E_INVALID;
    const char *key;
    enum sb_block_kind want;
    enum sb_ev_type evt = SB_EV_DELTA;
    if (strcmp(type, "text_delta") == 0) {
        key = "text";
        want = SB_BLOCK_TEXT;
    } else if (strcmp(type, "thinking_delta") == 0) {
        key = "thinking";
        want = SB_BLOCK_THINKING;
    } else if (strcmp(type, "signature_delta") == 0) {
        key = "signature";
        want = SB_BLOCK_THINKING;
        evt = SB_EV_SIGNATURE;
    } else if (strcmp(type, "input_json_delta") == 0) {
        key = "partial_json";
        want = SB_BLOCK_TOOL_CALL;
    } else {
        return 0; /* citations_delta and later additions */
    }
    const json_t *v = json_object_get(delta, key);
    if (want != s->open_kind || !json_is_string(v))
        return SB_CANON_E_INVALID;
    struct sb_canon_event ev;
    ev_init(&ev, evt);
    ev.index = s->open_cidx;
    ev.block = s->open_kind;
    ev.text = json_string_value(v);
    ev.len = json_string_length(v);
    return st_emit(s, &ev);
}

static int close_block(struct astream *s)
{
    bool skip = s->open_skip;
    s->open = s->open_skip = false;
    if (skip)
        return 0;
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_BLOCK_STOP);
    ev.index = s->open_cidx;
    ev.block = s->open_kind;
    return st_emit(s, &ev);
}

static int on_block_stop(struct astream *s, const json_t *d)
{
    const json_t *idx = json_object_get(d, "index");
    if (!s->open || !json_is_integer(idx) || json_integer_value(idx) != s->open_aidx)
        return SB_CANON_E_INVALID;
    return close_block(s);
}

static int on_message_delta(struct astream *s, const json_t *d)
{
    if (!s->started || s->open)
        return SB_CANON_E_INVALID;
    const json_t *delta = json_object_get(d, "delta");
    const json_t *reason = json_object_get(delta, "stop_reason");
    if (json_is_string(reason)) {
        s->has_finish = true;
        s->finish = finish_of(json_string_value(reason));
    }
    const json_t *seq = json_object_get(delta, "stop_sequence");
    if (json_is_string(seq)) {
        char *c = sb_canon_strndup(json_string_value(seq), json_string_length(seq));
        if (!c)
            return -ENOMEM;
        free(s->stop_sequence);
        s->stop_sequence = c;
    }
    usage_read(json_object_get(d, "usage"), &s->usage);
    return 0;
}

static int on_message_stop(struct astream *s)
{
    if (!s->started)
        return SB_CANON_E_INVALID;
    int rc = 0;
    /* A block left open has ended with the message: close it so the order holds. */
    if (s->open && (rc = close_block(s)))
        return rc;
    s->done = true;
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_FINISH);
    ev.finish = s->has_finish ? s->finish : SB_FINISH_STOP;
    ev.stop_sequence = s->stop_sequence;
    if ((rc = st_emit(s, &ev)))
        return rc;
    ev_init(&ev, SB_EV_USAGE);
    ev.usage = s->usage;
    return st_emit(s, &ev);
}

/* True if the string value at v may hold a \u escape, which jansson and the scanner treat
 * differently ("\u0000", lone surrogates): such events take the jansson path. */
static bool may_have_u_escape(const char *d, const struct sb_json_span *v)
{
    for (size_t i = v->start; i + 1 < v->end; i++)
        if (d[i] == '\\' && d[i + 1] == 'u')
            return true;
    return false;
}

/* A string member's value unescaped into s->text; false if it cannot be taken as is. */
static bool fast_string(struct astream *s, const char *d, size_t n, const struct sb_json_span *v)
{
    if (v->type != SB_JSON_STRING || may_have_u_escape(d, v))
        return false;
    size_t raw = v->end - v->start, len = 0;
    sb_buf_reset(&s->text);
    if (sb_buf_reserve(&s->text, raw))
        return false;
    if (sb_json_string_copy(d, n, v, s->text.data, raw + 1, &len) != 0)
        return false;
    s->text.len = len;
    return true;
}

/* content_block_delta is nearly every event of a stream. The plain shape
 * {"type":"content_block_delta","index":N,"delta":{"type":"..._delta","<key>":"..."}} of an
 * open block is read with the scanner, without building a tree; 1 if it was handled (*rc set),
 * 0 to take the general jansson path, which gives the same result for the shapes accepted
 * here and handles every other one (duplicates, other members, errors). */
static int fast_delta(struct astream *s, const char *d, size_t n, int *rc)
{
    static const char *const root_keys[] = {"type", "index", "delta"};
    static const char *const delta_keys[] = {"type", "text", "thinking", "signature",
                                             "partial_json"};
    if (!s->open || s->open_skip)
        return 0;
    struct sb_json_index idx;
    if (sb_json_validate_index(d, n, 64, &idx) != 0 || idx.root.type != SB_JSON_OBJECT ||
        !idx.complete || idx.n != 3)
        return 0;
    struct sb_json_member m[3];
    int cnt[3];
    if (sb_json_index_get_many(d, n, &idx, root_keys, 3, m, cnt) != 0 || cnt[0] != 1 ||
        cnt[1] != 1 || cnt[2] != 1 || m[2].value.type != SB_JSON_OBJECT ||
        !sb_json_string_eq(d, n, &m[0].value, "content_block_delta"))
        return 0;
    int64_t aidx;
    if (m[1].value.type != SB_JSON_NUMBER || sb_json_int64(d, n, &m[1].value, &aidx) != 0 ||
        aidx != s->open_aidx)
        return 0;
    /* The delta must hold exactly its type and the one key that type names. */
    struct sb_json_index didx;
    const struct sb_json_span *dv = &m[2].value;
    if (sb_json_validate_index(d + dv->start, dv->end - dv->start, 64, &didx) != 0 ||
        !didx.complete || didx.n != 2)
        return 0;
    struct sb_json_member dm[5];
    int dc[5];
    if (sb_json_object_get_many(d, n, dv, delta_keys, 5, dm, dc) != 0 || dc[0] != 1)
        return 0;
    size_t key;
    enum sb_block_kind want;
    enum sb_ev_type evt = SB_EV_DELTA;
    if (sb_json_string_eq(d, n, &dm[0].value, "text_delta")) {
        key = 1;
        want = SB_BLOCK_TEXT;
    } else if (sb_json_string_eq(d, n, &dm[0].value, "thinking_delta")) {
        key = 2;
        want = SB_BLOCK_THINKING;
    } else if (sb_json_string_eq(d, n, &dm[0].value, "signature_delta")) {
        key = 3;
        want = SB_BLOCK_THINKING;
        evt = SB_EV_SIGNATURE;
    } else if (sb_json_string_eq(d, n, &dm[0].value, "input_json_delta")) {
        key = 4;
        want = SB_BLOCK_TOOL_CALL;
    } else {
        return 0;
    }
    if (dc[key] != 1 || want != s->open_kind || may_have_u_escape(d, &dm[0].value) ||
        may_have_u_escape(d, &m[0].value) || !fast_string(s, d, n, &dm[key].value))
        return 0;
    struct sb_canon_event ev;
    ev_init(&ev, evt);
    ev.index = s->open_cidx;
    ev.block = s->open_kind;
    ev.text = s->text.data;
    ev.len = s->text.len;
    *rc = st_emit(s, &ev);
    return 1;
}

/* The other events of a stream (message_start, content_block_start, content_block_stop,
 * message_delta, message_stop, ping) read with the scanner, as decode_response_fast reads a
 * whole response: every member the handler reads is checked before the state changes, and
 * anything the scanner and jansson could read differently, or that ends in an error, is left
 * to the jansson path. 1 if handled (*rc set), 0 otherwise. */
static int fast_event(struct astream *s, const char *d, size_t n, int *rc)
{
    static const char *const root_keys[] = {"type",          "message", "index",
                                            "content_block", "delta",   "usage"};
    enum { E_TYPE, E_MESSAGE, E_INDEX, E_CB, E_DELTA, E_USAGE, E_N };
    struct sb_json_index idx;
    struct sb_json_member m[E_N];
    int cnt[E_N];
    if (sb_json_validate_index(d, n, RESP_FAST_DEPTH, &idx) != 0 ||
        idx.root.type != SB_JSON_OBJECT || !sb_json_jansson_same(d, n) ||
        sb_json_index_get_many(d, n, &idx, root_keys, E_N, m, cnt) != 0)
        return 0;
    for (size_t i = 0; i < E_N; i++)
        if (cnt[i] > 1)
            return 0;
    const struct sb_json_span *t = &m[E_TYPE].value;
    if (t->type != SB_JSON_STRING) {
        *rc = 0; /* no type: ignored */
        return 1;
    }
    const char *type = d + t->start + 1;
    size_t tl = t->end - t->start - 2;
    if (memchr(type, '\\', tl))
        return 0;
#define TYPE_IS(lit) (tl == sizeof(lit) - 1 && memcmp(type, lit, tl) == 0)
    struct rfast fs = {.s = d, .n = n, .nstrs = 0}, *f = &fs;
    struct sb_canon_event ev;
    bool ok = true;
    int handled = 0;
    if (TYPE_IS("error") || TYPE_IS("content_block_delta")) {
        handled = 0;
    } else if (TYPE_IS("message_start")) {
        static const char *const keys[] = {"id", "model", "usage"};
        struct sb_json_member mm[3];
        const struct sb_json_span *msg = &m[E_MESSAGE].value;
        struct sb_usage u = s->usage;
        if (s->started || msg->type != SB_JSON_OBJECT || !rf_get(f, msg, keys, 3, mm) ||
            !rf_usage(f, &mm[2].value, &u))
            goto out;
        ev_init(&ev, SB_EV_START);
        ev.id = rf_str(f, &mm[0].value, NULL, &ok);
        ev.model = rf_str(f, &mm[1].value, NULL, &ok);
        if (!ok)
            goto out;
        s->started = true;
        s->usage = u;
        ev.usage = u;
        usage_input_only(&ev.usage);
        *rc = st_emit(s, &ev);
        handled = 1;
    } else if (TYPE_IS("content_block_start")) {
        enum { C_TYPE, C_TEXT, C_THINKING, C_DATA, C_ID, C_NAME, C_N };
        static const char *const keys[] = {"type", "text", "thinking", "data", "id", "name"};
        struct sb_json_member cm[C_N];
        const struct sb_json_span *cb = &m[E_CB].value, *ix = &m[E_INDEX].value;
        int64_t aidx;
        if (!s->started || s->open || ix->type != SB_JSON_NUMBER ||
            sb_json_int64(d, n, ix, &aidx) != 0 || aidx < 0 || cb->type != SB_JSON_OBJECT ||
            !rf_get(f, cb, keys, C_N, cm))
            goto out;
        const struct sb_json_span *ct = &cm[C_TYPE].value, *initial = NULL;
        const char *btype = d + ct->start + 1;
        size_t bl = ct->type == SB_JSON_STRING ? ct->end - ct->start - 2 : 0;
        if (ct->type == SB_JSON_STRING && memchr(btype, '\\', bl))
            goto out;
#define BTYPE_IS(lit)                                                                              \
    (ct->type == SB_JSON_STRING && bl == sizeof(lit) - 1 && memcmp(btype, lit, bl) == 0)
        ev_init(&ev, SB_EV_BLOCK_START);
        if (BTYPE_IS("text")) {
            ev.block = SB_BLOCK_TEXT;
            initial = &cm[C_TEXT].value;
        } else if (BTYPE_IS("thinking")) {
            ev.block = SB_BLOCK_THINKING;
            initial = &cm[C_THINKING].value;
        } else if (BTYPE_IS("redacted_thinking")) {
            ev.block = SB_BLOCK_REDACTED_THINKING;
            initial = &cm[C_DATA].value;
        } else if (BTYPE_IS("tool_use")) {
            ev.block = SB_BLOCK_TOOL_CALL;
            ev.id = rf_str(f, &cm[C_ID].value, NULL, &ok);
            ev.name = rf_str(f, &cm[C_NAME].value, NULL, &ok);
            if (!ok || !ev.id || !ev.name)
                goto out;
        } else {
            s->open = true;
            s->open_aidx = aidx;
            s->open_skip = true;
            *rc = 0;
            handled = 1;
            goto out;
        }
#undef BTYPE_IS
        size_t ilen = 0;
        const char *itext = initial ? rf_str(f, initial, &ilen, &ok) : NULL;
        if (!ok || s->nblocks == INT_MAX)
            goto out;
        s->open = true;
        s->open_aidx = aidx;
        s->open_skip = false;
        s->open_cidx = s->nblocks++;
        s->open_kind = ev.block;
        ev.index = s->open_cidx;
        *rc = st_emit(s, &ev);
        handled = 1;
        if (*rc == 0 && itext && (ilen > 0 || ev.block == SB_BLOCK_REDACTED_THINKING)) {
            ev_init(&ev, SB_EV_DELTA);
            ev.index = s->open_cidx;
            ev.block = s->open_kind;
            ev.text = itext;
            ev.len = ilen;
            *rc = st_emit(s, &ev);
        }
    } else if (TYPE_IS("content_block_stop")) {
        const struct sb_json_span *ix = &m[E_INDEX].value;
        int64_t aidx;
        if (!s->open || ix->type != SB_JSON_NUMBER || sb_json_int64(d, n, ix, &aidx) != 0 ||
            aidx != s->open_aidx)
            goto out;
        *rc = close_block(s);
        handled = 1;
    } else if (TYPE_IS("message_delta")) {
        static const char *const keys[] = {"stop_reason", "stop_sequence"};
        struct sb_json_member dm[2];
        const struct sb_json_span *delta = &m[E_DELTA].value;
        struct sb_usage u = s->usage;
        if (!s->started || s->open || !rf_usage(f, &m[E_USAGE].value, &u))
            goto out;
        const char *reason = NULL, *seq = NULL;
        size_t seq_len = 0;
        if (delta->type == SB_JSON_OBJECT) {
            if (!rf_get(f, delta, keys, 2, dm))
                goto out;
            reason = rf_str(f, &dm[0].value, NULL, &ok);
            seq = rf_str(f, &dm[1].value, &seq_len, &ok);
            if (!ok)
                goto out;
        }
        if (seq) {
            char *c = sb_canon_strndup(seq, seq_len);
            if (!c)
                goto out;
            free(s->stop_sequence);
            s->stop_sequence = c;
        }
        if (reason) {
            s->has_finish = true;
            s->finish = finish_of(reason);
        }
        s->usage = u;
        *rc = 0;
        handled = 1;
    } else if (TYPE_IS("message_stop")) {
        *rc = on_message_stop(s);
        handled = 1;
    } else {
        *rc = 0; /* ping and event types yet to come */
        handled = 1;
    }
#undef TYPE_IS
out:
    for (size_t i = 0; i < f->nstrs; i++)
        free(f->strs[i]);
    return handled;
}

/* Event names this decoder acts on: their data must be JSON. Others (and their data) are
 * ignored, as Anthropic asks of clients. */
static bool known_event(const struct sb_sse_event *sev)
{
    static const char *const names[] = {"",
                                        "message_start",
                                        "content_block_start",
                                        "content_block_delta",
                                        "content_block_stop",
                                        "message_delta",
                                        "message_stop"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i]) == sev->event_len && memcmp(names[i], sev->event, sev->event_len) == 0)
            return true;
    return false;
}

static int on_sse(void *ud, const struct sb_sse_event *sev)
{
    struct astream *s = ud;
    if (s->done || sev->is_comment)
        return 0;
    bool named_error = sev->event_len == 5 && memcmp(sev->event, "error", 5) == 0;
    if (sev->data_len == 0 && !named_error)
        return 0;
    int rc = 0;
    if (sev->event_len == 19 && memcmp(sev->event, "content_block_delta", 19) == 0 &&
        fast_delta(s, sev->data, sev->data_len, &rc))
        return rc;
    if (!named_error && fast_event(s, sev->data, sev->data_len, &rc))
        return rc;
    json_t *d = json_loadb(sev->data, sev->data_len, 0, NULL);
    if (!json_is_object(d)) {
        if (named_error) {
            /* An error event whose body is not Anthropic's JSON is still an error. */
            json_t *eo =
                json_pack("{s:s,s:s}", "type", "api_error", "message", "Anthropic stream error");
            rc = eo ? emit_error_obj(eo, s->emit, s->ud) : -ENOMEM;
            json_decref(eo);
            s->done = true;
        } else if (known_event(sev)) {
            rc = SB_CANON_E_INVALID;
        }
        json_decref(d);
        return rc;
    }
    const char *type = json_string_value(json_object_get(d, "type"));
    if (named_error || (type && strcmp(type, "error") == 0)) {
        const json_t *eo = json_object_get(d, "error");
        rc = emit_error_obj(json_is_object(eo) ? eo : d, s->emit, s->ud);
        s->done = true;
    } else if (!type) {
        rc = 0;
    } else if (strcmp(type, "message_start") == 0) {
        rc = on_message_start(s, d);
    } else if (strcmp(type, "content_block_start") == 0) {
        rc = on_block_start(s, d);
    } else if (strcmp(type, "content_block_delta") == 0) {
        rc = on_block_delta(s, d);
    } else if (strcmp(type, "content_block_stop") == 0) {
        rc = on_block_stop(s, d);
    } else if (strcmp(type, "message_delta") == 0) {
        rc = on_message_delta(s, d);
    } else if (strcmp(type, "message_stop") == 0) {
        rc = on_message_stop(s);
    }
    /* ping and event types yet to come are ignored. */
    json_decref(d);
    return rc;
}

static int stream_feed(void *st, const char *data, size_t len, sb_canon_emit_cb emit, void *ud)
{
    struct astream *s = st;
    if (s->failed)
        return SB_CANON_E_INVALID;
    if (s->done)
        return 0;
    s->emit = emit;
    s->ud = ud;
    int rc = sb_sse_parser_feed(&s->sse, data, len, on_sse, s);
    if (rc == SB_SSE_E_TOO_BIG)
        rc = -E2BIG;
    if (rc)
        s->failed = true;
    return rc;
}

static int stream_end(void *st, sb_canon_emit_cb emit, void *ud)
{
    struct astream *s = st;
    (void)emit;
    (void)ud;
    sb_sse_parser_end(&s->sse);
    if (s->failed)
        return SB_CANON_E_INVALID;
    return s->done ? 0 : SB_CANON_E_CUT;
}

const struct sb_provider_codec sb_codec_anthropic = {
    .dialect = SB_DIALECT_ANTHROPIC,
    .encode_request = encode_request,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_new = stream_new,
    .stream_feed = stream_feed,
    .stream_end = stream_end,
    .stream_free = stream_free,
};

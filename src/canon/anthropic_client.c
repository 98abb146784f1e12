/* The Anthropic Messages client dialect: POST /v1/messages served by any provider.
 *
 * Requests are decoded with jansson. Responses, errors and stream events are written by hand
 * with sb_buf_append_json_str: the text comes from providers and may hold bytes jansson
 * refuses to encode, and writing straight into the caller's bounded buffer keeps the cap in
 * one place. Field order follows what Anthropic itself sends. */
#include "canon/anthropic_client.h"

#include "canon/codecs.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGES   100000 /* Anthropic's own limit */
#define MAX_STOP       1024
#define MAX_TOOLS      4096
#define MAX_MODEL_LEN  256
#define ERR_TYPE       "invalid_request_error"
#define UNSUPPORTED    "unsupported_parameter"
#define IMAGE_TOKENS   1600
#define MSG_TOKENS     4
#define TOOL_TOKENS    8
#define TOOLS_PREAMBLE 300

/* ------------------------------------------------------------------ request */

static _Thread_local char param_buf[128];

static int fail_code(struct sb_error *err, const char *code, const char *param, const char *fmt,
                     ...) __attribute__((format(printf, 4, 5)));

static int fail_code(struct sb_error *err, const char *code, const char *param, const char *fmt,
                     ...)
{
    char msg[sizeof err->message];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        msg[0] = '\0';
    const char *p = NULL;
    if (param) {
        snprintf(param_buf, sizeof param_buf, "%s", param);
        p = param_buf;
    }
    sb_error_set(err, 400, ERR_TYPE, code, p, "%s", msg);
    return -1;
}

#define fail(err, param, ...) fail_code(err, NULL, param, __VA_ARGS__)

/* Dotted parameter paths, bounded (a truncated path still names the right place). */
struct path {
    char s[96];
};

static const char *pathf(struct path *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static const char *pathf(struct path *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->s, sizeof p->s, fmt, ap);
    va_end(ap);
    if (n < 0)
        p->s[0] = '\0';
    return p->s;
}

static char *dup_json_str(const json_t *s)
{
    return sb_canon_strndup(json_string_value(s), json_string_length(s));
}

static json_t *cache_control_of(const json_t *obj)
{
    json_t *cc = json_object_get(obj, "cache_control");
    if (!json_is_object(cc))
        return NULL;
    return json_incref(cc);
}

/* Growable part list, so tool_result parts can be put first in their message. */
struct parts {
    struct sb_part *v;
    size_t n, cap;
};

static struct sb_part *parts_add(struct parts *l)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4;
        struct sb_part *nv = realloc(l->v, nc * sizeof *nv);
        if (!nv)
            return NULL;
        l->v = nv;
        l->cap = nc;
    }
    struct sb_part *p = &l->v[l->n++];
    memset(p, 0, sizeof *p);
    return p;
}

static void part_clear(struct sb_part *p);

static void parts_clear(struct sb_part *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        part_clear(&v[i]);
    free(v);
}

static void part_clear(struct sb_part *p)
{
    free(p->text);
    free(p->signature);
    free(p->media_type);
    free(p->data);
    free(p->url);
    free(p->detail);
    free(p->id);
    free(p->name);
    free(p->arguments);
    parts_clear(p->parts, p->nparts);
    json_decref(p->cache_control);
    memset(p, 0, sizeof *p);
}

static int oom(struct sb_error *err)
{
    sb_error_set(err, 500, "api_error", NULL, NULL, "out of memory");
    return -1;
}

static int req_string(struct sb_error *err, const json_t *obj, const char *key, const char *where,
                      char **dst)
{
    struct path p;
    json_t *v = json_object_get(obj, key);
    if (!v)
        return fail(err, pathf(&p, "%s%s", where, key), "%s%s: Field required", where, key);
    if (!json_is_string(v))
        return fail(err, pathf(&p, "%s%s", where, key), "%s%s: Input should be a valid string",
                    where, key);
    *dst = dup_json_str(v);
    return *dst ? 0 : oom(err);
}

/* image / document source. Text documents become plain TEXT parts (every dialect carries
 * text; few carry text files). */
static int decode_source(struct sb_error *err, const json_t *blk, bool document, const char *where,
                         struct sb_part *p)
{
    struct path pp;
    json_t *src = json_object_get(blk, "source");
    if (!json_is_object(src))
        return fail(err, pathf(&pp, "%s.source", where), "%s.source: Field required", where);
    const char *st = json_string_value(json_object_get(src, "type"));
    if (!st)
        return fail(err, pathf(&pp, "%s.source.type", where), "%s.source.type: Field required",
                    where);
    char sw[96];
    snprintf(sw, sizeof sw, "%s.source.", where);
    if (strcmp(st, "base64") == 0) {
        p->type = document ? SB_PART_DOCUMENT : SB_PART_IMAGE;
        if (req_string(err, src, "media_type", sw, &p->media_type) ||
            req_string(err, src, "data", sw, &p->data))
            return -1;
        return 0;
    }
    if (strcmp(st, "url") == 0) {
        p->type = document ? SB_PART_DOCUMENT : SB_PART_IMAGE;
        return req_string(err, src, "url", sw, &p->url);
    }
    if (document && strcmp(st, "text") == 0) {
        p->type = SB_PART_TEXT;
        return req_string(err, src, "data", sw, &p->text);
    }
    return fail_code(err, UNSUPPORTED, pathf(&pp, "%s.source.type", where),
                     "'%s.source.type' \"%s\" is not supported by non-Anthropic models", where, st);
}

static int decode_tool_result(struct sb_error *err, const json_t *blk, const char *where,
                              struct sb_part *p)
{
    struct path pp;
    p->type = SB_PART_TOOL_RESULT;
    char w[96];
    snprintf(w, sizeof w, "%s.", where);
    if (req_string(err, blk, "tool_use_id", w, &p->id))
        return -1;
    json_t *ie = json_object_get(blk, "is_error");
    if (ie && !json_is_boolean(ie) && !json_is_null(ie))
        return fail(err, pathf(&pp, "%s.is_error", where),
                    "%s.is_error: Input should be a valid boolean", where);
    p->is_error = json_is_true(ie);
    p->cache_control = cache_control_of(blk);
    json_t *c = json_object_get(blk, "content");
    if (!c || json_is_null(c))
        return 0;
    if (json_is_string(c)) {
        p->parts = calloc(1, sizeof *p->parts);
        if (!p->parts)
            return oom(err);
        p->nparts = 1;
        p->parts[0].type = SB_PART_TEXT;
        p->parts[0].text = dup_json_str(c);
        return p->parts[0].text ? 0 : oom(err);
    }
    if (!json_is_array(c))
        return fail(err, pathf(&pp, "%s.content", where),
                    "%s.content: Input should be a valid string or list", where);
    size_t n = json_array_size(c);
    if (n == 0)
        return 0;
    p->parts = calloc(n, sizeof *p->parts);
    if (!p->parts)
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_array_get(c, i);
        struct sb_part *q = &p->parts[p->nparts++];
        char bw[96];
        snprintf(bw, sizeof bw, "%s.content.%zu", where, i);
        const char *t = json_string_value(json_object_get(b, "type"));
        if (!json_is_object(b) || !t)
            return fail(err, pathf(&pp, "%s.type", bw), "%s.type: Field required", bw);
        q->cache_control = cache_control_of(b);
        if (strcmp(t, "text") == 0) {
            q->type = SB_PART_TEXT;
            char tw[100];
            snprintf(tw, sizeof tw, "%s.", bw);
            if (req_string(err, b, "text", tw, &q->text))
                return -1;
        } else if (strcmp(t, "image") == 0 || strcmp(t, "document") == 0) {
            if (decode_source(err, b, t[0] == 'd', bw, q))
                return -1;
        } else {
            return fail(err, pathf(&pp, "%s.type", bw),
                        "%s.type: tool_result content blocks must be text, image or document, "
                        "not \"%s\"",
                        bw, t);
        }
    }
    return 0;
}

static int decode_block(struct sb_error *err, const json_t *b, enum sb_role role, size_t mi,
                        size_t bi, struct parts *results, struct parts *rest)
{
    struct path pp;
    char where[64];
    snprintf(where, sizeof where, "messages.%zu.content.%zu", mi, bi);
    if (!json_is_object(b))
        return fail(err, where, "%s: Input should be a valid content block object", where);
    json_t *tv = json_object_get(b, "type");
    if (!json_is_string(tv))
        return fail(err, pathf(&pp, "%s.type", where), "%s.type: Field required", where);
    const char *t = json_string_value(tv);
    bool is_result = strcmp(t, "tool_result") == 0;
    struct sb_part *p = parts_add(is_result ? results : rest);
    if (!p)
        return oom(err);
    char w[72];
    snprintf(w, sizeof w, "%s.", where);
    if (strcmp(t, "text") == 0) {
        p->type = SB_PART_TEXT;
        p->cache_control = cache_control_of(b);
        return req_string(err, b, "text", w, &p->text);
    }
    if (strcmp(t, "image") == 0 || strcmp(t, "document") == 0) {
        p->cache_control = cache_control_of(b);
        return decode_source(err, b, t[0] == 'd', where, p);
    }
    if (strcmp(t, "tool_use") == 0) {
        if (role != SB_ROLE_ASSISTANT)
            return fail(err, pathf(&pp, "%s.type", where),
                        "%s: tool_use blocks may only appear in assistant messages", where);
        p->type = SB_PART_TOOL_CALL;
        p->cache_control = cache_control_of(b);
        if (req_string(err, b, "id", w, &p->id) || req_string(err, b, "name", w, &p->name))
            return -1;
        json_t *in = json_object_get(b, "input");
        if (in && !json_is_object(in))
            return fail(err, pathf(&pp, "%s.input", where),
                        "%s.input: Input should be a valid dictionary", where);
        p->arguments = in ? json_dumps(in, JSON_COMPACT) : strdup("{}");
        return p->arguments ? 0 : oom(err);
    }
    if (is_result) {
        if (role != SB_ROLE_USER)
            return fail(err, pathf(&pp, "%s.type", where),
                        "%s: tool_result blocks may only appear in user messages", where);
        return decode_tool_result(err, b, where, p);
    }
    if (strcmp(t, "thinking") == 0) {
        if (role != SB_ROLE_ASSISTANT)
            return fail(err, pathf(&pp, "%s.type", where),
                        "%s: thinking blocks may only appear in assistant messages", where);
        p->type = SB_PART_THINKING;
        if (req_string(err, b, "thinking", w, &p->text))
            return -1;
        json_t *sig = json_object_get(b, "signature");
        if (sig && !json_is_string(sig) && !json_is_null(sig))
            return fail(err, pathf(&pp, "%s.signature", where),
                        "%s.signature: Input should be a valid string", where);
        if (json_is_string(sig) && !(p->signature = dup_json_str(sig)))
            return oom(err);
        return 0;
    }
    if (strcmp(t, "redacted_thinking") == 0) {
        if (role != SB_ROLE_ASSISTANT)
            return fail(err, pathf(&pp, "%s.type", where),
                        "%s: redacted_thinking blocks may only appear in assistant messages",
                        where);
        p->type = SB_PART_REDACTED_THINKING;
        return req_string(err, b, "data", w, &p->text);
    }
    return fail(err, pathf(&pp, "%s.type", where),
                "%s.type: block type \"%s\" is not supported by non-Anthropic models", where, t);
}

static int decode_message(struct sb_error *err, const json_t *m, size_t mi, struct sb_msg *msg)
{
    struct path pp;
    if (!json_is_object(m))
        return fail(err, pathf(&pp, "messages.%zu", mi),
                    "messages.%zu: Input should be a valid message object", mi);
    const char *role = json_string_value(json_object_get(m, "role"));
    if (!role)
        return fail(err, pathf(&pp, "messages.%zu.role", mi), "messages.%zu.role: Field required",
                    mi);
    if (strcmp(role, "user") == 0)
        msg->role = SB_ROLE_USER;
    else if (strcmp(role, "assistant") == 0)
        msg->role = SB_ROLE_ASSISTANT;
    else
        return fail(err, pathf(&pp, "messages.%zu.role", mi),
                    "messages.%zu.role: Input should be 'user' or 'assistant'", mi);
    json_t *c = json_object_get(m, "content");
    if (!c)
        return fail(err, pathf(&pp, "messages.%zu.content", mi),
                    "messages.%zu.content: Field required", mi);
    if (json_is_string(c)) {
        msg->parts = calloc(1, sizeof *msg->parts);
        if (!msg->parts)
            return oom(err);
        msg->nparts = 1;
        msg->parts[0].type = SB_PART_TEXT;
        msg->parts[0].text = dup_json_str(c);
        return msg->parts[0].text ? 0 : oom(err);
    }
    if (!json_is_array(c))
        return fail(err, pathf(&pp, "messages.%zu.content", mi),
                    "messages.%zu.content: Input should be a valid string or list", mi);
    struct parts results = {0}, rest = {0};
    int rc = 0;
    for (size_t i = 0; i < json_array_size(c) && rc == 0; i++)
        rc = decode_block(err, json_array_get(c, i), msg->role, mi, i, &results, &rest);
    if (rc == 0 && results.n + rest.n) {
        msg->parts = calloc(results.n + rest.n, sizeof *msg->parts);
        if (!msg->parts) {
            rc = oom(err);
        } else {
            if (results.n)
                memcpy(msg->parts, results.v, results.n * sizeof *msg->parts);
            if (rest.n)
                memcpy(msg->parts + results.n, rest.v, rest.n * sizeof *msg->parts);
            msg->nparts = results.n + rest.n;
            free(results.v);
            free(rest.v);
            return 0;
        }
    }
    parts_clear(results.v, results.n);
    parts_clear(rest.v, rest.n);
    return rc;
}

static int decode_system(struct sb_error *err, const json_t *sys, struct sb_canon_req *r)
{
    struct path pp;
    size_t n = json_is_string(sys) ? 1 : json_array_size(sys);
    if (!json_is_string(sys) && !json_is_array(sys))
        return fail(err, "system", "system: Input should be a valid string or list");
    if (n == 0)
        return 0;
    r->msgs = calloc(n, sizeof *r->msgs);
    if (!r->msgs)
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        struct sb_msg *m = &r->msgs[r->nmsgs++];
        m->role = SB_ROLE_SYSTEM;
        m->parts = calloc(1, sizeof *m->parts);
        if (!m->parts)
            return oom(err);
        m->nparts = 1;
        m->parts[0].type = SB_PART_TEXT;
        if (json_is_string(sys)) {
            if (!(m->parts[0].text = dup_json_str(sys)))
                return oom(err);
            continue;
        }
        json_t *b = json_array_get(sys, i);
        const char *t = json_string_value(json_object_get(b, "type"));
        if (!json_is_object(b) || !t || strcmp(t, "text") != 0)
            return fail(err, pathf(&pp, "system.%zu.type", i),
                        "system.%zu.type: system blocks must be of type \"text\"", i);
        char w[48];
        snprintf(w, sizeof w, "system.%zu.", i);
        if (req_string(err, b, "text", w, &m->parts[0].text))
            return -1;
        m->parts[0].cache_control = cache_control_of(b);
    }
    return 0;
}

static int decode_tools(struct sb_error *err, const json_t *tools, struct sb_canon_req *r)
{
    struct path pp;
    if (!json_is_array(tools))
        return fail(err, "tools", "tools: Input should be a valid list");
    size_t n = json_array_size(tools);
    if (n > MAX_TOOLS)
        return fail(err, "tools", "tools: at most %d tools are accepted", MAX_TOOLS);
    if (n == 0)
        return 0;
    r->tools = calloc(n, sizeof *r->tools);
    if (!r->tools)
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(tools, i);
        struct sb_tool *tool = &r->tools[r->ntools++];
        tool->strict = -1;
        if (!json_is_object(t))
            return fail(err, pathf(&pp, "tools.%zu", i), "tools.%zu: Input should be an object", i);
        json_t *type = json_object_get(t, "type");
        if (type && !json_is_null(type) &&
            (!json_is_string(type) || strcmp(json_string_value(type), "custom") != 0))
            return fail_code(err, UNSUPPORTED, pathf(&pp, "tools.%zu", i),
                             "'tools.%zu' (server tool \"%s\") is not supported by "
                             "non-Anthropic models",
                             i, json_is_string(type) ? json_string_value(type) : "?");
        char w[40];
        snprintf(w, sizeof w, "tools.%zu.", i);
        if (req_string(err, t, "name", w, &tool->name))
            return -1;
        json_t *d = json_object_get(t, "description");
        if (d && !json_is_null(d)) {
            if (!json_is_string(d))
                return fail(err, pathf(&pp, "tools.%zu.description", i),
                            "tools.%zu.description: Input should be a valid string", i);
            if (!(tool->description = dup_json_str(d)))
                return oom(err);
        }
        json_t *s = json_object_get(t, "input_schema");
        if (!s)
            return fail(err, pathf(&pp, "tools.%zu.input_schema", i),
                        "tools.%zu.input_schema: Field required", i);
        if (!json_is_object(s))
            return fail(err, pathf(&pp, "tools.%zu.input_schema", i),
                        "tools.%zu.input_schema: Input should be a valid dictionary", i);
        tool->parameters = json_incref(s);
        json_t *st = json_object_get(t, "strict");
        if (json_is_boolean(st))
            tool->strict = json_is_true(st);
        tool->cache_control = cache_control_of(t);
    }
    return 0;
}

static int decode_tool_choice(struct sb_error *err, const json_t *tc, struct sb_canon_req *r)
{
    if (!json_is_object(tc))
        return fail(err, "tool_choice", "tool_choice: Input should be an object");
    const char *t = json_string_value(json_object_get(tc, "type"));
    if (!t)
        return fail(err, "tool_choice.type", "tool_choice.type: Field required");
    if (strcmp(t, "auto") == 0) {
        r->tool_choice = SB_TC_AUTO;
    } else if (strcmp(t, "any") == 0) {
        r->tool_choice = SB_TC_REQUIRED;
    } else if (strcmp(t, "none") == 0) {
        r->tool_choice = SB_TC_NONE;
    } else if (strcmp(t, "tool") == 0) {
        r->tool_choice = SB_TC_NAMED;
        if (req_string(err, tc, "name", "tool_choice.", &r->tool_choice_name))
            return -1;
    } else {
        return fail(err, "tool_choice.type",
                    "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'");
    }
    json_t *dp = json_object_get(tc, "disable_parallel_tool_use");
    if (dp && !json_is_boolean(dp) && !json_is_null(dp))
        return fail(err, "tool_choice.disable_parallel_tool_use",
                    "tool_choice.disable_parallel_tool_use: Input should be a valid boolean");
    if (json_is_true(dp))
        r->parallel_tool_calls = 0;
    return 0;
}

static bool known_effort(const char *e)
{
    static const char *const levels[] = {"none", "minimal", "low", "medium",
                                         "high", "xhigh",   "max"};
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
        if (strcmp(e, levels[i]) == 0)
            return true;
    return false;
}

static int decode_thinking(struct sb_error *err, const json_t *th, struct sb_canon_req *r)
{
    if (!json_is_object(th))
        return fail(err, "thinking", "thinking: Input should be an object");
    const char *t = json_string_value(json_object_get(th, "type"));
    if (!t)
        return fail(err, "thinking.type", "thinking.type: Field required");
    if (strcmp(t, "enabled") == 0) {
        json_t *b = json_object_get(th, "budget_tokens");
        if (!b)
            return fail(err, "thinking.enabled.budget_tokens",
                        "thinking.enabled.budget_tokens: Field required");
        if (!json_is_integer(b) || json_integer_value(b) < 1)
            return fail(err, "thinking.enabled.budget_tokens",
                        "thinking.enabled.budget_tokens: Input should be a positive integer");
        r->thinking_budget = json_integer_value(b);
    } else if (strcmp(t, "disabled") == 0) {
        r->thinking_budget = 0;
    } else if (strcmp(t, "adaptive") != 0) {
        return fail(err, "thinking.type",
                    "thinking.type: Input should be 'enabled', 'disabled' or 'adaptive'");
    }
    return 0;
}

static int decode_output_config(struct sb_error *err, const json_t *oc, struct sb_canon_req *r)
{
    if (!json_is_object(oc))
        return fail(err, "output_config", "output_config: Input should be an object");
    json_t *e = json_object_get(oc, "effort");
    if (e && !json_is_null(e)) {
        if (!json_is_string(e) || !known_effort(json_string_value(e)))
            return fail(err, "output_config.effort",
                        "output_config.effort: Input should be 'low', 'medium', 'high' or 'max'");
        if (!(r->reasoning_effort = dup_json_str(e)))
            return oom(err);
    }
    json_t *f = json_object_get(oc, "format");
    if (!f || json_is_null(f))
        return 0;
    const char *ft = json_string_value(json_object_get(f, "type"));
    if (!json_is_object(f) || !ft || strcmp(ft, "json_schema") != 0)
        return fail(err, "output_config.format.type",
                    "output_config.format.type: Input should be 'json_schema'");
    json_t *s = json_object_get(f, "schema");
    if (!json_is_object(s))
        return fail(err, "output_config.format.schema",
                    "output_config.format.schema: Input should be a valid dictionary");
    r->response_format = SB_RF_JSON_SCHEMA;
    r->rf_schema = json_incref(s);
    /* Anthropic's format has no name; OpenAI-style targets require one. */
    r->rf_name = strdup("response");
    return r->rf_name ? 0 : oom(err);
}

static int get_unit(struct sb_error *err, const json_t *root, const char *key, bool *has,
                    double *dst)
{
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return fail(err, key, "%s: Input should be a valid number", key);
    double d = json_number_value(v);
    if (!(d >= 0.0 && d <= 1.0))
        return fail(err, key, "%s: Input should be between 0 and 1", key);
    *has = true;
    *dst = d;
    return 0;
}

static int decode_scalars(struct sb_error *err, const json_t *root, struct sb_canon_req *r,
                          bool need_max)
{
    if (req_string(err, root, "model", "", &r->model))
        return -1;
    json_t *mt = json_object_get(root, "max_tokens");
    if (!mt && need_max)
        return fail(err, "max_tokens", "max_tokens: Field required");
    if (mt && !(json_is_null(mt) && !need_max)) {
        if (!json_is_integer(mt) || json_integer_value(mt) < 0)
            return fail(err, "max_tokens", "max_tokens: Input should be a non-negative integer");
        r->max_tokens = json_integer_value(mt);
    }
    if (get_unit(err, root, "temperature", &r->has_temperature, &r->temperature) ||
        get_unit(err, root, "top_p", &r->has_top_p, &r->top_p))
        return -1;
    json_t *tk = json_object_get(root, "top_k");
    if (tk && !json_is_null(tk)) {
        if (!json_is_integer(tk) || json_integer_value(tk) < 0)
            return fail(err, "top_k", "top_k: Input should be a non-negative integer");
        r->top_k = json_integer_value(tk);
    }
    json_t *st = json_object_get(root, "stream");
    if (st && !json_is_boolean(st) && !json_is_null(st))
        return fail(err, "stream", "stream: Input should be a valid boolean");
    r->stream = json_is_true(st);
    json_t *ss = json_object_get(root, "stop_sequences");
    if (ss && !json_is_null(ss)) {
        if (!json_is_array(ss))
            return fail(err, "stop_sequences", "stop_sequences: Input should be a valid list");
        size_t n = json_array_size(ss);
        if (n > MAX_STOP)
            return fail(err, "stop_sequences", "stop_sequences: at most %d are accepted", MAX_STOP);
        if (n && !(r->stop = calloc(n, sizeof *r->stop)))
            return oom(err);
        for (size_t i = 0; i < n; i++) {
            json_t *s = json_array_get(ss, i);
            struct path pp;
            if (!json_is_string(s))
                return fail(err, pathf(&pp, "stop_sequences.%zu", i),
                            "stop_sequences.%zu: Input should be a valid string", i);
            if (!(r->stop[r->nstop] = dup_json_str(s)))
                return oom(err);
            r->nstop++;
        }
    }
    json_t *md = json_object_get(root, "metadata");
    if (md && !json_is_null(md)) {
        if (!json_is_object(md))
            return fail(err, "metadata", "metadata: Input should be an object");
        json_t *u = json_object_get(md, "user_id");
        if (u && !json_is_null(u)) {
            if (!json_is_string(u))
                return fail(err, "metadata.user_id",
                            "metadata.user_id: Input should be a valid string");
            if (!(r->user = dup_json_str(u)))
                return oom(err);
        }
    }
    r->cache_control = cache_control_of(root);
    json_t *mcp = json_object_get(root, "mcp_servers");
    if (json_array_size(mcp) > 0)
        return fail_code(err, UNSUPPORTED, "mcp_servers",
                         "'mcp_servers' is not supported by non-Anthropic models");
    return 0;
}

static int decode_common(const char *body, size_t len, struct sb_canon_req *out,
                         struct sb_error *err, bool need_max)
{
    memset(out, 0, sizeof *out);
    out->parallel_tool_calls = -1;
    out->max_tokens = -1;
    out->top_k = -1;
    out->n = -1;
    out->top_logprobs = -1;
    out->rf_strict = -1;
    out->thinking_budget = -1;
    param_buf[0] = '\0';

    json_error_t jerr;
    json_t *root = json_loadb(body ? body : "", body ? len : 0, 0, &jerr);
    if (!root)
        return fail(err, NULL, "The request body is not valid JSON: %s", jerr.text);
    int rc = -1;
    if (!json_is_object(root)) {
        fail(err, NULL, "The request body must be a JSON object");
        goto out;
    }
    if (decode_scalars(err, root, out, need_max))
        goto out;
    json_t *msgs = json_object_get(root, "messages");
    if (!msgs) {
        fail(err, "messages", "messages: Field required");
        goto out;
    }
    if (!json_is_array(msgs)) {
        fail(err, "messages", "messages: Input should be a valid list");
        goto out;
    }
    size_t nm = json_array_size(msgs);
    if (nm > MAX_MESSAGES) {
        fail(err, "messages", "messages: at most %d messages are accepted", MAX_MESSAGES);
        goto out;
    }
    json_t *sys = json_object_get(root, "system");
    if (sys && !json_is_null(sys) && decode_system(err, sys, out))
        goto out;
    size_t nsys = out->nmsgs;
    if (nm) {
        struct sb_msg *all = realloc(out->msgs, (nsys + nm) * sizeof *all);
        if (!all) {
            oom(err);
            goto out;
        }
        out->msgs = all;
        for (size_t i = 0; i < nm; i++) {
            struct sb_msg *m = &out->msgs[out->nmsgs++];
            memset(m, 0, sizeof *m);
            if (decode_message(err, json_array_get(msgs, i), i, m))
                goto out;
        }
    }
    json_t *tools = json_object_get(root, "tools");
    if (tools && !json_is_null(tools) && decode_tools(err, tools, out))
        goto out;
    json_t *tc = json_object_get(root, "tool_choice");
    if (tc && !json_is_null(tc) && decode_tool_choice(err, tc, out))
        goto out;
    json_t *th = json_object_get(root, "thinking");
    if (th && !json_is_null(th) && decode_thinking(err, th, out))
        goto out;
    json_t *oc = json_object_get(root, "output_config");
    if (oc && !json_is_null(oc) && decode_output_config(err, oc, out))
        goto out;
    rc = 0;
out:
    json_decref(root);
    if (rc)
        sb_canon_req_free(out);
    return rc;
}

static int decode_request(const char *body, size_t len, struct sb_canon_req *out,
                          struct sb_error *err)
{
    return decode_common(body, len, out, err, true);
}

int sb_anthropic_decode_count_tokens(const char *body, size_t len, struct sb_canon_req *out,
                                     struct sb_error *err)
{
    return decode_common(body, len, out, err, false);
}

/* ------------------------------------------------------------------ token estimate */

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t str_bytes(const char *s)
{
    return s ? strlen(s) : 0;
}

static uint64_t json_bytes(const json_t *j)
{
    return j ? json_dumpb(j, NULL, 0, JSON_COMPACT) : 0;
}

/* Returns bytes of text; adds fixed-cost tokens to *fixed. */
static uint64_t parts_bytes(const struct sb_part *p, size_t n, uint64_t *fixed)
{
    uint64_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        switch (p[i].type) {
        case SB_PART_IMAGE:
        case SB_PART_DOCUMENT:
            *fixed = sat_add(*fixed, IMAGE_TOKENS);
            break;
        case SB_PART_TOOL_RESULT:
            bytes = sat_add(bytes, parts_bytes(p[i].parts, p[i].nparts, fixed));
            break;
        case SB_PART_TEXT:
        case SB_PART_TOOL_CALL:
        case SB_PART_THINKING:
        case SB_PART_REDACTED_THINKING:
            break;
        }
        bytes =
            sat_add(bytes, str_bytes(p[i].type == SB_PART_REDACTED_THINKING ? NULL : p[i].text));
        bytes = sat_add(bytes, str_bytes(p[i].name));
        bytes = sat_add(bytes, str_bytes(p[i].arguments));
    }
    return bytes;
}

int64_t sb_canon_estimate_tokens(const struct sb_canon_req *r)
{
    uint64_t bytes = 0, fixed = 0;
    for (size_t i = 0; i < r->nmsgs; i++) {
        fixed = sat_add(fixed, MSG_TOKENS);
        bytes = sat_add(bytes, parts_bytes(r->msgs[i].parts, r->msgs[i].nparts, &fixed));
    }
    for (size_t i = 0; i < r->ntools; i++) {
        fixed = sat_add(fixed, TOOL_TOKENS);
        bytes = sat_add(bytes, str_bytes(r->tools[i].name));
        bytes = sat_add(bytes, str_bytes(r->tools[i].description));
        bytes = sat_add(bytes, json_bytes(r->tools[i].parameters));
    }
    if (r->ntools)
        fixed = sat_add(fixed, TOOLS_PREAMBLE);
    uint64_t total = sat_add(bytes / 4 + (bytes % 4 != 0), fixed);
    return total > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)total;
}

/* ------------------------------------------------------------------ writing */

static int put(struct sb_buf *b, const char *s)
{
    return sb_buf_append_str(b, s);
}

static int put_str(struct sb_buf *b, const char *s, size_t n)
{
    return sb_buf_append_json_str(b, s ? s : "", s ? n : 0);
}

static int put_cstr(struct sb_buf *b, const char *s)
{
    return put_str(b, s, s ? strlen(s) : 0);
}

static int put_count(struct sb_buf *b, int64_t v)
{
    return sb_buf_append_i64(b, v < 0 ? 0 : v);
}

/* Anthropic's usage object: the four counts, unknown ones as 0. */
static int put_usage(struct sb_buf *b, const struct sb_usage *u, bool with_output)
{
    int rc = put(b, "{\"input_tokens\":");
    rc = rc ? rc : put_count(b, u->input);
    rc = rc ? rc : put(b, ",\"cache_creation_input_tokens\":");
    rc = rc ? rc : put_count(b, u->cache_write);
    rc = rc ? rc : put(b, ",\"cache_read_input_tokens\":");
    rc = rc ? rc : put_count(b, u->cache_read);
    rc = rc ? rc : put(b, ",\"output_tokens\":");
    rc = rc ? rc : put_count(b, with_output ? u->output : 0);
    if (with_output && u->reasoning >= 0) {
        rc = rc ? rc : put(b, ",\"output_tokens_details\":{\"thinking_tokens\":");
        rc = rc ? rc : put_count(b, u->reasoning);
        rc = rc ? rc : put(b, "}");
    }
    return rc ? rc : put(b, "}");
}

/* A tool call's arguments as an input object: the text when it is a JSON object, else {}. */
static int put_input(struct sb_buf *b, const char *args, size_t len)
{
    if (!args || len == 0)
        return put(b, "{}");
    json_t *j = json_loadb(args, len, 0, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return put(b, "{}");
    }
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s)
        return put(b, "{}");
    int rc = put(b, s);
    free(s);
    return rc;
}

static void message_id(const char *given, char *out, size_t cap)
{
    if (given && strncmp(given, "msg_", 4) == 0 && strlen(given) < cap) {
        snprintf(out, cap, "%s", given);
        return;
    }
    sb_canon_random_id("msg_", out, cap);
}

/* ------------------------------------------------------------------ errors */

static const char *error_type(enum sb_err_kind k, int *status)
{
    int s = *status;
    switch (k) {
    case SB_ERRK_INVALID_REQUEST:
    case SB_ERRK_CONTEXT_WINDOW:
    case SB_ERRK_CONTENT_POLICY:
        /* Anthropic uses invalid_request_error for several 4xx (credit balance on 400). */
        if (s < 400 || s > 499 || s == 401 || s == 403 || s == 404 || s == 413 || s == 429)
            *status = 400;
        return "invalid_request_error";
    case SB_ERRK_AUTH:
        *status = 401;
        return "authentication_error";
    case SB_ERRK_PERMISSION:
        *status = 403;
        return "permission_error";
    case SB_ERRK_BILLING:
        *status = 402;
        return "billing_error";
    case SB_ERRK_NOT_FOUND:
        *status = 404;
        return "not_found_error";
    case SB_ERRK_TOO_LARGE:
        *status = 413;
        return "request_too_large";
    case SB_ERRK_RATE_LIMIT:
        *status = 429;
        return "rate_limit_error";
    case SB_ERRK_OVERLOADED:
        *status = 529;
        return "overloaded_error";
    case SB_ERRK_TIMEOUT:
        if (s != 408 && s != 504)
            *status = 504;
        return "timeout_error";
    case SB_ERRK_SERVER:
        break;
    }
    if (s < 500 || s > 599 || s == 529)
        *status = 500;
    return "api_error";
}

static const char *default_message(const char *type)
{
    if (strcmp(type, "overloaded_error") == 0)
        return "Overloaded";
    if (strcmp(type, "rate_limit_error") == 0)
        return "Rate limited";
    if (strcmp(type, "authentication_error") == 0)
        return "Authentication failed";
    if (strcmp(type, "timeout_error") == 0)
        return "Request timed out";
    return "The upstream provider returned an error";
}

static int put_error_object(struct sb_buf *b, const struct sb_canon_error *e, int *status)
{
    int st = e->status;
    const char *type = error_type(e->kind, &st);
    if (status)
        *status = st;
    const char *msg = e->message[0] ? e->message : default_message(type);
    int rc = put(b, "{\"type\":\"error\",\"error\":{\"type\":");
    rc = rc ? rc : put_cstr(b, type);
    rc = rc ? rc : put(b, ",\"message\":");
    rc = rc ? rc : put_str(b, msg, strnlen(msg, sizeof e->message));
    return rc ? rc : put(b, "}");
}

static int render_error(const struct sb_canon_error *e, struct sb_buf *out, int *status)
{
    size_t mark = out->len;
    int rc = put_error_object(out, e, status);
    rc = rc ? rc : put(out, ",\"request_id\":null}");
    if (rc && out->data) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return rc;
}

/* ------------------------------------------------------------------ response */

static int put_block(struct sb_buf *b, const struct sb_canon_block *blk)
{
    const char *txt = blk->text.data ? blk->text.data : "";
    size_t len = blk->text.len;
    int rc;
    switch (blk->kind) {
    case SB_BLOCK_THINKING:
        rc = put(b, "{\"type\":\"thinking\",\"thinking\":");
        rc = rc ? rc : put_str(b, txt, len);
        rc = rc ? rc : put(b, ",\"signature\":");
        rc = rc ? rc : put_cstr(b, blk->signature ? blk->signature : "");
        return rc ? rc : put(b, "}");
    case SB_BLOCK_REDACTED_THINKING:
        rc = put(b, "{\"type\":\"redacted_thinking\",\"data\":");
        rc = rc ? rc : put_str(b, txt, len);
        return rc ? rc : put(b, "}");
    case SB_BLOCK_TOOL_CALL: {
        char id[32];
        if (!blk->id)
            sb_canon_random_id("toolu_", id, sizeof id);
        rc = put(b, "{\"type\":\"tool_use\",\"id\":");
        rc = rc ? rc : put_cstr(b, blk->id ? blk->id : id);
        rc = rc ? rc : put(b, ",\"name\":");
        rc = rc ? rc : put_cstr(b, blk->name ? blk->name : "");
        rc = rc ? rc : put(b, ",\"input\":");
        rc = rc ? rc : put_input(b, txt, len);
        return rc ? rc : put(b, "}");
    }
    case SB_BLOCK_TEXT:
        break;
    }
    rc = put(b, "{\"type\":\"text\",\"text\":");
    rc = rc ? rc : put_str(b, txt, len);
    return rc ? rc : put(b, "}");
}

static int render_response(const struct sb_canon_resp *r, const char *model, struct sb_buf *out)
{
    if (r->has_error)
        return render_error(&r->error, out, NULL);
    size_t mark = out->len;
    char id[40];
    message_id(r->id, id, sizeof id);
    int rc = put(out, "{\"id\":");
    rc = rc ? rc : put_cstr(out, id);
    rc = rc ? rc : put(out, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    rc = rc ? rc : put_cstr(out, r->model ? r->model : model);
    rc = rc ? rc : put(out, ",\"content\":[");
    for (size_t i = 0; i < r->nblocks && rc == 0; i++) {
        if (i)
            rc = put(out, ",");
        rc = rc ? rc : put_block(out, &r->blocks[i]);
    }
    rc = rc ? rc : put(out, "],\"stop_reason\":");
    rc = rc ? rc : put_cstr(out, sb_finish_anthropic(r->finish));
    rc = rc ? rc : put(out, ",\"stop_sequence\":");
    if (r->stop_sequence)
        rc = rc ? rc : put_cstr(out, r->stop_sequence);
    else
        rc = rc ? rc : put(out, "null");
    rc = rc ? rc : put(out, ",\"usage\":");
    rc = rc ? rc : put_usage(out, &r->usage, true);
    rc = rc ? rc : put(out, "}");
    if (rc && out->data) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return rc;
}

/* ------------------------------------------------------------------ stream encoder */

enum enc_state {
    ENC_NEW,      /* nothing written */
    ENC_STARTED,  /* message_start written */
    ENC_FINISHED, /* FINISH seen, message_delta held until USAGE or the end */
    ENC_DONE,     /* message_stop written, or an error event: nothing more */
};

struct enc {
    enum enc_state state;
    char *model;
    struct sb_usage usage; /* counts known so far (START, then USAGE) */
    enum sb_finish finish;
    char *stop_sequence;
    /* the canonical block being received */
    bool open;
    int in_index; /* canonical index of the open block; next expected when closed */
    enum sb_block_kind kind;
    bool shown; /* content_block_start written for it */
    char *tool_id, *tool_name;
    int out_index; /* index of the next block the client sees */
};

static void *enc_new(const char *model, bool include_usage)
{
    (void)include_usage; /* Anthropic streams always carry usage */
    struct enc *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    sb_usage_init(&e->usage);
    if (model && !(e->model = sb_canon_strndup(model, strnlen(model, MAX_MODEL_LEN)))) {
        free(e);
        return NULL;
    }
    return e;
}

static void enc_free(void *p)
{
    struct enc *e = p;
    if (!e)
        return;
    free(e->model);
    free(e->stop_sequence);
    free(e->tool_id);
    free(e->tool_name);
    free(e);
}

static int put_event(struct sb_buf *b, const char *name)
{
    int rc = put(b, "event: ");
    rc = rc ? rc : put(b, name);
    return rc ? rc : put(b, "\ndata: ");
}

static int write_start(struct enc *e, const struct sb_canon_event *ev, struct sb_buf *b)
{
    char id[40];
    message_id(ev->id, id, sizeof id);
    const char *model = ev->model ? ev->model : e->model;
    int rc = put_event(b, "message_start");
    rc = rc ? rc : put(b, "{\"type\":\"message_start\",\"message\":{\"id\":");
    rc = rc ? rc : put_cstr(b, id);
    rc = rc ? rc : put(b, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":");
    rc = rc ? rc : put_str(b, model ? model : "", model ? strnlen(model, MAX_MODEL_LEN) : 0);
    rc = rc ? rc : put(b, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":");
    rc = rc ? rc : put_usage(b, &ev->usage, false);
    rc = rc ? rc : put(b, "}}\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n");
    return rc;
}

static int write_block_start(struct enc *e, const char *data, size_t len, struct sb_buf *b)
{
    int rc = put_event(b, "content_block_start");
    rc = rc ? rc : put(b, "{\"type\":\"content_block_start\",\"index\":");
    rc = rc ? rc : sb_buf_append_i64(b, e->out_index);
    rc = rc ? rc : put(b, ",\"content_block\":");
    switch (e->kind) {
    case SB_BLOCK_TEXT:
        rc = rc ? rc : put(b, "{\"type\":\"text\",\"text\":\"\"}");
        break;
    case SB_BLOCK_THINKING:
        rc = rc ? rc : put(b, "{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}");
        break;
    case SB_BLOCK_REDACTED_THINKING:
        rc = rc ? rc : put(b, "{\"type\":\"redacted_thinking\",\"data\":");
        rc = rc ? rc : put_str(b, data, len);
        rc = rc ? rc : put(b, "}");
        break;
    case SB_BLOCK_TOOL_CALL: {
        rc = rc ? rc : put(b, "{\"type\":\"tool_use\",\"id\":");
        rc = rc ? rc : put_cstr(b, e->tool_id);
        rc = rc ? rc : put(b, ",\"name\":");
        rc = rc ? rc : put_cstr(b, e->tool_name ? e->tool_name : "");
        rc = rc ? rc : put(b, ",\"input\":{}}");
        break;
    }
    }
    rc = rc ? rc : put(b, "}\n\n");
    if (rc == 0)
        e->shown = true;
    return rc;
}

static int write_delta(struct enc *e, const char *dtype, const char *field, const char *s,
                       size_t len, struct sb_buf *b)
{
    int rc = put_event(b, "content_block_delta");
    rc = rc ? rc : put(b, "{\"type\":\"content_block_delta\",\"index\":");
    rc = rc ? rc : sb_buf_append_i64(b, e->out_index);
    rc = rc ? rc : put(b, ",\"delta\":{\"type\":\"");
    rc = rc ? rc : put(b, dtype);
    rc = rc ? rc : put(b, "\",\"");
    rc = rc ? rc : put(b, field);
    rc = rc ? rc : put(b, "\":");
    rc = rc ? rc : put_str(b, s, len);
    return rc ? rc : put(b, "}}\n\n");
}

static int write_block_stop(struct enc *e, struct sb_buf *b)
{
    int rc = put_event(b, "content_block_stop");
    rc = rc ? rc : put(b, "{\"type\":\"content_block_stop\",\"index\":");
    rc = rc ? rc : sb_buf_append_i64(b, e->out_index);
    return rc ? rc : put(b, "}\n\n");
}

static int write_tail(struct enc *e, struct sb_buf *b)
{
    int rc = put_event(b, "message_delta");
    rc = rc ? rc : put(b, "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":");
    rc = rc ? rc : put_cstr(b, sb_finish_anthropic(e->finish));
    rc = rc ? rc : put(b, ",\"stop_sequence\":");
    if (e->stop_sequence)
        rc = rc ? rc : put_cstr(b, e->stop_sequence);
    else
        rc = rc ? rc : put(b, "null");
    rc = rc ? rc : put(b, "},\"usage\":");
    rc = rc ? rc : put_usage(b, &e->usage, true);
    rc = rc ? rc : put(b, "}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    return rc;
}

static int dup_into(char **dst, const char *s)
{
    free(*dst);
    *dst = NULL;
    if (!s)
        return 0;
    *dst = strdup(s);
    return *dst ? 0 : -ENOMEM;
}

static int on_delta(struct enc *e, const struct sb_canon_event *ev, struct sb_buf *b)
{
    const char *s = ev->text ? ev->text : "";
    size_t len = ev->text ? ev->len : 0;
    int rc = 0;
    if (ev->type == SB_EV_SIGNATURE) {
        if (e->kind != SB_BLOCK_THINKING)
            return SB_CANON_E_INVALID;
        if (!e->shown)
            rc = write_block_start(e, NULL, 0, b);
        return rc ? rc : write_delta(e, "signature_delta", "signature", s, len, b);
    }
    switch (e->kind) {
    case SB_BLOCK_TEXT:
    case SB_BLOCK_THINKING:
        /* Empty deltas are left out: an empty text block sent back by the client would be
         * refused by Anthropic on the next turn. */
        if (len == 0)
            return 0;
        if (!e->shown)
            rc = write_block_start(e, NULL, 0, b);
        if (e->kind == SB_BLOCK_TEXT)
            return rc ? rc : write_delta(e, "text_delta", "text", s, len, b);
        return rc ? rc : write_delta(e, "thinking_delta", "thinking", s, len, b);
    case SB_BLOCK_REDACTED_THINKING:
        if (e->shown)
            return SB_CANON_E_INVALID; /* the data comes whole, in one DELTA */
        return write_block_start(e, s, len, b);
    case SB_BLOCK_TOOL_CALL:
        if (!e->shown)
            rc = write_block_start(e, NULL, 0, b);
        return rc ? rc : write_delta(e, "input_json_delta", "partial_json", s, len, b);
    }
    return SB_CANON_E_INVALID;
}

static int enc_step(struct enc *e, const struct sb_canon_event *ev, struct sb_buf *b)
{
    if (e->state == ENC_DONE)
        return SB_CANON_E_INVALID;
    if (ev->type == SB_EV_ERROR) {
        static const struct sb_canon_error unknown = {.status = 500, .kind = SB_ERRK_SERVER};
        int rc = put_event(b, "error");
        rc = rc ? rc : put_error_object(b, ev->error ? ev->error : &unknown, NULL);
        rc = rc ? rc : put(b, "}\n\n");
        if (rc == 0)
            e->state = ENC_DONE;
        return rc;
    }
    if (ev->type == SB_EV_START) {
        if (e->state != ENC_NEW)
            return SB_CANON_E_INVALID;
        int rc = write_start(e, ev, b);
        if (rc == 0) {
            sb_usage_merge(&e->usage, &ev->usage);
            e->state = ENC_STARTED;
        }
        return rc;
    }
    if (e->state == ENC_NEW)
        return SB_CANON_E_INVALID;
    switch (ev->type) {
    case SB_EV_BLOCK_START:
        if (e->state != ENC_STARTED || e->open || ev->index != e->in_index)
            return SB_CANON_E_INVALID;
        if (dup_into(&e->tool_id, NULL) || dup_into(&e->tool_name, NULL))
            return -ENOMEM;
        if (ev->block == SB_BLOCK_TOOL_CALL) {
            char id[32];
            if (!ev->id)
                sb_canon_random_id("toolu_", id, sizeof id);
            if (dup_into(&e->tool_id, ev->id ? ev->id : id) || dup_into(&e->tool_name, ev->name))
                return -ENOMEM;
        }
        e->open = true;
        e->shown = false;
        e->kind = ev->block;
        return 0;
    case SB_EV_DELTA:
    case SB_EV_SIGNATURE:
        if (!e->open || ev->index != e->in_index)
            return SB_CANON_E_INVALID;
        return on_delta(e, ev, b);
    case SB_EV_BLOCK_STOP: {
        if (!e->open || ev->index != e->in_index)
            return SB_CANON_E_INVALID;
        int rc = 0;
        /* A tool call without argument fragments is still a call (with input {}). */
        if (!e->shown && e->kind == SB_BLOCK_TOOL_CALL)
            rc = write_block_start(e, NULL, 0, b);
        if (rc == 0 && e->shown) {
            rc = write_block_stop(e, b);
            if (rc == 0)
                e->out_index++;
        }
        if (rc == 0) {
            e->open = false;
            e->in_index++;
        }
        return rc;
    }
    case SB_EV_FINISH:
        if (e->state != ENC_STARTED || e->open)
            return SB_CANON_E_INVALID;
        if (dup_into(&e->stop_sequence, ev->stop_sequence))
            return -ENOMEM;
        e->finish = ev->finish;
        e->state = ENC_FINISHED;
        return 0;
    case SB_EV_USAGE: {
        if (e->state != ENC_FINISHED)
            return SB_CANON_E_INVALID;
        struct sb_usage saved = e->usage;
        sb_usage_merge(&e->usage, &ev->usage);
        int rc = write_tail(e, b);
        if (rc == 0)
            e->state = ENC_DONE;
        else
            e->usage = saved;
        return rc;
    }
    case SB_EV_START:
    case SB_EV_ERROR:
        break;
    }
    return SB_CANON_E_INVALID;
}

/* Every write either lands whole or leaves `out` as it was, so a caller may retry after
 * flushing, or write an error event instead. */
static int enc_event(void *p, const struct sb_canon_event *ev, struct sb_buf *out)
{
    struct enc *e = p;
    size_t mark = out->len;
    bool shown = e->shown;
    int rc = enc_step(e, ev, out);
    if (rc) {
        e->shown = shown;
        if (out->len != mark) {
            out->len = mark;
            out->data[mark] = '\0';
        }
    }
    return rc;
}

/* Returns SB_CANON_E_CUT, writing nothing, when the events stopped before FINISH: the caller
 * then ends the stream with enc_error. */
static int enc_end(void *p, struct sb_buf *out)
{
    struct enc *e = p;
    if (e->state == ENC_DONE)
        return 0;
    if (e->state != ENC_FINISHED)
        return SB_CANON_E_CUT;
    size_t mark = out->len;
    int rc = write_tail(e, out);
    if (rc == 0) {
        e->state = ENC_DONE;
    } else if (out->len != mark) {
        out->len = mark;
        out->data[mark] = '\0';
    }
    return rc;
}

static int enc_error(void *p, const struct sb_canon_error *err, struct sb_buf *out)
{
    struct enc *e = p;
    if (e->state == ENC_DONE)
        return 0;
    struct sb_canon_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = SB_EV_ERROR;
    ev.error = err;
    return enc_event(e, &ev, out);
}

const struct sb_client_codec sb_client_anthropic = {
    .dialect = SB_DIALECT_ANTHROPIC,
    .decode_request = decode_request,
    .render_response = render_response,
    .render_error = render_error,
    .enc_new = enc_new,
    .enc_event = enc_event,
    .enc_end = enc_end,
    .enc_error = enc_error,
    .enc_free = enc_free,
};

#define PCRE2_CODE_UNIT_WIDTH 8
#include "router/rules.h"

#include <pcre2.h>
#include <stdio.h>
#include <string.h>

#define MAX_DEPTH 16

static const json_t *lookup(const json_t *ctx, const char *path)
{
    const json_t *cur = ctx;
    char seg[128];
    while (cur && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof seg)
            return NULL;
        memcpy(seg, path, n);
        seg[n] = '\0';
        cur = json_is_object(cur) ? json_object_get(cur, seg) : NULL;
        path += n;
        if (*path == '.')
            path++;
    }
    return cur;
}

static bool regex_match(const char *pattern, const char *subject, size_t len)
{
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_MATCH_INVALID_UTF, &errcode, &erroff, NULL);
    if (!re)
        return false;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    bool ok = false;
    if (md && mc) {
        /* A pattern from a config must not let one request burn the CPU. */
        pcre2_set_match_limit(mc, 100000);
        pcre2_set_depth_limit(mc, 1000);
        ok = pcre2_match(re, (PCRE2_SPTR)subject, len, 0, 0, md, mc) >= 0;
    }
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return ok;
}

static bool equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    return a && b && json_equal(a, b);
}

static bool op_holds(const char *op, const json_t *want, const json_t *have)
{
    if (strcmp(op, "$eq") == 0)
        return equal(want, have);
    if (strcmp(op, "$ne") == 0)
        return !equal(want, have);
    if (strcmp(op, "$exists") == 0)
        return json_is_true(want) == (have != NULL);
    if (strcmp(op, "$in") == 0 || strcmp(op, "$nin") == 0) {
        bool in = false;
        size_t i;
        json_t *v;
        json_array_foreach(want, i, v) in |= equal(v, have);
        return op[1] == 'i' ? in : !in;
    }
    if (strcmp(op, "$regex") == 0)
        return json_is_string(have) && regex_match(json_string_value(want), json_string_value(have),
                                                   json_string_length(have));
    if (!json_is_number(have))
        return false;
    double h = json_number_value(have), w = json_number_value(want);
    if (strcmp(op, "$gt") == 0)
        return h > w;
    if (strcmp(op, "$gte") == 0)
        return h >= w;
    if (strcmp(op, "$lt") == 0)
        return h < w;
    if (strcmp(op, "$lte") == 0)
        return h <= w;
    return false;
}

static bool match_depth(const json_t *query, const json_t *ctx, int depth)
{
    if (depth > MAX_DEPTH || !json_is_object(query))
        return false;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)query, key, val)
    {
        if (strcmp(key, "$and") == 0 || strcmp(key, "$or") == 0) {
            bool any = false, all = true;
            size_t i;
            json_t *q;
            json_array_foreach(val, i, q)
            {
                bool m = match_depth(q, ctx, depth + 1);
                any |= m;
                all &= m;
            }
            if (key[1] == 'a' ? !all : !any)
                return false;
            continue;
        }
        const json_t *have = lookup(ctx, key);
        if (json_is_object(val) && json_object_size(val) &&
            json_object_iter_key(json_object_iter(val))[0] == '$') {
            const char *op;
            json_t *want;
            json_object_foreach(val, op, want)
            {
                if (!op_holds(op, want, have))
                    return false;
            }
        } else if (!equal(val, have)) {
            return false;
        }
    }
    return true;
}

bool sb_rules_match(const json_t *query, const json_t *ctx)
{
    return match_depth(query, ctx, 0);
}

static int validate_depth(const json_t *q, char *err, size_t errlen, int depth)
{
    if (depth > MAX_DEPTH) {
        snprintf(err, errlen, "a routing query is nested deeper than %d levels", MAX_DEPTH);
        return -1;
    }
    if (!json_is_object(q)) {
        snprintf(err, errlen, "a routing query must be an object");
        return -1;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)q, key, val)
    {
        if (strcmp(key, "$and") == 0 || strcmp(key, "$or") == 0) {
            if (!json_is_array(val)) {
                snprintf(err, errlen, "%s takes a list of queries", key);
                return -1;
            }
            size_t i;
            json_t *sub;
            json_array_foreach(val, i, sub)
            {
                if (validate_depth(sub, err, errlen, depth + 1))
                    return -1;
            }
            continue;
        }
        if (key[0] == '$') {
            snprintf(err, errlen, "unknown operator '%.40s' where a path is expected", key);
            return -1;
        }
        if (!json_is_object(val) || !json_object_size(val) ||
            json_object_iter_key(json_object_iter(val))[0] != '$')
            continue; /* a literal: equality */
        const char *op;
        json_t *want;
        json_object_foreach(val, op, want)
        {
            bool num = !strcmp(op, "$gt") || !strcmp(op, "$gte") || !strcmp(op, "$lt") ||
                       !strcmp(op, "$lte");
            bool list = !strcmp(op, "$in") || !strcmp(op, "$nin");
            if (num && !json_is_number(want)) {
                snprintf(err, errlen, "%s needs a number", op);
                return -1;
            }
            if (list && !json_is_array(want)) {
                snprintf(err, errlen, "%s needs a list", op);
                return -1;
            }
            if (!strcmp(op, "$exists") && !json_is_boolean(want)) {
                snprintf(err, errlen, "$exists needs true or false");
                return -1;
            }
            if (!strcmp(op, "$regex")) {
                int code;
                PCRE2_SIZE off;
                pcre2_code *re =
                    json_is_string(want)
                        ? pcre2_compile((PCRE2_SPTR)json_string_value(want), PCRE2_ZERO_TERMINATED,
                                        PCRE2_UTF, &code, &off, NULL)
                        : NULL;
                if (!re) {
                    snprintf(err, errlen, "$regex needs a valid regular expression");
                    return -1;
                }
                pcre2_code_free(re);
            }
            if (!num && !list && strcmp(op, "$eq") && strcmp(op, "$ne") && strcmp(op, "$exists") &&
                strcmp(op, "$regex")) {
                snprintf(err, errlen, "unknown operator '%.40s'", op);
                return -1;
            }
        }
    }
    return 0;
}

int sb_rules_validate(const json_t *query, char *err, size_t errlen)
{
    return validate_depth(query, err, errlen, 0);
}

/* The text of a message's content: a string, or its text parts joined. */
static void append_text(const json_t *content, char **out, size_t *len)
{
    if (json_is_string(content)) {
        size_t n = json_string_length(content);
        char *p = realloc(*out, *len + n + 1);
        if (!p)
            return;
        memcpy(p + *len, json_string_value(content), n);
        *len += n;
        p[*len] = '\0';
        *out = p;
        return;
    }
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part) append_text(json_object_get(part, "text"), out, len);
}

json_t *sb_rules_context(const char *body, size_t body_len, const char *meta_hdr, size_t meta_len)
{
    json_t *params = json_loadb(body, body_len, 0, NULL);
    if (!json_is_object(params)) {
        json_decref(params);
        return NULL;
    }
    json_t *meta = json_object();
    json_t *bm = json_object_get(params, "metadata");
    if (json_is_object(bm))
        json_object_update(meta, bm);
    if (meta_hdr) {
        json_t *hm = json_loadb(meta_hdr, meta_len, 0, NULL);
        if (json_is_object(hm))
            json_object_update(meta, hm);
        json_decref(hm);
    }
    size_t prompt = 0;
    char *last = NULL;
    size_t last_len = 0;
    size_t i;
    json_t *msg;
    json_array_foreach(json_object_get(params, "messages"), i, msg)
    {
        char *text = NULL;
        size_t n = 0;
        append_text(json_object_get(msg, "content"), &text, &n);
        prompt += n;
        const char *role = json_string_value(json_object_get(msg, "role"));
        if (role && strcmp(role, "user") == 0) {
            free(last);
            last = text;
            last_len = n;
        } else {
            free(text);
        }
    }
    json_t *req = json_pack("{s:I}", "prompt_bytes", (json_int_t)prompt);
    json_object_set_new(req, "last_user_message",
                        last ? json_stringn(last, last_len) : json_string(""));
    free(last);
    json_t *ctx = json_object();
    json_object_set_new(ctx, "metadata", meta);
    json_object_set_new(ctx, "params", params);
    json_object_set_new(ctx, "request", req);
    return ctx;
}

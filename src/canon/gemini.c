/* The Gemini dialect (generateContent; AI Studio `gemini/...` and Vertex AI `vertex_ai/...`
 * share the body): request encoder, response / stream / error decoders, embeddings.
 * The mapping decisions are listed in docs/translation/gemini.md. */
#include "canon/gemini.h"

#include "http/sse.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Nesting allowed while cleaning a tool schema; a $ref cycle runs into it. */
#define SCHEMA_MAX_DEPTH 32
/* Schemas one tool may expand to: definitions referenced twice at each level would otherwise
 * grow exponentially within the depth limit. */
#define SCHEMA_MAX_NODES 20000
/* Bounds on an embeddings response, whatever the provider says. */
#define EMBED_MAX_VECTORS 4096
#define EMBED_MAX_DIMS    65536
/* A stream event when the caller gives no bound. */
#define DEFAULT_EVENT_BYTES (16u * 1024 * 1024)
/* Token counts above this are treated as this, so sums cannot overflow. */
#define TOKENS_MAX ((int64_t)1 << 48)

/* ------------------------------------------------------------------ small helpers */

static const char *str_of(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int set_new(json_t *obj, const char *key, json_t *v)
{
    if (!v)
        return -ENOMEM;
    return json_object_set_new(obj, key, v) ? -ENOMEM : 0;
}

static int push_new(json_t *arr, json_t *v)
{
    if (!v)
        return -ENOMEM;
    return json_array_append_new(arr, v) ? -ENOMEM : 0;
}

static void set_buf_error(struct sb_error *err, int rc)
{
    if (rc == -E2BIG)
        sb_error_set(err, 413, "invalid_request_error", NULL, NULL,
                     "the request is too large for gemini");
    else
        sb_error_set(err, 500, "api_error", NULL, NULL, "out of memory encoding for gemini");
}

/* ------------------------------------------------------------------ schema cleaning */

/* Keywords of Gemini's OpenAPI subset (Schema object) that are passed on; anything else
 * (additionalProperties, $schema, strict, $id, $comment, examples, default, patternProperties,
 * allOf, not, if/then/else...) is refused by the API with a 400, so it is removed. */
static const char *const schema_keep[] = {
    "title",         "description",   "nullable",         "minItems",  "maxItems",
    "minimum",       "maximum",       "minLength",        "maxLength", "pattern",
    "minProperties", "maxProperties", "propertyOrdering",
};

struct schema_ctx {
    const json_t *root;
    size_t nodes; /* schemas produced so far, against $ref expansion blowing up */
    struct sb_error *err;
    const char *where; /* "tools[i]" or "response_format" for messages */
};

static json_t *clean_schema(struct schema_ctx *c, const json_t *node, int depth);

static int schema_fail(struct schema_ctx *c, const char *fmt, const char *what)
{
    sb_error_set(c->err, 400, "invalid_request_error", "invalid_schema", "tools", "%s: %s%s",
                 c->where, fmt, what ? what : "");
    return -1;
}

static const json_t *resolve_ref(struct schema_ctx *c, const char *ref)
{
    const char *name = NULL;
    const json_t *defs = NULL;
    if (strncmp(ref, "#/$defs/", 8) == 0) {
        name = ref + 8;
        defs = json_object_get(c->root, "$defs");
    } else if (strncmp(ref, "#/definitions/", 14) == 0) {
        name = ref + 14;
        defs = json_object_get(c->root, "definitions");
    }
    if (!name || !json_is_object(defs) || strchr(name, '/'))
        return NULL;
    const json_t *t = json_object_get(defs, name);
    return json_is_object(t) ? t : NULL;
}

/* Copies the annotation keys of `from` that `to` lacks (a $ref or a collapsed anyOf keeps the
 * description written beside it). */
static int merge_annotations(json_t *to, const json_t *from)
{
    static const char *const keys[] = {"description", "title"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = json_object_get(from, keys[i]);
        if (json_is_string(v) && !json_object_get(to, keys[i]) && json_object_set(to, keys[i], v))
            return -ENOMEM;
    }
    return 0;
}

static bool is_null_schema(const json_t *s)
{
    const char *t = str_of(s, "type");
    return t && strcmp(t, "null") == 0 && json_object_size(s) <= 2;
}

/* anyOf / oneOf: [X, {type:null}] -> X + nullable; several non-null branches stay anyOf. */
static json_t *clean_union(struct schema_ctx *c, const json_t *node, const json_t *alts, int depth)
{
    bool nullable = false;
    size_t kept = 0;
    const json_t *only = NULL;
    size_t i;
    json_t *a;
    json_array_foreach(alts, i, a)
    {
        if (is_null_schema(a)) {
            nullable = true;
        } else {
            kept++;
            only = a;
        }
    }
    json_t *out;
    if (kept == 1) {
        out = clean_schema(c, only, depth + 1);
        if (!out)
            return NULL;
    } else if (kept == 0) {
        out = json_object();
        if (!out)
            return NULL;
    } else {
        out = json_object();
        json_t *arr = json_array();
        if (!out || !arr) {
            json_decref(out);
            json_decref(arr);
            return NULL;
        }
        if (json_object_set_new(out, "anyOf", arr)) {
            json_decref(out);
            return NULL;
        }
        json_array_foreach(alts, i, a)
        {
            if (is_null_schema(a))
                continue;
            json_t *ca = clean_schema(c, a, depth + 1);
            if (!ca || json_array_append_new(arr, ca)) {
                json_decref(out);
                return NULL;
            }
        }
    }
    if (merge_annotations(out, node) ||
        (nullable && json_object_set_new(out, "nullable", json_true()))) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* "type": "string" | ["string","null"] | ["string","number"]. */
static int clean_type(json_t *out, const json_t *type)
{
    if (json_is_string(type))
        return json_object_set(out, "type", (json_t *)type) ? -ENOMEM : 0;
    if (!json_is_array(type))
        return 0;
    size_t i, nonnull = 0;
    json_t *t, *first = NULL;
    bool nullable = false;
    json_array_foreach(type, i, t)
    {
        if (!json_is_string(t))
            continue;
        if (strcmp(json_string_value(t), "null") == 0) {
            nullable = true;
        } else {
            if (!first)
                first = t;
            nonnull++;
        }
    }
    if (nonnull == 1 && json_object_set(out, "type", first))
        return -ENOMEM;
    if (nonnull > 1) {
        json_t *any = json_array();
        if (!any || json_object_set_new(out, "anyOf", any))
            return -ENOMEM;
        json_array_foreach(type, i, t)
        {
            if (!json_is_string(t) || strcmp(json_string_value(t), "null") == 0)
                continue;
            json_t *o = json_pack("{s:O}", "type", t);
            if (push_new(any, o))
                return -ENOMEM;
        }
    }
    if (nullable && json_object_set_new(out, "nullable", json_true()))
        return -ENOMEM;
    return 0;
}

static json_t *clean_schema(struct schema_ctx *c, const json_t *node, int depth)
{
    if (depth > SCHEMA_MAX_DEPTH) {
        schema_fail(c, "schema nested too deeply (or a $ref cycle)", NULL);
        return NULL;
    }
    if (++c->nodes > SCHEMA_MAX_NODES) {
        schema_fail(c, "schema too large once its $ref are expanded", NULL);
        return NULL;
    }
    if (!json_is_object(node)) /* `true` / `{}`-like schemas: accept anything */
        return json_object();

    const char *ref = str_of(node, "$ref");
    if (ref) {
        const json_t *target = resolve_ref(c, ref);
        if (!target) {
            schema_fail(c, "cannot resolve $ref ", ref);
            return NULL;
        }
        json_t *out = clean_schema(c, target, depth + 1);
        if (out && merge_annotations(out, node)) {
            json_decref(out);
            return NULL;
        }
        return out;
    }
    json_t *alts = json_object_get(node, "anyOf");
    if (!json_is_array(alts))
        alts = json_object_get(node, "oneOf");
    if (json_is_array(alts) && json_array_size(alts) > 0)
        return clean_union(c, node, alts, depth);

    json_t *out = json_object();
    if (!out)
        return NULL;
    if (clean_type(out, json_object_get(node, "type")))
        goto fail;
    for (size_t i = 0; i < sizeof schema_keep / sizeof schema_keep[0]; i++) {
        json_t *v = json_object_get(node, schema_keep[i]);
        if (v && json_object_set_new(out, schema_keep[i], json_deep_copy(v)))
            goto fail;
    }
    json_t *en = json_object_get(node, "enum");
    json_t *cst = json_object_get(node, "const");
    if (json_is_array(en)) {
        if (json_object_set_new(out, "enum", json_deep_copy(en)))
            goto fail;
    } else if (cst) {
        if (set_new(out, "enum", json_pack("[O]", cst)))
            goto fail;
    }
    /* Gemini knows only "enum" and "date-time" for strings and refuses the others (uri,
     * email...); numeric formats (int32, double...) pass. */
    const char *fmt = str_of(node, "format");
    const char *ty = str_of(out, "type");
    if (fmt && (!ty || strcasecmp(ty, "string") != 0 || strcmp(fmt, "enum") == 0 ||
                strcmp(fmt, "date-time") == 0)) {
        if (set_new(out, "format", json_string(fmt)))
            goto fail;
    }
    json_t *req = json_object_get(node, "required");
    if (json_is_array(req) && json_array_size(req) > 0 &&
        json_object_set_new(out, "required", json_deep_copy(req)))
        goto fail;
    json_t *props = json_object_get(node, "properties");
    if (json_is_object(props)) {
        json_t *cp = json_object();
        if (!cp || json_object_set_new(out, "properties", cp))
            goto fail;
        const char *k;
        json_t *v;
        json_object_foreach(props, k, v)
        {
            json_t *cv = clean_schema(c, v, depth + 1);
            if (!cv || json_object_set_new(cp, k, cv))
                goto fail;
        }
    }
    json_t *items = json_object_get(node, "items");
    if (json_is_array(items)) /* tuple form: Gemini has one item schema */
        items = json_array_get(items, 0);
    if (items) {
        json_t *ci = clean_schema(c, items, depth + 1);
        if (!ci || json_object_set_new(out, "items", ci))
            goto fail;
    }
    return out;
fail:
    json_decref(out);
    return NULL;
}

/* ------------------------------------------------------------------ request */

struct enc {
    const struct sb_canon_req *req;
    struct sb_error *err;
    bool failed; /* err is set */
};

static int enc_fail(struct enc *e, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int enc_fail(struct enc *e, const char *param, const char *fmt, ...)
{
    sb_error_set(e->err, 400, "invalid_request_error", "invalid_value", param, "%s", "");
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->err->message, sizeof e->err->message, fmt, ap);
    va_end(ap);
    if (n < 0)
        e->err->message[0] = '\0';
    e->failed = true;
    return -1;
}

static const char *mime_from_url(const char *url)
{
    static const struct {
        const char *ext, *mime;
    } map[] = {
        {"png", "image/png"}, {"jpg", "image/jpeg"},  {"jpeg", "image/jpeg"},
        {"gif", "image/gif"}, {"webp", "image/webp"}, {"pdf", "application/pdf"},
        {"mp3", "audio/mp3"}, {"wav", "audio/wav"},   {"mp4", "video/mp4"},
    };
    size_t end = strcspn(url, "?#");
    const char *dot = NULL;
    for (size_t i = 0; i < end; i++) {
        if (url[i] == '/')
            dot = NULL;
        else if (url[i] == '.')
            dot = url + i;
    }
    if (!dot)
        return NULL;
    size_t elen = (size_t)(url + end - dot - 1);
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strlen(map[i].ext) == elen && strncasecmp(dot + 1, map[i].ext, elen) == 0)
            return map[i].mime;
    return NULL;
}

static json_t *media_part(struct enc *e, const struct sb_part *p, size_t mi, size_t pi)
{
    if (p->data) {
        if (!p->media_type || !*p->media_type) {
            enc_fail(e, "messages", "messages[%zu].content[%zu]: %s", mi, pi,
                     "inline data without a media type");
            return NULL;
        }
        return json_pack("{s:{s:s,s:s}}", "inlineData", "mimeType", p->media_type, "data", p->data);
    }
    if (p->url) {
        char *mt = NULL, *data = NULL;
        if (sb_canon_data_uri(p->url, &mt, &data) == 0) {
            json_t *r = json_pack("{s:{s:s,s:s}}", "inlineData", "mimeType", mt, "data", data);
            free(mt);
            free(data);
            return r;
        }
        const char *mime = p->media_type && *p->media_type ? p->media_type : mime_from_url(p->url);
        if (!mime) {
            enc_fail(e, "messages", "messages[%zu].content[%zu]: %s", mi, pi,
                     "cannot tell the media type of the file from its URL (use png, jpg, jpeg, "
                     "gif, webp, pdf, mp3, wav or mp4)");
            return NULL;
        }
        return json_pack("{s:{s:s,s:s}}", "fileData", "mimeType", mime, "fileUri", p->url);
    }
    enc_fail(e, "messages", "messages[%zu].content[%zu]: %s", mi, pi, "media without data or url");
    return NULL;
}

static bool gemini_id(const char *id)
{
    return id && *id && strncmp(id, "call_", 5) != 0;
}

static json_t *args_object(const char *text)
{
    if (text && *text) {
        json_t *j = json_loads(text, 0, NULL);
        if (json_is_object(j))
            return j;
        json_decref(j);
    }
    return json_object();
}

static json_t *call_part(const struct sb_part *p)
{
    json_t *fc = json_object();
    json_t *part = json_object();
    if (!fc || !part || json_object_set_new(part, "functionCall", fc)) {
        json_decref(part);
        if (part)
            return NULL;
        json_decref(fc);
        return NULL;
    }
    if (set_new(fc, "name", json_string(p->name ? p->name : "")) ||
        set_new(fc, "args", args_object(p->arguments)) ||
        (gemini_id(p->id) && set_new(fc, "id", json_string(p->id)))) {
        json_decref(part);
        return NULL;
    }
    return part;
}

/* The name of the call a result answers: its own, else the latest earlier assistant
 * TOOL_CALL with the same id. */
static const char *result_name(const struct sb_canon_req *req, size_t mi, const struct sb_part *p)
{
    if (p->name && *p->name)
        return p->name;
    if (!p->id)
        return NULL;
    for (size_t i = mi; i-- > 0;) {
        const struct sb_msg *m = &req->msgs[i];
        if (m->role != SB_ROLE_ASSISTANT)
            continue;
        for (size_t j = 0; j < m->nparts; j++) {
            const struct sb_part *q = &m->parts[j];
            if (q->type == SB_PART_TOOL_CALL && q->id && strcmp(q->id, p->id) == 0)
                return q->name;
        }
    }
    return NULL;
}

/* Appends the functionResponse of one result (and its images as inline parts after it). */
static int result_parts(struct enc *e, size_t mi, size_t pi, const struct sb_part *p, json_t *parts)
{
    const char *name = result_name(e->req, mi, p);
    if (!name)
        return enc_fail(e, "messages", "messages[%zu].tool_call_id (part %zu): %s", mi, pi,
                        "no earlier assistant tool call has this id, and gemini needs the "
                        "function name");
    struct sb_buf text;
    sb_buf_init(&text, SIZE_MAX / 2);
    int rc = 0;
    if (p->text)
        rc = sb_buf_append_str(&text, p->text);
    for (size_t k = 0; !rc && k < p->nparts; k++)
        if (p->parts[k].type == SB_PART_TEXT && p->parts[k].text)
            rc = sb_buf_append_str(&text, p->parts[k].text);
    if (rc) {
        sb_buf_free(&text);
        return rc;
    }
    json_t *resp = NULL;
    if (text.len) {
        resp = json_loadb(text.data, text.len, 0, NULL);
        if (!json_is_object(resp)) {
            json_decref(resp);
            resp = NULL;
        }
    }
    if (!resp)
        resp = json_pack("{s:s%}", "content", text.data ? text.data : "", text.len);
    sb_buf_free(&text);
    json_t *fr = json_object();
    json_t *part = json_pack("{s:o}", "functionResponse", fr);
    if (!part || !resp || set_new(fr, "name", json_string(name)) ||
        json_object_set_new(fr, "response", resp) ||
        (gemini_id(p->id) && set_new(fr, "id", json_string(p->id)))) {
        if (!part)
            json_decref(resp);
        json_decref(part);
        return -ENOMEM;
    }
    if (push_new(parts, part))
        return -ENOMEM;
    for (size_t k = 0; k < p->nparts; k++) {
        const struct sb_part *q = &p->parts[k];
        if (q->type != SB_PART_IMAGE && q->type != SB_PART_DOCUMENT)
            continue;
        json_t *m = media_part(e, q, mi, pi);
        if (!m)
            return e->failed ? -1 : -ENOMEM;
        if (push_new(parts, m))
            return -ENOMEM;
    }
    return 0;
}

static int add_part(json_t *parts, json_t *part, const char *sig)
{
    if (!part)
        return -ENOMEM;
    if (sig && json_object_set_new(part, "thoughtSignature", json_string(sig))) {
        json_decref(part);
        return -ENOMEM;
    }
    return push_new(parts, part);
}

static bool sig_only(const struct sb_part *p)
{
    return p->type == SB_PART_THINKING && (!p->text || !*p->text) && p->signature && *p->signature;
}

/* Whether the part becomes a Gemini part of its own. */
static bool emits(const struct sb_part *p)
{
    switch (p->type) {
    case SB_PART_TEXT:
        return p->text && *p->text;
    case SB_PART_IMAGE:
    case SB_PART_DOCUMENT:
    case SB_PART_TOOL_CALL:
    case SB_PART_TOOL_RESULT:
        return true;
    case SB_PART_THINKING:
    case SB_PART_REDACTED_THINKING:
        break;
    }
    return false;
}

/* Which part each signature-only THINKING part's signature goes on: the next part, except
 * that a function call further on in the message takes it first. Gemini 3 refuses a turn
 * whose first function call lost its signature, and clients that keep thinking apart from
 * the content (OpenAI's thinking_blocks) send every thinking block first, so "the next part"
 * would often be the text before the call. Several signatures go, in order, to the parts
 * that follow, a part before the calls taking one only when more are waiting than there are
 * calls left. Returns the signature that found no part after it, or NULL. */
static const char *place_signatures(const struct sb_msg *m, const char **sig_for,
                                    const char **queue)
{
    size_t head = 0, tail = 0;
    for (size_t i = 0; i < m->nparts; i++) {
        const struct sb_part *p = &m->parts[i];
        if (sig_only(p)) {
            queue[tail++] = p->signature;
            continue;
        }
        if (head == tail || !emits(p))
            continue;
        size_t calls_ahead = 0;
        for (size_t j = i + 1; p->type != SB_PART_TOOL_CALL && j < m->nparts; j++)
            if (m->parts[j].type == SB_PART_TOOL_CALL)
                calls_ahead++;
        if (tail - head > calls_ahead)
            sig_for[i] = queue[head++];
    }
    return head < tail ? queue[tail - 1] : NULL;
}

/* The parts of one message. */
static int message_parts(struct enc *e, size_t mi, json_t *parts)
{
    const struct sb_msg *m = &e->req->msgs[mi];
    if (m->nparts == 0)
        return 0;
    const char **sig_for = calloc(m->nparts, sizeof *sig_for);
    const char **queue = calloc(m->nparts, sizeof *queue);
    if (!sig_for || !queue) {
        free(sig_for);
        free(queue);
        return -ENOMEM;
    }
    const char *leftover = place_signatures(m, sig_for, queue);
    int rc = 0;
    for (size_t pi = 0; !rc && pi < m->nparts; pi++) {
        const struct sb_part *p = &m->parts[pi];
        switch (p->type) {
        case SB_PART_TEXT:
            if (p->text && *p->text)
                rc = add_part(parts, json_pack("{s:s}", "text", p->text), sig_for[pi]);
            break;
        case SB_PART_IMAGE:
        case SB_PART_DOCUMENT: {
            json_t *mp = media_part(e, p, mi, pi);
            rc = mp ? add_part(parts, mp, sig_for[pi]) : (e->failed ? -1 : -ENOMEM);
            break;
        }
        case SB_PART_TOOL_CALL:
            rc = add_part(parts, call_part(p), sig_for[pi]);
            break;
        case SB_PART_TOOL_RESULT: {
            size_t before = json_array_size(parts);
            rc = result_parts(e, mi, pi, p, parts);
            if (!rc && sig_for[pi] && json_array_size(parts) > before &&
                json_object_set_new(json_array_get(parts, before), "thoughtSignature",
                                    json_string(sig_for[pi])))
                rc = -ENOMEM;
            break;
        }
        case SB_PART_THINKING:
            if (p->text && *p->text)
                rc = add_part(parts, json_pack("{s:s,s:b}", "text", p->text, "thought", 1),
                              p->signature);
            break;
        case SB_PART_REDACTED_THINKING:
            break;
        }
    }
    free(sig_for);
    free(queue);
    /* A signature with no part after it in its message stays with the part before it. */
    if (!rc && leftover && json_array_size(parts) > 0) {
        json_t *last = json_array_get(parts, json_array_size(parts) - 1);
        if (!json_object_get(last, "thoughtSignature") &&
            json_object_set_new(last, "thoughtSignature", json_string(leftover)))
            rc = -ENOMEM;
    }
    return rc;
}

static int encode_contents(struct enc *e, json_t *root)
{
    const struct sb_canon_req *req = e->req;
    json_t *contents = json_array();
    json_t *sys = json_array();
    int rc = 0;
    if (!contents || !sys) {
        json_decref(contents);
        json_decref(sys);
        return -ENOMEM;
    }
    json_t *last = NULL;
    const char *last_role = NULL;
    for (size_t mi = 0; !rc && mi < req->nmsgs; mi++) {
        const struct sb_msg *m = &req->msgs[mi];
        if (m->role == SB_ROLE_SYSTEM) {
            for (size_t pi = 0; !rc && pi < m->nparts; pi++)
                if (m->parts[pi].type == SB_PART_TEXT && m->parts[pi].text && *m->parts[pi].text)
                    rc = push_new(sys, json_pack("{s:s}", "text", m->parts[pi].text));
            continue;
        }
        const char *role = m->role == SB_ROLE_ASSISTANT ? "model" : "user";
        json_t *parts = json_array();
        if (!parts) {
            rc = -ENOMEM;
            break;
        }
        rc = message_parts(e, mi, parts);
        if (rc || (json_array_size(parts) == 0 && strcmp(role, "model") == 0)) {
            /* A model turn with nothing Gemini accepts is left out rather than sent empty. */
            json_decref(parts);
            continue;
        }
        if (last && strcmp(last_role, role) == 0) {
            if (json_array_extend(json_object_get(last, "parts"), parts))
                rc = -ENOMEM;
            json_decref(parts);
            continue;
        }
        last = json_pack("{s:s,s:o}", "role", role, "parts", parts);
        last_role = role;
        rc = push_new(contents, last);
    }
    size_t i;
    json_t *turn;
    json_array_foreach(contents, i, turn)
    {
        json_t *parts = json_object_get(turn, "parts");
        if (!rc && json_array_size(parts) == 0)
            rc = push_new(parts, json_pack("{s:s}", "text", " "));
    }
    if (!rc)
        rc = json_object_set_new(root, "contents", contents) ? -ENOMEM : 0;
    else
        json_decref(contents);
    if (!rc && json_array_size(sys) > 0)
        rc = set_new(root, "systemInstruction", json_pack("{s:O}", "parts", sys));
    json_decref(sys);
    return rc;
}

static int unsupported(struct enc *e, const char *param, const char *why)
{
    sb_error_set(e->err, 400, "invalid_request_error", "unsupported_parameter", param,
                 "'%s' is not supported by gemini models%s", param, why);
    e->failed = true;
    return -1;
}

static int encode_generation(struct enc *e, json_t *root)
{
    const struct sb_canon_req *r = e->req;
    json_t *g = json_object();
    if (!g || json_object_set_new(root, "generationConfig", g))
        return -ENOMEM;
    int rc = 0;
    if (r->has_temperature)
        rc = rc ? rc : set_new(g, "temperature", json_real(r->temperature));
    if (r->has_top_p)
        rc = rc ? rc : set_new(g, "topP", json_real(r->top_p));
    if (r->top_k >= 0)
        rc = rc ? rc : set_new(g, "topK", json_integer(r->top_k));
    if (r->n > 1)
        return unsupported(e, "n", " through this gateway (one candidate per answer)");
    if (r->n == 1)
        rc = rc ? rc : set_new(g, "candidateCount", json_integer(1));
    if (r->max_tokens >= 0)
        rc = rc ? rc : set_new(g, "maxOutputTokens", json_integer(r->max_tokens));
    if (r->nstop > 0) {
        json_t *st = json_array();
        rc = rc ? rc : set_new(g, "stopSequences", st);
        for (size_t i = 0; !rc && i < r->nstop; i++)
            rc = push_new(st, json_string(r->stop[i] ? r->stop[i] : ""));
    }
    if (r->has_presence_penalty)
        rc = rc ? rc : set_new(g, "presencePenalty", json_real(r->presence_penalty));
    if (r->has_frequency_penalty)
        rc = rc ? rc : set_new(g, "frequencyPenalty", json_real(r->frequency_penalty));
    if (r->has_seed)
        rc = rc ? rc : set_new(g, "seed", json_integer(r->seed));
    if (r->logprobs) {
        rc = rc ? rc : set_new(g, "responseLogprobs", json_true());
        /* Gemini 2.x accepts 1..20 top candidates (1..5 on older models, which answer 400). */
        if (r->top_logprobs > 0)
            rc = rc ? rc
                    : set_new(g, "logprobs",
                              json_integer(r->top_logprobs > 20 ? 20 : r->top_logprobs));
    }
    if (r->response_format == SB_RF_JSON_OBJECT || r->response_format == SB_RF_JSON_SCHEMA)
        rc = rc ? rc : set_new(g, "responseMimeType", json_string("application/json"));
    if (r->response_format == SB_RF_JSON_SCHEMA && json_is_object(r->rf_schema))
        rc = rc ? rc : set_new(g, "responseJsonSchema", json_deep_copy(r->rf_schema));
    int64_t budget = -1;
    if (r->thinking_budget >= 0) {
        budget = r->thinking_budget;
    } else if (r->reasoning_effort) {
        budget = sb_canon_effort_budget(r->reasoning_effort);
        if (budget < 0) {
            sb_error_set(e->err, 400, "invalid_request_error", "invalid_value", "reasoning_effort",
                         "unknown reasoning_effort value");
            e->failed = true;
            return -1;
        }
    }
    if (!rc && budget >= 0) {
        json_t *tc = json_pack("{s:I}", "thinkingBudget", (json_int_t)budget);
        if (tc && budget > 0 && json_object_set_new(tc, "includeThoughts", json_true())) {
            json_decref(tc);
            tc = NULL;
        }
        rc = set_new(g, "thinkingConfig", tc);
    }
    return rc;
}

static int encode_tools(struct enc *e, json_t *root)
{
    const struct sb_canon_req *r = e->req;
    if (r->ntools == 0)
        return 0;
    json_t *decls = json_array();
    if (set_new(root, "tools", json_pack("[{s:o}]", "functionDeclarations", decls)))
        return -ENOMEM;
    for (size_t i = 0; i < r->ntools; i++) {
        const struct sb_tool *t = &r->tools[i];
        json_t *d = json_pack("{s:s}", "name", t->name ? t->name : "");
        if (push_new(decls, d))
            return -ENOMEM;
        if (t->description && *t->description &&
            set_new(d, "description", json_string(t->description)))
            return -ENOMEM;
        if (!json_is_object(t->parameters))
            continue;
        char where[32];
        snprintf(where, sizeof where, "tools[%zu]", i);
        struct schema_ctx c = {.root = t->parameters, .err = e->err, .where = where};
        json_t *s = clean_schema(&c, t->parameters, 0);
        if (!s) {
            if (e->err->status == 400) {
                e->failed = true;
                return -1;
            }
            return -ENOMEM;
        }
        /* Gemini refuses an OBJECT with no properties: a function without parameters. */
        const char *ty = str_of(s, "type");
        json_t *props = json_object_get(s, "properties");
        if (ty && strcasecmp(ty, "object") == 0 && json_object_size(props) == 0) {
            json_decref(s);
            continue;
        }
        if (set_new(d, "parameters", s))
            return -ENOMEM;
    }
    const char *mode = NULL;
    switch (r->tool_choice) {
    case SB_TC_UNSET:
        return 0;
    case SB_TC_AUTO:
        mode = "AUTO";
        break;
    case SB_TC_NONE:
        mode = "NONE";
        break;
    case SB_TC_REQUIRED:
    case SB_TC_NAMED:
        mode = "ANY";
        break;
    }
    json_t *fcc = json_pack("{s:s}", "mode", mode);
    if (set_new(root, "toolConfig", json_pack("{s:o}", "functionCallingConfig", fcc)))
        return -ENOMEM;
    if (r->tool_choice == SB_TC_NAMED &&
        set_new(fcc, "allowedFunctionNames",
                json_pack("[s]", r->tool_choice_name ? r->tool_choice_name : "")))
        return -ENOMEM;
    return 0;
}

/* Serializes `root` (built with result `rc`) into out and frees it; on failure out is left
 * as it was and err set (if the builder has not set it). Returns 0 or -1. */
static int finish_body(struct enc *e, json_t *root, int rc, struct sb_buf *out)
{
    size_t mark = out->len;
    rc = rc ? rc : sb_canon_dump_json(root, out);
    json_decref(root);
    if (rc) {
        if (out->len != mark) {
            out->len = mark;
            if (out->data)
                out->data[mark] = '\0';
        }
        if (!e->failed)
            set_buf_error(e->err, rc);
        return -1;
    }
    return 0;
}

static int encode_request(const struct sb_canon_req *req, const char *model, struct sb_buf *out,
                          struct sb_error *err)
{
    (void)model; /* in the URL */
    struct enc e = {.req = req, .err = err};
    memset(err, 0, sizeof *err);
    json_t *root = json_object();
    int rc = root ? 0 : -ENOMEM;
    rc = rc ? rc : encode_contents(&e, root);
    rc = rc ? rc : encode_generation(&e, root);
    rc = rc ? rc : encode_tools(&e, root);
    return finish_body(&e, root, rc, out);
}

/* ------------------------------------------------------------------ token counting */

/* What a count covers: the contents, system instruction and tools of generateContent. */
static int encode_prompt(struct enc *e, json_t *root)
{
    int rc = encode_contents(e, root);
    rc = rc ? rc : encode_tools(e, root);
    if (!rc)
        json_object_del(root, "toolConfig"); /* Vertex's CountTokensRequest has no such field */
    return rc;
}

int sb_gemini_encode_count_tokens(const struct sb_canon_req *req, const char *model,
                                  struct sb_buf *out, struct sb_error *err)
{
    struct enc e = {.req = req, .err = err};
    memset(err, 0, sizeof *err);
    if (!model || !*model)
        model = req->model;
    if (model && strncmp(model, "models/", 7) == 0)
        model += 7;
    if (!model || !*model) {
        sb_error_set(err, 400, "invalid_request_error", "invalid_value", "model",
                     "a model is needed to count tokens");
        return -1;
    }
    size_t mlen = strlen(model);
    char *mname = malloc(mlen + 8);
    json_t *gcr = json_object();
    json_t *root = json_object();
    int rc = mname && gcr && root ? 0 : -ENOMEM;
    if (!rc) {
        memcpy(mname, "models/", 7);
        memcpy(mname + 7, model, mlen + 1);
        rc = set_new(gcr, "model", json_string(mname));
    }
    free(mname);
    if (!rc && json_object_set_new(root, "generateContentRequest", gcr))
        rc = -ENOMEM;
    else if (rc)
        json_decref(gcr);
    rc = rc ? rc : encode_prompt(&e, gcr);
    return finish_body(&e, root, rc, out);
}

int sb_vertex_encode_count_tokens(const struct sb_canon_req *req, const char *model,
                                  struct sb_buf *out, struct sb_error *err)
{
    (void)model; /* in the URL */
    struct enc e = {.req = req, .err = err};
    memset(err, 0, sizeof *err);
    json_t *root = json_object();
    return finish_body(&e, root, root ? encode_prompt(&e, root) : -ENOMEM, out);
}

int sb_gemini_decode_count_tokens(const char *body, size_t len, int64_t *tokens)
{
    static const char *const known[] = {"totalBillableCharacters", "promptTokensDetails",
                                        "cachedContentTokenCount", "cacheTokensDetails"};
    json_t *root = body ? json_loadb(body, len, 0, NULL) : NULL;
    int rc = SB_CANON_E_INVALID;
    if (!json_is_object(root) || json_object_get(root, "error"))
        goto out;
    json_t *t = json_object_get(root, "totalTokens");
    int64_t n = 0;
    if (t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0)
            goto out;
        n = json_integer_value(t) > TOKENS_MAX ? TOKENS_MAX : json_integer_value(t);
    } else if (json_object_size(root) > 0) {
        bool any = false;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            any = any || json_object_get(root, known[i]);
        if (!any)
            goto out;
    }
    *tokens = n;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------ errors */

static bool context_wording(const char *msg)
{
    static const char *const pats[] = {"input token count",        "context length",
                                       "context window",           "prompt is too long",
                                       "maximum number of tokens", "too many tokens"};
    for (size_t i = 0; i < sizeof pats / sizeof pats[0]; i++)
        if (strcasestr(msg, pats[i]))
            return true;
    return false;
}

/* "34.4s", "1s", "0.5s" -> milliseconds, or -1. */
static int64_t parse_delay(const char *s)
{
    int64_t sec = 0, ms = 0;
    size_t i = 0;
    if (!isdigit((unsigned char)s[0]))
        return -1;
    for (; isdigit((unsigned char)s[i]); i++) {
        if (sec > 100000000)
            return -1;
        sec = sec * 10 + (s[i] - '0');
    }
    if (s[i] == '.') {
        i++;
        int64_t scale = 100;
        for (; isdigit((unsigned char)s[i]); i++) {
            ms += (s[i] - '0') * scale;
            scale /= 10;
        }
    }
    if (s[i] != 's' || s[i + 1] != '\0')
        return -1;
    return sec * 1000 + ms;
}

static void fill_error(const json_t *eo, int http_status, struct sb_canon_error *out)
{
    json_t *jc = json_object_get(eo, "code");
    int status = http_status;
    if (status < 400 || status > 599)
        status =
            json_is_integer(jc) && json_integer_value(jc) >= 400 && json_integer_value(jc) <= 599
                ? (int)json_integer_value(jc)
                : 500;
    const char *st = str_of(eo, "status");
    const char *msg = str_of(eo, "message");
    if (!msg || !*msg)
        msg = NULL;
    enum sb_err_kind kind = sb_err_kind_of_status(status);
    json_t *details = json_object_get(eo, "details");
    int64_t retry = -1;
    if (st) {
        if (strcmp(st, "INVALID_ARGUMENT") == 0 || strcmp(st, "FAILED_PRECONDITION") == 0) {
            kind = SB_ERRK_INVALID_REQUEST;
            size_t i;
            json_t *d;
            json_array_foreach(details, i, d)
            {
                const char *reason = str_of(d, "reason");
                if (reason && strcmp(reason, "API_KEY_INVALID") == 0) {
                    kind = SB_ERRK_AUTH;
                    status = 401;
                }
            }
            if (kind == SB_ERRK_INVALID_REQUEST && msg && context_wording(msg))
                kind = SB_ERRK_CONTEXT_WINDOW;
        } else if (strcmp(st, "UNAUTHENTICATED") == 0) {
            kind = SB_ERRK_AUTH;
        } else if (strcmp(st, "PERMISSION_DENIED") == 0) {
            kind = SB_ERRK_PERMISSION;
        } else if (strcmp(st, "NOT_FOUND") == 0) {
            kind = SB_ERRK_NOT_FOUND;
        } else if (strcmp(st, "RESOURCE_EXHAUSTED") == 0) {
            kind = SB_ERRK_RATE_LIMIT;
            size_t i;
            json_t *d;
            json_array_foreach(details, i, d)
            {
                const char *t = str_of(d, "@type");
                const char *delay = str_of(d, "retryDelay");
                if (t && strstr(t, "RetryInfo") && delay)
                    retry = parse_delay(delay);
            }
        } else if (strcmp(st, "INTERNAL") == 0) {
            kind = SB_ERRK_SERVER;
        } else if (strcmp(st, "UNAVAILABLE") == 0) {
            kind = SB_ERRK_OVERLOADED;
        } else if (strcmp(st, "DEADLINE_EXCEEDED") == 0) {
            kind = SB_ERRK_TIMEOUT;
        }
    }
    if (msg)
        sb_canon_error_set(out, status, kind, st, "%s", msg);
    else
        sb_canon_error_set(out, status, kind, st, "gemini returned HTTP %d", status);
    out->retry_after_ms = retry;
}

/* The error object of `{"error":{...}}` or `[{"error":{...}}]`, or NULL. */
static const json_t *error_object(const json_t *root)
{
    if (json_is_array(root) && json_array_size(root) > 0)
        root = json_array_get(root, 0);
    json_t *eo = json_object_get(root, "error");
    return json_is_object(eo) ? eo : NULL;
}

static int decode_error(int status, const char *body, size_t len, struct sb_canon_error *out)
{
    memset(out, 0, sizeof *out);
    sb_canon_error_set(out, status, sb_err_kind_of_status(status), "", "gemini returned HTTP %d",
                       status);
    json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    const json_t *eo = error_object(root);
    if (eo)
        fill_error(eo, status, out);
    json_decref(root);
    return 0;
}

/* ------------------------------------------------------------------ responses */

/* Block boundaries, START, FINISH and USAGE go through the shared block synthesis (canon.h);
 * what is Gemini's own stays here: signatures, whole function calls, the finish held until
 * the end of the stream (Gemini has no terminal event) and the usage that comes with it. */
struct dec {
    struct sb_canon_synth s;
    bool saw_call;
    bool saw_finish;
    enum sb_finish finish;
    bool have_usage;
    struct sb_usage usage;
};

static void dec_init(struct dec *d, sb_canon_emit_cb emit_cb, void *ud)
{
    memset(d, 0, sizeof *d);
    d->s.emit = emit_cb;
    d->s.ud = ud;
    sb_usage_init(&d->usage);
}

/* The signature of the open THINKING block (the shared synthesis has no signature event). */
static int block_signature(struct dec *d, const char *sig, size_t n)
{
    struct sb_canon_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = SB_EV_SIGNATURE;
    sb_usage_init(&ev.usage);
    ev.index = d->s.nblocks - 1;
    ev.text = sig;
    ev.len = n;
    return d->s.emit(d->s.ud, &ev) ? SB_CANON_E_STOP : 0;
}

/* An empty THINKING block holding only the signature of the part that follows. */
static int signature_block(struct dec *d, const char *sig, size_t n)
{
    int rc = sb_canon_synth_open(&d->s, SB_BLOCK_THINKING, NULL, NULL);
    rc = rc ? rc : block_signature(d, sig, n);
    return rc ? rc : sb_canon_synth_close(&d->s);
}

static enum sb_finish map_finish(const char *f)
{
    static const char *const filtered[] = {
        "SAFETY",       "BLOCKLIST",  "PROHIBITED_CONTENT",       "SPII",  "LANGUAGE",
        "IMAGE_SAFETY", "RECITATION", "IMAGE_PROHIBITED_CONTENT", "OTHER", "IMAGE_RECITATION",
    };
    if (strcmp(f, "MAX_TOKENS") == 0)
        return SB_FINISH_LENGTH;
    for (size_t i = 0; i < sizeof filtered / sizeof filtered[0]; i++)
        if (strcmp(f, filtered[i]) == 0)
            return SB_FINISH_CONTENT_FILTER;
    return SB_FINISH_STOP;
}

static int64_t count_of(const json_t *um, const char *key)
{
    json_t *v = json_object_get(um, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return -1;
    return json_integer_value(v) > TOKENS_MAX ? TOKENS_MAX : json_integer_value(v);
}

static void parse_usage(const json_t *um, struct sb_usage *u)
{
    int64_t prompt = count_of(um, "promptTokenCount");
    int64_t cached = count_of(um, "cachedContentTokenCount");
    int64_t cand = count_of(um, "candidatesTokenCount");
    int64_t thoughts = count_of(um, "thoughtsTokenCount");
    int64_t tool = count_of(um, "toolUsePromptTokenCount");
    sb_usage_init(u);
    int64_t in = prompt < 0 ? 0 : prompt;
    if (cached >= 0) {
        u->cache_read = cached > in ? in : cached;
        in -= u->cache_read;
    }
    u->input = in + (tool > 0 ? tool : 0);
    u->output = (cand > 0 ? cand : 0) + (thoughts > 0 ? thoughts : 0);
    if (thoughts >= 0)
        u->reasoning = thoughts;
}

static int decode_part(struct dec *d, const json_t *part)
{
    json_t *js = json_object_get(part, "thoughtSignature");
    const char *sig = json_is_string(js) ? json_string_value(js) : NULL;
    size_t sig_len = sig ? json_string_length(js) : 0;
    json_t *jt = json_object_get(part, "text");
    json_t *fc = json_object_get(part, "functionCall");
    int rc = 0;
    if (json_is_string(jt) && json_is_true(json_object_get(part, "thought"))) {
        /* Opened even when empty: it may carry the signature. */
        if (!d->s.open || d->s.kind != SB_BLOCK_THINKING)
            rc = sb_canon_synth_open(&d->s, SB_BLOCK_THINKING, NULL, NULL);
        if (!rc)
            rc = sb_canon_synth_text(&d->s, SB_BLOCK_THINKING, json_string_value(jt),
                                     json_string_length(jt));
        if (!rc && sig) {
            rc = block_signature(d, sig, sig_len);
            rc = rc ? rc : sb_canon_synth_close(&d->s);
        }
        return rc;
    }
    if (json_is_string(jt)) {
        if (sig)
            rc = signature_block(d, sig, sig_len);
        return rc ? rc
                  : sb_canon_synth_text(&d->s, SB_BLOCK_TEXT, json_string_value(jt),
                                        json_string_length(jt));
    }
    if (json_is_object(fc)) {
        if (sig)
            rc = signature_block(d, sig, sig_len);
        if (rc)
            return rc;
        const char *id = str_of(fc, "id");
        char synth[32];
        if (!id || !*id) {
            sb_canon_random_id("call_", synth, sizeof synth);
            id = synth;
        }
        const char *name = str_of(fc, "name");
        json_t *args = json_object_get(fc, "args");
        char *text = json_is_object(args) ? json_dumps(args, JSON_COMPACT) : strdup("{}");
        if (!text)
            return -ENOMEM;
        rc = sb_canon_synth_open(&d->s, SB_BLOCK_TOOL_CALL, id, name ? name : "");
        rc = rc ? rc : sb_canon_synth_delta(&d->s, text, strlen(text));
        free(text);
        rc = rc ? rc : sb_canon_synth_close(&d->s);
        d->saw_call = true;
        return rc;
    }
    /* inlineData, executableCode...: no canonical block, but a signature is kept */
    return sig ? signature_block(d, sig, sig_len) : 0;
}

/* One GenerateContentResponse (a whole body or one stream chunk). */
static int decode_chunk(struct dec *d, const json_t *root)
{
    if (d->s.failed)
        return 0;
    if (!json_is_object(root))
        return SB_CANON_E_INVALID;
    const json_t *eo = json_object_get(root, "error");
    if (json_is_object(eo)) {
        struct sb_canon_error err;
        fill_error(eo, 0, &err);
        return sb_canon_synth_error(&d->s, &err);
    }
    int rc = sb_canon_synth_start(&d->s, str_of(root, "responseId"), str_of(root, "modelVersion"));
    json_t *cands = json_object_get(root, "candidates");
    json_t *c0 = json_array_get(cands, 0);
    if (json_is_object(c0)) {
        json_t *parts = json_object_get(json_object_get(c0, "content"), "parts");
        size_t i;
        json_t *p;
        json_array_foreach(parts, i, p)
        {
            if (rc)
                break;
            if (json_is_object(p))
                rc = decode_part(d, p);
        }
        const char *fr = str_of(c0, "finishReason");
        if (fr) {
            d->saw_finish = true;
            d->finish = map_finish(fr);
        }
    } else if (str_of(json_object_get(root, "promptFeedback"), "blockReason")) {
        d->saw_finish = true;
        d->finish = SB_FINISH_CONTENT_FILTER;
    }
    json_t *um = json_object_get(root, "usageMetadata");
    if (json_is_object(um)) {
        parse_usage(um, &d->usage);
        d->have_usage = true;
    }
    return rc;
}

static int decode_finish(struct dec *d)
{
    enum sb_finish f = d->finish;
    if (d->saw_call && f == SB_FINISH_STOP)
        f = SB_FINISH_TOOL_CALLS;
    int rc = sb_canon_synth_finish(&d->s, f);
    if (rc || !d->have_usage)
        return rc;
    return sb_canon_synth_usage(&d->s, &d->usage);
}

/* A whole body: one response object, or the array a non-SSE stream gives. */
static int decode_json(struct dec *d, const json_t *root, bool need_finish)
{
    int rc = 0;
    if (json_is_array(root)) {
        if (json_array_size(root) == 0)
            return SB_CANON_E_INVALID;
        size_t i;
        json_t *c;
        json_array_foreach(root, i, c)
        {
            if ((rc = decode_chunk(d, c)) != 0 || d->s.failed)
                return rc;
        }
    } else {
        if (!json_is_object(root))
            return SB_CANON_E_INVALID;
        if (!json_object_get(root, "error") && !json_object_get(root, "candidates") &&
            !json_object_get(root, "promptFeedback"))
            return SB_CANON_E_INVALID;
        rc = decode_chunk(d, root);
        if (rc || d->s.failed)
            return rc;
    }
    if (!d->saw_finish) {
        if (need_finish)
            return SB_CANON_E_CUT;
        d->finish = SB_FINISH_STOP;
    }
    return decode_finish(d);
}

static int decode_response(const char *body, size_t len, sb_canon_emit_cb emit_cb, void *ud)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    if (!root)
        return SB_CANON_E_INVALID;
    struct dec d;
    dec_init(&d, emit_cb, ud);
    int rc = decode_json(&d, root, false);
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------ stream */

enum stream_mode { MODE_UNKNOWN, MODE_SSE, MODE_RAW };

struct gstream {
    struct dec d;
    struct sb_sse_parser sse;
    struct sb_buf raw; /* MODE_RAW: a plain JSON body (an error, or array-mode chunks) */
    enum stream_mode mode;
    int rc; /* from inside the SSE callback */
};

static void *stream_new(size_t max_event_bytes)
{
    struct gstream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    if (!max_event_bytes)
        max_event_bytes = DEFAULT_EVENT_BYTES;
    dec_init(&s->d, NULL, NULL);
    sb_sse_parser_init(&s->sse, max_event_bytes);
    sb_buf_init(&s->raw, max_event_bytes);
    return s;
}

static void stream_free(void *st)
{
    struct gstream *s = st;
    if (!s)
        return;
    sb_sse_parser_free(&s->sse);
    sb_buf_free(&s->raw);
    free(s);
}

static int on_sse(void *ud, const struct sb_sse_event *ev)
{
    struct gstream *s = ud;
    if (ev->is_comment || ev->data_len == 0)
        return 0;
    if (ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0)
        return 0;
    json_t *root = json_loadb(ev->data, ev->data_len, 0, NULL);
    if (!root) {
        s->rc = SB_CANON_E_INVALID;
        return 1;
    }
    int rc = 0;
    if (json_is_array(root)) {
        size_t i;
        json_t *c;
        json_array_foreach(root, i, c)
        {
            if ((rc = decode_chunk(&s->d, c)) != 0 || s->d.s.failed)
                break;
        }
    } else {
        rc = decode_chunk(&s->d, root);
    }
    json_decref(root);
    if (rc) {
        s->rc = rc;
        return 1;
    }
    return s->d.s.failed ? 1 : 0;
}

static int stream_feed(void *st, const char *data, size_t len, sb_canon_emit_cb emit_cb, void *ud)
{
    struct gstream *s = st;
    if (s->d.s.failed)
        return 0;
    s->d.s.emit = emit_cb;
    s->d.s.ud = ud;
    if (s->mode == MODE_UNKNOWN) {
        size_t i = 0;
        while (i < len && (data[i] == ' ' || data[i] == '\t' || data[i] == '\r' || data[i] == '\n'))
            i++;
        if (i == len)
            return 0;
        s->mode = data[i] == '{' || data[i] == '[' ? MODE_RAW : MODE_SSE;
        data += i;
        len -= i;
    }
    if (s->mode == MODE_RAW) {
        return sb_buf_append(&s->raw, data, len);
    }
    int rc = sb_sse_parser_feed(&s->sse, data, len, on_sse, s);
    if (rc == SB_SSE_E_TOO_BIG)
        return -E2BIG;
    if (rc == 1) {
        if (s->d.s.failed && !s->rc)
            return 0;
        return s->rc ? s->rc : SB_CANON_E_INVALID;
    }
    return rc;
}

static int stream_end(void *st, sb_canon_emit_cb emit_cb, void *ud)
{
    struct gstream *s = st;
    if (s->d.s.failed)
        return 0;
    s->d.s.emit = emit_cb;
    s->d.s.ud = ud;
    if (s->mode == MODE_RAW) {
        json_t *root = json_loadb(s->raw.data ? s->raw.data : "", s->raw.len, 0, NULL);
        if (!root)
            return SB_CANON_E_CUT;
        int rc = decode_json(&s->d, root, true);
        json_decref(root);
        return rc;
    }
    sb_sse_parser_end(&s->sse);
    if (!s->d.s.started || !s->d.saw_finish)
        return SB_CANON_E_CUT;
    return decode_finish(&s->d);
}

const struct sb_provider_codec sb_codec_gemini = {
    .dialect = SB_DIALECT_GEMINI,
    .encode_request = encode_request,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_new = stream_new,
    .stream_feed = stream_feed,
    .stream_end = stream_end,
    .stream_free = stream_free,
};

/* ------------------------------------------------------------------ embeddings */

static const char *task_type(const char *input_type)
{
    static const struct {
        const char *in, *task;
    } map[] = {
        {"search_document", "RETRIEVAL_DOCUMENT"},
        {"search_query", "RETRIEVAL_QUERY"},
        {"classification", "CLASSIFICATION"},
        {"clustering", "CLUSTERING"},
        {"retrieval_document", "RETRIEVAL_DOCUMENT"},
        {"retrieval_query", "RETRIEVAL_QUERY"},
        {"semantic_similarity", "SEMANTIC_SIMILARITY"},
        {"question_answering", "QUESTION_ANSWERING"},
        {"fact_verification", "FACT_VERIFICATION"},
        {"code_retrieval_query", "CODE_RETRIEVAL_QUERY"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcasecmp(input_type, map[i].in) == 0)
            return map[i].task;
    return NULL;
}

/* The checks every embeddings encoder makes: a range of inputs, and a known input_type (its
 * task type in *task, or NULL). Returns 0, or -1 with a 400 in err. */
static int embed_check(const struct sb_embed_req *req, size_t from, size_t to, const char *who,
                       const char **task, struct sb_error *err)
{
    memset(err, 0, sizeof *err);
    *task = NULL;
    if (from >= to || to > req->ninputs) {
        sb_error_set(err, 400, "invalid_request_error", "invalid_value", "input",
                     "no input to embed");
        return -1;
    }
    if (req->input_type && !(*task = task_type(req->input_type))) {
        sb_error_set(err, 400, "invalid_request_error", "invalid_value", "input_type",
                     "input_type is not one %s knows", who);
        return -1;
    }
    return 0;
}

static int embed_encode(const struct sb_embed_req *req, size_t from, size_t to, const char *model,
                        struct sb_buf *out, struct sb_error *err)
{
    const char *task;
    if (embed_check(req, from, to, "gemini", &task, err))
        return -1;
    if (!model || !*model)
        model = req->model ? req->model : "";
    if (strncmp(model, "models/", 7) == 0)
        model += 7;
    size_t mlen = strlen(model);
    char *mname = malloc(mlen + 8);
    if (!mname) {
        set_buf_error(err, -ENOMEM);
        return -1;
    }
    memcpy(mname, "models/", 7);
    memcpy(mname + 7, model, mlen + 1);
    json_t *reqs = json_array();
    json_t *root = json_pack("{s:o}", "requests", reqs);
    int rc = root ? 0 : -ENOMEM;
    for (size_t i = from; !rc && i < to; i++) {
        json_t *r = json_pack("{s:s,s:{s:[{s:s}]}}", "model", mname, "content", "parts", "text",
                              req->inputs[i] ? req->inputs[i] : "");
        rc = push_new(reqs, r);
        if (!rc && req->dimensions > 0)
            rc = set_new(r, "outputDimensionality", json_integer(req->dimensions));
        if (!rc && task)
            rc = set_new(r, "taskType", json_string(task));
    }
    free(mname);
    struct enc e = {.err = err};
    return finish_body(&e, root, rc, out);
}

static int embed_values(const json_t *emb, double **vec, size_t *dim)
{
    json_t *vals = json_object_get(emb, "values");
    if (!json_is_array(vals) || json_array_size(vals) > EMBED_MAX_DIMS)
        return SB_CANON_E_INVALID;
    size_t n = json_array_size(vals);
    double *v = malloc((n ? n : 1) * sizeof *v);
    if (!v)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(vals, i);
        if (!json_is_number(x)) {
            free(v);
            return SB_CANON_E_INVALID;
        }
        v[i] = json_number_value(x);
    }
    *vec = v;
    *dim = n;
    return 0;
}

/* Appends the vectors of `embs` (n objects holding "values") to out; all or nothing. */
static int embed_append(struct sb_embed_resp *out, const json_t *const *embs, size_t n)
{
    if (n > EMBED_MAX_VECTORS || out->n > EMBED_MAX_VECTORS)
        return SB_CANON_E_INVALID;
    double **vecs = calloc(n ? n : 1, sizeof *vecs);
    size_t *dims = calloc(n ? n : 1, sizeof *dims);
    int rc = vecs && dims ? 0 : -ENOMEM;
    for (size_t i = 0; !rc && i < n; i++)
        rc = embed_values(embs[i], &vecs[i], &dims[i]);
    if (!rc) {
        double **nv = realloc(out->vectors, (out->n + n + 1) * sizeof *nv);
        if (nv)
            out->vectors = nv;
        size_t *nd = nv ? realloc(out->dims, (out->n + n + 1) * sizeof *nd) : NULL;
        if (nd)
            out->dims = nd;
        if (!nv || !nd)
            rc = -ENOMEM;
    }
    if (rc) {
        for (size_t i = 0; vecs && i < n; i++)
            free(vecs[i]);
        free(vecs);
        free(dims);
        return rc;
    }
    for (size_t i = 0; i < n; i++) {
        out->vectors[out->n + i] = vecs[i];
        out->dims[out->n + i] = dims[i];
    }
    out->n += n;
    free(vecs);
    free(dims);
    return 0;
}

/* batchEmbedContents ({"embeddings":[...]}) or embedContent ({"embedding":{...}}). Gemini
 * reports no token count: input_tokens is left as it is (-1 stays unknown). */
static int embed_decode(const char *body, size_t len, struct sb_embed_resp *out)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    const json_t *list = json_object_get(root, "embeddings");
    const json_t *single = json_object_get(root, "embedding");
    const json_t **embs = NULL;
    size_t n = 0;
    int rc = SB_CANON_E_INVALID;
    if (json_is_array(list) && json_array_size(list) <= EMBED_MAX_VECTORS) {
        n = json_array_size(list);
        embs = calloc(n ? n : 1, sizeof *embs);
        for (size_t i = 0; embs && i < n; i++)
            embs[i] = json_array_get(list, i);
        rc = embs ? embed_append(out, embs, n) : -ENOMEM;
    } else if (!json_is_array(list) && json_is_object(single)) {
        rc = embed_append(out, &single, 1);
    }
    free(embs);
    json_decref(root);
    return rc;
}

const struct sb_embed_codec sb_embed_gemini = {
    .dialect = SB_DIALECT_GEMINI,
    .batch_max = 100,
    .encode = embed_encode,
    .decode = embed_decode,
};

/* ------------------------------------------------------------------ Vertex AI embeddings */

static int vertex_embed_encode(const struct sb_embed_req *req, size_t from, size_t to,
                               const char *model, struct sb_buf *out, struct sb_error *err)
{
    (void)model; /* in the URL */
    const char *task;
    if (embed_check(req, from, to, "vertex_ai", &task, err))
        return -1;
    json_t *inst = json_array();
    json_t *params = json_pack("{s:b}", "autoTruncate", 0);
    json_t *root = json_pack("{s:o,s:o}", "instances", inst, "parameters", params);
    int rc = root ? 0 : -ENOMEM;
    if (!rc && req->dimensions > 0)
        rc = set_new(params, "outputDimensionality", json_integer(req->dimensions));
    for (size_t i = from; !rc && i < to; i++) {
        json_t *o = json_pack("{s:s}", "content", req->inputs[i] ? req->inputs[i] : "");
        rc = push_new(inst, o);
        if (!rc && task)
            rc = set_new(o, "task_type", json_string(task));
    }
    struct enc e = {.err = err};
    return finish_body(&e, root, rc, out);
}

/* statistics.token_count: an integer, or a whole non-negative number written as a double
 * (the prediction service answers in google.protobuf.Value, whose numbers are doubles). */
static int64_t vertex_token_count(const json_t *pred)
{
    const json_t *v = json_object_get(
        json_object_get(json_object_get(pred, "embeddings"), "statistics"), "token_count");
    double d;
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0)
            return -1;
        return json_integer_value(v) > TOKENS_MAX ? TOKENS_MAX : json_integer_value(v);
    }
    if (!json_is_real(v) || !((d = json_real_value(v)) >= 0))
        return -1;
    if (d > (double)TOKENS_MAX) /* also keeps the cast below defined */
        return TOKENS_MAX;
    return d == (double)(int64_t)d ? (int64_t)d : -1;
}

static int vertex_embed_decode(const char *body, size_t len, struct sb_embed_resp *out)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    const json_t *preds = json_object_get(root, "predictions");
    if (!json_is_array(preds) || json_array_size(preds) > EMBED_MAX_VECTORS) {
        json_decref(root);
        return SB_CANON_E_INVALID;
    }
    size_t n = json_array_size(preds);
    const json_t **embs = calloc(n ? n : 1, sizeof *embs);
    int rc = embs ? 0 : -ENOMEM;
    int64_t tokens = -1;
    for (size_t i = 0; !rc && i < n; i++) {
        const json_t *p = json_array_get(preds, i);
        embs[i] = json_object_get(p, "embeddings");
        if (!json_is_object(embs[i]))
            rc = SB_CANON_E_INVALID;
        int64_t t = vertex_token_count(p);
        if (t >= 0) /* both at most 2^48 per step, so the sum is bounded by n * 2^48 */
            tokens = (tokens < 0 ? 0 : tokens) + t;
    }
    rc = rc ? rc : embed_append(out, embs, n);
    free(embs);
    json_decref(root);
    if (rc)
        return rc;
    if (tokens >= 0)
        out->input_tokens = out->input_tokens < 0                    ? tokens
                            : out->input_tokens > INT64_MAX - tokens ? INT64_MAX
                                                                     : out->input_tokens + tokens;
    return 0;
}

const struct sb_embed_codec sb_embed_vertex = {
    .dialect = SB_DIALECT_GEMINI,
    .batch_max = 1,
    .encode = vertex_embed_encode,
    .decode = vertex_embed_decode,
};

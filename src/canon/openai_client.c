/* The OpenAI chat-completions client dialect: a client's request body -> struct sb_canon_req,
 * and canonical responses, events and errors -> exactly what the official OpenAI SDKs parse.
 * Also the OpenAI embeddings request and response, which every provider's embeddings use.
 * docs/translation/clients-openai.md lists every mapping decision. */
#include "canon/codecs.h"
#include "json/scan.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STOP_MAX         16   /* stop sequences (OpenAI allows 4; others more) */
#define EMBED_INPUTS_MAX 2048 /* OpenAI's own limit on one embeddings call */
#define REDACTED_MAX     (4u * 1024 * 1024)
#define CHATCMPL_ID_CAP  48

/* ------------------------------------------------------------------ errors */

/* struct sb_error holds `param` as a borrowed pointer (static strings elsewhere); request
 * validation names indexed params ("messages[2].content"), so those are formatted into a
 * per-thread buffer that stays valid until the next failed decode on the same thread. */
static _Thread_local char param_buf[128];

static const char *param_fmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *param_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(param_buf, sizeof param_buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        param_buf[0] = '\0';
    return param_buf;
}

static int bad(struct sb_error *err, const char *code, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int bad(struct sb_error *err, const char *code, const char *param, const char *fmt, ...)
{
    err->status = 400;
    err->type = "invalid_request_error";
    err->code = code;
    err->param = param;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    if (n < 0)
        err->message[0] = '\0';
    return -1;
}

static int oom(struct sb_error *err)
{
    sb_error_set(err, 500, "server_error", NULL, NULL, "Out of memory while reading the request");
    return -1;
}

static int bad_type(struct sb_error *err, const char *param, const char *expected)
{
    return bad(err, "invalid_type", param, "Invalid type for '%s': expected %s.", param, expected);
}

static int unsupported(struct sb_error *err, const char *param, const char *what)
{
    return bad(err, "unsupported_parameter", param,
               "'%s' is not supported by this model's provider", what);
}

/* ------------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* A JSON string of `len` bytes. Provider text normally arrives as valid UTF-8 (it came out of
 * JSON), but a decoder may split a character between deltas; such bytes become U+FFFD rather
 * than making the whole chunk unserializable. */
static json_t *jstr(const char *s, size_t len)
{
    if (!s)
        s = "";
    json_t *j = json_stringn(s, len);
    if (j)
        return j;
    struct sb_buf b;
    sb_buf_init(&b, len > SIZE_MAX / 3 - 1 ? SIZE_MAX : len * 3 + 1);
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_seq(u + i, len - i);
        int rc = k ? sb_buf_append(&b, u + i, k) : sb_buf_append(&b, "\xEF\xBF\xBD", 3);
        if (rc) {
            sb_buf_free(&b);
            return NULL;
        }
        i += k ? k : 1;
    }
    j = json_stringn(b.data ? b.data : "", b.len);
    sb_buf_free(&b);
    return j;
}

static json_t *jstr0(const char *s)
{
    return jstr(s, s ? strlen(s) : 0);
}

/* ------------------------------------------------------------------ JSON text out */

/* The hot paths (responses and stream chunks) write their JSON by hand instead of building a
 * jansson tree and dumping it: the tree costs several allocations per value. The output is
 * byte for byte what json_dumps(JSON_COMPACT) gave for the same tree, so clients see no
 * difference. */

/* Appends s[0..len) as a JSON string literal, as jansson dumps jstr(s, len): invalid UTF-8
 * bytes become U+FFFD; '"', '\\' and control characters are escaped with jansson's short forms
 * and upper-case \u00XX. */
static int put_str(struct sb_buf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    if (!s)
        s = "";
    int rc = sb_buf_reserve(b, len + 2);
    if (rc == 0)
        rc = sb_buf_append_char(b, '"');
    if (rc)
        return rc;
    const unsigned char *u = (const unsigned char *)s;
    size_t run = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = u[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        size_t k = c < 0x80 ? 1 : utf8_seq(u + i, len - i);
        if (k > 1) {
            i += k;
            continue;
        }
        rc = sb_buf_append(b, s + run, i - run);
        if (rc)
            return rc;
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t el = 2;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            if (c < 0x20) {
                esc[1] = 'u', esc[2] = '0', esc[3] = '0';
                esc[4] = hex[c >> 4], esc[5] = hex[c & 15];
                el = 6;
            } else {
                memcpy(esc, "\xEF\xBF\xBD", 3);
                el = 3;
            }
        }
        rc = sb_buf_append(b, esc, el);
        if (rc)
            return rc;
        i++;
        run = i;
    }
    rc = sb_buf_append(b, s + run, len - run);
    return rc ? rc : sb_buf_append_char(b, '"');
}

static int put_str0(struct sb_buf *b, const char *s)
{
    return put_str(b, s, s ? strlen(s) : 0);
}

/* A literal piece of JSON text. */
static int put_lit(struct sb_buf *b, const char *s)
{
    return sb_buf_append(b, s, strlen(s));
}

/* Undoes a partly written value so a failed render leaves `out` as it was. */
static int put_undo(struct sb_buf *b, size_t before, int rc)
{
    if (rc && b->len > before) {
        b->len = before;
        b->data[before] = '\0';
    }
    return rc;
}

/* ------------------------------------------------------------------ request */

static int dup_json_str(json_t *v, char **dst, struct sb_error *err)
{
    char *c = sb_canon_strndup(json_string_value(v), json_string_length(v));
    if (!c)
        return oom(err);
    free(*dst);
    *dst = c;
    return 0;
}

/* An optional string field: absent or null leaves *dst alone. */
static int opt_str(json_t *obj, const char *key, char **dst, const char *param,
                   struct sb_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return bad_type(err, param, "a string");
    return dup_json_str(v, dst, err);
}

static int opt_bool(json_t *obj, const char *key, bool *dst, bool *present, const char *param,
                    struct sb_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (present)
        *present = false;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_boolean(v))
        return bad_type(err, param, "a boolean");
    *dst = json_is_true(v);
    if (present)
        *present = true;
    return 0;
}

static int opt_int(json_t *obj, const char *key, int64_t *dst, int64_t min, int64_t max,
                   const char *param, struct sb_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v))
        return bad_type(err, param, "an integer");
    json_int_t x = json_integer_value(v);
    if (x < min)
        return bad(err, "integer_below_min_value", param,
                   "Invalid '%s': integer below minimum value. Expected a value >= %lld, but "
                   "got %lld instead.",
                   param, (long long)min, (long long)x);
    if (x > max)
        return bad(err, "integer_above_max_value", param,
                   "Invalid '%s': integer above maximum value. Expected a value <= %lld, but "
                   "got %lld instead.",
                   param, (long long)max, (long long)x);
    *dst = x;
    return 0;
}

static int opt_num(json_t *obj, const char *key, double *dst, bool *has, double min, double max,
                   const char *param, struct sb_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return bad_type(err, param, "a number");
    double x = json_number_value(v);
    if (x < min)
        return bad(err, "decimal_below_min_value", param,
                   "Invalid '%s': decimal below minimum value. Expected a value >= %g, but got "
                   "%g instead.",
                   param, min, x);
    if (x > max)
        return bad(err, "decimal_above_max_value", param,
                   "Invalid '%s': decimal above maximum value. Expected a value <= %g, but got "
                   "%g instead.",
                   param, max, x);
    *dst = x;
    *has = true;
    return 0;
}

static struct sb_part *parts_alloc(size_t n, struct sb_error *err)
{
    struct sb_part *p = calloc(n ? n : 1, sizeof *p);
    if (!p)
        oom(err);
    return p;
}

static bool str_eq(json_t *v, const char *s)
{
    return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

static const char *media_type_of_filename(const char *fn)
{
    const char *dot = fn ? strrchr(fn, '.') : NULL;
    if (!dot)
        return "application/pdf";
    static const struct {
        const char *ext, *mt;
    } map[] = {{".pdf", "application/pdf"}, {".txt", "text/plain"}, {".md", "text/markdown"},
               {".csv", "text/csv"},        {".html", "text/html"}, {".json", "application/json"},
               {".png", "image/png"},       {".jpg", "image/jpeg"}, {".jpeg", "image/jpeg"},
               {".gif", "image/gif"},       {".webp", "image/webp"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcasecmp(dot, map[i].ext) == 0)
            return map[i].mt;
    return "application/pdf";
}

static bool is_remote_url(const char *u)
{
    return strncmp(u, "https://", 8) == 0 || strncmp(u, "http://", 7) == 0 ||
           strncmp(u, "gs://", 5) == 0;
}

static int decode_image_part(json_t *jp, struct sb_part *p, size_t mi, size_t pi,
                             struct sb_error *err)
{
    json_t *iu = json_object_get(jp, "image_url");
    json_t *url = NULL, *detail = NULL;
    if (json_is_string(iu)) {
        url = iu;
    } else if (json_is_object(iu)) {
        url = json_object_get(iu, "url");
        detail = json_object_get(iu, "detail");
    } else {
        return bad_type(err, param_fmt("messages[%zu].content[%zu].image_url", mi, pi),
                        "an object");
    }
    if (!json_is_string(url))
        return bad_type(err, param_fmt("messages[%zu].content[%zu].image_url.url", mi, pi),
                        "a string");
    p->type = SB_PART_IMAGE;
    const char *u = json_string_value(url);
    if (strncmp(u, "data:", 5) == 0) {
        if (sb_canon_data_uri(u, &p->media_type, &p->data) != 0)
            return bad(err, "invalid_image_url",
                       param_fmt("messages[%zu].content[%zu].image_url.url", mi, pi),
                       "Invalid image data URI: expected data:<media type>;base64,<data>.");
    } else if (is_remote_url(u)) {
        if (dup_json_str(url, &p->url, err))
            return -1;
    } else {
        return bad(err, "invalid_image_url",
                   param_fmt("messages[%zu].content[%zu].image_url.url", mi, pi),
                   "Invalid image URL: expected an http(s) URL or a base64 data URI.");
    }
    if (detail && !json_is_null(detail)) {
        if (!json_is_string(detail))
            return bad_type(err, param_fmt("messages[%zu].content[%zu].image_url.detail", mi, pi),
                            "a string");
        if (dup_json_str(detail, &p->detail, err))
            return -1;
    }
    return 0;
}

static int decode_file_part(json_t *jp, struct sb_part *p, size_t mi, size_t pi,
                            struct sb_error *err)
{
    json_t *f = json_object_get(jp, "file");
    if (!json_is_object(f))
        return bad_type(err, param_fmt("messages[%zu].content[%zu].file", mi, pi), "an object");
    json_t *fd = json_object_get(f, "file_data");
    json_t *fid = json_object_get(f, "file_id");
    json_t *fname = json_object_get(f, "filename");
    json_t *fmt = json_object_get(f, "format");
    p->type = SB_PART_DOCUMENT;
    if (fd && !json_is_null(fd)) {
        if (!json_is_string(fd))
            return bad_type(err, param_fmt("messages[%zu].content[%zu].file.file_data", mi, pi),
                            "a string");
        const char *d = json_string_value(fd);
        if (strncmp(d, "data:", 5) == 0) {
            if (sb_canon_data_uri(d, &p->media_type, &p->data) != 0)
                return bad(err, "invalid_value",
                           param_fmt("messages[%zu].content[%zu].file.file_data", mi, pi),
                           "Invalid file data URI: expected data:<media type>;base64,<data>.");
            return 0;
        }
        /* Bare base64: the media type comes from LiteLLM's `format`, else the file name. */
        const char *mt = json_is_string(fmt) ? json_string_value(fmt)
                                             : media_type_of_filename(json_string_value(fname));
        p->media_type = strdup(mt);
        if (!p->media_type || dup_json_str(fd, &p->data, err))
            return oom(err);
        return 0;
    }
    if (json_is_string(fid) && is_remote_url(json_string_value(fid))) {
        if (dup_json_str(fid, &p->url, err))
            return -1;
        if (json_is_string(fmt) && dup_json_str(fmt, &p->media_type, err))
            return -1;
        return 0;
    }
    if (fid && !json_is_null(fid))
        return unsupported(err, param_fmt("messages[%zu].content[%zu].file.file_id", mi, pi),
                           "file_id");
    return bad(err, "missing_required_parameter",
               param_fmt("messages[%zu].content[%zu].file.file_data", mi, pi),
               "Missing required parameter: 'messages[%zu].content[%zu].file.file_data'.", mi, pi);
}

enum content_kind {
    CK_TEXT_ONLY, /* system, developer, tool */
    CK_USER,
    CK_ASSISTANT, /* text; refusal parts ignored */
};

/* Appends the parts of a content value (string or array) to parts[*np]. */
static int decode_content(json_t *content, enum content_kind kind, size_t mi, struct sb_part *parts,
                          size_t *np, const char *prefix, struct sb_error *err)
{
    if (json_is_string(content)) {
        /* Clients send "" beside tool calls; an empty text block is an error for Anthropic
         * and Bedrock and says nothing, so an assistant's empty text is not carried. */
        if (kind == CK_ASSISTANT && json_string_length(content) == 0)
            return 0;
        struct sb_part *p = &parts[(*np)++];
        p->type = SB_PART_TEXT;
        return dup_json_str(content, &p->text, err);
    }
    if (!json_is_array(content))
        return bad_type(err, param_fmt("%s[%zu].content", prefix, mi),
                        "a string or an array of content parts");
    size_t pi;
    json_t *jp;
    json_array_foreach(content, pi, jp)
    {
        if (!json_is_object(jp))
            return bad_type(err, param_fmt("%s[%zu].content[%zu]", prefix, mi, pi), "an object");
        json_t *type = json_object_get(jp, "type");
        if (!json_is_string(type))
            return bad(err, "missing_required_parameter",
                       param_fmt("%s[%zu].content[%zu].type", prefix, mi, pi),
                       "Missing required parameter: '%s[%zu].content[%zu].type'.", prefix, mi, pi);
        const char *t = json_string_value(type);
        struct sb_part *p = &parts[*np];
        if (strcmp(t, "text") == 0) {
            json_t *tx = json_object_get(jp, "text");
            if (!json_is_string(tx))
                return bad_type(err, param_fmt("%s[%zu].content[%zu].text", prefix, mi, pi),
                                "a string");
            if (kind == CK_ASSISTANT && json_string_length(tx) == 0)
                continue;
            p->type = SB_PART_TEXT;
            if (dup_json_str(tx, &p->text, err))
                return -1;
            json_t *cc = json_object_get(jp, "cache_control");
            if (json_is_object(cc))
                p->cache_control = json_incref(cc);
            (*np)++;
            continue;
        }
        if (kind == CK_ASSISTANT && strcmp(t, "refusal") == 0)
            continue;
        if (kind == CK_USER && strcmp(t, "image_url") == 0) {
            (*np)++;
            if (decode_image_part(jp, p, mi, pi, err))
                return -1;
            continue;
        }
        if (kind == CK_USER && strcmp(t, "file") == 0) {
            (*np)++;
            if (decode_file_part(jp, p, mi, pi, err))
                return -1;
            continue;
        }
        if (kind == CK_USER && strcmp(t, "input_audio") == 0)
            return unsupported(err, param_fmt("%s[%zu].content[%zu]", prefix, mi, pi),
                               "input_audio");
        return bad(err, "invalid_value", param_fmt("%s[%zu].content[%zu].type", prefix, mi, pi),
                   "Invalid value: '%.64s'. This content part type is not allowed here.", t);
    }
    return 0;
}

static int decode_tool_call(json_t *tc, struct sb_part *p, size_t mi, size_t ti,
                            struct sb_error *err)
{
    if (!json_is_object(tc))
        return bad_type(err, param_fmt("messages[%zu].tool_calls[%zu]", mi, ti), "an object");
    json_t *type = json_object_get(tc, "type");
    if (type && !json_is_null(type) && !str_eq(type, "function"))
        return unsupported(err, param_fmt("messages[%zu].tool_calls[%zu].type", mi, ti),
                           "non-function tool calls");
    json_t *id = json_object_get(tc, "id");
    if (!json_is_string(id))
        return bad_type(err, param_fmt("messages[%zu].tool_calls[%zu].id", mi, ti), "a string");
    json_t *fn = json_object_get(tc, "function");
    if (!json_is_object(fn))
        return bad_type(err, param_fmt("messages[%zu].tool_calls[%zu].function", mi, ti),
                        "an object");
    json_t *name = json_object_get(fn, "name");
    if (!json_is_string(name))
        return bad_type(err, param_fmt("messages[%zu].tool_calls[%zu].function.name", mi, ti),
                        "a string");
    p->type = SB_PART_TOOL_CALL;
    if (dup_json_str(id, &p->id, err) || dup_json_str(name, &p->name, err))
        return -1;
    json_t *args = json_object_get(fn, "arguments");
    if (json_is_string(args))
        return dup_json_str(args, &p->arguments, err);
    if (!args || json_is_null(args)) {
        p->arguments = strdup("");
        return p->arguments ? 0 : oom(err);
    }
    /* Some clients send the arguments as an object; carry them as the JSON text they mean. */
    if (json_is_object(args)) {
        p->arguments = json_dumps(args, JSON_COMPACT);
        return p->arguments ? 0 : oom(err);
    }
    return bad_type(err, param_fmt("messages[%zu].tool_calls[%zu].function.arguments", mi, ti),
                    "a string");
}

static int decode_thinking_block(json_t *tb, struct sb_part *p, size_t mi, size_t ti,
                                 struct sb_error *err)
{
    if (!json_is_object(tb))
        return bad_type(err, param_fmt("messages[%zu].thinking_blocks[%zu]", mi, ti), "an object");
    json_t *type = json_object_get(tb, "type");
    if (str_eq(type, "thinking")) {
        json_t *th = json_object_get(tb, "thinking");
        json_t *sig = json_object_get(tb, "signature");
        if (th && !json_is_null(th) && !json_is_string(th))
            return bad_type(err, param_fmt("messages[%zu].thinking_blocks[%zu].thinking", mi, ti),
                            "a string");
        if (sig && !json_is_null(sig) && !json_is_string(sig))
            return bad_type(err, param_fmt("messages[%zu].thinking_blocks[%zu].signature", mi, ti),
                            "a string");
        p->type = SB_PART_THINKING;
        if (json_is_string(th)) {
            if (dup_json_str(th, &p->text, err))
                return -1;
        } else if (!(p->text = strdup(""))) {
            return oom(err);
        }
        if (json_is_string(sig) && dup_json_str(sig, &p->signature, err))
            return -1;
        return 0;
    }
    if (str_eq(type, "redacted_thinking")) {
        json_t *data = json_object_get(tb, "data");
        if (!json_is_string(data))
            return bad_type(err, param_fmt("messages[%zu].thinking_blocks[%zu].data", mi, ti),
                            "a string");
        p->type = SB_PART_REDACTED_THINKING;
        return dup_json_str(data, &p->text, err);
    }
    return bad(err, "invalid_value", param_fmt("messages[%zu].thinking_blocks[%zu].type", mi, ti),
               "Invalid value for 'messages[%zu].thinking_blocks[%zu].type': expected "
               "'thinking' or 'redacted_thinking'.",
               mi, ti);
}

/* The deprecated `function_call` of an assistant message carries no id; one is made from the
 * message index so that the `function` message answering it can find it again. */
static int decode_legacy_function_call(json_t *fc, struct sb_part *p, size_t mi,
                                       struct sb_error *err)
{
    if (!json_is_object(fc))
        return bad_type(err, param_fmt("messages[%zu].function_call", mi), "an object");
    json_t *name = json_object_get(fc, "name");
    if (!json_is_string(name))
        return bad_type(err, param_fmt("messages[%zu].function_call.name", mi), "a string");
    json_t *args = json_object_get(fc, "arguments");
    if (args && !json_is_null(args) && !json_is_string(args))
        return bad_type(err, param_fmt("messages[%zu].function_call.arguments", mi), "a string");
    char id[40];
    snprintf(id, sizeof id, "call_fn_%zu", mi);
    p->type = SB_PART_TOOL_CALL;
    p->id = strdup(id);
    if (!p->id || dup_json_str(name, &p->name, err))
        return p->id ? -1 : oom(err);
    if (json_is_string(args))
        return dup_json_str(args, &p->arguments, err);
    p->arguments = strdup("");
    return p->arguments ? 0 : oom(err);
}

static int decode_assistant(json_t *jm, struct sb_msg *m, size_t mi, struct sb_error *err)
{
    json_t *content = json_object_get(jm, "content");
    json_t *tcs = json_object_get(jm, "tool_calls");
    json_t *tbs = json_object_get(jm, "thinking_blocks");
    json_t *fc = json_object_get(jm, "function_call");
    if (json_is_null(tcs))
        tcs = NULL;
    if (json_is_null(tbs))
        tbs = NULL;
    if (json_is_null(fc))
        fc = NULL;
    if (tcs && !json_is_array(tcs))
        return bad_type(err, param_fmt("messages[%zu].tool_calls", mi), "an array");
    if (tbs && !json_is_array(tbs))
        return bad_type(err, param_fmt("messages[%zu].thinking_blocks", mi), "an array");
    if ((!content || json_is_null(content)) && !json_array_size(tcs) && !fc)
        return bad(err, "missing_required_parameter", param_fmt("messages[%zu].content", mi),
                   "Missing required parameter: 'messages[%zu].content' (required unless "
                   "'tool_calls' or 'function_call' is given).",
                   mi);
    size_t cap = json_array_size(tbs) + json_array_size(tcs) + (fc ? 1 : 0) +
                 (json_is_array(content) ? json_array_size(content) : 1);
    m->parts = parts_alloc(cap, err);
    if (!m->parts)
        return -1;
    size_t np = 0;
    size_t i;
    json_t *v;
    /* Thinking first: Anthropic requires it to lead the assistant turn it belongs to. */
    json_array_foreach(tbs, i, v)
    {
        m->nparts = ++np;
        if (decode_thinking_block(v, &m->parts[np - 1], mi, i, err))
            return -1;
    }
    if (content && !json_is_null(content)) {
        int rc = decode_content(content, CK_ASSISTANT, mi, m->parts, &np, "messages", err);
        m->nparts = np;
        if (rc)
            return -1;
    }
    json_array_foreach(tcs, i, v)
    {
        m->nparts = ++np;
        if (decode_tool_call(v, &m->parts[np - 1], mi, i, err))
            return -1;
    }
    if (fc) {
        m->nparts = ++np;
        if (decode_legacy_function_call(fc, &m->parts[np - 1], mi, err))
            return -1;
    }
    m->nparts = np;
    return 0;
}

static int decode_tool_msg(json_t *jm, struct sb_msg *m, size_t mi, struct sb_error *err)
{
    json_t *id = json_object_get(jm, "tool_call_id");
    if (!id || json_is_null(id))
        return bad(err, "missing_required_parameter", param_fmt("messages[%zu].tool_call_id", mi),
                   "Missing required parameter: 'messages[%zu].tool_call_id'.", mi);
    if (!json_is_string(id))
        return bad_type(err, param_fmt("messages[%zu].tool_call_id", mi), "a string");
    m->parts = parts_alloc(1, err);
    if (!m->parts)
        return -1;
    m->nparts = 1;
    struct sb_part *r = &m->parts[0];
    r->type = SB_PART_TOOL_RESULT;
    if (dup_json_str(id, &r->id, err))
        return -1;
    json_t *content = json_object_get(jm, "content");
    if (!content || json_is_null(content))
        return bad(err, "missing_required_parameter", param_fmt("messages[%zu].content", mi),
                   "Missing required parameter: 'messages[%zu].content'.", mi);
    if (json_is_string(content) && json_string_length(content) == 0)
        return 0;
    r->parts = parts_alloc(json_is_array(content) ? json_array_size(content) : 1, err);
    if (!r->parts)
        return -1;
    size_t np = 0;
    int rc = decode_content(content, CK_TEXT_ONLY, mi, r->parts, &np, "messages", err);
    r->nparts = np;
    return rc;
}

/* A deprecated `function` message answers the latest earlier call of that function. */
static int decode_function_msg(json_t *jm, struct sb_canon_req *req, struct sb_msg *m, size_t mi,
                               struct sb_error *err)
{
    json_t *name = json_object_get(jm, "name");
    if (!json_is_string(name))
        return bad(err, "missing_required_parameter", param_fmt("messages[%zu].name", mi),
                   "Missing required parameter: 'messages[%zu].name'.", mi);
    const char *id = NULL;
    for (size_t k = req->nmsgs; k-- > 0 && !id;) {
        const struct sb_msg *am = &req->msgs[k];
        if (am->role != SB_ROLE_ASSISTANT)
            continue;
        for (size_t j = am->nparts; j-- > 0;)
            if (am->parts[j].type == SB_PART_TOOL_CALL && am->parts[j].name &&
                strcmp(am->parts[j].name, json_string_value(name)) == 0) {
                id = am->parts[j].id;
                break;
            }
    }
    if (!id)
        return bad(err, "invalid_value", param_fmt("messages[%zu].name", mi),
                   "Invalid 'messages[%zu]': no earlier assistant function_call named '%.64s'.", mi,
                   json_string_value(name));
    m->parts = parts_alloc(1, err);
    if (!m->parts)
        return -1;
    m->nparts = 1;
    struct sb_part *r = &m->parts[0];
    r->type = SB_PART_TOOL_RESULT;
    r->id = strdup(id);
    if (!r->id || dup_json_str(name, &r->name, err))
        return r->id ? -1 : oom(err);
    json_t *content = json_object_get(jm, "content");
    if (json_is_null(content) || !content || json_string_length(content) == 0) {
        if (content && !json_is_null(content) && !json_is_string(content))
            return bad_type(err, param_fmt("messages[%zu].content", mi), "a string");
        return 0;
    }
    if (!json_is_string(content))
        return bad_type(err, param_fmt("messages[%zu].content", mi), "a string");
    r->parts = parts_alloc(1, err);
    if (!r->parts)
        return -1;
    r->nparts = 1;
    r->parts[0].type = SB_PART_TEXT;
    return dup_json_str(content, &r->parts[0].text, err);
}

static int decode_message(json_t *jm, struct sb_canon_req *req, size_t mi, struct sb_error *err)
{
    struct sb_msg *m = &req->msgs[req->nmsgs];
    memset(m, 0, sizeof *m);
    if (!json_is_object(jm))
        return bad_type(err, param_fmt("messages[%zu]", mi), "an object");
    json_t *role = json_object_get(jm, "role");
    if (!role)
        return bad(err, "missing_required_parameter", param_fmt("messages[%zu].role", mi),
                   "Missing required parameter: 'messages[%zu].role'.", mi);
    if (!json_is_string(role))
        return bad_type(err, param_fmt("messages[%zu].role", mi), "a string");
    const char *r = json_string_value(role);
    json_t *name = json_object_get(jm, "name");
    if (name && !json_is_null(name) && !json_is_string(name))
        return bad_type(err, param_fmt("messages[%zu].name", mi), "a string");
    json_t *content = json_object_get(jm, "content");
    int rc;
    if (strcmp(r, "system") == 0 || strcmp(r, "developer") == 0 || strcmp(r, "user") == 0) {
        bool user = r[0] == 'u';
        m->role = user ? SB_ROLE_USER : SB_ROLE_SYSTEM;
        if (!content || json_is_null(content))
            return bad(err, "missing_required_parameter", param_fmt("messages[%zu].content", mi),
                       "Missing required parameter: 'messages[%zu].content'.", mi);
        m->parts = parts_alloc(json_is_array(content) ? json_array_size(content) : 1, err);
        if (!m->parts)
            return -1;
        req->nmsgs++;
        size_t np = 0;
        rc = decode_content(content, user ? CK_USER : CK_TEXT_ONLY, mi, m->parts, &np, "messages",
                            err);
        m->nparts = np;
    } else if (strcmp(r, "assistant") == 0) {
        m->role = SB_ROLE_ASSISTANT;
        req->nmsgs++;
        rc = decode_assistant(jm, m, mi, err);
    } else if (strcmp(r, "tool") == 0) {
        m->role = SB_ROLE_TOOL;
        req->nmsgs++;
        rc = decode_tool_msg(jm, m, mi, err);
    } else if (strcmp(r, "function") == 0) {
        m->role = SB_ROLE_TOOL;
        rc = decode_function_msg(jm, req, m, mi, err);
        req->nmsgs++;
        name = NULL; /* the function's name went into the result, not the message */
    } else {
        return bad(err, "invalid_value", param_fmt("messages[%zu].role", mi),
                   "Invalid value: '%.64s'. Supported values are: 'system', 'assistant', "
                   "'user', 'function', 'tool', and 'developer'.",
                   r);
    }
    if (rc)
        return -1;
    if (json_is_string(name) && dup_json_str(name, &m->name, err))
        return -1;
    return 0;
}

static int decode_function_def(json_t *fn, struct sb_tool *t, const char *param,
                               struct sb_error *err)
{
    if (!json_is_object(fn))
        return bad_type(err, param, "an object");
    json_t *name = json_object_get(fn, "name");
    if (!json_is_string(name) || json_string_length(name) == 0)
        return bad(err, "missing_required_parameter", param,
                   "Missing required parameter: '%s.name'.", param);
    if (dup_json_str(name, &t->name, err))
        return -1;
    if (opt_str(fn, "description", &t->description, param, err))
        return -1;
    json_t *params = json_object_get(fn, "parameters");
    if (params && !json_is_null(params)) {
        if (!json_is_object(params))
            return bad_type(err, param, "'parameters' to be a JSON Schema object");
        t->parameters = json_incref(params);
    }
    json_t *strict = json_object_get(fn, "strict");
    if (strict && !json_is_null(strict)) {
        if (!json_is_boolean(strict))
            return bad_type(err, param, "'strict' to be a boolean");
        t->strict = json_is_true(strict);
    }
    json_t *cc = json_object_get(fn, "cache_control");
    if (json_is_object(cc))
        t->cache_control = json_incref(cc);
    return 0;
}

static int decode_tools(json_t *root, struct sb_canon_req *req, struct sb_error *err)
{
    json_t *tools = json_object_get(root, "tools");
    bool legacy = false;
    if (!tools || json_is_null(tools)) {
        tools = json_object_get(root, "functions");
        legacy = true;
        if (!tools || json_is_null(tools))
            return 0;
    }
    const char *pname = legacy ? "functions" : "tools";
    if (!json_is_array(tools))
        return bad_type(err, pname, "an array");
    size_t n = json_array_size(tools);
    if (n == 0)
        return 0;
    req->tools = calloc(n, sizeof *req->tools);
    if (!req->tools)
        return oom(err);
    size_t i;
    json_t *jt;
    json_array_foreach(tools, i, jt)
    {
        struct sb_tool *t = &req->tools[req->ntools++];
        t->strict = -1;
        const char *param = param_fmt("%s[%zu]", pname, i);
        if (legacy) {
            if (decode_function_def(jt, t, param, err))
                return -1;
            continue;
        }
        if (!json_is_object(jt))
            return bad_type(err, param, "an object");
        json_t *type = json_object_get(jt, "type");
        if (!str_eq(type, "function"))
            return unsupported(err, param_fmt("tools[%zu].type", i), "non-function tools");
        if (decode_function_def(json_object_get(jt, "function"), t,
                                param_fmt("tools[%zu].function", i), err))
            return -1;
    }
    return 0;
}

static int decode_tool_choice(json_t *root, struct sb_canon_req *req, struct sb_error *err)
{
    const char *pname = "tool_choice";
    json_t *tc = json_object_get(root, pname);
    if (!tc || json_is_null(tc)) {
        pname = "function_call";
        tc = json_object_get(root, pname);
        if (!tc || json_is_null(tc))
            return 0;
    }
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (strcmp(s, "auto") == 0)
            req->tool_choice = SB_TC_AUTO;
        else if (strcmp(s, "none") == 0)
            req->tool_choice = SB_TC_NONE;
        else if (strcmp(s, "required") == 0 && pname[0] == 't')
            req->tool_choice = SB_TC_REQUIRED;
        else
            return bad(err, "invalid_value", pname,
                       "Invalid value for '%s': '%.64s' is not one of 'none', 'auto', "
                       "'required'.",
                       pname, s);
        return 0;
    }
    if (!json_is_object(tc))
        return bad_type(err, pname, "a string or an object");
    json_t *name;
    if (pname[0] == 'f') {
        name = json_object_get(tc, "name");
    } else {
        json_t *type = json_object_get(tc, "type");
        if (!str_eq(type, "function"))
            return unsupported(err, "tool_choice", "tool_choice of a type other than 'function'");
        name = json_object_get(json_object_get(tc, "function"), "name");
    }
    if (!json_is_string(name))
        return bad(err, "missing_required_parameter", pname,
                   "Missing required parameter: the function name in '%s'.", pname);
    req->tool_choice = SB_TC_NAMED;
    return dup_json_str(name, &req->tool_choice_name, err);
}

static int decode_stop(json_t *root, struct sb_canon_req *req, struct sb_error *err)
{
    json_t *stop = json_object_get(root, "stop");
    if (!stop || json_is_null(stop))
        return 0;
    size_t n = json_is_string(stop) ? 1 : json_array_size(stop);
    if (!json_is_string(stop) && !json_is_array(stop))
        return bad_type(err, "stop", "a string or an array of strings");
    if (n > STOP_MAX)
        return bad(err, "array_above_max_length", "stop",
                   "Invalid 'stop': array too long. Expected at most %d stop sequences.", STOP_MAX);
    if (n == 0)
        return 0;
    req->stop = calloc(n, sizeof *req->stop);
    if (!req->stop)
        return oom(err);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_string(stop) ? stop : json_array_get(stop, i);
        if (!json_is_string(s))
            return bad_type(err, param_fmt("stop[%zu]", i), "a string");
        req->nstop++;
        if (dup_json_str(s, &req->stop[i], err))
            return -1;
    }
    return 0;
}

static int decode_response_format(json_t *root, struct sb_canon_req *req, struct sb_error *err)
{
    json_t *rf = json_object_get(root, "response_format");
    if (!rf || json_is_null(rf))
        return 0;
    if (!json_is_object(rf))
        return bad_type(err, "response_format", "an object");
    json_t *type = json_object_get(rf, "type");
    if (str_eq(type, "text")) {
        req->response_format = SB_RF_TEXT;
    } else if (str_eq(type, "json_object")) {
        req->response_format = SB_RF_JSON_OBJECT;
    } else if (str_eq(type, "json_schema")) {
        json_t *js = json_object_get(rf, "json_schema");
        if (!json_is_object(js))
            return bad(err, "missing_required_parameter", "response_format.json_schema",
                       "Missing required parameter: 'response_format.json_schema'.");
        json_t *name = json_object_get(js, "name");
        if (!json_is_string(name))
            return bad(err, "missing_required_parameter", "response_format.json_schema.name",
                       "Missing required parameter: 'response_format.json_schema.name'.");
        req->response_format = SB_RF_JSON_SCHEMA;
        if (dup_json_str(name, &req->rf_name, err))
            return -1;
        json_t *schema = json_object_get(js, "schema");
        if (schema && !json_is_null(schema)) {
            if (!json_is_object(schema))
                return bad_type(err, "response_format.json_schema.schema", "an object");
            req->rf_schema = json_incref(schema);
        }
        json_t *strict = json_object_get(js, "strict");
        if (strict && !json_is_null(strict)) {
            if (!json_is_boolean(strict))
                return bad_type(err, "response_format.json_schema.strict", "a boolean");
            req->rf_strict = json_is_true(strict);
        }
    } else {
        return bad(err, "invalid_value", "response_format.type",
                   "Invalid value for 'response_format.type': expected 'text', 'json_object' or "
                   "'json_schema'.");
    }
    return 0;
}

static int decode_scalars(json_t *root, struct sb_canon_req *req, struct sb_error *err)
{
    bool has;
    if (opt_bool(root, "stream", &req->stream, NULL, "stream", err))
        return -1;
    json_t *so = json_object_get(root, "stream_options");
    if (so && !json_is_null(so)) {
        if (!json_is_object(so))
            return bad_type(err, "stream_options", "an object");
        if (opt_bool(so, "include_usage", &req->include_usage, NULL, "stream_options.include_usage",
                     err))
            return -1;
    }
    int64_t mt = -1;
    if (opt_int(root, "max_tokens", &mt, 1, INT32_MAX, "max_tokens", err))
        return -1;
    if (opt_int(root, "max_completion_tokens", &mt, 1, INT32_MAX, "max_completion_tokens", err))
        return -1;
    req->max_tokens = mt;
    if (opt_num(root, "temperature", &req->temperature, &req->has_temperature, 0, 2, "temperature",
                err) ||
        opt_num(root, "top_p", &req->top_p, &req->has_top_p, 0, 1, "top_p", err) ||
        opt_num(root, "presence_penalty", &req->presence_penalty, &req->has_presence_penalty, -2, 2,
                "presence_penalty", err) ||
        opt_num(root, "frequency_penalty", &req->frequency_penalty, &req->has_frequency_penalty, -2,
                2, "frequency_penalty", err))
        return -1;
    if (opt_int(root, "n", &req->n, 1, 128, "n", err))
        return -1;
    json_t *seed = json_object_get(root, "seed");
    if (seed && !json_is_null(seed)) {
        if (!json_is_integer(seed))
            return bad_type(err, "seed", "an integer");
        req->has_seed = true;
        req->seed = json_integer_value(seed);
    }
    if (opt_bool(root, "logprobs", &req->logprobs, &has, "logprobs", err))
        return -1;
    if (opt_int(root, "top_logprobs", &req->top_logprobs, 0, 20, "top_logprobs", err))
        return -1;
    bool ptc = false;
    if (opt_bool(root, "parallel_tool_calls", &ptc, &has, "parallel_tool_calls", err))
        return -1;
    if (has)
        req->parallel_tool_calls = ptc;
    json_t *re = json_object_get(root, "reasoning_effort");
    if (re && !json_is_null(re)) {
        if (!json_is_string(re))
            return bad_type(err, "reasoning_effort", "a string");
        if (sb_canon_effort_budget(json_string_value(re)) < 0)
            return bad(err, "invalid_value", "reasoning_effort",
                       "Invalid value for 'reasoning_effort': expected one of 'none', "
                       "'minimal', 'low', 'medium', 'high', 'xhigh', 'max'.");
        if (dup_json_str(re, &req->reasoning_effort, err))
            return -1;
    }
    if (opt_str(root, "user", &req->user, "user", err))
        return -1;
    json_t *md = json_object_get(root, "metadata");
    if (md && !json_is_null(md)) {
        if (!json_is_object(md))
            return bad_type(err, "metadata", "an object");
        req->metadata = json_incref(md);
    }
    return 0;
}

static void req_init(struct sb_canon_req *r)
{
    memset(r, 0, sizeof *r);
    r->parallel_tool_calls = -1;
    r->max_tokens = -1;
    r->top_k = -1;
    r->n = -1;
    r->top_logprobs = -1;
    r->rf_strict = -1;
    r->thinking_budget = -1;
}

/* ------------------------------------------------------------------ request, fast path */

/* The common request (text messages, tool calls, the usual scalars) is decoded straight from
 * the scanner's spans: no tree, no per-key hashing. Anything it is not sure to treat exactly as
 * the tree path does (an error of any kind, a shape it does not handle, an escape or a number
 * jansson judges differently, a duplicate key) returns FAST_NO and the tree path decodes the
 * request again from scratch, so accepted inputs, results and error messages stay the same. */
#define FAST_NO    1
#define FAST_DEPTH 64 /* deeper documents take the tree path (jansson allows 2048) */
#define FAST_MSGS  64 /* messages found in one walk; more are counted first */

struct fast {
    const char *s;
    size_t n;
};

static bool sp_null(const struct sb_json_span *v)
{
    return v->type == SB_JSON_INVALID || v->type == SB_JSON_NULL;
}

/* A string value equal to lit byte for byte (an escaped spelling does not match: the caller
 * then gives up, and the tree path decides). */
static bool sp_is(const struct fast *f, const struct sb_json_span *v, const char *lit)
{
    size_t l = strlen(lit);
    return v->type == SB_JSON_STRING && v->end - v->start == l + 2 &&
           memcmp(f->s + v->start + 1, lit, l) == 0;
}

static bool sp_empty_str(const struct sb_json_span *v)
{
    return v->type == SB_JSON_STRING && v->end - v->start == 2;
}

static int sp_dup(const struct fast *f, const struct sb_json_span *v, char **dst)
{
    if (v->type != SB_JSON_STRING || v->end - v->start < 2)
        return FAST_NO;
    size_t raw = v->end - v->start - 2;
    char *c = malloc(raw + 1);
    if (!c)
        return FAST_NO;
    const char *src = f->s + v->start + 1;
    if (!memchr(src, '\\', raw)) {
        memcpy(c, src, raw);
        c[raw] = '\0';
    } else {
        size_t len;
        if (sb_json_string_copy(f->s, f->n, v, c, raw + 1, &len) != 0 || memchr(c, '\0', len)) {
            free(c);
            return FAST_NO;
        }
    }
    free(*dst);
    *dst = c;
    return 0;
}

static int sp_json(const struct fast *f, const struct sb_json_span *v, json_t **dst)
{
    json_t *j = json_loadb(f->s + v->start, v->end - v->start, 0, NULL);
    if (!j)
        return FAST_NO;
    *dst = j;
    return 0;
}

static int sp_get(const struct fast *f, const struct sb_json_span *obj, const char *const *keys,
                  size_t nkeys, struct sb_json_member *out)
{
    int counts[SB_JSON_MANY_MAX];
    if (obj->type != SB_JSON_OBJECT ||
        sb_json_object_get_many(f->s, f->n, obj, keys, nkeys, out, counts) != 0)
        return FAST_NO;
    for (size_t i = 0; i < nkeys; i++)
        if (counts[i] > 1)
            return FAST_NO;
    return 0;
}

static int sp_int(const struct fast *f, const struct sb_json_span *v, int64_t *dst, int64_t min,
                  int64_t max)
{
    if (sp_null(v))
        return 0;
    int64_t x;
    if (v->type != SB_JSON_NUMBER || sb_json_int64(f->s, f->n, v, &x) != 0 || x < min || x > max)
        return FAST_NO;
    *dst = x;
    return 0;
}

static int sp_num(const struct fast *f, const struct sb_json_span *v, double *dst, bool *has,
                  double min, double max)
{
    if (sp_null(v))
        return 0;
    char tmp[24];
    size_t l = v->end - v->start;
    if (v->type != SB_JSON_NUMBER || l >= sizeof tmp)
        return FAST_NO;
    if (!memchr(f->s + v->start, '.', l)) {
        /* jansson holds it as an integer, so "-0" is 0, not -0.0 */
        int64_t i;
        if (sb_json_int64(f->s, f->n, v, &i) != 0 || (double)i < min || (double)i > max)
            return FAST_NO;
        *dst = (double)i;
        *has = true;
        return 0;
    }
    memcpy(tmp, f->s + v->start, l);
    tmp[l] = '\0';
    char *end;
    double x = strtod(tmp, &end);
    if (end != tmp + l || x < min || x > max)
        return FAST_NO;
    *dst = x;
    *has = true;
    return 0;
}

static int sp_bool(const struct sb_json_span *v, bool *dst, bool *present)
{
    if (present)
        *present = false;
    if (sp_null(v))
        return 0;
    if (v->type != SB_JSON_TRUE && v->type != SB_JSON_FALSE)
        return FAST_NO;
    *dst = v->type == SB_JSON_TRUE;
    if (present)
        *present = true;
    return 0;
}

/* Text content: a string, or an array of text parts (refusal parts skipped for an assistant). */
static int fast_content(const struct fast *f, const struct sb_json_span *c, enum content_kind kind,
                        struct sb_part **parts, size_t *np)
{
    if (c->type == SB_JSON_STRING) {
        if (kind == CK_ASSISTANT && sp_empty_str(c))
            return 0;
        struct sb_part *p = &(*parts)[(*np)++];
        p->type = SB_PART_TEXT;
        return sp_dup(f, c, &p->text);
    }
    if (c->type != SB_JSON_ARRAY)
        return FAST_NO;
    static const char *const keys[] = {"type", "text", "cache_control"};
    size_t pos = 0;
    struct sb_json_span e;
    int rc;
    while ((rc = sb_json_array_next(f->s, f->n, c, &pos, &e)) == 0) {
        struct sb_json_member m[3];
        if (sp_get(f, &e, keys, 3, m))
            return FAST_NO;
        if (kind == CK_ASSISTANT && sp_is(f, &m[0].value, "refusal"))
            continue;
        if (!sp_is(f, &m[0].value, "text") || m[1].value.type != SB_JSON_STRING)
            return FAST_NO;
        if (kind == CK_ASSISTANT && sp_empty_str(&m[1].value))
            continue;
        struct sb_part *p = &(*parts)[*np];
        p->type = SB_PART_TEXT;
        (*np)++;
        if (sp_dup(f, &m[1].value, &p->text))
            return FAST_NO;
        if (m[2].value.type == SB_JSON_OBJECT && sp_json(f, &m[2].value, &p->cache_control))
            return FAST_NO;
    }
    return rc == SB_JSON_NOT_FOUND ? 0 : FAST_NO;
}

static int fast_tool_call(const struct fast *f, const struct sb_json_span *tc, struct sb_part *p)
{
    static const char *const keys[] = {"type", "id", "function"};
    static const char *const fkeys[] = {"name", "arguments"};
    struct sb_json_member m[3], fm[2];
    if (sp_get(f, tc, keys, 3, m) ||
        (!sp_null(&m[0].value) && !sp_is(f, &m[0].value, "function")) ||
        m[1].value.type != SB_JSON_STRING || sp_get(f, &m[2].value, fkeys, 2, fm) ||
        fm[0].value.type != SB_JSON_STRING)
        return FAST_NO;
    p->type = SB_PART_TOOL_CALL;
    if (sp_dup(f, &m[1].value, &p->id) || sp_dup(f, &fm[0].value, &p->name))
        return FAST_NO;
    if (fm[1].value.type == SB_JSON_STRING)
        return sp_dup(f, &fm[1].value, &p->arguments);
    if (!sp_null(&fm[1].value))
        return FAST_NO;
    p->arguments = strdup("");
    return p->arguments ? 0 : FAST_NO;
}

static int fast_message(const struct fast *f, const struct sb_json_span *jm,
                        struct sb_canon_req *req)
{
    enum { K_ROLE, K_CONTENT, K_NAME, K_TOOL_CALLS, K_THINKING, K_FC, K_TCID, K_N };
    static const char *const keys[] = {"role",        "content",         "name",
                                       "tool_calls",  "thinking_blocks", "function_call",
                                       "tool_call_id"};
    struct sb_json_member m[K_N];
    if (sp_get(f, jm, keys, K_N, m))
        return FAST_NO;
    const struct sb_json_span *content = &m[K_CONTENT].value, *name = &m[K_NAME].value;
    if (!sp_null(name) && name->type != SB_JSON_STRING)
        return FAST_NO;
    struct sb_msg *msg = &req->msgs[req->nmsgs];
    memset(msg, 0, sizeof *msg);
    size_t cap =
        content->type == SB_JSON_ARRAY ? (size_t)sb_json_array_len(f->s, f->n, content) : 1;
    if (content->type == SB_JSON_ARRAY && sb_json_array_len(f->s, f->n, content) < 0)
        return FAST_NO;
    const struct sb_json_span *role = &m[K_ROLE].value;
    bool user = sp_is(f, role, "user");
    if (user || sp_is(f, role, "system") || sp_is(f, role, "developer")) {
        msg->role = user ? SB_ROLE_USER : SB_ROLE_SYSTEM;
        if (sp_null(content))
            return FAST_NO;
        if (!(msg->parts = calloc(cap ? cap : 1, sizeof *msg->parts)))
            return FAST_NO;
        req->nmsgs++;
        size_t np = 0;
        int rc = fast_content(f, content, user ? CK_USER : CK_TEXT_ONLY, &msg->parts, &np);
        msg->nparts = np;
        if (rc)
            return FAST_NO;
    } else if (sp_is(f, role, "assistant")) {
        const struct sb_json_span *tcs = &m[K_TOOL_CALLS].value;
        if (!sp_null(&m[K_THINKING].value) || !sp_null(&m[K_FC].value) ||
            (!sp_null(tcs) && tcs->type != SB_JSON_ARRAY))
            return FAST_NO;
        int ntc = tcs->type == SB_JSON_ARRAY ? sb_json_array_len(f->s, f->n, tcs) : 0;
        if (ntc < 0 || (sp_null(content) && ntc == 0))
            return FAST_NO;
        msg->role = SB_ROLE_ASSISTANT;
        req->nmsgs++;
        if (!(msg->parts = calloc((size_t)ntc + cap, sizeof *msg->parts)))
            return FAST_NO;
        size_t np = 0;
        if (!sp_null(content)) {
            int rc = fast_content(f, content, CK_ASSISTANT, &msg->parts, &np);
            msg->nparts = np;
            if (rc)
                return FAST_NO;
        }
        size_t pos = 0;
        struct sb_json_span e;
        for (int i = 0; i < ntc; i++) {
            msg->nparts = ++np;
            if (sb_json_array_next(f->s, f->n, tcs, &pos, &e) ||
                fast_tool_call(f, &e, &msg->parts[np - 1]))
                return FAST_NO;
        }
    } else if (sp_is(f, role, "tool")) {
        const struct sb_json_span *id = &m[K_TCID].value;
        if (id->type != SB_JSON_STRING || sp_null(content))
            return FAST_NO;
        msg->role = SB_ROLE_TOOL;
        req->nmsgs++;
        if (!(msg->parts = calloc(1, sizeof *msg->parts)))
            return FAST_NO;
        msg->nparts = 1;
        struct sb_part *r = &msg->parts[0];
        r->type = SB_PART_TOOL_RESULT;
        if (sp_dup(f, id, &r->id))
            return FAST_NO;
        if (!sp_empty_str(content)) {
            if (!(r->parts = calloc(cap ? cap : 1, sizeof *r->parts)))
                return FAST_NO;
            size_t np = 0;
            int rc = fast_content(f, content, CK_TEXT_ONLY, &r->parts, &np);
            r->nparts = np;
            if (rc)
                return FAST_NO;
        }
    } else {
        return FAST_NO;
    }
    if (name->type == SB_JSON_STRING && sp_dup(f, name, &msg->name))
        return FAST_NO;
    return 0;
}

static int fast_tools(const struct fast *f, const struct sb_json_span *tools,
                      struct sb_canon_req *req)
{
    if (sp_null(tools))
        return 0;
    int n = tools->type == SB_JSON_ARRAY ? sb_json_array_len(f->s, f->n, tools) : -1;
    if (n <= 0)
        return n == 0 ? 0 : FAST_NO;
    if (!(req->tools = calloc((size_t)n, sizeof *req->tools)))
        return FAST_NO;
    static const char *const keys[] = {"type", "function"};
    static const char *const fkeys[] = {"name", "description", "parameters", "strict",
                                        "cache_control"};
    size_t pos = 0;
    struct sb_json_span e;
    for (int i = 0; i < n; i++) {
        struct sb_tool *t = &req->tools[req->ntools++];
        t->strict = -1;
        struct sb_json_member m[2], fm[5];
        if (sb_json_array_next(f->s, f->n, tools, &pos, &e) || sp_get(f, &e, keys, 2, m) ||
            !sp_is(f, &m[0].value, "function") || sp_get(f, &m[1].value, fkeys, 5, fm) ||
            fm[0].value.type != SB_JSON_STRING || sp_empty_str(&fm[0].value) ||
            sp_dup(f, &fm[0].value, &t->name))
            return FAST_NO;
        if (!sp_null(&fm[1].value) && sp_dup(f, &fm[1].value, &t->description))
            return FAST_NO;
        if (!sp_null(&fm[2].value) &&
            (fm[2].value.type != SB_JSON_OBJECT || sp_json(f, &fm[2].value, &t->parameters)))
            return FAST_NO;
        if (!sp_null(&fm[3].value)) {
            bool b;
            if (sp_bool(&fm[3].value, &b, NULL))
                return FAST_NO;
            t->strict = b;
        }
        if (fm[4].value.type == SB_JSON_OBJECT && sp_json(f, &fm[4].value, &t->cache_control))
            return FAST_NO;
    }
    return 0;
}

static int fast_tool_choice(const struct fast *f, const struct sb_json_span *tc,
                            struct sb_canon_req *req)
{
    if (sp_null(tc))
        return 0;
    if (sp_is(f, tc, "auto"))
        req->tool_choice = SB_TC_AUTO;
    else if (sp_is(f, tc, "none"))
        req->tool_choice = SB_TC_NONE;
    else if (sp_is(f, tc, "required"))
        req->tool_choice = SB_TC_REQUIRED;
    else
        return FAST_NO; /* objects and everything else: the tree path */
    return 0;
}

static int fast_stop(const struct fast *f, const struct sb_json_span *stop,
                     struct sb_canon_req *req)
{
    if (sp_null(stop))
        return 0;
    int n = stop->type == SB_JSON_STRING  ? 1
            : stop->type == SB_JSON_ARRAY ? sb_json_array_len(f->s, f->n, stop)
                                          : -1;
    if (n < 0 || n > STOP_MAX)
        return FAST_NO;
    if (n == 0)
        return 0;
    if (!(req->stop = calloc((size_t)n, sizeof *req->stop)))
        return FAST_NO;
    size_t pos = 0;
    struct sb_json_span e = *stop;
    for (int i = 0; i < n; i++) {
        if (stop->type == SB_JSON_ARRAY && sb_json_array_next(f->s, f->n, stop, &pos, &e))
            return FAST_NO;
        req->nstop++;
        if (e.type != SB_JSON_STRING || sp_dup(f, &e, &req->stop[i]))
            return FAST_NO;
    }
    return 0;
}

enum {
    R_MODEL,
    R_MESSAGES,
    R_TOOLS,
    R_TOOL_CHOICE,
    R_STOP,
    R_STREAM,
    R_STREAM_OPTIONS,
    R_MAX_TOKENS,
    R_MAX_COMPLETION_TOKENS,
    R_TEMPERATURE,
    R_TOP_P,
    R_PRESENCE_PENALTY,
    R_FREQUENCY_PENALTY,
    R_N,
    R_SEED,
    R_LOGPROBS,
    R_TOP_LOGPROBS,
    R_PARALLEL_TOOL_CALLS,
    R_REASONING_EFFORT,
    R_USER,
    R_METADATA,
    R_FALLBACK, /* keys only the tree path reads */
    R_IGNORED,
};

static const struct {
    const char *key;
    int slot;
} fast_root_keys[] = {
    {"model", R_MODEL},
    {"messages", R_MESSAGES},
    {"tools", R_TOOLS},
    {"tool_choice", R_TOOL_CHOICE},
    {"stop", R_STOP},
    {"stream", R_STREAM},
    {"stream_options", R_STREAM_OPTIONS},
    {"max_tokens", R_MAX_TOKENS},
    {"max_completion_tokens", R_MAX_COMPLETION_TOKENS},
    {"temperature", R_TEMPERATURE},
    {"top_p", R_TOP_P},
    {"presence_penalty", R_PRESENCE_PENALTY},
    {"frequency_penalty", R_FREQUENCY_PENALTY},
    {"n", R_N},
    {"seed", R_SEED},
    {"logprobs", R_LOGPROBS},
    {"top_logprobs", R_TOP_LOGPROBS},
    {"parallel_tool_calls", R_PARALLEL_TOOL_CALLS},
    {"reasoning_effort", R_REASONING_EFFORT},
    {"user", R_USER},
    {"metadata", R_METADATA},
    {"functions", R_FALLBACK},
    {"function_call", R_FALLBACK},
    {"response_format", R_FALLBACK},
};

/* Which root slot a key (its raw bytes between the quotes) fills; an escaped key takes the
 * tree path since it might spell a known one. */
static int fast_root_slot(const char *k, size_t l)
{
    if (memchr(k, '\\', l))
        return R_FALLBACK;
    for (size_t i = 0; i < sizeof fast_root_keys / sizeof fast_root_keys[0]; i++)
        if (strlen(fast_root_keys[i].key) == l && memcmp(fast_root_keys[i].key, k, l) == 0)
            return fast_root_keys[i].slot;
    return R_IGNORED;
}

static int fast_scalars(const struct fast *f, const struct sb_json_span *v,
                        struct sb_canon_req *req)
{
    bool has;
    if (sp_bool(&v[R_STREAM], &req->stream, NULL))
        return FAST_NO;
    const struct sb_json_span *so = &v[R_STREAM_OPTIONS];
    if (!sp_null(so)) {
        static const char *const keys[] = {"include_usage"};
        struct sb_json_member m;
        if (sp_get(f, so, keys, 1, &m) || sp_bool(&m.value, &req->include_usage, NULL))
            return FAST_NO;
    }
    int64_t mt = -1;
    if (sp_int(f, &v[R_MAX_TOKENS], &mt, 1, INT32_MAX) ||
        sp_int(f, &v[R_MAX_COMPLETION_TOKENS], &mt, 1, INT32_MAX))
        return FAST_NO;
    req->max_tokens = mt;
    if (sp_num(f, &v[R_TEMPERATURE], &req->temperature, &req->has_temperature, 0, 2) ||
        sp_num(f, &v[R_TOP_P], &req->top_p, &req->has_top_p, 0, 1) ||
        sp_num(f, &v[R_PRESENCE_PENALTY], &req->presence_penalty, &req->has_presence_penalty, -2,
               2) ||
        sp_num(f, &v[R_FREQUENCY_PENALTY], &req->frequency_penalty, &req->has_frequency_penalty, -2,
               2) ||
        sp_int(f, &v[R_N], &req->n, 1, 128))
        return FAST_NO;
    if (!sp_null(&v[R_SEED])) {
        if (sp_int(f, &v[R_SEED], &req->seed, INT64_MIN, INT64_MAX))
            return FAST_NO;
        req->has_seed = true;
    }
    if (sp_bool(&v[R_LOGPROBS], &req->logprobs, &has) ||
        sp_int(f, &v[R_TOP_LOGPROBS], &req->top_logprobs, 0, 20))
        return FAST_NO;
    bool ptc = false;
    if (sp_bool(&v[R_PARALLEL_TOOL_CALLS], &ptc, &has))
        return FAST_NO;
    if (has)
        req->parallel_tool_calls = ptc;
    const struct sb_json_span *re = &v[R_REASONING_EFFORT];
    if (!sp_null(re)) {
        if (sp_dup(f, re, &req->reasoning_effort) ||
            sb_canon_effort_budget(req->reasoning_effort) < 0)
            return FAST_NO;
    }
    if (!sp_null(&v[R_USER]) && sp_dup(f, &v[R_USER], &req->user))
        return FAST_NO;
    const struct sb_json_span *md = &v[R_METADATA];
    if (!sp_null(md) && (md->type != SB_JSON_OBJECT || sp_json(f, md, &req->metadata)))
        return FAST_NO;
    return 0;
}

/* 0 with *out filled, or FAST_NO with *out freed and reset. */
static int decode_request_fast(const char *body, size_t len, struct sb_canon_req *out)
{
    req_init(out);
    struct sb_json_index idx;
    if (sb_json_validate_index(body, len, FAST_DEPTH, &idx) != 0 ||
        idx.root.type != SB_JSON_OBJECT || !idx.complete || !sb_json_jansson_same(body, len))
        return FAST_NO;
    struct fast f = {body, len};
    struct sb_json_span v[R_FALLBACK];
    memset(v, 0, sizeof v); /* type SB_JSON_INVALID: absent */
    for (size_t i = 0; i < idx.n; i++) {
        const struct sb_json_span *k = &idx.members[i].key;
        int slot = fast_root_slot(body + k->start + 1, k->end - k->start - 2);
        if (slot == R_IGNORED)
            continue;
        if (slot == R_FALLBACK || v[slot].type != SB_JSON_INVALID)
            return FAST_NO;
        v[slot] = idx.members[i].value;
    }
    const struct sb_json_span *msgs = &v[R_MESSAGES];
    if (v[R_MODEL].type != SB_JSON_STRING || msgs->type != SB_JSON_ARRAY)
        return FAST_NO;
    /* The messages are found and counted in one walk; a conversation longer than the stack
     * holds is counted first and walked again. */
    struct sb_json_span ms[FAST_MSGS];
    size_t pos = 0, n = 0;
    int r = 0;
    while (n < FAST_MSGS && (r = sb_json_array_next(body, len, msgs, &pos, &ms[n])) == 0)
        n++;
    bool many = n == FAST_MSGS;
    if (many) {
        r = sb_json_array_len(body, len, msgs);
        n = r > 0 ? (size_t)r : 0;
    } else if (r != SB_JSON_NOT_FOUND) {
        return FAST_NO;
    }
    if (n == 0)
        return FAST_NO;
    int rc = FAST_NO;
    if (sp_dup(&f, &v[R_MODEL], &out->model) || !(out->msgs = calloc(n, sizeof *out->msgs)))
        goto out;
    pos = 0;
    for (size_t i = 0; i < n; i++) {
        struct sb_json_span e = many ? (struct sb_json_span){0} : ms[i];
        if (many && sb_json_array_next(body, len, msgs, &pos, &e))
            goto out;
        if (fast_message(&f, &e, out))
            goto out;
    }
    if (fast_tools(&f, &v[R_TOOLS], out) || fast_tool_choice(&f, &v[R_TOOL_CHOICE], out) ||
        fast_stop(&f, &v[R_STOP], out) || fast_scalars(&f, v, out))
        goto out;
    if (out->top_logprobs >= 0 && !out->logprobs)
        out->top_logprobs = -1;
    rc = 0;
out:
    if (rc)
        sb_canon_req_free(out);
    return rc;
}

/* The tree path: every request the fast path passes on, and every error. */
static int decode_request_tree(const char *body, size_t len, struct sb_canon_req *out,
                               struct sb_error *err)
{
    req_init(out);
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root)
        return bad(err, "invalid_json", NULL,
                   "We could not parse the JSON body of your request: %.200s", jerr.text);
    int rc = -1;
    if (!json_is_object(root)) {
        bad(err, "invalid_json", NULL, "The request body must be a JSON object.");
        goto out;
    }
    json_t *model = json_object_get(root, "model");
    if (!model) {
        bad(err, "missing_required_parameter", "model", "you must provide a model parameter");
        goto out;
    }
    if (!json_is_string(model)) {
        bad_type(err, "model", "a string");
        goto out;
    }
    if (dup_json_str(model, &out->model, err))
        goto out;
    json_t *msgs = json_object_get(root, "messages");
    if (!msgs) {
        bad(err, "missing_required_parameter", "messages",
            "Missing required parameter: 'messages'.");
        goto out;
    }
    if (!json_is_array(msgs)) {
        bad_type(err, "messages", "an array");
        goto out;
    }
    size_t n = json_array_size(msgs);
    if (n == 0) {
        bad(err, "empty_array", "messages",
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got "
            "an empty array instead.");
        goto out;
    }
    out->msgs = calloc(n, sizeof *out->msgs);
    if (!out->msgs) {
        oom(err);
        goto out;
    }
    for (size_t i = 0; i < n; i++)
        if (decode_message(json_array_get(msgs, i), out, i, err))
            goto out;
    if (decode_tools(root, out, err) || decode_tool_choice(root, out, err) ||
        decode_stop(root, out, err) || decode_response_format(root, out, err) ||
        decode_scalars(root, out, err))
        goto out;
    if (out->top_logprobs >= 0 && !out->logprobs)
        out->top_logprobs = -1; /* meaningless without logprobs: dropped */
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
    if (decode_request_fast(body, len, out) == 0)
        return 0;
    return decode_request_tree(body, len, out, err);
}

/* ------------------------------------------------------------------ errors out */

struct err_shape {
    const char *type;
    const char *code;
    int status; /* used when the canonical status is not an HTTP error status */
};

static struct err_shape err_shape_of(const struct sb_canon_error *e)
{
    switch (e->kind) {
    case SB_ERRK_INVALID_REQUEST:
        return (struct err_shape){"invalid_request_error", NULL, 400};
    case SB_ERRK_AUTH:
        return (struct err_shape){"authentication_error", "invalid_api_key", 401};
    case SB_ERRK_PERMISSION:
        return (struct err_shape){"permission_error", NULL, 403};
    case SB_ERRK_BILLING:
        /* OpenAI's own shape for exhausted credit, which SDK users already test for. */
        return (struct err_shape){"insufficient_quota", "insufficient_quota", 429};
    case SB_ERRK_NOT_FOUND:
        return (struct err_shape){"invalid_request_error",
                                  strstr(e->message, "model") ? "model_not_found" : NULL, 404};
    case SB_ERRK_TOO_LARGE:
        return (struct err_shape){"invalid_request_error", "request_too_large", 413};
    case SB_ERRK_CONTEXT_WINDOW:
        return (struct err_shape){"invalid_request_error", "context_length_exceeded", 400};
    case SB_ERRK_CONTENT_POLICY:
        return (struct err_shape){"invalid_request_error", "content_policy_violation", 400};
    case SB_ERRK_RATE_LIMIT:
        return (struct err_shape){"rate_limit_error", "rate_limit_exceeded", 429};
    case SB_ERRK_OVERLOADED:
        return (struct err_shape){"service_unavailable", "overloaded", 503};
    case SB_ERRK_TIMEOUT:
        return (struct err_shape){"timeout", "timeout", 504};
    case SB_ERRK_SERVER:
        break;
    }
    return (struct err_shape){"server_error", NULL, 500};
}

static json_t *error_json(const struct sb_canon_error *e, int *status)
{
    struct err_shape s = err_shape_of(e);
    int st = e->status;
    if (st == 529)
        st = 503; /* OpenAI clients know no 529 */
    if (st < 400 || st > 599)
        st = s.status;
    if (status)
        *status = st;
    json_t *msg;
    if (e->message[0])
        msg = jstr(e->message, strnlen(e->message, sizeof e->message));
    else
        msg = json_sprintf("The upstream provider returned an error (HTTP %d).", st);
    return json_pack("{s:{s:o,s:s,s:n,s:o}}", "error", "message", msg, "type", s.type, "param",
                     "code", s.code ? json_string(s.code) : json_null());
}

static int dump_into(json_t *j, struct sb_buf *out, const char *pre, const char *post)
{
    if (!j)
        return -ENOMEM;
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (!s)
        return -ENOMEM;
    size_t n = strlen(s), pl = strlen(pre), sl = strlen(post);
    int rc = sb_buf_reserve(out, pl + n + sl);
    if (rc == 0) {
        sb_buf_append(out, pre, pl);
        sb_buf_append(out, s, n);
        sb_buf_append(out, post, sl);
    }
    free(s);
    return rc;
}

static int render_error(const struct sb_canon_error *e, struct sb_buf *out, int *status)
{
    int st = 0;
    int rc = dump_into(error_json(e, &st), out, "", "");
    if (status)
        *status = st;
    return rc;
}

/* ------------------------------------------------------------------ response */

/* Counts come from providers: negative means unknown, and sums saturate rather than
 * overflow. */
static int64_t cnt(int64_t v)
{
    return v > 0 ? v : 0;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    return a > INT64_MAX - b ? INT64_MAX : a + b;
}

/* The OpenAI usage object; *written is false (nothing written) when every count is unknown. */
static int put_usage(struct sb_buf *b, const struct sb_usage *u, bool *written)
{
    *written = false;
    if (u->input < 0 && u->output < 0 && u->cache_read < 0 && u->cache_write < 0)
        return 0;
    int64_t prompt = sat_add(sat_add(cnt(u->input), cnt(u->cache_read)), cnt(u->cache_write));
    int64_t completion = cnt(u->output);
    int rc = put_lit(b, "{\"prompt_tokens\":");
    if (rc == 0)
        rc = sb_buf_append_i64(b, prompt);
    if (rc == 0)
        rc = put_lit(b, ",\"completion_tokens\":");
    if (rc == 0)
        rc = sb_buf_append_i64(b, completion);
    if (rc == 0)
        rc = put_lit(b, ",\"total_tokens\":");
    if (rc == 0)
        rc = sb_buf_append_i64(b, sat_add(prompt, completion));
    if (rc == 0)
        rc = put_lit(b, ",\"prompt_tokens_details\":{\"cached_tokens\":");
    if (rc == 0)
        rc = sb_buf_append_i64(b, cnt(u->cache_read));
    if (rc == 0 && u->cache_write > 0) {
        rc = put_lit(b, ",\"cache_write_tokens\":");
        if (rc == 0)
            rc = sb_buf_append_i64(b, u->cache_write);
    }
    if (rc == 0)
        rc = put_lit(b, "},\"completion_tokens_details\":{\"reasoning_tokens\":");
    if (rc == 0)
        rc = sb_buf_append_i64(b, cnt(u->reasoning));
    if (rc == 0)
        rc = put_lit(b, "}}");
    *written = rc == 0;
    return rc;
}

static json_t *thinking_block_json(enum sb_block_kind kind, const char *text, size_t len,
                                   const char *sig)
{
    if (kind == SB_BLOCK_REDACTED_THINKING)
        return json_pack("{s:s,s:o}", "type", "redacted_thinking", "data", jstr(text, len));
    json_t *o = json_pack("{s:s,s:o}", "type", "thinking", "thinking", jstr(text, len));
    if (o && sig)
        json_object_set_new(o, "signature", jstr0(sig));
    return o;
}

/* thinking_block_json as text. */
static int put_thinking_block(struct sb_buf *b, const struct sb_canon_block *blk)
{
    const char *bt = blk->text.data ? blk->text.data : "";
    int rc;
    if (blk->kind == SB_BLOCK_REDACTED_THINKING) {
        rc = put_lit(b, "{\"type\":\"redacted_thinking\",\"data\":");
        if (rc == 0)
            rc = put_str(b, bt, blk->text.len);
        return rc ? rc : sb_buf_append_char(b, '}');
    }
    rc = put_lit(b, "{\"type\":\"thinking\",\"thinking\":");
    if (rc == 0)
        rc = put_str(b, bt, blk->text.len);
    if (rc == 0 && blk->signature) {
        rc = put_lit(b, ",\"signature\":");
        if (rc == 0)
            rc = put_str0(b, blk->signature);
    }
    return rc ? rc : sb_buf_append_char(b, '}');
}

static int put_tool_call(struct sb_buf *b, const struct sb_canon_block *blk)
{
    char gen[40];
    if (!blk->id)
        sb_canon_random_id("call_", gen, sizeof gen);
    int rc = put_lit(b, "{\"id\":");
    if (rc == 0)
        rc = put_str0(b, blk->id ? blk->id : gen);
    if (rc == 0)
        rc = put_lit(b, ",\"type\":\"function\",\"function\":{\"name\":");
    if (rc == 0)
        rc = put_str0(b, blk->name);
    if (rc == 0)
        rc = put_lit(b, ",\"arguments\":");
    if (rc == 0)
        rc = put_str(b, blk->text.data, blk->text.len);
    return rc ? rc : put_lit(b, "}}");
}

/* The message's content: the text blocks joined (jansson's U+FFFD repair applies to the joined
 * text, so the text is gathered first when there is more than one block). */
static int put_joined(struct sb_buf *b, const struct sb_canon_resp *r, enum sb_block_kind kind,
                      struct sb_buf *tmp)
{
    const struct sb_canon_block *only = NULL;
    size_t count = 0;
    for (size_t i = 0; i < r->nblocks; i++) {
        if (r->blocks[i].kind == kind) {
            only = &r->blocks[i];
            count++;
        }
    }
    if (count == 1)
        return put_str(b, only->text.data, only->text.len);
    for (size_t i = 0; i < r->nblocks; i++) {
        const struct sb_canon_block *blk = &r->blocks[i];
        if (blk->kind == kind && blk->text.len) {
            int rc = sb_buf_append(tmp, blk->text.data, blk->text.len);
            if (rc)
                return rc;
        }
    }
    return put_str(b, tmp->data, tmp->len);
}

static int render_response(const struct sb_canon_resp *r, const char *model, struct sb_buf *out)
{
    if (r->has_error)
        return render_error(&r->error, out, NULL);
    struct sb_buf tmp;
    sb_buf_init(&tmp, r->max_bytes ? r->max_bytes : SIZE_MAX / 2);
    bool has_text = false, has_tools = false, has_thinking = false;
    for (size_t i = 0; i < r->nblocks; i++) {
        switch (r->blocks[i].kind) {
        case SB_BLOCK_TEXT:
            has_text = true;
            break;
        case SB_BLOCK_THINKING:
        case SB_BLOCK_REDACTED_THINKING:
            has_thinking = true;
            break;
        case SB_BLOCK_TOOL_CALL:
            has_tools = true;
            break;
        }
    }
    size_t before = out->len;
    char idbuf[CHATCMPL_ID_CAP];
    if (!r->id)
        sb_canon_random_id("chatcmpl-", idbuf, sizeof idbuf);
    const char *mdl = r->model ? r->model : model ? model : "";
    int rc = put_lit(out, "{\"id\":");
    if (rc == 0)
        rc = put_str0(out, r->id ? r->id : idbuf);
    if (rc == 0)
        rc = put_lit(out, ",\"object\":\"chat.completion\",\"created\":");
    if (rc == 0)
        rc = sb_buf_append_i64(out, (int64_t)time(NULL));
    if (rc == 0)
        rc = put_lit(out, ",\"model\":");
    if (rc == 0)
        rc = put_str0(out, mdl);
    if (rc == 0)
        rc = put_lit(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                          "\"content\":");
    if (rc == 0)
        rc =
            !has_text && has_tools ? put_lit(out, "null") : put_joined(out, r, SB_BLOCK_TEXT, &tmp);
    if (rc == 0)
        rc = put_lit(out, ",\"refusal\":null");
    if (rc == 0 && has_tools) {
        rc = put_lit(out, ",\"tool_calls\":[");
        bool first = true;
        for (size_t i = 0; i < r->nblocks && rc == 0; i++) {
            if (r->blocks[i].kind != SB_BLOCK_TOOL_CALL)
                continue;
            if (!first)
                rc = sb_buf_append_char(out, ',');
            first = false;
            if (rc == 0)
                rc = put_tool_call(out, &r->blocks[i]);
        }
        if (rc == 0)
            rc = sb_buf_append_char(out, ']');
    }
    if (rc == 0 && has_thinking) {
        sb_buf_reset(&tmp);
        rc = put_lit(out, ",\"reasoning_content\":");
        if (rc == 0)
            rc = put_joined(out, r, SB_BLOCK_THINKING, &tmp);
        if (rc == 0)
            rc = put_lit(out, ",\"thinking_blocks\":[");
        bool first = true;
        for (size_t i = 0; i < r->nblocks && rc == 0; i++) {
            enum sb_block_kind k = r->blocks[i].kind;
            if (k != SB_BLOCK_THINKING && k != SB_BLOCK_REDACTED_THINKING)
                continue;
            if (!first)
                rc = sb_buf_append_char(out, ',');
            first = false;
            if (rc == 0)
                rc = put_thinking_block(out, &r->blocks[i]);
        }
        if (rc == 0)
            rc = sb_buf_append_char(out, ']');
    }
    if (rc == 0)
        rc = put_lit(out, "},\"logprobs\":null,\"finish_reason\":");
    if (rc == 0)
        rc = put_str0(out, sb_finish_openai(r->finish));
    if (rc == 0)
        rc = put_lit(out, "}]");
    if (rc == 0) {
        bool written = false;
        size_t at = out->len;
        rc = put_lit(out, ",\"usage\":");
        if (rc == 0)
            rc = put_usage(out, &r->usage, &written);
        if (rc == 0 && !written) {
            out->len = at;
            out->data[at] = '\0';
        }
    }
    if (rc == 0)
        rc = sb_buf_append_char(out, '}');
    sb_buf_free(&tmp);
    return put_undo(out, before, rc);
}

/* ------------------------------------------------------------------ stream encoder */

struct enc {
    char id[CHATCMPL_ID_CAP];
    char *model;
    int64_t created;
    bool include_usage;
    bool started, open, finished, usage_sent, over;
    int nblocks;             /* blocks opened so far */
    enum sb_block_kind kind; /* of the open block */
    int tool_index;          /* OpenAI tool_calls[].index of the open tool block */
    int ntools;
    struct sb_buf redacted; /* a redacted block's data, sent whole at its stop */
    bool usage_held;        /* a USAGE that came before FINISH */
    struct sb_usage held;
    struct sb_buf head; /* see build_head */
};

/* The chunk prefix up to and including `"model":...,`: the same for every chunk of a stream,
 * so it is written once (again if START names another model). */
static int build_head(struct enc *e)
{
    size_t ml = strlen(e->model);
    sb_buf_free(&e->head);
    /* An escaped string is at most 6 bytes per input byte. */
    sb_buf_init(&e->head, ml > (SIZE_MAX - 256) / 6 ? SIZE_MAX : ml * 6 + 256);
    int rc = put_lit(&e->head, "data: {\"id\":");
    if (rc == 0)
        rc = put_str0(&e->head, e->id);
    if (rc == 0)
        rc = put_lit(&e->head, ",\"object\":\"chat.completion.chunk\",\"created\":");
    if (rc == 0)
        rc = sb_buf_append_i64(&e->head, e->created);
    if (rc == 0)
        rc = put_lit(&e->head, ",\"model\":");
    if (rc == 0)
        rc = put_str(&e->head, e->model, ml);
    if (rc == 0)
        rc = sb_buf_append_char(&e->head, ',');
    return rc;
}

static void *enc_new(const char *model, bool include_usage)
{
    struct enc *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    sb_canon_random_id("chatcmpl-", e->id, sizeof e->id);
    e->model = strdup(model ? model : "");
    if (!e->model) {
        free(e);
        return NULL;
    }
    e->created = (int64_t)time(NULL);
    e->include_usage = include_usage;
    sb_buf_init(&e->redacted, REDACTED_MAX);
    if (build_head(e)) {
        sb_buf_free(&e->head);
        sb_buf_free(&e->redacted);
        free(e->model);
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
    sb_buf_free(&e->redacted);
    sb_buf_free(&e->head);
    free(e);
}

/* A chunk with one choice is written in three steps: chunk_open (up to the delta object),
 * the delta by the caller, chunk_close. */
static int chunk_open(const struct enc *e, struct sb_buf *out)
{
    /* One reservation for the common small chunk. */
    int rc = sb_buf_reserve(out, e->head.len + 160);
    if (rc == 0)
        rc = sb_buf_append(out, e->head.data, e->head.len);
    if (rc == 0)
        rc = put_lit(out, "\"choices\":[{\"index\":0,\"delta\":");
    return rc;
}

static int chunk_close(const struct enc *e, const char *finish, struct sb_buf *out)
{
    int rc = put_lit(out, ",\"logprobs\":null,\"finish_reason\":");
    if (rc == 0)
        rc = finish ? put_str0(out, finish) : put_lit(out, "null");
    if (rc == 0)
        rc = put_lit(out, e->include_usage ? "}],\"usage\":null}\n\n" : "}]}\n\n");
    return rc;
}

/* One chunk whose delta is the literal JSON text `delta`. */
static int write_chunk_lit(struct enc *e, const char *delta, const char *finish, struct sb_buf *out)
{
    size_t before = out->len;
    int rc = chunk_open(e, out);
    if (rc == 0)
        rc = put_lit(out, delta);
    if (rc == 0)
        rc = chunk_close(e, finish, out);
    return put_undo(out, before, rc);
}

/* One chunk whose delta is `pre` + the string s[0..len) + `post`. */
static int write_chunk_str(struct enc *e, const char *pre, const char *s, size_t len,
                           const char *post, struct sb_buf *out)
{
    size_t before = out->len;
    int rc = chunk_open(e, out);
    if (rc == 0)
        rc = put_lit(out, pre);
    if (rc == 0)
        rc = put_str(out, s, len);
    if (rc == 0)
        rc = put_lit(out, post);
    if (rc == 0)
        rc = chunk_close(e, NULL, out);
    return put_undo(out, before, rc);
}

/* One chunk carrying a fragment of the open tool call's arguments. */
static int write_chunk_args(struct enc *e, const char *s, size_t len, struct sb_buf *out)
{
    size_t before = out->len;
    int rc = chunk_open(e, out);
    if (rc == 0)
        rc = put_lit(out, "{\"tool_calls\":[{\"index\":");
    if (rc == 0)
        rc = sb_buf_append_i64(out, e->tool_index);
    if (rc == 0)
        rc = put_lit(out, ",\"function\":{\"arguments\":");
    if (rc == 0)
        rc = put_str(out, s, len);
    if (rc == 0)
        rc = put_lit(out, "}}]}");
    if (rc == 0)
        rc = chunk_close(e, NULL, out);
    return put_undo(out, before, rc);
}

/* One chunk whose delta is a jansson value (rare chunks); `delta` is stolen. */
static int write_chunk(struct enc *e, json_t *delta, const char *finish, struct sb_buf *out)
{
    if (!delta)
        return -ENOMEM;
    size_t before = out->len;
    char *d = json_dumps(delta, JSON_COMPACT);
    json_decref(delta);
    if (!d)
        return -ENOMEM;
    int rc = chunk_open(e, out);
    if (rc == 0)
        rc = put_lit(out, d);
    if (rc == 0)
        rc = chunk_close(e, finish, out);
    free(d);
    return put_undo(out, before, rc);
}

static int write_usage(struct enc *e, const struct sb_usage *u, struct sb_buf *out)
{
    size_t before = out->len;
    int rc = sb_buf_reserve(out, e->head.len + 256);
    if (rc == 0)
        rc = sb_buf_append(out, e->head.data, e->head.len);
    if (rc == 0)
        rc = put_lit(out, "\"choices\":[],\"usage\":");
    bool written = false;
    if (rc == 0)
        rc = put_usage(out, u, &written);
    if (rc == 0 && !written) {
        struct sb_usage zero = {0, 0, 0, 0, 0};
        rc = put_usage(out, &zero, &written);
    }
    if (rc == 0)
        rc = put_lit(out, "}\n\n");
    return put_undo(out, before, rc);
}

static int enc_error(void *p, const struct sb_canon_error *err, struct sb_buf *out)
{
    struct enc *e = p;
    if (!e || !err || e->over)
        return SB_CANON_E_INVALID;
    int rc = dump_into(error_json(err, NULL), out, "data: ", "\n\n");
    if (rc == 0)
        e->over = true;
    return rc;
}

static int enc_event(void *p, const struct sb_canon_event *ev, struct sb_buf *out)
{
    struct enc *e = p;
    if (!e || !ev || e->over)
        return SB_CANON_E_INVALID;
    if (ev->type == SB_EV_ERROR)
        return ev->error ? enc_error(e, ev->error, out) : SB_CANON_E_INVALID;
    if (ev->type != SB_EV_START && !e->started)
        return SB_CANON_E_INVALID;
    bool in_block = e->open && ev->index == e->nblocks - 1;
    int rc;
    switch (ev->type) {
    case SB_EV_START:
        if (e->started)
            return SB_CANON_E_INVALID;
        if (ev->model && ev->model[0] && strcmp(ev->model, e->model) != 0) {
            char *m = strdup(ev->model);
            if (!m)
                return -ENOMEM;
            free(e->model);
            e->model = m;
            rc = build_head(e);
            if (rc)
                return rc;
        }
        rc = write_chunk_lit(e, "{\"role\":\"assistant\",\"content\":\"\"}", NULL, out);
        if (rc == 0)
            e->started = true;
        return rc;
    case SB_EV_BLOCK_START:
        if (e->open || e->finished || ev->index != e->nblocks)
            return SB_CANON_E_INVALID;
        if (ev->block == SB_BLOCK_TOOL_CALL) {
            char gen[40];
            if (!ev->id || !ev->id[0])
                sb_canon_random_id("call_", gen, sizeof gen);
            json_t *tc =
                json_pack("{s:i,s:o,s:s,s:{s:o,s:s}}", "index", e->ntools, "id",
                          ev->id && ev->id[0] ? jstr0(ev->id) : json_string(gen), "type",
                          "function", "function", "name", jstr0(ev->name), "arguments", "");
            rc = write_chunk(e, json_pack("{s:[o]}", "tool_calls", tc), NULL, out);
            if (rc)
                return rc;
            e->tool_index = e->ntools++;
        }
        sb_buf_reset(&e->redacted);
        e->kind = ev->block;
        e->open = true;
        e->nblocks++;
        return 0;
    case SB_EV_DELTA: {
        if (!in_block)
            return SB_CANON_E_INVALID;
        if (ev->len && !ev->text)
            return SB_CANON_E_INVALID;
        if (e->kind == SB_BLOCK_REDACTED_THINKING)
            return ev->len ? sb_buf_append(&e->redacted, ev->text, ev->len) : 0;
        if (ev->len == 0)
            return 0;
        if (e->kind == SB_BLOCK_TEXT)
            return write_chunk_str(e, "{\"content\":", ev->text, ev->len, "}", out);
        if (e->kind == SB_BLOCK_THINKING)
            return write_chunk_str(e, "{\"reasoning_content\":", ev->text, ev->len, "}", out);
        return write_chunk_args(e, ev->text, ev->len, out);
    }
    case SB_EV_SIGNATURE:
        if (!in_block || e->kind != SB_BLOCK_THINKING || (ev->len && !ev->text))
            return SB_CANON_E_INVALID;
        return write_chunk_str(e,
                               "{\"thinking_blocks\":[{\"type\":\"thinking\",\"thinking\":\"\","
                               "\"signature\":",
                               ev->text, ev->len, "}]}", out);
    case SB_EV_BLOCK_STOP:
        if (!in_block)
            return SB_CANON_E_INVALID;
        if (e->kind == SB_BLOCK_REDACTED_THINKING) {
            rc =
                write_chunk(e,
                            json_pack("{s:[o]}", "thinking_blocks",
                                      thinking_block_json(SB_BLOCK_REDACTED_THINKING,
                                                          e->redacted.data, e->redacted.len, NULL)),
                            NULL, out);
            if (rc)
                return rc;
        }
        e->open = false;
        return 0;
    case SB_EV_FINISH: {
        if (e->open || e->finished)
            return SB_CANON_E_INVALID;
        size_t before = out->len;
        rc = write_chunk_lit(e, "{}", sb_finish_openai(ev->finish), out);
        if (rc == 0 && e->usage_held && e->include_usage)
            rc = write_usage(e, &e->held, out);
        if (rc) {
            out->len = before;
            if (out->data)
                out->data[before] = '\0';
            return rc;
        }
        e->finished = true;
        e->usage_sent = e->usage_held;
        return 0;
    }
    case SB_EV_USAGE:
        if (e->usage_sent || e->usage_held)
            return SB_CANON_E_INVALID;
        if (!e->finished) {
            /* OpenAI's usage chunk must follow the finish chunk: hold it until then. */
            e->held = ev->usage;
            e->usage_held = true;
            return 0;
        }
        rc = e->include_usage ? write_usage(e, &ev->usage, out) : 0;
        if (rc == 0)
            e->usage_sent = true;
        return rc;
    case SB_EV_ERROR:
        break;
    }
    return SB_CANON_E_INVALID;
}

static int enc_end(void *p, struct sb_buf *out)
{
    struct enc *e = p;
    if (!e || e->over)
        return SB_CANON_E_INVALID;
    /* [DONE] after a stream with no finish would tell the client the answer is complete; the
     * caller sends an error event instead (enc_error still works after this). */
    if (!e->finished)
        return SB_CANON_E_CUT;
    int rc = sb_buf_append_str(out, "data: [DONE]\n\n");
    if (rc == 0)
        e->over = true;
    return rc;
}

const struct sb_client_codec sb_client_openai = {
    .dialect = SB_DIALECT_OPENAI,
    .decode_request = decode_request,
    .render_response = render_response,
    .render_error = render_error,
    .enc_new = enc_new,
    .enc_event = enc_event,
    .enc_end = enc_end,
    .enc_error = enc_error,
    .enc_free = enc_free,
};

/* ------------------------------------------------------------------ embeddings */

int sb_openai_decode_embed_request(const char *body, size_t len, struct sb_embed_req *out,
                                   struct sb_error *err)
{
    memset(out, 0, sizeof *out);
    out->dimensions = -1;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    if (!root)
        return bad(err, "invalid_json", NULL,
                   "We could not parse the JSON body of your request: %.200s", jerr.text);
    int rc = -1;
    if (!json_is_object(root)) {
        bad(err, "invalid_json", NULL, "The request body must be a JSON object.");
        goto out;
    }
    json_t *model = json_object_get(root, "model");
    if (!json_is_string(model)) {
        if (model)
            bad_type(err, "model", "a string");
        else
            bad(err, "missing_required_parameter", "model", "you must provide a model parameter");
        goto out;
    }
    if (dup_json_str(model, &out->model, err))
        goto out;
    json_t *input = json_object_get(root, "input");
    if (!input || json_is_null(input)) {
        bad(err, "missing_required_parameter", "input", "Missing required parameter: 'input'.");
        goto out;
    }
    size_t n = json_is_string(input) ? 1 : json_array_size(input);
    if (!json_is_string(input) && !json_is_array(input)) {
        bad_type(err, "input", "a string or an array of strings");
        goto out;
    }
    if (n == 0) {
        bad(err, "empty_array", "input",
            "Invalid 'input': empty array. Expected an array with minimum length 1.");
        goto out;
    }
    if (n > EMBED_INPUTS_MAX) {
        bad(err, "array_above_max_length", "input",
            "Invalid 'input': array too long. Expected an array with maximum length %d.",
            EMBED_INPUTS_MAX);
        goto out;
    }
    out->inputs = calloc(n, sizeof *out->inputs);
    if (!out->inputs) {
        oom(err);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_is_string(input) ? input : json_array_get(input, i);
        if (json_is_integer(s) || json_is_array(s)) {
            unsupported(err, "input", "token array input");
            goto out;
        }
        if (!json_is_string(s)) {
            bad_type(err, "input", "a string or an array of strings");
            goto out;
        }
        if (json_string_length(s) == 0) {
            bad(err, "invalid_value", "input",
                "Invalid 'input': an input string must not be empty.");
            goto out;
        }
        out->ninputs++;
        if (dup_json_str(s, &out->inputs[i], err))
            goto out;
    }
    if (opt_int(root, "dimensions", &out->dimensions, 1, 65536, "dimensions", err))
        goto out;
    json_t *ef = json_object_get(root, "encoding_format");
    if (ef && !json_is_null(ef)) {
        if (str_eq(ef, "base64")) {
            out->base64 = true;
        } else if (!str_eq(ef, "float")) {
            bad(err, "invalid_value", "encoding_format",
                "Invalid value for 'encoding_format': expected 'float' or 'base64'.");
            goto out;
        }
    }
    if (opt_str(root, "user", &out->user, "user", err) ||
        opt_str(root, "input_type", &out->input_type, "input_type", err))
        goto out;
    rc = 0;
out:
    json_decref(root);
    if (rc)
        sb_embed_req_free(out);
    return rc;
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_group(struct sb_buf *out, const unsigned char *g, size_t n)
{
    char q[4];
    uint32_t v = (uint32_t)g[0] << 16 | (n > 1 ? (uint32_t)g[1] << 8 : 0) | (n > 2 ? g[2] : 0);
    q[0] = b64chars[(v >> 18) & 63];
    q[1] = b64chars[(v >> 12) & 63];
    q[2] = n > 1 ? b64chars[(v >> 6) & 63] : '=';
    q[3] = n > 2 ? b64chars[v & 63] : '=';
    return sb_buf_append(out, q, 4);
}

/* Little-endian float32, as OpenAI sends with encoding_format "base64". */
static int append_b64_floats(struct sb_buf *out, const double *v, size_t n)
{
    unsigned char g[3];
    size_t gl = 0;
    int rc = sb_buf_append_char(out, '"');
    for (size_t i = 0; i < n && rc == 0; i++) {
        float f = (float)v[i];
        uint32_t bits;
        memcpy(&bits, &f, sizeof bits);
        for (int k = 0; k < 4 && rc == 0; k++) {
            g[gl++] = (unsigned char)(bits >> (8 * k));
            if (gl == 3) {
                rc = b64_group(out, g, 3);
                gl = 0;
            }
        }
    }
    if (rc == 0 && gl)
        rc = b64_group(out, g, gl);
    return rc ? rc : sb_buf_append_char(out, '"');
}

static int append_floats(struct sb_buf *out, const double *v, size_t n)
{
    int rc = sb_buf_append_char(out, '[');
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!isfinite(v[i]))
            return SB_CANON_E_INVALID;
        rc = sb_buf_printf(out, i ? ",%.9g" : "%.9g", v[i]);
    }
    return rc ? rc : sb_buf_append_char(out, ']');
}

int sb_openai_render_embeddings(const struct sb_embed_resp *r, const char *model, bool base64,
                                struct sb_buf *out)
{
    if (r->n && (!r->vectors || !r->dims))
        return SB_CANON_E_INVALID;
    size_t start = out->len;
    int rc = sb_buf_append_str(out, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < r->n && rc == 0; i++) {
        rc = sb_buf_printf(
            out, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
        if (rc == 0 && r->dims[i] && !r->vectors[i])
            rc = SB_CANON_E_INVALID;
        if (rc == 0)
            rc = base64 ? append_b64_floats(out, r->vectors[i], r->dims[i])
                        : append_floats(out, r->vectors[i], r->dims[i]);
        if (rc == 0)
            rc = sb_buf_append_char(out, '}');
    }
    const char *mdl = r->model ? r->model : model ? model : "";
    int64_t tok = r->input_tokens > 0 ? r->input_tokens : 0;
    if (rc == 0)
        rc = sb_buf_append_str(out, "],\"model\":");
    if (rc == 0)
        rc = sb_buf_append_json_str(out, mdl, strlen(mdl));
    if (rc == 0)
        rc = sb_buf_printf(out, ",\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}",
                           (long long)tok, (long long)tok);
    if (rc) {
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return rc;
}

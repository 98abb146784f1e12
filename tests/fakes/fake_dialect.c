/* What the fake provider's dialects share: routing to a dialect, the generation plan (the same
 * answer in every dialect, so an end-to-end tool loop runs alike against each), and small
 * helpers for JSON bodies and SSE events. */
#include "fake.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_KEEP (SB_FAKE_ECHO_LIMIT + 64)

static const char reply_prefix[] = "Hello from the switchboard demo provider. You said: ";
static const char result_prefix[] = "The tool returned: ";

static bool ends_with(struct sb_fake_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n >= n && memcmp(s.p + s.n - n, lit, n) == 0;
}

static bool contains(struct sb_fake_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n >= n && memmem(s.p, s.n, lit, n) != NULL;
}

enum sb_fake_dialect sb_fake_dialect_of(struct sb_fake_str method, struct sb_fake_str path)
{
    while (path.n > 1 && path.p[path.n - 1] == '/')
        path.n--;
    /* Gemini's methods are "<model>:<verb>" in the last segment of a POST; OpenAI's model ids
     * may hold colons too (GET /v1/models/ft:gpt-4o:org:id), but are never POSTed to. */
    const char *last = path.p;
    for (size_t i = 0; i < path.n; i++) {
        if (path.p[i] == '/')
            last = path.p + i + 1;
    }
    bool post = method.n == 4 && memcmp(method.p, "POST", 4) == 0;
    if (ends_with(path, "/v1/messages") || ends_with(path, "/v1/messages/count_tokens"))
        return SB_FAKE_ANTHROPIC;
    if (post && contains(path, "/models/") && memchr(last, ':', (size_t)(path.p + path.n - last)))
        return SB_FAKE_GEMINI;
    if (contains(path, "/model/") &&
        (ends_with(path, "/converse") || ends_with(path, "/converse-stream") ||
         ends_with(path, "/invoke")))
        return SB_FAKE_BEDROCK;
    if (ends_with(path, "/v2/chat") || ends_with(path, "/v2/embed"))
        return SB_FAKE_COHERE;
    return SB_FAKE_OPENAI;
}

void sb_fake_dialect_handle(struct sb_fake_call *x, enum sb_fake_dialect dialect)
{
    switch (dialect) {
    case SB_FAKE_ANTHROPIC:
        if (sb_fake_anthropic_auth_failed(x))
            return;
        if (x->d.status)
            sb_fake_anthropic_status(x, x->d.status);
        else if (x->d.fixture[0])
            sb_fake_fixture_reply(x);
        else
            sb_fake_anthropic_route(x);
        break;
    case SB_FAKE_GEMINI:
        if (sb_fake_gemini_auth_failed(x))
            return;
        if (x->d.status)
            sb_fake_gemini_status(x, x->d.status);
        else if (x->d.fixture[0])
            sb_fake_fixture_reply(x);
        else
            sb_fake_gemini_route(x);
        break;
    case SB_FAKE_BEDROCK:
        if (sb_fake_bedrock_auth_failed(x))
            return;
        if (x->d.status)
            sb_fake_bedrock_status(x, x->d.status);
        else if (x->d.fixture[0])
            sb_fake_fixture_reply(x);
        else
            sb_fake_bedrock_route(x);
        break;
    case SB_FAKE_COHERE:
        if (sb_fake_cohere_auth_failed(x))
            return;
        if (x->d.status)
            sb_fake_cohere_status(x, x->d.status);
        else if (x->d.fixture[0])
            sb_fake_fixture_reply(x);
        else
            sb_fake_cohere_route(x);
        break;
    case SB_FAKE_OPENAI:
        break;
    }
}

/* ---- input and plan ---- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

uint64_t sb_fake_count_words(const char *s, size_t n)
{
    uint64_t words = 0;
    bool in_word = false;
    for (size_t i = 0; i < n; i++) {
        if (is_space(s[i])) {
            in_word = false;
        } else if (!in_word) {
            in_word = true;
            words++;
        }
    }
    return words;
}

size_t sb_fake_next_delta(const char *s, size_t n, size_t p)
{
    while (p < n && is_space(s[p]))
        p++;
    while (p < n && !is_space(s[p]))
        p++;
    size_t q = p;
    while (q < n && is_space(s[q]))
        q++;
    return q == n ? n : p;
}

static size_t utf8_prefix(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t k = max;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    return k;
}

void sb_fake_input_init(struct sb_fake_input *in)
{
    memset(in, 0, sizeof *in);
    sb_buf_init(&in->user_text, TEXT_KEEP + 1);
    sb_buf_init(&in->result_text, TEXT_KEEP + 1);
}

void sb_fake_input_free(struct sb_fake_input *in)
{
    sb_buf_free(&in->user_text);
    sb_buf_free(&in->result_text);
}

void sb_fake_keep_text(struct sb_buf *b, const char *s, size_t n)
{
    sb_buf_reset(b);
    sb_buf_append(b, s, utf8_prefix(s, n, SB_FAKE_ECHO_LIMIT));
}

uint64_t sb_fake_json_words(const json_t *v)
{
    uint64_t words = 0;
    if (json_is_object(v)) {
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m)
        {
            if (json_is_string(m) && (strcmp(k, "text") == 0 || strcmp(k, "content") == 0 ||
                                      strcmp(k, "inputText") == 0))
                words += sb_fake_count_words(json_string_value(m), json_string_length(m));
            else if (json_is_object(m) || json_is_array(m))
                words += sb_fake_json_words(m);
        }
    } else if (json_is_array(v)) {
        size_t i;
        json_t *m;
        json_array_foreach((json_t *)v, i, m)
        {
            if (json_is_string(m))
                words += sb_fake_count_words(json_string_value(m), json_string_length(m));
            else
                words += sb_fake_json_words(m);
        }
    }
    return words;
}

static void copy_name(char *dst, size_t cap, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

void sb_fake_input_tool(struct sb_fake_input *in, const char *name, const json_t *schema)
{
    copy_name(in->tool_name, sizeof in->tool_name, name);
    const char *first = NULL;
    json_t *props = json_object_get(schema, "properties");
    if (json_is_object(props)) {
        void *it = json_object_iter(props);
        if (it)
            first = json_object_iter_key(it);
    }
    copy_name(in->tool_arg, sizeof in->tool_arg, first ? first : "input");
}

void sb_fake_result_text(struct sb_fake_input *in, const json_t *content)
{
    sb_buf_reset(&in->result_text);
    if (json_is_string(content)) {
        sb_fake_keep_text(&in->result_text, json_string_value(content),
                          json_string_length(content));
        return;
    }
    /* Text parts joined by a space: [{"text"}], [{"type":"text","text"}]. */
    bool all_text = json_is_array(content) && json_array_size(content) > 0;
    size_t i;
    json_t *part;
    json_array_foreach((json_t *)content, i, part)
    {
        if (!json_is_string(json_object_get(part, "text")))
            all_text = false;
    }
    char *s = NULL;
    if (all_text) {
        struct sb_buf j;
        sb_buf_init(&j, TEXT_KEEP * 2);
        json_array_foreach((json_t *)content, i, part)
        {
            json_t *t = json_object_get(part, "text");
            if (j.len)
                sb_buf_append_char(&j, ' ');
            size_t n = json_string_length(t);
            sb_buf_append(&j, json_string_value(t), n > TEXT_KEEP ? TEXT_KEEP : n);
        }
        sb_fake_keep_text(&in->result_text, j.data ? j.data : "", j.len);
        sb_buf_free(&j);
        return;
    }
    s = json_dumps(content, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s) {
        sb_fake_keep_text(&in->result_text, s, strlen(s));
        free(s);
    }
}

int sb_fake_plan_make(const struct sb_fake_call *x, const struct sb_fake_input *in,
                      struct sb_fake_plan *p)
{
    memset(p, 0, sizeof *p);
    sb_buf_init(&p->text, SB_FAKE_MAX_BODY);
    sb_buf_init(&p->args, 64 * 1024);
    p->thinking = x->d.thinking;
    p->prompt_tokens = in->prompt_words ? in->prompt_words : 1;
    p->cached_tokens = (uint64_t)x->d.cached;
    p->thinking_tokens =
        p->thinking ? sb_fake_count_words(SB_FAKE_THINKING_TEXT, sizeof SB_FAKE_THINKING_TEXT - 1)
                    : 0;
    int rc = 0;
    if (in->tools_on && in->last_is_user_text && !in->last_is_result && in->tool_name[0]) {
        p->tool_call = true;
        copy_name(p->tool_name, sizeof p->tool_name, in->tool_name);
        json_t *args = json_object();
        json_t *v = json_stringn(in->user_text.data ? in->user_text.data : "", in->user_text.len);
        if (!args || !v || json_object_set_new(args, in->tool_arg[0] ? in->tool_arg : "input", v)) {
            json_decref(args);
            return -ENOMEM;
        }
        rc = sb_fake_put_json(&p->args, args);
        p->output_tokens = sb_fake_count_words(p->args.data, p->args.len);
    } else {
        if (in->last_is_result) {
            rc |= sb_buf_append_str(&p->text, result_prefix);
            rc |= sb_buf_append(&p->text, in->result_text.data ? in->result_text.data : "",
                                in->result_text.len);
        } else {
            rc |= sb_buf_append_str(&p->text, reply_prefix);
            rc |= sb_buf_append(&p->text, in->user_text.data ? in->user_text.data : "",
                                in->user_text.len);
        }
        if (in->stream && x->d.body_bytes > 0) {
            /* A long stream for backpressure tests, as in the OpenAI dialect. */
            while (!rc && p->text.len < (size_t)x->d.body_bytes) {
                rc |= sb_buf_reserve(&p->text, 8192);
                if (!rc) {
                    p->text.data[p->text.len] = ' ';
                    memset(p->text.data + p->text.len + 1, 'w', 8191);
                    p->text.len += 8192;
                    p->text.data[p->text.len] = '\0';
                }
            }
        }
        p->output_tokens = sb_fake_count_words(p->text.data, p->text.len);
    }
    if (p->output_tokens == 0)
        p->output_tokens = 1;
    return rc;
}

void sb_fake_plan_free(struct sb_fake_plan *p)
{
    sb_buf_free(&p->text);
    sb_buf_free(&p->args);
}

size_t sb_fake_args_piece(const struct sb_fake_plan *p, size_t pos)
{
    size_t n = p->args.len;
    size_t step = n / 3 ? n / 3 : 1;
    size_t e = pos + step;
    if (e >= n || n - e < step / 2)
        return n;
    while (e < n && ((unsigned char)p->args.data[e] & 0xC0) == 0x80)
        e++;
    return e;
}

/* ---- output helpers ---- */

int sb_fake_put_json(struct sb_buf *b, json_t *v)
{
    if (!v)
        return -ENOMEM;
    char *s = json_dumps(v, JSON_COMPACT);
    json_decref(v);
    if (!s)
        return -ENOMEM;
    int rc = sb_buf_append_str(b, s);
    free(s);
    return rc;
}

int sb_fake_sse(struct sb_fake_call *x, const char *name, json_t *data, const char *sep)
{
    struct sb_buf *b = &x->resp->body;
    int rc = 0;
    if (name)
        rc |= sb_buf_printf(b, "event: %s\n", name);
    rc |= sb_buf_append_str(b, "data: ");
    rc |= sb_fake_put_json(b, data);
    rc |= sb_buf_append_str(b, sep);
    return rc | sb_fake_resp_end_event(x->resp);
}

void sb_fake_plain(struct sb_fake_call *x, int status, const char *content_type, json_t *body,
                   bool pretty)
{
    struct sb_fake_resp *r = x->resp;
    sb_buf_reset(&r->body);
    r->nends = 0;
    r->chunked = false;
    r->status = status;
    r->content_type = content_type;
    char *s = body ? json_dumps(body, pretty ? JSON_INDENT(2) : JSON_COMPACT) : NULL;
    json_decref(body);
    if (!s || sb_buf_append_str(&r->body, s) != 0 ||
        (pretty && sb_buf_append_char(&r->body, '\n'))) {
        sb_buf_reset(&r->body);
        r->status = 500;
        sb_buf_append_str(&r->body, "{\"message\":\"fake-provider: response too large\"}");
    }
    free(s);
}

bool sb_fake_query(const struct sb_fake_call *x, const char *name, struct sb_fake_str *out)
{
    size_t n = strlen(name);
    const char *p = x->query.p, *end = x->query.p + x->query.n;
    while (p && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > n && memcmp(p, name, n) == 0 && p[n] == '=') {
            *out = (struct sb_fake_str){p + n + 1, (size_t)(e - p - n - 1)};
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

void sb_fake_error_message(const struct sb_fake_call *x, const char *msg, struct sb_buf *out)
{
    sb_buf_reset(out);
    if (x->d.echo_key && x->got_key.n)
        sb_buf_printf(out, "%s (api key: %.*s)", msg, (int)x->got_key.n, x->got_key.p);
    else
        sb_buf_append_str(out, msg);
}

/* The OpenAI dialect of the fake provider, its directives and its fault injection.
 *
 * Shapes follow the recorded fixtures in tests/data/fixtures/openai/: chunk framing, the
 * `"usage":null` field that only appears when stream_options.include_usage is set, and the
 * pretty-printed error envelopes the real API sends. */
#include "fake.h"

#include "core/hex.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_INPUTS   2048
#define DEFAULT_DIMS 8

static const char reply_prefix[] = "Hello from the switchboard demo provider. You said: ";
/* Byte for byte tests/data/fixtures/openai/error_in_stream.synthetic.sse. */
static const char stream_error_event[] =
    "data: {\"error\":{\"message\":\"The server had an error while processing your request. "
    "Sorry about that!\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";
static const char sse_type[] = "text/event-stream; charset=utf-8";

static atomic_uint_fast64_t id_counter;

/* ---- small helpers ---- */

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static uint64_t count_words(const char *s, size_t n)
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

static bool str_eq(struct sb_fake_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n == n && memcmp(s.p, lit, n) == 0;
}

static bool str_ends(struct sb_fake_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n >= n && memcmp(s.p + s.n - n, lit, n) == 0;
}

/* Cuts at most `max` bytes without splitting a UTF-8 sequence. */
static size_t utf8_prefix(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    size_t k = max;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80)
        k--;
    return k;
}

/* ---- error envelopes ---- */

static int append_nullable(struct sb_buf *b, const char *s)
{
    return s ? sb_buf_append_json_str(b, s, strlen(s)) : sb_buf_append_str(b, "null");
}

/* The real API pretty-prints its error bodies; so does the fake. With echo_key the message
 * carries the key the client sent, so a test can prove the gateway never passes it on. */
static void send_error(struct sb_fake_call *x, int status, const char *type, const char *message,
                       const char *param, const char *code)
{
    struct sb_fake_resp *r = x->resp;
    sb_buf_reset(&r->body);
    r->nends = 0;
    r->chunked = false;
    r->status = status;
    r->content_type = "application/json";
    struct sb_buf *b = &r->body;
    int rc = sb_buf_append_str(b, "{\n  \"error\": {\n    \"message\": ");
    if (x->d.echo_key && x->got_key.n && status != 401) {
        struct sb_buf m;
        sb_buf_init(&m, 64 * 1024);
        rc |= sb_buf_printf(&m, "%s (api key: %.*s)", message, (int)x->got_key.n, x->got_key.p);
        rc |= sb_buf_append_json_str(b, m.data ? m.data : "", m.len);
        sb_buf_free(&m);
    } else {
        rc |= sb_buf_append_json_str(b, message, strlen(message));
    }
    rc |= sb_buf_append_str(b, ",\n    \"type\": ");
    rc |= append_nullable(b, type);
    rc |= sb_buf_append_str(b, ",\n    \"param\": ");
    rc |= append_nullable(b, param);
    rc |= sb_buf_append_str(b, ",\n    \"code\": ");
    rc |= append_nullable(b, code);
    rc |= sb_buf_append_str(b, "\n  }\n}\n");
    if (rc) {
        sb_buf_reset(b);
        sb_buf_append_str(b, "{\"error\":{\"message\":\"fake-provider: error too large\"}}\n");
    }
}

void sb_fake_openai_error(struct sb_fake_call *x, int status, const char *type, const char *message,
                          const char *param, const char *code)
{
    send_error(x, status, type, message, param, code);
}

static void send_errorf(struct sb_fake_call *x, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void send_errorf(struct sb_fake_call *x, int status, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    send_error(x, status, "invalid_request_error", msg, NULL, NULL);
}

static void send_401(struct sb_fake_call *x)
{
    char msg[2048];
    if (!x->got_key.n) {
        send_error(x, 401, "invalid_request_error",
                   "You didn't provide an API key. You need to provide your API key in an "
                   "Authorization header using Bearer auth (i.e. Authorization: Bearer "
                   "YOUR_KEY), or as the password field (with blank username) if you're "
                   "accessing the API from your browser and are prompted for a username and "
                   "password. You can obtain an API key from "
                   "https://platform.openai.com/account/api-keys.",
                   NULL, NULL);
        return;
    }
    char shown[SB_FAKE_MAX_KEY + 1];
    size_t n = x->got_key.n > SB_FAKE_MAX_KEY ? SB_FAKE_MAX_KEY : x->got_key.n;
    memcpy(shown, x->got_key.p, n);
    shown[n] = '\0';
    if (!x->d.echo_key) {
        /* The real API keeps a prefix and the last four characters. */
        if (n <= 12) {
            memset(shown, '*', n);
        } else {
            size_t stars = n - 12 > 20 ? 20 : n - 12;
            memset(shown + 8, '*', stars);
            memmove(shown + 8 + stars, x->got_key.p + x->got_key.n - 4, 4);
            shown[8 + stars + 4] = '\0';
        }
    }
    snprintf(msg, sizeof msg,
             "Incorrect API key provided: %s. You can find your API key at "
             "https://platform.openai.com/account/api-keys.",
             shown);
    send_error(x, 401, "invalid_request_error", msg, NULL, "invalid_api_key");
}

/* status=<code>: the recorded envelope for that status where there is one. */
static void send_status(struct sb_fake_call *x, int status)
{
    const char *file = NULL;
    if (x->d.code[0]) { /* status=400,code=context_length_exceeded and the like */
        char msg[160];
        snprintf(msg, sizeof msg, "fake-provider: injected status %d (%s)", status, x->d.code);
        send_error(x, status, status >= 500 ? "server_error" : "invalid_request_error", msg, NULL,
                   x->d.code);
        return;
    }
    switch (status) {
    case 400:
        file = "error_400_unsupported_parameter.json";
        break;
    case 401:
        send_401(x);
        return;
    case 404:
        file = "error_404_model_not_found.json";
        break;
    case 429:
        file = "error_429_rate_limit_tokens.json";
        break;
    default:
        break;
    }
    if (file) {
        int err = 0;
        const struct sb_fake_fixture *fx = sb_fake_fixture_get(x->cfg->fixtures, file, &err);
        json_t *root = fx ? json_loadb(fx->data, fx->len, 0, NULL) : NULL;
        json_t *e = root ? json_object_get(root, "error") : NULL;
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (msg) {
            send_error(x, status, json_string_value(json_object_get(e, "type")), msg,
                       json_string_value(json_object_get(e, "param")),
                       json_string_value(json_object_get(e, "code")));
            json_decref(root);
            return;
        }
        json_decref(root);
    }
    switch (status) {
    case 500:
        send_error(x, status, "server_error",
                   "The server had an error while processing your request. Sorry about that!", NULL,
                   NULL);
        break;
    case 502:
        send_error(x, status, "server_error", "Bad gateway.", NULL, NULL);
        break;
    case 503:
        send_error(x, status, "server_error", "The server is overloaded or not ready yet.", NULL,
                   NULL);
        break;
    default: {
        char msg[128];
        snprintf(msg, sizeof msg, "fake-provider: injected status %d", status);
        send_error(x, status, status >= 500 ? "server_error" : "invalid_request_error", msg, NULL,
                   NULL);
        break;
    }
    }
}

/* ---- directives ---- */

static int parse_int(const char *v, int64_t min, int64_t max, int64_t *out)
{
    if (!*v)
        return -1;
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || x < min || x > max)
        return -1;
    *out = x;
    return 0;
}

static int apply_directive(struct sb_fake_directives *d, const char *name, const char *val,
                           char *err, size_t errlen)
{
    int64_t v = 0;
    int rc = 0;
    if (strcmp(name, "status") == 0) {
        rc = parse_int(val, 400, 599, &v);
        d->status = (int)v;
    } else if (strcmp(name, "retry_after") == 0) {
        rc = parse_int(val, 0, 86400, &d->retry_after);
    } else if (strcmp(name, "retry_after_ms") == 0) {
        rc = parse_int(val, 0, 86400000, &d->retry_after_ms);
    } else if (strcmp(name, "delay_ms") == 0) {
        rc = parse_int(val, 0, 3600000, &d->delay_ms);
    } else if (strcmp(name, "drip_ms") == 0) {
        rc = parse_int(val, 0, 600000, &d->drip_ms);
    } else if (strcmp(name, "cut_after") == 0) {
        rc = parse_int(val, 0, SB_FAKE_MAX_EVENTS, &d->cut_after);
    } else if (strcmp(name, "body_bytes") == 0) {
        rc = parse_int(val, 0, SB_FAKE_MAX_BODY, &d->body_bytes);
    } else if (strcmp(name, "cached") == 0) {
        rc = parse_int(val, 0, 1000000000, &d->cached);
    } else if (strcmp(name, "stream_error") == 0) {
        rc = parse_int(val, 0, 2, &v);
        d->stream_error = (int)v;
    } else if (strcmp(name, "fixture") == 0) {
        size_t n = strlen(val);
        rc = n == 0 || n >= sizeof d->fixture ? -1 : 0;
        if (!rc)
            memcpy(d->fixture, val, n + 1);
    } else if (strcmp(name, "code") == 0) {
        size_t n = strlen(val);
        rc = n == 0 || n >= sizeof d->code ? -1 : 0;
        if (!rc)
            memcpy(d->code, val, n + 1);
    } else if (strcmp(name, "key") == 0) {
        size_t n = strlen(val);
        rc = n == 0 || n > SB_FAKE_MAX_KEY ? -1 : 0;
        if (!rc) {
            memcpy(d->key, val, n + 1);
            d->has_key = true;
        }
    } else {
        bool *flag = NULL;
        if (strcmp(name, "split") == 0)
            flag = &d->split;
        else if (strcmp(name, "hang") == 0)
            flag = &d->hang;
        else if (strcmp(name, "malformed") == 0)
            flag = &d->malformed;
        else if (strcmp(name, "thinking") == 0)
            flag = &d->thinking;
        else if (strcmp(name, "gemini3") == 0)
            flag = &d->gemini3;
        else if (strcmp(name, "echo_key") == 0)
            flag = &d->echo_key;
        else if (strcmp(name, "close") == 0)
            flag = &d->close_conn;
        else if (strcmp(name, "drop") == 0)
            flag = &d->drop;
        if (!flag) {
            snprintf(err, errlen, "fake-provider: unknown directive '%.200s'", name);
            return -1;
        }
        rc = parse_int(val, 0, 1, &v);
        *flag = v == 1;
    }
    if (rc)
        snprintf(err, errlen, "fake-provider: bad value '%.200s' for directive '%.100s'", val,
                 name);
    return rc;
}

/* "name=value,name=value"; a bare name means "=1". Values from the path are %-decoded. */
static int parse_directives(struct sb_fake_directives *d, const char *s, size_t n, bool decode,
                            char *err, size_t errlen)
{
    size_t i = 0;
    while (i < n) {
        size_t start = i;
        while (i < n && s[i] != ',')
            i++;
        size_t end = i++;
        while (start < end && (s[start] == ' ' || s[start] == '\t'))
            start++;
        while (end > start && (s[end - 1] == ' ' || s[end - 1] == '\t'))
            end--;
        if (start == end)
            continue;
        char item[1024];
        size_t k = 0;
        if (end - start >= sizeof item) {
            snprintf(err, errlen, "fake-provider: directive too long");
            return -1;
        }
        for (size_t j = start; j < end; j++) {
            char c = s[j];
            if (decode && c == '%' && j + 2 < end && sb_hex_val(s[j + 1]) >= 0 &&
                sb_hex_val(s[j + 2]) >= 0) {
                c = (char)(sb_hex_val(s[j + 1]) * 16 + sb_hex_val(s[j + 2]));
                j += 2;
            }
            if (c == '\0') {
                snprintf(err, errlen, "fake-provider: NUL in a directive");
                return -1;
            }
            item[k++] = c;
        }
        item[k] = '\0';
        char *eq = strchr(item, '=');
        const char *val = "1";
        if (eq) {
            *eq = '\0';
            val = eq + 1;
        }
        if (apply_directive(d, item, val, err, errlen) != 0)
            return -1;
    }
    return 0;
}

/* ---- response building ---- */

static int add_event(struct sb_fake_call *x)
{
    return sb_fake_resp_end_event(x->resp);
}

static int append_chat_usage(struct sb_buf *b, uint64_t p, uint64_t c, uint64_t cached)
{
    return sb_buf_printf(
        b,
        "{\"prompt_tokens\":%" PRIu64 ",\"completion_tokens\":%" PRIu64 ",\"total_tokens\":%" PRIu64
        ",\"prompt_tokens_details\":{\"cached_tokens\":%" PRIu64 ",\"audio_tokens\":0},"
        "\"completion_tokens_details\":{\"reasoning_tokens\":0,"
        "\"audio_tokens\":0,\"accepted_prediction_tokens\":0,"
        "\"rejected_prediction_tokens\":0}}",
        p + cached, c, p + cached + c, cached);
}

static int append_plain_usage(struct sb_buf *b, uint64_t p, uint64_t c)
{
    return sb_buf_printf(b,
                         "{\"prompt_tokens\":%" PRIu64 ",\"completion_tokens\":%" PRIu64
                         ",\"total_tokens\":%" PRIu64 "}",
                         p, c, p + c);
}

/* The reply cut into word deltas: each delta is the whitespace before a word plus the word,
 * so the deltas concatenate back to the reply. Returns the end of the delta at `p`. */
static size_t next_delta(const char *s, size_t n, size_t p)
{
    while (p < n && is_space(s[p]))
        p++;
    while (p < n && !is_space(s[p]))
        p++;
    /* Trailing whitespace belongs to the last delta. */
    size_t q = p;
    while (q < n && is_space(s[q]))
        q++;
    return q == n ? n : p;
}

struct gen {
    const char *model;
    size_t model_len;
    const char *reply;
    size_t reply_len;
    uint64_t prompt_tokens;
    uint64_t completion_tokens;
    uint64_t cached;
    bool include_usage;
    const struct sb_fake_plan *tool; /* a tool call instead of text, when set */
};

static int chat_chunk_head(struct sb_fake_call *x, const struct gen *g)
{
    struct sb_buf *b = &x->resp->body;
    int rc =
        sb_buf_printf(b,
                      "data: {\"id\":\"chatcmpl-fake-%" PRIu64
                      "\",\"object\":\"chat.completion.chunk\",\"created\":%" PRId64 ",\"model\":",
                      x->id, x->created);
    rc |= sb_buf_append_json_str(b, g->model, g->model_len);
    rc |= sb_buf_append_str(b, ",\"service_tier\":\"default\",\"system_fingerprint\":null,"
                               "\"choices\":");
    return rc;
}

static int chat_chunk_tail(struct sb_fake_call *x, const struct gen *g)
{
    struct sb_buf *b = &x->resp->body;
    int rc = sb_buf_append_str(b, g->include_usage ? ",\"usage\":null}\n\n" : "}\n\n");
    return rc | add_event(x);
}

/* The events after the first content delta, when a fault says so. Returns 1 when the stream
 * must end there. */
static int stream_fault(struct sb_fake_call *x, size_t delta_index, int *rc)
{
    if (delta_index != 0)
        return 0;
    struct sb_buf *b = &x->resp->body;
    if (x->d.stream_error) {
        *rc |= sb_buf_append_str(b, stream_error_event);
        *rc |= add_event(x);
        return 1;
    }
    if (x->d.malformed) {
        *rc |= sb_buf_printf(b,
                             "data: {\"id\":\"chatcmpl-fake-%" PRIu64
                             "\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
                             "\"delta\":{\"content\":\"brok\n\n",
                             x->id);
        *rc |= add_event(x);
    }
    return 0;
}

static int chat_stream(struct sb_fake_call *x, const struct gen *g)
{
    struct sb_buf *b = &x->resp->body;
    int rc = chat_chunk_head(x, g);
    rc |= sb_buf_append_str(b, "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","
                               "\"refusal\":null},\"finish_reason\":null}]");
    rc |= chat_chunk_tail(x, g);
    size_t p = 0, k = 0;
    while (p < g->reply_len && !rc) {
        size_t e = next_delta(g->reply, g->reply_len, p);
        rc |= chat_chunk_head(x, g);
        rc |= sb_buf_append_str(b, "[{\"index\":0,\"delta\":{\"content\":");
        rc |= sb_buf_append_json_str(b, g->reply + p, e - p);
        rc |= sb_buf_append_str(b, "},\"finish_reason\":null}]");
        rc |= chat_chunk_tail(x, g);
        if (stream_fault(x, k++, &rc))
            return rc;
        p = e;
    }
    rc |= chat_chunk_head(x, g);
    rc |= sb_buf_append_str(b, "[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]");
    rc |= chat_chunk_tail(x, g);
    if (g->include_usage) {
        rc |= chat_chunk_head(x, g);
        rc |= sb_buf_append_str(b, "[],\"usage\":");
        rc |= append_chat_usage(b, g->prompt_tokens, g->completion_tokens, g->cached);
        rc |= sb_buf_append_str(b, "}\n\n");
        rc |= add_event(x);
    }
    rc |= sb_buf_append_str(b, "data: [DONE]\n\n");
    rc |= add_event(x);
    return rc;
}

static int chat_json(struct sb_fake_call *x, const struct gen *g, size_t pad)
{
    struct sb_buf *b = &x->resp->body;
    static const char filler[] = " lorem ipsum dolor sit amet consectetur adipiscing elit sed do";
    int rc = sb_buf_printf(b,
                           "{\"id\":\"chatcmpl-fake-%" PRIu64
                           "\",\"object\":\"chat.completion\",\"created\":%" PRId64 ",\"model\":",
                           x->id, x->created);
    rc |= sb_buf_append_json_str(b, g->model, g->model_len);
    rc |= sb_buf_append_str(b, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                               "\"content\":");
    uint64_t completion = g->completion_tokens;
    size_t content_start = b->len;
    rc |= sb_buf_append_json_str(b, g->reply, g->reply_len);
    if (pad && !rc) {
        b->len--; /* reopen the string literal: the filler needs no escaping */
        for (size_t done = 0; done < pad && !rc;) {
            size_t n = sizeof filler - 1;
            if (n > pad - done)
                n = pad - done;
            rc |= sb_buf_append(b, filler, n);
            done += n;
        }
        rc |= sb_buf_append_char(b, '"');
        completion = count_words(b->data + content_start, b->len - content_start);
    }
    rc |= sb_buf_append_str(b, ",\"refusal\":null,\"annotations\":[]},\"logprobs\":null,"
                               "\"finish_reason\":\"stop\"}],\"usage\":");
    rc |= append_chat_usage(b, g->prompt_tokens, completion, g->cached);
    rc |= sb_buf_append_str(b, ",\"service_tier\":\"default\",\"system_fingerprint\":null}");
    return rc;
}

/* The deterministic tool call (see fake_dialect.c), shaped like chat_stream_tool_call.sse. */
static int chat_tool_stream(struct sb_fake_call *x, const struct gen *g)
{
    struct sb_buf *b = &x->resp->body;
    const struct sb_fake_plan *p = g->tool;
    int rc = chat_chunk_head(x, g);
    rc |= sb_buf_printf(b,
                        "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,"
                        "\"tool_calls\":[{\"index\":0,\"id\":\"call_fake_%" PRIu64
                        "\",\"type\":\"function\",\"function\":{\"name\":",
                        x->id);
    rc |= sb_buf_append_json_str(b, p->tool_name, strlen(p->tool_name));
    rc |= sb_buf_append_str(b, ",\"arguments\":\"\"}}],\"refusal\":null},\"finish_reason\":null}]");
    rc |= chat_chunk_tail(x, g);
    size_t pos = 0, k = 0;
    while (pos < p->args.len && !rc) {
        size_t e = sb_fake_args_piece(p, pos);
        rc |= chat_chunk_head(x, g);
        rc |= sb_buf_append_str(b, "[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
                                   "\"function\":{\"arguments\":");
        rc |= sb_buf_append_json_str(b, p->args.data + pos, e - pos);
        rc |= sb_buf_append_str(b, "}}]},\"finish_reason\":null}]");
        rc |= chat_chunk_tail(x, g);
        if (stream_fault(x, k++, &rc))
            return rc;
        pos = e;
    }
    rc |= chat_chunk_head(x, g);
    rc |= sb_buf_append_str(b, "[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]");
    rc |= chat_chunk_tail(x, g);
    if (g->include_usage) {
        rc |= chat_chunk_head(x, g);
        rc |= sb_buf_append_str(b, "[],\"usage\":");
        rc |= append_chat_usage(b, g->prompt_tokens, g->completion_tokens, g->cached);
        rc |= sb_buf_append_str(b, "}\n\n");
        rc |= add_event(x);
    }
    rc |= sb_buf_append_str(b, "data: [DONE]\n\n");
    rc |= add_event(x);
    return rc;
}

static int chat_tool_json(struct sb_fake_call *x, const struct gen *g)
{
    struct sb_buf *b = &x->resp->body;
    const struct sb_fake_plan *p = g->tool;
    int rc = sb_buf_printf(b,
                           "{\"id\":\"chatcmpl-fake-%" PRIu64
                           "\",\"object\":\"chat.completion\",\"created\":%" PRId64 ",\"model\":",
                           x->id, x->created);
    rc |= sb_buf_append_json_str(b, g->model, g->model_len);
    rc |= sb_buf_printf(b,
                        ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
                        "\"content\":null,\"tool_calls\":[{\"id\":\"call_fake_%" PRIu64
                        "\",\"type\":\"function\",\"function\":{\"name\":",
                        x->id);
    rc |= sb_buf_append_json_str(b, p->tool_name, strlen(p->tool_name));
    rc |= sb_buf_append_str(b, ",\"arguments\":");
    rc |= sb_buf_append_json_str(b, p->args.data, p->args.len);
    rc |= sb_buf_append_str(b, "}}],\"refusal\":null,\"annotations\":[]},\"logprobs\":null,"
                               "\"finish_reason\":\"tool_calls\"}],\"usage\":");
    rc |= append_chat_usage(b, g->prompt_tokens, g->completion_tokens, g->cached);
    rc |= sb_buf_append_str(b, ",\"service_tier\":\"default\",\"system_fingerprint\":null}");
    return rc;
}

static int legacy_chunk(struct sb_fake_call *x, const struct gen *g, const char *text, size_t n,
                        const char *finish)
{
    struct sb_buf *b = &x->resp->body;
    int rc = sb_buf_printf(b,
                           "data: {\"id\":\"cmpl-fake-%" PRIu64
                           "\",\"object\":\"text_completion\",\"created\":%" PRId64
                           ",\"choices\":[{\"text\":",
                           x->id, x->created);
    rc |= sb_buf_append_json_str(b, text, n);
    rc |= sb_buf_printf(b,
                        ",\"index\":0,\"logprobs\":null,\"finish_reason\":%s}],\"model\":", finish);
    rc |= sb_buf_append_json_str(b, g->model, g->model_len);
    rc |= sb_buf_append_str(b, g->include_usage ? ",\"usage\":null}\n\n" : "}\n\n");
    return rc | add_event(x);
}

static int legacy_stream(struct sb_fake_call *x, const struct gen *g)
{
    struct sb_buf *b = &x->resp->body;
    int rc = 0;
    size_t p = 0, k = 0;
    while (p < g->reply_len && !rc) {
        size_t e = next_delta(g->reply, g->reply_len, p);
        rc |= legacy_chunk(x, g, g->reply + p, e - p, "null");
        if (stream_fault(x, k++, &rc))
            return rc;
        p = e;
    }
    rc |= legacy_chunk(x, g, "", 0, "\"stop\"");
    if (g->include_usage) {
        rc |= sb_buf_printf(b,
                            "data: {\"id\":\"cmpl-fake-%" PRIu64
                            "\",\"object\":\"text_completion\",\"created\":%" PRId64 ",\"model\":",
                            x->id, x->created);
        rc |= sb_buf_append_json_str(b, g->model, g->model_len);
        rc |= sb_buf_append_str(b, ",\"usage\":");
        rc |= append_plain_usage(b, g->prompt_tokens, g->completion_tokens);
        rc |= sb_buf_append_str(b, ",\"choices\":[]}\n\n");
        rc |= add_event(x);
    }
    rc |= sb_buf_append_str(b, "data: [DONE]\n\n");
    rc |= add_event(x);
    return rc;
}

static int legacy_json(struct sb_fake_call *x, const struct gen *g)
{
    struct sb_buf *b = &x->resp->body;
    int rc = sb_buf_printf(b,
                           "{\"id\":\"cmpl-fake-%" PRIu64
                           "\",\"object\":\"text_completion\",\"created\":%" PRId64 ",\"model\":",
                           x->id, x->created);
    rc |= sb_buf_append_json_str(b, g->model, g->model_len);
    rc |= sb_buf_append_str(b, ",\"choices\":[{\"text\":");
    rc |= sb_buf_append_json_str(b, g->reply, g->reply_len);
    rc |= sb_buf_append_str(b, ",\"index\":0,\"logprobs\":null,\"finish_reason\":\"stop\"}],"
                               "\"usage\":");
    rc |= append_plain_usage(b, g->prompt_tokens, g->completion_tokens);
    rc |= sb_buf_append_char(b, '}');
    return rc;
}

/* malformed=1 on a plain body: the first half of the real one is never valid JSON. */
static void break_json(struct sb_fake_call *x)
{
    struct sb_buf *b = &x->resp->body;
    if (b->len > 1) {
        b->len /= 2;
        b->data[b->len] = '\0';
    }
}

/* ---- endpoints ---- */

static bool parse_body(struct sb_fake_call *x, json_t **out)
{
    json_error_t jerr;
    json_t *root =
        json_loadb(x->req->body ? x->req->body : "", x->req->body_len, JSON_ALLOW_NUL, &jerr);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        send_error(x, 400, "invalid_request_error",
                   "We could not parse the JSON body of your request. (HINT: This likely means "
                   "you aren't using your HTTP library correctly. The OpenAI API expects a JSON "
                   "payload, but what was sent was not valid JSON. If you have trouble figuring "
                   "out how to fix this, please contact us through our help center at "
                   "help.openai.com.)",
                   NULL, NULL);
        return false;
    }
    *out = root;
    return true;
}

static bool get_model(struct sb_fake_call *x, json_t *root, struct gen *g)
{
    json_t *m = json_object_get(root, "model");
    if (json_is_string(m)) {
        g->model = json_string_value(m);
        g->model_len = json_string_length(m);
        return true;
    }
    if (x->deployment.n) {
        g->model = x->deployment.p;
        g->model_len = x->deployment.n;
        return true;
    }
    send_error(x, 400, "invalid_request_error", "you must provide a model parameter", NULL, NULL);
    return false;
}

/* Words of one message's content: a string, or an array of parts with "text". With `joined`
 * the text is kept in `text`: borrowed from the tree for a string, the parts joined by a
 * space (the first SB_FAKE_ECHO_LIMIT bytes are all the reply needs) for an array. */
static uint64_t content_words(json_t *content, struct sb_buf *joined, struct sb_fake_str *text)
{
    uint64_t words = 0;
    if (json_is_string(content)) {
        const char *s = json_string_value(content);
        size_t n = json_string_length(content);
        if (joined)
            *text = (struct sb_fake_str){s, n};
        return count_words(s, n);
    }
    if (joined)
        sb_buf_reset(joined);
    size_t i;
    json_t *part;
    json_array_foreach(content, i, part)
    {
        json_t *t = json_object_get(part, "text");
        if (!json_is_string(t))
            continue;
        const char *s = json_string_value(t);
        size_t n = json_string_length(t);
        words += count_words(s, n);
        if (joined && joined->len <= SB_FAKE_ECHO_LIMIT) {
            if (joined->len)
                sb_buf_append_char(joined, ' ');
            sb_buf_append(joined, s, n > SB_FAKE_ECHO_LIMIT + 8 ? SB_FAKE_ECHO_LIMIT + 8 : n);
        }
    }
    if (joined)
        *text = (struct sb_fake_str){joined->data ? joined->data : "", joined->len};
    return words;
}

/* What the tool part of the generation needs from a chat request: the declared tools, the
 * tool choice, and whether the last message is a user text or a tool result. */
static void chat_tools(json_t *root, json_t *last, struct sb_fake_str said,
                       struct sb_fake_input *in)
{
    const char *role = json_string_value(json_object_get(last, "role"));
    if (role && strcmp(role, "tool") == 0) {
        in->last_is_result = true;
        sb_fake_result_text(in, json_object_get(last, "content"));
    } else if (role && strcmp(role, "user") == 0 && said.n) {
        in->last_is_user_text = true;
        sb_fake_keep_text(&in->user_text, said.p, said.n);
    }
    json_t *tools = json_object_get(root, "tools");
    json_t *choice = json_object_get(root, "tool_choice");
    if (json_array_size(tools) == 0 ||
        (json_is_string(choice) && strcmp(json_string_value(choice), "none") == 0))
        return;
    const char *want =
        json_string_value(json_object_get(json_object_get(choice, "function"), "name"));
    json_t *pick = NULL;
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        json_t *fn = json_object_get(t, "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (name && (!pick || (want && strcmp(want, name) == 0)))
            pick = fn;
    }
    if (pick) {
        in->tools_on = true;
        sb_fake_input_tool(in, json_string_value(json_object_get(pick, "name")),
                           json_object_get(pick, "parameters"));
    }
}

static void handle_generate(struct sb_fake_call *x, bool legacy)
{
    json_t *root = NULL;
    if (!parse_body(x, &root))
        return;
    struct gen g = {0};
    struct sb_fake_str said = {"", 0};
    struct sb_buf reply, joined;
    sb_buf_init(&reply, SB_FAKE_MAX_BODY);
    sb_buf_init(&joined, 1024);
    struct sb_fake_input in;
    struct sb_fake_plan plan;
    sb_fake_input_init(&in);
    memset(&plan, 0, sizeof plan);
    int rc = 0;
    if (!get_model(x, root, &g))
        goto out;
    if (legacy) {
        json_t *prompt = json_object_get(root, "prompt");
        if (json_is_string(prompt)) {
            said = (struct sb_fake_str){json_string_value(prompt), json_string_length(prompt)};
            g.prompt_tokens = count_words(said.p, said.n);
        } else if (json_is_array(prompt)) {
            size_t i;
            json_t *v;
            json_array_foreach(prompt, i, v)
            {
                if (json_is_string(v)) {
                    said = (struct sb_fake_str){json_string_value(v), json_string_length(v)};
                    g.prompt_tokens += count_words(said.p, said.n);
                } else if (json_is_array(v)) {
                    g.prompt_tokens += json_array_size(v);
                } else {
                    g.prompt_tokens++;
                }
            }
        } else {
            send_errorf(x, 400, "you must provide a prompt parameter");
            goto out;
        }
    } else {
        json_t *msgs = json_object_get(root, "messages");
        if (!json_is_array(msgs)) {
            send_error(x, 400, "invalid_request_error", "Missing required parameter: 'messages'.",
                       "messages", "missing_required_parameter");
            goto out;
        }
        if (json_array_size(msgs) == 0) {
            send_error(x, 400, "invalid_request_error",
                       "Invalid 'messages': empty array. Expected an array with minimum length "
                       "1, but got an empty array instead.",
                       "messages", "empty_array");
            goto out;
        }
        size_t i;
        json_t *msg;
        json_array_foreach(msgs, i, msg)
        {
            const char *role = json_string_value(json_object_get(msg, "role"));
            bool user = role && strcmp(role, "user") == 0;
            g.prompt_tokens +=
                content_words(json_object_get(msg, "content"), user ? &joined : NULL, &said);
        }
        chat_tools(root, json_array_get(msgs, json_array_size(msgs) - 1), said, &in);
    }
    if (g.prompt_tokens == 0)
        g.prompt_tokens = 1;
    json_t *so = json_object_get(root, "stream_options");
    g.include_usage = json_is_true(json_object_get(so, "include_usage"));
    bool stream = json_is_true(json_object_get(root, "stream"));

    g.cached = legacy ? 0 : (uint64_t)x->d.cached;
    if (!legacy && (in.tools_on || in.last_is_result)) {
        in.prompt_words = g.prompt_tokens;
        rc |= sb_fake_plan_make(x, &in, &plan);
        if (plan.tool_call) {
            g.tool = &plan;
            g.completion_tokens = plan.output_tokens;
            x->resp->chunked = stream;
            x->resp->content_type = stream ? sse_type : "application/json";
            rc |= stream ? chat_tool_stream(x, &g) : chat_tool_json(x, &g);
            if (rc)
                send_error(x, 500, "server_error", "fake-provider: response too large", NULL, NULL);
            else if (x->d.malformed && !stream)
                break_json(x);
            goto out;
        }
    }
    if (!legacy && in.last_is_result) {
        rc |= sb_buf_append(&reply, plan.text.data, plan.text.len);
    } else {
        rc |= sb_buf_append_str(&reply, reply_prefix);
        rc |= sb_buf_append(&reply, said.p, utf8_prefix(said.p, said.n, SB_FAKE_ECHO_LIMIT));
    }
    if (stream && x->d.body_bytes > 0) {
        /* A long stream for backpressure tests: words of a space and 8191 'w', one event
         * each. Built in place: nothing shared between the worker threads. */
        while (!rc && reply.len < (size_t)x->d.body_bytes) {
            rc |= sb_buf_reserve(&reply, 8192);
            if (!rc) {
                reply.data[reply.len] = ' ';
                memset(reply.data + reply.len + 1, 'w', 8191);
                reply.len += 8192;
                reply.data[reply.len] = '\0';
            }
        }
    }
    g.reply = reply.data;
    g.reply_len = reply.len;
    g.completion_tokens = count_words(g.reply, g.reply_len);

    if (stream) {
        x->resp->chunked = true;
        x->resp->content_type = sse_type;
        rc |= legacy ? legacy_stream(x, &g) : chat_stream(x, &g);
    } else if (legacy) {
        rc |= legacy_json(x, &g);
    } else {
        rc |= chat_json(x, &g, 0);
        if (!rc && x->d.body_bytes > 0 && (size_t)x->d.body_bytes > x->resp->body.len) {
            size_t pad = (size_t)x->d.body_bytes - x->resp->body.len;
            sb_buf_reset(&x->resp->body);
            rc |= chat_json(x, &g, pad);
        }
    }
    if (rc)
        send_error(x, 500, "server_error", "fake-provider: response too large", NULL, NULL);
    else if (x->d.malformed && !stream)
        break_json(x);
out:
    sb_fake_plan_free(&plan);
    sb_fake_input_free(&in);
    sb_buf_free(&reply);
    sb_buf_free(&joined);
    json_decref(root);
}

uint64_t sb_fake_hash(uint64_t h, const void *p, size_t n)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int append_base64(struct sb_buf *b, const unsigned char *p, size_t n)
{
    int rc = sb_buf_reserve(b, (n + 2) / 3 * 4);
    for (size_t i = 0; i < n && !rc; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            v |= p[i + 2];
        char out[4] = {b64[(v >> 18) & 63], b64[(v >> 12) & 63],
                       i + 1 < n ? b64[(v >> 6) & 63] : '=', i + 2 < n ? b64[v & 63] : '='};
        rc |= sb_buf_append(b, out, 4);
    }
    return rc;
}

/* A unit vector drawn from a generator seeded by the input, so equal inputs embed equally. */
int sb_fake_embedding_append(struct sb_buf *b, uint64_t seed, int dims, bool base64)
{
    float v[SB_FAKE_MAX_DIMENSIONS];
    double norm = 0;
    uint64_t s = seed ? seed : 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < dims; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        uint64_t r = s * 0x2545F4914F6CDD1DULL;
        v[i] = (float)((double)(r >> 11) / (double)(1ULL << 53) * 2.0 - 1.0);
        norm += (double)v[i] * v[i];
    }
    norm = sqrt(norm);
    for (int i = 0; i < dims; i++)
        v[i] = norm > 0 ? (float)(v[i] / norm) : 0.0f;
    int rc = 0;
    if (base64) {
        unsigned char bytes[SB_FAKE_MAX_DIMENSIONS * 4];
        for (int i = 0; i < dims; i++) {
            uint32_t u;
            memcpy(&u, &v[i], 4);
            bytes[i * 4] = (unsigned char)u;
            bytes[i * 4 + 1] = (unsigned char)(u >> 8);
            bytes[i * 4 + 2] = (unsigned char)(u >> 16);
            bytes[i * 4 + 3] = (unsigned char)(u >> 24);
        }
        rc |= sb_buf_append_char(b, '"');
        rc |= append_base64(b, bytes, (size_t)dims * 4);
        rc |= sb_buf_append_char(b, '"');
    } else {
        rc |= sb_buf_append_char(b, '[');
        for (int i = 0; i < dims && !rc; i++)
            rc |= sb_buf_printf(b, i ? ",%.8g" : "%.8g", (double)v[i]);
        rc |= sb_buf_append_char(b, ']');
    }
    return rc;
}

static uint64_t token_seed(json_t *arr, uint64_t *tokens)
{
    uint64_t h = SB_FAKE_HASH_SEED;
    size_t i;
    json_t *t;
    json_array_foreach(arr, i, t)
    {
        json_int_t v = json_integer_value(t);
        h = sb_fake_hash(h, &v, sizeof v);
        (*tokens)++;
    }
    return h;
}

static void handle_embeddings(struct sb_fake_call *x)
{
    json_t *root = NULL;
    if (!parse_body(x, &root))
        return;
    struct gen g = {0};
    if (!get_model(x, root, &g)) {
        json_decref(root);
        return;
    }
    int dims = DEFAULT_DIMS;
    json_t *jd = json_object_get(root, "dimensions");
    if (jd && !json_is_null(jd)) {
        json_int_t d = json_integer_value(jd);
        if (!json_is_integer(jd) || d < 1) {
            send_errorf(x, 400,
                        "%" JSON_INTEGER_FORMAT " is less than the minimum of 1 - "
                        "'dimensions'",
                        d);
        } else if (d > SB_FAKE_MAX_DIMENSIONS) {
            send_errorf(x, 400,
                        "%" JSON_INTEGER_FORMAT " is greater than the maximum of %d - "
                        "'dimensions'",
                        d, SB_FAKE_MAX_DIMENSIONS);
        } else {
            dims = (int)d;
        }
        if (x->resp->status != 200) {
            json_decref(root);
            return;
        }
    }
    bool base64 = false;
    json_t *jf = json_object_get(root, "encoding_format");
    if (jf && !json_is_null(jf)) {
        const char *f = json_string_value(jf);
        if (f && strcmp(f, "base64") == 0) {
            base64 = true;
        } else if (!f || strcmp(f, "float") != 0) {
            send_errorf(x, 400, "'%s' is not one of ['float', 'base64'] - 'encoding_format'",
                        f ? f : "?");
            json_decref(root);
            return;
        }
    }
    /* One seed per input: a string, a token array, or an array of either. */
    uint64_t seeds[MAX_INPUTS];
    size_t n = 0;
    uint64_t tokens = 0;
    json_t *in = json_object_get(root, "input");
    bool ok = true;
    if (json_is_string(in) && json_string_length(in) > 0) {
        seeds[n++] = sb_fake_hash(SB_FAKE_HASH_SEED, json_string_value(in), json_string_length(in));
        tokens += count_words(json_string_value(in), json_string_length(in));
    } else if (json_is_array(in) && json_array_size(in) > 0 && json_array_size(in) <= MAX_INPUTS) {
        if (json_is_integer(json_array_get(in, 0))) {
            seeds[n++] = token_seed(in, &tokens);
        } else {
            size_t i;
            json_t *v;
            json_array_foreach(in, i, v)
            {
                if (json_is_string(v) && json_string_length(v) > 0) {
                    seeds[n++] = sb_fake_hash(SB_FAKE_HASH_SEED, json_string_value(v),
                                              json_string_length(v));
                    tokens += count_words(json_string_value(v), json_string_length(v));
                } else if (json_is_array(v) && json_array_size(v) > 0) {
                    seeds[n++] = token_seed(v, &tokens);
                } else {
                    ok = false;
                    break;
                }
            }
        }
    } else {
        ok = false;
    }
    if (!ok) {
        send_error(x, 400, "invalid_request_error",
                   "'$.input' is invalid. Please check the API reference: "
                   "https://platform.openai.com/docs/api-reference.",
                   NULL, NULL);
        json_decref(root);
        return;
    }
    if (tokens == 0)
        tokens = 1;
    struct sb_buf *b = &x->resp->body;
    int rc = sb_buf_append_str(b, "{\"object\":\"list\",\"data\":[");
    for (size_t i = 0; i < n && !rc; i++) {
        rc |= sb_buf_printf(
            b, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i);
        rc |= sb_fake_embedding_append(b, seeds[i], dims, base64);
        rc |= sb_buf_append_char(b, '}');
    }
    rc |= sb_buf_append_str(b, "],\"model\":");
    rc |= sb_buf_append_json_str(b, g.model, g.model_len);
    rc |=
        sb_buf_printf(b, ",\"usage\":{\"prompt_tokens\":%" PRIu64 ",\"total_tokens\":%" PRIu64 "}}",
                      tokens, tokens);
    json_decref(root);
    if (rc)
        send_error(x, 500, "server_error", "fake-provider: response too large", NULL, NULL);
    else if (x->d.malformed)
        break_json(x);
}

static const char *const models[] = {"gpt-4o-mini", "gpt-4o", "gpt-5-nano",
                                     "text-embedding-3-small", "gpt-3.5-turbo-instruct"};

static void handle_models(struct sb_fake_call *x, struct sb_fake_str one)
{
    struct sb_buf *b = &x->resp->body;
    int rc = 0;
    if (one.n) {
        rc |= sb_buf_append_str(b, "{\"id\":");
        rc |= sb_buf_append_json_str(b, one.p, one.n);
        rc |= sb_buf_append_str(b, ",\"object\":\"model\",\"created\":1700000000,"
                                   "\"owned_by\":\"system\"}");
    } else {
        rc |= sb_buf_append_str(b, "{\"object\":\"list\",\"data\":[");
        for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
            rc |= sb_buf_printf(b,
                                "%s{\"id\":\"%s\",\"object\":\"model\",\"created\":%zu,"
                                "\"owned_by\":\"system\"}",
                                i ? "," : "", models[i], (size_t)1700000000 + i);
        rc |= sb_buf_append_str(b, "]}");
    }
    if (rc)
        send_error(x, 500, "server_error", "fake-provider: response too large", NULL, NULL);
    else if (x->d.malformed)
        break_json(x);
}

void sb_fake_fixture_reply(struct sb_fake_call *x)
{
    int err = 0;
    const struct sb_fake_fixture *fx = sb_fake_fixture_get(x->cfg->fixtures, x->d.fixture, &err);
    if (!fx) {
        send_errorf(x, 400, "fake-provider: cannot load fixture '%s' from %s: %s", x->d.fixture,
                    x->cfg->fixtures, strerror(-err));
        return;
    }
    struct sb_fake_resp *r = x->resp;
    r->status = fx->status;
    r->content_type = fx->content_type;
    int rc = sb_buf_append(&r->body, fx->data, fx->len);
    if (fx->ends) {
        r->chunked = true;
        for (size_t i = 0; i < fx->nends && !rc; i++) {
            r->body.len = fx->ends[i];
            rc |= add_event(x);
        }
        r->body.len = fx->len;
    }
    if (rc)
        send_error(x, 500, "server_error", "fake-provider: fixture too large", NULL, NULL);
}

static void handle_internal(struct sb_fake_call *x)
{
    struct sb_fake_resp *r = x->resp;
    const struct sb_fake_req *req = x->req;
    if (str_eq(x->path, "/_fake/health")) {
        r->content_type = "text/plain";
        sb_buf_append_str(&r->body, "ok");
    } else if (str_eq(x->path, "/_fake/requests") && str_eq(req->method, "GET")) {
        if (sb_fake_record_dump(&r->body) != 0)
            send_error(x, 500, "server_error", "fake-provider: recording too large", NULL, NULL);
    } else if (str_eq(x->path, "/_fake/requests") && str_eq(req->method, "DELETE")) {
        sb_fake_record_clear();
        sb_buf_append_str(&r->body, "{\"cleared\":true}");
    } else {
        send_errorf(x, 404, "fake-provider: no such control endpoint %.*s", (int)x->path.n,
                    x->path.p);
    }
}

static void find_key(struct sb_fake_call *x)
{
    const struct sb_fake_str *auth = sb_fake_http_header(x->req, "authorization");
    if (auth && auth->n > 7 && strncasecmp(auth->p, "bearer ", 7) == 0) {
        x->got_key = (struct sb_fake_str){auth->p + 7, auth->n - 7};
        return;
    }
    const struct sb_fake_str *ak = sb_fake_http_header(x->req, "api-key");
    if (ak)
        x->got_key = *ak;
}

static bool key_ok(struct sb_fake_call *x)
{
    size_t n = strlen(x->d.key);
    const struct sb_fake_str *auth = sb_fake_http_header(x->req, "authorization");
    if (auth && auth->n == n + 7 && strncasecmp(auth->p, "bearer ", 7) == 0 &&
        memcmp(auth->p + 7, x->d.key, n) == 0)
        return true;
    const struct sb_fake_str *ak = sb_fake_http_header(x->req, "api-key");
    return ak && ak->n == n && memcmp(ak->p, x->d.key, n) == 0;
}

static void find_deployment(struct sb_fake_call *x)
{
    static const char marker[] = "/openai/deployments/";
    const char *p = x->path.p;
    size_t n = x->path.n, m = sizeof marker - 1;
    for (size_t i = 0; i + m <= n; i++) {
        if (memcmp(p + i, marker, m) != 0)
            continue;
        size_t s = i + m, e = s;
        while (e < n && p[e] != '/')
            e++;
        x->deployment = (struct sb_fake_str){p + s, e - s};
        return;
    }
}

static void route(struct sb_fake_call *x)
{
    const struct sb_fake_req *req = x->req;
    bool post = str_eq(req->method, "POST");
    bool get = str_eq(req->method, "GET");
    struct sb_fake_str p = x->path;
    while (p.n > 1 && p.p[p.n - 1] == '/')
        p.n--;
    if (x->d.fixture[0]) {
        sb_fake_fixture_reply(x);
    } else if (post && str_ends(p, "/chat/completions")) {
        handle_generate(x, false);
    } else if (post && str_ends(p, "/completions")) {
        handle_generate(x, true);
    } else if (post && str_ends(p, "/embeddings")) {
        handle_embeddings(x);
    } else if (get && str_ends(p, "/models")) {
        handle_models(x, (struct sb_fake_str){NULL, 0});
    } else if (get && p.n > 8 && memmem(p.p, p.n, "/models/", 8)) {
        const char *s = (const char *)memmem(p.p, p.n, "/models/", 8) + 8;
        handle_models(x, (struct sb_fake_str){s, (size_t)(p.p + p.n - s)});
    } else {
        send_errorf(x, 404, "Invalid URL (%.*s %.*s)", (int)req->method.n, req->method.p,
                    (int)x->path.n, x->path.p);
    }
}

void sb_fake_openai_handle(const struct sb_fake_config *cfg, const struct sb_fake_req *req,
                           struct sb_fake_resp *resp)
{
    struct sb_fake_call x;
    memset(&x, 0, sizeof x);
    x.cfg = cfg;
    x.req = req;
    x.resp = resp;
    x.d.retry_after = -1;
    x.d.retry_after_ms = -1;
    x.d.cut_after = -1;

    const char *q = memchr(req->target.p, '?', req->target.n);
    x.path = (struct sb_fake_str){req->target.p, q ? (size_t)(q - req->target.p) : req->target.n};
    if (q)
        x.query = (struct sb_fake_str){q + 1, (size_t)(req->target.p + req->target.n - q - 1)};
    if (x.path.n >= 7 && memcmp(x.path.p, "/_fake/", 7) == 0) {
        handle_internal(&x);
        return;
    }
    sb_fake_record_add(req);
    x.id = atomic_fetch_add_explicit(&id_counter, 1, memory_order_relaxed) + 1;
    x.created = (int64_t)time(NULL);
    find_key(&x);

    char err[512];
    const struct sb_fake_str *hd = sb_fake_http_header(req, "x-fake-directives");
    if (hd && parse_directives(&x.d, hd->p, hd->n, false, err, sizeof err) != 0) {
        send_error(&x, 400, "invalid_request_error", err, NULL, "unknown_directive");
        return;
    }
    while (x.path.n >= 4 && memcmp(x.path.p, "/_f/", 4) == 0) {
        const char *s = x.path.p + 4;
        const char *end = x.path.p + x.path.n;
        const char *slash = memchr(s, '/', (size_t)(end - s));
        const char *seg_end = slash ? slash : end;
        if (parse_directives(&x.d, s, (size_t)(seg_end - s), true, err, sizeof err) != 0) {
            send_error(&x, 400, "invalid_request_error", err, NULL, "unknown_directive");
            return;
        }
        x.path = slash ? (struct sb_fake_str){slash, (size_t)(end - slash)}
                       : (struct sb_fake_str){"/", 1};
    }
    find_deployment(&x);

    resp->delay_ms = x.d.delay_ms;
    resp->drip_ms = x.d.drip_ms;
    resp->drop = x.d.drop;
    if (x.d.close_conn)
        resp->close = true;
    resp->cut_after = x.d.cut_after;
    resp->split = x.d.split;
    if (x.d.hang) {
        resp->hang = true;
        return;
    }
    int rc = sb_buf_printf(&resp->headers, "x-request-id: req_fake_%" PRIu64 "\r\n", x.id);
    if (x.d.retry_after >= 0)
        rc |= sb_buf_printf(&resp->headers, "retry-after: %" PRId64 "\r\n", x.d.retry_after);
    if (x.d.retry_after_ms >= 0)
        rc |= sb_buf_printf(&resp->headers, "retry-after-ms: %" PRId64 "\r\n", x.d.retry_after_ms);
    (void)rc; /* the header buffer holds far more than these lines */

    enum sb_fake_dialect dialect = sb_fake_dialect_of(req->method, x.path);
    if (dialect != SB_FAKE_OPENAI) {
        sb_fake_dialect_handle(&x, dialect);
        return;
    }
    if (x.d.has_key && !key_ok(&x))
        send_401(&x);
    else if (x.d.status)
        send_status(&x, x.d.status);
    else
        route(&x);
}

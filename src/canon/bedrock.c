/* Bedrock Converse / ConverseStream (docs/translation/bedrock.md), and Titan text
 * embeddings through InvokeModel. */
#include "canon/bedrock.h"

#include "canon/codecs.h"
#include "canon/eventstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DIALECT "bedrock"

/* ------------------------------------------------------------------ errors */

static const struct {
    const char *name;
    int status;
    enum sb_err_kind kind;
} amzn_errors[] = {
    {"ValidationException", 400, SB_ERRK_INVALID_REQUEST},
    {"ConflictException", 409, SB_ERRK_INVALID_REQUEST},
    {"AccessDeniedException", 403, SB_ERRK_PERMISSION},
    {"UnrecognizedClientException", 403, SB_ERRK_AUTH},
    {"InvalidSignatureException", 403, SB_ERRK_AUTH},
    {"IncompleteSignatureException", 403, SB_ERRK_AUTH},
    {"MissingAuthenticationTokenException", 403, SB_ERRK_AUTH},
    {"ExpiredTokenException", 403, SB_ERRK_AUTH},
    {"ResourceNotFoundException", 404, SB_ERRK_NOT_FOUND},
    {"ModelTimeoutException", 408, SB_ERRK_TIMEOUT},
    {"ModelErrorException", 424, SB_ERRK_SERVER},
    {"ModelStreamErrorException", 424, SB_ERRK_SERVER},
    {"ThrottlingException", 429, SB_ERRK_RATE_LIMIT},
    {"TooManyRequestsException", 429, SB_ERRK_RATE_LIMIT},
    {"ServiceQuotaExceededException", 400, SB_ERRK_RATE_LIMIT},
    {"ModelNotReadyException", 429, SB_ERRK_OVERLOADED},
    {"InternalServerException", 500, SB_ERRK_SERVER},
    {"ServiceUnavailableException", 503, SB_ERRK_OVERLOADED},
};

static bool has_word(const char *s, const char *w)
{
    return strcasestr(s, w) != NULL;
}

/* Bedrock's wording when the prompt does not fit: "Input is too long for requested model",
 * "too many input tokens", "prompt is too long", "exceeds the context window". */
static bool context_wording(const char *m)
{
    return has_word(m, "too long") || has_word(m, "too many tokens") ||
           has_word(m, "too many input tokens") || has_word(m, "context window") ||
           has_word(m, "context length") || has_word(m, "maximum context");
}

static int find_error(const char *name, size_t n)
{
    for (size_t i = 0; i < sizeof amzn_errors / sizeof amzn_errors[0]; i++)
        if (strlen(amzn_errors[i].name) == n && strncasecmp(amzn_errors[i].name, name, n) == 0)
            return (int)i;
    return -1;
}

void sb_bedrock_error_type(struct sb_canon_error *e, const char *amzn_error_type)
{
    if (!e || !amzn_error_type)
        return;
    const char *s = amzn_error_type;
    while (*s == ' ')
        s++;
    size_t n = strcspn(s, ":");
    while (n && s[n - 1] == ' ')
        n--;
    if (n >= sizeof e->type)
        n = sizeof e->type - 1;
    memcpy(e->type, s, n);
    e->type[n] = '\0';
    int i = find_error(s, n);
    if (i < 0)
        return;
    e->kind = amzn_errors[i].kind;
    if (e->kind == SB_ERRK_INVALID_REQUEST && context_wording(e->message))
        e->kind = SB_ERRK_CONTEXT_WINDOW;
}

static void copy_message(struct sb_canon_error *e, const char *m)
{
    snprintf(e->message, sizeof e->message, "%s", m);
}

static int decode_error(int status, const char *body, size_t len, struct sb_canon_error *out)
{
    sb_canon_error_set(out, status, sb_err_kind_of_status(status), "", DIALECT " returned HTTP %d",
                       status);
    if (status == 424) /* ModelErrorException: the model failed, not the request */
        out->kind = SB_ERRK_SERVER;
    json_t *root = body && len ? json_loadb(body, len, 0, NULL) : NULL;
    const char *type = NULL;
    if (json_is_object(root)) {
        json_t *m = json_object_get(root, "message");
        if (!json_is_string(m))
            m = json_object_get(root, "Message");
        if (json_is_string(m) && json_string_length(m))
            copy_message(out, json_string_value(m));
        json_t *t = json_object_get(root, "__type");
        if (json_is_string(t)) {
            type = json_string_value(t);
            const char *hash = strrchr(type, '#');
            if (hash)
                type = hash + 1;
        }
    }
    if (status == 403) {
        /* SigV4 failures (bad key, bad signature, expired token) and IAM denials share 403:
         * the message tells them apart. */
        out->kind = has_word(out->message, "not authorized") ||
                            has_word(out->message, "don't have access") ||
                            has_word(out->message, "do not have access")
                        ? SB_ERRK_PERMISSION
                        : SB_ERRK_AUTH;
    }
    if ((status == 400 || status == 413) && context_wording(out->message))
        out->kind = SB_ERRK_CONTEXT_WINDOW;
    if (type)
        sb_bedrock_error_type(out, type);
    json_decref(root);
    return 0;
}

/* ------------------------------------------------------------------ events */

static int emit_ev(sb_canon_emit_cb emit, void *ud, struct sb_canon_event *ev)
{
    return emit(ud, ev) ? SB_CANON_E_STOP : 0;
}

static void ev_init(struct sb_canon_event *ev, enum sb_ev_type t)
{
    memset(ev, 0, sizeof *ev);
    ev->type = t;
    sb_usage_init(&ev->usage);
}

static int ev_simple(sb_canon_emit_cb emit, void *ud, enum sb_ev_type t, int index)
{
    struct sb_canon_event ev;
    ev_init(&ev, t);
    ev.index = index;
    return emit_ev(emit, ud, &ev);
}

static int ev_block(sb_canon_emit_cb emit, void *ud, int index, enum sb_block_kind k,
                    const char *id, const char *name)
{
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_BLOCK_START);
    ev.index = index;
    ev.block = k;
    ev.id = id;
    ev.name = name;
    return emit_ev(emit, ud, &ev);
}

static int ev_text(sb_canon_emit_cb emit, void *ud, enum sb_ev_type t, int index, const char *s,
                   size_t n)
{
    struct sb_canon_event ev;
    ev_init(&ev, t);
    ev.index = index;
    ev.text = s;
    ev.len = n;
    return emit_ev(emit, ud, &ev);
}

static enum sb_finish finish_of(const char *r)
{
    if (!r)
        return SB_FINISH_STOP;
    static const struct {
        const char *name;
        enum sb_finish f;
    } map[] = {
        {"end_turn", SB_FINISH_STOP},
        {"stop_sequence", SB_FINISH_STOP_SEQUENCE},
        {"max_tokens", SB_FINISH_LENGTH},
        {"tool_use", SB_FINISH_TOOL_CALLS},
        {"guardrail_intervened", SB_FINISH_CONTENT_FILTER},
        {"content_filtered", SB_FINISH_CONTENT_FILTER},
        {"model_context_window_exceeded", SB_FINISH_CONTEXT_WINDOW},
        {"malformed_model_output", SB_FINISH_ERROR},
        {"malformed_tool_use", SB_FINISH_ERROR},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(map[i].name, r) == 0)
            return map[i].f;
    return SB_FINISH_STOP;
}

static int64_t get_count(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (int64_t)json_integer_value(v) : -1;
}

static void read_usage(json_t *u, struct sb_usage *out)
{
    if (!json_is_object(u))
        return;
    int64_t v;
    if ((v = get_count(u, "inputTokens")) >= 0)
        out->input = v;
    if ((v = get_count(u, "outputTokens")) >= 0)
        out->output = v;
    if ((v = get_count(u, "cacheReadInputTokens")) >= 0)
        out->cache_read = v;
    if ((v = get_count(u, "cacheWriteInputTokens")) >= 0)
        out->cache_write = v;
}

/* Anthropic models on Bedrock report the matched stop sequence here. */
static const char *stop_sequence_of(json_t *root)
{
    json_t *a = json_object_get(root, "additionalModelResponseFields");
    json_t *s = json_object_get(a, "stop_sequence");
    return json_is_string(s) ? json_string_value(s) : NULL;
}

static int emit_finish_usage(sb_canon_emit_cb emit, void *ud, enum sb_finish f,
                             const char *stop_seq, const struct sb_usage *u, bool with_usage)
{
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_FINISH);
    ev.finish = f;
    ev.stop_sequence = f == SB_FINISH_STOP_SEQUENCE ? stop_seq : NULL;
    int rc = emit_ev(emit, ud, &ev);
    if (rc || !with_usage)
        return rc;
    ev_init(&ev, SB_EV_USAGE);
    ev.usage = *u;
    return emit_ev(emit, ud, &ev);
}

/* One whole block of a Converse response: START/DELTA/SIGNATURE/STOP. Unknown kinds (images,
 * citations, guard content) are skipped without a number. */
static int response_block(json_t *b, int *index, sb_canon_emit_cb emit, void *ud)
{
    int rc = 0, i = *index;
    json_t *t = json_object_get(b, "text"), *tu = json_object_get(b, "toolUse"),
           *rc_ = json_object_get(b, "reasoningContent");
    if (json_is_string(t)) {
        if ((rc = ev_block(emit, ud, i, SB_BLOCK_TEXT, NULL, NULL)) ||
            (rc = ev_text(emit, ud, SB_EV_DELTA, i, json_string_value(t), json_string_length(t))))
            return rc;
    } else if (json_is_object(tu)) {
        json_t *id = json_object_get(tu, "toolUseId"), *name = json_object_get(tu, "name");
        json_t *input = json_object_get(tu, "input");
        if (!json_is_string(id) || !json_is_string(name))
            return SB_CANON_E_INVALID;
        char *args = input ? json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        if (input && !args)
            return -ENOMEM;
        if (!(rc = ev_block(emit, ud, i, SB_BLOCK_TOOL_CALL, json_string_value(id),
                            json_string_value(name))))
            rc = ev_text(emit, ud, SB_EV_DELTA, i, args ? args : "{}", args ? strlen(args) : 2);
        free(args);
        if (rc)
            return rc;
    } else if (json_is_object(rc_)) {
        json_t *rt = json_object_get(rc_, "reasoningText");
        json_t *red = json_object_get(rc_, "redactedContent");
        if (json_is_object(rt)) {
            json_t *txt = json_object_get(rt, "text"), *sig = json_object_get(rt, "signature");
            if ((rc = ev_block(emit, ud, i, SB_BLOCK_THINKING, NULL, NULL)))
                return rc;
            if (json_is_string(txt) && json_string_length(txt) &&
                (rc = ev_text(emit, ud, SB_EV_DELTA, i, json_string_value(txt),
                              json_string_length(txt))))
                return rc;
            if (json_is_string(sig) &&
                (rc = ev_text(emit, ud, SB_EV_SIGNATURE, i, json_string_value(sig),
                              json_string_length(sig))))
                return rc;
        } else if (json_is_string(red)) {
            if ((rc = ev_block(emit, ud, i, SB_BLOCK_REDACTED_THINKING, NULL, NULL)) ||
                (rc = ev_text(emit, ud, SB_EV_DELTA, i, json_string_value(red),
                              json_string_length(red))))
                return rc;
        } else {
            return 0;
        }
    } else {
        return 0;
    }
    if ((rc = ev_simple(emit, ud, SB_EV_BLOCK_STOP, i)))
        return rc;
    *index = i + 1;
    return 0;
}

static int decode_response(const char *body, size_t len, sb_canon_emit_cb emit, void *ud)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    int rc = SB_CANON_E_INVALID;
    if (!json_is_object(root))
        goto out;
    json_t *msg = json_object_get(json_object_get(root, "output"), "message");
    json_t *content = json_object_get(msg, "content");
    if (!json_is_object(msg) || (content && !json_is_array(content)))
        goto out;
    if ((rc = ev_simple(emit, ud, SB_EV_START, 0)))
        goto out;
    int index = 0;
    size_t i;
    json_t *b;
    json_array_foreach(content, i, b)
    {
        if (json_is_object(b) && (rc = response_block(b, &index, emit, ud)))
            goto out;
    }
    struct sb_usage u;
    sb_usage_init(&u);
    read_usage(json_object_get(root, "usage"), &u);
    json_t *sr = json_object_get(root, "stopReason");
    rc = emit_finish_usage(emit, ud, finish_of(json_is_string(sr) ? json_string_value(sr) : NULL),
                           stop_sequence_of(root), &u, true);
out:
    json_decref(root);
    return rc;
}

/* ------------------------------------------------------------------ stream */

struct bstream {
    struct sb_evstream es;
    bool started, stopped, finished, done, has_usage, open;
    int open_pidx;                /* the provider's contentBlockIndex of the open block */
    enum sb_block_kind open_kind; /* of the open block */
    int next;                     /* our number for the next block */
    enum sb_finish finish;
    char *stop_seq;
    struct sb_usage usage;
    /* during a feed */
    sb_canon_emit_cb emit;
    void *ud;
    int rc;
};

static void *stream_new(size_t max_event_bytes)
{
    struct bstream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    sb_evstream_init(&s->es, max_event_bytes);
    sb_usage_init(&s->usage);
    return s;
}

static void stream_free(void *st)
{
    struct bstream *s = st;
    if (!s)
        return;
    sb_evstream_free(&s->es);
    free(s->stop_seq);
    free(s);
}

static int ensure_started(struct bstream *s)
{
    if (s->started)
        return 0;
    s->started = true;
    return ev_simple(s->emit, s->ud, SB_EV_START, 0);
}

static int close_block(struct bstream *s)
{
    if (!s->open)
        return 0;
    s->open = false;
    return ev_simple(s->emit, s->ud, SB_EV_BLOCK_STOP, s->next - 1);
}

static int open_block(struct bstream *s, int pidx, enum sb_block_kind k, const char *id,
                      const char *name)
{
    int rc = close_block(s);
    if (rc)
        return rc;
    if (s->next == INT32_MAX)
        return SB_CANON_E_INVALID;
    s->open = true;
    s->open_pidx = pidx;
    s->open_kind = k;
    return ev_block(s->emit, s->ud, s->next++, k, id, name);
}

/* The open block for text-like deltas of provider block `pidx`, opened implicitly: Bedrock
 * sends no contentBlockStart for text or reasoning. */
static int want_block(struct bstream *s, int pidx, enum sb_block_kind k)
{
    if (s->open && s->open_pidx == pidx && s->open_kind == k)
        return 0;
    return open_block(s, pidx, k, NULL, NULL);
}

static int stream_error(struct bstream *s, const char *exception_type, const char *payload,
                        size_t len)
{
    struct sb_canon_error e;
    const char *name = exception_type ? exception_type : "error";
    size_t n = strcspn(name, ":");
    int i = find_error(name, n);
    sb_canon_error_set(&e, i >= 0 ? amzn_errors[i].status : 500,
                       i >= 0 ? amzn_errors[i].kind : SB_ERRK_SERVER, "",
                       DIALECT " stream error: %s", name);
    json_t *root = len ? json_loadb(payload, len, 0, NULL) : NULL;
    json_t *m = json_object_get(root, "message");
    if (!json_is_string(m))
        m = json_object_get(root, "Message");
    if (json_is_string(m) && json_string_length(m))
        copy_message(&e, json_string_value(m));
    json_decref(root);
    sb_bedrock_error_type(&e, name);
    s->done = true;
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_ERROR);
    ev.error = &e;
    return emit_ev(s->emit, s->ud, &ev);
}

static int finish(struct bstream *s, bool with_usage)
{
    s->finished = s->done = true;
    return emit_finish_usage(s->emit, s->ud, s->finish, s->stop_seq, &s->usage, with_usage);
}

static int block_index(json_t *root)
{
    json_t *v = json_object_get(root, "contentBlockIndex");
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return -1;
    return (int)json_integer_value(v);
}

static int on_delta(struct bstream *s, json_t *root)
{
    int pidx = block_index(root);
    json_t *d = json_object_get(root, "delta");
    if (pidx < 0 || !json_is_object(d))
        return SB_CANON_E_INVALID;
    json_t *t = json_object_get(d, "text"), *tu = json_object_get(d, "toolUse"),
           *r = json_object_get(d, "reasoningContent");
    int rc;
    if (json_is_string(t)) {
        if ((rc = want_block(s, pidx, SB_BLOCK_TEXT)))
            return rc;
        return ev_text(s->emit, s->ud, SB_EV_DELTA, s->next - 1, json_string_value(t),
                       json_string_length(t));
    }
    if (json_is_object(tu)) {
        json_t *in = json_object_get(tu, "input");
        if (!json_is_string(in) || !s->open || s->open_kind != SB_BLOCK_TOOL_CALL ||
            s->open_pidx != pidx)
            return SB_CANON_E_INVALID;
        return ev_text(s->emit, s->ud, SB_EV_DELTA, s->next - 1, json_string_value(in),
                       json_string_length(in));
    }
    if (json_is_object(r)) {
        json_t *rt = json_object_get(r, "text"), *sig = json_object_get(r, "signature"),
               *red = json_object_get(r, "redactedContent");
        if (json_is_string(rt) || json_is_string(sig)) {
            if ((rc = want_block(s, pidx, SB_BLOCK_THINKING)))
                return rc;
            if (json_is_string(rt) && (rc = ev_text(s->emit, s->ud, SB_EV_DELTA, s->next - 1,
                                                    json_string_value(rt), json_string_length(rt))))
                return rc;
            if (json_is_string(sig))
                return ev_text(s->emit, s->ud, SB_EV_SIGNATURE, s->next - 1, json_string_value(sig),
                               json_string_length(sig));
            return 0;
        }
        if (json_is_string(red)) {
            if ((rc = want_block(s, pidx, SB_BLOCK_REDACTED_THINKING)))
                return rc;
            return ev_text(s->emit, s->ud, SB_EV_DELTA, s->next - 1, json_string_value(red),
                           json_string_length(red));
        }
    }
    return 0; /* an unknown delta kind (citations, images) */
}

static int on_event(struct bstream *s, const char *et, json_t *root)
{
    int rc;
    if (strcmp(et, "messageStart") == 0)
        return ensure_started(s);
    if (s->stopped)
        return strcmp(et, "metadata") == 0 ? 0 : SB_CANON_E_INVALID;
    if ((rc = ensure_started(s)))
        return rc;
    if (strcmp(et, "contentBlockStart") == 0) {
        int pidx = block_index(root);
        json_t *tu = json_object_get(json_object_get(root, "start"), "toolUse");
        if (pidx < 0)
            return SB_CANON_E_INVALID;
        if (!json_is_object(tu))
            return 0;
        json_t *id = json_object_get(tu, "toolUseId"), *name = json_object_get(tu, "name");
        if (!json_is_string(id) || !json_is_string(name))
            return SB_CANON_E_INVALID;
        return open_block(s, pidx, SB_BLOCK_TOOL_CALL, json_string_value(id),
                          json_string_value(name));
    }
    if (strcmp(et, "contentBlockDelta") == 0)
        return on_delta(s, root);
    if (strcmp(et, "contentBlockStop") == 0) {
        int pidx = block_index(root);
        if (pidx < 0)
            return SB_CANON_E_INVALID;
        return s->open && s->open_pidx == pidx ? close_block(s) : 0;
    }
    if (strcmp(et, "messageStop") == 0) {
        if ((rc = close_block(s)))
            return rc;
        s->stopped = true;
        json_t *sr = json_object_get(root, "stopReason");
        s->finish = finish_of(json_is_string(sr) ? json_string_value(sr) : NULL);
        const char *seq = stop_sequence_of(root);
        if (seq && !(s->stop_seq = strdup(seq)))
            return -ENOMEM;
        return s->has_usage ? finish(s, true) : 0;
    }
    return 0;
}

static int on_frame(void *ud, const struct sb_evstream_msg *m)
{
    struct bstream *s = ud;
    if (s->done)
        return 0;
    const char *mt = m->message_type;
    int rc = 0;
    if (mt && (strcmp(mt, "exception") == 0 || strcmp(mt, "error") == 0)) {
        rc = stream_error(s, m->exception_type, m->payload, m->payload_len);
    } else if (m->event_type && (!mt || strcmp(mt, "event") == 0)) {
        json_t *root = json_loadb(m->payload, m->payload_len, 0, NULL);
        if (!json_is_object(root)) {
            rc = SB_CANON_E_INVALID;
        } else if (strcmp(m->event_type, "metadata") == 0) {
            read_usage(json_object_get(root, "usage"), &s->usage);
            s->has_usage = true;
            if (s->stopped)
                rc = finish(s, true);
        } else {
            rc = on_event(s, m->event_type, root);
        }
        json_decref(root);
    }
    if (rc) {
        s->rc = rc;
        return 1;
    }
    return 0;
}

static int stream_feed(void *st, const char *data, size_t len, sb_canon_emit_cb emit, void *ud)
{
    struct bstream *s = st;
    if (s->done)
        return 0;
    s->emit = emit;
    s->ud = ud;
    s->rc = 0;
    int rc = sb_evstream_feed(&s->es, data, len, on_frame, s);
    switch (rc) {
    case 0:
        return 0;
    case SB_EVSTREAM_E_STOP:
        return s->rc;
    case SB_EVSTREAM_E_TOO_BIG:
        return -E2BIG;
    case -ENOMEM:
        return rc;
    default:
        return SB_CANON_E_INVALID;
    }
}

static int stream_end(void *st, sb_canon_emit_cb emit, void *ud)
{
    struct bstream *s = st;
    if (s->done)
        return 0;
    if (!s->stopped)
        return SB_CANON_E_CUT;
    s->emit = emit;
    s->ud = ud;
    /* messageStop came but metadata did not: the answer is whole, its usage unknown */
    return finish(s, false);
}

/* ------------------------------------------------------------------ request */

static int refuse(struct sb_error *err, const char *param)
{
    sb_error_set(err, 400, "invalid_request_error", "unsupported_parameter", param,
                 "'%s' is not supported by " DIALECT " models", param);
    return -1;
}

static int bad_request(struct sb_error *err, const char *param, const char *msg, size_t i)
{
    sb_error_set(err, 400, "invalid_request_error", "invalid_value", param, "%s (messages[%zu])",
                 msg, i);
    return -1;
}

static int oom(struct sb_error *err)
{
    sb_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    return -1;
}

/* Bedrock (like Anthropic) takes tool ids of [A-Za-z0-9_-] only. */
static json_t *sanitized_id(const char *id)
{
    const char *src = id ? id : "";
    char *c = strdup(src);
    if (!c)
        return NULL;
    for (char *p = c; *p; p++)
        if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '-'))
            *p = '_';
    json_t *j = json_string(c);
    free(c);
    return j;
}

static bool append_new(json_t *arr, json_t *v)
{
    return v && json_array_append_new(arr, v) == 0;
}

static bool add_cache_point(json_t *arr, json_t *cache_control)
{
    if (!cache_control)
        return true;
    return append_new(arr, json_pack("{s:{s:s}}", "cachePoint", "type", "default"));
}

static const char *image_format(const char *mt)
{
    if (!mt)
        return NULL;
    if (strcasecmp(mt, "image/png") == 0)
        return "png";
    if (strcasecmp(mt, "image/jpeg") == 0 || strcasecmp(mt, "image/jpg") == 0)
        return "jpeg";
    if (strcasecmp(mt, "image/gif") == 0)
        return "gif";
    if (strcasecmp(mt, "image/webp") == 0)
        return "webp";
    return NULL;
}

static const char *document_format(const char *mt)
{
    static const struct {
        const char *mt, *f;
    } map[] = {
        {"application/pdf", "pdf"},
        {"text/csv", "csv"},
        {"application/msword", "doc"},
        {"application/vnd.openxmlformats-officedocument.wordprocessingml.document", "docx"},
        {"application/vnd.ms-excel", "xls"},
        {"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"},
        {"text/html", "html"},
        {"text/plain", "txt"},
        {"text/markdown", "md"},
    };
    for (size_t i = 0; mt && i < sizeof map / sizeof map[0]; i++)
        if (strcasecmp(map[i].mt, mt) == 0)
            return map[i].f;
    return NULL;
}

/* {image:{format, source:{bytes}}}; NULL with err set when Bedrock cannot take it. */
static json_t *image_block(const struct sb_part *p, size_t i, struct sb_error *err)
{
    if (!p->data) {
        bad_request(err, "messages",
                    "image URLs are not supported by " DIALECT
                    " models: send the image inline as base64 data",
                    i);
        return NULL;
    }
    const char *f = image_format(p->media_type);
    if (!f) {
        bad_request(err, "messages",
                    "image type not supported by " DIALECT " (png, jpeg, gif, webp)", i);
        return NULL;
    }
    json_t *b = json_pack("{s:{s:s,s:{s:s}}}", "image", "format", f, "source", "bytes", p->data);
    if (!b)
        oom(err);
    return b;
}

static json_t *document_block(const struct sb_part *p, size_t i, unsigned *ndocs,
                              struct sb_error *err)
{
    if (!p->data) {
        bad_request(err, "messages",
                    "document URLs are not supported by " DIALECT
                    " models: send the document inline as base64 data",
                    i);
        return NULL;
    }
    const char *f = document_format(p->media_type);
    if (!f) {
        bad_request(err, "messages", "document type not supported by " DIALECT, i);
        return NULL;
    }
    /* Bedrock wants a name per document, unique in the request, of letters, digits,
     * spaces, hyphens, parentheses and brackets. */
    char name[32];
    snprintf(name, sizeof name, "document-%u", ++*ndocs);
    json_t *b = json_pack("{s:{s:s,s:s,s:{s:s}}}", "document", "format", f, "name", name, "source",
                          "bytes", p->data);
    if (!b)
        oom(err);
    return b;
}

/* A tool call's arguments as an object: empty or invalid JSON, or not an object -> {}. */
static json_t *arguments_object(const char *args)
{
    json_t *o = args && *args ? json_loads(args, 0, NULL) : NULL;
    if (!json_is_object(o)) {
        json_decref(o);
        o = json_object();
    }
    return o;
}

static json_t *tool_result_block(const struct sb_part *p, size_t i, struct sb_error *err)
{
    json_t *content = json_array();
    if (!content) {
        oom(err);
        return NULL;
    }
    for (size_t k = 0; k < p->nparts; k++) {
        const struct sb_part *c = &p->parts[k];
        json_t *item = NULL;
        if (c->type == SB_PART_TEXT) {
            const char *t = c->text ? c->text : "";
            json_t *j = *t ? json_loads(t, 0, NULL) : NULL;
            if (json_is_object(j)) {
                item = json_pack("{s:o}", "json", j);
            } else {
                json_decref(j);
                item = json_pack("{s:s}", "text", t);
            }
        } else if (c->type == SB_PART_IMAGE) {
            item = image_block(c, i, err);
            if (!item) {
                json_decref(content);
                return NULL;
            }
        } else {
            continue;
        }
        if (!append_new(content, item)) {
            json_decref(content);
            oom(err);
            return NULL;
        }
    }
    if (json_array_size(content) == 0 && !append_new(content, json_pack("{s:s}", "text", ""))) {
        json_decref(content);
        oom(err);
        return NULL;
    }
    json_t *id = sanitized_id(p->id);
    json_t *r = id ? json_pack("{s:o,s:o}", "toolUseId", id, "content", content) : NULL;
    if (!id)
        json_decref(content);
    if (r && p->is_error && json_object_set_new(r, "status", json_string("error"))) {
        json_decref(r);
        r = NULL;
    }
    json_t *b = r ? json_pack("{s:o}", "toolResult", r) : NULL;
    if (!b)
        oom(err);
    return b;
}

/* One canonical message -> blocks appended to `results` (tool results) or `other`. */
static int message_blocks(const struct sb_msg *m, size_t i, json_t *results, json_t *other,
                          unsigned *ndocs, bool *tool_history, struct sb_error *err)
{
    for (size_t k = 0; k < m->nparts; k++) {
        const struct sb_part *p = &m->parts[k];
        json_t *b = NULL;
        json_t *dst = other;
        switch (p->type) {
        case SB_PART_TEXT:
            if (!p->text || !*p->text)
                continue; /* Bedrock refuses blank text blocks */
            b = json_pack("{s:s}", "text", p->text);
            break;
        case SB_PART_IMAGE:
            if (!(b = image_block(p, i, err)))
                return -1;
            break;
        case SB_PART_DOCUMENT:
            if (!(b = document_block(p, i, ndocs, err)))
                return -1;
            break;
        case SB_PART_TOOL_CALL: {
            *tool_history = true;
            json_t *id = sanitized_id(p->id);
            json_t *in = arguments_object(p->arguments);
            if (!id || !in) {
                json_decref(id);
                json_decref(in);
                return oom(err);
            }
            b = json_pack("{s:{s:o,s:s,s:o}}", "toolUse", "toolUseId", id, "name",
                          p->name ? p->name : "", "input", in);
            break;
        }
        case SB_PART_TOOL_RESULT:
            *tool_history = true;
            if (!(b = tool_result_block(p, i, err)))
                return -1;
            dst = results;
            break;
        case SB_PART_THINKING:
            if (!p->text || !*p->text)
                continue; /* a signature alone (from Gemini) has no Bedrock form */
            b = p->signature ? json_pack("{s:{s:{s:s,s:s}}}", "reasoningContent", "reasoningText",
                                         "text", p->text, "signature", p->signature)
                             : json_pack("{s:{s:{s:s}}}", "reasoningContent", "reasoningText",
                                         "text", p->text);
            break;
        case SB_PART_REDACTED_THINKING:
            if (!p->text || !*p->text)
                continue;
            b = json_pack("{s:{s:s}}", "reasoningContent", "redactedContent", p->text);
            break;
        }
        if (!append_new(dst, b) || !add_cache_point(dst, p->cache_control))
            return oom(err);
    }
    return 0;
}

static int flush_turn(json_t *msgs, const char *role, json_t *results, json_t *other)
{
    if (!role || (json_array_size(results) == 0 && json_array_size(other) == 0))
        return 0;
    json_t *content = json_array();
    if (!content || json_array_extend(content, results) || json_array_extend(content, other)) {
        json_decref(content);
        return -1;
    }
    json_array_clear(results);
    json_array_clear(other);
    return append_new(msgs, json_pack("{s:s,s:o}", "role", role, "content", content)) ? 0 : -1;
}

static int build_messages(const struct sb_canon_req *req, json_t *root, bool *tool_history,
                          struct sb_error *err)
{
    json_t *msgs = json_array(), *system = json_array(), *results = json_array(),
           *other = json_array();
    int rc = -1;
    unsigned ndocs = 0;
    const char *role = NULL;
    if (!msgs || !system || !results || !other) {
        oom(err);
        goto out;
    }
    for (size_t i = 0; i < req->nmsgs; i++) {
        const struct sb_msg *m = &req->msgs[i];
        if (m->role == SB_ROLE_SYSTEM) {
            for (size_t k = 0; k < m->nparts; k++) {
                const struct sb_part *p = &m->parts[k];
                if (p->type != SB_PART_TEXT || !p->text || !*p->text)
                    continue;
                if (!append_new(system, json_pack("{s:s}", "text", p->text)) ||
                    !add_cache_point(system, p->cache_control)) {
                    oom(err);
                    goto out;
                }
            }
            continue;
        }
        const char *r = m->role == SB_ROLE_ASSISTANT ? "assistant" : "user";
        json_t *res = json_array(), *oth = json_array();
        if (!res || !oth) {
            json_decref(res);
            json_decref(oth);
            oom(err);
            goto out;
        }
        int brc = message_blocks(m, i, res, oth, &ndocs, tool_history, err);
        bool empty = json_array_size(res) == 0 && json_array_size(oth) == 0;
        if (!brc && !empty && role && strcmp(role, r) != 0 &&
            flush_turn(msgs, role, results, other)) {
            brc = oom(err);
        }
        if (!brc && !empty) {
            role = r;
            if (json_array_extend(results, res) || json_array_extend(other, oth))
                brc = oom(err);
        }
        json_decref(res);
        json_decref(oth);
        if (brc)
            goto out;
    }
    if (flush_turn(msgs, role, results, other)) {
        oom(err);
        goto out;
    }
    json_t *first = json_array_get(msgs, 0);
    if (!first) {
        sb_error_set(err, 400, "invalid_request_error", "invalid_value", "messages",
                     DIALECT " needs at least one user message");
        goto out;
    }
    if (strcmp(json_string_value(json_object_get(first, "role")), "user") != 0) {
        sb_error_set(err, 400, "invalid_request_error", "invalid_value", "messages",
                     DIALECT " needs the conversation to start with a user message");
        goto out;
    }
    if (json_object_set(root, "messages", msgs) ||
        (json_array_size(system) && json_object_set(root, "system", system))) {
        oom(err);
        goto out;
    }
    rc = 0;
out:
    json_decref(msgs);
    json_decref(system);
    json_decref(results);
    json_decref(other);
    return rc;
}

static int build_tools(const struct sb_canon_req *req, json_t *root, bool tool_history,
                       struct sb_error *err)
{
    if (req->ntools == 0)
        return 0;
    /* Bedrock has no tool_choice "none". Without tools in the history the tools are left out,
     * which has the same effect; with them Bedrock insists on toolConfig, so the tools stay
     * and the model may still call one. */
    if (req->tool_choice == SB_TC_NONE && !tool_history)
        return 0;
    json_t *tools = json_array();
    if (!tools)
        return oom(err);
    for (size_t i = 0; i < req->ntools; i++) {
        const struct sb_tool *t = &req->tools[i];
        json_t *schema = t->parameters && json_is_object(t->parameters)
                             ? json_incref(t->parameters)
                             : json_pack("{s:s,s:{}}", "type", "object", "properties");
        json_t *spec = schema ? json_pack("{s:s,s:{s:o}}", "name", t->name ? t->name : "",
                                          "inputSchema", "json", schema)
                              : NULL;
        if (spec && t->description &&
            json_object_set_new(spec, "description", json_string(t->description))) {
            json_decref(spec);
            spec = NULL;
        }
        if (!append_new(tools, spec ? json_pack("{s:o}", "toolSpec", spec) : NULL) ||
            !add_cache_point(tools, t->cache_control)) {
            json_decref(tools);
            return oom(err);
        }
    }
    json_t *choice = NULL;
    switch (req->tool_choice) {
    case SB_TC_AUTO:
        choice = json_pack("{s:{}}", "auto");
        break;
    case SB_TC_REQUIRED:
        choice = json_pack("{s:{}}", "any");
        break;
    case SB_TC_NAMED:
        if (!req->tool_choice_name) {
            json_decref(tools);
            sb_error_set(err, 400, "invalid_request_error", "invalid_value", "tool_choice",
                         "tool_choice names no function");
            return -1;
        }
        choice = json_pack("{s:{s:s}}", "tool", "name", req->tool_choice_name);
        break;
    case SB_TC_UNSET:
    case SB_TC_NONE:
        break;
    }
    json_t *cfg = json_pack("{s:o}", "tools", tools);
    if (!cfg || (choice && json_object_set_new(cfg, "toolChoice", choice)) ||
        json_object_set_new(root, "toolConfig", cfg))
        return oom(err);
    return 0;
}

static int encode_request(const struct sb_canon_req *req, const char *model, struct sb_buf *out,
                          struct sb_error *err)
{
    (void)model; /* Bedrock takes the model in the URL */
    if (req->n > 1)
        return refuse(err, "n");
    if (req->logprobs)
        return refuse(err, "logprobs");
    json_t *root = json_object();
    if (!root)
        return oom(err);
    int rc = -1;
    bool tool_history = false;
    if (build_messages(req, root, &tool_history, err) || build_tools(req, root, tool_history, err))
        goto out;

    int64_t budget = req->thinking_budget;
    if (budget < 0 && req->reasoning_effort)
        budget = sb_canon_effort_budget(req->reasoning_effort);
    int64_t max_tokens = req->max_tokens > 0 ? req->max_tokens : SB_CANON_DEFAULT_MAX_TOKENS;
    if (budget > 0 && (req->max_tokens <= 0 || req->max_tokens <= budget))
        max_tokens = budget + SB_CANON_DEFAULT_MAX_TOKENS;
    json_t *ic = json_pack("{s:I}", "maxTokens", (json_int_t)max_tokens);
    if (!ic || json_object_set_new(root, "inferenceConfig", ic)) {
        oom(err);
        goto out;
    }
    if (req->has_temperature) {
        double t = req->temperature < 0 ? 0 : req->temperature > 1 ? 1 : req->temperature;
        if (json_object_set_new(ic, "temperature", json_real(t))) {
            oom(err);
            goto out;
        }
    }
    if (req->has_top_p && json_object_set_new(ic, "topP", json_real(req->top_p))) {
        oom(err);
        goto out;
    }
    if (req->nstop) {
        json_t *st = json_array();
        for (size_t i = 0; st && i < req->nstop; i++)
            if (!append_new(st, json_string(req->stop[i] ? req->stop[i] : ""))) {
                json_decref(st);
                st = NULL;
            }
        if (!st || json_object_set_new(ic, "stopSequences", st)) {
            oom(err);
            goto out;
        }
    }
    /* Model-specific fields, in the names Anthropic models on Bedrock take. */
    json_t *extra = json_object();
    if (!extra || json_object_set_new(root, "additionalModelRequestFields", extra)) {
        oom(err);
        goto out;
    }
    if (req->top_k >= 0 && json_object_set_new(extra, "top_k", json_integer(req->top_k))) {
        oom(err);
        goto out;
    }
    if (budget > 0 && json_object_set_new(extra, "thinking",
                                          json_pack("{s:s,s:I}", "type", "enabled", "budget_tokens",
                                                    (json_int_t)budget))) {
        oom(err);
        goto out;
    }
    if (json_object_size(extra) == 0)
        json_object_del(root, "additionalModelRequestFields");

    char *s = json_dumps(root, JSON_COMPACT);
    if (!s) {
        oom(err);
        goto out;
    }
    int arc = sb_buf_append_str(out, s);
    free(s);
    if (arc == -E2BIG) {
        sb_error_set(err, 413, "invalid_request_error", "request_too_large", NULL,
                     "the request is too large for " DIALECT);
        goto out;
    }
    if (arc) {
        oom(err);
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

const struct sb_provider_codec sb_codec_bedrock = {
    .dialect = SB_DIALECT_BEDROCK,
    .encode_request = encode_request,
    .decode_response = decode_response,
    .decode_error = decode_error,
    .stream_new = stream_new,
    .stream_feed = stream_feed,
    .stream_end = stream_end,
    .stream_free = stream_free,
};

/* ------------------------------------------------------------------ embeddings */

static int embed_encode(const struct sb_embed_req *req, size_t from, size_t to, const char *model,
                        struct sb_buf *out, struct sb_error *err)
{
    (void)model;
    if (to != from + 1 || to > req->ninputs || !req->inputs[from]) {
        sb_error_set(err, 400, "invalid_request_error", "invalid_value", "input",
                     "Titan embeddings on " DIALECT " take one input per call");
        return -1;
    }
    json_t *root = json_pack("{s:s,s:b}", "inputText", req->inputs[from], "normalize", 1);
    if (root && req->dimensions >= 0 &&
        json_object_set_new(root, "dimensions", json_integer(req->dimensions))) {
        json_decref(root);
        root = NULL;
    }
    char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (!s)
        return oom(err);
    int rc = sb_buf_append_str(out, s);
    free(s);
    if (rc == -E2BIG) {
        sb_error_set(err, 413, "invalid_request_error", "request_too_large", "input",
                     "the input is too large for " DIALECT);
        return -1;
    }
    return rc ? oom(err) : 0;
}

static int embed_decode(const char *body, size_t len, struct sb_embed_resp *out)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *emb = json_object_get(root, "embedding");
    int rc = SB_CANON_E_INVALID;
    if (!json_is_array(emb) || json_array_size(emb) == 0)
        goto out;
    size_t n = json_array_size(emb);
    double *v = malloc(n * sizeof *v);
    if (!v) {
        rc = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(emb, i);
        if (!json_is_number(x)) {
            free(v);
            goto out;
        }
        v[i] = json_number_value(x);
    }
    double **nv = realloc(out->vectors, (out->n + 1) * sizeof *nv);
    if (nv)
        out->vectors = nv;
    size_t *nd = nv ? realloc(out->dims, (out->n + 1) * sizeof *nd) : NULL;
    if (!nd) {
        free(v);
        rc = -ENOMEM;
        goto out;
    }
    out->dims = nd;
    out->vectors[out->n] = v;
    out->dims[out->n] = n;
    out->n++;
    int64_t t = get_count(root, "inputTextTokenCount");
    if (t >= 0)
        out->input_tokens = (out->input_tokens > 0 ? out->input_tokens : 0) + t;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

const struct sb_embed_codec sb_embed_bedrock = {
    .dialect = SB_DIALECT_BEDROCK,
    .batch_max = 1,
    .encode = embed_encode,
    .decode = embed_decode,
};

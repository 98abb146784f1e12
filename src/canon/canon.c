#include "canon/canon.h"

#include "core/rand.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const char *sb_dialect_name(enum sb_dialect d)
{
    switch (d) {
    case SB_DIALECT_OPENAI:
        return "openai";
    case SB_DIALECT_ANTHROPIC:
        return "anthropic";
    case SB_DIALECT_GEMINI:
        return "gemini";
    case SB_DIALECT_BEDROCK:
        return "bedrock";
    case SB_DIALECT_COHERE:
        return "cohere";
    }
    return "unknown";
}

/* ------------------------------------------------------------------ request */

static void parts_free(struct sb_part *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(p[i].text);
        free(p[i].signature);
        free(p[i].media_type);
        free(p[i].data);
        free(p[i].url);
        free(p[i].detail);
        free(p[i].id);
        free(p[i].name);
        free(p[i].arguments);
        parts_free(p[i].parts, p[i].nparts);
        json_decref(p[i].cache_control);
    }
    free(p);
}

void sb_canon_req_free(struct sb_canon_req *r)
{
    if (!r)
        return;
    free(r->model);
    for (size_t i = 0; i < r->nmsgs; i++) {
        parts_free(r->msgs[i].parts, r->msgs[i].nparts);
        free(r->msgs[i].name);
    }
    free(r->msgs);
    for (size_t i = 0; i < r->ntools; i++) {
        free(r->tools[i].name);
        free(r->tools[i].description);
        json_decref(r->tools[i].parameters);
        json_decref(r->tools[i].cache_control);
    }
    free(r->tools);
    free(r->tool_choice_name);
    for (size_t i = 0; i < r->nstop; i++)
        free(r->stop[i]);
    free(r->stop);
    free(r->rf_name);
    json_decref(r->rf_schema);
    free(r->reasoning_effort);
    free(r->user);
    json_decref(r->metadata);
    json_decref(r->cache_control);
    memset(r, 0, sizeof *r);
}

/* The budgets LiteLLM uses for reasoning_effort on thinking models. */
int64_t sb_canon_effort_budget(const char *effort)
{
    if (!effort)
        return -1;
    if (strcmp(effort, "none") == 0)
        return 0;
    if (strcmp(effort, "minimal") == 0)
        return 1024;
    if (strcmp(effort, "low") == 0)
        return 1024;
    if (strcmp(effort, "medium") == 0)
        return 2048;
    if (strcmp(effort, "high") == 0)
        return 4096;
    if (strcmp(effort, "xhigh") == 0)
        return 8192;
    if (strcmp(effort, "max") == 0)
        return 16384;
    return -1;
}

const char *sb_canon_budget_effort(int64_t budget)
{
    if (budget < 0)
        return NULL;
    if (budget == 0)
        return "none";
    if (budget <= 1024)
        return "low";
    if (budget <= 2048)
        return "medium";
    return "high";
}

/* ------------------------------------------------------------------ events */

const char *sb_finish_openai(enum sb_finish f)
{
    switch (f) {
    case SB_FINISH_LENGTH:
    case SB_FINISH_CONTEXT_WINDOW:
        return "length";
    case SB_FINISH_TOOL_CALLS:
        return "tool_calls";
    case SB_FINISH_CONTENT_FILTER:
    case SB_FINISH_REFUSAL:
        return "content_filter";
    case SB_FINISH_NONE:
    case SB_FINISH_STOP:
    case SB_FINISH_STOP_SEQUENCE:
    case SB_FINISH_PAUSE:
    case SB_FINISH_ERROR:
        break;
    }
    return "stop";
}

const char *sb_finish_anthropic(enum sb_finish f)
{
    switch (f) {
    case SB_FINISH_STOP_SEQUENCE:
        return "stop_sequence";
    case SB_FINISH_LENGTH:
        return "max_tokens";
    case SB_FINISH_TOOL_CALLS:
        return "tool_use";
    case SB_FINISH_CONTENT_FILTER:
    case SB_FINISH_REFUSAL:
        return "refusal";
    case SB_FINISH_CONTEXT_WINDOW:
        return "model_context_window_exceeded";
    case SB_FINISH_PAUSE:
        return "pause_turn";
    case SB_FINISH_NONE:
    case SB_FINISH_STOP:
    case SB_FINISH_ERROR:
        break;
    }
    return "end_turn";
}

void sb_usage_init(struct sb_usage *u)
{
    u->input = u->cache_read = u->cache_write = u->output = u->reasoning = -1;
}

int64_t sb_usage_prompt(const struct sb_usage *u)
{
    if (u->input < 0)
        return -1;
    /* Saturating: a provider's counts are outside input. */
    int64_t sum = u->input;
    if (u->cache_read > 0 && __builtin_add_overflow(sum, u->cache_read, &sum))
        return INT64_MAX;
    if (u->cache_write > 0 && __builtin_add_overflow(sum, u->cache_write, &sum))
        return INT64_MAX;
    return sum;
}

void sb_canon_error_set(struct sb_canon_error *e, int status, enum sb_err_kind kind,
                        const char *type, const char *fmt, ...)
{
    e->status = status;
    e->kind = kind;
    snprintf(e->type, sizeof e->type, "%s", type ? type : "");
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    if (n < 0)
        e->message[0] = '\0';
    e->retry_after_ms = -1;
}

enum sb_err_kind sb_err_kind_of_status(int status)
{
    switch (status) {
    case 401:
        return SB_ERRK_AUTH;
    case 402:
        return SB_ERRK_BILLING;
    case 403:
        return SB_ERRK_PERMISSION;
    case 404:
        return SB_ERRK_NOT_FOUND;
    case 408:
    case 504:
        return SB_ERRK_TIMEOUT;
    case 413:
        return SB_ERRK_TOO_LARGE;
    case 429:
        return SB_ERRK_RATE_LIMIT;
    case 503:
    case 529:
        return SB_ERRK_OVERLOADED;
    default:
        return status >= 500 ? SB_ERRK_SERVER : SB_ERRK_INVALID_REQUEST;
    }
}

/* ------------------------------------------------------------------ response */

void sb_canon_resp_init(struct sb_canon_resp *r, size_t max_bytes)
{
    memset(r, 0, sizeof *r);
    sb_usage_init(&r->usage);
    /* The per-block text buffers share one budget: max_bytes is split by checking the total
     * on every append (resp_text_total). */
    r->error.retry_after_ms = -1;
    r->max_bytes = max_bytes;
}

void sb_canon_resp_free(struct sb_canon_resp *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nblocks; i++) {
        sb_buf_free(&r->blocks[i].text);
        free(r->blocks[i].signature);
        free(r->blocks[i].id);
        free(r->blocks[i].name);
    }
    free(r->blocks);
    free(r->id);
    free(r->model);
    free(r->stop_sequence);
    size_t max = r->max_bytes;
    memset(r, 0, sizeof *r);
    sb_usage_init(&r->usage);
    r->max_bytes = max;
}

static int dup_opt(char **dst, const char *s)
{
    if (!s)
        return 0;
    char *c = strdup(s);
    if (!c)
        return -ENOMEM;
    free(*dst);
    *dst = c;
    return 0;
}

void sb_usage_merge(struct sb_usage *dst, const struct sb_usage *src)
{
    if (src->input >= 0)
        dst->input = src->input;
    if (src->cache_read >= 0)
        dst->cache_read = src->cache_read;
    if (src->cache_write >= 0)
        dst->cache_write = src->cache_write;
    if (src->output >= 0)
        dst->output = src->output;
    if (src->reasoning >= 0)
        dst->reasoning = src->reasoning;
}

int sb_canon_resp_event(void *resp, const struct sb_canon_event *ev)
{
    struct sb_canon_resp *r = resp;
    switch (ev->type) {
    case SB_EV_START:
        if (r->started)
            return SB_CANON_E_INVALID;
        r->started = true;
        sb_usage_merge(&r->usage, &ev->usage);
        if (dup_opt(&r->id, ev->id) || dup_opt(&r->model, ev->model))
            return -ENOMEM;
        return 0;
    case SB_EV_BLOCK_START: {
        if (!r->started || r->finished || r->open || ev->index != (int)r->nblocks)
            return SB_CANON_E_INVALID;
        struct sb_canon_block *nb = realloc(r->blocks, (r->nblocks + 1) * sizeof *nb);
        if (!nb)
            return -ENOMEM;
        r->blocks = nb;
        struct sb_canon_block *b = &nb[r->nblocks];
        memset(b, 0, sizeof *b);
        b->kind = ev->block;
        sb_buf_init(&b->text, r->max_bytes);
        r->nblocks++;
        r->open = true;
        if (dup_opt(&b->id, ev->id) || dup_opt(&b->name, ev->name))
            return -ENOMEM;
        return 0;
    }
    case SB_EV_DELTA:
    case SB_EV_SIGNATURE: {
        if (!r->open || ev->index != (int)r->nblocks - 1)
            return SB_CANON_E_INVALID;
        if (ev->len > r->max_bytes || r->total + ev->len > r->max_bytes)
            return -E2BIG;
        struct sb_canon_block *b = &r->blocks[r->nblocks - 1];
        if (ev->type == SB_EV_SIGNATURE) {
            char *sig = sb_canon_strndup(ev->text ? ev->text : "", ev->len);
            if (!sig)
                return -ENOMEM;
            free(b->signature);
            b->signature = sig;
        } else if (ev->len && sb_buf_append(&b->text, ev->text, ev->len) != 0) {
            return -E2BIG;
        }
        r->total += ev->len;
        return 0;
    }
    case SB_EV_BLOCK_STOP:
        if (!r->open || ev->index != (int)r->nblocks - 1)
            return SB_CANON_E_INVALID;
        r->open = false;
        return 0;
    case SB_EV_FINISH:
        if (!r->started || r->open || r->finished)
            return SB_CANON_E_INVALID;
        r->finished = true;
        r->finish = ev->finish;
        return dup_opt(&r->stop_sequence, ev->stop_sequence);
    case SB_EV_USAGE:
        sb_usage_merge(&r->usage, &ev->usage);
        return 0;
    case SB_EV_ERROR:
        r->has_error = true;
        if (ev->error)
            r->error = *ev->error;
        return 0;
    }
    return SB_CANON_E_INVALID;
}

int sb_canon_resp_replay(const struct sb_canon_resp *r, sb_canon_emit_cb emit, void *ud)
{
    struct sb_canon_event ev;
    memset(&ev, 0, sizeof ev);
    ev.type = SB_EV_START;
    ev.id = r->id;
    ev.model = r->model;
    sb_usage_init(&ev.usage);
    if (emit(ud, &ev))
        return SB_CANON_E_STOP;
    for (size_t i = 0; i < r->nblocks; i++) {
        const struct sb_canon_block *b = &r->blocks[i];
        memset(&ev, 0, sizeof ev);
        sb_usage_init(&ev.usage);
        ev.index = (int)i;
        ev.block = b->kind;
        ev.type = SB_EV_BLOCK_START;
        ev.id = b->id;
        ev.name = b->name;
        if (emit(ud, &ev))
            return SB_CANON_E_STOP;
        ev.id = ev.name = NULL;
        if (b->text.len || b->kind == SB_BLOCK_TOOL_CALL) {
            ev.type = SB_EV_DELTA;
            ev.text = b->text.data ? b->text.data : "";
            ev.len = b->text.len;
            if (emit(ud, &ev))
                return SB_CANON_E_STOP;
        }
        if (b->signature) {
            ev.type = SB_EV_SIGNATURE;
            ev.text = b->signature;
            ev.len = strlen(b->signature);
            if (emit(ud, &ev))
                return SB_CANON_E_STOP;
        }
        ev.type = SB_EV_BLOCK_STOP;
        ev.text = NULL;
        ev.len = 0;
        if (emit(ud, &ev))
            return SB_CANON_E_STOP;
    }
    memset(&ev, 0, sizeof ev);
    sb_usage_init(&ev.usage);
    ev.type = SB_EV_FINISH;
    ev.finish = r->finish;
    ev.stop_sequence = r->stop_sequence;
    if (emit(ud, &ev))
        return SB_CANON_E_STOP;
    ev.type = SB_EV_USAGE;
    ev.usage = r->usage;
    if (emit(ud, &ev))
        return SB_CANON_E_STOP;
    return 0;
}

/* ------------------------------------------------------------------ block synthesis */

static int synth_emit(struct sb_canon_synth *s, struct sb_canon_event *ev)
{
    return s->emit(s->ud, ev) ? SB_CANON_E_STOP : 0;
}

static void ev_init(struct sb_canon_event *ev, enum sb_ev_type type)
{
    memset(ev, 0, sizeof *ev);
    ev->type = type;
    sb_usage_init(&ev->usage);
}

int sb_canon_synth_start(struct sb_canon_synth *s, const char *id, const char *model)
{
    if (s->started)
        return 0;
    s->started = true;
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_START);
    ev.id = id && *id ? id : NULL;
    ev.model = model && *model ? model : NULL;
    return synth_emit(s, &ev);
}

int sb_canon_synth_close(struct sb_canon_synth *s)
{
    if (!s->open)
        return 0;
    s->open = false;
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_BLOCK_STOP);
    ev.index = s->nblocks - 1;
    return synth_emit(s, &ev);
}

int sb_canon_synth_open(struct sb_canon_synth *s, enum sb_block_kind kind, const char *id,
                        const char *name)
{
    int rc = sb_canon_synth_close(s);
    if (rc)
        return rc;
    if (s->nblocks == INT32_MAX)
        return SB_CANON_E_INVALID;
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_BLOCK_START);
    ev.index = s->nblocks++;
    ev.block = kind;
    ev.id = id;
    ev.name = name;
    s->open = true;
    s->kind = kind;
    return synth_emit(s, &ev);
}

int sb_canon_synth_delta(struct sb_canon_synth *s, const char *text, size_t len)
{
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_DELTA);
    ev.index = s->nblocks - 1;
    ev.text = text;
    ev.len = len;
    return synth_emit(s, &ev);
}

/* Text of a kind that has no tool identity: appended to the open block of that kind, or a
 * new block. */
int sb_canon_synth_text(struct sb_canon_synth *s, enum sb_block_kind kind, const char *t, size_t n)
{
    if (!t || n == 0)
        return 0;
    if (!s->open || s->kind != kind) {
        int rc = sb_canon_synth_open(s, kind, NULL, NULL);
        if (rc)
            return rc;
    }
    return sb_canon_synth_delta(s, t, n);
}

int sb_canon_synth_finish(struct sb_canon_synth *s, enum sb_finish f)
{
    int rc = sb_canon_synth_close(s);
    if (rc)
        return rc;
    s->finished = true;
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_FINISH);
    ev.finish = f;
    return synth_emit(s, &ev);
}

int sb_canon_synth_usage(struct sb_canon_synth *s, const struct sb_usage *u)
{
    if (s->usage_sent)
        return 0;
    s->usage_sent = true;
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_USAGE);
    ev.usage = *u;
    return synth_emit(s, &ev);
}

int sb_canon_synth_error(struct sb_canon_synth *s, const struct sb_canon_error *e)
{
    s->failed = true;
    struct sb_canon_event ev;
    ev_init(&ev, SB_EV_ERROR);
    ev.error = e;
    return synth_emit(s, &ev);
}

/* ------------------------------------------------------------------ embeddings */

void sb_embed_req_free(struct sb_embed_req *r)
{
    if (!r)
        return;
    free(r->model);
    for (size_t i = 0; i < r->ninputs; i++)
        free(r->inputs[i]);
    free(r->inputs);
    free(r->input_type);
    free(r->user);
    memset(r, 0, sizeof *r);
}

void sb_embed_resp_free(struct sb_embed_resp *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++)
        free(r->vectors[i]);
    free(r->vectors);
    free(r->dims);
    free(r->model);
    memset(r, 0, sizeof *r);
    r->input_tokens = -1;
}

/* ------------------------------------------------------------------ helpers */

struct dump_ctx {
    struct sb_buf *out;
    int rc;
};

static int dump_cb(const char *buffer, size_t size, void *ud)
{
    struct dump_ctx *d = ud;
    int rc = sb_buf_append(d->out, buffer, size);
    if (rc) {
        d->rc = rc;
        return -1;
    }
    return 0;
}

int sb_canon_dump_json(const json_t *root, struct sb_buf *out)
{
    size_t mark = out->len;
    struct dump_ctx d = {out, 0};
    if (json_dump_callback(root, dump_cb, &d, JSON_COMPACT) != 0) {
        out->len = mark;
        if (out->data)
            out->data[mark] = '\0';
        return d.rc ? d.rc : -ENOMEM;
    }
    return 0;
}

char *sb_canon_strndup(const char *s, size_t n)
{
    char *c = malloc(n + 1);
    if (!c)
        return NULL;
    if (n)
        memcpy(c, s, n);
    c[n] = '\0';
    return c;
}

int sb_canon_data_uri(const char *uri, char **media_type, char **data)
{
    *media_type = *data = NULL;
    if (strncmp(uri, "data:", 5) != 0)
        return -1;
    const char *comma = strchr(uri + 5, ',');
    if (!comma)
        return -1;
    static const char b64[] = ";base64";
    size_t meta = (size_t)(comma - (uri + 5));
    if (meta < sizeof b64 - 1 || memcmp(comma - (sizeof b64 - 1), b64, sizeof b64 - 1) != 0)
        return -1;
    size_t mt_len = meta - (sizeof b64 - 1);
    /* Parameters such as ";charset=..." before ";base64" are not part of the media type. */
    const char *semi = memchr(uri + 5, ';', mt_len);
    if (semi)
        mt_len = (size_t)(semi - (uri + 5));
    *media_type = sb_canon_strndup(uri + 5, mt_len);
    *data = strdup(comma + 1);
    if (!*media_type || !*data) {
        free(*media_type);
        free(*data);
        *media_type = *data = NULL;
        return -1;
    }
    return 0;
}

void sb_canon_random_id(const char *prefix, char *out, size_t cap)
{
    static const char alnum[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static _Thread_local uint64_t state;
    if (!state) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)out;
        if (!state)
            state = 0x9e3779b97f4a7c15ULL;
    }
    size_t pl = strlen(prefix);
    if (cap == 0)
        return;
    if (pl + 25 > cap) {
        out[0] = '\0';
        return;
    }
    memcpy(out, prefix, pl);
    for (size_t i = 0; i < 24; i++)
        out[pl + i] = alnum[sb_rand_next(&state) % (sizeof alnum - 1)];
    out[pl + 24] = '\0';
}

/* The pass-through proxy for OpenAI-dialect endpoints (chat/completions, completions,
 * embeddings) to OpenAI-compatible providers.
 *
 * The client's body goes upstream byte for byte with two splices at most: the `model` value
 * becomes the deployment's model, and a streaming request gets
 * stream_options.include_usage = true so the gateway always learns the usage (DESIGN.md:
 * "streamed usage billed as zero" is a failure of other gateways). When the client did not
 * ask for usage itself, the usage chunk and the "usage":null members are removed again
 * before the stream reaches it. */
#include "api/api.h"

#include "canon/anthropic_client.h"
#include "canon/codecs.h"
#include "core/log.h"
#include "core/rand.h"
#include "http/sse.h"
#include "json/scan.h"

#include <ctype.h>
#include <jansson.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 128

struct edit {
    size_t at, end; /* replace [at, end) */
    const char *text;
    size_t len;
};

/* Longest Retry-After the gateway waits out before retrying; past it, the next deployment or
 * fallback is tried (or the answer goes to the client). */
#define MAX_RETRY_AFTER_MS 30000

struct sb_proxy {
    struct sb_api_req *r;
    struct sb_exchange *x;
    const struct sb_provider_target *target;
    struct sb_transfer *t;
    struct sb_buf url;
    struct sb_buf body; /* the upstream request body */
    struct sb_buf resp; /* non-streaming response body */
    struct sb_buf ev;   /* scratch for one rewritten event */
    struct sb_sse_parser sse;
    struct curl_slist rid_node; /* x-request-id, prepended to the target's static headers */
    char rid_line[160];
    char content_type[128];
    char retry_after[64];
    char retry_after_ms[64];
    int status;
    bool stream;             /* the client asked for a stream */
    bool client_wants_usage; /* ... with stream_options.include_usage */
    bool streaming;          /* the response to the client is a stream now */
    bool stream_failed;      /* an error event was sent */
    bool too_large;
    /* The attempt plan (src/router/router.h for health and choice). */
    enum sb_endpoint ep;
    struct edit edits[4]; /* edits[0] is the `model` value, rewritten for each deployment */
    int ne;
    int group;            /* alias being tried */
    size_t ntags;         /* the request's tags, for tag routing (tags[] below) */
    int retry_override;   /* x-switchboard-config retry.attempts, else -1 */
    int req_fallbacks[8]; /* the request's own "fallbacks" (LiteLLM), replacing the config's */
    size_t n_req_fallbacks;
    const int *chain; /* fallback aliases being tried (one of the requested alias's lists) */
    size_t nchain;
    size_t chain_pos;   /* next one in `chain` */
    int fallbacks_done; /* capped by max_fallbacks */
    int dep;            /* deployment of the current attempt */
    int next_dep;       /* deployment chosen for the next attempt */
    int tried[16];      /* deployments tried in the current group */
    size_t ntried;
    int retries_left;
    int retries_done;
    uv_timer_t *backoff;
    bool calling;             /* the router counts this attempt as in flight */
    uint64_t attempt_ns;      /* when the current attempt started */
    uint64_t first_byte_ns;   /* when its response status arrived */
    bool resp_indexed;        /* resp_idx holds this attempt's response */
    char wild[257];           /* what a wildcard alias's '*' matched in the requested model */
    struct sb_buf model_json; /* the upstream model of a wildcard deployment, as JSON */
    char model[257];          /* the current attempt's upstream model */
    char req_model[257];      /* the model the client asked for */
    bool ebatch_continue;     /* the next launch is the next batch of the same attempt */
    char amzn_error[128];     /* Bedrock's x-amzn-errortype header */
    /* Translation (src/canon): the client's dialect and the current attempt's. */
    const struct sb_client_codec *client;
    const struct sb_provider_codec *codec; /* the target's, when this attempt translates */
    bool xlate;                            /* this attempt's bodies are translated */
    bool pass_anthropic; /* Anthropic client to Anthropic provider: bytes pass through */
    bool canon_ready;    /* canon holds the client's request, decoded */
    bool embed_ready;    /* ereq holds it (embeddings) */
    bool have_usage;     /* usage was read from the canonical events */
    struct sb_canon_req canon;
    struct sb_embed_req ereq;
    struct sb_embed_resp eresp;
    size_t ebatch_from, ebatch_to; /* the inputs of the embeddings call under way */
    void *dec;                     /* provider stream decoder */
    void *enc;                     /* client stream encoder */
    struct sb_canon_resp cresp;
    struct sb_canon_error cerr; /* the current attempt's provider error, decoded */
    bool cerr_set;
    struct curl_slist sig_nodes[4];
    /* Scratch space, last and not zeroed at allocation: written before it is read. */
    char sig_lines[4][1024];
    char tags[8][65];
    int fdeps[64]; /* a group restricted to the request's tags (routing_group) */
    double fweights[64];
    int forder[64];
    int64_t frpm[64], ftpm[64];
    double fcost[64];
    struct sb_router_group frg;
    struct sb_json_index resp_idx; /* the 2xx response, indexed once by classify() */
};

/* ---------------------------------------------------------------- usage */

static int64_t int_of(const char *s, size_t n, const struct sb_json_member *m, int count)
{
    int64_t out;
    if (count != 1 || sb_json_int64(s, n, &m->value, &out) != 0 || out < 0)
        return -1;
    return out;
}

static int64_t inner_int(const char *s, size_t n, const struct sb_json_member *obj, int count,
                         const char *key)
{
    struct sb_json_member m;
    if (count != 1 || obj->value.type != SB_JSON_OBJECT ||
        sb_json_object_get(s, n, &obj->value, key, &m) != 0)
        return -1;
    return int_of(s, n, &m, 1);
}

/* Reads an OpenAI usage object into the record (OpenAI's prompt_tokens includes cached
 * input, and completion_tokens includes reasoning). One pass over its members. */
static void read_usage(struct sb_request_record *rec, const char *s, size_t n,
                       const struct sb_json_span *usage)
{
    static const char *const keys[] = {"prompt_tokens", "completion_tokens",
                                       "prompt_tokens_details", "completion_tokens_details"};
    struct sb_json_member m[4];
    int c[4];
    if (usage->type != SB_JSON_OBJECT || sb_json_object_get_many(s, n, usage, keys, 4, m, c) != 0)
        return;
    int64_t in = int_of(s, n, &m[0], c[0]);
    int64_t out = int_of(s, n, &m[1], c[1]);
    if (in >= 0)
        rec->tokens_in = in;
    if (out >= 0)
        rec->tokens_out = out;
    else if (in >= 0)
        rec->tokens_out = 0; /* embeddings have no completion tokens */
    int64_t cached = inner_int(s, n, &m[2], c[2], "cached_tokens");
    int64_t reasoning = inner_int(s, n, &m[3], c[3], "reasoning_tokens");
    if (cached >= 0)
        rec->tokens_cached = cached;
    if (reasoning >= 0)
        rec->tokens_reasoning = reasoning;
}

/* ---------------------------------------------------------------- finishing */

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void xlate_reset_stream(struct sb_proxy *p)
{
    if (p->dec && p->codec)
        p->codec->stream_free(p->dec);
    p->dec = NULL;
    if (p->enc && p->client)
        p->client->enc_free(p->enc);
    p->enc = NULL;
}

static void proxy_free(struct sb_proxy *p)
{
    xlate_reset_stream(p);
    sb_canon_req_free(&p->canon);
    sb_embed_req_free(&p->ereq);
    sb_embed_resp_free(&p->eresp);
    sb_canon_resp_free(&p->cresp);
    sb_buf_free(&p->model_json);
    if (p->backoff) {
        uv_timer_stop(p->backoff);
        uv_close((uv_handle_t *)p->backoff, free_handle);
    }
    sb_buf_free(&p->url);
    sb_buf_free(&p->body);
    sb_buf_free(&p->resp);
    sb_buf_free(&p->ev);
    sb_sse_parser_free(&p->sse);
    free(p);
}

static void detach(struct sb_proxy *p)
{
    p->r->proxy = NULL;
    proxy_free(p);
}

static void end_call(struct sb_proxy *p, bool ok);

void sb_proxy_abort(struct sb_api_req *r)
{
    struct sb_proxy *p = r->proxy;
    end_call(p, false);
    if (p->t)
        sb_transfer_cancel(p->t);
    p->t = NULL;
    detach(p);
}

static void count_upstream_error(struct sb_proxy *p, enum sb_upstream_error_kind kind)
{
    struct sb_gw_worker *gw_w = p->r->gw_w;
    sb_metrics_upstream_error(gw_w->gw->metrics, gw_w->index, p->r->rec.model, kind);
}

/* Replaces every occurrence of the deployment's key in an upstream body before it reaches the
 * client: some providers quote the key they were given in their error messages. */
static void redact_key(struct sb_proxy *p)
{
    const char *key = p->target->d->api_key;
    if (!key)
        return;
    size_t klen = strlen(key);
    if (klen < 4 || p->resp.len < klen)
        return;
    static const char mask[] = "[redacted]";
    char *hit;
    size_t from = 0;
    while ((hit = memmem(p->resp.data + from, p->resp.len - from, key, klen)) != NULL) {
        size_t at = (size_t)(hit - p->resp.data);
        struct sb_buf out;
        sb_buf_init(&out, p->resp.max);
        if (sb_buf_append(&out, p->resp.data, at) || sb_buf_append_str(&out, mask) ||
            sb_buf_append(&out, hit + klen, p->resp.len - at - klen)) {
            /* Could not rebuild: blank the key in place instead, which cannot fail. */
            sb_buf_free(&out);
            memset(hit, '*', klen);
            from = at + klen;
            continue;
        }
        sb_buf_free(&p->resp);
        p->resp = out;
        from = at + sizeof mask - 1;
    }
}

static void stream_error_event(struct sb_proxy *p, const char *code, const char *msg)
{
    if (p->stream_failed)
        return;
    p->stream_failed = true;
    p->r->rec.error_code = code;
    if (p->xlate && p->enc) { /* in the client's dialect, by its encoder */
        struct sb_canon_error ce;
        sb_canon_error_set(&ce, 502, SB_ERRK_SERVER, "api_error", "%s", msg);
        sb_buf_reset(&p->ev);
        if (p->client->enc_error(p->enc, &ce, &p->ev) == 0)
            sb_http_stream_write(p->x, p->ev.data, p->ev.len);
        return;
    }
    if (p->r->dialect == SB_DIALECT_ANTHROPIC) {
        struct sb_error ae;
        sb_error_set(&ae, 502, "api_error", code, NULL, "%s", msg);
        struct sb_buf json, ev;
        sb_buf_init(&json, 4096);
        sb_buf_init(&ev, 8192);
        if (sb_error_render_anthropic(&ae, &json) == 0 &&
            sb_sse_write(&ev, "error", 5, json.data, json.len) == 0)
            sb_http_stream_write(p->x, ev.data, ev.len);
        sb_buf_free(&json);
        sb_buf_free(&ev);
        return;
    }
    struct sb_error e;
    sb_error_set(&e, 502, "api_error", code, NULL, "%s", msg);
    struct sb_buf json, ev;
    sb_buf_init(&json, 4096);
    sb_buf_init(&ev, 8192);
    if (sb_error_render_openai(&e, &json) == 0 &&
        sb_sse_write(&ev, NULL, 0, json.data, json.len) == 0)
        sb_http_stream_write(p->x, ev.data, ev.len);
    sb_buf_free(&json);
    sb_buf_free(&ev);
}

/* ---------------------------------------------------------------- translation */

/* Canonical usage into the record: OpenAI's view (prompt includes cached input, completion
 * includes reasoning). */
static void record_usage(struct sb_proxy *p, const struct sb_usage *u)
{
    struct sb_request_record *rec = &p->r->rec;
    int64_t prompt = sb_usage_prompt(u);
    if (prompt >= 0)
        rec->tokens_in = prompt;
    if (u->output >= 0)
        rec->tokens_out = u->output;
    if (u->cache_read >= 0)
        rec->tokens_cached = u->cache_read;
    if (u->reasoning >= 0)
        rec->tokens_reasoning = u->reasoning;
    p->have_usage = true;
}

/* One canonical event of a provider stream: into the client's encoder and out, or (same
 * dialect on both sides) only read for its usage. */
static int on_canon(void *ud, const struct sb_canon_event *ev)
{
    struct sb_proxy *p = ud;
    if (ev->type == SB_EV_START || ev->type == SB_EV_USAGE)
        record_usage(p, &ev->usage);
    if (p->pass_anthropic || p->stream_failed)
        return 0;
    sb_buf_reset(&p->ev);
    if (ev->type == SB_EV_ERROR) {
        p->stream_failed = true;
        p->r->rec.error_code = "upstream_stream_error";
        count_upstream_error(p, SB_UPERR_PROTOCOL);
        if (ev->error && p->client->enc_error(p->enc, ev->error, &p->ev) == 0)
            sb_http_stream_write(p->x, p->ev.data, p->ev.len);
        return 1;
    }
    if (p->client->enc_event(p->enc, ev, &p->ev) != 0) {
        count_upstream_error(p, SB_UPERR_PROTOCOL);
        stream_error_event(p, "upstream_invalid_response",
                           "The provider's stream could not be translated.");
        return 1;
    }
    if (p->ev.len && sb_http_stream_write(p->x, p->ev.data, p->ev.len) != 0)
        return 1;
    return 0;
}

/* ---------------------------------------------------------------- stream events */

/* One upstream event: read usage, drop or trim what the client did not ask for, forward. */
static int on_event(void *ud, const struct sb_sse_event *ev)
{
    struct sb_proxy *p = ud;
    if (p->stream_failed)
        return 1;
    struct sb_buf *out = &p->ev;
    sb_buf_reset(out);
    if (ev->is_comment) {
        /* Keep-alive comments (DeepSeek, OpenRouter, vLLM) keep idle clients connected. */
        if (sb_buf_append_char(out, ':') || sb_buf_append(out, ev->data, ev->data_len) ||
            sb_buf_append(out, "\n\n", 2))
            return 1;
        return sb_http_stream_write(p->x, out->data, out->len) ? 1 : 0;
    }
    const char *s = ev->data;
    size_t n = ev->data_len;
    if (n == 6 && memcmp(s, "[DONE]", 6) == 0)
        return sb_http_stream_write(p->x, "data: [DONE]\n\n", 14) ? 1 : 0;

    struct sb_json_index idx;
    if (sb_json_validate_index(s, n, JSON_MAX_DEPTH, &idx) != 0 ||
        idx.root.type != SB_JSON_OBJECT) {
        count_upstream_error(p, SB_UPERR_PROTOCOL);
        stream_error_event(p, "upstream_invalid_response",
                           "The provider sent an event that is not a JSON object.");
        return 1;
    }
    const struct sb_json_span root = idx.root;
    const char *data = s;
    size_t data_len = n;
    static const char *const keys[] = {"usage", "choices"};
    struct sb_json_member m[2];
    int c[2];
    sb_json_index_get_many(s, n, &idx, keys, 2, m, c);
    const struct sb_json_member *usage = &m[0];
    if (c[0] == 1 && usage->value.type == SB_JSON_OBJECT)
        read_usage(&p->r->rec, s, n, &usage->value);
    struct sb_buf trimmed;
    sb_buf_init(&trimmed, p->sse.max_event_bytes);
    if (c[0] == 1 && !p->client_wants_usage) {
        /* The final usage chunk exists only because the gateway asked for it. */
        if (usage->value.type == SB_JSON_OBJECT && c[1] == 1 && m[1].value.type == SB_JSON_ARRAY &&
            sb_json_array_len(s, n, &m[1].value) == 0) {
            sb_buf_free(&trimmed);
            return 0;
        }
        if (usage->value.type == SB_JSON_NULL &&
            sb_json_remove_member(s, n, &root, usage, &trimmed) == 0) {
            data = trimmed.data;
            data_len = trimmed.len;
        }
    }
    int rc = 0;
    if (sb_sse_write(out, ev->event_len ? ev->event : NULL, ev->event_len, data, data_len) != 0 ||
        sb_http_stream_write(p->x, out->data, out->len) != 0)
        rc = 1;
    sb_buf_free(&trimmed);
    return rc;
}

/* ---------------------------------------------------------------- transfer callbacks */

static void on_status(void *ud, int status)
{
    struct sb_proxy *p = ud;
    p->status = status;
    p->first_byte_ns = uv_hrtime();
    struct sb_request_record *rec = &p->r->rec;
    rec->upstream_ttfb_s = (double)(uv_hrtime() - rec->upstream_start_ns) / 1e9;
}

static void copy_header(char *dst, size_t cap, const char *v, size_t n)
{
    if (n >= cap)
        n = cap - 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x20 || c == 0x7f) { /* never let a provider inject header lines */
            n = i;
            break;
        }
    }
    memcpy(dst, v, n);
    dst[n] = '\0';
}

static void on_header(void *ud, const char *name, size_t nlen, const char *v, size_t vlen)
{
    struct sb_proxy *p = ud;
    if (nlen == 12 && strncasecmp(name, "content-type", 12) == 0)
        copy_header(p->content_type, sizeof p->content_type, v, vlen);
    else if (nlen == 11 && strncasecmp(name, "retry-after", 11) == 0)
        copy_header(p->retry_after, sizeof p->retry_after, v, vlen);
    else if (nlen == 14 && strncasecmp(name, "retry-after-ms", 14) == 0)
        copy_header(p->retry_after_ms, sizeof p->retry_after_ms, v, vlen);
    else if (nlen == 16 && strncasecmp(name, "x-amzn-errortype", 16) == 0)
        copy_header(p->amzn_error, sizeof p->amzn_error, v, vlen);
}

/* x-request-id, and which deployment answered after how many upstream calls. */
static void response_headers(struct sb_proxy *p, struct sb_buf *h)
{
    struct sb_api_req *r = p->r;
    const struct sb_config *cfg = r->gw_w->gw->cfg;
    sb_buf_append(h, r->rid_header, r->rid_header_len);
    sb_buf_append_str(h, "x-switchboard-deployment: ");
    sb_buf_append_str(h, p->target->d->litellm_model);
    sb_buf_append_str(h, "\r\nx-switchboard-attempts: ");
    sb_buf_append_i64(h, r->rec.attempts);
    sb_buf_append(h, "\r\n", 2);
    /* The gateway's own time so far: everything but waiting for providers (to the first
     * byte for a stream, whose response starts now). */
    uint64_t now = uv_hrtime();
    uint64_t upstream = 0;
    if (r->rec.upstream_start_ns)
        upstream = (p->streaming && p->first_byte_ns ? p->first_byte_ns
                    : r->rec.upstream_end_ns         ? r->rec.upstream_end_ns
                                                     : now) -
                   r->rec.upstream_start_ns;
    uint64_t total = now - p->x->t_start_ns;
    uint64_t own_us = (total > upstream ? total - upstream : 0) / 1000;
    char ms[48];
    snprintf(ms, sizeof ms, "x-switchboard-overhead-ms: %llu.%03llu\r\n",
             (unsigned long long)(own_us / 1000), (unsigned long long)(own_us % 1000));
    sb_buf_append_str(h, ms);
    if (r->rec.served_by >= 0) {
        sb_buf_append_str(h, "x-switchboard-fallback: ");
        sb_buf_append_str(h, cfg->model_names[r->rec.served_by]);
        sb_buf_append(h, "\r\n", 2);
    }
}

static bool is_event_stream(const char *ct)
{
    return strncasecmp(ct, "text/event-stream", 17) == 0;
}

static void on_drain(struct sb_exchange *x)
{
    struct sb_api_req *r = x->hdata;
    if (r->proxy && r->proxy->t)
        sb_transfer_resume(r->proxy->t);
}

static size_t on_body(void *ud, const char *data, size_t len)
{
    struct sb_proxy *p = ud;
    struct sb_exchange *x = p->x;
    bool stream_now =
        p->stream && p->status == 200 &&
        (is_event_stream(p->content_type) || (p->xlate && p->codec->dialect == SB_DIALECT_BEDROCK));
    if (!stream_now) {
        if (sb_buf_append(&p->resp, data, len) != 0) {
            p->too_large = true;
            return 0;
        }
        return len;
    }
    if (p->stream_failed)
        return len; /* drain and ignore the rest; the transfer ends with the client's stream */
    /* Backpressure: a slow client pauses the provider instead of growing our buffer. */
    if (sb_http_pending(x) > SB_HTTP_HIGH_WATER) {
        x->want_drain = true;
        return SB_UP_PAUSE;
    }
    if (!p->streaming) {
        p->streaming = true;
        sb_router_success(p->r->gw_w->gw->router, p->dep);
        char hdr[1024];
        struct sb_buf h = {.data = hdr, .len = 0, .cap = sizeof hdr, .max = sizeof hdr - 1};
        sb_buf_append_str(&h, "Cache-Control: no-cache\r\n");
        response_headers(p, &h);
        sb_http_stream_start(x, 200, "text/event-stream; charset=utf-8", h.data, h.len);
        if (p->xlate || p->pass_anthropic) {
            size_t max_ev = (size_t)p->r->gw_w->gw->cfg->server.max_event_bytes;
            p->dec = p->codec->stream_new(max_ev);
            if (p->xlate)
                p->enc = p->client->enc_new(p->req_model, p->client_wants_usage);
            if (!p->dec || (p->xlate && !p->enc)) {
                stream_error_event(p, "internal_error", "Out of memory.");
                return len;
            }
        }
    }
    if (p->pass_anthropic) { /* untouched bytes; the decoder only reads the usage */
        if (sb_http_stream_write(x, data, len) != 0)
            return len;
        if (p->dec && p->codec->stream_feed(p->dec, data, len, on_canon, p) != 0) {
            p->codec->stream_free(p->dec);
            p->dec = NULL;
        }
        return len;
    }
    if (p->xlate) {
        int xrc = p->codec->stream_feed(p->dec, data, len, on_canon, p);
        if (xrc != 0 && xrc != SB_CANON_E_STOP && !p->stream_failed) {
            count_upstream_error(p, SB_UPERR_PROTOCOL);
            if (xrc == -E2BIG)
                stream_error_event(p, "upstream_response_too_large",
                                   "The provider sent a stream event larger than the configured "
                                   "maximum.");
            else
                stream_error_event(p, "upstream_invalid_response",
                                   "The provider's stream is malformed.");
        }
        return len;
    }
    int rc = sb_sse_parser_feed(&p->sse, data, len, on_event, p);
    if (rc == SB_SSE_E_TOO_BIG) {
        count_upstream_error(p, SB_UPERR_PROTOCOL);
        stream_error_event(p, "upstream_response_too_large",
                           "The provider sent a stream event larger than the configured maximum.");
    }
    return len;
}

static void finish_stream(struct sb_proxy *p, int result)
{
    if ((p->xlate || p->pass_anthropic) && p->dec && result == SB_UP_OK && !p->stream_failed) {
        int rc = p->codec->stream_end(p->dec, on_canon, p);
        if (rc == 0 && p->xlate && !p->stream_failed) {
            sb_buf_reset(&p->ev);
            if (p->client->enc_end(p->enc, &p->ev) != 0) { /* ended without its finish */
                count_upstream_error(p, SB_UPERR_PROTOCOL);
                stream_error_event(p, "upstream_stream_cut",
                                   "The provider's stream ended before it was complete.");
            } else if (p->ev.len) {
                sb_http_stream_write(p->x, p->ev.data, p->ev.len);
            }
        } else if (rc != 0 && rc != SB_CANON_E_STOP && !p->stream_failed) {
            count_upstream_error(p, SB_UPERR_PROTOCOL);
            stream_error_event(p, "upstream_stream_cut",
                               "The provider's stream ended before it was complete.");
        }
        sb_http_stream_end(p->x);
        return;
    }
    if (result != SB_UP_OK && !p->stream_failed) {
        if (result == SB_UP_E_TIMEOUT) {
            count_upstream_error(p, SB_UPERR_TIMEOUT);
            stream_error_event(p, "upstream_timeout",
                               "The provider stopped sending before the stream was complete "
                               "(stream_timeout).");
        } else {
            count_upstream_error(p, SB_UPERR_PROTOCOL);
            stream_error_event(p, "upstream_stream_cut",
                               "The provider's stream ended before it was complete.");
        }
    } else if (!p->xlate && !p->pass_anthropic && sb_sse_parser_end(&p->sse) && !p->stream_failed) {
        count_upstream_error(p, SB_UPERR_PROTOCOL);
        stream_error_event(p, "upstream_stream_cut",
                           "The provider's stream ended in the middle of an event.");
    }
    sb_http_stream_end(p->x);
}

static void respond_body(struct sb_proxy *p, int status, const char *ct, const struct sb_buf *body,
                         bool retry_hint)
{
    char hdr[1024];
    struct sb_buf h = {.data = hdr, .len = 0, .cap = sizeof hdr, .max = sizeof hdr - 1};
    response_headers(p, &h);
    if (retry_hint && p->retry_after[0])
        sb_buf_printf(&h, "Retry-After: %s\r\n", p->retry_after);
    else if (retry_hint && p->cerr_set && p->cerr.retry_after_ms >= 0)
        sb_buf_printf(&h, "Retry-After: %lld\r\n",
                      (long long)((p->cerr.retry_after_ms + 999) / 1000));
    if (retry_hint && p->retry_after_ms[0])
        sb_buf_printf(&h, "retry-after-ms: %s\r\n", p->retry_after_ms);
    sb_http_respond(p->x, status, ct, h.data, h.len, body->data ? body->data : "", body->len);
}

/* A complete answer of a translated attempt (or of Anthropic to Anthropic, whose bytes pass
 * through and are only read for their usage). */
static void finish_translated(struct sb_proxy *p, int status)
{
    struct sb_api_req *r = p->r;
    const struct sb_server_config *sc = &r->gw_w->gw->cfg->server;
    bool ok = status >= 200 && status < 300;
    if (!ok) {
        count_upstream_error(p, status >= 500 ? SB_UPERR_STATUS_5XX : SB_UPERR_STATUS_4XX);
        redact_key(p);
        if (p->pass_anthropic || !p->cerr_set) {
            respond_body(p, status, p->content_type[0] ? p->content_type : "application/json",
                         &p->resp, true);
            return;
        }
        struct sb_buf out;
        sb_buf_init(&out, 64 * 1024);
        int st = status;
        if (p->client->render_error(&p->cerr, &out, &st) != 0) {
            sb_buf_free(&out);
            sb_api_fail(r, 502, "api_error", "upstream_error", NULL, "The provider failed.");
            return;
        }
        r->rec.error_code = "upstream_error";
        respond_body(p, st, "application/json", &out, true);
        sb_buf_free(&out);
        return;
    }
    struct sb_buf out;
    sb_buf_init(&out, (size_t)sc->max_response_bytes + 65536);
    if (p->ep == SB_EP_EMBEDDINGS) {
        r->rec.tokens_in = p->eresp.input_tokens;
        r->rec.tokens_out = 0;
        if (sb_openai_render_embeddings(&p->eresp, p->req_model, p->ereq.base64, &out) != 0) {
            sb_buf_free(&out);
            sb_api_fail(r, 502, "api_error", "upstream_response_too_large", NULL,
                        "The embeddings are larger than the configured maximum.");
            return;
        }
        respond_body(p, 200, "application/json", &out, false);
        sb_buf_free(&out);
        return;
    }
    sb_canon_resp_free(&p->cresp);
    sb_canon_resp_init(&p->cresp, (size_t)sc->max_response_bytes);
    int rc = p->ep == SB_EP_COUNT_TOKENS
                 ? 0
                 : p->codec->decode_response(p->resp.data ? p->resp.data : "", p->resp.len,
                                             sb_canon_resp_event, &p->cresp);
    if (rc == 0 && p->ep != SB_EP_COUNT_TOKENS)
        record_usage(p, &p->cresp.usage);
    if (p->pass_anthropic) {
        sb_buf_free(&out);
        respond_body(p, status, p->content_type[0] ? p->content_type : "application/json", &p->resp,
                     false);
        return;
    }
    if (rc != 0) {
        sb_buf_free(&out);
        count_upstream_error(p, SB_UPERR_PROTOCOL);
        sb_api_fail(r, 502, "api_error", "upstream_invalid_response", NULL,
                    "The provider's response could not be read.");
        return;
    }
    int st = 200;
    if (p->cresp.has_error)
        rc = p->client->render_error(&p->cresp.error, &out, &st);
    else
        rc = p->client->render_response(&p->cresp, p->req_model, &out);
    if (rc != 0) {
        sb_buf_free(&out);
        sb_api_fail(r, 502, "api_error", "upstream_response_too_large", NULL,
                    "The translated response is larger than the configured maximum.");
        return;
    }
    respond_body(p, st, "application/json", &out, false);
    sb_buf_free(&out);
}

static void finish_plain(struct sb_proxy *p, int result)
{
    struct sb_api_req *r = p->r;
    if (result == SB_UP_OK && (p->xlate || p->pass_anthropic)) {
        finish_translated(p, p->status ? p->status : 502);
        return;
    }
    if (result != SB_UP_OK) {
        if (p->too_large) {
            count_upstream_error(p, SB_UPERR_PROTOCOL);
            sb_api_fail(r, 502, "api_error", "upstream_response_too_large", NULL,
                        "The provider's response is larger than the configured maximum.");
        } else if (result == SB_UP_E_TIMEOUT) {
            count_upstream_error(p, SB_UPERR_TIMEOUT);
            sb_api_fail(r, 504, "api_error", "upstream_timeout", NULL,
                        "The provider did not answer in time.");
        } else if (result == SB_UP_E_CONNECT) {
            count_upstream_error(p, SB_UPERR_CONNECT);
            sb_api_fail(r, 502, "api_error", "upstream_unavailable", NULL,
                        "Could not connect to the provider.");
        } else {
            count_upstream_error(p, SB_UPERR_PROTOCOL);
            sb_api_fail(r, 502, "api_error", "upstream_protocol_error", NULL,
                        "The provider's response was malformed or cut short.");
        }
        return;
    }
    int status = p->status ? p->status : 502;
    bool ok = status >= 200 && status < 300;
    if (ok) {
        struct sb_json_index *idxp = &p->resp_idx;
        if (!p->resp_indexed && sb_json_validate_index(p->resp.data ? p->resp.data : "",
                                                       p->resp.len, JSON_MAX_DEPTH, idxp) != 0) {
            count_upstream_error(p, SB_UPERR_PROTOCOL);
            sb_api_fail(r, 502, "api_error", "upstream_invalid_response", NULL,
                        "The provider's response is not valid JSON.");
            return;
        }
        static const char *const keys[] = {"usage"};
        struct sb_json_member usage;
        int count;
        if (idxp->root.type == SB_JSON_OBJECT &&
            sb_json_index_get_many(p->resp.data, p->resp.len, idxp, keys, 1, &usage, &count) == 0 &&
            count == 1)
            read_usage(&r->rec, p->resp.data, p->resp.len, &usage.value);
    } else {
        count_upstream_error(p, status >= 500 ? SB_UPERR_STATUS_5XX : SB_UPERR_STATUS_4XX);
        redact_key(p);
    }
    char hdr[1024];
    struct sb_buf h = {.data = hdr, .len = 0, .cap = sizeof hdr, .max = sizeof hdr - 1};
    response_headers(p, &h);
    if (!ok && p->retry_after[0])
        sb_buf_printf(&h, "Retry-After: %s\r\n", p->retry_after);
    if (!ok && p->retry_after_ms[0])
        sb_buf_printf(&h, "retry-after-ms: %s\r\n", p->retry_after_ms);
    sb_http_respond(p->x, status, p->content_type[0] ? p->content_type : "application/json", h.data,
                    h.len, p->resp.data, p->resp.len);
}

static void launch(struct sb_proxy *p);

static bool was_tried(const struct sb_proxy *p, int dep)
{
    for (size_t i = 0; i < p->ntried; i++)
        if (p->tried[i] == dep)
            return true;
    return false;
}

/* Retry-After as milliseconds: seconds (a number) or retry-after-ms; -1 when absent or an
 * HTTP date (then the gateway's own backoff applies). */
static int64_t retry_after_ms(const struct sb_proxy *p)
{
    char *end;
    if (p->retry_after_ms[0]) {
        double v = strtod(p->retry_after_ms, &end);
        if (end != p->retry_after_ms && *end == '\0' && v >= 0 && v < 1e9)
            return (int64_t)v;
    }
    if (p->retry_after[0]) {
        double v = strtod(p->retry_after, &end);
        if (end != p->retry_after && *end == '\0' && v >= 0 && v < 1e6)
            return (int64_t)(v * 1000);
    }
    if (p->cerr_set && p->cerr.retry_after_ms >= 0) /* Gemini's RetryInfo, in the body */
        return p->cerr.retry_after_ms;
    return -1;
}

/* Exponential backoff with jitter: 250 ms doubling up to 4 s, times 0.5..1. */
static uint64_t backoff_ms(struct sb_proxy *p)
{
    uint64_t base = 250u << (p->retries_done < 4 ? p->retries_done : 4);
    return base / 2 + (sb_rand_next(&p->r->gw_w->rng) >> 33) % (base / 2 + 1);
}

static bool has_tag(const struct sb_deployment *d, const char *tag)
{
    for (size_t i = 0; i < d->n_tags; i++)
        if (strcmp(d->tags[i], tag) == 0)
            return true;
    return false;
}

/* The deployments of alias g that may serve this request. With enable_tag_filtering
 * (LiteLLM's rule): those sharing a tag with the request; if none, those tagged "default";
 * a request without tags goes to the "default" ones when there are any, else to all. A group
 * in which no deployment has tags is not filtered. */
static const struct sb_router_group *routing_group(struct sb_proxy *p, int g)
{
    struct sb_gateway *gw = p->r->gw_w->gw;
    const struct sb_model_group *grp = &gw->groups[g];
    if (!gw->cfg->router.enable_tag_filtering)
        return &grp->rg;
    if (!grp->tagged) /* a group none of whose deployments has tags serves everyone */
        return &grp->rg;
    for (int pass = p->ntags ? 0 : 1; pass < 2; pass++) {
        size_t k = 0;
        for (size_t i = 0; i < grp->n && k < 64; i++) {
            const struct sb_deployment *d = &gw->cfg->deployments[grp->deployments[i]];
            bool take = false;
            for (size_t t = 0; pass == 0 && t < p->ntags && !take; t++)
                take = has_tag(d, p->tags[t]);
            if (pass == 1)
                take = has_tag(d, "default");
            if (!take)
                continue;
            p->fdeps[k] = grp->deployments[i];
            p->fweights[k] = grp->weights ? grp->weights[i] : 1;
            p->forder[k] = grp->order ? grp->order[i] : 0;
            p->frpm[k] = grp->rpm ? grp->rpm[i] : 0;
            p->ftpm[k] = grp->tpm ? grp->tpm[i] : 0;
            p->fcost[k] = grp->cost ? grp->cost[i] : -1;
            k++;
        }
        if (k || (pass == 1 && p->ntags)) {
            p->frg = (struct sb_router_group){p->fdeps, p->fweights, p->forder, k,
                                              p->frpm,  p->ftpm,     p->fcost};
            return &p->frg;
        }
    }
    return &grp->rg; /* no tags, no "default" deployments: all of them */
}

/* The request's tags: x-switchboard-tags (comma-separated), else the body's metadata.tags. */
static void read_tags(struct sb_proxy *p, const char *s, size_t n,
                      const struct sb_json_member *metadata, int metadata_count)
{
    const struct sb_http_str *h = sb_http_header_get(&p->x->req, "x-switchboard-tags");
    if (h) {
        size_t i = 0;
        while (i < h->n && p->ntags < 8) {
            while (i < h->n && (h->p[i] == ' ' || h->p[i] == ','))
                i++;
            size_t start = i;
            while (i < h->n && h->p[i] != ',')
                i++;
            size_t end = i;
            while (end > start && h->p[end - 1] == ' ')
                end--;
            if (end > start && end - start < sizeof p->tags[0]) {
                memcpy(p->tags[p->ntags], h->p + start, end - start);
                p->tags[p->ntags++][end - start] = '\0';
            }
        }
        return;
    }
    struct sb_json_member tags;
    if (metadata_count != 1 || metadata->value.type != SB_JSON_OBJECT ||
        sb_json_object_get(s, n, &metadata->value, "tags", &tags) != 0 ||
        tags.value.type != SB_JSON_ARRAY)
        return;
    size_t pos = 0;
    struct sb_json_span el;
    while (p->ntags < 8 && sb_json_array_next(s, n, &tags.value, &pos, &el) == 0) {
        size_t len;
        if (el.type == SB_JSON_STRING &&
            sb_json_string_copy(s, n, &el, p->tags[p->ntags], sizeof p->tags[0], &len) == 0 &&
            len > 0)
            p->ntags++;
    }
}

/* What went wrong, as LiteLLM's retry_policy names it; decides retries, cooldown, fallbacks. */
enum err_class {
    E_OK,
    E_AUTH,           /* 401, 403: this deployment's key */
    E_NOT_FOUND,      /* 404: this deployment's model */
    E_TIMEOUT,        /* no answer in time, 408 */
    E_RATE_LIMIT,     /* 429 */
    E_QUOTA,          /* 429 for an exhausted quota or balance */
    E_SERVER,         /* connection failures, 5xx, 409, 425, malformed answers */
    E_CONTEXT_WINDOW, /* 400: the prompt is too long for this model */
    E_CONTENT_POLICY, /* 400: the provider's content filter refused */
    E_BAD_REQUEST,    /* any other 4xx: the client's mistake */
    E_FINAL,          /* the response is over the size cap, or the gateway's own failure */
};

static bool body_has(const struct sb_proxy *p, const char *needle)
{
    return p->resp.data && memmem(p->resp.data, p->resp.len, needle, strlen(needle));
}

static enum err_class classify(struct sb_proxy *p, int result)
{
    if (result != SB_UP_OK) {
        if (p->too_large)
            return E_FINAL;
        if (result == SB_UP_E_TIMEOUT)
            return E_TIMEOUT;
        return result == SB_UP_E_CONNECT || result == SB_UP_E_PROTOCOL ? E_SERVER : E_FINAL;
    }
    int st = p->status;
    if (p->xlate || p->pass_anthropic) { /* the dialect's own error shapes */
        if (st >= 200 && st < 300)
            return E_OK;
        redact_key(p);
        p->codec->decode_error(st, p->resp.data ? p->resp.data : "", p->resp.len, &p->cerr);
        if (p->codec->dialect == SB_DIALECT_BEDROCK && p->amzn_error[0])
            sb_bedrock_error_type(&p->cerr, p->amzn_error);
        p->cerr_set = true;
        switch (p->cerr.kind) {
        case SB_ERRK_AUTH:
        case SB_ERRK_PERMISSION:
            return E_AUTH;
        case SB_ERRK_BILLING:
            return E_QUOTA;
        case SB_ERRK_NOT_FOUND:
            return E_NOT_FOUND;
        case SB_ERRK_CONTEXT_WINDOW:
            return E_CONTEXT_WINDOW;
        case SB_ERRK_CONTENT_POLICY:
            return E_CONTENT_POLICY;
        case SB_ERRK_RATE_LIMIT:
            return E_RATE_LIMIT;
        case SB_ERRK_OVERLOADED:
        case SB_ERRK_SERVER:
            return E_SERVER;
        case SB_ERRK_TIMEOUT:
            return E_TIMEOUT;
        case SB_ERRK_INVALID_REQUEST:
        case SB_ERRK_TOO_LARGE:
            break;
        }
        return E_BAD_REQUEST;
    }
    if (st >= 200 && st < 300) {
        /* Validated and indexed once here; finish_plain reads usage from the same index. */
        p->resp_indexed = sb_json_validate_index(p->resp.data ? p->resp.data : "", p->resp.len,
                                                 JSON_MAX_DEPTH, &p->resp_idx) == 0;
        return p->resp_indexed ? E_OK : E_SERVER;
    }
    switch (st) {
    case 401:
    case 403:
        return E_AUTH;
    case 404:
        return E_NOT_FOUND;
    case 408:
        return E_TIMEOUT;
    case 429:
        return body_has(p, "insufficient_quota") || body_has(p, "credit_balance") ? E_QUOTA
                                                                                  : E_RATE_LIMIT;
    case 409:
    case 425:
        return E_SERVER;
    case 400:
    case 413:
    case 422:
        /* OpenAI's and Azure's codes, and the wording other servers use. */
        if (body_has(p, "context_length_exceeded") || body_has(p, "maximum context length") ||
            body_has(p, "context window") || body_has(p, "too many tokens"))
            return E_CONTEXT_WINDOW;
        if (body_has(p, "content_policy_violation") || body_has(p, "content_filter") ||
            body_has(p, "content management policy"))
            return E_CONTENT_POLICY;
        return E_BAD_REQUEST;
    default:
        return st >= 500 ? E_SERVER : E_BAD_REQUEST;
    }
}

/* Retries allowed for an error class: retry_policy, else num_retries for the transient
 * classes and none for the others. */
static int class_retries(const struct sb_proxy *p, enum err_class c)
{
    const struct sb_router_config *rc = &p->r->gw_w->gw->cfg->router;
    int group = p->r->gw_w->gw->groups[p->group].retries;
    if (p->retry_override >= 0 && (c == E_TIMEOUT || c == E_RATE_LIMIT || c == E_SERVER))
        return p->retry_override;
    switch (c) {
    case E_AUTH:
        return rc->retries_auth >= 0 ? rc->retries_auth : 0;
    case E_TIMEOUT:
        return rc->retries_timeout >= 0 ? rc->retries_timeout : group;
    case E_RATE_LIMIT:
        return rc->retries_rate_limit >= 0 ? rc->retries_rate_limit : group;
    case E_SERVER:
        return rc->retries_server >= 0 ? rc->retries_server : group;
    case E_CONTENT_POLICY:
        return rc->retries_content_policy >= 0 ? rc->retries_content_policy : 0;
    case E_BAD_REQUEST:
        return rc->retries_bad_request >= 0 ? rc->retries_bad_request : 0;
    default:
        return 0;
    }
}

/* After a failed attempt: picks the next deployment (a retry in the same group, preferring
 * one not tried yet; then the first available alias of the fallback list that fits the
 * error), or returns false. */
static bool plan_next(struct sb_proxy *p, enum err_class c, uint64_t *delay)
{
    struct sb_gateway *gw = p->r->gw_w->gw;
    uint64_t now = sb_router_now_ms();
    *delay = 0;
    int64_t ra = retry_after_ms(p);
    if (p->retries_left > 0 && p->retries_done < class_retries(p, c) && ra <= MAX_RETRY_AFTER_MS) {
        int d = sb_router_pick(gw->router, gw->strategy, routing_group(p, p->group),
                               &p->r->gw_w->rr, &p->r->gw_w->rng, p->tried, p->ntried, now);
        if (d >= 0) {
            if (was_tried(p, d)) { /* the same deployment again: wait first */
                uint64_t wait = backoff_ms(p);
                uint64_t floor = (uint64_t)(gw->cfg->router.retry_after_s * 1000);
                if (wait < floor)
                    wait = floor;
                if (ra > 0 && (uint64_t)ra > wait)
                    wait = (uint64_t)ra;
                *delay = wait;
            }
            p->retries_done++;
            p->next_dep = d;
            return true;
        }
    }
    /* Which list: a context-length or content-policy error has its own. */
    const struct sb_model_group *first = &gw->groups[p->r->rec.model];
    const int *chain = first->fallbacks;
    size_t nchain = first->n_fallbacks;
    if (p->n_req_fallbacks) {
        chain = p->req_fallbacks;
        nchain = p->n_req_fallbacks;
    }
    if (c == E_CONTEXT_WINDOW) {
        chain = first->cw_fallbacks;
        nchain = first->n_cw_fallbacks;
    } else if (c == E_CONTENT_POLICY) {
        chain = first->cp_fallbacks;
        nchain = first->n_cp_fallbacks;
    } else if (c == E_BAD_REQUEST || c == E_FINAL) {
        return false;
    }
    if (chain != p->chain) {
        p->chain = chain;
        p->nchain = nchain;
        p->chain_pos = 0;
    }
    while (p->chain_pos < p->nchain && p->fallbacks_done < gw->cfg->router.max_fallbacks) {
        int g = p->chain[p->chain_pos++];
        if (g == p->group)
            continue;
        int d = sb_router_pick(gw->router, gw->strategy, routing_group(p, g), &p->r->gw_w->rr,
                               &p->r->gw_w->rng, NULL, 0, now);
        if (d < 0)
            continue;
        p->group = g;
        p->ntried = 0;
        p->retries_left = 0; /* one call per fallback: attempts <= 1 + retries + fallbacks */
        p->fallbacks_done++;
        p->r->rec.served_by = g;
        p->next_dep = d;
        return true;
    }
    return false;
}

/* The router's in-flight count and latency sample for the attempt that just ended. A stream
 * is measured to its first byte (what its client waits for), a plain call to its end. */
static void end_call(struct sb_proxy *p, bool ok)
{
    if (!p->calling)
        return;
    p->calling = false;
    double latency = -1;
    if (ok) {
        uint64_t end = p->stream && p->first_byte_ns ? p->first_byte_ns : uv_hrtime();
        latency = (double)(end - p->attempt_ns) / 1e9;
    }
    sb_router_end(p->r->gw_w->gw->router, p->dep, latency);
}

static void on_backoff(uv_timer_t *t)
{
    launch(t->data);
}

static void on_done(void *ud, int result, const char *detail)
{
    struct sb_proxy *p = ud;
    struct sb_api_req *r = p->r;
    struct sb_router *router = r->gw_w->gw->router;
    p->t = NULL;
    r->rec.upstream_end_ns = uv_hrtime();
    if (result != SB_UP_OK)
        sb_debug("request %s: upstream failed: %s", r->request_id, detail);
    if (p->streaming) {
        end_call(p, result == SB_UP_OK);
        /* A failure, but bytes reached the client: never retried; it still counts. */
        if (result != SB_UP_OK && r->gw_w->gw->groups[p->group].n > 1)
            sb_router_failure(router, p->dep, false, 0, sb_router_now_ms());
        if (r->rec.tokens_in >= 0) /* usage-based routing counts what the stream used */
            sb_router_tokens(router, p->dep,
                             (uint64_t)r->rec.tokens_in +
                                 (uint64_t)(r->rec.tokens_out > 0 ? r->rec.tokens_out : 0),
                             sb_router_now_ms());
        finish_stream(p, result);
        detach(p);
        return;
    }
    /* Nothing has reached the client: decide between answering and another attempt. */
    enum err_class c = classify(p, result);
    bool hard = c == E_AUTH || c == E_NOT_FOUND || c == E_QUOTA;
    bool transient = c == E_TIMEOUT || c == E_RATE_LIMIT || c == E_SERVER;
    end_call(p, c == E_OK);
    /* Cooling down a deployment only helps when its group has another one to use: a lone
     * deployment keeps being called, so the client sees the provider's own error. Errors
     * about the request itself (a bad request, too long a prompt, a content filter) say
     * nothing of the deployment's health. */
    uint64_t now = sb_router_now_ms();
    bool shared = r->gw_w->gw->groups[p->group].n > 1;
    if ((transient || hard) && shared) {
        /* allowed_fails_policy: a threshold per class; a class given one is not "at once". */
        const struct sb_router_config *rc = &r->gw_w->gw->cfg->router;
        int allowed = c == E_AUTH || c == E_NOT_FOUND ? rc->allowed_auth
                      : c == E_TIMEOUT                ? rc->allowed_timeout
                      : c == E_RATE_LIMIT             ? rc->allowed_rate_limit
                      : c == E_SERVER                 ? rc->allowed_server
                                                      : -1;
        sb_router_failure(router, p->dep, hard && allowed < 0, allowed, now);
    } else if (c == E_OK || c == E_BAD_REQUEST)
        sb_router_success(router, p->dep);
    if (c == E_OK && p->xlate && p->ep == SB_EP_EMBEDDINGS) {
        /* Providers with a small batch limit (Titan: one input a call) are called until every
         * input has its vector. */
        if (p->target->embed->decode(p->resp.data ? p->resp.data : "", p->resp.len, &p->eresp) !=
            0) {
            count_upstream_error(p, SB_UPERR_PROTOCOL);
            sb_api_fail(r, 502, "api_error", "upstream_invalid_response", NULL,
                        "The provider's embeddings could not be read.");
            detach(p);
            return;
        }
        if (p->ebatch_to < p->ereq.ninputs) {
            p->ebatch_from = p->ebatch_to;
            p->ebatch_continue = true;
            p->next_dep = p->dep;
            launch(p);
            return;
        }
    }
    uint64_t delay = 0;
    if (c != E_OK && plan_next(p, c, &delay)) {
        count_upstream_error(p, result == SB_UP_E_TIMEOUT   ? SB_UPERR_TIMEOUT
                                : result == SB_UP_E_CONNECT ? SB_UPERR_CONNECT
                                : p->status >= 500          ? SB_UPERR_STATUS_5XX
                                : p->status                 ? SB_UPERR_STATUS_4XX
                                                            : SB_UPERR_PROTOCOL);
        if (!delay) {
            launch(p);
            return;
        }
        if (!p->backoff) {
            p->backoff = malloc(sizeof *p->backoff);
            if (!p->backoff) {
                finish_plain(p, result);
                detach(p);
                return;
            }
            uv_timer_init(sb_worker_loop(p->x->worker), p->backoff);
            p->backoff->data = p;
        }
        uv_timer_start(p->backoff, on_backoff, delay, 0);
        return;
    }
    finish_plain(p, result);
    if (c == E_OK && r->rec.tokens_in >= 0)
        sb_router_tokens(router, p->dep,
                         (uint64_t)r->rec.tokens_in +
                             (uint64_t)(r->rec.tokens_out > 0 ? r->rec.tokens_out : 0),
                         now);
    detach(p);
}

/* ---------------------------------------------------------------- request */

/* Applies non-overlapping edits, sorted by position, in one pass. */
static int apply_edits(const char *s, size_t n, struct edit *e, int ne, struct sb_buf *out)
{
    for (int i = 1; i < ne; i++) /* insertion sort: at most three edits */
        for (int j = i; j > 0 && e[j].at < e[j - 1].at; j--) {
            struct edit t = e[j];
            e[j] = e[j - 1];
            e[j - 1] = t;
        }
    size_t pos = 0;
    for (int i = 0; i < ne; i++) {
        if (e[i].at < pos)
            return -1;
        if (sb_buf_append(out, s + pos, e[i].at - pos) || sb_buf_append(out, e[i].text, e[i].len))
            return -1;
        pos = e[i].end;
    }
    return sb_buf_append(out, s + pos, n - pos);
}

static bool object_is_empty(const char *s, const struct sb_json_span *obj)
{
    size_t i = obj->start + 1;
    while (i < obj->end && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
        i++;
    return s[i] == '}';
}

/* Position of an object's closing brace. */
static size_t closing_brace(const struct sb_json_span *obj)
{
    return obj->end - 1;
}

/* A per-request routing config in the x-switchboard-config header (Portkey's shape):
 *   {"strategy": {"mode": "fallback" | "loadbalance"},
 *    "targets": [{"model": "<alias>", "weight": 1}, ...],   (or override_params.model)
 *    "retry": {"attempts": 2}}
 * fallback: the first target serves, the others are its fallbacks, in order; loadbalance:
 * one target by weight. Returns the alias to serve, -1 when the config names no targets, or
 * -2 with a message in err. */
/* The request as the rules see it (src/router/rules.h), built once when first needed. */
static json_t *rules_ctx(const struct sb_exchange *x, json_t **ctx)
{
    if (!*ctx) {
        const struct sb_http_str *mh = sb_http_header_get(&x->req, "x-switchboard-metadata");
        *ctx = sb_rules_context(x->body.data ? x->body.data : "", x->body.len, mh ? mh->p : NULL,
                                mh ? mh->n : 0);
        /* headers.<lower-case name>, but never the credentials. */
        json_t *hs = *ctx ? json_object() : NULL;
        for (size_t i = 0; hs && i < x->req.nheaders; i++) {
            const struct sb_http_header *h = &x->req.headers[i];
            char name[64];
            if (h->name.n >= sizeof name)
                continue;
            for (size_t k = 0; k < h->name.n; k++)
                name[k] = (char)tolower((unsigned char)h->name.p[k]);
            name[h->name.n] = '\0';
            if (!strcmp(name, "authorization") || !strcmp(name, "x-api-key") ||
                !strcmp(name, "api-key") || !strcmp(name, "cookie"))
                continue;
            json_t *v = json_stringn(h->value.p, h->value.n);
            if (v)
                json_object_set_new(hs, name, v);
        }
        if (hs)
            json_object_set_new(*ctx, "headers", hs);
    }
    return *ctx;
}

static int route_config(struct sb_gateway *gw, const struct sb_http_str *h, uint64_t *rng,
                        const struct sb_exchange *x, json_t **ctx, int *chain, size_t *nchain,
                        int *retries, char *err, size_t errlen)
{
    *nchain = 0;
    *retries = -1;
    json_error_t je;
    json_t *root = json_loadb(h->p, h->n, JSON_REJECT_DUPLICATES, &je);
    int ret = -2;
    if (!json_is_object(root)) {
        snprintf(err, errlen, "x-switchboard-config is not a JSON object.");
        goto out;
    }
    json_t *retry = json_object_get(root, "retry");
    if (retry) {
        json_t *a = json_object_get(retry, "attempts");
        if (!json_is_integer(a) || json_integer_value(a) < 0 || json_integer_value(a) > 10) {
            snprintf(err, errlen, "x-switchboard-config: retry.attempts must be 0..10.");
            goto out;
        }
        *retries = (int)json_integer_value(a);
    }
    json_t *targets = json_object_get(root, "targets");
    if (!targets) {
        ret = -1;
        goto out;
    }
    json_t *strategy = json_object_get(root, "strategy");
    const char *mode = json_string_value(json_object_get(strategy, "mode"));
    if (!mode ||
        (strcmp(mode, "fallback") && strcmp(mode, "loadbalance") && strcmp(mode, "conditional"))) {
        snprintf(err, errlen,
                 "x-switchboard-config: strategy.mode must be fallback, loadbalance or "
                 "conditional.");
        goto out;
    }
    size_t n = json_array_size(targets);
    if (!json_is_array(targets) || n == 0 || n > 8) {
        snprintf(err, errlen, "x-switchboard-config: targets must be a list of 1 to 8 targets.");
        goto out;
    }
    int ids[8];
    double w[8], total = 0;
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(targets, i);
        const char *m = json_string_value(json_object_get(t, "model"));
        if (!m)
            m = json_string_value(json_object_get(json_object_get(t, "override_params"), "model"));
        ids[i] = m ? sb_config_model_index(gw->cfg, m, strlen(m)) : -1;
        if (ids[i] < 0) {
            snprintf(err, errlen, "x-switchboard-config: target %zu names no configured model.", i);
            goto out;
        }
        json_t *wt = json_object_get(t, "weight");
        w[i] = wt ? json_number_value(wt) : 1;
        if (!(w[i] >= 0)) {
            snprintf(err, errlen, "x-switchboard-config: a weight must be a number >= 0.");
            goto out;
        }
        total += w[i];
    }
    if (strcmp(mode, "conditional") == 0) {
        /* The first condition whose query holds names the target; else "default". */
        const char *pick = json_string_value(json_object_get(strategy, "default"));
        json_t *conds = json_object_get(strategy, "conditions");
        size_t ci;
        json_t *cond;
        json_array_foreach(conds, ci, cond)
        {
            json_t *q = json_object_get(cond, "query");
            const char *then = json_string_value(json_object_get(cond, "then"));
            if (!then || sb_rules_validate(q, err, errlen) != 0) {
                if (then)
                    goto out; /* err says what is wrong with the query */
                snprintf(err, errlen, "x-switchboard-config: a condition needs query and then.");
                goto out;
            }
            json_t *c = rules_ctx(x, ctx);
            if (c && sb_rules_match(q, c)) {
                pick = then;
                break;
            }
        }
        if (!pick) {
            snprintf(err, errlen, "x-switchboard-config: no condition matched and no default.");
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            const char *name =
                json_string_value(json_object_get(json_array_get(targets, i), "name"));
            if (name && strcmp(name, pick) == 0) {
                ret = ids[i];
                goto out;
            }
        }
        snprintf(err, errlen, "x-switchboard-config: no target is named '%.60s'.", pick);
        goto out;
    }
    if (strcmp(mode, "fallback") == 0) {
        ret = ids[0];
        for (size_t i = 1; i < n; i++)
            chain[(*nchain)++] = ids[i];
        goto out;
    }
    double pickx = total > 0 ? sb_rand_unit(rng) * total : 0;
    ret = ids[n - 1];
    for (size_t i = 0; i < n; i++) {
        pickx -= total > 0 ? w[i] : 1;
        if (pickx < 0) {
            ret = ids[i];
            break;
        }
    }
out:
    json_decref(root);
    return ret;
}

void sb_proxy_handle(struct sb_api_req *r, enum sb_endpoint ep)
{
    struct sb_exchange *x = r->x;
    struct sb_gateway *gw = r->gw_w->gw;
    const char *s = x->body.data ? x->body.data : "";
    size_t n = x->body.len;

    struct sb_json_index idx;
    if (n == 0 || sb_json_validate_index(s, n, JSON_MAX_DEPTH, &idx) != 0 ||
        idx.root.type != SB_JSON_OBJECT) {
        sb_api_fail(r, 400, "invalid_request_error", "invalid_json", NULL,
                    "The request body is not a valid JSON object.");
        return;
    }
    const struct sb_json_span root = idx.root;
    static const char *const keys[] = {"model", "stream", "stream_options", "fallbacks",
                                       "metadata"};
    struct sb_json_member m[5];
    int c[5];
    int rc = sb_json_index_get_many(s, n, &idx, keys, 5, m, c);
    const struct sb_json_member model = m[0];
    if (rc != 0 || c[0] == 0) {
        sb_api_fail(r, 400, "invalid_request_error", "missing_model", "model",
                    "The request has no 'model'.");
        return;
    }
    if (c[0] > 1) {
        sb_api_fail(r, 400, "invalid_request_error", "invalid_json", "model",
                    "The request has more than one 'model' key.");
        return;
    }
    char name[257];
    size_t name_len = 0;
    if (model.value.type != SB_JSON_STRING ||
        sb_json_string_copy(s, n, &model.value, name, sizeof name, &name_len) != 0) {
        sb_api_fail(r, 400, "invalid_request_error", "invalid_model", "model",
                    "'model' must be a string of at most 256 bytes.");
        return;
    }
    int g = sb_config_model_index(gw->cfg, name, name_len);
    const struct sb_router_config *rcfg = &gw->cfg->router;
    for (size_t i = 0; g < 0 && i < rcfg->n_group_alias; i++) /* model_group_alias */
        if (strlen(rcfg->group_alias_from[i]) == name_len &&
            memcmp(rcfg->group_alias_from[i], name, name_len) == 0)
            g = sb_config_model_index(gw->cfg, rcfg->group_alias_to[i],
                                      strlen(rcfg->group_alias_to[i]));
    /* Wildcard aliases (a model_name with one '*', or just '*'): the longest prefix wins,
     * and what the '*' matched replaces the '*' of the deployment's model. */
    char wild[257] = "";
    int wg = -1;
    size_t best_prefix = 0;
    for (size_t i = 0; g < 0 && i < gw->cfg->n_model_names; i++) {
        if (!gw->groups[i].wildcard)
            continue;
        const char *pat = gw->cfg->model_names[i];
        const char *star = strchr(pat, '*');
        size_t pre = (size_t)(star - pat), suf = strlen(star + 1);
        if (name_len < pre + suf || memcmp(name, pat, pre) != 0 ||
            memcmp(name + name_len - suf, star + 1, suf) != 0)
            continue;
        if (wg < 0 || pre > best_prefix) {
            wg = (int)i;
            best_prefix = pre;
            size_t mid = name_len - pre - suf;
            memcpy(wild, name + pre, mid);
            wild[mid] = '\0';
        }
    }
    if (g < 0)
        g = wg;
    /* routing_rules: the first rule for this alias whose query holds picks another one. */
    json_t *rctx = NULL;
    for (size_t i = 0; g >= 0 && i < json_array_size(gw->rules); i++) {
        if (gw->rule_model[i] >= 0 && gw->rule_model[i] != g)
            continue;
        json_t *ctx = rules_ctx(x, &rctx);
        if (ctx && sb_rules_match(json_object_get(json_array_get(gw->rules, i), "if"), ctx)) {
            g = gw->rule_then[i];
            wild[0] = '\0';
            break;
        }
    }
    int hdr_chain[8];
    size_t hdr_n = 0;
    int hdr_retries = -1;
    bool hdr_targets = false;
    const struct sb_http_str *hc = sb_http_header_get(&x->req, "x-switchboard-config");
    if (hc) {
        char err[200];
        int pg = route_config(gw, hc, &r->gw_w->rng, x, &rctx, hdr_chain, &hdr_n, &hdr_retries, err,
                              sizeof err);
        if (pg == -2) {
            json_decref(rctx);
            sb_api_fail(r, 400, "invalid_request_error", "invalid_config", NULL, err);
            return;
        }
        if (pg >= 0) { /* the config's targets decide; the body's model is not routed on */
            g = pg;
            wild[0] = '\0';
            hdr_targets = true;
        }
    }
    json_decref(rctx);
    if (g < 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "The model '%.200s' does not exist.", name);
        sb_api_fail(r, 404, "invalid_request_error", "model_not_found", "model", msg);
        return;
    }
    r->rec.model = g;
    const struct sb_model_group *grp = &gw->groups[g];
    if (grp->n == 0) {
        char msg[400];
        snprintf(msg, sizeof msg, "The model '%.200s' is not available: %s.", name,
                 grp->unavailable_reason ? grp->unavailable_reason : "no deployment is enabled");
        sb_api_fail(r, 503, "api_error", "model_unavailable", "model", msg);
        return;
    }

    const struct sb_json_member *m_stream = &m[1];
    if (c[1] > 1 ||
        (c[1] == 1 && m_stream->value.type != SB_JSON_TRUE &&
         m_stream->value.type != SB_JSON_FALSE && m_stream->value.type != SB_JSON_NULL)) {
        sb_api_fail(r, 400, "invalid_request_error", "invalid_value", "stream",
                    "'stream' must be a boolean.");
        return;
    }
    bool stream = c[1] == 1 && m_stream->value.type == SB_JSON_TRUE;
    if (ep == SB_EP_EMBEDDINGS || ep == SB_EP_COUNT_TOKENS)
        stream = false;

    r->rec.stream = stream;

    /* The scratch space at the end (several KiB) is written before it is read: only the
     * fields before it are zeroed, on every request. */
    struct sb_proxy *p = malloc(sizeof *p);
    if (!p) {
        sb_api_fail(r, 500, "api_error", "internal_error", NULL, "Out of memory.");
        return;
    }
    memset(p, 0, offsetof(struct sb_proxy, tags));
    p->r = r;
    p->x = x;
    p->stream = stream;
    memcpy(p->req_model, name, name_len);
    p->req_model[name_len] = '\0';
    p->client = r->dialect == SB_DIALECT_ANTHROPIC ? &sb_client_anthropic : &sb_client_openai;
    p->eresp.input_tokens = -1;
    p->retry_override = hdr_retries;
    memcpy(p->wild, wild, sizeof wild);
    sb_buf_init(&p->model_json, 1024);
    const struct sb_server_config *sc = &gw->cfg->server;
    sb_buf_init(&p->url, 16384);
    sb_buf_init(&p->body, (size_t)sc->max_request_bytes + 4096);
    sb_buf_init(&p->resp, (size_t)sc->max_response_bytes);
    sb_buf_init(&p->ev, (size_t)sc->max_event_bytes + 4096);
    sb_sse_parser_init(&p->sse, (size_t)sc->max_event_bytes);
    r->proxy = p;

    struct edit edits[4];
    int ne = 0;
    /* The model value's text is set for each attempt's deployment (launch). */
    edits[ne++] = (struct edit){model.value.start, model.value.end, NULL, 0};
    if (stream && r->dialect == SB_DIALECT_ANTHROPIC) {
        /* Anthropic streams always carry their usage. */
    } else if (stream) {
        static const char add_root[] = ",\"stream_options\":{\"include_usage\":true}";
        static const char add_inner[] = ",\"include_usage\":true";
        static const char obj[] = "{\"include_usage\":true}";
        const struct sb_json_member so = m[2];
        if (c[2] > 1) {
            sb_api_fail(r, 400, "invalid_request_error", "invalid_json", "stream_options",
                        "The request has more than one 'stream_options' key.");
            detach(p);
            return;
        }
        if (c[2] == 0) {
            size_t at = closing_brace(&root);
            edits[ne++] = (struct edit){at, at, add_root, sizeof add_root - 1};
        } else if (so.value.type == SB_JSON_NULL) {
            edits[ne++] = (struct edit){so.value.start, so.value.end, obj, sizeof obj - 1};
        } else if (so.value.type == SB_JSON_OBJECT) {
            struct sb_json_member iu;
            rc = sb_json_object_get(s, n, &so.value, "include_usage", &iu);
            if (rc == 0 && iu.value.type == SB_JSON_TRUE) {
                p->client_wants_usage = true;
            } else if (rc == 0) {
                edits[ne++] = (struct edit){iu.value.start, iu.value.end, "true", 4};
            } else if (rc == SB_JSON_NOT_FOUND) {
                size_t at = closing_brace(&so.value);
                bool empty = object_is_empty(s, &so.value);
                edits[ne++] = (struct edit){at, at, empty ? add_inner + 1 : add_inner,
                                            sizeof add_inner - (empty ? 2 : 1)};
            } else {
                sb_api_fail(r, 400, "invalid_request_error", "invalid_json", "stream_options",
                            "'stream_options' has more than one 'include_usage' key.");
                detach(p);
                return;
            }
        } else {
            sb_api_fail(r, 400, "invalid_request_error", "invalid_value", "stream_options",
                        "'stream_options' must be an object.");
            detach(p);
            return;
        }
    }
    /* LiteLLM's per-request "fallbacks": a list of aliases (or {"model": alias} objects). The
     * gateway acts on it and removes it from what goes upstream: a provider would refuse it. */
    if (c[3] > 1) {
        sb_api_fail(r, 400, "invalid_request_error", "invalid_json", "fallbacks",
                    "The request has more than one 'fallbacks' key.");
        detach(p);
        return;
    }
    if (c[3] == 1) {
        const struct sb_json_member *fb = &m[3];
        if (fb->value.type != SB_JSON_ARRAY && fb->value.type != SB_JSON_NULL) {
            sb_api_fail(r, 400, "invalid_request_error", "invalid_value", "fallbacks",
                        "'fallbacks' must be a list of model names.");
            detach(p);
            return;
        }
        size_t pos = 0;
        struct sb_json_span el;
        while (fb->value.type == SB_JSON_ARRAY &&
               sb_json_array_next(s, n, &fb->value, &pos, &el) == 0) {
            struct sb_json_span mv = el;
            struct sb_json_member mm;
            if (el.type == SB_JSON_OBJECT && sb_json_object_get(s, n, &el, "model", &mm) == 0)
                mv = mm.value;
            char fname[257];
            size_t flen;
            if (mv.type != SB_JSON_STRING ||
                sb_json_string_copy(s, n, &mv, fname, sizeof fname, &flen) != 0) {
                sb_api_fail(r, 400, "invalid_request_error", "invalid_value", "fallbacks",
                            "'fallbacks' must be a list of model names.");
                detach(p);
                return;
            }
            int f = sb_config_model_index(gw->cfg, fname, flen);
            if (f < 0) {
                char msg[400];
                snprintf(msg, sizeof msg, "The fallback model '%.200s' does not exist.", fname);
                sb_api_fail(r, 404, "invalid_request_error", "model_not_found", "fallbacks", msg);
                detach(p);
                return;
            }
            if (f != g && p->n_req_fallbacks < 8)
                p->req_fallbacks[p->n_req_fallbacks++] = f;
        }
        /* Remove the member with one neighbouring comma, keeping the JSON valid. */
        size_t from = fb->key.start, to = fb->value.end, k = to;
        while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\n' || s[k] == '\r'))
            k++;
        if (k < n && s[k] == ',') {
            to = k + 1;
        } else {
            size_t b = from;
            while (b > root.start + 1 &&
                   (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\n' || s[b - 1] == '\r'))
                b--;
            if (b > root.start + 1 && s[b - 1] == ',')
                from = b - 1;
        }
        edits[ne++] = (struct edit){from, to, "", 0};
    }
    if (hdr_targets) { /* the header's fallback targets replace any other list */
        memcpy(p->req_fallbacks, hdr_chain, hdr_n * sizeof hdr_chain[0]);
        p->n_req_fallbacks = hdr_n;
    }
    memcpy(p->edits, edits, sizeof edits);
    p->ne = ne;
    p->ep = ep;
    p->group = g;
    p->retries_left = 10; /* the per-class limits apply (class_retries) */
    /* The request's id goes upstream too, for correlation in the provider's logs. */
    snprintf(p->rid_line, sizeof p->rid_line, "x-request-id: %s", r->request_id);
    p->rid_node.data = p->rid_line;
    x->on_drain = on_drain;

    uint64_t now = sb_router_now_ms();
    uint64_t delay;
    /* A prompt clearly larger than every deployment's context window (max_input_tokens in
     * model_info; estimated at 4 bytes a token) goes straight to context_window_fallbacks. */
    read_tags(p, s, n, &m[4], c[4]);
    bool planned = grp->max_input_tokens > 0 && grp->n_cw_fallbacks &&
                   (int64_t)(n / 4) > grp->max_input_tokens &&
                   plan_next(p, E_CONTEXT_WINDOW, &delay);
    const struct sb_router_group *rgp = routing_group(p, g);
    if (!planned && rgp->n == 0) {
        sb_api_fail(r, 400, "invalid_request_error", "no_deployment_for_tags", NULL,
                    "No deployment of this model has the request's tags (and none is tagged "
                    "'default').");
        detach(p);
        return;
    }
    if (!planned)
        p->next_dep = sb_router_pick(gw->router, gw->strategy, rgp, &r->gw_w->rr, &r->gw_w->rng,
                                     NULL, 0, now);
    if (!planned && p->next_dep < 0 && !plan_next(p, E_SERVER, &delay)) {
        /* Every deployment of the alias (and of its fallbacks) is cooling down: fail fast,
         * and say when to come back. */
        uint64_t wait = sb_router_wait_ms(gw->router, grp->deployments, grp->n, now);
        char hdr[320];
        int hn = snprintf(hdr, sizeof hdr, "%sRetry-After: %llu\r\n", r->rid_header,
                          (unsigned long long)((wait + 999) / 1000));
        struct sb_error e;
        sb_error_set(&e, 503, "api_error", "no_deployments_available", "model",
                     "Every deployment of '%.200s' is cooling down after failures; retry in "
                     "%llu s.",
                     name, (unsigned long long)((wait + 999) / 1000));
        r->rec.error_code = "no_deployments_available";
        sb_http_respond_error(x, &e, hdr, hn > 0 && (size_t)hn < sizeof hdr ? (size_t)hn : 0);
        detach(p);
        return;
    }
    r->rec.upstream_start_ns = uv_hrtime();
    launch(p);
}

static void fail_with(struct sb_proxy *p, const struct sb_error *e)
{
    sb_api_fail(p->r, e->status, e->type, e->code, e->param, e->message);
    detach(p);
}

/* The body of a translated attempt: the client's request decoded once, encoded for the
 * target's dialect. Returns false after answering the client. */
static bool prepare_translation(struct sb_proxy *p, const struct sb_provider_target *target)
{
    struct sb_api_req *r = p->r;
    const char *s = r->x->body.data ? r->x->body.data : "";
    size_t n = r->x->body.len;
    struct sb_error err;
    const char *prov = target->d->provider_name;
    if (p->ep == SB_EP_COMPLETIONS) {
        sb_error_set(&err, 400, "invalid_request_error", "unsupported_endpoint", "model",
                     "The legacy completions endpoint is served only by OpenAI-compatible "
                     "models; '%.100s' is a %.40s model. Use /v1/chat/completions.",
                     p->req_model, prov);
        fail_with(p, &err);
        return false;
    }
    if (p->ep == SB_EP_EMBEDDINGS) {
        if (!target->embed || r->dialect != SB_DIALECT_OPENAI) {
            sb_error_set(&err, 400, "invalid_request_error", "unsupported_endpoint", "model",
                         "'%.100s' is a %.40s model, which has no embeddings here.", p->req_model,
                         prov);
            fail_with(p, &err);
            return false;
        }
        if (!p->embed_ready) {
            if (sb_openai_decode_embed_request(s, n, &p->ereq, &err) != 0) {
                fail_with(p, &err);
                return false;
            }
            p->embed_ready = true;
        }
        if (!p->ebatch_continue) { /* a new attempt starts from the first input again */
            sb_embed_resp_free(&p->eresp);
            p->ebatch_from = 0;
        }
        p->ebatch_continue = false;
        size_t max = target->embed->batch_max ? target->embed->batch_max : 1;
        p->ebatch_to =
            p->ereq.ninputs - p->ebatch_from > max ? p->ebatch_from + max : p->ereq.ninputs;
        if (target->embed->encode(&p->ereq, p->ebatch_from, p->ebatch_to, p->model, &p->body,
                                  &err) != 0) {
            fail_with(p, &err);
            return false;
        }
        return true;
    }
    if (!p->canon_ready) {
        if (p->client->decode_request(s, n, &p->canon, &err) != 0) {
            fail_with(p, &err);
            return false;
        }
        p->canon_ready = true;
    }
    p->canon.stream = p->stream;
    if (p->codec->encode_request(&p->canon, p->model, &p->body, &err) != 0) {
        fail_with(p, &err);
        return false;
    }
    return true;
}

/* /v1/messages/count_tokens for a model whose provider cannot count: an estimate, said to be
 * one. */
static void count_tokens_locally(struct sb_proxy *p)
{
    struct sb_api_req *r = p->r;
    struct sb_canon_req req;
    memset(&req, 0, sizeof req);
    struct sb_error err;
    if (sb_anthropic_decode_count_tokens(r->x->body.data ? r->x->body.data : "", r->x->body.len,
                                         &req, &err) != 0) {
        sb_canon_req_free(&req);
        fail_with(p, &err);
        return;
    }
    int64_t n = sb_canon_estimate_tokens(&req);
    sb_canon_req_free(&req);
    char body[64];
    struct sb_buf b = {.data = body, .len = 0, .cap = sizeof body, .max = sizeof body - 1};
    sb_buf_printf(&b, "{\"input_tokens\":%lld}", (long long)n);
    char hdr[512];
    int hn = snprintf(hdr, sizeof hdr, "%sx-switchboard-token-count: estimated\r\n", r->rid_header);
    sb_http_respond(p->x, 200, "application/json", hdr,
                    hn > 0 && (size_t)hn < sizeof hdr ? (size_t)hn : 0, b.data, b.len);
    detach(p);
}

/* Starts the attempt on p->next_dep: the body with that deployment's model, its URL and
 * headers. */
static void launch(struct sb_proxy *p)
{
    struct sb_api_req *r = p->r;
    struct sb_gateway *gw = r->gw_w->gw;
    const struct sb_server_config *sc = &gw->cfg->server;
    const struct sb_provider_target *target = &gw->targets[p->next_dep];
    if (p->ep == SB_EP_COUNT_TOKENS && target->dialect != SB_DIALECT_ANTHROPIC) {
        count_tokens_locally(p);
        return;
    }
    p->dep = p->next_dep;
    p->target = target;
    r->rec.dep = target->d;
    r->rec.attempts++;
    if (p->ntried < sizeof p->tried / sizeof p->tried[0])
        p->tried[p->ntried++] = p->dep;
    p->status = 0;
    p->content_type[0] = p->retry_after[0] = p->retry_after_ms[0] = p->amzn_error[0] = '\0';
    p->too_large = false;
    p->resp_indexed = false;
    p->cerr_set = false;
    xlate_reset_stream(p);
    sb_buf_reset(&p->resp);
    sb_buf_reset(&p->body);
    sb_buf_reset(&p->url);
    struct edit e[4];
    memcpy(e, p->edits, sizeof e);
    e[0].text = target->upstream_model_json;
    e[0].len = strlen(target->upstream_model_json);
    snprintf(p->model, sizeof p->model, "%s", target->d->upstream_model);
    const char *star = strchr(target->d->upstream_model, '*');
    if (star) { /* a wildcard deployment: its '*' becomes what the request's model matched */
        struct sb_buf m;
        sb_buf_init(&m, 1024);
        sb_buf_append(&m, target->d->upstream_model, (size_t)(star - target->d->upstream_model));
        sb_buf_append_str(&m, p->wild);
        sb_buf_append_str(&m, star + 1);
        sb_buf_reset(&p->model_json);
        if (m.data && sb_buf_append_json_str(&p->model_json, m.data, m.len) == 0) {
            e[0].text = p->model_json.data;
            e[0].len = p->model_json.len;
        }
        if (m.data)
            snprintf(p->model, sizeof p->model, "%s", m.data);
        sb_buf_free(&m);
    }
    /* Same dialect on both sides: the client's bytes with the model spliced. Otherwise the
     * request goes through the canonical form into the provider's dialect. */
    enum sb_dialect td = target->dialect;
    p->codec = target->codec;
    p->pass_anthropic = r->dialect == SB_DIALECT_ANTHROPIC && td == SB_DIALECT_ANTHROPIC;
    p->xlate = r->dialect != td || (p->ep == SB_EP_EMBEDDINGS && target->embed);
    if (p->xlate && !prepare_translation(p, target))
        return;
    const char *s = r->x->body.data ? r->x->body.data : "";
    if ((!p->xlate && apply_edits(s, r->x->body.len, e, p->ne, &p->body) != 0) ||
        sb_provider_url(target, p->ep, p->stream, p->model, &p->url) != 0) {
        sb_api_fail(r, 500, "api_error", "internal_error", NULL, "Could not build the request.");
        detach(p);
        return;
    }
    struct curl_slist *head = (struct curl_slist *)target->headers;
    if (target->sigv4) { /* Bedrock: signed over this URL and body */
        int nsig = sb_provider_sign(target, p->url.data, p->body.data ? p->body.data : "",
                                    p->body.len, p->sig_lines, 4);
        if (nsig < 0) {
            sb_api_fail(r, 500, "api_error", "internal_error", NULL,
                        "Could not sign the request for the provider.");
            detach(p);
            return;
        }
        for (int i = nsig - 1; i >= 0; i--) {
            p->sig_nodes[i].data = p->sig_lines[i];
            p->sig_nodes[i].next = head;
            head = &p->sig_nodes[i];
        }
    }
    p->rid_node.next = head;
    const struct sb_deployment *d = target->d;
    struct sb_transfer_opts o = {
        .url = p->url.data,
        .headers = &p->rid_node,
        .body = p->body.data,
        .body_len = p->body.len,
        .proxy = target->proxy,
        .noproxy = target->noproxy,
        .connect_timeout_ms = (long)sc->connect_timeout_ms,
        .timeout_ms = p->stream ? 0 : (long)(d->timeout_s * 1000),
        .idle_timeout_ms = p->stream ? (uint64_t)(d->stream_timeout_s * 1000) : 0,
        .first_byte_timeout_ms = (uint64_t)(d->ttft_timeout_s * 1000),
    };
    static const struct sb_transfer_cbs cbs = {
        .on_status = on_status,
        .on_header = on_header,
        .on_body = on_body,
        .on_done = on_done,
    };
    p->attempt_ns = uv_hrtime();
    p->first_byte_ns = 0;
    p->t = sb_transfer_start(r->gw_w->up, &o, &cbs, p);
    if (!p->t) {
        sb_api_fail(r, 500, "api_error", "internal_error", NULL,
                    "Could not start the upstream call.");
        detach(p);
        return;
    }
    p->calling = true;
    sb_router_begin(gw->router, p->dep, r->rec.served_by >= 0, sb_router_now_ms());
}

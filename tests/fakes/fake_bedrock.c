/* The Bedrock dialect of the fake provider: Converse, ConverseStream (binary event-stream
 * frames) and InvokeModel for Titan embeddings. SigV4 headers are checked for shape and the
 * payload hash; the signature itself is not verified. */
#include "fake.h"

#include "core/hex.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#define DEFAULT_DIMS 8

/* ---- event-stream frames ---- */

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

int sb_fake_eventstream_frame(struct sb_buf *b, const char *const *headers, size_t nheaders,
                              const char *payload, size_t payload_len)
{
    size_t hlen = 0;
    for (size_t i = 0; i < nheaders; i++) {
        size_t nn = strlen(headers[2 * i]), vn = strlen(headers[2 * i + 1]);
        if (nn > 255 || vn > 65535)
            return -EINVAL;
        hlen += 1 + nn + 1 + 2 + vn;
    }
    size_t total = 12 + hlen + payload_len + 4;
    if (total > UINT32_MAX)
        return -E2BIG;
    size_t start = b->len;
    int rc = sb_buf_reserve(b, total);
    if (rc)
        return rc;
    unsigned char *p = (unsigned char *)b->data + start;
    put_be32(p, (uint32_t)total);
    put_be32(p + 4, (uint32_t)hlen);
    put_be32(p + 8, (uint32_t)crc32(0, p, 8));
    size_t o = 12;
    for (size_t i = 0; i < nheaders; i++) {
        size_t nn = strlen(headers[2 * i]), vn = strlen(headers[2 * i + 1]);
        p[o++] = (unsigned char)nn;
        memcpy(p + o, headers[2 * i], nn);
        o += nn;
        p[o++] = 7; /* string */
        p[o++] = (unsigned char)(vn >> 8);
        p[o++] = (unsigned char)vn;
        memcpy(p + o, headers[2 * i + 1], vn);
        o += vn;
    }
    if (payload_len)
        memcpy(p + o, payload, payload_len);
    o += payload_len;
    put_be32(p + o, (uint32_t)crc32(0, p, (uInt)o));
    b->len = start + total;
    b->data[b->len] = '\0';
    return 0;
}

static int event_frame(struct sb_fake_call *x, const char *type, json_t *payload)
{
    char *s = payload ? json_dumps(payload, JSON_COMPACT) : NULL;
    json_decref(payload);
    if (!s)
        return -ENOMEM;
    const char *h[] = {":event-type",   type,   ":content-type", "application/json",
                       ":message-type", "event"};
    int rc = sb_fake_eventstream_frame(&x->resp->body, h, 3, s, strlen(s));
    free(s);
    return rc | sb_fake_resp_end_event(x->resp);
}

/* ---- errors and auth ---- */

static void send_error(struct sb_fake_call *x, int status, const char *name, const char *message)
{
    struct sb_buf m;
    sb_buf_init(&m, 64 * 1024);
    sb_fake_error_message(x, message, &m);
    sb_buf_printf(&x->resp->headers, "x-amzn-ErrorType: %s\r\n", name);
    sb_fake_plain(x, status, "application/json",
                  json_pack("{s:s%}", "message", m.data ? m.data : "", m.len), false);
    sb_buf_free(&m);
}

static bool all_hex(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (sb_hex_val(p[i]) < 0)
            return false;
    }
    return true;
}

static bool all_digits(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
    }
    return true;
}

bool sb_fake_bedrock_auth_failed(struct sb_fake_call *x)
{
    static const char scheme[] = "AWS4-HMAC-SHA256 Credential=";
    const struct sb_fake_str *a = sb_fake_http_header(x->req, "authorization");
    sb_buf_printf(&x->resp->headers, "x-amzn-RequestId: fake-%" PRIu64 "\r\n", x->id);
    if (!a) {
        send_error(x, 403, "MissingAuthenticationTokenException", "Missing Authentication Token");
        return true;
    }
    size_t sn = sizeof scheme - 1;
    const char *bad = NULL;
    if (a->n <= sn || memcmp(a->p, scheme, sn) != 0) {
        bad = "Authorization header requires 'Credential' parameter.";
    } else {
        /* Credential=<akid>/<yyyymmdd>/<region>/bedrock/aws4_request, SignedHeaders=...,
         * Signature=<64 hex> */
        const char *c = a->p + sn, *end = a->p + a->n;
        const char *comma = memchr(c, ',', (size_t)(end - c));
        const char *slash = memchr(c, '/', (size_t)((comma ? comma : end) - c));
        struct sb_fake_str cred = {c, (size_t)((comma ? comma : end) - c)};
        const char *sig = memmem(a->p, a->n, "Signature=", 10);
        const char *sh = memmem(a->p, a->n, "SignedHeaders=", 14);
        if (!comma || !slash || slash == c) {
            bad = "Authorization header requires 'Credential' parameter.";
        } else {
            x->got_key = (struct sb_fake_str){c, (size_t)(slash - c)};
            const char *date = slash + 1;
            const char *rest = cred.p + cred.n;
            if (rest - date < 9 || !all_digits(date, 8) || date[8] != '/')
                bad = "Credential should be scoped to a valid date.";
            else if (!memmem(date, (size_t)(rest - date), "/bedrock/aws4_request", 21) ||
                     memcmp(rest - 21, "/bedrock/aws4_request", 21) != 0)
                bad = "Credential should be scoped to correct service: 'bedrock'.";
            else if (!sh)
                bad = "Authorization header requires 'SignedHeaders' parameter.";
            else if (!sig || end - (sig + 10) < 64 || !all_hex(sig + 10, 64))
                bad = "Authorization header requires 'Signature' parameter.";
        }
    }
    if (bad) {
        send_error(x, 403, "IncompleteSignatureException", bad);
        return true;
    }
    if (!sb_fake_http_header(x->req, "x-amz-date")) {
        send_error(x, 403, "IncompleteSignatureException",
                   "Authorization header requires existence of either a 'X-Amz-Date' or a "
                   "'Date' header.");
        return true;
    }
    const struct sb_fake_str *h = sb_fake_http_header(x->req, "x-amz-content-sha256");
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)(x->req->body ? x->req->body : ""), x->req->body_len, md);
    char hex[2 * SHA256_DIGEST_LENGTH + 1];
    for (size_t i = 0; i < sizeof md; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (!h || h->n != 64 || memcmp(h->p, hex, 64) != 0) {
        send_error(x, 403, "InvalidSignatureException",
                   "The request signature we calculated does not match the signature you "
                   "provided. Check your AWS Secret Access Key and signing method.");
        return true;
    }
    if (x->d.has_key &&
        (x->got_key.n != strlen(x->d.key) || memcmp(x->got_key.p, x->d.key, x->got_key.n) != 0)) {
        send_error(x, 403, "UnrecognizedClientException",
                   "The security token included in the request is invalid.");
        return true;
    }
    return false;
}

void sb_fake_bedrock_status(struct sb_fake_call *x, int status)
{
    const char *name = status >= 500 ? "InternalServerException" : "ValidationException";
    const char *msg = NULL;
    char buf[160];
    switch (status) {
    case 400:
        msg = "The provided request is not valid";
        break;
    case 403:
        name = "AccessDeniedException";
        msg = "You don't have access to the model with the specified model ID.";
        break;
    case 404:
        name = "ResourceNotFoundException";
        msg = "The provided model identifier is invalid.";
        break;
    case 408:
        name = "ModelTimeoutException";
        msg = "Model has timed out in processing the request.";
        break;
    case 424:
        name = "ModelErrorException";
        msg = "The model returned an error.";
        break;
    case 429:
        name = "ThrottlingException";
        msg = "Too many requests, please wait before trying again.";
        break;
    case 500:
        msg = "The server encountered an internal error while processing the request.";
        break;
    case 503:
        name = "ServiceUnavailableException";
        msg = "Bedrock is unable to process your request.";
        break;
    default:
        break;
    }
    if (strcmp(x->d.code, "context_length_exceeded") == 0)
        msg = "Input is too long for requested model.";
    if (!msg) {
        snprintf(buf, sizeof buf, "fake-provider: injected status %d", status);
        msg = buf;
    }
    send_error(x, status, name, msg);
}

/* ---- converse ---- */

static void read_request(json_t *root, struct sb_fake_input *in)
{
    json_t *msgs = json_object_get(root, "messages");
    in->prompt_words =
        sb_fake_json_words(msgs) + sb_fake_json_words(json_object_get(root, "system"));
    json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    if (role && strcmp(role, "user") == 0) {
        size_t i;
        json_t *b;
        json_array_foreach(json_object_get(last, "content"), i, b)
        {
            json_t *tr = json_object_get(b, "toolResult");
            json_t *t = json_object_get(b, "text");
            if (tr && !in->last_is_result) {
                in->last_is_result = true;
                json_t *c = json_object_get(tr, "content");
                json_t *j = json_object_get(json_array_get(c, 0), "json");
                sb_fake_result_text(in, j ? j : c);
            } else if (json_is_string(t) && !in->last_is_user_text) {
                sb_fake_keep_text(&in->user_text, json_string_value(t), json_string_length(t));
                in->last_is_user_text = true;
            }
        }
    }
    json_t *tc = json_object_get(root, "toolConfig");
    json_t *tools = json_object_get(tc, "tools");
    const char *want = json_string_value(
        json_object_get(json_object_get(json_object_get(tc, "toolChoice"), "tool"), "name"));
    json_t *pick = NULL;
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t)
    {
        json_t *spec = json_object_get(t, "toolSpec");
        const char *name = json_string_value(json_object_get(spec, "name"));
        if (name && (!pick || (want && strcmp(want, name) == 0)))
            pick = spec;
    }
    if (pick) {
        in->tools_on = true;
        sb_fake_input_tool(in, json_string_value(json_object_get(pick, "name")),
                           json_object_get(json_object_get(pick, "inputSchema"), "json"));
    }
}

static json_t *usage_json(const struct sb_fake_plan *p)
{
    uint64_t out = p->output_tokens + p->thinking_tokens;
    json_t *u = json_pack("{s:I, s:I, s:I}", "inputTokens", (json_int_t)p->prompt_tokens,
                          "outputTokens", (json_int_t)out, "totalTokens",
                          (json_int_t)(p->prompt_tokens + p->cached_tokens + out));
    if (p->cached_tokens) {
        json_object_set_new(u, "cacheReadInputTokens", json_integer((json_int_t)p->cached_tokens));
        json_object_set_new(u, "cacheWriteInputTokens", json_integer(0));
    }
    return u;
}

static int fault(struct sb_fake_call *x, size_t *deltas, int *rc)
{
    if ((*deltas)++ != 0)
        return 0;
    if (x->d.stream_error) {
        bool thr = x->d.stream_error == 2;
        const char *h[] = {
            ":exception-type", thr ? "throttlingException" : "modelStreamErrorException",
            ":content-type",   "application/json",
            ":message-type",   "exception"};
        const char *msg =
            thr ? "{\"message\":\"Too many requests, please wait before trying again.\"}"
                : "{\"message\":\"The model stream had an error.\"}";
        *rc |= sb_fake_eventstream_frame(&x->resp->body, h, 3, msg, strlen(msg));
        *rc |= sb_fake_resp_end_event(x->resp);
        return 1;
    }
    if (x->d.malformed) {
        /* A frame whose message CRC is wrong. */
        *rc |= event_frame(x, "contentBlockDelta", json_pack("{s:i}", "contentBlockIndex", 0));
        if (!*rc)
            x->resp->body.data[x->resp->body.len - 1] ^= 0x5a;
    }
    return 0;
}

static int reply_stream(struct sb_fake_call *x, const struct sb_fake_plan *p)
{
    x->resp->chunked = true;
    x->resp->content_type = "application/vnd.amazon.eventstream";
    char sig[64];
    snprintf(sig, sizeof sig, "sig-fake-%" PRIu64, x->id);
    int rc = event_frame(x, "messageStart", json_pack("{s:s}", "role", "assistant"));
    int index = 0;
    size_t deltas = 0;
    if (p->thinking) {
        const char *t = SB_FAKE_THINKING_TEXT;
        size_t n = strlen(t), pos = 0;
        while (pos < n && !rc) {
            size_t e = sb_fake_next_delta(t, n, pos);
            rc |= event_frame(x, "contentBlockDelta",
                              json_pack("{s:i, s:{s:{s:s%}}}", "contentBlockIndex", index, "delta",
                                        "reasoningContent", "text", t + pos, e - pos));
            if (fault(x, &deltas, &rc))
                return rc;
            pos = e;
        }
        rc |= event_frame(x, "contentBlockDelta",
                          json_pack("{s:i, s:{s:{s:s}}}", "contentBlockIndex", index, "delta",
                                    "reasoningContent", "signature", sig));
        rc |= event_frame(x, "contentBlockStop", json_pack("{s:i}", "contentBlockIndex", index));
        index++;
    }
    if (p->tool_call) {
        char tid[64];
        snprintf(tid, sizeof tid, "tooluse_fake_%" PRIu64, x->id);
        rc |= event_frame(x, "contentBlockStart",
                          json_pack("{s:i, s:{s:{s:s, s:s}}}", "contentBlockIndex", index, "start",
                                    "toolUse", "toolUseId", tid, "name", p->tool_name));
        size_t pos = 0;
        while (pos < p->args.len && !rc) {
            size_t e = sb_fake_args_piece(p, pos);
            rc |= event_frame(x, "contentBlockDelta",
                              json_pack("{s:i, s:{s:{s:s%}}}", "contentBlockIndex", index, "delta",
                                        "toolUse", "input", p->args.data + pos, e - pos));
            if (fault(x, &deltas, &rc))
                return rc;
            pos = e;
        }
    } else {
        size_t pos = 0;
        while (pos < p->text.len && !rc) {
            size_t e = sb_fake_next_delta(p->text.data, p->text.len, pos);
            rc |= event_frame(x, "contentBlockDelta",
                              json_pack("{s:i, s:{s:s%}}", "contentBlockIndex", index, "delta",
                                        "text", p->text.data + pos, e - pos));
            if (fault(x, &deltas, &rc))
                return rc;
            pos = e;
        }
    }
    rc |= event_frame(x, "contentBlockStop", json_pack("{s:i}", "contentBlockIndex", index));
    rc |= event_frame(x, "messageStop",
                      json_pack("{s:s}", "stopReason", p->tool_call ? "tool_use" : "end_turn"));
    rc |= event_frame(
        x, "metadata",
        json_pack("{s:o, s:{s:i}}", "usage", usage_json(p), "metrics", "latencyMs", 42));
    return rc;
}

static void reply_json(struct sb_fake_call *x, const struct sb_fake_plan *p)
{
    char sig[64];
    snprintf(sig, sizeof sig, "sig-fake-%" PRIu64, x->id);
    json_t *content = json_array();
    if (p->thinking)
        json_array_append_new(content,
                              json_pack("{s:{s:{s:s, s:s}}}", "reasoningContent", "reasoningText",
                                        "text", SB_FAKE_THINKING_TEXT, "signature", sig));
    if (p->tool_call) {
        char tid[64];
        snprintf(tid, sizeof tid, "tooluse_fake_%" PRIu64, x->id);
        json_t *input = json_loadb(p->args.data, p->args.len, 0, NULL);
        json_array_append_new(content,
                              json_pack("{s:{s:s, s:s, s:o}}", "toolUse", "toolUseId", tid, "name",
                                        p->tool_name, "input", input ? input : json_object()));
    } else {
        json_array_append_new(content, json_pack("{s:s%}", "text", p->text.data, p->text.len));
    }
    sb_fake_plain(x, 200, "application/json",
                  json_pack("{s:{s:{s:s, s:o}}, s:s, s:o, s:{s:i}}", "output", "message", "role",
                            "assistant", "content", content, "stopReason",
                            p->tool_call ? "tool_use" : "end_turn", "usage", usage_json(p),
                            "metrics", "latencyMs", 42),
                  false);
    if (x->d.malformed && x->resp->body.len > 1)
        x->resp->body.len /= 2;
}

static void converse(struct sb_fake_call *x, json_t *root, bool stream)
{
    if (json_array_size(json_object_get(root, "messages")) == 0) {
        send_error(x, 400, "ValidationException",
                   "A conversation must start with a user message. Try again with a "
                   "conversation that starts with a user message.");
        return;
    }
    struct sb_fake_input in;
    sb_fake_input_init(&in);
    read_request(root, &in);
    in.stream = stream;
    struct sb_fake_plan p;
    int rc = sb_fake_plan_make(x, &in, &p);
    if (!rc && stream)
        rc = reply_stream(x, &p);
    else if (!rc)
        reply_json(x, &p);
    if (rc)
        send_error(x, 500, "InternalServerException", "fake-provider: response too large");
    sb_fake_plan_free(&p);
    sb_fake_input_free(&in);
}

static void invoke(struct sb_fake_call *x, json_t *root)
{
    json_t *t = json_object_get(root, "inputText");
    if (!json_is_string(t)) {
        send_error(x, 400, "ValidationException",
                   "Malformed input request: #: required key [inputText] not found, please "
                   "reformat your input and try again.");
        return;
    }
    json_t *d = json_object_get(root, "dimensions");
    json_int_t dims = json_is_integer(d) ? json_integer_value(d) : DEFAULT_DIMS;
    if (dims < 1 || dims > SB_FAKE_MAX_DIMENSIONS) {
        send_error(x, 400, "ValidationException", "Malformed input request: dimensions");
        return;
    }
    struct sb_buf *b = &x->resp->body;
    uint64_t words = sb_fake_count_words(json_string_value(t), json_string_length(t));
    int rc = sb_buf_append_str(b, "{\"embedding\":");
    rc |= sb_fake_embedding_append(
        b, sb_fake_hash(SB_FAKE_HASH_SEED, json_string_value(t), json_string_length(t)), (int)dims,
        false);
    rc |= sb_buf_printf(b, ",\"inputTextTokenCount\":%" PRIu64 "}", words ? words : 1);
    if (rc)
        send_error(x, 500, "InternalServerException", "fake-provider: response too large");
    else if (x->d.malformed && b->len > 1)
        b->len /= 2;
}

static bool ends(struct sb_fake_str s, const char *lit)
{
    size_t n = strlen(lit);
    return s.n >= n && memcmp(s.p + s.n - n, lit, n) == 0;
}

/* The model id between "/model/" and the operation, %-decoded (inference-profile ids and
 * versions such as "amazon.titan-embed-text-v2:0" arrive encoded). Returns its length, or -1
 * for a missing id or a broken escape. */
static long model_id(struct sb_fake_str p, char *out, size_t cap)
{
    const char *m = memmem(p.p, p.n, "/model/", 7);
    if (!m)
        return -1;
    const char *s = m + 7, *end = p.p + p.n;
    const char *slash = memchr(s, '/', (size_t)(end - s));
    if (!slash || slash == s)
        return -1;
    size_t k = 0;
    for (const char *c = s; c < slash; c++) {
        char v = *c;
        if (v == '%') {
            if (slash - c < 3 || sb_hex_val(c[1]) < 0 || sb_hex_val(c[2]) < 0)
                return -1;
            v = (char)(sb_hex_val(c[1]) * 16 + sb_hex_val(c[2]));
            c += 2;
        }
        if (k + 1 >= cap || v == '\0')
            return -1;
        out[k++] = v;
    }
    out[k] = '\0';
    return (long)k;
}

void sb_fake_bedrock_route(struct sb_fake_call *x)
{
    struct sb_fake_str p = x->path;
    while (p.n > 1 && p.p[p.n - 1] == '/')
        p.n--;
    char model[512];
    if (model_id(p, model, sizeof model) < 0) {
        send_error(x, 400, "ValidationException", "The provided model identifier is invalid.");
        return;
    }
    json_t *root = json_loadb(x->req->body ? x->req->body : "", x->req->body_len, 0, NULL);
    if (!json_is_object(root)) {
        send_error(x, 400, "ValidationException",
                   "Malformed input request, please reformat your "
                   "input and try again.");
    } else if (ends(p, "/converse")) {
        converse(x, root, false);
    } else if (ends(p, "/converse-stream")) {
        converse(x, root, true);
    } else {
        invoke(x, root);
    }
    json_decref(root);
}

/* The Gemini dialect of the fake provider (AI Studio and Vertex AI paths): generateContent,
 * streamGenerateContent?alt=sse, countTokens, embedContent and batchEmbedContents. Shapes
 * follow tests/data/fixtures/gemini/ (compact JSON: Google's spacing is not reproduced). */
#include "fake.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_DIMS 8
#define MAX_BATCH    2048

static bool is_vertex(const struct sb_fake_call *x)
{
    return memmem(x->path.p, x->path.n, "/projects/", 10) &&
           memmem(x->path.p, x->path.n, "/publishers/google/", 19);
}

static const char *status_name(int status)
{
    switch (status) {
    case 400:
        return "INVALID_ARGUMENT";
    case 401:
        return "UNAUTHENTICATED";
    case 403:
        return "PERMISSION_DENIED";
    case 404:
        return "NOT_FOUND";
    case 409:
        return "ABORTED";
    case 429:
        return "RESOURCE_EXHAUSTED";
    case 499:
        return "CANCELLED";
    case 501:
        return "UNIMPLEMENTED";
    case 503:
        return "UNAVAILABLE";
    case 504:
        return "DEADLINE_EXCEEDED";
    default:
        return status >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
    }
}

/* {"error":{"code","message","status","details"}}; `details` is stolen (NULL: []). */
static void send_error(struct sb_fake_call *x, int status, const char *message, json_t *details)
{
    struct sb_buf m;
    sb_buf_init(&m, 64 * 1024);
    sb_fake_error_message(x, message, &m);
    json_t *body = json_pack("{s:{s:i, s:s%, s:s, s:o}}", "error", "code", status, "message",
                             m.data ? m.data : "", m.len, "status", status_name(status), "details",
                             details ? details : json_array());
    sb_buf_free(&m);
    /* On a streaming URL the error is still plain JSON, under the stream's content type. */
    bool stream = memmem(x->path.p, x->path.n, ":streamGenerateContent", 22) != NULL;
    sb_fake_plain(x, status, stream ? "text/event-stream" : "application/json; charset=UTF-8", body,
                  true);
}

static void send_key_invalid(struct sb_fake_call *x)
{
    static const char msg[] = "API key not valid. Please pass a valid API key.";
    send_error(x, 400, msg,
               json_pack("[{s:s, s:s, s:s, s:{s:s}}, {s:s, s:s, s:s}]", "@type",
                         "type.googleapis.com/google.rpc.ErrorInfo", "reason", "API_KEY_INVALID",
                         "domain", "googleapis.com", "metadata", "service",
                         "generativelanguage.googleapis.com", "@type",
                         "type.googleapis.com/google.rpc.LocalizedMessage", "locale", "en-US",
                         "message", msg));
}

bool sb_fake_gemini_auth_failed(struct sb_fake_call *x)
{
    if (is_vertex(x)) {
        const struct sb_fake_str *a = sb_fake_http_header(x->req, "authorization");
        if (a && a->n > 7 && strncasecmp(a->p, "bearer ", 7) == 0)
            x->got_key = (struct sb_fake_str){a->p + 7, a->n - 7};
        if (!x->got_key.n) {
            send_error(x, 401,
                       "Request is missing required authentication credential. Expected OAuth 2 "
                       "access token, login cookie or other valid authentication credential.",
                       NULL);
            return true;
        }
        if (x->d.has_key && (x->got_key.n != strlen(x->d.key) ||
                             memcmp(x->got_key.p, x->d.key, x->got_key.n) != 0)) {
            send_error(x, 401,
                       "Request had invalid authentication credentials. Expected OAuth 2 access "
                       "token, login cookie or other valid authentication credential.",
                       NULL);
            return true;
        }
        return false;
    }
    const struct sb_fake_str *k = sb_fake_http_header(x->req, "x-goog-api-key");
    struct sb_fake_str q;
    if (k)
        x->got_key = *k;
    else if (sb_fake_query(x, "key", &q))
        x->got_key = q;
    if (!x->got_key.n) {
        send_error(x, 403,
                   "Method doesn't allow unregistered callers (callers without established "
                   "identity). Please use API Key or other form of API consumer identity to call "
                   "this API.",
                   NULL);
        return true;
    }
    if (x->d.has_key &&
        (x->got_key.n != strlen(x->d.key) || memcmp(x->got_key.p, x->d.key, x->got_key.n) != 0)) {
        send_key_invalid(x);
        return true;
    }
    return false;
}

void sb_fake_gemini_status(struct sb_fake_call *x, int status)
{
    const char *msg = NULL;
    char buf[160];
    json_t *details = NULL;
    switch (status) {
    case 400:
        if (strcmp(x->d.code, "API_KEY_INVALID") == 0) {
            send_key_invalid(x);
            return;
        }
        msg = "Request contains an invalid argument.";
        break;
    case 401:
        msg = "Request had invalid authentication credentials.";
        break;
    case 403:
        msg = "Permission denied: Consumer has been suspended.";
        break;
    case 404:
        msg = "models/not-a-model is not found for API version v1beta, or is not supported for "
              "generateContent. Call ListModels to see the list of available models and their "
              "supported methods.";
        break;
    case 429: {
        char delay[32];
        if (x->d.retry_after >= 0)
            snprintf(delay, sizeof delay, "%" PRId64 "s", x->d.retry_after);
        else
            snprintf(delay, sizeof delay, "34.4s");
        msg = "You exceeded your current quota, please check your plan.";
        details = json_pack("[{s:s, s:[{s:s}]}, {s:s, s:s}]", "@type",
                            "type.googleapis.com/google.rpc.QuotaFailure", "violations", "quotaId",
                            "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "@type",
                            "type.googleapis.com/google.rpc.RetryInfo", "retryDelay", delay);
        break;
    }
    case 500:
        msg = "An internal error has occurred. Please retry or report in "
              "https://developers.generativeai.google/guide/troubleshooting";
        break;
    case 503:
        msg = "The model is overloaded. Please try again later.";
        break;
    case 504:
        msg = "Deadline expired before operation could complete.";
        break;
    default:
        break;
    }
    if (strcmp(x->d.code, "context_length_exceeded") == 0)
        msg = "The input token count (1200000) exceeds the maximum number of tokens allowed "
              "(1048576).";
    if (!msg) {
        snprintf(buf, sizeof buf, "fake-provider: injected status %d", status);
        msg = buf;
    }
    send_error(x, status, msg, details);
}

/* ---- requests ---- */

static void model_of(const struct sb_fake_call *x, struct sb_fake_input *in,
                     struct sb_fake_str *method)
{
    const char *p = x->path.p, *end = x->path.p + x->path.n;
    const char *m = memmem(p, x->path.n, "/models/", 8);
    const char *s = m ? m + 8 : p;
    const char *colon = memchr(s, ':', (size_t)(end - s));
    if (!colon)
        colon = end;
    snprintf(in->model, sizeof in->model, "%.*s", (int)(colon - s), s);
    *method = colon < end ? (struct sb_fake_str){colon + 1, (size_t)(end - colon - 1)}
                          : (struct sb_fake_str){"", 0};
}

static void read_contents(json_t *root, struct sb_fake_input *in)
{
    json_t *contents = json_object_get(root, "contents");
    in->prompt_words = sb_fake_json_words(contents) +
                       sb_fake_json_words(json_object_get(root, "systemInstruction"));
    json_t *last = json_array_get(contents, json_array_size(contents) - 1);
    const char *role = json_string_value(json_object_get(last, "role"));
    if (!role || strcmp(role, "user") == 0) {
        size_t i;
        json_t *part;
        json_array_foreach(json_object_get(last, "parts"), i, part)
        {
            json_t *fr = json_object_get(part, "functionResponse");
            json_t *t = json_object_get(part, "text");
            if (fr && !in->last_is_result) {
                in->last_is_result = true;
                json_t *resp = json_object_get(fr, "response");
                json_t *c = json_object_get(resp, "content");
                /* {"content": "<text>"} is how a text result travels; show the text. */
                if (json_is_string(c) && json_object_size(resp) == 1)
                    sb_fake_result_text(in, c);
                else
                    sb_fake_result_text(in, resp ? resp : json_null());
            } else if (json_is_string(t) && !in->last_is_user_text) {
                sb_fake_keep_text(&in->user_text, json_string_value(t), json_string_length(t));
                in->last_is_user_text = true;
            }
        }
    }
    json_t *fcc = json_object_get(json_object_get(root, "toolConfig"), "functionCallingConfig");
    const char *mode = json_string_value(json_object_get(fcc, "mode"));
    const char *want =
        json_string_value(json_array_get(json_object_get(fcc, "allowedFunctionNames"), 0));
    if (mode && strcmp(mode, "NONE") == 0)
        return;
    json_t *pick = NULL;
    size_t i, j;
    json_t *tool, *decl;
    json_array_foreach(json_object_get(root, "tools"), i, tool)
    {
        json_array_foreach(json_object_get(tool, "functionDeclarations"), j, decl)
        {
            const char *name = json_string_value(json_object_get(decl, "name"));
            if (!name)
                continue;
            if (!pick || (want && strcmp(want, name) == 0 &&
                          strcmp(want, json_string_value(json_object_get(pick, "name"))) != 0))
                pick = decl;
        }
    }
    if (pick) {
        json_t *schema = json_object_get(pick, "parameters");
        if (!schema)
            schema = json_object_get(pick, "parametersJsonSchema");
        in->tools_on = true;
        sb_fake_input_tool(in, json_string_value(json_object_get(pick, "name")), schema);
    }
}

static json_t *usage_json(const struct sb_fake_plan *p, uint64_t candidates, bool thoughts)
{
    uint64_t prompt = p->prompt_tokens + p->cached_tokens;
    uint64_t th = thoughts ? p->thinking_tokens : 0;
    json_t *u = json_pack("{s:I, s:I}", "promptTokenCount", (json_int_t)prompt, "totalTokenCount",
                          (json_int_t)(prompt + candidates + th));
    if (candidates)
        json_object_set_new(u, "candidatesTokenCount", json_integer((json_int_t)candidates));
    if (p->cached_tokens)
        json_object_set_new(u, "cachedContentTokenCount",
                            json_integer((json_int_t)p->cached_tokens));
    if (th)
        json_object_set_new(u, "thoughtsTokenCount", json_integer((json_int_t)th));
    return u;
}

static json_t *response(const struct sb_fake_call *x, const struct sb_fake_input *in, json_t *parts,
                        const char *finish, json_t *usage)
{
    char rid[64];
    snprintf(rid, sizeof rid, "fakeResponse%" PRIu64, x->id);
    json_t *cand =
        json_pack("{s:{s:o, s:s}, s:i}", "content", "parts", parts, "role", "model", "index", 0);
    if (finish)
        json_object_set_new(cand, "finishReason", json_string(finish));
    return json_pack("{s:[o], s:o, s:s, s:s}", "candidates", cand, "usageMetadata", usage,
                     "modelVersion", in->model, "responseId", rid);
}

static json_t *thought_part(const struct sb_fake_call *x)
{
    char sig[64];
    snprintf(sig, sizeof sig, "sig-fake-%" PRIu64, x->id);
    return json_pack("{s:s, s:b, s:s}", "text", SB_FAKE_THINKING_TEXT, "thought", 1,
                     "thoughtSignature", sig);
}

static json_t *call_part(const struct sb_fake_call *x, const struct sb_fake_plan *p)
{
    json_t *args = json_loadb(p->args.data, p->args.len, 0, NULL);
    json_t *fc = json_pack("{s:s, s:o}", "name", p->tool_name, "args", args ? args : json_object());
    json_t *part = json_pack("{s:o}", "functionCall", fc);
    if (x->d.gemini3) {
        char id[64], sig[64];
        snprintf(id, sizeof id, "g3fake%" PRIu64, x->id);
        snprintf(sig, sizeof sig, "sig-fake-%" PRIu64, x->id);
        json_object_set_new(fc, "id", json_string(id));
        json_object_set_new(part, "thoughtSignature", json_string(sig));
    }
    return part;
}

static int chunk(struct sb_fake_call *x, json_t *v)
{
    return sb_fake_sse(x, NULL, v, "\r\n\r\n");
}

static int fault(struct sb_fake_call *x, size_t *deltas, int *rc)
{
    if ((*deltas)++ != 0)
        return 0;
    struct sb_buf *b = &x->resp->body;
    if (x->d.stream_error) {
        *rc |= sb_buf_append_str(b, "data: {\"error\":{\"code\":503,\"message\":\"The model is "
                                    "overloaded. Please try again later.\",\"status\":"
                                    "\"UNAVAILABLE\"}}\r\n\r\n");
        *rc |= sb_fake_resp_end_event(x->resp);
        return 1;
    }
    if (x->d.malformed) {
        *rc |= sb_buf_append_str(
            b, "data: {\"candidates\": [{\"content\": {\"parts\": [{\"te\r\n\r\n");
        *rc |= sb_fake_resp_end_event(x->resp);
    }
    return 0;
}

static int reply_stream(struct sb_fake_call *x, const struct sb_fake_input *in,
                        const struct sb_fake_plan *p)
{
    x->resp->chunked = true;
    x->resp->content_type = "text/event-stream";
    int rc = 0;
    size_t deltas = 0;
    if (p->thinking) {
        rc |= chunk(
            x, response(x, in, json_pack("[o]", thought_part(x)), NULL, usage_json(p, 0, true)));
        if (fault(x, &deltas, &rc))
            return rc;
    }
    if (p->tool_call) {
        rc |= chunk(x, response(x, in, json_pack("[o]", call_part(x, p)), "STOP",
                                usage_json(p, p->output_tokens, true)));
        fault(x, &deltas, &rc);
        return rc;
    }
    size_t pos = 0;
    uint64_t words = 0;
    while (pos < p->text.len && !rc) {
        size_t e = sb_fake_next_delta(p->text.data, p->text.len, pos);
        words += sb_fake_count_words(p->text.data + pos, e - pos);
        rc |= chunk(x, response(x, in, json_pack("[{s:s%}]", "text", p->text.data + pos, e - pos),
                                e == p->text.len ? "STOP" : NULL, usage_json(p, words, true)));
        if (e < p->text.len && fault(x, &deltas, &rc))
            return rc;
        pos = e;
    }
    return rc;
}

static void generate(struct sb_fake_call *x, json_t *root, struct sb_fake_input *in, bool stream)
{
    struct sb_fake_plan p;
    in->stream = stream;
    int rc = sb_fake_plan_make(x, in, &p);
    if (!rc && stream) {
        rc = reply_stream(x, in, &p);
    } else if (!rc) {
        json_t *parts = json_array();
        if (p.thinking)
            json_array_append_new(parts, thought_part(x));
        if (p.tool_call)
            json_array_append_new(parts, call_part(x, &p));
        else
            json_array_append_new(parts, json_pack("{s:s%}", "text", p.text.data, p.text.len));
        sb_fake_plain(x, 200, "application/json; charset=UTF-8",
                      response(x, in, parts, "STOP", usage_json(&p, p.output_tokens, true)), false);
        if (x->d.malformed && x->resp->body.len > 1)
            x->resp->body.len /= 2;
    }
    if (rc)
        send_error(x, 500, "fake-provider: response too large", NULL);
    (void)root;
    sb_fake_plan_free(&p);
}

static uint64_t parts_seed(json_t *content, uint64_t *words)
{
    uint64_t h = SB_FAKE_HASH_SEED;
    size_t i;
    json_t *part;
    json_array_foreach(json_object_get(content, "parts"), i, part)
    {
        json_t *t = json_object_get(part, "text");
        if (json_is_string(t)) {
            h = sb_fake_hash(h, json_string_value(t), json_string_length(t));
            *words += sb_fake_count_words(json_string_value(t), json_string_length(t));
        }
    }
    return h;
}

static int embedding(struct sb_buf *b, json_t *req, uint64_t *words)
{
    json_t *d = json_object_get(req, "outputDimensionality");
    json_int_t dims = json_is_integer(d) ? json_integer_value(d) : DEFAULT_DIMS;
    if (dims < 1 || dims > SB_FAKE_MAX_DIMENSIONS)
        return -1;
    uint64_t seed = parts_seed(json_object_get(req, "content"), words);
    int rc = sb_buf_append_str(b, "{\"values\":");
    rc |= sb_fake_embedding_append(b, seed, (int)dims, false);
    rc |= sb_buf_append_char(b, '}');
    return rc ? -2 : 0;
}

static void embed(struct sb_fake_call *x, json_t *root, bool batch)
{
    struct sb_buf *b = &x->resp->body;
    uint64_t words = 0;
    int rc = 0;
    if (batch) {
        json_t *reqs = json_object_get(root, "requests");
        if (!json_is_array(reqs) || json_array_size(reqs) == 0 ||
            json_array_size(reqs) > MAX_BATCH) {
            send_error(x, 400, "* BatchEmbedContentsRequest.requests: contents is not specified",
                       NULL);
            return;
        }
        rc |= sb_buf_append_str(b, "{\"embeddings\":[");
        size_t i;
        json_t *r;
        json_array_foreach(reqs, i, r)
        {
            if (i)
                rc |= sb_buf_append_char(b, ',');
            int e = embedding(b, r, &words);
            if (e == -1) {
                send_error(x, 400, "* EmbedContentRequest.output_dimensionality: out of range",
                           NULL);
                return;
            }
            rc |= e;
        }
        rc |= sb_buf_append_str(b, "]}");
    } else {
        if (!json_is_object(json_object_get(root, "content"))) {
            send_error(x, 400, "* EmbedContentRequest.content: contents is not specified", NULL);
            return;
        }
        rc |= sb_buf_append_str(b, "{\"embedding\":");
        int e = embedding(b, root, &words);
        if (e == -1) {
            send_error(x, 400, "* EmbedContentRequest.output_dimensionality: out of range", NULL);
            return;
        }
        rc |= e;
        rc |= sb_buf_append_char(b, '}');
    }
    if (rc)
        send_error(x, 500, "fake-provider: response too large", NULL);
    else if (x->d.malformed && b->len > 1)
        b->len /= 2;
}

void sb_fake_gemini_route(struct sb_fake_call *x)
{
    struct sb_fake_input in;
    sb_fake_input_init(&in);
    struct sb_fake_str method;
    model_of(x, &in, &method);
    json_t *root = NULL;
    if (x->req->method.n != 4 || memcmp(x->req->method.p, "POST", 4) != 0) {
        send_error(x, 404, "Method not found.", NULL);
        goto out;
    }
    root = json_loadb(x->req->body ? x->req->body : "", x->req->body_len, 0, NULL);
    if (!json_is_object(root)) {
        send_error(x, 400, "Invalid JSON payload received. Unexpected token.", NULL);
        goto out;
    }
#define IS(lit) (method.n == sizeof lit - 1 && memcmp(method.p, lit, method.n) == 0)
    if (IS("generateContent") || IS("streamGenerateContent")) {
        bool stream = IS("streamGenerateContent");
        struct sb_fake_str alt;
        if (stream &&
            !(sb_fake_query(x, "alt", &alt) && alt.n == 3 && memcmp(alt.p, "sse", 3) == 0)) {
            send_error(x, 400, "fake-provider: streamGenerateContent answers only with alt=sse",
                       NULL);
            goto out;
        }
        if (json_array_size(json_object_get(root, "contents")) == 0) {
            send_error(x, 400, "* GenerateContentRequest.contents: contents is not specified",
                       NULL);
            goto out;
        }
        read_contents(root, &in);
        generate(x, root, &in, stream);
    } else if (IS("countTokens")) {
        json_t *g = json_object_get(root, "generateContentRequest");
        read_contents(g ? g : root, &in);
        uint64_t n = in.prompt_words ? in.prompt_words : 1;
        sb_fake_plain(x, 200, "application/json; charset=UTF-8",
                      json_pack("{s:I, s:[{s:s, s:I}]}", "totalTokens", (json_int_t)n,
                                "promptTokensDetails", "modality", "TEXT", "tokenCount",
                                (json_int_t)n),
                      false);
    } else if (IS("embedContent")) {
        embed(x, root, false);
    } else if (IS("batchEmbedContents")) {
        embed(x, root, true);
    } else {
        send_error(x, 404, "Method not found.", NULL);
    }
#undef IS
out:
    json_decref(root);
    sb_fake_input_free(&in);
}

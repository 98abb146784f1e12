/* Every provider's URLs and authentication: OpenAI and the OpenAI-compatible servers (vLLM,
 * Ollama, Groq, Together, Mistral, DeepSeek, xAI, OpenRouter, ...), Azure OpenAI's deployment
 * URLs, Anthropic, Gemini (AI Studio and Vertex AI), Bedrock (SigV4) and Cohere. */
#include "providers/provider.h"

#include "canon/gemini.h"
#include "canon/sigv4.h"

#include <time.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *endpoint_suffix(enum sb_endpoint ep)
{
    switch (ep) {
    case SB_EP_CHAT:
        return "chat/completions";
    case SB_EP_COMPLETIONS:
        return "completions";
    case SB_EP_EMBEDDINGS:
        return "embeddings";
    case SB_EP_COUNT_TOKENS:
        break;
    }
    return "";
}

static char *join_base(const char *base, const char *extra)
{
    struct sb_buf b;
    sb_buf_init(&b, 8192);
    size_t n = strlen(base);
    while (n && base[n - 1] == '/')
        n--;
    if (sb_buf_append(&b, base, n) || sb_buf_append_str(&b, extra)) {
        sb_buf_free(&b);
        return NULL;
    }
    return sb_buf_take(&b, NULL);
}

static struct curl_slist *add_header(struct curl_slist *list, const char *name, const char *value,
                                     int *failed)
{
    struct sb_buf b;
    sb_buf_init(&b, 16384);
    /* "Name:" with nothing after the colon tells curl to drop a header it would add. */
    if (sb_buf_printf(&b, value[0] ? "%s: %s" : "%s:%s", name, value) != 0) {
        *failed = 1;
        sb_buf_free(&b);
        return list;
    }
    struct curl_slist *n = curl_slist_append(list, b.data);
    /* curl_slist_append copies the string. */
    explicit_bzero(b.data, b.len);
    sb_buf_free(&b);
    if (!n) {
        *failed = 1;
        return list;
    }
    return n;
}

/* libcurl's rules (CURLOPT_PROXY): http_proxy (lower case only), https_proxy or HTTPS_PROXY,
 * then ALL_PROXY or all_proxy; NO_PROXY or no_proxy for exceptions. */
static char *env_dup(const char *a, const char *b)
{
    const char *v = a ? getenv(a) : NULL;
    if ((!v || !*v) && b)
        v = getenv(b);
    return strdup(v ? v : "");
}

static void resolve_proxy(struct sb_provider_target *t, const char *base)
{
    bool https = strncasecmp(base, "https:", 6) == 0;
    char *p = https ? env_dup("https_proxy", "HTTPS_PROXY") : env_dup("http_proxy", NULL);
    if (p && !*p) {
        free(p);
        p = env_dup("ALL_PROXY", "all_proxy");
    }
    t->proxy = p;
    t->noproxy = env_dup("no_proxy", "NO_PROXY");
}

static int add_bearer(struct curl_slist **list, const char *name, const char *prefix,
                      const char *key, int *failed)
{
    struct sb_buf v;
    sb_buf_init(&v, 16384);
    if (sb_buf_printf(&v, "%s%s", prefix, key) == 0)
        *list = add_header(*list, name, v.data, failed);
    else
        *failed = 1;
    if (v.data)
        explicit_bzero(v.data, v.len);
    sb_buf_free(&v);
    return 0;
}

/* The base URL with `tail` appended unless the base already ends with it. */
static char *base_with(const char *base, const char *tail)
{
    size_t n = strlen(base), t = strlen(tail);
    while (n && base[n - 1] == '/')
        n--;
    if (n >= t && memcmp(base + n - t, tail, t) == 0)
        tail = "";
    struct sb_buf b;
    sb_buf_init(&b, 8192);
    if (sb_buf_append(&b, base, n) || sb_buf_append_str(&b, tail)) {
        sb_buf_free(&b);
        return NULL;
    }
    return sb_buf_take(&b, NULL);
}

int sb_provider_prepare(const struct sb_deployment *d, struct sb_provider_target *t, char *err,
                        size_t err_len)
{
    memset(t, 0, sizeof *t);
    t->d = d;
    int failed = 0;
    if (d->provider == SB_PROVIDER_UNSUPPORTED) {
        snprintf(err, err_len, "provider '%s' is not supported yet", d->provider_name);
        return -1;
    }
    const char *base = d->api_base ? d->api_base : "https://api.openai.com/v1";
    if (strchr(base, '?') || strchr(base, '#')) {
        snprintf(err, err_len, "api_base must not contain a query or fragment");
        return -1;
    }
    const char *key = d->api_key && d->api_key[0] ? d->api_key : NULL;
    t->url_query = strdup("");
    switch (d->provider) {
    case SB_PROVIDER_AZURE: {
        t->dialect = SB_DIALECT_OPENAI;
        struct sb_buf p;
        sb_buf_init(&p, 4096);
        int rc = sb_buf_append_str(&p, "/openai/deployments/");
        rc = rc ? rc : sb_buf_append_str(&p, d->upstream_model);
        rc = rc ? rc : sb_buf_append_str(&p, "/");
        t->url_prefix = rc ? NULL : join_base(base, p.data);
        sb_buf_free(&p);
        struct sb_buf q;
        sb_buf_init(&q, 1024);
        rc = sb_buf_printf(&q, "?api-version=%s", d->api_version ? d->api_version : "2024-10-21");
        free(t->url_query);
        t->url_query = rc ? NULL : sb_buf_take(&q, NULL);
        sb_buf_free(&q);
        if (key)
            t->headers = add_header(t->headers, "api-key", key, &failed);
        break;
    }
    case SB_PROVIDER_ANTHROPIC:
        t->dialect = SB_DIALECT_ANTHROPIC;
        t->url_prefix = base_with(base, "/v1");
        if (key)
            t->headers = add_header(t->headers, "x-api-key", key, &failed);
        t->headers = add_header(t->headers, "anthropic-version", "2023-06-01", &failed);
        break;
    case SB_PROVIDER_GEMINI:
        t->dialect = SB_DIALECT_GEMINI;
        t->embed = &sb_embed_gemini;
        t->url_prefix = base_with(base, "/v1beta");
        if (key)
            t->headers = add_header(t->headers, "x-goog-api-key", key, &failed);
        break;
    case SB_PROVIDER_VERTEX: {
        t->dialect = SB_DIALECT_GEMINI;
        t->embed = &sb_embed_vertex;
        t->vertex = true;
        struct sb_buf p;
        sb_buf_init(&p, 4096);
        int rc = sb_buf_printf(&p, "/v1/projects/%s/locations/%s/publishers/google",
                               d->vertex_project ? d->vertex_project : "",
                               d->vertex_location ? d->vertex_location : "us-central1");
        t->url_prefix = rc ? NULL : join_base(base, p.data);
        sb_buf_free(&p);
        if (key)
            add_bearer(&t->headers, "Authorization", "Bearer ", key, &failed);
        break;
    }
    case SB_PROVIDER_BEDROCK:
        t->dialect = SB_DIALECT_BEDROCK;
        t->embed = &sb_embed_bedrock;
        t->url_prefix = join_base(base, "");
        if (key)
            add_bearer(&t->headers, "Authorization", "Bearer ", key, &failed);
        else
            t->sigv4 = true;
        break;
    case SB_PROVIDER_COHERE:
        t->dialect = SB_DIALECT_COHERE;
        t->embed = &sb_embed_cohere;
        t->url_prefix = base_with(base, "/v2");
        if (key)
            add_bearer(&t->headers, "Authorization", "Bearer ", key, &failed);
        break;
    case SB_PROVIDER_OPENAI:
    case SB_PROVIDER_UNSUPPORTED:
        t->dialect = SB_DIALECT_OPENAI;
        t->url_prefix = join_base(base, "/");
        if (key)
            add_bearer(&t->headers, "Authorization", "Bearer ", key, &failed);
        break;
    }
    switch (t->dialect) {
    case SB_DIALECT_OPENAI:
        t->codec = &sb_codec_openai;
        break;
    case SB_DIALECT_ANTHROPIC:
        t->codec = &sb_codec_anthropic;
        break;
    case SB_DIALECT_GEMINI:
        t->codec = &sb_codec_gemini;
        break;
    case SB_DIALECT_BEDROCK:
        t->codec = &sb_codec_bedrock;
        break;
    case SB_DIALECT_COHERE:
        t->codec = &sb_codec_cohere;
        break;
    }
    t->headers = add_header(t->headers, "Content-Type", "application/json", &failed);
    /* curl would otherwise send Expect: 100-continue for large bodies and wait for it. */
    t->headers = add_header(t->headers, "Expect", "", &failed);
    /* And its default Accept header (any type), which providers do not need. */
    t->headers = add_header(t->headers, "Accept", "", &failed);
    struct sb_buf m;
    sb_buf_init(&m, 4096);
    if (sb_buf_append_json_str(&m, d->upstream_model, strlen(d->upstream_model)) != 0)
        failed = 1;
    t->upstream_model_json = sb_buf_take(&m, NULL);
    resolve_proxy(t, base);
    if (failed || !t->url_prefix || !t->url_query || !t->upstream_model_json || !t->proxy ||
        !t->noproxy) {
        snprintf(err, err_len, "out of memory or value too long");
        sb_provider_target_free(t);
        return -1;
    }
    return 0;
}

void sb_provider_target_free(struct sb_provider_target *t)
{
    free(t->url_prefix);
    free(t->url_query);
    free(t->upstream_model_json);
    free(t->proxy);
    free(t->noproxy);
    curl_slist_free_all(t->headers);
    memset(t, 0, sizeof *t);
}

int sb_provider_url(const struct sb_provider_target *t, enum sb_endpoint ep, bool stream,
                    const char *model, struct sb_buf *url)
{
    if (!model)
        model = t->d->upstream_model;
    int rc = sb_buf_append_str(url, t->url_prefix);
    switch (t->dialect) {
    case SB_DIALECT_OPENAI:
        rc = rc ? rc : sb_buf_append_str(url, endpoint_suffix(ep));
        break;
    case SB_DIALECT_ANTHROPIC:
        rc = rc ? rc
                : sb_buf_append_str(url, ep == SB_EP_COUNT_TOKENS ? "/messages/count_tokens"
                                                                  : "/messages");
        break;
    case SB_DIALECT_GEMINI: {
        /* Model ids are path segments: anything but a plain id is refused at the encoder. */
        const char *method = ep == SB_EP_EMBEDDINGS
                                 ? (t->vertex ? ":predict" : ":batchEmbedContents")
                             : ep == SB_EP_COUNT_TOKENS ? ":countTokens"
                             : stream                   ? ":streamGenerateContent?alt=sse"
                                                        : ":generateContent";
        rc = rc ? rc : sb_buf_append_str(url, "/models/");
        rc = rc ? rc : sb_sigv4_encode_path(model, url);
        rc = rc ? rc : sb_buf_append_str(url, method);
        break;
    }
    case SB_DIALECT_BEDROCK:
        rc = rc ? rc : sb_buf_append_str(url, "/model/");
        rc = rc ? rc : sb_sigv4_encode_path(model, url);
        rc = rc ? rc
                : sb_buf_append_str(url, ep == SB_EP_EMBEDDINGS ? "/invoke"
                                         : stream               ? "/converse-stream"
                                                                : "/converse");
        break;
    case SB_DIALECT_COHERE:
        rc = rc ? rc : sb_buf_append_str(url, ep == SB_EP_EMBEDDINGS ? "/embed" : "/chat");
        break;
    }
    rc = rc ? rc : sb_buf_append_str(url, t->url_query);
    return rc;
}

int sb_provider_sign(const struct sb_provider_target *t, const char *url, const char *body,
                     size_t body_len, char lines[][1024], int max_lines)
{
    const struct sb_deployment *d = t->d;
    if (!t->sigv4 || max_lines < 4)
        return 0;
    struct sb_sigv4_creds c = {
        .access_key = d->aws_access_key_id,
        .secret_key = d->aws_secret_access_key,
        .session_token =
            d->aws_session_token && d->aws_session_token[0] ? d->aws_session_token : NULL,
        .region = d->aws_region,
        .service = "bedrock",
    };
    struct sb_sigv4_out o;
    if (sb_sigv4_sign(&c, "POST", url, "application/json", body, body_len, time(NULL), &o) != 0)
        return -1;
    int n = 0;
    snprintf(lines[n++], 1024, "x-amz-date: %s", o.amz_date);
    snprintf(lines[n++], 1024, "x-amz-content-sha256: %s", o.content_sha256);
    int k = snprintf(lines[n++], 1024, "authorization: %s", o.authorization);
    if (k < 0 || k >= 1024)
        return -1;
    if (c.session_token) {
        k = snprintf(lines[n++], 1024, "x-amz-security-token: %s", c.session_token);
        if (k < 0 || k >= 1024)
            return -1;
    }
    explicit_bzero(&o, sizeof o);
    return n;
}

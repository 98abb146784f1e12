/* OpenAI and the OpenAI-compatible servers (vLLM, Ollama, Groq, Together, Mistral,
 * DeepSeek, xAI, OpenRouter, ...), and Azure OpenAI's deployment URLs. */
#include "providers/provider.h"

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
    if (d->provider == SB_PROVIDER_AZURE) {
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
        t->url_query = rc ? NULL : sb_buf_take(&q, NULL);
        sb_buf_free(&q);
        if (d->api_key)
            t->headers = add_header(t->headers, "api-key", d->api_key, &failed);
    } else {
        t->url_prefix = join_base(base, "/");
        t->url_query = strdup("");
        if (d->api_key && d->api_key[0]) {
            struct sb_buf v;
            sb_buf_init(&v, 16384);
            if (sb_buf_printf(&v, "Bearer %s", d->api_key) == 0)
                t->headers = add_header(t->headers, "Authorization", v.data, &failed);
            else
                failed = 1;
            explicit_bzero(v.data, v.len);
            sb_buf_free(&v);
        }
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

int sb_provider_url(const struct sb_provider_target *t, enum sb_endpoint ep, struct sb_buf *url)
{
    int rc = sb_buf_append_str(url, t->url_prefix);
    rc = rc ? rc : sb_buf_append_str(url, endpoint_suffix(ep));
    rc = rc ? rc : sb_buf_append_str(url, t->url_query);
    return rc;
}

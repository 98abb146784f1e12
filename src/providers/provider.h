/* Providers: where a request for a deployment goes, how it is authenticated, and which
 * dialect its bodies speak (src/canon/codecs.h has the codecs).
 *
 * This layer knows URLs and headers; bodies are the API layer's business (same-dialect
 * traffic is spliced, other traffic translated through the canonical form).
 *
 * sb_provider_prepare builds, once per deployment at startup, everything static about its
 * upstream requests, so the hot path only appends a path suffix and a request id. */
#ifndef SB_PROVIDERS_PROVIDER_H
#define SB_PROVIDERS_PROVIDER_H

#include "canon/codecs.h"
#include "config/config.h"
#include "core/buf.h"

#include <curl/curl.h>

enum sb_endpoint {
    SB_EP_CHAT,         /* chat/completions, or the dialect's chat call */
    SB_EP_COMPLETIONS,  /* completions (OpenAI-compatible providers only) */
    SB_EP_EMBEDDINGS,   /* embeddings */
    SB_EP_COUNT_TOKENS, /* Anthropic messages/count_tokens, Gemini countTokens */
};

struct sb_provider_target {
    const struct sb_deployment *d;
    enum sb_dialect dialect;
    const struct sb_provider_codec *codec; /* chat translation into this dialect */
    const struct sb_embed_codec *embed;    /* NULL: OpenAI-shaped embeddings (pass-through) */
    bool sigv4;       /* Bedrock with AWS credentials: each request is signed (sb_provider_sign) */
    bool vertex;      /* Gemini's dialect on Vertex AI (its own embeddings and token counting) */
    char *url_prefix; /* e.g. "https://api.openai.com/v1/" */
    char *url_query;  /* e.g. "?api-version=2024-10-21", or "" */
    struct curl_slist *headers; /* auth, content type, "Expect:" (no 100-continue) */
    char *upstream_model_json;  /* the upstream model as a JSON string literal, quotes included */
    /* Proxy settings from the environment, read once here rather than by libcurl on every
     * transfer: "" means none. */
    char *proxy;
    char *noproxy;
};

/* Returns 0, or -1 with a reason in err (never containing the key). */
int sb_provider_prepare(const struct sb_deployment *d, struct sb_provider_target *t, char *err,
                        size_t err_len);
void sb_provider_target_free(struct sb_provider_target *t);

/* Appends the full URL for an endpoint to `url`; `stream`: the streaming variant, for the
 * dialects whose streams have their own URL (Gemini, Bedrock). `model`: the upstream model,
 * for the dialects that carry it in the URL (NULL: the deployment's). */
int sb_provider_url(const struct sb_provider_target *t, enum sb_endpoint ep, bool stream,
                    const char *model, struct sb_buf *url);

/* Bedrock SigV4: the header lines ("x-amz-date: ...", "x-amz-content-sha256: ...",
 * "authorization: ...", "x-amz-security-token: ...") for one request, each NUL-terminated in
 * lines[i] (at most 4, cap bytes each). Returns how many, or -1. */
int sb_provider_sign(const struct sb_provider_target *t, const char *url, const char *body,
                     size_t body_len, char lines[][1024], int max_lines);

#endif

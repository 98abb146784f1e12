/* Provider dialects: where a request for a deployment goes and how it is authenticated.
 *
 * This layer knows URLs and headers; bodies of same-dialect traffic are not touched here (the
 * API layer splices `model` and `stream_options` into the client's bytes). Translation for
 * other dialects arrives behind the same seam.
 *
 * sb_provider_prepare builds, once per deployment at startup, everything static about its
 * upstream requests, so the hot path only appends a path suffix and a request id. */
#ifndef SB_PROVIDERS_PROVIDER_H
#define SB_PROVIDERS_PROVIDER_H

#include "config/config.h"
#include "core/buf.h"

#include <curl/curl.h>

enum sb_endpoint {
    SB_EP_CHAT,        /* chat/completions */
    SB_EP_COMPLETIONS, /* completions */
    SB_EP_EMBEDDINGS,  /* embeddings */
};

struct sb_provider_target {
    const struct sb_deployment *d;
    char *url_prefix;           /* e.g. "https://api.openai.com/v1/" */
    char *url_query;            /* e.g. "?api-version=2024-10-21", or "" */
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

/* Appends the full URL for an endpoint to `url`. */
int sb_provider_url(const struct sb_provider_target *t, enum sb_endpoint ep, struct sb_buf *url);

#endif

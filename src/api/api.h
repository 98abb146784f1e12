/* The API layer: the gateway's shared state and its request handlers.
 *
 * struct sb_gateway is built once from a loaded config and is read-only afterwards, so every
 * worker reads it without locks; each worker has its own struct sb_gw_worker (upstream
 * client, access-log batch, counters). */
#ifndef SB_API_API_H
#define SB_API_API_H

#include "config/config.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/spares.h"
#include "http/server.h"
#include "ledger/ledger.h"
#include "policy/policy.h"
#include "policy/prices.h"
#include "policy/shared.h"
#include "obs/metrics.h"
#include "providers/provider.h"
#include "router/router.h"
#include "router/rules.h"
#include "upstream/upstream.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct sb_model_group {
    int *deployments; /* enabled deployments of this alias, indexes into cfg->deployments */
    size_t n;
    const char *unavailable_reason; /* when n == 0: why (from a disabled deployment) */
    int fallbacks[8];               /* aliases tried, in order, when this one fails */
    size_t n_fallbacks;
    int cw_fallbacks[8]; /* after a context-length error */
    size_t n_cw_fallbacks;
    int cp_fallbacks[8]; /* after a content-policy refusal */
    size_t n_cp_fallbacks;
    int retries; /* router num_retries, else the largest max_retries of the deployments */
    int64_t max_input_tokens;  /* the largest context window of its deployments; 0: unknown */
    bool wildcard;             /* model_name holds a '*' (like "openai/" followed by '*') */
    bool tagged;               /* some deployment has litellm_params.tags (tag routing applies) */
    double *weights;           /* for simple-shuffle: weight, else rpm, else tpm; or NULL */
    int *order;                /* priority tiers, or NULL */
    int64_t *rpm, *tpm;        /* per deployment, for usage-based routing */
    double *cost;              /* per deployment: input + output price per token, < 0 unknown */
    struct sb_router_group rg; /* the router's view of deployments, weights, order */
    /* The dearest prices among its deployments (nano-dollars per token), for the worst-case
     * budget reservation; price_in < 0 when none of them has a price. */
    double price_in, price_out;
};

struct sb_gateway {
    const struct sb_config *cfg;
    struct sb_metrics *metrics;
    struct sb_router *router;
    enum sb_strategy strategy;
    json_t *rules;                      /* routing_rules (validated), or NULL */
    int *rule_then;                     /* per rule: the alias it routes to */
    int *rule_model;                    /* per rule: the alias it applies to, or -1 for any */
    struct sb_provider_target *targets; /* one per deployment; zeroed for disabled ones */
    struct sb_model_group *groups;      /* one per cfg->model_names entry */
    char *models_json;                  /* the GET /v1/models body */
    size_t models_json_len;
    time_t started;
    int access_fd; /* -1: off */
    bool access_fd_owned;
    pthread_mutex_t access_lock;
    struct sb_server *server;
    /* Virtual keys and spend (NULL when the gateway runs without a database: no master key). */
    struct sb_policy *policy;
    struct sb_ledger *ledger;
    _Atomic bool *price_warned; /* per deployment: its missing price was logged */
    struct sb_price *prices;    /* per deployment, resolved at start */
    bool *priced;               /* per deployment: prices[i] is known */
    /* Redis for the limits and budgets shared by every instance (policy/shared.h). */
    struct sb_redis_url redis;
    bool redis_on;
};

struct sb_gw_worker {
    struct sb_gateway *gw;
    struct sb_worker *w;
    int index;
    struct sb_upstream *up;
    struct sb_shared *shared; /* NULL: no Redis */
    struct sb_buf access_log;
    uint32_t rr;
    uint64_t rng;
    time_t ts_sec;      /* the second ts_prefix was formatted for */
    char ts_prefix[32]; /* "2026-11-21T19:05:40." */
    /* Finished requests' structs kept for the next ones (a few KiB each: glibc serves that
     * size from its bins, not its per-thread cache, at a cost per request). */
    struct sb_spares spare;
    struct sb_spares proxy_spare; /* finished proxies, with their buffers (proxy.c) */
};

int sb_gateway_init(struct sb_gateway *gw, const struct sb_config *cfg, int nworkers);
void sb_gateway_free(struct sb_gateway *gw);

/* Server callbacks (sb_server_opts.on_request etc.; ud = the gateway). */
void sb_gateway_on_request(struct sb_exchange *x);
void sb_gateway_worker_start(struct sb_worker *w);
void sb_gateway_worker_stop(struct sb_worker *w);

/* Everything the access log and metrics record for one exchange. */
struct sb_request_record {
    enum sb_route route;
    int model; /* alias index or -1 */
    const struct sb_deployment *dep;
    const char *request_id;
    const char *error_code; /* the gateway's own error code, or NULL */
    int attempts;           /* upstream calls made (1 + retries + fallbacks tried) */
    int served_by;          /* alias index that answered when it was a fallback, else -1 */
    bool stream;
    int64_t tokens_in, tokens_out, tokens_cached, tokens_reasoning; /* -1: unknown */
    int64_t tokens_cache_write;                                     /* -1: unknown */
    int64_t tokens_est_out; /* output estimated from streamed bytes when no usage came */
    int64_t cost_nano;      /* -1: not billed yet / no price */
    bool priced;            /* the deployment that served has a price */
    uint64_t upstream_start_ns, upstream_end_ns; /* 0: no upstream call */
    double upstream_ttfb_s;
};

struct sb_proxy;

/* Per-exchange state of the API layer (x->hdata); freed when the exchange ends. */
struct sb_api_req {
    struct sb_gw_worker *gw_w;
    struct sb_spare spare; /* kept in gw_w->spare once finished */
    struct sb_exchange *x;
    enum sb_dialect dialect; /* the client's: OpenAI, or Anthropic on /v1/messages */
    struct sb_request_record rec;
    struct sb_proxy *proxy; /* set while a proxied call is under way */
    void *admin;            /* set while an admin store job is under way (src/api/admin.c) */
    char request_id[132];   /* the client's x-request-id, else ledger_id */
    char ledger_id[37];     /* always the gateway's own: the spend ledger's unique id */
    char rid_header[160];   /* "x-request-id: ...\r\n" */
    size_t rid_header_len;
    /* Who is calling: the master key, or a virtual key (then `adm` holds its admission once
     * the proxy admitted the request: settled or released exactly once, by the proxy). */
    bool master;
    bool admitted;
    bool billed;       /* sb_api_bill ran */
    const char *key_p; /* the presented credential (borrowed from the request headers) */
    size_t key_n;
    char end_user[129]; /* the request's `user` (Anthropic: metadata.user_id), or "" */
    struct sb_admission adm;
    struct sb_shared_ticket shared; /* what the request holds in Redis */
};

/* The proxy for chat/completions, completions and embeddings. */
void sb_proxy_handle(struct sb_api_req *r, enum sb_endpoint ep);
/* Stops the proxied call (client gone) and frees its state. */
void sb_proxy_abort(struct sb_api_req *r);
/* Frees the proxies a worker kept for reuse (at the worker's stop). */
void sb_proxy_spares_free(struct sb_gw_worker *gw_w);

/* The admin API (src/api/admin.c): the /key/..., /team/..., /user/..., /customer/...,
 * /spend/logs, /global/spend/... and /model/info routes. Returns false when the path is not one of
 * its routes (the caller goes on); true when it took the request (answered it now, or will from a
 * store job). The caller has not checked credentials: admin routes need the master key or an admin
 * key. */
bool sb_admin_handle(struct sb_api_req *r);
/* Frees what an admin request still holds when its exchange ends first. */
void sb_admin_abort(struct sb_api_req *r);

/* Bills a request once (sb_api_bill is a no-op the second time): computes its cost from the
 * record's usage and the serving deployment's price (record: cost_nano, priced), settles or
 * releases the virtual key's admission, and journals the spend row (gateway with a ledger).
 * Called by the proxy before the last byte of a response is sent (so that a response the
 * client saw complete is always in the journal), and by the exchange's end otherwise. */
void sb_api_bill(struct sb_api_req *r, int status);

/* Appends nano-dollars as dollars with nine decimals ("0.000022000"), without floating point. */
int sb_api_append_dollars(struct sb_buf *b, int64_t nano);
/* The same through core/buf's cursor: at most SB_API_DOLLARS_MAX bytes. */
#define SB_API_DOLLARS_MAX (1 + SB_PUT_INT_MAX + 10)
char *sb_api_put_dollars(char *p, int64_t nano);

/* The price of a deployment: the config's per-token prices where given, else the built-in
 * table. false: no price known. */
bool sb_api_price(const struct sb_deployment *d, struct sb_price *out);

/* Responds with a gateway error in the client dialect's envelope (OpenAI's, or Anthropic's
 * on /v1/messages); the code lands in the access log. */
void sb_api_fail(struct sb_api_req *r, int status, const char *type, const char *code,
                 const char *param, const char *msg);
/* The same with extra header lines (each ending in CRLF), e.g. Retry-After. */
void sb_api_fail_hdr(struct sb_api_req *r, int status, const char *type, const char *code,
                     const char *msg, const char *hdr, size_t hdr_len);

#endif

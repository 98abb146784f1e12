/* Prometheus metrics for the data path.
 *
 * Workers record into their own shard (no locks, no shared cache lines on the hot path);
 * /metrics sums the shards with relaxed atomic loads. Model labels are the configured aliases
 * (an index into cfg->model_names; -1 for a request whose model is unknown or absent,
 * rendered as model=""), so a client cannot grow the label set. Status is the HTTP status
 * returned to the client, any value 100..599 (others are clamped to 0).
 *
 * Exposed (text format 0.0.4):
 *   switchboard_requests_total{route,model,status}             counter
 *   switchboard_request_duration_seconds{route,model}          histogram (total latency)
 *   switchboard_time_to_first_byte_seconds{route,model}        histogram (streams)
 *   switchboard_gateway_overhead_seconds{route}                histogram (total - upstream)
 *   switchboard_requests_in_flight                             gauge
 *   switchboard_upstream_errors_total{model,kind}              counter (kind: connect, timeout,
 *                                                              status_4xx, status_5xx, protocol)
 *   switchboard_tokens_total{model,direction}                  counter (input/output)
 *   switchboard_build_info{version}                            gauge = 1
 * Buckets (seconds): .0005 .001 .0025 .005 .01 .025 .05 .1 .25 .5 1 2.5 5 10 30 60 120 +Inf. */
#ifndef SB_OBS_METRICS_H
#define SB_OBS_METRICS_H

#include "core/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sb_route {
    SB_ROUTE_CHAT,
    SB_ROUTE_COMPLETIONS,
    SB_ROUTE_EMBEDDINGS,
    SB_ROUTE_MESSAGES,     /* Anthropic /v1/messages */
    SB_ROUTE_COUNT_TOKENS, /* Anthropic /v1/messages/count_tokens */
    SB_ROUTE_MODELS,
    SB_ROUTE_HEALTH,
    SB_ROUTE_METRICS,
    SB_ROUTE_OTHER,
    SB_ROUTE_COUNT
};

/* "chat_completions", "completions", "embeddings", "messages", "count_tokens", "models",
 * "health", "metrics", "other". */
const char *sb_route_name(enum sb_route r);

enum sb_upstream_error_kind {
    SB_UPERR_CONNECT,
    SB_UPERR_TIMEOUT,
    SB_UPERR_STATUS_4XX,
    SB_UPERR_STATUS_5XX,
    SB_UPERR_PROTOCOL,
    SB_UPERR_COUNT
};

struct sb_metrics_sample {
    enum sb_route route;
    int model; /* index into the model names, or -1 */
    int status;
    double total_s;    /* request received to response complete */
    double upstream_s; /* < 0: there was no upstream call */
    double ttft_s;     /* < 0: not a stream, or no byte reached the client */
    int64_t tokens_in; /* < 0: unknown */
    int64_t tokens_out;
};

struct sb_metrics;

/* `model_names` is copied (a NULL entry is the empty alias). One shard per worker, each a
 * separate cache-line-aligned block. Returns NULL on allocation failure, nworkers < 1 or
 * > 4096, n_models > 100000, or n_models > 0 with NULL names. Call from one thread before any
 * worker starts; free only after every worker and renderer is done. */
struct sb_metrics *sb_metrics_new(int nworkers, char *const *model_names, size_t n_models);
void sb_metrics_free(struct sb_metrics *m);

/* Worker-thread calls: `worker` is that thread's index and only it may use that shard. Each is a
 * handful of relaxed atomic adds, no locks, no allocation. An out-of-range worker (or kind) is
 * ignored; an out-of-range model counts as unknown (model=""), an out-of-range route as
 * "other". Durations that are negative or NaN count as 0. Tokens are added when > 0. ttft is
 * recorded when >= 0; overhead (total - upstream, at least 0) when upstream_s >= 0. Each shard
 * tells apart at most 64 distinct status codes; further new codes count as status 0. */
void sb_metrics_observe(struct sb_metrics *m, int worker, const struct sb_metrics_sample *s);
void sb_metrics_upstream_error(struct sb_metrics *m, int worker, int model,
                               enum sb_upstream_error_kind kind);
void sb_metrics_inflight(struct sb_metrics *m, int worker, int delta);

/* Any thread, concurrently with the workers and other renderers: appends the whole exposition
 * to out. Series with a zero value are left out, except build_info and in_flight. Returns 0,
 * -EINVAL for NULL arguments, or -E2BIG / -ENOMEM from out, in which case out is left as it
 * was (never a partial exposition). */
int sb_metrics_render(struct sb_metrics *m, struct sb_buf *out);

#endif

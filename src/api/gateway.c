#include "api/api.h"

#include "core/log.h"
#include "core/rand.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

/* ---------------------------------------------------------------- setup */

/* One entry of /v1/models. */
static int append_model(struct sb_buf *b, const char *name, time_t created)
{
    int rc = sb_buf_append_str(b, "{\"id\":");
    rc = rc ? rc : sb_buf_append_json_str(b, name, strlen(name));
    rc = rc ? rc
            : sb_buf_printf(b,
                            ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"switchboard\"}",
                            (long long)created);
    return rc;
}

/* The /v1/models list: every available alias, or (key_hash given) those the key may call. */
static int append_models(const struct sb_gateway *gw, struct sb_buf *b, const char *key_hash)
{
    int rc = sb_buf_append_str(b, "{\"object\":\"list\",\"data\":[");
    bool first = true;
    for (size_t i = 0; i < gw->cfg->n_model_names && rc == 0; i++) {
        const char *name = gw->cfg->model_names[i];
        if (gw->groups[i].n == 0 ||
            (key_hash && !sb_policy_model_allowed(gw->policy, key_hash, name)))
            continue;
        rc = first ? 0 : sb_buf_append_char(b, ',');
        rc = rc ? rc : append_model(b, name, gw->started);
        first = false;
    }
    return rc ? rc : sb_buf_append_str(b, "]}");
}

static int build_models_json(struct sb_gateway *gw)
{
    struct sb_buf b;
    sb_buf_init(&b, 64u << 20);
    if (append_models(gw, &b, NULL) != 0) {
        sb_buf_free(&b);
        return -1;
    }
    gw->models_json = sb_buf_take(&b, &gw->models_json_len);
    return 0;
}

static int open_access_log(struct sb_gateway *gw)
{
    const char *dest = gw->cfg->server.access_log ? gw->cfg->server.access_log : "stdout";
    gw->access_fd_owned = false;
    if (strcmp(dest, "off") == 0) {
        gw->access_fd = -1;
    } else if (strcmp(dest, "stdout") == 0) {
        gw->access_fd = STDOUT_FILENO;
    } else if (strcmp(dest, "stderr") == 0) {
        gw->access_fd = STDERR_FILENO;
    } else {
        gw->access_fd = open(dest, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (gw->access_fd < 0) {
            sb_error("cannot open access log %s: %s", dest, strerror(errno));
            return -1;
        }
        gw->access_fd_owned = true;
    }
    return 0;
}

/* The fallback aliases (as indexes) for alias `name` from one of the config's lists, or from
 * `defaults` when the list has no entry for it; itself and unknown names are left out. */
static void resolve_chain(const struct sb_config *cfg, const struct sb_fallback *list, size_t n,
                          char *const *defaults, size_t n_defaults, const char *name, size_t self,
                          int *out, size_t *nout)
{
    char *const *to = defaults;
    size_t n_to = n_defaults;
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i].from, name) == 0) {
            to = list[i].to;
            n_to = list[i].n_to;
        }
    *nout = 0;
    for (size_t i = 0; i < n_to && *nout < 8; i++) {
        int f = sb_config_model_index(cfg, to[i], strlen(to[i]));
        if (f >= 0 && (size_t)f != self)
            out[(*nout)++] = f;
    }
}

int sb_gateway_init(struct sb_gateway *gw, const struct sb_config *cfg, int nworkers)
{
    memset(gw, 0, sizeof *gw);
    gw->cfg = cfg;
    gw->started = time(NULL);
    gw->access_fd = -1;
    pthread_mutex_init(&gw->access_lock, NULL);
    gw->metrics = sb_metrics_new(nworkers, cfg->model_names, cfg->n_model_names);
    gw->targets = calloc(cfg->n_deployments ? cfg->n_deployments : 1, sizeof *gw->targets);
    gw->groups = calloc(cfg->n_model_names ? cfg->n_model_names : 1, sizeof *gw->groups);
    gw->price_warned = calloc(cfg->n_deployments ? cfg->n_deployments : 1, sizeof(_Atomic bool));
    if (!gw->metrics || !gw->targets || !gw->groups || !gw->price_warned)
        goto fail;
    for (size_t i = 0; i < cfg->n_model_names; i++) {
        gw->groups[i].deployments = calloc(cfg->n_deployments, sizeof(int));
        if (!gw->groups[i].deployments)
            goto fail;
    }
    for (size_t i = 0; i < cfg->n_deployments; i++) {
        const struct sb_deployment *d = &cfg->deployments[i];
        int g = sb_config_model_index(cfg, d->model_name, strlen(d->model_name));
        if (g < 0)
            continue;
        struct sb_model_group *grp = &gw->groups[g];
        if (d->disabled) {
            if (!grp->unavailable_reason)
                grp->unavailable_reason = d->disabled_reason;
            sb_info("model %s (%s): disabled: %s", d->model_name, d->litellm_model,
                    d->disabled_reason ? d->disabled_reason : "disabled");
            continue;
        }
        char err[256];
        if (sb_provider_prepare(d, &gw->targets[i], err, sizeof err) != 0) {
            sb_error("model %s (%s): %s", d->model_name, d->litellm_model, err);
            goto fail;
        }
        if ((d->rpm > 0 || d->tpm > 0) &&
            sb_router_strategy(cfg->router.routing_strategy) != SB_STRATEGY_USAGE)
            sb_warn("model %s: rpm/tpm only steer simple-shuffle and usage-based-routing; "
                    "requests over them are not refused yet",
                    d->model_name);
        grp->deployments[grp->n++] = (int)i;
    }
    const struct sb_router_config *rc = &cfg->router;
    gw->strategy = sb_router_strategy(rc->routing_strategy);
    gw->router = sb_router_new(cfg->n_deployments, rc->allowed_fails,
                               (uint64_t)(rc->cooldown_time_s * 1000));
    if (!gw->router)
        goto fail;
    for (size_t g = 0; g < cfg->n_model_names; g++) {
        struct sb_model_group *grp = &gw->groups[g];
        const char *name = cfg->model_names[g];
        resolve_chain(cfg, rc->fallbacks, rc->n_fallbacks, rc->default_fallbacks,
                      rc->n_default_fallbacks, name, g, grp->fallbacks, &grp->n_fallbacks);
        resolve_chain(cfg, rc->context_window_fallbacks, rc->n_context_window_fallbacks, NULL, 0,
                      name, g, grp->cw_fallbacks, &grp->n_cw_fallbacks);
        resolve_chain(cfg, rc->content_policy_fallbacks, rc->n_content_policy_fallbacks, NULL, 0,
                      name, g, grp->cp_fallbacks, &grp->n_cp_fallbacks);
        /* simple-shuffle weighs by weight when any deployment of the group sets one, else by
         * rpm, else by tpm (LiteLLM's rule); order tiers only when some deployment has one. */
        bool any_weight = false, any_rpm = false, any_tpm = false, any_order = false;
        for (size_t i = 0; i < grp->n; i++) {
            const struct sb_deployment *d = &cfg->deployments[grp->deployments[i]];
            any_weight |= d->weight_set;
            any_rpm |= d->rpm > 0;
            any_tpm |= d->tpm > 0;
            any_order |= d->order > 0;
        }
        if (grp->n && (any_weight || any_rpm || any_tpm)) {
            grp->weights = calloc(grp->n, sizeof *grp->weights);
            if (!grp->weights)
                goto fail;
            for (size_t i = 0; i < grp->n; i++) {
                const struct sb_deployment *d = &cfg->deployments[grp->deployments[i]];
                double w = any_weight ? d->weight : any_rpm ? (double)d->rpm : (double)d->tpm;
                grp->weights[i] = w > 0 ? w : 0;
            }
        }
        if (grp->n && any_order) {
            grp->order = calloc(grp->n, sizeof *grp->order);
            if (!grp->order)
                goto fail;
            for (size_t i = 0; i < grp->n; i++)
                grp->order[i] = cfg->deployments[grp->deployments[i]].order;
        }
        grp->rpm = calloc(grp->n ? grp->n : 1, sizeof *grp->rpm);
        grp->tpm = calloc(grp->n ? grp->n : 1, sizeof *grp->tpm);
        grp->cost = calloc(grp->n ? grp->n : 1, sizeof *grp->cost);
        if (!grp->rpm || !grp->tpm || !grp->cost)
            goto fail;
        for (size_t i = 0; i < grp->n; i++) {
            const struct sb_deployment *d = &cfg->deployments[grp->deployments[i]];
            grp->rpm[i] = d->rpm;
            grp->tpm[i] = d->tpm;
            grp->cost[i] =
                d->cost_in >= 0 || d->cost_out >= 0
                    ? (d->cost_in > 0 ? d->cost_in : 0) + (d->cost_out > 0 ? d->cost_out : 0)
                    : -1;
        }
        grp->rg = (struct sb_router_group){grp->deployments, grp->weights, grp->order, grp->n,
                                           grp->rpm,         grp->tpm,     grp->cost};
        grp->wildcard = strchr(name, '*') != NULL;
        for (size_t i = 0; i < grp->n && !grp->tagged; i++)
            grp->tagged = cfg->deployments[grp->deployments[i]].n_tags > 0;
        grp->max_input_tokens = 0;
        for (size_t i = 0; i < grp->n; i++) {
            int64_t m = cfg->deployments[grp->deployments[i]].max_input_tokens;
            if (m <= 0) { /* one deployment of unknown size: no pre-call check */
                grp->max_input_tokens = 0;
                break;
            }
            if (m > grp->max_input_tokens)
                grp->max_input_tokens = m;
        }
        grp->retries = rc->num_retries;
        if (!rc->num_retries_set)
            for (size_t i = 0; i < grp->n; i++)
                if (cfg->deployments[grp->deployments[i]].max_retries > grp->retries)
                    grp->retries = cfg->deployments[grp->deployments[i]].max_retries;
    }
    if (rc->routing_rules_json) {
        gw->rules = json_loads(rc->routing_rules_json, 0, NULL);
        size_t nr = json_array_size(gw->rules);
        gw->rule_then = calloc(nr ? nr : 1, sizeof *gw->rule_then);
        gw->rule_model = calloc(nr ? nr : 1, sizeof *gw->rule_model);
        if (!gw->rules || !gw->rule_then || !gw->rule_model)
            goto fail;
        for (size_t i = 0; i < nr; i++) {
            json_t *rule = json_array_get(gw->rules, i);
            const char *then = json_string_value(json_object_get(rule, "then"));
            const char *model = json_string_value(json_object_get(rule, "model"));
            gw->rule_then[i] = sb_config_model_index(cfg, then, strlen(then));
            gw->rule_model[i] =
                model && strcmp(model, "*") ? sb_config_model_index(cfg, model, strlen(model)) : -1;
            if (gw->rule_then[i] < 0 || (model && strcmp(model, "*") && gw->rule_model[i] < 0)) {
                sb_error("routing_rules: rule %zu names a model that is not in model_list", i + 1);
                goto fail;
            }
        }
    }
    /* Prices, resolved once: per deployment, and each alias's dearest for reservations. */
    gw->prices = calloc(cfg->n_deployments ? cfg->n_deployments : 1, sizeof *gw->prices);
    gw->priced = calloc(cfg->n_deployments ? cfg->n_deployments : 1, sizeof *gw->priced);
    if (!gw->prices || !gw->priced)
        goto fail;
    for (size_t i = 0; i < cfg->n_deployments; i++)
        gw->priced[i] = sb_api_price(&cfg->deployments[i], &gw->prices[i]);
    for (size_t g = 0; g < cfg->n_model_names; g++) {
        struct sb_model_group *grp = &gw->groups[g];
        grp->price_in = grp->price_out = -1;
        for (size_t k = 0; k < grp->n; k++) {
            int d = grp->deployments[k];
            if (!gw->priced[d])
                continue;
            const struct sb_price *pr = &gw->prices[d];
            double in = pr->input, out = pr->reasoning > pr->output ? pr->reasoning : pr->output;
            if (pr->cache_write > in)
                in = pr->cache_write;
            if (in > grp->price_in)
                grp->price_in = in;
            if (out > grp->price_out)
                grp->price_out = out;
        }
    }
    if (build_models_json(gw) != 0 || open_access_log(gw) != 0)
        goto fail;
    return 0;
fail:
    sb_gateway_free(gw);
    return -1;
}

void sb_gateway_free(struct sb_gateway *gw)
{
    if (gw->targets)
        for (size_t i = 0; i < gw->cfg->n_deployments; i++)
            sb_provider_target_free(&gw->targets[i]);
    free(gw->targets);
    if (gw->groups)
        for (size_t i = 0; i < gw->cfg->n_model_names; i++) {
            free(gw->groups[i].deployments);
            free(gw->groups[i].weights);
            free(gw->groups[i].order);
            free(gw->groups[i].rpm);
            free(gw->groups[i].tpm);
            free(gw->groups[i].cost);
        }
    free(gw->groups);
    free(gw->price_warned);
    free(gw->prices);
    free(gw->priced);
    free(gw->models_json);
    if (gw->metrics)
        sb_metrics_free(gw->metrics);
    sb_router_free(gw->router);
    json_decref(gw->rules);
    free(gw->rule_then);
    free(gw->rule_model);
    if (gw->access_fd_owned)
        close(gw->access_fd);
    pthread_mutex_destroy(&gw->access_lock);
    memset(gw, 0, sizeof *gw);
}

/* ---------------------------------------------------------------- workers */

/* The spend rows of this loop pass go to the journal before any of their responses. */
static void flush_journal(struct sb_worker *w)
{
    struct sb_gw_worker *gw_w = sb_worker_data(w);
    if (gw_w->gw->ledger)
        (void)sb_ledger_flush(gw_w->gw->ledger, gw_w->index);
}

static void flush_access_log(struct sb_worker *w)
{
    struct sb_gw_worker *gw_w = sb_worker_data(w);
    struct sb_buf *b = &gw_w->access_log;
    if (!b->len)
        return;
    /* One write per loop iteration, not per request; the lock keeps batches from two
     * workers from interleaving on a pipe. */
    pthread_mutex_lock(&gw_w->gw->access_lock);
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = write(gw_w->gw->access_fd, b->data + off, b->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* the log is best effort: a full disk must not stop the gateway */
        off += (size_t)n;
    }
    pthread_mutex_unlock(&gw_w->gw->access_lock);
    sb_buf_reset(b);
}

void sb_gateway_worker_start(struct sb_worker *w)
{
    struct sb_gateway *gw = sb_worker_ud(w);
    struct sb_gw_worker *gw_w = calloc(1, sizeof *gw_w);
    if (!gw_w)
        abort(); /* a small fixed allocation at startup */
    gw_w->gw = gw;
    gw_w->w = w;
    gw_w->index = sb_worker_index(w);
    gw_w->up = sb_upstream_new(sb_worker_loop(w), 1024,
                               strcmp(gw->cfg->server.upstream_http1, "curl") != 0);
    if (!gw_w->up)
        abort();
    sb_buf_init(&gw_w->access_log, 16u << 20);
    if (getrandom(&gw_w->rng, sizeof gw_w->rng, 0) != sizeof gw_w->rng)
        gw_w->rng = (uint64_t)time(NULL) ^ ((uint64_t)gw_w->index << 32);
    gw_w->rng |= 1;
    sb_worker_set_data(w, gw_w);
    sb_worker_set_flush_hook(w, flush_access_log);
    if (gw->ledger && sb_ledger_attach(gw->ledger, gw_w->index, sb_worker_loop(w)) != 0)
        abort();
    if (gw->ledger)
        sb_worker_set_before_flush_hook(w, flush_journal);
    if (gw->redis_on && gw->policy) {
        gw_w->shared = sb_shared_new(sb_worker_loop(w), &gw->redis, (int)gw->cfg->redis_timeout_ms);
        if (!gw_w->shared)
            abort();
    }
}

void sb_gateway_worker_stop(struct sb_worker *w)
{
    struct sb_gw_worker *gw_w = sb_worker_data(w);
    flush_access_log(w);
    if (gw_w->gw->ledger)
        sb_ledger_detach(gw_w->gw->ledger, gw_w->index);
    sb_upstream_close(gw_w->up);
    sb_shared_close(gw_w->shared);
    sb_buf_free(&gw_w->access_log);
    struct sb_api_req *r;
    while ((r = SB_SPARES_TAKE(&gw_w->spare, struct sb_api_req, spare)))
        free(r);
    sb_proxy_spares_free(gw_w);
    sb_worker_set_flush_hook(w, NULL);
    sb_worker_set_before_flush_hook(w, NULL);
    sb_worker_set_data(w, NULL);
    free(gw_w);
}

/* ---------------------------------------------------------------- recording */

static double ns_to_s(uint64_t ns)
{
    return (double)ns / 1e9;
}

/* The access-log line below the strings whose length it is given: every key, number and
 * null the line can hold (about 700 bytes at most) with room to spare. */
#define LOG_LINE_FIXED_MAX 1024

/* Seconds as milliseconds with three decimals, without printf; at most SB_PUT_INT_MAX + 4. */
static char *put_ms(char *p, double seconds)
{
    uint64_t us = seconds > 0 ? (uint64_t)(seconds * 1e6 + 0.5) : 0;
    p = sb_put_u64(p, us / 1000);
    *p++ = '.';
    return sb_put_3digits(p, (unsigned)(us % 1000));
}

/* A JSON string, or null for NULL; at most SB_PUT_JSON_STR_MAX(n) + 4 bytes. */
static char *put_json_or_null(char *p, const char *v, size_t n)
{
    return v ? sb_put_json_str(p, v, n) : SB_PUT_LIT(p, "null");
}

static char *put_tokens(char *p, int64_t v)
{
    return v < 0 ? SB_PUT_LIT(p, "null") : sb_put_i64(p, v);
}

static size_t len_or_0(const char *s)
{
    return s ? strlen(s) : 0;
}

/* A path segment starts with "sk-". */
static bool has_key_segment(const char *p, size_t n)
{
    if (n >= 3 && memcmp(p, "sk-", 3) == 0)
        return true;
    for (const char *s = p, *end = p + n; (s = memchr(s, '/', (size_t)(end - s))) != NULL; s++)
        if (end - s >= 4 && memcmp(s + 1, "sk-", 3) == 0)
            return true;
    return false;
}

/* The path as a JSON string, with any path segment that looks like a key ("sk-...", as in
 * /key/<key>/regenerate) masked to its last four characters: keys never reach a log. n <= 256;
 * at most SB_PUT_JSON_STR_MAX(256) bytes. */
static char *put_path(char *out, const char *p, size_t n)
{
    if (!has_key_segment(p, n))
        return sb_put_json_str(out, p, n); /* the usual case */
    char tmp[256];
    size_t k = 0;
    for (size_t i = 0; i < n && k < sizeof tmp;) {
        if ((i == 0 || p[i - 1] == '/') && n - i >= 3 && memcmp(p + i, "sk-", 3) == 0) {
            size_t end = i;
            while (end < n && p[end] != '/')
                end++;
            static const char mask[] = "sk-****";
            for (size_t j = 0; j < sizeof mask - 1 && k < sizeof tmp; j++)
                tmp[k++] = mask[j];
            /* The last four characters, as LiteLLM's key_name shows them. */
            for (size_t j = end - i > 11 ? end - 4 : end; j < end && k < sizeof tmp; j++)
                tmp[k++] = p[j];
            i = end;
            continue;
        }
        tmp[k++] = p[i++];
    }
    return sb_put_json_str(out, tmp, k);
}

/* Appends the exchange's access-log line to the worker's batch, all of it or (the batch is
 * full) none of it. `ts` is the wall clock, the durations in seconds (< 0: none). The room for
 * the longest line these strings can make is reserved once, so the pieces are written with
 * no check each. */
static void append_access_line(struct sb_gw_worker *gw_w, const struct sb_api_req *r, bool aborted,
                               int status, const struct timespec *ts, double total, double upstream,
                               double ttfb)
{
    const struct sb_exchange *x = r->x;
    const struct sb_request_record *rec = &r->rec;
    const struct sb_config *cfg = gw_w->gw->cfg;
    const struct sb_deployment *d = rec->dep;
    if (ts->tv_sec != gw_w->ts_sec) { /* the formatted second is reused until it changes */
        struct tm tm;
        gmtime_r(&ts->tv_sec, &tm);
        if (strftime(gw_w->ts_prefix, sizeof gw_w->ts_prefix, "%Y-%m-%dT%H:%M:%S.", &tm) == 0)
            gw_w->ts_prefix[0] = '\0';
        gw_w->ts_sec = ts->tv_sec;
    }
    const char *model = rec->model >= 0 ? cfg->model_names[rec->model] : NULL;
    const char *route = sb_route_name(rec->route);
    const char *provider = d ? d->provider_name : NULL;
    const char *deployment = d ? d->litellm_model : NULL;
    const char *fallback = rec->served_by >= 0 ? cfg->model_names[rec->served_by] : NULL;
    size_t ts_n = strlen(gw_w->ts_prefix);
    bool keyed = !r->master && r->adm.key_hash[0];
    const char *team = keyed && r->adm.team_id[0] ? r->adm.team_id : NULL;
    const char *error = rec->error_code ? rec->error_code : (aborted ? "client_closed" : NULL);
    size_t rid_n = strlen(r->request_id), model_n = len_or_0(model), route_n = len_or_0(route),
           provider_n = len_or_0(provider), deployment_n = len_or_0(deployment),
           fallback_n = len_or_0(fallback), key_n = keyed ? strlen(r->adm.key_hash) : 0,
           team_n = len_or_0(team), error_n = len_or_0(error);
    size_t method_n = x->req.method.n, path_n = x->req.path.n < 256 ? x->req.path.n : 256;
    /* Each string's worst case on its own (no sum of lengths can overflow: each is bounded by
     * memory the process holds). */
    size_t room = LOG_LINE_FIXED_MAX + ts_n + SB_PUT_JSON_STR_MAX(rid_n) +
                  SB_PUT_JSON_STR_MAX(method_n) + SB_PUT_JSON_STR_MAX(256) +
                  SB_PUT_JSON_STR_MAX(route_n) + SB_PUT_JSON_STR_MAX(model_n) +
                  SB_PUT_JSON_STR_MAX(provider_n) + SB_PUT_JSON_STR_MAX(deployment_n) +
                  SB_PUT_JSON_STR_MAX(fallback_n) + SB_PUT_JSON_STR_MAX(key_n) +
                  SB_PUT_JSON_STR_MAX(team_n) + SB_PUT_JSON_STR_MAX(error_n);
    struct sb_buf *b = &gw_w->access_log;
    if (sb_buf_reserve(b, room) != 0)
        return; /* the batch is full: drop this line rather than write half of it */
    char *start = sb_buf_end(b);
    char *p = SB_PUT_LIT(start, "{\"ts\":\"");
    p = sb_put(p, gw_w->ts_prefix, ts_n);
    p = sb_put_3digits(p, (unsigned)(ts->tv_nsec / 1000000));
    p = SB_PUT_LIT(p, "Z\",\"request_id\":");
    p = sb_put_json_str(p, r->request_id, rid_n);
    p = SB_PUT_LIT(p, ",\"method\":");
    p = sb_put_json_str(p, x->req.method.p, method_n);
    p = SB_PUT_LIT(p, ",\"path\":");
    p = put_path(p, x->req.path.p, path_n);
    p = SB_PUT_LIT(p, ",\"route\":");
    p = put_json_or_null(p, route, route_n);
    p = SB_PUT_LIT(p, ",\"model\":");
    p = put_json_or_null(p, model, model_n);
    p = SB_PUT_LIT(p, ",\"provider\":");
    p = put_json_or_null(p, provider, provider_n);
    p = SB_PUT_LIT(p, ",\"deployment\":");
    p = put_json_or_null(p, deployment, deployment_n);
    p = SB_PUT_LIT(p, ",\"status\":");
    p = sb_put_i64(p, status);
    p = rec->stream ? SB_PUT_LIT(p, ",\"stream\":true") : SB_PUT_LIT(p, ",\"stream\":false");
    p = SB_PUT_LIT(p, ",\"latency_ms\":");
    p = put_ms(p, total);
    if (upstream >= 0) {
        p = SB_PUT_LIT(p, ",\"upstream_ms\":");
        p = put_ms(p, upstream);
        p = SB_PUT_LIT(p, ",\"overhead_ms\":");
        p = put_ms(p, total > upstream ? total - upstream : 0);
    } else {
        p = SB_PUT_LIT(p, ",\"upstream_ms\":null,\"overhead_ms\":null");
    }
    if (rec->upstream_ttfb_s >= 0 && rec->upstream_start_ns) {
        p = SB_PUT_LIT(p, ",\"upstream_ttfb_ms\":");
        p = put_ms(p, rec->upstream_ttfb_s);
    }
    if (ttfb >= 0) {
        p = SB_PUT_LIT(p, ",\"ttfb_ms\":");
        p = put_ms(p, ttfb);
    }
    if (rec->attempts) {
        p = SB_PUT_LIT(p, ",\"attempts\":");
        p = sb_put_i64(p, rec->attempts);
    }
    if (rec->served_by >= 0) {
        p = SB_PUT_LIT(p, ",\"fallback_model\":");
        p = put_json_or_null(p, fallback, fallback_n);
    }
    p = SB_PUT_LIT(p, ",\"tokens_in\":");
    p = put_tokens(p, rec->tokens_in);
    p = SB_PUT_LIT(p, ",\"tokens_out\":");
    p = put_tokens(p, rec->tokens_out);
    p = SB_PUT_LIT(p, ",\"tokens_cached\":");
    p = put_tokens(p, rec->tokens_cached);
    p = SB_PUT_LIT(p, ",\"tokens_reasoning\":");
    p = put_tokens(p, rec->tokens_reasoning);
    if (rec->cost_nano >= 0) {
        p = SB_PUT_LIT(p, ",\"cost_usd\":");
        p = sb_api_put_dollars(p, rec->cost_nano);
    }
    if (rec->dep && !rec->priced)
        p = SB_PUT_LIT(p, ",\"price_missing\":true");
    if (keyed) {
        p = SB_PUT_LIT(p, ",\"key_hash\":");
        p = sb_put_json_str(p, r->adm.key_hash, key_n);
        if (team) {
            p = SB_PUT_LIT(p, ",\"team_id\":");
            p = sb_put_json_str(p, team, team_n);
        }
    }
    p = SB_PUT_LIT(p, ",\"bytes_in\":");
    p = sb_put_u64(p, x->bytes_in);
    p = SB_PUT_LIT(p, ",\"bytes_out\":");
    p = sb_put_u64(p, x->bytes_out);
    p = SB_PUT_LIT(p, ",\"error\":");
    p = put_json_or_null(p, error, error_n);
    p = SB_PUT_LIT(p, "}\n");
    assert((size_t)(p - start) <= room);
    sb_buf_commit(b, p);
}

static void record(struct sb_api_req *r, bool aborted)
{
    struct sb_gw_worker *gw_w = r->gw_w;
    struct sb_exchange *x = r->x;
    const struct sb_request_record *rec = &r->rec;
    uint64_t now = uv_hrtime();
    int status = aborted && !x->finished ? 499 : x->status;
    double total = ns_to_s(now - x->t_start_ns);
    double upstream =
        rec->upstream_start_ns
            ? ns_to_s((rec->upstream_end_ns ? rec->upstream_end_ns : now) - rec->upstream_start_ns)
            : -1;
    double ttfb =
        rec->stream && x->t_first_byte_ns ? ns_to_s(x->t_first_byte_ns - x->t_start_ns) : -1;
    struct sb_metrics_sample s = {
        .route = rec->route,
        .model = rec->model,
        .status = status,
        .total_s = total,
        .upstream_s = upstream,
        .ttft_s = ttfb,
        .tokens_in = rec->tokens_in,
        .tokens_out = rec->tokens_out,
    };
    sb_metrics_observe(gw_w->gw->metrics, gw_w->index, &s);
    if (gw_w->gw->access_fd < 0)
        return;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    append_access_line(gw_w, r, aborted, status, &ts, total, upstream, ttfb);
}

/* ---------------------------------------------------------------- responses */

static void fail_with(struct sb_api_req *r, const struct sb_error *e, const char *extra,
                      size_t extra_len)
{
    r->rec.error_code = e->code;
    char hdr[1024];
    struct sb_buf h = {.data = hdr, .len = 0, .cap = sizeof hdr, .max = sizeof hdr - 1};
    sb_buf_append(&h, r->rid_header, r->rid_header_len);
    if (extra_len)
        sb_buf_append(&h, extra, extra_len);
    if (r->dialect != SB_DIALECT_ANTHROPIC) {
        sb_http_respond_error(r->x, e, h.data, h.len);
        return;
    }
    char body[1024];
    struct sb_buf b = {.data = body, .len = 0, .cap = sizeof body, .max = sizeof body - 1};
    if (sb_error_render_anthropic(e, &b) != 0) {
        sb_http_respond_error(r->x, e, h.data, h.len);
        return;
    }
    sb_http_respond(r->x, e->status, "application/json", h.data, h.len, b.data, b.len);
}

void sb_api_fail(struct sb_api_req *r, int status, const char *type, const char *code,
                 const char *param, const char *msg)
{
    struct sb_error e;
    sb_error_set(&e, status, type, code, param, "%s", msg);
    fail_with(r, &e, NULL, 0);
}

void sb_api_fail_hdr(struct sb_api_req *r, int status, const char *type, const char *code,
                     const char *msg, const char *hdr, size_t hdr_len)
{
    struct sb_error e;
    sb_error_set(&e, status, type, code, NULL, "%s", msg);
    fail_with(r, &e, hdr, hdr_len);
}

/* At most this many spare request structs per worker. */
#define SPARE_MAX 64

static struct sb_api_req *req_new(struct sb_gw_worker *gw_w)
{
    struct sb_api_req *r = SB_SPARES_TAKE(&gw_w->spare, struct sb_api_req, spare);
    if (!r)
        return calloc(1, sizeof(struct sb_api_req));
    memset(r, 0, sizeof *r);
    return r;
}

static void req_free(struct sb_api_req *r)
{
    if (!SB_SPARES_KEEP(&r->gw_w->spare, r, spare, SPARE_MAX))
        free(r);
}

static void on_end(struct sb_exchange *x, bool aborted)
{
    struct sb_api_req *r = x->hdata;
    if (r->proxy)
        sb_proxy_abort(r);
    if (r->admin)
        sb_admin_abort(r);
    sb_api_bill(r, aborted && !x->finished ? 499 : x->status);
    record(r, aborted);
    sb_metrics_inflight(r->gw_w->gw->metrics, r->gw_w->index, -1);
    req_free(r);
}

static bool valid_request_id(const char *p, size_t n)
{
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\')
            return false;
    }
    return true;
}

/* A new request id: "req_", the time in milliseconds (12 hex digits), 20 random hex digits.
 * Ids made later sort later, so the ledger's request-id index grows at its end instead of
 * being written all over (which made every batch rewrite most of the index's pages). */
static void new_request_id(struct sb_api_req *r, char out[37])
{
    static const char hex[] = "0123456789abcdef";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    memcpy(out, "req_", 4);
    for (int i = 0; i < 12; i++)
        out[4 + i] = hex[(ms >> ((11 - i) * 4)) & 15];
    uint64_t a = sb_rand_next(&r->gw_w->rng), b = sb_rand_next(&r->gw_w->rng);
    for (int i = 0; i < 16; i++)
        out[16 + i] = hex[(a >> (i * 4)) & 15];
    for (int i = 0; i < 4; i++)
        out[32 + i] = hex[(b >> (i * 4)) & 15];
    out[36] = '\0';
}

static void make_request_id(struct sb_api_req *r)
{
    /* The ledger's id is always the gateway's own: a client's x-request-id could repeat and,
     * the ledger being exactly-once by id, make later requests unbilled. */
    new_request_id(r, r->ledger_id);
    const struct sb_http_str *h = sb_http_header_get(&r->x->req, "x-request-id");
    if (h && valid_request_id(h->p, h->n)) {
        memcpy(r->request_id, h->p, h->n);
        r->request_id[h->n] = '\0';
    } else {
        memcpy(r->request_id, r->ledger_id, sizeof r->ledger_id);
    }
    int n = snprintf(r->rid_header, sizeof r->rid_header, "x-request-id: %s\r\n", r->request_id);
    r->rid_header_len = n > 0 && (size_t)n < sizeof r->rid_header ? (size_t)n : 0;
}

/* The credential a client presented: Authorization: Bearer, x-api-key or api-key. */
static struct sb_http_str presented_key(const struct sb_http_request *req)
{
    const struct sb_http_str *h = sb_http_header_get(req, "authorization");
    struct sb_http_str given = {NULL, 0};
    if (h) {
        if (h->n > 7 && strncasecmp(h->p, "Bearer ", 7) == 0) {
            given.p = h->p + 7;
            given.n = h->n - 7;
            while (given.n && *given.p == ' ')
                given.p++, given.n--;
        }
    } else if ((h = sb_http_header_get(req, "x-api-key")) != NULL ||
               (h = sb_http_header_get(req, "api-key")) != NULL) {
        given = *h;
    }
    return given;
}

/* The master key (or no master key configured). */
static bool is_master(const struct sb_gateway *gw, struct sb_http_str given)
{
    const char *key = gw->cfg->master_key;
    if (!key)
        return true;
    size_t klen = strlen(key);
    if (!given.p || given.n != klen)
        return false;
    return CRYPTO_memcmp(given.p, key, klen) == 0;
}

static bool authorized(const struct sb_gateway *gw, const struct sb_http_request *req)
{
    return is_master(gw, presented_key(req));
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The master key, or a virtual key the policy knows (its admission is filled in for the
 * proxy). False after answering 401. */
static bool authenticate(struct sb_api_req *r)
{
    struct sb_gateway *gw = r->gw_w->gw;
    struct sb_http_str k = presented_key(&r->x->req);
    r->key_p = k.p;
    r->key_n = k.n;
    r->master = is_master(gw, k);
    if (r->master)
        return true;
    if (!gw->policy || !k.p) {
        sb_api_fail(r, 401, "invalid_request_error", "invalid_api_key", NULL,
                    "Missing or invalid API key. Send it as 'Authorization: Bearer <key>'.");
        return false;
    }
    if (sb_policy_authenticate(gw->policy, k.p, k.n, wall_ms(), &r->adm) != 0) {
        sb_api_fail(r, r->adm.status ? r->adm.status : 401, "invalid_request_error",
                    r->adm.code ? r->adm.code : "invalid_api_key", NULL, r->adm.message);
        return false;
    }
    return true;
}

/* The admin API's paths, for a gateway without a database. */
static bool admin_path(const struct sb_http_str *path)
{
    static const char *const prefixes[] = {"/key/",      "/team/",  "/user/",
                                           "/customer/", "/spend/", "/global/spend/"};
    for (size_t i = 0; i < sizeof prefixes / sizeof *prefixes; i++) {
        size_t n = strlen(prefixes[i]);
        if (path->n >= n && memcmp(path->p, prefixes[i], n) == 0)
            return true;
    }
    return path->n == 11 && memcmp(path->p, "/model/info", 11) == 0;
}

static bool path_is(const struct sb_http_str *path, const char *want)
{
    size_t n = strlen(want);
    if (path->n == n && memcmp(path->p, want, n) == 0)
        return true;
    /* Every API path is also served without the /v1 prefix, as LiteLLM does. */
    return n > 3 && memcmp(want, "/v1", 3) == 0 && path->n == n - 3 &&
           memcmp(path->p, want + 3, n - 3) == 0;
}

static bool method_is(const struct sb_http_request *req, const char *m)
{
    size_t n = strlen(m);
    return req->method.n == n && memcmp(req->method.p, m, n) == 0;
}

static void method_not_allowed(struct sb_api_req *r, const char *allow)
{
    char hdr[320];
    int n = snprintf(hdr, sizeof hdr, "%sAllow: %s\r\n", r->rid_header, allow);
    struct sb_error e;
    sb_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL,
                 "Method %.*s is not allowed on this route; use %s.", (int)r->x->req.method.n,
                 r->x->req.method.p, allow);
    r->rec.error_code = "method_not_allowed";
    sb_http_respond_error(r->x, &e, hdr, n > 0 && (size_t)n < sizeof hdr ? (size_t)n : 0);
}

static void serve_models(struct sb_api_req *r, const struct sb_http_str *path)
{
    struct sb_gateway *gw = r->gw_w->gw;
    const char *p = path->p;
    size_t n = path->n;
    if (n >= 3 && memcmp(p, "/v1", 3) == 0)
        p += 3, n -= 3;
    /* A virtual key sees only the models it may call. */
    bool filtered = !r->master && gw->policy && r->adm.key_hash[0];
    /* "/models" or "/models/{id}" */
    if (n == 7 && !filtered) {
        sb_http_respond(r->x, 200, "application/json", r->rid_header, r->rid_header_len,
                        gw->models_json, gw->models_json_len);
        return;
    }
    if (n == 7) {
        struct sb_buf b;
        sb_buf_init(&b, 64u << 20);
        if (append_models(gw, &b, r->adm.key_hash) != 0)
            sb_api_fail(r, 500, "api_error", "internal_error", NULL, "Out of memory.");
        else
            sb_http_respond(r->x, 200, "application/json", r->rid_header, r->rid_header_len, b.data,
                            b.len);
        sb_buf_free(&b);
        return;
    }
    const char *id = p + 8;
    size_t idn = n - 8;
    int g = sb_config_model_index(gw->cfg, id, idn);
    if (g < 0 || gw->groups[g].n == 0 ||
        (filtered &&
         !sb_policy_model_allowed(gw->policy, r->adm.key_hash, gw->cfg->model_names[g]))) {
        char msg[400];
        snprintf(msg, sizeof msg, "The model '%.*s' does not exist.", (int)(idn < 200 ? idn : 200),
                 id);
        sb_api_fail(r, 404, "invalid_request_error", "model_not_found", "model", msg);
        return;
    }
    r->rec.model = g;
    struct sb_buf b;
    sb_buf_init(&b, 8192);
    if (append_model(&b, gw->cfg->model_names[g], gw->started) != 0)
        sb_api_fail(r, 500, "api_error", "internal_error", NULL, "Out of memory.");
    else
        sb_http_respond(r->x, 200, "application/json", r->rid_header, r->rid_header_len, b.data,
                        b.len);
    sb_buf_free(&b);
}

/* The router's view of every enabled deployment: GET /router/deployments (master key). */
static int render_deployments(struct sb_gateway *gw, struct sb_buf *b)
{
    const struct sb_config *cfg = gw->cfg;
    uint64_t now = sb_router_now_ms();
    int rc = sb_buf_append_str(b, "{\"routing_strategy\":\"");
    rc = rc ? rc : sb_buf_append_str(b, sb_router_strategy_name(gw->strategy));
    rc = rc ? rc : sb_buf_append_str(b, "\",\"deployments\":[");
    bool first = true;
    for (size_t i = 0; i < cfg->n_deployments && rc == 0; i++) {
        const struct sb_deployment *d = &cfg->deployments[i];
        if (d->disabled)
            continue;
        struct sb_router_state st;
        sb_router_state(gw->router, (int)i, now, &st);
        rc = sb_buf_printf(b, "%s{\"id\":%zu,\"model_name\":", first ? "" : ",", i);
        rc = rc ? rc : sb_buf_append_json_str(b, d->model_name, strlen(d->model_name));
        rc = rc ? rc : sb_buf_append_str(b, ",\"deployment\":");
        rc = rc ? rc : sb_buf_append_json_str(b, d->litellm_model, strlen(d->litellm_model));
        rc = rc ? rc
                : sb_buf_printf(
                      b,
                      ",\"state\":\"%s\",\"cooldown_remaining_ms\":%llu,\"recent_fails\":%d,"
                      "\"in_flight\":%d,\"latency_ms\":%.3f,\"order\":%d,\"weight\":%g,"
                      "\"calls\":%llu,\"failures\":%llu,\"fallback_calls\":%llu}",
                      st.cooling ? "cooling_down" : "healthy",
                      (unsigned long long)st.cooldown_left_ms, st.fails, st.in_flight,
                      st.latency_s * 1e3, d->order, d->weight, (unsigned long long)st.calls,
                      (unsigned long long)st.failures, (unsigned long long)st.fallbacks);
        first = false;
    }
    return rc ? rc : sb_buf_append_str(b, "]}");
}

/* A Prometheus label value: backslash, double quote and newline escaped (text format 0.0.4). */
static void label_value(struct sb_buf *b, const char *v)
{
    sb_buf_append_char(b, '"');
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            sb_buf_append_char(b, '\\'), sb_buf_append_char(b, *v);
        else if (*v == '\n')
            sb_buf_append_str(b, "\\n");
        else
            sb_buf_append_char(b, *v);
    }
    sb_buf_append_char(b, '"');
}

static void metric_labels(struct sb_buf *b, const struct sb_deployment *d, size_t id)
{
    sb_buf_append_str(b, "{model=");
    label_value(b, d->model_name);
    sb_buf_append_str(b, ",deployment=");
    label_value(b, d->litellm_model);
    sb_buf_printf(b, ",deployment_id=\"%zu\"}", id);
}

/* Per-deployment gauges appended to /metrics: labels are configured names only. */
static int render_router_metrics(struct sb_gateway *gw, struct sb_buf *b)
{
    static const struct {
        const char *name, *help;
    } fam[] = {
        {"switchboard_deployment_cooling_down",
         "1 while the deployment is out of rotation after failures."},
        {"switchboard_deployment_in_flight", "Upstream calls in flight to the deployment."},
        {"switchboard_deployment_latency_seconds",
         "Moving average of the deployment's latency (time to first byte for streams)."},
        {"switchboard_deployment_calls_total", "Upstream calls made to the deployment."},
        {"switchboard_deployment_failures_total",
         "Failures of the deployment counted toward its cooldowns."},
        {"switchboard_deployment_fallback_calls_total",
         "Calls made to the deployment as a fallback for another model."},
    };
    const struct sb_config *cfg = gw->cfg;
    uint64_t now = sb_router_now_ms();
    int rc = 0;
    for (size_t f = 0; f < sizeof fam / sizeof fam[0] && rc == 0; f++) {
        rc = sb_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name,
                           f < 3 ? "gauge" : "counter");
        for (size_t i = 0; i < cfg->n_deployments && rc == 0; i++) {
            const struct sb_deployment *d = &cfg->deployments[i];
            if (d->disabled)
                continue;
            struct sb_router_state st;
            sb_router_state(gw->router, (int)i, now, &st);
            sb_buf_append_str(b, fam[f].name);
            metric_labels(b, d, i);
            if (f == 0)
                rc = sb_buf_printf(b, " %d\n", st.cooling ? 1 : 0);
            else if (f == 1)
                rc = sb_buf_printf(b, " %d\n", st.in_flight);
            else if (f == 2)
                rc = sb_buf_printf(b, " %.6f\n", st.latency_s);
            else
                rc = sb_buf_printf(b, " %llu\n",
                                   (unsigned long long)(f == 3   ? st.calls
                                                        : f == 4 ? st.failures
                                                                 : st.fallbacks));
        }
    }
    return rc;
}

void sb_gateway_on_request(struct sb_exchange *x)
{
    struct sb_gw_worker *gw_w = sb_worker_data(x->worker);
    struct sb_gateway *gw = gw_w->gw;
    struct sb_api_req *r = req_new(gw_w);
    if (!r) {
        struct sb_error e;
        sb_error_set(&e, 500, "api_error", "internal_error", NULL, "Out of memory.");
        sb_http_close_after(x);
        sb_http_respond_error(x, &e, NULL, 0);
        return;
    }
    r->gw_w = gw_w;
    r->x = x;
    r->rec.model = -1;
    r->rec.served_by = -1;
    r->rec.route = SB_ROUTE_OTHER;
    r->rec.tokens_in = r->rec.tokens_out = r->rec.tokens_cached = r->rec.tokens_reasoning = -1;
    r->rec.tokens_cache_write = r->rec.cost_nano = -1;
    r->rec.upstream_ttfb_s = -1;
    x->hdata = r;
    x->on_end = on_end;
    sb_metrics_inflight(gw->metrics, gw_w->index, 1);
    make_request_id(r);
    r->rec.request_id = r->request_id;

    const struct sb_http_request *req = &x->req;
    const struct sb_http_str *path = &req->path;

    if (path_is(path, "/health/liveliness") || path_is(path, "/health/liveness")) {
        r->rec.route = SB_ROUTE_HEALTH;
        static const char body[] = "\"I'm alive!\"";
        sb_http_respond(x, 200, "application/json", r->rid_header, r->rid_header_len, body,
                        sizeof body - 1);
        return;
    }
    if (path_is(path, "/health/readiness") || path_is(path, "/health")) {
        r->rec.route = SB_ROUTE_HEALTH;
        if (sb_worker_draining(x->worker)) {
            static const char body[] = "{\"status\":\"draining\"}";
            sb_http_respond(x, 503, "application/json", r->rid_header, r->rid_header_len, body,
                            sizeof body - 1);
            return;
        }
        char body[256];
        int n = snprintf(body, sizeof body,
                         "{\"status\":\"healthy\",\"version\":\"%s\",\"models\":%zu}", SB_VERSION,
                         gw->cfg->n_model_names);
        sb_http_respond(x, 200, "application/json", r->rid_header, r->rid_header_len, body,
                        (size_t)n);
        return;
    }
    if (path_is(path, "/metrics")) {
        r->rec.route = SB_ROUTE_METRICS;
        struct sb_buf b;
        sb_buf_init(&b, 64u << 20);
        if (sb_metrics_render(gw->metrics, &b) != 0 || render_router_metrics(gw, &b) != 0)
            sb_api_fail(r, 500, "api_error", "internal_error", NULL, "Metrics too large.");
        else
            sb_http_respond(x, 200, "text/plain; version=0.0.4; charset=utf-8", r->rid_header,
                            r->rid_header_len, b.data, b.len);
        sb_buf_free(&b);
        return;
    }

    if (admin_path(path)) {
        struct sb_http_str k = presented_key(req);
        r->key_p = k.p;
        r->key_n = k.n;
        r->master = gw->cfg->master_key && is_master(gw, k);
        if (!gw->ledger) {
            sb_api_fail(r, 501, "invalid_request_error", "not_configured", NULL,
                        "The admin API needs general_settings.master_key (virtual keys are kept "
                        "in a database; SQLite by default).");
            return;
        }
        if (sb_admin_handle(r))
            return;
    }

    enum sb_route route = SB_ROUTE_OTHER;
    enum sb_endpoint ep = SB_EP_CHAT;
    bool models = false;
    if (path_is(path, "/v1/chat/completions")) {
        route = SB_ROUTE_CHAT;
        ep = SB_EP_CHAT;
    } else if (path_is(path, "/v1/completions")) {
        route = SB_ROUTE_COMPLETIONS;
        ep = SB_EP_COMPLETIONS;
    } else if (path_is(path, "/v1/embeddings")) {
        route = SB_ROUTE_EMBEDDINGS;
        ep = SB_EP_EMBEDDINGS;
    } else if (path_is(path, "/v1/messages")) {
        route = SB_ROUTE_MESSAGES;
        ep = SB_EP_CHAT;
        r->dialect = SB_DIALECT_ANTHROPIC;
    } else if (path_is(path, "/v1/messages/count_tokens")) {
        route = SB_ROUTE_COUNT_TOKENS;
        ep = SB_EP_COUNT_TOKENS;
        r->dialect = SB_DIALECT_ANTHROPIC;
    } else if (path_is(path, "/router/deployments")) {
        route = SB_ROUTE_OTHER;
        if (!method_is(req, "GET")) {
            method_not_allowed(r, "GET");
            return;
        }
        if (!authorized(gw, req)) {
            sb_api_fail(r, 401, "invalid_request_error", "invalid_api_key", NULL,
                        "Missing or invalid API key. Send it as 'Authorization: Bearer <key>'.");
            return;
        }
        struct sb_buf b;
        sb_buf_init(&b, 64u << 20);
        if (render_deployments(gw, &b) != 0)
            sb_api_fail(r, 500, "api_error", "internal_error", NULL, "Out of memory.");
        else
            sb_http_respond(x, 200, "application/json", r->rid_header, r->rid_header_len, b.data,
                            b.len);
        sb_buf_free(&b);
        return;
    } else if (path_is(path, "/v1/models") ||
               ((path->n > 11 && memcmp(path->p, "/v1/models/", 11) == 0) ||
                (path->n > 8 && memcmp(path->p, "/models/", 8) == 0))) {
        route = SB_ROUTE_MODELS;
        models = true;
    }
    r->rec.route = route;
    if (route == SB_ROUTE_OTHER) {
        char msg[400];
        snprintf(msg, sizeof msg, "Unknown route %.*s %.*s.",
                 (int)(req->method.n < 16 ? req->method.n : 16), req->method.p,
                 (int)(path->n < 200 ? path->n : 200), path->p);
        sb_api_fail(r, 404, "invalid_request_error", "not_found", NULL, msg);
        return;
    }
    if (models ? !method_is(req, "GET") : !method_is(req, "POST")) {
        method_not_allowed(r, models ? "GET" : "POST");
        return;
    }
    if (!authenticate(r))
        return;
    if (sb_worker_draining(x->worker)) {
        sb_api_fail(r, 503, "api_error", "shutting_down", NULL,
                    "The gateway is shutting down; retry on another instance.");
        return;
    }
    if (models) {
        serve_models(r, path);
        return;
    }
    sb_proxy_handle(r, ep);
}

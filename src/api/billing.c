/* Billing a request: its cost from the usage it reported and the price of the deployment that
 * served it, the virtual key's reservation settled or released, and the spend row journaled. */
#include "api/api.h"

#include "core/log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

bool sb_api_price(const struct sb_deployment *d, struct sb_price *out)
{
    struct sb_price table;
    bool have = sb_price_lookup(d->provider_name, d->upstream_model, &table);
    if (!have && (d->cost_in < 0 || d->cost_out < 0))
        return false;
    if (!have)
        table = (struct sb_price){.cache_read = -1, .cache_write = -1, .reasoning = -1};
    /* The config's prices (dollars per token) win over the table's. */
    if (d->cost_in >= 0)
        table.input = d->cost_in * 1e9;
    if (d->cost_out >= 0)
        table.output = d->cost_out * 1e9;
    *out = table;
    return true;
}

char *sb_api_put_dollars(char *p, int64_t nano)
{
    uint64_t u = nano < 0 ? 0 - (uint64_t)nano : (uint64_t)nano;
    if (nano < 0)
        *p++ = '-';
    p = sb_put_u64(p, u / 1000000000u);
    *p++ = '.';
    unsigned f = (unsigned)(u % 1000000000u);
    p = sb_put_3digits(p, f / 1000000u);
    p = sb_put_3digits(p, f / 1000u % 1000u);
    return sb_put_3digits(p, f % 1000u);
}

int sb_api_append_dollars(struct sb_buf *b, int64_t nano)
{
    int rc = sb_buf_reserve(b, SB_API_DOLLARS_MAX);
    if (rc == 0)
        sb_buf_commit(b, sb_api_put_dollars(sb_buf_end(b), nano));
    return rc;
}

static int64_t now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* A model without a price is said once per deployment in the log (and on every response in a
 * header, by the proxy), never billed silently as zero. */
static void warn_unpriced(struct sb_gateway *gw, const struct sb_deployment *d)
{
    size_t i = (size_t)(d - gw->cfg->deployments);
    if (!gw->price_warned || i >= gw->cfg->n_deployments ||
        atomic_exchange(&gw->price_warned[i], true))
        return;
    sb_warn("model '%s' (%s) has no price: its requests are billed 0 and flagged; set "
            "input_cost_per_token and output_cost_per_token",
            d->model_name, d->litellm_model);
}

void sb_api_bill(struct sb_api_req *r, int status)
{
    if (r->billed)
        return;
    r->billed = true;
    struct sb_gateway *gw = r->gw_w->gw;
    struct sb_request_record *rec = &r->rec;
    const struct sb_deployment *d = rec->dep;
    struct sb_price price = {0};
    size_t di = d ? (size_t)(d - gw->cfg->deployments) : 0;
    rec->priced = d && di < gw->cfg->n_deployments && gw->priced[di];
    if (rec->priced)
        price = gw->prices[di];
    if (d && !rec->priced)
        warn_unpriced(gw, d);
    bool usage = rec->tokens_in >= 0 || rec->tokens_out >= 0;
    struct sb_usage u;
    sb_usage_init(&u);
    if (usage) {
        int64_t cached = rec->tokens_cached > 0 ? rec->tokens_cached : 0;
        int64_t written = rec->tokens_cache_write > 0 ? rec->tokens_cache_write : 0;
        int64_t in = rec->tokens_in > 0 ? rec->tokens_in : 0;
        /* A provider's counts are outside input: their sum may not fit. */
        int64_t cache = 0;
        if (__builtin_add_overflow(cached, written, &cache))
            cache = INT64_MAX;
        u.input = in > cache ? in - cache : 0;
        u.cache_read = cached;
        u.cache_write = written;
        u.output = rec->tokens_out > 0 ? rec->tokens_out : 0;
        u.reasoning = rec->tokens_reasoning;
    } else if (rec->tokens_est_out > 0) {
        /* A stream cut before its usage: billed for what was generated, estimated. */
        u.input = (int64_t)(r->x->body.len / 4);
        u.output = rec->tokens_est_out;
        usage = true;
    }
    rec->cost_nano = usage && rec->priced ? sb_price_cost_nano(&price, &u) : (usage ? 0 : -1);
    int64_t tokens = 0;
    if (usage && __builtin_add_overflow(sb_usage_prompt(&u), u.output > 0 ? u.output : 0, &tokens))
        tokens = INT64_MAX;
    if (r->admitted) {
        if (usage)
            sb_policy_settle(gw->policy, &r->adm, rec->cost_nano, tokens, now_ms());
        else
            sb_policy_release(gw->policy, &r->adm);
        sb_shared_finish(r->gw_w->shared, &r->shared, usage ? rec->cost_nano : 0,
                         usage ? tokens : 0);
    }
    if (!gw->ledger || !d)
        return; /* nothing reached a provider: nothing to bill */
    struct sb_spend_row row;
    memset(&row, 0, sizeof row);
    sb_str_copy(row.request_id, sizeof row.request_id, r->ledger_id);
    if (!r->master) {
        sb_str_copy(row.key_hash, sizeof row.key_hash, r->adm.key_hash);
        sb_str_copy(row.team_id, sizeof row.team_id, r->adm.team_id);
        sb_str_copy(row.user_id, sizeof row.user_id, r->adm.user_id);
    }
    sb_str_copy(row.end_user, sizeof row.end_user, r->end_user);
    sb_str_copy(row.model, sizeof row.model,
                rec->model >= 0 ? gw->cfg->model_names[rec->model] : d->model_name);
    sb_str_copy(row.deployment, sizeof row.deployment, d->litellm_model);
    sb_str_copy(row.provider, sizeof row.provider, d->provider_name);
    row.prompt_tokens = usage ? sb_usage_prompt(&u) : 0;
    row.completion_tokens = usage && u.output > 0 ? u.output : 0;
    row.cache_read_tokens = u.cache_read > 0 ? u.cache_read : 0;
    row.cache_write_tokens = u.cache_write > 0 ? u.cache_write : 0;
    row.reasoning_tokens = u.reasoning > 0 ? u.reasoning : 0;
    row.cost_nano = rec->cost_nano > 0 ? rec->cost_nano : 0;
    row.cost_known = rec->priced;
    int64_t end = now_ms();
    row.end_ms = end;
    row.start_ms = end - (int64_t)((uv_hrtime() - r->x->t_start_ns) / 1000000);
    row.status = status;
    sb_str_copy(row.route, sizeof row.route, sb_route_name(rec->route));
    if (sb_ledger_record(gw->ledger, r->gw_w->index, &row) != 0)
        sb_error("request %s: the spend row could not be journaled", r->request_id);
}

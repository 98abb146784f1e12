/* Prices: the provider and model of a deployment, and a usage record's token counts as a
 * provider reports them. The input is "provider" then NUL or '/' then "model"; the token
 * counts (and a second, arbitrary price) are the input's bytes read as integers and doubles. */
#include "policy/prices.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_price(const struct sb_price *p)
{
    if (!(p->input >= 0) || !(p->output >= 0) || !(p->cache_read >= 0 || p->cache_read == -1) ||
        !(p->cache_write >= 0 || p->cache_write == -1) ||
        !(p->reasoning >= 0 || p->reasoning == -1))
        abort();
}

static int64_t counts_at(const uint8_t *data, size_t size, size_t i)
{
    uint64_t v = 0;
    for (size_t k = 0; k < 8; k++)
        v = v << 8 | (size ? data[(i * 8 + k) % size] : 0);
    return (int64_t)v;
}

static double double_at(const uint8_t *data, size_t size, size_t i)
{
    uint64_t v = (uint64_t)counts_at(data, size, i);
    double d;
    memcpy(&d, &v, sizeof d);
    return d;
}

static void check_cost(const struct sb_price *p, const struct sb_usage *u)
{
    int64_t c = sb_price_cost_nano(p, u);
    if (c < 0)
        abort();
    struct sb_usage none;
    sb_usage_init(&none);
    if (sb_price_cost_nano(p, &none) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    if (buf == NULL)
        return 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    /* Split at the first NUL or '/'. */
    size_t cut = strcspn(buf, "/");
    const char *provider = buf;
    const char *model = "";
    if (cut < size) {
        buf[cut] = '\0';
        model = buf + cut + 1;
    }
    struct sb_price price;
    bool found = sb_price_lookup(provider, model, &price);
    if (found)
        check_price(&price);
    /* The whole input as an id the way the providers that fall back see it. */
    static const char *const providers[] = {"openai", "azure", "vertex_ai", "bedrock"};
    const char *whole = (const char *)data;
    char *copy = malloc(size + 1);
    if (copy == NULL) {
        free(buf);
        return 0;
    }
    memcpy(copy, whole, size);
    copy[size] = '\0';
    struct sb_price other;
    bool found2 = sb_price_lookup(providers[size % 4], copy, &other);
    if (found2)
        check_price(&other);
    /* The same id twice gives the same price. */
    struct sb_price again;
    if (sb_price_lookup(providers[size % 4], copy, &again) != found2 ||
        (found2 && memcmp(&again, &other, sizeof again) != 0))
        abort();

    struct sb_usage u = {
        .input = counts_at(data, size, 0),
        .cache_read = counts_at(data, size, 1),
        .cache_write = counts_at(data, size, 2),
        .output = counts_at(data, size, 3),
        .reasoning = counts_at(data, size, 4),
    };
    if (found)
        check_cost(&price, &u);
    if (found2)
        check_cost(&other, &u);
    /* A price from a deployment override: any double at all. */
    struct sb_price odd = {
        .input = double_at(data, size, 5),
        .output = double_at(data, size, 6),
        .cache_read = double_at(data, size, 7),
        .cache_write = double_at(data, size, 8),
        .reasoning = double_at(data, size, 9),
    };
    check_cost(&odd, &u);
    free(copy);
    free(buf);
    return 0;
}

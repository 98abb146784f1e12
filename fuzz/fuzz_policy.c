/* Policy records: what the store hands back (and what an admin sends) becomes an entity, and
 * every request is admitted against it. The input is either JSON (an object: the record of
 * every kind; an array: the records of the key, team, user and customer) followed by bytes
 * that choose the request, or, when it is not JSON, raw bytes that go into each field of an
 * otherwise valid record. Nothing may crash or leak, and once every admission is settled or
 * released no reservation is left. */
#include "policy/policy.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_KEY "sk-fuzz-0123456789abcdef0123456789abcdef"
#define T0_MS    INT64_C(1795255200000) /* 2026-11-21T10:00:00Z */

struct rd {
    const uint8_t *p;
    size_t left;
};

static uint64_t rd_u(struct rd *r, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n && r->left > 0; i++, r->p++, r->left--)
        v = v << 8 | *r->p;
    return v;
}

static int64_t rd_i64(struct rd *r)
{
    return (int64_t)rd_u(r, 8);
}

/* Prices come from the table or the configuration, which takes 0..1 dollars per token: a
 * nano-dollar price in [0, 1e9), or -1 for "unknown". */
static double rd_price(struct rd *r)
{
    static const double prices[] = {0,    -1,    1e-6,   0.1,   0.25,  1,   2.5,
                                    10.0, 150.0, 2500.0, 1.5e4, 7.5e4, 5e8, 9.99e8};
    uint64_t b = rd_u(r, 1);
    if (b & 0x80) {
        uint64_t bits = rd_u(r, 8);
        double d;
        memcpy(&d, &bits, sizeof d);
        if (d >= 0 && d < 1e9)
            return d;
    }
    return prices[b % (sizeof prices / sizeof prices[0])];
}

static const char *const kind_ids[SB_ENT_COUNT] = {NULL, "fuzz-team", "fuzz-user", "fuzz-cust"};

/* The raw bytes as a JSON string: jansson takes only UTF-8, as the store hands it. */
static json_t *raw_string(const uint8_t *data, size_t size)
{
    json_t *s = json_stringn((const char *)data, size);
    if (s != NULL)
        return s;
    char *clean = malloc(size ? size : 1);
    if (clean == NULL)
        return NULL;
    for (size_t i = 0; i < size; i++)
        clean[i] = data[i] & 0x7f ? (char)(data[i] & 0x7f) : '?';
    s = json_stringn(clean, size);
    free(clean);
    return s;
}

/* Non-JSON input: a valid record with the bytes in one field (chosen by the first byte). */
static json_t *raw_record(const uint8_t *data, size_t size, json_t **str_out)
{
    json_t *str = raw_string(size > 0 ? data + 1 : data, size > 0 ? size - 1 : 0);
    if (str == NULL)
        return NULL;
    *str_out = str;
    json_t *rec =
        json_pack("{s:s, s:s, s:f, s:s, s:i}", "team_id", "fuzz-team", "user_id", "fuzz-user",
                  "max_budget", 1.0, "budget_duration", "30d", "rpm_limit", 100);
    if (rec == NULL)
        return NULL;
    switch (size > 0 ? data[0] % 10 : 0) {
    case 0:
        json_object_set(rec, "expires", str);
        break;
    case 1:
        json_object_set(rec, "budget_duration", str);
        break;
    case 2:
        json_object_set_new(rec, "models", json_pack("[O]", str));
        break;
    case 3:
        json_object_set_new(
            rec, "model_max_budget",
            json_pack("{s:{s:f, s:O}}", "gpt-4o", "budget_limit", 0.5, "time_period", str));
        break;
    case 4: {
        json_t *m = json_object();
        json_object_set_new(m, json_string_value(str), json_pack("{s:f}", "budget_limit", 1e-5));
        json_object_set_new(rec, "model_max_budget", m);
        break;
    }
    case 5: {
        json_t *m = json_object();
        json_object_set_new(m, json_string_value(str), json_integer(1));
        json_object_set_new(rec, "model_rpm_limit", m);
        json_object_set_new(rec, "model_tpm_limit", json_deep_copy(m));
        break;
    }
    case 6:
        json_object_set(rec, "team_id", str);
        break;
    case 7:
        json_object_set(rec, "user_id", str);
        break;
    case 8:
        json_object_set(rec, "user_role", str);
        break;
    default:
        json_object_set(rec, "budget_reset_at", str);
        break;
    }
    return rec;
}

static void settle_or_release(struct sb_policy *p, struct sb_admission *a, struct rd *r,
                              int64_t now_ms)
{
    if (a->status != 0)
        return;
    if (a->handle == NULL || a->reserved_nano < 0)
        abort();
    if (a->lowered && (a->max_output < 16 || a->max_output < 0))
        abort();
    if (rd_u(r, 1) & 1) {
        int64_t cost = rd_i64(r);
        int64_t tokens = rd_i64(r);
        sb_policy_settle(p, a, cost, tokens, now_ms);
    } else {
        sb_policy_release(p, a);
    }
    if (a->handle != NULL)
        abort();
}

static void check_refusal(const struct sb_admission *a)
{
    if (a->status == 0)
        return;
    if (a->handle != NULL || a->type == NULL || a->code == NULL ||
        memchr(a->message, '\0', sizeof a->message) == NULL)
        abort();
    if (a->status != 400 && a->status != 401 && a->status != 403 && a->status != 429)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The duration parser on the raw bytes. */
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    int64_t d = sb_policy_duration_s(text);
    if (d == 0 || d < -1)
        abort();

    char hash[65];
    sb_policy_hash_key(FUZZ_KEY, strlen(FUZZ_KEY), hash);

    json_t *recs[SB_ENT_COUNT] = {NULL};
    json_t *str = NULL;
    json_error_t err;
    struct rd r = {data, 0};
    json_t *j =
        json_loadb((const char *)data, size, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &err);
    if (json_is_object(j) || json_is_array(j)) {
        size_t used = (size_t)err.position <= size ? (size_t)err.position : size;
        r.p = data + used;
        r.left = size - used;
        for (int k = 0; k < SB_ENT_COUNT; k++) {
            json_t *v = json_is_object(j) ? j : json_array_get(j, (size_t)k);
            recs[k] = json_is_object(v) ? json_deep_copy(v) : json_object();
        }
    } else {
        recs[SB_ENT_KEY] = raw_record(data, size, &str);
        for (int k = 1; k < SB_ENT_COUNT; k++)
            recs[k] = recs[SB_ENT_KEY] ? json_deep_copy(recs[SB_ENT_KEY]) : NULL;
        r.p = data;
        r.left = size;
    }
    json_decref(j);

    struct sb_policy *p = sb_policy_new();
    if (p == NULL)
        abort();
    static const char *const groups[] = {"cheap", "fuzz-group"};
    sb_policy_set_access_groups(p, "gpt-4o-mini", groups, 2);

    const char *ids[SB_ENT_COUNT] = {hash, kind_ids[1], kind_ids[2], kind_ids[3]};
    /* The team and user ids the key names, so that its levels are held. */
    const json_t *tid = recs[SB_ENT_KEY] ? json_object_get(recs[SB_ENT_KEY], "team_id") : NULL;
    const json_t *uid = recs[SB_ENT_KEY] ? json_object_get(recs[SB_ENT_KEY], "user_id") : NULL;
    if (json_is_string(tid) && json_string_length(tid) > 0)
        ids[SB_ENT_TEAM] = json_string_value(tid);
    if (json_is_string(uid) && json_string_length(uid) > 0)
        ids[SB_ENT_USER] = json_string_value(uid);
    if (recs[SB_ENT_KEY] != NULL)
        json_object_set_new(recs[SB_ENT_KEY], "token", json_string(hash));

    int up[SB_ENT_COUNT];
    for (int k = 0; k < SB_ENT_COUNT; k++) {
        up[k] = recs[k] ? sb_policy_upsert(p, (enum sb_entity)k, ids[k], recs[k], k == 0) : -1;
        json_t *got = sb_policy_get(p, (enum sb_entity)k, ids[k]);
        if ((up[k] == 0) != (got != NULL))
            abort();
        json_decref(got);
    }

    /* The request. */
    static const char *const models[] = {"gpt-4o", "gpt-4o-mini", "claude-sonnet-4-5",
                                         "openai/gpt-4o", ""};
    uint64_t pick = rd_u(&r, 1);
    const char *model = str != NULL && (pick & 8) ? json_string_value(str) : models[pick % 5];
    struct sb_admit_req req = {
        .key = FUZZ_KEY,
        .key_len = strlen(FUZZ_KEY),
        .model = model,
        .end_user = (pick & 16) ? kind_ids[SB_ENT_CUSTOMER] : NULL,
        .input_tokens = rd_i64(&r),
        .max_output = rd_i64(&r),
        .default_output = (int64_t)rd_u(&r, 3),
        .price_in = rd_price(&r),
        .price_out = rd_price(&r),
        /* A clock within a few decades of now. */
        .now_ms = T0_MS + (int64_t)(int32_t)(uint32_t)rd_u(&r, 4) * 1000,
    };

    struct sb_admission a1, a2, a3;
    struct sb_admission auth;
    sb_policy_authenticate(p, req.key, req.key_len, req.now_ms, &auth);
    check_refusal(&auth);
    if (up[SB_ENT_KEY] != 0 && auth.status != 401)
        abort(); /* no record, no key */

    sb_policy_admit(p, &req, &a1);
    check_refusal(&a1);
    /* A replace and a second request while the first is held. */
    if (recs[SB_ENT_KEY] != NULL)
        sb_policy_upsert(p, SB_ENT_KEY, hash, recs[SB_ENT_KEY], (pick & 32) != 0);
    sb_policy_admit(p, &req, &a2);
    check_refusal(&a2);
    /* The key and its team go while both are held: settling them touches detached entities. */
    if (pick & 64) {
        sb_policy_remove(p, SB_ENT_KEY, hash);
        sb_policy_remove(p, SB_ENT_TEAM, ids[SB_ENT_TEAM]);
    }
    settle_or_release(p, &a1, &r, req.now_ms);
    settle_or_release(p, &a2, &r, req.now_ms + 1000);
    /* Once more after the window and any model budget period have moved on. */
    req.now_ms += (int64_t)rd_u(&r, 4) * 1000;
    sb_policy_admit(p, &req, &a3);
    check_refusal(&a3);
    settle_or_release(p, &a3, &r, req.now_ms);
    if (sb_policy_reserved_total(p) != 0)
        abort();

    for (int k = 0; k < SB_ENT_COUNT; k++) {
        json_t *got = sb_policy_get(p, (enum sb_entity)k, ids[k]);
        json_decref(got);
    }
    sb_policy_remove(p, SB_ENT_USER, ids[SB_ENT_USER]);
    sb_policy_remove(p, SB_ENT_CUSTOMER, ids[SB_ENT_CUSTOMER]);
    sb_policy_free(p);

    for (int k = 0; k < SB_ENT_COUNT; k++)
        json_decref(recs[k]);
    json_decref(str);
    free(text);
    return 0;
}

/* policy: authentication, model access, budgets with reservations, rate limits, resets, and
 * the concurrency acceptance (budgets and RPM limits hold under many threads). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "core/rand.h"
#include "policy/policy.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 2026-11-21T10:00:00Z */
#define T0_S  INT64_C(1795255200)
#define T0_MS (T0_S * 1000)

static json_t *parse(const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (j == NULL)
        fail_msg("bad test JSON: %s", err.text);
    return j;
}

static int put(struct sb_policy *p, enum sb_entity kind, const char *id, const char *text)
{
    json_t *j = parse(text);
    int rc = sb_policy_upsert(p, kind, id, j, false);
    json_decref(j);
    return rc;
}

static int put_key(struct sb_policy *p, const char *key, const char *text)
{
    char h[65];
    sb_policy_hash_key(key, strlen(key), h);
    return put(p, SB_ENT_KEY, h, text);
}

static struct sb_admit_req req_for(const char *key, const char *model)
{
    struct sb_admit_req r = {
        .key = key,
        .key_len = key != NULL ? strlen(key) : 0,
        .model = model,
        .end_user = NULL,
        .input_tokens = 100,
        .max_output = 200,
        .default_output = 300,
        .price_in = 10.0,  /* nano per token */
        .price_out = 20.0, /* worst case 100*10 + 200*20 = 5000 nano */
        .now_ms = T0_MS,
    };
    return r;
}

static int64_t spend_nano(struct sb_policy *p, enum sb_entity kind, const char *id)
{
    json_t *j = sb_policy_get(p, kind, id);
    assert_non_null(j);
    double d = json_real_value(json_object_get(j, "spend"));
    json_decref(j);
    return (int64_t)(d * 1e9 + (d >= 0 ? 0.5 : -0.5));
}

static int64_t key_spend(struct sb_policy *p, const char *key)
{
    char h[65];
    sb_policy_hash_key(key, strlen(key), h);
    return spend_nano(p, SB_ENT_KEY, h);
}

static void test_hash_and_duration(void **state)
{
    (void)state;
    char h[65];
    sb_policy_hash_key("sk-1234", 7, h);
    assert_string_equal(h, "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b");
    sb_policy_hash_key("abc", 3, h); /* FIPS 180-2's vector: every digit position */
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sb_policy_hash_key("", 0, h);
    assert_string_equal(h, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_int_equal(sb_policy_duration_s("30s"), 30);
    assert_int_equal(sb_policy_duration_s("1m"), 60);
    assert_int_equal(sb_policy_duration_s("30m"), 1800);
    assert_int_equal(sb_policy_duration_s("24h"), 86400);
    assert_int_equal(sb_policy_duration_s("30d"), 30 * 86400);
    assert_int_equal(sb_policy_duration_s("1w"), 7 * 86400);
    assert_int_equal(sb_policy_duration_s("1mo"), 30 * 86400);
    assert_int_equal(sb_policy_duration_s(""), -1);
    assert_int_equal(sb_policy_duration_s("s"), -1);
    assert_int_equal(sb_policy_duration_s("0s"), -1);
    assert_int_equal(sb_policy_duration_s("-5s"), -1);
    assert_int_equal(sb_policy_duration_s("5x"), -1);
    assert_int_equal(sb_policy_duration_s("5 s"), -1);
    assert_int_equal(sb_policy_duration_s("99999999999999999999s"), -1);
    assert_int_equal(sb_policy_duration_s(NULL), -1);
}

static void test_auth_refusals(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    struct sb_admission a;
    assert_int_equal(put_key(p, "sk-good", "{\"team_id\":\"t1\"}"), 0);
    assert_int_equal(put_key(p, "sk-blocked", "{\"blocked\":true}"), 0);
    assert_int_equal(put_key(p, "sk-bt", "{\"team_id\":\"tb\"}"), 0);
    assert_int_equal(put(p, SB_ENT_TEAM, "tb", "{\"blocked\":true}"), 0);
    assert_int_equal(put(p, SB_ENT_CUSTOMER, "bad-user", "{\"blocked\":true}"), 0);

    struct sb_admit_req r = req_for("sk-nope", "gpt-4o");
    assert_int_equal(sb_policy_admit(p, &r, &a), 401);
    assert_string_equal(a.code, "invalid_api_key");
    assert_string_equal(a.type, "auth_error");
    assert_null(a.handle);
    r = req_for("", "gpt-4o");
    assert_int_equal(sb_policy_admit(p, &r, &a), 401);
    assert_string_equal(a.code, "invalid_api_key");

    r = req_for("sk-blocked", "gpt-4o");
    assert_int_equal(sb_policy_admit(p, &r, &a), 401);
    assert_string_equal(a.code, "key_blocked");
    assert_int_equal(sb_policy_authenticate(p, "sk-blocked", 10, T0_MS, &a), 401);
    assert_string_equal(a.code, "key_blocked");

    r = req_for("sk-bt", "gpt-4o");
    assert_int_equal(sb_policy_admit(p, &r, &a), 401);
    assert_string_equal(a.code, "team_blocked");
    assert_int_equal(sb_policy_authenticate(p, "sk-bt", 5, T0_MS, &a), 401);
    assert_string_equal(a.code, "team_blocked");

    r = req_for("sk-good", "gpt-4o");
    r.end_user = "bad-user";
    assert_int_equal(sb_policy_admit(p, &r, &a), 403);
    assert_string_equal(a.code, "customer_blocked");
    assert_null(a.handle);

    /* A good key, an unknown team and an unknown end user: admitted, nothing to budget. */
    r.end_user = "someone";
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    assert_string_equal(a.team_id, "t1");
    assert_string_equal(a.end_user, "someone");
    assert_int_equal(a.reserved_nano, 0);
    assert_int_equal(a.max_output, 200);
    assert_false(a.lowered);
    assert_int_equal(a.limit_requests, -1);
    sb_policy_release(p, &a);

    /* Unblocking through an upsert takes effect at once. */
    assert_int_equal(put_key(p, "sk-blocked", "{\"blocked\":false}"), 0);
    r = req_for("sk-blocked", "gpt-4o");
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    sb_policy_release(p, &a);
    sb_policy_free(p);
}

/* Key ids are compared word by word in constant time when 64 bytes long, byte by byte
 * otherwise: a difference in any one byte, in any word, is a miss. */
static void test_key_id_compare(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    char h[65];
    sb_policy_hash_key("sk-cmp", 6, h);
    assert_int_equal(put(p, SB_ENT_KEY, h, "{}"), 0);
    assert_int_equal(put(p, SB_ENT_KEY, "short-id", "{}"), 0);
    char id70[71];
    memset(id70, 'e', 70);
    id70[70] = '\0';
    assert_int_equal(put(p, SB_ENT_KEY, id70, "{}"), 0);
    json_t *j = sb_policy_get(p, SB_ENT_KEY, h);
    assert_non_null(j);
    json_decref(j);
    for (size_t i = 0; i < 64; i++) {
        char other[65];
        memcpy(other, h, sizeof other);
        other[i] = other[i] == '0' ? '1' : '0';
        assert_null(sb_policy_get(p, SB_ENT_KEY, other));
        other[i] = (char)(h[i] ^ 0x80); /* the high bit of the byte alone */
        assert_null(sb_policy_get(p, SB_ENT_KEY, other));
    }
    /* A prefix or an extension of a stored id is another id. */
    char cut[64];
    memcpy(cut, h, 63);
    cut[63] = '\0';
    assert_null(sb_policy_get(p, SB_ENT_KEY, cut));
    j = sb_policy_get(p, SB_ENT_KEY, "short-id");
    assert_non_null(j);
    json_decref(j);
    assert_null(sb_policy_get(p, SB_ENT_KEY, "short-iD"));
    j = sb_policy_get(p, SB_ENT_KEY, id70);
    assert_non_null(j);
    json_decref(j);
    id70[69] = 'f';
    assert_null(sb_policy_get(p, SB_ENT_KEY, id70));

    /* Through admission, with the precomputed hash: one byte off in the last word refuses. */
    struct sb_admission a;
    struct sb_admit_req r = req_for("sk-cmp", "gpt-4o");
    r.key_hash = h;
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    sb_policy_release(p, &a);
    assert_int_equal(sb_policy_authenticate(p, "sk-cmp", 6, T0_MS, &a), 0);
    assert_int_equal(sb_policy_authenticate(p, "sk-cmq", 6, T0_MS, &a), 401);
    assert_string_equal(a.code, "invalid_api_key");
    sb_policy_free(p);
}

static void test_expiry(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    struct sb_admission a;
    static const char *const expiring[] = {
        "{\"expires\":\"2026-11-21T10:00:00Z\"}",
        "{\"expires\":\"2026-11-21T10:00:00.000000Z\"}",
        "{\"expires\":\"2026-11-21T12:00:00+02:00\"}",
        "{\"expires\":\"2026-11-21T05:00:00-0500\"}",
        "{\"expires\":\"2026-11-21 10:00:00\"}",
        "{\"expires\":\"2026-11-21T10:00:00.5+00:00\"}",
    };
    for (size_t i = 0; i < sizeof(expiring) / sizeof(expiring[0]); i++) {
        assert_int_equal(put_key(p, "sk-exp", expiring[i]), 0);
        bool fractional = strstr(expiring[i], ".5") != NULL;
        /* One millisecond before: valid (the .5 form expires 500 ms later). */
        assert_int_equal(sb_policy_authenticate(p, "sk-exp", 6, T0_MS - 1, &a), 0);
        int64_t at = fractional ? T0_MS + 500 : T0_MS;
        assert_int_equal(sb_policy_authenticate(p, "sk-exp", 6, at - 1, &a), 0);
        assert_int_equal(sb_policy_authenticate(p, "sk-exp", 6, at, &a), 401);
        assert_string_equal(a.code, "key_expired");
        struct sb_admit_req r = req_for("sk-exp", "m");
        r.now_ms = at + 3600 * 1000;
        assert_int_equal(sb_policy_admit(p, &r, &a), 401);
        assert_string_equal(a.code, "key_expired");
        assert_non_null(strstr(a.message, "Expired Key"));
    }
    /* null or absent: never expires. */
    assert_int_equal(put_key(p, "sk-exp", "{\"expires\":null}"), 0);
    assert_int_equal(sb_policy_authenticate(p, "sk-exp", 6, INT64_MAX / 2, &a), 0);
    /* Malformed expiry: a bad record, the old one stays. */
    static const char *const bad[] = {
        "{\"expires\":\"tomorrow\"}",
        "{\"expires\":\"2026-13-01T00:00:00Z\"}",
        "{\"expires\":\"2026-11-21T25:00Z\"}",
        "{\"expires\":\"2026-11-21T10:00:00Zjunk\"}",
        "{\"expires\":\"2026-11-21T10:00:00.Z\"}",
        "{\"expires\":12345}",
        "{\"expires\":\"2026-11-21T10:00:00+2\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(put_key(p, "sk-exp", bad[i]), -1);
    assert_int_equal(sb_policy_authenticate(p, "sk-exp", 6, INT64_MAX / 2, &a), 0);
    sb_policy_free(p);
}

static void test_bad_records(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    json_t *arr = json_array();
    assert_int_equal(sb_policy_upsert(p, SB_ENT_KEY, "k", arr, false), -1);
    json_decref(arr);
    assert_int_equal(put(p, SB_ENT_KEY, "", "{}"), -1);
    char longid[200];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    assert_int_equal(put(p, SB_ENT_TEAM, longid, "{}"), -1);
    assert_int_equal(put(p, SB_ENT_KEY, "k", "{\"models\":\"gpt-4o\"}"), -1);
    assert_int_equal(put(p, SB_ENT_KEY, "k", "{\"models\":[1]}"), -1);
    assert_int_equal(put(p, SB_ENT_KEY, "k", "{\"max_budget\":\"10\"}"), -1);
    assert_int_equal(put(p, SB_ENT_KEY, "k", "{\"max_budget\":-1}"), -1);
    assert_int_equal(put(p, SB_ENT_KEY, "k", "{\"rpm_limit\":-3}"), -1);
    assert_int_equal(put(p, SB_ENT_KEY, "k", "{\"blocked\":\"yes\"}"), -1);
    assert_int_equal(put(p, SB_ENT_KEY, "k", "{\"model_rpm_limit\":[]}"), -1);
    assert_int_equal(put(p, SB_ENT_KEY, "k", "{\"model_rpm_limit\":{\"m\":\"x\"}}"), -1);
    assert_int_equal(
        put(p, SB_ENT_KEY, "k",
            "{\"model_max_budget\":{\"m\":{\"budget_limit\":1,\"time_period\":\"1x\"}}}"),
        -1);
    assert_null(sb_policy_get(p, SB_ENT_KEY, "k"));
    /* Integer and real budgets and nulls are all fine. */
    assert_int_equal(put(p, SB_ENT_KEY, "k", "{\"max_budget\":10,\"rpm_limit\":null}"), 0);
    assert_int_equal(put(p, SB_ENT_KEY, "k", "{\"max_budget\":10.5,\"tpm_limit\":5.0}"), 0);
    sb_policy_free(p);
}

static void test_admin(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    struct sb_admission a;
    assert_int_equal(put_key(p, "sk-plain", "{\"user_id\":\"u1\"}"), 0);
    assert_int_equal(put_key(p, "sk-admin", "{\"user_role\":\"proxy_admin\"}"), 0);
    assert_int_equal(put_key(p, "sk-viaser", "{\"user_id\":\"boss\"}"), 0);
    assert_int_equal(put(p, SB_ENT_USER, "u1", "{\"user_role\":\"internal_user\"}"), 0);
    assert_int_equal(put(p, SB_ENT_USER, "boss", "{\"user_role\":\"proxy_admin\"}"), 0);
    assert_int_equal(sb_policy_authenticate(p, "sk-plain", 8, T0_MS, &a), 0);
    assert_false(a.admin);
    assert_string_equal(a.user_id, "u1");
    assert_int_equal(sb_policy_authenticate(p, "sk-admin", 8, T0_MS, &a), 0);
    assert_true(a.admin);
    assert_int_equal(sb_policy_authenticate(p, "sk-viaser", 9, T0_MS, &a), 0);
    assert_true(a.admin);
    assert_int_equal(strlen(a.key_hash), 64);
    assert_null(a.handle);
    /* The user demoted: the key is no longer an admin. */
    assert_int_equal(put(p, SB_ENT_USER, "boss", "{\"user_role\":\"internal_user\"}"), 0);
    assert_int_equal(sb_policy_authenticate(p, "sk-viaser", 9, T0_MS, &a), 0);
    assert_false(a.admin);
    sb_policy_free(p);
}

static int admit_model(struct sb_policy *p, const char *key, const char *model,
                       struct sb_admission *a)
{
    struct sb_admit_req r = req_for(key, model);
    int rc = sb_policy_admit(p, &r, a);
    if (rc == 0)
        sb_policy_release(p, a);
    return rc;
}

static void test_model_access(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    struct sb_admission a;
    const char *g1[] = {"beta-models"};
    const char *g2[] = {"beta-models", "cheap"};
    assert_int_equal(sb_policy_set_access_groups(p, "claude-x", g1, 1), 0);
    assert_int_equal(sb_policy_set_access_groups(p, "mini", g2, 2), 0);
    assert_int_equal(sb_policy_set_access_groups(p, "claude-x", g2, 2), 0); /* replaces */

    assert_int_equal(put_key(p, "sk-any", "{\"models\":[]}"), 0);
    assert_int_equal(put_key(p, "sk-allp", "{\"models\":[\"all-proxy-models\"]}"), 0);
    assert_int_equal(put_key(p, "sk-list", "{\"models\":[\"gpt-4o\",\"openai/*\"]}"), 0);
    assert_int_equal(put_key(p, "sk-group", "{\"models\":[\"cheap\"]}"), 0);
    assert_int_equal(put_key(p, "sk-team", "{\"team_id\":\"t\",\"user_id\":\"u\"}"), 0);
    assert_int_equal(put(p, SB_ENT_TEAM, "t", "{\"models\":[\"gpt-4o\",\"mini\"]}"), 0);
    assert_int_equal(put(p, SB_ENT_USER, "u", "{\"models\":[\"gpt-4o\"]}"), 0);

    assert_int_equal(admit_model(p, "sk-any", "whatever", &a), 0);
    assert_int_equal(admit_model(p, "sk-allp", "whatever", &a), 0);
    assert_int_equal(admit_model(p, "sk-list", "gpt-4o", &a), 0);
    assert_int_equal(admit_model(p, "sk-list", "openai/o3", &a), 0);
    assert_int_equal(admit_model(p, "sk-list", "gpt-4o-mini", &a), 403);
    assert_string_equal(a.code, "model_not_allowed");
    assert_string_equal(a.type, "permission_error");
    assert_non_null(strstr(a.message, "gpt-4o-mini"));
    assert_non_null(strstr(a.message, "key"));
    assert_null(a.handle);
    assert_int_equal(admit_model(p, "sk-group", "mini", &a), 0);
    assert_int_equal(admit_model(p, "sk-group", "claude-x", &a), 0);
    assert_int_equal(admit_model(p, "sk-group", "gpt-4o", &a), 403);
    /* Groups of another alias do not leak: gpt-4o is in no group. */
    assert_int_equal(sb_policy_set_access_groups(p, "gpt-4o", NULL, 0), 0);
    assert_int_equal(admit_model(p, "sk-group", "gpt-4o", &a), 403);
    /* Team and user lists apply to a key that allows everything. */
    assert_int_equal(admit_model(p, "sk-team", "gpt-4o", &a), 0);
    assert_int_equal(admit_model(p, "sk-team", "claude-x", &a), 403);
    assert_non_null(strstr(a.message, "team"));
    assert_int_equal(admit_model(p, "sk-team", "mini", &a), 403);
    assert_non_null(strstr(a.message, "user"));
    assert_non_null(strstr(a.message, "mini"));
    sb_policy_free(p);
}

static void test_four_level_budget(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    struct sb_admission a, b, c;
    /* Worst case per request: 5000 nano. Key 12000, team 20000, user 30000, customer 8000. */
    assert_int_equal(put_key(p, "sk-b",
                             "{\"max_budget\":0.000012,\"team_id\":\"t\","
                             "\"user_id\":\"u\",\"soft_budget\":0.000001}"),
                     0);
    assert_int_equal(put(p, SB_ENT_TEAM, "t", "{\"max_budget\":0.00002}"), 0);
    assert_int_equal(put(p, SB_ENT_USER, "u", "{\"max_budget\":3e-5}"), 0);
    assert_int_equal(put(p, SB_ENT_CUSTOMER, "cust", "{\"max_budget\":0.000008}"), 0);
    char kh[65];
    sb_policy_hash_key("sk-b", 4, kh);

    struct sb_admit_req r = req_for("sk-b", "m");
    r.end_user = "cust";
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    assert_int_equal(a.reserved_nano, 5000);
    assert_false(a.lowered);
    /* Reserved at the four levels. */
    assert_int_equal(sb_policy_reserved_total(p), 4 * 5000);
    /* The customer has 3000 left: input 1000 + 100 output tokens (2000) fits. */
    assert_int_equal(sb_policy_admit(p, &r, &b), 0);
    assert_true(b.lowered);
    assert_int_equal(b.max_output, 100);
    assert_int_equal(b.reserved_nano, 3000);
    /* Nothing left for the customer: refused, naming the end user. */
    assert_int_equal(sb_policy_admit(p, &r, &c), 400);
    assert_string_equal(c.code, "budget_exceeded");
    assert_string_equal(c.type, "budget_exceeded");
    assert_non_null(strstr(c.message, "Budget has been exceeded!"));
    assert_non_null(strstr(c.message, "End User=cust"));
    assert_non_null(strstr(c.message, "Max budget: 8e-06"));
    assert_null(c.handle);
    assert_int_equal(sb_policy_reserved_total(p), 4 * 8000);

    /* Without the end user, the key's 12000 is the limit: 4000 left after 8000. */
    r.end_user = NULL;
    assert_int_equal(sb_policy_admit(p, &r, &c), 0);
    assert_true(c.lowered);
    assert_int_equal(c.max_output, 150);
    assert_int_equal(c.reserved_nano, 4000);
    struct sb_admission d;
    assert_int_equal(sb_policy_admit(p, &r, &d), 400);
    assert_non_null(strstr(d.message, "Current cost: 0, Max budget: 1.2e-05"));

    /* Settle below the reservations; spend lands at each level the request touched. */
    sb_policy_settle(p, &a, 4000, 250, T0_MS);
    sb_policy_settle(p, &b, 2500, 150, T0_MS);
    sb_policy_release(p, &c);
    assert_int_equal(sb_policy_reserved_total(p), 0);
    assert_int_equal(spend_nano(p, SB_ENT_KEY, kh), 6500);
    assert_int_equal(spend_nano(p, SB_ENT_TEAM, "t"), 6500);
    assert_int_equal(spend_nano(p, SB_ENT_USER, "u"), 6500);
    assert_int_equal(spend_nano(p, SB_ENT_CUSTOMER, "cust"), 6500);

    /* The team's budget is the tightest once the team spent elsewhere. */
    sb_policy_set_spend(p, SB_ENT_TEAM, "t", 19990, 0);
    assert_int_equal(sb_policy_admit(p, &r, &d), 400);
    assert_non_null(strstr(d.message, "Team=t"));
    sb_policy_set_spend(p, SB_ENT_TEAM, "t", 0, 0);
    sb_policy_set_spend(p, SB_ENT_USER, "u", 30000, 0);
    assert_int_equal(sb_policy_admit(p, &r, &d), 400);
    assert_non_null(strstr(d.message, "User=u"));
    sb_policy_set_spend(p, SB_ENT_USER, "u", 0, 0);
    sb_policy_set_spend(p, SB_ENT_KEY, kh, 12000, 0);
    assert_int_equal(sb_policy_admit(p, &r, &d), 400);
    assert_non_null(strstr(d.message, "Current cost: 1.2e-05"));
    sb_policy_free(p);
}

static void test_no_price_and_default_output(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    struct sb_admission a;
    assert_int_equal(put_key(p, "sk-n", "{\"max_budget\":0.00001}"), 0);
    assert_int_equal(put_key(p, "sk-free", "{}"), 0);
    /* No price: nothing reserved, the output limit untouched. */
    struct sb_admit_req r = req_for("sk-n", "m");
    r.price_in = -1;
    r.max_output = -1;
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    assert_int_equal(a.reserved_nano, 0);
    assert_int_equal(a.max_output, -1);
    assert_int_equal(sb_policy_reserved_total(p), 0);
    sb_policy_settle(p, &a, 10000, 10, T0_MS); /* spend reaches the budget */
    assert_int_equal(sb_policy_admit(p, &r, &a), 400);
    assert_string_equal(a.code, "budget_exceeded");

    /* With a budget and no client limit, the default output is what is reserved and sent. */
    char kh[65];
    sb_policy_hash_key("sk-n", 4, kh);
    sb_policy_set_spend(p, SB_ENT_KEY, kh, 0, 0);
    r = req_for("sk-n", "m");
    r.max_output = -1;
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    assert_int_equal(a.reserved_nano, 1000 + 300 * 20);
    assert_int_equal(a.max_output, 300);
    assert_false(a.lowered);
    sb_policy_release(p, &a);
    /* Without a budget the request is left as it is. */
    r = req_for("sk-free", "m");
    r.max_output = -1;
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    assert_int_equal(a.max_output, -1);
    assert_int_equal(a.reserved_nano, 0);
    sb_policy_release(p, &a);
    /* A request that costs nothing is still refused once the budget is spent. */
    sb_policy_set_spend(p, SB_ENT_KEY, kh, 10000, 0);
    r = req_for("sk-n", "m");
    r.input_tokens = 0;
    r.max_output = 0;
    assert_int_equal(sb_policy_admit(p, &r, &a), 400);
    sb_policy_set_spend(p, SB_ENT_KEY, kh, 0, 0);
    /* Input alone beyond the budget: refused even with a tiny output. */
    r = req_for("sk-n", "m");
    r.input_tokens = 2000;
    assert_int_equal(sb_policy_admit(p, &r, &a), 400);
    /* Lowering below 16 tokens is refused: 10000 - 9700 input leaves 15 output tokens. */
    r.input_tokens = 970;
    assert_int_equal(sb_policy_admit(p, &r, &a), 400);
    r.input_tokens = 968; /* leaves 16 */
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    assert_true(a.lowered);
    assert_int_equal(a.max_output, 16);
    assert_int_equal(a.reserved_nano, 9680 + 320);
    sb_policy_release(p, &a);
    assert_int_equal(sb_policy_reserved_total(p), 0);
    sb_policy_free(p);
}

static void test_settle_release_once(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    struct sb_admission a;
    assert_int_equal(put_key(p, "sk-s",
                             "{\"max_budget\":1,\"max_parallel_requests\":1,"
                             "\"tpm_limit\":1000}"),
                     0);
    struct sb_admit_req r = req_for("sk-s", "m");
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    sb_policy_settle(p, &a, 1234, 300, T0_MS);
    assert_null(a.handle);
    sb_policy_settle(p, &a, 1234, 300, T0_MS);
    sb_policy_release(p, &a);
    assert_int_equal(key_spend(p, "sk-s"), 1234);
    assert_int_equal(sb_policy_reserved_total(p), 0);
    /* The parallel slot was freed once: one more request fits, a second does not. */
    struct sb_admission b, c;
    assert_int_equal(sb_policy_admit(p, &r, &b), 0);
    assert_int_equal(b.remaining_tokens, 700);
    assert_int_equal(sb_policy_admit(p, &r, &c), 429);
    sb_policy_release(p, &b);
    sb_policy_release(p, &b);
    sb_policy_settle(p, &b, 99, 99, T0_MS);
    assert_int_equal(key_spend(p, "sk-s"), 1234);
    assert_int_equal(sb_policy_reserved_total(p), 0);
    assert_int_equal(sb_policy_admit(p, &r, &b), 0);
    sb_policy_release(p, &b);
    sb_policy_free(p);
}

static void test_model_budget_and_limits(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    struct sb_admission a, b;
    assert_int_equal(
        put_key(p, "sk-m",
                "{\"model_max_budget\":{\"gpt-4o\":{\"budget_limit\":0.000006,"
                "\"time_period\":\"1d\"},\"mini\":0.00001},"
                "\"model_rpm_limit\":{\"gpt-4o\":2},\"model_tpm_limit\":{\"o3\":100}}"),
        0);
    struct sb_admit_req r = req_for("sk-m", "gpt-4o");
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    assert_int_equal(a.reserved_nano, 5000);
    assert_int_equal(sb_policy_admit(p, &r, &b), 400);
    assert_non_null(strstr(b.message, "Model=gpt-4o"));
    /* Another model is not touched by gpt-4o's budget. */
    struct sb_admit_req r2 = req_for("sk-m", "mini");
    assert_int_equal(sb_policy_admit(p, &r2, &b), 0);
    sb_policy_settle(p, &b, 5000, 10, T0_MS);
    sb_policy_settle(p, &a, 5000, 10, T0_MS);
    assert_int_equal(key_spend(p, "sk-m"), 10000);
    /* gpt-4o spent 5000 of 6000: 1000 cannot even pay the input. */
    assert_int_equal(sb_policy_admit(p, &r, &a), 400);
    /* A day later the model's budget period reset it; the RPM window is new too. */
    r.now_ms += 86400 * 1000;
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    assert_int_equal(sb_policy_admit(p, &r, &b), 400); /* budget again: 5000 reserved */
    sb_policy_release(p, &a);
    /* Model RPM 2: two in one window, the third refused. */
    r.now_ms += 60000;
    r.input_tokens = 1;
    r.max_output = 1;
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    sb_policy_release(p, &a);
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    sb_policy_release(p, &a);
    assert_int_equal(sb_policy_admit(p, &r, &a), 429);
    assert_string_equal(a.code, "rate_limit_exceeded");
    assert_non_null(strstr(a.message, "model"));
    /* Model TPM 100 on o3. */
    struct sb_admit_req r3 = req_for("sk-m", "o3");
    assert_int_equal(sb_policy_admit(p, &r3, &a), 0);
    sb_policy_settle(p, &a, 1, 100, T0_MS);
    assert_int_equal(sb_policy_admit(p, &r3, &a), 429);
    assert_non_null(strstr(a.message, "tokens per minute"));
    assert_int_equal(sb_policy_reserved_total(p), 0);
    sb_policy_free(p);
}

static void test_rate_limits_and_headers(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    struct sb_admission a[4];
    assert_int_equal(put_key(p, "sk-r", "{\"rpm_limit\":3,\"tpm_limit\":500,\"team_id\":\"t\"}"),
                     0);
    assert_int_equal(put_key(p, "sk-t", "{\"team_id\":\"t\"}"), 0);
    assert_int_equal(put(p, SB_ENT_TEAM, "t", "{\"rpm_limit\":5,\"tpm_limit\":900}"), 0);
    struct sb_admit_req r = req_for("sk-r", "m");
    r.now_ms = T0_MS + 15000; /* 45 s before the window ends */
    for (int i = 0; i < 3; i++) {
        assert_int_equal(sb_policy_admit(p, &r, &a[i]), 0);
        assert_int_equal(a[i].limit_requests, 3);
        assert_int_equal(a[i].remaining_requests, 2 - i);
        assert_int_equal(a[i].limit_tokens, 500);
        assert_int_equal(a[i].remaining_tokens, 500);
        assert_int_equal(a[i].reset_ms, 45000);
    }
    assert_int_equal(sb_policy_admit(p, &r, &a[3]), 429);
    assert_string_equal(a[3].type, "rate_limit_error");
    assert_int_equal(a[3].retry_after_s, 45);
    /* The key's refusal undid its count at the team: sk-t still has 2 of the team's 5. */
    struct sb_admit_req rt = req_for("sk-t", "m");
    rt.now_ms = r.now_ms;
    struct sb_admission t1, t2, t3;
    assert_int_equal(sb_policy_admit(p, &rt, &t1), 0);
    assert_int_equal(t1.limit_requests, 5); /* the team's, as the key has none */
    assert_int_equal(t1.remaining_requests, 1);
    assert_int_equal(t1.limit_tokens, 900);
    assert_int_equal(sb_policy_admit(p, &rt, &t2), 0);
    assert_int_equal(sb_policy_admit(p, &rt, &t3), 429);
    assert_non_null(strstr(t3.message, "team"));
    /* TPM: settled tokens count; reaching the limit refuses until the window ends. */
    for (int i = 0; i < 3; i++)
        sb_policy_settle(p, &a[i], 10, 200, r.now_ms);
    sb_policy_release(p, &t1);
    sb_policy_release(p, &t2);
    r.now_ms = T0_MS + 60000; /* next window: RPM and TPM start again */
    assert_int_equal(sb_policy_admit(p, &r, &a[0]), 0);
    assert_int_equal(a[0].remaining_tokens, 500);
    assert_int_equal(a[0].reset_ms, 60000);
    sb_policy_settle(p, &a[0], 1, 499, r.now_ms);
    assert_int_equal(sb_policy_admit(p, &r, &a[1]), 0);
    assert_int_equal(a[1].remaining_tokens, 1);
    sb_policy_settle(p, &a[1], 1, 1, r.now_ms);
    assert_int_equal(sb_policy_admit(p, &r, &a[2]), 429);
    assert_non_null(strstr(a[2].message, "tokens per minute"));
    assert_int_equal(a[2].retry_after_s, 60);
    /* A late clock (previous window) does not reopen the window. */
    r.now_ms = T0_MS + 59999;
    assert_int_equal(sb_policy_admit(p, &r, &a[2]), 429);
    sb_policy_free(p);
}

static void test_parallel_limit(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    struct sb_admission a[3];
    assert_int_equal(put_key(p, "sk-p", "{\"max_parallel_requests\":2,\"user_id\":\"u\"}"), 0);
    assert_int_equal(put_key(p, "sk-q", "{\"user_id\":\"u\"}"), 0);
    assert_int_equal(put(p, SB_ENT_USER, "u", "{\"max_parallel_requests\":3}"), 0);
    struct sb_admit_req r = req_for("sk-p", "m");
    assert_int_equal(sb_policy_admit(p, &r, &a[0]), 0);
    assert_int_equal(sb_policy_admit(p, &r, &a[1]), 0);
    assert_int_equal(sb_policy_admit(p, &r, &a[2]), 429);
    assert_non_null(strstr(a[2].message, "parallel"));
    assert_int_equal(a[2].retry_after_s, 1);
    /* The user's limit of 3 counts requests of both keys. */
    struct sb_admit_req q = req_for("sk-q", "m");
    struct sb_admission b, c;
    assert_int_equal(sb_policy_admit(p, &q, &b), 0);
    assert_int_equal(sb_policy_admit(p, &q, &c), 429);
    assert_non_null(strstr(c.message, "user"));
    sb_policy_release(p, &a[0]);
    assert_int_equal(sb_policy_admit(p, &q, &c), 0);
    sb_policy_release(p, &a[1]);
    sb_policy_release(p, &b);
    sb_policy_release(p, &c);
    sb_policy_free(p);
}

static void test_upsert_keeps_live_counters(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    struct sb_admission a, b;
    assert_int_equal(put_key(p, "sk-u",
                             "{\"max_budget\":0.00001,\"rpm_limit\":2,"
                             "\"spend\":0.000001}"),
                     0);
    assert_int_equal(key_spend(p, "sk-u"), 1000);
    struct sb_admit_req r = req_for("sk-u", "m");
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    /* Replace the record (an admin update): spend, the reservation and the RPM count stay. */
    assert_int_equal(put_key(p, "sk-u",
                             "{\"max_budget\":0.00001,\"rpm_limit\":2,"
                             "\"spend\":5,\"key_alias\":\"x\"}"),
                     0);
    assert_int_equal(key_spend(p, "sk-u"), 1000);
    assert_int_equal(sb_policy_reserved_total(p), 5000);
    assert_int_equal(sb_policy_admit(p, &r, &b), 0);
    assert_true(b.lowered); /* 10000 - 1000 spent - 5000 reserved = 4000 */
    assert_int_equal(b.remaining_requests, 0);
    sb_policy_release(p, &b);
    struct sb_admission c;
    assert_int_equal(sb_policy_admit(p, &r, &c), 429);
    sb_policy_settle(p, &a, 2000, 10, T0_MS);
    assert_int_equal(key_spend(p, "sk-u"), 3000);
    json_t *g;
    char kh[65];
    sb_policy_hash_key("sk-u", 4, kh);
    g = sb_policy_get(p, SB_ENT_KEY, kh);
    assert_string_equal(json_string_value(json_object_get(g, "key_alias")), "x");
    json_decref(g);
    /* take_spend sets the spend from the record. */
    json_t *j = parse("{\"spend\":0.000002}");
    assert_int_equal(sb_policy_upsert(p, SB_ENT_KEY, kh, j, true), 0);
    json_decref(j);
    assert_int_equal(key_spend(p, "sk-u"), 2000);
    assert_null(sb_policy_get(p, SB_ENT_TEAM, "nope"));
    sb_policy_free(p);
}

static void test_remove_while_held(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    struct sb_admission a;
    assert_int_equal(put_key(p, "sk-x",
                             "{\"max_budget\":1,\"team_id\":\"t\","
                             "\"model_rpm_limit\":{\"m\":5}}"),
                     0);
    assert_int_equal(put(p, SB_ENT_TEAM, "t", "{\"max_budget\":1}"), 0);
    assert_int_equal(put(p, SB_ENT_CUSTOMER, "c", "{\"max_budget\":1}"), 0);
    struct sb_admit_req r = req_for("sk-x", "m");
    r.end_user = "c";
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    char kh[65];
    sb_policy_hash_key("sk-x", 4, kh);
    sb_policy_remove(p, SB_ENT_KEY, kh);
    sb_policy_remove(p, SB_ENT_TEAM, "t");
    sb_policy_remove(p, SB_ENT_CUSTOMER, "c");
    sb_policy_remove(p, SB_ENT_CUSTOMER, "never-existed");
    assert_null(sb_policy_get(p, SB_ENT_KEY, kh));
    struct sb_admission b;
    assert_int_equal(sb_policy_admit(p, &r, &b), 401);
    /* The held admission settles into the detached entities (ASan checks the memory). */
    assert_int_equal(sb_policy_reserved_total(p), 3 * 5000);
    sb_policy_settle(p, &a, 100, 10, T0_MS);
    assert_int_equal(sb_policy_reserved_total(p), 0);
    /* Re-created: a fresh entity with its record's spend. */
    assert_int_equal(put(p, SB_ENT_KEY, kh, "{}"), 0);
    assert_int_equal(key_spend(p, "sk-x"), 0);
    sb_policy_free(p);
}

struct reset_seen {
    int n;
    enum sb_entity kind[8];
    char id[8][32];
    char dur[8][16];
};

static void on_due(void *ud, enum sb_entity kind, const char *id, const char *budget_duration)
{
    struct reset_seen *s = ud;
    if (s->n < 8) {
        s->kind[s->n] = kind;
        snprintf(s->id[s->n], sizeof(s->id[0]), "%s", id);
        snprintf(s->dur[s->n], sizeof(s->dur[0]), "%s", budget_duration);
    }
    s->n++;
}

/* A callback that changes the policy, as the store thread does. */
static void on_due_reset(void *ud, enum sb_entity kind, const char *id, const char *budget_duration)
{
    struct sb_policy *p = ud;
    sb_policy_set_spend(p, kind, id, 0, T0_S + 30 + sb_policy_duration_s(budget_duration));
}

static void test_budget_reset(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    struct sb_admission a;
    assert_int_equal(put_key(p, "sk-d",
                             "{\"max_budget\":0.00001,\"budget_duration\":\"30s\","
                             "\"budget_reset_at\":1795255230}"),
                     0);
    assert_int_equal(put(p, SB_ENT_TEAM, "t",
                         "{\"budget_duration\":\"1d\","
                         "\"budget_reset_at\":1795255100}"),
                     0);
    assert_int_equal(put(p, SB_ENT_USER, "u", "{\"budget_reset_at\":1}"), 0); /* no duration */
    assert_int_equal(put(p, SB_ENT_CUSTOMER, "c", "{\"budget_duration\":\"1h\"}"), 0);
    struct reset_seen s = {0};
    sb_policy_due_resets(p, T0_S, on_due, &s);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.kind[0], SB_ENT_TEAM);
    assert_string_equal(s.id[0], "t");
    assert_string_equal(s.dur[0], "1d");

    struct sb_admit_req r = req_for("sk-d", "m");
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    sb_policy_settle(p, &a, 9000, 10, T0_MS);
    assert_int_equal(sb_policy_admit(p, &r, &a), 400);

    memset(&s, 0, sizeof(s));
    sb_policy_due_resets(p, T0_S + 30, on_due, &s);
    assert_int_equal(s.n, 2);
    sb_policy_due_resets(p, T0_S + 30, on_due_reset, p);
    assert_int_equal(key_spend(p, "sk-d"), 0);
    char kh[65];
    sb_policy_hash_key("sk-d", 4, kh);
    json_t *g = sb_policy_get(p, SB_ENT_KEY, kh);
    assert_int_equal(json_integer_value(json_object_get(g, "budget_reset_at")), T0_S + 60);
    json_decref(g);
    g = sb_policy_get(p, SB_ENT_TEAM, "t");
    assert_int_equal(json_integer_value(json_object_get(g, "budget_reset_at")), T0_S + 30 + 86400);
    json_decref(g);
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    sb_policy_release(p, &a);
    memset(&s, 0, sizeof(s));
    sb_policy_due_resets(p, T0_S + 30, on_due, &s);
    assert_int_equal(s.n, 0);
    sb_policy_free(p);
}

/* ---- concurrency ---- */

#define KEY_BUDGET  1000000 /* nano */
#define TEAM_BUDGET 800000

struct conc {
    struct sb_policy *p;
    char kh[65];
    int per_thread;
    int64_t team_budget;
    uint64_t seed;
    _Atomic int admitted, refused, lowered, violations, other;
    _Atomic int64_t settled_cost;
};

static void *conc_worker(void *arg)
{
    struct conc *c = arg;
    uint64_t rng = atomic_fetch_add(&c->admitted, 0) + c->seed + (uint64_t)(uintptr_t)&rng;
    for (int i = 0; i < c->per_thread; i++) {
        struct sb_admit_req r = req_for("sk-conc", "m");
        r.input_tokens = 50 + (int64_t)(sb_rand_next(&rng) % 100);
        r.max_output = (sb_rand_next(&rng) % 4 == 0) ? -1 : (int64_t)(sb_rand_next(&rng) % 400);
        struct sb_admission a;
        int rc = sb_policy_admit(c->p, &r, &a);
        if (rc == 400) {
            atomic_fetch_add(&c->refused, 1);
            continue;
        }
        if (rc != 0) {
            atomic_fetch_add(&c->other, 1);
            continue;
        }
        atomic_fetch_add(&c->admitted, 1);
        if (a.lowered)
            atomic_fetch_add(&c->lowered, 1);
        unsigned what = (unsigned)(sb_rand_next(&rng) % 10);
        if (what == 0) {
            sb_policy_release(c->p, &a); /* provider error */
        } else if (what == 1) {
            sched_yield(); /* cancelled later: the client went away */
            sb_policy_release(c->p, &a);
        } else {
            int64_t cost = (int64_t)(sb_rand_next(&rng) % (uint64_t)(a.reserved_nano + 1));
            sb_policy_settle(c->p, &a, cost, 10, r.now_ms);
            atomic_fetch_add(&c->settled_cost, cost);
        }
        json_t *k = sb_policy_get(c->p, SB_ENT_KEY, c->kh);
        json_t *t = sb_policy_get(c->p, SB_ENT_TEAM, "ct");
        double ks = json_real_value(json_object_get(k, "spend")) * 1e9;
        double ts = json_real_value(json_object_get(t, "spend")) * 1e9;
        if (ks > KEY_BUDGET + 0.5 || ts > (double)c->team_budget + 0.5)
            atomic_fetch_add(&c->violations, 1);
        json_decref(k);
        json_decref(t);
    }
    return NULL;
}

static void run_concurrent_budget(bool team)
{
    struct conc c = {.per_thread = 500 / 8 + 1,
                     .seed = 0x1234567 + team,
                     .team_budget = team ? TEAM_BUDGET : KEY_BUDGET};
    c.p = sb_policy_new();
    sb_policy_hash_key("sk-conc", 7, c.kh);
    char rec[128];
    snprintf(rec, sizeof(rec), "{\"max_budget\":%.9f,\"team_id\":\"ct\"}", KEY_BUDGET / 1e9);
    assert_int_equal(put(c.p, SB_ENT_KEY, c.kh, rec), 0);
    if (team) {
        snprintf(rec, sizeof(rec), "{\"max_budget\":%.9f}", TEAM_BUDGET / 1e9);
        assert_int_equal(put(c.p, SB_ENT_TEAM, "ct", rec), 0);
    } else {
        assert_int_equal(put(c.p, SB_ENT_TEAM, "ct", "{}"), 0);
    }
    pthread_t th[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&th[i], NULL, conc_worker, &c), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&c.violations), 0);
    assert_int_equal(atomic_load(&c.other), 0);
    assert_int_equal(sb_policy_reserved_total(c.p), 0);
    int64_t ks = spend_nano(c.p, SB_ENT_KEY, c.kh);
    assert_int_equal(ks, atomic_load(&c.settled_cost));
    assert_true(ks <= KEY_BUDGET);
    assert_true(spend_nano(c.p, SB_ENT_TEAM, "ct") <= (team ? TEAM_BUDGET : KEY_BUDGET));
    /* The budget was the binding constraint: some were lowered and some refused. */
    assert_true(atomic_load(&c.admitted) + atomic_load(&c.refused) >= 500);
    assert_true(atomic_load(&c.refused) > 0);
    assert_true(atomic_load(&c.lowered) > 0);
    sb_policy_free(c.p);
}

static void collect_id(void *ud, const char *id)
{
    char *list = ud;
    size_t n = strlen(list);
    snprintf(list + n, 512 - n, "%s%s", n ? "," : "", id);
}

static struct sb_spend_row spend_row(const char *key_hash, const char *team, const char *user,
                                     const char *end_user, const char *model, int64_t cost)
{
    struct sb_spend_row r;
    memset(&r, 0, sizeof(r));
    snprintf(r.request_id, sizeof(r.request_id), "req");
    snprintf(r.key_hash, sizeof(r.key_hash), "%s", key_hash);
    snprintf(r.team_id, sizeof(r.team_id), "%s", team);
    snprintf(r.user_id, sizeof(r.user_id), "%s", user);
    snprintf(r.end_user, sizeof(r.end_user), "%s", end_user);
    snprintf(r.model, sizeof(r.model), "%s", model);
    r.cost_nano = cost;
    return r;
}

/* Several instances on one database: spend = database total + what this process settled
 * that is not committed yet; commits move cost from pending to the database total. */
static void test_shared_spend(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    char kh[65];
    sb_policy_hash_key("sk-s", 4, kh);
    assert_int_equal(put_key(p, "sk-s",
                             "{\"max_budget\":0.00002,\"team_id\":\"t\",\"user_id\":\"u\","
                             "\"model_max_budget\":{\"m\":0.00002,\"p\":{\"budget_limit\":1,"
                             "\"time_period\":\"1d\"}}}"),
                     0);
    assert_int_equal(put(p, SB_ENT_TEAM, "t", "{\"max_budget\":1}"), 0);
    assert_int_equal(put(p, SB_ENT_USER, "u", "{}"), 0);
    assert_int_equal(put(p, SB_ENT_CUSTOMER, "c", "{\"max_budget\":1}"), 0);
    assert_int_equal(put(p, SB_ENT_TEAM, "free", "{}"), 0);

    /* Only entities with a budget are synced: the user and the free team are not. */
    char list[512] = "";
    sb_policy_budgeted(p, SB_ENT_TEAM, collect_id, list);
    assert_string_equal(list, "t");
    list[0] = '\0';
    sb_policy_budgeted(p, SB_ENT_USER, collect_id, list);
    assert_string_equal(list, "");
    sb_policy_budgeted(p, SB_ENT_KEY, collect_id, list);
    assert_string_equal(list, kh);

    /* Two requests settled here: both pending at every level they touched. */
    struct sb_admission a, b;
    struct sb_admit_req r = req_for("sk-s", "m");
    r.end_user = "c";
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    assert_int_equal(sb_policy_admit(p, &r, &b), 0);
    sb_policy_settle(p, &a, 3000, 10, T0_MS);
    sb_policy_settle(p, &b, 2000, 10, T0_MS);
    assert_int_equal(sb_policy_pending(p, SB_ENT_KEY, kh, NULL), 5000);
    assert_int_equal(sb_policy_pending(p, SB_ENT_KEY, kh, "m"), 5000);
    assert_int_equal(sb_policy_pending(p, SB_ENT_TEAM, "t", NULL), 5000);
    assert_int_equal(sb_policy_pending(p, SB_ENT_USER, "u", NULL), 5000);
    assert_int_equal(sb_policy_pending(p, SB_ENT_CUSTOMER, "c", NULL), 5000);
    assert_int_equal(sb_policy_pending(p, SB_ENT_KEY, kh, "nope"), -1);
    assert_int_equal(sb_policy_pending(p, SB_ENT_TEAM, "nope", NULL), -1);

    /* The database knows 7000 spent elsewhere and none of ours yet: 7000 + 5000. */
    json_t *ms = parse("{\"m\":7000,\"p\":999999}");
    sb_policy_sync_spend(p, SB_ENT_KEY, kh, 7000, ms);
    assert_int_equal(key_spend(p, "sk-s"), 12000);
    /* The first row is committed: it leaves pending at every level it names. */
    struct sb_spend_row row = spend_row(kh, "t", "u", "c", "m", 3000);
    sb_policy_applied(p, &row);
    assert_int_equal(sb_policy_pending(p, SB_ENT_KEY, kh, NULL), 2000);
    assert_int_equal(sb_policy_pending(p, SB_ENT_KEY, kh, "m"), 2000);
    assert_int_equal(sb_policy_pending(p, SB_ENT_TEAM, "t", NULL), 2000);
    assert_int_equal(sb_policy_pending(p, SB_ENT_USER, "u", NULL), 2000);
    assert_int_equal(sb_policy_pending(p, SB_ENT_CUSTOMER, "c", NULL), 2000);
    /* Now the database total holds it: 7000 + 3000 + 2000 pending. */
    sb_policy_sync_spend(p, SB_ENT_KEY, kh, 10000, ms);
    assert_int_equal(key_spend(p, "sk-s"), 12000);
    sb_policy_sync_spend(p, SB_ENT_TEAM, "t", 10000, NULL);
    assert_int_equal(spend_nano(p, SB_ENT_TEAM, "t"), 12000);
    /* Another instance spent 6000 more: with 2000 pending the key's 20000 has 0 left. */
    json_decref(ms);
    ms = parse("{\"m\":16000}");
    sb_policy_sync_spend(p, SB_ENT_KEY, kh, 18000, ms);
    assert_int_equal(key_spend(p, "sk-s"), 20000);
    assert_int_equal(sb_policy_admit(p, &r, &a), 400);
    /* Rows this process never settled (another run's journal, a master-key request) clamp
     * pending at 0 rather than drive it negative. */
    row = spend_row(kh, "t", "", "c", "m", 1000000);
    sb_policy_applied(p, &row);
    assert_int_equal(sb_policy_pending(p, SB_ENT_KEY, kh, NULL), 0);
    assert_int_equal(sb_policy_pending(p, SB_ENT_KEY, kh, "m"), 0);
    assert_int_equal(sb_policy_pending(p, SB_ENT_TEAM, "t", NULL), 0);
    assert_int_equal(sb_policy_pending(p, SB_ENT_USER, "u", NULL), 2000);
    sb_policy_sync_spend(p, SB_ENT_KEY, kh, 15000, ms);
    assert_int_equal(key_spend(p, "sk-s"), 15000);
    json_decref(ms);
    /* The model counter with a time_period keeps its own count: p was never synced. */
    r.model = "p";
    r.end_user = NULL;
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    sb_policy_release(p, &a);
    /* A released request was never pending; unknown ids are ignored. */
    assert_int_equal(sb_policy_pending(p, SB_ENT_KEY, kh, "p"), 0);
    sb_policy_sync_spend(p, SB_ENT_USER, "ghost", 5, NULL);
    sb_policy_applied(p, NULL);
    assert_int_equal(sb_policy_reserved_total(p), 0);
    sb_policy_free(p);
}

/* /key/regenerate: the key under a new hash starts from the old one's spend, pending and
 * per-model counters, and the old one's rows, committed after it is gone, change nothing. */
static void test_carry(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    static const char rec[] = "{\"max_budget\":0.00003,\"team_id\":\"t\","
                              "\"model_max_budget\":{\"m\":0.00001,\"p\":{\"budget_limit\":"
                              "0.000004,\"time_period\":\"1d\"}}";
    char old[65], new_h[65], json[256];
    sb_policy_hash_key("sk-old", 6, old);
    sb_policy_hash_key("sk-new", 6, new_h);
    snprintf(json, sizeof json, "%s}", rec);
    assert_int_equal(put_key(p, "sk-old", json), 0);
    assert_int_equal(put(p, SB_ENT_TEAM, "t", "{}"), 0);
    struct sb_admission a;
    struct sb_admit_req r = req_for("sk-old", "m");
    for (int i = 0; i < 2; i++) {
        assert_int_equal(sb_policy_admit(p, &r, &a), 0);
        sb_policy_settle(p, &a, 3000, 10, T0_MS);
    }
    r.model = "p";
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    sb_policy_settle(p, &a, 4000, 10, T0_MS);
    /* 1000 spent elsewhere, on m, is in the database. */
    json_t *ms = parse("{\"m\":1000}");
    sb_policy_sync_spend(p, SB_ENT_KEY, old, 1000, ms);
    assert_int_equal(spend_nano(p, SB_ENT_KEY, old), 11000);

    /* The new record comes with the database's carried total only. */
    snprintf(json, sizeof json, "%s,\"spend\":0.000001}", rec);
    json_t *j = parse(json);
    assert_int_equal(sb_policy_upsert(p, SB_ENT_KEY, new_h, j, true), 0);
    json_decref(j);
    assert_int_equal(spend_nano(p, SB_ENT_KEY, new_h), 1000);
    assert_int_equal(sb_policy_pending(p, SB_ENT_KEY, new_h, NULL), 0);

    assert_int_equal(sb_policy_carry(p, SB_ENT_KEY, old, new_h), 0);
    sb_policy_remove(p, SB_ENT_KEY, old);
    assert_int_equal(spend_nano(p, SB_ENT_KEY, new_h), 11000);
    assert_int_equal(sb_policy_pending(p, SB_ENT_KEY, new_h, NULL), 10000);
    assert_int_equal(sb_policy_pending(p, SB_ENT_KEY, new_h, "m"), 6000);
    assert_int_equal(sb_policy_pending(p, SB_ENT_KEY, new_h, "p"), 4000);
    /* The team was not touched. */
    assert_int_equal(sb_policy_pending(p, SB_ENT_TEAM, "t", NULL), 10000);

    /* The old rows commit under the old hash: the new key's database total does not grow,
     * and its pending stays, so the next sync still counts them. */
    struct sb_spend_row row = spend_row(old, "t", "", "", "m", 6000);
    sb_policy_applied(p, &row);
    assert_int_equal(sb_policy_pending(p, SB_ENT_KEY, new_h, NULL), 10000);
    sb_policy_sync_spend(p, SB_ENT_KEY, new_h, 1000, ms);
    json_decref(ms);
    assert_int_equal(spend_nano(p, SB_ENT_KEY, new_h), 11000);

    /* The per-model counters came along: p (4000 of 4000 in this period) refuses, m (7000 of
     * 10000) only pays for a lowered answer. */
    r = req_for("sk-new", "p");
    assert_int_equal(sb_policy_admit(p, &r, &a), 400);
    assert_non_null(strstr(a.message, "Model=p"));
    r.model = "m";
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    assert_true(a.lowered);
    assert_int_equal(a.max_output, 100);
    sb_policy_release(p, &a);
    /* The old key is gone; the key-level budget holds on the new one. */
    r.key = "sk-old";
    r.key_len = 6;
    assert_int_equal(sb_policy_admit(p, &r, &a), 401);

    /* Unknown ids, and an entity onto itself, change nothing. */
    assert_int_equal(sb_policy_carry(p, SB_ENT_KEY, old, new_h), -1);
    assert_int_equal(sb_policy_carry(p, SB_ENT_KEY, new_h, old), -1);
    assert_int_equal(sb_policy_carry(p, SB_ENT_KEY, new_h, new_h), -1);
    assert_int_equal(sb_policy_carry(p, SB_ENT_TEAM, new_h, "t"), -1);
    assert_int_equal(sb_policy_carry(p, (enum sb_entity)9, new_h, "t"), -1);
    assert_int_equal(sb_policy_carry(NULL, SB_ENT_KEY, new_h, old), -1);
    assert_int_equal(spend_nano(p, SB_ENT_KEY, new_h), 11000);
    assert_int_equal(sb_policy_reserved_total(p), 0);
    sb_policy_free(p);
}

static void test_concurrent_budget(void **state)
{
    (void)state;
    run_concurrent_budget(false);
    run_concurrent_budget(true);
}

#define RPM_L 37

struct rpm_run {
    struct sb_policy *p;
    _Atomic int go;
    _Atomic int admitted, refused;
};

static void *rpm_worker(void *arg)
{
    struct rpm_run *r = arg;
    while (!atomic_load(&r->go))
        ;
    for (int i = 0; i < 10; i++) {
        struct sb_admit_req q = req_for("sk-rpm", "m");
        q.now_ms = T0_MS + 1000 + i; /* all in one window */
        struct sb_admission a;
        int rc = sb_policy_admit(r->p, &q, &a);
        if (rc == 0) {
            atomic_fetch_add(&r->admitted, 1);
            sb_policy_release(r->p, &a);
        } else if (rc == 429) {
            atomic_fetch_add(&r->refused, 1);
        }
    }
    return NULL;
}

static void test_concurrent_rpm(void **state)
{
    (void)state;
    struct rpm_run r = {0};
    r.p = sb_policy_new();
    char rec[64];
    snprintf(rec, sizeof(rec), "{\"rpm_limit\":%d,\"team_id\":\"rt\"}", RPM_L);
    assert_int_equal(put_key(r.p, "sk-rpm", rec), 0);
    assert_int_equal(put(r.p, SB_ENT_TEAM, "rt", "{\"rpm_limit\":1000}"), 0);
    pthread_t th[16];
    for (int i = 0; i < 16; i++)
        assert_int_equal(pthread_create(&th[i], NULL, rpm_worker, &r), 0);
    atomic_store(&r.go, 1);
    for (int i = 0; i < 16; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(atomic_load(&r.admitted), RPM_L);
    assert_int_equal(atomic_load(&r.refused), 160 - RPM_L);
    /* The refusals undid their team counts: the team saw exactly L. */
    assert_int_equal(put_key(r.p, "sk-rpm2", "{\"team_id\":\"rt\"}"), 0);
    struct sb_admit_req q = req_for("sk-rpm2", "m");
    q.now_ms = T0_MS + 2000;
    struct sb_admission a;
    assert_int_equal(sb_policy_admit(r.p, &q, &a), 0);
    assert_int_equal(a.remaining_requests, 1000 - RPM_L - 1);
    sb_policy_release(r.p, &a);
    sb_policy_free(r.p);
}

/* The refusal texts, from the builders the in-memory and the shared admission both use, and
 * as an in-memory admission writes them. */
static void test_refusal_messages(void **state)
{
    (void)state;
    struct sb_admission a;
    memset(&a, 0, sizeof a);

    assert_int_equal(sb_policy_refuse_rpm(&a, 'k', 7, 12), 429);
    assert_int_equal(a.status, 429);
    assert_string_equal(a.type, "rate_limit_error");
    assert_string_equal(a.code, "rate_limit_exceeded");
    assert_string_equal(a.message, "Rate limit reached for key. Limit of 7 requests per minute.");
    assert_int_equal(a.retry_after_s, 12);
    sb_policy_refuse_rpm(&a, 'm', 3, 0); /* the window ends now: a second, never 0 */
    assert_string_equal(a.message, "Rate limit reached for model. Limit of 3 requests per minute.");
    assert_int_equal(a.retry_after_s, 1);
    sb_policy_refuse_rpm(&a, 't', INT64_MAX, -5);
    assert_string_equal(a.message, "Rate limit reached for team. Limit of 9223372036854775807 "
                                   "requests per minute.");
    assert_int_equal(a.retry_after_s, 1);

    assert_int_equal(sb_policy_refuse_tpm(&a, 'u', 1000, 59), 429);
    assert_string_equal(a.type, "rate_limit_error");
    assert_string_equal(a.code, "rate_limit_exceeded");
    assert_string_equal(a.message, "Rate limit reached for user. Limit of 1000 tokens per minute.");
    assert_int_equal(a.retry_after_s, 59);

    a.retry_after_s = 40;
    assert_int_equal(sb_policy_refuse_parallel(&a, 'k', 2), 429);
    assert_string_equal(a.code, "rate_limit_exceeded");
    assert_string_equal(a.message, "Max parallel request limit reached for key. Hit limit of 2 "
                                   "parallel requests.");
    assert_int_equal(a.retry_after_s, 1);
    sb_policy_refuse_parallel(&a, 'c', 4);
    assert_string_equal(a.message, "Max parallel request limit reached for end user. Hit limit "
                                   "of 4 parallel requests.");

    a.retry_after_s = 33;
    assert_int_equal(sb_policy_refuse_budget(&a, 'k', "ignored", 2600000000, 2500000000), 400);
    assert_string_equal(a.type, "budget_exceeded");
    assert_string_equal(a.code, "budget_exceeded");
    assert_string_equal(a.message, "Budget has been exceeded! Current cost: 2.6, Max budget: 2.5");
    assert_int_equal(a.retry_after_s, 33); /* not a rate refusal: left alone */
    sb_policy_refuse_budget(&a, 't', "team-1", 12345678900, 10000000000);
    assert_string_equal(a.message, "Budget has been exceeded! Team=team-1 Current cost: "
                                   "12.3456789, Max budget: 10");
    sb_policy_refuse_budget(&a, 'u', "user-1", 0, 12000);
    assert_string_equal(
        a.message, "Budget has been exceeded! User=user-1 Current cost: 0, Max budget: 1.2e-05");
    sb_policy_refuse_budget(&a, 'c', "cust-9", 1234567, 1000000000);
    assert_string_equal(a.message, "Budget has been exceeded! End User=cust-9 Current cost: "
                                   "0.001234567, Max budget: 1");
    sb_policy_refuse_budget(&a, 'm', "gpt-4o", 250000000, 250000000);
    assert_string_equal(a.message, "Budget has been exceeded! Model=gpt-4o Current cost: 0.25, "
                                   "Max budget: 0.25");
    sb_policy_refuse_budget(&a, 't', NULL, 1, 1);
    assert_string_equal(a.message, "Budget has been exceeded! Team= Current cost: 1e-09, Max "
                                   "budget: 1e-09");
    /* A name longer than the message is cut, not overrun. */
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    sb_policy_refuse_budget(&a, 'm', big, 1, 2);
    assert_int_equal(strlen(a.message), sizeof a.message - 1);
    assert_non_null(strstr(a.message, "Model=xxx"));

    /* The in-memory admission says the same. */
    struct sb_policy *p = sb_policy_new();
    assert_int_equal(put_key(p, "sk-r", "{\"rpm_limit\":1}"), 0);
    assert_int_equal(put_key(p, "sk-t", "{\"tpm_limit\":5}"), 0);
    assert_int_equal(put_key(p, "sk-p", "{\"max_parallel_requests\":1}"), 0);
    assert_int_equal(put(p, SB_ENT_TEAM, "team-z", "{\"max_budget\":0.000001,\"spend\":0.000002}"),
                     0);
    assert_int_equal(put_key(p, "sk-b", "{\"team_id\":\"team-z\"}"), 0);
    struct sb_admission ok, no;
    struct sb_admit_req r = req_for("sk-r", "gpt-4o");
    r.now_ms = T0_MS + 30000;
    assert_int_equal(sb_policy_admit(p, &r, &ok), 0);
    assert_int_equal(sb_policy_admit(p, &r, &no), 429);
    assert_string_equal(no.message, "Rate limit reached for key. Limit of 1 requests per minute.");
    assert_int_equal(no.retry_after_s, 30);
    sb_policy_release(p, &ok);

    r = req_for("sk-t", "gpt-4o");
    assert_int_equal(sb_policy_admit(p, &r, &ok), 0);
    sb_policy_settle(p, &ok, 10, 6, r.now_ms);
    assert_int_equal(sb_policy_admit(p, &r, &no), 429);
    assert_string_equal(no.message, "Rate limit reached for key. Limit of 5 tokens per minute.");
    assert_int_equal(no.retry_after_s, 60);

    r = req_for("sk-p", "gpt-4o");
    assert_int_equal(sb_policy_admit(p, &r, &ok), 0);
    assert_int_equal(sb_policy_admit(p, &r, &no), 429);
    assert_string_equal(no.message, "Max parallel request limit reached for key. Hit limit of 1 "
                                    "parallel requests.");
    assert_int_equal(no.retry_after_s, 1);
    sb_policy_release(p, &ok);

    r = req_for("sk-b", "gpt-4o");
    assert_int_equal(sb_policy_admit(p, &r, &no), 400);
    assert_string_equal(no.type, "budget_exceeded");
    assert_string_equal(no.code, "budget_exceeded");
    assert_string_equal(no.message, "Budget has been exceeded! Team=team-z Current cost: 2e-06, "
                                    "Max budget: 1e-06");
    assert_int_equal(sb_policy_reserved_total(p), 0);
    sb_policy_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_and_duration),
        cmocka_unit_test(test_auth_refusals),
        cmocka_unit_test(test_key_id_compare),
        cmocka_unit_test(test_expiry),
        cmocka_unit_test(test_bad_records),
        cmocka_unit_test(test_admin),
        cmocka_unit_test(test_model_access),
        cmocka_unit_test(test_four_level_budget),
        cmocka_unit_test(test_no_price_and_default_output),
        cmocka_unit_test(test_settle_release_once),
        cmocka_unit_test(test_model_budget_and_limits),
        cmocka_unit_test(test_rate_limits_and_headers),
        cmocka_unit_test(test_parallel_limit),
        cmocka_unit_test(test_upsert_keeps_live_counters),
        cmocka_unit_test(test_remove_while_held),
        cmocka_unit_test(test_budget_reset),
        cmocka_unit_test(test_shared_spend),
        cmocka_unit_test(test_carry),
        cmocka_unit_test(test_concurrent_budget),
        cmocka_unit_test(test_concurrent_rpm),
        cmocka_unit_test(test_refusal_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

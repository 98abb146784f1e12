/* Conditional routing queries (src/router/rules.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "router/rules.h"

#include <stdio.h>
#include <string.h>

static json_t *ctx_of(const char *body, const char *meta)
{
    json_t *c = sb_rules_context(body, strlen(body), meta, meta ? strlen(meta) : 0);
    assert_non_null(c);
    return c;
}

static bool q(const char *query, const json_t *ctx)
{
    json_t *j = json_loads(query, 0, NULL);
    assert_non_null(j);
    char err[160];
    if (sb_rules_validate(j, err, sizeof err) != 0)
        fail_msg("invalid query %s: %s", query, err);
    bool m = sb_rules_match(j, ctx);
    json_decref(j);
    return m;
}

static void test_context(void **state)
{
    (void)state;
    json_t *c = ctx_of("{\"model\":\"m\",\"temperature\":0.2,\"metadata\":{\"plan\":\"free\"},"
                       "\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},"
                       "{\"role\":\"user\",\"content\":\"first\"},{\"role\":\"assistant\","
                       "\"content\":\"ok\"},{\"role\":\"user\",\"content\":[{\"type\":\"text\","
                       "\"text\":\"write python \"},{\"type\":\"text\",\"text\":\"code\"}]}]}",
                       "{\"team\":\"research\",\"plan\":\"paid\"}");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(c, "request"), "prompt_bytes")),
        8 + 5 + 2 + 17);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(c, "request"), "last_user_message")),
        "write python code");
    /* The header's metadata wins over the body's. */
    assert_true(q("{\"metadata.plan\":\"paid\"}", c));
    assert_true(q("{\"metadata.team\":{\"$in\":[\"research\",\"x\"]}}", c));
    assert_true(q("{\"params.temperature\":{\"$lt\":0.5,\"$gte\":0.2}}", c));
    assert_false(q("{\"params.temperature\":{\"$gt\":0.2}}", c));
    assert_true(q("{\"request.last_user_message\":{\"$regex\":\"(?i)PYTHON|rust\"}}", c));
    assert_false(q("{\"request.last_user_message\":{\"$regex\":\"^code\"}}", c));
    assert_true(q("{\"request.prompt_bytes\":{\"$gt\":10}}", c));
    assert_true(q("{\"$or\":[{\"metadata.plan\":\"free\"},{\"params.model\":\"m\"}]}", c));
    assert_false(q("{\"$and\":[{\"metadata.plan\":\"paid\"},{\"params.model\":\"x\"}]}", c));
    assert_true(q("{\"metadata.nope\":{\"$exists\":false},\"params.model\":{\"$ne\":\"z\"}}", c));
    assert_false(q("{\"metadata.plan\":{\"$nin\":[\"paid\"]}}", c));
    assert_true(q("{}", c)); /* an empty query always holds */
    json_decref(c);
    /* Not an object: no context. */
    assert_null(sb_rules_context("[1]", 3, NULL, 0));
    assert_null(sb_rules_context("{", 1, NULL, 0));
}

static void test_validate(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "[]",
        "{\"$nope\":1}",
        "{\"a\":{\"$gt\":\"x\"}}",
        "{\"a\":{\"$in\":1}}",
        "{\"a\":{\"$exists\":1}}",
        "{\"a\":{\"$regex\":\"(\"}}",
        "{\"a\":{\"$regex\":5}}",
        "{\"a\":{\"$eq\":1,\"$what\":2}}",
        "{\"$and\":{\"a\":1}}",
        "{\"$or\":[1]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *j = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        char err[160];
        if (sb_rules_validate(j, err, sizeof err) == 0)
            fail_msg("accepted: %s", bad[i]);
        json_decref(j);
    }
    /* Nesting is bounded. */
    char deep[512];
    size_t len = 0;
    for (int i = 0; i < 20; i++)
        len += (size_t)snprintf(deep + len, sizeof deep - len, "{\"$and\":[");
    len += (size_t)snprintf(deep + len, sizeof deep - len, "{}");
    for (int i = 0; i < 20; i++)
        len += (size_t)snprintf(deep + len, sizeof deep - len, "]}");
    json_t *j = json_loads(deep, 0, NULL);
    char err[160];
    assert_int_equal(sb_rules_validate(j, err, sizeof err), -1);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_context),
        cmocka_unit_test(test_validate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

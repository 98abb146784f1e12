/* shared limits: the Redis URL, the admission script's reply read as a verdict, the verdict
 * applied to an admission (refusals, a lowered output limit, x-ratelimit values), the levels a
 * policy hands to the shared counters, and no admission without a connection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "policy/policy.h"
#include "policy/shared.h"
#include "store/redis.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

/* 2026-11-21T10:00:00Z */
#define T0_S  INT64_C(1795255200)
#define T0_MS (T0_S * 1000)

/* ---------------------------------------------------------------- URL */

static void url_ok(const char *s, struct sb_redis_url *u)
{
    char err[200] = "";
    if (sb_redis_parse_url(s, u, err, sizeof err) != 0)
        fail_msg("%s: %s", s, err);
}

/* Parses a URL that must fail; the message is returned in err and never holds the password. */
static void url_bad(const char *s, char *err, size_t err_len, const char *password)
{
    struct sb_redis_url u;
    err[0] = '\0';
    assert_int_equal(sb_redis_parse_url(s, &u, err, err_len), -1);
    assert_true(err[0] != '\0');
    if (password != NULL)
        assert_null(strstr(err, password));
}

static void test_url_parts(void **state)
{
    (void)state;
    struct sb_redis_url u;

    url_ok("redis://localhost", &u);
    assert_string_equal(u.host, "localhost");
    assert_int_equal(u.port, 6379);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "");
    assert_int_equal(u.db, 0);

    url_ok("redis://10.0.0.5:6380", &u);
    assert_string_equal(u.host, "10.0.0.5");
    assert_int_equal(u.port, 6380);

    url_ok("redis://:s3cret@cache.internal", &u);
    assert_string_equal(u.user, "");
    assert_string_equal(u.password, "s3cret");
    assert_string_equal(u.host, "cache.internal");
    assert_int_equal(u.port, 6379);

    url_ok("redis://default:pw@cache:7000", &u);
    assert_string_equal(u.user, "default");
    assert_string_equal(u.password, "pw");
    assert_string_equal(u.host, "cache");
    assert_int_equal(u.port, 7000);

    /* The last '@' ends the credentials and the first ':' ends the user. */
    url_ok("redis://app:p@ss:w@rd@host:1/3", &u);
    assert_string_equal(u.user, "app");
    assert_string_equal(u.password, "p@ss:w@rd");
    assert_string_equal(u.host, "host");
    assert_int_equal(u.port, 1);
    assert_int_equal(u.db, 3);

    /* A '/' in the password is not the database's. */
    url_ok("redis://:a/b@host/2", &u);
    assert_string_equal(u.password, "a/b");
    assert_string_equal(u.host, "host");
    assert_int_equal(u.db, 2);

    url_ok("redis://host/15", &u);
    assert_string_equal(u.host, "host");
    assert_int_equal(u.db, 15);
    url_ok("redis://host:65535/0", &u);
    assert_int_equal(u.port, 65535);
    assert_int_equal(u.db, 0);
    url_ok("redis://host/", &u);
    assert_int_equal(u.db, 0);

    /* Longest parts that fit. */
    char s[700], h[256], pw[256];
    memset(h, 'h', sizeof h - 1);
    h[sizeof h - 1] = '\0';
    memset(pw, 'p', sizeof pw - 1);
    pw[sizeof pw - 1] = '\0';
    snprintf(s, sizeof s, "redis://:%s@%s", pw, h);
    url_ok(s, &u);
    assert_int_equal(strlen(u.host), 255);
    assert_int_equal(strlen(u.password), 255);
}

static void test_url_errors(void **state)
{
    (void)state;
    char err[200];

    url_bad("http://host", err, sizeof err, NULL);
    assert_null(strstr(err, "TLS"));
    url_bad("rediss://host:6380", err, sizeof err, NULL);
    assert_non_null(strstr(err, "TLS is not supported"));
    url_bad("", err, sizeof err, NULL);
    url_bad("REDIS://host", err, sizeof err, NULL);

    url_bad("redis://host:0", err, sizeof err, NULL);
    assert_non_null(strstr(err, "port"));
    url_bad("redis://host:65536", err, sizeof err, NULL);
    assert_non_null(strstr(err, "port"));
    url_bad("redis://host:63a9", err, sizeof err, NULL);
    url_bad("redis://host:", err, sizeof err, NULL);
    url_bad("redis://host:-1", err, sizeof err, NULL);
    url_bad("redis://host:99999999999", err, sizeof err, NULL);

    url_bad("redis://", err, sizeof err, NULL);
    assert_non_null(strstr(err, "host"));
    url_bad("redis://:6379", err, sizeof err, NULL);
    assert_non_null(strstr(err, "host"));
    url_bad("redis://:hunter2pw@", err, sizeof err, "hunter2pw");
    url_bad("redis://:hunter2pw@/1", err, sizeof err, "hunter2pw");

    url_bad("redis://host/x", err, sizeof err, NULL);
    assert_non_null(strstr(err, "database"));
    url_bad("redis://host/1000001", err, sizeof err, NULL);

    /* Credentials without ':' (a bare user is not a password). */
    url_bad("redis://hunter2pw@host", err, sizeof err, "hunter2pw");
    assert_non_null(strstr(err, "credentials"));

    /* Too long: host, user, password. */
    char s[800], big[300];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    snprintf(s, sizeof s, "redis://%s:6379", big);
    url_bad(s, err, sizeof err, NULL);
    assert_non_null(strstr(err, "too long"));
    char user[129];
    memset(user, 'u', sizeof user - 1);
    user[sizeof user - 1] = '\0';
    snprintf(s, sizeof s, "redis://%s:hunter2pw@host", user);
    url_bad(s, err, sizeof err, "hunter2pw");
    assert_non_null(strstr(err, "too long"));
    char pw[300];
    memset(pw, 'q', sizeof pw - 1);
    pw[sizeof pw - 1] = '\0';
    snprintf(s, sizeof s, "redis://:%s@host", pw);
    url_bad(s, err, sizeof err, pw);
    assert_non_null(strstr(err, "too long"));

    /* A password is never echoed, whatever fails after it. */
    url_bad("redis://u:Zq9-secret@host:0", err, sizeof err, "Zq9-secret");
    url_bad("redis://u:Zq9-secret@host/db", err, sizeof err, "Zq9-secret");
    url_bad("redis://u:Zq9-secret@:6379", err, sizeof err, "Zq9-secret");
    url_bad("rediss://u:Zq9-secret@host", err, sizeof err, "Zq9-secret");

    /* A small error buffer is cut, not overrun. */
    char tiny[8];
    url_bad("redis://host:0", tiny, sizeof tiny, NULL);
    assert_int_equal(strlen(tiny), sizeof tiny - 1);
}

/* ---------------------------------------------------------------- verdict */

/* A hand-built reply: an array of up to 16 elements, integers unless changed. */
struct tree {
    redisReply top;
    redisReply el[16];
    redisReply *ptr[16];
};

static const redisReply *ints(struct tree *t, size_t n, const long long *v)
{
    memset(t, 0, sizeof *t);
    t->top.type = REDIS_REPLY_ARRAY;
    t->top.elements = n;
    t->top.element = t->ptr;
    for (size_t i = 0; i < n; i++) {
        t->el[i].type = REDIS_REPLY_INTEGER;
        t->el[i].integer = v[i];
        t->ptr[i] = &t->el[i];
    }
    return &t->top;
}

#define INTS(t, ...)                                                                               \
    ints((t), sizeof((const long long[]){__VA_ARGS__}) / sizeof(long long),                        \
         (const long long[]){__VA_ARGS__})

static void test_verdict_admitted(void **state)
{
    (void)state;
    struct tree t;
    struct sb_shared_verdict v;
    for (size_t n = 1; n <= SB_SHARED_LEVELS; n++) {
        long long x[3 + 2 * SB_SHARED_LEVELS];
        x[0] = 0;
        x[1] = 4000 + (long long)n;
        x[2] = 1500;
        for (size_t i = 0; i < n; i++) {
            x[3 + i] = (long long)(10 * n + i);
            x[3 + n + i] = i % 2 ? -1 : (long long)(100 * n + i);
        }
        assert_int_equal(sb_shared_parse_verdict(ints(&t, 3 + 2 * n, x), n, &v), 0);
        assert_int_equal(v.status, 0);
        assert_int_equal(v.reserve, 4000 + (int64_t)n);
        assert_int_equal(v.reset_ms, 1500);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(v.rpm[i], (int64_t)(10 * n + i));
            assert_int_equal(v.tpm[i], i % 2 ? -1 : (int64_t)(100 * n + i));
        }
        /* The same reply does not fit one level more or less. */
        assert_int_equal(sb_shared_parse_verdict(ints(&t, 3 + 2 * n, x), n + 1, &v), -1);
        if (n > 1)
            assert_int_equal(sb_shared_parse_verdict(ints(&t, 3 + 2 * n, x), n - 1, &v), -1);
    }
    /* Zero reserved (no budget) and a negative reset (clock skew) read as 0. */
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 0, 0, -7, 1, -1), 1, &v), 0);
    assert_int_equal(v.reserve, 0);
    assert_int_equal(v.reset_ms, 0);
    assert_int_equal(v.rpm[0], 1);
    assert_int_equal(v.tpm[0], -1);
}

static void test_verdict_refused(void **state)
{
    (void)state;
    struct tree t;
    struct sb_shared_verdict v;
    for (int status = 1; status <= 4; status++) {
        for (int level = 0; level < SB_SHARED_LEVELS; level++) {
            assert_int_equal(
                sb_shared_parse_verdict(INTS(&t, status, level, 2500, 77 + status), 5, &v), 0);
            assert_int_equal(v.status, status);
            assert_int_equal(v.level, level);
            assert_int_equal(v.reset_ms, 2500);
            assert_int_equal(v.value, 77 + status);
        }
        /* The level must be one of the request's. */
        assert_int_equal(sb_shared_parse_verdict(INTS(&t, status, 2, 2500, 1), 2, &v), -1);
        assert_int_equal(sb_shared_parse_verdict(INTS(&t, status, 1, 2500, 1), 2, &v), 0);
    }
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 4, 0, -3, 9000000000LL), 1, &v), 0);
    assert_int_equal(v.reset_ms, 0);
    assert_int_equal(v.value, 9000000000LL);
}

static void test_verdict_malformed(void **state)
{
    (void)state;
    struct tree t;
    struct sb_shared_verdict v;

    assert_int_equal(sb_shared_parse_verdict(NULL, 1, &v), -1);

    /* Not an array: an error, a status, an integer, a string, nil. */
    static const int types[] = {REDIS_REPLY_ERROR, REDIS_REPLY_STATUS, REDIS_REPLY_INTEGER,
                                REDIS_REPLY_STRING, REDIS_REPLY_NIL};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        redisReply r = {.type = types[i], .str = (char *)"NOSCRIPT x", .len = 10, .integer = 0};
        assert_int_equal(sb_shared_parse_verdict(&r, 1, &v), -1);
    }

    /* Too few elements, empty. */
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 0, 1, 2), 0, &v), -1);
    const redisReply *r = ints(&t, 0, NULL);
    assert_int_equal(sb_shared_parse_verdict(r, 1, &v), -1);

    /* Wrong element types: a string, nil, a nested array, a NULL element. */
    for (size_t bad = 0; bad < 5; bad++) {
        for (int kind = 0; kind < 4; kind++) {
            INTS(&t, 0, 10, 1000, 1, 2);
            redisReply nested = {.type = REDIS_REPLY_ARRAY};
            if (kind == 0) {
                t.el[bad].type = REDIS_REPLY_STRING;
                t.el[bad].str = (char *)"1";
                t.el[bad].len = 1;
            } else if (kind == 1) {
                t.el[bad].type = REDIS_REPLY_NIL;
            } else if (kind == 2) {
                t.ptr[bad] = &nested;
            } else {
                t.ptr[bad] = NULL;
            }
            assert_int_equal(sb_shared_parse_verdict(&t.top, 1, &v), -1);
        }
    }
    /* ...and the intact reply is read. */
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 0, 10, 1000, 1, 2), 1, &v), 0);

    /* Element counts that do not match n. */
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 0, 10, 1000, 1), 1, &v), -1);
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 0, 10, 1000, 1, 2, 3), 1, &v), -1);
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 0, 10, 1000, 1, 2, 3, 4), 1, &v), -1);
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 1, 0, 1000, 1, 2), 1, &v), -1);
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 4, 0, 1000), 1, &v), -1);
    long long many[16] = {0};
    assert_int_equal(sb_shared_parse_verdict(ints(&t, 16, many), 5, &v), -1);
    assert_int_equal(sb_shared_parse_verdict(ints(&t, 13, many), 5, &v), 0);
    /* More levels than a request has. */
    assert_int_equal(sb_shared_parse_verdict(ints(&t, 15, many), 6, &v), -1);

    /* Level out of range. */
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 1, -1, 1000, 1), 1, &v), -1);
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 1, 1, 1000, 1), 1, &v), -1);
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 1, 0, 1000, 1), 0, &v), -1);
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 3, 1LL << 40, 1000, 1), 5, &v), -1);

    /* Status out of range. */
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 5, 0, 1000, 1), 1, &v), -1);
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, -1, 0, 1000, 1), 1, &v), -1);
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 1LL << 33, 0, 1000, 1), 1, &v), -1);

    /* Negative reserve. */
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 0, -1, 1000, 1, 2), 1, &v), -1);
    assert_int_equal(sb_shared_parse_verdict(INTS(&t, 0, INT64_MIN, 1000, 1, 2), 1, &v), -1);
}

/* The reply to a call of several admissions: one verdict per request, each read for its own
 * number of levels; any other shape is no answer at all. */
static void test_verdicts_batch(void **state)
{
    (void)state;
    struct tree t[3];
    redisReply top = {.type = REDIS_REPLY_ARRAY, .elements = 3};
    redisReply *els[3];
    top.element = els;
    els[0] = (redisReply *)INTS(&t[0], 0, 4000, 1500, 7, -1);          /* admitted, 1 level */
    els[1] = (redisReply *)INTS(&t[1], 1, 1, 2500, 5);                 /* RPM of level 1 */
    els[2] = (redisReply *)INTS(&t[2], 0, 10, 1000, 1, 2, 3, 4, 5, 6); /* wrong for 2 levels */
    size_t n[3] = {1, 2, 2};
    struct sb_shared_verdict v[3];
    int rc[3] = {7, 7, 7};
    assert_int_equal(sb_shared_parse_verdicts(&top, 3, n, v, rc), 0);
    assert_int_equal(rc[0], 0);
    assert_int_equal(v[0].status, 0);
    assert_int_equal(v[0].reserve, 4000);
    assert_int_equal(v[0].rpm[0], 7);
    assert_int_equal(v[0].tpm[0], -1);
    assert_int_equal(rc[1], 0);
    assert_int_equal(v[1].status, 1);
    assert_int_equal(v[1].level, 1);
    assert_int_equal(v[1].value, 5);
    assert_int_equal(rc[2], -1);
    /* Read for 3 levels, the third fits. */
    n[2] = 3;
    assert_int_equal(sb_shared_parse_verdicts(&top, 3, n, v, rc), 0);
    assert_int_equal(rc[2], 0);
    assert_int_equal(v[2].tpm[2], 6);

    /* A NULL element, a nested non-array. */
    redisReply nil = {.type = REDIS_REPLY_NIL};
    els[1] = &nil;
    assert_int_equal(sb_shared_parse_verdicts(&top, 3, n, v, rc), 0);
    assert_int_equal(rc[1], -1);
    els[1] = NULL;
    assert_int_equal(sb_shared_parse_verdicts(&top, 3, n, v, rc), 0);
    assert_int_equal(rc[1], -1);
    assert_int_equal(rc[0], 0);

    /* Not as many verdicts as requests, not an array, nothing. */
    rc[0] = rc[1] = rc[2] = 7;
    assert_int_equal(sb_shared_parse_verdicts(&top, 2, n, v, rc), -1);
    assert_int_equal(sb_shared_parse_verdicts(&top, 4, n, v, rc), -1);
    assert_int_equal(rc[0], 7);
    redisReply err = {.type = REDIS_REPLY_ERROR, .str = (char *)"ERR x", .len = 5};
    assert_int_equal(sb_shared_parse_verdicts(&err, 1, n, v, rc), -1);
    assert_int_equal(sb_shared_parse_verdicts(NULL, 1, n, v, rc), -1);
    /* A single verdict is not a batch of one. */
    assert_int_equal(sb_shared_parse_verdicts(INTS(&t[0], 0, 4000, 1500, 7, -1), 1, n, v, rc), -1);
    redisReply empty = {.type = REDIS_REPLY_ARRAY, .elements = 0};
    assert_int_equal(sb_shared_parse_verdicts(&empty, 0, n, v, rc), 0);
}

/* ---------------------------------------------------------------- apply */

static void level(struct sb_shared_level *l, char kind, const char *name, int64_t rpm, int64_t tpm,
                  int64_t par, int64_t max_budget)
{
    memset(l, 0, sizeof *l);
    l->kind = kind;
    snprintf(l->name, sizeof l->name, "%s", name);
    l->rpm_limit = rpm;
    l->tpm_limit = tpm;
    l->par_limit = par;
    l->max_budget = max_budget;
}

#define KEY_HASH "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"

/* key, team, user, end user, model: every kind, with limits and budgets. */
static void ticket5(struct sb_shared_ticket *t)
{
    memset(t, 0, sizeof *t);
    level(&t->lv[0], 'k', "k:" KEY_HASH, 10, 1000, 2, 2500000000);
    level(&t->lv[1], 't', "t:team-1", 100, 50000, 20, 10000000000);
    level(&t->lv[2], 'u', "u:user-1", 30, 3000, 3, 500000000);
    level(&t->lv[3], 'c', "c:cust-9", -1, -1, -1, 1000000000);
    level(&t->lv[4], 'm', "m:" KEY_HASH ":gpt-4o", 5, 700, -1, 250000000);
    t->n = 5;
}

static void admission(struct sb_admission *a)
{
    memset(a, 0, sizeof *a);
    a->max_output = 200;
    a->limit_requests = a->remaining_requests = -1;
    a->limit_tokens = a->remaining_tokens = -1;
    a->reset_ms = -1;
    a->reserved_nano = 5000; /* 100 input tokens at 10 + 200 output at 20 */
    a->in_cost_nano = 1000;
    a->price_out = 20.0;
}

static void refused(int status, int lv, int64_t reset_ms, int64_t value, struct sb_admission *a)
{
    struct sb_shared_ticket t;
    ticket5(&t);
    admission(a);
    struct sb_shared_verdict v = {
        .status = status, .level = lv, .reset_ms = reset_ms, .value = value};
    assert_int_equal(sb_shared_apply(&v, a, &t), SB_SHARED_REFUSED);
    assert_false(t.active);
    assert_int_equal(t.reserved, 0);
    assert_int_equal(a->max_output, 200);
    assert_false(a->lowered);
}

static void test_apply_refusals(void **state)
{
    (void)state;
    struct sb_admission a;

    refused(1, 0, 1500, 10, &a);
    assert_int_equal(a.status, 429);
    assert_string_equal(a.type, "rate_limit_error");
    assert_string_equal(a.code, "rate_limit_exceeded");
    assert_string_equal(a.message, "Rate limit reached for key. Limit of 10 requests per minute.");
    assert_int_equal(a.retry_after_s, 2);
    refused(1, 1, 2000, 100, &a);
    assert_string_equal(a.message,
                        "Rate limit reached for team. Limit of 100 requests per minute.");
    assert_int_equal(a.retry_after_s, 2);
    refused(1, 4, 1, 5, &a);
    assert_string_equal(a.message, "Rate limit reached for model. Limit of 5 requests per minute.");
    assert_int_equal(a.retry_after_s, 1);
    refused(1, 2, 0, 30, &a); /* the window ends now: retry in a second, never 0 */
    assert_string_equal(a.message, "Rate limit reached for user. Limit of 30 requests per minute.");
    assert_int_equal(a.retry_after_s, 1);
    refused(1, 0, INT64_MAX, 10, &a);
    assert_int_equal(a.retry_after_s, INT64_MAX / 1000 + 1);

    refused(2, 1, 59001, 50000, &a);
    assert_int_equal(a.status, 429);
    assert_string_equal(a.type, "rate_limit_error");
    assert_string_equal(a.code, "rate_limit_exceeded");
    assert_string_equal(a.message,
                        "Rate limit reached for team. Limit of 50000 tokens per minute.");
    assert_int_equal(a.retry_after_s, 60);
    refused(2, 0, 999, 1000, &a);
    assert_string_equal(a.message, "Rate limit reached for key. Limit of 1000 tokens per minute.");
    assert_int_equal(a.retry_after_s, 1);

    refused(3, 0, 45000, 2, &a);
    assert_int_equal(a.status, 429);
    assert_string_equal(a.code, "rate_limit_exceeded");
    assert_string_equal(a.message, "Max parallel request limit reached for key. Hit limit of 2 "
                                   "parallel requests.");
    assert_int_equal(a.retry_after_s, 1); /* a slot frees whenever a request ends */
    refused(3, 2, 45000, 3, &a);
    assert_string_equal(a.message, "Max parallel request limit reached for user. Hit limit of 3 "
                                   "parallel requests.");

    refused(4, 0, 1000, 2600000000, &a);
    assert_int_equal(a.status, 400);
    assert_string_equal(a.type, "budget_exceeded");
    assert_string_equal(a.code, "budget_exceeded");
    assert_string_equal(a.message, "Budget has been exceeded! Current cost: 2.6, Max budget: 2.5");
    /* Nine significant digits, as the in-memory refusal writes them. */
    refused(4, 1, 1000, 12345678900, &a);
    assert_int_equal(a.status, 400);
    assert_string_equal(a.message, "Budget has been exceeded! Team=team-1 Current cost: "
                                   "12.3456789, Max budget: 10");
    refused(4, 2, 1000, 500000000, &a);
    assert_string_equal(a.message,
                        "Budget has been exceeded! User=user-1 Current cost: 0.5, Max budget: 0.5");
    refused(4, 3, 1000, 1234567, &a);
    assert_string_equal(a.message, "Budget has been exceeded! End User=cust-9 Current cost: "
                                   "0.001234567, Max budget: 1");
    refused(4, 4, 1000, 250000000, &a);
    assert_string_equal(a.message, "Budget has been exceeded! Model=gpt-4o Current cost: 0.25, "
                                   "Max budget: 0.25");
}

static enum sb_shared_outcome admit_with(int64_t reserve, struct sb_admission *a,
                                         struct sb_shared_ticket *t)
{
    ticket5(t);
    struct sb_shared_verdict v = {.status = 0, .reserve = reserve, .reset_ms = 30000};
    for (int i = 0; i < SB_SHARED_LEVELS; i++)
        v.rpm[i] = v.tpm[i] = -1;
    return sb_shared_apply(&v, a, t);
}

static void test_apply_admitted_budget(void **state)
{
    (void)state;
    struct sb_admission a;
    struct sb_shared_ticket t;

    /* The whole reservation: nothing changes but the ticket. */
    admission(&a);
    assert_int_equal(admit_with(5000, &a, &t), SB_SHARED_ADMITTED);
    assert_true(t.active);
    assert_int_equal(t.reserved, 5000);
    assert_int_equal(t.n, 5);
    assert_int_equal(a.status, 0);
    assert_int_equal(a.max_output, 200);
    assert_false(a.lowered);

    /* Less than this instance reserved: (3000 - 1000) / 20 = 100 output tokens. */
    admission(&a);
    assert_int_equal(admit_with(3000, &a, &t), SB_SHARED_ADMITTED);
    assert_int_equal(t.reserved, 3000);
    assert_int_equal(a.max_output, 100);
    assert_true(a.lowered);
    /* Rounded down: 2019 / 20. */
    admission(&a);
    admit_with(3019, &a, &t);
    assert_int_equal(a.max_output, 100);
    admission(&a);
    admit_with(3020, &a, &t);
    assert_int_equal(a.max_output, 101);

    /* No client limit (-1): the shared budget sets one. */
    admission(&a);
    a.max_output = -1;
    admit_with(4000, &a, &t);
    assert_int_equal(a.max_output, 150);
    assert_true(a.lowered);

    /* Never raised: the client's own limit is already below what the budget pays for. */
    admission(&a);
    a.max_output = 50;
    admit_with(4000, &a, &t);
    assert_int_equal(a.max_output, 50);
    assert_false(a.lowered);
    admission(&a);
    a.max_output = 150;
    admit_with(4000, &a, &t);
    assert_int_equal(a.max_output, 150);
    assert_false(a.lowered);

    /* Not even the input is paid for: no output at all. */
    admission(&a);
    admit_with(500, &a, &t);
    assert_int_equal(a.max_output, 0);
    assert_true(a.lowered);
    assert_true(t.active);

    /* No output price: the limit stays. */
    admission(&a);
    a.price_out = 0;
    admit_with(10, &a, &t);
    assert_int_equal(a.max_output, 200);
    assert_false(a.lowered);

    /* A tiny price: the quotient passes 2^63 and is kept as the largest limit. */
    admission(&a);
    a.max_output = -1;
    a.reserved_nano = INT64_MAX / 4;
    a.in_cost_nano = 0;
    a.price_out = 1e-6;
    admit_with(INT64_C(9007199254740991), &a, &t);
    assert_int_equal(a.max_output, INT64_MAX);
    assert_true(a.lowered);
    admission(&a);
    a.max_output = 4096;
    a.reserved_nano = INT64_MAX / 4;
    a.in_cost_nano = 0;
    a.price_out = 1e-6;
    admit_with(INT64_C(9007199254740991), &a, &t);
    assert_int_equal(a.max_output, 4096);
    assert_false(a.lowered);

    /* No rate limit counted: the x-ratelimit values stay as they were. */
    assert_int_equal(a.limit_requests, -1);
    assert_int_equal(a.remaining_requests, -1);
    assert_int_equal(a.limit_tokens, -1);
    assert_int_equal(a.remaining_tokens, -1);
    assert_int_equal(a.reset_ms, -1);
}

static void test_apply_ratelimit_values(void **state)
{
    (void)state;
    struct sb_admission a;
    struct sb_shared_ticket t;
    struct sb_shared_verdict v = {.status = 0, .reserve = 5000, .reset_ms = 41234};

    /* The key's counts. */
    ticket5(&t);
    admission(&a);
    v.rpm[0] = 3, v.tpm[0] = 400;
    v.rpm[1] = 50, v.tpm[1] = 7000;
    v.rpm[2] = v.tpm[2] = 1;
    v.rpm[3] = v.tpm[3] = -1;
    v.rpm[4] = v.tpm[4] = 4;
    assert_int_equal(sb_shared_apply(&v, &a, &t), SB_SHARED_ADMITTED);
    assert_int_equal(a.limit_requests, 10);
    assert_int_equal(a.remaining_requests, 7);
    assert_int_equal(a.limit_tokens, 1000);
    assert_int_equal(a.remaining_tokens, 600);
    assert_int_equal(a.reset_ms, 41234);

    /* The key has no TPM limit: the team's tokens; counts past a limit leave 0. */
    ticket5(&t);
    t.lv[0].tpm_limit = -1;
    admission(&a);
    v.rpm[0] = 12;
    v.tpm[0] = -1;
    assert_int_equal(sb_shared_apply(&v, &a, &t), SB_SHARED_ADMITTED);
    assert_int_equal(a.limit_requests, 10);
    assert_int_equal(a.remaining_requests, 0);
    assert_int_equal(a.limit_tokens, 50000);
    assert_int_equal(a.remaining_tokens, 43000);

    /* A limit whose count Redis did not track (-1) is passed over. */
    ticket5(&t);
    admission(&a);
    v.rpm[0] = -1;
    v.tpm[0] = -1;
    assert_int_equal(sb_shared_apply(&v, &a, &t), SB_SHARED_ADMITTED);
    assert_int_equal(a.limit_requests, 100);
    assert_int_equal(a.remaining_requests, 50);
    assert_int_equal(a.limit_tokens, 50000);

    /* Only user, end user and model levels: no x-ratelimit values, no reset. */
    ticket5(&t);
    t.lv[0].rpm_limit = t.lv[0].tpm_limit = -1;
    t.lv[1].rpm_limit = t.lv[1].tpm_limit = -1;
    admission(&a);
    v.rpm[0] = v.rpm[1] = 1;
    v.tpm[0] = v.tpm[1] = 1;
    assert_int_equal(sb_shared_apply(&v, &a, &t), SB_SHARED_ADMITTED);
    assert_int_equal(a.limit_requests, -1);
    assert_int_equal(a.remaining_requests, -1);
    assert_int_equal(a.limit_tokens, -1);
    assert_int_equal(a.remaining_tokens, -1);
    assert_int_equal(a.reset_ms, -1);
    assert_true(t.active);
}

/* ---------------------------------------------------------------- levels of a policy */

static int put(struct sb_policy *p, enum sb_entity kind, const char *id, const char *text)
{
    json_error_t err;
    json_t *j = json_loads(text, 0, &err);
    if (j == NULL)
        fail_msg("bad test JSON: %s", err.text);
    int rc = sb_policy_upsert(p, kind, id, j, false);
    json_decref(j);
    return rc;
}

static struct sb_admit_req req_for(const char *key, const char *model, const char *end_user)
{
    struct sb_admit_req r = {
        .key = key,
        .key_len = strlen(key),
        .model = model,
        .end_user = end_user,
        .input_tokens = 100,
        .max_output = 200,
        .default_output = 300,
        .price_in = 10.0,
        .price_out = 20.0,
        .now_ms = T0_MS,
    };
    return r;
}

static const struct sb_shared_level *find_kind(const struct sb_shared_level *lv, size_t n, char k)
{
    for (size_t i = 0; i < n; i++)
        if (lv[i].kind == k)
            return &lv[i];
    return NULL;
}

static void test_policy_levels(void **state)
{
    (void)state;
    struct sb_policy *p = sb_policy_new();
    char h[65], name[400];
    sb_policy_hash_key("sk-shared", 9, h);
    char rec[512];
    snprintf(rec, sizeof rec,
             "{\"team_id\":\"team-1\",\"user_id\":\"user-1\",\"rpm_limit\":10,"
             "\"tpm_limit\":1000,\"max_parallel_requests\":3,\"max_budget\":2.5,"
             "\"spend\":0.5,\"budget_duration\":\"30d\",\"budget_reset_at\":%lld,"
             "\"model_rpm_limit\":{\"gpt-4o\":5}}",
             (long long)(T0_S + 3600));
    assert_int_equal(put(p, SB_ENT_KEY, h, rec), 0);
    assert_int_equal(put(p, SB_ENT_TEAM, "team-1", "{\"max_budget\":10,\"spend\":1.25}"), 0);
    assert_int_equal(put(p, SB_ENT_USER, "user-1", "{\"user_email\":\"a@b.c\"}"), 0);
    snprintf(rec, sizeof rec,
             "{\"max_budget\":1,\"spend\":0.001,\"budget_duration\":\"1d\","
             "\"budget_reset_at\":%lld}",
             (long long)(T0_S + 86400));
    assert_int_equal(put(p, SB_ENT_CUSTOMER, "cust-1", rec), 0);

    struct sb_admission a;
    struct sb_admit_req r = req_for("sk-shared", "gpt-4o", "cust-1");
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    assert_int_equal(a.reserved_nano, 5000);

    struct sb_shared_level lv[SB_SHARED_LEVELS];
    memset(lv, 0x5a, sizeof lv);
    size_t n = sb_policy_shared_levels(p, &a, lv);
    assert_int_equal(n, 4); /* key, team, end user, model: the user has no limit */
    assert_int_equal(lv[0].kind, 'k');
    assert_int_equal(lv[1].kind, 't');
    assert_int_equal(lv[2].kind, 'c');
    assert_int_equal(lv[3].kind, 'm');
    assert_null(find_kind(lv, n, 'u'));

    const struct sb_shared_level *l = &lv[0];
    snprintf(name, sizeof name, "k:%s", h);
    assert_string_equal(l->name, name);
    assert_int_equal(l->rpm_limit, 10);
    assert_int_equal(l->tpm_limit, 1000);
    assert_int_equal(l->par_limit, 3);
    assert_int_equal(l->max_budget, 2500000000);
    assert_int_equal(l->spend, 500000000);
    assert_true(l->period > 0);
    assert_int_equal(l->period, T0_S + 3600);

    l = &lv[1];
    assert_string_equal(l->name, "t:team-1");
    assert_int_equal(l->rpm_limit, -1);
    assert_int_equal(l->tpm_limit, -1);
    assert_int_equal(l->par_limit, -1);
    assert_int_equal(l->max_budget, 10000000000);
    assert_int_equal(l->spend, 1250000000);
    assert_int_equal(l->period, 0); /* no budget_duration */

    l = &lv[2];
    assert_string_equal(l->name, "c:cust-1");
    assert_int_equal(l->rpm_limit, -1);
    assert_int_equal(l->tpm_limit, -1);
    assert_int_equal(l->par_limit, -1);
    assert_int_equal(l->max_budget, 1000000000);
    assert_int_equal(l->spend, 1000000);
    assert_int_equal(l->period, T0_S + 86400);

    l = &lv[3];
    snprintf(name, sizeof name, "m:%s:gpt-4o", h);
    assert_string_equal(l->name, name);
    assert_int_equal(l->rpm_limit, 5);
    assert_int_equal(l->tpm_limit, -1);
    assert_int_equal(l->par_limit, -1);
    assert_int_equal(l->max_budget, -1);
    sb_policy_release(p, &a);

    /* Another model has no per-model limit; no end user: key and team only. */
    r = req_for("sk-shared", "o3", NULL);
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    n = sb_policy_shared_levels(p, &a, lv);
    assert_int_equal(n, 2);
    assert_int_equal(lv[0].kind, 'k');
    assert_int_equal(lv[1].kind, 't');
    sb_policy_release(p, &a);

    /* A key without limits, team or user: nothing to share. */
    sb_policy_hash_key("sk-plain", 8, h);
    assert_int_equal(put(p, SB_ENT_KEY, h, "{}"), 0);
    r = req_for("sk-plain", "gpt-4o", NULL);
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    assert_int_equal(sb_policy_shared_levels(p, &a, lv), 0);
    sb_policy_release(p, &a);

    /* A refused admission holds nothing. */
    r = req_for("sk-unknown", "gpt-4o", NULL);
    assert_int_equal(sb_policy_admit(p, &r, &a), 401);
    assert_int_equal(sb_policy_shared_levels(p, &a, lv), 0);

    assert_int_equal(sb_policy_reserved_total(p), 0);
    sb_policy_free(p);
}

/* ---------------------------------------------------------------- no connection */

static void on_shared(void *ud, enum sb_shared_outcome outcome)
{
    (void)outcome;
    int *calls = ud;
    (*calls)++;
}

static void on_wait_closed(uv_handle_t *h)
{
    *(bool *)h->data = true;
}

static void on_wait(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, on_wait_closed);
}

static void admit_unconnected(bool wait_refused)
{
    struct sb_policy *p = sb_policy_new();
    char h[65];
    sb_policy_hash_key("sk-lim", 6, h);
    assert_int_equal(put(p, SB_ENT_KEY, h, "{\"rpm_limit\":5,\"max_budget\":1}"), 0);
    struct sb_admission a;
    struct sb_admit_req r = req_for("sk-lim", "gpt-4o", NULL);
    assert_int_equal(sb_policy_admit(p, &r, &a), 0);
    struct sb_shared_level lv[SB_SHARED_LEVELS];
    assert_int_equal(sb_policy_shared_levels(p, &a, lv), 1); /* there is something to share */

    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    struct sb_redis_url url;
    char err[200];
    assert_int_equal(sb_redis_parse_url("redis://127.0.0.1:1", &url, err, sizeof err), 0);
    struct sb_shared *s = sb_shared_new(&loop, &url, 50);
    assert_non_null(s);
    uv_timer_t wait;
    bool waited = false;
    if (wait_refused) {
        /* Let the refused connect come back first: a reconnect is then scheduled. */
        uv_timer_init(&loop, &wait);
        wait.data = &waited;
        uv_timer_start(&wait, on_wait, 100, 0);
        while (!waited)
            uv_run(&loop, UV_RUN_ONCE);
    }
    assert_false(sb_shared_ready(s));

    struct sb_shared_ticket t;
    memset(&t, 0x5a, sizeof t);
    int calls = 0;
    struct sb_shared_call *call = (void *)&calls; /* must be cleared */
    assert_false(sb_shared_admit(s, p, &a, &t, on_shared, &calls, &call));
    assert_null(call);
    assert_false(t.active);
    assert_int_equal(t.n, 0);
    assert_int_equal(a.status, 0); /* the in-memory admission stands */
    assert_int_equal(a.max_output, 200);
    /* Nothing held: finishing is a no-op. */
    sb_shared_finish(s, &t, 100, 10);
    sb_shared_cancel(NULL);

    sb_shared_close(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(calls, 0);

    sb_policy_release(p, &a);
    assert_int_equal(sb_policy_reserved_total(p), 0);
    sb_policy_free(p);
}

static void test_admit_not_connected(void **state)
{
    (void)state;
    admit_unconnected(false);
    admit_unconnected(true);
    assert_false(sb_shared_ready(NULL));
    sb_shared_close(NULL);
}

/* ---------------------------------------------------------------- a real Redis */

/* A redis-server of our own on a free port (skipped when Debian's redis-server is not
 * installed), a loop, a policy with two keys: one with a budget, RPM, TPM and a parallel
 * limit; one in a team that has a budget (two levels per request). */
struct live {
    pid_t pid;
    int port;
    char dir[64];
    redisContext *rc; /* synchronous: the test's own view of Redis */
    uv_loop_t loop;
    uv_timer_t tick;
    struct sb_shared *s;
    struct sb_policy *p;
    char hash1[65], hash2[65];
};

static bool have_redis_server(void)
{
    const char *path = getenv("PATH");
    char buf[512];
    for (const char *at = path ? path : "/usr/bin"; at && *at;) {
        const char *end = strchr(at, ':');
        size_t n = end ? (size_t)(end - at) : strlen(at);
        snprintf(buf, sizeof buf, "%.*s/redis-server", (int)n, at);
        if (access(buf, X_OK) == 0)
            return true;
        at = end ? end + 1 : NULL;
    }
    return false;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

static redisReply *cmd(struct live *L, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(L->rc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    return r;
}

static long long cmd_int(struct live *L, const char *fmt, const char *a1, const char *a2)
{
    redisReply *r = a2 ? cmd(L, fmt, a1, a2) : cmd(L, fmt, a1);
    long long v = -1;
    if (r->type == REDIS_REPLY_INTEGER)
        v = r->integer;
    else if (r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    else if (r->type == REDIS_REPLY_NIL)
        v = 0;
    freeReplyObject(r);
    return v;
}

static void on_tick(uv_timer_t *t)
{
    (void)t;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Runs the loop until *flag, or fails after `ms`. */
static void run_until(struct live *L, const bool *flag, int ms, const char *what)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (!*flag) {
        if (now_ms() > end)
            fail_msg("timed out waiting for %s", what);
        uv_run(&L->loop, UV_RUN_ONCE);
    }
}

static void run_for(struct live *L, int ms)
{
    uint64_t end = now_ms() + (uint64_t)ms;
    while (now_ms() < end)
        uv_run(&L->loop, UV_RUN_ONCE);
}

static void connect_shared(struct live *L, int timeout_ms)
{
    struct sb_redis_url url;
    char err[200], u[64];
    snprintf(u, sizeof u, "redis://127.0.0.1:%d", L->port);
    assert_int_equal(sb_redis_parse_url(u, &url, err, sizeof err), 0);
    L->s = sb_shared_new(&L->loop, &url, timeout_ms);
    assert_non_null(L->s);
    uint64_t end = now_ms() + 5000;
    while (!sb_shared_ready(L->s)) {
        if (now_ms() > end)
            fail_msg("no connection to the test's redis-server");
        uv_run(&L->loop, UV_RUN_ONCE);
    }
}

static int live_setup(void **state)
{
    if (!have_redis_server()) {
        *state = NULL;
        return 0;
    }
    struct live *L = calloc(1, sizeof *L);
    assert_non_null(L);
    L->port = free_port();
    snprintf(L->dir, sizeof L->dir, "/tmp/sb-test-redis-XXXXXX");
    assert_non_null(mkdtemp(L->dir));
    char port[16];
    snprintf(port, sizeof port, "%d", L->port);
    L->pid = fork();
    assert_true(L->pid >= 0);
    if (L->pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) {
            dup2(null, 1);
            dup2(null, 2);
        }
        execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", L->dir, (char *)NULL);
        _exit(127);
    }
    uint64_t end = now_ms() + 10000;
    for (;;) {
        struct timeval tv = {1, 0};
        L->rc = redisConnectWithTimeout("127.0.0.1", L->port, tv);
        if (L->rc && !L->rc->err) {
            redisReply *r = redisCommand(L->rc, "PING");
            bool up = r && r->type == REDIS_REPLY_STATUS;
            freeReplyObject(r);
            if (up)
                break;
        }
        if (L->rc)
            redisFree(L->rc);
        L->rc = NULL;
        if (now_ms() > end)
            fail_msg("redis-server did not start");
        usleep(20000);
    }
    assert_int_equal(uv_loop_init(&L->loop), 0);
    /* Wakes the loop often, so that run_until sees its deadline. */
    uv_timer_init(&L->loop, &L->tick);
    uv_timer_start(&L->tick, on_tick, 5, 5);

    L->p = sb_policy_new();
    sb_policy_hash_key("sk-batch-1", 10, L->hash1);
    sb_policy_hash_key("sk-batch-2", 10, L->hash2);
    assert_int_equal(put(L->p, SB_ENT_KEY, L->hash1,
                         "{\"rpm_limit\":100000,\"tpm_limit\":100000000,"
                         "\"max_parallel_requests\":10000,\"max_budget\":1000,\"spend\":0.25}"),
                     0);
    assert_int_equal(put(L->p, SB_ENT_TEAM, "team-b", "{\"max_budget\":1000,\"spend\":0.5}"), 0);
    assert_int_equal(
        put(L->p, SB_ENT_KEY, L->hash2, "{\"team_id\":\"team-b\",\"max_parallel_requests\":10000}"),
        0);
    *state = L;
    return 0;
}

static void on_closed_tick(uv_handle_t *h)
{
    (void)h;
}

static int live_teardown(void **state)
{
    struct live *L = *state;
    if (!L)
        return 0;
    if (L->s)
        sb_shared_close(L->s);
    if (!uv_is_closing((uv_handle_t *)&L->tick))
        uv_close((uv_handle_t *)&L->tick, on_closed_tick);
    uv_run(&L->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&L->loop), 0);
    if (L->rc)
        redisFree(L->rc);
    kill(L->pid, SIGCONT);
    kill(L->pid, SIGKILL);
    waitpid(L->pid, NULL, 0);
    char path[128];
    snprintf(path, sizeof path, "%s/dump.rdb", L->dir);
    unlink(path);
    rmdir(L->dir);
    assert_int_equal(sb_policy_reserved_total(L->p), 0);
    sb_policy_free(L->p);
    free(L);
    return 0;
}

/* One request as the proxy makes it: admitted in memory, then in Redis. */
struct req {
    struct live *L;
    struct sb_admission a;
    struct sb_shared_ticket t;
    struct sb_shared_call *call;
    enum sb_shared_outcome outcome;
    bool answered;
};

static int answered;

static void on_req(void *ud, enum sb_shared_outcome outcome)
{
    struct req *r = ud;
    r->outcome = outcome;
    r->answered = true;
    answered++;
}

static void admit_req(struct live *L, struct req *r, bool second_key)
{
    memset(r, 0, sizeof *r);
    r->L = L;
    struct sb_admit_req q = req_for(second_key ? "sk-batch-2" : "sk-batch-1", "gpt-4o", NULL);
    q.now_ms = (int64_t)time(NULL) * 1000;
    assert_int_equal(sb_policy_admit(L->p, &q, &r->a), 0);
    assert_true(sb_shared_admit(L->s, L->p, &r->a, &r->t, on_req, r, &r->call));
    assert_non_null(r->call);
}

static void admit_all(struct live *L, struct req *rs, size_t n)
{
    answered = 0;
    for (size_t i = 0; i < n; i++)
        admit_req(L, &rs[i], i % 3 == 2);
    assert_int_equal(answered, 0); /* every answer comes from the loop, full batches' too */
    bool done = false;
    uint64_t end = now_ms() + 5000;
    while (!done) {
        done = answered == (int)n;
        if (now_ms() > end)
            fail_msg("%d of %zu admissions answered", answered, n);
        if (!done)
            uv_run(&L->loop, UV_RUN_ONCE);
    }
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(rs[i].outcome, SB_SHARED_ADMITTED);
        assert_true(rs[i].t.active);
        assert_int_equal(rs[i].t.reserved, 5000);
    }
}

static long long hash_sum(struct live *L, const char *key)
{
    redisReply *r = cmd(L, "HVALS %s", key);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    long long sum = 0;
    for (size_t i = 0; i < r->elements; i++)
        sum += strtoll(r->element[i]->str, NULL, 10);
    freeReplyObject(r);
    return sum;
}

/* The tokens of every minute window of a level. */
static long long window_sum(struct live *L, const char *level)
{
    redisReply *r = cmd(L, "KEYS sb:%s:t:*", level);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    long long sum = 0;
    for (size_t i = 0; i < r->elements; i++)
        sum += cmd_int(L, "GET %s", r->element[i]->str, NULL);
    freeReplyObject(r);
    return sum;
}

static void settled_until(struct live *L, uint64_t settled)
{
    uint64_t end = now_ms() + 5000;
    struct sb_shared_stats st;
    for (;;) {
        sb_shared_get_stats(L->s, &st);
        if (st.settled + st.dropped >= settled)
            break;
        if (now_ms() > end)
            fail_msg("%llu of %llu settled", (unsigned long long)st.settled,
                     (unsigned long long)settled);
        uv_run(&L->loop, UV_RUN_ONCE);
    }
}

#define N_BURST 150

/* Requests that end in one loop pass are settled in ceil(n / 64) script calls, each exactly
 * once: the shared spend grows by the billed sum, the TPM windows by the tokens, and no
 * reservation or in-flight slot is left, at one level or two. */
static void test_batch_settles_exactly(void **state)
{
    struct live *L = *state;
    if (!L)
        skip();
    connect_shared(L, 1000);
    static struct req rs[N_BURST];
    admit_all(L, rs, N_BURST);
    struct sb_shared_stats st;
    sb_shared_get_stats(L->s, &st);
    assert_int_equal(st.admit_calls, (N_BURST + 31) / 32);
    assert_int_equal(st.admissions_sent, N_BURST);
    assert_int_equal(st.settle_calls, 0);

    char k1[80], k2[80];
    snprintf(k1, sizeof k1, "sb:k:%s", L->hash1);
    snprintf(k2, sizeof k2, "sb:k:%s", L->hash2);
    size_t n1 = 0, n2 = 0;
    for (size_t i = 0; i < N_BURST; i++)
        *(i % 3 == 2 ? &n2 : &n1) += 1;
    char key[128];
    snprintf(key, sizeof key, "%s:p", k1);
    assert_int_equal(hash_sum(L, key), (long long)n1);
    snprintf(key, sizeof key, "%s:v", k1);
    assert_int_equal(hash_sum(L, key), 5000LL * (long long)n1);
    assert_int_equal(hash_sum(L, "sb:t:team-b:v"), 5000LL * (long long)n2);

    /* Every request ends in this one pass; the tickets are wiped right after, as a freed
     * request's would be. */
    long long billed1 = 0, billed2 = 0, tokens1 = 0;
    for (size_t i = 0; i < N_BURST; i++) {
        int64_t cost = 1000 + (int64_t)i, tokens = 10 + (int64_t)(i % 7);
        sb_shared_finish(L->s, &rs[i].t, cost, tokens);
        assert_false(rs[i].t.active);
        memset(&rs[i].t, 0x5a, sizeof rs[i].t);
        rs[i].t.active = false;
        if (i % 3 == 2) {
            billed2 += cost;
        } else {
            billed1 += cost;
            tokens1 += tokens;
        }
        sb_policy_settle(L->p, &rs[i].a, cost, tokens, (int64_t)time(NULL) * 1000);
    }
    /* Two full batches went at once; the rest waits for the end of the pass. */
    sb_shared_get_stats(L->s, &st);
    assert_int_equal(st.settle_calls, 2);
    assert_int_equal(st.settlements_sent, 128);
    settled_until(L, N_BURST);
    sb_shared_get_stats(L->s, &st);
    assert_int_equal(st.settle_calls, 3);
    assert_int_equal(st.settlements_sent, N_BURST);
    assert_int_equal(st.settled, N_BURST);
    assert_int_equal(st.dropped, 0);

    snprintf(key, sizeof key, "%s:b", k1);
    assert_int_equal(cmd_int(L, "HGET %s %s", key, "spend"), 250000000LL + billed1);
    assert_int_equal(cmd_int(L, "HGET %s %s", "sb:t:team-b:b", "spend"), 500000000LL + billed2);
    snprintf(key, sizeof key, "k:%s", L->hash1);
    assert_int_equal(window_sum(L, key), tokens1);
    snprintf(key, sizeof key, "%s:p", k1);
    assert_int_equal(cmd_int(L, "HLEN %s", key, NULL), 0);
    snprintf(key, sizeof key, "%s:v", k1);
    assert_int_equal(cmd_int(L, "HLEN %s", key, NULL), 0);
    snprintf(key, sizeof key, "%s:p", k2);
    assert_int_equal(cmd_int(L, "HLEN %s", key, NULL), 0);
    assert_int_equal(cmd_int(L, "HLEN %s", "sb:t:team-b:v", NULL), 0);

    /* A second pass reuses the structs of the first and settles as exactly. */
    admit_all(L, rs, 5);
    for (size_t i = 0; i < 5; i++) {
        sb_shared_finish(L->s, &rs[i].t, 7, 1);
        sb_policy_release(L->p, &rs[i].a);
    }
    settled_until(L, N_BURST + 5);
    sb_shared_get_stats(L->s, &st);
    assert_int_equal(st.settle_calls, 4);
    assert_int_equal(st.settled, N_BURST + 5);
    snprintf(key, sizeof key, "%s:b", k1);
    assert_int_equal(cmd_int(L, "HGET %s %s", key, "spend"), 250000000LL + billed1 + 4 * 7);
    snprintf(key, sizeof key, "%s:p", k1);
    assert_int_equal(cmd_int(L, "HLEN %s", key, NULL), 0);
}

static long long eval_calls(struct live *L)
{
    redisReply *r = cmd(L, "INFO commandstats");
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    const char *at = strstr(r->str, "cmdstat_eval:calls=");
    long long n = at ? strtoll(at + 19, NULL, 10) : 0;
    freeReplyObject(r);
    return n;
}

/* The first settlements on a connection carry the script's text; then its hash. After SCRIPT
 * FLUSH both scripts are sent again as text, and a batch is still applied once. */
static void test_batch_noscript(void **state)
{
    struct live *L = *state;
    if (!L)
        skip();
    connect_shared(L, 1000);
    struct req rs[3];
    char key[128];
    snprintf(key, sizeof key, "sb:k:%s:b", L->hash1);
    struct sb_shared_stats st;
    for (int round = 0; round < 3; round++) {
        if (round == 2)
            freeReplyObject(cmd(L, "SCRIPT FLUSH"));
        long long evals = eval_calls(L);
        admit_all(L, rs, 3);
        long long before = cmd_int(L, "HGET %s %s", key, "spend");
        long long team = cmd_int(L, "HGET %s %s", "sb:t:team-b:b", "spend");
        for (size_t i = 0; i < 3; i++) {
            sb_shared_finish(L->s, &rs[i].t, 100, 1);
            sb_policy_settle(L->p, &rs[i].a, 100, 1, (int64_t)time(NULL) * 1000);
        }
        settled_until(L, 3 * (uint64_t)(round + 1));
        sb_shared_get_stats(L->s, &st);
        assert_int_equal(st.settle_calls, round + 1);
        assert_int_equal(st.settled, 3 * (round + 1));
        assert_int_equal(cmd_int(L, "HGET %s %s", key, "spend"), before + 200);
        assert_int_equal(cmd_int(L, "HGET %s %s", "sb:t:team-b:b", "spend"), team + 100);
        /* A fresh server, then after the flush: the admissions' call is resent as text after
         * its NOSCRIPT, and the settlement goes as text (the first on this connection) or is
         * resent so (after the flush). In between: every call by hash. */
        assert_int_equal(eval_calls(L) - evals, round == 1 ? 0 : 2);
    }
    snprintf(key, sizeof key, "sb:k:%s:p", L->hash1);
    assert_int_equal(cmd_int(L, "HLEN %s", key, NULL), 0);
    snprintf(key, sizeof key, "sb:k:%s:v", L->hash1);
    assert_int_equal(cmd_int(L, "HLEN %s", key, NULL), 0);
    assert_int_equal(st.dropped, 0);
}

/* A request cancelled before its answer: the callback never comes, and what Redis admitted
 * for it is settled (released) with the next batch. */
static void test_batch_cancelled(void **state)
{
    struct live *L = *state;
    if (!L)
        skip();
    connect_shared(L, 1000);
    struct req rs[3];
    answered = 0;
    for (size_t i = 0; i < 3; i++)
        admit_req(L, &rs[i], false);
    sb_shared_cancel(rs[0].call);
    sb_shared_cancel(rs[2].call);
    run_until(L, &rs[1].answered, 5000, "the answer");
    settled_until(L, 2);
    assert_false(rs[0].answered);
    assert_false(rs[2].answered);
    assert_int_equal(answered, 1);
    char key[128];
    snprintf(key, sizeof key, "sb:k:%s:p", L->hash1);
    assert_int_equal(hash_sum(L, key), 1); /* only the one still running */
    sb_shared_finish(L->s, &rs[1].t, 0, 0);
    settled_until(L, 3);
    assert_int_equal(cmd_int(L, "HLEN %s", key, NULL), 0);
    for (size_t i = 0; i < 3; i++)
        sb_policy_release(L->p, &rs[i].a);
}

/* Redis paused: the batch's call times out and its settlements are dropped, as one failed
 * settlement always was; without a connection they are dropped at once. */
static void test_batch_redis_down(void **state)
{
    struct live *L = *state;
    if (!L)
        skip();
    connect_shared(L, 150);
    struct req rs[3];
    admit_all(L, rs, 3);
    kill(L->pid, SIGSTOP);
    sb_shared_finish(L->s, &rs[0].t, 100, 1);
    sb_shared_finish(L->s, &rs[1].t, 100, 1);
    settled_until(L, 2);
    struct sb_shared_stats st;
    sb_shared_get_stats(L->s, &st);
    assert_int_equal(st.settle_calls, 1);
    assert_int_equal(st.settled, 0);
    assert_int_equal(st.dropped, 2);
    assert_false(sb_shared_ready(L->s)); /* the timeout dropped the connection */
    sb_shared_finish(L->s, &rs[2].t, 100, 1);
    assert_false(rs[2].t.active);
    sb_shared_get_stats(L->s, &st);
    assert_int_equal(st.dropped, 3);
    assert_int_equal(st.settle_calls, 1);
    kill(L->pid, SIGCONT);
    for (size_t i = 0; i < 3; i++)
        sb_policy_release(L->p, &rs[i].a);
    /* Back: what the lost connection held is not this connection's to release. */
    run_for(L, 50);
}

/* Two instances (two policies, each admitting in memory up to its own RPM 40) send 60
 * requests of one key in one pass: Redis admits exactly 40, in order (x-ratelimit values
 * 39..0, each once), and refuses the other 20 with the in-memory admission's text. */
static void test_batch_admissions_exact(void **state)
{
    struct live *L = *state;
    if (!L)
        skip();
    connect_shared(L, 1000);
    struct sb_policy *p2 = sb_policy_new();
    char h[65];
    sb_policy_hash_key("sk-batch-3", 10, h);
    assert_int_equal(put(L->p, SB_ENT_KEY, h, "{\"rpm_limit\":40}"), 0);
    assert_int_equal(put(p2, SB_ENT_KEY, h, "{\"rpm_limit\":40}"), 0);
    static struct req rs[60];
    answered = 0;
    for (size_t i = 0; i < 60; i++) {
        struct req *r = &rs[i];
        memset(r, 0, sizeof *r);
        struct sb_policy *p = i % 2 ? p2 : L->p;
        struct sb_admit_req q = req_for("sk-batch-3", "gpt-4o", NULL);
        q.now_ms = (int64_t)time(NULL) * 1000;
        assert_int_equal(sb_policy_admit(p, &q, &r->a), 0);
        assert_true(sb_shared_admit(L->s, p, &r->a, &r->t, on_req, r, &r->call));
    }
    assert_int_equal(answered, 0);
    bool all = false;
    uint64_t end = now_ms() + 5000;
    while (!all) {
        all = answered == 60;
        if (now_ms() > end)
            fail_msg("%d answers", answered);
        if (!all)
            uv_run(&L->loop, UV_RUN_ONCE);
    }
    struct sb_shared_stats st;
    sb_shared_get_stats(L->s, &st);
    assert_int_equal(st.admit_calls, 2);
    bool seen[40] = {false};
    int ok = 0, refused = 0;
    for (size_t i = 0; i < 60; i++) {
        struct req *r = &rs[i];
        if (r->outcome == SB_SHARED_ADMITTED) {
            ok++;
            assert_true(r->t.active);
            assert_int_equal(r->a.limit_requests, 40);
            assert_true(r->a.remaining_requests >= 0 && r->a.remaining_requests < 40);
            assert_false(seen[r->a.remaining_requests]);
            seen[r->a.remaining_requests] = true;
            /* In order: the first 40 of the pass are the ones admitted. */
            assert_true(i < 40);
            sb_shared_finish(L->s, &r->t, 0, 0);
        } else {
            refused++;
            assert_int_equal(r->outcome, SB_SHARED_REFUSED);
            assert_false(r->t.active);
            assert_int_equal(r->a.status, 429);
            assert_string_equal(r->a.message,
                                "Rate limit reached for key. Limit of 40 requests per minute.");
            assert_true(r->a.retry_after_s >= 1 && r->a.retry_after_s <= 60);
        }
        sb_policy_release(i % 2 ? p2 : L->p, &r->a);
    }
    assert_int_equal(ok, 40);
    assert_int_equal(refused, 20);
    settled_until(L, 40);
    assert_int_equal(sb_policy_reserved_total(p2), 0);
    sb_policy_free(p2);
}

/* 30 requests of one key from two instances in one pass, each instance allowing them all in
 * memory: `rec` for the key in both policies. Fills rs and returns how many Redis admitted. */
static int burst_two(struct live *L, struct sb_policy *p2, const char *key, const char *rec,
                     struct req *rs, size_t n)
{
    char h[65];
    sb_policy_hash_key(key, strlen(key), h);
    assert_int_equal(put(L->p, SB_ENT_KEY, h, rec), 0);
    assert_int_equal(put(p2, SB_ENT_KEY, h, rec), 0);
    answered = 0;
    for (size_t i = 0; i < n; i++) {
        memset(&rs[i], 0, sizeof rs[i]);
        struct sb_admit_req q = req_for(key, "gpt-4o", NULL);
        q.now_ms = (int64_t)time(NULL) * 1000;
        assert_int_equal(sb_policy_admit(i % 2 ? p2 : L->p, &q, &rs[i].a), 0);
        assert_true(sb_shared_admit(L->s, i % 2 ? p2 : L->p, &rs[i].a, &rs[i].t, on_req, &rs[i],
                                    &rs[i].call));
    }
    uint64_t end = now_ms() + 5000;
    while (answered < (int)n) {
        if (now_ms() > end)
            fail_msg("%d answers", answered);
        uv_run(&L->loop, UV_RUN_ONCE);
    }
    int ok = 0;
    for (size_t i = 0; i < n; i++)
        ok += rs[i].outcome == SB_SHARED_ADMITTED;
    return ok;
}

/* Within one call, parallel slots and budget reservations held by the requests before count
 * for the next exactly as across calls; the holds written at the end of the call are what the
 * admitted requests hold, and one settlement call gives them all back. */
static void test_batch_admissions_holds(void **state)
{
    struct live *L = *state;
    if (!L)
        skip();
    connect_shared(L, 1000);
    struct sb_policy *p2 = sb_policy_new();
    static struct req rs[30];
    const char *id = NULL;
    char h[65], key[128];

    assert_int_equal(burst_two(L, p2, "sk-batch-par", "{\"max_parallel_requests\":25}", rs, 30),
                     25);
    for (size_t i = 25; i < 30; i++) {
        assert_int_equal(rs[i].outcome, SB_SHARED_REFUSED);
        assert_string_equal(rs[i].a.message, "Max parallel request limit reached for key. Hit "
                                             "limit of 25 parallel requests.");
    }
    id = rs[0].t.conn;
    sb_policy_hash_key("sk-batch-par", 12, h);
    snprintf(key, sizeof key, "sb:k:%s:p", h);
    assert_int_equal(cmd_int(L, "HGET %s %s", key, id), 25);
    for (size_t i = 0; i < 30; i++) {
        sb_shared_finish(L->s, &rs[i].t, 0, 0);
        sb_policy_release(i % 2 ? p2 : L->p, &rs[i].a);
    }
    settled_until(L, 25);
    assert_int_equal(cmd_int(L, "HLEN %s", key, NULL), 0);

    /* $0.0001 pays for 20 reservations of 5000 nano: the 21st finds nothing left. */
    assert_int_equal(
        burst_two(L, p2, "sk-batch-budget", "{\"max_budget\":0.0001,\"spend\":0}", rs, 30), 20);
    for (size_t i = 0; i < 30; i++) {
        if (i < 20) {
            assert_int_equal(rs[i].outcome, SB_SHARED_ADMITTED);
            assert_int_equal(rs[i].t.reserved, 5000);
            continue;
        }
        assert_int_equal(rs[i].outcome, SB_SHARED_REFUSED);
        assert_int_equal(rs[i].a.status, 400);
        assert_string_equal(rs[i].a.message,
                            "Budget has been exceeded! Current cost: 0, Max budget: 0.0001");
    }
    sb_policy_hash_key("sk-batch-budget", 15, h);
    snprintf(key, sizeof key, "sb:k:%s:v", h);
    assert_int_equal(cmd_int(L, "HGET %s %s", key, id), 100000);
    for (size_t i = 0; i < 30; i++) {
        sb_shared_finish(L->s, &rs[i].t, 1000 + (int64_t)i, 0);
        sb_policy_release(i % 2 ? p2 : L->p, &rs[i].a);
    }
    settled_until(L, 45);
    assert_int_equal(cmd_int(L, "HLEN %s", key, NULL), 0);
    snprintf(key, sizeof key, "sb:k:%s:b", h);
    assert_int_equal(cmd_int(L, "HGET %s %s", key, "spend"), 20 * 1000 + 190);

    /* Sums past 2^53 are written as integers, not in exponent form. */
    assert_int_equal(burst_two(L, p2, "sk-batch-big", "{\"max_budget\":1e9,\"spend\":0}", rs, 4),
                     4);
    for (size_t i = 0; i < 4; i++) {
        sb_shared_finish(L->s, &rs[i].t, INT64_C(9007199254740991), 0);
        sb_policy_release(i % 2 ? p2 : L->p, &rs[i].a);
    }
    settled_until(L, 49);
    struct sb_shared_stats st;
    sb_shared_get_stats(L->s, &st);
    assert_int_equal(st.settled, 49);
    sb_policy_hash_key("sk-batch-big", 12, h);
    snprintf(key, sizeof key, "sb:k:%s:b", h);
    /* 4 * (2^53 - 1): exact as a double (a power of two times an exact one). */
    assert_int_equal(cmd_int(L, "HGET %s %s", key, "spend"),
                     INT64_C(4) * INT64_C(9007199254740991));
    sb_policy_free(p2);
}

/* Admissions queued while Redis is paused: their call times out and each request goes on
 * with the in-memory admission alone, answered from the loop. */
static void test_batch_admissions_timeout(void **state)
{
    struct live *L = *state;
    if (!L)
        skip();
    connect_shared(L, 150);
    kill(L->pid, SIGSTOP);
    struct req rs[3];
    answered = 0;
    for (size_t i = 0; i < 3; i++)
        admit_req(L, &rs[i], i == 2);
    sb_shared_cancel(rs[1].call);
    assert_int_equal(answered, 0);
    uint64_t end = now_ms() + 3000;
    while (answered < 2) {
        if (now_ms() > end)
            fail_msg("%d answers", answered);
        uv_run(&L->loop, UV_RUN_ONCE);
    }
    assert_int_equal(rs[0].outcome, SB_SHARED_LOCAL);
    assert_int_equal(rs[2].outcome, SB_SHARED_LOCAL);
    assert_false(rs[1].answered);
    assert_false(rs[0].t.active);
    assert_int_equal(rs[0].a.status, 0);
    assert_false(sb_shared_ready(L->s));
    /* Not connected: nothing to wait for. */
    struct req late;
    memset(&late, 0, sizeof late);
    struct sb_admit_req q = req_for("sk-batch-1", "gpt-4o", NULL);
    assert_int_equal(sb_policy_admit(L->p, &q, &late.a), 0);
    assert_false(sb_shared_admit(L->s, L->p, &late.a, &late.t, on_req, &late, &late.call));
    sb_policy_release(L->p, &late.a);
    kill(L->pid, SIGCONT);
    for (size_t i = 0; i < 3; i++)
        sb_policy_release(L->p, &rs[i].a);
}

/* Closed with settlements still queued: they are sent before the connection closes; the
 * struct, its spare structs and its handle are freed once the answers are in. */
static void test_batch_close_flushes(void **state)
{
    struct live *L = *state;
    if (!L)
        skip();
    connect_shared(L, 1000);
    struct req rs[70];
    admit_all(L, rs, 70);
    char key[128];
    snprintf(key, sizeof key, "sb:k:%s:b", L->hash1);
    long long before = cmd_int(L, "HGET %s %s", key, "spend");
    long long billed = 0;
    for (size_t i = 0; i < 70; i++) {
        sb_shared_finish(L->s, &rs[i].t, 3, 1);
        if (i % 3 != 2)
            billed += 3;
        sb_policy_settle(L->p, &rs[i].a, 3, 1, (int64_t)time(NULL) * 1000);
    }
    struct sb_shared_stats st;
    sb_shared_get_stats(L->s, &st);
    assert_int_equal(st.settle_calls, 1); /* 64 sent, 6 waiting for the end of the pass */
    sb_shared_close(L->s);
    L->s = NULL;
    uv_close((uv_handle_t *)&L->tick, on_closed_tick);
    uv_run(&L->loop, UV_RUN_DEFAULT);
    assert_int_equal(cmd_int(L, "HGET %s %s", key, "spend"), before + billed);
    snprintf(key, sizeof key, "sb:k:%s:p", L->hash1);
    assert_int_equal(cmd_int(L, "HLEN %s", key, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_parts),
        cmocka_unit_test(test_url_errors),
        cmocka_unit_test(test_verdict_admitted),
        cmocka_unit_test(test_verdict_refused),
        cmocka_unit_test(test_verdict_malformed),
        cmocka_unit_test(test_verdicts_batch),
        cmocka_unit_test(test_apply_refusals),
        cmocka_unit_test(test_apply_admitted_budget),
        cmocka_unit_test(test_apply_ratelimit_values),
        cmocka_unit_test(test_policy_levels),
        cmocka_unit_test(test_admit_not_connected),
        cmocka_unit_test_setup_teardown(test_batch_settles_exactly, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_batch_noscript, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_batch_cancelled, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_batch_redis_down, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_batch_close_flushes, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_batch_admissions_exact, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_batch_admissions_holds, live_setup, live_teardown),
        cmocka_unit_test_setup_teardown(test_batch_admissions_timeout, live_setup, live_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

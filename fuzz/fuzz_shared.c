/* Shared limits: the Redis URL from the configuration, and the admission script's reply as
 * Redis sends it. The first byte picks the mode: even, the rest is a URL; odd, the rest is RESP
 * fed to hiredis' reader, and every complete reply is read as a verdict for 0..5 levels and as
 * the reply to a call of several admissions (one verdict per element) and, when it is one,
 * applied to admissions and tickets of every kind of level. Nothing may crash,
 * leak or overflow; an applied verdict keeps the admission's output limit from rising and its
 * x-ratelimit values in range. */
#include "policy/shared.h"
#include "store/redis.h"

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_url(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return;
    memcpy(s, data, size);
    s[size] = '\0';
    struct sb_redis_url u;
    char err[160];
    err[0] = '\0';
    if (sb_redis_parse_url(s, &u, err, sizeof err) == 0) {
        if (u.host[0] == '\0' || u.port < 1 || u.port > 65535 || u.db < 0)
            abort();
        if (strlen(u.host) >= sizeof u.host || strlen(u.user) >= sizeof u.user ||
            strlen(u.password) >= sizeof u.password)
            abort();
    } else if (err[0] == '\0') {
        abort();
    }
    free(s);
}

static const char kinds[] = {'k', 't', 'u', 'c', 'm'};

/* n levels of one kind, with limits that differ per level (none, zero, small, huge). */
static void make_ticket(struct sb_shared_ticket *t, char kind, size_t n, unsigned salt)
{
    static const int64_t limits[] = {-1, 0, 1, 60, 1000, INT64_MAX};
    memset(t, 0, sizeof *t);
    t->n = n;
    for (size_t i = 0; i < n; i++) {
        struct sb_shared_level *l = &t->lv[i];
        l->kind = kind;
        if (kind == 'm')
            snprintf(l->name, sizeof l->name, "m:%02zx:model-%zu", i, i);
        else if (i == 1)
            snprintf(l->name, sizeof l->name, "%c:", kind); /* an empty id */
        else
            snprintf(l->name, sizeof l->name, "%c:id-%zu", kind, i);
        size_t k = (salt + i) % (sizeof limits / sizeof limits[0]);
        l->rpm_limit = limits[k];
        l->tpm_limit = limits[(k + 1) % (sizeof limits / sizeof limits[0])];
        l->par_limit = limits[(k + 2) % (sizeof limits / sizeof limits[0])];
        l->max_budget = limits[(k + 3) % (sizeof limits / sizeof limits[0])];
    }
}

static void check_applied(const struct sb_shared_verdict *v, const struct sb_admission *before,
                          const struct sb_admission *a, const struct sb_shared_ticket *t,
                          enum sb_shared_outcome o)
{
    if (v->status != 0) {
        if (o != SB_SHARED_REFUSED || (a->status != 429 && a->status != 400) ||
            a->message[0] == '\0' || memchr(a->message, '\0', sizeof a->message) == NULL)
            abort();
        if (a->status == 429 && a->retry_after_s < 1)
            abort();
        if (t->active)
            abort();
        return;
    }
    if (o != SB_SHARED_ADMITTED || !t->active || t->reserved != v->reserve || a->status != 0)
        abort();
    if (a->max_output < -1 || (before->max_output >= 0 && a->max_output > before->max_output))
        abort();
    if (a->remaining_requests < -1 || a->remaining_tokens < -1)
        abort();
    if (a->limit_requests >= 0 && a->remaining_requests > a->limit_requests)
        abort();
    if (a->limit_tokens >= 0 && a->remaining_tokens > a->limit_tokens)
        abort();
}

/* Admissions as the in-memory policy leaves them: zeroed, and ones whose reservation the
 * shared budget may lower (prices from tiny to large, output limits none to huge). */
static void make_admission(struct sb_admission *a, unsigned variant)
{
    static const double prices[] = {0, 1e-6, 0.25, 20.0, 7.5e4, 9.99e8};
    static const int64_t outs[] = {-1, 0, 16, 4096, INT64_MAX};
    static const int64_t reserved[] = {0, 1, 5000, INT64_C(9007199254740991), INT64_MAX / 4};
    memset(a, 0, sizeof *a);
    if (variant == 0)
        return;
    a->limit_requests = a->remaining_requests = -1;
    a->limit_tokens = a->remaining_tokens = -1;
    a->reset_ms = -1;
    a->price_out = prices[variant % (sizeof prices / sizeof prices[0])];
    a->max_output = outs[(variant / 3) % (sizeof outs / sizeof outs[0])];
    a->reserved_nano = reserved[(variant / 5) % (sizeof reserved / sizeof reserved[0])];
    a->in_cost_nano = variant % 2 ? a->reserved_nano / 3 : 0;
}

static void apply_all(const redisReply *reply, unsigned salt)
{
    for (size_t n = 0; n <= SB_SHARED_LEVELS; n++) {
        struct sb_shared_verdict v;
        if (sb_shared_parse_verdict(reply, n, &v) != 0)
            continue;
        if (v.status < 0 || v.status > 4 || (v.status != 0 && (size_t)v.level >= n) ||
            v.reserve < 0 || v.reset_ms < 0)
            abort();
        for (size_t k = 0; k < sizeof kinds; k++) {
            for (unsigned variant = 0; variant < 4; variant++) {
                struct sb_shared_ticket t;
                struct sb_admission a, before;
                make_ticket(&t, kinds[k], n, salt + variant);
                make_admission(&a, variant == 0 ? 0 : salt * 7 + variant);
                before = a;
                enum sb_shared_outcome o = sb_shared_apply(&v, &a, &t);
                check_applied(&v, &before, &a, &t, o);
            }
        }
    }
}

/* The reply to a call of several admissions: read as a batch of as many requests as it has
 * elements (each with 0..5 levels, from the salt), and as one request more, which must fail. */
static void apply_batch(const redisReply *reply, unsigned salt)
{
    enum { MAX = 64 };
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements > MAX)
        return;
    size_t count = reply->elements;
    size_t n[MAX + 1];
    struct sb_shared_verdict v[MAX + 1];
    int rc[MAX + 1];
    for (size_t i = 0; i <= count; i++) {
        n[i] = (salt + i) % (SB_SHARED_LEVELS + 1);
        rc[i] = 7;
    }
    if (sb_shared_parse_verdicts(reply, count + 1, n, v, rc) != -1 || rc[0] != 7)
        abort();
    if (sb_shared_parse_verdicts(reply, count, n, v, rc) != 0)
        abort();
    for (size_t i = 0; i < count; i++) {
        if (rc[i] != 0) {
            if (rc[i] != -1)
                abort();
            continue;
        }
        if (v[i].status < 0 || v[i].status > 4 ||
            (v[i].status != 0 && (size_t)v[i].level >= n[i]) || v[i].reserve < 0 ||
            v[i].reset_ms < 0)
            abort();
        struct sb_shared_ticket t;
        struct sb_admission a, before;
        make_ticket(&t, kinds[(salt + i) % sizeof kinds], n[i], salt + (unsigned)i);
        make_admission(&a, salt * 7 + (unsigned)i);
        before = a;
        enum sb_shared_outcome o = sb_shared_apply(&v[i], &a, &t);
        check_applied(&v[i], &before, &a, &t, o);
    }
}

/* hiredis 0.14's reader allocates an array's element vector as soon as it reads the header
 * ("*427742775" asks for gigabytes) and has no limit to set. Redis is trusted and the
 * script's replies are short, so inputs that declare a large array anywhere are skipped. */
static bool declares_big_array(const uint8_t *data, size_t size)
{
    for (size_t i = 0; i < size; i++) {
        if (data[i] != '*')
            continue;
        size_t j = i + 1, digits = 0;
        uint64_t v = 0;
        while (j < size && data[j] >= '0' && data[j] <= '9' && digits < 12) {
            v = v * 10 + (uint64_t)(data[j] - '0');
            j++;
            digits++;
        }
        if (digits >= 12 || v > 1024)
            return true;
    }
    return false;
}

static void fuzz_reply(const uint8_t *data, size_t size, unsigned salt)
{
    if (declares_big_array(data, size))
        return;
    /* The parser itself must also refuse what is not an answer. */
    struct sb_shared_verdict v;
    if (sb_shared_parse_verdict(NULL, 1, &v) != -1)
        abort();
    redisReader *r = redisReaderCreate();
    if (r == NULL)
        return;
    if (redisReaderFeed(r, (const char *)data, size) != REDIS_OK) {
        redisReaderFree(r);
        return;
    }
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(r, &reply) != REDIS_OK || reply == NULL)
            break;
        apply_all(reply, salt);
        apply_batch(reply, salt);
        freeReplyObject(reply);
    }
    redisReaderFree(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    if ((data[0] & 1) == 0)
        fuzz_url(data + 1, size - 1);
    else
        fuzz_reply(data + 1, size - 1, data[0] >> 1);
    return 0;
}

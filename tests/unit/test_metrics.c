#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "obs/metrics.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef SB_VERSION
#define SB_VERSION "dev"
#endif

/* ---- helpers: read the exposition text back ---- */

static char *render(struct sb_metrics *m)
{
    struct sb_buf b;
    sb_buf_init(&b, 1u << 24);
    assert_int_equal(sb_metrics_render(m, &b), 0);
    assert_non_null(b.data);
    return sb_buf_take(&b, NULL);
}

/* The value of the sample line that starts with exactly `series` (name plus label set), or
 * -1 when there is no such line. Fails the test if the line is there but malformed. */
static double value_of(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; *line;) {
        const char *eol = strchr(line, '\n');
        assert_non_null(eol); /* every line is terminated */
        if ((size_t)(eol - line) > n && strncmp(line, series, n) == 0 && line[n] == ' ') {
            char *end = NULL;
            double v = strtod(line + n + 1, &end);
            assert_ptr_equal(end, eol);
            return v;
        }
        line = eol + 1;
    }
    return -1;
}

static double valuef(const char *text, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static double valuef(const char *text, const char *fmt, ...)
{
    char series[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(series, sizeof series, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof series);
    return value_of(text, series);
}

/* Lines that start with `prefix`. */
static int count_lines(const char *text, const char *prefix)
{
    int count = 0;
    size_t n = strlen(prefix);
    for (const char *line = text; *line;) {
        const char *eol = strchr(line, '\n');
        assert_non_null(eol);
        if (strncmp(line, prefix, n) == 0)
            count++;
        line = eol + 1;
    }
    return count;
}

static const char *const les[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                  "0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5",
                                  "5",      "10",    "30",     "60",    "120",  "+Inf"};
#define N_LE (sizeof les / sizeof les[0])

/* Checks every cumulative bucket of one histogram series: `first_le[i]` is the index of the
 * first bucket that includes observation i. */
static void check_hist(const char *text, const char *name, const char *labels, const int *first_le,
                       size_t nobs, const char *sum)
{
    for (size_t b = 0; b < N_LE; b++) {
        double want = 0;
        for (size_t i = 0; i < nobs; i++)
            want += (size_t)first_le[i] <= b;
        double got = valuef(text, "%s_bucket{%s,le=\"%s\"}", name, labels, les[b]);
        if (got != want)
            fail_msg("%s{%s} le=%s: got %g want %g", name, labels, les[b], got, want);
    }
    assert_true(valuef(text, "%s_count{%s}", name, labels) == (double)nobs);
    char line[512];
    snprintf(line, sizeof line, "%s_sum{%s} %s\n", name, labels, sum);
    assert_non_null(strstr(text, line));
}

static struct sb_metrics_sample sample(enum sb_route route, int model, int status, double total)
{
    return (struct sb_metrics_sample){
        .route = route,
        .model = model,
        .status = status,
        .total_s = total,
        .upstream_s = -1,
        .ttft_s = -1,
        .tokens_in = -1,
        .tokens_out = -1,
    };
}

static char *const models[] = {"gpt-4o", "we\"ird\\name", "claude"};

/* ---- tests ---- */

static void test_route_names(void **state)
{
    (void)state;
    assert_string_equal(sb_route_name(SB_ROUTE_CHAT), "chat_completions");
    assert_string_equal(sb_route_name(SB_ROUTE_COMPLETIONS), "completions");
    assert_string_equal(sb_route_name(SB_ROUTE_EMBEDDINGS), "embeddings");
    assert_string_equal(sb_route_name(SB_ROUTE_MODELS), "models");
    assert_string_equal(sb_route_name(SB_ROUTE_HEALTH), "health");
    assert_string_equal(sb_route_name(SB_ROUTE_METRICS), "metrics");
    assert_string_equal(sb_route_name(SB_ROUTE_OTHER), "other");
    assert_string_equal(sb_route_name(SB_ROUTE_COUNT), "other");
    assert_string_equal(sb_route_name((enum sb_route) - 1), "other");
}

static void test_new_rejects(void **state)
{
    (void)state;
    assert_null(sb_metrics_new(0, models, 3));
    assert_null(sb_metrics_new(-1, models, 3));
    assert_null(sb_metrics_new(1, NULL, 2));
    sb_metrics_free(NULL);
    struct sb_metrics *m = sb_metrics_new(1, NULL, 0);
    assert_non_null(m);
    sb_metrics_free(m);
}

static void test_empty(void **state)
{
    (void)state;
    struct sb_metrics *m = sb_metrics_new(2, models, 3);
    assert_non_null(m);
    char *t = render(m);
    /* Only the two series that always appear. */
    assert_int_equal(count_lines(t, "switchboard_"), 2);
    assert_true(value_of(t, "switchboard_build_info{version=\"" SB_VERSION "\"}") == 1);
    assert_true(value_of(t, "switchboard_requests_in_flight") == 0);
    /* Every family is still described once. */
    assert_int_equal(count_lines(t, "# TYPE "), 8);
    assert_int_equal(count_lines(t, "# HELP "), 8);
    assert_int_equal(count_lines(t, "# TYPE switchboard_request_duration_seconds histogram"), 1);
    free(t);
    sb_metrics_free(m);
}

static void test_two_shards(void **state)
{
    (void)state;
    struct sb_metrics *m = sb_metrics_new(2, models, 3);
    assert_non_null(m);

    /* shard 0: upstream call, no stream, tokens both ways. Exact binary fractions keep the
     * overhead (0.25) and the bucket edges free of rounding questions. */
    struct sb_metrics_sample s = sample(SB_ROUTE_CHAT, 0, 200, 0.75);
    s.upstream_s = 0.5;
    s.tokens_in = 10;
    s.tokens_out = 20;
    sb_metrics_observe(m, 0, &s);
    /* shard 1: same series, a stream; exactly on a bucket bound (le is inclusive). */
    s = sample(SB_ROUTE_CHAT, 0, 200, 0.001);
    s.ttft_s = 0.0008;
    s.tokens_out = 5;
    sb_metrics_observe(m, 1, &s);
    /* unknown model, no upstream, 404 */
    s = sample(SB_ROUTE_EMBEDDINGS, -1, 404, 2);
    sb_metrics_observe(m, 1, &s);
    /* a model index past the configured ones counts as unknown too */
    s = sample(SB_ROUTE_EMBEDDINGS, 3, 404, 3);
    sb_metrics_observe(m, 0, &s);
    /* statuses outside 100..599 are clamped to 0; upstream slower than total clamps to 0 */
    s = sample(SB_ROUTE_COMPLETIONS, 1, 1000, 0.1);
    s.upstream_s = 0.2;
    s.tokens_in = 0;
    sb_metrics_observe(m, 0, &s);
    s = sample(SB_ROUTE_COMPLETIONS, 1, 42, 200);
    sb_metrics_observe(m, 1, &s);
    /* out-of-range route counts as other; out-of-range worker and NULL sample are ignored */
    s = sample((enum sb_route)99, 2, 503, 0.01);
    sb_metrics_observe(m, 1, &s);
    sb_metrics_observe(m, 2, &s);
    sb_metrics_observe(m, -1, &s);
    sb_metrics_observe(m, 0, NULL);
    sb_metrics_observe(NULL, 0, &s);

    sb_metrics_upstream_error(m, 0, 0, SB_UPERR_TIMEOUT);
    sb_metrics_upstream_error(m, 0, 0, SB_UPERR_TIMEOUT);
    sb_metrics_upstream_error(m, 1, 0, SB_UPERR_TIMEOUT);
    sb_metrics_upstream_error(m, 1, 0, SB_UPERR_STATUS_5XX);
    sb_metrics_upstream_error(m, 1, -1, SB_UPERR_CONNECT);
    sb_metrics_upstream_error(m, 0, 99, SB_UPERR_PROTOCOL);
    sb_metrics_upstream_error(m, 0, 2, SB_UPERR_STATUS_4XX);
    sb_metrics_upstream_error(m, 0, 2, SB_UPERR_COUNT);   /* ignored */
    sb_metrics_upstream_error(m, 5, 2, SB_UPERR_CONNECT); /* ignored */

    sb_metrics_inflight(m, 0, 1);
    sb_metrics_inflight(m, 1, 1);
    sb_metrics_inflight(m, 0, -1);
    sb_metrics_inflight(m, 7, 1); /* ignored */

    char *t = render(m);

    /* requests_total: summed across shards, exact label sets, nothing else. */
    const char *rq = "switchboard_requests_total";
    assert_true(valuef(t, "%s{route=\"chat_completions\",model=\"gpt-4o\",status=\"200\"}", rq) ==
                2);
    assert_true(valuef(t, "%s{route=\"embeddings\",model=\"\",status=\"404\"}", rq) == 2);
    assert_true(
        valuef(t, "%s{route=\"completions\",model=\"we\\\"ird\\\\name\",status=\"0\"}", rq) == 2);
    assert_true(valuef(t, "%s{route=\"other\",model=\"claude\",status=\"503\"}", rq) == 1);
    assert_int_equal(count_lines(t, "switchboard_requests_total{"), 4);

    /* total latency */
    const char *dur = "switchboard_request_duration_seconds";
    check_hist(t, dur, "route=\"chat_completions\",model=\"gpt-4o\"", (int[]){10, 1}, 2, "0.751");
    check_hist(t, dur, "route=\"embeddings\",model=\"\"", (int[]){11, 12}, 2, "5");
    check_hist(t, dur, "route=\"completions\",model=\"we\\\"ird\\\\name\"", (int[]){7, 17}, 2,
               "200.1");
    check_hist(t, dur, "route=\"other\",model=\"claude\"", (int[]){4}, 1, "0.01");
    assert_int_equal(count_lines(t, "switchboard_request_duration_seconds_count{"), 4);
    assert_int_equal(count_lines(t, "switchboard_request_duration_seconds_bucket{"), 4 * 18);

    /* ttft: only the one stream */
    const char *tt = "switchboard_time_to_first_byte_seconds";
    check_hist(t, tt, "route=\"chat_completions\",model=\"gpt-4o\"", (int[]){1}, 1, "0.0008");
    assert_int_equal(count_lines(t, "switchboard_time_to_first_byte_seconds_count{"), 1);

    /* overhead: only where there was an upstream call */
    const char *ov = "switchboard_gateway_overhead_seconds";
    check_hist(t, ov, "route=\"chat_completions\"", (int[]){8}, 1, "0.25");
    check_hist(t, ov, "route=\"completions\"", (int[]){0}, 1, "0");
    assert_int_equal(count_lines(t, "switchboard_gateway_overhead_seconds_count{"), 2);

    assert_true(value_of(t, "switchboard_requests_in_flight") == 1);

    const char *ue = "switchboard_upstream_errors_total";
    assert_true(valuef(t, "%s{model=\"gpt-4o\",kind=\"timeout\"}", ue) == 3);
    assert_true(valuef(t, "%s{model=\"gpt-4o\",kind=\"status_5xx\"}", ue) == 1);
    assert_true(valuef(t, "%s{model=\"\",kind=\"connect\"}", ue) == 1);
    assert_true(valuef(t, "%s{model=\"\",kind=\"protocol\"}", ue) == 1);
    assert_true(valuef(t, "%s{model=\"claude\",kind=\"status_4xx\"}", ue) == 1);
    assert_int_equal(count_lines(t, "switchboard_upstream_errors_total{"), 5);

    const char *tk = "switchboard_tokens_total";
    assert_true(valuef(t, "%s{model=\"gpt-4o\",direction=\"input\"}", tk) == 10);
    assert_true(valuef(t, "%s{model=\"gpt-4o\",direction=\"output\"}", tk) == 25);
    assert_int_equal(count_lines(t, "switchboard_tokens_total{"), 2);

    assert_true(value_of(t, "switchboard_build_info{version=\"" SB_VERSION "\"}") == 1);

    /* HELP and TYPE once per family, TYPE before its samples. */
    assert_int_equal(count_lines(t, "# TYPE switchboard_requests_total counter"), 1);
    assert_int_equal(count_lines(t, "# HELP switchboard_requests_total "), 1);
    assert_int_equal(count_lines(t, "# TYPE switchboard_gateway_overhead_seconds histogram"), 1);
    assert_int_equal(count_lines(t, "# TYPE switchboard_requests_in_flight gauge"), 1);
    assert_int_equal(count_lines(t, "# TYPE switchboard_upstream_errors_total counter"), 1);
    assert_int_equal(count_lines(t, "# TYPE switchboard_tokens_total counter"), 1);
    assert_int_equal(count_lines(t, "# TYPE switchboard_build_info gauge"), 1);
    assert_true(strstr(t, "# TYPE switchboard_tokens_total") <
                strstr(t, "switchboard_tokens_total{"));

    /* Nothing is rendered with a zero value, apart from the two gauges. */
    for (const char *line = t; *line; line = strchr(line, '\n') + 1) {
        if (*line == '#')
            continue;
        const char *sp = strchr(line, ' ');
        assert_non_null(sp);
        if (strncmp(sp, " 0\n", 3) == 0 && strncmp(line, dur, strlen(dur)) != 0 &&
            strncmp(line, tt, strlen(tt)) != 0 && strncmp(line, ov, strlen(ov)) != 0)
            fail_msg("zero series: %.*s", (int)(strchr(line, '\n') - line), line);
    }
    free(t);
    sb_metrics_free(m);
}

#define CHAT_GPT_STATUS                                                                            \
    "switchboard_requests_total{route=\"chat_completions\",model=\"gpt-4o\",status=\"%d\"}"

static void test_status_slots_full(void **state)
{
    (void)state;
    struct sb_metrics *m = sb_metrics_new(2, models, 1);
    assert_non_null(m);
    /* 70 distinct codes on shard 0: the first 64 get their own series, the rest count as 0. */
    for (int code = 100; code < 170; code++) {
        struct sb_metrics_sample s = sample(SB_ROUTE_CHAT, 0, code, 0.01);
        sb_metrics_observe(m, 0, &s);
        sb_metrics_observe(m, 0, &s);
    }
    /* shard 1 has its own table: 165 and 599 are distinct codes there. */
    struct sb_metrics_sample s = sample(SB_ROUTE_CHAT, 0, 165, 0.01);
    sb_metrics_observe(m, 1, &s);
    s.status = 599;
    sb_metrics_observe(m, 1, &s);
    s.status = 100;
    sb_metrics_observe(m, 1, &s);

    char *t = render(m);
    assert_true(valuef(t, CHAT_GPT_STATUS, 100) == 3);
    assert_true(valuef(t, CHAT_GPT_STATUS, 163) == 2);
    assert_true(valuef(t, CHAT_GPT_STATUS, 164) == -1);
    assert_true(valuef(t, CHAT_GPT_STATUS, 165) == 1);
    assert_true(valuef(t, CHAT_GPT_STATUS, 599) == 1);
    assert_true(valuef(t, CHAT_GPT_STATUS, 0) == 12);
    assert_int_equal(count_lines(t, "switchboard_requests_total{"), 64 + 3);
    /* sorted by status code */
    char a[160], b[160];
    snprintf(a, sizeof a, CHAT_GPT_STATUS, 0);
    snprintf(b, sizeof b, CHAT_GPT_STATUS, 100);
    assert_true(strstr(t, a) < strstr(t, b));
    free(t);
    sb_metrics_free(m);
}

static void test_render_cap(void **state)
{
    (void)state;
    struct sb_metrics *m = sb_metrics_new(1, models, 3);
    assert_non_null(m);
    struct sb_metrics_sample s = sample(SB_ROUTE_CHAT, 0, 200, 0.5);
    sb_metrics_observe(m, 0, &s);

    struct sb_buf full;
    sb_buf_init(&full, 1u << 20);
    assert_int_equal(sb_metrics_render(m, &full), 0);

    /* Each cap short of the whole leaves the buffer as it was; the exact size succeeds. */
    size_t caps[] = {5, 100, full.len / 2, full.len + 2};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        struct sb_buf b;
        sb_buf_init(&b, caps[i]);
        assert_int_equal(sb_buf_append_str(&b, "pre"), 0);
        assert_int_equal(sb_metrics_render(m, &b), -E2BIG);
        assert_int_equal(b.len, 3);
        assert_string_equal(b.data, "pre");
        sb_buf_free(&b);
    }
    struct sb_buf b;
    sb_buf_init(&b, full.len + 3);
    assert_int_equal(sb_buf_append_str(&b, "pre"), 0);
    assert_int_equal(sb_metrics_render(m, &b), 0);
    assert_int_equal(b.len, full.len + 3);
    assert_memory_equal(b.data + 3, full.data, full.len);
    sb_buf_free(&b);

    assert_int_equal(sb_metrics_render(NULL, &full), -EINVAL);
    assert_int_equal(sb_metrics_render(m, NULL), -EINVAL);
    sb_buf_free(&full);
    sb_metrics_free(m);
}

static void test_odd_values(void **state)
{
    (void)state;
    struct sb_metrics *m = sb_metrics_new(1, models, 1);
    assert_non_null(m);
    /* negative, NaN and absurd durations land in a bucket instead of breaking the sum */
    struct sb_metrics_sample s = sample(SB_ROUTE_HEALTH, 0, 200, -3);
    sb_metrics_observe(m, 0, &s);
    s.total_s = NAN;
    sb_metrics_observe(m, 0, &s);
    s.total_s = 1e300;
    sb_metrics_observe(m, 0, &s);
    char *t = render(m);
    check_hist(t, "switchboard_request_duration_seconds", "route=\"health\",model=\"gpt-4o\"",
               (int[]){0, 0, 17}, 3, "1000000000");
    free(t);
    sb_metrics_free(m);
}

static void test_escape_newline(void **state)
{
    (void)state;
    char *names[] = {"line\nbreak", "plain"};
    struct sb_metrics *m = sb_metrics_new(1, names, 2);
    assert_non_null(m);
    struct sb_metrics_sample s = sample(SB_ROUTE_CHAT, 0, 200, 0.01);
    sb_metrics_observe(m, 0, &s);
    char *t = render(m);
    assert_true(value_of(t, "switchboard_requests_total{route=\"chat_completions\","
                            "model=\"line\\nbreak\",status=\"200\"}") == 1);
    assert_null(strstr(t, "line\nbreak"));
    free(t);
    sb_metrics_free(m);
}

/* ---- concurrency ---- */

#define PER_THREAD 100000

struct writer {
    struct sb_metrics *m;
    int worker;
};

static atomic_int writers_left;

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        struct sb_metrics_sample s = sample(SB_ROUTE_CHAT, 1, 200 + i % 4, 0.002);
        s.upstream_s = 0.001;
        s.tokens_in = 1;
        sb_metrics_observe(w->m, w->worker, &s);
        sb_metrics_inflight(w->m, w->worker, i % 2 ? -1 : 1);
        if (i % 1000 == 0)
            sb_metrics_upstream_error(w->m, w->worker, 1, SB_UPERR_CONNECT);
    }
    atomic_fetch_sub(&writers_left, 1);
    return NULL;
}

struct reader {
    struct sb_metrics *m;
    int renders;
    int failures;
};

static void *reader_main(void *arg)
{
    struct reader *r = arg;
    double last = 0;
    for (;;) {
        bool done = atomic_load(&writers_left) == 0;
        struct sb_buf b;
        sb_buf_init(&b, 1u << 20);
        if (sb_metrics_render(r->m, &b) != 0) {
            r->failures++;
        } else {
            const char *l = "route=\"chat_completions\",model=\"we\\\"ird\\\\name\"";
            double count = valuef(b.data, "switchboard_request_duration_seconds_count{%s}", l);
            double inf =
                valuef(b.data, "switchboard_request_duration_seconds_bucket{%s,le=\"+Inf\"}", l);
            /* counts only grow, and _count always equals the +Inf bucket */
            if (count < 0) /* not observed yet */
                count = 0, inf = inf < 0 ? 0 : inf;
            if (count < last || count != inf || count > 2 * PER_THREAD)
                r->failures++;
            last = count;
        }
        sb_buf_free(&b);
        r->renders++;
        if (done)
            break;
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct sb_metrics *m = sb_metrics_new(2, models, 3);
    assert_non_null(m);
    atomic_store(&writers_left, 2);
    struct writer w[2] = {{m, 0}, {m, 1}};
    struct reader r = {m, 0, 0};
    pthread_t tw[2], tr;
    assert_int_equal(pthread_create(&tr, NULL, reader_main, &r), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&tw[i], NULL, writer_main, &w[i]), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(tw[i], NULL), 0);
    assert_int_equal(pthread_join(tr, NULL), 0);
    assert_int_equal(r.failures, 0);
    assert_true(r.renders >= 1);

    char *t = render(m);
    const char *l = "route=\"chat_completions\",model=\"we\\\"ird\\\\name\"";
    for (int code = 200; code < 204; code++)
        assert_true(valuef(t, "switchboard_requests_total{%s,status=\"%d\"}", l, code) ==
                    2 * PER_THREAD / 4);
    assert_true(valuef(t, "switchboard_request_duration_seconds_count{%s}", l) == 2 * PER_THREAD);
    assert_true(valuef(t, "switchboard_request_duration_seconds_bucket{%s,le=\"0.001\"}", l) == 0);
    assert_true(valuef(t, "switchboard_request_duration_seconds_bucket{%s,le=\"0.0025\"}", l) ==
                2 * PER_THREAD);
    assert_non_null(strstr(t, "switchboard_request_duration_seconds_sum{route=\"chat_completions\","
                              "model=\"we\\\"ird\\\\name\"} 400\n"));
    assert_true(
        valuef(t, "switchboard_gateway_overhead_seconds_count{route=\"chat_completions\"}") ==
        2 * PER_THREAD);
    assert_true(
        valuef(t, "switchboard_tokens_total{model=\"we\\\"ird\\\\name\",direction=\"input\"}") ==
        2 * PER_THREAD);
    assert_true(valuef(t, "switchboard_upstream_errors_total{model=\"we\\\"ird\\\\name\","
                          "kind=\"connect\"}") == 2 * PER_THREAD / 1000);
    assert_true(value_of(t, "switchboard_requests_in_flight") == 0);
    free(t);
    sb_metrics_free(m);
}

/* 8 workers x 50 models, every series populated: the render stays well inside a scrape. */
static void test_render_large(void **state)
{
    (void)state;
    enum { W = 8, M = 50 };
    char *names[M];
    char store[M][16];
    for (int i = 0; i < M; i++) {
        snprintf(store[i], sizeof store[i], "model-%d", i);
        names[i] = store[i];
    }
    struct sb_metrics *m = sb_metrics_new(W, names, M);
    assert_non_null(m);
    for (int w = 0; w < W; w++)
        for (int r = 0; r < SB_ROUTE_COUNT; r++)
            for (int i = 0; i < M; i++) {
                struct sb_metrics_sample s = sample((enum sb_route)r, i, 200 + w % 2, 0.1);
                s.ttft_s = 0.05;
                sb_metrics_observe(m, w, &s);
            }
    char *t = render(m);
    assert_int_equal(count_lines(t, "switchboard_requests_total{"), SB_ROUTE_COUNT * M * 2);
    assert_true(valuef(t, "switchboard_requests_total{route=\"models\",model=\"model-49\","
                          "status=\"201\"}") == W / 2);
    assert_int_equal(count_lines(t, "switchboard_time_to_first_byte_seconds_count{"),
                     SB_ROUTE_COUNT * M);
    free(t);
    sb_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_route_names),
        cmocka_unit_test(test_new_rejects),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_two_shards),
        cmocka_unit_test(test_status_slots_full),
        cmocka_unit_test(test_render_cap),
        cmocka_unit_test(test_odd_values),
        cmocka_unit_test(test_escape_newline),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_render_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

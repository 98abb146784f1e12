/* The access-log line, written with core/buf's cursor writes (api/gateway.c), byte for byte
 * against the line as it was built with one checked append per piece (kept below as the
 * reference), over a set of exchanges: nulls, stream, fallback, price missing, key hash with
 * and without team, errors, client_closed, masked keys in paths, long paths, escapes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "api/gateway.c"

/* ---- the reference: the line as appended piece by piece ---- */

static void ref_key(struct sb_buf *b, const char *name)
{
    sb_buf_append(b, ",\"", 2);
    sb_buf_append_str(b, name);
    sb_buf_append(b, "\":", 2);
}

static void ref_ms(struct sb_buf *b, const char *name, double seconds)
{
    ref_key(b, name);
    uint64_t us = seconds > 0 ? (uint64_t)(seconds * 1e6 + 0.5) : 0;
    char frac[4] = {(char)('0' + us / 100 % 10), (char)('0' + us / 10 % 10), (char)('0' + us % 10),
                    0};
    sb_buf_append_u64(b, us / 1000);
    sb_buf_append_char(b, '.');
    sb_buf_append(b, frac, 3);
}

static void ref_json_field(struct sb_buf *b, const char *name, const char *v)
{
    ref_key(b, name);
    if (v)
        sb_buf_append_json_str(b, v, strlen(v));
    else
        sb_buf_append_str(b, "null");
}

static void ref_tokens(struct sb_buf *b, const char *name, int64_t v)
{
    ref_key(b, name);
    if (v < 0)
        sb_buf_append_str(b, "null");
    else
        sb_buf_append_i64(b, v);
}

static void ref_path(struct sb_buf *b, const char *p, size_t n)
{
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
            for (size_t j = end - i > 11 ? end - 4 : end; j < end && k < sizeof tmp; j++)
                tmp[k++] = p[j];
            i = end;
            continue;
        }
        tmp[k++] = p[i++];
    }
    sb_buf_append_json_str(b, tmp, k);
}

static void ref_line(struct sb_buf *b, const struct sb_gateway *gw, const struct sb_api_req *r,
                     bool aborted, int status, const struct timespec *ts, double total,
                     double upstream, double ttfb)
{
    const struct sb_exchange *x = r->x;
    const struct sb_request_record *rec = &r->rec;
    char prefix[32];
    struct tm tm;
    gmtime_r(&ts->tv_sec, &tm);
    strftime(prefix, sizeof prefix, "%Y-%m-%dT%H:%M:%S.", &tm);
    long ms = ts->tv_nsec / 1000000;
    char msd[3] = {(char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10)};
    const struct sb_deployment *d = rec->dep;
    const char *model = rec->model >= 0 ? gw->cfg->model_names[rec->model] : NULL;
    sb_buf_append_str(b, "{\"ts\":\"");
    sb_buf_append_str(b, prefix);
    sb_buf_append(b, msd, 3);
    sb_buf_append(b, "Z\"", 2);
    ref_json_field(b, "request_id", r->request_id);
    sb_buf_append_str(b, ",\"method\":");
    sb_buf_append_json_str(b, x->req.method.p, x->req.method.n);
    sb_buf_append_str(b, ",\"path\":");
    ref_path(b, x->req.path.p, x->req.path.n < 256 ? x->req.path.n : 256);
    ref_json_field(b, "route", sb_route_name(rec->route));
    ref_json_field(b, "model", model);
    ref_json_field(b, "provider", d ? d->provider_name : NULL);
    ref_json_field(b, "deployment", d ? d->litellm_model : NULL);
    ref_key(b, "status");
    sb_buf_append_i64(b, status);
    sb_buf_append_str(b, rec->stream ? ",\"stream\":true" : ",\"stream\":false");
    ref_ms(b, "latency_ms", total);
    if (upstream >= 0) {
        ref_ms(b, "upstream_ms", upstream);
        ref_ms(b, "overhead_ms", total > upstream ? total - upstream : 0);
    } else {
        sb_buf_append_str(b, ",\"upstream_ms\":null,\"overhead_ms\":null");
    }
    if (rec->upstream_ttfb_s >= 0 && rec->upstream_start_ns)
        ref_ms(b, "upstream_ttfb_ms", rec->upstream_ttfb_s);
    if (ttfb >= 0)
        ref_ms(b, "ttfb_ms", ttfb);
    if (rec->attempts) {
        ref_key(b, "attempts");
        sb_buf_append_i64(b, rec->attempts);
    }
    if (rec->served_by >= 0)
        ref_json_field(b, "fallback_model", gw->cfg->model_names[rec->served_by]);
    ref_tokens(b, "tokens_in", rec->tokens_in);
    ref_tokens(b, "tokens_out", rec->tokens_out);
    ref_tokens(b, "tokens_cached", rec->tokens_cached);
    ref_tokens(b, "tokens_reasoning", rec->tokens_reasoning);
    if (rec->cost_nano >= 0) {
        ref_key(b, "cost_usd");
        sb_api_append_dollars(b, rec->cost_nano);
    }
    if (rec->dep && !rec->priced) {
        ref_key(b, "price_missing");
        sb_buf_append_str(b, "true");
    }
    if (!r->master && r->adm.key_hash[0]) {
        ref_json_field(b, "key_hash", r->adm.key_hash);
        if (r->adm.team_id[0])
            ref_json_field(b, "team_id", r->adm.team_id);
    }
    ref_key(b, "bytes_in");
    sb_buf_append_u64(b, x->bytes_in);
    ref_key(b, "bytes_out");
    sb_buf_append_u64(b, x->bytes_out);
    ref_json_field(b, "error",
                   rec->error_code ? rec->error_code : (aborted ? "client_closed" : NULL));
    sb_buf_append_str(b, "}\n");
}

/* ---- fixtures ---- */

struct fix {
    struct sb_config cfg;
    char *names[3];
    struct sb_deployment dep;
    struct sb_gateway gw;
    struct sb_gw_worker gw_w;
    struct sb_exchange x;
    struct sb_api_req r;
};

static const char hash64[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/* A master-key chat request that never reached an upstream: every optional field null. */
static void fix_init(struct fix *f)
{
    memset(f, 0, sizeof *f);
    f->names[0] = "gpt-4o";
    f->names[1] = "fallback \"b\"";
    f->names[2] = "claude";
    f->cfg.model_names = f->names;
    f->cfg.n_model_names = 3;
    f->dep.provider_name = "openai";
    f->dep.litellm_model = "openai/gpt-4o";
    f->gw.cfg = &f->cfg;
    f->gw.access_fd = 1; /* only tested against -1 by the line's writer */
    f->gw_w.gw = &f->gw;
    sb_buf_init(&f->gw_w.access_log, 16u << 20);
    f->x.req.method = (struct sb_http_str){"POST", 4};
    f->x.req.path = (struct sb_http_str){"/v1/chat/completions", 20};
    f->x.status = 200;
    f->x.finished = true;
    f->x.bytes_in = 1234;
    f->x.bytes_out = 567;
    f->r.gw_w = &f->gw_w;
    f->r.x = &f->x;
    f->r.master = true;
    sb_str_copy(f->r.request_id, sizeof f->r.request_id, "3f0c1a9e-0000-4000-8000-000000000001");
    f->r.rec.route = SB_ROUTE_CHAT;
    f->r.rec.model = -1;
    f->r.rec.served_by = -1;
    f->r.rec.tokens_in = f->r.rec.tokens_out = -1;
    f->r.rec.tokens_cached = f->r.rec.tokens_reasoning = -1;
    f->r.rec.cost_nano = -1;
    f->r.rec.upstream_ttfb_s = -1;
}

/* A virtual-key stream served by a fallback, priced, with every timing. */
static void fix_full(struct fix *f)
{
    fix_init(f);
    f->r.master = false;
    memcpy(f->r.adm.key_hash, hash64, 65);
    sb_str_copy(f->r.adm.team_id, sizeof f->r.adm.team_id, "team-1");
    f->r.rec.model = 0;
    f->r.rec.served_by = 1;
    f->r.rec.dep = &f->dep;
    f->r.rec.priced = true;
    f->r.rec.stream = true;
    f->r.rec.attempts = 2;
    f->r.rec.tokens_in = 27;
    f->r.rec.tokens_out = 1000;
    f->r.rec.tokens_cached = 0;
    f->r.rec.tokens_reasoning = 64;
    f->r.rec.cost_nano = 22000;
    f->r.rec.upstream_start_ns = 5;
    f->r.rec.upstream_ttfb_s = 0.0123456;
}

static void fix_free(struct fix *f)
{
    sb_buf_free(&f->gw_w.access_log);
}

/* Writes the line both ways and compares; returns the new line's length. */
static size_t check_line(struct fix *f, bool aborted, int status, const struct timespec *ts,
                         double total, double upstream, double ttfb)
{
    struct sb_buf want;
    sb_buf_init(&want, 1u << 20);
    ref_line(&want, &f->gw, &f->r, aborted, status, ts, total, upstream, ttfb);
    struct sb_buf *b = &f->gw_w.access_log;
    size_t before = b->len;
    append_access_line(&f->gw_w, &f->r, aborted, status, ts, total, upstream, ttfb);
    size_t n = b->len - before;
    if (n != want.len || memcmp(b->data + before, want.data, n) != 0)
        fail_msg("line differs:\n got: %.*s\nwant: %s", (int)n, b->data + before, want.data);
    assert_int_equal(b->data[b->len], '\0');
    sb_buf_free(&want);
    return n;
}

static const struct timespec ts1 = {1763751940, 7000000}; /* 2025-11-21T19:05:40.007Z */

static void test_nulls_master(void **state)
{
    (void)state;
    struct fix f;
    fix_init(&f);
    check_line(&f, false, 200, &ts1, 0.0012345, -1, -1);
    assert_non_null(strstr(f.gw_w.access_log.data, "\"ts\":\"2025-11-21T19:05:40.007Z\""));
    assert_non_null(strstr(f.gw_w.access_log.data, "\"model\":null,\"provider\":null"));
    /* Batched: a second line goes after the first. */
    size_t first = f.gw_w.access_log.len;
    check_line(&f, false, 404, &ts1, 0, -1, -1);
    assert_true(f.gw_w.access_log.len > first);
    fix_free(&f);
}

static void test_stream_fallback_key_team(void **state)
{
    (void)state;
    struct fix f;
    fix_full(&f);
    struct timespec ts = {1763751941, 999999999};
    check_line(&f, false, 200, &ts, 1.5, 1.25, 0.0004);
    const char *l = f.gw_w.access_log.data;
    assert_non_null(strstr(l, "\"stream\":true"));
    assert_non_null(strstr(l, "\"fallback_model\":\"fallback \\\"b\\\"\""));
    assert_non_null(strstr(l, "\"cost_usd\":0.000022000,\"key_hash\":\""));
    assert_non_null(strstr(l, "\"team_id\":\"team-1\""));
    /* Without a team; stream false (no ttfb); upstream longer than total (overhead 0). */
    f.r.adm.team_id[0] = '\0';
    f.r.rec.stream = false;
    check_line(&f, false, 200, &ts, 0.5, 0.75, -1);
    /* A master key never logs a key hash, even with one filled in. */
    f.r.master = true;
    check_line(&f, false, 200, &ts, 0.5, 0.75, -1);
    fix_free(&f);
}

static void test_price_missing_error_aborted(void **state)
{
    (void)state;
    struct fix f;
    fix_full(&f);
    f.r.rec.priced = false;
    f.r.rec.cost_nano = 0;
    check_line(&f, false, 200, &ts1, 0.25, 0.125, -1);
    assert_non_null(strstr(f.gw_w.access_log.data, "\"price_missing\":true"));
    f.r.rec.error_code = "rate_limit_exceeded";
    check_line(&f, false, 429, &ts1, 0.25, -1, -1);
    f.r.rec.error_code = NULL;
    check_line(&f, true, 499, &ts1, 0.25, -1, 0.001);
    assert_non_null(strstr(f.gw_w.access_log.data, "\"status\":499"));
    assert_non_null(strstr(f.gw_w.access_log.data, "\"error\":\"client_closed\"}\n"));
    /* The record's own error wins over client_closed. */
    f.r.rec.error_code = "upstream_timeout";
    check_line(&f, true, 504, &ts1, 0.25, 0.2, -1);
    /* No upstream_ttfb without an upstream call; attempts 0 leaves the field out. */
    f.r.rec.upstream_start_ns = 0;
    f.r.rec.attempts = 0;
    check_line(&f, false, -7, &ts1, 0.25, -1, -1);
    fix_free(&f);
}

static void test_paths(void **state)
{
    (void)state;
    static const char *const paths[] = {
        "/key/sk-abcdefghijklmnop/regenerate", /* masked to its last four */
        "/key/sk-short/x",                     /* too short to show any */
        "sk-1234567890abcdef",                 /* at the start */
        "/sk-",                                /* grows to sk-**** */
        "/v1/task-sk-notakey",                 /* not at a segment start: as is */
        "/a/sk",                               /* shorter than the prefix */
        "sk",
        "",
        "/",
        "/v1/models?x=\"q\"\\\x01",
        "/v1/x/",   /* ends with the slash */
        "/v1/x/sk", /* a slash too near the end */
        "//sk-abcdefghijklmnopqrst",
    };
    struct fix f;
    fix_init(&f);
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        f.x.req.path = (struct sb_http_str){paths[i], strlen(paths[i])};
        check_line(&f, false, 200, &ts1, 0.001, -1, -1);
    }
    assert_null(strstr(f.gw_w.access_log.data, "abcdefghijkl"));
    assert_non_null(strstr(f.gw_w.access_log.data, "\"path\":\"/key/sk-****mnop/regenerate\""));
    /* Long paths: cut at 256, with and without a key near the cut (the masked form can grow
     * past 256 and is cut again). */
    char longp[600];
    memset(longp, 'a', sizeof longp);
    longp[0] = '/';
    for (size_t n = 250; n <= sizeof longp; n += 3) {
        f.x.req.path = (struct sb_http_str){longp, n};
        check_line(&f, false, 200, &ts1, 0.001, -1, -1);
    }
    for (size_t at = 240; at < 258; at++) {
        memset(longp, 'a', sizeof longp);
        longp[0] = '/';
        longp[at] = '/';
        memcpy(longp + at + 1, "sk-", 3);
        f.x.req.path = (struct sb_http_str){longp, sizeof longp};
        check_line(&f, false, 200, &ts1, 0.001, -1, -1);
        memset(longp + at + 4, '"', 20); /* and escapes around the cut */
        check_line(&f, false, 200, &ts1, 0.001, -1, -1);
    }
    fix_free(&f);
}

/* Every string escaped at its longest, every number at its widest: the reserved room covers the
 * longest line (the writer asserts it in this build). */
static void test_escapes_and_extremes(void **state)
{
    (void)state;
    struct fix f;
    fix_full(&f);
    char ctl[129];
    memset(ctl, 0x01, 128);
    ctl[128] = '\0';
    char rid[132];
    memset(rid, '"', 131);
    rid[131] = '\0';
    char method[300];
    memset(method, '\n', sizeof method);
    char path[256];
    memset(path, 0x1f, sizeof path);
    f.names[0] = ctl;
    f.names[1] = ctl;
    f.dep.provider_name = ctl;
    f.dep.litellm_model = ctl;
    f.r.rec.error_code = ctl;
    memcpy(f.r.request_id, rid, sizeof rid);
    memcpy(f.r.adm.team_id, ctl, sizeof ctl);
    f.x.req.method = (struct sb_http_str){method, sizeof method};
    f.x.req.path = (struct sb_http_str){path, sizeof path};
    f.x.bytes_in = f.x.bytes_out = UINT64_MAX;
    f.r.rec.tokens_in = f.r.rec.tokens_out = INT64_MAX;
    f.r.rec.tokens_cached = f.r.rec.tokens_reasoning = INT64_MAX;
    f.r.rec.cost_nano = INT64_MAX;
    f.r.rec.attempts = INT32_MIN;
    f.r.rec.upstream_ttfb_s = 1.8e13;
    f.r.rec.priced = false;
    check_line(&f, true, INT32_MIN, &ts1, 1.8e13, 1e12, 1.7e13);
    check_line(&f, true, 200, &ts1, 1e-9, 0.0000005, 0.0000004999);
    fix_free(&f);
}

/* At the batch's cap the line is dropped whole, and what the batch held stays as it was. */
static void test_full_batch_drops_whole_line(void **state)
{
    (void)state;
    struct fix f;
    fix_init(&f);
    struct sb_buf *b = &f.gw_w.access_log;
    b->max = 300;
    assert_int_equal(sb_buf_append_str(b, "held\n"), 0);
    append_access_line(&f.gw_w, &f.r, false, 200, &ts1, 0.001, -1, -1);
    assert_int_equal(b->len, 5);
    assert_string_equal(b->data, "held\n");
    /* With room, the same line is written in full. */
    b->max = 16u << 20;
    size_t n = check_line(&f, false, 200, &ts1, 0.001, -1, -1);
    assert_int_equal(b->len, 5 + n);
    assert_memory_equal(b->data + 5 + n - 2, "}\n", 2);
    fix_free(&f);
}

/* record() itself: metrics without a registry, and no line when the log is off. */
static void test_record(void **state)
{
    (void)state;
    struct fix f;
    fix_full(&f);
    f.x.t_start_ns = uv_hrtime();
    f.x.t_first_byte_ns = f.x.t_start_ns + 1000;
    f.r.rec.upstream_start_ns = f.x.t_start_ns;
    record(&f.r, false);
    const struct sb_buf *b = &f.gw_w.access_log;
    assert_true(b->len > 0);
    assert_memory_equal(b->data, "{\"ts\":\"", 7);
    assert_memory_equal(b->data + b->len - 2, "}\n", 2);
    assert_non_null(strstr(b->data, "\"ttfb_ms\":0.001,"));
    size_t len = b->len;
    f.gw.access_fd = -1;
    record(&f.r, true);
    assert_int_equal(b->len, len);
    fix_free(&f);
}

/* The cost as sb_api_append_dollars writes it, at the digit boundaries. */
static void test_dollars(void **state)
{
    (void)state;
    static const int64_t v[] = {0,     1,           999,        1000,       999999,       1000000,
                                22000, 999999999,   1000000000, 1000000001, 123456789012, INT64_MAX,
                                -1,    -1000000000, INT64_MIN};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
        uint64_t u = v[i] < 0 ? 0 - (uint64_t)v[i] : (uint64_t)v[i];
        char want[64];
        snprintf(want, sizeof want, "%s%" PRIu64 ".%09" PRIu64, v[i] < 0 ? "-" : "",
                 u / 1000000000u, u % 1000000000u);
        struct sb_buf b;
        sb_buf_init(&b, 64);
        assert_int_equal(sb_api_append_dollars(&b, v[i]), 0);
        assert_string_equal(b.data, want);
        char got[SB_API_DOLLARS_MAX + 1];
        char *end = sb_api_put_dollars(got, v[i]);
        assert_true((size_t)(end - got) <= SB_API_DOLLARS_MAX);
        *end = '\0';
        assert_string_equal(got, want);
        sb_buf_free(&b);
    }
    /* And in the line, for a few of them. */
    struct fix f;
    fix_full(&f);
    for (size_t i = 0; i < 11; i++) {
        f.r.rec.cost_nano = v[i];
        check_line(&f, false, 200, &ts1, 0.5, 0.25, 0.1);
    }
    fix_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nulls_master),
        cmocka_unit_test(test_stream_fallback_key_team),
        cmocka_unit_test(test_price_missing_error_aborted),
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_escapes_and_extremes),
        cmocka_unit_test(test_full_batch_drops_whole_line),
        cmocka_unit_test(test_record),
        cmocka_unit_test(test_dollars),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#include "obs/metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <assert.h>
#include <math.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#ifndef SB_VERSION
#define SB_VERSION "dev"
#endif

#define CACHE_LINE 64

/* Finite upper bounds; one more bucket past the last catches everything else (+Inf). */
static const double bucket_bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                       0.5,    1,     2.5,    5,     10,   30,    60,   120};
/* Written out rather than printed from the doubles so the le labels are stable and exact. */
static const char *const bucket_labels[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                            "0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5",
                                            "5",      "10",    "30",     "60",    "120",  "+Inf"};
#define N_BOUNDS  (sizeof bucket_bounds / sizeof bucket_bounds[0])
#define N_BUCKETS (N_BOUNDS + 1)
/* Per histogram series: the non-cumulative bucket counts, then the sum in nanoseconds. The
 * count is the sum of the buckets, so a scrape can never show _count != the +Inf bucket. */
#define HIST_WORDS (N_BUCKETS + 1)
#define HIST_SUM   N_BUCKETS

/* Status codes a shard can tell apart: 0 ("other") plus 100..599. */
#define STATUS_MIN   100
#define STATUS_MAX   599
#define STATUS_INDEX (STATUS_MAX - STATUS_MIN + 2)
/* Slot 0 is status 0; slots 1..64 are handed out to codes in order of first sight. A worker
 * that has seen 64 distinct codes counts any further new code as status 0. */
#define STATUS_SLOTS 65

/* Values above this are clamped before the conversion to integer nanoseconds, which keeps the
 * conversion defined; nothing real waits this long. */
#define MAX_SECONDS 1e9

#define MAX_WORKERS 4096
#define MAX_MODELS  100000

static_assert(sizeof bucket_labels / sizeof bucket_labels[0] == N_BUCKETS, "one label a bucket");
static_assert(STATUS_SLOTS - 1 <= UINT8_MAX, "slot numbers fit a byte");

struct shard {
    _Atomic int64_t inflight;
    /* Owner only: status index -> slot, 0 meaning not assigned yet. */
    uint8_t slot_of[STATUS_INDEX];
    unsigned nslots;
    /* Slot -> status code, published with release so a renderer that sees the code also sees
     * that the slot belongs to it; 0 means unassigned (slot 0 is status 0 by definition). */
    _Atomic uint16_t slot_code[STATUS_SLOTS];
    /* Counters, laid out as described by the offsets in struct sb_metrics. */
    alignas(CACHE_LINE) _Atomic uint64_t c[];
};

struct sb_metrics {
    int nshards;
    size_t nmodels;     /* configured models + 1: index 0 is the unknown model */
    char **model_label; /* already escaped for a label value */
    size_t rm;          /* routes * nmodels */
    /* Offsets into shard->c. */
    size_t off_req;      /* [slot][route][model] */
    size_t off_duration; /* [route][model][HIST_WORDS] */
    size_t off_ttft;     /* [route][model][HIST_WORDS] */
    size_t off_overhead; /* [route][HIST_WORDS] */
    size_t off_tokens;   /* [model][2] */
    size_t off_errors;   /* [model][SB_UPERR_COUNT] */
    struct shard **shards;
};

static const char *const route_names[SB_ROUTE_COUNT] = {
    "chat_completions", "completions", "embeddings", "messages", "count_tokens",
    "models",           "health",      "metrics",    "other",
};

static const char *const uperr_names[SB_UPERR_COUNT] = {
    "connect", "timeout", "status_4xx", "status_5xx", "protocol",
};

const char *sb_route_name(enum sb_route r)
{
    if ((unsigned)r >= SB_ROUTE_COUNT)
        return route_names[SB_ROUTE_OTHER];
    return route_names[r];
}

/* Prometheus label values escape only backslash, double quote and newline. */
static char *escape_label(const char *s)
{
    if (!s)
        s = "";
    size_t n = strlen(s);
    if (n > (SIZE_MAX - 1) / 2)
        return NULL;
    char *out = malloc(2 * n + 1);
    if (!out)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (ch == '\\' || ch == '"' || ch == '\n') {
            out[j++] = '\\';
            ch = ch == '\n' ? 'n' : ch;
        }
        out[j++] = ch;
    }
    out[j] = '\0';
    return out;
}

/* a * b + c without wrapping, or SIZE_MAX. */
static size_t mul_add(size_t a, size_t b, size_t c)
{
    if (b && a > (SIZE_MAX - c) / b)
        return SIZE_MAX;
    return a * b + c;
}

struct sb_metrics *sb_metrics_new(int nworkers, char *const *model_names, size_t n_models)
{
    if (nworkers < 1 || nworkers > MAX_WORKERS || n_models > MAX_MODELS ||
        (n_models && !model_names))
        return NULL;
    struct sb_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->nmodels = n_models + 1;
    m->rm = SB_ROUTE_COUNT * m->nmodels;
    m->model_label = calloc(m->nmodels, sizeof *m->model_label);
    m->shards = calloc((size_t)nworkers, sizeof *m->shards);
    if (!m->model_label || !m->shards)
        goto fail;
    for (size_t i = 0; i < m->nmodels; i++) {
        m->model_label[i] = escape_label(i ? model_names[i - 1] : "");
        if (!m->model_label[i])
            goto fail;
    }

    /* Sizes are bounded by MAX_MODELS, so none of this can overflow a 64-bit size_t; the
     * checks keep it honest on smaller targets. */
    size_t words = 0;
    m->off_req = words;
    words = mul_add(STATUS_SLOTS, m->rm, words);
    m->off_duration = words;
    words = mul_add(HIST_WORDS, m->rm, words);
    m->off_ttft = words;
    words = mul_add(HIST_WORDS, m->rm, words);
    m->off_overhead = words;
    words = mul_add(HIST_WORDS, SB_ROUTE_COUNT, words);
    m->off_tokens = words;
    words = mul_add(2, m->nmodels, words);
    m->off_errors = words;
    words = mul_add(SB_UPERR_COUNT, m->nmodels, words);
    size_t bytes = mul_add(words, sizeof(uint64_t), sizeof(struct shard));
    if (words == SIZE_MAX || bytes > SIZE_MAX - CACHE_LINE)
        goto fail;
    /* A whole number of cache lines, so no two shards ever share one. */
    bytes = (bytes + CACHE_LINE - 1) / CACHE_LINE * CACHE_LINE;

    m->nshards = nworkers;
    for (int w = 0; w < nworkers; w++) {
        struct shard *sh = aligned_alloc(CACHE_LINE, bytes);
        if (!sh)
            goto fail;
        /* All-zero bytes are the zero value of every lock-free atomic used here. */
        memset(sh, 0, bytes);
        m->shards[w] = sh;
    }
    return m;
fail:
    sb_metrics_free(m);
    return NULL;
}

void sb_metrics_free(struct sb_metrics *m)
{
    if (!m)
        return;
    if (m->shards)
        for (int w = 0; w < m->nshards; w++)
            free(m->shards[w]);
    free(m->shards);
    if (m->model_label)
        for (size_t i = 0; i < m->nmodels; i++)
            free(m->model_label[i]);
    free(m->model_label);
    free(m);
}

static struct shard *shard_of(struct sb_metrics *m, int worker)
{
    if (!m || worker < 0 || worker >= m->nshards)
        return NULL;
    return m->shards[worker];
}

static size_t model_index(const struct sb_metrics *m, int model)
{
    if (model < 0 || (size_t)model >= m->nmodels - 1)
        return 0;
    return (size_t)model + 1;
}

static void add(_Atomic uint64_t *c, uint64_t v)
{
    atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static uint64_t load(_Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

static unsigned status_slot(struct shard *sh, int status)
{
    if (status < STATUS_MIN || status > STATUS_MAX)
        return 0;
    size_t idx = (size_t)(status - STATUS_MIN + 1);
    unsigned slot = sh->slot_of[idx];
    if (slot)
        return slot;
    if (sh->nslots + 1 >= STATUS_SLOTS)
        return 0;
    slot = ++sh->nslots;
    sh->slot_of[idx] = (uint8_t)slot;
    atomic_store_explicit(&sh->slot_code[slot], (uint16_t)status, memory_order_release);
    return slot;
}

static void hist_observe(_Atomic uint64_t *h, double v)
{
    if (!(v >= 0)) /* also NaN */
        v = 0;
    if (v > MAX_SECONDS)
        v = MAX_SECONDS;
    size_t b = 0;
    while (b < N_BOUNDS && v > bucket_bounds[b])
        b++;
    add(&h[b], 1);
    add(&h[HIST_SUM], (uint64_t)llround(v * 1e9));
}

void sb_metrics_observe(struct sb_metrics *m, int worker, const struct sb_metrics_sample *s)
{
    struct shard *sh = shard_of(m, worker);
    if (!sh || !s)
        return;
    size_t route = (unsigned)s->route < SB_ROUTE_COUNT ? (size_t)s->route : SB_ROUTE_OTHER;
    size_t model = model_index(m, s->model);
    size_t rm = route * m->nmodels + model;

    add(&sh->c[m->off_req + status_slot(sh, s->status) * m->rm + rm], 1);
    hist_observe(&sh->c[m->off_duration + rm * HIST_WORDS], s->total_s);
    if (s->ttft_s >= 0)
        hist_observe(&sh->c[m->off_ttft + rm * HIST_WORDS], s->ttft_s);
    if (s->upstream_s >= 0)
        hist_observe(&sh->c[m->off_overhead + route * HIST_WORDS], s->total_s - s->upstream_s);
    if (s->tokens_in > 0)
        add(&sh->c[m->off_tokens + model * 2], (uint64_t)s->tokens_in);
    if (s->tokens_out > 0)
        add(&sh->c[m->off_tokens + model * 2 + 1], (uint64_t)s->tokens_out);
}

void sb_metrics_upstream_error(struct sb_metrics *m, int worker, int model,
                               enum sb_upstream_error_kind kind)
{
    struct shard *sh = shard_of(m, worker);
    if (!sh || (unsigned)kind >= SB_UPERR_COUNT)
        return;
    add(&sh->c[m->off_errors + model_index(m, model) * SB_UPERR_COUNT + (size_t)kind], 1);
}

void sb_metrics_inflight(struct sb_metrics *m, int worker, int delta)
{
    struct shard *sh = shard_of(m, worker);
    if (!sh)
        return;
    atomic_fetch_add_explicit(&sh->inflight, delta, memory_order_relaxed);
}

/* ---- rendering ---- */

/* State of one render: the output and the first error, so the emitters can be chained
 * without checking each append. */
struct render {
    struct sb_buf *out;
    int rc;
};

static void emit(struct render *r, const char *s)
{
    if (r->rc == 0)
        r->rc = sb_buf_append_str(r->out, s);
}

static void emit_u64(struct render *r, uint64_t v)
{
    if (r->rc == 0)
        r->rc = sb_buf_append_u64(r->out, v);
}

static void emit_family(struct render *r, const char *name, const char *type, const char *help)
{
    emit(r, "# HELP ");
    emit(r, name);
    emit(r, " ");
    emit(r, help);
    emit(r, "\n# TYPE ");
    emit(r, name);
    emit(r, " ");
    emit(r, type);
    emit(r, "\n");
}

/* Seconds from integer nanoseconds, exact: no float rounding in the sum. */
static void emit_seconds(struct render *r, uint64_t ns)
{
    emit_u64(r, ns / 1000000000u);
    uint64_t frac = ns % 1000000000u;
    if (!frac)
        return;
    char digits[11] = ".";
    int n = 9;
    while (frac % 10 == 0) {
        frac /= 10;
        n--;
    }
    for (int i = n; i >= 1; i--) {
        digits[i] = (char)('0' + frac % 10);
        frac /= 10;
    }
    digits[n + 1] = '\0';
    emit(r, digits);
}

/* `labels` is the already formatted label list without braces, e.g. route="x",model="y". */
static void emit_histogram(struct render *r, const char *name, const char *labels,
                           const uint64_t *h)
{
    uint64_t cum = 0;
    for (size_t b = 0; b < N_BUCKETS; b++) {
        cum += h[b];
        emit(r, name);
        emit(r, "_bucket{");
        emit(r, labels);
        emit(r, ",le=\"");
        emit(r, bucket_labels[b]);
        emit(r, "\"} ");
        emit_u64(r, cum);
        emit(r, "\n");
    }
    emit(r, name);
    emit(r, "_sum{");
    emit(r, labels);
    emit(r, "} ");
    emit_seconds(r, h[HIST_SUM]);
    emit(r, "\n");
    emit(r, name);
    emit(r, "_count{");
    emit(r, labels);
    emit(r, "} ");
    emit_u64(r, cum);
    emit(r, "\n");
}

/* Sums one histogram series over the shards; returns its count. */
static uint64_t sum_hist(const struct sb_metrics *m, size_t off, uint64_t *h)
{
    memset(h, 0, HIST_WORDS * sizeof *h);
    for (int w = 0; w < m->nshards; w++)
        for (size_t i = 0; i < HIST_WORDS; i++)
            h[i] += load(&m->shards[w]->c[off + i]);
    uint64_t count = 0;
    for (size_t b = 0; b < N_BUCKETS; b++)
        count += h[b];
    return count;
}

static uint64_t sum_counter(const struct sb_metrics *m, size_t off)
{
    uint64_t v = 0;
    for (int w = 0; w < m->nshards; w++)
        v += load(&m->shards[w]->c[off]);
    return v;
}

static int label_set(struct sb_buf *lb, const char *route, const char *model)
{
    sb_buf_reset(lb);
    int rc = 0;
    if (route)
        rc = sb_buf_printf(lb, "route=\"%s\"", route);
    if (rc == 0 && model)
        rc = sb_buf_printf(lb, "%smodel=\"%s\"", route ? "," : "", model);
    return rc;
}

static void render_requests(struct render *r, const struct sb_metrics *m)
{
    emit_family(r, "switchboard_requests_total", "counter",
                "Requests answered, by route, model alias and HTTP status returned.");
    /* Shards number their status slots independently: build, per shard, status index ->
     * slot (0xff: not seen), and the sorted union of the codes in use. */
    size_t n = (size_t)m->nshards * STATUS_INDEX;
    uint8_t *slot = malloc(n);
    if (!slot) {
        if (r->rc == 0)
            r->rc = -ENOMEM;
        return;
    }
    memset(slot, 0xff, n);
    bool used[STATUS_INDEX] = {false};
    for (int w = 0; w < m->nshards; w++) {
        struct shard *sh = m->shards[w];
        slot[(size_t)w * STATUS_INDEX] = 0;
        used[0] = true;
        for (unsigned s = 1; s < STATUS_SLOTS; s++) {
            uint16_t code = atomic_load_explicit(&sh->slot_code[s], memory_order_acquire);
            if (code < STATUS_MIN || code > STATUS_MAX)
                continue;
            size_t idx = (size_t)code - STATUS_MIN + 1;
            slot[(size_t)w * STATUS_INDEX + idx] = (uint8_t)s;
            used[idx] = true;
        }
    }
    size_t codes[STATUS_INDEX];
    size_t ncodes = 0;
    for (size_t idx = 0; idx < STATUS_INDEX; idx++)
        if (used[idx])
            codes[ncodes++] = idx;
    for (size_t route = 0; route < SB_ROUTE_COUNT && r->rc == 0; route++) {
        for (size_t model = 0; model < m->nmodels && r->rc == 0; model++) {
            size_t rm = route * m->nmodels + model;
            for (size_t i = 0; i < ncodes && r->rc == 0; i++) {
                size_t idx = codes[i];
                uint64_t v = 0;
                for (int w = 0; w < m->nshards; w++) {
                    uint8_t s = slot[(size_t)w * STATUS_INDEX + idx];
                    if (s != 0xff)
                        v += load(&m->shards[w]->c[m->off_req + s * m->rm + rm]);
                }
                if (!v)
                    continue;
                emit(r, "switchboard_requests_total{route=\"");
                emit(r, route_names[route]);
                emit(r, "\",model=\"");
                emit(r, m->model_label[model]);
                emit(r, "\",status=\"");
                emit_u64(r, idx ? idx + STATUS_MIN - 1 : 0);
                emit(r, "\"} ");
                emit_u64(r, v);
                emit(r, "\n");
            }
        }
    }
    free(slot);
}

static void render_route_model_hist(struct render *r, const struct sb_metrics *m, struct sb_buf *lb,
                                    const char *name, size_t off)
{
    uint64_t h[HIST_WORDS];
    for (size_t route = 0; route < SB_ROUTE_COUNT && r->rc == 0; route++) {
        for (size_t model = 0; model < m->nmodels && r->rc == 0; model++) {
            size_t rm = route * m->nmodels + model;
            if (!sum_hist(m, off + rm * HIST_WORDS, h))
                continue;
            r->rc = label_set(lb, route_names[route], m->model_label[model]);
            if (r->rc == 0)
                emit_histogram(r, name, lb->data, h);
        }
    }
}

int sb_metrics_render(struct sb_metrics *m, struct sb_buf *out)
{
    if (!m || !out)
        return -EINVAL;
    size_t start = out->len;
    struct render r = {.out = out, .rc = 0};
    struct sb_buf lb;
    /* Labels are bounded by the configured alias lengths; this cap only guards the math. */
    sb_buf_init(&lb, 1u << 20);

    emit_family(&r, "switchboard_build_info", "gauge", "Build of the running gateway; always 1.");
    char *version = escape_label(SB_VERSION);
    if (!version && r.rc == 0)
        r.rc = -ENOMEM;
    emit(&r, "switchboard_build_info{version=\"");
    emit(&r, version);
    emit(&r, "\"} 1\n");
    free(version);

    render_requests(&r, m);

    emit_family(&r, "switchboard_request_duration_seconds", "histogram",
                "Time from request received to response complete.");
    render_route_model_hist(&r, m, &lb, "switchboard_request_duration_seconds", m->off_duration);

    emit_family(&r, "switchboard_time_to_first_byte_seconds", "histogram",
                "Time from request received to the first byte of a stream sent to the client.");
    render_route_model_hist(&r, m, &lb, "switchboard_time_to_first_byte_seconds", m->off_ttft);

    emit_family(&r, "switchboard_gateway_overhead_seconds", "histogram",
                "Total latency minus time spent waiting on the upstream provider.");
    uint64_t h[HIST_WORDS];
    for (size_t route = 0; route < SB_ROUTE_COUNT && r.rc == 0; route++) {
        if (!sum_hist(m, m->off_overhead + route * HIST_WORDS, h))
            continue;
        r.rc = label_set(&lb, route_names[route], NULL);
        if (r.rc == 0)
            emit_histogram(&r, "switchboard_gateway_overhead_seconds", lb.data, h);
    }

    emit_family(&r, "switchboard_requests_in_flight", "gauge",
                "Requests received and not yet complete.");
    int64_t inflight = 0;
    for (int w = 0; w < m->nshards; w++)
        inflight += atomic_load_explicit(&m->shards[w]->inflight, memory_order_relaxed);
    emit(&r, "switchboard_requests_in_flight ");
    if (r.rc == 0)
        r.rc = sb_buf_append_i64(out, inflight);
    emit(&r, "\n");

    emit_family(&r, "switchboard_upstream_errors_total", "counter",
                "Failed upstream attempts, by model alias and kind of failure.");
    for (size_t model = 0; model < m->nmodels && r.rc == 0; model++) {
        for (size_t k = 0; k < SB_UPERR_COUNT; k++) {
            uint64_t v = sum_counter(m, m->off_errors + model * SB_UPERR_COUNT + k);
            if (!v)
                continue;
            emit(&r, "switchboard_upstream_errors_total{model=\"");
            emit(&r, m->model_label[model]);
            emit(&r, "\",kind=\"");
            emit(&r, uperr_names[k]);
            emit(&r, "\"} ");
            emit_u64(&r, v);
            emit(&r, "\n");
        }
    }

    emit_family(&r, "switchboard_tokens_total", "counter",
                "Tokens reported by providers, by model alias and direction.");
    static const char *const directions[2] = {"input", "output"};
    for (size_t model = 0; model < m->nmodels && r.rc == 0; model++) {
        for (size_t d = 0; d < 2; d++) {
            uint64_t v = sum_counter(m, m->off_tokens + model * 2 + d);
            if (!v)
                continue;
            emit(&r, "switchboard_tokens_total{model=\"");
            emit(&r, m->model_label[model]);
            emit(&r, "\",direction=\"");
            emit(&r, directions[d]);
            emit(&r, "\"} ");
            emit_u64(&r, v);
            emit(&r, "\n");
        }
    }

    sb_buf_free(&lb);
    if (r.rc) {
        /* All or nothing: a truncated exposition would read as counters going backwards. */
        out->len = start;
        if (out->data)
            out->data[start] = '\0';
    }
    return r.rc;
}

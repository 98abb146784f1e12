/* The store thread, the per-worker spend journals, the admin job queue and the budget
 * resets. The design and its failure behaviour are in docs/internals/ledger.md. */
#include "ledger/ledger.h"

#include "core/hex.h"
#include "core/plain.h"

#include "core/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEG_MAX       ((uint64_t)1 << 20) /* a worker rotates once its segment passes this */
#define LINE_CAP      16384               /* > the longest line a row can produce, escaped */
#define HOLD_CAP      ((size_t)128 << 10) /* rows a worker holds before sb_ledger_flush */
#define BATCH_MAX     1000                /* rows per sb_store_spend_write transaction */
#define READ_CHUNK    ((size_t)1 << 20)   /* journal bytes read per pass and segment */
#define LIST_PAGE     500                 /* records per sb_store_list page at start */
#define BACKOFF_MIN   100                 /* ms between pings while the database is down */
#define BACKOFF_MAX   5000
#define STOP_RETRY_MS 5000 /* how long stop and start keep trying a database that is down */
#define REFUSE_TRIES  5
#define FEED_BATCH    256  /* changes read per statement */
#define FEED_PASSES   16   /* batches per sync tick at most; the rest on the next tick */
#define PRUNE_EVERY_S 600  /* how often the change log is pruned */
#define PRUNE_AGE_S   3600 /* how old a change row must be to go */

/* A row the database refuses (not SB_STORE_E_DOWN) is skipped only after REFUSE_TRIES
 * attempts spread over at least this long, so that a passing error (a lock held too long)
 * does not cost a row. Not const: the tests shorten it. */
static int64_t refuse_window_ms = 5000;

struct job {
    struct job *next;
    sb_ledger_job_fn fn;
    sb_ledger_done_cb done;
    void *ud;
    int worker;
    int rc;
};

/* Where a refused row was seen and how often it failed, so the row is retried, then skipped. */
struct refusal {
    uint64_t off; /* the row's start offset in its segment; UINT64_MAX: none */
    int tries;
    int64_t first_ms;
};

struct worker {
    /* The worker's thread only. */
    int fd; /* the open segment, or -1 (opened on the next record) */
    uint64_t seg;
    uint64_t seg_bytes;
    /* Encoded rows not yet written: with `holding` (attached to a loop) rows wait here until
     * sb_ledger_flush, so a loop pass writes its rows in one write(2). */
    char *hold;
    size_t hold_len;
    bool holding;
    /* The last write failed (said once, until one succeeds); sb_ledger_full reads it on any
     * thread. */
    atomic_bool failing;
    /* Shared: written by the worker, read by the store thread and by sb_ledger_full. */
    _Atomic uint64_t cur_seg; /* the segment the worker writes; raised only after its last
                                 write to the previous one, so a lower one is complete */
    _Atomic uint64_t written; /* bytes appended to this run's segments */
    _Atomic uint64_t applied; /* of those, bytes in the database (or skipped) */
    /* The store thread only. */
    int rfd;
    uint64_t rseg;
    uint64_t roff;
    struct refusal refused;
    /* Completions of admin jobs, from the store thread to the worker's loop. */
    uv_mutex_t mu;
    bool attached;
    uv_async_t *async;
    struct job *done_head, *done_tail;
};

struct sb_ledger {
    char *dir;
    int nworkers;
    uint64_t max_bytes;
    int flush_ms;
    struct sb_store *store;
    struct sb_policy *policy;
    struct worker *w;

    uv_thread_t thread;
    bool thread_started;
    uv_loop_t loop;
    bool loop_ready;
    uv_timer_t flush_timer;
    uv_timer_t reset_timer;
    uv_timer_t sync_timer;
    uv_async_t wake;

    /* The sync (store thread only). */
    int sync_ms;
    int64_t feed_seq;     /* the highest change sequence applied to the policy */
    int64_t last_prune_s; /* Unix s */

    uv_mutex_t jmu; /* the job queue and `stopping` */
    struct job *jhead, *jtail;
    bool stopping;

    uv_mutex_t smu; /* sync waiters */
    uv_cond_t scond;

    atomic_bool db_up;
    int64_t retry_at_ms;
    int backoff_ms;

    /* The store thread's scratch: one batch of parsed rows and where each line ends. */
    struct sb_spend_row *rows;
    uint64_t *ends;
    size_t nrows;
    char *rbuf;

    _Atomic uint64_t rows_applied; /* inserted (duplicates not counted) */
    _Atomic uint64_t rows_skipped; /* refused by the database after retries */
    _Atomic uint64_t lines_bad;    /* unparsable or truncated journal lines */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int seg_path(const struct sb_ledger *l, int worker, uint64_t seg, char *out, size_t n)
{
    int r = snprintf(out, n, "%s/w%d-%012llu.jsonl", l->dir, worker, (unsigned long long)seg);
    return r < 0 || (size_t)r >= n ? -1 : 0;
}

/* ---- the journal line: one flat JSON object, written and read only here ---- */

struct out {
    char *p;
    size_t len, cap;
    bool over;
};

static void out_raw(struct out *o, const char *s, size_t n)
{
    if (o->over || o->cap - o->len < n) {
        o->over = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

/* Strings are copied byte for byte except '"', '\\' and control characters, so a value that
 * is not UTF-8 (an end user id is the client's) still reads back exactly. Runs of plain bytes
 * go in one copy. */
static void out_str(struct out *o, const char *key, size_t key_len, const char *s, size_t max)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strnlen(s, max);
    out_raw(o, "\"", 1);
    out_raw(o, key, key_len);
    out_raw(o, "\":\"", 3);
    for (size_t i = 0; i < n;) {
        size_t run = sb_plain_run(s, i, n, true);
        if (run > i) {
            out_raw(o, s + i, run - i);
            i = run;
            continue;
        }
        unsigned char c = (unsigned char)s[i++];
        if (c == '"' || c == '\\') {
            char e[2] = {'\\', (char)c};
            out_raw(o, e, 2);
        } else {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            out_raw(o, e, 6);
        }
    }
    out_raw(o, "\",", 2);
}

/* By hand rather than snprintf: a row has ten of these and every request writes one. */
static void out_int(struct out *o, const char *key, size_t key_len, int64_t v)
{
    char tmp[24];
    size_t k = sizeof tmp;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[--k] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[--k] = '-';
    out_raw(o, "\"", 1);
    out_raw(o, key, key_len);
    out_raw(o, "\":", 2);
    out_raw(o, tmp + k, sizeof tmp - k);
    out_raw(o, ",", 1);
}

static void out_bool(struct out *o, const char *key, size_t key_len, bool v)
{
    out_raw(o, "\"", 1);
    out_raw(o, key, key_len);
    out_raw(o, v ? "\":true," : "\":false,", v ? 7 : 8);
}

#define OUT_STR(o, r, f)  out_str(o, #f, sizeof #f - 1, (r)->f, sizeof((r)->f))
#define OUT_INT(o, r, f)  out_int(o, #f, sizeof #f - 1, (r)->f)
#define OUT_BOOL(o, r, f) out_bool(o, #f, sizeof #f - 1, (r)->f)

/* The row as one line ending in '\n'; its length, or 0 if it does not fit. */
static size_t encode_row(char *buf, size_t cap, const struct sb_spend_row *r)
{
    struct out o = {.p = buf, .cap = cap};
    out_raw(&o, "{", 1);
    OUT_STR(&o, r, request_id);
    OUT_STR(&o, r, key_hash);
    OUT_STR(&o, r, team_id);
    OUT_STR(&o, r, user_id);
    OUT_STR(&o, r, end_user);
    OUT_STR(&o, r, model);
    OUT_STR(&o, r, deployment);
    OUT_STR(&o, r, provider);
    OUT_STR(&o, r, route);
    OUT_INT(&o, r, prompt_tokens);
    OUT_INT(&o, r, completion_tokens);
    OUT_INT(&o, r, cache_read_tokens);
    OUT_INT(&o, r, cache_write_tokens);
    OUT_INT(&o, r, reasoning_tokens);
    OUT_INT(&o, r, cost_nano);
    OUT_INT(&o, r, start_ms);
    OUT_INT(&o, r, end_ms);
    OUT_INT(&o, r, status);
    OUT_BOOL(&o, r, cost_known);
    OUT_BOOL(&o, r, cache_hit);
    if (o.over)
        return 0;
    o.p[o.len - 1] = '}'; /* the last member's ',' */
    out_raw(&o, "\n", 1);
    return o.over ? 0 : o.len;
}

struct in {
    const char *p;
    size_t pos, n;
};

static void in_ws(struct in *s)
{
    while (s->pos < s->n && (s->p[s->pos] == ' ' || s->p[s->pos] == '\t' || s->p[s->pos] == '\r'))
        s->pos++;
}

/* Reads a string into out (NUL-terminated, at most cap - 1 bytes; longer is an error). out
 * NULL: the string is only skipped. Runs of plain bytes are copied at once. */
static int in_str(struct in *s, char *out, size_t cap)
{
    size_t len = 0;
    if (s->pos >= s->n || s->p[s->pos] != '"')
        return -1;
    s->pos++;
    for (;;) {
        size_t run = sb_plain_run(s->p, s->pos, s->n, false);
        if (run > s->pos) {
            size_t k = run - s->pos;
            if (out) {
                if (len + k >= cap)
                    return -1;
                memcpy(out + len, s->p + s->pos, k);
                len += k;
            }
            s->pos = run;
        }
        if (s->pos >= s->n)
            return -1;
        unsigned char c = (unsigned char)s->p[s->pos++];
        if (c == '"')
            break;
        if (c != '\\')
            return -1; /* a control character */
        if (s->pos >= s->n)
            return -1;
        char e = s->p[s->pos++];
        switch (e) {
        case '"':
        case '\\':
        case '/':
            c = (unsigned char)e;
            break;
        case 'n':
            c = '\n';
            break;
        case 't':
            c = '\t';
            break;
        case 'r':
            c = '\r';
            break;
        case 'b':
            c = '\b';
            break;
        case 'f':
            c = '\f';
            break;
        case 'u': {
            /* Only the \u00XX escapes encode_row writes. */
            if (s->n - s->pos < 4)
                return -1;
            int v = 0;
            for (int i = 0; i < 4; i++) {
                int h = sb_hex_val(s->p[s->pos + (size_t)i]);
                if (h < 0)
                    return -1;
                v = v * 16 + h;
            }
            s->pos += 4;
            if (v > 0xff || v == 0)
                return -1;
            c = (unsigned char)v;
            break;
        }
        default:
            return -1;
        }
        if (out) {
            if (len + 1 >= cap)
                return -1;
            out[len++] = (char)c;
        }
    }
    if (out)
        out[len] = '\0';
    return 0;
}

/* -?[0-9]+ within int64_t, by hand (strtoll wants a NUL-terminated copy). */
static int in_int(struct in *s, int64_t *v)
{
    bool neg = s->pos < s->n && s->p[s->pos] == '-';
    size_t i = s->pos + (neg ? 1 : 0);
    size_t start = i;
    uint64_t u = 0;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    while (i < s->n && s->p[i] >= '0' && s->p[i] <= '9') {
        unsigned d = (unsigned)(s->p[i] - '0');
        if (u > (limit - d) / 10)
            return -1;
        u = u * 10 + d;
        i++;
    }
    if (i == start)
        return -1;
    s->pos = i;
    *v = neg ? (u == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)u) : (int64_t)u;
    return 0;
}

static int in_lit(struct in *s, const char *lit)
{
    size_t n = strlen(lit);
    if (s->n - s->pos < n || memcmp(s->p + s->pos, lit, n) != 0)
        return -1;
    s->pos += n;
    return 0;
}

static int in_bool(struct in *s, bool *v)
{
    if (in_lit(s, "true") == 0) {
        *v = true;
        return 0;
    }
    if (in_lit(s, "false") == 0) {
        *v = false;
        return 0;
    }
    return -1;
}

#define FIELD(f, size, type)                                                                       \
    {                                                                                              \
#f, sizeof #f - 1, offsetof(struct sb_spend_row, f), size, type                            \
    }
#define STR_FIELD(f) FIELD(f, sizeof(((struct sb_spend_row *)0)->f), 's')
#define INT_FIELD(f) FIELD(f, sizeof(int64_t), 'i')

/* In encode_row's order: parse_row looks for each key from the one after the last found. */
static const struct field {
    const char *name;
    size_t name_len;
    size_t off, size;
    char type; /* 's' string, 'i' int64_t, 'n' int, 'b' bool */
} fields[] = {
    STR_FIELD(request_id),
    STR_FIELD(key_hash),
    STR_FIELD(team_id),
    STR_FIELD(user_id),
    STR_FIELD(end_user),
    STR_FIELD(model),
    STR_FIELD(deployment),
    STR_FIELD(provider),
    STR_FIELD(route),
    INT_FIELD(prompt_tokens),
    INT_FIELD(completion_tokens),
    INT_FIELD(cache_read_tokens),
    INT_FIELD(cache_write_tokens),
    INT_FIELD(reasoning_tokens),
    INT_FIELD(cost_nano),
    INT_FIELD(start_ms),
    INT_FIELD(end_ms),
    FIELD(status, sizeof(int), 'n'),
    FIELD(cost_known, sizeof(bool), 'b'),
    FIELD(cache_hit, sizeof(bool), 'b'),
};
#define NFIELDS (sizeof fields / sizeof fields[0])

static const struct field *find_field(const char *key, size_t len, size_t *hint)
{
    for (size_t k = 0; k < NFIELDS; k++) {
        size_t i = (*hint + k) % NFIELDS;
        if (fields[i].name_len == len && memcmp(fields[i].name, key, len) == 0) {
            *hint = i + 1;
            return &fields[i];
        }
    }
    return NULL;
}

/* The key encode_row writes next, taken without copying it; NULL (nothing taken) when the
 * line has another key here. */
static const struct field *next_key(struct in *s, size_t *hint)
{
    if (*hint >= NFIELDS)
        return NULL;
    const struct field *f = &fields[*hint];
    size_t at = s->pos;
    if (s->n - at < f->name_len + 2 || s->p[at] != '"' ||
        memcmp(s->p + at + 1, f->name, f->name_len) != 0 || s->p[at + 1 + f->name_len] != '"')
        return NULL;
    s->pos = at + f->name_len + 2;
    *hint += 1;
    return f;
}

/* Parses one line (without its '\n'). Unknown members are ignored; a row needs its
 * request_id, since that is what makes a write happen at most once. 0 or -1. */
static int parse_row(const char *p, size_t n, struct sb_spend_row *row)
{
    struct in s = {.p = p, .n = n};
    size_t hint = 0;
    memset(row, 0, sizeof *row);
    in_ws(&s);
    if (in_lit(&s, "{") != 0)
        return -1;
    in_ws(&s);
    if (in_lit(&s, "}") != 0) {
        for (;;) {
            in_ws(&s);
            const struct field *f = next_key(&s, &hint);
            if (f == NULL) {
                char key[32];
                if (in_str(&s, key, sizeof key) != 0)
                    return -1;
                f = find_field(key, strlen(key), &hint);
            }
            in_ws(&s);
            if (in_lit(&s, ":") != 0)
                return -1;
            in_ws(&s);
            char *dst = f ? (char *)row + f->off : NULL;
            int rc;
            int64_t iv;
            bool bv;
            switch (f ? f->type : 0) {
            case 's':
                rc = in_str(&s, dst, f->size);
                break;
            case 'i':
                rc = in_int(&s, &iv);
                if (rc == 0)
                    memcpy(dst, &iv, sizeof iv);
                break;
            case 'n':
                rc = in_int(&s, &iv);
                if (rc == 0 && (iv < INT_MIN || iv > INT_MAX))
                    return -1;
                if (rc == 0) {
                    int x = (int)iv;
                    memcpy(dst, &x, sizeof x);
                }
                break;
            case 'b':
                rc = in_bool(&s, &bv);
                if (rc == 0)
                    memcpy(dst, &bv, sizeof bv);
                break;
            default:
                rc = s.pos < s.n && s.p[s.pos] == '"' ? in_str(&s, NULL, 0)
                     : in_lit(&s, "null") == 0        ? 0
                     : in_bool(&s, &bv) == 0          ? 0
                                                      : in_int(&s, &iv);
            }
            if (rc != 0)
                return -1;
            in_ws(&s);
            if (in_lit(&s, ",") == 0)
                continue;
            if (in_lit(&s, "}") == 0)
                break;
            return -1;
        }
    }
    in_ws(&s);
    if (s.pos != s.n)
        return -1;
    return row->request_id[0] ? 0 : -1;
}

/* ---- worker side ---- */

static int open_segment(struct sb_ledger *l, int worker, struct worker *w)
{
    char path[PATH_MAX];
    if (seg_path(l, worker, w->seg, path, sizeof path) != 0)
        return -1;
    w->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        if (!atomic_load(&w->failing)) /* said once, not on every loop pass until it works */
            sb_error("ledger: cannot open journal %s: %s; spend rows held, new requests "
                     "refused until it works",
                     path, strerror(errno));
        return -1;
    }
    struct stat st;
    w->seg_bytes = fstat(w->fd, &st) == 0 ? (uint64_t)st.st_size : 0;
    return 0;
}

static void rotate(struct worker *w)
{
    close(w->fd);
    w->fd = -1;
    w->seg++;
    w->seg_bytes = 0;
    atomic_store_explicit(&w->cur_seg, w->seg, memory_order_release);
}

/* Writes what the worker holds. 0, or -1 with the rows still held (retried on the next
 * flush; meanwhile sb_ledger_full refuses new requests). */
static int write_held(struct sb_ledger *l, int worker, struct worker *w)
{
    if (w->hold_len == 0)
        return 0;
    if (w->fd < 0 && open_segment(l, worker, w) != 0) {
        atomic_store(&w->failing, true);
        return -1;
    }
    size_t n = w->hold_len;
    ssize_t r;
    do {
        r = write(w->fd, w->hold, n);
    } while (r < 0 && errno == EINTR);
    if (r != (ssize_t)n) {
        if (!atomic_load(&w->failing))
            sb_error("ledger: journal write failed for worker %d: %s; %zu bytes of spend rows "
                     "held, new requests refused until it works",
                     worker, r < 0 ? strerror(errno) : "short write", n);
        atomic_store(&w->failing, true);
        /* A partial line would glue itself to the next one: cut it off, or if that fails,
         * leave it as the truncated tail of a closed segment (the reader skips it). */
        if (r > 0 && ftruncate(w->fd, (off_t)w->seg_bytes) != 0) {
            atomic_fetch_add_explicit(&w->written, (uint64_t)r, memory_order_release);
            rotate(w);
        }
        return -1;
    }
    if (atomic_load(&w->failing))
        sb_info("ledger: journal of worker %d writable again", worker);
    atomic_store(&w->failing, false);
    w->hold_len = 0;
    w->seg_bytes += n;
    atomic_fetch_add_explicit(&w->written, n, memory_order_release);
    if (w->seg_bytes >= SEG_MAX)
        rotate(w);
    return 0;
}

int sb_ledger_record(struct sb_ledger *l, int worker, const struct sb_spend_row *row)
{
    if (!l || worker < 0 || worker >= l->nworkers || !row)
        return -1;
    struct worker *w = &l->w[worker];
    if (!w->hold && !(w->hold = malloc(HOLD_CAP)))
        return -1;
    if (HOLD_CAP - w->hold_len < LINE_CAP && write_held(l, worker, w) != 0)
        return -1; /* nowhere to keep it */
    size_t n = encode_row(w->hold + w->hold_len, LINE_CAP, row);
    if (n == 0)
        return -1;
    w->hold_len += n;
    if (!w->holding)
        (void)write_held(l, worker, w); /* on failure the row stays held, tried again */
    return 0;
}

int sb_ledger_flush(struct sb_ledger *l, int worker)
{
    if (!l || worker < 0 || worker >= l->nworkers)
        return -1;
    return write_held(l, worker, &l->w[worker]);
}

static uint64_t unapplied(const struct worker *w)
{
    uint64_t a = atomic_load_explicit(&w->applied, memory_order_acquire);
    uint64_t wr = atomic_load_explicit(&w->written, memory_order_acquire);
    return wr > a ? wr - a : 0;
}

bool sb_ledger_full(const struct sb_ledger *l)
{
    uint64_t total = 0;
    for (int i = 0; i < l->nworkers; i++) {
        if (atomic_load(&l->w[i].failing))
            return true;
        total += unapplied(&l->w[i]);
    }
    return total > l->max_bytes;
}

bool sb_ledger_db_up(const struct sb_ledger *l)
{
    return atomic_load(&l->db_up);
}

/* ---- applying journals (store thread, and start before the thread runs) ---- */

enum { APPLY_RETRY = 1 }; /* a refused row waits for its next attempt */

static void advance(uint64_t *off, _Atomic uint64_t *applied, uint64_t to)
{
    if (to <= *off)
        return;
    if (applied)
        atomic_fetch_add_explicit(applied, to - *off, memory_order_release);
    *off = to;
}

/* A row of this run is in the database (or skipped for good): its cost is no longer pending in
 * the policy. `applied` is NULL only for the journals of an earlier run (recover), whose rows
 * this process never settled. Whether this call inserted the row or an earlier attempt did
 * (a lost COMMIT acknowledgment) does not matter: the database total has it either way. */
static void unpend(struct sb_ledger *l, _Atomic uint64_t *applied, const struct sb_spend_row *row)
{
    if (l->policy != NULL && applied != NULL)
        sb_policy_applied(l->policy, row);
}

/* Writes the batch l->rows[0..nrows), whose lines start at `start`. 0 (all written or
 * skipped), SB_STORE_E_DOWN or APPLY_RETRY; the offset advances past what is done. */
static int write_batch(struct sb_ledger *l, const char *name, uint64_t start, uint64_t *off,
                       _Atomic uint64_t *applied, struct refusal *rf)
{
    size_t ins = 0;
    int rc = sb_store_spend_write(l->store, l->rows, l->nrows, &ins);
    if (rc == 0) {
        atomic_fetch_add(&l->rows_applied, ins);
        for (size_t i = 0; i < l->nrows; i++)
            unpend(l, applied, &l->rows[i]);
        advance(off, applied, l->ends[l->nrows - 1]);
        l->nrows = 0;
        return 0;
    }
    if (rc == SB_STORE_E_DOWN)
        return rc;
    /* All or nothing failed: find the row the database refuses, one row at a time. */
    for (size_t i = 0; i < l->nrows; i++) {
        rc = sb_store_spend_write(l->store, &l->rows[i], 1, &ins);
        if (rc == SB_STORE_E_DOWN)
            return rc;
        uint64_t row_start = i == 0 ? start : l->ends[i - 1];
        if (rc != 0) {
            int64_t t = now_ms();
            if (rf->off != row_start) {
                rf->off = row_start;
                rf->tries = 0;
                rf->first_ms = t;
                sb_warn("ledger: the database refused spend row %s (%s @%" PRIu64 "): %d; "
                        "retrying",
                        l->rows[i].request_id, name, row_start, rc);
            }
            rf->tries++;
            /* SB_STORE_E_INVALID is the row itself (a field the store does not take): it
             * cannot succeed later, unlike a passing database error. */
            if (rc != SB_STORE_E_INVALID &&
                (rf->tries < REFUSE_TRIES || t - rf->first_ms < refuse_window_ms)) {
                l->nrows = 0;
                return APPLY_RETRY;
            }
            sb_error("ledger: skipping spend row %s after %d attempts: %d", l->rows[i].request_id,
                     rf->tries, rc);
            atomic_fetch_add(&l->rows_skipped, 1);
            rf->off = UINT64_MAX;
        } else {
            atomic_fetch_add(&l->rows_applied, ins);
        }
        unpend(l, applied, &l->rows[i]);
        advance(off, applied, l->ends[i]);
    }
    l->nrows = 0;
    return 0;
}

/* Applies the complete lines of an open segment from *off on. 0 once no complete line is
 * left (a partial last line stays, a worker may be writing it), SB_STORE_E_DOWN or
 * APPLY_RETRY. */
static int apply_fd(struct sb_ledger *l, int fd, const char *name, uint64_t *off,
                    _Atomic uint64_t *applied, struct refusal *rf)
{
    for (;;) {
        ssize_t n;
        do {
            n = pread(fd, l->rbuf, READ_CHUNK, (off_t)*off);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            sb_error("ledger: cannot read journal %s: %s", name, strerror(errno));
            return 0;
        }
        if (n == 0)
            return 0;
        const char *nl = memrchr(l->rbuf, '\n', (size_t)n);
        if (!nl) {
            if ((size_t)n < READ_CHUNK)
                return 0;
            /* No worker writes a line this long: the file is damaged. */
            sb_warn("ledger: skipping %zd bytes without a line end in %s", n, name);
            atomic_fetch_add(&l->lines_bad, 1);
            advance(off, applied, *off + (uint64_t)n);
            continue;
        }
        size_t end = (size_t)(nl - l->rbuf) + 1;
        uint64_t base = *off;
        uint64_t batch_start = base;
        l->nrows = 0;
        for (size_t pos = 0; pos < end;) {
            const char *p = l->rbuf + pos;
            size_t len = (size_t)((const char *)memchr(p, '\n', end - pos) - p);
            uint64_t line_end = base + pos + len + 1;
            if (len > 0 && parse_row(p, len, &l->rows[l->nrows]) == 0) {
                l->ends[l->nrows++] = line_end;
            } else if (len > 0) {
                sb_warn("ledger: skipping an unreadable line in %s @%" PRIu64, name, base + pos);
                atomic_fetch_add(&l->lines_bad, 1);
            }
            if (l->nrows > 0 && l->ends[l->nrows - 1] != line_end) {
                l->ends[l->nrows - 1] = line_end; /* skipped with the row before it */
            } else if (l->nrows == 0) {
                advance(off, applied, line_end);
                batch_start = line_end;
            }
            pos += len + 1;
            if (l->nrows == BATCH_MAX || (pos >= end && l->nrows > 0)) {
                int rc = write_batch(l, name, batch_start, off, applied, rf);
                if (rc != 0)
                    return rc;
                batch_start = *off;
            }
        }
    }
}

/* The end of a closed segment that is not a whole line: a write cut short by a crash. */
static void skip_tail(struct sb_ledger *l, int fd, const char *name, uint64_t *off,
                      _Atomic uint64_t *applied)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && (uint64_t)st.st_size > *off) {
        sb_warn("ledger: skipping a truncated last line (%" PRIu64 " bytes) in %s",
                (uint64_t)st.st_size - *off, name);
        atomic_fetch_add(&l->lines_bad, 1);
        advance(off, applied, (uint64_t)st.st_size);
    }
}

static void mark_down(struct sb_ledger *l)
{
    if (atomic_exchange(&l->db_up, false))
        sb_warn("ledger: the database is down; spend rows wait in the journal");
    l->backoff_ms = l->backoff_ms ? l->backoff_ms * 2 : BACKOFF_MIN;
    if (l->backoff_ms > BACKOFF_MAX)
        l->backoff_ms = BACKOFF_MAX;
    l->retry_at_ms = now_ms() + l->backoff_ms;
}

/* While the database is down, pings it no more often than the backoff allows. */
static bool db_ready(struct sb_ledger *l, bool force)
{
    if (atomic_load(&l->db_up))
        return true;
    if (!force && now_ms() < l->retry_at_ms)
        return false;
    if (sb_store_ping(l->store) != 0) {
        mark_down(l);
        return false;
    }
    atomic_store(&l->db_up, true);
    l->backoff_ms = 0;
    sb_info("ledger: the database is back; applying the journal");
    return true;
}

/* Applies what worker i has journaled. `final`: the workers have stopped, so the current
 * segment is complete too. 0, SB_STORE_E_DOWN or APPLY_RETRY. */
static int apply_worker(struct sb_ledger *l, int i, bool final)
{
    struct worker *w = &l->w[i];
    char path[PATH_MAX];
    for (;;) {
        uint64_t cur = atomic_load_explicit(&w->cur_seg, memory_order_acquire);
        if (final)
            cur++;
        if (seg_path(l, i, w->rseg, path, sizeof path) != 0)
            return 0;
        if (w->rfd < 0) {
            w->rfd = open(path, O_RDONLY | O_CLOEXEC);
            if (w->rfd < 0) {
                if (errno == ENOENT && w->rseg < cur) {
                    w->rseg++;
                    w->roff = 0;
                    continue;
                }
                if (errno != ENOENT)
                    sb_error("ledger: cannot open journal %s: %s", path, strerror(errno));
                return 0;
            }
        }
        int rc = apply_fd(l, w->rfd, path, &w->roff, &w->applied, &w->refused);
        if (rc != 0 || w->rseg >= cur)
            return rc;
        skip_tail(l, w->rfd, path, &w->roff, &w->applied);
        close(w->rfd);
        w->rfd = -1;
        if (unlink(path) != 0)
            sb_warn("ledger: cannot remove applied journal %s: %s", path, strerror(errno));
        w->rseg++;
        w->roff = 0;
    }
}

static void wake_syncers(struct sb_ledger *l)
{
    uv_mutex_lock(&l->smu);
    uv_cond_broadcast(&l->scond);
    uv_mutex_unlock(&l->smu);
}

/* One pass over every worker's journal. false when the database is down. */
static bool flush_all(struct sb_ledger *l, bool final, bool force)
{
    bool ok = db_ready(l, force);
    for (int i = 0; ok && i < l->nworkers; i++) {
        if (apply_worker(l, i, final) == SB_STORE_E_DOWN) {
            mark_down(l);
            ok = false;
        }
    }
    wake_syncers(l);
    return ok;
}

/* ---- recovery of an earlier run's journals ---- */

struct leftover {
    uint64_t seg;
    int worker;
    char name[NAME_MAX + 1];
};

static int cmp_leftover(const void *a, const void *b)
{
    const struct leftover *x = a, *y = b;
    if (x->seg != y->seg)
        return x->seg < y->seg ? -1 : 1;
    return (x->worker > y->worker) - (x->worker < y->worker);
}

/* "w<worker>-<segment>.jsonl" */
static bool parse_seg_name(const char *s, int *worker, uint64_t *seg)
{
    if (s[0] != 'w' || s[1] < '0' || s[1] > '9')
        return false;
    char *end;
    errno = 0;
    long wk = strtol(s + 1, &end, 10);
    if (errno != 0 || *end != '-' || wk < 0 || wk > INT_MAX || end[1] < '0' || end[1] > '9')
        return false;
    errno = 0;
    unsigned long long sg = strtoull(end + 1, &end, 10);
    if (errno != 0 || strcmp(end, ".jsonl") != 0)
        return false;
    *worker = (int)wk;
    *seg = sg;
    return true;
}

/* Applies and removes leftover segments, oldest first. The highest segment number seen goes
 * to *max_seg, so this run's segments sort after them. A segment that cannot be applied
 * (the database stays down) is kept for the next start. */
static int recover(struct sb_ledger *l, uint64_t *max_seg, char *err, size_t err_len)
{
    DIR *d = opendir(l->dir);
    if (!d) {
        snprintf(err, err_len, "cannot read journal_dir %s: %s", l->dir, strerror(errno));
        return -1;
    }
    struct leftover *v = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    *max_seg = 0;
    while ((de = readdir(d)) != NULL) {
        int wk;
        uint64_t sg;
        if (!parse_seg_name(de->d_name, &wk, &sg) || strlen(de->d_name) > NAME_MAX)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            struct leftover *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                free(v);
                closedir(d);
                snprintf(err, err_len, "out of memory");
                return -1;
            }
            v = nv;
            cap = nc;
        }
        v[n].seg = sg;
        v[n].worker = wk;
        snprintf(v[n].name, sizeof v[n].name, "%s", de->d_name);
        if (sg > *max_seg)
            *max_seg = sg;
        n++;
    }
    closedir(d);
    if (n > 0) {
        qsort(v, n, sizeof *v, cmp_leftover);
        sb_info("ledger: applying %zu journal segment(s) left by an earlier run", n);
    }
    int64_t deadline = now_ms() + STOP_RETRY_MS;
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        int r = snprintf(path, sizeof path, "%s/%s", l->dir, v[i].name);
        if (r < 0 || (size_t)r >= sizeof path)
            continue;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            sb_warn("ledger: cannot open journal %s: %s", path, strerror(errno));
            continue;
        }
        uint64_t off = 0;
        struct refusal rf = {.off = UINT64_MAX};
        int rc;
        while ((rc = apply_fd(l, fd, path, &off, NULL, &rf)) != 0) {
            if (now_ms() >= deadline)
                break;
            if (rc == SB_STORE_E_DOWN) {
                mark_down(l);
                sleep_ms(l->backoff_ms);
                db_ready(l, true);
            } else {
                sleep_ms(BACKOFF_MIN);
            }
        }
        if (rc == 0) {
            skip_tail(l, fd, path, &off, NULL);
            if (unlink(path) != 0)
                sb_warn("ledger: cannot remove applied journal %s: %s", path, strerror(errno));
        } else {
            sb_warn("ledger: %s kept for the next start (the database did not take it)", path);
        }
        close(fd);
    }
    free(v);
    return 0;
}

/* ---- loading the policy ---- */

static const char *const id_field[SB_ENT_COUNT] = {
    [SB_ENT_KEY] = "token",
    [SB_ENT_TEAM] = "team_id",
    [SB_ENT_USER] = "user_id",
    [SB_ENT_CUSTOMER] = "user_id",
};

struct idlist {
    char **v;
    size_t n, cap;
};

static void idlist_add(void *ud, const char *id)
{
    struct idlist *il = ud;
    if (il->n == il->cap) {
        size_t nc = il->cap ? il->cap * 2 : 64;
        char **nv = realloc(il->v, nc * sizeof *nv);
        if (!nv)
            return; /* the caller sees the id missing */
        il->v = nv;
        il->cap = nc;
    }
    char *copy = strdup(id);
    if (copy)
        il->v[il->n++] = copy;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

struct prune {
    struct sb_policy *policy;
    enum sb_entity kind;
    struct idlist *listed; /* sorted */
};

static void prune_one(void *ud, const char *id)
{
    struct prune *pr = ud;
    if (pr->listed->n == 0 ||
        !bsearch(&id, pr->listed->v, pr->listed->n, sizeof *pr->listed->v, cmp_id))
        sb_policy_remove(pr->policy, pr->kind, id);
}

static void idlist_free(struct idlist *il)
{
    for (size_t i = 0; i < il->n; i++)
        free(il->v[i]);
    free(il->v);
    *il = (struct idlist){0};
}

/* Every record into the policy. take_spend: the in-memory spend comes from the records (at
 * start); otherwise (a reload) it stays and the spend sync corrects it, and the entities the
 * database no longer has (deleted while this instance could not read the changes) go. */
static int load_policy(struct sb_ledger *l, bool take_spend, char *err, size_t err_len)
{
    for (int kind = 0; kind < SB_ENT_COUNT; kind++) {
        /* A reload also drops what was deleted meanwhile: everything not listed. */
        struct idlist listed = {0};
        bool complete = true;
        for (size_t offset = 0;;) {
            json_t *page = NULL;
            int rc =
                sb_store_list(l->store, (enum sb_entity)kind, NULL, NULL, offset, LIST_PAGE, &page);
            if (rc != 0) {
                idlist_free(&listed);
                snprintf(err, err_len, "cannot list records (kind %d): store error %d", kind, rc);
                return rc == SB_STORE_E_DOWN ? SB_STORE_E_DOWN : -1;
            }
            size_t i, got = json_array_size(page);
            json_t *rec;
            json_array_foreach(page, i, rec)
            {
                const char *id = json_string_value(json_object_get(rec, id_field[kind]));
                if (!id ||
                    sb_policy_upsert(l->policy, (enum sb_entity)kind, id, rec, take_spend) != 0)
                    sb_warn("ledger: a stored record (kind %d) was not loaded", kind);
                if (id && !take_spend) {
                    size_t before = listed.n;
                    idlist_add(&listed, id);
                    complete = complete && listed.n > before;
                }
            }
            json_decref(page);
            if (got < LIST_PAGE)
                break;
            offset += got;
        }
        if (!take_spend && complete) {
            if (listed.n > 1)
                qsort(listed.v, listed.n, sizeof *listed.v, cmp_id);
            struct prune pr = {l->policy, (enum sb_entity)kind, &listed};
            sb_policy_each(l->policy, (enum sb_entity)kind, prune_one, &pr);
        }
        idlist_free(&listed);
    }
    return 0;
}

/* ---- the sync with other instances (change feed, spend totals) ---- */

/* One changed entity: its record from the store into the policy, or out of it when gone.
 * The in-memory spend of an entity already known stays (sb_policy_upsert without take_spend):
 * the spend sync owns it. 0, SB_STORE_E_DOWN, or another store error (logged). */
static int apply_change(struct sb_ledger *l, enum sb_entity kind, const char *id)
{
    json_t *rec = NULL;
    int rc = sb_store_get(l->store, kind, id, &rec);
    if (rc == 0) {
        if (sb_policy_upsert(l->policy, kind, id, rec, false) != 0)
            sb_warn("ledger: a changed record (kind %d) was refused by the policy", (int)kind);
        json_decref(rec);
        return 0;
    }
    if (rc == SB_STORE_E_NOT_FOUND) {
        sb_policy_remove(l->policy, kind, id);
        return 0;
    }
    if (rc != SB_STORE_E_DOWN)
        sb_warn("ledger: cannot read a changed record (kind %d): store error %d", (int)kind, rc);
    return rc;
}

/* Sets the in-memory spend of the given ids from the database's totals. */
static int sync_ids(struct sb_ledger *l, enum sb_entity kind, const char *const *ids, size_t n)
{
    json_t *out = NULL;
    int rc = sb_store_spend_read(l->store, kind, ids, n, &out);
    if (rc != 0)
        return rc;
    const char *id;
    json_t *e;
    json_object_foreach(out, id, e)
    {
        sb_policy_sync_spend(l->policy, kind, id,
                             (int64_t)json_integer_value(json_object_get(e, "spend_nano")),
                             json_object_get(e, "model_spend_nano"));
    }
    json_decref(out);
    return 0;
}

/* The record and spend of one entity again (another instance reset its period first). */
static int refresh_one(struct sb_ledger *l, enum sb_entity kind, const char *id)
{
    int rc = apply_change(l, kind, id);
    if (rc == 0)
        rc = sync_ids(l, kind, &id, 1);
    return rc;
}

/* Reads the change feed from feed_seq on. A reader that fell behind the pruned part of the
 * log (a database outage longer than PRUNE_AGE_S) lists every record again instead. */
static int poll_feed(struct sb_ledger *l)
{
    struct sb_change *ch = malloc(FEED_BATCH * sizeof *ch);
    if (!ch)
        return 0; /* next tick */
    int rc = 0;
    for (int pass = 0; pass < FEED_PASSES && rc == 0; pass++) {
        size_t n = 0;
        int64_t head = 0, oldest = 0;
        rc = sb_store_changes(l->store, l->feed_seq, ch, FEED_BATCH, &n, &head, &oldest);
        if (rc != 0)
            break;
        if (oldest > l->feed_seq + 1) {
            char err[160];
            sb_warn("ledger: changes up to %" PRId64 " were pruned before this instance read "
                    "them; reloading every record",
                    oldest - 1);
            rc = load_policy(l, false, err, sizeof err);
            if (rc == 0)
                l->feed_seq = head; /* read before the listing: nothing after it is lost */
            break;
        }
        for (size_t i = 0; i < n; i++) {
            rc = apply_change(l, ch[i].kind, ch[i].id);
            if (rc == SB_STORE_E_DOWN)
                break; /* this change again once the database is back */
            rc = 0;
            l->feed_seq = ch[i].seq;
        }
        if (n < FEED_BATCH)
            break;
    }
    free(ch);
    return rc;
}

/* The spend of every entity with a budget, from the database, plus this process's pending.
 * Cost: one or two indexed statements per SB_STORE_SPEND_IDS_MAX budgeted entities. */
static int sync_spend(struct sb_ledger *l)
{
    int rc = 0;
    for (int kind = 0; kind < SB_ENT_COUNT && rc == 0; kind++) {
        struct idlist il = {0};
        sb_policy_budgeted(l->policy, (enum sb_entity)kind, idlist_add, &il);
        for (size_t at = 0; at < il.n && rc == 0; at += SB_STORE_SPEND_IDS_MAX) {
            size_t m = il.n - at < SB_STORE_SPEND_IDS_MAX ? il.n - at : SB_STORE_SPEND_IDS_MAX;
            rc = sync_ids(l, (enum sb_entity)kind, (const char *const *)il.v + at, m);
        }
        idlist_free(&il);
    }
    return rc;
}

static void run_sync(struct sb_ledger *l)
{
    if (!l->policy || !db_ready(l, false))
        return;
    int rc = poll_feed(l);
    if (rc == 0)
        rc = sync_spend(l);
    int64_t now = (int64_t)time(NULL);
    if (rc == 0 && now - l->last_prune_s >= PRUNE_EVERY_S) {
        size_t gone = 0;
        rc = sb_store_changes_prune(l->store, now - PRUNE_AGE_S, &gone);
        l->last_prune_s = now;
    }
    if (rc == SB_STORE_E_DOWN)
        mark_down(l);
    else if (rc != 0)
        sb_warn("ledger: sync with the database failed: store error %d", rc);
}

/* ---- budget resets ---- */

struct due {
    enum sb_entity kind;
    char *id;
    int64_t duration_s;
};

struct due_list {
    struct due *v;
    size_t n, cap;
};

static void on_due(void *ud, enum sb_entity kind, const char *id, const char *budget_duration)
{
    struct due_list *dl = ud;
    if (dl->n == dl->cap) {
        size_t nc = dl->cap ? dl->cap * 2 : 16;
        struct due *nv = realloc(dl->v, nc * sizeof *nv);
        if (!nv)
            return; /* retried on the next tick */
        dl->v = nv;
        dl->cap = nc;
    }
    char *copy = strdup(id);
    if (!copy)
        return;
    int64_t d = budget_duration ? sb_policy_duration_s(budget_duration) : -1;
    dl->v[dl->n++] = (struct due){.kind = kind, .id = copy, .duration_s = d > 0 ? d : 0};
}

static void run_resets(struct sb_ledger *l)
{
    if (!l->policy || !db_ready(l, false))
        return;
    int64_t now = (int64_t)time(NULL);
    struct due_list dl = {0};
    /* Collected first: the callback runs under the policy's lock, and set_spend takes it. */
    sb_policy_due_resets(l->policy, now, on_due, &dl);
    for (size_t i = 0; i < dl.n; i++) {
        struct due *d = &dl.v[i];
        int64_t next = d->duration_s > 0 ? now + d->duration_s : 0;
        /* The period this process saw end: if another instance sharing the database reset it
         * already, budget_reset_at moved and this reset must not zero what was spent since. */
        json_t *cur = sb_policy_get(l->policy, d->kind, d->id);
        json_int_t seen = json_integer_value(json_object_get(cur, "budget_reset_at"));
        json_decref(cur);
        int rc = atomic_load(&l->db_up)
                     ? sb_store_reset_spend_if(l->store, d->kind, d->id, seen > 0 ? seen : 0, next)
                     : SB_STORE_E_DOWN;
        if (rc == SB_STORE_E_CONFLICT) {
            /* Take the other instance's reset: its next reset time and the spend since. */
            rc = refresh_one(l, d->kind, d->id);
            if (rc == SB_STORE_E_DOWN && atomic_load(&l->db_up))
                mark_down(l);
        } else if (rc == SB_STORE_E_DOWN) {
            if (atomic_load(&l->db_up))
                mark_down(l);
        } else if (rc == 0 || rc == SB_STORE_E_NOT_FOUND) {
            sb_policy_set_spend(l->policy, d->kind, d->id, 0, next);
        } else {
            sb_error("ledger: budget reset failed (kind %d, %s): %d", (int)d->kind, d->id, rc);
        }
        free(d->id);
    }
    free(dl.v);
}

/* ---- admin jobs ---- */

static void complete(struct sb_ledger *l, struct job *j)
{
    struct worker *w = &l->w[j->worker];
    uv_mutex_lock(&w->mu);
    if (w->attached) {
        j->next = NULL;
        if (w->done_tail)
            w->done_tail->next = j;
        else
            w->done_head = j;
        w->done_tail = j;
        uv_async_send(w->async);
        j = NULL;
    }
    uv_mutex_unlock(&w->mu);
    free(j); /* the worker detached: its completion is dropped */
}

static void run_jobs(struct sb_ledger *l)
{
    for (;;) {
        uv_mutex_lock(&l->jmu);
        struct job *j = l->jhead;
        if (j) {
            l->jhead = j->next;
            if (!l->jhead)
                l->jtail = NULL;
        }
        uv_mutex_unlock(&l->jmu);
        if (!j)
            return;
        j->rc = j->fn(l->store, l->policy, j->ud);
        if (j->rc == SB_STORE_E_DOWN && atomic_load(&l->db_up))
            mark_down(l);
        complete(l, j);
    }
}

static void on_worker_async(uv_async_t *h)
{
    struct worker *w = h->data;
    uv_mutex_lock(&w->mu);
    struct job *j = w->done_head;
    w->done_head = w->done_tail = NULL;
    uv_mutex_unlock(&w->mu);
    while (j) {
        struct job *next = j->next;
        j->done(j->ud, j->rc);
        free(j);
        j = next;
    }
}

int sb_ledger_attach(struct sb_ledger *l, int worker, uv_loop_t *loop)
{
    if (!l || worker < 0 || worker >= l->nworkers || !loop)
        return -1;
    struct worker *w = &l->w[worker];
    if (w->async)
        return -1;
    uv_async_t *a = malloc(sizeof *a);
    if (!a)
        return -1;
    if (uv_async_init(loop, a, on_worker_async) != 0) {
        free(a);
        return -1;
    }
    a->data = w;
    uv_mutex_lock(&w->mu);
    w->async = a;
    w->attached = true;
    uv_mutex_unlock(&w->mu);
    w->holding = true;
    return 0;
}

static void on_async_closed(uv_handle_t *h)
{
    free(h);
}

void sb_ledger_detach(struct sb_ledger *l, int worker)
{
    if (!l || worker < 0 || worker >= l->nworkers)
        return;
    struct worker *w = &l->w[worker];
    if (write_held(l, worker, w) != 0)
        sb_error("ledger: worker %d stops with %zu bytes of spend rows it could not journal",
                 worker, w->hold_len);
    w->holding = false;
    uv_mutex_lock(&w->mu);
    uv_async_t *a = w->async;
    struct job *j = w->done_head;
    w->attached = false;
    w->async = NULL;
    w->done_head = w->done_tail = NULL;
    uv_mutex_unlock(&w->mu);
    while (j) {
        struct job *next = j->next;
        free(j);
        j = next;
    }
    if (a)
        uv_close((uv_handle_t *)a, on_async_closed);
}

int sb_ledger_submit(struct sb_ledger *l, int worker, sb_ledger_job_fn fn, sb_ledger_done_cb done,
                     void *ud)
{
    if (!l || worker < 0 || worker >= l->nworkers || !fn || !done || !l->w[worker].async)
        return -1;
    struct job *j = calloc(1, sizeof *j);
    if (!j)
        return -1;
    *j = (struct job){.fn = fn, .done = done, .ud = ud, .worker = worker};
    uv_mutex_lock(&l->jmu);
    bool stopping = l->stopping;
    if (!stopping) {
        if (l->jtail)
            l->jtail->next = j;
        else
            l->jhead = j;
        l->jtail = j;
    }
    uv_mutex_unlock(&l->jmu);
    if (stopping) {
        free(j);
        return -1;
    }
    uv_async_send(&l->wake);
    return 0;
}

/* ---- the store thread ---- */

static void on_closed(uv_handle_t *h)
{
    (void)h;
}

static void on_flush_timer(uv_timer_t *t)
{
    struct sb_ledger *l = t->data;
    flush_all(l, false, false);
}

static void on_reset_timer(uv_timer_t *t)
{
    struct sb_ledger *l = t->data;
    /* Rows of the spend being reset go in first, so they are not counted after the reset. */
    if (flush_all(l, false, false))
        run_resets(l);
}

static void on_sync_timer(uv_timer_t *t)
{
    run_sync(t->data);
}

static void on_wake(uv_async_t *a)
{
    struct sb_ledger *l = a->data;
    run_jobs(l);
    uv_mutex_lock(&l->jmu);
    bool stopping = l->stopping;
    uv_mutex_unlock(&l->jmu);
    if (!stopping) {
        flush_all(l, false, false);
        return;
    }
    int64_t deadline = now_ms() + STOP_RETRY_MS;
    while (!flush_all(l, true, true) && now_ms() < deadline)
        sleep_ms(l->backoff_ms ? l->backoff_ms : BACKOFF_MIN);
    run_jobs(l); /* any queued between the first run and `stopping` */
    uv_close((uv_handle_t *)&l->flush_timer, on_closed);
    uv_close((uv_handle_t *)&l->reset_timer, on_closed);
    uv_close((uv_handle_t *)&l->sync_timer, on_closed);
    uv_close((uv_handle_t *)&l->wake, on_closed);
}

static void store_thread(void *arg)
{
    struct sb_ledger *l = arg;
    uv_run(&l->loop, UV_RUN_DEFAULT);
}

/* ---- lifecycle ---- */

static int mkdir_p(const char *dir)
{
    char tmp[PATH_MAX];
    int r = snprintf(tmp, sizeof tmp, "%s", dir);
    if (r < 0 || (size_t)r >= sizeof tmp || r == 0)
        return -1;
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(tmp, 0700) != 0 && errno != EEXIST)
        return -1;
    struct stat st;
    return stat(tmp, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : -1;
}

static void ledger_free(struct sb_ledger *l)
{
    if (!l)
        return;
    for (int i = 0; l->w && i < l->nworkers; i++) {
        struct worker *w = &l->w[i];
        if (w->fd >= 0)
            close(w->fd);
        if (w->rfd >= 0)
            close(w->rfd);
        free(w->hold);
        struct job *j = w->done_head;
        while (j) {
            struct job *next = j->next;
            free(j);
            j = next;
        }
        uv_mutex_destroy(&w->mu);
    }
    struct job *j = l->jhead;
    while (j) {
        struct job *next = j->next;
        free(j);
        j = next;
    }
    if (l->loop_ready)
        uv_loop_close(&l->loop);
    uv_mutex_destroy(&l->jmu);
    uv_mutex_destroy(&l->smu);
    uv_cond_destroy(&l->scond);
    if (l->store)
        sb_store_close(l->store);
    free(l->w);
    free(l->rows);
    free(l->ends);
    free(l->rbuf);
    free(l->dir);
    free(l);
}

struct sb_ledger *sb_ledger_start(const struct sb_ledger_config *c, char *err, size_t err_len)
{
    if (!c || !c->database_url || !c->journal_dir || c->nworkers < 1 || c->nworkers > 4096) {
        snprintf(err, err_len, "ledger: database_url, journal_dir and nworkers are required");
        return NULL;
    }
    struct sb_ledger *l = calloc(1, sizeof *l);
    if (!l) {
        snprintf(err, err_len, "out of memory");
        return NULL;
    }
    uv_mutex_init(&l->jmu);
    uv_mutex_init(&l->smu);
    uv_cond_init(&l->scond);
    l->nworkers = c->nworkers;
    l->max_bytes = c->journal_max_bytes ? c->journal_max_bytes : (uint64_t)256 << 20;
    l->flush_ms = c->flush_ms > 0 ? c->flush_ms : 200;
    l->policy = c->policy;
    l->sync_ms = c->sync_ms > 0 ? c->sync_ms : 0;
    l->dir = strdup(c->journal_dir);
    l->w = calloc((size_t)c->nworkers, sizeof *l->w);
    l->rows = malloc(BATCH_MAX * sizeof *l->rows);
    l->ends = malloc(BATCH_MAX * sizeof *l->ends);
    l->rbuf = malloc(READ_CHUNK);
    if (!l->dir || !l->w || !l->rows || !l->ends || !l->rbuf) {
        snprintf(err, err_len, "out of memory");
        free(l->w);
        l->w = NULL;
        ledger_free(l);
        return NULL;
    }
    for (int i = 0; i < l->nworkers; i++) {
        l->w[i].fd = -1;
        l->w[i].rfd = -1;
        l->w[i].refused.off = UINT64_MAX;
        uv_mutex_init(&l->w[i].mu);
    }
    atomic_store(&l->db_up, true);

    char serr[256] = "";
    l->store = sb_store_open(c->database_url, serr, sizeof serr);
    if (!l->store) {
        snprintf(err, err_len, "cannot open the database: %s", serr);
        goto fail;
    }
    if (mkdir_p(l->dir) != 0) {
        snprintf(err, err_len, "cannot create journal_dir %s: %s", l->dir, strerror(errno));
        goto fail;
    }
    uint64_t max_seg;
    if (recover(l, &max_seg, err, err_len) != 0)
        goto fail;
    for (int i = 0; i < l->nworkers; i++) {
        l->w[i].seg = l->w[i].rseg = max_seg + 1;
        atomic_store(&l->w[i].cur_seg, max_seg + 1);
    }
    if (l->policy) {
        /* The feed's position first: a change committed while the records are listed is read
         * again on the first poll (harmless: applying a change twice is idempotent). */
        size_t none = 0;
        if (sb_store_changes(l->store, 0, NULL, 0, &none, &l->feed_seq, NULL) != 0)
            sb_warn("ledger: cannot read the change feed's position; reading it from the start");
        if (load_policy(l, true, err, err_len) != 0)
            goto fail;
    }

    if (uv_loop_init(&l->loop) != 0) {
        snprintf(err, err_len, "cannot create the store thread's loop");
        goto fail;
    }
    l->loop_ready = true;
    uv_timer_init(&l->loop, &l->flush_timer);
    uv_timer_init(&l->loop, &l->reset_timer);
    uv_timer_init(&l->loop, &l->sync_timer);
    uv_async_init(&l->loop, &l->wake, on_wake);
    l->flush_timer.data = l->reset_timer.data = l->sync_timer.data = l->wake.data = l;
    uv_timer_start(&l->flush_timer, on_flush_timer, (uint64_t)l->flush_ms, (uint64_t)l->flush_ms);
    uv_timer_start(&l->reset_timer, on_reset_timer, 1000, 1000);
    if (l->sync_ms > 0 && l->policy)
        uv_timer_start(&l->sync_timer, on_sync_timer, (uint64_t)l->sync_ms, (uint64_t)l->sync_ms);
    if (uv_thread_create(&l->thread, store_thread, l) != 0) {
        snprintf(err, err_len, "cannot start the store thread");
        uv_close((uv_handle_t *)&l->flush_timer, NULL);
        uv_close((uv_handle_t *)&l->reset_timer, NULL);
        uv_close((uv_handle_t *)&l->sync_timer, NULL);
        uv_close((uv_handle_t *)&l->wake, NULL);
        uv_run(&l->loop, UV_RUN_DEFAULT);
        goto fail;
    }
    l->thread_started = true;
    return l;
fail:
    ledger_free(l);
    return NULL;
}

void sb_ledger_stop(struct sb_ledger *l)
{
    if (!l)
        return;
    /* The workers have stopped: what they still hold goes to the journal now, so that the
     * final pass writes it to the database. */
    for (int i = 0; i < l->nworkers; i++)
        if (write_held(l, i, &l->w[i]) != 0)
            sb_error("ledger: %zu bytes of worker %d's spend rows could not be journaled",
                     l->w[i].hold_len, i);
    uv_mutex_lock(&l->jmu);
    l->stopping = true;
    uv_mutex_unlock(&l->jmu);
    if (l->thread_started) {
        uv_async_send(&l->wake);
        uv_thread_join(&l->thread);
    }
    /* Jobs queued before `stopping` ran in the final wake; their workers have detached. */
    for (int i = 0; i < l->nworkers; i++)
        if (unapplied(&l->w[i]) > 0)
            sb_warn("ledger: worker %d: %" PRIu64 " journal bytes kept for the next start", i,
                    unapplied(&l->w[i]));
    ledger_free(l);
}

int sb_ledger_sync(struct sb_ledger *l, int timeout_ms)
{
    if (!l)
        return -1;
    uint64_t *snap = calloc((size_t)l->nworkers, sizeof *snap);
    if (!snap)
        return -1;
    for (int i = 0; i < l->nworkers; i++)
        snap[i] = atomic_load_explicit(&l->w[i].written, memory_order_acquire);
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
    int rc = -1;
    uv_mutex_lock(&l->smu);
    for (;;) {
        bool done = true;
        for (int i = 0; i < l->nworkers && done; i++)
            done = atomic_load_explicit(&l->w[i].applied, memory_order_acquire) >= snap[i];
        if (done) {
            rc = 0;
            break;
        }
        int64_t left = deadline - now_ms();
        if (left <= 0)
            break;
        uv_async_send(&l->wake);
        /* Bounded waits: a pass that ends between the check and the wait is not missed. */
        (void)uv_cond_timedwait(&l->scond, &l->smu, (uint64_t)(left < 50 ? left : 50) * 1000000ULL);
    }
    uv_mutex_unlock(&l->smu);
    free(snap);
    return rc;
}

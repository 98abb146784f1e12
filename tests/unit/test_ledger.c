/* The ledger against a real SQLite store in a temp folder: journals from several threads,
 * crash recovery, exactly once across restarts, the database going away (injected at the
 * store boundary, and with a real PostgreSQL server when SB_TEST_PG_URL is set), the
 * journal bound, admin jobs and budget resets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include "store/store.h"

#include <stdatomic.h>
#include <string.h>

/* Faults injected where the ledger meets the store: the wrappers call the real functions. */
static atomic_int inject_down;
static atomic_int spend_calls;
static atomic_int inject_fail; /* this many writes of a row "transient-..." fail */

static int inj_spend_write(struct sb_store *s, const struct sb_spend_row *rows, size_t n,
                           size_t *inserted)
{
    atomic_fetch_add(&spend_calls, 1);
    if (atomic_load(&inject_down))
        return SB_STORE_E_DOWN;
    for (size_t i = 0; i < n; i++)
        if (strncmp(rows[i].request_id, "transient-", 10) == 0 &&
            atomic_fetch_sub(&inject_fail, 1) > 0)
            return SB_STORE_E_FAILED;
    return sb_store_spend_write(s, rows, n, inserted);
}

static int inj_ping(struct sb_store *s)
{
    if (atomic_load(&inject_down))
        return SB_STORE_E_DOWN;
    return sb_store_ping(s);
}

static int inj_reset_spend_if(struct sb_store *s, enum sb_entity kind, const char *id,
                              int64_t expect, int64_t next)
{
    if (atomic_load(&inject_down))
        return SB_STORE_E_DOWN;
    return sb_store_reset_spend_if(s, kind, id, expect, next);
}

/* The change feed alone unreadable, as for an instance cut off from the database for longer
 * than the log is kept. */
static atomic_int inject_feed_down;

static int inj_changes(struct sb_store *s, int64_t after, struct sb_change *out, size_t max,
                       size_t *n, int64_t *head, int64_t *oldest)
{
    if (atomic_load(&inject_feed_down))
        return SB_STORE_E_DOWN;
    return sb_store_changes(s, after, out, max, n, head, oldest);
}

#define sb_store_spend_write    inj_spend_write
#define sb_store_ping           inj_ping
#define sb_store_reset_spend_if inj_reset_spend_if
#define sb_store_changes        inj_changes
#include "ledger/ledger.c"
#undef sb_store_spend_write
#undef sb_store_ping
#undef sb_store_reset_spend_if
#undef sb_store_changes

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

struct env {
    char dir[256];
    char jdir[300];
    char url[320];
};

static void env_init(struct env *e)
{
    snprintf(e->dir, sizeof e->dir, "/tmp/sb-ledger-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->jdir, sizeof e->jdir, "%s/journal", e->dir);
    snprintf(e->url, sizeof e->url, "sqlite://%s/sb.db", e->dir);
    atomic_store(&inject_down, 0);
}

static void rm_rf(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        char p[PATH_MAX];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            rm_rf(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static void env_free(struct env *e)
{
    rm_rf(e->dir);
}

static struct sb_ledger *start(const struct env *e, int nworkers, struct sb_policy *p,
                               uint64_t max_bytes, int flush_ms)
{
    struct sb_ledger_config c = {.database_url = e->url,
                                 .journal_dir = e->jdir,
                                 .nworkers = nworkers,
                                 .journal_max_bytes = max_bytes,
                                 .flush_ms = flush_ms,
                                 .policy = p};
    char err[256] = "";
    struct sb_ledger *l = sb_ledger_start(&c, err, sizeof err);
    if (!l)
        fprintf(stderr, "start: %s\n", err);
    return l;
}

static void make_row(struct sb_spend_row *r, const char *id, int64_t cost)
{
    memset(r, 0, sizeof *r);
    snprintf(r->request_id, sizeof r->request_id, "%s", id);
    snprintf(r->model, sizeof r->model, "gpt-4o");
    snprintf(r->deployment, sizeof r->deployment, "openai/gpt-4o-2024-08-06");
    snprintf(r->provider, sizeof r->provider, "openai");
    snprintf(r->route, sizeof r->route, "chat_completions");
    r->prompt_tokens = 12;
    r->completion_tokens = 34;
    r->cost_nano = cost;
    r->cost_known = true;
    r->start_ms = 1700000000000;
    r->end_ms = 1700000000250;
    r->status = 200;
}

static int64_t count_rows(const struct env *e)
{
    char err[256];
    struct sb_store *s = sb_store_open(e->url, err, sizeof err);
    assert_non_null(s);
    int64_t n = -1;
    assert_int_equal(sb_store_spend_count(s, &n), 0);
    sb_store_close(s);
    return n;
}

static bool has_row(const struct env *e, const char *id)
{
    char err[256];
    struct sb_store *s = sb_store_open(e->url, err, sizeof err);
    assert_non_null(s);
    struct sb_spend_filter f = {.request_id = id};
    json_t *out = NULL;
    assert_int_equal(sb_store_spend_logs(s, &f, &out), 0);
    bool found = json_array_size(out) == 1;
    json_decref(out);
    sb_store_close(s);
    return found;
}

static int count_segments(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int w;
        uint64_t s;
        n += parse_seg_name(de->d_name, &w, &s);
    }
    closedir(d);
    return n;
}

static void write_file(const char *path, const char *data, size_t n, bool append)
{
    int fd = open(path, O_WRONLY | O_CREAT | (append ? O_APPEND : O_TRUNC), 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, n), (ssize_t)n);
    close(fd);
}

/* ---- the line format ---- */

static void test_line_roundtrip(void **state)
{
    (void)state;
    struct sb_spend_row r, back;
    make_row(&r, "req-\"quoted\"\\back\x01\x1f\x7f\n", -5);
    /* Not UTF-8: carried byte for byte; the store decides whether it takes it. */
    snprintf(r.end_user, sizeof r.end_user, "caf\xe9\xff");
    memset(r.model, 'm', sizeof r.model - 1);
    r.model[sizeof r.model - 1] = '\0';
    r.prompt_tokens = INT64_MAX;
    r.completion_tokens = INT64_MIN;
    r.status = 499;
    r.cache_hit = true;
    r.cost_known = false;
    char line[LINE_CAP];
    size_t n = encode_row(line, sizeof line, &r);
    assert_true(n > 0);
    assert_int_equal(line[n - 1], '\n');
    assert_null(memchr(line, '\n', n - 1)); /* one line, whatever the fields hold */
    assert_int_equal(parse_row(line, n - 1, &back), 0);
    assert_memory_equal(&r, &back, sizeof r);

    /* A line too long for the buffer is refused, not cut. */
    assert_int_equal(encode_row(line, 100, &r), 0);
}

static void test_line_rejects(void **state)
{
    (void)state;
    struct sb_spend_row r;
    static const char *const bad[] = {
        "",
        "{}",                                            /* no request_id */
        "{\"request_id\":\"\"}",                         /* empty request_id */
        "{\"request_id\":\"a\"",                         /* truncated */
        "{\"request_id\":\"a\"} x",                      /* trailing bytes */
        "{\"request_id\":\"a\\q\"}",                     /* bad escape */
        "{\"request_id\":\"a\\u0000\"}",                 /* NUL */
        "{\"request_id\":\"a\\u0100\"}",                 /* not written by encode_row */
        "{\"request_id\":\"a\",\"status\":99999999999}", /* out of range */
        "{\"request_id\":\"a\",\"cost_nano\":1e3}",      /* not an integer */
        "{\"request_id\":\"a\",\"cost_nano\":99999999999999999999}",
        "{\"request_id\":\"a\",\"cache_hit\":1}",
        "{\"request_id\":\"a\",\"provider\":\"0123456789012345678901234567890123\"}",
        "[\"request_id\"]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(parse_row(bad[i], strlen(bad[i]), &r), -1);
    const char *ok = "{ \"request_id\" : \"x\", \"later\": null, \"n\": -3, \"b\": true, "
                     "\"s\": \"\\u00e9\", \"cost_nano\": 42 }";
    assert_int_equal(parse_row(ok, strlen(ok), &r), 0);
    assert_string_equal(r.request_id, "x");
    assert_int_equal(r.cost_nano, 42);
}

static void test_seg_names(void **state)
{
    (void)state;
    int w;
    uint64_t s;
    assert_true(parse_seg_name("w3-000000000012.jsonl", &w, &s));
    assert_int_equal(w, 3);
    assert_int_equal(s, 12);
    assert_false(parse_seg_name("w3-000000000012.jsonl.tmp", &w, &s));
    assert_false(parse_seg_name("w-1.jsonl", &w, &s));
    assert_false(parse_seg_name("x3-1.jsonl", &w, &s));
    assert_false(parse_seg_name("w3-.jsonl", &w, &s));
    assert_false(parse_seg_name("w99999999999-1.jsonl", &w, &s));
}

/* ---- start ---- */

static void test_start_errors(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    char err[256] = "";
    struct sb_ledger_config c = {
        .database_url = "mysql://nope", .journal_dir = e.jdir, .nworkers = 1};
    assert_null(sb_ledger_start(&c, err, sizeof err));
    assert_true(err[0] != '\0');

    c.database_url = e.url;
    c.nworkers = 0;
    err[0] = '\0';
    assert_null(sb_ledger_start(&c, err, sizeof err));
    assert_true(err[0] != '\0');

    /* journal_dir under a regular file cannot be created. */
    char file[300], jd[320];
    snprintf(file, sizeof file, "%s/plain", e.dir);
    write_file(file, "x", 1, false);
    snprintf(jd, sizeof jd, "%s/j", file);
    c.journal_dir = jd;
    c.nworkers = 1;
    err[0] = '\0';
    assert_null(sb_ledger_start(&c, err, sizeof err));
    assert_non_null(strstr(err, "journal_dir"));
    env_free(&e);
}

/* ---- many workers, exactly once ---- */

struct writer {
    struct sb_ledger *l;
    int worker;
    int n;
    int failures;
};

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < w->n; i++) {
        struct sb_spend_row r;
        char id[64];
        snprintf(id, sizeof id, "w%d-req-%d", w->worker, i);
        make_row(&r, id, 1000);
        /* Padding makes the segments rotate within the test. */
        memset(r.deployment, 'd', 250);
        memset(r.model, 'm', 250);
        if (sb_ledger_record(w->l, w->worker, &r) != 0)
            w->failures++;
        /* The same request again (a retried finalize): it must not count twice. */
        if (i % 10 == 0 && sb_ledger_record(w->l, w->worker, &r) != 0)
            w->failures++;
    }
    return NULL;
}

static void test_threads_exactly_once(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    enum { NW = 4, PER = 1500 };
    struct sb_ledger *l = start(&e, NW, NULL, 0, 20);
    assert_non_null(l);
    pthread_t th[NW];
    struct writer wr[NW];
    for (int i = 0; i < NW; i++) {
        wr[i] = (struct writer){.l = l, .worker = i, .n = PER};
        assert_int_equal(pthread_create(&th[i], NULL, writer_main, &wr[i]), 0);
    }
    for (int i = 0; i < NW; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(wr[i].failures, 0);
    }
    /* More than a segment per worker was written, so rotation happened. */
    assert_true(atomic_load(&l->w[0].written) > SEG_MAX);
    assert_int_equal(sb_ledger_sync(l, 20000), 0);
    assert_int_equal(atomic_load(&l->rows_applied), NW * PER);
    assert_false(sb_ledger_full(l));
    assert_true(sb_ledger_db_up(l));
    /* Applied segments that are no longer current are gone already. */
    assert_true(count_segments(e.jdir) <= NW);
    sb_ledger_stop(l);
    assert_int_equal(count_segments(e.jdir), 0);
    assert_int_equal(count_rows(&e), NW * PER);
    assert_true(has_row(&e, "w3-req-1499"));
    env_free(&e);
}

/* ---- crash recovery ---- */

static void test_crash_recovery(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    /* A gateway killed with SIGKILL while its journal holds rows nobody applied: a flush
     * interval far away, so the rows are still only in the journal. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct sb_ledger *l = start(&e, 2, NULL, 0, 600000);
        if (!l)
            _exit(3);
        for (int i = 0; i < 300; i++) {
            struct sb_spend_row r;
            char id[64];
            snprintf(id, sizeof id, "crash-%d", i);
            make_row(&r, id, 7);
            if (sb_ledger_record(l, i % 2, &r) != 0)
                _exit(4);
        }
        raise(SIGKILL);
        _exit(5);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_equal(count_segments(e.jdir), 2);
    assert_int_equal(count_rows(&e), 0);

    /* The kill cut a write short, and an older run left a segment with a damaged line. */
    char path[512];
    snprintf(path, sizeof path, "%s/w1-%012llu.jsonl", e.jdir, 1ULL);
    const char *cut = "{\"request_id\":\"cut-short\",\"cost_na";
    write_file(path, cut, strlen(cut), true);
    struct sb_spend_row r;
    char line[LINE_CAP];
    snprintf(path, sizeof path, "%s/w7-%012llu.jsonl", e.jdir, 0ULL);
    make_row(&r, "old-run", 5);
    size_t n = encode_row(line, sizeof line, &r);
    write_file(path, "garbage\n", 8, false);
    write_file(path, line, n, true);
    make_row(&r, "crash-5", 7); /* already in the other segment: applied once */
    n = encode_row(line, sizeof line, &r);
    write_file(path, line, n, true);

    struct sb_ledger *l = start(&e, 2, NULL, 0, 50);
    assert_non_null(l);
    /* Applied during start, before any worker runs. */
    assert_int_equal(atomic_load(&l->rows_applied), 301);
    assert_int_equal(atomic_load(&l->lines_bad), 2);
    assert_int_equal(count_segments(e.jdir), 0);
    /* This run's segments sort after the leftovers. */
    assert_int_equal(atomic_load(&l->w[0].cur_seg), 2);
    sb_ledger_stop(l);
    assert_int_equal(count_rows(&e), 301);
    assert_true(has_row(&e, "old-run"));
    assert_true(has_row(&e, "crash-299"));
    assert_false(has_row(&e, "cut-short"));
    env_free(&e);
}

static void test_duplicates_across_restart(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    struct sb_ledger *l = start(&e, 1, NULL, 0, 20);
    assert_non_null(l);
    struct sb_spend_row r;
    char id[64];
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof id, "dup-%d", i);
        make_row(&r, id, 1);
        assert_int_equal(sb_ledger_record(l, 0, &r), 0);
    }
    sb_ledger_stop(l);
    assert_int_equal(count_rows(&e), 100);

    /* The same ids again, in a leftover segment and recorded anew. */
    char path[512], line[LINE_CAP];
    snprintf(path, sizeof path, "%s/w0-%012llu.jsonl", e.jdir, 9ULL);
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof id, "dup-%d", i);
        make_row(&r, id, 1);
        size_t n = encode_row(line, sizeof line, &r);
        write_file(path, line, n, true);
    }
    l = start(&e, 1, NULL, 0, 20);
    assert_non_null(l);
    assert_int_equal(atomic_load(&l->rows_applied), 0);
    for (int i = 50; i < 150; i++) {
        snprintf(id, sizeof id, "dup-%d", i);
        make_row(&r, id, 1);
        assert_int_equal(sb_ledger_record(l, 0, &r), 0);
    }
    assert_int_equal(sb_ledger_sync(l, 10000), 0);
    assert_int_equal(atomic_load(&l->rows_applied), 50);
    sb_ledger_stop(l);
    assert_int_equal(count_rows(&e), 150);
    env_free(&e);
}

/* ---- the database going away ---- */

static void test_db_down_then_back(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    struct sb_ledger *l = start(&e, 2, NULL, 0, 20);
    assert_non_null(l);
    atomic_store(&inject_down, 1);
    struct sb_spend_row r;
    char id[64];
    for (int i = 0; i < 500; i++) {
        snprintf(id, sizeof id, "down-%d", i);
        make_row(&r, id, 3);
        assert_int_equal(sb_ledger_record(l, i % 2, &r), 0);
    }
    assert_int_equal(sb_ledger_sync(l, 300), -1);
    assert_false(sb_ledger_db_up(l));
    assert_int_equal(count_rows(&e), 0);
    assert_true(unapplied(&l->w[0]) > 0 && unapplied(&l->w[1]) > 0);
    /* Backoff: not one attempt per sync wake-up. */
    int calls = atomic_load(&spend_calls);
    usleep(300000);
    assert_true(atomic_load(&spend_calls) - calls < 10);

    atomic_store(&inject_down, 0);
    assert_int_equal(sb_ledger_sync(l, 15000), 0);
    assert_true(sb_ledger_db_up(l));
    assert_int_equal(atomic_load(&l->rows_applied), 500);
    assert_int_equal(unapplied(&l->w[0]) + unapplied(&l->w[1]), 0);
    sb_ledger_stop(l);
    assert_int_equal(count_rows(&e), 500);
    env_free(&e);
}

static void test_down_at_stop_keeps_journal(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    struct sb_ledger *l = start(&e, 1, NULL, 0, 20);
    assert_non_null(l);
    atomic_store(&inject_down, 1);
    struct sb_spend_row r;
    make_row(&r, "kept-1", 3);
    assert_int_equal(sb_ledger_record(l, 0, &r), 0);
    sb_ledger_stop(l); /* gives up after its bounded retry */
    assert_int_equal(count_segments(e.jdir), 1);
    assert_int_equal(count_rows(&e), 0);
    atomic_store(&inject_down, 0);
    l = start(&e, 1, NULL, 0, 20);
    assert_non_null(l);
    assert_int_equal(count_segments(e.jdir), 0);
    sb_ledger_stop(l);
    assert_true(has_row(&e, "kept-1"));
    env_free(&e);
}

static void test_full(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    struct sb_ledger *l = start(&e, 2, NULL, 1000, 20);
    assert_non_null(l);
    atomic_store(&inject_down, 1);
    struct sb_spend_row r;
    char id[64];
    int i = 0;
    while (!sb_ledger_full(l)) {
        assert_true(i < 10); /* a row is a few hundred bytes */
        snprintf(id, sizeof id, "full-%d", i);
        make_row(&r, id, 3);
        assert_int_equal(sb_ledger_record(l, i % 2, &r), 0);
        i++;
    }
    assert_true(i >= 2);
    atomic_store(&inject_down, 0);
    assert_int_equal(sb_ledger_sync(l, 15000), 0);
    assert_false(sb_ledger_full(l));
    sb_ledger_stop(l);
    assert_int_equal(count_rows(&e), i);
    env_free(&e);
}

static void test_refused_row_skipped(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    refuse_window_ms = 0;
    struct sb_ledger *l = start(&e, 1, NULL, 0, 10);
    assert_non_null(l);
    struct sb_spend_row r;
    make_row(&r, "before", 3);
    assert_int_equal(sb_ledger_record(l, 0, &r), 0);
    make_row(&r, "refused", 3);
    r.cost_nano = -1; /* the store refuses it */
    assert_int_equal(sb_ledger_record(l, 0, &r), 0);
    make_row(&r, "after", 3);
    assert_int_equal(sb_ledger_record(l, 0, &r), 0);
    assert_int_equal(sb_ledger_sync(l, 10000), 0);
    assert_int_equal(atomic_load(&l->rows_skipped), 1);
    assert_int_equal(atomic_load(&l->rows_applied), 2);
    sb_ledger_stop(l);
    refuse_window_ms = 5000;
    assert_true(has_row(&e, "before"));
    assert_true(has_row(&e, "after"));
    assert_int_equal(count_rows(&e), 2);
    env_free(&e);
}

static void test_transient_failure_retried(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    struct sb_ledger *l = start(&e, 1, NULL, 0, 10);
    assert_non_null(l);
    atomic_store(&inject_fail, 3);
    struct sb_spend_row r;
    make_row(&r, "ok-1", 3);
    assert_int_equal(sb_ledger_record(l, 0, &r), 0);
    make_row(&r, "transient-1", 3);
    assert_int_equal(sb_ledger_record(l, 0, &r), 0);
    assert_int_equal(sb_ledger_sync(l, 10000), 0);
    assert_true(atomic_load(&inject_fail) <= 0);
    assert_int_equal(atomic_load(&l->rows_skipped), 0);
    assert_int_equal(atomic_load(&l->rows_applied), 2);
    sb_ledger_stop(l);
    assert_true(has_row(&e, "transient-1"));
    env_free(&e);
}

/* ---- admin jobs ---- */

struct jobs {
    pthread_t store_thread;
    pthread_t loop_thread;
    int ran[64];
    atomic_int nran;
    int done_order[64];
    int ndone;
    int wrong_thread;
    int rc_seen[64];
};

struct job_ud {
    struct jobs *j;
    int i;
    int sleep_ms;
    int *done_flag;
};

static int job_fn(struct sb_store *s, struct sb_policy *p, void *ud)
{
    struct job_ud *u = ud;
    (void)p;
    if (u->sleep_ms)
        usleep((useconds_t)u->sleep_ms * 1000);
    if (pthread_equal(pthread_self(), u->j->loop_thread))
        u->j->wrong_thread++;
    u->j->ran[atomic_fetch_add(&u->j->nran, 1)] = u->i;
    /* A job uses the store: a record written, read back. */
    json_t *rec = json_pack("{s:s}", "team_id", "t-jobs");
    int rc = sb_store_put(s, SB_ENT_TEAM, "t-jobs", rec, false);
    json_decref(rec);
    if (rc != 0)
        return rc;
    json_t *out = NULL;
    rc = sb_store_get(s, SB_ENT_TEAM, "t-jobs", &out);
    json_decref(out);
    return rc == 0 ? u->i : rc;
}

static void on_job_done(void *ud, int rc)
{
    struct job_ud *u = ud;
    if (!pthread_equal(pthread_self(), u->j->loop_thread))
        u->j->wrong_thread++;
    if (u->done_flag)
        (*u->done_flag)++;
    u->j->rc_seen[u->j->ndone] = rc;
    u->j->done_order[u->j->ndone++] = u->i;
}

/* An attached worker holds its rows until sb_ledger_flush (the server flushes before it writes
 * any response), then writes them in one go; detach and stop write what is still held. */
static void test_held_until_flush(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    struct sb_ledger *l = start(&e, 2, NULL, 0, 20);
    assert_non_null(l);
    uv_loop_t a;
    assert_int_equal(uv_loop_init(&a), 0);
    assert_int_equal(sb_ledger_attach(l, 0, &a), 0);
    struct sb_spend_row r;
    char id[64];
    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof id, "held-%d", i);
        make_row(&r, id, 2);
        assert_int_equal(sb_ledger_record(l, 0, &r), 0);
    }
    /* Nothing reached the journal yet: the store thread has nothing to wait for. */
    assert_int_equal(atomic_load(&l->w[0].written), 0);
    assert_int_equal(sb_ledger_sync(l, 5000), 0);
    assert_int_equal(count_rows(&e), 0);
    uint64_t held = l->w[0].hold_len;
    assert_true(held > 0);
    assert_int_equal(sb_ledger_flush(l, 0), 0);
    assert_int_equal(atomic_load(&l->w[0].written), held);
    assert_int_equal(l->w[0].hold_len, 0);
    assert_int_equal(sb_ledger_sync(l, 10000), 0);
    assert_int_equal(count_rows(&e), 30);
    /* More than the hold buffer takes in one pass: written as it fills, nothing lost. */
    for (int i = 0; i < 2000; i++) {
        snprintf(id, sizeof id, "many-%d", i);
        make_row(&r, id, 1);
        assert_int_equal(sb_ledger_record(l, 0, &r), 0);
        assert_true(l->w[0].hold_len <= HOLD_CAP);
    }
    assert_true(atomic_load(&l->w[0].written) > held);
    /* Detach writes the rest; an unattached worker (1) writes at once. */
    sb_ledger_detach(l, 0);
    assert_int_equal(l->w[0].hold_len, 0);
    make_row(&r, "direct", 5);
    assert_int_equal(sb_ledger_record(l, 1, &r), 0);
    assert_int_equal(l->w[1].hold_len, 0);
    assert_int_equal(sb_ledger_sync(l, 10000), 0);
    assert_int_equal(count_rows(&e), 2031);
    uv_run(&a, UV_RUN_DEFAULT); /* the async handle's close */
    assert_int_equal(uv_loop_close(&a), 0);
    sb_ledger_stop(l);
    env_free(&e);
}

/* A journal that cannot be written keeps the rows held, refuses new requests
 * (sb_ledger_full) and writes them once it can; stop writes what is still held. */
static void test_journal_unwritable(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    struct sb_ledger *l = start(&e, 1, NULL, 0, 20);
    assert_non_null(l);
    assert_false(sb_ledger_full(l));
    /* No segment is open before the first row: without the folder, none can be. */
    char moved[400];
    snprintf(moved, sizeof moved, "%s.away", e.jdir);
    assert_int_equal(rename(e.jdir, moved), 0);
    struct sb_spend_row r;
    make_row(&r, "kept-1", 3);
    assert_int_equal(sb_ledger_record(l, 0, &r), 0);
    assert_true(l->w[0].hold_len > 0);
    assert_true(sb_ledger_full(l));
    make_row(&r, "kept-2", 4);
    assert_int_equal(sb_ledger_record(l, 0, &r), 0);
    assert_int_equal(sb_ledger_flush(l, 0), -1);
    assert_true(sb_ledger_full(l));
    assert_int_equal(rename(moved, e.jdir), 0);
    assert_int_equal(sb_ledger_flush(l, 0), 0);
    assert_false(sb_ledger_full(l));
    assert_int_equal(l->w[0].hold_len, 0);
    assert_int_equal(sb_ledger_sync(l, 10000), 0);
    assert_int_equal(count_rows(&e), 2);
    /* Held at stop: written by the stop itself. */
    assert_int_equal(rename(e.jdir, moved), 0);
    close(l->w[0].fd); /* as after a rotation: the next write opens a segment */
    l->w[0].fd = -1;
    make_row(&r, "kept-3", 5);
    assert_int_equal(sb_ledger_record(l, 0, &r), 0);
    assert_true(sb_ledger_full(l));
    assert_int_equal(rename(moved, e.jdir), 0);
    sb_ledger_stop(l);
    assert_int_equal(count_rows(&e), 3);
    env_free(&e);
}

static void test_jobs(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    struct sb_ledger *l = start(&e, 2, NULL, 0, 50);
    assert_non_null(l);
    uv_loop_t a, b;
    assert_int_equal(uv_loop_init(&a), 0);
    assert_int_equal(uv_loop_init(&b), 0);
    struct jobs j = {.loop_thread = pthread_self()};
    /* Not attached yet. */
    struct job_ud u0 = {.j = &j};
    assert_int_equal(sb_ledger_submit(l, 0, job_fn, on_job_done, &u0), -1);
    assert_int_equal(sb_ledger_attach(l, 0, &a), 0);
    assert_int_equal(sb_ledger_attach(l, 0, &a), -1);
    assert_int_equal(sb_ledger_attach(l, 1, &b), 0);
    assert_int_equal(sb_ledger_attach(l, 2, &b), -1);

    enum { N = 40 };
    struct job_ud u[N];
    int done_a = 0, done_b = 0;
    for (int i = 0; i < N; i++) {
        u[i] = (struct job_ud){.j = &j, .i = i, .done_flag = i % 2 ? &done_b : &done_a};
        assert_int_equal(sb_ledger_submit(l, i % 2, job_fn, on_job_done, &u[i]), 0);
    }
    /* Loop a gets only worker 0's completions. */
    while (done_a < N / 2)
        uv_run(&a, UV_RUN_ONCE);
    assert_int_equal(done_b, 0);
    while (done_b < N / 2)
        uv_run(&b, UV_RUN_ONCE);
    assert_int_equal(atomic_load(&j.nran), N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(j.ran[i], i); /* run in submission order */
        assert_int_equal(j.rc_seen[i], j.done_order[i]);
    }
    for (int i = 0; i < N / 2; i++)
        assert_int_equal(j.done_order[i], 2 * i);
    assert_int_equal(j.wrong_thread, 0);

    /* A worker that detaches while its job runs never hears of it. */
    int late = 0;
    struct job_ud slow = {.j = &j, .i = 99, .sleep_ms = 200, .done_flag = &late};
    assert_int_equal(sb_ledger_submit(l, 0, job_fn, on_job_done, &slow), 0);
    sb_ledger_detach(l, 0);
    assert_int_equal(sb_ledger_submit(l, 0, job_fn, on_job_done, &slow), -1);
    while (atomic_load(&j.nran) < N + 1)
        usleep(10000);
    usleep(50000);
    uv_run(&a, UV_RUN_DEFAULT);
    assert_int_equal(late, 0);

    sb_ledger_detach(l, 1);
    uv_run(&b, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&a), 0);
    assert_int_equal(uv_loop_close(&b), 0);
    sb_ledger_stop(l);
    env_free(&e);
}

/* ---- budget resets ---- */

static json_t *store_get(const struct env *e, enum sb_entity kind, const char *id)
{
    char err[256];
    struct sb_store *s = sb_store_open(e->url, err, sizeof err);
    assert_non_null(s);
    json_t *out = NULL;
    int rc = sb_store_get(s, kind, id, &out);
    sb_store_close(s);
    return rc == 0 ? out : NULL;
}

static void test_budget_reset(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    char err[256];
    char hash[65];
    sb_policy_hash_key("sk-reset-test", strlen("sk-reset-test"), hash);
    int64_t now = (int64_t)time(NULL);
    struct sb_store *s = sb_store_open(e.url, err, sizeof err);
    assert_non_null(s);
    json_t *rec = json_pack("{s:s, s:f, s:s, s:I}", "token", hash, "max_budget", 10.0,
                            "budget_duration", "30s", "budget_reset_at", (json_int_t)(now - 1));
    assert_int_equal(sb_store_put(s, SB_ENT_KEY, hash, rec, true), 0);
    json_decref(rec);
    rec = json_pack("{s:s, s:f}", "team_id", "t-keep", "max_budget", 10.0);
    assert_int_equal(sb_store_put(s, SB_ENT_TEAM, "t-keep", rec, true), 0);
    json_decref(rec);
    struct sb_spend_row r;
    make_row(&r, "spent", 2000000000); /* $2 */
    snprintf(r.key_hash, sizeof r.key_hash, "%s", hash);
    snprintf(r.team_id, sizeof r.team_id, "t-keep");
    assert_int_equal(sb_store_spend_write(s, &r, 1, NULL), 0);
    sb_store_close(s);

    struct sb_policy *p = sb_policy_new();
    assert_non_null(p);
    /* The database is down when the reset falls due: it waits. */
    struct sb_ledger *l = start(&e, 1, p, 0, 50);
    assert_non_null(l);
    json_t *pk = sb_policy_get(p, SB_ENT_KEY, hash); /* loaded at start, with its spend */
    assert_non_null(pk);
    assert_true(json_real_value(json_object_get(pk, "spend")) > 1.9);
    json_decref(pk);
    atomic_store(&inject_down, 1);
    usleep(1500000);
    json_t *k = store_get(&e, SB_ENT_KEY, hash);
    assert_non_null(k);
    assert_true(json_real_value(json_object_get(k, "spend")) > 1.9);
    json_decref(k);
    atomic_store(&inject_down, 0);

    bool reset = false;
    for (int i = 0; i < 50 && !reset; i++) {
        usleep(100000);
        k = store_get(&e, SB_ENT_KEY, hash);
        assert_non_null(k);
        reset = json_real_value(json_object_get(k, "spend")) == 0.0;
        if (reset) {
            json_int_t next = json_integer_value(json_object_get(k, "budget_reset_at"));
            assert_true(next >= now + 29 && next <= now + 60);
        }
        json_decref(k);
    }
    assert_true(reset);
    pk = sb_policy_get(p, SB_ENT_KEY, hash);
    assert_non_null(pk);
    assert_true(json_number_value(json_object_get(pk, "spend")) == 0.0);
    json_decref(pk);
    /* An entity without budget_reset_at keeps its spend. */
    json_t *t = store_get(&e, SB_ENT_TEAM, "t-keep");
    assert_non_null(t);
    assert_true(json_real_value(json_object_get(t, "spend")) > 1.9);
    json_decref(t);
    sb_ledger_stop(l);
    sb_policy_free(p);
    env_free(&e);
}

/* ---- PostgreSQL: the server really stops (scripts/with-pg.sh sets the variables) ---- */

static int pg_ctl(const char *action)
{
    const char *bin = getenv("SB_TEST_PG_BIN"), *data = getenv("SB_TEST_PG_DATA");
    char cmd[1024];
    const char *as = geteuid() == 0 ? "runuser -u postgres -- " : "";
    int n = snprintf(cmd, sizeof cmd, "%s'%s/pg_ctl' -D '%s' %s -w %s >/dev/null 2>&1", as, bin,
                     data, action, strcmp(action, "stop") == 0 ? "-m fast" : "");
    assert_true(n > 0 && (size_t)n < sizeof cmd);
    return system(cmd);
}

static void test_pg_outage(void **state)
{
    (void)state;
    const char *url = getenv("SB_TEST_PG_URL");
    if (!url || !getenv("SB_TEST_PG_BIN") || !getenv("SB_TEST_PG_DATA"))
        skip(); /* needs a server: scripts/with-pg.sh ctest -R test_ledger */
    struct env e;
    env_init(&e);
    snprintf(e.url, sizeof e.url, "%s", url);
    struct sb_ledger *l = start(&e, 1, NULL, 0, 20);
    assert_non_null(l);
    int64_t before = count_rows(&e);
    assert_int_equal(pg_ctl("stop"), 0);
    struct sb_spend_row r;
    char id[64];
    for (int i = 0; i < 200; i++) {
        snprintf(id, sizeof id, "pg-outage-%d-%d", (int)getpid(), i);
        make_row(&r, id, 3);
        assert_int_equal(sb_ledger_record(l, 0, &r), 0);
    }
    assert_int_equal(sb_ledger_sync(l, 500), -1);
    assert_false(sb_ledger_db_up(l));
    assert_int_equal(pg_ctl("start"), 0);
    assert_int_equal(sb_ledger_sync(l, 20000), 0);
    assert_true(sb_ledger_db_up(l));
    sb_ledger_stop(l);
    assert_int_equal(count_rows(&e), before + 200);
    env_free(&e);
}

/* Polls cond for up to 5 s. */
#define EVENTUALLY(cond)                                                                           \
    do {                                                                                           \
        int64_t until_ = now_ms() + 5000;                                                          \
        while (!(cond) && now_ms() < until_)                                                       \
            sleep_ms(10);                                                                          \
        assert_true(cond);                                                                         \
    } while (0)

static int64_t policy_spend(struct sb_policy *p, enum sb_entity kind, const char *id)
{
    json_t *j = sb_policy_get(p, kind, id);
    if (j == NULL)
        return -1;
    int64_t v = (int64_t)(json_real_value(json_object_get(j, "spend")) * 1e9 + 0.5);
    json_decref(j);
    return v;
}

/* Two ledgers on one database file, as two gateway instances: a record written by anyone
 * reaches both policies through the change feed, and spend settled on one reaches the other
 * through the spend sync, while the settling one counts it exactly once (pending, then the
 * database total). */
static void test_two_instances_sync(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    struct env e2 = e;
    snprintf(e2.jdir, sizeof e2.jdir, "%s/journal2", e.dir);
    struct sb_policy *p1 = sb_policy_new(), *p2 = sb_policy_new();
    struct sb_ledger_config c = {.database_url = e.url,
                                 .journal_dir = e.jdir,
                                 .nworkers = 1,
                                 .flush_ms = 20,
                                 .policy = p1,
                                 .sync_ms = 50};
    char err[256] = "";
    struct sb_ledger *l1 = sb_ledger_start(&c, err, sizeof err);
    assert_non_null(l1);
    c.journal_dir = e2.jdir;
    c.policy = p2;
    struct sb_ledger *l2 = sb_ledger_start(&c, err, sizeof err);
    assert_non_null(l2);
    struct sb_store *s = sb_store_open(e.url, err, sizeof err);
    assert_non_null(s);

    char kh[65];
    sb_policy_hash_key("sk-shared", 9, kh);
    json_t *rec = json_pack("{s:s, s:f}", "token", kh, "max_budget", 0.00001);
    assert_int_equal(sb_store_put(s, SB_ENT_KEY, kh, rec, true), 0);
    json_decref(rec);
    EVENTUALLY(policy_spend(p1, SB_ENT_KEY, kh) == 0 && policy_spend(p2, SB_ENT_KEY, kh) == 0);

    /* Settled on instance 1: pending there until its row is committed. */
    struct sb_admit_req r = {.key = "sk-shared",
                             .key_len = 9,
                             .model = "m",
                             .input_tokens = 10,
                             .max_output = 10,
                             .price_in = 10,
                             .price_out = 10,
                             .now_ms = 1700000000000};
    struct sb_admission a;
    assert_int_equal(sb_policy_admit(p1, &r, &a), 0);
    sb_policy_settle(p1, &a, 4000, 20, r.now_ms);
    assert_int_equal(sb_policy_pending(p1, SB_ENT_KEY, kh, NULL), 4000);
    struct sb_spend_row row;
    make_row(&row, "sync-1", 4000);
    snprintf(row.key_hash, sizeof row.key_hash, "%s", kh);
    assert_int_equal(sb_ledger_record(l1, 0, &row), 0);
    EVENTUALLY(sb_policy_pending(p1, SB_ENT_KEY, kh, NULL) == 0 &&
               policy_spend(p2, SB_ENT_KEY, kh) == 4000);
    /* Counted once where it was settled, and once more syncs change nothing. */
    sleep_ms(120);
    assert_int_equal(policy_spend(p1, SB_ENT_KEY, kh), 4000);
    assert_int_equal(policy_spend(p2, SB_ENT_KEY, kh), 4000);
    /* 6000 left: instance 2 refuses a request whose input alone needs more. */
    r.input_tokens = 700;
    assert_int_equal(sb_policy_admit(p2, &r, &a), 400);

    /* A budget changed elsewhere, then the key deleted: both instances follow. */
    rec = json_pack("{s:s, s:f}", "token", kh, "max_budget", 1.0);
    assert_int_equal(sb_store_put(s, SB_ENT_KEY, kh, rec, false), 0);
    json_decref(rec);
    int64_t until = now_ms() + 5000;
    while (sb_policy_admit(p2, &r, &a) != 0 && now_ms() < until)
        sleep_ms(10);
    assert_int_equal(a.status, 0);
    sb_policy_release(p2, &a);
    assert_int_equal(sb_store_delete(s, SB_ENT_KEY, kh), 0);
    EVENTUALLY(policy_spend(p1, SB_ENT_KEY, kh) < 0 && policy_spend(p2, SB_ENT_KEY, kh) < 0);

    sb_store_close(s);
    sb_ledger_stop(l1);
    sb_ledger_stop(l2);
    sb_policy_free(p1);
    sb_policy_free(p2);
    env_free(&e);
}

/* An instance that missed pruned changes reloads every record: what was deleted meanwhile goes
 * (a deleted key must not keep working there), what was added comes, the rest stays. */
static void test_reload_drops_deleted(void **state)
{
    (void)state;
    struct env e;
    env_init(&e);
    struct sb_policy *p = sb_policy_new();
    struct sb_ledger_config c = {.database_url = e.url,
                                 .journal_dir = e.jdir,
                                 .nworkers = 1,
                                 .flush_ms = 20,
                                 .policy = p,
                                 .sync_ms = 30};
    char err[256] = "";
    struct sb_ledger *l = sb_ledger_start(&c, err, sizeof err);
    assert_non_null(l);
    struct sb_store *s = sb_store_open(e.url, err, sizeof err);
    assert_non_null(s);
    const char *ids[3] = {"sk-gone", "sk-kept", "sk-new"};
    char kh[3][65];
    for (int i = 0; i < 3; i++)
        sb_policy_hash_key(ids[i], strlen(ids[i]), kh[i]);
    for (int i = 0; i < 2; i++) {
        json_t *rec = json_pack("{s:s}", "token", kh[i]);
        assert_int_equal(sb_store_put(s, SB_ENT_KEY, kh[i], rec, true), 0);
        json_decref(rec);
    }
    json_t *team = json_pack("{s:s}", "team_id", "team-gone");
    assert_int_equal(sb_store_put(s, SB_ENT_TEAM, "team-gone", team, true), 0);
    json_decref(team);
    EVENTUALLY(policy_spend(p, SB_ENT_KEY, kh[0]) == 0 && policy_spend(p, SB_ENT_KEY, kh[1]) == 0 &&
               policy_spend(p, SB_ENT_TEAM, "team-gone") == 0);

    atomic_store(&inject_feed_down, 1);
    assert_int_equal(sb_store_delete(s, SB_ENT_KEY, kh[0]), 0);
    assert_int_equal(sb_store_delete(s, SB_ENT_TEAM, "team-gone"), 0);
    json_t *rec = json_pack("{s:s}", "token", kh[2]);
    assert_int_equal(sb_store_put(s, SB_ENT_KEY, kh[2], rec, true), 0);
    json_decref(rec);
    size_t pruned = 0;
    assert_int_equal(sb_store_changes_prune(s, INT64_MAX, &pruned), 0);
    assert_true(pruned > 0);
    sleep_ms(100); /* several failed polls: nothing changed here yet */
    assert_int_equal(policy_spend(p, SB_ENT_KEY, kh[0]), 0);
    atomic_store(&inject_feed_down, 0);

    EVENTUALLY(policy_spend(p, SB_ENT_KEY, kh[0]) < 0 && policy_spend(p, SB_ENT_KEY, kh[2]) == 0);
    assert_int_equal(policy_spend(p, SB_ENT_KEY, kh[1]), 0);
    assert_true(policy_spend(p, SB_ENT_TEAM, "team-gone") < 0);
    struct sb_admission a;
    assert_int_equal(sb_policy_authenticate(p, ids[0], strlen(ids[0]), 1700000000000, &a), 401);
    assert_int_equal(sb_policy_authenticate(p, ids[2], strlen(ids[2]), 1700000000000, &a), 0);

    sb_store_close(s);
    sb_ledger_stop(l);
    sb_policy_free(p);
    env_free(&e);
}

int main(void)
{
    sb_log_set_level(SB_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_roundtrip),
        cmocka_unit_test(test_line_rejects),
        cmocka_unit_test(test_seg_names),
        cmocka_unit_test(test_start_errors),
        cmocka_unit_test(test_threads_exactly_once),
        cmocka_unit_test(test_crash_recovery),
        cmocka_unit_test(test_duplicates_across_restart),
        cmocka_unit_test(test_db_down_then_back),
        cmocka_unit_test(test_down_at_stop_keeps_journal),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_refused_row_skipped),
        cmocka_unit_test(test_transient_failure_retried),
        cmocka_unit_test(test_held_until_flush),
        cmocka_unit_test(test_journal_unwritable),
        cmocka_unit_test(test_jobs),
        cmocka_unit_test(test_budget_reset),
        cmocka_unit_test(test_two_instances_sync),
        cmocka_unit_test(test_reload_drops_deleted),
        cmocka_unit_test(test_pg_outage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

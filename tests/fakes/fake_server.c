/* Workers, connections and the response pump of the fake provider.
 *
 * Each worker owns a loop and its own SO_REUSEPORT listener, so the kernel spreads
 * connections over the workers and no lock sits on the request path. A connection answers
 * its requests strictly in order: while a response is delayed, dripped or split, pipelined
 * requests wait in the input buffer and are read once the response is complete. Everything
 * a response says is built when the request arrives; only the sending is spread over time. */
#include "fake.h"

#include "core/error.h"
#include "http/listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#define READ_CHUNK 16384

enum conn_state {
    ST_IDLE,   /* reading the next request */
    ST_DELAY,  /* waiting for delay_ms before the head */
    ST_STREAM, /* head sent, events being pumped */
    ST_HANG,   /* never answering; input is dropped */
    ST_DONE,   /* last response sent; closing once the output drains */
};

enum pump_result { PUMP_WAIT, PUMP_DONE, PUMP_CUT };

struct worker;

struct conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct worker *w;
    struct conn *prev;
    struct conn *next;
    struct sb_buf in;
    struct sb_buf chunk_body;
    struct sb_buf out;
    struct sb_buf split; /* framed bytes of the event being written one byte at a time */
    size_t split_pos;
    size_t next_event;
    struct sb_fake_req req;
    struct sb_fake_resp resp;
    enum conn_state state;
    int pending_writes;
    int handles_open;
    bool closing;
    bool close_after_flush;
    bool continue_sent;
};

struct wreq {
    uv_write_t req;
    struct conn *c;
};

struct worker {
    const struct sb_fake_config *cfg;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t stop;
    uv_thread_t thread;
    struct conn *conns;
    int index;
};

void sb_fake_resp_init(struct sb_fake_resp *r)
{
    memset(r, 0, sizeof *r);
    sb_buf_init(&r->headers, 64 * 1024);
    sb_buf_init(&r->body, SB_FAKE_MAX_OUTPUT);
    r->cut_after = -1;
    r->status = 200;
    r->content_type = "application/json";
}

void sb_fake_resp_reset(struct sb_fake_resp *r)
{
    sb_buf_reset(&r->headers);
    sb_buf_reset(&r->body);
    r->nends = 0;
    r->status = 200;
    r->content_type = "application/json";
    r->chunked = false;
    r->close = false;
    r->drop = false;
    r->hang = false;
    r->delay_ms = 0;
    r->drip_ms = 0;
    r->cut_after = -1;
    r->split = false;
}

void sb_fake_resp_free(struct sb_fake_resp *r)
{
    sb_buf_free(&r->headers);
    sb_buf_free(&r->body);
    free(r->ends);
    r->ends = NULL;
    r->nends = 0;
    r->ends_cap = 0;
}

int sb_fake_resp_end_event(struct sb_fake_resp *r)
{
    if (r->nends == r->ends_cap) {
        if (r->ends_cap >= SB_FAKE_MAX_EVENTS)
            return -E2BIG;
        size_t cap = r->ends_cap ? r->ends_cap * 2 : 64;
        size_t *n = realloc(r->ends, cap * sizeof *n);
        if (!n)
            return -ENOMEM;
        r->ends = n;
        r->ends_cap = cap;
    }
    r->ends[r->nends++] = r->body.len;
    return 0;
}

/* ---- connection lifetime ---- */

static void on_timer(uv_timer_t *t);

static void conn_free(struct conn *c)
{
    struct worker *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    sb_buf_free(&c->in);
    sb_buf_free(&c->chunk_body);
    sb_buf_free(&c->out);
    sb_buf_free(&c->split);
    sb_fake_resp_free(&c->resp);
    free(c);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct conn *c = h->data;
    if (--c->handles_open == 0)
        conn_free(c);
}

static void conn_close(struct conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_timer_stop(&c->timer);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    /* Pending writes are cancelled; their callbacks run before the close callback. */
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
}

/* ---- output ---- */

static void on_write(uv_write_t *req, int status)
{
    struct wreq *wr = (struct wreq *)req;
    struct conn *c = wr->c;
    free(wr);
    c->pending_writes--;
    if (c->closing)
        return;
    if (status < 0)
        conn_close(c);
    else if (c->pending_writes == 0 && c->close_after_flush)
        conn_close(c);
}

/* Sends what `out` holds: uv_try_write first, the rest (if any) copied into a queued write. */
static void conn_flush(struct conn *c)
{
    if (c->closing)
        return;
    if (c->out.len > 0) {
        uv_buf_t b = uv_buf_init(c->out.data, (unsigned int)c->out.len);
        int n = c->pending_writes ? UV_EAGAIN : uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n == UV_EAGAIN)
            n = 0;
        if (n < 0) {
            conn_close(c);
            return;
        }
        if ((size_t)n < c->out.len) {
            size_t rest = c->out.len - (size_t)n;
            struct wreq *wr = malloc(sizeof *wr + rest);
            if (!wr) {
                conn_close(c);
                return;
            }
            wr->c = c;
            memcpy(wr + 1, c->out.data + n, rest);
            uv_buf_t rb = uv_buf_init((char *)(wr + 1), (unsigned int)rest);
            if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &rb, 1, on_write) != 0) {
                free(wr);
                conn_close(c);
                return;
            }
            c->pending_writes++;
        }
        sb_buf_reset(&c->out);
    }
    if (c->pending_writes == 0 && c->close_after_flush)
        conn_close(c);
}

static int append_head(struct conn *c)
{
    const struct sb_fake_resp *r = &c->resp;
    struct sb_buf *o = &c->out;
    int rc = sb_buf_append_str(o, "HTTP/1.1 ");
    rc |= sb_buf_append_u64(o, (uint64_t)r->status);
    rc |= sb_buf_append_char(o, ' ');
    rc |= sb_buf_append_str(o, sb_http_reason(r->status));
    rc |= sb_buf_append_str(o, "\r\ncontent-type: ");
    rc |= sb_buf_append_str(o, r->content_type);
    if (r->chunked) {
        rc |= sb_buf_append_str(o, "\r\ntransfer-encoding: chunked\r\n");
    } else {
        rc |= sb_buf_append_str(o, "\r\ncontent-length: ");
        rc |= sb_buf_append_u64(o, r->body.len);
        rc |= sb_buf_append_str(o, "\r\n");
    }
    if (r->headers.len)
        rc |= sb_buf_append(o, r->headers.data, r->headers.len);
    if (r->close)
        rc |= sb_buf_append_str(o, "connection: close\r\n");
    rc |= sb_buf_append_str(o, "\r\n");
    return rc ? -E2BIG : 0;
}

/* Appends event `i`, framed as a chunk when the response is chunked; the last event carries
 * the terminating chunk. */
static int append_event(const struct sb_fake_resp *r, size_t i, struct sb_buf *o)
{
    size_t start = i ? r->ends[i - 1] : 0;
    size_t n = r->ends[i] - start;
    int rc = 0;
    if (!r->chunked)
        return sb_buf_append(o, r->body.data + start, n);
    if (n > 0)
        rc |= sb_buf_printf(o, "%zx\r\n", n);
    rc |= sb_buf_append(o, r->body.data + start, n);
    if (n > 0)
        rc |= sb_buf_append_str(o, "\r\n");
    if (i + 1 == r->nends)
        rc |= sb_buf_append_str(o, "0\r\n\r\n");
    return rc ? -E2BIG : 0;
}

static bool cut_reached(const struct conn *c)
{
    const struct sb_fake_resp *r = &c->resp;
    return r->cut_after >= 0 && c->next_event >= (size_t)r->cut_after && c->next_event < r->nends;
}

/* Sends as much of the response as its schedule allows now; arms the timer otherwise. */
static enum pump_result pump(struct conn *c)
{
    const struct sb_fake_resp *r = &c->resp;
    for (;;) {
        if (c->split_pos < c->split.len) {
            if (sb_buf_append(&c->out, c->split.data + c->split_pos, 1) != 0)
                return PUMP_CUT;
            c->split_pos++;
            conn_flush(c);
            if (c->split_pos < c->split.len) {
                uv_timer_start(&c->timer, on_timer, 0, 0);
                return PUMP_WAIT;
            }
            sb_buf_reset(&c->split);
            c->split_pos = 0;
            if (c->next_event < r->nends && !cut_reached(c)) {
                uv_timer_start(&c->timer, on_timer, (uint64_t)r->drip_ms, 0);
                return PUMP_WAIT;
            }
        }
        if (cut_reached(c))
            return PUMP_CUT;
        if (c->next_event >= r->nends)
            return PUMP_DONE;
        if (r->split) {
            if (append_event(r, c->next_event++, &c->split) != 0)
                return PUMP_CUT;
            continue;
        }
        if (append_event(r, c->next_event++, &c->out) != 0)
            return PUMP_CUT;
        if (r->drip_ms > 0 && c->next_event < r->nends && !cut_reached(c)) {
            conn_flush(c);
            uv_timer_start(&c->timer, on_timer, (uint64_t)r->drip_ms, 0);
            return PUMP_WAIT;
        }
    }
}

static void run_pump(struct conn *c)
{
    switch (pump(c)) {
    case PUMP_WAIT:
        c->state = ST_STREAM;
        break;
    case PUMP_CUT:
        c->state = ST_DONE;
        c->close_after_flush = true;
        break;
    case PUMP_DONE:
        if (c->resp.close || c->resp.drop) {
            c->state = ST_DONE;
            c->close_after_flush = true;
        } else {
            c->state = ST_IDLE;
        }
        break;
    }
}

static void send_head_and_pump(struct conn *c)
{
    if (append_head(c) != 0) {
        c->state = ST_DONE;
        c->close_after_flush = true;
        return;
    }
    c->next_event = 0;
    sb_buf_reset(&c->split);
    c->split_pos = 0;
    /* The head goes out on its own when the body is split or dripped, as a real upstream's
     * does, so the client sees headers before the first event. */
    if (c->resp.split || c->resp.drip_ms > 0)
        conn_flush(c);
    run_pump(c);
}

static void conn_start_response(struct conn *c)
{
    struct sb_fake_resp *r = &c->resp;
    if (r->hang) {
        c->state = ST_HANG;
        sb_buf_reset(&c->in);
        return;
    }
    if (r->nends == 0 || r->ends[r->nends - 1] != r->body.len) {
        if (sb_fake_resp_end_event(r) != 0) {
            c->state = ST_DONE;
            c->close_after_flush = true;
            return;
        }
    }
    if (r->delay_ms > 0) {
        c->state = ST_DELAY;
        uv_timer_start(&c->timer, on_timer, (uint64_t)r->delay_ms, 0);
        return;
    }
    send_head_and_pump(c);
}

static void error_response(struct conn *c, int status)
{
    struct sb_fake_resp *r = &c->resp;
    r->status = status;
    r->close = true;
    sb_buf_printf(&r->body,
                  "{\"error\":{\"message\":\"fake-provider: cannot read the request (%d %s)\","
                  "\"type\":\"invalid_request_error\",\"param\":null,\"code\":null}}",
                  status, sb_http_reason(status));
}

static void conn_process(struct conn *c)
{
    const struct sb_fake_config *cfg = c->w->cfg;
    while (c->state == ST_IDLE && !c->closing) {
        size_t consumed = 0;
        int rc = sb_fake_http_parse(c->in.data ? c->in.data : "", c->in.len, &c->req,
                                    &c->chunk_body, &consumed);
        if (rc == 0) {
            if (c->req.head_complete && c->req.expect_continue && !c->continue_sent) {
                sb_buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
                c->continue_sent = true;
            }
            break;
        }
        c->continue_sent = false;
        sb_fake_resp_reset(&c->resp);
        if (rc < 0) {
            error_response(c, -rc);
            sb_buf_reset(&c->in);
        } else {
            sb_fake_openai_handle(cfg, &c->req, &c->resp);
            if (!c->req.keep_alive)
                c->resp.close = true;
            if (!cfg->quiet)
                fprintf(stderr, "fake-provider: %.*s %.*s -> %d\n", (int)c->req.method.n,
                        c->req.method.p, (int)c->req.target.n, c->req.target.p, c->resp.status);
            sb_buf_consume(&c->in, consumed);
        }
        conn_start_response(c);
    }
    conn_flush(c);
}

static void on_timer(uv_timer_t *t)
{
    struct conn *c = t->data;
    if (c->state == ST_DELAY)
        send_head_and_pump(c);
    else if (c->state == ST_STREAM)
        run_pump(c);
    if (c->state == ST_IDLE)
        conn_process(c);
    else
        conn_flush(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct conn *c = h->data;
    if (sb_buf_reserve(&c->in, READ_CHUNK) != 0) {
        *buf = uv_buf_init(NULL, 0);
        return;
    }
    *buf = uv_buf_init(c->in.data + c->in.len, (unsigned int)(c->in.cap - c->in.len - 1));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    (void)buf;
    struct conn *c = s->data;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    if (nread == 0)
        return;
    c->in.len += (size_t)nread;
    c->in.data[c->in.len] = '\0';
    if (c->state == ST_HANG || c->state == ST_DONE)
        sb_buf_reset(&c->in);
    else if (c->state == ST_IDLE)
        conn_process(c);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    struct worker *w = server->data;
    struct conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->w = w;
    sb_buf_init(&c->in, SB_FAKE_MAX_INPUT);
    sb_buf_init(&c->chunk_body, SB_FAKE_MAX_BODY);
    sb_buf_init(&c->out, SB_FAKE_MAX_OUTPUT + SB_FAKE_MAX_OUTPUT / 8);
    sb_buf_init(&c->split, SB_FAKE_MAX_OUTPUT);
    sb_fake_resp_init(&c->resp);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    uv_tcp_init(&w->loop, &c->tcp);
    uv_timer_init(&w->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
}

/* ---- workers ---- */

static void on_stop(uv_async_t *a)
{
    struct worker *w = a->data;
    uv_close((uv_handle_t *)&w->listener, NULL);
    uv_close((uv_handle_t *)&w->stop, NULL);
    for (struct conn *c = w->conns; c; c = c->next)
        conn_close(c);
}

static void worker_main(void *arg)
{
    struct worker *w = arg;
    uv_run(&w->loop, UV_RUN_DEFAULT);
}

/* The gateway's own listener code: SO_REUSEPORT, one listener per worker. */
static int open_listener(const char *host, int port, int *bound_port, int *fd_out)
{
    if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    return sb_listen_reuseport(host, port, 1024, fd_out, bound_port);
}

static int worker_init(struct worker *w, const struct sb_fake_config *cfg, int *port)
{
    int fd = -1, rc;
    w->cfg = cfg;
    rc = open_listener(cfg->host, *port, port, &fd);
    if (rc != 0) {
        fprintf(stderr, "fake-provider: cannot listen on %s:%d: %s\n", cfg->host, *port,
                uv_strerror(rc));
        return rc;
    }
    rc = uv_loop_init(&w->loop);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    uv_tcp_init(&w->loop, &w->listener);
    w->listener.data = w;
    uv_async_init(&w->loop, &w->stop, on_stop);
    w->stop.data = w;
    rc = uv_tcp_open(&w->listener, fd);
    if (rc != 0)
        close(fd); /* not owned by the handle yet */
    else
        rc = uv_listen((uv_stream_t *)&w->listener, 1024, on_connection);
    if (rc != 0) {
        fprintf(stderr, "fake-provider: listen: %s\n", uv_strerror(rc));
        uv_close((uv_handle_t *)&w->listener, NULL);
        uv_close((uv_handle_t *)&w->stop, NULL);
        uv_run(&w->loop, UV_RUN_DEFAULT);
        uv_loop_close(&w->loop);
        return rc;
    }
    return 0;
}

static struct worker *workers;
static int nworkers;

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    uv_close((uv_handle_t *)s->data, NULL);
    uv_close((uv_handle_t *)s, NULL);
    for (int i = 0; i < nworkers; i++)
        uv_async_send(&workers[i].stop);
}

int sb_fake_server_run(const struct sb_fake_config *cfg)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    uv_loop_t main_loop;
    if (uv_loop_init(&main_loop) != 0)
        return 1;
    uv_signal_t sigterm, sigint;
    uv_signal_init(&main_loop, &sigterm);
    uv_signal_init(&main_loop, &sigint);
    sigterm.data = &sigint;
    sigint.data = &sigterm;
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);

    workers = calloc((size_t)cfg->threads, sizeof *workers);
    if (!workers)
        return 1;
    int port = cfg->port;
    int started = 0, rc = 0;
    for (; started < cfg->threads; started++) {
        workers[started].index = started;
        rc = worker_init(&workers[started], cfg, &port);
        if (rc != 0)
            break;
    }
    nworkers = started;
    if (rc == 0) {
        for (int i = 0; i < nworkers; i++) {
            if (uv_thread_create(&workers[i].thread, worker_main, &workers[i]) != 0) {
                fprintf(stderr, "fake-provider: cannot start a worker thread\n");
                abort();
            }
        }
        printf("fake-provider listening on %s:%d\n", cfg->host, port);
        fflush(stdout);
        uv_run(&main_loop, UV_RUN_DEFAULT);
        for (int i = 0; i < nworkers; i++)
            uv_thread_join(&workers[i].thread);
    } else {
        for (int i = 0; i < nworkers; i++)
            uv_async_send(&workers[i].stop);
        for (int i = 0; i < nworkers; i++)
            uv_run(&workers[i].loop, UV_RUN_DEFAULT);
        uv_close((uv_handle_t *)&sigterm, NULL);
        uv_close((uv_handle_t *)&sigint, NULL);
        uv_run(&main_loop, UV_RUN_DEFAULT);
    }
    for (int i = 0; i < nworkers; i++) {
        if (uv_loop_close(&workers[i].loop) != 0)
            fprintf(stderr, "fake-provider: worker %d loop still busy at exit\n", i);
    }
    uv_loop_close(&main_loop);
    free(workers);
    workers = NULL;
    nworkers = 0;
    sb_fake_store_free();
    return rc == 0 ? 0 : 1;
}

#include "http/server.h"

#include "core/log.h"
#include "http/listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Bytes a connection may buffer beyond one request head: pipelined requests and body bytes
 * that arrive before they are moved into the exchange. Past this the connection stops
 * reading until the current exchange ends. */
#define IN_EXTRA (64u << 10)
/* Hard cap on a connection's queued output. A non-streaming response is at most the
 * configured response cap; a stream pauses its upstream far below this. */
#define OUT_MAX ((size_t)1 << 31)
/* How long a connection that we close after an error keeps reading and discarding what the
 * client still sends, so the kernel does not reset the connection before the client has
 * read our response (RFC 9112 §9.6). */
#define LINGER_MS 2000

enum conn_state { C_HEAD, C_BODY, C_HANDLING, C_LINGER };
enum timer_mode { T_NONE, T_IDLE, T_HEADER, T_BODY, T_LINGER };

struct sb_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_shutdown_t shutdown_req;
    uv_write_t wreq;
    struct sb_worker *w;
    struct sb_conn *prev, *next;
    struct sb_conn *dirty_next;
    struct sb_buf in;
    struct sb_buf out;
    size_t out_off;
    struct sb_buf wbuf; /* being written by uv_write */
    struct sb_exchange *x;
    struct sb_http_chunked chunked;
    int64_t body_left;
    enum conn_state state;
    enum timer_mode tmode;
    int closes_pending;
    bool dirty;
    bool writing;
    bool reading;
    bool close_after; /* close once the current response is written */
    bool closing;     /* uv_close called */
    bool free_pending;
    bool shut;
    bool broken; /* output failed: closed from the flush hook */
};

struct sb_worker {
    struct sb_server *srv;
    int index;
    uv_thread_t thread;
    uv_loop_t loop;
    uv_tcp_t listener;
    int listen_fd;
    uv_async_t wake;
    uv_prepare_t flush;
    uv_timer_t drain_timer;
    struct sb_conn *conns;
    size_t nconns;
    struct sb_conn *dirty;
    void *data;
    void (*flush_hook)(struct sb_worker *w);
    void (*before_flush_hook)(struct sb_worker *w);
    time_t date_sec;
    char date[40];
    bool draining;
    bool stopped;
    bool listener_open;
    struct sb_spares spare; /* finished exchanges kept for reuse */
    /* Every read lands here first; connections copy only what they must keep, so an idle
     * keep-alive connection holds no buffer at all. */
    char rbuf[65536];
};

struct sb_server {
    struct sb_server_opts o;
    char *host;
    struct sb_worker *workers;
    int n;
    atomic_bool draining;
};

static void conn_close(struct sb_conn *c);
static void process_input(struct sb_conn *c);
static void on_flush(uv_prepare_t *p);

/* ---------------------------------------------------------------- exchanges */

static void mark_dirty(struct sb_conn *c)
{
    if (c->dirty)
        return;
    c->dirty = true;
    c->dirty_next = c->w->dirty;
    c->w->dirty = c;
}

/* Finished exchanges kept per worker for reuse, with the memory of their head and body when
 * that is small: a request would otherwise cost three allocations of a few KiB each, which
 * glibc serves from its bins at a cost. */
#define EXCHANGE_SPARE_MAX 64
#define EXCHANGE_KEEP_CAP  ((size_t)16 << 10)

static void exchange_release(struct sb_exchange *x)
{
    free(x->head);
    sb_buf_free(&x->body);
    free(x);
}

static void exchange_free(struct sb_exchange *x)
{
    struct sb_worker *w = x->worker;
    if (w->spare.n < EXCHANGE_SPARE_MAX) {
        if (x->head_cap > EXCHANGE_KEEP_CAP) {
            free(x->head);
            x->head = NULL;
            x->head_cap = 0;
        }
        if (x->head)
            SB_SPARES_POISON(x->head, x->head_cap);
        sb_buf_recycle(&x->body, x->body.max, EXCHANGE_KEEP_CAP);
        sb_spares_hide_buf(&x->body);
        SB_SPARES_KEEP(&w->spare, x, spare, EXCHANGE_SPARE_MAX);
        return;
    }
    exchange_release(x);
}

/* A kept exchange's memory, usable again. */
static void exchange_show(struct sb_exchange *x)
{
    if (x->head)
        SB_SPARES_UNPOISON(x->head, x->head_cap);
    sb_spares_show_buf(&x->body);
}

/* An exchange with room for a head of head_len bytes: everything but the request (which the
 * caller copies from the parse, and only its used header slots) zeroed. */
static struct sb_exchange *exchange_new(struct sb_worker *w, size_t head_len, size_t max_body)
{
    char *head = NULL;
    size_t head_cap = 0;
    struct sb_buf body = {0};
    struct sb_exchange *x = SB_SPARES_TAKE(&w->spare, struct sb_exchange, spare);
    if (x) {
        exchange_show(x);
        head = x->head;
        head_cap = x->head_cap;
        body = x->body;
    } else if (!(x = malloc(sizeof *x))) {
        return NULL;
    }
    if (head_cap < head_len) {
        free(head);
        head_cap = head_len;
        if (!(head = malloc(head_cap))) {
            sb_buf_free(&body);
            free(x);
            return NULL;
        }
    }
    size_t req_end = offsetof(struct sb_exchange, req) + sizeof x->req;
    memset(x, 0, offsetof(struct sb_exchange, req));
    memset((char *)x + req_end, 0, sizeof *x - req_end);
    x->head = head;
    x->head_cap = head_cap;
    x->body = body;
    sb_buf_recycle(&x->body, max_body, EXCHANGE_KEEP_CAP);
    return x;
}

/* Ends the exchange through its handler, exactly once. */
static void exchange_end(struct sb_conn *c, bool aborted)
{
    struct sb_exchange *x = c->x;
    if (!x)
        return;
    c->x = NULL;
    if (!x->ended) {
        x->ended = true;
        if (x->on_end)
            x->on_end(x, aborted);
    }
    exchange_free(x);
}

/* ---------------------------------------------------------------- timers */

static void on_conn_timer(uv_timer_t *t);

static void set_timer(struct sb_conn *c, enum timer_mode mode)
{
    const struct sb_server_opts *o = &c->w->srv->o;
    uint64_t ms = 0;
    switch (mode) {
    case T_NONE:
        c->tmode = T_NONE;
        uv_timer_stop(&c->timer);
        return;
    case T_IDLE:
        ms = o->idle_timeout_ms;
        break;
    case T_HEADER:
        ms = o->header_timeout_ms;
        break;
    case T_BODY:
        ms = o->body_timeout_ms;
        break;
    case T_LINGER:
        ms = LINGER_MS;
        break;
    }
    c->tmode = mode;
    uv_timer_start(&c->timer, on_conn_timer, ms, 0);
}

/* ---------------------------------------------------------------- output */

static const char *date_header(struct sb_worker *w)
{
    time_t now = time(NULL);
    if (now != w->date_sec) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(w->date, sizeof w->date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
        w->date_sec = now;
    }
    return w->date;
}

/* Appends to the connection's output. On failure (cap) the connection is closed from the
 * flush hook. */
static int out_append(struct sb_conn *c, const char *p, size_t n)
{
    if (c->closing)
        return -1;
    if (sb_buf_append(&c->out, p, n) != 0) {
        sb_warn("connection output over its cap; closing");
        c->broken = true;
        mark_dirty(c);
        return -1;
    }
    mark_dirty(c);
    return 0;
}

static void write_head(struct sb_exchange *x, int status, const char *content_type,
                       const char *headers, size_t headers_len, int64_t content_length)
{
    struct sb_conn *c = x->conn;
    char head[1024];
    struct sb_buf h = {.data = head, .len = 0, .cap = sizeof head, .max = sizeof head - 1};
    bool http10 = x->req.minor_version == 0;
    if (content_length < 0 && http10)
        c->close_after = true; /* no chunked coding in HTTP/1.0: the close ends the body */
    if (c->w->draining)
        c->close_after = true;
    /* Plain appends rather than printf: this runs for every response. */
    int rc = sb_buf_append(&h, "HTTP/1.1 ", 9);
    rc = rc ? rc : sb_buf_append_u64(&h, (uint64_t)status);
    rc = rc ? rc : sb_buf_append_char(&h, ' ');
    rc = rc ? rc : sb_buf_append_str(&h, sb_http_reason(status));
    rc = rc ? rc : sb_buf_append_str(&h, "\r\nDate: ");
    rc = rc ? rc : sb_buf_append_str(&h, date_header(c->w));
    rc = rc ? rc : sb_buf_append(&h, "\r\n", 2);
    if (rc == 0 && content_type) {
        rc = sb_buf_append_str(&h, "Content-Type: ");
        rc = rc ? rc : sb_buf_append_str(&h, content_type);
        rc = rc ? rc : sb_buf_append(&h, "\r\n", 2);
    }
    if (rc == 0 && content_length >= 0) {
        rc = sb_buf_append_str(&h, "Content-Length: ");
        rc = rc ? rc : sb_buf_append_u64(&h, (uint64_t)content_length);
        rc = rc ? rc : sb_buf_append(&h, "\r\n", 2);
    } else if (rc == 0 && !http10) {
        rc = sb_buf_append_str(&h, "Transfer-Encoding: chunked\r\n");
    }
    if (rc == 0 && c->close_after)
        rc = sb_buf_append_str(&h, "Connection: close\r\n");
    else if (rc == 0 && http10)
        rc = sb_buf_append_str(&h, "Connection: keep-alive\r\n");
    if (rc != 0) {
        /* Only a content type longer than the head buffer gets here. */
        sb_error("response head too long");
        h.len = 0;
        sb_buf_printf(&h, "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                          "Connection: close\r\n\r\n");
        c->close_after = true;
        out_append(c, h.data, h.len);
        return;
    }
    x->status = status;
    if (!x->t_first_byte_ns)
        x->t_first_byte_ns = uv_hrtime();
    out_append(c, h.data, h.len);
    if (headers_len)
        out_append(c, headers, headers_len);
    out_append(c, "\r\n", 2);
    x->bytes_out += h.len + headers_len + 2;
}

void sb_http_respond(struct sb_exchange *x, int status, const char *content_type,
                     const char *headers, size_t headers_len, const char *body, size_t body_len)
{
    if (x->finished || x->status)
        return;
    write_head(x, status, content_type, headers, headers_len, (int64_t)body_len);
    if (body_len)
        out_append(x->conn, body, body_len);
    x->bytes_out += body_len;
    x->finished = true;
    mark_dirty(x->conn);
}

void sb_http_respond_error(struct sb_exchange *x, const struct sb_error *e, const char *headers,
                           size_t headers_len)
{
    struct sb_buf b;
    sb_buf_init(&b, 8192);
    if (sb_error_render_openai(e, &b) != 0) {
        sb_buf_reset(&b);
        sb_buf_append_str(&b, "{\"error\":{\"message\":\"internal error\",\"type\":\"api_error\","
                              "\"param\":null,\"code\":null}}");
    }
    sb_http_respond(x, e->status, "application/json", headers, headers_len, b.data, b.len);
    sb_buf_free(&b);
}

void sb_http_stream_start(struct sb_exchange *x, int status, const char *content_type,
                          const char *headers, size_t headers_len)
{
    if (x->finished || x->status)
        return;
    x->streaming = true;
    write_head(x, status, content_type, headers, headers_len, -1);
}

int sb_http_stream_write(struct sb_exchange *x, const char *data, size_t len)
{
    struct sb_conn *c = x->conn;
    if (!len)
        return 0;
    if (c->closing || x->finished)
        return -1;
    x->bytes_out += len;
    if (x->req.minor_version == 0)
        return out_append(c, data, len);
    char size[24];
    int n = snprintf(size, sizeof size, "%zx\r\n", len);
    if (out_append(c, size, (size_t)n) || out_append(c, data, len) || out_append(c, "\r\n", 2))
        return -1;
    return 0;
}

void sb_http_stream_end(struct sb_exchange *x)
{
    if (x->finished)
        return;
    if (x->req.minor_version != 0)
        out_append(x->conn, "0\r\n\r\n", 5);
    x->finished = true;
    mark_dirty(x->conn);
}

size_t sb_http_pending(const struct sb_exchange *x)
{
    const struct sb_conn *c = x->conn;
    return (c->out.len - c->out_off) + c->wbuf.len;
}

void sb_http_close_after(struct sb_exchange *x)
{
    x->conn->close_after = true;
}

/* An error the server itself answers, before any handler ran: the request is not read any
 * further and the connection closes after the response. */
static void respond_protocol_error(struct sb_conn *c, int status, const char *code, const char *msg)
{
    struct sb_exchange tmp;
    memset(&tmp, 0, sizeof tmp);
    tmp.conn = c;
    tmp.worker = c->w;
    tmp.req.minor_version = 1;
    c->close_after = true;
    struct sb_error e;
    sb_error_set(&e, status, "invalid_request_error", code, NULL, "%s", msg);
    sb_http_respond_error(&tmp, &e, NULL, 0);
    c->state = C_HANDLING; /* nothing more is parsed */
    sb_buf_reset(&c->in);
}

static void on_write(uv_write_t *req, int status);

static void flush_conn(struct sb_conn *c)
{
    if (c->writing || c->closing)
        return;
    size_t left = c->out.len - c->out_off;
    if (left) {
        uv_buf_t b = uv_buf_init(c->out.data + c->out_off, (unsigned)left);
        int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        if (n < 0 && n != UV_EAGAIN) {
            conn_close(c);
            return;
        }
        if (n > 0) {
            c->out_off += (size_t)n;
            left -= (size_t)n;
        }
        if (left) {
            /* The rest goes out through uv_write from a buffer of its own, so the handler can
             * keep appending to `out` meanwhile. */
            sb_buf_swap(&c->out, &c->wbuf);
            size_t off = c->out_off;
            c->out_off = 0;
            sb_buf_reset(&c->out);
            uv_buf_t wb = uv_buf_init(c->wbuf.data + off, (unsigned)left);
            c->writing = true;
            if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &wb, 1, on_write) != 0) {
                c->writing = false;
                conn_close(c);
                return;
            }
        } else {
            sb_buf_reset(&c->out);
            c->out_off = 0;
        }
    }
}

static void on_write(uv_write_t *req, int status)
{
    struct sb_conn *c = req->data;
    c->writing = false;
    sb_buf_reset(&c->wbuf);
    if (c->wbuf.cap > (1u << 20))
        sb_buf_free(&c->wbuf); /* do not keep a large response's buffer on an idle conn */
    if (status < 0) {
        conn_close(c);
        return;
    }
    mark_dirty(c);
}

/* ---------------------------------------------------------------- input */

static void start_reading(struct sb_conn *c);

static void dispatch(struct sb_conn *c)
{
    c->state = C_HANDLING;
    set_timer(c, T_NONE);
    struct sb_exchange *x = c->x;
    c->w->srv->o.on_request(x);
}

/* Moves body bytes from the connection buffer into the exchange. */
static void read_body(struct sb_conn *c)
{
    struct sb_exchange *x = c->x;
    if (x->req.chunked) {
        ssize_t n = sb_http_chunked_feed(&c->chunked, c->in.data, c->in.len, &x->body);
        if (n < 0) {
            int status = sb_http_error_status((int)n);
            exchange_end(c, true);
            if (status == 413)
                respond_protocol_error(c, 413, "request_too_large",
                                       "Request body is larger than the configured maximum.");
            else
                respond_protocol_error(c, status, "bad_request", sb_http_strerror((int)n));
            return;
        }
        sb_buf_consume(&c->in, (size_t)n);
        x->bytes_in += (uint64_t)n;
        if (c->chunked.done)
            dispatch(c);
        return;
    }
    size_t take = c->in.len < (uint64_t)c->body_left ? c->in.len : (size_t)c->body_left;
    if (take) {
        if (sb_buf_append(&x->body, c->in.data, take) != 0) {
            exchange_end(c, true);
            respond_protocol_error(c, 500, "internal_error", "Out of memory.");
            return;
        }
        sb_buf_consume(&c->in, take);
        c->body_left -= (int64_t)take;
        x->bytes_in += take;
    }
    if (c->body_left == 0)
        dispatch(c);
}

/* Moves a string of a request parsed in `from` to the same place in `to`. Strings outside
 * the buffer (the parser's static "/" for an empty absolute-form path) stay as they are. */
static void rebase(struct sb_http_str *str, const char *from, size_t len, const char *to)
{
    if (str->p >= from && str->p < from + len)
        str->p = to + (str->p - from);
}

static void start_exchange(struct sb_conn *c, const struct sb_http_request *req, size_t head_len)
{
    const struct sb_server_opts *o = &c->w->srv->o;
    struct sb_exchange *x = exchange_new(c->w, head_len, o->max_body_bytes);
    if (!x) {
        respond_protocol_error(c, 500, "internal_error", "Out of memory.");
        return;
    }
    char *head = x->head;
    memcpy(head, c->in.data, head_len);
    memcpy(&x->req, req, offsetof(struct sb_http_request, headers));
    memcpy(x->req.headers, req->headers, req->nheaders * sizeof req->headers[0]);
    x->req.nheaders = req->nheaders;
    x->req.content_length = req->content_length;
    x->req.chunked = req->chunked;
    x->req.keep_alive = req->keep_alive;
    x->req.expect_continue = req->expect_continue;
    x->req.expect_other = req->expect_other;
    x->req.head_len = req->head_len;
    const char *from = c->in.data;
    rebase(&x->req.method, from, head_len, head);
    rebase(&x->req.target, from, head_len, head);
    rebase(&x->req.path, from, head_len, head);
    rebase(&x->req.query, from, head_len, head);
    for (size_t i = 0; i < x->req.nheaders; i++) {
        rebase(&x->req.headers[i].name, from, head_len, head);
        rebase(&x->req.headers[i].value, from, head_len, head);
    }
    x->conn = c;
    x->worker = c->w;
    x->t_start_ns = uv_hrtime();
    x->bytes_in = head_len;
    c->x = x;
    sb_buf_consume(&c->in, head_len);
    if (!x->req.keep_alive)
        c->close_after = true;

    if (x->req.expect_other) {
        exchange_end(c, true);
        respond_protocol_error(c, 417, "expectation_failed", "Only 100-continue is supported.");
        return;
    }
    if (x->req.content_length > 0 && (uint64_t)x->req.content_length > o->max_body_bytes) {
        /* Refused from the header alone, before reading the body. */
        exchange_end(c, true);
        respond_protocol_error(c, 413, "request_too_large",
                               "Request body is larger than the configured maximum.");
        return;
    }
    bool has_body = x->req.chunked || x->req.content_length > 0;
    if (!has_body) {
        dispatch(c);
        return;
    }
    if (x->req.chunked)
        sb_http_chunked_init(&c->chunked);
    else
        c->body_left = x->req.content_length;
    c->state = C_BODY;
    set_timer(c, T_BODY);
    if (x->req.expect_continue && c->in.len == 0)
        out_append(c, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    read_body(c);
}

static void process_input(struct sb_conn *c)
{
    for (;;) {
        if (c->closing)
            return;
        if (c->state == C_LINGER) {
            sb_buf_reset(&c->in);
            return;
        }
        if (c->state == C_BODY) {
            read_body(c);
            if (c->state == C_BODY)
                break; /* need more */
            continue;
        }
        if (c->state == C_HANDLING || c->in.len == 0)
            break;
        if (c->tmode == T_IDLE)
            set_timer(c, T_HEADER);
        struct sb_http_request req;
        size_t max_head = c->w->srv->o.max_header_bytes;
        int rc = sb_http_parse_request(c->in.data, c->in.len, max_head, &req);
        if (rc == SB_HTTP_AGAIN)
            break;
        if (rc < 0) {
            int status = sb_http_error_status(rc);
            const char *code = status == 431 ? "headers_too_large" : "bad_request";
            respond_protocol_error(c, status, code, sb_http_strerror(rc));
            break;
        }
        start_exchange(c, &req, (size_t)rc);
    }
    /* Past the cap, stop reading until the current exchange frees room. */
    if (c->in.len >= c->in.max && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct sb_conn *c = h->data;
    size_t room = c->in.max - c->in.len;
    if (c->state == C_LINGER)
        room = sizeof c->w->rbuf;
    if (room > sizeof c->w->rbuf)
        room = sizeof c->w->rbuf;
    *buf = uv_buf_init(room ? c->w->rbuf : NULL, (unsigned)room);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct sb_conn *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        if (nread == UV_ENOBUFS) {
            uv_read_stop(s);
            c->reading = false;
            return;
        }
        /* EOF or error. A client that goes away mid-exchange aborts it; an answered
         * request's response still goes out when only the read side was closed. */
        if (c->x && !c->x->finished) {
            conn_close(c);
            return;
        }
        if (c->out.len - c->out_off || c->writing) {
            c->close_after = true;
            uv_read_stop(s);
            c->reading = false;
            return;
        }
        conn_close(c);
        return;
    }
    if (c->state == C_LINGER)
        return; /* discarded */
    if (sb_buf_append(&c->in, buf->base, (size_t)nread) != 0) {
        conn_close(c);
        return;
    }
    process_input(c);
    if (c->in.len == 0 && !c->closing)
        sb_buf_free(&c->in);
}

static void start_reading(struct sb_conn *c)
{
    if (!c->reading && !c->closing) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = true;
    }
}

/* ---------------------------------------------------------------- connections */

static void conn_free(struct sb_conn *c)
{
    sb_buf_free(&c->in);
    sb_buf_free(&c->out);
    sb_buf_free(&c->wbuf);
    free(c);
}

static void on_conn_closed(uv_handle_t *h)
{
    struct sb_conn *c = h->data;
    if (--c->closes_pending > 0)
        return;
    /* Still on the dirty list: the flush hook frees it when it gets there. Once the worker
     * has stopped, the hook no longer runs and the list is dead. */
    if (c->dirty && !c->w->stopped)
        c->free_pending = true;
    else
        conn_free(c);
}

static void conn_close(struct sb_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    exchange_end(c, true);
    struct sb_worker *w = c->w;
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    c->closes_pending = 2;
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    if (w->draining)
        mark_dirty(c); /* the flush hook notices when the last connection is gone */
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    struct sb_conn *c = req->data;
    if (c->closing)
        return;
    /* Keep reading (and discarding) until the client closes or the linger timer fires. */
    c->state = C_LINGER;
    sb_buf_reset(&c->in);
    set_timer(c, T_LINGER);
    start_reading(c);
}

static void on_conn_timer(uv_timer_t *t)
{
    struct sb_conn *c = t->data;
    switch (c->tmode) {
    case T_IDLE:
    case T_LINGER:
        conn_close(c);
        break;
    case T_HEADER:
    case T_BODY:
        exchange_end(c, true);
        respond_protocol_error(c, 408, "request_timeout", "The request was not received in time.");
        break;
    case T_NONE:
        break;
    }
}

/* After a response is written: end the exchange, then close, linger, or read the next. */
static void after_response(struct sb_conn *c)
{
    exchange_end(c, false);
    if (c->close_after || c->w->draining) {
        if (c->state == C_LINGER || c->shut)
            return;
        c->shut = true;
        c->shutdown_req.data = c;
        if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0)
            conn_close(c);
        else
            c->state = C_LINGER;
        return;
    }
    c->state = C_HEAD;
    set_timer(c, c->in.len ? T_HEADER : T_IDLE);
    if (c->out.cap > 4096) /* small buffers are kept for the next response on this conn */
        sb_buf_free(&c->out);
    sb_buf_free(&c->wbuf);
    start_reading(c);
    process_input(c);
    if (c->in.len == 0)
        sb_buf_free(&c->in);
}

static void on_connection(uv_stream_t *server, int status)
{
    struct sb_worker *w = server->data;
    if (status < 0)
        return;
    struct sb_conn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->w = w;
    uv_tcp_init(&w->loop, &c->tcp);
    c->tcp.data = c;
    uv_timer_init(&w->loop, &c->timer);
    c->timer.data = c;
    c->wreq.data = c;
    sb_buf_init(&c->in, w->srv->o.max_header_bytes + IN_EXTRA);
    sb_buf_init(&c->out, OUT_MAX);
    sb_buf_init(&c->wbuf, OUT_MAX);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        conn_close(c);
        return;
    }
    if (w->nconns > w->srv->o.max_connections || w->draining) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->state = C_HEAD;
    set_timer(c, T_IDLE);
    start_reading(c);
}

/* ---------------------------------------------------------------- worker loop */

static void worker_stop(struct sb_worker *w)
{
    if (w->stopped)
        return;
    w->stopped = true;
    if (w->srv->o.on_worker_stop)
        w->srv->o.on_worker_stop(w);
    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->flush, NULL);
    uv_close((uv_handle_t *)&w->drain_timer, NULL);
    if (w->listener_open) {
        w->listener_open = false;
        uv_close((uv_handle_t *)&w->listener, NULL);
    }
}

static void on_flush(uv_prepare_t *p)
{
    struct sb_worker *w = p->data;
    /* Handling one connection can dirty others (or itself again, by starting the next
     * pipelined request), so take the list until it stays empty. */
    for (;;) {
        if (w->before_flush_hook)
            w->before_flush_hook(w);
        if (!w->dirty)
            break;
        struct sb_conn *list = w->dirty;
        w->dirty = NULL;
        while (list) {
            struct sb_conn *c = list;
            list = c->dirty_next;
            c->dirty = false;
            if (c->free_pending) {
                conn_free(c);
                continue;
            }
            if (c->closing)
                continue;
            if (c->broken) {
                conn_close(c);
                continue;
            }
            flush_conn(c);
            if (c->closing)
                continue;
            struct sb_exchange *x = c->x;
            if (x && x->want_drain && x->on_drain && sb_http_pending(x) < SB_HTTP_LOW_WATER) {
                x->want_drain = false;
                x->on_drain(x);
            }
            if (c->closing)
                continue;
            bool written = c->out.len == c->out_off && !c->writing;
            if (x && x->finished && written)
                after_response(c);
            else if (!x && c->close_after && written && c->state == C_HANDLING)
                after_response(c); /* a protocol error response went out */
        }
    }
    if (w->flush_hook)
        w->flush_hook(w);
    if (w->draining && w->nconns == 0)
        worker_stop(w);
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct sb_worker *w = t->data;
    sb_warn("worker %d: drain timeout, closing %zu connections", w->index, w->nconns);
    while (w->conns)
        conn_close(w->conns);
    worker_stop(w);
}

static void on_wake(uv_async_t *a)
{
    struct sb_worker *w = a->data;
    if (w->draining)
        return;
    w->draining = true;
    if (w->listener_open) {
        w->listener_open = false;
        uv_close((uv_handle_t *)&w->listener, NULL);
    }
    /* Idle keep-alive connections go now; busy ones close after their response. */
    struct sb_conn *c = w->conns;
    while (c) {
        struct sb_conn *next = c->next;
        if (!c->x && c->state == C_HEAD && c->in.len == 0)
            conn_close(c);
        else
            c->close_after = true;
        c = next;
    }
    uv_timer_start(&w->drain_timer, on_drain_timeout, w->srv->o.drain_timeout_ms, 0);
    /* Make sure the flush hook runs even if nothing else happens. */
    if (w->nconns == 0)
        worker_stop(w);
}

static void worker_main(void *arg)
{
    struct sb_worker *w = arg;
    if (w->srv->o.on_worker_start)
        w->srv->o.on_worker_start(w);
    uv_run(&w->loop, UV_RUN_DEFAULT);
    /* Close anything a stop callback left open, then let the close callbacks run. */
    uv_run(&w->loop, UV_RUN_DEFAULT);
    struct sb_exchange *x;
    while ((x = SB_SPARES_TAKE(&w->spare, struct sb_exchange, spare))) {
        exchange_show(x);
        exchange_release(x);
    }
    if (uv_loop_close(&w->loop) != 0)
        sb_warn("worker %d: loop closed with open handles", w->index);
}

struct sb_server *sb_server_new(const struct sb_server_opts *o)
{
    struct sb_server *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->o = *o;
    s->host = strdup(o->host);
    s->o.host = s->host;
    s->n = o->workers > 0 ? o->workers : 1;
    s->workers = calloc((size_t)s->n, sizeof *s->workers);
    if (!s->host || !s->workers) {
        sb_server_free(s);
        return NULL;
    }
    for (int i = 0; i < s->n; i++) {
        struct sb_worker *w = &s->workers[i];
        w->srv = s;
        w->index = i;
        w->listen_fd = -1;
        int rc = sb_listen_reuseport(o->host, o->port, 4096, &w->listen_fd, NULL);
        if (rc != 0) {
            sb_error("cannot listen on %s:%d: %s", o->host, o->port,
                     rc == -EINVAL ? "address does not resolve" : strerror(-rc));
            sb_server_free(s);
            return NULL;
        }
    }
    return s;
}

int sb_server_start(struct sb_server *s)
{
    for (int i = 0; i < s->n; i++) {
        struct sb_worker *w = &s->workers[i];
        uv_loop_init(&w->loop);
        uv_tcp_init(&w->loop, &w->listener);
        w->listener.data = w;
        if (uv_tcp_open(&w->listener, w->listen_fd) != 0 ||
            uv_listen((uv_stream_t *)&w->listener, 4096, on_connection) != 0) {
            sb_error("worker %d: cannot start listening", i);
            return -1;
        }
        w->listen_fd = -1; /* owned by the handle now */
        w->listener_open = true;
        uv_async_init(&w->loop, &w->wake, on_wake);
        w->wake.data = w;
        uv_prepare_init(&w->loop, &w->flush);
        w->flush.data = w;
        uv_prepare_start(&w->flush, on_flush);
        uv_timer_init(&w->loop, &w->drain_timer);
        w->drain_timer.data = w;
        uv_unref((uv_handle_t *)&w->drain_timer);
        if (uv_thread_create(&w->thread, worker_main, w) != 0) {
            sb_error("cannot start worker thread %d", i);
            return -1;
        }
    }
    return 0;
}

void sb_server_drain(struct sb_server *s)
{
    if (atomic_exchange(&s->draining, true))
        return;
    for (int i = 0; i < s->n; i++)
        uv_async_send(&s->workers[i].wake);
}

bool sb_server_draining(const struct sb_server *s)
{
    return atomic_load(&((struct sb_server *)s)->draining);
}

void sb_server_wait(struct sb_server *s)
{
    for (int i = 0; i < s->n; i++)
        uv_thread_join(&s->workers[i].thread);
}

void sb_server_free(struct sb_server *s)
{
    if (!s)
        return;
    if (s->workers) {
        for (int i = 0; i < s->n; i++)
            if (s->workers[i].listen_fd >= 0)
                close(s->workers[i].listen_fd);
    }
    free(s->workers);
    free(s->host);
    free(s);
}

int sb_worker_index(const struct sb_worker *w)
{
    return w->index;
}

uv_loop_t *sb_worker_loop(struct sb_worker *w)
{
    return &w->loop;
}

void *sb_worker_ud(const struct sb_worker *w)
{
    return w->srv->o.ud;
}

void *sb_worker_data(const struct sb_worker *w)
{
    return w->data;
}

void sb_worker_set_data(struct sb_worker *w, void *data)
{
    w->data = data;
}

bool sb_worker_draining(const struct sb_worker *w)
{
    return w->draining;
}

void sb_worker_set_flush_hook(struct sb_worker *w, void (*hook)(struct sb_worker *w))
{
    w->flush_hook = hook;
}

void sb_worker_set_before_flush_hook(struct sb_worker *w, void (*hook)(struct sb_worker *w))
{
    w->before_flush_hook = hook;
}

/* The native HTTP/1.1 client for plain-http upstreams (vLLM, Ollama, llama.cpp and other
 * servers on the local network, reached by address).
 *
 * libcurl costs about 80k instructions per transfer, most of it generic work this case never
 * needs (its own printf formats every header line one character at a time); that is two
 * thirds of the gateway's CPU per request. This client does the one thing needed: one
 * request per keep-alive connection at a time, the response framed by Content-Length,
 * chunked coding or the close, with the same callbacks, pause and cancel semantics as the
 * libcurl path. https (TLS, HTTP/2) and host names (DNS) stay with libcurl.
 *
 * Connections are pooled per address; an idle connection keeps reading, so a server that
 * closes it is noticed at once and it is dropped. A request that fails on a reused
 * connection before any response byte arrived is sent once more on a new connection: the
 * server closed the idle connection as the request went out, and never saw it. */
#include "upstream/upstream_int.h"

#include "core/log.h"
#include "core/spares.h"
#include "http/response.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define H1_MAX_HEAD   (64u << 10)
#define H1_MAX_HELD   (2u << 20)
#define H1_READ_CHUNK 65536
#define H1_MAX_AUTH   300
#define H1_SPARE_MAX  64          /* finished transfers kept for reuse, per loop */
#define H1_KEEP_CAP   (16u << 10) /* ... with buffers of at most this many bytes each */

struct h1_conn;

struct h1_pool {
    struct h1_pool *next;
    char authority[H1_MAX_AUTH]; /* host[:port] as in the URL: the key and the Host header */
    struct sockaddr_storage addr;
    struct h1_conn *idle; /* a stack: the most recently used first */
    size_t nidle;
};

struct h1_conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    struct sb_upstream *u;
    struct h1_pool *pool;
    struct h1_conn *prev, *next; /* every connection, for shutdown */
    struct h1_conn *idle_next;
    struct sb_transfer *t; /* NULL while idle */
    struct sb_buf wbuf;    /* the part of a request uv_write is sending */
    unsigned uses;
    bool connected;
    bool reading;
    bool writing;
    bool idle;
    bool closing;
    bool counted; /* its close is one of the upstream's pending closes */
};

struct h1_state {
    struct h1_pool *pools;
    struct h1_conn *conns;
    uv_timer_t defer; /* delivers failures found inside sb_h1_start, never synchronously */
    struct sb_transfer *deferred;
    /* Finished transfers (struct h1_pair) kept with their buffers' memory: a request's four
     * buffers and two structs cost a dozen allocations when made anew. */
    struct sb_spares spare;
    char rbuf[H1_READ_CHUNK];
};

enum h1_phase { X_CONNECTING, X_HEAD, X_BODY };

struct h1_xfer {
    struct h1_conn *conn;
    struct h1_pool *pool;
    struct sb_buf req;  /* the whole request, kept for one retry on a stale connection */
    struct sb_buf head; /* the response head so far */
    struct sb_buf held; /* body bytes a paused owner has not taken yet */
    struct sb_buf dec;  /* chunked decoding output */
    struct sb_http_chunked ch;
    int64_t body_left; /* Content-Length bytes still to come; -1: until the close */
    uint64_t total_deadline;
    enum h1_phase phase;
    bool chunked;
    bool keepalive;
    bool got_bytes;
    bool retried;
    bool body_done;
    struct sb_transfer *defer_next;
    int defer_result;
    const char *defer_detail;
};

/* A native transfer and its state, allocated together. */
struct h1_pair {
    struct sb_transfer t;
    struct h1_xfer x;
    struct sb_spare spare; /* while kept for reuse */
};

#define H1_BUFS(x)                                                                                 \
    {                                                                                              \
        &(x)->req, &(x)->head, &(x)->held, &(x)->dec                                               \
    }

/* ---------------------------------------------------------------- URLs */

/* Splits "http://host[:port]/path" into an address, the authority and the path. */
static bool parse_url(const char *url, struct sockaddr_storage *addr, char *authority,
                      const char **path)
{
    if (strncasecmp(url, "http://", 7) != 0)
        return false;
    const char *a = url + 7;
    size_t alen = strcspn(a, "/?#");
    if (alen == 0 || alen >= H1_MAX_AUTH || memchr(a, '@', alen))
        return false;
    char host[H1_MAX_AUTH];
    int port = 80;
    const char *colon;
    if (a[0] == '[') {
        const char *close = memchr(a, ']', alen);
        if (!close)
            return false;
        size_t hl = (size_t)(close - a - 1);
        memcpy(host, a + 1, hl);
        host[hl] = '\0';
        colon = close + 1 < a + alen && close[1] == ':' ? close + 1 : NULL;
        if (!colon && close + 1 != a + alen)
            return false;
    } else {
        colon = memchr(a, ':', alen);
        size_t hl = colon ? (size_t)(colon - a) : alen;
        memcpy(host, a, hl);
        host[hl] = '\0';
    }
    if (colon) {
        const char *p = colon + 1;
        size_t pl = (size_t)(a + alen - p);
        if (pl == 0 || pl > 5)
            return false;
        port = 0;
        for (size_t i = 0; i < pl; i++) {
            if (p[i] < '0' || p[i] > '9')
                return false;
            port = port * 10 + (p[i] - '0');
        }
        if (port < 1 || port > 65535)
            return false;
    }
    memset(addr, 0, sizeof *addr);
    const char *numeric = strcasecmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    if (uv_ip4_addr(numeric, port, (struct sockaddr_in *)addr) != 0 &&
        uv_ip6_addr(numeric, port, (struct sockaddr_in6 *)addr) != 0)
        return false; /* a name: libcurl resolves it */
    memcpy(authority, a, alen);
    authority[alen] = '\0';
    *path = a[alen] == '/' ? a + alen : NULL;
    return *path != NULL && !strchr(*path, '#') && !strpbrk(*path, " \r\n");
}

bool sb_h1_eligible(const char *url)
{
    struct sockaddr_storage addr;
    char authority[H1_MAX_AUTH];
    const char *path;
    return parse_url(url, &addr, authority, &path);
}

/* ---------------------------------------------------------------- connections */

static void on_conn_closed(uv_handle_t *h)
{
    struct h1_conn *c = h->data;
    struct sb_upstream *u = c->u;
    bool counted = c->counted;
    sb_buf_free(&c->wbuf);
    free(c);
    if (counted)
        sb_upstream_maybe_free(u);
}

static void pool_remove_idle(struct h1_conn *c)
{
    struct h1_conn **pp = &c->pool->idle;
    while (*pp && *pp != c)
        pp = &(*pp)->idle_next;
    if (*pp) {
        *pp = c->idle_next;
        c->pool->nidle--;
    }
    c->idle = false;
}

static void close_conn(struct h1_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    struct sb_upstream *u = c->u;
    if (c->idle)
        pool_remove_idle(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        u->h1->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->counted = u->closing;
    if (c->counted)
        u->pending_closes++;
    /* Pending connect and write requests are cancelled; their callbacks see `closing`. */
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    struct h1_conn *c = h->data;
    *buf = uv_buf_init(c->u->h1->rbuf, H1_READ_CHUNK);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void start_reading(struct h1_conn *c)
{
    if (!c->reading && c->connected && !c->closing &&
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
}

static void stop_reading(struct h1_conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

/* ---------------------------------------------------------------- ending transfers */

static struct h1_pair *pair_of(struct sb_transfer *t)
{
    return (struct h1_pair *)(void *)((char *)t - offsetof(struct h1_pair, t));
}

static void pair_free(struct h1_pair *pr)
{
    struct sb_buf *bufs[] = H1_BUFS(&pr->x);
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        sb_buf_free(bufs[i]);
    free(pr);
}

static void xfer_free(struct sb_transfer *t)
{
    struct h1_pair *pr = pair_of(t);
    struct sb_spares *sp = &t->u->h1->spare;
    if (sp->n < H1_SPARE_MAX) {
        struct sb_buf *bufs[] = H1_BUFS(&pr->x);
        sb_spares_keep_bufs(bufs, sizeof bufs / sizeof bufs[0], H1_KEEP_CAP);
        SB_SPARES_KEEP(sp, pr, spare, H1_SPARE_MAX);
        return;
    }
    pair_free(pr);
}

/* A zeroed transfer, with the memory of a kept one's buffers when there is one. */
static struct sb_transfer *xfer_new(struct sb_upstream *u, size_t req_max)
{
    struct h1_pair *pr = SB_SPARES_TAKE(&u->h1->spare, struct h1_pair, spare);
    if (pr) {
        struct sb_buf *bufs[] = H1_BUFS(&pr->x);
        sb_spares_show_bufs(bufs, sizeof bufs / sizeof bufs[0]);
        sb_spares_zero_but_bufs(pr, sizeof *pr, bufs, sizeof bufs / sizeof bufs[0]);
    } else {
        pr = calloc(1, sizeof *pr);
        if (!pr)
            return NULL;
    }
    sb_buf_recycle(&pr->x.req, req_max, H1_KEEP_CAP);
    sb_buf_recycle(&pr->x.head, H1_MAX_HEAD, H1_KEEP_CAP);
    sb_buf_recycle(&pr->x.held, H1_MAX_HELD, H1_KEEP_CAP);
    sb_buf_recycle(&pr->x.dec, H1_MAX_HELD, H1_KEEP_CAP);
    pr->t.h1 = &pr->x;
    return &pr->t;
}

static void detach_conn(struct sb_transfer *t, bool reusable)
{
    struct h1_xfer *x = t->h1;
    struct h1_conn *c = x->conn;
    if (!c)
        return;
    x->conn = NULL;
    c->t = NULL;
    struct h1_pool *pool = c->pool;
    if (reusable && c->connected && !c->writing && !c->closing && pool->nidle < c->u->max_idle) {
        c->idle = true;
        c->idle_next = pool->idle;
        pool->idle = c;
        pool->nidle++;
        start_reading(c); /* notices a server that closes it while idle */
    } else {
        close_conn(c);
    }
}

static void finish(struct sb_transfer *t, int result, const char *detail)
{
    struct sb_upstream *u = t->u;
    detach_conn(t, result == SB_UP_OK && t->h1->keepalive);
    sb_upstream_unlink(u, t);
    struct sb_transfer_cbs cbs = t->cbs;
    void *ud = t->ud;
    xfer_free(t);
    cbs.on_done(ud, result, detail);
}

void sb_h1_fail(struct sb_transfer *t, int result, const char *detail)
{
    finish(t, result, detail);
}

static void on_defer(uv_timer_t *timer)
{
    struct sb_upstream *u = timer->data;
    while (u->h1->deferred) {
        struct sb_transfer *t = u->h1->deferred;
        u->h1->deferred = t->h1->defer_next;
        finish(t, t->h1->defer_result, t->h1->defer_detail);
    }
}

/* A failure found before sb_h1_start returned is reported from the loop, as libcurl's are. */
static void defer_fail(struct sb_transfer *t, int result, const char *detail)
{
    struct sb_upstream *u = t->u;
    t->h1->defer_result = result;
    t->h1->defer_detail = detail;
    t->h1->defer_next = u->h1->deferred;
    u->h1->deferred = t;
    uv_timer_start(&u->h1->defer, on_defer, 0, 0);
}

/* ---------------------------------------------------------------- response */

/* Hands body bytes to the owner. Returns -1 if the transfer ended (it is freed then). */
static int emit(struct sb_transfer *t, const char *p, size_t n)
{
    struct h1_xfer *x = t->h1;
    if (!n)
        return 0;
    if (t->paused || x->held.len) {
        if (sb_buf_append(&x->held, p, n) != 0) {
            finish(t, SB_UP_E_INTERNAL, "paused data over its cap");
            return -1;
        }
        return 0;
    }
    t->got_body = true;
    size_t r = t->cbs.on_body(t->ud, p, n);
    if (r == n)
        return 0;
    if (r == SB_UP_PAUSE) {
        t->paused = true;
        if (x->conn)
            stop_reading(x->conn);
        if (sb_buf_append(&x->held, p, n) != 0) {
            finish(t, SB_UP_E_INTERNAL, "paused data over its cap");
            return -1;
        }
        return 0;
    }
    finish(t, SB_UP_E_ABORTED, "the response was refused");
    return -1;
}

static void body_complete(struct sb_transfer *t)
{
    t->h1->body_done = true;
    if (!t->h1->held.len)
        finish(t, SB_UP_OK, "");
    /* else: finished when the owner resumes and takes the held bytes */
}

/* Body bytes of the current response. Returns -1 if the transfer ended. */
static int body(struct sb_transfer *t, const char *p, size_t n)
{
    struct h1_xfer *x = t->h1;
    if (x->chunked) {
        while (n) {
            ssize_t used = sb_http_chunked_feed(&x->ch, p, n, &x->dec);
            if (used < 0) {
                finish(t, SB_UP_E_PROTOCOL, "bad chunked framing from the provider");
                return -1;
            }
            p += used;
            n -= (size_t)used;
            if (x->dec.len) {
                if (emit(t, x->dec.data, x->dec.len) != 0)
                    return -1;
                sb_buf_reset(&x->dec);
            }
            if (x->ch.done) {
                if (n)
                    x->keepalive = false; /* bytes after the response: never reuse */
                body_complete(t);
                return -1;
            }
            if (used == 0)
                break;
        }
        return 0;
    }
    if (x->body_left < 0) /* until the close */
        return emit(t, p, n);
    size_t take = (uint64_t)x->body_left < n ? (size_t)x->body_left : n;
    if (emit(t, p, take) != 0)
        return -1;
    x->body_left -= (int64_t)take;
    if (take < n)
        x->keepalive = false;
    if (x->body_left == 0) {
        body_complete(t);
        return -1;
    }
    return 0;
}

/* Bytes from the provider. */
static void feed(struct sb_transfer *t, const char *p, size_t n)
{
    struct h1_xfer *x = t->h1;
    t->last_activity = uv_now(t->u->loop);
    x->got_bytes = true;
    if (x->phase == X_BODY) {
        body(t, p, n);
        return;
    }
    if (sb_buf_append(&x->head, p, n) != 0) {
        finish(t, SB_UP_E_PROTOCOL, "response head too large");
        return;
    }
    for (;;) {
        struct sb_http_response res;
        int rc = sb_http_parse_response(x->head.data, x->head.len, H1_MAX_HEAD, &res);
        if (rc == SB_HTTP_AGAIN)
            return;
        if (rc < 0) {
            finish(t, SB_UP_E_PROTOCOL, "malformed response head from the provider");
            return;
        }
        if (res.status < 200) { /* an interim response: 100 Continue, 103 Early Hints */
            sb_buf_consume(&x->head, (size_t)rc);
            if (!x->head.len)
                return;
            continue;
        }
        /* Every byte after the head arrived in this read (the head was incomplete before),
         * so the rest of the body starts inside p[0..n). */
        size_t rest = x->head.len - (size_t)rc;
        const char *body_start = p + n - rest;
        t->status = res.status;
        if (t->cbs.on_status)
            t->cbs.on_status(t->ud, res.status);
        if (t->cbs.on_header)
            for (size_t i = 0; i < res.nheaders; i++)
                t->cbs.on_header(t->ud, res.headers[i].name.p, res.headers[i].name.n,
                                 res.headers[i].value.p, res.headers[i].value.n);
        x->keepalive = !res.close;
        x->chunked = false;
        if (!sb_http_response_has_body(res.status)) {
            x->body_left = 0;
        } else if (res.chunked) {
            x->chunked = true;
            sb_http_chunked_init(&x->ch);
        } else if (res.content_length >= 0) {
            x->body_left = res.content_length;
        } else {
            x->body_left = -1;
            x->keepalive = false;
        }
        x->phase = X_BODY;
        sb_buf_free(&x->head);
        if (!x->chunked && x->body_left == 0) {
            if (rest)
                x->keepalive = false;
            body_complete(t);
            return;
        }
        body(t, body_start, rest);
        return;
    }
}

/* ---------------------------------------------------------------- request */

static void on_write(uv_write_t *req, int status);
static void conn_lost(struct h1_conn *c, int err);

/* Writes the request on the transfer's connection. Returns 0 or a libuv error; it never
 * calls back, so sb_h1_start can use it too. */
static int send_request(struct sb_transfer *t)
{
    struct h1_xfer *x = t->h1;
    struct h1_conn *c = x->conn;
    x->phase = X_HEAD;
    c->uses++;
    uv_buf_t b = uv_buf_init(x->req.data, (unsigned)x->req.len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN)
        n = 0;
    if (n < 0)
        return n;
    if ((size_t)n == x->req.len)
        return 0;
    /* The rest belongs to the connection: a cancelled transfer is freed before its write
     * request is. */
    sb_buf_reset(&c->wbuf);
    if (sb_buf_append(&c->wbuf, x->req.data + n, x->req.len - (size_t)n) != 0)
        return UV_ENOMEM;
    uv_buf_t wb = uv_buf_init(c->wbuf.data, (unsigned)c->wbuf.len);
    c->wreq.data = c;
    int rc = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &wb, 1, on_write);
    if (rc != 0)
        return rc;
    c->writing = true;
    return 0;
}

static void on_write(uv_write_t *req, int status)
{
    struct h1_conn *c = req->data;
    c->writing = false;
    sb_buf_reset(&c->wbuf);
    if (c->closing)
        return;
    if (status < 0)
        conn_lost(c, status);
}

static int open_conn(struct sb_transfer *t);

/* The connection failed or closed. */
static void conn_lost(struct h1_conn *c, int err)
{
    struct sb_transfer *t = c->t;
    if (!t) {
        close_conn(c); /* an idle connection the server closed */
        return;
    }
    struct h1_xfer *x = t->h1;
    if (err == UV_EOF && x->phase == X_BODY && !x->chunked && x->body_left < 0) {
        x->keepalive = false;
        body_complete(t); /* the close ends a body without a length */
        return;
    }
    if (!x->got_bytes && c->uses > 1 && !x->retried) {
        /* A reused connection the server had closed: the request never reached it. */
        x->retried = true;
        detach_conn(t, false);
        if (open_conn(t) != 0)
            finish(t, SB_UP_E_CONNECT, "could not connect to the provider");
        return;
    }
    if (x->phase == X_CONNECTING)
        finish(t, SB_UP_E_CONNECT, "could not connect to the provider");
    else if (!x->got_bytes)
        finish(t, t->status ? SB_UP_E_PROTOCOL : SB_UP_E_CONNECT,
               "the provider closed the connection without a response");
    else
        finish(t, SB_UP_E_PROTOCOL, "the provider's response was cut short");
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct h1_conn *c = s->data;
    if (nread == 0 || c->closing)
        return;
    if (nread < 0) {
        stop_reading(c);
        conn_lost(c, (int)nread);
        return;
    }
    if (!c->t) {
        close_conn(c); /* bytes on an idle connection: nothing may be trusted on it */
        return;
    }
    feed(c->t, buf->base, (size_t)nread);
}

static void on_connect(uv_connect_t *req, int status)
{
    struct h1_conn *c = req->data;
    if (c->closing)
        return;
    if (status < 0) {
        conn_lost(c, status);
        return;
    }
    c->connected = true;
    start_reading(c);
    struct sb_transfer *t = c->t;
    if (!t)
        return;
    t->deadline = t->h1->total_deadline;
    int rc = send_request(t);
    if (rc != 0)
        conn_lost(c, rc);
}

static int open_conn(struct sb_transfer *t)
{
    struct h1_xfer *x = t->h1;
    struct sb_upstream *u = t->u;
    struct h1_conn *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->u = u;
    c->pool = x->pool;
    sb_buf_init(&c->wbuf, x->req.len + 1);
    uv_tcp_init(u->loop, &c->tcp);
    c->tcp.data = c;
    c->creq.data = c;
    c->next = u->h1->conns;
    if (u->h1->conns)
        u->h1->conns->prev = c;
    u->h1->conns = c;
    uv_tcp_nodelay(&c->tcp, 1);
    c->t = t;
    x->conn = c;
    x->phase = X_CONNECTING;
    if (uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&x->pool->addr, on_connect) !=
        0) {
        x->conn = NULL;
        c->t = NULL;
        close_conn(c);
        return -1;
    }
    return 0;
}

static struct h1_pool *get_pool(struct sb_upstream *u, const struct sockaddr_storage *addr,
                                const char *authority)
{
    for (struct h1_pool *p = u->h1->pools; p; p = p->next)
        if (strcmp(p->authority, authority) == 0)
            return p;
    struct h1_pool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    memcpy(p->authority, authority, strlen(authority) + 1);
    p->addr = *addr;
    p->next = u->h1->pools;
    u->h1->pools = p;
    return p;
}

/* "POST /path HTTP/1.1", Host, the caller's headers ("Name:" with no value removes a header
 * in libcurl's convention, so such entries are skipped), Content-Length, the body. */
static int build_request(struct h1_xfer *x, const struct sb_transfer_opts *o, const char *path)
{
    struct sb_buf *b = &x->req;
    /* One allocation for the usual request: the head is a few hundred bytes. */
    int rc = sb_buf_reserve(b, o->body_len + 1024);
    rc = rc ? rc : sb_buf_append_str(b, o->body ? "POST " : "GET ");
    rc = rc ? rc : sb_buf_append_str(b, path);
    rc = rc ? rc : sb_buf_append_str(b, " HTTP/1.1\r\nHost: ");
    rc = rc ? rc : sb_buf_append_str(b, x->pool->authority);
    rc = rc ? rc : sb_buf_append(b, "\r\n", 2);
    for (const struct curl_slist *h = o->headers; h && rc == 0; h = h->next) {
        const char *colon = strchr(h->data, ':');
        if (!colon || !colon[1 + strspn(colon + 1, " ")])
            continue;
        rc = sb_buf_append_str(b, h->data);
        rc = rc ? rc : sb_buf_append(b, "\r\n", 2);
    }
    if (rc == 0 && o->body) {
        rc = sb_buf_append_str(b, "Content-Length: ");
        rc = rc ? rc : sb_buf_append_u64(b, o->body_len);
        rc = rc ? rc : sb_buf_append(b, "\r\n", 2);
    }
    rc = rc ? rc : sb_buf_append(b, "\r\n", 2);
    if (rc == 0 && o->body)
        rc = sb_buf_append(b, o->body, o->body_len);
    return rc;
}

struct sb_transfer *sb_h1_start(struct sb_upstream *u, const struct sb_transfer_opts *o,
                                const struct sb_transfer_cbs *cbs, void *ud)
{
    struct sockaddr_storage addr;
    char authority[H1_MAX_AUTH];
    const char *path;
    if (!parse_url(o->url, &addr, authority, &path))
        return NULL;
    struct h1_pool *pool = get_pool(u, &addr, authority);
    struct sb_transfer *t = pool ? xfer_new(u, o->body_len + (64u << 10)) : NULL;
    if (!t)
        return NULL;
    struct h1_xfer *x = t->h1;
    t->u = u;
    t->cbs = *cbs;
    t->ud = ud;
    x->pool = pool;
    if (build_request(x, o, path) != 0) {
        xfer_free(t);
        return NULL;
    }
    uint64_t now = uv_now(u->loop);
    t->idle_ms = o->idle_timeout_ms;
    t->last_activity = now;
    if (o->first_byte_timeout_ms)
        t->first_byte_deadline = now + o->first_byte_timeout_ms;
    x->total_deadline = o->timeout_ms > 0 ? now + (uint64_t)o->timeout_ms : 0;
    sb_upstream_link(u, t);

    struct h1_conn *c = pool->idle;
    if (c) {
        pool_remove_idle(c);
        c->t = t;
        x->conn = c;
        t->deadline = x->total_deadline;
        if (send_request(t) == 0)
            return t;
        /* The idle connection broke as the request went out: a new one, once. */
        x->retried = true;
        detach_conn(t, false);
    }
    uint64_t connect_deadline =
        now + (uint64_t)(o->connect_timeout_ms > 0 ? o->connect_timeout_ms : 10000);
    t->deadline = x->total_deadline && x->total_deadline < connect_deadline ? x->total_deadline
                                                                            : connect_deadline;
    if (open_conn(t) != 0)
        defer_fail(t, SB_UP_E_CONNECT, "could not connect to the provider");
    return t;
}

/* ---------------------------------------------------------------- pause, resume, cancel */

void sb_h1_pause(struct sb_transfer *t)
{
    t->paused = true;
    if (t->h1->conn)
        stop_reading(t->h1->conn);
}

void sb_h1_resume(struct sb_transfer *t)
{
    struct h1_xfer *x = t->h1;
    if (!t->paused)
        return;
    t->paused = false;
    t->last_activity = uv_now(t->u->loop);
    if (x->held.len) {
        size_t r = t->cbs.on_body(t->ud, x->held.data, x->held.len);
        if (r == SB_UP_PAUSE) {
            t->paused = true;
            return;
        }
        if (r != x->held.len) {
            finish(t, SB_UP_E_ABORTED, "the response was refused");
            return;
        }
        sb_buf_reset(&x->held);
    }
    if (x->body_done) {
        finish(t, SB_UP_OK, "");
        return;
    }
    if (x->conn)
        start_reading(x->conn);
}

void sb_h1_cancel(struct sb_transfer *t)
{
    struct sb_upstream *u = t->u;
    struct sb_transfer **pp = &u->h1->deferred;
    while (*pp && *pp != t)
        pp = &(*pp)->h1->defer_next;
    if (*pp)
        *pp = t->h1->defer_next;
    detach_conn(t, false); /* mid-response: never reused */
    sb_upstream_unlink(u, t);
    xfer_free(t);
}

/* ---------------------------------------------------------------- lifecycle */

void sb_h1_init(struct sb_upstream *u)
{
    u->h1 = calloc(1, sizeof *u->h1);
    if (!u->h1)
        abort(); /* a small fixed allocation at startup */
    uv_timer_init(u->loop, &u->h1->defer);
    u->h1->defer.data = u;
}

static void defer_closed(uv_handle_t *h)
{
    sb_upstream_maybe_free(h->data);
}

void sb_h1_close(struct sb_upstream *u)
{
    while (u->h1->conns)
        close_conn(u->h1->conns);
    u->pending_closes++;
    uv_close((uv_handle_t *)&u->h1->defer, defer_closed);
}

void sb_h1_free(struct sb_upstream *u)
{
    struct h1_pair *pr;
    while ((pr = SB_SPARES_TAKE(&u->h1->spare, struct h1_pair, spare))) {
        struct sb_buf *bufs[] = H1_BUFS(&pr->x);
        sb_spares_show_bufs(bufs, sizeof bufs / sizeof bufs[0]);
        pair_free(pr);
    }
    struct h1_pool *p = u->h1->pools;
    while (p) {
        struct h1_pool *next = p->next;
        free(p);
        p = next;
    }
    free(u->h1);
    u->h1 = NULL;
}

#include "upstream/upstream.h"

#include "core/log.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/upstream_int.h"

/* One per socket curl watches; freed in its close callback. */
struct poll_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    struct sb_upstream *u;
    struct poll_ctx *prev, *next;
};

void sb_upstream_maybe_free(struct sb_upstream *u)
{
    if (!u->closing || --u->pending_closes > 0)
        return;
    sb_h1_free(u);
    for (size_t i = 0; i < u->n_idle; i++)
        curl_easy_cleanup(u->idle[i]);
    free(u->idle);
    free(u);
}

static void timer_closed(uv_handle_t *h)
{
    sb_upstream_maybe_free(h->data);
}

static void poll_closed(uv_handle_t *h)
{
    struct poll_ctx *c = h->data;
    struct sb_upstream *u = c->u;
    free(c);
    sb_upstream_maybe_free(u);
}

static void close_poll(struct sb_upstream *u, struct poll_ctx *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        u->polls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (u->closing)
        u->pending_closes++;
    uv_poll_stop(&c->poll);
    uv_close((uv_handle_t *)&c->poll, poll_closed);
}

void sb_upstream_link(struct sb_upstream *u, struct sb_transfer *t)
{
    t->prev = NULL;
    t->next = u->active;
    if (u->active)
        u->active->prev = t;
    u->active = t;
}

void sb_upstream_unlink(struct sb_upstream *u, struct sb_transfer *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        u->active = t->next;
    if (t->next)
        t->next->prev = t->prev;
}

static void release_easy(struct sb_upstream *u, CURL *easy)
{
    curl_multi_remove_handle(u->multi, easy);
    if (u->n_idle == u->cap_idle) {
        size_t cap = u->cap_idle ? u->cap_idle * 2 : 64;
        CURL **n = realloc(u->idle, cap * sizeof *n);
        if (!n) {
            curl_easy_cleanup(easy);
            return;
        }
        u->idle = n;
        u->cap_idle = cap;
    }
    curl_easy_reset(easy);
    u->idle[u->n_idle++] = easy;
}

static int map_curl_error(CURLcode rc, bool got_response)
{
    switch (rc) {
    case CURLE_OK:
        return SB_UP_OK;
    case CURLE_OPERATION_TIMEDOUT:
        return SB_UP_E_TIMEOUT;
    case CURLE_WRITE_ERROR:
        return SB_UP_E_ABORTED;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SEND_ERROR:
        return SB_UP_E_CONNECT;
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        return got_response ? SB_UP_E_PROTOCOL : SB_UP_E_CONNECT;
    case CURLE_OUT_OF_MEMORY:
        return SB_UP_E_INTERNAL;
    default:
        return SB_UP_E_PROTOCOL;
    }
}

static void check_done(struct sb_upstream *u)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(u->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct sb_transfer *t = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        CURLcode rc = msg->data.result;
        int result = map_curl_error(rc, t->status != 0);
        long fresh = 1;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_NUM_CONNECTS, &fresh);
        if (result == SB_UP_E_CONNECT && fresh == 0 && !t->retried && !t->status && !t->got_body) {
            /* The transfer went out on a reused connection that the provider had closed
             * (its close crossed our request), and nothing came back: the provider never
             * saw it. Send it once more; libcurl picks or opens another connection. */
            t->retried = true;
            CURL *easy = msg->easy_handle;
            curl_multi_remove_handle(u->multi, easy);
            if (curl_multi_add_handle(u->multi, easy) == CURLM_OK)
                continue;
        }
        const char *detail = result == SB_UP_OK ? "" : curl_easy_strerror(rc);
        sb_upstream_unlink(u, t);
        release_easy(u, t->easy);
        struct sb_transfer_cbs cbs = t->cbs;
        void *ud = t->ud;
        free(t);
        cbs.on_done(ud, result, detail);
    }
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    struct poll_ctx *c = p->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    curl_multi_socket_action(c->u->multi, c->fd, flags, &running);
    check_done(c->u);
}

static void on_timer(uv_timer_t *timer)
{
    struct sb_upstream *u = timer->data;
    int running;
    curl_multi_socket_action(u->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(u);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    struct sb_upstream *u = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&u->timer);
    else
        /* A 0 timeout still goes through the loop, so curl is never re-entered from its
         * own callback. */
        uv_timer_start(&u->timer, on_timer, (uint64_t)timeout_ms, 0);
    return 0;
}

static int on_curl_socket(CURL *easy, curl_socket_t s, int action, void *userp, void *socketp)
{
    (void)easy;
    struct sb_upstream *u = userp;
    struct poll_ctx *c = socketp;
    if (action == CURL_POLL_REMOVE) {
        if (c) {
            curl_multi_assign(u->multi, s, NULL);
            close_poll(u, c);
        }
        return 0;
    }
    if (!c) {
        c = malloc(sizeof *c);
        if (!c)
            return -1;
        c->fd = s;
        c->u = u;
        if (uv_poll_init_socket(u->loop, &c->poll, s) != 0) {
            free(c);
            return -1;
        }
        c->poll.data = c;
        c->prev = NULL;
        c->next = u->polls;
        if (u->polls)
            u->polls->prev = c;
        u->polls = c;
        curl_multi_assign(u->multi, s, c);
    }
    int events = 0;
    if (action != CURL_POLL_OUT)
        events |= UV_READABLE;
    if (action != CURL_POLL_IN)
        events |= UV_WRITABLE;
    uv_poll_start(&c->poll, events, on_poll);
    return 0;
}

#define SWEEP_MS 100

/* curl's low-speed limit averages over seconds, so a stream that sent a burst and then went
 * silent is not caught in time; this checks real silence, to SWEEP_MS. A paused transfer is
 * silent by our choice and is not timed out. */
static void on_sweep(uv_timer_t *timer)
{
    struct sb_upstream *u = timer->data;
    uint64_t now = uv_now(u->loop);
restart:
    for (struct sb_transfer *t = u->active; t; t = t->next) {
        bool silent = t->idle_ms && !t->paused && now - t->last_activity >= t->idle_ms;
        bool late = t->deadline && now >= t->deadline; /* native transfers only */
        late |= t->first_byte_deadline && !t->status && now >= t->first_byte_deadline;
        if (!silent && !late)
            continue;
        if (t->h1) {
            sb_h1_fail(t, SB_UP_E_TIMEOUT,
                       silent ? "no data from the provider in time"
                              : "the provider did not answer in time");
            goto restart;
        }
        struct sb_transfer_cbs cbs = t->cbs;
        void *ud = t->ud;
        sb_upstream_unlink(u, t);
        curl_multi_remove_handle(u->multi, t->easy);
        curl_easy_cleanup(t->easy); /* its connection is mid-response: not reused */
        free(t);
        cbs.on_done(ud, SB_UP_E_TIMEOUT, "no answer from the provider in time");
        goto restart; /* on_done may have changed the list; every pass removes one */
    }
}

struct sb_upstream *sb_upstream_new(uv_loop_t *loop, long max_connections, bool native_h1)
{
    struct sb_upstream *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->loop = loop;
    u->native_h1 = native_h1;
    u->max_idle = max_connections > 0 ? (size_t)max_connections : 1024;
    u->multi = curl_multi_init();
    if (!u->multi) {
        free(u);
        return NULL;
    }
    uv_timer_init(loop, &u->timer);
    u->timer.data = u;
    uv_timer_init(loop, &u->sweep);
    u->sweep.data = u;
    uv_timer_start(&u->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_unref((uv_handle_t *)&u->sweep);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(u->multi, CURLMOPT_SOCKETDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(u->multi, CURLMOPT_TIMERDATA, u);
    curl_multi_setopt(u->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    /* The idle-connection cache: big enough that a burst of concurrent requests does not
     * close and reopen upstream connections. */
    curl_multi_setopt(u->multi, CURLMOPT_MAXCONNECTS,
                      max_connections > 0 ? max_connections : 1024L);
    sb_h1_init(u);
    return u;
}

void sb_upstream_close(struct sb_upstream *u)
{
    while (u->active)
        sb_transfer_cancel(u->active);
    u->closing = true;
    u->pending_closes = 1; /* held until every close below has been started */
    curl_multi_cleanup(u->multi);
    u->multi = NULL;
    while (u->polls)
        close_poll(u, u->polls);
    sb_h1_close(u); /* adds its own closes to pending_closes */
    u->pending_closes += 2;
    uv_close((uv_handle_t *)&u->timer, timer_closed);
    uv_close((uv_handle_t *)&u->sweep, timer_closed);
    sb_upstream_maybe_free(u);
}

static size_t on_curl_header(char *buf, size_t size, size_t n, void *ud)
{
    struct sb_transfer *t = ud;
    size_t len = size * n;
    t->last_activity = uv_now(t->u->loop);
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        long code = 0;
        /* Status line: "HTTP/1.1 200 OK" or "HTTP/2 200". */
        const char *sp = memchr(buf, ' ', len);
        if (sp && (size_t)(sp - buf) + 4 <= len) {
            for (int i = 1; i <= 3; i++) {
                char d = sp[i];
                if (d < '0' || d > '9') {
                    code = 0;
                    break;
                }
                code = code * 10 + (d - '0');
            }
        }
        t->in_headers_of_final = code >= 200;
        if (code >= 200) {
            t->status = (int)code;
            if (t->cbs.on_status)
                t->cbs.on_status(t->ud, (int)code);
        }
        return len;
    }
    if (!t->in_headers_of_final || !t->cbs.on_header)
        return len;
    const char *colon = memchr(buf, ':', len);
    if (!colon)
        return len;
    size_t nlen = (size_t)(colon - buf);
    const char *v = colon + 1;
    const char *end = buf + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    t->cbs.on_header(t->ud, buf, nlen, v, (size_t)(end - v));
    return len;
}

static size_t on_curl_write(char *buf, size_t size, size_t n, void *ud)
{
    struct sb_transfer *t = ud;
    size_t len = size * n;
    t->got_body = true;
    t->last_activity = uv_now(t->u->loop);
    size_t r = t->cbs.on_body(t->ud, buf, len);
    if (r == SB_UP_PAUSE) {
        t->paused = true;
        return CURL_WRITEFUNC_PAUSE;
    }
    return r == len ? len : 0;
}

struct sb_transfer *sb_transfer_start(struct sb_upstream *u, const struct sb_transfer_opts *o,
                                      const struct sb_transfer_cbs *cbs, void *ud)
{
    if (u->native_h1 && (!o->proxy || !*o->proxy) && sb_h1_eligible(o->url))
        return sb_h1_start(u, o, cbs, ud);
    struct sb_transfer *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    CURL *e = u->n_idle ? u->idle[--u->n_idle] : curl_easy_init();
    if (!e) {
        free(t);
        return NULL;
    }
    t->u = u;
    t->easy = e;
    t->cbs = *cbs;
    t->ud = ud;
    curl_easy_setopt(e, CURLOPT_URL, o->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, t);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, o->headers);
    if (o->body) {
        curl_easy_setopt(e, CURLOPT_POST, 1L);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, o->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)o->body_len);
    }
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_curl_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_curl_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t->errbuf);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
    /* Bytes pass through as the provider sent them; the client negotiates nothing with it. */
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, o->connect_timeout_ms);
    /* Explicit values, so libcurl does not read the proxy variables on every transfer. */
    curl_easy_setopt(e, CURLOPT_PROXY, o->proxy ? o->proxy : "");
    curl_easy_setopt(e, CURLOPT_NOPROXY, o->noproxy ? o->noproxy : "");
    if (o->timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, o->timeout_ms);
    t->idle_ms = o->idle_timeout_ms;
    t->last_activity = uv_now(u->loop);
    if (o->first_byte_timeout_ms)
        t->first_byte_deadline = t->last_activity + o->first_byte_timeout_ms;
    if (curl_multi_add_handle(u->multi, e) != CURLM_OK) {
        curl_easy_cleanup(e);
        free(t);
        return NULL;
    }
    sb_upstream_link(u, t);
    return t;
}

void sb_transfer_pause(struct sb_transfer *t)
{
    if (t->h1) {
        sb_h1_pause(t);
        return;
    }
    if (!t->paused) {
        t->paused = true;
        curl_easy_pause(t->easy, CURLPAUSE_RECV);
    }
}

void sb_transfer_resume(struct sb_transfer *t)
{
    if (t->h1) {
        sb_h1_resume(t);
        return;
    }
    if (t->paused) {
        t->paused = false;
        t->last_activity = uv_now(t->u->loop);
        /* May deliver the held-back data synchronously through on_body. */
        curl_easy_pause(t->easy, CURLPAUSE_CONT);
    }
}

void sb_transfer_cancel(struct sb_transfer *t)
{
    if (t->h1) {
        sb_h1_cancel(t);
        return;
    }
    struct sb_upstream *u = t->u;
    sb_upstream_unlink(u, t);
    curl_multi_remove_handle(u->multi, t->easy);
    /* A cancelled transfer's connection may be mid-response: it is not reused. */
    curl_easy_cleanup(t->easy);
    free(t);
}

double sb_transfer_ttfb(const struct sb_transfer *t)
{
    if (t->h1)
        return -1;
    curl_off_t us = 0;
    if (curl_easy_getinfo(t->easy, CURLINFO_STARTTRANSFER_TIME_T, &us) != CURLE_OK || us <= 0)
        return -1;
    return (double)us / 1e6;
}

/* One worker's Redis connection: hiredis' asynchronous API on the worker's libuv loop, with a
 * deadline on every command, reconnects in the background and a heartbeat per connection. */
#include "store/redis.h"

#include "core/log.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#include <hiredis/adapters/libuv.h>
#pragma GCC diagnostic pop

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define HEARTBEAT_MS     5000
#define ALIVE_MS         "15000"
#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MAX_MS   5000

struct cmd {
    struct cmd *prev, *next;
    struct sb_redis *r;
    sb_redis_reply_cb cb;
    void *ud;
    uint64_t deadline; /* loop time, ms */
};

enum state { S_IDLE, S_CONNECTING, S_READY, S_CLOSING };

struct sb_redis {
    uv_loop_t *loop;
    struct sb_redis_url url;
    int timeout_ms;
    redisAsyncContext *ac;
    enum state state;
    bool closed; /* sb_redis_close was called */
    char id[33];
    uv_timer_t timer;
    struct cmd *head, *tail; /* in the order sent: the head has the earliest deadline */
    uint64_t connect_deadline, next_heartbeat, reconnect_at;
    int backoff_ms;
    bool warned; /* the outage was logged */
};

/* ---------------------------------------------------------------- URL */

static int parse_int(const char *s, size_t n, int lo, int hi, int *out)
{
    if (n == 0 || n > 9)
        return -1;
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int copy_part(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

int sb_redis_parse_url(const char *url, struct sb_redis_url *out, char *err, size_t err_len)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    static const char scheme[] = "redis://";
    if (strncmp(url, scheme, sizeof scheme - 1) != 0) {
        snprintf(err, err_len, "a Redis URL must be redis://[[user]:password@]host[:port][/db]%s",
                 strncmp(url, "rediss://", 9) == 0 ? " (TLS is not supported)" : "");
        return -1;
    }
    const char *p = url + sizeof scheme - 1;
    const char *end = p + strlen(p);
    /* The last '@' ends the credentials (a password may hold '@', ':' or '/'; a host, port
     * or database never holds '@'). */
    const char *auth_end = NULL;
    for (const char *q = p; q < end; q++)
        if (*q == '@')
            auth_end = q;
    const char *slash =
        memchr(auth_end ? auth_end : p, '/', (size_t)(end - (auth_end ? auth_end : p)));
    if (auth_end) {
        const char *colon = memchr(p, ':', (size_t)(auth_end - p));
        if (!colon) {
            snprintf(err, err_len, "the Redis URL's credentials must be [user]:password@");
            return -1;
        }
        if (copy_part(out->user, sizeof out->user, p, (size_t)(colon - p)) != 0 ||
            copy_part(out->password, sizeof out->password, colon + 1,
                      (size_t)(auth_end - colon - 1)) != 0) {
            snprintf(err, err_len, "the Redis URL's user or password is too long");
            return -1;
        }
        p = auth_end + 1;
    }
    const char *host_end = slash ? slash : end;
    const char *colon = NULL;
    for (const char *q = p; q < host_end; q++)
        if (*q == ':')
            colon = q;
    if (colon && parse_int(colon + 1, (size_t)(host_end - colon - 1), 1, 65535, &out->port) != 0) {
        snprintf(err, err_len, "the Redis URL's port is not a number from 1 to 65535");
        return -1;
    }
    const char *hend = colon ? colon : host_end;
    if (hend == p || copy_part(out->host, sizeof out->host, p, (size_t)(hend - p)) != 0) {
        snprintf(err, err_len, "the Redis URL has no host (or one too long)");
        return -1;
    }
    if (slash && slash + 1 < end &&
        parse_int(slash + 1, (size_t)(end - slash - 1), 0, 1000000, &out->db) != 0) {
        snprintf(err, err_len, "the Redis URL's database must be a number");
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- commands */

static void unlink_cmd(struct sb_redis *r, struct cmd *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        r->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        r->tail = c->prev;
}

static void arm(struct sb_redis *r);

static void on_reply(redisAsyncContext *ac, void *reply, void *priv)
{
    (void)ac;
    struct cmd *c = priv;
    struct sb_redis *r = c->r;
    unlink_cmd(r, c);
    if (c->cb)
        c->cb(c->ud, reply);
    free(c);
    if (!r->closed)
        arm(r);
}

static int send_cmd(struct sb_redis *r, int argc, const char **argv, const size_t *lens,
                    sb_redis_reply_cb cb, void *ud)
{
    struct cmd *c = calloc(1, sizeof *c);
    if (!c)
        return -1;
    c->r = r;
    c->cb = cb;
    c->ud = ud;
    c->deadline = uv_now(r->loop) + (uint64_t)r->timeout_ms;
    if (redisAsyncCommandArgv(r->ac, on_reply, c, argc, argv, lens) != REDIS_OK) {
        free(c);
        return -1;
    }
    c->prev = r->tail;
    if (r->tail)
        r->tail->next = c;
    else
        r->head = c;
    r->tail = c;
    arm(r);
    return 0;
}

int sb_redis_command(struct sb_redis *r, int argc, const char **argv, const size_t *lens,
                     sb_redis_reply_cb cb, void *ud)
{
    if (r->state != S_READY)
        return -1;
    return send_cmd(r, argc, argv, lens, cb, ud);
}

bool sb_redis_ready(const struct sb_redis *r)
{
    return r->state == S_READY;
}

const char *sb_redis_id(const struct sb_redis *r)
{
    return r->state == S_READY ? r->id : "";
}

/* ---------------------------------------------------------------- connection */

static void heartbeat(struct sb_redis *r)
{
    char key[40];
    snprintf(key, sizeof key, "sb:i:%s", r->id);
    const char *argv[] = {"SET", key, "1", "PX", ALIVE_MS};
    size_t lens[] = {3, strlen(key), 1, 2, sizeof ALIVE_MS - 1};
    send_cmd(r, 5, argv, lens, NULL, NULL);
    r->next_heartbeat = uv_now(r->loop) + HEARTBEAT_MS;
}

static void on_auth(void *ud, const redisReply *reply)
{
    struct sb_redis *r = ud;
    if (reply && reply->type == REDIS_REPLY_ERROR && !r->warned) {
        r->warned = true;
        sb_warn("redis %s:%d: %.*s", r->url.host, r->url.port, (int)reply->len, reply->str);
    }
}

/* The connection is gone, or never came: warned once per outage; the next attempt comes
 * later each time (1 s, 2 s, 4 s, then every 5 s; a connection that works starts again at
 * 1 s). */
static void lost(struct sb_redis *r, const char *why, const char *detail)
{
    if (!r->warned) {
        r->warned = true;
        sb_warn("redis %s:%d: %s%s%s%s; limits and budgets are enforced by each instance alone "
                "until it is back",
                r->url.host, r->url.port, why, detail ? " (" : "", detail ? detail : "",
                detail ? ")" : "");
    }
    r->state = S_IDLE;
    r->id[0] = '\0';
    r->reconnect_at = uv_now(r->loop) + (uint64_t)r->backoff_ms;
    r->backoff_ms = r->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : r->backoff_ms * 2;
}

/* Drops the connection: every pending command fails now (hiredis calls each callback with
 * NULL), and a reconnect is scheduled unless the connection is being closed for good. */
static void drop(struct sb_redis *r, const char *why)
{
    redisAsyncContext *ac = r->ac;
    r->ac = NULL;
    if (r->closed) {
        r->state = S_CLOSING;
        r->id[0] = '\0';
    } else {
        lost(r, why, NULL);
    }
    if (ac)
        redisAsyncFree(ac); /* pending callbacks run, then on_disconnect (ignored: r->ac moved) */
    if (!r->closed)
        arm(r);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct sb_redis *r = ac->data;
    if (r->ac != ac)
        return;
    if (status != REDIS_OK) {
        r->ac = NULL; /* hiredis frees the context after this callback */
        lost(r, "cannot connect", ac->errstr);
        arm(r);
        return;
    }
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        uint64_t t = uv_hrtime() ^ (uint64_t)(uintptr_t)r;
        memcpy(rnd, &t, sizeof t);
        memcpy(rnd + 8, &t, sizeof t);
    }
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(r->id + 2 * i, 3, "%02x", rnd[i]);
    if (r->url.password[0]) {
        const char *argv[] = {"AUTH", r->url.user, r->url.password};
        size_t lens[] = {4, strlen(r->url.user), strlen(r->url.password)};
        if (r->url.user[0])
            send_cmd(r, 3, argv, lens, on_auth, r);
        else {
            argv[1] = argv[2];
            lens[1] = lens[2];
            send_cmd(r, 2, argv, lens, on_auth, r);
        }
    }
    if (r->url.db) {
        char db[16];
        snprintf(db, sizeof db, "%d", r->url.db);
        const char *argv[] = {"SELECT", db};
        size_t lens[] = {6, strlen(db)};
        send_cmd(r, 2, argv, lens, on_auth, r);
    }
    heartbeat(r);
    r->state = S_READY;
    r->backoff_ms = BACKOFF_FIRST_MS;
    if (r->warned) {
        r->warned = false;
        sb_info("redis %s:%d: connected; limits and budgets are shared again", r->url.host,
                r->url.port);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    (void)status;
    struct sb_redis *r = ac->data;
    if (r->ac != ac)
        return;   /* dropped on purpose */
    r->ac = NULL; /* hiredis frees the context after this callback */
    if (r->closed) {
        r->state = S_CLOSING;
        arm(r);
        return;
    }
    lost(r, "connection lost", NULL);
    arm(r);
}

static void connect_now(struct sb_redis *r)
{
    redisAsyncContext *ac = redisAsyncConnect(r->url.host, r->url.port);
    if (!ac || ac->err) {
        lost(r, "cannot connect", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        return;
    }
    ac->data = r;
    if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
        redisAsyncFree(ac);
        lost(r, "cannot connect", "the event loop refused its socket");
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    r->state = S_CONNECTING;
    int wait = r->timeout_ms > 1000 ? r->timeout_ms : 1000;
    r->connect_deadline = uv_now(r->loop) + (uint64_t)wait;
}

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void on_timer(uv_timer_t *t)
{
    struct sb_redis *r = t->data;
    uint64_t now = uv_now(r->loop);
    if (r->closed) {
        if (r->ac) {
            redisAsyncContext *ac = r->ac;
            r->ac = NULL;
            redisAsyncFree(ac);
        }
        uv_close((uv_handle_t *)&r->timer, on_closed);
        return;
    }
    if (r->state == S_CONNECTING && now >= r->connect_deadline) {
        drop(r, "the connection timed out");
        return;
    }
    if (r->state == S_READY && r->head && now >= r->head->deadline) {
        drop(r, "a command timed out");
        return;
    }
    if (r->state == S_IDLE && now >= r->reconnect_at)
        connect_now(r);
    if (r->state == S_READY && now >= r->next_heartbeat)
        heartbeat(r);
    arm(r);
}

static void arm(struct sb_redis *r)
{
    if (r->closed)
        return;
    uint64_t now = uv_now(r->loop), at = UINT64_MAX;
    switch (r->state) {
    case S_IDLE:
        at = r->reconnect_at;
        break;
    case S_CONNECTING:
        at = r->connect_deadline;
        break;
    case S_READY:
        at = r->next_heartbeat;
        if (r->head && r->head->deadline < at)
            at = r->head->deadline;
        break;
    case S_CLOSING:
        return;
    }
    uv_timer_start(&r->timer, on_timer, at > now ? at - now : 0, 0);
}

struct sb_redis *sb_redis_new(uv_loop_t *loop, const struct sb_redis_url *url, int timeout_ms)
{
    struct sb_redis *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->loop = loop;
    r->url = *url;
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : 100;
    r->backoff_ms = BACKOFF_FIRST_MS;
    uv_timer_init(loop, &r->timer);
    r->timer.data = r;
    r->state = S_IDLE;
    connect_now(r);
    arm(r);
    return r;
}

void sb_redis_close(struct sb_redis *r)
{
    if (!r)
        return;
    if (r->state == S_READY && r->ac) {
        /* What this connection held (in-flight counts, reservations) is released at once. */
        char key[40];
        snprintf(key, sizeof key, "sb:i:%s", r->id);
        const char *argv[] = {"DEL", key};
        size_t lens[] = {3, strlen(key)};
        send_cmd(r, 2, argv, lens, NULL, NULL);
    }
    r->closed = true;
    if (r->ac && r->state == S_READY) {
        /* Graceful: the pending replies are read first, within the timeout. */
        redisAsyncDisconnect(r->ac);
        uv_timer_start(&r->timer, on_timer, (uint64_t)r->timeout_ms, 0);
        return;
    }
    if (r->ac) {
        redisAsyncContext *ac = r->ac;
        r->ac = NULL;
        redisAsyncFree(ac);
    }
    uv_timer_stop(&r->timer);
    uv_close((uv_handle_t *)&r->timer, on_closed);
}

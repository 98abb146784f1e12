/* One worker's connection to Redis (hiredis on the worker's libuv loop), for the state that
 * several gateway instances share (src/policy/shared.h).
 *
 * Every command has a deadline: a reply that does not come within timeout_ms fails the command
 * (its callback gets NULL at once) and drops the connection, whose pending commands fail too.
 * A dropped or refused connection is retried in the background (1 s, then up to 5 s apart);
 * until then sb_redis_ready() is false and callers fall back to what they can do alone.
 *
 * Each connection has an id, new at every (re)connect, kept alive in Redis by a heartbeat
 * (key "sb:i:<id>", 15 s expiry renewed every 5 s, deleted at a clean close). Shared counters
 * held per connection (in-flight requests, budget reservations) are stored under that id, so
 * what a crashed instance or a lost connection held disappears once its heartbeat expires.
 *
 * Not thread-safe: one struct per worker loop. */
#ifndef SB_STORE_REDIS_H
#define SB_STORE_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct sb_redis;

/* A reply, or NULL: not connected, timed out, connection lost. The reply is valid only
 * during the call. */
typedef void (*sb_redis_reply_cb)(void *ud, const redisReply *reply);

/* Parses redis://[[user]:password@]host[:port][/db] (no TLS). 0, or -1 with err. */
struct sb_redis_url {
    char host[256];
    int port;
    char user[128];
    char password[256];
    int db;
};
int sb_redis_parse_url(const char *url, struct sb_redis_url *out, char *err, size_t err_len);

/* Starts connecting (asynchronously) on `loop`. NULL only when out of memory. */
struct sb_redis *sb_redis_new(uv_loop_t *loop, const struct sb_redis_url *url, int timeout_ms);
/* Closes: pending commands are given timeout_ms to complete, then fail; the struct is freed
 * once its handles have closed (the loop must keep running). */
void sb_redis_close(struct sb_redis *r);

bool sb_redis_ready(const struct sb_redis *r);
/* The id of the current connection ("" when not connected). */
const char *sb_redis_id(const struct sb_redis *r);

/* Sends a command. 0: cb will be called exactly once (maybe with NULL); -1: not connected or
 * the command could not be queued (cb is not called). */
int sb_redis_command(struct sb_redis *r, int argc, const char **argv, const size_t *lens,
                     sb_redis_reply_cb cb, void *ud);

#endif

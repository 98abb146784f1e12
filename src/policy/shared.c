/* Limits and budgets shared across instances: the two Lua scripts and their calls. See
 * docs/internals/shared-limits.md. */
#include "policy/shared.h"

#include "core/buf.h"
#include "core/spares.h"
#include "core/log.h"

#include <openssl/evp.h>

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_OUTPUT     16 /* as the in-memory admission: a shorter answer is refused instead */
#define NUM_MAX        9007199254740991LL /* 2^53 - 1: Lua's numbers are doubles */
#define WINDOW_TTL     "120000"
#define HOLD_TTL       "86400000"
#define SPEND_TTL      "86400000"
#define NAME_PREFIX    "sb:"
#define LEVEL_NAME_MAX sizeof(((struct sb_shared_level *)0)->name)
/* One request's part of an admission call: its keys, n, id, want, least, 6 per level. */
#define ADMIT_ARGS (SB_SHARED_LEVELS + 4 + 6 * SB_SHARED_LEVELS)
/* Requests and settlements per script call: a pass with more sends several calls. Bounds how
 * long one script holds Redis (other commands wait while a script runs). */
#define ADMIT_MAX       32
#define ADMIT_CALL_ARGS (3 + ADMIT_MAX * ADMIT_ARGS)
#define BATCH_MAX       64
/* EVALSHA, sha, key count, the id; per settlement its keys, 5 numbers and a flag per key. */
#define BATCH_ARGS      (4 + BATCH_MAX * (5 + 2 * SB_SHARED_LEVELS))
#define BATCH_NAMES_MAX (BATCH_MAX * SB_SHARED_LEVELS * (sizeof NAME_PREFIX + LEVEL_NAME_MAX))
/* Structs kept for reuse: enough for the calls of a busy pass, not a pass's peak. */
#define SPARE_CALLS   32
#define SPARE_BATCHES 4

/* Admission of a batch of requests (the ones admitted in memory in one pass of the worker's
 * loop), one after the other as if each were its own script: a request sees the counts of
 * those before it. KEYS: every request's level names, one after the other. ARGV, per request:
 * the number of levels n, the connection id, the reservation wanted, the smallest reservation
 * worth admitting (-1: none smaller), then per level: rpm, tpm, parallel limits, max budget,
 * this instance's spend, budget period. Reply: one verdict per request, {0, reserved,
 * reset_ms, rpm counts per level..., tpm counts per level...} or {1 rpm | 2 tpm | 3 parallel |
 * 4 budget, level, reset_ms, count or spend}.
 *
 * What Redis spends is the work per request, not per call: each window, in-flight hash,
 * reservation hash and budget is read once per call and then kept in the script's tables,
 * and the counts are written once per call at the end (the script runs alone, so nothing can
 * tell the difference). The ids of the call's requests count as alive: they are connections
 * sending now. */
static const char ADMIT_LUA[] =
    "local t=redis.call('TIME')\n"
    "local now=tonumber(t[1])*1000+math.floor(tonumber(t[2])/1000)\n"
    "local minute=math.floor(now/60000)\n"
    "local reset=(minute+1)*60000-now\n"
    "local alive,sums,counts,fresh,budgets={},{},{},{},{}\n"
    "local winc,wl,hinc,hl={},{},{},{}\n"
    "local function int(v) return string.format('%.0f',v) end\n"
    "local function live_sum(h,id)\n"
    "  local s=sums[h]\n"
    "  if s then return s end\n"
    "  local all=redis.call('HGETALL',h)\n"
    "  s=0\n"
    "  for j=1,#all,2 do\n"
    "    local x=all[j]\n"
    "    local v=x==id or alive[x]\n"
    "    if v==nil then v=redis.call('EXISTS','sb:i:'..x)==1; alive[x]=v end\n"
    "    if v then s=s+tonumber(all[j+1]) else redis.call('HDEL',h,x) end\n"
    "  end\n"
    "  sums[h]=s\n"
    "  return s\n"
    "end\n"
    "local function count(w)\n"
    "  local c=counts[w]\n"
    "  if c==nil then\n"
    "    local g=redis.call('GET',w)\n"
    "    c=tonumber(g or '0'); counts[w]=c; fresh[w]=not g\n"
    "  end\n"
    "  return c\n"
    "end\n"
    "local function hold(h,id,v)\n"
    "  sums[h]=sums[h]+v\n"
    "  local a=hinc[h]\n"
    "  if a==nil then a={}; hinc[h]=a; hl[#hl+1]=h end\n"
    "  if a[id]==nil then a[id]=0; a[#a+1]=id end\n"
    "  a[id]=a[id]+v\n"
    "end\n"
    "local function admit(k,a,n)\n"
    "  local id=ARGV[a+1]\n"
    "  local want=tonumber(ARGV[a+2])\n"
    "  local least=tonumber(ARGV[a+3])\n"
    "  alive[id]=true\n"
    "  local rc,tc={},{}\n"
    "  local remaining,tight,tspend=nil,0,0\n"
    "  for i=1,n do\n"
    "    local b,o=KEYS[k+i],a+3+(i-1)*6\n"
    "    local rpm,tpm,par,max=tonumber(ARGV[o+1]),tonumber(ARGV[o+2]),tonumber(ARGV[o+3]),"
    "tonumber(ARGV[o+4])\n"
    "    rc[i]=-1; tc[i]=-1\n"
    "    if rpm>=0 then\n"
    "      local c=count(b..':r:'..minute)\n"
    "      if c>=rpm then return {1,i-1,reset,c} end\n"
    "      rc[i]=c\n"
    "    end\n"
    "    if tpm>=0 then\n"
    "      local c=count(b..':t:'..minute)\n"
    "      if c>=tpm then return {2,i-1,reset,c} end\n"
    "      tc[i]=c\n"
    "    end\n"
    "    if par>=0 then\n"
    "      local c=live_sum(b..':p',id)\n"
    "      if c>=par then return {3,i-1,reset,c} end\n"
    "    end\n"
    "    if max>=0 then\n"
    "      local bk=b..':b'\n"
    "      local seed,per=tonumber(ARGV[o+5]),tonumber(ARGV[o+6])\n"
    "      local cur=budgets[bk]\n"
    "      if cur==nil then\n"
    "        local h=redis.call('HMGET',bk,'spend','per')\n"
    "        cur={per=tonumber(h[2] or '0')}\n"
    "        if h[1] then cur.spend=tonumber(h[1]) end\n"
    "        budgets[bk]=cur\n"
    "      end\n"
    "      if cur.spend==nil or per>cur.per then\n"
    "        cur.spend,cur.per=seed,per\n"
    "        redis.call('HSET',bk,'spend',ARGV[o+5],'per',ARGV[o+6])\n"
    "        redis.call('PEXPIRE',bk," SPEND_TTL ")\n"
    "      end\n"
    "      local r=max-cur.spend-live_sum(b..':v',id)\n"
    "      if remaining==nil or r<remaining then remaining,tight,tspend=r,i-1,cur.spend end\n"
    "    end\n"
    "  end\n"
    "  local reserve=want\n"
    "  if remaining~=nil then\n"
    "    if remaining<=0 or (remaining<want and (least<0 or remaining<least)) then\n"
    "      return {4,tight,reset,tspend}\n"
    "    end\n"
    "    if remaining<want then reserve=remaining end\n"
    "  end\n"
    "  local out={0,reserve,reset}\n"
    "  for i=1,n do\n"
    "    local b,o=KEYS[k+i],a+3+(i-1)*6\n"
    "    if tonumber(ARGV[o+1])>=0 then\n"
    "      local w=b..':r:'..minute\n"
    "      counts[w]=counts[w]+1\n"
    "      rc[i]=counts[w]\n"
    "      if winc[w]==nil then winc[w]=0; wl[#wl+1]=w end\n"
    "      winc[w]=winc[w]+1\n"
    "    end\n"
    "    if tonumber(ARGV[o+3])>=0 then hold(b..':p',id,1) end\n"
    "    if tonumber(ARGV[o+4])>=0 and reserve>0 then hold(b..':v',id,reserve) end\n"
    "    out[3+i]=rc[i]\n"
    "    out[3+n+i]=tc[i]\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "local verdicts={}\n"
    "local k,a=0,1\n"
    "while a<=#ARGV do\n"
    "  local n=tonumber(ARGV[a])\n"
    "  verdicts[#verdicts+1]=admit(k,a,n)\n"
    "  k=k+n\n"
    "  a=a+4+6*n\n"
    "end\n"
    "for _,w in ipairs(wl) do\n"
    "  redis.call('INCRBY',w,int(winc[w]))\n"
    "  if fresh[w] then redis.call('PEXPIRE',w," WINDOW_TTL ") end\n"
    "end\n"
    "for _,h in ipairs(hl) do\n"
    "  local a=hinc[h]\n"
    "  for _,id in ipairs(a) do redis.call('HINCRBY',h,id,int(a[id])) end\n"
    "  redis.call('PEXPIRE',h," HOLD_TTL ")\n"
    "end\n"
    "return verdicts\n";

/* Settlement of a batch of requests (the ones that ended in one pass of the worker's loop).
 * KEYS: every settlement's level names, one after the other. ARGV: this connection's id, then
 * per settlement: the number of levels n, 1 when the in-flight slots and the reservation were
 * taken on this connection (0: another one, since gone; its holdings expire with it),
 * reserved, cost, tokens, then per level: flags (1 in-flight slot, 2 reservation, 4 budget,
 * 8 TPM). The cost goes to a shared spend that exists: one reseeded since (a new period, an
 * admin change) counts it only when the seeding instance had it. The sums per level are
 * written once each (additions commute, and a hold that goes to 0 or below is deleted either
 * way), as integers: a sum of up to 64 values of at most 2^53 fits an int64 but not "%.17g".
 * Reply: how many settlements were applied. */
static const char SETTLE_LUA[] =
    "local id=ARGV[1]\n"
    "local t=redis.call('TIME')\n"
    "local minute=math.floor(tonumber(t[1])/60)\n"
    "local sum,names={},{}\n"
    "local function int(v) return string.format('%.0f',v) end\n"
    "local function add(b,what,v)\n"
    "  local e=sum[b]\n"
    "  if e==nil then e={p=0,v=0,c=0,t=0}; sum[b]=e; names[#names+1]=b end\n"
    "  e[what]=e[what]+v\n"
    "end\n"
    "local k,o,done=0,2,0\n"
    "while o<=#ARGV do\n"
    "  local n=tonumber(ARGV[o])\n"
    "  local own=ARGV[o+1]=='1' and id~=''\n"
    "  local reserved,cost,tokens=tonumber(ARGV[o+2]),tonumber(ARGV[o+3]),tonumber(ARGV[o+4])\n"
    "  for i=1,n do\n"
    "    local b=KEYS[k+i]\n"
    "    local f=tonumber(ARGV[o+4+i])\n"
    "    if f%2==1 and own then add(b,'p',1) end\n"
    "    if math.floor(f/2)%2==1 and own and reserved>0 then add(b,'v',reserved) end\n"
    "    if math.floor(f/4)%2==1 and cost>0 then add(b,'c',cost) end\n"
    "    if math.floor(f/8)%2==1 and tokens>0 then add(b,'t',tokens) end\n"
    "  end\n"
    "  k=k+n\n"
    "  o=o+5+n\n"
    "  done=done+1\n"
    "end\n"
    "for _,b in ipairs(names) do\n"
    "  local e=sum[b]\n"
    "  if e.p>0 and redis.call('HINCRBY',b..':p',id,int(-e.p))<=0 then "
    "redis.call('HDEL',b..':p',id) end\n"
    "  if e.v>0 and redis.call('HINCRBY',b..':v',id,int(-e.v))<=0 then "
    "redis.call('HDEL',b..':v',id) end\n"
    "  if e.c>0 and redis.call('EXISTS',b..':b')==1 then\n"
    "    redis.call('HINCRBY',b..':b','spend',int(e.c))\n"
    "  end\n"
    "  if e.t>0 then\n"
    "    local w=b..':t:'..minute\n"
    "    redis.call('INCRBY',w,int(e.t))\n"
    "    redis.call('PEXPIRE',w," WINDOW_TTL ")\n"
    "  end\n"
    "end\n"
    "return done\n";

/* A command line being built: argument i is argv[i] (lens[i] bytes), numbers written into
 * `text`. Every command's sizes are fixed by the levels and the batch bound, so the arrays
 * below cannot overflow. */
struct cmdline {
    int argc, max;
    const char **argv;
    size_t *lens;
    char *text;
    size_t cap, used;
};

/* One request's admission, from sb_shared_admit to its answer: its part of the call. */
struct sb_shared_call {
    struct sb_shared *s;
    struct sb_spare spare;
    /* The owner's, until cancelled. */
    struct sb_admission *a;
    struct sb_shared_ticket *t;
    sb_shared_cb cb;
    void *ud;
    struct sb_shared_ticket mine; /* what is held when the owner is gone */
    struct cmdline cmd;
    const char *argv[ADMIT_ARGS];
    size_t lens[ADMIT_ARGS];
    char text[SB_SHARED_LEVELS * (sizeof NAME_PREFIX + LEVEL_NAME_MAX) + ADMIT_ARGS * 24];
};

/* Up to ADMIT_MAX admissions of one loop pass, sent as one script call (kept to resend as
 * EVAL after NOSCRIPT). */
struct admit_batch {
    struct sb_shared *s;
    struct admit_batch *next; /* the admissions waiting to be sent */
    struct sb_spare spare;
    bool resent;
    size_t count;
    struct sb_shared_call *calls[ADMIT_MAX];
    struct cmdline cmd;
    const char *argv[ADMIT_CALL_ARGS];
    size_t lens[ADMIT_CALL_ARGS];
    char text[32];
};

/* What a ticket held, copied at sb_shared_finish (the ticket may be freed right after). */
struct settlement {
    char conn[33];
    uint8_t n;
    uint8_t flags[SB_SHARED_LEVELS];
    int64_t reserved, cost, tokens;
    size_t names; /* offset in the batch's names: n NUL-terminated level names */
};

/* Up to BATCH_MAX settlements, queued during a loop pass, then sent as one script call. */
struct batch {
    struct sb_shared *s;
    struct sb_spare spare;
    bool resent;
    char conn[33]; /* the connection it was sent on */
    size_t count;
    struct settlement q[BATCH_MAX];
    struct sb_buf names;
    struct cmdline cmd;
    const char *argv[BATCH_ARGS];
    size_t lens[BATCH_ARGS];
    char text[BATCH_MAX * (5 + SB_SHARED_LEVELS) * 21 + 64];
};

struct sb_shared {
    struct sb_redis *redis;
    char admit_sha[41], settle_sha[41];
    uv_prepare_t flush; /* runs while a batch is open */
    /* The admissions of this loop pass, not sent yet: full batches, then the one filling. */
    struct admit_batch *admit_head, *admit_tail;
    struct batch *open; /* the settlements of this loop pass, not sent yet */
    size_t in_flight;   /* script calls sent and not answered */
    struct sb_spares spare_calls, spare_admits, spare_batches;
    bool closing, flush_closed;
    /* The connection that has answered a settlement: the script is loaded there. Until one
     * has, settlements are sent as text (EVAL), not by hash: a batch sent right before a clean
     * close could not be resent after a NOSCRIPT. */
    char settle_known[33];
    struct sb_shared_stats stats;
};

static void sha1_hex(const char *s, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    out[0] = '\0';
    if (EVP_Digest(s, strlen(s), md, &n, EVP_sha1(), NULL) != 1 || n != 20)
        return;
    for (unsigned i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

static void flush_open(struct sb_shared *s);

static void on_flush(uv_prepare_t *h)
{
    flush_open(h->data);
}

struct sb_shared *sb_shared_new(uv_loop_t *loop, const struct sb_redis_url *url, int timeout_ms)
{
    struct sb_shared *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    sha1_hex(ADMIT_LUA, s->admit_sha);
    sha1_hex(SETTLE_LUA, s->settle_sha);
    s->redis = sb_redis_new(loop, url, timeout_ms);
    if (!s->redis) {
        free(s);
        return NULL;
    }
    uv_prepare_init(loop, &s->flush);
    s->flush.data = s;
    return s;
}

bool sb_shared_ready(const struct sb_shared *s)
{
    return s && !s->closing && sb_redis_ready(s->redis);
}

void sb_shared_get_stats(const struct sb_shared *s, struct sb_shared_stats *out)
{
    if (s)
        *out = s->stats;
    else
        memset(out, 0, sizeof *out);
}

/* ---------------------------------------------------------------- spare structs */

static void cmd_init(struct cmdline *cl, const char **argv, size_t *lens, int max, char *text,
                     size_t cap)
{
    cl->argc = 0;
    cl->max = max;
    cl->argv = argv;
    cl->lens = lens;
    cl->text = text;
    cl->cap = cap;
    cl->used = 0;
}

static struct sb_shared_call *call_get(struct sb_shared *s)
{
    struct sb_shared_call *c = SB_SPARES_TAKE(&s->spare_calls, struct sb_shared_call, spare);
    if (!c)
        c = malloc(sizeof *c);
    if (!c)
        return NULL;
    c->s = s;
    cmd_init(&c->cmd, c->argv, c->lens, ADMIT_ARGS, c->text, sizeof c->text);
    return c;
}

static void call_put(struct sb_shared *s, struct sb_shared_call *c)
{
    if (s->closing || !SB_SPARES_KEEP(&s->spare_calls, c, spare, SPARE_CALLS))
        free(c);
}

static struct admit_batch *admits_get(struct sb_shared *s)
{
    struct admit_batch *b = SB_SPARES_TAKE(&s->spare_admits, struct admit_batch, spare);
    if (!b)
        b = malloc(sizeof *b);
    if (!b)
        return NULL;
    b->s = s;
    b->next = NULL;
    b->resent = false;
    b->count = 0;
    cmd_init(&b->cmd, b->argv, b->lens, ADMIT_CALL_ARGS, b->text, sizeof b->text);
    return b;
}

static void admits_put(struct sb_shared *s, struct admit_batch *b)
{
    if (s->closing || !SB_SPARES_KEEP(&s->spare_admits, b, spare, SPARE_BATCHES))
        free(b);
}

static struct batch *batch_get(struct sb_shared *s)
{
    struct batch *b = SB_SPARES_TAKE(&s->spare_batches, struct batch, spare);
    if (b) {
        sb_spares_show_buf(&b->names);
    } else {
        b = malloc(sizeof *b);
        if (!b)
            return NULL;
        sb_buf_init(&b->names, BATCH_NAMES_MAX);
    }
    b->s = s;
    b->resent = false;
    b->count = 0;
    sb_buf_reset(&b->names);
    cmd_init(&b->cmd, b->argv, b->lens, BATCH_ARGS, b->text, sizeof b->text);
    return b;
}

static void batch_free(struct batch *b)
{
    sb_buf_free(&b->names);
    free(b);
}

static void batch_put(struct sb_shared *s, struct batch *b)
{
    if (s->closing) {
        batch_free(b);
        return;
    }
    sb_buf_reset(&b->names);
    sb_spares_hide_buf(&b->names);
    if (!SB_SPARES_KEEP(&s->spare_batches, b, spare, SPARE_BATCHES)) {
        sb_spares_show_buf(&b->names);
        batch_free(b);
    }
}

/* Frees the struct once it is closed and nothing refers to it any more: its prepare handle
 * has closed and every call sent has had its answer (replies may come after sb_shared_close:
 * the connection reads them before it disconnects). */
static void maybe_free(struct sb_shared *s)
{
    if (!s->closing || !s->flush_closed || s->in_flight > 0)
        return;
    struct sb_shared_call *c;
    while ((c = SB_SPARES_TAKE(&s->spare_calls, struct sb_shared_call, spare)))
        free(c);
    struct admit_batch *ab;
    while ((ab = SB_SPARES_TAKE(&s->spare_admits, struct admit_batch, spare)))
        free(ab);
    struct batch *b;
    while ((b = SB_SPARES_TAKE(&s->spare_batches, struct batch, spare))) {
        sb_spares_show_buf(&b->names);
        batch_free(b);
    }
    free(s);
}

static void on_flush_closed(uv_handle_t *h)
{
    struct sb_shared *s = h->data;
    s->flush_closed = true;
    maybe_free(s);
}

void sb_shared_close(struct sb_shared *s)
{
    if (!s)
        return;
    /* What this pass queued goes out before the connection closes: the clean close keeps
     * reading replies until its timeout, and the spend settlements carry would be lost
     * otherwise. Answering a queued admission now (no connection) may queue more. */
    while (s->open || s->admit_head)
        flush_open(s);
    s->closing = true;
    sb_redis_close(s->redis); /* may answer pending calls at once, with NULL */
    s->redis = NULL;
    uv_close((uv_handle_t *)&s->flush, on_flush_closed);
}

/* ---------------------------------------------------------------- arguments */

static int64_t clamp(int64_t v)
{
    return v < -1 ? -1 : v > NUM_MAX ? NUM_MAX : v;
}

static void arg_n(struct cmdline *cl, const char *p, size_t n)
{
    if (cl->argc >= cl->max)
        return; /* cannot happen with the sizes above */
    cl->argv[cl->argc] = p;
    cl->lens[cl->argc] = n;
    cl->argc++;
}

static void arg(struct cmdline *cl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void arg(struct cmdline *cl, const char *fmt, ...)
{
    char *at = cl->text + cl->used;
    size_t room = cl->cap - cl->used;
    va_list ap;
    va_start(ap, fmt);
    int n = room > 0 ? vsnprintf(at, room, fmt, ap) : -1;
    va_end(ap);
    if (n < 0 || (size_t)n >= room) { /* cannot happen with the sizes above: an empty argument */
        arg_n(cl, "", 0);
        return;
    }
    arg_n(cl, at, (size_t)n);
    cl->used += (size_t)n + 1;
}

static bool noscript(const redisReply *reply)
{
    return reply && reply->type == REDIS_REPLY_ERROR && reply->len >= 8 &&
           memcmp(reply->str, "NOSCRIPT", 8) == 0;
}

/* Sends a command whose reply comes to cb(ud, ...); counted in flight until then. 0, or -1
 * (not connected, or closing: cb is not called). */
static int send_cmd(struct sb_shared *s, const struct cmdline *cl, sb_redis_reply_cb cb, void *ud)
{
    if (s->closing || sb_redis_command(s->redis, cl->argc, cl->argv, cl->lens, cb, ud) != 0)
        return -1;
    s->in_flight++;
    return 0;
}

/* After SCRIPT FLUSH or a Redis restart: the same call again with the script's text, once.
 * 0 when it was sent. */
static int resend(struct sb_shared *s, struct cmdline *cl, bool *resent, const char *script,
                  sb_redis_reply_cb cb, void *ud)
{
    if (*resent)
        return -1;
    *resent = true;
    cl->argv[0] = "EVAL";
    cl->lens[0] = 4;
    cl->argv[1] = script;
    cl->lens[1] = strlen(script);
    return send_cmd(s, cl, cb, ud);
}

/* ---------------------------------------------------------------- settlements */

static void on_settled(void *ud, const redisReply *reply)
{
    struct batch *b = ud;
    struct sb_shared *s = b->s;
    s->in_flight--;
    if (noscript(reply)) {
        if (resend(s, &b->cmd, &b->resent, SETTLE_LUA, on_settled, b) == 0)
            return;
        reply = NULL;
    }
    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer >= 0) {
        s->stats.settled += (uint64_t)reply->integer;
        memcpy(s->settle_known, b->conn, sizeof s->settle_known);
    } else {
        /* Lost, as a failed single settlement always was: what the requests held expires with
         * their connection's heartbeat, their spend is made good when the budget is seeded
         * again (docs/internals/shared-limits.md). */
        s->stats.dropped += b->count;
        if (reply && reply->type == REDIS_REPLY_ERROR)
            sb_warn("redis: settling %zu request(s) failed: %.*s", b->count, (int)reply->len,
                    reply->str);
    }
    batch_put(s, b);
    maybe_free(s);
}

/* Sends the settlements of `b` as one script call (or drops them when there is no connection:
 * the one that held their slots is gone, and its holdings with it). Takes b. */
static void send_batch(struct sb_shared *s, struct batch *b)
{
    if (b->count == 0) { /* its only settlement could not be queued */
        batch_put(s, b);
        return;
    }
    if (s->closing || !sb_redis_ready(s->redis)) {
        s->stats.dropped += b->count;
        batch_put(s, b);
        return;
    }
    struct cmdline *cl = &b->cmd;
    const char *id = sb_redis_id(s->redis);
    size_t keys = 0;
    for (size_t i = 0; i < b->count; i++)
        keys += b->q[i].n;
    snprintf(b->conn, sizeof b->conn, "%s", id);
    if (strcmp(s->settle_known, id) == 0) {
        arg_n(cl, "EVALSHA", 7);
        arg_n(cl, s->settle_sha, strlen(s->settle_sha));
    } else {
        b->resent = true; /* the text already: a NOSCRIPT cannot come back */
        arg_n(cl, "EVAL", 4);
        arg_n(cl, SETTLE_LUA, sizeof SETTLE_LUA - 1);
    }
    arg(cl, "%zu", keys);
    for (size_t i = 0; i < b->count; i++) {
        const char *name = b->names.data + b->q[i].names;
        for (size_t j = 0; j < b->q[i].n; j++) {
            size_t len = strlen(name);
            arg_n(cl, name, len);
            name += len + 1;
        }
    }
    arg_n(cl, id, strlen(id));
    for (size_t i = 0; i < b->count; i++) {
        const struct settlement *e = &b->q[i];
        arg(cl, "%u", (unsigned)e->n);
        /* Held on another connection (a reconnect since): its slots expire with it. */
        arg_n(cl, strcmp(e->conn, id) == 0 ? "1" : "0", 1);
        arg(cl, "%" PRId64, e->reserved);
        arg(cl, "%" PRId64, e->cost);
        arg(cl, "%" PRId64, e->tokens);
        for (size_t j = 0; j < e->n; j++)
            arg(cl, "%u", (unsigned)e->flags[j]);
    }
    if (send_cmd(s, cl, on_settled, b) != 0) {
        s->stats.dropped += b->count;
        batch_put(s, b);
        return;
    }
    s->stats.settle_calls++;
    s->stats.settlements_sent += b->count;
}

static void send_admits(struct sb_shared *s, struct admit_batch *b);

static void flush_open(struct sb_shared *s)
{
    uv_prepare_stop(&s->flush);
    struct admit_batch *a = s->admit_head;
    s->admit_head = s->admit_tail = NULL;
    while (a) {
        struct admit_batch *next = a->next;
        a->next = NULL;
        send_admits(s, a);
        a = next;
    }
    struct batch *b = s->open;
    s->open = NULL;
    if (b)
        send_batch(s, b);
}

/* Sends the open settlements alone (a full batch), the open admissions staying queued. */
static void flush_settlements(struct sb_shared *s)
{
    struct batch *b = s->open;
    s->open = NULL;
    if (!s->admit_head)
        uv_prepare_stop(&s->flush);
    send_batch(s, b);
}

/* Queues the settlement of what `t` holds for this loop pass's batch; t->active is cleared. */
static void settle(struct sb_shared *s, struct sb_shared_ticket *t, int64_t cost, int64_t tokens)
{
    t->active = false;
    if (t->n == 0 || t->n > SB_SHARED_LEVELS)
        return;
    if (s->closing)
        return; /* the clean close deletes the connection's heartbeat: its holdings go with it */
    if (!sb_redis_ready(s->redis)) {
        s->stats.dropped++; /* the connection that held the slots is gone, and its holdings */
        return;
    }
    if (!s->open) {
        s->open = batch_get(s);
        if (!s->open) {
            s->stats.dropped++;
            return;
        }
        uv_prepare_start(&s->flush, on_flush);
    }
    struct batch *b = s->open;
    struct settlement *e = &b->q[b->count];
    size_t at = b->names.len;
    for (size_t i = 0; i < t->n; i++) {
        size_t len = strnlen(t->lv[i].name, LEVEL_NAME_MAX);
        /* A name without its NUL is not one; out of memory: this settlement is lost, the batch
         * stands. */
        if (len == LEVEL_NAME_MAX || sb_buf_append_str(&b->names, NAME_PREFIX) != 0 ||
            sb_buf_append(&b->names, t->lv[i].name, len) != 0 ||
            sb_buf_append_char(&b->names, '\0') != 0) {
            b->names.len = at;
            s->stats.dropped++;
            return;
        }
    }
    memcpy(e->conn, t->conn, sizeof e->conn);
    e->conn[sizeof e->conn - 1] = '\0';
    e->n = (uint8_t)t->n;
    e->names = at;
    e->reserved = clamp(t->reserved);
    e->cost = clamp(cost);
    e->tokens = clamp(tokens);
    for (size_t i = 0; i < t->n; i++) {
        const struct sb_shared_level *l = &t->lv[i];
        e->flags[i] = (uint8_t)((l->par_limit >= 0 ? 1 : 0) |
                                (l->max_budget >= 0 && t->reserved > 0 ? 2 : 0) |
                                (l->max_budget >= 0 ? 4 : 0) | (l->tpm_limit >= 0 ? 8 : 0));
    }
    if (++b->count == BATCH_MAX)
        flush_settlements(s);
}

/* ---------------------------------------------------------------- replies */

int sb_shared_parse_verdict(const redisReply *reply, size_t n, struct sb_shared_verdict *v)
{
    memset(v, 0, sizeof *v);
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 4 || n > SB_SHARED_LEVELS)
        return -1;
    int64_t x[3 + 2 * SB_SHARED_LEVELS] = {
        0}; /* gcc cannot tell that only read elements are used */
    size_t m = reply->elements < sizeof x / sizeof x[0] ? reply->elements : sizeof x / sizeof x[0];
    for (size_t i = 0; i < m; i++) {
        const redisReply *e = reply->element[i];
        if (!e || e->type != REDIS_REPLY_INTEGER)
            return -1;
        x[i] = e->integer;
    }
    if (x[0] < 0 || x[0] > 4)
        return -1;
    v->status = (int)x[0];
    if (v->status != 0) {
        if (reply->elements != 4 || x[1] < 0 || (size_t)x[1] >= n)
            return -1;
        v->level = (int)x[1];
        v->reset_ms = x[2] > 0 ? x[2] : 0;
        v->value = x[3];
        return 0;
    }
    if (reply->elements != 3 + 2 * n || x[1] < 0)
        return -1;
    v->reserve = x[1];
    v->reset_ms = x[2] > 0 ? x[2] : 0;
    for (size_t i = 0; i < n; i++) {
        v->rpm[i] = x[3 + i];
        v->tpm[i] = x[3 + n + i];
    }
    return 0;
}

/* The part of a level's name after its kind ("k:<hash>" -> the hash; the model for 'm'). */
static const char *level_id(const struct sb_shared_level *l)
{
    if (l->kind == 'm') {
        const char *p = strchr(l->name + 2, ':');
        return p ? p + 1 : l->name + 2;
    }
    return l->name + 2;
}

enum sb_shared_outcome sb_shared_apply(const struct sb_shared_verdict *v, struct sb_admission *a,
                                       struct sb_shared_ticket *t)
{
    if (v->status != 0) {
        const struct sb_shared_level *l = &t->lv[v->level];
        /* Rounded up without adding first: reset_ms comes from Redis and may be INT64_MAX. */
        int64_t retry = v->reset_ms / 1000 + (v->reset_ms % 1000 > 0 ? 1 : 0);
        switch (v->status) {
        case 1:
            sb_policy_refuse_rpm(a, l->kind, l->rpm_limit, retry);
            break;
        case 2:
            sb_policy_refuse_tpm(a, l->kind, l->tpm_limit, retry);
            break;
        case 3:
            sb_policy_refuse_parallel(a, l->kind, l->par_limit);
            break;
        default:
            sb_policy_refuse_budget(a, l->kind, level_id(l), v->value, l->max_budget);
            break;
        }
        return SB_SHARED_REFUSED;
    }
    t->reserved = v->reserve;
    t->active = true;
    /* The shared budget pays for less than this instance reserved: a shorter answer. */
    if (v->reserve < a->reserved_nano && a->price_out > 0) {
        /* Compared as a double before converting: with a tiny price the quotient can pass
         * 2^63, which no int64_t holds. */
        double room = floor(((double)v->reserve - (double)a->in_cost_nano) / a->price_out);
        if (!(room > 0))
            room = 0;
        if (a->max_output < 0 || room < (double)a->max_output) {
            a->max_output = room >= 0x1p63 ? INT64_MAX : (int64_t)room;
            a->lowered = true;
        }
    }
    /* x-ratelimit-*: the shared counts of the key's limits, else the team's. */
    int lr = -1, lt = -1;
    for (size_t i = 0; i < t->n; i++) {
        const struct sb_shared_level *l = &t->lv[i];
        if (l->kind != 'k' && l->kind != 't')
            continue;
        if (lr < 0 && l->rpm_limit >= 0 && v->rpm[i] >= 0)
            lr = (int)i;
        if (lt < 0 && l->tpm_limit >= 0 && v->tpm[i] >= 0)
            lt = (int)i;
    }
    if (lr >= 0) {
        a->limit_requests = t->lv[lr].rpm_limit;
        int64_t left = t->lv[lr].rpm_limit - v->rpm[lr];
        a->remaining_requests = left > 0 ? left : 0;
    }
    if (lt >= 0) {
        a->limit_tokens = t->lv[lt].tpm_limit;
        int64_t left = t->lv[lt].tpm_limit - v->tpm[lt];
        a->remaining_tokens = left > 0 ? left : 0;
    }
    if (lr >= 0 || lt >= 0)
        a->reset_ms = v->reset_ms;
    return SB_SHARED_ADMITTED;
}

int sb_shared_parse_verdicts(const redisReply *reply, size_t count, const size_t *n,
                             struct sb_shared_verdict *v, int *rc)
{
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != count)
        return -1;
    for (size_t i = 0; i < count; i++)
        rc[i] = sb_shared_parse_verdict(reply->element[i], n[i], &v[i]);
    return 0;
}

/* One request's answer: `v` when rc is 0, else it is admitted by this instance alone. */
static void deliver(struct sb_shared *s, struct sb_shared_call *c, int rc,
                    const struct sb_shared_verdict *v)
{
    if (c->a == NULL) {
        /* The request is gone: give back what Redis admitted for it. */
        if (rc == 0 && v->status == 0) {
            c->mine.reserved = v->reserve;
            settle(s, &c->mine, 0, 0);
        }
        call_put(s, c);
        return;
    }
    enum sb_shared_outcome o = SB_SHARED_LOCAL;
    if (rc == 0) {
        *c->t = c->mine;
        o = sb_shared_apply(v, c->a, c->t);
    }
    sb_shared_cb cb = c->cb;
    void *cud = c->ud;
    call_put(s, c);
    cb(cud, o);
}

static void warn_answer(const redisReply *reply)
{
    sb_warn("redis: unexpected answer to an admission (%s%.*s); admitted by this instance alone",
            reply->type == REDIS_REPLY_ERROR ? "error: " : "type ",
            reply->type == REDIS_REPLY_ERROR ? (int)reply->len : 0,
            reply->type == REDIS_REPLY_ERROR ? reply->str : "");
}

static void on_admitted(void *ud, const redisReply *reply)
{
    struct admit_batch *b = ud;
    struct sb_shared *s = b->s;
    s->in_flight--;
    if (noscript(reply)) {
        if (resend(s, &b->cmd, &b->resent, ADMIT_LUA, on_admitted, b) == 0)
            return;
        reply = NULL;
    }
    size_t n[ADMIT_MAX];
    struct sb_shared_verdict v[ADMIT_MAX];
    int rc[ADMIT_MAX];
    for (size_t i = 0; i < b->count; i++) {
        n[i] = b->calls[i]->mine.n;
        rc[i] = -1;
    }
    if (sb_shared_parse_verdicts(reply, b->count, n, v, rc) != 0 && reply)
        warn_answer(reply);
    bool warned = false;
    for (size_t i = 0; i < b->count; i++) {
        if (rc[i] != 0 && reply && reply->type == REDIS_REPLY_ARRAY &&
            reply->elements == b->count && !warned) {
            warn_answer(reply->element[i] ? reply->element[i] : reply);
            warned = true;
        }
        /* The owners' callbacks may not touch the batch: it is given back after the last. */
        deliver(s, b->calls[i], rc[i], &v[i]);
    }
    admits_put(s, b);
    maybe_free(s);
}

/* Sends the admissions of `b` as one script call; without a connection (lost since they
 * were queued) each is answered SB_SHARED_LOCAL now, from the loop. Takes b. */
static void send_admits(struct sb_shared *s, struct admit_batch *b)
{
    if (b->count == 0) { /* its first call could not be allocated */
        admits_put(s, b);
        return;
    }
    struct cmdline *cl = &b->cmd;
    size_t keys = 0;
    for (size_t i = 0; i < b->count; i++)
        keys += b->calls[i]->mine.n;
    arg_n(cl, "EVALSHA", 7);
    arg_n(cl, s->admit_sha, strlen(s->admit_sha));
    arg(cl, "%zu", keys);
    for (size_t i = 0; i < b->count; i++) {
        const struct cmdline *c = &b->calls[i]->cmd;
        for (size_t j = 0; j < b->calls[i]->mine.n; j++)
            arg_n(cl, c->argv[j], c->lens[j]);
    }
    for (size_t i = 0; i < b->count; i++) {
        const struct cmdline *c = &b->calls[i]->cmd;
        for (int j = (int)b->calls[i]->mine.n; j < c->argc; j++)
            arg_n(cl, c->argv[j], c->lens[j]);
    }
    if (send_cmd(s, cl, on_admitted, b) != 0) {
        /* Counted in flight as if sent, so that the struct outlives the answers. */
        s->in_flight++;
        on_admitted(b, NULL);
        return;
    }
    s->stats.admit_calls++;
    s->stats.admissions_sent += b->count;
}

bool sb_shared_admit(struct sb_shared *s, struct sb_policy *p, struct sb_admission *a,
                     struct sb_shared_ticket *t, sb_shared_cb cb, void *ud,
                     struct sb_shared_call **call)
{
    *call = NULL;
    memset(t, 0, sizeof *t);
    if (!sb_shared_ready(s))
        return false;
    t->n = sb_policy_shared_levels(p, a, t->lv);
    if (t->n == 0 || t->n > SB_SHARED_LEVELS)
        return false;
    struct admit_batch *b = s->admit_tail;
    if (!b || b->count == ADMIT_MAX) {
        /* A full batch waits for the end of the pass too: every answer, even "no connection
         * any more", comes from the loop, never from this call. */
        b = admits_get(s);
        if (!b)
            return false;
        if (s->admit_tail)
            s->admit_tail->next = b;
        else
            s->admit_head = b;
        s->admit_tail = b;
        uv_prepare_start(&s->flush, on_flush);
    }
    struct sb_shared_call *c = call_get(s);
    if (!c)
        return false;
    c->a = a;
    c->t = t;
    c->cb = cb;
    c->ud = ud;
    snprintf(t->conn, sizeof t->conn, "%s", sb_redis_id(s->redis));
    c->mine = *t;
    int64_t want = clamp(a->reserved_nano);
    int64_t least = -1;
    if (a->price_out > 0 && want > 0)
        least = clamp(a->in_cost_nano + (int64_t)ceil(MIN_OUTPUT * a->price_out));
    struct cmdline *cl = &c->cmd;
    for (size_t i = 0; i < t->n; i++)
        arg(cl, NAME_PREFIX "%s", t->lv[i].name);
    arg(cl, "%zu", t->n);
    arg(cl, "%s", t->conn);
    arg(cl, "%" PRId64, want);
    arg(cl, "%" PRId64, least);
    for (size_t i = 0; i < t->n; i++) {
        const struct sb_shared_level *l = &t->lv[i];
        arg(cl, "%" PRId64, clamp(l->rpm_limit));
        arg(cl, "%" PRId64, clamp(l->tpm_limit));
        arg(cl, "%" PRId64, clamp(l->par_limit));
        arg(cl, "%" PRId64, clamp(l->max_budget));
        arg(cl, "%" PRId64, clamp(l->spend) < 0 ? 0 : clamp(l->spend));
        arg(cl, "%" PRId64, clamp(l->period));
    }
    b->calls[b->count++] = c;
    *call = c;
    return true;
}

void sb_shared_cancel(struct sb_shared_call *call)
{
    if (call) {
        call->a = NULL;
        call->t = NULL;
    }
}

void sb_shared_finish(struct sb_shared *s, struct sb_shared_ticket *t, int64_t cost_nano,
                      int64_t tokens)
{
    if (!s || !t->active)
        return;
    settle(s, t, cost_nano < 0 ? 0 : cost_nano, tokens < 0 ? 0 : tokens);
}

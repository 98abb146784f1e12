/* Limits and budgets shared across instances: the two Lua scripts and their calls. See
 * docs/internals/shared-limits.md. */
#include "policy/shared.h"

#include "core/log.h"

#include <openssl/evp.h>

#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_OUTPUT  16 /* as the in-memory admission: a shorter answer is refused instead */
#define NUM_MAX     9007199254740991LL /* 2^53 - 1: Lua's numbers are doubles */
#define WINDOW_TTL  "120000"
#define HOLD_TTL    "86400000"
#define SPEND_TTL   "86400000"
#define MAX_ARGS    (3 + SB_SHARED_LEVELS + 3 + 6 * SB_SHARED_LEVELS)
#define NAME_PREFIX "sb:"

/* Admission. KEYS: one name per level. ARGV: connection id, reservation wanted, the smallest
 * reservation worth admitting (-1: none smaller), then per level: rpm, tpm, parallel limits,
 * max budget, this instance's spend, budget period. Reply: {0, reserved, reset_ms, rpm counts
 * per level..., tpm counts per level...} or {1 rpm | 2 tpm | 3 parallel | 4 budget, level,
 * reset_ms, count or spend}. */
static const char ADMIT_LUA[] =
    "local id=ARGV[1]\n"
    "local want=tonumber(ARGV[2])\n"
    "local least=tonumber(ARGV[3])\n"
    "local t=redis.call('TIME')\n"
    "local now=tonumber(t[1])*1000+math.floor(tonumber(t[2])/1000)\n"
    "local minute=math.floor(now/60000)\n"
    "local reset=(minute+1)*60000-now\n"
    "local alive={}\n"
    "local function live_sum(h)\n"
    "  local all=redis.call('HGETALL',h)\n"
    "  local s=0\n"
    "  for j=1,#all,2 do\n"
    "    local x=all[j]\n"
    "    local v=alive[x]\n"
    "    if v==nil then v=(x==id) or redis.call('EXISTS','sb:i:'..x)==1; alive[x]=v end\n"
    "    if v then s=s+tonumber(all[j+1]) else redis.call('HDEL',h,x) end\n"
    "  end\n"
    "  return s\n"
    "end\n"
    "local rc,tc={},{}\n"
    "local remaining,tight,tspend=nil,0,0\n"
    "for i=1,#KEYS do\n"
    "  local b,o=KEYS[i],3+(i-1)*6\n"
    "  local rpm,tpm,par,max=tonumber(ARGV[o+1]),tonumber(ARGV[o+2]),tonumber(ARGV[o+3]),"
    "tonumber(ARGV[o+4])\n"
    "  rc[i]=-1; tc[i]=-1\n"
    "  if rpm>=0 then\n"
    "    local c=tonumber(redis.call('GET',b..':r:'..minute) or '0')\n"
    "    if c>=rpm then return {1,i-1,reset,c} end\n"
    "    rc[i]=c\n"
    "  end\n"
    "  if tpm>=0 then\n"
    "    local c=tonumber(redis.call('GET',b..':t:'..minute) or '0')\n"
    "    if c>=tpm then return {2,i-1,reset,c} end\n"
    "    tc[i]=c\n"
    "  end\n"
    "  if par>=0 then\n"
    "    local c=live_sum(b..':p')\n"
    "    if c>=par then return {3,i-1,reset,c} end\n"
    "  end\n"
    "  if max>=0 then\n"
    "    local bk=b..':b'\n"
    "    local seed,per=tonumber(ARGV[o+5]),tonumber(ARGV[o+6])\n"
    "    local cur=redis.call('HMGET',bk,'spend','per')\n"
    "    local spend=nil\n"
    "    if cur[1] then spend=tonumber(cur[1]) end\n"
    "    if spend==nil or per>tonumber(cur[2] or '0') then\n"
    "      spend=seed\n"
    "      redis.call('HSET',bk,'spend',ARGV[o+5],'per',ARGV[o+6])\n"
    "      redis.call('PEXPIRE',bk," SPEND_TTL ")\n"
    "    end\n"
    "    local r=max-spend-live_sum(b..':v')\n"
    "    if remaining==nil or r<remaining then remaining,tight,tspend=r,i-1,spend end\n"
    "  end\n"
    "end\n"
    "local reserve=want\n"
    "if remaining~=nil then\n"
    "  if remaining<=0 or (remaining<want and (least<0 or remaining<least)) then\n"
    "    return {4,tight,reset,tspend}\n"
    "  end\n"
    "  if remaining<want then reserve=remaining end\n"
    "end\n"
    "local out={0,reserve,reset}\n"
    "for i=1,#KEYS do\n"
    "  local b,o=KEYS[i],3+(i-1)*6\n"
    "  if tonumber(ARGV[o+1])>=0 then\n"
    "    local k=b..':r:'..minute\n"
    "    rc[i]=redis.call('INCR',k)\n"
    "    if rc[i]==1 then redis.call('PEXPIRE',k," WINDOW_TTL ") end\n"
    "  end\n"
    "  if tonumber(ARGV[o+3])>=0 then\n"
    "    redis.call('HINCRBY',b..':p',id,1)\n"
    "    redis.call('PEXPIRE',b..':p'," HOLD_TTL ")\n"
    "  end\n"
    "  if tonumber(ARGV[o+4])>=0 and reserve>0 then\n"
    "    redis.call('HINCRBY',b..':v',id,reserve)\n"
    "    redis.call('PEXPIRE',b..':v'," HOLD_TTL ")\n"
    "  end\n"
    "  out[3+i]=rc[i]\n"
    "  out[3+#KEYS+i]=tc[i]\n"
    "end\n"
    "return out\n";

/* Settlement. KEYS: the levels' names. ARGV: connection id ("" when the connection that
 * holds the slots is gone: its holdings expire with it), reserved, cost, tokens, then per
 * level: flags (1 in-flight slot, 2 reservation, 4 budget, 8 TPM). The cost goes to a shared
 * spend that exists: one reseeded since (a new period, an admin change) counts it only when
 * the seeding instance had it. */
static const char SETTLE_LUA[] =
    "local id=ARGV[1]\n"
    "local reserved,cost,tokens=tonumber(ARGV[2]),tonumber(ARGV[3]),tonumber(ARGV[4])\n"
    "local t=redis.call('TIME')\n"
    "local minute=math.floor(tonumber(t[1])/60)\n"
    "for i=1,#KEYS do\n"
    "  local b=KEYS[i]\n"
    "  local f=tonumber(ARGV[4+i])\n"
    "  if f%2==1 and id~='' then\n"
    "    if redis.call('HINCRBY',b..':p',id,-1)<=0 then redis.call('HDEL',b..':p',id) end\n"
    "  end\n"
    "  if math.floor(f/2)%2==1 and id~='' and reserved>0 then\n"
    "    if redis.call('HINCRBY',b..':v',id,-reserved)<=0 then redis.call('HDEL',b..':v',id) "
    "end\n"
    "  end\n"
    "  if math.floor(f/4)%2==1 and cost>0 and redis.call('EXISTS',b..':b')==1 then\n"
    "    redis.call('HINCRBY',b..':b','spend',ARGV[3])\n"
    "  end\n"
    "  if math.floor(f/8)%2==1 and tokens>0 then\n"
    "    local k=b..':t:'..minute\n"
    "    redis.call('INCRBY',k,ARGV[4])\n"
    "    redis.call('PEXPIRE',k," WINDOW_TTL ")\n"
    "  end\n"
    "end\n"
    "return 0\n";

struct sb_shared {
    struct sb_redis *redis;
    char admit_sha[41], settle_sha[41];
};

/* One script call in flight: its arguments (kept to resend as EVAL after NOSCRIPT). */
struct sb_shared_call {
    struct sb_shared *s;
    bool settle;
    bool resent;
    /* Admission: the owner's, until cancelled. */
    struct sb_admission *a;
    struct sb_shared_ticket *t;
    sb_shared_cb cb;
    void *ud;
    struct sb_shared_ticket mine; /* what is held when the owner is gone */
    int argc;
    const char *argv[MAX_ARGS];
    size_t lens[MAX_ARGS];
    char text[SB_SHARED_LEVELS * 408 + MAX_ARGS * 24];
    size_t used;
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
    return s;
}

void sb_shared_close(struct sb_shared *s)
{
    if (!s)
        return;
    sb_redis_close(s->redis);
    free(s);
}

bool sb_shared_ready(const struct sb_shared *s)
{
    return s && sb_redis_ready(s->redis);
}

/* ---------------------------------------------------------------- arguments */

static int64_t clamp(int64_t v)
{
    return v < -1 ? -1 : v > NUM_MAX ? NUM_MAX : v;
}

static void arg(struct sb_shared_call *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void arg(struct sb_shared_call *c, const char *fmt, ...)
{
    char *at = c->text + c->used;
    size_t room = sizeof c->text - c->used;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(at, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) /* cannot happen with the sizes above: an empty argument */
        n = 0;
    at[n] = '\0';
    c->argv[c->argc] = at;
    c->lens[c->argc] = (size_t)n;
    c->argc++;
    c->used += (size_t)n + 1;
}

static void head(struct sb_shared_call *c, const char *sha, const struct sb_shared_ticket *t)
{
    c->argc = 0;
    c->used = 0;
    arg(c, "EVALSHA");
    arg(c, "%s", sha);
    arg(c, "%zu", t->n);
    for (size_t i = 0; i < t->n; i++)
        arg(c, NAME_PREFIX "%s", t->lv[i].name);
}

static void on_settled(void *ud, const redisReply *reply);

static void send_call(struct sb_shared_call *c, sb_redis_reply_cb cb)
{
    if (sb_redis_command(c->s->redis, c->argc, c->argv, c->lens, cb, c) != 0)
        cb(c, NULL);
}

/* Sends the settlement of what `t` holds; t->active is cleared. */
static void settle(struct sb_shared *s, struct sb_shared_ticket *t, int64_t cost, int64_t tokens)
{
    t->active = false;
    if (!sb_redis_ready(s->redis))
        return; /* the connection that held the slots is gone, and its holdings with it */
    struct sb_shared_call *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->s = s;
    c->settle = true;
    head(c, s->settle_sha, t);
    /* Another connection (a reconnect since): its slots expire with it. */
    arg(c, "%s", strcmp(t->conn, sb_redis_id(s->redis)) == 0 ? t->conn : "");
    arg(c, "%" PRId64, clamp(t->reserved));
    arg(c, "%" PRId64, clamp(cost));
    arg(c, "%" PRId64, clamp(tokens));
    for (size_t i = 0; i < t->n; i++) {
        const struct sb_shared_level *l = &t->lv[i];
        int f = (l->par_limit >= 0 ? 1 : 0) | (l->max_budget >= 0 && t->reserved > 0 ? 2 : 0) |
                (l->max_budget >= 0 ? 4 : 0) | (l->tpm_limit >= 0 ? 8 : 0);
        arg(c, "%d", f);
    }
    send_call(c, on_settled);
}

/* ---------------------------------------------------------------- replies */

static bool noscript(const redisReply *reply)
{
    return reply && reply->type == REDIS_REPLY_ERROR && reply->len >= 8 &&
           memcmp(reply->str, "NOSCRIPT", 8) == 0;
}

/* After SCRIPT FLUSH or a Redis restart: the same call again with the script's text. */
static bool resend(struct sb_shared_call *c, const char *script, sb_redis_reply_cb cb)
{
    if (c->resent)
        return false;
    c->resent = true;
    c->argv[0] = "EVAL";
    c->lens[0] = 4;
    c->argv[1] = script;
    c->lens[1] = strlen(script);
    send_call(c, cb);
    return true;
}

static void on_settled(void *ud, const redisReply *reply)
{
    struct sb_shared_call *c = ud;
    if (noscript(reply) && resend(c, SETTLE_LUA, on_settled))
        return;
    if (reply && reply->type == REDIS_REPLY_ERROR)
        sb_warn("redis: settling a request failed: %.*s", (int)reply->len, reply->str);
    free(c);
}

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

static void refuse(struct sb_admission *a, int status, const char *type, const char *code,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void refuse(struct sb_admission *a, int status, const char *type, const char *code,
                   const char *fmt, ...)
{
    a->status = status;
    a->type = type;
    a->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->message, sizeof a->message, fmt, ap);
    va_end(ap);
}

static const char *level_word(char kind)
{
    switch (kind) {
    case 'k':
        return "key";
    case 't':
        return "team";
    case 'u':
        return "user";
    case 'c':
        return "end user";
    default:
        return "model";
    }
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
            a->retry_after_s = retry > 0 ? retry : 1;
            refuse(a, 429, "rate_limit_error", "rate_limit_exceeded",
                   "Rate limit reached for %s. Limit of %" PRId64 " requests per minute.",
                   level_word(l->kind), l->rpm_limit);
            break;
        case 2:
            a->retry_after_s = retry > 0 ? retry : 1;
            refuse(a, 429, "rate_limit_error", "rate_limit_exceeded",
                   "Rate limit reached for %s. Limit of %" PRId64 " tokens per minute.",
                   level_word(l->kind), l->tpm_limit);
            break;
        case 3:
            a->retry_after_s = 1;
            refuse(a, 429, "rate_limit_error", "rate_limit_exceeded",
                   "Max parallel request limit reached for %s. Hit limit of %" PRId64
                   " parallel requests.",
                   level_word(l->kind), l->par_limit);
            break;
        default: {
            static const char *const who[] = {"Team=", "User=", "End User=", "Model="};
            const char *prefix = l->kind == 't'   ? who[0]
                                 : l->kind == 'u' ? who[1]
                                 : l->kind == 'c' ? who[2]
                                 : l->kind == 'm' ? who[3]
                                                  : "";
            refuse(a, 400, "budget_exceeded", "budget_exceeded",
                   "Budget has been exceeded! %s%s%sCurrent cost: %.9g, Max budget: %.9g", prefix,
                   l->kind == 'k' ? "" : level_id(l), l->kind == 'k' ? "" : " ",
                   (double)v->value / 1e9, (double)l->max_budget / 1e9);
            break;
        }
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

static void on_admitted(void *ud, const redisReply *reply)
{
    struct sb_shared_call *c = ud;
    if (noscript(reply) && resend(c, ADMIT_LUA, on_admitted))
        return;
    struct sb_shared_verdict v;
    int rc = sb_shared_parse_verdict(reply, c->mine.n, &v);
    if (reply && rc != 0)
        sb_warn("redis: unexpected answer to an admission (%s%.*s); admitted by this instance "
                "alone",
                reply->type == REDIS_REPLY_ERROR ? "error: " : "type ",
                reply->type == REDIS_REPLY_ERROR ? (int)reply->len : 0,
                reply->type == REDIS_REPLY_ERROR ? reply->str : "");
    if (c->a == NULL) {
        /* The request is gone: give back what Redis admitted for it. */
        if (rc == 0 && v.status == 0) {
            c->mine.reserved = v.reserve;
            settle(c->s, &c->mine, 0, 0);
        }
        free(c);
        return;
    }
    enum sb_shared_outcome o = SB_SHARED_LOCAL;
    if (rc == 0) {
        *c->t = c->mine;
        o = sb_shared_apply(&v, c->a, c->t);
    }
    sb_shared_cb cb = c->cb;
    void *cud = c->ud;
    free(c);
    cb(cud, o);
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
    if (t->n == 0)
        return false;
    struct sb_shared_call *c = calloc(1, sizeof *c);
    if (!c)
        return false;
    c->s = s;
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
    head(c, s->admit_sha, t);
    arg(c, "%s", t->conn);
    arg(c, "%" PRId64, want);
    arg(c, "%" PRId64, least);
    for (size_t i = 0; i < t->n; i++) {
        const struct sb_shared_level *l = &t->lv[i];
        arg(c, "%" PRId64, clamp(l->rpm_limit));
        arg(c, "%" PRId64, clamp(l->tpm_limit));
        arg(c, "%" PRId64, clamp(l->par_limit));
        arg(c, "%" PRId64, clamp(l->max_budget));
        arg(c, "%" PRId64, clamp(l->spend) < 0 ? 0 : clamp(l->spend));
        arg(c, "%" PRId64, clamp(l->period));
    }
    if (sb_redis_command(s->redis, c->argc, c->argv, c->lens, on_admitted, c) != 0) {
        free(c);
        return false;
    }
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

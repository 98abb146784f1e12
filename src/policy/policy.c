/* Keys, teams, users and end users in memory, and admission. See docs/internals/policy.md for
 * the data structures, the lock order and why budgets hold under concurrency. */
#include "policy/policy.h"

#include "core/buf.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ID_MAX         128
#define MODEL_MAX      256  /* longest model alias kept per-model counters for */
#define MODELS_MAX     1024 /* names in one `models` list */
#define GROUPS_MAX     4096 /* access-group entries */
#define MIN_OUTPUT     16   /* below this a lowered answer is useless: refuse instead */
#define NANO           1e9
#define MONEY_MAX      (INT64_MAX / 4)
#define MS_PER_WINDOW  60000
#define ADMIN_ROLE     "proxy_admin"
#define ALL_MODELS     "all-proxy-models"
#define ALL_TEAM_MODEL "all-team-models"

/* A rate window packs the window number (minute since the epoch, modulo 2^28) and its count
 * into one 64-bit atomic, so "same window? under the limit? count it" is a single CAS and a
 * limit L admits exactly L per window whatever the number of threads. */
#define WIN_BITS 28
#define CNT_BITS 36
#define WIN_MASK ((UINT64_C(1) << WIN_BITS) - 1)
#define CNT_MAX  ((UINT64_C(1) << CNT_BITS) - 1)

/* Spend and reservations of one budget level; guarded by the policy's money mutex. */
struct money {
    int64_t max; /* nano; -1: no budget (conf: written under the write lock) */
    int64_t spend;
    int64_t reserved;
    int64_t pending; /* settled here, not yet committed to the database by the store thread */
};

/* Counters of one model on one key (model_max_budget, model_rpm_limit, model_tpm_limit).
 * Created on upsert, never freed before the entity, so an admission may point at one. */
struct mctr {
    struct mctr *next;
    char *model;
    struct money m;
    int64_t period_s; /* time_period of model_max_budget; 0: none */
    int64_t reset_at; /* Unix s of the next in-memory reset (money mutex) */
    int64_t rpm_limit, tpm_limit;
    _Atomic uint64_t rpm, tpm;
};

struct ent {
    _Atomic int refs;
    enum sb_entity kind;
    char *id;
    struct ent *next; /* hash chain */
    /* Configuration from the record: written only under the write lock. */
    json_t *record;
    char **models;
    size_t n_models;
    bool blocked, admin;
    int64_t expires_ms; /* INT64_MAX: never */
    int64_t rpm_limit, tpm_limit, par_limit;
    char *team_id, *user_id;
    char *budget_duration;
    /* Live. */
    struct money m;    /* spend, reserved: money mutex */
    int64_t reset_at;  /* budget_reset_at, Unix s, 0: none: money mutex */
    int64_t updated_s; /* the record's updated_at (Unix s): an admin change (money mutex) */
    _Atomic uint64_t rpm, tpm;
    _Atomic int64_t inflight;
    struct mctr *mctrs; /* appended under the write lock */
};

struct table {
    struct ent **b;
    size_t nb, n;
};

struct group {
    char *alias;
    char *group;
};

struct sb_policy {
    pthread_rwlock_t lock;
    struct table t[SB_ENT_COUNT];
    struct group *groups;
    size_t n_groups;
    pthread_mutex_t money;
    int64_t reserved_total; /* money mutex */
};

enum { LV_KEY, LV_TEAM, LV_USER, LV_CUSTOMER, LV_MODEL, LV_COUNT };
/* Each level's kind as the shared counters and the refusal messages name it. */
static const char level_kind[LV_COUNT] = {'k', 't', 'u', 'c', 'm'};

/* What an admission holds until settle or release. */
struct held {
    struct ent *e[LV_CUSTOMER + 1]; /* key, team, user, customer (refs) */
    struct mctr *mc;
    struct money *lv[LV_COUNT];
    bool reserved[LV_COUNT];
    int64_t reservation;
};

/* ---- small helpers ---- */

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s != '\0'; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int64_t dollars_to_nano(double d)
{
    double n = d * NANO;
    if (!(n > -(double)MONEY_MAX))
        return -(int64_t)MONEY_MAX;
    if (n >= (double)MONEY_MAX)
        return MONEY_MAX;
    return (int64_t)llround(n);
}

/* Nano-dollars of a token count at a price, rounded up (what is reserved is never short). */
static int64_t cost_up(int64_t tokens, double price)
{
    if (tokens <= 0 || !(price > 0))
        return 0;
    double c = ceil((double)tokens * price);
    if (c >= (double)MONEY_MAX)
        return MONEY_MAX;
    return (int64_t)c;
}

/* ---- time ---- */

static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool digits(const char **s, int n, int64_t *out)
{
    int64_t v = 0;
    for (int i = 0; i < n; i++) {
        char c = (*s)[i];
        if (c < '0' || c > '9')
            return false;
        v = v * 10 + (c - '0');
    }
    *s += n;
    *out = v;
    return true;
}

/* ISO 8601 as LiteLLM and Python's isoformat write it: "2026-11-21T10:00:00Z",
 * "2026-11-21T10:00:00.123456+00:00", "2026-11-21 10:00:00", or a date alone (midnight).
 * No zone: UTC. Returns false when malformed. */
static bool parse_iso8601_ms(const char *s, int64_t *out_ms)
{
    int64_t y, mo, d, h = 0, mi = 0, sec = 0, ms = 0;
    if (!digits(&s, 4, &y) || *s++ != '-' || !digits(&s, 2, &mo) || *s++ != '-' ||
        !digits(&s, 2, &d))
        return false;
    if (mo < 1 || mo > 12 || d < 1 || d > 31)
        return false;
    if (*s == 'T' || *s == 't' || *s == ' ') {
        s++;
        if (!digits(&s, 2, &h) || *s++ != ':' || !digits(&s, 2, &mi))
            return false;
        if (*s == ':') {
            s++;
            if (!digits(&s, 2, &sec))
                return false;
            if (*s == '.' || *s == ',') {
                s++;
                int n = 0;
                int64_t scale = 100;
                while (*s >= '0' && *s <= '9') {
                    if (n < 3)
                        ms += (*s - '0') * scale;
                    scale /= 10;
                    n++;
                    s++;
                }
                if (n == 0 || n > 12)
                    return false;
            }
        }
        if (h > 23 || mi > 59 || sec > 60)
            return false;
    }
    int64_t off_s = 0;
    if (*s == 'Z' || *s == 'z') {
        s++;
    } else if (*s == '+' || *s == '-') {
        int sign = *s++ == '-' ? -1 : 1;
        int64_t oh, om = 0;
        if (!digits(&s, 2, &oh))
            return false;
        if (*s == ':')
            s++;
        if (*s != '\0' && !digits(&s, 2, &om))
            return false;
        if (oh > 23 || om > 59)
            return false;
        off_s = sign * (oh * 3600 + om * 60);
    }
    if (*s != '\0')
        return false;
    int64_t t = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off_s;
    *out_ms = t * 1000 + ms;
    return true;
}

int64_t sb_policy_duration_s(const char *s)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    long long n = strtoll(s, &end, 10);
    if (errno != 0 || n <= 0 || n > 100000)
        return -1;
    int64_t unit;
    if (strcmp(end, "s") == 0)
        unit = 1;
    else if (strcmp(end, "m") == 0)
        unit = 60;
    else if (strcmp(end, "h") == 0)
        unit = 3600;
    else if (strcmp(end, "d") == 0)
        unit = 86400;
    else if (strcmp(end, "w") == 0)
        unit = 7 * 86400;
    else if (strcmp(end, "mo") == 0)
        unit = 30 * 86400; /* a month as LiteLLM's fixed-length budget period */
    else
        return -1;
    return (int64_t)n * unit;
}

/* SHA-256 fetched once (EVP_sha256() makes EVP_Digest look the algorithm up on every call),
 * and one digest context per thread, reset for each key instead of allocated and freed. */
static EVP_MD *sha256_md;
static pthread_key_t sha256_ctx_key;
static bool sha256_ctx_key_ok;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void free_md_ctx(void *ctx)
{
    EVP_MD_CTX_free(ctx);
}

static void sha256_fetch(void)
{
    sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    sha256_ctx_key_ok = pthread_key_create(&sha256_ctx_key, free_md_ctx) == 0;
}

static bool sha256(const char *data, size_t len, unsigned char md[32])
{
    pthread_once(&sha256_once, sha256_fetch);
    const EVP_MD *type = sha256_md ? sha256_md : EVP_sha256();
    EVP_MD_CTX *ctx = sha256_ctx_key_ok ? pthread_getspecific(sha256_ctx_key) : NULL;
    if (!ctx && sha256_ctx_key_ok && (ctx = EVP_MD_CTX_new()) != NULL &&
        pthread_setspecific(sha256_ctx_key, ctx) != 0) {
        EVP_MD_CTX_free(ctx);
        ctx = NULL;
    }
    unsigned int mdlen = 0;
    if (!ctx)
        return EVP_Digest(data, len, md, &mdlen, type, NULL) == 1 && mdlen == 32;
    return EVP_DigestInit_ex2(ctx, type, NULL) == 1 && EVP_DigestUpdate(ctx, data, len) == 1 &&
           EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
}

/* Every byte's two hex digits: one copy per byte of the digest instead of two lookups. */
static const char hex_pairs[513] = "000102030405060708090a0b0c0d0e0f"
                                   "101112131415161718191a1b1c1d1e1f"
                                   "202122232425262728292a2b2c2d2e2f"
                                   "303132333435363738393a3b3c3d3e3f"
                                   "404142434445464748494a4b4c4d4e4f"
                                   "505152535455565758595a5b5c5d5e5f"
                                   "606162636465666768696a6b6c6d6e6f"
                                   "707172737475767778797a7b7c7d7e7f"
                                   "808182838485868788898a8b8c8d8e8f"
                                   "909192939495969798999a9b9c9d9e9f"
                                   "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
                                   "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
                                   "c0c1c2c3c4c5c6c7c8c9cacbcccdcecf"
                                   "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
                                   "e0e1e2e3e4e5e6e7e8e9eaebecedeeef"
                                   "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

void sb_policy_hash_key(const char *key, size_t len, char out[65])
{
    unsigned char md[32];
    if (!sha256(key, len, md)) {
        /* Cannot happen with a working libcrypto; an all-zero hash matches no key. */
        memset(out, '0', 64);
        out[64] = '\0';
        return;
    }
    for (unsigned i = 0; i < 32; i++)
        memcpy(out + 2 * i, hex_pairs + 2 * md[i], 2);
    out[64] = '\0';
}

/* ---- rate windows ---- */

static uint64_t window_of(int64_t now_ms)
{
    return (uint64_t)((now_ms > 0 ? now_ms : 0) / MS_PER_WINDOW) & WIN_MASK;
}

/* true when window `a` is after `b` (modulo 2^28, with half the range as the horizon). */
static bool window_after(uint64_t a, uint64_t b)
{
    uint64_t d = (a - b) & WIN_MASK;
    return d != 0 && d < (WIN_MASK >> 1);
}

/* Counts one request in the window of `win` unless that makes more than `limit` (< 0: none).
 * A caller whose clock is behind the stored window counts in the stored one, so a window is
 * never reopened. Returns false when refused; *counted = the window counted in. */
static bool rpm_take(_Atomic uint64_t *w, int64_t limit, uint64_t win, uint64_t *counted,
                     int64_t *count_after)
{
    uint64_t v = atomic_load(w);
    for (;;) {
        uint64_t vw = v >> CNT_BITS, c = v & CNT_MAX, use = win;
        if (vw == win || window_after(vw, win))
            use = vw;
        else
            c = 0;
        if (limit >= 0 && c >= (uint64_t)limit)
            return false;
        if (c >= CNT_MAX)
            c = CNT_MAX - 1;
        uint64_t nv = (use << CNT_BITS) | (c + 1);
        if (atomic_compare_exchange_weak(w, &v, nv)) {
            *counted = use;
            *count_after = (int64_t)(c + 1);
            return true;
        }
    }
}

static void rpm_undo(_Atomic uint64_t *w, uint64_t win)
{
    uint64_t v = atomic_load(w);
    for (;;) {
        if ((v >> CNT_BITS) != win || (v & CNT_MAX) == 0)
            return; /* the window rolled over: nothing of ours is left to undo */
        if (atomic_compare_exchange_weak(w, &v, v - 1))
            return;
    }
}

static int64_t window_count(_Atomic uint64_t *w, uint64_t win)
{
    uint64_t v = atomic_load(w);
    uint64_t vw = v >> CNT_BITS;
    if (vw == win || window_after(vw, win))
        return (int64_t)(v & CNT_MAX);
    return 0;
}

static void tpm_add(_Atomic uint64_t *w, uint64_t win, int64_t tokens)
{
    uint64_t add = tokens > 0 ? (uint64_t)tokens : 0;
    if (add > CNT_MAX)
        add = CNT_MAX;
    uint64_t v = atomic_load(w);
    for (;;) {
        uint64_t vw = v >> CNT_BITS, c = v & CNT_MAX, use = win;
        if (vw == win || window_after(vw, win))
            use = vw;
        else
            c = 0;
        c = c > CNT_MAX - add ? CNT_MAX : c + add;
        if (atomic_compare_exchange_weak(w, &v, (use << CNT_BITS) | c))
            return;
    }
}

/* ---- entities ---- */

static void free_models(char **models, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(models[i]);
    free(models);
}

static void ent_free(struct ent *e)
{
    json_decref(e->record);
    free_models(e->models, e->n_models);
    free(e->team_id);
    free(e->user_id);
    free(e->budget_duration);
    free(e->id);
    struct mctr *mc = e->mctrs;
    while (mc != NULL) {
        struct mctr *next = mc->next;
        free(mc->model);
        free(mc);
        mc = next;
    }
    free(e);
}

static void ent_ref(struct ent *e)
{
    atomic_fetch_add_explicit(&e->refs, 1, memory_order_relaxed);
}

static void ent_unref(struct ent *e)
{
    if (e != NULL && atomic_fetch_sub_explicit(&e->refs, 1, memory_order_acq_rel) == 1)
        ent_free(e);
}

/* Two 64-byte strings equal, in constant time: eight words XORed and ORed together with no
 * early exit. The empty asm hides the accumulator from the optimizer at every step, so it
 * cannot turn the loop into a compare that stops at the first difference. */
static bool ct_eq64(const char *a, const char *b)
{
    uint64_t acc = 0;
    for (size_t i = 0; i < 64; i += 8) {
        uint64_t x, y;
        memcpy(&x, a + i, 8);
        memcpy(&y, b + i, 8);
        acc |= x ^ y;
        __asm__ volatile("" : "+r"(acc));
    }
    return acc == 0;
}

static bool id_eq(enum sb_entity kind, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return false;
    /* A key's id is the digest of a secret: compare it in constant time (a SHA-256 in hex,
     * 64 bytes, is the only length a key table holds in practice). */
    if (kind == SB_ENT_KEY)
        return la == 64 ? ct_eq64(a, b) : CRYPTO_memcmp(a, b, la) == 0;
    return memcmp(a, b, la) == 0;
}

static struct ent *table_find(const struct table *t, enum sb_entity kind, const char *id)
{
    if (t->nb == 0)
        return NULL;
    for (struct ent *e = t->b[fnv1a(id) & (t->nb - 1)]; e != NULL; e = e->next)
        if (id_eq(kind, e->id, id))
            return e;
    return NULL;
}

static int table_insert(struct table *t, struct ent *e)
{
    if (t->n + 1 > t->nb) {
        size_t nb = t->nb ? t->nb * 2 : 64;
        struct ent **b = calloc(nb, sizeof(*b));
        if (b == NULL)
            return -1;
        for (size_t i = 0; i < t->nb; i++) {
            struct ent *x = t->b[i];
            while (x != NULL) {
                struct ent *next = x->next;
                size_t h = fnv1a(x->id) & (nb - 1);
                x->next = b[h];
                b[h] = x;
                x = next;
            }
        }
        free(t->b);
        t->b = b;
        t->nb = nb;
    }
    size_t h = fnv1a(e->id) & (t->nb - 1);
    e->next = t->b[h];
    t->b[h] = e;
    t->n++;
    return 0;
}

static struct ent *table_unlink(struct table *t, enum sb_entity kind, const char *id)
{
    if (t->nb == 0)
        return NULL;
    struct ent **pp = &t->b[fnv1a(id) & (t->nb - 1)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        struct ent *e = *pp;
        if (id_eq(kind, e->id, id)) {
            *pp = e->next;
            e->next = NULL;
            t->n--;
            return e;
        }
    }
    return NULL;
}

static struct mctr *mctr_find(const struct ent *e, const char *model)
{
    for (struct mctr *mc = e->mctrs; mc != NULL; mc = mc->next)
        if (strcmp(mc->model, model) == 0)
            return mc;
    return NULL;
}

/* ---- parsing a record ---- */

/* The configuration parsed from a record, applied in one step once it is all valid. */
struct conf {
    char **models;
    size_t n_models;
    bool blocked, admin;
    int64_t expires_ms;
    int64_t max_nano;
    int64_t rpm_limit, tpm_limit, par_limit;
    char *team_id, *user_id, *budget_duration;
    bool has_spend;
    int64_t spend_nano;
    bool has_reset;
    int64_t reset_at;
    int64_t updated_s;
};

static void conf_free(struct conf *c)
{
    free_models(c->models, c->n_models);
    free(c->team_id);
    free(c->user_id);
    free(c->budget_duration);
    memset(c, 0, sizeof(*c));
}

/* A limit: absent or null -> -1; a non-negative number; anything else is a bad record. */
static int get_limit(const json_t *rec, const char *name, int64_t *out)
{
    const json_t *v = json_object_get(rec, name);
    *out = -1;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return -1;
    double d = json_number_value(v);
    if (!(d >= 0) || d > 9e15)
        return -1;
    *out = (int64_t)d;
    return 0;
}

static int get_money(const json_t *v, int64_t *out)
{
    *out = -1;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return -1;
    double d = json_number_value(v);
    if (!(d >= 0) || d > 9e9)
        return -1;
    *out = dollars_to_nano(d);
    return 0;
}

static int get_str(const json_t *rec, const char *name, char **out)
{
    const json_t *v = json_object_get(rec, name);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v) || json_string_length(v) > ID_MAX)
        return -1;
    if (json_string_length(v) == 0)
        return 0;
    *out = xstrdup(json_string_value(v));
    return *out != NULL ? 0 : -1;
}

static int parse_conf(const json_t *rec, struct conf *c)
{
    memset(c, 0, sizeof(*c));
    c->expires_ms = INT64_MAX;
    const json_t *v = json_object_get(rec, "models");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_array(v) || json_array_size(v) > MODELS_MAX)
            return -1;
        size_t n = json_array_size(v);
        if (n > 0) {
            c->models = calloc(n, sizeof(char *));
            if (c->models == NULL)
                return -1;
        }
        for (size_t i = 0; i < n; i++) {
            const json_t *m = json_array_get(v, i);
            if (!json_is_string(m))
                return -1;
            c->models[i] = xstrdup(json_string_value(m));
            if (c->models[i] == NULL)
                return -1;
            c->n_models++;
        }
    }
    v = json_object_get(rec, "blocked");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_boolean(v))
            return -1;
        c->blocked = json_is_true(v);
    }
    v = json_object_get(rec, "user_role");
    c->admin = json_is_string(v) && strcmp(json_string_value(v), ADMIN_ROLE) == 0;
    v = json_object_get(rec, "expires");
    if (v != NULL && !json_is_null(v)) {
        if (!json_is_string(v) || !parse_iso8601_ms(json_string_value(v), &c->expires_ms))
            return -1;
    }
    if (get_money(json_object_get(rec, "max_budget"), &c->max_nano) != 0 ||
        get_limit(rec, "rpm_limit", &c->rpm_limit) != 0 ||
        get_limit(rec, "tpm_limit", &c->tpm_limit) != 0 ||
        get_limit(rec, "max_parallel_requests", &c->par_limit) != 0)
        return -1;
    if (get_str(rec, "team_id", &c->team_id) != 0 || get_str(rec, "user_id", &c->user_id) != 0 ||
        get_str(rec, "budget_duration", &c->budget_duration) != 0)
        return -1;
    v = json_object_get(rec, "spend");
    if (json_is_number(v)) {
        double d = json_number_value(v);
        c->has_spend = true;
        c->spend_nano = d > 0 ? dollars_to_nano(d) : 0;
    }
    v = json_object_get(rec, "updated_at");
    int64_t ms = 0;
    if (json_is_string(v) && parse_iso8601_ms(json_string_value(v), &ms))
        c->updated_s = ms / 1000;
    v = json_object_get(rec, "budget_reset_at");
    if (json_is_integer(v)) {
        c->has_reset = true;
        c->reset_at = json_integer_value(v) > 0 ? json_integer_value(v) : 0;
    } else if (json_is_null(v)) {
        c->has_reset = true;
        c->reset_at = 0;
    } else if (v != NULL) {
        return -1;
    }
    return 0;
}

/* One per-model limit of a key: a {alias: n} map. */
static int model_map_limit(const json_t *map, const char *model, int64_t *out)
{
    *out = -1;
    const json_t *v = json_object_get(map, model);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_number(v) || !(json_number_value(v) >= 0) || json_number_value(v) > 9e15)
        return -1;
    *out = (int64_t)json_number_value(v);
    return 0;
}

struct mconf {
    char *model;
    int64_t max_nano, period_s, rpm, tpm;
};

/* Per-model limits of a key record: every alias named in model_max_budget, model_rpm_limit or
 * model_tpm_limit. */
static int parse_model_limits(const json_t *rec, struct mconf **out, size_t *n_out)
{
    static const char *const maps[] = {"model_max_budget", "model_rpm_limit", "model_tpm_limit"};
    const json_t *mb = json_object_get(rec, maps[0]);
    const json_t *mr = json_object_get(rec, maps[1]);
    const json_t *mt = json_object_get(rec, maps[2]);
    *out = NULL;
    *n_out = 0;
    size_t cap = 0;
    for (size_t k = 0; k < 3; k++) {
        const json_t *m = json_object_get(rec, maps[k]);
        if (m == NULL || json_is_null(m))
            continue;
        if (!json_is_object(m))
            return -1;
        cap += json_object_size(m);
    }
    if (cap == 0)
        return 0;
    if (cap > MODELS_MAX)
        return -1;
    struct mconf *mcs = calloc(cap, sizeof(*mcs));
    if (mcs == NULL)
        return -1;
    size_t n = 0;
    int rc = 0;
    for (size_t k = 0; k < 3 && rc == 0; k++) {
        const json_t *m = json_object_get(rec, maps[k]);
        if (!json_is_object(m))
            continue;
        const char *model;
        json_t *val;
        json_object_foreach((json_t *)m, model, val)
        {
            (void)val;
            if (strlen(model) > MODEL_MAX) {
                rc = -1;
                break;
            }
            bool seen = false;
            for (size_t i = 0; i < n && !seen; i++)
                seen = strcmp(mcs[i].model, model) == 0;
            if (seen)
                continue;
            struct mconf *c = &mcs[n];
            c->model = xstrdup(model);
            if (c->model == NULL) {
                rc = -1;
                break;
            }
            n++;
            c->max_nano = -1;
            const json_t *b = json_object_get(mb, model);
            if (json_is_object(b)) {
                const json_t *tp = json_object_get(b, "time_period");
                if (get_money(json_object_get(b, "budget_limit"), &c->max_nano) != 0) {
                    rc = -1;
                    break;
                }
                if (json_is_string(tp)) {
                    c->period_s = sb_policy_duration_s(json_string_value(tp));
                    if (c->period_s < 0) {
                        rc = -1;
                        break;
                    }
                }
            } else if (get_money(b, &c->max_nano) != 0) {
                rc = -1;
                break;
            }
            if (model_map_limit(mr, model, &c->rpm) != 0 ||
                model_map_limit(mt, model, &c->tpm) != 0) {
                rc = -1;
                break;
            }
        }
    }
    if (rc != 0) {
        for (size_t i = 0; i < n; i++)
            free(mcs[i].model);
        free(mcs);
        return -1;
    }
    *out = mcs;
    *n_out = n;
    return 0;
}

/* ---- lifecycle ---- */

struct sb_policy *sb_policy_new(void)
{
    struct sb_policy *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    if (pthread_rwlock_init(&p->lock, NULL) != 0) {
        free(p);
        return NULL;
    }
    if (pthread_mutex_init(&p->money, NULL) != 0) {
        pthread_rwlock_destroy(&p->lock);
        free(p);
        return NULL;
    }
    return p;
}

void sb_policy_free(struct sb_policy *p)
{
    if (p == NULL)
        return;
    for (int k = 0; k < SB_ENT_COUNT; k++) {
        struct table *t = &p->t[k];
        for (size_t i = 0; i < t->nb; i++) {
            struct ent *e = t->b[i];
            while (e != NULL) {
                struct ent *next = e->next;
                ent_unref(e);
                e = next;
            }
        }
        free(t->b);
    }
    for (size_t i = 0; i < p->n_groups; i++) {
        free(p->groups[i].alias);
        free(p->groups[i].group);
    }
    free(p->groups);
    pthread_mutex_destroy(&p->money);
    pthread_rwlock_destroy(&p->lock);
    free(p);
}

int sb_policy_set_access_groups(struct sb_policy *p, const char *alias, const char *const *groups,
                                size_t n)
{
    if (p == NULL || alias == NULL || (n > 0 && groups == NULL))
        return -1;
    pthread_rwlock_wrlock(&p->lock);
    int rc = 0;
    /* Replace the alias's groups: drop its old entries first. */
    size_t w = 0;
    for (size_t i = 0; i < p->n_groups; i++) {
        if (strcmp(p->groups[i].alias, alias) == 0) {
            free(p->groups[i].alias);
            free(p->groups[i].group);
        } else {
            p->groups[w++] = p->groups[i];
        }
    }
    p->n_groups = w;
    if (n > GROUPS_MAX || p->n_groups + n > GROUPS_MAX) {
        rc = -1;
        goto out;
    }
    if (n > 0) {
        struct group *g = realloc(p->groups, (p->n_groups + n) * sizeof(*g));
        if (g == NULL) {
            rc = -1;
            goto out;
        }
        p->groups = g;
    }
    for (size_t i = 0; i < n; i++) {
        char *a = xstrdup(alias), *gr = groups[i] != NULL ? xstrdup(groups[i]) : NULL;
        if (a == NULL || gr == NULL) {
            free(a);
            free(gr);
            rc = -1;
            goto out;
        }
        p->groups[p->n_groups].alias = a;
        p->groups[p->n_groups].group = gr;
        p->n_groups++;
    }
out:
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

static void mconfs_free(struct mconf *mcs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(mcs[i].model);
    free(mcs);
}

int sb_policy_upsert(struct sb_policy *p, enum sb_entity kind, const char *id, const json_t *record,
                     bool take_spend)
{
    if (p == NULL || (unsigned)kind >= SB_ENT_COUNT || id == NULL || *id == '\0' ||
        strlen(id) > ID_MAX || !json_is_object(record))
        return -1;
    struct conf c;
    struct mconf *mcs = NULL;
    size_t n_mcs = 0;
    struct mctr **nodes = NULL;
    json_t *copy = NULL;
    struct ent *fresh = NULL;
    int rc = -1;
    if (parse_conf(record, &c) != 0)
        goto out;
    if (kind == SB_ENT_KEY && parse_model_limits(record, &mcs, &n_mcs) != 0)
        goto out;
    copy = json_deep_copy(record);
    if (copy == NULL)
        goto out;
    /* Allocate everything before taking the lock: the write lock is held only to swap. */
    if (n_mcs > 0) {
        nodes = calloc(n_mcs, sizeof(*nodes));
        if (nodes == NULL)
            goto out;
    }
    for (size_t i = 0; i < n_mcs; i++) {
        nodes[i] = calloc(1, sizeof(**nodes));
        if (nodes[i] == NULL)
            goto out;
        nodes[i]->model = mcs[i].model;
        mcs[i].model = NULL;
    }
    fresh = calloc(1, sizeof(*fresh));
    if (fresh == NULL || (fresh->id = xstrdup(id)) == NULL)
        goto out;
    atomic_init(&fresh->refs, 1);
    fresh->kind = kind;

    pthread_rwlock_wrlock(&p->lock);
    struct ent *e = table_find(&p->t[kind], kind, id);
    bool is_new = e == NULL;
    if (is_new) {
        if (table_insert(&p->t[kind], fresh) != 0) {
            pthread_rwlock_unlock(&p->lock);
            goto out;
        }
        e = fresh;
        fresh = NULL;
    }
    json_decref(e->record);
    e->record = copy;
    copy = NULL;
    free_models(e->models, e->n_models);
    e->models = c.models;
    e->n_models = c.n_models;
    c.models = NULL;
    c.n_models = 0;
    e->blocked = c.blocked;
    e->admin = c.admin;
    e->expires_ms = c.expires_ms;
    e->rpm_limit = c.rpm_limit;
    e->tpm_limit = c.tpm_limit;
    e->par_limit = c.par_limit;
    free(e->team_id);
    free(e->user_id);
    free(e->budget_duration);
    e->team_id = c.team_id;
    e->user_id = c.user_id;
    e->budget_duration = c.budget_duration;
    c.team_id = c.user_id = c.budget_duration = NULL;
    pthread_mutex_lock(&p->money);
    e->m.max = c.max_nano;
    if (is_new || take_spend)
        e->m.spend = c.has_spend ? c.spend_nano : 0;
    if (c.has_reset)
        e->reset_at = c.reset_at;
    e->updated_s = c.updated_s;
    /* Per-model counters keep their live counts across a replace; the limits of a model no
     * longer named are switched off (its counters stay: an admission may point at them). */
    for (struct mctr *mc = e->mctrs; mc != NULL; mc = mc->next) {
        mc->rpm_limit = mc->tpm_limit = -1;
        mc->period_s = 0;
        mc->m.max = -1;
    }
    for (size_t i = 0; i < n_mcs; i++) {
        struct mctr *mc = mctr_find(e, nodes[i]->model);
        if (mc == NULL) {
            mc = nodes[i];
            nodes[i] = NULL;
            mc->next = e->mctrs;
            e->mctrs = mc;
        }
        mc->m.max = mcs[i].max_nano;
        mc->rpm_limit = mcs[i].rpm;
        mc->tpm_limit = mcs[i].tpm;
        if (mc->period_s != mcs[i].period_s)
            mc->reset_at = 0;
        mc->period_s = mcs[i].period_s;
    }
    pthread_mutex_unlock(&p->money);
    pthread_rwlock_unlock(&p->lock);
    rc = 0;
out:
    for (size_t i = 0; nodes != NULL && i < n_mcs; i++) {
        if (nodes[i] != NULL) {
            free(nodes[i]->model);
            free(nodes[i]);
        }
    }
    free(nodes);
    mconfs_free(mcs, n_mcs);
    conf_free(&c);
    json_decref(copy);
    if (fresh != NULL)
        ent_free(fresh);
    return rc;
}

void sb_policy_remove(struct sb_policy *p, enum sb_entity kind, const char *id)
{
    if (p == NULL || (unsigned)kind >= SB_ENT_COUNT || id == NULL)
        return;
    pthread_rwlock_wrlock(&p->lock);
    struct ent *e = table_unlink(&p->t[kind], kind, id);
    pthread_rwlock_unlock(&p->lock);
    /* Admissions still holding it keep it alive; their settle updates a detached entity. */
    ent_unref(e);
}

void sb_policy_set_spend(struct sb_policy *p, enum sb_entity kind, const char *id,
                         int64_t spend_nano, int64_t next_reset_s)
{
    if (p == NULL || (unsigned)kind >= SB_ENT_COUNT || id == NULL)
        return;
    pthread_rwlock_rdlock(&p->lock);
    struct ent *e = table_find(&p->t[kind], kind, id);
    if (e != NULL) {
        pthread_mutex_lock(&p->money);
        e->m.spend = spend_nano > 0 ? spend_nano : 0;
        e->reset_at = next_reset_s > 0 ? next_reset_s : 0;
        pthread_mutex_unlock(&p->money);
    }
    pthread_rwlock_unlock(&p->lock);
}

int sb_policy_carry(struct sb_policy *p, enum sb_entity kind, const char *from, const char *to)
{
    if (p == NULL || (unsigned)kind >= SB_ENT_COUNT || from == NULL || to == NULL)
        return -1;
    int rc = -1;
    /* The read lock keeps both entities and their counter lists in place (counters are only
     * appended, under the write lock); the money mutex guards what is moved. */
    pthread_rwlock_rdlock(&p->lock);
    struct ent *f = table_find(&p->t[kind], kind, from);
    struct ent *t = table_find(&p->t[kind], kind, to);
    if (f != NULL && t != NULL && f != t) {
        pthread_mutex_lock(&p->money);
        t->m.spend = f->m.spend;
        t->m.pending = f->m.pending;
        for (struct mctr *tm = t->mctrs; tm != NULL; tm = tm->next) {
            struct mctr *fm = mctr_find(f, tm->model);
            if (fm == NULL || fm->period_s != tm->period_s)
                continue;
            tm->m.spend = fm->m.spend;
            tm->m.pending = fm->m.pending;
            tm->reset_at = fm->reset_at;
        }
        pthread_mutex_unlock(&p->money);
        rc = 0;
    }
    pthread_rwlock_unlock(&p->lock);
    return rc;
}

static void unpend(struct money *m, int64_t cost)
{
    m->pending = m->pending > cost ? m->pending - cost : 0;
}

void sb_policy_applied(struct sb_policy *p, const struct sb_spend_row *row)
{
    if (p == NULL || row == NULL || row->cost_nano <= 0)
        return;
    const char *ids[LV_CUSTOMER + 1] = {row->key_hash, row->team_id, row->user_id, row->end_user};
    pthread_rwlock_rdlock(&p->lock);
    pthread_mutex_lock(&p->money);
    for (int k = 0; k <= LV_CUSTOMER; k++) {
        if (ids[k][0] == '\0')
            continue;
        struct ent *e = table_find(&p->t[k], (enum sb_entity)k, ids[k]);
        if (e == NULL)
            continue;
        unpend(&e->m, row->cost_nano);
        struct mctr *mc = k == LV_KEY && row->model[0] != '\0' ? mctr_find(e, row->model) : NULL;
        if (mc != NULL)
            unpend(&mc->m, row->cost_nano);
    }
    pthread_mutex_unlock(&p->money);
    pthread_rwlock_unlock(&p->lock);
}

/* A model counter whose spend the database holds: one with a budget and no time_period (a
 * time_period is counted per process; the database keeps the key's per-model total). */
static bool mctr_shared(const struct mctr *mc)
{
    return mc->m.max >= 0 && mc->period_s == 0;
}

/* The ids of `kind` (every one, or those with a budget the database's totals matter to),
 * copied under the read lock and handed to fn after it is dropped. */
static void each_id(struct sb_policy *p, enum sb_entity kind, bool budgeted_only,
                    void (*fn)(void *ud, const char *id), void *ud)
{
    if (p == NULL || (unsigned)kind >= SB_ENT_COUNT || fn == NULL)
        return;
    /* Copied first and reported after the locks are dropped, as in sb_policy_due_resets. */
    char **ids = NULL;
    size_t n = 0, cap = 0;
    /* Budgets are configuration (written under the write lock): the read lock is enough,
     * and admissions, which need the money mutex, are not held up by a long table. */
    pthread_rwlock_rdlock(&p->lock);
    const struct table *t = &p->t[kind];
    for (size_t i = 0; i < t->nb; i++) {
        for (struct ent *e = t->b[i]; e != NULL; e = e->next) {
            bool has = !budgeted_only || e->m.max >= 0;
            for (struct mctr *mc = e->mctrs; !has && mc != NULL; mc = mc->next)
                has = mctr_shared(mc);
            if (!has)
                continue;
            if (n == cap) {
                size_t nc = cap ? cap * 2 : 64;
                char **v = realloc(ids, nc * sizeof(*v));
                if (v == NULL)
                    goto collected; /* the rest is synced on a later pass */
                ids = v;
                cap = nc;
            }
            if ((ids[n] = xstrdup(e->id)) == NULL)
                goto collected;
            n++;
        }
    }
collected:
    pthread_rwlock_unlock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        fn(ud, ids[i]);
        free(ids[i]);
    }
    free(ids);
}

void sb_policy_budgeted(struct sb_policy *p, enum sb_entity kind,
                        void (*fn)(void *ud, const char *id), void *ud)
{
    each_id(p, kind, true, fn, ud);
}

void sb_policy_each(struct sb_policy *p, enum sb_entity kind, void (*fn)(void *ud, const char *id),
                    void *ud)
{
    each_id(p, kind, false, fn, ud);
}

static int64_t add_money(int64_t a, int64_t b)
{
    return a > MONEY_MAX - b ? MONEY_MAX : a + b;
}

void sb_policy_sync_spend(struct sb_policy *p, enum sb_entity kind, const char *id,
                          int64_t db_spend_nano, const json_t *model_spend_nano)
{
    if (p == NULL || (unsigned)kind >= SB_ENT_COUNT || id == NULL)
        return;
    if (db_spend_nano < 0)
        db_spend_nano = 0;
    pthread_rwlock_rdlock(&p->lock);
    struct ent *e = table_find(&p->t[kind], kind, id);
    if (e != NULL) {
        pthread_mutex_lock(&p->money);
        e->m.spend = add_money(db_spend_nano, e->m.pending);
        for (struct mctr *mc = e->mctrs; kind == SB_ENT_KEY && mc != NULL; mc = mc->next) {
            if (!mctr_shared(mc))
                continue;
            json_int_t v = json_integer_value(json_object_get(model_spend_nano, mc->model));
            mc->m.spend = add_money(v > 0 ? (int64_t)v : 0, mc->m.pending);
        }
        pthread_mutex_unlock(&p->money);
    }
    pthread_rwlock_unlock(&p->lock);
}

int64_t sb_policy_pending(struct sb_policy *p, enum sb_entity kind, const char *id,
                          const char *model)
{
    if (p == NULL || (unsigned)kind >= SB_ENT_COUNT || id == NULL)
        return -1;
    int64_t v = -1;
    pthread_rwlock_rdlock(&p->lock);
    struct ent *e = table_find(&p->t[kind], kind, id);
    if (e != NULL) {
        pthread_mutex_lock(&p->money);
        struct mctr *mc = model != NULL ? mctr_find(e, model) : NULL;
        if (model == NULL)
            v = e->m.pending;
        else if (mc != NULL)
            v = mc->m.pending;
        pthread_mutex_unlock(&p->money);
    }
    pthread_rwlock_unlock(&p->lock);
    return v;
}

json_t *sb_policy_get(struct sb_policy *p, enum sb_entity kind, const char *id)
{
    if (p == NULL || (unsigned)kind >= SB_ENT_COUNT || id == NULL)
        return NULL;
    json_t *out = NULL;
    pthread_rwlock_rdlock(&p->lock);
    struct ent *e = table_find(&p->t[kind], kind, id);
    if (e != NULL)
        out = json_deep_copy(e->record);
    if (out != NULL) {
        pthread_mutex_lock(&p->money);
        int64_t spend = e->m.spend, reset_at = e->reset_at;
        pthread_mutex_unlock(&p->money);
        json_object_set_new(out, "spend", json_real((double)spend / NANO));
        if (reset_at > 0)
            json_object_set_new(out, "budget_reset_at", json_integer(reset_at));
    }
    pthread_rwlock_unlock(&p->lock);
    return out;
}

struct due {
    enum sb_entity kind;
    char *id;
    char *duration;
};

void sb_policy_due_resets(struct sb_policy *p, int64_t now_s,
                          void (*fn)(void *ud, enum sb_entity kind, const char *id,
                                     const char *budget_duration),
                          void *ud)
{
    if (p == NULL || fn == NULL)
        return;
    /* Collected first and reported after the lock is dropped, so fn may call back in
     * (sb_policy_set_spend, sb_policy_upsert) without deadlocking. */
    struct due *due = NULL;
    size_t n = 0, cap = 0;
    pthread_rwlock_rdlock(&p->lock);
    pthread_mutex_lock(&p->money);
    for (int k = 0; k < SB_ENT_COUNT; k++) {
        const struct table *t = &p->t[k];
        for (size_t i = 0; i < t->nb; i++) {
            for (struct ent *e = t->b[i]; e != NULL; e = e->next) {
                if (e->budget_duration == NULL || e->reset_at <= 0 || e->reset_at > now_s)
                    continue;
                if (n == cap) {
                    size_t nc = cap ? cap * 2 : 16;
                    struct due *d = realloc(due, nc * sizeof(*d));
                    if (d == NULL)
                        goto collected; /* report what fits; the rest is due next time */
                    due = d;
                    cap = nc;
                }
                due[n].kind = (enum sb_entity)k;
                due[n].id = xstrdup(e->id);
                due[n].duration = xstrdup(e->budget_duration);
                if (due[n].id == NULL || due[n].duration == NULL) {
                    free(due[n].id);
                    free(due[n].duration);
                    goto collected;
                }
                n++;
            }
        }
    }
collected:
    pthread_mutex_unlock(&p->money);
    pthread_rwlock_unlock(&p->lock);
    for (size_t i = 0; i < n; i++) {
        fn(ud, due[i].kind, due[i].id, due[i].duration);
        free(due[i].id);
        free(due[i].duration);
    }
    free(due);
}

static void shared_level(struct sb_shared_level *l, char kind, const char *a, const char *b,
                         int64_t rpm, int64_t tpm, int64_t par, const struct money *m,
                         int64_t period)
{
    l->kind = kind;
    snprintf(l->name, sizeof l->name, "%c:%s%s%s", kind, a, b ? ":" : "", b ? b : "");
    l->rpm_limit = rpm;
    l->tpm_limit = tpm;
    l->par_limit = par;
    l->max_budget = m->max;
    l->spend = m->spend;
    l->period = period;
}

size_t sb_policy_shared_levels(struct sb_policy *p, const struct sb_admission *a,
                               struct sb_shared_level out[SB_SHARED_LEVELS])
{
    const struct held *h = a->handle;
    if (h == NULL)
        return 0;
    static const char kinds[] = {'k', 't', 'u', 'c'};
    size_t n = 0;
    pthread_rwlock_rdlock(&p->lock);
    pthread_mutex_lock(&p->money);
    for (int i = LV_KEY; i <= LV_CUSTOMER; i++) {
        const struct ent *e = h->e[i];
        if (e == NULL)
            continue;
        bool limits = i != LV_CUSTOMER;
        int64_t rpm = limits ? e->rpm_limit : -1, tpm = limits ? e->tpm_limit : -1;
        int64_t par = limits ? e->par_limit : -1;
        if (rpm < 0 && tpm < 0 && par < 0 && e->m.max < 0)
            continue;
        /* The period marker grows at a budget reset and at an admin change (which may set
         * the spend): either makes the shared spend start again from this view. */
        shared_level(&out[n++], kinds[i], e->id, NULL, rpm, tpm, par, &e->m,
                     e->reset_at + e->updated_s);
    }
    const struct mctr *mc = h->mc;
    if (mc != NULL && (mc->rpm_limit >= 0 || mc->tpm_limit >= 0 || mc->m.max >= 0))
        shared_level(&out[n++], 'm', h->e[LV_KEY]->id, mc->model, mc->rpm_limit, mc->tpm_limit, -1,
                     &mc->m, mc->reset_at);
    pthread_mutex_unlock(&p->money);
    pthread_rwlock_unlock(&p->lock);
    return n;
}

int64_t sb_policy_reserved_total(struct sb_policy *p)
{
    pthread_mutex_lock(&p->money);
    int64_t v = p->reserved_total;
    pthread_mutex_unlock(&p->money);
    return v;
}

/* ---- admission ---- */

static void reset_admission(struct sb_admission *a, const struct sb_admit_req *req)
{
    memset(a, 0, sizeof(*a));
    a->max_output = req != NULL ? req->max_output : -1;
    a->limit_requests = a->remaining_requests = -1;
    a->limit_tokens = a->remaining_tokens = -1;
    a->reset_ms = -1;
}

static int refuse(struct sb_admission *a, int status, const char *type, const char *code,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static int refuse(struct sb_admission *a, int status, const char *type, const char *code,
                  const char *fmt, ...)
{
    a->status = status;
    a->type = type;
    a->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->message, sizeof(a->message), fmt, ap);
    va_end(ap);
    return status;
}

static const char *kind_word(char kind)
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

int sb_policy_refuse_rpm(struct sb_admission *a, char kind, int64_t limit, int64_t retry_s)
{
    a->retry_after_s = retry_s > 0 ? retry_s : 1;
    return refuse(a, 429, "rate_limit_error", "rate_limit_exceeded",
                  "Rate limit reached for %s. Limit of %" PRId64 " requests per minute.",
                  kind_word(kind), limit);
}

int sb_policy_refuse_tpm(struct sb_admission *a, char kind, int64_t limit, int64_t retry_s)
{
    a->retry_after_s = retry_s > 0 ? retry_s : 1;
    return refuse(a, 429, "rate_limit_error", "rate_limit_exceeded",
                  "Rate limit reached for %s. Limit of %" PRId64 " tokens per minute.",
                  kind_word(kind), limit);
}

int sb_policy_refuse_parallel(struct sb_admission *a, char kind, int64_t limit)
{
    a->retry_after_s = 1;
    return refuse(a, 429, "rate_limit_error", "rate_limit_exceeded",
                  "Max parallel request limit reached for %s. Hit limit of %" PRId64
                  " parallel requests.",
                  kind_word(kind), limit);
}

static void fmt_dollars(char *out, size_t cap, int64_t nano)
{
    snprintf(out, cap, "%.9g", (double)nano / NANO);
}

int sb_policy_refuse_budget(struct sb_admission *a, char kind, const char *id, int64_t spend_nano,
                            int64_t max_nano)
{
    const char *prefix = kind == 't'   ? "Team="
                         : kind == 'u' ? "User="
                         : kind == 'c' ? "End User="
                         : kind == 'm' ? "Model="
                                       : "";
    bool named = kind != 'k';
    char cur[48], max[48];
    fmt_dollars(cur, sizeof(cur), spend_nano);
    fmt_dollars(max, sizeof(max), max_nano);
    return refuse(a, 400, "budget_exceeded", "budget_exceeded",
                  "Budget has been exceeded! %s%s%sCurrent cost: %s, Max budget: %s", prefix,
                  named && id != NULL ? id : "", named ? " " : "", cur, max);
}

/* Finds and checks the key: fills a or refuses. Called with the read lock held. */
static struct ent *auth_locked(struct sb_policy *p, const char *key, size_t key_len,
                               const char *key_hash, int64_t now_ms, struct sb_admission *a)
{
    if (key == NULL || key_len == 0) {
        refuse(a, 401, "auth_error", "invalid_api_key",
               "Authentication Error, No api key passed in.");
        return NULL;
    }
    if (key_hash != NULL) /* sb_policy_admit checked its length (64) */
        memcpy(a->key_hash, key_hash, 65);
    else
        sb_policy_hash_key(key, key_len, a->key_hash);
    struct ent *k = table_find(&p->t[SB_ENT_KEY], SB_ENT_KEY, a->key_hash);
    if (k == NULL) {
        refuse(a, 401, "auth_error", "invalid_api_key",
               "Authentication Error, Invalid proxy server token passed. valid_token=None.");
        return NULL;
    }
    if (k->blocked) {
        refuse(a, 401, "auth_error", "key_blocked",
               "Authentication Error, Key is blocked. Update via `/key/unblock` if you're admin.");
        return NULL;
    }
    if (now_ms >= k->expires_ms) {
        const json_t *ex = json_object_get(k->record, "expires");
        refuse(a, 401, "auth_error", "key_expired",
               "Authentication Error - Expired Key. Key Expiry time %s",
               json_is_string(ex) ? json_string_value(ex) : "");
        return NULL;
    }
    sb_str_copy(a->team_id, sizeof(a->team_id), k->team_id);
    sb_str_copy(a->user_id, sizeof(a->user_id), k->user_id);
    a->admin = k->admin;
    if (!a->admin && k->user_id != NULL) {
        const struct ent *u = table_find(&p->t[SB_ENT_USER], SB_ENT_USER, k->user_id);
        a->admin = u != NULL && u->admin;
    }
    return k;
}

int sb_policy_authenticate(struct sb_policy *p, const char *key, size_t key_len, int64_t now_ms,
                           struct sb_admission *a)
{
    reset_admission(a, NULL);
    pthread_rwlock_rdlock(&p->lock);
    struct ent *k = auth_locked(p, key, key_len, NULL, now_ms, a);
    if (k != NULL && k->team_id != NULL) {
        const struct ent *t = table_find(&p->t[SB_ENT_TEAM], SB_ENT_TEAM, k->team_id);
        if (t != NULL && t->blocked)
            refuse(a, 401, "auth_error", "team_blocked",
                   "Authentication Error, Team=%s is blocked.", t->id);
    }
    pthread_rwlock_unlock(&p->lock);
    return a->status;
}

static bool in_group(const struct sb_policy *p, const char *model, const char *group)
{
    for (size_t i = 0; i < p->n_groups; i++)
        if (strcmp(p->groups[i].alias, model) == 0 && strcmp(p->groups[i].group, group) == 0)
            return true;
    return false;
}

/* An empty `models` allows everything, as do "all-proxy-models" (and, at the key, LiteLLM's
 * "all-team-models": the team's own list still applies), "*", a "prefix/" + "*" wildcard, the
 * alias itself, or an access group that holds the alias. */
static bool model_allowed(const struct sb_policy *p, const struct ent *e, const char *model)
{
    if (e == NULL || e->n_models == 0)
        return true;
    for (size_t i = 0; i < e->n_models; i++) {
        const char *m = e->models[i];
        size_t n = strlen(m);
        if (strcmp(m, ALL_MODELS) == 0 || strcmp(m, "*") == 0 || strcmp(m, model) == 0)
            return true;
        if (e->kind == SB_ENT_KEY && strcmp(m, ALL_TEAM_MODEL) == 0)
            return true;
        if (n >= 2 && m[n - 1] == '*' && m[n - 2] == '/' && strncmp(m, model, n - 1) == 0)
            return true;
        if (in_group(p, model, m))
            return true;
    }
    return false;
}

bool sb_policy_model_allowed(struct sb_policy *p, const char *key_hash, const char *model)
{
    pthread_rwlock_rdlock(&p->lock);
    const struct ent *k = table_find(&p->t[SB_ENT_KEY], SB_ENT_KEY, key_hash);
    bool ok = false;
    if (k != NULL) {
        const struct ent *t =
            k->team_id ? table_find(&p->t[SB_ENT_TEAM], SB_ENT_TEAM, k->team_id) : NULL;
        const struct ent *u =
            k->user_id ? table_find(&p->t[SB_ENT_USER], SB_ENT_USER, k->user_id) : NULL;
        ok = model_allowed(p, k, model) && model_allowed(p, t, model) && model_allowed(p, u, model);
    }
    pthread_rwlock_unlock(&p->lock);
    return ok;
}

static void held_free(struct held *h)
{
    for (int i = 0; i <= LV_CUSTOMER; i++)
        ent_unref(h->e[i]);
    free(h);
}

/* Undoes the parallel slots taken for held entities. */
static void parallel_release(struct held *h)
{
    for (int i = LV_KEY; i <= LV_USER; i++)
        if (h->e[i] != NULL)
            atomic_fetch_sub(&h->e[i]->inflight, 1);
}

/* The budget step, under the money mutex: reserve the worst case at every level with a
 * budget, or lower the output limit to what all of them can pay, or refuse. */
static int reserve_budget(struct sb_policy *p, const struct sb_admit_req *req, struct held *h,
                          struct sb_admission *a)
{
    int64_t now_s = req->now_ms / 1000;
    int64_t in_tokens = req->input_tokens > 0 ? req->input_tokens : 0;
    int64_t out_tokens = req->max_output >= 0 ? req->max_output : req->default_output;
    if (out_tokens < 0)
        out_tokens = 0;
    double price_out = req->price_out > 0 ? req->price_out : 0;
    int64_t in_cost = cost_up(in_tokens, req->price_in);
    int64_t worst = in_cost + cost_up(out_tokens, price_out);
    if (worst > MONEY_MAX)
        worst = MONEY_MAX;

    pthread_mutex_lock(&p->money);
    /* Per-model budget periods are aligned to the epoch (every instance agrees on them). */
    if (h->mc != NULL && h->mc->period_s > 0) {
        int64_t end = (now_s / h->mc->period_s + 1) * h->mc->period_s;
        if (h->mc->reset_at != 0 && now_s >= h->mc->reset_at)
            h->mc->m.spend = 0;
        if (h->mc->reset_at == 0 || now_s >= h->mc->reset_at)
            h->mc->reset_at = end;
    }
    int tight = -1;
    int64_t remaining = INT64_MAX;
    bool any = false;
    for (int i = 0; i < LV_COUNT; i++) {
        const struct money *m = h->lv[i];
        if (m == NULL || m->max < 0)
            continue;
        any = true;
        /* No price known: nothing to reserve, but a spent budget still refuses. */
        int64_t r = req->price_in < 0 ? m->max - m->spend : m->max - m->spend - m->reserved;
        if (r < remaining) {
            remaining = r;
            tight = i;
        }
    }
    int64_t reserve = worst;
    if (!any || req->price_in < 0) {
        reserve = 0;
        if (any && remaining <= 0)
            goto refused;
    } else if (remaining <= 0 && any) {
        goto refused; /* spent or wholly reserved: not even a free request may pass */
    } else if (remaining < worst) {
        if (!(price_out > 0) || remaining <= in_cost)
            goto refused;
        /* Compared as a double first: with a budget near MONEY_MAX and a client's max_tokens
         * near INT64_MAX the quotient can reach 2^63, which no int64_t holds. */
        double room = floor((double)(remaining - in_cost) / price_out);
        int64_t allowed = room >= (double)out_tokens ? out_tokens - 1 : (int64_t)room;
        reserve = in_cost + cost_up(allowed, price_out);
        while (allowed > 0 && reserve > remaining) {
            allowed--;
            reserve = in_cost + cost_up(allowed, price_out);
        }
        if (allowed < MIN_OUTPUT)
            goto refused;
        a->max_output = allowed;
        a->lowered = true;
    } else if (req->max_output < 0) {
        /* The reservation covers default_output tokens; the limit is sent so that the real
         * cost cannot pass it. */
        a->max_output = out_tokens;
    }
    for (int i = 0; i < LV_COUNT && reserve > 0; i++) {
        struct money *m = h->lv[i];
        if (m == NULL || m->max < 0)
            continue;
        m->reserved += reserve;
        h->reserved[i] = true;
        p->reserved_total += reserve;
    }
    h->reservation = reserve;
    a->reserved_nano = reserve;
    a->in_cost_nano = in_cost;
    a->price_out = price_out;
    pthread_mutex_unlock(&p->money);
    return 0;

refused:;
    const struct money *m = h->lv[tight];
    int64_t spend = m->spend, max = m->max;
    const char *who = "";
    if (tight == LV_TEAM || tight == LV_USER || tight == LV_CUSTOMER)
        who = h->e[tight]->id;
    else if (tight == LV_MODEL)
        who = h->mc->model;
    pthread_mutex_unlock(&p->money);
    return sb_policy_refuse_budget(a, level_kind[tight], who, spend, max);
}

int sb_policy_admit(struct sb_policy *p, const struct sb_admit_req *req, struct sb_admission *a)
{
    char hash[65] = "";
    if (req->key_hash != NULL && strlen(req->key_hash) == 64)
        memcpy(hash, req->key_hash, sizeof hash); /* before the reset: it may be a's own */
    reset_admission(a, req);
    const char *model = req->model != NULL ? req->model : "";
    pthread_rwlock_rdlock(&p->lock);
    struct ent *k = auth_locked(p, req->key, req->key_len, hash[0] ? hash : NULL, req->now_ms, a);
    if (k == NULL) {
        pthread_rwlock_unlock(&p->lock);
        return a->status;
    }
    struct ent *t = k->team_id ? table_find(&p->t[SB_ENT_TEAM], SB_ENT_TEAM, k->team_id) : NULL;
    struct ent *u = k->user_id ? table_find(&p->t[SB_ENT_USER], SB_ENT_USER, k->user_id) : NULL;
    struct ent *c = NULL;
    if (req->end_user != NULL && *req->end_user != '\0') {
        sb_str_copy(a->end_user, sizeof(a->end_user), req->end_user);
        c = table_find(&p->t[SB_ENT_CUSTOMER], SB_ENT_CUSTOMER, req->end_user);
    }
    if (t != NULL && t->blocked) {
        refuse(a, 401, "auth_error", "team_blocked", "Authentication Error, Team=%s is blocked.",
               t->id);
        goto out_unlock;
    }
    if (c != NULL && c->blocked) {
        refuse(a, 403, "permission_error", "customer_blocked",
               "Authentication Error - End User=%s is blocked.", c->id);
        goto out_unlock;
    }
    const char *who = !model_allowed(p, k, model)   ? "key"
                      : !model_allowed(p, t, model) ? "team"
                      : !model_allowed(p, u, model) ? "user"
                                                    : NULL;
    if (who != NULL) {
        refuse(a, 403, "permission_error", "model_not_allowed",
               "Authentication Error, %s not allowed to access model. Tried to access %s", who,
               model);
        goto out_unlock;
    }

    struct held *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        refuse(a, 500, "internal_error", "internal_error", "out of memory");
        goto out_unlock;
    }
    struct ent *es[] = {k, t, u, c};
    for (int i = 0; i <= LV_CUSTOMER; i++) {
        if (es[i] != NULL) {
            ent_ref(es[i]);
            h->e[i] = es[i];
            h->lv[i] = &es[i]->m;
        }
    }
    h->mc = mctr_find(k, model);
    if (h->mc != NULL)
        h->lv[LV_MODEL] = &h->mc->m;

    /* Parallel requests: every held key/team/user counts in flight, limited or not, so a
     * limit changed by an upsert meanwhile still releases exactly what was taken. */
    for (int i = LV_KEY; i <= LV_USER; i++) {
        struct ent *e = h->e[i];
        if (e == NULL)
            continue;
        int64_t n = atomic_fetch_add(&e->inflight, 1) + 1;
        if (e->par_limit >= 0 && n > e->par_limit) {
            for (int j = LV_KEY; j <= i; j++)
                if (h->e[j] != NULL)
                    atomic_fetch_sub(&h->e[j]->inflight, 1);
            sb_policy_refuse_parallel(a, level_kind[i], e->par_limit);
            held_free(h);
            goto out_unlock;
        }
    }

    /* Requests per minute: counted at each level; a refusal undoes the levels counted. */
    uint64_t win = window_of(req->now_ms);
    int64_t window_end = ((req->now_ms > 0 ? req->now_ms : 0) / MS_PER_WINDOW + 1) * MS_PER_WINDOW;
    int64_t until_end = window_end - req->now_ms;
    int64_t retry = (until_end + 999) / 1000;
    _Atomic uint64_t *rw[4] = {0};
    int64_t rl[4] = {-1, -1, -1, -1};
    static const char rkind[4] = {'k', 't', 'u', 'm'};
    for (int i = LV_KEY; i <= LV_USER; i++) {
        if (h->e[i] != NULL) {
            rw[i] = &h->e[i]->rpm;
            rl[i] = h->e[i]->rpm_limit;
        }
    }
    if (h->mc != NULL) {
        rw[3] = &h->mc->rpm;
        rl[3] = h->mc->rpm_limit;
    }
    uint64_t counted[4] = {0};
    int64_t count_after[4] = {0};
    bool took[4] = {false};
    for (int i = 0; i < 4; i++) {
        if (rw[i] == NULL)
            continue;
        if (!rpm_take(rw[i], rl[i], win, &counted[i], &count_after[i])) {
            for (int j = 0; j < i; j++)
                if (took[j])
                    rpm_undo(rw[j], counted[j]);
            parallel_release(h);
            sb_policy_refuse_rpm(a, rkind[i], rl[i], retry);
            held_free(h);
            goto out_unlock;
        }
        took[i] = true;
    }

    /* Tokens per minute: settled tokens of the current window. */
    _Atomic uint64_t *tw[4] = {0};
    int64_t tl[4] = {-1, -1, -1, -1};
    for (int i = LV_KEY; i <= LV_USER; i++) {
        if (h->e[i] != NULL) {
            tw[i] = &h->e[i]->tpm;
            tl[i] = h->e[i]->tpm_limit;
        }
    }
    if (h->mc != NULL) {
        tw[3] = &h->mc->tpm;
        tl[3] = h->mc->tpm_limit;
    }
    for (int i = 0; i < 4; i++) {
        if (tw[i] == NULL || tl[i] < 0 || window_count(tw[i], win) < tl[i])
            continue;
        for (int j = 0; j < 4; j++)
            if (took[j])
                rpm_undo(rw[j], counted[j]);
        parallel_release(h);
        sb_policy_refuse_tpm(a, rkind[i], tl[i], retry);
        held_free(h);
        goto out_unlock;
    }

    if (reserve_budget(p, req, h, a) != 0) {
        for (int j = 0; j < 4; j++)
            if (took[j])
                rpm_undo(rw[j], counted[j]);
        parallel_release(h);
        held_free(h);
        goto out_unlock;
    }

    /* x-ratelimit-*: the key's limits, else the team's. */
    int lr = rl[LV_KEY] >= 0 ? LV_KEY : (rl[LV_TEAM] >= 0 ? LV_TEAM : -1);
    int lt = tl[LV_KEY] >= 0 ? LV_KEY : (tl[LV_TEAM] >= 0 ? LV_TEAM : -1);
    if (lr >= 0) {
        a->limit_requests = rl[lr];
        a->remaining_requests = rl[lr] - count_after[lr] > 0 ? rl[lr] - count_after[lr] : 0;
    }
    if (lt >= 0) {
        int64_t used = window_count(tw[lt], win);
        a->limit_tokens = tl[lt];
        a->remaining_tokens = tl[lt] - used > 0 ? tl[lt] - used : 0;
    }
    if (lr >= 0 || lt >= 0)
        a->reset_ms = until_end;
    a->handle = h;
out_unlock:
    pthread_rwlock_unlock(&p->lock);
    return a->status;
}

static void finish(struct sb_policy *p, struct sb_admission *a, bool settle, int64_t cost,
                   int64_t tokens, int64_t now_ms)
{
    struct held *h = a->handle;
    if (h == NULL)
        return;
    a->handle = NULL;
    if (cost < 0)
        cost = 0;
    pthread_mutex_lock(&p->money);
    for (int i = 0; i < LV_COUNT; i++) {
        struct money *m = h->lv[i];
        if (m == NULL)
            continue;
        if (h->reserved[i]) {
            m->reserved -= h->reservation;
            p->reserved_total -= h->reservation;
        }
        if (settle) {
            m->spend = m->spend > MONEY_MAX - cost ? MONEY_MAX : m->spend + cost;
            m->pending = m->pending > MONEY_MAX - cost ? MONEY_MAX : m->pending + cost;
        }
    }
    pthread_mutex_unlock(&p->money);
    if (settle && tokens > 0) {
        uint64_t win = window_of(now_ms);
        for (int i = LV_KEY; i <= LV_USER; i++)
            if (h->e[i] != NULL)
                tpm_add(&h->e[i]->tpm, win, tokens);
        if (h->mc != NULL)
            tpm_add(&h->mc->tpm, win, tokens);
    }
    parallel_release(h);
    held_free(h);
}

void sb_policy_settle(struct sb_policy *p, struct sb_admission *a, int64_t cost_nano,
                      int64_t tokens, int64_t now_ms)
{
    finish(p, a, true, cost_nano, tokens, now_ms);
}

void sb_policy_release(struct sb_policy *p, struct sb_admission *a)
{
    finish(p, a, false, 0, 0, 0);
}

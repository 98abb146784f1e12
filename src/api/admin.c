/* The LiteLLM-compatible admin API: virtual keys, teams, users, end users (customers), spend
 * reports and the model list with prices.
 *
 * Every read and write runs on the store thread (sb_ledger_submit); a write that succeeds is
 * pushed into the policy from the store thread before the client gets its answer, so the next
 * request on any worker sees it. The plaintext of a key exists only on the worker that made it,
 * in the one response that shows it; the store and the policy only ever see its SHA-256 hex. */
#include "api/api.h"

#include "core/hex.h"
#include "core/log.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ID_MAX         128 /* team_id, user_id, end user ids (the admission's buffers) */
#define ALIAS_MAX      256
#define MODEL_MAX      256
#define LIST_MAX       1000 /* entries of a models / ids list in one request */
#define RESPONSE_MAX   (64u << 20)
#define PAGE_SIZE_MAX  1000
#define QUERY_VAL_MAX  512
#define KEY_RANDOM_LEN 32

enum op {
    OP_KEY_GENERATE,
    OP_KEY_UPDATE,
    OP_KEY_DELETE,
    OP_KEY_INFO,
    OP_KEY_LIST,
    OP_KEY_REGENERATE,
    OP_KEY_BLOCK,
    OP_KEY_UNBLOCK,
    OP_TEAM_NEW,
    OP_TEAM_UPDATE,
    OP_TEAM_DELETE,
    OP_TEAM_INFO,
    OP_TEAM_LIST,
    OP_TEAM_MEMBER_ADD,
    OP_TEAM_MEMBER_DELETE,
    OP_USER_NEW,
    OP_USER_UPDATE,
    OP_USER_DELETE,
    OP_USER_INFO,
    OP_USER_LIST,
    OP_CUSTOMER_NEW,
    OP_CUSTOMER_INFO,
    OP_CUSTOMER_DELETE,
    OP_SPEND_LOGS,
    OP_SPEND_KEYS,
    OP_SPEND_MODELS,
    OP_SPEND_TEAMS,
    OP_MODEL_INFO,
};

static const struct route {
    const char *path;
    bool get;
    enum op op;
} routes[] = {
    {"/key/generate", false, OP_KEY_GENERATE},
    {"/key/update", false, OP_KEY_UPDATE},
    {"/key/delete", false, OP_KEY_DELETE},
    {"/key/info", true, OP_KEY_INFO},
    {"/key/list", true, OP_KEY_LIST},
    {"/key/regenerate", false, OP_KEY_REGENERATE},
    {"/key/block", false, OP_KEY_BLOCK},
    {"/key/unblock", false, OP_KEY_UNBLOCK},
    {"/team/new", false, OP_TEAM_NEW},
    {"/team/update", false, OP_TEAM_UPDATE},
    {"/team/delete", false, OP_TEAM_DELETE},
    {"/team/info", true, OP_TEAM_INFO},
    {"/team/list", true, OP_TEAM_LIST},
    {"/team/member_add", false, OP_TEAM_MEMBER_ADD},
    {"/team/member_delete", false, OP_TEAM_MEMBER_DELETE},
    {"/user/new", false, OP_USER_NEW},
    {"/user/update", false, OP_USER_UPDATE},
    {"/user/delete", false, OP_USER_DELETE},
    {"/user/info", true, OP_USER_INFO},
    {"/user/list", true, OP_USER_LIST},
    {"/customer/new", false, OP_CUSTOMER_NEW},
    {"/customer/info", true, OP_CUSTOMER_INFO},
    {"/customer/delete", false, OP_CUSTOMER_DELETE},
    {"/spend/logs", true, OP_SPEND_LOGS},
    {"/global/spend/keys", true, OP_SPEND_KEYS},
    {"/global/spend/models", true, OP_SPEND_MODELS},
    {"/global/spend/teams", true, OP_SPEND_TEAMS},
    {"/model/info", true, OP_MODEL_INFO},
};

/* What a non-master admin may hand out: the intersection of its key's, team's and user's
 * limits. A record it creates or changes must stay inside them. */
struct rights {
    bool master;
    json_t *models; /* allowed names, or NULL: any */
    double max_budget;
    int64_t rpm, tpm, parallel; /* -1: unlimited */
    int64_t expires_s;          /* 0: never */
    char team_id[ID_MAX + 1];
    char user_id[ID_MAX + 1];
    char key_hash[65];
};

/* One admin request on its way through the store thread. Owned by the worker; the store thread
 * touches only the fields the job reads and writes (never `r`). */
struct job {
    struct sb_api_req *r; /* NULL once the client went away: done only frees */
    enum op op;
    struct rights rights;
    int64_t now_s;
    json_t *patch;         /* validated fields of the body */
    json_t *ids;           /* ids to delete / resolve */
    json_t *aliases;       /* key_aliases to delete */
    char id[ID_MAX + 1];   /* the team/user/customer concerned */
    char hash[65];         /* the key concerned (hash) */
    char new_hash[65];     /* generate / regenerate */
    char plaintext[96];    /* generate / regenerate: only in the response */
    char key_name[16];     /* "sk-...XXXX" */
    json_t *member;        /* member_add: [{user_id, role}] */
    size_t page, size;     /* lists */
    char filter_field[16]; /* key list: the column filter the store applies */
    char filter_value[QUERY_VAL_MAX + 1];
    char f_team[ID_MAX + 1], f_user[ID_MAX + 1], f_alias[ALIAS_MAX + 1];
    bool full; /* key list: whole records */
    struct sb_spend_filter spend;
    char s_key[65], s_user[ID_MAX + 1], s_team[ID_MAX + 1], s_rid[133];
    size_t limit;
    /* Filled on the store thread. */
    json_t *out;
    int status; /* an error to answer (404, 400, 403), else 0 */
    const char *type, *code, *param;
    char msg[400];
};

/* ------------------------------------------------------------------------------- helpers */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void iso8601(int64_t s, char out[32])
{
    time_t t = (time_t)s;
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "1970-01-01T00:00:00Z");
}

/* "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SS" with an optional "Z" or fraction; -1 if invalid. */
static int64_t parse_date_s(const char *s)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *end = strptime(s, "%Y-%m-%d", &tm);
    if (!end)
        return -1;
    if (*end == 'T' || *end == ' ') {
        end = strptime(end + 1, "%H:%M:%S", &tm);
        if (!end)
            return -1;
        if (*end == '.') {
            end++;
            while (isdigit((unsigned char)*end))
                end++;
        }
        if (*end == 'Z')
            end++;
        else if (strcmp(end, "+00:00") == 0)
            end += 6;
    }
    if (*end != '\0')
        return -1;
    time_t t = timegm(&tm);
    return t == (time_t)-1 ? -1 : (int64_t)t;
}

/* The ISO 8601 "expires" of a record in Unix seconds; 0 when none or unreadable. */
static int64_t record_expires(const json_t *rec)
{
    const char *e = json_string_value(json_object_get(rec, "expires"));
    if (!e)
        return 0;
    int64_t s = parse_date_s(e);
    return s < 0 ? 0 : s;
}

static bool is_hash(const char *s)
{
    size_t n = strlen(s);
    if (n != 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return false;
    return true;
}

/* A key given as its plaintext ("sk-...") or its hash, as the hash. */
static bool key_to_hash(const char *s, size_t n, char out[65])
{
    if (n == 0 || n > 512)
        return false;
    if (n == 64 && memchr(s, '\0', n) == NULL) {
        char tmp[65];
        memcpy(tmp, s, 64);
        tmp[64] = '\0';
        if (is_hash(tmp)) {
            memcpy(out, tmp, 65);
            return true;
        }
    }
    sb_policy_hash_key(s, n, out);
    return true;
}

static bool str_ok(const json_t *v, size_t max)
{
    if (!json_is_string(v))
        return false;
    size_t n = json_string_length(v);
    return n > 0 && n <= max && strlen(json_string_value(v)) == n;
}

static double money_of(const json_t *v)
{
    return json_is_number(v) ? json_number_value(v) : -1;
}

static int64_t count_of(const json_t *v)
{
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

static void random_hex(char *out, size_t bytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char b[32];
    if (bytes > sizeof b)
        bytes = sizeof b;
    if (RAND_bytes(b, (int)bytes) != 1)
        abort(); /* no randomness: nothing safe to hand out */
    for (size_t i = 0; i < bytes; i++) {
        out[2 * i] = hex[b[i] >> 4];
        out[2 * i + 1] = hex[b[i] & 15];
    }
    out[2 * bytes] = '\0';
}

/* "sk-" + base64url (no padding) of 32 random bytes: 46 characters. */
static void new_key(char out[96])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char b[KEY_RANDOM_LEN + 2];
    if (RAND_bytes(b, KEY_RANDOM_LEN) != 1)
        abort();
    b[KEY_RANDOM_LEN] = b[KEY_RANDOM_LEN + 1] = 0;
    size_t o = 0;
    memcpy(out, "sk-", 3);
    o = 3;
    for (size_t i = 0; i < KEY_RANDOM_LEN; i += 3) {
        uint32_t v = (uint32_t)b[i] << 16 | (uint32_t)b[i + 1] << 8 | b[i + 2];
        size_t chars = KEY_RANDOM_LEN - i >= 3 ? 4 : (KEY_RANDOM_LEN - i) + 1;
        for (size_t c = 0; c < chars; c++)
            out[o++] = b64[(v >> (18 - 6 * c)) & 63];
    }
    out[o] = '\0';
    OPENSSL_cleanse(b, sizeof b);
}

static void key_name_of(const char *key, char out[16])
{
    size_t n = strlen(key), tail = n >= 4 ? 4 : n;
    memcpy(out, "sk-...", 6);
    memcpy(out + 6, key + n - tail, tail);
    out[6 + tail] = '\0';
}

static void set_err(struct job *j, int status, const char *type, const char *code,
                    const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
static void set_err(struct job *j, int status, const char *type, const char *code,
                    const char *param, const char *fmt, ...)
{
    j->status = status;
    j->type = type;
    j->code = code;
    j->param = param;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->msg, sizeof j->msg, fmt, ap);
    va_end(ap);
}

#define BAD(j, param, ...)                                                                         \
    set_err(j, 400, "invalid_request_error", "invalid_field", param, __VA_ARGS__)
#define NOT_FOUND(j, ...) set_err(j, 404, "invalid_request_error", "not_found", NULL, __VA_ARGS__)
#define FORBID(j, ...)                                                                             \
    set_err(j, 403, "permission_error", "exceeds_creator_rights", NULL, __VA_ARGS__)

/* An id from input, clipped and stripped of quotes for an error message. */
static const char *shown(const char *s, char out[72])
{
    size_t o = 0;
    for (; *s && o < 64; s++)
        out[o++] = (*s < 0x20 || *s == '"' || *s == '\\' || (unsigned char)*s >= 0x7f) ? '?' : *s;
    if (*s)
        out[o++] = '.', out[o++] = '.', out[o++] = '.';
    out[o] = '\0';
    return out;
}

/* --------------------------------------------------------------------- field validation */

enum ftype {
    FT_STR,      /* string (max: len) */
    FT_STR_LIST, /* array of strings */
    FT_MONEY,    /* non-negative number (dollars) */
    FT_COUNT,    /* non-negative integer */
    FT_OBJ,      /* any object */
    FT_BOOL,
    FT_DURATION, /* "30d" ... */
    FT_ROLE,
    FT_INT_MAP,    /* {name: non-negative integer} */
    FT_BUDGET_MAP, /* {name: number | {budget_limit, time_period}} */
    FT_MEMBERS,    /* [{user_id, role}] */
};

struct field {
    const char *name;
    enum ftype t;
    size_t max;
};

static const struct field key_fields[] = {
    {"key_alias", FT_STR, ALIAS_MAX},
    {"duration", FT_DURATION, 0},
    {"models", FT_STR_LIST, MODEL_MAX},
    {"max_budget", FT_MONEY, 0},
    {"soft_budget", FT_MONEY, 0},
    {"budget_duration", FT_DURATION, 0},
    {"rpm_limit", FT_COUNT, 0},
    {"tpm_limit", FT_COUNT, 0},
    {"max_parallel_requests", FT_COUNT, 0},
    {"model_max_budget", FT_BUDGET_MAP, 0},
    {"model_rpm_limit", FT_INT_MAP, 0},
    {"model_tpm_limit", FT_INT_MAP, 0},
    {"metadata", FT_OBJ, 0},
    {"team_id", FT_STR, ID_MAX},
    {"user_id", FT_STR, ID_MAX},
    {"blocked", FT_BOOL, 0},
    {"aliases", FT_OBJ, 0},
    {"permissions", FT_OBJ, 0},
    {"user_role", FT_ROLE, 0},
};

static const struct field team_fields[] = {
    {"team_alias", FT_STR, ALIAS_MAX},
    {"models", FT_STR_LIST, MODEL_MAX},
    {"max_budget", FT_MONEY, 0},
    {"budget_duration", FT_DURATION, 0},
    {"rpm_limit", FT_COUNT, 0},
    {"tpm_limit", FT_COUNT, 0},
    {"max_parallel_requests", FT_COUNT, 0},
    {"blocked", FT_BOOL, 0},
    {"members_with_roles", FT_MEMBERS, 0},
    {"metadata", FT_OBJ, 0},
};

static const struct field user_fields[] = {
    {"user_email", FT_STR, ALIAS_MAX},
    {"user_alias", FT_STR, ALIAS_MAX},
    {"user_role", FT_ROLE, 0},
    {"models", FT_STR_LIST, MODEL_MAX},
    {"max_budget", FT_MONEY, 0},
    {"budget_duration", FT_DURATION, 0},
    {"rpm_limit", FT_COUNT, 0},
    {"tpm_limit", FT_COUNT, 0},
    {"max_parallel_requests", FT_COUNT, 0},
    {"teams", FT_STR_LIST, ID_MAX},
    {"metadata", FT_OBJ, 0},
};

static const struct field customer_fields[] = {
    {"alias", FT_STR, ALIAS_MAX},
    {"max_budget", FT_MONEY, 0},
    {"budget_duration", FT_DURATION, 0},
    {"blocked", FT_BOOL, 0},
};

static const char *const roles[] = {"proxy_admin",
                                    "proxy_admin_viewer",
                                    "internal_user",
                                    "internal_user_viewer",
                                    "team",
                                    "customer",
                                    NULL};

static bool valid_member(const json_t *m, char *msg, size_t msg_len)
{
    if (!json_is_object(m)) {
        snprintf(msg, msg_len, "each member must be an object {\"user_id\", \"role\"}");
        return false;
    }
    const json_t *uid = json_object_get(m, "user_id");
    const json_t *role = json_object_get(m, "role");
    if (!str_ok(uid, ID_MAX)) {
        snprintf(msg, msg_len, "member.user_id must be a non-empty string of at most %d bytes",
                 ID_MAX);
        return false;
    }
    if (role && !json_is_null(role) &&
        !(json_is_string(role) && (strcmp(json_string_value(role), "admin") == 0 ||
                                   strcmp(json_string_value(role), "user") == 0))) {
        snprintf(msg, msg_len, "member.role must be \"admin\" or \"user\"");
        return false;
    }
    return true;
}

/* Checks the type of one field; false with a message naming it. */
static bool check_field(const struct field *f, const json_t *v, char *msg, size_t msg_len)
{
    if (json_is_null(v) && f->t != FT_BOOL && f->t != FT_MEMBERS)
        return true; /* null clears the field */
    switch (f->t) {
    case FT_STR:
        if (str_ok(v, f->max))
            return true;
        snprintf(msg, msg_len, "%s must be a non-empty string of at most %zu bytes", f->name,
                 f->max);
        return false;
    case FT_STR_LIST: {
        if (!json_is_array(v) || json_array_size(v) > LIST_MAX) {
            snprintf(msg, msg_len, "%s must be an array of at most %d strings", f->name, LIST_MAX);
            return false;
        }
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e)
        {
            if (!str_ok(e, f->max)) {
                snprintf(msg, msg_len, "%s[%zu] must be a non-empty string of at most %zu bytes",
                         f->name, i, f->max);
                return false;
            }
        }
        return true;
    }
    case FT_MONEY:
        if (json_is_number(v) && json_number_value(v) >= 0 && json_number_value(v) <= 1e12)
            return true;
        snprintf(msg, msg_len, "%s must be a number of dollars between 0 and 1e12", f->name);
        return false;
    case FT_COUNT:
        if (json_is_integer(v) && json_integer_value(v) >= 0)
            return true;
        snprintf(msg, msg_len, "%s must be a non-negative integer", f->name);
        return false;
    case FT_OBJ:
        if (json_is_object(v))
            return true;
        snprintf(msg, msg_len, "%s must be an object", f->name);
        return false;
    case FT_BOOL:
        if (json_is_boolean(v))
            return true;
        snprintf(msg, msg_len, "%s must be true or false", f->name);
        return false;
    case FT_DURATION:
        if (json_is_string(v) && json_string_length(v) < 32 &&
            strlen(json_string_value(v)) == json_string_length(v) &&
            sb_policy_duration_s(json_string_value(v)) > 0)
            return true;
        snprintf(
            msg, msg_len,
            "%s must be a duration such as \"30s\", \"30m\", \"24h\", \"30d\", \"1w\", \"1mo\"",
            f->name);
        return false;
    case FT_ROLE:
        if (json_is_string(v))
            for (const char *const *r = roles; *r; r++)
                if (strcmp(json_string_value(v), *r) == 0)
                    return true;
        snprintf(msg, msg_len,
                 "%s must be one of proxy_admin, proxy_admin_viewer, internal_user, "
                 "internal_user_viewer, team, customer",
                 f->name);
        return false;
    case FT_INT_MAP:
    case FT_BUDGET_MAP: {
        if (!json_is_object(v) || json_object_size(v) > LIST_MAX) {
            snprintf(msg, msg_len, "%s must be an object {model: value}", f->name);
            return false;
        }
        const char *k;
        const json_t *e;
        json_object_foreach((json_t *)v, k, e)
        {
            bool ok;
            if (f->t == FT_INT_MAP) {
                ok = json_is_integer(e) && json_integer_value(e) >= 0;
            } else if (json_is_object(e)) {
                const json_t *bl = json_object_get(e, "budget_limit");
                const json_t *tp = json_object_get(e, "time_period");
                ok = json_is_number(bl) && json_number_value(bl) >= 0 &&
                     (!tp || json_is_null(tp) ||
                      (json_is_string(tp) && sb_policy_duration_s(json_string_value(tp)) > 0));
            } else {
                ok = json_is_number(e) && json_number_value(e) >= 0;
            }
            if (!ok || strlen(k) > MODEL_MAX || strlen(k) == 0) {
                snprintf(msg, msg_len, "%s: the value for a model is not %s", f->name,
                         f->t == FT_INT_MAP
                             ? "a non-negative integer"
                             : "a budget (a number, or {budget_limit, time_period})");
                return false;
            }
        }
        return true;
    }
    case FT_MEMBERS: {
        if (!json_is_array(v) || json_array_size(v) > LIST_MAX) {
            snprintf(msg, msg_len, "%s must be an array of {\"user_id\", \"role\"}", f->name);
            return false;
        }
        size_t i;
        const json_t *e;
        json_array_foreach(v, i, e)
        {
            if (!valid_member(e, msg, msg_len))
                return false;
        }
        return true;
    }
    }
    return false;
}

/* Copies the known fields of `body` into a new object after checking their types. Unknown
 * fields are ignored, as LiteLLM's API ignores what it does not know. */
static json_t *validate(struct job *j, const json_t *body, const struct field *fields, size_t n)
{
    json_t *patch = json_object();
    if (!patch)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_object_get(body, fields[i].name);
        if (!v)
            continue;
        char msg[320];
        if (!check_field(&fields[i], v, msg, sizeof msg)) {
            BAD(j, fields[i].name, "Invalid %s: %s.", fields[i].name, msg);
            json_decref(patch);
            return NULL;
        }
        json_object_set_new(patch, fields[i].name, json_deep_copy(v));
    }
    return patch;
}

/* Turns the patch's duration fields into what the record holds: expires (ISO 8601) from
 * duration, budget_reset_at (Unix s) from budget_duration. */
static void apply_durations(json_t *patch, int64_t now_s)
{
    json_t *d = json_object_get(patch, "duration");
    if (d) {
        if (json_is_string(d)) {
            char iso[32];
            iso8601(now_s + sb_policy_duration_s(json_string_value(d)), iso);
            json_object_set_new(patch, "expires", json_string(iso));
        } else {
            json_object_set_new(patch, "expires", json_null());
        }
        json_object_del(patch, "duration");
    }
    json_t *bd = json_object_get(patch, "budget_duration");
    if (bd) {
        if (json_is_string(bd))
            json_object_set_new(patch, "budget_reset_at",
                                json_integer(now_s + sb_policy_duration_s(json_string_value(bd))));
        else
            json_object_del(patch, "budget_reset_at");
    }
}

/* Merges a patch into a record: null removes a field for budget_reset_at, else is stored. */
static void merge(json_t *rec, const json_t *patch)
{
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)patch, k, v)
    {
        json_object_set(rec, k, v);
    }
    if (json_object_get(patch, "budget_duration") &&
        json_is_null(json_object_get(patch, "budget_duration")))
        json_object_del(rec, "budget_reset_at");
}

/* ------------------------------------------------------------------------------- rights */

static bool list_has(const json_t *list, const char *s)
{
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e)
    {
        if (json_is_string(e) && strcmp(json_string_value(e), s) == 0)
            return true;
    }
    return false;
}

static bool unrestricted(const json_t *models)
{
    return !json_is_array(models) || json_array_size(models) == 0 ||
           list_has(models, "all-proxy-models");
}

static void narrow_models(struct rights *rt, const json_t *models)
{
    if (unrestricted(models))
        return;
    if (!rt->models) {
        rt->models = json_deep_copy(models);
        return;
    }
    json_t *keep = json_array();
    size_t i;
    const json_t *e;
    json_array_foreach(rt->models, i, e)
    {
        if (json_is_string(e) && list_has(models, json_string_value(e)))
            json_array_append(keep, (json_t *)e);
    }
    json_decref(rt->models);
    rt->models = keep;
}

static void narrow(struct rights *rt, const json_t *rec)
{
    if (!rec)
        return;
    narrow_models(rt, json_object_get(rec, "models"));
    double b = money_of(json_object_get(rec, "max_budget"));
    if (b >= 0 && (rt->max_budget < 0 || b < rt->max_budget))
        rt->max_budget = b;
    int64_t v;
    if ((v = count_of(json_object_get(rec, "rpm_limit"))) >= 0 && (rt->rpm < 0 || v < rt->rpm))
        rt->rpm = v;
    if ((v = count_of(json_object_get(rec, "tpm_limit"))) >= 0 && (rt->tpm < 0 || v < rt->tpm))
        rt->tpm = v;
    if ((v = count_of(json_object_get(rec, "max_parallel_requests"))) >= 0 &&
        (rt->parallel < 0 || v < rt->parallel))
        rt->parallel = v;
}

static void rights_init(struct rights *rt, struct sb_policy *p, const struct sb_admission *a)
{
    memset(rt, 0, sizeof *rt);
    rt->max_budget = -1;
    rt->rpm = rt->tpm = rt->parallel = -1;
    if (!a) {
        rt->master = true;
        return;
    }
    memcpy(rt->key_hash, a->key_hash, sizeof rt->key_hash);
    memcpy(rt->team_id, a->team_id, sizeof rt->team_id);
    memcpy(rt->user_id, a->user_id, sizeof rt->user_id);
    json_t *k = sb_policy_get(p, SB_ENT_KEY, a->key_hash);
    narrow(rt, k);
    rt->expires_s = record_expires(k);
    json_decref(k);
    if (a->team_id[0]) {
        json_t *t = sb_policy_get(p, SB_ENT_TEAM, a->team_id);
        narrow(rt, t);
        json_decref(t);
    }
    if (a->user_id[0]) {
        json_t *u = sb_policy_get(p, SB_ENT_USER, a->user_id);
        narrow(rt, u);
        json_decref(u);
    }
}

/* A record a non-master admin writes must give no more than the admin has. */
static bool within_rights(struct job *j, enum sb_entity kind, const json_t *rec)
{
    const struct rights *rt = &j->rights;
    if (rt->master)
        return true;
    const char *role = json_string_value(json_object_get(rec, "user_role"));
    if (role && strcmp(role, "proxy_admin") == 0) {
        FORBID(j, "Only the master key can give the proxy_admin role.");
        return false;
    }
    if (kind == SB_ENT_CUSTOMER)
        return true; /* an end user's budget limits only requests that name it */
    const json_t *models = json_object_get(rec, "models");
    if (rt->models) {
        if (unrestricted(models)) {
            FORBID(j, "You may only grant the models you can use yourself; list them in "
                      "'models'.");
            return false;
        }
        size_t i;
        const json_t *e;
        json_array_foreach(models, i, e)
        {
            char s[72];
            if (!list_has(rt->models, json_string_value(e))) {
                FORBID(j, "You cannot grant the model '%s': you may not use it yourself.",
                       shown(json_string_value(e), s));
                return false;
            }
        }
    }
    double b = money_of(json_object_get(rec, "max_budget"));
    if (rt->max_budget >= 0 && (b < 0 || b > rt->max_budget)) {
        FORBID(j, "max_budget must be set and at most your own (%.6f).", rt->max_budget);
        return false;
    }
    static const struct {
        const char *name;
        size_t off;
    } lim[] = {{"rpm_limit", offsetof(struct rights, rpm)},
               {"tpm_limit", offsetof(struct rights, tpm)},
               {"max_parallel_requests", offsetof(struct rights, parallel)}};
    for (size_t i = 0; i < sizeof lim / sizeof lim[0]; i++) {
        int64_t mine;
        memcpy(&mine, (const char *)rt + lim[i].off, sizeof mine);
        int64_t v = count_of(json_object_get(rec, lim[i].name));
        if (mine >= 0 && (v < 0 || v > mine)) {
            FORBID(j, "%s must be set and at most your own (%lld).", lim[i].name, (long long)mine);
            return false;
        }
    }
    if (kind == SB_ENT_KEY) {
        const char *team = json_string_value(json_object_get(rec, "team_id"));
        const char *user = json_string_value(json_object_get(rec, "user_id"));
        if (rt->team_id[0] && (!team || strcmp(team, rt->team_id) != 0)) {
            FORBID(j, "A key you create must belong to your own team.");
            return false;
        }
        if (rt->user_id[0] && (!user || strcmp(user, rt->user_id) != 0)) {
            FORBID(j, "A key you create must belong to your own user.");
            return false;
        }
        int64_t exp = record_expires(rec);
        if (rt->expires_s && (exp == 0 || exp > rt->expires_s)) {
            FORBID(j, "A key you create cannot outlive your own key; set a shorter duration.");
            return false;
        }
    }
    return true;
}

/* ------------------------------------------------------------------------- store jobs */

/* A committed record made visible to every worker. The fields were checked before the write,
 * so a refusal here means the policy and the API disagree on a record's shape: say so. */
static void publish(struct sb_policy *p, enum sb_entity kind, const char *id, const json_t *rec,
                    bool take_spend)
{
    if (sb_policy_upsert(p, kind, id, rec, take_spend) != 0)
        sb_warn("admin: the policy refused a committed %s record; it takes effect at restart",
                kind == SB_ENT_KEY    ? "key"
                : kind == SB_ENT_TEAM ? "team"
                : kind == SB_ENT_USER ? "user"
                                      : "customer");
}

static int get_or_404(struct sb_store *s, struct job *j, enum sb_entity kind, const char *id,
                      const char *what, json_t **out)
{
    int rc = sb_store_get(s, kind, id, out);
    if (rc == SB_STORE_E_NOT_FOUND) {
        char sh[72];
        NOT_FOUND(j, "%s '%s' not found.", what, kind == SB_ENT_KEY ? "(hidden)" : shown(id, sh));
    }
    return rc;
}

/* A key record for a response: spend as dollars is already there; the token is its hash. */
static json_t *key_view(const json_t *rec)
{
    return json_deep_copy(rec);
}

static int team_exists(struct sb_store *s, struct job *j, const json_t *rec)
{
    const char *team = json_string_value(json_object_get(rec, "team_id"));
    if (!team)
        return 0;
    json_t *t = NULL;
    int rc = get_or_404(s, j, SB_ENT_TEAM, team, "Team", &t);
    json_decref(t);
    return rc;
}

static int alias_taken(struct sb_store *s, struct job *j, const json_t *rec, const char *self)
{
    const char *alias = json_string_value(json_object_get(rec, "key_alias"));
    if (!alias)
        return 0;
    json_t *list = NULL;
    int rc = sb_store_list(s, SB_ENT_KEY, "key_alias", alias, 0, 2, &list);
    if (rc != 0)
        return rc;
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        const char *tok = json_string_value(json_object_get(e, "token"));
        if (!self || !tok || strcmp(tok, self) != 0) {
            char sh[72];
            BAD(j, "key_alias", "A key with key_alias '%s' already exists.", shown(alias, sh));
            break;
        }
    }
    json_decref(list);
    return 0;
}

static int job_key_generate(struct sb_store *s, struct sb_policy *p, struct job *j)
{
    json_t *rec = j->patch;
    int rc = team_exists(s, j, rec);
    if (rc != 0 || j->status)
        return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
    if ((rc = alias_taken(s, j, rec, NULL)) != 0 || j->status)
        return rc;
    rc = sb_store_put(s, SB_ENT_KEY, j->new_hash, rec, true);
    if (rc == SB_STORE_E_EXISTS) {
        BAD(j, "key", "That key already exists; choose another value.");
        return 0;
    }
    if (rc != 0)
        return rc;
    publish(p, SB_ENT_KEY, j->new_hash, rec, true);
    j->out = key_view(rec);
    return 0;
}

static int job_key_update(struct sb_store *s, struct sb_policy *p, struct job *j)
{
    json_t *rec = NULL;
    int rc = get_or_404(s, j, SB_ENT_KEY, j->hash, "Key", &rec);
    if (rc != 0)
        return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
    merge(rec, j->patch);
    json_object_del(rec, "spend");
    char iso[32];
    iso8601(j->now_s, iso);
    json_object_set_new(rec, "updated_at", json_string(iso));
    if ((rc = team_exists(s, j, rec)) != 0 || j->status)
        goto out;
    if ((rc = alias_taken(s, j, rec, j->hash)) != 0 || j->status)
        goto out;
    if (!within_rights(j, SB_ENT_KEY, rec))
        goto out;
    if ((rc = sb_store_put(s, SB_ENT_KEY, j->hash, rec, false)) != 0)
        goto out;
    publish(p, SB_ENT_KEY, j->hash, rec, false);
    json_decref(rec);
    rc = sb_store_get(s, SB_ENT_KEY, j->hash, &rec);
    if (rc == 0)
        j->out = key_view(rec);
out:
    json_decref(rec);
    return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
}

/* The hashes of j->ids (keys or hashes) and of the keys named by j->aliases; 404 when one is
 * unknown. */
static int resolve_keys(struct sb_store *s, struct job *j, json_t *hashes)
{
    size_t i;
    json_t *e;
    json_array_foreach(j->ids, i, e)
    {
        json_t *rec = NULL;
        const char *h = json_string_value(e);
        int rc = sb_store_get(s, SB_ENT_KEY, h, &rec);
        json_decref(rec);
        if (rc == SB_STORE_E_NOT_FOUND) {
            NOT_FOUND(j, "Key number %zu of 'keys' not found.", i + 1);
            return 0;
        }
        if (rc != 0)
            return rc;
        json_array_append(hashes, e);
    }
    json_array_foreach(j->aliases, i, e)
    {
        json_t *list = NULL;
        int rc = sb_store_list(s, SB_ENT_KEY, "key_alias", json_string_value(e), 0, 0, &list);
        if (rc != 0)
            return rc;
        if (json_array_size(list) == 0) {
            char sh[72];
            NOT_FOUND(j, "No key with key_alias '%s'.", shown(json_string_value(e), sh));
            json_decref(list);
            return 0;
        }
        size_t k;
        json_t *r;
        json_array_foreach(list, k, r)
        {
            json_t *tok = json_object_get(r, "token");
            if (json_is_string(tok))
                json_array_append(hashes, tok);
        }
        json_decref(list);
    }
    return 0;
}

static int delete_keys(struct sb_store *s, struct sb_policy *p, json_t *hashes, json_t *done)
{
    size_t i;
    json_t *e;
    json_array_foreach(hashes, i, e)
    {
        int rc = sb_store_delete(s, SB_ENT_KEY, json_string_value(e));
        if (rc != 0 && rc != SB_STORE_E_NOT_FOUND)
            return rc;
        sb_policy_remove(p, SB_ENT_KEY, json_string_value(e));
        if (done && rc == 0)
            json_array_append(done, e);
    }
    return 0;
}

static int job_key_delete(struct sb_store *s, struct sb_policy *p, struct job *j)
{
    json_t *hashes = json_array();
    json_t *deleted = json_array();
    int rc = resolve_keys(s, j, hashes);
    if (rc == 0 && !j->status)
        rc = delete_keys(s, p, hashes, deleted);
    if (rc == 0 && !j->status)
        j->out = json_pack("{s:O}", "deleted_keys", deleted);
    json_decref(hashes);
    json_decref(deleted);
    return rc;
}

static int job_key_info(struct sb_store *s, struct sb_policy *p, struct job *j)
{
    (void)p;
    json_t *rec = NULL;
    int rc = get_or_404(s, j, SB_ENT_KEY, j->hash, "Key", &rec);
    if (rc == 0)
        j->out = json_pack("{s:s,s:o}", "key", j->hash, "info", key_view(rec));
    json_decref(rec);
    return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
}

static bool field_is(const json_t *rec, const char *name, const char *want)
{
    if (!want[0])
        return true;
    const char *v = json_string_value(json_object_get(rec, name));
    return v && strcmp(v, want) == 0;
}

static int job_key_list(struct sb_store *s, struct sb_policy *p, struct job *j)
{
    (void)p;
    json_t *all = NULL;
    int rc = sb_store_list(s, SB_ENT_KEY, j->filter_field[0] ? j->filter_field : NULL,
                           j->filter_value, 0, 0, &all);
    if (rc != 0)
        return rc;
    json_t *keys = json_array();
    size_t total = 0, first = (j->page - 1) * j->size;
    size_t i;
    json_t *e;
    json_array_foreach(all, i, e)
    {
        if (!field_is(e, "team_id", j->f_team) || !field_is(e, "user_id", j->f_user) ||
            !field_is(e, "key_alias", j->f_alias))
            continue;
        if (total >= first && total < first + j->size) {
            if (j->full)
                json_array_append_new(keys, key_view(e));
            else
                json_array_append(keys, json_object_get(e, "token"));
        }
        total++;
    }
    json_decref(all);
    j->out = json_pack("{s:o,s:I,s:I,s:I}", "keys", keys, "total_count", (json_int_t)total,
                       "current_page", (json_int_t)j->page, "total_pages",
                       (json_int_t)((total + j->size - 1) / j->size));
    return 0;
}

/* LiteLLM regenerates a key by changing its token in place, so the key keeps its spend: a new
 * value must be no way to reset a budget. Here the record moves to the new hash instead: it is
 * created there, the old hash's running and per-model spend are carried to it in the store,
 * and only then is the old record deleted (which drops the old per-model rows). In memory the
 * new entity takes over the old one's spend and pending (sb_policy_carry), so spend = database
 * total + pending holds while rows settled under the old hash are still being committed. Rate
 * windows (RPM, TPM) start fresh on the new entity: they are per minute and belong to the
 * value that was used. Memory changes only once the store has all of it; any store failure
 * removes the new record again and leaves the old key as it was. */
static int job_key_regenerate(struct sb_store *s, struct sb_policy *p, struct job *j)
{
    json_t *rec = NULL, *stored = NULL;
    int rc = get_or_404(s, j, SB_ENT_KEY, j->hash, "Key", &rec);
    if (rc != 0)
        return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
    char iso[32];
    iso8601(j->now_s, iso);
    json_object_set_new(rec, "token", json_string(j->new_hash));
    json_object_set_new(rec, "key_name", json_string(j->key_name));
    json_object_set_new(rec, "updated_at", json_string(iso));
    if (j->patch)
        merge(rec, j->patch);
    if (!within_rights(j, SB_ENT_KEY, rec))
        goto out;
    rc = sb_store_put(s, SB_ENT_KEY, j->new_hash, rec, true);
    if (rc != 0)
        goto out;
    rc = sb_store_spend_carry(s, SB_ENT_KEY, j->hash, j->new_hash);
    if (rc == 0) {
        rc = sb_store_delete(s, SB_ENT_KEY, j->hash);
        if (rc == SB_STORE_E_NOT_FOUND)
            rc = 0; /* deleted meanwhile by another instance: its spend is carried already */
    } else if (rc == SB_STORE_E_NOT_FOUND) {
        NOT_FOUND(j, "Key '(hidden)' not found.");
    }
    if (rc != 0 || j->status) {
        sb_store_delete(s, SB_ENT_KEY, j->new_hash);
        if (rc == SB_STORE_E_NOT_FOUND)
            rc = 0;
        goto out;
    }
    /* The stored record shows the carried spend and per-model spend; should it not read back,
     * the record read above stands in: it holds the old key's, which is what was carried. */
    if (sb_store_get(s, SB_ENT_KEY, j->new_hash, &stored) == 0) {
        json_decref(rec);
        rec = stored;
    }
    publish(p, SB_ENT_KEY, j->new_hash, rec, true);
    /* -1 when the old key was not in memory: the new one keeps the stored total then. */
    (void)sb_policy_carry(p, SB_ENT_KEY, j->hash, j->new_hash);
    sb_policy_remove(p, SB_ENT_KEY, j->hash);
    j->out = key_view(rec);
out:
    json_decref(rec);
    return rc;
}

static int job_key_block(struct sb_store *s, struct sb_policy *p, struct job *j)
{
    json_t *rec = NULL;
    int rc = get_or_404(s, j, SB_ENT_KEY, j->hash, "Key", &rec);
    if (rc != 0)
        return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
    bool block = j->op == OP_KEY_BLOCK;
    json_object_set_new(rec, "blocked", json_boolean(block));
    json_object_del(rec, "spend");
    char iso[32];
    iso8601(j->now_s, iso);
    json_object_set_new(rec, "updated_at", json_string(iso));
    rc = sb_store_put(s, SB_ENT_KEY, j->hash, rec, false);
    if (rc == 0) {
        publish(p, SB_ENT_KEY, j->hash, rec, false);
        j->out = key_view(rec);
    }
    json_decref(rec);
    return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
}

/* team/new, user/new, customer/new */
static int job_entity_new(struct sb_store *s, struct sb_policy *p, struct job *j,
                          enum sb_entity kind, const char *idfield, const char *what)
{
    json_t *rec = j->patch;
    int rc = sb_store_put(s, kind, j->id, rec, true);
    if (rc == SB_STORE_E_EXISTS) {
        char sh[72];
        BAD(j, idfield, "%s '%s' already exists.", what, shown(j->id, sh));
        return 0;
    }
    if (rc != 0)
        return rc;
    publish(p, kind, j->id, rec, true);
    json_object_set_new(rec, "spend", json_real(0));
    j->out = json_incref(rec);
    return 0;
}

static int job_entity_update(struct sb_store *s, struct sb_policy *p, struct job *j,
                             enum sb_entity kind, const char *what)
{
    json_t *rec = NULL;
    int rc = get_or_404(s, j, kind, j->id, what, &rec);
    if (rc != 0)
        return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
    merge(rec, j->patch);
    json_object_del(rec, "spend");
    char iso[32];
    iso8601(j->now_s, iso);
    json_object_set_new(rec, "updated_at", json_string(iso));
    if (within_rights(j, kind, rec)) {
        rc = sb_store_put(s, kind, j->id, rec, false);
        if (rc == 0) {
            publish(p, kind, j->id, rec, false);
            json_decref(rec);
            rec = NULL;
            if ((rc = sb_store_get(s, kind, j->id, &rec)) == 0)
                j->out = json_incref(rec);
        }
    }
    json_decref(rec);
    return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
}

/* team/delete, user/delete, customer/delete: all known or nothing deleted. Keys of a deleted
 * team or user are deleted with it (LiteLLM does the same). */
static int job_entity_delete(struct sb_store *s, struct sb_policy *p, struct job *j,
                             enum sb_entity kind, const char *what, const char *outname)
{
    size_t i;
    json_t *e;
    json_array_foreach(j->ids, i, e)
    {
        json_t *rec = NULL;
        int rc = get_or_404(s, j, kind, json_string_value(e), what, &rec);
        json_decref(rec);
        if (rc != 0)
            return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
    }
    json_t *deleted = json_array();
    int rc = 0;
    json_array_foreach(j->ids, i, e)
    {
        const char *id = json_string_value(e);
        if (kind == SB_ENT_TEAM || kind == SB_ENT_USER) {
            json_t *keys = NULL;
            rc = sb_store_list(s, SB_ENT_KEY, kind == SB_ENT_TEAM ? "team_id" : "user_id", id, 0, 0,
                               &keys);
            if (rc != 0)
                break;
            json_t *hashes = json_array();
            size_t k;
            json_t *r;
            json_array_foreach(keys, k, r)
            {
                json_t *tok = json_object_get(r, "token");
                if (json_is_string(tok))
                    json_array_append(hashes, tok);
            }
            json_decref(keys);
            rc = delete_keys(s, p, hashes, NULL);
            json_decref(hashes);
            if (rc != 0)
                break;
        }
        rc = sb_store_delete(s, kind, id);
        if (rc != 0 && rc != SB_STORE_E_NOT_FOUND)
            break;
        rc = 0;
        sb_policy_remove(p, kind, id);
        json_array_append(deleted, e);
    }
    if (rc == 0)
        j->out = json_pack("{s:O}", outname, deleted);
    json_decref(deleted);
    return rc;
}

static int job_team_info(struct sb_store *s, struct job *j)
{
    json_t *rec = NULL, *keys = NULL;
    int rc = get_or_404(s, j, SB_ENT_TEAM, j->id, "Team", &rec);
    if (rc == 0)
        rc = sb_store_list(s, SB_ENT_KEY, "team_id", j->id, 0, 0, &keys);
    if (rc == 0)
        j->out = json_pack("{s:s,s:O,s:O}", "team_id", j->id, "team_info", rec, "keys", keys);
    json_decref(rec);
    json_decref(keys);
    return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
}

static int job_user_info(struct sb_store *s, struct job *j)
{
    json_t *rec = NULL, *keys = NULL;
    int rc = get_or_404(s, j, SB_ENT_USER, j->id, "User", &rec);
    if (rc == 0)
        rc = sb_store_list(s, SB_ENT_KEY, "user_id", j->id, 0, 0, &keys);
    if (rc == 0) {
        json_t *teams = json_object_get(rec, "teams");
        j->out = json_pack("{s:s,s:O,s:O,s:o}", "user_id", j->id, "user_info", rec, "keys", keys,
                           "teams", json_is_array(teams) ? json_incref(teams) : json_array());
    }
    json_decref(rec);
    json_decref(keys);
    return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
}

static int job_member(struct sb_store *s, struct sb_policy *p, struct job *j)
{
    json_t *rec = NULL;
    int rc = get_or_404(s, j, SB_ENT_TEAM, j->id, "Team", &rec);
    if (rc != 0)
        return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
    json_t *members = json_object_get(rec, "members_with_roles");
    if (!json_is_array(members)) {
        members = json_array();
        json_object_set_new(rec, "members_with_roles", members);
    }
    size_t i;
    json_t *m;
    json_array_foreach(j->member, i, m)
    {
        const char *uid = json_string_value(json_object_get(m, "user_id"));
        for (size_t k = json_array_size(members); k-- > 0;) {
            const char *have =
                json_string_value(json_object_get(json_array_get(members, k), "user_id"));
            if (have && strcmp(have, uid) == 0)
                json_array_remove(members, k);
        }
        if (j->op == OP_TEAM_MEMBER_ADD) {
            const char *role = json_string_value(json_object_get(m, "role"));
            json_array_append_new(
                members, json_pack("{s:s,s:s}", "user_id", uid, "role", role ? role : "user"));
        }
    }
    json_object_del(rec, "spend");
    rc = sb_store_put(s, SB_ENT_TEAM, j->id, rec, false);
    if (rc == 0) {
        publish(p, SB_ENT_TEAM, j->id, rec, false);
        /* The users that exist learn their team (user.teams), as LiteLLM keeps it. */
        json_array_foreach(j->member, i, m)
        {
            const char *uid = json_string_value(json_object_get(m, "user_id"));
            json_t *u = NULL;
            if (sb_store_get(s, SB_ENT_USER, uid, &u) != 0) {
                json_decref(u);
                continue;
            }
            json_t *teams = json_object_get(u, "teams");
            if (!json_is_array(teams)) {
                teams = json_array();
                json_object_set_new(u, "teams", teams);
            }
            for (size_t k = json_array_size(teams); k-- > 0;)
                if (json_is_string(json_array_get(teams, k)) &&
                    strcmp(json_string_value(json_array_get(teams, k)), j->id) == 0)
                    json_array_remove(teams, k);
            if (j->op == OP_TEAM_MEMBER_ADD)
                json_array_append_new(teams, json_string(j->id));
            json_object_del(u, "spend");
            if (sb_store_put(s, SB_ENT_USER, uid, u, false) == 0)
                publish(p, SB_ENT_USER, uid, u, false);
            json_decref(u);
        }
        j->out = json_pack("{s:s,s:O}", "team_id", j->id, "members_with_roles", members);
    }
    json_decref(rec);
    return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
}

static int job_list(struct sb_store *s, struct job *j, enum sb_entity kind)
{
    json_t *all = NULL;
    int rc = sb_store_list(s, kind, NULL, NULL, (j->page - 1) * j->size, j->size, &all);
    if (rc != 0)
        return rc;
    if (kind == SB_ENT_TEAM) {
        j->out = all;
        return 0;
    }
    json_t *every = NULL;
    size_t total = json_array_size(all);
    if (sb_store_list(s, kind, NULL, NULL, 0, 0, &every) == 0)
        total = json_array_size(every);
    json_decref(every);
    j->out = json_pack("{s:o,s:I,s:I,s:I,s:I}", "users", all, "total", (json_int_t)total, "page",
                       (json_int_t)j->page, "page_size", (json_int_t)j->size, "total_pages",
                       (json_int_t)((total + j->size - 1) / j->size));
    return 0;
}

static int job_simple_get(struct sb_store *s, struct job *j, enum sb_entity kind, const char *what)
{
    json_t *rec = NULL;
    int rc = get_or_404(s, j, kind, j->id, what, &rec);
    if (rc == 0)
        j->out = json_incref(rec);
    json_decref(rec);
    return rc == SB_STORE_E_NOT_FOUND ? 0 : rc;
}

static int job_spend_totals(struct sb_store *s, struct job *j, enum sb_spend_group by)
{
    json_t *all = NULL;
    int rc = sb_store_spend_totals(s, by, 0, 0, &all);
    if (rc != 0)
        return rc;
    while (j->limit && json_array_size(all) > j->limit)
        json_array_remove(all, json_array_size(all) - 1);
    j->out = all;
    return 0;
}

static int on_job(struct sb_store *s, struct sb_policy *p, void *ud)
{
    struct job *j = ud;
    switch (j->op) {
    case OP_KEY_GENERATE:
        return job_key_generate(s, p, j);
    case OP_KEY_UPDATE:
        return job_key_update(s, p, j);
    case OP_KEY_DELETE:
        return job_key_delete(s, p, j);
    case OP_KEY_INFO:
        return job_key_info(s, p, j);
    case OP_KEY_LIST:
        return job_key_list(s, p, j);
    case OP_KEY_REGENERATE:
        return job_key_regenerate(s, p, j);
    case OP_KEY_BLOCK:
    case OP_KEY_UNBLOCK:
        return job_key_block(s, p, j);
    case OP_TEAM_NEW:
        return job_entity_new(s, p, j, SB_ENT_TEAM, "team_id", "Team");
    case OP_TEAM_UPDATE:
        return job_entity_update(s, p, j, SB_ENT_TEAM, "Team");
    case OP_TEAM_DELETE:
        return job_entity_delete(s, p, j, SB_ENT_TEAM, "Team", "deleted_teams");
    case OP_TEAM_INFO:
        return job_team_info(s, j);
    case OP_TEAM_LIST:
        return job_list(s, j, SB_ENT_TEAM);
    case OP_TEAM_MEMBER_ADD:
    case OP_TEAM_MEMBER_DELETE:
        return job_member(s, p, j);
    case OP_USER_NEW:
        return job_entity_new(s, p, j, SB_ENT_USER, "user_id", "User");
    case OP_USER_UPDATE:
        return job_entity_update(s, p, j, SB_ENT_USER, "User");
    case OP_USER_DELETE:
        return job_entity_delete(s, p, j, SB_ENT_USER, "User", "deleted_users");
    case OP_USER_INFO:
        return job_user_info(s, j);
    case OP_USER_LIST:
        return job_list(s, j, SB_ENT_USER);
    case OP_CUSTOMER_NEW:
        return job_entity_new(s, p, j, SB_ENT_CUSTOMER, "user_id", "Customer");
    case OP_CUSTOMER_INFO:
        return job_simple_get(s, j, SB_ENT_CUSTOMER, "Customer");
    case OP_CUSTOMER_DELETE:
        return job_entity_delete(s, p, j, SB_ENT_CUSTOMER, "Customer", "deleted_customers");
    case OP_SPEND_LOGS:
        return sb_store_spend_logs(s, &j->spend, &j->out);
    case OP_SPEND_KEYS:
        return job_spend_totals(s, j, SB_SPEND_BY_KEY);
    case OP_SPEND_MODELS:
        return job_spend_totals(s, j, SB_SPEND_BY_MODEL);
    case OP_SPEND_TEAMS:
        return job_spend_totals(s, j, SB_SPEND_BY_TEAM);
    case OP_MODEL_INFO:
        break;
    }
    return SB_STORE_E_INVALID;
}

/* -------------------------------------------------------------------------- responding */

static void job_free(struct job *j)
{
    json_decref(j->patch);
    json_decref(j->ids);
    json_decref(j->aliases);
    json_decref(j->member);
    json_decref(j->out);
    json_decref(j->rights.models);
    OPENSSL_cleanse(j->plaintext, sizeof j->plaintext);
    free(j);
}

static void respond_json(struct sb_api_req *r, json_t *out)
{
    char *body = json_dumps(out, JSON_COMPACT | JSON_REAL_PRECISION(15));
    size_t n = body ? strlen(body) : 0;
    if (!body || n > RESPONSE_MAX)
        sb_api_fail(r, 500, "api_error", "internal_error", NULL,
                    body ? "The answer is too large; narrow the query." : "Out of memory.");
    else
        sb_http_respond(r->x, 200, "application/json", r->rid_header, r->rid_header_len, body, n);
    if (body) {
        OPENSSL_cleanse(body, n); /* it may hold a new key's plaintext */
        free(body);
    }
}

static void on_done(void *ud, int rc)
{
    struct job *j = ud;
    struct sb_api_req *r = j->r;
    if (!r) {
        job_free(j);
        return;
    }
    r->admin = NULL;
    if (rc == SB_STORE_E_DOWN) {
        sb_api_fail(r, 503, "api_error", "database_unavailable", NULL,
                    "The database is unavailable; retry later.");
    } else if (j->status) {
        sb_api_fail(r, j->status, j->type, j->code, j->param, j->msg);
    } else if (rc != 0 || !j->out) {
        sb_warn("admin: store job failed (%d)", rc);
        sb_api_fail(r, 500, "api_error", "database_error", NULL,
                    "The database refused the operation.");
    } else {
        if (j->plaintext[0])
            json_object_set_new(j->out, "key", json_string(j->plaintext));
        respond_json(r, j->out);
    }
    job_free(j);
}

static void submit(struct sb_api_req *r, struct job *j)
{
    struct sb_gateway *gw = r->gw_w->gw;
    j->r = r;
    r->admin = j;
    if (sb_ledger_submit(gw->ledger, r->gw_w->index, on_job, on_done, j) != 0) {
        r->admin = NULL;
        job_free(j);
        sb_api_fail(r, 503, "api_error", "database_unavailable", NULL,
                    "The store is not accepting work; retry later.");
    }
}

/* ------------------------------------------------------------------------- the request */

/* The percent-decoded value of a query parameter: 1 found, 0 absent, -1 malformed or longer
 * than out_len - 1 or holding a NUL. */
static int query_get(const struct sb_http_str *q, const char *name, char *out, size_t out_len)
{
    size_t nl = strlen(name);
    const char *p = q->p, *end = q->p + q->n;
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *seg_end = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(seg_end - p));
        if (eq && (size_t)(eq - p) == nl && memcmp(p, name, nl) == 0) {
            size_t o = 0;
            for (const char *s = eq + 1; s < seg_end; s++) {
                int c = (unsigned char)*s;
                if (c == '+') {
                    c = ' ';
                } else if (c == '%') {
                    if (seg_end - s < 3 || sb_hex_val(s[1]) < 0 || sb_hex_val(s[2]) < 0)
                        return -1;
                    c = sb_hex_val(s[1]) * 16 + sb_hex_val(s[2]);
                    s += 2;
                }
                if (c == 0 || o + 1 >= out_len)
                    return -1;
                out[o++] = (char)c;
            }
            out[o] = '\0';
            return 1;
        }
        p = amp ? amp + 1 : end;
    }
    return 0;
}

static bool query_param(struct sb_api_req *r, const char *name, char *out, size_t out_len,
                        bool *found)
{
    int q = query_get(&r->x->req.query, name, out, out_len);
    if (q < 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "Invalid query parameter '%s' (malformed or too long).", name);
        sb_api_fail(r, 400, "invalid_request_error", "invalid_field", NULL, msg);
        return false;
    }
    *found = q == 1;
    if (!*found)
        out[0] = '\0';
    return true;
}

static bool query_size(struct sb_api_req *r, const char *name, size_t def, size_t max, size_t *out)
{
    char v[32];
    bool found;
    if (!query_param(r, name, v, sizeof v, &found))
        return false;
    *out = def;
    if (!found)
        return true;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < 1 || (unsigned long long)n > max) {
        char msg[160];
        snprintf(msg, sizeof msg, "Query parameter '%s' must be an integer from 1 to %zu.", name,
                 max);
        sb_api_fail(r, 400, "invalid_request_error", "invalid_field", NULL, msg);
        return false;
    }
    *out = (size_t)n;
    return true;
}

static void fail_job(struct sb_api_req *r, struct job *j)
{
    sb_api_fail(r, j->status ? j->status : 400, j->type ? j->type : "invalid_request_error",
                j->code ? j->code : "invalid_field", j->param, j->msg);
    job_free(j);
}

/* A JSON array of non-empty strings (at most LIST_MAX), or NULL with a 400 set on j. */
static json_t *string_list(struct job *j, const json_t *body, const char *name, size_t max,
                           bool required)
{
    const json_t *v = json_object_get(body, name);
    if (!v) {
        if (required)
            BAD(j, name, "'%s' is required.", name);
        return required ? NULL : json_array();
    }
    struct field f = {name, FT_STR_LIST, max};
    char msg[320];
    if (!check_field(&f, v, msg, sizeof msg) || json_array_size(v) == 0) {
        BAD(j, name, "Invalid %s: %s.", name,
            json_is_array(v) && json_array_size(v) == 0 ? "it must not be empty" : msg);
        return NULL;
    }
    return json_deep_copy(v);
}

/* The key a request names ("key" in the body): its hash in j->hash. */
static bool body_key(struct job *j, const json_t *body)
{
    const json_t *k = json_object_get(body, "key");
    if (!str_ok(k, 512)) {
        BAD(j, "key", "'key' must be the key (sk-...) or its hash.");
        return false;
    }
    return key_to_hash(json_string_value(k), json_string_length(k), j->hash);
}

static bool body_id(struct job *j, const json_t *body, const char *name, bool required)
{
    const json_t *v = json_object_get(body, name);
    if (!v || json_is_null(v)) {
        if (required)
            BAD(j, name, "'%s' is required.", name);
        return !required;
    }
    if (!str_ok(v, ID_MAX)) {
        BAD(j, name, "'%s' must be a non-empty string of at most %d bytes.", name, ID_MAX);
        return false;
    }
    memcpy(j->id, json_string_value(v), json_string_length(v) + 1);
    return true;
}

static void stamp(json_t *rec, int64_t now_s, const struct rights *rt)
{
    char iso[32];
    iso8601(now_s, iso);
    json_object_set_new(rec, "created_at", json_string(iso));
    json_object_set_new(rec, "updated_at", json_string(iso));
    json_object_set_new(rec, "created_by", json_string(rt->master ? "master" : rt->key_hash));
}

static bool prepare_key_generate(struct job *j, const json_t *body)
{
    j->patch = validate(j, body, key_fields, sizeof key_fields / sizeof key_fields[0]);
    if (!j->patch)
        return false;
    const json_t *custom = json_object_get(body, "key");
    if (custom && !json_is_null(custom)) {
        size_t n = json_string_length(custom);
        if (!json_is_string(custom) || n < 8 || n >= sizeof j->plaintext ||
            strlen(json_string_value(custom)) != n ||
            strncmp(json_string_value(custom), "sk-", 3) != 0) {
            BAD(j, "key", "'key' must be a string starting with \"sk-\", 8 to %zu bytes long.",
                sizeof j->plaintext - 1);
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)json_string_value(custom)[i];
            if (c <= 0x20 || c >= 0x7f) {
                BAD(j, "key", "'key' may only hold printable ASCII without spaces.");
                return false;
            }
        }
        memcpy(j->plaintext, json_string_value(custom), n + 1);
    } else {
        new_key(j->plaintext);
    }
    sb_policy_hash_key(j->plaintext, strlen(j->plaintext), j->new_hash);
    key_name_of(j->plaintext, j->key_name);
    apply_durations(j->patch, j->now_s);
    json_t *rec = j->patch;
    json_object_set_new(rec, "token", json_string(j->new_hash));
    json_object_set_new(rec, "key_name", json_string(j->key_name));
    static const char *const defaults_null[] = {
        "key_alias", "max_budget", "soft_budget",           "budget_duration",
        "rpm_limit", "tpm_limit",  "max_parallel_requests", "expires",
        "team_id",   "user_id"};
    for (size_t i = 0; i < sizeof defaults_null / sizeof defaults_null[0]; i++)
        if (!json_object_get(rec, defaults_null[i]))
            json_object_set_new(rec, defaults_null[i], json_null());
    if (!json_object_get(rec, "models"))
        json_object_set_new(rec, "models", json_array());
    if (!json_object_get(rec, "metadata"))
        json_object_set_new(rec, "metadata", json_object());
    if (!json_object_get(rec, "blocked"))
        json_object_set_new(rec, "blocked", json_false());
    json_object_set_new(rec, "spend", json_real(0));
    stamp(rec, j->now_s, &j->rights);
    return within_rights(j, SB_ENT_KEY, rec);
}

static bool prepare_new_entity(struct job *j, const json_t *body, const struct field *fields,
                               size_t n, const char *idfield, enum sb_entity kind)
{
    if (!body_id(j, body, idfield, kind == SB_ENT_CUSTOMER))
        return false;
    if (!j->id[0])
        random_hex(j->id, 16);
    j->patch = validate(j, body, fields, n);
    if (!j->patch)
        return false;
    apply_durations(j->patch, j->now_s);
    json_object_set_new(j->patch, idfield, json_string(j->id));
    if (kind != SB_ENT_CUSTOMER) {
        if (!json_object_get(j->patch, "models"))
            json_object_set_new(j->patch, "models", json_array());
        if (!json_object_get(j->patch, "metadata"))
            json_object_set_new(j->patch, "metadata", json_object());
    }
    if (kind == SB_ENT_TEAM && !json_object_get(j->patch, "members_with_roles"))
        json_object_set_new(j->patch, "members_with_roles", json_array());
    if (kind == SB_ENT_USER && !json_object_get(j->patch, "teams"))
        json_object_set_new(j->patch, "teams", json_array());
    if (!json_object_get(j->patch, "max_budget"))
        json_object_set_new(j->patch, "max_budget", json_null());
    if (kind != SB_ENT_USER && !json_object_get(j->patch, "blocked"))
        json_object_set_new(j->patch, "blocked", json_false());
    stamp(j->patch, j->now_s, &j->rights);
    return within_rights(j, kind, j->patch);
}

static bool prepare_update(struct job *j, const json_t *body, const struct field *fields, size_t n)
{
    j->patch = validate(j, body, fields, n);
    if (!j->patch)
        return false;
    apply_durations(j->patch, j->now_s);
    return true;
}

static bool prepare_members(struct job *j, const json_t *body)
{
    if (!body_id(j, body, "team_id", true))
        return false;
    j->member = json_array();
    if (j->op == OP_TEAM_MEMBER_DELETE) {
        const json_t *uid = json_object_get(body, "user_id");
        if (!str_ok(uid, ID_MAX)) {
            BAD(j, "user_id", "'user_id' must be a non-empty string of at most %d bytes.", ID_MAX);
            return false;
        }
        json_array_append_new(j->member, json_pack("{s:O}", "user_id", uid));
        return true;
    }
    const json_t *m = json_object_get(body, "member");
    char msg[320];
    if (json_is_object(m)) {
        if (!valid_member(m, msg, sizeof msg)) {
            BAD(j, "member", "Invalid member: %s.", msg);
            return false;
        }
        json_array_append_new(j->member, json_deep_copy(m));
        return true;
    }
    if (!json_is_array(m) || json_array_size(m) == 0 || json_array_size(m) > LIST_MAX) {
        BAD(j, "member", "'member' must be {\"user_id\", \"role\"} or a non-empty array of them.");
        return false;
    }
    size_t i;
    const json_t *e;
    json_array_foreach(m, i, e)
    {
        if (!valid_member(e, msg, sizeof msg)) {
            BAD(j, "member", "Invalid member: %s.", msg);
            return false;
        }
        json_array_append_new(j->member, json_deep_copy(e));
    }
    return true;
}

/* keys: plaintext keys or hashes, as hashes. */
static bool prepare_key_delete(struct job *j, const json_t *body)
{
    const json_t *keys = json_object_get(body, "keys");
    const json_t *aliases = json_object_get(body, "key_aliases");
    if (!keys && !aliases) {
        BAD(j, "keys", "Give 'keys' (keys or their hashes) or 'key_aliases'.");
        return false;
    }
    j->ids = json_array();
    if (keys) {
        json_t *list = string_list(j, body, "keys", 512, true);
        if (!list)
            return false;
        size_t i;
        json_t *e;
        json_array_foreach(list, i, e)
        {
            char h[65];
            key_to_hash(json_string_value(e), json_string_length(e), h);
            json_array_append_new(j->ids, json_string(h));
        }
        json_decref(list);
    }
    if (aliases) {
        j->aliases = string_list(j, body, "key_aliases", ALIAS_MAX, true);
        if (!j->aliases)
            return false;
    } else {
        j->aliases = json_array();
    }
    return true;
}

static bool prepare_spend_logs(struct sb_api_req *r, struct job *j)
{
    char v[QUERY_VAL_MAX + 1];
    bool found;
    struct sb_spend_filter *f = &j->spend;
    if (!query_param(r, "api_key", v, sizeof v, &found))
        return false;
    if (found && v[0]) {
        key_to_hash(v, strlen(v), j->s_key);
        f->key_hash = j->s_key;
    }
    OPENSSL_cleanse(v, sizeof v);
    if (!query_param(r, "user_id", j->s_user, sizeof j->s_user, &found))
        return false;
    f->user_id = found && j->s_user[0] ? j->s_user : NULL;
    if (!query_param(r, "team_id", j->s_team, sizeof j->s_team, &found))
        return false;
    f->team_id = found && j->s_team[0] ? j->s_team : NULL;
    if (!query_param(r, "request_id", j->s_rid, sizeof j->s_rid, &found))
        return false;
    f->request_id = found && j->s_rid[0] ? j->s_rid : NULL;
    static const char *const dates[] = {"start_date", "end_date"};
    for (int i = 0; i < 2; i++) {
        if (!query_param(r, dates[i], v, 64, &found))
            return false;
        if (!found)
            continue;
        int64_t s = parse_date_s(v);
        if (s < 0) {
            char msg[160];
            snprintf(msg, sizeof msg,
                     "Query parameter '%s' must be a date (YYYY-MM-DD or ISO 8601).", dates[i]);
            sb_api_fail(r, 400, "invalid_request_error", "invalid_field", NULL, msg);
            return false;
        }
        /* end_date is inclusive of its day when given as a bare date, as LiteLLM reads it. */
        if (i == 0)
            f->start_ms = s * 1000;
        else
            f->end_ms = (strlen(v) == 10 ? s + 86400 : s) * 1000;
    }
    return query_size(r, "limit", 1000, 100000, &f->limit);
}

static const char *presented_key(const struct sb_http_request *req, size_t *len)
{
    const struct sb_http_str *h = sb_http_header_get(req, "authorization");
    if (h) {
        if (h->n > 7 && strncasecmp(h->p, "Bearer ", 7) == 0) {
            const char *p = h->p + 7;
            size_t n = h->n - 7;
            while (n && *p == ' ')
                p++, n--;
            *len = n;
            return n ? p : NULL;
        }
        return NULL;
    }
    if ((h = sb_http_header_get(req, "x-litellm-api-key")) != NULL ||
        (h = sb_http_header_get(req, "x-api-key")) != NULL ||
        (h = sb_http_header_get(req, "api-key")) != NULL) {
        *len = h->n;
        return h->n ? h->p : NULL;
    }
    return NULL;
}

static void model_info(struct sb_api_req *r)
{
    const struct sb_config *cfg = r->gw_w->gw->cfg;
    json_t *data = json_array();
    for (size_t i = 0; i < cfg->n_deployments; i++) {
        const struct sb_deployment *d = &cfg->deployments[i];
        struct sb_price pr;
        bool known = sb_price_lookup(d->provider_name, d->upstream_model, &pr);
        double in = d->cost_in >= 0 ? d->cost_in : known ? pr.input / 1e9 : -1;
        double out = d->cost_out >= 0 ? d->cost_out : known ? pr.output / 1e9 : -1;
        json_t *mi = NULL;
        if (d->model_info_json)
            mi = json_loads(d->model_info_json, 0, NULL);
        if (!json_is_object(mi)) {
            json_decref(mi);
            mi = json_object();
        }
        char id[24];
        snprintf(id, sizeof id, "%zu", i);
        json_object_set_new(mi, "id", json_string(id));
        json_object_set_new(mi, "db_model", json_false());
        json_object_set_new(mi, "input_cost_per_token", in >= 0 ? json_real(in) : json_null());
        json_object_set_new(mi, "output_cost_per_token", out >= 0 ? json_real(out) : json_null());
        json_object_set_new(mi, "cache_read_input_token_cost",
                            known && pr.cache_read >= 0 ? json_real(pr.cache_read / 1e9)
                                                        : json_null());
        json_object_set_new(mi, "cache_creation_input_token_cost",
                            known && pr.cache_write >= 0 ? json_real(pr.cache_write / 1e9)
                                                         : json_null());
        json_object_set_new(mi, "price_known", json_boolean(in >= 0 && out >= 0));
        json_object_set_new(mi, "litellm_provider", json_string(d->provider_name));
        if (d->max_input_tokens > 0)
            json_object_set_new(mi, "max_input_tokens", json_integer(d->max_input_tokens));
        json_t *lp = json_pack("{s:s}", "model", d->litellm_model);
        if (d->api_base)
            json_object_set_new(lp, "api_base", json_string(d->api_base));
        if (d->api_version)
            json_object_set_new(lp, "api_version", json_string(d->api_version));
        if (d->rpm)
            json_object_set_new(lp, "rpm", json_integer(d->rpm));
        if (d->tpm)
            json_object_set_new(lp, "tpm", json_integer(d->tpm));
        json_t *e = json_pack("{s:s,s:o,s:o}", "model_name", d->model_name, "litellm_params", lp,
                              "model_info", mi);
        if (d->disabled)
            json_object_set_new(e, "disabled_reason",
                                json_string(d->disabled_reason ? d->disabled_reason : "disabled"));
        json_array_append_new(data, e);
    }
    json_t *out = json_pack("{s:o}", "data", data);
    respond_json(r, out);
    json_decref(out);
}

static const struct route *find_route(const struct sb_http_str *path, char *path_key,
                                      size_t path_key_len)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        size_t n = strlen(routes[i].path);
        if (path->n == n && memcmp(path->p, routes[i].path, n) == 0)
            return &routes[i];
    }
    /* /key/{key}/regenerate */
    static const char pre[] = "/key/", suf[] = "/regenerate";
    size_t pn = sizeof pre - 1, sn = sizeof suf - 1;
    if (path->n > pn + sn && memcmp(path->p, pre, pn) == 0 &&
        memcmp(path->p + path->n - sn, suf, sn) == 0) {
        size_t kn = path->n - pn - sn;
        if (kn >= path_key_len || memchr(path->p + pn, '/', kn))
            return NULL;
        memcpy(path_key, path->p + pn, kn);
        path_key[kn] = '\0';
        /* The access log records the path: mask a plaintext key in place (the head buffer is
         * the exchange's own), keeping "sk-" and its last four characters. */
        if (!is_hash(path_key) && kn > 7)
            memset((char *)path->p + pn + 3, '*', kn - 7);
        return &routes[5];
    }
    return NULL;
}

bool sb_admin_handle(struct sb_api_req *r)
{
    struct sb_exchange *x = r->x;
    struct sb_gateway *gw = r->gw_w->gw;
    char path_key[520];
    path_key[0] = '\0';
    const struct route *rt = find_route(&x->req.path, path_key, sizeof path_key);
    if (!rt)
        return false;
    const struct sb_http_str *m = &x->req.method;
    bool is_get = m->n == 3 && memcmp(m->p, "GET", 3) == 0;
    bool is_post = m->n == 4 && memcmp(m->p, "POST", 4) == 0;
    /* The key routes LiteLLM also serves as GET /key/info are POST-only elsewhere. */
    if (rt->get ? !is_get : !is_post) {
        char hdr[320];
        const char *allow = rt->get ? "GET" : "POST";
        int n = snprintf(hdr, sizeof hdr, "%sAllow: %s\r\n", r->rid_header, allow);
        struct sb_error e;
        sb_error_set(&e, 405, "invalid_request_error", "method_not_allowed", NULL,
                     "Use %s on this route.", allow);
        r->rec.error_code = "method_not_allowed";
        sb_http_respond_error(x, &e, hdr, n > 0 && (size_t)n < sizeof hdr ? (size_t)n : 0);
        return true;
    }

    /* Who is asking. */
    struct sb_admission a;
    memset(&a, 0, sizeof a);
    bool master = r->master;
    if (!master) {
        size_t klen = 0;
        const char *key = presented_key(&x->req, &klen);
        if (!key || !gw->policy ||
            sb_policy_authenticate(gw->policy, key, klen, now_ms(), &a) != 0) {
            sb_api_fail(r, 401, "invalid_request_error", "invalid_api_key", NULL,
                        "Missing or invalid API key. Admin routes need the master key or an "
                        "admin key as 'Authorization: Bearer <key>'.");
            return true;
        }
        if (!a.admin) {
            sb_api_fail(r, 403, "permission_error", "not_admin", NULL,
                        "This key may not use the admin API; it needs the master key or a key "
                        "with user_role proxy_admin.");
            return true;
        }
    }
    if (rt->op == OP_MODEL_INFO) {
        model_info(r);
        return true;
    }
    if (!gw->ledger || !gw->policy) {
        sb_api_fail(r, 503, "api_error", "database_unavailable", NULL,
                    "The admin API needs a database (general_settings.database_url).");
        return true;
    }

    struct job *j = calloc(1, sizeof *j);
    if (!j) {
        sb_api_fail(r, 500, "api_error", "internal_error", NULL, "Out of memory.");
        return true;
    }
    j->op = rt->op;
    j->now_s = now_ms() / 1000;
    rights_init(&j->rights, gw->policy, master ? NULL : &a);

    json_t *body = NULL;
    if (!rt->get) {
        if (x->body.len == 0) {
            body = json_object();
        } else {
            json_error_t err;
            body = json_loadb(x->body.data, x->body.len, JSON_REJECT_DUPLICATES, &err);
            if (!json_is_object(body)) {
                json_decref(body);
                job_free(j);
                sb_api_fail(r, 400, "invalid_request_error", "invalid_json", NULL,
                            "The body must be a JSON object.");
                return true;
            }
        }
    }

    bool ok = true, found = false;
    char q[QUERY_VAL_MAX + 1];
    switch (j->op) {
    case OP_KEY_GENERATE:
        ok = prepare_key_generate(j, body);
        break;
    case OP_KEY_UPDATE:
        ok = body_key(j, body) &&
             prepare_update(j, body, key_fields, sizeof key_fields / sizeof key_fields[0]);
        break;
    case OP_KEY_DELETE:
        ok = prepare_key_delete(j, body);
        break;
    case OP_KEY_INFO:
        if (!query_param(r, "key", q, sizeof q, &found)) {
            job_free(j);
            return true;
        }
        if (found && q[0])
            key_to_hash(q, strlen(q), j->hash);
        else if (!master)
            memcpy(j->hash, a.key_hash, sizeof j->hash);
        else {
            ok = false;
            BAD(j, "key", "Give the key to look up: /key/info?key=<key or hash>.");
        }
        OPENSSL_cleanse(q, sizeof q);
        break;
    case OP_KEY_LIST: {
        if (!query_size(r, "page", 1, 1000000, &j->page) ||
            !query_size(r, "size", 10, PAGE_SIZE_MAX, &j->size) ||
            !query_param(r, "team_id", j->f_team, sizeof j->f_team, &found) ||
            !query_param(r, "user_id", j->f_user, sizeof j->f_user, &found) ||
            !query_param(r, "key_alias", j->f_alias, sizeof j->f_alias, &found) ||
            !query_param(r, "return_full_object", q, 16, &found)) {
            job_free(j);
            return true;
        }
        j->full = found && strcmp(q, "true") == 0;
        const char *fname = j->f_team[0]    ? "team_id"
                            : j->f_user[0]  ? "user_id"
                            : j->f_alias[0] ? "key_alias"
                                            : NULL;
        if (fname) {
            snprintf(j->filter_field, sizeof j->filter_field, "%s", fname);
            snprintf(j->filter_value, sizeof j->filter_value, "%s",
                     j->f_team[0]   ? j->f_team
                     : j->f_user[0] ? j->f_user
                                    : j->f_alias);
        }
        break;
    }
    case OP_KEY_REGENERATE:
        if (path_key[0]) {
            key_to_hash(path_key, strlen(path_key), j->hash);
            OPENSSL_cleanse(path_key, sizeof path_key);
        } else if (!body_key(j, body)) {
            ok = false;
            break;
        }
        j->patch = validate(j, body, key_fields, sizeof key_fields / sizeof key_fields[0]);
        if (!j->patch) {
            ok = false;
            break;
        }
        apply_durations(j->patch, j->now_s);
        new_key(j->plaintext);
        sb_policy_hash_key(j->plaintext, strlen(j->plaintext), j->new_hash);
        key_name_of(j->plaintext, j->key_name);
        break;
    case OP_KEY_BLOCK:
    case OP_KEY_UNBLOCK:
        ok = body_key(j, body);
        break;
    case OP_TEAM_NEW:
        ok = prepare_new_entity(j, body, team_fields, sizeof team_fields / sizeof team_fields[0],
                                "team_id", SB_ENT_TEAM);
        break;
    case OP_TEAM_UPDATE:
        ok = body_id(j, body, "team_id", true) &&
             prepare_update(j, body, team_fields, sizeof team_fields / sizeof team_fields[0]);
        break;
    case OP_USER_NEW:
        ok = prepare_new_entity(j, body, user_fields, sizeof user_fields / sizeof user_fields[0],
                                "user_id", SB_ENT_USER);
        break;
    case OP_USER_UPDATE:
        ok = body_id(j, body, "user_id", true) &&
             prepare_update(j, body, user_fields, sizeof user_fields / sizeof user_fields[0]);
        break;
    case OP_CUSTOMER_NEW:
        ok = prepare_new_entity(j, body, customer_fields,
                                sizeof customer_fields / sizeof customer_fields[0], "user_id",
                                SB_ENT_CUSTOMER);
        break;
    case OP_TEAM_DELETE:
        ok = (j->ids = string_list(j, body, "team_ids", ID_MAX, true)) != NULL;
        break;
    case OP_USER_DELETE:
    case OP_CUSTOMER_DELETE:
        ok = (j->ids = string_list(j, body, "user_ids", ID_MAX, true)) != NULL;
        break;
    case OP_TEAM_MEMBER_ADD:
    case OP_TEAM_MEMBER_DELETE:
        ok = prepare_members(j, body);
        break;
    case OP_TEAM_INFO:
    case OP_USER_INFO:
    case OP_CUSTOMER_INFO: {
        const char *name = j->op == OP_TEAM_INFO   ? "team_id"
                           : j->op == OP_USER_INFO ? "user_id"
                                                   : "end_user_id";
        if (!query_param(r, name, j->id, sizeof j->id, &found)) {
            job_free(j);
            return true;
        }
        if (!found || !j->id[0]) {
            ok = false;
            BAD(j, name, "Query parameter '%s' is required.", name);
        }
        break;
    }
    case OP_TEAM_LIST:
    case OP_USER_LIST:
        if (!query_size(r, "page", 1, 1000000, &j->page) ||
            !query_size(r, "page_size", j->op == OP_TEAM_LIST ? 100 : 25, PAGE_SIZE_MAX,
                        &j->size)) {
            job_free(j);
            return true;
        }
        break;
    case OP_SPEND_LOGS:
        if (!prepare_spend_logs(r, j)) {
            job_free(j);
            return true;
        }
        break;
    case OP_SPEND_KEYS:
    case OP_SPEND_MODELS:
    case OP_SPEND_TEAMS:
        if (!query_size(r, "limit", 0, 100000, &j->limit)) {
            job_free(j);
            return true;
        }
        break;
    case OP_MODEL_INFO:
        break;
    }
    json_decref(body);
    OPENSSL_cleanse(path_key, sizeof path_key);
    if (!ok) {
        fail_job(r, j);
        return true;
    }
    submit(r, j);
    return true;
}

void sb_admin_abort(struct sb_api_req *r)
{
    struct job *j = r->admin;
    if (!j)
        return;
    /* The store thread may still be running it: done frees it when it comes back. */
    j->r = NULL;
    r->admin = NULL;
}

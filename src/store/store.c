/* The store's front: picks the backend by URL scheme, validates arguments once for both
 * backends, and holds the helpers that make the two backends produce the same JSON. */
#include "store/store_int.h"

#include <limits.h>
#include <stdlib.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

void sb_store_set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (err == NULL || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static bool utf8_valid(const unsigned char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        /* Ids, models and routes are ASCII: eight bytes at a time while no high bit is set. */
        if (n - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, sizeof(w));
            if ((w & UINT64_C(0x8080808080808080)) == 0) {
                i += 8;
                continue;
            }
        }
        unsigned c = p[i];
        size_t need;
        unsigned min;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            need = 1;
            min = 0x80;
            c &= 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            need = 2;
            min = 0x800;
            c &= 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            need = 3;
            min = 0x10000;
            c &= 0x07;
        } else {
            return false;
        }
        if (n - i - 1 < need)
            return false;
        for (size_t k = 1; k <= need; k++) {
            if ((p[i + k] & 0xc0) != 0x80)
                return false;
            c = (c << 6) | (p[i + k] & 0x3f);
        }
        /* Overlong forms, surrogates and values past U+10FFFF are what jansson refuses too. */
        if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
            return false;
        i += need + 1;
    }
    return true;
}

int sb_store_check_id(const char *id)
{
    if (id == NULL)
        return SB_STORE_E_INVALID;
    size_t n = strnlen(id, SB_STORE_ID_MAX + 1);
    if (n == 0 || n > SB_STORE_ID_MAX || !utf8_valid((const unsigned char *)id, n))
        return SB_STORE_E_INVALID;
    return 0;
}

static int check_alias(const char *s)
{
    if (s == NULL)
        return SB_STORE_E_INVALID;
    size_t n = strnlen(s, SB_STORE_ALIAS_MAX + 1);
    if (n > SB_STORE_ALIAS_MAX || !utf8_valid((const unsigned char *)s, n))
        return SB_STORE_E_INVALID;
    return 0;
}

/* A string column of the record: absent or null -> NULL; "" for ids -> NULL too, since an id
 * cannot be empty and LiteLLM clients send "" to mean none. */
static int take_column(json_t *record, const char *name, bool is_id, const char **out)
{
    *out = NULL;
    json_t *v = json_object_get(record, name);
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return SB_STORE_E_INVALID;
    const char *s = json_string_value(v);
    if (strlen(s) != json_string_length(v))
        return SB_STORE_E_INVALID; /* an embedded NUL would be cut by the database */
    if (is_id) {
        if (s[0] == '\0')
            return 0;
        if (sb_store_check_id(s) != 0)
            return SB_STORE_E_INVALID;
    } else if (check_alias(s) != 0) {
        return SB_STORE_E_INVALID;
    }
    *out = s;
    return 0;
}

int sb_store_cols_from_record(enum sb_entity kind, json_t *record, struct sb_store_cols *c)
{
    memset(c, 0, sizeof(*c));
    if (!json_is_object(record))
        return SB_STORE_E_INVALID;
    if (kind == SB_ENT_KEY) {
        if (take_column(record, "key_alias", false, &c->key_alias) != 0 ||
            take_column(record, "team_id", true, &c->team_id) != 0 ||
            take_column(record, "user_id", true, &c->user_id) != 0)
            return SB_STORE_E_INVALID;
    }
    json_t *reset = json_object_get(record, "budget_reset_at");
    if (reset != NULL && !json_is_null(reset)) {
        if (!json_is_integer(reset) || json_integer_value(reset) < 0)
            return SB_STORE_E_INVALID;
        c->has_reset = true;
        c->budget_reset_at = (int64_t)json_integer_value(reset);
    }
    c->now_s = (int64_t)time(NULL);

    json_t *copy = json_copy(record);
    if (copy == NULL)
        return SB_STORE_E_FAILED;
    json_object_del(copy, "spend");
    json_object_del(copy, "model_spend");
    char *text = json_dumps(copy, JSON_COMPACT);
    json_decref(copy);
    if (text == NULL)
        return SB_STORE_E_INVALID; /* a member jansson cannot encode, or out of memory */
    size_t len = strlen(text);
    if (len > SB_STORE_DATA_MAX) {
        free(text);
        return SB_STORE_E_INVALID;
    }
    c->data = text;
    c->data_len = len;
    return 0;
}

void sb_store_cols_free(struct sb_store_cols *c)
{
    free(c->data);
    c->data = NULL;
}

double sb_store_dollars(int64_t nano)
{
    return (double)nano / 1e9;
}

json_t *sb_store_record_load(enum sb_entity kind, const char *data, size_t len, int64_t spend_nano,
                             json_t *model_spend)
{
    json_t *rec = json_loadb(data, len, JSON_ALLOW_NUL, NULL);
    if (!json_is_object(rec)) {
        json_decref(rec);
        json_decref(model_spend);
        return NULL;
    }
    json_object_set_new(rec, "spend", json_real(sb_store_dollars(spend_nano)));
    if (kind == SB_ENT_KEY)
        json_object_set_new(rec, "model_spend", model_spend ? model_spend : json_object());
    else
        json_decref(model_spend);
    return rec;
}

void sb_store_record_set_reset(json_t *rec, bool has_reset, int64_t at)
{
    if (has_reset)
        json_object_set_new(rec, "budget_reset_at", json_integer(at));
    else
        json_object_del(rec, "budget_reset_at");
}

static int check_row_str(const char *s, size_t size, bool id)
{
    size_t n = strnlen(s, size);
    if (n == size)
        return SB_STORE_E_INVALID;
    if (n == 0)
        return 0;
    if (id)
        return sb_store_check_id(s);
    return utf8_valid((const unsigned char *)s, n) ? 0 : SB_STORE_E_INVALID;
}

int sb_store_spend_row_check(const struct sb_spend_row *r)
{
    if (r->request_id[0] == '\0' || r->cost_nano < 0)
        return SB_STORE_E_INVALID;
    if (check_row_str(r->request_id, sizeof(r->request_id), false) != 0 ||
        check_row_str(r->key_hash, sizeof(r->key_hash), true) != 0 ||
        check_row_str(r->team_id, sizeof(r->team_id), true) != 0 ||
        check_row_str(r->user_id, sizeof(r->user_id), true) != 0 ||
        check_row_str(r->end_user, sizeof(r->end_user), true) != 0 ||
        check_row_str(r->model, sizeof(r->model), false) != 0 ||
        check_row_str(r->deployment, sizeof(r->deployment), false) != 0 ||
        check_row_str(r->provider, sizeof(r->provider), false) != 0 ||
        check_row_str(r->route, sizeof(r->route), false) != 0)
        return SB_STORE_E_INVALID;
    return 0;
}

void sb_store_iso8601(int64_t ms, char *out, size_t out_len)
{
    int64_t secs = ms / 1000, rem = ms % 1000;
    if (rem < 0) {
        rem += 1000;
        secs -= 1;
    }
    time_t t = (time_t)secs;
    struct tm tm;
    char date[24];
    if (gmtime_r(&t, &tm) == NULL || strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        snprintf(date, sizeof(date), "1970-01-01T00:00:00");
    snprintf(out, out_len, "%s.%03dZ", date, (int)rem);
}

static int64_t sat_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

json_t *sb_store_spend_log_json(const struct sb_spend_row *r)
{
    char start[40], end[40];
    sb_store_iso8601(r->start_ms, start, sizeof(start));
    sb_store_iso8601(r->end_ms, end, sizeof(end));
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    int bad = 0;
    bad |= json_object_set_new(o, "request_id", json_string(r->request_id));
    bad |= json_object_set_new(o, "api_key", json_string(r->key_hash));
    bad |= json_object_set_new(o, "team_id", json_string(r->team_id));
    bad |= json_object_set_new(o, "user", json_string(r->user_id));
    bad |= json_object_set_new(o, "end_user", json_string(r->end_user));
    bad |= json_object_set_new(o, "model", json_string(r->model));
    bad |= json_object_set_new(o, "model_id", json_string(r->deployment));
    bad |= json_object_set_new(o, "custom_llm_provider", json_string(r->provider));
    bad |= json_object_set_new(o, "prompt_tokens", json_integer(r->prompt_tokens));
    bad |= json_object_set_new(o, "completion_tokens", json_integer(r->completion_tokens));
    bad |= json_object_set_new(o, "total_tokens",
                               json_integer(sat_add(r->prompt_tokens, r->completion_tokens)));
    bad |= json_object_set_new(o, "cache_read_input_tokens", json_integer(r->cache_read_tokens));
    bad |=
        json_object_set_new(o, "cache_creation_input_tokens", json_integer(r->cache_write_tokens));
    bad |= json_object_set_new(o, "reasoning_tokens", json_integer(r->reasoning_tokens));
    bad |= json_object_set_new(o, "spend", json_real(sb_store_dollars(r->cost_nano)));
    bad |= json_object_set_new(o, "startTime", json_string(start));
    bad |= json_object_set_new(o, "endTime", json_string(end));
    bad |= json_object_set_new(o, "request_duration_ms",
                               json_integer(sat_add(r->end_ms, -r->start_ms)));
    bad |= json_object_set_new(o, "status", json_integer(r->status));
    bad |= json_object_set_new(o, "cache_hit", json_boolean(r->cache_hit));
    bad |= json_object_set_new(o, "cost_known", json_boolean(r->cost_known));
    bad |= json_object_set_new(o, "call_type", json_string(r->route));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

json_t *sb_store_total_json(enum sb_spend_group by, const char *id, int64_t total_nano,
                            int64_t total_tokens, int64_t requests)
{
    const char *name = by == SB_SPEND_BY_KEY     ? "api_key"
                       : by == SB_SPEND_BY_MODEL ? "model"
                                                 : "team_id";
    json_t *o = json_object();
    if (o == NULL)
        return NULL;
    int bad = 0;
    bad |= json_object_set_new(o, name, json_string(id));
    bad |= json_object_set_new(o, "total_spend", json_real(sb_store_dollars(total_nano)));
    bad |= json_object_set_new(o, "total_tokens", json_integer(total_tokens));
    bad |= json_object_set_new(o, "requests", json_integer(requests));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- dispatch ---- */

static bool has_prefix(const char *s, const char *p)
{
    return strncmp(s, p, strlen(p)) == 0;
}

struct sb_store *sb_store_open(const char *url, char *err, size_t err_len)
{
    if (url == NULL) {
        sb_store_set_err(err, err_len, "no database url");
        return NULL;
    }
    if (strcmp(url, "sqlite::memory:") == 0)
        return sb_store_sqlite_open(":memory:", err, err_len);
    if (has_prefix(url, "sqlite://")) {
        const char *path = url + strlen("sqlite://");
        if (path[0] == '\0') {
            sb_store_set_err(err, err_len, "sqlite url without a path");
            return NULL;
        }
        return sb_store_sqlite_open(path, err, err_len);
    }
    if (has_prefix(url, "postgresql://") || has_prefix(url, "postgres://"))
        return sb_store_pg_open(url, err, err_len);
    /* The url may carry a password: never echo it. */
    sb_store_set_err(err, err_len,
                     "unsupported database url scheme (sqlite://, postgresql:// or postgres://)");
    return NULL;
}

void sb_store_close(struct sb_store *s)
{
    if (s != NULL)
        s->ops->close(s);
}

const char *sb_store_backend(const struct sb_store *s)
{
    return s->ops->name;
}

int sb_store_ping(struct sb_store *s)
{
    return s->ops->ping(s);
}

static bool kind_ok(enum sb_entity kind)
{
    return (int)kind >= 0 && (int)kind < SB_ENT_COUNT;
}

int sb_store_put(struct sb_store *s, enum sb_entity kind, const char *id, json_t *record,
                 bool create)
{
    if (!kind_ok(kind) || sb_store_check_id(id) != 0)
        return SB_STORE_E_INVALID;
    struct sb_store_cols c;
    int rc = sb_store_cols_from_record(kind, record, &c);
    if (rc != 0)
        return rc;
    rc = s->ops->put(s, kind, id, &c, create);
    sb_store_cols_free(&c);
    return rc;
}

int sb_store_get(struct sb_store *s, enum sb_entity kind, const char *id, json_t **out)
{
    if (out == NULL)
        return SB_STORE_E_INVALID;
    *out = NULL;
    if (!kind_ok(kind) || sb_store_check_id(id) != 0)
        return SB_STORE_E_INVALID;
    return s->ops->get(s, kind, id, out);
}

int sb_store_delete(struct sb_store *s, enum sb_entity kind, const char *id)
{
    if (!kind_ok(kind) || sb_store_check_id(id) != 0)
        return SB_STORE_E_INVALID;
    return s->ops->del(s, kind, id);
}

int sb_store_list(struct sb_store *s, enum sb_entity kind, const char *field, const char *value,
                  size_t offset, size_t limit, json_t **out)
{
    if (out == NULL)
        return SB_STORE_E_INVALID;
    *out = NULL;
    if (!kind_ok(kind) || offset > INT64_MAX || limit > INT64_MAX)
        return SB_STORE_E_INVALID;
    if (field != NULL) {
        if (kind != SB_ENT_KEY || value == NULL)
            return SB_STORE_E_INVALID;
        if (strcmp(field, "key_alias") == 0) {
            if (check_alias(value) != 0)
                return SB_STORE_E_INVALID;
        } else if (strcmp(field, "team_id") == 0 || strcmp(field, "user_id") == 0) {
            if (sb_store_check_id(value) != 0)
                return SB_STORE_E_INVALID;
        } else {
            return SB_STORE_E_INVALID;
        }
    }
    return s->ops->list(s, kind, field, field ? value : NULL, offset, limit, out);
}

int sb_store_reset_spend(struct sb_store *s, enum sb_entity kind, const char *id,
                         int64_t next_reset)
{
    if (!kind_ok(kind) || sb_store_check_id(id) != 0 || next_reset < 0)
        return SB_STORE_E_INVALID;
    return s->ops->reset_spend(s, kind, id, false, 0, next_reset);
}

int sb_store_reset_spend_if(struct sb_store *s, enum sb_entity kind, const char *id, int64_t expect,
                            int64_t next_reset)
{
    if (!kind_ok(kind) || sb_store_check_id(id) != 0 || next_reset < 0 || expect < 0)
        return SB_STORE_E_INVALID;
    return s->ops->reset_spend(s, kind, id, true, expect, next_reset);
}

int sb_store_spend_carry(struct sb_store *s, enum sb_entity kind, const char *from, const char *to)
{
    if (!kind_ok(kind) || sb_store_check_id(from) != 0 || sb_store_check_id(to) != 0 ||
        strcmp(from, to) == 0)
        return SB_STORE_E_INVALID;
    return s->ops->spend_carry(s, kind, from, to);
}

int sb_store_changes(struct sb_store *s, int64_t after, struct sb_change *out, size_t max,
                     size_t *n, int64_t *head, int64_t *oldest)
{
    int64_t h = 0, o = 0;
    size_t got = 0;
    if (n != NULL)
        *n = 0;
    if (head != NULL)
        *head = 0;
    if (oldest != NULL)
        *oldest = 0;
    if (n == NULL || after < 0 || max > SB_STORE_CHANGES_MAX || (max > 0 && out == NULL))
        return SB_STORE_E_INVALID;
    int rc = s->ops->changes(s, after, out, max, &got, &h, &o);
    if (rc != 0)
        return rc;
    *n = got;
    if (head != NULL)
        *head = h;
    if (oldest != NULL)
        *oldest = o;
    return 0;
}

int sb_store_changes_prune(struct sb_store *s, int64_t before_s, size_t *deleted)
{
    size_t d = 0;
    if (deleted != NULL)
        *deleted = 0;
    if (before_s < 0)
        return SB_STORE_E_INVALID;
    int rc = s->ops->changes_prune(s, before_s, &d);
    if (rc == 0 && deleted != NULL)
        *deleted = d;
    return rc;
}

json_t *sb_store_spend_entry(json_t *out, enum sb_entity kind, const char *id, int64_t spend)
{
    json_t *e = json_object();
    if (e == NULL || json_object_set_new(e, "spend_nano", json_integer(spend)) != 0 ||
        (kind == SB_ENT_KEY && json_object_set_new(e, "model_spend_nano", json_object()) != 0) ||
        json_object_set_new(out, id, e) != 0)
        return NULL;
    return e;
}

int sb_store_spend_read(struct sb_store *s, enum sb_entity kind, const char *const *ids, size_t n,
                        json_t **out)
{
    if (out == NULL)
        return SB_STORE_E_INVALID;
    *out = NULL;
    if (!kind_ok(kind) || n > SB_STORE_SPEND_IDS_MAX || (n > 0 && ids == NULL))
        return SB_STORE_E_INVALID;
    for (size_t i = 0; i < n; i++)
        if (sb_store_check_id(ids[i]) != 0)
            return SB_STORE_E_INVALID;
    if (n == 0) {
        *out = json_object();
        return *out ? 0 : SB_STORE_E_FAILED;
    }
    json_t *arr = json_array();
    if (arr == NULL)
        return SB_STORE_E_FAILED;
    for (size_t i = 0; i < n; i++) {
        if (json_array_append_new(arr, json_string(ids[i])) != 0) {
            json_decref(arr);
            return SB_STORE_E_FAILED;
        }
    }
    char *text = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
    if (text == NULL)
        return SB_STORE_E_FAILED;
    int rc = s->ops->spend_read(s, kind, text, out);
    free(text);
    return rc;
}

int sb_store_spend_write(struct sb_store *s, const struct sb_spend_row *rows, size_t n,
                         size_t *inserted)
{
    if (inserted != NULL)
        *inserted = 0;
    if (n == 0)
        return 0;
    if (rows == NULL)
        return SB_STORE_E_INVALID;
    for (size_t i = 0; i < n; i++)
        if (sb_store_spend_row_check(&rows[i]) != 0)
            return SB_STORE_E_INVALID;
    size_t ins = 0;
    int rc = s->ops->spend_write(s, rows, n, &ins);
    if (rc == 0 && inserted != NULL)
        *inserted = ins;
    return rc;
}

static int check_filter_id(const char *v)
{
    return v == NULL ? 0 : sb_store_check_id(v);
}

int sb_store_spend_logs(struct sb_store *s, const struct sb_spend_filter *f, json_t **out)
{
    if (out == NULL)
        return SB_STORE_E_INVALID;
    *out = NULL;
    struct sb_spend_filter g = {0};
    if (f != NULL)
        g = *f;
    if (check_filter_id(g.key_hash) != 0 || check_filter_id(g.team_id) != 0 ||
        check_filter_id(g.user_id) != 0 || check_filter_id(g.end_user) != 0 ||
        (g.request_id != NULL &&
         (g.request_id[0] == '\0' ||
          strnlen(g.request_id, sizeof(((struct sb_spend_row *)0)->request_id)) ==
              sizeof(((struct sb_spend_row *)0)->request_id))))
        return SB_STORE_E_INVALID;
    if (g.start_ms < 0 || g.end_ms < 0)
        return SB_STORE_E_INVALID;
    if (g.limit == 0)
        g.limit = SB_STORE_LOGS_DEFAULT;
    if (g.limit > SB_STORE_LOGS_MAX)
        g.limit = SB_STORE_LOGS_MAX;
    return s->ops->spend_logs(s, &g, out);
}

int sb_store_spend_totals(struct sb_store *s, enum sb_spend_group by, int64_t start_ms,
                          int64_t end_ms, json_t **out)
{
    if (out == NULL)
        return SB_STORE_E_INVALID;
    *out = NULL;
    if ((by != SB_SPEND_BY_KEY && by != SB_SPEND_BY_MODEL && by != SB_SPEND_BY_TEAM) ||
        start_ms < 0 || end_ms < 0)
        return SB_STORE_E_INVALID;
    return s->ops->spend_totals(s, by, start_ms, end_ms, out);
}

int sb_store_spend_count(struct sb_store *s, int64_t *out)
{
    if (out == NULL)
        return SB_STORE_E_INVALID;
    *out = 0;
    return s->ops->spend_count(s, out);
}

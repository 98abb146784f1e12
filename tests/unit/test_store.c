/* The store suite: every test in `cases` runs against SQLite in memory, against a SQLite file,
 * and against PostgreSQL: the database named by SB_TEST_PG_URL (a libpq URL) when it is set,
 * else a server the suite starts itself in a temp folder when it runs as root and the Debian
 * PostgreSQL 15 binaries are installed (SB_TEST_PG=0 turns that off; otherwise the PostgreSQL
 * run is skipped and says why). Each test gets a fresh, empty store: a new in-memory database,
 * a new temp file, or, for PostgreSQL, the sb_* tables dropped first, so the database named
 * by SB_TEST_PG_URL must be one the suite may wipe. No test depends on another having run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pwd.h>
#include <libpq-fe.h>
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/schema.h"
#include "store/store.h"

/* ---- helpers ---- */

static json_t *obj(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, 0, &e);
    assert_non_null(j);
    return j;
}

static json_t *get_ok(struct sb_store *s, enum sb_entity kind, const char *id)
{
    json_t *r = NULL;
    assert_int_equal(sb_store_get(s, kind, id, &r), 0);
    assert_non_null(r);
    return r;
}

static double spend_of(struct sb_store *s, enum sb_entity kind, const char *id)
{
    json_t *r = get_ok(s, kind, id);
    json_t *sp = json_object_get(r, "spend");
    assert_true(json_is_real(sp));
    double v = json_real_value(sp);
    json_decref(r);
    return v;
}

static void assert_dollars(double got, int64_t nano)
{
    assert_true(fabs(got - (double)nano / 1e9) < 1e-12);
}

static void put_ok(struct sb_store *s, enum sb_entity kind, const char *id, const char *json)
{
    json_t *r = obj(json);
    assert_int_equal(sb_store_put(s, kind, id, r, true), 0);
    json_decref(r);
}

static void copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strlen(src);
    assert_true(n < size);
    memcpy(dst, src, n + 1);
}

static struct sb_spend_row row(const char *req, const char *key, const char *team, const char *user,
                               const char *end_user, const char *model, int64_t cost,
                               int64_t start_ms)
{
    struct sb_spend_row r;
    memset(&r, 0, sizeof(r));
    copy_str(r.request_id, sizeof(r.request_id), req);
    copy_str(r.key_hash, sizeof(r.key_hash), key);
    copy_str(r.team_id, sizeof(r.team_id), team);
    copy_str(r.user_id, sizeof(r.user_id), user);
    copy_str(r.end_user, sizeof(r.end_user), end_user);
    copy_str(r.model, sizeof(r.model), model);
    copy_str(r.deployment, sizeof(r.deployment), "openai/gpt-4o-2024");
    copy_str(r.provider, sizeof(r.provider), "openai");
    copy_str(r.route, sizeof(r.route), "chat_completions");
    r.prompt_tokens = 100;
    r.completion_tokens = 20;
    r.cache_read_tokens = 5;
    r.cache_write_tokens = 3;
    r.reasoning_tokens = 7;
    r.cost_nano = cost;
    r.cost_known = true;
    r.start_ms = start_ms;
    r.end_ms = start_ms + 250;
    r.status = 200;
    return r;
}

static const char *KEY_A = "aaaa000000000000000000000000000000000000000000000000000000000001";
static const char *KEY_B = "bbbb000000000000000000000000000000000000000000000000000000000002";

static int64_t count_of(struct sb_store *s)
{
    int64_t n = -1;
    assert_int_equal(sb_store_spend_count(s, &n), 0);
    return n;
}

static const char *str_member(json_t *o, const char *name)
{
    json_t *v = json_object_get(o, name);
    assert_true(json_is_string(v));
    return json_string_value(v);
}

static const enum sb_entity kinds[] = {SB_ENT_KEY, SB_ENT_TEAM, SB_ENT_USER, SB_ENT_CUSTOMER};

/* ---- the backend-independent tests ---- */

static void t_backend_ping(struct sb_store *s)
{
    const char *b = sb_store_backend(s);
    assert_true(strcmp(b, "sqlite") == 0 || strcmp(b, "postgresql") == 0);
    assert_int_equal(sb_store_ping(s), 0);
    assert_int_equal(count_of(s), 0);
}

static void t_put_get_every_kind(struct sb_store *s)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        json_t *rec = obj("{\"key_alias\":\"alias-1\",\"team_id\":\"team-1\",\"user_id\":"
                          "\"user-1\",\"max_budget\":12.5,\"models\":[\"gpt-4o\",\"claude\"],"
                          "\"metadata\":{\"a\":[1,2,{\"b\":null}]},\"spend\":99.0,"
                          "\"model_spend\":{\"x\":1.0},\"budget_reset_at\":1700000000,"
                          "\"created_at\":\"2024-01-02T03:04:05Z\"}");
        assert_int_equal(sb_store_put(s, kinds[i], "id-1", rec, true), 0);
        json_t *got = get_ok(s, kinds[i], "id-1");
        /* Everything as stored, but spend from the ledger (0) and not from the record. */
        assert_dollars(json_real_value(json_object_get(got, "spend")), 0);
        assert_string_equal(str_member(got, "created_at"), "2024-01-02T03:04:05Z");
        assert_int_equal(json_integer_value(json_object_get(got, "budget_reset_at")), 1700000000);
        json_t *ms = json_object_get(got, "model_spend");
        if (kinds[i] == SB_ENT_KEY) {
            assert_true(json_is_object(ms));
            assert_int_equal(json_object_size(ms), 0);
        } else {
            assert_null(ms);
        }
        json_object_del(got, "spend");
        json_object_del(got, "model_spend");
        json_object_del(rec, "spend");
        json_object_del(rec, "model_spend");
        assert_true(json_equal(got, rec));
        json_decref(got);
        json_decref(rec);
    }
    /* Kinds are separate name spaces. */
    assert_int_equal(sb_store_delete(s, SB_ENT_TEAM, "id-1"), 0);
    json_t *k = get_ok(s, SB_ENT_KEY, "id-1");
    json_decref(k);
}

static void t_create_existing(struct sb_store *s)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        put_ok(s, kinds[i], "dup", "{\"v\":1}");
        json_t *second = obj("{\"v\":2}");
        assert_int_equal(sb_store_put(s, kinds[i], "dup", second, true), SB_STORE_E_EXISTS);
        json_t *got = get_ok(s, kinds[i], "dup");
        assert_int_equal(json_integer_value(json_object_get(got, "v")), 1);
        json_decref(got);
        /* Replace (create = false) overwrites; on a missing id it creates. */
        assert_int_equal(sb_store_put(s, kinds[i], "dup", second, false), 0);
        got = get_ok(s, kinds[i], "dup");
        assert_int_equal(json_integer_value(json_object_get(got, "v")), 2);
        json_decref(got);
        assert_int_equal(sb_store_put(s, kinds[i], "fresh", second, false), 0);
        got = get_ok(s, kinds[i], "fresh");
        json_decref(got);
        json_decref(second);
    }
}

static void t_not_found(struct sb_store *s)
{
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        json_t *r = (json_t *)1;
        assert_int_equal(sb_store_get(s, kinds[i], "missing", &r), SB_STORE_E_NOT_FOUND);
        assert_null(r);
        assert_int_equal(sb_store_delete(s, kinds[i], "missing"), SB_STORE_E_NOT_FOUND);
        assert_int_equal(sb_store_reset_spend(s, kinds[i], "missing", 0), SB_STORE_E_NOT_FOUND);
        json_t *arr = NULL;
        assert_int_equal(sb_store_list(s, kinds[i], NULL, NULL, 0, 0, &arr), 0);
        assert_int_equal(json_array_size(arr), 0);
        json_decref(arr);
    }
}

static void t_delete(struct sb_store *s)
{
    put_ok(s, SB_ENT_KEY, KEY_A, "{\"key_alias\":\"a\"}");
    put_ok(s, SB_ENT_TEAM, "t1", "{}");
    struct sb_spend_row r = row("req-del-1", KEY_A, "t1", "", "", "gpt-4o", 1000, 1000);
    assert_int_equal(sb_store_spend_write(s, &r, 1, NULL), 0);
    assert_int_equal(sb_store_delete(s, SB_ENT_KEY, KEY_A), 0);
    json_t *g = NULL;
    assert_int_equal(sb_store_get(s, SB_ENT_KEY, KEY_A, &g), SB_STORE_E_NOT_FOUND);
    assert_int_equal(sb_store_delete(s, SB_ENT_KEY, KEY_A), SB_STORE_E_NOT_FOUND);
    /* A key created again under the same hash starts with no spend and no model spend. */
    put_ok(s, SB_ENT_KEY, KEY_A, "{}");
    g = get_ok(s, SB_ENT_KEY, KEY_A);
    assert_dollars(json_real_value(json_object_get(g, "spend")), 0);
    assert_int_equal(json_object_size(json_object_get(g, "model_spend")), 0);
    json_decref(g);
    /* The ledger keeps the row; the team is untouched. */
    assert_int_equal(count_of(s), 1);
    assert_dollars(spend_of(s, SB_ENT_TEAM, "t1"), 1000);
}

static void t_list_order_paging(struct sb_store *s)
{
    static const char *ids[] = {"m", "b", "z", "a", "B", "k", "c", "y", "0", "aa"};
    static const char *sorted[] = {"0", "B", "a", "aa", "b", "c", "k", "m", "y", "z"};
    const size_t n = sizeof(ids) / sizeof(ids[0]);
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        for (size_t i = 0; i < n; i++) {
            json_t *rec =
                json_pack("{s:s, s:s, s:s, s:i}", "key_alias", i % 2 ? "odd" : "even", "team_id",
                          i % 3 ? "tx" : "ty", "user_id", i < 5 ? "u1" : "u2", "i", (int)i);
            assert_int_equal(sb_store_put(s, kinds[k], ids[i], rec, true), 0);
            json_decref(rec);
        }
        json_t *all = NULL;
        assert_int_equal(sb_store_list(s, kinds[k], NULL, NULL, 0, 0, &all), 0);
        assert_int_equal(json_array_size(all), n);
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(all, i);
            size_t at = (size_t)json_integer_value(json_object_get(e, "i"));
            assert_string_equal(ids[at], sorted[i]);
            assert_true(json_is_real(json_object_get(e, "spend")));
        }
        json_decref(all);
        json_t *page = NULL;
        assert_int_equal(sb_store_list(s, kinds[k], NULL, NULL, 3, 4, &page), 0);
        assert_int_equal(json_array_size(page), 4);
        size_t first = (size_t)json_integer_value(json_object_get(json_array_get(page, 0), "i"));
        assert_string_equal(ids[first], sorted[3]);
        json_decref(page);
        assert_int_equal(sb_store_list(s, kinds[k], NULL, NULL, 8, 100, &page), 0);
        assert_int_equal(json_array_size(page), 2);
        json_decref(page);
        assert_int_equal(sb_store_list(s, kinds[k], NULL, NULL, 50, 0, &page), 0);
        assert_int_equal(json_array_size(page), 0);
        json_decref(page);
    }
    /* Filters are for keys. */
    json_t *f = NULL;
    assert_int_equal(sb_store_list(s, SB_ENT_KEY, "key_alias", "odd", 0, 0, &f), 0);
    assert_int_equal(json_array_size(f), 5);
    for (size_t i = 0; i < json_array_size(f); i++)
        assert_string_equal(str_member(json_array_get(f, i), "key_alias"), "odd");
    json_decref(f);
    assert_int_equal(sb_store_list(s, SB_ENT_KEY, "team_id", "ty", 0, 0, &f), 0);
    assert_int_equal(json_array_size(f), 4); /* i = 0, 3, 6, 9 */
    assert_string_equal(ids[json_integer_value(json_object_get(json_array_get(f, 0), "i"))], "a");
    json_decref(f);
    assert_int_equal(sb_store_list(s, SB_ENT_KEY, "user_id", "u2", 1, 2, &f), 0);
    assert_int_equal(json_array_size(f), 2);
    json_decref(f);
    assert_int_equal(sb_store_list(s, SB_ENT_KEY, "user_id", "nobody", 0, 0, &f), 0);
    assert_int_equal(json_array_size(f), 0);
    json_decref(f);
    assert_int_equal(sb_store_list(s, SB_ENT_KEY, "data", "x", 0, 0, &f), SB_STORE_E_INVALID);
    assert_null(f);
    assert_int_equal(sb_store_list(s, SB_ENT_KEY, "spend_nano", "1", 0, 0, &f), SB_STORE_E_INVALID);
    assert_int_equal(sb_store_list(s, SB_ENT_TEAM, "team_id", "tx", 0, 0, &f), SB_STORE_E_INVALID);
    assert_int_equal(sb_store_list(s, SB_ENT_KEY, "team_id", NULL, 0, 0, &f), SB_STORE_E_INVALID);
    /* A changed key_alias / team_id moves the key between filters. */
    json_t *rec = obj("{\"key_alias\":\"renamed\",\"team_id\":\"tz\",\"i\":3}");
    assert_int_equal(sb_store_put(s, SB_ENT_KEY, "a", rec, false), 0);
    json_decref(rec);
    assert_int_equal(sb_store_list(s, SB_ENT_KEY, "team_id", "ty", 0, 0, &f), 0);
    assert_int_equal(json_array_size(f), 3);
    json_decref(f);
    assert_int_equal(sb_store_list(s, SB_ENT_KEY, "key_alias", "renamed", 0, 0, &f), 0);
    assert_int_equal(json_array_size(f), 1);
    json_decref(f);
    assert_int_equal(sb_store_list(s, SB_ENT_KEY, "user_id", "u1", 0, 0, &f), 0);
    assert_int_equal(json_array_size(f), 4); /* "a" lost its user_id */
    json_decref(f);
}

static void t_invalid_arguments(struct sb_store *s)
{
    json_t *rec = obj("{}");
    char long_id[200];
    memset(long_id, 'x', sizeof(long_id) - 1);
    long_id[sizeof(long_id) - 1] = '\0';
    long_id[128] = '\0';
    assert_int_equal(sb_store_put(s, SB_ENT_TEAM, long_id, rec, true), 0); /* 128: the cap */
    long_id[128] = 'x';
    long_id[129] = '\0';
    static const char *bad_ids[] = {"", "\xff\xfe", "a\xc0\xafz", "\xed\xa0\x80"};
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        json_t *out = NULL;
        assert_int_equal(sb_store_put(s, kinds[k], NULL, rec, true), SB_STORE_E_INVALID);
        assert_int_equal(sb_store_put(s, kinds[k], long_id, rec, true), SB_STORE_E_INVALID);
        assert_int_equal(sb_store_get(s, kinds[k], long_id, &out), SB_STORE_E_INVALID);
        assert_int_equal(sb_store_delete(s, kinds[k], long_id), SB_STORE_E_INVALID);
        assert_int_equal(sb_store_reset_spend(s, kinds[k], long_id, 0), SB_STORE_E_INVALID);
        for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++)
            assert_int_equal(sb_store_put(s, kinds[k], bad_ids[i], rec, true), SB_STORE_E_INVALID);
        assert_int_equal(sb_store_put(s, kinds[k], "ok", NULL, true), SB_STORE_E_INVALID);
        json_t *arr = json_array();
        assert_int_equal(sb_store_put(s, kinds[k], "ok", arr, true), SB_STORE_E_INVALID);
        json_decref(arr);
        json_t *bad_reset = obj("{\"budget_reset_at\":\"tomorrow\"}");
        assert_int_equal(sb_store_put(s, kinds[k], "ok", bad_reset, true), SB_STORE_E_INVALID);
        json_decref(bad_reset);
        assert_int_equal(sb_store_get(s, kinds[k], "ok", &out), SB_STORE_E_NOT_FOUND);
        assert_int_equal(sb_store_reset_spend(s, kinds[k], "x", -1), SB_STORE_E_INVALID);
    }
    static const char *bad_key_records[] = {"{\"key_alias\":5}", "{\"team_id\":[\"t\"]}",
                                            "{\"user_id\":{}}", "{\"budget_reset_at\":-1}",
                                            "{\"budget_reset_at\":1.5}"};
    for (size_t i = 0; i < sizeof(bad_key_records) / sizeof(bad_key_records[0]); i++) {
        json_t *b = obj(bad_key_records[i]);
        assert_int_equal(sb_store_put(s, SB_ENT_KEY, KEY_A, b, true), SB_STORE_E_INVALID);
        json_decref(b);
    }
    /* key_alias is capped at 1024 bytes; the cap itself is fine. */
    char alias[1026];
    memset(alias, 'k', sizeof(alias) - 1);
    alias[1025] = '\0';
    json_t *al = json_pack("{s:s}", "key_alias", alias);
    assert_int_equal(sb_store_put(s, SB_ENT_KEY, KEY_B, al, true), SB_STORE_E_INVALID);
    json_decref(al);
    alias[1024] = '\0';
    al = json_pack("{s:s}", "key_alias", alias);
    assert_int_equal(sb_store_put(s, SB_ENT_KEY, KEY_B, al, true), 0);
    json_decref(al);
    json_t *fl = NULL;
    assert_int_equal(sb_store_list(s, SB_ENT_KEY, "key_alias", alias, 0, 0, &fl), 0);
    assert_int_equal(json_array_size(fl), 1);
    json_decref(fl);
    /* A column with an embedded NUL would be cut by the database: refused. */
    json_t *nul = json_object();
    json_object_set_new(nul, "team_id", json_stringn("te\0am", 5));
    assert_int_equal(sb_store_put(s, SB_ENT_KEY, KEY_A, nul, true), SB_STORE_E_INVALID);
    json_decref(nul);
    /* Elsewhere in the record it is data like any other and comes back intact. */
    nul = json_object();
    json_object_set_new(nul, "note", json_stringn("a\0b", 3));
    assert_int_equal(sb_store_put(s, SB_ENT_USER, "nul", nul, true), 0);
    json_t *back = get_ok(s, SB_ENT_USER, "nul");
    assert_int_equal(json_string_length(json_object_get(back, "note")), 3);
    assert_memory_equal(json_string_value(json_object_get(back, "note")), "a\0b", 3);
    json_decref(back);
    json_decref(nul);
    /* A record past the data cap (1 MiB) is refused; one just under it is stored intact. */
    size_t big = 1024 * 1024 + 10;
    char *text = malloc(big + 1);
    assert_non_null(text);
    memset(text, 'q', big);
    text[big] = '\0';
    json_t *huge = json_pack("{s:s}", "blob", text);
    assert_int_equal(sb_store_put(s, SB_ENT_USER, "huge", huge, true), SB_STORE_E_INVALID);
    json_decref(huge);
    text[200000] = '\0';
    json_t *large = json_pack("{s:s}", "blob", text);
    assert_int_equal(sb_store_put(s, SB_ENT_USER, "large", large, true), 0);
    json_t *got = get_ok(s, SB_ENT_USER, "large");
    assert_string_equal(str_member(got, "blob"), text);
    json_decref(got);
    json_decref(large);
    free(text);
    json_decref(rec);
}

static const char *const nasty[] = {
    "'; DROP TABLE sb_keys; --",
    "\"; DROP TABLE sb_spend_logs; --",
    "' OR '1'='1",
    "1; DELETE FROM sb_teams",
    "a'b\"c`d\\e",
    "%s%n%x",
    "$1 $$ ?1 :name @x",
    "\xe2\x80\xae\xf0\x9f\x92\xa3\xe6\xbc\xa2\xd7\xa9",
    "\t\n\r\x01\x1f\x7f",
    "Robert'); DROP TABLE sb_users;--",
    "*/ /*",
    "x' UNION SELECT token, data, spend_nano FROM sb_keys --",
};

static void t_injection_strings(struct sb_store *s)
{
    const size_t n = sizeof(nasty) / sizeof(nasty[0]);
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
            json_t *rec = json_pack("{s:s, s:s, s:s, s:{s:s}}", "key_alias", nasty[i], "team_id",
                                    nasty[i], "user_id", nasty[i], "metadata", nasty[i], nasty[i]);
            assert_non_null(rec);
            assert_int_equal(sb_store_put(s, kinds[k], nasty[i], rec, true), 0);
            json_t *got = get_ok(s, kinds[k], nasty[i]);
            json_object_del(got, "spend");
            json_object_del(got, "model_spend");
            assert_true(json_equal(got, rec));
            json_decref(got);
            json_decref(rec);
        }
        json_t *f = NULL;
        assert_int_equal(sb_store_list(s, SB_ENT_KEY, "key_alias", nasty[i], 0, 0, &f), 0);
        assert_int_equal(json_array_size(f), 1);
        json_decref(f);
        assert_int_equal(sb_store_list(s, SB_ENT_KEY, "team_id", nasty[i], 0, 0, &f), 0);
        assert_int_equal(json_array_size(f), 1);
        json_decref(f);
        struct sb_spend_row r =
            row(nasty[i], nasty[i], nasty[i], nasty[i], nasty[i], nasty[i], 10, 1000 + (int64_t)i);
        size_t ins = 0;
        assert_int_equal(sb_store_spend_write(s, &r, 1, &ins), 0);
        assert_int_equal(ins, 1);
        struct sb_spend_filter filt = {.key_hash = nasty[i], .request_id = nasty[i]};
        assert_int_equal(sb_store_spend_logs(s, &filt, &f), 0);
        assert_int_equal(json_array_size(f), 1);
        assert_string_equal(str_member(json_array_get(f, 0), "model"), nasty[i]);
        json_decref(f);
        assert_dollars(spend_of(s, SB_ENT_KEY, nasty[i]), 10);
        json_t *ms = NULL;
        json_t *key = get_ok(s, SB_ENT_KEY, nasty[i]);
        ms = json_object_get(json_object_get(key, "model_spend"), nasty[i]);
        assert_true(json_is_real(ms));
        json_decref(key);
    }
    /* Every table is still there with everything in it. */
    for (size_t k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
        json_t *all = NULL;
        assert_int_equal(sb_store_list(s, kinds[k], NULL, NULL, 0, 0, &all), 0);
        assert_int_equal(json_array_size(all), n);
        json_decref(all);
    }
    assert_int_equal(count_of(s), (int64_t)n);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(sb_store_delete(s, SB_ENT_TEAM, nasty[i]), 0);
    json_t *all = NULL;
    assert_int_equal(sb_store_list(s, SB_ENT_KEY, NULL, NULL, 0, 0, &all), 0);
    assert_int_equal(json_array_size(all), n);
    json_decref(all);
}

static void t_spend_exactly_once(struct sb_store *s)
{
    put_ok(s, SB_ENT_KEY, KEY_A, "{}");
    struct sb_spend_row rows[4] = {
        row("req-1", KEY_A, "", "", "", "gpt-4o", 1500, 1000),
        row("req-2", KEY_A, "", "", "", "gpt-4o", 2500, 2000),
        row("req-1", KEY_A, "", "", "", "gpt-4o", 1500, 1000), /* same batch, again */
        row("req-3", KEY_A, "", "", "", "gpt-4o", 7, 3000),
    };
    size_t ins = 99;
    assert_int_equal(sb_store_spend_write(s, rows, 4, &ins), 0);
    assert_int_equal(ins, 3);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), 4007);
    /* The whole batch again (a journal replayed after a crash): nothing is added. */
    assert_int_equal(sb_store_spend_write(s, rows, 4, &ins), 0);
    assert_int_equal(ins, 0);
    /* A batch mixing old and new rows adds only the new one. */
    struct sb_spend_row more[2] = {rows[1], row("req-4", KEY_A, "", "", "", "gpt-4o", 3, 4000)};
    assert_int_equal(sb_store_spend_write(s, more, 2, &ins), 0);
    assert_int_equal(ins, 1);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), 4010);
    assert_int_equal(count_of(s), 4);
    /* Empty batch. */
    assert_int_equal(sb_store_spend_write(s, NULL, 0, &ins), 0);
    assert_int_equal(ins, 0);
}

static void t_spend_totals_per_entity(struct sb_store *s)
{
    put_ok(s, SB_ENT_KEY, KEY_A, "{\"team_id\":\"team-1\",\"user_id\":\"user-1\"}");
    put_ok(s, SB_ENT_TEAM, "team-1", "{\"team_alias\":\"one\"}");
    put_ok(s, SB_ENT_USER, "user-1", "{\"user_role\":\"internal_user\"}");
    put_ok(s, SB_ENT_CUSTOMER, "cust-known", "{\"user_id\":\"cust-known\",\"blocked\":false}");
    struct sb_spend_row rows[] = {
        row("r1", KEY_A, "team-1", "user-1", "cust-known", "gpt-4o", 1000000001, 1),
        row("r2", KEY_A, "team-1", "user-1", "cust-new", "claude", 333333333, 2),
        row("r3", KEY_A, "team-1", "user-1", "cust-new", "gpt-4o", 1, 3),
        /* Ids with no record: the row is in the ledger, no totals are created for them. */
        row("r4", KEY_B, "team-ghost", "user-ghost", "", "gpt-4o", 5, 4),
    };
    size_t ins = 0;
    assert_int_equal(sb_store_spend_write(s, rows, 4, &ins), 0);
    assert_int_equal(ins, 4);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), 1333333335);
    assert_dollars(spend_of(s, SB_ENT_TEAM, "team-1"), 1333333335);
    assert_dollars(spend_of(s, SB_ENT_USER, "user-1"), 1333333335);
    assert_dollars(spend_of(s, SB_ENT_CUSTOMER, "cust-known"), 1000000001);
    assert_dollars(spend_of(s, SB_ENT_CUSTOMER, "cust-new"), 333333334);
    json_t *c = get_ok(s, SB_ENT_CUSTOMER, "cust-new");
    assert_string_equal(str_member(c, "user_id"), "cust-new");
    json_decref(c);
    c = get_ok(s, SB_ENT_CUSTOMER, "cust-known");
    assert_true(json_is_false(json_object_get(c, "blocked"))); /* record kept */
    json_decref(c);
    json_t *g = NULL;
    assert_int_equal(sb_store_get(s, SB_ENT_KEY, KEY_B, &g), SB_STORE_E_NOT_FOUND);
    assert_int_equal(sb_store_get(s, SB_ENT_TEAM, "team-ghost", &g), SB_STORE_E_NOT_FOUND);
    assert_int_equal(sb_store_get(s, SB_ENT_USER, "user-ghost", &g), SB_STORE_E_NOT_FOUND);
    json_t *k = get_ok(s, SB_ENT_KEY, KEY_A);
    json_t *ms = json_object_get(k, "model_spend");
    assert_int_equal(json_object_size(ms), 2);
    assert_dollars(json_real_value(json_object_get(ms, "gpt-4o")), 1000000002);
    assert_dollars(json_real_value(json_object_get(ms, "claude")), 333333333);
    assert_string_equal(str_member(k, "team_id"), "team-1");
    json_decref(k);
    /* Replacing a record keeps its spend. */
    json_t *rec = obj("{\"team_alias\":\"renamed\"}");
    assert_int_equal(sb_store_put(s, SB_ENT_TEAM, "team-1", rec, false), 0);
    json_decref(rec);
    assert_dollars(spend_of(s, SB_ENT_TEAM, "team-1"), 1333333335);
    /* Exact integer sums: a million nano-dollar rows are one dollar cent-exactly. */
    struct sb_spend_row tiny[3] = {row("t1", KEY_A, "", "", "", "m", 1, 10),
                                   row("t2", KEY_A, "", "", "", "m", 2, 11),
                                   row("t3", KEY_A, "", "", "", "m", 4, 12)};
    assert_int_equal(sb_store_spend_write(s, tiny, 3, NULL), 0);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), 1333333342);
}

static void t_reset_spend(struct sb_store *s)
{
    put_ok(s, SB_ENT_KEY, KEY_A, "{\"team_id\":\"t\",\"budget_reset_at\":100}");
    put_ok(s, SB_ENT_TEAM, "t", "{}");
    put_ok(s, SB_ENT_USER, "u", "{}");
    struct sb_spend_row r = row("rs-1", KEY_A, "t", "u", "c", "gpt-4o", 5000, 1);
    assert_int_equal(sb_store_spend_write(s, &r, 1, NULL), 0);
    assert_int_equal(sb_store_reset_spend(s, SB_ENT_KEY, KEY_A, 2000000000), 0);
    json_t *k = get_ok(s, SB_ENT_KEY, KEY_A);
    assert_dollars(json_real_value(json_object_get(k, "spend")), 0);
    assert_int_equal(json_object_size(json_object_get(k, "model_spend")), 0);
    assert_int_equal(json_integer_value(json_object_get(k, "budget_reset_at")), 2000000000);
    json_decref(k);
    /* The others are not touched by a key's reset. */
    assert_dollars(spend_of(s, SB_ENT_TEAM, "t"), 5000);
    assert_int_equal(sb_store_reset_spend(s, SB_ENT_TEAM, "t", 0), 0);
    json_t *t = get_ok(s, SB_ENT_TEAM, "t");
    assert_dollars(json_real_value(json_object_get(t, "spend")), 0);
    assert_null(json_object_get(t, "budget_reset_at"));
    json_decref(t);
    assert_int_equal(sb_store_reset_spend(s, SB_ENT_USER, "u", 5), 0);
    assert_dollars(spend_of(s, SB_ENT_USER, "u"), 0);
    assert_int_equal(sb_store_reset_spend(s, SB_ENT_CUSTOMER, "c", 0), 0);
    assert_dollars(spend_of(s, SB_ENT_CUSTOMER, "c"), 0);
    /* Spend after a reset counts from zero; the ledger is untouched by resets. */
    struct sb_spend_row r2 = row("rs-2", KEY_A, "t", "u", "c", "gpt-4o", 7, 2);
    assert_int_equal(sb_store_spend_write(s, &r2, 1, NULL), 0);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), 7);
    assert_dollars(spend_of(s, SB_ENT_CUSTOMER, "c"), 7);
    assert_int_equal(count_of(s), 2);
    /* The reset time survives a replace only if the caller keeps it: the column follows the
     * record on put. */
    json_t *rec = obj("{\"team_id\":\"t\",\"budget_reset_at\":300}");
    assert_int_equal(sb_store_put(s, SB_ENT_KEY, KEY_A, rec, false), 0);
    json_decref(rec);
    k = get_ok(s, SB_ENT_KEY, KEY_A);
    assert_int_equal(json_integer_value(json_object_get(k, "budget_reset_at")), 300);
    json_decref(k);
}

static void t_spend_logs(struct sb_store *s)
{
    struct sb_spend_row rows[] = {
        row("L1", KEY_A, "t1", "u1", "e1", "gpt-4o", 1000, 1700000000000),
        row("L2", KEY_A, "t1", "u2", "e2", "claude", 2000, 1700000001000),
        row("L3", KEY_B, "t2", "u1", "e1", "gpt-4o", 3000, 1700000002000),
        row("L4", KEY_B, "", "", "", "gpt-4o", 4000, 1700000003000),
        row("L0", KEY_A, "t1", "u1", "", "gpt-4o", 5000, 1700000001000), /* tie on time */
    };
    rows[1].cost_known = false;
    rows[1].cache_hit = true;
    rows[1].status = 429;
    assert_int_equal(sb_store_spend_write(s, rows, 5, NULL), 0);
    json_t *out = NULL;
    assert_int_equal(sb_store_spend_logs(s, NULL, &out), 0);
    assert_int_equal(json_array_size(out), 5);
    static const char *order[] = {"L4", "L3", "L2", "L0", "L1"};
    for (size_t i = 0; i < 5; i++)
        assert_string_equal(str_member(json_array_get(out, i), "request_id"), order[i]);
    json_t *l2 = json_array_get(out, 2);
    assert_string_equal(str_member(l2, "api_key"), KEY_A);
    assert_string_equal(str_member(l2, "team_id"), "t1");
    assert_string_equal(str_member(l2, "user"), "u2");
    assert_string_equal(str_member(l2, "end_user"), "e2");
    assert_string_equal(str_member(l2, "model"), "claude");
    assert_string_equal(str_member(l2, "model_id"), "openai/gpt-4o-2024");
    assert_string_equal(str_member(l2, "custom_llm_provider"), "openai");
    assert_string_equal(str_member(l2, "call_type"), "chat_completions");
    assert_string_equal(str_member(l2, "startTime"), "2023-11-14T22:13:21.000Z");
    assert_string_equal(str_member(l2, "endTime"), "2023-11-14T22:13:21.250Z");
    assert_int_equal(json_integer_value(json_object_get(l2, "prompt_tokens")), 100);
    assert_int_equal(json_integer_value(json_object_get(l2, "completion_tokens")), 20);
    assert_int_equal(json_integer_value(json_object_get(l2, "total_tokens")), 120);
    assert_int_equal(json_integer_value(json_object_get(l2, "cache_read_input_tokens")), 5);
    assert_int_equal(json_integer_value(json_object_get(l2, "cache_creation_input_tokens")), 3);
    assert_int_equal(json_integer_value(json_object_get(l2, "reasoning_tokens")), 7);
    assert_int_equal(json_integer_value(json_object_get(l2, "request_duration_ms")), 250);
    assert_int_equal(json_integer_value(json_object_get(l2, "status")), 429);
    assert_true(json_is_true(json_object_get(l2, "cache_hit")));
    assert_true(json_is_false(json_object_get(l2, "cost_known")));
    assert_dollars(json_real_value(json_object_get(l2, "spend")), 2000);
    assert_true(json_is_true(json_object_get(json_array_get(out, 0), "cost_known")));
    json_decref(out);

    struct {
        struct sb_spend_filter f;
        size_t n;
        const char *first;
    } cases[] = {
        {{.key_hash = KEY_A}, 3, "L2"},
        {{.key_hash = KEY_B}, 2, "L4"},
        {{.team_id = "t1"}, 3, "L2"},
        {{.user_id = "u1"}, 3, "L3"},
        {{.end_user = "e1"}, 2, "L3"},
        {{.request_id = "L0"}, 1, "L0"},
        {{.request_id = "nope"}, 0, NULL},
        {{.key_hash = KEY_A, .user_id = "u1"}, 2, "L0"},
        {{.start_ms = 1700000001000}, 4, "L4"},
        {{.end_ms = 1700000001000}, 1, "L1"},
        {{.start_ms = 1700000001000, .end_ms = 1700000003000}, 3, "L3"},
        {{.limit = 2}, 2, "L4"},
        {{.team_id = "nobody"}, 0, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(sb_store_spend_logs(s, &cases[i].f, &out), 0);
        assert_int_equal(json_array_size(out), cases[i].n);
        if (cases[i].first)
            assert_string_equal(str_member(json_array_get(out, 0), "request_id"), cases[i].first);
        json_decref(out);
    }
    struct sb_spend_filter bad = {.team_id = ""};
    assert_int_equal(sb_store_spend_logs(s, &bad, &out), SB_STORE_E_INVALID);
    assert_null(out);
    struct sb_spend_filter neg = {.start_ms = -5};
    assert_int_equal(sb_store_spend_logs(s, &neg, &out), SB_STORE_E_INVALID);
}

static void t_spend_totals_groups(struct sb_store *s)
{
    struct sb_spend_row rows[] = {
        row("G1", KEY_A, "t1", "", "", "gpt-4o", 100, 1000),
        row("G2", KEY_A, "t2", "", "", "claude", 200, 2000),
        row("G3", KEY_B, "t1", "", "", "gpt-4o", 1000, 3000),
        row("G4", "", "", "", "", "claude", 50, 4000), /* no key, no team */
    };
    assert_int_equal(sb_store_spend_write(s, rows, 4, NULL), 0);
    json_t *out = NULL;
    assert_int_equal(sb_store_spend_totals(s, SB_SPEND_BY_KEY, 0, 0, &out), 0);
    assert_int_equal(json_array_size(out), 2);
    json_t *e = json_array_get(out, 0);
    assert_string_equal(str_member(e, "api_key"), KEY_B);
    assert_dollars(json_real_value(json_object_get(e, "total_spend")), 1000);
    assert_int_equal(json_integer_value(json_object_get(e, "requests")), 1);
    e = json_array_get(out, 1);
    assert_string_equal(str_member(e, "api_key"), KEY_A);
    assert_dollars(json_real_value(json_object_get(e, "total_spend")), 300);
    assert_int_equal(json_integer_value(json_object_get(e, "total_tokens")), 240);
    assert_int_equal(json_integer_value(json_object_get(e, "requests")), 2);
    json_decref(out);

    assert_int_equal(sb_store_spend_totals(s, SB_SPEND_BY_MODEL, 0, 0, &out), 0);
    assert_int_equal(json_array_size(out), 2);
    assert_string_equal(str_member(json_array_get(out, 0), "model"), "gpt-4o");
    assert_dollars(json_real_value(json_object_get(json_array_get(out, 0), "total_spend")), 1100);
    assert_string_equal(str_member(json_array_get(out, 1), "model"), "claude");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(out, 1), "requests")), 2);
    json_decref(out);

    assert_int_equal(sb_store_spend_totals(s, SB_SPEND_BY_TEAM, 0, 0, &out), 0);
    assert_int_equal(json_array_size(out), 2);
    assert_string_equal(str_member(json_array_get(out, 0), "team_id"), "t1");
    assert_dollars(json_real_value(json_object_get(json_array_get(out, 0), "total_spend")), 1100);
    json_decref(out);

    /* [2000, 4000): G2 and G3. */
    assert_int_equal(sb_store_spend_totals(s, SB_SPEND_BY_MODEL, 2000, 4000, &out), 0);
    assert_int_equal(json_array_size(out), 2);
    assert_string_equal(str_member(json_array_get(out, 0), "model"), "gpt-4o");
    assert_dollars(json_real_value(json_object_get(json_array_get(out, 0), "total_spend")), 1000);
    assert_dollars(json_real_value(json_object_get(json_array_get(out, 1), "total_spend")), 200);
    json_decref(out);
    assert_int_equal(sb_store_spend_totals(s, SB_SPEND_BY_KEY, 5000, 0, &out), 0);
    assert_int_equal(json_array_size(out), 0);
    json_decref(out);
    assert_int_equal(sb_store_spend_totals(s, (enum sb_spend_group)9, 0, 0, &out),
                     SB_STORE_E_INVALID);
    assert_null(out);
    assert_int_equal(count_of(s), 4);
}

static void t_spend_invalid_rows(struct sb_store *s)
{
    put_ok(s, SB_ENT_KEY, KEY_A, "{}");
    struct sb_spend_row rows[3] = {row("ok-1", KEY_A, "", "", "", "m", 10, 1),
                                   row("ok-2", KEY_A, "", "", "", "m", 10, 2),
                                   row("ok-3", KEY_A, "", "", "", "m", 10, 3)};
    size_t ins = 7;
    /* One bad row refuses the whole batch: nothing written. */
    memset(rows[1].model, 'x', sizeof(rows[1].model)); /* not NUL-terminated */
    assert_int_equal(sb_store_spend_write(s, rows, 3, &ins), SB_STORE_E_INVALID);
    assert_int_equal(ins, 0);
    assert_int_equal(count_of(s), 0);
    rows[1] = row("ok-2", KEY_A, "", "", "", "m", -10, 2);
    assert_int_equal(sb_store_spend_write(s, rows, 3, &ins), SB_STORE_E_INVALID);
    rows[1] = row("", KEY_A, "", "", "", "m", 10, 2);
    assert_int_equal(sb_store_spend_write(s, rows, 3, &ins), SB_STORE_E_INVALID);
    rows[1] = row("ok-2", KEY_A, "", "", "\xff\xff", "m", 10, 2);
    assert_int_equal(sb_store_spend_write(s, rows, 3, &ins), SB_STORE_E_INVALID);
    assert_int_equal(sb_store_spend_write(s, NULL, 2, &ins), SB_STORE_E_INVALID);
    assert_int_equal(count_of(s), 0);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), 0);
    /* Long but within the fields' sizes: stored intact. */
    char longid[133];
    memset(longid, 'r', 132);
    longid[132] = '\0';
    rows[1] = row(longid, KEY_A, "", "", "", "m", 10, 2);
    memset(rows[1].deployment, 'd', sizeof(rows[1].deployment) - 1);
    assert_int_equal(sb_store_spend_write(s, rows, 3, &ins), 0);
    assert_int_equal(ins, 3);
    struct sb_spend_filter f = {.request_id = longid};
    json_t *out = NULL;
    assert_int_equal(sb_store_spend_logs(s, &f, &out), 0);
    assert_int_equal(json_array_size(out), 1);
    assert_int_equal(strlen(str_member(json_array_get(out, 0), "model_id")), 256);
    json_decref(out);
}

static void t_large_batch(struct sb_store *s)
{
    enum { N = 10000 };
    put_ok(s, SB_ENT_KEY, KEY_A, "{\"team_id\":\"big\"}");
    put_ok(s, SB_ENT_TEAM, "big", "{}");
    struct sb_spend_row *rows = calloc(N, sizeof(*rows));
    assert_non_null(rows);
    int64_t total = 0;
    for (int i = 0; i < N; i++) {
        char id[32];
        snprintf(id, sizeof(id), "bulk-%05d", i);
        rows[i] = row(id, KEY_A, "big", "", i % 10 ? "" : "bulk-user", i % 2 ? "a" : "b",
                      123457 + i, 1000 + i);
        total += 123457 + i;
    }
    size_t ins = 0;
    assert_int_equal(sb_store_spend_write(s, rows, N, &ins), 0);
    assert_int_equal(ins, N);
    assert_int_equal(count_of(s), N);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), total);
    assert_dollars(spend_of(s, SB_ENT_TEAM, "big"), total);
    assert_int_equal(sb_store_spend_write(s, rows, N, &ins), 0);
    assert_int_equal(ins, 0);
    assert_int_equal(count_of(s), N);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), total);
    json_t *out = NULL;
    struct sb_spend_filter f = {.limit = 0};
    assert_int_equal(sb_store_spend_logs(s, &f, &out), 0);
    assert_int_equal(json_array_size(out), 1000); /* the default limit */
    assert_string_equal(str_member(json_array_get(out, 0), "request_id"), "bulk-09999");
    json_decref(out);
    free(rows);
}

/* More distinct entities in one batch than the totals are summed for at once: every total
 * still gets every row's cost, once. */
static void t_many_entities(struct sb_store *s)
{
    enum { N = 300 };
    put_ok(s, SB_ENT_KEY, KEY_A, "{}");
    struct sb_spend_row *rows = calloc(N, sizeof(*rows));
    assert_non_null(rows);
    for (int i = 0; i < N; i++) {
        char id[32], cust[32], model[16];
        snprintf(id, sizeof(id), "many-%03d", i);
        snprintf(cust, sizeof(cust), "cust-%03d", i % 150);
        snprintf(model, sizeof(model), "m%d", i % 3);
        rows[i] = row(id, KEY_A, "", "", cust, model, 1000 + i, 10);
    }
    size_t ins = 0;
    assert_int_equal(sb_store_spend_write(s, rows, N, &ins), 0);
    assert_int_equal(ins, N);
    int64_t total = 0, m0 = 0, c7 = 0;
    for (int i = 0; i < N; i++) {
        total += 1000 + i;
        if (i % 3 == 0)
            m0 += 1000 + i;
        if (i % 150 == 7)
            c7 += 1000 + i;
    }
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), total);
    assert_dollars(spend_of(s, SB_ENT_CUSTOMER, "cust-007"), c7);
    json_t *k = NULL;
    assert_int_equal(sb_store_get(s, SB_ENT_KEY, KEY_A, &k), 0);
    json_t *ms = json_object_get(k, "model_spend");
    assert_true(json_is_object(ms));
    assert_dollars(json_number_value(json_object_get(ms, "m0")), m0);
    json_decref(k);
    free(rows);
}

/* A key already summed meets a new model just as the sums fill up: the key's and the model's
 * sums still go to the database together, so the new model's spend is kept. */
static void t_model_at_full_sums(struct sb_store *s)
{
    enum { N = 63 };
    put_ok(s, SB_ENT_KEY, KEY_A, "{}");
    struct sb_spend_row *rows = calloc(N, sizeof(*rows));
    assert_non_null(rows);
    for (int i = 0; i < N; i++) {
        char id[32], cust[32];
        snprintf(id, sizeof(id), "full-%02d", i);
        snprintf(cust, sizeof(cust), "c%d", i % 62);
        rows[i] = row(id, KEY_A, "", "", cust, i < 62 ? "m0" : "m1", 1000, 10);
    }
    size_t ins = 0;
    assert_int_equal(sb_store_spend_write(s, rows, N, &ins), 0);
    assert_int_equal(ins, N);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), 63000);
    assert_dollars(spend_of(s, SB_ENT_CUSTOMER, "c0"), 2000);
    json_t *k = NULL;
    assert_int_equal(sb_store_get(s, SB_ENT_KEY, KEY_A, &k), 0);
    json_t *ms = json_object_get(k, "model_spend");
    assert_true(json_is_object(ms));
    assert_dollars(json_number_value(json_object_get(ms, "m0")), 62000);
    assert_dollars(json_number_value(json_object_get(ms, "m1")), 1000);
    json_decref(k);
    free(rows);
}

/* The rows of t_spend_batch_totals: row i's key, model, team, user and end user are picked
 * by index (-1: the row has none; the last index of each kind: an id without a record). */
#define BT_KEYS   3
#define BT_MODELS 4
#define BT_TEAMS  2
#define BT_USERS  2
#define BT_CUSTS  3
#define BT_ROWS   1400

static const char *const bt_keys[BT_KEYS + 1] = {
    "aaaa000000000000000000000000000000000000000000000000000000000001",
    "bbbb000000000000000000000000000000000000000000000000000000000002",
    "cccc000000000000000000000000000000000000000000000000000000000003",
    "dddd00000000000000000000000000000000000000000000000000000000dead"};
static const char *const bt_models[BT_MODELS] = {"gpt-4o", "claude-sonnet", "gpt-4o-mini", "o3"};
static const char *const bt_teams[BT_TEAMS + 1] = {"team-a", "team-b", "team-ghost"};
static const char *const bt_users[BT_USERS + 1] = {"user-a", "user-b", "user-ghost"};
static const char *const bt_custs[BT_CUSTS] = {"eu-1", "eu-2", "eu-new"};

struct bt_pick {
    int key, model, team, user, cust;
    int64_t cost;
};

static struct bt_pick bt_pick(int i)
{
    struct bt_pick p;
    p.key = i % 29 == 0 ? -1 : i % 23 == 0 ? BT_KEYS : i % BT_KEYS;
    p.model = i % 19 == 0 ? -1 : (i / 3 + i / 7) % BT_MODELS;
    p.team = i % 11 == 0 ? -1 : i % 17 == 0 ? BT_TEAMS : (i / 2) % BT_TEAMS;
    p.user = i % 13 == 0 ? -1 : i % 31 == 0 ? BT_USERS : (i / 5) % BT_USERS;
    p.cust = i % 9 == 0 ? -1 : i % BT_CUSTS;
    /* Up to 4 dollars a row, so that every sum is far past 32 bits; every 37th row is free. */
    p.cost = i % 37 == 0 ? 0 : (int64_t)((uint64_t)(i + 1) * 2654435761u % 4000000000u) + 1;
    return p;
}

static struct sb_spend_row bt_row(int i)
{
    struct bt_pick p = bt_pick(i);
    char id[32];
    snprintf(id, sizeof(id), "bt-%04d", i);
    return row(id, p.key < 0 ? "" : bt_keys[p.key], p.team < 0 ? "" : bt_teams[p.team],
               p.user < 0 ? "" : bt_users[p.user], p.cust < 0 ? "" : bt_custs[p.cust],
               p.model < 0 ? "" : bt_models[p.model], p.cost, 1000 + i);
}

/* The running totals as they must be, summed here one row at a time. */
struct bt_ref {
    bool seen[BT_ROWS];
    size_t rows;
    int64_t key[BT_KEYS], key_model[BT_KEYS][BT_MODELS], team[BT_TEAMS], user[BT_USERS],
        cust[BT_CUSTS];
    bool model_used[BT_KEYS][BT_MODELS];
};

static void bt_write(struct sb_store *s, struct bt_ref *ref, const int *idx, size_t n)
{
    struct sb_spend_row *rows = calloc(n, sizeof(*rows));
    assert_non_null(rows);
    size_t fresh = 0;
    for (size_t j = 0; j < n; j++) {
        int i = idx[j];
        assert_true(i >= 0 && i < BT_ROWS);
        rows[j] = bt_row(i);
        if (ref->seen[i])
            continue;
        ref->seen[i] = true;
        fresh++;
        struct bt_pick p = bt_pick(i);
        if (p.key >= 0 && p.key < BT_KEYS) {
            ref->key[p.key] += p.cost;
            if (p.model >= 0) {
                ref->key_model[p.key][p.model] += p.cost;
                ref->model_used[p.key][p.model] = true;
            }
        }
        if (p.team >= 0 && p.team < BT_TEAMS)
            ref->team[p.team] += p.cost;
        if (p.user >= 0 && p.user < BT_USERS)
            ref->user[p.user] += p.cost;
        if (p.cust >= 0)
            ref->cust[p.cust] += p.cost;
    }
    size_t ins = 12345;
    assert_int_equal(sb_store_spend_write(s, rows, n, &ins), 0);
    assert_int_equal(ins, fresh);
    ref->rows += fresh;
    free(rows);
}

static int64_t bt_spend(json_t *out, const char *id)
{
    json_t *v = json_object_get(json_object_get(out, id), "spend_nano");
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

static void bt_check(struct sb_store *s, const struct bt_ref *ref)
{
    assert_int_equal(count_of(s), ref->rows);
    json_t *out = NULL;
    /* The id without a record is asked for too: it must not have gained one. */
    assert_int_equal(sb_store_spend_read(s, SB_ENT_KEY, bt_keys, BT_KEYS + 1, &out), 0);
    assert_int_equal(json_object_size(out), BT_KEYS);
    for (int k = 0; k < BT_KEYS; k++) {
        assert_int_equal(bt_spend(out, bt_keys[k]), ref->key[k]);
        json_t *ms = json_object_get(json_object_get(out, bt_keys[k]), "model_spend_nano");
        size_t used = 0;
        for (int m = 0; m < BT_MODELS; m++) {
            json_t *v = json_object_get(ms, bt_models[m]);
            if (!ref->model_used[k][m]) {
                assert_null(v);
                continue;
            }
            used++;
            assert_true(json_is_integer(v));
            assert_int_equal(json_integer_value(v), ref->key_model[k][m]);
        }
        /* Rows without a model add to the key only. */
        assert_int_equal(json_object_size(ms), used);
    }
    json_decref(out);

    assert_int_equal(sb_store_spend_read(s, SB_ENT_TEAM, bt_teams, BT_TEAMS + 1, &out), 0);
    assert_int_equal(json_object_size(out), BT_TEAMS);
    for (int t = 0; t < BT_TEAMS; t++)
        assert_int_equal(bt_spend(out, bt_teams[t]), ref->team[t]);
    json_decref(out);

    assert_int_equal(sb_store_spend_read(s, SB_ENT_USER, bt_users, BT_USERS + 1, &out), 0);
    assert_int_equal(json_object_size(out), BT_USERS);
    for (int u = 0; u < BT_USERS; u++)
        assert_int_equal(bt_spend(out, bt_users[u]), ref->user[u]);
    json_decref(out);

    assert_int_equal(sb_store_spend_read(s, SB_ENT_CUSTOMER, bt_custs, BT_CUSTS, &out), 0);
    assert_int_equal(json_object_size(out), BT_CUSTS);
    for (int c = 0; c < BT_CUSTS; c++)
        assert_int_equal(bt_spend(out, bt_custs[c]), ref->cust[c]);
    json_decref(out);

    /* The record view agrees with the raw totals. */
    assert_dollars(spend_of(s, SB_ENT_KEY, bt_keys[1]), ref->key[1]);
    assert_dollars(spend_of(s, SB_ENT_CUSTOMER, "eu-new"), ref->cust[2]);
}

/* Batches as the ledger sends them, over three keys with several models, two teams, two users
 * and three end users (one without a record until the first batch), with ids that have no
 * record and rows without a key or a model, and request ids repeated within a batch, across
 * batches and across the first thousand rows of a batch: every running total is exactly the
 * sum of the costs of the rows that went in, each counted once. */
static void t_spend_batch_totals(struct sb_store *s)
{
    for (int k = 0; k < BT_KEYS; k++)
        put_ok(s, SB_ENT_KEY, bt_keys[k], "{}");
    for (int t = 0; t < BT_TEAMS; t++)
        put_ok(s, SB_ENT_TEAM, bt_teams[t], "{}");
    for (int u = 0; u < BT_USERS; u++)
        put_ok(s, SB_ENT_USER, bt_users[u], "{}");
    put_ok(s, SB_ENT_CUSTOMER, "eu-1", "{\"user_id\":\"eu-1\"}");
    put_ok(s, SB_ENT_CUSTOMER, "eu-2", "{\"user_id\":\"eu-2\",\"blocked\":false}");
    json_t *g = NULL;
    assert_int_equal(sb_store_get(s, SB_ENT_CUSTOMER, "eu-new", &g), SB_STORE_E_NOT_FOUND);

    struct bt_ref *ref = calloc(1, sizeof(*ref));
    int *idx = calloc(1100, sizeof(*idx));
    assert_non_null(ref);
    assert_non_null(idx);

    /* 300 rows, every tenth a copy of a row five places earlier. */
    for (int j = 0; j < 300; j++)
        idx[j] = j % 10 == 9 ? j - 5 : j;
    bt_write(s, ref, idx, 300);
    assert_int_equal(ref->rows, 270);
    bt_check(s, ref);
    g = get_ok(s, SB_ENT_CUSTOMER, "eu-new");
    assert_string_equal(str_member(g, "user_id"), "eu-new");
    json_decref(g);
    g = get_ok(s, SB_ENT_CUSTOMER, "eu-2");
    assert_true(json_is_false(json_object_get(g, "blocked"))); /* an existing record is kept */
    json_decref(g);

    /* The same 300 again (a journal replayed): nothing is added. */
    bt_write(s, ref, idx, 300);
    assert_int_equal(ref->rows, 270);
    bt_check(s, ref);

    /* 1100 rows: every eighth repeats one of the first batch (some of which it never held),
     * and three rows past the thousandth repeat rows of the same batch's first thousand. */
    for (int j = 0; j < 1100; j++)
        idx[j] = j % 8 == 0 ? (j / 8) * 3 % 300 : 300 + j;
    idx[1010] = 300 + 10;
    idx[1050] = 300 + 50;
    idx[1099] = 300 + 99;
    bt_write(s, ref, idx, 1100);
    bt_check(s, ref);

    /* A small batch of one new row among old ones. */
    int tail[4] = {0, 300 + 1, BT_ROWS - 1, 300 + 1};
    bt_write(s, ref, tail, 4);
    bt_check(s, ref);

    for (int k = 0; k < BT_KEYS; k++)
        assert_true(ref->key[k] > INT64_C(1) << 38);
    assert_int_equal(sb_store_get(s, SB_ENT_KEY, bt_keys[BT_KEYS], &g), SB_STORE_E_NOT_FOUND);
    assert_int_equal(sb_store_get(s, SB_ENT_TEAM, "team-ghost", &g), SB_STORE_E_NOT_FOUND);
    assert_int_equal(sb_store_get(s, SB_ENT_USER, "user-ghost", &g), SB_STORE_E_NOT_FOUND);
    free(idx);
    free(ref);
}

/* Ids of the logs of one key, newest first, joined by ','. */
static void logs_of_key(struct sb_store *s, const char *key, char *out, size_t out_len)
{
    json_t *arr = NULL;
    struct sb_spend_filter f = {.key_hash = key};
    assert_int_equal(sb_store_spend_logs(s, &f, &arr), 0);
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *o = json_array_get(arr, i);
        assert_string_equal(str_member(o, "api_key"), key);
        int w =
            snprintf(out + used, out_len - used, "%s%s", i ? "," : "", str_member(o, "request_id"));
        assert_true(w > 0 && (size_t)w < out_len - used);
        used += (size_t)w;
    }
    json_decref(arr);
}

/* Batches of 15 to 33 rows: a repeated id (the first row wins, even with another cost), ids
 * repeated far apart and at the end, and old rows among new ones. */
static void t_spend_chunk_edges(struct sb_store *s)
{
    put_ok(s, SB_ENT_KEY, KEY_A, "{}");
    static const size_t sizes[] = {15, 16, 17, 31, 32, 33};
    struct sb_spend_row rows[40];
    int64_t total = 0, count = 0;
    int next = 0;
    for (size_t z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
        for (size_t i = 0; i < sizes[z]; i++) {
            char id[32];
            snprintf(id, sizeof(id), "edge-%04d", next++);
            rows[i] = row(id, KEY_A, "", "", "", "gpt-4o", 1000 + next, 1000 + next);
            total += 1000 + next;
        }
        size_t ins = 0;
        assert_int_equal(sb_store_spend_write(s, rows, sizes[z], &ins), 0);
        assert_int_equal(ins, sizes[z]);
        count += (int64_t)sizes[z];
        /* Replayed whole: nothing. */
        assert_int_equal(sb_store_spend_write(s, rows, sizes[z], &ins), 0);
        assert_int_equal(ins, 0);
    }
    assert_int_equal(count_of(s), count);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), total);

    /* 33 rows: [0, 16) a chunk, [16, 32) a chunk, 32 alone. */
    for (int i = 0; i < 33; i++) {
        char id[32];
        snprintf(id, sizeof(id), "mix-%02d", i);
        rows[i] = row(id, KEY_A, "", "", "", "gpt-4o", 1, 5000 + i);
    }
    rows[5] = row("mix-01", KEY_A, "", "", "", "gpt-4o", 777, 5005);  /* repeat, other cost */
    rows[15] = row("edge-0003", KEY_A, "", "", "", "gpt-4o", 999, 1); /* already billed */
    rows[20] = row("mix-16", KEY_A, "", "", "", "gpt-4o", 555, 5020); /* repeat in chunk 2 */
    rows[32] = row("mix-17", KEY_A, "", "", "", "gpt-4o", 333, 5032); /* repeat, last alone */
    size_t ins = 0;
    assert_int_equal(sb_store_spend_write(s, rows, 33, &ins), 0);
    assert_int_equal(ins, 29);
    total += 29;
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), total);
    assert_int_equal(count_of(s), count + 29);
    json_t *arr = NULL;
    struct sb_spend_filter f = {.request_id = "mix-01"};
    assert_int_equal(sb_store_spend_logs(s, &f, &arr), 0);
    assert_int_equal(json_array_size(arr), 1);
    assert_dollars(json_real_value(json_object_get(json_array_get(arr, 0), "spend")), 1);
    json_decref(arr);
    /* The same batch again: nothing, and nothing added. */
    assert_int_equal(sb_store_spend_write(s, rows, 33, &ins), 0);
    assert_int_equal(ins, 0);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), total);

    /* A chunk of 16 copies of one new id: one row, billed once. */
    for (int i = 0; i < 16; i++)
        rows[i] = row("same", KEY_A, "", "", "", "gpt-4o", 10 + i, 9000);
    assert_int_equal(sb_store_spend_write(s, rows, 16, &ins), 0);
    assert_int_equal(ins, 1);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), total + 10);
    json_t *k = get_ok(s, SB_ENT_KEY, KEY_A);
    assert_dollars(json_real_value(json_object_get(json_object_get(k, "model_spend"), "gpt-4o")),
                   total + 10);
    json_decref(k);
}

/* Keys that share their first 15 hex digits (SQLite indexes those as an integer) or are not
 * hex at all: a key's logs and totals never take another key's rows. */
static void t_spend_logs_similar_keys(struct sb_store *s)
{
    static const char *k1 = "aaaa000000000000000000000000000000000000000000000000000000000001";
    static const char *k2 = "aaaa000000000000000000000000000000000000000000000000000000000009";
    static const char *k3 = "aaaa00000000000f";
    static const char *k4 = "zz'; DROP TABLE sb_spend_logs; --";
    struct sb_spend_row rows[20];
    const char *keys[] = {k1, k2, k3, k4};
    for (int i = 0; i < 20; i++) {
        char id[32];
        snprintf(id, sizeof(id), "sk-%02d", i);
        rows[i] = row(id, keys[i % 4], "", "", "", "m", 10 * (i % 4 + 1), 100 + i);
    }
    assert_int_equal(sb_store_spend_write(s, rows, 20, NULL), 0);
    char got[256];
    logs_of_key(s, k1, got, sizeof(got));
    assert_string_equal(got, "sk-16,sk-12,sk-08,sk-04,sk-00");
    logs_of_key(s, k2, got, sizeof(got));
    assert_string_equal(got, "sk-17,sk-13,sk-09,sk-05,sk-01");
    logs_of_key(s, k3, got, sizeof(got));
    assert_string_equal(got, "sk-18,sk-14,sk-10,sk-06,sk-02");
    logs_of_key(s, k4, got, sizeof(got));
    assert_string_equal(got, "sk-19,sk-15,sk-11,sk-07,sk-03");
    logs_of_key(s, "aaaa0000000000000", got, sizeof(got)); /* a prefix is another key */
    assert_string_equal(got, "");
    /* With a time window and a limit too. */
    json_t *arr = NULL;
    struct sb_spend_filter f = {.key_hash = k2, .start_ms = 105, .end_ms = 117, .limit = 1};
    assert_int_equal(sb_store_spend_logs(s, &f, &arr), 0);
    assert_int_equal(json_array_size(arr), 1);
    assert_string_equal(str_member(json_array_get(arr, 0), "request_id"), "sk-13");
    json_decref(arr);
    assert_int_equal(sb_store_spend_totals(s, SB_SPEND_BY_KEY, 0, 0, &arr), 0);
    assert_int_equal(json_array_size(arr), 4);
    for (int i = 0; i < 4; i++) {
        json_t *e = json_array_get(arr, (size_t)i);
        assert_string_equal(str_member(e, "api_key"), keys[3 - i]);
        assert_dollars(json_real_value(json_object_get(e, "total_spend")), 50 * (4 - i));
        assert_int_equal(json_integer_value(json_object_get(e, "requests")), 5);
    }
    json_decref(arr);
}

/* ---- the change feed ---- */

static size_t changes_ok(struct sb_store *s, int64_t after, struct sb_change *out, size_t max,
                         int64_t *head, int64_t *oldest)
{
    size_t n = 99;
    assert_int_equal(sb_store_changes(s, after, out, max, &n, head, oldest), 0);
    assert_true(n <= max);
    return n;
}

static void t_change_feed(struct sb_store *s)
{
    struct sb_change ch[32];
    int64_t head = -1, oldest = -1;
    assert_int_equal(changes_ok(s, 0, ch, 32, &head, &oldest), 0);
    assert_int_equal(head, 0);
    assert_int_equal(oldest, 0);

    put_ok(s, SB_ENT_KEY, KEY_A, "{\"team_id\":\"t\",\"budget_reset_at\":100}");
    put_ok(s, SB_ENT_TEAM, "t", "{}");
    put_ok(s, SB_ENT_USER, "u", "{}");
    json_t *r = obj("{\"key_alias\":\"x\",\"budget_reset_at\":100}");
    assert_int_equal(sb_store_put(s, SB_ENT_KEY, KEY_A, r, false), 0);
    /* Writes that change nothing log nothing. */
    assert_int_equal(sb_store_put(s, SB_ENT_TEAM, "t", r, true), SB_STORE_E_EXISTS);
    json_decref(r);
    assert_int_equal(sb_store_delete(s, SB_ENT_USER, "nobody"), SB_STORE_E_NOT_FOUND);
    assert_int_equal(sb_store_reset_spend(s, SB_ENT_TEAM, "nobody", 0), SB_STORE_E_NOT_FOUND);
    /* Spend is not logged (sb_store_spend_read), not even the customer it creates. */
    struct sb_spend_row sr = row("cf-1", KEY_A, "t", "u", "c", "m", 10, 1);
    assert_int_equal(sb_store_spend_write(s, &sr, 1, NULL), 0);
    assert_int_equal(sb_store_delete(s, SB_ENT_TEAM, "t"), 0);
    assert_int_equal(sb_store_reset_spend(s, SB_ENT_USER, "u", 0), 0);
    assert_int_equal(sb_store_reset_spend_if(s, SB_ENT_KEY, KEY_A, 100, 200), 0);
    assert_int_equal(sb_store_reset_spend_if(s, SB_ENT_KEY, KEY_A, 100, 300), SB_STORE_E_CONFLICT);

    static const struct {
        enum sb_entity kind;
        const char *id;
    } want[] = {{SB_ENT_KEY, NULL}, {SB_ENT_TEAM, "t"}, {SB_ENT_USER, "u"}, {SB_ENT_KEY, NULL},
                {SB_ENT_TEAM, "t"}, {SB_ENT_USER, "u"}, {SB_ENT_KEY, NULL}};
    size_t n = changes_ok(s, 0, ch, 32, &head, &oldest);
    assert_int_equal(n, 7);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(ch[i].kind, want[i].kind);
        assert_string_equal(ch[i].id, want[i].id ? want[i].id : KEY_A);
        if (i > 0)
            assert_true(ch[i].seq > ch[i - 1].seq);
    }
    assert_int_equal(head, ch[6].seq);
    assert_int_equal(oldest, ch[0].seq);

    /* Paging: after a number, bounded. */
    struct sb_change page[2];
    assert_int_equal(changes_ok(s, ch[2].seq, page, 2, NULL, NULL), 2);
    assert_int_equal(page[0].seq, ch[3].seq);
    assert_int_equal(page[1].seq, ch[4].seq);
    assert_int_equal(changes_ok(s, head, ch, 32, NULL, NULL), 0);
    /* max 0: only the ends. */
    int64_t h2 = 0;
    assert_int_equal(changes_ok(s, 0, NULL, 0, &h2, NULL), 0);
    assert_int_equal(h2, head);

    size_t dummy;
    assert_int_equal(sb_store_changes(s, -1, ch, 32, &dummy, NULL, NULL), SB_STORE_E_INVALID);
    assert_int_equal(sb_store_changes(s, 0, ch, SB_STORE_CHANGES_MAX + 1, &dummy, NULL, NULL),
                     SB_STORE_E_INVALID);
    assert_int_equal(sb_store_changes(s, 0, NULL, 1, &dummy, NULL, NULL), SB_STORE_E_INVALID);
    assert_int_equal(sb_store_changes(s, 0, ch, 1, NULL, NULL, NULL), SB_STORE_E_INVALID);

    /* An id full of SQL comes back byte for byte. */
    const char *evil = "'); DELETE FROM sb_changes; --";
    put_ok(s, SB_ENT_CUSTOMER, evil, "{}");
    assert_int_equal(changes_ok(s, head, ch, 32, &h2, NULL), 1);
    assert_string_equal(ch[0].id, evil);
    assert_int_equal(ch[0].kind, SB_ENT_CUSTOMER);
    assert_int_equal(h2, ch[0].seq);
}

static void t_change_prune(struct sb_store *s)
{
    put_ok(s, SB_ENT_TEAM, "a", "{}");
    put_ok(s, SB_ENT_TEAM, "b", "{}");
    put_ok(s, SB_ENT_TEAM, "c", "{}");
    struct sb_change ch[8];
    int64_t head = 0, oldest = 0;
    assert_int_equal(changes_ok(s, 0, ch, 8, &head, &oldest), 3);
    size_t del = 99;
    /* Nothing is old enough. */
    assert_int_equal(sb_store_changes_prune(s, 1, &del), 0);
    assert_int_equal(del, 0);
    /* Everything is, but the newest row stays, so oldest tells a reader what it missed. */
    assert_int_equal(sb_store_changes_prune(s, INT32_MAX, &del), 0);
    assert_int_equal(del, 2);
    int64_t h2 = 0, o2 = 0;
    assert_int_equal(changes_ok(s, 0, ch, 8, &h2, &o2), 1);
    assert_int_equal(ch[0].seq, head);
    assert_int_equal(h2, head);
    assert_int_equal(o2, head);
    /* Numbers are never reused after a prune. */
    assert_int_equal(sb_store_delete(s, SB_ENT_TEAM, "c"), 0);
    assert_int_equal(changes_ok(s, head, ch, 8, &h2, NULL), 1);
    assert_true(ch[0].seq > head);
    assert_int_equal(sb_store_changes_prune(s, -1, NULL), SB_STORE_E_INVALID);
}

static void t_reset_spend_if(struct sb_store *s)
{
    put_ok(s, SB_ENT_KEY, KEY_A, "{\"budget_reset_at\":100}");
    put_ok(s, SB_ENT_TEAM, "t", "{}");
    struct sb_spend_row r = row("ri-1", KEY_A, "t", "", "", "m", 5000, 1);
    assert_int_equal(sb_store_spend_write(s, &r, 1, NULL), 0);
    /* Another instance moved the period on: nothing is written. */
    assert_int_equal(sb_store_reset_spend_if(s, SB_ENT_KEY, KEY_A, 99, 500), SB_STORE_E_CONFLICT);
    json_t *k = get_ok(s, SB_ENT_KEY, KEY_A);
    assert_dollars(json_real_value(json_object_get(k, "spend")), 5000);
    assert_int_equal(json_integer_value(json_object_get(k, "budget_reset_at")), 100);
    assert_int_equal(json_object_size(json_object_get(k, "model_spend")), 1);
    json_decref(k);
    /* The instance that saw 100 resets once; the second one to see 100 finds 500. */
    assert_int_equal(sb_store_reset_spend_if(s, SB_ENT_KEY, KEY_A, 100, 500), 0);
    assert_int_equal(sb_store_reset_spend_if(s, SB_ENT_KEY, KEY_A, 100, 600), SB_STORE_E_CONFLICT);
    struct sb_spend_row r2 = row("ri-2", KEY_A, "t", "", "", "m", 7, 2);
    assert_int_equal(sb_store_spend_write(s, &r2, 1, NULL), 0);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), 7);
    k = get_ok(s, SB_ENT_KEY, KEY_A);
    assert_int_equal(json_integer_value(json_object_get(k, "budget_reset_at")), 500);
    json_decref(k);
    /* expect 0 is "no reset time". */
    assert_int_equal(sb_store_reset_spend_if(s, SB_ENT_TEAM, "t", 5, 50), SB_STORE_E_CONFLICT);
    assert_int_equal(sb_store_reset_spend_if(s, SB_ENT_TEAM, "t", 0, 50), 0);
    assert_dollars(spend_of(s, SB_ENT_TEAM, "t"), 0);
    assert_int_equal(sb_store_reset_spend_if(s, SB_ENT_TEAM, "t", 50, 0), 0);
    assert_int_equal(sb_store_reset_spend_if(s, SB_ENT_USER, "missing", 0, 0),
                     SB_STORE_E_NOT_FOUND);
    assert_int_equal(sb_store_reset_spend_if(s, SB_ENT_USER, "u", -1, 0), SB_STORE_E_INVALID);
}

static void t_spend_read(struct sb_store *s)
{
    put_ok(s, SB_ENT_KEY, KEY_A, "{}");
    put_ok(s, SB_ENT_KEY, KEY_B, "{}");
    put_ok(s, SB_ENT_TEAM, "t'; --", "{}");
    struct sb_spend_row rows[3] = {row("sr-1", KEY_A, "t'; --", "", "", "m1", 100, 1),
                                   row("sr-2", KEY_A, "t'; --", "", "", "m2", 20, 2),
                                   row("sr-3", KEY_A, "", "", "c", "m1", 3, 3)};
    assert_int_equal(sb_store_spend_write(s, rows, 3, NULL), 0);

    const char *ids[] = {KEY_A, KEY_B, "missing"};
    json_t *out = NULL;
    assert_int_equal(sb_store_spend_read(s, SB_ENT_KEY, ids, 3, &out), 0);
    assert_int_equal(json_object_size(out), 2);
    json_t *a = json_object_get(out, KEY_A);
    assert_int_equal(json_integer_value(json_object_get(a, "spend_nano")), 123);
    json_t *ms = json_object_get(a, "model_spend_nano");
    assert_int_equal(json_object_size(ms), 2);
    assert_int_equal(json_integer_value(json_object_get(ms, "m1")), 103);
    assert_int_equal(json_integer_value(json_object_get(ms, "m2")), 20);
    json_t *b = json_object_get(out, KEY_B);
    assert_int_equal(json_integer_value(json_object_get(b, "spend_nano")), 0);
    assert_int_equal(json_object_size(json_object_get(b, "model_spend_nano")), 0);
    json_decref(out);

    const char *teams[] = {"t'; --"};
    assert_int_equal(sb_store_spend_read(s, SB_ENT_TEAM, teams, 1, &out), 0);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(out, "t'; --"), "spend_nano")), 120);
    assert_null(json_object_get(json_object_get(out, "t'; --"), "model_spend_nano"));
    json_decref(out);
    const char *cust[] = {"c"};
    assert_int_equal(sb_store_spend_read(s, SB_ENT_CUSTOMER, cust, 1, &out), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(out, "c"), "spend_nano")),
                     3);
    json_decref(out);

    assert_int_equal(sb_store_spend_read(s, SB_ENT_USER, NULL, 0, &out), 0);
    assert_int_equal(json_object_size(out), 0);
    json_decref(out);
    const char *bad[] = {""};
    assert_int_equal(sb_store_spend_read(s, SB_ENT_USER, bad, 1, &out), SB_STORE_E_INVALID);
    assert_int_equal(sb_store_spend_read(s, SB_ENT_USER, ids, SB_STORE_SPEND_IDS_MAX + 1, &out),
                     SB_STORE_E_INVALID);
}

static int64_t model_nano(json_t *rec, const char *model)
{
    json_t *v = json_object_get(json_object_get(rec, "model_spend"), model);
    assert_true(json_is_real(v));
    return (int64_t)llround(json_real_value(v) * 1e9);
}

static void t_spend_carry(struct sb_store *s)
{
    static const char *KEY_C = "cccc000000000000000000000000000000000000000000000000000000000003";
    put_ok(s, SB_ENT_KEY, KEY_A, "{\"team_id\":\"t\",\"budget_reset_at\":1700000000}");
    put_ok(s, SB_ENT_KEY, KEY_B, "{}");
    put_ok(s, SB_ENT_TEAM, "t", "{}");
    put_ok(s, SB_ENT_TEAM, "t2", "{}");
    struct sb_spend_row rows[] = {
        row("c1", KEY_A, "t", "", "", "m1", 1000, 1),
        row("c2", KEY_A, "t", "", "", "m2", 200, 2),
        row("c3", KEY_A, "t", "", "", "", 30, 3), /* no model: the key's total only */
        row("c4", KEY_B, "", "", "", "m1", 4, 4),
    };
    assert_int_equal(sb_store_spend_write(s, rows, 4, NULL), 0);

    /* A missing source or target writes nothing. */
    assert_int_equal(sb_store_spend_carry(s, SB_ENT_KEY, "missing", KEY_B), SB_STORE_E_NOT_FOUND);
    assert_int_equal(sb_store_spend_carry(s, SB_ENT_KEY, KEY_A, KEY_C), SB_STORE_E_NOT_FOUND);
    json_t *b = get_ok(s, SB_ENT_KEY, KEY_B);
    assert_dollars(json_real_value(json_object_get(b, "spend")), 4);
    assert_int_equal(json_object_size(json_object_get(b, "model_spend")), 1);
    json_decref(b);
    put_ok(s, SB_ENT_KEY, KEY_C, "{}"); /* no per-model rows were left behind for it */
    json_t *c = get_ok(s, SB_ENT_KEY, KEY_C);
    assert_dollars(json_real_value(json_object_get(c, "spend")), 0);
    assert_int_equal(json_object_size(json_object_get(c, "model_spend")), 0);
    json_decref(c);
    assert_int_equal(sb_store_delete(s, SB_ENT_KEY, KEY_C), 0);

    /* Added to what the target has; the source keeps its own. */
    assert_int_equal(sb_store_spend_carry(s, SB_ENT_KEY, KEY_A, KEY_B), 0);
    b = get_ok(s, SB_ENT_KEY, KEY_B);
    assert_dollars(json_real_value(json_object_get(b, "spend")), 1234);
    assert_int_equal(json_object_size(json_object_get(b, "model_spend")), 2);
    assert_int_equal(model_nano(b, "m1"), 1004);
    assert_int_equal(model_nano(b, "m2"), 200);
    assert_null(json_object_get(b, "budget_reset_at"));
    json_decref(b);
    json_t *a = get_ok(s, SB_ENT_KEY, KEY_A);
    assert_dollars(json_real_value(json_object_get(a, "spend")), 1230);
    assert_int_equal(model_nano(a, "m1"), 1000);
    assert_int_equal(json_integer_value(json_object_get(a, "budget_reset_at")), 1700000000);

    /* What /key/regenerate does: the record under a new id, carry, delete the old one. The
     * reset time goes with the record, the spend with the carry, and both outlive the old id
     * and later spend on the new one adds to them. */
    assert_int_equal(sb_store_put(s, SB_ENT_KEY, KEY_C, a, true), 0);
    json_decref(a);
    assert_int_equal(sb_store_spend_carry(s, SB_ENT_KEY, KEY_A, KEY_C), 0);
    assert_int_equal(sb_store_delete(s, SB_ENT_KEY, KEY_A), 0);
    struct sb_spend_row late[] = {row("c5", KEY_A, "t", "", "", "m1", 50000, 5),
                                  row("c6", KEY_C, "t", "", "", "m2", 5, 6)};
    assert_int_equal(sb_store_spend_write(s, late, 2, NULL), 0);
    c = get_ok(s, SB_ENT_KEY, KEY_C);
    assert_dollars(json_real_value(json_object_get(c, "spend")), 1235);
    assert_int_equal(model_nano(c, "m1"), 1000);
    assert_int_equal(model_nano(c, "m2"), 205);
    assert_int_equal(json_integer_value(json_object_get(c, "budget_reset_at")), 1700000000);
    assert_string_equal(str_member(c, "team_id"), "t");
    json_decref(c);
    const char *ids[] = {KEY_C};
    json_t *read = NULL;
    assert_int_equal(sb_store_spend_read(s, SB_ENT_KEY, ids, 1, &read), 0);
    json_t *e = json_object_get(read, KEY_C);
    assert_int_equal(json_integer_value(json_object_get(e, "spend_nano")), 1235);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(e, "model_spend_nano"), "m2")), 205);
    json_decref(read);

    /* Other kinds carry their total; a team has no per-model spend. */
    assert_int_equal(sb_store_spend_carry(s, SB_ENT_TEAM, "t", "t2"), 0);
    assert_dollars(spend_of(s, SB_ENT_TEAM, "t2"), 51235);
    assert_dollars(spend_of(s, SB_ENT_TEAM, "t"), 51235);
    assert_int_equal(sb_store_spend_carry(s, SB_ENT_USER, "u", "t2"), SB_STORE_E_NOT_FOUND);

    /* Refused before the database. */
    assert_int_equal(sb_store_spend_carry(s, SB_ENT_KEY, KEY_C, KEY_C), SB_STORE_E_INVALID);
    assert_int_equal(sb_store_spend_carry(s, SB_ENT_KEY, "", KEY_C), SB_STORE_E_INVALID);
    assert_int_equal(sb_store_spend_carry(s, SB_ENT_KEY, KEY_C, NULL), SB_STORE_E_INVALID);
    assert_int_equal(sb_store_spend_carry(s, (enum sb_entity)9, KEY_B, KEY_C), SB_STORE_E_INVALID);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_C), 1235);
}

struct tcase {
    const char *name;
    void (*fn)(struct sb_store *s);
};

#define CASE(f)                                                                                    \
    {                                                                                              \
#f, f                                                                                      \
    }
static const struct tcase cases[] = {
    CASE(t_backend_ping),
    CASE(t_put_get_every_kind),
    CASE(t_create_existing),
    CASE(t_not_found),
    CASE(t_delete),
    CASE(t_list_order_paging),
    CASE(t_invalid_arguments),
    CASE(t_injection_strings),
    CASE(t_spend_exactly_once),
    CASE(t_spend_totals_per_entity),
    CASE(t_reset_spend),
    CASE(t_spend_logs),
    CASE(t_spend_totals_groups),
    CASE(t_spend_invalid_rows),
    CASE(t_large_batch),
    CASE(t_many_entities),
    CASE(t_spend_batch_totals),
    CASE(t_spend_chunk_edges),
    CASE(t_spend_logs_similar_keys),
    CASE(t_model_at_full_sums),
    CASE(t_change_feed),
    CASE(t_change_prune),
    CASE(t_reset_spend_if),
    CASE(t_spend_read),
    CASE(t_spend_carry),
};
#define N_CASES (sizeof(cases) / sizeof(cases[0]))

/* ---- backends ---- */

enum mode { MODE_MEMORY, MODE_FILE, MODE_PG };

struct slot {
    const struct tcase *tc;
    enum mode mode;
    struct sb_store *s;
    char dir[64];
    char url[160];
};

#define PG_BIN "/usr/lib/postgresql/15/bin"

static char pg_dir[64];
static char pg_auto_url[128];
static bool pg_running;

static const char *pg_url(void)
{
    const char *u = getenv("SB_TEST_PG_URL");
    if (u && u[0])
        return u;
    return pg_running ? pg_auto_url : NULL;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(cmd))
        return -1;
    return system(cmd);
}

/* A throwaway server: initdb and pg_ctl as the postgres user (the server refuses root), on a
 * port picked from the pid, listening on 127.0.0.1 and a socket in its own folder. */
static const char *pg_autostart(void)
{
    const char *off = getenv("SB_TEST_PG");
    if (off != NULL && strcmp(off, "0") == 0)
        return "SB_TEST_PG=0";
    if (geteuid() != 0)
        return "not root (the suite starts PostgreSQL as the postgres user)";
    if (access(PG_BIN "/initdb", X_OK) != 0 || access(PG_BIN "/pg_ctl", X_OK) != 0)
        return PG_BIN " is not installed";
    struct passwd *pw = getpwnam("postgres");
    if (pw == NULL)
        return "no postgres user";
    snprintf(pg_dir, sizeof(pg_dir), "/tmp/sb_pgtest_XXXXXX");
    if (mkdtemp(pg_dir) == NULL)
        return "mkdtemp failed";
    if (chown(pg_dir, pw->pw_uid, pw->pw_gid) != 0 ||
        sh("runuser -u postgres -- " PG_BIN "/initdb -D %s/data -A trust -U postgres "
           ">%s/initdb.log 2>&1",
           pg_dir, pg_dir) != 0) {
        sh("rm -rf %s", pg_dir);
        return "initdb failed";
    }
    for (int attempt = 0; attempt < 5; attempt++) {
        int port = 20000 + (int)((getpid() * 7 + attempt * 1013) % 30000);
        if (sh("runuser -u postgres -- " PG_BIN "/pg_ctl -D %s/data -o \"-p %d -k %s -c "
               "listen_addresses=127.0.0.1 -c fsync=off\" -l %s/server.log -w start "
               ">/dev/null 2>&1",
               pg_dir, port, pg_dir, pg_dir) == 0) {
            snprintf(pg_auto_url, sizeof(pg_auto_url),
                     "postgresql://postgres@127.0.0.1:%d/postgres", port);
            pg_running = true;
            return NULL;
        }
    }
    sh("rm -rf %s", pg_dir);
    return "the server did not start";
}

static void pg_autostop(void)
{
    if (!pg_running)
        return;
    sh("runuser -u postgres -- " PG_BIN "/pg_ctl -D %s/data -m fast -w stop >/dev/null 2>&1",
       pg_dir);
    sh("rm -rf %s", pg_dir);
    pg_running = false;
}

static void pg_wipe(const char *url)
{
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, "SET client_min_messages = warning; DROP TABLE IF EXISTS "
                            "sb_spend_logs, sb_key_model_spend, sb_keys, sb_teams, sb_users, "
                            "sb_customers, sb_changes, sb_schema");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
}

static void remove_db_files(const char *dir)
{
    static const char *const names[] = {"store.db", "store.db-wal", "store.db-shm",
                                        "store.db-journal"};
    char path[128];
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        unlink(path);
    }
    rmdir(dir);
}

static int new_temp_db(char *dir, size_t dir_len, char *url, size_t url_len)
{
    snprintf(dir, dir_len, "/tmp/sb_store_XXXXXX");
    if (mkdtemp(dir) == NULL)
        return -1;
    snprintf(url, url_len, "sqlite://%s/store.db", dir); /* absolute: three slashes */
    return 0;
}

static int slot_setup(void **state)
{
    struct slot *sl = *state;
    char err[256] = "";
    switch (sl->mode) {
    case MODE_MEMORY:
        snprintf(sl->url, sizeof(sl->url), "sqlite::memory:");
        break;
    case MODE_FILE:
        if (new_temp_db(sl->dir, sizeof(sl->dir), sl->url, sizeof(sl->url)) != 0)
            return -1;
        break;
    case MODE_PG:
        pg_wipe(pg_url());
        break;
    }
    sl->s = sb_store_open(sl->mode == MODE_PG ? pg_url() : sl->url, err, sizeof(err));
    if (sl->s == NULL) {
        fprintf(stderr, "store open failed: %s\n", err);
        return -1;
    }
    return 0;
}

static int slot_teardown(void **state)
{
    struct slot *sl = *state;
    sb_store_close(sl->s);
    sl->s = NULL;
    if (sl->mode == MODE_FILE)
        remove_db_files(sl->dir);
    return 0;
}

static void slot_run(void **state)
{
    struct slot *sl = *state;
    sl->tc->fn(sl->s);
}

static int run_suite(const char *group, enum mode mode)
{
    static struct slot slots[N_CASES];
    struct CMUnitTest tests[N_CASES];
    for (size_t i = 0; i < N_CASES; i++) {
        slots[i] = (struct slot){.tc = &cases[i], .mode = mode};
        tests[i] = (struct CMUnitTest){.name = cases[i].name,
                                       .test_func = slot_run,
                                       .setup_func = slot_setup,
                                       .teardown_func = slot_teardown,
                                       .initial_state = &slots[i]};
    }
    return _cmocka_run_group_tests(group, tests, N_CASES, NULL, NULL);
}

/* ---- SQLite-file specific: reopen, migrations, integrity, two handles, a locked file ---- */

static sqlite3 *raw_open(const char *url)
{
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(url + strlen("sqlite://"), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static int64_t raw_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int64_t v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static void test_file_reopen(void **state)
{
    (void)state;
    char dir[64], url[160], err[256];
    assert_int_equal(new_temp_db(dir, sizeof(dir), url, sizeof(url)), 0);
    struct sb_store *s = sb_store_open(url, err, sizeof(err));
    assert_non_null(s);
    put_ok(s, SB_ENT_KEY, KEY_A, "{\"key_alias\":\"kept\"}");
    struct sb_spend_row r = row("keep-1", KEY_A, "", "", "cust", "gpt-4o", 42, 1);
    assert_int_equal(sb_store_spend_write(s, &r, 1, NULL), 0);
    sb_store_close(s);
    for (int round = 0; round < 3; round++) {
        s = sb_store_open(url, err, sizeof(err));
        assert_non_null(s);
        json_t *k = get_ok(s, SB_ENT_KEY, KEY_A);
        assert_string_equal(str_member(k, "key_alias"), "kept");
        assert_dollars(json_real_value(json_object_get(k, "spend")), 42);
        assert_dollars(
            json_real_value(json_object_get(json_object_get(k, "model_spend"), "gpt-4o")), 42);
        json_decref(k);
        assert_dollars(spend_of(s, SB_ENT_CUSTOMER, "cust"), 42);
        assert_int_equal(count_of(s), 1);
        sb_store_close(s);
    }
    sqlite3 *db = raw_open(url);
    /* Migrations ran once: one row per version, however many opens. */
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM sb_schema"),
                     raw_int(db, "SELECT MAX(version) FROM sb_schema"));
    assert_true(raw_int(db, "SELECT MAX(version) FROM sb_schema") >= 1);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "wal");
    sqlite3_finalize(st);
    assert_int_equal(raw_int(db, "PRAGMA page_size"), 16384); /* a new file's */
    /* The plaintext of nothing: the ledger holds the hash given, nothing else. */
    assert_int_equal(raw_int(db,
                             "SELECT COUNT(*) FROM sb_keys WHERE token = "
                             "'aaaa000000000000000000000000000000000000000000000000000000000001'"),
                     1);
    sqlite3_close(db);
    remove_db_files(dir);
}

/* A version 2 file with rows (as an older release wrote it) opens, migrates, and its rows
 * stay queryable by key and billed exactly once. */
static void test_file_migrate_v2(void **state)
{
    (void)state;
    char dir[64], url[160], err[256];
    assert_int_equal(new_temp_db(dir, sizeof(dir), url, sizeof(url)), 0);
    sqlite3 *db = raw_open(url);
    assert_int_equal(sqlite3_exec(db,
                                  SB_SCHEMA_SQLITE_BOOT SB_SCHEMA_SQLITE_V1 SB_SCHEMA_SQLITE_V2
                                  "INSERT INTO sb_schema (version) VALUES (1), (2);"
                                  "INSERT INTO sb_keys (token, spend_nano, data, created_at, "
                                  "updated_at) VALUES ('aaaa000000000000000000000000000000000000"
                                  "000000000000000000000001', 300, '{}', 1, 1);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    static const char *const old[][2] = {
        {"old-1", "aaaa000000000000000000000000000000000000000000000000000000000001"},
        {"old-2", "bbbb000000000000000000000000000000000000000000000000000000000002"},
        {"old-3", "aaaa000000000000000000000000000000000000000000000000000000000001"},
        {"old-4", ""},
    };
    for (int i = 0; i < 4; i++) {
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "INSERT INTO sb_spend_logs VALUES ('%s', '%s', '', '', '', 'gpt-4o', 'd', 'p', "
                 "1, 2, 0, 0, 0, 100, 1, %d, %d, 200, 0, 'chat_completions')",
                 old[i][0], old[i][1], 1000 + i, 1001 + i);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    }
    sqlite3_close(db);

    struct sb_store *s = sb_store_open(url, err, sizeof(err));
    assert_non_null(s);
    char got[256];
    logs_of_key(s, KEY_A, got, sizeof(got));
    assert_string_equal(got, "old-3,old-1");
    logs_of_key(s, KEY_B, got, sizeof(got));
    assert_string_equal(got, "old-2");
    json_t *arr = NULL;
    assert_int_equal(sb_store_spend_totals(s, SB_SPEND_BY_KEY, 0, 0, &arr), 0);
    assert_int_equal(json_array_size(arr), 2);
    assert_string_equal(str_member(json_array_get(arr, 0), "api_key"), KEY_A);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 0), "requests")), 2);
    json_decref(arr);
    struct sb_spend_filter all = {.limit = 0};
    assert_int_equal(sb_store_spend_logs(s, &all, &arr), 0);
    assert_int_equal(json_array_size(arr), 4);
    json_decref(arr);
    /* Replaying an old row bills nothing; a new one is billed and found by key. */
    struct sb_spend_row r[2] = {row("old-1", KEY_A, "", "", "", "gpt-4o", 100, 1000),
                                row("new-1", KEY_A, "", "", "", "gpt-4o", 50, 2000)};
    size_t ins = 0;
    assert_int_equal(sb_store_spend_write(s, r, 2, &ins), 0);
    assert_int_equal(ins, 1);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), 350);
    logs_of_key(s, KEY_A, got, sizeof(got));
    assert_string_equal(got, "new-1,old-3,old-1");
    sb_store_close(s);

    db = raw_open(url);
    assert_int_equal(raw_int(db, "SELECT MAX(version) FROM sb_schema"), 3);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM sb_schema"), 3);
    assert_int_equal(raw_int(db, "SELECT COUNT(*) FROM sb_spend_logs WHERE key_id = 0"), 1);
    assert_int_equal(
        raw_int(db, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'sb_spend_logs_api_key'"), 0);
    sqlite3_close(db);
    remove_db_files(dir);
}

static void test_file_two_handles(void **state)
{
    (void)state;
    char dir[64], url[160], err[256];
    assert_int_equal(new_temp_db(dir, sizeof(dir), url, sizeof(url)), 0);
    struct sb_store *w = sb_store_open(url, err, sizeof(err));
    struct sb_store *r = sb_store_open(url, err, sizeof(err));
    assert_non_null(w);
    assert_non_null(r);
    put_ok(w, SB_ENT_KEY, KEY_A, "{}");
    /* A reader in the middle of a read transaction does not block the writer (WAL), and keeps
     * its snapshot until it ends. */
    sqlite3 *reader = raw_open(url);
    assert_int_equal(sqlite3_exec(reader, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(raw_int(reader, "SELECT COUNT(*) FROM sb_spend_logs"), 0);
    struct sb_spend_row rows[50];
    for (int i = 0; i < 50; i++) {
        char id[32];
        snprintf(id, sizeof(id), "two-%d", i);
        rows[i] = row(id, KEY_A, "", "", "", "m", 10, i);
    }
    size_t ins = 0;
    assert_int_equal(sb_store_spend_write(w, rows, 50, &ins), 0);
    assert_int_equal(ins, 50);
    assert_int_equal(raw_int(reader, "SELECT COUNT(*) FROM sb_spend_logs"), 0);
    assert_int_equal(count_of(r), 50); /* the other store handle sees the commit */
    assert_int_equal(sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(raw_int(reader, "SELECT COUNT(*) FROM sb_spend_logs"), 50);
    /* Both handles writing the same rows: billed once. */
    assert_int_equal(sb_store_spend_write(r, rows, 50, &ins), 0);
    assert_int_equal(ins, 0);
    assert_dollars(spend_of(w, SB_ENT_KEY, KEY_A), 500);
    assert_dollars(spend_of(r, SB_ENT_KEY, KEY_A), 500);
    sqlite3_close(reader);
    sb_store_close(w);
    sb_store_close(r);
    remove_db_files(dir);
}

static void test_file_locked(void **state)
{
    (void)state;
    char dir[64], url[160], err[256];
    assert_int_equal(new_temp_db(dir, sizeof(dir), url, sizeof(url)), 0);
    struct sb_store *s = sb_store_open(url, err, sizeof(err));
    assert_non_null(s);
    put_ok(s, SB_ENT_KEY, KEY_A, "{}");
    sqlite3 *locker = raw_open(url);
    assert_int_equal(sqlite3_exec(locker, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
    /* The write lock is held past the busy timeout: DOWN, and nothing written. */
    struct sb_spend_row rows[2] = {row("lk-1", KEY_A, "", "", "", "m", 10, 1),
                                   row("lk-2", KEY_A, "", "", "", "m", 10, 2)};
    size_t ins = 9;
    assert_int_equal(sb_store_spend_write(s, rows, 2, &ins), SB_STORE_E_DOWN);
    assert_int_equal(ins, 0);
    assert_int_equal(sqlite3_exec(locker, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(count_of(s), 0);
    assert_int_equal(sb_store_spend_write(s, rows, 2, &ins), 0);
    assert_int_equal(ins, 2);
    assert_dollars(spend_of(s, SB_ENT_KEY, KEY_A), 20);
    sqlite3_close(locker);
    sb_store_close(s);
    remove_db_files(dir);
}

static void test_open_errors(void **state)
{
    (void)state;
    char err[256];
    static const char *const bad[] = {"", "mysql://x", "sqlite:", "sqlite://",
                                      "sqlite:///nonexistent-dir-sb/x/y.db"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_null(sb_store_open(bad[i], err, sizeof(err)));
        assert_true(err[0] != '\0');
    }
    assert_null(sb_store_open(NULL, err, sizeof(err)));
    /* A file that is not a database. */
    char dir[64], url[160];
    assert_int_equal(new_temp_db(dir, sizeof(dir), url, sizeof(url)), 0);
    FILE *f = fopen(url + strlen("sqlite://"), "wb");
    assert_non_null(f);
    for (int i = 0; i < 4096; i++)
        fputc("garbage!"[i % 8], f);
    fclose(f);
    err[0] = '\0';
    assert_null(sb_store_open(url, err, sizeof(err)));
    assert_true(err[0] != '\0');
    remove_db_files(dir);
    /* A password in a URL never comes back in the message. */
    err[0] = '\0';
    assert_null(sb_store_open("postgresql://sbuser:s3cretpw@127.0.0.1:1/sb?connect_timeout=2", err,
                              sizeof(err)));
    assert_null(strstr(err, "s3cretpw"));
    assert_null(sb_store_open("ftp://u:s3cretpw@h/x", err, sizeof(err)));
    assert_null(strstr(err, "s3cretpw"));
}

static void test_relative_url(void **state)
{
    (void)state;
    char dir[64], url[160], err[256], cwd[512];
    assert_int_equal(new_temp_db(dir, sizeof(dir), url, sizeof(url)), 0);
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(dir), 0);
    struct sb_store *s = sb_store_open("sqlite://store.db", err, sizeof(err));
    assert_int_equal(chdir(cwd), 0);
    assert_non_null(s);
    assert_string_equal(sb_store_backend(s), "sqlite");
    put_ok(s, SB_ENT_USER, "u", "{}");
    sb_store_close(s);
    s = sb_store_open(url, err, sizeof(err)); /* the same file by its absolute path */
    assert_non_null(s);
    json_t *u = get_ok(s, SB_ENT_USER, "u");
    json_decref(u);
    sb_store_close(s);
    remove_db_files(dir);
}

int main(void)
{
    int failed = 0;
    failed += run_suite("store sqlite::memory:", MODE_MEMORY);
    failed += run_suite("store sqlite file", MODE_FILE);
    const char *why = NULL;
    if (pg_url() == NULL)
        why = pg_autostart();
    if (pg_url() != NULL)
        failed += run_suite("store postgresql", MODE_PG);
    else
        fprintf(stderr, "store postgresql: skipped (SB_TEST_PG_URL is not set and %s)\n", why);
    pg_autostop();
    const struct CMUnitTest file_tests[] = {
        cmocka_unit_test(test_file_reopen),  cmocka_unit_test(test_file_two_handles),
        cmocka_unit_test(test_file_locked),  cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_relative_url), cmocka_unit_test(test_file_migrate_v2),
    };
    failed += cmocka_run_group_tests_name("store sqlite file only", file_tests, NULL, NULL);
    return failed;
}

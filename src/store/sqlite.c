/* The SQLite backend: one connection, WAL, statements prepared on first use and cached for
 * the life of the handle. */
#include "store/schema.h"
#include "store/store_int.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Cached statements. The per-kind ones are laid out as FIRST + kind. */
enum stmt_id {
    ST_CREATE = 0,
    ST_UPSERT = ST_CREATE + SB_ENT_COUNT,
    ST_GET = ST_UPSERT + SB_ENT_COUNT,
    ST_DELETE = ST_GET + SB_ENT_COUNT,
    ST_LIST = ST_DELETE + SB_ENT_COUNT,
    ST_RESET = ST_LIST + SB_ENT_COUNT,
    ST_LIST_KEY_TEAM = ST_RESET + SB_ENT_COUNT,
    ST_LIST_KEY_USER,
    ST_LIST_KEY_ALIAS,
    ST_MODEL_SPEND_GET,
    ST_MODEL_SPEND_DELETE,
    ST_MODEL_SPEND_ADD,
    ST_LOG_INSERT,
    ST_ADD_KEY,
    ST_ADD_TEAM,
    ST_ADD_USER,
    ST_ADD_CUSTOMER,
    ST_LOGS,
    ST_LOGS_KEY,
    ST_TOTALS_KEY,
    ST_TOTALS_MODEL,
    ST_TOTALS_TEAM,
    ST_COUNT,
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_PING,
    ST_CHANGE_ADD,
    ST_CHANGES,
    ST_CHANGES_ENDS,
    ST_CHANGES_PRUNE,
    ST_MODEL_SPEND_READ,
    ST_RESET_AT,
    ST_SPEND_READ = ST_RESET_AT + SB_ENT_COUNT,
    ST_CARRY = ST_SPEND_READ + SB_ENT_COUNT,
    ST_MODEL_SPEND_CARRY = ST_CARRY + SB_ENT_COUNT,
    ST__N
};

#define LOG_COLS                                                                                   \
    "request_id, api_key, team_id, user_id, end_user, model, deployment, provider, "               \
    "prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens, "  \
    "cost_nano, cost_known, start_ms, end_ms, status, cache_hit, route"
/* What a row insert writes: LOG_COLS and key_id (schema.h, version 3). */
#define LOG_INSERT_COLS LOG_COLS ", key_id"
#define LOG_ROW         "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
#define LOG_FILTER                                                                                 \
    "(?2 IS NULL OR team_id = ?2) AND (?3 IS NULL OR user_id = ?3) "                               \
    "AND (?4 IS NULL OR end_user = ?4) AND (?5 IS NULL OR request_id = ?5) "                       \
    "AND (?6 = 0 OR start_ms >= ?6) AND (?7 = 0 OR start_ms < ?7) "                                \
    "ORDER BY start_ms DESC, request_id DESC LIMIT ?8"
#define TIME_WHERE " WHERE (?1 = 0 OR start_ms >= ?1) AND (?2 = 0 OR start_ms < ?2) "

/* Bind layout of create/upsert: ?1 id, ?2 key_alias, ?3 team_id, ?4 user_id,
 * ?5 budget_reset_at, ?6 data, ?7 now. SQLite allows numbers a statement does not use. */
#define ENT_CREATE(table, idcol)                                                                   \
    "INSERT INTO " table " (" idcol ", budget_reset_at, data, created_at, updated_at) "            \
    "VALUES (?1, ?5, ?6, ?7, ?7) ON CONFLICT (" idcol ") DO NOTHING"
#define ENT_UPSERT(table, idcol)                                                                   \
    "INSERT INTO " table " (" idcol ", budget_reset_at, data, created_at, updated_at) "            \
    "VALUES (?1, ?5, ?6, ?7, ?7) ON CONFLICT (" idcol ") DO UPDATE SET "                           \
    "budget_reset_at = excluded.budget_reset_at, data = excluded.data, "                           \
    "updated_at = excluded.updated_at"
#define KEY_INSERT                                                                                 \
    "INSERT INTO sb_keys (token, key_alias, team_id, user_id, budget_reset_at, data, "             \
    "created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) ON CONFLICT (token) "         \
    "DO "

#define CARRY(table, idcol)                                                                        \
    "UPDATE " table " SET spend_nano = spend_nano + (SELECT f.spend_nano FROM " table " f "        \
    "WHERE f." idcol " = ?2) WHERE " idcol " = ?1 AND EXISTS (SELECT 1 FROM " table " f "          \
    "WHERE f." idcol " = ?2)"

static const char *const stmt_sql[ST__N] = {
    [ST_CREATE + SB_ENT_KEY] = KEY_INSERT "NOTHING",
    [ST_CREATE + SB_ENT_TEAM] = ENT_CREATE("sb_teams", "team_id"),
    [ST_CREATE + SB_ENT_USER] = ENT_CREATE("sb_users", "user_id"),
    [ST_CREATE + SB_ENT_CUSTOMER] = ENT_CREATE("sb_customers", "user_id"),
    [ST_UPSERT + SB_ENT_KEY] =
        KEY_INSERT "UPDATE SET key_alias = excluded.key_alias, team_id = excluded.team_id, "
                   "user_id = excluded.user_id, budget_reset_at = excluded.budget_reset_at, "
                   "data = excluded.data, updated_at = excluded.updated_at",
    [ST_UPSERT + SB_ENT_TEAM] = ENT_UPSERT("sb_teams", "team_id"),
    [ST_UPSERT + SB_ENT_USER] = ENT_UPSERT("sb_users", "user_id"),
    [ST_UPSERT + SB_ENT_CUSTOMER] = ENT_UPSERT("sb_customers", "user_id"),
    [ST_GET + SB_ENT_KEY] =
        "SELECT data, spend_nano, budget_reset_at FROM sb_keys WHERE token = ?1",
    [ST_GET + SB_ENT_TEAM] =
        "SELECT data, spend_nano, budget_reset_at FROM sb_teams WHERE team_id = ?1",
    [ST_GET + SB_ENT_USER] =
        "SELECT data, spend_nano, budget_reset_at FROM sb_users WHERE user_id = ?1",
    [ST_GET + SB_ENT_CUSTOMER] =
        "SELECT data, spend_nano, budget_reset_at FROM sb_customers WHERE user_id = ?1",
    [ST_DELETE + SB_ENT_KEY] = "DELETE FROM sb_keys WHERE token = ?1",
    [ST_DELETE + SB_ENT_TEAM] = "DELETE FROM sb_teams WHERE team_id = ?1",
    [ST_DELETE + SB_ENT_USER] = "DELETE FROM sb_users WHERE user_id = ?1",
    [ST_DELETE + SB_ENT_CUSTOMER] = "DELETE FROM sb_customers WHERE user_id = ?1",
    /* LIMIT -1 is "no limit" in SQLite. */
    [ST_LIST + SB_ENT_KEY] = "SELECT token, data, spend_nano, budget_reset_at FROM sb_keys ORDER "
                             "BY token LIMIT ?2 OFFSET ?3",
    [ST_LIST + SB_ENT_TEAM] = "SELECT team_id, data, spend_nano, budget_reset_at FROM sb_teams "
                              "ORDER BY team_id LIMIT ?2 OFFSET ?3",
    [ST_LIST + SB_ENT_USER] = "SELECT user_id, data, spend_nano, budget_reset_at FROM sb_users "
                              "ORDER BY user_id LIMIT ?2 OFFSET ?3",
    [ST_LIST + SB_ENT_CUSTOMER] =
        "SELECT user_id, data, spend_nano, budget_reset_at FROM sb_customers "
        "ORDER BY user_id LIMIT ?2 OFFSET ?3",
    [ST_LIST_KEY_TEAM] =
        "SELECT token, data, spend_nano, budget_reset_at FROM sb_keys WHERE team_id = ?1 "
        "ORDER BY token LIMIT ?2 OFFSET ?3",
    [ST_LIST_KEY_USER] =
        "SELECT token, data, spend_nano, budget_reset_at FROM sb_keys WHERE user_id = ?1 "
        "ORDER BY token LIMIT ?2 OFFSET ?3",
    [ST_LIST_KEY_ALIAS] =
        "SELECT token, data, spend_nano, budget_reset_at FROM sb_keys WHERE key_alias = ?1 "
        "ORDER BY token LIMIT ?2 OFFSET ?3",
    [ST_RESET + SB_ENT_KEY] =
        "UPDATE sb_keys SET spend_nano = 0, budget_reset_at = ?2, updated_at = ?3 "
        "WHERE token = ?1",
    [ST_RESET + SB_ENT_TEAM] =
        "UPDATE sb_teams SET spend_nano = 0, budget_reset_at = ?2, updated_at = ?3 "
        "WHERE team_id = ?1",
    [ST_RESET + SB_ENT_USER] =
        "UPDATE sb_users SET spend_nano = 0, budget_reset_at = ?2, updated_at = ?3 "
        "WHERE user_id = ?1",
    [ST_RESET + SB_ENT_CUSTOMER] =
        "UPDATE sb_customers SET spend_nano = 0, budget_reset_at = ?2, updated_at = ?3 "
        "WHERE user_id = ?1",
    [ST_MODEL_SPEND_GET] =
        "SELECT model, spend_nano FROM sb_key_model_spend WHERE token = ?1 ORDER BY model",
    [ST_MODEL_SPEND_DELETE] = "DELETE FROM sb_key_model_spend WHERE token = ?1",
    [ST_MODEL_SPEND_ADD] = "INSERT INTO sb_key_model_spend (token, model, spend_nano) "
                           "VALUES (?1, ?2, ?3) ON CONFLICT (token, model) DO UPDATE SET "
                           "spend_nano = spend_nano + excluded.spend_nano",
    [ST_LOG_INSERT] = "INSERT OR IGNORE INTO sb_spend_logs (" LOG_INSERT_COLS ") VALUES " LOG_ROW,
    [ST_ADD_KEY] = "UPDATE sb_keys SET spend_nano = spend_nano + ?2 WHERE token = ?1",
    [ST_ADD_TEAM] = "UPDATE sb_teams SET spend_nano = spend_nano + ?2 WHERE team_id = ?1",
    [ST_ADD_USER] = "UPDATE sb_users SET spend_nano = spend_nano + ?2 WHERE user_id = ?1",
    [ST_ADD_CUSTOMER] =
        "INSERT INTO sb_customers (user_id, spend_nano, data, created_at, updated_at) "
        "VALUES (?1, ?2, ?3, ?4, ?4) ON CONFLICT (user_id) DO UPDATE SET "
        "spend_nano = spend_nano + excluded.spend_nano",
    /* Without a key: the start_ms index, newest first. With one (?9 its key_id): the
     * (key_id, start_ms) index; api_key = ?1 keeps keys that share a key_id apart. */
    [ST_LOGS] = "SELECT " LOG_COLS " FROM sb_spend_logs WHERE (?1 IS NULL OR api_key = ?1) "
                "AND " LOG_FILTER,
    [ST_LOGS_KEY] = "SELECT " LOG_COLS " FROM sb_spend_logs WHERE key_id = ?9 AND api_key = ?1 "
                    "AND " LOG_FILTER,
    [ST_TOTALS_KEY] = "SELECT api_key, SUM(cost_nano), SUM(prompt_tokens + completion_tokens), "
                      "COUNT(*) FROM sb_spend_logs" TIME_WHERE "AND api_key <> '' "
                      "GROUP BY api_key ORDER BY 2 DESC, 1 ASC",
    [ST_TOTALS_MODEL] = "SELECT model, SUM(cost_nano), SUM(prompt_tokens + completion_tokens), "
                        "COUNT(*) FROM sb_spend_logs" TIME_WHERE "AND model <> '' "
                        "GROUP BY model ORDER BY 2 DESC, 1 ASC",
    [ST_TOTALS_TEAM] = "SELECT team_id, SUM(cost_nano), SUM(prompt_tokens + completion_tokens), "
                       "COUNT(*) FROM sb_spend_logs" TIME_WHERE "AND team_id <> '' "
                       "GROUP BY team_id ORDER BY 2 DESC, 1 ASC",
    [ST_COUNT] = "SELECT COUNT(*) FROM sb_spend_logs",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_PING] = "SELECT 1",
    [ST_CHANGE_ADD] = "INSERT INTO sb_changes (kind, id, at) VALUES (?1, ?2, ?3)",
    [ST_CHANGES] = "SELECT seq, kind, id FROM sb_changes WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    [ST_CHANGES_ENDS] = "SELECT COALESCE(MAX(seq), 0), COALESCE(MIN(seq), 0) FROM sb_changes",
    [ST_CHANGES_PRUNE] =
        "DELETE FROM sb_changes WHERE at < ?1 AND seq < (SELECT MAX(seq) FROM sb_changes)",
    [ST_MODEL_SPEND_READ] = "SELECT token, model, spend_nano FROM sb_key_model_spend "
                            "WHERE token IN (SELECT value FROM json_each(?1))",
    [ST_RESET_AT + SB_ENT_KEY] = "SELECT budget_reset_at FROM sb_keys WHERE token = ?1",
    [ST_RESET_AT + SB_ENT_TEAM] = "SELECT budget_reset_at FROM sb_teams WHERE team_id = ?1",
    [ST_RESET_AT + SB_ENT_USER] = "SELECT budget_reset_at FROM sb_users WHERE user_id = ?1",
    [ST_RESET_AT + SB_ENT_CUSTOMER] = "SELECT budget_reset_at FROM sb_customers WHERE user_id = ?1",
    [ST_SPEND_READ + SB_ENT_KEY] =
        "SELECT token, spend_nano FROM sb_keys WHERE token IN (SELECT value FROM json_each(?1))",
    [ST_SPEND_READ + SB_ENT_TEAM] = "SELECT team_id, spend_nano FROM sb_teams "
                                    "WHERE team_id IN (SELECT value FROM json_each(?1))",
    [ST_SPEND_READ + SB_ENT_USER] = "SELECT user_id, spend_nano FROM sb_users "
                                    "WHERE user_id IN (SELECT value FROM json_each(?1))",
    [ST_SPEND_READ + SB_ENT_CUSTOMER] = "SELECT user_id, spend_nano FROM sb_customers "
                                        "WHERE user_id IN (SELECT value FROM json_each(?1))",
    /* ?1 to, ?2 from: no row changes when either is missing. */
    [ST_CARRY + SB_ENT_KEY] = CARRY("sb_keys", "token"),
    [ST_CARRY + SB_ENT_TEAM] = CARRY("sb_teams", "team_id"),
    [ST_CARRY + SB_ENT_USER] = CARRY("sb_users", "user_id"),
    [ST_CARRY + SB_ENT_CUSTOMER] = CARRY("sb_customers", "user_id"),
    [ST_MODEL_SPEND_CARRY] = "INSERT INTO sb_key_model_spend (token, model, spend_nano) "
                             "SELECT ?1, model, spend_nano FROM sb_key_model_spend "
                             "WHERE token = ?2 ON CONFLICT (token, model) DO UPDATE SET "
                             "spend_nano = spend_nano + excluded.spend_nano",
};

struct sb_sqlite {
    struct sb_store base;
    sqlite3 *db;
    sqlite3_stmt *stmt[ST__N];
};

static struct sb_sqlite *sq(struct sb_store *s)
{
    return (struct sb_sqlite *)s;
}

/* A locked file, a full disk or an I/O error is something the ledger retries (its journal
 * keeps the rows); anything else (a corrupt file, a constraint) is not. */
static int map_rc(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_OK:
    case SQLITE_DONE:
    case SQLITE_ROW:
        return 0;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
        return SB_STORE_E_DOWN;
    case SQLITE_TOOBIG:
        return SB_STORE_E_INVALID;
    default:
        return SB_STORE_E_FAILED;
    }
}

/* The cached statement, reset, its bindings cleared unless the caller binds every parameter
 * (`all_bound`); NULL with *rc set on error. */
static sqlite3_stmt *stmt_prepared(struct sb_sqlite *q, enum stmt_id id, bool all_bound, int *rc)
{
    sqlite3_stmt *st = q->stmt[id];
    if (st == NULL) {
        int r = sqlite3_prepare_v3(q->db, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &st, NULL);
        if (r != SQLITE_OK) {
            *rc = map_rc(r);
            if (*rc == 0)
                *rc = SB_STORE_E_FAILED;
            return NULL;
        }
        q->stmt[id] = st;
    } else {
        sqlite3_reset(st);
        if (!all_bound)
            sqlite3_clear_bindings(st);
    }
    return st;
}

static sqlite3_stmt *stmt_get(struct sb_sqlite *q, enum stmt_id id, int *rc)
{
    return stmt_prepared(q, id, false, rc);
}

/* Runs a statement that returns no rows; leaves it reset. */
static int stmt_done(sqlite3_stmt *st)
{
    int r = sqlite3_step(st);
    sqlite3_reset(st);
    if (r == SQLITE_DONE || r == SQLITE_ROW)
        return 0;
    int rc = map_rc(r);
    return rc ? rc : SB_STORE_E_FAILED;
}

static int step_err(sqlite3_stmt *st, int r)
{
    sqlite3_reset(st);
    int rc = map_rc(r);
    return rc ? rc : SB_STORE_E_FAILED;
}

static int run(struct sb_sqlite *q, enum stmt_id id)
{
    int rc = 0;
    sqlite3_stmt *st = stmt_get(q, id, &rc);
    return st ? stmt_done(st) : rc;
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    if (v == NULL)
        return sqlite3_bind_null(st, i);
    return sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
}

static int tx_begin(struct sb_sqlite *q)
{
    return run(q, ST_BEGIN);
}

static int tx_end(struct sb_sqlite *q, int rc)
{
    if (rc == 0) {
        rc = run(q, ST_COMMIT);
        if (rc == 0)
            return 0;
    }
    if (!sqlite3_get_autocommit(q->db))
        run(q, ST_ROLLBACK);
    return rc;
}

/* ---- entities ---- */

/* The change row of the write in progress (see store.h, "the change feed"). Writers hold
 * SQLite's one write lock from BEGIN IMMEDIATE to COMMIT, so numbers are taken in commit
 * order. */
static int log_change(struct sb_sqlite *q, enum sb_entity kind, const char *id)
{
    int rc = 0;
    sqlite3_stmt *st = stmt_get(q, ST_CHANGE_ADD, &rc);
    if (st == NULL)
        return rc;
    sqlite3_bind_int(st, 1, (int)kind);
    bind_text(st, 2, id);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
    return stmt_done(st);
}

static int put_row(struct sb_sqlite *q, enum sb_entity kind, const char *id,
                   const struct sb_store_cols *c, bool create)
{
    int rc = 0;
    sqlite3_stmt *st = stmt_get(q, (create ? ST_CREATE : ST_UPSERT) + kind, &rc);
    if (st == NULL)
        return rc;
    bind_text(st, 1, id);
    if (kind == SB_ENT_KEY) {
        bind_text(st, 2, c->key_alias);
        bind_text(st, 3, c->team_id);
        bind_text(st, 4, c->user_id);
    }
    if (c->has_reset)
        sqlite3_bind_int64(st, 5, c->budget_reset_at);
    else
        sqlite3_bind_null(st, 5);
    if (sqlite3_bind_text64(st, 6, c->data, c->data_len, SQLITE_STATIC, SQLITE_UTF8) != SQLITE_OK)
        return step_err(st, SQLITE_TOOBIG);
    sqlite3_bind_int64(st, 7, c->now_s);
    rc = stmt_done(st);
    if (rc == 0 && create && sqlite3_changes(q->db) == 0)
        rc = SB_STORE_E_EXISTS;
    return rc;
}

static int q_put(struct sb_store *s, enum sb_entity kind, const char *id,
                 const struct sb_store_cols *c, bool create)
{
    struct sb_sqlite *q = sq(s);
    int rc = tx_begin(q);
    if (rc != 0)
        return rc;
    rc = put_row(q, kind, id, c, create);
    if (rc == 0)
        rc = log_change(q, kind, id);
    return tx_end(q, rc);
}

static int model_spend_load(struct sb_sqlite *q, const char *token, json_t **out)
{
    *out = NULL;
    int rc = 0;
    sqlite3_stmt *st = stmt_get(q, ST_MODEL_SPEND_GET, &rc);
    if (st == NULL)
        return rc;
    bind_text(st, 1, token);
    json_t *o = json_object();
    if (o == NULL)
        return SB_STORE_E_FAILED;
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *model = (const char *)sqlite3_column_text(st, 0);
        if (model == NULL)
            continue;
        json_object_set_new(o, model, json_real(sb_store_dollars(sqlite3_column_int64(st, 1))));
    }
    if (r != SQLITE_DONE) {
        json_decref(o);
        return step_err(st, r);
    }
    sqlite3_reset(st);
    *out = o;
    return 0;
}

/* The record of the current row of st (data at column dcol, spend_nano at dcol + 1,
 * budget_reset_at at dcol + 2). */
static int row_record(struct sb_sqlite *q, sqlite3_stmt *st, int dcol, enum sb_entity kind,
                      const char *id, json_t **out)
{
    const void *data = sqlite3_column_blob(st, dcol);
    size_t len = (size_t)sqlite3_column_bytes(st, dcol);
    int64_t spend = sqlite3_column_int64(st, dcol + 1);
    bool has_reset = sqlite3_column_type(st, dcol + 2) != SQLITE_NULL;
    int64_t reset = sqlite3_column_int64(st, dcol + 2);
    json_t *ms = NULL;
    if (kind == SB_ENT_KEY) {
        /* model_spend_load uses another statement, so st's row stays valid. */
        int rc = model_spend_load(q, id, &ms);
        if (rc != 0)
            return rc;
    }
    *out = sb_store_record_load(kind, data ? data : "", len, spend, ms);
    if (*out == NULL)
        return SB_STORE_E_FAILED;
    sb_store_record_set_reset(*out, has_reset, reset);
    return 0;
}

static int q_get(struct sb_store *s, enum sb_entity kind, const char *id, json_t **out)
{
    struct sb_sqlite *q = sq(s);
    int rc = 0;
    sqlite3_stmt *st = stmt_get(q, ST_GET + kind, &rc);
    if (st == NULL)
        return rc;
    bind_text(st, 1, id);
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE) {
        sqlite3_reset(st);
        return SB_STORE_E_NOT_FOUND;
    }
    if (r != SQLITE_ROW)
        return step_err(st, r);
    rc = row_record(q, st, 0, kind, id, out);
    sqlite3_reset(st);
    return rc;
}

static int q_del(struct sb_store *s, enum sb_entity kind, const char *id)
{
    struct sb_sqlite *q = sq(s);
    int rc = tx_begin(q);
    if (rc != 0)
        return rc;
    sqlite3_stmt *st = stmt_get(q, ST_DELETE + kind, &rc);
    if (st != NULL) {
        bind_text(st, 1, id);
        rc = stmt_done(st);
        if (rc == 0 && sqlite3_changes(q->db) == 0)
            rc = SB_STORE_E_NOT_FOUND;
    }
    if (rc == 0 && kind == SB_ENT_KEY) {
        st = stmt_get(q, ST_MODEL_SPEND_DELETE, &rc);
        if (st != NULL) {
            bind_text(st, 1, id);
            rc = stmt_done(st);
        }
    }
    if (rc == 0)
        rc = log_change(q, kind, id);
    return tx_end(q, rc);
}

static int q_list(struct sb_store *s, enum sb_entity kind, const char *field, const char *value,
                  size_t offset, size_t limit, json_t **out)
{
    struct sb_sqlite *q = sq(s);
    enum stmt_id id = ST_LIST + kind;
    if (field != NULL)
        id = strcmp(field, "team_id") == 0   ? ST_LIST_KEY_TEAM
             : strcmp(field, "user_id") == 0 ? ST_LIST_KEY_USER
                                             : ST_LIST_KEY_ALIAS;
    int rc = 0;
    sqlite3_stmt *st = stmt_get(q, id, &rc);
    if (st == NULL)
        return rc;
    bind_text(st, 1, value);
    sqlite3_bind_int64(st, 2, limit == 0 ? -1 : (sqlite3_int64)limit);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)offset);
    json_t *arr = json_array();
    if (arr == NULL) {
        sqlite3_reset(st);
        return SB_STORE_E_FAILED;
    }
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *rid = (const char *)sqlite3_column_text(st, 0);
        json_t *rec = NULL;
        rc = row_record(q, st, 1, kind, rid ? rid : "", &rec);
        if (rc != 0)
            break;
        json_array_append_new(arr, rec);
    }
    if (rc == 0 && r != SQLITE_DONE)
        rc = step_err(st, r);
    sqlite3_reset(st);
    if (rc != 0) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

/* Inside the write transaction: SB_STORE_E_NOT_FOUND, SB_STORE_E_CONFLICT when
 * budget_reset_at is not `expect` (0: NULL), or 0. */
static int check_reset_at(struct sb_sqlite *q, enum sb_entity kind, const char *id, int64_t expect)
{
    int rc = 0;
    sqlite3_stmt *st = stmt_get(q, ST_RESET_AT + kind, &rc);
    if (st == NULL)
        return rc;
    bind_text(st, 1, id);
    int r = sqlite3_step(st);
    if (r == SQLITE_DONE) {
        sqlite3_reset(st);
        return SB_STORE_E_NOT_FOUND;
    }
    if (r != SQLITE_ROW)
        return step_err(st, r);
    int64_t cur = sqlite3_column_type(st, 0) == SQLITE_NULL ? 0 : sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return cur == expect ? 0 : SB_STORE_E_CONFLICT;
}

static int q_reset_spend(struct sb_store *s, enum sb_entity kind, const char *id, bool has_expect,
                         int64_t expect, int64_t next_reset)
{
    struct sb_sqlite *q = sq(s);
    int rc = tx_begin(q);
    if (rc != 0)
        return rc;
    sqlite3_stmt *st = NULL;
    if (has_expect)
        rc = check_reset_at(q, kind, id, expect);
    if (rc == 0)
        st = stmt_get(q, ST_RESET + kind, &rc);
    if (st != NULL) {
        bind_text(st, 1, id);
        if (next_reset > 0)
            sqlite3_bind_int64(st, 2, next_reset);
        else
            sqlite3_bind_null(st, 2);
        sqlite3_bind_int64(st, 3, (sqlite3_int64)time(NULL));
        rc = stmt_done(st);
        if (rc == 0 && sqlite3_changes(q->db) == 0)
            rc = SB_STORE_E_NOT_FOUND;
    }
    if (rc == 0 && kind == SB_ENT_KEY) {
        st = stmt_get(q, ST_MODEL_SPEND_DELETE, &rc);
        if (st != NULL) {
            bind_text(st, 1, id);
            rc = stmt_done(st);
        }
    }
    if (rc == 0)
        rc = log_change(q, kind, id);
    return tx_end(q, rc);
}

static int q_spend_carry(struct sb_store *s, enum sb_entity kind, const char *from, const char *to)
{
    struct sb_sqlite *q = sq(s);
    int rc = tx_begin(q);
    if (rc != 0)
        return rc;
    sqlite3_stmt *st = stmt_get(q, ST_CARRY + kind, &rc);
    if (st != NULL) {
        bind_text(st, 1, to);
        bind_text(st, 2, from);
        rc = stmt_done(st);
        if (rc == 0 && sqlite3_changes(q->db) == 0)
            rc = SB_STORE_E_NOT_FOUND;
    }
    if (rc == 0 && kind == SB_ENT_KEY) {
        st = stmt_get(q, ST_MODEL_SPEND_CARRY, &rc);
        if (st != NULL) {
            bind_text(st, 1, to);
            bind_text(st, 2, from);
            rc = stmt_done(st);
        }
    }
    return tx_end(q, rc);
}

/* ---- the ledger ---- */

/* Adds cost to an entity's total; *found tells whether the entity exists. */
static int add_spend(struct sb_sqlite *q, enum stmt_id id, const char *who, int64_t cost,
                     bool *found)
{
    int rc = 0;
    sqlite3_stmt *st = stmt_get(q, id, &rc);
    if (st == NULL)
        return rc;
    bind_text(st, 1, who);
    sqlite3_bind_int64(st, 2, cost);
    rc = stmt_done(st);
    if (found != NULL)
        *found = rc == 0 && sqlite3_changes(q->db) > 0;
    return rc;
}

static int add_customer(struct sb_sqlite *q, const char *who, int64_t cost)
{
    json_t *rec = json_pack("{s:s}", "user_id", who);
    char *data = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
    json_decref(rec);
    if (data == NULL)
        return SB_STORE_E_FAILED;
    int rc = 0;
    sqlite3_stmt *st = stmt_get(q, ST_ADD_CUSTOMER, &rc);
    if (st != NULL) {
        bind_text(st, 1, who);
        sqlite3_bind_int64(st, 2, cost);
        bind_text(st, 3, data);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL));
        rc = stmt_done(st);
    }
    free(data);
    return rc;
}

/* The running totals a batch adds to, summed per entity first: a batch of thousands of rows
 * of one key is one UPDATE of that key, not thousands. Ids point into the batch's rows. */
#define AGG_MAX 64

struct agg {
    char kind; /* 'k' key, 'm' a key's model, 't' team, 'u' user, 'c' end user */
    const char *id, *model;
    int64_t cost;
    bool found; /* 'k': the key exists (its model spend is kept only then) */
};

static int agg_flush(struct sb_sqlite *q, struct agg *a, size_t *n)
{
    int rc = 0;
    for (size_t i = 0; i < *n && rc == 0; i++) {
        struct agg *e = &a[i];
        switch (e->kind) {
        case 'k':
            rc = add_spend(q, ST_ADD_KEY, e->id, e->cost, &e->found);
            break;
        case 'm': {
            bool found = false;
            for (size_t j = 0; j < i; j++)
                if (a[j].kind == 'k' && strcmp(a[j].id, e->id) == 0)
                    found = a[j].found;
            if (!found)
                break;
            sqlite3_stmt *st = stmt_get(q, ST_MODEL_SPEND_ADD, &rc);
            if (st == NULL)
                return rc;
            bind_text(st, 1, e->id);
            bind_text(st, 2, e->model);
            sqlite3_bind_int64(st, 3, e->cost);
            rc = stmt_done(st);
            break;
        }
        case 't':
            rc = add_spend(q, ST_ADD_TEAM, e->id, e->cost, NULL);
            break;
        case 'u':
            rc = add_spend(q, ST_ADD_USER, e->id, e->cost, NULL);
            break;
        default:
            rc = add_customer(q, e->id, e->cost);
            break;
        }
    }
    *n = 0;
    return rc;
}

static int64_t add_sat(int64_t a, int64_t b)
{
    int64_t s;
    return __builtin_add_overflow(a, b, &s) ? INT64_MAX : s;
}

/* Adds a row's cost to one entity's sum; flushes first when the table is full (the key and
 * its model go in together, so a model's key is always flushed with or before it). */
static int agg_add(struct sb_sqlite *q, struct agg *a, size_t *n, char kind, const char *id,
                   const char *model, int64_t cost)
{
    for (size_t i = 0; i < *n; i++)
        if (a[i].kind == kind && strcmp(a[i].id, id) == 0 &&
            (kind != 'm' || strcmp(a[i].model, model) == 0)) {
            a[i].cost = add_sat(a[i].cost, cost);
            return 0;
        }
    if (*n + (kind == 'k' ? 2 : 1) > AGG_MAX) {
        int rc = agg_flush(q, a, n);
        if (rc != 0)
            return rc;
    }
    a[(*n)++] = (struct agg){kind, id, model, cost, false};
    return 0;
}

static int bill_row(struct sb_sqlite *q, struct agg *a, size_t *n, const struct sb_spend_row *r)
{
    int rc = 0;
    /* Room for the key and its model together first: were the table flushed between them,
     * the model's sum would be written without its key's and be dropped. */
    if (r->key_hash[0] != '\0' && r->model[0] != '\0' && *n + 2 > AGG_MAX)
        rc = agg_flush(q, a, n);
    if (rc == 0 && r->key_hash[0] != '\0') {
        rc = agg_add(q, a, n, 'k', r->key_hash, NULL, r->cost_nano);
        if (rc == 0 && r->model[0] != '\0')
            rc = agg_add(q, a, n, 'm', r->key_hash, r->model, r->cost_nano);
    }
    if (rc == 0 && r->team_id[0] != '\0')
        rc = agg_add(q, a, n, 't', r->team_id, NULL, r->cost_nano);
    if (rc == 0 && r->user_id[0] != '\0')
        rc = agg_add(q, a, n, 'u', r->user_id, NULL, r->cost_nano);
    if (rc == 0 && r->end_user[0] != '\0')
        rc = agg_add(q, a, n, 'c', r->end_user, NULL, r->cost_nano);
    return rc;
}

/* key_id of a key hash (schema.h, version 3): its first 15 characters read as hex digits
 * (any other byte still gives some digit: equal strings, equal ids). 0 for "". */
static int64_t key_id(const char *k)
{
    uint64_t v = 0;
    for (int i = 0; i < 15 && k[i] != '\0'; i++) {
        unsigned c = (unsigned char)k[i];
        v = (v << 4) | ((c + (c >> 6) * 9) & 0xf);
    }
    return (int64_t)v;
}

/* sb_key_id(text) for the version 3 migration, which fills key_id of existing rows. */
static void sql_key_id(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const unsigned char *t = sqlite3_value_text(argv[0]);
    sqlite3_result_int64(ctx, t != NULL ? key_id((const char *)t) : 0);
}

/* Binds one row as parameters base + 1 .. base + LOG_NCOL. The row outlives the step, hence
 * SQLITE_STATIC (bind_text). */
static void bind_row(sqlite3_stmt *st, int base, const struct sb_spend_row *r)
{
    bind_text(st, base + 1, r->request_id);
    bind_text(st, base + 2, r->key_hash);
    bind_text(st, base + 3, r->team_id);
    bind_text(st, base + 4, r->user_id);
    bind_text(st, base + 5, r->end_user);
    bind_text(st, base + 6, r->model);
    bind_text(st, base + 7, r->deployment);
    bind_text(st, base + 8, r->provider);
    sqlite3_bind_int64(st, base + 9, r->prompt_tokens);
    sqlite3_bind_int64(st, base + 10, r->completion_tokens);
    sqlite3_bind_int64(st, base + 11, r->cache_read_tokens);
    sqlite3_bind_int64(st, base + 12, r->cache_write_tokens);
    sqlite3_bind_int64(st, base + 13, r->reasoning_tokens);
    sqlite3_bind_int64(st, base + 14, r->cost_nano);
    sqlite3_bind_int(st, base + 15, r->cost_known ? 1 : 0);
    sqlite3_bind_int64(st, base + 16, r->start_ms);
    sqlite3_bind_int64(st, base + 17, r->end_ms);
    sqlite3_bind_int(st, base + 18, r->status);
    sqlite3_bind_int(st, base + 19, r->cache_hit ? 1 : 0);
    bind_text(st, base + 20, r->route);
    sqlite3_bind_int64(st, base + 21, key_id(r->key_hash));
}

static int insert_one(struct sb_sqlite *q, const struct sb_spend_row *r, bool *ins)
{
    int rc = 0;
    sqlite3_stmt *st = stmt_prepared(q, ST_LOG_INSERT, true, &rc);
    if (st == NULL)
        return rc;
    bind_row(st, 0, r);
    rc = stmt_done(st);
    *ins = rc == 0 && sqlite3_changes(q->db) > 0;
    return rc;
}

static int q_spend_write(struct sb_store *s, const struct sb_spend_row *rows, size_t n,
                         size_t *inserted)
{
    struct sb_sqlite *q = sq(s);
    size_t ins = 0, nagg = 0;
    struct agg agg[AGG_MAX];
    int rc = tx_begin(q);
    if (rc != 0)
        return rc;
    for (size_t i = 0; i < n && rc == 0; i++) {
        bool new_row = false;
        rc = insert_one(q, &rows[i], &new_row);
        if (rc != 0 || !new_row)
            continue; /* a request_id already in the ledger: billed once, earlier */
        ins++;
        rc = bill_row(q, agg, &nagg, &rows[i]);
    }
    if (rc == 0)
        rc = agg_flush(q, agg, &nagg);
    rc = tx_end(q, rc);
    if (rc == 0)
        *inserted = ins;
    return rc;
}

static void copy_col(sqlite3_stmt *st, int col, char *dst, size_t size)
{
    const unsigned char *v = sqlite3_column_text(st, col);
    size_t n = v ? (size_t)sqlite3_column_bytes(st, col) : 0;
    if (n >= size)
        n = size - 1;
    if (n > 0)
        memcpy(dst, v, n);
    dst[n] = '\0';
}

static int q_spend_logs(struct sb_store *s, const struct sb_spend_filter *f, json_t **out)
{
    struct sb_sqlite *q = sq(s);
    int rc = 0;
    sqlite3_stmt *st = stmt_get(q, f->key_hash != NULL ? ST_LOGS_KEY : ST_LOGS, &rc);
    if (st == NULL)
        return rc;
    bind_text(st, 1, f->key_hash);
    if (f->key_hash != NULL)
        sqlite3_bind_int64(st, 9, key_id(f->key_hash));
    bind_text(st, 2, f->team_id);
    bind_text(st, 3, f->user_id);
    bind_text(st, 4, f->end_user);
    bind_text(st, 5, f->request_id);
    sqlite3_bind_int64(st, 6, f->start_ms);
    sqlite3_bind_int64(st, 7, f->end_ms);
    sqlite3_bind_int64(st, 8, (sqlite3_int64)f->limit);
    json_t *arr = json_array();
    struct sb_spend_row *r = calloc(1, sizeof(*r));
    if (arr == NULL || r == NULL) {
        json_decref(arr);
        free(r);
        sqlite3_reset(st);
        return SB_STORE_E_FAILED;
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        copy_col(st, 0, r->request_id, sizeof(r->request_id));
        copy_col(st, 1, r->key_hash, sizeof(r->key_hash));
        copy_col(st, 2, r->team_id, sizeof(r->team_id));
        copy_col(st, 3, r->user_id, sizeof(r->user_id));
        copy_col(st, 4, r->end_user, sizeof(r->end_user));
        copy_col(st, 5, r->model, sizeof(r->model));
        copy_col(st, 6, r->deployment, sizeof(r->deployment));
        copy_col(st, 7, r->provider, sizeof(r->provider));
        r->prompt_tokens = sqlite3_column_int64(st, 8);
        r->completion_tokens = sqlite3_column_int64(st, 9);
        r->cache_read_tokens = sqlite3_column_int64(st, 10);
        r->cache_write_tokens = sqlite3_column_int64(st, 11);
        r->reasoning_tokens = sqlite3_column_int64(st, 12);
        r->cost_nano = sqlite3_column_int64(st, 13);
        r->cost_known = sqlite3_column_int(st, 14) != 0;
        r->start_ms = sqlite3_column_int64(st, 15);
        r->end_ms = sqlite3_column_int64(st, 16);
        r->status = sqlite3_column_int(st, 17);
        r->cache_hit = sqlite3_column_int(st, 18) != 0;
        copy_col(st, 19, r->route, sizeof(r->route));
        json_t *o = sb_store_spend_log_json(r);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            rc = SB_STORE_E_FAILED;
            break;
        }
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = step_err(st, step);
    sqlite3_reset(st);
    free(r);
    if (rc != 0) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

static int q_spend_totals(struct sb_store *s, enum sb_spend_group by, int64_t start_ms,
                          int64_t end_ms, json_t **out)
{
    struct sb_sqlite *q = sq(s);
    enum stmt_id id = by == SB_SPEND_BY_KEY     ? ST_TOTALS_KEY
                      : by == SB_SPEND_BY_MODEL ? ST_TOTALS_MODEL
                                                : ST_TOTALS_TEAM;
    int rc = 0;
    sqlite3_stmt *st = stmt_get(q, id, &rc);
    if (st == NULL)
        return rc;
    sqlite3_bind_int64(st, 1, start_ms);
    sqlite3_bind_int64(st, 2, end_ms);
    json_t *arr = json_array();
    if (arr == NULL) {
        sqlite3_reset(st);
        return SB_STORE_E_FAILED;
    }
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        const char *gid = (const char *)sqlite3_column_text(st, 0);
        json_t *o = sb_store_total_json(by, gid ? gid : "", sqlite3_column_int64(st, 1),
                                        sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3));
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            rc = SB_STORE_E_FAILED;
            break;
        }
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = step_err(st, step);
    sqlite3_reset(st);
    if (rc != 0) {
        json_decref(arr);
        return rc;
    }
    *out = arr;
    return 0;
}

static int q_spend_count(struct sb_store *s, int64_t *out)
{
    struct sb_sqlite *q = sq(s);
    int rc = 0;
    sqlite3_stmt *st = stmt_get(q, ST_COUNT, &rc);
    if (st == NULL)
        return rc;
    int r = sqlite3_step(st);
    if (r != SQLITE_ROW)
        return step_err(st, r);
    *out = sqlite3_column_int64(st, 0);
    sqlite3_reset(st);
    return 0;
}

/* ---- the change feed, shared spend ---- */

static int q_changes(struct sb_store *s, int64_t after, struct sb_change *out, size_t max,
                     size_t *n, int64_t *head, int64_t *oldest)
{
    struct sb_sqlite *q = sq(s);
    int rc = 0;
    size_t got = 0;
    if (max > 0) {
        sqlite3_stmt *st = stmt_get(q, ST_CHANGES, &rc);
        if (st == NULL)
            return rc;
        sqlite3_bind_int64(st, 1, after);
        sqlite3_bind_int64(st, 2, (sqlite3_int64)max);
        int r = SQLITE_DONE;
        while (got < max && (r = sqlite3_step(st)) == SQLITE_ROW) {
            int kind = sqlite3_column_int(st, 1);
            if (kind < 0 || kind >= SB_ENT_COUNT)
                continue; /* a kind this version does not know */
            out[got].seq = sqlite3_column_int64(st, 0);
            out[got].kind = (enum sb_entity)kind;
            copy_col(st, 2, out[got].id, sizeof(out[got].id));
            got++;
        }
        if (got < max && r != SQLITE_DONE)
            return step_err(st, r);
        sqlite3_reset(st);
    }
    sqlite3_stmt *st = stmt_get(q, ST_CHANGES_ENDS, &rc);
    if (st == NULL)
        return rc;
    int r = sqlite3_step(st);
    if (r != SQLITE_ROW)
        return step_err(st, r);
    *head = sqlite3_column_int64(st, 0);
    *oldest = sqlite3_column_int64(st, 1);
    sqlite3_reset(st);
    *n = got;
    return 0;
}

static int q_changes_prune(struct sb_store *s, int64_t before_s, size_t *deleted)
{
    struct sb_sqlite *q = sq(s);
    int rc = 0;
    sqlite3_stmt *st = stmt_get(q, ST_CHANGES_PRUNE, &rc);
    if (st == NULL)
        return rc;
    sqlite3_bind_int64(st, 1, before_s);
    rc = stmt_done(st);
    if (rc == 0)
        *deleted = (size_t)sqlite3_changes(q->db);
    return rc;
}

static int q_spend_read(struct sb_store *s, enum sb_entity kind, const char *ids_json, json_t **out)
{
    struct sb_sqlite *q = sq(s);
    int rc = 0;
    sqlite3_stmt *st = stmt_get(q, ST_SPEND_READ + kind, &rc);
    if (st == NULL)
        return rc;
    json_t *o = json_object();
    if (o == NULL) {
        sqlite3_reset(st);
        return SB_STORE_E_FAILED;
    }
    bind_text(st, 1, ids_json);
    int r;
    while ((r = sqlite3_step(st)) == SQLITE_ROW) {
        const char *id = (const char *)sqlite3_column_text(st, 0);
        if (id != NULL && sb_store_spend_entry(o, kind, id, sqlite3_column_int64(st, 1)) == NULL) {
            rc = SB_STORE_E_FAILED;
            break;
        }
    }
    if (rc == 0 && r != SQLITE_DONE)
        rc = step_err(st, r);
    sqlite3_reset(st);
    if (rc == 0 && kind == SB_ENT_KEY) {
        st = stmt_get(q, ST_MODEL_SPEND_READ, &rc);
        if (st != NULL) {
            bind_text(st, 1, ids_json);
            while ((r = sqlite3_step(st)) == SQLITE_ROW) {
                const char *id = (const char *)sqlite3_column_text(st, 0);
                const char *model = (const char *)sqlite3_column_text(st, 1);
                json_t *ms = json_object_get(json_object_get(o, id ? id : ""), "model_spend_nano");
                if (ms != NULL && model != NULL &&
                    json_object_set_new(ms, model, json_integer(sqlite3_column_int64(st, 2))) !=
                        0) {
                    rc = SB_STORE_E_FAILED;
                    break;
                }
            }
            if (rc == 0 && r != SQLITE_DONE)
                rc = step_err(st, r);
            sqlite3_reset(st);
        }
    }
    if (rc != 0) {
        json_decref(o);
        return rc;
    }
    *out = o;
    return 0;
}

static int q_ping(struct sb_store *s)
{
    return run(sq(s), ST_PING) == 0 ? 0 : SB_STORE_E_DOWN;
}

static void q_close(struct sb_store *s)
{
    struct sb_sqlite *q = sq(s);
    for (int i = 0; i < ST__N; i++)
        sqlite3_finalize(q->stmt[i]);
    sqlite3_close_v2(q->db);
    free(q);
}

static const struct sb_store_ops sqlite_ops = {
    .name = "sqlite",
    .close = q_close,
    .ping = q_ping,
    .put = q_put,
    .get = q_get,
    .del = q_del,
    .list = q_list,
    .reset_spend = q_reset_spend,
    .spend_write = q_spend_write,
    .spend_logs = q_spend_logs,
    .spend_totals = q_spend_totals,
    .spend_count = q_spend_count,
    .changes = q_changes,
    .changes_prune = q_changes_prune,
    .spend_read = q_spend_read,
    .spend_carry = q_spend_carry,
};

/* ---- open and migrate ---- */

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t err_len)
{
    char *msg = NULL;
    int r = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (r != SQLITE_OK) {
        sb_store_set_err(err, err_len, "sqlite: %s", msg ? msg : sqlite3_errstr(r));
        sqlite3_free(msg);
        return r;
    }
    return SQLITE_OK;
}

static int schema_version(sqlite3 *db, int *version)
{
    sqlite3_stmt *st = NULL;
    int r =
        sqlite3_prepare_v2(db, "SELECT COALESCE(MAX(version), 0) FROM sb_schema", -1, &st, NULL);
    if (r == SQLITE_OK) {
        r = sqlite3_step(st);
        if (r == SQLITE_ROW) {
            *version = sqlite3_column_int(st, 0);
            r = SQLITE_OK;
        }
    }
    sqlite3_finalize(st);
    return r;
}

static int migrate(sqlite3 *db, char *err, size_t err_len)
{
    static const char *const migrations[] = SB_SCHEMA_SQLITE;
    const int n = (int)(sizeof(migrations) / sizeof(migrations[0]));
    int r = exec_sql(db, SB_SCHEMA_SQLITE_BOOT, err, err_len);
    for (int v = 1; r == SQLITE_OK && v <= n; v++) {
        /* BEGIN IMMEDIATE takes the write lock before reading the version, so two processes
         * opening the same new file cannot both apply a migration. */
        r = exec_sql(db, "BEGIN IMMEDIATE", err, err_len);
        if (r != SQLITE_OK)
            break;
        int cur = 0;
        r = schema_version(db, &cur);
        if (r != SQLITE_OK)
            sb_store_set_err(err, err_len, "sqlite: %s", sqlite3_errmsg(db));
        if (r == SQLITE_OK && cur < v) {
            r = exec_sql(db, migrations[v - 1], err, err_len);
            if (r == SQLITE_OK) {
                sqlite3_stmt *st = NULL;
                r = sqlite3_prepare_v2(db, "INSERT INTO sb_schema (version) VALUES (?1)", -1, &st,
                                       NULL);
                if (r == SQLITE_OK) {
                    sqlite3_bind_int(st, 1, v);
                    r = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
                }
                sqlite3_finalize(st);
                if (r != SQLITE_OK)
                    sb_store_set_err(err, err_len, "sqlite: %s", sqlite3_errmsg(db));
            }
        }
        if (r == SQLITE_OK)
            r = exec_sql(db, "COMMIT", err, err_len);
        if (r != SQLITE_OK && !sqlite3_get_autocommit(db))
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    return r;
}

/* The ledger writes tens of thousands of rows a second: without memory statistics SQLite's
 * allocations take no global mutex (about a twentieth of a row's cost). Process-wide, and only
 * possible before SQLite initializes, hence once and before the first open; nothing here reads
 * sqlite3_memory_used(). */
static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;

static void sqlite_setup(void)
{
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

/* The database's page size (4096 when it cannot be read). */
static int page_size(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int size = 4096;
    if (sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) >= 512)
        size = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return size;
}

struct sb_store *sb_store_sqlite_open(const char *path, char *err, size_t err_len)
{
    struct sb_sqlite *q = calloc(1, sizeof(*q));
    if (q == NULL) {
        sb_store_set_err(err, err_len, "out of memory");
        return NULL;
    }
    q->base.ops = &sqlite_ops;
    pthread_once(&sqlite_once, sqlite_setup);
    int r = sqlite3_open_v2(path, &q->db,
                            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (r != SQLITE_OK) {
        sb_store_set_err(err, err_len, "sqlite: cannot open %s: %s", path,
                         q->db ? sqlite3_errmsg(q->db) : sqlite3_errstr(r));
        goto fail;
    }
    sqlite3_extended_result_codes(q->db, 1);
    if (sqlite3_create_function(q->db, "sb_key_id", 1,
                                SQLITE_UTF8 | SQLITE_DETERMINISTIC | SQLITE_INNOCUOUS, NULL,
                                sql_key_id, NULL, NULL) != SQLITE_OK) {
        sb_store_set_err(err, err_len, "sqlite: %s", sqlite3_errmsg(q->db));
        goto fail;
    }
    /* The busy timeout first: the journal_mode change itself needs the lock. */
    sqlite3_busy_timeout(q->db, 5000);
    /* 16 KiB pages for a new database (an existing one keeps its own until a VACUUM): the
     * ledger appends rows, so its pages fill whole, and a quarter of the WAL frames (two
     * pwrite(2) each) costs a fifth less per row. An 8 MiB page cache (the ledger's indexes
     * grow at their ends: little is read back), and checkpoints every 64 MiB of WAL instead
     * of 4 MiB: at tens of thousands of rows a second the default checkpoints (each with an
     * fdatasync) after nearly every batch and costs more than the inserts. */
    if (exec_sql(q->db,
                 "PRAGMA page_size=16384; PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                 "PRAGMA cache_size=-8192;",
                 err, err_len) != SQLITE_OK ||
        migrate(q->db, err, err_len) != SQLITE_OK)
        goto fail;
    sqlite3_wal_autocheckpoint(q->db, (64 << 20) / page_size(q->db));
    return &q->base;
fail:
    sqlite3_close_v2(q->db);
    free(q);
    return NULL;
}

/* The PostgreSQL backend of the store (libpq). See docs/internals/store-postgres.md.
 *
 * One PGconn per store, used only by the store thread. Every statement goes through
 * PQexecParams with text parameters (the unnamed statement, planned with the actual values,
 * and nothing to re-prepare after a reconnect); the only PQexec calls run constant SQL (the
 * session settings and the migrations of schema.h). */
#include "store/store_int.h"

#include "core/buf.h"
#include "core/log.h"
#include "store/schema.h"

#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Any constant: the key of the advisory lock that serializes migrations across instances. */
#define MIGRATE_LOCK_KEY "5362727467330001"

/* The key of the transaction-level advisory lock every change-log writer takes before its
 * change row: sequence numbers are then handed out in commit order (see store.h). */
#define CHANGE_LOCK_KEY "5362727467330002"

/* Rows per INSERT of sb_pg_spend_write; a larger batch is several statements in one
 * transaction, so one statement's JSON parameter stays around a megabyte. */
#define SPEND_CHUNK    1000
#define SPEND_JSON_MAX (64u * 1024 * 1024)

/* A deadlock or serialization failure between instances writing the same totals is retried
 * this many times before the write fails (the ledger retries it later anyway). */
#define SPEND_ATTEMPTS 3

/* Connection defaults that a URI parameter may override (they come before dbname). */
static const char *const conn_defaults_kw[] = {
    "connect_timeout", "application_name",    "keepalives",
    "keepalives_idle", "keepalives_interval", "keepalives_count",
};
static const char *const conn_defaults_val[] = {"5", "switchboard", "1", "30", "10", "3"};
#define CONN_DEFAULTS 6

/* Run after every (re)connect. statement_timeout bounds every wait of the store thread on a
 * live server; lock_timeout keeps a stuck lock from holding the ledger for that long. */
static const char session_sql[] = "SET statement_timeout = 30000; SET lock_timeout = 10000;"
                                  "SET TIME ZONE 'UTC'";

struct pg_store {
    struct sb_store base; /* first: store.c hands &base back to every op */
    PGconn *conn;
    char *conninfo;      /* only to keep its password out of logged messages */
    bool down_logged;    /* the loss of the connection was logged: log it once per outage */
    bool spend_prepared; /* "sb_spend" is prepared on the current connection */
};

static struct pg_store *pg(struct sb_store *s)
{
    return (struct pg_store *)s;
}

/* ---- error messages without the password ---- */

/* Replaces every occurrence of secret in b (from offset 0) by "***". */
static void scrub_secret(struct sb_buf *b, const char *secret, size_t slen)
{
    if (slen == 0 || b->len == 0) {
        return;
    }
    struct sb_buf out;
    sb_buf_init(&out, b->max);
    size_t i = 0;
    while (i < b->len) {
        if (b->len - i >= slen && memcmp(b->data + i, secret, slen) == 0) {
            if (sb_buf_append_str(&out, "***") != 0) {
                break;
            }
            i += slen;
        } else {
            if (sb_buf_append_char(&out, b->data[i]) != 0) {
                break;
            }
            i++;
        }
    }
    if (i == b->len) {
        sb_buf_swap(b, &out);
    } else {
        /* Could not rebuild: drop the message rather than risk printing the secret. */
        sb_buf_reset(b);
        (void)sb_buf_append_str(b, "(message withheld)");
    }
    sb_buf_free(&out);
}

/* "password=VALUE" (a keyword/value conninfo echoed back): the value goes. */
static void scrub_password_kv(struct sb_buf *b)
{
    static const char kw[] = "password=";
    if (b->len == 0) {
        return;
    }
    char *p = b->data;
    while ((p = strstr(p, kw)) != NULL) {
        char *v = p + sizeof kw - 1;
        char *e = v;
        char quote = (*e == '\'' || *e == '"') ? *e++ : '\0';
        while (*e != '\0' && (quote ? *e != quote : (*e != ' ' && *e != '&' && *e != '"'))) {
            e++;
        }
        if (quote && *e == quote) {
            e++;
        }
        for (char *q = v; q < e; q++) {
            *q = '*';
        }
        p = e;
    }
}

/* Removes whatever could be the password of conninfo from msg and writes "postgresql: msg"
 * (one line) into err. */
static void set_pg_err(char *err, size_t err_len, const char *conninfo, const char *what,
                       const char *msg)
{
    struct sb_buf b;
    sb_buf_init(&b, 4096);
    (void)sb_buf_append_str(&b, msg ? msg : "unknown error");
    while (b.len > 0 && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == ' ')) {
        b.data[--b.len] = '\0';
    }
    for (size_t i = 0; i < b.len; i++) {
        if (b.data[i] == '\n' || b.data[i] == '\t') {
            b.data[i] = ' ';
        }
    }

    if (conninfo != NULL) {
        char *perr = NULL;
        PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
        if (opts != NULL) {
            for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
                if (strcmp(o->keyword, "password") == 0 && o->val != NULL) {
                    scrub_secret(&b, o->val, strlen(o->val));
                }
            }
            PQconninfoFree(opts);
        }
        if (perr != NULL) {
            PQfreemem(perr);
        }
        /* The raw (still percent-encoded) password of a URI, also when the URI did not parse:
         * scheme://user:PASSWORD@host... */
        const char *auth = strstr(conninfo, "://");
        if (auth != NULL) {
            auth += 3;
            size_t alen = strcspn(auth, "/?");
            const char *at = NULL;
            for (size_t i = 0; i < alen; i++) {
                if (auth[i] == '@') {
                    at = auth + i;
                }
            }
            if (at != NULL) {
                const char *colon = memchr(auth, ':', (size_t)(at - auth));
                if (colon != NULL) {
                    scrub_secret(&b, colon + 1, (size_t)(at - colon - 1));
                }
            }
        }
    }
    scrub_password_kv(&b);
    sb_store_set_err(err, err_len, "postgresql: %s%s%s", what ? what : "", what ? ": " : "",
                     b.len > 0 ? b.data : "unknown error");
    sb_buf_free(&b);
}

/* ---- connection, errors ---- */

static void on_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* "relation already exists, skipping" and the like: not worth a log line */
}

static int session_setup(PGconn *c)
{
    PQsetNoticeProcessor(c, on_notice, NULL);
    PGresult *r = PQexec(c, session_sql);
    int ok = r != NULL && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    return ok ? 0 : -1;
}

static bool sqlstate_is_down(const char *st)
{
    /* 08: connection exception; 57P01..57P05: admin/crash shutdown, cannot connect now,
     * database dropped, idle session timeout; 53: insufficient resources (too many
     * connections, out of memory or disk); 57014: the statement timed out. */
    return (st[0] == '0' && st[1] == '8') || strncmp(st, "57P0", 4) == 0 ||
           (st[0] == '5' && st[1] == '3') || strcmp(st, "57014") == 0;
}

/* Maps a failed result (or NULL, when libpq could not even build one) to SB_STORE_E_*, logs
 * it (the primary message only: a DETAIL can hold row values), and clears it. */
static int fail(struct pg_store *p, PGresult *r, const char *what)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    int rc;
    if (PQstatus(p->conn) != CONNECTION_OK || (st != NULL && sqlstate_is_down(st))) {
        rc = SB_STORE_E_DOWN;
    } else if (st != NULL && strcmp(st, "23505") == 0) {
        rc = SB_STORE_E_EXISTS;
    } else if (st != NULL && st[0] == '2' && st[1] == '2') {
        rc = SB_STORE_E_INVALID; /* data exception: a value the column refuses */
    } else {
        rc = SB_STORE_E_FAILED;
    }
    if (rc == SB_STORE_E_DOWN) {
        if (!p->down_logged) {
            const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
            char msg[512];
            set_pg_err(msg, sizeof msg, p->conninfo, what, m ? m : PQerrorMessage(p->conn));
            sb_warn("store: database unreachable (%s)", msg);
            p->down_logged = true;
        }
    } else if (rc != SB_STORE_E_EXISTS) {
        const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        sb_warn("store: postgresql: %s: %s (SQLSTATE %s)", what, m ? m : "no message",
                st ? st : "none");
    }
    PQclear(r);
    return rc;
}

/* The connection is usable: reconnects (PQreset, blocking up to connect_timeout) when it
 * was lost, and ends a transaction an earlier failure may have left open. */
static int ready(struct pg_store *p)
{
    if (PQstatus(p->conn) != CONNECTION_OK) {
        p->spend_prepared = false; /* prepared statements die with their session */
        PQreset(p->conn);
        if (PQstatus(p->conn) != CONNECTION_OK || session_setup(p->conn) != 0) {
            if (!p->down_logged) {
                char msg[512];
                set_pg_err(msg, sizeof msg, p->conninfo, "reconnect", PQerrorMessage(p->conn));
                sb_warn("store: database unreachable (%s)", msg);
                p->down_logged = true;
            }
            return SB_STORE_E_DOWN;
        }
        if (p->down_logged) {
            sb_info("store: postgresql: reconnected");
            p->down_logged = false;
        }
    }
    if (PQtransactionStatus(p->conn) != PQTRANS_IDLE) {
        PQclear(PQexec(p->conn, "ROLLBACK"));
        if (PQstatus(p->conn) != CONNECTION_OK) {
            return SB_STORE_E_DOWN;
        }
    }
    return 0;
}

/* Runs a parameterized statement (text parameters; NULL is SQL NULL). Returns the result
 * (COMMAND_OK or TUPLES_OK) or NULL with *rc set. */
static PGresult *run(struct pg_store *p, const char *what, const char *sql, int nparams,
                     const char *const *params, int *rc)
{
    PGresult *r = PQexecParams(p->conn, sql, nparams, NULL, params, NULL, NULL, 0);
    ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
        *rc = 0;
        return r;
    }
    *rc = fail(p, r, what);
    return NULL;
}

/* A read runs once more on a new connection when the old one turned out to be dead (a
 * server restart or failover while the store was idle): the caller does not see it. Only
 * for statements that may run twice. */
static PGresult *run_again(struct pg_store *p, const char *what, const char *sql, int nparams,
                           const char *const *params, int *rc)
{
    PGresult *r = run(p, what, sql, nparams, params, rc);
    if (r == NULL && *rc == SB_STORE_E_DOWN && PQstatus(p->conn) != CONNECTION_OK &&
        ready(p) == 0) {
        r = run(p, what, sql, nparams, params, rc);
    }
    return r;
}

/* A constant statement whose result does not matter beyond success (BEGIN, COMMIT). */
static int run_simple(struct pg_store *p, const char *what, const char *sql)
{
    int rc;
    PGresult *r = run(p, what, sql, 0, NULL, &rc);
    PQclear(r);
    return rc;
}

static void rollback(struct pg_store *p)
{
    if (PQstatus(p->conn) == CONNECTION_OK && PQtransactionStatus(p->conn) != PQTRANS_IDLE) {
        PQclear(PQexec(p->conn, "ROLLBACK"));
    }
}

/* Parses a bigint column (never NULL where this is used). */
static int64_t col_i64(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col)) {
        return 0;
    }
    const char *v = PQgetvalue(r, row, col);
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != '\0') {
        return 0;
    }
    return (int64_t)x;
}

static bool col_bool(const PGresult *r, int row, int col)
{
    return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] == 't';
}

static void col_str(const PGresult *r, int row, int col, char *out, size_t out_len)
{
    const char *v = PQgetisnull(r, row, col) ? "" : PQgetvalue(r, row, col);
    size_t n = strlen(v);
    if (n >= out_len) {
        n = out_len - 1;
    }
    memcpy(out, v, n);
    out[n] = '\0';
}

/* ---- migrations ---- */

static const char *const pg_migrations[] = SB_SCHEMA_PG;
#define PG_MIGRATIONS (sizeof pg_migrations / sizeof pg_migrations[0])

/* Each missing migration in its own transaction, under a transaction-scoped advisory lock so
 * that instances starting together apply each migration exactly once: the second waits for
 * the first's COMMIT, then reads the new version and finds nothing to do. */
static int migrate(struct pg_store *p, char *err, size_t err_len)
{
    for (;;) {
        const char *step = "begin";
        PGresult *r = PQexec(p->conn, "BEGIN");
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            goto fail;
        }
        PQclear(r);
        step = "lock";
        r = PQexec(p->conn, "SELECT pg_advisory_xact_lock(" MIGRATE_LOCK_KEY ")");
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            goto fail;
        }
        PQclear(r);
        step = "schema table";
        r = PQexec(p->conn, SB_SCHEMA_PG_BOOT);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            goto fail;
        }
        PQclear(r);
        step = "schema version";
        r = PQexec(p->conn, "SELECT coalesce(max(version), 0) FROM sb_schema");
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
            goto fail;
        }
        int64_t version = col_i64(r, 0, 0);
        PQclear(r);
        if (version < 0 || (uint64_t)version >= PG_MIGRATIONS) {
            r = PQexec(p->conn, "COMMIT");
            step = "commit";
            if (PQresultStatus(r) != PGRES_COMMAND_OK) {
                goto fail;
            }
            PQclear(r);
            return 0;
        }
        step = "migration";
        r = PQexec(p->conn, pg_migrations[version]);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            goto fail;
        }
        PQclear(r);
        char v[24];
        snprintf(v, sizeof v, "%" PRId64, version + 1);
        const char *params[1] = {v};
        step = "schema version";
        r = PQexecParams(p->conn, "INSERT INTO sb_schema (version) VALUES ($1)", 1, NULL, params,
                         NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            goto fail;
        }
        PQclear(r);
        step = "commit";
        r = PQexec(p->conn, "COMMIT");
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            goto fail;
        }
        PQclear(r);
        continue;
    fail:;
        const char *m = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        snprintf(err, err_len, "%s: %s", step, m ? m : PQerrorMessage(p->conn));
        PQclear(r);
        rollback(p);
        return -1;
    }
}

/* ---- entity SQL (constant per kind; never built from input) ---- */

#define KEY_COLS                                                                                   \
    "data, spend_nano, budget_reset_at, (SELECT json_object_agg(m.model, m.spend_nano ORDER BY "   \
    "m.model)::text"                                                                               \
    " FROM sb_key_model_spend m WHERE m.token = k.token)"

struct kind_sql {
    const char *insert; /* $1 id, then the columns, see put */
    const char *upsert;
    const char *get;   /* -> data, spend_nano, budget_reset_at[, model spend JSON] */
    const char *del;   /* -> count */
    const char *reset; /* $1 id, $2 budget_reset_at, $3 now -> count */
    const char *list;  /* $1 limit, $2 offset */
};

#define ENT_SQL(T, ID)                                                                             \
    {                                                                                              \
        .insert = "INSERT INTO " T " (" ID ", budget_reset_at, data, created_at, updated_at)"      \
                  " VALUES ($1, $2, $3, $4, $4)",                                                  \
        .upsert = "INSERT INTO " T " (" ID ", budget_reset_at, data, created_at, updated_at)"      \
                  " VALUES ($1, $2, $3, $4, $4) ON CONFLICT (" ID ") DO UPDATE SET"                \
                  " budget_reset_at = EXCLUDED.budget_reset_at, data = EXCLUDED.data,"             \
                  " updated_at = EXCLUDED.updated_at",                                             \
        .get = "SELECT data, spend_nano, budget_reset_at FROM " T " WHERE " ID " = $1",            \
        .del = "DELETE FROM " T " WHERE " ID " = $1",                                              \
        .reset = "UPDATE " T " SET spend_nano = 0, budget_reset_at = $2, updated_at = $3"          \
                 " WHERE " ID " = $1",                                                             \
        .list = "SELECT data, spend_nano, budget_reset_at FROM " T " ORDER BY " ID                 \
                " LIMIT $1 OFFSET $2",                                                             \
    }

static const struct kind_sql kind_sql[SB_ENT_COUNT] = {
    [SB_ENT_KEY] =
        {
            .insert = "INSERT INTO sb_keys (token, key_alias, team_id, user_id, budget_reset_at,"
                      " data, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
            .upsert = "INSERT INTO sb_keys (token, key_alias, team_id, user_id, budget_reset_at,"
                      " data, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)"
                      " ON CONFLICT (token) DO UPDATE SET key_alias = EXCLUDED.key_alias,"
                      " team_id = EXCLUDED.team_id, user_id = EXCLUDED.user_id,"
                      " budget_reset_at = EXCLUDED.budget_reset_at, data = EXCLUDED.data,"
                      " updated_at = EXCLUDED.updated_at",
            .get = "SELECT " KEY_COLS " FROM sb_keys k WHERE k.token = $1",
            /* The per-model spend goes with the key, in the same statement. */
            .del = "WITH d AS (DELETE FROM sb_keys WHERE token = $1 RETURNING token),"
                   " m AS (DELETE FROM sb_key_model_spend WHERE token = $1)"
                   " SELECT count(*) FROM d",
            .reset = "WITH u AS (UPDATE sb_keys SET spend_nano = 0, budget_reset_at = $2,"
                     " updated_at = $3 WHERE token = $1 RETURNING token),"
                     " m AS (DELETE FROM sb_key_model_spend WHERE token IN (SELECT token FROM u))"
                     " SELECT count(*) FROM u",
            .list = "SELECT " KEY_COLS " FROM sb_keys k ORDER BY k.token LIMIT $1 OFFSET $2",
        },
    [SB_ENT_TEAM] = ENT_SQL("sb_teams", "team_id"),
    [SB_ENT_USER] = ENT_SQL("sb_users", "user_id"),
    [SB_ENT_CUSTOMER] = ENT_SQL("sb_customers", "user_id"),
};

/* Keys listed by one column: $1 value, $2 limit, $3 offset. */
static const char key_list_by_team[] = "SELECT " KEY_COLS " FROM sb_keys k WHERE k.team_id = $1"
                                       " ORDER BY k.token LIMIT $2 OFFSET $3";
static const char key_list_by_user[] = "SELECT " KEY_COLS " FROM sb_keys k WHERE k.user_id = $1"
                                       " ORDER BY k.token LIMIT $2 OFFSET $3";
static const char key_list_by_alias[] = "SELECT " KEY_COLS " FROM sb_keys k"
                                        " WHERE k.key_alias = $1 ORDER BY k.token"
                                        " LIMIT $2 OFFSET $3";

/* The record of result row `row` (data, spend_nano, budget_reset_at[, model spend JSON]). */
static json_t *load_row(enum sb_entity kind, const PGresult *r, int row)
{
    json_t *ms = NULL;
    if (kind == SB_ENT_KEY && !PQgetisnull(r, row, 3)) {
        json_t *nano = json_loads(PQgetvalue(r, row, 3), 0, NULL);
        if (json_is_object(nano) && json_object_size(nano) > 0) {
            ms = json_object();
            const char *model;
            json_t *v;
            json_object_foreach(nano, model, v)
            {
                json_object_set_new(ms, model, json_real(sb_store_dollars(json_integer_value(v))));
            }
        }
        json_decref(nano);
    }
    const char *data = PQgetvalue(r, row, 0);
    json_t *rec =
        sb_store_record_load(kind, data, (size_t)PQgetlength(r, row, 0), col_i64(r, row, 1), ms);
    if (rec != NULL) {
        sb_store_record_set_reset(rec, !PQgetisnull(r, row, 2), col_i64(r, row, 2));
    }
    return rec;
}

/* ---- ops ---- */

static void pg_close(struct sb_store *s)
{
    struct pg_store *p = pg(s);
    PQfinish(p->conn);
    free(p->conninfo);
    free(p);
}

static int pg_ping(struct sb_store *s)
{
    struct pg_store *p = pg(s);
    for (int attempt = 0; attempt < 2; attempt++) {
        int rc = ready(p);
        if (rc != 0) {
            return rc;
        }
        rc = run_simple(p, "ping", "SELECT 1");
        if (rc == 0) {
            return 0;
        }
        /* A connection that died while idle is only noticed now: one reconnect. */
        if (PQstatus(p->conn) == CONNECTION_OK) {
            return SB_STORE_E_DOWN;
        }
    }
    return SB_STORE_E_DOWN;
}

/* Opens a write transaction of the change log: BEGIN, then the advisory lock that orders
 * change rows. Without it a reader could see seq 8 committed while seq 7 is still in flight,
 * remember 8, and never read 7. Writers of entities are admin changes and resets (rare), so
 * serializing them costs nothing measurable; spend writes do not take it. */
static int change_begin(struct pg_store *p)
{
    int rc = run_simple(p, "begin", "BEGIN");
    if (rc == 0) {
        rc = run_simple(p, "change lock", "SELECT pg_advisory_xact_lock(" CHANGE_LOCK_KEY ")");
    }
    if (rc != 0) {
        rollback(p);
    }
    return rc;
}

/* Appends the change row when rc is 0, commits; rolls back otherwise. */
static int change_end(struct pg_store *p, enum sb_entity kind, const char *id, int rc)
{
    if (rc == 0) {
        char k[8], now[24];
        snprintf(k, sizeof k, "%d", (int)kind);
        snprintf(now, sizeof now, "%lld", (long long)time(NULL));
        const char *params[3] = {k, id, now};
        PGresult *r =
            run(p, "change log",
                "INSERT INTO sb_changes (kind, id, at) VALUES ($1::integer, $2, $3::bigint)", 3,
                params, &rc);
        PQclear(r);
    }
    if (rc == 0) {
        rc = run_simple(p, "commit", "COMMIT");
    }
    if (rc != 0) {
        rollback(p);
    }
    return rc;
}

static int pg_put(struct sb_store *s, enum sb_entity kind, const char *id,
                  const struct sb_store_cols *c, bool create)
{
    struct pg_store *p = pg(s);
    int rc = ready(p);
    if (rc != 0) {
        return rc;
    }
    if ((rc = change_begin(p)) != 0) {
        return rc;
    }
    char reset[24], now[24];
    snprintf(reset, sizeof reset, "%" PRId64, c->budget_reset_at);
    snprintf(now, sizeof now, "%" PRId64, c->now_s);
    const char *sql = create ? kind_sql[kind].insert : kind_sql[kind].upsert;
    PGresult *r;
    if (kind == SB_ENT_KEY) {
        const char *params[7] = {
            id, c->key_alias, c->team_id, c->user_id, c->has_reset ? reset : NULL, c->data, now};
        r = run(p, "put", sql, 7, params, &rc);
    } else {
        const char *params[4] = {id, c->has_reset ? reset : NULL, c->data, now};
        r = run(p, "put", sql, 4, params, &rc);
    }
    PQclear(r);
    return change_end(p, kind, id, rc);
}

static int pg_get(struct sb_store *s, enum sb_entity kind, const char *id, json_t **out)
{
    struct pg_store *p = pg(s);
    int rc = ready(p);
    if (rc != 0) {
        return rc;
    }
    const char *params[1] = {id};
    PGresult *r = run_again(p, "get", kind_sql[kind].get, 1, params, &rc);
    if (r == NULL) {
        return rc;
    }
    if (PQntuples(r) == 0) {
        PQclear(r);
        return SB_STORE_E_NOT_FOUND;
    }
    json_t *rec = load_row(kind, r, 0);
    PQclear(r);
    if (rec == NULL) {
        return SB_STORE_E_FAILED;
    }
    *out = rec;
    return 0;
}

/* The affected-row count of a DELETE/UPDATE, or the count(*) its CTE form selects. */
static int64_t affected(const PGresult *r)
{
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        return PQntuples(r) == 1 ? col_i64(r, 0, 0) : 0;
    }
    const char *n = PQcmdTuples((PGresult *)r);
    return n[0] != '\0' ? strtoll(n, NULL, 10) : 0;
}

static int pg_del(struct sb_store *s, enum sb_entity kind, const char *id)
{
    struct pg_store *p = pg(s);
    int rc = ready(p);
    if (rc != 0) {
        return rc;
    }
    if ((rc = change_begin(p)) != 0) {
        return rc;
    }
    const char *params[1] = {id};
    PGresult *r = run(p, "delete", kind_sql[kind].del, 1, params, &rc);
    if (r != NULL) {
        rc = affected(r) > 0 ? 0 : SB_STORE_E_NOT_FOUND;
        PQclear(r);
    }
    return change_end(p, kind, id, rc);
}

static int pg_list(struct sb_store *s, enum sb_entity kind, const char *field, const char *value,
                   size_t offset, size_t limit, json_t **out)
{
    struct pg_store *p = pg(s);
    int rc = ready(p);
    if (rc != 0) {
        return rc;
    }
    char lim[24], off[24];
    snprintf(lim, sizeof lim, "%zu", limit);
    snprintf(off, sizeof off, "%zu", offset);
    const char *lim_p = limit > 0 ? lim : NULL; /* LIMIT NULL: no limit */
    PGresult *r;
    if (field == NULL) {
        const char *params[2] = {lim_p, off};
        r = run_again(p, "list", kind_sql[kind].list, 2, params, &rc);
    } else {
        const char *sql;
        if (kind != SB_ENT_KEY) {
            return SB_STORE_E_INVALID;
        } else if (strcmp(field, "team_id") == 0) {
            sql = key_list_by_team;
        } else if (strcmp(field, "user_id") == 0) {
            sql = key_list_by_user;
        } else if (strcmp(field, "key_alias") == 0) {
            sql = key_list_by_alias;
        } else {
            return SB_STORE_E_INVALID;
        }
        const char *params[3] = {value, lim_p, off};
        r = run_again(p, "list", sql, 3, params, &rc);
    }
    if (r == NULL) {
        return rc;
    }
    json_t *arr = json_array();
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        json_t *rec = load_row(kind, r, i);
        if (rec == NULL || json_array_append_new(arr, rec) != 0) {
            json_decref(arr);
            PQclear(r);
            return SB_STORE_E_FAILED;
        }
    }
    PQclear(r);
    *out = arr;
    return 0;
}

/* budget_reset_at of each kind, the row locked until the transaction ends. */
static const char *const reset_at_sql[SB_ENT_COUNT] = {
    [SB_ENT_KEY] = "SELECT budget_reset_at FROM sb_keys WHERE token = $1 FOR UPDATE",
    [SB_ENT_TEAM] = "SELECT budget_reset_at FROM sb_teams WHERE team_id = $1 FOR UPDATE",
    [SB_ENT_USER] = "SELECT budget_reset_at FROM sb_users WHERE user_id = $1 FOR UPDATE",
    [SB_ENT_CUSTOMER] = "SELECT budget_reset_at FROM sb_customers WHERE user_id = $1 FOR UPDATE",
};

static int pg_reset_spend(struct sb_store *s, enum sb_entity kind, const char *id, bool has_expect,
                          int64_t expect, int64_t next_reset)
{
    struct pg_store *p = pg(s);
    int rc = ready(p);
    if (rc != 0) {
        return rc;
    }
    if ((rc = change_begin(p)) != 0) {
        return rc;
    }
    const char *id_param[1] = {id};
    if (has_expect) {
        /* Every reset holds the change lock, so the check and the update are one step for
         * every instance: the second of two that saw the same period end finds the new value. */
        PGresult *r = run(p, "reset check", reset_at_sql[kind], 1, id_param, &rc);
        if (r != NULL) {
            if (PQntuples(r) == 0) {
                rc = SB_STORE_E_NOT_FOUND;
            } else if (col_i64(r, 0, 0) != expect) {
                rc = SB_STORE_E_CONFLICT;
            }
            PQclear(r);
        }
    }
    if (rc == 0) {
        char reset[24], now[24];
        snprintf(reset, sizeof reset, "%" PRId64, next_reset);
        snprintf(now, sizeof now, "%lld", (long long)time(NULL));
        const char *params[3] = {id, next_reset > 0 ? reset : NULL, now};
        PGresult *r = run(p, "reset spend", kind_sql[kind].reset, 3, params, &rc);
        if (r != NULL) {
            rc = affected(r) > 0 ? 0 : SB_STORE_E_NOT_FOUND;
            PQclear(r);
        }
    }
    return change_end(p, kind, id, rc);
}

/* $1 to, $2 from: the count is 0 (nothing written) when either is missing. One statement,
 * so one transaction; a key's per-model rows are copied only when its total was. */
#define CARRY_SQL(T, ID)                                                                           \
    "UPDATE " T " t SET spend_nano = t.spend_nano + f.spend_nano FROM (SELECT spend_nano FROM " T  \
    " WHERE " ID " = $2) f WHERE t." ID " = $1"

static const char *const carry_sql[SB_ENT_COUNT] = {
    [SB_ENT_KEY] = "WITH u AS (UPDATE sb_keys t SET spend_nano = t.spend_nano + f.spend_nano"
                   " FROM (SELECT spend_nano FROM sb_keys WHERE token = $2) f"
                   " WHERE t.token = $1 RETURNING t.token),"
                   " m AS (INSERT INTO sb_key_model_spend AS t (token, model, spend_nano)"
                   " SELECT u.token, s.model, s.spend_nano FROM u, sb_key_model_spend s"
                   " WHERE s.token = $2 ON CONFLICT (token, model)"
                   " DO UPDATE SET spend_nano = t.spend_nano + EXCLUDED.spend_nano)"
                   " SELECT count(*) FROM u",
    [SB_ENT_TEAM] = CARRY_SQL("sb_teams", "team_id"),
    [SB_ENT_USER] = CARRY_SQL("sb_users", "user_id"),
    [SB_ENT_CUSTOMER] = CARRY_SQL("sb_customers", "user_id"),
};

static int pg_spend_carry(struct sb_store *s, enum sb_entity kind, const char *from, const char *to)
{
    struct pg_store *p = pg(s);
    int rc = ready(p);
    if (rc != 0) {
        return rc;
    }
    const char *params[2] = {to, from};
    PGresult *r = run(p, "spend carry", carry_sql[kind], 2, params, &rc);
    if (r == NULL) {
        return rc;
    }
    rc = affected(r) > 0 ? 0 : SB_STORE_E_NOT_FOUND;
    PQclear(r);
    return rc;
}

/* ---- the change feed, shared spend ---- */

static int pg_changes(struct sb_store *s, int64_t after, struct sb_change *out, size_t max,
                      size_t *n, int64_t *head, int64_t *oldest)
{
    struct pg_store *p = pg(s);
    int rc = ready(p);
    if (rc != 0) {
        return rc;
    }
    size_t got = 0;
    if (max > 0) {
        char a[24], m[24];
        snprintf(a, sizeof a, "%" PRId64, after);
        snprintf(m, sizeof m, "%zu", max);
        const char *params[2] = {a, m};
        PGresult *r = run_again(p, "changes",
                                "SELECT seq, kind, id FROM sb_changes WHERE seq > $1::bigint"
                                " ORDER BY seq LIMIT $2::bigint",
                                2, params, &rc);
        if (r == NULL) {
            return rc;
        }
        int rows = PQntuples(r);
        for (int i = 0; i < rows && got < max; i++) {
            int64_t kind = col_i64(r, i, 1);
            if (kind < 0 || kind >= SB_ENT_COUNT) {
                continue; /* a kind this version does not know */
            }
            out[got].seq = col_i64(r, i, 0);
            out[got].kind = (enum sb_entity)kind;
            col_str(r, i, 2, out[got].id, sizeof out[got].id);
            got++;
        }
        PQclear(r);
    }
    PGresult *r = run_again(p, "change ends",
                            "SELECT coalesce(max(seq), 0), coalesce(min(seq), 0) FROM sb_changes",
                            0, NULL, &rc);
    if (r == NULL) {
        return rc;
    }
    *head = col_i64(r, 0, 0);
    *oldest = col_i64(r, 0, 1);
    PQclear(r);
    *n = got;
    return 0;
}

static int pg_changes_prune(struct sb_store *s, int64_t before_s, size_t *deleted)
{
    struct pg_store *p = pg(s);
    int rc = ready(p);
    if (rc != 0) {
        return rc;
    }
    char b[24];
    snprintf(b, sizeof b, "%" PRId64, before_s);
    const char *params[1] = {b};
    PGresult *r = run(p, "changes prune",
                      "DELETE FROM sb_changes WHERE at < $1::bigint"
                      " AND seq < (SELECT max(seq) FROM sb_changes)",
                      1, params, &rc);
    if (r == NULL) {
        return rc;
    }
    *deleted = (size_t)affected(r);
    PQclear(r);
    return 0;
}

static const char *const spend_read_sql[SB_ENT_COUNT] = {
    [SB_ENT_KEY] = "SELECT token, spend_nano FROM sb_keys"
                   " WHERE token IN (SELECT json_array_elements_text($1::json))",
    [SB_ENT_TEAM] = "SELECT team_id, spend_nano FROM sb_teams"
                    " WHERE team_id IN (SELECT json_array_elements_text($1::json))",
    [SB_ENT_USER] = "SELECT user_id, spend_nano FROM sb_users"
                    " WHERE user_id IN (SELECT json_array_elements_text($1::json))",
    [SB_ENT_CUSTOMER] = "SELECT user_id, spend_nano FROM sb_customers"
                        " WHERE user_id IN (SELECT json_array_elements_text($1::json))",
};

static int pg_spend_read(struct sb_store *s, enum sb_entity kind, const char *ids_json,
                         json_t **out)
{
    struct pg_store *p = pg(s);
    int rc = ready(p);
    if (rc != 0) {
        return rc;
    }
    const char *params[1] = {ids_json};
    PGresult *r = run_again(p, "spend read", spend_read_sql[kind], 1, params, &rc);
    if (r == NULL) {
        return rc;
    }
    json_t *o = json_object();
    int rows = PQntuples(r);
    for (int i = 0; o != NULL && i < rows; i++) {
        if (sb_store_spend_entry(o, kind, PQgetvalue(r, i, 0), col_i64(r, i, 1)) == NULL) {
            json_decref(o);
            o = NULL;
        }
    }
    PQclear(r);
    if (o != NULL && kind == SB_ENT_KEY) {
        r = run_again(p, "model spend read",
                      "SELECT token, model, spend_nano FROM sb_key_model_spend"
                      " WHERE token IN (SELECT json_array_elements_text($1::json))",
                      1, params, &rc);
        if (r == NULL) {
            json_decref(o);
            return rc;
        }
        rows = PQntuples(r);
        for (int i = 0; o != NULL && i < rows; i++) {
            json_t *ms =
                json_object_get(json_object_get(o, PQgetvalue(r, i, 0)), "model_spend_nano");
            if (ms != NULL &&
                json_object_set_new(ms, PQgetvalue(r, i, 1), json_integer(col_i64(r, i, 2))) != 0) {
                json_decref(o);
                o = NULL;
            }
        }
        PQclear(r);
    }
    if (o == NULL) {
        return SB_STORE_E_FAILED;
    }
    *out = o;
    return 0;
}

/* ---- the spend ledger ---- */

/* One statement per chunk, prepared once per connection (planning this statement costs
 * more than running it for a small batch): the rows travel as one JSON array parameter
 * (json_to_recordset), so a chunk is one round trip whatever its size. The INSERT's RETURNING is
 * exactly the rows that were not in the ledger (ON CONFLICT DO NOTHING also drops a request_id
 * repeated within the chunk), and every total below is computed from it only: a row already written
 * adds nothing. Totals are summed per id first, so each total row is updated once per
 * statement (the ledger's batches are at most one chunk: once per batch, as on SQLite); a row
 * without a model adds to its key but to no model, as on SQLite. Data-modifying CTEs all run to
 * completion, in the statement's transaction. */
static const char spend_sql[] =
    "WITH r AS (SELECT * FROM json_to_recordset($1::json) AS x("
    " request_id text, api_key text, team_id text, user_id text, end_user text, model text,"
    " deployment text, provider text, prompt_tokens bigint, completion_tokens bigint,"
    " cache_read_tokens bigint, cache_write_tokens bigint, reasoning_tokens bigint,"
    " cost_nano bigint, cost_known boolean, start_ms bigint, end_ms bigint, status integer,"
    " cache_hit boolean, route text)),"
    " ins AS (INSERT INTO sb_spend_logs (request_id, api_key, team_id, user_id, end_user, model,"
    " deployment, provider, prompt_tokens, completion_tokens, cache_read_tokens,"
    " cache_write_tokens, reasoning_tokens, cost_nano, cost_known, start_ms, end_ms, status,"
    " cache_hit, route)"
    " SELECT request_id, api_key, team_id, user_id, end_user, model, deployment, provider,"
    " prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens,"
    " reasoning_tokens, cost_nano, cost_known, start_ms, end_ms, status, cache_hit, route"
    " FROM r ON CONFLICT (request_id) DO NOTHING"
    " RETURNING api_key, team_id, user_id, end_user, model, cost_nano),"
    " k AS (UPDATE sb_keys t SET spend_nano = t.spend_nano + a.s"
    " FROM (SELECT api_key AS id, sum(cost_nano)::bigint AS s FROM ins WHERE api_key <> ''"
    " GROUP BY api_key) a WHERE t.token = a.id),"
    " km AS (INSERT INTO sb_key_model_spend AS t (token, model, spend_nano)"
    " SELECT a.id, a.model, a.s FROM (SELECT api_key AS id, model, sum(cost_nano)::bigint AS s"
    " FROM ins WHERE api_key <> '' AND model <> '' GROUP BY api_key, model) a"
    " WHERE EXISTS (SELECT 1 FROM sb_keys WHERE token = a.id)"
    " ON CONFLICT (token, model) DO UPDATE SET spend_nano = t.spend_nano + EXCLUDED.spend_nano),"
    " tm AS (UPDATE sb_teams t SET spend_nano = t.spend_nano + a.s"
    " FROM (SELECT team_id AS id, sum(cost_nano)::bigint AS s FROM ins WHERE team_id <> ''"
    " GROUP BY team_id) a WHERE t.team_id = a.id),"
    " us AS (UPDATE sb_users t SET spend_nano = t.spend_nano + a.s"
    " FROM (SELECT user_id AS id, sum(cost_nano)::bigint AS s FROM ins WHERE user_id <> ''"
    " GROUP BY user_id) a WHERE t.user_id = a.id),"
    " cu AS (INSERT INTO sb_customers AS t (user_id, spend_nano, data, created_at, updated_at)"
    " SELECT a.id, a.s, json_build_object('user_id', a.id)::text, $2::bigint, $2::bigint"
    " FROM (SELECT end_user AS id, sum(cost_nano)::bigint AS s FROM ins WHERE end_user <> ''"
    " GROUP BY end_user) a"
    " ON CONFLICT (user_id) DO UPDATE SET spend_nano = t.spend_nano + EXCLUDED.spend_nano)"
    " SELECT count(*) FROM ins";

static int row_json(struct sb_buf *b, const struct sb_spend_row *r)
{
    /* sb_store_spend_row_check has made every string NUL-terminated within its array. */
    int rc = 0;
    rc |= sb_buf_append_str(b, "{\"request_id\":");
    rc |= sb_buf_append_json_str(b, r->request_id, strlen(r->request_id));
    rc |= sb_buf_append_str(b, ",\"api_key\":");
    rc |= sb_buf_append_json_str(b, r->key_hash, strlen(r->key_hash));
    rc |= sb_buf_append_str(b, ",\"team_id\":");
    rc |= sb_buf_append_json_str(b, r->team_id, strlen(r->team_id));
    rc |= sb_buf_append_str(b, ",\"user_id\":");
    rc |= sb_buf_append_json_str(b, r->user_id, strlen(r->user_id));
    rc |= sb_buf_append_str(b, ",\"end_user\":");
    rc |= sb_buf_append_json_str(b, r->end_user, strlen(r->end_user));
    rc |= sb_buf_append_str(b, ",\"model\":");
    rc |= sb_buf_append_json_str(b, r->model, strlen(r->model));
    rc |= sb_buf_append_str(b, ",\"deployment\":");
    rc |= sb_buf_append_json_str(b, r->deployment, strlen(r->deployment));
    rc |= sb_buf_append_str(b, ",\"provider\":");
    rc |= sb_buf_append_json_str(b, r->provider, strlen(r->provider));
    rc |= sb_buf_append_str(b, ",\"route\":");
    rc |= sb_buf_append_json_str(b, r->route, strlen(r->route));
    rc |= sb_buf_printf(b,
                        ",\"prompt_tokens\":%" PRId64 ",\"completion_tokens\":%" PRId64
                        ",\"cache_read_tokens\":%" PRId64 ",\"cache_write_tokens\":%" PRId64
                        ",\"reasoning_tokens\":%" PRId64 ",\"cost_nano\":%" PRId64
                        ",\"cost_known\":%s,\"start_ms\":%" PRId64 ",\"end_ms\":%" PRId64
                        ",\"status\":%d,\"cache_hit\":%s}",
                        r->prompt_tokens, r->completion_tokens, r->cache_read_tokens,
                        r->cache_write_tokens, r->reasoning_tokens, r->cost_nano,
                        r->cost_known ? "true" : "false", r->start_ms, r->end_ms, r->status,
                        r->cache_hit ? "true" : "false");
    return rc != 0 ? -1 : 0;
}

static bool retryable(const PGresult *r)
{
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    return st != NULL && (strcmp(st, "40001") == 0 || strcmp(st, "40P01") == 0);
}

static int spend_write_once(struct pg_store *p, const struct sb_spend_row *rows, size_t n,
                            size_t *inserted, bool *retry)
{
    char now[24];
    snprintf(now, sizeof now, "%lld", (long long)time(NULL));
    struct sb_buf json;
    sb_buf_init(&json, SPEND_JSON_MAX);
    size_t total = 0;
    bool multi = n > SPEND_CHUNK;
    int rc = 0;
    *retry = false;

    if (multi && (rc = run_simple(p, "spend begin", "BEGIN")) != 0) {
        goto out;
    }
    for (size_t at = 0; at < n; at += SPEND_CHUNK) {
        size_t m = n - at < SPEND_CHUNK ? n - at : SPEND_CHUNK;
        sb_buf_reset(&json);
        if (sb_buf_append_char(&json, '[') != 0) {
            rc = SB_STORE_E_FAILED;
            goto out;
        }
        for (size_t i = 0; i < m; i++) {
            if ((i > 0 && sb_buf_append_char(&json, ',') != 0) ||
                row_json(&json, &rows[at + i]) != 0) {
                rc = SB_STORE_E_FAILED;
                goto out;
            }
        }
        if (sb_buf_append_char(&json, ']') != 0) {
            rc = SB_STORE_E_FAILED;
            goto out;
        }
        if (!p->spend_prepared) {
            PGresult *pr = PQprepare(p->conn, "sb_spend", spend_sql, 2, NULL);
            if (pr == NULL || PQresultStatus(pr) != PGRES_COMMAND_OK) {
                rc = fail(p, pr, "spend prepare");
                goto out;
            }
            PQclear(pr);
            p->spend_prepared = true;
        }
        const char *params[2] = {json.data, now};
        PGresult *r = PQexecPrepared(p->conn, "sb_spend", 2, params, NULL, NULL, 0);
        if (r == NULL || PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
            *retry = retryable(r) && PQstatus(p->conn) == CONNECTION_OK;
            if (*retry) {
                PQclear(r);
                rc = SB_STORE_E_FAILED;
            } else {
                rc = fail(p, r, "spend write");
            }
            goto out;
        }
        total += (size_t)col_i64(r, 0, 0);
        PQclear(r);
    }
    if (multi && (rc = run_simple(p, "spend commit", "COMMIT")) != 0) {
        goto out;
    }
    *inserted = total;
out:
    if (rc != 0) {
        rollback(p);
    }
    sb_buf_free(&json);
    return rc;
}

static int pg_spend_write(struct sb_store *s, const struct sb_spend_row *rows, size_t n,
                          size_t *inserted)
{
    struct pg_store *p = pg(s);
    size_t ins = 0;
    int rc = SB_STORE_E_FAILED;
    for (int attempt = 0; attempt < SPEND_ATTEMPTS; attempt++) {
        rc = ready(p);
        if (rc != 0) {
            return rc;
        }
        bool retry = false;
        rc = spend_write_once(p, rows, n, &ins, &retry);
        /* Once more on a new connection when the old one was found dead: safe, since a row
         * that did get in the first time is a duplicate the second time (then *inserted
         * undercounts it; the ledger holds it exactly once). */
        if (!retry &&
            !(attempt == 0 && rc == SB_STORE_E_DOWN && PQstatus(p->conn) != CONNECTION_OK)) {
            break;
        }
    }
    if (rc == 0 && inserted != NULL) {
        *inserted = ins;
    }
    return rc;
}

#define LOG_COLS                                                                                   \
    "request_id, api_key, team_id, user_id, end_user, model, deployment, provider,"                \
    " prompt_tokens, completion_tokens, cache_read_tokens, cache_write_tokens,"                    \
    " reasoning_tokens, cost_nano, cost_known, start_ms, end_ms, status, cache_hit, route"

static const char logs_sql[] =
    "SELECT " LOG_COLS " FROM sb_spend_logs"
    " WHERE ($1::text IS NULL OR api_key = $1) AND ($2::text IS NULL OR team_id = $2)"
    " AND ($3::text IS NULL OR user_id = $3) AND ($4::text IS NULL OR end_user = $4)"
    " AND ($5::text IS NULL OR request_id = $5)"
    " AND ($6::bigint IS NULL OR start_ms >= $6) AND ($7::bigint IS NULL OR start_ms < $7)"
    " ORDER BY start_ms DESC, request_id DESC LIMIT $8";

static void log_row(const PGresult *r, int i, struct sb_spend_row *row)
{
    memset(row, 0, sizeof *row);
    col_str(r, i, 0, row->request_id, sizeof row->request_id);
    col_str(r, i, 1, row->key_hash, sizeof row->key_hash);
    col_str(r, i, 2, row->team_id, sizeof row->team_id);
    col_str(r, i, 3, row->user_id, sizeof row->user_id);
    col_str(r, i, 4, row->end_user, sizeof row->end_user);
    col_str(r, i, 5, row->model, sizeof row->model);
    col_str(r, i, 6, row->deployment, sizeof row->deployment);
    col_str(r, i, 7, row->provider, sizeof row->provider);
    row->prompt_tokens = col_i64(r, i, 8);
    row->completion_tokens = col_i64(r, i, 9);
    row->cache_read_tokens = col_i64(r, i, 10);
    row->cache_write_tokens = col_i64(r, i, 11);
    row->reasoning_tokens = col_i64(r, i, 12);
    row->cost_nano = col_i64(r, i, 13);
    row->cost_known = col_bool(r, i, 14);
    row->start_ms = col_i64(r, i, 15);
    row->end_ms = col_i64(r, i, 16);
    row->status = (int)col_i64(r, i, 17);
    row->cache_hit = col_bool(r, i, 18);
    col_str(r, i, 19, row->route, sizeof row->route);
}

static int pg_spend_logs(struct sb_store *s, const struct sb_spend_filter *f, json_t **out)
{
    struct pg_store *p = pg(s);
    int rc = ready(p);
    if (rc != 0) {
        return rc;
    }
    char start[24], end[24], lim[24];
    snprintf(start, sizeof start, "%" PRId64, f->start_ms);
    snprintf(end, sizeof end, "%" PRId64, f->end_ms);
    snprintf(lim, sizeof lim, "%zu", f->limit);
    const char *params[8] = {f->key_hash,
                             f->team_id,
                             f->user_id,
                             f->end_user,
                             f->request_id,
                             f->start_ms != 0 ? start : NULL,
                             f->end_ms != 0 ? end : NULL,
                             lim};
    PGresult *r = run_again(p, "spend logs", logs_sql, 8, params, &rc);
    if (r == NULL) {
        return rc;
    }
    json_t *arr = json_array();
    struct sb_spend_row row;
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        log_row(r, i, &row);
        json_t *o = sb_store_spend_log_json(&row);
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            PQclear(r);
            return SB_STORE_E_FAILED;
        }
    }
    PQclear(r);
    *out = arr;
    return 0;
}

#define TOTALS_SQL(COL)                                                                            \
    "SELECT " COL ", sum(cost_nano)::bigint AS total,"                                             \
    " sum(prompt_tokens + completion_tokens)::bigint, count(*) FROM sb_spend_logs"                 \
    " WHERE " COL " <> '' AND ($1::bigint IS NULL OR start_ms >= $1)"                              \
    " AND ($2::bigint IS NULL OR start_ms < $2)"                                                   \
    " GROUP BY " COL " ORDER BY total DESC, " COL " ASC"

static const char *const totals_sql[] = {
    [SB_SPEND_BY_KEY] = TOTALS_SQL("api_key"),
    [SB_SPEND_BY_MODEL] = TOTALS_SQL("model"),
    [SB_SPEND_BY_TEAM] = TOTALS_SQL("team_id"),
};

static int pg_spend_totals(struct sb_store *s, enum sb_spend_group by, int64_t start_ms,
                           int64_t end_ms, json_t **out)
{
    struct pg_store *p = pg(s);
    if ((unsigned)by > SB_SPEND_BY_TEAM) {
        return SB_STORE_E_INVALID;
    }
    int rc = ready(p);
    if (rc != 0) {
        return rc;
    }
    char start[24], end[24];
    snprintf(start, sizeof start, "%" PRId64, start_ms);
    snprintf(end, sizeof end, "%" PRId64, end_ms);
    const char *params[2] = {start_ms != 0 ? start : NULL, end_ms != 0 ? end : NULL};
    PGresult *r = run_again(p, "spend totals", totals_sql[by], 2, params, &rc);
    if (r == NULL) {
        return rc;
    }
    json_t *arr = json_array();
    int n = PQntuples(r);
    for (int i = 0; i < n; i++) {
        json_t *o = sb_store_total_json(by, PQgetvalue(r, i, 0), col_i64(r, i, 1), col_i64(r, i, 2),
                                        col_i64(r, i, 3));
        if (o == NULL || json_array_append_new(arr, o) != 0) {
            json_decref(arr);
            PQclear(r);
            return SB_STORE_E_FAILED;
        }
    }
    PQclear(r);
    *out = arr;
    return 0;
}

static int pg_spend_count(struct sb_store *s, int64_t *out)
{
    struct pg_store *p = pg(s);
    int rc = ready(p);
    if (rc != 0) {
        return rc;
    }
    PGresult *r = run_again(p, "spend count", "SELECT count(*) FROM sb_spend_logs", 0, NULL, &rc);
    if (r == NULL) {
        return rc;
    }
    *out = col_i64(r, 0, 0);
    PQclear(r);
    return 0;
}

static const struct sb_store_ops pg_ops = {
    .name = "postgresql",
    .close = pg_close,
    .ping = pg_ping,
    .put = pg_put,
    .get = pg_get,
    .del = pg_del,
    .list = pg_list,
    .reset_spend = pg_reset_spend,
    .spend_write = pg_spend_write,
    .spend_logs = pg_spend_logs,
    .spend_totals = pg_spend_totals,
    .spend_count = pg_spend_count,
    .changes = pg_changes,
    .changes_prune = pg_changes_prune,
    .spend_read = pg_spend_read,
    .spend_carry = pg_spend_carry,
};

struct sb_store *sb_store_pg_open(const char *conninfo, char *err, size_t err_len)
{
    /* Defaults first (the URI may override them), then the URI, then what must hold
     * whatever the URI says: the text this file sends and reads is UTF-8. */
    const char *kw[CONN_DEFAULTS + 3];
    const char *val[CONN_DEFAULTS + 3];
    for (size_t i = 0; i < CONN_DEFAULTS; i++) {
        kw[i] = conn_defaults_kw[i];
        val[i] = conn_defaults_val[i];
    }
    kw[CONN_DEFAULTS] = "dbname";
    val[CONN_DEFAULTS] = conninfo;
    kw[CONN_DEFAULTS + 1] = "client_encoding";
    val[CONN_DEFAULTS + 1] = "UTF8";
    kw[CONN_DEFAULTS + 2] = NULL;
    val[CONN_DEFAULTS + 2] = NULL;

    PGconn *c = PQconnectdbParams(kw, val, 1);
    if (c == NULL) {
        sb_store_set_err(err, err_len, "postgresql: out of memory");
        return NULL;
    }
    if (PQstatus(c) != CONNECTION_OK) {
        set_pg_err(err, err_len, conninfo, "connect", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    if (session_setup(c) != 0) {
        set_pg_err(err, err_len, conninfo, "session settings", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    struct pg_store *p = calloc(1, sizeof *p);
    if (p == NULL) {
        PQfinish(c);
        sb_store_set_err(err, err_len, "postgresql: out of memory");
        return NULL;
    }
    p->base.ops = &pg_ops;
    p->conn = c;
    p->conninfo = strdup(conninfo);
    if (p->conninfo == NULL) {
        sb_store_set_err(err, err_len, "postgresql: out of memory");
        pg_close(&p->base);
        return NULL;
    }
    char merr[512];
    if (migrate(p, merr, sizeof merr) != 0) {
        set_pg_err(err, err_len, conninfo, "migrations", merr);
        pg_close(&p->base);
        return NULL;
    }
    return &p->base;
}

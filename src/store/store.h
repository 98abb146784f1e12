/* The store: virtual keys, teams, users, end users (customers) and the spend ledger, in
 * SQLite (the default, embedded) or PostgreSQL (many instances, one ledger).
 *
 * One interface, two backends (sqlite.c, postgres.c) that pass the same test suite
 * (tests/unit/test_store.c). Every call is synchronous and blocking: it is made only on the
 * store thread (src/ledger/ledger.h), never on a worker. A struct sb_store is not
 * thread-safe.
 *
 * Records are JSON objects (jansson) with LiteLLM's field names (see the entity lists below);
 * the backends keep the fields that are queried or updated in place in columns and the whole
 * record in a JSON text column. Only parameterized statements are used: no SQL is ever built
 * from input.
 *
 * Money is integer nano-dollars (1e-9 USD) everywhere below the API: exact sums, no floating
 * point drift. Records carry "spend" as dollars (a JSON real, nano / 1e9) for LiteLLM's API.
 *
 * Return codes: 0, or one of the SB_STORE_E_* below. */
#ifndef SB_STORE_STORE_H
#define SB_STORE_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SB_STORE_E_NOT_FOUND (-2001) /* no such record */
#define SB_STORE_E_EXISTS    (-2002) /* create of an id that exists */
#define SB_STORE_E_DOWN      (-2003) /* the database is unreachable; retry later */
#define SB_STORE_E_INVALID   (-2004) /* a bad argument (id too long, record not an object) */
#define SB_STORE_E_FAILED    (-2005) /* any other database error */
#define SB_STORE_E_CONFLICT  (-2006) /* a conditional write found another value: re-read */

enum sb_entity {
    SB_ENT_KEY,      /* id: the key's SHA-256 hex ("token"); LiteLLM_VerificationToken */
    SB_ENT_TEAM,     /* id: team_id */
    SB_ENT_USER,     /* id: user_id */
    SB_ENT_CUSTOMER, /* id: the end user's id (the request's `user` field) */
};
#define SB_ENT_COUNT 4

/* Opens "sqlite:///absolute/path.db", "sqlite://relative.db", "sqlite::memory:" or
 * "postgresql://..." / "postgres://..." (libpq connection URI), and applies the versioned
 * migrations that are missing (in one transaction each; the schema version is kept in a
 * table sb_schema). SQLite runs in WAL mode with synchronous=NORMAL and a busy timeout. On
 * error returns NULL with a message in err (never containing a password). */
struct sb_store *sb_store_open(const char *url, char *err, size_t err_len);
void sb_store_close(struct sb_store *s);

/* "sqlite" or "postgresql". */
const char *sb_store_backend(const struct sb_store *s);

/* Checks the connection, reconnecting if it was lost. 0 or SB_STORE_E_DOWN. */
int sb_store_ping(struct sb_store *s);

/* ---- entities ---- */

/* Creates (create = true: SB_STORE_E_EXISTS if the id exists) or replaces the record of an
 * entity. The record's "spend" member is ignored: spend only changes through
 * sb_store_spend_write and sb_store_reset_spend. The record is stored as given (the caller
 * owns its shape); the columns the backend keeps are taken from it: key: key_alias, team_id,
 * user_id, budget_reset_at; team/user/customer: budget_reset_at. budget_reset_at is Unix
 * seconds (integer) or absent. */
int sb_store_put(struct sb_store *s, enum sb_entity kind, const char *id, json_t *record,
                 bool create);

/* The record with "spend" (dollars) set from the ledger's running total; *out is a new
 * reference. */
int sb_store_get(struct sb_store *s, enum sb_entity kind, const char *id, json_t **out);

int sb_store_delete(struct sb_store *s, enum sb_entity kind, const char *id);

/* Every record of a kind (with "spend"), optionally only those whose column `field`
 * ("team_id", "user_id", "key_alias") equals `value` (field NULL: all), ordered by id, at
 * most `limit` (0: no limit) starting at `offset`. *out is a new JSON array. */
int sb_store_list(struct sb_store *s, enum sb_entity kind, const char *field, const char *value,
                  size_t offset, size_t limit, json_t **out);

/* Sets the spend of one entity to 0 and its budget_reset_at to next_reset (Unix s; 0: none). */
int sb_store_reset_spend(struct sb_store *s, enum sb_entity kind, const char *id,
                         int64_t next_reset);

/* The same, but only while the entity's budget_reset_at is still `expect` (Unix s; 0: none):
 * otherwise nothing is written and SB_STORE_E_CONFLICT is returned (another instance reset
 * the period first; read the record again). So of several instances sharing the database
 * that see the same period end, exactly one resets it. */
int sb_store_reset_spend_if(struct sb_store *s, enum sb_entity kind, const char *id, int64_t expect,
                            int64_t next_reset);

/* Adds the running spend of entity `from` to that of `to` (both of `kind`), and for keys also
 * every per-model spend of `from` to `to`'s, in one transaction; `from` keeps its own spend.
 * For a record that takes over from another one, as /key/regenerate does for a key under a
 * new hash: create `to`, carry, then delete `from`, so that a new value is no way to reset a
 * budget. budget_reset_at is not touched (a put takes it from the record). Nothing is
 * written, and SB_STORE_E_NOT_FOUND returned, when either id has no record;
 * SB_STORE_E_INVALID when from and to are the same id. Like sb_store_spend_write it appends
 * no change row: the shared-spend sync reads totals, not the change feed. */
int sb_store_spend_carry(struct sb_store *s, enum sb_entity kind, const char *from, const char *to);

/* ---- the change feed ----
 *
 * sb_store_put, sb_store_delete and both resets append one row (kind, id) to a change log in
 * the same transaction as the change itself; spend written by sb_store_spend_write is not
 * logged (read it with sb_store_spend_read). Sequence numbers increase, and the log is
 * written so that a reader never sees a change with a number below one it has already seen
 * (on PostgreSQL the writers serialize on an advisory lock: numbers are taken in commit
 * order). So "every change after the highest number I have read" misses nothing. */

struct sb_change {
    int64_t seq;
    enum sb_entity kind;
    char id[129];
};

/* Most rows sb_store_changes returns at once. */
#define SB_STORE_CHANGES_MAX 1000

/* The changes numbered above `after`, oldest first, at most `max` (<= SB_STORE_CHANGES_MAX;
 * 0: none, only the numbers below) into out; *n gets their count. *head gets the highest
 * number in the log and *oldest the lowest (0 when the log is empty): a reader whose `after`
 * is below oldest - 1 may have missed pruned changes and must reload everything. head and
 * oldest may be NULL. */
int sb_store_changes(struct sb_store *s, int64_t after, struct sb_change *out, size_t max,
                     size_t *n, int64_t *head, int64_t *oldest);

/* Deletes the change rows written before `before_s` (Unix s) except the newest row, so that
 * oldest stays meaningful. *deleted (may be NULL) gets the number removed. */
int sb_store_changes_prune(struct sb_store *s, int64_t before_s, size_t *deleted);

/* ---- shared spend ---- */

/* Most ids one sb_store_spend_read takes. */
#define SB_STORE_SPEND_IDS_MAX 1000

/* The running spend of up to SB_STORE_SPEND_IDS_MAX ids of one kind, in one or two
 * statements: *out is a new JSON object {id: {"spend_nano": n}}, for keys also
 * "model_spend_nano": {alias: n}. Ids without a record are absent. */
int sb_store_spend_read(struct sb_store *s, enum sb_entity kind, const char *const *ids, size_t n,
                        json_t **out);

/* ---- the spend ledger ---- */

struct sb_spend_row {
    char request_id[133]; /* unique: a row is written at most once */
    char key_hash[65];    /* "" when the request had no virtual key (master key) */
    char team_id[129];    /* "" when none */
    char user_id[129];
    char end_user[129];   /* the request's `user` field */
    char model[257];      /* the alias the client asked for */
    char deployment[257]; /* litellm_params.model that served it */
    char provider[33];
    int64_t prompt_tokens; /* all input, cached included */
    int64_t completion_tokens;
    int64_t cache_read_tokens;
    int64_t cache_write_tokens;
    int64_t reasoning_tokens;
    int64_t cost_nano;
    bool cost_known;          /* false: the model has no price (flagged, billed 0) */
    int64_t start_ms, end_ms; /* Unix ms */
    int status;               /* HTTP status sent to the client */
    bool cache_hit;
    char route[24]; /* "chat_completions", "messages", "embeddings", ... */
};

/* In ONE transaction: inserts the rows whose request_id is not in the ledger yet, and for
 * exactly those adds cost_nano to the running spend of the key, team, user and customer named
 * (creating a customer record {"user_id": id} when it does not exist; a key/team/user id that
 * has no record is skipped for totals), and to the key's per-model spend (record member
 * "model_spend": {alias: dollars}). *inserted (may be NULL) gets the number of rows inserted
 * (n minus duplicates). All or nothing: on error nothing is written. */
int sb_store_spend_write(struct sb_store *s, const struct sb_spend_row *rows, size_t n,
                         size_t *inserted);

struct sb_spend_filter {
    const char *key_hash; /* NULL: any */
    const char *team_id;
    const char *user_id;
    const char *end_user;
    const char *request_id;
    int64_t start_ms, end_ms; /* 0: unbounded */
    size_t limit;             /* 0: 1000 */
};

/* Ledger rows, newest first, as LiteLLM's /spend/logs objects: request_id, api_key (hash),
 * team_id, user, end_user, model, model_id (deployment), custom_llm_provider,
 * prompt_tokens, completion_tokens, total_tokens, cache_read_input_tokens,
 * cache_creation_input_tokens, reasoning_tokens, spend (dollars), startTime, endTime (ISO
 * 8601 UTC), request_duration_ms, status, cache_hit, cost_known, call_type (route). */
int sb_store_spend_logs(struct sb_store *s, const struct sb_spend_filter *f, json_t **out);

enum sb_spend_group { SB_SPEND_BY_KEY, SB_SPEND_BY_MODEL, SB_SPEND_BY_TEAM };

/* Totals over the ledger grouped by key hash / model alias / team id, largest first:
 * [{"api_key"|"model"|"team_id": id, "total_spend": dollars, "total_tokens": n,
 *   "requests": n}]. */
int sb_store_spend_totals(struct sb_store *s, enum sb_spend_group by, int64_t start_ms,
                          int64_t end_ms, json_t **out);

/* How many ledger rows there are (tests, health). */
int sb_store_spend_count(struct sb_store *s, int64_t *out);

#endif

/* The store's versioned schema, as SQL text for each backend. The two schemas are the same
 * tables, columns and indexes; only the types differ (SQLite INTEGER / PostgreSQL BIGINT and
 * BOOLEAN; PostgreSQL ids use COLLATE "C" so that "ordered by id" is byte order on both, as
 * SQLite's BINARY collation is).
 *
 * Migrations: SB_SCHEMA_*_BOOT runs first (idempotent); then every migration i (version i + 1)
 * whose version is greater than MAX(version) in sb_schema runs in its own transaction, which
 * also inserts its version into sb_schema. A migration is never edited once released: a
 * change is a new entry appended to the list. Money columns (*_nano) are integer
 * nano-dollars; times are Unix seconds (*_at) or Unix milliseconds (*_ms).
 *
 * The ledger takes tens of thousands of rows a second, so sb_spend_logs has only two indexes
 * besides its key: by time, and by key and time (the reports filter by key or time; by team,
 * user or end user they read the time index). Request ids start with the time, so every
 * index grows at its end. On SQLite, version 3 indexes the key as an integer (see there);
 * PostgreSQL stays at version 2. */
#ifndef SB_STORE_SCHEMA_H
#define SB_STORE_SCHEMA_H

#define SB_SCHEMA_SQLITE_BOOT                                                                      \
    "CREATE TABLE IF NOT EXISTS sb_schema (version INTEGER PRIMARY KEY NOT NULL);"

#define SB_SCHEMA_PG_BOOT "CREATE TABLE IF NOT EXISTS sb_schema (version INTEGER PRIMARY KEY);"

/* ---- SQLite ---- */

#define SB_SCHEMA_SQLITE_V1                                                                        \
    "CREATE TABLE sb_keys ("                                                                       \
    " token TEXT PRIMARY KEY NOT NULL,"                                                            \
    " key_alias TEXT,"                                                                             \
    " team_id TEXT,"                                                                               \
    " user_id TEXT,"                                                                               \
    " spend_nano INTEGER NOT NULL DEFAULT 0,"                                                      \
    " budget_reset_at INTEGER,"                                                                    \
    " data TEXT NOT NULL,"                                                                         \
    " created_at INTEGER NOT NULL,"                                                                \
    " updated_at INTEGER NOT NULL);"                                                               \
    "CREATE INDEX sb_keys_key_alias ON sb_keys (key_alias);"                                       \
    "CREATE INDEX sb_keys_team_id ON sb_keys (team_id);"                                           \
    "CREATE INDEX sb_keys_user_id ON sb_keys (user_id);"                                           \
    "CREATE TABLE sb_teams ("                                                                      \
    " team_id TEXT PRIMARY KEY NOT NULL,"                                                          \
    " spend_nano INTEGER NOT NULL DEFAULT 0,"                                                      \
    " budget_reset_at INTEGER,"                                                                    \
    " data TEXT NOT NULL,"                                                                         \
    " created_at INTEGER NOT NULL,"                                                                \
    " updated_at INTEGER NOT NULL);"                                                               \
    "CREATE TABLE sb_users ("                                                                      \
    " user_id TEXT PRIMARY KEY NOT NULL,"                                                          \
    " spend_nano INTEGER NOT NULL DEFAULT 0,"                                                      \
    " budget_reset_at INTEGER,"                                                                    \
    " data TEXT NOT NULL,"                                                                         \
    " created_at INTEGER NOT NULL,"                                                                \
    " updated_at INTEGER NOT NULL);"                                                               \
    "CREATE TABLE sb_customers ("                                                                  \
    " user_id TEXT PRIMARY KEY NOT NULL,"                                                          \
    " spend_nano INTEGER NOT NULL DEFAULT 0,"                                                      \
    " budget_reset_at INTEGER,"                                                                    \
    " data TEXT NOT NULL,"                                                                         \
    " created_at INTEGER NOT NULL,"                                                                \
    " updated_at INTEGER NOT NULL);"                                                               \
    "CREATE TABLE sb_key_model_spend ("                                                            \
    " token TEXT NOT NULL,"                                                                        \
    " model TEXT NOT NULL,"                                                                        \
    " spend_nano INTEGER NOT NULL DEFAULT 0,"                                                      \
    " PRIMARY KEY (token, model)) WITHOUT ROWID;"                                                  \
    "CREATE TABLE sb_spend_logs ("                                                                 \
    " request_id TEXT PRIMARY KEY NOT NULL,"                                                       \
    " api_key TEXT NOT NULL,"                                                                      \
    " team_id TEXT NOT NULL,"                                                                      \
    " user_id TEXT NOT NULL,"                                                                      \
    " end_user TEXT NOT NULL,"                                                                     \
    " model TEXT NOT NULL,"                                                                        \
    " deployment TEXT NOT NULL,"                                                                   \
    " provider TEXT NOT NULL,"                                                                     \
    " prompt_tokens INTEGER NOT NULL,"                                                             \
    " completion_tokens INTEGER NOT NULL,"                                                         \
    " cache_read_tokens INTEGER NOT NULL,"                                                         \
    " cache_write_tokens INTEGER NOT NULL,"                                                        \
    " reasoning_tokens INTEGER NOT NULL,"                                                          \
    " cost_nano INTEGER NOT NULL,"                                                                 \
    " cost_known INTEGER NOT NULL,"                                                                \
    " start_ms INTEGER NOT NULL,"                                                                  \
    " end_ms INTEGER NOT NULL,"                                                                    \
    " status INTEGER NOT NULL,"                                                                    \
    " cache_hit INTEGER NOT NULL,"                                                                 \
    " route TEXT NOT NULL);"                                                                       \
    "CREATE INDEX sb_spend_logs_start_ms ON sb_spend_logs (start_ms);"                             \
    "CREATE INDEX sb_spend_logs_api_key ON sb_spend_logs (api_key, start_ms);"

/* Version 2: the change log (docs/internals/store.md, "The change feed"). AUTOINCREMENT, so
 * a sequence number is never reused once the newest rows are pruned. */
#define SB_SCHEMA_SQLITE_V2                                                                        \
    "CREATE TABLE sb_changes ("                                                                    \
    " seq INTEGER PRIMARY KEY AUTOINCREMENT,"                                                      \
    " kind INTEGER NOT NULL,"                                                                      \
    " id TEXT NOT NULL,"                                                                           \
    " at INTEGER NOT NULL);"                                                                       \
    "CREATE INDEX sb_changes_at ON sb_changes (at);"

/* Version 3: the per-key index on an integer instead of the 64-character key hash. key_id is
 * the first 15 hex digits of api_key as an integer (sb_key_id(), defined by sqlite.c on every
 * connection it opens; 0 for ""); a query filters on key_id AND api_key, so two keys with the
 * same 15 digits are never mixed. The integer index costs about a third less per row written
 * than the text one. */
#define SB_SCHEMA_SQLITE_V3                                                                        \
    "ALTER TABLE sb_spend_logs ADD COLUMN key_id INTEGER NOT NULL DEFAULT 0;"                      \
    "UPDATE sb_spend_logs SET key_id = sb_key_id(api_key) WHERE api_key <> '';"                    \
    "DROP INDEX sb_spend_logs_api_key;"                                                            \
    "CREATE INDEX sb_spend_logs_key_id ON sb_spend_logs (key_id, start_ms);"

/* Initializer of `static const char *const migrations[]`: entry i is version i + 1. */
#define SB_SCHEMA_SQLITE                                                                           \
    {                                                                                              \
        SB_SCHEMA_SQLITE_V1, SB_SCHEMA_SQLITE_V2, SB_SCHEMA_SQLITE_V3                              \
    }

/* ---- PostgreSQL ---- */

#define SB_SCHEMA_PG_V1                                                                            \
    "CREATE TABLE sb_keys ("                                                                       \
    " token TEXT COLLATE \"C\" PRIMARY KEY,"                                                       \
    " key_alias TEXT COLLATE \"C\","                                                               \
    " team_id TEXT COLLATE \"C\","                                                                 \
    " user_id TEXT COLLATE \"C\","                                                                 \
    " spend_nano BIGINT NOT NULL DEFAULT 0,"                                                       \
    " budget_reset_at BIGINT,"                                                                     \
    " data TEXT NOT NULL,"                                                                         \
    " created_at BIGINT NOT NULL,"                                                                 \
    " updated_at BIGINT NOT NULL);"                                                                \
    "CREATE INDEX sb_keys_key_alias ON sb_keys (key_alias);"                                       \
    "CREATE INDEX sb_keys_team_id ON sb_keys (team_id);"                                           \
    "CREATE INDEX sb_keys_user_id ON sb_keys (user_id);"                                           \
    "CREATE TABLE sb_teams ("                                                                      \
    " team_id TEXT COLLATE \"C\" PRIMARY KEY,"                                                     \
    " spend_nano BIGINT NOT NULL DEFAULT 0,"                                                       \
    " budget_reset_at BIGINT,"                                                                     \
    " data TEXT NOT NULL,"                                                                         \
    " created_at BIGINT NOT NULL,"                                                                 \
    " updated_at BIGINT NOT NULL);"                                                                \
    "CREATE TABLE sb_users ("                                                                      \
    " user_id TEXT COLLATE \"C\" PRIMARY KEY,"                                                     \
    " spend_nano BIGINT NOT NULL DEFAULT 0,"                                                       \
    " budget_reset_at BIGINT,"                                                                     \
    " data TEXT NOT NULL,"                                                                         \
    " created_at BIGINT NOT NULL,"                                                                 \
    " updated_at BIGINT NOT NULL);"                                                                \
    "CREATE TABLE sb_customers ("                                                                  \
    " user_id TEXT COLLATE \"C\" PRIMARY KEY,"                                                     \
    " spend_nano BIGINT NOT NULL DEFAULT 0,"                                                       \
    " budget_reset_at BIGINT,"                                                                     \
    " data TEXT NOT NULL,"                                                                         \
    " created_at BIGINT NOT NULL,"                                                                 \
    " updated_at BIGINT NOT NULL);"                                                                \
    "CREATE TABLE sb_key_model_spend ("                                                            \
    " token TEXT COLLATE \"C\" NOT NULL,"                                                          \
    " model TEXT COLLATE \"C\" NOT NULL,"                                                          \
    " spend_nano BIGINT NOT NULL DEFAULT 0,"                                                       \
    " PRIMARY KEY (token, model));"                                                                \
    "CREATE TABLE sb_spend_logs ("                                                                 \
    " request_id TEXT COLLATE \"C\" PRIMARY KEY,"                                                  \
    " api_key TEXT COLLATE \"C\" NOT NULL,"                                                        \
    " team_id TEXT COLLATE \"C\" NOT NULL,"                                                        \
    " user_id TEXT COLLATE \"C\" NOT NULL,"                                                        \
    " end_user TEXT COLLATE \"C\" NOT NULL,"                                                       \
    " model TEXT COLLATE \"C\" NOT NULL,"                                                          \
    " deployment TEXT NOT NULL,"                                                                   \
    " provider TEXT NOT NULL,"                                                                     \
    " prompt_tokens BIGINT NOT NULL,"                                                              \
    " completion_tokens BIGINT NOT NULL,"                                                          \
    " cache_read_tokens BIGINT NOT NULL,"                                                          \
    " cache_write_tokens BIGINT NOT NULL,"                                                         \
    " reasoning_tokens BIGINT NOT NULL,"                                                           \
    " cost_nano BIGINT NOT NULL,"                                                                  \
    " cost_known BOOLEAN NOT NULL,"                                                                \
    " start_ms BIGINT NOT NULL,"                                                                   \
    " end_ms BIGINT NOT NULL,"                                                                     \
    " status INTEGER NOT NULL,"                                                                    \
    " cache_hit BOOLEAN NOT NULL,"                                                                 \
    " route TEXT NOT NULL);"                                                                       \
    "CREATE INDEX sb_spend_logs_start_ms ON sb_spend_logs (start_ms);"                             \
    "CREATE INDEX sb_spend_logs_api_key ON sb_spend_logs (api_key, start_ms);"

#define SB_SCHEMA_PG_V2                                                                            \
    "CREATE TABLE sb_changes ("                                                                    \
    " seq BIGSERIAL PRIMARY KEY,"                                                                  \
    " kind INTEGER NOT NULL,"                                                                      \
    " id TEXT COLLATE \"C\" NOT NULL,"                                                             \
    " at BIGINT NOT NULL);"                                                                        \
    "CREATE INDEX sb_changes_at ON sb_changes (at);"

#define SB_SCHEMA_PG                                                                               \
    {                                                                                              \
        SB_SCHEMA_PG_V1, SB_SCHEMA_PG_V2                                                           \
    }

#endif

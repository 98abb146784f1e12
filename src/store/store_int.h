/* The store's private interface: the backend table that store.c dispatches through, and the
 * helpers both backends share so that they agree on validation, record shape and the JSON of
 * the ledger (the same test suite runs against both).
 *
 * A backend allocates its own struct with `struct sb_store base` as its FIRST member, sets
 * base.ops, and returns &base; every op receives that pointer back and casts it. store.c has
 * already validated the arguments listed under "checked by store.c" before an op is called,
 * so a backend only deals with its database. close frees everything, including the struct. */
#ifndef SB_STORE_STORE_INT_H
#define SB_STORE_STORE_INT_H

#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest id (key hash, team, user, customer) and filter value, in bytes: the spend row's
 * fields hold at most 128. Checked by store.c: 1..SB_STORE_ID_MAX bytes of valid UTF-8. */
#define SB_STORE_ID_MAX 128
/* Longest key_alias, in bytes (checked by sb_store_cols_from_record). */
#define SB_STORE_ALIAS_MAX 1024
/* Largest serialized record (the data column), in bytes. */
#define SB_STORE_DATA_MAX (1024 * 1024)
/* Default and largest number of rows sb_store_spend_logs returns. */
#define SB_STORE_LOGS_DEFAULT 1000
#define SB_STORE_LOGS_MAX     100000

/* The columns a put writes, taken from the record by sb_store_cols_from_record. */
struct sb_store_cols {
    const char *key_alias;   /* keys only; NULL: SQL NULL. Borrowed from the record. */
    const char *team_id;     /* keys only; NULL: SQL NULL */
    const char *user_id;     /* keys only; NULL: SQL NULL */
    bool has_reset;          /* false: budget_reset_at is SQL NULL */
    int64_t budget_reset_at; /* Unix s */
    int64_t now_s;           /* Unix s: created_at on insert, updated_at always */
    char *data;              /* the record as compact JSON text without "spend" and
                                "model_spend"; owned, freed by sb_store_cols_free */
    size_t data_len;
};

struct sb_store_ops {
    const char *name; /* "sqlite" or "postgresql" */
    void (*close)(struct sb_store *s);
    int (*ping)(struct sb_store *s);
    /* Checked by store.c: id; the record is an object; cols filled. create: insert only
     * (SB_STORE_E_EXISTS if present); else insert or replace everything but spend_nano and
     * created_at. */
    int (*put)(struct sb_store *s, enum sb_entity kind, const char *id,
               const struct sb_store_cols *c, bool create);
    /* *out: the parsed data with "spend" (and for keys "model_spend") set by
     * sb_store_record_load, then "budget_reset_at" set from the column by
     * sb_store_record_set_reset (reset_spend changes only the column). list does the same
     * for each record. */
    int (*get)(struct sb_store *s, enum sb_entity kind, const char *id, json_t **out);
    /* Deleting a key also deletes its per-model spend. The ledger rows stay. */
    int (*del)(struct sb_store *s, enum sb_entity kind, const char *id);
    /* Checked by store.c: field is NULL or a column of the kind ("team_id", "user_id",
     * "key_alias" for keys; no field for other kinds) and then value is a checked id;
     * limit 0 means no limit. Ordered by id (byte order). */
    int (*list)(struct sb_store *s, enum sb_entity kind, const char *field, const char *value,
                size_t offset, size_t limit, json_t **out);
    /* Keys: also zeroes the per-model spend. next_reset 0: budget_reset_at becomes NULL.
     * has_expect: only if budget_reset_at is `expect` (0: NULL), else SB_STORE_E_CONFLICT.
     * put, del and reset_spend append a change row in their transaction (see store.h). */
    int (*reset_spend)(struct sb_store *s, enum sb_entity kind, const char *id, bool has_expect,
                       int64_t expect, int64_t next_reset);
    /* Checked by store.c: from and to are checked ids and differ. One transaction; no
     * change row. SB_STORE_E_NOT_FOUND (nothing written) when either has no record. */
    int (*spend_carry)(struct sb_store *s, enum sb_entity kind, const char *from, const char *to);
    /* Checked by store.c: after >= 0, max <= SB_STORE_CHANGES_MAX, n/head/oldest not NULL. */
    int (*changes)(struct sb_store *s, int64_t after, struct sb_change *out, size_t max, size_t *n,
                   int64_t *head, int64_t *oldest);
    int (*changes_prune)(struct sb_store *s, int64_t before_s, size_t *deleted);
    /* Checked by store.c: ids_json is a JSON array of 1..SB_STORE_SPEND_IDS_MAX checked ids. */
    int (*spend_read)(struct sb_store *s, enum sb_entity kind, const char *ids_json, json_t **out);
    /* Checked by store.c: every row with sb_store_spend_row_check; n > 0. */
    int (*spend_write)(struct sb_store *s, const struct sb_spend_row *rows, size_t n,
                       size_t *inserted);
    /* Checked by store.c: filter strings are NULL or checked ids; limit resolved (1 ..
     * SB_STORE_LOGS_MAX). Newest first: start_ms DESC, request_id DESC. Each row read back
     * into a struct sb_spend_row and turned into JSON by sb_store_spend_log_json. */
    int (*spend_logs)(struct sb_store *s, const struct sb_spend_filter *f, json_t **out);
    /* start_ms/end_ms 0: unbounded; start_ms >= start, start_ms < end. Ordered by total
     * cost DESC, then id ASC. Rows whose group id is "" are left out. Each group through
     * sb_store_total_json. */
    int (*spend_totals)(struct sb_store *s, enum sb_spend_group by, int64_t start_ms,
                        int64_t end_ms, json_t **out);
    int (*spend_count)(struct sb_store *s, int64_t *out);
};

struct sb_store {
    const struct sb_store_ops *ops;
};

/* Backend constructors. path: a file path or ":memory:"; conninfo: the whole
 * "postgresql://..." / "postgres://..." URL as given to sb_store_open. NULL on error with a
 * message in err (no password). Both apply the migrations of schema.h. */
struct sb_store *sb_store_sqlite_open(const char *path, char *err, size_t err_len);
struct sb_store *sb_store_pg_open(const char *conninfo, char *err, size_t err_len);

/* ---- shared helpers (store.c) ---- */

/* snprintf into err (when err_len > 0); never put a password or a record in it. */
void sb_store_set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 0 if id is 1..SB_STORE_ID_MAX bytes of valid UTF-8, else SB_STORE_E_INVALID. */
int sb_store_check_id(const char *id);

/* Fills c from the record (see struct sb_store_cols). SB_STORE_E_INVALID when the record is
 * not an object, a column member has the wrong type (key_alias/team_id/user_id: string or
 * null; budget_reset_at: integer or null) or is too long, or the JSON text is larger than
 * SB_STORE_DATA_MAX. On error c needs no freeing. */
int sb_store_cols_from_record(enum sb_entity kind, json_t *record, struct sb_store_cols *c);
void sb_store_cols_free(struct sb_store_cols *c);

/* Parses the data column and sets "spend" (dollars) from spend_nano. model_spend: NULL for
 * non-keys; for keys a new reference to an object {alias: dollars} that is stolen (set as
 * "model_spend"), or NULL for {}. Returns a new reference, or NULL (SB_STORE_E_FAILED) when
 * the stored text is not a JSON object. */
json_t *sb_store_record_load(enum sb_entity kind, const char *data, size_t len, int64_t spend_nano,
                             json_t *model_spend);

/* Sets "budget_reset_at" to at (has_reset) or removes it, so a record always shows the
 * column, which sb_store_reset_spend moves without rewriting the data. */
void sb_store_record_set_reset(json_t *rec, bool has_reset, int64_t at);

/* 0 if every string of the row is NUL-terminated within its array, request_id is not empty
 * and the ids that are set pass sb_store_check_id; else SB_STORE_E_INVALID. */
int sb_store_spend_row_check(const struct sb_spend_row *r);

/* The /spend/logs object of one ledger row (see store.h). New reference; NULL on OOM. */
json_t *sb_store_spend_log_json(const struct sb_spend_row *r);

/* {"api_key"|"model"|"team_id": id, "total_spend": dollars, "total_tokens": n,
 *  "requests": n}. New reference; NULL on OOM. */
json_t *sb_store_total_json(enum sb_spend_group by, const char *id, int64_t total_nano,
                            int64_t total_tokens, int64_t requests);

/* Adds {"spend_nano": spend} under id to the spend_read result `out`; for keys also an
 * empty "model_spend_nano" object. Returns the entry (borrowed) or NULL on OOM. */
json_t *sb_store_spend_entry(json_t *out, enum sb_entity kind, const char *id, int64_t spend);

/* nano-dollars as a dollar real. */
double sb_store_dollars(int64_t nano);

/* Unix ms as "YYYY-MM-DDTHH:MM:SS.mmmZ" (UTC) into out (at least 32 bytes). */
void sb_store_iso8601(int64_t ms, char *out, size_t out_len);

#endif

/* Virtual keys, teams, users and end users in memory, and the admission of every request:
 * key valid, not blocked or expired; model allowed; budgets of key, team, user and end user
 * reserved together; RPM, TPM and parallel-request limits of key, team and per model.
 *
 * The hot path never waits on the database: the store thread (src/ledger/ledger.h) loads every
 * record at start and upserts each one again right after an admin change is committed, so
 * workers only read memory. All functions are thread-safe (workers and the store thread call
 * them concurrently). Lookups take a read lock; counters are atomics or under one short
 * mutex (the budget reservation, so that the four levels are checked and reserved together:
 * N concurrent requests can never push spend past a budget).
 *
 * Records are the store's JSON objects with LiteLLM's field names:
 *   key:      token (hash), key_alias, key_name, models [aliases or access groups], max_budget,
 *             soft_budget, budget_duration, budget_reset_at, spend, rpm_limit, tpm_limit,
 *             max_parallel_requests, model_max_budget {alias: {budget_limit, time_period}} or
 *             {alias: number}, model_rpm_limit {alias: n}, model_tpm_limit {alias: n},
 *             expires (ISO 8601 or null), blocked, team_id, user_id, metadata, created_by,
 *             user_role (of a key that may use the admin API: "proxy_admin")
 *   team:     team_id, team_alias, models, max_budget, budget_duration, spend, rpm_limit,
 *             tpm_limit, max_parallel_requests, blocked, members_with_roles, metadata
 *   user:     user_id, user_email, user_role, models, max_budget, budget_duration, spend,
 *             rpm_limit, tpm_limit, teams, metadata
 *   customer: user_id, alias, max_budget, budget_duration, spend, blocked
 *
 * Money is integer nano-dollars (1e-9 USD); prices are nano-dollars per token (doubles). */
#ifndef SB_POLICY_POLICY_H
#define SB_POLICY_POLICY_H

#include "store/store.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sb_policy;

struct sb_policy *sb_policy_new(void);
void sb_policy_free(struct sb_policy *p);

/* The access groups of a model alias (model_info.access_groups in the config): a key whose
 * `models` names a group may use every alias in it. Called at start, before any admission. */
int sb_policy_set_access_groups(struct sb_policy *p, const char *alias, const char *const *groups,
                                size_t n);

/* Inserts or replaces an entity from its record (the record is copied; its "spend" dollars
 * set the in-memory spend only when the entity is new, or when `take_spend`). Live counters
 * (reservations, rate windows, in-flight requests) survive a replace. Returns 0 or -1 (bad
 * record). */
int sb_policy_upsert(struct sb_policy *p, enum sb_entity kind, const char *id, const json_t *record,
                     bool take_spend);
void sb_policy_remove(struct sb_policy *p, enum sb_entity kind, const char *id);
/* After a budget reset (store thread): spend back to `spend_nano`, next reset time. */
void sb_policy_set_spend(struct sb_policy *p, enum sb_entity kind, const char *id,
                         int64_t spend_nano, int64_t next_reset_s);
/* For an entity that takes over from another (/key/regenerate: the same key under a new
 * hash; store thread, after sb_store_spend_carry and before sb_policy_remove of `from`):
 * `to`'s spend and pending become `from`'s, and so do the spend, pending and period end of
 * each of `to`'s per-model counters that `from` has too (same alias, same time_period).
 * What `to` had is replaced, not added to: it is meant to be new. from's pending names rows
 * that still carry from's id, which never add to to's database total and which
 * sb_policy_applied will not find once `from` is removed, so on `to` that pending stays:
 * spend = database total + pending keeps counting them. Reservations, rate windows and
 * in-flight counts are not moved (admissions in flight hold `from`; to's windows start
 * fresh). Returns 0, or -1 when either id is unknown (nothing changes). */
int sb_policy_carry(struct sb_policy *p, enum sb_entity kind, const char *from, const char *to);

/* ---- shared spend (several instances on one database; store thread) ----
 *
 * The in-memory spend of a budget level is the database's running total plus what this
 * process has settled and the store thread has not committed yet ("pending"): settle adds
 * the cost to both spend and pending; when the store thread commits a spend row (or gives
 * up on it) sb_policy_applied takes the row's cost off the pending of the key, team, user,
 * end user and the key's model counter it names (never below 0); sb_policy_sync_spend then
 * sets spend = database total + pending, which adds what other instances spent. */

/* The row is in the database now (or was skipped for good). Only for rows settled by this
 * process: rows replayed from an earlier run's journal were never pending here. */
void sb_policy_applied(struct sb_policy *p, const struct sb_spend_row *row);

/* Calls fn (after the locks are dropped) with the id of every entity of `kind` that has a
 * budget the database's totals matter to: max_budget, or for keys a model_max_budget without
 * a time_period. */
void sb_policy_budgeted(struct sb_policy *p, enum sb_entity kind,
                        void (*fn)(void *ud, const char *id), void *ud);
/* The same for every entity of `kind` (a full reload drops those the database no longer has;
 * fn may call sb_policy_remove). */
void sb_policy_each(struct sb_policy *p, enum sb_entity kind, void (*fn)(void *ud, const char *id),
                    void *ud);

/* spend = db_spend_nano + pending. Keys: each model counter with a budget and no time_period
 * also gets model_spend_nano[alias] (integer nano; absent or NULL: 0) + its pending. A model
 * counter with a time_period keeps its own count (its period is this process's). Unknown
 * ids are ignored. */
void sb_policy_sync_spend(struct sb_policy *p, enum sb_entity kind, const char *id,
                          int64_t db_spend_nano, const json_t *model_spend_nano);

/* The pending nano-dollars of an entity (model NULL) or of a key's model counter; -1 if
 * there is no such entity or counter (tests, metrics). */
int64_t sb_policy_pending(struct sb_policy *p, enum sb_entity kind, const char *id,
                          const char *model);

/* A copy of the record as held in memory, with "spend" from the live counter; NULL if none.
 * (The admin API answers reads from the store; this is for checks and tests.) */
json_t *sb_policy_get(struct sb_policy *p, enum sb_entity kind, const char *id);

/* SHA-256 hex of a presented key ("sk-..."), as LiteLLM stores it. out: 65 bytes. */
void sb_policy_hash_key(const char *key, size_t len, char out[65]);

/* Entities whose budget_reset_at has passed (Unix s <= now_s), for the store thread to reset:
 * calls fn for each. */
void sb_policy_due_resets(struct sb_policy *p, int64_t now_s,
                          void (*fn)(void *ud, enum sb_entity kind, const char *id,
                                     const char *budget_duration),
                          void *ud);

/* Parses "30s", "30m", "24h", "30d", "1w", "1mo" into seconds; -1 if invalid. */
int64_t sb_policy_duration_s(const char *s);

/* ---- admission ---- */

struct sb_admit_req {
    const char *key; /* the presented credential (plaintext), not the master key */
    size_t key_len;
    const char *key_hash;   /* its SHA-256 hex, if sb_policy_authenticate already made it (it may
                               point into the admission being filled), or NULL */
    const char *model;      /* the alias the client asked for (after model_group_alias) */
    const char *end_user;   /* the request's `user`, or NULL */
    int64_t input_tokens;   /* estimated prompt tokens */
    int64_t max_output;     /* the client's output limit, or -1 (then default_output) */
    int64_t default_output; /* worst case to reserve when the client gives no limit */
    double price_in;        /* nano-dollars per input token; < 0: no price known */
    double price_out;       /* nano-dollars per output token */
    int64_t now_ms;
};

struct sb_admission {
    /* The outcome: status 0 = admitted; else an error to send (401, 403, 429, 400). */
    int status;
    const char *type; /* "auth_error", "permission_error", "rate_limit_error", "budget_exceeded" */
    const char *code; /* e.g. "invalid_api_key", "key_blocked", "key_expired",
                         "model_not_allowed", "rate_limit_exceeded", "budget_exceeded" */
    char message[320];
    int64_t retry_after_s; /* for 429: when the window resets */
    /* Who is asking. */
    char key_hash[65];
    char team_id[129];
    char user_id[129];
    char end_user[129];
    bool admin; /* the key may use the admin API (its user_role is proxy_admin) */
    /* What was reserved: released or settled exactly once. */
    int64_t reserved_nano;
    int64_t max_output; /* the output limit to send: the client's, or lowered to what the
                           remaining budget pays for; -1: leave the request as it is */
    bool lowered;       /* max_output was lowered for the budget */
    /* x-ratelimit-* values of the tightest key-level limits (-1: no limit). */
    int64_t limit_requests, remaining_requests, limit_tokens, remaining_tokens;
    int64_t reset_ms; /* until the current rate window ends */
    /* The worst-case price parts of the reservation, for a shared admission that lowers the
     * output limit further (src/policy/shared.h). */
    int64_t in_cost_nano;
    double price_out;
    void *handle; /* internal: the entities held by this admission */
};

/* Authenticates and admits. Always fills `a`; returns a->status. On success the request holds
 * a parallel-request slot, an RPM count and a budget reservation until sb_policy_settle or
 * sb_policy_release. */
int sb_policy_admit(struct sb_policy *p, const struct sb_admit_req *req, struct sb_admission *a);

/* Only authenticates (for the admin API and /v1/models): 0 and fills key_hash, team_id,
 * user_id, admin; or 401 with the message. */
int sb_policy_authenticate(struct sb_policy *p, const char *key, size_t key_len, int64_t now_ms,
                           struct sb_admission *a);

/* The request ended with a known cost and token count: the reservation becomes the real cost
 * (spend += cost for key, team, user, end user, and the key's per-model spend), TPM counts
 * the tokens, the parallel slot is freed. */
void sb_policy_settle(struct sb_policy *p, struct sb_admission *a, int64_t cost_nano,
                      int64_t tokens, int64_t now_ms);
/* The request failed, was cancelled or timed out before any usage: the reservation and the
 * parallel slot are freed (the RPM count stays: the request was made). */
void sb_policy_release(struct sb_policy *p, struct sb_admission *a);

/* Whether the key (by hash) may use a model alias: its own, its team's and its user's model
 * lists (for /v1/models, which lists only what a key may call). */
bool sb_policy_model_allowed(struct sb_policy *p, const char *key_hash, const char *model);

/* ---- refusals: one text for the in-memory and the shared admission (src/policy/shared.h) ----
 *
 * Each fills status, type, code and message of `a` and returns the status. `kind` names the
 * level as struct sb_shared_level does ('k' key, 't' team, 'u' user, 'c' end user, 'm' the
 * key's model). The rate refusals also set retry_after_s: `retry_s` when positive, else 1
 * (a window that ends now); a parallel-request refusal always says 1 (a slot frees whenever a
 * request ends). */
int sb_policy_refuse_rpm(struct sb_admission *a, char kind, int64_t limit, int64_t retry_s);
int sb_policy_refuse_tpm(struct sb_admission *a, char kind, int64_t limit, int64_t retry_s);
int sb_policy_refuse_parallel(struct sb_admission *a, char kind, int64_t limit);
/* 400 budget_exceeded. `id`: the team, user, end user or model the message names (not used
 * for a key); spend and budget in nano-dollars, written as dollars with 9 significant digits. */
int sb_policy_refuse_budget(struct sb_admission *a, char kind, const char *id, int64_t spend_nano,
                            int64_t max_nano);

/* ---- what several instances share (src/policy/shared.h) ---- */

#define SB_SHARED_LEVELS 5

/* One level of an admitted request as the shared counters see it. */
struct sb_shared_level {
    char kind;      /* 'k' key, 't' team, 'u' user, 'c' end user, 'm' the key's model */
    char name[400]; /* the counters' name: "k:<hash>", "t:<id>", ... "m:<hash>:<model>" */
    int64_t rpm_limit, tpm_limit, par_limit; /* -1: none */
    int64_t max_budget;                      /* nano; -1: none */
    int64_t spend;                           /* this instance's view, nano */
    int64_t period;                          /* the budget period's end (Unix s), 0: none */
};

/* The levels of an admitted request (sb_policy_admit returned 0) that have a limit or a
 * budget, in the order key, team, user, end user, model. Returns how many (0..5). */
size_t sb_policy_shared_levels(struct sb_policy *p, const struct sb_admission *a,
                               struct sb_shared_level out[SB_SHARED_LEVELS]);

/* Sum of every outstanding reservation (tests: zero at quiescence). */
int64_t sb_policy_reserved_total(struct sb_policy *p);

#endif

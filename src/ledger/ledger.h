/* The ledger: the store thread, the spend journal, and the admin jobs.
 *
 * One store thread owns the database connection (src/store/store.h). Workers never wait on it:
 *
 * - Spend rows: a worker appends each finished request's row to ITS OWN journal file, the rows
 *   of one loop pass in one write(2) (no fsync: a kill -9 of the gateway loses nothing the
 *   kernel has; an OS crash may lose the last moments), before any byte of their responses is
 *   sent. The store thread
 *   reads the journals behind the workers, writes the rows to the database in batches (one
 *   transaction each, exactly once by request_id), and deletes journal segments it has
 *   applied. If the database is unavailable the rows wait in the journal and are written when
 *   it returns; when the unapplied journal passes its bound, sb_ledger_full() turns true and
 *   new requests are refused with 503 rather than served unbilled. At start, journals left by
 *   an earlier run (a crash) are applied first. sb_ledger_stop flushes everything.
 *
 * - Admin jobs: a worker hands a function to run on the store thread (with the store); its
 *   completion comes back on the worker's own loop (uv_async).
 *
 * - Budget resets: every second the store thread resets the spend of the entities whose
 *   budget_reset_at has passed (store and policy), only if no other instance did it first
 *   (sb_store_reset_spend_if); otherwise it takes that instance's reset.
 *
 * - Sync (several instances on one database): every sync_ms the store thread reads the
 *   store's change feed (sb_store_changes) from the highest sequence it has seen, reads each
 *   changed record and upserts it into the policy (or removes it), then reads the spend
 *   totals of every entity with a budget and sets the in-memory spend to that total plus
 *   what this process settled and has not committed yet (sb_policy_sync_spend). The workers
 *   keep reading memory only; while the database is down the sync pauses. Old change rows
 *   are pruned every 10 minutes (kept 1 hour). See docs/internals/ledger.md for the bound
 *   on what instances can overspend together.
 *
 * Journal layout: <journal_dir>/w<worker>-<segment>.jsonl, one JSON object per line (the
 * fields of struct sb_spend_row), segments rotated at 1 MiB. */
#ifndef SB_LEDGER_LEDGER_H
#define SB_LEDGER_LEDGER_H

#include "policy/policy.h"
#include "store/store.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct sb_ledger_config {
    const char *database_url; /* see sb_store_open */
    const char *journal_dir;  /* created if missing */
    int nworkers;
    uint64_t journal_max_bytes; /* unapplied bytes before sb_ledger_full (default 256 MiB) */
    int flush_ms;               /* batch interval (default 200) */
    struct sb_policy *policy;   /* loaded at start and kept in step with admin changes */
    int sync_ms; /* how often the store thread reads the change feed and the spend totals
                    of budgeted entities, so that instances sharing the database converge
                    (general_settings.sync_interval_ms, 1000 there); 0: never */
};

/* Opens the store (migrations), applies leftover journals, loads every entity into the
 * policy (sb_policy_upsert with take_spend), and starts the store thread. NULL with err on
 * failure (the database cannot be opened: the gateway does not start). */
struct sb_ledger *sb_ledger_start(const struct sb_ledger_config *c, char *err, size_t err_len);

/* Writes everything journaled, stops the thread, closes the store. Call after every worker has
 * stopped. */
void sb_ledger_stop(struct sb_ledger *l);

/* Worker side. Each worker calls attach once on its own thread before using the ledger, and
 * detach before its loop stops; `worker` is its index (0..nworkers-1). */
int sb_ledger_attach(struct sb_ledger *l, int worker, uv_loop_t *loop);
void sb_ledger_detach(struct sb_ledger *l, int worker);

/* Appends a spend row to the worker's journal. A worker attached to a loop holds its rows in
 * memory until sb_ledger_flush, which it must call before any response of the rows' requests
 * can reach a client (the server calls it at the start of each output pass), so a loop pass
 * costs one write(2) and a client never sees a response whose row is not in the journal. An
 * unattached worker's row is written at once. If the journal cannot be written, the rows stay
 * held and are tried again on the next flush, and sb_ledger_full() is true until a write
 * works. 0, or -1 when the row cannot be kept at all (the caller logs it; the row is lost only
 * then). */
int sb_ledger_record(struct sb_ledger *l, int worker, const struct sb_spend_row *row);

/* Writes the rows worker `worker` holds (on its own thread). 0, or -1 (they stay held). */
int sb_ledger_flush(struct sb_ledger *l, int worker);

/* The unapplied journal passed journal_max_bytes, or a worker's journal cannot be written:
 * refuse new billable requests (503). */
bool sb_ledger_full(const struct sb_ledger *l);

/* The database answered the last time the store thread tried. */
bool sb_ledger_db_up(const struct sb_ledger *l);

/* Runs fn(store, ud) on the store thread, then done(ud, rc) on the worker's loop, rc being
 * fn's return value (SB_STORE_E_DOWN when the store is unreachable). fn may call
 * sb_policy_upsert/remove to make a committed change visible to every worker before done
 * runs. Returns 0, or -1 (out of memory, stopping): then nothing will be called. */
typedef int (*sb_ledger_job_fn)(struct sb_store *s, struct sb_policy *p, void *ud);
typedef void (*sb_ledger_done_cb)(void *ud, int rc);
int sb_ledger_submit(struct sb_ledger *l, int worker, sb_ledger_job_fn fn, sb_ledger_done_cb done,
                     void *ud);

/* Blocks until every row journaled so far is in the database or the timeout passes (tests
 * and shutdown). 0 or -1. */
int sb_ledger_sync(struct sb_ledger *l, int timeout_ms);

#endif

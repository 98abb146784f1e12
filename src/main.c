/* switchboard: command line, config, signals; everything else lives in the library. */
#include "api/api.h"
#include "config/config.h"
#include "core/log.h"
#include "http/server.h"

#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage_text[] =
    "usage: switchboard --config FILE [--host HOST] [--port N] [--workers N]\n"
    "       switchboard --check-config FILE\n"
    "       switchboard --version | --help\n"
    "\n"
    "An LLM gateway: OpenAI-compatible API in front of many providers.\n"
    "  --config FILE        LiteLLM-compatible YAML config (model_list, general_settings, server)\n"
    "  --host HOST          listen address (overrides server.host)\n"
    "  --port N             listen port (overrides server.port; default 4000)\n"
    "  --workers N          worker threads (overrides server.workers; default: CPU cores)\n"
    "  --check-config FILE  validate a config and exit (0 valid, 1 invalid)\n";

struct diag_state {
    int errors;
};

static void on_diag(void *ud, enum sb_diag_level level, const char *file, int line, const char *msg)
{
    struct diag_state *st = ud;
    if (level == SB_DIAG_ERROR)
        st->errors++;
    const char *what = level == SB_DIAG_ERROR ? "error" : "warning";
    if (line > 0)
        fprintf(stderr, "%s:%d: %s: %s\n", file, line, what, msg);
    else
        fprintf(stderr, "%s: %s: %s\n", file, what, msg);
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static bool is_loopback(const char *host)
{
    return strcmp(host, "127.0.0.1") == 0 || strcmp(host, "localhost") == 0 ||
           strcmp(host, "::1") == 0 || strncmp(host, "127.", 4) == 0;
}

static struct sb_server *g_server;

/* The journal folder: next to a SQLite file ("<file>.journal"), else ./switchboard-journal. */
static void journal_dir(const struct sb_config *cfg, char *out, size_t cap)
{
    const char *u = cfg->database_url;
    if (cfg->server.journal_dir) {
        snprintf(out, cap, "%s", cfg->server.journal_dir);
    } else if (strncmp(u, "sqlite://", 9) == 0 && strcmp(u, "sqlite::memory:") != 0) {
        snprintf(out, cap, "%s.journal", u + 9);
    } else {
        snprintf(out, cap, "switchboard-journal");
    }
}

/* Virtual keys and spend: the policy in memory and the ledger's store thread. */
static int start_ledger(struct sb_gateway *gw, const struct sb_config *cfg, int nworkers)
{
    gw->policy = sb_policy_new();
    if (!gw->policy)
        return -1;
    for (size_t i = 0; i < cfg->n_deployments; i++) {
        const struct sb_deployment *d = &cfg->deployments[i];
        if (d->n_access_groups && sb_policy_set_access_groups(gw->policy, d->model_name,
                                                              (const char *const *)d->access_groups,
                                                              d->n_access_groups) != 0)
            return -1;
    }
    char dir[4096];
    journal_dir(cfg, dir, sizeof dir);
    struct sb_ledger_config lc = {
        .database_url = cfg->database_url,
        .journal_dir = dir,
        .nworkers = nworkers,
        .policy = gw->policy,
        .sync_ms = (int)cfg->server.sync_interval_ms,
    };
    char err[512];
    gw->ledger = sb_ledger_start(&lc, err, sizeof err);
    if (!gw->ledger) {
        sb_error("cannot open the database: %s", err);
        sb_policy_free(gw->policy);
        gw->policy = NULL;
        return -1;
    }
    /* Redis: limits and budgets shared with the other instances (a connection per worker). */
    if (cfg->redis_url) {
        if (sb_redis_parse_url(cfg->redis_url, &gw->redis, err, sizeof err) != 0)
            return -1; /* validated with the config */
        gw->redis_on = true;
    } else if (cfg->redis_host) {
        memset(&gw->redis, 0, sizeof gw->redis);
        snprintf(gw->redis.host, sizeof gw->redis.host, "%s", cfg->redis_host);
        gw->redis.port = cfg->redis_port ? (int)cfg->redis_port : 6379;
        snprintf(gw->redis.password, sizeof gw->redis.password, "%s",
                 cfg->redis_password ? cfg->redis_password : "");
        gw->redis_on = true;
    }
    if (gw->redis_on)
        sb_info("limits and budgets shared through redis %s:%d", gw->redis.host, gw->redis.port);
    return 0;
}

static void stop_ledger(struct sb_gateway *gw)
{
    if (gw->ledger)
        sb_ledger_stop(gw->ledger);
    gw->ledger = NULL;
    if (gw->policy)
        sb_policy_free(gw->policy);
    gw->policy = NULL;
}
static uv_signal_t g_sigterm, g_sigint;

static void on_signal(uv_signal_t *h, int signum)
{
    (void)h;
    if (sb_server_draining(g_server)) {
        sb_info("already draining");
        return;
    }
    sb_info("received %s: draining (new connections refused, in-flight requests finish)",
            signum == SIGTERM ? "SIGTERM" : "SIGINT");
    sb_server_drain(g_server);
    /* The handlers stay installed (a repeated signal must not kill the process mid-drain),
     * but no longer keep the main loop alive: it returns, and main joins the workers. */
    uv_unref((uv_handle_t *)&g_sigterm);
    uv_unref((uv_handle_t *)&g_sigint);
}

int main(int argc, char **argv)
{
    const char *config_path = NULL, *check_path = NULL, *host = NULL;
    long port = -1, workers = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("switchboard %s\n", SB_VERSION);
            return 0;
        } else if (strcmp(a, "--config") == 0 && v) {
            config_path = v, i++;
        } else if (strcmp(a, "--check-config") == 0 && v) {
            check_path = v, i++;
        } else if (strcmp(a, "--host") == 0 && v) {
            host = v, i++;
        } else if (strcmp(a, "--port") == 0 && v) {
            if (parse_int(v, 1, 65535, &port)) {
                fprintf(stderr, "switchboard: --port must be 1..65535\n");
                return 2;
            }
            i++;
        } else if (strcmp(a, "--workers") == 0 && v) {
            if (parse_int(v, 1, 256, &workers)) {
                fprintf(stderr, "switchboard: --workers must be 1..256\n");
                return 2;
            }
            i++;
        } else {
            fprintf(stderr, "switchboard: unknown or incomplete argument '%s'\n\n%s", a,
                    usage_text);
            return 2;
        }
    }
    if (check_path) {
        struct diag_state st = {0};
        struct sb_config *cfg = NULL;
        int rc = sb_config_load_file(check_path, &cfg, on_diag, &st, NULL);
        if (rc == 0) {
            printf("%s: ok (%zu models, %zu deployments)\n", check_path, cfg->n_model_names,
                   cfg->n_deployments);
            sb_config_free(cfg);
            return 0;
        }
        return 1;
    }
    if (!config_path) {
        fprintf(stderr, "switchboard: --config FILE is required\n\n%s", usage_text);
        return 2;
    }

    struct diag_state st = {0};
    struct sb_config *cfg = NULL;
    if (sb_config_load_file(config_path, &cfg, on_diag, &st, NULL) != 0)
        return 1;
    enum sb_log_level lvl;
    if (cfg->server.log_level && sb_log_parse_level(cfg->server.log_level, &lvl) == 0)
        sb_log_set_level(lvl);

    const char *listen_host = host ? host : cfg->server.host;
    int listen_port = port > 0 ? (int)port : cfg->server.port;
    int nworkers = workers > 0 ? (int)workers : cfg->server.workers;
    if (nworkers <= 0) {
        long cores = sysconf(_SC_NPROCESSORS_ONLN);
        nworkers = cores > 0 ? (int)cores : 1;
    }
    if (!cfg->master_key) {
        if (!is_loopback(listen_host)) {
            sb_error("refusing to listen on %s without general_settings.master_key: anyone who "
                     "can reach it could spend your provider keys",
                     listen_host);
            sb_config_free(cfg);
            return 1;
        }
        sb_warn("no master_key configured: serving %s (loopback) only, without authentication",
                listen_host);
    }

    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        sb_error("libcurl failed to initialize");
        sb_config_free(cfg);
        return 1;
    }
    struct sb_gateway gw;
    if (sb_gateway_init(&gw, cfg, nworkers) != 0) {
        curl_global_cleanup();
        sb_config_free(cfg);
        return 1;
    }
    if (cfg->database_url && start_ledger(&gw, cfg, nworkers) != 0) {
        sb_gateway_free(&gw);
        curl_global_cleanup();
        sb_config_free(cfg);
        return 1;
    }
    struct sb_server_opts o = {
        .host = listen_host,
        .port = listen_port,
        .workers = nworkers,
        .max_header_bytes = (size_t)cfg->server.max_header_bytes,
        .max_body_bytes = (size_t)cfg->server.max_request_bytes,
        .header_timeout_ms = (uint64_t)cfg->server.header_timeout_ms,
        .body_timeout_ms = (uint64_t)cfg->server.body_timeout_ms,
        .idle_timeout_ms = (uint64_t)cfg->server.idle_timeout_ms,
        .drain_timeout_ms = (uint64_t)cfg->server.drain_timeout_ms,
        .max_connections = (size_t)cfg->server.max_connections,
        .on_request = sb_gateway_on_request,
        .on_worker_start = sb_gateway_worker_start,
        .on_worker_stop = sb_gateway_worker_stop,
        .ud = &gw,
    };
    int exit_code = 1;
    struct sb_server *srv = sb_server_new(&o);
    if (!srv)
        goto out;
    gw.server = srv;
    g_server = srv;

    /* Signals are handled on the main thread's own loop; workers never see them. */
    uv_loop_t main_loop;
    uv_loop_init(&main_loop);
    uv_signal_init(&main_loop, &g_sigterm);
    uv_signal_init(&main_loop, &g_sigint);
    uv_signal_start(&g_sigterm, on_signal, SIGTERM);
    uv_signal_start(&g_sigint, on_signal, SIGINT);

    if (sb_server_start(srv) != 0) {
        sb_server_drain(srv);
        sb_server_wait(srv);
        goto out_loop;
    }
    sb_info("listening on %s:%d (switchboard %s, %d workers, %zu models)", listen_host, listen_port,
            SB_VERSION, nworkers, cfg->n_model_names);
    /* Runs until a signal arrives and its handle is closed. */
    uv_run(&main_loop, UV_RUN_DEFAULT);
    sb_server_wait(srv);
    sb_info("stopped");
    exit_code = 0;
out_loop:
    if (!uv_is_closing((uv_handle_t *)&g_sigterm))
        uv_close((uv_handle_t *)&g_sigterm, NULL);
    if (!uv_is_closing((uv_handle_t *)&g_sigint))
        uv_close((uv_handle_t *)&g_sigint, NULL);
    uv_run(&main_loop, UV_RUN_DEFAULT);
    uv_loop_close(&main_loop);
out:
    sb_server_free(srv);
    stop_ledger(&gw);
    sb_gateway_free(&gw);
    curl_global_cleanup();
    sb_config_free(cfg);
    return exit_code;
}

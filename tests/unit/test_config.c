#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config/config.h"
#include "core/buf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>

#ifndef SB_SOURCE_DIR
#define SB_SOURCE_DIR "."
#endif

#define CANARY "sk-canary-DO-NOT-LEAK"

/* ---- Fixtures: diagnostics collector and a fake environment ------------------------- */

struct diags {
    struct sb_buf text; /* every message as "W|E file:line: msg\n" */
    int warnings, errors;
};

static void on_diag(void *ud, enum sb_diag_level level, const char *file, int line, const char *msg)
{
    struct diags *d = ud;
    if (level == SB_DIAG_ERROR)
        d->errors++;
    else
        d->warnings++;
    assert_int_equal(sb_buf_printf(&d->text, "%c %s:%d: %s\n", level == SB_DIAG_ERROR ? 'E' : 'W',
                                   file, line, msg),
                     0);
}

struct env_var {
    const char *name, *value;
};

static const struct env_var *fake_env;

static const char *fake_getenv(const char *name)
{
    for (const struct env_var *e = fake_env; e && e->name; e++) {
        if (strcmp(e->name, name) == 0)
            return e->value;
    }
    return NULL;
}

static int load(const char *yaml, struct sb_config **cfg, struct diags *d)
{
    memset(d, 0, sizeof *d);
    sb_buf_init(&d->text, 1 << 20);
    sb_buf_append_str(&d->text, "");
    return sb_config_load_string(yaml, strlen(yaml), "t.yaml", cfg, on_diag, d, fake_getenv);
}

static void diags_free(struct diags *d)
{
    sb_buf_free(&d->text);
}

static void assert_has(const struct diags *d, const char *needle)
{
    if (!strstr(d->text.data, needle))
        fail_msg("expected \"%s\" in diagnostics:\n%s", needle, d->text.data);
}

static void assert_lacks(const struct diags *d, const char *needle)
{
    if (strstr(d->text.data, needle))
        fail_msg("did not expect \"%s\" in diagnostics:\n%s", needle, d->text.data);
}

/* Loads a config that must fail with exactly this diagnostic among the errors. */
static void expect_error(const char *yaml, const char *diag)
{
    struct sb_config *cfg = (void *)1;
    struct diags d;
    int rc = load(yaml, &cfg, &d);
    if (rc != -1)
        fail_msg("expected failure for:\n%s", yaml);
    assert_null(cfg);
    assert_true(d.errors >= 1);
    assert_has(&d, diag);
    diags_free(&d);
}

static struct sb_config *expect_ok(const char *yaml, struct diags *d)
{
    struct sb_config *cfg = NULL;
    int rc = load(yaml, &cfg, d);
    if (rc != 0)
        fail_msg("load failed:\n%s", d->text.data);
    assert_non_null(cfg);
    assert_int_equal(d->errors, 0);
    return cfg;
}

/* ---- A full LiteLLM-style config ------------------------------------------------------ */

static const char full_yaml[] = "model_list:\n"                                       /* 1 */
                                "  - model_name: gpt-4o\n"                            /* 2 */
                                "    litellm_params:\n"                               /* 3 */
                                "      model: openai/gpt-4o\n"                        /* 4 */
                                "      api_base: https://proxy.example.com/v1/\n"     /* 5 */
                                "      api_key: os.environ/OPENAI_API_KEY\n"          /* 6 */
                                "      timeout: 30\n"                                 /* 7 */
                                "      stream_timeout: 5.5\n"                         /* 8 */
                                "      max_retries: 3\n"                              /* 9 */
                                "      rpm: 600\n"                                    /* 10 */
                                "      tpm: 100000\n"                                 /* 11 */
                                "      weight: 2.5\n"                                 /* 12 */
                                "      drop_params: true\n"                           /* 13 */
                                "    model_info:\n"                                   /* 14 */
                                "      id: abc\n"                                     /* 15 */
                                "      max_tokens: 4096\n"                            /* 16 */
                                "      input_cost_per_token: 0.0000025\n"             /* 17 */
                                "      supports_vision: true\n"                       /* 18 */
                                "      tags: [a, \"1\", null]\n"                      /* 19 */
                                "  - model_name: gpt-4o\n"                            /* 20 */
                                "    litellm_params:\n"                               /* 21 */
                                "      model: azure/prod-gpt4o\n"                     /* 22 */
                                "      api_base: https://res.openai.azure.com\n"      /* 23 */
                                "      api_key: azkey\n"                              /* 24 */
                                "      api_version: 2024-06-01\n"                     /* 25 */
                                "  - model_name: claude\n"                            /* 26 */
                                "    litellm_params:\n"                               /* 27 */
                                "      model: anthropic/claude-3-5-sonnet-20240620\n" /* 28 */
                                "      api_key: os.environ/ANTHROPIC_API_KEY\n"       /* 29 */
                                "litellm_settings:\n"                                 /* 30 */
                                "  drop_params: true\n"                               /* 31 */
                                "  num_retries: 2\n"                                  /* 32 */
                                "router_settings:\n"                                  /* 33 */
                                "  routing_strategy: simple-shuffle\n"                /* 34 */
                                "general_settings:\n"                                 /* 35 */
                                "  master_key: sk-1234\n"                             /* 36 */
                                "  max_request_size_mb: 2\n"                          /* 37 */
                                "  database_url: postgres://x\n"                      /* 38 */
                                "environment_variables:\n"                            /* 39 */
                                "  FOO: bar\n"                                        /* 40 */
                                "server:\n"                                           /* 41 */
                                "  host: 10.0.0.1\n"                                  /* 42 */
                                "  port: 8080\n"                                      /* 43 */
                                "  workers: 4\n"                                      /* 44 */
                                "  max_header_bytes: 32768\n"                         /* 45 */
                                "  max_response_mb: 8\n"                              /* 46 */
                                "  max_event_kb: 512\n"                               /* 47 */
                                "  header_timeout_ms: 1000\n"                         /* 48 */
                                "  body_timeout_ms: 2000\n"                           /* 49 */
                                "  idle_timeout_ms: 3000\n"                           /* 50 */
                                "  drain_timeout_ms: 4000\n"                          /* 51 */
                                "  connect_timeout_ms: 5000\n"                        /* 52 */
                                "  max_connections: 100\n"                            /* 53 */
                                "  access_log: /var/log/sb.log\n"                     /* 54 */
                                "  log_level: debug\n";                               /* 55 */

static void test_full_config(void **state)
{
    (void)state;
    static const struct env_var env[] = {{"OPENAI_API_KEY", "sk-openai"}, {NULL, NULL}};
    fake_env = env;
    struct diags d;
    struct sb_config *cfg = expect_ok(full_yaml, &d);
    assert_string_equal(cfg->path, "t.yaml");
    assert_int_equal(cfg->n_deployments, 3);

    const struct sb_deployment *a = &cfg->deployments[0];
    assert_string_equal(a->model_name, "gpt-4o");
    assert_string_equal(a->litellm_model, "openai/gpt-4o");
    assert_int_equal(a->provider, SB_PROVIDER_OPENAI);
    assert_string_equal(a->provider_name, "openai");
    assert_string_equal(a->upstream_model, "gpt-4o");
    assert_string_equal(a->api_base, "https://proxy.example.com/v1");
    assert_string_equal(a->api_key, "sk-openai");
    assert_null(a->api_version);
    assert_true(a->timeout_s == 30);
    assert_true(a->stream_timeout_s == 5.5);
    assert_int_equal(a->max_retries, 3);
    assert_int_equal(a->rpm, 600);
    assert_int_equal(a->tpm, 100000);
    assert_true(a->weight == 2.5);
    assert_false(a->disabled);
    assert_null(a->disabled_reason);
    assert_int_equal(a->line, 2);
    assert_string_equal(a->model_info_json,
                        "{\"id\":\"abc\",\"max_tokens\":4096,\"input_cost_per_token\":2.5e-6,"
                        "\"supports_vision\":true,\"tags\":[\"a\",\"1\",null]}");

    const struct sb_deployment *b = &cfg->deployments[1];
    assert_int_equal(b->provider, SB_PROVIDER_AZURE);
    assert_string_equal(b->provider_name, "azure");
    assert_string_equal(b->upstream_model, "prod-gpt4o");
    assert_string_equal(b->api_base, "https://res.openai.azure.com");
    assert_string_equal(b->api_key, "azkey");
    assert_string_equal(b->api_version, "2024-06-01");
    assert_null(b->model_info_json);
    assert_int_equal(b->line, 20);

    const struct sb_deployment *c = &cfg->deployments[2];
    assert_int_equal(c->provider, SB_PROVIDER_ANTHROPIC);
    assert_string_equal(c->provider_name, "anthropic");
    assert_string_equal(c->upstream_model, "claude-3-5-sonnet-20240620");
    assert_string_equal(c->api_base, "https://api.anthropic.com");
    assert_true(c->disabled);
    assert_string_equal(c->disabled_reason, "environment variable ANTHROPIC_API_KEY is not set");

    assert_int_equal(cfg->n_model_names, 2);
    assert_string_equal(cfg->model_names[0], "gpt-4o");
    assert_string_equal(cfg->model_names[1], "claude");
    assert_int_equal(sb_config_model_index(cfg, "claude", 6), 1);
    assert_int_equal(sb_config_model_index(cfg, "gpt-4o", 6), 0);
    assert_int_equal(sb_config_model_index(cfg, "gpt-4", 5), -1);
    assert_int_equal(sb_config_model_index(cfg, "gpt-4o-mini", 11), -1);

    assert_string_equal(cfg->master_key, "sk-1234");
    const struct sb_server_config *s = &cfg->server;
    assert_string_equal(s->host, "10.0.0.1");
    assert_int_equal(s->port, 8080);
    assert_int_equal(s->workers, 4);
    assert_int_equal(s->max_header_bytes, 32768);
    assert_int_equal(s->max_request_bytes, 2 * 1024 * 1024);
    assert_int_equal(s->max_response_bytes, 8 * 1024 * 1024);
    assert_int_equal(s->max_event_bytes, 512 * 1024);
    assert_int_equal(s->header_timeout_ms, 1000);
    assert_int_equal(s->body_timeout_ms, 2000);
    assert_int_equal(s->idle_timeout_ms, 3000);
    assert_int_equal(s->drain_timeout_ms, 4000);
    assert_int_equal(s->connect_timeout_ms, 5000);
    assert_int_equal(s->max_connections, 100);
    assert_string_equal(s->access_log, "/var/log/sb.log");
    assert_string_equal(s->log_level, "debug");

    /* Every ignored key is a warning at its own line. */
    assert_has(&d, "W t.yaml:13: unknown key 'litellm_params.drop_params' ignored");
    assert_has(&d, "W t.yaml:31: litellm_settings.drop_params is not supported yet, ignored");
    assert_lacks(&d, "num_retries"); /* applied by the router */
    assert_int_equal(cfg->router.num_retries, 2);
    assert_true(cfg->router.num_retries_set);
    assert_string_equal(cfg->router.routing_strategy, "simple-shuffle");
    assert_string_equal(cfg->database_url, "postgres://x");
    assert_has(&d, "W t.yaml:39: unknown key 'environment_variables' ignored");
    /* The anthropic entry is disabled: its key's variable is not set. */
    assert_has(&d, "W t.yaml:29: litellm_params.api_key: environment variable "
                   "ANTHROPIC_API_KEY is not set");
    assert_int_equal(d.warnings, 4);
    sb_config_free(cfg);
    diags_free(&d);
}

static void test_defaults(void **state)
{
    (void)state;
    fake_env = NULL;
    struct diags d;
    struct sb_config *cfg = expect_ok("model_list:\n"
                                      "  - model_name: m\n"
                                      "    litellm_params:\n"
                                      "      model: openai/gpt-4o-mini\n",
                                      &d);
    assert_int_equal(d.warnings, 0);
    const struct sb_deployment *a = &cfg->deployments[0];
    assert_string_equal(a->api_base, "https://api.openai.com/v1");
    assert_null(a->api_key);
    assert_null(a->api_version);
    assert_true(a->timeout_s == 600);
    assert_true(a->stream_timeout_s == 600);
    assert_int_equal(a->max_retries, 0);
    assert_int_equal(a->rpm, 0);
    assert_int_equal(a->tpm, 0);
    assert_true(a->weight == 1);
    assert_null(a->model_info_json);
    assert_false(a->disabled);
    assert_null(cfg->master_key);
    const struct sb_server_config *s = &cfg->server;
    assert_string_equal(s->host, "127.0.0.1");
    assert_int_equal(s->port, 4000);
    assert_int_equal(s->workers, 0);
    assert_int_equal(s->max_header_bytes, 16384);
    assert_int_equal(s->max_request_bytes, 32 * 1024 * 1024);
    assert_int_equal(s->sync_interval_ms, 1000);
    assert_int_equal(s->max_response_bytes, 64 * 1024 * 1024);
    assert_int_equal(s->max_event_bytes, 4 * 1024 * 1024);
    assert_int_equal(s->header_timeout_ms, 10000);
    assert_int_equal(s->body_timeout_ms, 60000);
    assert_int_equal(s->idle_timeout_ms, 60000);
    assert_int_equal(s->drain_timeout_ms, 30000);
    assert_int_equal(s->connect_timeout_ms, 10000);
    assert_int_equal(s->max_connections, 16384);
    assert_string_equal(s->access_log, "stdout");
    assert_string_equal(s->log_level, "info");
    sb_config_free(cfg);
    diags_free(&d);

    /* stream_timeout follows timeout when not given. */
    cfg = expect_ok("model_list:\n"
                    "  - model_name: m\n"
                    "    litellm_params: {model: openai/x, timeout: 42}\n",
                    &d);
    assert_true(cfg->deployments[0].stream_timeout_s == 42);
    sb_config_free(cfg);
    diags_free(&d);
}

static void test_host_follows_master_key(void **state)
{
    (void)state;
    fake_env = NULL;
    struct diags d;
    struct sb_config *cfg = expect_ok("general_settings:\n  master_key: sk-x\n", &d);
    assert_string_equal(cfg->server.host, "0.0.0.0");
    assert_has(&d, "W t.yaml:1: no model_list; no models are served");
    sb_config_free(cfg);
    diags_free(&d);

    /* Decided after everything is read: server: may come first. */
    cfg =
        expect_ok("server: {port: 1}\ngeneral_settings: {master_key: sk-x}\nmodel_list: []\n", &d);
    assert_string_equal(cfg->server.host, "0.0.0.0");
    assert_has(&d, "W t.yaml:3: model_list is empty; no models are served");
    sb_config_free(cfg);
    diags_free(&d);

    cfg = expect_ok("server: {host: 127.0.0.2}\ngeneral_settings: {master_key: sk-x}\n", &d);
    assert_string_equal(cfg->server.host, "127.0.0.2");
    sb_config_free(cfg);
    diags_free(&d);

    cfg = expect_ok("general_settings:\n  master_key: plain-secret\n", &d);
    assert_string_equal(cfg->master_key, "plain-secret");
    assert_has(&d, "W t.yaml:2: general_settings.master_key should start with 'sk-'");
    assert_lacks(&d, "plain-secret");
    sb_config_free(cfg);
    diags_free(&d);

    cfg = expect_ok("server: {host: '::'}\nmodel_list:\n", &d);
    assert_string_equal(cfg->server.host, "::");
    assert_null(cfg->master_key);
    sb_config_free(cfg);
    diags_free(&d);
}

/* ---- os.environ/ -------------------------------------------------------------------- */

static void test_environ(void **state)
{
    (void)state;
    static const struct env_var env[] = {{"KEY", "secret-value"},
                                         {"BASE", "http://10.1.1.1:8000/v1"},
                                         {"EMPTY", ""},
                                         {"RPM", "77"},
                                         {"MK", "sk-from-env"},
                                         {"PORT", "9000"},
                                         {NULL, NULL}};
    fake_env = env;
    struct diags d;
    struct sb_config *cfg = expect_ok("model_list:\n"
                                      "  - model_name: ok\n"
                                      "    litellm_params:\n"
                                      "      model: hosted_vllm/llama\n"
                                      "      api_base: os.environ/BASE\n"
                                      "      api_key: os.environ/KEY\n"
                                      "      rpm: os.environ/RPM\n"
                                      "  - model_name: missing\n"
                                      "    litellm_params:\n"
                                      "      model: openai/gpt-4o\n"
                                      "      api_key: os.environ/NOPE\n"
                                      "  - model_name: empty\n"
                                      "    litellm_params:\n"
                                      "      model: openai/gpt-4o\n"
                                      "      api_key: os.environ/EMPTY\n"
                                      "  - model_name: os.environ/NONAME\n"
                                      "    litellm_params:\n"
                                      "      model: os.environ/NOMODEL\n"
                                      "general_settings:\n"
                                      "  master_key: os.environ/MK\n"
                                      "server:\n"
                                      "  port: os.environ/PORT\n",
                                      &d);
    assert_int_equal(cfg->n_deployments, 4);
    const struct sb_deployment *a = &cfg->deployments[0];
    assert_false(a->disabled);
    assert_string_equal(a->api_key, "secret-value");
    assert_string_equal(a->api_base, "http://10.1.1.1:8000/v1");
    assert_int_equal(a->rpm, 77);

    const struct sb_deployment *b = &cfg->deployments[1];
    assert_true(b->disabled);
    assert_null(b->api_key);
    assert_string_equal(b->disabled_reason, "environment variable NOPE is not set");
    assert_has(&d, "W t.yaml:11: litellm_params.api_key: environment variable NOPE is not set");

    const struct sb_deployment *c = &cfg->deployments[2];
    assert_true(c->disabled);
    assert_string_equal(c->disabled_reason, "environment variable EMPTY is not set");
    assert_has(&d, "W t.yaml:15: litellm_params.api_key: environment variable EMPTY");

    /* Even an unresolved model_name and model leave printable, non-NULL fields. */
    const struct sb_deployment *e = &cfg->deployments[3];
    assert_true(e->disabled);
    assert_string_equal(e->disabled_reason, "environment variable NONAME is not set");
    assert_string_equal(e->model_name, "os.environ/NONAME");
    assert_string_equal(e->litellm_model, "os.environ/NOMODEL");
    assert_string_equal(e->provider_name, "");
    assert_string_equal(e->upstream_model, "");
    assert_int_equal(e->provider, SB_PROVIDER_UNSUPPORTED);

    assert_string_equal(cfg->master_key, "sk-from-env");
    assert_int_equal(cfg->server.port, 9000);
    assert_string_equal(cfg->server.host, "0.0.0.0");
    assert_int_equal(cfg->n_model_names, 4);
    assert_lacks(&d, "secret-value");
    assert_lacks(&d, "sk-from-env");
    sb_config_free(cfg);
    diags_free(&d);

    /* Outside model_list an unset variable is an error. */
    expect_error("general_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n",
                 "E t.yaml:2: general_settings.master_key: environment variable "
                 "LITELLM_MASTER_KEY is not set");
    expect_error("general_settings:\n  master_key: os.environ/EMPTY\n",
                 "E t.yaml:2: general_settings.master_key: environment variable EMPTY");
    expect_error("server:\n  access_log: os.environ/LOGFILE\n",
                 "E t.yaml:2: server.access_log: environment variable LOGFILE is not set");
    expect_error("server:\n  port: os.environ/NOPORT\n",
                 "E t.yaml:2: server.port: environment variable NOPORT is not set");
    expect_error("model_list:\n  - model_name: m\n    litellm_params:\n"
                 "      model: openai/x\n      api_key: os.environ/\n",
                 "E t.yaml:5: litellm_params.api_key: os.environ/ needs a variable name");
    /* A resolved value is still validated. */
    expect_error("model_list:\n  - model_name: m\n    litellm_params:\n"
                 "      model: openai/x\n      api_key: k\n      timeout: os.environ/KEY\n",
                 "E t.yaml:6: litellm_params.timeout must be a number > 0");
}

/* ---- Errors, each at its line --------------------------------------------------------- */

#define ENTRY "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n"

static void test_errors_with_lines(void **state)
{
    (void)state;
    fake_env = NULL;
    expect_error(ENTRY "      timeout: 0\n",
                 "E t.yaml:5: litellm_params.timeout must be a number > 0");
    expect_error("general_settings:\n  sync_interval_ms: -1\n",
                 "E t.yaml:2: general_settings.sync_interval_ms must be an integer in 0..3600000");
    expect_error("general_settings:\n  sync_interval_ms: fast\n",
                 "E t.yaml:2: general_settings.sync_interval_ms must be an integer in 0..3600000");
    expect_error(ENTRY "      timeout: -3\n",
                 "E t.yaml:5: litellm_params.timeout must be a number > 0");
    expect_error(ENTRY "      timeout: abc\n",
                 "E t.yaml:5: litellm_params.timeout must be a number > 0");
    expect_error(ENTRY "      timeout: \"abc\"\n",
                 "E t.yaml:5: litellm_params.timeout must be a number > 0");
    expect_error(ENTRY "      timeout: true\n",
                 "E t.yaml:5: litellm_params.timeout must be a number > 0");
    expect_error(ENTRY "      timeout: .inf\n",
                 "E t.yaml:5: litellm_params.timeout must be a number > 0");
    expect_error(ENTRY "      timeout: nan\n",
                 "E t.yaml:5: litellm_params.timeout must be a number > 0");
    expect_error(ENTRY "      timeout: 0x10\n",
                 "E t.yaml:5: litellm_params.timeout must be a number > 0");
    expect_error(ENTRY "      timeout: [1]\n",
                 "E t.yaml:5: litellm_params.timeout must be a number > 0");
    expect_error(ENTRY "      timeout: 1e300\n",
                 "E t.yaml:5: litellm_params.timeout must be at most 10000000");
    expect_error(ENTRY "      stream_timeout: 0\n",
                 "E t.yaml:5: litellm_params.stream_timeout must be a number > 0");
    expect_error(ENTRY "      max_retries: 11\n",
                 "E t.yaml:5: litellm_params.max_retries must be an integer in 0..10");
    expect_error(ENTRY "      max_retries: 1.5\n",
                 "E t.yaml:5: litellm_params.max_retries must be an integer in 0..10");
    expect_error(ENTRY "      rpm: -1\n", "E t.yaml:5: litellm_params.rpm must be an integer >= 0");
    expect_error(ENTRY "      tpm: 99999999999999999999\n",
                 "E t.yaml:5: litellm_params.tpm must be an integer >= 0");
    expect_error(ENTRY "      weight: 0\n",
                 "E t.yaml:5: litellm_params.weight must be a number > 0");
    expect_error(ENTRY "      api_base: ftp://x\n",
                 "E t.yaml:5: litellm_params.api_base must be an http:// or https:// URL");
    expect_error(ENTRY "      api_key: {a: b}\n",
                 "E t.yaml:5: litellm_params.api_key must be a string");
    expect_error(ENTRY "      api_key: \"a\\0b\"\n",
                 "E t.yaml:5: litellm_params.api_key must not contain NUL characters");
    expect_error(ENTRY "    model_info: [1, 2]\n", "E t.yaml:5: model_info must be a mapping");
    expect_error("model_list:\n  - model_name: m\n    litellm_params:\n      api_key: x\n",
                 "E t.yaml:4: litellm_params.model is required");
    expect_error("model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/\n",
                 "E t.yaml:4: litellm_params.model must look like 'provider/model'");
    expect_error("model_list:\n  - model_name: m\n    litellm_params: {model: /gpt}\n",
                 "E t.yaml:3: litellm_params.model must look like 'provider/model'");
    expect_error("model_list:\n  - model_name: m\n", "E t.yaml:2: litellm_params is required");
    expect_error("model_list:\n  - model_name: m\n    litellm_params: openai/x\n",
                 "E t.yaml:3: litellm_params must be a mapping");
    expect_error("model_list:\n\n  - litellm_params: {model: openai/x}\n",
                 "E t.yaml:3: model_name is required");
    expect_error("model_list:\n  - model_name: ''\n    litellm_params: {model: openai/x}\n",
                 "E t.yaml:2: model_name must not be empty");
    expect_error("model_list:\n  - model_name: [a]\n    litellm_params: {model: openai/x}\n",
                 "E t.yaml:2: model_name must be a string");
    expect_error("model_list:\n  - just-a-string\n",
                 "E t.yaml:2: model_list entries must be mappings");
    expect_error("model_list: {a: b}\n", "E t.yaml:1: model_list must be a list");
    expect_error("general_settings: [1]\n", "E t.yaml:1: general_settings must be a mapping");
    expect_error("general_settings:\n  max_request_size_mb: 0\n",
                 "E t.yaml:2: general_settings.max_request_size_mb must be a number > 0");
    expect_error("general_settings:\n  master_key: ''\n",
                 "E t.yaml:2: general_settings.master_key must not be empty");
    expect_error("server: 4000\n", "E t.yaml:1: server must be a mapping");
    expect_error("server:\n  port: 0\n", "E t.yaml:2: server.port must be an integer in 1..65535");
    expect_error("server:\n  port: 65536\n",
                 "E t.yaml:2: server.port must be an integer in 1..65535");
    expect_error("server:\n  port: \"http\"\n",
                 "E t.yaml:2: server.port must be an integer in 1..65535");
    expect_error("server:\n  workers: 257\n",
                 "E t.yaml:2: server.workers must be an integer in 0..256");
    expect_error("server:\n  max_header_bytes: 1023\n",
                 "E t.yaml:2: server.max_header_bytes must be an integer in 1024..1048576");
    expect_error("server:\n  max_header_bytes: 1048577\n",
                 "E t.yaml:2: server.max_header_bytes must be an integer in 1024..1048576");
    expect_error("server:\n  max_response_mb: 0\n",
                 "E t.yaml:2: server.max_response_mb must be a number > 0");
    expect_error("server:\n  max_event_kb: -1\n",
                 "E t.yaml:2: server.max_event_kb must be a number > 0");
    expect_error("server:\n  header_timeout_ms: 0\n",
                 "E t.yaml:2: server.header_timeout_ms must be an integer in 1..86400000");
    expect_error("server:\n  body_timeout_ms: x\n",
                 "E t.yaml:2: server.body_timeout_ms must be an integer in 1..86400000");
    expect_error("server:\n  idle_timeout_ms: 0\n", "E t.yaml:2: server.idle_timeout_ms");
    expect_error("server:\n  drain_timeout_ms: 0\n", "E t.yaml:2: server.drain_timeout_ms");
    expect_error("server:\n  connect_timeout_ms: 0\n", "E t.yaml:2: server.connect_timeout_ms");
    expect_error("server:\n  max_connections: 0\n",
                 "E t.yaml:2: server.max_connections must be an integer in 1..1000000");
    expect_error("server:\n  log_level: verbose\n",
                 "E t.yaml:2: server.log_level must be debug, info, warn or error");
    expect_error("server:\n  access_log: ''\n", "E t.yaml:2: server.access_log must not be empty");
    expect_error("server:\n  host: [a]\n", "E t.yaml:2: server.host must be a string");
    expect_error("", "E t.yaml:1: the configuration is empty");
    expect_error("# only a comment\n", "E t.yaml:1: the configuration is empty");
    expect_error("- a\n- b\n", "E t.yaml:1: the top level must be a mapping");
    expect_error("model_list: []\n---\nmodel_list: []\n",
                 "E t.yaml:2: only one YAML document is allowed");
    /* YAML syntax errors carry libyaml's line. */
    expect_error("model_list:\n  - model_name: m\n    litellm_params: {model: openai/x\n",
                 "E t.yaml:4: YAML syntax error: did not find expected ',' or '}'");
    expect_error("server:\n  port: 1\n port: 2\n",
                 "E t.yaml:3: YAML syntax error: did not find expected key");
    expect_error("a: *nope\n", "E t.yaml:1: unknown YAML alias '*nope'");
    expect_error("a: \"\\xff\"\nb: \x01\n", "E t.yaml:2:");
    /* All errors are reported, not only the first. */
    struct sb_config *cfg;
    struct diags d;
    assert_int_equal(load("server:\n  port: 0\n  workers: -1\n  log_level: x\n", &cfg, &d), -1);
    assert_int_equal(d.errors, 3);
    assert_has(&d, "t.yaml:2:");
    assert_has(&d, "t.yaml:3:");
    assert_has(&d, "t.yaml:4:");
    diags_free(&d);
}

static void test_numbers(void **state)
{
    (void)state;
    fake_env = NULL;
    struct diags d;
    /* Quoted numbers are numbers; sizes may be fractional and round up to whole bytes. */
    struct sb_config *cfg = expect_ok(ENTRY "      timeout: \"12.5\"\n"
                                            "      max_retries: '2'\n"
                                            "      rpm: +5\n"
                                            "      tpm: 0\n"
                                            "general_settings:\n"
                                            "  max_request_size_mb: 0.5\n"
                                            "  sync_interval_ms: 250\n"
                                            "server:\n"
                                            "  port: \"4001\"\n"
                                            "  max_event_kb: 0.001\n"
                                            "  timeout_unused:\n",
                                      &d);
    assert_true(cfg->deployments[0].timeout_s == 12.5);
    assert_int_equal(cfg->deployments[0].max_retries, 2);
    assert_int_equal(cfg->deployments[0].rpm, 5);
    assert_int_equal(cfg->server.max_request_bytes, 512 * 1024);
    assert_int_equal(cfg->server.sync_interval_ms, 250);
    assert_int_equal(cfg->server.port, 4001);
    assert_int_equal(cfg->server.max_event_bytes, 2);
    assert_has(&d, "W t.yaml:15: unknown key 'server.timeout_unused' ignored");
    sb_config_free(cfg);
    diags_free(&d);

    /* A null value means "not given": the default stays. */
    cfg = expect_ok(ENTRY "      timeout:\n      api_key: ~\nserver:\n  port: null\n", &d);
    assert_true(cfg->deployments[0].timeout_s == 600);
    assert_null(cfg->deployments[0].api_key);
    assert_int_equal(cfg->server.port, 4000);
    sb_config_free(cfg);
    diags_free(&d);
}

static void test_unknown_key_warnings(void **state)
{
    (void)state;
    fake_env = NULL;
    struct diags d;
    struct sb_config *cfg = expect_ok("model_list:\n"
                                      "  - model_name: m\n"
                                      "    litellm_params:\n"
                                      "      model: openai/x\n"
                                      "      aws_role_name: r1\n"
                                      "      input_cost_per_token: 0.1\n"
                                      "    tpm_limit: 5\n"
                                      "credential_list: []\n"
                                      "guardrails: []\n"
                                      "general_settings:\n"
                                      "  alerting: [slack]\n"
                                      "server:\n"
                                      "  colour: blue\n"
                                      "\"we\\tird\": 1\n"
                                      "litellm_settings: true\n",
                                      &d);
    assert_has(&d, "W t.yaml:5: unknown key 'litellm_params.aws_role_name' ignored");
    assert_lacks(&d, "input_cost_per_token"); /* a price, read for cost-based routing */
    assert_true(cfg->deployments[0].cost_in == 0.1);
    assert_has(&d, "W t.yaml:7: unknown key 'tpm_limit' in a model_list entry ignored");
    assert_has(&d, "W t.yaml:8: unknown key 'credential_list' ignored");
    assert_has(&d, "W t.yaml:9: unknown key 'guardrails' ignored");
    assert_has(&d, "W t.yaml:11: general_settings.alerting is not supported yet, ignored");
    assert_has(&d, "W t.yaml:13: unknown key 'server.colour' ignored");
    /* Key names are shown printable. */
    assert_has(&d, "W t.yaml:14: unknown key 'we?ird' ignored");
    assert_has(&d, "W t.yaml:15: litellm_settings is not a mapping; ignored");
    assert_int_equal(d.warnings, 8);
    sb_config_free(cfg);
    diags_free(&d);

    cfg = expect_ok("server:\n  port: 1\n  port: 2\nmodel_list:\n", &d);
    assert_has(&d, "W t.yaml:3: duplicate key 'port'; the last one wins");
    assert_int_equal(cfg->server.port, 2);
    sb_config_free(cfg);
    diags_free(&d);
}

/* ---- Secrets never reach a message ------------------------------------------------------ */

static void test_canary_never_leaks(void **state)
{
    (void)state;
    static const struct env_var env[] = {{"CANARY", CANARY}, {NULL, NULL}};
    fake_env = env;
    static const char *const cases[] = {
        /* type and range errors on the secret keys themselves */
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n"
        "      api_key: [" CANARY "]\n",
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n"
        "      api_key: {" CANARY ": 1}\n",
        "general_settings:\n  master_key: [" CANARY "]\n",
        "general_settings:\n  master_key: {k: " CANARY "}\n",
        "general_settings:\n  master_key: xx-" CANARY "\n",
        "general_settings:\n  master_key: \"" CANARY "\\0\"\n",
        /* secrets next to other errors, directly and through the environment */
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n"
        "      api_key: " CANARY "\n      timeout: " CANARY "\n",
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n"
        "      api_key: os.environ/CANARY\n      max_retries: os.environ/CANARY\n",
        "general_settings:\n  master_key: os.environ/CANARY\n  max_request_size_mb: "
        "os.environ/CANARY\nserver:\n  port: os.environ/CANARY\n  log_level: "
        "os.environ/CANARY\n",
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n"
        "      api_base: " CANARY "\n",
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: azure/x\n"
        "      api_key: " CANARY "\n",
        /* syntax errors right after a secret */
        "general_settings:\n  master_key: " CANARY ": x\n",
        "general_settings:\n  master_key: \"" CANARY "\n",
        "general_settings:\n  master_key: " CANARY "\n  - x\n",
        "general_settings:\n  master_key: &a " CANARY "\n  other: *b\n",
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: openai/x\n"
        "      api_key: '" CANARY "'\n      api_key: '" CANARY "'\n",
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        struct sb_config *cfg = NULL;
        struct diags d;
        load(cases[i], &cfg, &d);
        assert_true(d.warnings + d.errors > 0);
        if (strstr(d.text.data, "canary"))
            fail_msg("case %zu leaked the secret:\n%s", i, d.text.data);
        sb_config_free(cfg);
        diags_free(&d);
    }
}

/* ---- Providers ------------------------------------------------------------------------ */

static void test_provider_prefixes(void **state)
{
    (void)state;
    fake_env = NULL;
    static const struct {
        const char *model;
        enum sb_provider_kind kind;
        const char *name, *upstream, *api_base;
        bool disabled;
    } table[] = {
        {"openai/gpt-4o", SB_PROVIDER_OPENAI, "openai", "gpt-4o", "https://api.openai.com/v1", 0},
        {"openai/ft:gpt-4o:org/x", SB_PROVIDER_OPENAI, "openai", "ft:gpt-4o:org/x",
         "https://api.openai.com/v1", 0},
        {"groq/llama3", SB_PROVIDER_OPENAI, "groq", "llama3", "https://api.groq.com/openai/v1", 0},
        {"together_ai/m", SB_PROVIDER_OPENAI, "together_ai", "m", "https://api.together.xyz/v1", 0},
        {"mistral/m", SB_PROVIDER_OPENAI, "mistral", "m", "https://api.mistral.ai/v1", 0},
        {"deepseek/m", SB_PROVIDER_OPENAI, "deepseek", "m", "https://api.deepseek.com/v1", 0},
        {"xai/grok", SB_PROVIDER_OPENAI, "xai", "grok", "https://api.x.ai/v1", 0},
        {"openrouter/a/b", SB_PROVIDER_OPENAI, "openrouter", "a/b", "https://openrouter.ai/api/v1",
         0},
        {"fireworks_ai/accounts/f/models/m", SB_PROVIDER_OPENAI, "fireworks_ai",
         "accounts/f/models/m", "https://api.fireworks.ai/inference/v1", 0},
        {"perplexity/sonar", SB_PROVIDER_OPENAI, "perplexity", "sonar", "https://api.perplexity.ai",
         0},
        {"ollama_chat/llama3", SB_PROVIDER_OPENAI, "ollama_chat", "llama3",
         "http://localhost:11434/v1", 0},
        {"ollama/llama3", SB_PROVIDER_OPENAI, "ollama", "llama3", "http://localhost:11434/v1", 0},
        {"anthropic/claude", SB_PROVIDER_ANTHROPIC, "anthropic", "claude",
         "https://api.anthropic.com", 0},
        {"gemini/gemini-pro", SB_PROVIDER_GEMINI, "gemini", "gemini-pro",
         "https://generativelanguage.googleapis.com", 0},
        {"vertex_ai/x", SB_PROVIDER_VERTEX, "vertex_ai", "x",
         "https://us-central1-aiplatform.googleapis.com", 1},
        {"bedrock/anthropic.claude", SB_PROVIDER_BEDROCK, "bedrock", "anthropic.claude",
         "https://bedrock-runtime.us-east-1.amazonaws.com", 1},
        {"cohere/command-r", SB_PROVIDER_COHERE, "cohere", "command-r", "https://api.cohere.com",
         0},
        {"cohere_chat/command-r", SB_PROVIDER_COHERE, "cohere_chat", "command-r",
         "https://api.cohere.com", 0},
        {"madeup/x", SB_PROVIDER_UNSUPPORTED, "madeup", "x", NULL, 1},
        {"gpt-4o", SB_PROVIDER_OPENAI, "openai", "gpt-4o", "https://api.openai.com/v1", 0},
    };
    for (size_t i = 0; i < sizeof table / sizeof *table; i++) {
        char yaml[512];
        snprintf(yaml, sizeof yaml,
                 "model_list:\n  - model_name: m\n    litellm_params:\n"
                 "      model: %s\n",
                 table[i].model);
        struct diags d;
        struct sb_config *cfg = expect_ok(yaml, &d);
        const struct sb_deployment *x = &cfg->deployments[0];
        assert_string_equal(x->litellm_model, table[i].model);
        assert_int_equal(x->provider, table[i].kind);
        assert_string_equal(x->provider_name, table[i].name);
        assert_string_equal(x->upstream_model, table[i].upstream);
        if (table[i].api_base)
            assert_string_equal(x->api_base, table[i].api_base);
        else
            assert_null(x->api_base);
        assert_int_equal(x->disabled, table[i].disabled);
        if (table[i].kind == SB_PROVIDER_VERTEX) { /* no project, no credentials */
            assert_has(&d, "vertex_ai needs vertex_project");
        } else if (table[i].kind == SB_PROVIDER_BEDROCK) {
            assert_has(&d, "bedrock needs AWS credentials");
        } else if (table[i].disabled) {
            char want[128];
            snprintf(want, sizeof want, "provider '%s' is not supported yet", table[i].name);
            assert_string_equal(x->disabled_reason, want);
            assert_has(&d, want);
            assert_int_equal(d.warnings, 1);
        } else if (!strchr(table[i].model, '/')) {
            assert_has(&d, "W t.yaml:4: litellm_params.model has no provider prefix");
            assert_int_equal(d.warnings, 1);
        } else {
            assert_int_equal(d.warnings, 0);
        }
        sb_config_free(cfg);
        diags_free(&d);
    }

    /* A given api_base wins; ollama's root URL gets its OpenAI-compatible /v1. */
    struct diags d;
    struct sb_config *cfg =
        expect_ok("model_list:\n"
                  "  - model_name: a\n"
                  "    litellm_params: {model: groq/x, api_base: 'https://gw.example/groq//'}\n"
                  "  - model_name: b\n"
                  "    litellm_params: {model: ollama/x, api_base: 'http://gpu:11434'}\n"
                  "  - model_name: c\n"
                  "    litellm_params: {model: ollama_chat/x, api_base: 'http://gpu:11434/v1/'}\n"
                  "  - model_name: d\n"
                  "    litellm_params: {model: hosted_vllm/x, api_base: 'HTTP://vllm:8000/v1'}\n",
                  &d);
    assert_string_equal(cfg->deployments[0].api_base, "https://gw.example/groq");
    assert_string_equal(cfg->deployments[1].api_base, "http://gpu:11434/v1");
    assert_string_equal(cfg->deployments[2].api_base, "http://gpu:11434/v1");
    assert_string_equal(cfg->deployments[3].api_base, "HTTP://vllm:8000/v1");
    assert_int_equal(cfg->deployments[3].provider, SB_PROVIDER_OPENAI);
    sb_config_free(cfg);
    diags_free(&d);

    expect_error(
        "model_list:\n  - model_name: m\n    litellm_params:\n      model: hosted_vllm/x\n",
        "E t.yaml:4: litellm_params.api_base is required for 'hosted_vllm' models");
}

static void test_azure(void **state)
{
    (void)state;
    fake_env = NULL;
    expect_error("model_list:\n  - model_name: m\n    litellm_params:\n"
                 "      model: azure/dep\n      api_key: k\n",
                 "E t.yaml:4: litellm_params.api_base is required for 'azure' models");
    struct diags d;
    struct sb_config *cfg = expect_ok("model_list:\n  - model_name: m\n    litellm_params:\n"
                                      "      model: azure/my-dep\n"
                                      "      api_base: https://r.openai.azure.com/\n",
                                      &d);
    const struct sb_deployment *x = &cfg->deployments[0];
    assert_int_equal(x->provider, SB_PROVIDER_AZURE);
    assert_string_equal(x->upstream_model, "my-dep");
    assert_string_equal(x->api_base, "https://r.openai.azure.com");
    assert_string_equal(x->api_version, "2024-10-21");
    assert_false(x->disabled);
    sb_config_free(cfg);
    diags_free(&d);

    /* An api_base from an unset variable disables instead of failing. */
    cfg = expect_ok("model_list:\n  - model_name: m\n    litellm_params:\n"
                    "      model: azure/my-dep\n      api_base: os.environ/AZURE_API_BASE\n",
                    &d);
    assert_true(cfg->deployments[0].disabled);
    assert_string_equal(cfg->deployments[0].disabled_reason,
                        "environment variable AZURE_API_BASE is not set");
    sb_config_free(cfg);
    diags_free(&d);
}

/* ---- YAML features and limits ------------------------------------------------------------ */

static void test_anchors_and_merges(void **state)
{
    (void)state;
    fake_env = NULL;
    struct diags d;
    struct sb_config *cfg = expect_ok("defaults: &defaults\n"
                                      "  timeout: 30\n"
                                      "  max_retries: 2\n"
                                      "info: &info {mode: chat, p: 0.1, nested: {a: [1, 2]}}\n"
                                      "model_list:\n"
                                      "  - model_name: a\n"
                                      "    litellm_params:\n"
                                      "      <<: *defaults\n"
                                      "      model: openai/a\n"
                                      "      timeout: 10\n"
                                      "    model_info: *info\n"
                                      "  - &b\n"
                                      "    model_name: b\n"
                                      "    litellm_params: {<<: [*defaults], model: openai/b}\n"
                                      "  - *b\n",
                                      &d);
    assert_int_equal(cfg->n_deployments, 3);
    assert_true(cfg->deployments[0].timeout_s == 10);
    assert_int_equal(cfg->deployments[0].max_retries, 2);
    assert_string_equal(cfg->deployments[0].model_info_json,
                        "{\"mode\":\"chat\",\"p\":0.1,\"nested\":{\"a\":[1,2]}}");
    assert_true(cfg->deployments[1].timeout_s == 30);
    assert_string_equal(cfg->deployments[2].model_name, "b");
    assert_int_equal(cfg->deployments[2].line, 12);
    assert_int_equal(cfg->n_model_names, 2);
    sb_config_free(cfg);
    diags_free(&d);

    expect_error("a: &x [1]\nmodel_list:\n  - model_name: m\n    litellm_params: {<<: *x}\n",
                 "E t.yaml:1: a '<<' merge value must be a mapping or a list of mappings");
    /* An alias to the node being defined is unknown: the tree cannot loop. */
    expect_error("a: &x [*x]\n", "E t.yaml:1: unknown YAML alias '*x'");
}

static void test_alias_bomb(void **state)
{
    (void)state;
    fake_env = NULL;
    expect_error("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                 "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                 "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                 "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                 "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                 "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                 "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                 "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                 "model_list:\n"
                 "  - model_name: m\n"
                 "    litellm_params: {model: openai/x}\n"
                 "    model_info: {bomb: *h}\n",
                 "E t.yaml:1: model_info has more than 10000 values");

    /* Merges of merges: each level multiplies the work by ten. */
    struct sb_buf b;
    sb_buf_init(&b, 1 << 16);
    sb_buf_append_str(&b, "a: &a {");
    for (int i = 0; i < 50; i++)
        sb_buf_printf(&b, "%sk%d: 1", i ? ", " : "", i);
    sb_buf_append_str(&b, "}\n");
    for (char l = 'b'; l <= 'f'; l++) {
        sb_buf_printf(&b, "%c: &%c {<<: [", l, l);
        for (int i = 0; i < 10; i++)
            sb_buf_printf(&b, "%s*%c", i ? ", " : "", l - 1);
        sb_buf_append_str(&b, "]}\n");
    }
    sb_buf_append_str(&b, "model_list:\n  - model_name: m\n    litellm_params: *f\n");
    expect_error(b.data, "the configuration is too complex (aliases expand too far)");
    sb_buf_free(&b);

    /* Nesting is capped. */
    char deep[400];
    size_t o = 0;
    o += (size_t)snprintf(deep, sizeof deep, "a: ");
    for (int i = 0; i < 100; i++)
        deep[o++] = '[';
    deep[o] = '\0';
    expect_error(deep, "E t.yaml:1: YAML nested deeper than 64 levels");
}

static void test_size_limits_and_files(void **state)
{
    (void)state;
    fake_env = NULL;
    size_t big = 4u * 1024 * 1024 + 1;
    char *yaml = malloc(big + 1);
    assert_non_null(yaml);
    memset(yaml, '#', big);
    yaml[big] = '\0';
    struct sb_config *cfg = (void *)1;
    struct diags d;
    memset(&d, 0, sizeof d);
    sb_buf_init(&d.text, 1 << 20);
    assert_int_equal(sb_config_load_string(yaml, big, "big", &cfg, on_diag, &d, fake_getenv), -1);
    assert_null(cfg);
    assert_has(&d, "E big:0: the configuration is larger than 4 MiB");
    diags_free(&d);

    char path[] = "/tmp/sb-config-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, yaml, big), (ssize_t)big);
    close(fd);
    memset(&d, 0, sizeof d);
    sb_buf_init(&d.text, 1 << 20);
    assert_int_equal(sb_config_load_file(path, &cfg, on_diag, &d, fake_getenv), -1);
    assert_null(cfg);
    char want[128];
    snprintf(want, sizeof want, "E %s:0: the configuration is larger than 4 MiB", path);
    assert_has(&d, want);
    diags_free(&d);

    /* The same file, small and valid, loads with its path as the name. */
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    static const char ok[] = "model_list:\n  - model_name: m\n    litellm_params: {model: x/y}\n";
    assert_int_equal(write(fd, ok, sizeof ok - 1), (ssize_t)(sizeof ok - 1));
    close(fd);
    memset(&d, 0, sizeof d);
    sb_buf_init(&d.text, 1 << 20);
    assert_int_equal(sb_config_load_file(path, &cfg, on_diag, &d, fake_getenv), 0);
    assert_string_equal(cfg->path, path);
    snprintf(want, sizeof want, "W %s:3: provider 'x' is not supported yet", path);
    assert_has(&d, want);
    sb_config_free(cfg);
    diags_free(&d);
    unlink(path);
    free(yaml);

    memset(&d, 0, sizeof d);
    sb_buf_init(&d.text, 1 << 20);
    assert_int_equal(sb_config_load_file("/nonexistent/sb.yaml", &cfg, on_diag, &d, NULL), -1);
    assert_has(&d, "E /nonexistent/sb.yaml:0: cannot open: No such file or directory");
    diags_free(&d);

    /* Without a callback errors are still counted. */
    assert_int_equal(sb_config_load_string("server: 1\n", 10, NULL, &cfg, NULL, NULL, NULL), -1);
    assert_null(cfg);
}

/* ---- The example config --------------------------------------------------------------- */

static void test_upstream_http1(void **state)
{
    (void)state;
    fake_env = NULL;
    struct diags d;
    struct sb_config *cfg = expect_ok("model_list: []\n", &d);
    assert_string_equal(cfg->server.upstream_http1, "native");
    sb_config_free(cfg);
    diags_free(&d);
    cfg = expect_ok("server:\n  upstream_http1: curl\n", &d);
    assert_string_equal(cfg->server.upstream_http1, "curl");
    sb_config_free(cfg);
    diags_free(&d);
    cfg = NULL;
    assert_int_equal(load("server:\n  port: 4000\n  upstream_http1: fast\n", &cfg, &d), -1);
    assert_null(cfg);
    assert_has(&d, "t.yaml:3: server.upstream_http1 must be native or curl");
    diags_free(&d);
}

static void test_router_settings(void **state)
{
    (void)state;
    fake_env = NULL;
    struct diags d;
    struct sb_config *cfg = expect_ok("model_list: []\n", &d);
    assert_int_equal(cfg->router.num_retries, 0);
    assert_false(cfg->router.num_retries_set);
    assert_int_equal(cfg->router.allowed_fails, 3);
    assert_true(cfg->router.cooldown_time_s == 5);
    assert_int_equal(cfg->router.n_fallbacks, 0);
    sb_config_free(cfg);
    diags_free(&d);

    cfg = expect_ok("model_list:\n"
                    "  - {model_name: a, litellm_params: {model: openai/x}}\n"
                    "  - {model_name: b, litellm_params: {model: openai/y}}\n"
                    "router_settings:\n"
                    "  num_retries: 2\n"
                    "  allowed_fails: 1\n"
                    "  cooldown_time: 0.5\n"
                    "  retry_after: 0\n"
                    "  fallbacks: [{a: [b, c]}, {b: a}]\n"
                    "litellm_settings:\n"
                    "  default_fallbacks: [b]\n",
                    &d);
    assert_int_equal(cfg->router.num_retries, 2);
    assert_int_equal(cfg->router.allowed_fails, 1);
    assert_true(cfg->router.cooldown_time_s == 0.5);
    assert_int_equal(cfg->router.n_fallbacks, 2);
    assert_string_equal(cfg->router.fallbacks[0].from, "a");
    assert_int_equal(cfg->router.fallbacks[0].n_to, 2);
    assert_string_equal(cfg->router.fallbacks[0].to[1], "c");
    assert_int_equal(cfg->router.fallbacks[1].n_to, 1);
    assert_string_equal(cfg->router.fallbacks[1].to[0], "a");
    assert_int_equal(cfg->router.n_default_fallbacks, 1);
    assert_has(&d, "W t.yaml:9: fallbacks: 'c' is not a model_name of model_list");
    sb_config_free(cfg);
    diags_free(&d);

    cfg = expect_ok("model_list:\n"
                    "  - {model_name: a, litellm_params: {model: openai/x, order: 2, weight: 3}}\n"
                    "  - {model_name: a, litellm_params: {model: openai/y, rpm: 10}}\n"
                    "router_settings:\n"
                    "  routing_strategy: cost-based-routing\n"
                    "  model_group_alias: {gpt-4: a}\n",
                    &d);
    assert_string_equal(cfg->router.routing_strategy, "cost-based-routing");
    assert_lacks(&d, "routing_strategy");
    assert_int_equal(cfg->deployments[0].order, 2);
    assert_true(cfg->deployments[0].weight_set);
    assert_false(cfg->deployments[1].weight_set);
    assert_int_equal(cfg->deployments[1].order, 0);
    assert_int_equal(cfg->router.n_group_alias, 1);
    assert_string_equal(cfg->router.group_alias_from[0], "gpt-4");
    assert_string_equal(cfg->router.group_alias_to[0], "a");
    sb_config_free(cfg);
    diags_free(&d);

    cfg = expect_ok("router_settings:\n"
                    "  retry_policy: {RateLimitErrorRetries: 0, TimeoutErrorRetries: 4, Other: 1}\n"
                    "  context_window_fallbacks: [{a: [b]}]\n"
                    "  content_policy_fallbacks: [{a: c}]\n"
                    "  max_fallbacks: 1\n",
                    &d);
    assert_int_equal(cfg->router.retries_rate_limit, 0);
    assert_int_equal(cfg->router.retries_timeout, 4);
    assert_int_equal(cfg->router.retries_server, -1); /* not given */
    assert_int_equal(cfg->router.max_fallbacks, 1);
    assert_int_equal(cfg->router.n_context_window_fallbacks, 1);
    assert_string_equal(cfg->router.content_policy_fallbacks[0].to[0], "c");
    assert_has(&d, "W t.yaml:2: unknown key 'router_settings.retry_policy.Other' ignored");
    assert_has(&d, "W t.yaml:3: fallbacks: 'a' is not a model_name of model_list");
    sb_config_free(cfg);
    diags_free(&d);

    cfg = NULL;
    assert_int_equal(load("router_settings:\n  routing_strategy: fastest\n", &cfg, &d), -1);
    assert_has(&d, "t.yaml:2: router_settings.routing_strategy must be simple-shuffle");
    diags_free(&d);

    cfg = NULL;
    assert_int_equal(load("router_settings:\n  num_retries: 11\n  cooldown_time: -1\n"
                          "  fallbacks: {a: b}\n  default_fallbacks: {x: 1}\n",
                          &cfg, &d),
                     -1);
    assert_has(&d, "t.yaml:2: router_settings.num_retries must be an integer in 0..10");
    assert_has(&d, "t.yaml:3: router_settings.cooldown_time must be a number > 0");
    assert_has(&d, "t.yaml:4: router_settings.fallbacks must be a list");
    assert_has(&d, "t.yaml:5: router_settings.default_fallbacks must be a list of model names");
    diags_free(&d);
}

static struct sb_config *load_example(struct diags *d)
{
    struct sb_config *cfg = NULL;
    memset(d, 0, sizeof *d);
    sb_buf_init(&d->text, 1 << 20);
    sb_buf_append_str(&d->text, "");
    int rc = sb_config_load_file(SB_SOURCE_DIR "/examples/switchboard.yaml", &cfg, on_diag, d,
                                 fake_getenv);
    if (rc != 0)
        fail_msg("example config failed:\n%s", d->text.data);
    return cfg;
}

static const struct sb_deployment *find(const struct sb_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->n_deployments; i++) {
        if (strcmp(cfg->deployments[i].model_name, name) == 0)
            return &cfg->deployments[i];
    }
    fail_msg("no deployment %s", name);
    return NULL;
}

static void test_example_config(void **state)
{
    (void)state;
    fake_env = NULL;
    struct diags d;
    struct sb_config *cfg = load_example(&d);
    assert_int_equal(d.errors, 0);
    assert_null(cfg->master_key);
    assert_string_equal(cfg->server.host, "127.0.0.1");
    assert_int_equal(cfg->server.port, 4000);
    const struct sb_deployment *demo = find(cfg, "demo");
    assert_false(demo->disabled);
    assert_int_equal(demo->provider, SB_PROVIDER_OPENAI);
    assert_string_equal(demo->upstream_model, "demo");
    assert_string_equal(demo->api_base, "http://127.0.0.1:4010/v1");
    assert_string_equal(demo->api_key, "demo-key");
    assert_true(find(cfg, "gpt-4o-mini")->disabled);
    assert_string_equal(find(cfg, "gpt-4o-mini")->disabled_reason,
                        "environment variable OPENAI_API_KEY is not set");
    assert_true(find(cfg, "text-embedding-3-small")->disabled);
    assert_true(find(cfg, "llama-3.1-8b")->disabled);
    assert_true(find(cfg, "gpt-4o")->disabled);
    assert_true(find(cfg, "claude-sonnet")->disabled);
    assert_int_equal(find(cfg, "claude-sonnet")->provider, SB_PROVIDER_ANTHROPIC);
    assert_true(find(cfg, "gemini-flash")->disabled);
    assert_string_equal(cfg->model_names[0], "demo");
    assert_int_equal(cfg->n_model_names, cfg->n_deployments);
    assert_has(&d, "environment variable OPENAI_API_KEY is not set");
    sb_config_free(cfg);
    diags_free(&d);

    static const struct env_var env[] = {{"OPENAI_API_KEY", "sk-test"},
                                         {"GROQ_API_KEY", "gsk-test"},
                                         {"AZURE_API_KEY", "az-test"},
                                         {"AZURE_API_BASE", "https://r.openai.azure.com"},
                                         {"ANTHROPIC_API_KEY", "sk-ant-test"},
                                         {"GEMINI_API_KEY", "gem-test"},
                                         {NULL, NULL}};
    fake_env = env;
    cfg = load_example(&d);
    assert_int_equal(d.errors, 0);
    assert_int_equal(d.warnings, 0);
    for (size_t i = 0; i < cfg->n_deployments; i++)
        assert_false(cfg->deployments[i].disabled);
    assert_string_equal(find(cfg, "gpt-4o-mini")->api_key, "sk-test");
    assert_string_equal(find(cfg, "gpt-4o-mini")->api_base, "https://api.openai.com/v1");
    assert_string_equal(find(cfg, "llama-3.1-8b")->api_base, "https://api.groq.com/openai/v1");
    assert_int_equal(find(cfg, "gpt-4o")->provider, SB_PROVIDER_AZURE);
    assert_string_equal(find(cfg, "gpt-4o")->api_base, "https://r.openai.azure.com");
    sb_config_free(cfg);
    diags_free(&d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_config),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_upstream_http1),
        cmocka_unit_test(test_router_settings),
        cmocka_unit_test(test_host_follows_master_key),
        cmocka_unit_test(test_environ),
        cmocka_unit_test(test_errors_with_lines),
        cmocka_unit_test(test_numbers),
        cmocka_unit_test(test_unknown_key_warnings),
        cmocka_unit_test(test_canary_never_leaks),
        cmocka_unit_test(test_provider_prefixes),
        cmocka_unit_test(test_azure),
        cmocka_unit_test(test_anchors_and_merges),
        cmocka_unit_test(test_alias_bomb),
        cmocka_unit_test(test_size_limits_and_files),
        cmocka_unit_test(test_example_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

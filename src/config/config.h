/* Configuration: LiteLLM-compatible YAML (model_list, litellm_params, model_info,
 * general_settings) plus a `server:` section of switchboard's own.
 *
 * A LiteLLM config must load: unknown keys are warnings with file:line and are otherwise
 * ignored. A value of the wrong type or out of range is an error with file:line. Any string
 * value may be "os.environ/NAME", resolved at load time. Loading never prints: warnings and
 * errors go to the caller's diagnostics callback, and the message never contains the value
 * of a secret (api_key, master_key), only its key and position.
 *
 * The loaded struct is immutable and owned by the caller (sb_config_free). Thread-safe to
 * read from any thread once loaded. */
#ifndef SB_CONFIG_CONFIG_H
#define SB_CONFIG_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sb_provider_kind {
    SB_PROVIDER_OPENAI,    /* "openai/<model>" and any OpenAI-compatible server via api_base */
    SB_PROVIDER_AZURE,     /* "azure/<deployment>" */
    SB_PROVIDER_ANTHROPIC, /* "anthropic/<model>": Messages API */
    SB_PROVIDER_GEMINI,    /* "gemini/<model>": Google AI Studio, API key */
    SB_PROVIDER_VERTEX,    /* "vertex_ai/<model>": Vertex AI, project + location + token */
    SB_PROVIDER_BEDROCK,   /* "bedrock/<model id>": Converse, SigV4 */
    SB_PROVIDER_COHERE,    /* "cohere/<model>", "cohere_chat/<model>": v2 chat */
    /* Known LiteLLM prefixes whose dialects are not built yet: the config loads them, the
     * deployment is marked disabled with a reason saying so. */
    SB_PROVIDER_UNSUPPORTED,
};

struct sb_deployment {
    char *model_name;    /* the public alias clients send */
    char *litellm_model; /* litellm_params.model as written, e.g. "openai/gpt-4o" */
    enum sb_provider_kind provider;
    char *provider_name;  /* the prefix: "openai", "azure", "groq", ... */
    char *upstream_model; /* after the prefix: "gpt-4o"; for azure the deployment name */
    char *api_base;       /* NULL: the provider's default (openai: https://api.openai.com/v1) */
    char *api_key;        /* NULL: none (e.g. a local vLLM) */
    char *api_version;    /* azure */
    /* vertex_ai: litellm_params.vertex_project / vertex_location (else VERTEXAI_PROJECT /
     * VERTEXAI_LOCATION, location default us-central1); the bearer token is api_key, else
     * VERTEXAI_ACCESS_TOKEN or GOOGLE_OAUTH_ACCESS_TOKEN. */
    char *vertex_project;
    char *vertex_location;
    /* bedrock: aws_region_name, aws_access_key_id, aws_secret_access_key, aws_session_token
     * (else AWS_REGION / AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
     * AWS_SESSION_TOKEN). An api_key is a Bedrock API key (Bearer) instead of SigV4. */
    char *aws_region;
    char *aws_access_key_id;
    char *aws_secret_access_key;
    char *aws_session_token;
    double timeout_s;        /* total time for a non-streaming call; default 600 */
    double stream_timeout_s; /* longest silence inside a stream; default = timeout_s */
    int max_retries;         /* default 0 */
    int64_t rpm;             /* 0: unlimited */
    int64_t tpm;
    double weight;         /* default 1 */
    char *model_info_json; /* model_info serialized as JSON, or NULL */
    char **access_groups;  /* model_info.access_groups */
    size_t n_access_groups;
    bool disabled;         /* e.g. its os.environ/ variable is unset */
    char *disabled_reason; /* when disabled: why, without any secret value */
    int line;              /* line of the entry in the config file */
    int order;             /* litellm_params.order: priority tier, 1 first; 0: not given (last) */
    bool weight_set; /* weight was given (simple-shuffle then weighs by it, else by rpm/tpm) */
    double ttft_timeout_s;    /* litellm_params.ttft_timeout: wait for the first byte; 0: none */
    int64_t max_input_tokens; /* model_info.max_input_tokens; 0: unknown */
    double cost_in;  /* input_cost_per_token (litellm_params, else model_info); < 0: unknown */
    double cost_out; /* output_cost_per_token */
    bool timeout_set;
    bool stream_timeout_set;
    char **tags; /* litellm_params.tags, for tag routing */
    size_t n_tags;
};

struct sb_server_config {
    char *host;                 /* default "127.0.0.1"... see config.c */
    int port;                   /* default 4000 */
    int workers;                /* 0: number of online CPUs */
    int64_t max_header_bytes;   /* default 16384 */
    int64_t max_request_bytes;  /* from general_settings.max_request_size_mb; default 32 MiB */
    int64_t max_response_bytes; /* upstream response body cap; default 64 MiB */
    int64_t max_event_bytes;    /* one upstream SSE event; default 4 MiB */
    int64_t header_timeout_ms;  /* default 10000 */
    int64_t body_timeout_ms;    /* default 60000 */
    int64_t idle_timeout_ms;    /* keep-alive idle; default 60000 */
    int64_t drain_timeout_ms;   /* on SIGTERM; default 30000 */
    int64_t connect_timeout_ms; /* upstream connect; default 10000 */
    int64_t max_connections;    /* per worker; default 16384 */
    char *access_log;           /* "stdout" (default), "stderr", "off", or a file path */
    char *log_level;            /* "info" (default) */
    /* Plain-http upstreams with a numeric host: "native" (default: the gateway's own
     * HTTP/1.1 client) or "curl" (libcurl for every upstream). https always uses libcurl. */
    char *upstream_http1;
    /* Virtual keys and spend: where the per-worker spend journals live (default: next to the
     * SQLite file, "<file>.journal"; "./switchboard-journal" for PostgreSQL), and the output
     * tokens a request that gives no max_tokens is assumed to use when its budget is
     * reserved (default 4096). */
    char *journal_dir;
    int64_t reserve_output_tokens;
    /* general_settings.sync_interval_ms: how often the store thread reads the records and
     * spend that other instances sharing the database changed (default 1000; 0: never). */
    int64_t sync_interval_ms;
};

/* `fallbacks: [{gpt-4o: [gpt-4o-mini, other]}]`: when every attempt on `from` failed. */
struct sb_fallback {
    char *from;
    char **to;
    size_t n_to;
    int line;
};

/* router_settings / litellm_settings (either section; LiteLLM accepts both). */
struct sb_router_config {
    int num_retries;        /* retries within a model group; default 0 (LiteLLM's proxy) */
    double retry_after_s;   /* least wait before retrying the same deployment; default 0 */
    int allowed_fails;      /* failures in a minute before a cooldown; default 3 */
    double cooldown_time_s; /* default 5 */
    struct sb_fallback *fallbacks;
    size_t n_fallbacks;
    char **default_fallbacks; /* for aliases without their own fallbacks */
    size_t n_default_fallbacks;
    bool num_retries_set; /* given in the config (else the deployments' max_retries apply) */
    /* routing_strategy: "simple-shuffle" (default, LiteLLM's), "round-robin", "least-busy",
     * "latency-based-routing". */
    char *routing_strategy;
    /* retry_policy: retries per error class, -1 where not given (num_retries applies to
     * timeouts, rate limits and server errors; 0 to the others). */
    int retries_auth, retries_timeout, retries_rate_limit, retries_content_policy, retries_server,
        retries_bad_request;
    /* Fallbacks chosen by the provider's error: a context-length error, a content filter. */
    struct sb_fallback *context_window_fallbacks;
    size_t n_context_window_fallbacks;
    struct sb_fallback *content_policy_fallbacks;
    size_t n_content_policy_fallbacks;
    int max_fallbacks;         /* default 5 */
    bool enable_tag_filtering; /* route by the request's tags (deployments' litellm_params.tags) */
    double timeout_s;          /* router_settings.timeout / litellm_settings.request_timeout:
                                  for deployments without their own; 0: none */
    /* allowed_fails_policy: failures of one class before a cooldown, -1 where not given. */
    int allowed_auth, allowed_timeout, allowed_rate_limit, allowed_content_policy, allowed_server,
        allowed_bad_request;
    /* routing_rules: [{model: alias or "*", if: {query}, then: alias}], as a JSON array (the
     * queries are validated at load; src/router/rules.h). NULL: none. */
    char *routing_rules_json;
    /* model_group_alias: {name: alias}, a second name for an alias. */
    char **group_alias_from;
    char **group_alias_to;
    size_t n_group_alias;
};

struct sb_config {
    char *path; /* the file it was loaded from, or the name given */
    struct sb_deployment *deployments;
    size_t n_deployments;
    /* Distinct model_name values, in first-seen order, disabled ones included. */
    char **model_names;
    size_t n_model_names;
    char *master_key; /* NULL: no auth (then loopback only) */
    /* general_settings.database_url: "sqlite:///path", "postgresql://..."; NULL: the default
     * "sqlite://switchboard.db" when a master_key is set (virtual keys need one), else no
     * database at all. */
    char *database_url;
    /* Redis for the limits and budgets several instances share: general_settings.redis_url
     * ("redis://[[user]:password@]host[:port][/db]"), or LiteLLM's router_settings.redis_host,
     * redis_port, redis_password. NULL host: no Redis (limits per instance). */
    char *redis_url;
    char *redis_host;
    int64_t redis_port;
    char *redis_password;
    int64_t redis_timeout_ms; /* general_settings.redis_timeout_ms (default 100) */
    struct sb_router_config router;
    struct sb_server_config server;
};

enum sb_diag_level { SB_DIAG_WARNING, SB_DIAG_ERROR };
/* `file` and `line` locate the problem (line 0: not tied to a line). */
typedef void (*sb_config_diag_cb)(void *ud, enum sb_diag_level level, const char *file, int line,
                                  const char *msg);

/* Loads and validates. Returns 0 and sets *out, or -1 after reporting at least one error.
 * `getenv_fn` resolves os.environ/NAME (NULL: getenv); tests pass their own. */
int sb_config_load_file(const char *path, struct sb_config **out, sb_config_diag_cb diag, void *ud,
                        const char *(*getenv_fn)(const char *));
int sb_config_load_string(const char *yaml, size_t len, const char *name, struct sb_config **out,
                          sb_config_diag_cb diag, void *ud, const char *(*getenv_fn)(const char *));
void sb_config_free(struct sb_config *cfg);

/* Index of `name` in cfg->model_names, or -1. */
int sb_config_model_index(const struct sb_config *cfg, const char *name, size_t len);

#endif

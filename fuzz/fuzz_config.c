/* Loads arbitrary bytes as a configuration. Some os.environ/ names resolve, others do not,
 * so both the resolved and the disabled paths run. The resolved value carries a control
 * byte that no diagnostic may ever contain: a message that shows one has leaked a value. */
#include "config/config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "\x01secret\x01"

static const char *fuzz_getenv(const char *name)
{
    static const char *const set[] = {"OPENAI_API_KEY", "A", "KEY", "MASTER_KEY", "PORT"};
    for (size_t i = 0; i < sizeof set / sizeof *set; i++) {
        if (strcmp(name, set[i]) == 0)
            return strcmp(name, "PORT") == 0 ? "4000" : SECRET;
    }
    if (strcmp(name, "EMPTY") == 0)
        return "";
    return NULL;
}

static void on_diag(void *ud, enum sb_diag_level level, const char *file, int line, const char *msg)
{
    int *errors = ud;
    if (level == SB_DIAG_ERROR)
        (*errors)++;
    if (!file || line < 0 || !msg)
        abort();
    for (const char *p = msg; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            abort();
    }
}

static void check(const struct sb_config *cfg)
{
    for (size_t i = 0; i < cfg->n_deployments; i++) {
        const struct sb_deployment *d = &cfg->deployments[i];
        if (!d->model_name || !d->litellm_model || !d->provider_name || !d->upstream_model)
            abort();
        if (d->disabled != (d->disabled_reason != NULL))
            abort();
        if (!d->disabled && d->provider != SB_PROVIDER_UNSUPPORTED && !d->api_base)
            abort();
        if (sb_config_model_index(cfg, d->model_name, strlen(d->model_name)) < 0)
            abort();
        if (!(d->timeout_s > 0) || !(d->stream_timeout_s > 0) || !(d->weight > 0))
            abort();
    }
    if (!cfg->server.host || !cfg->server.access_log || !cfg->server.log_level)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sb_config *cfg = NULL;
    int errors = 0;
    int rc = sb_config_load_string((const char *)data, size, "fuzz.yaml", &cfg, on_diag, &errors,
                                   fuzz_getenv);
    if ((rc == 0) != (cfg != NULL) || (rc != 0 && errors == 0) || (rc == 0 && errors != 0))
        abort();
    if (cfg)
        check(cfg);
    sb_config_free(cfg);
    return 0;
}

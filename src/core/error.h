/* The gateway's one error type, rendered by one function per client dialect.
 *
 * `type`, `code` and `param` point at static strings (or NULL for JSON null); `message` is a
 * copy. Messages must never contain a secret: they are sent to clients and logged. */
#ifndef SB_CORE_ERROR_H
#define SB_CORE_ERROR_H

#include "core/buf.h"

struct sb_error {
    int status;
    const char *type;
    const char *code;
    const char *param;
    char message[512];
};

void sb_error_set(struct sb_error *e, int status, const char *type, const char *code,
                  const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* {"error":{"message":…,"type":…,"param":…,"code":…}} — the OpenAI envelope. */
int sb_error_render_openai(const struct sb_error *e, struct sb_buf *out);

/* {"type":"error","error":{"type":…,"message":…}} — Anthropic's envelope, for /v1/messages.
 * The type follows the status (400 invalid_request_error, 401 authentication_error, 429
 * rate_limit_error, 529 overloaded_error, ...). */
int sb_error_render_anthropic(const struct sb_error *e, struct sb_buf *out);
/* Anthropic's error type for an HTTP status. */
const char *sb_error_anthropic_type(int status);
/* The reason phrase for a status code ("Bad Request"); "Unknown" for codes it does not know. */
const char *sb_http_reason(int status);

#endif

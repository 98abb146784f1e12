#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

void sb_error_set(struct sb_error *e, int status, const char *type, const char *code,
                  const char *param, const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    e->code = code;
    e->param = param;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    if (n < 0)
        e->message[0] = '\0';
}

static int append_nullable(struct sb_buf *out, const char *s)
{
    if (!s)
        return sb_buf_append_str(out, "null");
    return sb_buf_append_json_str(out, s, __builtin_strlen(s));
}

int sb_error_render_openai(const struct sb_error *e, struct sb_buf *out)
{
    int rc = sb_buf_append_str(out, "{\"error\":{\"message\":");
    rc = rc ? rc : sb_buf_append_json_str(out, e->message, __builtin_strlen(e->message));
    rc = rc ? rc : sb_buf_append_str(out, ",\"type\":");
    rc = rc ? rc : append_nullable(out, e->type ? e->type : "api_error");
    rc = rc ? rc : sb_buf_append_str(out, ",\"param\":");
    rc = rc ? rc : append_nullable(out, e->param);
    rc = rc ? rc : sb_buf_append_str(out, ",\"code\":");
    rc = rc ? rc : append_nullable(out, e->code);
    rc = rc ? rc : sb_buf_append_str(out, "}}");
    return rc;
}

const char *sb_error_anthropic_type(int status)
{
    switch (status) {
    case 401:
        return "authentication_error";
    case 402:
        return "billing_error";
    case 403:
        return "permission_error";
    case 404:
        return "not_found_error";
    case 413:
        return "request_too_large";
    case 429:
        return "rate_limit_error";
    case 503:
    case 529:
        return "overloaded_error";
    case 504:
        return "timeout_error";
    default:
        return status >= 500 ? "api_error" : "invalid_request_error";
    }
}

int sb_error_render_anthropic(const struct sb_error *e, struct sb_buf *out)
{
    int rc = sb_buf_append_str(out, "{\"type\":\"error\",\"error\":{\"type\":");
    rc = rc ? rc : append_nullable(out, sb_error_anthropic_type(e->status));
    rc = rc ? rc : sb_buf_append_str(out, ",\"message\":");
    rc = rc ? rc : sb_buf_append_json_str(out, e->message, __builtin_strlen(e->message));
    rc = rc ? rc : sb_buf_append_str(out, "}}");
    return rc;
}

const char *sb_http_reason(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 402:
        return "Payment Required";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 499:
        return "Client Closed Request";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    case 529:
        return "Site Overloaded";
    default:
        return "Unknown";
    }
}

#include "core/log.h"

#include "core/buf.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Atomic int min_level = SB_LOG_INFO;

void sb_log_set_level(enum sb_log_level level)
{
    atomic_store(&min_level, (int)level);
}

int sb_log_parse_level(const char *s, enum sb_log_level *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, names[i]) == 0) {
            *out = (enum sb_log_level)i;
            return 0;
        }
    }
    return -1;
}

void sb_log(enum sb_log_level level, const char *fmt, ...)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    if ((int)level < atomic_load(&min_level))
        return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t mlen = (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1;

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char when[40];
    size_t w = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + w, sizeof when - w, ".%03ldZ", ts.tv_nsec / 1000000);

    char line[3072];
    struct sb_buf b = {.data = line, .len = 0, .cap = sizeof line, .max = sizeof line - 1};
    /* The buffer is stack memory: appends stop (and the line is cut) at its size. */
    sb_buf_append_str(&b, "{\"ts\":\"");
    sb_buf_append_str(&b, when);
    sb_buf_append_str(&b, "\",\"level\":\"");
    sb_buf_append_str(&b, names[level]);
    sb_buf_append_str(&b, "\",\"msg\":");
    sb_buf_append_json_str(&b, msg, mlen);
    sb_buf_append_str(&b, "}\n");
    if (b.len == 0 || b.data[b.len - 1] != '\n') {
        if (b.len >= sizeof line - 1)
            b.len = sizeof line - 2;
        b.data[b.len++] = '\n';
    }
    ssize_t wr = write(STDERR_FILENO, b.data, b.len);
    (void)wr;
}

/* Process log: one JSON object per line on stderr, safe from any thread.
 *
 * Never pass a provider key, a virtual key or a request body to these functions: the log is
 * shipped to places secrets must not go. Messages are truncated at 2 KiB. */
#ifndef SB_CORE_LOG_H
#define SB_CORE_LOG_H

enum sb_log_level { SB_LOG_DEBUG, SB_LOG_INFO, SB_LOG_WARN, SB_LOG_ERROR };

void sb_log_set_level(enum sb_log_level level);
/* Parses "debug", "info", "warn", "error"; returns -1 for anything else. */
int sb_log_parse_level(const char *s, enum sb_log_level *out);
void sb_log(enum sb_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sb_debug(...) sb_log(SB_LOG_DEBUG, __VA_ARGS__)
#define sb_info(...)  sb_log(SB_LOG_INFO, __VA_ARGS__)
#define sb_warn(...)  sb_log(SB_LOG_WARN, __VA_ARGS__)
#define sb_error(...) sb_log(SB_LOG_ERROR, __VA_ARGS__)

#endif

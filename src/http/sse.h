/* Server-sent events: an incremental parser for provider streams and a writer for the
 * gateway's own streams (WHATWG HTML "Server-sent events" §9.2.6 "Interpreting an event
 * stream").
 *
 * Parser rules: lines end in CRLF, LF or CR (a CR at the end of one feed followed by LF at
 * the start of the next is one line end); a leading UTF-8 BOM is skipped; "field:value"
 * with at most one space after the colon removed; a line with no colon is a field with an
 * empty value; lines starting with ':' are comments and are reported at once as comment
 * events (the text after ':' as is, leading space included); several data lines are joined
 * with '\n'; a blank line dispatches the event (an event with no data lines and an empty
 * event name is not dispatched; unlike WHATWG, a named event with no data is); "event",
 * "data", "id" (an id with a NUL is ignored; the id is per event, not carried over),
 * "retry" (ignored) are kept, other fields are ignored. Bytes arrive split
 * anywhere, down to one byte per feed. An event whose data passes max_event_bytes is an
 * error (SB_SSE_E_TOO_BIG), never a silent truncation; so is a single line longer than
 * max_event_bytes, however it was split. At end of stream, a pending event with
 * no terminating blank line is NOT dispatched (per the spec); sb_sse_parser_end() reports
 * whether such partial data was left, so a cut stream can be told from a finished one. */
#ifndef SB_HTTP_SSE_H
#define SB_HTTP_SSE_H

#include "core/buf.h"

#include <stdbool.h>
#include <stddef.h>

#define SB_SSE_E_TOO_BIG (-2)

struct sb_sse_event {
    const char *event; /* "" when no event field */
    size_t event_len;
    const char *data; /* joined data lines; for a comment, the text after ':' */
    size_t data_len;
    const char *id; /* NULL when no id field in this event */
    size_t id_len;
    bool is_comment;
};

/* Called once per dispatched event, synchronously from sb_sse_parser_feed; pointers are
 * valid only during the call and need not be NUL-terminated (use the lengths). Returning
 * non-zero stops parsing: sb_sse_parser_feed returns that value and the rest of that feed is
 * dropped. */
typedef int (*sb_sse_event_cb)(void *ud, const struct sb_sse_event *ev);

struct sb_sse_parser {
    struct sb_buf line;  /* the current, unfinished line */
    struct sb_buf data;  /* data lines of the current event */
    struct sb_buf event; /* event field of the current event */
    struct sb_buf id;
    bool has_id;
    bool has_data;
    bool last_was_cr;
    bool bom_checked;
    size_t max_event_bytes;
};

void sb_sse_parser_init(struct sb_sse_parser *p, size_t max_event_bytes);
void sb_sse_parser_free(struct sb_sse_parser *p);
/* 0 when all input was consumed; SB_SSE_E_TOO_BIG; -ENOMEM; or the callback's non-zero
 * value. After an error the parser may only be freed (or reset with sb_sse_parser_end). */
int sb_sse_parser_feed(struct sb_sse_parser *p, const char *buf, size_t len, sb_sse_event_cb cb,
                       void *ud);
/* Declares end of stream. Returns true if a partial line or undispatched event (data, event
 * name or id) was left. Discards it and makes the parser ready for a new stream. */
bool sb_sse_parser_end(struct sb_sse_parser *p);

/* Appends one event to `out`: "event: <event>\n" when event_len > 0, then one
 * "data: <line>\n" per line of data (split on '\n'; CR and CRLF also end a line, so the
 * output is always one well-formed event), then "\n". Empty data gives one "data: \n".
 * Returns 0; -EINVAL if the event name holds CR or LF; -E2BIG at out's cap or -ENOMEM, in
 * which case `out` is left as it was. */
int sb_sse_write(struct sb_buf *out, const char *event, size_t event_len, const char *data,
                 size_t data_len);

#endif

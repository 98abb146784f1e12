/* The binary framing of AWS event streams (`application/vnd.amazon.eventstream`), as
 * Bedrock's ConverseStream and InvokeModelWithResponseStream send it.
 *
 * One message, all integers big-endian:
 *
 *   total length u32 | headers length u32 | prelude CRC32 (of the 8 bytes before it)
 *   headers (headers length bytes) | payload | message CRC32 (of every byte before it)
 *
 * A header is: name length u8 (>= 1), name, value type u8, value. Value types: 0 true, 1
 * false (no bytes), 2 byte (1), 3 int16 (2), 4 int32 (4), 5 int64 (8), 6 byte array and 7
 * string (u16 length + bytes), 8 timestamp (8), 9 uuid (16). Any other type is an error.
 * The CRC is CRC-32/IEEE (zlib's crc32). Overhead is 16 bytes, so a message is >= 16 bytes.
 *
 * The decoder is incremental: bytes split anywhere go in, one callback per complete message
 * comes out (synchronously, from sb_evstream_feed). It buffers at most one message, never
 * more than max_message_bytes. The first violation poisons the decoder: that feed and every
 * later one return the same error. Not thread-safe. */
#ifndef SB_CANON_EVENTSTREAM_H
#define SB_CANON_EVENTSTREAM_H

#include "core/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SB_EVSTREAM_E_PRELUDE_CRC (-2001)
#define SB_EVSTREAM_E_MESSAGE_CRC (-2002)
#define SB_EVSTREAM_E_LENGTH      (-2003) /* total < 16, or the headers do not fit */
#define SB_EVSTREAM_E_HEADER      (-2004) /* a malformed header, or a known one too long */
#define SB_EVSTREAM_E_STOP        (-2005) /* the callback returned non-zero */
#define SB_EVSTREAM_E_TOO_BIG     (-2006) /* total > max_message_bytes */

/* Longest value kept for the four headers below (longer: SB_EVSTREAM_E_HEADER). */
#define SB_EVSTREAM_HEADER_VALUE_MAX 127

/* One message. The string headers the decoder looks for, NUL-terminated, or NULL when the
 * message does not carry them as strings. Everything is borrowed for the callback only. */
struct sb_evstream_msg {
    const char *message_type;   /* ":message-type": "event", "exception", "error" */
    const char *event_type;     /* ":event-type" */
    const char *exception_type; /* ":exception-type" */
    const char *content_type;   /* ":content-type" */
    const char *payload;
    size_t payload_len;
};

/* Returns 0 to go on; non-zero makes the feed stop with SB_EVSTREAM_E_STOP. */
typedef int (*sb_evstream_cb)(void *ud, const struct sb_evstream_msg *m);

struct sb_evstream {
    struct sb_buf buf; /* the message being assembled */
    size_t max;
    size_t need; /* total length of the current message, 0 until its prelude is read */
    int err;     /* sticky error */
};

/* max_message_bytes: the largest message accepted (values below 16 are raised to 16). */
void sb_evstream_init(struct sb_evstream *d, size_t max_message_bytes);
void sb_evstream_free(struct sb_evstream *d);
/* Returns 0, one of the SB_EVSTREAM_E_* codes, or -ENOMEM. */
int sb_evstream_feed(struct sb_evstream *d, const char *data, size_t len, sb_evstream_cb cb,
                     void *ud);
/* Whether bytes of an unfinished message are buffered (a cut stream). */
bool sb_evstream_partial(const struct sb_evstream *d);

/* Appends one message with string headers (types 7) and the payload. Names must be 1..255
 * bytes, values at most 65535. Returns 0, -EINVAL, or -E2BIG / -ENOMEM from the buffer (then
 * `out` is left as it was). */
int sb_evstream_encode(struct sb_buf *out, const char *const *header_names,
                       const char *const *header_values, size_t nheaders, const char *payload,
                       size_t len);

#endif

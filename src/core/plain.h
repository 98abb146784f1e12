/* Runs of bytes a JSON string holds as they are: no control character (< 0x20), no '"' and no
 * '\\'. Found eight bytes at a time, since the strings the gateway writes on every request
 * (journal lines, access log lines, headers) are mostly such runs. */
#ifndef SB_CORE_PLAIN_H
#define SB_CORE_PLAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Nonzero when a byte of v is zero (exact as a yes/no answer; the flagged bit positions may
 * include false ones above a true zero, never below the first). */
static inline uint64_t sb_plain_has_zero(uint64_t v)
{
    return (v - 0x0101010101010101ull) & ~v & 0x8080808080808080ull;
}

/* The end of the run of plain bytes in p[i..n) starting at i (i itself when p[i] is not
 * plain). With `del`, 0x7f ends a run too. */
static inline size_t sb_plain_run(const char *p, size_t i, size_t n, bool del)
{
    const uint64_t ones = 0x0101010101010101ull;
    while (n - i >= 8) {
        uint64_t x;
        memcpy(&x, p + i, 8);
        uint64_t special =
            ((x - ones * 0x20) & ~x & (ones * 0x80)) | sb_plain_has_zero(x ^ (ones * '"')) |
            sb_plain_has_zero(x ^ (ones * '\\')) | (del ? sb_plain_has_zero(x ^ (ones * 0x7f)) : 0);
        if (special)
            break;
        i += 8;
    }
    while (i < n) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c == '"' || c == '\\' || (del && c == 0x7f))
            break;
        i++;
    }
    return i;
}

#endif

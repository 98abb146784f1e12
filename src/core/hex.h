/* Hexadecimal digits. */
#ifndef SB_CORE_HEX_H
#define SB_CORE_HEX_H

/* The value of a hex digit (either case), or -1. */
static inline int sb_hex_val(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif

#include "json/scan.h"

#include "core/hex.h"
#include "core/plain.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

#if defined(__SSE2__) && !defined(SB_JSON_NO_SIMD)
#include <emmintrin.h>
#define SCAN_SIMD 1
#endif

#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

/* Nonzero if the 8 bytes may hold a byte a string scan must look at: '"', '\\', a control
 * character (< 0x20) or a non-ASCII byte. */
static inline uint64_t string_special(uint64_t w)
{
    return (w & HIGHS) | sb_plain_has_zero(w ^ (ONES * '"')) |
           sb_plain_has_zero(w ^ (ONES * '\\')) | ((w - ONES * 0x20) & ~w & HIGHS);
}

/* 8 bytes as a little-endian word, so the lowest byte is the first in memory. */
static inline uint64_t load_le64(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* Index (0..7) of the first flagged byte of a mask (from a load_le64 word) built by the
 * functions above. The lowest flagged byte is always a real hit: borrows only create false
 * flags above a real one. */
static inline size_t first_flagged(uint64_t m)
{
    return (size_t)__builtin_ctzll(m) >> 3;
}

#ifdef SCAN_SIMD
/* The same questions 16 bytes at a time, as a bit per byte (bit k: p[k]); exact, no false
 * flags. A signed compare with 0x20 flags both the control characters and every byte >= 0x80. */
static inline unsigned string_special16(const unsigned char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i m = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
        _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
    return (unsigned)_mm_movemask_epi8(m);
}

/* '"' or '\\'. */
static inline unsigned quote_special16(const unsigned char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i m =
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
    return (unsigned)_mm_movemask_epi8(m);
}

/* '"' or a bracket; OR-ing 0x20 folds '[' onto '{' and ']' onto '}', and no other byte lands
 * on either. */
static inline unsigned bracket_special16(const unsigned char *p)
{
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    __m128i f = _mm_or_si128(v, _mm_set1_epi8(0x20));
    __m128i m = _mm_or_si128(
        _mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
        _mm_or_si128(_mm_cmpeq_epi8(f, _mm_set1_epi8('{')), _mm_cmpeq_epi8(f, _mm_set1_epi8('}'))));
    return (unsigned)_mm_movemask_epi8(m);
}
#endif

static inline bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\n' || c == '\r' || c == '\t';
}

/* Nothing above the space is whitespace, so compact JSON costs one compare per call. */
static inline size_t skip_ws(const unsigned char *p, size_t i, size_t end)
{
    while (i < end) {
        unsigned char c = p[i];
        if (c > ' ')
            break;
        /* Pretty-printed bodies are mostly indentation, so runs of spaces go 8 at a time. */
        if (c == ' ' && end - i >= 8) {
            uint64_t w;
            memcpy(&w, p + i, 8);
            if (w == ONES * ' ') {
                i += 8;
                continue;
            }
        }
        if (!is_ws(c))
            break;
        i++;
    }
    return i;
}

/* The first byte at or after *pi that is not whitespace, with *pi moved to it; 0 at the end
 * of the input. 0 is never what the validator expects next, so the end needs no test of its
 * own, and the common case (no whitespace) costs one bounds test and one compare. */
static inline unsigned char next_byte(const unsigned char *p, size_t *pi, size_t n)
{
    size_t i = *pi;
    if (i < n && p[i] > ' ')
        return p[i];
    i = skip_ws(p, i, n);
    *pi = i;
    return i < n ? p[i] : 0;
}

static inline bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* A byte that can occur in a number: "+-.0123456789Ee". Bit k of the mask is the byte
 * 0x2b + k, so one shift and one test replace seven compares. */
static inline bool number_byte(unsigned char c)
{
    const uint64_t mask = (0x3FFULL << ('0' - 0x2b)) | (1ULL << ('+' - 0x2b)) |
                          (1ULL << ('-' - 0x2b)) | (1ULL << ('.' - 0x2b)) | (1ULL << ('E' - 0x2b)) |
                          (1ULL << ('e' - 0x2b));
    unsigned d = (unsigned)c - 0x2b;
    return d < 64 && ((mask >> d) & 1);
}

/* Four hex digits at p[i..i+4), or -1. The caller checked the bounds. */
static long hex4(const unsigned char *p, size_t i)
{
    long v = 0;
    for (size_t k = 0; k < 4; k++) {
        int h = sb_hex_val(p[i + k]);
        if (h < 0)
            return -1;
        v = (v << 4) | h;
    }
    return v;
}

/* ---- Validation ---------------------------------------------------------------------- */

/* UTF-8 sequence starting at p[i] (a byte >= 0x80), per RFC 3629 / Unicode Table 3-7: no
 * overlongs, no UTF-16 surrogates, nothing above U+10FFFF. Returns its length or 0. */
static size_t check_utf8(const unsigned char *p, size_t i, size_t n)
{
    unsigned char c = p[i];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n - i < len)
        return 0;
    if (p[i + 1] < lo || p[i + 1] > hi)
        return 0;
    for (size_t k = 2; k < len; k++)
        if (p[i + k] < 0x80 || p[i + k] > 0xBF)
            return 0;
    return len;
}

/* Everything in a string after the first byte that needs a look: escapes, controls, UTF-8.
 * p[i] is that byte. Returns the index just past the closing quote, or 0. Kept out of line
 * so the plain-ASCII scan that precedes it stays small where it is inlined. */
static size_t check_string_slow(const unsigned char *p, size_t n, size_t i)
{
    for (;;) {
        unsigned char c = p[i];
        if (c == '"')
            return i + 1;
        if (c == '\\') {
            if (n - i < 2)
                return 0;
            switch (p[i + 1]) {
            case '"':
            case '\\':
            case '/':
            case 'b':
            case 'f':
            case 'n':
            case 'r':
            case 't':
                i += 2;
                break;
            case 'u':
                /* Lone surrogate escapes are grammatical (RFC 8259 section 8.2), so they
                 * pass here; sb_json_string_copy turns them into U+FFFD. */
                if (n - i < 6 || hex4(p, i + 2) < 0)
                    return 0;
                i += 6;
                break;
            default:
                return 0;
            }
        } else if (c < 0x20) {
            return 0;
        } else if (c < 0x80) {
            i++;
        } else {
            size_t len = check_utf8(p, i, n);
            if (!len)
                return 0;
            i += len;
        }
#ifdef SCAN_SIMD
        while (n - i >= 16) {
            unsigned m = string_special16(p + i);
            if (m) {
                i += (size_t)__builtin_ctz(m);
                goto look;
            }
            i += 16;
        }
#endif
        while (n - i >= 8) {
            uint64_t m = string_special(load_le64(p + i));
            if (m) {
                i += first_flagged(m);
                goto look;
            }
            i += 8;
        }
        while (i < n && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\')
            i++;
        if (i >= n)
            return 0;
    look:;
    }
}

/* p[i] is the opening quote. Returns the index just past the closing quote, or 0 (no valid
 * string ends before n; a string always ends past index 0). Most strings are short keys and values
 * with nothing but plain ASCII, so the first block is looked at before any loop is entered. */
static inline size_t check_string(const unsigned char *p, size_t n, size_t i)
{
    i++;
#ifdef SCAN_SIMD
    while (n - i >= 16) {
        unsigned m = string_special16(p + i);
        if (m) {
            i += (size_t)__builtin_ctz(m);
            if (p[i] == '"')
                return i + 1;
            return check_string_slow(p, n, i);
        }
        i += 16;
    }
#endif
    while (n - i >= 8) {
        uint64_t m = string_special(load_le64(p + i));
        if (m) {
            i += first_flagged(m);
            if (p[i] == '"')
                return i + 1;
            return check_string_slow(p, n, i);
        }
        i += 8;
    }
    while (i < n && p[i] >= 0x20 && p[i] < 0x80 && p[i] != '"' && p[i] != '\\')
        i++;
    if (i >= n)
        return 0;
    if (p[i] == '"')
        return i + 1;
    return check_string_slow(p, n, i);
}

/* RFC 8259 section 6: -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?
 * Returns the index just past the number, or 0. */
static inline size_t check_number(const unsigned char *p, size_t n, size_t i)
{
    if (p[i] == '-')
        i++;
    if (i >= n)
        return 0;
    if (p[i] == '0') {
        i++;
    } else if (p[i] >= '1' && p[i] <= '9') {
        i++;
        while (i < n && is_digit(p[i]))
            i++;
    } else {
        return 0;
    }
    if (i < n && p[i] == '.') {
        i++;
        if (i >= n || !is_digit(p[i]))
            return 0;
        while (i < n && is_digit(p[i]))
            i++;
    }
    if (i < n && (p[i] | 0x20) == 'e') {
        i++;
        if (i < n && (p[i] == '+' || p[i] == '-'))
            i++;
        if (i >= n || !is_digit(p[i]))
            return 0;
        while (i < n && is_digit(p[i]))
            i++;
    }
    return i;
}

/* The literal at p[i], or 0. */
static inline size_t check_literal(const unsigned char *p, size_t n, size_t i, const char *lit,
                                   size_t len)
{
    if (n - i < len || memcmp(p + i, lit, len) != 0)
        return 0;
    return i + len;
}

static inline enum sb_json_type type_of(unsigned char c);

/* The validator: one pass, no recursion; the only state is a bit per open container
 * (1 = object) and, in `in_obj`, the innermost one's bit. With `idx`, it also records the root
 * span and, when the root is an object, its members (key and value spans), so a caller that
 * needs a few root keys scans the document once instead of once for validation and once per
 * lookup. Always inlined into its two callers, so the one without `idx` carries none of the
 * indexing. */
static inline __attribute__((always_inline)) int
validate_impl(const char *s, size_t n, int max_depth, struct sb_json_index *idx)
{
    size_t member_key = 0, member_key_end = 0, member_value = 0;
    const unsigned char *p = (const unsigned char *)s;
    uint64_t kinds[SB_JSON_MAX_DEPTH / 64];
    size_t depth = 0;
    bool in_obj = false;
    size_t limit = max_depth < 0 ? 0 : (size_t)max_depth;
    if (limit > SB_JSON_MAX_DEPTH)
        limit = SB_JSON_MAX_DEPTH;
    if (!s)
        return SB_JSON_BAD;
    size_t i = skip_ws(p, 0, n);
    /* Members are recorded only for a root object: at depth 1 every value ends in `after`
     * exactly once, when it is a member's value. */
    bool rec = false;
    if (idx) {
        idx->n = 0;
        idx->complete = true;
        idx->root.start = i;
        idx->root.type = i < n ? type_of(p[i]) : SB_JSON_INVALID;
        rec = idx->root.type == SB_JSON_OBJECT;
    }

value:
    if (i >= n)
        return SB_JSON_BAD;
    if (p[i] == '"') {
        i = check_string(p, n, i);
        if (!i)
            return SB_JSON_BAD;
        goto after;
    }
    switch (p[i]) {
    case '{':
        if (depth >= limit)
            return SB_JSON_BAD;
        i++;
        if (next_byte(p, &i, n) == '}') {
            i++;
            goto after; /* an empty container leaves depth and in_obj as they were */
        }
        kinds[depth / 64] |= 1ULL << (depth % 64);
        depth++;
        in_obj = true;
        goto key;
    case '[':
        if (depth >= limit)
            return SB_JSON_BAD;
        i++;
        if (next_byte(p, &i, n) == ']') {
            i++;
            goto after;
        }
        kinds[depth / 64] &= ~(1ULL << (depth % 64));
        depth++;
        in_obj = false;
        goto value;
    case '-':
    case '0':
    case '1':
    case '2':
    case '3':
    case '4':
    case '5':
    case '6':
    case '7':
    case '8':
    case '9':
        i = check_number(p, n, i);
        break;
    case 't':
        i = check_literal(p, n, i, "true", 4);
        break;
    case 'f':
        i = check_literal(p, n, i, "false", 5);
        break;
    case 'n':
        i = check_literal(p, n, i, "null", 4);
        break;
    default:
        return SB_JSON_BAD;
    }
    if (!i)
        return SB_JSON_BAD;
    goto after;

key:
    if (i >= n || p[i] != '"')
        return SB_JSON_BAD;
    if (rec && depth == 1) {
        member_key = i;
        i = check_string(p, n, i);
        member_key_end = i;
    } else {
        i = check_string(p, n, i);
    }
    if (!i || next_byte(p, &i, n) != ':')
        return SB_JSON_BAD;
    i++;
    (void)next_byte(p, &i, n);
    if (rec && depth == 1)
        member_value = i;
    goto value;

after:
    if (rec && depth == 1) {
        if (idx->n < SB_JSON_INDEX_MAX) {
            struct sb_json_member *m = &idx->members[idx->n++];
            m->key = (struct sb_json_span){member_key, member_key_end, SB_JSON_STRING};
            m->value = (struct sb_json_span){member_value, i, type_of(p[member_value])};
        } else {
            idx->complete = false;
        }
    }
    if (depth == 0) {
        if (idx)
            idx->root.end = i;
        i = skip_ws(p, i, n);
        return i == n ? 0 : SB_JSON_BAD;
    }
    unsigned char c = next_byte(p, &i, n);
    if (c == ',') {
        i++;
        (void)next_byte(p, &i, n);
        if (in_obj)
            goto key;
        goto value;
    }
    if (c != (in_obj ? '}' : ']'))
        return SB_JSON_BAD;
    i++;
    depth--;
    in_obj = depth > 0 && ((kinds[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1);
    goto after;
}

int sb_json_validate(const char *s, size_t n, int max_depth)
{
    return validate_impl(s, n, max_depth, NULL);
}

int sb_json_validate_index(const char *s, size_t n, int max_depth, struct sb_json_index *idx)
{
    return validate_impl(s, n, max_depth, idx);
}

/* ---- Skipping (no validation, never past `end`) ------------------------------------- */

/* p[i] is the opening quote. Returns the index just past the closing quote, or 0 if the
 * string is not closed before `end`. *esc tells whether it holds a backslash. */
static inline size_t skip_string(const unsigned char *p, size_t i, size_t end, bool *esc)
{
    bool seen = false;
    i++;
    for (;;) {
#ifdef SCAN_SIMD
        while (end - i >= 16) {
            unsigned m = quote_special16(p + i);
            if (m) {
                i += (size_t)__builtin_ctz(m);
                goto look;
            }
            i += 16;
        }
#endif
        while (end - i >= 8) {
            uint64_t w = load_le64(p + i);
            uint64_t m = sb_plain_has_zero(w ^ (ONES * '"')) | sb_plain_has_zero(w ^ (ONES * '\\'));
            if (m) {
                i += first_flagged(m);
                goto look;
            }
            i += 8;
        }
        while (i < end && p[i] != '"' && p[i] != '\\')
            i++;
        if (i >= end)
            return 0;
    look:
        if (p[i] == '"') {
            if (esc)
                *esc = seen;
            return i + 1;
        }
        seen = true;
        if (end - i < 2)
            return 0;
        i += 2;
    }
}

/* What a value starting with that byte would be: one load instead of a chain of compares,
 * since the object getters ask it for every member. */
static const unsigned char value_types[256] = {
    ['{'] = SB_JSON_OBJECT, ['['] = SB_JSON_ARRAY,  ['"'] = SB_JSON_STRING, ['t'] = SB_JSON_TRUE,
    ['f'] = SB_JSON_FALSE,  ['n'] = SB_JSON_NULL,   ['-'] = SB_JSON_NUMBER, ['0'] = SB_JSON_NUMBER,
    ['1'] = SB_JSON_NUMBER, ['2'] = SB_JSON_NUMBER, ['3'] = SB_JSON_NUMBER, ['4'] = SB_JSON_NUMBER,
    ['5'] = SB_JSON_NUMBER, ['6'] = SB_JSON_NUMBER, ['7'] = SB_JSON_NUMBER, ['8'] = SB_JSON_NUMBER,
    ['9'] = SB_JSON_NUMBER,
};

static inline enum sb_json_type type_of(unsigned char c)
{
    return (enum sb_json_type)value_types[c];
}

/* The value starting at p[i]: fills *out and returns 0, or SB_JSON_BAD if it cannot be
 * delimited before `end`. Containers are matched by counting brackets, which is exact on a
 * validated document and merely bounded on anything else. */
static inline __attribute__((always_inline)) int skip_value(const unsigned char *p, size_t i,
                                                            size_t end, struct sb_json_span *out)
{
    if (i >= end)
        return SB_JSON_BAD;
    enum sb_json_type t = type_of(p[i]);
    size_t j = i;
    switch (t) {
    case SB_JSON_STRING:
        j = skip_string(p, i, end, NULL);
        if (!j)
            return SB_JSON_BAD;
        break;
    case SB_JSON_OBJECT:
    case SB_JSON_ARRAY: {
        size_t depth = 0;
        for (;;) {
            /* Only quotes and brackets matter here; c | 0x20 folds '[' onto '{' and ']'
             * onto '}', and no other byte lands on either. */
#ifdef SCAN_SIMD
            while (end - j >= 16) {
                unsigned m = bracket_special16(p + j);
                if (m) {
                    j += (size_t)__builtin_ctz(m);
                    goto look;
                }
                j += 16;
            }
#endif
            while (end - j >= 8) {
                uint64_t w;
                memcpy(&w, p + j, 8);
                uint64_t f = w | (ONES * 0x20);
                if (sb_plain_has_zero(w ^ (ONES * '"')) | sb_plain_has_zero(f ^ (ONES * '{')) |
                    sb_plain_has_zero(f ^ (ONES * '}')))
                    break;
                j += 8;
            }
            if (j >= end)
                return SB_JSON_BAD;
#ifdef SCAN_SIMD
        look:;
#endif
            unsigned char c = p[j];
            if (c == '"') {
                j = skip_string(p, j, end, NULL);
                if (!j)
                    return SB_JSON_BAD;
                continue;
            }
            j++;
            if (c == '{' || c == '[') {
                depth++;
            } else if (c == '}' || c == ']') {
                if (--depth == 0)
                    break;
            }
        }
        break;
    }
    case SB_JSON_NUMBER:
        while (j < end && number_byte(p[j]))
            j++;
        break;
    case SB_JSON_TRUE:
    case SB_JSON_NULL:
        if (end - i < 4)
            return SB_JSON_BAD;
        if (memcmp(p + i, t == SB_JSON_TRUE ? "true" : "null", 4) != 0)
            return SB_JSON_BAD;
        j = i + 4;
        break;
    case SB_JSON_FALSE:
        if (end - i < 5 || memcmp(p + i, "false", 5) != 0)
            return SB_JSON_BAD;
        j = i + 5;
        break;
    default:
        return SB_JSON_BAD;
    }
    out->start = i;
    out->end = j;
    out->type = t;
    return 0;
}

int sb_json_root(const char *s, size_t n, struct sb_json_span *out)
{
    if (!s || !out)
        return SB_JSON_BAD;
    const unsigned char *p = (const unsigned char *)s;
    return skip_value(p, skip_ws(p, 0, n), n, out);
}

/* A span of the given type that lies inside the document and is delimited as that type
 * says; everything below relies on this before touching the bytes. */
static bool span_is(const char *s, size_t n, const struct sb_json_span *v, enum sb_json_type t)
{
    if (!s || !v || v->type != t || v->start >= v->end || v->end > n)
        return false;
    unsigned char a = (unsigned char)s[v->start], z = (unsigned char)s[v->end - 1];
    switch (t) {
    case SB_JSON_OBJECT:
        return v->end - v->start >= 2 && a == '{' && z == '}';
    case SB_JSON_ARRAY:
        return v->end - v->start >= 2 && a == '[' && z == ']';
    case SB_JSON_STRING:
        return v->end - v->start >= 2 && a == '"' && z == '"';
    default:
        return true;
    }
}

/* ---- Objects ------------------------------------------------------------------------- */

struct member_iter {
    const unsigned char *p;
    size_t i;
    size_t end; /* index of the closing brace */
    bool first;
};

static bool iter_init(struct member_iter *it, const char *s, size_t n,
                      const struct sb_json_span *obj)
{
    if (!span_is(s, n, obj, SB_JSON_OBJECT))
        return false;
    it->p = (const unsigned char *)s;
    it->i = obj->start + 1;
    it->end = obj->end - 1;
    it->first = true;
    return true;
}

/* 1 and the next member, 0 at the end, or SB_JSON_BAD. */
static inline __attribute__((always_inline)) int iter_next(struct member_iter *it,
                                                           struct sb_json_member *m, bool *key_esc)
{
    const unsigned char *p = it->p;
    size_t i = skip_ws(p, it->i, it->end);
    if (i >= it->end)
        return 0;
    if (!it->first) {
        if (p[i] != ',')
            return SB_JSON_BAD;
        i = skip_ws(p, i + 1, it->end);
    }
    if (i >= it->end || p[i] != '"')
        return SB_JSON_BAD;
    size_t k = skip_string(p, i, it->end, key_esc);
    if (!k)
        return SB_JSON_BAD;
    m->key.start = i;
    m->key.end = k;
    m->key.type = SB_JSON_STRING;
    i = skip_ws(p, k, it->end);
    if (i >= it->end || p[i] != ':')
        return SB_JSON_BAD;
    i = skip_ws(p, i + 1, it->end);
    if (skip_value(p, i, it->end, &m->value) != 0)
        return SB_JSON_BAD;
    it->i = m->value.end;
    it->first = false;
    return 1;
}

/* Decodes one unit of string content at p[*pi] (a raw byte or one escape, a surrogate pair
 * counting as one) into u[], and returns its length, or 0 if the escape is cut short. */
static size_t decode_unit(const unsigned char *p, size_t *pi, size_t end, unsigned char u[4])
{
    size_t i = *pi;
    if (p[i] != '\\') {
        u[0] = p[i];
        *pi = i + 1;
        return 1;
    }
    if (end - i < 2)
        return 0;
    unsigned char e = p[i + 1];
    switch (e) {
    case 'b':
        u[0] = '\b';
        break;
    case 'f':
        u[0] = '\f';
        break;
    case 'n':
        u[0] = '\n';
        break;
    case 'r':
        u[0] = '\r';
        break;
    case 't':
        u[0] = '\t';
        break;
    case 'u':
        break;
    default:
        u[0] = e; /* '"', '\\', '/' (anything else cannot pass validation) */
        break;
    }
    if (e != 'u') {
        *pi = i + 2;
        return 1;
    }
    if (end - i < 6)
        return 0;
    long cp = hex4(p, i + 2);
    if (cp < 0)
        return 0;
    i += 6;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        long lo = -1;
        if (end - i >= 6 && p[i] == '\\' && p[i + 1] == 'u')
            lo = hex4(p, i + 2);
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            i += 6;
        } else {
            cp = 0xFFFD;
        }
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        cp = 0xFFFD;
    }
    *pi = i;
    if (cp < 0x80) {
        u[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        u[0] = (unsigned char)(0xC0 | (cp >> 6));
        u[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        u[0] = (unsigned char)(0xE0 | (cp >> 12));
        u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    u[0] = (unsigned char)(0xF0 | (cp >> 18));
    u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    u[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* String content p[a..b) (quotes excluded) holding an escape, unescaped, equals str[0..len). */
static bool content_eq_esc(const unsigned char *p, size_t a, size_t b, const char *str, size_t len)
{
    const unsigned char *q = (const unsigned char *)str;
    size_t j = 0;
    while (a < b) {
        unsigned char u[4];
        size_t k = decode_unit(p, &a, b, u);
        if (!k || len - j < k || memcmp(u, q + j, k) != 0)
            return false;
        j += k;
    }
    return j == len;
}

/* String content p[a..b) (quotes excluded), unescaped, equals str[0..len). Most keys differ
 * from the one sought in length or in their first byte, which settles it without a call. */
static inline bool content_eq(const unsigned char *p, size_t a, size_t b, bool esc, const char *str,
                              size_t len)
{
    if (esc)
        return content_eq_esc(p, a, b, str, len);
    return b - a == len &&
           (len == 0 || (p[a] == (unsigned char)str[0] && memcmp(p + a, str, len) == 0));
}

static int object_get_n(const char *s, size_t n, const struct sb_json_span *obj, const char *key,
                        size_t key_len, struct sb_json_member *out)
{
    struct member_iter it;
    if (!key || !iter_init(&it, s, n, obj))
        return SB_JSON_BAD;
    bool found = false;
    struct sb_json_member m, hit = {0};
    bool esc;
    int rc;
    while ((rc = iter_next(&it, &m, &esc)) == 1) {
        if (!content_eq(it.p, m.key.start + 1, m.key.end - 1, esc, key, key_len))
            continue;
        /* Any later occurrence makes the lookup ambiguous, so there is no early return. */
        if (found)
            return SB_JSON_DUPLICATE;
        found = true;
        hit = m;
    }
    if (rc < 0)
        return rc;
    if (!found)
        return SB_JSON_NOT_FOUND;
    if (out)
        *out = hit;
    return 0;
}

int sb_json_object_get(const char *s, size_t n, const struct sb_json_span *obj, const char *key,
                       struct sb_json_member *out)
{
    if (!key)
        return SB_JSON_BAD;
    return object_get_n(s, n, obj, key, strlen(key), out);
}

/* The shared part of the multi-key lookups: a set of keys, and one member at a time. */
struct key_set {
    const char *const *keys;
    size_t lens[SB_JSON_MANY_MAX];
    size_t n;
    uint64_t lens_seen; /* bit L: a key of length L (bit 63: any of 63 or more) */
    struct sb_json_member *out;
    int *counts;
};

static void key_set_init(struct key_set *ks, const char *const *keys, size_t nkeys,
                         struct sb_json_member *out, int *counts)
{
    ks->keys = keys;
    ks->n = nkeys;
    ks->out = out;
    ks->counts = counts;
    ks->lens_seen = 0;
    for (size_t k = 0; k < nkeys; k++) {
        ks->lens[k] = strlen(keys[k]);
        ks->lens_seen |= 1ULL << (ks->lens[k] < 63 ? ks->lens[k] : 63);
        counts[k] = 0;
        memset(&out[k], 0, sizeof out[k]);
    }
}

/* Counts member m against the keys (its first occurrence kept; counts capped at 2). */
static inline void key_set_add(struct key_set *ks, const unsigned char *p,
                               const struct sb_json_member *m, bool esc)
{
    /* Most members are none of the keys, and most of those differ from all of them in length
     * (an escaped key may shrink when unescaped, so it always goes through the loop). */
    size_t len = m->key.end - m->key.start - 2;
    if (!esc && len < 63 && !((ks->lens_seen >> len) & 1))
        return;
    for (size_t k = 0; k < ks->n; k++) {
        if (!content_eq(p, m->key.start + 1, m->key.end - 1, esc, ks->keys[k], ks->lens[k]))
            continue;
        if (ks->counts[k] == 0)
            ks->out[k] = *m;
        if (ks->counts[k] < 2)
            ks->counts[k]++;
        return;
    }
}

int sb_json_object_get_many(const char *s, size_t n, const struct sb_json_span *obj,
                            const char *const *keys, size_t nkeys, struct sb_json_member *out,
                            int *counts)
{
    struct member_iter it;
    if (nkeys > SB_JSON_MANY_MAX || !iter_init(&it, s, n, obj))
        return SB_JSON_BAD;
    struct key_set ks;
    key_set_init(&ks, keys, nkeys, out, counts);
    struct sb_json_member m;
    bool esc;
    int rc;
    while ((rc = iter_next(&it, &m, &esc)) == 1)
        key_set_add(&ks, it.p, &m, esc);
    return rc < 0 ? rc : 0;
}

/* Whether p[a..b) (inside p[0..n)) holds a backslash. Keys are short, so one 16-byte look
 * usually settles it. */
static inline bool has_backslash(const unsigned char *p, size_t a, size_t b, size_t n)
{
#ifdef SCAN_SIMD
    if (b - a <= 16 && n - a >= 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + a));
        unsigned m = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8('\\')));
        return (m & ((1u << (b - a)) - 1)) != 0;
    }
#endif
    (void)n;
    return memchr(p + a, '\\', b - a) != NULL;
}

int sb_json_index_get_many(const char *s, size_t n, const struct sb_json_index *idx,
                           const char *const *keys, size_t nkeys, struct sb_json_member *out,
                           int *counts)
{
    if (!idx->complete)
        return sb_json_object_get_many(s, n, &idx->root, keys, nkeys, out, counts);
    if (nkeys > SB_JSON_MANY_MAX || idx->root.type != SB_JSON_OBJECT || idx->root.end > n)
        return SB_JSON_BAD;
    struct key_set ks;
    key_set_init(&ks, keys, nkeys, out, counts);
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < idx->n; i++) {
        const struct sb_json_member *m = &idx->members[i];
        bool esc = has_backslash(p, m->key.start + 1, m->key.end - 1, n);
        key_set_add(&ks, p, m, esc);
    }
    return 0;
}

int sb_json_path(const char *s, size_t n, const struct sb_json_span *obj, const char *path,
                 struct sb_json_span *out)
{
    if (!s || !obj || !path || !*path)
        return SB_JSON_BAD;
    struct sb_json_span cur = *obj;
    const char *seg = path;
    for (;;) {
        const char *dot = strchr(seg, '.');
        size_t len = dot ? (size_t)(dot - seg) : strlen(seg);
        if (len == 0)
            return SB_JSON_BAD;
        if (cur.type != SB_JSON_OBJECT)
            return SB_JSON_NOT_FOUND;
        struct sb_json_member m;
        int rc = object_get_n(s, n, &cur, seg, len, &m);
        if (rc != 0)
            return rc;
        cur = m.value;
        if (!dot)
            break;
        seg = dot + 1;
    }
    if (out)
        *out = cur;
    return 0;
}

/* ---- Arrays -------------------------------------------------------------------------- */

int sb_json_array_next(const char *s, size_t n, const struct sb_json_span *arr, size_t *pos,
                       struct sb_json_span *elem)
{
    if (!pos || !elem || !span_is(s, n, arr, SB_JSON_ARRAY))
        return SB_JSON_BAD;
    const unsigned char *p = (const unsigned char *)s;
    size_t end = arr->end - 1;
    size_t i;
    if (*pos == 0) {
        i = skip_ws(p, arr->start + 1, end);
        if (i >= end)
            return SB_JSON_NOT_FOUND;
    } else {
        if (*pos <= arr->start || *pos > end)
            return SB_JSON_BAD;
        i = skip_ws(p, *pos, end);
        if (i >= end)
            return SB_JSON_NOT_FOUND;
        if (p[i] != ',')
            return SB_JSON_BAD;
        i = skip_ws(p, i + 1, end);
    }
    if (skip_value(p, i, end, elem) != 0)
        return SB_JSON_BAD;
    *pos = elem->end;
    return 0;
}

int sb_json_array_len(const char *s, size_t n, const struct sb_json_span *arr)
{
    size_t pos = 0;
    struct sb_json_span e;
    int count = 0, rc;
    while ((rc = sb_json_array_next(s, n, arr, &pos, &e)) == 0) {
        if (count == INT_MAX)
            return SB_JSON_BAD;
        count++;
    }
    return rc == SB_JSON_NOT_FOUND ? count : SB_JSON_BAD;
}

/* ---- Scalars ------------------------------------------------------------------------- */

int sb_json_string_copy(const char *s, size_t n, const struct sb_json_span *v, char *out,
                        size_t cap, size_t *len)
{
    if (!out || cap == 0)
        return SB_JSON_BAD;
    out[0] = '\0';
    if (!span_is(s, n, v, SB_JSON_STRING))
        return SB_JSON_BAD;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = v->start + 1, b = v->end - 1, j = 0;
    while (i < b) {
        unsigned char u[4];
        size_t k = decode_unit(p, &i, b, u);
        /* j + k must leave room for the NUL. */
        if (!k || cap - 1 - j < k) {
            out[0] = '\0';
            return SB_JSON_BAD;
        }
        memcpy(out + j, u, k);
        j += k;
    }
    out[j] = '\0';
    if (len)
        *len = j;
    return 0;
}

bool sb_json_string_eq(const char *s, size_t n, const struct sb_json_span *v, const char *str)
{
    if (!str || !span_is(s, n, v, SB_JSON_STRING))
        return false;
    const unsigned char *p = (const unsigned char *)s;
    size_t a = v->start + 1, b = v->end - 1;
    bool esc = memchr(p + a, '\\', b - a) != NULL;
    return content_eq(p, a, b, esc, str, strlen(str));
}

int sb_json_int64(const char *s, size_t n, const struct sb_json_span *v, int64_t *out)
{
    if (!out || !span_is(s, n, v, SB_JSON_NUMBER))
        return SB_JSON_BAD;
    const unsigned char *p = (const unsigned char *)s;
    size_t i = v->start, end = v->end;
    bool neg = false;
    if (p[i] == '-') {
        neg = true;
        i++;
    }
    if (i >= end || (p[i] == '0' && end - i > 1))
        return SB_JSON_BAD;
    uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    uint64_t acc = 0;
    for (; i < end; i++) {
        if (!is_digit(p[i]))
            return SB_JSON_BAD;
        unsigned d = p[i] - '0';
        if (acc > (limit - d) / 10)
            return SB_JSON_BAD;
        acc = acc * 10 + d;
    }
    if (neg)
        *out = acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc;
    else
        *out = (int64_t)acc;
    return 0;
}

int sb_json_bool(const char *s, size_t n, const struct sb_json_span *v, bool *out)
{
    if (!out || !s || !v || v->start >= v->end || v->end > n)
        return SB_JSON_BAD;
    size_t len = v->end - v->start;
    if (v->type == SB_JSON_TRUE && len == 4 && memcmp(s + v->start, "true", 4) == 0) {
        *out = true;
        return 0;
    }
    if (v->type == SB_JSON_FALSE && len == 5 && memcmp(s + v->start, "false", 5) == 0) {
        *out = false;
        return 0;
    }
    return SB_JSON_BAD;
}

/* ---- Splicing ------------------------------------------------------------------------ */

/* out += s[0..a) ins1 ins2 s[b..n), reserved up front so a failure leaves out as it
 * was. */
static int emit(const char *s, size_t n, size_t a, size_t b, const char *ins1, size_t len1,
                const char *ins2, size_t len2, struct sb_buf *out)
{
    if (!out || a > b || b > n)
        return SB_JSON_BAD;
    size_t total = a;
    if (len1 > SIZE_MAX - total)
        return -E2BIG;
    total += len1;
    if (len2 > SIZE_MAX - total)
        return -E2BIG;
    total += len2;
    if (n - b > SIZE_MAX - total)
        return -E2BIG;
    total += n - b;
    int rc = sb_buf_reserve(out, total);
    if (rc)
        return rc;
    sb_buf_append(out, s, a);
    sb_buf_append(out, ins1, len1);
    sb_buf_append(out, ins2, len2);
    sb_buf_append(out, s + b, n - b);
    return 0;
}

int sb_json_splice(const char *s, size_t n, const struct sb_json_span *span, const char *repl,
                   size_t repl_len, struct sb_buf *out)
{
    if (!s || !span || (!repl && repl_len))
        return SB_JSON_BAD;
    return emit(s, n, span->start, span->end, repl, repl_len, NULL, 0, out);
}

int sb_json_remove_member(const char *s, size_t n, const struct sb_json_span *obj,
                          const struct sb_json_member *m, struct sb_buf *out)
{
    struct member_iter it;
    if (!m || !iter_init(&it, s, n, obj))
        return SB_JSON_BAD;
    struct sb_json_member cur, prev = {0};
    bool have_prev = false;
    int rc;
    while ((rc = iter_next(&it, &cur, NULL)) == 1) {
        if (cur.key.start != m->key.start || cur.value.end != m->value.end) {
            prev = cur;
            have_prev = true;
            continue;
        }
        if (have_prev) /* middle or last: from the end of the previous value */
            return emit(s, n, prev.value.end, cur.value.end, NULL, 0, NULL, 0, out);
        struct sb_json_member next;
        rc = iter_next(&it, &next, NULL);
        if (rc < 0)
            return rc;
        if (rc == 1) /* first of several: up to the next key */
            return emit(s, n, cur.key.start, next.key.start, NULL, 0, NULL, 0, out);
        /* the only member: the object becomes {} */
        return emit(s, n, obj->start + 1, obj->end - 1, NULL, 0, NULL, 0, out);
    }
    return rc < 0 ? rc : SB_JSON_NOT_FOUND;
}

int sb_json_append_member(const char *s, size_t n, const struct sb_json_span *obj,
                          const char *member, size_t member_len, struct sb_buf *out)
{
    if (!member || !span_is(s, n, obj, SB_JSON_OBJECT))
        return SB_JSON_BAD;
    const unsigned char *p = (const unsigned char *)s;
    size_t at = obj->end - 1;
    while (at > obj->start + 1 && is_ws(p[at - 1]))
        at--;
    /* Right after the last value (or the brace), so whitespace before '}' stays put. */
    bool empty = at == obj->start + 1;
    return emit(s, n, at, at, empty ? "" : ",", empty ? 0 : 1, member, member_len, out);
}

bool sb_json_jansson_same(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            /* Long strings are the bulk of a body: jump to the next quote or backslash. */
            for (i++; i < n; i++) {
                const char *q = memchr(s + i, '"', n - i);
                if (!q)
                    return false;
                const char *b = memchr(s + i, '\\', (size_t)(q - s) - i);
                if (!b) {
                    i = (size_t)(q - s);
                    break;
                }
                i = (size_t)(b - s);
                if (i + 1 < n && s[i + 1] == 'u') {
                    if (i + 5 >= n)
                        return false;
                    unsigned v = 0;
                    for (size_t k = 2; k < 6; k++) {
                        unsigned char h = (unsigned char)s[i + k];
                        v = v * 16 + (unsigned)(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
                    }
                    if (v == 0 || (v >= 0xD800 && v <= 0xDFFF))
                        return false;
                    i += 5;
                } else {
                    i++;
                }
            }
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t start = i;
            for (; i < n; i++) {
                c = (unsigned char)s[i];
                if (c == 'e' || c == 'E')
                    return false;
                if (c != '-' && c != '+' && c != '.' && (c < '0' || c > '9'))
                    break;
            }
            if (i - start > 15)
                return false;
        } else {
            i++;
        }
    }
    return true;
}

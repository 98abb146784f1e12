/* Zero-copy JSON scanner and splicer for the pass-through path (RFC 8259).
 *
 * The gateway must read a few fields of a request or response (`model`, `stream`,
 * `stream_options`, `usage`) and rewrite one or two, without building a tree and without
 * re-serializing the rest: bytes it does not need to change go out exactly as they came.
 * Values are located as byte spans into the caller's buffer.
 *
 * sb_json_validate() is a complete RFC 8259 validator (strings checked for escapes and
 * control characters and UTF-8 validity, numbers by the grammar, nesting bounded by
 * max_depth); the other functions assume a document that passed it and never read outside
 * [0, n) even if it did not. Thread-safe, no allocation except into a caller's sb_buf. */
#ifndef SB_JSON_SCAN_H
#define SB_JSON_SCAN_H

#include "core/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sb_json_type {
    SB_JSON_INVALID = 0,
    SB_JSON_OBJECT,
    SB_JSON_ARRAY,
    SB_JSON_STRING,
    SB_JSON_NUMBER,
    SB_JSON_TRUE,
    SB_JSON_FALSE,
    SB_JSON_NULL,
};

/* [start, end) in the document; for strings the span includes the quotes. */
struct sb_json_span {
    size_t start;
    size_t end;
    enum sb_json_type type;
};

struct sb_json_member {
    struct sb_json_span key; /* the key string, quotes included */
    struct sb_json_span value;
};

#define SB_JSON_NOT_FOUND (-1)
#define SB_JSON_DUPLICATE (-2) /* the key occurs more than once in that object */
#define SB_JSON_BAD       (-3) /* malformed input or wrong type */

/* Hard ceiling on max_depth: the validator keeps one bit per open container on its stack. */
#define SB_JSON_MAX_DEPTH 4096

/* 0 if s[0..n) is exactly one JSON value with optional surrounding whitespace; SB_JSON_BAD
 * otherwise (including nesting deeper than max_depth). Depth counts open containers: "1" is
 * 0 deep, "[[]]" 2 deep. max_depth is clamped to [0, SB_JSON_MAX_DEPTH]. Lone surrogate
 * escapes ("\ud800") are valid (RFC 8259 section 8.2); raw UTF-8 must be well formed. */
int sb_json_validate(const char *s, size_t n, int max_depth);

/* Validation that also indexes the root: idx->root is the root value's span and, when the
 * root is an object, idx->members[0..n) are its members in order (up to SB_JSON_INDEX_MAX;
 * idx->complete is false when there were more). Same result as sb_json_validate; *idx is
 * meaningful only when it returns 0. The hot path uses it so that a request, a response or a
 * stream event is scanned once, not once for validation and once more per key it reads. */
#define SB_JSON_INDEX_MAX 32
struct sb_json_index {
    struct sb_json_span root;
    size_t n;
    bool complete;
    struct sb_json_member members[SB_JSON_INDEX_MAX];
};
int sb_json_validate_index(const char *s, size_t n, int max_depth, struct sb_json_index *idx);

/* The span of the document's root value (leading/trailing whitespace excluded); 0 or
 * SB_JSON_BAD. Trailing bytes are not looked at. */
int sb_json_root(const char *s, size_t n, struct sb_json_span *out);

/* Finds `key` among the members of the object `obj` (a span of type SB_JSON_OBJECT). Keys
 * are compared after unescaping, so "mo\u0064el" matches "model". Returns 0 and fills *out,
 * SB_JSON_NOT_FOUND, SB_JSON_DUPLICATE if the key occurs twice (a request with two `model`
 * keys is ambiguous and must be refused), or SB_JSON_BAD. */
int sb_json_object_get(const char *s, size_t n, const struct sb_json_span *obj, const char *key,
                       struct sb_json_member *out);

/* Looks up several keys of the object `obj` in one pass over its members (the hot path reads
 * three or four keys of one object; one pass instead of one per key). For each i, counts[i]
 * is how often keys[i] occurs, capped at 2 (2: a duplicate), and out[i] is its first
 * occurrence (type SB_JSON_INVALID when absent). At most SB_JSON_MANY_MAX keys. Returns 0 or
 * SB_JSON_BAD. */
#define SB_JSON_MANY_MAX 16
int sb_json_object_get_many(const char *s, size_t n, const struct sb_json_span *obj,
                            const char *const *keys, size_t nkeys, struct sb_json_member *out,
                            int *counts);

/* sb_json_object_get_many over an indexed root (falls back to a scan when the index is not
 * complete). The root must be an object; same results. */
int sb_json_index_get_many(const char *s, size_t n, const struct sb_json_index *idx,
                           const char *const *keys, size_t nkeys, struct sb_json_member *out,
                           int *counts);

/* Follows a dotted path of object keys from `obj` ("usage.prompt_tokens_details.cached_tokens").
 * Same results as sb_json_object_get; a path through a non-object (including `obj` itself) is
 * SB_JSON_NOT_FOUND; an empty path or an empty segment ("a..b") is SB_JSON_BAD. */
int sb_json_path(const char *s, size_t n, const struct sb_json_span *obj, const char *path,
                 struct sb_json_span *out);

/* Array iteration: *pos starts at 0; each call fills *elem with the next element and returns
 * 0, or returns SB_JSON_NOT_FOUND after the last one; SB_JSON_BAD if `arr` is not an array
 * or *pos was not left by a previous call. */
int sb_json_array_next(const char *s, size_t n, const struct sb_json_span *arr, size_t *pos,
                       struct sb_json_span *elem);
/* Number of elements, or SB_JSON_BAD. */
int sb_json_array_len(const char *s, size_t n, const struct sb_json_span *arr);

/* Unescapes a string value into out[0..cap) (NUL-terminated); -E2BIG-like failure
 * (SB_JSON_BAD) if it does not fit or is not a string. *len gets the unescaped length
 * (without NUL); \u escapes become UTF-8, surrogate pairs combined, lone surrogates U+FFFD.
 * "\u0000" yields a NUL byte inside the result (counted in *len). On failure out is "". */
int sb_json_string_copy(const char *s, size_t n, const struct sb_json_span *v, char *out,
                        size_t cap, size_t *len);
/* Compares a string value, after unescaping, with a C string. */
bool sb_json_string_eq(const char *s, size_t n, const struct sb_json_span *v, const char *str);
/* An integer value (no fraction, no exponent, in range); SB_JSON_BAD otherwise. "-0" is 0. */
int sb_json_int64(const char *s, size_t n, const struct sb_json_span *v, int64_t *out);
int sb_json_bool(const char *s, size_t n, const struct sb_json_span *v, bool *out);

/* Splicing: each appends a new document to `out` built from s[0..n) with one change; the
 * bytes outside the change are copied unchanged. Returns 0, SB_JSON_BAD, or the sb_buf error
 * (-E2BIG at the buffer's cap, -ENOMEM); on failure `out` is left as it was. */
/* Replaces the bytes of `span` with repl[0..repl_len). */
int sb_json_splice(const char *s, size_t n, const struct sb_json_span *span, const char *repl,
                   size_t repl_len, struct sb_buf *out);
/* Removes member `m` of object `obj`, with the comma that separates it from a neighbour, so
 * the result stays valid JSON: the first member goes with everything up to the next key, a
 * later one with everything from the end of the previous value, the only one leaves "{}".
 * SB_JSON_NOT_FOUND if `m` is not a member of `obj`. */
int sb_json_remove_member(const char *s, size_t n, const struct sb_json_span *obj,
                          const struct sb_json_member *m, struct sb_buf *out);
/* Adds a member at the end of object `obj`; `member` is raw JSON text such as
 * "\"stream_options\":{\"include_usage\":true}". Adds the comma when the object has members.
 * The text goes right after the last value (or after '{'), so whitespace before '}' stays. */
int sb_json_append_member(const char *s, size_t n, const struct sb_json_span *obj,
                          const char *member, size_t member_len, struct sb_buf *out);

/* True when jansson reads a document that passed sb_json_validate exactly as this scanner
 * does, so a decoder may take the scanner's fast path and still accept and refuse what a
 * jansson decoder would: false for "\u0000" (jansson refuses NUL), surrogate escapes
 * (jansson refuses lone ones; pairs are left to it too) and numbers that could be out of
 * range (an exponent, or more than 15 characters). */
bool sb_json_jansson_same(const char *s, size_t n);

#endif

/* Fuzz target for the JSON scanner (src/json/scan.c).
 *
 * 1. Differential validity against jansson (json_loadb, JSON_DECODE_ANY | JSON_ALLOW_NUL):
 *    - jansson accepts  => sb_json_validate must accept, for inputs without a raw NUL byte
 *      (jansson's reader stops at a NUL after a complete value, so "1\0" passes there). Its
 *      grammar, UTF-8 check and whitespace set are otherwise RFC 8259's, and its depth limit
 *      (2048) is below ours (SB_JSON_MAX_DEPTH).
 *    - jansson rejects, we accept => allowed only where jansson refuses valid text for its
 *      own reasons: numbers it cannot represent (integer beyond int64, real overflow), its
 *      depth limit, and \u escapes (it refuses lone surrogates, which RFC 8259 section 8.2
 *      leaves grammatical). Inputs holding the two bytes "\u" are therefore excluded from this
 *      direction.
 * 2. On valid input, every lookup and splice is run on the root, each output is validated
 *    again, and values are compared with jansson's tree where jansson has one.
 * 3. On any input, the lookups run on whatever sb_json_root finds, so reads past the input
 *    show under ASan (the functions promise to stay inside [0, n) on unvalidated input).
 * 4. Exact agreement, on every input and at several depth limits, with a plain recursive
 *    reference validator written from RFC 8259 and RFC 3629 below (one byte at a time, code
 *    points decoded and range-checked rather than looked up). Unlike jansson it has no
 *    exceptions, so lone surrogate escapes, raw NUL bytes and depth limits are covered too;
 *    it also records the root object's members, which sb_json_validate_index must match. */
#include "json/scan.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FLAGS     (JSON_DECODE_ANY | JSON_ALLOW_NUL)
#define MAX_ITEMS 32
#define OUT_MAX   (1u << 20)

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c))                                                                                  \
            abort();                                                                               \
    } while (0)

static bool has_backslash_u(const char *s, size_t n)
{
    return n >= 2 && memmem(s, n, "\\u", 2) != NULL;
}

static json_t *load_span(const char *s, const struct sb_json_span *v)
{
    return json_loadb(s + v->start, v->end - v->start, FLAGS, NULL);
}

static void check_out_valid(const struct sb_buf *b)
{
    CHECK(sb_json_validate(b->data, b->len, SB_JSON_MAX_DEPTH) == 0);
}

/* The span's value matches jansson's, by type and by what our readers return. */
static void compare_value(const char *s, size_t n, const struct sb_json_span *v, json_t *want)
{
    json_t *got = load_span(s, v);
    CHECK(got != NULL);
    CHECK(json_equal(got, want));
    json_decref(got);

    switch (v->type) {
    case SB_JSON_OBJECT:
        CHECK(json_is_object(want));
        break;
    case SB_JSON_ARRAY:
        CHECK(json_is_array(want));
        CHECK(sb_json_array_len(s, n, v) == (int)json_array_size(want));
        break;
    case SB_JSON_STRING: {
        CHECK(json_is_string(want));
        size_t len = json_string_length(want), got_len = 0;
        char *buf = malloc(len + 1);
        CHECK(buf != NULL);
        CHECK(sb_json_string_copy(s, n, v, buf, len + 1, &got_len) == 0);
        CHECK(got_len == len && memcmp(buf, json_string_value(want), len) == 0);
        if (len > 0)
            CHECK(sb_json_string_copy(s, n, v, buf, len, &got_len) == SB_JSON_BAD);
        if (!memchr(buf, '\0', len))
            CHECK(sb_json_string_eq(s, n, v, json_string_value(want)));
        free(buf);
        break;
    }
    case SB_JSON_NUMBER: {
        CHECK(json_is_number(want));
        int64_t i = 0;
        int rc = sb_json_int64(s, n, v, &i);
        /* jansson types "-0" as an integer and "1.0" or "1e3" as reals, as we do. */
        CHECK((rc == 0) == json_is_integer(want));
        if (rc == 0)
            CHECK(i == json_integer_value(want));
        break;
    }
    case SB_JSON_TRUE:
    case SB_JSON_FALSE: {
        bool b = false;
        CHECK(sb_json_bool(s, n, v, &b) == 0);
        CHECK(b == json_is_true(want));
        break;
    }
    case SB_JSON_NULL:
        CHECK(json_is_null(want));
        break;
    default:
        abort();
    }
}

static void exercise_object(const char *s, size_t n, const struct sb_json_span *obj, json_t *j)
{
    struct sb_buf out;
    sb_buf_init(&out, OUT_MAX);

    /* Append a member, then find it (a duplicate if the input already had that key). */
    static const char add[] = "\"__sb\":{\"include_usage\":true}";
    CHECK(sb_json_append_member(s, n, obj, add, sizeof add - 1, &out) == 0);
    check_out_valid(&out);
    struct sb_json_span r2;
    struct sb_json_member m;
    CHECK(sb_json_root(out.data, out.len, &r2) == 0);
    if (obj->start == r2.start) {
        int rc = sb_json_object_get(out.data, out.len, &r2, "__sb", &m);
        CHECK(rc == 0 || rc == SB_JSON_DUPLICATE);
        struct sb_json_span v;
        rc = sb_json_path(out.data, out.len, &r2, "__sb.include_usage", &v);
        CHECK(rc == 0 || rc == SB_JSON_DUPLICATE);
    }
    sb_buf_reset(&out);

    struct sb_json_span v;
    int rc = sb_json_path(s, n, obj, "usage.prompt_tokens", &v);
    CHECK(rc == 0 || rc == SB_JSON_NOT_FOUND || rc == SB_JSON_DUPLICATE);

    if (j && json_is_object(j)) {
        const char *key;
        json_t *val;
        size_t done = 0;
        void *it = json_object_iter(j);
        for (; it && done < MAX_ITEMS; it = json_object_iter_next(j, it), done++) {
            key = json_object_iter_key(it);
            size_t klen = json_object_iter_key_len(it);
            val = json_object_iter_value(it);
            if (strlen(key) != klen)
                continue; /* a key with an escaped NUL cannot be asked for as a C string */
            struct sb_json_member m3;
            rc = sb_json_object_get(s, n, obj, key, &m);
            CHECK(rc == 0 || rc == SB_JSON_DUPLICATE);
            if (rc != 0)
                continue;
            compare_value(s, n, &m.value, val);
            CHECK(sb_json_string_eq(s, n, &m.key, key));

            /* Remove it: valid, and jansson sees the same object minus that key. The object
             * keeps its start; its end moves by what was cut. */
            sb_buf_reset(&out);
            CHECK(sb_json_remove_member(s, n, obj, &m, &out) == 0);
            check_out_valid(&out);
            CHECK(out.len < n);
            struct sb_json_span o2 = {obj->start, obj->end - (n - out.len), SB_JSON_OBJECT};
            json_t *after = load_span(out.data, &o2);
            CHECK(after != NULL);
            json_t *want = json_deep_copy(j);
            CHECK(want != NULL);
            CHECK(json_object_deln(want, key, klen) == 0);
            CHECK(json_equal(after, want));
            json_decref(after);
            json_decref(want);
            CHECK(sb_json_object_get(out.data, out.len, &o2, key, &m3) == SB_JSON_NOT_FOUND);

            /* Replace its value: valid, and it reads back. */
            static const char repl[] = "\"x\\u00e9\"";
            sb_buf_reset(&out);
            CHECK(sb_json_splice(s, n, &m.value, repl, sizeof repl - 1, &out) == 0);
            check_out_valid(&out);
            struct sb_json_span o3 = {obj->start, obj->end + out.len - n, SB_JSON_OBJECT};
            CHECK(sb_json_object_get(out.data, out.len, &o3, key, &m3) == 0);
            CHECK(sb_json_string_eq(out.data, out.len, &m3.value, "x\xC3\xA9"));
        }
    } else {
        /* No tree to compare with (jansson refused the text): still delete whatever
         * "model" is and check the result. */
        rc = sb_json_object_get(s, n, obj, "model", &m);
        CHECK(rc == 0 || rc == SB_JSON_NOT_FOUND || rc == SB_JSON_DUPLICATE);
        if (rc == 0) {
            CHECK(sb_json_remove_member(s, n, obj, &m, &out) == 0);
            check_out_valid(&out);
        }
    }
    sb_buf_free(&out);

    /* The index built while validating agrees with the scans. */
    struct sb_json_index idx;
    CHECK(sb_json_validate_index(s, n, 4096, &idx) == 0);
    struct sb_json_span root;
    CHECK(sb_json_root(s, n, &root) == 0);
    CHECK(idx.root.start == root.start && idx.root.end == root.end && idx.root.type == root.type);
    if (obj->start == root.start && obj->end == root.end) {
        static const char *const ikeys[] = {"model", "stream", "usage", "a", "b", ""};
        struct sb_json_member im[6], sm[6];
        int ic[6], sc[6];
        CHECK(sb_json_index_get_many(s, n, &idx, ikeys, 6, im, ic) == 0);
        CHECK(sb_json_object_get_many(s, n, obj, ikeys, 6, sm, sc) == 0);
        for (int k = 0; k < 6; k++) {
            CHECK(ic[k] == sc[k]);
            CHECK(im[k].value.start == sm[k].value.start && im[k].value.end == sm[k].value.end);
            CHECK(im[k].key.start == sm[k].key.start && im[k].value.type == sm[k].value.type);
        }
    }

    /* The one-pass multi-key lookup agrees with one lookup per key. */
    static const char *const keys[] = {"model", "stream", "stream_options", "usage", "a", ""};
    struct sb_json_member many[6];
    int counts[6];
    CHECK(sb_json_object_get_many(s, n, obj, keys, 6, many, counts) == 0);
    for (int k = 0; k < 6; k++) {
        struct sb_json_member one;
        int rc1 = sb_json_object_get(s, n, obj, keys[k], &one);
        CHECK(rc1 == 0                   ? counts[k] == 1
              : rc1 == SB_JSON_DUPLICATE ? counts[k] == 2
                                         : counts[k] == 0);
        if (rc1 == 0)
            CHECK(one.value.start == many[k].value.start && one.value.end == many[k].value.end);
    }
}

static void exercise_array(const char *s, size_t n, const struct sb_json_span *arr, json_t *j)
{
    size_t pos = 0, count = 0;
    struct sb_json_span e;
    int rc;
    while ((rc = sb_json_array_next(s, n, arr, &pos, &e)) == 0) {
        CHECK(e.start > arr->start && e.end < arr->end);
        if (j && json_is_array(j) && count < MAX_ITEMS)
            compare_value(s, n, &e, json_array_get(j, count));
        if (e.type == SB_JSON_OBJECT && count < 4)
            exercise_object(s, n, &e, j && json_is_array(j) ? json_array_get(j, count) : NULL);
        count++;
    }
    CHECK(rc == SB_JSON_NOT_FOUND);
    CHECK(sb_json_array_len(s, n, arr) == (int)count);
    if (j && json_is_array(j))
        CHECK(count == json_array_size(j));
}

/* Inputs that did not validate: whatever the functions answer, they stay inside the
 * buffer and do not crash. */
static void poke(const char *s, size_t n)
{
    struct sb_json_span r, v;
    struct sb_json_member m;
    if (sb_json_root(s, n, &r) != 0)
        return;
    CHECK(r.start < r.end && r.end <= n);
    if (r.type == SB_JSON_OBJECT) {
        (void)sb_json_object_get(s, n, &r, "model", &m);
        (void)sb_json_path(s, n, &r, "usage.total_tokens", &v);
        struct sb_buf out;
        sb_buf_init(&out, OUT_MAX);
        if (sb_json_object_get(s, n, &r, "a", &m) == 0)
            (void)sb_json_remove_member(s, n, &r, &m, &out);
        (void)sb_json_append_member(s, n, &r, "\"k\":1", 5, &out);
        sb_buf_free(&out);
    } else if (r.type == SB_JSON_ARRAY) {
        (void)sb_json_array_len(s, n, &r);
    } else if (r.type == SB_JSON_STRING) {
        char buf[64];
        size_t len;
        (void)sb_json_string_copy(s, n, &r, buf, sizeof buf, &len);
        (void)sb_json_string_eq(s, n, &r, "model");
    } else if (r.type == SB_JSON_NUMBER) {
        int64_t i;
        (void)sb_json_int64(s, n, &r, &i);
    }
}

/* ---- Reference validator ------------------------------------------------------------- */

struct ref {
    const unsigned char *p;
    size_t n, i;
    int limit;
    size_t root_end;
    size_t members; /* root object members seen */
    struct sb_json_member m[SB_JSON_INDEX_MAX];
};

static void ref_ws(struct ref *r)
{
    while (r->i < r->n &&
           (r->p[r->i] == ' ' || r->p[r->i] == '\t' || r->p[r->i] == '\n' || r->p[r->i] == '\r'))
        r->i++;
}

static bool ref_hex(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* One UTF-8 sequence: the shortest form of a scalar value (RFC 3629 section 4). */
static bool ref_utf8(struct ref *r)
{
    unsigned char c = r->p[r->i];
    size_t len;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
        len = 2, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
        len = 3, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return false;
    }
    if (r->n - r->i < len)
        return false;
    for (size_t k = 1; k < len; k++) {
        unsigned char t = r->p[r->i + k];
        if ((t & 0xC0) != 0x80)
            return false;
        cp = (cp << 6) | (t & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return false;
    r->i += len;
    return true;
}

static bool ref_string(struct ref *r)
{
    if (r->i >= r->n || r->p[r->i] != '"')
        return false;
    r->i++;
    for (;;) {
        if (r->i >= r->n)
            return false;
        unsigned char c = r->p[r->i];
        if (c == '"') {
            r->i++;
            return true;
        }
        if (c == '\\') {
            if (r->n - r->i < 2)
                return false;
            unsigned char e = r->p[r->i + 1];
            if (e == 'u') {
                if (r->n - r->i < 6)
                    return false;
                for (size_t k = 2; k < 6; k++)
                    if (!ref_hex(r->p[r->i + k]))
                        return false;
                r->i += 6;
            } else if (e && strchr("\"\\/bfnrt", e)) {
                r->i += 2;
            } else {
                return false;
            }
        } else if (c < 0x20) {
            return false;
        } else if (c >= 0x80) {
            if (!ref_utf8(r))
                return false;
        } else {
            r->i++;
        }
    }
}

static bool ref_digits(struct ref *r)
{
    size_t start = r->i;
    while (r->i < r->n && r->p[r->i] >= '0' && r->p[r->i] <= '9')
        r->i++;
    return r->i > start;
}

static bool ref_number(struct ref *r)
{
    if (r->p[r->i] == '-')
        r->i++;
    if (r->i >= r->n)
        return false;
    if (r->p[r->i] == '0')
        r->i++;
    else if (!ref_digits(r))
        return false;
    if (r->i < r->n && r->p[r->i] == '.') {
        r->i++;
        if (!ref_digits(r))
            return false;
    }
    if (r->i < r->n && (r->p[r->i] == 'e' || r->p[r->i] == 'E')) {
        r->i++;
        if (r->i < r->n && (r->p[r->i] == '+' || r->p[r->i] == '-'))
            r->i++;
        if (!ref_digits(r))
            return false;
    }
    return true;
}

static bool ref_word(struct ref *r, const char *w)
{
    size_t len = strlen(w);
    if (r->n - r->i < len || memcmp(r->p + r->i, w, len) != 0)
        return false;
    r->i += len;
    return true;
}

static enum sb_json_type ref_type(unsigned char c)
{
    switch (c) {
    case '{':
        return SB_JSON_OBJECT;
    case '[':
        return SB_JSON_ARRAY;
    case '"':
        return SB_JSON_STRING;
    case 't':
        return SB_JSON_TRUE;
    case 'f':
        return SB_JSON_FALSE;
    case 'n':
        return SB_JSON_NULL;
    default:
        return (c == '-' || (c >= '0' && c <= '9')) ? SB_JSON_NUMBER : SB_JSON_INVALID;
    }
}

/* `depth`: containers open around this value. */
static bool ref_value(struct ref *r, int depth)
{
    if (r->i >= r->n)
        return false;
    unsigned char c = r->p[r->i];
    if (c == '{' || c == '[') {
        if (depth >= r->limit)
            return false;
        char close = c == '{' ? '}' : ']';
        r->i++;
        ref_ws(r);
        if (r->i < r->n && r->p[r->i] == close) {
            r->i++;
            return true;
        }
        for (;;) {
            struct sb_json_member m;
            if (c == '{') {
                m.key.start = r->i;
                if (!ref_string(r))
                    return false;
                m.key.end = r->i;
                m.key.type = SB_JSON_STRING;
                ref_ws(r);
                if (r->i >= r->n || r->p[r->i] != ':')
                    return false;
                r->i++;
                ref_ws(r);
            }
            m.value.start = r->i;
            if (!ref_value(r, depth + 1))
                return false;
            if (c == '{' && depth == 0) {
                m.value.end = r->i;
                m.value.type = ref_type(r->p[m.value.start]);
                if (r->members < SB_JSON_INDEX_MAX)
                    r->m[r->members] = m;
                r->members++;
            }
            ref_ws(r);
            if (r->i >= r->n)
                return false;
            if (r->p[r->i] == close) {
                r->i++;
                return true;
            }
            if (r->p[r->i] != ',')
                return false;
            r->i++;
            ref_ws(r);
        }
    }
    if (c == '"')
        return ref_string(r);
    if (c == '-' || (c >= '0' && c <= '9'))
        return ref_number(r);
    return ref_word(r, c == 't' ? "true" : c == 'f' ? "false" : "null");
}

static int ref_validate(const char *s, size_t n, int max_depth, struct ref *r)
{
    r->p = (const unsigned char *)s;
    r->n = n;
    r->i = 0;
    r->limit = max_depth < 0 ? 0 : max_depth > SB_JSON_MAX_DEPTH ? SB_JSON_MAX_DEPTH : max_depth;
    r->members = 0;
    ref_ws(r);
    if (!ref_value(r, 0))
        return SB_JSON_BAD;
    r->root_end = r->i;
    ref_ws(r);
    return r->i == n ? 0 : SB_JSON_BAD;
}

/* sb_json_validate and sb_json_validate_index against the reference, at several limits. */
static void check_reference(const char *s, size_t n)
{
    static const int depths[] = {SB_JSON_MAX_DEPTH, 64, 3, 1, 0, -1, SB_JSON_MAX_DEPTH + 5};
    static struct ref r; /* the members array makes it large for a fuzzer's stack */
    for (size_t d = 0; d < sizeof depths / sizeof depths[0]; d++) {
        int want = ref_validate(s, n, depths[d], &r);
        CHECK(sb_json_validate(s, n, depths[d]) == want);
        struct sb_json_index idx;
        CHECK(sb_json_validate_index(s, n, depths[d], &idx) == want);
        if (want != 0)
            continue;
        size_t lead = 0;
        while (lead < n &&
               (s[lead] == ' ' || s[lead] == '\t' || s[lead] == '\n' || s[lead] == '\r'))
            lead++;
        CHECK(idx.root.start == lead && idx.root.end == r.root_end &&
              idx.root.type == ref_type((unsigned char)s[lead]));
        if (idx.root.type != SB_JSON_OBJECT) {
            CHECK(idx.n == 0 && idx.complete);
            continue;
        }
        CHECK(idx.complete == (r.members <= SB_JSON_INDEX_MAX));
        CHECK(idx.n == (r.members < SB_JSON_INDEX_MAX ? r.members : SB_JSON_INDEX_MAX));
        for (size_t k = 0; k < idx.n; k++) {
            const struct sb_json_member *a = &idx.members[k], *b = &r.m[k];
            CHECK(a->key.start == b->key.start && a->key.end == b->key.end &&
                  a->key.type == SB_JSON_STRING);
            CHECK(a->value.start == b->value.start && a->value.end == b->value.end &&
                  a->value.type == b->value.type);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    if (size > (64u << 10))
        return 0;
    int ours = sb_json_validate(s, size, SB_JSON_MAX_DEPTH);
    CHECK(ours == 0 || ours == SB_JSON_BAD);
    check_reference(s, size);

    json_error_t err;
    json_t *j = json_loadb(s, size, FLAGS, &err);
    if (j && !memchr(s, '\0', size))
        CHECK(ours == 0);
    if (!j && ours == 0) {
        enum json_error_code c = json_error_code(&err);
        CHECK(c == json_error_numeric_overflow || c == json_error_stack_overflow ||
              c == json_error_out_of_memory || has_backslash_u(s, size));
    }

    if (ours != 0) {
        poke(s, size);
        json_decref(j);
        return 0;
    }

    struct sb_json_span r;
    CHECK(sb_json_root(s, size, &r) == 0);
    CHECK(r.end <= size);
    if (j)
        compare_value(s, size, &r, j);

    struct sb_buf out;
    sb_buf_init(&out, OUT_MAX);
    CHECK(sb_json_splice(s, size, &r, "null", 4, &out) == 0);
    check_out_valid(&out);
    sb_buf_reset(&out);
    CHECK(sb_json_splice(s, size, &r, s + r.start, r.end - r.start, &out) == 0);
    CHECK(out.len == size && memcmp(out.data, s, size) == 0);
    sb_buf_free(&out);

    if (r.type == SB_JSON_OBJECT)
        exercise_object(s, size, &r, j);
    else if (r.type == SB_JSON_ARRAY)
        exercise_array(s, size, &r, j);
    json_decref(j);
    return 0;
}

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
 *    show under ASan (the functions promise to stay inside [0, n) on unvalidated input). */
#include "json/scan.h"

#include <jansson.h>
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    if (size > (64u << 10))
        return 0;
    int ours = sb_json_validate(s, size, SB_JSON_MAX_DEPTH);
    CHECK(ours == 0 || ours == SB_JSON_BAD);

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

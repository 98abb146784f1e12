#include "json/scan.h"

#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define DEPTH 64

/* ---- Validation table ---------------------------------------------------------------- */

struct vcase {
    const char *doc;
    size_t len; /* 0: strlen(doc) */
    int max_depth;
    int want; /* 0 or SB_JSON_BAD */
    const char *why;
};

#define V(d, w)                                                                                    \
    {                                                                                              \
        d, 0, DEPTH, w, d                                                                          \
    }
#define VL(d, l, w, why)                                                                           \
    {                                                                                              \
        d, l, DEPTH, w, why                                                                        \
    }
#define VD(d, m, w)                                                                                \
    {                                                                                              \
        d, 0, m, w, d                                                                              \
    }
#define OK  0
#define BAD SB_JSON_BAD

static const struct vcase vcases[] = {
    /* every kind of value at the root */
    V("{}", OK),
    V("[]", OK),
    V("0", OK),
    V("-0", OK),
    V("7", OK),
    V("1.5e10", OK),
    V("-1.0E+2", OK),
    V("1e-2", OK),
    V("1E5", OK),
    V("0.000", OK),
    V("123456789012345678901234567890", OK),
    V("\"x\"", OK),
    V("\"\"", OK),
    V("true", OK),
    V("false", OK),
    V("null", OK),
    V(" \t\r\n{} \n", OK),
    V("{\"a\":[1,2,{\"b\":null}]}", OK),
    V("[1,\"a\",true,false,null,{},[]]", OK),
    V("{\"\":\"\"}", OK),
    V("{ \"a\" : 1 , \"b\" : [ ] }", OK),
    V("{\"a\":1,\"a\":2}", OK), /* duplicates are valid text; lookups refuse them */
    /* escapes */
    V("\"\\\" \\\\ \\/ \\b \\f \\n \\r \\t\"", OK),
    V("\"\\u00e9\\u00E9\"", OK),
    V("\"\\uABCD\\uabcd\"", OK),
    V("\"\\ud83d\\ude00\"", OK),
    V("\"\\ud800\"", OK), /* lone surrogate escapes are valid JSON text */
    V("\"\\udc00\"", OK),
    V("\"\\ude00\\ud83d\"", OK),
    V("\"\\u0000\"", OK),
    /* raw UTF-8 at the edges of each range */
    V("\"\xC2\x80\"", OK),
    V("\"\xC3\xA9t\xC3\xA9\"", OK),
    V("\"\xDF\xBF\"", OK),
    V("\"\xE0\xA0\x80\"", OK),
    V("\"\xE2\x82\xAC\"", OK),
    V("\"\xED\x9F\xBF\"", OK), /* U+D7FF */
    V("\"\xEE\x80\x80\"", OK), /* U+E000 */
    V("\"\xEF\xBF\xBF\"", OK),
    V("\"\xF0\x90\x80\x80\"", OK),
    V("\"\xF0\x9F\x98\x80\"", OK),
    V("\"\xF4\x8F\xBF\xBF\"", OK), /* U+10FFFF */
    V("\"\x7F\"", OK),
    V("\"0123456789abcdef0123456789abcdef\xC3\xA9 long enough for the word path\"", OK),
    /* depth */
    VD("[[[[]]]]", 4, OK),
    VD("[[[[]]]]", 3, BAD),
    VD("{\"a\":{\"b\":{}}}", 3, OK),
    VD("{\"a\":{\"b\":{\"c\":{}}}}", 3, BAD),
    VD("[{\"a\":[1]}]", 3, OK),
    VD("[{\"a\":[[1]]}]", 3, BAD),
    VD("1", 0, OK),
    VD("[]", 0, BAD),
    VD("[]", -1, BAD),
    /* structure */
    V("", BAD),
    V("   ", BAD),
    V("{", BAD),
    V("[", BAD),
    V("}", BAD),
    V("]", BAD),
    V("[1,]", BAD),
    V("{\"a\":1,}", BAD),
    V("{\"a\"}", BAD),
    V("{\"a\" 1}", BAD),
    V("{\"a\":}", BAD),
    V("{a:1}", BAD),
    V("{'a':1}", BAD),
    V("{1:1}", BAD),
    V("[1 2]", BAD),
    V("1 2", BAD),
    V("{}{}", BAD),
    V("{} x", BAD),
    V("\"a\"x", BAD),
    V("{\"a\":1}}", BAD),
    V("[]]", BAD),
    V("[}", BAD),
    V("{]", BAD),
    V("[1}", BAD),
    V("[\"a\":1]", BAD),
    V("{\"a\":1:2}", BAD),
    V(",", BAD),
    V("[,1]", BAD),
    V("[1,,2]", BAD),
    V("/*c*/{}", BAD),
    V("{\"a\":1 /*c*/}", BAD),
    /* whitespace is SP HT LF CR only */
    V("\f{}", BAD),
    V("\v1", BAD),
    V("\xC2\xA0{}", BAD),     /* NBSP */
    V("\xEF\xBB\xBF{}", BAD), /* a BOM is not whitespace */
    VL("{}\0", 3, BAD, "NUL after the value"),
    VL("\0", 1, BAD, "lone NUL"),
    /* numbers */
    V("01", BAD),
    V("-01", BAD),
    V("00", BAD),
    V("+1", BAD),
    V(".5", BAD),
    V("-.5", BAD),
    V("1.", BAD),
    V("1.e5", BAD),
    V("1e", BAD),
    V("1e+", BAD),
    V("1E-", BAD),
    V("-", BAD),
    V("--1", BAD),
    V("0x10", BAD),
    V("1_000", BAD),
    V("Infinity", BAD),
    V("-Infinity", BAD),
    V("NaN", BAD),
    /* literals */
    V("tru", BAD),
    V("True", BAD),
    V("nul", BAD),
    V("nulll", BAD),
    V("falsey", BAD),
    V("[true false]", BAD),
    /* strings */
    V("\"abc", BAD),
    V("\"abc\\\"", BAD),
    V("\"\\x\"", BAD),
    V("\"\\'\"", BAD),
    V("\"\\U0041\"", BAD),
    V("\"\\u12\"", BAD),
    V("\"\\u12G4\"", BAD),
    V("\"\\u\"", BAD),
    V("\"\\", BAD),
    V("\"a\tb\"", BAD),
    V("\"a\nb\"", BAD),
    V("\"\x01\"", BAD),
    V("\"\x1F\"", BAD),
    VL("\"a\0b\"", 5, BAD, "raw NUL in a string"),
    /* bad UTF-8 */
    V("\"\x80\"", BAD),
    V("\"\xBF\"", BAD),
    V("\"\xC0\x80\"", BAD), /* overlong NUL */
    V("\"\xC1\xBF\"", BAD),
    V("\"\xE0\x80\x80\"", BAD),
    V("\"\xE0\x9F\xBF\"", BAD),
    V("\"\xF0\x80\x80\x80\"", BAD),
    V("\"\xF0\x8F\xBF\xBF\"", BAD),
    V("\"\xED\xA0\x80\"", BAD), /* UTF-8-encoded surrogates */
    V("\"\xED\xBF\xBF\"", BAD),
    V("\"\xF4\x90\x80\x80\"", BAD), /* above U+10FFFF */
    V("\"\xF5\x80\x80\x80\"", BAD),
    V("\"\xF8\x88\x80\x80\x80\"", BAD),
    V("\"\xFE\"", BAD),
    V("\"\xFF\"", BAD),
    V("\"\xC3\"", BAD),
    V("\"\xC3", BAD),
    V("\"\xE2\x82\"", BAD),
    V("\"\xF0\x9F\x98\"", BAD),
    V("\"\xC3\x28\"", BAD),
    V("\"\xE2\x28\xA1\"", BAD),
    V("\xC3\xA9", BAD),
    V("{\"k\xFF\":1}", BAD),
};

static void test_validate_table(void **state)
{
    (void)state;
    size_t count = sizeof vcases / sizeof vcases[0];
    assert_true(count >= 60);
    size_t valid = 0, invalid = 0;
    for (size_t i = 0; i < count; i++) {
        const struct vcase *c = &vcases[i];
        size_t len = c->len ? c->len : strlen(c->doc);
        /* An exact-size copy, so a read past the end shows under ASan. */
        char *copy = malloc(len ? len : 1);
        assert_non_null(copy);
        memcpy(copy, c->doc, len);
        int got = sb_json_validate(copy, len, c->max_depth);
        if (got != c->want)
            print_error("case %zu (%s): got %d, want %d\n", i, c->why, got, c->want);
        assert_int_equal(got, c->want);
        free(copy);
        if (c->want == 0)
            valid++;
        else
            invalid++;
    }
    assert_true(valid >= 20);
    assert_true(invalid >= 40);
}

static void test_validate_null_and_prefixes(void **state)
{
    (void)state;
    assert_int_equal(sb_json_validate(NULL, 0, DEPTH), SB_JSON_BAD);
    /* Every proper prefix of a document that ends in a closing bracket is invalid. */
    const char *doc = "{\"a\":[1,-2.5e3,\"x\\u00e9\",true,null,{\"b\":false}]}";
    size_t n = strlen(doc);
    assert_int_equal(sb_json_validate(doc, n, DEPTH), 0);
    for (size_t k = 0; k < n; k++) {
        char *copy = malloc(k ? k : 1);
        assert_non_null(copy);
        memcpy(copy, doc, k);
        assert_int_equal(sb_json_validate(copy, k, DEPTH), SB_JSON_BAD);
        free(copy);
    }
}

static char *nested(size_t depth, size_t *len)
{
    char *s = malloc(2 * depth);
    assert_non_null(s);
    memset(s, '[', depth);
    memset(s + depth, ']', depth);
    *len = 2 * depth;
    return s;
}

static void test_validate_deep(void **state)
{
    (void)state;
    size_t len;
    char *s = nested(SB_JSON_MAX_DEPTH, &len);
    assert_int_equal(sb_json_validate(s, len, SB_JSON_MAX_DEPTH), 0);
    assert_int_equal(sb_json_validate(s, len, SB_JSON_MAX_DEPTH - 1), SB_JSON_BAD);
    free(s);
    /* Above the ceiling, a larger max_depth does not help: it is clamped. */
    s = nested(SB_JSON_MAX_DEPTH + 1, &len);
    assert_int_equal(sb_json_validate(s, len, SB_JSON_MAX_DEPTH * 4), SB_JSON_BAD);
    free(s);
    /* Alternate objects and arrays deeper than 64 so the kind stack crosses a word. */
    struct sb_buf b;
    sb_buf_init(&b, 1 << 20);
    for (int i = 0; i < 200; i++)
        assert_int_equal(sb_buf_append_str(&b, i % 3 ? "[" : "{\"k\":"), 0);
    assert_int_equal(sb_buf_append_str(&b, "1"), 0);
    for (int i = 199; i >= 0; i--)
        assert_int_equal(sb_buf_append_str(&b, i % 3 ? "]" : "}"), 0);
    assert_int_equal(sb_json_validate(b.data, b.len, 200), 0);
    assert_int_equal(sb_json_validate(b.data, b.len, 199), SB_JSON_BAD);
    /* Swap one closer for the wrong kind deep inside. */
    char *brace = strchr(b.data, ']');
    assert_non_null(brace);
    *brace = '}';
    assert_int_equal(sb_json_validate(b.data, b.len, 200), SB_JSON_BAD);
    sb_buf_free(&b);
}

/* ---- Root and lookups ---------------------------------------------------------------- */

static const char REQ[] =
    "{\"model\":\"gpt-4o\",\"stream\":true,\"stream_options\":{\"include_usage\":false},"
    "\"messages\":[{\"role\":\"user\",\"content\":\"say \\\"model\\\" {[\"}],\"n\":2,"
    "\"usage\":{\"prompt_tokens\":5,\"details\":{\"cached\":1}},\"x\":{\"model\":\"inner\"}}";

static struct sb_json_span root_of(const char *s, size_t n)
{
    struct sb_json_span r;
    assert_int_equal(sb_json_validate(s, n, DEPTH), 0);
    assert_int_equal(sb_json_root(s, n, &r), 0);
    return r;
}

static void assert_span_text(const char *s, const struct sb_json_span *v, const char *want)
{
    size_t len = strlen(want);
    assert_int_equal(v->end - v->start, len);
    assert_memory_equal(s + v->start, want, len);
}

static void test_root(void **state)
{
    (void)state;
    struct sb_json_span r;
    const char *s = "  \n[1, 2]\t ";
    assert_int_equal(sb_json_root(s, strlen(s), &r), 0);
    assert_int_equal(r.type, SB_JSON_ARRAY);
    assert_span_text(s, &r, "[1, 2]");
    s = " -12.5e3 ";
    assert_int_equal(sb_json_root(s, strlen(s), &r), 0);
    assert_int_equal(r.type, SB_JSON_NUMBER);
    assert_span_text(s, &r, "-12.5e3");
    s = "\"a\\\"]\"";
    assert_int_equal(sb_json_root(s, strlen(s), &r), 0);
    assert_int_equal(r.type, SB_JSON_STRING);
    assert_int_equal(r.end, strlen(s));
    assert_int_equal(sb_json_root("", 0, &r), SB_JSON_BAD);
    assert_int_equal(sb_json_root("   ", 3, &r), SB_JSON_BAD);
    assert_int_equal(sb_json_root("x", 1, &r), SB_JSON_BAD);
    assert_int_equal(sb_json_root("[1,", 3, &r), SB_JSON_BAD);
    assert_int_equal(sb_json_root("\"abc", 4, &r), SB_JSON_BAD);
    assert_int_equal(sb_json_root("tru", 3, &r), SB_JSON_BAD);
    assert_int_equal(sb_json_root(NULL, 0, &r), SB_JSON_BAD);
}

static void test_object_get(void **state)
{
    (void)state;
    size_t n = strlen(REQ);
    struct sb_json_span r = root_of(REQ, n);
    struct sb_json_member m;
    assert_int_equal(sb_json_object_get(REQ, n, &r, "model", &m), 0);
    assert_int_equal(m.value.type, SB_JSON_STRING);
    assert_span_text(REQ, &m.key, "\"model\"");
    assert_span_text(REQ, &m.value, "\"gpt-4o\"");
    assert_true(sb_json_string_eq(REQ, n, &m.value, "gpt-4o"));
    assert_false(sb_json_string_eq(REQ, n, &m.value, "gpt-4"));
    assert_false(sb_json_string_eq(REQ, n, &m.value, "gpt-4o-mini"));

    bool b = false;
    assert_int_equal(sb_json_object_get(REQ, n, &r, "stream", &m), 0);
    assert_int_equal(sb_json_bool(REQ, n, &m.value, &b), 0);
    assert_true(b);

    assert_int_equal(sb_json_object_get(REQ, n, &r, "messages", &m), 0);
    assert_int_equal(m.value.type, SB_JSON_ARRAY);
    assert_int_equal(sb_json_array_len(REQ, n, &m.value), 1);

    int64_t v = 0;
    assert_int_equal(sb_json_object_get(REQ, n, &r, "n", &m), 0);
    assert_int_equal(sb_json_int64(REQ, n, &m.value, &v), 0);
    assert_int_equal(v, 2);

    /* Not found: a prefix, a longer key, a key of a nested object, a string value. */
    assert_int_equal(sb_json_object_get(REQ, n, &r, "mode", &m), SB_JSON_NOT_FOUND);
    assert_int_equal(sb_json_object_get(REQ, n, &r, "models", &m), SB_JSON_NOT_FOUND);
    assert_int_equal(sb_json_object_get(REQ, n, &r, "include_usage", &m), SB_JSON_NOT_FOUND);
    assert_int_equal(sb_json_object_get(REQ, n, &r, "user", &m), SB_JSON_NOT_FOUND);
    assert_int_equal(sb_json_object_get(REQ, n, &r, "", &m), SB_JSON_NOT_FOUND);

    /* Wrong type or span. */
    struct sb_json_member arr;
    assert_int_equal(sb_json_object_get(REQ, n, &r, "messages", &arr), 0);
    assert_int_equal(sb_json_object_get(REQ, n, &arr.value, "role", &m), SB_JSON_BAD);
    struct sb_json_span bad = r;
    bad.type = SB_JSON_ARRAY;
    assert_int_equal(sb_json_object_get(REQ, n, &bad, "model", &m), SB_JSON_BAD);
    bad = r;
    bad.end = n + 1;
    assert_int_equal(sb_json_object_get(REQ, n, &bad, "model", &m), SB_JSON_BAD);
    bad = r;
    bad.start = 1;
    assert_int_equal(sb_json_object_get(REQ, n, &bad, "model", &m), SB_JSON_BAD);
    assert_int_equal(sb_json_object_get(REQ, n, &r, NULL, &m), SB_JSON_BAD);
}

static void test_object_get_escaped_and_duplicates(void **state)
{
    (void)state;
    struct sb_json_member m;
    const char *s = "{ \"mo\\u0064el\" : \"x\" }";
    size_t n = strlen(s);
    struct sb_json_span r = root_of(s, n);
    assert_int_equal(sb_json_object_get(s, n, &r, "model", &m), 0);
    assert_span_text(s, &m.value, "\"x\"");
    assert_int_equal(sb_json_object_get(s, n, &r, "mo\\u0064el", &m), SB_JSON_NOT_FOUND);

    s = "{\"a\\/b\\n\":1,\"\\ud83d\\ude00\":2,\"\\ud800\":3,\"caf\xC3\xA9\":4}";
    n = strlen(s);
    r = root_of(s, n);
    assert_int_equal(sb_json_object_get(s, n, &r, "a/b\n", &m), 0);
    assert_span_text(s, &m.value, "1");
    assert_int_equal(sb_json_object_get(s, n, &r, "\xF0\x9F\x98\x80", &m), 0);
    assert_span_text(s, &m.value, "2");
    assert_int_equal(sb_json_object_get(s, n, &r, "\xEF\xBF\xBD", &m), 0);
    assert_span_text(s, &m.value, "3");
    assert_int_equal(sb_json_object_get(s, n, &r, "caf\xC3\xA9", &m), 0);
    assert_span_text(s, &m.value, "4");
    assert_int_equal(sb_json_object_get(s, n, &r, "a/b", &m), SB_JSON_NOT_FOUND);

    /* A key with an escaped NUL never equals a C string. */
    s = "{\"model\\u0000\":1}";
    n = strlen(s);
    r = root_of(s, n);
    assert_int_equal(sb_json_object_get(s, n, &r, "model", &m), SB_JSON_NOT_FOUND);

    s = "{\"model\":\"a\",\"stream\":true,\"model\":\"b\"}";
    n = strlen(s);
    r = root_of(s, n);
    assert_int_equal(sb_json_object_get(s, n, &r, "model", &m), SB_JSON_DUPLICATE);
    assert_int_equal(sb_json_object_get(s, n, &r, "stream", &m), 0);

    /* The same key spelled two ways is still a duplicate. */
    s = "{\"model\":\"a\",\"mod\\u0065l\":\"b\"}";
    n = strlen(s);
    r = root_of(s, n);
    assert_int_equal(sb_json_object_get(s, n, &r, "model", &m), SB_JSON_DUPLICATE);

    /* Duplicates in a nested object do not matter at the top. */
    s = "{\"x\":{\"k\":1,\"k\":2},\"k\":3}";
    n = strlen(s);
    r = root_of(s, n);
    assert_int_equal(sb_json_object_get(s, n, &r, "k", &m), 0);
    assert_span_text(s, &m.value, "3");
    assert_int_equal(sb_json_object_get(s, n, &r, "x", &m), 0);
    assert_int_equal(sb_json_object_get(s, n, &m.value, "k", &m), SB_JSON_DUPLICATE);

    s = "{}";
    r = root_of(s, 2);
    assert_int_equal(sb_json_object_get(s, 2, &r, "k", &m), SB_JSON_NOT_FOUND);
    s = "{ \n }";
    r = root_of(s, strlen(s));
    assert_int_equal(sb_json_object_get(s, strlen(s), &r, "k", &m), SB_JSON_NOT_FOUND);
}

static void test_lookups_on_malformed_input(void **state)
{
    (void)state;
    /* Unvalidated input: answers may be anything but BAD-or-sane, never a read past n. */
    static const char *docs[] = {"{\"a\":",    "{\"a\" 1}",   "{\"a\":1,}", "{\"a\":1 \"b\":2}",
                                 "{\"a\":[1}", "{\"a\":tru}", "{,\"a\":1}", "{\"a\\"};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        size_t n = strlen(docs[i]);
        char *s = malloc(n);
        assert_non_null(s);
        memcpy(s, docs[i], n);
        struct sb_json_span obj = {0, n, SB_JSON_OBJECT};
        struct sb_json_member m;
        int rc = sb_json_object_get(s, n, &obj, "b", &m);
        assert_true(rc == SB_JSON_BAD || rc == SB_JSON_NOT_FOUND);
        struct sb_json_span out;
        rc = sb_json_path(s, n, &obj, "a.b", &out);
        assert_true(rc == SB_JSON_BAD || rc == SB_JSON_NOT_FOUND);
        free(s);
    }
    const char *s = "{\"a\":1,}";
    struct sb_json_span obj = {0, strlen(s), SB_JSON_OBJECT};
    struct sb_json_member m;
    assert_int_equal(sb_json_object_get(s, strlen(s), &obj, "b", &m), SB_JSON_BAD);
}

static void test_path(void **state)
{
    (void)state;
    size_t n = strlen(REQ);
    struct sb_json_span r = root_of(REQ, n), v;
    bool b = true;
    int64_t i = 0;
    assert_int_equal(sb_json_path(REQ, n, &r, "stream_options.include_usage", &v), 0);
    assert_int_equal(v.type, SB_JSON_FALSE);
    assert_int_equal(sb_json_bool(REQ, n, &v, &b), 0);
    assert_false(b);
    assert_int_equal(sb_json_path(REQ, n, &r, "usage.details.cached", &v), 0);
    assert_int_equal(sb_json_int64(REQ, n, &v, &i), 0);
    assert_int_equal(i, 1);
    assert_int_equal(sb_json_path(REQ, n, &r, "x.model", &v), 0);
    assert_true(sb_json_string_eq(REQ, n, &v, "inner"));
    assert_int_equal(sb_json_path(REQ, n, &r, "model", &v), 0);
    assert_true(sb_json_string_eq(REQ, n, &v, "gpt-4o"));
    assert_int_equal(sb_json_path(REQ, n, &r, "usage", &v), 0);
    assert_int_equal(v.type, SB_JSON_OBJECT);

    /* through an array, a string, a bool: not found */
    assert_int_equal(sb_json_path(REQ, n, &r, "messages.role", &v), SB_JSON_NOT_FOUND);
    assert_int_equal(sb_json_path(REQ, n, &r, "model.x", &v), SB_JSON_NOT_FOUND);
    assert_int_equal(sb_json_path(REQ, n, &r, "stream.x", &v), SB_JSON_NOT_FOUND);
    assert_int_equal(sb_json_path(REQ, n, &r, "usage.nope", &v), SB_JSON_NOT_FOUND);
    assert_int_equal(sb_json_path(REQ, n, &r, "nope.x", &v), SB_JSON_NOT_FOUND);
    struct sb_json_member m;
    assert_int_equal(sb_json_object_get(REQ, n, &r, "messages", &m), 0);
    assert_int_equal(sb_json_path(REQ, n, &m.value, "role", &v), SB_JSON_NOT_FOUND);

    assert_int_equal(sb_json_path(REQ, n, &r, "", &v), SB_JSON_BAD);
    assert_int_equal(sb_json_path(REQ, n, &r, "usage..cached", &v), SB_JSON_BAD);
    assert_int_equal(sb_json_path(REQ, n, &r, "usage.", &v), SB_JSON_BAD);
    assert_int_equal(sb_json_path(REQ, n, &r, ".usage", &v), SB_JSON_BAD);

    const char *s = "{\"u\":{\"t\":1,\"t\":2},\"u2\":{\"t\":3}}";
    r = root_of(s, strlen(s));
    assert_int_equal(sb_json_path(s, strlen(s), &r, "u.t", &v), SB_JSON_DUPLICATE);
    assert_int_equal(sb_json_path(s, strlen(s), &r, "u2.t", &v), 0);
    assert_span_text(s, &v, "3");
}

static void test_arrays(void **state)
{
    (void)state;
    const char *s = "[ 1, \"two\" ,{\"three\":[3]},[4,[5]], null ,\"]\",\"[\\\"\"]";
    size_t n = strlen(s);
    struct sb_json_span r = root_of(s, n), e;
    static const char *want[] = {"1",    "\"two\"", "{\"three\":[3]}", "[4,[5]]",
                                 "null", "\"]\"",   "\"[\\\"\""};
    static const enum sb_json_type types[] = {SB_JSON_NUMBER, SB_JSON_STRING, SB_JSON_OBJECT,
                                              SB_JSON_ARRAY,  SB_JSON_NULL,   SB_JSON_STRING,
                                              SB_JSON_STRING};
    size_t pos = 0, k = 0;
    while (sb_json_array_next(s, n, &r, &pos, &e) == 0) {
        assert_true(k < 7);
        assert_int_equal(e.type, types[k]);
        assert_span_text(s, &e, want[k]);
        k++;
    }
    assert_int_equal(k, 7);
    /* It stays at the end. */
    assert_int_equal(sb_json_array_next(s, n, &r, &pos, &e), SB_JSON_NOT_FOUND);
    assert_int_equal(sb_json_array_len(s, n, &r), 7);

    s = "[]";
    r = root_of(s, 2);
    pos = 0;
    assert_int_equal(sb_json_array_next(s, 2, &r, &pos, &e), SB_JSON_NOT_FOUND);
    assert_int_equal(sb_json_array_len(s, 2, &r), 0);
    s = "[ \n ]";
    r = root_of(s, strlen(s));
    assert_int_equal(sb_json_array_len(s, strlen(s), &r), 0);

    /* nested: an array inside an object */
    s = "{\"data\":[{\"i\":0},{\"i\":1}]}";
    n = strlen(s);
    r = root_of(s, n);
    struct sb_json_span d;
    assert_int_equal(sb_json_path(s, n, &r, "data", &d), 0);
    pos = 0;
    int64_t want_i = 0;
    while (sb_json_array_next(s, n, &d, &pos, &e) == 0) {
        struct sb_json_member m;
        int64_t got;
        assert_int_equal(sb_json_object_get(s, n, &e, "i", &m), 0);
        assert_int_equal(sb_json_int64(s, n, &m.value, &got), 0);
        assert_int_equal(got, want_i);
        want_i++;
    }
    assert_int_equal(want_i, 2);

    /* errors */
    assert_int_equal(sb_json_array_len(s, n, &r), SB_JSON_BAD); /* an object */
    pos = 0;
    assert_int_equal(sb_json_array_next(s, n, &r, &pos, &e), SB_JSON_BAD);
    pos = n + 10;
    assert_int_equal(sb_json_array_next(s, n, &d, &pos, &e), SB_JSON_BAD);
    pos = d.start + 2; /* inside an element, not after one */
    assert_int_equal(sb_json_array_next(s, n, &d, &pos, &e), SB_JSON_BAD);
    assert_int_equal(sb_json_array_next(s, n, &d, NULL, &e), SB_JSON_BAD);
    const char *bad = "[1 2]";
    struct sb_json_span br = {0, 5, SB_JSON_ARRAY};
    assert_int_equal(sb_json_array_len(bad, 5, &br), SB_JSON_BAD);
}

/* Long runs take the 8-bytes-at-a-time paths: indentation, and containers skipped whole
 * whose strings hold brackets. */
static void test_long_runs(void **state)
{
    (void)state;
    const char *s = "{\n                    \"x\": {\"aaaaaaaaaaaaaaaa\": \"]]]]]]]]}}}}}}}}[[[[\","
                    "\"b\": [[[[[[[[[\"\\\"]]]]]]]]]]\"]]]]]]]]], \"c\": \"{{{{{{{{{{{{\"},\n"
                    "                    \"k\"                :                 1\n"
                    "                                }";
    size_t n = strlen(s);
    struct sb_json_span r = root_of(s, n), v;
    assert_int_equal(sb_json_path(s, n, &r, "k", &v), 0);
    assert_span_text(s, &v, "1");
    assert_int_equal(sb_json_path(s, n, &r, "x.c", &v), 0);
    assert_true(sb_json_string_eq(s, n, &v, "{{{{{{{{{{{{"));
    assert_int_equal(sb_json_path(s, n, &r, "x.b", &v), 0);
    assert_int_equal(sb_json_array_len(s, n, &v), 1);
    /* A tab inside a run of spaces still counts as whitespace; a NBSP does not. */
    const char *t = "[1,        \t        2]";
    assert_int_equal(sb_json_validate(t, strlen(t), DEPTH), 0);
    const char *u = "[1,        \xC2\xA0       2]";
    assert_int_equal(sb_json_validate(u, strlen(u), DEPTH), SB_JSON_BAD);
}

/* ---- Scalars ------------------------------------------------------------------------- */

static void copy_case(const char *doc, const char *want, size_t want_len)
{
    size_t n = strlen(doc);
    struct sb_json_span r = root_of(doc, n);
    char out[64];
    size_t len = 12345;
    assert_int_equal(sb_json_string_copy(doc, n, &r, out, sizeof out, &len), 0);
    assert_int_equal(len, want_len);
    assert_memory_equal(out, want, want_len);
    assert_int_equal(out[len], '\0');
    /* Exactly enough room, then one byte short. */
    assert_int_equal(sb_json_string_copy(doc, n, &r, out, want_len + 1, &len), 0);
    assert_int_equal(len, want_len);
    if (want_len > 0) {
        len = 777;
        assert_int_equal(sb_json_string_copy(doc, n, &r, out, want_len, &len), SB_JSON_BAD);
        assert_int_equal(out[0], '\0');
        assert_int_equal(len, 777);
    }
    /* Equality agrees with the copy whenever there is no NUL inside. */
    if (memchr(want, '\0', want_len) == NULL) {
        char z[64];
        memcpy(z, want, want_len);
        z[want_len] = '\0';
        assert_true(sb_json_string_eq(doc, n, &r, z));
    }
}

static void test_string_copy(void **state)
{
    (void)state;
    copy_case("\"\"", "", 0);
    copy_case("\"plain\"", "plain", 5);
    copy_case("\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "a\"b\\c/d\b\f\n\r\t", 12);
    copy_case("\"\\u0041\\u00e9\\u20AC\"", "A\xC3\xA9\xE2\x82\xAC", 6);
    copy_case("\"\\ud83d\\ude00\"", "\xF0\x9F\x98\x80", 4);
    copy_case("\"\\uDBFF\\uDFFF\"", "\xF4\x8F\xBF\xBF", 4);
    copy_case("\"\\ud800\"", "\xEF\xBF\xBD", 3);
    copy_case("\"\\ud800x\"", "\xEF\xBF\xBDx", 4);
    copy_case("\"\\ud800\\ud800\"", "\xEF\xBF\xBD\xEF\xBF\xBD", 6);
    copy_case("\"\\ud800\\ud83d\\ude00\"", "\xEF\xBF\xBD\xF0\x9F\x98\x80", 7);
    copy_case("\"\\ud800\\u0041\"",
              "\xEF\xBF\xBD"
              "A",
              4);
    copy_case("\"\\ud800\\n\"", "\xEF\xBF\xBD\n", 4);
    copy_case("\"\\udc00\"", "\xEF\xBF\xBD", 3);
    copy_case("\"\\ude00\\ud83d\"", "\xEF\xBF\xBD\xEF\xBF\xBD", 6);
    copy_case("\"\\u0000\"", "\0", 1);
    copy_case("\"a\\u0000b\"", "a\0b", 3);
    copy_case("\"caf\xC3\xA9 \xF0\x9F\x98\x80\"", "caf\xC3\xA9 \xF0\x9F\x98\x80", 10);
    copy_case("\"\\u07FF\\u0800\\uFFFF\"", "\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF", 8);

    /* Not a string, no room at all, no output buffer. */
    const char *s = "[1,\"x\"]";
    size_t n = strlen(s);
    struct sb_json_span r = root_of(s, n);
    char out[8] = "junk";
    size_t len;
    assert_int_equal(sb_json_string_copy(s, n, &r, out, sizeof out, &len), SB_JSON_BAD);
    assert_int_equal(out[0], '\0');
    struct sb_json_span str = {3, 6, SB_JSON_STRING};
    assert_int_equal(sb_json_string_copy(s, n, &str, out, 0, &len), SB_JSON_BAD);
    assert_int_equal(sb_json_string_copy(s, n, &str, NULL, 8, &len), SB_JSON_BAD);
    assert_int_equal(sb_json_string_copy(s, n, &str, out, 2, &len), 0);
    assert_string_equal(out, "x");
    assert_int_equal(sb_json_string_copy(s, n, &str, out, 2, NULL), 0);
    struct sb_json_span off = {3, 9, SB_JSON_STRING};
    assert_int_equal(sb_json_string_copy(s, n, &off, out, 8, &len), SB_JSON_BAD);
    assert_false(sb_json_string_eq(s, n, &r, "x"));
    assert_false(sb_json_string_eq(s, n, &str, NULL));
    assert_false(sb_json_string_eq(s, n, &str, "xy"));
    assert_false(sb_json_string_eq(s, n, &str, ""));

    s = "\"a\\u00e9\"";
    r = root_of(s, strlen(s));
    assert_true(sb_json_string_eq(s, strlen(s), &r, "a\xC3\xA9"));
    assert_false(sb_json_string_eq(s, strlen(s), &r, "a\xC3"));
    assert_false(sb_json_string_eq(s, strlen(s), &r, "a\xC3\xA9!"));
    assert_false(sb_json_string_eq(s, strlen(s), &r, "a\\u00e9"));
}

static int int_of(const char *doc, int64_t *out)
{
    size_t n = strlen(doc);
    struct sb_json_span r;
    assert_int_equal(sb_json_root(doc, n, &r), 0);
    return sb_json_int64(doc, n, &r, out);
}

static void test_int64(void **state)
{
    (void)state;
    int64_t v = 99;
    assert_int_equal(int_of("0", &v), 0);
    assert_int_equal(v, 0);
    v = 99;
    assert_int_equal(int_of("-0", &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(int_of("42", &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(int_of(" -42 ", &v), 0);
    assert_int_equal(v, -42);
    assert_int_equal(int_of("9223372036854775807", &v), 0);
    assert_true(v == INT64_MAX);
    assert_int_equal(int_of("-9223372036854775808", &v), 0);
    assert_true(v == INT64_MIN);
    assert_int_equal(int_of("9223372036854775806", &v), 0);
    assert_true(v == INT64_MAX - 1);
    v = 5;
    assert_int_equal(int_of("9223372036854775808", &v), SB_JSON_BAD);
    assert_int_equal(int_of("-9223372036854775809", &v), SB_JSON_BAD);
    assert_int_equal(int_of("18446744073709551616", &v), SB_JSON_BAD);
    assert_int_equal(int_of("99999999999999999999", &v), SB_JSON_BAD);
    assert_int_equal(v, 5); /* untouched on failure */
    assert_int_equal(int_of("1.0", &v), SB_JSON_BAD);
    assert_int_equal(int_of("1e3", &v), SB_JSON_BAD);
    assert_int_equal(int_of("1E3", &v), SB_JSON_BAD);
    assert_int_equal(int_of("-1.5", &v), SB_JSON_BAD);
    assert_int_equal(int_of("0e0", &v), SB_JSON_BAD);
    /* Not numbers. */
    assert_int_equal(int_of("\"1\"", &v), SB_JSON_BAD);
    assert_int_equal(int_of("true", &v), SB_JSON_BAD);
    assert_int_equal(int_of("null", &v), SB_JSON_BAD);
    /* Spans that did not come from a validated document. */
    struct sb_json_span sp = {0, 2, SB_JSON_NUMBER};
    assert_int_equal(sb_json_int64("01", 2, &sp, &v), SB_JSON_BAD);
    assert_int_equal(sb_json_int64("--", 2, &sp, &v), SB_JSON_BAD);
    sp.end = 1;
    assert_int_equal(sb_json_int64("-", 1, &sp, &v), SB_JSON_BAD);
    sp.end = 3;
    assert_int_equal(sb_json_int64("12", 2, &sp, &v), SB_JSON_BAD);
    sp.end = 2;
    assert_int_equal(sb_json_int64("12", 2, &sp, NULL), SB_JSON_BAD);
}

static void test_bool(void **state)
{
    (void)state;
    bool b;
    struct sb_json_span r;
    assert_int_equal(sb_json_root("true", 4, &r), 0);
    b = false;
    assert_int_equal(sb_json_bool("true", 4, &r, &b), 0);
    assert_true(b);
    assert_int_equal(sb_json_root("false", 5, &r), 0);
    b = true;
    assert_int_equal(sb_json_bool("false", 5, &r, &b), 0);
    assert_false(b);
    assert_int_equal(sb_json_root("null", 4, &r), 0);
    assert_int_equal(sb_json_bool("null", 4, &r, &b), SB_JSON_BAD);
    assert_int_equal(sb_json_root("1", 1, &r), 0);
    assert_int_equal(sb_json_bool("1", 1, &r, &b), SB_JSON_BAD);
    assert_int_equal(sb_json_root("\"true\"", 6, &r), 0);
    assert_int_equal(sb_json_bool("\"true\"", 6, &r, &b), SB_JSON_BAD);
    struct sb_json_span lie = {0, 4, SB_JSON_TRUE};
    assert_int_equal(sb_json_bool("null", 4, &lie, &b), SB_JSON_BAD);
}

/* ---- Splicing ------------------------------------------------------------------------ */

static void assert_out(struct sb_buf *b, const char *want)
{
    assert_int_equal(b->len, strlen(want));
    assert_memory_equal(b->data, want, b->len);
    assert_int_equal(sb_json_validate(b->data, b->len, DEPTH), 0);
}

static void test_splice(void **state)
{
    (void)state;
    const char *s = "{\"model\":\"gpt-4o\", \"messages\":[]}";
    size_t n = strlen(s);
    struct sb_json_span r = root_of(s, n);
    struct sb_json_member m;
    struct sb_buf b;
    sb_buf_init(&b, 1024);
    assert_int_equal(sb_json_object_get(s, n, &r, "model", &m), 0);
    const char *repl = "\"openai/gpt-4o-2024-08-06\"";
    assert_int_equal(sb_json_splice(s, n, &m.value, repl, strlen(repl), &b), 0);
    assert_out(&b, "{\"model\":\"openai/gpt-4o-2024-08-06\", \"messages\":[]}");

    /* Appends after what is already there. */
    assert_int_equal(sb_json_splice(s, n, &r, "1", 1, &b), 0);
    assert_int_equal(b.len, strlen("{\"model\":\"openai/gpt-4o-2024-08-06\", \"messages\":[]}1"));

    /* The root, with whitespace around it. */
    sb_buf_reset(&b);
    s = " [1] ";
    r = root_of(s, 5);
    assert_int_equal(sb_json_splice(s, 5, &r, "{}", 2, &b), 0);
    assert_out(&b, " {} ");

    /* An empty span inserts. */
    sb_buf_reset(&b);
    struct sb_json_span at = {2, 2, SB_JSON_INVALID};
    assert_int_equal(sb_json_splice(s, 5, &at, "1,", 2, &b), 0);
    assert_out(&b, " [1,1] ");

    /* Errors leave the buffer as it was. */
    sb_buf_reset(&b);
    struct sb_json_span past = {2, 6, SB_JSON_NUMBER};
    assert_int_equal(sb_json_splice(s, 5, &past, "x", 1, &b), SB_JSON_BAD);
    struct sb_json_span backwards = {3, 2, SB_JSON_NUMBER};
    assert_int_equal(sb_json_splice(s, 5, &backwards, "x", 1, &b), SB_JSON_BAD);
    assert_int_equal(sb_json_splice(s, 5, &r, NULL, 1, &b), SB_JSON_BAD);
    assert_int_equal(sb_json_splice(s, 5, &r, "x", 1, NULL), SB_JSON_BAD);
    assert_int_equal(b.len, 0);
    sb_buf_free(&b);

    struct sb_buf small;
    sb_buf_init(&small, 4);
    assert_int_equal(sb_buf_append_str(&small, "ab"), 0);
    assert_int_equal(sb_json_splice(s, 5, &r, "{}", 2, &small), -E2BIG);
    assert_int_equal(small.len, 2);
    assert_string_equal(small.data, "ab");
    sb_buf_free(&small);
}

static void remove_case(const char *doc, const char *path_to_obj, const char *key, const char *want)
{
    size_t n = strlen(doc);
    struct sb_json_span obj = root_of(doc, n);
    if (path_to_obj)
        assert_int_equal(sb_json_path(doc, n, &obj, path_to_obj, &obj), 0);
    struct sb_json_member m;
    assert_int_equal(sb_json_object_get(doc, n, &obj, key, &m), 0);
    struct sb_buf b;
    sb_buf_init(&b, 4096);
    assert_int_equal(sb_json_remove_member(doc, n, &obj, &m, &b), 0);
    assert_out(&b, want);
    /* The key is gone from the result. */
    struct sb_json_span r2 = root_of(b.data, b.len);
    if (path_to_obj)
        assert_int_equal(sb_json_path(b.data, b.len, &r2, path_to_obj, &r2), 0);
    assert_int_equal(sb_json_object_get(b.data, b.len, &r2, key, &m), SB_JSON_NOT_FOUND);
    sb_buf_free(&b);
}

static void test_remove_member(void **state)
{
    (void)state;
    /* only member */
    remove_case("{\"usage\":null}", NULL, "usage", "{}");
    remove_case("{ \"usage\" : null }", NULL, "usage", "{}");
    remove_case("{\n  \"usage\": null\n}", NULL, "usage", "{}");
    /* first */
    remove_case("{\"a\":1,\"b\":2,\"c\":3}", NULL, "a", "{\"b\":2,\"c\":3}");
    remove_case("{ \"a\" : 1 , \"b\" : 2 }", NULL, "a", "{ \"b\" : 2 }");
    remove_case("{\n  \"a\": 1,\n  \"b\": 2\n}", NULL, "a", "{\n  \"b\": 2\n}");
    /* middle */
    remove_case("{\"a\":1,\"b\":2,\"c\":3}", NULL, "b", "{\"a\":1,\"c\":3}");
    remove_case("{\n  \"a\": 1,\n  \"b\": [2],\n  \"c\": 3\n}", NULL, "b",
                "{\n  \"a\": 1,\n  \"c\": 3\n}");
    remove_case("{\"a\":1 , \"b\":{\"x\":\"}\"} ,\"c\":3}", NULL, "b", "{\"a\":1 ,\"c\":3}");
    /* last */
    remove_case("{\"a\":1,\"b\":2,\"c\":3}", NULL, "c", "{\"a\":1,\"b\":2}");
    remove_case("{\n  \"a\": 1,\n  \"b\": 2\n}", NULL, "b", "{\n  \"a\": 1\n}");
    remove_case("{\"a\":1, \"b\":2 }", NULL, "b", "{\"a\":1 }");
    /* nested object, each position */
    remove_case("{\"x\":{\"usage\":null,\"k\":1},\"y\":2}", "x", "usage",
                "{\"x\":{\"k\":1},\"y\":2}");
    remove_case("{\"x\":{\"k\":1,\"usage\":null},\"y\":2}", "x", "usage",
                "{\"x\":{\"k\":1},\"y\":2}");
    remove_case("{\"x\":{\"usage\":null},\"y\":2}", "x", "usage", "{\"x\":{},\"y\":2}");
    /* an SSE chunk as OpenAI sends it with include_usage */
    remove_case("{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
                "\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}",
                NULL, "usage",
                "{\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,"
                "\"delta\":{\"content\":\"Hi\"}}]}");
    /* an escaped key */
    remove_case("{\"a\":1,\"us\\u0061ge\":null}", NULL, "usage", "{\"a\":1}");

    /* A member that is not in that object. */
    const char *s = "{\"a\":1,\"x\":{\"a\":2}}";
    size_t n = strlen(s);
    struct sb_json_span r = root_of(s, n), x;
    struct sb_json_member m;
    struct sb_buf b;
    sb_buf_init(&b, 4096);
    assert_int_equal(sb_json_path(s, n, &r, "x", &x), 0);
    assert_int_equal(sb_json_object_get(s, n, &x, "a", &m), 0);
    assert_int_equal(sb_json_remove_member(s, n, &r, &m, &b), SB_JSON_NOT_FOUND);
    struct sb_json_member fake = {{1, 2, SB_JSON_STRING}, {3, 4, SB_JSON_NUMBER}};
    assert_int_equal(sb_json_remove_member(s, n, &r, &fake, &b), SB_JSON_NOT_FOUND);
    assert_int_equal(sb_json_remove_member(s, n, &r, NULL, &b), SB_JSON_BAD);
    struct sb_json_span arr = {0, n, SB_JSON_ARRAY};
    assert_int_equal(sb_json_object_get(s, n, &r, "a", &m), 0);
    assert_int_equal(sb_json_remove_member(s, n, &arr, &m, &b), SB_JSON_BAD);
    assert_int_equal(b.len, 0);
    sb_buf_free(&b);

    /* At the cap: out unchanged. */
    sb_buf_init(&b, 8);
    assert_int_equal(sb_json_remove_member(s, n, &r, &m, &b), -E2BIG);
    assert_int_equal(b.len, 0);
    sb_buf_free(&b);
}

static void append_case(const char *doc, const char *path_to_obj, const char *member,
                        const char *want)
{
    size_t n = strlen(doc);
    struct sb_json_span obj = root_of(doc, n);
    if (path_to_obj)
        assert_int_equal(sb_json_path(doc, n, &obj, path_to_obj, &obj), 0);
    struct sb_buf b;
    sb_buf_init(&b, 4096);
    assert_int_equal(sb_json_append_member(doc, n, &obj, member, strlen(member), &b), 0);
    assert_out(&b, want);
    sb_buf_free(&b);
}

static void test_append_member(void **state)
{
    (void)state;
    append_case("{}", NULL, "\"k\":1", "{\"k\":1}");
    append_case("{ }", NULL, "\"k\":1", "{\"k\":1 }");
    append_case("{\n}", NULL, "\"k\":1", "{\"k\":1\n}");
    append_case("{\"a\":1}", NULL, "\"k\":1", "{\"a\":1,\"k\":1}");
    append_case("{\"a\":1 }", NULL, "\"k\":1", "{\"a\":1,\"k\":1 }");
    append_case("{\n  \"a\": \"}\"\n}\n", NULL, "\"k\":1", "{\n  \"a\": \"}\",\"k\":1\n}\n");
    append_case("{\"a\":{},\"b\":[]}", "a", "\"k\":1", "{\"a\":{\"k\":1},\"b\":[]}");
    append_case("{\"a\":{\"x\":1},\"b\":[]}", "a", "\"k\":1", "{\"a\":{\"x\":1,\"k\":1},\"b\":[]}");
    append_case("{\"model\":\"m\",\"stream\":true}", NULL,
                "\"stream_options\":{\"include_usage\":true}",
                "{\"model\":\"m\",\"stream\":true,\"stream_options\":{\"include_usage\":true}}");

    const char *s = "[{}]";
    struct sb_json_span r = root_of(s, 4);
    struct sb_buf b;
    sb_buf_init(&b, 8);
    assert_int_equal(sb_json_append_member(s, 4, &r, "\"k\":1", 5, &b), SB_JSON_BAD);
    struct sb_json_span e;
    size_t pos = 0;
    assert_int_equal(sb_json_array_next(s, 4, &r, &pos, &e), 0);
    assert_int_equal(sb_json_append_member(s, 4, &e, NULL, 0, &b), SB_JSON_BAD);
    assert_int_equal(sb_json_append_member(s, 4, &e, "\"k\":1", 5, &b), -E2BIG);
    assert_int_equal(b.len, 0);
    assert_int_equal(sb_json_append_member(s, 4, &e, "\"k\":", 4, &b), 0);
    assert_int_equal(b.len, 8);
    assert_memory_equal(b.data, "[{\"k\":}]", 8);
    sb_buf_free(&b);
}

/* The gateway's request rewrite, end to end: new model, stream_options forced on. */
static void test_request_rewrite(void **state)
{
    (void)state;
    const char *s = "{\n  \"model\": \"fast\",\n  \"stream\": true,\n  \"stream_options\": "
                    "{\"include_usage\": false},\n  \"messages\": [{\"role\": \"user\", "
                    "\"content\": \"hi\"}]\n}";
    size_t n = strlen(s);
    struct sb_json_span r = root_of(s, n), v;
    assert_int_equal(sb_json_path(s, n, &r, "stream_options.include_usage", &v), 0);
    struct sb_buf one, two;
    sb_buf_init(&one, 4096);
    sb_buf_init(&two, 4096);
    assert_int_equal(sb_json_splice(s, n, &v, "true", 4, &one), 0);
    struct sb_json_span r1 = root_of(one.data, one.len);
    struct sb_json_member m;
    assert_int_equal(sb_json_object_get(one.data, one.len, &r1, "model", &m), 0);
    assert_int_equal(sb_json_splice(one.data, one.len, &m.value, "\"gpt-4o-mini\"", 13, &two), 0);
    assert_out(&two, "{\n  \"model\": \"gpt-4o-mini\",\n  \"stream\": true,\n  \"stream_options\": "
                     "{\"include_usage\": true},\n  \"messages\": [{\"role\": \"user\", "
                     "\"content\": \"hi\"}]\n}");
    sb_buf_free(&one);
    sb_buf_free(&two);
}

/* ---- Fixtures ------------------------------------------------------------------------ */

#define FIXTURE_MAX (4u << 20)

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(FIXTURE_MAX);
    assert_non_null(buf);
    size_t got = fread(buf, 1, FIXTURE_MAX, f);
    assert_false(ferror(f));
    assert_true(got < FIXTURE_MAX);
    fclose(f);
    *len = got;
    return buf;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static int64_t usage_field(const char *s, size_t n, const struct sb_json_span *r, const char *path,
                           bool *present)
{
    struct sb_json_span v;
    int rc = sb_json_path(s, n, r, path, &v);
    *present = rc == 0;
    if (rc == SB_JSON_NOT_FOUND)
        return 0;
    assert_int_equal(rc, 0);
    int64_t out = -1;
    assert_int_equal(sb_json_int64(s, n, &v, &out), 0);
    assert_true(out >= 0);
    return out;
}

static void test_fixtures(void **state)
{
    (void)state;
    static const char *dirs[] = {"openai", "anthropic", "gemini", "other"};
    size_t files = 0, usage_checked = 0;
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        char dir[1024];
        int w = snprintf(dir, sizeof dir, "%s/tests/data/fixtures/%s", SB_SOURCE_DIR, dirs[d]);
        assert_true(w > 0 && (size_t)w < sizeof dir);
        DIR *dp = opendir(dir);
        assert_non_null(dp);
        struct dirent *e;
        while ((e = readdir(dp)) != NULL) {
            if (!ends_with(e->d_name, ".json"))
                continue;
            char path[2048];
            w = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            assert_true(w > 0 && (size_t)w < sizeof path);
            size_t n;
            char *s = read_file(path, &n);
            int rc = sb_json_validate(s, n, DEPTH);
            if (rc != 0)
                print_error("fixture %s does not validate\n", path);
            assert_int_equal(rc, 0);
            struct sb_json_span r;
            assert_int_equal(sb_json_root(s, n, &r), 0);
            files++;

            bool usage_file =
                d == 0 && ends_with(e->d_name, ".response.json") &&
                (starts_with(e->d_name, "chat") || starts_with(e->d_name, "azure_chat") ||
                 starts_with(e->d_name, "embeddings"));
            if (usage_file) {
                bool has_p, has_c, has_t;
                int64_t p = usage_field(s, n, &r, "usage.prompt_tokens", &has_p);
                int64_t c = usage_field(s, n, &r, "usage.completion_tokens", &has_c);
                int64_t t = usage_field(s, n, &r, "usage.total_tokens", &has_t);
                assert_true(has_p);
                assert_true(has_t);
                assert_true(p > 0);
                if (has_c)
                    assert_int_equal(t, p + c);
                else
                    assert_int_equal(t, p);
                usage_checked++;
            }
            free(s);
        }
        closedir(dp);
    }
    assert_true(files >= 50);
    assert_true(usage_checked >= 6);
}

static void test_object_get_many(void **state)
{
    (void)state;
    static const char doc[] = "{\"model\":\"a\",\"messages\":[{\"model\":1}],"
                              "\"str\\u0065am\":true,\"x\":{\"stream\":2},\"model\":\"b\"}";
    size_t n = sizeof doc - 1;
    struct sb_json_span root;
    assert_int_equal(sb_json_root(doc, n, &root), 0);
    static const char *const keys[] = {"model", "stream", "stream_options", "x"};
    struct sb_json_member m[4];
    int c[4];
    assert_int_equal(sb_json_object_get_many(doc, n, &root, keys, 4, m, c), 0);
    /* Only root members count: nested "model" and "stream" keys are not seen. */
    assert_int_equal(c[0], 2); /* a duplicate, reported, first occurrence kept */
    assert_true(sb_json_string_eq(doc, n, &m[0].value, "a"));
    assert_int_equal(c[1], 1); /* matched through the \u escape */
    assert_int_equal(m[1].value.type, SB_JSON_TRUE);
    assert_int_equal(c[2], 0);
    assert_int_equal(m[2].value.type, SB_JSON_INVALID);
    assert_int_equal(c[3], 1);
    assert_int_equal(m[3].value.type, SB_JSON_OBJECT);
    /* Agrees with the one-key lookup for single keys. */
    struct sb_json_member one;
    assert_int_equal(sb_json_object_get(doc, n, &root, "x", &one), 0);
    assert_int_equal(one.value.start, m[3].value.start);
    assert_int_equal(one.value.end, m[3].value.end);
    /* Not an object, too many keys, malformed members. */
    struct sb_json_span arr = m[3].value;
    arr.type = SB_JSON_ARRAY;
    assert_int_equal(sb_json_object_get_many(doc, n, &arr, keys, 4, m, c), SB_JSON_BAD);
    static const char *many[SB_JSON_MANY_MAX + 1];
    for (size_t i = 0; i <= SB_JSON_MANY_MAX; i++)
        many[i] = "k";
    struct sb_json_member mm[SB_JSON_MANY_MAX + 1];
    int cc[SB_JSON_MANY_MAX + 1];
    assert_int_equal(sb_json_object_get_many(doc, n, &root, many, SB_JSON_MANY_MAX + 1, mm, cc),
                     SB_JSON_BAD);
    static const char bad[] = "{\"model\":\"a\" \"stream\":true}";
    struct sb_json_span broot = {0, sizeof bad - 1, SB_JSON_OBJECT};
    assert_int_equal(sb_json_object_get_many(bad, sizeof bad - 1, &broot, keys, 2, m, c),
                     SB_JSON_BAD);
}

static void test_validate_index(void **state)
{
    (void)state;
    static const char doc[] = " {\"id\":\"x\",\"choices\":[{\"usage\":1,\"a\":{\"b\":[]}}],"
                              "\"e\":{},\"mo\\u0064el\":\"m\",\"usage\":{\"prompt_tokens\":3},"
                              "\"model\":null,\"z\":-1.5e3} ";
    size_t n = sizeof doc - 1;
    struct sb_json_index idx;
    assert_int_equal(sb_json_validate_index(doc, n, 64, &idx), 0);
    struct sb_json_span root;
    assert_int_equal(sb_json_root(doc, n, &root), 0);
    assert_int_equal(idx.root.start, root.start);
    assert_int_equal(idx.root.end, root.end);
    assert_int_equal(idx.root.type, SB_JSON_OBJECT);
    assert_int_equal(idx.n, 7);
    assert_true(idx.complete);
    /* Each recorded member matches a scan for its key. */
    static const char *const keys[] = {"id", "choices", "e", "usage", "model", "z", "absent"};
    struct sb_json_member a[7], b[7];
    int ca[7], cb[7];
    assert_int_equal(sb_json_index_get_many(doc, n, &idx, keys, 7, a, ca), 0);
    assert_int_equal(sb_json_object_get_many(doc, n, &root, keys, 7, b, cb), 0);
    for (int k = 0; k < 7; k++) {
        assert_int_equal(ca[k], cb[k]);
        assert_int_equal(a[k].value.start, b[k].value.start);
        assert_int_equal(a[k].value.end, b[k].value.end);
        assert_int_equal(a[k].value.type, b[k].value.type);
        assert_int_equal(a[k].key.start, b[k].key.start);
    }
    assert_int_equal(ca[4], 2); /* "mo\u0064el" and "model" are the same key */
    assert_int_equal(ca[6], 0);
    assert_int_equal(a[2].value.type, SB_JSON_OBJECT);
    assert_int_equal(a[5].value.type, SB_JSON_NUMBER);

    /* Invalid documents fail exactly as sb_json_validate does. */
    static const char *const bad[] = {"{\"a\":1,}", "{\"a\" 1}", "[1,]", "{\"a\":{\"b\":}}", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sb_json_validate_index(bad[i], strlen(bad[i]), 64, &idx), SB_JSON_BAD);

    /* A root array or scalar: the root span, no members. */
    static const char arr[] = " [1,{\"a\":2}] ";
    assert_int_equal(sb_json_validate_index(arr, sizeof arr - 1, 64, &idx), 0);
    assert_int_equal(idx.root.type, SB_JSON_ARRAY);
    assert_int_equal(idx.n, 0);
    assert_int_equal(idx.root.start, 1);
    assert_int_equal(idx.root.end, sizeof arr - 2);

    /* More members than the index holds: lookups fall back to a scan and still agree. */
    char big[4096];
    size_t len = 0;
    big[len++] = '{';
    for (int i = 0; i < SB_JSON_INDEX_MAX + 5; i++)
        len += (size_t)snprintf(big + len, sizeof big - len, "%s\"k%d\":%d", i ? "," : "", i, i);
    big[len++] = '}';
    assert_int_equal(sb_json_validate_index(big, len, 64, &idx), 0);
    assert_false(idx.complete);
    static const char *const last[] = {"k36", "k0"};
    assert_int_equal(sb_json_index_get_many(big, len, &idx, last, 2, a, ca), 0);
    assert_int_equal(ca[0], 1);
    assert_int_equal(ca[1], 1);
    int64_t v;
    assert_int_equal(sb_json_int64(big, len, &a[0].value, &v), 0);
    assert_int_equal(v, 36);
}

/* ---- Block boundaries ------------------------------------------------------------------
 * Strings, keys and skipped values are scanned 16 and 8 bytes at a time while that many
 * bytes remain, then byte by byte. Every case below runs on an exactly sized heap copy, so a
 * read past the end shows under ASan, and it is placed so that the byte of interest falls at
 * every offset of a block, and the document ends at every offset too. */

static int validate_exact(const char *doc, size_t n)
{
    char *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, doc, n);
    int rc = sb_json_validate(copy, n, DEPTH);
    struct sb_json_index idx;
    assert_int_equal(sb_json_validate_index(copy, n, DEPTH, &idx), rc);
    free(copy);
    return rc;
}

/* "<pre><ins><post>" as a root string, and as a value and a key of a root object. */
static void string_case(size_t pre, const char *ins, size_t ins_len, size_t post, int want)
{
    char doc[160];
    size_t n = 0;
    assert_true(pre + ins_len + post + 16 < sizeof doc);
    doc[n++] = '"';
    memset(doc + n, 'a', pre);
    n += pre;
    memcpy(doc + n, ins, ins_len);
    n += ins_len;
    memset(doc + n, 'b', post);
    n += post;
    doc[n++] = '"';
    assert_int_equal(validate_exact(doc, n), want);

    char obj[200];
    size_t m = 0;
    memcpy(obj + m, "{\"k\":", 5);
    m += 5;
    memcpy(obj + m, doc, n);
    m += n;
    obj[m++] = '}';
    assert_int_equal(validate_exact(obj, m), want);
    m = 0;
    obj[m++] = '{';
    memcpy(obj + m, doc, n);
    m += n;
    memcpy(obj + m, ":1}", 3);
    m += 3;
    assert_int_equal(validate_exact(obj, m), want);
}

static void test_string_block_boundaries(void **state)
{
    (void)state;
    /* plain strings of every length up to past two blocks, closed and not */
    for (size_t len = 0; len <= 40; len++) {
        string_case(len, "", 0, 0, OK);
        char doc[64];
        doc[0] = '"';
        memset(doc + 1, 'a', len);
        assert_int_equal(validate_exact(doc, len + 1), BAD);
        /* a backslash as the very last byte: the escape is cut short */
        doc[len + 1] = '\\';
        assert_int_equal(validate_exact(doc, len + 2), BAD);
    }
    static const struct {
        const char *ins;
        size_t len;
        int want;
    } ins[] = {
        {"\\n", 2, OK},
        {"\\\"", 2, OK},
        {"\\\\", 2, OK},
        {"\\/", 2, OK},
        {"\\u00e9", 6, OK},
        {"\\uD83D\\uDE00", 12, OK},
        {"\\ud800", 6, OK}, /* lone surrogate escape: valid text */
        {"\\u00g9", 6, BAD},
        {"\\x", 2, BAD},
        {"\\U00e9", 6, BAD},
        {"\x7f", 1, OK},
        {"\xc3\xa9", 2, OK},
        {"\xe2\x82\xac", 3, OK},
        {"\xf0\x9f\x98\x80", 4, OK},
        {"\xf4\x8f\xbf\xbf", 4, OK},
        {"\xef\xbf\xbf", 3, OK},
        {"\x00", 1, BAD},
        {"\x01", 1, BAD},
        {"\t", 1, BAD},
        {"\n", 1, BAD},
        {"\x1f", 1, BAD},
        {"\x80", 1, BAD},     /* lone continuation byte */
        {"\xc0\x80", 2, BAD}, /* overlong */
        {"\xc1\xbf", 2, BAD},
        {"\xe0\x80\x80", 3, BAD},
        {"\xe0\x9f\xbf", 3, BAD},
        {"\xed\xa0\x80", 3, BAD}, /* UTF-8 encoded surrogate */
        {"\xf0\x8f\xbf\xbf", 4, BAD},
        {"\xf4\x90\x80\x80", 4, BAD}, /* above U+10FFFF */
        {"\xf5\x80\x80\x80", 4, BAD},
        {"\xff", 1, BAD},
        {"\xc3", 1, BAD}, /* truncated by the next byte */
        {"\xe2\x82", 2, BAD},
        {"\xf0\x9f\x98", 3, BAD},
        {"\xc3\xc3", 2, BAD},
    };
    for (size_t k = 0; k < sizeof ins / sizeof ins[0]; k++)
        for (size_t pre = 0; pre <= 33; pre++)
            for (size_t post = 0; post <= 17; post += 1)
                string_case(pre, ins[k].ins, ins[k].len, post, ins[k].want);
}

/* A string cut inside an escape or a UTF-8 sequence at the buffer's end. */
static void test_string_cut_at_end(void **state)
{
    (void)state;
    static const char *const tails[] = {"\\",     "\\u",      "\\u0",         "\\u00",
                                        "\\u00e", "\xc3",     "\xe2",         "\xe2\x82",
                                        "\xf0",   "\xf0\x9f", "\xf0\x9f\x98", "\xe9"};
    for (size_t t = 0; t < sizeof tails / sizeof tails[0]; t++) {
        for (size_t pre = 0; pre <= 34; pre++) {
            char doc[64];
            size_t n = 0;
            doc[n++] = '"';
            memset(doc + n, 'a', pre);
            n += pre;
            memcpy(doc + n, tails[t], strlen(tails[t]));
            n += strlen(tails[t]);
            assert_int_equal(validate_exact(doc, n), BAD);
        }
    }
}

/* Keys of lengths around the blocks, looked up through the index and by scanning, with
 * escaped keys (which may unescape to a shorter key) and keys of 62 to 64 bytes. */
static void test_lookup_key_lengths(void **state)
{
    (void)state;
    char keys[70][72];
    const char *kp[SB_JSON_MANY_MAX];
    static const size_t lens[] = {0, 1, 5, 7, 8, 9, 15, 16, 17, 31, 62, 63, 64, 69};
    size_t nk = sizeof lens / sizeof lens[0];
    char doc[2048];
    size_t n = 0;
    doc[n++] = '{';
    for (size_t k = 0; k < nk; k++) {
        memset(keys[k], 'a' + (int)k, lens[k]);
        keys[k][lens[k]] = '\0';
        kp[k] = keys[k];
        n += (size_t)snprintf(doc + n, sizeof doc - n, "%s\"%s\":%zu", k ? "," : "", keys[k], k);
    }
    /* the 16-byte key again, escaped: a duplicate */
    n += (size_t)snprintf(doc + n, sizeof doc - n, ",\"\\u0068hhhhhhhhhhhhhhh\":[\"]\",{\"}\":1}]");
    doc[n++] = '}';
    char *copy = malloc(n);
    assert_non_null(copy);
    memcpy(copy, doc, n);
    struct sb_json_index idx;
    assert_int_equal(sb_json_validate_index(copy, n, DEPTH, &idx), OK);
    struct sb_json_member im[SB_JSON_MANY_MAX], sm[SB_JSON_MANY_MAX];
    int ic[SB_JSON_MANY_MAX], sc[SB_JSON_MANY_MAX];
    assert_int_equal(sb_json_index_get_many(copy, n, &idx, kp, nk, im, ic), 0);
    assert_int_equal(sb_json_object_get_many(copy, n, &idx.root, kp, nk, sm, sc), 0);
    for (size_t k = 0; k < nk; k++) {
        int want = lens[k] == 16 ? 2 : 1; /* 'h' * 16 is keys[7] */
        assert_int_equal(ic[k], want);
        assert_int_equal(sc[k], want);
        assert_int_equal(im[k].value.start, sm[k].value.start);
        assert_int_equal(im[k].value.end, sm[k].value.end);
        int64_t v;
        assert_int_equal(sb_json_int64(copy, n, &im[k].value, &v), 0);
        assert_int_equal(v, (int64_t)k);
        struct sb_json_member one;
        assert_int_equal(sb_json_object_get(copy, n, &idx.root, keys[k], &one),
                         want == 2 ? SB_JSON_DUPLICATE : 0);
    }
    /* lengths no key has, and a key of a present length that is absent */
    static const char *const absent[] = {
        "abc", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "zzzzz"};
    assert_int_equal(sb_json_index_get_many(copy, n, &idx, absent, 3, im, ic), 0);
    assert_int_equal(ic[0] + ic[1] + ic[2], 0);
    free(copy);
}

/* Skipping nested values whose strings hold brackets and escaped quotes, with the brackets
 * at every offset of a block: the member after them is still found where it is. */
static void test_skip_value_boundaries(void **state)
{
    (void)state;
    for (size_t pad = 0; pad <= 34; pad++) {
        char doc[160];
        size_t n = (size_t)snprintf(doc, sizeof doc,
                                    "{\"a\":[{\"s\":\"%.*s]}\\\"[{\"},[],{}], \"b\":-1.5e+3}",
                                    (int)pad, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        char *copy = malloc(n);
        assert_non_null(copy);
        memcpy(copy, doc, n);
        struct sb_json_span root;
        assert_int_equal(sb_json_validate(copy, n, DEPTH), OK);
        assert_int_equal(sb_json_root(copy, n, &root), 0);
        struct sb_json_member m;
        assert_int_equal(sb_json_object_get(copy, n, &root, "b", &m), 0);
        assert_int_equal(m.value.type, SB_JSON_NUMBER);
        assert_int_equal(m.value.end, n - 1);
        assert_memory_equal(copy + m.value.start, "-1.5e+3", 7);
        assert_int_equal(sb_json_object_get(copy, n, &root, "a", &m), 0);
        assert_int_equal(sb_json_array_len(copy, n, &m.value), 3);
        free(copy);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate_index),
        cmocka_unit_test(test_object_get_many),
        cmocka_unit_test(test_validate_table),
        cmocka_unit_test(test_validate_null_and_prefixes),
        cmocka_unit_test(test_validate_deep),
        cmocka_unit_test(test_root),
        cmocka_unit_test(test_object_get),
        cmocka_unit_test(test_object_get_escaped_and_duplicates),
        cmocka_unit_test(test_lookups_on_malformed_input),
        cmocka_unit_test(test_path),
        cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_long_runs),
        cmocka_unit_test(test_string_copy),
        cmocka_unit_test(test_int64),
        cmocka_unit_test(test_bool),
        cmocka_unit_test(test_splice),
        cmocka_unit_test(test_remove_member),
        cmocka_unit_test(test_append_member),
        cmocka_unit_test(test_request_rewrite),
        cmocka_unit_test(test_fixtures),
        cmocka_unit_test(test_string_block_boundaries),
        cmocka_unit_test(test_string_cut_at_end),
        cmocka_unit_test(test_lookup_key_lengths),
        cmocka_unit_test(test_skip_value_boundaries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* SigV4: the AWS test suite's vectors (example.amazonaws.com, AKIDEXAMPLE, 20150830T123600Z,
 * us-east-1, service "service"), then the Bedrock shape: double-encoded model ids, the
 * signed x-amz-content-sha256 and session token, query ordering and refusals. */
#include "canon/sigv4.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#define SECRET    "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
#define SUITE_NOW ((time_t)1440938160) /* 2015-08-30T12:36:00Z */
#define STS_TOKEN                                                                                  \
    "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxf"    \
    "pSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KP"     \
    "kyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbq"     \
    "BAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="

static const struct sb_sigv4_creds suite = {"AKIDEXAMPLE", SECRET, NULL, "us-east-1", "service"};

#define SUITE_PREFIX                                                                               \
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "

static void test_get_vanilla(void **state)
{
    (void)state;
    struct sb_sigv4_out o;
    assert_int_equal(sign_impl(&suite, "GET", "https://example.amazonaws.com/", NULL, NULL, 0,
                               SUITE_NOW, false, &o),
                     0);
    assert_string_equal(o.amz_date, "20150830T123600Z");
    assert_string_equal(o.authorization,
                        SUITE_PREFIX "SignedHeaders=host;x-amz-date, "
                                     "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d"
                                     "9b8aae1d763fbf31");
    /* the empty body's hash */
    assert_string_equal(o.content_sha256,
                        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    /* no path at all is the same as "/" */
    assert_int_equal(sign_impl(&suite, "GET", "https://example.amazonaws.com", NULL, NULL, 0,
                               SUITE_NOW, false, &o),
                     0);
    assert_non_null(strstr(o.authorization, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d"));
    /* the default port is not part of the signed host */
    assert_int_equal(sign_impl(&suite, "GET", "https://EXAMPLE.amazonaws.com:443/", NULL, NULL, 0,
                               SUITE_NOW, false, &o),
                     0);
    assert_non_null(strstr(o.authorization, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d"));
}

static void test_post_vanilla(void **state)
{
    (void)state;
    struct sb_sigv4_out o;
    assert_int_equal(sign_impl(&suite, "POST", "https://example.amazonaws.com/", NULL, NULL, 0,
                               SUITE_NOW, false, &o),
                     0);
    assert_string_equal(o.authorization,
                        SUITE_PREFIX "SignedHeaders=host;x-amz-date, "
                                     "Signature=5da7c1a2acd57cee7505fc6676e4e544621c30862966e37d"
                                     "ddb68e92efbe5d6b");
}

static void test_post_form_urlencoded(void **state)
{
    (void)state;
    struct sb_sigv4_out o;
    assert_int_equal(sign_impl(&suite, "POST", "https://example.amazonaws.com/",
                               "application/x-www-form-urlencoded", "Param1=value1", 13, SUITE_NOW,
                               false, &o),
                     0);
    assert_string_equal(o.authorization,
                        SUITE_PREFIX "SignedHeaders=content-type;host;x-amz-date, "
                                     "Signature=ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7"
                                     "b9d196a0fe09473a");
}

static void test_query_order(void **state)
{
    (void)state;
    struct sb_sigv4_out o;
    const char *want = SUITE_PREFIX "SignedHeaders=host;x-amz-date, "
                                    "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99"
                                    "d3219ec94cdf2500";
    assert_int_equal(sign_impl(&suite, "GET",
                               "https://example.amazonaws.com/?Param2=value2&Param1=value1", NULL,
                               NULL, 0, SUITE_NOW, false, &o),
                     0);
    assert_string_equal(o.authorization, want);
    /* the sorted order signs the same */
    assert_int_equal(sign_impl(&suite, "GET",
                               "https://example.amazonaws.com/?Param1=value1&Param2=value2", NULL,
                               NULL, 0, SUITE_NOW, false, &o),
                     0);
    assert_string_equal(o.authorization, want);
}

static void test_session_token_suite(void **state)
{
    (void)state;
    struct sb_sigv4_creds c = suite;
    c.session_token = STS_TOKEN;
    struct sb_sigv4_out o;
    assert_int_equal(sign_impl(&c, "POST", "https://example.amazonaws.com/", NULL, NULL, 0,
                               SUITE_NOW, false, &o),
                     0);
    assert_string_equal(o.authorization,
                        SUITE_PREFIX "SignedHeaders=host;x-amz-date;x-amz-security-token, "
                                     "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836"
                                     "c64533a82be05ead");
}

static void test_canonical_query(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 4096);
    const char *q = "b=2&a=%7e x&a=1&c&&d=%2F+";
    assert_int_equal(canonical_query(q, strlen(q), &b), 0);
    /* decoded then re-encoded: "~" stays, space and '/' and '+' are escaped; a bare name
     * gets an empty value; empty pieces vanish; equal names sort by value */
    assert_string_equal(b.data, "a=1&a=~%20x&b=2&c=&d=%2F%2B");
    sb_buf_free(&b);
}

/* Bedrock: the model id is encoded once in the URL and once more in the canonical URI.
 * Expected value computed independently from the canonical request
 *   POST /model/anthropic.claude-3-haiku-20240307-v1%253A0/converse (content-type, host,
 *   x-amz-content-sha256, x-amz-date, x-amz-security-token signed). */
static void test_bedrock_request(void **state)
{
    (void)state;
    struct sb_sigv4_creds c = {"AKIDEXAMPLE", SECRET, "TOKEN", "us-west-2", "bedrock"};
    struct sb_sigv4_out o;
    const char *url = "https://bedrock-runtime.us-west-2.amazonaws.com/model/"
                      "anthropic.claude-3-haiku-20240307-v1%3A0/converse";
    assert_int_equal(sb_sigv4_sign(&c, "POST", url, "application/json", "{}", 2, SUITE_NOW, &o), 0);
    assert_string_equal(o.content_sha256,
                        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    assert_string_equal(o.authorization,
                        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-west-2/bedrock/"
                        "aws4_request, SignedHeaders=content-type;host;x-amz-content-sha256;"
                        "x-amz-date;x-amz-security-token, Signature=87dc4fff8607e6eea50e0edf9b5b6"
                        "b2728b44a825f587bc26fd34f852982e50a");
    /* one byte of the body changes the signature */
    char first[768];
    memcpy(first, o.authorization, sizeof first);
    assert_int_equal(sb_sigv4_sign(&c, "POST", url, "application/json", "{ }", 3, SUITE_NOW, &o),
                     0);
    assert_string_not_equal(first, o.authorization);
    /* without a token the header is not signed */
    c.session_token = NULL;
    assert_int_equal(sb_sigv4_sign(&c, "POST", url, NULL, "{}", 2, SUITE_NOW, &o), 0);
    assert_non_null(strstr(o.authorization, "SignedHeaders=host;x-amz-content-sha256;x-amz-date,"));
}

static void test_s3_single_encoding(void **state)
{
    (void)state;
    /* S3 signs the path as sent; other services encode it again, so they differ */
    struct sb_sigv4_creds c = {"AKIDEXAMPLE", SECRET, NULL, "us-east-1", "s3"};
    struct sb_sigv4_out a, b;
    assert_int_equal(sb_sigv4_sign(&c, "GET", "https://h/a%3Ab", NULL, NULL, 0, SUITE_NOW, &a), 0);
    c.service = "s4";
    assert_int_equal(sb_sigv4_sign(&c, "GET", "https://h/a%3Ab", NULL, NULL, 0, SUITE_NOW, &b), 0);
    assert_string_not_equal(strstr(a.authorization, "Signature="),
                            strstr(b.authorization, "Signature="));
}

static void test_refusals(void **state)
{
    (void)state;
    struct sb_sigv4_out o;
    assert_int_equal(sb_sigv4_sign(&suite, "GET", "ftp://example.com/", NULL, NULL, 0, 0, &o), -1);
    assert_int_equal(sb_sigv4_sign(&suite, "GET", "https://", NULL, NULL, 0, 0, &o), -1);
    assert_int_equal(sb_sigv4_sign(&suite, "GET", "https://u:p@h/", NULL, NULL, 0, 0, &o), -1);
    assert_int_equal(sb_sigv4_sign(&suite, "GET", "https://h/\r\nx", NULL, NULL, 0, 0, &o), -1);
    assert_int_equal(sb_sigv4_sign(&suite, "GET", "https://h/", "a\nb", NULL, 0, 0, &o), -1);
    assert_int_equal(sb_sigv4_sign(&suite, "POST", "https://h/", NULL, NULL, 5, 0, &o), -1);
    struct sb_sigv4_creds c = suite;
    c.secret_key = "";
    assert_int_equal(sb_sigv4_sign(&c, "GET", "https://h/", NULL, NULL, 0, 0, &o), -1);
    c = suite;
    c.region = NULL;
    assert_int_equal(sb_sigv4_sign(&c, "GET", "https://h/", NULL, NULL, 0, 0, &o), -1);
    /* too long a URL */
    char *url = malloc(URL_MAX + 64);
    assert_non_null(url);
    memcpy(url, "https://h/", 10);
    memset(url + 10, 'a', URL_MAX);
    url[URL_MAX + 10] = '\0';
    assert_int_equal(sb_sigv4_sign(&suite, "GET", url, NULL, NULL, 0, 0, &o), -1);
    free(url);
    /* an access key too long for the header */
    char ak[800];
    memset(ak, 'A', sizeof ak - 1);
    ak[sizeof ak - 1] = '\0';
    c = suite;
    c.access_key = ak;
    assert_int_equal(sb_sigv4_sign(&c, "GET", "https://h/", NULL, NULL, 0, 0, &o), -1);
    assert_string_equal(o.authorization, "");
    /* too many query parameters */
    struct sb_buf q;
    sb_buf_init(&q, 1 << 16);
    assert_int_equal(sb_buf_append_str(&q, "https://h/?"), 0);
    for (int i = 0; i < QUERY_MAX_ARG + 1; i++)
        assert_int_equal(sb_buf_append_str(&q, "a=1&"), 0);
    assert_int_equal(sb_sigv4_sign(&suite, "GET", q.data, NULL, NULL, 0, 0, &o), -1);
    sb_buf_free(&q);
}

static void test_encode_path(void **state)
{
    (void)state;
    struct sb_buf b;
    sb_buf_init(&b, 64);
    assert_int_equal(sb_sigv4_encode_path("us.anthropic.claude-3-5:0/x y~_%", &b), 0);
    assert_string_equal(b.data, "us.anthropic.claude-3-5%3A0%2Fx%20y~_%25");
    sb_buf_reset(&b);
    assert_int_equal(sb_sigv4_encode_path("\xe1\x88\xb4", &b), 0);
    assert_string_equal(b.data, "%E1%88%B4");
    sb_buf_free(&b);
    /* the cap is enforced */
    sb_buf_init(&b, 4);
    assert_int_equal(sb_sigv4_encode_path("::", &b), -E2BIG);
    sb_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_vanilla),
        cmocka_unit_test(test_post_vanilla),
        cmocka_unit_test(test_post_form_urlencoded),
        cmocka_unit_test(test_query_order),
        cmocka_unit_test(test_session_token_suite),
        cmocka_unit_test(test_canonical_query),
        cmocka_unit_test(test_bedrock_request),
        cmocka_unit_test(test_s3_single_encoding),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_encode_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

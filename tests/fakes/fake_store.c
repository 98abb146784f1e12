/* Process-wide state of the fake provider: the fixture cache and the request recorder. Both
 * are shared by every worker behind one mutex each; neither is on the default reply's path
 * except the recorder, which copies a bounded slice of each request in one allocation. */
#include "fake.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define MAX_FIXTURE_BYTES (64 * 1024 * 1024)

static uv_once_t store_once = UV_ONCE_INIT;
static uv_mutex_t fixture_mu;
static uv_mutex_t record_mu;
static struct sb_fake_fixture *fixtures;

struct record {
    char *method;
    char *target;
    size_t nheaders;
    struct sb_fake_str *names; /* point into the same allocation */
    struct sb_fake_str *values;
    char *body;
    size_t body_len;
};

static struct record *ring[SB_FAKE_RECORD_MAX];
static size_t ring_next; /* slot of the next record; the oldest when the ring is full */
static size_t ring_count;

static void store_init(void)
{
    if (uv_mutex_init(&fixture_mu) != 0 || uv_mutex_init(&record_mu) != 0)
        abort();
}

static bool name_ok(const char *name)
{
    if (!*name || *name == '/' || strstr(name, "..") || strlen(name) > 200)
        return false;
    for (const char *p = name; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-' || c == '/';
        if (!ok)
            return false;
    }
    return true;
}

static int read_file(const char *path, char **data, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -ENOENT;
    struct sb_buf b;
    sb_buf_init(&b, MAX_FIXTURE_BYTES);
    int rc = 0;
    char tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) {
        rc = sb_buf_append(&b, tmp, n);
        if (rc)
            break;
    }
    if (!rc && ferror(f))
        rc = -EIO;
    fclose(f);
    if (rc) {
        sb_buf_free(&b);
        return rc;
    }
    if (sb_buf_reserve(&b, 0) != 0) {
        sb_buf_free(&b);
        return -ENOMEM;
    }
    *data = sb_buf_take(&b, len);
    return 0;
}

/* Reads "_status" and the content type from the recorded headers beside a fixture. */
static void read_headers(const char *path, struct sb_fake_fixture *fx)
{
    json_t *root = json_load_file(path, 0, NULL);
    if (!root)
        return;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "_status") == 0 && json_is_integer(val)) {
            json_int_t s = json_integer_value(val);
            if (s >= 100 && s <= 599)
                fx->status = (int)s;
        } else if (strcasecmp(key, "content-type") == 0 && json_is_string(val)) {
            free(fx->content_type);
            fx->content_type = strdup(json_string_value(val));
        }
    }
    json_decref(root);
}

static int split_events(struct sb_fake_fixture *fx)
{
    size_t cap = 16;
    fx->ends = malloc(cap * sizeof *fx->ends);
    if (!fx->ends)
        return -ENOMEM;
    size_t p = 0;
    while (p < fx->len) {
        const char *sep = memmem(fx->data + p, fx->len - p, "\n\n", 2);
        size_t end = sep ? (size_t)(sep - fx->data) + 2 : fx->len;
        if (fx->nends == cap) {
            size_t *n = realloc(fx->ends, cap * 2 * sizeof *n);
            if (!n)
                return -ENOMEM;
            fx->ends = n;
            cap *= 2;
        }
        fx->ends[fx->nends++] = end;
        p = end;
    }
    return 0;
}

static void fixture_free(struct sb_fake_fixture *fx)
{
    free(fx->name);
    free(fx->data);
    free(fx->ends);
    free(fx->content_type);
    free(fx);
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static struct sb_fake_fixture *fixture_load(const char *dir, const char *name, int *err)
{
    char path[4096], hpath[4096];
    const char *sub = strchr(name, '/') ? "" : "openai/";
    int n = snprintf(path, sizeof path, "%s/%s%s", dir, sub, name);
    if (n < 0 || (size_t)n >= sizeof path) {
        *err = -EINVAL;
        return NULL;
    }
    struct sb_fake_fixture *fx = calloc(1, sizeof *fx);
    if (!fx) {
        *err = -ENOMEM;
        return NULL;
    }
    fx->status = 200;
    fx->name = strdup(name);
    int rc = fx->name ? read_file(path, &fx->data, &fx->len) : -ENOMEM;
    if (rc) {
        fixture_free(fx);
        *err = rc;
        return NULL;
    }
    bool sse = has_suffix(name, ".sse");
    if (sse && split_events(fx) != 0) {
        fixture_free(fx);
        *err = -ENOMEM;
        return NULL;
    }
    /* "x.response.json", "x.json" and "x.sse" all take their headers from
     * "x.response.headers.json". */
    size_t base = (size_t)n;
    const char *exts[] = {".response.json", ".json", ".sse"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        if (has_suffix(path, exts[i])) {
            base -= strlen(exts[i]);
            break;
        }
    }
    n = snprintf(hpath, sizeof hpath, "%.*s.response.headers.json", (int)base, path);
    if (n > 0 && (size_t)n < sizeof hpath)
        read_headers(hpath, fx);
    if (!fx->content_type)
        fx->content_type = strdup(sse ? "text/event-stream; charset=utf-8" : "application/json");
    if (!fx->content_type) {
        fixture_free(fx);
        *err = -ENOMEM;
        return NULL;
    }
    return fx;
}

const struct sb_fake_fixture *sb_fake_fixture_get(const char *fixtures_dir, const char *name,
                                                  int *err)
{
    uv_once(&store_once, store_init);
    if (!name_ok(name)) {
        *err = -EINVAL;
        return NULL;
    }
    uv_mutex_lock(&fixture_mu);
    struct sb_fake_fixture *fx;
    for (fx = fixtures; fx; fx = fx->next) {
        if (strcmp(fx->name, name) == 0)
            break;
    }
    if (!fx) {
        fx = fixture_load(fixtures_dir, name, err);
        if (fx) {
            fx->next = fixtures;
            fixtures = fx;
        }
    }
    uv_mutex_unlock(&fixture_mu);
    return fx;
}

void sb_fake_record_add(const struct sb_fake_req *req)
{
    uv_once(&store_once, store_init);
    size_t body_len =
        req->body_len > SB_FAKE_RECORD_BODY_MAX ? SB_FAKE_RECORD_BODY_MAX : req->body_len;
    size_t size = sizeof(struct record) + 2 * req->nheaders * sizeof(struct sb_fake_str) +
                  req->method.n + 1 + req->target.n + 1 + body_len + 1;
    for (size_t i = 0; i < req->nheaders; i++)
        size += req->headers[i].name.n + req->headers[i].value.n + 2;
    /* One allocation per record keeps the recorder off the benchmark's profile. */
    struct record *r = malloc(size);
    if (!r)
        return;
    char *p = (char *)(r + 1);
    r->names = (struct sb_fake_str *)p;
    p += req->nheaders * sizeof(struct sb_fake_str);
    r->values = (struct sb_fake_str *)p;
    p += req->nheaders * sizeof(struct sb_fake_str);
    r->nheaders = req->nheaders;
    r->method = p;
    memcpy(p, req->method.p, req->method.n);
    p[req->method.n] = '\0';
    p += req->method.n + 1;
    r->target = p;
    memcpy(p, req->target.p, req->target.n);
    p[req->target.n] = '\0';
    p += req->target.n + 1;
    for (size_t i = 0; i < req->nheaders; i++) {
        const struct sb_fake_header *h = &req->headers[i];
        memcpy(p, h->name.p, h->name.n);
        p[h->name.n] = '\0';
        r->names[i] = (struct sb_fake_str){p, h->name.n};
        p += h->name.n + 1;
        memcpy(p, h->value.p, h->value.n);
        p[h->value.n] = '\0';
        r->values[i] = (struct sb_fake_str){p, h->value.n};
        p += h->value.n + 1;
    }
    r->body = p;
    if (body_len)
        memcpy(p, req->body, body_len);
    p[body_len] = '\0';
    r->body_len = body_len;

    uv_mutex_lock(&record_mu);
    struct record *old = ring[ring_next];
    ring[ring_next] = r;
    ring_next = (ring_next + 1) % SB_FAKE_RECORD_MAX;
    if (ring_count < SB_FAKE_RECORD_MAX)
        ring_count++;
    uv_mutex_unlock(&record_mu);
    free(old);
}

int sb_fake_record_dump(struct sb_buf *out)
{
    uv_once(&store_once, store_init);
    int rc = sb_buf_append_char(out, '[');
    uv_mutex_lock(&record_mu);
    size_t first = (ring_next + SB_FAKE_RECORD_MAX - ring_count) % SB_FAKE_RECORD_MAX;
    for (size_t k = 0; k < ring_count && !rc; k++) {
        const struct record *r = ring[(first + k) % SB_FAKE_RECORD_MAX];
        rc |= sb_buf_append_str(out, k ? ",{\"method\":" : "{\"method\":");
        rc |= sb_buf_append_json_str(out, r->method, strlen(r->method));
        rc |= sb_buf_append_str(out, ",\"path\":");
        rc |= sb_buf_append_json_str(out, r->target, strlen(r->target));
        rc |= sb_buf_append_str(out, ",\"headers\":[");
        for (size_t i = 0; i < r->nheaders && !rc; i++) {
            rc |= sb_buf_append_str(out, i ? ",[" : "[");
            rc |= sb_buf_append_json_str(out, r->names[i].p, r->names[i].n);
            rc |= sb_buf_append_char(out, ',');
            rc |= sb_buf_append_json_str(out, r->values[i].p, r->values[i].n);
            rc |= sb_buf_append_char(out, ']');
        }
        rc |= sb_buf_append_str(out, "],\"body\":");
        rc |= sb_buf_append_json_str(out, r->body, r->body_len);
        rc |= sb_buf_append_char(out, '}');
    }
    uv_mutex_unlock(&record_mu);
    rc |= sb_buf_append_char(out, ']');
    return rc ? -E2BIG : 0;
}

void sb_fake_record_clear(void)
{
    uv_once(&store_once, store_init);
    struct record *old[SB_FAKE_RECORD_MAX];
    uv_mutex_lock(&record_mu);
    memcpy(old, ring, sizeof ring);
    memset(ring, 0, sizeof ring);
    ring_next = 0;
    ring_count = 0;
    uv_mutex_unlock(&record_mu);
    for (size_t i = 0; i < SB_FAKE_RECORD_MAX; i++)
        free(old[i]);
}

void sb_fake_store_free(void)
{
    sb_fake_record_clear();
    uv_mutex_lock(&fixture_mu);
    struct sb_fake_fixture *fx = fixtures;
    fixtures = NULL;
    uv_mutex_unlock(&fixture_mu);
    while (fx) {
        struct sb_fake_fixture *next = fx->next;
        fixture_free(fx);
        fx = next;
    }
}

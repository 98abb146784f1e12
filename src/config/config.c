#include "config/config.h"

#include "router/router.h"
#include "router/rules.h"

#include "core/buf.h"
#include "store/redis.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <yaml.h>

/* Limits. A config is written by an operator, but it is still parsed from bytes, so every
 * dimension is capped and fails cleanly with a message. */
#define MAX_FILE_BYTES (4u * 1024 * 1024)
#define MAX_DEPTH      64
#define MAX_NODES      500000
/* Aliases share nodes, so a small file can describe an exponential tree ("billion
 * laughs"); every node visit and key comparison is charged against this budget. */
#define MAX_WORK 4000000L
/* model_info is a few dozen values in practice, and its JSON is built in memory. */
#define MAX_INFO_NODES 10000
#define MSG_MAX        512

/* ---- A small YAML tree built from libyaml events ------------------------------------- */

enum ykind { Y_SCALAR, Y_SEQ, Y_MAP };

struct ynode {
    enum ykind kind;
    int line;
    bool plain; /* a plain scalar without an explicit !!str tag: subject to null/bool/number */
    char *s;    /* scalar bytes, NUL-terminated (may also contain NULs from escapes) */
    size_t len;
    struct ynode **kids; /* sequence items, or map keys and values interleaved */
    size_t n, cap;
};

struct anchor {
    char *name;
    struct ynode *node;
};

struct open_coll {
    struct ynode *node;
    char *anchor;
};

struct ydoc {
    struct ynode **nodes; /* every node, for freeing: the tree is a DAG once aliases exist */
    size_t n_nodes, cap_nodes;
    struct anchor *anchors;
    size_t n_anchors, cap_anchors;
    struct ynode *root;
};

struct pair {
    const struct ynode *k, *v;
};

struct pairs {
    struct pair *p;
    size_t n, cap;
};

struct ctx {
    const char *name;
    sb_config_diag_cb diag;
    void *ud;
    const char *(*getenv_fn)(const char *);
    int errors;
    long work;
    bool work_exceeded;
};

/* Printable, truncated rendering of text from the file (a key name, a provider prefix, an
 * environment variable name). Values of keys are never rendered. */
struct shown {
    char s[80];
};

static struct shown show(const char *p, size_t len)
{
    struct shown r;
    size_t o = 0, max = 60;
    for (size_t i = 0; i < len && o < sizeof r.s - 4; i++) {
        if (o == max) {
            memcpy(r.s + o, "...", 3);
            o += 3;
            break;
        }
        unsigned char ch = (unsigned char)p[i];
        r.s[o++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
    }
    r.s[o] = '\0';
    return r;
}

static struct shown show_node(const struct ynode *n)
{
    if (n->kind != Y_SCALAR)
        return show("<non-scalar>", 12);
    return show(n->s, n->len);
}

static void report(struct ctx *c, enum sb_diag_level level, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void report(struct ctx *c, enum sb_diag_level level, int line, const char *fmt, ...)
{
    if (level == SB_DIAG_ERROR)
        c->errors++;
    if (!c->diag)
        return;
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Messages quote names and values from the file: no control byte may reach a terminal or a
     * log through them, whatever a caller passed. */
    for (char *m = msg; *m; m++)
        if ((unsigned char)*m < 0x20 || *m == 0x7f)
            *m = '?';
    c->diag(c->ud, level, c->name, line, msg);
}

#define warn(c, line, ...) report((c), SB_DIAG_WARNING, (line), __VA_ARGS__)
#define fail(c, line, ...) report((c), SB_DIAG_ERROR, (line), __VA_ARGS__)

static int charge(struct ctx *c, long units, int line)
{
    if (c->work_exceeded)
        return -1;
    c->work += units;
    if (c->work > MAX_WORK) {
        c->work_exceeded = true;
        fail(c, line, "the configuration is too complex (aliases expand too far)");
        return -1;
    }
    return 0;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort(); /* small fixed allocations; input-sized ones are capped before */
    return p;
}

static void *xrealloc(void *old, size_t n)
{
    void *p = realloc(old, n ? n : 1);
    if (!p)
        abort();
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

static void grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return;
    size_t nc = *cap ? *cap * 2 : 8;
    while (nc < need)
        nc *= 2;
    void *p = realloc(*arr, nc * elem);
    if (!p)
        abort();
    *arr = p;
    *cap = nc;
}

static void ydoc_free(struct ydoc *d)
{
    for (size_t i = 0; i < d->n_nodes; i++) {
        free(d->nodes[i]->s);
        free(d->nodes[i]->kids);
        free(d->nodes[i]);
    }
    free(d->nodes);
    for (size_t i = 0; i < d->n_anchors; i++)
        free(d->anchors[i].name);
    free(d->anchors);
    memset(d, 0, sizeof *d);
}

static struct ynode *ynode_new(struct ydoc *d, enum ykind kind, int line)
{
    struct ynode *n = xmalloc(sizeof *n);
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->line = line;
    grow((void **)&d->nodes, &d->cap_nodes, d->n_nodes + 1, sizeof *d->nodes);
    d->nodes[d->n_nodes++] = n;
    return n;
}

static void ynode_add(struct ynode *parent, struct ynode *kid)
{
    grow((void **)&parent->kids, &parent->cap, parent->n + 1, sizeof *parent->kids);
    parent->kids[parent->n++] = kid;
}

/* Anchors are registered when their node is complete, so an alias can never point at one
 * of its own ancestors: the tree stays acyclic. */
static void anchor_set(struct ydoc *d, const char *name, struct ynode *n)
{
    for (size_t i = 0; i < d->n_anchors; i++) {
        if (strcmp(d->anchors[i].name, name) == 0) {
            d->anchors[i].node = n;
            return;
        }
    }
    grow((void **)&d->anchors, &d->cap_anchors, d->n_anchors + 1, sizeof *d->anchors);
    d->anchors[d->n_anchors].name = xstrdup(name);
    d->anchors[d->n_anchors].node = n;
    d->n_anchors++;
}

static struct ynode *anchor_get(struct ctx *c, struct ydoc *d, const char *name, int line)
{
    if (charge(c, (long)d->n_anchors + 1, line))
        return NULL;
    for (size_t i = d->n_anchors; i-- > 0;) {
        if (strcmp(d->anchors[i].name, name) == 0)
            return d->anchors[i].node;
    }
    return NULL;
}

static int offset_line(const char *yaml, size_t len, size_t off)
{
    int line = 1;
    for (size_t i = 0; i < off && i < len; i++)
        line += yaml[i] == '\n';
    return line;
}

static void report_parser_error(struct ctx *c, const yaml_parser_t *p, const char *yaml, size_t len)
{
    /* libyaml's problem and context strings are fixed texts, never bytes of the input. */
    const char *problem = p->problem ? p->problem : "unknown error";
    int line;
    if (p->error == YAML_READER_ERROR)
        line = offset_line(yaml, len, p->problem_offset);
    else
        line = (int)p->problem_mark.line + 1;
    if (p->error == YAML_MEMORY_ERROR) {
        fail(c, 0, "out of memory while parsing YAML");
    } else if (p->context) {
        fail(c, line, "YAML syntax error: %s %s (line %d)", problem, p->context,
             (int)p->context_mark.line + 1);
    } else {
        fail(c, line, "YAML syntax error: %s", problem);
    }
}

static bool is_str_tag(const yaml_char_t *tag)
{
    if (!tag)
        return false;
    return strcmp((const char *)tag, YAML_STR_TAG) == 0 || strcmp((const char *)tag, "!") == 0;
}

static int attach(struct ctx *c, struct ydoc *d, struct open_coll *stack, size_t depth,
                  struct ynode *n, int line)
{
    if (depth == 0) {
        if (d->root) {
            fail(c, line, "only one YAML document is allowed");
            return -1;
        }
        d->root = n;
        return 0;
    }
    ynode_add(stack[depth - 1].node, n);
    return 0;
}

static int build_tree(struct ctx *c, const char *yaml, size_t len, struct ydoc *d)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) {
        fail(c, 0, "out of memory while parsing YAML");
        return -1;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, len);
    struct open_coll stack[MAX_DEPTH];
    size_t depth = 0;
    int docs = 0, rc = -1;
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&p, &ev)) {
            report_parser_error(c, &p, yaml, len);
            goto out;
        }
        int line = (int)ev.start_mark.line + 1;
        int bad = 0;
        struct ynode *n = NULL;
        switch (ev.type) {
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                fail(c, line, "only one YAML document is allowed");
                bad = 1;
            }
            break;
        case YAML_SCALAR_EVENT:
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (d->n_nodes >= MAX_NODES) {
                fail(c, line, "too many YAML nodes (more than %d)", MAX_NODES);
                bad = 1;
                break;
            }
            if (ev.type == YAML_SCALAR_EVENT) {
                n = ynode_new(d, Y_SCALAR, line);
                n->s = xstrndup((const char *)ev.data.scalar.value, ev.data.scalar.length);
                n->len = ev.data.scalar.length;
                n->plain = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                           !is_str_tag(ev.data.scalar.tag);
                if (ev.data.scalar.anchor)
                    anchor_set(d, (const char *)ev.data.scalar.anchor, n);
                bad = attach(c, d, stack, depth, n, line);
                break;
            }
            if (depth == MAX_DEPTH) {
                fail(c, line, "YAML nested deeper than %d levels", MAX_DEPTH);
                bad = 1;
                break;
            }
            n = ynode_new(d, ev.type == YAML_SEQUENCE_START_EVENT ? Y_SEQ : Y_MAP, line);
            bad = attach(c, d, stack, depth, n, line);
            if (!bad) {
                const yaml_char_t *a = ev.type == YAML_SEQUENCE_START_EVENT
                                           ? ev.data.sequence_start.anchor
                                           : ev.data.mapping_start.anchor;
                stack[depth].node = n;
                stack[depth].anchor = a ? xstrdup((const char *)a) : NULL;
                depth++;
            }
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            if (depth > 0) {
                depth--;
                if (stack[depth].anchor) {
                    anchor_set(d, stack[depth].anchor, stack[depth].node);
                    free(stack[depth].anchor);
                }
            }
            break;
        case YAML_ALIAS_EVENT:
            n = anchor_get(c, d, (const char *)ev.data.alias.anchor, line);
            if (!n) {
                if (!c->work_exceeded)
                    fail(c, line, "unknown YAML alias '*%s'",
                         show((const char *)ev.data.alias.anchor,
                              strlen((const char *)ev.data.alias.anchor))
                             .s);
                bad = 1;
                break;
            }
            bad = attach(c, d, stack, depth, n, line);
            break;
        default:
            break;
        }
        bool end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (bad)
            goto out;
        if (end)
            break;
    }
    rc = 0;
out:
    while (depth > 0)
        free(stack[--depth].anchor);
    yaml_parser_delete(&p);
    return rc;
}

/* ---- Reading the tree ---------------------------------------------------------------- */

static bool scalar_is(const struct ynode *n, const char *s)
{
    size_t l = strlen(s);
    return n->kind == Y_SCALAR && n->len == l && memcmp(n->s, s, l) == 0;
}

static bool is_null(const struct ynode *n)
{
    return n->kind == Y_SCALAR && n->plain &&
           (n->len == 0 || scalar_is(n, "~") || scalar_is(n, "null") || scalar_is(n, "Null") ||
            scalar_is(n, "NULL"));
}

static bool is_merge_key(const struct ynode *k)
{
    return k->kind == Y_SCALAR && k->plain && scalar_is(k, "<<");
}

static bool same_key(const struct ynode *a, const struct ynode *b)
{
    return a->kind == Y_SCALAR && b->kind == Y_SCALAR && a->len == b->len &&
           memcmp(a->s, b->s, a->len) == 0;
}

static void pairs_free(struct pairs *ps)
{
    free(ps->p);
    ps->p = NULL;
    ps->n = ps->cap = 0;
}

static ssize_t pairs_find(struct ctx *c, const struct pairs *ps, const struct ynode *k)
{
    if (charge(c, (long)ps->n + 1, k->line))
        return -2;
    for (size_t i = 0; i < ps->n; i++) {
        if (same_key(ps->p[i].k, k))
            return (ssize_t)i;
    }
    return -1;
}

static void pairs_push(struct pairs *ps, const struct ynode *k, const struct ynode *v)
{
    grow((void **)&ps->p, &ps->cap, ps->n + 1, sizeof *ps->p);
    ps->p[ps->n].k = k;
    ps->p[ps->n].v = v;
    ps->n++;
}

static int flatten(struct ctx *c, const struct ynode *map, struct pairs *out, int depth);

static int merge_from(struct ctx *c, const struct ynode *src, struct pairs *out, int depth,
                      int line)
{
    if (src->kind != Y_MAP) {
        fail(c, line, "a '<<' merge value must be a mapping or a list of mappings");
        return -1;
    }
    struct pairs tmp = {0};
    int rc = flatten(c, src, &tmp, depth + 1);
    for (size_t i = 0; rc == 0 && i < tmp.n; i++) {
        ssize_t at = pairs_find(c, out, tmp.p[i].k);
        if (at == -2)
            rc = -1;
        else if (at == -1)
            pairs_push(out, tmp.p[i].k, tmp.p[i].v);
    }
    pairs_free(&tmp);
    return rc;
}

/* The map's key/value pairs as PyYAML sees them: a repeated key keeps its last value, and
 * '<<' merge keys add the merged maps' keys that are not set directly. */
static int flatten(struct ctx *c, const struct ynode *map, struct pairs *out, int depth)
{
    if (depth > MAX_DEPTH) {
        fail(c, map->line, "'<<' merges nested deeper than %d levels", MAX_DEPTH);
        return -1;
    }
    if (charge(c, (long)map->n + 1, map->line))
        return -1;
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct ynode *k = map->kids[i], *v = map->kids[i + 1];
        if (is_merge_key(k))
            continue;
        ssize_t at = pairs_find(c, out, k);
        if (at == -2)
            return -1;
        if (at >= 0) {
            if (depth == 0)
                warn(c, k->line, "duplicate key '%s'; the last one wins", show_node(k).s);
            out->p[at].v = v;
        } else {
            pairs_push(out, k, v);
        }
    }
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        const struct ynode *k = map->kids[i], *v = map->kids[i + 1];
        if (!is_merge_key(k))
            continue;
        if (v->kind == Y_SEQ) {
            for (size_t j = 0; j < v->n; j++) {
                if (merge_from(c, v->kids[j], out, depth, v->kids[j]->line))
                    return -1;
            }
        } else if (merge_from(c, v, out, depth, v->line)) {
            return -1;
        }
    }
    return 0;
}

/* ---- Typed values -------------------------------------------------------------------- */

static void disable(struct sb_deployment *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void disable(struct sb_deployment *d, const char *fmt, ...)
{
    d->disabled = true;
    if (d->disabled_reason)
        return; /* the first reason is the one to fix first */
    char msg[MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    d->disabled_reason = xstrdup(msg);
}

/* Resolves a scalar to a new string, following os.environ/NAME. Returns 0 with *out set, 1
 * when the variable is unset inside a deployment (which is then disabled), -1 after an
 * error. The value itself never reaches a message. */
static int read_str(struct ctx *c, const struct ynode *n, const char *key, struct sb_deployment *d,
                    char **out)
{
    static const char env_prefix[] = "os.environ/";
    const size_t plen = sizeof env_prefix - 1;
    *out = NULL;
    if (n->kind != Y_SCALAR) {
        fail(c, n->line, "%s must be a string", key);
        return -1;
    }
    if (memchr(n->s, '\0', n->len)) {
        fail(c, n->line, "%s must not contain NUL characters", key);
        return -1;
    }
    if (n->len < plen || memcmp(n->s, env_prefix, plen) != 0) {
        *out = xstrndup(n->s, n->len);
        return 0;
    }
    const char *name = n->s + plen;
    size_t nlen = n->len - plen;
    if (nlen == 0) {
        fail(c, n->line, "%s: os.environ/ needs a variable name", key);
        return -1;
    }
    const char *v = c->getenv_fn(name);
    if (v && *v) {
        *out = xstrdup(v);
        return 0;
    }
    if (d) {
        disable(d, "environment variable %s is not set", show(name, nlen).s);
        warn(c, n->line, "%s: environment variable %s is not set; deployment disabled", key,
             show(name, nlen).s);
        return 1;
    }
    fail(c, n->line, "%s: environment variable %s is not set", key, show(name, nlen).s);
    return -1;
}

/* Plain decimal numbers only: strtod would also take "inf", "nan" and hex floats. */
static bool number_chars(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        if (!strchr("0123456789+-.eE", *s))
            return false;
    }
    return true;
}

static bool parse_double(const char *s, double *out)
{
    if (!number_chars(s))
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool parse_int(const char *s, int64_t *out)
{
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!*p)
        return false;
    for (const char *q = p; *q; q++) {
        if (*q < '0' || *q > '9')
            return false;
    }
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end)
        return false;
    *out = (int64_t)v;
    return true;
}

/* 0: *out set; 1: not given (null, or an unset variable inside a deployment); -1: an error
 * already reported; -2: not a number (the caller states the constraint). */
static int read_double(struct ctx *c, const struct ynode *n, const char *key,
                       struct sb_deployment *d, double *out)
{
    if (is_null(n))
        return 1;
    if (n->kind != Y_SCALAR)
        return -2;
    char *s;
    int rc = read_str(c, n, key, d, &s);
    if (rc)
        return rc;
    bool ok = parse_double(s, out);
    free(s);
    return ok ? 0 : -2;
}

static int read_int(struct ctx *c, const struct ynode *n, const char *key, struct sb_deployment *d,
                    int64_t *out)
{
    if (is_null(n))
        return 1;
    if (n->kind != Y_SCALAR)
        return -2;
    char *s;
    int rc = read_str(c, n, key, d, &s);
    if (rc)
        return rc;
    bool ok = parse_int(s, out);
    free(s);
    return ok ? 0 : -2;
}

static void get_double(struct ctx *c, const struct ynode *n, const char *key,
                       struct sb_deployment *d, double max, double *dst)
{
    double v;
    int rc = read_double(c, n, key, d, &v);
    if (rc == 1 || rc == -1)
        return;
    if (rc == -2 || !(v > 0)) {
        fail(c, n->line, "%s must be a number > 0", key);
        return;
    }
    if (v > max) {
        fail(c, n->line, "%s must be at most %.0f", key, max);
        return;
    }
    *dst = v;
}

static void get_int(struct ctx *c, const struct ynode *n, const char *key, struct sb_deployment *d,
                    int64_t min, int64_t max, int64_t *dst)
{
    int64_t v = 0;
    int rc = read_int(c, n, key, d, &v);
    if (rc == 1 || rc == -1)
        return;
    if (rc == -2 || v < min || v > max) {
        if (max == INT64_MAX)
            fail(c, n->line, "%s must be an integer >= %lld", key, (long long)min);
        else
            fail(c, n->line, "%s must be an integer in %lld..%lld", key, (long long)min,
                 (long long)max);
        return;
    }
    *dst = v;
}

/* A size given in `unit` bytes (MiB, KiB), fractions allowed, rounded up to whole bytes. */
static void get_size(struct ctx *c, const struct ynode *n, const char *key, int64_t unit,
                     double max_units, int64_t *dst)
{
    double v = 0;
    get_double(c, n, key, NULL, max_units, &v);
    if (v > 0)
        *dst = (int64_t)ceil(v * (double)unit);
}

static void set_str(char **dst, char *v)
{
    free(*dst);
    *dst = v;
}

/* ---- model_info to JSON -------------------------------------------------------------- */

static bool yaml_bool(const struct ynode *n, bool *out)
{
    static const char *const t[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *const f[] = {"false", "False", "FALSE", "no", "No",
                                    "NO",    "off",   "Off",   "OFF"};
    for (size_t i = 0; i < sizeof t / sizeof *t; i++) {
        if (scalar_is(n, t[i])) {
            *out = true;
            return true;
        }
        if (scalar_is(n, f[i])) {
            *out = false;
            return true;
        }
    }
    return false;
}

static json_t *scalar_json(const struct ynode *n)
{
    if (n->plain && !memchr(n->s, '\0', n->len)) {
        bool b;
        int64_t i;
        double d;
        if (is_null(n))
            return json_null();
        if (yaml_bool(n, &b))
            return json_boolean(b);
        if (parse_int(n->s, &i))
            return json_integer((json_int_t)i);
        if (parse_double(n->s, &d))
            return json_real(d);
    }
    return json_stringn(n->s, n->len);
}

static json_t *to_json(struct ctx *c, const struct ynode *n, int depth, long *count)
{
    if (depth > 2 * MAX_DEPTH) {
        fail(c, n->line, "model_info is nested too deeply");
        return NULL;
    }
    if (charge(c, 1, n->line))
        return NULL;
    if (++*count > MAX_INFO_NODES) {
        fail(c, n->line, "model_info has more than %d values", MAX_INFO_NODES);
        return NULL;
    }
    if (n->kind == Y_SCALAR) {
        json_t *j = scalar_json(n);
        if (!j)
            fail(c, n->line, "model_info contains a string that is not valid UTF-8");
        return j;
    }
    if (n->kind == Y_SEQ) {
        json_t *arr = json_array();
        if (!arr)
            abort();
        for (size_t i = 0; i < n->n; i++) {
            json_t *v = to_json(c, n->kids[i], depth + 1, count);
            if (!v) {
                json_decref(arr);
                return NULL;
            }
            json_array_append_new(arr, v);
        }
        return arr;
    }
    struct pairs ps = {0};
    if (flatten(c, n, &ps, 0)) {
        pairs_free(&ps);
        return NULL;
    }
    json_t *obj = json_object();
    if (!obj)
        abort();
    for (size_t i = 0; i < ps.n; i++) {
        const struct ynode *k = ps.p[i].k;
        if (k->kind != Y_SCALAR || memchr(k->s, '\0', k->len)) {
            warn(c, k->line, "model_info: a key that is not a string is ignored");
            continue;
        }
        json_t *v = to_json(c, ps.p[i].v, depth + 1, count);
        if (!v) {
            json_decref(obj);
            pairs_free(&ps);
            return NULL;
        }
        if (json_object_set_new(obj, k->s, v) != 0) {
            fail(c, k->line, "model_info contains a key that is not valid UTF-8");
            json_decref(obj);
            pairs_free(&ps);
            return NULL;
        }
    }
    pairs_free(&ps);
    return obj;
}

/* ---- Providers ----------------------------------------------------------------------- */

struct provider_def {
    const char *prefix;
    enum sb_provider_kind kind;
    const char *default_base; /* NULL: api_base is required */
};

/* OpenAI-compatible services LiteLLM knows by prefix, with the base URLs LiteLLM uses. */
static const struct provider_def providers[] = {
    {"openai", SB_PROVIDER_OPENAI, "https://api.openai.com/v1"},
    {"azure", SB_PROVIDER_AZURE, NULL},
    {"anthropic", SB_PROVIDER_ANTHROPIC, "https://api.anthropic.com"},
    {"gemini", SB_PROVIDER_GEMINI, "https://generativelanguage.googleapis.com"},
    {"vertex_ai", SB_PROVIDER_VERTEX, ""},
    {"bedrock", SB_PROVIDER_BEDROCK, ""},
    {"cohere", SB_PROVIDER_COHERE, "https://api.cohere.com"},
    {"cohere_chat", SB_PROVIDER_COHERE, "https://api.cohere.com"},
    {"groq", SB_PROVIDER_OPENAI, "https://api.groq.com/openai/v1"},
    {"together_ai", SB_PROVIDER_OPENAI, "https://api.together.xyz/v1"},
    {"mistral", SB_PROVIDER_OPENAI, "https://api.mistral.ai/v1"},
    {"deepseek", SB_PROVIDER_OPENAI, "https://api.deepseek.com/v1"},
    {"xai", SB_PROVIDER_OPENAI, "https://api.x.ai/v1"},
    {"openrouter", SB_PROVIDER_OPENAI, "https://openrouter.ai/api/v1"},
    {"fireworks_ai", SB_PROVIDER_OPENAI, "https://api.fireworks.ai/inference/v1"},
    {"perplexity", SB_PROVIDER_OPENAI, "https://api.perplexity.ai"},
    {"hosted_vllm", SB_PROVIDER_OPENAI, NULL},
    {"ollama_chat", SB_PROVIDER_OPENAI, "http://localhost:11434/v1"},
    {"ollama", SB_PROVIDER_OPENAI, "http://localhost:11434/v1"},
};

static const char AZURE_DEFAULT_API_VERSION[] = "2024-10-21";

static bool starts_with_ci(const char *s, const char *p)
{
    for (; *p; s++, p++) {
        char a = *s;
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (a != *p)
            return false;
    }
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

/* Sets provider, provider_name, upstream_model from litellm_model; fills in api_base. */
static void resolve_provider(struct ctx *c, struct sb_deployment *d, int model_line,
                             bool api_base_given, int params_line)
{
    const char *m = d->litellm_model;
    const char *slash = strchr(m, '/');
    if (!slash) {
        warn(c, model_line, "litellm_params.model has no provider prefix; treated as 'openai/...'");
        d->provider_name = xstrdup("openai");
        d->upstream_model = xstrdup(m);
    } else {
        d->provider_name = xstrndup(m, (size_t)(slash - m));
        d->upstream_model = xstrdup(slash + 1);
    }
    if (!*d->provider_name || !*d->upstream_model) {
        fail(c, model_line, "litellm_params.model must look like 'provider/model'");
        return;
    }
    const struct provider_def *def = NULL;
    for (size_t i = 0; i < sizeof providers / sizeof *providers; i++) {
        if (strcmp(providers[i].prefix, d->provider_name) == 0)
            def = &providers[i];
    }
    if (!def) {
        d->provider = SB_PROVIDER_UNSUPPORTED;
        struct shown p = show(d->provider_name, strlen(d->provider_name));
        /* Outranks an unset variable: setting it would not enable the deployment. */
        free(d->disabled_reason);
        d->disabled_reason = NULL;
        disable(d, "provider '%s' is not supported yet", p.s);
        warn(c, model_line, "provider '%s' is not supported yet; deployment disabled", p.s);
        return;
    }
    d->provider = def->kind;
    if (!api_base_given) {
        if (def->default_base && !*def->default_base) {
            /* Derived from the region or location once the other parameters are known
             * (provider_defaults). */
        } else if (def->default_base) {
            d->api_base = xstrdup(def->default_base);
        } else {
            fail(c, params_line, "litellm_params.api_base is required for '%s' models",
                 def->prefix);
        }
    } else if (d->api_base && strncmp(def->prefix, "ollama", 6) == 0 &&
               !ends_with(d->api_base, "/v1")) {
        /* LiteLLM configs give ollama's root URL; its OpenAI-compatible API is under /v1. */
        size_t l = strlen(d->api_base);
        char *b = xmalloc(l + 4);
        memcpy(b, d->api_base, l);
        memcpy(b + l, "/v1", 4);
        set_str(&d->api_base, b);
    }
    if (def->kind == SB_PROVIDER_AZURE && !d->api_version)
        d->api_version = xstrdup(AZURE_DEFAULT_API_VERSION);
}

static const char *env_first(struct ctx *c, const char *a, const char *b)
{
    const char *v = c->getenv_fn(a);
    if ((!v || !*v) && b)
        v = c->getenv_fn(b);
    return v && *v ? v : NULL;
}

static void env_default(struct ctx *c, char **field, const char *a, const char *b)
{
    if (*field)
        return;
    const char *v = env_first(c, a, b);
    if (v)
        *field = xstrdup(v);
}

/* What Vertex AI and Bedrock take from the standard environment variables of their clouds
 * when the config does not say, and their default base URLs, which depend on the region or
 * location. */
static bool region_like(const char *s)
{
    if (!*s || strlen(s) > 64)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-'))
            return false;
    return true;
}

static void provider_defaults(struct ctx *c, struct sb_deployment *d, int line)
{
    /* API keys are never read from the environment unasked (write os.environ/NAME); cloud
     * credentials are, from the variables their own SDKs read. */
    switch (d->provider) {
    case SB_PROVIDER_VERTEX:
        env_default(c, &d->vertex_project, "VERTEXAI_PROJECT", "GOOGLE_CLOUD_PROJECT");
        env_default(c, &d->vertex_location, "VERTEXAI_LOCATION", "GOOGLE_CLOUD_LOCATION");
        env_default(c, &d->api_key, "VERTEXAI_ACCESS_TOKEN", "GOOGLE_OAUTH_ACCESS_TOKEN");
        if (!d->vertex_location)
            d->vertex_location = xstrdup("us-central1");
        if (!region_like(d->vertex_location)) {
            fail(c, line, "vertex_location must look like 'us-central1'");
            return;
        }
        if (!d->vertex_project && !d->disabled) {
            disable(d, "vertex_ai needs vertex_project (or VERTEXAI_PROJECT)");
            warn(c, line,
                 "vertex_ai needs vertex_project (or VERTEXAI_PROJECT); deployment "
                 "disabled");
        }
        if (!d->api_base) {
            struct sb_buf b;
            sb_buf_init(&b, 1024);
            bool global = strcmp(d->vertex_location, "global") == 0;
            if ((global ? sb_buf_append_str(&b, "https://aiplatform.googleapis.com")
                        : sb_buf_printf(&b, "https://%s-aiplatform.googleapis.com",
                                        d->vertex_location)) == 0)
                d->api_base = sb_buf_take(&b, NULL);
            sb_buf_free(&b);
        }
        break;
    case SB_PROVIDER_BEDROCK:
        env_default(c, &d->aws_region, "AWS_REGION", "AWS_DEFAULT_REGION");
        if (!d->api_key) {
            env_default(c, &d->aws_access_key_id, "AWS_ACCESS_KEY_ID", NULL);
            env_default(c, &d->aws_secret_access_key, "AWS_SECRET_ACCESS_KEY", NULL);
            env_default(c, &d->aws_session_token, "AWS_SESSION_TOKEN", NULL);
        }
        if (!d->aws_region)
            d->aws_region = xstrdup("us-east-1");
        if (!region_like(d->aws_region)) {
            fail(c, line, "aws_region_name must look like 'us-east-1'");
            return;
        }
        if (!d->api_key && (!d->aws_access_key_id || !d->aws_secret_access_key) && !d->disabled) {
            disable(d, "bedrock needs aws_access_key_id and aws_secret_access_key (or the "
                       "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY variables), or an api_key");
            warn(c, line, "bedrock needs AWS credentials; deployment disabled");
        }
        if (!d->api_base) {
            struct sb_buf b;
            sb_buf_init(&b, 1024);
            if (sb_buf_printf(&b, "https://bedrock-runtime.%s.amazonaws.com", d->aws_region) == 0)
                d->api_base = sb_buf_take(&b, NULL);
            sb_buf_free(&b);
        }
        break;
    default:
        break;
    }
}

/* ---- Sections ------------------------------------------------------------------------ */

static char **read_alias_list(struct ctx *c, const struct ynode *v, const char *key, size_t *n);

static void load_params(struct ctx *c, const struct ynode *params, struct sb_deployment *d)
{
    struct pairs ps = {0};
    if (flatten(c, params, &ps, 0)) {
        pairs_free(&ps);
        return;
    }
    const struct ynode *model = NULL;
    bool api_base_given = false;
    double timeout = -1, stream_timeout = -1;
    for (size_t i = 0; i < ps.n; i++) {
        const struct ynode *k = ps.p[i].k, *v = ps.p[i].v;
        char *s = NULL;
        int64_t iv;
        if (scalar_is(k, "model")) {
            if (is_null(v))
                continue;
            model = v;
            if (read_str(c, v, "litellm_params.model", d, &s) == 0)
                set_str(&d->litellm_model, s);
        } else if (scalar_is(k, "api_base")) {
            if (is_null(v))
                continue;
            api_base_given = true;
            if (read_str(c, v, "litellm_params.api_base", d, &s) != 0)
                continue;
            if (!starts_with_ci(s, "http://") && !starts_with_ci(s, "https://")) {
                fail(c, v->line, "litellm_params.api_base must be an http:// or https:// URL");
                free(s);
                continue;
            }
            size_t l = strlen(s);
            while (l > 8 && s[l - 1] == '/')
                s[--l] = '\0';
            set_str(&d->api_base, s);
        } else if (scalar_is(k, "api_key")) {
            if (!is_null(v) && read_str(c, v, "litellm_params.api_key", d, &s) == 0)
                set_str(&d->api_key, s);
        } else if (scalar_is(k, "api_version")) {
            if (!is_null(v) && read_str(c, v, "litellm_params.api_version", d, &s) == 0)
                set_str(&d->api_version, s);
        } else if (scalar_is(k, "vertex_project") || scalar_is(k, "vertex_location") ||
                   scalar_is(k, "aws_region_name") || scalar_is(k, "aws_access_key_id") ||
                   scalar_is(k, "aws_secret_access_key") || scalar_is(k, "aws_session_token")) {
            char **field = scalar_is(k, "vertex_project")          ? &d->vertex_project
                           : scalar_is(k, "vertex_location")       ? &d->vertex_location
                           : scalar_is(k, "aws_region_name")       ? &d->aws_region
                           : scalar_is(k, "aws_access_key_id")     ? &d->aws_access_key_id
                           : scalar_is(k, "aws_secret_access_key") ? &d->aws_secret_access_key
                                                                   : &d->aws_session_token;
            char keyname[128];
            snprintf(keyname, sizeof keyname, "litellm_params.%s", show_node(k).s);
            if (!is_null(v) && read_str(c, v, keyname, d, &s) == 0)
                set_str(field, s);
        } else if (scalar_is(k, "vertex_credentials")) {
            warn(c, k->line,
                 "litellm_params.vertex_credentials (a service-account file) is not supported "
                 "yet; give an OAuth access token as api_key or VERTEXAI_ACCESS_TOKEN");
        } else if (scalar_is(k, "timeout")) {
            get_double(c, v, "litellm_params.timeout", d, 1e7, &timeout);
        } else if (scalar_is(k, "stream_timeout")) {
            get_double(c, v, "litellm_params.stream_timeout", d, 1e7, &stream_timeout);
        } else if (scalar_is(k, "max_retries")) {
            iv = d->max_retries;
            get_int(c, v, "litellm_params.max_retries", d, 0, 10, &iv);
            d->max_retries = (int)iv;
        } else if (scalar_is(k, "rpm")) {
            get_int(c, v, "litellm_params.rpm", d, 0, INT64_MAX, &d->rpm);
        } else if (scalar_is(k, "tpm")) {
            get_int(c, v, "litellm_params.tpm", d, 0, INT64_MAX, &d->tpm);
        } else if (scalar_is(k, "weight")) {
            get_double(c, v, "litellm_params.weight", d, 1e9, &d->weight);
            d->weight_set = !is_null(v);
        } else if (scalar_is(k, "input_cost_per_token") || scalar_is(k, "output_cost_per_token")) {
            bool in = scalar_is(k, "input_cost_per_token");
            double cost = 0;
            int rc = read_double(c, v,
                                 in ? "litellm_params.input_cost_per_token"
                                    : "litellm_params.output_cost_per_token",
                                 d, &cost);
            if (rc == 0 && cost >= 0 && cost < 1)
                *(in ? &d->cost_in : &d->cost_out) = cost;
            else if (rc != 1 && rc != -1)
                fail(c, v->line, "litellm_params.%s must be a number in 0..1 (per token)",
                     in ? "input_cost_per_token" : "output_cost_per_token");
        } else if (scalar_is(k, "tags")) {
            for (size_t j = 0; j < d->n_tags; j++)
                free(d->tags[j]);
            free(d->tags);
            d->tags = read_alias_list(c, v, "litellm_params.tags", &d->n_tags);
        } else if (scalar_is(k, "ttft_timeout")) {
            get_double(c, v, "litellm_params.ttft_timeout", d, 1e7, &d->ttft_timeout_s);
        } else if (scalar_is(k, "order")) {
            iv = d->order;
            get_int(c, v, "litellm_params.order", d, 1, 1000, &iv);
            d->order = (int)iv;
        } else {
            warn(c, k->line, "unknown key 'litellm_params.%s' ignored", show_node(k).s);
        }
    }
    if (timeout > 0)
        d->timeout_s = timeout;
    d->timeout_set = timeout > 0;
    d->stream_timeout_set = stream_timeout > 0;
    d->stream_timeout_s = stream_timeout > 0 ? stream_timeout : d->timeout_s;
    if (!model) {
        fail(c, params->line, "litellm_params.model is required");
    } else if (d->litellm_model) {
        resolve_provider(c, d, model->line, api_base_given, params->line);
        provider_defaults(c, d, params->line);
    } else {
        /* Unresolved os.environ/: keep the text so the deployment can still be listed. */
        d->provider = SB_PROVIDER_UNSUPPORTED;
        if (model->kind == Y_SCALAR)
            d->litellm_model = xstrndup(model->s, strnlen(model->s, model->len));
        d->provider_name = xstrdup("");
        d->upstream_model = xstrdup("");
    }
    pairs_free(&ps);
}

static void load_deployment(struct ctx *c, const struct ynode *entry, struct sb_deployment *d)
{
    d->timeout_s = 600;
    d->stream_timeout_s = 600;
    d->weight = 1;
    d->cost_in = -1;
    d->cost_out = -1;
    d->line = entry->line;
    if (entry->kind != Y_MAP) {
        fail(c, entry->line, "model_list entries must be mappings");
        return;
    }
    struct pairs ps = {0};
    if (flatten(c, entry, &ps, 0)) {
        pairs_free(&ps);
        return;
    }
    const struct ynode *params = NULL, *info = NULL, *name = NULL;
    for (size_t i = 0; i < ps.n; i++) {
        const struct ynode *k = ps.p[i].k, *v = ps.p[i].v;
        if (scalar_is(k, "model_name"))
            name = is_null(v) ? NULL : v;
        else if (scalar_is(k, "litellm_params"))
            params = is_null(v) ? NULL : v;
        else if (scalar_is(k, "model_info"))
            info = is_null(v) ? NULL : v;
        else
            warn(c, k->line, "unknown key '%s' in a model_list entry ignored", show_node(k).s);
    }
    if (!name) {
        fail(c, entry->line, "model_name is required");
    } else {
        char *s;
        int rc = read_str(c, name, "model_name", d, &s);
        if (rc == 0 && !*s) {
            fail(c, name->line, "model_name must not be empty");
            free(s);
        } else if (rc == 0) {
            d->model_name = s;
        } else if (rc == 1) {
            d->model_name = xstrndup(name->s, name->len);
        }
    }
    if (!params)
        fail(c, entry->line, "litellm_params is required");
    else if (params->kind != Y_MAP)
        fail(c, params->line, "litellm_params must be a mapping");
    else
        load_params(c, params, d);
    if (info) {
        if (info->kind != Y_MAP) {
            fail(c, info->line, "model_info must be a mapping");
        } else {
            long count = 0;
            json_t *j = to_json(c, info, 0, &count);
            if (j) {
                d->model_info_json = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15));
                /* The router reads this one: the context window, for the pre-call check. */
                json_t *mit = json_object_get(j, "max_input_tokens");
                if (json_is_integer(mit) && json_integer_value(mit) > 0)
                    d->max_input_tokens = (int64_t)json_integer_value(mit);
                /* Prices in model_info count where litellm_params gives none. */
                json_t *ci = json_object_get(j, "input_cost_per_token");
                json_t *co = json_object_get(j, "output_cost_per_token");
                if (d->cost_in < 0 && json_is_number(ci) && json_number_value(ci) >= 0)
                    d->cost_in = json_number_value(ci);
                if (d->cost_out < 0 && json_is_number(co) && json_number_value(co) >= 0)
                    d->cost_out = json_number_value(co);
                /* access_groups: names a virtual key's `models` may give instead of aliases. */
                json_t *ag = json_object_get(j, "access_groups");
                size_t gi;
                json_t *gv;
                json_array_foreach(ag, gi, gv)
                {
                    if (!json_is_string(gv) || d->n_access_groups >= 64)
                        continue;
                    d->access_groups =
                        xrealloc(d->access_groups, (d->n_access_groups + 1) * sizeof(char *));
                    d->access_groups[d->n_access_groups++] = xstrdup(json_string_value(gv));
                }
                json_decref(j);
                if (!d->model_info_json)
                    fail(c, info->line, "model_info cannot be written as JSON");
            }
        }
    }
    pairs_free(&ps);
}

static void load_model_list(struct ctx *c, const struct ynode *v, struct sb_config *cfg)
{
    if (is_null(v)) {
        warn(c, v->line, "model_list is empty; no models are served");
        return;
    }
    if (v->kind != Y_SEQ) {
        fail(c, v->line, "model_list must be a list");
        return;
    }
    if (v->n == 0)
        warn(c, v->line, "model_list is empty; no models are served");
    if (cfg->deployments) {
        fail(c, v->line, "model_list is given twice");
        return;
    }
    cfg->deployments = xmalloc(v->n * sizeof *cfg->deployments);
    for (size_t i = 0; i < v->n && !c->work_exceeded; i++) {
        struct sb_deployment *d = &cfg->deployments[cfg->n_deployments++];
        memset(d, 0, sizeof *d);
        load_deployment(c, v->kids[i], d);
    }
}

enum field_kind { F_INT, F_INT64, F_MIB, F_KIB, F_STR };

struct field {
    const char *key;
    enum field_kind kind;
    size_t off;
    int64_t min, max; /* for sizes: max in units */
};

#define SRV(m) offsetof(struct sb_server_config, m)

static const struct field server_fields[] = {
    {"host", F_STR, SRV(host), 0, 0},
    {"port", F_INT, SRV(port), 1, 65535},
    {"workers", F_INT, SRV(workers), 0, 256},
    {"max_header_bytes", F_INT64, SRV(max_header_bytes), 1024, 1048576},
    {"max_response_mb", F_MIB, SRV(max_response_bytes), 0, 65536},
    {"max_event_kb", F_KIB, SRV(max_event_bytes), 0, 1048576},
    {"header_timeout_ms", F_INT64, SRV(header_timeout_ms), 1, 86400000},
    {"body_timeout_ms", F_INT64, SRV(body_timeout_ms), 1, 86400000},
    {"idle_timeout_ms", F_INT64, SRV(idle_timeout_ms), 1, 86400000},
    {"drain_timeout_ms", F_INT64, SRV(drain_timeout_ms), 1, 86400000},
    {"connect_timeout_ms", F_INT64, SRV(connect_timeout_ms), 1, 86400000},
    {"max_connections", F_INT64, SRV(max_connections), 1, 1000000},
    {"access_log", F_STR, SRV(access_log), 0, 0},
    {"log_level", F_STR, SRV(log_level), 0, 0},
    {"upstream_http1", F_STR, SRV(upstream_http1), 0, 0},
    {"journal_dir", F_STR, SRV(journal_dir), 0, 0},
    {"reserve_output_tokens", F_INT64, SRV(reserve_output_tokens), 1, 10000000},
};

static void load_field(struct ctx *c, const struct field *f, const char *section,
                       const struct ynode *v, struct sb_server_config *srv)
{
    char key[96];
    snprintf(key, sizeof key, "%s.%s", section, f->key);
    char *base = (char *)srv + f->off;
    int64_t iv;
    char *s;
    switch (f->kind) {
    case F_INT:
        iv = *(int *)(void *)base;
        get_int(c, v, key, NULL, f->min, f->max, &iv);
        *(int *)(void *)base = (int)iv;
        break;
    case F_INT64:
        get_int(c, v, key, NULL, f->min, f->max, (int64_t *)(void *)base);
        break;
    case F_MIB:
        get_size(c, v, key, 1024 * 1024, (double)f->max, (int64_t *)(void *)base);
        break;
    case F_KIB:
        get_size(c, v, key, 1024, (double)f->max, (int64_t *)(void *)base);
        break;
    case F_STR:
        if (is_null(v))
            break;
        if (read_str(c, v, key, NULL, &s) != 0)
            break;
        if (!*s) {
            fail(c, v->line, "%s must not be empty", key);
            free(s);
            break;
        }
        set_str((char **)(void *)base, s);
        break;
    }
}

static void load_server(struct ctx *c, const struct ynode *v, struct sb_config *cfg)
{
    if (is_null(v))
        return;
    if (v->kind != Y_MAP) {
        fail(c, v->line, "server must be a mapping");
        return;
    }
    struct pairs ps = {0};
    if (flatten(c, v, &ps, 0)) {
        pairs_free(&ps);
        return;
    }
    for (size_t i = 0; i < ps.n; i++) {
        const struct field *f = NULL;
        for (size_t j = 0; j < sizeof server_fields / sizeof *server_fields; j++) {
            if (scalar_is(ps.p[i].k, server_fields[j].key))
                f = &server_fields[j];
        }
        if (!f) {
            warn(c, ps.p[i].k->line, "unknown key 'server.%s' ignored", show_node(ps.p[i].k).s);
            continue;
        }
        load_field(c, f, "server", ps.p[i].v, &cfg->server);
        if (f->off == SRV(log_level) && cfg->server.log_level) {
            const char *l = cfg->server.log_level;
            if (strcmp(l, "debug") && strcmp(l, "info") && strcmp(l, "warn") && strcmp(l, "error"))
                fail(c, ps.p[i].v->line, "server.log_level must be debug, info, warn or error");
        }
        if (f->off == SRV(upstream_http1) && cfg->server.upstream_http1) {
            const char *u = cfg->server.upstream_http1;
            if (strcmp(u, "native") && strcmp(u, "curl"))
                fail(c, ps.p[i].v->line, "server.upstream_http1 must be native or curl");
        }
    }
    pairs_free(&ps);
}

static void load_general(struct ctx *c, const struct ynode *v, struct sb_config *cfg)
{
    if (is_null(v))
        return;
    if (v->kind != Y_MAP) {
        fail(c, v->line, "general_settings must be a mapping");
        return;
    }
    struct pairs ps = {0};
    if (flatten(c, v, &ps, 0)) {
        pairs_free(&ps);
        return;
    }
    for (size_t i = 0; i < ps.n; i++) {
        const struct ynode *k = ps.p[i].k, *val = ps.p[i].v;
        if (scalar_is(k, "master_key")) {
            if (is_null(val))
                continue;
            char *s;
            if (read_str(c, val, "general_settings.master_key", NULL, &s) != 0)
                continue;
            if (!*s) {
                fail(c, val->line, "general_settings.master_key must not be empty");
                free(s);
                continue;
            }
            if (strncmp(s, "sk-", 3) != 0)
                warn(c, val->line,
                     "general_settings.master_key should start with 'sk-' "
                     "(LiteLLM requires it)");
            set_str(&cfg->master_key, s);
        } else if (scalar_is(k, "max_request_size_mb")) {
            get_size(c, val, "general_settings.max_request_size_mb", 1024 * 1024, 65536,
                     &cfg->server.max_request_bytes);
        } else if (scalar_is(k, "sync_interval_ms")) {
            get_int(c, val, "general_settings.sync_interval_ms", NULL, 0, 3600000,
                    &cfg->server.sync_interval_ms);
        } else if (scalar_is(k, "database_url")) {
            if (is_null(val))
                continue;
            char *s;
            if (read_str(c, val, "general_settings.database_url", NULL, &s) != 0)
                continue;
            if (strncmp(s, "sqlite:", 7) != 0 && strncmp(s, "postgresql://", 13) != 0 &&
                strncmp(s, "postgres://", 11) != 0) {
                fail(c, val->line,
                     "general_settings.database_url must be sqlite:///path or "
                     "postgresql://...");
                free(s);
                continue;
            }
            set_str(&cfg->database_url, s);
        } else if (scalar_is(k, "redis_url")) {
            if (is_null(val))
                continue;
            char *s;
            if (read_str(c, val, "general_settings.redis_url", NULL, &s) != 0)
                continue;
            struct sb_redis_url u;
            char err[160];
            if (sb_redis_parse_url(s, &u, err, sizeof err) != 0) {
                fail(c, val->line, "general_settings.redis_url: %s", err);
                free(s);
                continue;
            }
            set_str(&cfg->redis_url, s);
        } else if (scalar_is(k, "redis_timeout_ms")) {
            get_int(c, val, "general_settings.redis_timeout_ms", NULL, 1, 60000,
                    &cfg->redis_timeout_ms);
        } else {
            warn(c, k->line, "general_settings.%s is not supported yet, ignored", show_node(k).s);
        }
    }
    pairs_free(&ps);
}

/* A list of aliases: a sequence of strings, or one string. */
static char **read_alias_list(struct ctx *c, const struct ynode *v, const char *key, size_t *n)
{
    *n = 0;
    if (v->kind == Y_SCALAR && !is_null(v)) {
        char **out = xmalloc(sizeof *out);
        if (read_str(c, v, key, NULL, &out[0]) != 0) {
            free(out);
            return NULL;
        }
        *n = 1;
        return out;
    }
    if (v->kind != Y_SEQ) {
        fail(c, v->line, "%s must be a list of model names", key);
        return NULL;
    }
    char **out = xmalloc((v->n ? v->n : 1) * sizeof *out);
    for (size_t i = 0; i < v->n; i++) {
        if (v->kids[i]->kind != Y_SCALAR || is_null(v->kids[i])) {
            fail(c, v->kids[i]->line, "%s must be a list of model names", key);
            break;
        }
        if (read_str(c, v->kids[i], key, NULL, &out[*n]) != 0)
            break;
        (*n)++;
    }
    return out;
}

/* fallbacks: [{alias: [other, ...]}, ...] */
static void load_fallbacks(struct ctx *c, const struct ynode *v, const char *key,
                           struct sb_fallback **list, size_t *n)
{
    if (is_null(v))
        return;
    if (v->kind != Y_SEQ) {
        fail(c, v->line, "%s must be a list of {model: [fallback, ...]} mappings", key);
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        const struct ynode *item = v->kids[i];
        struct pairs ps = {0};
        if (item->kind != Y_MAP) {
            fail(c, item->line, "%s: each entry must be one {model: [fallback, ...]}", key);
            continue;
        }
        if (flatten(c, item, &ps, 0) != 0) { /* it reported why */
            pairs_free(&ps);
            continue;
        }
        if (ps.n != 1 || ps.p[0].k->kind != Y_SCALAR) {
            fail(c, item->line, "%s: each entry must be one {model: [fallback, ...]}", key);
            pairs_free(&ps);
            continue;
        }
        struct sb_fallback fb = {.line = item->line};
        fb.from = xstrndup(ps.p[0].k->s, ps.p[0].k->len);
        fb.to = read_alias_list(c, ps.p[0].v, key, &fb.n_to);
        pairs_free(&ps);
        size_t cap = *n;
        grow((void **)list, &cap, *n + 1, sizeof **list);
        (*list)[(*n)++] = fb;
    }
}

/* LiteLLM's per-error-class maps (retry_policy, allowed_fails_policy): keys are the class
 * names with `suffix` ("AuthenticationErrorRetries"), values integers in [min, max], stored
 * in slots[] in the order auth, timeout, rate limit, content policy, server, bad request. */
static void load_class_map(struct ctx *c, const struct ynode *val, const char *key,
                           const char *suffix, int *const *slots, int64_t min, int64_t max)
{
    static const char *const classes[] = {"AuthenticationError", "TimeoutError",
                                          "RateLimitError",      "ContentPolicyViolationError",
                                          "InternalServerError", "BadRequestError"};
    if (val->kind != Y_MAP) {
        if (!is_null(val))
            fail(c, val->line, "%s must be a mapping of error class: number", key);
        return;
    }
    struct pairs ps = {0};
    if (flatten(c, val, &ps, 0) == 0) {
        for (size_t j = 0; j < ps.n; j++) {
            size_t m = 0;
            for (; m < 6; m++) {
                char name[64];
                snprintf(name, sizeof name, "%s%s", classes[m], suffix);
                if (scalar_is(ps.p[j].k, name))
                    break;
            }
            char sub[256];
            snprintf(sub, sizeof sub, "%s.%.64s", key, show_node(ps.p[j].k).s);
            if (m == 6) {
                warn(c, ps.p[j].k->line, "unknown key '%s' ignored", sub);
                continue;
            }
            int64_t n = min;
            get_int(c, ps.p[j].v, sub, NULL, min, max, &n);
            *slots[m] = (int)n;
        }
    }
    pairs_free(&ps);
}

/* routing_rules: each {model: ..., if: {...}, then: alias}; kept as JSON for the router. */
static void load_rules(struct ctx *c, const struct ynode *v, const char *key,
                       struct sb_router_config *r)
{
    if (is_null(v))
        return;
    if (v->kind != Y_SEQ) {
        fail(c, v->line, "%s must be a list of {if: {...}, then: model}", key);
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < v->n; i++) {
        const struct ynode *item = v->kids[i];
        long count = 0;
        json_t *rule = item->kind == Y_MAP ? to_json(c, item, 0, &count) : NULL;
        json_t *cond = json_object_get(rule, "if");
        json_t *then = json_object_get(rule, "then");
        json_t *model = json_object_get(rule, "model");
        char err[160];
        if (!json_is_object(cond) || !json_is_string(then) || (model && !json_is_string(model))) {
            fail(c, item->line, "%s: each rule needs 'if' (a query) and 'then' (a model name)",
                 key);
        } else if (sb_rules_validate(cond, err, sizeof err) != 0) {
            fail(c, item->line, "%s: %s", key, err);
        } else {
            json_array_append(arr, rule);
        }
        json_decref(rule);
    }
    free(r->routing_rules_json);
    r->routing_rules_json = json_dumps(arr, JSON_COMPACT);
    json_decref(arr);
}

/* router_settings and litellm_settings: the keys the router applies; the rest warn. */
static void load_router(struct ctx *c, const char *section, const struct ynode *v,
                        struct sb_config *cfg)
{
    if (is_null(v))
        return;
    if (v->kind != Y_MAP) {
        warn(c, v->line, "%s is not a mapping; ignored", section);
        return;
    }
    struct pairs ps = {0};
    if (flatten(c, v, &ps, 0) != 0) {
        pairs_free(&ps);
        return;
    }
    struct sb_router_config *r = &cfg->router;
    for (size_t i = 0; i < ps.n; i++) {
        const struct ynode *k = ps.p[i].k, *val = ps.p[i].v;
        char key[128];
        snprintf(key, sizeof key, "%s.%.64s", section, show_node(k).s);
        if (scalar_is(k, "num_retries")) {
            int64_t n = r->num_retries;
            get_int(c, val, key, NULL, 0, 10, &n);
            r->num_retries = (int)n;
            r->num_retries_set = true;
        } else if (scalar_is(k, "allowed_fails")) {
            int64_t n = r->allowed_fails;
            get_int(c, val, key, NULL, 1, 1000, &n);
            r->allowed_fails = (int)n;
        } else if (scalar_is(k, "cooldown_time")) {
            get_double(c, val, key, NULL, 3600, &r->cooldown_time_s);
        } else if (scalar_is(k, "retry_after")) {
            double d = 0;
            int rc = read_double(c, val, key, NULL, &d);
            if (rc == 0 && d >= 0 && d <= 60)
                r->retry_after_s = d;
            else if (rc != 1 && rc != -1)
                fail(c, val->line, "%s must be a number of seconds in 0..60", key);
        } else if (scalar_is(k, "fallbacks")) {
            load_fallbacks(c, val, key, &r->fallbacks, &r->n_fallbacks);
        } else if (scalar_is(k, "context_window_fallbacks")) {
            load_fallbacks(c, val, key, &r->context_window_fallbacks,
                           &r->n_context_window_fallbacks);
        } else if (scalar_is(k, "content_policy_fallbacks")) {
            load_fallbacks(c, val, key, &r->content_policy_fallbacks,
                           &r->n_content_policy_fallbacks);
        } else if (scalar_is(k, "routing_rules")) {
            load_rules(c, val, key, r);
        } else if (scalar_is(k, "timeout") || scalar_is(k, "request_timeout")) {
            get_double(c, val, key, NULL, 1e7, &r->timeout_s);
        } else if (scalar_is(k, "redis_host")) {
            char *s;
            if (!is_null(val) && read_str(c, val, key, NULL, &s) == 0)
                set_str(&cfg->redis_host, s);
        } else if (scalar_is(k, "redis_port")) {
            get_int(c, val, key, NULL, 1, 65535, &cfg->redis_port);
        } else if (scalar_is(k, "redis_password")) {
            char *s;
            if (!is_null(val) && read_str(c, val, key, NULL, &s) == 0)
                set_str(&cfg->redis_password, s);
        } else if (scalar_is(k, "allowed_fails_policy")) {
            int *slots[] = {&r->allowed_auth,       &r->allowed_timeout,
                            &r->allowed_rate_limit, &r->allowed_content_policy,
                            &r->allowed_server,     &r->allowed_bad_request};
            load_class_map(c, val, key, "AllowedFails", slots, 1, 1000);
        } else if (scalar_is(k, "enable_tag_filtering")) {
            if (val->kind == Y_SCALAR && (scalar_is(val, "true") || scalar_is(val, "True")))
                r->enable_tag_filtering = true;
            else if (val->kind == Y_SCALAR && (scalar_is(val, "false") || scalar_is(val, "False")))
                r->enable_tag_filtering = false;
            else
                fail(c, val->line, "%s must be true or false", key);
        } else if (scalar_is(k, "max_fallbacks")) {
            int64_t n = r->max_fallbacks;
            get_int(c, val, key, NULL, 0, 8, &n);
            r->max_fallbacks = (int)n;
        } else if (scalar_is(k, "retry_policy")) {
            int *slots[] = {&r->retries_auth,       &r->retries_timeout,
                            &r->retries_rate_limit, &r->retries_content_policy,
                            &r->retries_server,     &r->retries_bad_request};
            load_class_map(c, val, key, "Retries", slots, 0, 10);
        } else if (scalar_is(k, "routing_strategy")) {
            char *str = NULL;
            if (!is_null(val) && read_str(c, val, key, NULL, &str) == 0) {
                bool ok = sb_router_strategy_known(str);
                if (!ok) {
                    fail(c, val->line,
                         "%s must be simple-shuffle, round-robin, least-busy, "
                         "latency-based-routing, usage-based-routing(-v2) or cost-based-routing",
                         key);
                    free(str);
                } else {
                    set_str(&r->routing_strategy, str);
                }
            }
        } else if (scalar_is(k, "model_group_alias")) {
            struct pairs ap = {0};
            if (val->kind != Y_MAP) {
                if (!is_null(val))
                    fail(c, val->line, "%s must be a mapping of name: model_name", key);
            } else if (flatten(c, val, &ap, 0) == 0) {
                for (size_t j = 0; j < ap.n; j++) {
                    char *to = NULL;
                    if (ap.p[j].k->kind != Y_SCALAR || ap.p[j].v->kind != Y_SCALAR ||
                        read_str(c, ap.p[j].v, key, NULL, &to) != 0) {
                        fail(c, ap.p[j].k->line, "%s must be a mapping of name: model_name", key);
                        free(to);
                        continue;
                    }
                    size_t cap = r->n_group_alias;
                    grow((void **)&r->group_alias_from, &cap, r->n_group_alias + 1, sizeof(char *));
                    cap = r->n_group_alias;
                    grow((void **)&r->group_alias_to, &cap, r->n_group_alias + 1, sizeof(char *));
                    r->group_alias_from[r->n_group_alias] = xstrndup(ap.p[j].k->s, ap.p[j].k->len);
                    r->group_alias_to[r->n_group_alias++] = to;
                }
            }
            pairs_free(&ap);
        } else if (scalar_is(k, "default_fallbacks")) {
            for (size_t j = 0; j < r->n_default_fallbacks; j++)
                free(r->default_fallbacks[j]);
            free(r->default_fallbacks);
            r->default_fallbacks = read_alias_list(c, val, key, &r->n_default_fallbacks);
        } else {
            warn(c, k->line, "%s.%s is not supported yet, ignored", section, show_node(k).s);
        }
    }
    pairs_free(&ps);
}

static void set_defaults(struct sb_server_config *s)
{
    s->port = 4000;
    s->workers = 0;
    s->max_header_bytes = 16384;
    s->max_request_bytes = 32 * 1024 * 1024;
    s->max_response_bytes = 64 * 1024 * 1024;
    s->max_event_bytes = 4 * 1024 * 1024;
    s->header_timeout_ms = 10000;
    s->body_timeout_ms = 60000;
    s->idle_timeout_ms = 60000;
    s->drain_timeout_ms = 30000;
    s->sync_interval_ms = 1000;
    s->connect_timeout_ms = 10000;
    s->max_connections = 16384;
}

static void collect_model_names(struct sb_config *cfg)
{
    cfg->model_names =
        xmalloc((cfg->n_deployments ? cfg->n_deployments : 1) * sizeof *cfg->model_names);
    for (size_t i = 0; i < cfg->n_deployments; i++) {
        const char *n = cfg->deployments[i].model_name;
        if (sb_config_model_index(cfg, n, strlen(n)) < 0)
            cfg->model_names[cfg->n_model_names++] = xstrdup(n);
    }
}

static const char *default_getenv(const char *name)
{
    return getenv(name);
}

static void load_root(struct ctx *c, const struct ynode *root, struct sb_config *cfg)
{
    if (!root || is_null(root)) {
        fail(c, root ? root->line : 1, "the configuration is empty");
        return;
    }
    if (root->kind != Y_MAP) {
        fail(c, root->line,
             "the top level must be a mapping (model_list:, general_settings:, ...)");
        return;
    }
    struct pairs ps = {0};
    if (flatten(c, root, &ps, 0)) {
        pairs_free(&ps);
        return;
    }
    bool have_models = false;
    for (size_t i = 0; i < ps.n && !c->work_exceeded; i++) {
        const struct ynode *k = ps.p[i].k, *v = ps.p[i].v;
        if (scalar_is(k, "model_list")) {
            have_models = true;
            load_model_list(c, v, cfg);
        } else if (scalar_is(k, "general_settings")) {
            load_general(c, v, cfg);
        } else if (scalar_is(k, "server")) {
            load_server(c, v, cfg);
        } else if (scalar_is(k, "litellm_settings") || scalar_is(k, "router_settings")) {
            load_router(c, k->s, v, cfg);
        } else {
            warn(c, k->line, "unknown key '%s' ignored", show_node(k).s);
        }
    }
    if (!have_models)
        warn(c, root->line, "no model_list; no models are served");
    pairs_free(&ps);
}

int sb_config_load_string(const char *yaml, size_t len, const char *name, struct sb_config **out,
                          sb_config_diag_cb diag, void *ud, const char *(*getenv_fn)(const char *))
{
    struct ctx c = {
        .name = name ? name : "<config>",
        .diag = diag,
        .ud = ud,
        .getenv_fn = getenv_fn ? getenv_fn : default_getenv,
    };
    *out = NULL;
    if (len > MAX_FILE_BYTES) {
        fail(&c, 0, "the configuration is larger than 4 MiB");
        return -1;
    }
    struct ydoc doc = {0};
    if (build_tree(&c, yaml, len, &doc) != 0) {
        ydoc_free(&doc);
        return -1;
    }
    struct sb_config *cfg = xmalloc(sizeof *cfg);
    memset(cfg, 0, sizeof *cfg);
    cfg->path = xstrdup(c.name);
    set_defaults(&cfg->server);
    cfg->router.allowed_fails = 3;
    cfg->router.cooldown_time_s = 5;
    cfg->router.max_fallbacks = 5;
    cfg->router.retries_auth = cfg->router.retries_timeout = cfg->router.retries_rate_limit = -1;
    cfg->router.retries_content_policy = cfg->router.retries_server = -1;
    cfg->router.retries_bad_request = -1;
    cfg->router.allowed_auth = cfg->router.allowed_timeout = cfg->router.allowed_rate_limit = -1;
    cfg->router.allowed_content_policy = cfg->router.allowed_server = -1;
    cfg->router.allowed_bad_request = -1;
    load_root(&c, doc.root, cfg);
    ydoc_free(&doc);
    if (c.errors) {
        sb_config_free(cfg);
        return -1;
    }
    /* Without a master key anyone who can reach the port may spend the provider keys, so
     * the default then stays on loopback. */
    if (!cfg->server.host)
        cfg->server.host = xstrdup(cfg->master_key ? "0.0.0.0" : "127.0.0.1");
    if (!cfg->server.access_log)
        cfg->server.access_log = xstrdup("stdout");
    if (!cfg->server.log_level)
        cfg->server.log_level = xstrdup("info");
    if (!cfg->server.upstream_http1)
        cfg->server.upstream_http1 = xstrdup("native");
    if (!cfg->server.reserve_output_tokens)
        cfg->server.reserve_output_tokens = 4096;
    if (!cfg->redis_timeout_ms)
        cfg->redis_timeout_ms = 100;
    if (!cfg->database_url && cfg->master_key)
        cfg->database_url = xstrdup("sqlite://switchboard.db");
    if (!cfg->router.routing_strategy)
        cfg->router.routing_strategy = xstrdup("simple-shuffle");
    collect_model_names(cfg);
    /* router_settings.timeout: for deployments that set none of their own. */
    for (size_t i = 0; cfg->router.timeout_s > 0 && i < cfg->n_deployments; i++) {
        struct sb_deployment *d = &cfg->deployments[i];
        if (!d->timeout_set)
            d->timeout_s = cfg->router.timeout_s;
        if (!d->stream_timeout_set)
            d->stream_timeout_s = d->timeout_s;
    }
    /* A fallback naming no configured alias is most likely a typo; it would never serve. */
    const struct sb_router_config *rt = &cfg->router;
    struct sb_fallback *all[] = {rt->fallbacks, rt->context_window_fallbacks,
                                 rt->content_policy_fallbacks};
    size_t counts[] = {rt->n_fallbacks, rt->n_context_window_fallbacks,
                       rt->n_content_policy_fallbacks};
    for (size_t list = 0; list < 3; list++)
        for (size_t i = 0; i < counts[list]; i++) {
            const struct sb_fallback *fb = &all[list][i];
            if (sb_config_model_index(cfg, fb->from, strlen(fb->from)) < 0)
                warn(&c, fb->line, "fallbacks: '%.64s' is not a model_name of model_list",
                     fb->from);
            for (size_t j = 0; j < fb->n_to; j++)
                if (sb_config_model_index(cfg, fb->to[j], strlen(fb->to[j])) < 0)
                    warn(&c, fb->line, "fallbacks: '%.64s' is not a model_name of model_list",
                         fb->to[j]);
        }
    *out = cfg;
    return 0;
}

int sb_config_load_file(const char *path, struct sb_config **out, sb_config_diag_cb diag, void *ud,
                        const char *(*getenv_fn)(const char *))
{
    struct ctx c = {.name = path, .diag = diag, .ud = ud};
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fail(&c, 0, "cannot open: %s", strerror(errno));
        return -1;
    }
    struct sb_buf b;
    sb_buf_init(&b, MAX_FILE_BYTES);
    char chunk[16384];
    int rc = 0;
    size_t got;
    while ((got = fread(chunk, 1, sizeof chunk, f)) > 0) {
        rc = sb_buf_append(&b, chunk, got);
        if (rc)
            break;
    }
    if (rc == -E2BIG) {
        fail(&c, 0, "the configuration is larger than 4 MiB");
    } else if (rc) {
        fail(&c, 0, "out of memory reading the configuration");
    } else if (ferror(f)) {
        fail(&c, 0, "cannot read: %s", strerror(errno));
        rc = -1;
    }
    fclose(f);
    if (rc == 0)
        rc = sb_config_load_string(b.data ? b.data : "", b.len, path, out, diag, ud, getenv_fn);
    sb_buf_free(&b);
    return rc ? -1 : 0;
}

static void deployment_free(struct sb_deployment *d)
{
    free(d->model_name);
    free(d->litellm_model);
    free(d->provider_name);
    free(d->upstream_model);
    free(d->api_base);
    free(d->api_key);
    free(d->api_version);
    free(d->vertex_project);
    free(d->vertex_location);
    free(d->aws_region);
    free(d->aws_access_key_id);
    if (d->aws_secret_access_key)
        explicit_bzero(d->aws_secret_access_key, strlen(d->aws_secret_access_key));
    free(d->aws_secret_access_key);
    free(d->aws_session_token);
    free(d->model_info_json);
    for (size_t g = 0; g < d->n_access_groups; g++)
        free(d->access_groups[g]);
    free(d->access_groups);
    free(d->disabled_reason);
    for (size_t i = 0; i < d->n_tags; i++)
        free(d->tags[i]);
    free(d->tags);
}

static void fallbacks_free(struct sb_fallback *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(list[i].from);
        for (size_t j = 0; j < list[i].n_to; j++)
            free(list[i].to[j]);
        free(list[i].to);
    }
    free(list);
}

void sb_config_free(struct sb_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_deployments; i++)
        deployment_free(&cfg->deployments[i]);
    free(cfg->deployments);
    for (size_t i = 0; i < cfg->n_model_names; i++)
        free(cfg->model_names[i]);
    free(cfg->model_names);
    free(cfg->path);
    free(cfg->master_key);
    free(cfg->server.host);
    free(cfg->server.access_log);
    free(cfg->server.log_level);
    free(cfg->server.upstream_http1);
    free(cfg->server.journal_dir);
    free(cfg->database_url);
    free(cfg->redis_url);
    free(cfg->redis_host);
    free(cfg->redis_password);
    fallbacks_free(cfg->router.fallbacks, cfg->router.n_fallbacks);
    fallbacks_free(cfg->router.context_window_fallbacks, cfg->router.n_context_window_fallbacks);
    fallbacks_free(cfg->router.content_policy_fallbacks, cfg->router.n_content_policy_fallbacks);
    for (size_t j = 0; j < cfg->router.n_default_fallbacks; j++)
        free(cfg->router.default_fallbacks[j]);
    free(cfg->router.default_fallbacks);
    free(cfg->router.routing_strategy);
    free(cfg->router.routing_rules_json);
    for (size_t j = 0; j < cfg->router.n_group_alias; j++) {
        free(cfg->router.group_alias_from[j]);
        free(cfg->router.group_alias_to[j]);
    }
    free(cfg->router.group_alias_from);
    free(cfg->router.group_alias_to);
    free(cfg);
}

int sb_config_model_index(const struct sb_config *cfg, const char *name, size_t len)
{
    for (size_t i = 0; i < cfg->n_model_names; i++) {
        const char *n = cfg->model_names[i];
        if (strlen(n) == len && memcmp(n, name, len) == 0)
            return (int)i;
    }
    return -1;
}

/* The spend journal: lines are read back from disk after a crash, so they are outside bytes.
 * The input is split into lines as the store thread splits a segment; every line the parser
 * takes must encode again, and that encoding must parse to the same row and encode to the same
 * bytes. The input also builds a row directly (every string field from its own slice of the
 * input), which must survive encode and parse unchanged, and is tried as a segment file name. */
#include "ledger/ledger.c"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char line_a[LINE_CAP], line_b[LINE_CAP];

/* Field by field: a member given twice leaves the bytes of the longer first value behind the
 * NUL of the second, which no reader of the row sees. */
static bool same_row(const struct sb_spend_row *a, const struct sb_spend_row *b)
{
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *x = (const char *)a + fields[i].off, *y = (const char *)b + fields[i].off;
        if (fields[i].type == 's' && strcmp(x, y) != 0)
            return false;
    }
    return a->prompt_tokens == b->prompt_tokens && a->completion_tokens == b->completion_tokens &&
           a->cache_read_tokens == b->cache_read_tokens &&
           a->cache_write_tokens == b->cache_write_tokens &&
           a->reasoning_tokens == b->reasoning_tokens && a->cost_nano == b->cost_nano &&
           a->start_ms == b->start_ms && a->end_ms == b->end_ms && a->status == b->status &&
           a->cost_known == b->cost_known && a->cache_hit == b->cache_hit;
}

static void check_round_trip(const struct sb_spend_row *row)
{
    size_t n = encode_row(line_a, sizeof line_a, row);
    if (n == 0 || line_a[n - 1] != '\n' || memchr(line_a, '\n', n - 1) != NULL)
        abort(); /* every row the fields can hold fits on one line */
    struct sb_spend_row back;
    if (parse_row(line_a, n - 1, &back) != 0)
        abort();
    if (!same_row(row, &back))
        abort();
    size_t m = encode_row(line_b, sizeof line_b, &back);
    if (m != n || memcmp(line_a, line_b, n) != 0)
        abort();
}

/* A string field from the input: a length byte, then that many bytes (cut at a NUL, which a C
 * string cannot hold, and at the field's size). */
static void take_str(const uint8_t **p, size_t *left, char *dst, size_t cap)
{
    size_t want = 0;
    if (*left > 0) {
        want = **p;
        (*p)++;
        (*left)--;
    }
    if (want > *left)
        want = *left;
    if (want > cap - 1)
        want = cap - 1;
    size_t n = strnlen((const char *)*p, want);
    memcpy(dst, *p, n);
    dst[n] = '\0';
    *p += want;
    *left -= want;
}

static int64_t take_i64(const uint8_t **p, size_t *left)
{
    uint64_t v = 0;
    size_t n = *left < 8 ? *left : 8;
    for (size_t i = 0; i < n; i++)
        v = v << 8 | (*p)[i];
    *p += n;
    *left -= n;
    return (int64_t)v;
}

static void built_row(const uint8_t *data, size_t size)
{
    struct sb_spend_row r;
    memset(&r, 0, sizeof r);
    const uint8_t *p = data;
    size_t left = size;
    take_str(&p, &left, r.request_id, sizeof r.request_id);
    take_str(&p, &left, r.key_hash, sizeof r.key_hash);
    take_str(&p, &left, r.team_id, sizeof r.team_id);
    take_str(&p, &left, r.user_id, sizeof r.user_id);
    take_str(&p, &left, r.end_user, sizeof r.end_user);
    take_str(&p, &left, r.model, sizeof r.model);
    take_str(&p, &left, r.deployment, sizeof r.deployment);
    take_str(&p, &left, r.provider, sizeof r.provider);
    take_str(&p, &left, r.route, sizeof r.route);
    r.prompt_tokens = take_i64(&p, &left);
    r.completion_tokens = take_i64(&p, &left);
    r.cache_read_tokens = take_i64(&p, &left);
    r.cache_write_tokens = take_i64(&p, &left);
    r.reasoning_tokens = take_i64(&p, &left);
    r.cost_nano = take_i64(&p, &left);
    r.start_ms = take_i64(&p, &left);
    r.end_ms = take_i64(&p, &left);
    r.status = (int)(int32_t)(uint32_t)take_i64(&p, &left);
    uint64_t flags = (uint64_t)take_i64(&p, &left);
    r.cost_known = flags & 1;
    r.cache_hit = (flags & 2) != 0;
    /* A row without a request_id is refused by design (it could not be written exactly once). */
    if (r.request_id[0] != '\0')
        check_round_trip(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    /* Lines as apply_fd cuts them: at each '\n', the empty ones skipped. */
    for (size_t pos = 0; pos < size;) {
        const char *nl = memchr(s + pos, '\n', size - pos);
        size_t len = nl != NULL ? (size_t)(nl - (s + pos)) : size - pos;
        if (len > 0) {
            /* An exact-size copy, so a read past the line is caught. */
            char *line = malloc(len);
            if (line == NULL)
                return 0;
            memcpy(line, s + pos, len);
            struct sb_spend_row row;
            if (parse_row(line, len, &row) == 0) {
                if (row.request_id[0] == '\0')
                    abort();
                check_round_trip(&row);
            }
            free(line);
        }
        pos += len + 1;
    }

    built_row(data, size);

    if (size < 300) {
        char name[300];
        memcpy(name, data, size);
        name[size] = '\0';
        int worker = -1;
        uint64_t seg = 0;
        if (parse_seg_name(name, &worker, &seg)) {
            char again[PATH_MAX];
            int n = snprintf(again, sizeof again, "w%d-%" PRIu64 ".jsonl", worker, seg);
            int worker2 = -1;
            uint64_t seg2 = 0;
            if (worker < 0 || n <= 0 || (size_t)n >= sizeof again ||
                !parse_seg_name(again, &worker2, &seg2) || worker2 != worker || seg2 != seg)
                abort();
        }
    }
    return 0;
}

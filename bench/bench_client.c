/* Benchmark client for bench/run.sh, built by the script itself (cc -O2) into its temp dir.
 *
 *   bench_client ttfb --port N --path P --body FILE [--auth KEY] [--count N] [--warmup N]
 *       Sends `count` sequential POSTs of FILE over one keep-alive connection and measures,
 *       per request, the time from just before the request is written to the arrival of the
 *       first payload byte of the response (for a chunked response the first byte of chunk
 *       data, i.e. the first SSE byte a client library would see). Prints one line:
 *       "ttfb n=N p50_us=X p99_us=Y max_us=Z errors=E".
 *
 *   bench_client idle --port N [--path P] [--count N]
 *       Opens `count` connections, sends one GET P on each and reads the whole response, so
 *       every connection has served a request and now sits idle in keep-alive. Prints
 *       "idle open=N failed=F" and holds the connections until SIGTERM/SIGINT.
 *
 * Plain blocking sockets on purpose: one request in flight, no event loop or runtime between
 * the socket and the clock, so the figures are the proxy's and the kernel's, not the client's.
 * Everything talks to 127.0.0.1 only. Exit status: 0 when no request failed, 1 otherwise,
 * 2 on bad usage. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define RD_CAP       65536
#define MAX_BODY     (1024 * 1024)
#define MAX_COUNT    100000
#define IO_TIMEOUT_S 10
#define HEAD_CAP     2048

struct reader {
    int fd;
    size_t len;
    size_t pos;
    uint64_t fill_ns; /* when the newest bytes arrived */
    char buf[RD_CAP];
};

struct opts {
    const char *mode;
    int port;
    const char *path;
    const char *body_file;
    const char *auth;
    long count;
    long warmup;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int parse_long(const char *s, long lo, long hi, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

static int dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S, .tv_usec = 0};
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_all(int fd, const struct iovec *iov_in, int n)
{
    struct iovec iov[2];
    if (n < 1 || n > 2)
        return -1;
    memcpy(iov, iov_in, sizeof(iov[0]) * (size_t)n);
    int i = 0;
    while (i < n) {
        ssize_t w = writev(fd, iov + i, n - i);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        size_t left = (size_t)w;
        while (i < n && left >= iov[i].iov_len) {
            left -= iov[i].iov_len;
            i++;
        }
        if (i < n) {
            iov[i].iov_base = (char *)iov[i].iov_base + left;
            iov[i].iov_len -= left;
        }
    }
    return 0;
}

/* Reads more bytes; compacts first so a line or header block up to RD_CAP always fits. */
static int fill(struct reader *r)
{
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->len == RD_CAP)
        return -1;
    for (;;) {
        ssize_t n = recv(r->fd, r->buf + r->len, RD_CAP - r->len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        r->fill_ns = now_ns();
        r->len += (size_t)n;
        return 0;
    }
}

/* Returns the next CRLF-terminated line (without the CRLF) in *line and *n. */
static int read_line(struct reader *r, const char **line, size_t *n)
{
    for (;;) {
        const char *start = r->buf + r->pos;
        size_t avail = r->len - r->pos;
        const char *lf = avail > 0 ? memchr(start, '\n', avail) : NULL;
        if (lf != NULL) {
            size_t l = (size_t)(lf - start);
            if (l > 0 && start[l - 1] == '\r')
                l--;
            *line = start;
            *n = l;
            r->pos += (size_t)(lf - start) + 1;
            return 0;
        }
        if (fill(r) != 0)
            return -1;
    }
}

/* Consumes `n` payload bytes; the first time a payload byte is available, *first_ns gets the
 * arrival time of the read that delivered it (bytes are parsed before the next read, so the
 * newest read is the one that brought it). */
static int skip_payload(struct reader *r, uint64_t n, uint64_t *first_ns)
{
    while (n > 0) {
        if (r->pos == r->len && fill(r) != 0)
            return -1;
        if (*first_ns == 0)
            *first_ns = r->fill_ns;
        size_t avail = r->len - r->pos;
        size_t take = avail < n ? avail : (size_t)n;
        r->pos += take;
        n -= take;
    }
    return 0;
}

static int header_is(const char *line, size_t n, const char *name, const char **value, size_t *vlen)
{
    size_t nl = strlen(name);
    if (n <= nl || line[nl] != ':' || strncasecmp(line, name, nl) != 0)
        return 0;
    size_t i = nl + 1;
    while (i < n && (line[i] == ' ' || line[i] == '\t'))
        i++;
    *value = line + i;
    *vlen = n - i;
    return 1;
}

static int parse_u64(const char *s, size_t n, int base, uint64_t *out)
{
    char tmp[32];
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    size_t j = i;
    while (j < n && s[j] != ';' && s[j] != ' ' && s[j] != '\t')
        j++;
    if (j == i || j - i >= sizeof(tmp))
        return -1;
    memcpy(tmp, s + i, j - i);
    tmp[j - i] = '\0';
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(tmp, &end, base);
    if (errno != 0 || *end != '\0' || tmp[0] == '-')
        return -1;
    *out = v;
    return 0;
}

/* Reads one whole response. *status gets the status code, *first_ns the arrival time of the
 * first payload byte (0 for an empty body), *keep whether the connection stays open. */
static int read_response(struct reader *r, int *status, uint64_t *first_ns, int *keep)
{
    const char *line;
    size_t n;
    *first_ns = 0;
    *keep = 1;
    if (read_line(r, &line, &n) != 0)
        return -1;
    if (n < 12 || strncmp(line, "HTTP/1.1 ", 9) != 0)
        return -1;
    *status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
    int chunked = 0;
    int have_len = 0;
    uint64_t clen = 0;
    for (;;) {
        if (read_line(r, &line, &n) != 0)
            return -1;
        if (n == 0)
            break;
        const char *v;
        size_t vl;
        if (header_is(line, n, "transfer-encoding", &v, &vl)) {
            chunked = vl >= 7 && strncasecmp(v + vl - 7, "chunked", 7) == 0;
        } else if (header_is(line, n, "content-length", &v, &vl)) {
            if (parse_u64(v, vl, 10, &clen) != 0)
                return -1;
            have_len = 1;
        } else if (header_is(line, n, "connection", &v, &vl)) {
            if (vl == 5 && strncasecmp(v, "close", 5) == 0)
                *keep = 0;
        }
    }
    if (!chunked) {
        if (!have_len)
            return -1; /* a close-delimited body cannot be kept alive */
        return skip_payload(r, clen, first_ns);
    }
    for (;;) {
        uint64_t size;
        if (read_line(r, &line, &n) != 0 || parse_u64(line, n, 16, &size) != 0)
            return -1;
        if (size == 0)
            break;
        if (skip_payload(r, size, first_ns) != 0)
            return -1;
        if (read_line(r, &line, &n) != 0 || n != 0)
            return -1;
    }
    for (;;) { /* trailers, then the empty line */
        if (read_line(r, &line, &n) != 0)
            return -1;
        if (n == 0)
            return 0;
    }
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a;
    uint64_t y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t percentile(const uint64_t *v, size_t n, double p)
{
    size_t rank = (size_t)(p * (double)n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

static char *load_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *data = malloc(MAX_BODY);
    size_t n = data != NULL ? fread(data, 1, MAX_BODY, f) : 0;
    int bad = data == NULL || ferror(f) || !feof(f);
    fclose(f);
    if (bad) {
        free(data);
        return NULL;
    }
    *len = n;
    return data;
}

static int run_ttfb(const struct opts *o)
{
    size_t body_len = 0;
    char *body = load_file(o->body_file, &body_len);
    if (body == NULL) {
        fprintf(stderr, "bench_client: cannot read %s (or it is over %d bytes)\n", o->body_file,
                MAX_BODY);
        return 1;
    }
    char head[HEAD_CAP];
    int hl;
    if (o->auth != NULL)
        hl = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                      o->path, o->port, o->auth, body_len);
    else
        hl = snprintf(head, sizeof(head),
                      "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                      "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                      o->path, o->port, body_len);
    uint64_t *lat = calloc((size_t)o->count, sizeof(*lat));
    struct reader *r = malloc(sizeof(*r));
    if (hl < 0 || (size_t)hl >= sizeof(head) || lat == NULL || r == NULL) {
        fprintf(stderr, "bench_client: request head too long or out of memory\n");
        free(body);
        free(lat);
        free(r);
        return 1;
    }
    struct iovec iov[2] = {{head, (size_t)hl}, {body, body_len}};
    long errors = 0;
    size_t got = 0;
    r->fd = -1;
    for (long i = 0; i < o->warmup + o->count; i++) {
        if (r->fd < 0) {
            r->fd = dial(o->port);
            r->len = r->pos = 0;
            if (r->fd < 0) {
                errors++;
                continue;
            }
        }
        int status = 0, keep = 0;
        uint64_t first = 0;
        uint64_t t0 = now_ns();
        int rc = write_all(r->fd, iov, 2);
        if (rc == 0)
            rc = read_response(r, &status, &first, &keep);
        if (rc != 0 || status != 200 || first == 0) {
            if (rc == 0)
                fprintf(stderr, "bench_client: status %d%s\n", status,
                        first == 0 ? " with an empty body" : "");
            else
                fprintf(stderr, "bench_client: connection failed mid-response\n");
            errors++;
            keep = 0;
        } else if (i >= o->warmup) {
            lat[got++] = first - t0;
        }
        if (!keep || r->len != r->pos) {
            close(r->fd);
            r->fd = -1;
        }
    }
    if (r->fd >= 0)
        close(r->fd);
    if (got > 0) {
        qsort(lat, got, sizeof(*lat), cmp_u64);
        printf("ttfb n=%zu p50_us=%.1f p99_us=%.1f max_us=%.1f errors=%ld\n", got,
               (double)percentile(lat, got, 0.50) / 1e3, (double)percentile(lat, got, 0.99) / 1e3,
               (double)lat[got - 1] / 1e3, errors);
    } else {
        printf("ttfb n=0 errors=%ld\n", errors);
    }
    free(body);
    free(lat);
    free(r);
    return errors == 0 && got > 0 ? 0 : 1;
}

static int run_idle(const struct opts *o)
{
    int *fds = calloc((size_t)o->count, sizeof(*fds));
    struct reader *r = malloc(sizeof(*r));
    char head[HEAD_CAP];
    int hl = snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", o->path,
                      o->port);
    if (fds == NULL || r == NULL || hl < 0 || (size_t)hl >= sizeof(head)) {
        fprintf(stderr, "bench_client: out of memory or path too long\n");
        free(fds);
        free(r);
        return 1;
    }
    /* Block the stop signals before the loop so one arriving mid-way is not lost. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGHUP);
    sigprocmask(SIG_BLOCK, &stop, NULL);

    struct iovec iov[1] = {{head, (size_t)hl}};
    long open_n = 0, failed = 0;
    int first_err = 0;
    for (long i = 0; i < o->count; i++) {
        int fd = dial(o->port);
        int status = 0, keep = 0;
        uint64_t first = 0;
        if (fd >= 0) {
            r->fd = fd;
            r->len = r->pos = 0;
            if (write_all(fd, iov, 1) != 0 || read_response(r, &status, &first, &keep) != 0 ||
                status != 200 || !keep || r->len != r->pos) {
                close(fd);
                fd = -1;
            }
        }
        if (fd < 0) {
            if (first_err == 0)
                first_err = errno != 0 ? errno : EPROTO;
            failed++;
            continue;
        }
        fds[open_n++] = fd;
    }
    if (failed > 0)
        fprintf(stderr, "bench_client: %ld of %ld connections failed (first: %s)\n", failed,
                o->count, strerror(first_err));
    printf("idle open=%ld failed=%ld\n", open_n, failed);
    fflush(stdout);
    int sig = 0;
    sigwait(&stop, &sig);
    for (long i = 0; i < open_n; i++)
        close(fds[i]);
    free(fds);
    free(r);
    return failed == 0 ? 0 : 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: bench_client ttfb --port N --path P --body FILE [--auth KEY] "
                    "[--count N] [--warmup N]\n"
                    "       bench_client idle --port N [--path P] [--count N]\n");
    return 2;
}

int main(int argc, char **argv)
{
    struct opts o = {.path = "/health/liveliness", .count = 1000, .warmup = 20};
    if (argc < 2) {
        return usage();
    }
    o.mode = argv[1];
    long port = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            return usage();
        }
        i++;
        if (strcmp(a, "--port") == 0) {
            if (parse_long(v, 1, 65535, &port) != 0)
                return usage();
        } else if (strcmp(a, "--path") == 0) {
            o.path = v;
        } else if (strcmp(a, "--body") == 0) {
            o.body_file = v;
        } else if (strcmp(a, "--auth") == 0) {
            o.auth = v;
        } else if (strcmp(a, "--count") == 0) {
            if (parse_long(v, 1, MAX_COUNT, &o.count) != 0)
                return usage();
        } else if (strcmp(a, "--warmup") == 0) {
            if (parse_long(v, 0, MAX_COUNT, &o.warmup) != 0)
                return usage();
        } else {
            return usage();
        }
    }
    o.port = (int)port;
    if (o.port == 0) {
        return usage();
    }
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(o.mode, "ttfb") == 0) {
        if (o.body_file == NULL) {
            return usage();
        }
        return run_ttfb(&o);
    }
    if (strcmp(o.mode, "idle") == 0)
        return run_idle(&o);
    return usage();
}

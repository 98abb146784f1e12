/* fake-provider: a fast, scriptable stand-in for an OpenAI-compatible upstream, for the
 * integration tests, the end-to-end tests and the benchmarks. */
#include "fake.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

static const char usage[] =
    "usage: fake-provider [--host 127.0.0.1] [--port 4010] [--threads 2] [--fixtures DIR] "
    "[--quiet]\n";

static int parse_num(const char *s, long min, long max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The default fixtures folder is tests/data/fixtures under the current folder; when the
 * binary runs from elsewhere, the one next to the build folder it was built in. */
static const char *default_fixtures(char *buf, size_t len)
{
    static const char rel[] = "tests/data/fixtures";
    if (is_dir(rel))
        return rel;
    char exe[PATH_MAX];
    size_t n = sizeof exe;
    if (uv_exepath(exe, &n) == 0) {
        char *slash = strrchr(exe, '/');
        if (slash) {
            *slash = '\0';
            int k = snprintf(buf, len, "%s/../%s", exe, rel);
            if (k > 0 && (size_t)k < len && is_dir(buf))
                return buf;
        }
    }
    return rel;
}

int main(int argc, char **argv)
{
    char fixtures_buf[PATH_MAX + 64];
    struct sb_fake_config cfg = {
        .host = "127.0.0.1",
        .port = 4010,
        .threads = 2,
        .fixtures = NULL,
        .quiet = false,
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quiet") == 0) {
            cfg.quiet = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "fake-provider: %s needs a value\n%s", a, usage);
            return 2;
        }
        i++;
        if (strcmp(a, "--host") == 0) {
            cfg.host = v;
        } else if (strcmp(a, "--port") == 0) {
            if (parse_num(v, 0, 65535, &cfg.port) != 0) {
                fprintf(stderr, "fake-provider: bad --port '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "--threads") == 0) {
            if (parse_num(v, 1, 64, &cfg.threads) != 0) {
                fprintf(stderr, "fake-provider: bad --threads '%s' (1..64)\n", v);
                return 2;
            }
        } else if (strcmp(a, "--fixtures") == 0) {
            cfg.fixtures = v;
        } else {
            fprintf(stderr, "fake-provider: unknown option '%s'\n%s", a, usage);
            return 2;
        }
    }
    if (!cfg.fixtures)
        cfg.fixtures = default_fixtures(fixtures_buf, sizeof fixtures_buf);
    else if (!is_dir(cfg.fixtures))
        fprintf(stderr, "fake-provider: warning: fixtures folder %s does not exist\n",
                cfg.fixtures);
    return sb_fake_server_run(&cfg);
}

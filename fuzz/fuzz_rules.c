/* Conditional routing: a query (from a config or the x-switchboard-config header) and a
 * request body, both outside bytes. The input is "query \0 body \0 metadata". */
#include "router/rules.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    const char *z1 = memchr(s, '\0', size);
    size_t qlen = z1 ? (size_t)(z1 - s) : size;
    const char *body = z1 ? z1 + 1 : "";
    size_t rest = z1 ? size - qlen - 1 : 0;
    const char *z2 = memchr(body, '\0', rest);
    size_t blen = z2 ? (size_t)(z2 - body) : rest;
    const char *meta = z2 ? z2 + 1 : NULL;
    size_t mlen = z2 ? rest - blen - 1 : 0;

    json_t *query = json_loadb(s, qlen, JSON_DECODE_ANY, NULL);
    char err[160];
    int valid = query ? sb_rules_validate(query, err, sizeof err) : -1;
    json_t *ctx = sb_rules_context(body, blen, meta, mlen);
    if (valid == 0 && ctx) {
        bool a = sb_rules_match(query, ctx);
        bool b = sb_rules_match(query, ctx);
        if (a != b) /* evaluation has no state */
            abort();
    }
    json_decref(ctx);
    json_decref(query);
    return 0;
}

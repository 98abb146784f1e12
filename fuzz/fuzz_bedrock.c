/* Bedrock decoders: the input after its first byte goes to decode_response, to decode_error
 * (status from the first byte) and, as raw event-stream frames, to the stream decoder, fed
 * whole and split at a position taken from the first byte. Events are folded by
 * sb_canon_resp_event, which rejects any order the canonical stream does not allow; both
 * feeds must agree. */
#include "canon/bedrock.h"
#include "canon/codecs.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX (1 << 20)

static int check(void *ud, const struct sb_canon_event *ev)
{
    int rc = sb_canon_resp_event(ud, ev);
    if (rc == SB_CANON_E_INVALID)
        abort(); /* out of order */
    return rc;
}

static int stream(const char *d, size_t n, size_t split, struct sb_canon_resp *r, int *end_rc)
{
    void *st = sb_codec_bedrock.stream_new(64 * 1024);
    if (!st)
        abort();
    int rc = sb_codec_bedrock.stream_feed(st, d, split, check, r);
    if (!rc)
        rc = sb_codec_bedrock.stream_feed(st, d + split, n - split, check, r);
    *end_rc = 1;
    if (!rc) {
        *end_rc = sb_codec_bedrock.stream_end(st, check, r);
        if (*end_rc == 0 && !r->finished && !r->has_error)
            abort(); /* a clean end must have finished or failed */
        if (*end_rc == SB_CANON_E_CUT && (r->finished || r->has_error))
            abort();
    }
    sb_codec_bedrock.stream_free(st);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const char *d = (const char *)data + 1;
    size_t n = size - 1;

    struct sb_canon_resp r;
    sb_canon_resp_init(&r, MAX);
    int rc = sb_codec_bedrock.decode_response(d, n, check, &r);
    if (rc == 0 && !r.finished)
        abort();
    sb_canon_resp_free(&r);

    struct sb_canon_error e;
    static const int statuses[] = {400, 403, 404, 408, 413, 424, 429, 500, 503, 529};
    memset(&e, 0x55, sizeof e);
    if (sb_codec_bedrock.decode_error(statuses[data[0] % 10], d, n, &e) != 0 ||
        !memchr(e.message, '\0', sizeof e.message) || !memchr(e.type, '\0', sizeof e.type))
        abort();
    char hdr[80];
    size_t hl = n < sizeof hdr - 1 ? n : sizeof hdr - 1;
    memcpy(hdr, d, hl);
    hdr[hl] = '\0';
    sb_bedrock_error_type(&e, hdr);
    if (!memchr(e.type, '\0', sizeof e.type))
        abort();

    struct sb_canon_resp a, b;
    sb_canon_resp_init(&a, MAX);
    sb_canon_resp_init(&b, MAX);
    int ea, eb;
    int ra = stream(d, n, n, &a, &ea);
    int rb = stream(d, n, n ? data[0] % (n + 1) : 0, &b, &eb);
    if (ra != rb || (ra == 0 && ea != eb) || a.nblocks != b.nblocks || a.finished != b.finished ||
        a.has_error != b.has_error)
        abort();
    for (size_t i = 0; i < a.nblocks; i++)
        if (a.blocks[i].text.len != b.blocks[i].text.len ||
            (a.blocks[i].text.len &&
             memcmp(a.blocks[i].text.data, b.blocks[i].text.data, a.blocks[i].text.len)))
            abort();
    sb_canon_resp_free(&a);
    sb_canon_resp_free(&b);
    return 0;
}

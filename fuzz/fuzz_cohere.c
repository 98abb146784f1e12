/* Cohere v2 provider decoders: decode_response, decode_error, and the stream decoder
 * with the input split in two at a position taken from its first byte. Every event sequence
 * is folded through the response aggregator, which rejects events out of order: a decoder
 * that emits one aborts the run. The embeddings decoder gets the same bytes. */
#include "canon/codecs.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_event(void *ud, const struct sb_canon_event *ev)
{
    int rc = sb_canon_resp_event(ud, ev);
    if (rc == SB_CANON_E_INVALID)
        abort();
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const struct sb_provider_codec *c = &sb_codec_cohere;
    const char *p = (const char *)data;
    struct sb_canon_resp r;

    sb_canon_resp_init(&r, 1 << 20);
    c->decode_response(p, size, on_event, &r);
    sb_canon_resp_free(&r);

    struct sb_canon_error e;
    memset(&e, 0, sizeof e);
    c->decode_error(size ? 400 + data[0] % 200 : 500, p, size, &e);
    if (!memchr(e.message, '\0', sizeof e.message) || !memchr(e.type, '\0', sizeof e.type))
        abort();

    size_t split = size ? (size_t)data[0] * size / 256 : 0;
    void *st = c->stream_new(64 * 1024);
    if (!st)
        return 0;
    sb_canon_resp_init(&r, 1 << 20);
    int rc = c->stream_feed(st, p, split, on_event, &r);
    if (rc == 0)
        rc = c->stream_feed(st, p + split, size - split, on_event, &r);
    if (rc == 0)
        c->stream_end(st, on_event, &r);
    c->stream_free(st);
    sb_canon_resp_free(&r);

    struct sb_embed_resp er;
    memset(&er, 0, sizeof er);
    er.input_tokens = -1;
    if (sb_embed_cohere.decode(p, size, &er) == 0) {
        for (size_t i = 0; i < er.n; i++)
            if (er.dims[i] == 0 || !er.vectors[i])
                abort();
    }
    sb_embed_resp_free(&er);
    return 0;
}

/* Bedrock specifics the proxy needs beside the codec tables (codecs.h: sb_codec_bedrock,
 * sb_embed_bedrock). */
#ifndef SB_CANON_BEDROCK_H
#define SB_CANON_BEDROCK_H

#include "canon/canon.h"

/* Refines an error decoded by sb_codec_bedrock.decode_error with the x-amzn-ErrorType
 * response header, which names the exception ("ThrottlingException" or
 * "ThrottlingException:http://internal.amazon.com/coral/..."; the part before ':' is used).
 * Sets e->type to the name and e->kind from it (ThrottlingException -> RATE_LIMIT,
 * AccessDeniedException -> PERMISSION, UnrecognizedClientException -> AUTH, ...); a
 * ValidationException whose message speaks of the input being too long becomes
 * CONTEXT_WINDOW. e->status is left alone. NULL or an unknown name: only e->type changes
 * (NULL: nothing). */
void sb_bedrock_error_type(struct sb_canon_error *e, const char *amzn_error_type);

#endif

/* Spare structs: a bounded stack of finished structs of one kind, kept for reuse so that a
 * per-request allocation of a few KiB (served by glibc's bins, not its per-thread cache) is not
 * paid again on every request. Intrusive: the struct embeds a struct sb_spare. One thread.
 *
 * Under AddressSanitizer a kept struct (all but its link) and the memory it holds on to are
 * poisoned until taken again, so a use after the struct was finished is reported as a use
 * after free() would be, and the tests run the same reuse as production. */
#ifndef SB_CORE_SPARES_H
#define SB_CORE_SPARES_H

#include "core/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define SB_SPARES_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SB_SPARES_ASAN 1
#endif
#endif

#ifdef SB_SPARES_ASAN
#include <sanitizer/asan_interface.h>
#define SB_SPARES_POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define SB_SPARES_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define SB_SPARES_POISON(p, n)   ((void)(p), (void)(n))
#define SB_SPARES_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

struct sb_spare {
    struct sb_spare *next;
};

struct sb_spares {
    struct sb_spare *head;
    size_t n;
};

/* Keeps the struct at `obj` (`size` bytes, embedding `link`) unless `max` are kept already:
 * false, and the caller frees it. Use SB_SPARES_KEEP. */
static inline bool sb_spares_keep_obj(struct sb_spares *sp, void *obj, size_t size,
                                      struct sb_spare *link, size_t max)
{
    if (sp->n >= max)
        return false;
    link->next = sp->head;
    sp->head = link;
    sp->n++;
    size_t before = (size_t)((char *)link - (char *)obj);
    SB_SPARES_POISON(obj, before);
    SB_SPARES_POISON((char *)obj + before + sizeof *link, size - before - sizeof *link);
    return true;
}

/* The most recently kept struct (`size` bytes, its link at `off`), usable again, or NULL when
 * none is kept. Use SB_SPARES_TAKE. */
static inline void *sb_spares_take_obj(struct sb_spares *sp, size_t size, size_t off)
{
    struct sb_spare *l = sp->head;
    if (!l)
        return NULL;
    sp->head = l->next;
    sp->n--;
    void *obj = (char *)l - off;
    SB_SPARES_UNPOISON(obj, size);
    return obj;
}

#define SB_SPARES_KEEP(sp, obj, member, max)                                                       \
    sb_spares_keep_obj((sp), (obj), sizeof *(obj), &(obj)->member, (max))
#define SB_SPARES_TAKE(sp, type, member)                                                           \
    ((type *)sb_spares_take_obj((sp), sizeof(type), offsetof(type, member)))

/* The memory a kept struct's buffer holds on to: unusable while the struct is kept (hide,
 * after sb_buf_recycle), usable again once it is taken (show, before anything else). */
static inline void sb_spares_hide_buf(const struct sb_buf *b)
{
    if (b->data)
        SB_SPARES_POISON(b->data, b->cap);
}

static inline void sb_spares_show_buf(const struct sb_buf *b)
{
    if (b->data)
        SB_SPARES_UNPOISON(b->data, b->cap);
}

/* The buffers of a struct (up to SB_SPARES_BUFS_MAX), as it is kept: each emptied, its memory
 * let go past `keep` bytes, and hidden. */
#define SB_SPARES_BUFS_MAX 8

static inline void sb_spares_keep_bufs(struct sb_buf *const *bufs, size_t n, size_t keep)
{
    for (size_t i = 0; i < n; i++) {
        sb_buf_recycle(bufs[i], bufs[i]->max, keep);
        sb_spares_hide_buf(bufs[i]);
    }
}

/* ... as it is taken: usable again. */
static inline void sb_spares_show_bufs(struct sb_buf *const *bufs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sb_spares_show_buf(bufs[i]);
}

/* Zeroes the first `len` bytes of a taken struct but for its buffers (which lie within them),
 * so that they keep their memory. */
static inline void sb_spares_zero_but_bufs(void *obj, size_t len, struct sb_buf *const *bufs,
                                           size_t n)
{
    struct sb_buf kept[SB_SPARES_BUFS_MAX];
    if (n > SB_SPARES_BUFS_MAX)
        abort(); /* a caller's fixed list outgrew the bound: never at run time */
    for (size_t i = 0; i < n; i++)
        kept[i] = *bufs[i];
    memset(obj, 0, len);
    for (size_t i = 0; i < n; i++)
        *bufs[i] = kept[i];
}

#endif

/* Spare structs: a bounded stack of finished structs of one kind, kept for reuse so that a
 * per-request allocation of a few KiB (served by glibc's bins, not its per-thread cache) is not
 * paid again on every request. Intrusive: the struct embeds a struct sb_spare. One thread. */
#ifndef SB_CORE_SPARES_H
#define SB_CORE_SPARES_H

#include <stdbool.h>
#include <stddef.h>

struct sb_spare {
    struct sb_spare *next;
};

struct sb_spares {
    struct sb_spare *head;
    size_t n;
};

/* The struct that embeds `link` as `member`; `link` must not be NULL. */
#define SB_SPARE_OF(link, type, member) ((type *)(void *)((char *)(link)-offsetof(type, member)))

/* The most recently kept link, or NULL when none is kept. */
static inline struct sb_spare *sb_spares_take(struct sb_spares *sp)
{
    struct sb_spare *l = sp->head;
    if (l) {
        sp->head = l->next;
        sp->n--;
    }
    return l;
}

/* Keeps `link` unless `max` are kept already: false, and the caller frees the struct. */
static inline bool sb_spares_keep(struct sb_spares *sp, struct sb_spare *link, size_t max)
{
    if (sp->n >= max)
        return false;
    link->next = sp->head;
    sp->head = link;
    sp->n++;
    return true;
}

#endif

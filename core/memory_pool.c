/* Caching pool: segments from the backend, blocks carved best-fit from them.
 * Small requests share 2 MiB segments so that many small tensors cost one backing
 * allocation; large ones get segments of their own, rounded so that near-equal
 * sizes reuse each other's segments. */
#include "memory_pool.h"

#include "internal.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct kiln_segment {
    void *base;
    size_t size;
    bool small;
    struct kiln_pool_block *first; /* block at base: never absorbed, so stable */
    struct kiln_segment *prev, *next;
} kiln_segment;

struct kiln_pool_block {
    char *ptr;
    size_t size;
    bool free;
    kiln_segment *seg;
    kiln_pool_block *prev, *next;         /* address neighbours in the segment */
    kiln_pool_block *fprev, *fnext;       /* free list of its bin, by (size, address) */
};

struct kiln_pool {
    kiln_pool_backend backend;
    kiln_segment *segments;
    kiln_pool_block *bins[2]; /* 0: small, 1: large */
    kiln_pool_stats stats;
    pthread_mutex_t lock;
};

static size_t round_up(size_t n, size_t m) { return (n + m - 1) / m * m; }

kiln_pool *kiln_pool_create(kiln_pool_backend backend) {
    kiln_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->backend = backend;
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

static void bin_insert(kiln_pool *p, kiln_pool_block *b) {
    kiln_pool_block **head = &p->bins[b->seg->small ? 0 : 1];
    kiln_pool_block *prev = NULL, *cur = *head;
    while (cur && (cur->size < b->size || (cur->size == b->size && cur->ptr < b->ptr))) {
        prev = cur;
        cur = cur->fnext;
    }
    b->fprev = prev;
    b->fnext = cur;
    if (prev) prev->fnext = b; else *head = b;
    if (cur) cur->fprev = b;
}

static void bin_remove(kiln_pool *p, kiln_pool_block *b) {
    kiln_pool_block **head = &p->bins[b->seg->small ? 0 : 1];
    if (b->fprev) b->fprev->fnext = b->fnext; else *head = b->fnext;
    if (b->fnext) b->fnext->fprev = b->fprev;
    b->fprev = b->fnext = NULL;
}

static void free_segment(kiln_pool *p, kiln_segment *s) {
    if (s->prev) s->prev->next = s->next; else p->segments = s->next;
    if (s->next) s->next->prev = s->prev;
    p->backend.free(p->backend.ctx, s->base, s->size);
    p->stats.reserved -= s->size;
    p->stats.n_backing_frees++;
    free(s);
}

static void release_cache_locked(kiln_pool *p) {
    for (int bin = 0; bin < 2; bin++) {
        kiln_pool_block *b = p->bins[bin];
        while (b) {
            kiln_pool_block *next = b->fnext;
            if (!b->prev && !b->next) { /* the whole segment is free */
                bin_remove(p, b);
                free_segment(p, b->seg);
                free(b);
            }
            b = next;
        }
    }
}

static kiln_segment *new_segment(kiln_pool *p, size_t size, bool small) {
    if (p->stats.limit && (size > p->stats.limit || p->stats.reserved > p->stats.limit - size)) return NULL;
    kiln_segment *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->base = p->backend.alloc(p->backend.ctx, size);
    if (!s->base) {
        free(s);
        return NULL;
    }
    s->size = size;
    s->small = small;
    s->next = p->segments;
    if (p->segments) p->segments->prev = s;
    p->segments = s;
    p->stats.reserved += size;
    p->stats.n_backing_allocs++;
    return s;
}

static void format_size(size_t n, char *buf, size_t len) {
    if (n >= (1u << 20)) snprintf(buf, len, "%.1f MiB", (double)n / (1 << 20));
    else snprintf(buf, len, "%zu B", n);
}

static void oom_error(kiln_pool *p, size_t nbytes, const char *why) {
    kiln_pool_stats st = p->stats;
    char req[32], use[32], res[32], lim[32];
    format_size(nbytes, req, sizeof req);
    format_size(st.in_use, use, sizeof use);
    format_size(st.reserved, res, sizeof res);
    format_size(st.limit, lim, sizeof lim);
    kiln__error(KILN_STATUS_OOM,
                "out of memory on %s: could not allocate %s (%s; in use %s, reserved %s, limit %s, %llu backing "
                "allocations); free tensors (end scopes) or use smaller batches",
                p->backend.name, req, why, use, res, st.limit ? lim : "none", (unsigned long long)st.n_backing_allocs);
}

kiln_pool_block *kiln_pool_alloc(kiln_pool *p, size_t nbytes) {
    /* A request larger than the device's memory fails here, before any backend call
     * (a huge malloc can succeed lazily and fail on first touch, and sanitizers abort
     * on it) and before the round-ups below could wrap. */
    size_t cap = p->backend.capacity ? p->backend.capacity : SIZE_MAX / 4;
    if (nbytes > cap) {
        char c[32];
        format_size(cap, c, sizeof c);
        char why[80];
        snprintf(why, sizeof why, "more than the device's %s of memory", c);
        pthread_mutex_lock(&p->lock);
        oom_error(p, nbytes, why);
        pthread_mutex_unlock(&p->lock);
        return NULL;
    }
    size_t size = round_up(nbytes ? nbytes : 1, KILN_POOL_ALIGN);
    bool small = size <= KILN_POOL_SMALL_LIMIT;
    pthread_mutex_lock(&p->lock);
    kiln_pool_block *b = p->bins[small ? 0 : 1];
    while (b && b->size < size) b = b->fnext; /* bins are sorted: first fit is best fit */
    if (b) {
        bin_remove(p, b);
    } else {
        size_t seg_size = small ? KILN_POOL_SMALL_SEGMENT : round_up(size, KILN_POOL_LARGE_ROUND);
        kiln_segment *s = new_segment(p, seg_size, small);
        if (!s) {
            /* Out of memory: hand the cache back and try once more. */
            p->stats.n_oom_retries++;
            release_cache_locked(p);
            s = new_segment(p, seg_size, small);
        }
        if (!s) {
            oom_error(p, nbytes, "after freeing the cache");
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        b = calloc(1, sizeof *b);
        if (!b) {
            pthread_mutex_unlock(&p->lock);
            kiln__error(KILN_STATUS_OOM, "out of host memory for pool bookkeeping");
            return NULL;
        }
        b->ptr = s->base;
        b->size = s->size;
        b->seg = s;
        s->first = b;
    }
    /* Split when the remainder is worth keeping as a block of its own. */
    size_t rest = b->size - size;
    if ((small && rest >= KILN_POOL_ALIGN) || (!small && rest > KILN_POOL_SMALL_LIMIT)) {
        kiln_pool_block *r = calloc(1, sizeof *r);
        if (r) {
            r->ptr = b->ptr + size;
            r->size = rest;
            r->seg = b->seg;
            r->free = true;
            r->prev = b;
            r->next = b->next;
            if (b->next) b->next->prev = r;
            b->next = r;
            b->size = size;
            bin_insert(p, r);
        }
    }
    b->free = false;
    p->stats.in_use += b->size;
    if (p->stats.in_use > p->stats.peak_in_use) p->stats.peak_in_use = p->stats.in_use;
    p->stats.n_allocs++;
    pthread_mutex_unlock(&p->lock);
    return b;
}

/* Absorbs b's right address neighbour n into b. Neither may be in a bin: the
 * caller takes them out first (bin_remove on a block outside a bin would cut the
 * bin's list at its head). */
static void absorb_right(kiln_pool_block *b, kiln_pool_block *n) {
    b->size += n->size;
    b->next = n->next;
    if (n->next) n->next->prev = b;
    free(n);
}

void kiln_pool_free(kiln_pool *p, kiln_pool_block *b) {
    if (!b) return;
    pthread_mutex_lock(&p->lock);
    p->stats.in_use -= b->size;
    b->free = true;
    if (b->next && b->next->free) {
        bin_remove(p, b->next);
        absorb_right(b, b->next);
    }
    if (b->prev && b->prev->free) {
        kiln_pool_block *prev = b->prev;
        bin_remove(p, prev);
        absorb_right(prev, b);
        b = prev;
    }
    bin_insert(p, b);
    pthread_mutex_unlock(&p->lock);
}

void *kiln_pool_block_ptr(const kiln_pool_block *b) { return b->ptr; }
size_t kiln_pool_block_size(const kiln_pool_block *b) { return b->size; }

kiln_pool_stats kiln_pool_get_stats(const kiln_pool *p) {
    kiln_pool_stats s = p->stats;
    s.cached = s.reserved - s.in_use;
    return s;
}

void kiln_pool_release_cache(kiln_pool *p) {
    pthread_mutex_lock(&p->lock);
    release_cache_locked(p);
    pthread_mutex_unlock(&p->lock);
}

void kiln_pool_set_limit(kiln_pool *p, size_t bytes) { p->stats.limit = bytes; }
void kiln_pool_reset_peak(kiln_pool *p) { p->stats.peak_in_use = p->stats.in_use; }

size_t kiln_pool_destroy(kiln_pool *p) {
    if (!p) return 0;
    size_t leaked = p->stats.in_use;
    while (p->segments) {
        kiln_segment *s = p->segments;
        /* every block record, free or in use, hangs off the segment's address chain */
        for (kiln_pool_block *b = s->first, *n; b; b = n) {
            n = b->next;
            free(b);
        }
        free_segment(p, s);
    }
    pthread_mutex_destroy(&p->lock);
    free(p);
    return leaked;
}

/* The caching memory pool. Its logic knows nothing of devices: a backend supplies
 * segment alloc/free (malloc on the CPU, cudaMalloc on CUDA). Blocks are carved
 * from segments best-fit, split when the rest is worth keeping, and merged with
 * free neighbours when freed, so a repeating allocation pattern settles into
 * reusing cached blocks and stops calling the backend. */
#ifndef KILN_POOL_H
#define KILN_POOL_H

#include "kiln/core.h"

typedef struct kiln_pool kiln_pool;
typedef struct kiln_pool_block kiln_pool_block;

typedef struct {
    /* Returns NULL when out of memory. */
    void *(*alloc)(void *ctx, size_t nbytes);
    void (*free)(void *ctx, void *ptr, size_t nbytes);
    void *ctx;
    const char *name; /* "cpu", "cuda:0": used in messages */
    /* The device's memory in bytes (0: unknown): a larger request fails as OOM at once. */
    size_t capacity;
} kiln_pool_backend;

/* Block granularity and the size classes. */
#define KILN_POOL_ALIGN 512u
#define KILN_POOL_SMALL_LIMIT (1u << 20)       /* requests up to 1 MiB ... */
#define KILN_POOL_SMALL_SEGMENT (2u << 20)     /* ... share 2 MiB segments */
#define KILN_POOL_LARGE_ROUND (2u << 20)       /* larger segments round up to 2 MiB */

kiln_pool *kiln_pool_create(kiln_pool_backend backend);
/* Frees every segment; blocks still in use are reported through the return value
 * (bytes still in use) and freed anyway. */
size_t kiln_pool_destroy(kiln_pool *p);
/* NULL and a KILN_STATUS_OOM error with the pool's stats when memory runs out
 * after the cache has been released and the request retried. */
kiln_pool_block *kiln_pool_alloc(kiln_pool *p, size_t nbytes);
void kiln_pool_free(kiln_pool *p, kiln_pool_block *b);
void *kiln_pool_block_ptr(const kiln_pool_block *b);
size_t kiln_pool_block_size(const kiln_pool_block *b);
kiln_pool_stats kiln_pool_get_stats(const kiln_pool *p);
void kiln_pool_release_cache(kiln_pool *p);
void kiln_pool_set_limit(kiln_pool *p, size_t bytes);
void kiln_pool_reset_peak(kiln_pool *p);

#endif

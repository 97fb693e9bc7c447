/* The caching pool, white-box through core/memory_pool.h with a counting backend (so every
 * segment the pool takes or gives back is visible), then the same guarantees through
 * the public API on the CPU pool with real tensors inside scopes. */
#include "support/kiln_test.h"
#include "core/memory_pool.h"

#include <stdlib.h>
#include <string.h>

TestSuite(pool, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define KIB ((size_t)1 << 10)
#define MIB ((size_t)1 << 20)

/* Counts the backend's calls and can refuse requests, as a full device would. */
typedef struct {
    uint64_t allocs, frees;
    size_t live_bytes;
    size_t capacity; /* 0 = unlimited; else refuse when live_bytes would exceed it */
} counting_backend;

static void *count_alloc(void *ctx, size_t n) {
    counting_backend *c = ctx;
    if (c->capacity && c->live_bytes + n > c->capacity) return NULL;
    void *p = aligned_alloc(KILN_POOL_ALIGN, n);
    if (!p) return NULL;
    c->allocs++;
    c->live_bytes += n;
    return p;
}

static void count_free(void *ctx, void *p, size_t n) {
    counting_backend *c = ctx;
    c->frees++;
    c->live_bytes -= n;
    free(p);
}

static kiln_pool *make_pool(counting_backend *c) {
    memset(c, 0, sizeof *c);
    kiln_pool *p = kiln_pool_create((kiln_pool_backend){count_alloc, count_free, c, "test"});
    cr_assert(p != NULL);
    return p;
}

/* Destroys p and checks that it gave every segment back. */
static void destroy_pool(kiln_pool *p, counting_backend *c) {
    kiln_pool_destroy(p);
    cr_expect_eq(c->live_bytes, 0, "pool destroyed with %zu backing bytes not given back", c->live_bytes);
    cr_expect_eq(c->allocs, c->frees);
}

static kiln_pool_block *alloc_ok(kiln_pool *p, size_t n) {
    kiln_pool_block *b = kiln_pool_alloc(p, n);
    cr_assert(b != NULL, "alloc of %zu bytes failed: %s", n, kiln_last_error());
    return b;
}

static char *ptr(kiln_pool_block *b) { return kiln_pool_block_ptr(b); }

KT_TEST(pool, sizes_round_up_to_the_block_granularity) {
    counting_backend c;
    kiln_pool *p = make_pool(&c);
    const size_t req[] = {0, 1, 511, 512, 513, 1000, 4096, 4097};
    const size_t want[] = {512, 512, 512, 512, 1024, 1024, 4096, 4608};
    size_t total = 0;
    kiln_pool_block *b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = alloc_ok(p, req[i]);
        cr_expect_eq(kiln_pool_block_size(b[i]), want[i], "request %zu: block of %zu, expected %zu", req[i],
                     kiln_pool_block_size(b[i]), want[i]);
        cr_expect_eq((uintptr_t)ptr(b[i]) % KILN_POOL_ALIGN, 0, "request %zu: block not 512-aligned", req[i]);
        total += want[i];
    }
    kiln_pool_stats st = kiln_pool_get_stats(p);
    cr_expect_eq(st.in_use, total);
    cr_expect_eq(st.n_allocs, 8);
    /* all of them are small: one shared 2 MiB segment */
    cr_expect_eq(st.n_backing_allocs, 1);
    cr_expect_eq(st.reserved, KILN_POOL_SMALL_SEGMENT);
    for (int i = 0; i < 8; i++) kiln_pool_free(p, b[i]);
    cr_expect_eq(kiln_pool_get_stats(p).in_use, 0);
    destroy_pool(p, &c);
}

KT_TEST(pool, small_and_large_size_classes) {
    counting_backend c;
    kiln_pool *p = make_pool(&c);
    /* 1 MiB is the largest small request: it shares a 2 MiB segment */
    kiln_pool_block *s1 = alloc_ok(p, MIB);
    kiln_pool_block *s2 = alloc_ok(p, 4 * KIB);
    cr_expect_eq(c.allocs, 1);
    cr_expect_eq(ptr(s2), ptr(s1) + MIB, "small blocks are carved one after another from the segment");
    /* one byte more is large: a segment of its own, rounded to 2 MiB; the 1 MiB - 512
     * remainder is not worth a block of its own, so the block keeps it */
    kiln_pool_block *l1 = alloc_ok(p, MIB + 1);
    cr_expect_eq(c.allocs, 2);
    cr_expect_eq(kiln_pool_block_size(l1), 2 * MIB);
    /* 5 MiB + 1: a 6 MiB segment whose remainder (just under 1 MiB) stays in the block */
    kiln_pool_block *l2 = alloc_ok(p, 5 * MIB + 1);
    cr_expect_eq(c.allocs, 3);
    cr_expect_eq(kiln_pool_block_size(l2), 6 * MIB);
    kiln_pool_stats st = kiln_pool_get_stats(p);
    cr_expect_eq(st.reserved, 2 * MIB + 2 * MIB + 6 * MIB);
    cr_expect_eq(st.in_use, MIB + 4 * KIB + 2 * MIB + 6 * MIB);
    /* a small request never takes a free large block, and vice versa */
    kiln_pool_free(p, l1);
    kiln_pool_block *s3 = alloc_ok(p, 512 * KIB);
    cr_expect(ptr(s3) == ptr(s2) + 4 * KIB, "small request must come from the small segment");
    kiln_pool_block *l3 = alloc_ok(p, MIB + 1);
    cr_expect_eq(ptr(l3), ptr(l1), "a repeated large request reuses the cached large block");
    cr_expect_eq(c.allocs, 3);
    kiln_pool_free(p, s1);
    kiln_pool_free(p, s2);
    kiln_pool_free(p, s3);
    kiln_pool_free(p, l2);
    kiln_pool_free(p, l3);
    destroy_pool(p, &c);
}

KT_TEST(pool, large_block_splits_when_the_rest_is_worth_keeping) {
    counting_backend c;
    kiln_pool *p = make_pool(&c);
    /* 8 MiB segment; take 3 MiB of it: the 5 MiB rest becomes a free block */
    kiln_pool_block *big = alloc_ok(p, 8 * MIB);
    kiln_pool_free(p, big);
    kiln_pool_block *a = alloc_ok(p, 3 * MIB);
    cr_expect_eq(ptr(a), ptr(big));
    cr_expect_eq(kiln_pool_block_size(a), 3 * MIB);
    kiln_pool_block *b = alloc_ok(p, 5 * MIB);
    cr_expect_eq(ptr(b), ptr(a) + 3 * MIB, "the split remainder serves the next request");
    cr_expect_eq(c.allocs, 1);
    kiln_pool_free(p, a);
    kiln_pool_free(p, b);
    destroy_pool(p, &c);
}

KT_TEST(pool, best_fit_picks_the_smallest_free_block_that_fits) {
    counting_backend c;
    kiln_pool *p = make_pool(&c);
    /* free holes of 4K, 2K and 8K separated by live 512-byte blocks, then the tail */
    kiln_pool_block *h4 = alloc_ok(p, 4 * KIB), *g1 = alloc_ok(p, 512);
    kiln_pool_block *h2 = alloc_ok(p, 2 * KIB), *g2 = alloc_ok(p, 512);
    kiln_pool_block *h8 = alloc_ok(p, 8 * KIB), *g3 = alloc_ok(p, 512);
    char *p4 = ptr(h4), *p2 = ptr(h2), *p8 = ptr(h8);
    kiln_pool_free(p, h4);
    kiln_pool_free(p, h2);
    kiln_pool_free(p, h8);
    kiln_pool_block *x = alloc_ok(p, 2 * KIB);
    cr_expect_eq(ptr(x), p2, "2K request: exact 2K hole");
    kiln_pool_block *y = alloc_ok(p, 3 * KIB);
    cr_expect_eq(ptr(y), p4, "3K request: the 4K hole is the best fit");
    /* the 1K left of the 4K hole was split off and is now the best fit for 1K */
    kiln_pool_block *z = alloc_ok(p, KIB);
    cr_expect_eq(ptr(z), p4 + 3 * KIB);
    kiln_pool_block *w = alloc_ok(p, 6 * KIB);
    cr_expect_eq(ptr(w), p8, "6K request: the 8K hole");
    cr_expect_eq(c.allocs, 1);
    kiln_pool_block *all[] = {g1, g2, g3, x, y, z, w};
    for (int i = 0; i < 7; i++) kiln_pool_free(p, all[i]);
    destroy_pool(p, &c);
}

KT_TEST(pool, freed_neighbours_merge_and_the_free_list_survives) {
    counting_backend c;
    kiln_pool *p = make_pool(&c);
    kiln_pool_block *a = alloc_ok(p, KIB), *b = alloc_ok(p, KIB), *cc = alloc_ok(p, KIB), *d = alloc_ok(p, KIB);
    char *base = ptr(a);
    kiln_pool_free(p, a); /* free list: a, tail */
    kiln_pool_free(p, b); /* b merges into a on its left; the tail must stay listed */
    kiln_pool_block *e = alloc_ok(p, 4 * KIB);
    cr_expect_eq(c.allocs, 1, "the segment's free tail was lost from the free list after a left merge");
    cr_expect_eq(ptr(e), base + 4 * KIB, "4K request: the tail (the merged 2K hole is too small)");
    /* a+b merged into one 2K hole: a 2K request takes it whole, at a's address */
    kiln_pool_block *f = alloc_ok(p, 2 * KIB);
    cr_expect_eq(ptr(f), base);
    kiln_pool_free(p, f);
    kiln_pool_free(p, d);  /* merges with e? no: e is live; d stays a 1K hole */
    kiln_pool_free(p, cc); /* merges left (2K hole) and right (d): one 4K hole */
    kiln_pool_block *g = alloc_ok(p, 4 * KIB);
    cr_expect_eq(ptr(g), base, "left and right neighbours merge into one block");
    kiln_pool_free(p, g);
    kiln_pool_free(p, e); /* now the whole segment is one free block again */
    kiln_pool_stats st = kiln_pool_get_stats(p);
    cr_expect_eq(st.in_use, 0);
    cr_expect_eq(st.cached, KILN_POOL_SMALL_SEGMENT);
    kiln_pool_release_cache(p);
    st = kiln_pool_get_stats(p);
    cr_expect_eq(st.reserved, 0, "a wholly free segment goes back on release_cache");
    cr_expect_eq(st.n_backing_frees, 1);
    cr_expect_eq(c.frees, 1);
    destroy_pool(p, &c);
}

KT_TEST(pool, stats_track_use_peak_cache_and_backing_calls) {
    counting_backend c;
    kiln_pool *p = make_pool(&c);
    kiln_pool_stats st = kiln_pool_get_stats(p);
    cr_expect(st.in_use == 0 && st.reserved == 0 && st.cached == 0 && st.n_allocs == 0 && st.peak_in_use == 0);
    kiln_pool_block *a = alloc_ok(p, 10 * KIB);
    kiln_pool_block *b = alloc_ok(p, 3 * MIB);
    st = kiln_pool_get_stats(p);
    cr_expect_eq(st.in_use, 10 * KIB + 4 * MIB); /* 3 MiB: 4 MiB segment, 1 MiB rest kept in the block */
    cr_expect_eq(st.peak_in_use, st.in_use);
    cr_expect_eq(st.reserved, 2 * MIB + 4 * MIB);
    cr_expect_eq(st.cached, st.reserved - st.in_use);
    cr_expect_eq(st.n_allocs, 2);
    cr_expect_eq(st.n_backing_allocs, 2);
    cr_expect_eq(st.n_backing_allocs, c.allocs);
    size_t peak = st.in_use;
    kiln_pool_free(p, b);
    st = kiln_pool_get_stats(p);
    cr_expect_eq(st.in_use, 10 * KIB);
    cr_expect_eq(st.peak_in_use, peak, "peak is kept after frees");
    cr_expect_eq(st.cached, 6 * MIB - 10 * KIB);
    kiln_pool_reset_peak(p);
    cr_expect_eq(kiln_pool_get_stats(p).peak_in_use, 10 * KIB);
    /* release_cache gives back the free large segment, keeps the small one (a is live) */
    kiln_pool_release_cache(p);
    st = kiln_pool_get_stats(p);
    cr_expect_eq(st.reserved, 2 * MIB);
    cr_expect_eq(st.n_backing_frees, 1);
    cr_expect_eq(c.frees, 1);
    cr_expect_eq(c.live_bytes, st.reserved);
    kiln_pool_free(p, a);
    kiln_pool_release_cache(p);
    st = kiln_pool_get_stats(p);
    cr_expect(st.reserved == 0 && st.cached == 0 && st.in_use == 0);
    cr_expect_eq(st.n_backing_frees, 2);
    destroy_pool(p, &c);
}

KT_TEST(pool, limit_frees_the_cache_and_retries_before_failing) {
    counting_backend c;
    kiln_pool *p = make_pool(&c);
    kiln_pool_set_limit(p, 4 * MIB);
    cr_expect_eq(kiln_pool_get_stats(p).limit, 4 * MIB);
    kiln_pool_free(p, alloc_ok(p, KIB)); /* 2 MiB small segment, now cached */
    /* 3 MiB needs a 4 MiB segment: 2 + 4 > 4, so the cache goes and the request is retried */
    kiln_pool_block *a = alloc_ok(p, 3 * MIB);
    kiln_pool_stats st = kiln_pool_get_stats(p);
    cr_expect_eq(st.n_oom_retries, 1);
    cr_expect_eq(st.n_backing_frees, 1);
    cr_expect_eq(st.reserved, 4 * MIB);
    /* nothing left to free: the next request fails with the stats in the message */
    kiln_pool_block *b = kiln_pool_alloc(p, 3 * MIB);
    cr_expect_null(b);
    cr_expect_eq(kiln_pool_get_stats(p).n_oom_retries, 2);
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OOM);
    const char *msg = kiln_last_error();
    cr_expect(strstr(msg, "out of memory on test") != NULL, "message: %s", msg);
    cr_expect(strstr(msg, "3.0 MiB") != NULL, "message lacks the request: %s", msg);
    cr_expect(strstr(msg, "in use 4.0 MiB") != NULL, "message lacks in-use bytes: %s", msg);
    cr_expect(strstr(msg, "reserved 4.0 MiB") != NULL, "message lacks reserved bytes: %s", msg);
    cr_expect(strstr(msg, "limit 4.0 MiB") != NULL, "message lacks the limit: %s", msg);
    cr_expect(strstr(msg, "backing allocations") != NULL, "message: %s", msg);
    kiln_clear_error();
    /* removing the limit lets it through */
    kiln_pool_set_limit(p, 0);
    b = alloc_ok(p, 3 * MIB);
    kiln_pool_free(p, a);
    kiln_pool_free(p, b);
    destroy_pool(p, &c);
}

KT_TEST(pool, backend_out_of_memory_takes_the_same_path) {
    counting_backend c;
    kiln_pool *p = make_pool(&c);
    c.capacity = 6 * MIB; /* the "device" holds 6 MiB */
    kiln_pool_block *a = alloc_ok(p, 2 * MIB + 1); /* 4 MiB segment */
    kiln_pool_free(p, a);
    kiln_pool_block *b = alloc_ok(p, 4 * MIB + 1); /* 6 MiB: fits only after the cached 4 MiB goes */
    cr_expect_eq(kiln_pool_get_stats(p).n_oom_retries, 1);
    cr_expect_eq(c.frees, 1);
    cr_expect_null(kiln_pool_alloc(p, KIB));
    kt_expect_error(KILN_STATUS_OOM, "limit none");
    kiln_pool_free(p, b);
    destroy_pool(p, &c);
}

KT_TEST(pool, destroy_reports_and_frees_live_blocks) {
    counting_backend c;
    kiln_pool *p = make_pool(&c);
    alloc_ok(p, KIB);
    alloc_ok(p, 3 * MIB);
    kiln_pool_free(p, alloc_ok(p, 512));
    cr_expect_eq(kiln_pool_destroy(p), KIB + 4 * MIB, "destroy returns the bytes still in use");
    cr_expect_eq(c.live_bytes, 0);
    cr_expect_eq(c.frees, c.allocs);
}

/* One training step's allocations: activations forward, then gradients while the
 * activations are released in reverse, then gradients in an interleaved order. */
static void training_step(kiln_pool *p) {
    static const size_t sizes[] = {300, 4096, 70000, MIB, 3 * MIB, 1500, 5 * MIB + 123, 40000, 2 * MIB + 7, 800 * KIB};
    enum { N = sizeof sizes / sizeof sizes[0] };
    kiln_pool_block *act[N], *grad[N];
    for (int i = 0; i < N; i++) act[i] = alloc_ok(p, sizes[i]);
    for (int i = N - 1; i >= 0; i--) {
        grad[i] = alloc_ok(p, sizes[i]);
        kiln_pool_free(p, act[i]);
    }
    for (int i = 0; i < N; i += 2) kiln_pool_free(p, grad[i]);
    for (int i = N - 1; i >= 0; i -= 2) kiln_pool_free(p, grad[i]);
}

KT_TEST(pool, steady_state_training_makes_no_backing_allocations) {
    counting_backend c;
    kiln_pool *p = make_pool(&c);
    training_step(p);
    kiln_pool_stats first = kiln_pool_get_stats(p);
    cr_expect_gt(first.n_backing_allocs, 0);
    for (int it = 1; it < 5; it++) {
        training_step(p);
        kiln_pool_stats st = kiln_pool_get_stats(p);
        cr_expect_eq(st.n_backing_allocs, first.n_backing_allocs, "iteration %d made %llu new backing allocations",
                     it, (unsigned long long)(st.n_backing_allocs - first.n_backing_allocs));
        cr_expect_eq(st.reserved, first.reserved);
        cr_expect_eq(st.in_use, 0);
        cr_expect_eq(st.peak_in_use, first.peak_in_use);
    }
    cr_expect_eq(c.frees, 0);
    destroy_pool(p, &c);
}

/* ---- the same through the public API, on the CPU pool ---------------------------------- */

KT_TEST(pool, cpu_pool_stats_follow_tensors_and_scopes) {
    kiln_pool_stats s0 = kiln_memory_stats(KILN_CPU);
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *a = kiln_tensor_zeros(2, (int64_t[]){10, 10}, KILN_F32, KILN_CPU); /* 400 B -> 512 */
    kiln_tensor *b = kiln_tensor_zeros(1, (int64_t[]){1000}, KILN_F64, KILN_CPU);   /* 8000 B -> 8192 */
    cr_assert(a && b);
    kiln_pool_stats s1 = kiln_memory_stats(KILN_CPU);
    cr_expect_eq(s1.in_use - s0.in_use, 512 + 8192);
    cr_expect_eq(s1.n_allocs - s0.n_allocs, 2);
    cr_expect_eq(s1.cached, s1.reserved - s1.in_use);
    kiln_scope_end(s);
    kiln_pool_stats s2 = kiln_memory_stats(KILN_CPU);
    cr_expect_eq(s2.in_use, s0.in_use, "ending the scope gives every block back");
    cr_expect_eq(s2.reserved, s1.reserved, "blocks are cached, not returned to malloc");
    cr_expect_geq(s2.peak_in_use, s1.in_use);
    kiln_memory_reset_peak(KILN_CPU);
    cr_expect_eq(kiln_memory_stats(KILN_CPU).peak_in_use, s2.in_use);
    kiln_memory_release_cache(KILN_CPU);
    cr_expect_eq(kiln_memory_stats(KILN_CPU).reserved, 0, "nothing is live: every segment goes back");
}

KT_TEST(pool, cpu_pool_limit_gives_oom_with_stats) {
    kiln_memory_set_limit(KILN_CPU, 4 * MIB);
    kiln_tensor *ok = kiln_tensor_empty(1, (int64_t[]){512 * 1024}, KILN_F32, KILN_CPU); /* 2 MiB */
    cr_assert(ok != NULL, "%s", kiln_last_error());
    kiln_tensor *big = kiln_tensor_empty(1, (int64_t[]){1024 * 1024}, KILN_F32, KILN_CPU); /* 4 MiB */
    cr_expect_null(big);
    kt_expect_error(KILN_STATUS_OOM, "out of memory on cpu");
    kiln_memory_set_limit(KILN_CPU, 0);
}

KT_TEST(pool, cpu_training_steps_reach_a_steady_state) {
    kiln_tensor *w = kiln_tensor_randn(2, (int64_t[]){64, 32}, 0, 0.1, KILN_F32, KILN_CPU);
    kiln_tensor *bias = kiln_tensor_zeros(1, (int64_t[]){32}, KILN_F32, KILN_CPU);
    kiln_tensor_set_requires_grad(w, true);
    kiln_tensor_set_requires_grad(bias, true);
    kiln_pool_stats after_first = {0};
    size_t live_between = 0;
    for (int step = 0; step < 4; step++) {
        kiln_scope *s = kiln_scope_begin();
        kiln_tensor *x = kiln_tensor_rand(2, (int64_t[]){64, 32}, -1, 1, KILN_F32, KILN_CPU);
        kiln_tensor *h = kiln_tanh(kiln_add(kiln_mul(x, w), bias));
        kiln_tensor *big = kiln_expand(kiln_unsqueeze(h, 0), 3, (int64_t[]){300, 64, 32});
        kiln_tensor *loss = kiln_mean_all(kiln_sigmoid(big));
        cr_assert_eq(kiln_backward(loss, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        kiln_scope_end(s);
        kiln_pool_stats st = kiln_memory_stats(KILN_CPU);
        if (step == 0) {
            after_first = st;
            live_between = st.in_use; /* parameters and their gradients */
        } else {
            cr_expect_eq(st.n_backing_allocs, after_first.n_backing_allocs, "step %d allocated from malloc", step);
            cr_expect_eq(st.in_use, live_between, "step %d left %zd bytes live", step,
                         (ssize_t)(st.in_use - live_between));
        }
    }
    cr_expect_eq(live_between, 2 * (8192 + 512), "w, bias and their gradients: 64*32*4 B -> 8192, 32*4 B -> 512");
}

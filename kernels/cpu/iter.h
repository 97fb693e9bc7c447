/* A strided N-d iterator for CPU kernels over up to 4 operands that share one
 * shape (inputs already broadcast to the output shape with zero strides). Axes
 * that are contiguous for every operand are merged, so a contiguous op becomes
 * one flat loop; the innermost axis is the hot loop, rows are split over threads. */
#ifndef KILN_CPU_ITER_H
#define KILN_CPU_ITER_H

#include "../../core/internal.h"

#include <string.h>

#define KILN_ITER_MAX_OPS 4

/* Element count above which an element-wise loop runs on the OpenMP threads: where the
 * cheapest loop (an f32 add) pays for waking the sleeping threads (OMP_WAIT_POLICY=passive,
 * kiln's default, core/threads.c). Measured 2026-12-06 on the 2-core Xeon of
 * docs/benchmarks.md (load ~3 from other work, medians of 201 regions): a 2-thread region
 * costs about 9-10 us more than the loop itself (4096 elements: 9.7 us against 0.6 us on
 * one thread), and the add runs at about 0.14 ns an element, so two threads break even
 * near 128k elements (131072: 18.5 us on one thread, 30.6 us on two under that load; at
 * 1M: 170 us against 191 us: memory-bound, a busy second core buys little). Below this
 * the loop stays on the calling thread; the other loops use the same grain. */
#define KILN_CPU_PAR_MIN 131072

typedef struct {
    int nops;
    int ndim; /* >= 1 after setup */
    int64_t shape[KILN_MAX_DIMS];
    int64_t strides[KILN_ITER_MAX_OPS][KILN_MAX_DIMS]; /* bytes */
    char *base[KILN_ITER_MAX_OPS];
} kiln_iter;

/* Strides of t as seen from a tensor of shape (ndim, shape): leading missing axes
 * and size-1 axes broadcast with stride 0. t must be broadcastable to shape. */
void kiln_iter_broadcast_strides(const kiln_tensor *t, int ndim, const int64_t *shape, int64_t *strides);

/* ops[0] is the output; its shape is the iteration shape. */
void kiln_iter_init(kiln_iter *it, int nops, kiln_tensor *const *ops);

/* Number of rows (product of all but the innermost axis) and the inner length. */
static inline int64_t kiln_iter_rows(const kiln_iter *it) {
    int64_t r = 1;
    for (int i = 0; i < it->ndim - 1; i++) r *= it->shape[i];
    return r;
}

/* Pointers of every operand at the start of row r. */
static inline void kiln_iter_row(const kiln_iter *it, int64_t r, char **ptrs) {
    for (int k = 0; k < it->nops; k++) ptrs[k] = it->base[k];
    for (int d = it->ndim - 2; d >= 0 && r; d--) {
        int64_t i = r % it->shape[d];
        r /= it->shape[d];
        for (int k = 0; k < it->nops; k++) ptrs[k] += i * it->strides[k][d];
    }
}

/* Loops over every element: BODY sees char *p[nops] (pointers to the current
 * elements). Rows run in parallel when the work is large enough; a single long row
 * (a contiguous operand merged into one axis) is cut into blocks so it runs in
 * parallel too. */
#define KILN_ITER_BLOCK 16384
#define KILN_ITER_FOR_EACH(it, BODY)                                                      \
    do {                                                                                  \
        const kiln_iter *it_ = (it);                                                      \
        int64_t rows_ = kiln_iter_rows(it_), inner_ = it_->shape[it_->ndim - 1];          \
        int64_t blk_ = rows_ == 1 && inner_ > 4 * KILN_ITER_BLOCK ? KILN_ITER_BLOCK : inner_; \
        int64_t nblk_ = blk_ > 0 ? (inner_ + blk_ - 1) / blk_ : 1;                         \
        int64_t is_[KILN_ITER_MAX_OPS];                                                   \
        for (int k_ = 0; k_ < it_->nops; k_++) is_[k_] = it_->strides[k_][it_->ndim - 1]; \
        _Pragma("omp parallel for schedule(static) if (rows_ * inner_ > KILN_CPU_PAR_MIN && rows_ * nblk_ > 1)") \
        for (int64_t t_ = 0; t_ < rows_ * nblk_; t_++) {                                  \
            char *p[KILN_ITER_MAX_OPS];                                                   \
            int64_t b_ = t_ % nblk_, i0_ = b_ * blk_;                                     \
            int64_t i1_ = i0_ + blk_ < inner_ ? i0_ + blk_ : inner_;                      \
            kiln_iter_row(it_, t_ / nblk_, p);                                            \
            for (int k_ = 0; k_ < it_->nops; k_++) p[k_] += i0_ * is_[k_];                \
            for (int64_t i_ = i0_; i_ < i1_; i_++) {                                      \
                BODY;                                                                     \
                for (int k_ = 0; k_ < it_->nops; k_++) p[k_] += is_[k_];                  \
            }                                                                             \
        }                                                                                 \
    } while (0)

/* A same-dtype copy (operand 1 into operand 0) whose innermost axis is contiguous on both
 * sides: one memcpy per row instead of an element loop with pointer steps. Returns false
 * (and copies nothing) when the rows are not contiguous. */
static inline bool kiln_iter_copy_rows(const kiln_iter *it, size_t es) {
    const int last = it->ndim - 1;
    if (it->nops != 2 || it->strides[0][last] != (int64_t)es || it->strides[1][last] != (int64_t)es) return false;
    const int64_t rows = kiln_iter_rows(it), inner = it->shape[last];
#pragma omp parallel for schedule(static) if (rows > 1 && rows * inner > KILN_CPU_PAR_MIN)
    for (int64_t r = 0; r < rows; r++) {
        char *p[KILN_ITER_MAX_OPS];
        kiln_iter_row(it, r, p);
        memcpy(p[0], p[1], (size_t)inner * es);
    }
    return true;
}


/* True when every operand is dense and has the output's shape (no broadcast, no view):
 * the kernel can then run one flat loop over typed pointers. */
static inline bool kiln_iter_flat(int nops, kiln_tensor *const *ops) {
    for (int k = 0; k < nops; k++) {
        if (!kiln_tensor_is_contiguous(ops[k]) || ops[k]->ndim != ops[0]->ndim) return false;
        for (int d = 0; d < ops[0]->ndim; d++)
            if (ops[k]->shape[d] != ops[0]->shape[d]) return false;
    }
    return true;
}

/* A flat loop over i in [0, n) split over threads when long enough; BODY indexes
 * typed pointers with i, so the compiler can vectorise it. */
#define KILN_FLAT_FOR(n, BODY)                                                            \
    do {                                                                                  \
        const int64_t n_ = (n);                                                           \
        _Pragma("omp parallel for schedule(static) if (n_ > KILN_CPU_PAR_MIN)")           \
        for (int64_t i = 0; i < n_; i++) { BODY; }                                        \
    } while (0)

#endif

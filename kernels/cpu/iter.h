/* A strided N-d iterator for CPU kernels over up to 4 operands that share one
 * shape (inputs already broadcast to the output shape with zero strides). Axes
 * that are contiguous for every operand are merged, so a contiguous op becomes
 * one flat loop; the innermost axis is the hot loop, rows are split over threads. */
#ifndef KILN_CPU_ITER_H
#define KILN_CPU_ITER_H

#include "../../core/internal.h"

#define KILN_ITER_MAX_OPS 4

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
 * elements). Rows run in parallel when the work is large enough. */
#define KILN_ITER_FOR_EACH(it, BODY)                                                      \
    do {                                                                                  \
        const kiln_iter *it_ = (it);                                                      \
        int64_t rows_ = kiln_iter_rows(it_), inner_ = it_->shape[it_->ndim - 1];          \
        int64_t is_[KILN_ITER_MAX_OPS];                                                   \
        for (int k_ = 0; k_ < it_->nops; k_++) is_[k_] = it_->strides[k_][it_->ndim - 1]; \
        _Pragma("omp parallel for schedule(static) if (rows_ * inner_ > 32768 && rows_ > 1)") \
        for (int64_t r_ = 0; r_ < rows_; r_++) {                                          \
            char *p[KILN_ITER_MAX_OPS];                                                   \
            kiln_iter_row(it_, r_, p);                                                    \
            for (int64_t i_ = 0; i_ < inner_; i_++) {                                     \
                BODY;                                                                     \
                for (int k_ = 0; k_ < it_->nops; k_++) p[k_] += is_[k_];                  \
            }                                                                             \
        }                                                                                 \
    } while (0)

#endif

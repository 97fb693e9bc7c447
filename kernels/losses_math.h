/* Per-element math and attribute structs of the loss ops, shared by the CPU
 * kernels (kernels/cpu/losses_*.c) and, later, their CUDA twins: plain C, no
 * kiln internals, so a .cu file can include it as it is. */
#ifndef KILN_LOSSES_MATH_H
#define KILN_LOSSES_MATH_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define KILN_LOSS_INLINE static __host__ __device__ inline
#else
#define KILN_LOSS_INLINE static inline
#endif

/* Which input a backward op differentiates for; the result has that input's
 * (broadcast) shape and the front-end sums it back over broadcast axes. */
enum { KILN_LOSS_WRT_INPUT = 0, KILN_LOSS_WRT_TARGET, KILN_LOSS_WRT_WEIGHT, KILN_LOSS_WRT_POS_WEIGHT };

/* bce / bce_with_logits (and their backward ops). reduction: kiln_reduction. */
typedef struct {
    int reduction;
    int wrt;
} kiln_bce_attrs;

/* cross_entropy / nll_loss (and their backward ops). */
typedef struct {
    int reduction;
    int wrt;         /* backward only: KILN_LOSS_WRT_INPUT or _TARGET (probability targets) */
    int prob_target; /* target holds probabilities of the input's shape, not class indices */
    int64_t ignore_index;
    double label_smoothing;
} kiln_ce_attrs;

/* one_hot: class indices (N,d..) -> (N,C,d..) of zeros and ones. */
typedef struct {
    int64_t num_classes;
} kiln_one_hot_attrs;

/* The macro below instantiates the math for float and double. PyTorch's BCE
 * clamps each log at -100 so that p = 0 or 1 gives a finite loss. */
#define KILN_DEFINE_LOSS_MATH(T, SFX, LOG, LOG1P, EXP, FABS, FMAX)                               \
    KILN_LOSS_INLINE T kiln_bce_##SFX(T p, T y) {                                               \
        T lp = FMAX(LOG(p), (T)-100), l1p = FMAX(LOG1P(-p), (T)-100);                           \
        return (y - 1) * l1p - y * lp;                                                          \
    }                                                                                           \
    /* PyTorch's form: the product is floored at 1e-12 so p = 0 or 1 stays finite */            \
    KILN_LOSS_INLINE T kiln_bce_grad_input_##SFX(T p, T y) {                                    \
        return (p - y) / FMAX((1 - p) * p, (T)1e-12);                                           \
    }                                                                                           \
    KILN_LOSS_INLINE T kiln_bce_grad_target_##SFX(T p) {                                        \
        return FMAX(LOG1P(-p), (T)-100) - FMAX(LOG(p), (T)-100);                                \
    }                                                                                           \
    /* softplus(-x) = log(1 + e^-x) without overflow for either sign */                         \
    KILN_LOSS_INLINE T kiln_softplus_neg_##SFX(T x) { return LOG1P(EXP(-FABS(x))) + FMAX(-x, (T)0); } \
    KILN_LOSS_INLINE T kiln_sigmoid_##SFX(T x) {                                                \
        T e = EXP(-FABS(x));                                                                    \
        return x >= 0 ? 1 / (1 + e) : e / (1 + e);                                              \
    }                                                                                           \
    /* pw: pos_weight (1 when absent) */                                                        \
    KILN_LOSS_INLINE T kiln_bce_logits_##SFX(T x, T y, T pw) {                                  \
        return (1 - y) * x + (1 + (pw - 1) * y) * kiln_softplus_neg_##SFX(x);                   \
    }                                                                                           \
    KILN_LOSS_INLINE T kiln_bce_logits_grad_input_##SFX(T x, T y, T pw) {                       \
        return (1 - y) - (1 + (pw - 1) * y) * kiln_sigmoid_##SFX(-x);                           \
    }                                                                                           \
    KILN_LOSS_INLINE T kiln_bce_logits_grad_target_##SFX(T x, T pw) {                           \
        return (pw - 1) * kiln_softplus_neg_##SFX(x) - x;                                       \
    }                                                                                           \
    KILN_LOSS_INLINE T kiln_bce_logits_grad_pos_weight_##SFX(T x, T y) { return y * kiln_softplus_neg_##SFX(x); }

KILN_DEFINE_LOSS_MATH(float, f32, logf, log1pf, expf, fabsf, fmaxf)
KILN_DEFINE_LOSS_MATH(double, f64, log, log1p, exp, fabs, fmax)

#endif

/* Per-element math and attribute structs of the loss ops, shared by the CPU
 * kernels (kernels/cpu/bce.c, cross_entropy*.c) and their CUDA twins: plain C, no
 * kiln internals, so a .cu file can include it as it is. */
#ifndef KILN_LOSSES_MATH_H
#define KILN_LOSSES_MATH_H

#include <math.h>
#include <stdint.h>

#include "fast_math.h"

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

/* cross_entropy on f32 logits with class-index targets and dense operands takes the
 * float32 path (kernels/cpu/cross_entropy_f32.c, the ce_f32 kernels of kernels/cuda/cross_entropy.cu:
 * per-pixel float math with kernels/fast_math.h, the same operations in the same order on
 * both) unless the class axis is a contiguous row of 16 or more classes (S = 1: the (N,C)
 * layout), which CUDA gives a warp per row (axis_plan.cuh, KILN_WARP_ROW_MIN) and both
 * devices keep on the double path. S: pixels per sample (product of d1..dk, 1 if none). */
KILN_LOSS_INLINE int kiln_ce_f32_path(int64_t C, int64_t S) { return !(S == 1 && C >= 16); }

/* one_hot: class indices (N,d..) -> (N,C,d..) of zeros and ones. */
typedef struct {
    int64_t num_classes;
} kiln_one_hot_attrs;

/* The math below is written out for float and double: one-liners twice, longer bodies
 * once as a macro that reads the parameters by name and takes the type and its math
 * functions. PyTorch's BCE clamps each log at -100 so that p = 0 or 1 gives a finite loss.
 * The logits family takes its exp and log1p as SP_EXP / SP_LOG1P: kernels/fast_math.h's in
 * float (every f32 bce_with_logits, CPU and CUDA alike), libm's in double; it is written
 * with selects between values computed anyway (no arithmetic under a condition) so loops
 * over it vectorise. */
#define KILN_BCE_BODY(T, LOG, LOG1P, FMAX)                                                      \
    T lp = FMAX(LOG(p), (T)-100), l1p = FMAX(LOG1P(-p), (T)-100);                               \
    return (y - 1) * l1p - y * lp

KILN_LOSS_INLINE float kiln_bce_f32(float p, float y) { KILN_BCE_BODY(float, logf, log1pf, fmaxf); }
KILN_LOSS_INLINE double kiln_bce_f64(double p, double y) { KILN_BCE_BODY(double, log, log1p, fmax); }

/* torch 1.13's binary_cross_entropy_backward, g (p - y) / max((1 - p) p, EPSILON) in
 * this order, EPSILON being the float 1e-12 (9.99999996e-13 in double too), so p = 0 or
 * 1 stays finite; the caller then multiplies by the weight and divides by n ('mean'). */
KILN_LOSS_INLINE float kiln_bce_grad_input_f32(float g, float p, float y) {
    return g * (p - y) / fmaxf(((float)1 - p) * p, (float)1e-12f);
}
KILN_LOSS_INLINE double kiln_bce_grad_input_f64(double g, double p, double y) {
    return g * (p - y) / fmax(((double)1 - p) * p, (double)1e-12f);
}

/* torch's binary_cross_entropy_target_backward: -logit(p) = -log(p / (1 - p)), no clamp:
 * +inf at p = 0 and -inf at p = 1 (the loss's clamp at -100 is not differentiated) */
KILN_LOSS_INLINE float kiln_bce_grad_target_f32(float p) { return -logf(p / ((float)1 - p)); }
KILN_LOSS_INLINE double kiln_bce_grad_target_f64(double p) { return -log(p / ((double)1 - p)); }

/* softplus(-x) = log(1 + e^-|x|) + max(-x, 0): no overflow for either sign */
#define KILN_SOFTPLUS_NEG_BODY(T, FABS, SP_LOG1P, SP_EXP)                                       \
    T mx = -x;                                                                                  \
    mx = mx > 0 ? mx : (T)0;                                                                    \
    return SP_LOG1P(SP_EXP(-FABS(x))) + mx

KILN_LOSS_INLINE float kiln_softplus_neg_f32(float x) {
    KILN_SOFTPLUS_NEG_BODY(float, fabsf, kiln_fast_log1pf, kiln_fast_expf);
}
KILN_LOSS_INLINE double kiln_softplus_neg_f64(double x) { KILN_SOFTPLUS_NEG_BODY(double, fabs, log1p, exp); }

/* pw: pos_weight (1 when absent). torch's (1 - y) x + (1 + (pw-1) y) softplus(-x), as
 * a sum of terms that are >= 0 for y in [0, 1]: x (1 - y) or -x pw y, plus (1 + (pw-1)
 * y) log1p(e^-|x|). Adding -x to softplus(-x) = -x + log1p(e^x) instead would cancel:
 * at x = -10, y = 0 (loss e^-10) float kept 2 or 3 significant digits of the loss. */
#define KILN_BCE_LOGITS_BODY(T, FABS, SP_LOG1P, SP_EXP)                                         \
    T px = x > 0 ? x : (T)0, nx = -x > 0 ? -x : (T)0; /* one of them is 0 */                    \
    T lin = px * (1 - y) + nx * (pw * y);                                                       \
    return lin + (1 + (pw - 1) * y) * SP_LOG1P(SP_EXP(-FABS(x)))

KILN_LOSS_INLINE float kiln_bce_logits_f32(float x, float y, float pw) {
    KILN_BCE_LOGITS_BODY(float, fabsf, kiln_fast_log1pf, kiln_fast_expf);
}
KILN_LOSS_INLINE double kiln_bce_logits_f64(double x, double y, double pw) {
    KILN_BCE_LOGITS_BODY(double, fabs, log1p, exp);
}

/* torch's (1 + (pw-1) y) sigmoid(x) - pw y with sigmoid(x) or 1 - sigmoid(x) taken as
 * s = e^-|x| / (1 + e^-|x|) on the side where it is small, never as 1 - something:
 * x >= 0: (1 - y) - L s; x < 0: L s - pw y (the same roundings, selected by products
 * with h in {0, 1}: a float select around arithmetic would stop the vectoriser). For
 * y = 0 and x < -17 the old (1 - y) - L sigmoid(-x) was exactly 0 in float. */
#define KILN_BCE_LOGITS_GRAD_INPUT_BODY(T, FABS, SP_EXP)                                        \
    T e = SP_EXP(-FABS(x));                                                                     \
    T s = e / (1 + e), L = 1 + (pw - 1) * y;                                                    \
    T h = x >= 0 ? (T)1 : (T)0; /* h in {0, 1}: the products below select exactly */            \
    return (h * (1 - y) - (1 - h) * (pw * y)) + (1 - 2 * h) * (L * s)

KILN_LOSS_INLINE float kiln_bce_logits_grad_input_f32(float x, float y, float pw) {
    KILN_BCE_LOGITS_GRAD_INPUT_BODY(float, fabsf, kiln_fast_expf);
}
KILN_LOSS_INLINE double kiln_bce_logits_grad_input_f64(double x, double y, double pw) {
    KILN_BCE_LOGITS_GRAD_INPUT_BODY(double, fabs, exp);
}

KILN_LOSS_INLINE float kiln_bce_logits_grad_target_f32(float x, float pw) {
    return (pw - 1) * kiln_softplus_neg_f32(x) - x;
}
KILN_LOSS_INLINE double kiln_bce_logits_grad_target_f64(double x, double pw) {
    return (pw - 1) * kiln_softplus_neg_f64(x) - x;
}
KILN_LOSS_INLINE float kiln_bce_logits_grad_pos_weight_f32(float x, float y) { return y * kiln_softplus_neg_f32(x); }
KILN_LOSS_INLINE double kiln_bce_logits_grad_pos_weight_f64(double x, double y) { return y * kiln_softplus_neg_f64(x); }

#endif

/* kiln tensor ops. Each op runs eagerly on its inputs' device and, when grad is
 * enabled and an input requires grad, records a node on the tape. An op given a
 * NULL input returns NULL and keeps the first error, so a whole step can be
 * checked once at its end. Binary ops broadcast as NumPy/PyTorch do. */
#ifndef KILN_OPS_H
#define KILN_OPS_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- element-wise ----------------------------------------------------------
 * NaN, infinities and signed zeros behave as in torch 1.13: NaN propagates through
 * every op (relu(NaN) = NaN, its gradient passing through), relu(-0) = -0. */
KILN_API kiln_tensor *kiln_add(kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_sub(kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_mul(kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_div(kiln_tensor *a, kiln_tensor *b);
/* NaN if either is NaN. Gradient as torch: a tie splits it in half, the side that lost
 * gets 0, and with a NaN both sides get all of it. */
KILN_API kiln_tensor *kiln_maximum(kiln_tensor *a, kiln_tensor *b);
KILN_API kiln_tensor *kiln_minimum(kiln_tensor *a, kiln_tensor *b);
/* a + s, a * s: a scalar on the right. */
KILN_API kiln_tensor *kiln_add_scalar(kiln_tensor *a, double s);
KILN_API kiln_tensor *kiln_mul_scalar(kiln_tensor *a, double s);
KILN_API kiln_tensor *kiln_neg(kiln_tensor *a);
KILN_API kiln_tensor *kiln_exp(kiln_tensor *a);
KILN_API kiln_tensor *kiln_log(kiln_tensor *a);
KILN_API kiln_tensor *kiln_sqrt(kiln_tensor *a);
KILN_API kiln_tensor *kiln_abs(kiln_tensor *a);
/* x^e as torch: exponents 0, 1, 0.5, -0.5, -1, 2, 3, -2 are fill, copy, sqrt, 1/sqrt,
 * reciprocal and products, so sqrt(-0) = -0 and d/dx x^0.5 at -0 is -inf; the gradient
 * is 0 for e = 0, else g * (e * x^(e-1)) with the same pow. */
KILN_API kiln_tensor *kiln_pow_scalar(kiln_tensor *a, double exponent);
/* min(max(x, lo), hi) as torch.clamp: NaN stays NaN, lo > hi gives hi everywhere; pass
 * -INFINITY / INFINITY for a one-sided clamp. */
KILN_API kiln_tensor *kiln_clamp(kiln_tensor *a, double lo, double hi);
KILN_API kiln_tensor *kiln_relu(kiln_tensor *a);
KILN_API kiln_tensor *kiln_leaky_relu(kiln_tensor *a, double negative_slope);
KILN_API kiln_tensor *kiln_sigmoid(kiln_tensor *a);
KILN_API kiln_tensor *kiln_tanh(kiln_tensor *a);
/* x * relu6(x + 3) / 6 as torch.nn.functional.hardswish (NaN kept, -0 below -3); the
 * gradient is 0 below -3, g (x/3 + 1/2) on [-3, 3] and g above, as torch's CUDA kernel
 * (torch 1.13's vectorised CPU loop gives g, not 1.5 g, at exactly 3, and NaN at NaN). */
KILN_API kiln_tensor *kiln_hardswish(kiln_tensor *a);
/* cond ? a : b, element-wise; cond is any dtype, nonzero meaning true. */
KILN_API kiln_tensor *kiln_where(kiln_tensor *cond, kiln_tensor *a, kiln_tensor *b);

/* ---- reductions ------------------------------------------------------------
 * axes: naxes axes (negative count from the end); naxes == 0 reduces every axis. */
KILN_API kiln_tensor *kiln_sum(kiln_tensor *a, int naxes, const int *axes, bool keepdim);
KILN_API kiln_tensor *kiln_mean(kiln_tensor *a, int naxes, const int *axes, bool keepdim);
/* Max over one axis; the gradient goes to the first maximal element (as torch.max(dim)). */
KILN_API kiln_tensor *kiln_max(kiln_tensor *a, int axis, bool keepdim);
/* Index (I64) of the first maximal element along axis. Not differentiable. */
KILN_API kiln_tensor *kiln_argmax(kiln_tensor *a, int axis, bool keepdim);
/* Sum of every element, as a 0-d tensor. */
KILN_API kiln_tensor *kiln_sum_all(kiln_tensor *a);
KILN_API kiln_tensor *kiln_mean_all(kiln_tensor *a);

/* ---- softmax ----------------------------------------------------------------
 * Over any axis (axis 1 of NCHW is the per-pixel softmax over channels). An axis
 * of size 1 is an error: a softmax over one unit is always 1. log_softmax is
 * (x - max) - log(sum exp(x - max)), torch's form, accurate at any |x|. */
KILN_API kiln_tensor *kiln_softmax(kiln_tensor *a, int axis);
KILN_API kiln_tensor *kiln_log_softmax(kiln_tensor *a, int axis);

/* ---- matrix products ----------------------------------------------------------
 * matmul: (.., M, K) x (.., K, N) -> (.., M, N) with batch dims broadcast; 1-d
 * operands are promoted as torch.matmul does. Backprop: dA = dC·Bᵀ, dB = Aᵀ·dC. */
KILN_API kiln_tensor *kiln_matmul(kiln_tensor *a, kiln_tensor *b);

/* ---- shape and views ------------------------------------------------------------
 * Views share storage with their input. reshape is a view when the strides allow,
 * else a copy; one size may be -1. */
KILN_API kiln_tensor *kiln_reshape(kiln_tensor *a, int ndim, const int64_t *shape);
KILN_API kiln_tensor *kiln_permute(kiln_tensor *a, const int *perm);
KILN_API kiln_tensor *kiln_transpose(kiln_tensor *a, int dim0, int dim1);
/* Elements start, start+step, ... < end along axis (negative start/end count from the end). */
KILN_API kiln_tensor *kiln_slice(kiln_tensor *a, int axis, int64_t start, int64_t end, int64_t step);
/* Broadcasts size-1 axes to shape (a view with stride 0); -1 keeps a size. */
KILN_API kiln_tensor *kiln_expand(kiln_tensor *a, int ndim, const int64_t *shape);
/* Removes axis when it has size 1; on an axis of another size (or a 0-d tensor) it is a
 * view of the same shape, as torch.squeeze(dim). axis == KILN_ALL_AXES removes every
 * size-1 axis. */
#define KILN_ALL_AXES 0x7fffffff
KILN_API kiln_tensor *kiln_squeeze(kiln_tensor *a, int axis);
KILN_API kiln_tensor *kiln_unsqueeze(kiln_tensor *a, int axis);
/* Flattens axes start..end (inclusive) into one. */
KILN_API kiln_tensor *kiln_flatten(kiln_tensor *a, int start_axis, int end_axis);
/* Joins n tensors along axis; all other sizes must match. */
KILN_API kiln_tensor *kiln_concat(int n, kiln_tensor *const *ts, int axis);

/* ---- statistics and linear algebra -------------------------------------------------
 * Covariance of the variables in x, as torch.cov: rowvar true means each row is a
 * variable and each column an observation (torch's layout); false is the usual data
 * matrix (N observations x D variables). A 1-d (or 0-d) x is one variable's
 * observations. Divides by observations - correction (1: unbiased). One variable gives
 * a 0-d tensor (its variance), as torch; D variables a (D, D) matrix. Composed of
 * differentiable ops. */
KILN_API kiln_tensor *kiln_cov(kiln_tensor *x, bool rowvar, int correction);
/* Eigen-decomposition of a symmetric (n, n) matrix, as torch.linalg.eigh: eigenvalues
 * ascending in *values (n), orthonormal eigenvectors as the COLUMNS of *vectors (n, n).
 * Reads the lower triangle. LAPACK (syevd) on the CPU. Not differentiable. */
KILN_API kiln_status kiln_eigh(kiln_tensor *a, kiln_tensor **values, kiln_tensor **vectors);

#ifdef __cplusplus
}
#endif
#endif

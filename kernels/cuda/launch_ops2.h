/* Host launchers of the second set of CUDA kernels: softmax family, max/argmax,
 * concat, and the losses (bce, bce_with_logits, cross_entropy, nll_loss, one_hot).
 * Same conventions as launch.h (descriptors in elements, KILN_CU names, device
 * memory in CUDA builds, host memory under the emulator). An absent optional
 * operand (a loss weight) is a descriptor with data == NULL. */
#ifndef KILN_CUDA_LAUNCH_OPS2_H
#define KILN_CUDA_LAUNCH_OPS2_H

#include "launch.h"
#include "../losses_math.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Scratch every reduced loss launcher may need (per-block partials, capped at 1024
 * blocks, plus one divisor): a fixed bound so the glue needs no shape arithmetic. */
#define KILN_CUDA_LOSS_MAX_PARTIALS 1024
#define KILN_CUDA_LOSS_SCRATCH_BYTES ((2 * KILN_CUDA_LOSS_MAX_PARTIALS + 1) * sizeof(double))

/* softmax (log_ = 0) or log_softmax (1) of x over axis into out (x's shape). */
kiln_status KILN_CU(cuda_launch_softmax)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, int axis, int log_,
                                         void *stream);
/* out = y * (g - sum(g * y)) (softmax) or g - exp(y) * sum(g) (log_softmax); g, y and
 * out share one shape (g may be expanded). */
kiln_status KILN_CU(cuda_launch_softmax_backward)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                                  const kiln_cuda_tensor *y, int axis, int log_, void *stream);

/* out (I64, keepdim) = first maximal index of x along axis, the first NaN winning. */
kiln_status KILN_CU(cuda_launch_argmax)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, int axis,
                                        void *stream);
/* out (keepdim) = x gathered at idx along axis (any dtype). */
kiln_status KILN_CU(cuda_launch_max)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x,
                                     const kiln_cuda_tensor *idx, int axis, void *stream);
/* out (x's shape) = g where the axis index equals idx, 0 elsewhere; every element written. */
kiln_status KILN_CU(cuda_launch_max_backward)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                              const kiln_cuda_tensor *idx, int axis, void *stream);

/* One input of a concat: a raw element copy of in into out (the output's window
 * for that input, same shape), any dtype. */
kiln_status KILN_CU(cuda_launch_concat_part)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *in, void *stream);

/* bce (logits = 0: x holds probabilities) or bce_with_logits (1; pw is pos_weight).
 * w, pw: absent or x-shaped (stride 0 where expanded). out: x's shape for reduction
 * none, else 0-d; reduced launches need KILN_CUDA_LOSS_SCRATCH_BYTES of scratch. */
kiln_status KILN_CU(cuda_launch_bce)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x,
                                     const kiln_cuda_tensor *y, const kiln_cuda_tensor *w,
                                     const kiln_cuda_tensor *pw, int logits, const kiln_bce_attrs *at,
                                     void *scratch, void *stream);
/* The gradient for at->wrt, x's shape; g is 0-d or x's shape. */
kiln_status KILN_CU(cuda_launch_bce_backward)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                              const kiln_cuda_tensor *x, const kiln_cuda_tensor *y,
                                              const kiln_cuda_tensor *w, const kiln_cuda_tensor *pw, int logits,
                                              const kiln_bce_attrs *at, void *stream);

/* cross_entropy (log_probs = 0: x holds logits, the log-softmax is fused in) or
 * nll_loss (1). x: (N,C,d..) or (C); target: I64 position-shaped or probabilities
 * of x's shape; w: absent or (C). Scratch as for bce when reduced. */
kiln_status KILN_CU(cuda_launch_cross_entropy)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x,
                                               const kiln_cuda_tensor *target, const kiln_cuda_tensor *w,
                                               int log_probs, const kiln_ce_attrs *at, void *scratch, void *stream);
/* One fused pass per position: out is x's shape (wrt input) or the target's (wrt a
 * probability target); g is 0-d or position-shaped. 'mean' over class indices needs
 * scratch (the summed weights are reduced on the device first). */
kiln_status KILN_CU(cuda_launch_cross_entropy_backward)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                                        const kiln_cuda_tensor *x, const kiln_cuda_tensor *target,
                                                        const kiln_cuda_tensor *w, int log_probs,
                                                        const kiln_ce_attrs *at, void *scratch, void *stream);
/* out (N,C,d..) float = 1 where the class equals target (I64 (N,d..)), else 0. */
kiln_status KILN_CU(cuda_launch_one_hot)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *target, void *stream);

#ifdef __cplusplus
}
#endif
#endif

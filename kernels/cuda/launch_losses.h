/* Host launchers of the loss kernels: bce, bce_with_logits, cross_entropy,
 * nll_loss and one_hot. Same conventions as launch.h (descriptors in elements, device
 * memory in CUDA builds, host memory under the emulator). An absent optional operand
 * (a loss weight) is a descriptor with data == NULL. */
#ifndef KILN_CUDA_LAUNCH_LOSSES_H
#define KILN_CUDA_LAUNCH_LOSSES_H

#include "launch.h"
#include "../losses_math.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Scratch every reduced loss launcher may need (per-block partials, capped at 1024
 * blocks, plus one divisor): a fixed bound so the glue needs no shape arithmetic. */
#define KILN_CUDA_LOSS_MAX_PARTIALS 1024
#define KILN_CUDA_LOSS_SCRATCH_BYTES ((2 * KILN_CUDA_LOSS_MAX_PARTIALS + 1) * sizeof(double))

/* bce (logits = 0: x holds probabilities) or bce_with_logits (1; pw is pos_weight).
 * w, pw: absent or x-shaped (stride 0 where expanded). out: x's shape for reduction
 * none, else 0-d; reduced launches need KILN_CUDA_LOSS_SCRATCH_BYTES of scratch. */
kiln_status kiln_cuda_launch_bce(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x,
                                 const kiln_cuda_tensor *y, const kiln_cuda_tensor *w,
                                 const kiln_cuda_tensor *pw, int logits, const kiln_bce_attrs *at,
                                 void *scratch, void *stream);
/* The gradient for at->wrt, x's shape; g is 0-d or x's shape. */
kiln_status kiln_cuda_launch_bce_backward(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                          const kiln_cuda_tensor *x, const kiln_cuda_tensor *y,
                                          const kiln_cuda_tensor *w, const kiln_cuda_tensor *pw, int logits,
                                          const kiln_bce_attrs *at, void *stream);

/* cross_entropy (log_probs = 0: x holds logits, the log-softmax is fused in) or
 * nll_loss (1). x: (N,C,d..) or (C); target: I64 position-shaped or probabilities
 * of x's shape; w: absent or (C). Scratch as for bce when reduced. */
kiln_status kiln_cuda_launch_cross_entropy(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x,
                                           const kiln_cuda_tensor *target, const kiln_cuda_tensor *w,
                                           int log_probs, const kiln_ce_attrs *at, void *scratch, void *stream);
/* One fused pass per position: out is x's shape (wrt input) or the target's (wrt a
 * probability target); g is 0-d or position-shaped. 'mean' over class indices needs
 * scratch (the summed weights are reduced on the device first). */
kiln_status kiln_cuda_launch_cross_entropy_backward(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                                    const kiln_cuda_tensor *x, const kiln_cuda_tensor *target,
                                                    const kiln_cuda_tensor *w, int log_probs,
                                                    const kiln_ce_attrs *at, void *scratch, void *stream);
/* out (N,C,d..) float = 1 where the class equals target (I64 (N,d..)), else 0. */
kiln_status kiln_cuda_launch_one_hot(const kiln_cuda_tensor *out, const kiln_cuda_tensor *target, void *stream);

#ifdef __cplusplus
}
#endif
#endif

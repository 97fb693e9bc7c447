/* Attribute structs and CPU kernel prototypes of the nn area (linear, batch norm,
 * dropout). The attrs are shared with the CUDA kernels that will attach to the
 * same registry entries through core/ops/cuda.def. */
#ifndef KILN_CPU_NN_H
#define KILN_CPU_NN_H

#include "cpu.h"

/* linear_backward: which = 0 gives dX = dY·W (in: g, W), 1 gives dW = dYᵀ·X (in: g, X),
 * 2 gives db = the column sums of dY over its leading axes (in: g). */
typedef struct { int which; } kiln_linear_bw_attrs;

/* batch_norm: y = (x - mean) / sqrt(var + eps) * w + b per channel (axis 1). mean and var
 * are the batch statistics (training) or the running ones (eval); training only changes
 * the backward. which: for batch_norm_backward, 0 = dx, 1 = dweight, 2 = dbias, 3 = both
 * per-channel sums (Σg, Σg·x̂) as a (2, C) tensor that a training dx call takes as a sixth input. */
typedef struct { double eps; int training; int which; } kiln_batch_norm_attrs;

/* dropout: element i (C order) is kept when Philox(seed, offset + i) < 1 - p, then scaled. */
typedef struct { double p; uint64_t seed, offset; } kiln_dropout_attrs;

/* kernels/cpu/linear.c */
KILN_CPU_KERNEL(linear);              /* in: x (.., K), W (N, K), b (N) or NULL -> (.., N) */
KILN_CPU_KERNEL(linear_backward);     /* see kiln_linear_bw_attrs */

/* kernels/cpu/batch_norm.c */
KILN_CPU_KERNEL(batch_norm_stats);    /* in: x (N, C, ...) -> (2, C): mean, biased variance */
KILN_CPU_KERNEL(batch_norm);          /* in: x, w|NULL, b|NULL, mean (C), var (C) */
KILN_CPU_KERNEL(batch_norm_backward); /* in: g, x, w|NULL, mean, var[, sums]; see kiln_batch_norm_attrs */

/* kernels/cpu/dropout.c */
KILN_CPU_KERNEL(dropout);             /* in: x; also the backward, applied to the gradient */

#endif

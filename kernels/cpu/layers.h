/* Prototypes of the CPU kernels of the layer ops (their definitions: layers/): linear, batch
 * norm, dropout (and their attribute structs), conv
 * (conv2d.c: oneDNN for f32 where built in, conv2d_onednn.c, else im2col + BLAS),
 * pooling (pooling.c), upsampling (upsample.c).
 * Outputs are the contiguous tensors the front-ends allocate; inputs may have any
 * strides (non-contiguous ones are packed first). */
#ifndef KILN_CPU_LAYERS_H
#define KILN_CPU_LAYERS_H

#include "cpu.h"
#include "../../layers/layers_attrs.h"

KILN_CPU_KERNEL(conv2d);                       /* in: x, w[, b] -> y */
KILN_CPU_KERNEL(conv2d_backward_input);        /* in: gy, w -> dx (shape of x) */
KILN_CPU_KERNEL(conv2d_backward_weight);       /* in: gy, x -> dw (shape of w) */
KILN_CPU_KERNEL(conv_transpose2d);             /* in: x, w[, b] -> y: conv2d_backward_input of x, plus b */
/* conv2d's kernel, then ReLU (conv2d_bias_act; fused into oneDNN's primitive there) */
kiln_status kiln_cpu_conv2d_relu(const kiln_op_call *call);
KILN_CPU_KERNEL(max_pool2d);                   /* in: x -> y */
KILN_CPU_KERNEL(max_pool2d_backward);          /* in: gy, x, y -> dx */
KILN_CPU_KERNEL(avg_pool2d);                   /* in: x -> y */
KILN_CPU_KERNEL(avg_pool2d_backward);          /* in: gy, x -> dx (x for its shape) */
KILN_CPU_KERNEL(upsample_nearest2d);           /* in: x -> y */
KILN_CPU_KERNEL(upsample_nearest2d_backward);  /* in: gy, x -> dx (x for its shape) */
KILN_CPU_KERNEL(upsample_bilinear2d);          /* in: x -> y */
KILN_CPU_KERNEL(upsample_bilinear2d_backward); /* in: gy, x -> dx (x for its shape) */

/* t itself when contiguous, else a packed copy that the caller frees with
 * kiln_tensor_free; NULL (error recorded) when the copy fails. */
kiln_tensor *kiln_cpu_dense(kiln_tensor *t);

/* ---- linear, batch norm, dropout ---------------------------------------------- */
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

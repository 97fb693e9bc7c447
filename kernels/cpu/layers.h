/* Prototypes of the CPU kernels of the layer ops (the ops are defined in layers/) and the
 * attribute structs of linear, batch norm and dropout: conv2d.c (oneDNN for f32 where built
 * in, conv2d_onednn.c, else im2col + BLAS), pooling.c, upsample.c, linear.c, batch_norm.c,
 * dropout.c. Outputs are the contiguous tensors the front-ends allocate; inputs may have any
 * strides (non-contiguous ones are packed first). */
#ifndef KILN_CPU_LAYERS_H
#define KILN_CPU_LAYERS_H

#include "cpu.h"
#include "../../layers/layers_attrs.h"

/* kernels/cpu/conv2d.c */
kiln_status kiln_cpu_conv2d(const kiln_op_call *call);                 /* in: x, w[, b] -> y */
kiln_status kiln_cpu_conv2d_backward_input(const kiln_op_call *call);  /* in: gy, w -> dx (shape of x) */
kiln_status kiln_cpu_conv2d_backward_weight(const kiln_op_call *call); /* in: gy, x -> dw (shape of w) */
/* in: x, w[, b] -> y: conv2d_backward_input of x, plus b */
kiln_status kiln_cpu_conv_transpose2d(const kiln_op_call *call);
/* conv2d's kernel, then ReLU (conv2d_bias_act; fused into oneDNN's primitive there) */
kiln_status kiln_cpu_conv2d_relu(const kiln_op_call *call);

/* kernels/cpu/pooling.c */
kiln_status kiln_cpu_max_pool2d(const kiln_op_call *call);          /* in: x -> y */
kiln_status kiln_cpu_max_pool2d_backward(const kiln_op_call *call); /* in: gy, x, y -> dx */
kiln_status kiln_cpu_avg_pool2d(const kiln_op_call *call);          /* in: x -> y */
kiln_status kiln_cpu_avg_pool2d_backward(const kiln_op_call *call); /* in: gy, x -> dx (x for its shape) */

/* kernels/cpu/upsample.c */
kiln_status kiln_cpu_upsample_nearest2d(const kiln_op_call *call);           /* in: x -> y */
kiln_status kiln_cpu_upsample_nearest2d_backward(const kiln_op_call *call);  /* in: gy, x -> dx (x for its shape) */
kiln_status kiln_cpu_upsample_bilinear2d(const kiln_op_call *call);          /* in: x -> y */
kiln_status kiln_cpu_upsample_bilinear2d_backward(const kiln_op_call *call); /* in: gy, x -> dx (x for its shape) */

/* t itself when contiguous, else a packed copy that the caller frees with
 * kiln_tensor_free; NULL (error recorded) when the copy fails (kernels/cpu/conv2d.c). */
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
kiln_status kiln_cpu_linear(const kiln_op_call *call);          /* in: x (.., K), W (N, K), b (N) or NULL -> (.., N) */
kiln_status kiln_cpu_linear_backward(const kiln_op_call *call); /* see kiln_linear_bw_attrs */

/* kernels/cpu/batch_norm.c */
kiln_status kiln_cpu_batch_norm_stats(const kiln_op_call *call); /* in: x (N, C, ...) -> (2, C): mean, biased variance */
kiln_status kiln_cpu_batch_norm(const kiln_op_call *call);       /* in: x, w|NULL, b|NULL, mean (C), var (C) */
/* in: g, x, w|NULL, mean, var[, sums]; see kiln_batch_norm_attrs */
kiln_status kiln_cpu_batch_norm_backward(const kiln_op_call *call);

/* kernels/cpu/dropout.c */
kiln_status kiln_cpu_dropout(const kiln_op_call *call); /* in: x; also the backward, applied to the gradient */

#endif

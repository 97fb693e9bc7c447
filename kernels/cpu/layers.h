/* Prototypes of the CPU kernels of the layer ops (core/ops/layers.def): conv
 * (im2col.c: oneDNN for f32 where built in, conv_onednn.c, else im2col + BLAS),
 * pooling (pool.c), upsampling (upsample.c).
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

#endif

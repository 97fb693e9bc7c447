/* Prototypes of the element-wise and reduction CPU kernels (elementwise.c, reduce.c; their
 * ops are defined in core/elementwise.c and core/reduce.c); every CPU kernel header
 * (layers.h, losses.h, tensor_ops.h, linalg.h) includes this one for kiln_op_call. */
#ifndef KILN_CPU_KERNELS_H
#define KILN_CPU_KERNELS_H

#include "../../core/internal.h"
#include "../../core/op_attrs.h"

/* element-wise (kernels/cpu/elementwise.c) */
kiln_status kiln_cpu_unary(const kiln_op_call *call); /* in: x */
kiln_status kiln_cpu_unary_backward(const kiln_op_call *call); /* in: g, x, y */
kiln_status kiln_cpu_binary(const kiln_op_call *call); /* in: a, b (broadcast to out) */
/* in: g, a, b -> gradient of side, at the broadcast shape */
kiln_status kiln_cpu_binary_backward(const kiln_op_call *call);
kiln_status kiln_cpu_where(const kiln_op_call *call); /* in: cond, a, b */
/* in: x, any dtype and strides, broadcast to out; converts dtype */
kiln_status kiln_cpu_copy(const kiln_op_call *call);
kiln_status kiln_cpu_fill(const kiln_op_call *call);
kiln_status kiln_cpu_rand(const kiln_op_call *call);

/* reductions (kernels/cpu/reduce.c) */
kiln_status kiln_cpu_sum(const kiln_op_call *call); /* out has the keepdim shape */

#endif

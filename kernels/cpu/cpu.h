/* Prototypes of the CPU kernels, one per registry op (listed in core/ops/NAME.def). */
#ifndef KILN_CPU_KERNELS_H
#define KILN_CPU_KERNELS_H

#include "../../core/internal.h"
#include "../../core/op_attrs.h"

#define KILN_CPU_KERNEL(name) kiln_status kiln_cpu_##name(const kiln_op_call *call)

/* element-wise (kernels/cpu/elementwise.c) */
KILN_CPU_KERNEL(unary);           /* in: x */
KILN_CPU_KERNEL(unary_backward);  /* in: g, x, y */
KILN_CPU_KERNEL(binary);          /* in: a, b (broadcast to out) */
KILN_CPU_KERNEL(binary_backward); /* in: g, a, b -> gradient of side, at the broadcast shape */
KILN_CPU_KERNEL(where);           /* in: cond, a, b */
KILN_CPU_KERNEL(copy);            /* in: x, any dtype and strides, broadcast to out; converts dtype */
KILN_CPU_KERNEL(fill);
KILN_CPU_KERNEL(rand);

/* reductions (kernels/cpu/reduce.c) */
KILN_CPU_KERNEL(sum);             /* out has the keepdim shape */

#endif

/* Attribute structs of the registry ops, shared by the op front-ends, the CPU
 * kernels and the CUDA kernels. */
#ifndef KILN_OP_ATTRS_H
#define KILN_OP_ATTRS_H

#include <stdint.h>

typedef struct { int kind; double a, b; } kiln_unary_attrs;    /* kiln_unary_kind and its parameters */
typedef struct { int kind; int side; } kiln_binary_attrs;      /* kiln_binary_kind; side for backward */
typedef struct { double value; } kiln_fill_attrs;
typedef struct { int normal; double a, b; uint64_t seed, offset; } kiln_rand_attrs; /* uniform [a,b) or N(a, b²) */
typedef struct { uint32_t mask; } kiln_reduce_attrs;           /* bit i set: axis i is reduced (keepdim layout) */
typedef struct { int axis; } kiln_axis_attrs;
typedef struct { int axis; int64_t start, step; } kiln_slice_attrs;

#endif

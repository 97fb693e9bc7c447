/* Prototypes of the CPU kernels maxarg.c, softmax.c, matmul.c and concat.c (the ops are
 * defined in core/ under the same names), and the axis walker they share (maxarg.c).
 * Operand order and attrs are the contract the CUDA kernels follow too. */
#ifndef KILN_CPU_TENSOR_OPS_H
#define KILN_CPU_TENSOR_OPS_H

#include "cpu.h"
#include "iter.h"

/* Attrs: every axis op here takes kiln_axis_attrs (core/op_attrs.h) with axis
 * already normalised to 0..ndim-1; matmul takes none. */

/* max / argmax (kernels/cpu/maxarg.c); out and idx have the keepdim shape */
/* in: x (f32/f64) -> out I64: first maximal index, NaN counting as max */
kiln_status kiln_cpu_argmax(const kiln_op_call *call);
/* in: x, idx (from argmax) -> out: x gathered at idx */
kiln_status kiln_cpu_max(const kiln_op_call *call);
/* in: g (keepdim), idx -> out shaped like x: g scattered at idx, 0 elsewhere */
kiln_status kiln_cpu_max_backward(const kiln_op_call *call);

/* softmax (kernels/cpu/softmax.c); every operand has x's shape */
kiln_status kiln_cpu_softmax(const kiln_op_call *call);              /* in: x -> exp(x - max) / sum */
kiln_status kiln_cpu_log_softmax(const kiln_op_call *call);          /* in: x -> x - max - log(sum exp(x - max)) */
kiln_status kiln_cpu_softmax_backward(const kiln_op_call *call);     /* in: g, y -> y * (g - sum(g * y)) */
kiln_status kiln_cpu_log_softmax_backward(const kiln_op_call *call); /* in: g, y -> g - exp(y) * sum(g) */

/* matmul (kernels/cpu/matmul.c): in: a (.., M, K), b (.., K, N) with batch dims
 * broadcastable to out (.., M, N); the last two dims of a and b must each be
 * row-major or column-major with a positive leading dimension (the front-end makes
 * other layouts contiguous). */
kiln_status kiln_cpu_matmul(const kiln_op_call *call);
/* True when the last two dims of t are a layout the matmul kernel hands to GEMM as is. */
bool kiln__matmul_gemm_ok(const kiln_tensor *t);

/* concat (kernels/cpu/concat.c): in: n tensors, equal but along axis -> out */
kiln_status kiln_cpu_concat(const kiln_op_call *call);

/* Walks every position of a tensor but one axis: `it` iterates the kept positions
 * (the axis collapsed to size 1), and along the axis operand k advances by
 * astride[k] bytes (0 where that operand has the axis at size 1) for len steps. */
typedef struct {
    kiln_iter it;
    int64_t len;
    int64_t astride[KILN_ITER_MAX_OPS];
} kiln_axis_iter;

/* ops[0] gives the kept shape; len is the largest size of axis among ops. */
void kiln_axis_iter_init(kiln_axis_iter *ai, int nops, kiln_tensor *const *ops, int axis);

/* Pointers of every operand at kept position i (0 <= i < numel of the kept shape). */
static inline void kiln_axis_iter_at(const kiln_axis_iter *ai, int64_t i, char **ptrs) {
    const kiln_iter *it = &ai->it;
    for (int k = 0; k < it->nops; k++) ptrs[k] = it->base[k];
    for (int d = it->ndim - 1; d >= 0 && i; d--) {
        int64_t j = i % it->shape[d];
        i /= it->shape[d];
        for (int k = 0; k < it->nops; k++) ptrs[k] += j * it->strides[k][d];
    }
}

/* Number of kept positions. */
static inline int64_t kiln_axis_iter_count(const kiln_axis_iter *ai) {
    int64_t n = 1;
    for (int d = 0; d < ai->it.ndim; d++) n *= ai->it.shape[d];
    return n;
}

#endif

/* The op registry: every kiln_op_def, gathered from the per-area lists in
 * core/ops/ so that tests can walk all ops (backward rules, device coverage).
 * CUDA kernels are attached here from core/ops/cuda.def rather than in each op's
 * definition, so an op file needs no CUDA knowledge and a CPU-only build links. */
#include "internal.h"

#define KILN_OP(name) extern const kiln_op_def kiln_op_##name;
#include "ops/core.def"
#include "ops/tensor_ops.def"
#include "ops/layers.def"
#include "ops/nn.def"
#include "ops/losses.def"
#include "ops/optim.def"
#undef KILN_OP

static const kiln_op_def *const g_ops[] = {
#define KILN_OP(name) &kiln_op_##name,
#include "ops/core.def"
#include "ops/tensor_ops.def"
#include "ops/layers.def"
#include "ops/nn.def"
#include "ops/losses.def"
#include "ops/optim.def"
#undef KILN_OP
};

const kiln_op_def *const *kiln__op_registry(int *count) {
    *count = (int)(sizeof g_ops / sizeof g_ops[0]);
    return g_ops;
}

#ifdef KILN_HAVE_CUDA
#define KILN_CUDA_OP(name) kiln_status kiln_cuda_##name(const kiln_op_call *call);
#include "ops/cuda.def"
#undef KILN_CUDA_OP

static const struct {
    const kiln_op_def *op;
    kiln_kernel_fn fn;
} g_cuda[] = {
#define KILN_CUDA_OP(name) {&kiln_op_##name, kiln_cuda_##name},
#include "ops/cuda.def"
#undef KILN_CUDA_OP
    {NULL, NULL}};
#endif

kiln_kernel_fn kiln__kernel(const kiln_op_def *op, kiln_device_type type) {
    if (op->kernel[type]) return op->kernel[type]; /* CPU kernels, and views on every device */
#ifdef KILN_HAVE_CUDA
    if (type == KILN_DEVICE_CUDA)
        for (int i = 0; g_cuda[i].op; i++)
            if (g_cuda[i].op == op) return g_cuda[i].fn;
#endif
    return NULL;
}

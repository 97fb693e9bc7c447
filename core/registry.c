/* The op registry: every kiln_op_def, gathered from the per-area lists in
 * core/ops/ so that tests can walk all ops (backward rules, device coverage). */
#include "internal.h"

#define KILN_OP(name) extern const kiln_op_def kiln_op_##name;
#include "ops/core.def"
#include "ops/tensor_ops.def"
#include "ops/layers.def"
#include "ops/losses.def"
#include "ops/optim.def"
#include "ops/cuda.def"
#undef KILN_OP

static const kiln_op_def *const g_ops[] = {
#define KILN_OP(name) &kiln_op_##name,
#include "ops/core.def"
#include "ops/tensor_ops.def"
#include "ops/layers.def"
#include "ops/losses.def"
#include "ops/optim.def"
#include "ops/cuda.def"
#undef KILN_OP
};

const kiln_op_def *const *kiln__op_registry(int *count) {
    *count = (int)(sizeof g_ops / sizeof g_ops[0]);
    return g_ops;
}

/* dropout: zeroes each element with probability p and scales the rest by 1/(1-p)
 * in training; identity in eval. The mask comes from the global Philox generator
 * (counter-based), so a seed gives the same mask on every device; the backward
 * re-derives it from the same counters instead of storing it. */
#include "../core/internal.h"
#include "../kernels/cpu/layers.h"

#include <math.h>

static void dropout_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_dropout(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_dropout = {
    .name = "dropout",
    .cpu = kiln_cpu_dropout,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_dropout),
    .backward = dropout_bw,
    .attrs_size = sizeof(kiln_dropout_attrs)};

kiln_tensor *kiln_dropout(kiln_tensor *x, double p, bool training) {
    if (!kiln__check_float_inputs("dropout", 1, &x)) return NULL;
    if (!(p >= 0 && p <= 1)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "dropout: probability %g must be in [0, 1]", p);
        return NULL;
    }
    if (!training || p == 0) return x;
    uint64_t seed, offset;
    kiln_rng_get_state(&seed, &offset);
    kiln_rng_set_state(seed, offset + (uint64_t)kiln_tensor_numel(x));
    kiln_dropout_attrs at = {p, seed, offset};
    return kiln__run(&kiln_op_dropout, 1, &x, kiln__new_like(x), &at);
}

/* The gradient is masked and scaled exactly as the input was: the same op and counters. */
static void dropout_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    gin[0] = kiln__run(&kiln_op_dropout, 1, &g, kiln__new_like(n->inputs[0]), n->attrs);
}

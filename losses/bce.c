/* Binary cross-entropy: bce on probabilities and bce_with_logits, each a fused
 * registry op with one fused backward op per differentiated input. Weights are
 * expanded to the input's shape (stride-0 views) so kernels see one shape and
 * the expand's own backward sums their gradients back. */
#include "common.h"
#include "../kernels/cpu/losses.h"

#include <math.h>
#include <stdlib.h>

static void bce_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);
static void bce_logits_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_bce(const kiln_op_call *call);
kiln_status kiln_cuda_bce_backward(const kiln_op_call *call);
kiln_status kiln_cuda_bce_with_logits(const kiln_op_call *call);
kiln_status kiln_cuda_bce_with_logits_backward(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_bce = {
    .name = "bce",
    .cpu = kiln_cpu_bce,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_bce),
    .backward = bce_bw,
    .attrs_size = sizeof(kiln_bce_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_bce_backward = {
    .name = "bce_backward",
    .cpu = kiln_cpu_bce_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_bce_backward),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_bce_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_bce_with_logits = {
    .name = "bce_with_logits",
    .cpu = kiln_cpu_bce_with_logits,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_bce_with_logits),
    .backward = bce_logits_bw,
    .attrs_size = sizeof(kiln_bce_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_bce_with_logits_backward = {
    .name = "bce_with_logits_backward",
    .cpu = kiln_cpu_bce_with_logits_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_bce_with_logits_backward),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_bce_attrs)};

/* BCE's logs are only defined on [0,1]: a value outside is almost always a logit
 * passed where a probability was expected, so the error points there. */
static bool check_probabilities(kiln_tensor *input) {
    double *v = kiln__loss_host_values("bce", input);
    if (!v) return false;
    int64_t n = kiln_tensor_numel(input);
    for (int64_t i = 0; i < n; i++) {
        if (v[i] >= 0 && v[i] <= 1) continue;
        kiln__error(KILN_STATUS_INVALID_ARGUMENT,
                    "bce: input element %lld is %g, outside [0,1]; bce takes probabilities. If the input is raw "
                    "network output (logits), use kiln_bce_with_logits(logits, target, ...) instead, which applies "
                    "the sigmoid itself in a numerically stable form (do not apply a sigmoid first)",
                    (long long)i, v[i]);
        free(v);
        return false;
    }
    free(v);
    return true;
}

kiln_tensor *kiln_bce(kiln_tensor *input, kiln_tensor *target, kiln_tensor *weight, kiln_reduction reduction) {
    if (!kiln__loss_check_reduction("bce", reduction) || !kiln__loss_check_pair("bce", input, target) ||
        !check_probabilities(input))
        return NULL;
    bool ok = true;
    kiln_tensor *w = kiln__loss_expand("bce", "weight", weight, input, NULL, &ok);
    if (!ok) return NULL;
    kiln_bce_attrs at = {reduction, 0};
    kiln_tensor *in[3] = {input, target, w};
    return kiln__run(&kiln_op_bce, 3, in, kiln__loss_new_out(input, input->ndim, input->shape, reduction), &at);
}

static void bce_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    const kiln_bce_attrs *at = n->attrs;
    kiln_tensor *in[4] = {g, n->inputs[0], n->inputs[1], n->inputs[2]};
    for (int i = 0; i < 3; i++) {
        if (!n->needs_grad[i]) continue;
        kiln_bce_attrs bat = {at->reduction, i};
        gin[i] = kiln__run(&kiln_op_bce_backward, 4, in, kiln__new_like(n->inputs[0]), &bat);
    }
}

kiln_tensor *kiln_bce_with_logits(kiln_tensor *input, kiln_tensor *target, kiln_tensor *weight,
                                  kiln_tensor *pos_weight, kiln_reduction reduction) {
    const char *op = "bce_with_logits";
    if (!kiln__loss_check_reduction(op, reduction) || !kiln__loss_check_pair(op, input, target)) return NULL;
    bool ok = true;
    kiln_tensor *w = kiln__loss_expand(op, "weight", weight, input, NULL, &ok);
    kiln_tensor *pw = ok ? kiln__loss_expand(op, "pos_weight", pos_weight, input,
                                             " (pos_weight broadcasts from the last axis, as PyTorch: give (C) for "
                                             "an (N,C) input and (C,1,1) for an (N,C,H,W) input)",
                                             &ok)
                         : NULL;
    if (!ok) return NULL;
    kiln_bce_attrs at = {reduction, 0};
    kiln_tensor *in[4] = {input, target, w, pw};
    return kiln__run(&kiln_op_bce_with_logits, 4, in,
                     kiln__loss_new_out(input, input->ndim, input->shape, reduction), &at);
}

static void bce_logits_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    const kiln_bce_attrs *at = n->attrs;
    kiln_tensor *in[5] = {g, n->inputs[0], n->inputs[1], n->inputs[2], n->inputs[3]};
    for (int i = 0; i < 4; i++) {
        if (!n->needs_grad[i]) continue;
        kiln_bce_attrs bat = {at->reduction, i};
        gin[i] = kiln__run(&kiln_op_bce_with_logits_backward, 5, in, kiln__new_like(n->inputs[0]), &bat);
    }
}

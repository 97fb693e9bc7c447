/* linear: y = x·Wᵀ + b over any leading batch axes, W stored (out_features,
 * in_features) as PyTorch. Forward and both backward products are one BLAS gemm
 * each (kernels/cpu/linear.c); the bias gradient is a column sum (linear_backward, which 2). */
#include "../core/internal.h"
#include "../kernels/cpu/layers.h"

static void linear_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_linear(const kiln_op_call *call);
kiln_status kiln_cuda_linear_backward(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_linear = {
    .name = "linear",
    .cpu = kiln_cpu_linear,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_linear),
    .backward = linear_bw};
KILN_REGISTER const kiln_op_def kiln_op_linear_backward = {
    .name = "linear_backward",
    .cpu = kiln_cpu_linear_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_linear_backward),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_linear_bw_attrs)};

/* torch's F.linear(x, w) with w of shape (in,): x @ w, the last axis reduced (output
 * x.shape[:-1]), plus a one-value bias. It is the (1, in) weight's product with that
 * axis squeezed, through views, so both devices and the backward come with it. */
static kiln_tensor *linear_vector(kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias) {
    char b1[128], b2[128];
    int64_t in_f = weight->shape[0];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != in_f) {
        kiln__error(KILN_STATUS_SHAPE, "linear: input %s has %lld features in its last axis but the 1-d weight %s "
                    "has %lld (x @ weight reduces the last axis)", kiln__shape_str(x->ndim, x->shape, b1, sizeof b1),
                    (long long)(x->ndim ? x->shape[x->ndim - 1] : 0),
                    kiln__shape_str(weight->ndim, weight->shape, b2, sizeof b2), (long long)in_f);
        return NULL;
    }
    if (bias && (bias->ndim > 1 || kiln_tensor_numel(bias) != 1)) {
        kiln__error(KILN_STATUS_SHAPE, "linear: bias %s with the 1-d weight %s must be 0-d or hold one value (the "
                    "output has no feature axis)", kiln__shape_str(bias->ndim, bias->shape, b1, sizeof b1),
                    kiln__shape_str(weight->ndim, weight->shape, b2, sizeof b2));
        return NULL;
    }
    kiln_tensor *b = bias ? kiln_reshape(bias, 1, (const int64_t[]){1}) : NULL;
    if (bias && !b) return NULL;
    return kiln_squeeze(kiln_linear(x, kiln_unsqueeze(weight, 0), b), -1);
}

kiln_tensor *kiln_linear(kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias) {
    kiln_tensor *in[3] = {x, weight, bias};
    int nin = bias ? 3 : 2;
    if (!kiln__check_float_inputs("linear", nin, in)) return NULL;
    char b1[128], b2[128], b3[128];
    if (weight->ndim == 1) return linear_vector(x, weight, bias);
    if (weight->ndim != 2) {
        kiln__error(KILN_STATUS_SHAPE, "linear: weight %s must be 2-d (out_features, in_features) as torch, or 1-d "
                    "(in_features) for x @ weight", kiln__shape_str(weight->ndim, weight->shape, b1, sizeof b1));
        return NULL;
    }
    int64_t out_f = weight->shape[0], in_f = weight->shape[1];
    if (x->ndim < 1 || x->shape[x->ndim - 1] != in_f) {
        kiln__error(KILN_STATUS_SHAPE,
                    "linear: input %s has %lld features in its last axis but weight %s expects %lld "
                    "(weight is (out_features, in_features))",
                    kiln__shape_str(x->ndim, x->shape, b1, sizeof b1),
                    (long long)(x->ndim ? x->shape[x->ndim - 1] : 0),
                    kiln__shape_str(weight->ndim, weight->shape, b2, sizeof b2), (long long)in_f);
        return NULL;
    }
    if (bias && (bias->ndim != 1 || bias->shape[0] != out_f)) {
        kiln__error(KILN_STATUS_SHAPE, "linear: bias %s must be 1-d of out_features (%lld) for weight %s",
                    kiln__shape_str(bias->ndim, bias->shape, b1, sizeof b1), (long long)out_f,
                    kiln__shape_str(weight->ndim, weight->shape, b3, sizeof b3));
        return NULL;
    }
    int64_t shape[KILN_MAX_DIMS];
    for (int i = 0; i < x->ndim - 1; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = out_f;
    return kiln__run(&kiln_op_linear, nin, in, kiln__new(x->ndim, shape, x->dtype, x->device), NULL);
}

static void linear_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    kiln_tensor *x = n->inputs[0], *w = n->inputs[1];
    if (n->needs_grad[0]) {
        kiln_linear_bw_attrs at = {0};
        kiln_tensor *in[2] = {g, w};
        gin[0] = kiln__run(&kiln_op_linear_backward, 2, in, kiln__new_like(x), &at);
    }
    if (n->needs_grad[1]) {
        kiln_linear_bw_attrs at = {1};
        kiln_tensor *in[2] = {g, x};
        gin[1] = kiln__run(&kiln_op_linear_backward, 2, in, kiln__new_like(w), &at);
    }
    if (n->nin > 2 && n->needs_grad[2]) {
        kiln_linear_bw_attrs at = {2}; /* column sums: one custom kernel on CUDA, no atomics */
        gin[2] = kiln__run(&kiln_op_linear_backward, 1, &g, kiln__new_like(n->inputs[2]), &at);
    }
}

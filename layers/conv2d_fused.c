/* kiln_conv2d_bias_relu: convolution, bias and ReLU as one inference op
 * (conv2d_bias_act) when nothing records for autograd, so CUDA can run them as one
 * cuDNN plan; the composition relu(conv2d) when recording. */
#include "conv_internal.h"
#include "conv_plans.h"
#include "../kernels/cpu/layers.h"

static kiln_status kiln_cpu_conv2d_bias_act(const kiln_op_call *call);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_conv2d_bias_act(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_conv2d_bias_act = {
    .name = "conv2d_bias_act",
    .cpu = kiln_cpu_conv2d_bias_act,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_conv2d_bias_act),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_conv2d_bias_act_attrs)};

/* The CPU kernel, here beside its op because it only composes conv2d's kernels: conv2d's
 * (with its bias), then ReLU (fused on oneDNN). */
static kiln_status kiln_cpu_conv2d_bias_act(const kiln_op_call *call) {
    const kiln_conv2d_bias_act_attrs *at = call->attrs;
    kiln_op_call conv = {&kiln_op_conv2d, call->nin, call->in, call->out, &at->conv};
    return at->relu ? kiln_cpu_conv2d_relu(&conv) : kiln_cpu_conv2d(&conv);
}

kiln_tensor *kiln_conv2d_bias_relu(kiln_tensor *x, kiln_tensor *w, kiln_tensor *b, const kiln_conv2d_params *p) {
    if (x && x->ndim == 3) return kiln_squeeze(kiln_conv2d_bias_relu(kiln_unsqueeze(x, 0), w, b, p), 0);
    bool records = kiln_grad_enabled() && ((x && kiln_tensor_requires_grad(x)) ||
                                           (w && kiln_tensor_requires_grad(w)) || (b && kiln_tensor_requires_grad(b)));
    if (records) return kiln_relu(kiln_conv2d(x, w, b, p));
    kiln_conv2d_bias_act_attrs at;
    memset(&at, 0, sizeof at);
    int64_t shape[4];
    if (!kiln__conv2d_prepare("conv2d_bias_relu", x, w, b, p, &at.conv, shape)) return NULL;
    at.relu = 1;
    kiln_tensor *in[3] = {x, w, b};
    return kiln__run(&kiln_op_conv2d_bias_act, b ? 3 : 2, in, kiln__new(4, shape, x->dtype, x->device), &at);
}

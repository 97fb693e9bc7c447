/* conv_transpose2d: the gradient of conv2d with respect to its input, used as a
 * layer (the U-Net decoder's learned up-sampling). Its forward is conv2d's
 * backward_input pass; its backward is conv2d's forward (for x) and backward_weight
 * (for the weight), with the roles of input and output swapped. */
#include "conv_internal.h"
#include "../kernels/cpu/layers.h"

static void conv_transpose2d_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_conv_transpose2d(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_conv_transpose2d = {
    .name = "conv_transpose2d",
    .cpu = kiln_cpu_conv_transpose2d,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_conv_transpose2d),
    .backward = conv_transpose2d_bw,
    .attrs_size = sizeof(kiln_conv2d_attrs)};

kiln_conv_transpose2d_params kiln_conv_transpose2d_params_default(void) {
    return (kiln_conv_transpose2d_params){{1, 1}, {0, 0}, {0, 0}, {1, 1}, 1};
}

kiln_tensor *kiln_conv_transpose2d(kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                                   const kiln_conv_transpose2d_params *p) {
    const char *op = "conv_transpose2d";
    /* unbatched (C, H, W), as torch: one image through views, so gradients flow */
    if (x && x->ndim == 3) return kiln_squeeze(kiln_conv_transpose2d(kiln_unsqueeze(x, 0), w, b, p), 0);
    kiln_conv_transpose2d_params defaults = kiln_conv_transpose2d_params_default();
    if (!p) p = &defaults;
    if (!kiln__conv_check_tensors(op, x, w, b) ||
        !kiln__conv_check_params(op, p->stride, p->padding, p->dilation, p->groups))
        return NULL;
    char sx[128], sw[128];
    kiln__shape_str(4, x->shape, sx, sizeof sx);
    kiln__shape_str(4, w->shape, sw, sizeof sw);
    int64_t groups = p->groups, cin = x->shape[1], cout;
    if (!kiln__mul_i64(w->shape[1], groups, &cout)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: groups=%lld times the weight's %lld output channels per group "
                    "passes 2^63", op, (long long)groups, (long long)w->shape[1]);
        return NULL;
    }
    if (cin != w->shape[0]) {
        kiln__error(KILN_STATUS_SHAPE, "%s: input %s has %lld channels but weight %s expects %lld (weight is "
                    "(in, out/groups, kH, kW))", op, sx, (long long)cin, sw, (long long)w->shape[0]);
        return NULL;
    }
    if (cin % groups != 0) {
        kiln__error(KILN_STATUS_SHAPE, "%s: input %s has %lld channels, not divisible by groups=%lld", op, sx,
                    (long long)cin, (long long)groups);
        return NULL;
    }
    if (!kiln__conv_check_bias(op, b, cout)) return NULL;
    int64_t shape[4] = {x->shape[0], cout, 0, 0};
    for (int i = 0; i < 2; i++) {
        const char *axis = i ? "width" : "height";
        int64_t op_i = p->output_padding[i];
        if (op_i < 0 || (op_i >= p->stride[i] && op_i >= p->dilation[i])) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: output_padding %lld along %s must be >= 0 and smaller "
                        "than either the stride (%lld) or the dilation (%lld), as in torch", op, (long long)op_i,
                        axis, (long long)p->stride[i], (long long)p->dilation[i]);
            return NULL;
        }
        /* (in-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1, every step checked */
        int64_t a, b, c;
        if (!kiln__mul_i64(x->shape[2 + i] - 1, p->stride[i], &a) || !kiln__mul_i64(p->padding[i], 2, &b) ||
            !kiln__mul_i64(p->dilation[i], w->shape[2 + i] - 1, &c) || !kiln__add_i64(a, c, &a) ||
            !kiln__add_i64(a, op_i + 1, &a)) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: input %s with weight %s, stride %lld, padding %lld and "
                        "dilation %lld along %s gives an output past 2^63 pixels; use smaller parameters", op, sx, sw,
                        (long long)p->stride[i], (long long)p->padding[i], (long long)p->dilation[i], axis);
            return NULL;
        }
        shape[2 + i] = a - b;
        if (shape[2 + i] < 1) {
            kiln__error(KILN_STATUS_SHAPE, "%s: input %s with weight %s, stride %lld, padding %lld, dilation %lld "
                        "and output_padding %lld gives output %s %lld; it must be positive (use less padding)",
                        op, sx, sw, (long long)p->stride[i], (long long)p->padding[i], (long long)p->dilation[i],
                        (long long)op_i, axis, (long long)shape[2 + i]);
            return NULL;
        }
    }
    if (!kiln__check_extent(op, 4, shape, kiln_dtype_size(x->dtype))) return NULL;
    kiln_conv2d_attrs at = {{p->stride[0], p->stride[1]}, {p->padding[0], p->padding[1]},
                            {p->dilation[0], p->dilation[1]}, groups};
    kiln_tensor *in[3] = {x, w, b};
    return kiln__run(&kiln_op_conv_transpose2d, b ? 3 : 2, in, kiln__new(4, shape, x->dtype, x->device), &at);
}

static void conv_transpose2d_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    kiln_tensor *x = n->inputs[0], *w = n->inputs[1];
    if (n->needs_grad[0]) {
        kiln_tensor *in[2] = {g, w}; /* g is the conv's input, x its output */
        gin[0] = kiln__run(&kiln_op_conv2d, 2, in, kiln__new_like(x), n->attrs);
    }
    if (n->needs_grad[1]) {
        kiln_tensor *in[2] = {x, g}; /* x plays the conv's output gradient */
        gin[1] = kiln__run(&kiln_op_conv2d_backward_weight, 2, in, kiln__new_like(w), n->attrs);
    }
    if (n->nin > 2 && n->needs_grad[2]) gin[2] = kiln__conv_bias_grad(g);
}

/* conv2d: the front-end (checks, torch's output size as kernels/conv2d_geometry.h has it,
 * "same" padding), its registry op and the two dedicated backward ops (input and weight
 * gradients), which a device can implement separately (cuDNN's data and filter gradients). */
#include "conv_internal.h"
#include "../kernels/conv2d_geometry.h"
#include "../kernels/cpu/layers.h"

static void conv2d_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_conv2d(const kiln_op_call *call);
kiln_status kiln_cuda_conv2d_backward_input(const kiln_op_call *call);
kiln_status kiln_cuda_conv2d_backward_weight(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_conv2d = {
    .name = "conv2d",
    .cpu = kiln_cpu_conv2d,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_conv2d),
    .backward = conv2d_bw,
    .attrs_size = sizeof(kiln_conv2d_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_conv2d_backward_input = {
    .name = "conv2d_backward_input",
    .cpu = kiln_cpu_conv2d_backward_input,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_conv2d_backward_input),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_conv2d_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_conv2d_backward_weight = {
    .name = "conv2d_backward_weight",
    .cpu = kiln_cpu_conv2d_backward_weight,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_conv2d_backward_weight),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_conv2d_attrs)};

kiln_conv2d_params kiln_conv2d_params_default(void) {
    return (kiln_conv2d_params){{1, 1}, {0, 0}, {1, 1}, 1, false};
}

bool kiln__conv_check_tensors(const char *op, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b) {
    kiln_tensor *in[3] = {x, w, b};
    if (!kiln__check_float_inputs(op, b ? 3 : 2, in)) return false;
    char s[128];
    if (x->ndim != 4) { /* the public functions turn 3-d input into 4-d before this */
        kiln__error(KILN_STATUS_SHAPE, "%s: input has shape %s (%d-d); it takes 3-d (C, H, W) or 4-d (N, C, H, W) "
                    "input", op, kiln__shape_str(x->ndim, x->shape, s, sizeof s), x->ndim);
        return false;
    }
    if (w->ndim != 4) {
        kiln__error(KILN_STATUS_SHAPE, "%s: weight has shape %s (%d-d); it must be 4-d (out, in/groups, kH, kW) "
                    "for conv2d, (in, out/groups, kH, kW) for conv_transpose2d",
                    op, kiln__shape_str(w->ndim, w->shape, s, sizeof s), w->ndim);
        return false;
    }
    if (b && b->ndim != 1) {
        kiln__error(KILN_STATUS_SHAPE, "%s: bias has shape %s; it must be 1-d with one value per output channel",
                    op, kiln__shape_str(b->ndim, b->shape, s, sizeof s));
        return false;
    }
    return true;
}

bool kiln__conv_check_bias(const char *op, kiln_tensor *b, int64_t channels) {
    if (b && b->shape[0] != channels) {
        kiln__error(KILN_STATUS_SHAPE, "%s: bias has %lld values but the output has %lld channels", op,
                    (long long)b->shape[0], (long long)channels);
        return false;
    }
    return true;
}

bool kiln__conv_check_params(const char *op, const int64_t *stride, const int64_t *padding,
                             const int64_t *dilation, int64_t groups) {
    for (int i = 0; i < 2; i++) {
        const char *axis = i ? "width" : "height";
        if (stride[i] < 1) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: stride %lld along %s; strides must be positive", op,
                        (long long)stride[i], axis);
            return false;
        }
        if (dilation[i] < 1) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: dilation %lld along %s; dilations must be positive", op,
                        (long long)dilation[i], axis);
            return false;
        }
        if (padding[i] < 0) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: padding %lld along %s; padding must be >= 0", op,
                        (long long)padding[i], axis);
            return false;
        }
    }
    if (groups < 1) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: groups %lld; groups must be positive", op, (long long)groups);
        return false;
    }
    return true;
}

kiln_tensor *kiln__conv_bias_grad(kiln_tensor *g) { return kiln_sum(g, 3, (const int[]){0, 2, 3}, false); }

bool kiln__conv2d_prepare(const char *op, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                          const kiln_conv2d_params *p, kiln_conv2d_attrs *attrs, int64_t *shape) {
    kiln_conv2d_params defaults = kiln_conv2d_params_default();
    if (!p) p = &defaults;
    if (!kiln__conv_check_tensors(op, x, w, b) ||
        !kiln__conv_check_params(op, p->stride, p->padding, p->dilation, p->groups))
        return false;
    char sx[128], sw[128];
    kiln__shape_str(4, x->shape, sx, sizeof sx);
    kiln__shape_str(4, w->shape, sw, sizeof sw);
    int64_t groups = p->groups, cin = x->shape[1], cout = w->shape[0], want;
    if (!kiln__mul_i64(w->shape[1], groups, &want)) want = INT64_MAX; /* groups past any channel count */
    if (cin != want) {
        kiln__error(KILN_STATUS_SHAPE, "%s: input %s has %lld channels but weight %s with groups=%lld expects %lld "
                    "(weight is (out, in/groups, kH, kW))", op, sx, (long long)cin, sw, (long long)groups,
                    (long long)want);
        return false;
    }
    if (cout % groups != 0) {
        kiln__error(KILN_STATUS_SHAPE, "%s: weight %s has %lld output channels, not divisible by groups=%lld", op,
                    sw, (long long)cout, (long long)groups);
        return false;
    }
    if (!kiln__conv_check_bias(op, b, cout)) return false;
    if (p->padding_same && (p->stride[0] != 1 || p->stride[1] != 1)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: padding \"same\" needs stride 1 (got %lldx%lld), as in torch; "
                    "give explicit padding for a strided convolution", op, (long long)p->stride[0],
                    (long long)p->stride[1]);
        return false;
    }
    kiln_conv2d_attrs at = {{p->stride[0], p->stride[1]}, {0, 0}, {p->dilation[0], p->dilation[1]}, groups};
    shape[0] = x->shape[0];
    shape[1] = cout;
    for (int i = 0; i < 2; i++) {
        int64_t span, total, padded;
        /* the dilated kernel; "same": torch pads total = span-1, the odd one at the end */
        bool ok = kiln__mul_i64(p->dilation[i], w->shape[2 + i] - 1, &span) && kiln__add_i64(span, 1, &span);
        if (!ok) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: dilation %lld along %s with a %lld-pixel kernel spans more "
                        "than 2^63 pixels; use a dilation the input can hold", op, (long long)p->dilation[i],
                        i ? "width" : "height", (long long)w->shape[2 + i]);
            return false;
        }
        if (p->padding_same) total = span - 1;
        if ((!p->padding_same && !kiln__mul_i64(p->padding[i], 2, &total)) ||
            !kiln__add_i64(x->shape[2 + i], total, &padded)) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: padding %lld along %s makes the padded input larger than "
                        "2^63 pixels; use a padding the input can hold", op, (long long)p->padding[i],
                        i ? "width" : "height");
            return false;
        }
        at.pad[i] = p->padding_same ? total / 2 : p->padding[i];
        if (span > padded) {
            kiln__error(KILN_STATUS_SHAPE, "%s: the %s kernel spans %lld pixels (size %lld, dilation %lld) but the "
                        "padded input is only %lld (input %s, padding %lld in all); use a smaller kernel or more padding",
                        op, i ? "width" : "height", (long long)span, (long long)w->shape[2 + i],
                        (long long)p->dilation[i], (long long)padded, sx, (long long)total);
            return false;
        }
        shape[2 + i] = kiln_conv_output_size(padded, span, p->stride[i]);
    }
    if (!kiln__check_extent(op, 4, shape, kiln_dtype_size(x->dtype))) return false;
    *attrs = at;
    return true;
}

kiln_tensor *kiln_conv2d(kiln_tensor *x, kiln_tensor *w, kiln_tensor *b, const kiln_conv2d_params *p) {
    /* unbatched (C, H, W), as torch: one image through views, so gradients flow */
    if (x && x->ndim == 3) return kiln_squeeze(kiln_conv2d(kiln_unsqueeze(x, 0), w, b, p), 0);
    kiln_conv2d_attrs at;
    int64_t shape[4];
    if (!kiln__conv2d_prepare("conv2d", x, w, b, p, &at, shape)) return NULL;
    kiln_tensor *in[3] = {x, w, b};
    return kiln__run(&kiln_op_conv2d, b ? 3 : 2, in, kiln__new(4, shape, x->dtype, x->device), &at);
}

static void conv2d_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    kiln_tensor *x = n->inputs[0], *w = n->inputs[1];
    if (n->needs_grad[0]) {
        kiln_tensor *in[2] = {g, w};
        gin[0] = kiln__run(&kiln_op_conv2d_backward_input, 2, in, kiln__new_like(x), n->attrs);
    }
    if (n->needs_grad[1]) {
        kiln_tensor *in[2] = {g, x};
        gin[1] = kiln__run(&kiln_op_conv2d_backward_weight, 2, in, kiln__new_like(w), n->attrs);
    }
    if (n->nin > 2 && n->needs_grad[2]) gin[2] = kiln__conv_bias_grad(g);
}

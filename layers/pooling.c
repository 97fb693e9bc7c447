/* max_pool2d and avg_pool2d: front-ends with torch's checks and output size
 * (floor or ceil mode; a ceil-mode window may not start in the bottom/right
 * padding), their registry ops and the dedicated backward ops. */
#include "../core/internal.h"
#include "../kernels/cpu/layers.h"

static void max_pool2d_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);
static void avg_pool2d_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_max_pool2d(const kiln_op_call *call);
kiln_status kiln_cuda_max_pool2d_backward(const kiln_op_call *call);
kiln_status kiln_cuda_avg_pool2d(const kiln_op_call *call);
kiln_status kiln_cuda_avg_pool2d_backward(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_max_pool2d = {
    .name = "max_pool2d",
    .cpu = kiln_cpu_max_pool2d,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_max_pool2d),
    .backward = max_pool2d_bw,
    .attrs_size = sizeof(kiln_pool2d_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_max_pool2d_backward = {
    .name = "max_pool2d_backward",
    .cpu = kiln_cpu_max_pool2d_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_max_pool2d_backward),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_pool2d_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_avg_pool2d = {
    .name = "avg_pool2d",
    .cpu = kiln_cpu_avg_pool2d,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_avg_pool2d),
    .backward = avg_pool2d_bw,
    .attrs_size = sizeof(kiln_pool2d_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_avg_pool2d_backward = {
    .name = "avg_pool2d_backward",
    .cpu = kiln_cpu_avg_pool2d_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_avg_pool2d_backward),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_pool2d_attrs)};

kiln_pool2d_params kiln_pool2d_params_default(int64_t kh, int64_t kw) {
    return (kiln_pool2d_params){{kh, kw}, {kh, kw}, {0, 0}, {1, 1}, false, true};
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

/* Checks x and p, fills the attrs and the output shape; false with an error recorded. */
static bool pool_setup(const char *op, bool is_max, kiln_tensor *x, const kiln_pool2d_params *p,
                       kiln_pool2d_attrs *at, int64_t *shape) {
    if (!kiln__check_float_inputs(op, 1, &x)) return false;
    char sx[128];
    kiln__shape_str(x->ndim, x->shape, sx, sizeof sx);
    if (!p) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: params is NULL; start from kiln_pool2d_params_default(kh, kw)",
                    op);
        return false;
    }
    if (x->ndim != 4) { /* the public functions turn 3-d input into 4-d before this */
        kiln__error(KILN_STATUS_SHAPE, "%s: input has shape %s (%d-d); it takes 3-d (C, H, W) or 4-d (N, C, H, W) "
                    "input", op, sx, x->ndim);
        return false;
    }
    at->count_include_pad = p->count_include_pad;
    shape[0] = x->shape[0];
    shape[1] = x->shape[1];
    for (int i = 0; i < 2; i++) {
        const char *axis = i ? "width" : "height";
        int64_t k = p->kernel[i], s = p->stride[i] ? p->stride[i] : k, pad = p->padding[i];
        int64_t d = p->dilation[i] ? p->dilation[i] : 1;
        if (k < 1) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: kernel size %lld along %s; it must be positive", op,
                        (long long)k, axis);
            return false;
        }
        if (s < 1) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: stride %lld along %s; strides must be positive (0 means "
                        "the kernel size)", op, (long long)s, axis);
            return false;
        }
        if (d < 1 || (!is_max && d != 1)) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, is_max ? "%s: dilation %lld along %s; it must be positive"
                        : "%s: dilation %lld along %s; average pooling has no dilation (leave it 0 or 1)",
                        op, (long long)d, axis);
            return false;
        }
        if (pad < 0 || pad > k / 2) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: padding %lld along %s with kernel %lld; padding must be "
                        "between 0 and half the kernel size (%lld), as in torch", op, (long long)pad, axis,
                        (long long)k, (long long)(k / 2));
            return false;
        }
        int64_t in = x->shape[2 + i], span, window, reach;
        /* in + 2*pad - d*(k-1) - 1 (+ s-1 in ceil mode), checked: pad <= k/2 keeps 2*pad in range */
        if (!kiln__mul_i64(d, k - 1, &span) || !kiln__add_i64(span, 1, &window) || !kiln__add_i64(in, 2 * pad, &reach) ||
            !kiln__add_i64(reach, p->ceil_mode ? s - 1 : 0, &reach)) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: kernel %lld, dilation %lld and padding %lld along %s span "
                        "more than 2^63 pixels; use a window the input can hold", op, (long long)k, (long long)d,
                        (long long)pad, axis);
            return false;
        }
        int64_t out = floor_div(reach - span - 1, s) + 1;
        if (p->ceil_mode && (out - 1) * s >= in + pad) out--;
        if (out < 1) {
            kiln__error(KILN_STATUS_SHAPE, "%s: input %s is too small for a %lld-pixel %s window (kernel %lld, "
                        "dilation %lld, padding %lld): the output %s would be %lld", op, sx,
                        (long long)window, axis, (long long)k, (long long)d, (long long)pad, axis,
                        (long long)out);
            return false;
        }
        at->kernel[i] = k;
        at->stride[i] = s;
        at->pad[i] = pad;
        at->dilation[i] = d;
        shape[2 + i] = out;
    }
    return true;
}

kiln_tensor *kiln_max_pool2d(kiln_tensor *x, const kiln_pool2d_params *p) {
    /* unbatched (C, H, W), as torch: one image through views, so gradients flow */
    if (x && x->ndim == 3) return kiln_squeeze(kiln_max_pool2d(kiln_unsqueeze(x, 0), p), 0);
    kiln_pool2d_attrs at;
    int64_t shape[4];
    if (!pool_setup("max_pool2d", true, x, p, &at, shape)) return NULL;
    return kiln__run(&kiln_op_max_pool2d, 1, &x, kiln__new(4, shape, x->dtype, x->device), &at);
}

kiln_tensor *kiln_avg_pool2d(kiln_tensor *x, const kiln_pool2d_params *p) {
    if (x && x->ndim == 3) return kiln_squeeze(kiln_avg_pool2d(kiln_unsqueeze(x, 0), p), 0);
    kiln_pool2d_attrs at;
    int64_t shape[4];
    if (!pool_setup("avg_pool2d", false, x, p, &at, shape)) return NULL;
    return kiln__run(&kiln_op_avg_pool2d, 1, &x, kiln__new(4, shape, x->dtype, x->device), &at);
}

static void max_pool2d_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    kiln_tensor *x = n->inputs[0], *y = n->output;
    /* y (which a device may use to find the maxima) was freed: recompute it */
    if (!y) y = kiln__run(&kiln_op_max_pool2d, 1, &x, kiln__new_like(g), n->attrs);
    if (!y) return;
    kiln_tensor *in[3] = {g, x, y};
    gin[0] = kiln__run(&kiln_op_max_pool2d_backward, 3, in, kiln__new_like(x), n->attrs);
}

static void avg_pool2d_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    kiln_tensor *in[2] = {g, n->inputs[0]};
    gin[0] = kiln__run(&kiln_op_avg_pool2d_backward, 2, in, kiln__new_like(n->inputs[0]), n->attrs);
}

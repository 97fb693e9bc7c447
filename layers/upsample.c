/* upsample_nearest2d and upsample_bilinear2d (torch's interpolate modes 'nearest'
 * and 'bilinear'): front-ends that resolve the output size and torch's source-index
 * scale, their registry ops and the dedicated backward ops. */
#include "../core/internal.h"
#include "../kernels/cpu/layers.h"

#include <math.h>

static void nearest_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);
static void bilinear_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_upsample_nearest2d(const kiln_op_call *call);
kiln_status kiln_cuda_upsample_nearest2d_backward(const kiln_op_call *call);
kiln_status kiln_cuda_upsample_bilinear2d(const kiln_op_call *call);
kiln_status kiln_cuda_upsample_bilinear2d_backward(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_upsample_nearest2d = {
    .name = "upsample_nearest2d",
    .cpu = kiln_cpu_upsample_nearest2d,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_upsample_nearest2d),
    .backward = nearest_bw,
    .attrs_size = sizeof(kiln_upsample2d_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_upsample_nearest2d_backward = {
    .name = "upsample_nearest2d_backward",
    .cpu = kiln_cpu_upsample_nearest2d_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_upsample_nearest2d_backward),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_upsample2d_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_upsample_bilinear2d = {
    .name = "upsample_bilinear2d",
    .cpu = kiln_cpu_upsample_bilinear2d,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_upsample_bilinear2d),
    .backward = bilinear_bw,
    .attrs_size = sizeof(kiln_upsample2d_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_upsample_bilinear2d_backward = {
    .name = "upsample_bilinear2d_backward",
    .cpu = kiln_cpu_upsample_bilinear2d_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_upsample_bilinear2d_backward),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_upsample2d_attrs)};

static bool check_input(const char *op, kiln_tensor *x) {
    if (!kiln__check_float_inputs(op, 1, &x)) return false;
    char sx[128];
    /* No unbatched (C, H, W) form: torch 1.13's interpolate reads a 3-d input as (N, C, W)
     * and resamples it in 1-d, and its upsample_*2d ops refuse it, so kiln refuses too. */
    if (x->ndim != 4) {
        kiln__error(KILN_STATUS_SHAPE, "%s: input has shape %s (%d-d); it takes NCHW input (N, C, H, W): for one "
                    "(C, H, W) image add a batch axis with kiln_unsqueeze(x, 0) (torch's interpolate reads 3-d input "
                    "as (N, C, W), a 1-d resampling)", op, kiln__shape_str(x->ndim, x->shape, sx, sizeof sx),
                    x->ndim);
        return false;
    }
    if (x->shape[2] < 1 || x->shape[3] < 1) {
        kiln__error(KILN_STATUS_SHAPE, "%s: input %s has an empty spatial axis; there is nothing to sample", op,
                    kiln__shape_str(4, x->shape, sx, sizeof sx));
        return false;
    }
    return true;
}

/* Output size from a scale factor, as torch: floor(in * scale). 0 on error. */
static int64_t scaled_size(const char *op, int64_t in, double scale, const char *axis) {
    if (!(scale > 0) || !isfinite(scale)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: scale factor %g along %s; it must be positive and finite", op,
                    scale, axis);
        return 0;
    }
    double want = floor((double)in * scale);
    if (want >= 4611686018427387904.0) { /* 2^62: past any tensor, and past what int64 converts safely */
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: input %s %lld times scale %g gives an output of %g pixels; "
                    "use a smaller scale", op, axis, (long long)in, scale, want);
        return 0;
    }
    int64_t out = (int64_t)want;
    if (out < 1)
        kiln__error(KILN_STATUS_SHAPE, "%s: input %s %lld times scale %g gives an output of %lld; it must be at "
                    "least 1", op, axis, (long long)in, scale, (long long)out);
    return out;
}

/* factor given: the output size is floor(in * factor) and sampling uses 1/factor, as
 * torch's interpolate(scale_factor=...) with recompute_scale_factor left at None. */
static kiln_tensor *upsample(bool bilinear, kiln_tensor *x, int64_t oh, int64_t ow, const double *factor,
                             bool align_corners) {
    const char *op = bilinear ? "upsample_bilinear2d" : "upsample_nearest2d";
    if (!check_input(op, x)) return NULL;
    int64_t out[2] = {oh, ow};
    kiln_upsample2d_attrs at = {{0, 0}, align_corners, {0, 0}};
    for (int i = 0; i < 2; i++) {
        const char *axis = i ? "width" : "height";
        int64_t in = x->shape[2 + i];
        if (factor) {
            out[i] = scaled_size(op, in, factor[i], axis);
            if (!out[i]) return NULL;
        } else if (out[i] < 1) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: output %s %lld; it must be at least 1", op, axis,
                        (long long)out[i]);
            return NULL;
        }
        /* torch 1.13 (recompute_scale_factor=None, its default): a given factor samples
         * with 1/factor, not in/out, even where floor(in * factor) is in or 2 in */
        if (bilinear && align_corners) at.scale[i] = out[i] > 1 ? (double)(in - 1) / (double)(out[i] - 1) : 0;
        else at.scale[i] = factor ? 1.0 / factor[i] : (double)in / (double)out[i];
        at.factor[i] = factor != NULL;
    }
    int64_t shape[4] = {x->shape[0], x->shape[1], out[0], out[1]};
    const kiln_op_def *def = bilinear ? &kiln_op_upsample_bilinear2d : &kiln_op_upsample_nearest2d;
    return kiln__run(def, 1, &x, kiln__new(4, shape, x->dtype, x->device), &at);
}

kiln_tensor *kiln_upsample_nearest2d(kiln_tensor *x, int64_t out_h, int64_t out_w) {
    return upsample(false, x, out_h, out_w, NULL, false);
}
kiln_tensor *kiln_upsample_nearest2d_scale(kiln_tensor *x, double scale_h, double scale_w) {
    return upsample(false, x, 0, 0, (const double[]){scale_h, scale_w}, false);
}
kiln_tensor *kiln_upsample_bilinear2d(kiln_tensor *x, int64_t out_h, int64_t out_w, bool align_corners) {
    return upsample(true, x, out_h, out_w, NULL, align_corners);
}
kiln_tensor *kiln_upsample_bilinear2d_scale(kiln_tensor *x, double scale_h, double scale_w, bool align_corners) {
    return upsample(true, x, 0, 0, (const double[]){scale_h, scale_w}, align_corners);
}

static void nearest_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    kiln_tensor *in[2] = {g, n->inputs[0]};
    gin[0] = kiln__run(&kiln_op_upsample_nearest2d_backward, 2, in, kiln__new_like(n->inputs[0]), n->attrs);
}

static void bilinear_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    kiln_tensor *in[2] = {g, n->inputs[0]};
    gin[0] = kiln__run(&kiln_op_upsample_bilinear2d_backward, 2, in, kiln__new_like(n->inputs[0]), n->attrs);
}

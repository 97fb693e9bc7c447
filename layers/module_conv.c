/* Convolution-family modules (torch.nn.Conv2d, ConvTranspose2d, MaxPool2d,
 * AvgPool2d, Upsample) on the functional ops of layers.h: torch's parameter names,
 * layouts, constructor checks and default initialisation. A forward failure carries
 * the module's dotted path in front of the op's own message. */
#include "../core/internal.h"
#include "conv_internal.h"
#include "module_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static kiln_module *create_with(const char *type, kiln_module_forward_fn fwd, size_t n) {
    void *ctx = calloc(1, n);
    if (!ctx) {
        kiln__error(KILN_STATUS_OOM, "%s: out of host memory", type);
        return NULL;
    }
    kiln_module *m = kiln_module_create(type, fwd, ctx, free);
    if (m) kiln_module_set_lean(m, true); /* built-in forwards keep nothing but their result */
    return m;
}

/* A zero-filled parameter of the given shape, owned by m. */
static kiln_tensor *add_param(kiln_module *m, const char *name, int ndim, const int64_t *shape, kiln_dtype dt) {
    kiln_scope *s = kiln_scope_begin();
    if (!s) return NULL;
    kiln_tensor *t = kiln_module_register_parameter(m, name, kiln_tensor_zeros(ndim, shape, dt, KILN_CPU));
    kiln_scope_end(s);
    return t;
}

/* The functional op's own message names the op; a user debugging a model also
 * needs to know which layer it was. Only an error raised by this call is prefixed:
 * an older pending error is the first cause and stays as it is. */
static kiln_tensor *name_failure(kiln_module *self, bool error_before, kiln_tensor *y) {
    if (y || error_before || kiln_last_status() == KILN_STATUS_OK) return y;
    char msg[1024], d[300];
    kiln_status st = kiln_last_status();
    snprintf(msg, sizeof msg, "%s", kiln_last_error());
    kiln_clear_error();
    kiln__error(st, "%s: %s", kiln__module_describe(self, d, sizeof d), msg);
    return NULL;
}

/* (C, H, W) or (N, C, H, W) with the module's channel count, as torch's Conv2d and
 * pooling modules; false with an error naming the module. */
static bool check_nchw(kiln_module *self, kiln_tensor *x, int64_t channels, const char *what) {
    bool rank_ok = x->ndim == 3 || x->ndim == 4;
    if (rank_ok && (channels < 0 || x->shape[x->ndim - 3] == channels)) return true;
    char d[300], b[128];
    kiln__module_describe(self, d, sizeof d);
    kiln__shape_str(x->ndim, x->shape, b, sizeof b);
    if (!rank_ok)
        kiln__error(KILN_STATUS_SHAPE, "%s: input %s must be 3-d (C, H, W) or 4-d (N, C, H, W)", d, b);
    else
        kiln__error(KILN_STATUS_SHAPE, "%s: input %s has %lld channels; expected %s = %lld", d, b,
                    (long long)x->shape[x->ndim - 3], what, (long long)channels);
    return false;
}

static bool check_dtype(const char *op, kiln_dtype dt) {
    if (kiln__is_float(dt)) return true;
    kiln__error(KILN_STATUS_DTYPE, "%s: dtype %s; modules hold f32 or f64 parameters", op, kiln_dtype_name(dt));
    return false;
}

/* torch's _ConvNd checks: positive sizes, channels divisible by groups. */
static bool check_conv_sizes(const char *op, int64_t in, int64_t out, int64_t kh, int64_t kw, int64_t groups) {
    if (in < 1 || out < 1 || kh < 1 || kw < 1) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: in_channels %lld, out_channels %lld and kernel %lldx%lld must "
                    "all be positive", op, (long long)in, (long long)out, (long long)kh, (long long)kw);
        return false;
    }
    if (groups >= 1 && (in % groups || out % groups)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: in_channels %lld and out_channels %lld must both be divisible "
                    "by groups = %lld", op, (long long)in, (long long)out, (long long)groups);
        return false;
    }
    return true;
}

/* ---- Conv2d and ConvTranspose2d ---------------------------------------------------- */

typedef struct {
    int64_t in, out;
    bool transposed;
    kiln_conv2d_params p;
    kiln_conv_transpose2d_params tp;
    kiln_tensor *weight, *bias;
} conv_ctx;

static kiln_tensor *conv_forward(kiln_module *self, kiln_tensor *x) {
    conv_ctx *c = kiln_module_ctx(self);
    if (!check_nchw(self, x, c->in, "in_channels")) return NULL;
    bool before = kiln_last_status() != KILN_STATUS_OK;
    kiln_tensor *y = c->transposed ? kiln_conv_transpose2d(x, c->weight, c->bias, &c->tp)
                                   : kiln_conv2d(x, c->weight, c->bias, &c->p);
    return name_failure(self, before, y);
}

/* Both weights are 4-d with torch's layouts: (out, in/groups, kH, kW) for a conv,
 * (in, out/groups, kH, kW) for a transposed one. kiln_init_default takes fan_in
 * from size(1)·kH·kW either way, which is exactly what torch's reset_parameters
 * computes for both (for the transposed weight that is out/groups·kH·kW). */
static kiln_module *conv_create(const char *type, bool transposed, int64_t in, int64_t out, int64_t kh, int64_t kw,
                                const kiln_conv2d_params *p, const kiln_conv_transpose2d_params *tp, bool bias,
                                kiln_dtype dt) {
    int64_t groups = transposed ? tp->groups : p->groups;
    kiln_module *m = create_with(type, conv_forward, sizeof(conv_ctx));
    if (!m) return NULL;
    conv_ctx *c = kiln_module_ctx(m);
    c->in = in;
    c->out = out;
    c->transposed = transposed;
    if (transposed) c->tp = *tp;
    else c->p = *p;
    int64_t ws[4] = {transposed ? in : out, (transposed ? out : in) / groups, kh, kw};
    c->weight = add_param(m, "weight", 4, ws, dt);
    c->bias = bias ? add_param(m, "bias", 1, &out, dt) : NULL;
    if (!c->weight || (bias && !c->bias) || kiln_init_default(c->weight, c->bias) != KILN_STATUS_OK) {
        kiln_module_free(m);
        return NULL;
    }
    return m;
}

kiln_module *kiln_conv2d_create_ex(int64_t in_channels, int64_t out_channels, int64_t kernel_h, int64_t kernel_w,
                                   const kiln_conv2d_params *p, bool bias, kiln_dtype dt) {
    const char *op = "kiln_conv2d_create";
    kiln_conv2d_params defaults = kiln_conv2d_params_default();
    if (!p) p = &defaults;
    if (!check_dtype(op, dt) || !kiln__conv_check_params(op, p->stride, p->padding, p->dilation, p->groups) ||
        !check_conv_sizes(op, in_channels, out_channels, kernel_h, kernel_w, p->groups))
        return NULL;
    if (p->padding_same && (p->stride[0] != 1 || p->stride[1] != 1)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: padding \"same\" is not supported for strided convolutions "
                    "(stride %lldx%lld), as in torch; give explicit padding", op, (long long)p->stride[0],
                    (long long)p->stride[1]);
        return NULL;
    }
    return conv_create("Conv2d", false, in_channels, out_channels, kernel_h, kernel_w, p, NULL, bias, dt);
}

kiln_module *kiln_conv2d_create(int64_t in_channels, int64_t out_channels, int64_t kernel_size, int64_t stride,
                                int64_t padding, bool bias, kiln_dtype dt) {
    kiln_conv2d_params p = kiln_conv2d_params_default();
    p.stride[0] = p.stride[1] = stride;
    p.padding[0] = p.padding[1] = padding;
    return kiln_conv2d_create_ex(in_channels, out_channels, kernel_size, kernel_size, &p, bias, dt);
}

kiln_module *kiln_conv_transpose2d_create_ex(int64_t in_channels, int64_t out_channels, int64_t kernel_h,
                                             int64_t kernel_w, const kiln_conv_transpose2d_params *p, bool bias,
                                             kiln_dtype dt) {
    const char *op = "kiln_conv_transpose2d_create";
    kiln_conv_transpose2d_params defaults = kiln_conv_transpose2d_params_default();
    if (!p) p = &defaults;
    if (!check_dtype(op, dt) || !kiln__conv_check_params(op, p->stride, p->padding, p->dilation, p->groups) ||
        !check_conv_sizes(op, in_channels, out_channels, kernel_h, kernel_w, p->groups))
        return NULL;
    for (int i = 0; i < 2; i++) {
        int64_t o = p->output_padding[i];
        if (o < 0 || (o >= p->stride[i] && o >= p->dilation[i])) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: output_padding %lld along %s must be >= 0 and smaller than "
                        "either the stride (%lld) or the dilation (%lld), as in torch", op, (long long)o,
                        i ? "width" : "height", (long long)p->stride[i], (long long)p->dilation[i]);
            return NULL;
        }
    }
    return conv_create("ConvTranspose2d", true, in_channels, out_channels, kernel_h, kernel_w, NULL, p, bias, dt);
}

kiln_module *kiln_conv_transpose2d_create(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
                                          int64_t stride, int64_t padding, bool bias, kiln_dtype dt) {
    kiln_conv_transpose2d_params p = kiln_conv_transpose2d_params_default();
    p.stride[0] = p.stride[1] = stride;
    p.padding[0] = p.padding[1] = padding;
    return kiln_conv_transpose2d_create_ex(in_channels, out_channels, kernel_size, kernel_size, &p, bias, dt);
}

/* ---- MaxPool2d and AvgPool2d ---------------------------------------------------------- */

typedef struct {
    bool is_max;
    kiln_pool2d_params p;
} pool_ctx;

static kiln_tensor *pool_forward(kiln_module *self, kiln_tensor *x) {
    pool_ctx *c = kiln_module_ctx(self);
    if (!check_nchw(self, x, -1, NULL)) return NULL;
    bool before = kiln_last_status() != KILN_STATUS_OK;
    return name_failure(self, before, c->is_max ? kiln_max_pool2d(x, &c->p) : kiln_avg_pool2d(x, &c->p));
}

/* The window checks that do not depend on the input, made at construction so a bad
 * model fails where it is built. */
static kiln_module *pool_create(bool is_max, const kiln_pool2d_params *p) {
    const char *op = is_max ? "kiln_max_pool2d_create" : "kiln_avg_pool2d_create";
    if (!p) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: params is NULL; start from kiln_pool2d_params_default(kh, kw)",
                    op);
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        const char *axis = i ? "width" : "height";
        int64_t k = p->kernel[i];
        if (k < 1 || p->stride[i] < 0 || p->dilation[i] < 0 || (!is_max && p->dilation[i] > 1)) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: kernel %lld, stride %lld, dilation %lld along %s; the "
                        "kernel must be positive, the stride >= 0 (0: the kernel size) and the dilation >= 1%s", op,
                        (long long)k, (long long)p->stride[i], (long long)p->dilation[i], axis,
                        is_max ? "" : " (average pooling has none: leave it 0 or 1)");
            return NULL;
        }
        if (p->padding[i] < 0 || p->padding[i] > k / 2) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: padding %lld along %s with kernel %lld; padding must be "
                        "between 0 and half the kernel size (%lld), as in torch", op, (long long)p->padding[i], axis,
                        (long long)k, (long long)(k / 2));
            return NULL;
        }
    }
    kiln_module *m = create_with(is_max ? "MaxPool2d" : "AvgPool2d", pool_forward, sizeof(pool_ctx));
    if (!m) return NULL;
    pool_ctx *c = kiln_module_ctx(m);
    c->is_max = is_max;
    c->p = *p;
    return m;
}

static kiln_pool2d_params square_pool(int64_t kernel, int64_t stride, int64_t padding) {
    kiln_pool2d_params p = kiln_pool2d_params_default(kernel, kernel);
    p.stride[0] = p.stride[1] = stride;
    p.padding[0] = p.padding[1] = padding;
    return p;
}

kiln_module *kiln_max_pool2d_create_ex(const kiln_pool2d_params *p) { return pool_create(true, p); }
kiln_module *kiln_avg_pool2d_create_ex(const kiln_pool2d_params *p) { return pool_create(false, p); }

kiln_module *kiln_max_pool2d_create(int64_t kernel_size, int64_t stride, int64_t padding) {
    kiln_pool2d_params p = square_pool(kernel_size, stride, padding);
    return pool_create(true, &p);
}

kiln_module *kiln_avg_pool2d_create(int64_t kernel_size, int64_t stride, int64_t padding) {
    kiln_pool2d_params p = square_pool(kernel_size, stride, padding);
    return pool_create(false, &p);
}

/* ---- Upsample ----------------------------------------------------------------------- */

typedef struct {
    int64_t size[2];  /* > 0 when built from a size */
    double scale[2];  /* > 0 when built from a scale factor */
    kiln_upsample_mode mode;
    bool align_corners;
} upsample_ctx;

static kiln_tensor *upsample_forward(kiln_module *self, kiln_tensor *x) {
    upsample_ctx *c = kiln_module_ctx(self);
    if (!check_nchw(self, x, -1, NULL)) return NULL;
    bool before = kiln_last_status() != KILN_STATUS_OK;
    kiln_tensor *y;
    if (c->mode == KILN_UPSAMPLE_NEAREST)
        y = c->size[0] ? kiln_upsample_nearest2d(x, c->size[0], c->size[1])
                       : kiln_upsample_nearest2d_scale(x, c->scale[0], c->scale[1]);
    else
        y = c->size[0] ? kiln_upsample_bilinear2d(x, c->size[0], c->size[1], c->align_corners)
                       : kiln_upsample_bilinear2d_scale(x, c->scale[0], c->scale[1], c->align_corners);
    return name_failure(self, before, y);
}

static kiln_module *upsample_create(const int64_t *size, const double *scale, kiln_upsample_mode mode,
                                    bool align_corners) {
    const char *op = size ? "kiln_upsample_create" : "kiln_upsample_scale_create";
    if (mode != KILN_UPSAMPLE_NEAREST && mode != KILN_UPSAMPLE_BILINEAR) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: %d is not a kiln_upsample_mode", op, (int)mode);
        return NULL;
    }
    if (mode == KILN_UPSAMPLE_NEAREST && align_corners) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: align_corners can only be set with bilinear interpolation, "
                    "as in torch; pass false for nearest", op);
        return NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (size ? size[i] < 1 : !(scale[i] > 0 && isfinite(scale[i]))) {
            if (size)
                kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: output size %lldx%lld; both must be at least 1", op,
                            (long long)size[0], (long long)size[1]);
            else
                kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: scale factors %gx%g; both must be positive and finite",
                            op, scale[0], scale[1]);
            return NULL;
        }
    }
    kiln_module *m = create_with("Upsample", upsample_forward, sizeof(upsample_ctx));
    if (!m) return NULL;
    upsample_ctx *c = kiln_module_ctx(m);
    if (size) memcpy(c->size, size, sizeof c->size);
    else memcpy(c->scale, scale, sizeof c->scale);
    c->mode = mode;
    c->align_corners = align_corners;
    return m;
}

kiln_module *kiln_upsample_create(int64_t out_h, int64_t out_w, kiln_upsample_mode mode, bool align_corners) {
    return upsample_create((const int64_t[]){out_h, out_w}, NULL, mode, align_corners);
}

kiln_module *kiln_upsample_scale_create(double scale_h, double scale_w, kiln_upsample_mode mode, bool align_corners) {
    return upsample_create(NULL, (const double[]){scale_h, scale_w}, mode, align_corners);
}

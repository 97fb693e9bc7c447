/* Gradient clipping as torch.nn.utils: clip_grad_norm_ (one norm over all gradients,
 * then one scale) and clip_grad_value_. Gradients back to back in one storage (a
 * gradient arena) are handled as one span; CUDA gradients by kernels/cuda/optimizer.cu. */
#include "../core/internal.h"
#include "../kernels/cpu/optim.h"
#ifdef KILN_HAVE_CUDA
#include "../kernels/cuda/launch_optimizer.h" /* kiln_cuda_norm_accumulate, kiln_cuda_scale, kiln_cuda_clamp */
#endif

#include <math.h>
#include <stdlib.h>

/* Calls fn on each contiguous span of the gradients: one span when they are adjacent
 * in one storage. Fails on strided gradients, on gradients of several devices, and on
 * CUDA gradients in a build without CUDA. */
typedef kiln_status (*span_fn)(kiln_device dev, kiln_dtype dt, void *p, int64_t n, void *ctx);

static kiln_status for_each_span(const char *op, kiln_tensor *const *params, int n, span_fn fn, void *ctx) {
    if (!params && n > 0) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: params is NULL", op);
    kiln_tensor *first = NULL, *prev = NULL;
    bool adjacent = true;
    for (int i = 0; i < n; i++) {
        if (!params[i]) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: parameter %d is NULL", op, i);
        kiln_tensor *g = params[i]->grad;
        if (!g) continue;
        char b[160];
#ifndef KILN_HAVE_CUDA
        if (g->device.type != KILN_DEVICE_CPU)
            return kiln__error(KILN_STATUS_DEVICE, "%s: gradient %d is %s; clipping runs on the cpu in this build",
                               op, i, kiln_tensor_describe(g, b, sizeof b));
#endif
        if (first && !kiln_device_equal(g->device, first->device))
            return kiln__error(KILN_STATUS_DEVICE, "%s: gradient %d is %s but gradient 0 is on another device; clip "
                               "the gradients of each device separately", op, i, kiln_tensor_describe(g, b, sizeof b));
        if (!kiln__is_float(g->dtype))
            return kiln__error(KILN_STATUS_DTYPE, "%s: gradient %d is %s; gradients are f32 or f64", op, i,
                               kiln_tensor_describe(g, b, sizeof b));
        if (!kiln_tensor_is_contiguous(g))
            return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: gradient %d is not contiguous", op, i);
        if (!first) first = g;
        else if (g->storage != first->storage || g->dtype != first->dtype ||
                 g->offset != prev->offset + kiln_tensor_numel(prev) * (int64_t)kiln_dtype_size(prev->dtype))
            adjacent = false;
        prev = g;
    }
    if (!first) return KILN_STATUS_OK;
    if (adjacent) {
        int64_t bytes = prev->offset + kiln_tensor_numel(prev) * (int64_t)kiln_dtype_size(prev->dtype) - first->offset;
        return fn(first->device, first->dtype, kiln__ptr(first), bytes / (int64_t)kiln_dtype_size(first->dtype), ctx);
    }
    for (int i = 0; i < n; i++) {
        kiln_tensor *g = params[i]->grad;
        kiln_status st = g ? fn(g->device, g->dtype, kiln__ptr(g), kiln_tensor_numel(g), ctx) : KILN_STATUS_OK;
        if (st != KILN_STATUS_OK) return st;
    }
    return KILN_STATUS_OK;
}

typedef struct {
    double p, acc;
} norm_ctx;

static kiln_status norm_span(kiln_device dev, kiln_dtype dt, void *g, int64_t n, void *ctx) {
    norm_ctx *c = ctx;
    double v;
#ifdef KILN_HAVE_CUDA
    if (dev.type == KILN_DEVICE_CUDA) {
        kiln_status st = kiln_cuda_norm_accumulate(dev, dt, g, n, c->p, &v);
        if (st != KILN_STATUS_OK) return st;
    } else
#endif
        v = kiln_cpu_norm_accumulate(dt, g, n, c->p);
    if (isinf(c->p)) c->acc = (isnan(v) || isnan(c->acc)) ? NAN : fmax(c->acc, v);
    else c->acc += v;
    return KILN_STATUS_OK;
}

static kiln_status scale_span(kiln_device dev, kiln_dtype dt, void *g, int64_t n, void *ctx) {
#ifdef KILN_HAVE_CUDA
    if (dev.type == KILN_DEVICE_CUDA) return kiln_cuda_scale(dev, dt, g, n, *(double *)ctx);
#endif
    kiln_cpu_scale(dt, g, n, *(double *)ctx);
    return KILN_STATUS_OK;
}

double kiln_clip_grad_norm(kiln_tensor *const *params, int n, double max_norm, double norm_type) {
    const char *op = "kiln_clip_grad_norm";
    if (!(norm_type > 0)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: norm_type %g must be > 0 (2 for L2, INFINITY for max)", op,
                    norm_type);
        return NAN;
    }
    if (isnan(max_norm)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: max_norm is NaN", op);
        return NAN;
    }
    norm_ctx c = {norm_type, 0};
    if (for_each_span(op, params, n, norm_span, &c) != KILN_STATUS_OK) return NAN;
    double total = isinf(norm_type) ? c.acc : norm_type == 2 ? sqrt(c.acc) : pow(c.acc, 1 / norm_type);
    /* torch scales unconditionally by the clamped coefficient; NaN norms spread NaN */
    double coef = max_norm / (total + 1e-6);
    if (coef > 1) coef = 1;
    if (coef != 1 && for_each_span(op, params, n, scale_span, &coef) != KILN_STATUS_OK) return NAN;
    return total;
}

typedef struct {
    double lo, hi;
} clamp_ctx;

static kiln_status clamp_span(kiln_device dev, kiln_dtype dt, void *g, int64_t n, void *ctx) {
    clamp_ctx *c = ctx;
#ifdef KILN_HAVE_CUDA
    if (dev.type == KILN_DEVICE_CUDA) return kiln_cuda_clamp(dev, dt, g, n, c->lo, c->hi);
#endif
    kiln_cpu_clamp(dt, g, n, c->lo, c->hi);
    return KILN_STATUS_OK;
}

kiln_status kiln_clip_grad_value(kiln_tensor *const *params, int n, double clip_value) {
    if (!(clip_value >= 0))
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_clip_grad_value: clip_value %g must be >= 0",
                           clip_value);
    clamp_ctx c = {-clip_value, clip_value};
    return for_each_span("kiln_clip_grad_value", params, n, clamp_span, &c);
}

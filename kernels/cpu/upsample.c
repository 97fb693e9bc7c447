/* CPU nearest and bilinear upsampling of NCHW planes, forward and backward. The
 * source index (and bilinear weights) of every output row and column are computed
 * once with torch's formulas, then threads take whole (n, c) planes, so backward
 * scatters never collide. */
#include "layers.h"
#include "../upsample_geometry.h"

#include <math.h>
#include <stdlib.h>

typedef kiln_upsample_taps taps; /* kernels/upsample_geometry.h, shared with CUDA */

/* The upsampling loops of one dtype T under the names given (nearest_f32, ...). */
#define DEFINE_UPSAMPLE(T, NEAREST, BILINEAR)                                                     \
    /* gy NULL: y = x sampled; else dx (passed as y, zeroed) += gy at the sources. */             \
    static void NEAREST(const T *x, T *y, const T *gy, int64_t planes, int64_t h, int64_t w,      \
                            int64_t ho, int64_t wo, const int64_t *sh, const int64_t *sw) {       \
        _Pragma("omp parallel for schedule(static) if (planes > 1 && planes * ho * wo > 32768)")  \
        for (int64_t p = 0; p < planes; p++)                                                      \
            for (int64_t oh = 0; oh < ho; oh++) {                                                 \
                int64_t o = (p * ho + oh) * wo, i = (p * h + sh[oh]) * w;                         \
                if (gy)                                                                           \
                    for (int64_t ow = 0; ow < wo; ow++) y[i + sw[ow]] += gy[o + ow];              \
                else                                                                              \
                    for (int64_t ow = 0; ow < wo; ow++) y[o + ow] = x[i + sw[ow]];                \
            }                                                                                     \
    }                                                                                             \
    static void BILINEAR(const T *x, T *y, const T *gy, int64_t planes, int64_t h, int64_t w,     \
                             int64_t ho, int64_t wo, const taps *th, const taps *tw) {            \
        _Pragma("omp parallel for schedule(static) if (planes > 1 && planes * ho * wo > 16384)")  \
        for (int64_t p = 0; p < planes; p++)                                                      \
            for (int64_t oh = 0; oh < ho; oh++) {                                                 \
                taps a = th[oh];                                                                  \
                int64_t r0 = (p * h + a.i0) * w, r1 = r0 + a.step * w, o = (p * ho + oh) * wo;    \
                for (int64_t ow = 0; ow < wo; ow++) {                                             \
                    taps b = tw[ow];                                                              \
                    int64_t c0 = b.i0, c1 = b.i0 + b.step;                                        \
                    if (gy) {                                                                     \
                        double g = gy[o + ow];                                                    \
                        y[r0 + c0] += (T)(g * a.l0 * b.l0);                                       \
                        y[r0 + c1] += (T)(g * a.l0 * b.l1);                                       \
                        y[r1 + c0] += (T)(g * a.l1 * b.l0);                                       \
                        y[r1 + c1] += (T)(g * a.l1 * b.l1);                                       \
                    } else {                                                                      \
                        y[o + ow] = (T)(a.l0 * (b.l0 * x[r0 + c0] + b.l1 * x[r0 + c1]) +          \
                                        a.l1 * (b.l0 * x[r1 + c0] + b.l1 * x[r1 + c1]));          \
                    }                                                                             \
                }                                                                                 \
            }                                                                                     \
    }

DEFINE_UPSAMPLE(float, nearest_f32, bilinear_f32)
DEFINE_UPSAMPLE(double, nearest_f64, bilinear_f64)

/* xin: the forward input (for its shape, and its values in the forward pass);
 * gyin: the output gradient, NULL for the forward pass. */
static kiln_status run_upsample(const kiln_op_call *call, bool bilinear, kiln_tensor *xin, kiln_tensor *gyin) {
    const kiln_upsample2d_attrs *at = call->attrs;
    kiln_tensor *x = gyin ? xin : kiln_cpu_dense(xin);
    kiln_tensor *gy = gyin ? kiln_cpu_dense(gyin) : NULL;
    if (!x || (gyin && !gy)) return kiln_last_status();
    const kiln_tensor *o = gy ? gy : call->out;
    int64_t planes = xin->shape[0] * xin->shape[1], h = xin->shape[2], w = xin->shape[3];
    int64_t ho = o->shape[2], wo = o->shape[3];
    size_t each = bilinear ? sizeof(taps) : sizeof(int64_t);
    char *idx = malloc((size_t)(ho + wo) * each + 1);
    kiln_status st = KILN_STATUS_OK;
    if (!idx) {
        st = kiln__error(KILN_STATUS_OOM, "%s: out of host memory for the index tables", call->op->name);
        goto done;
    }
    void *ph = idx, *pw = idx + (size_t)ho * each;
    bool f64 = call->out->dtype == KILN_F64;
    double nsh = kiln_upsample_nearest_scale(at, 0, h, ho, f64),
           nsw = kiln_upsample_nearest_scale(at, 1, w, wo, f64);
    for (int64_t i = 0; i < ho; i++) {
        if (bilinear) ((taps *)ph)[i] = kiln_upsample_linear_taps(i, h, ho, at->scale[0], at->align_corners);
        else ((int64_t *)ph)[i] = kiln_upsample_nearest_src(i, h, nsh, f64);
    }
    for (int64_t i = 0; i < wo; i++) {
        if (bilinear) ((taps *)pw)[i] = kiln_upsample_linear_taps(i, w, wo, at->scale[1], at->align_corners);
        else ((int64_t *)pw)[i] = kiln_upsample_nearest_src(i, w, nsw, f64);
    }
    void *px = gy ? NULL : kiln__ptr(x), *py = kiln__ptr(call->out), *pg = gy ? kiln__ptr(gy) : NULL;
    if (gy) memset(py, 0, (size_t)kiln_tensor_numel(call->out) * kiln_dtype_size(call->out->dtype));
    if (call->out->dtype == KILN_F32) {
        if (bilinear) bilinear_f32(px, py, pg, planes, h, w, ho, wo, ph, pw);
        else nearest_f32(px, py, pg, planes, h, w, ho, wo, ph, pw);
    } else {
        if (bilinear) bilinear_f64(px, py, pg, planes, h, w, ho, wo, ph, pw);
        else nearest_f64(px, py, pg, planes, h, w, ho, wo, ph, pw);
    }
done:
    free(idx);
    if (gy && gy != gyin) kiln_tensor_free(gy);
    if (x != xin) kiln_tensor_free(x);
    return st;
}

kiln_status kiln_cpu_upsample_nearest2d(const kiln_op_call *call) { return run_upsample(call, false, call->in[0], NULL); }
kiln_status kiln_cpu_upsample_nearest2d_backward(const kiln_op_call *call) { return run_upsample(call, false, call->in[1], call->in[0]); }
kiln_status kiln_cpu_upsample_bilinear2d(const kiln_op_call *call) { return run_upsample(call, true, call->in[0], NULL); }
kiln_status kiln_cpu_upsample_bilinear2d_backward(const kiln_op_call *call) { return run_upsample(call, true, call->in[1], call->in[0]); }

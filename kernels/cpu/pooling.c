/* CPU max and average pooling over NCHW planes, forward and backward; threads take
 * whole (n, c) planes, so backward scatters never collide. Window rules are
 * torch's: max pooling skips padding (it is -inf), lets NaN win and keeps the
 * first maximum; the average divides by the window clipped to the padded input
 * (count_include_pad) or to the real input. */
#include "layers.h"

#include <math.h>

/* Window of output pixel (oh, ow) for max pooling, clipped to the input; the
 * start is moved onto the first in-bounds tap of the dilated kernel. */
typedef struct {
    int64_t h0, h1, w0, w1;
} window;

static window max_window(const kiln_pool2d_attrs *at, int64_t h, int64_t w, int64_t oh, int64_t ow) {
    window r;
    r.h0 = oh * at->stride[0] - at->pad[0];
    r.w0 = ow * at->stride[1] - at->pad[1];
    r.h1 = r.h0 + (at->kernel[0] - 1) * at->dilation[0] + 1;
    r.w1 = r.w0 + (at->kernel[1] - 1) * at->dilation[1] + 1;
    if (r.h1 > h) r.h1 = h;
    if (r.w1 > w) r.w1 = w;
    while (r.h0 < 0) r.h0 += at->dilation[0];
    while (r.w0 < 0) r.w0 += at->dilation[1];
    return r;
}

/* Average window clipped to the input, and torch's divisor for it. */
static window avg_window(const kiln_pool2d_attrs *at, int64_t h, int64_t w, int64_t oh, int64_t ow,
                         int64_t *divisor) {
    window r;
    r.h0 = oh * at->stride[0] - at->pad[0];
    r.w0 = ow * at->stride[1] - at->pad[1];
    r.h1 = r.h0 + at->kernel[0];
    r.w1 = r.w0 + at->kernel[1];
    if (r.h1 > h + at->pad[0]) r.h1 = h + at->pad[0];
    if (r.w1 > w + at->pad[1]) r.w1 = w + at->pad[1];
    int64_t padded = (r.h1 - r.h0) * (r.w1 - r.w0);
    if (r.h0 < 0) r.h0 = 0;
    if (r.w0 < 0) r.w0 = 0;
    if (r.h1 > h) r.h1 = h;
    if (r.w1 > w) r.w1 = w;
    *divisor = at->count_include_pad ? padded : (r.h1 - r.h0) * (r.w1 - r.w0);
    return r;
}

/* The pooling loops of one dtype T under the names given (max_pool_f32, ...). */
#define DEFINE_POOL(T, ARGMAX, ARGMAX2X2, MAX_POOL, AVG_POOL)                                       \
    /* Index in the plane of the window's maximum, -1 for an empty window. */                       \
    static int64_t ARGMAX(const T *x, int64_t w, window r, const kiln_pool2d_attrs *at, T *best) {  \
        int64_t idx = -1;                                                                           \
        T m = -INFINITY;                                                                            \
        if (r.h0 < r.h1 && r.w0 < r.w1) idx = r.h0 * w + r.w0;                                      \
        for (int64_t ih = r.h0; ih < r.h1; ih += at->dilation[0])                                   \
            for (int64_t iw = r.w0; iw < r.w1; iw += at->dilation[1]) {                             \
                T v = x[ih * w + iw];                                                               \
                if (v > m || isnan(v)) {                                                            \
                    m = v;                                                                          \
                    idx = ih * w + iw;                                                              \
                }                                                                                   \
            }                                                                                       \
        *best = m;                                                                                  \
        return idx;                                                                                 \
    }                                                                                               \
    /* The 2x2, stride-2, unpadded window (U-Net's down-sampling): the four taps in the             \
     * general loop's order with its rules (NaN wins, the first maximum is kept). */                \
    static inline int64_t ARGMAX2X2(const T *r0, int64_t w, T *best) {                              \
        const T *r1 = r0 + w;                                                                       \
        T m = r0[0];                                                                                \
        int64_t i = 0;                                                                              \
        if (r0[1] > m || isnan(r0[1])) m = r0[1], i = 1;                                            \
        if (r1[0] > m || isnan(r1[0])) m = r1[0], i = w;                                            \
        if (r1[1] > m || isnan(r1[1])) m = r1[1], i = w + 1;                                        \
        *best = m;                                                                                  \
        return i;                                                                                   \
    }                                                                                               \
    /* gy NULL: forward into y; else scatter gy into the zeroed dx (passed as y). */                \
    static void MAX_POOL(const T *x, T *y, const T *gy, int64_t planes, int64_t h, int64_t w,       \
                             int64_t ho, int64_t wo, const kiln_pool2d_attrs *at) {                 \
        const bool two = at->kernel[0] == 2 && at->kernel[1] == 2 && at->stride[0] == 2 &&          \
                         at->stride[1] == 2 && at->pad[0] == 0 && at->pad[1] == 0 &&                \
                         at->dilation[0] == 1 && at->dilation[1] == 1 && 2 * ho <= h && 2 * wo <= w; \
        _Pragma("omp parallel for schedule(static) if (planes > 1 && planes * ho * wo > 16384)")    \
        for (int64_t p = 0; p < planes; p++) {                                                      \
            const T *xp = x + p * h * w;                                                            \
            if (two) {                                                                              \
                for (int64_t oh = 0; oh < ho; oh++)                                                 \
                    for (int64_t ow = 0; ow < wo; ow++) {                                           \
                        T m;                                                                        \
                        int64_t at0 = 2 * oh * w + 2 * ow, o = (p * ho + oh) * wo + ow;             \
                        int64_t i = at0 + ARGMAX2X2(xp + at0, w, &m);                               \
                        if (!gy) y[o] = m;                                                          \
                        else y[p * h * w + i] += gy[o];                                             \
                    }                                                                               \
                continue;                                                                           \
            }                                                                                       \
            for (int64_t oh = 0; oh < ho; oh++)                                                     \
                for (int64_t ow = 0; ow < wo; ow++) {                                               \
                    T m;                                                                            \
                    int64_t i = ARGMAX(xp, w, max_window(at, h, w, oh, ow), at, &m);                \
                    if (!gy) y[(p * ho + oh) * wo + ow] = m;                                        \
                    else if (i >= 0) y[p * h * w + i] += gy[(p * ho + oh) * wo + ow];               \
                }                                                                                   \
        }                                                                                           \
    }                                                                                               \
    /* gy NULL: forward x -> y; else spread gy over the windows into the zeroed dx (as y). */       \
    static void AVG_POOL(const T *x, T *y, const T *gy, int64_t planes, int64_t h, int64_t w,       \
                             int64_t ho, int64_t wo, const kiln_pool2d_attrs *at) {                 \
        _Pragma("omp parallel for schedule(static) if (planes > 1 && planes * ho * wo > 16384)")    \
        for (int64_t p = 0; p < planes; p++) {                                                      \
            for (int64_t oh = 0; oh < ho; oh++)                                                     \
                for (int64_t ow = 0; ow < wo; ow++) {                                               \
                    int64_t div;                                                                    \
                    window r = avg_window(at, h, w, oh, ow, &div);                                  \
                    int64_t o = (p * ho + oh) * wo + ow;                                            \
                    if (r.h0 >= r.h1 || r.w0 >= r.w1) {                                             \
                        if (!gy) y[o] = 0;                                                          \
                        continue;                                                                   \
                    }                                                                               \
                    if (gy) {                                                                       \
                        T v = gy[o] / (T)div, *dp = y + p * h * w;                                  \
                        for (int64_t ih = r.h0; ih < r.h1; ih++)                                    \
                            for (int64_t iw = r.w0; iw < r.w1; iw++) dp[ih * w + iw] += v;          \
                    } else {                                                                        \
                        const T *xp = x + p * h * w;                                                \
                        double s = 0;                                                               \
                        for (int64_t ih = r.h0; ih < r.h1; ih++)                                    \
                            for (int64_t iw = r.w0; iw < r.w1; iw++) s += xp[ih * w + iw];          \
                        y[o] = (T)(s / (double)div);                                                \
                    }                                                                               \
                }                                                                                   \
        }                                                                                           \
    }

DEFINE_POOL(float, argmax_f32, argmax2x2_f32, max_pool_f32, avg_pool_f32)
DEFINE_POOL(double, argmax_f64, argmax2x2_f64, max_pool_f64, avg_pool_f64)

typedef enum { MAX_POOL, AVG_POOL } pool_kind;

/* x is the forward input (NCHW), gy NULL for the forward pass. */
static kiln_status run_pool(const kiln_op_call *call, pool_kind kind, kiln_tensor *xin, kiln_tensor *gyin) {
    /* the average's backward needs only x's shape */
    kiln_tensor *x = kind == AVG_POOL && gyin ? xin : kiln_cpu_dense(xin);
    kiln_tensor *gy = gyin && x ? kiln_cpu_dense(gyin) : NULL;
    if (!x || (gyin && !gy)) {
        if (x && x != xin) kiln_tensor_free(x);
        return kiln_last_status();
    }
    const kiln_pool2d_attrs *at = call->attrs;
    const kiln_tensor *o = gy ? gy : call->out; /* the pooled shape */
    int64_t planes = xin->shape[0] * xin->shape[1], h = xin->shape[2], w = xin->shape[3];
    int64_t ho = o->shape[2], wo = o->shape[3];
    void *px = kiln__ptr(x), *py = kiln__ptr(call->out), *pg = gy ? kiln__ptr(gy) : NULL;
    if (gy) memset(py, 0, (size_t)kiln_tensor_numel(call->out) * kiln_dtype_size(call->out->dtype));
    if (call->out->dtype == KILN_F32) {
        if (kind == MAX_POOL) max_pool_f32(px, py, pg, planes, h, w, ho, wo, at);
        else avg_pool_f32(px, py, pg, planes, h, w, ho, wo, at);
    } else {
        if (kind == MAX_POOL) max_pool_f64(px, py, pg, planes, h, w, ho, wo, at);
        else avg_pool_f64(px, py, pg, planes, h, w, ho, wo, at);
    }
    if (gy && gy != gyin) kiln_tensor_free(gy);
    if (x != xin) kiln_tensor_free(x);
    return KILN_STATUS_OK;
}

kiln_status kiln_cpu_max_pool2d(const kiln_op_call *call) { return run_pool(call, MAX_POOL, call->in[0], NULL); }
kiln_status kiln_cpu_max_pool2d_backward(const kiln_op_call *call) { return run_pool(call, MAX_POOL, call->in[1], call->in[0]); }
kiln_status kiln_cpu_avg_pool2d(const kiln_op_call *call) { return run_pool(call, AVG_POOL, call->in[0], NULL); }
kiln_status kiln_cpu_avg_pool2d_backward(const kiln_op_call *call) { return run_pool(call, AVG_POOL, call->in[1], call->in[0]); }

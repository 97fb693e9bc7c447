/* CPU convolution kernels: im2col + BLAS GEMM, one sample at a time (the BLAS, OpenMP
 * build, threads each product; im2col/col2im split channels over OpenMP threads). A 1x1,
 * stride-1, unpadded conv skips the column buffer: the sample itself is the matrix.
 * conv_transpose2d is the input-gradient of the conv2d with the same attrs. f32 passes try
 * oneDNN first (conv2d_onednn.c); this path runs for f64 and whatever oneDNN declines. The
 * geometry is kernels/conv2d_geometry.h's, as on CUDA. */
#include "layers.h"
#include "conv2d_onednn.h"
#include "../conv2d_geometry.h"
#include "../elementwise_math.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

kiln_status kiln__copy_into(kiln_tensor *dst, kiln_tensor *src);

kiln_tensor *kiln_cpu_dense(kiln_tensor *t) {
    if (kiln_tensor_is_contiguous(t)) return t;
    kiln_tensor *c = kiln__new_like(t);
    if (c && kiln__copy_into(c, t) != KILN_STATUS_OK) {
        kiln_tensor_free(c);
        c = NULL;
    }
    return c;
}

typedef kiln_conv_geometry geom;

/* The geometry of a call, from its tensors in the forward roles. */
static geom plan(const kiln_tensor *in, const kiln_tensor *wt, const kiln_tensor *out, const kiln_conv2d_attrs *at) {
    return kiln_conv_geometry_plan(in->shape, wt->shape, out->shape, at);
}

static inline bool in_range(int64_t i, int64_t n) { return (uint64_t)i < (uint64_t)n; }

static void gemm_float(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                       const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                (int)k, 1.0f, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

static void gemm_double(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const double *a, int64_t lda,
                        const double *b, int64_t ldb, double beta, double *c, int64_t ldc) {
    cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)m, (int)n,
                (int)k, 1.0, a, (int)lda, b, (int)ldb, beta, c, (int)ldc);
}

/* Output columns [lo, hi) of a row whose taps read input columns inside the image, for
 * kernel column kj: iw = ow*sw + off with off = kj*dw - pw. */
static inline void valid_cols(const geom *g, int64_t kj, int64_t *lo, int64_t *hi, int64_t *off) {
    int64_t o = kj * g->dw - g->pw;
    int64_t l = o < 0 ? (-o + g->sw - 1) / g->sw : 0;
    int64_t h = g->w - 1 - o < 0 ? 0 : (g->w - 1 - o) / g->sw + 1;
    if (h > g->wo) h = g->wo;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
    *off = o;
}

/* The bodies below are written once for both dtypes; each function that runs one is
 * written out per dtype after it (T its element type, and the functions it calls). */

/* Column row (c, ki, kj) holds, for every output pixel, the input pixel that kernel tap
 * (ki, kj) of channel c sees there (0 in the padding). Each output row is zeros, one
 * contiguous copy (stride 1) and zeros, not a bounds check per pixel. */
#define IM2COL_BODY(T)                                                                             \
    const int64_t L = g->L, hw = g->h * g->w;                                                      \
    _Pragma("omp parallel for schedule(static) if (g->cin > 1 && g->cin * g->kh * g->kw * L > 65536)") \
    for (int64_t c = 0; c < g->cin; c++) {                                                         \
        const T *src = x + c * hw;                                                                 \
        for (int64_t ki = 0; ki < g->kh; ki++)                                                     \
            for (int64_t kj = 0; kj < g->kw; kj++) {                                               \
                T *dst = col + ((c * g->kh + ki) * g->kw + kj) * L;                                \
                int64_t lo, hi, off;                                                               \
                valid_cols(g, kj, &lo, &hi, &off);                                                 \
                for (int64_t oh = 0; oh < g->ho; oh++, dst += g->wo) {                             \
                    int64_t ih = oh * g->sh - g->ph + ki * g->dh;                                  \
                    if (!in_range(ih, g->h)) {                                                     \
                        memset(dst, 0, (size_t)g->wo * sizeof(T));                                 \
                        continue;                                                                  \
                    }                                                                              \
                    const T *row = src + ih * g->w + off;                                          \
                    for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0;                               \
                    if (g->sw == 1) memcpy(dst + lo, row + lo, (size_t)(hi - lo) * sizeof(T));     \
                    else                                                                           \
                        for (int64_t ow = lo; ow < hi; ow++) dst[ow] = row[ow * g->sw];            \
                    for (int64_t ow = hi; ow < g->wo; ow++) dst[ow] = 0;                           \
                }                                                                                  \
            }                                                                                      \
    }
static void im2col_float(const float *x, float *col, const geom *g) { IM2COL_BODY(float) }
static void im2col_double(const double *x, double *col, const geom *g) { IM2COL_BODY(double) }

/* The adjoint: adds every column entry back onto its input pixel. Threads own
 * channels, so no two write one pixel. */
#define COL2IM_BODY(T)                                                                             \
    const int64_t L = g->L, hw = g->h * g->w;                                                      \
    _Pragma("omp parallel for schedule(static) if (g->cin > 1 && g->cin * g->kh * g->kw * L > 65536)") \
    for (int64_t c = 0; c < g->cin; c++) {                                                         \
        T *dst = x + c * hw;                                                                       \
        memset(dst, 0, (size_t)hw * sizeof(T));                                                    \
        for (int64_t ki = 0; ki < g->kh; ki++)                                                     \
            for (int64_t kj = 0; kj < g->kw; kj++) {                                               \
                const T *src = col + ((c * g->kh + ki) * g->kw + kj) * L;                          \
                int64_t lo, hi, off;                                                               \
                valid_cols(g, kj, &lo, &hi, &off);                                                 \
                for (int64_t oh = 0; oh < g->ho; oh++, src += g->wo) {                             \
                    int64_t ih = oh * g->sh - g->ph + ki * g->dh;                                  \
                    if (!in_range(ih, g->h)) continue;                                             \
                    T *row = dst + ih * g->w + off;                                                \
                    if (g->sw == 1)                                                                \
                        for (int64_t ow = lo; ow < hi; ow++) row[ow] += src[ow];                   \
                    else                                                                           \
                        for (int64_t ow = lo; ow < hi; ow++) row[ow * g->sw] += src[ow];           \
                }                                                                                  \
            }                                                                                      \
    }
static void col2im_float(const float *col, float *x, const geom *g) { COL2IM_BODY(float) }
static void col2im_double(const double *col, double *x, const geom *g) { COL2IM_BODY(double) }

#define ADD_BIAS_BODY(T)                                                                           \
    _Pragma("omp parallel for schedule(static) if (n * c * l > 65536)")                            \
    for (int64_t p = 0; p < n * c; p++) {                                                          \
        T v = b[p % c], *row = y + p * l;                                                          \
        for (int64_t i = 0; i < l; i++) row[i] += v;                                               \
    }
static void add_bias_float(float *y, const float *b, int64_t n, int64_t c, int64_t l) { ADD_BIAS_BODY(float) }
static void add_bias_double(double *y, const double *b, int64_t n, int64_t c, int64_t l) { ADD_BIAS_BODY(double) }

/* y_n[group] = W[group] · col_n[group] */
#define CONV_FORWARD_BODY(T, IM2COL, GEMM)                                                         \
    const int64_t cout_g = g->cout_g, K = g->K, L = g->L;                                          \
    for (int64_t n = 0; n < g->n; n++) {                                                           \
        const T *xn = x + n * g->cin * g->h * g->w, *cn = xn;                                      \
        T *yn = y + n * g->cout * L;                                                               \
        if (!g->pointwise) {                                                                       \
            IM2COL(xn, col, g);                                                                    \
            cn = col;                                                                              \
        }                                                                                          \
        for (int64_t gi = 0; gi < g->groups; gi++)                                                 \
            GEMM(false, false, cout_g, L, K, w + gi * cout_g * K, K, cn + gi * K * L, L, 0,        \
                 yn + gi * cout_g * L, L);                                                         \
    }
static void conv_forward_float(const float *x, const float *w, float *y, const geom *g, float *col) {
    CONV_FORWARD_BODY(float, im2col_float, gemm_float)
}
static void conv_forward_double(const double *x, const double *w, double *y, const geom *g, double *col) {
    CONV_FORWARD_BODY(double, im2col_double, gemm_double)
}

/* dx_n = col2im(Wᵀ · dy_n), per group */
#define CONV_BACKWARD_INPUT_BODY(T, COL2IM, GEMM)                                                  \
    const int64_t cout_g = g->cout_g, K = g->K, L = g->L;                                          \
    const bool direct = g->pointwise;                                                              \
    for (int64_t n = 0; n < g->n; n++) {                                                           \
        const T *gn = gy + n * g->cout * L;                                                        \
        T *dn = dx + n * g->cin * g->h * g->w, *cn = direct ? dn : col;                            \
        for (int64_t gi = 0; gi < g->groups; gi++)                                                 \
            GEMM(true, false, K, L, cout_g, w + gi * cout_g * K, K, gn + gi * cout_g * L, L, 0,    \
                 cn + gi * K * L, L);                                                              \
        if (!direct) COL2IM(col, dn, g);                                                           \
    }
static void conv_backward_input_float(const float *gy, const float *w, float *dx, const geom *g, float *col) {
    CONV_BACKWARD_INPUT_BODY(float, col2im_float, gemm_float)
}
static void conv_backward_input_double(const double *gy, const double *w, double *dx, const geom *g, double *col) {
    CONV_BACKWARD_INPUT_BODY(double, col2im_double, gemm_double)
}

/* dW[group] = Σ_n dy_n[group] · col_n[group]ᵀ; the first sample's product overwrites */
#define CONV_BACKWARD_WEIGHT_BODY(T, IM2COL, GEMM)                                                 \
    const int64_t cout_g = g->cout_g, K = g->K, L = g->L;                                          \
    if (g->n == 0 || L == 0)                                                                       \
        for (int64_t i = 0; i < g->cout * K; i++) dw[i] = 0;                                       \
    for (int64_t n = 0; n < g->n; n++) {                                                           \
        const T *xn = x + n * g->cin * g->h * g->w, *cn = xn;                                      \
        if (!g->pointwise) {                                                                       \
            IM2COL(xn, col, g);                                                                    \
            cn = col;                                                                              \
        }                                                                                          \
        for (int64_t gi = 0; gi < g->groups; gi++)                                                 \
            GEMM(false, true, cout_g, K, L, gy + (n * g->cout + gi * cout_g) * L, L, cn + gi * K * L, L, \
                 n == 0 ? 0 : 1, dw + gi * cout_g * K, K);                                         \
    }
static void conv_backward_weight_float(const float *gy, const float *x, float *dw, const geom *g, float *col) {
    CONV_BACKWARD_WEIGHT_BODY(float, im2col_float, gemm_float)
}
static void conv_backward_weight_double(const double *gy, const double *x, double *dw, const geom *g,
                                        double *col) {
    CONV_BACKWARD_WEIGHT_BODY(double, im2col_double, gemm_double)
}

/* The column buffer for one sample, from the device pool (cached, so a training step
 * makes no backing allocation); NULL when none is needed (pointwise, or nothing to
 * compute). Unfolding several samples into one matrix for one larger GEMM was measured
 * slower on the U-Net-16 step (docs/benchmarks.md): the bigger buffer leaves the caches. */
static kiln_status col_buffer(const char *op, const geom *g, kiln_dtype dt, kiln_device dev, kiln_tensor **col) {
    *col = NULL;
    int64_t n = g->col;
    if (g->pointwise || n == 0 || g->n == 0) return KILN_STATUS_OK;
    if (!(*col = kiln__new(1, &n, dt, dev)))
        return kiln__error(KILN_STATUS_OOM, "%s: out of host memory for a %lld-value im2col buffer (a smaller "
                           "image needs less)", op, (long long)n);
    return KILN_STATUS_OK;
}

/* kiln_relu's formula (kernels/elementwise_math.h): NaN stays NaN, as torch's relu */
#define RELU_BODY(UNARY)                                                                           \
    _Pragma("omp parallel for schedule(static) if (n > 65536)")                                    \
    for (int64_t i = 0; i < n; i++) y[i] = UNARY(KILN_UNARY_RELU, y[i], 0, 0);
static void relu_float(float *y, int64_t n) { RELU_BODY(kiln_unary_f32) }
static void relu_double(double *y, int64_t n) { RELU_BODY(kiln_unary_f64) }

/* Packs the inputs, runs one pass in the output's dtype, adds the bias (input 2 if
 * given, per channel of the output), then ReLU when relu. g is the forward view of
 * the convolution. */
static kiln_status run_conv(const kiln_op_call *call, kiln_conv_pass pass, const geom *g, bool relu) {
    kiln_status st;
    if (kiln_cpu_conv2d_onednn(call, pass, g, relu, &st)) return st;
    kiln_tensor *a = kiln_cpu_dense(call->in[0]);
    kiln_tensor *b = a ? kiln_cpu_dense(call->in[1]) : NULL;
    kiln_tensor *bias = b && call->nin > 2 ? kiln_cpu_dense(call->in[2]) : NULL;
    kiln_tensor *colt = NULL;
    kiln_dtype dt = call->out->dtype;
    if (!a || !b || (call->nin > 2 && !bias)) st = kiln_last_status(); /* a packing copy failed */
    else st = col_buffer(call->op->name, g, dt, call->out->device, &colt);
    if (st == KILN_STATUS_OK) {
        void *pa = kiln__ptr(a), *pb = kiln__ptr(b), *po = kiln__ptr(call->out);
        void *col = colt ? kiln__ptr(colt) : NULL;
        int64_t oc = call->out->shape[1], ol = call->out->shape[2] * call->out->shape[3];
        if (dt == KILN_F32) {
            if (pass == KILN_CONV_FORWARD) conv_forward_float(pa, pb, po, g, col);
            else if (pass == KILN_CONV_BACKWARD_INPUT) conv_backward_input_float(pa, pb, po, g, col);
            else conv_backward_weight_float(pa, pb, po, g, col);
            if (bias) add_bias_float(po, (void *)kiln__ptr(bias), call->out->shape[0], oc, ol);
            if (relu) relu_float(po, kiln_tensor_numel(call->out));
        } else {
            if (pass == KILN_CONV_FORWARD) conv_forward_double(pa, pb, po, g, col);
            else if (pass == KILN_CONV_BACKWARD_INPUT) conv_backward_input_double(pa, pb, po, g, col);
            else conv_backward_weight_double(pa, pb, po, g, col);
            if (bias) add_bias_double(po, (void *)kiln__ptr(bias), call->out->shape[0], oc, ol);
            if (relu) relu_double(po, kiln_tensor_numel(call->out));
        }
    }
    if (colt) kiln_tensor_free(colt);
    if (bias && bias != call->in[2]) kiln_tensor_free(bias);
    if (b && b != call->in[1]) kiln_tensor_free(b);
    if (a && a != call->in[0]) kiln_tensor_free(a);
    return st;
}

kiln_status kiln_cpu_conv2d(const kiln_op_call *call) {
    geom g = plan(call->in[0], call->in[1], call->out, call->attrs);
    return run_conv(call, KILN_CONV_FORWARD, &g, false);
}

kiln_status kiln_cpu_conv2d_relu(const kiln_op_call *call) {
    geom g = plan(call->in[0], call->in[1], call->out, call->attrs);
    return run_conv(call, KILN_CONV_FORWARD, &g, true);
}

kiln_status kiln_cpu_conv2d_backward_input(const kiln_op_call *call) {
    /* in: gy (n, cout, ho, wo), w; out: dx */
    geom g = plan(call->out, call->in[1], call->in[0], call->attrs);
    return run_conv(call, KILN_CONV_BACKWARD_INPUT, &g, false);
}

kiln_status kiln_cpu_conv2d_backward_weight(const kiln_op_call *call) {
    /* in: gy, x; out: dw (cout, cin/groups, kh, kw) */
    geom g = plan(call->in[1], call->out, call->in[0], call->attrs);
    return run_conv(call, KILN_CONV_BACKWARD_WEIGHT, &g, false);
}

kiln_status kiln_cpu_conv_transpose2d(const kiln_op_call *call) {
    /* x (n, cin_t, h, w) is the conv's output gradient, y its input gradient */
    geom g = plan(call->out, call->in[1], call->in[0], call->attrs);
    return run_conv(call, KILN_CONV_BACKWARD_INPUT, &g, false);
}

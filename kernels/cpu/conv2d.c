/* CPU convolution kernels: im2col + BLAS GEMM, one sample at a time (the BLAS, OpenMP
 * build, threads each product; im2col/col2im split channels over OpenMP threads). A 1x1,
 * stride-1, unpadded conv skips the column buffer: the sample itself is the matrix.
 * conv_transpose2d is the input-gradient of the conv2d with the same attrs. f32 passes try
 * oneDNN first (conv2d_onednn.c); this path runs for f64 and whatever oneDNN declines. */
#include "layers.h"
#include "conv2d_onednn.h"
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

typedef kiln_conv_geom geom;

static geom make_geom(const kiln_tensor *in, const kiln_tensor *wt, const kiln_tensor *out,
                      const kiln_conv2d_attrs *at) {
    geom g = {in->shape[0], in->shape[1], in->shape[2], in->shape[3], out->shape[1], out->shape[2],
              out->shape[3], wt->shape[2], wt->shape[3], at->stride[0], at->stride[1], at->pad[0], at->pad[1],
              at->dilation[0], at->dilation[1], at->groups};
    return g;
}

/* The input sample is already the column matrix (cin rows of h*w). */
static bool pointwise(const geom *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0 && g->ho == g->h &&
           g->wo == g->w;
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

/* Column row (c, ki, kj) holds, for every output pixel, the input pixel that kernel tap
 * (ki, kj) of channel c sees there (0 in the padding). Each output row is zeros, one
 * contiguous copy (stride 1) and zeros, not a bounds check per pixel. */
#define DEFINE_IM2COL(T)                                                                           \
    static void im2col_##T(const T *x, T *col, const geom *g) {                                    \
        const int64_t L = g->ho * g->wo, hw = g->h * g->w;                                         \
        _Pragma("omp parallel for schedule(static) if (g->cin > 1 && g->cin * g->kh * g->kw * L > 65536)") \
        for (int64_t c = 0; c < g->cin; c++) {                                                     \
            const T *src = x + c * hw;                                                             \
            for (int64_t ki = 0; ki < g->kh; ki++)                                                 \
                for (int64_t kj = 0; kj < g->kw; kj++) {                                           \
                    T *dst = col + ((c * g->kh + ki) * g->kw + kj) * L;                            \
                    int64_t lo, hi, off;                                                           \
                    valid_cols(g, kj, &lo, &hi, &off);                                             \
                    for (int64_t oh = 0; oh < g->ho; oh++, dst += g->wo) {                         \
                        int64_t ih = oh * g->sh - g->ph + ki * g->dh;                              \
                        if (!in_range(ih, g->h)) {                                                 \
                            memset(dst, 0, (size_t)g->wo * sizeof(T));                             \
                            continue;                                                              \
                        }                                                                          \
                        const T *row = src + ih * g->w + off;                                      \
                        for (int64_t ow = 0; ow < lo; ow++) dst[ow] = 0;                           \
                        if (g->sw == 1) memcpy(dst + lo, row + lo, (size_t)(hi - lo) * sizeof(T)); \
                        else                                                                       \
                            for (int64_t ow = lo; ow < hi; ow++) dst[ow] = row[ow * g->sw];        \
                        for (int64_t ow = hi; ow < g->wo; ow++) dst[ow] = 0;                       \
                    }                                                                              \
                }                                                                                  \
        }                                                                                          \
    }                                                                                              \
    /* The adjoint: adds every column entry back onto its input pixel. Threads own          \
     * channels, so no two write one pixel. */                                                     \
    static void col2im_##T(const T *col, T *x, const geom *g) {                                    \
        const int64_t L = g->ho * g->wo, hw = g->h * g->w;                                         \
        _Pragma("omp parallel for schedule(static) if (g->cin > 1 && g->cin * g->kh * g->kw * L > 65536)") \
        for (int64_t c = 0; c < g->cin; c++) {                                                     \
            T *dst = x + c * hw;                                                                   \
            memset(dst, 0, (size_t)hw * sizeof(T));                                                \
            for (int64_t ki = 0; ki < g->kh; ki++)                                                 \
                for (int64_t kj = 0; kj < g->kw; kj++) {                                           \
                    const T *src = col + ((c * g->kh + ki) * g->kw + kj) * L;                      \
                    int64_t lo, hi, off;                                                           \
                    valid_cols(g, kj, &lo, &hi, &off);                                             \
                    for (int64_t oh = 0; oh < g->ho; oh++, src += g->wo) {                         \
                        int64_t ih = oh * g->sh - g->ph + ki * g->dh;                              \
                        if (!in_range(ih, g->h)) continue;                                         \
                        T *row = dst + ih * g->w + off;                                            \
                        if (g->sw == 1)                                                            \
                            for (int64_t ow = lo; ow < hi; ow++) row[ow] += src[ow];               \
                        else                                                                       \
                            for (int64_t ow = lo; ow < hi; ow++) row[ow * g->sw] += src[ow];       \
                    }                                                                              \
                }                                                                                  \
        }                                                                                          \
    }                                                                                              \
    static void add_bias_##T(T *y, const T *b, int64_t n, int64_t c, int64_t l) {                  \
        _Pragma("omp parallel for schedule(static) if (n * c * l > 65536)")                        \
        for (int64_t p = 0; p < n * c; p++) {                                                      \
            T v = b[p % c], *row = y + p * l;                                                      \
            for (int64_t i = 0; i < l; i++) row[i] += v;                                           \
        }                                                                                          \
    }                                                                                              \
    /* y_n[group] = W[group] · col_n[group] */                                                     \
    static void conv_forward_##T(const T *x, const T *w, T *y, const geom *g, T *col) {           \
        const int64_t cin_g = g->cin / g->groups, cout_g = g->cout / g->groups;                   \
        const int64_t K = cin_g * g->kh * g->kw, L = g->ho * g->wo;                                \
        for (int64_t n = 0; n < g->n; n++) {                                                       \
            const T *xn = x + n * g->cin * g->h * g->w, *cn = xn;                                  \
            T *yn = y + n * g->cout * L;                                                           \
            if (!pointwise(g)) {                                                                   \
                im2col_##T(xn, col, g);                                                            \
                cn = col;                                                                          \
            }                                                                                      \
            for (int64_t gi = 0; gi < g->groups; gi++)                                             \
                gemm_##T(false, false, cout_g, L, K, w + gi * cout_g * K, K, cn + gi * K * L, L, 0, \
                         yn + gi * cout_g * L, L);                                                 \
        }                                                                                          \
    }                                                                                              \
    /* dx_n = col2im(Wᵀ · dy_n), per group */                                                      \
    static void conv_backward_input_##T(const T *gy, const T *w, T *dx, const geom *g, T *col) {  \
        const int64_t cin_g = g->cin / g->groups, cout_g = g->cout / g->groups;                   \
        const int64_t K = cin_g * g->kh * g->kw, L = g->ho * g->wo;                                \
        const bool direct = pointwise(g);                                                          \
        for (int64_t n = 0; n < g->n; n++) {                                                       \
            const T *gn = gy + n * g->cout * L;                                                    \
            T *dn = dx + n * g->cin * g->h * g->w, *cn = direct ? dn : col;                        \
            for (int64_t gi = 0; gi < g->groups; gi++)                                             \
                gemm_##T(true, false, K, L, cout_g, w + gi * cout_g * K, K, gn + gi * cout_g * L, L, 0, \
                         cn + gi * K * L, L);                                                      \
            if (!direct) col2im_##T(col, dn, g);                                                   \
        }                                                                                          \
    }                                                                                              \
    /* dW[group] = Σ_n dy_n[group] · col_n[group]ᵀ; the first sample's product overwrites */     \
    static void conv_backward_weight_##T(const T *gy, const T *x, T *dw, const geom *g, T *col) { \
        const int64_t cin_g = g->cin / g->groups, cout_g = g->cout / g->groups;                   \
        const int64_t K = cin_g * g->kh * g->kw, L = g->ho * g->wo;                                \
        if (g->n == 0 || L == 0)                                                                   \
            for (int64_t i = 0; i < g->cout * K; i++) dw[i] = 0;                                   \
        for (int64_t n = 0; n < g->n; n++) {                                                       \
            const T *xn = x + n * g->cin * g->h * g->w, *cn = xn;                                  \
            if (!pointwise(g)) {                                                                   \
                im2col_##T(xn, col, g);                                                            \
                cn = col;                                                                          \
            }                                                                                      \
            for (int64_t gi = 0; gi < g->groups; gi++)                                             \
                gemm_##T(false, true, cout_g, K, L, gy + (n * g->cout + gi * cout_g) * L, L,       \
                         cn + gi * K * L, L, n == 0 ? 0 : 1, dw + gi * cout_g * K, K);             \
        }                                                                                          \
    }

DEFINE_IM2COL(float)
DEFINE_IM2COL(double)

/* The column buffer for one sample, from the device pool (cached, so a training step
 * makes no backing allocation); NULL when none is needed (pointwise, or nothing to
 * compute). Unfolding several samples into one matrix for one larger GEMM was measured
 * slower on the U-Net-16 step (docs/benchmarks.md): the bigger buffer leaves the caches. */
static kiln_status col_buffer(const char *op, const geom *g, kiln_dtype dt, kiln_device dev, kiln_tensor **col) {
    *col = NULL;
    int64_t n = g->cin * g->kh * g->kw * g->ho * g->wo;
    if (pointwise(g) || n == 0 || g->n == 0) return KILN_STATUS_OK;
    if (!(*col = kiln__new(1, &n, dt, dev)))
        return kiln__error(KILN_STATUS_OOM, "%s: out of host memory for a %lld-value im2col buffer (a smaller "
                           "image needs less)", op, (long long)n);
    return KILN_STATUS_OK;
}

typedef kiln_conv_pass conv_pass;
#define FORWARD KILN_CONV_FORWARD
#define BACKWARD_INPUT KILN_CONV_BACKWARD_DATA
#define BACKWARD_WEIGHT KILN_CONV_BACKWARD_WEIGHTS

/* kiln_relu's formula (kernels/elementwise_math.h): NaN stays NaN, as torch's relu */
#define DEFINE_RELU(T, SFX)                                                                        \
    static void relu_##T(T *y, int64_t n) {                                                        \
        _Pragma("omp parallel for schedule(static) if (n > 65536)")                                \
        for (int64_t i = 0; i < n; i++) y[i] = kiln_unary_##SFX(KILN_UNARY_RELU, y[i], 0, 0);      \
    }
DEFINE_RELU(float, f32)
DEFINE_RELU(double, f64)

/* Packs the inputs, runs one pass in the output's dtype, adds the bias (input 2 if
 * given, per channel of the output), then ReLU when relu. g is the forward view of
 * the convolution. */
static kiln_status run_conv(const kiln_op_call *call, conv_pass pass, const geom *g, bool relu) {
    kiln_status st;
    if (kiln_cpu_conv_onednn(call, pass, g, relu, &st)) return st;
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
            if (pass == FORWARD) conv_forward_float(pa, pb, po, g, col);
            else if (pass == BACKWARD_INPUT) conv_backward_input_float(pa, pb, po, g, col);
            else conv_backward_weight_float(pa, pb, po, g, col);
            if (bias) add_bias_float(po, (void *)kiln__ptr(bias), call->out->shape[0], oc, ol);
            if (relu) relu_float(po, kiln_tensor_numel(call->out));
        } else {
            if (pass == FORWARD) conv_forward_double(pa, pb, po, g, col);
            else if (pass == BACKWARD_INPUT) conv_backward_input_double(pa, pb, po, g, col);
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

KILN_CPU_KERNEL(conv2d) {
    geom g = make_geom(call->in[0], call->in[1], call->out, call->attrs);
    return run_conv(call, FORWARD, &g, false);
}

kiln_status kiln_cpu_conv2d_relu(const kiln_op_call *call) {
    geom g = make_geom(call->in[0], call->in[1], call->out, call->attrs);
    return run_conv(call, FORWARD, &g, true);
}

KILN_CPU_KERNEL(conv2d_backward_input) {
    /* in: gy (n, cout, ho, wo), w; out: dx */
    geom g = make_geom(call->out, call->in[1], call->in[0], call->attrs);
    return run_conv(call, BACKWARD_INPUT, &g, false);
}

KILN_CPU_KERNEL(conv2d_backward_weight) {
    /* in: gy, x; out: dw (cout, cin/groups, kh, kw) */
    geom g = make_geom(call->in[1], call->out, call->in[0], call->attrs);
    return run_conv(call, BACKWARD_WEIGHT, &g, false);
}

KILN_CPU_KERNEL(conv_transpose2d) {
    /* x (n, cin_t, h, w) is the conv's output gradient, y its input gradient */
    geom g = make_geom(call->out, call->in[1], call->in[0], call->attrs);
    return run_conv(call, BACKWARD_INPUT, &g, false);
}

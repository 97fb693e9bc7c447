/* CPU convolution kernels: im2col + BLAS GEMM, one sample at a time (BLAS threads
 * each product; im2col/col2im split channels over OpenMP threads). A 1x1, stride-1,
 * unpadded conv skips the column buffer: the sample itself is the matrix.
 * conv_transpose2d is the input-gradient of the conv2d with the same attrs. */
#include "layers.h"

#include <cblas.h>
#include <stdlib.h>

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

/* One conv2d seen from its forward side: input (n, cin, h, w), weight
 * (cout, cin/groups, kh, kw), output (n, cout, ho, wo). */
typedef struct {
    int64_t n, cin, h, w, cout, ho, wo, kh, kw;
    int64_t sh, sw, ph, pw, dh, dw, groups;
} geom;

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

/* Column row (c, ki, kj) holds, for every output pixel, the input pixel that kernel
 * tap (ki, kj) of channel c sees there (0 in the padding). */
#define DEFINE_IM2COL(T)                                                                           \
    static void im2col_##T(const T *x, T *col, const geom *g) {                                    \
        const int64_t L = g->ho * g->wo;                                                           \
        _Pragma("omp parallel for schedule(static) if (g->cin > 1 && g->cin * g->kh * g->kw * L > 65536)") \
        for (int64_t c = 0; c < g->cin; c++) {                                                     \
            const T *src = x + c * g->h * g->w;                                                    \
            for (int64_t ki = 0; ki < g->kh; ki++)                                                 \
                for (int64_t kj = 0; kj < g->kw; kj++) {                                           \
                    T *dst = col + ((c * g->kh + ki) * g->kw + kj) * L;                            \
                    for (int64_t oh = 0; oh < g->ho; oh++, dst += g->wo) {                         \
                        int64_t ih = oh * g->sh - g->ph + ki * g->dh;                              \
                        if (!in_range(ih, g->h)) {                                                 \
                            for (int64_t ow = 0; ow < g->wo; ow++) dst[ow] = 0;                    \
                            continue;                                                              \
                        }                                                                          \
                        const T *row = src + ih * g->w;                                            \
                        for (int64_t ow = 0; ow < g->wo; ow++) {                                   \
                            int64_t iw = ow * g->sw - g->pw + kj * g->dw;                          \
                            dst[ow] = in_range(iw, g->w) ? row[iw] : (T)0;                         \
                        }                                                                          \
                    }                                                                              \
                }                                                                                  \
        }                                                                                          \
    }                                                                                              \
    /* The adjoint: adds every column entry back onto its input pixel. Threads own channels, \
     * so no two write one pixel. */                                                              \
    static void col2im_##T(const T *col, T *x, const geom *g) {                                    \
        const int64_t L = g->ho * g->wo;                                                           \
        _Pragma("omp parallel for schedule(static) if (g->cin > 1 && g->cin * g->kh * g->kw * L > 65536)") \
        for (int64_t c = 0; c < g->cin; c++) {                                                     \
            T *dst = x + c * g->h * g->w;                                                          \
            for (int64_t i = 0; i < g->h * g->w; i++) dst[i] = 0;                                  \
            for (int64_t ki = 0; ki < g->kh; ki++)                                                 \
                for (int64_t kj = 0; kj < g->kw; kj++) {                                           \
                    const T *src = col + ((c * g->kh + ki) * g->kw + kj) * L;                      \
                    for (int64_t oh = 0; oh < g->ho; oh++, src += g->wo) {                         \
                        int64_t ih = oh * g->sh - g->ph + ki * g->dh;                              \
                        if (!in_range(ih, g->h)) continue;                                         \
                        T *row = dst + ih * g->w;                                                  \
                        for (int64_t ow = 0; ow < g->wo; ow++) {                                   \
                            int64_t iw = ow * g->sw - g->pw + kj * g->dw;                          \
                            if (in_range(iw, g->w)) row[iw] += src[ow];                            \
                        }                                                                          \
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
    /* dW[group] = Σ_n dy_n[group] · col_n[group]ᵀ */                                              \
    static void conv_backward_weight_##T(const T *gy, const T *x, T *dw, const geom *g, T *col) { \
        const int64_t cin_g = g->cin / g->groups, cout_g = g->cout / g->groups;                   \
        const int64_t K = cin_g * g->kh * g->kw, L = g->ho * g->wo;                                \
        for (int64_t i = 0; i < g->cout * K; i++) dw[i] = 0;                                       \
        for (int64_t n = 0; n < g->n; n++) {                                                       \
            const T *xn = x + n * g->cin * g->h * g->w, *cn = xn;                                  \
            if (!pointwise(g)) {                                                                   \
                im2col_##T(xn, col, g);                                                            \
                cn = col;                                                                          \
            }                                                                                      \
            for (int64_t gi = 0; gi < g->groups; gi++)                                             \
                gemm_##T(false, true, cout_g, K, L, gy + (n * g->cout + gi * cout_g) * L, L,       \
                         cn + gi * K * L, L, 1, dw + gi * cout_g * K, K);                          \
        }                                                                                          \
    }

DEFINE_IM2COL(float)
DEFINE_IM2COL(double)

/* The column buffer for one sample, or NULL when none is needed (pointwise, or
 * nothing to compute). */
static kiln_status col_buffer(const char *op, const geom *g, size_t elsize, void **col) {
    *col = NULL;
    size_t n = (size_t)(g->cin * g->kh * g->kw) * (size_t)(g->ho * g->wo);
    if (pointwise(g) || n == 0 || g->n == 0) return KILN_STATUS_OK;
    *col = malloc(n * elsize);
    if (!*col)
        return kiln__error(KILN_STATUS_OOM, "%s: out of host memory for a %zu-byte im2col buffer (a smaller batch "
                           "or image needs less)", op, n * elsize);
    return KILN_STATUS_OK;
}

typedef enum { FORWARD, BACKWARD_INPUT, BACKWARD_WEIGHT } conv_pass;

/* Packs the inputs, runs one pass in the output's dtype, adds the bias (input 2 if
 * given, per channel of the output). g is the forward view of the convolution. */
static kiln_status run_conv(const kiln_op_call *call, conv_pass pass, const geom *g) {
    kiln_tensor *a = kiln_cpu_dense(call->in[0]);
    kiln_tensor *b = a ? kiln_cpu_dense(call->in[1]) : NULL;
    kiln_tensor *bias = b && call->nin > 2 ? kiln_cpu_dense(call->in[2]) : NULL;
    void *col = NULL;
    kiln_status st;
    if (!a || !b || (call->nin > 2 && !bias)) st = kiln_last_status(); /* a packing copy failed */
    else st = col_buffer(call->op->name, g, kiln_dtype_size(call->out->dtype), &col);
    if (st == KILN_STATUS_OK) {
        void *pa = kiln__ptr(a), *pb = kiln__ptr(b), *po = kiln__ptr(call->out);
        int64_t oc = call->out->shape[1], ol = call->out->shape[2] * call->out->shape[3];
        if (call->out->dtype == KILN_F32) {
            if (pass == FORWARD) conv_forward_float(pa, pb, po, g, col);
            else if (pass == BACKWARD_INPUT) conv_backward_input_float(pa, pb, po, g, col);
            else conv_backward_weight_float(pa, pb, po, g, col);
            if (bias) add_bias_float(po, (void *)kiln__ptr(bias), call->out->shape[0], oc, ol);
        } else {
            if (pass == FORWARD) conv_forward_double(pa, pb, po, g, col);
            else if (pass == BACKWARD_INPUT) conv_backward_input_double(pa, pb, po, g, col);
            else conv_backward_weight_double(pa, pb, po, g, col);
            if (bias) add_bias_double(po, (void *)kiln__ptr(bias), call->out->shape[0], oc, ol);
        }
    }
    free(col);
    if (bias && bias != call->in[2]) kiln_tensor_free(bias);
    if (b && b != call->in[1]) kiln_tensor_free(b);
    if (a && a != call->in[0]) kiln_tensor_free(a);
    return st;
}

KILN_CPU_KERNEL(conv2d) {
    geom g = make_geom(call->in[0], call->in[1], call->out, call->attrs);
    return run_conv(call, FORWARD, &g);
}

KILN_CPU_KERNEL(conv2d_backward_input) {
    /* in: gy (n, cout, ho, wo), w; out: dx */
    geom g = make_geom(call->out, call->in[1], call->in[0], call->attrs);
    return run_conv(call, BACKWARD_INPUT, &g);
}

KILN_CPU_KERNEL(conv2d_backward_weight) {
    /* in: gy, x; out: dw (cout, cin/groups, kh, kw) */
    geom g = make_geom(call->in[1], call->out, call->in[0], call->attrs);
    return run_conv(call, BACKWARD_WEIGHT, &g);
}

KILN_CPU_KERNEL(conv_transpose2d) {
    /* x (n, cin_t, h, w) is the conv's output gradient, y its input gradient */
    geom g = make_geom(call->out, call->in[1], call->in[0], call->attrs);
    return run_conv(call, BACKWARD_INPUT, &g);
}

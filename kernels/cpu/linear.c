/* CPU kernels of linear: y = x·Wᵀ + b and its two backward products, each ONE
 * BLAS gemm over the whole batch (leading axes folded into the row count). Strided
 * operands go to the BLAS directly when a leading dimension describes them (row-
 * or column-major), otherwise they are packed into a temporary contiguous copy. */
#include "layers.h"

#include <cblas.h>
#include <limits.h>
#include <stdlib.h>

/* A (rows, cols) matrix as the BLAS sees it: trans means the memory holds the
 * row-major (cols, rows) transpose with leading dimension ld. */
typedef struct {
    const void *p;
    int ld;
    bool trans;
    void *owned;
} blas_mat;

/* Copies t's elements in C order into dst. */
static void pack(const kiln_tensor *t, char *dst) {
    size_t es = kiln_dtype_size(t->dtype);
    int64_t n = kiln_tensor_numel(t), idx[KILN_MAX_DIMS] = {0}, off = 0;
    const char *src = kiln__ptr(t);
    for (int64_t i = 0; i < n; i++) {
        memcpy(dst + (size_t)i * es, src + off, es);
        for (int d = t->ndim - 1; d >= 0; d--) {
            off += t->strides[d];
            if (++idx[d] < t->shape[d]) break;
            off -= t->strides[d] * t->shape[d];
            idx[d] = 0;
        }
    }
}

/* Views t (its last axis = cols, all others folded into rows) as a BLAS matrix. */
static kiln_status as_matrix(const kiln_tensor *t, int64_t rows, int64_t cols, blas_mat *m) {
    int64_t es = (int64_t)kiln_dtype_size(t->dtype);
    m->owned = NULL;
    m->p = kiln__ptr(t);
    /* Fold the leading axes into one row stride when their strides chain. */
    int64_t rs = -1;
    bool foldable = true;
    for (int d = t->ndim - 2; d >= 0; d--) {
        if (t->shape[d] == 1) continue;
        if (rs < 0) rs = t->strides[d];
        else {
            int64_t inner = 1;
            for (int e = d + 1; e < t->ndim - 1; e++) inner *= t->shape[e];
            int64_t want = rs * inner;
            if (t->strides[d] != want) foldable = false;
        }
    }
    int64_t cs = t->ndim ? t->strides[t->ndim - 1] : es;
    if (cols <= 1) cs = es;
    if (rs < 0 || rows <= 1) rs = cols * es;
    if (foldable && cs == es && rs % es == 0 && rs / es >= (cols > 1 ? cols : 1) && rs / es <= INT_MAX) {
        m->ld = (int)(rs / es);
        m->trans = false;
        return KILN_STATUS_OK;
    }
    if (foldable && rs == es && cs % es == 0 && cs / es >= (rows > 1 ? rows : 1) && cs / es <= INT_MAX) {
        m->ld = (int)(cs / es);
        m->trans = true;
        return KILN_STATUS_OK;
    }
    m->owned = malloc((size_t)(rows * cols * es > 0 ? rows * cols * es : 1));
    if (!m->owned) return kiln__error(KILN_STATUS_OOM, "linear: out of host memory packing a strided operand");
    pack(t, m->owned);
    m->p = m->owned;
    m->ld = (int)(cols > 1 ? cols : 1);
    m->trans = false;
    return KILN_STATUS_OK;
}

/* C (m, n, row-major, ldc = n) = op(A) (m, k) · op(B) (k, n) + beta C, where tA/tB
 * ask for the transpose of the stored logical matrix. */
static void gemm(kiln_dtype dt, const blas_mat *a, bool ta, const blas_mat *b, bool tb, int64_t m, int64_t n,
                 int64_t k, double beta, void *c) {
    enum CBLAS_TRANSPOSE oa = (ta != a->trans) ? CblasTrans : CblasNoTrans;
    enum CBLAS_TRANSPOSE ob = (tb != b->trans) ? CblasTrans : CblasNoTrans;
    int ldc = (int)(n > 1 ? n : 1);
    if (dt == KILN_F32)
        cblas_sgemm(CblasRowMajor, oa, ob, (int)m, (int)n, (int)k, 1.0f, a->p, a->ld, b->p, b->ld, (float)beta, c,
                    ldc);
    else
        cblas_dgemm(CblasRowMajor, oa, ob, (int)m, (int)n, (int)k, 1.0, a->p, a->ld, b->p, b->ld, beta, c, ldc);
}

static bool fits_int(const char *op, int64_t a, int64_t b, int64_t c) {
    if (a <= INT_MAX && b <= INT_MAX && c <= INT_MAX) return true;
    kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: a matrix dimension exceeds the BLAS's 32-bit sizes "
                "(%lld, %lld, %lld)", op, (long long)a, (long long)b, (long long)c);
    return false;
}

kiln_status kiln_cpu_linear(const kiln_op_call *call) {
    const kiln_tensor *x = call->in[0], *w = call->in[1], *b = call->nin > 2 ? call->in[2] : NULL;
    kiln_tensor *out = call->out;
    int64_t n = w->shape[0], k = w->shape[1], m = k ? kiln_tensor_numel(x) / k : kiln_tensor_numel(out) / (n ? n : 1);
    if (!fits_int("linear", m, n, k)) return kiln_last_status();
    size_t es = kiln_dtype_size(out->dtype);
    char *o = kiln__ptr(out);
    /* Seed every row with the bias (then beta = 1) or zero. */
    if (!b) {
        memset(o, 0, (size_t)(m * n) * es);
    } else if (m > 0) {
        for (int64_t j = 0; j < n; j++) memcpy(o + (size_t)j * es, kiln__ptr(b) + j * b->strides[0], es);
        for (int64_t r = 1; r < m; r++) memcpy(o + (size_t)(r * n) * es, o, (size_t)n * es);
    }
    if (m == 0 || n == 0 || k == 0) return KILN_STATUS_OK;
    blas_mat mx, mw;
    if (as_matrix(x, m, k, &mx) != KILN_STATUS_OK) return kiln_last_status();
    if (as_matrix(w, n, k, &mw) != KILN_STATUS_OK) {
        free(mx.owned);
        return kiln_last_status();
    }
    gemm(out->dtype, &mx, false, &mw, true, m, n, k, 1.0, o);
    free(mx.owned);
    free(mw.owned);
    return KILN_STATUS_OK;
}

/* The bias gradient: column sums of g (.., N) over every leading axis, in double and in
 * C order (the CUDA kernel sums the same values in another order). */
static kiln_status bias_grad(const kiln_tensor *g, kiln_tensor *out) {
    int64_t n = out->shape[0], total = kiln_tensor_numel(g), idx[KILN_MAX_DIMS] = {0}, off = 0;
    double *acc = calloc((size_t)(n > 0 ? n : 1), sizeof *acc);
    if (!acc) return kiln__error(KILN_STATUS_OOM, "linear_backward: out of host memory for the bias gradient");
    const char *src = kiln__ptr(g);
    bool f32 = g->dtype == KILN_F32;
    if (kiln_tensor_is_contiguous(g) && n > 0) {
        /* the same sums in the same order, row by row through typed pointers (the
         * columns are independent, so this loop vectorises) */
        for (int64_t r = 0; r < total / n; r++) {
            if (f32) {
                const float *row = (const float *)src + r * n;
                for (int64_t j = 0; j < n; j++) acc[j] += (double)row[j];
            } else {
                const double *row = (const double *)src + r * n;
                for (int64_t j = 0; j < n; j++) acc[j] += row[j];
            }
        }
        total = 0;
    }
    for (int64_t i = 0; i < total; i++) {
        acc[i % n] += f32 ? (double)*(const float *)(src + off) : *(const double *)(src + off);
        for (int d = g->ndim - 1; d >= 0; d--) {
            off += g->strides[d];
            if (++idx[d] < g->shape[d]) break;
            off -= g->strides[d] * g->shape[d];
            idx[d] = 0;
        }
    }
    char *o = kiln__ptr(out);
    for (int64_t j = 0; j < n; j++) {
        if (out->dtype == KILN_F32) *(float *)(o + j * out->strides[0]) = (float)acc[j];
        else *(double *)(o + j * out->strides[0]) = acc[j];
    }
    free(acc);
    return KILN_STATUS_OK;
}

kiln_status kiln_cpu_linear_backward(const kiln_op_call *call) {
    const kiln_linear_bw_attrs *at = call->attrs;
    if (at->which == 2) return bias_grad(call->in[0], call->out);
    const kiln_tensor *g = call->in[0], *other = call->in[1];
    kiln_tensor *out = call->out;
    int64_t n = g->ndim ? g->shape[g->ndim - 1] : 1;
    int64_t m = n ? kiln_tensor_numel(g) / n : 0;
    int64_t k = other->shape[other->ndim - 1];
    if (at->which == 1 && n == 0) m = kiln_tensor_numel(other) / (k ? k : 1);
    if (!fits_int("linear_backward", m, n, k)) return kiln_last_status();
    if (m == 0 || n == 0 || k == 0) { /* otherwise the GEMM (beta 0) writes every element */
        memset(kiln__ptr(out), 0, (size_t)kiln_tensor_numel(out) * kiln_dtype_size(out->dtype));
        return KILN_STATUS_OK;
    }
    blas_mat mg, mo;
    if (as_matrix(g, m, n, &mg) != KILN_STATUS_OK) return kiln_last_status();
    if (as_matrix(other, at->which == 0 ? n : m, k, &mo) != KILN_STATUS_OK) {
        free(mg.owned);
        return kiln_last_status();
    }
    if (at->which == 0) gemm(out->dtype, &mg, false, &mo, false, m, k, n, 0.0, kiln__ptr(out)); /* dX = G·W */
    else gemm(out->dtype, &mg, true, &mo, false, n, k, m, 0.0, kiln__ptr(out));                 /* dW = Gᵀ·X */
    free(mg.owned);
    free(mo.owned);
    return KILN_STATUS_OK;
}

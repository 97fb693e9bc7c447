/* The cuBLAS and cuSOLVER glue of CUDA builds: matmul (strided-batched GEMM), the
 * products of linear and its backward, and eigh (syevd). Row-major kiln matrices are
 * handed to the column-major libraries as their transposes: C = A·B row-major is
 * Cᵀ = Bᵀ·Aᵀ column-major, so the operands swap and the transpose flags carry over.
 * One cuBLAS and one cuSOLVER handle per device, bound to kiln's stream; workspaces
 * come from the device pool per call (freed at once, reused in stream order). Not
 * part of the emulation library: checked on a GPU by tests/test_cuda_blas.c. */
#include "glue.h"
#include "../cpu/layers.h"

#include <cublas_v2.h>
#include <cusolverDn.h>
#include <limits.h>
#include <pthread.h>

/* cuBLAS's recommended workspace on Hopper (smaller GPUs use less of it). */
#define KILN_CUBLAS_WORKSPACE ((size_t)32 << 20)
#define KILN_BLAS_MAX_DEVICES 16

typedef struct {
    cublasHandle_t blas;
    cusolverDnHandle_t solver;
    bool blas_ready, solver_ready;
} blas_state;

static blas_state g_blas[KILN_BLAS_MAX_DEVICES];
static pthread_mutex_t g_blas_lock = PTHREAD_MUTEX_INITIALIZER;

static kiln_status cublas_fail(cublasStatus_t s, const char *stmt, const char *file, int line) {
    return kiln__error(KILN_STATUS_BACKEND, "cuBLAS call failed: %s returned %s (%s) at %s:%d", stmt,
                       cublasGetStatusName(s), cublasGetStatusString(s), file, line);
}

static const char *cusolver_name(cusolverStatus_t s) {
    switch (s) {
    case CUSOLVER_STATUS_NOT_INITIALIZED: return "CUSOLVER_STATUS_NOT_INITIALIZED";
    case CUSOLVER_STATUS_ALLOC_FAILED: return "CUSOLVER_STATUS_ALLOC_FAILED";
    case CUSOLVER_STATUS_INVALID_VALUE: return "CUSOLVER_STATUS_INVALID_VALUE";
    case CUSOLVER_STATUS_ARCH_MISMATCH: return "CUSOLVER_STATUS_ARCH_MISMATCH";
    case CUSOLVER_STATUS_EXECUTION_FAILED: return "CUSOLVER_STATUS_EXECUTION_FAILED";
    case CUSOLVER_STATUS_INTERNAL_ERROR: return "CUSOLVER_STATUS_INTERNAL_ERROR";
    case CUSOLVER_STATUS_NOT_SUPPORTED: return "CUSOLVER_STATUS_NOT_SUPPORTED";
    default: return "an unlisted cuSOLVER status";
    }
}

static kiln_status cusolver_fail(cusolverStatus_t s, const char *stmt, const char *file, int line) {
    return kiln__error(KILN_STATUS_BACKEND, "cuSOLVER call failed: %s returned %s (%d) at %s:%d", stmt,
                       cusolver_name(s), (int)s, file, line);
}

#define KILN_CUBLAS_CHECK(stmt)                                                                     \
    do {                                                                                            \
        cublasStatus_t kiln_bs_ = (stmt);                                                           \
        if (kiln_bs_ != CUBLAS_STATUS_SUCCESS) return cublas_fail(kiln_bs_, #stmt, __FILE__, __LINE__); \
    } while (0)
#define KILN_CUSOLVER_CHECK(stmt)                                                                       \
    do {                                                                                                \
        cusolverStatus_t kiln_ss_ = (stmt);                                                             \
        if (kiln_ss_ != CUSOLVER_STATUS_SUCCESS) return cusolver_fail(kiln_ss_, #stmt, __FILE__, __LINE__); \
    } while (0)

/* Called with g_blas_lock held. */
static kiln_status make_blas(int dev, blas_state *st) {
    void *stream = kiln__cuda_stream(dev); /* also makes dev current */
    KILN_CUBLAS_CHECK(cublasCreate(&st->blas));
    cublasStatus_t s = cublasSetStream(st->blas, (cudaStream_t)stream);
    if (s != CUBLAS_STATUS_SUCCESS) {
        cublasDestroy(st->blas);
        return cublas_fail(s, "cublasSetStream(handle, stream)", __FILE__, __LINE__);
    }
    st->blas_ready = true;
    return KILN_STATUS_OK;
}

static kiln_status make_solver(int dev, blas_state *st) {
    void *stream = kiln__cuda_stream(dev);
    KILN_CUSOLVER_CHECK(cusolverDnCreate(&st->solver));
    cusolverStatus_t s = cusolverDnSetStream(st->solver, (cudaStream_t)stream);
    if (s != CUSOLVER_STATUS_SUCCESS) {
        cusolverDnDestroy(st->solver);
        return cusolver_fail(s, "cusolverDnSetStream(handle, stream)", __FILE__, __LINE__);
    }
    st->solver_ready = true;
    return KILN_STATUS_OK;
}

static kiln_status blas_handle(int dev, cublasHandle_t *h) {
    if (dev < 0 || dev >= KILN_BLAS_MAX_DEVICES)
        return kiln__error(KILN_STATUS_DEVICE, "cuBLAS: device cuda:%d is beyond the %d kiln supports", dev,
                           KILN_BLAS_MAX_DEVICES);
    pthread_mutex_lock(&g_blas_lock);
    kiln_status s = g_blas[dev].blas_ready ? KILN_STATUS_OK : make_blas(dev, &g_blas[dev]);
    *h = g_blas[dev].blas;
    pthread_mutex_unlock(&g_blas_lock);
    kiln__cuda_stream(dev); /* the device the calls go to */
    return s;
}

static kiln_status solver_handle(int dev, cusolverDnHandle_t *h) {
    if (dev < 0 || dev >= KILN_BLAS_MAX_DEVICES)
        return kiln__error(KILN_STATUS_DEVICE, "cuSOLVER: device cuda:%d is beyond the %d kiln supports", dev,
                           KILN_BLAS_MAX_DEVICES);
    pthread_mutex_lock(&g_blas_lock);
    kiln_status s = g_blas[dev].solver_ready ? KILN_STATUS_OK : make_solver(dev, &g_blas[dev]);
    *h = g_blas[dev].solver;
    pthread_mutex_unlock(&g_blas_lock);
    kiln__cuda_stream(dev);
    return s;
}

/* ---- GEMM ------------------------------------------------------------------------------ */

/* A row-major (rows, cols) matrix as GEMM reads it: trans means the memory holds the
 * row-major transpose with leading dimension ld; stride: elements between batch items. */
typedef struct {
    const void *p;
    int64_t ld;
    bool trans;
    int64_t stride;
} gemm_mat;

/* How GEMM reads a rows x cols matrix with element strides rs, cs (as the CPU kernel decides). */
static bool gemm_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, gemm_mat *g) {
    int64_t minr = cols > 1 ? cols : 1, minc = rows > 1 ? rows : 1;
    if ((cols <= 1 || cs == 1) && (rows <= 1 || rs >= minr)) {
        g->trans = false;
        g->ld = rows <= 1 ? minr : rs;
        return true;
    }
    if ((rows <= 1 || rs == 1) && (cols <= 1 || cs >= minc)) {
        g->trans = true;
        g->ld = cols <= 1 ? minc : cs;
        return true;
    }
    return false;
}

/* C (m, n, row-major, ldc, stride sc) = op(A)·op(B) + beta·C for batch items, where ta/tb
 * ask for the transpose of the logical matrices A, B. TF32 follows kiln_tf32() at each call. */
static kiln_status gemm(int dev, kiln_dtype dt, bool ta, const gemm_mat *a, bool tb, const gemm_mat *b, int64_t m,
                        int64_t n, int64_t k, double beta, void *c, int64_t ldc, int64_t sc, int64_t batch) {
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX || a->ld > INT_MAX || b->ld > INT_MAX || ldc > INT_MAX ||
        batch > INT_MAX)
        return kiln__error(KILN_STATUS_SHAPE, "matmul: a matrix dimension (m %lld, n %lld, k %lld) or the batch "
                           "(%lld) exceeds cuBLAS's 32-bit limit", (long long)m, (long long)n, (long long)k,
                           (long long)batch);
    cublasHandle_t h = NULL;
    kiln_status s = blas_handle(dev, &h);
    if (s != KILN_STATUS_OK) return s;
    bool tf32 = dt == KILN_F32 && kiln_tf32();
    /* Off: CUBLAS_COMPUTE_32F with the default math mode, which guarantees float32
     * storage precision for the inputs (no TF32, no BF16x9 emulation), as torch with
     * allow_tf32 = False. On: TF32 tensor cores, float32 accumulation. */
    KILN_CUBLAS_CHECK(cublasSetMathMode(h, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    cublasComputeType_t ct = dt == KILN_F64 ? CUBLAS_COMPUTE_64F : tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
    cudaDataType_t ty = dt == KILN_F64 ? CUDA_R_64F : CUDA_R_32F;
    float alpha_f = 1.0f, beta_f = (float)beta;
    double alpha_d = 1.0, beta_d = beta;
    const void *alpha = dt == KILN_F64 ? (const void *)&alpha_d : (const void *)&alpha_f;
    const void *betap = dt == KILN_F64 ? (const void *)&beta_d : (const void *)&beta_f;
    cublasOperation_t oa = (ta != a->trans) ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasOperation_t ob = (tb != b->trans) ? CUBLAS_OP_T : CUBLAS_OP_N;

    kiln_pool_block *ws = kiln_pool_alloc(kiln__cuda_pool(dev), KILN_CUBLAS_WORKSPACE);
    if (!ws) return kiln_last_status();
    cublasStatus_t bs = cublasSetWorkspace(h, kiln_pool_block_ptr(ws), KILN_CUBLAS_WORKSPACE);
    if (bs == CUBLAS_STATUS_SUCCESS) /* column-major: Cᵀ (n, m) = op(B)ᵀ·op(A)ᵀ */
        bs = cublasGemmStridedBatchedEx(h, ob, oa, (int)n, (int)m, (int)k, alpha, b->p, ty, (int)b->ld,
                                        (long long)b->stride, a->p, ty, (int)a->ld, (long long)a->stride, betap, c, ty,
                                        (int)ldc, (long long)sc, (int)batch, ct, CUBLAS_GEMM_DEFAULT);
    /* freed at once: later users of the block are ordered after this GEMM on the stream */
    kiln_pool_free(kiln__cuda_pool(dev), ws);
    if (bs != CUBLAS_STATUS_SUCCESS)
        return cublas_fail(bs, "cublasGemmStridedBatchedEx(handle, opB, opA, n, m, k, ...)", __FILE__, __LINE__);
    return KILN_STATUS_OK;
}

static kiln_status fill_zero(kiln_tensor *out) {
    kiln_cuda_tensor o = desc(out);
    return kiln_cuda_launch_fill(&o, 0.0, stream_of(out));
}

/* ---- matmul ------------------------------------------------------------------------------ */

kiln_status kiln_cuda_matmul(const kiln_op_call *call) {
    const kiln_tensor *a = call->in[0], *b = call->in[1];
    kiln_tensor *out = call->out;
    int dev = out->device.index, nd = out->ndim, nb = nd - 2;
    int64_t es = (int64_t)kiln_dtype_size(out->dtype);
    int64_t M = out->shape[nd - 2], N = out->shape[nd - 1], K = a->shape[a->ndim - 1];
    if (kiln_tensor_numel(out) == 0) return KILN_STATUS_OK;
    if (K == 0) return fill_zero(out);
    gemm_mat ga, gb;
    if (!gemm_layout(M, K, a->strides[a->ndim - 2] / es, a->strides[a->ndim - 1] / es, &ga) ||
        !gemm_layout(K, N, b->strides[b->ndim - 2] / es, b->strides[b->ndim - 1] / es, &gb))
        return kiln__error(KILN_STATUS_STATE, "matmul: an operand reached the CUDA kernel in a layout GEMM cannot "
                           "read (a kiln bug; please report it)");
    /* element strides of the batch dims of a and b, broadcast to out's batch shape */
    int64_t sa[KILN_MAX_DIMS] = {0}, sb[KILN_MAX_DIMS] = {0}, nbatch = 1;
    for (int i = 0; i < nb; i++) {
        int ia = i - (nb - (a->ndim - 2)), ib = i - (nb - (b->ndim - 2));
        sa[i] = ia >= 0 && a->shape[ia] != 1 ? a->strides[ia] / es : 0;
        sb[i] = ib >= 0 && b->shape[ib] != 1 ? b->strides[ib] / es : 0;
        nbatch *= out->shape[i];
    }
    const char *pa = kiln__ptr(a), *pb = kiln__ptr(b);
    char *pc = kiln__ptr(out);

    /* b shared by every batch item and a's rows evenly spaced: the batch folds into M
     * and one GEMM does all (a dense layer over (B, T, in)), as on the CPU */
    bool fold = !ga.trans && nbatch > 1;
    bool ld_known = M > 1;
    int64_t ld = ga.ld, span = M;
    for (int i = nb - 1; fold && i >= 0; i--) {
        if (out->shape[i] == 1) continue;
        if (sb[i] != 0 || sa[i] <= 0) {
            fold = false;
            break;
        }
        if (!ld_known) {
            ld = sa[i];
            ld_known = true;
            if (ld < K) fold = false;
        }
        if (sa[i] != span * ld) fold = false;
        span *= out->shape[i];
    }
    if (fold) {
        ga.ld = ld;
        ga.stride = gb.stride = 0;
        return gemm(dev, out->dtype, false, &ga, false, &gb, nbatch * M, N, K, 0.0, pc, N, 0, 1);
    }

    /* The innermost batch dims whose a and b strides chain become one strided-batched
     * call; the outer ones (broadcast in a pattern one stride cannot express) loop. */
    int inner = nb; /* first batch dim of the inner group */
    int64_t count = 1, st_a = 0, st_b = 0;
    bool started = false;
    for (int i = nb - 1; i >= 0; i--) {
        if (out->shape[i] == 1) {
            inner = i;
            continue;
        }
        if (!started) {
            st_a = sa[i];
            st_b = sb[i];
            started = true;
        } else if (sa[i] != st_a * count || sb[i] != st_b * count) {
            break;
        }
        count *= out->shape[i];
        inner = i;
    }
    ga.stride = st_a;
    gb.stride = st_b;
    int64_t outer = nbatch / count, idx[KILN_MAX_DIMS] = {0};
    for (int64_t t = 0; t < outer; t++) {
        kiln_status s = gemm(dev, out->dtype, false, &(gemm_mat){pa, ga.ld, ga.trans, ga.stride}, false,
                             &(gemm_mat){pb, gb.ld, gb.trans, gb.stride}, M, N, K, 0.0, pc + t * count * M * N * es,
                             N, M * N, count);
        if (s != KILN_STATUS_OK) return s;
        for (int d = inner - 1; d >= 0; d--) { /* odometer over the outer batch dims */
            pa += sa[d] * es;
            pb += sb[d] * es;
            if (++idx[d] < out->shape[d]) break;
            pa -= sa[d] * es * out->shape[d];
            pb -= sb[d] * es * out->shape[d];
            idx[d] = 0;
        }
    }
    return KILN_STATUS_OK;
}

/* ---- linear ------------------------------------------------------------------------------- */

/* t (its last axis = cols, the others folded into rows) as a GEMM matrix; strided
 * layouts no leading dimension describes are copied first (*copy, freed by the caller). */
static kiln_status as_matrix(const kiln_tensor *t, int64_t rows, int64_t cols, gemm_mat *m, kiln_tensor **copy) {
    int64_t es = (int64_t)kiln_dtype_size(t->dtype), rs = cols;
    *copy = NULL;
    m->stride = 0;
    if (kiln_cuda_fold_rows(t, &rs) && t->strides[t->ndim - 1] % es == 0) {
        int64_t cs = t->strides[t->ndim - 1] / es;
        if (gemm_layout(rows, cols, rows <= 1 ? (cols > 1 ? cols : 1) : rs, cs, m)) {
            m->p = kiln__ptr(t);
            return KILN_STATUS_OK;
        }
    }
    if (!(*copy = kiln_cuda_contiguous_scratch(t))) return kiln_last_status();
    m->p = kiln__ptr(*copy);
    m->ld = cols > 1 ? cols : 1;
    m->trans = false;
    return KILN_STATUS_OK;
}

kiln_status kiln_cuda_linear(const kiln_op_call *call) {
    const kiln_tensor *x = call->in[0], *w = call->in[1], *b = call->nin > 2 ? call->in[2] : NULL;
    kiln_tensor *out = call->out;
    int64_t n = w->shape[0], k = w->shape[1];
    int64_t m = k ? kiln_tensor_numel(x) / k : kiln_tensor_numel(out) / (n ? n : 1);
    if (m == 0 || n == 0) return KILN_STATUS_OK;
    /* every row seeded with the bias (then beta = 1), or beta = 0 */
    if (b) {
        int64_t es = (int64_t)kiln_dtype_size(b->dtype);
        kiln_cuda_tensor o = {kiln__ptr(out), out->dtype, 2, {m, n}, {n, 1}};
        kiln_cuda_tensor bd = {kiln__ptr(b), b->dtype, 2, {m, n}, {0, b->strides[0] / es}};
        kiln_status s = kiln_cuda_launch_copy(&o, &bd, stream_of(out));
        if (s != KILN_STATUS_OK) return s;
    }
    if (k == 0) return b ? KILN_STATUS_OK : fill_zero(out);
    gemm_mat mx, mw;
    kiln_tensor *cx = NULL, *cw = NULL;
    kiln_status s = as_matrix(x, m, k, &mx, &cx);
    if (s == KILN_STATUS_OK) s = as_matrix(w, n, k, &mw, &cw);
    if (s == KILN_STATUS_OK) /* y = x·Wᵀ */
        s = gemm(out->device.index, out->dtype, false, &mx, true, &mw, m, n, k, b ? 1.0 : 0.0, kiln__ptr(out), n, 0, 1);
    if (cx) kiln_tensor_free(cx);
    if (cw) kiln_tensor_free(cw);
    return s;
}

/* linear_backward which 0 (dX = G·W) and 1 (dW = Gᵀ·X); which 2 (the bias) is the
 * custom kernel of kernels/cuda/glue_linear.c, which calls this for the others. */
kiln_status kiln__cuda_linear_backward_gemm(const kiln_op_call *call);
kiln_status kiln__cuda_linear_backward_gemm(const kiln_op_call *call) {
    const kiln_linear_bw_attrs *at = call->attrs;
    const kiln_tensor *g = call->in[0], *other = call->in[1];
    kiln_tensor *out = call->out;
    int64_t n = g->ndim ? g->shape[g->ndim - 1] : 1;
    int64_t m = n ? kiln_tensor_numel(g) / n : 0;
    int64_t k = other->shape[other->ndim - 1];
    if (at->which == 1 && n == 0) m = kiln_tensor_numel(other) / (k ? k : 1);
    if (kiln_tensor_numel(out) == 0) return KILN_STATUS_OK;
    if (m == 0 || n == 0 || k == 0) return fill_zero(out);
    gemm_mat mg, mo;
    kiln_tensor *cg = NULL, *co = NULL;
    kiln_status s = as_matrix(g, m, n, &mg, &cg);
    if (s == KILN_STATUS_OK) s = as_matrix(other, at->which == 0 ? n : m, k, &mo, &co);
    if (s == KILN_STATUS_OK) {
        if (at->which == 0) s = gemm(out->device.index, out->dtype, false, &mg, false, &mo, m, k, n, 0.0,
                                     kiln__ptr(out), k, 0, 1);
        else s = gemm(out->device.index, out->dtype, true, &mg, false, &mo, n, k, m, 0.0, kiln__ptr(out), k, 0, 1);
    }
    if (cg) kiln_tensor_free(cg);
    if (co) kiln_tensor_free(co);
    return s;
}

/* ---- eigh ---------------------------------------------------------------------------------- */

/* packed (n+1, n): row 0 the ascending eigenvalues, rows 1.. the eigenvectors in columns.
 * syevd reads the upper triangle of the column-major matrix, which is the lower
 * triangle of the row-major input: the triangle the CPU's LAPACK call reads. */
kiln_status kiln_cuda_eigh(const kiln_op_call *call) {
    const kiln_tensor *a = call->in[0];
    kiln_tensor *out = call->out;
    int dev = out->device.index;
    int64_t n = a->shape[0], es = (int64_t)kiln_dtype_size(a->dtype);
    if (n == 0) return KILN_STATUS_OK;
    if (n > INT_MAX) return kiln__error(KILN_STATUS_SHAPE, "eigh: n = %lld exceeds cuSOLVER's 32-bit limit", (long long)n);
    if (!kiln_tensor_is_contiguous(out))
        return kiln__error(KILN_STATUS_STATE, "eigh: the CUDA kernel writes a contiguous output (a kiln bug)");
    cusolverDnHandle_t h = NULL;
    kiln_status s = solver_handle(dev, &h);
    if (s != KILN_STATUS_OK) return s;
    kiln_tensor *v = kiln_cuda_contiguous_scratch(a); /* syevd overwrites it with the vectors */
    if (!v) return kiln_last_status();
    const cusolverEigMode_t mode = CUSOLVER_EIG_MODE_VECTOR;
    const cublasFillMode_t uplo = CUBLAS_FILL_MODE_UPPER;
    int lwork = 0, info = 0;
    cusolverStatus_t ss;
    const char *stmt;
    if (a->dtype == KILN_F32) {
        stmt = "cusolverDnSsyevd_bufferSize(handle, mode, uplo, n, A, n, W, &lwork)";
        ss = cusolverDnSsyevd_bufferSize(h, mode, uplo, (int)n, (const float *)kiln__ptr(v), (int)n,
                                         (const float *)kiln__ptr(out), &lwork);
    } else {
        stmt = "cusolverDnDsyevd_bufferSize(handle, mode, uplo, n, A, n, W, &lwork)";
        ss = cusolverDnDsyevd_bufferSize(h, mode, uplo, (int)n, (const double *)kiln__ptr(v), (int)n,
                                         (const double *)kiln__ptr(out), &lwork);
    }
    /* the work array (lwork elements) and, after it, devInfo */
    kiln_tensor *work = NULL;
    if (ss == CUSOLVER_STATUS_SUCCESS) {
        int64_t bytes = (int64_t)lwork * es + 16;
        if (!(work = kiln__new(1, &bytes, KILN_U8, out->device))) {
            kiln_tensor_free(v);
            return kiln_last_status();
        }
        int *dinfo = (int *)(kiln__ptr(work) + (int64_t)lwork * es);
        if (a->dtype == KILN_F32) {
            stmt = "cusolverDnSsyevd(handle, mode, uplo, n, A, n, W, work, lwork, info)";
            ss = cusolverDnSsyevd(h, mode, uplo, (int)n, (float *)kiln__ptr(v), (int)n, (float *)kiln__ptr(out),
                                  (float *)kiln__ptr(work), lwork, dinfo);
        } else {
            stmt = "cusolverDnDsyevd(handle, mode, uplo, n, A, n, W, work, lwork, info)";
            ss = cusolverDnDsyevd(h, mode, uplo, (int)n, (double *)kiln__ptr(v), (int)n, (double *)kiln__ptr(out),
                                  (double *)kiln__ptr(work), lwork, dinfo);
        }
        if (ss == CUSOLVER_STATUS_SUCCESS) /* waits for the solver: info decides */
            s = kiln__memcpy(&info, KILN_CPU, dinfo, out->device, sizeof info);
    }
    if (ss != CUSOLVER_STATUS_SUCCESS) s = cusolver_fail(ss, stmt, __FILE__, __LINE__);
    if (s == KILN_STATUS_OK && info < 0)
        s = kiln__error(KILN_STATUS_INVALID_ARGUMENT, "eigh: cuSOLVER rejected argument %d", -info);
    else if (s == KILN_STATUS_OK && info > 0)
        s = kiln__error(KILN_STATUS_BACKEND, "eigh: the eigen-decomposition did not converge (%d off-diagonal "
                        "elements); is the input finite?", info);
    if (s == KILN_STATUS_OK) { /* column-major vectors are the rows of v: transpose into rows 1.. */
        kiln_cuda_tensor o = {kiln__ptr(out) + n * es, out->dtype, 2, {n, n}, {n, 1}};
        kiln_cuda_tensor t = {kiln__ptr(v), v->dtype, 2, {n, n}, {1, n}};
        s = kiln_cuda_launch_copy(&o, &t, stream_of(out));
    }
    if (work) kiln_tensor_free(work);
    kiln_tensor_free(v);
    return s;
}

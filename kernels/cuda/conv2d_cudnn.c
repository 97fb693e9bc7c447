/* conv2d (forward, backward_input, backward_weight: cuDNN's forward, backward-data and
 * backward-filter), conv_transpose2d and the fused conv+bias+ReLU on CUDA: cuDNN 9's
 * graph (backend) API with execution plans cached per key, a per-device growable
 * workspace from the pool, heuristics or autotuning, TF32 and deterministic filtering;
 * im2col + cuBLAS where cuDNN is absent or says not-supported. cuDNN is loaded with
 * dlopen, so a machine without it still runs. The geometry is kernels/conv2d_geometry.h's,
 * as on the CPU. Host code of CUDA builds only (not part of the emulation library). */
#include "glue.h"
#include "launch_layers.h"
#include "../../layers/conv_plans.h"
#include "../../core/memory_pool.h"

#include <kiln/cuda.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef KILN_HAVE_CUDNN
#include <cudnn.h>
#include <dlfcn.h>
#endif

kiln_tensor *kiln_cpu_dense(kiln_tensor *t); /* kernels/cpu/conv2d.c: a packed copy on t's device */

#define MAX_DEVICES 16

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER; /* handles, cache, workspaces */

/* ---- logging once ----------------------------------------------------------------------- */

static void log_once(int *done, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_once(int *done, const char *fmt, ...) {
    if (__atomic_exchange_n(done, 1, __ATOMIC_RELAXED)) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("kiln: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int g_logged_absent, g_logged_unsupported, g_logged_disabled;

/* ---- the problem ------------------------------------------------------------------------- */

/* One convolution in forward roles: x (n, cin, h, w), w (cout, cin/g, kh, kw),
 * y (n, cout, ho, wo); the pass says which of them is written. */
typedef struct {
    kiln_conv_pass pass;
    kiln_dtype dt;
    int device;
    kiln_tensor *x, *w, *y;
    kiln_tensor *bias; /* added to the written tensor's channels (forward, conv_transpose2d) */
    bool relu;         /* ReLU after the bias (conv2d_bias_act) */
    bool try_fused;    /* one cuDNN plan for conv + bias + ReLU */
    const kiln_conv2d_attrs *at;
    kiln_conv_geometry g; /* planned by run_conv */
} conv_problem;

static kiln_tensor *written(const conv_problem *p) {
    return p->pass == KILN_CONV_FORWARD ? p->y : p->pass == KILN_CONV_BACKWARD_INPUT ? p->x : p->w;
}

/* ---- cuBLAS (a private handle per device) ------------------------------------------------ */

static cublasHandle_t g_blas[MAX_DEVICES];

static kiln_status blas_fail(cublasStatus_t s, const char *stmt, const char *file, int line) {
    return kiln__error(KILN_STATUS_BACKEND, "cuBLAS call failed: %s returned %s (%s) at %s:%d", stmt,
                       cublasGetStatusName(s), cublasGetStatusString(s), file, line);
}
#define BLAS_CHECK(stmt)                                                                   \
    do {                                                                                   \
        cublasStatus_t kiln_bs_ = (stmt);                                                  \
        if (kiln_bs_ != CUBLAS_STATUS_SUCCESS) return blas_fail(kiln_bs_, #stmt, __FILE__, __LINE__); \
    } while (0)

static kiln_status blas_handle(int dev, void *stream, cublasHandle_t *out) {
    pthread_mutex_lock(&g_lock);
    cublasStatus_t s = CUBLAS_STATUS_SUCCESS;
    if (!g_blas[dev]) s = cublasCreate(&g_blas[dev]);
    cublasHandle_t h = g_blas[dev];
    pthread_mutex_unlock(&g_lock);
    if (s != CUBLAS_STATUS_SUCCESS) return blas_fail(s, "cublasCreate(&handle)", __FILE__, __LINE__);
    BLAS_CHECK(cublasSetStream(h, (cudaStream_t)stream));
    /* float32 is float32 unless kiln_set_tf32(true) */
    BLAS_CHECK(cublasSetMathMode(h, kiln_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    *out = h;
    return KILN_STATUS_OK;
}

/* Row-major C (m x n) = op(A) op(B) (+ beta C), batch times at the given strides;
 * cuBLAS is column-major, so it computes Cᵀ = op(B)ᵀ op(A)ᵀ. */
static kiln_status gemm_rm(cublasHandle_t h, kiln_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                           const void *a, int64_t lda, int64_t sa, const void *b, int64_t ldb, int64_t sb,
                           double beta, void *c, int64_t ldc, int64_t sc, int64_t batch) {
    cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || batch > INT32_MAX)
        return kiln__error(KILN_STATUS_SHAPE, "conv2d (im2col + cuBLAS): a %lldx%lldx%lld product is too large for "
                           "cuBLAS's 32-bit sizes; use a smaller batch or image", (long long)m, (long long)n,
                           (long long)k);
    if (dt == KILN_F32) {
        float one = 1.0f, bf = (float)beta;
        BLAS_CHECK(cublasSgemmStridedBatched(h, ob, oa, (int)n, (int)m, (int)k, &one, (const float *)b, (int)ldb, sb,
                                             (const float *)a, (int)lda, sa, &bf, (float *)c, (int)ldc, sc,
                                             (int)batch));
    } else {
        double one = 1.0;
        BLAS_CHECK(cublasDgemmStridedBatched(h, ob, oa, (int)n, (int)m, (int)k, &one, (const double *)b, (int)ldb,
                                             sb, (const double *)a, (int)lda, sa, &beta, (double *)c, (int)ldc, sc,
                                             (int)batch));
    }
    return KILN_STATUS_OK;
}

/* ---- the im2col + cuBLAS path --------------------------------------------------------------- */

/* x, w, y contiguous; writes the pass's tensor (bias and ReLU are the caller's). */
static kiln_status run_fallback(const conv_problem *p, void *stream) {
    const kiln_tensor *x = p->x, *w = p->w, *y = p->y;
    const kiln_conv_geometry *g = &p->g;
    int64_t n = g->n, cout = g->cout, groups = g->groups, cout_g = g->cout_g, K = g->K, L = g->L;
    size_t es = kiln_dtype_size(p->dt);
    cublasHandle_t h = NULL;
    kiln_status st = blas_handle(p->device, stream, &h);
    if (st != KILN_STATUS_OK) return st;
    if (p->pass == KILN_CONV_BACKWARD_WEIGHT && (n == 0 || L == 0)) {
        KILN_CUDA_CHECK(cudaMemsetAsync(kiln__ptr(w), 0, (size_t)kiln_tensor_numel(w) * es, (cudaStream_t)stream));
        return KILN_STATUS_OK;
    }
    bool direct = g->pointwise;
    kiln_tensor *col = NULL;
    if (!direct && g->col > 0) {
        int64_t bytes = g->col * (int64_t)es;
        col = kiln__new(1, &bytes, KILN_U8, x->device); /* from the pool, reused in stream order */
        if (!col) return kiln_last_status();
    }
    char *px = kiln__ptr(x), *pw = kiln__ptr(w), *py = kiln__ptr(y), *pc = col ? kiln__ptr(col) : NULL;
    int64_t xs = g->cin * g->h * g->w * (int64_t)es, ys = cout * L * (int64_t)es;
    for (int64_t i = 0; i < n && st == KILN_STATUS_OK; i++) {
        char *xn = px + i * xs, *yn = py + i * ys, *cn = direct ? xn : pc;
        switch (p->pass) {
        case KILN_CONV_FORWARD: /* y_n[g] = W[g] · col_n[g] */
            if (!direct) st = kiln_cuda_launch_im2col(p->dt, xn, pc, g, stream);
            if (st == KILN_STATUS_OK)
                st = gemm_rm(h, p->dt, false, false, cout_g, L, K, pw, K, cout_g * K, cn, L, K * L, 0.0, yn, L,
                             cout_g * L, groups);
            break;
        case KILN_CONV_BACKWARD_INPUT: /* dx_n = col2im(W[g]ᵀ · dy_n[g]) */
            st = gemm_rm(h, p->dt, true, false, K, L, cout_g, pw, K, cout_g * K, yn, L, cout_g * L, 0.0, cn, L, K * L,
                         groups);
            if (st == KILN_STATUS_OK && !direct) st = kiln_cuda_launch_col2im(p->dt, pc, xn, g, stream);
            break;
        case KILN_CONV_BACKWARD_WEIGHT: /* dW[g] += dy_n[g] · col_n[g]ᵀ */
            if (!direct) st = kiln_cuda_launch_im2col(p->dt, xn, pc, g, stream);
            if (st == KILN_STATUS_OK)
                st = gemm_rm(h, p->dt, false, true, cout_g, K, L, yn, L, cout_g * L, cn, L, K * L, i ? 1.0 : 0.0, pw, K,
                             cout_g * K, groups);
            break;
        }
    }
    if (col) kiln_tensor_free(col);
    return st;
}

/* ---- cuDNN ---------------------------------------------------------------------------------- */
#ifdef KILN_HAVE_CUDNN

/* The entry points kiln uses, from dlopen. */
static struct {
    bool tried, ok;
    size_t version;
    __typeof__(cudnnGetVersion) *GetVersion;
    __typeof__(cudnnGetErrorString) *GetErrorString;
    __typeof__(cudnnGetLastErrorString) *GetLastErrorString;
    __typeof__(cudnnCreate) *Create;
    __typeof__(cudnnSetStream) *SetStream;
    __typeof__(cudnnBackendCreateDescriptor) *BackendCreateDescriptor;
    __typeof__(cudnnBackendDestroyDescriptor) *BackendDestroyDescriptor;
    __typeof__(cudnnBackendFinalize) *BackendFinalize;
    __typeof__(cudnnBackendSetAttribute) *BackendSetAttribute;
    __typeof__(cudnnBackendGetAttribute) *BackendGetAttribute;
    __typeof__(cudnnBackendExecute) *BackendExecute;
} dnn;

static cudnnHandle_t g_dnn_handle[MAX_DEVICES];

#ifndef KILN_CUDNN_LIBRARY_PATH
#define KILN_CUDNN_LIBRARY_PATH ""
#endif

/* Under g_lock. false (logged once) when no usable cuDNN 9 is on this machine. */
static bool dnn_load(void) {
    if (dnn.tried) return dnn.ok;
    dnn.tried = true;
    const char *cands[] = {getenv("KILN_CUDNN_LIBRARY"), KILN_CUDNN_LIBRARY_PATH, "libcudnn.so.9", "libcudnn.so"};
    void *lib = NULL;
    const char *err = "not found";
    for (size_t i = 0; i < sizeof cands / sizeof cands[0] && !lib; i++) {
        if (!cands[i] || !*cands[i]) continue;
        lib = dlopen(cands[i], RTLD_NOW | RTLD_LOCAL);
        if (!lib) err = dlerror();
    }
    if (!lib) {
        log_once(&g_logged_absent, "cuDNN 9 could not be loaded (%s); convolutions run as im2col + cuBLAS "
                 "(set KILN_CUDNN_LIBRARY to libcudnn.so.9's path)", err ? err : "dlopen failed");
        return false;
    }
    bool ok = true;
#define LOAD(name)                                                                   \
    do {                                                                             \
        *(void **)(&dnn.name) = dlsym(lib, "cudnn" #name);                           \
        if (!dnn.name) ok = false;                                                   \
    } while (0)
    LOAD(GetVersion);
    LOAD(GetErrorString);
    LOAD(GetLastErrorString);
    LOAD(Create);
    LOAD(SetStream);
    LOAD(BackendCreateDescriptor);
    LOAD(BackendDestroyDescriptor);
    LOAD(BackendFinalize);
    LOAD(BackendSetAttribute);
    LOAD(BackendGetAttribute);
    LOAD(BackendExecute);
#undef LOAD
    if (!ok || (dnn.version = dnn.GetVersion()) < 90000) {
        log_once(&g_logged_absent, "the cuDNN found (version %zu) lacks the cuDNN 9 graph API; convolutions run as "
                 "im2col + cuBLAS", ok ? dnn.version : (size_t)0);
        dlclose(lib);
        return false;
    }
    dnn.ok = true;
    return true;
}

static kiln_status dnn_fail(cudnnStatus_t s, const char *stmt, const char *file, int line) {
    char detail[256] = "";
    dnn.GetLastErrorString(detail, sizeof detail);
    return kiln__error(KILN_STATUS_BACKEND, "cuDNN call failed: %s returned %s (%d)%s%s at %s:%d", stmt,
                       dnn.GetErrorString(s), (int)s, *detail ? ": " : "", detail, file, line);
}
/* A cuDNN call whose failure is a kiln error. */
#define DNN_CHECK(stmt)                                                                     \
    do {                                                                                    \
        cudnnStatus_t kiln_ds_ = (stmt);                                                    \
        if (kiln_ds_ != CUDNN_STATUS_SUCCESS) return dnn_fail(kiln_ds_, #stmt, __FILE__, __LINE__); \
    } while (0)

/* Building a plan: cuDNN's answer is either "done", "cannot" (not supported, or a
 * parameter it rejects: the fallback takes over) or an error. */
typedef enum { BUILD_OK, BUILD_UNSUPPORTED, BUILD_ERROR } build_result;
static _Thread_local char g_why[320]; /* the statement that said "cannot", for the log */

static build_result build_fail(cudnnStatus_t s, const char *stmt, const char *file, int line) {
    int family = (int)s / 1000;
    if (family == 2 || family == 3) {
        snprintf(g_why, sizeof g_why, "%s returned %s at %s:%d", stmt, dnn.GetErrorString(s), file, line);
        return BUILD_UNSUPPORTED;
    }
    dnn_fail(s, stmt, file, line);
    return BUILD_ERROR;
}
#define DNN_BUILD(stmt)                                                                      \
    do {                                                                                     \
        cudnnStatus_t kiln_ds_ = (stmt);                                                     \
        if (kiln_ds_ != CUDNN_STATUS_SUCCESS) return build_fail(kiln_ds_, #stmt, __FILE__, __LINE__); \
    } while (0)

/* Descriptors a plan needs alive; destroyed with its cache entry. */
#define KEEP_MAX 24
typedef struct {
    cudnnBackendDescriptor_t d[KEEP_MAX];
    int n;
} desc_bag;

static void bag_free(desc_bag *b) {
    for (int i = b->n - 1; i >= 0; i--)
        if (b->d[i]) dnn.BackendDestroyDescriptor(b->d[i]);
    b->n = 0;
}

static cudnnStatus_t bag_new(desc_bag *b, cudnnBackendDescriptorType_t type, cudnnBackendDescriptor_t *out) {
    *out = NULL;
    if (b->n == KEEP_MAX) return CUDNN_STATUS_INTERNAL_ERROR;
    cudnnStatus_t s = dnn.BackendCreateDescriptor(type, out);
    if (s == CUDNN_STATUS_SUCCESS) b->d[b->n++] = *out;
    return s;
}

#define SET(d, attr, type, n, ptr) dnn.BackendSetAttribute((d), (attr), (type), (n), (ptr))

/* The cache key: everything a plan depends on. Compared with memcmp (zero-filled). */
typedef struct {
    int32_t device, pass, dtype, fused, tf32, deterministic, autotune, pad_;
    int64_t dims[3][4], strides[3][4], align[4];
    int64_t pre[2], post[2], stride[2], dilation[2];
    int64_t workspace_limit;
} plan_key;

typedef struct plan_entry {
    plan_key key;
    bool usable; /* false: cuDNN cannot; the fallback runs */
    cudnnBackendDescriptor_t plan;
    int64_t workspace;
    desc_bag keep;
    struct plan_entry *next;
} plan_entry;

static plan_entry *g_cache;

/* Per device: one growable workspace (kiln has one stream per device). */
static kiln_pool_block *g_ws[MAX_DEVICES];
static size_t g_ws_size[MAX_DEVICES];

static kiln_status workspace(int dev, int64_t need, void **out) {
    *out = NULL;
    if (need <= 0) return KILN_STATUS_OK;
    if ((size_t)need > g_ws_size[dev]) {
        size_t grow = g_ws_size[dev] + g_ws_size[dev] / 2;
        size_t want = (size_t)need > grow ? (size_t)need : grow;
        kiln_pool *pool = kiln__cuda_pool(dev);
        if (g_ws[dev]) { /* the old one may still be read by queued work: the pool reuses in stream order */
            kiln_pool_free(pool, g_ws[dev]);
            kiln__conv_stat_add(KILN_CONV_STAT_WORKSPACE, -(int64_t)g_ws_size[dev]);
            g_ws[dev] = NULL;
            g_ws_size[dev] = 0;
        }
        g_ws[dev] = kiln_pool_alloc(pool, want);
        if (!g_ws[dev]) return kiln_last_status();
        g_ws_size[dev] = want;
        kiln__conv_stat_add(KILN_CONV_STAT_WORKSPACE, (int64_t)want);
    }
    *out = kiln_pool_block_ptr(g_ws[dev]);
    return KILN_STATUS_OK;
}

/* cuDNN takes a tensor's strides as they are when its elements are packed in some
 * axis order (contiguous, channels-last, ...). */
static bool packed(const kiln_tensor *t) {
    int64_t es = (int64_t)kiln_dtype_size(t->dtype), st[4];
    int order[4] = {0, 1, 2, 3};
    for (int i = 0; i < 4; i++) {
        if (t->strides[i] <= 0 && t->shape[i] > 1) return false;
        st[i] = t->strides[i] / es;
    }
    for (int i = 1; i < 4; i++) /* axes by decreasing stride */
        for (int j = i; j > 0 && st[order[j]] > st[order[j - 1]]; j--) {
            int tmp = order[j];
            order[j] = order[j - 1];
            order[j - 1] = tmp;
        }
    int64_t expect = 1;
    for (int i = 3; i >= 0; i--) {
        int a = order[i];
        if (t->shape[a] != 1 && st[a] != expect) return false;
        expect *= t->shape[a];
    }
    return true;
}

static void tensor_dims(const kiln_tensor *t, int64_t *dims, int64_t *strides) {
    int64_t es = (int64_t)kiln_dtype_size(t->dtype);
    for (int i = 0; i < 4; i++) {
        dims[i] = t->shape[i];
        /* a size-1 axis may carry any stride; give cuDNN a packed one */
        strides[i] = t->shape[i] == 1 ? 0 : t->strides[i] / es;
    }
    if (strides[3] == 0) strides[3] = 1;
    for (int i = 2; i >= 0; i--)
        if (strides[i] == 0) strides[i] = strides[i + 1] * (dims[i + 1] > 0 ? dims[i + 1] : 1);
}

static int64_t alignment(const kiln_tensor *t) {
    uintptr_t p = (uintptr_t)kiln__ptr(t);
    return (p & 15u) == 0 ? 16 : (int64_t)kiln_dtype_size(t->dtype);
}

/* The bottom/right padding that gives the output size at this top/left padding (lo:
 * the least that does, the geometry's ph_end/pw_end): the same as the top when that
 * fits (what most engines support), else the least that does; false when only a
 * negative one would (cuDNN cannot express it). */
static bool post_padding(int64_t lo, int64_t stride, int64_t pre, int64_t *post) {
    int64_t hi = lo + stride - 1;
    if (pre >= lo && pre <= hi) *post = pre;
    else if (lo >= 0) *post = lo;
    else if (hi >= 0) *post = 0;
    else return false;
    return true;
}

static bool make_key(const conv_problem *p, bool fused, plan_key *k) {
    memset(k, 0, sizeof *k);
    k->device = p->device;
    k->pass = (int32_t)p->pass;
    k->dtype = (int32_t)p->dt;
    k->fused = fused;
    k->tf32 = p->dt == KILN_F32 && kiln_tf32();
    k->deterministic = kiln_deterministic();
    k->autotune = kiln__conv_autotune();
    const kiln_tensor *t[3] = {p->x, p->w, p->y};
    for (int i = 0; i < 3; i++) {
        tensor_dims(t[i], k->dims[i], k->strides[i]);
        k->align[i] = alignment(t[i]);
    }
    k->align[3] = fused && p->bias ? alignment(p->bias) : 0;
    const kiln_conv_geometry *g = &p->g;
    k->pre[0] = g->ph, k->pre[1] = g->pw;
    k->stride[0] = g->sh, k->stride[1] = g->sw;
    k->dilation[0] = g->dh, k->dilation[1] = g->dw;
    if (!post_padding(g->ph_end, g->sh, g->ph, &k->post[0]) || !post_padding(g->pw_end, g->sw, g->pw, &k->post[1]))
        return false;
    k->workspace_limit = (int64_t)kiln__conv_workspace_limit();
    return true;
}

enum { UID_X = 1, UID_W, UID_Y, UID_B, UID_CONV_OUT, UID_ADD_OUT };

static cudnnStatus_t make_tensor(desc_bag *bag, cudnnBackendDescriptor_t *out, int64_t uid, cudnnDataType_t dt,
                                 const int64_t *dims, const int64_t *strides, int64_t align, bool is_virtual) {
    cudnnStatus_t s = bag_new(bag, CUDNN_BACKEND_TENSOR_DESCRIPTOR, out);
    bool v = is_virtual;
    if (s == CUDNN_STATUS_SUCCESS) s = SET(*out, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
    if (s == CUDNN_STATUS_SUCCESS) s = SET(*out, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
    if (s == CUDNN_STATUS_SUCCESS) s = SET(*out, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides);
    if (s == CUDNN_STATUS_SUCCESS) s = SET(*out, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    if (s == CUDNN_STATUS_SUCCESS) s = SET(*out, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    if (s == CUDNN_STATUS_SUCCESS && v) s = SET(*out, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &v);
    if (s == CUDNN_STATUS_SUCCESS) s = dnn.BackendFinalize(*out);
    return s;
}

static cudnnStatus_t make_pointwise(desc_bag *bag, cudnnBackendDescriptor_t *op, cudnnPointwiseMode_t mode,
                                    cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                                    cudnnBackendDescriptor_t y) {
    cudnnBackendDescriptor_t pw;
    cudnnDataType_t prec = CUDNN_DATA_FLOAT;
    cudnnStatus_t s = bag_new(bag, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, &pw);
    if (s == CUDNN_STATUS_SUCCESS) s = SET(pw, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    if (s == CUDNN_STATUS_SUCCESS) s = SET(pw, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    if (s == CUDNN_STATUS_SUCCESS) s = dnn.BackendFinalize(pw);
    if (s == CUDNN_STATUS_SUCCESS) s = bag_new(bag, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, op);
    if (s == CUDNN_STATUS_SUCCESS)
        s = SET(*op, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw);
    if (s == CUDNN_STATUS_SUCCESS) s = SET(*op, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    if (s == CUDNN_STATUS_SUCCESS && b)
        s = SET(*op, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    if (s == CUDNN_STATUS_SUCCESS) s = SET(*op, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    if (s == CUDNN_STATUS_SUCCESS) s = dnn.BackendFinalize(*op);
    return s;
}

/* The operation graph of the key: one convolution pass, or forward + bias + ReLU. */
static build_result make_graph(const plan_key *k, cudnnHandle_t handle, desc_bag *bag,
                               cudnnBackendDescriptor_t *graph) {
    cudnnDataType_t dt = k->dtype == KILN_F32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
    cudnnBackendDescriptor_t tx, tw, ty, conv, ops[3];
    int nops = 1;
    DNN_BUILD(make_tensor(bag, &tx, UID_X, dt, k->dims[0], k->strides[0], k->align[0], false));
    DNN_BUILD(make_tensor(bag, &tw, UID_W, dt, k->dims[1], k->strides[1], k->align[1], false));
    DNN_BUILD(make_tensor(bag, &ty, UID_Y, dt, k->dims[2], k->strides[2], k->align[2], false));

    int64_t spatial = 2;
    cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    DNN_BUILD(bag_new(bag, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR, &conv));
    DNN_BUILD(SET(conv, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt));
    DNN_BUILD(SET(conv, CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode));
    DNN_BUILD(SET(conv, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &spatial));
    DNN_BUILD(SET(conv, CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, k->dilation));
    DNN_BUILD(SET(conv, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, k->stride));
    DNN_BUILD(SET(conv, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, k->pre));
    DNN_BUILD(SET(conv, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, k->post));
    DNN_BUILD(dnn.BackendFinalize(conv));

    /* alpha 1, beta 0, in the compute type */
    float af = 1.0f, bf = 0.0f;
    double ad = 1.0, bd = 0.0;
    cudnnBackendAttributeType_t st = k->dtype == KILN_F32 ? CUDNN_TYPE_FLOAT : CUDNN_TYPE_DOUBLE;
    const void *alpha = k->dtype == KILN_F32 ? (const void *)&af : (const void *)&ad;
    const void *beta = k->dtype == KILN_F32 ? (const void *)&bf : (const void *)&bd;
    cudnnBackendDescriptor_t op;
    switch ((kiln_conv_pass)k->pass) {
    case KILN_CONV_FORWARD: {
        cudnnBackendDescriptor_t out = ty;
        if (k->fused) /* the convolution writes a virtual tensor that bias and ReLU consume */
            DNN_BUILD(make_tensor(bag, &out, UID_CONV_OUT, CUDNN_DATA_FLOAT, k->dims[2], k->strides[2], 16, true));
        DNN_BUILD(bag_new(bag, CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, &op));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tx));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tw));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &out));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &conv));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, st, 1, alpha));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, st, 1, beta));
        DNN_BUILD(dnn.BackendFinalize(op));
        ops[0] = op;
        if (k->fused) {
            int64_t c = k->dims[2][1];
            int64_t bdims[4] = {1, c, 1, 1}, bstr[4] = {c, 1, 1, 1};
            cudnnBackendDescriptor_t tb, added, add_op, relu_op;
            DNN_BUILD(make_tensor(bag, &tb, UID_B, dt, bdims, bstr, k->align[3], false));
            DNN_BUILD(make_tensor(bag, &added, UID_ADD_OUT, CUDNN_DATA_FLOAT, k->dims[2], k->strides[2], 16, true));
            DNN_BUILD(make_pointwise(bag, &add_op, CUDNN_POINTWISE_ADD, out, tb, added));
            DNN_BUILD(make_pointwise(bag, &relu_op, CUDNN_POINTWISE_RELU_FWD, added, NULL, ty));
            ops[1] = add_op;
            ops[2] = relu_op;
            nops = 3;
        }
        break;
    }
    case KILN_CONV_BACKWARD_INPUT:
        DNN_BUILD(bag_new(bag, CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR, &op));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tx));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tw));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &ty));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &conv));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, st, 1, alpha));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA, st, 1, beta));
        DNN_BUILD(dnn.BackendFinalize(op));
        ops[0] = op;
        break;
    case KILN_CONV_BACKWARD_WEIGHT:
        DNN_BUILD(bag_new(bag, CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR, &op));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tx));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &tw));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &ty));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                      &conv));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA, st, 1, alpha));
        DNN_BUILD(SET(op, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA, st, 1, beta));
        DNN_BUILD(dnn.BackendFinalize(op));
        ops[0] = op;
        break;
    }
    DNN_BUILD(bag_new(bag, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, graph));
    DNN_BUILD(SET(*graph, CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, nops, ops));
    DNN_BUILD(SET(*graph, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle));
    DNN_BUILD(dnn.BackendFinalize(*graph));
    return BUILD_OK;
}

/* Whether an engine's numerical notes allow it under the key's math mode and the
 * deterministic flag. */
static bool engine_allowed(const plan_key *k, cudnnBackendDescriptor_t cfg) {
    cudnnBackendDescriptor_t engine;
    if (dnn.BackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &engine) != CUDNN_STATUS_SUCCESS) return false;
    int64_t n = 0, got = 0;
    cudnnBackendNumericalNote_t notes[32];
    bool ok = dnn.BackendGetAttribute(cfg, CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &got,
                                      &engine) == CUDNN_STATUS_SUCCESS &&
              dnn.BackendGetAttribute(engine, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE, 32, &n,
                                      notes) == CUDNN_STATUS_SUCCESS;
    for (int64_t i = 0; ok && i < n && i < 32; i++) {
        if (notes[i] == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC && k->deterministic) ok = false;
        /* strict float32: no TF32 tensor cores, no down-converted inputs or reductions */
        if (k->dtype == KILN_F32 && !k->tf32 &&
            (notes[i] == CUDNN_NUMERICAL_NOTE_TENSOR_CORE || notes[i] == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS ||
             notes[i] == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION))
            ok = false;
    }
    dnn.BackendDestroyDescriptor(engine);
    return ok;
}

typedef struct {
    int64_t uids[4];
    void *ptrs[4];
    int n;
} variant_data;

static kiln_status execute(cudnnHandle_t h, cudnnBackendDescriptor_t plan, const variant_data *v, void *ws) {
    cudnnBackendDescriptor_t pack;
    DNN_CHECK(dnn.BackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack));
    cudnnStatus_t s = SET(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, v->n, v->uids);
    if (s == CUDNN_STATUS_SUCCESS) s = SET(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, v->n, v->ptrs);
    if (s == CUDNN_STATUS_SUCCESS) s = SET(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws);
    if (s == CUDNN_STATUS_SUCCESS) s = dnn.BackendFinalize(pack);
    if (s == CUDNN_STATUS_SUCCESS) s = dnn.BackendExecute(h, plan, pack);
    dnn.BackendDestroyDescriptor(pack);
    DNN_CHECK(s); /* the first failing statement's status */
    return KILN_STATUS_OK;
}

#define AUTOTUNE_CANDIDATES 4

/* Times each candidate plan (one warm-up, three runs) with CUDA events; the index of
 * the fastest, or -1 with an error recorded. */
static int autotune(cudnnHandle_t h, cudnnBackendDescriptor_t *plans, const int64_t *ws, int n,
                    const variant_data *v, int dev, void *stream) {
    cudaEvent_t t0, t1;
    cudaError_t ce = cudaEventCreate(&t0);
    if (ce != cudaSuccess) {
        kiln__cuda_fail(ce, "cudaEventCreate(&t0)", __FILE__, __LINE__);
        return -1;
    }
    if ((ce = cudaEventCreate(&t1)) != cudaSuccess) {
        cudaEventDestroy(t0);
        kiln__cuda_fail(ce, "cudaEventCreate(&t1)", __FILE__, __LINE__);
        return -1;
    }
    int best = -1;
    float best_ms = 0;
    for (int i = 0; i < n; i++) {
        void *w = NULL;
        if (workspace(dev, ws[i], &w) != KILN_STATUS_OK) continue; /* too big for memory now: skip */
        if (execute(h, plans[i], v, w) != KILN_STATUS_OK) continue;
        float ms = 0;
        bool ok = cudaEventRecord(t0, (cudaStream_t)stream) == cudaSuccess;
        for (int r = 0; ok && r < 3; r++) ok = execute(h, plans[i], v, w) == KILN_STATUS_OK;
        ok = ok && cudaEventRecord(t1, (cudaStream_t)stream) == cudaSuccess &&
             cudaEventSynchronize(t1) == cudaSuccess && cudaEventElapsedTime(&ms, t0, t1) == cudaSuccess;
        if (ok && (best < 0 || ms < best_ms)) {
            best = i;
            best_ms = ms;
        }
    }
    cudaGetLastError(); /* a candidate that failed to run is not the caller's error */
    cudaEventDestroy(t0);
    cudaEventDestroy(t1);
    if (best < 0) kiln__error(KILN_STATUS_BACKEND, "conv2d: autotuning found no cuDNN plan that runs");
    return best;
}

/* Builds the entry's plan (heuristics mode A, then the fallback mode); an entry
 * left unusable means cuDNN cannot run this key. */
static build_result build_plan(plan_entry *e, cudnnHandle_t h, const variant_data *v, int dev, void *stream) {
    cudnnBackendDescriptor_t graph;
    build_result r = make_graph(&e->key, h, &e->keep, &graph);
    if (r != BUILD_OK) return r;
    const cudnnBackendHeurMode_t modes[2] = {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK};
    bool tune = e->key.autotune;
    for (int m = 0; m < 2 && !e->usable; m++) {
        cudnnBackendDescriptor_t heur;
        DNN_BUILD(bag_new(&e->keep, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur));
        DNN_BUILD(SET(heur, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph));
        DNN_BUILD(SET(heur, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &modes[m]));
        if (dnn.BackendFinalize(heur) != CUDNN_STATUS_SUCCESS) continue;
        int64_t count = 0;
        if (dnn.BackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count,
                                    NULL) != CUDNN_STATUS_SUCCESS || count <= 0)
            continue;
        if (count > 32) count = 32;
        cudnnBackendDescriptor_t cfgs[32];
        int64_t made = 0;
        for (; made < count; made++)
            if (dnn.BackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfgs[made]) != CUDNN_STATUS_SUCCESS)
                break;
        int64_t got = 0;
        if (dnn.BackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, made, &got,
                                    cfgs) != CUDNN_STATUS_SUCCESS)
            got = 0;
        /* candidates in the heuristic's order: allowed, finalizable, within the workspace limit */
        cudnnBackendDescriptor_t plans[AUTOTUNE_CANDIDATES], plan_cfg[AUTOTUNE_CANDIDATES];
        int64_t ws[AUTOTUNE_CANDIDATES];
        int np = 0, want = tune ? AUTOTUNE_CANDIDATES : 1;
        for (int64_t i = 0; i < got && np < want; i++) {
            if (!engine_allowed(&e->key, cfgs[i])) {
                kiln__conv_stat_add(KILN_CONV_STAT_SKIPPED, 1);
                continue;
            }
            cudnnBackendDescriptor_t plan;
            if (dnn.BackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &plan) != CUDNN_STATUS_SUCCESS)
                continue;
            int64_t need = 0, n = 0;
            bool ok = SET(plan, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &h) == CUDNN_STATUS_SUCCESS &&
                      SET(plan, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &cfgs[i]) ==
                          CUDNN_STATUS_SUCCESS &&
                      dnn.BackendFinalize(plan) == CUDNN_STATUS_SUCCESS &&
                      dnn.BackendGetAttribute(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n,
                                              &need) == CUDNN_STATUS_SUCCESS;
            if (ok && need > e->key.workspace_limit) {
                kiln__conv_stat_add(KILN_CONV_STAT_SKIPPED, 1);
                ok = false;
            }
            if (!ok) {
                dnn.BackendDestroyDescriptor(plan);
                continue;
            }
            plans[np] = plan;
            plan_cfg[np] = cfgs[i];
            ws[np] = need;
            np++;
        }
        int pick = np > 0 ? 0 : -1;
        if (np > 1) {
            pick = autotune(h, plans, ws, np, v, dev, stream);
            if (pick < 0) pick = 0;
            else kiln__conv_stat_add(KILN_CONV_STAT_AUTOTUNED, 1);
        }
        for (int i = 0; i < np; i++)
            if (i != pick) dnn.BackendDestroyDescriptor(plans[i]);
        for (int64_t i = 0; i < made; i++)
            if (pick < 0 || cfgs[i] != plan_cfg[pick]) dnn.BackendDestroyDescriptor(cfgs[i]);
        if (pick >= 0) {
            e->plan = plans[pick];
            e->workspace = ws[pick];
            e->usable = true;
            /* the plan refers to its engine config: keep it (and the plan) with the entry */
            if (e->keep.n + 2 <= KEEP_MAX) {
                e->keep.d[e->keep.n++] = plan_cfg[pick];
                e->keep.d[e->keep.n++] = plans[pick];
            }
        }
    }
    if (!e->usable) snprintf(g_why, sizeof g_why, "no cuDNN engine%s%s accepted the graph",
                             e->key.deterministic ? " (deterministic only)" : "",
                             e->key.dtype == KILN_F32 && !e->key.tf32 ? " (strict float32, no TF32)" : "");
    return BUILD_OK;
}

static kiln_status dnn_handle(int dev, void *stream, cudnnHandle_t *out) {
    if (!g_dnn_handle[dev]) DNN_CHECK(dnn.Create(&g_dnn_handle[dev]));
    DNN_CHECK(dnn.SetStream(g_dnn_handle[dev], (cudaStream_t)stream));
    *out = g_dnn_handle[dev];
    return KILN_STATUS_OK;
}

static void describe_key(const plan_key *k, char *buf, size_t n) {
    snprintf(buf, n, "%s%s %s x(%lld,%lld,%lld,%lld) w(%lld,%lld,%lld,%lld) y(%lld,%lld,%lld,%lld) stride %lldx%lld "
             "pad %lld/%lld,%lld/%lld dilation %lldx%lld", kiln_conv_pass_name((kiln_conv_pass)k->pass),
             k->fused ? "+bias+relu" : "",
             k->dtype == KILN_F32 ? "float32" : "float64", (long long)k->dims[0][0], (long long)k->dims[0][1],
             (long long)k->dims[0][2], (long long)k->dims[0][3], (long long)k->dims[1][0], (long long)k->dims[1][1],
             (long long)k->dims[1][2], (long long)k->dims[1][3], (long long)k->dims[2][0], (long long)k->dims[2][1],
             (long long)k->dims[2][2], (long long)k->dims[2][3], (long long)k->stride[0], (long long)k->stride[1],
             (long long)k->pre[0], (long long)k->post[0], (long long)k->pre[1], (long long)k->post[1],
             (long long)k->dilation[0], (long long)k->dilation[1]);
}

/* Runs p through a cached cuDNN plan. *ran false (no error) when cuDNN cannot run
 * it here: absent, disabled, or not supported for this key. */
static kiln_status run_cudnn(const conv_problem *p, bool fused, void *stream, bool *ran) {
    *ran = false;
    plan_key key;
    if (!make_key(p, fused, &key)) return KILN_STATUS_OK; /* negative padding: cuDNN cannot say it */
    pthread_mutex_lock(&g_lock);
    kiln_status st = KILN_STATUS_OK;
    plan_entry *e = NULL;
    if (!dnn_load()) goto out;
    cudnnHandle_t h = NULL;
    if ((st = dnn_handle(p->device, stream, &h)) != KILN_STATUS_OK) goto out;
    variant_data v = {{UID_X, UID_W, UID_Y, UID_B},
                      {kiln__ptr(p->x), kiln__ptr(p->w), kiln__ptr(p->y), fused ? kiln__ptr(p->bias) : NULL},
                      fused ? 4 : 3};
    for (e = g_cache; e; e = e->next)
        if (memcmp(&e->key, &key, sizeof key) == 0) break;
    if (e) {
        kiln__conv_stat_add(KILN_CONV_STAT_HIT, 1);
    } else {
        kiln__conv_stat_add(KILN_CONV_STAT_MISS, 1);
        e = calloc(1, sizeof *e);
        if (!e) {
            st = kiln__error(KILN_STATUS_OOM, "conv2d: out of host memory for a cuDNN plan-cache entry");
            goto out;
        }
        e->key = key;
        g_why[0] = 0;
        build_result r = build_plan(e, h, &v, p->device, stream);
        if (r == BUILD_ERROR) {
            bag_free(&e->keep);
            free(e);
            e = NULL;
            st = kiln_last_status();
            goto out;
        }
        if (!e->usable) {
            bag_free(&e->keep); /* remember only the answer */
            char d[400];
            describe_key(&key, d, sizeof d);
            if (!fused)
                log_once(&g_logged_unsupported, "cuDNN cannot run conv2d %s (%s); it runs as im2col + cuBLAS (and so "
                         "may other shapes; kiln_cuda_conv_stats_get counts them)", d, g_why);
        }
        e->next = g_cache;
        g_cache = e;
        kiln__conv_stat_add(KILN_CONV_STAT_ENTRIES, 1);
    }
    if (e->usable) {
        void *ws = NULL;
        if ((st = workspace(p->device, e->workspace, &ws)) == KILN_STATUS_OK &&
            (st = execute(h, e->plan, &v, ws)) == KILN_STATUS_OK) {
            *ran = true;
            kiln__conv_stat_add(fused ? KILN_CONV_STAT_FUSED_RUN : KILN_CONV_STAT_CUDNN_RUN, 1);
        }
    }
out:
    pthread_mutex_unlock(&g_lock);
    return st;
}

static void cache_clear_locked(void) {
    for (plan_entry *e = g_cache, *next; e; e = next) {
        next = e->next;
        bag_free(&e->keep);
        free(e);
        kiln__conv_stat_add(KILN_CONV_STAT_ENTRIES, -1);
    }
    g_cache = NULL;
}

bool kiln_cuda_cudnn_available(void) {
    pthread_mutex_lock(&g_lock);
    bool ok = dnn_load();
    pthread_mutex_unlock(&g_lock);
    return ok;
}

#else /* no cuDNN headers at build time */

static kiln_status run_cudnn(const conv_problem *p, bool fused, void *stream, bool *ran) {
    (void)p, (void)fused, (void)stream;
    *ran = false;
    log_once(&g_logged_absent, "this kiln was built without cuDNN; convolutions run as im2col + cuBLAS");
    return KILN_STATUS_OK;
}
static void cache_clear_locked(void) {}
bool kiln_cuda_cudnn_available(void) { return false; }

#endif /* KILN_HAVE_CUDNN */

void kiln_cuda_conv_cache_clear(void) {
    pthread_mutex_lock(&g_lock);
    cache_clear_locked();
#ifdef KILN_HAVE_CUDNN
    for (int d = 0; d < MAX_DEVICES; d++)
        if (g_ws[d]) {
            kiln_pool_free(kiln__cuda_pool(d), g_ws[d]);
            kiln__conv_stat_add(KILN_CONV_STAT_WORKSPACE, -(int64_t)g_ws_size[d]);
            g_ws[d] = NULL;
            g_ws_size[d] = 0;
        }
#endif
    pthread_mutex_unlock(&g_lock);
}

/* ---- dispatch ------------------------------------------------------------------------------ */

/* Replaces an input that neither path can read as it is with a packed copy
 * (*owned set when it must be freed); cuDNN reads packed permutations, the
 * fallback only contiguous tensors. */
static kiln_status dense_input(kiln_tensor **t, bool contiguous_only, kiln_tensor **owned) {
    *owned = NULL;
#ifdef KILN_HAVE_CUDNN
    if (!contiguous_only && packed(*t)) return KILN_STATUS_OK;
#else
    (void)contiguous_only;
#endif
    if (kiln_tensor_is_contiguous(*t)) return KILN_STATUS_OK;
    kiln_tensor *c = kiln_cpu_dense(*t);
    if (!c) return kiln_last_status();
    *owned = c;
    *t = c;
    return KILN_STATUS_OK;
}

static kiln_status run_conv(conv_problem p) {
    kiln_tensor *out = written(&p);
    p.g = kiln_conv_geometry_plan(p.x->shape, p.w->shape, p.y->shape, p.at);
    void *stream = stream_of(out);
    p.device = out->device.index;
    p.dt = out->dtype;
    if (p.device < 0 || p.device >= MAX_DEVICES)
        return kiln__error(KILN_STATUS_DEVICE, "conv2d: CUDA device %d is beyond the %d kiln supports", p.device,
                           MAX_DEVICES);
    if (p.dt != KILN_F32 && p.dt != KILN_F64)
        return kiln__error(KILN_STATUS_DTYPE, "conv2d: CUDA convolutions take float32 or float64, not %s",
                           kiln_dtype_name(p.dt));
    kiln_tensor **ins[3] = {&p.x, &p.w, &p.y}, *owned[4] = {NULL, NULL, NULL, NULL};
    kiln_status st = KILN_STATUS_OK;
    for (int i = 0; i < 3 && st == KILN_STATUS_OK; i++)
        if (*ins[i] != out) st = dense_input(ins[i], false, &owned[i]);
    if (st == KILN_STATUS_OK && p.bias) st = dense_input(&p.bias, true, &owned[3]);
    bool ran = false, fused_ran = false;
    if (st == KILN_STATUS_OK && kiln__conv_cudnn_enabled()) {
        if (p.try_fused && p.bias && p.relu && p.dt == KILN_F32) { /* the fused graph computes in float */
            st = run_cudnn(&p, true, stream, &fused_ran);
            ran = fused_ran;
        }
        if (st == KILN_STATUS_OK && !ran) st = run_cudnn(&p, false, stream, &ran);
    } else if (st == KILN_STATUS_OK) {
        log_once(&g_logged_disabled, "cuDNN is switched off (KILN_CUDNN=0 or kiln_cuda_set_cudnn(false)); "
                 "convolutions run as im2col + cuBLAS");
    }
    if (st == KILN_STATUS_OK && !ran) {
        /* the fallback reads contiguous tensors only */
        for (int i = 0; i < 3 && st == KILN_STATUS_OK; i++) {
            if (*ins[i] == out || kiln_tensor_is_contiguous(*ins[i])) continue;
            kiln_tensor *c = kiln_cpu_dense(*ins[i]);
            if (!c) {
                st = kiln_last_status();
                break;
            }
            if (owned[i]) kiln_tensor_free(owned[i]);
            owned[i] = *ins[i] = c;
        }
        if (st == KILN_STATUS_OK) st = run_fallback(&p, stream);
        if (st == KILN_STATUS_OK) kiln__conv_stat_add(KILN_CONV_STAT_FALLBACK_RUN, 1);
    }
    if (st == KILN_STATUS_OK && !fused_ran && (p.bias || p.relu))
        st = kiln_cuda_launch_bias_act(p.dt, kiln__ptr(out), p.bias ? kiln__ptr(p.bias) : NULL, out->shape[0],
                                       out->shape[1], out->shape[2] * out->shape[3], p.relu, stream);
    for (int i = 0; i < 4; i++)
        if (owned[i]) kiln_tensor_free(owned[i]);
    return st;
}

kiln_status kiln_cuda_conv2d(const kiln_op_call *call) {
    conv_problem p = {.pass = KILN_CONV_FORWARD, .x = call->in[0], .w = call->in[1], .y = call->out,
                      .bias = call->nin > 2 ? call->in[2] : NULL, .at = call->attrs};
    return run_conv(p);
}

kiln_status kiln_cuda_conv2d_backward_input(const kiln_op_call *call) {
    /* in: gy, w; out: dx */
    conv_problem p = {.pass = KILN_CONV_BACKWARD_INPUT, .x = call->out, .w = call->in[1], .y = call->in[0],
                      .at = call->attrs};
    return run_conv(p);
}

kiln_status kiln_cuda_conv2d_backward_weight(const kiln_op_call *call) {
    /* in: gy, x; out: dw */
    conv_problem p = {.pass = KILN_CONV_BACKWARD_WEIGHT, .x = call->in[1], .w = call->out, .y = call->in[0],
                      .at = call->attrs};
    return run_conv(p);
}

kiln_status kiln_cuda_conv_transpose2d(const kiln_op_call *call) {
    /* x is the conv's output gradient, the result its input gradient, plus the bias */
    conv_problem p = {.pass = KILN_CONV_BACKWARD_INPUT, .x = call->out, .w = call->in[1], .y = call->in[0],
                      .bias = call->nin > 2 ? call->in[2] : NULL, .at = call->attrs};
    return run_conv(p);
}

kiln_status kiln_cuda_conv2d_bias_act(const kiln_op_call *call) {
    const kiln_conv2d_bias_act_attrs *at = call->attrs;
    conv_problem p = {.pass = KILN_CONV_FORWARD, .x = call->in[0], .w = call->in[1], .y = call->out,
                      .bias = call->nin > 2 ? call->in[2] : NULL, .relu = at->relu != 0, .try_fused = true,
                      .at = &at->conv};
    return run_conv(p);
}

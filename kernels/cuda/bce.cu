/* CUDA kernels of bce and bce_with_logits: element-wise (a thread per element over the
 * broadcast operands), with a block reduction and a second pass for 'mean'/'sum'
 * (loss_partials.cuh). Per-element math is kernels/losses_math.h, shared with the CPU
 * (kernels/cpu/bce.c). */
#include "loss_partials.cuh"

namespace {
using namespace kiln_cuda;

/* ---- the shared math, by type -------------------------------------------------------- */
__device__ __forceinline__ float bce_t(float p, float y) { return kiln_bce_f32(p, y); }
__device__ __forceinline__ double bce_t(double p, double y) { return kiln_bce_f64(p, y); }
__device__ __forceinline__ float bce_gi_t(float g, float p, float y) { return kiln_bce_grad_input_f32(g, p, y); }
__device__ __forceinline__ double bce_gi_t(double g, double p, double y) { return kiln_bce_grad_input_f64(g, p, y); }
__device__ __forceinline__ float bce_gt_t(float p) { return kiln_bce_grad_target_f32(p); }
__device__ __forceinline__ double bce_gt_t(double p) { return kiln_bce_grad_target_f64(p); }
__device__ __forceinline__ float bcel_t(float x, float y, float pw) { return kiln_bce_logits_f32(x, y, pw); }
__device__ __forceinline__ double bcel_t(double x, double y, double pw) { return kiln_bce_logits_f64(x, y, pw); }
__device__ __forceinline__ float bcel_gi_t(float x, float y, float pw) { return kiln_bce_logits_grad_input_f32(x, y, pw); }
__device__ __forceinline__ double bcel_gi_t(double x, double y, double pw) {
    return kiln_bce_logits_grad_input_f64(x, y, pw);
}
__device__ __forceinline__ float bcel_gt_t(float x, float pw) { return kiln_bce_logits_grad_target_f32(x, pw); }
__device__ __forceinline__ double bcel_gt_t(double x, double pw) { return kiln_bce_logits_grad_target_f64(x, pw); }
__device__ __forceinline__ float bcel_gpw_t(float x, float y) { return kiln_bce_logits_grad_pos_weight_f32(x, y); }
__device__ __forceinline__ double bcel_gpw_t(double x, double y) { return kiln_bce_logits_grad_pos_weight_f64(x, y); }

/* ---- bce / bce_with_logits --------------------------------------------------------- */
/* iter ops: x, y, w, pw, out (x's shape; unused when reduced). A thread per element;
 * reduced: a double per thread, block sum, one partial per block. */
template <typename T, int LOGITS>
__global__ void bce_fwd_kernel(iter<5> it, const T *x, const T *y, const T *w, const T *pw, T *out, int none,
                               double *partial) {
    double acc = 0;
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < it.n; i += step) {
        int64_t off[5];
        iter_offsets(it, i, off);
        T v = LOGITS ? bcel_t(x[off[0]], y[off[1]], pw ? pw[off[3]] : (T)1) : bce_t(x[off[0]], y[off[1]]);
        if (w) v *= w[off[2]];
        if (none) out[off[4]] = v;
        else acc += v;
    }
    if (!none) {
        acc = block_sum(acc);
        if (threadIdx.x == 0) partial[blockIdx.x] = acc;
    }
}

/* iter ops: out, g, x, y, w, pw. The gradient for wrt, as the CPU's switch (bce in
 * torch's operation order: weight, then / n for 'mean' (nf > 0), then g for the target). */
template <typename T, int LOGITS>
__global__ void bce_bwd_kernel(iter<6> it, T *out, const T *g, const T *x, const T *y, const T *w, const T *pw,
                               int wrt, T scale, T nf) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < it.n; i += step) {
        int64_t off[6];
        iter_offsets(it, i, off);
        T x_ = x[off[2]], y_ = y[off[3]];
        T wt = w ? w[off[4]] : (T)1, pw_ = pw ? pw[off[5]] : (T)1, v;
        if (LOGITS) {
            T g_ = g[off[1]] * scale;
            switch (wrt) {
            case KILN_LOSS_WRT_INPUT: v = wt * bcel_gi_t(x_, y_, pw_); break;
            case KILN_LOSS_WRT_TARGET: v = wt * bcel_gt_t(x_, pw_); break;
            case KILN_LOSS_WRT_WEIGHT: v = bcel_t(x_, y_, pw_); break;
            default: v = wt * bcel_gpw_t(x_, y_); break;
            }
            v = g_ * v;
        } else {
            T g_ = g[off[1]];
            switch (wrt) {
            case KILN_LOSS_WRT_INPUT:
                v = bce_gi_t(g_, x_, y_);
                if (w) v = v * wt;
                if (nf > 0) v = v / nf;
                break;
            case KILN_LOSS_WRT_TARGET:
                v = bce_gt_t(x_);
                if (w) v = v * wt;
                if (nf > 0) v = v / nf;
                v = v * g_;
                break;
            default: v = (g_ * scale) * bce_t(x_, y_); break;
            }
        }
        out[off[0]] = v;
    }
}

/* Absent operands become 0-d descriptors (stride 0 everywhere, never read). */
static kiln_cuda_tensor opt(const kiln_cuda_tensor *t) {
    kiln_cuda_tensor d;
    memset(&d, 0, sizeof d);
    if (t && t->data) d = *t;
    return d;
}

template <typename T>
kiln_status run_bce(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, const kiln_cuda_tensor *y,
                    const kiln_cuda_tensor *w, const kiln_cuda_tensor *pw, int logits, int reduction, void *scratch,
                    void *stream) {
    const char *op = logits ? "bce_with_logits" : "bce";
    bool none = reduction == 0;
    kiln_cuda_tensor wd = opt(w), pd = opt(pw);
    const kiln_cuda_tensor *ops[5] = {x, y, &wd, &pd, none ? out : x};
    iter<5> it;
    make_iter<5>(it, ops);
    if (!none && !scratch)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: the reduced CUDA launch needs scratch", op);
    unsigned grid = none ? grid_for(it.n) : red_grid(it.n);
    if (it.n == 0 && none) return KILN_STATUS_OK;
    const T *xp = (const T *)x->data, *yp = (const T *)y->data, *wp = (const T *)wd.data, *pp = (const T *)pd.data;
    T *o = (T *)out->data;
    double *partial = (double *)scratch;
    if (logits) {
        auto k = bce_fwd_kernel<T, 1>;
        KILN_LAUNCH(k, grid, KILN_CUDA_BLOCK, 0, stream, it, xp, yp, wp, pp, o, (int)none, partial);
    } else {
        auto k = bce_fwd_kernel<T, 0>;
        KILN_LAUNCH(k, grid, KILN_CUDA_BLOCK, 0, stream, it, xp, yp, wp, pp, o, (int)none, partial);
    }
    KILN_LAUNCH_CHECK(op, stream);
    if (none) return KILN_STATUS_OK;
    auto f = finish_kernel<T>;
    KILN_LAUNCH(f, 1, KILN_CUDA_BLOCK, 0, stream, (const double *)partial, (int)grid, 0, (double)it.n,
                (int)(reduction == 1), o);
    KILN_LAUNCH_CHECK(op, stream);
    return KILN_STATUS_OK;
}

template <typename T>
kiln_status run_bce_backward(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g, const kiln_cuda_tensor *x,
                             const kiln_cuda_tensor *y, const kiln_cuda_tensor *w, const kiln_cuda_tensor *pw,
                             int logits, const kiln_bce_attrs *at, void *stream) {
    kiln_cuda_tensor wd = opt(w), pd = opt(pw);
    const kiln_cuda_tensor *ops[6] = {out, g, x, y, &wd, &pd};
    iter<6> it;
    make_iter<6>(it, ops);
    if (it.n == 0) return KILN_STATUS_OK;
    int64_t n = 1;
    for (int d = 0; d < x->ndim; d++) n *= x->shape[d];
    T scale = (T)(at->reduction == 1 ? 1.0 / (double)n : 1.0), nf = (T)(at->reduction == 1 ? (double)n : 0.0);
    T *o = (T *)out->data;
    const T *gp = (const T *)g->data, *xp = (const T *)x->data, *yp = (const T *)y->data;
    const T *wp = (const T *)wd.data, *pp = (const T *)pd.data;
    if (logits) {
        auto k = bce_bwd_kernel<T, 1>;
        KILN_LAUNCH(k, grid_for(it.n), KILN_CUDA_BLOCK, 0, stream, it, o, gp, xp, yp, wp, pp, at->wrt, scale, nf);
    } else {
        auto k = bce_bwd_kernel<T, 0>;
        KILN_LAUNCH(k, grid_for(it.n), KILN_CUDA_BLOCK, 0, stream, it, o, gp, xp, yp, wp, pp, at->wrt, scale, nf);
    }
    KILN_LAUNCH_CHECK(logits ? "bce_with_logits_backward" : "bce_backward", stream);
    return KILN_STATUS_OK;
}

} // namespace

extern "C" {

kiln_status kiln_cuda_launch_bce(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x,
                                 const kiln_cuda_tensor *y, const kiln_cuda_tensor *w,
                                 const kiln_cuda_tensor *pw, int logits, const kiln_bce_attrs *at,
                                 void *scratch, void *stream) {
    if (x->dtype == KILN_F32) return run_bce<float>(out, x, y, w, pw, logits, at->reduction, scratch, stream);
    if (x->dtype == KILN_F64) return run_bce<double>(out, x, y, w, pw, logits, at->reduction, scratch, stream);
    return bad_dtype(logits ? "bce_with_logits" : "bce", x->dtype);
}

kiln_status kiln_cuda_launch_bce_backward(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                          const kiln_cuda_tensor *x, const kiln_cuda_tensor *y,
                                          const kiln_cuda_tensor *w, const kiln_cuda_tensor *pw, int logits,
                                          const kiln_bce_attrs *at, void *stream) {
    if (x->dtype == KILN_F32) return run_bce_backward<float>(out, g, x, y, w, pw, logits, at, stream);
    if (x->dtype == KILN_F64) return run_bce_backward<double>(out, g, x, y, w, pw, logits, at, stream);
    return bad_dtype(logits ? "bce_with_logits_backward" : "bce_backward", x->dtype);
}

} // extern "C"

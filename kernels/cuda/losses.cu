/* CUDA kernels of the losses: bce and bce_with_logits (element-wise, with a block
 * reduction and a second pass for 'mean'/'sum'), cross_entropy fused with its
 * log-softmax and nll_loss (a group of lanes per position walking the class axis
 * on its stride: one pass forward, one pass backward), and one_hot. Per-element
 * math is kernels/losses_math.h, shared with the CPU; f32 cross_entropy on dense
 * operands takes the float32 path (ce32_*: kernels/fast_math.h, a thread per pixel,
 * the operations of kernels/cpu/cross_entropy_f32.c in their order). No atomics anywhere: partial
 * sums go to scratch per block and one block adds them in a fixed order, so
 * results are deterministic whatever kiln_deterministic() says. */
#include "axis_plan.cuh"
#include "launch_ops2.h"
#include "../fast_math.h"

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

/* Blocks of a reduced launch (each writes one partial). */
static inline unsigned red_grid(int64_t work) {
    unsigned g = grid_for(work);
    return g < KILN_CUDA_LOSS_MAX_PARTIALS ? g : KILN_CUDA_LOSS_MAX_PARTIALS;
}

/* One block: out = a or a / (b or n), with a (and b) the sums of np partials
 * (b's partials follow a's). */
template <typename T>
__global__ void finish_kernel(const double *partial, int np, int with_div, double n, int mean, T *out) {
    double a = 0, b = 0;
    for (int i = threadIdx.x; i < np; i += blockDim.x) {
        a += partial[i];
        if (with_div) b += partial[np + i];
    }
    a = block_sum(a);
    b = block_sum(b);
    if (threadIdx.x == 0) *out = (T)(mean ? a / (with_div ? b : n) : a);
}

/* A block's (loss, weight) sums as its partial pair: losses first, weights after all the
 * blocks' losses (finish_kernel's layout). */
__device__ __forceinline__ void store_loss_partials(double acc, double wsum, double *partial) {
    acc = block_sum(acc);
    wsum = block_sum(wsum);
    if (threadIdx.x == 0) {
        partial[blockIdx.x] = acc;
        partial[gridDim.x + blockIdx.x] = wsum;
    }
}

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

/* ---- cross_entropy / nll_loss / one_hot -------------------------------------------- */
/* The geometry of kernels/cpu/cross_entropy.c in elements: position axes (all but the
 * class axis) with the strides of x, target, g and out there, and the class-axis
 * strides. Position-shaped operands lack the class axis. */
struct ce_plan {
    int P;
    int64_t pshape[KILN_MAX_DIMS];
    int64_t xs[KILN_MAX_DIMS], ts[KILN_MAX_DIMS], gs[KILN_MAX_DIMS], os[KILN_MAX_DIMS];
    int64_t xcs, tcs, ocs, ws, C, npos;
};

static void make_ce_plan(ce_plan &p, const kiln_cuda_tensor *x, const kiln_cuda_tensor *t, int prob,
                         const kiln_cuda_tensor *g, const kiln_cuda_tensor *w, const kiln_cuda_tensor *out) {
    int cax = x->ndim == 1 ? 0 : 1;
    p.C = x->shape[cax];
    p.xcs = x->strides[cax];
    p.tcs = prob ? t->strides[cax] : 0;
    p.ws = w ? w->strides[0] : 0;
    bool out_like_x = out->ndim == x->ndim;
    p.ocs = out_like_x ? out->strides[cax] : 0;
    p.P = 0;
    p.npos = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (d == cax) continue;
        int j = p.P++, pd = d < cax ? d : d - 1;
        p.pshape[j] = x->shape[d];
        p.xs[j] = x->strides[d];
        p.ts[j] = prob ? t->strides[d] : t->strides[pd];
        p.gs[j] = g && g->ndim ? g->strides[pd] : 0;
        p.os[j] = out->ndim == 0 ? 0 : out_like_x ? out->strides[d] : out->strides[pd];
        p.npos *= x->shape[d];
    }
}

__device__ __forceinline__ void ce_offsets(const ce_plan &p, int64_t q, int64_t &xo, int64_t &to, int64_t &go,
                                           int64_t &oo) {
    xo = to = go = oo = 0;
    for (int j = p.P - 1; j >= 0; j--) {
        int64_t s = p.pshape[j], nq = q / s, i = q - nq * s;
        q = nq;
        xo += i * p.xs[j];
        to += i * p.ts[j];
        go += i * p.gs[j];
        oo += i * p.os[j];
    }
}

/* The max over the class axis and log(sum exp(x - max)), in double (the CPU's LSE). */
template <typename T, int G>
__device__ __forceinline__ void group_lse(const T *xp, int64_t xcs, int64_t C, int lane, double &lmax, double &lsum) {
    double m = -INFINITY, s = 0;
    for (int64_t c = lane; c < C; c += G) m = fmax(m, (double)xp[c * xcs]);
    m = group_fmax<G>(m);
    for (int64_t c = lane; c < C; c += G) s += exp((double)xp[c * xcs] - m);
    s = group_sum<G>(s);
    lmax = m;
    lsum = log(s);
}

#define WC(c) (w ? (double)w[(c) * p.ws] : 1.0)
#define XC(c) ((double)xp[(c) * p.xcs])
/* log-probability of class c: (x - max) - log(sum), as the CPU's LP */
#define LP(c) ((XC(c) - lmax) - lsum)
#define TC(c) ((double)tp[(c) * p.tcs])

/* Forward: a group per position computes its log-sum-exp (unless LOGP: x holds
 * log-probabilities) and its loss in the same pass. Reduced: lane 0 of each group
 * adds (loss, weight) to its thread's sums, then one partial pair per block. */
template <typename T, int G, int LOGP>
__global__ void ce_fwd_kernel(ce_plan p, const T *x, const void *target, const T *w, T *out, int prob,
                              int64_t ignore, double eps, int none, double *partial) {
    group_pos<G> gp;
    double acc = 0, wsum = 0;
    const int64_t C = p.C;
    for (int64_t q = gp.id; q < p.npos; q += gp.step) {
        int64_t xo, to, go, oo;
        ce_offsets(p, q, xo, to, go, oo);
        const T *xp = x + xo;
        double lmax = 0, lsum = 0;
        if (!LOGP) group_lse<T, G>(xp, p.xcs, C, gp.lane, lmax, lsum);
        double loss = 0, wt_used = 0;
        if (prob) {
            const T *tp = (const T *)target + to;
            for (int64_t c = gp.lane; c < C; c += G) loss -= WC(c) * (TC(c) * (1 - eps) + eps / (double)C) * LP(c);
            loss = group_sum<G>(loss);
            wt_used = 1;
        } else {
            int64_t t = ((const int64_t *)target)[to];
            if (t != ignore) {
                double wt = WC(t);
                loss = -(1 - eps) * wt * LP(t);
                if (eps > 0) {
                    double sm = 0;
                    for (int64_t c = gp.lane; c < C; c += G) sm -= WC(c) * LP(c);
                    sm = group_sum<G>(sm);
                    loss += eps / (double)C * sm;
                }
                wt_used = wt;
            }
        }
        if (gp.lane == 0) {
            if (none) out[oo] = (T)loss;
            else {
                acc += loss;
                wsum += wt_used;
            }
        }
    }
    if (!none) store_loss_partials(acc, wsum, partial);
}

/* 'mean' over class indices divides by the summed weights of the targets that are
 * not ignored: a thread per position, one partial per block. */
template <typename T>
__global__ void ce_weight_sum_kernel(ce_plan p, const int64_t *target, const T *w, int64_t ignore, double *partial) {
    double acc = 0;
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; q < p.npos; q += step) {
        int64_t xo, to, go, oo;
        ce_offsets(p, q, xo, to, go, oo);
        int64_t t = target[to];
        if (t != ignore) acc += WC(t);
    }
    acc = block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

/* Backward: one pass per position writes d(loss)/dx (softmax - smoothed target,
 * weighted) or, for probability targets with wrt target, d(loss)/dtarget. The
 * 'mean' scale is 1 / *div when div is given (device-side weight sum), else scale_h. */
template <typename T, int G, int LOGP>
__global__ void ce_bwd_kernel(ce_plan p, const T *g, const T *x, const void *target, const T *w, T *out, int prob,
                              int wrt, int64_t ignore, double eps, const double *div, double scale_h) {
    group_pos<G> gp;
    const double scale = div ? 1.0 / *div : scale_h;
    const int64_t C = p.C;
    for (int64_t q = gp.id; q < p.npos; q += gp.step) {
        int64_t xo, to, go, oo;
        ce_offsets(p, q, xo, to, go, oo);
        const T *xp = x + xo;
        T *op = out + oo;
        double gi = (double)g[go] * scale;
        double lmax = 0, lsum = 0;
        if (!LOGP) group_lse<T, G>(xp, p.xcs, C, gp.lane, lmax, lsum);
        if (prob) {
            const T *tp = (const T *)target + to;
            if (wrt == KILN_LOSS_WRT_TARGET) {
                for (int64_t c = gp.lane; c < C; c += G) op[c * p.ocs] = (T)(-gi * (1 - eps) * WC(c) * LP(c));
                continue;
            }
            double wtsum = 0;
            for (int64_t c = gp.lane; c < C; c += G) wtsum += WC(c) * (TC(c) * (1 - eps) + eps / (double)C);
            wtsum = group_sum<G>(wtsum);
            for (int64_t c = gp.lane; c < C; c += G) {
                double tc = TC(c) * (1 - eps) + eps / (double)C;
                op[c * p.ocs] = (T)(gi * (exp(LP(c)) * wtsum - WC(c) * tc));
            }
            continue;
        }
        int64_t t = ((const int64_t *)target)[to];
        if (t == ignore) {
            for (int64_t c = gp.lane; c < C; c += G) op[c * p.ocs] = (T)0;
            continue;
        }
        double wt = WC(t);
        if (LOGP) {
            for (int64_t c = gp.lane; c < C; c += G) op[c * p.ocs] = (T)(c == t ? -gi * wt : 0.0);
            continue;
        }
        double wall = 0;
        if (eps > 0) {
            for (int64_t c = gp.lane; c < C; c += G) wall += WC(c);
            wall = group_sum<G>(wall);
        }
        for (int64_t c = gp.lane; c < C; c += G) {
            double pc = exp(LP(c));
            double v = (1 - eps) * wt * (pc - (c == t ? 1.0 : 0.0));
            if (eps > 0) v += eps / (double)C * (wall * pc - WC(c));
            op[c * p.ocs] = (T)(gi * v);
        }
    }
}

/* A thread per position writes its C entries (0 or 1) along the class stride. */
template <typename T> __global__ void one_hot_kernel(ce_plan p, const int64_t *target, T *out) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; q < p.npos; q += step) {
        int64_t xo, to, go, oo;
        ce_offsets(p, q, xo, to, go, oo);
        int64_t t = target[to];
        for (int64_t c = 0; c < p.C; c++) out[xo + c * p.xcs] = (T)(c == t ? 1 : 0);
    }
}

#undef WC
#undef XC
#undef LP
#undef TC

/* ---- the float32 path (kiln_ce_f32_path; dense x, target, g and out) ------------------ */
/* x: (N,C,S) dense, pixel q = n S + s; class c of pixel q at n C S + c S + s. */
struct ce32_geo {
    int64_t C, S, npos, wst;
    int64_t ignore;
    float c1, ce; /* 1 - eps and eps / C, rounded once from double */
    int smooth;
};

static bool dense_desc(const kiln_cuda_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 1) continue;
        if (t->strides[i] != s) return false;
        s *= t->shape[i];
    }
    return true;
}

/* Every stride 0: one value expanded (the backward of a sum of 'none' losses). */
static bool one_value_desc(const kiln_cuda_tensor *t) {
    for (int i = 0; i < t->ndim; i++)
        if (t->strides[i] != 0 && t->shape[i] != 1) return false;
    return true;
}

/* g: NULL for the forward; dense, 0-d or one value expanded. */
static bool ce32_applies(const kiln_cuda_tensor *x, const kiln_cuda_tensor *t, const kiln_cuda_tensor *g,
                         const kiln_cuda_tensor *out, const kiln_ce_attrs *at, int log_probs, ce32_geo &p) {
    if (x->dtype != KILN_F32 || log_probs || at->prob_target || !dense_desc(x) || !dense_desc(t)) return false;
    if ((g && g->ndim && !dense_desc(g) && !one_value_desc(g)) || (out->ndim && !dense_desc(out))) return false;
    int cax = x->ndim == 1 ? 0 : 1;
    p.C = x->shape[cax];
    p.S = 1;
    for (int d = 2; d < x->ndim; d++) p.S *= x->shape[d];
    p.npos = (x->ndim == 1 ? 1 : x->shape[0]) * p.S;
    p.wst = 0;
    p.ignore = at->ignore_index;
    p.c1 = (float)(1.0 - at->label_smoothing);
    p.ce = (float)(at->label_smoothing / (double)p.C);
    p.smooth = at->label_smoothing > 0;
    return kiln_ce_f32_path(p.C, p.S);
}

/* The max over classes (v > m keeps a NaN out of it; the sum below gets it), then the
 * sum of exp(x_c - max) in class order. */
__device__ __forceinline__ void ce32_max_sum(const float *xp, int64_t C, int64_t S, float &m, float &s) {
    m = xp[0];
    for (int64_t c = 1; c < C; c++) {
        float v = xp[c * S];
        m = v > m ? v : m;
    }
    s = 0.0f;
    for (int64_t c = 0; c < C; c++) s += kiln_fast_expf(xp[c * S] - m);
}

/* Forward: a thread per pixel; reduced: (loss, weight) summed per thread in double, one
 * partial pair per block, as ce_fwd_kernel. */
__global__ void ce32_fwd_kernel(ce32_geo p, const float *x, const int64_t *target, const float *w, float *out,
                                int none, double *partial) {
    double acc = 0, wsum = 0;
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; q < p.npos; q += step) {
        int64_t n = q / p.S;
        const float *xp = x + n * p.C * p.S + (q - n * p.S);
        float m, s;
        ce32_max_sum(xp, p.C, p.S, m, s);
        float ls = kiln_fast_logf(s);
        int64_t t = target[q];
        bool ok = t != p.ignore;
        int64_t tc = ok ? t : 0;
        float wt = w ? w[tc * p.wst] : 1.0f, wv = ok ? wt : 0.0f;
        float l = -(p.c1 * wv) * ((xp[tc * p.S] - m) - ls);
        if (p.smooth) {
            float sm = 0.0f;
            for (int64_t c = 0; c < p.C; c++) sm += (w ? w[c * p.wst] : 1.0f) * ((xp[c * p.S] - m) - ls);
            l = l - p.ce * sm;
        }
        l = ok ? l : 0.0f;
        if (none) out[q] = l;
        else {
            acc += l;
            wsum += wv;
        }
    }
    if (!none) store_loss_partials(acc, wsum, partial);
}

/* Backward wrt the input: g * scale * ((1-eps) w_t (softmax - onehot) + eps/C (sum_c w_c
 * softmax - w_c)), 0 at ignored pixels; scale = 1 / *div ('mean', device-side weight
 * sum) or 1. A thread per pixel. */
__global__ void ce32_bwd_kernel(ce32_geo p, const float *g, int64_t gstep, const float *x, const int64_t *target,
                                const float *w, float *out, const double *div) {
    const float scale = div ? (float)(1.0 / *div) : 1.0f;
    float wall = 0.0f;
    for (int64_t c = 0; c < p.C; c++) wall += w ? w[c * p.wst] : 1.0f;
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; q < p.npos; q += step) {
        int64_t n = q / p.S, off = n * p.C * p.S + (q - n * p.S);
        const float *xp = x + off;
        float *op = out + off;
        float m, s;
        ce32_max_sum(xp, p.C, p.S, m, s);
        float inv = 1.0f / s;
        int64_t t = target[q];
        bool ok = t != p.ignore;
        int64_t tc = ok ? t : -1;
        float wt = w ? w[(ok ? t : 0) * p.wst] : 1.0f, wv = ok ? wt : 0.0f;
        float gi = g[gstep * q] * scale;
        float a = gi * (p.c1 * wv), bs = gi * p.ce;
        for (int64_t c = 0; c < p.C; c++) {
            float pr = kiln_fast_expf(xp[c * p.S] - m) * inv;
            float v = a * (c == tc ? pr - 1.0f : pr);
            if (p.smooth) v = v + bs * (wall * pr - (w ? w[c * p.wst] : 1.0f));
            op[c * p.S] = ok ? v : 0.0f;
        }
    }
}

template <typename T, int G, int LOGP>
void launch_ce_fwd(unsigned grid, void *stream, const ce_plan &p, const T *x, const void *target, const T *w, T *out,
                   const kiln_ce_attrs *at, int none, double *partial) {
    auto k = ce_fwd_kernel<T, G, LOGP>;
    KILN_LAUNCH(k, grid, KILN_CUDA_BLOCK, 0, stream, p, x, target, w, out, at->prob_target, at->ignore_index,
                at->label_smoothing, none, partial);
}

template <typename T>
kiln_status run_ce(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, const kiln_cuda_tensor *target,
                   const kiln_cuda_tensor *w, int log_probs, const kiln_ce_attrs *at, void *scratch, void *stream) {
    const char *op = log_probs ? "nll_loss" : "cross_entropy";
    bool none = at->reduction == 0;
    const kiln_cuda_tensor *wd = w && w->data ? w : NULL;
    ce_plan p;
    make_ce_plan(p, x, target, at->prob_target, NULL, wd, out);
    if (!none && !scratch)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: the reduced CUDA launch needs scratch", op);
    if (none && p.npos == 0) return KILN_STATUS_OK;
    int G = pick_group(p.xcs, p.C);
    unsigned grid = none ? group_grid(p.npos, G) : red_grid(p.npos * G);
    const T *xp = (const T *)x->data, *wp = wd ? (const T *)wd->data : NULL;
    T *o = (T *)out->data;
    double *partial = (double *)scratch;
    ce32_geo g32;
    if (ce32_applies(x, target, NULL, out, at, log_probs, g32)) {
        g32.wst = wd ? wd->strides[0] : 0;
        grid = none ? grid_for(g32.npos) : red_grid(g32.npos);
        auto k = ce32_fwd_kernel;
        KILN_LAUNCH(k, grid, KILN_CUDA_BLOCK, 0, stream, g32, (const float *)x->data, (const int64_t *)target->data,
                    (const float *)wp, (float *)o, (int)none, partial);
    } else if (G == 32) {
        if (log_probs) launch_ce_fwd<T, 32, 1>(grid, stream, p, xp, target->data, wp, o, at, none, partial);
        else launch_ce_fwd<T, 32, 0>(grid, stream, p, xp, target->data, wp, o, at, none, partial);
    } else {
        if (log_probs) launch_ce_fwd<T, 1, 1>(grid, stream, p, xp, target->data, wp, o, at, none, partial);
        else launch_ce_fwd<T, 1, 0>(grid, stream, p, xp, target->data, wp, o, at, none, partial);
    }
    KILN_LAUNCH_CHECK(op, stream);
    if (none) return KILN_STATUS_OK;
    /* 'mean': by the summed weights (index targets; the second partials) or by the
     * number of positions (probability targets; each counted 1 there too) */
    auto f = finish_kernel<T>;
    KILN_LAUNCH(f, 1, KILN_CUDA_BLOCK, 0, stream, (const double *)partial, (int)grid, 1, 0.0,
                (int)(at->reduction == 1), o);
    KILN_LAUNCH_CHECK(op, stream);
    return KILN_STATUS_OK;
}

template <typename T, int G, int LOGP>
void launch_ce_bwd(unsigned grid, void *stream, const ce_plan &p, const T *g, const T *x, const void *target,
                   const T *w, T *out, const kiln_ce_attrs *at, const double *div, double scale_h) {
    auto k = ce_bwd_kernel<T, G, LOGP>;
    KILN_LAUNCH(k, grid, KILN_CUDA_BLOCK, 0, stream, p, g, x, target, w, out, at->prob_target, at->wrt,
                at->ignore_index, at->label_smoothing, div, scale_h);
}

template <typename T>
kiln_status run_ce_backward(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g, const kiln_cuda_tensor *x,
                            const kiln_cuda_tensor *target, const kiln_cuda_tensor *w, int log_probs,
                            const kiln_ce_attrs *at, void *scratch, void *stream) {
    const char *op = log_probs ? "nll_loss_backward" : "cross_entropy_backward";
    const kiln_cuda_tensor *wd = w && w->data ? w : NULL;
    ce_plan p;
    make_ce_plan(p, x, target, at->prob_target, g, wd, out);
    if (p.npos == 0) return KILN_STATUS_OK;
    const T *xp = (const T *)x->data, *wp = wd ? (const T *)wd->data : NULL, *gp = (const T *)g->data;
    T *o = (T *)out->data;
    const double *div = NULL;
    double scale_h = 1.0;
    if (at->reduction == 1 && at->prob_target) scale_h = 1.0 / (double)p.npos;
    else if (at->reduction == 1) {
        if (!scratch) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: the 'mean' CUDA launch needs scratch", op);
        double *partial = (double *)scratch, *d = partial + 2 * KILN_CUDA_LOSS_MAX_PARTIALS;
        unsigned grid = red_grid(p.npos);
        auto k = ce_weight_sum_kernel<T>;
        KILN_LAUNCH(k, grid, KILN_CUDA_BLOCK, 0, stream, p, (const int64_t *)target->data, wp, at->ignore_index,
                    partial);
        KILN_LAUNCH_CHECK(op, stream);
        auto f = finish_kernel<double>;
        KILN_LAUNCH(f, 1, KILN_CUDA_BLOCK, 0, stream, (const double *)partial, (int)grid, 0, 0.0, 0, d);
        KILN_LAUNCH_CHECK(op, stream);
        div = d;
    }
    ce32_geo g32;
    if (ce32_applies(x, target, g, out, at, log_probs, g32)) {
        g32.wst = wd ? wd->strides[0] : 0;
        auto k = ce32_bwd_kernel;
        KILN_LAUNCH(k, grid_for(g32.npos), KILN_CUDA_BLOCK, 0, stream, g32, (const float *)gp,
                    (int64_t)(g->ndim == 0 || one_value_desc(g) ? 0 : 1), (const float *)xp,
                    (const int64_t *)target->data,
                    (const float *)wp, (float *)o, div);
        KILN_LAUNCH_CHECK(op, stream);
        return KILN_STATUS_OK;
    }
    int G = pick_group(p.xcs, p.C);
    unsigned grid = group_grid(p.npos, G);
    if (G == 32) {
        if (log_probs) launch_ce_bwd<T, 32, 1>(grid, stream, p, gp, xp, target->data, wp, o, at, div, scale_h);
        else launch_ce_bwd<T, 32, 0>(grid, stream, p, gp, xp, target->data, wp, o, at, div, scale_h);
    } else {
        if (log_probs) launch_ce_bwd<T, 1, 1>(grid, stream, p, gp, xp, target->data, wp, o, at, div, scale_h);
        else launch_ce_bwd<T, 1, 0>(grid, stream, p, gp, xp, target->data, wp, o, at, div, scale_h);
    }
    KILN_LAUNCH_CHECK(op, stream);
    return KILN_STATUS_OK;
}

} // namespace

extern "C" {

kiln_status KILN_CU(cuda_launch_bce)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x,
                                     const kiln_cuda_tensor *y, const kiln_cuda_tensor *w,
                                     const kiln_cuda_tensor *pw, int logits, const kiln_bce_attrs *at,
                                     void *scratch, void *stream) {
    if (x->dtype == KILN_F32) return run_bce<float>(out, x, y, w, pw, logits, at->reduction, scratch, stream);
    if (x->dtype == KILN_F64) return run_bce<double>(out, x, y, w, pw, logits, at->reduction, scratch, stream);
    return bad_dtype(logits ? "bce_with_logits" : "bce", x->dtype);
}

kiln_status KILN_CU(cuda_launch_bce_backward)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                              const kiln_cuda_tensor *x, const kiln_cuda_tensor *y,
                                              const kiln_cuda_tensor *w, const kiln_cuda_tensor *pw, int logits,
                                              const kiln_bce_attrs *at, void *stream) {
    if (x->dtype == KILN_F32) return run_bce_backward<float>(out, g, x, y, w, pw, logits, at, stream);
    if (x->dtype == KILN_F64) return run_bce_backward<double>(out, g, x, y, w, pw, logits, at, stream);
    return bad_dtype(logits ? "bce_with_logits_backward" : "bce_backward", x->dtype);
}

kiln_status KILN_CU(cuda_launch_cross_entropy)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x,
                                               const kiln_cuda_tensor *target, const kiln_cuda_tensor *w,
                                               int log_probs, const kiln_ce_attrs *at, void *scratch, void *stream) {
    if (x->dtype == KILN_F32) return run_ce<float>(out, x, target, w, log_probs, at, scratch, stream);
    if (x->dtype == KILN_F64) return run_ce<double>(out, x, target, w, log_probs, at, scratch, stream);
    return bad_dtype(log_probs ? "nll_loss" : "cross_entropy", x->dtype);
}

kiln_status KILN_CU(cuda_launch_cross_entropy_backward)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                                        const kiln_cuda_tensor *x, const kiln_cuda_tensor *target,
                                                        const kiln_cuda_tensor *w, int log_probs,
                                                        const kiln_ce_attrs *at, void *scratch, void *stream) {
    if (x->dtype == KILN_F32) return run_ce_backward<float>(out, g, x, target, w, log_probs, at, scratch, stream);
    if (x->dtype == KILN_F64) return run_ce_backward<double>(out, g, x, target, w, log_probs, at, scratch, stream);
    return bad_dtype(log_probs ? "nll_loss_backward" : "cross_entropy_backward", x->dtype);
}

kiln_status KILN_CU(cuda_launch_one_hot)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *target, void *stream) {
    ce_plan p;
    make_ce_plan(p, out, target, 0, NULL, NULL, out);
    if (p.npos == 0) return KILN_STATUS_OK;
    if (out->dtype == KILN_F32) {
        auto k = one_hot_kernel<float>;
        KILN_LAUNCH(k, grid_for(p.npos), KILN_CUDA_BLOCK, 0, stream, p, (const int64_t *)target->data, (float *)out->data);
    } else if (out->dtype == KILN_F64) {
        auto k = one_hot_kernel<double>;
        KILN_LAUNCH(k, grid_for(p.npos), KILN_CUDA_BLOCK, 0, stream, p, (const int64_t *)target->data,
                    (double *)out->data);
    } else {
        return bad_dtype("one_hot", out->dtype);
    }
    KILN_LAUNCH_CHECK("one_hot", stream);
    return KILN_STATUS_OK;
}

} // extern "C"

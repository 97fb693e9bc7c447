/* CUDA kernels of cross_entropy fused with its log-softmax, nll_loss and one_hot: a group
 * of lanes per position walks the class axis on its stride (one pass forward, one pass
 * backward); reduced losses sum per block and then in one block (loss_partials.cuh). f32
 * cross_entropy on dense operands takes the float32 path (ce32_*: kernels/fast_math.h, a
 * thread per pixel, the operations of kernels/cpu/cross_entropy_f32.c in their order).
 * Which path a call takes, and its geometry, is kernels/cross_entropy_geometry.h's plan,
 * the CPU's too. */
#include "axis_plan.cuh"
#include "loss_partials.cuh"
#include "../cross_entropy_geometry.h"
#include "../fast_math.h"

namespace {
using namespace kiln_cuda;

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

/* ---- cross_entropy / nll_loss / one_hot -------------------------------------------- */
/* The call's geometry (kernels/cross_entropy_geometry.h, the CPU's too), strides in
 * elements. Absent operands are NULL (a weight descriptor with data NULL is absent). */
static void plan(kiln_ce_geometry &p, const kiln_cuda_tensor *x, const kiln_cuda_tensor *t,
                 const kiln_cuda_tensor *g, const kiln_cuda_tensor *w, const kiln_cuda_tensor *out,
                 const kiln_ce_attrs *at, int log_probs) {
    kiln_ce_operand xo = {x->ndim, x->shape, x->strides, 1}, to = {t->ndim, t->shape, t->strides, 1};
    kiln_ce_operand oo = {out->ndim, out->shape, out->strides, 1}, go = {0, NULL, NULL, 1}, wo = go;
    if (g) go = {g->ndim, g->shape, g->strides, 1};
    if (w) wo = {w->ndim, w->shape, w->strides, 1};
    kiln_ce_geometry_plan(&p, &xo, &to, g ? &go : NULL, w ? &wo : NULL, &oo, at, x->dtype == KILN_F32, log_probs);
}

__device__ __forceinline__ void ce_offsets(const kiln_ce_geometry &p, int64_t q, int64_t &xo, int64_t &to,
                                           int64_t &go, int64_t &oo) {
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
__global__ void ce_fwd_kernel(kiln_ce_geometry p, const T *x, const void *target, const T *w, T *out, int prob,
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
__global__ void ce_weight_sum_kernel(kiln_ce_geometry p, const int64_t *target, const T *w, int64_t ignore,
                                     double *partial) {
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
__global__ void ce_bwd_kernel(kiln_ce_geometry p, const T *g, const T *x, const void *target, const T *w, T *out,
                              int prob, int wrt, int64_t ignore, double eps, const double *div, double scale_h) {
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
template <typename T> __global__ void one_hot_kernel(kiln_ce_geometry p, const int64_t *target, T *out) {
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
/* p: the plan's f32 view; x (N,C,S) dense, pixel q = n S + s, class c of pixel q at
 * n C S + c S + s. */

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
__global__ void ce32_fwd_kernel(kiln_ce_f32_geometry p, const float *x, const int64_t *target, const float *w,
                                float *out, int none, double *partial) {
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
__global__ void ce32_bwd_kernel(kiln_ce_f32_geometry p, const float *g, const float *x, const int64_t *target,
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
        float gi = g[p.gstep * q] * scale;
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
void launch_ce_fwd(unsigned grid, void *stream, const kiln_ce_geometry &p, const T *x, const void *target, const T *w,
                   T *out, const kiln_ce_attrs *at, int none, double *partial) {
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
    kiln_ce_geometry p;
    plan(p, x, target, NULL, wd, out, at, log_probs);
    if (!none && !scratch)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: the reduced CUDA launch needs scratch", op);
    if (none && p.npos == 0) return KILN_STATUS_OK;
    int G = pick_group(p.xcs, p.C);
    unsigned grid = none ? group_grid(p.npos, G) : red_grid(p.npos * G);
    const T *xp = (const T *)x->data, *wp = wd ? (const T *)wd->data : NULL;
    T *o = (T *)out->data;
    double *partial = (double *)scratch;
    if (p.f32_path) {
        grid = none ? grid_for(p.f32.npos) : red_grid(p.f32.npos);
        auto k = ce32_fwd_kernel;
        KILN_LAUNCH(k, grid, KILN_CUDA_BLOCK, 0, stream, p.f32, (const float *)x->data, (const int64_t *)target->data,
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
void launch_ce_bwd(unsigned grid, void *stream, const kiln_ce_geometry &p, const T *g, const T *x, const void *target,
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
    kiln_ce_geometry p;
    plan(p, x, target, g, wd, out, at, log_probs);
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
    if (p.f32_path) {
        auto k = ce32_bwd_kernel;
        KILN_LAUNCH(k, grid_for(p.f32.npos), KILN_CUDA_BLOCK, 0, stream, p.f32, (const float *)gp, (const float *)xp,
                    (const int64_t *)target->data, (const float *)wp, (float *)o, div);
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

kiln_status kiln_cuda_launch_cross_entropy(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x,
                                           const kiln_cuda_tensor *target, const kiln_cuda_tensor *w,
                                           int log_probs, const kiln_ce_attrs *at, void *scratch, void *stream) {
    if (x->dtype == KILN_F32) return run_ce<float>(out, x, target, w, log_probs, at, scratch, stream);
    if (x->dtype == KILN_F64) return run_ce<double>(out, x, target, w, log_probs, at, scratch, stream);
    return bad_dtype(log_probs ? "nll_loss" : "cross_entropy", x->dtype);
}

kiln_status kiln_cuda_launch_cross_entropy_backward(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                                    const kiln_cuda_tensor *x, const kiln_cuda_tensor *target,
                                                    const kiln_cuda_tensor *w, int log_probs,
                                                    const kiln_ce_attrs *at, void *scratch, void *stream) {
    if (x->dtype == KILN_F32) return run_ce_backward<float>(out, g, x, target, w, log_probs, at, scratch, stream);
    if (x->dtype == KILN_F64) return run_ce_backward<double>(out, g, x, target, w, log_probs, at, scratch, stream);
    return bad_dtype(log_probs ? "nll_loss_backward" : "cross_entropy_backward", x->dtype);
}

kiln_status kiln_cuda_launch_one_hot(const kiln_cuda_tensor *out, const kiln_cuda_tensor *target, void *stream) {
    kiln_ce_geometry p;
    plan(p, out, target, NULL, NULL, out, NULL, 0);
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

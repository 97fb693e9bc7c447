/* CUDA softmax and log_softmax over any axis, forward and backward, on the strides
 * as they are (the channel axis of NCHW runs without a permute). A thread per
 * position walks the axis (NCHW channels), or a warp per position with shuffle
 * reductions (axis contiguous in memory); see axis_plan.cuh. Max subtracted, sums in
 * double, the CPU kernel's operations in its order per lane, so the thread path
 * matches kernels/cpu/softmax.c bit for bit and the warp path to rounding. */
#include "axis_plan.cuh"
#include "launch_softmax.h"

namespace {
using namespace kiln_cuda;

/* ops: 0 = y, 1 = x. */
template <typename T, int G> __global__ void softmax_fwd_kernel(axis_plan<2> p, T *out, const T *x, int log_) {
    group_pos<G> gp;
    const int64_t L = p.len, ys = p.ast[0], xs = p.ast[1];
    for (int64_t q = gp.id; q < p.npos; q += gp.step) {
        int64_t off[2];
        axis_offsets(p, q, off);
        T *y = out + off[0];
        const T *xr = x + off[1];
        double m = -INFINITY, s = 0;
        for (int64_t c = gp.lane; c < L; c += G) m = nanmax(m, (double)xr[c * xs]);
        m = group_nanmax<G>(m);
        for (int64_t c = gp.lane; c < L; c += G) s += exp((double)xr[c * xs] - m);
        s = group_sum<G>(s);
        if (log_) {
            /* (x - max) - log(sum), the CPU's order: max + log(sum) would round log(sum) away */
            double ls = log(s);
            for (int64_t c = gp.lane; c < L; c += G) y[c * ys] = (T)(((double)xr[c * xs] - m) - ls);
        } else {
            /* the CPU stores exp in T first, then scales it: the same two roundings */
            double inv = 1.0 / s;
            for (int64_t c = gp.lane; c < L; c += G) y[c * ys] = (T)((double)(T)exp((double)xr[c * xs] - m) * inv);
        }
    }
}

/* ops: 0 = dx, 1 = g, 2 = y. softmax: y * (g - sum(g * y)); log_softmax: g - exp(y) * sum(g). */
template <typename T, int G>
__global__ void softmax_bwd_kernel(axis_plan<3> p, T *out, const T *g, const T *y, int log_) {
    group_pos<G> gp;
    const int64_t L = p.len, os = p.ast[0], gs = p.ast[1], ys = p.ast[2];
    for (int64_t q = gp.id; q < p.npos; q += gp.step) {
        int64_t off[3];
        axis_offsets(p, q, off);
        T *o = out + off[0];
        const T *gr = g + off[1], *yr = y + off[2];
        double s = 0;
        for (int64_t c = gp.lane; c < L; c += G) {
            double gv = gr[c * gs];
            s += log_ ? gv : gv * (double)yr[c * ys];
        }
        s = group_sum<G>(s);
        for (int64_t c = gp.lane; c < L; c += G) {
            double gv = gr[c * gs], yv = yr[c * ys];
            o[c * os] = (T)(log_ ? gv - exp(yv) * s : yv * (gv - s));
        }
    }
}

template <typename T>
kiln_status run_fwd(const char *op, const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, int axis, int log_,
                    void *stream) {
    const kiln_cuda_tensor *ops[2] = {out, x};
    axis_plan<2> p;
    make_axis_plan<2>(p, ops, x, axis);
    if (p.len == 0 || p.npos == 0) return KILN_STATUS_OK;
    T *o = (T *)out->data;
    const T *xi = (const T *)x->data;
    if (pick_group(p.ast[1], p.len) == 32) {
        auto k = softmax_fwd_kernel<T, 32>;
        KILN_LAUNCH(k, group_grid(p.npos, 32), KILN_CUDA_BLOCK, 0, stream, p, o, xi, log_);
    } else {
        auto k = softmax_fwd_kernel<T, 1>;
        KILN_LAUNCH(k, group_grid(p.npos, 1), KILN_CUDA_BLOCK, 0, stream, p, o, xi, log_);
    }
    KILN_LAUNCH_CHECK(op, stream);
    return KILN_STATUS_OK;
}

template <typename T>
kiln_status run_bwd(const char *op, const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                    const kiln_cuda_tensor *y, int axis, int log_, void *stream) {
    const kiln_cuda_tensor *ops[3] = {out, g, y};
    axis_plan<3> p;
    make_axis_plan<3>(p, ops, out, axis);
    if (p.len == 0 || p.npos == 0) return KILN_STATUS_OK;
    T *o = (T *)out->data;
    const T *gi = (const T *)g->data, *yi = (const T *)y->data;
    /* y leads the layout choice: g is often an expanded (stride 0) view */
    if (pick_group(p.ast[2], p.len) == 32) {
        auto k = softmax_bwd_kernel<T, 32>;
        KILN_LAUNCH(k, group_grid(p.npos, 32), KILN_CUDA_BLOCK, 0, stream, p, o, gi, yi, log_);
    } else {
        auto k = softmax_bwd_kernel<T, 1>;
        KILN_LAUNCH(k, group_grid(p.npos, 1), KILN_CUDA_BLOCK, 0, stream, p, o, gi, yi, log_);
    }
    KILN_LAUNCH_CHECK(op, stream);
    return KILN_STATUS_OK;
}

} // namespace

extern "C" {

kiln_status kiln_cuda_launch_softmax(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, int axis, int log_,
                                     void *stream) {
    const char *op = log_ ? "log_softmax" : "softmax";
    if (out->dtype == KILN_F32) return run_fwd<float>(op, out, x, axis, log_, stream);
    if (out->dtype == KILN_F64) return run_fwd<double>(op, out, x, axis, log_, stream);
    return bad_dtype(op, out->dtype);
}

kiln_status kiln_cuda_launch_softmax_backward(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                              const kiln_cuda_tensor *y, int axis, int log_, void *stream) {
    const char *op = log_ ? "log_softmax_backward" : "softmax_backward";
    if (out->dtype == KILN_F32) return run_bwd<float>(op, out, g, y, axis, log_, stream);
    if (out->dtype == KILN_F64) return run_bwd<double>(op, out, g, y, axis, log_, stream);
    return bad_dtype(op, out->dtype);
}

} // extern "C"

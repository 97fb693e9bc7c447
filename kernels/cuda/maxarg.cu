/* CUDA argmax, max and max_backward over one axis. argmax: a thread per position
 * walking the axis, or a warp per position combining (value, index) pairs by
 * shuffles with an order-independent rule (the first NaN, else the first maximum),
 * so both paths give the CPU's index exactly. max gathers at those indices;
 * max_backward writes every element of the gradient once (g where the index
 * matches, else 0): no memset pass, no scatter, no atomics. */
#include "axis_plan.cuh"
#include "launch_maxarg_concat.h"

#include <stdlib.h>

namespace {
using namespace kiln_cuda;

/* Does candidate (b, ib) beat (a, ia)? Index -1 is "no element yet". */
template <typename T> __device__ __forceinline__ bool beats(T a, int64_t ia, T b, int64_t ib) {
    if (ib < 0) return false;
    if (ia < 0) return true;
    bool an = a != a, bn = b != b;
    if (an || bn) return an && bn ? ib < ia : bn;
    return b > a || (b == a && ib < ia);
}

/* ops: 0 = out (I64), 1 = x. */
template <typename T, int G> __global__ void argmax_kernel(axis_plan<2> p, int64_t *out, const T *x) {
    group_pos<G> gp;
    const int64_t L = p.len, xs = p.ast[1];
    for (int64_t q = gp.id; q < p.npos; q += gp.step) {
        int64_t off[2];
        axis_offsets(p, q, off);
        const T *xr = x + off[1];
        T best = 0;
        int64_t at = -1;
        for (int64_t c = gp.lane; c < L; c += G) {
            T v = xr[c * xs];
            if (beats(best, at, v, c)) {
                best = v;
                at = c;
            }
            if (v != v) break; /* later indices of this lane cannot beat a NaN */
        }
        for (int o = G / 2; o > 0; o >>= 1) {
            T ob = __shfl_xor_sync(0xffffffffu, best, o, G);
            long long oi = __shfl_xor_sync(0xffffffffu, (long long)at, o, G);
            if (beats(best, at, ob, (int64_t)oi)) {
                best = ob;
                at = oi;
            }
        }
        if (gp.lane == 0) out[off[0]] = at;
    }
}

/* ops: 0 = out, 1 = x, 2 = idx; a thread per position; E is the element's bytes. */
template <typename E> __global__ void max_gather_kernel(axis_plan<3> p, E *out, const E *x, const int64_t *idx) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t q = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; q < p.npos; q += step) {
        int64_t off[3];
        axis_offsets(p, q, off);
        out[off[0]] = x[off[1] + idx[off[2]] * p.ast[1]];
    }
}

/* ops: 0 = out (x's shape), 1 = g, 2 = idx. A thread per element of out: with
 * axis_inner the axis index varies fastest (axis contiguous in out), else the
 * position does (NCHW: neighbouring pixels). */
template <typename T>
__global__ void max_backward_kernel(axis_plan<3> p, int axis_inner, T *out, const T *g, const int64_t *idx) {
    int64_t n = p.npos * p.len, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step) {
        int64_t q, j;
        if (axis_inner) {
            q = e / p.len;
            j = e - q * p.len;
        } else {
            j = e / p.npos;
            q = e - j * p.npos;
        }
        int64_t off[3];
        axis_offsets(p, q, off);
        out[off[0] + j * p.ast[0]] = idx[off[2]] == j ? g[off[1]] : (T)0;
    }
}

template <typename T> kiln_status run_argmax(const axis_plan<2> &p, int64_t *o, const T *x, void *stream) {
    if (pick_group(p.ast[1], p.len) == 32) {
        auto k = argmax_kernel<T, 32>;
        KILN_LAUNCH(k, group_grid(p.npos, 32), KILN_CUDA_BLOCK, 0, stream, p, o, x);
    } else {
        auto k = argmax_kernel<T, 1>;
        KILN_LAUNCH(k, group_grid(p.npos, 1), KILN_CUDA_BLOCK, 0, stream, p, o, x);
    }
    KILN_LAUNCH_CHECK("argmax", stream);
    return KILN_STATUS_OK;
}

template <typename E> kiln_status run_gather(const axis_plan<3> &p, void *o, const void *x, const void *idx,
                                             void *stream) {
    auto k = max_gather_kernel<E>;
    KILN_LAUNCH(k, grid_for(p.npos), KILN_CUDA_BLOCK, 0, stream, p, (E *)o, (const E *)x, (const int64_t *)idx);
    KILN_LAUNCH_CHECK("max", stream);
    return KILN_STATUS_OK;
}

template <typename T> kiln_status run_max_backward(const axis_plan<3> &p, const kiln_cuda_tensor *out,
                                                   const kiln_cuda_tensor *g, const kiln_cuda_tensor *idx,
                                                   void *stream) {
    int64_t inner = p.nk ? llabs(p.kst[0][p.nk - 1]) : INT64_MAX;
    int axis_inner = llabs(p.ast[0]) <= inner;
    auto k = max_backward_kernel<T>;
    KILN_LAUNCH(k, grid_for(p.npos * p.len), KILN_CUDA_BLOCK, 0, stream, p, axis_inner, (T *)out->data,
                (const T *)g->data, (const int64_t *)idx->data);
    KILN_LAUNCH_CHECK("max_backward", stream);
    return KILN_STATUS_OK;
}

} // namespace

extern "C" {

kiln_status kiln_cuda_launch_argmax(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, int axis,
                                    void *stream) {
    const kiln_cuda_tensor *ops[2] = {out, x};
    axis_plan<2> p;
    make_axis_plan<2>(p, ops, x, axis);
    if (p.npos == 0) return KILN_STATUS_OK;
    if (p.len == 0) return kiln__error(KILN_STATUS_SHAPE, "argmax: the reduced axis is empty");
    if (x->dtype == KILN_F32) return run_argmax<float>(p, (int64_t *)out->data, (const float *)x->data, stream);
    if (x->dtype == KILN_F64) return run_argmax<double>(p, (int64_t *)out->data, (const double *)x->data, stream);
    return bad_dtype("argmax", x->dtype);
}

kiln_status kiln_cuda_launch_max(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x,
                                 const kiln_cuda_tensor *idx, int axis, void *stream) {
    const kiln_cuda_tensor *ops[3] = {out, x, idx};
    axis_plan<3> p;
    make_axis_plan<3>(p, ops, x, axis);
    if (p.npos == 0) return KILN_STATUS_OK;
    switch (dtype_size(x->dtype)) {
    case 1: return run_gather<uint8_t>(p, out->data, x->data, idx->data, stream);
    case 2: return run_gather<uint16_t>(p, out->data, x->data, idx->data, stream);
    case 4: return run_gather<uint32_t>(p, out->data, x->data, idx->data, stream);
    default: return run_gather<uint64_t>(p, out->data, x->data, idx->data, stream);
    }
}

kiln_status kiln_cuda_launch_max_backward(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                          const kiln_cuda_tensor *idx, int axis, void *stream) {
    const kiln_cuda_tensor *ops[3] = {out, g, idx};
    axis_plan<3> p;
    make_axis_plan<3>(p, ops, out, axis);
    if (p.npos == 0 || p.len == 0) return KILN_STATUS_OK;
    if (out->dtype == KILN_F32) return run_max_backward<float>(p, out, g, idx, stream);
    if (out->dtype == KILN_F64) return run_max_backward<double>(p, out, g, idx, stream);
    return bad_dtype("max_backward", out->dtype);
}

} // extern "C"

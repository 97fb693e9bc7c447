/* The walk shared by the CUDA kernels that work along one axis (softmax family,
 * max/argmax, the class axis of the losses): a "position" is every index but the
 * axis, and a group of G lanes owns a position. G = 1 is a thread per position that
 * walks the axis with its stride (the NCHW channel axis: neighbouring threads own
 * neighbouring pixels, so every step along C is a coalesced read, no permute);
 * G = 32 is a warp per position with lanes striding the axis and warp-shuffle
 * reductions (the axis contiguous in memory, e.g. the last axis). */
#ifndef KILN_CUDA_AXIS_PLAN_CUH
#define KILN_CUDA_AXIS_PLAN_CUH

#include "common.cuh"

namespace kiln_cuda {

/* Positions = the kept axes (size-1 ones dropped); every operand has strides over
 * them and one stride along the axis (0 where its axis has size 1). */
template <int NOPS> struct axis_plan {
    int nk;
    int64_t npos, len;
    int64_t kshape[KILN_MAX_DIMS];
    int64_t kst[NOPS][KILN_MAX_DIMS];
    int64_t ast[NOPS];
};

/* ref gives the shape (the operand that has the full axis); other operands are
 * right-aligned to it and broadcast where their size is 1 (keepdim results,
 * expanded gradients). */
template <int NOPS>
static void make_axis_plan(axis_plan<NOPS> &p, const kiln_cuda_tensor *const *ops, const kiln_cuda_tensor *ref,
                           int axis) {
    p.nk = 0;
    p.npos = 1;
    p.len = ref->shape[axis];
    for (int d = 0; d < ref->ndim; d++) {
        bool is_axis = d == axis;
        if (!is_axis && ref->shape[d] == 1) continue;
        int64_t st[NOPS];
        for (int k = 0; k < NOPS; k++) {
            int j = d - (ref->ndim - ops[k]->ndim);
            st[k] = (j < 0 || ops[k]->shape[j] == 1) ? 0 : ops[k]->strides[j];
        }
        if (is_axis) {
            for (int k = 0; k < NOPS; k++) p.ast[k] = st[k];
            continue;
        }
        p.kshape[p.nk] = ref->shape[d];
        for (int k = 0; k < NOPS; k++) p.kst[k][p.nk] = st[k];
        p.nk++;
        p.npos *= ref->shape[d];
    }
}

/* Element offsets of every operand at position q (row-major over the kept axes). */
template <int NOPS> __device__ __forceinline__ void axis_offsets(const axis_plan<NOPS> &p, int64_t q, int64_t *off) {
    for (int k = 0; k < NOPS; k++) off[k] = 0;
    for (int d = p.nk - 1; d >= 0; d--) {
        int64_t s = p.kshape[d], nq = q / s, i = q - nq * s;
        q = nq;
        for (int k = 0; k < NOPS; k++) off[k] += i * p.kst[k][d];
    }
}

/* Warp per position when the axis is contiguous in memory and long enough to
 * keep most lanes busy; otherwise a thread per position. */
#define KILN_WARP_ROW_MIN 16
static inline int pick_group(int64_t axis_stride, int64_t len) {
    return (axis_stride == 1 || axis_stride == -1) && len >= KILN_WARP_ROW_MIN ? 32 : 1;
}

/* Grid for npos positions at G lanes each. */
static inline unsigned group_grid(int64_t npos, int G) { return grid_for(npos * G); }

/* Reductions over a group of G lanes by xor butterflies: every lane ends with the
 * same value (a + b == b + a in IEEE, so the lanes agree bit for bit). Every lane
 * of the warp must call them when G > 1. */
template <int G> __device__ __forceinline__ double group_sum(double v) {
    for (int o = G / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o, G);
    return v;
}
/* max that lets NaN through (the CPU softmax's and torch's). */
__device__ __forceinline__ double nanmax(double a, double b) { return (a >= b || a != a) ? a : b; }
template <int G> __device__ __forceinline__ double group_nanmax(double v) {
    for (int o = G / 2; o > 0; o >>= 1) v = nanmax(v, __shfl_xor_sync(0xffffffffu, v, o, G));
    return v;
}
/* fmax ignores NaN (the CPU cross-entropy's log-sum-exp max). */
template <int G> __device__ __forceinline__ double group_fmax(double v) {
    for (int o = G / 2; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o, G));
    return v;
}

/* This thread's group, lane, and the number of groups in the grid. */
template <int G> struct group_pos {
    int64_t id, step;
    int lane;
    __device__ __forceinline__ group_pos() {
        int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
        id = t / G;
        lane = (int)(t % G);
        step = (int64_t)gridDim.x * blockDim.x / G;
    }
};

} // namespace kiln_cuda

#endif

/* Shared pieces of kiln's CUDA kernels: the launch macro (<<<>>> under nvcc, the
 * emulator under a host compiler), the strided iterator the element-wise kernels
 * walk, dtype conversions that match the CPU's bit for bit, and the warp-shuffle
 * block reduction. Included by every .cu file of kernels/cuda. */
#ifndef KILN_CUDA_COMMON_CUH
#define KILN_CUDA_COMMON_CUH

#if defined(__CUDACC__)
#include <cuda_runtime.h>
#define KILN_LAUNCH(kernel, grid, block, shmem, stream, ...) \
    kernel<<<(grid), (block), (shmem), (cudaStream_t)(stream)>>>(__VA_ARGS__)
#elif defined(KILN_CUDA_EMULATION)
#include "../emu/cuda_emu.h"
#define KILN_LAUNCH(kernel, grid, block, shmem, stream, ...) \
    KILN_EMU_LAUNCH(kernel, grid, block, shmem, stream, __VA_ARGS__)
#else
#error "kernels/cuda sources need nvcc or -DKILN_CUDA_EMULATION"
#endif

/* Dynamic shared memory (the launch's shmem bytes) as an array of T. */
#if defined(__CUDACC__)
#define KILN_DYNAMIC_SHARED(T, name) extern __shared__ __align__(16) unsigned char kiln_dyn_smem_[]; \
    T *name = reinterpret_cast<T *>(kiln_dyn_smem_)
#else
#define KILN_DYNAMIC_SHARED(T, name) T *name = static_cast<T *>(::kiln_emu::dynamic_shared())
#endif

#include "launch.h"
#include "../elementwise_math.h"
#include "../dtype_math.h"

#include <stdint.h>
#include <string.h>

/* After every launch: a launch error (bad configuration, no device) becomes a kiln
 * error naming the op; in sync-debug mode the stream is synchronised too. */
#define KILN_LAUNCH_CHECK(op, stream)                                                                     \
    do {                                                                                                  \
        kiln_status kiln_s_ = kiln_cuda_launch_check((op), (void *)(stream), __FILE__, __LINE__);         \
        if (kiln_s_ != KILN_STATUS_OK) return kiln_s_;                                                    \
    } while (0)

#define KILN_CUDA_BLOCK 256
#define KILN_CUDA_MAX_GRID 8192 /* grid-stride loops cover the rest */

namespace kiln_cuda {

static inline unsigned grid_for(int64_t work, int block = KILN_CUDA_BLOCK) {
    int64_t g = (work + block - 1) / block;
    if (g < 1) g = 1;
    if (g > KILN_CUDA_MAX_GRID) g = KILN_CUDA_MAX_GRID;
    return (unsigned)g;
}

/* NOPS operands walked in lockstep over one shape; operand 0 is the output.
 * Strides are in elements; axes of size 1 are dropped and axes contiguous for
 * every operand merged, so a contiguous op is one flat axis. */
template <int NOPS> struct iter {
    int ndim;
    int64_t n;
    int64_t shape[KILN_MAX_DIMS];
    int64_t stride[NOPS][KILN_MAX_DIMS];
};

/* Host side: operand k broadcast to ops[0]'s shape, then merged. Returns true when
 * every operand is contiguous (one axis, unit strides), the vector-load case. */
template <int NOPS> static bool make_iter(iter<NOPS> &it, const kiln_cuda_tensor *const *ops) {
    const kiln_cuda_tensor *out = ops[0];
    int nd = out->ndim;
    int64_t st[NOPS][KILN_MAX_DIMS];
    it.n = 1;
    for (int i = 0; i < nd; i++) it.n *= out->shape[i];
    for (int k = 0; k < NOPS; k++) {
        int off = nd - ops[k]->ndim;
        for (int i = 0; i < nd; i++) {
            int j = i - off;
            st[k][i] = (j < 0 || (ops[k]->shape[j] == 1 && out->shape[i] != 1)) ? 0 : ops[k]->strides[j];
        }
    }
    int n = 0;
    for (int i = 0; i < nd; i++) {
        if (out->shape[i] == 1) continue;
        if (n > 0) {
            bool merge = true;
            for (int k = 0; k < NOPS; k++)
                if (it.stride[k][n - 1] != st[k][i] * out->shape[i]) merge = false;
            if (merge) {
                it.shape[n - 1] *= out->shape[i];
                for (int k = 0; k < NOPS; k++) it.stride[k][n - 1] = st[k][i];
                continue;
            }
        }
        it.shape[n] = out->shape[i];
        for (int k = 0; k < NOPS; k++) it.stride[k][n] = st[k][i];
        n++;
    }
    if (n == 0) {
        it.shape[0] = it.n;
        for (int k = 0; k < NOPS; k++) it.stride[k][0] = 1;
        n = 1;
    }
    it.ndim = n;
    if (n != 1) return false;
    for (int k = 0; k < NOPS; k++)
        if (it.stride[k][0] != 1 && it.n > 1) return false;
    return true;
}

static inline bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }

/* Element offsets of every operand for linear index i (row-major over it.shape). */
template <int NOPS> __device__ __forceinline__ void iter_offsets(const iter<NOPS> &it, int64_t i, int64_t *off) {
    for (int k = 0; k < NOPS; k++) off[k] = 0;
    for (int d = it.ndim - 1; d >= 0; d--) {
        int64_t s = it.shape[d];
        int64_t q = i / s, idx = i - q * s;
        i = q;
        for (int k = 0; k < NOPS; k++) off[k] += idx * it.stride[k][d];
    }
}

/* 16 bytes of T, loaded and stored as one vector access. */
template <typename T> struct alignas(16) vec16 {
    T v[16 / sizeof(T)];
};

/* ---- the shared per-element math, by type ------------------------------------------ */
__device__ __forceinline__ float unary_t(int k, float x, float a, float b) { return kiln_unary_f32(k, x, a, b); }
__device__ __forceinline__ double unary_t(int k, double x, double a, double b) { return kiln_unary_f64(k, x, a, b); }
__device__ __forceinline__ float unary_grad_t(int k, float g, float x, float y, float a, float b) {
    return kiln_unary_grad_f32(k, g, x, y, a, b);
}
__device__ __forceinline__ double unary_grad_t(int k, double g, double x, double y, double a, double b) {
    return kiln_unary_grad_f64(k, g, x, y, a, b);
}
__device__ __forceinline__ float binary_t(int k, float x, float y) { return kiln_binary_f32(k, x, y); }
__device__ __forceinline__ double binary_t(int k, double x, double y) { return kiln_binary_f64(k, x, y); }
__device__ __forceinline__ float binary_grad_t(int k, int side, float g, float x, float y) {
    return kiln_binary_grad_f32(k, side, g, x, y);
}
__device__ __forceinline__ double binary_grad_t(int k, int side, double g, double x, double y) {
    return kiln_binary_grad_f64(k, side, g, x, y);
}

/* ---- dtype conversions: kernels/dtype_math.h, shared with the CPU ------------------------- */
__host__ __device__ __forceinline__ double load_as_double(const char *p, int dt) { return kiln_load_as_double(p, dt); }
__host__ __device__ __forceinline__ void store_from_double(char *p, int dt, double v) { kiln_store_from_double(p, dt, v); }

static inline size_t dtype_size(int dt) { return kiln_dtype_size((kiln_dtype)dt); }

/* The error of a kernel asked for a dtype it does not compute (op names the op). */
static inline kiln_status bad_dtype(const char *op, int dt) {
    return kiln__error(KILN_STATUS_DTYPE, "%s: the CUDA kernel computes f32 and f64, not %s", op,
                       kiln_dtype_name((kiln_dtype)dt));
}

/* OK for f32 and f64, the dtypes the float kernels are instantiated for; else bad_dtype. */
static inline kiln_status check_float(const char *op, int dt) {
    return dt == KILN_F32 || dt == KILN_F64 ? KILN_STATUS_OK : bad_dtype(op, dt);
}

/* ---- block reduction ----------------------------------------------------------------- */
/* Sum of v over the block (blockDim.x a multiple of 32): shuffles within each warp,
 * warp totals through shared memory, then one warp. The result is valid in thread 0.
 * Every thread of the block must call it; it ends with a barrier so it can be
 * called again at once. */
__device__ __forceinline__ double block_sum(double v) {
    __shared__ double warp_total[32];
    unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) warp_total[warp] = v;
    __syncthreads();
    if (warp == 0) {
        unsigned nwarps = (blockDim.x + 31) / 32;
        v = lane < nwarps ? warp_total[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    }
    __syncthreads();
    return v;
}

/* The NCHW planes of a 2-d window op (pooling, upsampling): batch and channels of `in`,
 * the input's and the output's height and width, and `in`'s strides in elements. Each op's
 * geometry extends it with its own fields. */
struct plane_geom {
    int64_t n, c, h, w, ho, wo;
    int64_t xs[4];
};

static inline void set_planes(plane_geom &g, const kiln_cuda_tensor *in, int64_t h, int64_t w, int64_t ho,
                              int64_t wo) {
    g.n = in->shape[0];
    g.c = in->shape[1];
    g.h = h;
    g.w = w;
    g.ho = ho;
    g.wo = wo;
    for (int i = 0; i < 4; i++) g.xs[i] = in->strides[i];
}

} // namespace kiln_cuda

#endif

/* The CUDA emulator: lets kiln's kernel sources (the .cu files of kernels/cuda, ordinary CUDA
 * C++) compile with the host C++ compiler so CI runs them without a GPU. Each
 * block's threads run as cooperative fibers (kernels/emu/cuda_emu.cpp), so
 * __syncthreads is a real barrier, __shared__ memory is per block and warp shuffles
 * exchange values between the 32 lanes of a warp. See docs/cuda-emulation.md. */
#ifndef KILN_CUDA_EMU_H
#define KILN_CUDA_EMU_H

#ifdef __CUDACC__
#error "cuda_emu.h is for host compilers; nvcc builds use the real CUDA runtime"
#endif

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---- qualifiers --------------------------------------------------------------- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
/* One instance per host thread; blocks of a launch run one after another on that
 * thread, so a static local is exactly one block's shared memory at a time. */
#define __shared__ static thread_local
#define __restrict__ __restrict
#define __ldg(p) (*(p))

/* ---- vector and index types ------------------------------------------------------- */
struct uint3 {
    unsigned int x, y, z;
};
struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct alignas(16) float4 {
    float x, y, z, w;
};
struct alignas(8) float2 {
    float x, y;
};
struct alignas(16) double2 {
    double x, y;
};
struct alignas(16) int4 {
    int x, y, z, w;
};
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline double2 make_double2(double x, double y) { return double2{x, y}; }

namespace kiln_emu {
/* The position of the fiber now running (set by the scheduler before each switch). */
extern thread_local uint3 thread_idx, block_idx;
extern thread_local dim3 block_dim, grid_dim;
}
#define threadIdx (::kiln_emu::thread_idx)
#define blockIdx (::kiln_emu::block_idx)
#define blockDim (::kiln_emu::block_dim)
#define gridDim (::kiln_emu::grid_dim)
#define warpSize 32

/* ---- the runtime API subset the kernel sources use --------------------------------- */
typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorLaunchFailure = 719,
} cudaError_t;
typedef struct CUstream_st *cudaStream_t;

cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorName(cudaError_t e);
const char *cudaGetErrorString(cudaError_t e);
static inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaPeekAtLastError(); }
static inline cudaError_t cudaDeviceSynchronize(void) { return cudaPeekAtLastError(); }

/* ---- device intrinsics -------------------------------------------------------------- */
/* Correctly rounded arithmetic: plain operations on the host (no FMA contraction
 * happens on x86-64 without -mfma, and kernels use these where it matters). */
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }

namespace kiln_emu {
/* __syncthreads: waits until every live thread of the block arrives; threads that
 * arrive from different call sites are reported as a divergent barrier. */
void syncthreads(const char *file, int line);
/* Waits for the lanes of mask in the caller's warp (lanes that exited or do not
 * exist are not waited for). */
void syncwarp(unsigned mask);
/* Publishes 8 bytes for this lane, waits for the warp, returns the bytes published
 * by src_lane (a lane that did not take part is an emulation error). */
uint64_t exchange(unsigned mask, uint64_t mine, int src_lane);
unsigned ballot(unsigned mask, int pred);
unsigned lane_id(void);
unsigned active_mask(void);

/* Runs grid x block fibers of thunk(ctx); records launch errors for cudaGetLastError. */
void launch(dim3 grid, dim3 block, size_t shmem, void (*thunk)(void *), void *ctx);
/* The dynamic shared memory of the running block (poisoned with 0xff at block start). */
void *dynamic_shared(void);

template <class F> void launch_fn(dim3 grid, dim3 block, size_t shmem, F &f) {
    launch(grid, block, shmem, [](void *c) { (*static_cast<F *>(c))(); }, (void *)&f);
}

template <class T> static inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8, "shuffles move at most 8 bytes");
    uint64_t u = 0;
    memcpy(&u, &v, sizeof v);
    return u;
}
template <class T> static inline T from_bits(uint64_t u) {
    T v;
    memcpy(&v, &u, sizeof v);
    return v;
}
} // namespace kiln_emu

#define __syncthreads() ::kiln_emu::syncthreads(__FILE__, __LINE__)
static inline void __syncwarp(unsigned mask = 0xffffffffu) { kiln_emu::syncwarp(mask); }
static inline unsigned __activemask(void) { return kiln_emu::active_mask(); }
static inline unsigned __ballot_sync(unsigned mask, int pred) { return kiln_emu::ballot(mask, pred); }
static inline int __any_sync(unsigned mask, int pred) { return kiln_emu::ballot(mask, pred) != 0; }
static inline int __all_sync(unsigned mask, int pred) {
    return (kiln_emu::ballot(mask, pred) & mask) == (kiln_emu::ballot(mask, 1) & mask);
}

/* Shuffles within segments of width lanes, as the CUDA programming guide defines them. */
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    int lane = (int)kiln_emu::lane_id();
    int seg = lane & ~(width - 1);
    return kiln_emu::from_bits<T>(kiln_emu::exchange(mask, kiln_emu::to_bits(v), seg + (src & (width - 1))));
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = (int)kiln_emu::lane_id();
    int in_seg = lane & (width - 1);
    int src = in_seg + (int)delta < width ? lane + (int)delta : lane;
    return kiln_emu::from_bits<T>(kiln_emu::exchange(mask, kiln_emu::to_bits(v), src));
}
template <class T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    int lane = (int)kiln_emu::lane_id();
    int in_seg = lane & (width - 1);
    int src = in_seg - (int)delta >= 0 ? lane - (int)delta : lane;
    return kiln_emu::from_bits<T>(kiln_emu::exchange(mask, kiln_emu::to_bits(v), src));
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    int lane = (int)kiln_emu::lane_id();
    int src = lane ^ lane_mask;
    if ((src & ~(width - 1)) != (lane & ~(width - 1))) src = lane;
    return kiln_emu::from_bits<T>(kiln_emu::exchange(mask, kiln_emu::to_bits(v), src));
}

/* Atomics: fibers switch only at barriers and shuffles, and blocks run one after
 * another, so a read-modify-write cannot be interrupted. */
template <class T> static inline T atomicAdd(T *p, T v) {
    T old = *p;
    *p = old + v;
    return old;
}
template <class T> static inline T atomicMax(T *p, T v) {
    T old = *p;
    *p = old > v ? old : v;
    return old;
}
template <class T> static inline T atomicMin(T *p, T v) {
    T old = *p;
    *p = old < v ? old : v;
    return old;
}
template <class T> static inline T atomicExch(T *p, T v) {
    T old = *p;
    *p = v;
    return old;
}
template <class T> static inline T atomicCAS(T *p, T cmp, T v) {
    T old = *p;
    if (old == cmp) *p = v;
    return old;
}

/* kernel<<<grid, block, shmem, stream>>>(args...) as the emulator runs it: the
 * arguments are evaluated once, at the launch, and copied as CUDA copies them. */
#define KILN_EMU_LAUNCH(kernel, grid, block, shmem, stream, ...)                            \
    do {                                                                                    \
        (void)(stream);                                                                     \
        auto kiln_emu_call_ = [=]() { kernel(__VA_ARGS__); };                               \
        ::kiln_emu::launch_fn((grid), (block), (size_t)(shmem), kiln_emu_call_);            \
    } while (0)

#endif

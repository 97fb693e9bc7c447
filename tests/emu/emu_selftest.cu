/* Kernels that exercise the emulator itself (tests/test_cuda_emu_runtime.c): barriers,
 * shared memory, warp shuffles, atomics, and the misuse it must report. Each entry
 * point launches one kernel on host memory and returns cudaGetLastError(). */
#include "../../kernels/cuda/common.cuh"

namespace {

/* Reverses each block's tile through static shared memory: wrong without a real barrier. */
__global__ void reverse_tiles(float *out, const float *in, int n) {
    __shared__ float tile[128];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    tile[threadIdx.x] = i < n ? in[i] : -1.0f;
    __syncthreads();
    int src = blockDim.x - 1 - threadIdx.x;
    if (i < n) out[i] = tile[src];
}

/* The same through dynamic shared memory. */
__global__ void reverse_tiles_dynamic(float *out, const float *in, int n) {
    KILN_DYNAMIC_SHARED(float, tile);
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    tile[threadIdx.x] = i < n ? in[i] : -1.0f;
    __syncthreads();
    if (i < n) out[i] = tile[blockDim.x - 1 - threadIdx.x];
}

/* Per lane: [0] shfl_down tree sum (lane 0 valid), [1] xor butterfly sum (all lanes),
 * [2] broadcast of lane 5, [3] inclusive prefix sum by shfl_up, [4] ballot of odd lanes. */
__global__ void warp_ops(double *out) {
    int lane = threadIdx.x & 31;
    double v = lane * lane + blockIdx.x;
    double down = v, butterfly = v, scan = v;
    for (int o = 16; o > 0; o >>= 1) down += __shfl_down_sync(0xffffffffu, down, o);
    for (int o = 16; o > 0; o >>= 1) butterfly += __shfl_xor_sync(0xffffffffu, butterfly, o);
    for (int o = 1; o < 32; o <<= 1) {
        double up = __shfl_up_sync(0xffffffffu, scan, o);
        if (lane >= o) scan += up;
    }
    int t = blockIdx.x * blockDim.x + threadIdx.x;
    out[t * 5 + 0] = down;
    out[t * 5 + 1] = butterfly;
    out[t * 5 + 2] = __shfl_sync(0xffffffffu, v, 5);
    out[t * 5 + 3] = scan;
    out[t * 5 + 4] = (double)__ballot_sync(0xffffffffu, lane & 1);
}

/* kiln_cuda::block_sum over a block of x: one output per block. */
__global__ void block_sums(double *out, const double *x) {
    double s = kiln_cuda::block_sum(x[blockIdx.x * blockDim.x + threadIdx.x]);
    if (threadIdx.x == 0) out[blockIdx.x] = s;
}

__global__ void count(int *counter) { atomicAdd(counter, 1); }

/* Misuse the emulator must report. */
__global__ void divergent_barrier(int *out) {
    if (threadIdx.x < 16) __syncthreads();
    else __syncthreads();
    out[threadIdx.x] = 1;
}
__global__ void barrier_deadlock(int *out) {
    if (threadIdx.x == 1) out[1] = __shfl_sync(0xffffffffu, 7, 0);
    else __syncthreads();
}
__global__ void shuffle_from_exited(int *out) {
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = __shfl_down_sync(0xffffffffu, (int)threadIdx.x, 16);
}

} // namespace

extern "C" {
int kiln_emu_selftest_reverse(float *out, const float *in, int n, int dynamic) {
    unsigned grid = (unsigned)((n + 127) / 128);
    if (dynamic) KILN_LAUNCH(reverse_tiles_dynamic, grid, 128, 128 * sizeof(float), 0, out, in, n);
    else KILN_LAUNCH(reverse_tiles, grid, 128, 0, 0, out, in, n);
    return (int)cudaGetLastError();
}
int kiln_emu_selftest_warp(double *out, int blocks, int threads) {
    KILN_LAUNCH(warp_ops, blocks, threads, 0, 0, out);
    return (int)cudaGetLastError();
}
int kiln_emu_selftest_block_sum(double *out, const double *x, int blocks, int threads) {
    KILN_LAUNCH(block_sums, blocks, threads, 0, 0, out, x);
    return (int)cudaGetLastError();
}
int kiln_emu_selftest_atomic(int *counter, int blocks, int threads) {
    KILN_LAUNCH(count, blocks, threads, 0, 0, counter);
    return (int)cudaGetLastError();
}
/* which: 0 divergent barrier, 1 deadlock, 2 shuffle from an exited lane, 3 a
 * 2048-thread block, 4 too much dynamic shared memory */
int kiln_emu_selftest_misuse(int which, int *scratch) {
    switch (which) {
    case 0: KILN_LAUNCH(divergent_barrier, 1, 32, 0, 0, scratch); break;
    case 1: KILN_LAUNCH(barrier_deadlock, 1, 32, 0, 0, scratch); break;
    case 2: KILN_LAUNCH(shuffle_from_exited, 1, 32, 0, 0, scratch); break;
    case 3: KILN_LAUNCH(count, 1, 2048, 0, 0, scratch); break;
    default: KILN_LAUNCH(count, 1, 32, 64 * 1024, 0, scratch); break;
    }
    return (int)cudaGetLastError();
}
/* The launch check of the kernel sources after a bad launch: a kiln error. */
int kiln_emu_selftest_launch_check(int *scratch) {
    KILN_LAUNCH(count, 1, 4096, 0, 0, scratch);
    return (int)kiln_cuda_launch_check("selftest", 0, __FILE__, __LINE__);
}
}

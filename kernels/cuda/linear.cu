/* The bias gradient of linear on CUDA: column sums of dY (rows x cols, any strides)
 * in double. The products of linear go to cuBLAS (kernels/cuda/blas.c); this is the
 * one piece that is a custom kernel. Deterministic: warp shuffles and a fixed-order
 * second pass, no atomics. */
#include "common.cuh"
#include "launch_linear.h"

namespace {
using namespace kiln_cuda;

#define BIAS_WARPS (KILN_CUDA_BLOCK / 32)

/* Block b covers the 32 columns of column block (b % colblocks) over row slice
 * (b / colblocks): lane = column, warp = every BIAS_WARPS-th row (coalesced when
 * columns are contiguous); the warps' partials meet in shared memory and each
 * column's BIAS_WARPS values are folded by a warp shuffle. */
template <typename T>
__global__ void bias_grad_kernel(const T *__restrict__ g, int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                                 int64_t colblocks, int64_t chunk, int splits, T *out, int64_t ostride,
                                 double *partial) {
    __shared__ double part[BIAS_WARPS][33];
    unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    for (int64_t b = blockIdx.x; b < colblocks * splits; b += gridDim.x) {
        int64_t cb = b % colblocks, s = b / colblocks;
        int64_t j = cb * 32 + lane;
        int64_t r0 = s * chunk, r1 = r0 + chunk < rows ? r0 + chunk : rows;
        double acc = 0;
        if (j < cols)
            for (int64_t r = r0 + warp; r < r1; r += BIAS_WARPS) acc += (double)g[r * rs + j * cs];
        part[warp][lane] = acc;
        __syncthreads();
        for (unsigned c = warp; c < 32; c += BIAS_WARPS) {
            double v = lane < BIAS_WARPS ? part[lane][c] : 0.0;
            for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
            int64_t jc = cb * 32 + c;
            if (lane == 0 && jc < cols) {
                if (splits == 1) out[jc * ostride] = (T)v;
                else partial[s * cols + jc] = v;
            }
        }
        __syncthreads(); /* part is rewritten by the next block-iteration */
    }
}

/* Second pass: a thread per column adds its slices' partials in order. */
template <typename T>
__global__ void bias_finish_kernel(const double *partial, int64_t cols, int splits, T *out, int64_t ostride) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t j = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; j < cols; j += step) {
        double acc = 0;
        for (int s = 0; s < splits; s++) acc += partial[s * cols + j];
        out[j * ostride] = (T)acc;
    }
}

/* Row slices: enough blocks to fill the GPU when the columns alone are too few,
 * at least 256 rows a slice. Depends on the shape only (deterministic results). */
int splits_for(int64_t rows, int64_t cols) {
    int64_t colblocks = (cols + 31) / 32;
    if (colblocks >= 256 || rows < 512) return 1;
    int64_t want = rows / 256, room = 256 / colblocks;
    int64_t s = want < room ? want : room;
    return (int)(s < 1 ? 1 : s);
}

template <typename T>
kiln_status run_bias(void *out, int64_t ostride, const void *g, int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                     void *scratch, void *stream) {
    int splits = splits_for(rows, cols);
    if (splits > 1 && !scratch)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "linear_backward: the bias-gradient launcher needs scratch");
    int64_t colblocks = (cols + 31) / 32, chunk = (rows + splits - 1) / splits;
    int64_t blocks = colblocks * splits;
    auto kernel = bias_grad_kernel<T>;
    KILN_LAUNCH(kernel, (unsigned)(blocks < 65535 ? blocks : 65535), KILN_CUDA_BLOCK, 0, stream, (const T *)g, rows,
                cols, rs, cs, colblocks, chunk, splits, (T *)out, ostride, (double *)scratch);
    KILN_LAUNCH_CHECK("linear_backward", stream);
    if (splits > 1) {
        auto finish = bias_finish_kernel<T>;
        KILN_LAUNCH(finish, grid_for(cols), KILN_CUDA_BLOCK, 0, stream, (const double *)scratch, cols, splits, (T *)out,
                    ostride);
        KILN_LAUNCH_CHECK("linear_backward", stream);
    }
    return KILN_STATUS_OK;
}

} // namespace

extern "C" {

size_t kiln_cuda_bias_grad_scratch_bytes(int64_t rows, int64_t cols) {
    int s = splits_for(rows, cols);
    return s > 1 ? (size_t)s * (size_t)cols * sizeof(double) : 0;
}

kiln_status kiln_cuda_launch_bias_grad(kiln_dtype dt, void *out, int64_t out_stride, const void *g, int64_t rows,
                                       int64_t cols, int64_t rs, int64_t cs, void *scratch, void *stream) {
    if (cols == 0) return KILN_STATUS_OK;
    if (dt == KILN_F32) return run_bias<float>(out, out_stride, g, rows, cols, rs, cs, scratch, stream);
    if (dt == KILN_F64) return run_bias<double>(out, out_stride, g, rows, cols, rs, cs, scratch, stream);
    return kiln__error(KILN_STATUS_DTYPE, "linear_backward: the CUDA bias gradient sums f32 and f64, not %s",
                       kiln_dtype_name(dt));
}

} // extern "C"

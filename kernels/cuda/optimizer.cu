/* CUDA optimizer and clipping kernels over one contiguous span (a whole parameter
 * arena when the parameters are adjacent): sgd, adam/adamw(/amsgrad) in one launch
 * each with the per-element math of kernels/optim_math.h, and the gradient-norm
 * reduction of clip_grad_norm (block partials, then a fixed-order fold: no atomics). */
#include "common.cuh"
#include "launch_optimizer.h"

namespace {
using namespace kiln_cuda;

__device__ __forceinline__ void sgd_t(float *p, float g, float *b, const kiln_sgd_hparams *h) {
    kiln_sgd_update_f32(p, g, b, h);
}
__device__ __forceinline__ void sgd_t(double *p, double g, double *b, const kiln_sgd_hparams *h) {
    kiln_sgd_update_f64(p, g, b, h);
}
__device__ __forceinline__ void adam_t(float *p, float g, float *m, float *v, float *x, const kiln_adam_hparams *h) {
    kiln_adam_update_f32(p, g, m, v, x, h);
}
__device__ __forceinline__ void adam_t(double *p, double g, double *m, double *v, double *x,
                                       const kiln_adam_hparams *h) {
    kiln_adam_update_f64(p, g, m, v, x, h);
}

/* One thread per element, grid-stride; buf is NULL without momentum. */
template <typename T> __global__ void sgd_kernel(int64_t n, T *p, const T *g, T *buf, kiln_sgd_hparams h) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        sgd_t(p + i, g[i], buf ? buf + i : (T *)0, &h);
}

/* One thread per element, grid-stride; vmax is NULL without amsgrad. */
template <typename T>
__global__ void adam_kernel(int64_t n, T *p, const T *g, T *m, T *v, T *vmax, kiln_adam_hparams h) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        adam_t(p + i, g[i], m + i, v + i, vmax ? vmax + i : (T *)0, &h);
}

/* max that lets NaN through, as the CPU's max norm does */
__device__ __forceinline__ double nanmax(double a, double b) { return (a != a || b != b) ? (double)NAN : (a > b ? a : b); }

/* Block-wide nanmax (the shape of block_sum); valid in thread 0, ends with a barrier. */
__device__ __forceinline__ double block_nanmax(double v) {
    __shared__ double warp_max[32];
    unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = nanmax(v, __shfl_down_sync(0xffffffffu, v, o));
    if (lane == 0) warp_max[warp] = v;
    __syncthreads();
    if (warp == 0) {
        unsigned nwarps = (blockDim.x + 31) / 32;
        v = lane < nwarps ? warp_max[lane] : 0.0;
        for (int o = 16; o > 0; o >>= 1) v = nanmax(v, __shfl_down_sync(0xffffffffu, v, o));
    }
    __syncthreads();
    return v;
}

/* Block b folds its grid-stride share of |g|^q (or max |g|) into partial[b]. */
template <typename T> __global__ void norm_partial_kernel(int64_t n, const T *g, double q, int mode, double *partial) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    double acc = 0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        double a = fabs((double)g[i]);
        if (mode == 0) acc = nanmax(acc, a);
        else if (mode == 2) acc += a * a;
        else acc += pow(a, q);
    }
    acc = mode == 0 ? block_nanmax(acc) : block_sum(acc);
    if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

/* One block folds the partials in a fixed order into *result. */
__global__ void norm_finish_kernel(int nparts, int mode, const double *partial, double *result) {
    double acc = 0;
    for (int i = threadIdx.x; i < nparts; i += blockDim.x) acc = mode == 0 ? nanmax(acc, partial[i]) : acc + partial[i];
    acc = mode == 0 ? block_nanmax(acc) : block_sum(acc);
    if (threadIdx.x == 0) *result = acc;
}

template <typename T> __global__ void scale_kernel(int64_t n, T *g, T s) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) g[i] *= s;
}

/* NaN stays NaN (both comparisons are false), as torch.clamp and the CPU kernel. */
template <typename T> __global__ void clamp_kernel(int64_t n, T *g, T lo, T hi) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
        g[i] = g[i] < lo ? lo : (g[i] > hi ? hi : g[i]);
}

/* The partial count depends on n only, so a span's norm is the same on every run. */
int64_t norm_parts(int64_t n) {
    int64_t b = (n + KILN_CUDA_BLOCK * 4 - 1) / (KILN_CUDA_BLOCK * 4);
    return b < 1 ? 1 : (b > 1024 ? 1024 : b);
}

} // namespace

extern "C" {

kiln_status kiln_cuda_launch_sgd(kiln_dtype dt, void *p, const void *g, void *buf, int64_t n,
                                 const kiln_sgd_hparams *h, void *stream) {
    if (n == 0) return KILN_STATUS_OK;
    if (dt == KILN_F32) {
        auto kernel = sgd_kernel<float>;
        KILN_LAUNCH(kernel, grid_for(n), KILN_CUDA_BLOCK, 0, stream, n, (float *)p, (const float *)g, (float *)buf, *h);
    } else if (dt == KILN_F64) {
        auto kernel = sgd_kernel<double>;
        KILN_LAUNCH(kernel, grid_for(n), KILN_CUDA_BLOCK, 0, stream, n, (double *)p, (const double *)g, (double *)buf,
                    *h);
    } else {
        return bad_dtype("sgd", dt);
    }
    KILN_LAUNCH_CHECK("sgd", stream);
    return KILN_STATUS_OK;
}

kiln_status kiln_cuda_launch_adam(kiln_dtype dt, void *p, const void *g, void *m, void *v, void *vmax, int64_t n,
                                  const kiln_adam_hparams *h, void *stream) {
    if (n == 0) return KILN_STATUS_OK;
    if (dt == KILN_F32) {
        auto kernel = adam_kernel<float>;
        KILN_LAUNCH(kernel, grid_for(n), KILN_CUDA_BLOCK, 0, stream, n, (float *)p, (const float *)g, (float *)m,
                    (float *)v, (float *)vmax, *h);
    } else if (dt == KILN_F64) {
        auto kernel = adam_kernel<double>;
        KILN_LAUNCH(kernel, grid_for(n), KILN_CUDA_BLOCK, 0, stream, n, (double *)p, (const double *)g, (double *)m,
                    (double *)v, (double *)vmax, *h);
    } else {
        return bad_dtype("adam", dt);
    }
    KILN_LAUNCH_CHECK("adam", stream);
    return KILN_STATUS_OK;
}

size_t kiln_cuda_norm_scratch_bytes(int64_t n) { return (size_t)norm_parts(n) * sizeof(double); }

kiln_status kiln_cuda_launch_norm(kiln_dtype dt, const void *g, int64_t n, double norm_type, void *scratch,
                                  double *result, void *stream) {
    int mode = isinf(norm_type) ? 0 : norm_type == 2 ? 2 : 1;
    int64_t parts = norm_parts(n);
    if (dt == KILN_F32) {
        auto kernel = norm_partial_kernel<float>;
        KILN_LAUNCH(kernel, (unsigned)parts, KILN_CUDA_BLOCK, 0, stream, n, (const float *)g, norm_type, mode,
                    (double *)scratch);
    } else if (dt == KILN_F64) {
        auto kernel = norm_partial_kernel<double>;
        KILN_LAUNCH(kernel, (unsigned)parts, KILN_CUDA_BLOCK, 0, stream, n, (const double *)g, norm_type, mode,
                    (double *)scratch);
    } else {
        return bad_dtype("clip_grad_norm", dt);
    }
    KILN_LAUNCH_CHECK("clip_grad_norm", stream);
    KILN_LAUNCH(norm_finish_kernel, 1, KILN_CUDA_BLOCK, 0, stream, (int)parts, mode, (const double *)scratch, result);
    KILN_LAUNCH_CHECK("clip_grad_norm", stream);
    return KILN_STATUS_OK;
}

kiln_status kiln_cuda_launch_scale(kiln_dtype dt, void *g, int64_t n, double scale, void *stream) {
    if (n == 0) return KILN_STATUS_OK;
    if (dt == KILN_F32) {
        auto kernel = scale_kernel<float>;
        KILN_LAUNCH(kernel, grid_for(n), KILN_CUDA_BLOCK, 0, stream, n, (float *)g, (float)scale);
    } else if (dt == KILN_F64) {
        auto kernel = scale_kernel<double>;
        KILN_LAUNCH(kernel, grid_for(n), KILN_CUDA_BLOCK, 0, stream, n, (double *)g, scale);
    } else {
        return bad_dtype("clip_grad_norm", dt);
    }
    KILN_LAUNCH_CHECK("clip_grad_norm", stream);
    return KILN_STATUS_OK;
}

kiln_status kiln_cuda_launch_clamp(kiln_dtype dt, void *g, int64_t n, double lo, double hi, void *stream) {
    if (n == 0) return KILN_STATUS_OK;
    if (dt == KILN_F32) {
        auto kernel = clamp_kernel<float>;
        KILN_LAUNCH(kernel, grid_for(n), KILN_CUDA_BLOCK, 0, stream, n, (float *)g, (float)lo, (float)hi);
    } else if (dt == KILN_F64) {
        auto kernel = clamp_kernel<double>;
        KILN_LAUNCH(kernel, grid_for(n), KILN_CUDA_BLOCK, 0, stream, n, (double *)g, lo, hi);
    } else {
        return bad_dtype("clip_grad_value", dt);
    }
    KILN_LAUNCH_CHECK("clip_grad_value", stream);
    return KILN_STATUS_OK;
}

} // extern "C"

/* CUDA dropout: element i (C order) is kept when the Philox uniform for counter
 * offset + i is >= p, then scaled by 1/(1-p) in the tensor's dtype, exactly as
 * kernels/cpu/dropout.c, so a seed gives the CPU's mask (and the backward, the same
 * op on the gradient, re-derives it). One thread per element, any strides. */
#include "common.cuh"
#include "launch_batch_norm_dropout.h"
#include "../philox.h"

namespace {
using namespace kiln_cuda;

/* kiln_philox_sample(seed, counter, 0, 0, 1): the 53-bit uniform itself, exact on
 * every device (a + (b - a)·u with a = 0, b = 1 is u). */
__device__ __forceinline__ double uniform01(uint64_t seed, uint64_t counter) {
    uint32_t w[4];
    kiln_philox4x32(counter, seed, w);
    return (double)(((uint64_t)w[0] << 21) ^ (w[1] >> 11)) * 0x1p-53;
}

template <typename T>
__global__ void dropout_kernel(iter<2> it, T *out, const T *x, double p, T scale, uint64_t seed, uint64_t offset) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < it.n; i += step) {
        int64_t off[2];
        iter_offsets(it, i, off);
        bool keep = uniform01(seed, offset + (uint64_t)i) >= p;
        out[off[0]] = keep ? x[off[1]] * scale : (T)0;
    }
}

} // namespace

extern "C" kiln_status kiln_cuda_launch_dropout(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, double p,
                                                uint64_t seed, uint64_t offset, void *stream) {
    const kiln_cuda_tensor *ops[2] = {out, x};
    iter<2> it;
    make_iter<2>(it, ops);
    if (it.n == 0) return KILN_STATUS_OK;
    double scale = p < 1 ? 1.0 / (1.0 - p) : 0.0;
    if (out->dtype == KILN_F32) {
        auto kernel = dropout_kernel<float>;
        KILN_LAUNCH(kernel, grid_for(it.n), KILN_CUDA_BLOCK, 0, stream, it, (float *)out->data, (const float *)x->data,
                    p, (float)scale, seed, offset);
    } else if (out->dtype == KILN_F64) {
        auto kernel = dropout_kernel<double>;
        KILN_LAUNCH(kernel, grid_for(it.n), KILN_CUDA_BLOCK, 0, stream, it, (double *)out->data,
                    (const double *)x->data, p, scale, seed, offset);
    } else {
        return kiln__error(KILN_STATUS_DTYPE, "dropout: the CUDA kernel masks f32 and f64, not %s",
                           kiln_dtype_name(out->dtype));
    }
    KILN_LAUNCH_CHECK("dropout", stream);
    return KILN_STATUS_OK;
}

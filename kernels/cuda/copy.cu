/* CUDA kernels that write tensors: copy (strided, broadcast, with dtype conversion
 * matching the CPU's bit for bit), fill, and the Philox random fill that gives the
 * CPU's numbers for the same seed and offset. */
#include "common.cuh"
#include "../philox.h"

namespace {
using namespace kiln_cuda;

/* Same-dtype copy as raw words of the element size U: 16-byte vectors when both
 * sides are contiguous and aligned, one thread per vector, grid-stride, then the tail. */
template <typename U> __global__ void copy_vec_kernel(int64_t n, U *__restrict__ out, const U *__restrict__ in) {
    constexpr int V = 16 / sizeof(U);
    int64_t step = (int64_t)gridDim.x * blockDim.x, first = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t nv = n / V;
    for (int64_t i = first; i < nv; i += step)
        reinterpret_cast<vec16<U> *>(out)[i] = reinterpret_cast<const vec16<U> *>(in)[i];
    for (int64_t i = nv * V + first; i < n; i += step) out[i] = in[i];
}

/* Same-dtype copy over any strides: one thread per output element, grid-stride. */
template <typename U> __global__ void copy_strided_kernel(iter<2> it, U *__restrict__ out, const U *__restrict__ in) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < it.n; i += step) {
        int64_t off[2];
        iter_offsets(it, i, off);
        out[off[0]] = in[off[1]];
    }
}

/* Converting copy: load as double, store in the output dtype; one thread per element. */
__global__ void convert_kernel(iter<2> it, char *out, int odt, int osize, const char *in, int idt, int isize) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < it.n; i += step) {
        int64_t off[2];
        iter_offsets(it, i, off);
        store_from_double(out + off[0] * osize, odt, load_as_double(in + off[1] * isize, idt));
    }
}

template <typename U>
kiln_status run_copy(const iter<2> &it, bool vec, const kiln_cuda_tensor *out, const kiln_cuda_tensor *x,
                     void *stream) {
    if (vec) {
        auto kernel = copy_vec_kernel<U>;
        int64_t work = it.n / (16 / (int64_t)sizeof(U));
        KILN_LAUNCH(kernel, grid_for(work > 0 ? work : it.n), KILN_CUDA_BLOCK, 0, stream, it.n, (U *)out->data,
                    (const U *)x->data);
    } else {
        auto kernel = copy_strided_kernel<U>;
        KILN_LAUNCH(kernel, grid_for(it.n), KILN_CUDA_BLOCK, 0, stream, it, (U *)out->data, (const U *)x->data);
    }
    KILN_LAUNCH_CHECK("copy", stream);
    return KILN_STATUS_OK;
}

/* Writes the element-size bit pattern v everywhere in out; one thread per element. */
template <typename U> __global__ void fill_kernel(iter<1> it, U *out, U v) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    if (it.ndim == 1 && it.stride[0][0] == 1) {
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < it.n; i += step) out[i] = v;
        return;
    }
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < it.n; i += step) {
        int64_t off[1];
        iter_offsets(it, i, off);
        out[off[0]] = v;
    }
}

template <typename U> kiln_status run_fill(const iter<1> &it, const kiln_cuda_tensor *out, const char *bits, void *stream) {
    U v;
    memcpy(&v, bits, sizeof v);
    auto kernel = fill_kernel<U>;
    KILN_LAUNCH(kernel, grid_for(it.n), KILN_CUDA_BLOCK, 0, stream, it, (U *)out->data, v);
    KILN_LAUNCH_CHECK("fill", stream);
    return KILN_STATUS_OK;
}

/* The sample of kiln_philox_sample (kernels/philox.h) with its multiply-adds kept
 * apart: nvcc would fuse them into FMAs and round differently from the CPU. */
__device__ __forceinline__ double philox_sample_rn(uint64_t seed, uint64_t counter, int normal, double a, double b) {
    uint32_t w[4];
    kiln_philox4x32(counter, seed, w);
    double u1 = (double)(((uint64_t)w[0] << 21) ^ (w[1] >> 11)) * 0x1p-53;
    if (!normal) return __dadd_rn(a, __dmul_rn(b - a, u1));
    double u2 = (double)(((uint64_t)w[2] << 21) ^ (w[3] >> 11)) * 0x1p-53;
    double r = sqrt(__dmul_rn(-2.0, log(1.0 - u1)));
    return __dadd_rn(a, __dmul_rn(__dmul_rn(b, r), cos(__dmul_rn(6.283185307179586, u2))));
}

/* Element i of a contiguous out = sample(seed, offset + i); one thread per element. */
template <typename T>
__global__ void rand_kernel(int64_t n, T *out, uint64_t seed, uint64_t offset, int normal, double a, double b) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
        double v = philox_sample_rn(seed, offset + (uint64_t)i, normal, a, b);
        if (sizeof(T) == 4) {
            float f = (float)v;
            /* rounding to float must not reach the open upper bound */
            if (!normal && f >= (float)b) f = nextafterf((float)b, -INFINITY);
            out[i] = (T)f;
        } else {
            out[i] = (T)v;
        }
    }
}

} // namespace

extern "C" {

kiln_status kiln_cuda_launch_copy(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, void *stream) {
    const kiln_cuda_tensor *ops[2] = {out, x};
    iter<2> it;
    bool vec = make_iter<2>(it, ops) && aligned16(out->data) && aligned16(x->data);
    if (it.n == 0) return KILN_STATUS_OK;
    if (out->dtype != x->dtype) {
        KILN_LAUNCH(convert_kernel, grid_for(it.n), KILN_CUDA_BLOCK, 0, stream, it, (char *)out->data,
                    (int)out->dtype, (int)dtype_size(out->dtype), (const char *)x->data, (int)x->dtype,
                    (int)dtype_size(x->dtype));
        KILN_LAUNCH_CHECK("copy", stream);
        return KILN_STATUS_OK;
    }
    switch (dtype_size(out->dtype)) {
    case 1: return run_copy<uint8_t>(it, vec, out, x, stream);
    case 2: return run_copy<uint16_t>(it, vec, out, x, stream);
    case 4: return run_copy<uint32_t>(it, vec, out, x, stream);
    default: return run_copy<uint64_t>(it, vec, out, x, stream);
    }
}

kiln_status kiln_cuda_launch_fill(const kiln_cuda_tensor *out, double value, void *stream) {
    const kiln_cuda_tensor *ops[1] = {out};
    iter<1> it;
    make_iter<1>(it, ops);
    if (it.n == 0) return KILN_STATUS_OK;
    char bits[8] = {0};
    store_from_double(bits, out->dtype, value); /* the host converts once, as the CPU does */
    switch (dtype_size(out->dtype)) {
    case 1: return run_fill<uint8_t>(it, out, bits, stream);
    case 2: return run_fill<uint16_t>(it, out, bits, stream);
    case 4: return run_fill<uint32_t>(it, out, bits, stream);
    default: return run_fill<uint64_t>(it, out, bits, stream);
    }
}

kiln_status kiln_cuda_launch_rand(const kiln_cuda_tensor *out, uint64_t seed, uint64_t offset, int normal,
                                  double a, double b, void *stream) {
    int64_t n = 1;
    for (int i = 0; i < out->ndim; i++) n *= out->shape[i];
    if (n == 0) return KILN_STATUS_OK;
    if (out->dtype == KILN_F32) {
        auto kernel = rand_kernel<float>;
        KILN_LAUNCH(kernel, grid_for(n), KILN_CUDA_BLOCK, 0, stream, n, (float *)out->data, seed, offset, normal, a, b);
    } else if (out->dtype == KILN_F64) {
        auto kernel = rand_kernel<double>;
        KILN_LAUNCH(kernel, grid_for(n), KILN_CUDA_BLOCK, 0, stream, n, (double *)out->data, seed, offset, normal, a, b);
    } else {
        return kiln__error(KILN_STATUS_DTYPE, "rand: the CUDA kernel draws f32 and f64, not %s",
                           kiln_dtype_name(out->dtype));
    }
    KILN_LAUNCH_CHECK("rand", stream);
    return KILN_STATUS_OK;
}

} // extern "C"

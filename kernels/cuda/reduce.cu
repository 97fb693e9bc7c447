/* CUDA sum over axes (the keepdim layout of the CPU's sum). Accumulates in double,
 * as the CPU does, and uses no atomics: results are deterministic for a shape, which
 * the gradient path (kiln__sum_to of broadcast gradients) relies on. Three shapes of
 * work: many short sums (a thread per output), few long sums (a block per output,
 * split over several blocks with a second pass when outputs are too few to fill the GPU). */
#include "common.cuh"

namespace {
using namespace kiln_cuda;

/* Kept axes (output index -> input and output offsets) and reduced axes. */
struct sum_plan {
    int nk, nr;
    int64_t kshape[KILN_MAX_DIMS], kin[KILN_MAX_DIMS], kout[KILN_MAX_DIMS];
    int64_t rshape[KILN_MAX_DIMS], rin[KILN_MAX_DIMS];
    int64_t nout, nred;
};

void make_plan(sum_plan &p, const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, uint32_t mask) {
    p.nk = p.nr = 0;
    p.nout = p.nred = 1;
    for (int i = 0; i < x->ndim; i++) {
        if (x->shape[i] == 1) continue; /* contributes nothing either way */
        if (mask & (1u << i)) {
            p.rshape[p.nr] = x->shape[i];
            p.rin[p.nr++] = x->strides[i];
            p.nred *= x->shape[i];
        } else {
            p.kshape[p.nk] = x->shape[i];
            p.kin[p.nk] = x->strides[i];
            p.kout[p.nk++] = out->strides[i];
            p.nout *= x->shape[i];
        }
    }
}

__device__ __forceinline__ void kept_offsets(const sum_plan &p, int64_t o, int64_t &in_off, int64_t &out_off) {
    in_off = out_off = 0;
    for (int d = p.nk - 1; d >= 0; d--) {
        int64_t q = o / p.kshape[d], i = o - q * p.kshape[d];
        o = q;
        in_off += i * p.kin[d];
        out_off += i * p.kout[d];
    }
}

__device__ __forceinline__ int64_t reduced_offset(const sum_plan &p, int64_t r) {
    int64_t off = 0;
    for (int d = p.nr - 1; d >= 0; d--) {
        int64_t q = r / p.rshape[d], i = r - q * p.rshape[d];
        r = q;
        off += i * p.rin[d];
    }
    return off;
}

/* A thread per output: walks its reduced elements in order with an odometer (the
 * short-sum case; coalesced when the kept inner axis is contiguous). */
template <typename T> __global__ void sum_per_thread_kernel(sum_plan p, const T *__restrict__ x, T *out) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < p.nout; o += step) {
        int64_t in_off, out_off;
        kept_offsets(p, o, in_off, out_off);
        int64_t idx[KILN_MAX_DIMS] = {0};
        double acc = 0;
        for (int64_t r = 0; r < p.nred; r++) {
            acc += (double)x[in_off];
            for (int d = p.nr - 1; d >= 0; d--) {
                in_off += p.rin[d];
                if (++idx[d] < p.rshape[d]) break;
                in_off -= p.rin[d] * p.rshape[d];
                idx[d] = 0;
            }
        }
        out[out_off] = (T)acc;
    }
}

/* Block b sums slice (b % splits) of output (b / splits): threads stride over the
 * reduced elements, then a warp-shuffle block reduction. With one split the block
 * writes the output; otherwise its partial goes to scratch for sum_finish_kernel. */
template <typename T>
__global__ void sum_per_block_kernel(sum_plan p, int splits, const T *__restrict__ x, T *out, double *partial) {
    int64_t nblocks = p.nout * splits;
    for (int64_t b = blockIdx.x; b < nblocks; b += gridDim.x) {
        int64_t o = b / splits, s = b - o * splits;
        int64_t in_off, out_off;
        kept_offsets(p, o, in_off, out_off);
        double acc = 0;
        for (int64_t r = s * blockDim.x + threadIdx.x; r < p.nred; r += (int64_t)splits * blockDim.x)
            acc += (double)x[in_off + reduced_offset(p, r)];
        acc = block_sum(acc);
        if (threadIdx.x == 0) {
            if (splits == 1) out[out_off] = (T)acc;
            else partial[b] = acc;
        }
    }
}

/* Second pass: a warp per output adds its splits' partials in a fixed order. */
template <typename T> __global__ void sum_finish_kernel(sum_plan p, int splits, const double *partial, T *out) {
    unsigned lane = threadIdx.x & 31u;
    int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    for (int64_t o = (int64_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32; o < p.nout; o += warps) {
        double acc = 0;
        for (int64_t s = lane; s < splits; s += 32) acc += partial[o * splits + s];
        for (int off = 16; off > 0; off >>= 1) acc += __shfl_down_sync(0xffffffffu, acc, off);
        if (lane == 0) {
            int64_t in_off, out_off;
            kept_offsets(p, o, in_off, out_off);
            out[out_off] = (T)acc;
        }
    }
}

enum sum_path { PER_THREAD, PER_BLOCK };

/* Chooses the path and, for the block path, how many blocks share one output. */
void choose(const sum_plan &p, sum_path &path, int &splits) {
    bool inner_contiguous = p.nk > 0 && p.kin[p.nk - 1] == 1;
    splits = 1;
    if (p.nred <= 64 || (inner_contiguous && p.nout >= 1024)) {
        path = PER_THREAD;
        return;
    }
    path = PER_BLOCK;
    if (p.nout < 1024) {
        int64_t want = (p.nred + 4095) / 4096; /* ~16 elements per thread */
        int64_t room = 1024 / p.nout;
        int64_t s = want < room ? want : room;
        splits = (int)(s < 1 ? 1 : s);
    }
}

template <typename T>
kiln_status run_sum(const sum_plan &p, const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, void *scratch,
                    void *stream) {
    sum_path path;
    int splits;
    choose(p, path, splits);
    T *o = (T *)out->data;
    const T *xin = (const T *)x->data;
    if (p.nred == 0) { /* an empty sum is 0 */
        kiln_cuda_tensor z = *out;
        return kiln_cuda_launch_fill(&z, 0.0, stream);
    }
    if (path == PER_THREAD) {
        auto kernel = sum_per_thread_kernel<T>;
        KILN_LAUNCH(kernel, grid_for(p.nout), KILN_CUDA_BLOCK, 0, stream, p, xin, o);
        KILN_LAUNCH_CHECK("sum", stream);
        return KILN_STATUS_OK;
    }
    if (splits > 1 && !scratch)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "sum: the CUDA launcher needs %zu bytes of scratch",
                           (size_t)(p.nout * splits) * sizeof(double));
    int64_t blocks = p.nout * splits;
    auto kernel = sum_per_block_kernel<T>;
    KILN_LAUNCH(kernel, (unsigned)(blocks < 65535 ? blocks : 65535), KILN_CUDA_BLOCK, 0, stream, p, splits, xin, o,
                (double *)scratch);
    KILN_LAUNCH_CHECK("sum", stream);
    if (splits > 1) {
        auto finish = sum_finish_kernel<T>;
        KILN_LAUNCH(finish, grid_for(p.nout * 32), KILN_CUDA_BLOCK, 0, stream, p, splits, (const double *)scratch, o);
        KILN_LAUNCH_CHECK("sum", stream);
    }
    return KILN_STATUS_OK;
}

} // namespace

extern "C" {

size_t kiln_cuda_sum_scratch_bytes(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, uint32_t mask) {
    sum_plan p;
    make_plan(p, out, x, mask);
    sum_path path;
    int splits;
    choose(p, path, splits);
    return path == PER_BLOCK && splits > 1 ? (size_t)(p.nout * splits) * sizeof(double) : 0;
}

kiln_status kiln_cuda_launch_sum(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, uint32_t mask,
                                 void *scratch, void *stream) {
    sum_plan p;
    make_plan(p, out, x, mask);
    if (p.nout == 0) return KILN_STATUS_OK;
    if (out->dtype == KILN_F32) return run_sum<float>(p, out, x, scratch, stream);
    if (out->dtype == KILN_F64) return run_sum<double>(p, out, x, scratch, stream);
    return kiln__error(KILN_STATUS_DTYPE, "sum: the CUDA kernel sums f32 and f64, not %s", kiln_dtype_name(out->dtype));
}

} // extern "C"

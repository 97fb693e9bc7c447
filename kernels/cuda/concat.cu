/* CUDA concat: each input is copied into its window of the output (the glue makes
 * the window descriptor), one launch per input, moving raw elements so every dtype
 * concatenates. A thread per element, grid-stride, offsets by the merged strided
 * iterator of common.cuh (one flat axis when both sides are contiguous). */
#include "common.cuh"
#include "launch_maxarg_concat.h"

namespace {
using namespace kiln_cuda;

template <typename E> __global__ void copy_raw_kernel(iter<2> it, E *out, const E *in) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < it.n; i += step) {
        int64_t off[2];
        iter_offsets(it, i, off);
        out[off[0]] = in[off[1]];
    }
}

template <typename E> kiln_status run_copy(const iter<2> &it, void *out, const void *in, void *stream) {
    auto k = copy_raw_kernel<E>;
    KILN_LAUNCH(k, grid_for(it.n), KILN_CUDA_BLOCK, 0, stream, it, (E *)out, (const E *)in);
    KILN_LAUNCH_CHECK("concat", stream);
    return KILN_STATUS_OK;
}

} // namespace

extern "C" {

kiln_status kiln_cuda_launch_concat_part(const kiln_cuda_tensor *out, const kiln_cuda_tensor *in, void *stream) {
    const kiln_cuda_tensor *ops[2] = {out, in};
    iter<2> it;
    make_iter<2>(it, ops);
    if (it.n == 0) return KILN_STATUS_OK;
    switch (dtype_size(out->dtype)) {
    case 1: return run_copy<uint8_t>(it, out->data, in->data, stream);
    case 2: return run_copy<uint16_t>(it, out->data, in->data, stream);
    case 4: return run_copy<uint32_t>(it, out->data, in->data, stream);
    default: return run_copy<uint64_t>(it, out->data, in->data, stream);
    }
}

} // extern "C"

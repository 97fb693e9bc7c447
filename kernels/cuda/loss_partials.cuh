/* The two passes of a reduced loss on CUDA (bce.cu, cross_entropy.cu): each block writes
 * its partial sums to scratch, then one block adds them in a fixed order, so the results
 * are deterministic whatever kiln_deterministic() says and no atomics are needed. */
#ifndef KILN_CUDA_LOSS_PARTIALS_CUH
#define KILN_CUDA_LOSS_PARTIALS_CUH

#include "common.cuh"
#include "launch_losses.h"

namespace {
using namespace kiln_cuda;

/* Blocks of a reduced launch (each writes one partial). */
static inline unsigned red_grid(int64_t work) {
    unsigned g = grid_for(work);
    return g < KILN_CUDA_LOSS_MAX_PARTIALS ? g : KILN_CUDA_LOSS_MAX_PARTIALS;
}

/* One block: out = a or a / (b or n), with a (and b) the sums of np partials
 * (b's partials follow a's). */
template <typename T>
__global__ void finish_kernel(const double *partial, int np, int with_div, double n, int mean, T *out) {
    double a = 0, b = 0;
    for (int i = threadIdx.x; i < np; i += blockDim.x) {
        a += partial[i];
        if (with_div) b += partial[np + i];
    }
    a = block_sum(a);
    b = block_sum(b);
    if (threadIdx.x == 0) *out = (T)(mean ? a / (with_div ? b : n) : a);
}

} // namespace

#endif

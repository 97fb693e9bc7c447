/* Host launcher of linear's custom kernel (linear.cu), the bias gradient; the dX/dW
 * products run on cuBLAS (blas.c). Same conventions as launch.h: plain pointers,
 * element strides. */
#ifndef KILN_CUDA_LAUNCH_LINEAR_H
#define KILN_CUDA_LAUNCH_LINEAR_H

#include "launch.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[j * out_stride] = sum over r < rows of g[r * rs + j * cs] for j < cols, in double
 * and in a fixed order (no atomics): the bias gradient of linear. scratch: as asked. */
size_t kiln_cuda_bias_grad_scratch_bytes(int64_t rows, int64_t cols);
kiln_status kiln_cuda_launch_bias_grad(kiln_dtype dt, void *out, int64_t out_stride, const void *g, int64_t rows,
                                       int64_t cols, int64_t rs, int64_t cs, void *scratch, void *stream);

#ifdef __cplusplus
}
#endif
#endif

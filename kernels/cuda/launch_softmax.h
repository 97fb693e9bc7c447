/* Host launchers of the softmax family (softmax.cu): softmax and log_softmax over one
 * axis, forward and backward. Same conventions as launch.h (descriptors in elements,
 * device memory in CUDA builds, host memory under the emulator). */
#ifndef KILN_CUDA_LAUNCH_SOFTMAX_H
#define KILN_CUDA_LAUNCH_SOFTMAX_H

#include "launch.h"

#ifdef __cplusplus
extern "C" {
#endif

/* softmax (log_ = 0) or log_softmax (1) of x over axis into out (x's shape). */
kiln_status kiln_cuda_launch_softmax(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, int axis, int log_,
                                     void *stream);
/* out = y * (g - sum(g * y)) (softmax) or g - exp(y) * sum(g) (log_softmax); g, y and
 * out share one shape (g may be expanded). */
kiln_status kiln_cuda_launch_softmax_backward(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                              const kiln_cuda_tensor *y, int axis, int log_, void *stream);

#ifdef __cplusplus
}
#endif
#endif

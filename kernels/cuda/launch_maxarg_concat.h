/* Host launchers of the axis ops max/argmax (maxarg.cu) and concat (concat.cu). Same
 * conventions as launch.h (descriptors in elements, device memory in CUDA builds,
 * host memory under the emulator). */
#ifndef KILN_CUDA_LAUNCH_MAXARG_CONCAT_H
#define KILN_CUDA_LAUNCH_MAXARG_CONCAT_H

#include "launch.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out (I64, keepdim) = first maximal index of x along axis, the first NaN winning. */
kiln_status kiln_cuda_launch_argmax(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, int axis,
                                    void *stream);
/* out (keepdim) = x gathered at idx along axis (any dtype). */
kiln_status kiln_cuda_launch_max(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x,
                                 const kiln_cuda_tensor *idx, int axis, void *stream);
/* out (x's shape) = g where the axis index equals idx, 0 elsewhere; every element written. */
kiln_status kiln_cuda_launch_max_backward(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                          const kiln_cuda_tensor *idx, int axis, void *stream);

/* One input of a concat: a raw element copy of in into out (the output's window
 * for that input, same shape), any dtype. */
kiln_status kiln_cuda_launch_concat_part(const kiln_cuda_tensor *out, const kiln_cuda_tensor *in, void *stream);

#ifdef __cplusplus
}
#endif
#endif

/* Launchers of the fused optimizer updates and the gradient-clipping kernels
 * (optimizer.cu), and the host entry points optim/optimizer.c and optim/clip.c call
 * for CUDA parameters (glue_optimizer.c). Same conventions as launch.h: plain
 * pointers, element counts. */
#ifndef KILN_CUDA_LAUNCH_OPTIMIZER_H
#define KILN_CUDA_LAUNCH_OPTIMIZER_H

#include "launch.h"
#include "../optim_math.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Fused optimizer updates over one contiguous span of n elements, one launch. */
kiln_status kiln_cuda_launch_sgd(kiln_dtype dt, void *p, const void *g, void *buf, int64_t n,
                                 const kiln_sgd_hparams *h, void *stream);
kiln_status kiln_cuda_launch_adam(kiln_dtype dt, void *p, const void *g, void *m, void *v, void *vmax, int64_t n,
                                  const kiln_adam_hparams *h, void *stream);
/* Clipping: partial sums of |g|^norm_type (or maxima when infinite) into scratch,
 * folded in a fixed order into *result (device memory, one double). */
size_t kiln_cuda_norm_scratch_bytes(int64_t n);
kiln_status kiln_cuda_launch_norm(kiln_dtype dt, const void *g, int64_t n, double norm_type, void *scratch,
                                  double *result, void *stream);
kiln_status kiln_cuda_launch_scale(kiln_dtype dt, void *g, int64_t n, double scale, void *stream);
kiln_status kiln_cuda_launch_clamp(kiln_dtype dt, void *g, int64_t n, double lo, double hi, void *stream);

/* ---- host entry points (kernels/cuda/glue_optimizer.c) for optim/optimizer.c and optim/clip.c:
 * spans of device memory on dev (host memory in the emulation library). */
kiln_status kiln_cuda_sgd_update(kiln_device dev, kiln_dtype dt, void *p, const void *g, void *buf, int64_t n,
                                 const kiln_sgd_hparams *h);
kiln_status kiln_cuda_adam_update(kiln_device dev, kiln_dtype dt, void *p, const void *g, void *m, void *v,
                                  void *vmax, int64_t n, const kiln_adam_hparams *h);
/* sum |g|^norm_type over the span (max |g| when infinite), in double, as kiln_cpu_norm_accumulate. */
kiln_status kiln_cuda_norm_accumulate(kiln_device dev, kiln_dtype dt, const void *g, int64_t n, double norm_type,
                                      double *out);
kiln_status kiln_cuda_scale(kiln_device dev, kiln_dtype dt, void *g, int64_t n, double scale);
kiln_status kiln_cuda_clamp(kiln_device dev, kiln_dtype dt, void *g, int64_t n, double lo, double hi);

#ifdef __cplusplus
}
#endif
#endif

/* Launchers of the dense-layer, batch-norm, dropout and optimizer kernels (the custom
 * halves of the cuBLAS/cuSOLVER area), and the host entry points the optimizer and
 * gradient clipping call for CUDA parameters. Same conventions as launch.h: plain
 * pointers, element strides, symbols kiln_emu_… in the emulation library. */
#ifndef KILN_CUDA_LAUNCH_BLAS_H
#define KILN_CUDA_LAUNCH_BLAS_H

#include "launch.h"
#include "../optim_math.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[j * out_stride] = sum over r < rows of g[r * rs + j * cs] for j < cols, in double
 * and in a fixed order (no atomics): the bias gradient of linear. scratch: as asked. */
size_t KILN_CU(cuda_bias_grad_scratch_bytes)(int64_t rows, int64_t cols);
kiln_status KILN_CU(cuda_launch_bias_grad)(kiln_dtype dt, void *out, int64_t out_stride, const void *g, int64_t rows,
                                           int64_t cols, int64_t rs, int64_t cs, void *scratch, void *stream);

/* Batch norm over axis 1 of an (N, C, H, W) tensor (2- and 3-d: trailing axes of 1). */
typedef struct {
    int64_t n, c, h, w;
    int64_t sn, sc, sh, sw; /* elements */
    void *data;
} kiln_cuda_bn_geom;

/* stats (2, C) contiguous: row 0 the means, row 1 the biased variances of x. */
kiln_status KILN_CU(cuda_launch_bn_stats)(kiln_dtype dt, void *stats, const kiln_cuda_bn_geom *x, void *stream);
/* Per-channel tensors as (pointer, element stride); a NULL pointer means absent
 * (weight 1, bias 0). */
typedef struct {
    const void *p;
    int64_t stride;
} kiln_cuda_chan;
kiln_status KILN_CU(cuda_launch_bn_forward)(kiln_dtype dt, const kiln_cuda_bn_geom *out, const kiln_cuda_bn_geom *x,
                                            kiln_cuda_chan w, kiln_cuda_chan b, kiln_cuda_chan mean,
                                            kiln_cuda_chan var, double eps, void *stream);
/* which 0: dx into out (geometry of x), from the sums in sum_g / sum_gx when their p is
 * not NULL; 1: dweight, 2: dbias into the 1-d out (stride); 3: Σg and Σg·x̂ into the
 * (2, C) out, the second row out_row elements after the first. */
kiln_status KILN_CU(cuda_launch_bn_backward)(kiln_dtype dt, int which, int training, const kiln_cuda_bn_geom *out,
                                             void *out_chan, int64_t out_stride, int64_t out_row,
                                             const kiln_cuda_bn_geom *g, const kiln_cuda_bn_geom *x, kiln_cuda_chan w,
                                             kiln_cuda_chan mean, kiln_cuda_chan var, kiln_cuda_chan sum_g,
                                             kiln_cuda_chan sum_gx, double eps, void *stream);

/* out = x masked by Philox(seed, offset + i) >= p (i the C-order index) and scaled by 1/(1-p). */
kiln_status KILN_CU(cuda_launch_dropout)(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, double p,
                                         uint64_t seed, uint64_t offset, void *stream);

/* Fused optimizer updates over one contiguous span of n elements, one launch. */
kiln_status KILN_CU(cuda_launch_sgd)(kiln_dtype dt, void *p, const void *g, void *buf, int64_t n,
                                     const kiln_sgd_hparams *h, void *stream);
kiln_status KILN_CU(cuda_launch_adam)(kiln_dtype dt, void *p, const void *g, void *m, void *v, void *vmax, int64_t n,
                                      const kiln_adam_hparams *h, void *stream);
/* Clipping: partial sums of |g|^norm_type (or maxima when infinite) into scratch,
 * folded in a fixed order into *result (device memory, one double). */
size_t KILN_CU(cuda_norm_scratch_bytes)(int64_t n);
kiln_status KILN_CU(cuda_launch_norm)(kiln_dtype dt, const void *g, int64_t n, double norm_type, void *scratch,
                                      double *result, void *stream);
kiln_status KILN_CU(cuda_launch_scale)(kiln_dtype dt, void *g, int64_t n, double scale, void *stream);
kiln_status KILN_CU(cuda_launch_clamp)(kiln_dtype dt, void *g, int64_t n, double lo, double hi, void *stream);

/* glue helpers (kernels/cuda/glue_blas.c): whether t's leading axes fold into one row
 * stride (*rs, elements; any value when there is one row); a contiguous copy of t
 * made on t's stream, from the pool (the caller frees it). */
bool KILN_CU(cuda_fold_rows)(const kiln_tensor *t, int64_t *rs);
kiln_tensor *KILN_CU(cuda_contiguous_scratch)(const kiln_tensor *t);

/* ---- host entry points (kernels/cuda/glue_blas.c) for optim/optimizer.c and optim/clip.c:
 * spans of device memory on dev (host memory in the emulation library). */
kiln_status KILN_CU(cuda_sgd_update)(kiln_device dev, kiln_dtype dt, void *p, const void *g, void *buf, int64_t n,
                                     const kiln_sgd_hparams *h);
kiln_status KILN_CU(cuda_adam_update)(kiln_device dev, kiln_dtype dt, void *p, const void *g, void *m, void *v,
                                      void *vmax, int64_t n, const kiln_adam_hparams *h);
/* sum |g|^norm_type over the span (max |g| when infinite), in double, as kiln_cpu_norm_accumulate. */
kiln_status KILN_CU(cuda_norm_accumulate)(kiln_device dev, kiln_dtype dt, const void *g, int64_t n, double norm_type,
                                          double *out);
kiln_status KILN_CU(cuda_scale)(kiln_device dev, kiln_dtype dt, void *g, int64_t n, double scale);
kiln_status KILN_CU(cuda_clamp)(kiln_device dev, kiln_dtype dt, void *g, int64_t n, double lo, double hi);

#ifdef __cplusplus
}
#endif
#endif

/* Host launchers of batch norm (batch_norm.cu) and dropout (dropout.cu). Same
 * conventions as launch.h: plain pointers, element strides. */
#ifndef KILN_CUDA_LAUNCH_BATCH_NORM_DROPOUT_H
#define KILN_CUDA_LAUNCH_BATCH_NORM_DROPOUT_H

#include "launch.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Batch norm over axis 1 of an (N, C, H, W) tensor (2- and 3-d: trailing axes of 1). */
typedef struct {
    int64_t n, c, h, w;
    int64_t sn, sc, sh, sw; /* elements */
    void *data;
} kiln_cuda_bn_geom;

/* stats (2, C) contiguous: row 0 the means, row 1 the biased variances of x. */
kiln_status kiln_cuda_launch_bn_stats(kiln_dtype dt, void *stats, const kiln_cuda_bn_geom *x, void *stream);
/* Per-channel tensors as (pointer, element stride); a NULL pointer means absent
 * (weight 1, bias 0). */
typedef struct {
    const void *p;
    int64_t stride;
} kiln_cuda_chan;
kiln_status kiln_cuda_launch_bn_forward(kiln_dtype dt, const kiln_cuda_bn_geom *out, const kiln_cuda_bn_geom *x,
                                        kiln_cuda_chan w, kiln_cuda_chan b, kiln_cuda_chan mean,
                                        kiln_cuda_chan var, double eps, void *stream);
/* which 0: dx into out (geometry of x), from the sums in sum_g / sum_gx when their p is
 * not NULL; 1: dweight, 2: dbias into the 1-d out (stride); 3: Σg and Σg·x̂ into the
 * (2, C) out, the second row out_row elements after the first. */
kiln_status kiln_cuda_launch_bn_backward(kiln_dtype dt, int which, int training, const kiln_cuda_bn_geom *out,
                                         void *out_chan, int64_t out_stride, int64_t out_row,
                                         const kiln_cuda_bn_geom *g, const kiln_cuda_bn_geom *x, kiln_cuda_chan w,
                                         kiln_cuda_chan mean, kiln_cuda_chan var, kiln_cuda_chan sum_g,
                                         kiln_cuda_chan sum_gx, double eps, void *stream);

/* out = x masked by Philox(seed, offset + i) >= p (i the C-order index) and scaled by 1/(1-p). */
kiln_status kiln_cuda_launch_dropout(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, double p,
                                     uint64_t seed, uint64_t offset, void *stream);

#ifdef __cplusplus
}
#endif
#endif

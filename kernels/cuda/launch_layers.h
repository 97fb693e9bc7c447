/* Host launchers of the CNN-layer kernels (pooling.cu, upsample.cu, conv2d.cu): plain
 * pointers, shapes and strides, as launch.h. Pooling and upsampling take 4-d NCHW
 * tensors of any strides and write contiguous outputs; their backward passes gather
 * (one thread per input pixel, adding its contributions in the CPU kernel's order),
 * so they need no atomics and give the CPU's sums bit for bit. */
#ifndef KILN_CUDA_LAUNCH_LAYERS_H
#define KILN_CUDA_LAUNCH_LAYERS_H

#include "launch.h"
#include "../conv2d_geometry.h"
#include "../../layers/layers_attrs.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- pooling (pooling.cu) ------------------------------------------------------------ */
/* y (n, c, ho, wo) = the windows' maxima of x (n, c, h, w), torch's rules (kernels/cpu/pooling.c). */
kiln_status kiln_cuda_launch_max_pool2d(const kiln_cuda_tensor *y, const kiln_cuda_tensor *x,
                                        const kiln_pool2d_attrs *at, void *stream);
/* Bytes of device scratch max_pool2d_backward needs (one int32 argmax per output). */
size_t kiln_cuda_max_pool2d_scratch_bytes(const kiln_cuda_tensor *gy);
/* dx (shape of x, contiguous) = gy routed to each window's first maximum. */
kiln_status kiln_cuda_launch_max_pool2d_backward(const kiln_cuda_tensor *dx, const kiln_cuda_tensor *gy,
                                                 const kiln_cuda_tensor *x, const kiln_pool2d_attrs *at,
                                                 void *scratch, void *stream);
kiln_status kiln_cuda_launch_avg_pool2d(const kiln_cuda_tensor *y, const kiln_cuda_tensor *x,
                                        const kiln_pool2d_attrs *at, void *stream);
/* dx (contiguous; its shape is the forward input's) = gy spread over the windows. */
kiln_status kiln_cuda_launch_avg_pool2d_backward(const kiln_cuda_tensor *dx, const kiln_cuda_tensor *gy,
                                                 const kiln_pool2d_attrs *at, void *stream);

/* ---- upsampling (upsample.cu) ------------------------------------------------------- */
kiln_status kiln_cuda_launch_upsample_nearest2d(const kiln_cuda_tensor *y, const kiln_cuda_tensor *x,
                                                const kiln_upsample2d_attrs *at, void *stream);
kiln_status kiln_cuda_launch_upsample_nearest2d_backward(const kiln_cuda_tensor *dx, const kiln_cuda_tensor *gy,
                                                         const kiln_upsample2d_attrs *at, void *stream);
kiln_status kiln_cuda_launch_upsample_bilinear2d(const kiln_cuda_tensor *y, const kiln_cuda_tensor *x,
                                                 const kiln_upsample2d_attrs *at, void *stream);
kiln_status kiln_cuda_launch_upsample_bilinear2d_backward(const kiln_cuda_tensor *dx,
                                                          const kiln_cuda_tensor *gy,
                                                          const kiln_upsample2d_attrs *at, void *stream);

/* ---- im2col / col2im and the bias epilogue (conv2d.cu) ------------------------------ */
/* g: kernels/conv2d_geometry.h's; these read only its first thirteen fields, one sample's. */

/* col (cin*kh*kw, ho*wo) = the input pixel each kernel tap sees at each output pixel
 * (0 in the padding), from the contiguous sample x (cin, h, w); f32 or f64. */
kiln_status kiln_cuda_launch_im2col(kiln_dtype dt, const void *x, void *col, const kiln_conv_geometry *g,
                                    void *stream);
/* The adjoint: x (cin, h, w) = the sum of the column entries of each pixel, written
 * (not accumulated), in the CPU's order. */
kiln_status kiln_cuda_launch_col2im(kiln_dtype dt, const void *col, void *x, const kiln_conv_geometry *g,
                                    void *stream);
/* y (n, c, l contiguous) += b[c] (b may be NULL), then max(y, 0) when relu. */
kiln_status kiln_cuda_launch_bias_act(kiln_dtype dt, void *y, const void *b, int64_t n, int64_t c, int64_t l,
                                      int relu, void *stream);

#ifdef __cplusplus
}
#endif
#endif

/* Attribute structs of the layer ops (conv, pooling, upsampling), resolved by the
 * front-ends in layers/ and read by the CPU and CUDA kernels (a convolution's through
 * kernels/conv2d_geometry.h). Plain C, no kiln types: a .cu file can include it as it is. */
#ifndef KILN_LAYERS_ATTRS_H
#define KILN_LAYERS_ATTRS_H

#include <stdint.h>

/* conv2d, its two backward ops and conv_transpose2d. pad is the top/left padding;
 * the bottom/right one follows from the output size, which is how "same" padding
 * with an odd total and output_padding both reach the kernels. For conv_transpose2d
 * the fields are those of the conv2d it is the input-gradient of. */
typedef struct {
    int64_t stride[2], pad[2], dilation[2], groups;
} kiln_conv2d_attrs;

/* max_pool2d, avg_pool2d and their backward ops; sizes (H, W). ceil_mode only
 * changes the output size, so the kernels take it from the output. */
typedef struct {
    int64_t kernel[2], stride[2], pad[2], dilation[2];
    int32_t count_include_pad;
} kiln_pool2d_attrs;

/* upsample_nearest2d, upsample_bilinear2d and their backward ops. scale[i] is torch's
 * source-index scale for axis i in double: in/out, 1/scale_factor when a factor was given
 * (factor[i] = 1), or (in-1)/(out-1) with align_corners (0 for an output of size 1).
 * Nearest rounds it as torch 1.13 does per dtype (f32: (float)(1/factor) or (float)in /
 * (float)out; see kernels/cpu/upsample.c). */
typedef struct {
    double scale[2];
    int32_t align_corners;
    int32_t factor[2];
} kiln_upsample2d_attrs;

#endif

/* The geometry of upsampling: nearest's scale and source index, bilinear's taps. The CPU
 * kernels (kernels/cpu/upsample.c) and the CUDA ones (kernels/cuda/upsample.cu) plan with
 * these functions alone, so both read the same source pixels with the same weights. Plain
 * C, also valid CUDA C++. */
#ifndef KILN_UPSAMPLE_GEOMETRY_H
#define KILN_UPSAMPLE_GEOMETRY_H

#include <math.h>
#include <stdint.h>

#include "../layers/layers_attrs.h"

#ifdef __CUDACC__
#define KILN_UPSAMPLE_HD static __host__ __device__ __forceinline__
#else
#define KILN_UPSAMPLE_HD static inline
#endif

/* On the device, the products and sums round as the CPU's (no FMA contraction). */
#ifdef __CUDA_ARCH__
#define KILN_UPSAMPLE_MUL(a, b) __dmul_rn((a), (b))
#define KILN_UPSAMPLE_ADD(a, b) __dadd_rn((a), (b))
#define KILN_UPSAMPLE_FMUL(a, b) __fmul_rn((a), (b))
#else
#define KILN_UPSAMPLE_MUL(a, b) ((a) * (b))
#define KILN_UPSAMPLE_ADD(a, b) ((a) + (b))
#define KILN_UPSAMPLE_FMUL(a, b) ((a) * (b))
#endif

/* The source-index scale of nearest as torch 1.13 rounds it: in the tensor's dtype,
 * 1/factor (a factor given) or in/out. */
KILN_UPSAMPLE_HD double kiln_upsample_nearest_scale(const kiln_upsample2d_attrs *at, int axis, int64_t in,
                                                    int64_t out, int f64) {
    if (f64) return at->scale[axis];
    return at->factor[axis] ? (double)(float)at->scale[axis] : (double)((float)in / (float)out);
}

/* torch 1.13's nearest source index on NCHW input (its generic CPU kernel, and its CUDA
 * kernel): floor(dst * scale) with the product in the dtype, taken through float,
 * clamped to the last pixel. No shortcut for equal or doubled sizes: with a scale factor
 * given, 1.2 on a 3-wide axis samples 0, 0, 1, not 0, 1, 2. (torch's CPU backward, and its
 * forward on channels-last or one-channel input, take nearest_idx's shortcuts instead;
 * kiln's backward is the adjoint of this forward.) */
KILN_UPSAMPLE_HD int64_t kiln_upsample_nearest_src(int64_t dst, int64_t in, double scale, int f64) {
    float src = f64 ? (float)KILN_UPSAMPLE_MUL(scale, (double)dst) : KILN_UPSAMPLE_FMUL((float)dst, (float)scale);
    int64_t i = (int64_t)floorf(src);
    return i < in - 1 ? i : in - 1;
}

/* Bilinear taps along one axis: i0 and i0 + step with weights l0, l1. */
typedef struct {
    int64_t i0, step;
    double l0, l1;
} kiln_upsample_taps;

/* torch's compute_source_index_and_lambda: an axis whose size does not change is
 * copied (whatever the scale factor said), else the half-pixel (or corner) source. */
KILN_UPSAMPLE_HD kiln_upsample_taps kiln_upsample_linear_taps(int64_t dst, int64_t in, int64_t out, double scale,
                                                              int align_corners) {
    kiln_upsample_taps t;
    if (out == in) {
        t.i0 = dst;
        t.step = 0;
        t.l0 = 1.0;
        t.l1 = 0.0;
        return t;
    }
    double d = (double)dst;
    double src = align_corners ? KILN_UPSAMPLE_MUL(scale, d)
                               : KILN_UPSAMPLE_ADD(KILN_UPSAMPLE_MUL(scale, KILN_UPSAMPLE_ADD(d, 0.5)), -0.5);
    if (src < 0) src = 0;
    t.i0 = (int64_t)src;
    if (t.i0 > in - 1) t.i0 = in - 1;
    t.step = t.i0 < in - 1 ? 1 : 0;
    t.l1 = src - (double)t.i0;
    t.l0 = 1.0 - t.l1;
    return t;
}

#endif

/* CUDA nearest and bilinear upsampling over NCHW, forward and backward, with torch 1.13's
 * source-index formulas as the CPU computes them (kernels/cpu/upsample.c). Source
 * indices are monotone in the output index, so a backward thread per input pixel
 * finds the output rows and columns that read it by binary search and gathers their
 * gradients in the CPU's order: no atomics, and the CPU's sums bit for bit. */
#include "common.cuh"
#include "launch_layers.h"
#include "../upsample_geometry.h"

namespace {
using namespace kiln_cuda;

/* The planes (of x forward, of gy backward) and the scales. */
struct up_geom : plane_geom {
    double scale_h, scale_w;   /* bilinear: torch's scale in double */
    double nscale_h, nscale_w; /* nearest: the scale as torch rounds it for the dtype */
    int align_corners;
};

static up_geom make_geom(const kiln_cuda_tensor *in, int64_t h, int64_t w, int64_t ho, int64_t wo,
                         const kiln_upsample2d_attrs *at, bool f64) {
    up_geom g;
    set_planes(g, in, h, w, ho, wo);
    g.scale_h = at->scale[0];
    g.scale_w = at->scale[1];
    g.nscale_h = kiln_upsample_nearest_scale(at, 0, h, ho, f64);
    g.nscale_w = kiln_upsample_nearest_scale(at, 1, w, wo, f64);
    g.align_corners = at->align_corners;
    return g;
}

/* nearest's source index (kernels/upsample_geometry.h) in T's arithmetic */
template <typename T> __device__ __forceinline__ int64_t nearest_src(int64_t dst, int64_t in, double scale) {
    return kiln_upsample_nearest_src(dst, in, scale, sizeof(T) == sizeof(double));
}

/* The first output index in [0, out) whose source is >= v (out when none). */
template <typename T>
__device__ __forceinline__ int64_t nearest_lower_bound(int64_t v, int64_t in, int64_t out, double scale) {
    int64_t lo = 0, hi = out;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (nearest_src<T>(mid, in, scale) < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

typedef kiln_upsample_taps taps; /* kernels/upsample_geometry.h, shared with the CPU */

/* The first output index whose first tap is >= v (out when none). */
__device__ __forceinline__ int64_t linear_lower_bound(int64_t v, int64_t in, int64_t out, double scale, int align) {
    int64_t lo = 0, hi = out;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (kiln_upsample_linear_taps(mid, in, out, scale, align).i0 < v) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* One thread per output element: y = x at the nearest source pixel. */
template <typename T> __global__ void nearest_kernel(up_geom g, const T *x, T *y) {
    int64_t total = g.n * g.c * g.ho * g.wo, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += step) {
        int64_t ow = o % g.wo, t = o / g.wo, oh = t % g.ho, p = t / g.ho;
        int64_t ih = nearest_src<T>(oh, g.h, g.nscale_h), iw = nearest_src<T>(ow, g.w, g.nscale_w);
        y[o] = x[(p / g.c) * g.xs[0] + (p % g.c) * g.xs[1] + ih * g.xs[2] + iw * g.xs[3]];
    }
}

/* One thread per input pixel: the sum of gy over the outputs that copied it. */
template <typename T> __global__ void nearest_backward_kernel(up_geom g, const T *gy, T *dx) {
    int64_t total = g.n * g.c * g.h * g.w, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        int64_t iw = i % g.w, t = i / g.w, ih = t % g.h, p = t / g.h;
        int64_t oh0 = nearest_lower_bound<T>(ih, g.h, g.ho, g.nscale_h);
        int64_t oh1 = nearest_lower_bound<T>(ih + 1, g.h, g.ho, g.nscale_h);
        int64_t ow0 = nearest_lower_bound<T>(iw, g.w, g.wo, g.nscale_w);
        int64_t ow1 = nearest_lower_bound<T>(iw + 1, g.w, g.wo, g.nscale_w);
        const T *gp = gy + (p / g.c) * g.xs[0] + (p % g.c) * g.xs[1];
        T acc = 0;
        for (int64_t oh = oh0; oh < oh1; oh++)
            for (int64_t ow = ow0; ow < ow1; ow++) acc += gp[oh * g.xs[2] + ow * g.xs[3]];
        dx[i] = acc;
    }
}

/* One thread per output element: the weighted four taps, in the CPU's order. */
template <typename T> __global__ void bilinear_kernel(up_geom g, const T *x, T *y) {
    int64_t total = g.n * g.c * g.ho * g.wo, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += step) {
        int64_t ow = o % g.wo, t = o / g.wo, oh = t % g.ho, p = t / g.ho;
        taps a = kiln_upsample_linear_taps(oh, g.h, g.ho, g.scale_h, g.align_corners);
        taps b = kiln_upsample_linear_taps(ow, g.w, g.wo, g.scale_w, g.align_corners);
        const T *xp = x + (p / g.c) * g.xs[0] + (p % g.c) * g.xs[1];
        const T *r0 = xp + a.i0 * g.xs[2], *r1 = xp + (a.i0 + a.step) * g.xs[2];
        int64_t c0 = b.i0 * g.xs[3], c1 = (b.i0 + b.step) * g.xs[3];
        double top = __dadd_rn(__dmul_rn(b.l0, (double)r0[c0]), __dmul_rn(b.l1, (double)r0[c1]));
        double bot = __dadd_rn(__dmul_rn(b.l0, (double)r1[c0]), __dmul_rn(b.l1, (double)r1[c1]));
        y[o] = (T)__dadd_rn(__dmul_rn(a.l0, top), __dmul_rn(a.l1, bot));
    }
}

/* One thread per input pixel: every output whose taps include it (first tap at this
 * row or the one before), its four weighted contributions in the CPU's tap order. */
template <typename T> __global__ void bilinear_backward_kernel(up_geom g, const T *gy, T *dx) {
    int64_t total = g.n * g.c * g.h * g.w, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        int64_t iw = i % g.w, t = i / g.w, ih = t % g.h, p = t / g.h;
        int64_t oh0 = linear_lower_bound(ih - 1, g.h, g.ho, g.scale_h, g.align_corners);
        int64_t oh1 = linear_lower_bound(ih + 1, g.h, g.ho, g.scale_h, g.align_corners);
        int64_t ow0 = linear_lower_bound(iw - 1, g.w, g.wo, g.scale_w, g.align_corners);
        int64_t ow1 = linear_lower_bound(iw + 1, g.w, g.wo, g.scale_w, g.align_corners);
        const T *gp = gy + (p / g.c) * g.xs[0] + (p % g.c) * g.xs[1];
        T acc = 0;
        for (int64_t oh = oh0; oh < oh1; oh++) {
            taps a = kiln_upsample_linear_taps(oh, g.h, g.ho, g.scale_h, g.align_corners);
            bool row0 = a.i0 == ih, row1 = a.i0 + a.step == ih;
            for (int64_t ow = ow0; ow < ow1; ow++) {
                taps b = kiln_upsample_linear_taps(ow, g.w, g.wo, g.scale_w, g.align_corners);
                bool col0 = b.i0 == iw, col1 = b.i0 + b.step == iw;
                double gv = (double)gp[oh * g.xs[2] + ow * g.xs[3]];
                if (row0 && col0) acc += (T)__dmul_rn(__dmul_rn(gv, a.l0), b.l0);
                if (row0 && col1) acc += (T)__dmul_rn(__dmul_rn(gv, a.l0), b.l1);
                if (row1 && col0) acc += (T)__dmul_rn(__dmul_rn(gv, a.l1), b.l0);
                if (row1 && col1) acc += (T)__dmul_rn(__dmul_rn(gv, a.l1), b.l1);
            }
        }
        dx[i] = acc;
    }
}

enum { NEAREST, NEAREST_BW, BILINEAR, BILINEAR_BW };

template <typename T>
static void launch(int kind, const up_geom &g, int64_t work, const void *in, void *out, void *stream) {
    const T *src = (const T *)in;
    T *dst = (T *)out;
    switch (kind) {
    case NEAREST: KILN_LAUNCH(nearest_kernel<T>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, g, src, dst); break;
    case NEAREST_BW:
        KILN_LAUNCH(nearest_backward_kernel<T>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, g, src, dst);
        break;
    case BILINEAR: KILN_LAUNCH(bilinear_kernel<T>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, g, src, dst); break;
    default: KILN_LAUNCH(bilinear_backward_kernel<T>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, g, src, dst); break;
    }
}

/* out: y (forward) or dx (backward, contiguous); in: x or gy, any strides. */
static kiln_status run(const char *op, int kind, const kiln_cuda_tensor *out, const kiln_cuda_tensor *in,
                       const kiln_upsample2d_attrs *at, void *stream) {
    kiln_status s = check_float(op, out->dtype);
    if (s != KILN_STATUS_OK) return s;
    bool backward = kind == NEAREST_BW || kind == BILINEAR_BW;
    const kiln_cuda_tensor *big = backward ? in : out, *small = backward ? out : in;
    up_geom g = make_geom(in, small->shape[2], small->shape[3], big->shape[2], big->shape[3], at,
                          out->dtype == KILN_F64);
    int64_t work = g.n * g.c * (backward ? g.h * g.w : g.ho * g.wo);
    if (work == 0) return KILN_STATUS_OK;
    if (out->dtype == KILN_F32) launch<float>(kind, g, work, in->data, out->data, stream);
    else launch<double>(kind, g, work, in->data, out->data, stream);
    KILN_LAUNCH_CHECK(op, stream);
    return KILN_STATUS_OK;
}

} // namespace

extern "C" {

kiln_status kiln_cuda_launch_upsample_nearest2d(const kiln_cuda_tensor *y, const kiln_cuda_tensor *x,
                                                const kiln_upsample2d_attrs *at, void *stream) {
    return run("upsample_nearest2d", NEAREST, y, x, at, stream);
}

kiln_status kiln_cuda_launch_upsample_nearest2d_backward(const kiln_cuda_tensor *dx, const kiln_cuda_tensor *gy,
                                                         const kiln_upsample2d_attrs *at, void *stream) {
    return run("upsample_nearest2d_backward", NEAREST_BW, dx, gy, at, stream);
}

kiln_status kiln_cuda_launch_upsample_bilinear2d(const kiln_cuda_tensor *y, const kiln_cuda_tensor *x,
                                                 const kiln_upsample2d_attrs *at, void *stream) {
    return run("upsample_bilinear2d", BILINEAR, y, x, at, stream);
}

kiln_status kiln_cuda_launch_upsample_bilinear2d_backward(const kiln_cuda_tensor *dx,
                                                          const kiln_cuda_tensor *gy,
                                                          const kiln_upsample2d_attrs *at, void *stream) {
    return run("upsample_bilinear2d_backward", BILINEAR_BW, dx, gy, at, stream);
}

} // extern "C"

/* CUDA max and average pooling over NCHW, forward and backward, with the CPU
 * kernels' window rules (kernels/cpu/pooling.c). Backward passes gather: a thread per
 * input pixel visits the windows that can contain it in the CPU's (oh, ow) order,
 * so no atomics are needed and the sums match the CPU's bit for bit. */
#include "common.cuh"
#include "launch_layers.h"

namespace {
using namespace kiln_cuda;

/* The geometry every pooling kernel reads: the planes (of x, or of gy in the backward
 * passes) and the attrs as plain fields. */
struct pool_geom : plane_geom {
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
    int count_include_pad;
};

static pool_geom make_geom(const kiln_cuda_tensor *in, int64_t h, int64_t w, int64_t ho, int64_t wo,
                           const kiln_pool2d_attrs *at) {
    pool_geom g;
    set_planes(g, in, h, w, ho, wo);
    g.kh = at->kernel[0];
    g.kw = at->kernel[1];
    g.sh = at->stride[0];
    g.sw = at->stride[1];
    g.ph = at->pad[0];
    g.pw = at->pad[1];
    g.dh = at->dilation[0];
    g.dw = at->dilation[1];
    g.count_include_pad = at->count_include_pad;
    return g;
}

__device__ __forceinline__ int64_t floor_div(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}
__device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) { return -floor_div(-a, b); }

__device__ __forceinline__ bool is_nan(float v) { return v != v; }
__device__ __forceinline__ bool is_nan(double v) { return v != v; }

/* Max over the window of output (oh, ow) of plane (n, c), clipped to the input and
 * started on its first in-bounds tap; idx gets the plane index of the first maximum
 * (NaN wins), -1 for an empty window. */
template <typename T>
__device__ T window_max(const T *x, const pool_geom &g, int64_t n, int64_t c, int64_t oh, int64_t ow, int *idx) {
    int64_t h0 = oh * g.sh - g.ph, w0 = ow * g.sw - g.pw;
    int64_t h1 = h0 + (g.kh - 1) * g.dh + 1, w1 = w0 + (g.kw - 1) * g.dw + 1;
    if (h1 > g.h) h1 = g.h;
    if (w1 > g.w) w1 = g.w;
    while (h0 < 0) h0 += g.dh;
    while (w0 < 0) w0 += g.dw;
    const T *xp = x + n * g.xs[0] + c * g.xs[1];
    int best = -1;
    T m = (T)-INFINITY;
    if (h0 < h1 && w0 < w1) best = (int)(h0 * g.w + w0);
    for (int64_t ih = h0; ih < h1; ih += g.dh)
        for (int64_t iw = w0; iw < w1; iw += g.dw) {
            T v = xp[ih * g.xs[2] + iw * g.xs[3]];
            if (v > m || is_nan(v)) {
                m = v;
                best = (int)(ih * g.w + iw);
            }
        }
    *idx = best;
    return m;
}

/* The average window of (oh, ow) clipped to the input, and torch's divisor. */
struct avg_win {
    int64_t h0, h1, w0, w1, div;
};
__device__ __forceinline__ avg_win avg_window(const pool_geom &g, int64_t oh, int64_t ow) {
    avg_win r;
    r.h0 = oh * g.sh - g.ph;
    r.w0 = ow * g.sw - g.pw;
    r.h1 = r.h0 + g.kh;
    r.w1 = r.w0 + g.kw;
    if (r.h1 > g.h + g.ph) r.h1 = g.h + g.ph;
    if (r.w1 > g.w + g.pw) r.w1 = g.w + g.pw;
    int64_t padded = (r.h1 - r.h0) * (r.w1 - r.w0);
    if (r.h0 < 0) r.h0 = 0;
    if (r.w0 < 0) r.w0 = 0;
    if (r.h1 > g.h) r.h1 = g.h;
    if (r.w1 > g.w) r.w1 = g.w;
    r.div = g.count_include_pad ? padded : (r.h1 - r.h0) * (r.w1 - r.w0);
    return r;
}

/* One thread per output element, grid-stride: y = the window's max; with idx, the
 * argmax is stored instead (the backward's first pass). */
template <typename T> __global__ void max_pool_kernel(pool_geom g, const T *x, T *y, int *idx) {
    int64_t total = g.n * g.c * g.ho * g.wo, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += step) {
        int64_t ow = o % g.wo, t = o / g.wo, oh = t % g.ho, p = t / g.ho;
        int i;
        T m = window_max(x, g, p / g.c, p % g.c, oh, ow, &i);
        if (idx) idx[o] = i;
        else y[o] = m;
    }
}

/* One thread per input pixel: the sum of gy over the windows whose argmax it is. */
template <typename T> __global__ void max_pool_backward_kernel(pool_geom g, const T *gy, const int *idx, T *dx) {
    int64_t total = g.n * g.c * g.h * g.w, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        int64_t iw = i % g.w, t = i / g.w, ih = t % g.h, p = t / g.h;
        int self = (int)(ih * g.w + iw);
        /* windows whose dilated span covers the pixel */
        int64_t oh0 = ceil_div(ih + g.ph - (g.kh - 1) * g.dh, g.sh), oh1 = floor_div(ih + g.ph, g.sh);
        int64_t ow0 = ceil_div(iw + g.pw - (g.kw - 1) * g.dw, g.sw), ow1 = floor_div(iw + g.pw, g.sw);
        if (oh0 < 0) oh0 = 0;
        if (ow0 < 0) ow0 = 0;
        if (oh1 > g.ho - 1) oh1 = g.ho - 1;
        if (ow1 > g.wo - 1) ow1 = g.wo - 1;
        const T *gp = gy + (p / g.c) * g.xs[0] + (p % g.c) * g.xs[1];
        const int *ip = idx + p * g.ho * g.wo;
        T acc = 0;
        for (int64_t oh = oh0; oh <= oh1; oh++)
            for (int64_t ow = ow0; ow <= ow1; ow++)
                if (ip[oh * g.wo + ow] == self) acc += gp[oh * g.xs[2] + ow * g.xs[3]];
        dx[i] = acc;
    }
}

/* One thread per output element: the window's sum in double over the divisor. */
template <typename T> __global__ void avg_pool_kernel(pool_geom g, const T *x, T *y) {
    int64_t total = g.n * g.c * g.ho * g.wo, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t o = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; o < total; o += step) {
        int64_t ow = o % g.wo, t = o / g.wo, oh = t % g.ho, p = t / g.ho;
        avg_win r = avg_window(g, oh, ow);
        if (r.h0 >= r.h1 || r.w0 >= r.w1) {
            y[o] = 0;
            continue;
        }
        const T *xp = x + (p / g.c) * g.xs[0] + (p % g.c) * g.xs[1];
        double s = 0;
        for (int64_t ih = r.h0; ih < r.h1; ih++)
            for (int64_t iw = r.w0; iw < r.w1; iw++) s += xp[ih * g.xs[2] + iw * g.xs[3]];
        y[o] = (T)(s / (double)r.div);
    }
}

/* One thread per input pixel: gy/divisor of every window that contains it. */
template <typename T> __global__ void avg_pool_backward_kernel(pool_geom g, const T *gy, T *dx) {
    int64_t total = g.n * g.c * g.h * g.w, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        int64_t iw = i % g.w, t = i / g.w, ih = t % g.h, p = t / g.h;
        int64_t oh0 = ceil_div(ih + g.ph - g.kh + 1, g.sh), oh1 = floor_div(ih + g.ph, g.sh);
        int64_t ow0 = ceil_div(iw + g.pw - g.kw + 1, g.sw), ow1 = floor_div(iw + g.pw, g.sw);
        if (oh0 < 0) oh0 = 0;
        if (ow0 < 0) ow0 = 0;
        if (oh1 > g.ho - 1) oh1 = g.ho - 1;
        if (ow1 > g.wo - 1) ow1 = g.wo - 1;
        const T *gp = gy + (p / g.c) * g.xs[0] + (p % g.c) * g.xs[1];
        T acc = 0;
        for (int64_t oh = oh0; oh <= oh1; oh++)
            for (int64_t ow = ow0; ow <= ow1; ow++) {
                avg_win r = avg_window(g, oh, ow);
                if (ih >= r.h0 && ih < r.h1 && iw >= r.w0 && iw < r.w1)
                    acc += gp[oh * g.xs[2] + ow * g.xs[3]] / (T)r.div;
            }
        dx[i] = acc;
    }
}

} // namespace

extern "C" {

kiln_status kiln_cuda_launch_max_pool2d(const kiln_cuda_tensor *y, const kiln_cuda_tensor *x,
                                        const kiln_pool2d_attrs *at, void *stream) {
    kiln_status s = check_float("max_pool2d", y->dtype);
    if (s != KILN_STATUS_OK) return s;
    pool_geom g = make_geom(x, x->shape[2], x->shape[3], y->shape[2], y->shape[3], at);
    int64_t work = g.n * g.c * g.ho * g.wo;
    if (work == 0) return KILN_STATUS_OK;
    if (y->dtype == KILN_F32)
        KILN_LAUNCH(max_pool_kernel<float>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, g, (const float *)x->data,
                    (float *)y->data, (int *)nullptr);
    else
        KILN_LAUNCH(max_pool_kernel<double>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, g, (const double *)x->data,
                    (double *)y->data, (int *)nullptr);
    KILN_LAUNCH_CHECK("max_pool2d", stream);
    return KILN_STATUS_OK;
}

size_t kiln_cuda_max_pool2d_scratch_bytes(const kiln_cuda_tensor *gy) {
    return (size_t)(gy->shape[0] * gy->shape[1] * gy->shape[2] * gy->shape[3]) * sizeof(int);
}

kiln_status kiln_cuda_launch_max_pool2d_backward(const kiln_cuda_tensor *dx, const kiln_cuda_tensor *gy,
                                                 const kiln_cuda_tensor *x, const kiln_pool2d_attrs *at,
                                                 void *scratch, void *stream) {
    kiln_status s = check_float("max_pool2d_backward", dx->dtype);
    if (s != KILN_STATUS_OK) return s;
    if (x->shape[2] * x->shape[3] > 0x7fffffff)
        return kiln__error(KILN_STATUS_SHAPE, "max_pool2d_backward: an input plane of %lldx%lld pixels is too large "
                           "for the CUDA kernel's 32-bit argmax; pool on the cpu device",
                           (long long)x->shape[2], (long long)x->shape[3]);
    /* pass 1: each window's argmax (x's strides), pass 2: the gather (gy's strides) */
    pool_geom gx = make_geom(x, x->shape[2], x->shape[3], gy->shape[2], gy->shape[3], at);
    pool_geom gg = make_geom(gy, x->shape[2], x->shape[3], gy->shape[2], gy->shape[3], at);
    int64_t outs = gx.n * gx.c * gx.ho * gx.wo, ins = gx.n * gx.c * gx.h * gx.w;
    if (ins == 0) return KILN_STATUS_OK;
    int *idx = (int *)scratch;
    if (dx->dtype == KILN_F32) {
        if (outs) KILN_LAUNCH(max_pool_kernel<float>, grid_for(outs), KILN_CUDA_BLOCK, 0, stream, gx,
                              (const float *)x->data, (float *)nullptr, idx);
        KILN_LAUNCH_CHECK("max_pool2d_backward (argmax)", stream);
        KILN_LAUNCH(max_pool_backward_kernel<float>, grid_for(ins), KILN_CUDA_BLOCK, 0, stream, gg,
                    (const float *)gy->data, (const int *)idx, (float *)dx->data);
    } else {
        if (outs) KILN_LAUNCH(max_pool_kernel<double>, grid_for(outs), KILN_CUDA_BLOCK, 0, stream, gx,
                              (const double *)x->data, (double *)nullptr, idx);
        KILN_LAUNCH_CHECK("max_pool2d_backward (argmax)", stream);
        KILN_LAUNCH(max_pool_backward_kernel<double>, grid_for(ins), KILN_CUDA_BLOCK, 0, stream, gg,
                    (const double *)gy->data, (const int *)idx, (double *)dx->data);
    }
    KILN_LAUNCH_CHECK("max_pool2d_backward", stream);
    return KILN_STATUS_OK;
}

kiln_status kiln_cuda_launch_avg_pool2d(const kiln_cuda_tensor *y, const kiln_cuda_tensor *x,
                                        const kiln_pool2d_attrs *at, void *stream) {
    kiln_status s = check_float("avg_pool2d", y->dtype);
    if (s != KILN_STATUS_OK) return s;
    pool_geom g = make_geom(x, x->shape[2], x->shape[3], y->shape[2], y->shape[3], at);
    int64_t work = g.n * g.c * g.ho * g.wo;
    if (work == 0) return KILN_STATUS_OK;
    if (y->dtype == KILN_F32)
        KILN_LAUNCH(avg_pool_kernel<float>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, g, (const float *)x->data,
                    (float *)y->data);
    else
        KILN_LAUNCH(avg_pool_kernel<double>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, g, (const double *)x->data,
                    (double *)y->data);
    KILN_LAUNCH_CHECK("avg_pool2d", stream);
    return KILN_STATUS_OK;
}

kiln_status kiln_cuda_launch_avg_pool2d_backward(const kiln_cuda_tensor *dx, const kiln_cuda_tensor *gy,
                                                 const kiln_pool2d_attrs *at, void *stream) {
    kiln_status s = check_float("avg_pool2d_backward", dx->dtype);
    if (s != KILN_STATUS_OK) return s;
    pool_geom g = make_geom(gy, dx->shape[2], dx->shape[3], gy->shape[2], gy->shape[3], at);
    int64_t work = g.n * g.c * g.h * g.w;
    if (work == 0) return KILN_STATUS_OK;
    if (dx->dtype == KILN_F32)
        KILN_LAUNCH(avg_pool_backward_kernel<float>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, g,
                    (const float *)gy->data, (float *)dx->data);
    else
        KILN_LAUNCH(avg_pool_backward_kernel<double>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, g,
                    (const double *)gy->data, (double *)dx->data);
    KILN_LAUNCH_CHECK("avg_pool2d_backward", stream);
    return KILN_STATUS_OK;
}

} // extern "C"

/* CUDA im2col / col2im for the convolution fallback (cuBLAS GEMMs on the columns,
 * kernels/cuda/conv2d_cudnn.c) and the bias (+ReLU) epilogue. col2im gathers: a thread
 * per input pixel adds its kernel taps in the CPU's (ki, kj) order, so no atomics
 * and the CPU's sums bit for bit (kernels/cpu/conv2d.c). The geometry is
 * kernels/conv2d_geometry.h's, planned by the caller as on the CPU. */
#include "common.cuh"
#include "launch_layers.h"

namespace {
using namespace kiln_cuda;

/* One thread per column element (c, ki, kj, oh, ow), grid-stride. */
template <typename T> __global__ void im2col_kernel(kiln_conv_geometry g, const T *x, T *col) {
    int64_t L = g.ho * g.wo, total = g.cin * g.kh * g.kw * L, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        int64_t l = i % L, r = i / L;
        int64_t ow = l % g.wo, oh = l / g.wo;
        int64_t kj = r % g.kw, t = r / g.kw, ki = t % g.kh, c = t / g.kh;
        int64_t ih = oh * g.sh - g.ph + ki * g.dh, iw = ow * g.sw - g.pw + kj * g.dw;
        col[i] = ((uint64_t)ih < (uint64_t)g.h && (uint64_t)iw < (uint64_t)g.w) ? x[(c * g.h + ih) * g.w + iw] : (T)0;
    }
}

/* One thread per input pixel (c, ih, iw): the column entries that read it. */
template <typename T> __global__ void col2im_kernel(kiln_conv_geometry g, const T *col, T *x) {
    int64_t L = g.ho * g.wo, total = g.cin * g.h * g.w, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        int64_t iw = i % g.w, t = i / g.w, ih = t % g.h, c = t / g.h;
        T acc = 0;
        for (int64_t ki = 0; ki < g.kh; ki++) {
            int64_t hs = ih + g.ph - ki * g.dh; /* = oh * sh */
            if (hs < 0 || hs % g.sh != 0 || hs / g.sh >= g.ho) continue;
            int64_t oh = hs / g.sh;
            for (int64_t kj = 0; kj < g.kw; kj++) {
                int64_t ws = iw + g.pw - kj * g.dw;
                if (ws < 0 || ws % g.sw != 0 || ws / g.sw >= g.wo) continue;
                acc += col[((c * g.kh + ki) * g.kw + kj) * L + oh * g.wo + ws / g.sw];
            }
        }
        x[i] = acc;
    }
}

/* One thread per element of y (n, c, l): y += b[channel], then ReLU. */
template <typename T> __global__ void bias_act_kernel(T *y, const T *b, int64_t n, int64_t c, int64_t l, int relu) {
    int64_t total = n * c * l, step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
        T v = y[i];
        if (b) v += b[(i / l) % c];
        if (relu) v = unary_t(KILN_UNARY_RELU, v, (T)0, (T)0); /* kiln_relu's: NaN stays NaN */
        y[i] = v;
    }
}

} // namespace

extern "C" {

kiln_status kiln_cuda_launch_im2col(kiln_dtype dt, const void *x, void *col, const kiln_conv_geometry *g,
                                    void *stream) {
    kiln_status s = check_float("im2col", dt);
    if (s != KILN_STATUS_OK) return s;
    int64_t work = g->cin * g->kh * g->kw * g->ho * g->wo;
    if (work == 0) return KILN_STATUS_OK;
    if (dt == KILN_F32)
        KILN_LAUNCH(im2col_kernel<float>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, *g, (const float *)x,
                    (float *)col);
    else
        KILN_LAUNCH(im2col_kernel<double>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, *g, (const double *)x,
                    (double *)col);
    KILN_LAUNCH_CHECK("im2col", stream);
    return KILN_STATUS_OK;
}

kiln_status kiln_cuda_launch_col2im(kiln_dtype dt, const void *col, void *x, const kiln_conv_geometry *g,
                                    void *stream) {
    kiln_status s = check_float("col2im", dt);
    if (s != KILN_STATUS_OK) return s;
    int64_t work = g->cin * g->h * g->w;
    if (work == 0) return KILN_STATUS_OK;
    if (dt == KILN_F32)
        KILN_LAUNCH(col2im_kernel<float>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, *g, (const float *)col,
                    (float *)x);
    else
        KILN_LAUNCH(col2im_kernel<double>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, *g, (const double *)col,
                    (double *)x);
    KILN_LAUNCH_CHECK("col2im", stream);
    return KILN_STATUS_OK;
}

kiln_status kiln_cuda_launch_bias_act(kiln_dtype dt, void *y, const void *b, int64_t n, int64_t c, int64_t l,
                                      int relu, void *stream) {
    kiln_status s = check_float("conv bias", dt);
    if (s != KILN_STATUS_OK) return s;
    int64_t work = n * c * l;
    if (work == 0 || (!b && !relu)) return KILN_STATUS_OK;
    if (dt == KILN_F32)
        KILN_LAUNCH(bias_act_kernel<float>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, (float *)y, (const float *)b,
                    n, c, l, relu);
    else
        KILN_LAUNCH(bias_act_kernel<double>, grid_for(work), KILN_CUDA_BLOCK, 0, stream, (double *)y,
                    (const double *)b, n, c, l, relu);
    KILN_LAUNCH_CHECK("conv bias", stream);
    return KILN_STATUS_OK;
}

} // extern "C"

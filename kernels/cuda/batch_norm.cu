/* CUDA batch norm over axis 1 of (N, C, H, W) with any strides, mirroring
 * kernels/cpu/batch_norm.c: per-channel statistics (two passes, double, biased
 * variance; the running statistics are updated by the front-end's ops as on the CPU),
 * the normalisation, and the three backward pieces. Per-channel sums are block
 * reductions (warp shuffles, no atomics). Products whose rounding must match the CPU
 * use __dmul_rn/__dadd_rn so nvcc does not fuse them. */
#include "common.cuh"
#include "launch_batch_norm_dropout.h"

namespace {
using namespace kiln_cuda;

/* Element offset of the e-th element (C order over N, H, W) of channel c. */
__device__ __forceinline__ int64_t bn_off(const kiln_cuda_bn_geom &g, int64_t c, int64_t e) {
    int64_t hw = g.h * g.w;
    int64_t i = e / hw, r = e - i * hw;
    int64_t y = r / g.w, z = r - y * g.w;
    return i * g.sn + c * g.sc + y * g.sh + z * g.sw;
}

template <typename T> __device__ __forceinline__ double chan(kiln_cuda_chan t, int64_t c, double dflt) {
    return t.p ? (double)((const T *)t.p)[c * t.stride] : dflt;
}

/* A block per channel (grid-stride over channels): mean, then the sum of squared
 * deviations from it, each a block reduction over the channel's elements. */
template <typename T> __global__ void bn_stats_kernel(kiln_cuda_bn_geom x, T *stats) {
    __shared__ double mean_s;
    const T *xp = (const T *)x.data;
    int64_t cnt = x.n * x.h * x.w;
    for (int64_t c = blockIdx.x; c < x.c; c += gridDim.x) {
        double s = 0;
        for (int64_t e = threadIdx.x; e < cnt; e += blockDim.x) s += (double)xp[bn_off(x, c, e)];
        s = block_sum(s);
        if (threadIdx.x == 0) mean_s = cnt > 0 ? s / (double)cnt : (double)NAN;
        __syncthreads();
        double mean = mean_s, s2 = 0;
        for (int64_t e = threadIdx.x; e < cnt; e += blockDim.x) {
            double d = (double)xp[bn_off(x, c, e)] - mean;
            s2 += d * d;
        }
        s2 = block_sum(s2); /* its closing barrier also protects mean_s from the next channel */
        if (threadIdx.x == 0) {
            stats[c] = (T)mean;
            stats[x.c + c] = (T)(cnt > 0 ? s2 / (double)cnt : (double)NAN);
        }
    }
}

/* y = x·scale + shift per channel: blockIdx.y walks channels, blockIdx.x and the
 * threads stride over the channel's elements. */
template <typename T>
__global__ void bn_forward_kernel(kiln_cuda_bn_geom o, kiln_cuda_bn_geom x, kiln_cuda_chan w, kiln_cuda_chan b,
                                  kiln_cuda_chan mean, kiln_cuda_chan var, double eps) {
    int64_t cnt = x.n * x.h * x.w, step = (int64_t)gridDim.x * blockDim.x;
    const T *xp = (const T *)x.data;
    T *op = (T *)o.data;
    for (int64_t c = blockIdx.y; c < x.c; c += gridDim.y) {
        double m = chan<T>(mean, c, 0), inv = 1.0 / sqrt(__dadd_rn(chan<T>(var, c, 1), eps));
        double scale = __dmul_rn(chan<T>(w, c, 1), inv), shift = __dadd_rn(chan<T>(b, c, 0), -__dmul_rn(m, scale));
        for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < cnt; e += step)
            op[bn_off(o, c, e)] = (T)__dadd_rn(__dmul_rn((double)xp[bn_off(x, c, e)], scale), shift);
    }
}

/* A block per channel: the sums of g and g·x̂ (when needed and not given), then dweight,
 * dbias, both sums (which 3: rows 0 and 1 of a (2, C) out), or
 * dx = w·invstd·(g - mean(g) - x̂·mean(g·x̂)) in training, w·invstd·g in eval. */
template <typename T>
__global__ void bn_backward_kernel(int which, int training, kiln_cuda_bn_geom o, T *ochan, int64_t ostride,
                                   int64_t orow, kiln_cuda_bn_geom g, kiln_cuda_bn_geom x, kiln_cuda_chan w,
                                   kiln_cuda_chan mean, kiln_cuda_chan var, kiln_cuda_chan sum_g,
                                   kiln_cuda_chan sum_gx, double eps) {
    __shared__ double sums[2];
    int64_t cnt = x.n * x.h * x.w;
    const T *gp = (const T *)g.data, *xp = (const T *)x.data;
    T *op = (T *)o.data;
    for (int64_t c = blockIdx.x; c < x.c; c += gridDim.x) {
        double m = chan<T>(mean, c, 0), inv = 1.0 / sqrt(__dadd_rn(chan<T>(var, c, 1), eps));
        double sg = 0, sgx = 0;
        if ((which != 0 || training) && sum_g.p) { /* the sums of an earlier which-3 launch */
            sg = chan<T>(sum_g, c, 0);
            sgx = chan<T>(sum_gx, c, 0);
        } else if (which != 0 || training) {
            for (int64_t e = threadIdx.x; e < cnt; e += blockDim.x) {
                double gv = (double)gp[bn_off(g, c, e)];
                sg += gv;
                sgx += __dmul_rn(__dmul_rn(gv, (double)xp[bn_off(x, c, e)] - m), inv);
            }
            sg = block_sum(sg);
            sgx = block_sum(sgx);
            if (threadIdx.x == 0) {
                sums[0] = sg;
                sums[1] = sgx;
            }
            __syncthreads();
            sg = sums[0];
            sgx = sums[1];
        }
        if (which == 3) {
            if (threadIdx.x == 0) {
                ochan[c * ostride] = (T)sg;
                ochan[orow + c * ostride] = (T)sgx;
            }
        } else if (which != 0) {
            if (threadIdx.x == 0) ochan[c * ostride] = (T)(which == 1 ? sgx : sg);
        } else {
            double k = __dmul_rn(chan<T>(w, c, 1), inv);
            double mg = sg / (double)cnt, mgx = sgx / (double)cnt;
            for (int64_t e = threadIdx.x; e < cnt; e += blockDim.x) {
                double gv = (double)gp[bn_off(g, c, e)];
                if (training) {
                    double xh = __dmul_rn((double)xp[bn_off(x, c, e)] - m, inv);
                    gv = __dadd_rn(gv - mg, -__dmul_rn(xh, mgx));
                }
                op[bn_off(o, c, e)] = (T)__dmul_rn(k, gv);
            }
        }
        __syncthreads(); /* sums is rewritten for the next channel */
    }
}

unsigned chan_grid(int64_t c) { return (unsigned)(c < 65535 ? (c > 0 ? c : 1) : 65535); }

} // namespace

extern "C" {

kiln_status kiln_cuda_launch_bn_stats(kiln_dtype dt, void *stats, const kiln_cuda_bn_geom *x, void *stream) {
    if (x->c == 0) return KILN_STATUS_OK;
    if (dt == KILN_F32) {
        auto kernel = bn_stats_kernel<float>;
        KILN_LAUNCH(kernel, chan_grid(x->c), KILN_CUDA_BLOCK, 0, stream, *x, (float *)stats);
    } else if (dt == KILN_F64) {
        auto kernel = bn_stats_kernel<double>;
        KILN_LAUNCH(kernel, chan_grid(x->c), KILN_CUDA_BLOCK, 0, stream, *x, (double *)stats);
    } else {
        return bad_dtype("batch_norm2d", dt);
    }
    KILN_LAUNCH_CHECK("batch_norm_stats", stream);
    return KILN_STATUS_OK;
}

kiln_status kiln_cuda_launch_bn_forward(kiln_dtype dt, const kiln_cuda_bn_geom *out, const kiln_cuda_bn_geom *x,
                                        kiln_cuda_chan w, kiln_cuda_chan b, kiln_cuda_chan mean,
                                        kiln_cuda_chan var, double eps, void *stream) {
    int64_t cnt = x->n * x->h * x->w;
    if (x->c == 0 || cnt == 0) return KILN_STATUS_OK;
    /* enough blocks per channel to fill the GPU, never more than the elements need */
    int64_t per = (cnt + KILN_CUDA_BLOCK - 1) / KILN_CUDA_BLOCK, room = 4096 / (x->c < 4096 ? x->c : 4096);
    dim3 grid((unsigned)(per < room ? per : (room > 0 ? room : 1)), chan_grid(x->c));
    if (dt == KILN_F32) {
        auto kernel = bn_forward_kernel<float>;
        KILN_LAUNCH(kernel, grid, KILN_CUDA_BLOCK, 0, stream, *out, *x, w, b, mean, var, eps);
    } else if (dt == KILN_F64) {
        auto kernel = bn_forward_kernel<double>;
        KILN_LAUNCH(kernel, grid, KILN_CUDA_BLOCK, 0, stream, *out, *x, w, b, mean, var, eps);
    } else {
        return bad_dtype("batch_norm2d", dt);
    }
    KILN_LAUNCH_CHECK("batch_norm", stream);
    return KILN_STATUS_OK;
}

kiln_status kiln_cuda_launch_bn_backward(kiln_dtype dt, int which, int training, const kiln_cuda_bn_geom *out,
                                         void *out_chan, int64_t out_stride, int64_t out_row,
                                         const kiln_cuda_bn_geom *g, const kiln_cuda_bn_geom *x, kiln_cuda_chan w,
                                         kiln_cuda_chan mean, kiln_cuda_chan var, kiln_cuda_chan sum_g,
                                         kiln_cuda_chan sum_gx, double eps, void *stream) {
    if (x->c == 0) return KILN_STATUS_OK;
    if (dt == KILN_F32) {
        auto kernel = bn_backward_kernel<float>;
        KILN_LAUNCH(kernel, chan_grid(x->c), KILN_CUDA_BLOCK, 0, stream, which, training, *out, (float *)out_chan,
                    out_stride, out_row, *g, *x, w, mean, var, sum_g, sum_gx, eps);
    } else if (dt == KILN_F64) {
        auto kernel = bn_backward_kernel<double>;
        KILN_LAUNCH(kernel, chan_grid(x->c), KILN_CUDA_BLOCK, 0, stream, which, training, *out, (double *)out_chan,
                    out_stride, out_row, *g, *x, w, mean, var, sum_g, sum_gx, eps);
    } else {
        return bad_dtype("batch_norm2d", dt);
    }
    KILN_LAUNCH_CHECK("batch_norm_backward", stream);
    return KILN_STATUS_OK;
}

} // extern "C"

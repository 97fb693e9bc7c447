/* Element-wise CUDA kernels: unary, unary_backward, binary, binary_backward and
 * where. The math is kernels/elementwise_math.h (shared with the CPU); these
 * kernels only walk memory: 16-byte vector loads when every operand is contiguous
 * and aligned, else a strided walk that also covers broadcasting. */
#include "common.cuh"

namespace {
using namespace kiln_cuda;

template <typename T, int NIN> struct ptrs {
    const T *p[NIN];
};

/* out[i] = f(in0[i], ..); one thread per 16-byte vector of every operand, grid-stride,
 * then the tail (n not a multiple of the vector width) one element per thread. */
template <typename T, int NIN, typename F>
__global__ void map_vec_kernel(int64_t n, T *__restrict__ out, ptrs<T, NIN> in, F f) {
    constexpr int V = 16 / sizeof(T);
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    int64_t first = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t nv = n / V;
    for (int64_t i = first; i < nv; i += step) {
        vec16<T> x[NIN], r;
        for (int k = 0; k < NIN; k++) x[k] = reinterpret_cast<const vec16<T> *>(in.p[k])[i];
        for (int j = 0; j < V; j++) {
            T v[NIN];
            for (int k = 0; k < NIN; k++) v[k] = x[k].v[j];
            r.v[j] = f(v);
        }
        reinterpret_cast<vec16<T> *>(out)[i] = r;
    }
    for (int64_t i = nv * V + first; i < n; i += step) {
        T v[NIN];
        for (int k = 0; k < NIN; k++) v[k] = in.p[k][i];
        out[i] = f(v);
    }
}

/* out = f(in..) over any strides and broadcasts: one thread per output element,
 * grid-stride; offsets from the linear index by the iterator's shape. */
template <typename T, int NIN, typename F>
__global__ void map_strided_kernel(iter<NIN + 1> it, T *__restrict__ out, ptrs<T, NIN> in, F f) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < it.n; i += step) {
        int64_t off[NIN + 1];
        iter_offsets(it, i, off);
        T v[NIN];
        for (int k = 0; k < NIN; k++) v[k] = in.p[k][off[k + 1]];
        out[off[0]] = f(v);
    }
}

template <typename T> struct unary_f {
    int kind;
    T a, b;
    __device__ T operator()(const T *v) const { return unary_t(kind, v[0], a, b); }
};
template <typename T> struct unary_grad_f {
    int kind;
    T a, b;
    __device__ T operator()(const T *v) const { return unary_grad_t(kind, v[0], v[1], v[2], a, b); }
};
template <typename T> struct binary_f {
    int kind;
    __device__ T operator()(const T *v) const { return binary_t(kind, v[0], v[1]); }
};
template <typename T> struct binary_grad_f {
    int kind, side;
    __device__ T operator()(const T *v) const { return binary_grad_t(kind, side, v[0], v[1], v[2]); }
};

/* Picks the vector or the strided kernel and launches it. */
template <typename T, int NIN, typename F>
kiln_status run_map(const char *op, const kiln_cuda_tensor *out, const kiln_cuda_tensor *const *in, F f,
                    void *stream) {
    const kiln_cuda_tensor *ops[NIN + 1];
    ops[0] = out;
    for (int k = 0; k < NIN; k++) ops[k + 1] = in[k];
    iter<NIN + 1> it;
    bool contiguous = make_iter<NIN + 1>(it, ops);
    if (it.n == 0) return KILN_STATUS_OK;
    ptrs<T, NIN> p;
    bool aligned = aligned16(out->data);
    for (int k = 0; k < NIN; k++) {
        p.p[k] = (const T *)in[k]->data;
        aligned = aligned && aligned16(in[k]->data);
    }
    if (contiguous && aligned) {
        auto kernel = map_vec_kernel<T, NIN, F>;
        int64_t work = it.n / (16 / (int64_t)sizeof(T));
        KILN_LAUNCH(kernel, grid_for(work > 0 ? work : it.n), KILN_CUDA_BLOCK, 0, stream, it.n, (T *)out->data, p, f);
    } else {
        auto kernel = map_strided_kernel<T, NIN, F>;
        KILN_LAUNCH(kernel, grid_for(it.n), KILN_CUDA_BLOCK, 0, stream, it, (T *)out->data, p, f);
    }
    KILN_LAUNCH_CHECK(op, stream);
    return KILN_STATUS_OK;
}

/* out = cond ? a : b with cond of any dtype; one thread per element, strided. */
template <typename T>
__global__ void where_kernel(iter<4> it, T *__restrict__ out, const char *cond, int cdt, int csize, const T *a,
                             const T *b) {
    int64_t step = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < it.n; i += step) {
        int64_t off[4];
        iter_offsets(it, i, off);
        const char *c = cond + off[1] * csize;
        bool t;
        switch (cdt) {
        case KILN_F32: t = *(const float *)c != 0; break;
        case KILN_F64: t = *(const double *)c != 0; break;
        case KILN_I32: t = *(const int32_t *)c != 0; break;
        case KILN_I64: t = *(const int64_t *)c != 0; break;
        case KILN_U8: t = *(const uint8_t *)c != 0; break;
        default: t = (*(const uint16_t *)c & 0x7fffu) != 0; /* f16/bf16: nonzero but for ±0 */
        }
        out[off[0]] = t ? a[off[2]] : b[off[3]];
    }
}

template <typename T>
kiln_status run_where(const kiln_cuda_tensor *out, const kiln_cuda_tensor *cond, const kiln_cuda_tensor *a,
                      const kiln_cuda_tensor *b, void *stream) {
    const kiln_cuda_tensor *ops[4] = {out, cond, a, b};
    iter<4> it;
    make_iter<4>(it, ops);
    if (it.n == 0) return KILN_STATUS_OK;
    auto kernel = where_kernel<T>;
    KILN_LAUNCH(kernel, grid_for(it.n), KILN_CUDA_BLOCK, 0, stream, it, (T *)out->data, (const char *)cond->data,
                (int)cond->dtype, (int)dtype_size(cond->dtype), (const T *)a->data, (const T *)b->data);
    KILN_LAUNCH_CHECK("where", stream);
    return KILN_STATUS_OK;
}

} // namespace

extern "C" {

kiln_status kiln_cuda_launch_unary(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, int kind, double a,
                                   double b, void *stream) {
    const kiln_cuda_tensor *in[1] = {x};
    if (out->dtype == KILN_F32) return run_map<float, 1>("unary", out, in, unary_f<float>{kind, (float)a, (float)b}, stream);
    if (out->dtype == KILN_F64) return run_map<double, 1>("unary", out, in, unary_f<double>{kind, a, b}, stream);
    return bad_dtype("unary", out->dtype);
}

kiln_status kiln_cuda_launch_unary_backward(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                            const kiln_cuda_tensor *x, const kiln_cuda_tensor *y, int kind,
                                            double a, double b, void *stream) {
    const kiln_cuda_tensor *in[3] = {g, x, y};
    if (out->dtype == KILN_F32)
        return run_map<float, 3>("unary_backward", out, in, unary_grad_f<float>{kind, (float)a, (float)b}, stream);
    if (out->dtype == KILN_F64)
        return run_map<double, 3>("unary_backward", out, in, unary_grad_f<double>{kind, a, b}, stream);
    return bad_dtype("unary_backward", out->dtype);
}

kiln_status kiln_cuda_launch_binary(const kiln_cuda_tensor *out, const kiln_cuda_tensor *a,
                                    const kiln_cuda_tensor *b, int kind, void *stream) {
    const kiln_cuda_tensor *in[2] = {a, b};
    if (out->dtype == KILN_F32) return run_map<float, 2>("binary", out, in, binary_f<float>{kind}, stream);
    if (out->dtype == KILN_F64) return run_map<double, 2>("binary", out, in, binary_f<double>{kind}, stream);
    return bad_dtype("binary", out->dtype);
}

kiln_status kiln_cuda_launch_binary_backward(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                             const kiln_cuda_tensor *a, const kiln_cuda_tensor *b, int kind,
                                             int side, void *stream) {
    const kiln_cuda_tensor *in[3] = {g, a, b};
    if (out->dtype == KILN_F32)
        return run_map<float, 3>("binary_backward", out, in, binary_grad_f<float>{kind, side}, stream);
    if (out->dtype == KILN_F64)
        return run_map<double, 3>("binary_backward", out, in, binary_grad_f<double>{kind, side}, stream);
    return bad_dtype("binary_backward", out->dtype);
}

kiln_status kiln_cuda_launch_where(const kiln_cuda_tensor *out, const kiln_cuda_tensor *cond,
                                   const kiln_cuda_tensor *a, const kiln_cuda_tensor *b, void *stream) {
    if (out->dtype == KILN_F32) return run_where<float>(out, cond, a, b, stream);
    if (out->dtype == KILN_F64) return run_where<double>(out, cond, a, b, stream);
    return bad_dtype("where", out->dtype);
}

} // extern "C"

/* kiln_cuda_linear_backward's custom half, the bias gradient (the dX/dW products run on
 * cuBLAS in kernels/cuda/blas.c, which the emulation library does not build), and the
 * glue helpers blas.c shares (glue.h). Emulatable: no library calls. */
#include "glue.h"
#include "launch_linear.h"
#include "../cpu/layers.h"

bool kiln_cuda_fold_rows(const kiln_tensor *t, int64_t *rs) {
    int64_t es = (int64_t)kiln_dtype_size(t->dtype), r = -1, inner = 1;
    for (int d = t->ndim - 2; d >= 0; d--) {
        if (t->shape[d] != 1) {
            if (r < 0) r = t->strides[d];
            else if (t->strides[d] != r * inner) return false;
        }
        if (r >= 0) inner *= t->shape[d];
    }
    if (r > 0 && r % es) return false;
    int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1;
    *rs = r < 0 ? cols : r / es;
    return true;
}

kiln_tensor *kiln_cuda_contiguous_scratch(const kiln_tensor *t) {
    kiln_tensor *c = kiln__new(t->ndim, t->shape, t->dtype, t->device);
    if (!c) return NULL;
    kiln_cuda_tensor o = desc(c), x = desc(t);
    if (kiln_cuda_launch_copy(&o, &x, stream_of(t)) != KILN_STATUS_OK) {
        kiln_tensor_free(c);
        return NULL;
    }
    return c;
}

/* which 2: the bias gradient, column sums of g (.., N) into out (N). */
static kiln_status bias_grad(const kiln_op_call *call) {
    const kiln_tensor *g = call->in[0];
    kiln_tensor *out = call->out, *copy = NULL;
    int64_t cols = out->shape[0], rows = cols ? kiln_tensor_numel(g) / cols : 0, rs;
    int64_t es = (int64_t)kiln_dtype_size(g->dtype);
    if (!kiln_cuda_fold_rows(g, &rs) || (g->ndim && g->strides[g->ndim - 1] % es)) {
        if (!(copy = kiln_cuda_contiguous_scratch(g))) return kiln_last_status();
        g = copy;
        rs = cols;
    }
    int64_t cs = g->ndim ? g->strides[g->ndim - 1] / es : 1;
    size_t need = kiln_cuda_bias_grad_scratch_bytes(rows, cols);
    kiln_tensor *scratch = NULL;
    kiln_status s = KILN_STATUS_OK;
    if (need) {
        int64_t nb = (int64_t)need;
        if (!(scratch = kiln__new(1, &nb, KILN_U8, out->device))) s = kiln_last_status();
    }
    if (s == KILN_STATUS_OK)
        s = kiln_cuda_launch_bias_grad(out->dtype, kiln__ptr(out), out->strides[0] / es, kiln__ptr(g), rows, cols,
                                       rs, cs, scratch ? kiln__ptr(scratch) : NULL, stream_of(out));
    if (scratch) kiln_tensor_free(scratch);
    if (copy) kiln_tensor_free(copy);
    return s;
}

#ifndef KILN_CUDA_EMULATION
kiln_status kiln__cuda_linear_backward_gemm(const kiln_op_call *call); /* kernels/cuda/blas.c */
#endif

kiln_status kiln_cuda_linear_backward(const kiln_op_call *call) {
    const kiln_linear_bw_attrs *at = call->attrs;
    if (at->which == 2) return bias_grad(call);
#ifdef KILN_CUDA_EMULATION
    return kiln__error(KILN_STATUS_DEVICE, "linear_backward: the dX/dW products run on cuBLAS, which the emulation "
                       "library does not provide");
#else
    return kiln__cuda_linear_backward_gemm(call);
#endif
}

/* kiln_cuda_<op> glue of the custom kernels beside cuBLAS: the linear bias gradient,
 * batch norm, dropout, and the span entry points the optimizer and gradient clipping
 * call for CUDA parameters. Emulatable (no library calls); the cuBLAS/cuSOLVER glue
 * is in kernels/cuda/blas.c, which the emulation library does not build. */
#include "glue.h"
#include "launch_blas.h"
#include "../cpu/layers.h"

static void *dev_stream(kiln_device dev) {
#ifdef KILN_CUDA_EMULATION
    (void)dev;
    return NULL;
#else
    return kiln__cuda_stream(dev.index);
#endif
}

bool KILN_CU(cuda_fold_rows)(const kiln_tensor *t, int64_t *rs) {
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

kiln_tensor *KILN_CU(cuda_contiguous_scratch)(const kiln_tensor *t) {
    kiln_tensor *c = kiln__new(t->ndim, t->shape, t->dtype, t->device);
    if (!c) return NULL;
    kiln_cuda_tensor o = desc(c), x = desc(t);
    if (KILN_CU(cuda_launch_copy)(&o, &x, stream_of(t)) != KILN_STATUS_OK) {
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
    if (!KILN_CU(cuda_fold_rows)(g, &rs) || (g->ndim && g->strides[g->ndim - 1] % es)) {
        if (!(copy = KILN_CU(cuda_contiguous_scratch)(g))) return kiln_last_status();
        g = copy;
        rs = cols;
    }
    int64_t cs = g->ndim ? g->strides[g->ndim - 1] / es : 1;
    size_t need = KILN_CU(cuda_bias_grad_scratch_bytes)(rows, cols);
    kiln_tensor *scratch = NULL;
    kiln_status s = KILN_STATUS_OK;
    if (need) {
        int64_t nb = (int64_t)need;
        if (!(scratch = kiln__new(1, &nb, KILN_U8, out->device))) s = kiln_last_status();
    }
    if (s == KILN_STATUS_OK)
        s = KILN_CU(cuda_launch_bias_grad)(out->dtype, kiln__ptr(out), out->strides[0] / es, kiln__ptr(g), rows, cols,
                                           rs, cs, scratch ? kiln__ptr(scratch) : NULL, stream_of(out));
    if (scratch) kiln_tensor_free(scratch);
    if (copy) kiln_tensor_free(copy);
    return s;
}

#ifndef KILN_CUDA_EMULATION
kiln_status kiln__cuda_linear_backward_gemm(const kiln_op_call *call); /* kernels/cuda/blas.c */
#endif

KILN_CUDA_GLUE(linear_backward) {
    const kiln_linear_bw_attrs *at = call->attrs;
    if (at->which == 2) return bias_grad(call);
#ifdef KILN_CUDA_EMULATION
    return kiln__error(KILN_STATUS_DEVICE, "linear_backward: the dX/dW products run on cuBLAS, which the emulation "
                       "library does not provide");
#else
    return kiln__cuda_linear_backward_gemm(call);
#endif
}

/* ---- batch norm ----------------------------------------------------------------------- */

static kiln_cuda_bn_geom bn_geom_of(const kiln_tensor *t) {
    int64_t es = (int64_t)kiln_dtype_size(t->dtype);
    kiln_cuda_bn_geom g = {t->shape[0], t->shape[1], 1, 1, t->strides[0] / es, t->strides[1] / es, 0, 0,
                           kiln__ptr(t)};
    if (t->ndim == 3) {
        g.w = t->shape[2];
        g.sw = t->strides[2] / es;
    } else if (t->ndim >= 4) {
        g.h = t->shape[2];
        g.w = t->shape[3];
        g.sh = t->strides[2] / es;
        g.sw = t->strides[3] / es;
    }
    return g;
}

static kiln_cuda_chan chan_of(const kiln_tensor *t) {
    kiln_cuda_chan c = {NULL, 0};
    if (t) {
        c.p = kiln__ptr(t);
        c.stride = t->strides[0] / (int64_t)kiln_dtype_size(t->dtype);
    }
    return c;
}

KILN_CUDA_GLUE(batch_norm_stats) {
    kiln_cuda_bn_geom x = bn_geom_of(call->in[0]);
    return KILN_CU(cuda_launch_bn_stats)(call->out->dtype, kiln__ptr(call->out), &x, stream_of(call->out));
}

KILN_CUDA_GLUE(batch_norm) {
    const kiln_batch_norm_attrs *at = call->attrs;
    kiln_cuda_bn_geom o = bn_geom_of(call->out), x = bn_geom_of(call->in[0]);
    return KILN_CU(cuda_launch_bn_forward)(call->out->dtype, &o, &x, chan_of(call->in[1]), chan_of(call->in[2]),
                                           chan_of(call->in[3]), chan_of(call->in[4]), at->eps, stream_of(call->out));
}

KILN_CUDA_GLUE(batch_norm_backward) {
    const kiln_batch_norm_attrs *at = call->attrs;
    kiln_tensor *out = call->out;
    kiln_cuda_bn_geom g = bn_geom_of(call->in[0]), x = bn_geom_of(call->in[1]);
    kiln_cuda_bn_geom o = at->which == 0 ? bn_geom_of(out) : g;
    int64_t es = (int64_t)kiln_dtype_size(out->dtype);
    int64_t ostride = out->ndim ? out->strides[out->ndim - 1] / es : 0, orow = out->ndim == 2 ? out->strides[0] / es : 0;
    /* the (2, C) sums of a which-3 call, row by row */
    const kiln_tensor *sums = call->nin > 5 ? call->in[5] : NULL;
    kiln_cuda_chan sg = {NULL, 0}, sgx = {NULL, 0};
    if (sums) {
        sg.p = kiln__ptr(sums);
        sgx.p = (char *)kiln__ptr(sums) + sums->strides[0];
        sg.stride = sgx.stride = sums->strides[1] / es;
    }
    return KILN_CU(cuda_launch_bn_backward)(out->dtype, at->which, at->training, &o, kiln__ptr(out), ostride, orow, &g,
                                            &x, chan_of(call->in[2]), chan_of(call->in[3]), chan_of(call->in[4]), sg,
                                            sgx, at->eps, stream_of(out));
}

/* ---- dropout -------------------------------------------------------------------------- */

KILN_CUDA_GLUE(dropout) {
    const kiln_dropout_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]);
    return KILN_CU(cuda_launch_dropout)(&o, &x, at->p, at->seed, at->offset, stream_of(call->out));
}

/* ---- optimizer and clipping spans ------------------------------------------------------- */

kiln_status KILN_CU(cuda_sgd_update)(kiln_device dev, kiln_dtype dt, void *p, const void *g, void *buf, int64_t n,
                                     const kiln_sgd_hparams *h) {
    return KILN_CU(cuda_launch_sgd)(dt, p, g, buf, n, h, dev_stream(dev));
}

kiln_status KILN_CU(cuda_adam_update)(kiln_device dev, kiln_dtype dt, void *p, const void *g, void *m, void *v,
                                      void *vmax, int64_t n, const kiln_adam_hparams *h) {
    return KILN_CU(cuda_launch_adam)(dt, p, g, m, v, vmax, n, h, dev_stream(dev));
}

kiln_status KILN_CU(cuda_norm_accumulate)(kiln_device dev, kiln_dtype dt, const void *g, int64_t n, double norm_type,
                                          double *out) {
    /* the partials and, after them, the result: one pool block */
    int64_t parts = (int64_t)(KILN_CU(cuda_norm_scratch_bytes)(n) / sizeof(double)) + 1;
    kiln_tensor *scratch = kiln__new(1, &parts, KILN_F64, dev);
    if (!scratch) return kiln_last_status();
    double *sp = (double *)kiln__ptr(scratch);
    kiln_status s = KILN_CU(cuda_launch_norm)(dt, g, n, norm_type, sp, sp + parts - 1, dev_stream(dev));
    if (s == KILN_STATUS_OK) s = kiln__memcpy(out, KILN_CPU, sp + parts - 1, dev, sizeof(double));
    kiln_tensor_free(scratch);
    return s;
}

kiln_status KILN_CU(cuda_scale)(kiln_device dev, kiln_dtype dt, void *g, int64_t n, double scale) {
    return KILN_CU(cuda_launch_scale)(dt, g, n, scale, dev_stream(dev));
}

kiln_status KILN_CU(cuda_clamp)(kiln_device dev, kiln_dtype dt, void *g, int64_t n, double lo, double hi) {
    return KILN_CU(cuda_launch_clamp)(dt, g, n, lo, hi, dev_stream(dev));
}

/* kiln_cuda_<op> for batch norm (layers/batch_norm.c) and dropout (layers/dropout.c):
 * the registry calls turned into the geometries and descriptors of
 * kernels/cuda/launch_batch_norm_dropout.h. */
#include "glue.h"
#include "launch_batch_norm_dropout.h"
#include "../cpu/layers.h"

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

kiln_status kiln_cuda_batch_norm_stats(const kiln_op_call *call) {
    kiln_cuda_bn_geom x = bn_geom_of(call->in[0]);
    return kiln_cuda_launch_bn_stats(call->out->dtype, kiln__ptr(call->out), &x, stream_of(call->out));
}

kiln_status kiln_cuda_batch_norm(const kiln_op_call *call) {
    const kiln_batch_norm_attrs *at = call->attrs;
    kiln_cuda_bn_geom o = bn_geom_of(call->out), x = bn_geom_of(call->in[0]);
    return kiln_cuda_launch_bn_forward(call->out->dtype, &o, &x, chan_of(call->in[1]), chan_of(call->in[2]),
                                       chan_of(call->in[3]), chan_of(call->in[4]), at->eps, stream_of(call->out));
}

kiln_status kiln_cuda_batch_norm_backward(const kiln_op_call *call) {
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
    return kiln_cuda_launch_bn_backward(out->dtype, at->which, at->training, &o, kiln__ptr(out), ostride, orow, &g,
                                        &x, chan_of(call->in[2]), chan_of(call->in[3]), chan_of(call->in[4]), sg,
                                        sgx, at->eps, stream_of(out));
}

/* ---- dropout -------------------------------------------------------------------------- */

kiln_status kiln_cuda_dropout(const kiln_op_call *call) {
    const kiln_dropout_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]);
    return kiln_cuda_launch_dropout(&o, &x, at->p, at->seed, at->offset, stream_of(call->out));
}

/* kiln_cuda_<op> for the softmax family, max/argmax, concat and the losses: the
 * registry calls turned into descriptors (kernels/cuda/launch_ops2.h), operand
 * orders as the CPU kernels' (kernels/cpu/tensor_ops.h, kernels/cpu/losses.h).
 * Reduced losses take their per-block partials from the device pool. */
#include "glue.h"
#include "launch_ops2.h"

/* Absent optional inputs (loss weights) become descriptors with data == NULL. */
static kiln_cuda_tensor desc_opt(const kiln_tensor *t) {
    kiln_cuda_tensor d;
    if (t) return desc(t);
    memset(&d, 0, sizeof d);
    return d;
}

/* Scratch for the per-block partials of a reduced loss, freed at once after the
 * launch: the pool reuses it in stream order. */
static kiln_tensor *loss_scratch(const kiln_op_call *call) {
    int64_t n = (int64_t)KILN_CUDA_LOSS_SCRATCH_BYTES;
    return kiln__new(1, &n, KILN_U8, call->out->device);
}

/* ---- softmax family ---------------------------------------------------------------- */
static kiln_status softmax_fwd(const kiln_op_call *call, int log_) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]);
    return KILN_CU(cuda_launch_softmax)(&o, &x, at->axis, log_, stream_of(call->out));
}

static kiln_status softmax_bwd(const kiln_op_call *call, int log_) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), g = desc(call->in[0]), y = desc(call->in[1]);
    return KILN_CU(cuda_launch_softmax_backward)(&o, &g, &y, at->axis, log_, stream_of(call->out));
}

KILN_CUDA_GLUE(softmax) { return softmax_fwd(call, 0); }
KILN_CUDA_GLUE(log_softmax) { return softmax_fwd(call, 1); }
KILN_CUDA_GLUE(softmax_backward) { return softmax_bwd(call, 0); }
KILN_CUDA_GLUE(log_softmax_backward) { return softmax_bwd(call, 1); }

/* ---- max / argmax ------------------------------------------------------------------ */
KILN_CUDA_GLUE(argmax) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]);
    return KILN_CU(cuda_launch_argmax)(&o, &x, at->axis, stream_of(call->out));
}

KILN_CUDA_GLUE(max) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]), idx = desc(call->in[1]);
    return KILN_CU(cuda_launch_max)(&o, &x, &idx, at->axis, stream_of(call->out));
}

KILN_CUDA_GLUE(max_backward) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), g = desc(call->in[0]), idx = desc(call->in[1]);
    return KILN_CU(cuda_launch_max_backward)(&o, &g, &idx, at->axis, stream_of(call->out));
}

/* ---- concat: input i goes to its window [pos, pos + n_i) of the axis ------------------ */
KILN_CUDA_GLUE(concat) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out);
    size_t es = kiln_dtype_size(call->out->dtype);
    int64_t pos = 0;
    for (int i = 0; i < call->nin; i++) {
        kiln_cuda_tensor in = desc(call->in[i]), win = o;
        int64_t n = in.shape[at->axis];
        win.shape[at->axis] = n;
        win.data = (char *)o.data + pos * o.strides[at->axis] * (int64_t)es;
        pos += n;
        if (n == 0 || kiln_tensor_numel(call->in[i]) == 0) continue;
        kiln_status s = KILN_CU(cuda_launch_concat_part)(&win, &in, stream_of(call->out));
        if (s != KILN_STATUS_OK) return s;
    }
    return KILN_STATUS_OK;
}

/* ---- bce family ----------------------------------------------------------------------- */
static kiln_status bce_fwd(const kiln_op_call *call, int logits) {
    const kiln_bce_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]), y = desc(call->in[1]), w = desc_opt(call->in[2]);
    kiln_cuda_tensor pw = desc_opt(logits ? call->in[3] : NULL);
    kiln_tensor *scratch = NULL;
    if (at->reduction != 0 && !(scratch = loss_scratch(call))) return kiln_last_status();
    kiln_status s = KILN_CU(cuda_launch_bce)(&o, &x, &y, &w, &pw, logits, at, scratch ? kiln__ptr(scratch) : NULL,
                                             stream_of(call->out));
    if (scratch) kiln_tensor_free(scratch);
    return s;
}

static kiln_status bce_bwd(const kiln_op_call *call, int logits) {
    const kiln_bce_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), g = desc(call->in[0]), x = desc(call->in[1]), y = desc(call->in[2]);
    kiln_cuda_tensor w = desc_opt(call->in[3]), pw = desc_opt(logits ? call->in[4] : NULL);
    return KILN_CU(cuda_launch_bce_backward)(&o, &g, &x, &y, &w, &pw, logits, at, stream_of(call->out));
}

KILN_CUDA_GLUE(bce) { return bce_fwd(call, 0); }
KILN_CUDA_GLUE(bce_with_logits) { return bce_fwd(call, 1); }
KILN_CUDA_GLUE(bce_backward) { return bce_bwd(call, 0); }
KILN_CUDA_GLUE(bce_with_logits_backward) { return bce_bwd(call, 1); }

/* ---- cross_entropy / nll_loss / one_hot ------------------------------------------------ */
static kiln_status ce_fwd(const kiln_op_call *call, int log_probs) {
    const kiln_ce_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]), t = desc(call->in[1]), w = desc_opt(call->in[2]);
    kiln_tensor *scratch = NULL;
    if (at->reduction != 0 && !(scratch = loss_scratch(call))) return kiln_last_status();
    kiln_status s = KILN_CU(cuda_launch_cross_entropy)(&o, &x, &t, &w, log_probs, at,
                                                       scratch ? kiln__ptr(scratch) : NULL, stream_of(call->out));
    if (scratch) kiln_tensor_free(scratch);
    return s;
}

static kiln_status ce_bwd(const kiln_op_call *call, int log_probs) {
    const kiln_ce_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), g = desc(call->in[0]), x = desc(call->in[1]), t = desc(call->in[2]);
    kiln_cuda_tensor w = desc_opt(call->in[3]);
    kiln_tensor *scratch = NULL;
    if (at->reduction == 1 && !at->prob_target && !(scratch = loss_scratch(call))) return kiln_last_status();
    kiln_status s = KILN_CU(cuda_launch_cross_entropy_backward)(&o, &g, &x, &t, &w, log_probs, at,
                                                                scratch ? kiln__ptr(scratch) : NULL,
                                                                stream_of(call->out));
    if (scratch) kiln_tensor_free(scratch);
    return s;
}

KILN_CUDA_GLUE(cross_entropy) { return ce_fwd(call, 0); }
KILN_CUDA_GLUE(nll_loss) { return ce_fwd(call, 1); }
KILN_CUDA_GLUE(cross_entropy_backward) { return ce_bwd(call, 0); }
KILN_CUDA_GLUE(nll_loss_backward) { return ce_bwd(call, 1); }

KILN_CUDA_GLUE(one_hot) {
    kiln_cuda_tensor o = desc(call->out), t = desc(call->in[0]);
    return KILN_CU(cuda_launch_one_hot)(&o, &t, stream_of(call->out));
}

/* kiln_cuda_<op> for the losses (losses/bce.c, losses/cross_entropy.c): the registry
 * calls turned into descriptors (kernels/cuda/launch_losses.h), operand orders as the
 * CPU kernels' (kernels/cpu/losses.h). Reduced losses take their per-block partials
 * from the device pool. */
#include "glue.h"
#include "launch_losses.h"

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

/* ---- bce family ----------------------------------------------------------------------- */
static kiln_status bce_fwd(const kiln_op_call *call, int logits) {
    const kiln_bce_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]), y = desc(call->in[1]), w = desc_opt(call->in[2]);
    kiln_cuda_tensor pw = desc_opt(logits ? call->in[3] : NULL);
    kiln_tensor *scratch = NULL;
    if (at->reduction != 0 && !(scratch = loss_scratch(call))) return kiln_last_status();
    kiln_status s = kiln_cuda_launch_bce(&o, &x, &y, &w, &pw, logits, at, scratch ? kiln__ptr(scratch) : NULL,
                                         stream_of(call->out));
    if (scratch) kiln_tensor_free(scratch);
    return s;
}

static kiln_status bce_bwd(const kiln_op_call *call, int logits) {
    const kiln_bce_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), g = desc(call->in[0]), x = desc(call->in[1]), y = desc(call->in[2]);
    kiln_cuda_tensor w = desc_opt(call->in[3]), pw = desc_opt(logits ? call->in[4] : NULL);
    return kiln_cuda_launch_bce_backward(&o, &g, &x, &y, &w, &pw, logits, at, stream_of(call->out));
}

kiln_status kiln_cuda_bce(const kiln_op_call *call) { return bce_fwd(call, 0); }
kiln_status kiln_cuda_bce_with_logits(const kiln_op_call *call) { return bce_fwd(call, 1); }
kiln_status kiln_cuda_bce_backward(const kiln_op_call *call) { return bce_bwd(call, 0); }
kiln_status kiln_cuda_bce_with_logits_backward(const kiln_op_call *call) { return bce_bwd(call, 1); }

/* ---- cross_entropy / nll_loss / one_hot ------------------------------------------------ */
static kiln_status ce_fwd(const kiln_op_call *call, int log_probs) {
    const kiln_ce_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]), t = desc(call->in[1]), w = desc_opt(call->in[2]);
    kiln_tensor *scratch = NULL;
    if (at->reduction != 0 && !(scratch = loss_scratch(call))) return kiln_last_status();
    kiln_status s = kiln_cuda_launch_cross_entropy(&o, &x, &t, &w, log_probs, at,
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
    kiln_status s = kiln_cuda_launch_cross_entropy_backward(&o, &g, &x, &t, &w, log_probs, at,
                                                            scratch ? kiln__ptr(scratch) : NULL,
                                                            stream_of(call->out));
    if (scratch) kiln_tensor_free(scratch);
    return s;
}

kiln_status kiln_cuda_cross_entropy(const kiln_op_call *call) { return ce_fwd(call, 0); }
kiln_status kiln_cuda_nll_loss(const kiln_op_call *call) { return ce_fwd(call, 1); }
kiln_status kiln_cuda_cross_entropy_backward(const kiln_op_call *call) { return ce_bwd(call, 0); }
kiln_status kiln_cuda_nll_loss_backward(const kiln_op_call *call) { return ce_bwd(call, 1); }

kiln_status kiln_cuda_one_hot(const kiln_op_call *call) {
    kiln_cuda_tensor o = desc(call->out), t = desc(call->in[0]);
    return kiln_cuda_launch_one_hot(&o, &t, stream_of(call->out));
}

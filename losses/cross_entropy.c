/* Categorical cross-entropy (log-softmax fused with the loss, per position over
 * the class axis of (N,C,d1..dk)) and nll_loss on log-probabilities. The
 * front-ends own the guardrails: a class axis of size 1, target shapes and
 * dtypes, and class indices out of range are errors that say how to fix them. */
#include "common.h"
#include "../kernels/cpu/losses.h"
#include "../kernels/cross_entropy_geometry.h"

#include <math.h>
#include <stdlib.h>

static void ce_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);
static void nll_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_cross_entropy(const kiln_op_call *call);
kiln_status kiln_cuda_cross_entropy_backward(const kiln_op_call *call);
kiln_status kiln_cuda_nll_loss(const kiln_op_call *call);
kiln_status kiln_cuda_nll_loss_backward(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_cross_entropy = {
    .name = "cross_entropy",
    .cpu = kiln_cpu_cross_entropy,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_cross_entropy),
    .backward = ce_bw,
    .attrs_size = sizeof(kiln_ce_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_cross_entropy_backward = {
    .name = "cross_entropy_backward",
    .cpu = kiln_cpu_cross_entropy_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_cross_entropy_backward),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_ce_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_nll_loss = {
    .name = "nll_loss",
    .cpu = kiln_cpu_nll_loss,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_nll_loss),
    .backward = nll_bw,
    .attrs_size = sizeof(kiln_ce_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_nll_loss_backward = {
    .name = "nll_loss_backward",
    .cpu = kiln_cpu_nll_loss_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_nll_loss_backward),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_ce_attrs)};

kiln_cross_entropy_options kiln_cross_entropy_options_default(void) {
    return (kiln_cross_entropy_options){NULL, KILN_IGNORE_INDEX_DEFAULT, 0.0, KILN_REDUCTION_MEAN};
}

/* Whether every dense CPU I64 target is in [0,C) or ignore_index: the common case, read
 * in place (a host copy as doubles cost ~10% of a segmentation loss's forward + backward). */
static bool dense_valid(kiln_tensor *target, int64_t n, int64_t C, bool allow_ignore, int64_t ignore_index) {
    int64_t kept, bad;
    kiln__class_index_scan((const int64_t *)kiln__ptr(target), n, C, allow_ignore, ignore_index, &kept, &bad);
    return bad == 0;
}

/* Checks class indices (any device) against [0,C) and ignore_index. */
bool kiln__loss_check_class_indices(const char *op, kiln_tensor *target, int64_t C, bool allow_ignore,
                                    int64_t ignore_index) {
    int64_t n = kiln_tensor_numel(target);
    if (target->device.type == KILN_DEVICE_CPU && target->dtype == KILN_I64 && kiln_tensor_is_contiguous(target) &&
        dense_valid(target, n, C, allow_ignore, ignore_index))
        return true; /* else the loop below finds the element and says which */
    double *v = kiln__loss_host_values(op, target);
    if (!v) return false;
    for (int64_t i = 0; i < n; i++) {
        /* indices past +-2^63 come back as doubles that no int64 holds */
        int64_t t = v[i] >= 9.2e18 ? INT64_MAX : v[i] <= -9.2e18 ? INT64_MIN : (int64_t)v[i];
        if ((t >= 0 && t < C) || (allow_ignore && t == ignore_index)) continue;
        if (t < 0)
            kiln__error(KILN_STATUS_INVALID_ARGUMENT,
                        "%s: target element %lld holds class index %lld; class indices run 0..%lld and are never "
                        "negative: fix the labels%s",
                        op, (long long)i, (long long)t, (long long)(C - 1),
                        allow_ignore ? ", or mark unlabeled pixels with ignore_index (set it to that value)" : "");
        else if (allow_ignore)
            kiln__error(KILN_STATUS_INVALID_ARGUMENT,
                        "%s: target element %lld holds class index %lld, outside [0, C) with C = %lld classes and not "
                        "ignore_index (%lld); class indices run 0..%lld: fix the labels, give the input C = %lld+ "
                        "channels, or mark unlabeled pixels with ignore_index",
                        op, (long long)i, (long long)t, (long long)C, (long long)ignore_index, (long long)(C - 1),
                        (long long)(t < INT64_MAX ? t + 1 : t));
        else
            kiln__error(KILN_STATUS_INVALID_ARGUMENT,
                        "%s: target element %lld holds class index %lld, outside [0, C) with C = %lld classes; class "
                        "indices run 0..%lld: fix the labels or give the input more channels",
                        op, (long long)i, (long long)t, (long long)C, (long long)(C - 1));
        free(v);
        return false;
    }
    free(v);
    return true;
}

/* Validates everything and says whether the target holds probabilities. */
static bool check_ce(const char *op, bool log_probs, kiln_tensor *input, kiln_tensor *target,
                     const kiln_cross_entropy_options *o, bool *prob) {
    kiln_tensor *in[2] = {input, target};
    if (!kiln__check_inputs(op, 2, in) || !kiln__check_float_inputs(op, 1, in) ||
        !kiln__loss_check_reduction(op, o->reduction))
        return false;
    char b1[128], b2[128], b3[128];
    if (input->ndim < 1) {
        kiln__error(KILN_STATUS_SHAPE, "%s: input is 0-d; it needs a class axis: (N,C), (N,C,d1,...) or (C)", op);
        return false;
    }
    int cax = kiln_ce_class_axis(input->ndim);
    int64_t C = input->shape[cax];
    kiln__shape_str(input->ndim, input->shape, b1, sizeof b1);
    if (C == 1) {
        kiln__error(KILN_STATUS_SHAPE,
                    "%s: the class axis (axis %d) of input %s has size 1. A softmax over one unit is always 1, so "
                    "this loss is always 0 and nothing learns. For a binary (one-channel) output use a sigmoid with "
                    "binary cross-entropy: kiln_bce_with_logits(logits, target, NULL, NULL, reduction) with a float "
                    "target of the input's shape (0 or 1 per element); or give the output C >= 2 channels",
                    op, cax, b1);
        return false;
    }
    if (C == 0) {
        kiln__error(KILN_STATUS_SHAPE, "%s: the class axis (axis %d) of input %s is empty", op, cax, b1);
        return false;
    }
    if (!(o->label_smoothing >= 0 && o->label_smoothing <= 1)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: label_smoothing %g must be in [0, 1]", op, o->label_smoothing);
        return false;
    }
    if (log_probs && o->label_smoothing != 0) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT,
                    "%s: label_smoothing %g is not supported (as PyTorch's nll_loss); use kiln_cross_entropy on "
                    "logits for label smoothing", op, o->label_smoothing);
        return false;
    }
    if (o->weight) {
        kiln_tensor *wi[2] = {input, o->weight};
        if (!kiln__check_float_inputs(op, 2, wi)) return false;
        if (o->weight->ndim != 1 || o->weight->shape[0] != C) {
            kiln__error(KILN_STATUS_SHAPE, "%s: weight has shape %s but input %s has C = %lld classes; give one "
                        "weight per class, shape [%lld]", op,
                        kiln__shape_str(o->weight->ndim, o->weight->shape, b2, sizeof b2), b1, (long long)C,
                        (long long)C);
            return false;
        }
        if (!kiln__loss_no_grad_input(op, "the class weight", o->weight)) return false;
    }
    /* The two target forms: class indices shaped like input without the class
     * axis, or probabilities shaped like input. */
    int64_t pshape[KILN_MAX_DIMS];
    int pn = kiln_ce_positions(input->ndim, input->shape, pshape);
    kiln__shape_str(pn, pshape, b3, sizeof b3);
    kiln__shape_str(target->ndim, target->shape, b2, sizeof b2);
    bool pos_shape = target->ndim == pn, full_shape = target->ndim == input->ndim;
    for (int d = 0; pos_shape && d < pn; d++) pos_shape = target->shape[d] == pshape[d];
    for (int d = 0; full_shape && d < input->ndim; d++) full_shape = target->shape[d] == input->shape[d];
    if (target->dtype == KILN_I64) {
        if (!pos_shape) {
            kiln__error(KILN_STATUS_SHAPE,
                        "%s: class-index target has shape %s but input %s needs %s (the input's shape without the "
                        "class axis %d); targets are never broadcast: reshape or fix the target",
                        op, b2, b1, b3, cax);
            return false;
        }
        *prob = false;
        return kiln__loss_check_class_indices(op, target, C, true, o->ignore_index);
    }
    if (full_shape && kiln__is_float(target->dtype) && !log_probs) {
        if (target->dtype != input->dtype) {
            kiln__error(KILN_STATUS_DTYPE, "%s: probability target has dtype %s but input has %s; cast it with "
                        "kiln_tensor_cast(target, KILN_%s)", op, kiln_dtype_name(target->dtype),
                        kiln_dtype_name(input->dtype), input->dtype == KILN_F32 ? "F32" : "F64");
            return false;
        }
        *prob = true;
        return true;
    }
    if (pos_shape) {
        kiln__error(KILN_STATUS_DTYPE,
                    "%s: target of shape %s holds class indices but has dtype %s; class-index targets must be KILN_I64: "
                    "cast it with kiln_tensor_cast(target, KILN_I64)",
                    op, b2, kiln_dtype_name(target->dtype));
        return false;
    }
    if (full_shape && log_probs) {
        kiln__error(KILN_STATUS_DTYPE,
                    "%s: target %s of dtype %s looks like class probabilities, but nll_loss takes class indices "
                    "(KILN_I64 of shape %s); for probability targets use kiln_cross_entropy on logits",
                    op, b2, kiln_dtype_name(target->dtype), b3);
        return false;
    }
    if (full_shape) {
        kiln__error(KILN_STATUS_DTYPE, "%s: target %s has dtype %s; probability targets must be float of the input's "
                    "dtype (%s) and class-index targets KILN_I64 of shape %s", op, b2, kiln_dtype_name(target->dtype),
                    kiln_dtype_name(input->dtype), b3);
        return false;
    }
    kiln__error(KILN_STATUS_SHAPE,
                "%s: target shape %s fits neither form for input %s: class indices (KILN_I64) need shape %s, class "
                "probabilities need %s; targets are never broadcast: reshape or fix the target",
                op, b2, b1, b3, b1);
    return false;
}

static kiln_tensor *run_ce(const char *op, const kiln_op_def *def, bool log_probs, kiln_tensor *input,
                           kiln_tensor *target, const kiln_cross_entropy_options *opts) {
    kiln_cross_entropy_options o = opts ? *opts : kiln_cross_entropy_options_default();
    bool prob = false;
    if (!check_ce(op, log_probs, input, target, &o, &prob)) return NULL;
    int64_t pshape[KILN_MAX_DIMS];
    int pn = kiln_ce_positions(input->ndim, input->shape, pshape);
    kiln_ce_attrs at = {o.reduction, 0, prob, o.ignore_index, o.label_smoothing};
    kiln_tensor *in[3] = {input, target, o.weight};
    return kiln__run(def, 3, in, kiln__loss_new_out(input, pn, pshape, o.reduction), &at);
}

kiln_tensor *kiln_cross_entropy(kiln_tensor *input, kiln_tensor *target, const kiln_cross_entropy_options *opts) {
    return run_ce("cross_entropy", &kiln_op_cross_entropy, false, input, target, opts);
}

kiln_tensor *kiln_nll_loss(kiln_tensor *input, kiln_tensor *target, const kiln_cross_entropy_options *opts) {
    return run_ce("nll_loss", &kiln_op_nll_loss, true, input, target, opts);
}

static void ce_backward_common(const kiln_op_def *bw, kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    const kiln_ce_attrs *at = n->attrs;
    kiln_tensor *in[4] = {g, n->inputs[0], n->inputs[1], n->inputs[2]};
    for (int i = 0; i < 2; i++) { /* the class weight is refused at the front-end when it requires grad */
        if (!n->needs_grad[i]) continue;
        kiln_ce_attrs bat = *at;
        bat.wrt = i;
        gin[i] = kiln__run(bw, 4, in, kiln__new_like(n->inputs[i]), &bat);
    }
}

static void ce_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    ce_backward_common(&kiln_op_cross_entropy_backward, n, g, gin);
}
static void nll_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    ce_backward_common(&kiln_op_nll_loss_backward, n, g, gin);
}

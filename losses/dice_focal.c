/* Soft Dice (binary and multi-class) and the binary focal loss, composed of
 * differentiable ops; the one-hot encoding of class targets is a registry op
 * (not differentiable) so a CUDA kernel can be attached to it. */
#include "common.h"
#include "../kernels/cpu/losses.h"

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_one_hot(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_one_hot = {
    .name = "one_hot",
    .cpu = kiln_cpu_one_hot,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_one_hot),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_one_hot_attrs)};

static bool check_smooth(const char *op, double smooth) {
    if (smooth >= 0) return true;
    kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: smooth %g must be >= 0 (1.0 is usual)", op, smooth);
    return false;
}

/* p, t: (N, C, S) after flattening; dice per (n, c) from sums over S. */
static kiln_tensor *dice_from_flat(kiln_tensor *p, kiln_tensor *t, double smooth) {
    int ax[1] = {2};
    kiln_tensor *inter = kiln_sum(kiln_mul(p, t), 1, ax, false);
    kiln_tensor *den = kiln_add(kiln_sum(p, 1, ax, false), kiln_sum(t, 1, ax, false));
    return kiln_div(kiln_add_scalar(kiln_mul_scalar(inter, 2.0), smooth), kiln_add_scalar(den, smooth));
}

/* 1 - mean over classes of dice (N, C) -> (N), then the batch reduction. */
static kiln_tensor *dice_finish(kiln_tensor *dice, kiln_reduction r) {
    int ax[1] = {1};
    kiln_tensor *loss = kiln_add_scalar(kiln_neg(kiln_mean(dice, 1, ax, false)), 1.0);
    return kiln__loss_reduce(loss, r);
}

kiln_tensor *kiln_dice_loss(kiln_tensor *input, kiln_tensor *target, double smooth, kiln_reduction reduction) {
    const char *op = "dice_loss";
    if (!kiln__loss_check_reduction(op, reduction) || !check_smooth(op, smooth) ||
        !kiln__loss_check_pair(op, input, target))
        return NULL;
    if (input->ndim < 1) {
        kiln__error(KILN_STATUS_SHAPE, "%s: input is 0-d; it needs a batch axis: (N, ...)", op);
        return NULL;
    }
    int64_t shape[3] = {input->shape[0], 1, -1};
    if (input->shape[0] == 0 || kiln_tensor_numel(input) == 0) shape[2] = 0;
    kiln_tensor *p = kiln_reshape(input, 3, shape), *t = kiln_reshape(target, 3, shape);
    return dice_finish(dice_from_flat(p, t, smooth), reduction);
}

kiln_tensor *kiln_dice_loss_multiclass(kiln_tensor *input, kiln_tensor *target, double smooth,
                                       kiln_reduction reduction) {
    const char *op = "dice_loss_multiclass";
    kiln_tensor *in[2] = {input, target};
    if (!kiln__loss_check_reduction(op, reduction) || !check_smooth(op, smooth) || !kiln__check_inputs(op, 2, in) ||
        !kiln__check_float_inputs(op, 1, in))
        return NULL;
    char b1[128], b2[128], b3[128];
    kiln__shape_str(input->ndim, input->shape, b1, sizeof b1);
    if (input->ndim < 2) {
        kiln__error(KILN_STATUS_SHAPE, "%s: input %s needs shape (N, C, d1, ...)", op, b1);
        return NULL;
    }
    int64_t C = input->shape[1];
    if (C == 1) {
        kiln__error(KILN_STATUS_SHAPE,
                    "%s: the class axis (axis 1) of input %s has size 1: softmax probabilities over one class are "
                    "always 1. For a one-channel (binary) output use kiln_dice_loss on sigmoid probabilities", op, b1);
        return NULL;
    }
    int pn = 0;
    int64_t pshape[KILN_MAX_DIMS];
    for (int d = 0; d < input->ndim; d++)
        if (d != 1) pshape[pn++] = input->shape[d];
    bool same = target->ndim == pn;
    for (int d = 0; same && d < pn; d++) same = target->shape[d] == pshape[d];
    kiln__shape_str(target->ndim, target->shape, b2, sizeof b2);
    kiln__shape_str(pn, pshape, b3, sizeof b3);
    if (!same) {
        kiln__error(KILN_STATUS_SHAPE, "%s: class-index target has shape %s but input %s needs %s (the input's shape "
                    "without the class axis); targets are never broadcast", op, b2, b1, b3);
        return NULL;
    }
    if (target->dtype != KILN_I64) {
        kiln__error(KILN_STATUS_DTYPE, "%s: target has dtype %s; class-index targets must be KILN_I64: cast it with "
                    "kiln_tensor_cast(target, KILN_I64)", op, kiln_dtype_name(target->dtype));
        return NULL;
    }
    if (!kiln__loss_check_class_indices(op, target, C, false, 0)) return NULL;
    kiln_one_hot_attrs at = {C};
    kiln_tensor *onehot = kiln__run(&kiln_op_one_hot, 1, &target,
                                    kiln__new(input->ndim, input->shape, input->dtype, input->device), &at);
    int64_t shape[3] = {input->shape[0], C, kiln_tensor_numel(input) / (input->shape[0] * C)};
    if (input->shape[0] == 0) shape[2] = 0;
    kiln_tensor *p = kiln_reshape(input, 3, shape), *t = kiln_reshape(onehot, 3, shape);
    return dice_finish(dice_from_flat(p, t, smooth), reduction);
}

kiln_tensor *kiln_sigmoid_focal_loss(kiln_tensor *input, kiln_tensor *target, double alpha, double gamma,
                                     kiln_reduction reduction) {
    const char *op = "sigmoid_focal_loss";
    if (!kiln__loss_check_reduction(op, reduction) || !kiln__loss_check_pair(op, input, target)) return NULL;
    if (!(gamma >= 0) || alpha > 1) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: gamma %g must be >= 0 and alpha %g at most 1 (negative alpha "
                    "turns the alpha weighting off)", op, gamma, alpha);
        return NULL;
    }
    kiln_tensor *ce = kiln_bce_with_logits(input, target, NULL, NULL, KILN_REDUCTION_NONE);
    /* 1 - p_t = p (1-y) + (1-p) y with 1 - p taken as sigmoid(-x): p + y - 2 p y (or 1 - p)
     * cancels for a confident correct logit (y = 1, x = 10: 0.3% off in float) */
    kiln_tensor *p = kiln_sigmoid(input), *q = kiln_sigmoid(kiln_neg(input));
    kiln_tensor *one_minus_pt = kiln_add(kiln_mul(p, kiln_add_scalar(kiln_neg(target), 1.0)), kiln_mul(q, target));
    kiln_tensor *loss = gamma == 0 ? ce : kiln_mul(ce, kiln_pow_scalar(one_minus_pt, gamma));
    if (alpha >= 0) {
        /* alpha_t = alpha*y + (1-alpha)*(1-y) = (1-alpha) + (2*alpha-1)*y */
        kiln_tensor *alpha_t = kiln_add_scalar(kiln_mul_scalar(target, 2 * alpha - 1), 1 - alpha);
        loss = kiln_mul(alpha_t, loss);
    }
    return kiln__loss_reduce(loss, reduction);
}

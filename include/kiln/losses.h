/* kiln losses: binary and categorical cross-entropy (the per-pixel softmax over
 * the channel axis fused with its loss), regression losses, soft Dice and focal.
 * Semantics follow PyTorch's torch.nn.functional; every loss checks that its
 * target matches its input (never a silent broadcast) and explains the fix. */
#ifndef KILN_LOSSES_H
#define KILN_LOSSES_H

#include "core.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* As PyTorch's reduction argument: NONE keeps one loss per element (per position
 * for cross-entropy, per sample for Dice), SUM adds them, MEAN averages them
 * (cross-entropy with class-index targets divides by the summed class weights of
 * the non-ignored targets instead, exactly as PyTorch does). */
typedef enum { KILN_REDUCTION_NONE = 0, KILN_REDUCTION_MEAN, KILN_REDUCTION_SUM } kiln_reduction;

#define KILN_IGNORE_INDEX_DEFAULT (-100)

/* Binary cross-entropy on probabilities in [0,1]:
 *   l = -w * (y*log(p) + (1-y)*log(1-p)), each log clamped at -100 as PyTorch.
 * Gradients as torch 1.13's: d/dp = g (p-y) / max((1-p) p, 1e-12f) (the float 1e-12 in
 * f64 too), d/dy = -logit(p) (+inf at p = 0, -inf at p = 1: the clamp is not
 * differentiated); w and 1/n ('mean') applied after, in torch's order.
 * target: same shape and dtype as input. weight: NULL or broadcastable to input.
 * Values of input outside [0,1] (or NaN) are an error: raw network outputs
 * (logits) belong in kiln_bce_with_logits, which is also the more stable choice. */
KILN_API kiln_tensor *kiln_bce(kiln_tensor *input, kiln_tensor *target, kiln_tensor *weight,
                               kiln_reduction reduction);

/* Binary cross-entropy on logits, torch's
 *   l = w * [ (1-y)*x + (1 + (pw-1)*y) * (log1p(e^-|x|) + max(-x,0)) ]
 * which is max(x,0) - x*y + log1p(e^-|x|) without pos_weight, evaluated as a sum of
 * terms >= 0 (x >= 0: x(1-y), else -x*pw*y, plus (1+(pw-1)y) log1p(e^-|x|)) so a tiny
 * loss keeps full relative accuracy (x = -80, y = 0 gives e^-80); the gradient
 * (1+(pw-1)y) sigmoid(x) - pw*y takes sigmoid from the side where it is small. pos_weight (NULL or
 * broadcastable to input, e.g. (C) for (N,C) or (C,1,1) for (N,C,H,W), as PyTorch)
 * scales the positive term; weight (NULL or broadcastable) scales each element. */
KILN_API kiln_tensor *kiln_bce_with_logits(kiln_tensor *input, kiln_tensor *target, kiln_tensor *weight,
                                           kiln_tensor *pos_weight, kiln_reduction reduction);

/* Options of cross_entropy and nll_loss; kiln_cross_entropy_options_default()
 * gives PyTorch's defaults (no weight, ignore_index -100, no smoothing, mean). */
typedef struct {
    kiln_tensor *weight;    /* NULL or (C): a weight per class */
    int64_t ignore_index;   /* class-index targets equal to it add nothing (not even to the mean's divisor) */
    double label_smoothing; /* in [0,1]; nll_loss takes none */
    kiln_reduction reduction;
} kiln_cross_entropy_options;

KILN_API kiln_cross_entropy_options kiln_cross_entropy_options_default(void);

/* Categorical cross-entropy on logits of shape (N,C), (N,C,d1,...,dk) or (C): the
 * log-softmax over the class axis (axis 1; axis 0 for a 1-d input) fused with the
 * loss, computed per position walking strides (no permute). target is either
 *  - class indices, KILN_I64 of shape (N,d1,...,dk) (or () for a (C) input), each
 *    in [0,C) or equal to ignore_index; or
 *  - class probabilities, of the input's shape and dtype (ignore_index unused;
 *    'mean' divides by N*d1*...*dk).
 * With label_smoothing e, PyTorch's formula: (1-e)*nll + (e/C)*sum_c(-w_c*logp_c),
 * both parts divided by the same summed target weights under 'mean'. When every
 * target is ignored, 'mean' is 0/0 = NaN, as PyTorch. opts NULL means defaults.
 * A class axis of size 1 is an error: use kiln_bce_with_logits for one channel. */
KILN_API kiln_tensor *kiln_cross_entropy(kiln_tensor *input, kiln_tensor *target,
                                         const kiln_cross_entropy_options *opts);

/* Negative log-likelihood on log-probabilities (e.g. a log_softmax output), with
 * class-index targets only: l = -w[t] * input[t]; same weight, ignore_index and
 * reduction semantics as kiln_cross_entropy (label_smoothing must be 0). */
KILN_API kiln_tensor *kiln_nll_loss(kiln_tensor *input, kiln_tensor *target, const kiln_cross_entropy_options *opts);

/* (x-y)^2 and |x-y|; target of the input's shape. */
KILN_API kiln_tensor *kiln_mse_loss(kiln_tensor *input, kiln_tensor *target, kiln_reduction reduction);
KILN_API kiln_tensor *kiln_l1_loss(kiln_tensor *input, kiln_tensor *target, kiln_reduction reduction);

/* Soft Dice loss, per sample n (axis 0) with the sums over every other axis:
 *   binary:      input probabilities (N,...), target of the same shape in [0,1]
 *                dice_n = (2*sum(p*t) + smooth) / (sum(p) + sum(t) + smooth)
 *                loss_n = 1 - dice_n
 *   multi-class: input class probabilities (N,C,d1..dk) (e.g. a softmax over axis 1),
 *                target class indices KILN_I64 (N,d1..dk), one-hot encoded over C:
 *                dice_nc = (2*sum_s(p_ncs*t_ncs) + smooth) / (sum_s p_ncs + sum_s t_ncs + smooth)
 *                loss_n  = 1 - mean_c dice_nc
 * smooth >= 0 (1.0 is usual; 0 makes a sample with empty prediction and target 0/0).
 * reduction: NONE gives loss_n of shape (N), MEAN and SUM reduce over N. */
KILN_API kiln_tensor *kiln_dice_loss(kiln_tensor *input, kiln_tensor *target, double smooth,
                                     kiln_reduction reduction);
KILN_API kiln_tensor *kiln_dice_loss_multiclass(kiln_tensor *input, kiln_tensor *target, double smooth,
                                                kiln_reduction reduction);

/* Binary focal loss on logits, as torchvision.ops.sigmoid_focal_loss:
 *   p = sigmoid(x), ce = bce_with_logits(x, y), p_t = p*y + (1-p)*(1-y)
 *   (1 - p_t computed as p*(1-y) + sigmoid(-x)*y, without cancellation)
 *   l = alpha_t * ce * (1-p_t)^gamma, alpha_t = alpha*y + (1-alpha)*(1-y)
 * alpha < 0 disables the alpha weighting (torchvision's defaults: 0.25, gamma 2). */
KILN_API kiln_tensor *kiln_sigmoid_focal_loss(kiln_tensor *input, kiln_tensor *target, double alpha, double gamma,
                                              kiln_reduction reduction);

#ifdef __cplusplus
}
#endif
#endif

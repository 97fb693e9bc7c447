/* Prototypes of the CPU kernels of the loss ops (bce.c, cross_entropy.c, cross_entropy_f32.c;
 * the ops are defined in losses/bce.c, losses/cross_entropy.c and, one_hot, losses/dice_focal.c).
 * Attribute structs and per-element math live in kernels/losses_math.h. */
#ifndef KILN_CPU_LOSSES_H
#define KILN_CPU_LOSSES_H

#include "cpu.h"
#include "../cross_entropy_geometry.h"
#include "../losses_math.h"

/* bce family (kernels/cpu/bce.c). Every input already has the input's
 * shape (weights expanded, any strides; NULL when absent). out: the input's shape
 * (reduction none) or 0-d. Backward: g is the input's shape or 0-d; out has the
 * input's shape and holds the gradient for attrs->wrt. */
kiln_status kiln_cpu_bce(const kiln_op_call *call);                      /* in: x, y, w */
kiln_status kiln_cpu_bce_backward(const kiln_op_call *call);             /* in: g, x, y, w */
kiln_status kiln_cpu_bce_with_logits(const kiln_op_call *call);          /* in: x, y, w, pos_weight */
kiln_status kiln_cpu_bce_with_logits_backward(const kiln_op_call *call); /* in: g, x, y, w, pos_weight */

/* cross-entropy family (kernels/cpu/cross_entropy.c). x: (N,C,d..) or (C); target:
 * I64 (N,d..) or probabilities like x; w: NULL or (C). out: (N,d..) or 0-d.
 * Backward out: x's shape (wrt input) or target's (wrt probability target). */
kiln_status kiln_cpu_cross_entropy(const kiln_op_call *call);          /* in: x, target, w */
kiln_status kiln_cpu_cross_entropy_backward(const kiln_op_call *call); /* in: g, x, target, w */
kiln_status kiln_cpu_nll_loss(const kiln_op_call *call);               /* in: logp, target, w */
kiln_status kiln_cpu_nll_loss_backward(const kiln_op_call *call);      /* in: g, logp, target, w */
kiln_status kiln_cpu_one_hot(const kiln_op_call *call);                /* in: target I64 (N,d..) -> out float (N,C,d..) */

/* The float32 path of cross_entropy (kernels/cpu/cross_entropy_f32.c), taken by the kernels
 * above where their geometry's plan says (kernels/cross_entropy_geometry.h, f32_path).
 * Forward in: x, target, w; backward in: g, x, target, w, the gradient wrt the input. */
kiln_status kiln__ce_f32_forward(const kiln_op_call *call, const kiln_ce_f32_geometry *geo);
kiln_status kiln__ce_f32_backward(const kiln_op_call *call, const kiln_ce_f32_geometry *geo);
/* Over n dense class indices: kept = how many are not ignore_index (when allow_ignore),
 * bad = how many are outside [0,C) and not ignored. Vectorised, threaded. */
void kiln__class_index_scan(const int64_t *t, int64_t n, int64_t C, bool allow_ignore, int64_t ignore_index,
                            int64_t *kept, int64_t *bad);

#endif

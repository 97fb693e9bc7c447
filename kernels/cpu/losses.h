/* Prototypes of the CPU kernels of the loss ops (defined in losses/).
 * Attribute structs and per-element math live in kernels/losses_math.h. */
#ifndef KILN_CPU_LOSSES_H
#define KILN_CPU_LOSSES_H

#include "cpu.h"
#include "../losses_math.h"

/* bce family (kernels/cpu/bce.c). Every input already has the input's
 * shape (weights expanded, any strides; NULL when absent). out: the input's shape
 * (reduction none) or 0-d. Backward: g is the input's shape or 0-d; out has the
 * input's shape and holds the gradient for attrs->wrt. */
KILN_CPU_KERNEL(bce);                      /* in: x, y, w */
KILN_CPU_KERNEL(bce_backward);             /* in: g, x, y, w */
KILN_CPU_KERNEL(bce_with_logits);          /* in: x, y, w, pos_weight */
KILN_CPU_KERNEL(bce_with_logits_backward); /* in: g, x, y, w, pos_weight */

/* cross-entropy family (kernels/cpu/cross_entropy.c). x: (N,C,d..) or (C); target:
 * I64 (N,d..) or probabilities like x; w: NULL or (C). out: (N,d..) or 0-d.
 * Backward out: x's shape (wrt input) or target's (wrt probability target). */
KILN_CPU_KERNEL(cross_entropy);          /* in: x, target, w */
KILN_CPU_KERNEL(cross_entropy_backward); /* in: g, x, target, w */
KILN_CPU_KERNEL(nll_loss);               /* in: logp, target, w */
KILN_CPU_KERNEL(nll_loss_backward);      /* in: g, logp, target, w */
KILN_CPU_KERNEL(one_hot);                /* in: target I64 (N,d..) -> out float (N,C,d..) */

/* The float32 path of cross_entropy (kernels/cpu/cross_entropy_f32.c), taken by the kernels
 * above when kiln__ce_f32_applies (g: NULL for the forward). */
bool kiln__ce_f32_applies(const kiln_tensor *x, const kiln_tensor *t, const kiln_tensor *g, const kiln_tensor *out,
                          const kiln_ce_attrs *at);
kiln_status kiln__ce_f32_forward(const kiln_op_call *call);  /* in: x, target, w */
kiln_status kiln__ce_f32_backward(const kiln_op_call *call); /* in: g, x, target, w; wrt input */
/* Over n dense class indices: kept = how many are not ignore_index (when allow_ignore),
 * bad = how many are outside [0,C) and not ignored. Vectorised, threaded. */
void kiln__class_index_scan(const int64_t *t, int64_t n, int64_t C, bool allow_ignore, int64_t ignore_index,
                            int64_t *kept, int64_t *bad);

#endif

/* The geometry of one cross_entropy, nll_loss or one_hot call over x (N,C,d1..dk) or (C),
 * planned once per call by the CPU kernels (kernels/cpu/cross_entropy.c, cross_entropy_f32.c)
 * and the CUDA launchers (kernels/cuda/cross_entropy.cu), so both walk the same positions
 * and take the float32 path on the same calls. Plain C, also valid C++; no kiln_tensor:
 * operands are shapes and strides in the caller's unit (bytes on the CPU, elements on
 * CUDA), and so are the plan's strides. */
#ifndef KILN_CROSS_ENTROPY_GEOMETRY_H
#define KILN_CROSS_ENTROPY_GEOMETRY_H

#include <kiln/core.h>
#include <stdint.h>

#include "losses_math.h"

/* One operand: its shape and strides; elem is one element's stride in the caller's unit
 * (its size in bytes on the CPU, 1 on CUDA), for the density checks. */
typedef struct {
    int ndim;
    const int64_t *shape, *strides;
    int64_t elem;
} kiln_ce_operand;

/* The class axis of an input of ndim axes: 1 of (N,C,d..), 0 of (C). */
static inline int kiln_ce_class_axis(int ndim) { return ndim == 1 ? 0 : 1; }

/* The position shape (the input's without its class axis) into pshape; its length. */
static inline int kiln_ce_positions(int ndim, const int64_t *shape, int64_t *pshape) {
    int pn = 0, cax = kiln_ce_class_axis(ndim);
    for (int d = 0; d < ndim; d++)
        if (d != cax) pshape[pn++] = shape[d];
    return pn;
}

/* Packed in C order (size-1 axes may have any stride; an empty operand has nothing to lay
 * out), as kiln_tensor_is_contiguous. */
static inline int kiln_ce_dense(const kiln_ce_operand *t) {
    int64_t s = t->elem;
    for (int i = 0; i < t->ndim; i++)
        if (t->shape[i] == 0) return 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] == 1) continue;
        if (t->strides[i] != s) return 0;
        s *= t->shape[i];
    }
    return 1;
}

/* Every stride 0: one value expanded (the backward of a sum of 'none' losses). */
static inline int kiln_ce_one_value(const kiln_ce_operand *t) {
    for (int i = 0; i < t->ndim; i++)
        if (t->strides[i] != 0 && t->shape[i] != 1) return 0;
    return 1;
}

/* The float32 path's view (kiln_ce_f32_path): dense x (N,C,S), pixel q = n S + s, class c
 * of pixel q at n C S + c S + s; target and out (none) dense over the N S pixels. */
typedef struct {
    int64_t N, C, S, npos; /* samples, classes, pixels per sample, N S */
    int64_t wst;           /* the class weight's stride in elements (0 without one) */
    int64_t gstep;         /* g's step per pixel (backward): 0 for one value (0-d or expanded), 1 dense */
    int64_t ignore;
    float c1, ce; /* 1 - eps and eps / C, rounded once from double */
    int smooth;
} kiln_ce_f32_geometry;

/* The general path's view: the position axes (every axis of x but the class axis) with
 * the strides of x, the target, g and out there, and the class-axis strides; position-
 * shaped operands lack the class axis, 0-d ones (and absent ones) have stride 0. */
typedef struct {
    int P;
    int64_t pshape[KILN_MAX_DIMS];
    int64_t xs[KILN_MAX_DIMS], ts[KILN_MAX_DIMS], gs[KILN_MAX_DIMS], os[KILN_MAX_DIMS];
    int64_t xcs, tcs, ocs, ws, C, npos; /* class strides of x, target, out and the weight; C; positions */
    int f32_path;                       /* the call takes the float32 path, planned in f32 */
    kiln_ce_f32_geometry f32;
} kiln_ce_geometry;

/* Plans x: (N,C,d..) or (C); t: position-shaped class indices or x-shaped probabilities
 * (at->prob_target); g: NULL (forward), 0-d, position-shaped or one value expanded; w: NULL
 * or (C); out: position-shaped, x-shaped or 0-d. at: NULL for one_hot (x its output, t its
 * indices). The float32 path takes f32 logits (x_f32, not log_probs) with index targets,
 * dense x, t, g and out (g also one value), where kiln_ce_f32_path says. */
static inline void kiln_ce_geometry_plan(kiln_ce_geometry *p, const kiln_ce_operand *x, const kiln_ce_operand *t,
                                         const kiln_ce_operand *g, const kiln_ce_operand *w,
                                         const kiln_ce_operand *out, const kiln_ce_attrs *at, int x_f32,
                                         int log_probs) {
    const int cax = kiln_ce_class_axis(x->ndim), prob = at && at->prob_target;
    p->C = x->shape[cax];
    p->xcs = x->strides[cax];
    p->tcs = prob ? t->strides[cax] : 0;
    p->ws = w ? w->strides[0] : 0;
    const int out_like_x = out->ndim == x->ndim;
    p->ocs = out_like_x ? out->strides[cax] : 0;
    p->P = 0;
    p->npos = 1;
    for (int d = 0; d < x->ndim; d++) {
        if (d == cax) continue;
        int j = p->P++, pd = d < cax ? d : d - 1; /* the axis in position-shaped tensors */
        p->pshape[j] = x->shape[d];
        p->xs[j] = x->strides[d];
        p->ts[j] = prob ? t->strides[d] : t->strides[pd];
        p->gs[j] = g && g->ndim ? g->strides[pd] : 0;
        p->os[j] = out->ndim == 0 ? 0 : out_like_x ? out->strides[d] : out->strides[pd];
        p->npos *= x->shape[d];
    }

    kiln_ce_f32_geometry *f = &p->f32;
    f->C = p->C;
    f->N = x->ndim == 1 ? 1 : x->shape[0];
    f->S = 1;
    for (int d = 2; d < x->ndim; d++) f->S *= x->shape[d];
    f->npos = f->N * f->S;
    f->wst = w ? w->strides[0] / w->elem : 0;
    f->gstep = !g || g->ndim == 0 || kiln_ce_one_value(g) ? 0 : 1;
    f->ignore = at ? at->ignore_index : 0;
    f->c1 = (float)(1.0 - (at ? at->label_smoothing : 0.0));
    f->ce = (float)((at ? at->label_smoothing : 0.0) / (double)p->C);
    f->smooth = at && at->label_smoothing > 0;
    p->f32_path = at && x_f32 && !log_probs && !prob && kiln_ce_dense(x) && kiln_ce_dense(t) &&
                  (!g || g->ndim == 0 || kiln_ce_dense(g) || kiln_ce_one_value(g)) &&
                  (out->ndim == 0 || kiln_ce_dense(out)) && kiln_ce_f32_path(f->C, f->S);
}

#endif

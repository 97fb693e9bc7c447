/* Shape ops that are views: reshape, permute, slice, expand (and the squeeze,
 * unsqueeze, flatten and transpose built on them). They move no data: the kernel is
 * a no-op on every device and only the geometry of the output differs. */
#include "internal.h"
#include "op_attrs.h"

typedef struct { int perm[KILN_MAX_DIMS]; } perm_attrs;

static void reshape_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);
static void permute_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);
static void slice_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);
static void expand_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

KILN_REGISTER const kiln_op_def kiln_op_reshape = {
    .name = "reshape",
    .cpu = kiln__kernel_noop,
    .cuda = kiln__kernel_noop,
    .backward = reshape_bw};
KILN_REGISTER const kiln_op_def kiln_op_permute = {
    .name = "permute",
    .cpu = kiln__kernel_noop,
    .cuda = kiln__kernel_noop,
    .backward = permute_bw,
    .attrs_size = sizeof(perm_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_slice = {
    .name = "slice",
    .cpu = kiln__kernel_noop,
    .cuda = kiln__kernel_noop,
    .backward = slice_bw,
    .attrs_size = sizeof(kiln_slice_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_expand = {
    .name = "expand",
    .cpu = kiln__kernel_noop,
    .cuda = kiln__kernel_noop,
    .backward = expand_bw};

/* Strides for viewing a (ndim, shape, strides) tensor as new_shape without a copy,
 * or false when its memory layout does not allow it (torch's view rule). */
static bool view_strides(const kiln_tensor *t, int nn, const int64_t *nshape, int64_t *nstrides) {
    int64_t numel = kiln_tensor_numel(t);
    if (numel == 0 || t->ndim == 0) {
        kiln__contiguous_strides(nn, nshape, kiln_dtype_size(t->dtype), nstrides);
        return true;
    }
    int view_d = nn - 1;
    int64_t chunk_base = t->strides[t->ndim - 1];
    int64_t tensor_numel = 1, view_numel = 1;
    for (int d = t->ndim - 1; d >= 0; d--) {
        tensor_numel *= t->shape[d];
        /* a chunk of contiguous dims ends where the next dim does not continue it */
        if (d == 0 || (t->shape[d - 1] != 1 && t->strides[d - 1] != tensor_numel * chunk_base)) {
            while (view_d >= 0 && (view_numel < tensor_numel || nshape[view_d] == 1)) {
                nstrides[view_d] = view_numel * chunk_base;
                view_numel *= nshape[view_d];
                view_d--;
            }
            if (view_numel != tensor_numel) return false;
            if (d > 0) {
                chunk_base = t->strides[d - 1];
                tensor_numel = 1;
                view_numel = 1;
            }
        }
    }
    return view_d == -1;
}

static void reshape_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    kiln_tensor *x = n->inputs[0];
    gin[0] = kiln_reshape(g, x->ndim, x->shape);
}

kiln_tensor *kiln_reshape(kiln_tensor *a, int ndim, const int64_t *shape) {
    if (!kiln__check_inputs("reshape", 1, &a)) return NULL;
    if (ndim < 0 || ndim > KILN_MAX_DIMS || (ndim && !shape)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "reshape: %d dimensions (kiln allows 0..%d, shape non-NULL)", ndim,
                    KILN_MAX_DIMS);
        return NULL;
    }
    int64_t ns[KILN_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    char b1[128], b2[128];
    for (int i = 0; i < ndim; i++) {
        ns[i] = shape[i];
        if (shape[i] == -1) {
            if (infer >= 0) {
                kiln__error(KILN_STATUS_INVALID_ARGUMENT, "reshape: shape %s has more than one -1",
                            kiln__shape_str(ndim, shape, b1, sizeof b1));
                return NULL;
            }
            infer = i;
        } else if (shape[i] < 0) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "reshape: shape %s has a negative size",
                        kiln__shape_str(ndim, shape, b1, sizeof b1));
            return NULL;
        } else if (!kiln__mul_i64(known, shape[i], &known)) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "reshape: shape %s has more elements than 64-bit sizes hold",
                        kiln__shape_str(ndim, shape, b1, sizeof b1));
            return NULL;
        }
    }
    int64_t numel = kiln_tensor_numel(a);
    if (infer >= 0) {
        if (known == 0 || numel % known) {
            kiln__error(KILN_STATUS_SHAPE, "reshape: cannot reshape %s (%lld elements) to %s",
                        kiln__shape_str(a->ndim, a->shape, b1, sizeof b1), (long long)numel,
                        kiln__shape_str(ndim, shape, b2, sizeof b2));
            return NULL;
        }
        ns[infer] = numel / known;
    } else if (known != numel) {
        kiln__error(KILN_STATUS_SHAPE, "reshape: cannot reshape %s (%lld elements) to %s (%lld elements)",
                    kiln__shape_str(a->ndim, a->shape, b1, sizeof b1), (long long)numel,
                    kiln__shape_str(ndim, shape, b2, sizeof b2), (long long)known);
        return NULL;
    }
    int64_t st[KILN_MAX_DIMS];
    kiln_tensor *src = a;
    if (!view_strides(a, ndim, ns, st)) {
        src = kiln_tensor_contiguous(a); /* recorded: gradients flow through the copy */
        if (!src) return NULL;
        kiln__contiguous_strides(ndim, ns, kiln_dtype_size(a->dtype), st);
    }
    return kiln__run(&kiln_op_reshape, 1, &src, kiln__view(src, ndim, ns, st, src->offset), NULL);
}

kiln_tensor *kiln_squeeze(kiln_tensor *a, int axis) {
    if (!kiln__check_inputs("squeeze", 1, &a)) return NULL;
    int64_t ns[KILN_MAX_DIMS];
    int n = 0;
    if (axis == KILN_ALL_AXES) {
        for (int i = 0; i < a->ndim; i++)
            if (a->shape[i] != 1) ns[n++] = a->shape[i];
    } else {
        int ax;
        if (!kiln__axis("squeeze", axis, a->ndim, &ax)) return NULL;
        /* an axis not of size 1 (or a 0-d tensor) stays: a view of the same shape, as torch */
        bool drop = a->ndim > 0 && a->shape[ax] == 1;
        for (int i = 0; i < a->ndim; i++)
            if (i != ax || !drop) ns[n++] = a->shape[i];
    }
    return kiln_reshape(a, n, ns);
}

kiln_tensor *kiln_unsqueeze(kiln_tensor *a, int axis) {
    if (!kiln__check_inputs("unsqueeze", 1, &a)) return NULL;
    int ax;
    if (a->ndim == KILN_MAX_DIMS) {
        kiln__error(KILN_STATUS_SHAPE, "unsqueeze: tensor already has %d dimensions", KILN_MAX_DIMS);
        return NULL;
    }
    if (!kiln__axis("unsqueeze", axis, a->ndim + 1, &ax)) return NULL;
    int64_t ns[KILN_MAX_DIMS];
    for (int i = 0, j = 0; i <= a->ndim; i++) ns[i] = i == ax ? 1 : a->shape[j++];
    return kiln_reshape(a, a->ndim + 1, ns);
}

kiln_tensor *kiln_flatten(kiln_tensor *a, int start_axis, int end_axis) {
    if (!kiln__check_inputs("flatten", 1, &a)) return NULL;
    if (a->ndim == 0) return kiln_reshape(a, 1, (int64_t[]){1});
    int s, e;
    if (!kiln__axis("flatten", start_axis, a->ndim, &s) || !kiln__axis("flatten", end_axis, a->ndim, &e)) return NULL;
    if (s > e) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "flatten: start axis %d is after end axis %d", start_axis, end_axis);
        return NULL;
    }
    int64_t ns[KILN_MAX_DIMS];
    int n = 0;
    for (int i = 0; i < s; i++) ns[n++] = a->shape[i];
    int64_t m = 1;
    for (int i = s; i <= e; i++) m *= a->shape[i];
    ns[n++] = m;
    for (int i = e + 1; i < a->ndim; i++) ns[n++] = a->shape[i];
    return kiln_reshape(a, n, ns);
}

/* ---- permute ---------------------------------------------------------------------- */

kiln_tensor *kiln_permute(kiln_tensor *a, const int *perm) {
    if (!kiln__check_inputs("permute", 1, &a)) return NULL;
    if (!perm && a->ndim) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "permute: perm is NULL");
        return NULL;
    }
    perm_attrs at;
    uint32_t seen = 0;
    int64_t ns[KILN_MAX_DIMS], st[KILN_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) {
        int p;
        if (!kiln__axis("permute", perm[i], a->ndim, &p)) return NULL;
        if (seen & (1u << p)) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "permute: axis %d appears twice; perm must list each of the "
                        "%d axes once", perm[i], a->ndim);
            return NULL;
        }
        seen |= 1u << p;
        at.perm[i] = p;
        ns[i] = a->shape[p];
        st[i] = a->strides[p];
    }
    return kiln__run(&kiln_op_permute, 1, &a, kiln__view(a, a->ndim, ns, st, a->offset), &at);
}

static void permute_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    const perm_attrs *at = n->attrs;
    int inv[KILN_MAX_DIMS];
    for (int i = 0; i < g->ndim; i++) inv[at->perm[i]] = i;
    gin[0] = kiln_permute(g, inv);
}

kiln_tensor *kiln_transpose(kiln_tensor *a, int dim0, int dim1) {
    if (!kiln__check_inputs("transpose", 1, &a)) return NULL;
    int d0, d1;
    if (!kiln__axis("transpose", dim0, a->ndim, &d0) || !kiln__axis("transpose", dim1, a->ndim, &d1)) return NULL;
    int perm[KILN_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) perm[i] = i;
    perm[d0] = d1;
    perm[d1] = d0;
    return kiln_permute(a, perm);
}

/* ---- slice ------------------------------------------------------------------------- */

kiln_tensor *kiln_slice(kiln_tensor *a, int axis, int64_t start, int64_t end, int64_t step) {
    if (!kiln__check_inputs("slice", 1, &a)) return NULL;
    int ax;
    if (!kiln__axis("slice", axis, a->ndim, &ax)) return NULL;
    if (step <= 0) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "slice: step %lld must be positive", (long long)step);
        return NULL;
    }
    int64_t size = a->shape[ax];
    /* Python semantics: negative indices count from the end, out-of-range clamps. */
    if (start < 0) start += size;
    if (end < 0) end += size;
    start = start < 0 ? 0 : (start > size ? size : start);
    end = end < start ? start : (end > size ? size : end);
    int64_t ns[KILN_MAX_DIMS], st[KILN_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) {
        ns[i] = a->shape[i];
        st[i] = a->strides[i];
    }
    /* written so that no step, however large, overflows: a stride is only scaled by
     * the step when two or more elements are taken, and then it stays inside a */
    ns[ax] = end == start ? 0 : (end - start - 1) / step + 1;
    st[ax] = ns[ax] > 1 ? a->strides[ax] * step : a->strides[ax];
    kiln_slice_attrs at = {ax, start, step};
    return kiln__run(&kiln_op_slice, 1, &a, kiln__view(a, a->ndim, ns, st, a->offset + start * a->strides[ax]), &at);
}

kiln_status kiln__copy_into(kiln_tensor *dst, kiln_tensor *src);

static void slice_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    const kiln_slice_attrs *at = n->attrs;
    kiln_tensor *x = n->inputs[0];
    kiln_tensor *z = kiln_tensor_zeros(x->ndim, x->shape, g->dtype, g->device);
    if (!z) return;
    int64_t taken = g->shape[at->axis]; /* the window ends just after its last element */
    kiln_tensor *win = kiln_slice(z, at->axis, at->start, taken ? at->start + at->step * (taken - 1) + 1 : at->start,
                                  at->step);
    if (!win || kiln__copy_into(win, g) != KILN_STATUS_OK) return;
    gin[0] = z;
}

/* ---- expand ------------------------------------------------------------------------ */

kiln_tensor *kiln_expand(kiln_tensor *a, int ndim, const int64_t *shape) {
    if (!kiln__check_inputs("expand", 1, &a)) return NULL;
    char b1[128], b2[128];
    if (ndim < a->ndim || ndim > KILN_MAX_DIMS || (ndim && !shape)) {
        kiln__error(KILN_STATUS_SHAPE, "expand: cannot expand %s to %d dimensions",
                    kiln__shape_str(a->ndim, a->shape, b1, sizeof b1), ndim);
        return NULL;
    }
    int64_t ns[KILN_MAX_DIMS], st[KILN_MAX_DIMS];
    int lead = ndim - a->ndim;
    for (int i = 0; i < ndim; i++) {
        int j = i - lead;
        int64_t want = shape[i];
        if (j < 0) {
            if (want < 0) goto bad;
            ns[i] = want;
            st[i] = 0;
            continue;
        }
        if (want == -1) want = a->shape[j];
        if (want == a->shape[j]) {
            ns[i] = want;
            st[i] = a->strides[j];
        } else if (a->shape[j] == 1 && want >= 0) {
            ns[i] = want;
            st[i] = 0;
        } else {
            goto bad;
        }
    }
    if (!kiln__check_extent("expand", ndim, ns, kiln_dtype_size(a->dtype))) return NULL;
    return kiln__run(&kiln_op_expand, 1, &a, kiln__view(a, ndim, ns, st, a->offset), NULL);
bad:
    kiln__error(KILN_STATUS_SHAPE, "expand: cannot expand %s to %s: only size-1 axes can grow",
                kiln__shape_str(a->ndim, a->shape, b1, sizeof b1), kiln__shape_str(ndim, shape, b2, sizeof b2));
    return NULL;
}

static void expand_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    kiln_tensor *x = n->inputs[0];
    gin[0] = kiln__sum_to(g, x->ndim, x->shape);
}

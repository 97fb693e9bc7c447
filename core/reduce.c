/* Reductions: sum and mean over chosen axes (and the sum that turns a broadcast
 * gradient back into its input's shape). max and argmax are in maxarg.c. */
#include "internal.h"
#include "op_attrs.h"
#include "../kernels/cpu/cpu.h"

#include <math.h>

static void sum_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_sum(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_sum = {
    .name = "sum",
    .cpu = kiln_cpu_sum,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_sum),
    .backward = sum_bw,
    .attrs_size = sizeof(kiln_reduce_attrs)};

/* Axis list -> bit mask; an empty list means every axis. */
bool kiln__axes_mask(const char *op, const kiln_tensor *a, int naxes, const int *axes, uint32_t *mask) {
    *mask = 0;
    if (naxes == 0) {
        *mask = (1u << a->ndim) - 1;
        return true;
    }
    if (naxes < 0 || !axes) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: %d axes given with axes %s", op, naxes, axes ? "set" : "NULL");
        return false;
    }
    for (int i = 0; i < naxes; i++) {
        int ax;
        if (!kiln__axis(op, axes[i], a->ndim, &ax)) return false;
        if (*mask & (1u << ax)) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: axis %d appears twice in the axis list", op, axes[i]);
            return false;
        }
        *mask |= 1u << ax;
    }
    return true;
}

/* The reduced shape with (keepdim) or without the reduced axes. */
static int reduced_shape(const kiln_tensor *a, uint32_t mask, bool keepdim, int64_t *shape) {
    int n = 0;
    for (int i = 0; i < a->ndim; i++) {
        if (!(mask & (1u << i))) shape[n++] = a->shape[i];
        else if (keepdim) shape[n++] = 1;
    }
    return n;
}

static kiln_tensor *sum_mask(kiln_tensor *a, uint32_t mask, bool keepdim) {
    int64_t kshape[KILN_MAX_DIMS], shape[KILN_MAX_DIMS];
    int kn = reduced_shape(a, mask, true, kshape);
    kiln_reduce_attrs at = {mask};
    kiln_tensor *out = kiln__run(&kiln_op_sum, 1, &a, kiln__new(kn, kshape, a->dtype, a->device), &at);
    if (!out || keepdim) return out;
    int n = reduced_shape(a, mask, false, shape);
    return kiln_reshape(out, n, shape);
}

kiln_tensor *kiln_sum(kiln_tensor *a, int naxes, const int *axes, bool keepdim) {
    uint32_t mask;
    if (!kiln__check_float_inputs("sum", 1, &a) || !kiln__axes_mask("sum", a, naxes, axes, &mask)) return NULL;
    return sum_mask(a, mask, keepdim);
}

kiln_tensor *kiln_mean(kiln_tensor *a, int naxes, const int *axes, bool keepdim) {
    uint32_t mask;
    if (!kiln__check_float_inputs("mean", 1, &a) || !kiln__axes_mask("mean", a, naxes, axes, &mask)) return NULL;
    int64_t count = 1;
    for (int i = 0; i < a->ndim; i++)
        if (mask & (1u << i)) count *= a->shape[i];
    kiln_tensor *s = sum_mask(a, mask, keepdim);
    /* torch: the mean over zero elements is NaN */
    return kiln_mul_scalar(s, count ? 1.0 / (double)count : NAN);
}

kiln_tensor *kiln_sum_all(kiln_tensor *a) { return kiln_sum(a, 0, NULL, false); }
kiln_tensor *kiln_mean_all(kiln_tensor *a) { return kiln_mean(a, 0, NULL, false); }

static void sum_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    /* g has the keepdim shape: broadcasting it back is a stride-0 view. */
    kiln_tensor *x = n->inputs[0];
    gin[0] = kiln_expand(g, x->ndim, x->shape);
}

kiln_tensor *kiln__sum_to(kiln_tensor *g, int ndim, const int64_t *shape) {
    if (!g) return NULL;
    bool same = g->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = g->shape[i] == shape[i];
    if (same) return g;
    /* Reduce the leading extra axes and the axes that were broadcast from 1. */
    uint32_t mask = 0;
    int lead = g->ndim - ndim;
    for (int i = 0; i < g->ndim; i++) {
        int j = i - lead;
        if (j < 0 || (shape[j] == 1 && g->shape[i] != 1)) mask |= 1u << i;
    }
    kiln_tensor *s = sum_mask(g, mask, true);
    return s ? kiln_reshape(s, ndim, shape) : NULL;
}

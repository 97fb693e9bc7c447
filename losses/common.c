/* Shared checks of the loss front-ends: the rules every loss applies to its target
 * (same shape as the input, never broadcast; a float dtype matching the input). */
#include "common.h"

#include <stdlib.h>

bool kiln__loss_check_reduction(const char *op, kiln_reduction r) {
    if (r == KILN_REDUCTION_NONE || r == KILN_REDUCTION_MEAN || r == KILN_REDUCTION_SUM) return true;
    kiln__error(KILN_STATUS_INVALID_ARGUMENT,
                "%s: reduction %d is not a kiln_reduction; use KILN_REDUCTION_NONE, _MEAN or _SUM", op, (int)r);
    return false;
}

bool kiln__loss_check_pair(const char *op, kiln_tensor *input, kiln_tensor *target) {
    kiln_tensor *in[2] = {input, target};
    if (!kiln__check_inputs(op, 2, in) || !kiln__check_float_inputs(op, 1, in)) return false;
    char b1[128], b2[128];
    bool same = input->ndim == target->ndim;
    for (int i = 0; same && i < input->ndim; i++) same = input->shape[i] == target->shape[i];
    if (!same) {
        kiln__error(KILN_STATUS_SHAPE,
                    "%s: target shape %s differs from input shape %s; a loss never broadcasts its target (that "
                    "silently compares the wrong elements): reshape the target to %s",
                    op, kiln__shape_str(target->ndim, target->shape, b1, sizeof b1),
                    kiln__shape_str(input->ndim, input->shape, b2, sizeof b2), b2);
        return false;
    }
    if (target->dtype != input->dtype) {
        kiln__error(KILN_STATUS_DTYPE,
                    "%s: target has dtype %s but input has %s; the target must be a float tensor of the input's "
                    "dtype: cast it with kiln_tensor_cast(target, KILN_%s)",
                    op, kiln_dtype_name(target->dtype), kiln_dtype_name(input->dtype),
                    input->dtype == KILN_F32 ? "F32" : "F64");
        return false;
    }
    return true;
}

kiln_tensor *kiln__loss_expand(const char *op, const char *what, kiln_tensor *t, kiln_tensor *like,
                               const char *hint, bool *ok) {
    if (!t) return NULL;
    kiln_tensor *in[2] = {like, t};
    if (!kiln__check_float_inputs(op, 2, in)) {
        *ok = false;
        return NULL;
    }
    bool fits = t->ndim <= like->ndim;
    for (int i = 0; fits && i < t->ndim; i++) {
        int64_t s = t->shape[t->ndim - 1 - i], want = like->shape[like->ndim - 1 - i];
        fits = s == want || s == 1;
    }
    if (!fits) {
        char b1[128], b2[128];
        kiln__error(KILN_STATUS_SHAPE, "%s: %s of shape %s does not broadcast to the input's shape %s%s", op, what,
                    kiln__shape_str(t->ndim, t->shape, b1, sizeof b1),
                    kiln__shape_str(like->ndim, like->shape, b2, sizeof b2), hint ? hint : "");
        *ok = false;
        return NULL;
    }
    kiln_tensor *e = kiln_expand(t, like->ndim, like->shape);
    if (!e) *ok = false;
    return e;
}

kiln_tensor *kiln__loss_reduce(kiln_tensor *t, kiln_reduction r) {
    if (!t) return NULL;
    switch (r) {
    case KILN_REDUCTION_MEAN: return kiln_mean_all(t);
    case KILN_REDUCTION_SUM: return kiln_sum_all(t);
    default: return t;
    }
}

double *kiln__loss_host_values(const char *op, kiln_tensor *t) {
    int64_t n = kiln_tensor_numel(t);
    size_t es = kiln_dtype_size(t->dtype);
    void *raw = malloc(n ? (size_t)n * es : 1);
    double *v = malloc(n ? (size_t)n * sizeof *v : 1);
    if (!raw || !v) {
        free(raw);
        free(v);
        kiln__error(KILN_STATUS_OOM, "%s: out of host memory reading %lld values", op, (long long)n);
        return NULL;
    }
    if (kiln_tensor_to_host(t, raw, (size_t)n * es) != KILN_STATUS_OK) {
        free(raw);
        free(v);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case KILN_F32: v[i] = ((const float *)raw)[i]; break;
        case KILN_F64: v[i] = ((const double *)raw)[i]; break;
        case KILN_I32: v[i] = ((const int32_t *)raw)[i]; break;
        case KILN_I64: v[i] = (double)((const int64_t *)raw)[i]; break;
        case KILN_U8: v[i] = ((const uint8_t *)raw)[i]; break;
        default:
            free(raw);
            free(v);
            kiln__error(KILN_STATUS_DTYPE, "%s: cannot read %s values; cast the tensor to KILN_F32 first", op,
                        kiln_dtype_name(t->dtype));
            return NULL;
        }
    }
    free(raw);
    return v;
}

kiln_tensor *kiln__loss_new_out(kiln_tensor *input, int ndim, const int64_t *shape, kiln_reduction r) {
    if (r == KILN_REDUCTION_NONE) return kiln__new(ndim, shape, input->dtype, input->device);
    return kiln__new(0, NULL, input->dtype, input->device);
}

bool kiln__loss_no_grad_input(const char *op, const char *what, kiln_tensor *t) {
    if (!t || !t->requires_grad || !kiln_grad_enabled()) return true;
    kiln__error(KILN_STATUS_INVALID_ARGUMENT,
                "%s: %s requires grad, but its derivative is not implemented (as in PyTorch); detach it with "
                "kiln_tensor_detach()",
                op, what);
    return false;
}

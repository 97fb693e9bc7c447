/* Parameter initialisation as torch.nn.init: gains, fans, Kaiming and Xavier, and
 * the reset_parameters default of Linear/Conv. Values come from the global Philox
 * generator through kiln_tensor_rand/randn, so they are the same on every device. */
#include "../core/internal.h"

#include <math.h>

double kiln_init_gain(kiln_nonlinearity nl, double a) {
    switch (nl) {
    case KILN_NONLINEARITY_LINEAR: return 1.0;
    case KILN_NONLINEARITY_TANH: return 5.0 / 3.0;
    case KILN_NONLINEARITY_RELU: return sqrt(2.0);
    case KILN_NONLINEARITY_LEAKY_RELU: return sqrt(2.0 / (1.0 + a * a));
    case KILN_NONLINEARITY_SELU: return 0.75;
    }
    kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_init_gain: %d is not a kiln_nonlinearity", (int)nl);
    return NAN;
}

/* Draws a fresh uniform or normal tensor like t and copies it in, unrecorded. */
static kiln_status fill_random(const char *op, kiln_tensor *t, bool normal, double a, double b) {
    if (!t) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: tensor is NULL", op);
    if (!kiln__is_float(t->dtype))
        return kiln__error(KILN_STATUS_DTYPE, "%s: tensor has dtype %s; initialisers fill f32 or f64 tensors", op,
                           kiln_dtype_name(t->dtype));
    if (kiln_tensor_numel(t) == 0) return KILN_STATUS_OK;
    if (!normal && a == b) return kiln_tensor_fill(t, a);
    if (normal && b == 0) return kiln_tensor_fill(t, a);
    kiln_scope *s = kiln_scope_begin();
    if (!s) return kiln_last_status();
    kiln_tensor *r = normal ? kiln_tensor_randn(t->ndim, t->shape, a, b, t->dtype, t->device)
                            : kiln_tensor_rand(t->ndim, t->shape, a, b, t->dtype, t->device);
    kiln_status st = r ? kiln_tensor_copy_(t, r) : kiln_last_status();
    kiln_scope_end(s);
    return st;
}

kiln_status kiln_init_uniform(kiln_tensor *t, double lo, double hi) {
    if (!(lo <= hi))
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_init_uniform: lo %g is above hi %g", lo, hi);
    return fill_random("kiln_init_uniform", t, false, lo, hi);
}

kiln_status kiln_init_normal(kiln_tensor *t, double mean, double std) {
    if (!(std >= 0)) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_init_normal: std %g must be >= 0", std);
    return fill_random("kiln_init_normal", t, true, mean, std);
}

kiln_status kiln_init_constant(kiln_tensor *t, double value) {
    if (!t) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_init_constant: tensor is NULL");
    return kiln_tensor_fill(t, value);
}

/* torch's _calculate_fan_in_and_fan_out. */
static bool fans(const char *op, const kiln_tensor *t, double *fan_in, double *fan_out) {
    if (!t) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: tensor is NULL", op);
        return false;
    }
    if (t->ndim < 2) {
        char b[128];
        kiln__error(KILN_STATUS_SHAPE, "%s: fan in and fan out cannot be computed for a tensor with fewer than 2 "
                    "dimensions (got %s); use kiln_init_uniform or kiln_init_normal",
                    op, kiln__shape_str(t->ndim, t->shape, b, sizeof b));
        return false;
    }
    double rf = 1;
    for (int i = 2; i < t->ndim; i++) rf *= (double)t->shape[i];
    *fan_in = (double)t->shape[1] * rf;
    *fan_out = (double)t->shape[0] * rf;
    return true;
}

static kiln_status kaiming(const char *op, kiln_tensor *t, double a, kiln_fan_mode mode, kiln_nonlinearity nl,
                           bool normal) {
    double fi, fo;
    if (!fans(op, t, &fi, &fo)) return kiln_last_status();
    if (mode != KILN_FAN_IN && mode != KILN_FAN_OUT)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: %d is not a kiln_fan_mode", op, (int)mode);
    if (kiln_tensor_numel(t) == 0) return KILN_STATUS_OK;
    double gain = kiln_init_gain(nl, a);
    if (isnan(gain)) return kiln_last_status();
    double std = gain / sqrt(mode == KILN_FAN_IN ? fi : fo);
    return normal ? fill_random(op, t, true, 0.0, std) : fill_random(op, t, false, -sqrt(3.0) * std, sqrt(3.0) * std);
}

kiln_status kiln_init_kaiming_uniform(kiln_tensor *t, double a, kiln_fan_mode mode, kiln_nonlinearity nl) {
    return kaiming("kiln_init_kaiming_uniform", t, a, mode, nl, false);
}

kiln_status kiln_init_kaiming_normal(kiln_tensor *t, double a, kiln_fan_mode mode, kiln_nonlinearity nl) {
    return kaiming("kiln_init_kaiming_normal", t, a, mode, nl, true);
}

static kiln_status xavier(const char *op, kiln_tensor *t, double gain, bool normal) {
    double fi, fo;
    if (!fans(op, t, &fi, &fo)) return kiln_last_status();
    if (kiln_tensor_numel(t) == 0) return KILN_STATUS_OK;
    double std = gain * sqrt(2.0 / (fi + fo));
    return normal ? fill_random(op, t, true, 0.0, std) : fill_random(op, t, false, -sqrt(3.0) * std, sqrt(3.0) * std);
}

kiln_status kiln_init_xavier_uniform(kiln_tensor *t, double gain) {
    return xavier("kiln_init_xavier_uniform", t, gain, false);
}

kiln_status kiln_init_xavier_normal(kiln_tensor *t, double gain) {
    return xavier("kiln_init_xavier_normal", t, gain, true);
}

kiln_status kiln_init_default(kiln_tensor *weight, kiln_tensor *bias) {
    double fi, fo;
    if (!fans("kiln_init_default", weight, &fi, &fo)) return kiln_last_status();
    kiln_status st = kiln_init_kaiming_uniform(weight, sqrt(5.0), KILN_FAN_IN, KILN_NONLINEARITY_LEAKY_RELU);
    if (st != KILN_STATUS_OK || !bias) return st;
    double bound = fi > 0 ? 1.0 / sqrt(fi) : 0.0;
    return fill_random("kiln_init_default", bias, false, -bound, bound);
}

/* Built-in modules (torch.nn names, parameter names and defaults): Linear,
 * BatchNorm2d, Dropout, the activations, Flatten and Sequential. Each is a custom
 * module with a small parameter struct as ctx; the forward checks its input and
 * names the module's dotted path in the error. */
#include "../core/internal.h"
#include "module_internal.h"

#include <math.h>
#include <stdlib.h>

/* Creates a module whose ctx is a zeroed struct of size n, freed with the module. */
static kiln_module *create_with(const char *type, kiln_module_forward_fn fwd, size_t n) {
    void *ctx = n ? calloc(1, n) : NULL;
    if (n && !ctx) {
        kiln__error(KILN_STATUS_OOM, "%s: out of host memory", type);
        return NULL;
    }
    kiln_module *m = kiln_module_create(type, fwd, ctx, n ? free : NULL);
    if (m) kiln_module_set_lean(m, true); /* built-in forwards keep nothing but their result */
    return m;
}

/* Registers a parameter or buffer of the given shape filled with value. */
static kiln_tensor *add_filled(kiln_module *m, const char *name, int ndim, const int64_t *shape, double value,
                               kiln_dtype dt, bool buffer) {
    kiln_scope *s = kiln_scope_begin();
    if (!s) return NULL;
    kiln_tensor *init = kiln_tensor_full(ndim, shape, value, dt, KILN_CPU);
    kiln_tensor *t = buffer ? kiln_module_register_buffer(m, name, init) : kiln_module_register_parameter(m, name, init);
    kiln_scope_end(s);
    return t;
}

static bool check_float_dtype(const char *op, kiln_dtype dt) {
    if (kiln__is_float(dt)) return true;
    kiln__error(KILN_STATUS_DTYPE, "%s: dtype %s; modules hold f32 or f64 parameters", op, kiln_dtype_name(dt));
    return false;
}

/* ---- Linear --------------------------------------------------------------------- */

typedef struct {
    int64_t in, out;
    kiln_tensor *weight, *bias;
} linear_ctx;

static kiln_tensor *linear_forward(kiln_module *self, kiln_tensor *x) {
    linear_ctx *c = kiln_module_ctx(self);
    if (x->ndim < 1 || x->shape[x->ndim - 1] != c->in) {
        char d[300], b[128];
        kiln__error(KILN_STATUS_SHAPE, "%s: input %s has %lld features in its last axis; expected in_features = %lld "
                    "(Linear(%lld, %lld))", kiln__module_describe(self, d, sizeof d),
                    kiln__shape_str(x->ndim, x->shape, b, sizeof b), (long long)(x->ndim ? x->shape[x->ndim - 1] : 0),
                    (long long)c->in, (long long)c->in, (long long)c->out);
        return NULL;
    }
    return kiln_linear(x, c->weight, c->bias);
}

kiln_module *kiln_linear_create(int64_t in_features, int64_t out_features, bool bias, kiln_dtype dt) {
    if (in_features < 0 || out_features < 0) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_linear_create: in_features %lld and out_features %lld must be "
                    ">= 0", (long long)in_features, (long long)out_features);
        return NULL;
    }
    if (!check_float_dtype("kiln_linear_create", dt)) return NULL;
    kiln_module *m = create_with("Linear", linear_forward, sizeof(linear_ctx));
    if (!m) return NULL;
    linear_ctx *c = kiln_module_ctx(m);
    c->in = in_features;
    c->out = out_features;
    int64_t ws[2] = {out_features, in_features};
    c->weight = add_filled(m, "weight", 2, ws, 0.0, dt, false);
    c->bias = bias ? add_filled(m, "bias", 1, &out_features, 0.0, dt, false) : NULL;
    if (!c->weight || (bias && !c->bias) || kiln_init_default(c->weight, c->bias) != KILN_STATUS_OK) {
        kiln_module_free(m);
        return NULL;
    }
    return m;
}

/* ---- BatchNorm2d ------------------------------------------------------------------- */

typedef struct {
    int64_t c;
    double eps, momentum;
    kiln_tensor *weight, *bias, *running_mean, *running_var, *num_batches_tracked;
} bn_ctx;

/* BatchNorm2d takes (N, C, H, W), BatchNorm1d (N, C) or (N, C, L), as torch's modules. */
static kiln_tensor *bn_run(kiln_module *self, kiln_tensor *x, bool one_d) {
    bn_ctx *c = kiln_module_ctx(self);
    bool rank_ok = one_d ? (x->ndim == 2 || x->ndim == 3) : x->ndim == 4;
    if (!rank_ok || x->shape[1] != c->c) {
        char d[300], b[128];
        kiln__error(KILN_STATUS_SHAPE, "%s: input %s must be %s with C = num_features = %lld",
                    kiln__module_describe(self, d, sizeof d), kiln__shape_str(x->ndim, x->shape, b, sizeof b),
                    one_d ? "2-d (N, C) or 3-d (N, C, L)" : "4-d (N, C, H, W)", (long long)c->c);
        return NULL;
    }
    bool training = kiln_module_is_training(self);
    double factor = isnan(c->momentum) ? 0.0 : c->momentum;
    if (training && c->num_batches_tracked) {
        double n = kiln_tensor_item(c->num_batches_tracked) + 1;
        if (kiln_tensor_fill(c->num_batches_tracked, n) != KILN_STATUS_OK) return NULL;
        if (isnan(c->momentum)) factor = 1.0 / n; /* momentum=None: cumulative moving average */
    }
    /* Without running statistics the batch statistics are used in eval too (as torch). */
    bool use_batch = training || !c->running_mean;
    return kiln_batch_norm(x, c->weight, c->bias, c->running_mean, c->running_var, use_batch, factor, c->eps);
}

static kiln_tensor *bn2d_forward(kiln_module *self, kiln_tensor *x) { return bn_run(self, x, false); }
static kiln_tensor *bn1d_forward(kiln_module *self, kiln_tensor *x) { return bn_run(self, x, true); }

static kiln_module *bn_create(bool one_d, int64_t num_features, double eps, double momentum, bool affine,
                              bool track_running_stats, kiln_dtype dt) {
    const char *op = one_d ? "kiln_batch_norm1d_create" : "kiln_batch_norm2d_create";
    if (num_features <= 0 || !(eps > 0)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: num_features %lld must be > 0 and eps %g > 0", op,
                    (long long)num_features, eps);
        return NULL;
    }
    if (!check_float_dtype(op, dt)) return NULL;
    kiln_module *m = create_with(one_d ? "BatchNorm1d" : "BatchNorm2d", one_d ? bn1d_forward : bn2d_forward,
                                 sizeof(bn_ctx));
    if (!m) return NULL;
    bn_ctx *c = kiln_module_ctx(m);
    c->c = num_features;
    c->eps = eps;
    c->momentum = momentum;
    bool ok = true;
    if (affine) {
        c->weight = add_filled(m, "weight", 1, &num_features, 1.0, dt, false);
        c->bias = add_filled(m, "bias", 1, &num_features, 0.0, dt, false);
        ok = c->weight && c->bias;
    }
    if (ok && track_running_stats) {
        c->running_mean = add_filled(m, "running_mean", 1, &num_features, 0.0, dt, true);
        c->running_var = add_filled(m, "running_var", 1, &num_features, 1.0, dt, true);
        c->num_batches_tracked = add_filled(m, "num_batches_tracked", 0, NULL, 0.0, KILN_I64, true);
        ok = c->running_mean && c->running_var && c->num_batches_tracked;
    }
    if (!ok) {
        kiln_module_free(m);
        return NULL;
    }
    return m;
}

kiln_module *kiln_batch_norm2d_create_ex(int64_t num_features, double eps, double momentum, bool affine,
                                         bool track_running_stats, kiln_dtype dt) {
    return bn_create(false, num_features, eps, momentum, affine, track_running_stats, dt);
}

kiln_module *kiln_batch_norm2d_create(int64_t num_features, kiln_dtype dt) {
    return kiln_batch_norm2d_create_ex(num_features, 1e-5, 0.1, true, true, dt);
}

kiln_module *kiln_batch_norm1d_create_ex(int64_t num_features, double eps, double momentum, bool affine,
                                         bool track_running_stats, kiln_dtype dt) {
    return bn_create(true, num_features, eps, momentum, affine, track_running_stats, dt);
}

kiln_module *kiln_batch_norm1d_create(int64_t num_features, kiln_dtype dt) {
    return kiln_batch_norm1d_create_ex(num_features, 1e-5, 0.1, true, true, dt);
}

/* ---- Dropout, activations, Flatten ---------------------------------------------------- */

typedef struct {
    double a;
    int start, end;
} simple_ctx;

static kiln_tensor *dropout_forward(kiln_module *self, kiln_tensor *x) {
    simple_ctx *c = kiln_module_ctx(self);
    return kiln_dropout(x, c->a, kiln_module_is_training(self));
}

kiln_module *kiln_dropout_create(double p) {
    if (!(p >= 0 && p <= 1)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_dropout_create: probability %g must be in [0, 1]", p);
        return NULL;
    }
    kiln_module *m = create_with("Dropout", dropout_forward, sizeof(simple_ctx));
    if (m) ((simple_ctx *)kiln_module_ctx(m))->a = p;
    return m;
}

static kiln_tensor *relu_forward(kiln_module *self, kiln_tensor *x) { return kiln_relu(x); }
static kiln_tensor *sigmoid_forward(kiln_module *self, kiln_tensor *x) { return kiln_sigmoid(x); }
static kiln_tensor *tanh_forward(kiln_module *self, kiln_tensor *x) { return kiln_tanh(x); }
static kiln_tensor *leaky_forward(kiln_module *self, kiln_tensor *x) {
    return kiln_leaky_relu(x, ((simple_ctx *)kiln_module_ctx(self))->a);
}

kiln_module *kiln_relu_create(void) { return create_with("ReLU", relu_forward, 0); }
kiln_module *kiln_sigmoid_create(void) { return create_with("Sigmoid", sigmoid_forward, 0); }
kiln_module *kiln_tanh_create(void) { return create_with("Tanh", tanh_forward, 0); }

kiln_module *kiln_leaky_relu_create(double negative_slope) {
    kiln_module *m = create_with("LeakyReLU", leaky_forward, sizeof(simple_ctx));
    if (m) ((simple_ctx *)kiln_module_ctx(m))->a = negative_slope;
    return m;
}

static kiln_tensor *flatten_forward(kiln_module *self, kiln_tensor *x) {
    simple_ctx *c = kiln_module_ctx(self);
    int nd = x->ndim ? x->ndim : 1, s = c->start < 0 ? c->start + nd : c->start, e = c->end < 0 ? c->end + nd : c->end;
    if (s < 0 || e >= nd || s > e) {
        char d[300], b[128];
        kiln__error(KILN_STATUS_SHAPE, "%s: start_dim %d and end_dim %d do not select axes of input %s",
                    kiln__module_describe(self, d, sizeof d), c->start, c->end,
                    kiln__shape_str(x->ndim, x->shape, b, sizeof b));
        return NULL;
    }
    return kiln_flatten(x, s, e);
}

kiln_module *kiln_flatten_create(int start_axis, int end_axis) {
    kiln_module *m = create_with("Flatten", flatten_forward, sizeof(simple_ctx));
    if (m) {
        simple_ctx *c = kiln_module_ctx(m);
        c->start = start_axis;
        c->end = end_axis;
    }
    return m;
}

/* ---- Sequential ---------------------------------------------------------------------- */

/* Each child's output is consumed by the next child alone: with no tape it is freed
 * as soon as that child returns (kiln_module_discard refuses the caller's input, a
 * child that returned its own input, and anything while the tape records). */
static kiln_tensor *sequential_forward(kiln_module *self, kiln_tensor *x) {
    int n = kiln_module_num_children(self);
    for (int i = 0; i < n && x; i++) {
        kiln_tensor *y = kiln_module_forward(kiln_module_child_at(self, i, NULL), x);
        if (y != x) kiln_module_discard(self, x);
        x = y;
    }
    return x;
}

kiln_module *kiln_sequential_create(void) { return create_with("Sequential", sequential_forward, 0); }

kiln_status kiln_sequential_append(kiln_module *seq, kiln_module *child) {
    char name[24];
    snprintf(name, sizeof name, "%d", seq ? kiln_module_num_children(seq) : 0);
    return kiln_module_add(seq, name, child);
}

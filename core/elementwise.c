/* Element-wise ops: registry entries, shape rules and backward rules. Backward of
 * every unary op is one fused kernel (unary_backward) and of every binary op one
 * kernel per side followed by a sum over the broadcast axes. */
#include "internal.h"
#include "op_attrs.h"
#include "../kernels/cpu/cpu.h"
#include "../kernels/elementwise_math.h"

#include <math.h>
#include <stdlib.h>

static void unary_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);
static void binary_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);
static void where_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);
static void copy_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

static const char *unary_label(const void *attrs);
static const char *binary_label(const void *attrs);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_unary(const kiln_op_call *call);
kiln_status kiln_cuda_unary_backward(const kiln_op_call *call);
kiln_status kiln_cuda_binary(const kiln_op_call *call);
kiln_status kiln_cuda_binary_backward(const kiln_op_call *call);
kiln_status kiln_cuda_where(const kiln_op_call *call);
kiln_status kiln_cuda_copy(const kiln_op_call *call);
kiln_status kiln_cuda_fill(const kiln_op_call *call);
kiln_status kiln_cuda_rand(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_unary = {
    .name = "unary",
    .cpu = kiln_cpu_unary,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_unary),
    .backward = unary_bw,
    .attrs_size = sizeof(kiln_unary_attrs),
    .label = unary_label};
KILN_REGISTER const kiln_op_def kiln_op_unary_backward = {
    .name = "unary_backward",
    .cpu = kiln_cpu_unary_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_unary_backward),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_unary_attrs),
    .label = unary_label};
KILN_REGISTER const kiln_op_def kiln_op_binary = {
    .name = "binary",
    .cpu = kiln_cpu_binary,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_binary),
    .backward = binary_bw,
    .attrs_size = sizeof(kiln_binary_attrs),
    .label = binary_label};
KILN_REGISTER const kiln_op_def kiln_op_binary_backward = {
    .name = "binary_backward",
    .cpu = kiln_cpu_binary_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_binary_backward),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_binary_attrs),
    .label = binary_label};
KILN_REGISTER const kiln_op_def kiln_op_where = {
    .name = "where",
    .cpu = kiln_cpu_where,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_where),
    .backward = where_bw};
/* copy is differentiable so that contiguous() and copies of views pass gradients */
KILN_REGISTER const kiln_op_def kiln_op_copy = {
    .name = "copy",
    .cpu = kiln_cpu_copy,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_copy),
    .backward = copy_bw};
KILN_REGISTER const kiln_op_def kiln_op_fill = {
    .name = "fill",
    .cpu = kiln_cpu_fill,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_fill),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_fill_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_rand = {
    .name = "rand",
    .cpu = kiln_cpu_rand,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_rand),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_rand_attrs)};

static const char *const unary_names[KILN_UNARY_COUNT] = {
    "neg", "exp", "log", "sqrt", "abs", "pow", "clamp", "relu", "leaky_relu", "sigmoid", "tanh", "add_scalar",
    "mul_scalar", "hardswish"};
static const char *const binary_names[KILN_BINARY_COUNT] = {"add", "sub", "mul", "div", "maximum", "minimum"};

static const char *unary_label(const void *attrs) {
    int k = ((const kiln_unary_attrs *)attrs)->kind;
    return k >= 0 && k < KILN_UNARY_COUNT ? unary_names[k] : "unary";
}
static const char *binary_label(const void *attrs) {
    int k = ((const kiln_binary_attrs *)attrs)->kind;
    return k >= 0 && k < KILN_BINARY_COUNT ? binary_names[k] : "binary";
}

/* ---- unary -------------------------------------------------------------------- */

static kiln_tensor *unary(int kind, kiln_tensor *a, double p0, double p1) {
    if (!kiln__check_float_inputs(unary_names[kind], 1, &a)) return NULL;
    kiln_unary_attrs at = {kind, p0, p1};
    return kiln__run(&kiln_op_unary, 1, &a, kiln__new_like(a), &at);
}

static void unary_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    kiln_tensor *in[3] = {g, n->inputs[0], n->output ? n->output : n->inputs[0]};
    gin[0] = kiln__run(&kiln_op_unary_backward, 3, in, kiln__new_like(n->inputs[0]), n->attrs);
}

kiln_tensor *kiln_neg(kiln_tensor *a) { return unary(KILN_UNARY_NEG, a, 0, 0); }
kiln_tensor *kiln_exp(kiln_tensor *a) { return unary(KILN_UNARY_EXP, a, 0, 0); }
kiln_tensor *kiln_log(kiln_tensor *a) { return unary(KILN_UNARY_LOG, a, 0, 0); }
kiln_tensor *kiln_sqrt(kiln_tensor *a) { return unary(KILN_UNARY_SQRT, a, 0, 0); }
kiln_tensor *kiln_abs(kiln_tensor *a) { return unary(KILN_UNARY_ABS, a, 0, 0); }
kiln_tensor *kiln_pow_scalar(kiln_tensor *a, double e) { return unary(KILN_UNARY_POW, a, e, 0); }
kiln_tensor *kiln_relu(kiln_tensor *a) { return unary(KILN_UNARY_RELU, a, 0, 0); }
kiln_tensor *kiln_leaky_relu(kiln_tensor *a, double s) { return unary(KILN_UNARY_LEAKY_RELU, a, s, 0); }
kiln_tensor *kiln_sigmoid(kiln_tensor *a) { return unary(KILN_UNARY_SIGMOID, a, 0, 0); }
kiln_tensor *kiln_tanh(kiln_tensor *a) { return unary(KILN_UNARY_TANH, a, 0, 0); }
kiln_tensor *kiln_hardswish(kiln_tensor *a) { return unary(KILN_UNARY_HARDSWISH, a, 0, 0); }
kiln_tensor *kiln_add_scalar(kiln_tensor *a, double s) { return unary(KILN_UNARY_ADD_SCALAR, a, s, 0); }
kiln_tensor *kiln_mul_scalar(kiln_tensor *a, double s) { return unary(KILN_UNARY_MUL_SCALAR, a, s, 0); }

/* lo > hi is not an error: as torch and ONNX, every value becomes hi (min(max(x, lo), hi)). */
kiln_tensor *kiln_clamp(kiln_tensor *a, double lo, double hi) { return unary(KILN_UNARY_CLAMP, a, lo, hi); }

/* ---- binary ------------------------------------------------------------------- */

bool kiln__broadcast_shape(const char *op, int an, const int64_t *as, int bn, const int64_t *bs, int *outn,
                           int64_t *out) {
    int n = an > bn ? an : bn;
    for (int i = 0; i < n; i++) {
        int ia = i - (n - an), ib = i - (n - bn);
        int64_t x = ia >= 0 ? as[ia] : 1, y = ib >= 0 ? bs[ib] : 1;
        if (x != y && x != 1 && y != 1) {
            char b1[128], b2[128];
            kiln__error(KILN_STATUS_SHAPE,
                        "%s: shapes %s and %s do not broadcast (axis %d from the end: %lld vs %lld); sizes must "
                        "match or be 1",
                        op, kiln__shape_str(an, as, b1, sizeof b1), kiln__shape_str(bn, bs, b2, sizeof b2), n - i,
                        (long long)x, (long long)y);
            return false;
        }
        out[i] = x == 1 ? y : x;
    }
    *outn = n;
    return true;
}

static kiln_tensor *binary(int kind, kiln_tensor *a, kiln_tensor *b) {
    kiln_tensor *in[2] = {a, b};
    if (!kiln__check_float_inputs(binary_names[kind], 2, in)) return NULL;
    int n;
    int64_t shape[KILN_MAX_DIMS];
    if (!kiln__broadcast_shape(binary_names[kind], a->ndim, a->shape, b->ndim, b->shape, &n, shape)) return NULL;
    kiln_binary_attrs at = {kind, 0};
    return kiln__run(&kiln_op_binary, 2, in, kiln__new(n, shape, a->dtype, a->device), &at);
}

static void binary_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    const kiln_binary_attrs *at = n->attrs;
    kiln_tensor *in[3] = {g, n->inputs[0], n->inputs[1]};
    for (int side = 0; side < 2; side++) {
        if (!n->needs_grad[side]) continue;
        kiln_tensor *x = n->inputs[side];
        kiln_tensor *full;
        if (at->kind == KILN_BINARY_ADD) {
            full = g;
        } else {
            kiln_binary_attrs bat = {at->kind, side};
            full = kiln__run(&kiln_op_binary_backward, 3, in, kiln__new_like(g), &bat);
        }
        gin[side] = full ? kiln__sum_to(full, x->ndim, x->shape) : NULL;
    }
}

kiln_tensor *kiln_add(kiln_tensor *a, kiln_tensor *b) { return binary(KILN_BINARY_ADD, a, b); }
kiln_tensor *kiln_sub(kiln_tensor *a, kiln_tensor *b) { return binary(KILN_BINARY_SUB, a, b); }
kiln_tensor *kiln_mul(kiln_tensor *a, kiln_tensor *b) { return binary(KILN_BINARY_MUL, a, b); }
kiln_tensor *kiln_div(kiln_tensor *a, kiln_tensor *b) { return binary(KILN_BINARY_DIV, a, b); }
kiln_tensor *kiln_maximum(kiln_tensor *a, kiln_tensor *b) { return binary(KILN_BINARY_MAX, a, b); }
kiln_tensor *kiln_minimum(kiln_tensor *a, kiln_tensor *b) { return binary(KILN_BINARY_MIN, a, b); }

/* ---- where --------------------------------------------------------------------- */

kiln_tensor *kiln_where(kiln_tensor *cond, kiln_tensor *a, kiln_tensor *b) {
    kiln_tensor *in[3] = {cond, a, b};
    if (!kiln__check_inputs("where", 3, in) || !kiln__check_float_inputs("where", 2, in + 1)) return NULL;
    int n1, n;
    int64_t s1[KILN_MAX_DIMS], shape[KILN_MAX_DIMS];
    if (!kiln__broadcast_shape("where", a->ndim, a->shape, b->ndim, b->shape, &n1, s1) ||
        !kiln__broadcast_shape("where", cond->ndim, cond->shape, n1, s1, &n, shape))
        return NULL;
    return kiln__run(&kiln_op_where, 3, in, kiln__new(n, shape, a->dtype, a->device), NULL);
}

static void where_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    /* A float condition may require grad (a mask computed from parameters): the
     * output is piecewise constant in it, so its gradient is zero. */
    kiln_tensor *c = n->inputs[0];
    if (n->needs_grad[0]) gin[0] = kiln_tensor_zeros(c->ndim, c->shape, c->dtype, c->device);
    kiln_tensor *zero = kiln_tensor_scalar(0.0, g->dtype, g->device);
    for (int side = 1; side <= 2; side++) {
        if (!n->needs_grad[side]) continue;
        kiln_tensor *x = n->inputs[side];
        kiln_tensor *full = side == 1 ? kiln_where(n->inputs[0], g, zero) : kiln_where(n->inputs[0], zero, g);
        gin[side] = full ? kiln__sum_to(full, x->ndim, x->shape) : NULL;
    }
}

/* ---- copies, fills, random ---------------------------------------------------------- */

static void copy_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    kiln_tensor *x = n->inputs[0];
    gin[0] = kiln__sum_to(g, x->ndim, x->shape);
}

kiln_status kiln__copy_into(kiln_tensor *dst, kiln_tensor *src) {
    kiln_tensor *in[1] = {src};
    kiln_op_call call = {&kiln_op_copy, 1, in, dst, NULL};
    kiln_kernel_fn k = kiln__kernel(&kiln_op_copy, dst->device.type);
    if (!k) return kiln__error(KILN_STATUS_DEVICE, "copy: no kernel for this device in this build");
    return k(&call);
}

kiln_status kiln__add_into(kiln_tensor *dst, kiln_tensor *src) {
    kiln_tensor *in[2] = {dst, src};
    kiln_binary_attrs at = {KILN_BINARY_ADD, 0};
    kiln_op_call call = {&kiln_op_binary, 2, in, dst, &at};
    kiln_kernel_fn k = kiln__kernel(&kiln_op_binary, dst->device.type);
    if (!k) return kiln__error(KILN_STATUS_DEVICE, "add: no kernel for this device in this build");
    return k(&call);
}

kiln_status kiln_tensor_fill(kiln_tensor *t, double value) {
    if (!t) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_fill: tensor is NULL");
    kiln_fill_attrs at = {value};
    kiln_op_call call = {&kiln_op_fill, 0, NULL, t, &at};
    kiln_kernel_fn k = kiln__kernel(&kiln_op_fill, t->device.type);
    if (!k) return kiln__error(KILN_STATUS_DEVICE, "fill: no kernel for this device in this build");
    return k(&call);
}

kiln_status kiln_tensor_copy_(kiln_tensor *dst, kiln_tensor *src) {
    kiln_tensor *in[2] = {dst, src};
    if (!kiln__check_inputs("kiln_tensor_copy_", 2, in)) return kiln_last_status();
    int n;
    int64_t shape[KILN_MAX_DIMS];
    if (!kiln__broadcast_shape("kiln_tensor_copy_", dst->ndim, dst->shape, src->ndim, src->shape, &n, shape))
        return kiln_last_status();
    if (n != dst->ndim || kiln__numel(n, shape) != kiln_tensor_numel(dst)) {
        char b1[128], b2[128];
        return kiln__error(KILN_STATUS_SHAPE, "kiln_tensor_copy_: source %s does not broadcast to destination %s",
                           kiln__shape_str(src->ndim, src->shape, b1, sizeof b1),
                           kiln__shape_str(dst->ndim, dst->shape, b2, sizeof b2));
    }
    return kiln__copy_into(dst, src);
}

static kiln_tensor *copy_op(kiln_tensor *t, kiln_dtype dt, bool record) {
    kiln_tensor *out = kiln__new(t->ndim, t->shape, dt, t->device);
    if (!record) kiln_no_grad_begin();
    kiln_tensor *r = kiln__run(&kiln_op_copy, 1, &t, out, NULL);
    if (!record) kiln_no_grad_end();
    return r;
}

kiln_tensor *kiln_tensor_contiguous(kiln_tensor *t) {
    if (!kiln__check_inputs("kiln_tensor_contiguous", 1, &t)) return NULL;
    if (kiln_tensor_is_contiguous(t)) return t;
    return copy_op(t, t->dtype, true);
}

kiln_tensor *kiln_tensor_clone(kiln_tensor *t) {
    if (!kiln__check_inputs("kiln_tensor_clone", 1, &t)) return NULL;
    return copy_op(t, t->dtype, false);
}

kiln_tensor *kiln_tensor_cast(kiln_tensor *t, kiln_dtype dt) {
    if (!kiln__check_inputs("kiln_tensor_cast", 1, &t)) return NULL;
    if ((unsigned)dt >= KILN_DTYPE_COUNT) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_cast: %d is not a kiln_dtype", (int)dt);
        return NULL;
    }
    return copy_op(t, dt, false);
}

kiln_tensor *kiln_tensor_detach(kiln_tensor *t) {
    if (!kiln__check_inputs("kiln_tensor_detach", 1, &t)) return NULL;
    return kiln__view(t, t->ndim, t->shape, t->strides, t->offset);
}

kiln_tensor *kiln_tensor_to(kiln_tensor *t, kiln_device dev) {
    if (!kiln__check_inputs("kiln_tensor_to", 1, &t)) return NULL;
    if (kiln_device_equal(t->device, dev)) return kiln_tensor_clone(t);
    kiln_tensor *c = kiln_tensor_contiguous(t);
    if (!c) return NULL;
    kiln_tensor *out = kiln__new(t->ndim, t->shape, t->dtype, dev);
    if (!out) return NULL;
    if (kiln__memcpy(kiln__ptr(out), dev, kiln__ptr(c), c->device, c->storage ? (size_t)kiln_tensor_numel(c) * kiln_dtype_size(c->dtype) : 0) != KILN_STATUS_OK) {
        kiln_tensor_free(out);
        return NULL;
    }
    return out;
}

/* ---- random ------------------------------------------------------------------------- */

static uint64_t g_seed = 0x5eed, g_offset = 0;

void kiln_manual_seed(uint64_t seed) {
    g_seed = seed;
    g_offset = 0;
}
void kiln_rng_get_state(uint64_t *seed, uint64_t *offset) {
    if (seed) *seed = g_seed;
    if (offset) *offset = g_offset;
}
void kiln_rng_set_state(uint64_t seed, uint64_t offset) {
    g_seed = seed;
    g_offset = offset;
}

static kiln_tensor *rand_tensor(const char *op, int ndim, const int64_t *shape, int normal, double a, double b,
                                kiln_dtype dt, kiln_device dev) {
    if (!kiln__is_float(dt)) {
        kiln__error(KILN_STATUS_DTYPE, "%s: dtype %s; random tensors are f32 or f64", op, kiln_dtype_name(dt));
        return NULL;
    }
    if (normal && !(b >= 0)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: std %g must be >= 0", op, b);
        return NULL;
    }
    if (!normal && !(a < b)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: lo (%g) must be below hi (%g)", op, a, b);
        return NULL;
    }
    kiln_tensor *t = kiln__new(ndim, shape, dt, dev);
    if (!t) return NULL;
    kiln_rand_attrs at = {normal, a, b, g_seed, g_offset};
    g_offset += (uint64_t)kiln_tensor_numel(t);
    kiln_no_grad_begin();
    t = kiln__run(&kiln_op_rand, 0, NULL, t, &at);
    kiln_no_grad_end();
    return t;
}

kiln_tensor *kiln_tensor_rand(int ndim, const int64_t *shape, double lo, double hi, kiln_dtype dt, kiln_device dev) {
    return rand_tensor("kiln_tensor_rand", ndim, shape, 0, lo, hi, dt, dev);
}

kiln_tensor *kiln_tensor_randn(int ndim, const int64_t *shape, double mean, double std, kiln_dtype dt,
                               kiln_device dev) {
    return rand_tensor("kiln_tensor_randn", ndim, shape, 1, mean, std, dt, dev);
}

kiln_tensor *kiln_tensor_arange(double start, double end, double step, kiln_dtype dt, kiln_device dev) {
    if (step == 0 || !isfinite(start) || !isfinite(end) || !isfinite(step) || (end - start) / step < 0) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_arange: start %g, end %g, step %g do not give a range "
                    "(step must be nonzero and point from start toward end)", start, end, step);
        return NULL;
    }
    /* Counted in double first: a count past 2^53 is not even exact, and converting one
     * past 2^63 to int64 is undefined. */
    double count = ceil((end - start) / step);
    if (!(count <= 9007199254740992.0)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_arange: start %g, end %g, step %g give %g values; "
                    "a range holds at most 2^53 (use a larger step)", start, end, step, count);
        return NULL;
    }
    int64_t n = (int64_t)count;
    kiln_tensor *d = kiln__new(1, &n, KILN_F64, KILN_CPU); /* filled in place: CPU pool memory */
    if (!d) return NULL;
    double *host = (double *)kiln__ptr(d);
    for (int64_t i = 0; i < n; i++) host[i] = start + (double)i * step;
    kiln_tensor *c = dt == KILN_F64 ? d : kiln_tensor_cast(d, dt);
    if (c != d) kiln_tensor_free(d);
    if (!c || kiln_device_equal(dev, KILN_CPU)) return c;
    kiln_tensor *r = kiln_tensor_to(c, dev);
    kiln_tensor_free(c);
    return r;
}

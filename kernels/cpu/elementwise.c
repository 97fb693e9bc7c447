/* CPU kernels for element-wise ops, copies and random fills. The math comes from
 * kernels/elementwise_math.h, shared with CUDA; these loops only walk strides. */
#include "cpu.h"
#include "../elementwise_math.h"
#include "../dtype_math.h"
#include "../philox.h"
#include "iter.h"

#define KIND_LOOP_F(T, it, BODY_EXPR) KILN_ITER_FOR_EACH(it, *(T *)p[0] = BODY_EXPR)

/* Dense operands of one shape take flat loops over typed pointers. The common kinds get
 * a loop each, with the kind a constant, so the shared math function F (kiln_unary_f32,
 * ..._f64; kernels/elementwise_math.h) inlines to its one case and the loop vectorises;
 * the arithmetic is the same function either way. */
#define UNARY_FLAT(F, o, x, n, kind, a, b)                                                            \
    switch (kind) {                                                                                   \
    case KILN_UNARY_RELU: KILN_FLAT_FOR(n, o[i] = F(KILN_UNARY_RELU, x[i], a, b)); break;             \
    case KILN_UNARY_NEG: KILN_FLAT_FOR(n, o[i] = F(KILN_UNARY_NEG, x[i], a, b)); break;               \
    case KILN_UNARY_ADD_SCALAR: KILN_FLAT_FOR(n, o[i] = F(KILN_UNARY_ADD_SCALAR, x[i], a, b)); break; \
    case KILN_UNARY_MUL_SCALAR: KILN_FLAT_FOR(n, o[i] = F(KILN_UNARY_MUL_SCALAR, x[i], a, b)); break; \
    case KILN_UNARY_LEAKY_RELU: KILN_FLAT_FOR(n, o[i] = F(KILN_UNARY_LEAKY_RELU, x[i], a, b)); break; \
    case KILN_UNARY_CLAMP: KILN_FLAT_FOR(n, o[i] = F(KILN_UNARY_CLAMP, x[i], a, b)); break;           \
    case KILN_UNARY_ABS: KILN_FLAT_FOR(n, o[i] = F(KILN_UNARY_ABS, x[i], a, b)); break;               \
    case KILN_UNARY_SQRT: KILN_FLAT_FOR(n, o[i] = F(KILN_UNARY_SQRT, x[i], a, b)); break;             \
    default: KILN_FLAT_FOR(n, o[i] = F(kind, x[i], a, b));                                            \
    }

#define UNARY_GRAD_FLAT(F, o, g, x, y, n, kind, a, b)                                            \
    switch (kind) {                                                                              \
    case KILN_UNARY_RELU:                                                                        \
        KILN_FLAT_FOR(n, o[i] = F(KILN_UNARY_RELU, g[i], x[i], y[i], a, b)); break;              \
    case KILN_UNARY_SIGMOID:                                                                     \
        KILN_FLAT_FOR(n, o[i] = F(KILN_UNARY_SIGMOID, g[i], x[i], y[i], a, b)); break;           \
    case KILN_UNARY_MUL_SCALAR:                                                                  \
        KILN_FLAT_FOR(n, o[i] = F(KILN_UNARY_MUL_SCALAR, g[i], x[i], y[i], a, b)); break;        \
    default: KILN_FLAT_FOR(n, o[i] = F(kind, g[i], x[i], y[i], a, b));                           \
    }

kiln_status kiln_cpu_unary(const kiln_op_call *call) {
    const kiln_unary_attrs *at = call->attrs;
    kiln_tensor *ops[2] = {call->out, call->in[0]};
    if (kiln_iter_flat(2, ops) && call->in[0]->dtype == call->out->dtype) {
        int64_t n = kiln_tensor_numel(call->out);
        if (call->out->dtype == KILN_F32) {
            float *o = (float *)kiln__ptr(call->out), a = (float)at->a, b = (float)at->b;
            const float *x = (const float *)kiln__ptr(call->in[0]);
            UNARY_FLAT(kiln_unary_f32, o, x, n, at->kind, a, b);
        } else {
            double *o = (double *)kiln__ptr(call->out), a = at->a, b = at->b;
            const double *x = (const double *)kiln__ptr(call->in[0]);
            UNARY_FLAT(kiln_unary_f64, o, x, n, at->kind, a, b);
        }
        return KILN_STATUS_OK;
    }
    kiln_iter it;
    kiln_iter_init(&it, 2, ops);
    if (call->out->dtype == KILN_F32) {
        float a = (float)at->a, b = (float)at->b;
        KIND_LOOP_F(float, &it, kiln_unary_f32(at->kind, *(float *)p[1], a, b));
    } else {
        KIND_LOOP_F(double, &it, kiln_unary_f64(at->kind, *(double *)p[1], at->a, at->b));
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_cpu_unary_backward(const kiln_op_call *call) {
    const kiln_unary_attrs *at = call->attrs;
    kiln_tensor *ops[4] = {call->out, call->in[0], call->in[1], call->in[2]};
    if (kiln_iter_flat(4, ops) && call->in[0]->dtype == call->out->dtype && call->in[1]->dtype == call->out->dtype &&
        call->in[2]->dtype == call->out->dtype) {
        int64_t n = kiln_tensor_numel(call->out);
        if (call->out->dtype == KILN_F32) {
            float *o = (float *)kiln__ptr(call->out), a = (float)at->a, b = (float)at->b;
            const float *g = (const float *)kiln__ptr(call->in[0]), *x = (const float *)kiln__ptr(call->in[1]),
                        *y = (const float *)kiln__ptr(call->in[2]);
            UNARY_GRAD_FLAT(kiln_unary_grad_f32, o, g, x, y, n, at->kind, a, b);
        } else {
            double *o = (double *)kiln__ptr(call->out), a = at->a, b = at->b;
            const double *g = (const double *)kiln__ptr(call->in[0]), *x = (const double *)kiln__ptr(call->in[1]),
                         *y = (const double *)kiln__ptr(call->in[2]);
            UNARY_GRAD_FLAT(kiln_unary_grad_f64, o, g, x, y, n, at->kind, a, b);
        }
        return KILN_STATUS_OK;
    }
    kiln_iter it;
    kiln_iter_init(&it, 4, ops);
    if (call->out->dtype == KILN_F32) {
        float a = (float)at->a, b = (float)at->b;
        KIND_LOOP_F(float, &it,
                    kiln_unary_grad_f32(at->kind, *(float *)p[1], *(float *)p[2], *(float *)p[3], a, b));
    } else {
        KIND_LOOP_F(double, &it,
                    kiln_unary_grad_f64(at->kind, *(double *)p[1], *(double *)p[2], *(double *)p[3], at->a, at->b));
    }
    return KILN_STATUS_OK;
}

#define BINARY_FLAT(F, o, x, y, n, kind)                                                  \
    switch (kind) {                                                                       \
    case KILN_BINARY_ADD: KILN_FLAT_FOR(n, o[i] = F(KILN_BINARY_ADD, x[i], y[i])); break; \
    case KILN_BINARY_SUB: KILN_FLAT_FOR(n, o[i] = F(KILN_BINARY_SUB, x[i], y[i])); break; \
    case KILN_BINARY_MUL: KILN_FLAT_FOR(n, o[i] = F(KILN_BINARY_MUL, x[i], y[i])); break; \
    case KILN_BINARY_DIV: KILN_FLAT_FOR(n, o[i] = F(KILN_BINARY_DIV, x[i], y[i])); break; \
    default: KILN_FLAT_FOR(n, o[i] = F(kind, x[i], y[i]));                                \
    }

kiln_status kiln_cpu_binary(const kiln_op_call *call) {
    const kiln_binary_attrs *at = call->attrs;
    kiln_tensor *ops[3] = {call->out, call->in[0], call->in[1]};
    if (kiln_iter_flat(3, ops) && call->in[0]->dtype == call->out->dtype && call->in[1]->dtype == call->out->dtype) {
        int64_t n = kiln_tensor_numel(call->out);
        if (call->out->dtype == KILN_F32) {
            float *o = (float *)kiln__ptr(call->out);
            const float *x = (const float *)kiln__ptr(call->in[0]), *y = (const float *)kiln__ptr(call->in[1]);
            BINARY_FLAT(kiln_binary_f32, o, x, y, n, at->kind);
        } else {
            double *o = (double *)kiln__ptr(call->out);
            const double *x = (const double *)kiln__ptr(call->in[0]), *y = (const double *)kiln__ptr(call->in[1]);
            BINARY_FLAT(kiln_binary_f64, o, x, y, n, at->kind);
        }
        return KILN_STATUS_OK;
    }
    kiln_iter it;
    kiln_iter_init(&it, 3, ops);
    if (call->out->dtype == KILN_F32) {
        switch (at->kind) { /* hoisted so the common ops vectorise */
        case KILN_BINARY_ADD: KIND_LOOP_F(float, &it, *(float *)p[1] + *(float *)p[2]); break;
        case KILN_BINARY_MUL: KIND_LOOP_F(float, &it, *(float *)p[1] * *(float *)p[2]); break;
        default: KIND_LOOP_F(float, &it, kiln_binary_f32(at->kind, *(float *)p[1], *(float *)p[2]));
        }
    } else {
        KIND_LOOP_F(double, &it, kiln_binary_f64(at->kind, *(double *)p[1], *(double *)p[2]));
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_cpu_binary_backward(const kiln_op_call *call) {
    const kiln_binary_attrs *at = call->attrs;
    kiln_tensor *ops[4] = {call->out, call->in[0], call->in[1], call->in[2]};
    kiln_iter it;
    kiln_iter_init(&it, 4, ops);
    if (call->out->dtype == KILN_F32) {
        KIND_LOOP_F(float, &it,
                    kiln_binary_grad_f32(at->kind, at->side, *(float *)p[1], *(float *)p[2], *(float *)p[3]));
    } else {
        KIND_LOOP_F(double, &it,
                    kiln_binary_grad_f64(at->kind, at->side, *(double *)p[1], *(double *)p[2], *(double *)p[3]));
    }
    return KILN_STATUS_OK;
}

static inline int truth(const char *p, kiln_dtype dt) {
    switch (dt) {
    case KILN_F32: return *(const float *)p != 0;
    case KILN_F64: return *(const double *)p != 0;
    case KILN_I32: return *(const int32_t *)p != 0;
    case KILN_I64: return *(const int64_t *)p != 0;
    case KILN_U8: return *(const uint8_t *)p != 0;
    default: return (*(const uint16_t *)p & 0x7fff) != 0; /* f16/bf16: nonzero but for ±0 */
    }
}

kiln_status kiln_cpu_where(const kiln_op_call *call) {
    kiln_tensor *ops[4] = {call->out, call->in[0], call->in[1], call->in[2]};
    kiln_dtype cdt = call->in[0]->dtype;
    kiln_iter it;
    kiln_iter_init(&it, 4, ops);
    if (call->out->dtype == KILN_F32)
        KIND_LOOP_F(float, &it, truth(p[1], cdt) ? *(float *)p[2] : *(float *)p[3]);
    else
        KIND_LOOP_F(double, &it, truth(p[1], cdt) ? *(double *)p[2] : *(double *)p[3]);
    return KILN_STATUS_OK;
}

/* Conversions: kernels/dtype_math.h, shared with the CUDA copy kernel. */
static inline double load(const char *p, kiln_dtype dt) { return kiln_load_as_double(p, dt); }
static inline void store(char *p, kiln_dtype dt, double v) { kiln_store_from_double(p, dt, v); }

kiln_status kiln_cpu_copy(const kiln_op_call *call) {
    kiln_tensor *ops[2] = {call->out, call->in[0]};
    kiln_dtype od = call->out->dtype, id = call->in[0]->dtype;
    kiln_iter it;
    kiln_iter_init(&it, 2, ops);
    if (od == id && kiln_iter_flat(2, ops)) { /* one memcpy: memory-bound either way */
        memcpy(kiln__ptr(call->out), kiln__ptr(call->in[0]), (size_t)kiln_tensor_numel(call->out) * kiln_dtype_size(od));
        return KILN_STATUS_OK;
    }
    if (od == id) {
        size_t es = kiln_dtype_size(od);
        if (kiln_iter_copy_rows(&it, es)) return KILN_STATUS_OK;
        switch (es) {
        case 1: KILN_ITER_FOR_EACH(&it, *(uint8_t *)p[0] = *(uint8_t *)p[1]); break;
        case 2: KILN_ITER_FOR_EACH(&it, *(uint16_t *)p[0] = *(uint16_t *)p[1]); break;
        case 4: KILN_ITER_FOR_EACH(&it, *(uint32_t *)p[0] = *(uint32_t *)p[1]); break;
        default: KILN_ITER_FOR_EACH(&it, *(uint64_t *)p[0] = *(uint64_t *)p[1]); break;
        }
    } else {
        KILN_ITER_FOR_EACH(&it, store(p[0], od, load(p[1], id)));
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_cpu_fill(const kiln_op_call *call) {
    const kiln_fill_attrs *at = call->attrs;
    kiln_tensor *ops[1] = {call->out};
    kiln_iter it;
    kiln_iter_init(&it, 1, ops);
    kiln_dtype dt = call->out->dtype;
    char v[8];
    store(v, dt, at->value);
    size_t es = kiln_dtype_size(dt);
    if (kiln_tensor_is_contiguous(call->out) && (dt == KILN_F32 || dt == KILN_F64)) {
        int64_t n = kiln_tensor_numel(call->out);
        if (dt == KILN_F32) {
            float *o = (float *)kiln__ptr(call->out), f;
            memcpy(&f, v, sizeof f);
            KILN_FLAT_FOR(n, o[i] = f);
        } else {
            double *o = (double *)kiln__ptr(call->out), d;
            memcpy(&d, v, sizeof d);
            KILN_FLAT_FOR(n, o[i] = d);
        }
        return KILN_STATUS_OK;
    }
    KILN_ITER_FOR_EACH(&it, memcpy(p[0], v, es));
    return KILN_STATUS_OK;
}

/* Element i of the output draws from Philox counter (offset + i): the same number
 * for the same (seed, offset, i) on every device, whatever the launch shape. */
kiln_status kiln_cpu_rand(const kiln_op_call *call) {
    const kiln_rand_attrs *at = call->attrs;
    kiln_tensor *out = call->out;
    int64_t n = kiln_tensor_numel(out);
    if (out->dtype == KILN_F32) {
        float *o = (float *)kiln__ptr(out);
#pragma omp parallel for if (n > 65536)
        for (int64_t i = 0; i < n; i++) {
            float v = (float)kiln_philox_sample(at->seed, at->offset + (uint64_t)i, at->normal, at->a, at->b);
            /* rounding to float must not reach the open upper bound */
            if (!at->normal && v >= (float)at->b) v = nextafterf((float)at->b, -INFINITY);
            o[i] = v;
        }
    } else {
        double *o = (double *)kiln__ptr(out);
#pragma omp parallel for if (n > 65536)
        for (int64_t i = 0; i < n; i++) o[i] = kiln_philox_sample(at->seed, at->offset + (uint64_t)i, at->normal, at->a, at->b);
    }
    return KILN_STATUS_OK;
}

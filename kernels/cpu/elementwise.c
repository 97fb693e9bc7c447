/* CPU kernels for element-wise ops, copies and random fills. The math comes from
 * kernels/elementwise_math.h, shared with CUDA; these loops only walk strides. */
#include "cpu.h"
#include "../elementwise_math.h"
#include "../dtype_math.h"
#include "../philox.h"
#include "iter.h"

#define KIND_LOOP_F(T, SFX, it, BODY_EXPR) KILN_ITER_FOR_EACH(it, *(T *)p[0] = BODY_EXPR)

KILN_CPU_KERNEL(unary) {
    const kiln_unary_attrs *at = call->attrs;
    kiln_tensor *ops[2] = {call->out, call->in[0]};
    kiln_iter it;
    kiln_iter_init(&it, 2, ops);
    if (call->out->dtype == KILN_F32) {
        float a = (float)at->a, b = (float)at->b;
        KIND_LOOP_F(float, f32, &it, kiln_unary_f32(at->kind, *(float *)p[1], a, b));
    } else {
        KIND_LOOP_F(double, f64, &it, kiln_unary_f64(at->kind, *(double *)p[1], at->a, at->b));
    }
    return KILN_STATUS_OK;
}

KILN_CPU_KERNEL(unary_backward) {
    const kiln_unary_attrs *at = call->attrs;
    kiln_tensor *ops[4] = {call->out, call->in[0], call->in[1], call->in[2]};
    kiln_iter it;
    kiln_iter_init(&it, 4, ops);
    if (call->out->dtype == KILN_F32) {
        float a = (float)at->a, b = (float)at->b;
        KIND_LOOP_F(float, f32, &it,
                    kiln_unary_grad_f32(at->kind, *(float *)p[1], *(float *)p[2], *(float *)p[3], a, b));
    } else {
        KIND_LOOP_F(double, f64, &it,
                    kiln_unary_grad_f64(at->kind, *(double *)p[1], *(double *)p[2], *(double *)p[3], at->a, at->b));
    }
    return KILN_STATUS_OK;
}

KILN_CPU_KERNEL(binary) {
    const kiln_binary_attrs *at = call->attrs;
    kiln_tensor *ops[3] = {call->out, call->in[0], call->in[1]};
    kiln_iter it;
    kiln_iter_init(&it, 3, ops);
    if (call->out->dtype == KILN_F32) {
        switch (at->kind) { /* hoisted so the common ops vectorise */
        case KILN_BINARY_ADD: KIND_LOOP_F(float, f32, &it, *(float *)p[1] + *(float *)p[2]); break;
        case KILN_BINARY_MUL: KIND_LOOP_F(float, f32, &it, *(float *)p[1] * *(float *)p[2]); break;
        default: KIND_LOOP_F(float, f32, &it, kiln_binary_f32(at->kind, *(float *)p[1], *(float *)p[2]));
        }
    } else {
        KIND_LOOP_F(double, f64, &it, kiln_binary_f64(at->kind, *(double *)p[1], *(double *)p[2]));
    }
    return KILN_STATUS_OK;
}

KILN_CPU_KERNEL(binary_backward) {
    const kiln_binary_attrs *at = call->attrs;
    kiln_tensor *ops[4] = {call->out, call->in[0], call->in[1], call->in[2]};
    kiln_iter it;
    kiln_iter_init(&it, 4, ops);
    if (call->out->dtype == KILN_F32) {
        KIND_LOOP_F(float, f32, &it,
                    kiln_binary_grad_f32(at->kind, at->side, *(float *)p[1], *(float *)p[2], *(float *)p[3]));
    } else {
        KIND_LOOP_F(double, f64, &it,
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

KILN_CPU_KERNEL(where) {
    kiln_tensor *ops[4] = {call->out, call->in[0], call->in[1], call->in[2]};
    kiln_dtype cdt = call->in[0]->dtype;
    kiln_iter it;
    kiln_iter_init(&it, 4, ops);
    if (call->out->dtype == KILN_F32)
        KIND_LOOP_F(float, f32, &it, truth(p[1], cdt) ? *(float *)p[2] : *(float *)p[3]);
    else
        KIND_LOOP_F(double, f64, &it, truth(p[1], cdt) ? *(double *)p[2] : *(double *)p[3]);
    return KILN_STATUS_OK;
}

/* Conversions: kernels/dtype_math.h, shared with the CUDA copy kernel. */
static inline double load(const char *p, kiln_dtype dt) { return kiln_load_as_double(p, dt); }
static inline void store(char *p, kiln_dtype dt, double v) { kiln_store_from_double(p, dt, v); }

KILN_CPU_KERNEL(copy) {
    kiln_tensor *ops[2] = {call->out, call->in[0]};
    kiln_dtype od = call->out->dtype, id = call->in[0]->dtype;
    kiln_iter it;
    kiln_iter_init(&it, 2, ops);
    if (od == id) {
        size_t es = kiln_dtype_size(od);
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

KILN_CPU_KERNEL(fill) {
    const kiln_fill_attrs *at = call->attrs;
    kiln_tensor *ops[1] = {call->out};
    kiln_iter it;
    kiln_iter_init(&it, 1, ops);
    kiln_dtype dt = call->out->dtype;
    char v[8];
    store(v, dt, at->value);
    size_t es = kiln_dtype_size(dt);
    KILN_ITER_FOR_EACH(&it, memcpy(p[0], v, es));
    return KILN_STATUS_OK;
}

/* Element i of the output draws from Philox counter (offset + i): the same number
 * for the same (seed, offset, i) on every device, whatever the launch shape. */
KILN_CPU_KERNEL(rand) {
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

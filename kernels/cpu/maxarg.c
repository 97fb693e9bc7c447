/* CPU kernels of max and argmax over one axis: argmax scans, max gathers at the
 * indices argmax found (so values and indices always agree), max_backward
 * scatters the gradient there. Also the axis walker the axis ops share. */
#include "tensor_ops.h"

#include <math.h>

void kiln_axis_iter_init(kiln_axis_iter *ai, int nops, kiln_tensor *const *ops, int axis) {
    kiln_tensor fake[KILN_ITER_MAX_OPS];
    kiln_tensor *fp[KILN_ITER_MAX_OPS];
    ai->len = 0;
    for (int k = 0; k < nops; k++) {
        fake[k] = *ops[k]; /* header copy: same storage and strides, axis collapsed */
        int64_t n = ops[k]->shape[axis];
        ai->astride[k] = n > 1 ? ops[k]->strides[axis] : 0;
        if (n > ai->len) ai->len = n;
        fake[k].shape[axis] = 1;
        fp[k] = &fake[k];
    }
    kiln_iter_init(&ai->it, nops, fp);
}

/* First maximal element; the first NaN wins, as in torch. */
#define ARGMAX_LOOP(T)                                                        \
    do {                                                                      \
        _Pragma("omp parallel for schedule(static) if (cnt > 1 && cnt * ai.len > 32768)") \
        for (int64_t i = 0; i < cnt; i++) {                                   \
            char *p[2];                                                       \
            kiln_axis_iter_at(&ai, i, p);                                     \
            const char *q = p[1];                                             \
            T best = *(const T *)q;                                           \
            int64_t at = 0;                                                   \
            if (!isnan(best)) {                                               \
                for (int64_t j = 1; j < ai.len; j++) {                        \
                    q += ai.astride[1];                                       \
                    T v = *(const T *)q;                                      \
                    if (isnan(v)) { at = j; break; }                          \
                    if (v > best) { best = v; at = j; }                       \
                }                                                             \
            }                                                                 \
            *(int64_t *)p[0] = at;                                            \
        }                                                                     \
    } while (0)

kiln_status kiln_cpu_argmax(const kiln_op_call *call) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_tensor *ops[2] = {call->out, call->in[0]};
    kiln_axis_iter ai;
    kiln_axis_iter_init(&ai, 2, ops, at->axis);
    int64_t cnt = kiln_axis_iter_count(&ai);
    if (ai.len == 0) return cnt ? kiln__error(KILN_STATUS_SHAPE, "argmax: the reduced axis is empty") : KILN_STATUS_OK;
    if (call->in[0]->dtype == KILN_F32) ARGMAX_LOOP(float);
    else ARGMAX_LOOP(double);
    return KILN_STATUS_OK;
}

kiln_status kiln_cpu_max(const kiln_op_call *call) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_tensor *ops[3] = {call->out, call->in[0], call->in[1]};
    kiln_axis_iter ai;
    kiln_axis_iter_init(&ai, 3, ops, at->axis);
    int64_t cnt = kiln_axis_iter_count(&ai);
    size_t es = kiln_dtype_size(call->out->dtype);
#pragma omp parallel for schedule(static) if (cnt > 32768)
    for (int64_t i = 0; i < cnt; i++) {
        char *p[3];
        kiln_axis_iter_at(&ai, i, p);
        memcpy(p[0], p[1] + *(const int64_t *)p[2] * ai.astride[1], es);
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_cpu_max_backward(const kiln_op_call *call) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_tensor *out = call->out;
    size_t es = kiln_dtype_size(out->dtype);
    /* out is fresh and contiguous: zero it whole, then place each gradient */
    memset(kiln__ptr(out), 0, (size_t)kiln_tensor_numel(out) * es);
    kiln_tensor *ops[3] = {out, call->in[0], call->in[1]};
    kiln_axis_iter ai;
    kiln_axis_iter_init(&ai, 3, ops, at->axis);
    int64_t cnt = kiln_axis_iter_count(&ai);
#pragma omp parallel for schedule(static) if (cnt > 32768)
    for (int64_t i = 0; i < cnt; i++) {
        char *p[3];
        kiln_axis_iter_at(&ai, i, p);
        memcpy(p[0] + *(const int64_t *)p[2] * ai.astride[0], p[1], es);
    }
    return KILN_STATUS_OK;
}

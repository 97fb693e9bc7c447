/* CPU reductions. Each output element walks its reduced sub-space with an odometer
 * (no divisions in the hot loop) and accumulates in double, so f32 sums do not
 * drift with length; output elements are split over threads. */
#include "cpu.h"
#include "isa.h"

/* Splits the axes of `in` into kept and reduced ones (out has the keepdim shape). */
typedef struct {
    int nk, nr;
    int64_t kshape[KILN_MAX_DIMS], kin[KILN_MAX_DIMS], kout[KILN_MAX_DIMS];
    int64_t rshape[KILN_MAX_DIMS], rin[KILN_MAX_DIMS];
    int64_t nout, nred;
} reduce_plan;

static void plan(reduce_plan *p, const kiln_tensor *in, const kiln_tensor *out, uint32_t mask) {
    p->nk = p->nr = 0;
    p->nout = p->nred = 1;
    for (int i = 0; i < in->ndim; i++) {
        if (mask & (1u << i)) {
            p->rshape[p->nr] = in->shape[i];
            p->rin[p->nr++] = in->strides[i];
            p->nred *= in->shape[i];
        } else {
            p->kshape[p->nk] = in->shape[i];
            p->kin[p->nk] = in->strides[i];
            p->kout[p->nk++] = out->strides[i];
            p->nout *= in->shape[i];
        }
    }
}

/* float32 runs of 16 or more contiguous elements (a conv bias gradient's rows) are summed
 * in eight double lanes (isa.h): vectorised, the same bits in every clone */
static KILN_ALWAYS_INLINE void sum_row(const float *p, int64_t n, double *lanes) { kiln_lanes_add(lanes, p, n); }
KILN_ISA_DEFINE(sum_row_base, sum_row_avx2, sum_row_avx512, (const float *p, int64_t n, double *lanes),
                sum_row(p, n, lanes))

#define SUM_KERNEL(T)                                                                          \
    do {                                                                                       \
        _Pragma("omp parallel for schedule(static) if (p.nout > 1 && p.nout * p.nred > 32768)") \
        for (int64_t o = 0; o < p.nout; o++) {                                                 \
            const char *ip = base_in;                                                          \
            char *op = base_out;                                                               \
            int64_t rem = o;                                                                   \
            for (int d = p.nk - 1; d >= 0; d--) {                                              \
                int64_t i = rem % p.kshape[d];                                                 \
                rem /= p.kshape[d];                                                            \
                ip += i * p.kin[d];                                                            \
                op += i * p.kout[d];                                                           \
            }                                                                                  \
            double acc = 0;                                                                    \
            int64_t idx[KILN_MAX_DIMS] = {0};                                                  \
            const char *rp = ip;                                                               \
            int64_t inner = p.nr ? p.rshape[p.nr - 1] : 1, istride = p.nr ? p.rin[p.nr - 1] : 0; \
            double lanes[8] = {0};                                                             \
            const bool rows = sizeof(T) == 4 && istride == 4 && inner >= 16;                   \
            for (int64_t r = 0; r < p.nred; r += inner) {                                      \
                const char *q = rp;                                                            \
                if (rows) row_sum((const float *)q, inner, lanes);                             \
                else                                                                           \
                    for (int64_t j = 0; j < inner; j++, q += istride) acc += *(const T *)q;    \
                /* advance the odometer over the outer reduced axes */                         \
                for (int d = p.nr - 2; d >= 0; d--) {                                          \
                    rp += p.rin[d];                                                            \
                    if (++idx[d] < p.rshape[d]) break;                                         \
                    rp -= p.rin[d] * p.rshape[d];                                              \
                    idx[d] = 0;                                                                \
                }                                                                              \
            }                                                                                  \
            if (rows) acc = kiln_lanes_total(lanes);                                           \
            *(T *)op = (T)acc;                                                                 \
        }                                                                                      \
    } while (0)

kiln_status kiln_cpu_sum(const kiln_op_call *call) {
    const kiln_reduce_attrs *at = call->attrs;
    const kiln_tensor *in = call->in[0];
    kiln_tensor *out = call->out;
    reduce_plan p;
    plan(&p, in, out, at->mask);
    const char *base_in = kiln__ptr(in);
    char *base_out = kiln__ptr(out);
    if (p.nout == 1 && kiln_tensor_is_contiguous(in) && p.nred > 65536) {
        /* whole contiguous tensor: split the one sum over threads */
        double acc = 0;
        int64_t n = p.nred;
        if (in->dtype == KILN_F32) {
            const float *x = (const float *)base_in;
#pragma omp parallel for reduction(+ : acc)
            for (int64_t i = 0; i < n; i++) acc += x[i];
            *(float *)base_out = (float)acc;
        } else {
            const double *x = (const double *)base_in;
#pragma omp parallel for reduction(+ : acc)
            for (int64_t i = 0; i < n; i++) acc += x[i];
            *(double *)base_out = acc;
        }
        return KILN_STATUS_OK;
    }
    void (*row_sum)(const float *, int64_t, double *) = KILN_ISA_SELECT(sum_row_base, sum_row_avx2, sum_row_avx512);
    if (in->dtype == KILN_F32) SUM_KERNEL(float);
    else SUM_KERNEL(double);
    return KILN_STATUS_OK;
}

/* CPU softmax and log_softmax over one axis, forward and backward, in place on
 * the strides: the channel axis of NCHW runs as is, no permute to NHWC. Lines are
 * processed a block of neighbouring positions at a time when the axis is not the
 * innermost one, so each step along the axis reads a contiguous run; f32 sums
 * accumulate in double. Subtracting the max keeps exp from overflowing. */
#include "tensor_ops.h"

#include <math.h>
#include <stdlib.h>

#define BLOCK 32

typedef struct {
    kiln_axis_iter ai;
    int64_t rows, inner, nblk, block; /* kept positions = rows x inner, inner in blocks */
    int64_t istride[KILN_ITER_MAX_OPS]; /* bytes between neighbouring kept positions */
} line_plan;

/* The layout of ops[lead] picks the block width. */
static void plan_lines(line_plan *lp, int nops, kiln_tensor *const *ops, int axis, int lead) {
    kiln_axis_iter_init(&lp->ai, nops, ops, axis);
    const kiln_iter *it = &lp->ai.it;
    lp->inner = it->shape[it->ndim - 1];
    lp->rows = kiln_iter_rows(it);
    for (int k = 0; k < nops; k++) lp->istride[k] = it->strides[k][it->ndim - 1];
    int64_t as = llabs(lp->ai.astride[lead]), is = llabs(lp->istride[lead]);
    /* axis innermost in memory: walk one line at a time, it is contiguous already */
    lp->block = (as <= is || lp->inner == 1) ? 1 : BLOCK;
    lp->nblk = (lp->inner + lp->block - 1) / lp->block;
}

/* Pointers of block u (row u / nblk, block u % nblk) and its width. */
static inline int64_t block_at(const line_plan *lp, int64_t u, char **p) {
    int64_t r = u / lp->nblk, b = u % lp->nblk;
    kiln_iter_row(&lp->ai.it, r, p);
    for (int k = 0; k < lp->ai.it.nops; k++) p[k] += b * lp->block * lp->istride[k];
    int64_t w = lp->inner - b * lp->block;
    return w < lp->block ? w : lp->block;
}

/* Running max that lets NaN through: NaN in, NaN out, as torch. */
static inline double nanmax(double a, double b) { return (a >= b || isnan(a)) ? a : b; }

#define AT(k, c, j) (p[k] + (c) * lp->ai.astride[k] + (j) * lp->istride[k])

/* One block of w lines of dtype T, forward (FWD) and backward (BWD). Forward: p[0] = y,
 * p[1] = x. Backward: p[0] = dx, p[1] = g, p[2] = y, with softmax dx = y * (g - sum(g * y))
 * and log_softmax dx = g - exp(y) * sum(g). */
#define DEFINE_BLOCKS(T, FWD, BWD)                                                             \
    static void FWD(const line_plan *lp, char **p, int64_t w, int log_) {                      \
        double m[BLOCK], s[BLOCK];                                                             \
        int64_t L = lp->ai.len;                                                                \
        for (int64_t j = 0; j < w; j++) {                                                      \
            m[j] = -INFINITY;                                                                  \
            s[j] = 0;                                                                          \
        }                                                                                      \
        for (int64_t c = 0; c < L; c++)                                                        \
            for (int64_t j = 0; j < w; j++) m[j] = nanmax(m[j], *(const T *)AT(1, c, j));      \
        for (int64_t c = 0; c < L; c++)                                                        \
            for (int64_t j = 0; j < w; j++) {                                                  \
                double e = exp((double)*(const T *)AT(1, c, j) - m[j]);                        \
                s[j] += e;                                                                     \
                if (!log_) *(T *)AT(0, c, j) = (T)e;                                           \
            }                                                                                  \
        /* log_softmax = (x - max) - log(sum): x - max is exact where it matters, and          \
         * x - (max + log(sum)) loses log(sum) to max's rounding (all of it above 2^53) */     \
        for (int64_t j = 0; j < w; j++) s[j] = log_ ? log(s[j]) : 1.0 / s[j];                  \
        for (int64_t c = 0; c < L; c++)                                                        \
            for (int64_t j = 0; j < w; j++) {                                                  \
                T *o = (T *)AT(0, c, j);                                                       \
                *o = log_ ? (T)(((double)*(const T *)AT(1, c, j) - m[j]) - s[j])               \
                          : (T)((double)*o * s[j]);                                            \
            }                                                                                  \
    }                                                                                          \
    static void BWD(const line_plan *lp, char **p, int64_t w, int log_) {                      \
        double s[BLOCK];                                                                       \
        int64_t L = lp->ai.len;                                                                \
        for (int64_t j = 0; j < w; j++) s[j] = 0;                                              \
        for (int64_t c = 0; c < L; c++)                                                        \
            for (int64_t j = 0; j < w; j++) {                                                  \
                double g = *(const T *)AT(1, c, j);                                            \
                s[j] += log_ ? g : g * (double)*(const T *)AT(2, c, j);                        \
            }                                                                                  \
        for (int64_t c = 0; c < L; c++)                                                        \
            for (int64_t j = 0; j < w; j++) {                                                  \
                double g = *(const T *)AT(1, c, j), y = *(const T *)AT(2, c, j);               \
                *(T *)AT(0, c, j) = (T)(log_ ? g - exp(y) * s[j] : y * (g - s[j]));            \
            }                                                                                  \
    }

DEFINE_BLOCKS(float, fwd_f32, bwd_f32)
DEFINE_BLOCKS(double, fwd_f64, bwd_f64)

typedef void (*block_fn)(const line_plan *lp, char **p, int64_t w, int log_);

/* Runs fn over every block; blocks are independent, so they split over threads. */
static kiln_status run_blocks(int nops, kiln_tensor *const *ops, int axis, int lead, block_fn fn, int log_) {
    line_plan lp;
    plan_lines(&lp, nops, ops, axis, lead);
    if (lp.ai.len == 0 || lp.rows * lp.inner == 0) return KILN_STATUS_OK;
    int64_t units = lp.rows * lp.nblk;
#pragma omp parallel for schedule(static) if (units > 1 && units * lp.block * lp.ai.len > 32768)
    for (int64_t u = 0; u < units; u++) {
        char *p[KILN_ITER_MAX_OPS];
        int64_t w = block_at(&lp, u, p);
        fn(&lp, p, w, log_);
    }
    return KILN_STATUS_OK;
}

static kiln_status forward(const kiln_op_call *call, int log_) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_tensor *ops[2] = {call->out, call->in[0]};
    return run_blocks(2, ops, at->axis, 1, call->out->dtype == KILN_F32 ? fwd_f32 : fwd_f64, log_);
}

static kiln_status backward(const kiln_op_call *call, int log_) {
    const kiln_axis_attrs *at = call->attrs;
    /* y leads the layout choice: g is often an expanded (stride 0) view */
    kiln_tensor *ops[3] = {call->out, call->in[0], call->in[1]};
    return run_blocks(3, ops, at->axis, 2, call->out->dtype == KILN_F32 ? bwd_f32 : bwd_f64, log_);
}

kiln_status kiln_cpu_softmax(const kiln_op_call *call) { return forward(call, 0); }
kiln_status kiln_cpu_log_softmax(const kiln_op_call *call) { return forward(call, 1); }
kiln_status kiln_cpu_softmax_backward(const kiln_op_call *call) { return backward(call, 0); }
kiln_status kiln_cpu_log_softmax_backward(const kiln_op_call *call) { return backward(call, 1); }

/* CPU kernels of bce and bce_with_logits, forward and backward, each one fused
 * pass. Operands share the input's shape (weights arrive as stride-0 views), so
 * one strided walk serves all; sums accumulate in double, rows split over threads.
 * f32 bce_with_logits computes in float with kernels/fast_math.h (losses_math.h). */
#include "losses.h"
#include "isa.h"
#include "iter.h"

#define WALK_MAX_OPS 6

/* A strided walk over the input's shape for up to 6 operands; absent operands
 * (NULL) read a dummy with stride 0 and must be skipped by the caller. */
typedef struct {
    int nops;
    int64_t rows, inner;
    int nd;
    int64_t shape[KILN_MAX_DIMS];
    int64_t st[WALK_MAX_OPS][KILN_MAX_DIMS];
    char *base[WALK_MAX_OPS];
} walk;

static double g_dummy;

static void walk_init(walk *w, const kiln_tensor *like, int nops, kiln_tensor *const *ops) {
    w->nops = nops;
    w->nd = like->ndim;
    for (int d = 0; d < like->ndim; d++) w->shape[d] = like->shape[d];
    for (int k = 0; k < nops; k++) {
        if (ops[k]) {
            kiln_iter_broadcast_strides(ops[k], like->ndim, like->shape, w->st[k]);
            w->base[k] = kiln__ptr(ops[k]);
        } else {
            for (int d = 0; d < like->ndim; d++) w->st[k][d] = 0;
            w->base[k] = (char *)&g_dummy;
        }
    }
    w->inner = like->ndim ? like->shape[like->ndim - 1] : 1;
    w->rows = 1;
    for (int d = 0; d + 1 < like->ndim; d++) w->rows *= like->shape[d];
}

static inline void walk_row(const walk *w, int64_t r, char **p) {
    for (int k = 0; k < w->nops; k++) p[k] = w->base[k];
    for (int d = w->nd - 2; d >= 0 && r; d--) {
        int64_t i = r % w->shape[d];
        r /= w->shape[d];
        for (int k = 0; k < w->nops; k++) p[k] += i * w->st[k][d];
    }
}

static inline int64_t walk_inner_stride(const walk *w, int k) { return w->nd ? w->st[k][w->nd - 1] : 0; }

/* Runs BODY for every element with char *p[nops]; BODY may add to double acc. */
#define WALK(w, ...)                                                                    \
    do {                                                                                \
        const walk *wp_ = (w);                                                          \
        int64_t rows_ = wp_->rows, inner_ = wp_->inner, is_[WALK_MAX_OPS];              \
        for (int k_ = 0; k_ < wp_->nops; k_++) is_[k_] = walk_inner_stride(wp_, k_);    \
        _Pragma("omp parallel for schedule(static) reduction(+ : acc) if (rows_ * inner_ > 32768 && rows_ > 1)") \
        for (int64_t r_ = 0; r_ < rows_; r_++) {                                        \
            char *p[WALK_MAX_OPS];                                                      \
            walk_row(wp_, r_, p);                                                       \
            for (int64_t i_ = 0; i_ < inner_; i_++) {                                   \
                __VA_ARGS__;                                                            \
                for (int k_ = 0; k_ < wp_->nops; k_++) p[k_] += is_[k_];                \
            }                                                                           \
        }                                                                               \
    } while (0)

/* Stores the reduced value (the 'none' case wrote its elements already). */
#define STORE_REDUCED(T, out, reduction, acc, n)                                            \
    do {                                                                                    \
        if ((reduction) != 0) /* KILN_REDUCTION_NONE */                                     \
            *(T *)kiln__ptr(out) = (T)((reduction) == 1 ? (acc) / (double)(n) : (acc));     \
    } while (0)

/* BCE: kiln_bce_f32 or _f64 (kernels/losses_math.h), as the macros below take the
 * per-element functions of their T by name. */
#define BCE_FORWARD(T, BCE)                                                                   \
    do {                                                                                      \
        kiln_tensor *ops[4] = {none ? call->out : NULL, x, call->in[1], call->in[2]};         \
        bool hw = call->in[2] != NULL;                                                        \
        walk w;                                                                               \
        walk_init(&w, x, 4, ops);                                                             \
        WALK(&w, {                                                                            \
            T v = BCE(*(T *)p[1], *(T *)p[2]);                                                \
            if (hw) v *= *(T *)p[3];                                                          \
            if (none) *(T *)p[0] = v;                                                         \
            else acc += v;                                                                    \
        });                                                                                   \
        STORE_REDUCED(T, call->out, at->reduction, acc, n);                                   \
    } while (0)

kiln_status kiln_cpu_bce(const kiln_op_call *call) {
    const kiln_bce_attrs *at = call->attrs;
    kiln_tensor *x = call->in[0];
    bool none = at->reduction == 0;
    int64_t n = kiln_tensor_numel(x);
    double acc = 0;
    if (x->dtype == KILN_F32) BCE_FORWARD(float, kiln_bce_f32);
    else BCE_FORWARD(double, kiln_bce_f64);
    return KILN_STATUS_OK;
}

/* g: 0-d (reduced) or the input's shape, maybe strided. torch 1.13's operation order:
 * input, g (p - y) / max(...) then * w, then / n ('mean'); target, -logit(p) * w / n * g. */
#define BCE_BACKWARD(T, BCE, GRAD_INPUT, GRAD_TARGET)                                         \
    do {                                                                                      \
        kiln_tensor *ops[5] = {call->out, call->in[0], x, call->in[2], call->in[3]};          \
        bool hw = call->in[3] != NULL, mean = at->reduction == 1;                             \
        T nf = (T)n, scale = (T)(mean ? 1.0 / (double)n : 1.0);                               \
        walk w;                                                                               \
        walk_init(&w, x, 5, ops);                                                             \
        WALK(&w, {                                                                            \
            T p_ = *(T *)p[2], y_ = *(T *)p[3], g_ = *(T *)p[1];                              \
            T wt_ = hw ? *(T *)p[4] : (T)1, v;                                                \
            switch (at->wrt) {                                                                \
            case KILN_LOSS_WRT_INPUT:                                                         \
                v = GRAD_INPUT(g_, p_, y_);                                                   \
                if (hw) v = v * wt_;                                                          \
                if (mean) v = v / nf;                                                         \
                break;                                                                        \
            case KILN_LOSS_WRT_TARGET:                                                        \
                v = GRAD_TARGET(p_);                                                          \
                if (hw) v = v * wt_;                                                          \
                if (mean) v = v / nf;                                                         \
                v = v * g_;                                                                   \
                break;                                                                        \
            default: v = (g_ * scale) * BCE(p_, y_); break;                                   \
            }                                                                                 \
            *(T *)p[0] = v;                                                                   \
        });                                                                                   \
    } while (0)

kiln_status kiln_cpu_bce_backward(const kiln_op_call *call) {
    const kiln_bce_attrs *at = call->attrs;
    kiln_tensor *x = call->in[1];
    int64_t n = kiln_tensor_numel(x);
    double acc = 0;
    (void)acc;
    if (x->dtype == KILN_F32) BCE_BACKWARD(float, kiln_bce_f32, kiln_bce_grad_input_f32, kiln_bce_grad_target_f32);
    else BCE_BACKWARD(double, kiln_bce_f64, kiln_bce_grad_input_f64, kiln_bce_grad_target_f64);
    return KILN_STATUS_OK;
}

#define BCEL_FORWARD(T, BCE_LOGITS)                                                           \
    do {                                                                                      \
        kiln_tensor *ops[5] = {none ? call->out : NULL, x, call->in[1], call->in[2], call->in[3]}; \
        bool hw = call->in[2] != NULL, hpw = call->in[3] != NULL;                             \
        walk w;                                                                               \
        walk_init(&w, x, 5, ops);                                                             \
        WALK(&w, {                                                                            \
            T v = BCE_LOGITS(*(T *)p[1], *(T *)p[2], hpw ? *(T *)p[4] : (T)1);                \
            if (hw) v *= *(T *)p[3];                                                          \
            if (none) *(T *)p[0] = v;                                                         \
            else acc += v;                                                                    \
        });                                                                                   \
        STORE_REDUCED(T, call->out, at->reduction, acc, n);                                   \
    } while (0)

/* Dense input and target of one shape, no weights (the common case): flat loops over
 * typed pointers, the same per-element function and double accumulation; threads take
 * contiguous ranges of elements instead of rows. */
static bool dense_pair(const kiln_tensor *x, const kiln_tensor *y) {
    if (!kiln_tensor_is_contiguous(x) || !kiln_tensor_is_contiguous(y) || x->ndim != y->ndim) return false;
    for (int d = 0; d < x->ndim; d++)
        if (x->shape[d] != y->shape[d]) return false;
    return true;
}

#define BCEL_FORWARD_FLAT(T, BCE_LOGITS)                                                      \
    do {                                                                                      \
        const T *xs = (const T *)kiln__ptr(x), *ys = (const T *)kiln__ptr(call->in[1]);       \
        T *os = none ? (T *)kiln__ptr(call->out) : NULL;                                      \
        _Pragma("omp parallel for schedule(static) reduction(+ : acc) if (n > 32768)")        \
        for (int64_t i = 0; i < n; i++) {                                                     \
            T v = BCE_LOGITS(xs[i], ys[i], (T)1);                                             \
            if (none) os[i] = v;                                                              \
            else acc += v;                                                                    \
        }                                                                                     \
        STORE_REDUCED(T, call->out, at->reduction, acc, n);                                   \
    } while (0)

/* f32: blocks of elements whose losses are computed in one vectorised loop (the f32
 * math is kernels/fast_math.h's, branch-free) and then added in double, four chains
 * per block, blocks split over threads. The block workers are compiled for the baseline
 * (SSE2), AVX2 and AVX-512, without FMA (the same bits): kernels/cpu/isa.h. */
#define BCEL_BLOCK 256

/* Losses of elements [i0, i0 + len) to os (none) or their double sum to *acc. */
static KILN_ALWAYS_INLINE void bcel_fwd_block(const float *xs, const float *ys, float *os, int64_t i0, int64_t len,
                                       double *acc) {
    float v[BCEL_BLOCK];
    float *o = os ? os + i0 : v;
    for (int64_t i = 0; i < len; i++) o[i] = kiln_bce_logits_f32(xs[i0 + i], ys[i0 + i], 1.0f);
    if (os) return;
    double a[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= len; i += 4)
        for (int k = 0; k < 4; k++) a[k] += (double)v[i + k];
    for (; i < len; i++) a[0] += (double)v[i];
    *acc += (a[0] + a[1]) + (a[2] + a[3]);
}
KILN_ISA_DEFINE(bcel_fwd_block_base, bcel_fwd_block_avx2, bcel_fwd_block_avx512,
                (const float *xs, const float *ys, float *os, int64_t i0, int64_t len, double *acc),
                bcel_fwd_block(xs, ys, os, i0, len, acc))

/* The input gradient of elements [i0, i0 + len); g: one value (gstep 0) or dense. */
static KILN_ALWAYS_INLINE void bcel_bwd_block(const float *gs, int64_t gstep, const float *xs, const float *ys, float *os,
                                       float scale, int64_t i0, int64_t len) {
    for (int64_t i = i0; i < i0 + len; i++)
        os[i] = (gs[i * gstep] * scale) * ((float)1 * kiln_bce_logits_grad_input_f32(xs[i], ys[i], 1.0f));
}
KILN_ISA_DEFINE(bcel_bwd_block_base, bcel_bwd_block_avx2, bcel_bwd_block_avx512,
                (const float *gs, int64_t gstep, const float *xs, const float *ys, float *os, float scale, int64_t i0,
                 int64_t len),
                bcel_bwd_block(gs, gstep, xs, ys, os, scale, i0, len))

static double bcel_flat_f32(const float *xs, const float *ys, float *os, int64_t n) {
    double acc = 0;
    const int64_t nb = (n + BCEL_BLOCK - 1) / BCEL_BLOCK;
    void (*blk)(const float *, const float *, float *, int64_t, int64_t, double *) =
        KILN_ISA_SELECT(bcel_fwd_block_base, bcel_fwd_block_avx2, bcel_fwd_block_avx512);
#pragma omp parallel for schedule(static) reduction(+ : acc) if (n > 32768)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i0 = b * BCEL_BLOCK, len = n - i0 < BCEL_BLOCK ? n - i0 : BCEL_BLOCK;
        blk(xs, ys, os, i0, len, &acc);
    }
    return acc;
}

kiln_status kiln_cpu_bce_with_logits(const kiln_op_call *call) {
    const kiln_bce_attrs *at = call->attrs;
    kiln_tensor *x = call->in[0];
    bool none = at->reduction == 0;
    int64_t n = kiln_tensor_numel(x);
    double acc = 0;
    if (!call->in[2] && !call->in[3] && dense_pair(x, call->in[1]) && (!none || dense_pair(x, call->out))) {
        if (x->dtype == KILN_F32) {
            acc = bcel_flat_f32((const float *)kiln__ptr(x), (const float *)kiln__ptr(call->in[1]),
                                none ? (float *)kiln__ptr(call->out) : NULL, n);
            STORE_REDUCED(float, call->out, at->reduction, acc, n);
        } else BCEL_FORWARD_FLAT(double, kiln_bce_logits_f64);
        return KILN_STATUS_OK;
    }
    if (x->dtype == KILN_F32) BCEL_FORWARD(float, kiln_bce_logits_f32);
    else BCEL_FORWARD(double, kiln_bce_logits_f64);
    return KILN_STATUS_OK;
}

#define BCEL_BACKWARD(T, BCE_LOGITS, GRAD_INPUT, GRAD_TARGET, GRAD_POS_WEIGHT)                \
    do {                                                                                      \
        kiln_tensor *ops[6] = {call->out, call->in[0], x, call->in[2], call->in[3], call->in[4]}; \
        bool hw = call->in[3] != NULL, hpw = call->in[4] != NULL;                             \
        T scale = (T)(at->reduction == 1 ? 1.0 / (double)n : 1.0);                            \
        walk w;                                                                               \
        walk_init(&w, x, 6, ops);                                                             \
        WALK(&w, {                                                                            \
            T x_ = *(T *)p[2], y_ = *(T *)p[3], g_ = *(T *)p[1] * scale;                      \
            T wt_ = hw ? *(T *)p[4] : (T)1, pw_ = hpw ? *(T *)p[5] : (T)1, v;                 \
            switch (at->wrt) {                                                                \
            case KILN_LOSS_WRT_INPUT: v = wt_ * GRAD_INPUT(x_, y_, pw_); break;               \
            case KILN_LOSS_WRT_TARGET: v = wt_ * GRAD_TARGET(x_, pw_); break;                 \
            case KILN_LOSS_WRT_WEIGHT: v = BCE_LOGITS(x_, y_, pw_); break;                    \
            default: v = wt_ * GRAD_POS_WEIGHT(x_, y_); break;                                \
            }                                                                                 \
            *(T *)p[0] = g_ * v;                                                              \
        });                                                                                   \
    } while (0)

/* The input gradient without weights; g is 0-d (a reduced loss) or dense like x. */
#define BCEL_BACKWARD_FLAT(T, GRAD_INPUT)                                                     \
    do {                                                                                      \
        T scale = (T)(at->reduction == 1 ? 1.0 / (double)n : 1.0);                            \
        const T *gs = (const T *)kiln__ptr(call->in[0]), *xs = (const T *)kiln__ptr(x),       \
                *ys = (const T *)kiln__ptr(call->in[2]);                                      \
        T *os = (T *)kiln__ptr(call->out);                                                    \
        const int64_t gstep = call->in[0]->ndim == 0 ? 0 : 1;                                 \
        _Pragma("omp parallel for schedule(static) if (n > 32768)")                           \
        for (int64_t i = 0; i < n; i++) {                                                     \
            T g_ = gs[i * gstep] * scale;                                                     \
            os[i] = g_ * ((T)1 * GRAD_INPUT(xs[i], ys[i], (T)1));                             \
        }                                                                                     \
    } while (0)

kiln_status kiln_cpu_bce_with_logits_backward(const kiln_op_call *call) {
    const kiln_bce_attrs *at = call->attrs;
    kiln_tensor *x = call->in[1];
    int64_t n = kiln_tensor_numel(x);
    double acc = 0;
    (void)acc;
    if (at->wrt == KILN_LOSS_WRT_INPUT && !call->in[3] && !call->in[4] && dense_pair(x, call->in[2]) &&
        dense_pair(x, call->out) && (call->in[0]->ndim == 0 || dense_pair(x, call->in[0]))) {
        if (x->dtype == KILN_F32) {
            const float scale = (float)(at->reduction == 1 ? 1.0 / (double)n : 1.0);
            const float *gs = (const float *)kiln__ptr(call->in[0]), *xs = (const float *)kiln__ptr(x),
                        *ys = (const float *)kiln__ptr(call->in[2]);
            float *os = (float *)kiln__ptr(call->out);
            const int64_t gstep = call->in[0]->ndim == 0 ? 0 : 1, nb = (n + BCEL_BLOCK - 1) / BCEL_BLOCK;
            void (*blk)(const float *, int64_t, const float *, const float *, float *, float, int64_t, int64_t) =
                KILN_ISA_SELECT(bcel_bwd_block_base, bcel_bwd_block_avx2, bcel_bwd_block_avx512);
#pragma omp parallel for schedule(static) if (n > 32768)
            for (int64_t b = 0; b < nb; b++) {
                int64_t i0 = b * BCEL_BLOCK;
                blk(gs, gstep, xs, ys, os, scale, i0, n - i0 < BCEL_BLOCK ? n - i0 : BCEL_BLOCK);
            }
        } else BCEL_BACKWARD_FLAT(double, kiln_bce_logits_grad_input_f64);
        return KILN_STATUS_OK;
    }
    if (x->dtype == KILN_F32) BCEL_BACKWARD(float, kiln_bce_logits_f32, kiln_bce_logits_grad_input_f32, kiln_bce_logits_grad_target_f32,
                  kiln_bce_logits_grad_pos_weight_f32);
    else BCEL_BACKWARD(double, kiln_bce_logits_f64, kiln_bce_logits_grad_input_f64, kiln_bce_logits_grad_target_f64,
                  kiln_bce_logits_grad_pos_weight_f64);
    return KILN_STATUS_OK;
}

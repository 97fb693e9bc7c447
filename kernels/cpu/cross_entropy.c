/* CPU kernels of cross_entropy and nll_loss over (N,C,d1..dk): each position
 * (n,d1..dk) walks its C logits along the class stride (no permute), takes the
 * max-subtracted log-sum-exp and the loss in the same pass; backward writes
 * softmax - target per position in one pass. Positions split over threads. This is
 * the general path, in double; dense f32 cross_entropy with index targets goes to the
 * float32 path (cross_entropy_f32.c), as the geometry's plan says. */
#include "losses.h"
#include "../cross_entropy_geometry.h"

#include <math.h>
#include <string.h>

static kiln_ce_operand operand(const kiln_tensor *t) {
    kiln_ce_operand o = {t->ndim, t->shape, t->strides, (int64_t)kiln_dtype_size(t->dtype)};
    return o;
}

/* The geometry of one call (kernels/cross_entropy_geometry.h, CUDA's too), strides in
 * bytes. x: (N,C,d..) or (C); target: position-shaped (indices) or x-shaped (probs);
 * g: NULL, 0-d or position-shaped; out: position-shaped, x-shaped or 0-d. */
static void plan_init(kiln_ce_geometry *p, const kiln_tensor *x, const kiln_tensor *t, const kiln_tensor *g,
                      const kiln_tensor *w, const kiln_tensor *out, const kiln_ce_attrs *at, int log_probs) {
    kiln_ce_operand xo = operand(x), to = operand(t), oo = operand(out), go, wo;
    if (g) go = operand(g);
    if (w) wo = operand(w);
    kiln_ce_geometry_plan(p, &xo, &to, g ? &go : NULL, w ? &wo : NULL, &oo, at, x->dtype == KILN_F32, log_probs);
}

/* Byte offsets of position q in x, target, g and out. */
static inline void plan_pos(const kiln_ce_geometry *p, int64_t q, int64_t *xo, int64_t *to, int64_t *go,
                            int64_t *oo) {
    *xo = *to = *go = *oo = 0;
    for (int j = p->P - 1; j >= 0 && q; j--) {
        int64_t i = q % p->pshape[j];
        q /= p->pshape[j];
        *xo += i * p->xs[j];
        *to += i * p->ts[j];
        *go += i * p->gs[j];
        *oo += i * p->os[j];
    }
}

/* Positions q0, q0+1, ... with their byte offsets kept current: one decomposition of q0
 * (integer divisions) where a thread's range starts, then an odometer step per position. */
typedef struct {
    int64_t idx[KILN_MAX_DIMS];
    int64_t xo, to, go, oo;
} ce_cursor;

static inline void cursor_set(const kiln_ce_geometry *p, ce_cursor *c, int64_t q) {
    c->xo = c->to = c->go = c->oo = 0;
    for (int j = p->P - 1; j >= 0; j--) {
        int64_t i = q % p->pshape[j];
        q /= p->pshape[j];
        c->idx[j] = i;
        c->xo += i * p->xs[j];
        c->to += i * p->ts[j];
        c->go += i * p->gs[j];
        c->oo += i * p->os[j];
    }
}

static inline void cursor_next(const kiln_ce_geometry *p, ce_cursor *c) {
    for (int j = p->P - 1; j >= 0; j--) {
        c->xo += p->xs[j];
        c->to += p->ts[j];
        c->go += p->gs[j];
        c->oo += p->os[j];
        if (++c->idx[j] < p->pshape[j]) return;
        c->idx[j] = 0;
        c->xo -= p->pshape[j] * p->xs[j];
        c->to -= p->pshape[j] * p->ts[j];
        c->go -= p->pshape[j] * p->gs[j];
        c->oo -= p->pshape[j] * p->os[j];
    }
}

/* Offsets of position q for a loop whose thread visits increasing q (a static schedule):
 * the cursor follows from the previous position unless q starts a new range. */
#define CE_SEEK(pl, cur, next, q, xo, to, go, oo)                   \
    do {                                                            \
        if ((q) != (next)) cursor_set(&(pl), &(cur), (q));          \
        else cursor_next(&(pl), &(cur));                            \
        (next) = (q) + 1;                                           \
        xo = (cur).xo;                                              \
        to = (cur).to;                                              \
        go = (cur).go;                                              \
        oo = (cur).oo;                                              \
    } while (0)

#define XC(c) (*(const T *)(xp + (c) * pl.xcs))
/* log-probability of class c: (x - max) - log(sum), never x - (max + log(sum)), which
 * rounds log(sum) against max (2000 ulps at |x| = 1e4, all of it above 2^53) */
#define LP(c) (((double)XC(c) - lmax) - lsum)
#define WC(c) (wb ? (double)*(const T *)(wb + (c) * pl.ws) : 1.0)
#define TC(c) (*(const T *)(tp + (c) * pl.tcs))

/* The max over the class axis at xp and log(sum exp(x - max)): LP's two terms. */
#define LSE(T, xp, out_max, out_lsum)                                       \
    do {                                                                    \
        double m_ = -INFINITY, s_ = 0;                                      \
        for (int64_t c = 0; c < pl.C; c++) m_ = fmax(m_, (double)XC(c));    \
        for (int64_t c = 0; c < pl.C; c++) s_ += exp((double)XC(c) - m_);   \
        out_max = m_;                                                       \
        out_lsum = log(s_);                                                 \
    } while (0)

/* Forward: log_probs says x already holds log-probabilities (nll_loss). */
#define CE_FORWARD(T)                                                                                \
    do {                                                                                             \
        _Pragma("omp parallel reduction(+ : acc, wsum) if (pl.npos * pl.C > 32768)")               \
        {                                                                                            \
        ce_cursor cur_ = {{0}, 0, 0, 0, 0};                                                          \
        int64_t next_ = -1;                                                                          \
        _Pragma("omp for schedule(static)")                                                          \
        for (int64_t q = 0; q < pl.npos; q++) {                                                      \
            int64_t xo, to, go, oo;                                                                  \
            CE_SEEK(pl, cur_, next_, q, xo, to, go, oo);                                             \
            (void)go;                                                                                \
            const char *xp = xb + xo, *tp = tb + to;                                                 \
            double loss = 0, lmax = 0, lsum = 0;                                                     \
            if (!log_probs) LSE(T, xp, lmax, lsum);                                                  \
            if (at->prob_target) {                                                                   \
                for (int64_t c = 0; c < pl.C; c++)                                                   \
                    loss -= WC(c) * ((double)TC(c) * (1 - eps) + eps / (double)pl.C) * LP(c);        \
                wsum += 1;                                                                           \
            } else {                                                                                 \
                int64_t t = *(const int64_t *)tp;                                                    \
                if (t != at->ignore_index) {                                                         \
                    double wt = WC(t);                                                               \
                    loss = -(1 - eps) * wt * LP(t);                                                  \
                    if (eps > 0) {                                                                   \
                        double sm = 0;                                                               \
                        for (int64_t c = 0; c < pl.C; c++) sm -= WC(c) * LP(c);                      \
                        loss += eps / (double)pl.C * sm;                                             \
                    }                                                                                \
                    wsum += wt;                                                                      \
                }                                                                                    \
            }                                                                                        \
            if (none) *(T *)(ob + oo) = (T)loss;                                                     \
            else acc += loss;                                                                        \
        }                                                                                            \
        }                                                                                            \
        if (!none) *(T *)ob = (T)(at->reduction == 1 ? acc / wsum : acc);                            \
    } while (0)

static kiln_status ce_forward(const kiln_op_call *call, int log_probs) {
    const kiln_ce_attrs *at = call->attrs;
    const kiln_tensor *x = call->in[0], *t = call->in[1], *w = call->in[2];
    kiln_ce_geometry pl;
    plan_init(&pl, x, t, NULL, w, call->out, at, log_probs);
    if (pl.f32_path) return kiln__ce_f32_forward(call, &pl.f32);
    const char *xb = kiln__ptr(x), *tb = kiln__ptr(t), *wb = w ? kiln__ptr(w) : NULL;
    char *ob = kiln__ptr(call->out);
    bool none = at->reduction == 0;
    double eps = at->label_smoothing, acc = 0, wsum = 0;
    if (x->dtype == KILN_F32) {
        typedef float T;
        CE_FORWARD(T);
    } else {
        typedef double T;
        CE_FORWARD(T);
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_cpu_cross_entropy(const kiln_op_call *call) { return ce_forward(call, 0); }
kiln_status kiln_cpu_nll_loss(const kiln_op_call *call) { return ce_forward(call, 1); }

/* The divisor of 'mean': summed weights of the non-ignored targets (index
 * targets) or the number of positions (probability targets). */
static double mean_divisor(const kiln_ce_geometry *pl, const kiln_ce_attrs *at, const char *tb, const char *wb,
                           kiln_dtype dt) {
    if (at->prob_target) return (double)pl->npos;
    double wsum = 0;
#pragma omp parallel reduction(+ : wsum) if (pl->npos > 32768)
    {
    ce_cursor cur = {{0}, 0, 0, 0, 0};
    int64_t next = -1;
#pragma omp for schedule(static)
    for (int64_t q = 0; q < pl->npos; q++) {
        int64_t xo, to, go, oo;
        CE_SEEK(*pl, cur, next, q, xo, to, go, oo);
        (void)xo, (void)go, (void)oo;
        int64_t t = *(const int64_t *)(tb + to);
        if (t == at->ignore_index) continue;
        wsum += !wb ? 1.0 : dt == KILN_F32 ? *(const float *)(wb + t * pl->ws) : *(const double *)(wb + t * pl->ws);
    }
    }
    return wsum;
}

#define OC(c) (*(T *)(op + (c) * pl.ocs))

#define CE_BACKWARD(T)                                                                               \
    do {                                                                                             \
        _Pragma("omp parallel if (pl.npos * pl.C > 32768)")                                         \
        {                                                                                            \
        ce_cursor cur_ = {{0}, 0, 0, 0, 0};                                                          \
        int64_t next_ = -1;                                                                          \
        _Pragma("omp for schedule(static)")                                                          \
        for (int64_t q = 0; q < pl.npos; q++) {                                                      \
            int64_t xo, to, go, oo;                                                                  \
            CE_SEEK(pl, cur_, next_, q, xo, to, go, oo);                                             \
            const char *xp = xb + xo, *tp = tb + to;                                                 \
            char *op = ob + oo;                                                                      \
            double gi = (double)*(const T *)(gb + go) * scale, lmax = 0, lsum = 0;                   \
            if (!log_probs) LSE(T, xp, lmax, lsum);                                                  \
            if (at->prob_target) {                                                                   \
                if (at->wrt == KILN_LOSS_WRT_TARGET) {                                               \
                    for (int64_t c = 0; c < pl.C; c++)                                               \
                        OC(c) = (T)(-gi * (1 - eps) * WC(c) * LP(c));                                \
                    continue;                                                                        \
                }                                                                                    \
                double wtsum = 0;                                                                    \
                for (int64_t c = 0; c < pl.C; c++)                                                   \
                    wtsum += WC(c) * ((double)TC(c) * (1 - eps) + eps / (double)pl.C);              \
                for (int64_t c = 0; c < pl.C; c++) {                                                 \
                    double tc = (double)TC(c) * (1 - eps) + eps / (double)pl.C;                      \
                    OC(c) = (T)(gi * (exp(LP(c)) * wtsum - WC(c) * tc));                             \
                }                                                                                    \
                continue;                                                                            \
            }                                                                                        \
            int64_t t = *(const int64_t *)tp;                                                        \
            if (t == at->ignore_index) {                                                             \
                for (int64_t c = 0; c < pl.C; c++) OC(c) = (T)0;                                     \
                continue;                                                                            \
            }                                                                                        \
            double wt = WC(t);                                                                       \
            if (log_probs) {                                                                         \
                for (int64_t c = 0; c < pl.C; c++) OC(c) = (T)(c == t ? -gi * wt : 0.0);             \
                continue;                                                                            \
            }                                                                                        \
            for (int64_t c = 0; c < pl.C; c++) {                                                     \
                double pc = exp(LP(c));                                                              \
                double v = (1 - eps) * wt * (pc - (c == t ? 1.0 : 0.0));                             \
                if (eps > 0) v += eps / (double)pl.C * (wall * pc - WC(c));                          \
                OC(c) = (T)(gi * v);                                                                 \
            }                                                                                        \
        }                                                                                            \
        }                                                                                            \
    } while (0)

static kiln_status ce_backward(const kiln_op_call *call, int log_probs) {
    const kiln_ce_attrs *at = call->attrs;
    const kiln_tensor *g = call->in[0], *x = call->in[1], *t = call->in[2], *w = call->in[3];
    kiln_ce_geometry pl;
    plan_init(&pl, x, t, g, w, call->out, at, log_probs);
    if (pl.f32_path) return kiln__ce_f32_backward(call, &pl.f32);
    const char *gb = kiln__ptr(g), *xb = kiln__ptr(x), *tb = kiln__ptr(t), *wb = w ? kiln__ptr(w) : NULL;
    char *ob = kiln__ptr(call->out);
    double eps = at->label_smoothing, scale = 1, wall = 0;
    if (at->reduction == 1) scale = 1.0 / mean_divisor(&pl, at, tb, wb, x->dtype);
    if (x->dtype == KILN_F32) {
        typedef float T;
        for (int64_t c = 0; c < pl.C; c++) wall += WC(c);
        CE_BACKWARD(T);
    } else {
        typedef double T;
        for (int64_t c = 0; c < pl.C; c++) wall += WC(c);
        CE_BACKWARD(T);
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_cpu_cross_entropy_backward(const kiln_op_call *call) { return ce_backward(call, 0); }
kiln_status kiln_cpu_nll_loss_backward(const kiln_op_call *call) { return ce_backward(call, 1); }

#define ONE_HOT(T)                                                                   \
    do {                                                                             \
        memset(kiln__ptr(out), 0, (size_t)kiln_tensor_numel(out) * sizeof(T));       \
        for (int64_t q = 0; q < pl.npos; q++) {                                      \
            int64_t xo, to, go, oo;                                                  \
            plan_pos(&pl, q, &xo, &to, &go, &oo);                                    \
            int64_t c = *(const int64_t *)(tb + to);                                 \
            if (c >= 0 && c < pl.C) *(T *)(ob + xo + c * pl.xcs) = (T)1;             \
        }                                                                            \
    } while (0)

/* out is contiguous (N,C,d..); the plan treats it as x and the target as indices. */
kiln_status kiln_cpu_one_hot(const kiln_op_call *call) {
    const kiln_tensor *t = call->in[0];
    kiln_tensor *out = call->out;
    kiln_ce_geometry pl;
    plan_init(&pl, out, t, NULL, NULL, t, NULL, 0);
    const char *tb = kiln__ptr(t);
    char *ob = kiln__ptr(out);
    if (out->dtype == KILN_F32) {
        typedef float T;
        ONE_HOT(T);
    } else {
        typedef double T;
        ONE_HOT(T);
    }
    return KILN_STATUS_OK;
}

/* CPU kernels of batch norm over axis 1 of (N, C, ...) inputs with any strides:
 * per-channel statistics, the normalisation, and the three backward pieces. Each
 * channel is independent, so channels are split over threads; sums are in double. */
#include "layers.h"
#include "isa.h"

#include <math.h>
#include <string.h>

/* (N, C, H, W) geometry of a 2-, 3- or 4-d tensor, missing trailing axes of size 1. */
typedef struct {
    int64_t n, c, h, w;
    int64_t sn, sc, sh, sw; /* bytes */
    char *base;
    kiln_dtype dt;
} bn_geom;

static bn_geom geom(const kiln_tensor *t) {
    bn_geom g = {t->shape[0], t->shape[1], 1, 1, t->strides[0], t->strides[1], 0, 0, kiln__ptr(t), t->dtype};
    if (t->ndim == 3) {
        g.w = t->shape[2];
        g.sw = t->strides[2];
    } else if (t->ndim >= 4) {
        g.h = t->shape[2];
        g.w = t->shape[3];
        g.sh = t->strides[2];
        g.sw = t->strides[3];
    }
    return g;
}

static inline double ld(const char *p, kiln_dtype dt) { return dt == KILN_F32 ? *(const float *)p : *(const double *)p; }
static inline void st(char *p, kiln_dtype dt, double v) {
    if (dt == KILN_F32) *(float *)p = (float)v;
    else *(double *)p = v;
}
/* Element c of a 1-d per-channel tensor, or dflt when it is absent. */
static inline double chan(const kiln_tensor *t, int64_t c, double dflt) {
    return t ? ld(kiln__ptr(t) + c * t->strides[0], t->dtype) : dflt;
}

#define AT(g, n_, c_, h_, w_) ((g).base + (n_) * (g).sn + (c_) * (g).sc + (h_) * (g).sh + (w_) * (g).sw)
/* Runs BODY for every (i, y, z) of channel c. */
#define EACH(g, BODY)                                   \
    for (int64_t i = 0; i < (g).n; i++)                 \
        for (int64_t y = 0; y < (g).h; y++)             \
            for (int64_t z = 0; z < (g).w; z++) { BODY; }

/* A dense float32 tensor of at most 4 axes: channel c of sample i is the contiguous plane
 * base + (i*C + c)*HW. The kernels then walk typed planes in the order of EACH, with the
 * same double arithmetic, instead of a dtype switch and four strides per element. */
static bool dense_f32(const kiln_tensor *t) {
    return t->dtype == KILN_F32 && t->ndim <= 4 && kiln_tensor_is_contiguous(t);
}
#define PLANE(G, I, CH) ((const float *)(G).base + ((I) * (G).c + (CH)) * ((G).h * (G).w))
#define PLANE_OUT(G, I, CH) ((float *)(G).base + ((I) * (G).c + (CH)) * ((G).h * (G).w))

/* The dense float32 loops, one plane (HW contiguous floats) at a time, cloned per ISA
 * (isa.h). Sums are in double in eight lanes (element k goes to lane k % 8, the tail to
 * lane 0) so they vectorise instead of waiting on one chain of additions, and every clone
 * gives the same bits; the CUDA kernels' block reductions sum in another order, and the
 * sums are compared within a relative tolerance. */

/* lanes += Σx, or Σ(x - m)² when squares */
static KILN_ALWAYS_INLINE void sum_plane(const float *p, int64_t n, double m, int squares, double *lanes) {
    if (!squares) {
        kiln_lanes_add(lanes, p, n);
        return;
    }
    kiln_v8d a;
    memcpy(&a, lanes, sizeof a);
    int64_t n8 = n & ~(int64_t)7;
    for (int64_t k = 0; k < n8; k += 8) {
        kiln_v8d d;
        kiln_load8(&d, p + k);
        d -= m;
        a += d * d;
    }
    memcpy(lanes, &a, sizeof a);
    for (int64_t k = n8; k < n; k++) {
        double d = (double)p[k] - m;
        lanes[0] += d * d;
    }
}
KILN_ISA_DEFINE(sum_plane_base, sum_plane_avx2, sum_plane_avx512,
                (const float *p, int64_t n, double m, int squares, double *lanes),
                sum_plane(p, n, m, squares, lanes))

/* la += Σg, lb += Σg·(x - m) */
static KILN_ALWAYS_INLINE void grad_sums_plane(const float *g, const float *x, int64_t n, double m, double *la,
                                               double *lb) {
    kiln_v8d a, b;
    memcpy(&a, la, sizeof a);
    memcpy(&b, lb, sizeof b);
    int64_t n8 = n & ~(int64_t)7;
    for (int64_t k = 0; k < n8; k += 8) {
        kiln_v8d gv, xv;
        kiln_load8(&gv, g + k);
        kiln_load8(&xv, x + k);
        a += gv;
        b += gv * (xv - m);
    }
    memcpy(la, &a, sizeof a);
    memcpy(lb, &b, sizeof b);
    for (int64_t k = n8; k < n; k++) {
        double gv = g[k];
        la[0] += gv;
        lb[0] += gv * ((double)x[k] - m);
    }
}
KILN_ISA_DEFINE(grad_sums_plane_base, grad_sums_plane_avx2, grad_sums_plane_avx512,
                (const float *g, const float *x, int64_t n, double m, double *la, double *lb),
                grad_sums_plane(g, x, n, m, la, lb))

/* q = x·scale + shift, in double */
static KILN_ALWAYS_INLINE void affine_plane(const float *p, float *q, int64_t n, double scale, double shift) {
    for (int64_t k = 0; k < n; k++) q[k] = (float)(p[k] * scale + shift);
}
KILN_ISA_DEFINE(affine_plane_base, affine_plane_avx2, affine_plane_avx512,
                (const float *p, float *q, int64_t n, double scale, double shift),
                affine_plane(p, q, n, scale, shift))

/* training dx = k·(g - mean(g) - x̂·mean(g·x̂)), x̂ = (x - m)·inv, in double */
static KILN_ALWAYS_INLINE void dx_plane(const float *g, const float *x, float *q, int64_t n, double m, double inv,
                                        double k, double mg, double mgx) {
    for (int64_t e = 0; e < n; e++) {
        double xh = (x[e] - m) * inv;
        q[e] = (float)(k * (g[e] - mg - xh * mgx));
    }
}
KILN_ISA_DEFINE(dx_plane_base, dx_plane_avx2, dx_plane_avx512,
                (const float *g, const float *x, float *q, int64_t n, double m, double inv, double k, double mg,
                 double mgx),
                dx_plane(g, x, q, n, m, inv, k, mg, mgx))

typedef void (*sum_plane_fn)(const float *, int64_t, double, int, double *);

/* Σx, or Σ(x - m)² when squares, of channel c over dense float32 planes. */
static double dense_sum(sum_plane_fn fn, const bn_geom *x, int64_t c, double m, bool squares) {
    double a[8] = {0};
    for (int64_t i = 0; i < x->n; i++) fn(PLANE(*x, i, c), x->h * x->w, m, squares, a);
    return kiln_lanes_total(a);
}

kiln_status kiln_cpu_batch_norm_stats(const kiln_op_call *call) {
    bn_geom x = geom(call->in[0]);
    kiln_tensor *out = call->out;
    double cnt = (double)(x.n * x.h * x.w);
    char *o = kiln__ptr(out);
    size_t es = kiln_dtype_size(out->dtype);
    const bool dense = dense_f32(call->in[0]);
    sum_plane_fn sum_fn = KILN_ISA_SELECT(sum_plane_base, sum_plane_avx2, sum_plane_avx512);
#pragma omp parallel for if (x.c > 1 && x.n * x.c * x.h * x.w > 32768)
    for (int64_t c = 0; c < x.c; c++) {
        double s = 0, s2 = 0;
        if (dense) {
            s = dense_sum(sum_fn, &x, c, 0, false);
        } else {
            EACH(x, s += ld(AT(x, i, c, y, z), x.dt));
        }
        double mean = cnt > 0 ? s / cnt : NAN;
        /* two passes: the variance of large-mean data stays accurate */
        if (dense) {
            s2 = dense_sum(sum_fn, &x, c, mean, true);
        } else {
            EACH(x, { double d = ld(AT(x, i, c, y, z), x.dt) - mean; s2 += d * d; });
        }
        st(o + (size_t)c * es, out->dtype, mean);
        st(o + (size_t)(x.c + c) * es, out->dtype, cnt > 0 ? s2 / cnt : NAN);
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_cpu_batch_norm(const kiln_op_call *call) {
    const kiln_batch_norm_attrs *at = call->attrs;
    bn_geom x = geom(call->in[0]), o = geom(call->out);
    const kiln_tensor *w = call->in[1], *b = call->in[2], *mean = call->in[3], *var = call->in[4];
    const bool dense = dense_f32(call->in[0]) && dense_f32(call->out);
    void (*affine)(const float *, float *, int64_t, double, double) =
        KILN_ISA_SELECT(affine_plane_base, affine_plane_avx2, affine_plane_avx512);
#pragma omp parallel for if (x.c > 1 && x.n * x.c * x.h * x.w > 32768)
    for (int64_t c = 0; c < x.c; c++) {
        double m = chan(mean, c, 0), inv = 1.0 / sqrt(chan(var, c, 1) + at->eps);
        double scale = chan(w, c, 1) * inv, shift = chan(b, c, 0) - m * scale;
        if (dense) {
            for (int64_t i = 0; i < x.n; i++) affine(PLANE(x, i, c), PLANE_OUT(o, i, c), x.h * x.w, scale, shift);
            continue;
        }
        EACH(x, st(AT(o, i, c, y, z), o.dt, ld(AT(x, i, c, y, z), x.dt) * scale + shift));
    }
    return KILN_STATUS_OK;
}

/* which 0 = dx, 1 = dweight (Σg·x̂), 2 = dbias (Σg), 3 = both sums into a (2, C) out.
 * Training mode (mean, var from this batch): dx = w·invstd·(g - mean(g) - x̂·mean(g·x̂)),
 * the full gradient through the batch statistics, with the sums from a sixth input (a
 * which-3 result) when given, so a backward reads g and x twice, not four times; eval
 * mode: dx = g·w·invstd. */
kiln_status kiln_cpu_batch_norm_backward(const kiln_op_call *call) {
    const kiln_batch_norm_attrs *at = call->attrs;
    bn_geom g = geom(call->in[0]), x = geom(call->in[1]);
    const kiln_tensor *w = call->in[2], *mean = call->in[3], *var = call->in[4];
    const kiln_tensor *sums = call->nin > 5 ? call->in[5] : NULL;
    kiln_tensor *out = call->out;
    double cnt = (double)(x.n * x.h * x.w);
    bn_geom o = at->which == 0 ? geom(out) : g;
    char *oc = kiln__ptr(out);
    int64_t ocs = out->ndim ? out->strides[out->ndim - 1] : 0, orow = out->ndim == 2 ? out->strides[0] : 0;
    const char *sb = sums ? kiln__ptr(sums) : NULL;
    int64_t scs = sums ? sums->strides[1] : 0, srow = sums ? sums->strides[0] : 0;
    const bool dense = dense_f32(call->in[0]) && dense_f32(call->in[1]) && (at->which != 0 || dense_f32(out));
    const bool need_sums = at->which != 0 || at->training;
    void (*grad_sums)(const float *, const float *, int64_t, double, double *, double *) =
        KILN_ISA_SELECT(grad_sums_plane_base, grad_sums_plane_avx2, grad_sums_plane_avx512);
    void (*dx)(const float *, const float *, float *, int64_t, double, double, double, double, double) =
        KILN_ISA_SELECT(dx_plane_base, dx_plane_avx2, dx_plane_avx512);
#pragma omp parallel for if (x.c > 1 && x.n * x.c * x.h * x.w > 32768)
    for (int64_t c = 0; c < x.c; c++) {
        double m = chan(mean, c, 0), inv = 1.0 / sqrt(chan(var, c, 1) + at->eps);
        double sg = 0, sgx = 0;
        if (need_sums && sb) {
            sg = ld(sb + c * scs, sums->dtype);
            sgx = ld(sb + srow + c * scs, sums->dtype);
        } else if (need_sums && dense) {
            double la[8] = {0}, lb[8] = {0};
            for (int64_t i = 0; i < x.n; i++) grad_sums(PLANE(g, i, c), PLANE(x, i, c), x.h * x.w, m, la, lb);
            sg = kiln_lanes_total(la);
            sgx = kiln_lanes_total(lb) * inv;
        } else if (need_sums)
            EACH(x, {
                double gv = ld(AT(g, i, c, y, z), g.dt);
                sg += gv;
                sgx += gv * (ld(AT(x, i, c, y, z), x.dt) - m) * inv;
            });
        if (at->which == 3) {
            st(oc + c * ocs, out->dtype, sg);
            st(oc + orow + c * ocs, out->dtype, sgx);
        } else if (at->which == 1) {
            st(oc + c * ocs, out->dtype, sgx);
        } else if (at->which == 2) {
            st(oc + c * ocs, out->dtype, sg);
        } else {
            double k = chan(w, c, 1) * inv;
            if (at->training && dense) {
                double mg = sg / cnt, mgx = sgx / cnt;
                for (int64_t i = 0; i < x.n; i++)
                    dx(PLANE(g, i, c), PLANE(x, i, c), PLANE_OUT(o, i, c), x.h * x.w, m, inv, k, mg, mgx);
            } else if (at->training) {
                double mg = sg / cnt, mgx = sgx / cnt;
                EACH(x, {
                    double xh = (ld(AT(x, i, c, y, z), x.dt) - m) * inv;
                    st(AT(o, i, c, y, z), o.dt, k * (ld(AT(g, i, c, y, z), g.dt) - mg - xh * mgx));
                });
            } else {
                EACH(x, st(AT(o, i, c, y, z), o.dt, k * ld(AT(g, i, c, y, z), g.dt)));
            }
        }
    }
    return KILN_STATUS_OK;
}

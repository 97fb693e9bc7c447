/* CPU kernels of batch norm over axis 1 of (N, C, ...) inputs with any strides:
 * per-channel statistics, the normalisation, and the three backward pieces. Each
 * channel is independent, so channels are split over threads; sums are in double. */
#include "nn.h"

#include <math.h>

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

/* Σx, or Σ(x - m)² when squares, of channel c over dense float32 planes, in double with
 * eight partial sums so the loop vectorises instead of waiting on one chain of additions
 * (the CUDA kernel's block reduction sums in another order; the statistics agree within
 * a relative tolerance). */
static double dense_sum(const bn_geom *x, int64_t c, double m, bool squares) {
    double a[8] = {0};
    const int64_t hw = x->h * x->w, hw8 = hw & ~(int64_t)7;
    for (int64_t i = 0; i < x->n; i++) {
        const float *p = PLANE(*x, i, c);
        if (squares) {
            for (int64_t k = 0; k < hw8; k += 8)
                for (int j = 0; j < 8; j++) {
                    double d = (double)p[k + j] - m;
                    a[j] += d * d;
                }
            for (int64_t k = hw8; k < hw; k++) {
                double d = (double)p[k] - m;
                a[0] += d * d;
            }
        } else {
            for (int64_t k = 0; k < hw8; k += 8)
                for (int j = 0; j < 8; j++) a[j] += p[k + j];
            for (int64_t k = hw8; k < hw; k++) a[0] += p[k];
        }
    }
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

KILN_CPU_KERNEL(batch_norm_stats) {
    bn_geom x = geom(call->in[0]);
    kiln_tensor *out = call->out;
    double cnt = (double)(x.n * x.h * x.w);
    char *o = kiln__ptr(out);
    size_t es = kiln_dtype_size(out->dtype);
    const bool dense = dense_f32(call->in[0]);
#pragma omp parallel for if (x.c > 1 && x.n * x.c * x.h * x.w > 32768)
    for (int64_t c = 0; c < x.c; c++) {
        double s = 0, s2 = 0;
        if (dense) {
            s = dense_sum(&x, c, 0, false);
        } else {
            EACH(x, s += ld(AT(x, i, c, y, z), x.dt));
        }
        double mean = cnt > 0 ? s / cnt : NAN;
        /* two passes: the variance of large-mean data stays accurate */
        if (dense) {
            s2 = dense_sum(&x, c, mean, true);
        } else {
            EACH(x, { double d = ld(AT(x, i, c, y, z), x.dt) - mean; s2 += d * d; });
        }
        st(o + (size_t)c * es, out->dtype, mean);
        st(o + (size_t)(x.c + c) * es, out->dtype, cnt > 0 ? s2 / cnt : NAN);
    }
    return KILN_STATUS_OK;
}

KILN_CPU_KERNEL(batch_norm) {
    const kiln_batch_norm_attrs *at = call->attrs;
    bn_geom x = geom(call->in[0]), o = geom(call->out);
    const kiln_tensor *w = call->in[1], *b = call->in[2], *mean = call->in[3], *var = call->in[4];
    const bool dense = dense_f32(call->in[0]) && dense_f32(call->out);
#pragma omp parallel for if (x.c > 1 && x.n * x.c * x.h * x.w > 32768)
    for (int64_t c = 0; c < x.c; c++) {
        double m = chan(mean, c, 0), inv = 1.0 / sqrt(chan(var, c, 1) + at->eps);
        double scale = chan(w, c, 1) * inv, shift = chan(b, c, 0) - m * scale;
        if (dense) {
            for (int64_t i = 0; i < x.n; i++) {
                const float *p = PLANE(x, i, c);
                float *q = PLANE_OUT(o, i, c);
                for (int64_t k = 0; k < x.h * x.w; k++) q[k] = (float)(p[k] * scale + shift);
            }
            continue;
        }
        EACH(x, st(AT(o, i, c, y, z), o.dt, ld(AT(x, i, c, y, z), x.dt) * scale + shift));
    }
    return KILN_STATUS_OK;
}

/* Σg and Σg·(x - m) of channel c over dense float32 planes. Eight partial sums per
 * quantity break the serial chain of double additions so the loop vectorises; the
 * order differs from the CUDA block reduction anyway (the sums are compared within a
 * relative tolerance, not bit for bit). */
static void dense_grad_sums(const bn_geom *g, const bn_geom *x, int64_t c, double m, double *sg, double *sgxm) {
    double a[8] = {0}, b[8] = {0};
    const int64_t hw = x->h * x->w, hw8 = hw & ~(int64_t)7;
    for (int64_t i = 0; i < x->n; i++) {
        const float *gp = PLANE(*g, i, c), *xp = PLANE(*x, i, c);
        for (int64_t k = 0; k < hw8; k += 8)
            for (int j = 0; j < 8; j++) {
                double gv = gp[k + j];
                a[j] += gv;
                b[j] += gv * ((double)xp[k + j] - m);
            }
        for (int64_t k = hw8; k < hw; k++) {
            double gv = gp[k];
            a[0] += gv;
            b[0] += gv * ((double)xp[k] - m);
        }
    }
    *sg = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    *sgxm = ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
}

/* which 0 = dx, 1 = dweight (Σg·x̂), 2 = dbias (Σg), 3 = both sums into a (2, C) out.
 * Training mode (mean, var from this batch): dx = w·invstd·(g - mean(g) - x̂·mean(g·x̂)),
 * the full gradient through the batch statistics, with the sums from a sixth input (a
 * which-3 result) when given, so a backward reads g and x twice, not four times; eval
 * mode: dx = g·w·invstd. */
KILN_CPU_KERNEL(batch_norm_backward) {
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
#pragma omp parallel for if (x.c > 1 && x.n * x.c * x.h * x.w > 32768)
    for (int64_t c = 0; c < x.c; c++) {
        double m = chan(mean, c, 0), inv = 1.0 / sqrt(chan(var, c, 1) + at->eps);
        double sg = 0, sgx = 0;
        if (need_sums && sb) {
            sg = ld(sb + c * scs, sums->dtype);
            sgx = ld(sb + srow + c * scs, sums->dtype);
        } else if (need_sums && dense) {
            double sgxm;
            dense_grad_sums(&g, &x, c, m, &sg, &sgxm);
            sgx = sgxm * inv;
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
                for (int64_t i = 0; i < x.n; i++) {
                    const float *gp = PLANE(g, i, c), *xp = PLANE(x, i, c);
                    float *q = PLANE_OUT(o, i, c);
                    for (int64_t e = 0; e < x.h * x.w; e++) {
                        double xh = (xp[e] - m) * inv;
                        q[e] = (float)(k * (gp[e] - mg - xh * mgx));
                    }
                }
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

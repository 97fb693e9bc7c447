/* The float32 path of cross_entropy (class-index targets, dense (N,C,d..), (N,C) or (C)
 * input): a block of up to CE_BLOCK contiguous pixels of one sample goes across the
 * class axis at once, so every per-class loop runs over pixels and vectorises. Per-pixel
 * math in float with kernels/fast_math.h, in the order the CUDA thread path repeats
 * (kernels/cuda/cross_entropy.cu, ce32_*); sums over pixels in double. Blocks split over
 * threads. Which calls come here, and their geometry, is kernels/cross_entropy_geometry.h's
 * plan. The float32 math contract is in docs/ARCHITECTURE.md, "Float32 loss math". */
#include "losses.h"
#include "../cross_entropy_geometry.h"
#include "../fast_math.h"
#include "isa.h"

#include <stdlib.h>
#include <string.h>

#define CE_BLOCK 64
/* exp(x - max) of a block kept for the backward's softmax when C * CE_BLOCK fits;
 * wider class axes compute it again (same function, same bits) */
#define CE_KEEP_CLASSES 128

/* One call: its geometry, blocks per sample and the operands. */
typedef struct {
    kiln_ce_f32_geometry g;
    int64_t nb;
    const float *x, *w; /* w: NULL or C weights, g.wst elements apart */
    const int64_t *t;
} ce32;

static void ce32_init(ce32 *p, const kiln_ce_f32_geometry *geo, const kiln_tensor *x, const kiln_tensor *t,
                      const kiln_tensor *w) {
    p->g = *geo;
    p->nb = (geo->S + CE_BLOCK - 1) / CE_BLOCK;
    p->x = (const float *)kiln__ptr(x);
    p->t = (const int64_t *)kiln__ptr(t);
    p->w = w ? (const float *)kiln__ptr(w) : NULL;
}

/* Per pixel i of the block at xp (len pixels, class stride S): the max over classes
 * (a NaN logit poisons the sum below instead), then sum_c exp(x_c - max) in class order;
 * e (if not NULL) keeps the exp values, C rows of CE_BLOCK; xt (if not NULL) gets the
 * logit of class tc (of class 0 where tc < 0), picked by selects, not gathered. */
static KILN_ALWAYS_INLINE void block_max_sum(const ce32 *p, const float *xp, int64_t len, const int32_t *tc,
                                                float *m, float *s, float *e, float *xt) {
    const int64_t C = p->g.C, S = p->g.S;
    for (int64_t i = 0; i < len; i++) m[i] = xp[i];
    if (xt)
        for (int64_t i = 0; i < len; i++) xt[i] = xp[i];
    for (int64_t c = 1; c < C; c++) {
        const float *row = xp + c * S;
        for (int64_t i = 0; i < len; i++) m[i] = row[i] > m[i] ? row[i] : m[i];
        if (xt) {
            const int32_t ci = (int32_t)c;
            for (int64_t i = 0; i < len; i++) xt[i] = tc[i] == ci ? row[i] : xt[i];
        }
    }
    for (int64_t i = 0; i < len; i++) s[i] = 0.0f;
    for (int64_t c = 0; c < C; c++) {
        const float *row = xp + c * S;
        if (e) {
            float *er = e + c * CE_BLOCK;
            for (int64_t i = 0; i < len; i++) {
                er[i] = kiln_fast_expf(row[i] - m[i]);
                s[i] += er[i];
            }
        } else {
            for (int64_t i = 0; i < len; i++) s[i] += kiln_fast_expf(row[i] - m[i]);
        }
    }
}

/* Class index (int, -1 when ignored), its weight (0 when ignored) and a keep mask. */
static KILN_ALWAYS_INLINE void block_targets(const ce32 *p, const int64_t *tp, int64_t len, int32_t *tc, float *wv,
                                             uint32_t *keep) {
    for (int64_t i = 0; i < len; i++) {
        int64_t t = tp[i];
        bool ok = t != p->g.ignore;
        int64_t tt = ok ? t : 0;
        float wt = p->w ? p->w[tt * p->g.wst] : 1.0f;
        tc[i] = ok ? (int32_t)t : -1;
        wv[i] = ok ? wt : 0.0f;
        keep[i] = ok ? 0xffffffffu : 0u;
    }
}

/* Sum of a block's floats in double, four chains (the order is fixed, so results repeat). */
static KILN_ALWAYS_INLINE double block_sum(const float *v, int64_t len) {
    double a[4] = {0, 0, 0, 0};
    int64_t i = 0;
    for (; i + 4 <= len; i += 4)
        for (int k = 0; k < 4; k++) a[k] += (double)v[i + k];
    for (; i < len; i++) a[0] += (double)v[i];
    return (a[0] + a[1]) + (a[2] + a[3]);
}

/* Class-index scans over a chunk (int64 compares vectorise from AVX2 on): the number of
 * targets that are not ignore_index, and of those outside [0,C) that are not ignored
 * (not_ignoring: every value outside counts). */
#define CE_SCAN_CHUNK 8192
static KILN_ALWAYS_INLINE void scan_chunk(const int64_t *t, int64_t len, int64_t C, int64_t ignore,
                                             int not_ignoring, int64_t *kept, int64_t *bad) {
    int64_t k = 0, b = 0;
    for (int64_t i = 0; i < len; i++) {
        k += t[i] != ignore;
        b += ((uint64_t)t[i] >= (uint64_t)C) & ((t[i] != ignore) | not_ignoring);
    }
    *kept += k;
    *bad += b;
}
KILN_ISA_DEFINE(scan_chunk_base, scan_chunk_avx2, scan_chunk_avx512,
                (const int64_t *t, int64_t len, int64_t C, int64_t ignore, int not_ignoring, int64_t *kept,
                 int64_t *bad),
                scan_chunk(t, len, C, ignore, not_ignoring, kept, bad))

void kiln__class_index_scan(const int64_t *t, int64_t n, int64_t C, bool allow_ignore, int64_t ignore_index,
                            int64_t *kept, int64_t *bad) {
    int64_t k = 0, b = 0;
    const int64_t nchunks = (n + CE_SCAN_CHUNK - 1) / CE_SCAN_CHUNK;
    void (*fn)(const int64_t *, int64_t, int64_t, int64_t, int, int64_t *, int64_t *) =
        KILN_ISA_SELECT(scan_chunk_base, scan_chunk_avx2, scan_chunk_avx512);
#pragma omp parallel for schedule(static) reduction(+ : k, b) if (n > 65536)
    for (int64_t j = 0; j < nchunks; j++) {
        int64_t i0 = j * CE_SCAN_CHUNK;
        fn(t + i0, n - i0 < CE_SCAN_CHUNK ? n - i0 : CE_SCAN_CHUNK, C, ignore_index, !allow_ignore, &k, &b);
    }
    *kept = k;
    *bad = b;
}

/* One block b of the forward: its losses to out (none) or its sums to acc, wsum. */
static KILN_ALWAYS_INLINE void fwd_block(const ce32 *pp, int64_t b, float *out, double *acc, double *wsum) {
    const ce32 p = *pp;
    int64_t n = b / p.nb, s0 = (b % p.nb) * CE_BLOCK, len = p.g.S - s0 < CE_BLOCK ? p.g.S - s0 : CE_BLOCK;
    const float *xp = p.x + n * p.g.C * p.g.S + s0;
    float m[CE_BLOCK], s[CE_BLOCK], ls[CE_BLOCK], wv[CE_BLOCK], sm[CE_BLOCK], loss[CE_BLOCK], xt[CE_BLOCK];
    int32_t tc[CE_BLOCK];
    uint32_t keep[CE_BLOCK];
    block_targets(&p, p.t + n * p.g.S + s0, len, tc, wv, keep);
    block_max_sum(&p, xp, len, tc, m, s, NULL, xt);
    for (int64_t i = 0; i < len; i++) ls[i] = kiln_fast_logf(s[i]);
    if (p.g.smooth) {
        for (int64_t i = 0; i < len; i++) sm[i] = 0.0f;
        for (int64_t c = 0; c < p.g.C; c++) {
            const float *row = xp + c * p.g.S;
            float wc = p.w ? p.w[c * p.g.wst] : 1.0f;
            for (int64_t i = 0; i < len; i++) sm[i] += wc * ((row[i] - m[i]) - ls[i]);
        }
    }
    for (int64_t i = 0; i < len; i++) loss[i] = -(p.g.c1 * wv[i]) * ((xt[i] - m[i]) - ls[i]);
    if (p.g.smooth)
        for (int64_t i = 0; i < len; i++) loss[i] = loss[i] - p.g.ce * sm[i];
    for (int64_t i = 0; i < len; i++) loss[i] = kiln_fm_float(kiln_fm_bits(loss[i]) & keep[i]); /* ignored: +0 */
    if (out) {
        for (int64_t i = 0; i < len; i++) out[n * p.g.S + s0 + i] = loss[i];
    } else {
        *acc += block_sum(loss, len);
        *wsum += block_sum(wv, len);
    }
}

KILN_ISA_DEFINE(fwd_block_base, fwd_block_avx2, fwd_block_avx512,
                (const ce32 *p, int64_t b, float *out, double *acc, double *wsum),
                fwd_block(p, b, out, acc, wsum))

/* Forward: out (none: position-shaped, dense) or the 0-d reduced loss. */
kiln_status kiln__ce_f32_forward(const kiln_op_call *call, const kiln_ce_f32_geometry *geo) {
    const kiln_ce_attrs *at = call->attrs;
    ce32 p;
    ce32_init(&p, geo, call->in[0], call->in[1], call->in[2]);
    bool none = at->reduction == 0;
    float *out = (float *)kiln__ptr(call->out);
    double acc = 0, wsum = 0;
    const int64_t nblocks = p.g.N * p.nb;
    void (*blk)(const ce32 *, int64_t, float *, double *, double *) =
        KILN_ISA_SELECT(fwd_block_base, fwd_block_avx2, fwd_block_avx512);
#pragma omp parallel for schedule(static) reduction(+ : acc, wsum) if (p.g.N * p.g.S * p.g.C > 32768)
    for (int64_t b = 0; b < nblocks; b++) blk(&p, b, none ? out : NULL, &acc, &wsum);
    if (!none) *out = (float)(at->reduction == 1 ? acc / wsum : acc);
    return KILN_STATUS_OK;
}

/* One block b of the backward. */
static KILN_ALWAYS_INLINE void bwd_block(const ce32 *pp, int64_t b, const float *gp, int64_t gstep, float scale,
                                            float wall, float *out) {
    const ce32 p = *pp;
    const bool keep_e = p.g.C <= CE_KEEP_CLASSES;
    int64_t n = b / p.nb, s0 = (b % p.nb) * CE_BLOCK, len = p.g.S - s0 < CE_BLOCK ? p.g.S - s0 : CE_BLOCK;
    const float *xp = p.x + n * p.g.C * p.g.S + s0;
    float *op = out + n * p.g.C * p.g.S + s0;
    const float *gb = gp + gstep * (n * p.g.S + s0);
    float m[CE_BLOCK], s[CE_BLOCK], wv[CE_BLOCK], a[CE_BLOCK], bs[CE_BLOCK];
    float e[keep_e ? CE_KEEP_CLASSES * CE_BLOCK : 1];
    int32_t tc[CE_BLOCK];
    uint32_t keep[CE_BLOCK];
    block_targets(&p, p.t + n * p.g.S + s0, len, tc, wv, keep);
    block_max_sum(&p, xp, len, tc, m, s, keep_e ? e : NULL, NULL);
    for (int64_t i = 0; i < len; i++) {
        float gi = gb[gstep * i] * scale;
        a[i] = gi * (p.g.c1 * wv[i]);
        bs[i] = gi * p.g.ce;
        s[i] = 1.0f / s[i];
    }
    for (int64_t c = 0; c < p.g.C; c++) {
        const float *row = xp + c * p.g.S;
        const float *er = e + c * CE_BLOCK;
        float *orow = op + c * p.g.S;
        const float wc = p.w ? p.w[c * p.g.wst] : 1.0f;
        /* one loop per case, each vectorised; the same operations per pixel. The onehot
         * term is left to the loop below: pr - 0 is pr bit for bit, and a select in
         * here would make gcc branch (it folds the pr - 0 arm) */
#define CE_GRAD(EXP, SMOOTH)                                                              \
    for (int64_t i = 0; i < len; i++) {                                                   \
        float pr = (EXP) * s[i];                                                          \
        float v = a[i] * pr;                                                              \
        if (SMOOTH) v = v + bs[i] * (wall * pr - wc);                                     \
        orow[i] = kiln_fm_float(kiln_fm_bits(v) & keep[i]);                               \
    }
        if (keep_e && !p.g.smooth) CE_GRAD(er[i], 0)
        else if (keep_e) CE_GRAD(er[i], 1)
        else if (!p.g.smooth) CE_GRAD(kiln_fast_expf(row[i] - m[i]), 0)
        else CE_GRAD(kiln_fast_expf(row[i] - m[i]), 1)
#undef CE_GRAD
    }
    /* the target class of each kept pixel: a * (pr - 1) (+ the smoothing term) */
    for (int64_t i = 0; i < len; i++) {
        if (tc[i] < 0) continue;
        int64_t c = tc[i];
        float ex = keep_e ? e[c * CE_BLOCK + i] : kiln_fast_expf(xp[c * p.g.S + i] - m[i]);
        float pr = ex * s[i];
        float v = a[i] * (pr - 1.0f);
        if (p.g.smooth) v = v + bs[i] * (wall * pr - (p.w ? p.w[c * p.g.wst] : 1.0f));
        op[c * p.g.S + i] = v;
    }
}

KILN_ISA_DEFINE(bwd_block_base, bwd_block_avx2, bwd_block_avx512,
                (const ce32 *p, int64_t b, const float *gp, int64_t gstep, float scale, float wall, float *out),
                bwd_block(p, b, gp, gstep, scale, wall, out))

/* Backward (wrt the input): out = g * scale * ((1-eps) w_t (softmax - onehot)
 * + eps/C (sum_c w_c * softmax - w_c)), 0 at ignored pixels. g: 0-d or dense. */
kiln_status kiln__ce_f32_backward(const kiln_op_call *call, const kiln_ce_f32_geometry *geo) {
    const kiln_ce_attrs *at = call->attrs;
    ce32 p;
    ce32_init(&p, geo, call->in[1], call->in[2], call->in[3]);
    float *out = (float *)kiln__ptr(call->out);
    const float *gp = (const float *)kiln__ptr(call->in[0]);
    const int64_t gstep = p.g.gstep, npos = p.g.npos;
    double div = 1;
    if (at->reduction == 1) { /* summed weights of the targets not ignored */
        div = 0;
        if (!p.w) {
            int64_t kept, bad;
            kiln__class_index_scan(p.t, npos, p.g.C, true, p.g.ignore, &kept, &bad);
            div = (double)kept;
        } else {
#pragma omp parallel for schedule(static) reduction(+ : div) if (npos > 32768)
            for (int64_t q = 0; q < npos; q++)
                if (p.t[q] != p.g.ignore) div += p.w[p.t[q] * p.g.wst];
        }
    }
    const float scale = (float)(1.0 / div);
    float wall = 0.0f; /* summed class weights, in class order as CUDA's thread */
    for (int64_t c = 0; c < p.g.C; c++) wall += p.w ? p.w[c * p.g.wst] : 1.0f;
    void (*blk)(const ce32 *, int64_t, const float *, int64_t, float, float, float *) =
        KILN_ISA_SELECT(bwd_block_base, bwd_block_avx2, bwd_block_avx512);
    const int64_t nblocks = p.g.N * p.nb;
#pragma omp parallel for schedule(static) if (npos * p.g.C > 32768)
    for (int64_t b = 0; b < nblocks; b++) blk(&p, b, gp, gstep, scale, wall, out);
    return KILN_STATUS_OK;
}

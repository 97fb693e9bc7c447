/* The CNN-layer CUDA kernels (kernels/cuda/pooling.cu, upsample.cu, conv2d.cu) run
 * through the emulator against the CPU kernels, bit for bit: max and average pooling
 * and nearest and bilinear upsampling, forward and backward (the gather backward
 * passes add in the CPU's order; scale-factor upsampling also against torch's values),
 * on strided inputs, with planes that are not
 * multiples of the block size; and im2col / col2im / the bias epilogue against
 * reference loops written here. */
#include "emu/emu_compare.h"
#include "../kernels/cpu/layers.h"
#include "../kernels/cuda/launch_layers.h"
#include "fixtures/numerics_ref.h"

TestSuite(cuda_emu_layers, .init = kiln_test_setup, .fini = kiln_test_teardown);

extern const kiln_op_def kiln_op_avg_pool2d;
extern const kiln_op_def kiln_op_avg_pool2d_backward;
extern const kiln_op_def kiln_op_max_pool2d;
extern const kiln_op_def kiln_op_max_pool2d_backward;
extern const kiln_op_def kiln_op_upsample_bilinear2d;
extern const kiln_op_def kiln_op_upsample_bilinear2d_backward;
extern const kiln_op_def kiln_op_upsample_nearest2d;
extern const kiln_op_def kiln_op_upsample_nearest2d_backward;

kiln_status kiln_emu_cuda_max_pool2d(const kiln_op_call *call);
kiln_status kiln_emu_cuda_max_pool2d_backward(const kiln_op_call *call);
kiln_status kiln_emu_cuda_avg_pool2d(const kiln_op_call *call);
kiln_status kiln_emu_cuda_avg_pool2d_backward(const kiln_op_call *call);
kiln_status kiln_emu_cuda_upsample_nearest2d(const kiln_op_call *call);
kiln_status kiln_emu_cuda_upsample_nearest2d_backward(const kiln_op_call *call);
kiln_status kiln_emu_cuda_upsample_bilinear2d(const kiln_op_call *call);
kiln_status kiln_emu_cuda_upsample_bilinear2d_backward(const kiln_op_call *call);

static const ec_layout in_layouts[3] = {EC_CONTIG, EC_TRANSPOSED, EC_SLICED};

/* A CPU-kernel output (contiguous) for use as an input of a backward kernel. */
static kiln_tensor *cpu_out(const kiln_op_def *op, kiln_kernel_fn k, int nin, kiln_tensor *const *in,
                            const void *attrs, kiln_dtype dt, const int64_t *shape) {
    kiln_tensor *y = kiln_tensor_zeros(4, shape, dt, KILN_CPU);
    kiln_op_call c = {op, nin, in, y, attrs};
    cr_assert_eq(k(&c), KILN_STATUS_OK, "%s", kiln_last_error());
    return y;
}

typedef struct {
    int64_t h, w, ho, wo;
    kiln_pool2d_attrs at;
    const char *name;
} pool_case;

/* torch's floor-mode output size */
static int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d) { return (in + 2 * p - d * (k - 1) - 1) / s + 1; }

static void pool_cases(pool_case *c, int *n) {
    static const struct {
        int64_t k, s, p, d;
        int ceil_extra, include_pad;
    } cfg[] = {{3, 2, 1, 1, 0, 1}, {2, 2, 0, 1, 0, 1}, {3, 1, 1, 2, 0, 1}, {3, 2, 1, 1, 1, 0}, {5, 3, 2, 1, 1, 1},
               {1, 1, 0, 1, 0, 1}, {4, 3, 2, 1, 0, 0}};
    int m = 0;
    for (size_t i = 0; i < sizeof cfg / sizeof cfg[0]; i++) {
        pool_case *pc = &c[m++];
        pc->h = 37;
        pc->w = 29;
        pc->at = (kiln_pool2d_attrs){{cfg[i].k, cfg[i].k}, {cfg[i].s, cfg[i].s}, {cfg[i].p, cfg[i].p},
                                     {cfg[i].d, cfg[i].d}, cfg[i].include_pad};
        /* ceil mode's extra window (it starts inside the input, as torch requires) */
        pc->ho = pool_out(pc->h, cfg[i].k, cfg[i].s, cfg[i].p, cfg[i].d) + cfg[i].ceil_extra;
        pc->wo = pool_out(pc->w, cfg[i].k, cfg[i].s, cfg[i].p, cfg[i].d) + cfg[i].ceil_extra;
        pc->name = "pool";
    }
    *n = m;
}

KT_TEST(cuda_emu_layers, max_pool_forward_and_backward) {
    pool_case cases[8];
    int nc;
    pool_cases(cases, &nc);
    char what[160];
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (int k = 0; k < nc; k++)
            for (int l = 0; l < 3; l++) {
                pool_case *pc = &cases[k];
                const int64_t xs[4] = {2, 3, pc->h, pc->w}, ys[4] = {2, 3, pc->ho, pc->wo};
                /* values on a 0.5 grid: ties, where the first maximum must win */
                kiln_tensor *x = ec_input(dt, 4, xs, in_layouts[l], -4, 4, 0.5, 11 + (uint64_t)k);
                snprintf(what, sizeof what, "max_pool2d %s k%lld s%lld p%lld d%lld out %lldx%lld, x %s",
                         kiln_dtype_name(dt), (long long)pc->at.kernel[0], (long long)pc->at.stride[0],
                         (long long)pc->at.pad[0], (long long)pc->at.dilation[0], (long long)pc->ho,
                         (long long)pc->wo, ec_layout_names[in_layouts[l]]);
                ec_run(&kiln_op_max_pool2d, kiln_cpu_max_pool2d, kiln_emu_cuda_max_pool2d, 1, &x, &pc->at, dt, 4, ys,
                       EC_CONTIG, true, 0, 0, what);
                kiln_tensor *y = cpu_out(&kiln_op_max_pool2d, kiln_cpu_max_pool2d, 1, &x, &pc->at, dt, ys);
                kiln_tensor *gy = ec_input(dt, 4, ys, in_layouts[(l + 1) % 3], -1, 1, 0, 5 + (uint64_t)k);
                kiln_tensor *in[3] = {gy, x, y};
                strncat(what, " (backward)", sizeof what - strlen(what) - 1);
                ec_run(&kiln_op_max_pool2d_backward, kiln_cpu_max_pool2d_backward, kiln_emu_cuda_max_pool2d_backward,
                       3, in, &pc->at, dt, 4, xs, EC_CONTIG, true, 0, 0, what);
            }
    }
}

/* f32 max pooling of x, forward and backward (gy from gy_seed), bit for bit against the
 * emulated CUDA kernels. */
static void max_pool_exact(kiln_tensor *x, const kiln_pool2d_attrs *at, const int64_t *xs, const int64_t *ys,
                           uint64_t gy_seed, const char *what) {
    char w[160];
    ec_run(&kiln_op_max_pool2d, kiln_cpu_max_pool2d, kiln_emu_cuda_max_pool2d, 1, &x, at, KILN_F32, 4, ys, EC_CONTIG,
           true, 0, 0, what);
    kiln_tensor *y = cpu_out(&kiln_op_max_pool2d, kiln_cpu_max_pool2d, 1, &x, at, KILN_F32, ys);
    kiln_tensor *gy = ec_input(KILN_F32, 4, ys, EC_CONTIG, -1, 1, 0, gy_seed);
    kiln_tensor *in[3] = {gy, x, y};
    snprintf(w, sizeof w, "%s (backward)", what);
    ec_run(&kiln_op_max_pool2d_backward, kiln_cpu_max_pool2d_backward, kiln_emu_cuda_max_pool2d_backward, 3, in, at,
           KILN_F32, 4, xs, EC_CONTIG, true, 0, 0, w);
}

KT_TEST(cuda_emu_layers, max_pool_nan_wins) {
    const int64_t xs[4] = {1, 2, 9, 11}, ys[4] = {1, 2, 4, 5};
    kiln_tensor *x = ec_input(KILN_F32, 4, xs, EC_CONTIG, -2, 2, 0, 3);
    float *p = (float *)kiln__ptr(x);
    p[13] = NAN;
    p[120] = NAN;
    kiln_pool2d_attrs at = {{3, 3}, {2, 2}, {1, 1}, {1, 1}, 1};
    max_pool_exact(x, &at, xs, ys, 4, "max_pool2d with NaN");
}

/* The CPU's own 2x2 stride-2 loop: NaN in each tap position, -inf windows and ties. */
KT_TEST(cuda_emu_layers, max_pool_2x2_nan_inf_ties) {
    const int64_t xs[4] = {1, 2, 8, 9}, ys[4] = {1, 2, 4, 4};
    kiln_tensor *x = ec_input(KILN_F32, 4, xs, EC_CONTIG, -2, 2, 0.5, 8);
    float *p = (float *)kiln__ptr(x);
    p[0] = NAN;              /* window (0,0), first tap */
    p[3] = NAN;              /* window (0,1), second tap */
    p[9 + 4] = NAN;          /* window (0,2), third tap */
    p[9 + 7] = NAN;          /* window (0,3), fourth tap */
    p[18] = p[19] = p[27] = p[28] = -INFINITY; /* window (1,0): all -inf */
    p[72 + 2] = p[72 + 3] = p[81 + 2] = p[81 + 3] = 1.5f; /* plane 1, window (0,1): a four-way tie */
    kiln_pool2d_attrs at = {{2, 2}, {2, 2}, {0, 0}, {1, 1}, 1};
    max_pool_exact(x, &at, xs, ys, 9, "max_pool2d 2x2 with NaN, -inf and ties");
}

KT_TEST(cuda_emu_layers, avg_pool_forward_and_backward) {
    pool_case cases[8];
    int nc;
    pool_cases(cases, &nc);
    char what[160];
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (int k = 0; k < nc; k++) {
            pool_case *pc = &cases[k];
            if (pc->at.dilation[0] != 1) continue; /* avg_pool2d has no dilation */
            for (int inc = 0; inc < 2; inc++)
                for (int l = 0; l < 3; l++) {
                    kiln_pool2d_attrs at = pc->at;
                    at.count_include_pad = inc;
                    const int64_t xs[4] = {2, 3, pc->h, pc->w}, ys[4] = {2, 3, pc->ho, pc->wo};
                    kiln_tensor *x = ec_input(dt, 4, xs, in_layouts[l], -3, 3, 0, 21 + (uint64_t)k);
                    snprintf(what, sizeof what, "avg_pool2d %s k%lld s%lld p%lld include_pad %d out %lldx%lld, %s",
                             kiln_dtype_name(dt), (long long)at.kernel[0], (long long)at.stride[0],
                             (long long)at.pad[0], inc, (long long)pc->ho, (long long)pc->wo,
                             ec_layout_names[in_layouts[l]]);
                    ec_run(&kiln_op_avg_pool2d, kiln_cpu_avg_pool2d, kiln_emu_cuda_avg_pool2d, 1, &x, &at, dt, 4, ys,
                           EC_CONTIG, true, 0, 0, what);
                    kiln_tensor *gy = ec_input(dt, 4, ys, in_layouts[(l + 2) % 3], -1, 1, 0, 7 + (uint64_t)k);
                    kiln_tensor *in[2] = {gy, x};
                    strncat(what, " (backward)", sizeof what - strlen(what) - 1);
                    ec_run(&kiln_op_avg_pool2d_backward, kiln_cpu_avg_pool2d_backward,
                           kiln_emu_cuda_avg_pool2d_backward, 2, in, &at, dt, 4, xs, EC_CONTIG, true, 0, 0, what);
                }
        }
    }
}

typedef struct {
    int64_t h, w, ho, wo;
    bool factor; /* scale from a factor (1/f) rather than in/out */
    double fh, fw;
} up_case;

/* The attributes layers/upsample.c makes for these sizes and factors. */
static kiln_upsample2d_attrs up_attrs(const up_case *u, bool bilinear, bool align) {
    kiln_upsample2d_attrs at = {{0, 0}, align, {u->factor, u->factor}};
    const int64_t in[2] = {u->h, u->w}, out[2] = {u->ho, u->wo};
    const double f[2] = {u->fh, u->fw};
    for (int i = 0; i < 2; i++) {
        if (bilinear && align) at.scale[i] = out[i] > 1 ? (double)(in[i] - 1) / (double)(out[i] - 1) : 0;
        else at.scale[i] = u->factor ? 1.0 / f[i] : (double)in[i] / (double)out[i];
    }
    return at;
}

KT_TEST(cuda_emu_layers, upsample_forward_and_backward) {
    /* doubled, tripled, odd ratios up and down, a factor of 1.7, an output of size 1;
     * factors whose output is the input's size or twice it (1.2 and 2.2 on 3: torch
     * samples with 1/factor, bilinear copies), a factor of 2, and 3.88, whose nearest
     * indices differ between f32 and f64 */
    static const up_case cases[] = {{13, 11, 26, 22, false, 0, 0}, {7, 9, 21, 27, false, 0, 0},
                                    {13, 11, 29, 17, false, 0, 0}, {37, 29, 20, 16, false, 0, 0},
                                    {9, 10, 15, 17, true, 1.7, 1.7}, {5, 6, 1, 13, false, 0, 0},
                                    {3, 3, 3, 3, true, 1.2, 1.2},     {3, 5, 6, 6, true, 2.2, 1.2},
                                    {13, 11, 26, 22, true, 2.0, 2.0}, {2, 26, 3, 100, true, 1.5, 3.88}};
    char what[160];
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
            for (int mode = 0; mode < 3; mode++) { /* nearest, bilinear, bilinear align_corners */
                const up_case *u = &cases[k];
                bool bil = mode > 0, align = mode == 2;
                kiln_upsample2d_attrs at = up_attrs(u, bil, align);
                const int64_t xs[4] = {2, 3, u->h, u->w}, ys[4] = {2, 3, u->ho, u->wo};
                ec_layout l = in_layouts[(k + (size_t)mode) % 3];
                kiln_tensor *x = ec_input(dt, 4, xs, l, -3, 3, 0, 31 + k);
                snprintf(what, sizeof what, "upsample %s %s %lldx%lld -> %lldx%lld, %s",
                         mode == 0 ? "nearest" : align ? "bilinear align_corners" : "bilinear", kiln_dtype_name(dt),
                         (long long)u->h, (long long)u->w, (long long)u->ho, (long long)u->wo, ec_layout_names[l]);
                const kiln_op_def *fw = bil ? &kiln_op_upsample_bilinear2d : &kiln_op_upsample_nearest2d;
                const kiln_op_def *bw = bil ? &kiln_op_upsample_bilinear2d_backward : &kiln_op_upsample_nearest2d_backward;
                ec_run(fw, bil ? kiln_cpu_upsample_bilinear2d : kiln_cpu_upsample_nearest2d,
                       bil ? kiln_emu_cuda_upsample_bilinear2d : kiln_emu_cuda_upsample_nearest2d, 1, &x, &at, dt, 4,
                       ys, EC_CONTIG, true, 0, 0, what);
                kiln_tensor *gy = ec_input(dt, 4, ys, in_layouts[(k + 1) % 3], -1, 1, 0, 41 + k);
                kiln_tensor *in[2] = {gy, x};
                strncat(what, " (backward)", sizeof what - strlen(what) - 1);
                ec_run(bw, bil ? kiln_cpu_upsample_bilinear2d_backward : kiln_cpu_upsample_nearest2d_backward,
                       bil ? kiln_emu_cuda_upsample_bilinear2d_backward : kiln_emu_cuda_upsample_nearest2d_backward, 2,
                       in, &at, dt, 4, xs, EC_CONTIG, true, 0, 0, what);
            }
    }
}

/* The emulated kernels on torch's own scale-factor cases (tests/fixtures/gen_numerics.py):
 * forward and backward against torch's values, with test_upsample.c's tolerances. */
KT_TEST(cuda_emu_layers, upsample_scale_factor_as_torch) {
    char what[96];
    for (size_t k = 0; k < sizeof num_up_cases / sizeof num_up_cases[0]; k++) {
        const num_up_case *c = &num_up_cases[k];
        const up_case u = {c->h, c->w, c->ho, c->wo, true, c->fh, c->fw};
        kiln_upsample2d_attrs at = up_attrs(&u, c->bilinear, c->align_corners);
        const int64_t xs[4] = {1, 2, c->h, c->w}, ys[4] = {1, 2, c->ho, c->wo};
        for (int d = 0; d < 2; d++) {
            kiln_dtype dt = d ? KILN_F64 : KILN_F32;
            snprintf(what, sizeof what, "%s %s", c->name, kiln_dtype_name(dt));
            kiln_tensor *x = kt_tensor(dt, 4, xs, c->x), *gy = kt_tensor(dt, 4, ys, c->gy);
            kiln_tensor *y = kiln_tensor_zeros(4, ys, dt, KILN_CPU), *dx = kiln_tensor_zeros(4, xs, dt, KILN_CPU);
            kiln_op_call fc = {c->bilinear ? &kiln_op_upsample_bilinear2d : &kiln_op_upsample_nearest2d, 1, &x, y, &at};
            kiln_tensor *in[2] = {gy, x};
            kiln_op_call bc = {c->bilinear ? &kiln_op_upsample_bilinear2d_backward
                                           : &kiln_op_upsample_nearest2d_backward, 2, in, dx, &at};
            cr_assert_eq((c->bilinear ? kiln_emu_cuda_upsample_bilinear2d : kiln_emu_cuda_upsample_nearest2d)(&fc),
                         KILN_STATUS_OK, "%s: %s", what, kiln_last_error());
            cr_assert_eq((c->bilinear ? kiln_emu_cuda_upsample_bilinear2d_backward
                                      : kiln_emu_cuda_upsample_nearest2d_backward)(&bc),
                         KILN_STATUS_OK, "%s: %s", what, kiln_last_error());
            double ytol = !c->bilinear ? 0 : d ? 1e-12 : 1e-6, gtol = !c->bilinear ? 0 : d ? 1e-12 : 1e-5;
            kt_expect_values(y, c->y[d], 2 * c->ho * c->wo, ytol, ytol);
            kt_expect_values(dx, c->dx[d], 2 * c->h * c->w, gtol, gtol);
        }
    }
}

/* ---- im2col / col2im ------------------------------------------------------------------ */

static void ref_im2col(const double *x, double *col, const kiln_conv_geometry *g) {
    int64_t L = g->ho * g->wo;
    for (int64_t c = 0; c < g->cin; c++)
        for (int64_t ki = 0; ki < g->kh; ki++)
            for (int64_t kj = 0; kj < g->kw; kj++)
                for (int64_t oh = 0; oh < g->ho; oh++)
                    for (int64_t ow = 0; ow < g->wo; ow++) {
                        int64_t ih = oh * g->sh - g->ph + ki * g->dh, iw = ow * g->sw - g->pw + kj * g->dw;
                        bool in = ih >= 0 && ih < g->h && iw >= 0 && iw < g->w;
                        col[((c * g->kh + ki) * g->kw + kj) * L + oh * g->wo + ow] =
                            in ? x[(c * g->h + ih) * g->w + iw] : 0.0;
                    }
}

/* The adjoint, adding in the CPU kernel's order (c, ki, kj, oh, ow). */
static void ref_col2im(const double *col, double *x, const kiln_conv_geometry *g) {
    int64_t L = g->ho * g->wo;
    for (int64_t i = 0; i < g->cin * g->h * g->w; i++) x[i] = 0;
    for (int64_t c = 0; c < g->cin; c++)
        for (int64_t ki = 0; ki < g->kh; ki++)
            for (int64_t kj = 0; kj < g->kw; kj++)
                for (int64_t oh = 0; oh < g->ho; oh++)
                    for (int64_t ow = 0; ow < g->wo; ow++) {
                        int64_t ih = oh * g->sh - g->ph + ki * g->dh, iw = ow * g->sw - g->pw + kj * g->dw;
                        if (ih >= 0 && ih < g->h && iw >= 0 && iw < g->w)
                            x[(c * g->h + ih) * g->w + iw] += col[((c * g->kh + ki) * g->kw + kj) * L + oh * g->wo + ow];
                    }
}

KT_TEST(cuda_emu_layers, im2col_and_col2im) {
    /* cin h w kh kw sh sw ph pw dh dw, and ho wo (torch's size, or one more for a
     * "same"-style bottom/right padding) */
    static const struct {
        int64_t cin, h, w, kh, kw, sh, sw, ph, pw, dh, dw, extra;
    } cfg[] = {{3, 11, 9, 3, 3, 1, 1, 1, 1, 1, 1, 0}, {2, 13, 10, 3, 3, 2, 2, 1, 1, 1, 1, 0},
               {3, 12, 11, 3, 3, 1, 1, 2, 2, 2, 2, 0}, {5, 7, 9, 1, 1, 1, 1, 0, 0, 1, 1, 0},
               {2, 9, 8, 2, 2, 1, 1, 0, 0, 1, 1, 1}, {4, 17, 15, 3, 2, 2, 3, 0, 1, 1, 2, 0},
               {1, 23, 23, 5, 5, 3, 3, 2, 2, 1, 1, 0}};
    for (size_t k = 0; k < sizeof cfg / sizeof cfg[0]; k++)
        for (int d = 0; d < 2; d++) {
            kiln_conv_geometry g = {cfg[k].cin, cfg[k].h, cfg[k].w, 0, 0, cfg[k].kh, cfg[k].kw, cfg[k].sh,
                                    cfg[k].sw, cfg[k].ph, cfg[k].pw, cfg[k].dh, cfg[k].dw};
            g.ho = (g.h + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1 + cfg[k].extra;
            g.wo = (g.w + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1 + cfg[k].extra;
            kiln_dtype dt = d ? KILN_F64 : KILN_F32;
            int64_t nx = g.cin * g.h * g.w, ncol = g.cin * g.kh * g.kw * g.ho * g.wo;
            double *x = malloc(sizeof(double) * (size_t)nx), *col = malloc(sizeof(double) * (size_t)ncol);
            double *rx = malloc(sizeof(double) * (size_t)nx), *rcol = malloc(sizeof(double) * (size_t)ncol);
            uint64_t seed = 99 + k;
            /* float-representable values so the f32 run computes the same sums */
            for (int64_t i = 0; i < nx; i++) x[i] = (double)(float)(ec_uniform(&seed) * 4 - 2);
            for (int64_t i = 0; i < ncol; i++) col[i] = (double)(float)(ec_uniform(&seed) * 4 - 2);
            ref_im2col(x, rcol, &g);
            if (dt == KILN_F32) { /* the reference col2im in float, as the kernel adds */
                float *fc = malloc(sizeof(float) * (size_t)ncol), *fx = malloc(sizeof(float) * (size_t)nx);
                for (int64_t i = 0; i < ncol; i++) fc[i] = (float)col[i];
                int64_t L = g.ho * g.wo;
                for (int64_t i = 0; i < nx; i++) fx[i] = 0;
                for (int64_t c = 0; c < g.cin; c++)
                    for (int64_t ki = 0; ki < g.kh; ki++)
                        for (int64_t kj = 0; kj < g.kw; kj++)
                            for (int64_t oh = 0; oh < g.ho; oh++)
                                for (int64_t ow = 0; ow < g.wo; ow++) {
                                    int64_t ih = oh * g.sh - g.ph + ki * g.dh, iw = ow * g.sw - g.pw + kj * g.dw;
                                    if (ih >= 0 && ih < g.h && iw >= 0 && iw < g.w)
                                        fx[(c * g.h + ih) * g.w + iw] += fc[((c * g.kh + ki) * g.kw + kj) * L + oh * g.wo + ow];
                                }
                for (int64_t i = 0; i < nx; i++) rx[i] = fx[i];
                free(fc);
                free(fx);
            } else {
                ref_col2im(col, rx, &g);
            }
            /* run the kernels in dtype dt, into buffers pre-filled with a sentinel */
            size_t es = kiln_dtype_size(dt);
            char *dx = malloc(es * (size_t)nx), *dcol = malloc(es * (size_t)ncol);
            char *ox = malloc(es * (size_t)nx), *ocol = malloc(es * (size_t)(ncol + 1));
            for (int64_t i = 0; i < nx; i++) {
                if (dt == KILN_F32) ((float *)dx)[i] = (float)x[i], ((float *)ox)[i] = 77;
                else ((double *)dx)[i] = x[i], ((double *)ox)[i] = 77;
            }
            for (int64_t i = 0; i < ncol + 1; i++) {
                if (dt == KILN_F32) ((float *)ocol)[i] = 77;
                else ((double *)ocol)[i] = 77;
                if (i < ncol) {
                    if (dt == KILN_F32) ((float *)dcol)[i] = (float)col[i];
                    else ((double *)dcol)[i] = col[i];
                }
            }
            cr_assert_eq(kiln_emu_cuda_launch_im2col(dt, dx, ocol, &g, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
            cr_assert_eq(kiln_emu_cuda_launch_col2im(dt, dcol, ox, &g, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
            for (int64_t i = 0; i < ncol + 1; i++) {
                double v = dt == KILN_F32 ? ((float *)ocol)[i] : ((double *)ocol)[i];
                double e = i < ncol ? rcol[i] : 77; /* nothing written past the end */
                if (v != e) cr_assert_fail("im2col case %zu %s: element %lld is %g, expected %g", k,
                                           kiln_dtype_name(dt), (long long)i, v, e);
            }
            for (int64_t i = 0; i < nx; i++) {
                double v = dt == KILN_F32 ? ((float *)ox)[i] : ((double *)ox)[i];
                if (v != rx[i]) cr_assert_fail("col2im case %zu %s: element %lld is %.17g, expected %.17g", k,
                                               kiln_dtype_name(dt), (long long)i, v, rx[i]);
            }
            free(x), free(col), free(rx), free(rcol), free(dx), free(dcol), free(ox), free(ocol);
        }
}

KT_TEST(cuda_emu_layers, bias_and_relu_epilogue) {
    /* n 2, c 3, l 5: y + b[c], then ReLU (NaN stays NaN, as kiln_relu and torch.relu) */
    float y[30], b[3] = {0.5f, -1.0f, 2.0f};
    for (int i = 0; i < 30; i++) y[i] = (float)(i % 7) - 3.0f;
    y[4] = NAN;
    float plain[30], relu[30];
    memcpy(plain, y, sizeof y);
    memcpy(relu, y, sizeof y);
    cr_assert_eq(kiln_emu_cuda_launch_bias_act(KILN_F32, plain, b, 2, 3, 5, 0, NULL), KILN_STATUS_OK);
    cr_assert_eq(kiln_emu_cuda_launch_bias_act(KILN_F32, relu, b, 2, 3, 5, 1, NULL), KILN_STATUS_OK);
    for (int i = 0; i < 30; i++) {
        float e = y[i] + b[(i / 5) % 3];
        if (i == 4) {
            cr_expect(plain[i] != plain[i]);
            cr_expect(relu[i] != relu[i], "relu(NaN) = %g, torch gives NaN", relu[i]);
            continue;
        }
        cr_expect_eq(plain[i], e, "element %d: %g, expected %g", i, plain[i], e);
        cr_expect_eq(relu[i], e > 0 ? e : 0.0f, "element %d (relu)", i);
    }
    /* ReLU alone */
    double z[6] = {-1, 2, -0.5, 3, NAN, -0.0};
    cr_assert_eq(kiln_emu_cuda_launch_bias_act(KILN_F64, z, NULL, 1, 1, 6, 1, NULL), KILN_STATUS_OK);
    cr_expect(z[0] == 0 && z[1] == 2 && z[2] == 0 && z[3] == 3);
    cr_expect(z[4] != z[4] && z[5] == 0 && signbit(z[5]), "relu(NaN) = %g, relu(-0) = %g; torch: NaN, -0", z[4], z[5]);
}

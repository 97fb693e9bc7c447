/* cross_entropy and nll_loss: every fixture case (weights x ignore_index x
 * label_smoothing x reduction, index and probability targets, (N,C), a pixel
 * grid (N,C,H,W), an unbatched (C) input and an all-ignored grid) against PyTorch,
 * in f64 and f32, on contiguous and strided inputs; backward by gradcheck; large logits
 * (|x| = 1e4, 1e17) against torch on every path (tests/fixtures/gen_numerics.py). */
#include "support/kiln_test.h"
#include "fixtures/losses_ce.h"
#include "fixtures/numerics_ref.h"

#include <string.h>

TestSuite(cross_entropy, .init = kiln_test_setup, .fini = kiln_test_teardown);

typedef struct {
    const char *name;
    int ndim;
    const int64_t *shape;
    const double *x, *w, *prob, *logp;
    const int64_t *ta, *tb;
} grid;

static const grid grids[] = {
    {"mat", 2, ce_mat_shape, ce_mat_x, ce_mat_w, ce_mat_prob, ce_mat_logp, ce_mat_ta, ce_mat_tb},
    {"pix", 4, ce_pix_shape, ce_pix_x, ce_pix_w, ce_pix_prob, ce_pix_logp, ce_pix_ta, ce_pix_tb},
    {"vec", 1, ce_vec_shape, ce_vec_x, ce_vec_w, ce_vec_prob, ce_vec_logp, ce_vec_ta, ce_vec_tb},
    {"ign", 4, ce_ign_shape, ce_ign_x, ce_ign_w, ce_ign_prob, ce_ign_logp, ce_ign_ta, ce_ign_tb},
};

static const grid *find_grid(const char *name) {
    for (size_t i = 0; i < sizeof grids / sizeof grids[0]; i++)
        if (!strcmp(grids[i].name, name)) return &grids[i];
    cr_assert_fail("no grid %s", name);
    return NULL;
}

static kiln_tensor *index_target(const grid *g, const int64_t *vals) {
    int64_t pshape[8];
    int pn = 0;
    int cax = g->ndim == 1 ? 0 : 1;
    for (int d = 0; d < g->ndim; d++)
        if (d != cax) pshape[pn++] = g->shape[d];
    kiln_tensor *t = kiln_tensor_from_host(vals, pn, pshape, KILN_I64, KILN_CPU);
    cr_assert(t, "%s", kiln_last_error());
    return t;
}

/* The NCHW input as a permuted view of NHWC storage: strides that are not contiguous. */
static kiln_tensor *strided_copy(kiln_tensor *x) {
    if (kiln_tensor_ndim(x) != 4) return kiln_transpose(kiln_tensor_contiguous(kiln_transpose(x, 0, -1)), 0, -1);
    kiln_tensor *nhwc = kiln_tensor_contiguous(kiln_permute(x, (const int[]){0, 2, 3, 1}));
    kiln_tensor *v = kiln_permute(nhwc, (const int[]){0, 3, 1, 2});
    cr_assert(v && !kiln_tensor_is_contiguous(v));
    return v;
}

static void run_case(const ce_case *c, kiln_dtype dt, bool strided, double atol, double rtol) {
    const grid *g = find_grid(c->grid);
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *x = kt_tensor(dt, g->ndim, g->shape, !strcmp(c->loss, "nll") ? g->logp : g->x);
    if (strided && g->ndim > 1) x = strided_copy(x);
    kiln_tensor *t = !strcmp(c->target, "prob") ? kt_tensor(dt, g->ndim, g->shape, g->prob)
                     : index_target(g, !strcmp(c->target, "ta") ? g->ta : g->tb);
    int cax = g->ndim == 1 ? 0 : 1;
    kiln_cross_entropy_options o = kiln_cross_entropy_options_default();
    o.weight = c->weighted ? kt_tensor(dt, 1, &g->shape[cax], g->w) : NULL;
    o.ignore_index = c->ignore_index;
    o.label_smoothing = c->label_smoothing;
    o.reduction = (kiln_reduction)c->reduction;
    kiln_tensor *y = !strcmp(c->loss, "nll") ? kiln_nll_loss(x, t, &o) : kiln_cross_entropy(x, t, &o);
    cr_assert(y, "case %s/%s/%s w%d ig%lld ls%g r%d: %s", c->grid, c->loss, c->target, c->weighted,
              (long long)c->ignore_index, c->label_smoothing, c->reduction, kiln_last_error());
    if (c->reduction != KILN_REDUCTION_NONE) cr_expect_eq(kiln_tensor_ndim(y), 0);
    kt_expect_values(y, c->y, c->n, atol, rtol);
    kiln_scope_end(s);
}

/* f64: rounding only; f32: inputs rounded to 24 bits, losses of size ~1-10. */
KT_TEST(cross_entropy, every_fixture_case_f64) {
    for (size_t i = 0; i < sizeof ce_cases / sizeof ce_cases[0]; i++) run_case(&ce_cases[i], KILN_F64, false, 1e-12, 1e-10);
}

KT_TEST(cross_entropy, every_fixture_case_f32) {
    for (size_t i = 0; i < sizeof ce_cases / sizeof ce_cases[0]; i++) run_case(&ce_cases[i], KILN_F32, false, 1e-5, 1e-5);
}

KT_TEST(cross_entropy, every_fixture_case_strided_input) {
    for (size_t i = 0; i < sizeof ce_cases / sizeof ce_cases[0]; i++) run_case(&ce_cases[i], KILN_F64, true, 1e-12, 1e-10);
}

KT_TEST(cross_entropy, all_ignored_mean_is_nan_and_grad_zero) {
    const grid *g = find_grid("ign");
    kiln_tensor *x = kt_tensor(KILN_F64, g->ndim, g->shape, g->x);
    kiln_tensor_set_requires_grad(x, true);
    kiln_tensor *y = kiln_cross_entropy(x, index_target(g, g->ta), NULL);
    cr_assert(y && isnan(kiln_tensor_item(y)));
    cr_assert_eq(kiln_backward(y, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    double *gv = kt_values(kiln_tensor_grad(x));
    for (int64_t i = 0; i < kiln_tensor_numel(x); i++) cr_expect_eq(gv[i], 0.0, "grad[%lld] = %g", (long long)i, gv[i]);
    free(gv);
}

/* ---- backward ------------------------------------------------------------------ */

typedef struct {
    kiln_tensor *target; /* NULL: inputs[1] is the (probability) target */
    kiln_cross_entropy_options o;
    bool nll;
} ce_ctx;

static kiln_tensor *f_ce(kiln_tensor *const *in, void *vctx) {
    ce_ctx *c = vctx;
    kiln_tensor *t = c->target ? c->target : in[1];
    return c->nll ? kiln_nll_loss(in[0], t, &c->o) : kiln_cross_entropy(in[0], t, &c->o);
}

static void gradcheck_index(const char *gname, bool nll) {
    const grid *g = find_grid(gname);
    int cax = g->ndim == 1 ? 0 : 1;
    for (int r = 0; r < 3; r++)
        for (int w = 0; w < 2; w++)
            for (int ls = 0; ls < 2; ls++) {
                if (nll && ls) continue;
                kiln_scope *s = kiln_scope_begin();
                ce_ctx c = {index_target(g, g->ta), kiln_cross_entropy_options_default(), nll};
                c.o.reduction = (kiln_reduction)r;
                c.o.label_smoothing = ls ? 0.2 : 0.0;
                c.o.weight = w ? kt_tensor(KILN_F64, 1, &g->shape[cax], g->w) : NULL;
                kiln_tensor *x = kt_rand_input(g->ndim, g->shape, -2, 2);
                cr_expect(kt_gradcheck(f_ce, &c, 1, &x, 1e-6, 1e-8, 1e-6), "%s %s r%d w%d ls%d", gname,
                          nll ? "nll" : "ce", r, w, ls);
                kiln_scope_end(s);
            }
}

KT_TEST(cross_entropy, gradcheck_index_targets_matrix) { gradcheck_index("mat", false); }
KT_TEST(cross_entropy, gradcheck_index_targets_pixels) { gradcheck_index("pix", false); }
KT_TEST(cross_entropy, gradcheck_index_targets_vector) { gradcheck_index("vec", false); }
KT_TEST(cross_entropy, gradcheck_nll_loss) {
    gradcheck_index("mat", true);
    gradcheck_index("pix", true);
}

/* Probability targets: the gradient reaches both the logits and the target. */
KT_TEST(cross_entropy, gradcheck_probability_targets) {
    const grid *g = find_grid("pix");
    for (int r = 0; r < 3; r++)
        for (int w = 0; w < 2; w++) {
            kiln_scope *s = kiln_scope_begin();
            ce_ctx c = {NULL, kiln_cross_entropy_options_default(), false};
            c.o.reduction = (kiln_reduction)r;
            c.o.label_smoothing = 0.15;
            c.o.weight = w ? kt_tensor(KILN_F64, 1, &g->shape[1], g->w) : NULL;
            kiln_tensor *in[2] = {kt_rand_input(g->ndim, g->shape, -2, 2), kt_rand_input(g->ndim, g->shape, 0, 1)};
            cr_expect(kt_gradcheck(f_ce, &c, 2, in, 1e-6, 1e-8, 1e-6), "prob r%d w%d", r, w);
            kiln_scope_end(s);
        }
}

/* The gradient of 'none' arrives through an expanded (stride-0) view. */
KT_TEST(cross_entropy, backward_through_sum_of_none) {
    const grid *g = find_grid("pix");
    kiln_tensor *x = kt_tensor(KILN_F64, g->ndim, g->shape, g->x);
    kiln_tensor_set_requires_grad(x, true);
    kiln_cross_entropy_options o = kiln_cross_entropy_options_default();
    o.reduction = KILN_REDUCTION_NONE;
    kiln_tensor *t = index_target(g, g->ta);
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_cross_entropy(x, t, &o)), NULL), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    kiln_tensor *x2 = kt_tensor(KILN_F64, g->ndim, g->shape, g->x);
    kiln_tensor_set_requires_grad(x2, true);
    o.reduction = KILN_REDUCTION_SUM;
    cr_assert_eq(kiln_backward(kiln_cross_entropy(x2, t, &o), NULL), KILN_STATUS_OK);
    double *a = kt_values(kiln_tensor_grad(x));
    kt_expect_values(kiln_tensor_grad(x2), a, kiln_tensor_numel(x), 1e-14, 0);
    free(a);
}

/* Large enough for the threaded path (positions split over threads, the sum a
 * reduction): checked against a plain per-pixel reference written here. */
KT_TEST(cross_entropy, threaded_pixel_grid_matches_reference) {
    int64_t shape[4] = {2, 7, 48, 50}, N = 2, C = 7, S = 48 * 50;
    kiln_tensor *x = kiln_tensor_randn(4, shape, 0, 3, KILN_F64, KILN_CPU);
    kiln_tensor *w = kiln_tensor_rand(1, &C, 0.5, 2, KILN_F64, KILN_CPU);
    int64_t *tv = malloc((size_t)(N * S) * sizeof *tv);
    for (int64_t i = 0; i < N * S; i++) tv[i] = i % 11 == 3 ? -100 : (i * 7 + i / 5) % C;
    kiln_tensor *t = kiln_tensor_from_host(tv, 3, (int64_t[]){2, 48, 50}, KILN_I64, KILN_CPU);
    const double *xv = kiln_tensor_data(x), *wv = kiln_tensor_data(w);
    double num = 0, den = 0, eps = 0.1;
    for (int64_t n = 0; n < N; n++)
        for (int64_t s = 0; s < S; s++) {
            int64_t tc = tv[n * S + s];
            if (tc == -100) continue;
            double m = -INFINITY, z = 0, sm = 0;
            for (int64_t c = 0; c < C; c++) m = fmax(m, xv[(n * C + c) * S + s]);
            for (int64_t c = 0; c < C; c++) z += exp(xv[(n * C + c) * S + s] - m);
            double lse = m + log(z);
            for (int64_t c = 0; c < C; c++) sm -= wv[c] * (xv[(n * C + c) * S + s] - lse);
            num += (1 - eps) * -wv[tc] * (xv[(n * C + tc) * S + s] - lse) + eps / (double)C * sm;
            den += wv[tc];
        }
    free(tv);
    kiln_cross_entropy_options o = kiln_cross_entropy_options_default();
    o.weight = w;
    o.label_smoothing = eps;
    KT_EXPECT(kiln_cross_entropy(x, t, &o), 1e-12, 1e-10, {num / den});
    kiln_tensor *xf = kiln_tensor_cast(x, KILN_F32);
    o.weight = kiln_tensor_cast(w, KILN_F32);
    KT_EXPECT(kiln_cross_entropy(xf, t, &o), 1e-5, 1e-5, {num / den});
}

/* The float32 path (dense f32 input, kernels/cpu/cross_entropy_f32.c) against the double
 * path on the same values (an NCHW view of NHWC storage, rounded to float once at the
 * end): 2 x 7 x 5 x 37 pixels (blocks of 64 with a remainder), logits in [-4, 4],
 * every weight / ignore_index / label_smoothing combination.
 * Losses: each is log(sum_c e^(x_c - max)) - (x_t - max) (+ eps/C sum_c of such terms),
 * terms of magnitude <= 8 + log 7 < 16. The float path rounds x_t - max once, each e^
 * within 1 ulp, the 7-term sum within 3 ulp of it (so its log within 4 * 2^-24 absolute),
 * log itself 1 ulp, the difference once: a few ulp of 16 at most, so the bound is 8 ulp
 * of 16 = 8 * 2^-20 absolute. Gradients of the mean: a (softmax - onehot) with a = w_t /
 * sum of weights; softmax = e * (1/s) is within 4 ulp of 1 (e 1 ulp, s 3, the reciprocal
 * and product 1), so each gradient is within 8 ulp of 1 times max|a| = 8 * 2^-24 * max w
 * / (sum of weights). */
KT_TEST(cross_entropy, float32_path_matches_double_path) {
    const int64_t shape[4] = {2, 7, 5, 37}, nhwc[4] = {2, 5, 37, 7}, ps[3] = {2, 5, 37}, C = 7, npos = 2 * 5 * 37;
    kiln_tensor *xh = kiln_tensor_rand(4, nhwc, -4, 4, KILN_F32, KILN_CPU); /* NHWC storage */
    kiln_tensor *wt = kiln_tensor_rand(1, &C, 0.5, 2, KILN_F32, KILN_CPU);
    int64_t *tv = malloc((size_t)npos * sizeof *tv);
    for (int64_t i = 0; i < npos; i++) tv[i] = i % 9 == 4 ? 5 : (i * 3 + i / 7) % C; /* class 5 also as ignore */
    kiln_tensor *t = kiln_tensor_from_host(tv, 3, ps, KILN_I64, KILN_CPU);
    free(tv);
    for (int w = 0; w < 2; w++)
        for (int ig = 0; ig < 2; ig++)
            for (int ls = 0; ls < 2; ls++) {
                kiln_scope *s = kiln_scope_begin();
                kiln_tensor *xv = kiln_permute(xh, (const int[]){0, 3, 1, 2}); /* general path */
                kiln_tensor *xd = kiln_tensor_contiguous(xv);                    /* float path */
                cr_assert(!kiln_tensor_is_contiguous(xv) && kiln_tensor_is_contiguous(xd));
                kt_expect_shape(xd, 4, shape);
                kiln_cross_entropy_options o = kiln_cross_entropy_options_default();
                o.weight = w ? wt : NULL;
                o.ignore_index = ig ? 5 : -100;
                o.label_smoothing = ls ? 0.2 : 0.0;
                o.reduction = KILN_REDUCTION_NONE;
                double *ref = kt_values(kiln_cross_entropy(xv, t, &o));
                kt_expect_values(kiln_cross_entropy(xd, t, &o), ref, npos, 8 * 0x1p-20, 0);
                free(ref);
                /* gradients of the mean, each leaf through its own path */
                o.reduction = KILN_REDUCTION_MEAN;
                kiln_tensor *lh = kiln_tensor_clone(xh), *ld = kiln_tensor_clone(xd);
                kiln_tensor_set_requires_grad(lh, true);
                kiln_tensor_set_requires_grad(ld, true);
                cr_assert_eq(kiln_backward(kiln_cross_entropy(kiln_permute(lh, (const int[]){0, 3, 1, 2}), t, &o), NULL),
                             KILN_STATUS_OK, "%s", kiln_last_error());
                cr_assert_eq(kiln_backward(kiln_cross_entropy(ld, t, &o), NULL), KILN_STATUS_OK);
                double wsum = 0, wmax = w ? 2 : 1;
                double *tvv = kt_values(t);
                const float *wv = kiln_tensor_data(wt);
                for (int64_t i = 0; i < npos; i++)
                    if (!(ig && tvv[i] == 5)) wsum += w ? wv[(int64_t)tvv[i]] : 1;
                free(tvv);
                double *gref = kt_values(kiln_tensor_contiguous(kiln_permute(kiln_tensor_grad(lh), (const int[]){0, 3, 1, 2})));
                kt_expect_values(kiln_tensor_grad(ld), gref, npos * C, 8 * 0x1p-24 * wmax / wsum, 0);
                free(gref);
                kiln_scope_end(s);
            }
}

/* Fused log-softmax at large logits: (x - max) - log(sum) on every path, as torch; the
 * 1e17 row's loss is log 2 and its gradient [0.5, -0.5, 0, 0] (max + log(sum) is max
 * there). 'none' losses, dloss = 1. Paths: f64 and f32 general (double) paths ((N,C) of 20
 * classes and a strided input, for f32), the f32 path ((N,C) of 4 classes, (N,C,H,W)), and
 * probability targets with label smoothing. Tolerances: f64 1e-15 + 1e-15 |v| (x - max
 * exact, libm's exp and log); f32 within 1e-6 + 1e-6 |v| of torch's float32 results. */
static void ce_large(const char *what, kiln_tensor *x, kiln_tensor *t, double ls, const double *loss,
                     const double *dx, int64_t nloss, int64_t nx, kiln_dtype dt) {
    double tol = dt == KILN_F64 ? 1e-15 : 1e-6;
    kiln_tensor_set_requires_grad(x, true);
    kiln_cross_entropy_options o = kiln_cross_entropy_options_default();
    o.reduction = KILN_REDUCTION_NONE;
    o.label_smoothing = ls;
    kiln_tensor *l = kiln_cross_entropy(x, t, &o);
    cr_assert(l, "%s: %s", what, kiln_last_error());
    kt_expect_values(l, loss, nloss, tol, tol);
    cr_assert_eq(kiln_backward(kiln_sum_all(l), NULL), KILN_STATUS_OK, "%s: %s", what, kiln_last_error());
    kt_expect_values(kiln_tensor_contiguous(kiln_tensor_grad(x)), dx, nx, tol, tol);
}

KT_TEST(cross_entropy, large_logits_match_torch_on_every_path) {
    const int64_t rc[2] = {4, 4}, wide[2] = {4, 20}, pix[4] = {1, 4, 2, 2}, n4[1] = {4}, p22[3] = {1, 2, 2};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *t = kiln_tensor_from_host(ls_t, 1, n4, KILN_I64, KILN_CPU);
        kiln_tensor *tp = kiln_reshape(t, 3, p22);
        ce_large("(N,C)", kt_tensor(dt, 2, rc, ls_x), t, 0, d ? ls_ce_loss_f64 : ls_ce_loss_f32,
                 d ? ls_ce_dx_f64 : ls_ce_dx_f32, 4, 16, dt);
        ce_large("(N,C) strided", strided_copy(kt_tensor(dt, 2, rc, ls_x)), t, 0, d ? ls_ce_loss_f64 : ls_ce_loss_f32,
                 d ? ls_ce_dx_f64 : ls_ce_dx_f32, 4, 16, dt);
        ce_large("(N,C) of 20 classes", kt_tensor(dt, 2, wide, ls_wide_x), t, 0,
                 d ? ls_ce_wide_loss_f64 : ls_ce_wide_loss_f32, d ? ls_ce_wide_dx_f64 : ls_ce_wide_dx_f32, 4, 80, dt);
        /* the rows as the pixels of (1, 4, 2, 2): x[0, c, i, j] = row 2i+j, class c */
        kiln_tensor *xp = kiln_tensor_contiguous(kiln_reshape(kiln_transpose(kt_tensor(dt, 2, rc, ls_x), 0, 1), 4, pix));
        ce_large("(N,C,H,W)", kiln_tensor_detach(xp), tp, 0, d ? ls_pix_loss_f64 : ls_pix_loss_f32,
                 d ? ls_pix_dx_f64 : ls_pix_dx_f32, 4, 16, dt);
        ce_large("probability targets, smoothing 0.1", kt_tensor(dt, 2, rc, ls_x),
                 kt_tensor(dt, 2, rc, d ? ls_prob_t_f64 : ls_prob_t_f32), 0.1, d ? ls_prob_loss_f64 : ls_prob_loss_f32,
                 d ? ls_prob_dx_f64 : ls_prob_dx_f32, 4, 16, dt);
    }
}

/* bce and bce_with_logits: forward against PyTorch fixtures (weights, broadcast
 * weights, pos_weight over the class axis, every reduction, logits far in the
 * tails, probabilities exactly 0 and 1), f64 and f32, strided inputs; backward
 * for input, target, weight and pos_weight by gradcheck; relative accuracy on confident
 * logits (|x| up to 80, y 0, 1 and 1/4) against float64 values of torch's definition
 * (tests/fixtures/gen_numerics.py); bce's gradients at p = 0 and 1 as torch 1.13's. */
#include "support/kiln_test.h"
#include "fixtures/losses_misc.h"
#include "fixtures/numerics_ref.h"

#include <math.h>
#include <stdlib.h>

TestSuite(bce, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define T(dt, name) kt_tensor(dt, (int)(sizeof name##_shape / sizeof name##_shape[0]), name##_shape, name)
#define N(a) ((int64_t)(sizeof a / sizeof a[0]))

static const kiln_reduction reds[3] = {KILN_REDUCTION_NONE, KILN_REDUCTION_MEAN, KILN_REDUCTION_SUM};

/* tolerances: f64 rounding only; f32 inputs rounded to 24 bits (losses up to ~100) */
static void tols(kiln_dtype dt, double *atol, double *rtol) {
    *atol = dt == KILN_F64 ? 1e-12 : 2e-5;
    *rtol = dt == KILN_F64 ? 1e-10 : 2e-5;
}

static void check_bce(kiln_dtype dt) {
    const double *e_y[3] = {bce_y_none, bce_y_mean, bce_y_sum}, *e_w[3] = {bce_w_none, bce_w_mean, bce_w_sum};
    const double *e_wb[3] = {bce_wb_none, bce_wb_mean, bce_wb_sum};
    double at, rt;
    tols(dt, &at, &rt);
    for (int r = 0; r < 3; r++) {
        int64_t n = r ? 1 : N(bce_y_none);
        kiln_tensor *p = T(dt, m_p), *y = T(dt, m_y);
        kt_expect_values(kiln_bce(p, y, NULL, reds[r]), e_y[r], n, at, rt);
        kt_expect_values(kiln_bce(p, y, T(dt, m_w), reds[r]), e_w[r], n, at, rt);
        kt_expect_values(kiln_bce(p, y, T(dt, m_wb), reds[r]), e_wb[r], n, at, rt);
    }
}

KT_TEST(bce, forward_f64) { check_bce(KILN_F64); }
KT_TEST(bce, forward_f32) { check_bce(KILN_F32); }

static void check_bce_logits(kiln_dtype dt) {
    const double *e_y[3] = {bcel_y_none, bcel_y_mean, bcel_y_sum}, *e_w[3] = {bcel_w_none, bcel_w_mean, bcel_w_sum};
    const double *e_pw[3] = {bcel_pw_none, bcel_pw_mean, bcel_pw_sum};
    const double *e_wpw[3] = {bcel_wpw_none, bcel_wpw_mean, bcel_wpw_sum};
    const double *e_m[3] = {bcel_m_none, bcel_m_mean, bcel_m_sum};
    double at, rt;
    tols(dt, &at, &rt);
    for (int r = 0; r < 3; r++) {
        int64_t n = r ? 1 : N(bcel_y_none);
        kiln_tensor *x = T(dt, m_x), *y = T(dt, m_y);
        kt_expect_values(kiln_bce_with_logits(x, y, NULL, NULL, reds[r]), e_y[r], n, at, rt);
        kt_expect_values(kiln_bce_with_logits(x, y, T(dt, m_w), NULL, reds[r]), e_w[r], n, at, rt);
        kt_expect_values(kiln_bce_with_logits(x, y, NULL, T(dt, m_pw), reds[r]), e_pw[r], n, at, rt);
        kt_expect_values(kiln_bce_with_logits(x, y, T(dt, m_wb), T(dt, m_pw), reds[r]), e_wpw[r], n, at, rt);
        /* (N,C) with pos_weight (C) */
        kt_expect_values(kiln_bce_with_logits(T(dt, m_xm), T(dt, m_ym), NULL, T(dt, m_pwm), reds[r]), e_m[r],
                         r ? 1 : N(bcel_m_none), at, rt);
    }
}

KT_TEST(bce, with_logits_forward_f64) { check_bce_logits(KILN_F64); }
KT_TEST(bce, with_logits_forward_f32) { check_bce_logits(KILN_F32); }

/* Logits of +-40 and +-1000: the stable form gives finite, exact values. */
KT_TEST(bce, with_logits_is_stable_in_the_tails) {
    kiln_tensor *x = KT_F32(1, KT_SHAPE(4), {1000, -1000, 40, -40});
    kiln_tensor *y = KT_F32(1, KT_SHAPE(4), {0, 1, 1, 1});
    KT_EXPECT(kiln_bce_with_logits(x, y, NULL, NULL, KILN_REDUCTION_NONE), 1e-6, 1e-6,
              {1000, 1000, 4.24835426e-18, 40});
}

/* p = 0 or 1 with the wrong label: PyTorch's clamp at -100, not inf. */
KT_TEST(bce, clamps_log_at_minus_100) {
    kiln_tensor *p = KT_F64(1, KT_SHAPE(4), {0, 1, 0, 1});
    kiln_tensor *y = KT_F64(1, KT_SHAPE(4), {1, 0, 0, 1});
    KT_EXPECT(kiln_bce(p, y, NULL, KILN_REDUCTION_NONE), 0, 0, {100, 100, 0, 0});
}

KT_TEST(bce, strided_inputs) {
    kiln_tensor *p = kiln_transpose(T(KILN_F64, m_p), 1, 3), *y = kiln_transpose(T(KILN_F64, m_y), 1, 3);
    kiln_tensor *x = kiln_transpose(T(KILN_F64, m_x), 1, 3);
    cr_assert(!kiln_tensor_is_contiguous(p));
    kt_expect_values(kiln_bce(p, y, NULL, KILN_REDUCTION_SUM), bce_y_sum, 1, 1e-12, 1e-10);
    kt_expect_values(kiln_bce_with_logits(x, y, NULL, NULL, KILN_REDUCTION_MEAN), bcel_y_mean, 1, 1e-12, 1e-10);
}

/* ---- backward --------------------------------------------------------------------- */

typedef struct {
    kiln_reduction r;
    bool logits, weight, pos_weight;
} bce_ctx;

static kiln_tensor *f_bce(kiln_tensor *const *in, void *vctx) {
    bce_ctx *c = vctx;
    kiln_tensor *w = c->weight ? in[2] : NULL, *pw = c->pos_weight ? in[3] : NULL;
    return c->logits ? kiln_bce_with_logits(in[0], in[1], w, pw, c->r) : kiln_bce(in[0], in[1], w, c->r);
}

KT_TEST(bce, gradcheck_bce_input_target_weight) {
    for (int r = 0; r < 3; r++) {
        bce_ctx c = {reds[r], false, true, false};
        kiln_tensor *in[3] = {kt_rand_input(3, (int64_t[]){2, 3, 4}, 0.05, 0.95),
                              kt_rand_input(3, (int64_t[]){2, 3, 4}, 0, 1), kt_rand_input(2, (int64_t[]){3, 1}, 0.5, 2)};
        cr_expect(kt_gradcheck(f_bce, &c, 3, in, 1e-7, 1e-7, 1e-5), "reduction %d", r);
    }
}

KT_TEST(bce, gradcheck_bce_with_logits_all_inputs) {
    for (int r = 0; r < 3; r++) {
        bce_ctx c = {reds[r], true, true, true};
        /* weight broadcast over the batch, pos_weight (C,1,1) over an (N,C,H,W) input */
        kiln_tensor *in[4] = {kt_rand_input(4, (int64_t[]){2, 3, 2, 2}, -4, 4),
                              kt_rand_input(4, (int64_t[]){2, 3, 2, 2}, 0, 1),
                              kt_rand_input(4, (int64_t[]){1, 3, 2, 2}, 0.5, 2),
                              kt_rand_input(3, (int64_t[]){3, 1, 1}, 0.2, 3)};
        cr_expect(kt_gradcheck(f_bce, &c, 4, in, 1e-6, 1e-8, 1e-6), "reduction %d", r);
    }
}

KT_TEST(bce, gradcheck_bce_with_logits_plain) {
    bce_ctx c = {KILN_REDUCTION_MEAN, true, false, false};
    kiln_tensor *in[2] = {kt_rand_input(2, (int64_t[]){5, 3}, -6, 6), kt_rand_input(2, (int64_t[]){5, 3}, 0, 1)};
    cr_expect(kt_gradcheck(f_bce, &c, 2, in, 1e-6, 1e-8, 1e-6));
}

/* The fused backward equals sigmoid(x) - y for the plain mean case, by hand. */
KT_TEST(bce, with_logits_grad_is_sigmoid_minus_target) {
    kiln_tensor *x = KT_F64(1, KT_SHAPE(2), {0, 2});
    kiln_tensor *y = KT_F64(1, KT_SHAPE(2), {1, 0});
    kiln_tensor_set_requires_grad(x, true);
    cr_assert_eq(kiln_backward(kiln_bce_with_logits(x, y, NULL, NULL, KILN_REDUCTION_MEAN), NULL), KILN_STATUS_OK);
    KT_EXPECT(kiln_tensor_grad(x), 1e-15, 0, {(0.5 - 1) / 2, (1 / (1 + exp(-2.0))) / 2});
}

/* Large enough for the threaded path; a plain reference loop written here. */
KT_TEST(bce, threaded_sum_matches_reference) {
    int64_t shape[2] = {5, 9001};
    kiln_tensor *x = kiln_tensor_randn(2, shape, 0, 4, KILN_F64, KILN_CPU);
    kiln_tensor *y = kiln_tensor_rand(2, shape, 0, 1, KILN_F64, KILN_CPU);
    kiln_tensor *pw = kiln_tensor_rand(1, &shape[1], 0.5, 3, KILN_F64, KILN_CPU);
    const double *xv = kiln_tensor_data(x), *yv = kiln_tensor_data(y), *pv = kiln_tensor_data(pw);
    double ref = 0;
    for (int64_t i = 0; i < shape[0] * shape[1]; i++) {
        double xi = xv[i], yi = yv[i], p = pv[i % shape[1]];
        ref += (1 - yi) * xi + (1 + (p - 1) * yi) * (log1p(exp(-fabs(xi))) + fmax(-xi, 0));
    }
    KT_EXPECT(kiln_bce_with_logits(x, y, NULL, pw, KILN_REDUCTION_SUM), 1e-9, 1e-12, {ref});
    kiln_tensor_set_requires_grad(x, true);
    cr_assert_eq(kiln_backward(kiln_bce_with_logits(x, y, NULL, pw, KILN_REDUCTION_SUM), NULL), KILN_STATUS_OK);
    double *g = kt_values(kiln_tensor_grad(x));
    for (int64_t i = 0; i < shape[0] * shape[1]; i += 997) {
        double p = pv[i % shape[1]], s = 1 / (1 + exp(-xv[i]));
        cr_expect(fabs(g[i] - ((1 + (p - 1) * yv[i]) * s - p * yv[i])) < 1e-12, "grad[%lld]", (long long)i);
    }
    free(g);
}

/* Relative error of every element of t against want, at most rtol. */
static void expect_relative(const char *what, kiln_tensor *t, const double *want, int64_t n, double rtol) {
    cr_assert(t, "%s: %s", what, kiln_last_error());
    double *v = kt_values(t), worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = want[i] == 0 ? fabs(v[i]) : fabs(v[i] - want[i]) / fabs(want[i]);
        if (!(e <= worst)) worst = e, at = i;
    }
    cr_expect(worst <= rtol, "%s: element %lld (x %g, y %g) is %.9g, torch's definition gives %.17g: relative error "
              "%.3g > %.3g", what, (long long)at, bl_x[at], bl_y[at], v[at], want[at], worst, rtol);
    free(v);
}

/* bce_with_logits as a sum of terms >= 0 and its gradient from the small side of the
 * sigmoid: full relative accuracy where the loss or gradient is tiny (x = -80, y = 0: loss
 * and gradient e^-80). f32 (the float path and, with pos_weight, the general walk): 3 ulps
 * (3.6e-7; the fast exp is within 1 ulp and log1p 1.5, the rest is one product and one sum
 * of terms of one sign; x and y are exact in f32). f64: 3 ulps (libm's exp and log1p). */
KT_TEST(bce, with_logits_confident_logits_keep_relative_accuracy) {
    const int64_t n[1] = {BL_N}, one[1] = {1};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        double rtol = d ? 6.7e-16 : 3.6e-7;
        for (int pw = 0; pw < 2; pw++) {
            kiln_tensor *x = kt_tensor(dt, 1, n, bl_x), *y = kt_tensor(dt, 1, n, bl_y);
            kiln_tensor *pwt = pw ? kt_tensor(dt, 1, one, (const double[]){BL_PW}) : NULL;
            kiln_tensor_set_requires_grad(x, true);
            kiln_tensor *l = kiln_bce_with_logits(x, y, NULL, pwt, KILN_REDUCTION_NONE);
            char what[96];
            snprintf(what, sizeof what, "bce_with_logits %s%s", kiln_dtype_name(dt), pw ? ", pos_weight" : "");
            expect_relative(what, l, pw ? bl_loss_pw : bl_loss, BL_N, rtol);
            cr_assert_eq(kiln_backward(kiln_sum_all(l), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
            strncat(what, ", gradient", sizeof what - strlen(what) - 1);
            expect_relative(what, kiln_tensor_grad(x), pw ? bl_grad_pw : bl_grad, BL_N, rtol);
        }
    }
}

/* bce's gradients where p is 0, 1 or within 1e-7 of them, every reduction, with and
 * without weights, against torch 1.13: the input's g (p - y) / max((1 - p) p, 1e-12f), then
 * the weight, then / n, is torch's operation for operation (the float 1e-12 in f64 too:
 * 1/9.99999996e-13 = 1.000000004e12 at p = 0, y = 1), so it must agree bit for bit. The
 * target's -logit(p) is +inf at p = 0 and -inf at p = 1 (not the loss's clamp at +-100);
 * finite values within 4 ulps (torch's vectorised log is another libm's). */
KT_TEST(bce, gradients_at_p_zero_and_one_match_torch) {
    const int64_t n[1] = {BCE_N};
    for (int d = 0; d < 2; d++)
        for (int r = 0; r < 3; r++)
            for (int uw = 0; uw < 2; uw++) {
                kiln_dtype dt = d ? KILN_F64 : KILN_F32;
                kiln_tensor *x = kt_tensor(dt, 1, n, bce_p), *y = kt_tensor(dt, 1, n, bce_y);
                kiln_tensor_set_requires_grad(x, true);
                kiln_tensor_set_requires_grad(y, true);
                kiln_tensor *l = kiln_bce(x, y, uw ? kt_tensor(dt, 1, n, bce_w) : NULL, reds[r]);
                cr_assert(l, "%s", kiln_last_error());
                kiln_tensor *g = r ? kt_tensor(dt, 0, NULL, bce_g) : kt_tensor(dt, 1, n, bce_g);
                cr_assert_eq(kiln_backward(l, g), KILN_STATUS_OK, "%s", kiln_last_error());
                double *gx = kt_values(kiln_tensor_grad(x)), *gy = kt_values(kiln_tensor_grad(y));
                const double *wx = bce_gx[d][r][uw], *wy = bce_gy[d][r][uw];
                double ulp = d ? 0x1p-52 : 0x1p-23;
                for (int i = 0; i < BCE_N; i++) {
                    cr_expect(gx[i] == wx[i] && signbit(gx[i]) == signbit(wx[i]),
                              "%s reduction %d weight %d, p %g y %g: d/dp %.17g, torch %.17g", kiln_dtype_name(dt), r,
                              uw, bce_p[i], bce_y[i], gx[i], wx[i]);
                    bool ok = isinf(wy[i]) ? gy[i] == wy[i] : fabs(gy[i] - wy[i]) <= 4 * ulp * fabs(wy[i]);
                    cr_expect(ok, "%s reduction %d weight %d, p %g y %g: d/dy %.17g, torch %.17g", kiln_dtype_name(dt),
                              r, uw, bce_p[i], bce_y[i], gy[i], wy[i]);
                }
                free(gx);
                free(gy);
            }
}

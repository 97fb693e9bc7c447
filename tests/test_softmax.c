/* softmax and log_softmax: hand-computed values, numerical stability, the per-pixel
 * softmax over the channel axis of NCHW (against a plain double loop), views,
 * gradients through kt_gradcheck, and the size-1 axis guardrail; log_softmax at large
 * logits (|x| = 1e4 and 1e17) against torch (tests/fixtures/gen_numerics.py). */
#include "support/kiln_test.h"
#include "fixtures/numerics_ref.h"

#include <stdlib.h>

TestSuite(softmax, .init = kiln_test_setup, .fini = kiln_test_teardown);

/* softmax([1,2,3]) = e^(x-3) / (e^-2 + e^-1 + 1) */
#define SM123 0.0900305731703804, 0.2447284710547976, 0.6652409557748219
#define LSM123 -2.4076059644443806, -1.4076059644443806, -0.4076059644443806

KT_TEST(softmax, hand_values) {
    kiln_tensor *x = KT_F64(1, KT_SHAPE(3), {1, 2, 3});
    KT_EXPECT(kiln_softmax(x, 0), 1e-15, 1e-14, {SM123});
    KT_EXPECT(kiln_log_softmax(x, -1), 1e-15, 1e-14, {LSM123});
    kiln_tensor *xf = KT_F32(1, KT_SHAPE(3), {1, 2, 3});
    KT_EXPECT(kiln_softmax(xf, 0), 1e-7, 1e-6, {SM123});
    KT_EXPECT(kiln_log_softmax(xf, 0), 1e-7, 1e-6, {LSM123});
}

KT_TEST(softmax, both_axes_of_a_matrix) {
    /* rows [1,2,3] and [3,3,3]; columns (1,3), (2,3), (3,3) */
    kiln_tensor *x = KT_F64(2, KT_SHAPE(2, 3), {1, 2, 3, 3, 3, 3});
    KT_EXPECT(kiln_softmax(x, 1), 1e-15, 1e-14, {SM123, 1.0 / 3, 1.0 / 3, 1.0 / 3});
    /* softmax of (a, b) = (1/(1+e^(b-a)), ...): (1,3) -> 0.11920292202211755 */
    KT_EXPECT(kiln_softmax(x, 0), 1e-15, 1e-14,
              {0.11920292202211755, 0.2689414213699951, 0.5, 0.8807970779778824, 0.7310585786300049, 0.5});
    KT_EXPECT(kiln_log_softmax(x, 0), 1e-15, 1e-14,
              {-2.1269280110429727, -1.3132616875182228, -0.6931471805599453, -0.1269280110429726,
               -0.3132616875182228, -0.6931471805599453});
}

KT_TEST(softmax, stable_for_large_and_infinite_inputs) {
    kiln_tensor *x = KT_F32(1, KT_SHAPE(3), {1001, 1002, 1003});
    KT_EXPECT(kiln_softmax(x, 0), 1e-7, 1e-6, {SM123});
    KT_EXPECT(kiln_log_softmax(x, 0), 1e-7, 1e-6, {LSM123});
    kiln_tensor *n = KT_F32(1, KT_SHAPE(3), {-1001, -1002, -1003});
    KT_EXPECT(kiln_softmax(n, 0), 1e-7, 1e-6, {0.6652409557748219, 0.2447284710547976, 0.0900305731703804});
    /* a masked-out logit: -inf gets probability 0 and log-probability -inf */
    kiln_tensor *m = KT_F64(1, KT_SHAPE(3), {0, -INFINITY, 0});
    KT_EXPECT(kiln_softmax(m, 0), 0, 1e-15, {0.5, 0, 0.5});
    KT_EXPECT(kiln_log_softmax(m, 0), 0, 1e-15, {-0.6931471805599453, -INFINITY, -0.6931471805599453});
    /* NaN poisons its line only */
    kiln_tensor *q = KT_F64(2, KT_SHAPE(2, 2), {NAN, 0, 0, 0});
    KT_EXPECT(kiln_softmax(q, 1), 0, 1e-15, {NAN, NAN, 0.5, 0.5});
}

/* Softmax over axis 1 of an (N,C,H,W) array, in double, the plain way. */
static void ref_softmax_nchw(const double *x, double *y, int64_t N, int64_t C, int64_t HW, int log_) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t p = 0; p < HW; p++) {
            const double *xp = x + n * C * HW + p;
            double m = -INFINITY, s = 0;
            for (int64_t c = 0; c < C; c++) m = fmax(m, xp[c * HW]);
            for (int64_t c = 0; c < C; c++) s += exp(xp[c * HW] - m);
            for (int64_t c = 0; c < C; c++)
                y[n * C * HW + p + c * HW] = log_ ? xp[c * HW] - m - log(s) : exp(xp[c * HW] - m) / s;
        }
}

KT_TEST(softmax, per_pixel_over_nchw_channels) {
    /* H*W = 45 spans more than one block of pixels, and ends in a partial one */
    const int64_t N = 2, C = 7, H = 5, W = 9, n = N * C * H * W;
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *x = kiln_tensor_randn(4, (int64_t[]){N, C, H, W}, 0, 3, dt, KILN_CPU);
        double *xv = kt_values(x);
        double *ref = malloc((size_t)n * sizeof *ref);
        for (int log_ = 0; log_ < 2; log_++) {
            ref_softmax_nchw(xv, ref, N, C, H * W, log_);
            kiln_tensor *y = log_ ? kiln_log_softmax(x, 1) : kiln_softmax(x, 1);
            KT_EXPECT_SHAPE(y, 4, N, C, H, W);
            /* f32: one rounding of a value computed in double */
            if (dt == KILN_F32) kt_expect_values(y, ref, n, 1e-7, 2e-7);
            else kt_expect_values(y, ref, n, 1e-15, 1e-13);
        }
        /* every pixel's probabilities sum to 1 */
        kiln_tensor *s = kiln_sum(kiln_softmax(x, 1), 1, (int[]){1}, false);
        double *sv = kt_values(s);
        for (int64_t i = 0; i < N * H * W; i++) cr_expect(fabs(sv[i] - 1) < (d ? 1e-14 : 1e-6), "pixel %lld", (long long)i);
        free(sv);
        free(ref);
        free(xv);
    }
}

KT_TEST(softmax, views_give_the_same_values_as_copies) {
    kiln_tensor *nhwc = kiln_tensor_randn(4, (int64_t[]){2, 5, 7, 3}, 0, 2, KILN_F32, KILN_CPU);
    kiln_tensor *nchw = kiln_permute(nhwc, (int[]){0, 3, 1, 2}); /* channels strided by 1, pixels by 3 */
    kiln_tensor *dense = kiln_tensor_contiguous(nchw);
    double *a = kt_values(kiln_softmax(nchw, 1));
    kt_expect_values(kiln_softmax(dense, 1), a, kiln_tensor_numel(dense), 0, 0);
    free(a);
    kiln_tensor *sl = kiln_slice(nhwc, 2, 1, 7, 2); /* [2,5,3,3], a gap every other W */
    double *b = kt_values(kiln_log_softmax(sl, 1));
    kt_expect_values(kiln_log_softmax(kiln_tensor_contiguous(sl), 1), b, kiln_tensor_numel(sl), 0, 0);
    free(b);
}

KT_TEST(softmax, gradient_of_a_sum) {
    /* sum(softmax) is 1 whatever x: zero gradient. d sum(log_softmax)/dx = 1 - C*softmax. */
    kiln_tensor *x = KT_F64(1, KT_SHAPE(3), {1, 2, 3});
    kiln_tensor_set_requires_grad(x, true);
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_softmax(x, 0)), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(x), 1e-15, 0, {0, 0, 0});
    kiln_tensor_zero_grad(x);
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_log_softmax(x, 0)), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(x), 1e-15, 1e-14,
              {1 - 3 * 0.0900305731703804, 1 - 3 * 0.2447284710547976, 1 - 3 * 0.6652409557748219});
}

typedef struct { int axis, log_, view; } sm_case;

static kiln_tensor *f_softmax(kiln_tensor *const *x, void *ctx) {
    const sm_case *c = ctx;
    kiln_tensor *t = x[0];
    if (c->view == 1) t = kiln_permute(t, (int[]){0, 3, 1, 2});  /* stored NHWC, seen as NCHW */
    if (c->view == 2) t = kiln_slice(t, 3, 0, 7, 2);             /* every other column */
    return c->log_ ? kiln_log_softmax(t, c->axis) : kiln_softmax(t, c->axis);
}

KT_TEST(softmax, gradcheck_per_pixel_nchw) {
    /* odd sizes; H*W = 35 > one block */
    kiln_tensor *x = kt_rand_input(4, (int64_t[]){2, 3, 5, 7}, -2, 2);
    for (int log_ = 0; log_ < 2; log_++) {
        sm_case c = {1, log_, 0};
        cr_expect(kt_gradcheck(f_softmax, &c, 1, &x, 1e-6, 1e-8, 1e-6), "log %d", log_);
    }
}

KT_TEST(softmax, gradcheck_views_and_other_axes) {
    kiln_tensor *nhwc = kt_rand_input(4, (int64_t[]){2, 3, 5, 3}, -2, 2);
    kiln_tensor *nchw = kt_rand_input(4, (int64_t[]){1, 3, 3, 7}, -2, 2);
    for (int log_ = 0; log_ < 2; log_++) {
        sm_case perm = {1, log_, 1}, sliced = {1, log_, 2}, last = {-1, log_, 0}, first = {0, log_, 1};
        cr_expect(kt_gradcheck(f_softmax, &perm, 1, &nhwc, 1e-6, 1e-8, 1e-6), "permuted, log %d", log_);
        cr_expect(kt_gradcheck(f_softmax, &sliced, 1, &nchw, 1e-6, 1e-8, 1e-6), "sliced, log %d", log_);
        cr_expect(kt_gradcheck(f_softmax, &last, 1, &nchw, 1e-6, 1e-8, 1e-6), "last axis, log %d", log_);
        cr_expect(kt_gradcheck(f_softmax, &first, 1, &nhwc, 1e-6, 1e-8, 1e-6), "axis 0, log %d", log_);
    }
}

KT_TEST(softmax, size_one_axis_is_an_error) {
    kiln_tensor *x = kiln_tensor_zeros(4, (int64_t[]){2, 1, 4, 4}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_softmax(x, 1));
    kt_expect_error(KILN_STATUS_SHAPE, "always 1");
    cr_expect_null(kiln_log_softmax(x, 1));
    kt_expect_error(KILN_STATUS_SHAPE, "bce_with_logits");
    cr_expect_null(kiln_softmax(x, 1));
    kt_expect_error(KILN_STATUS_SHAPE, "sigmoid");
    cr_expect_null(kiln_softmax(kiln_tensor_scalar(1, KILN_F32, KILN_CPU), -1));
    kt_expect_error(KILN_STATUS_SHAPE, "one unit");
    /* the other axes are fine */
    cr_expect_not_null(kiln_softmax(x, 2), "%s", kiln_last_error());
}

KT_TEST(softmax, other_errors) {
    kiln_tensor *x = KT_F32(2, KT_SHAPE(2, 3), {1, 2, 3, 4, 5, 6});
    cr_expect_null(kiln_softmax(x, 2));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "out of range");
    cr_expect_null(kiln_log_softmax(NULL, 0));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "NULL");
    cr_expect_null(kiln_softmax(kiln_tensor_cast(x, KILN_I32), 1));
    kt_expect_error(KILN_STATUS_DTYPE, "softmax");
}

KT_TEST(softmax, empty_inputs) {
    kiln_tensor *e = kiln_tensor_zeros(3, (int64_t[]){0, 4, 3}, KILN_F32, KILN_CPU);
    KT_EXPECT_SHAPE(kiln_softmax(e, 1), 3, 0, 4, 3);
    kiln_tensor *z = kiln_tensor_zeros(2, (int64_t[]){3, 0}, KILN_F32, KILN_CPU);
    KT_EXPECT_SHAPE(kiln_log_softmax(z, 1), 2, 3, 0);
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK, "%s", kiln_last_error());
}

/* log_softmax as (x - max) - log(sum): torch's form. At |x| = 1e4, x - (max + log(sum))
 * was ~2000 ulps off in f64, and at 1e17 it dropped log(sum) altogether (dx [1, 0, 0, 0]
 * for dy [0, -1, 0, 0] instead of [0.5, -0.5, 0, 0]). Tolerances: f64 4 ulps of 1 (x - max
 * is exact; log and exp are libm's); f32 within 3e-7 + 3e-7 |y| of torch's float32. Along
 * the innermost axis (a line at a time), along axis 0 of the transpose (blocks of lines)
 * and along the channels of NCHW. */
static void check_large_logits(kiln_tensor *x, int axis, kiln_tensor *g, kiln_dtype dt, const char *layout) {
    double tol = dt == KILN_F64 ? 1e-15 : 3e-7;
    kiln_tensor_set_requires_grad(x, true);
    kiln_tensor *y = kiln_log_softmax(x, axis);
    cr_assert(y, "%s: %s", layout, kiln_last_error());
    cr_assert_eq(kiln_backward(y, g), KILN_STATUS_OK, "%s: %s", layout, kiln_last_error());
    kiln_tensor *yc = axis == 1 ? y : kiln_transpose(y, 0, 1), *dc = kiln_tensor_grad(x);
    if (axis != 1) dc = kiln_transpose(dc, 0, 1);
    kt_expect_values(kiln_reshape(kiln_tensor_contiguous(yc), 1, (int64_t[]){16}),
                     dt == KILN_F64 ? ls_y_f64 : ls_y_f32, 16, tol, tol);
    kt_expect_values(kiln_reshape(kiln_tensor_contiguous(dc), 1, (int64_t[]){16}),
                     dt == KILN_F64 ? ls_dx_f64 : ls_dx_f32, 16, tol, tol);
}

KT_TEST(softmax, log_softmax_of_large_logits_matches_torch) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        check_large_logits(kt_tensor(dt, 2, (int64_t[]){4, 4}, ls_x), 1, kt_tensor(dt, 2, (int64_t[]){4, 4}, ls_g),
                           dt, "rows");
        /* the same lines as columns of a contiguous (C, N) array */
        kiln_tensor *xt = kiln_tensor_contiguous(kiln_transpose(kt_tensor(dt, 2, (int64_t[]){4, 4}, ls_x), 0, 1));
        kiln_tensor *gt = kiln_transpose(kt_tensor(dt, 2, (int64_t[]){4, 4}, ls_g), 0, 1);
        check_large_logits(kiln_tensor_detach(xt), 0, gt, dt, "columns");
    }
}

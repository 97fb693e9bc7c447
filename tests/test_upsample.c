/* upsample_nearest2d and upsample_bilinear2d: forward against PyTorch fixtures
 * (sizes and scale factors, align_corners both ways, f32, f64, strided input), a
 * hand-computed gradient, float64 gradient checks and the errors; scale factors whose
 * output is the input's size or twice it (torch 1.13: nearest samples with 1/factor,
 * bilinear copies an axis whose size does not change), forward and backward against
 * tests/fixtures/gen_numerics.py. */
#include "support/kiln_test.h"
#include "fixtures/layers_upsample.h"
#include "fixtures/numerics_ref.h"

#include <stdlib.h>

TestSuite(upsample, .init = kiln_test_setup, .fini = kiln_test_teardown);

/* fixtures hold 10 significant digits; bilinear weights in f32 round at ~1e-7 */
#define F64_TOL 1e-9
#define F32_TOL 1e-6

static kiln_tensor *fixture(const int64_t *shape, kiln_dtype dt) {
    int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
    double *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = kt_fixture_value(i, 1);
    kiln_tensor *t = kt_tensor(dt, 4, shape, v);
    free(v);
    cr_assert(t, "%s", kiln_last_error());
    return t;
}

static kiln_tensor *apply(const layers_upsample_case *c, kiln_tensor *x) {
    if (c->size[0]) {
        return c->bilinear ? kiln_upsample_bilinear2d(x, c->size[0], c->size[1], c->align_corners)
                           : kiln_upsample_nearest2d(x, c->size[0], c->size[1]);
    }
    return c->bilinear ? kiln_upsample_bilinear2d_scale(x, c->scale[0], c->scale[1], c->align_corners)
                       : kiln_upsample_nearest2d_scale(x, c->scale[0], c->scale[1]);
}

static void run_cases(kiln_dtype dt, bool view) {
    for (size_t i = 0; i < sizeof layers_upsample_cases / sizeof layers_upsample_cases[0]; i++) {
        const layers_upsample_case *c = &layers_upsample_cases[i];
        kiln_tensor *x = fixture(c->x, dt);
        if (view) x = kiln_transpose(kiln_tensor_contiguous(kiln_transpose(x, 2, 3)), 2, 3);
        kiln_tensor *y = apply(c, x);
        cr_assert(y, "case %s: %s", c->name, kiln_last_error());
        KT_EXPECT_SHAPE(y, 4, c->y[0], c->y[1], c->y[2], c->y[3]);
        double tol = dt == KILN_F64 ? F64_TOL : F32_TOL;
        kt_expect_values(y, layers_upsample_expected + c->offset, kiln_tensor_numel(y), tol, tol);
    }
}

KT_TEST(upsample, matches_torch_f32) { run_cases(KILN_F32, false); }
KT_TEST(upsample, matches_torch_f64) { run_cases(KILN_F64, false); }
KT_TEST(upsample, matches_torch_strided_input) { run_cases(KILN_F64, true); }

KT_TEST(upsample, nearest_2x_by_hand) {
    kiln_tensor *x = KT_F64(4, KT_SHAPE(1, 1, 1, 2), {1, 2});
    kiln_tensor_set_requires_grad(x, true);
    kiln_tensor *y = kiln_upsample_nearest2d_scale(x, 2, 2);
    KT_EXPECT_SHAPE(y, 4, 1, 1, 2, 4);
    KT_EXPECT(y, 0, 0, {1, 1, 2, 2, 1, 1, 2, 2});
    cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(x), 0, 0, {4, 4});
}

KT_TEST(upsample, bilinear_by_hand) {
    /* 1x2 -> 1x4. align_corners: src = dst/3 -> 1, 4/3, 5/3, 2.
     * half-pixel: src = (dst+0.5)/2 - 0.5 clamped -> 0, 0.25, 0.75, 1 -> 1, 1.25, 1.75, 2 */
    kiln_tensor *x = KT_F64(4, KT_SHAPE(1, 1, 1, 2), {1, 2});
    KT_EXPECT(kiln_upsample_bilinear2d(x, 1, 4, true), 1e-15, 0, {1, 4.0 / 3, 5.0 / 3, 2});
    KT_EXPECT(kiln_upsample_bilinear2d(x, 1, 4, false), 1e-15, 0, {1, 1.25, 1.75, 2});
}

static kiln_tensor *f_up(kiln_tensor *const *in, void *ctx) { return apply(ctx, in[0]); }

KT_TEST(upsample, gradcheck_every_fixture_config) {
    for (size_t i = 0; i < sizeof layers_upsample_cases / sizeof layers_upsample_cases[0]; i++) {
        const layers_upsample_case *c = &layers_upsample_cases[i];
        kiln_tensor *x = kt_rand_input(4, c->x, -1, 1);
        cr_expect(kt_gradcheck(f_up, (void *)c, 1, &x, 1e-6, 1e-7, 1e-6), "case %s", c->name);
    }
}

KT_TEST(upsample, errors) {
    kiln_tensor *x = kiln_tensor_zeros(4, (int64_t[]){1, 1, 2, 2}, KILN_F32, KILN_CPU);
    kiln_tensor *x3 = kiln_tensor_zeros(3, (int64_t[]){1, 2, 2}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_upsample_nearest2d(x3, 4, 4));
    /* torch 1.13's interpolate reads 3-d input as (N, C, W), a 1-d resampling, and its
     * upsample_*2d ops refuse it ("expected input_size equals to 4"): kiln refuses and says so */
    kt_expect_error(KILN_STATUS_SHAPE, "torch's interpolate reads 3-d input as (N, C, W)");
    cr_expect_null(kiln_upsample_bilinear2d(x, 0, 4, false));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "output height 0");
    cr_expect_null(kiln_upsample_nearest2d_scale(x, 2, -1));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "scale factor -1");
    cr_expect_null(kiln_upsample_bilinear2d_scale(x, NAN, 2, true));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "positive and finite");
    cr_expect_null(kiln_upsample_nearest2d_scale(x, 0.4, 1));
    kt_expect_error(KILN_STATUS_SHAPE, "at least 1");
    kiln_tensor *e = kiln_tensor_zeros(4, (int64_t[]){1, 1, 0, 2}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_upsample_nearest2d(e, 2, 2));
    kt_expect_error(KILN_STATUS_SHAPE, "empty");
}

/* Scale factors as torch 1.13 uses them, f32 and f64, forward and backward. Nearest
 * copies values and sums small integers: exact. Bilinear: f64 to 1e-12; f32 within
 * F32_TOL of torch's float arithmetic (kiln computes the taps in double). */
KT_TEST(upsample, scale_factor_output_at_in_or_twice_in_matches_torch) {
    char what[96];
    for (size_t k = 0; k < sizeof num_up_cases / sizeof num_up_cases[0]; k++) {
        const num_up_case *c = &num_up_cases[k];
        const int64_t xs[4] = {1, 2, c->h, c->w}, ys[4] = {1, 2, c->ho, c->wo};
        for (int d = 0; d < 2; d++) {
            kiln_dtype dt = d ? KILN_F64 : KILN_F32;
            kiln_tensor *x = kt_tensor(dt, 4, xs, c->x);
            kiln_tensor_set_requires_grad(x, true);
            kiln_tensor *y = c->bilinear ? kiln_upsample_bilinear2d_scale(x, c->fh, c->fw, c->align_corners)
                                         : kiln_upsample_nearest2d_scale(x, c->fh, c->fw);
            snprintf(what, sizeof what, "%s %s", c->name, kiln_dtype_name(dt));
            cr_assert(y, "%s: %s", what, kiln_last_error());
            KT_EXPECT_SHAPE(y, 4, 1, 2, c->ho, c->wo);
            double ytol = !c->bilinear ? 0 : d ? 1e-12 : F32_TOL, gtol = !c->bilinear ? 0 : d ? 1e-12 : 1e-5;
            kt_expect_values(y, c->y[d], 2 * c->ho * c->wo, ytol, ytol);
            cr_assert_eq(kiln_backward(y, kt_tensor(dt, 4, ys, c->gy)), KILN_STATUS_OK, "%s: %s", what,
                         kiln_last_error());
            kt_expect_values(kiln_tensor_grad(x), c->dx[d], 2 * c->h * c->w, gtol, gtol);
        }
    }
}

/* A factor whose output is the input's size: nearest with 1.2 on 3 pixels samples
 * 0, 0, 1 (floor(i / 1.2)); bilinear leaves the axis as it is. By hand. */
KT_TEST(upsample, factor_1_2_on_three_pixels_by_hand) {
    kiln_tensor *x = KT_F64(4, KT_SHAPE(1, 2, 1, 3), {1, 2, 3, 4, 5, 6});
    kiln_tensor_set_requires_grad(x, true);
    kiln_tensor *y = kiln_upsample_nearest2d_scale(x, 1, 1.2);
    KT_EXPECT(y, 0, 0, {1, 1, 2, 4, 4, 5});
    cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(x), 0, 0, {2, 1, 0, 2, 1, 0});
    KT_EXPECT(kiln_upsample_bilinear2d_scale(x, 1, 1.2, false), 0, 0, {1, 2, 3, 4, 5, 6});
    /* torch weighs the copied pixel 1 and 0 too: an infinity gives NaN there, and only
     * there (no neighbour is read) */
    kiln_tensor *xi = KT_F64(4, KT_SHAPE(1, 1, 1, 3), {1, INFINITY, 3});
    KT_EXPECT(kiln_upsample_bilinear2d_scale(xi, 1, 1.2, false), 0, 0, {1, NAN, 3});
}

/* upsample_nearest2d and upsample_bilinear2d: forward against PyTorch fixtures
 * (sizes and scale factors, align_corners both ways, f32, f64, strided input), a
 * hand-computed gradient, float64 gradient checks and the errors. */
#include "support/kiln_test.h"
#include "fixtures/layers_upsample.h"

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
    kt_expect_error(KILN_STATUS_SHAPE, "NCHW");
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

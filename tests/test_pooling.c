/* max_pool2d and avg_pool2d: forward against PyTorch fixtures (f32, f64, strided
 * input), hand-computed gradients for ties, NaN and padding, a larger threaded
 * case against a direct loop, float64 gradient checks and the errors. */
#include "support/kiln_test.h"
#include "fixtures/layers_pool.h"

#include <stdlib.h>
#include <string.h>

TestSuite(pool2d, .init = kiln_test_setup, .fini = kiln_test_teardown);

/* fixtures hold 10 significant digits; f32 windows sum at most 9 values */
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

static kiln_pool2d_params params_of(const layers_pool_case *c) {
    kiln_pool2d_params p = kiln_pool2d_params_default(c->kernel[0], c->kernel[1]);
    for (int i = 0; i < 2; i++) {
        p.stride[i] = c->stride[i];
        p.padding[i] = c->padding[i];
        p.dilation[i] = c->dilation[i];
    }
    p.ceil_mode = c->ceil_mode;
    p.count_include_pad = c->count_include_pad;
    return p;
}

static void run_cases(kiln_dtype dt, bool view) {
    for (size_t i = 0; i < sizeof layers_pool_cases / sizeof layers_pool_cases[0]; i++) {
        const layers_pool_case *c = &layers_pool_cases[i];
        kiln_tensor *x = fixture(c->x, dt);
        if (view) x = kiln_transpose(kiln_tensor_contiguous(kiln_transpose(x, 2, 3)), 2, 3);
        kiln_pool2d_params p = params_of(c);
        kiln_tensor *y = c->is_max ? kiln_max_pool2d(x, &p) : kiln_avg_pool2d(x, &p);
        cr_assert(y, "case %s: %s", c->name, kiln_last_error());
        KT_EXPECT_SHAPE(y, 4, c->y[0], c->y[1], c->y[2], c->y[3]);
        double tol = dt == KILN_F64 ? F64_TOL : F32_TOL;
        kt_expect_values(y, layers_pool_expected + c->offset, kiln_tensor_numel(y), tol, tol);
    }
}

KT_TEST(pool2d, matches_torch_f32) { run_cases(KILN_F32, false); }
KT_TEST(pool2d, matches_torch_f64) { run_cases(KILN_F64, false); }
KT_TEST(pool2d, matches_torch_strided_input) { run_cases(KILN_F64, true); }

KT_TEST(pool2d, max_gradient_goes_to_first_maximum) {
    /* windows (2x2, stride 1) of [[1 3 3] [3 2 0]]: both maxima are 3, first at (0,1) */
    kiln_tensor *x = KT_F64(4, KT_SHAPE(1, 1, 2, 3), {1, 3, 3, 3, 2, 0});
    kiln_tensor_set_requires_grad(x, true);
    kiln_pool2d_params p = kiln_pool2d_params_default(2, 2);
    p.stride[0] = p.stride[1] = 1;
    kiln_tensor *y = kiln_max_pool2d(x, &p);
    KT_EXPECT(y, 0, 0, {3, 3});
    cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(x), 0, 0, {0, 2, 0, 0, 0, 0});
}

KT_TEST(pool2d, max_padding_is_minus_infinity_and_nan_wins) {
    kiln_tensor *x = KT_F32(4, KT_SHAPE(1, 1, 2, 2), {-5, -4, -3, NAN});
    kiln_pool2d_params p = kiln_pool2d_params_default(2, 2);
    p.stride[0] = p.stride[1] = 1;
    p.padding[0] = p.padding[1] = 1;
    kiln_tensor *y = kiln_max_pool2d(x, &p);
    /* 3x3 windows; zero padding would have given 0 in the corners */
    KT_EXPECT(y, 0, 0, {-5, -4, -4, -3, NAN, NAN, -3, NAN, NAN});
}

KT_TEST(pool2d, avg_gradient_by_hand) {
    /* 3x3 window, stride 2, padding 1 over 3x3: four windows; corners of each are padding */
    kiln_tensor *x = KT_F64(4, KT_SHAPE(1, 1, 3, 3), {1, 2, 3, 4, 5, 6, 7, 8, 9});
    kiln_tensor_set_requires_grad(x, true);
    kiln_pool2d_params p = kiln_pool2d_params_default(3, 3);
    p.stride[0] = p.stride[1] = 2;
    p.padding[0] = p.padding[1] = 1;
    kiln_tensor *y = kiln_avg_pool2d(x, &p);
    KT_EXPECT(y, 1e-12, 0, {12.0 / 9, 16.0 / 9, 24.0 / 9, 28.0 / 9});
    cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    double q = 1.0 / 9;
    KT_EXPECT(kiln_tensor_grad(x), 1e-12, 0, {q, 2 * q, q, 2 * q, 4 * q, 2 * q, q, 2 * q, q});
    p.count_include_pad = false; /* divisors are the real pixels: 4 per window */
    KT_EXPECT(kiln_avg_pool2d(x, &p), 1e-12, 0, {3, 4, 6, 7});
}

KT_TEST(pool2d, large_max_pool_matches_direct_loop) {
    const int64_t xs[4] = {2, 10, 65, 63};
    kiln_tensor *x = kiln_tensor_rand(4, xs, -1, 1, KILN_F32, KILN_CPU);
    kiln_pool2d_params p = kiln_pool2d_params_default(3, 3);
    p.stride[0] = p.stride[1] = 2;
    kiln_tensor *y = kiln_max_pool2d(x, &p);
    KT_EXPECT_SHAPE(y, 4, 2, 10, 32, 31);
    double *v = kt_values(x), *ref = malloc(20 * 32 * 31 * sizeof *ref);
    for (int64_t pl = 0; pl < 20; pl++)
        for (int64_t oh = 0; oh < 32; oh++)
            for (int64_t ow = 0; ow < 31; ow++) {
                double m = -INFINITY;
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 3; j++) m = fmax(m, v[(pl * 65 + oh * 2 + i) * 63 + ow * 2 + j]);
                ref[(pl * 32 + oh) * 31 + ow] = m;
            }
    kt_expect_values(y, ref, 20 * 32 * 31, 0, 0);
    free(v);
    free(ref);
}

static kiln_tensor *f_pool(kiln_tensor *const *in, void *ctx) {
    const layers_pool_case *c = ctx;
    kiln_pool2d_params p = params_of(c);
    return c->is_max ? kiln_max_pool2d(in[0], &p) : kiln_avg_pool2d(in[0], &p);
}

KT_TEST(pool2d, gradcheck_every_fixture_config) {
    for (size_t i = 0; i < sizeof layers_pool_cases / sizeof layers_pool_cases[0]; i++) {
        const layers_pool_case *c = &layers_pool_cases[i];
        kiln_tensor *x = kt_rand_input(4, c->x, -1, 1);
        cr_expect(kt_gradcheck(f_pool, (void *)c, 1, &x, 1e-6, 1e-7, 1e-6), "case %s", c->name);
    }
}

/* ---- unbatched (C, H, W), as torch (F.max_pool2d(randn(3,5,5), 2) is (3,2,2)): the batched
 * op on unsqueeze(0), squeezed, bit for bit, and gradients through the views */
static void expect_same_bits(kiln_tensor *a, kiln_tensor *b) {
    cr_assert(a && b, "%s", kiln_last_error());
    cr_assert_eq(kiln_tensor_ndim(a), 3);
    cr_assert_eq(kiln_tensor_ndim(b), 4);
    for (int i = 0; i < 3; i++) cr_expect_eq(kiln_tensor_shape(a)[i], kiln_tensor_shape(b)[i + 1]);
    double *va = kt_values(a), *vb = kt_values(b);
    cr_expect(memcmp(va, vb, (size_t)kiln_tensor_numel(a) * sizeof *va) == 0);
    free(va);
    free(vb);
}

KT_TEST(pool2d, unbatched_matches_batched) {
    for (int k = 0; k < 2; k++) {
        kiln_tensor *x4 = fixture((int64_t[]){1, 3, 7, 6}, k ? KILN_F32 : KILN_F64);
        kiln_tensor *x = kiln_squeeze(x4, 0);
        kiln_pool2d_params p = kiln_pool2d_params_default(3, 2);
        p.stride[0] = 2;
        p.padding[0] = 1;
        p.ceil_mode = true;
        expect_same_bits(kiln_max_pool2d(x, &p), kiln_max_pool2d(x4, &p));
        expect_same_bits(kiln_avg_pool2d(x, &p), kiln_avg_pool2d(x4, &p));
        KT_EXPECT_SHAPE(kiln_max_pool2d(x, &p), 3, 3, 4, 3);
        p.count_include_pad = false;
        expect_same_bits(kiln_avg_pool2d(x, &p), kiln_avg_pool2d(x4, &p));
    }
    kiln_module *m = kiln_max_pool2d_create(2, 0, 0);
    cr_assert(m, "%s", kiln_last_error());
    kiln_tensor *x4 = fixture((int64_t[]){1, 2, 4, 4}, KILN_F32);
    expect_same_bits(kiln_module_forward(m, kiln_squeeze(x4, 0)), kiln_module_forward(m, x4));
    kiln_module_free(m);
}

static kiln_tensor *f_pool_unbatched(kiln_tensor *const *in, void *ctx) {
    kiln_pool2d_params p = kiln_pool2d_params_default(2, 2);
    p.stride[0] = p.stride[1] = 1;
    return ctx ? kiln_max_pool2d(in[0], &p) : kiln_avg_pool2d(in[0], &p);
}

KT_TEST(pool2d, unbatched_gradcheck_f64) {
    kiln_tensor *x = kt_rand_input(3, (int64_t[]){2, 4, 5}, -1, 1);
    cr_expect(kt_gradcheck(f_pool_unbatched, x, 1, &x, 1e-6, 1e-8, 1e-6));
    cr_expect(kt_gradcheck(f_pool_unbatched, NULL, 1, &x, 1e-6, 1e-8, 1e-6));
}

KT_TEST(pool2d, errors) {
    kiln_tensor *x = kiln_tensor_zeros(4, (int64_t[]){1, 1, 4, 4}, KILN_F32, KILN_CPU);
    kiln_tensor *x3 = kiln_tensor_zeros(2, (int64_t[]){4, 4}, KILN_F32, KILN_CPU);
    kiln_pool2d_params p = kiln_pool2d_params_default(2, 2);
    cr_expect_null(kiln_max_pool2d(x3, &p));
    kt_expect_error(KILN_STATUS_SHAPE, "max_pool2d: input has shape [4, 4] (2-d); it takes 3-d (C, H, W) or 4-d");
    cr_expect_null(kiln_avg_pool2d(x, NULL));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "params is NULL");
    p.padding[1] = 2;
    cr_expect_null(kiln_max_pool2d(x, &p));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "half the kernel");
    p = kiln_pool2d_params_default(2, 2);
    p.stride[0] = -1;
    cr_expect_null(kiln_avg_pool2d(x, &p));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "stride -1");
    p = kiln_pool2d_params_default(0, 2);
    cr_expect_null(kiln_max_pool2d(x, &p));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "kernel size 0");
    p = kiln_pool2d_params_default(5, 2);
    cr_expect_null(kiln_max_pool2d(x, &p));
    kt_expect_error(KILN_STATUS_SHAPE, "too small");
    p = kiln_pool2d_params_default(2, 2);
    p.dilation[0] = 2;
    cr_expect_null(kiln_avg_pool2d(x, &p));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "no dilation");
    kiln_tensor *xi = kiln_tensor_zeros(4, (int64_t[]){1, 1, 4, 4}, KILN_I32, KILN_CPU);
    cr_expect_null(kiln_max_pool2d(xi, &p));
    kt_expect_error(KILN_STATUS_DTYPE, "max_pool2d");
}

/* Reductions: sum and mean over axis lists (keepdim, empty list, empty tensors),
 * max and argmax over one axis (ties, NaN, 0-d), their gradients and errors. */
#include "support/kiln_test.h"

#include <stdlib.h>
#include <string.h>

TestSuite(reduce, .init = kiln_test_setup, .fini = kiln_test_teardown);

/* [2,3,4] holding 0..23: element (i,j,k) = 12i + 4j + k */
static kiln_tensor *iota234(kiln_dtype dt) {
    kiln_tensor *r = kiln_tensor_arange(0, 24, 1, dt, KILN_CPU);
    return kiln_reshape(r, 3, (int64_t[]){2, 3, 4});
}

KT_TEST(reduce, sum_several_axes) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *x = iota234(dt);
        /* sum over i,k of 12i+4j+k = 32j + 60 */
        kiln_tensor *s = kiln_sum(x, 2, (int[]){0, 2}, false);
        KT_EXPECT_SHAPE(s, 1, 3);
        KT_EXPECT(s, 0, 0, {60, 92, 124});
        kiln_tensor *sk = kiln_sum(x, 2, (int[]){2, 0}, true);
        KT_EXPECT_SHAPE(sk, 3, 1, 3, 1);
        KT_EXPECT(sk, 0, 0, {60, 92, 124});
        kiln_tensor *last = kiln_sum(x, 1, (int[]){-1}, false);
        KT_EXPECT_SHAPE(last, 2, 2, 3);
        KT_EXPECT(last, 0, 0, {6, 22, 38, 54, 70, 86});
        kiln_tensor *mid = kiln_sum(x, 1, (int[]){1}, true);
        KT_EXPECT_SHAPE(mid, 3, 2, 1, 4);
        KT_EXPECT(mid, 0, 0, {12, 15, 18, 21, 48, 51, 54, 57});
    }
}

KT_TEST(reduce, sum_empty_axis_list_reduces_everything) {
    kiln_tensor *x = iota234(KILN_F64);
    kiln_tensor *s = kiln_sum(x, 0, NULL, false);
    cr_assert_eq(kiln_tensor_ndim(s), 0);
    KT_EXPECT(s, 0, 0, {276});
    kiln_tensor *sk = kiln_sum(x, 0, NULL, true);
    KT_EXPECT_SHAPE(sk, 3, 1, 1, 1);
    KT_EXPECT(sk, 0, 0, {276});
    KT_EXPECT(kiln_sum_all(x), 0, 0, {276});
}

KT_TEST(reduce, mean_several_axes) {
    kiln_tensor *x = iota234(KILN_F32);
    /* mean over i,j of 12i+4j+k = 6 + 4 + k */
    kiln_tensor *m = kiln_mean(x, 2, (int[]){0, 1}, false);
    KT_EXPECT_SHAPE(m, 1, 4);
    KT_EXPECT(m, 0, 1e-6, {10, 11, 12, 13});
    kiln_tensor *mk = kiln_mean(x, 2, (int[]){0, 1}, true);
    KT_EXPECT_SHAPE(mk, 3, 1, 1, 4);
    KT_EXPECT(mk, 0, 1e-6, {10, 11, 12, 13});
    kiln_tensor *all = kiln_mean(x, 0, NULL, false);
    cr_assert_eq(kiln_tensor_ndim(all), 0);
    KT_EXPECT(all, 0, 1e-6, {11.5});
    KT_EXPECT(kiln_mean_all(x), 0, 1e-6, {11.5});
    /* the mean over j of 12i+4j+k = 12i + 4 + k */
    KT_EXPECT(kiln_mean(x, 1, (int[]){-2}, false), 0, 1e-6, {4, 5, 6, 7, 16, 17, 18, 19});
}

KT_TEST(reduce, empty_tensors) {
    kiln_tensor *e = kiln_tensor_zeros(2, (int64_t[]){0, 3}, KILN_F32, KILN_CPU);
    /* torch: sum over nothing is 0, mean over nothing is NaN */
    KT_EXPECT(kiln_sum_all(e), 0, 0, {0});
    KT_EXPECT(kiln_mean_all(e), 0, 0, {NAN});
    kiln_tensor *m0 = kiln_mean(e, 1, (int[]){0}, false);
    KT_EXPECT_SHAPE(m0, 1, 3);
    KT_EXPECT(m0, 0, 0, {NAN, NAN, NAN});
    kiln_tensor *m1 = kiln_mean(e, 1, (int[]){1}, false);
    KT_EXPECT_SHAPE(m1, 1, 0);
    cr_assert_eq(kiln_last_status(), KILN_STATUS_OK, "%s", kiln_last_error());
}

KT_TEST(reduce, sum_of_a_noncontiguous_view) {
    kiln_tensor *x = iota234(KILN_F64);
    kiln_tensor *p = kiln_permute(x, (int[]){2, 0, 1}); /* [4,2,3] */
    kiln_tensor *s = kiln_sum(p, 2, (int[]){1, 2}, false); /* over i and j: 12*3 + 4*3*2... */
    /* sum over i,j of 12i+4j+k = 36 + 24 + 6k */
    KT_EXPECT(s, 0, 0, {60, 66, 72, 78});
}

static kiln_tensor *f_sum(kiln_tensor *const *x, void *ctx) {
    (void)ctx;
    kiln_tensor *p = kiln_permute(x[0], (int[]){1, 2, 0});
    return kiln_sum(p, 2, (int[]){0, 2}, true);
}
static kiln_tensor *f_mean(kiln_tensor *const *x, void *ctx) {
    (void)ctx;
    return kiln_mean(kiln_slice(x[0], 1, 0, 4, 2), 2, (int[]){-1, 0}, false);
}
static kiln_tensor *f_mean_all(kiln_tensor *const *x, void *ctx) {
    (void)ctx;
    return kiln_mean_all(x[0]);
}

KT_TEST(reduce, sum_mean_gradcheck) {
    kiln_tensor *x = kt_rand_input(3, (int64_t[]){3, 4, 5}, -1, 1);
    cr_expect(kt_gradcheck(f_sum, NULL, 1, &x, 1e-6, 1e-8, 1e-6));
    cr_expect(kt_gradcheck(f_mean, NULL, 1, &x, 1e-6, 1e-8, 1e-6));
    cr_expect(kt_gradcheck(f_mean_all, NULL, 1, &x, 1e-6, 1e-8, 1e-6));
}

KT_TEST(reduce, sum_errors) {
    kiln_tensor *x = iota234(KILN_F32);
    cr_expect_null(kiln_sum(x, 2, (int[]){1, 1}, false));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "appears twice");
    cr_expect_null(kiln_mean(x, 1, (int[]){3}, false));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "out of range");
    cr_expect_null(kiln_sum(NULL, 0, NULL, false));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "NULL");
}

/* ---- max / argmax ------------------------------------------------------------------ */

KT_TEST(reduce, max_argmax_forward) {
    for (int d = 0; d < 2; d++) {
        kiln_tensor *x = kt_tensor(d ? KILN_F64 : KILN_F32, 2, (int64_t[]){2, 3}, (double[]){1, 5, 3, 7, 2, 7});
        kiln_tensor *v1 = kiln_max(x, 1, false);
        KT_EXPECT_SHAPE(v1, 1, 2);
        KT_EXPECT(v1, 0, 0, {5, 7});
        kiln_tensor *i1 = kiln_argmax(x, -1, false);
        cr_assert_eq(kiln_tensor_dtype(i1), KILN_I64);
        KT_EXPECT(i1, 0, 0, {1, 0}); /* the tie 7,7 goes to the first */
        kiln_tensor *v0 = kiln_max(x, 0, true);
        KT_EXPECT_SHAPE(v0, 2, 1, 3);
        KT_EXPECT(v0, 0, 0, {7, 5, 7});
        kiln_tensor *i0 = kiln_argmax(x, -2, true);
        KT_EXPECT_SHAPE(i0, 2, 1, 3);
        KT_EXPECT(i0, 0, 0, {1, 0, 1});
    }
}

KT_TEST(reduce, max_over_channels_of_nchw_view) {
    /* a [1,2,2,3] NHWC tensor permuted to NCHW [1,3,2,2]: argmax over C per pixel */
    kiln_tensor *nhwc = KT_F32(4, KT_SHAPE(1, 2, 2, 3), {0.1, 0.7, 0.2, 0.5, 0.4, 0.1, 0.3, 0.3, 0.4, 0.9, 0.05, 0.05});
    kiln_tensor *nchw = kiln_permute(nhwc, (int[]){0, 3, 1, 2});
    kiln_tensor *i = kiln_argmax(nchw, 1, false);
    KT_EXPECT_SHAPE(i, 3, 1, 2, 2);
    KT_EXPECT(i, 0, 0, {1, 0, 2, 0});
    KT_EXPECT(kiln_max(nchw, 1, false), 0, 1e-7, {0.7, 0.5, 0.4, 0.9});
}

KT_TEST(reduce, max_nan_is_the_max) {
    kiln_tensor *x = KT_F32(2, KT_SHAPE(3, 3), {1, NAN, 3, NAN, NAN, 0, -INFINITY, -INFINITY, -INFINITY});
    KT_EXPECT(kiln_max(x, 1, false), 0, 0, {NAN, NAN, -INFINITY});
    KT_EXPECT(kiln_argmax(x, 1, false), 0, 0, {1, 0, 0});
    KT_EXPECT(kiln_argmax(x, 0, false), 0, 0, {1, 0, 0});
}

KT_TEST(reduce, max_of_a_scalar) {
    kiln_tensor *x = kiln_tensor_scalar(4.5, KILN_F64, KILN_CPU);
    kiln_tensor *v = kiln_max(x, 0, false);
    cr_assert_eq(kiln_tensor_ndim(v), 0, "%s", kiln_last_error());
    KT_EXPECT(v, 0, 0, {4.5});
    kiln_tensor *i = kiln_argmax(x, -1, true);
    cr_assert_eq(kiln_tensor_ndim(i), 0);
    KT_EXPECT(i, 0, 0, {0});
}

KT_TEST(reduce, max_gradient_goes_to_the_first_maximum) {
    kiln_tensor *x = KT_F64(2, KT_SHAPE(2, 3), {1, 5, 3, 7, 2, 7});
    kiln_tensor_set_requires_grad(x, true);
    kiln_tensor *v = kiln_max(x, 1, false);
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul_scalar(v, 2.0)), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(x), 0, 0, {0, 2, 0, 2, 0, 0});
}

KT_TEST(reduce, argmax_is_not_differentiable) {
    kiln_tensor *x = kt_rand_input(2, (int64_t[]){3, 4}, -1, 1);
    kiln_tensor *i = kiln_argmax(x, 1, false);
    cr_assert_not_null(i, "%s", kiln_last_error());
    cr_expect_not(kiln_tensor_requires_grad(i));
    cr_expect(kiln_tensor_requires_grad(kiln_max(x, 1, false)));
}

static kiln_tensor *f_max(kiln_tensor *const *x, void *ctx) {
    int axis = *(int *)ctx;
    kiln_tensor *t = kiln_transpose(x[0], 0, 2); /* a non-contiguous view */
    return kiln_mul(kiln_max(t, axis, axis == 1), kiln_max(t, axis, axis == 1));
}

KT_TEST(reduce, max_gradcheck) {
    kiln_tensor *x = kt_rand_input(3, (int64_t[]){3, 4, 5}, -1, 1); /* ties have probability 0 */
    for (int axis = -1; axis < 3; axis++) cr_expect(kt_gradcheck(f_max, &axis, 1, &x, 1e-6, 1e-8, 1e-6), "axis %d", axis);
}

KT_TEST(reduce, max_errors) {
    kiln_tensor *x = KT_F32(2, KT_SHAPE(2, 3), {1, 2, 3, 4, 5, 6});
    cr_expect_null(kiln_max(x, 2, false));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "axis 2 is out of range");
    cr_expect_null(kiln_argmax(NULL, 0, false));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "NULL");
    kiln_tensor *e = kiln_tensor_zeros(2, (int64_t[]){2, 0}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_max(e, 1, false));
    kt_expect_error(KILN_STATUS_SHAPE, "empty");
    /* along a non-empty axis of an empty tensor the result is just empty */
    KT_EXPECT_SHAPE(kiln_argmax(e, 0, false), 1, 0);
    kiln_tensor *l = kiln_tensor_cast(x, KILN_I64);
    cr_expect_null(kiln_argmax(l, 0, false));
    kt_expect_error(KILN_STATUS_DTYPE, "i64");
}

KT_TEST(reduce, null_input_keeps_the_first_error) {
    kiln_tensor *x = KT_F32(1, KT_SHAPE(3), {1, 2, 3});
    kiln_tensor *bad = kiln_max(x, 5, false);
    cr_expect_null(kiln_sum(kiln_max(bad, 0, false), 0, NULL, false));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "axis 5 is out of range");
}

/* A conv bias gradient's shape: sum over (0, 2, 3) of f32 rows of 37 (the eight-lane path
 * with a tail of 5), under every ISA clone. Integers, so every order gives the exact sum. */
KT_TEST(reduce, sum_of_contiguous_float_rows_every_clone) {
    static const char *const isas[3] = {"sse2", "avx2", "avx512"};
    const char *old = getenv("KILN_CPU_ISA");
    char *saved = old ? strdup(old) : NULL;
    kiln_tensor *x = kiln_reshape(kiln_tensor_arange(0, 3 * 4 * 5 * 37, 1, KILN_F32, KILN_CPU), 4,
                                  (int64_t[]){3, 4, 5, 37});
    double want[4] = {0};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++)
            for (int h = 0; h < 5; h++)
                for (int w = 0; w < 37; w++) want[j] += i * 740 + j * 185 + h * 37 + w;
    for (int k = 0; k < 3; k++) {
        setenv("KILN_CPU_ISA", isas[k], 1);
        kiln_tensor *s = kiln_sum(x, 3, (int[]){0, 2, 3}, false);
        KT_EXPECT_SHAPE(s, 1, 4);
        KT_EXPECT(s, 0, 0, {want[0], want[1], want[2], want[3]});
    }
    if (saved) setenv("KILN_CPU_ISA", saved, 1);
    else unsetenv("KILN_CPU_ISA");
    free(saved);
}

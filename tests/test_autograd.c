/* The tape: which tensors require grad, backward from a scalar or with a given
 * output gradient, accumulation across calls, graphs that reuse a tensor, no-grad
 * regions, zero_grad, and the errors backward answers with. */
#include "support/kiln_test.h"

#include <stdlib.h>

TestSuite(autograd, .init = kiln_test_setup, .fini = kiln_test_teardown);

static kiln_tensor *param(int n, const double *v) {
    kiln_tensor *t = kt_tensor(KILN_F64, 1, (int64_t[]){n}, v);
    cr_assert_eq(kiln_tensor_set_requires_grad(t, true), KILN_STATUS_OK);
    return t;
}
#define PARAM(...) param((int)(sizeof((double[])__VA_ARGS__) / sizeof(double)), (double[])__VA_ARGS__)

KT_TEST(autograd, requires_grad_propagates) {
    kiln_tensor *c = KT_F64(1, KT_SHAPE(2), {1, 2});
    kiln_tensor *p = PARAM({3, 4});
    cr_expect_not(kiln_tensor_requires_grad(c), "tensors start without requires_grad");
    cr_expect(kiln_tensor_requires_grad(p));
    cr_expect_not(kiln_tensor_requires_grad(kiln_exp(c)));
    cr_expect_not(kiln_tensor_requires_grad(kiln_add(c, c)));
    cr_expect(kiln_tensor_requires_grad(kiln_add(c, p)));
    cr_expect(kiln_tensor_requires_grad(kiln_mul(p, c)));
    cr_expect(kiln_tensor_requires_grad(kiln_transpose(kiln_unsqueeze(p, 0), 0, 1)), "views too");
    cr_expect(kiln_tensor_requires_grad(kiln_sum_all(kiln_sigmoid(kiln_mul(p, c)))));
    cr_expect(kiln_tensor_requires_grad(kiln_where(c, p, c)));
    cr_expect_not(kiln_tensor_requires_grad(kiln_tensor_detach(p)));
    cr_expect_not(kiln_tensor_requires_grad(kiln_tensor_cast(p, KILN_F32)), "casts are not recorded");
    /* turning it off on a leaf works; on a computed tensor it is an error */
    kiln_tensor *q = PARAM({1});
    cr_expect_eq(kiln_tensor_set_requires_grad(q, false), KILN_STATUS_OK);
    cr_expect_not(kiln_tensor_requires_grad(q));
    cr_expect_eq(kiln_tensor_set_requires_grad(kiln_exp(p), false), KILN_STATUS_STATE);
    kt_expect_error(KILN_STATUS_STATE, "kiln_tensor_detach");
}

KT_TEST(autograd, backward_from_a_scalar) {
    kiln_tensor *x = PARAM({1, -2, 3});
    kiln_tensor *loss = kiln_sum_all(kiln_mul(x, x));
    cr_expect_null(kiln_tensor_grad(x), "no gradient before backward");
    cr_assert_eq(kiln_backward(loss, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(x), 0, 0, {2, -4, 6});
    /* a [1]-shaped root is a scalar too */
    kiln_tensor *y = PARAM({5});
    cr_assert_eq(kiln_backward(kiln_mul_scalar(y, 3), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(y), 0, 0, {3});
    /* and so is a leaf on its own: its gradient is 1 */
    kiln_tensor *z = kiln_tensor_scalar(2, KILN_F32, KILN_CPU);
    kiln_tensor_set_requires_grad(z, true);
    cr_assert_eq(kiln_backward(z, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(z), 0, 0, {1});
}

KT_TEST(autograd, backward_with_an_output_gradient) {
    kiln_tensor *x = PARAM({1, 2, 3});
    kiln_tensor *y = kiln_mul_scalar(kiln_mul(x, x), 0.5); /* dy/dx = x */
    kiln_tensor *go = KT_F64(1, KT_SHAPE(3), {10, 20, -1});
    cr_assert_eq(kiln_backward(y, go), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(x), 0, 0, {10, 40, -3});
    KT_EXPECT(go, 0, 0, {10, 20, -1}); /* the given gradient is not modified */
    /* an output gradient for a leaf root lands in its .grad */
    kiln_tensor *p = PARAM({0, 0});
    cr_assert_eq(kiln_backward(p, KT_F64(1, KT_SHAPE(2), {4, 5})), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(p), 0, 0, {4, 5});
}

KT_TEST(autograd, gradients_accumulate_across_calls_and_zero_grad_resets) {
    kiln_tensor *x = PARAM({1, 2});
    kiln_tensor *loss = kiln_sum_all(kiln_mul(x, x));
    cr_assert_eq(kiln_backward_ex(loss, NULL, true), KILN_STATUS_OK); /* retain_graph, as torch needs too */
    cr_assert_eq(kiln_backward(loss, NULL), KILN_STATUS_OK, "a retained graph can be walked again");
    KT_EXPECT(kiln_tensor_grad(x), 0, 0, {4, 8});
    kiln_tensor *g = kiln_tensor_grad(x);
    kiln_tensor_zero_grad(x);
    cr_expect_eq(kiln_tensor_grad(x), g, "zero_grad keeps the gradient tensor");
    KT_EXPECT(g, 0, 0, {0, 0});
    /* a new graph on the same leaf adds to the (zeroed) gradient */
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul_scalar(x, 3)), NULL), KILN_STATUS_OK);
    KT_EXPECT(kiln_tensor_grad(x), 0, 0, {3, 3});
    kiln_tensor *fresh = PARAM({1});
    kiln_tensor_zero_grad(fresh); /* no gradient yet: nothing to do */
    cr_expect_null(kiln_tensor_grad(fresh));
}

KT_TEST(autograd, a_tensor_used_twice_gets_both_contributions) {
    /* y = x*x + exp(x): dy/dx = 2x + e^x */
    kiln_tensor *x = PARAM({0, 1, -1});
    kiln_tensor *y = kiln_add(kiln_mul(x, x), kiln_exp(x));
    cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(x), 1e-15, 1e-15, {1, 2 + M_E, -2 + exp(-1)});
}

KT_TEST(autograd, diamond_through_an_intermediate) {
    /* a = 2x; b = a + a; c = a * b = 2a^2 = 8x^2 -> dc/dx = 16x, reached through
     * three paths into a (two via b, one direct) */
    kiln_tensor *x = PARAM({1, -0.5});
    kiln_tensor *a = kiln_mul_scalar(x, 2);
    kiln_tensor *b = kiln_add(a, a);
    kiln_tensor *c = kiln_mul(a, b);
    cr_assert_eq(kiln_backward(kiln_sum_all(c), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(x), 0, 0, {16, -8});
    cr_expect_null(kiln_tensor_grad(a), "intermediates keep no .grad");
    cr_expect_null(kiln_tensor_grad(b));
}

KT_TEST(autograd, only_inputs_that_require_grad_receive_one) {
    kiln_tensor *w = PARAM({2, 3});
    kiln_tensor *c = KT_F64(1, KT_SHAPE(2), {5, 7});
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(w, c)), NULL), KILN_STATUS_OK);
    KT_EXPECT(kiln_tensor_grad(w), 0, 0, {5, 7});
    cr_expect_null(kiln_tensor_grad(c));
}

KT_TEST(autograd, where_with_a_float_condition_that_requires_grad) {
    /* the condition's gradient is zero (the output is piecewise constant in it) */
    kiln_tensor *m = PARAM({1, 0, 2});
    kiln_tensor *a = PARAM({1, 2, 3});
    kiln_tensor *y = kiln_where(m, a, kiln_tensor_scalar(0, KILN_F64, KILN_CPU));
    KT_EXPECT(y, 0, 0, {1, 0, 3});
    cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(a), 0, 0, {1, 0, 1});
    KT_EXPECT(kiln_tensor_grad(m), 0, 0, {0, 0, 0});
}

KT_TEST(autograd, no_grad_region_records_nothing) {
    kiln_tensor *x = PARAM({1, 2});
    cr_expect(kiln_grad_enabled());
    kiln_no_grad_begin();
    kiln_no_grad_begin();
    cr_expect_not(kiln_grad_enabled());
    kiln_tensor *y = kiln_mul(x, x);
    kiln_no_grad_end();
    cr_expect_not(kiln_grad_enabled(), "regions nest");
    kiln_tensor *z = kiln_exp(x);
    kiln_no_grad_end();
    cr_expect(kiln_grad_enabled());
    kiln_no_grad_end(); /* unbalanced end: ignored */
    cr_expect(kiln_grad_enabled());
    cr_expect_not(kiln_tensor_requires_grad(y));
    cr_expect_not(kiln_tensor_requires_grad(z));
    KT_EXPECT(y, 0, 0, {1, 4});
    cr_expect_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_STATE);
    kt_expect_error(KILN_STATUS_STATE, "no-grad region");
    /* mixing a no-grad result back in: only the recorded path carries gradient */
    kiln_tensor *w = kiln_sum_all(kiln_mul(x, y));
    cr_assert_eq(kiln_backward(w, NULL), KILN_STATUS_OK);
    KT_EXPECT(kiln_tensor_grad(x), 0, 0, {1, 4});
}

KT_TEST(autograd, backward_errors) {
    kiln_tensor *x = PARAM({1, 2});
    kiln_tensor *y = kiln_mul_scalar(x, 2);
    cr_expect_eq(kiln_backward(y, NULL), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "root f64[2] cpu is not a scalar; reduce it (kiln_sum_all / kiln_mean_all)");
    cr_expect_eq(kiln_backward(y, KT_F64(1, KT_SHAPE(3), {1, 1, 1})), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "grad_output f64[3] cpu does not match root f64[2] cpu");
    cr_expect_eq(kiln_backward(y, KT_F32(1, KT_SHAPE(2), {1, 1})), KILN_STATUS_DTYPE);
    kt_expect_error(KILN_STATUS_DTYPE, "grad_output f32[2]");
    kiln_tensor *c = KT_F64(1, KT_SHAPE(1), {1});
    cr_expect_eq(kiln_backward(c, NULL), KILN_STATUS_STATE);
    kt_expect_error(KILN_STATUS_STATE, "does not require grad");
    cr_expect_eq(kiln_backward(NULL, NULL), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "root is NULL");
    cr_expect_null(kiln_tensor_grad(x), "failed backward calls left no gradient");
}

KT_TEST(autograd, integer_tensors_cannot_require_grad) {
    const kiln_dtype dts[] = {KILN_I32, KILN_I64, KILN_U8, KILN_F16, KILN_BF16};
    for (int i = 0; i < 5; i++) {
        kiln_tensor *t = kiln_tensor_zeros(1, (int64_t[]){2}, dts[i], KILN_CPU);
        cr_expect_eq(kiln_tensor_set_requires_grad(t, true), KILN_STATUS_DTYPE, "%s", kiln_dtype_name(dts[i]));
        kt_expect_error(KILN_STATUS_DTYPE, "cannot require grad");
        cr_expect_not(kiln_tensor_requires_grad(t));
        cr_expect_eq(kiln_tensor_set_requires_grad(t, false), KILN_STATUS_OK);
    }
    kiln_tensor *f = kiln_tensor_zeros(1, (int64_t[]){2}, KILN_F32, KILN_CPU);
    cr_expect_eq(kiln_tensor_set_requires_grad(f, true), KILN_STATUS_OK);
}

KT_TEST(autograd, deep_chains_do_not_recurse) {
    /* 20000 nodes: the topological walk is iterative */
    kiln_tensor *x = PARAM({0.5});
    kiln_tensor *y = x;
    for (int i = 0; i < 20000; i++) y = kiln_add_scalar(y, 1e-3);
    cr_assert_eq(kiln_backward(y, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(x), 0, 0, {1});
}

KT_TEST(autograd, f32_gradients_match_f64) {
    const double v[] = {0.3, -1.2, 2.0};
    kiln_tensor *xd = PARAM({0.3, -1.2, 2.0});
    kiln_tensor *xf = kt_tensor(KILN_F32, 1, (int64_t[]){3}, v);
    kiln_tensor_set_requires_grad(xf, true);
    kiln_tensor *ld = kiln_sum_all(kiln_tanh(kiln_mul(xd, kiln_sigmoid(xd))));
    kiln_tensor *lf = kiln_sum_all(kiln_tanh(kiln_mul(xf, kiln_sigmoid(xf))));
    cr_assert_eq(kiln_backward(ld, NULL), KILN_STATUS_OK);
    cr_assert_eq(kiln_backward(lf, NULL), KILN_STATUS_OK);
    cr_expect_eq(kiln_tensor_dtype(kiln_tensor_grad(xf)), KILN_F32);
    double *gd = kt_values(kiln_tensor_grad(xd));
    kt_expect_values(kiln_tensor_grad(xf), gd, 3, 1e-6, 1e-6); /* f32: a few ulps of O(1) values */
    free(gd);
}

/* dropout: identity in eval and for p = 0, zeros for p = 1, the kept fraction and
 * scale over many draws, the same mask for the same seed (and for the gradient),
 * masks by logical index for strided input, and the Dropout module. */
#include "support/kiln_test.h"

#include <stdlib.h>

TestSuite(dropout, .init = kiln_test_setup, .fini = kiln_test_teardown);

KT_TEST(dropout, eval_and_p0_are_identity) {
    kiln_tensor *x = KT_F32(1, KT_SHAPE(3), {1, 2, 3});
    cr_expect_eq(kiln_dropout(x, 0.5, false), x);
    cr_expect_eq(kiln_dropout(x, 0.0, true), x);
    KT_EXPECT(kiln_dropout(x, 1.0, true), 0, 0, {0, 0, 0});
}

KT_TEST(dropout, statistics) {
    const int64_t n = 200000;
    const double p = 0.3;
    kiln_tensor *x = kiln_tensor_full(1, &n, 2.0, KILN_F32, KILN_CPU);
    double *v = kt_values(kiln_dropout(x, p, true));
    int64_t zeros = 0, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (v[i] == 0) zeros++;
        else if (fabs(v[i] - 2.0 / (1 - p)) > 1e-6) bad++;
    }
    free(v);
    cr_expect_eq(bad, 0, "%lld kept elements are not scaled by 1/(1-p)", (long long)bad);
    /* binomial: sd of the fraction = sqrt(p(1-p)/n) ~ 0.001; allow 5 sd */
    double frac = (double)zeros / (double)n;
    cr_expect(fabs(frac - p) < 0.005, "dropped fraction %.4f, expected %.2f", frac, p);
}

KT_TEST(dropout, deterministic_for_a_seed) {
    const int64_t n = 1000;
    kiln_tensor *x = kiln_tensor_full(1, &n, 1.0, KILN_F64, KILN_CPU);
    kiln_manual_seed(42);
    double *a = kt_values(kiln_dropout(x, 0.5, true));
    double *b = kt_values(kiln_dropout(x, 0.5, true)); /* the generator moved on */
    kiln_manual_seed(42);
    double *c = kt_values(kiln_dropout(x, 0.5, true));
    int same_ab = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_expect_eq(a[i], c[i], "element %lld differs after reseeding", (long long)i);
        same_ab += a[i] == b[i];
    }
    cr_expect(same_ab < n, "two draws without reseeding gave the same mask");
    free(a);
    free(b);
    free(c);
}

KT_TEST(dropout, backward_uses_the_forward_mask) {
    const int64_t n = 64;
    kiln_tensor *x = kiln_tensor_full(1, &n, 1.0, KILN_F64, KILN_CPU);
    kiln_tensor_set_requires_grad(x, true);
    kiln_tensor *y = kiln_dropout(x, 0.25, true);
    cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    double *yv = kt_values(y), *gv = kt_values(kiln_tensor_grad(x));
    for (int64_t i = 0; i < n; i++) cr_expect_eq(gv[i], yv[i], "element %lld: grad %g vs y %g", (long long)i, gv[i], yv[i]);
    free(yv);
    free(gv);
}

/* The generator is rewound before each call, so the checker sees one fixed mask. */
static kiln_tensor *f_dropout(kiln_tensor *const *in, void *ctx) {
    kiln_rng_set_state(99, 0);
    return kiln_dropout(in[0], 0.4, true);
}

KT_TEST(dropout, gradcheck_fixed_mask) {
    kiln_tensor *x = kt_rand_input(2, (int64_t[]){3, 5}, -1, 1);
    cr_expect(kt_gradcheck(f_dropout, NULL, 1, &x, 1e-6, 1e-8, 1e-6));
}

KT_TEST(dropout, strided_input_masks_by_logical_index) {
    kiln_tensor *base = kiln_tensor_rand(2, (int64_t[]){4, 6}, 1, 2, KILN_F64, KILN_CPU);
    kiln_tensor *t = kiln_transpose(base, 0, 1);
    kiln_tensor *c = kiln_tensor_contiguous(t);
    kiln_rng_set_state(5, 100);
    double *a = kt_values(kiln_dropout(t, 0.5, true));
    kiln_rng_set_state(5, 100);
    double *b = kt_values(kiln_dropout(c, 0.5, true));
    for (int i = 0; i < 24; i++) cr_expect_eq(a[i], b[i], "element %d", i);
    free(a);
    free(b);
}

KT_TEST(dropout, module_follows_train_and_eval) {
    kiln_module *d = kiln_dropout_create(0.5);
    cr_assert(d);
    const int64_t n = 100;
    kiln_tensor *x = kiln_tensor_full(1, &n, 1.0, KILN_F32, KILN_CPU);
    kiln_tensor *y = kiln_module_forward(d, x);
    cr_expect_neq(y, x);
    kiln_module_train(d, false);
    cr_expect_eq(kiln_module_forward(d, x), x);
    kiln_module_free(d);
}

KT_TEST(dropout, errors) {
    kiln_tensor *x = KT_F32(1, KT_SHAPE(2), {1, 2});
    cr_expect_null(kiln_dropout(x, 1.5, true));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "probability 1.5");
    cr_expect_null(kiln_dropout(x, -0.1, true));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "[0, 1]");
    cr_expect_null(kiln_dropout_create(NAN));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_dropout_create");
    cr_expect_null(kiln_dropout(NULL, 0.5, true));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "dropout: input 0 is NULL");
}

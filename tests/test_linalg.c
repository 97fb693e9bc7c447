/* Statistics and linear algebra: cov as torch.cov (one variable gives a 0-d variance,
 * in either layout or as a 1-d input; two variables a (2, 2) matrix), forward and the
 * gradient of its sum, against torch (tests/fixtures/gen_numerics.py); gradcheck in f64.
 * Tolerances: f64 1e-14 relative (sums of a few products); f32 1e-6. */
#include "support/kiln_test.h"
#include "fixtures/numerics_ref.h"

#include <stdlib.h>

TestSuite(linalg, .init = kiln_test_setup, .fini = kiln_test_teardown);

static void check_cov1(kiln_tensor *x, kiln_tensor *leaf, bool rowvar, int corr, const char *what) {
    kiln_dtype dt = kiln_tensor_dtype(x);
    double tol = dt == KILN_F64 ? 1e-14 : 1e-6;
    kiln_tensor *c = kiln_cov(x, rowvar, corr);
    cr_assert(c, "%s: %s", what, kiln_last_error());
    cr_expect_eq(kiln_tensor_ndim(c), 0, "%s: cov of one variable is 0-d in torch, got %d-d", what,
                 kiln_tensor_ndim(c));
    kt_expect_values(c, corr ? cov1_c1 : cov1_c0, 1, tol, tol);
    cr_assert_eq(kiln_backward(c, NULL), KILN_STATUS_OK, "%s: %s", what, kiln_last_error());
    kt_expect_values(kiln_tensor_grad(leaf), corr ? cov1_c1_grad : cov1_c0_grad, COV_N, tol, tol);
}

KT_TEST(linalg, cov_of_one_variable_is_0d) {
    for (int d = 0; d < 2; d++)
        for (int corr = 0; corr < 2; corr++) {
            kiln_dtype dt = d ? KILN_F64 : KILN_F32;
            kiln_tensor *a = kt_tensor(dt, 2, (int64_t[]){1, COV_N}, cov_x); /* rowvar: (1, N) */
            kiln_tensor_set_requires_grad(a, true);
            check_cov1(a, a, true, corr, "(1, N), rowvar");
            kiln_tensor *b = kt_tensor(dt, 2, (int64_t[]){COV_N, 1}, cov_x); /* observations x 1 variable */
            kiln_tensor_set_requires_grad(b, true);
            check_cov1(b, b, false, corr, "(N, 1)");
            kiln_tensor *v = kt_tensor(dt, 1, (int64_t[]){COV_N}, cov_x); /* torch.cov of a 1-d input */
            kiln_tensor_set_requires_grad(v, true);
            check_cov1(v, v, true, corr, "(N)");
        }
    /* a 0-d input is one observation: 0 / 0 with the default correction, as torch */
    KT_EXPECT(kiln_cov(KT_F64(0, KT_SHAPE(0), {3}), true, 1), 0, 0, {NAN});
}

KT_TEST(linalg, cov_of_two_variables_matches_torch) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        double tol = d ? 1e-14 : 1e-6;
        kiln_tensor *x = kt_tensor(dt, 2, (int64_t[]){2, COV_N}, cov2_x);
        kiln_tensor_set_requires_grad(x, true);
        kiln_tensor *c = kiln_cov(x, true, 1);
        KT_EXPECT_SHAPE(c, 2, 2, 2);
        kt_expect_values(c, cov2, 4, tol, tol);
        cr_assert_eq(kiln_backward(kiln_sum_all(c), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        kt_expect_values(kiln_tensor_grad(x), cov2_grad, 2 * COV_N, tol, tol);
    }
}

static kiln_tensor *f_cov(kiln_tensor *const *in, void *ctx) { return kiln_cov(in[0], ctx != NULL, 1); }

KT_TEST(linalg, cov_gradcheck) {
    kiln_tensor *x = kt_rand_input(2, (int64_t[]){3, 6}, -1, 1), *v = kt_rand_input(2, (int64_t[]){1, 6}, -1, 1);
    cr_expect(kt_gradcheck(f_cov, (void *)1, 1, &x, 1e-6, 1e-7, 1e-6), "(3, 6) rowvar");
    cr_expect(kt_gradcheck(f_cov, NULL, 1, &x, 1e-6, 1e-7, 1e-6), "(3, 6) as 3 observations of 6 variables");
    cr_expect(kt_gradcheck(f_cov, (void *)1, 1, &v, 1e-6, 1e-7, 1e-6), "one variable");
}

KT_TEST(linalg, cov_errors) {
    cr_expect_null(kiln_cov(kiln_tensor_zeros(3, (int64_t[]){2, 2, 2}, KILN_F64, KILN_CPU), true, 1));
    kt_expect_error(KILN_STATUS_SHAPE, "must be 2-d");
    cr_expect_null(kiln_cov(KT_F64(1, KT_SHAPE(2), {1, 2}), true, -1));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "correction -1");
}

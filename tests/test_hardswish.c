/* hardswish (core/elementwise.c, the math in kernels/elementwise_math.h): forward against
 * hand-computed values in f32 and f64, -0 below -3 and NaN kept as torch's
 * x * min(max(x + 3, 0), 6) / 6 gives them; backward against the hand-computed slopes
 * (0, x/3 + 1/2, 1) at and between the kinks and through the float64 gradient checker.
 * Its CUDA kernel is the shared unary kernel: tests/test_cuda_emu_elementwise.c runs every
 * unary kind through the emulated kernels against the CPU ones, and the Python suite
 * compares kiln.hardswish with torch's (bindings/python/tests/test_ops.py).
 * Tolerances: f64 1e-16 + 5e-16*|y|, f32 1e-7 + 3e-7*|y| (one rounding of a product and
 * a quotient); gradcheck eps 1e-6, 1e-7 + 1e-6*|numeric|. */
#include "support/kiln_test.h"

#include <math.h>
#include <stdlib.h>

TestSuite(hardswish, .init = kiln_test_setup, .fini = kiln_test_teardown);

KT_TEST(hardswish, forward_matches_hand_computed_values) {
    const double x[] = {-4, -3, -1.5, -0.0, 0, 1, 3, 4.5};
    /* x (x + 3) / 6 on [-3, 3], 0 below, x above */
    const double want[] = {-0.0, -0.0, -0.375, -0.0, 0, 4.0 / 6.0, 3, 4.5};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *y = kiln_hardswish(kt_tensor(dt, 1, (const int64_t[]){8}, x));
        if (dt == KILN_F64)
            KT_EXPECT(y, 1e-16, 5e-16, {-0.0, -0.0, -0.375, -0.0, 0, 4.0 / 6.0, 3, 4.5});
        else
            KT_EXPECT(y, 1e-7, 3e-7, {-0.0, -0.0, -0.375, -0.0, 0, 4.0 / 6.0, 3, 4.5});
        double *v = kt_values(y);
        for (int i = 0; i < 8; i++)
            cr_expect(signbit(v[i]) == signbit(want[i]), "%s: hardswish(%g) = %g, sign of %g expected",
                      kiln_dtype_name(dt), x[i], v[i], want[i]);
        free(v);
    }
}

KT_TEST(hardswish, nan_stays_nan_and_passes_the_gradient) {
    kiln_tensor *x = KT_F64(1, KT_SHAPE(2), {NAN, 1});
    kiln_tensor_set_requires_grad(x, true);
    kiln_tensor *y = kiln_hardswish(x);
    double *v = kt_values(y);
    cr_expect(isnan(v[0]), "hardswish(NaN) = %g", v[0]);
    free(v);
    cr_assert_eq(kiln_backward(kiln_sum(y, 0, NULL, false), NULL), KILN_STATUS_OK);
    /* both of torch's comparisons (x < -3, x <= 3) are false at NaN: the gradient is g */
    KT_EXPECT(kiln_tensor_grad(x), 0, 0, {1, 1.0 / 3.0 + 0.5});
}

KT_TEST(hardswish, backward_slopes_at_and_between_the_kinks) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *x = kt_tensor(dt, 1, (const int64_t[]){7}, (const double[]){-4, -3, -1.5, 0, 1.5, 3, 4.5});
        kiln_tensor_set_requires_grad(x, true);
        kiln_tensor *g = kt_tensor(dt, 1, (const int64_t[]){7}, (const double[]){2, 2, 2, 2, 2, 2, 2});
        cr_assert_eq(kiln_backward(kiln_hardswish(x), g), KILN_STATUS_OK);
        /* 2 (x/3 + 1/2) on [-3, 3], closed at both ends as torch: -0.5·2 at -3, 1.5·2 at 3 */
        KT_EXPECT(kiln_tensor_grad(x), 1e-7, 3e-7, {0, -1, 0, 1, 2, 3, 2});
    }
}

static kiln_tensor *gc_hardswish(kiln_tensor *const *x, void *ctx) { return kiln_hardswish(x[0]); }

KT_TEST(hardswish, backward_gradcheck) {
    kiln_tensor *x = kt_rand_input(2, (int64_t[]){4, 5}, -5, 5);
    cr_expect(kt_gradcheck(gc_hardswish, NULL, 1, &x, 1e-6, 1e-7, 1e-6));
}

/* First light: elementwise, broadcasting, sum, views and backward through them. */
#include "support/kiln_test.h"

TestSuite(smoke, .init = kiln_test_setup, .fini = kiln_test_teardown);

KT_TEST(smoke, add_broadcast_forward_backward) {
    kiln_tensor *a = KT_F32(2, KT_SHAPE(2, 3), {1, 2, 3, 4, 5, 6});
    kiln_tensor *b = KT_F32(1, KT_SHAPE(3), {10, 20, 30});
    kiln_tensor_set_requires_grad(a, true);
    kiln_tensor_set_requires_grad(b, true);
    kiln_tensor *c = kiln_mul(kiln_add(a, b), a);
    KT_EXPECT(c, 0, 0, {11, 44, 99, 56, 125, 216});
    cr_assert_eq(kiln_backward(kiln_sum_all(c), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    /* d/da (a+b)a = 2a + b ; d/db = sum over rows of a */
    KT_EXPECT(kiln_tensor_grad(a), 0, 0, {12, 24, 36, 18, 30, 42});
    KT_EXPECT(kiln_tensor_grad(b), 0, 0, {5, 7, 9});
}

static kiln_tensor *f_views(kiln_tensor *const *x, void *ctx) {
    kiln_tensor *t = kiln_transpose(x[0], 0, 1);           /* [4,3] */
    kiln_tensor *s = kiln_slice(t, 0, 1, 4, 2);            /* rows 1,3 */
    kiln_tensor *r = kiln_reshape(kiln_tensor_contiguous(s), 1, (int64_t[]){6});
    return kiln_sigmoid(kiln_mul(r, kiln_exp(r)));
}

KT_TEST(smoke, gradcheck_views) {
    kiln_tensor *x = kt_rand_input(2, (int64_t[]){3, 4}, -1, 1);
    cr_expect(kt_gradcheck(f_views, NULL, 1, &x, 1e-6, 1e-8, 1e-6));
}

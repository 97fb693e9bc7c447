/* concat: values along each axis (negative too), views and empty pieces as inputs,
 * integer dtypes, gradients (each input gets its slice), and the mismatch errors. */
#include "support/kiln_test.h"

TestSuite(concat, .init = kiln_test_setup, .fini = kiln_test_teardown);

KT_TEST(concat, along_each_axis) {
    kiln_tensor *a = KT_F32(2, KT_SHAPE(2, 2), {1, 2, 3, 4});
    kiln_tensor *b = KT_F32(2, KT_SHAPE(1, 2), {5, 6});
    kiln_tensor *c = KT_F32(2, KT_SHAPE(2, 1), {7, 8});
    kiln_tensor *r0 = kiln_concat(2, (kiln_tensor *[]){a, b}, 0);
    KT_EXPECT_SHAPE(r0, 2, 3, 2);
    KT_EXPECT(r0, 0, 0, {1, 2, 3, 4, 5, 6});
    kiln_tensor *r1 = kiln_concat(3, (kiln_tensor *[]){c, a, c}, -1);
    KT_EXPECT_SHAPE(r1, 2, 2, 4);
    KT_EXPECT(r1, 0, 0, {7, 1, 2, 7, 8, 3, 4, 8});
    kiln_tensor *one = kiln_concat(1, &a, 1);
    KT_EXPECT(one, 0, 0, {1, 2, 3, 4});
    cr_expect_neq(one, a, "concat makes a new tensor");
}

KT_TEST(concat, channels_of_nchw) {
    /* U-Net skip connections: [1,2,2,2] and [1,1,2,2] along channels */
    kiln_tensor *x = kiln_reshape(kiln_tensor_arange(0, 8, 1, KILN_F64, KILN_CPU), 4, (int64_t[]){1, 2, 2, 2});
    kiln_tensor *y = kiln_reshape(kiln_tensor_arange(10, 14, 1, KILN_F64, KILN_CPU), 4, (int64_t[]){1, 1, 2, 2});
    kiln_tensor *r = kiln_concat(2, (kiln_tensor *[]){x, y}, 1);
    KT_EXPECT_SHAPE(r, 4, 1, 3, 2, 2);
    KT_EXPECT(r, 0, 0, {0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12, 13});
}

KT_TEST(concat, views_empty_pieces_and_integers) {
    kiln_tensor *a = KT_F64(2, KT_SHAPE(2, 3), {1, 2, 3, 4, 5, 6});
    kiln_tensor *at = kiln_transpose(a, 0, 1);                 /* [3,2]: 1 4 / 2 5 / 3 6 */
    kiln_tensor *col = kiln_slice(at, 1, 1, 2, 1);             /* [3,1]: 4 5 6 */
    kiln_tensor *ex = kiln_expand(KT_F64(2, KT_SHAPE(1, 1), {9}), 2, (int64_t[]){3, 1});
    kiln_tensor *none = kiln_tensor_zeros(2, (int64_t[]){3, 0}, KILN_F64, KILN_CPU);
    kiln_tensor *r = kiln_concat(4, (kiln_tensor *[]){at, none, col, ex}, 1);
    KT_EXPECT_SHAPE(r, 2, 3, 4);
    KT_EXPECT(r, 0, 0, {1, 4, 4, 9, 2, 5, 5, 9, 3, 6, 6, 9});
    kiln_tensor *l = kiln_tensor_cast(a, KILN_I64);
    kiln_tensor *li = kiln_concat(2, (kiln_tensor *[]){l, l}, 0);
    cr_assert_eq(kiln_tensor_dtype(li), KILN_I64, "%s", kiln_last_error());
    KT_EXPECT(li, 0, 0, {1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6});
    kiln_tensor *u = kiln_tensor_cast(a, KILN_U8);
    KT_EXPECT(kiln_concat(2, (kiln_tensor *[]){u, u}, 1), 0, 0, {1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6});
}

KT_TEST(concat, gradient_is_each_inputs_slice) {
    kiln_tensor *a = KT_F64(2, KT_SHAPE(2, 1), {1, 2});
    kiln_tensor *b = KT_F64(2, KT_SHAPE(2, 2), {3, 4, 5, 6});
    kiln_tensor *c = KT_F64(2, KT_SHAPE(2, 1), {7, 8});
    kiln_tensor_set_requires_grad(a, true);
    kiln_tensor_set_requires_grad(c, true); /* b takes no gradient */
    kiln_tensor *r = kiln_concat(3, (kiln_tensor *[]){a, b, c}, 1);
    kiln_tensor *g = KT_F64(2, KT_SHAPE(2, 4), {10, 20, 30, 40, 50, 60, 70, 80});
    cr_assert_eq(kiln_backward(r, g), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(a), 0, 0, {10, 50});
    KT_EXPECT(kiln_tensor_grad(c), 0, 0, {40, 80});
    cr_expect_null(kiln_tensor_grad(b));
}

static kiln_tensor *f_cat(kiln_tensor *const *x, void *ctx) {
    int axis = *(int *)ctx;
    kiln_tensor *t = kiln_transpose(x[2], 0, 1); /* a view input */
    kiln_tensor *r = kiln_concat(3, (kiln_tensor *[]){x[0], t, x[1]}, axis);
    return kiln_mul(r, r);
}

KT_TEST(concat, gradcheck) {
    int ax0 = 0, ax1 = -1;
    kiln_tensor *in0[3] = {kt_rand_input(2, (int64_t[]){2, 3}, -1, 1), kt_rand_input(2, (int64_t[]){4, 3}, -1, 1),
                           kt_rand_input(2, (int64_t[]){3, 1}, -1, 1)};
    cr_expect(kt_gradcheck(f_cat, &ax0, 3, in0, 1e-6, 1e-8, 1e-6));
    kiln_tensor *in1[3] = {kt_rand_input(2, (int64_t[]){3, 2}, -1, 1), kt_rand_input(2, (int64_t[]){3, 4}, -1, 1),
                           kt_rand_input(2, (int64_t[]){1, 3}, -1, 1)};
    cr_expect(kt_gradcheck(f_cat, &ax1, 3, in1, 1e-6, 1e-8, 1e-6));
}

KT_TEST(concat, errors) {
    kiln_tensor *a = kiln_tensor_zeros(2, (int64_t[]){2, 3}, KILN_F32, KILN_CPU);
    kiln_tensor *b = kiln_tensor_zeros(2, (int64_t[]){2, 4}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_concat(2, (kiln_tensor *[]){a, b}, 0));
    cr_expect(strstr(kiln_last_error(), "[2, 3]") && strstr(kiln_last_error(), "[2, 4]"), "%s", kiln_last_error());
    kt_expect_error(KILN_STATUS_SHAPE, "must match");
    cr_expect_not_null(kiln_concat(2, (kiln_tensor *[]){a, b}, 1), "%s", kiln_last_error());
    kiln_tensor *c = kiln_tensor_zeros(3, (int64_t[]){2, 3, 1}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_concat(2, (kiln_tensor *[]){a, c}, 0));
    kt_expect_error(KILN_STATUS_SHAPE, "[2, 3, 1]");
    cr_expect_null(kiln_concat(2, (kiln_tensor *[]){a, kiln_tensor_cast(a, KILN_F64)}, 0));
    kt_expect_error(KILN_STATUS_DTYPE, "f64");
    cr_expect_null(kiln_concat(2, (kiln_tensor *[]){a, NULL}, 0));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "input 1 is NULL");
    cr_expect_null(kiln_concat(0, NULL, 0));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "at least one");
    cr_expect_null(kiln_concat(2, (kiln_tensor *[]){a, a}, 2));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "out of range");
    kiln_tensor *s = kiln_tensor_scalar(1, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_concat(2, (kiln_tensor *[]){s, s}, 0));
    kt_expect_error(KILN_STATUS_SHAPE, "0-d");
}

/* linear: forward against torch.nn.functional.linear fixtures (f32 and f64, batched
 * and 1-d), strided operands through every BLAS path, hand-computed backward,
 * float64 gradient checks, and the shape errors. */
#include "support/kiln_test.h"
#include "fixtures/nn_linear.h"
#include "fixtures/nn_linear_vec.h"

#include <stdlib.h>
#include <string.h>

TestSuite(linear, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define N_OF(a) ((int64_t)(sizeof(a) / sizeof((a)[0])))

static kiln_tensor *fx(const double *v, int ndim, const int64_t *shape, kiln_dtype dt) {
    return kt_tensor(dt, ndim, shape, v);
}

KT_TEST(linear, forward_matches_torch_f64_and_f32) {
    for (int k = 0; k < 2; k++) {
        kiln_dtype dt = k ? KILN_F32 : KILN_F64;
        double tol = k ? 1e-5 : 1e-12; /* f32: a 4-term dot product of values ~1 */
        kiln_tensor *x = fx(FX_LIN_X, 3, (int64_t[]){2, 3, 4}, dt);
        kiln_tensor *w = fx(FX_LIN_W, 2, (int64_t[]){5, 4}, dt);
        kiln_tensor *b = fx(FX_LIN_B, 1, (int64_t[]){5}, dt);
        kiln_tensor *y = kiln_linear(x, w, b);
        KT_EXPECT_SHAPE(y, 3, 2, 3, 5);
        kt_expect_values(y, FX_LIN_Y, N_OF(FX_LIN_Y), tol, tol);
        kiln_tensor *y1 = kiln_linear(fx(FX_LIN_X1, 1, (int64_t[]){4}, dt), w, NULL);
        KT_EXPECT_SHAPE(y1, 1, 5);
        kt_expect_values(y1, FX_LIN_Y1, N_OF(FX_LIN_Y1), tol, tol);
    }
}

/* Transposed (column-major), row-strided and unfoldable views give the contiguous result. */
KT_TEST(linear, strided_operands) {
    kiln_tensor *x = fx(FX_LIN_X, 3, (int64_t[]){2, 3, 4}, KILN_F64);
    kiln_tensor *w = fx(FX_LIN_W, 2, (int64_t[]){5, 4}, KILN_F64);
    kiln_tensor *b = fx(FX_LIN_B, 1, (int64_t[]){5}, KILN_F64);
    /* W as the transpose of a contiguous (4, 5): the BLAS reads it column-major */
    kiln_tensor *wt = kiln_transpose(kiln_tensor_contiguous(kiln_transpose(w, 0, 1)), 0, 1);
    cr_assert(!kiln_tensor_is_contiguous(wt));
    kt_expect_values(kiln_linear(x, wt, b), FX_LIN_Y, N_OF(FX_LIN_Y), 1e-12, 1e-12);
    /* x as axes (1, 0, 2) of a (3, 2, 4): leading axes do not fold, so it is packed */
    kiln_tensor *xp = kiln_permute(kiln_tensor_contiguous(kiln_permute(x, (int[]){1, 0, 2})), (int[]){1, 0, 2});
    cr_assert(!kiln_tensor_is_contiguous(xp));
    kt_expect_values(kiln_linear(xp, w, b), FX_LIN_Y, N_OF(FX_LIN_Y), 1e-12, 1e-12);
    /* rows with a gap: every other row of a (2, 6, 4) */
    kiln_tensor *big = kiln_tensor_zeros(3, (int64_t[]){2, 6, 4}, KILN_F64, KILN_CPU);
    kiln_tensor *rows = kiln_slice(big, 1, 0, 6, 2);
    cr_assert_eq(kiln_tensor_copy_(rows, x), KILN_STATUS_OK);
    kt_expect_values(kiln_linear(rows, w, b), FX_LIN_Y, N_OF(FX_LIN_Y), 1e-12, 1e-12);
    /* an expanded bias (stride 0) */
    kiln_tensor *b0 = kiln_expand(KT_F64(1, KT_SHAPE(1), {0.5}), 1, (int64_t[]){5});
    kiln_tensor *y = kiln_linear(KT_F64(2, KT_SHAPE(1, 4), {1, 0, 0, 0}), w, b0);
    KT_EXPECT(y, 1e-12, 0, {FX_LIN_W[0] + 0.5, FX_LIN_W[4] + 0.5, FX_LIN_W[8] + 0.5, FX_LIN_W[12] + 0.5,
                            FX_LIN_W[16] + 0.5});
}

KT_TEST(linear, backward_by_hand) {
    kiln_tensor *x = KT_F32(2, KT_SHAPE(2, 3), {1, 2, 3, 4, 5, 6});
    kiln_tensor *w = KT_F32(2, KT_SHAPE(2, 3), {1, 0, -1, 0.5, 0.5, 0.5});
    kiln_tensor *b = KT_F32(1, KT_SHAPE(2), {10, 20});
    kiln_tensor_set_requires_grad(x, true);
    kiln_tensor_set_requires_grad(w, true);
    kiln_tensor_set_requires_grad(b, true);
    kiln_tensor *y = kiln_linear(x, w, b);
    KT_EXPECT(y, 1e-6, 0, {8, 23, 8, 27.5});
    kiln_tensor *g = KT_F32(2, KT_SHAPE(2, 2), {1, 2, 3, 4});
    cr_assert_eq(kiln_backward(y, g), KILN_STATUS_OK, "%s", kiln_last_error());
    /* dX = G·W, dW = Gᵀ·X, db = column sums of G */
    KT_EXPECT(kiln_tensor_grad(x), 1e-6, 0, {2, 1, 0, 5, 2, -1});
    KT_EXPECT(kiln_tensor_grad(w), 1e-6, 0, {13, 17, 21, 18, 24, 30});
    KT_EXPECT(kiln_tensor_grad(b), 1e-6, 0, {4, 6});
}

static kiln_tensor *f_linear(kiln_tensor *const *in, void *ctx) { return kiln_linear(in[0], in[1], in[2]); }
static kiln_tensor *f_linear_nobias(kiln_tensor *const *in, void *ctx) { return kiln_linear(in[0], in[1], NULL); }
/* weight read through a transposed view, input through a permuted one */
static kiln_tensor *f_linear_views(kiln_tensor *const *in, void *ctx) {
    kiln_tensor *x = kiln_permute(in[0], (int[]){1, 0, 2});
    return kiln_linear(x, kiln_transpose(in[1], 0, 1), in[2]);
}

KT_TEST(linear, gradcheck_f64) {
    kiln_tensor *in[3] = {kt_rand_input(3, (int64_t[]){2, 3, 4}, -1, 1), kt_rand_input(2, (int64_t[]){5, 4}, -1, 1),
                          kt_rand_input(1, (int64_t[]){5}, -1, 1)};
    cr_expect(kt_gradcheck(f_linear, NULL, 3, in, 1e-6, 1e-8, 1e-6));
    cr_expect(kt_gradcheck(f_linear_nobias, NULL, 2, in, 1e-6, 1e-8, 1e-6));
    kiln_tensor *v[3] = {kt_rand_input(3, (int64_t[]){3, 2, 4}, -1, 1), kt_rand_input(2, (int64_t[]){4, 5}, -1, 1),
                         kt_rand_input(1, (int64_t[]){5}, -1, 1)};
    cr_expect(kt_gradcheck(f_linear_views, NULL, 3, v, 1e-6, 1e-8, 1e-6));
    kiln_tensor *one[3] = {kt_rand_input(1, (int64_t[]){4}, -1, 1), in[1], in[2]};
    cr_expect(kt_gradcheck(f_linear, NULL, 3, one, 1e-6, 1e-8, 1e-6));
}

KT_TEST(linear, empty_batch_and_zero_features) {
    kiln_tensor *w = kiln_tensor_full(2, (int64_t[]){3, 0}, 1, KILN_F32, KILN_CPU);
    kiln_tensor *b = KT_F32(1, KT_SHAPE(3), {1, 2, 3});
    KT_EXPECT(kiln_linear(kiln_tensor_zeros(2, (int64_t[]){2, 0}, KILN_F32, KILN_CPU), w, b), 0, 0,
              {1, 2, 3, 1, 2, 3});
    kiln_tensor *y = kiln_linear(kiln_tensor_zeros(2, (int64_t[]){0, 4}, KILN_F32, KILN_CPU),
                                 kiln_tensor_zeros(2, (int64_t[]){3, 4}, KILN_F32, KILN_CPU), NULL);
    KT_EXPECT_SHAPE(y, 2, 0, 3);
}

/* ---- a 1-d weight: torch's F.linear(x, w) = x @ w, output x.shape[:-1] ------------------ */

KT_TEST(linear, vector_weight_matches_torch) {
    const int64_t xs[4] = {2, 1, 3, 4};
    for (int k = 0; k < 2; k++) {
        kiln_dtype dt = k ? KILN_F32 : KILN_F64;
        double tol = k ? 1e-6 : 1e-14;
        kiln_tensor *x = fx(FX_LINV_X, 4, xs, dt), *w = fx(FX_LINV_W, 1, (int64_t[]){4}, dt);
        kiln_tensor *y = kiln_linear(x, w, NULL);
        KT_EXPECT_SHAPE(y, 3, 2, 1, 3);
        kt_expect_values(y, FX_LINV_Y, 6, tol, tol);
        kiln_tensor *b0 = kiln_reshape(fx(FX_LINV_B, 1, (int64_t[]){1}, dt), 0, NULL); /* torch's 0-d bias */
        kiln_tensor *yb = kiln_linear(x, w, b0);
        KT_EXPECT_SHAPE(yb, 3, 2, 1, 3);
        kt_expect_values(yb, FX_LINV_YB, 6, tol, tol);
        kt_expect_values(kiln_linear(x, w, fx(FX_LINV_B, 1, (int64_t[]){1}, dt)), FX_LINV_YB, 6, tol, tol);
        /* a 1-d input gives a 0-d result: the dot product */
        kiln_tensor *x1 = kiln_reshape(kiln_slice(kiln_reshape(x, 2, (int64_t[]){6, 4}), 0, 2, 3, 1), 1,
                                       (int64_t[]){4});
        kiln_tensor *d = kiln_linear(x1, w, b0);
        cr_assert(d, "%s", kiln_last_error());
        cr_expect_eq(kiln_tensor_ndim(d), 0);
        cr_expect_float_eq(kiln_tensor_item(d), FX_LINV_YB[2], tol);
        /* exactly the (1, in) weight's product with its size-1 axis squeezed */
        double *a = kt_values(y);
        double *c = kt_values(kiln_linear(x, kiln_unsqueeze(w, 0), NULL));
        cr_expect(a && c && memcmp(a, c, 6 * sizeof *a) == 0);
        free(a);
        free(c);
    }
}

static kiln_tensor *f_linear_vec(kiln_tensor *const *in, void *ctx) {
    return kiln_linear(in[0], in[1], ctx ? in[2] : NULL);
}

KT_TEST(linear, vector_weight_gradcheck_f64) {
    kiln_tensor *in[3] = {kt_rand_input(3, (int64_t[]){2, 3, 4}, -1, 1), kt_rand_input(1, (int64_t[]){4}, -1, 1),
                          kt_rand_input(0, NULL, -1, 1)};
    cr_expect(kt_gradcheck(f_linear_vec, in, 3, in, 1e-6, 1e-8, 1e-6));
    cr_expect(kt_gradcheck(f_linear_vec, NULL, 2, in, 1e-6, 1e-8, 1e-6));
    kiln_tensor *one[3] = {kt_rand_input(1, (int64_t[]){4}, -1, 1), in[1], kt_rand_input(1, (int64_t[]){1}, -1, 1)};
    cr_expect(kt_gradcheck(f_linear_vec, one, 3, one, 1e-6, 1e-8, 1e-6));
    /* the 0-d bias's gradient is the sum of the output gradient, as torch: 6 ones give 6 */
    kiln_tensor *x = kiln_tensor_zeros(3, (int64_t[]){2, 3, 4}, KILN_F64, KILN_CPU);
    kiln_tensor *w = kiln_tensor_zeros(1, (int64_t[]){4}, KILN_F64, KILN_CPU);
    kiln_tensor *b = kiln_tensor_scalar(0.5, KILN_F64, KILN_CPU);
    kiln_tensor_set_requires_grad(w, true);
    kiln_tensor_set_requires_grad(b, true);
    cr_assert_eq(kiln_backward(kiln_sum(kiln_linear(x, w, b), 0, NULL, false), NULL), KILN_STATUS_OK);
    cr_expect_eq(kiln_tensor_ndim(kiln_tensor_grad(b)), 0);
    cr_expect_float_eq(kiln_tensor_item(kiln_tensor_grad(b)), 6.0, 1e-12);
    KT_EXPECT_SHAPE(kiln_tensor_grad(w), 1, 4);
}

KT_TEST(linear, errors) {
    kiln_tensor *w = kiln_tensor_zeros(2, (int64_t[]){5, 4}, KILN_F32, KILN_CPU);
    kiln_tensor *x = kiln_tensor_zeros(2, (int64_t[]){2, 3}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_linear(x, w, NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "input [2, 3] has 3 features");
    cr_expect_null(kiln_linear(x, kiln_tensor_zeros(3, (int64_t[]){1, 5, 3}, KILN_F32, KILN_CPU), NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "must be 2-d (out_features, in_features) as torch, or 1-d");
    cr_expect_null(kiln_linear(x, kiln_tensor_zeros(1, (int64_t[]){4}, KILN_F32, KILN_CPU), NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "linear: input [2, 3] has 3 features in its last axis but the 1-d weight [4]");
    cr_expect_null(kiln_linear(x, kiln_tensor_zeros(1, (int64_t[]){3}, KILN_F32, KILN_CPU),
                               kiln_tensor_zeros(1, (int64_t[]){2}, KILN_F32, KILN_CPU)));
    kt_expect_error(KILN_STATUS_SHAPE, "linear: bias [2] with the 1-d weight [3] must be 0-d or hold one value");
    cr_expect_null(kiln_linear(kiln_tensor_scalar(1, KILN_F32, KILN_CPU),
                               kiln_tensor_zeros(1, (int64_t[]){1}, KILN_F32, KILN_CPU), NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "linear: input [] has 0 features");
    cr_expect_null(kiln_linear(kiln_tensor_zeros(1, (int64_t[]){4}, KILN_F32, KILN_CPU), w,
                               kiln_tensor_zeros(1, (int64_t[]){4}, KILN_F32, KILN_CPU)));
    kt_expect_error(KILN_STATUS_SHAPE, "bias [4]");
    cr_expect_null(kiln_linear(NULL, w, NULL));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "linear: input 0 is NULL");
    cr_expect_null(kiln_linear(kiln_tensor_zeros(1, (int64_t[]){4}, KILN_F64, KILN_CPU), w, NULL));
    kt_expect_error(KILN_STATUS_DTYPE, "different dtypes");
}

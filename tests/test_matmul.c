/* matmul: hand values, torch.matmul's 1-d promotion rules, batch broadcasting
 * (against a plain triple loop), transposed and strided views, the dense layer over
 * a batch as one product, gradients through kt_gradcheck, and shape errors. */
#include "support/kiln_test.h"

#include <stdlib.h>

TestSuite(matmul, .init = kiln_test_setup, .fini = kiln_test_teardown);

KT_TEST(matmul, hand_values) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *a = kt_tensor(dt, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6});
        kiln_tensor *b = kt_tensor(dt, 2, (int64_t[]){3, 2}, (double[]){7, 8, 9, 10, 11, 12});
        kiln_tensor *c = kiln_matmul(a, b);
        KT_EXPECT_SHAPE(c, 2, 2, 2);
        KT_EXPECT(c, 0, 0, {58, 64, 139, 154});
        cr_expect_eq(kiln_tensor_dtype(c), dt);
    }
}

KT_TEST(matmul, one_dimensional_operands) {
    kiln_tensor *v = KT_F64(1, KT_SHAPE(3), {1, 2, 3});
    kiln_tensor *w = KT_F64(1, KT_SHAPE(3), {4, 5, 6});
    kiln_tensor *m = KT_F64(2, KT_SHAPE(2, 3), {1, 0, 2, 0, 1, 1});   /* [2,3] */
    kiln_tensor *mt = KT_F64(2, KT_SHAPE(3, 2), {1, 0, 0, 1, 2, 1});  /* [3,2] */
    kiln_tensor *dot = kiln_matmul(v, w);
    cr_assert_eq(kiln_tensor_ndim(dot), 0, "%s", kiln_last_error());
    KT_EXPECT(dot, 0, 0, {32});
    kiln_tensor *mv = kiln_matmul(m, v); /* [2,3]·[3] -> [2] */
    KT_EXPECT_SHAPE(mv, 1, 2);
    KT_EXPECT(mv, 0, 0, {7, 5});
    kiln_tensor *vm = kiln_matmul(v, mt); /* [3]·[3,2] -> [2] */
    KT_EXPECT_SHAPE(vm, 1, 2);
    KT_EXPECT(vm, 0, 0, {7, 5});
    /* batched matrix times vector and vector times batched matrix */
    kiln_tensor *bm = kiln_reshape(kiln_tensor_arange(0, 12, 1, KILN_F64, KILN_CPU), 3, (int64_t[]){2, 2, 3});
    kiln_tensor *bmv = kiln_matmul(bm, v);
    KT_EXPECT_SHAPE(bmv, 2, 2, 2);
    KT_EXPECT(bmv, 0, 0, {8, 26, 44, 62});
    kiln_tensor *u = KT_F64(1, KT_SHAPE(2), {1, -1});
    kiln_tensor *vbm = kiln_matmul(u, bm); /* [2]·[2,2,3] -> [2,3] */
    KT_EXPECT_SHAPE(vbm, 2, 2, 3);
    KT_EXPECT(vbm, 0, 0, {-3, -3, -3, -3, -3, -3});
}

/* c[t] = a[t] · b[t] for a contiguous batch of count t. */
static void ref_bmm(const double *a, const double *b, double *c, int64_t T, int64_t M, int64_t K, int64_t N,
                    int64_t astep, int64_t bstep) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double s = 0;
                for (int64_t k = 0; k < K; k++) s += a[t * astep + i * K + k] * b[t * bstep + k * N + j];
                c[(t * M + i) * N + j] = s;
            }
}

KT_TEST(matmul, batch_broadcasting) {
    /* [2,1,2,3] x [3,3,4] -> [2,3,2,4]: a repeats over the 3, b over the 2 */
    kiln_tensor *a = kiln_tensor_randn(4, (int64_t[]){2, 1, 2, 3}, 0, 1, KILN_F64, KILN_CPU);
    kiln_tensor *b = kiln_tensor_randn(3, (int64_t[]){3, 3, 4}, 0, 1, KILN_F64, KILN_CPU);
    kiln_tensor *c = kiln_matmul(a, b);
    KT_EXPECT_SHAPE(c, 4, 2, 3, 2, 4);
    double *av = kt_values(a), *bv = kt_values(b);
    double ref[2 * 3 * 2 * 4];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++) ref_bmm(av + i * 6, bv + j * 12, ref + (i * 3 + j) * 8, 1, 2, 3, 4, 0, 0);
    kt_expect_values(c, ref, 48, 1e-14, 1e-13);
    /* the same in f32 */
    kiln_tensor *c32 = kiln_matmul(kiln_tensor_cast(a, KILN_F32), kiln_tensor_cast(b, KILN_F32));
    kt_expect_values(c32, ref, 48, 1e-6, 1e-5);
    free(av);
    free(bv);
}

KT_TEST(matmul, transposed_strided_and_expanded_views) {
    kiln_tensor *a = kiln_tensor_randn(3, (int64_t[]){3, 4, 5}, 0, 1, KILN_F64, KILN_CPU);
    kiln_tensor *b = kiln_tensor_randn(3, (int64_t[]){3, 5, 2}, 0, 1, KILN_F64, KILN_CPU);
    double *ref = kt_values(kiln_matmul(a, b));
    /* transposed storage: GEMM reads these with its transpose flag */
    kiln_tensor *at = kiln_transpose(kiln_tensor_contiguous(kiln_transpose(a, 1, 2)), 1, 2);
    kiln_tensor *bt = kiln_transpose(kiln_tensor_contiguous(kiln_transpose(b, 1, 2)), 1, 2);
    cr_assert(!kiln_tensor_is_contiguous(at) && !kiln_tensor_is_contiguous(bt));
    kt_expect_values(kiln_matmul(at, bt), ref, 24, 1e-14, 1e-13);
    kt_expect_values(kiln_matmul(a, bt), ref, 24, 1e-14, 1e-13);
    /* batch dim moved inside: a [4,3,5] permuted to [3,4,5] keeps rows contiguous, batch strided */
    kiln_tensor *ap = kiln_permute(kiln_tensor_contiguous(kiln_permute(a, (int[]){1, 0, 2})), (int[]){1, 0, 2});
    kt_expect_values(kiln_matmul(ap, b), ref, 24, 1e-14, 1e-13);
    /* every other column: a layout GEMM cannot read, copied first */
    kiln_tensor *wide = kiln_tensor_randn(3, (int64_t[]){3, 4, 10}, 0, 1, KILN_F64, KILN_CPU);
    kiln_tensor *ws = kiln_slice(wide, 2, 0, 10, 2);
    double *ref2 = kt_values(kiln_matmul(kiln_tensor_contiguous(ws), b));
    kt_expect_values(kiln_matmul(ws, b), ref2, 24, 1e-14, 1e-13);
    /* an expanded batch (stride 0) */
    kiln_tensor *b0 = kiln_slice(b, 0, 0, 1, 1);
    kiln_tensor *bx = kiln_expand(b0, 3, (int64_t[]){3, 5, 2});
    double *ref3 = kt_values(kiln_matmul(a, kiln_tensor_contiguous(bx)));
    kt_expect_values(kiln_matmul(a, bx), ref3, 24, 1e-14, 1e-13);
    kt_expect_values(kiln_matmul(a, b0), ref3, 24, 1e-14, 1e-13);
    free(ref);
    free(ref2);
    free(ref3);
}

KT_TEST(matmul, dense_layer_over_a_batch_equals_per_sample_products) {
    /* Y = X·Wᵀ with W [out, in] as torch's Linear stores it */
    const int64_t B = 6, IN = 5, OUT = 3;
    kiln_tensor *X = kiln_tensor_randn(2, (int64_t[]){B, IN}, 0, 1, KILN_F64, KILN_CPU);
    kiln_tensor *W = kiln_tensor_randn(2, (int64_t[]){OUT, IN}, 0, 1, KILN_F64, KILN_CPU);
    kiln_tensor *Y = kiln_matmul(X, kiln_transpose(W, 0, 1));
    KT_EXPECT_SHAPE(Y, 2, B, OUT);
    for (int64_t i = 0; i < B; i++) {
        kiln_tensor *xi = kiln_reshape(kiln_slice(X, 0, i, i + 1, 1), 1, (int64_t[]){IN});
        kiln_tensor *yi = kiln_matmul(W, xi); /* [OUT,IN]·[IN] */
        double *want = kt_values(yi);
        kt_expect_values(kiln_slice(Y, 0, i, i + 1, 1), want, OUT, 1e-14, 1e-13);
        free(want);
    }
    /* a sequence batch [2,3,IN] folds into one GEMM and still matches per sample */
    kiln_tensor *S = kiln_reshape(X, 3, (int64_t[]){2, 3, IN});
    kiln_tensor *YS = kiln_matmul(S, kiln_transpose(W, 0, 1));
    KT_EXPECT_SHAPE(YS, 3, 2, 3, OUT);
    double *yv = kt_values(Y);
    kt_expect_values(YS, yv, B * OUT, 1e-14, 1e-13);
    free(yv);
}

KT_TEST(matmul, dense_layer_backprop) {
    /* dX = dY·W and dW = dYᵀ·X (the transposes of the product's inputs) */
    kiln_tensor *X = KT_F64(2, KT_SHAPE(2, 3), {1, 2, 3, 4, 5, 6});
    kiln_tensor *W = KT_F64(2, KT_SHAPE(2, 3), {1, 0, -1, 2, 1, 0});
    kiln_tensor *dY = KT_F64(2, KT_SHAPE(2, 2), {1, 2, 3, 4});
    kiln_tensor_set_requires_grad(X, true);
    kiln_tensor_set_requires_grad(W, true);
    kiln_tensor *Y = kiln_matmul(X, kiln_transpose(W, 0, 1));
    KT_EXPECT(Y, 0, 0, {-2, 4, -2, 13});
    cr_assert_eq(kiln_backward(Y, dY), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(X), 0, 0, {5, 2, -1, 11, 4, -3});
    KT_EXPECT(kiln_tensor_grad(W), 0, 0, {13, 17, 21, 18, 24, 30});
}

KT_TEST(matmul, empty_inner_dimension_gives_zeros) {
    kiln_tensor *a = kiln_tensor_zeros(2, (int64_t[]){2, 0}, KILN_F32, KILN_CPU);
    kiln_tensor *b = kiln_tensor_zeros(2, (int64_t[]){0, 3}, KILN_F32, KILN_CPU);
    kiln_tensor *c = kiln_matmul(a, b);
    KT_EXPECT_SHAPE(c, 2, 2, 3);
    KT_EXPECT(c, 0, 0, {0, 0, 0, 0, 0, 0});
    kiln_tensor *e = kiln_matmul(kiln_tensor_zeros(2, (int64_t[]){0, 4}, KILN_F32, KILN_CPU),
                                 kiln_tensor_zeros(2, (int64_t[]){4, 3}, KILN_F32, KILN_CPU));
    KT_EXPECT_SHAPE(e, 2, 0, 3);
}

typedef struct { int kind; } mm_case;

static kiln_tensor *f_mm(kiln_tensor *const *x, void *ctx) {
    const mm_case *c = ctx;
    switch (c->kind) {
    case 0: return kiln_matmul(x[0], x[1]);
    case 1: return kiln_matmul(x[0], kiln_transpose(x[1], -1, -2)); /* b stored transposed */
    case 2: return kiln_matmul(kiln_slice(x[0], -1, 0, 8, 2), x[1]); /* copied operand */
    default: return kiln_matmul(kiln_transpose(x[0], -1, -2), x[1]);
    }
}

static void gradcheck_shapes(int kind, int na, const int64_t *sa, int nb, const int64_t *sb) {
    kiln_tensor *in[2] = {kt_rand_input(na, sa, -1, 1), kt_rand_input(nb, sb, -1, 1)};
    mm_case c = {kind};
    char b1[64], b2[64];
    cr_expect(kt_gradcheck(f_mm, &c, 2, in, 1e-6, 1e-8, 1e-6), "case %d: %s x %s", kind,
              kiln_tensor_describe(in[0], b1, sizeof b1), kiln_tensor_describe(in[1], b2, sizeof b2));
}

KT_TEST(matmul, gradcheck) {
    gradcheck_shapes(0, 2, (int64_t[]){3, 4}, 2, (int64_t[]){4, 2});
    gradcheck_shapes(0, 4, (int64_t[]){2, 1, 2, 3}, 3, (int64_t[]){3, 3, 4}); /* broadcast both ways */
    gradcheck_shapes(0, 3, (int64_t[]){2, 3, 4}, 2, (int64_t[]){4, 5});       /* shared weight, folded */
    gradcheck_shapes(0, 2, (int64_t[]){3, 4}, 3, (int64_t[]){2, 4, 2});       /* shared left operand */
    gradcheck_shapes(0, 1, (int64_t[]){4}, 1, (int64_t[]){4});                /* dot */
    gradcheck_shapes(0, 2, (int64_t[]){3, 4}, 1, (int64_t[]){4});             /* matrix · vector */
    gradcheck_shapes(0, 1, (int64_t[]){3}, 3, (int64_t[]){2, 3, 4});          /* vector · batch */
    gradcheck_shapes(0, 3, (int64_t[]){2, 3, 4}, 1, (int64_t[]){4});          /* batch · vector */
    gradcheck_shapes(1, 3, (int64_t[]){2, 3, 4}, 3, (int64_t[]){2, 5, 4});    /* a·bᵀ */
    gradcheck_shapes(3, 2, (int64_t[]){4, 3}, 2, (int64_t[]){4, 2});          /* aᵀ·b */
    gradcheck_shapes(2, 2, (int64_t[]){3, 8}, 2, (int64_t[]){4, 2});          /* strided a */
}

KT_TEST(matmul, errors) {
    kiln_tensor *a = kiln_tensor_zeros(2, (int64_t[]){2, 3}, KILN_F32, KILN_CPU);
    kiln_tensor *b = kiln_tensor_zeros(2, (int64_t[]){4, 5}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_matmul(a, b));
    cr_expect(strstr(kiln_last_error(), "[2, 3]") && strstr(kiln_last_error(), "[4, 5]"), "%s", kiln_last_error());
    kt_expect_error(KILN_STATUS_SHAPE, "inner dimensions differ (a has 3 columns, b has 4 rows)");
    kiln_tensor *v = kiln_tensor_zeros(1, (int64_t[]){4}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_matmul(a, v));
    kt_expect_error(KILN_STATUS_SHAPE, "b has 4 rows");
    kiln_tensor *x = kiln_tensor_zeros(3, (int64_t[]){2, 2, 3}, KILN_F32, KILN_CPU);
    kiln_tensor *y = kiln_tensor_zeros(3, (int64_t[]){3, 3, 2}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_matmul(x, y));
    kt_expect_error(KILN_STATUS_SHAPE, "batch dims do not broadcast");
    cr_expect_null(kiln_matmul(kiln_tensor_scalar(2, KILN_F32, KILN_CPU), a));
    kt_expect_error(KILN_STATUS_SHAPE, "at least 1 dimension");
    cr_expect_null(kiln_matmul(a, NULL));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "input 1 is NULL");
    cr_expect_null(kiln_matmul(a, kiln_tensor_zeros(2, (int64_t[]){3, 2}, KILN_F64, KILN_CPU)));
    kt_expect_error(KILN_STATUS_DTYPE, "different dtypes");
    /* an op on the failed result keeps the first error */
    cr_expect_null(kiln_softmax(kiln_matmul(a, b), 0));
    kt_expect_error(KILN_STATUS_SHAPE, "inner dimensions");
}

KT_TEST(matmul, gradient_of_a_sum_reads_an_expanded_gradient) {
    /* d sum(A·B)/dA = 1·Bᵀ (row sums of B), d/dB = Aᵀ·1 (column sums of A) */
    kiln_tensor *a = KT_F32(2, KT_SHAPE(2, 3), {1, 2, 3, 4, 5, 6});
    kiln_tensor *b = KT_F32(2, KT_SHAPE(3, 2), {7, 8, 9, 10, 11, 12});
    kiln_tensor_set_requires_grad(a, true);
    kiln_tensor_set_requires_grad(b, true);
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_matmul(a, b)), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(a), 0, 0, {15, 19, 23, 15, 19, 23});
    KT_EXPECT(kiln_tensor_grad(b), 0, 0, {5, 5, 7, 7, 9, 9});
}

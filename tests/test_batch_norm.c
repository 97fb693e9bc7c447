/* batch_norm2d: three training steps and an eval step against nn.BatchNorm2d
 * fixtures (outputs and running statistics, f64 and f32, functional and module),
 * strided input, float64 gradient checks in training and eval mode, and errors; batch_norm
 * and BatchNorm1d on (N, C) and (N, C, L) against nn.BatchNorm1d fixtures. */
#include "support/kiln_test.h"
#include "fixtures/nn_batch_norm.h"
#include "fixtures/nn_batch_norm1d.h"

#include <stdlib.h>
#include <string.h>

TestSuite(batch_norm, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define N_OF(a) ((int64_t)(sizeof(a) / sizeof((a)[0])))
static const int64_t XS[4] = {2, 3, 2, 3};
static const double *const FX_X[3] = {FX_BN_X0, FX_BN_X1, FX_BN_X2};
static const double *const FX_Y[3] = {FX_BN_Y0, FX_BN_Y1, FX_BN_Y2};

KT_TEST(batch_norm, functional_matches_torch) {
    for (int k = 0; k < 2; k++) {
        kiln_dtype dt = k ? KILN_F32 : KILN_F64;
        double tol = k ? 2e-5 : 1e-12; /* f32: normalised values of order 1, variances of order 10 */
        kiln_tensor *w = kt_tensor(dt, 1, (int64_t[]){3}, FX_BN_W), *b = kt_tensor(dt, 1, (int64_t[]){3}, FX_BN_B);
        kiln_tensor *rm = kiln_tensor_zeros(1, (int64_t[]){3}, dt, KILN_CPU);
        kiln_tensor *rv = kiln_tensor_full(1, (int64_t[]){3}, 1.0, dt, KILN_CPU);
        for (int s = 0; s < 3; s++) {
            kiln_tensor *y = kiln_batch_norm2d(kt_tensor(dt, 4, XS, FX_X[s]), w, b, rm, rv, true, 0.1, 1e-5);
            KT_EXPECT_SHAPE(y, 4, 2, 3, 2, 3);
            kt_expect_values(y, FX_Y[s], 36, tol, tol);
        }
        kt_expect_values(rm, FX_BN_RUNNING_MEAN, 3, tol, tol);
        kt_expect_values(rv, FX_BN_RUNNING_VAR, 3, tol, tol);
        kiln_tensor *ye = kiln_batch_norm2d(kt_tensor(dt, 4, XS, FX_BN_XE), w, b, rm, rv, false, 0.1, 1e-5);
        kt_expect_values(ye, FX_BN_YE, N_OF(FX_BN_YE), tol, tol);
        /* eval leaves the running statistics alone */
        kt_expect_values(rm, FX_BN_RUNNING_MEAN, 3, tol, tol);
    }
}

KT_TEST(batch_norm, module_matches_torch) {
    kiln_module *bn = kiln_batch_norm2d_create(3, KILN_F64);
    cr_assert(bn, "%s", kiln_last_error());
    cr_assert_eq(kiln_tensor_copy_(kiln_module_get(bn, "weight"), KT_F64(1, KT_SHAPE(3), {FX_BN_W[0], FX_BN_W[1],
                                                                                           FX_BN_W[2]})),
                 KILN_STATUS_OK);
    cr_assert_eq(kiln_tensor_copy_(kiln_module_get(bn, "bias"), KT_F64(1, KT_SHAPE(3), {FX_BN_B[0], FX_BN_B[1],
                                                                                         FX_BN_B[2]})),
                 KILN_STATUS_OK);
    for (int s = 0; s < 3; s++) {
        kiln_scope *sc = kiln_scope_begin();
        kt_expect_values(kiln_module_forward(bn, kt_tensor(KILN_F64, 4, XS, FX_X[s])), FX_Y[s], 36, 1e-12, 1e-12);
        kiln_scope_end(sc);
    }
    kt_expect_values(kiln_module_get(bn, "running_mean"), FX_BN_RUNNING_MEAN, 3, 1e-12, 1e-12);
    kt_expect_values(kiln_module_get(bn, "running_var"), FX_BN_RUNNING_VAR, 3, 1e-12, 1e-12);
    kiln_tensor *nbt = kiln_module_get(bn, "num_batches_tracked");
    cr_expect_eq(kiln_tensor_dtype(nbt), KILN_I64);
    cr_expect_eq(kiln_tensor_ndim(nbt), 0);
    cr_expect_eq(kiln_tensor_item(nbt), 3.0);
    kiln_module_train(bn, false);
    kt_expect_values(kiln_module_forward(bn, kt_tensor(KILN_F64, 4, XS, FX_BN_XE)), FX_BN_YE, 36, 1e-12, 1e-12);
    cr_expect_eq(kiln_tensor_item(nbt), 3.0);
    kiln_module_free(bn);
}

/* momentum = NAN is torch's momentum=None: running stats are the plain average of the batches. */
KT_TEST(batch_norm, cumulative_average_momentum) {
    kiln_module *bn = kiln_batch_norm2d_create_ex(1, 1e-5, NAN, false, true, KILN_F64);
    cr_assert(bn, "%s", kiln_last_error());
    cr_expect_eq(kiln_module_num_parameters(bn), 0);
    kiln_module_forward(bn, KT_F64(4, KT_SHAPE(1, 1, 1, 2), {1, 3}));  /* mean 2, unbiased var 2 */
    kiln_module_forward(bn, KT_F64(4, KT_SHAPE(1, 1, 1, 2), {6, 10})); /* mean 8, unbiased var 8 */
    KT_EXPECT(kiln_module_get(bn, "running_mean"), 1e-12, 0, {5});
    KT_EXPECT(kiln_module_get(bn, "running_var"), 1e-12, 0, {5});
    kiln_module_free(bn);
}

KT_TEST(batch_norm, strided_input) {
    /* x stored as (N, H, W, C) and viewed as NCHW */
    kiln_tensor *x = kt_tensor(KILN_F64, 4, XS, FX_BN_X0);
    kiln_tensor *nhwc = kiln_tensor_contiguous(kiln_permute(x, (int[]){0, 2, 3, 1}));
    kiln_tensor *v = kiln_permute(nhwc, (int[]){0, 3, 1, 2});
    cr_assert(!kiln_tensor_is_contiguous(v));
    kiln_tensor *w = kt_tensor(KILN_F64, 1, (int64_t[]){3}, FX_BN_W), *b = kt_tensor(KILN_F64, 1, (int64_t[]){3}, FX_BN_B);
    kt_expect_values(kiln_batch_norm2d(v, w, b, NULL, NULL, true, 0.1, 1e-5), FX_BN_Y0, 36, 1e-12, 1e-12);
}

typedef struct {
    bool training, affine;
    kiln_tensor *rm, *rv;
} bn_case;

static kiln_tensor *f_bn(kiln_tensor *const *in, void *ctx) {
    bn_case *c = ctx;
    return kiln_batch_norm2d(in[0], c->affine ? in[1] : NULL, c->affine ? in[2] : NULL, c->rm, c->rv, c->training,
                             0.1, 1e-5);
}

KT_TEST(batch_norm, gradcheck_training_and_eval) {
    kiln_tensor *in[3] = {kt_rand_input(4, (int64_t[]){2, 3, 2, 2}, -2, 2), kt_rand_input(1, (int64_t[]){3}, 0.5, 1.5),
                          kt_rand_input(1, (int64_t[]){3}, -1, 1)};
    bn_case train = {true, true, NULL, NULL};
    cr_expect(kt_gradcheck(f_bn, &train, 3, in, 1e-6, 1e-7, 1e-5));
    bn_case plain = {true, false, NULL, NULL};
    cr_expect(kt_gradcheck(f_bn, &plain, 1, in, 1e-6, 1e-7, 1e-5));
    bn_case eval = {false, true, KT_F64(1, KT_SHAPE(3), {0.5, -0.2, 0.1}), KT_F64(1, KT_SHAPE(3), {0.8, 1.5, 2.0})};
    cr_expect(kt_gradcheck(f_bn, &eval, 3, in, 1e-6, 1e-8, 1e-6));
}

KT_TEST(batch_norm, errors) {
    kiln_tensor *x = kiln_tensor_zeros(4, (int64_t[]){2, 3, 2, 2}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_batch_norm2d(kiln_tensor_zeros(3, (int64_t[]){2, 3, 4}, KILN_F32, KILN_CPU), NULL, NULL,
                                     NULL, NULL, true, 0.1, 1e-5));
    kt_expect_error(KILN_STATUS_SHAPE, "must be 4-d (N, C, H, W); kiln_batch_norm takes (N, C) and (N, C, L)");
    cr_expect_null(kiln_batch_norm2d(x, kiln_tensor_zeros(1, (int64_t[]){4}, KILN_F32, KILN_CPU), NULL, NULL, NULL,
                                     true, 0.1, 1e-5));
    kt_expect_error(KILN_STATUS_SHAPE, "weight [4]");
    cr_expect_null(kiln_batch_norm2d(x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "eval mode");
    cr_expect_null(kiln_batch_norm2d(kiln_tensor_zeros(4, (int64_t[]){1, 3, 1, 1}, KILN_F32, KILN_CPU), NULL, NULL,
                                     NULL, NULL, true, 0.1, 1e-5));
    kt_expect_error(KILN_STATUS_SHAPE, "more than 1 value per channel");
    kiln_module *bn = kiln_batch_norm2d_create(4, KILN_F32);
    kiln_module *seq = kiln_sequential_create();
    cr_assert_eq(kiln_sequential_append(seq, bn), KILN_STATUS_OK);
    cr_expect_null(kiln_module_forward(seq, x));
    kt_expect_error(KILN_STATUS_SHAPE, "module '0' (BatchNorm2d): input [2, 3, 2, 2]");
    kiln_module_free(seq);
}

/* ---- (N, C) and (N, C, L): torch's F.batch_norm / BatchNorm1d ------------------------ */

static const int64_t X2S[2] = {4, 3}, X3S[3] = {2, 3, 5}, XE2S[2] = {2, 3}, XE3S[3] = {2, 3, 2};

KT_TEST(batch_norm, one_d_functional_matches_torch) {
    for (int k = 0; k < 2; k++) {
        kiln_dtype dt = k ? KILN_F32 : KILN_F64;
        double tol = k ? 2e-5 : 1e-12;
        kiln_tensor *w = kt_tensor(dt, 1, (int64_t[]){3}, FX_BN1_W), *b = kt_tensor(dt, 1, (int64_t[]){3}, FX_BN1_B);
        kiln_tensor *rm = kiln_tensor_zeros(1, (int64_t[]){3}, dt, KILN_CPU);
        kiln_tensor *rv = kiln_tensor_full(1, (int64_t[]){3}, 1.0, dt, KILN_CPU);
        kiln_tensor *y2 = kiln_batch_norm(kt_tensor(dt, 2, X2S, FX_BN1_X2), w, b, rm, rv, true, 0.1, 1e-5);
        KT_EXPECT_SHAPE(y2, 2, 4, 3);
        kt_expect_values(y2, FX_BN1_Y2, N_OF(FX_BN1_Y2), tol, tol);
        kt_expect_values(rm, FX_BN1_RM2, 3, tol, tol); /* unbiased over N = 4 */
        kt_expect_values(rv, FX_BN1_RV2, 3, tol, tol);
        kiln_tensor *y3 = kiln_batch_norm(kt_tensor(dt, 3, X3S, FX_BN1_X3), w, b, rm, rv, true, 0.1, 1e-5);
        KT_EXPECT_SHAPE(y3, 3, 2, 3, 5);
        kt_expect_values(y3, FX_BN1_Y3, N_OF(FX_BN1_Y3), tol, tol);
        kt_expect_values(rm, FX_BN1_RM3, 3, tol, tol); /* unbiased over N·L = 10 */
        kt_expect_values(rv, FX_BN1_RV3, 3, tol, tol);
        kiln_tensor *ye2 = kiln_batch_norm(kt_tensor(dt, 2, XE2S, FX_BN1_XE2), w, b, rm, rv, false, 0.1, 1e-5);
        KT_EXPECT_SHAPE(ye2, 2, 2, 3);
        kt_expect_values(ye2, FX_BN1_YE2, N_OF(FX_BN1_YE2), tol, tol);
        kiln_tensor *ye3 = kiln_batch_norm(kt_tensor(dt, 3, XE3S, FX_BN1_XE3), w, b, rm, rv, false, 0.1, 1e-5);
        KT_EXPECT_SHAPE(ye3, 3, 2, 3, 2);
        kt_expect_values(ye3, FX_BN1_YE3, N_OF(FX_BN1_YE3), tol, tol);
        kt_expect_values(rv, FX_BN1_RV3, 3, tol, tol); /* eval leaves them alone */
        /* 4-d input through kiln_batch_norm is batch_norm2d, bit for bit */
        kiln_tensor *x4 = kt_tensor(dt, 4, XS, FX_BN_X0);
        double *a = kt_values(kiln_batch_norm(x4, w, b, NULL, NULL, true, 0.1, 1e-5));
        double *c = kt_values(kiln_batch_norm2d(x4, w, b, NULL, NULL, true, 0.1, 1e-5));
        cr_expect(a && c && memcmp(a, c, 36 * sizeof *a) == 0);
        free(a);
        free(c);
    }
}

KT_TEST(batch_norm, one_d_module_matches_torch) {
    kiln_module *bn = kiln_batch_norm1d_create(3, KILN_F64);
    cr_assert(bn, "%s", kiln_last_error());
    cr_expect_str_eq(kiln_module_type(bn), "BatchNorm1d");
    cr_assert_eq(kiln_tensor_copy_(kiln_module_get(bn, "weight"), kt_tensor(KILN_F64, 1, (int64_t[]){3}, FX_BN1_W)),
                 KILN_STATUS_OK);
    cr_assert_eq(kiln_tensor_copy_(kiln_module_get(bn, "bias"), kt_tensor(KILN_F64, 1, (int64_t[]){3}, FX_BN1_B)),
                 KILN_STATUS_OK);
    kiln_scope *sc = kiln_scope_begin();
    kt_expect_values(kiln_module_forward(bn, kt_tensor(KILN_F64, 2, X2S, FX_BN1_X2)), FX_BN1_Y2, N_OF(FX_BN1_Y2),
                     1e-12, 1e-12);
    kt_expect_values(kiln_module_forward(bn, kt_tensor(KILN_F64, 3, X3S, FX_BN1_X3)), FX_BN1_Y3, N_OF(FX_BN1_Y3),
                     1e-12, 1e-12);
    kiln_scope_end(sc);
    kt_expect_values(kiln_module_get(bn, "running_mean"), FX_BN1_RM3, 3, 1e-12, 1e-12);
    kt_expect_values(kiln_module_get(bn, "running_var"), FX_BN1_RV3, 3, 1e-12, 1e-12);
    cr_expect_eq(kiln_tensor_item(kiln_module_get(bn, "num_batches_tracked")), 2.0);
    kiln_module_train(bn, false);
    sc = kiln_scope_begin();
    kt_expect_values(kiln_module_forward(bn, kt_tensor(KILN_F64, 3, XE3S, FX_BN1_XE3)), FX_BN1_YE3,
                     N_OF(FX_BN1_YE3), 1e-12, 1e-12);
    kiln_scope_end(sc);
    /* torch's BatchNorm1d: "expected 2D or 3D input"; BatchNorm2d keeps 4-d */
    cr_expect_null(kiln_module_forward(bn, kiln_tensor_zeros(4, (int64_t[]){2, 3, 2, 2}, KILN_F64, KILN_CPU)));
    kt_expect_error(KILN_STATUS_SHAPE, "must be 2-d (N, C) or 3-d (N, C, L)");
    kiln_module_free(bn);
    kiln_module *bn2 = kiln_batch_norm2d_create(3, KILN_F64);
    cr_expect_null(kiln_module_forward(bn2, kiln_tensor_zeros(3, (int64_t[]){2, 3, 2}, KILN_F64, KILN_CPU)));
    kt_expect_error(KILN_STATUS_SHAPE, "must be 4-d (N, C, H, W)");
    kiln_module_free(bn2);
}

static kiln_tensor *f_bn_any(kiln_tensor *const *in, void *ctx) {
    bn_case *c = ctx;
    return kiln_batch_norm(in[0], in[1], in[2], c->rm, c->rv, c->training, 0.1, 1e-5);
}

KT_TEST(batch_norm, one_d_gradcheck_training_and_eval) {
    bn_case train = {true, true, NULL, NULL};
    bn_case eval = {false, true, KT_F64(1, KT_SHAPE(3), {0.5, -0.2, 0.1}), KT_F64(1, KT_SHAPE(3), {0.8, 1.5, 2.0})};
    kiln_tensor *w = kt_rand_input(1, (int64_t[]){3}, 0.5, 1.5), *b = kt_rand_input(1, (int64_t[]){3}, -1, 1);
    kiln_tensor *in2[3] = {kt_rand_input(2, (int64_t[]){4, 3}, -2, 2), w, b};
    cr_expect(kt_gradcheck(f_bn_any, &train, 3, in2, 1e-6, 1e-7, 1e-5));
    cr_expect(kt_gradcheck(f_bn_any, &eval, 3, in2, 1e-6, 1e-8, 1e-6));
    kiln_tensor *in3[3] = {kt_rand_input(3, (int64_t[]){2, 3, 3}, -2, 2), w, b};
    cr_expect(kt_gradcheck(f_bn_any, &train, 3, in3, 1e-6, 1e-7, 1e-5));
    cr_expect(kt_gradcheck(f_bn_any, &eval, 3, in3, 1e-6, 1e-8, 1e-6));
}

KT_TEST(batch_norm, one_d_errors) {
    cr_expect_null(kiln_batch_norm(kiln_tensor_zeros(1, (int64_t[]){3}, KILN_F32, KILN_CPU), NULL, NULL, NULL, NULL,
                                   true, 0.1, 1e-5));
    kt_expect_error(KILN_STATUS_SHAPE, "batch_norm: input [3] must have a channel axis");
    /* torch: "Expected more than 1 value per channel when training, got input size [1, 3]" */
    cr_expect_null(kiln_batch_norm(kiln_tensor_zeros(2, (int64_t[]){1, 3}, KILN_F32, KILN_CPU), NULL, NULL, NULL,
                                   NULL, true, 0.1, 1e-5));
    kt_expect_error(KILN_STATUS_SHAPE, "batch_norm: expected more than 1 value per channel when training, got input "
                    "[1, 3]");
    /* (1, C, 2) has two values per channel: torch computes it */
    KT_EXPECT(kiln_batch_norm(KT_F32(3, KT_SHAPE(1, 1, 2), {1, 3}), NULL, NULL, NULL, NULL, true, 0.1, 0.25), 1e-6,
              1e-6, {-0.8944272, 0.8944272});
    cr_expect_null(kiln_batch_norm(kiln_tensor_zeros(2, (int64_t[]){2, 3}, KILN_F32, KILN_CPU),
                                   kiln_tensor_zeros(1, (int64_t[]){4}, KILN_F32, KILN_CPU), NULL, NULL, NULL, true,
                                   0.1, 1e-5));
    kt_expect_error(KILN_STATUS_SHAPE, "batch_norm: weight [4] must be 1-d with one value per channel (3) of input "
                    "[2, 3]");
}

/* Above the kernels' threading threshold: forward and gradients against the same
 * normalisation composed from elementwise ops and reductions (autograd through them). */
KT_TEST(batch_norm, large_input_matches_composed_reference) {
    const int64_t shape[4] = {4, 8, 33, 33};
    kiln_tensor *x = kiln_tensor_randn(4, shape, 1.5, 2.0, KILN_F64, KILN_CPU);
    kiln_tensor *w = kiln_tensor_rand(1, (int64_t[]){8}, 0.5, 1.5, KILN_F64, KILN_CPU);
    kiln_tensor *b = kiln_tensor_rand(1, (int64_t[]){8}, -1, 1, KILN_F64, KILN_CPU);
    kiln_tensor *g = kiln_tensor_randn(4, shape, 0, 1, KILN_F64, KILN_CPU);
    kiln_tensor *x2 = kiln_tensor_clone(x), *w2 = kiln_tensor_clone(w), *b2 = kiln_tensor_clone(b);
    kiln_tensor *leaves[6] = {x, w, b, x2, w2, b2};
    for (int i = 0; i < 6; i++) kiln_tensor_set_requires_grad(leaves[i], true);
    kiln_tensor *y = kiln_batch_norm2d(x, w, b, NULL, NULL, true, 0.1, 1e-5);
    const int axes[3] = {0, 2, 3};
    kiln_tensor *mean = kiln_mean(x2, 3, axes, true);
    kiln_tensor *d = kiln_sub(x2, mean);
    kiln_tensor *var = kiln_mean(kiln_mul(d, d), 3, axes, true);
    kiln_tensor *cw = kiln_reshape(w2, 4, (int64_t[]){1, 8, 1, 1}), *cb = kiln_reshape(b2, 4, (int64_t[]){1, 8, 1, 1});
    kiln_tensor *ref = kiln_add(kiln_mul(kiln_div(d, kiln_sqrt(kiln_add_scalar(var, 1e-5))), cw), cb);
    double *rv = kt_values(ref);
    kt_expect_values(y, rv, kiln_tensor_numel(ref), 1e-12, 1e-12);
    free(rv);
    cr_assert_eq(kiln_backward(y, g), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_backward(ref, g), KILN_STATUS_OK, "%s", kiln_last_error());
    for (int i = 0; i < 3; i++) {
        double *e = kt_values(kiln_tensor_grad(leaves[i + 3]));
        kt_expect_values(kiln_tensor_grad(leaves[i]), e, kiln_tensor_numel(leaves[i]), 1e-9, 1e-9);
        free(e);
    }
}

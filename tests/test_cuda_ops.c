/* Every op with a CUDA kernel, run on a real GPU and compared with the CPU
 * (DESIGN.md principle 5), forward and backward, at sizes that are not multiples of
 * the block size and on strided and broadcast inputs. Skips with a message where no
 * CUDA device is present: the emulated tests (test_cuda_emu_*) cover the kernels
 * there. Tolerances per op and dtype (f32): exact where the GPU computes the same
 * IEEE operations (add, sub, mul, div, max, min, copies, uniform rand); 2e-6
 * relative for exp/log/tanh/sigmoid/pow and the gradients (CUDA's libm and FMA
 * contraction differ from glibc by an ulp or two); 1e-6 relative for sums. */
#include "support/kiln_test.h"

#include <stdlib.h>

TestSuite(cuda_ops, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define NEED_GPU()                                                                                          \
    do {                                                                                                    \
        if (kiln_cuda_device_count() == 0)                                                                  \
            cr_skip_test("no CUDA device here: not run on a GPU (the emulated kernel tests ran instead)"); \
    } while (0)

static kiln_tensor *input(int ndim, const int64_t *shape, double lo, double hi) {
    return kiln_tensor_rand(ndim, shape, lo, hi, KILN_F32, KILN_CPU);
}

typedef kiln_tensor *(*unary_fn)(kiln_tensor *);

KT_TEST(cuda_ops, unary_forward_and_backward) {
    NEED_GPU();
    static const struct {
        const char *name;
        unary_fn f;
        double lo, hi, rtol;
    } ops[] = {{"neg", kiln_neg, -3, 3, 0},         {"exp", kiln_exp, -3, 3, 2e-6},   {"log", kiln_log, 0.05, 3, 2e-6},
               {"sqrt", kiln_sqrt, 0.05, 3, 2e-6},  {"abs", kiln_abs, -3, 3, 0},      {"relu", kiln_relu, -3, 3, 0},
               {"sigmoid", kiln_sigmoid, -8, 8, 2e-6}, {"tanh", kiln_tanh, -3, 3, 2e-6}};
    int64_t shape[2] = {37, 29};
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++) {
        kiln_tensor *x = input(2, shape, ops[k].lo, ops[k].hi);
        kiln_tensor *xt = kiln_transpose(x, 0, 1); /* strided */
        kiln_tensor *xg = kt_to_gpu(x);
        kiln_tensor_set_requires_grad(x, true);
        kiln_tensor_set_requires_grad(xg, true);
        kiln_tensor *yc = ops[k].f(x), *yg = ops[k].f(xg);
        kt_expect_same(yc, yg, 1e-7, ops[k].rtol, ops[k].name);
        kt_expect_same(ops[k].f(xt), ops[k].f(kiln_transpose(xg, 0, 1)), 1e-7, ops[k].rtol, ops[k].name);
        cr_assert_eq(kiln_backward(kiln_sum_all(yc), NULL), KILN_STATUS_OK);
        cr_assert_eq(kiln_backward(kiln_sum_all(yg), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        kt_expect_same(kiln_tensor_grad(x), kiln_tensor_grad(xg), 1e-7, 2e-6, ops[k].name);
    }
}

KT_TEST(cuda_ops, binary_broadcast_forward_and_backward) {
    NEED_GPU();
    kiln_tensor *(*fs[])(kiln_tensor *, kiln_tensor *) = {kiln_add, kiln_sub, kiln_mul, kiln_div, kiln_maximum,
                                                           kiln_minimum};
    const char *names[] = {"add", "sub", "mul", "div", "maximum", "minimum"};
    int64_t as[3] = {5, 1, 67}, bs[2] = {3, 1};
    for (int k = 0; k < 6; k++) {
        kiln_tensor *a = input(3, as, -2, 2), *b = input(2, bs, 0.5, 2);
        kiln_tensor *ag = kt_to_gpu(a), *bg = kt_to_gpu(b);
        kiln_tensor *ins[4] = {a, b, ag, bg};
        for (int i = 0; i < 4; i++) kiln_tensor_set_requires_grad(ins[i], true);
        kiln_tensor *yc = fs[k](a, b), *yg = fs[k](ag, bg);
        kt_expect_same(yc, yg, 0, 0, names[k]);
        cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(yc, yc)), NULL), KILN_STATUS_OK);
        cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(yg, yg)), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        kt_expect_same(kiln_tensor_grad(a), kiln_tensor_grad(ag), 1e-6, 2e-6, names[k]);
        kt_expect_same(kiln_tensor_grad(b), kiln_tensor_grad(bg), 1e-6, 2e-6, names[k]);
    }
}

KT_TEST(cuda_ops, sums_over_axes) {
    NEED_GPU();
    int64_t s1[1] = {100003}, s2[4] = {5, 7, 9, 11};
    kiln_tensor *x = input(1, s1, -1, 1), *y = input(4, s2, -1, 1);
    kt_expect_same(kiln_sum_all(x), kiln_sum_all(kt_to_gpu(x)), 1e-6, 1e-6, "sum_all");
    int axes[2] = {0, 2};
    kt_expect_same(kiln_sum(y, 2, axes, false), kiln_sum(kt_to_gpu(y), 2, axes, false), 1e-6, 1e-6, "sum axes 0,2");
    kiln_tensor *yt = kiln_transpose(y, 1, 3);
    kt_expect_same(kiln_sum(yt, 2, axes, true), kiln_sum(kiln_transpose(kt_to_gpu(y), 1, 3), 2, axes, true), 1e-6, 1e-6,
         "sum of a transposed view");
}

KT_TEST(cuda_ops, copies_fills_and_where) {
    NEED_GPU();
    int64_t shape[2] = {33, 31};
    kiln_tensor *x = input(2, shape, -300, 300);
    const kiln_dtype types[] = {KILN_F64, KILN_F16, KILN_BF16, KILN_I32, KILN_I64, KILN_U8};
    for (int k = 0; k < 6; k++)
        kt_expect_same(kiln_tensor_cast(kiln_transpose(x, 0, 1), types[k]), kiln_tensor_cast(kiln_transpose(kt_to_gpu(x), 0, 1), types[k]),
             0, 0, kiln_dtype_name(types[k]));
    kiln_tensor *f = kiln_tensor_full(2, shape, 2.5, KILN_F32, KILN_CUDA(0));
    kt_expect_same(kiln_tensor_full(2, shape, 2.5, KILN_F32, KILN_CPU), f, 0, 0, "full");
    kiln_tensor *c = kiln_tensor_cast(input(2, shape, -1, 1), KILN_U8);
    kt_expect_same(kiln_where(c, x, kiln_neg(x)), kiln_where(kt_to_gpu(c), kt_to_gpu(x), kiln_neg(kt_to_gpu(x))), 0, 0, "where");
}

KT_TEST(cuda_ops, rand_matches_the_cpu) {
    NEED_GPU();
    int64_t shape[2] = {7, 149};
    kiln_manual_seed(1234);
    kiln_tensor *uc = kiln_tensor_rand(2, shape, -1, 3, KILN_F32, KILN_CPU);
    kiln_tensor *nc = kiln_tensor_randn(2, shape, 0.5, 2, KILN_F32, KILN_CPU);
    kiln_manual_seed(1234);
    kiln_tensor *ug = kiln_tensor_rand(2, shape, -1, 3, KILN_F32, KILN_CUDA(0));
    kiln_tensor *ng = kiln_tensor_randn(2, shape, 0.5, 2, KILN_F32, KILN_CUDA(0));
    kt_expect_same(uc, ug, 0, 0, "rand (uniform: the same IEEE operations, exact)");
    /* normal: CUDA's double log/cos are within an ulp of glibc's */
    kt_expect_same(nc, ng, 1e-6, 1e-6, "randn");
}

KT_TEST(cuda_ops, sync_debug_mode_runs_clean) {
    NEED_GPU();
    kiln_cuda_set_sync_debug(true);
    int64_t shape[1] = {1000};
    kiln_tensor *x = kt_to_gpu(input(1, shape, -1, 1));
    kiln_tensor *y = kiln_sum_all(kiln_sigmoid(x));
    cr_expect(y, "%s", kiln_last_error());
    cr_expect_eq(kiln_synchronize(KILN_CUDA(0)), KILN_STATUS_OK);
    kiln_cuda_set_sync_debug(false);
}

KT_TEST(cuda_ops, steady_state_makes_no_backing_allocations) {
    NEED_GPU();
    int64_t shape[2] = {64, 129};
    kiln_tensor *x = kt_to_gpu(input(2, shape, -1, 1));
    for (int step = 0; step < 3; step++) {
        kiln_scope *s = kiln_scope_begin();
        kiln_tensor *y = kiln_sum_all(kiln_mul(kiln_tanh(x), x));
        cr_assert(y, "%s", kiln_last_error());
        kiln_scope_end(s);
        if (step == 0) kiln_memory_reset_peak(KILN_CUDA(0));
    }
    uint64_t before = kiln_memory_stats(KILN_CUDA(0)).n_backing_allocs;
    kiln_scope *s = kiln_scope_begin();
    kiln_sum_all(kiln_mul(kiln_tanh(x), x));
    kiln_scope_end(s);
    cr_expect_eq(kiln_memory_stats(KILN_CUDA(0)).n_backing_allocs, before);
}

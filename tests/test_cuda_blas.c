/* The cuBLAS / cuSOLVER ops on a real GPU against the CPU (OpenBLAS, LAPACK): matmul
 * (2-d, transposed operands, broadcast batches, the folded dense-layer case, vectors)
 * forward and backward, linear with its bias gradient, TF32 on and off, eigh; and,
 * end to end through the public API, the custom kernels of the same area (fused
 * optimizer steps, clip_grad_norm, batch_norm2d with its running statistics, dropout).
 * These cannot run without a GPU (the library calls are not emulated): every test
 * skips with a message there; the custom kernels are also covered by the emulated
 * tests (test_cuda_emu_linear_batch_norm_dropout, test_cuda_emu_optim).
 * Tolerances: f32 products 1e-5 absolute + 1e-5 relative (K <= 200 terms of |x| <= 1,
 * summed in another order); f64 1e-12; TF32 on: 2e-2 absolute (10-bit mantissas);
 * eigenvalues 1e-10 (f64) and 1e-4 (f32), eigenvectors up to sign at 1e-8 / 1e-3;
 * optimizer and batch-norm results 1e-6 relative (nvcc fuses multiply-adds). */
#include "support/kiln_test.h"

#include <stdlib.h>

TestSuite(cuda_blas, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define NEED_GPU()                                                                                               \
    do {                                                                                                         \
        if (kiln_cuda_device_count() == 0)                                                                       \
            cr_skip_test("no CUDA device here: cuBLAS/cuSOLVER paths not run (their custom kernels ran emulated)"); \
    } while (0)

static kiln_tensor *input(kiln_dtype dt, int ndim, const int64_t *shape) {
    return kiln_tensor_rand(ndim, shape, -1, 1, dt, KILN_CPU);
}

/* matmul of (a, b) built by make on both devices, forward and both gradients. */
typedef kiln_tensor *(*view_fn)(kiln_tensor *);
static kiln_tensor *ident(kiln_tensor *t) { return t; }
static kiln_tensor *tr(kiln_tensor *t) { return kiln_transpose(t, -1, -2); }

static void matmul_case(kiln_dtype dt, int na, const int64_t *sa, view_fn va, int nb, const int64_t *sb, view_fn vb,
                        const char *name) {
    double tol = dt == KILN_F64 ? 1e-12 : 1e-5;
    kiln_tensor *a = input(dt, na, sa), *b = input(dt, nb, sb);
    kiln_tensor *ag = kt_to_gpu(a), *bg = kt_to_gpu(b);
    kiln_tensor *ins[4] = {a, b, ag, bg};
    for (int i = 0; i < 4; i++) kiln_tensor_set_requires_grad(ins[i], true);
    kiln_tensor *yc = kiln_matmul(va(a), vb(b)), *yg = kiln_matmul(va(ag), vb(bg));
    char what[160];
    snprintf(what, sizeof what, "matmul %s %s", name, kiln_dtype_name(dt));
    kt_expect_same(yc, yg, tol, tol, what);
    kiln_tensor *w = kiln_tensor_rand(kiln_tensor_ndim(yc), kiln_tensor_shape(yc), -1, 1, dt, KILN_CPU);
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(yc, w)), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(yg, kt_to_gpu(w))), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    snprintf(what, sizeof what, "matmul %s %s: dA", name, kiln_dtype_name(dt));
    kt_expect_same(kiln_tensor_grad(a), kiln_tensor_grad(ag), tol, tol, what);
    snprintf(what, sizeof what, "matmul %s %s: dB", name, kiln_dtype_name(dt));
    kt_expect_same(kiln_tensor_grad(b), kiln_tensor_grad(bg), tol, tol, what);
}

KT_TEST(cuda_blas, matmul_layouts_batches_and_gradients) {
    NEED_GPU();
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        matmul_case(dt, 2, (int64_t[]){37, 29}, ident, 2, (int64_t[]){29, 45}, ident, "[37,29]x[29,45]");
        matmul_case(dt, 2, (int64_t[]){29, 37}, tr, 2, (int64_t[]){45, 29}, tr, "transposed operands");
        matmul_case(dt, 4, (int64_t[]){2, 1, 5, 7}, ident, 3, (int64_t[]){3, 7, 4}, ident, "broadcast batches");
        matmul_case(dt, 3, (int64_t[]){3, 33, 17}, ident, 3, (int64_t[]){1, 17, 19}, ident, "batch of a, shared b");
        matmul_case(dt, 3, (int64_t[]){4, 7, 33}, ident, 2, (int64_t[]){33, 21}, ident, "dense layer (folded)");
        matmul_case(dt, 3, (int64_t[]){5, 6, 13}, ident, 3, (int64_t[]){5, 6, 11}, tr, "batched, b transposed");
        matmul_case(dt, 1, (int64_t[]){29}, ident, 2, (int64_t[]){29, 45}, ident, "vector x matrix");
        matmul_case(dt, 2, (int64_t[]){37, 29}, ident, 1, (int64_t[]){29}, ident, "matrix x vector");
        matmul_case(dt, 2, (int64_t[]){200, 1}, ident, 2, (int64_t[]){1, 130}, ident, "outer product (K = 1)");
    }
}

KT_TEST(cuda_blas, tf32_is_off_by_default_and_switchable) {
    NEED_GPU();
    cr_assert(!kiln_tf32(), "TF32 must be off by default");
    const int64_t s[2] = {256, 256};
    kiln_tensor *a = input(KILN_F32, 2, s), *b = input(KILN_F32, 2, s);
    kiln_tensor *c = kiln_matmul(a, b);
    kt_expect_same(c, kiln_matmul(kt_to_gpu(a), kt_to_gpu(b)), 1e-5, 1e-5, "float32 matmul with TF32 off");
    kiln_set_tf32(true);
    kiln_tensor *t = kiln_matmul(kt_to_gpu(a), kt_to_gpu(b));
    kiln_set_tf32(false);
    kt_expect_same(c, t, 2e-2, 0, "float32 matmul with TF32 on");
    kt_expect_same(c, kiln_matmul(kt_to_gpu(a), kt_to_gpu(b)), 1e-5, 1e-5, "float32 matmul with TF32 off again");
}

KT_TEST(cuda_blas, linear_forward_and_every_gradient) {
    NEED_GPU();
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        double tol = d ? 1e-12 : 1e-5;
        for (int strided = 0; strided < 2; strided++) {
            const int64_t xs[3] = {4, 7, 33}, xts[3] = {4, 33, 7}, ws[2] = {45, 33}, bs[1] = {45};
            kiln_tensor *x = input(dt, 3, strided ? xts : xs), *w = input(dt, 2, ws), *b = input(dt, 1, bs);
            kiln_tensor *xg = kt_to_gpu(x), *wg = kt_to_gpu(w), *bg = kt_to_gpu(b);
            kiln_tensor *all[6] = {x, w, b, xg, wg, bg};
            for (int i = 0; i < 6; i++) kiln_tensor_set_requires_grad(all[i], true);
            kiln_tensor *xc = strided ? kiln_transpose(x, 1, 2) : x, *xgv = strided ? kiln_transpose(xg, 1, 2) : xg;
            kiln_tensor *yc = kiln_linear(xc, w, b), *yg = kiln_linear(xgv, wg, bg);
            kt_expect_same(yc, yg, tol, tol, strided ? "linear, transposed input" : "linear");
            kiln_tensor *r = kiln_tensor_rand(3, kiln_tensor_shape(yc), -1, 1, dt, KILN_CPU);
            cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(yc, r)), NULL), KILN_STATUS_OK);
            cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(yg, kt_to_gpu(r))), NULL), KILN_STATUS_OK, "%s",
                         kiln_last_error());
            kt_expect_same(kiln_tensor_grad(x), kiln_tensor_grad(xg), tol, tol, "linear dX");
            kt_expect_same(kiln_tensor_grad(w), kiln_tensor_grad(wg), tol, tol, "linear dW");
            kt_expect_same(kiln_tensor_grad(b), kiln_tensor_grad(bg), tol, tol, "linear db (custom column-sum kernel)");
        }
        /* no bias, and the bias gradient of a sum (an expanded, stride-0 gradient) */
        const int64_t xs[2] = {1000, 17}, ws[2] = {9, 17}, bs[1] = {9};
        kiln_tensor *x = input(dt, 2, xs), *w = input(dt, 2, ws), *b = input(dt, 1, bs);
        kt_expect_same(kiln_linear(x, w, NULL), kiln_linear(kt_to_gpu(x), kt_to_gpu(w), NULL), tol, tol, "linear without bias");
        kiln_tensor *bg = kt_to_gpu(b);
        kiln_tensor_set_requires_grad(b, true);
        kiln_tensor_set_requires_grad(bg, true);
        cr_assert_eq(kiln_backward(kiln_sum_all(kiln_linear(x, w, b)), NULL), KILN_STATUS_OK);
        cr_assert_eq(kiln_backward(kiln_sum_all(kiln_linear(kt_to_gpu(x), kt_to_gpu(w), bg)), NULL), KILN_STATUS_OK, "%s",
                     kiln_last_error());
        kt_expect_same(kiln_tensor_grad(b), kiln_tensor_grad(bg), 0, 0, "db of an expanded gradient (1000 ones per column)");
    }
}

KT_TEST(cuda_blas, eigh_matches_lapack) {
    NEED_GPU();
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        const int64_t s[2] = {50, 50};
        kiln_tensor *m = input(dt, 2, s);
        kiln_tensor *a = kiln_add(m, kiln_transpose(m, 0, 1)); /* symmetric */
        kiln_tensor *wc, *vc, *wg, *vg;
        cr_assert_eq(kiln_eigh(a, &wc, &vc), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_assert_eq(kiln_eigh(kt_to_gpu(a), &wg, &vg), KILN_STATUS_OK, "%s", kiln_last_error());
        kt_expect_same(wc, wg, d ? 1e-10 : 1e-4, 0, "eigenvalues");
        double *c = kt_values(vc), *g = kt_values(vg);
        double tol = d ? 1e-8 : 1e-3;
        for (int k = 0; k < 50; k++) { /* column k up to sign */
            double dot = 0;
            for (int i = 0; i < 50; i++) dot += c[i * 50 + k] * g[i * 50 + k];
            double sg = dot < 0 ? -1 : 1;
            for (int i = 0; i < 50; i++)
                cr_expect(fabs(c[i * 50 + k] - sg * g[i * 50 + k]) <= tol, "%s eigenvector %d, row %d: cpu %g cuda %g",
                          kiln_dtype_name(dt), k, i, c[i * 50 + k], sg * g[i * 50 + k]);
        }
        free(c);
        free(g);
    }
}

/* Three steps of an optimizer over two parameters on each device. */
typedef kiln_optimizer *(*make_opt)(kiln_tensor *const *p, int n);
static kiln_optimizer *mk_adamw(kiln_tensor *const *p, int n) {
    kiln_adam_options o = kiln_adamw_defaults();
    o.amsgrad = true;
    return kiln_optim_adamw(p, n, o);
}
static kiln_optimizer *mk_sgd(kiln_tensor *const *p, int n) {
    kiln_sgd_options o = kiln_sgd_defaults();
    o.lr = 0.1;
    o.momentum = 0.9;
    o.nesterov = true;
    return kiln_optim_sgd(p, n, o);
}

KT_TEST(cuda_blas, optimizer_steps_and_clipping_match_the_cpu) {
    NEED_GPU();
    make_opt makers[2] = {mk_adamw, mk_sgd};
    for (int k = 0; k < 2; k++) {
        const int64_t s1[2] = {37, 29}, s2[1] = {1003};
        kiln_tensor *pc[2] = {input(KILN_F32, 2, s1), input(KILN_F32, 1, s2)};
        kiln_tensor *pg[2] = {kt_to_gpu(pc[0]), kt_to_gpu(pc[1])};
        for (int i = 0; i < 2; i++) {
            kiln_tensor_set_requires_grad(pc[i], true);
            kiln_tensor_set_requires_grad(pg[i], true);
        }
        kiln_optimizer *oc = makers[k](pc, 2), *og = makers[k](pg, 2);
        cr_assert(oc && og, "%s", kiln_last_error());
        for (int t = 0; t < 3; t++) {
            kiln_scope *s = kiln_scope_begin();
            kiln_tensor *lc = kiln_add(kiln_sum_all(kiln_mul(pc[0], pc[0])), kiln_sum_all(kiln_exp(pc[1])));
            kiln_tensor *lg = kiln_add(kiln_sum_all(kiln_mul(pg[0], pg[0])), kiln_sum_all(kiln_exp(pg[1])));
            cr_assert_eq(kiln_backward(lc, NULL), KILN_STATUS_OK);
            cr_assert_eq(kiln_backward(lg, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
            double nc = kiln_clip_grad_norm(pc, 2, 5.0, 2), ng = kiln_clip_grad_norm(pg, 2, 5.0, 2);
            cr_assert(fabs(nc - ng) <= 1e-6 * fabs(nc), "clip_grad_norm: cpu %.9g, cuda %.9g (%s)", nc, ng,
                      kiln_last_error());
            cr_assert_eq(kiln_optimizer_step(oc), KILN_STATUS_OK);
            cr_assert_eq(kiln_optimizer_step(og), KILN_STATUS_OK, "%s", kiln_last_error());
            kiln_optimizer_zero_grad(oc);
            kiln_optimizer_zero_grad(og);
            kiln_scope_end(s);
        }
        kt_expect_same(pc[0], pg[0], 1e-6, 1e-5, k ? "sgd nesterov, parameter 0" : "adamw amsgrad, parameter 0");
        kt_expect_same(pc[1], pg[1], 1e-6, 1e-5, k ? "sgd nesterov, parameter 1" : "adamw amsgrad, parameter 1");
        kiln_optimizer_free(oc);
        kiln_optimizer_free(og);
    }
}

KT_TEST(cuda_blas, batch_norm_and_dropout_match_the_cpu) {
    NEED_GPU();
    const int64_t xs[4] = {3, 5, 9, 11}, cs[1] = {5};
    kiln_tensor *x = kiln_tensor_rand(4, xs, 9, 11, KILN_F32, KILN_CPU), *w = input(KILN_F32, 1, cs),
                *b = input(KILN_F32, 1, cs);
    kiln_tensor *rm = kiln_tensor_zeros(1, cs, KILN_F32, KILN_CPU), *rv = kiln_tensor_full(1, cs, 1, KILN_F32, KILN_CPU);
    kiln_tensor *xg = kt_to_gpu(x), *wg = kt_to_gpu(w), *bg = kt_to_gpu(b), *rmg = kt_to_gpu(rm), *rvg = kt_to_gpu(rv);
    kiln_tensor *all[6] = {x, w, b, xg, wg, bg};
    for (int i = 0; i < 6; i++) kiln_tensor_set_requires_grad(all[i], true);
    kiln_tensor *yc = kiln_batch_norm2d(x, w, b, rm, rv, true, 0.1, 1e-5);
    kiln_tensor *yg = kiln_batch_norm2d(xg, wg, bg, rmg, rvg, true, 0.1, 1e-5);
    kt_expect_same(yc, yg, 1e-5, 1e-5, "batch_norm2d training forward");
    kt_expect_same(rm, rmg, 1e-6, 1e-6, "running_mean");
    kt_expect_same(rv, rvg, 1e-6, 1e-6, "running_var (unbiased)");
    kiln_tensor *r = kiln_tensor_rand(4, xs, -1, 1, KILN_F32, KILN_CPU);
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(yc, r)), NULL), KILN_STATUS_OK);
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(yg, kt_to_gpu(r))), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    kt_expect_same(kiln_tensor_grad(x), kiln_tensor_grad(xg), 1e-4, 1e-4, "batch_norm2d dx");
    kt_expect_same(kiln_tensor_grad(w), kiln_tensor_grad(wg), 1e-4, 1e-5, "batch_norm2d dweight");
    kt_expect_same(kiln_tensor_grad(b), kiln_tensor_grad(bg), 1e-4, 1e-5, "batch_norm2d dbias");
    kt_expect_same(kiln_batch_norm2d(x, w, b, rm, rv, false, 0.1, 1e-5), kiln_batch_norm2d(xg, wg, bg, rmg, rvg, false, 0.1, 1e-5),
         1e-5, 1e-5, "batch_norm2d eval");

    const int64_t ds[2] = {37, 29};
    kiln_tensor *dx = input(KILN_F32, 2, ds);
    kiln_manual_seed(1234);
    kiln_tensor *dc = kiln_dropout(kiln_transpose(dx, 0, 1), 0.3, true);
    kiln_manual_seed(1234);
    kiln_tensor *dg = kiln_dropout(kiln_transpose(kt_to_gpu(dx), 0, 1), 0.3, true);
    kt_expect_same(dc, dg, 0, 0, "dropout: the same mask and scale for the same seed");
}

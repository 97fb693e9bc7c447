/* The second set of CUDA kernels on a real GPU against the CPU, forward and
 * backward through autograd: softmax and log_softmax (NCHW channels of an NHWC view
 * and the last axis), max/argmax, concat, bce, bce_with_logits, cross_entropy with
 * every option, nll_loss and one_hot (through the multi-class Dice loss). Skips
 * where no CUDA device is present: the emulated tests (test_cuda_emu_softmax,
 * _losses, _maxarg_concat) cover the kernels there. Tolerances (f32): exact for argmax, max,
 * max's gradient and concat (no arithmetic); 2e-6 relative + 1e-7 absolute for the
 * softmax family, the losses and their gradients (CUDA's exp/log and FMA
 * contraction differ from glibc by an ulp or two, and sums run in another order). */
#include "support/kiln_test.h"

#include <stdlib.h>

TestSuite(cuda_ops2, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define NEED_GPU()                                                                                          \
    do {                                                                                                    \
        if (kiln_cuda_device_count() == 0)                                                                  \
            cr_skip_test("no CUDA device here: not run on a GPU (the emulated kernel tests ran instead)"); \
    } while (0)

#define TOL 1e-7, 2e-6

static kiln_tensor *input(int ndim, const int64_t *shape, double lo, double hi) {
    return kiln_tensor_rand(ndim, shape, lo, hi, KILN_F32, KILN_CPU);
}

/* A CPU leaf and its GPU copy, both requiring grad. */
static void pair(kiln_tensor *x, kiln_tensor **xc, kiln_tensor **xg) {
    *xc = x;
    *xg = kt_to_gpu(x);
    kiln_tensor_set_requires_grad(*xc, true);
    kiln_tensor_set_requires_grad(*xg, true);
}

/* Backward of sum(y * w) on both devices for a fixed random w of y's shape. */
static void backward_both(kiln_tensor *yc, kiln_tensor *yg) {
    kiln_tensor *w = input(kiln_tensor_ndim(yc), kiln_tensor_shape(yc), -1, 1);
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(yc, w)), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(yg, kt_to_gpu(w))), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
}

KT_TEST(cuda_ops2, softmax_family_channels_and_last_axis) {
    NEED_GPU();
    const int64_t nhwc[4] = {2, 3, 43, 7}, rows[2] = {37, 257};
    const int perm[4] = {0, 3, 1, 2};
    for (int lg = 0; lg < 2; lg++)
        for (int k = 0; k < 2; k++) {
            kiln_tensor *xc, *xg;
            pair(k ? input(2, rows, -4, 4) : input(4, nhwc, -4, 4), &xc, &xg);
            kiln_tensor *vc = k ? xc : kiln_permute(xc, perm), *vg = k ? xg : kiln_permute(xg, perm);
            int axis = 1;
            kiln_tensor *yc = lg ? kiln_log_softmax(vc, axis) : kiln_softmax(vc, axis);
            kiln_tensor *yg = lg ? kiln_log_softmax(vg, axis) : kiln_softmax(vg, axis);
            const char *what = lg ? (k ? "log_softmax rows" : "log_softmax NCHW channels")
                                  : (k ? "softmax rows" : "softmax NCHW channels");
            kt_expect_same(yc, yg, TOL, what);
            backward_both(yc, yg);
            kt_expect_same(kiln_tensor_grad(xc), kiln_tensor_grad(xg), TOL, what);
        }
}

KT_TEST(cuda_ops2, max_argmax_and_concat) {
    NEED_GPU();
    const int64_t s[3] = {5, 257, 7};
    for (int axis = 0; axis < 3; axis++) {
        kiln_tensor *xc, *xg;
        pair(input(3, s, -1, 1), &xc, &xg);
        kt_expect_same(kiln_argmax(xc, axis, false), kiln_argmax(xg, axis, false), 0, 0, "argmax");
        kiln_tensor *mc = kiln_max(xc, axis, true), *mg = kiln_max(xg, axis, true);
        kt_expect_same(mc, mg, 0, 0, "max");
        backward_both(mc, mg);
        kt_expect_same(kiln_tensor_grad(xc), kiln_tensor_grad(xg), 0, 0, "max gradient");
    }
    const int64_t a[2] = {37, 5}, b[2] = {37, 130};
    kiln_tensor *ac = input(2, a, -1, 1), *bc = kiln_transpose(input(2, (const int64_t[]){130, 37}, -1, 1), 0, 1);
    kiln_tensor *cc[2] = {ac, bc}, *cg[2] = {kt_to_gpu(ac), kiln_transpose(kt_to_gpu(kiln_transpose(bc, 0, 1)), 0, 1)};
    (void)b;
    kt_expect_same(kiln_concat(2, cc, 1), kiln_concat(2, cg, 1), 0, 0, "concat");
}

KT_TEST(cuda_ops2, bce_and_bce_with_logits) {
    NEED_GPU();
    const int64_t s[4] = {2, 3, 5, 43}, ws[3] = {3, 1, 1};
    for (int red = 0; red < 3; red++) {
        kiln_tensor *pc, *pg, *lc, *lg;
        pair(input(4, s, 0.02, 0.98), &pc, &pg);
        pair(input(4, s, -6, 6), &lc, &lg);
        kiln_tensor *y = input(4, s, 0, 1), *w = input(3, ws, 0.5, 2);
        kiln_tensor *pw = input(1, &s[3], 0.5, 3);
        kiln_tensor *bc = kiln_bce(pc, y, w, (kiln_reduction)red), *bg = kiln_bce(pg, kt_to_gpu(y), kt_to_gpu(w), (kiln_reduction)red);
        kt_expect_same(bc, bg, TOL, "bce");
        backward_both(bc, bg);
        kt_expect_same(kiln_tensor_grad(pc), kiln_tensor_grad(pg), TOL, "bce gradient");
        kiln_tensor *xc = kiln_bce_with_logits(lc, y, w, pw, (kiln_reduction)red);
        kiln_tensor *xg = kiln_bce_with_logits(lg, kt_to_gpu(y), kt_to_gpu(w), kt_to_gpu(pw), (kiln_reduction)red);
        kt_expect_same(xc, xg, TOL, "bce_with_logits");
        backward_both(xc, xg);
        kt_expect_same(kiln_tensor_grad(lc), kiln_tensor_grad(lg), TOL, "bce_with_logits gradient");
    }
}

KT_TEST(cuda_ops2, cross_entropy_every_option_and_nll_loss) {
    NEED_GPU();
    const int64_t s[4] = {2, 7, 3, 43}, ts[3] = {2, 3, 43}, C = 7;
    int64_t n = 2 * 3 * 43, *tv = malloc(sizeof(int64_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) tv[i] = i % 5 == 1 ? 3 : (i * 7919) % C; /* class 3 doubles as ignore_index */
    kiln_tensor *t = kiln_tensor_from_host(tv, 3, ts, KILN_I64, KILN_CPU);
    free(tv);
    kiln_tensor *w = input(1, &C, 0.25, 2), *prob = kiln_softmax(input(4, s, -2, 2), 1);
    char what[160];
    for (int nll = 0; nll < 2; nll++)
        for (int opt = 0; opt < 8; opt++)
            for (int red = 0; red < 3; red++) {
                bool weighted = opt & 1, ignore = opt & 2, smooth = (opt & 4) && !nll;
                if ((opt & 4) && nll) continue;
                kiln_cross_entropy_options oc = kiln_cross_entropy_options_default(), og;
                oc.weight = weighted ? w : NULL;
                oc.ignore_index = ignore ? 3 : KILN_IGNORE_INDEX_DEFAULT;
                oc.label_smoothing = smooth ? 0.1 : 0;
                oc.reduction = (kiln_reduction)red;
                og = oc;
                og.weight = weighted ? kt_to_gpu(w) : NULL;
                kiln_tensor *xc, *xg;
                pair(input(4, s, -3, 3), &xc, &xg);
                snprintf(what, sizeof what, "%s weight %d ignore %d smoothing %d reduction %d",
                         nll ? "nll_loss" : "cross_entropy", weighted, ignore, smooth, red);
                kiln_tensor *lc = nll ? kiln_nll_loss(xc, t, &oc) : kiln_cross_entropy(xc, t, &oc);
                kiln_tensor *lg = nll ? kiln_nll_loss(xg, kt_to_gpu(t), &og) : kiln_cross_entropy(xg, kt_to_gpu(t), &og);
                kt_expect_same(lc, lg, TOL, what);
                backward_both(lc, lg);
                /* cross_entropy's f32 gradient comes from the float32 path on both devices
                 * (docs/ARCHITECTURE.md): the same operations, but nvcc contracts some into
                 * FMAs, so a softmax p can differ by ~2 ulp of 1, and the target's entry
                 * a (p - 1) (|a| <= |g| max w = 2 here) loses its relative accuracy as p nears 1:
                 * 4 ulp of 1 times 2 absolute */
                if (nll) kt_expect_same(kiln_tensor_grad(xc), kiln_tensor_grad(xg), TOL, what);
                else kt_expect_same(kiln_tensor_grad(xc), kiln_tensor_grad(xg), 4 * 0x1p-24 * 2, 2e-6, what);
                if (nll || ignore) continue;
                /* probability targets */
                kiln_tensor *pc, *pg;
                pair(input(4, s, -3, 3), &pc, &pg);
                kiln_tensor *qc = kiln_cross_entropy(pc, prob, &oc), *qg = kiln_cross_entropy(pg, kt_to_gpu(prob), &og);
                kt_expect_same(qc, qg, TOL, "cross_entropy, probability targets");
                backward_both(qc, qg);
                kt_expect_same(kiln_tensor_grad(pc), kiln_tensor_grad(pg), TOL, "cross_entropy gradient, probability targets");
            }
}

KT_TEST(cuda_ops2, one_hot_through_multiclass_dice) {
    NEED_GPU();
    const int64_t s[4] = {2, 7, 3, 43}, ts[3] = {2, 3, 43};
    int64_t n = 2 * 3 * 43, *tv = malloc(sizeof(int64_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) tv[i] = (i * 31) % 7;
    kiln_tensor *t = kiln_tensor_from_host(tv, 3, ts, KILN_I64, KILN_CPU);
    free(tv);
    kiln_tensor *p = kiln_softmax(input(4, s, -2, 2), 1);
    kt_expect_same(kiln_dice_loss_multiclass(p, t, 1.0, KILN_REDUCTION_NONE),
         kiln_dice_loss_multiclass(kt_to_gpu(p), kt_to_gpu(t), 1.0, KILN_REDUCTION_NONE), TOL, "multi-class dice (one_hot)");
}

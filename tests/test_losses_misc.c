/* mse, l1, soft Dice (binary and multi-class) and the sigmoid focal loss:
 * forward against the fixture script's PyTorch values, every reduction, f64 and
 * f32; backward by gradcheck in f64 for every loss; the focal loss on confident logits
 * against float64 values of its definition (tests/fixtures/gen_numerics.py). */
#include "support/kiln_test.h"
#include "fixtures/losses_misc.h"
#include "fixtures/numerics_ref.h"

#include <math.h>
#include <stdlib.h>

TestSuite(losses_misc, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define T(dt, name) kt_tensor(dt, (int)(sizeof name##_shape / sizeof name##_shape[0]), name##_shape, name)
#define N(a) ((int64_t)(sizeof a / sizeof a[0]))

static const kiln_reduction reds[3] = {KILN_REDUCTION_NONE, KILN_REDUCTION_MEAN, KILN_REDUCTION_SUM};

static kiln_tensor *classes(void) {
    int64_t shape[3] = {mc_probs_shape[0], mc_probs_shape[2], mc_probs_shape[3]};
    return kiln_tensor_from_host(mc_cls, 3, shape, KILN_I64, KILN_CPU);
}

static void check_all(kiln_dtype dt) {
    double at = dt == KILN_F64 ? 1e-12 : 3e-5, rt = dt == KILN_F64 ? 1e-10 : 2e-5;
    const double *mse[3] = {mse_none, mse_mean, mse_sum}, *l1[3] = {l1_none, l1_mean, l1_sum};
    const double *d1[3] = {dice_s1_none, dice_s1_mean, dice_s1_sum}, *d0[3] = {dice_s0_none, dice_s0_mean, dice_s0_sum};
    const double *dmc[3] = {dicemc_none, dicemc_mean, dicemc_sum};
    const double *fd[3] = {focal_d_none, focal_d_mean, focal_d_sum};
    const double *fna[3] = {focal_noalpha_none, focal_noalpha_mean, focal_noalpha_sum};
    const double *fg0[3] = {focal_g0_none, focal_g0_mean, focal_g0_sum};
    for (int r = 0; r < 3; r++) {
        kiln_tensor *x = T(dt, m_x), *y = T(dt, m_y), *p = T(dt, m_p);
        int64_t n = r ? 1 : N(mse_none);
        kt_expect_values(kiln_mse_loss(x, y, reds[r]), mse[r], n, at, rt);
        kt_expect_values(kiln_l1_loss(x, y, reds[r]), l1[r], n, at, rt);
        kt_expect_values(kiln_dice_loss(p, y, 1.0, reds[r]), d1[r], r ? 1 : N(dice_s1_none), at, rt);
        kt_expect_values(kiln_dice_loss(p, y, 0.0, reds[r]), d0[r], r ? 1 : N(dice_s0_none), at, rt);
        kt_expect_values(kiln_dice_loss_multiclass(T(dt, mc_probs), classes(), 1.0, reds[r]), dmc[r],
                         r ? 1 : N(dicemc_none), at, rt);
        kt_expect_values(kiln_sigmoid_focal_loss(x, y, 0.25, 2.0, reds[r]), fd[r], n, at, rt);
        kt_expect_values(kiln_sigmoid_focal_loss(x, y, -1.0, 1.5, reds[r]), fna[r], n, at, rt);
        kt_expect_values(kiln_sigmoid_focal_loss(x, y, 0.6, 0.0, reds[r]), fg0[r], n, at, rt);
    }
}

KT_TEST(losses_misc, forward_f64) { check_all(KILN_F64); }
KT_TEST(losses_misc, forward_f32) { check_all(KILN_F32); }

/* Hand-computed: dice of p = [1,0.5,0,0], t = [1,1,0,0]: inter 1.5, sums 1.5 + 2. */
KT_TEST(losses_misc, dice_by_hand) {
    kiln_tensor *p = KT_F64(2, KT_SHAPE(1, 4), {1, 0.5, 0, 0});
    kiln_tensor *t = KT_F64(2, KT_SHAPE(1, 4), {1, 1, 0, 0});
    KT_EXPECT(kiln_dice_loss(p, t, 0.0, KILN_REDUCTION_NONE), 1e-15, 0, {1 - 3.0 / 3.5});
    KT_EXPECT(kiln_dice_loss(p, t, 1.0, KILN_REDUCTION_NONE), 1e-15, 0, {1 - 4.0 / 4.5});
}

typedef struct {
    int which;
    kiln_reduction r;
    kiln_tensor *cls;
} misc_ctx;

static kiln_tensor *f_misc(kiln_tensor *const *in, void *vctx) {
    misc_ctx *c = vctx;
    switch (c->which) {
    case 0: return kiln_mse_loss(in[0], in[1], c->r);
    case 1: return kiln_l1_loss(in[0], in[1], c->r);
    case 2: return kiln_dice_loss(in[0], in[1], 1.0, c->r);
    case 3: return kiln_dice_loss_multiclass(in[0], c->cls, 0.5, c->r);
    case 4: return kiln_sigmoid_focal_loss(in[0], in[1], 0.25, 2.0, c->r);
    default: return kiln_sigmoid_focal_loss(in[0], in[1], -1, 1.5, c->r);
    }
}

KT_TEST(losses_misc, gradcheck_every_loss) {
    static const char *names[] = {"mse", "l1", "dice", "dice_multiclass", "focal", "focal_noalpha"};
    for (int which = 0; which < 6; which++)
        for (int r = 0; r < 3; r++) {
            kiln_scope *s = kiln_scope_begin();
            misc_ctx c = {which, reds[r], classes()};
            int64_t shape[4] = {2, 4, 3, 3};
            kiln_tensor *in[2] = {kt_rand_input(4, shape, which == 2 || which == 3 ? 0.05 : -3, which == 2 || which == 3 ? 1 : 3),
                                  kt_rand_input(4, shape, 0, 1)};
            /* l1's kink at x = y: the random inputs stay away from it almost surely */
            int n = which == 3 ? 1 : 2;
            cr_expect(kt_gradcheck(f_misc, &c, n, in, 1e-6, 1e-8, 1e-6), "%s reduction %d", names[which], r);
            kiln_scope_end(s);
        }
}

static double worst_relative(kiln_tensor *t, const double *want, int64_t n, int64_t *at) {
    double *v = kt_values(t), worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = want[i] == 0 ? fabs(v[i]) : fabs(v[i] - want[i]) / fabs(want[i]);
        if (!(e <= worst)) worst = e, *at = i;
    }
    free(v);
    return worst;
}

/* The focal loss keeps relative accuracy where the loss is tiny (x = -80, y = 0 and x = 80,
 * y = 1: e^-240 and below in f64): bce_with_logits without cancellation, and 1 - p_t as
 * p (1-y) + sigmoid(-x) y rather than p + y - 2 p y. Tolerance: 16 ulps (f32 1.9e-6, f64
 * 3.6e-15): ce 3, each sigmoid 2 and the product and sum 2, squared by gamma = 2, and in the
 * gradient the sigmoid's backward y (1 - y) (torch's form), good to an ulp of y only: at
 * x = 17, y = 1/4 that is 6e-8 of sigmoid' against a gradient of 0.26, times ce m ~ 10.
 * Values whose f32 result underflows (below 1e-38) are compared as 0 there. */
KT_TEST(losses_misc, focal_confident_logits_keep_relative_accuracy) {
    const int64_t n[1] = {BL_N};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        double rtol = d ? 3.6e-15 : 1.9e-6;
        kiln_tensor *x = kt_tensor(dt, 1, n, bl_x), *y = kt_tensor(dt, 1, n, bl_y);
        kiln_tensor_set_requires_grad(x, true);
        kiln_tensor *l = kiln_sigmoid_focal_loss(x, y, BL_FOCAL_ALPHA, BL_FOCAL_GAMMA, KILN_REDUCTION_NONE);
        cr_assert(l, "%s", kiln_last_error());
        cr_assert_eq(kiln_backward(kiln_sum_all(l), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        double want[BL_N], gwant[BL_N];
        for (int i = 0; i < BL_N; i++) { /* f32: what underflows there is compared as 0 */
            want[i] = !d && fabs(bl_focal[i]) < 1e-38 ? 0 : bl_focal[i];
            gwant[i] = !d && fabs(bl_focal_grad[i]) < 1e-38 ? 0 : bl_focal_grad[i];
        }
        int64_t at = 0;
        double e = worst_relative(l, want, BL_N, &at);
        cr_expect(e <= rtol, "focal %s: element %lld (x %g, y %g): relative error %.3g > %.3g", kiln_dtype_name(dt),
                  (long long)at, bl_x[at], bl_y[at], e, rtol);
        e = worst_relative(kiln_tensor_grad(x), gwant, BL_N, &at);
        cr_expect(e <= rtol, "focal %s gradient: element %lld (x %g, y %g): relative error %.3g > %.3g",
                  kiln_dtype_name(dt), (long long)at, bl_x[at], bl_y[at], e, rtol);
    }
}

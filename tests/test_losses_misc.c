/* mse, l1, soft Dice (binary and multi-class) and the sigmoid focal loss:
 * forward against the fixture script's PyTorch values, every reduction, f64 and
 * f32; backward by gradcheck in f64 for every loss. */
#include "support/kiln_test.h"
#include "fixtures/losses_misc.h"

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

/* Learning-rate schedules against torch.optim.lr_scheduler over 100 steps
 * (tests/fixtures/schedule_ref.h). torch computes most schedules recursively, kiln
 * in closed form: they agree to rounding, checked at 1e-12 relative. OneCycleLR through
 * a standard loop's last scheduler.step() (tests/fixtures/gen_numerics.py). */
#include "support/kiln_test.h"
#include "fixtures/schedule_ref.h"
#include "fixtures/numerics_ref.h"

TestSuite(schedule, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define SCHED_RTOL 1e-12
#define SCHED_ATOL 1e-15

static void expect_lrs(const char *name, const kiln_schedule *s, const double *ref) {
    for (int t = 0; t < SCHED_STEPS; t++) {
        double lr = kiln_schedule_lr(s, t);
        cr_expect(fabs(lr - ref[t]) <= SCHED_ATOL + SCHED_RTOL * fabs(ref[t]), "%s at step %d: lr %.17g, torch %.17g",
                  name, t, lr, ref[t]);
    }
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK, "%s: %s", name, kiln_last_error());
}

KT_TEST(schedule, step_lr) {
    kiln_schedule s = kiln_schedule_step(0.1, 7, 0.5);
    expect_lrs("StepLR", &s, sched_step);
}

KT_TEST(schedule, multistep_lr) {
    kiln_schedule s = kiln_schedule_multistep(0.1, (int64_t[]){10, 25, 60}, 3, 0.3);
    expect_lrs("MultiStepLR", &s, sched_multistep);
}

KT_TEST(schedule, exponential_lr) {
    kiln_schedule s = kiln_schedule_exponential(0.1, 0.97);
    expect_lrs("ExponentialLR", &s, sched_exponential);
}

KT_TEST(schedule, cosine_annealing_past_t_max) {
    kiln_schedule s = kiln_schedule_cosine(0.1, 30, 0.001);
    expect_lrs("CosineAnnealingLR", &s, sched_cosine);
}

KT_TEST(schedule, linear_warmup_and_decay) {
    kiln_schedule s = kiln_schedule_linear(0.1, 0.1, 1.0, 20);
    expect_lrs("LinearLR warm-up", &s, sched_linear);
    kiln_schedule d = kiln_schedule_linear(0.2, 1.0, 0.25, 40);
    expect_lrs("LinearLR decay", &d, sched_linear_decay);
}

KT_TEST(schedule, onecycle_defaults_and_linear) {
    kiln_schedule s = kiln_schedule_onecycle(0.5, 100);
    cr_expect(s.pct_start == 0.3 && s.div_factor == 25 && s.final_div_factor == 1e4 && !s.anneal_linear);
    expect_lrs("OneCycleLR", &s, sched_onecycle);
    kiln_schedule l = kiln_schedule_onecycle(0.2, 120);
    l.pct_start = 0.25;
    l.anneal_linear = true;
    l.div_factor = 10;
    l.final_div_factor = 100;
    expect_lrs("OneCycleLR linear", &l, sched_onecycle_linear);
    /* the last step reaches min_lr = max_lr / 25 / 1e4 */
    cr_expect(fabs(kiln_schedule_lr(&s, 99) - 0.5 / 25 / 1e4) < 1e-15);
}

/* Driving an optimizer: the lr each step used is the schedule's. */
KT_TEST(schedule, drives_an_optimizer) {
    kiln_tensor *p = KT_F64(1, KT_SHAPE(1), {0});
    kiln_tensor_set_requires_grad(p, true);
    kiln_optimizer *o = kiln_optim_sgd(&p, 1, kiln_sgd_defaults());
    kiln_schedule s = kiln_schedule_step(0.1, 7, 0.5);
    double expect = 0;
    for (int t = 0; t < 20; t++) {
        kiln_tensor_zero_grad(p);
        cr_assert_eq(kiln_backward(kiln_sum_all(p), NULL), KILN_STATUS_OK); /* gradient 1 */
        cr_assert_eq(kiln_optimizer_set_lr(o, kiln_schedule_lr(&s, t)), KILN_STATUS_OK);
        cr_assert_eq(kiln_optimizer_step(o), KILN_STATUS_OK);
        expect -= sched_step[t];
    }
    KT_EXPECT(p, 1e-15, 1e-13, {expect});
    kiln_optimizer_free(o);
}

KT_TEST(schedule, invalid_parameters_are_errors) {
    kiln_schedule s = kiln_schedule_step(0.1, 0, 0.5);
    cr_expect(isnan(kiln_schedule_lr(&s, 3)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "step_size");
    s = kiln_schedule_cosine(0.1, 0, 0);
    cr_expect(isnan(kiln_schedule_lr(&s, 3)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "t_max");
    s = kiln_schedule_linear(0.1, 0, 1, 5);
    cr_expect(isnan(kiln_schedule_lr(&s, 3)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "start_factor");
    s = kiln_schedule_multistep(0.1, (int64_t[]){5, 3}, 2, 0.1);
    cr_expect(isnan(kiln_schedule_lr(&s, 3)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "ascend");
    s = kiln_schedule_onecycle(0.1, 10);
    cr_expect(!isnan(kiln_schedule_lr(&s, 10)), "torch allows step == total_steps");
    cr_expect(isnan(kiln_schedule_lr(&s, 11)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "total_steps");
    cr_expect(isnan(kiln_schedule_lr(&s, -1)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, ">= 0");
    cr_expect(isnan(kiln_schedule_lr(NULL, 0)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "NULL");
    kiln_schedule c = kiln_schedule_constant(0.3);
    cr_expect_eq(kiln_schedule_lr(&c, 1000), 0.3);
}

/* A standard torch loop: total_steps times optimizer.step() then scheduler.step(). The last
 * scheduler.step() asks for the lr at t = total_steps, past the schedule's end: torch
 * extrapolates the annealing (below 0 with 'linear': -0.0143 here, back up with 'cos') and
 * sets it on the optimizer without complaint; only one more step raises. kiln: the same
 * values, and kiln_optimizer_set_lr takes the negative one. */
KT_TEST(schedule, onecycle_last_step_of_a_standard_loop_as_torch) {
    for (int lin = 0; lin < 2; lin++) {
        kiln_schedule s = kiln_schedule_onecycle(ONECYCLE_MAX_LR, ONECYCLE_TOTAL);
        s.anneal_linear = lin;
        const double *ref = lin ? onecycle_linear_lrs : onecycle_cos_lrs;
        kiln_tensor *p = KT_F64(1, KT_SHAPE(1), {0});
        kiln_tensor_set_requires_grad(p, true);
        kiln_optimizer *o = kiln_optim_sgd(&p, 1, kiln_sgd_defaults());
        cr_assert_eq(kiln_optimizer_set_lr(o, kiln_schedule_lr(&s, 0)), KILN_STATUS_OK);
        for (int t = 0; t < ONECYCLE_TOTAL; t++) {
            kiln_tensor_zero_grad(p);
            cr_assert_eq(kiln_backward(kiln_sum_all(p), NULL), KILN_STATUS_OK);
            cr_assert_eq(kiln_optimizer_step(o), KILN_STATUS_OK, "%s", kiln_last_error());
            /* scheduler.step() */
            cr_assert_eq(kiln_optimizer_set_lr(o, kiln_schedule_lr(&s, t + 1)), KILN_STATUS_OK,
                         "%s, step %d: %s", lin ? "linear" : "cos", t + 1, kiln_last_error());
            double lr = kiln_optimizer_get_lr(o);
            cr_expect(fabs(lr - ref[t + 1]) <= SCHED_ATOL + SCHED_RTOL * fabs(ref[t + 1]),
                      "%s after step %d: lr %.17g, torch %.17g", lin ? "linear" : "cos", t + 1, lr, ref[t + 1]);
        }
        if (lin) cr_expect(kiln_optimizer_get_lr(o) < 0, "linear annealing extrapolates below 0, as torch");
        cr_expect(isnan(kiln_schedule_lr(&s, ONECYCLE_TOTAL + 1)), "one more step is an error, as torch's");
        kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "total_steps");
        kiln_clear_error();
        kiln_optimizer_free(o);
    }
}

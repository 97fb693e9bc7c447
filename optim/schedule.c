/* Learning-rate schedules as values: kiln_schedule_lr(s, t) is torch's closed form
 * of StepLR, MultiStepLR, ExponentialLR, CosineAnnealingLR, LinearLR and OneCycleLR
 * at step t (torch's last_epoch). Pure functions: nothing to save in a checkpoint
 * but the step count. */
#include "../core/internal.h"

#include <math.h>

static const double kPi = 3.14159265358979323846;

kiln_schedule kiln_schedule_constant(double lr) {
    return (kiln_schedule){.kind = KILN_SCHEDULE_CONSTANT, .base_lr = lr};
}

kiln_schedule kiln_schedule_step(double base_lr, int64_t step_size, double gamma) {
    return (kiln_schedule){.kind = KILN_SCHEDULE_STEP, .base_lr = base_lr, .step_size = step_size, .gamma = gamma};
}

kiln_schedule kiln_schedule_multistep(double base_lr, const int64_t *milestones, int n, double gamma) {
    kiln_schedule s = {.kind = KILN_SCHEDULE_MULTISTEP, .base_lr = base_lr, .gamma = gamma, .n_milestones = n};
    if (n < 0 || n > KILN_SCHEDULE_MAX_MILESTONES || (n && !milestones)) {
        s.n_milestones = -1; /* reported by kiln_schedule_lr */
        return s;
    }
    for (int i = 0; i < n; i++) s.milestones[i] = milestones[i];
    return s;
}

kiln_schedule kiln_schedule_exponential(double base_lr, double gamma) {
    return (kiln_schedule){.kind = KILN_SCHEDULE_EXPONENTIAL, .base_lr = base_lr, .gamma = gamma};
}

kiln_schedule kiln_schedule_cosine(double base_lr, int64_t t_max, double eta_min) {
    return (kiln_schedule){.kind = KILN_SCHEDULE_COSINE, .base_lr = base_lr, .t_max = t_max, .eta_min = eta_min};
}

kiln_schedule kiln_schedule_linear(double base_lr, double start_factor, double end_factor, int64_t total_iters) {
    return (kiln_schedule){.kind = KILN_SCHEDULE_LINEAR, .base_lr = base_lr, .start_factor = start_factor,
                           .end_factor = end_factor, .total_iters = total_iters};
}

kiln_schedule kiln_schedule_onecycle(double max_lr, int64_t total_steps) {
    return (kiln_schedule){.kind = KILN_SCHEDULE_ONECYCLE, .base_lr = max_lr, .total_steps = total_steps,
                           .pct_start = 0.3, .div_factor = 25, .final_div_factor = 1e4};
}

static double bad(const char *why, int64_t t) {
    kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_schedule_lr (step %lld): %s", (long long)t, why);
    return NAN;
}

/* torch's OneCycleLR._annealing_cos / _annealing_linear */
static double anneal(bool linear, double start, double end, double pct) {
    if (linear) return (end - start) * pct + start;
    return end + (start - end) / 2.0 * (cos(kPi * pct) + 1);
}

static double onecycle(const kiln_schedule *s, int64_t t) {
    if (s->total_steps <= 0) return bad("OneCycle total_steps must be > 0", t);
    if (!(s->pct_start >= 0 && s->pct_start <= 1)) return bad("OneCycle pct_start must be in [0, 1]", t);
    if (!(s->div_factor > 0 && s->final_div_factor > 0)) return bad("OneCycle div factors must be > 0", t);
    if (t > s->total_steps)
        return bad("OneCycle stepped past total_steps (torch raises here too); make total_steps cover the run", t);
    double initial = s->base_lr / s->div_factor, min_lr = initial / s->final_div_factor;
    /* phase ends as torch: pct_start * total_steps - 1, then total_steps - 1 */
    double end1 = s->pct_start * (double)s->total_steps - 1, end2 = (double)s->total_steps - 1;
    double x = (double)t;
    if (x <= end1) return anneal(s->anneal_linear, initial, s->base_lr, x / end1);
    return anneal(s->anneal_linear, s->base_lr, min_lr, (x - end1) / (end2 - end1));
}

double kiln_schedule_lr(const kiln_schedule *s, int64_t t) {
    if (!s) return bad("schedule is NULL", t);
    if (t < 0) return bad("the step must be >= 0", t);
    switch (s->kind) {
    case KILN_SCHEDULE_CONSTANT: return s->base_lr;
    case KILN_SCHEDULE_STEP:
        if (s->step_size <= 0) return bad("StepLR step_size must be > 0", t);
        return s->base_lr * pow(s->gamma, (double)(t / s->step_size));
    case KILN_SCHEDULE_MULTISTEP: {
        if (s->n_milestones < 0 || s->n_milestones > KILN_SCHEDULE_MAX_MILESTONES)
            return bad("MultiStepLR takes 0..32 milestones", t);
        int passed = 0; /* bisect_right: a milestone m counts once t >= m */
        for (int i = 0; i < s->n_milestones; i++) {
            if (i && s->milestones[i] < s->milestones[i - 1]) return bad("MultiStepLR milestones must ascend", t);
            passed += t >= s->milestones[i];
        }
        return s->base_lr * pow(s->gamma, passed);
    }
    case KILN_SCHEDULE_EXPONENTIAL: return s->base_lr * pow(s->gamma, (double)t);
    case KILN_SCHEDULE_COSINE:
        if (s->t_max <= 0) return bad("CosineAnnealingLR t_max must be > 0", t);
        return s->eta_min + (s->base_lr - s->eta_min) * (1 + cos(kPi * (double)t / (double)s->t_max)) / 2;
    case KILN_SCHEDULE_LINEAR: {
        if (!(s->start_factor > 0 && s->start_factor <= 1))
            return bad("LinearLR start_factor must be in (0, 1] (as torch)", t);
        if (!(s->end_factor >= 0 && s->end_factor <= 1)) return bad("LinearLR end_factor must be in [0, 1]", t);
        if (s->total_iters <= 0) return bad("LinearLR total_iters must be > 0", t);
        int64_t k = t < s->total_iters ? t : s->total_iters;
        return s->base_lr *
               (s->start_factor + (s->end_factor - s->start_factor) * (double)k / (double)s->total_iters);
    }
    case KILN_SCHEDULE_ONECYCLE: return onecycle(s, t);
    }
    return bad("unknown schedule kind", t);
}

/* kiln optim API: optimizers (sgd, adam, adamw) with PyTorch's update formulas,
 * learning-rate schedules as pure functions of the step, and gradient clipping.
 * Optimizer state lives in one contiguous arena per kind (momentum, exp_avg, ...)
 * and parameters laid out back to back in one storage are updated in one pass. */
#ifndef KILN_OPTIM_H
#define KILN_OPTIM_H

#include "core.h"
#include "ops.h"
#include "checkpoint.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- optimizers ------------------------------------------------------------------
 * Created over an array of parameter tensors, all of one float dtype and one device.
 * The optimizer keeps the pointers: parameters must outlive it. It owns its state
 * (no scope does) and is released with kiln_optimizer_free. Parameters whose .grad
 * is NULL at a step are skipped and their state does not advance, as in torch. */

typedef struct kiln_optimizer kiln_optimizer;

typedef struct {
    double lr;           /* kiln_sgd_defaults: 1e-3 (torch >= 2.2; older torch had no default) */
    double momentum;     /* 0 */
    double dampening;    /* 0 */
    double weight_decay; /* 0: L2 added to the gradient */
    bool nesterov;       /* false; needs momentum > 0 and dampening == 0, as torch */
    bool maximize;       /* false */
} kiln_sgd_options;

typedef struct {
    double lr;           /* 1e-3 */
    double beta1, beta2; /* 0.9, 0.999 */
    double eps;          /* 1e-8, added after the bias-corrected square root */
    double weight_decay; /* adam: 0 (L2 into the gradient); adamw: 1e-2 (decoupled p -= lr*wd*p) */
    bool amsgrad;        /* false */
    bool maximize;       /* false */
} kiln_adam_options;

KILN_API kiln_sgd_options kiln_sgd_defaults(void);
KILN_API kiln_adam_options kiln_adam_defaults(void);
KILN_API kiln_adam_options kiln_adamw_defaults(void);

KILN_API kiln_optimizer *kiln_optim_sgd(kiln_tensor *const *params, int n, kiln_sgd_options o);
KILN_API kiln_optimizer *kiln_optim_adam(kiln_tensor *const *params, int n, kiln_adam_options o);
KILN_API kiln_optimizer *kiln_optim_adamw(kiln_tensor *const *params, int n, kiln_adam_options o);
KILN_API void kiln_optimizer_free(kiln_optimizer *o);

/* One update of every parameter that has a gradient. Runs outside the tape. */
KILN_API kiln_status kiln_optimizer_step(kiln_optimizer *o);
/* Zeroes every parameter's gradient (keeps the tensors: arenas stay in place). */
KILN_API void kiln_optimizer_zero_grad(kiln_optimizer *o);
/* Sets the learning rate as torch's param_groups[i]['lr'] = lr (what its schedulers do):
 * any finite value, negative included; NaN and infinities are errors. */
KILN_API kiln_status kiln_optimizer_set_lr(kiln_optimizer *o, double lr);
KILN_API double kiln_optimizer_get_lr(const kiln_optimizer *o);
/* Number of kiln_optimizer_step calls that updated something. */
KILN_API int64_t kiln_optimizer_step_count(const kiln_optimizer *o);
/* "sgd", "adam" or "adamw". */
KILN_API const char *kiln_optimizer_kind(const kiln_optimizer *o);
/* Fused updates run so far (a fused update is one kernel call over the parameter arena). */
KILN_API int64_t kiln_optimizer_fused_updates(const kiln_optimizer *o);

/* ---- optimizer state for checkpoints -----------------------------------------------
 * The state as named tensors, flattened the way torch's optimizer state_dict nests
 * it: "state.<i>.step" (f32 0-d, as torch), "state.<i>.momentum_buffer" (sgd with
 * momentum), "state.<i>.exp_avg", "state.<i>.exp_avg_sq", "state.<i>.max_exp_avg_sq"
 * (amsgrad), i being the parameter's index. The tensors are views into the state
 * arenas, created in the current scope: reading them exports the state, writing into
 * them (e.g. kiln_safetensors_load) imports it. Names stay valid until the optimizer
 * is freed. Returns the number of entries (call with cap 0 to size out), -1 on error. */
KILN_API int kiln_optimizer_state(kiln_optimizer *o, kiln_named_tensor *out, int cap);

/* Hyper-parameters and the step count as string metadata for a checkpoint:
 * "optimizer" (kind), "lr", "momentum", "dampening", "nesterov", "betas", "eps",
 * "weight_decay", "amsgrad", "maximize" (those the kind has) and "step". The strings
 * belong to the optimizer and stay valid until the next call or kiln_optimizer_free.
 * Returns the number of entries (cap 0 sizes out). */
KILN_API int kiln_optimizer_metadata(kiln_optimizer *o, kiln_metadata_entry *out, int cap);
/* Restores lr, the other hyper-parameters and the step count from such metadata.
 * Keys it does not know are ignored; a different "optimizer" kind or an unparsable
 * value is KILN_STATUS_FORMAT and changes nothing. */
KILN_API kiln_status kiln_optimizer_load_metadata(kiln_optimizer *o, const kiln_metadata_entry *m, int n);

/* ---- learning-rate schedules --------------------------------------------------------
 * Each is a value giving the learning rate at step t (t = 0 before the first
 * scheduler.step() in torch, i.e. the lr of the first optimizer step) with torch's
 * closed-form formulas; torch computes most of them recursively, which agrees to
 * rounding (about 1e-15 relative over hundreds of steps). Typical use:
 *     kiln_optimizer_set_lr(opt, kiln_schedule_lr(&s, t));  then kiln_optimizer_step(opt).
 * OneCycleLR's momentum cycling (cycle_momentum) is not implemented: the schedule
 * gives the learning rate only. */

typedef enum {
    KILN_SCHEDULE_CONSTANT,
    KILN_SCHEDULE_STEP,        /* StepLR: base * gamma^(t / step_size) */
    KILN_SCHEDULE_MULTISTEP,   /* MultiStepLR: base * gamma^(milestones passed) */
    KILN_SCHEDULE_EXPONENTIAL, /* ExponentialLR: base * gamma^t */
    KILN_SCHEDULE_COSINE,      /* CosineAnnealingLR: eta_min + (base - eta_min)(1 + cos(pi t / t_max)) / 2 */
    KILN_SCHEDULE_LINEAR,      /* LinearLR: base * (start + (end - start) min(t, total_iters) / total_iters) */
    KILN_SCHEDULE_ONECYCLE,    /* OneCycleLR: two phases, warm-up to max_lr then annealing */
} kiln_schedule_kind;

#define KILN_SCHEDULE_MAX_MILESTONES 32

typedef struct {
    kiln_schedule_kind kind;
    double base_lr;  /* OneCycle: max_lr */
    double gamma;    /* step, multistep, exponential */
    int64_t step_size;
    int n_milestones;
    int64_t milestones[KILN_SCHEDULE_MAX_MILESTONES]; /* ascending */
    int64_t t_max;   /* cosine */
    double eta_min;  /* cosine */
    double start_factor, end_factor; /* linear */
    int64_t total_iters;             /* linear */
    int64_t total_steps;             /* onecycle */
    double pct_start;                /* onecycle: 0.3 */
    double div_factor;               /* onecycle: 25 (initial_lr = max_lr / div_factor) */
    double final_div_factor;         /* onecycle: 1e4 (min_lr = initial_lr / final_div_factor) */
    bool anneal_linear;              /* onecycle: false = 'cos' (torch's default), true = 'linear' */
} kiln_schedule;

KILN_API kiln_schedule kiln_schedule_constant(double lr);
KILN_API kiln_schedule kiln_schedule_step(double base_lr, int64_t step_size, double gamma);
KILN_API kiln_schedule kiln_schedule_multistep(double base_lr, const int64_t *milestones, int n, double gamma);
KILN_API kiln_schedule kiln_schedule_exponential(double base_lr, double gamma);
KILN_API kiln_schedule kiln_schedule_cosine(double base_lr, int64_t t_max, double eta_min);
/* torch's LinearLR defaults: start_factor 1/3, end_factor 1, total_iters 5. */
KILN_API kiln_schedule kiln_schedule_linear(double base_lr, double start_factor, double end_factor,
                                            int64_t total_iters);
/* torch's OneCycleLR defaults (pct_start 0.3, cos, div_factor 25, final_div_factor 1e4);
 * change the fields afterwards for others. */
KILN_API kiln_schedule kiln_schedule_onecycle(double max_lr, int64_t total_steps);
/* The learning rate at step t >= 0; NaN and an error for invalid parameters (and for
 * OneCycle past total_steps, as torch raises). */
KILN_API double kiln_schedule_lr(const kiln_schedule *s, int64_t t);

/* ---- gradient clipping ---------------------------------------------------------------- */

/* torch.nn.utils.clip_grad_norm_: the norm (norm_type 2 = L2, INFINITY = max |g|, or
 * any p > 0) over all gradients together, then every gradient is scaled by
 * min(1, max_norm / (total + 1e-6)). Parameters without a gradient are skipped.
 * Returns the total norm before clipping; NaN and an error on bad arguments. */
KILN_API double kiln_clip_grad_norm(kiln_tensor *const *params, int n, double max_norm, double norm_type);
/* torch.nn.utils.clip_grad_value_: clamps every gradient into [-clip_value, clip_value]. */
KILN_API kiln_status kiln_clip_grad_value(kiln_tensor *const *params, int n, double clip_value);

#ifdef __cplusplus
}
#endif
#endif

/* batch_norm over (N, C, H, W), and (N, C), (N, C, L) and more axes as a 4-d view (torch's
 * F.batch_norm, BatchNorm1d's input): training normalizes with the batch statistics
 * (biased variance) and moves the running statistics toward them (unbiased
 * variance, running = (1-m)·running + m·batch, as torch); eval uses the running
 * statistics. Backward is dedicated kernels, the full batch-stat gradient in training. */
#include "../core/internal.h"
#include "../kernels/cpu/layers.h"

static void batch_norm_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_batch_norm_stats(const kiln_op_call *call);
kiln_status kiln_cuda_batch_norm(const kiln_op_call *call);
kiln_status kiln_cuda_batch_norm_backward(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_batch_norm_stats = {
    .name = "batch_norm_stats",
    .cpu = kiln_cpu_batch_norm_stats,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_batch_norm_stats),
    .not_differentiable = true};
KILN_REGISTER const kiln_op_def kiln_op_batch_norm = {
    .name = "batch_norm",
    .cpu = kiln_cpu_batch_norm,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_batch_norm),
    .backward = batch_norm_bw,
    .attrs_size = sizeof(kiln_batch_norm_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_batch_norm_backward = {
    .name = "batch_norm_backward",
    .cpu = kiln_cpu_batch_norm_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_batch_norm_backward),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_batch_norm_attrs)};

static bool check_channel_tensor(const char *op, const char *what, kiln_tensor *t, const kiln_tensor *x) {
    if (!t) return true;
    char b1[128], b2[128];
    if (t->ndim != 1 || t->shape[0] != x->shape[1]) {
        kiln__error(KILN_STATUS_SHAPE, "%s: %s %s must be 1-d with one value per channel (%lld) of input %s",
                    op, what, kiln__shape_str(t->ndim, t->shape, b1, sizeof b1), (long long)x->shape[1],
                    kiln__shape_str(x->ndim, x->shape, b2, sizeof b2));
        return false;
    }
    kiln_tensor *pair[2] = {(kiln_tensor *)x, t};
    return kiln__check_float_inputs(op, 2, pair);
}

/* running = (1 - m)·running + m·batch, computed without recording and written in place. */
static kiln_status update_running(kiln_tensor *running, kiln_tensor *batch, double m, double correction) {
    kiln_scope *s = kiln_scope_begin();
    if (!s) return kiln_last_status();
    kiln_no_grad_begin();
    kiln_tensor *nv = kiln_add(kiln_mul_scalar(running, 1.0 - m), kiln_mul_scalar(batch, m * correction));
    kiln_status st = nv ? kiln_tensor_copy_(running, nv) : kiln_last_status();
    kiln_no_grad_end();
    kiln_scope_end(s);
    return st;
}

/* The checks and the op for x of rank >= 2 (the op itself runs on a 4-d view). */
static kiln_tensor *batch_norm(const char *op, kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias,
                               kiln_tensor *running_mean, kiln_tensor *running_var, bool training, double momentum,
                               double eps) {
    char b1[128];
    if (!check_channel_tensor(op, "weight", weight, x) || !check_channel_tensor(op, "bias", bias, x) ||
        !check_channel_tensor(op, "running_mean", running_mean, x) ||
        !check_channel_tensor(op, "running_var", running_var, x))
        return NULL;
    if (!running_mean != !running_var) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: running_mean and running_var must both be given or both be "
                    "NULL", op);
        return NULL;
    }
    if (!training && !running_mean) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: eval mode normalizes with the running statistics; pass "
                    "running_mean and running_var, or use training mode", op);
        return NULL;
    }
    if (!(eps > 0)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: eps %g must be positive", op, eps);
        return NULL;
    }
    int64_t c = x->shape[1], rest = 1; /* rest: the positions per sample (H·W, L, or 1) */
    for (int i = 2; i < x->ndim; i++) rest *= x->shape[i];
    int64_t cnt = x->shape[0] * rest;
    if (training && cnt <= 1) {
        kiln__error(KILN_STATUS_SHAPE, "%s: expected more than 1 value per channel when training, got input %s; use a "
                    "larger batch or eval mode", op, kiln__shape_str(x->ndim, x->shape, b1, sizeof b1));
        return NULL;
    }
    kiln_tensor *shown = x;
    if (x->ndim != 4) { /* (N, C, L...) as (N, C, L·..., 1): the same values per channel, in the same order */
        int64_t s4[4] = {x->shape[0], c, rest, 1};
        x = kiln_reshape(x, 4, s4);
        if (!x) return NULL;
    }
    kiln_tensor *mean = running_mean, *var = running_var;
    if (training) {
        int64_t sshape[2] = {2, c};
        kiln_tensor *stats = kiln__run(&kiln_op_batch_norm_stats, 1, &x, kiln__new(2, sshape, x->dtype, x->device), NULL);
        if (!stats) return NULL;
        int64_t es = (int64_t)kiln_dtype_size(x->dtype);
        mean = kiln__view(stats, 1, &c, &es, stats->offset);
        var = kiln__view(stats, 1, &c, &es, stats->offset + c * es);
        if (!mean || !var) return NULL;
        if (running_mean && (update_running(running_mean, mean, momentum, 1.0) != KILN_STATUS_OK ||
                             update_running(running_var, var, momentum, (double)cnt / (double)(cnt - 1)) !=
                                 KILN_STATUS_OK))
            return NULL;
    }
    kiln_batch_norm_attrs at = {eps, training, 0};
    kiln_tensor *in[5] = {x, weight, bias, mean, var};
    kiln_tensor *y = kiln__run(&kiln_op_batch_norm, 5, in, kiln__new_like(x), &at);
    return shown == x ? y : kiln_reshape(y, shown->ndim, shown->shape);
}

kiln_tensor *kiln_batch_norm2d(kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias, kiln_tensor *running_mean,
                               kiln_tensor *running_var, bool training, double momentum, double eps) {
    if (!kiln__check_float_inputs("batch_norm2d", 1, &x)) return NULL;
    if (x->ndim != 4) {
        char b1[128];
        kiln__error(KILN_STATUS_SHAPE, "batch_norm2d: input %s must be 4-d (N, C, H, W); kiln_batch_norm takes "
                    "(N, C) and (N, C, L) too", kiln__shape_str(x->ndim, x->shape, b1, sizeof b1));
        return NULL;
    }
    return batch_norm("batch_norm2d", x, weight, bias, running_mean, running_var, training, momentum, eps);
}

kiln_tensor *kiln_batch_norm(kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias, kiln_tensor *running_mean,
                             kiln_tensor *running_var, bool training, double momentum, double eps) {
    if (!kiln__check_float_inputs("batch_norm", 1, &x)) return NULL;
    if (x->ndim < 2) {
        char b1[128];
        kiln__error(KILN_STATUS_SHAPE, "batch_norm: input %s must have a channel axis: (N, C), (N, C, L) or "
                    "(N, C, H, W)", kiln__shape_str(x->ndim, x->shape, b1, sizeof b1));
        return NULL;
    }
    return batch_norm("batch_norm", x, weight, bias, running_mean, running_var, training, momentum, eps);
}

/* Training: one which-3 call sums g and g·x̂ per channel, the weight and bias gradients are
 * its rows, and dx reads them, so g and x are read twice in all (the pieces alone would
 * each redo the sums). Eval: dx = g·w·invstd needs no sums; the weight and bias
 * gradients still come from one which-3 call (x̂ from the running statistics). */
static void batch_norm_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    kiln_batch_norm_attrs at = *(const kiln_batch_norm_attrs *)n->attrs;
    kiln_tensor *x = n->inputs[0];
    kiln_tensor *in[6] = {g, x, n->inputs[1], n->inputs[3], n->inputs[4], NULL};
    bool need_sums = at.training ? (n->needs_grad[0] || n->needs_grad[1] || n->needs_grad[2])
                                 : (n->needs_grad[1] || n->needs_grad[2]);
    if (need_sums) {
        int64_t c = x->shape[1], sshape[2] = {2, c}, es = (int64_t)kiln_dtype_size(x->dtype);
        at.which = 3;
        kiln_tensor *sums = kiln__run(&kiln_op_batch_norm_backward, 5, in, kiln__new(2, sshape, x->dtype, x->device), &at);
        if (!sums) return;
        if (n->needs_grad[1]) gin[1] = kiln__view(sums, 1, &c, &es, sums->offset + c * es);
        if (n->needs_grad[2]) gin[2] = kiln__view(sums, 1, &c, &es, sums->offset);
        if (at.training) in[5] = sums;
    }
    if (n->needs_grad[0]) {
        at.which = 0;
        gin[0] = kiln__run(&kiln_op_batch_norm_backward, 6, in, kiln__new_like(x), &at);
    }
}

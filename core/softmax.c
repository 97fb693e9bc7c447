/* softmax and log_softmax over any axis (axis 1 of NCHW is the per-pixel softmax
 * over channels), each with a dedicated backward kernel that reads the saved
 * output. A softmax over an axis of one unit is refused: it is always 1. */
#include "internal.h"
#include "op_attrs.h"
#include "../kernels/cpu/tensor_ops.h"

static void softmax_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);
static void log_softmax_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

#define AXIS_ATTRS sizeof(kiln_axis_attrs)
/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_softmax(const kiln_op_call *call);
kiln_status kiln_cuda_log_softmax(const kiln_op_call *call);
kiln_status kiln_cuda_softmax_backward(const kiln_op_call *call);
kiln_status kiln_cuda_log_softmax_backward(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_softmax = {
    .name = "softmax",
    .cpu = kiln_cpu_softmax,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_softmax),
    .backward = softmax_bw,
    .attrs_size = AXIS_ATTRS};
KILN_REGISTER const kiln_op_def kiln_op_log_softmax = {
    .name = "log_softmax",
    .cpu = kiln_cpu_log_softmax,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_log_softmax),
    .backward = log_softmax_bw,
    .attrs_size = AXIS_ATTRS};
KILN_REGISTER const kiln_op_def kiln_op_softmax_backward = {
    .name = "softmax_backward",
    .cpu = kiln_cpu_softmax_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_softmax_backward),
    .not_differentiable = true,
    .attrs_size = AXIS_ATTRS};
KILN_REGISTER const kiln_op_def kiln_op_log_softmax_backward = {
    .name = "log_softmax_backward",
    .cpu = kiln_cpu_log_softmax_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_log_softmax_backward),
    .not_differentiable = true,
    .attrs_size = AXIS_ATTRS};

static kiln_tensor *run(const kiln_op_def *op, kiln_tensor *a, int axis) {
    int ax;
    if (!kiln__check_float_inputs(op->name, 1, &a) || !kiln__axis(op->name, axis, a->ndim ? a->ndim : 1, &ax)) return NULL;
    if (a->ndim == 0 || a->shape[ax] == 1) {
        char b[128];
        kiln__error(KILN_STATUS_SHAPE,
                    "%s: axis %d of %s has size 1; a softmax over one unit is always 1 (log_softmax always 0), so "
                    "its gradient is zero and nothing learns. For a binary output use one logit with kiln_sigmoid "
                    "and the bce_with_logits loss; for C classes give the axis C units",
                    op->name, axis, kiln__shape_str(a->ndim, a->shape, b, sizeof b));
        return NULL;
    }
    kiln_axis_attrs at = {ax};
    return kiln__run(op, 1, &a, kiln__new_like(a), &at);
}

kiln_tensor *kiln_softmax(kiln_tensor *a, int axis) { return run(&kiln_op_softmax, a, axis); }
kiln_tensor *kiln_log_softmax(kiln_tensor *a, int axis) { return run(&kiln_op_log_softmax, a, axis); }

static void backward(kiln_node *n, kiln_tensor *g, kiln_tensor **gin, const kiln_op_def *fwd,
                     const kiln_op_def *bwd) {
    kiln_tensor *y = n->output;
    if (!y) { /* the output was freed early: recompute it (backward runs without grad) */
        kiln_tensor *x = n->inputs[0];
        y = kiln__run(fwd, 1, &x, kiln__new_like(x), n->attrs);
        if (!y) return;
    }
    kiln_tensor *in[2] = {g, y};
    gin[0] = kiln__run(bwd, 2, in, kiln__new_like(n->inputs[0]), n->attrs);
}

static void softmax_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    backward(n, g, gin, &kiln_op_softmax, &kiln_op_softmax_backward);
}
static void log_softmax_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    backward(n, g, gin, &kiln_op_log_softmax, &kiln_op_log_softmax_backward);
}

/* max and argmax over one axis. argmax scans (not differentiable); max gathers x
 * at those indices, so the gradient of max goes to the first maximal element (as
 * torch.max(dim)) through a scatter that reads the same indices, kept as input 1. */
#include "internal.h"
#include "op_attrs.h"
#include "../kernels/cpu/tensor_ops.h"

static void max_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_argmax(const kiln_op_call *call);
kiln_status kiln_cuda_max(const kiln_op_call *call);
kiln_status kiln_cuda_max_backward(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_argmax = {
    .name = "argmax",
    .cpu = kiln_cpu_argmax,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_argmax),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_axis_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_max = {
    .name = "max",
    .cpu = kiln_cpu_max,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_max),
    .backward = max_bw,
    .attrs_size = sizeof(kiln_axis_attrs)};
KILN_REGISTER const kiln_op_def kiln_op_max_backward = {
    .name = "max_backward",
    .cpu = kiln_cpu_max_backward,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_max_backward),
    .not_differentiable = true,
    .attrs_size = sizeof(kiln_axis_attrs)};

/* Validates and returns the argmax indices in the keepdim shape; *src is a, or a
 * 1-element view of a 0-d a (whose only axis is then axis 0). */
static kiln_tensor *argmax_keepdim(const char *op, kiln_tensor *a, int axis, kiln_tensor **src, int *ax) {
    /* a 0-d tensor has one axis-like position, reachable as 0 or -1 (as in torch) */
    if (!kiln__check_float_inputs(op, 1, &a) || !kiln__axis(op, axis, a->ndim ? a->ndim : 1, ax)) return NULL;
    if (a->ndim == 0) {
        a = kiln_reshape(a, 1, (int64_t[]){1});
        if (!a) return NULL;
        *ax = 0;
    }
    *src = a;
    if (a->shape[*ax] == 0) {
        char b[128];
        kiln__error(KILN_STATUS_SHAPE, "%s: axis %d of %s is empty; a maximum of no elements does not exist (reduce "
                    "over a non-empty axis)", op, axis, kiln__shape_str(a->ndim, a->shape, b, sizeof b));
        return NULL;
    }
    int64_t ks[KILN_MAX_DIMS];
    for (int i = 0; i < a->ndim; i++) ks[i] = i == *ax ? 1 : a->shape[i];
    kiln_axis_attrs at = {*ax};
    return kiln__run(&kiln_op_argmax, 1, &a, kiln__new(a->ndim, ks, KILN_I64, a->device), &at);
}

/* keepdim shape -> the shape the caller asked for */
static kiln_tensor *finish(kiln_tensor *r, const kiln_tensor *orig, int ax, bool keepdim) {
    if (!r) return NULL;
    if (orig->ndim == 0) return kiln_reshape(r, 0, NULL);
    return keepdim ? r : kiln_squeeze(r, ax);
}

kiln_tensor *kiln_argmax(kiln_tensor *a, int axis, bool keepdim) {
    kiln_tensor *src;
    int ax;
    kiln_tensor *idx = argmax_keepdim("argmax", a, axis, &src, &ax);
    return finish(idx, a, ax, keepdim);
}

kiln_tensor *kiln_max(kiln_tensor *a, int axis, bool keepdim) {
    kiln_tensor *src;
    int ax;
    kiln_tensor *idx = argmax_keepdim("max", a, axis, &src, &ax);
    if (!idx) return NULL;
    kiln_tensor *in[2] = {src, idx};
    kiln_axis_attrs at = {ax};
    kiln_tensor *v = kiln__run(&kiln_op_max, 2, in, kiln__new(idx->ndim, idx->shape, src->dtype, src->device), &at);
    return finish(v, a, ax, keepdim);
}

static void max_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    kiln_tensor *in[2] = {g, n->inputs[1]};
    gin[0] = kiln__run(&kiln_op_max_backward, 2, in, kiln__new_like(n->inputs[0]), n->attrs);
}

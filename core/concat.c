/* concat: joins n tensors along an axis (all other sizes equal, one dtype, one
 * device). The backward hands each input its slice of the gradient, as a view. */
#include "internal.h"
#include "op_attrs.h"
#include "../kernels/cpu/tensor_ops.h"

static void concat_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin);

/* the CUDA kernels (kernels/cuda/), linked in CUDA builds */
kiln_status kiln_cuda_concat(const kiln_op_call *call);
KILN_REGISTER const kiln_op_def kiln_op_concat = {
    .name = "concat",
    .cpu = kiln_cpu_concat,
    .cuda = KILN_CUDA_KERNEL(kiln_cuda_concat),
    .backward = concat_bw,
    .attrs_size = sizeof(kiln_axis_attrs)};

kiln_tensor *kiln_concat(int n, kiln_tensor *const *ts, int axis) {
    if (n <= 0 || !ts) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "concat: %d tensors given (list %s); pass at least one", n,
                    ts ? "set" : "NULL");
        return NULL;
    }
    if (!kiln__check_inputs("concat", n, ts)) return NULL;
    kiln_tensor *t0 = ts[0];
    char b1[128], b2[128];
    if (t0->ndim == 0) {
        kiln__error(KILN_STATUS_SHAPE, "concat: input 0 is 0-d; a scalar has no axis to join along (unsqueeze it "
                    "to shape [1] first)");
        return NULL;
    }
    int ax;
    if (!kiln__axis("concat", axis, t0->ndim, &ax)) return NULL;
    int64_t shape[KILN_MAX_DIMS];
    for (int i = 0; i < t0->ndim; i++) shape[i] = t0->shape[i];
    shape[ax] = 0;
    for (int k = 0; k < n; k++) {
        kiln_tensor *t = ts[k];
        if (t->dtype != t0->dtype) {
            kiln__error(KILN_STATUS_DTYPE, "concat: input 0 is %s but input %d is %s; cast with kiln_tensor_cast() "
                        "so all inputs share one dtype", kiln_dtype_name(t0->dtype), k, kiln_dtype_name(t->dtype));
            return NULL;
        }
        bool ok = t->ndim == t0->ndim;
        for (int i = 0; ok && i < t0->ndim; i++) ok = i == ax || t->shape[i] == t0->shape[i];
        if (!ok) {
            kiln__error(KILN_STATUS_SHAPE, "concat: input 0 is %s but input %d is %s; every size but that of the "
                        "concat axis %d must match", kiln__shape_str(t0->ndim, t0->shape, b1, sizeof b1), k,
                        kiln__shape_str(t->ndim, t->shape, b2, sizeof b2), axis);
            return NULL;
        }
        if (!kiln__add_i64(shape[ax], t->shape[ax], &shape[ax])) {
            kiln__error(KILN_STATUS_INVALID_ARGUMENT, "concat: the sizes along axis %d add up past 2^63", axis);
            return NULL;
        }
    }
    if (!kiln__check_extent("concat", t0->ndim, shape, kiln_dtype_size(t0->dtype))) return NULL;
    kiln_axis_attrs at = {ax};
    return kiln__run(&kiln_op_concat, n, ts, kiln__new(t0->ndim, shape, t0->dtype, t0->device), &at);
}

static void concat_bw(kiln_node *n, kiln_tensor *g, kiln_tensor **gin) {
    const kiln_axis_attrs *at = n->attrs;
    int64_t pos = 0;
    for (int k = 0; k < n->nin; k++) {
        int64_t len = n->inputs[k]->shape[at->axis];
        if (n->needs_grad[k]) gin[k] = kiln_slice(g, at->axis, pos, pos + len, 1);
        pos += len;
    }
}

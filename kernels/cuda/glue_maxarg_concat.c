/* kiln_cuda_<op> for max/argmax (core/maxarg.c) and concat (core/concat.c): the registry
 * calls turned into descriptors (kernels/cuda/launch_maxarg_concat.h), operand orders as
 * the CPU kernels' (kernels/cpu/tensor_ops.h). */
#include "glue.h"
#include "launch_maxarg_concat.h"

/* ---- max / argmax ------------------------------------------------------------------ */
kiln_status kiln_cuda_argmax(const kiln_op_call *call) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]);
    return kiln_cuda_launch_argmax(&o, &x, at->axis, stream_of(call->out));
}

kiln_status kiln_cuda_max(const kiln_op_call *call) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]), idx = desc(call->in[1]);
    return kiln_cuda_launch_max(&o, &x, &idx, at->axis, stream_of(call->out));
}

kiln_status kiln_cuda_max_backward(const kiln_op_call *call) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), g = desc(call->in[0]), idx = desc(call->in[1]);
    return kiln_cuda_launch_max_backward(&o, &g, &idx, at->axis, stream_of(call->out));
}

/* ---- concat: input i goes to its window [pos, pos + n_i) of the axis ------------------ */
kiln_status kiln_cuda_concat(const kiln_op_call *call) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out);
    size_t es = kiln_dtype_size(call->out->dtype);
    int64_t pos = 0;
    for (int i = 0; i < call->nin; i++) {
        kiln_cuda_tensor in = desc(call->in[i]), win = o;
        int64_t n = in.shape[at->axis];
        win.shape[at->axis] = n;
        win.data = (char *)o.data + pos * o.strides[at->axis] * (int64_t)es;
        pos += n;
        if (n == 0 || kiln_tensor_numel(call->in[i]) == 0) continue;
        kiln_status s = kiln_cuda_launch_concat_part(&win, &in, stream_of(call->out));
        if (s != KILN_STATUS_OK) return s;
    }
    return KILN_STATUS_OK;
}

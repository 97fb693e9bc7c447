/* kiln_cuda_<op> for the softmax family (core/softmax.c): the registry calls turned into
 * descriptors (kernels/cuda/launch_softmax.h), operand orders as the CPU kernels'
 * (kernels/cpu/tensor_ops.h). */
#include "glue.h"
#include "launch_softmax.h"

static kiln_status softmax_fwd(const kiln_op_call *call, int log_) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]);
    return kiln_cuda_launch_softmax(&o, &x, at->axis, log_, stream_of(call->out));
}

static kiln_status softmax_bwd(const kiln_op_call *call, int log_) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), g = desc(call->in[0]), y = desc(call->in[1]);
    return kiln_cuda_launch_softmax_backward(&o, &g, &y, at->axis, log_, stream_of(call->out));
}

kiln_status kiln_cuda_softmax(const kiln_op_call *call) { return softmax_fwd(call, 0); }
kiln_status kiln_cuda_log_softmax(const kiln_op_call *call) { return softmax_fwd(call, 1); }
kiln_status kiln_cuda_softmax_backward(const kiln_op_call *call) { return softmax_bwd(call, 0); }
kiln_status kiln_cuda_log_softmax_backward(const kiln_op_call *call) { return softmax_bwd(call, 1); }

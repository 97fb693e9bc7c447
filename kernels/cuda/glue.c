/* kiln_cuda_<op> for the core ops: element-wise, copies, fills, random, sums. */
#include "glue.h"

kiln_status kiln_cuda_unary(const kiln_op_call *call) {
    const kiln_unary_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]);
    return kiln_cuda_launch_unary(&o, &x, at->kind, at->a, at->b, stream_of(call->out));
}

kiln_status kiln_cuda_unary_backward(const kiln_op_call *call) {
    const kiln_unary_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), g = desc(call->in[0]), x = desc(call->in[1]), y = desc(call->in[2]);
    return kiln_cuda_launch_unary_backward(&o, &g, &x, &y, at->kind, at->a, at->b, stream_of(call->out));
}

kiln_status kiln_cuda_binary(const kiln_op_call *call) {
    const kiln_binary_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), a = desc(call->in[0]), b = desc(call->in[1]);
    return kiln_cuda_launch_binary(&o, &a, &b, at->kind, stream_of(call->out));
}

kiln_status kiln_cuda_binary_backward(const kiln_op_call *call) {
    const kiln_binary_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), g = desc(call->in[0]), a = desc(call->in[1]), b = desc(call->in[2]);
    return kiln_cuda_launch_binary_backward(&o, &g, &a, &b, at->kind, at->side, stream_of(call->out));
}

kiln_status kiln_cuda_where(const kiln_op_call *call) {
    kiln_cuda_tensor o = desc(call->out), c = desc(call->in[0]), a = desc(call->in[1]), b = desc(call->in[2]);
    return kiln_cuda_launch_where(&o, &c, &a, &b, stream_of(call->out));
}

kiln_status kiln_cuda_copy(const kiln_op_call *call) {
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]);
    return kiln_cuda_launch_copy(&o, &x, stream_of(call->out));
}

kiln_status kiln_cuda_fill(const kiln_op_call *call) {
    const kiln_fill_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out);
    return kiln_cuda_launch_fill(&o, at->value, stream_of(call->out));
}

kiln_status kiln_cuda_rand(const kiln_op_call *call) {
    const kiln_rand_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out);
    return kiln_cuda_launch_rand(&o, at->seed, at->offset, at->normal, at->a, at->b, stream_of(call->out));
}

kiln_status kiln_cuda_sum(const kiln_op_call *call) {
    const kiln_reduce_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]);
    size_t need = kiln_cuda_sum_scratch_bytes(&o, &x, at->mask);
    kiln_tensor *scratch = NULL;
    if (need) {
        /* from the device pool: freed at once, reused in stream order by later ops */
        int64_t n = (int64_t)need;
        scratch = kiln__new(1, &n, KILN_U8, call->out->device);
        if (!scratch) return kiln_last_status();
    }
    kiln_status s =
        kiln_cuda_launch_sum(&o, &x, at->mask, scratch ? kiln__ptr(scratch) : NULL, stream_of(call->out));
    if (scratch) kiln_tensor_free(scratch);
    return s;
}

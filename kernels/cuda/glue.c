/* kiln_cuda_<op> for the core ops: element-wise, copies, fills, random, sums. */
#include "glue.h"

KILN_CUDA_GLUE(unary) {
    const kiln_unary_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]);
    return KILN_CU(cuda_launch_unary)(&o, &x, at->kind, at->a, at->b, stream_of(call->out));
}

KILN_CUDA_GLUE(unary_backward) {
    const kiln_unary_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), g = desc(call->in[0]), x = desc(call->in[1]), y = desc(call->in[2]);
    return KILN_CU(cuda_launch_unary_backward)(&o, &g, &x, &y, at->kind, at->a, at->b, stream_of(call->out));
}

KILN_CUDA_GLUE(binary) {
    const kiln_binary_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), a = desc(call->in[0]), b = desc(call->in[1]);
    return KILN_CU(cuda_launch_binary)(&o, &a, &b, at->kind, stream_of(call->out));
}

KILN_CUDA_GLUE(binary_backward) {
    const kiln_binary_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), g = desc(call->in[0]), a = desc(call->in[1]), b = desc(call->in[2]);
    return KILN_CU(cuda_launch_binary_backward)(&o, &g, &a, &b, at->kind, at->side, stream_of(call->out));
}

KILN_CUDA_GLUE(where) {
    kiln_cuda_tensor o = desc(call->out), c = desc(call->in[0]), a = desc(call->in[1]), b = desc(call->in[2]);
    return KILN_CU(cuda_launch_where)(&o, &c, &a, &b, stream_of(call->out));
}

KILN_CUDA_GLUE(copy) {
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]);
    return KILN_CU(cuda_launch_copy)(&o, &x, stream_of(call->out));
}

KILN_CUDA_GLUE(fill) {
    const kiln_fill_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out);
    return KILN_CU(cuda_launch_fill)(&o, at->value, stream_of(call->out));
}

KILN_CUDA_GLUE(rand) {
    const kiln_rand_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out);
    return KILN_CU(cuda_launch_rand)(&o, at->seed, at->offset, at->normal, at->a, at->b, stream_of(call->out));
}

KILN_CUDA_GLUE(sum) {
    const kiln_reduce_attrs *at = call->attrs;
    kiln_cuda_tensor o = desc(call->out), x = desc(call->in[0]);
    size_t need = KILN_CU(cuda_sum_scratch_bytes)(&o, &x, at->mask);
    kiln_tensor *scratch = NULL;
    if (need) {
        /* from the device pool: freed at once, reused in stream order by later ops */
        int64_t n = (int64_t)need;
        scratch = kiln__new(1, &n, KILN_U8, call->out->device);
        if (!scratch) return kiln_last_status();
    }
    kiln_status s =
        KILN_CU(cuda_launch_sum)(&o, &x, at->mask, scratch ? kiln__ptr(scratch) : NULL, stream_of(call->out));
    if (scratch) kiln_tensor_free(scratch);
    return s;
}

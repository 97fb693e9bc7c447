/* kiln_cuda_<op>: the registry's CUDA kernels (core/ops/cuda.def). Each turns the
 * call's tensors into kiln_cuda_tensor descriptors and calls the op's launcher on
 * the device's stream. Built twice: into libkiln for CUDA builds, and with
 * KILN_CUDA_EMULATION into the emulation test library (symbols kiln_emu_cuda_<op>),
 * where the same code runs on CPU tensors and host memory. */
#include "../../core/internal.h"
#include "../../core/op_attrs.h"
#include "launch.h"

#ifndef KILN_CUDA_EMULATION
#include "../../core/cuda_device.h"
#endif

static kiln_cuda_tensor desc(const kiln_tensor *t) {
    kiln_cuda_tensor d;
    memset(&d, 0, sizeof d);
    d.data = kiln__ptr(t);
    d.dtype = t->dtype;
    d.ndim = t->ndim;
    int64_t es = (int64_t)kiln_dtype_size(t->dtype);
    for (int i = 0; i < t->ndim; i++) {
        d.shape[i] = t->shape[i];
        d.strides[i] = t->strides[i] / es;
    }
    return d;
}

static void *stream_of(const kiln_tensor *t) {
#ifdef KILN_CUDA_EMULATION
    (void)t;
    return NULL;
#else
    return kiln__cuda_stream(t->device.index);
#endif
}

#define KILN_CUDA_GLUE(name) kiln_status KILN_CU(cuda_##name)(const kiln_op_call *call)

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

/* kiln_cuda_<op> for the pooling and upsampling ops (layers/pooling.c, layers/upsample.c), forward
 * and backward. Outputs are the contiguous tensors the front-ends allocate; inputs
 * keep their strides (the kernels read any). Also built into the emulation library. */
#include "glue.h"
#include "launch_layers.h"

kiln_status kiln_cuda_max_pool2d(const kiln_op_call *call) {
    kiln_cuda_tensor y = desc(call->out), x = desc(call->in[0]);
    return kiln_cuda_launch_max_pool2d(&y, &x, call->attrs, stream_of(call->out));
}

kiln_status kiln_cuda_max_pool2d_backward(const kiln_op_call *call) {
    /* in: gy, x, y */
    kiln_cuda_tensor dx = desc(call->out), gy = desc(call->in[0]), x = desc(call->in[1]);
    /* the per-window argmax, from the device pool: freed at once, reused in stream order */
    int64_t need = (int64_t)kiln_cuda_max_pool2d_scratch_bytes(&gy);
    kiln_tensor *scratch = NULL;
    if (need) {
        scratch = kiln__new(1, &need, KILN_U8, call->out->device);
        if (!scratch) return kiln_last_status();
    }
    kiln_status s = kiln_cuda_launch_max_pool2d_backward(&dx, &gy, &x, call->attrs,
                                                         scratch ? kiln__ptr(scratch) : NULL, stream_of(call->out));
    if (scratch) kiln_tensor_free(scratch);
    return s;
}

kiln_status kiln_cuda_avg_pool2d(const kiln_op_call *call) {
    kiln_cuda_tensor y = desc(call->out), x = desc(call->in[0]);
    return kiln_cuda_launch_avg_pool2d(&y, &x, call->attrs, stream_of(call->out));
}

kiln_status kiln_cuda_avg_pool2d_backward(const kiln_op_call *call) {
    kiln_cuda_tensor dx = desc(call->out), gy = desc(call->in[0]);
    return kiln_cuda_launch_avg_pool2d_backward(&dx, &gy, call->attrs, stream_of(call->out));
}

kiln_status kiln_cuda_upsample_nearest2d(const kiln_op_call *call) {
    kiln_cuda_tensor y = desc(call->out), x = desc(call->in[0]);
    return kiln_cuda_launch_upsample_nearest2d(&y, &x, call->attrs, stream_of(call->out));
}

kiln_status kiln_cuda_upsample_nearest2d_backward(const kiln_op_call *call) {
    kiln_cuda_tensor dx = desc(call->out), gy = desc(call->in[0]);
    return kiln_cuda_launch_upsample_nearest2d_backward(&dx, &gy, call->attrs, stream_of(call->out));
}

kiln_status kiln_cuda_upsample_bilinear2d(const kiln_op_call *call) {
    kiln_cuda_tensor y = desc(call->out), x = desc(call->in[0]);
    return kiln_cuda_launch_upsample_bilinear2d(&y, &x, call->attrs, stream_of(call->out));
}

kiln_status kiln_cuda_upsample_bilinear2d_backward(const kiln_op_call *call) {
    kiln_cuda_tensor dx = desc(call->out), gy = desc(call->in[0]);
    return kiln_cuda_launch_upsample_bilinear2d_backward(&dx, &gy, call->attrs, stream_of(call->out));
}

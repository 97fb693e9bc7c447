/* CPU concat: each input is copied into its window of the output along the axis,
 * through the strided iterator, so any input layout (views, expanded) works. The
 * copy moves raw elements: every dtype concatenates. */
#include "tensor_ops.h"

kiln_status kiln_cpu_concat(const kiln_op_call *call) {
    const kiln_axis_attrs *at = call->attrs;
    kiln_tensor *out = call->out;
    size_t es = kiln_dtype_size(out->dtype);
    int64_t pos = 0;
    for (int i = 0; i < call->nin; i++) {
        kiln_tensor *in = call->in[i];
        int64_t n = in->shape[at->axis];
        if (n == 0 || kiln_tensor_numel(in) == 0) {
            pos += n;
            continue;
        }
        kiln_tensor win = *out; /* header copy: the output's window for input i */
        win.shape[at->axis] = n;
        win.offset += pos * out->strides[at->axis];
        pos += n;
        kiln_tensor *ops[2] = {&win, in};
        kiln_iter it;
        kiln_iter_init(&it, 2, ops);
        if (kiln_iter_copy_rows(&it, es)) continue;
        switch (es) {
        case 1: KILN_ITER_FOR_EACH(&it, *(uint8_t *)p[0] = *(const uint8_t *)p[1]); break;
        case 2: KILN_ITER_FOR_EACH(&it, *(uint16_t *)p[0] = *(const uint16_t *)p[1]); break;
        case 4: KILN_ITER_FOR_EACH(&it, *(uint32_t *)p[0] = *(const uint32_t *)p[1]); break;
        default: KILN_ITER_FOR_EACH(&it, *(uint64_t *)p[0] = *(const uint64_t *)p[1]); break;
        }
    }
    return KILN_STATUS_OK;
}

/* CPU kernel of dropout: element i in C order is kept when the Philox draw for
 * counter offset + i is >= p and then scaled by 1/(1-p), so the mask depends only
 * on (seed, offset, i) and is the same on every device and for the gradient. */
#include "layers.h"
#include "../philox.h"
#include "iter.h"

kiln_status kiln_cpu_dropout(const kiln_op_call *call) {
    const kiln_dropout_attrs *at = call->attrs;
    kiln_tensor *ops[2] = {call->out, call->in[0]};
    kiln_iter it;
    kiln_iter_init(&it, 2, ops);
    int64_t rows = kiln_iter_rows(&it), inner = it.shape[it.ndim - 1];
    int64_t so = it.strides[0][it.ndim - 1], si = it.strides[1][it.ndim - 1];
    double scale = at->p < 1 ? 1.0 / (1.0 - at->p) : 0.0;
    bool f32 = call->out->dtype == KILN_F32;
    float scalef = (float)scale;
#pragma omp parallel for schedule(static) if (rows * inner > 32768 && rows > 1)
    for (int64_t r = 0; r < rows; r++) {
        char *p[KILN_ITER_MAX_OPS];
        kiln_iter_row(&it, r, p);
        for (int64_t i = 0; i < inner; i++, p[0] += so, p[1] += si) {
            uint64_t ctr = at->offset + (uint64_t)(r * inner + i);
            bool keep = kiln_philox_sample(at->seed, ctr, 0, 0.0, 1.0) >= at->p;
            if (f32) *(float *)p[0] = keep ? *(const float *)p[1] * scalef : 0.0f;
            else *(double *)p[0] = keep ? *(const double *)p[1] * scale : 0.0;
        }
    }
    return KILN_STATUS_OK;
}

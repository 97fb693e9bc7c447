/* Iterator setup: broadcasting strides and merging of contiguous axes. */
#include "iter.h"

void kiln_iter_broadcast_strides(const kiln_tensor *t, int ndim, const int64_t *shape, int64_t *strides) {
    int off = ndim - t->ndim;
    for (int i = 0; i < ndim; i++) {
        int j = i - off;
        strides[i] = (j < 0 || (t->shape[j] == 1 && shape[i] != 1)) ? 0 : t->strides[j];
    }
}

void kiln_iter_init(kiln_iter *it, int nops, kiln_tensor *const *ops) {
    const kiln_tensor *out = ops[0];
    int nd = out->ndim;
    int64_t shape[KILN_MAX_DIMS] = {0}, strides[KILN_ITER_MAX_OPS][KILN_MAX_DIMS];
    for (int i = 0; i < nd; i++) shape[i] = out->shape[i];
    for (int k = 0; k < nops; k++) kiln_iter_broadcast_strides(ops[k], nd, shape, strides[k]);
    it->nops = nops;
    for (int k = 0; k < nops; k++) it->base[k] = kiln__ptr(ops[k]);
    if (kiln__numel(nd, shape) == 0) {
        /* one empty row, however large the other axes: [2^62, 0] must not walk 2^62 rows */
        it->ndim = 1;
        it->shape[0] = 0;
        for (int k = 0; k < nops; k++) it->strides[k][0] = 0;
        return;
    }
    /* Drop size-1 axes, then merge axis i into i+1 where every operand allows it. */
    int n = 0;
    for (int i = 0; i < nd; i++) {
        if (shape[i] == 1) continue;
        if (n > 0) {
            bool merge = true;
            for (int k = 0; k < nops; k++)
                if (it->strides[k][n - 1] != strides[k][i] * shape[i]) merge = false;
            if (merge) {
                it->shape[n - 1] *= shape[i];
                for (int k = 0; k < nops; k++) it->strides[k][n - 1] = strides[k][i];
                continue;
            }
        }
        it->shape[n] = shape[i];
        for (int k = 0; k < nops; k++) it->strides[k][n] = strides[k][i];
        n++;
    }
    if (n == 0) {
        it->shape[0] = kiln__numel(nd, shape); /* 1, or 0 for an empty tensor */
        for (int k = 0; k < nops; k++) it->strides[k][0] = 0;
        n = 1;
    }
    it->ndim = n;
}

/* CPU eigen-decomposition through LAPACKE's divide-and-conquer syevd, which is
 * faster than syev for the full set of eigenvectors. */
#include "linalg.h"

#include <lapacke.h>
#include <stdlib.h>

kiln_status kiln_cpu_eigh(const kiln_op_call *call) {
    kiln_tensor *a = call->in[0], *out = call->out;
    int64_t n = a->shape[0];
    kiln_tensor *vec = kiln__view(out, 2, (int64_t[]){n, n}, (int64_t[]){out->strides[0], out->strides[1]},
                                  out->offset + out->strides[0]);
    if (!vec) return kiln_last_status();
    /* LAPACK overwrites its input with the eigenvectors: copy a into the output rows. */
    kiln_status st = kiln_tensor_copy_(vec, a);
    lapack_int info = 0;
    if (st == KILN_STATUS_OK) {
        if (a->dtype == KILN_F32) {
            float *v = (float *)kiln__ptr(vec), *w = (float *)kiln__ptr(out);
            info = LAPACKE_ssyevd(LAPACK_ROW_MAJOR, 'V', 'L', (lapack_int)n, v, (lapack_int)n, w);
        } else {
            double *v = (double *)kiln__ptr(vec), *w = (double *)kiln__ptr(out);
            info = LAPACKE_dsyevd(LAPACK_ROW_MAJOR, 'V', 'L', (lapack_int)n, v, (lapack_int)n, w);
        }
    }
    kiln_tensor_free(vec);
    if (st != KILN_STATUS_OK) return st;
    if (info < 0) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "eigh: LAPACK rejected argument %d", (int)-info);
    if (info > 0)
        return kiln__error(KILN_STATUS_BACKEND, "eigh: the eigen-decomposition did not converge (%d off-diagonal "
                           "elements); is the input finite?", (int)info);
    return KILN_STATUS_OK;
}

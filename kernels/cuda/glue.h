/* Shared by the host glue files (kernels/cuda/glue*.c, blas.c): kiln_cuda_<op> are the
 * registry's CUDA kernels (named in each op definition). Each turns the call's tensors into
 * kiln_cuda_tensor descriptors and calls the op's launcher on the device's stream.
 * Every glue*.c file is built twice: into libkiln for CUDA builds, and with
 * KILN_CUDA_EMULATION into the emulation test library (whose build renames its
 * symbols kiln_emu_cuda_<op>), where the same code runs on CPU tensors and host memory. */
#ifndef KILN_CUDA_GLUE_H
#define KILN_CUDA_GLUE_H

#include "../../core/internal.h"
#include "../../core/op_attrs.h"
#include "launch.h"

#ifndef KILN_CUDA_EMULATION
#include "../../core/cuda_device.h"
#endif

static inline kiln_cuda_tensor desc(const kiln_tensor *t) {
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

static inline void *stream_of(const kiln_tensor *t) {
#ifdef KILN_CUDA_EMULATION
    (void)t;
    return NULL;
#else
    return kiln__cuda_stream(t->device.index);
#endif
}

/* glue helpers (kernels/cuda/glue_linear.c, also used by blas.c): whether t's leading
 * axes fold into one row stride (*rs, elements; any value when there is one row); a
 * contiguous copy of t made on t's stream, from the pool (the caller frees it). */
bool kiln_cuda_fold_rows(const kiln_tensor *t, int64_t *rs);
kiln_tensor *kiln_cuda_contiguous_scratch(const kiln_tensor *t);

#endif

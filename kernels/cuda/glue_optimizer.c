/* The host entry points optim/optimizer.c and optim/clip.c call for CUDA parameters:
 * fused optimizer updates and clipping over one span of device memory (host memory
 * in the emulation library), on the device's stream. */
#include "glue.h"
#include "launch_optimizer.h"

static void *dev_stream(kiln_device dev) {
#ifdef KILN_CUDA_EMULATION
    (void)dev;
    return NULL;
#else
    return kiln__cuda_stream(dev.index);
#endif
}

kiln_status kiln_cuda_sgd_update(kiln_device dev, kiln_dtype dt, void *p, const void *g, void *buf, int64_t n,
                                 const kiln_sgd_hparams *h) {
    return kiln_cuda_launch_sgd(dt, p, g, buf, n, h, dev_stream(dev));
}

kiln_status kiln_cuda_adam_update(kiln_device dev, kiln_dtype dt, void *p, const void *g, void *m, void *v,
                                  void *vmax, int64_t n, const kiln_adam_hparams *h) {
    return kiln_cuda_launch_adam(dt, p, g, m, v, vmax, n, h, dev_stream(dev));
}

kiln_status kiln_cuda_norm_accumulate(kiln_device dev, kiln_dtype dt, const void *g, int64_t n, double norm_type,
                                      double *out) {
    /* the partials and, after them, the result: one pool block */
    int64_t parts = (int64_t)(kiln_cuda_norm_scratch_bytes(n) / sizeof(double)) + 1;
    kiln_tensor *scratch = kiln__new(1, &parts, KILN_F64, dev);
    if (!scratch) return kiln_last_status();
    double *sp = (double *)kiln__ptr(scratch);
    kiln_status s = kiln_cuda_launch_norm(dt, g, n, norm_type, sp, sp + parts - 1, dev_stream(dev));
    if (s == KILN_STATUS_OK) s = kiln__memcpy(out, KILN_CPU, sp + parts - 1, dev, sizeof(double));
    kiln_tensor_free(scratch);
    return s;
}

kiln_status kiln_cuda_scale(kiln_device dev, kiln_dtype dt, void *g, int64_t n, double scale) {
    return kiln_cuda_launch_scale(dt, g, n, scale, dev_stream(dev));
}

kiln_status kiln_cuda_clamp(kiln_device dev, kiln_dtype dt, void *g, int64_t n, double lo, double hi) {
    return kiln_cuda_launch_clamp(dt, g, n, lo, hi, dev_stream(dev));
}

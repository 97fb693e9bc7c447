/* The CUDA side of the device layer (core/cuda_device.c); all but the sync-debug
 * switch is present in CUDA builds only. */
#ifndef KILN_CUDA_DEVICE_H
#define KILN_CUDA_DEVICE_H

#include "internal.h"

#ifdef KILN_HAVE_CUDA
int kiln__cuda_device_count(void);
/* True when device index exists and its driver answers; else records NO_DEVICE. */
bool kiln__cuda_check_device(int index);
kiln_pool *kiln__cuda_pool(int index);
/* kiln's stream on device index (made on first use); also makes index the current device. */
void *kiln__cuda_stream(int index);
kiln_status kiln__cuda_memcpy(void *dst, kiln_device ddev, const void *src, kiln_device sdev, size_t n);
kiln_status kiln__cuda_synchronize(int index);
void kiln__cuda_shutdown(void);
/* Turns a failed CUDA runtime status into a kiln error naming statement, file and line. */
kiln_status kiln__cuda_fail(int err, const char *stmt, const char *file, int line);
#define KILN_CUDA_CHECK(stmt)                                                              \
    do {                                                                                   \
        cudaError_t kiln_err_ = (stmt);                                                    \
        if (kiln_err_ != cudaSuccess) return kiln__cuda_fail(kiln_err_, #stmt, __FILE__, __LINE__); \
    } while (0)
#endif

void kiln__shutdown_pools(void);
/* Sync-debug mode: KILN_CUDA_SYNC=1 or kiln_cuda_set_sync_debug (every build). */
bool kiln__cuda_sync_debug(void);

#endif

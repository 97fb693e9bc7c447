/* kiln CUDA controls. Devices are chosen per tensor (KILN_CUDA(i)) or by default
 * through KILN_DEVICE=cpu|cuda|cuda:N (kiln_default_device, core.h). Each device has
 * one stream that all of kiln's kernels and copies run on; kiln_synchronize waits
 * for it. These calls exist in every build; without CUDA they report NO_DEVICE. */
#ifndef KILN_CUDA_H
#define KILN_CUDA_H

#include "core.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Sync-debug mode: synchronise the stream after every kernel launch, so an error a
 * kernel raises while it runs is reported by the op that launched it (with file and
 * line) instead of by a later call. Slow; for debugging. Also on when the
 * environment has KILN_CUDA_SYNC=1 at the first launch. */
KILN_API void kiln_cuda_set_sync_debug(bool on);
KILN_API bool kiln_cuda_sync_debug(void);

/* kiln's cudaStream_t on a CUDA device (as void *), for interop with other CUDA
 * code; NULL with a NO_DEVICE error when the device is absent. */
KILN_API void *kiln_cuda_stream(kiln_device dev);

/* Math mode for float32 matrix products and convolutions on CUDA. Off by default:
 * float32 means float32 (as torch.backends.cuda.matmul.allow_tf32 = False). On lets
 * cuBLAS and cuDNN use TF32 tensor cores (10-bit mantissa inputs, float32
 * accumulation): several times faster on Ampere and later, at about 1e-3 relative
 * error. The CPU backend ignores it. */
KILN_API void kiln_set_tf32(bool on);
KILN_API bool kiln_tf32(void);

/* Deterministic mode: kernels that would accumulate with atomics in a gradient path,
 * and cuDNN engines that are not deterministic, are not used (as
 * torch.use_deterministic_algorithms). Off by default. */
KILN_API void kiln_set_deterministic(bool on);
KILN_API bool kiln_deterministic(void);

#ifdef __cplusplus
}
#endif
#endif

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

/* ---- convolutions on CUDA: cuDNN execution plans -------------------------------------
 * conv2d (forward, both backward passes) and conv_transpose2d run through cuDNN's
 * graph API. A plan is built once per key (shapes, strides, dtype, convolution
 * parameters, math mode, deterministic flag) and cached; where cuDNN is absent or
 * answers not-supported, im2col + cuBLAS runs instead (logged once). These calls
 * exist in every build; without CUDA the stats stay zero. */
typedef struct {
    int64_t hits;            /* convolutions whose plan (or fallback decision) was cached */
    int64_t misses;          /* keys seen for the first time: one plan build each */
    int64_t entries;         /* keys cached now */
    int64_t cudnn_runs;      /* convolutions run by a cuDNN plan */
    int64_t fallback_runs;   /* convolutions run by im2col + cuBLAS */
    int64_t fused_runs;      /* conv + bias (+ReLU) run as one cuDNN plan */
    int64_t autotuned;       /* keys whose plan was chosen by timing candidates */
    int64_t skipped_engines; /* candidates refused: workspace over the limit, TF32 or nondeterministic */
    int64_t workspace_bytes; /* bytes held by the per-stream workspaces */
} kiln_cuda_conv_stats;

KILN_API kiln_cuda_conv_stats kiln_cuda_conv_stats_get(void);
/* Zeroes the counters (not entries or workspace_bytes, which describe the cache). */
KILN_API void kiln_cuda_conv_stats_reset(void);
/* Drops every cached plan and frees the workspaces (the next convolutions rebuild). */
KILN_API void kiln_cuda_conv_cache_clear(void);
/* Autotune: time the top heuristic candidates once per key and keep the fastest
 * (torch.backends.cudnn.benchmark). Off by default; on when KILN_CUDNN_AUTOTUNE=1. */
KILN_API void kiln_cuda_set_conv_autotune(bool on);
KILN_API bool kiln_cuda_conv_autotune(void);
/* Plans needing more workspace than this are skipped (default 1 GiB, or
 * KILN_CUDNN_WORKSPACE_MB). */
KILN_API void kiln_cuda_set_conv_workspace_limit(size_t bytes);
KILN_API size_t kiln_cuda_conv_workspace_limit(void);
/* false: every convolution takes the im2col + cuBLAS path (on by default; off when
 * KILN_CUDNN=0). */
KILN_API void kiln_cuda_set_cudnn(bool on);
KILN_API bool kiln_cuda_cudnn_enabled(void);
/* True when cuDNN 9 could be loaded (false in builds without CUDA or cuDNN). */
KILN_API bool kiln_cuda_cudnn_available(void);

#ifdef __cplusplus
}
#endif
#endif

/* The public controls of the CUDA convolution plans (include/kiln/cuda.h): autotune,
 * workspace limit, the cuDNN switch and the plan-cache counters. Compiled in every
 * build so the API exists everywhere; the cuDNN code (kernels/cuda/conv2d_cudnn.c)
 * updates the counters, and without CUDA they stay zero. */
#include "conv_plans.h"
#include "../core/internal.h"

#include <kiln/cuda.h>
#include <stdlib.h>

static int64_t g_stats[KILN_CONV_STAT_COUNT];
static int g_autotune = -1, g_cudnn = -1; /* -1: not yet read from the environment */
static long long g_ws_limit = -1;

void kiln__conv_stat_add(kiln_conv_stat which, int64_t delta) {
    __atomic_add_fetch(&g_stats[which], delta, __ATOMIC_RELAXED);
}

static int64_t stat(kiln_conv_stat which) { return __atomic_load_n(&g_stats[which], __ATOMIC_RELAXED); }

kiln_cuda_conv_stats kiln_cuda_conv_stats_get(void) {
    kiln_cuda_conv_stats s = {stat(KILN_CONV_STAT_HIT),          stat(KILN_CONV_STAT_MISS),
                              stat(KILN_CONV_STAT_ENTRIES),      stat(KILN_CONV_STAT_CUDNN_RUN),
                              stat(KILN_CONV_STAT_FALLBACK_RUN), stat(KILN_CONV_STAT_FUSED_RUN),
                              stat(KILN_CONV_STAT_AUTOTUNED),    stat(KILN_CONV_STAT_SKIPPED),
                              stat(KILN_CONV_STAT_WORKSPACE)};
    return s;
}

void kiln_cuda_conv_stats_reset(void) {
    for (int i = 0; i < KILN_CONV_STAT_COUNT; i++)
        if (i != KILN_CONV_STAT_ENTRIES && i != KILN_CONV_STAT_WORKSPACE)
            __atomic_store_n(&g_stats[i], 0, __ATOMIC_RELAXED);
}

static bool env_flag(const char *name, bool dflt) {
    const char *e = getenv(name);
    if (!e || !*e) return dflt;
    return strcmp(e, "0") != 0 && strcmp(e, "false") != 0 && strcmp(e, "off") != 0;
}

bool kiln__conv_autotune(void) {
    int v = __atomic_load_n(&g_autotune, __ATOMIC_RELAXED);
    if (v < 0) {
        v = env_flag("KILN_CUDNN_AUTOTUNE", false);
        __atomic_store_n(&g_autotune, v, __ATOMIC_RELAXED);
    }
    return v != 0;
}
void kiln_cuda_set_conv_autotune(bool on) { __atomic_store_n(&g_autotune, on ? 1 : 0, __ATOMIC_RELAXED); }
bool kiln_cuda_conv_autotune(void) { return kiln__conv_autotune(); }

bool kiln__conv_cudnn_enabled(void) {
    int v = __atomic_load_n(&g_cudnn, __ATOMIC_RELAXED);
    if (v < 0) {
        v = env_flag("KILN_CUDNN", true);
        __atomic_store_n(&g_cudnn, v, __ATOMIC_RELAXED);
    }
    return v != 0;
}
void kiln_cuda_set_cudnn(bool on) { __atomic_store_n(&g_cudnn, on ? 1 : 0, __ATOMIC_RELAXED); }
bool kiln_cuda_cudnn_enabled(void) { return kiln__conv_cudnn_enabled(); }

size_t kiln__conv_workspace_limit(void) {
    long long v = __atomic_load_n(&g_ws_limit, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *e = getenv("KILN_CUDNN_WORKSPACE_MB");
        long long mb = e && *e ? atoll(e) : 1024;
        v = (mb > 0 ? mb : 0) << 20;
        __atomic_store_n(&g_ws_limit, v, __ATOMIC_RELAXED);
    }
    return (size_t)v;
}
void kiln_cuda_set_conv_workspace_limit(size_t bytes) {
    __atomic_store_n(&g_ws_limit, (long long)(bytes > (size_t)(1ull << 62) ? (1ull << 62) : bytes), __ATOMIC_RELAXED);
}
size_t kiln_cuda_conv_workspace_limit(void) { return kiln__conv_workspace_limit(); }

#ifndef KILN_HAVE_CUDA
/* Builds without CUDA: no plans to clear, no cuDNN to load. */
void kiln_cuda_conv_cache_clear(void) {}
bool kiln_cuda_cudnn_available(void) { return false; }
#endif

/* CUDA device runtime: one caching pool and one stream per device, checked copies
 * (pinned staging is left to the copy path of the CUDA backend issue). Built only
 * when KILN_HAVE_CUDA is defined. */
#include "cuda_device.h"

#ifdef KILN_HAVE_CUDA
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdlib.h>

#define KILN_MAX_CUDA_DEVICES 16

static kiln_pool *g_pools[KILN_MAX_CUDA_DEVICES];
static int g_count = -1;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

kiln_status kiln__cuda_fail(int err, const char *stmt, const char *file, int line) {
    return kiln__error(KILN_STATUS_BACKEND, "CUDA call failed: %s returned %s (%s) at %s:%d", stmt,
                       cudaGetErrorName((cudaError_t)err), cudaGetErrorString((cudaError_t)err), file, line);
}

int kiln__cuda_device_count(void) {
    pthread_mutex_lock(&g_lock);
    if (g_count < 0) {
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
        cudaGetLastError(); /* a missing driver is an answer, not a pending error */
        g_count = n < KILN_MAX_CUDA_DEVICES ? n : KILN_MAX_CUDA_DEVICES;
    }
    int n = g_count;
    pthread_mutex_unlock(&g_lock);
    return n;
}

bool kiln__cuda_check_device(int index) {
    int n = kiln__cuda_device_count();
    if (index < 0 || index >= n) {
        if (n == 0)
            kiln__error(KILN_STATUS_NO_DEVICE, "CUDA device cuda:%d requested, but no CUDA device or driver is "
                        "present; use the cpu device (KILN_DEVICE=cpu)", index);
        else
            kiln__error(KILN_STATUS_NO_DEVICE, "CUDA device cuda:%d requested, but only %d device(s) exist "
                        "(cuda:0..cuda:%d)", index, n, n - 1);
        return false;
    }
    return true;
}

typedef struct { int index; } dev_ctx;
static dev_ctx g_ctx[KILN_MAX_CUDA_DEVICES];

static void *dev_alloc(void *ctx, size_t n) {
    void *p = NULL;
    cudaSetDevice(((dev_ctx *)ctx)->index);
    if (cudaMalloc(&p, n) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void dev_free(void *ctx, void *p, size_t n) {
    (void)n;
    cudaSetDevice(((dev_ctx *)ctx)->index);
    /* Blocks are reused in stream order, but a segment given back must be idle. */
    cudaDeviceSynchronize();
    cudaFree(p);
}

static const char *g_names[KILN_MAX_CUDA_DEVICES] = {"cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:4", "cuda:5",
                                                     "cuda:6", "cuda:7", "cuda:8", "cuda:9", "cuda:10", "cuda:11",
                                                     "cuda:12", "cuda:13", "cuda:14", "cuda:15"};

kiln_pool *kiln__cuda_pool(int index) {
    pthread_mutex_lock(&g_lock);
    if (!g_pools[index]) {
        g_ctx[index].index = index;
        g_pools[index] = kiln_pool_create((kiln_pool_backend){dev_alloc, dev_free, &g_ctx[index], g_names[index]});
    }
    kiln_pool *p = g_pools[index];
    pthread_mutex_unlock(&g_lock);
    return p;
}

kiln_status kiln__cuda_memcpy(void *dst, kiln_device ddev, const void *src, kiln_device sdev, size_t n) {
    enum cudaMemcpyKind kind = cudaMemcpyDefault; /* unified addressing tells the direction */
    KILN_CUDA_CHECK(cudaMemcpy(dst, src, n, kind));
    (void)ddev;
    (void)sdev;
    return KILN_STATUS_OK;
}

kiln_status kiln__cuda_synchronize(int index) {
    KILN_CUDA_CHECK(cudaSetDevice(index));
    KILN_CUDA_CHECK(cudaDeviceSynchronize());
    return KILN_STATUS_OK;
}

void kiln__cuda_shutdown(void) {
    for (int i = 0; i < KILN_MAX_CUDA_DEVICES; i++)
        if (g_pools[i]) kiln_pool_release_cache(g_pools[i]);
}
#else
typedef int kiln_cuda_device_unused;
#endif

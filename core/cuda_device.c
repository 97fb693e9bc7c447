/* CUDA device runtime: per device one caching pool backed by cudaMalloc, one stream
 * that every kernel and copy of kiln runs on (so freed pool blocks are reused in
 * stream order), pinned staging buffers for host copies, and the sync-debug switch.
 * The switch is compiled in every build (the emulated kernels read it too); the
 * rest only with KILN_HAVE_CUDA. */
#include "cuda_device.h"

#include <pthread.h>
#include <stdlib.h>

/* ---- sync-debug mode (every build) --------------------------------------------------- */

static int g_sync_debug = -1; /* -1: not yet read from the environment */

bool kiln__cuda_sync_debug(void) {
    int v = __atomic_load_n(&g_sync_debug, __ATOMIC_RELAXED);
    if (v < 0) {
        const char *e = getenv("KILN_CUDA_SYNC");
        v = e && *e && strcmp(e, "0") != 0;
        __atomic_store_n(&g_sync_debug, v, __ATOMIC_RELAXED);
    }
    return v != 0;
}

void kiln_cuda_set_sync_debug(bool on) { __atomic_store_n(&g_sync_debug, on ? 1 : 0, __ATOMIC_RELAXED); }
bool kiln_cuda_sync_debug(void) { return kiln__cuda_sync_debug(); }

#ifdef KILN_HAVE_CUDA
#include <cuda_runtime_api.h>

#define KILN_MAX_CUDA_DEVICES 16
#define KILN_STAGING_BYTES (4u << 20) /* two of these per device, double-buffered */

typedef struct {
    int index;
    cudaStream_t stream;
    bool stream_ready;
    /* pinned staging: host data is copied through these so the DMA runs at full speed
     * and a chunk's memcpy overlaps the transfer of the other */
    void *staging[2];
    cudaEvent_t staged[2];
    bool staging_ready, staging_failed;
    pthread_mutex_t copy_lock;
} dev_state;

static kiln_pool *g_pools[KILN_MAX_CUDA_DEVICES];
static dev_state g_dev[KILN_MAX_CUDA_DEVICES];
static int g_count = -1;
static cudaError_t g_count_error = cudaSuccess;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t g_dev_once = PTHREAD_ONCE_INIT;

static void init_dev_state(void) {
    for (int i = 0; i < KILN_MAX_CUDA_DEVICES; i++) {
        g_dev[i].index = i;
        pthread_mutex_init(&g_dev[i].copy_lock, NULL);
    }
}

kiln_status kiln__cuda_fail(int err, const char *stmt, const char *file, int line) {
    return kiln__error(KILN_STATUS_BACKEND, "CUDA call failed: %s returned %s (%s) at %s:%d", stmt,
                       cudaGetErrorName((cudaError_t)err), cudaGetErrorString((cudaError_t)err), file, line);
}

int kiln__cuda_device_count(void) {
    pthread_mutex_lock(&g_lock);
    if (g_count < 0) {
        int n = 0;
        g_count_error = cudaGetDeviceCount(&n);
        if (g_count_error != cudaSuccess) n = 0;
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
            kiln__error(KILN_STATUS_NO_DEVICE,
                        "CUDA device cuda:%d requested, but no CUDA device or driver is present (cudaGetDeviceCount: "
                        "%s); use the cpu device (KILN_DEVICE=cpu)",
                        index, g_count_error != cudaSuccess ? cudaGetErrorString(g_count_error) : "0 devices");
        else
            kiln__error(KILN_STATUS_NO_DEVICE, "CUDA device cuda:%d requested, but only %d device(s) exist "
                        "(cuda:0..cuda:%d)", index, n, n - 1);
        return false;
    }
    return true;
}

static void *dev_alloc(void *ctx, size_t n) {
    void *p = NULL;
    cudaSetDevice(((dev_state *)ctx)->index);
    if (cudaMalloc(&p, n) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void dev_free(void *ctx, void *p, size_t n) {
    (void)n;
    cudaSetDevice(((dev_state *)ctx)->index);
    /* Blocks are reused in stream order, but a segment given back must be idle. */
    cudaDeviceSynchronize();
    cudaFree(p);
}

static const char *g_names[KILN_MAX_CUDA_DEVICES] = {"cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:4", "cuda:5",
                                                     "cuda:6", "cuda:7", "cuda:8", "cuda:9", "cuda:10", "cuda:11",
                                                     "cuda:12", "cuda:13", "cuda:14", "cuda:15"};

kiln_pool *kiln__cuda_pool(int index) {
    pthread_once(&g_dev_once, init_dev_state);
    pthread_mutex_lock(&g_lock);
    if (!g_pools[index]) {
        size_t free_b = 0, total_b = 0; /* the card's memory bounds every request (0: unknown) */
        cudaSetDevice(index);
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess) {
            cudaGetLastError();
            total_b = 0;
        }
        g_pools[index] =
            kiln_pool_create((kiln_pool_backend){dev_alloc, dev_free, &g_dev[index], g_names[index], total_b});
    }
    kiln_pool *p = g_pools[index];
    pthread_mutex_unlock(&g_lock);
    return p;
}

void *kiln__cuda_stream(int index) {
    pthread_once(&g_dev_once, init_dev_state);
    dev_state *d = &g_dev[index];
    cudaSetDevice(index); /* launches go to the current device */
    pthread_mutex_lock(&g_lock);
    if (!d->stream_ready) {
        /* non-blocking: kiln's stream does not serialise with the legacy default stream */
        if (cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking) == cudaSuccess) d->stream_ready = true;
        else {
            cudaGetLastError();
            d->stream = 0;
        }
    }
    cudaStream_t s = d->stream;
    pthread_mutex_unlock(&g_lock);
    return (void *)s;
}

void *kiln_cuda_stream(kiln_device dev) {
    if (dev.type != KILN_DEVICE_CUDA || !kiln__cuda_check_device(dev.index)) return NULL;
    return kiln__cuda_stream(dev.index);
}

/* Pinned buffers of a device, made on first use; false when pinning is unavailable. */
static bool staging(dev_state *d) {
    if (d->staging_ready) return true;
    if (d->staging_failed) return false;
    for (int i = 0; i < 2; i++) {
        if (cudaHostAlloc(&d->staging[i], KILN_STAGING_BYTES, cudaHostAllocDefault) != cudaSuccess ||
            cudaEventCreateWithFlags(&d->staged[i], cudaEventDisableTiming) != cudaSuccess) {
            cudaGetLastError();
            d->staging_failed = true;
            return false;
        }
    }
    d->staging_ready = true;
    return true;
}

static kiln_status to_device(dev_state *d, char *dst, const char *src, size_t n) {
    cudaStream_t s = (cudaStream_t)kiln__cuda_stream(d->index);
    if (!staging(d)) {
        KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s));
        KILN_CUDA_CHECK(cudaStreamSynchronize(s)); /* pageable source: finish before returning */
        return KILN_STATUS_OK;
    }
    for (size_t off = 0, c = 0; off < n; off += KILN_STAGING_BYTES, c++) {
        size_t len = n - off < KILN_STAGING_BYTES ? n - off : KILN_STAGING_BYTES;
        int b = (int)(c & 1);
        KILN_CUDA_CHECK(cudaEventSynchronize(d->staged[b])); /* the buffer's last transfer is done */
        memcpy(d->staging[b], src + off, len);
        KILN_CUDA_CHECK(cudaMemcpyAsync(dst + off, d->staging[b], len, cudaMemcpyHostToDevice, s));
        KILN_CUDA_CHECK(cudaEventRecord(d->staged[b], s));
    }
    return KILN_STATUS_OK; /* later work is ordered after the transfer on the stream */
}

static kiln_status to_host(dev_state *d, char *dst, const char *src, size_t n) {
    cudaStream_t s = (cudaStream_t)kiln__cuda_stream(d->index);
    if (!staging(d)) {
        KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, s));
        KILN_CUDA_CHECK(cudaStreamSynchronize(s));
        return KILN_STATUS_OK;
    }
    size_t chunks = (n + KILN_STAGING_BYTES - 1) / KILN_STAGING_BYTES;
    for (size_t c = 0; c < chunks + 1; c++) {
        if (c < chunks) { /* start chunk c while the host copies out chunk c-1 */
            size_t off = c * KILN_STAGING_BYTES, len = n - off < KILN_STAGING_BYTES ? n - off : KILN_STAGING_BYTES;
            KILN_CUDA_CHECK(cudaMemcpyAsync(d->staging[c & 1], src + off, len, cudaMemcpyDeviceToHost, s));
            KILN_CUDA_CHECK(cudaEventRecord(d->staged[c & 1], s));
        }
        if (c > 0) {
            size_t p = c - 1, off = p * KILN_STAGING_BYTES;
            size_t len = n - off < KILN_STAGING_BYTES ? n - off : KILN_STAGING_BYTES;
            KILN_CUDA_CHECK(cudaEventSynchronize(d->staged[p & 1]));
            memcpy(dst + off, d->staging[p & 1], len);
        }
    }
    return KILN_STATUS_OK;
}

kiln_status kiln__cuda_memcpy(void *dst, kiln_device ddev, const void *src, kiln_device sdev, size_t n) {
    pthread_once(&g_dev_once, init_dev_state);
    kiln_status st = KILN_STATUS_OK;
    if (ddev.type == KILN_DEVICE_CUDA && sdev.type == KILN_DEVICE_CPU) {
        if (!kiln__cuda_check_device(ddev.index)) return kiln_last_status();
        dev_state *d = &g_dev[ddev.index];
        pthread_mutex_lock(&d->copy_lock);
        st = to_device(d, dst, src, n);
        pthread_mutex_unlock(&d->copy_lock);
    } else if (ddev.type == KILN_DEVICE_CPU && sdev.type == KILN_DEVICE_CUDA) {
        if (!kiln__cuda_check_device(sdev.index)) return kiln_last_status();
        dev_state *d = &g_dev[sdev.index];
        pthread_mutex_lock(&d->copy_lock);
        st = to_host(d, dst, src, n);
        pthread_mutex_unlock(&d->copy_lock);
    } else if (ddev.index == sdev.index) {
        cudaStream_t s = (cudaStream_t)kiln__cuda_stream(ddev.index);
        KILN_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, s));
    } else { /* across devices: the source's queued work first, then a peer copy */
        KILN_CUDA_CHECK(cudaStreamSynchronize((cudaStream_t)kiln__cuda_stream(sdev.index)));
        KILN_CUDA_CHECK(cudaMemcpyPeerAsync(dst, ddev.index, src, sdev.index, n,
                                            (cudaStream_t)kiln__cuda_stream(ddev.index)));
    }
    return st;
}

kiln_status kiln__cuda_synchronize(int index) {
    cudaStream_t s = (cudaStream_t)kiln__cuda_stream(index);
    KILN_CUDA_CHECK(cudaStreamSynchronize(s));
    KILN_CUDA_CHECK(cudaDeviceSynchronize());
    return KILN_STATUS_OK;
}

void kiln__cuda_shutdown(void) {
    for (int i = 0; i < KILN_MAX_CUDA_DEVICES; i++)
        if (g_pools[i]) kiln_pool_release_cache(g_pools[i]);
}
#else
void *kiln_cuda_stream(kiln_device dev) {
    (void)dev;
    kiln__error(KILN_STATUS_NO_DEVICE, "kiln_cuda_stream: this kiln was built without CUDA");
    return NULL;
}
#endif

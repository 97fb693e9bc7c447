/* CUDA timing for the benchmark driver: events recorded on kiln's stream (so they
 * bracket exactly the kernels a step queued) and the device-to-device copy that the
 * memory-bound kernels' bandwidth is compared with. Stubs in CPU-only builds. */
#include "bench.h"

#include <stdio.h>
#include <stdlib.h>

#ifdef KILN_HAVE_CUDA
#include <cuda_runtime.h>

struct bench_cuda_timer {
    cudaStream_t stream;
    cudaEvent_t start, stop;
};

bench_cuda_timer *bench_cuda_timer_create(kiln_device dev) {
    void *stream = kiln_cuda_stream(dev);
    if (!stream) return NULL;
    bench_cuda_timer *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->stream = (cudaStream_t)stream;
    if (cudaEventCreate(&t->start) != cudaSuccess || cudaEventCreate(&t->stop) != cudaSuccess) {
        kiln_set_error(KILN_STATUS_BACKEND, "bench: cudaEventCreate failed");
        free(t);
        return NULL;
    }
    return t;
}

void bench_cuda_timer_start(bench_cuda_timer *t) { cudaEventRecord(t->start, t->stream); }

double bench_cuda_timer_stop(bench_cuda_timer *t) {
    float ms = -1;
    cudaEventRecord(t->stop, t->stream);
    if (cudaEventSynchronize(t->stop) != cudaSuccess || cudaEventElapsedTime(&ms, t->start, t->stop) != cudaSuccess)
        return -1;
    return ms * 1e-3;
}

void bench_cuda_timer_free(bench_cuda_timer *t) {
    if (!t) return;
    cudaEventDestroy(t->start);
    cudaEventDestroy(t->stop);
    free(t);
}

double bench_cuda_copy_bandwidth(kiln_device dev, size_t bytes, int reps) {
    if (cudaSetDevice(dev.index) != cudaSuccess) return -1;
    void *a = NULL, *b = NULL;
    if (cudaMalloc(&a, bytes) != cudaSuccess) return -1;
    if (cudaMalloc(&b, bytes) != cudaSuccess) {
        cudaFree(a);
        return -1;
    }
    cudaMemset(a, 0, bytes);
    bench_cuda_timer *t = bench_cuda_timer_create(dev);
    double *v = calloc((size_t)reps, sizeof *v);
    double bw = -1;
    if (t && v) {
        for (int w = 0; w < 3; w++) cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, t->stream);
        for (int r = 0; r < reps; r++) {
            bench_cuda_timer_start(t);
            cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, t->stream);
            v[r] = bench_cuda_timer_stop(t);
        }
        bench_stats s = bench_stats_of(v, reps);
        if (s.median > 0) bw = 2.0 * (double)bytes / s.median;
    }
    free(v);
    bench_cuda_timer_free(t);
    cudaFree(a);
    cudaFree(b);
    return bw;
}

const char *bench_cuda_device_name(kiln_device dev, char *buf, size_t n) {
    struct cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, dev.index) != cudaSuccess) p.name[0] = 0;
    snprintf(buf, n, "%s", p.name);
    return buf;
}

#else

bench_cuda_timer *bench_cuda_timer_create(kiln_device dev) {
    kiln_set_error(KILN_STATUS_NO_DEVICE, "bench: this kiln was built without CUDA (configure with -DKILN_CUDA=ON)");
    return NULL;
}
void bench_cuda_timer_start(bench_cuda_timer *t) {}
double bench_cuda_timer_stop(bench_cuda_timer *t) { return -1; }
void bench_cuda_timer_free(bench_cuda_timer *t) {}
double bench_cuda_copy_bandwidth(kiln_device dev, size_t bytes, int reps) { return -1; }
const char *bench_cuda_device_name(kiln_device dev, char *buf, size_t n) {
    if (n) buf[0] = 0;
    return buf;
}

#endif

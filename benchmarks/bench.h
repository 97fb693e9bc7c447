/* Shared pieces of the benchmark driver: the deterministic value formula both
 * sides use for weights and inputs (benchmarks/torch/bench_torch.py has the same),
 * the timing statistics, and the CUDA timing helpers (stubs without CUDA). */
#ifndef KILN_BENCH_H
#define KILN_BENCH_H

#include <kiln.h>

/* Element j of tensor k: a hash to one of 255 multiples of 1/512 in [-0.248, 0.248]
 * (exact in float32), the fx_value of tests/fixtures/gen_unet.py. */
double bench_fx_value(int64_t j, int k);
/* A class index in [0, c) from the same hash. */
int64_t bench_fx_index(int64_t j, int k, int64_t c);

/* Tensors on dev filled from the formula: values fx + offset, or binary 0/1 (fx > 0),
 * or class indices (I64); NULL with kiln's error on failure. */
kiln_tensor *bench_fx_tensor(kiln_device dev, int ndim, const int64_t *shape, int k, double offset);
kiln_tensor *bench_fx_binary(kiln_device dev, int ndim, const int64_t *shape, int k);
kiln_tensor *bench_fx_labels(kiln_device dev, int ndim, const int64_t *shape, int k, int64_t classes);

/* Median, quartiles (linear interpolation, as numpy's default) and extremes of n
 * samples; sorts v in place. */
typedef struct {
    double median, q1, q3, min, max;
    int n;
} bench_stats;
bench_stats bench_stats_of(double *v, int n);

/* CUDA events on kiln's stream of dev (device time of the work between two
 * records), and a device-to-device copy measured the same way. Without CUDA these
 * report false / a negative number. */
typedef struct bench_cuda_timer bench_cuda_timer;
bench_cuda_timer *bench_cuda_timer_create(kiln_device dev);
void bench_cuda_timer_start(bench_cuda_timer *t);
/* Records the stop event, waits for it and returns the seconds between the two. */
double bench_cuda_timer_stop(bench_cuda_timer *t);
void bench_cuda_timer_free(bench_cuda_timer *t);
/* Read+write bandwidth (bytes/s counting both) of cudaMemcpyAsync device-to-device of
 * `bytes`, median of reps; negative when unavailable. */
double bench_cuda_copy_bandwidth(kiln_device dev, size_t bytes, int reps);
/* The device's name ("NVIDIA H200"), or "" . */
const char *bench_cuda_device_name(kiln_device dev, char *buf, size_t n);

#endif

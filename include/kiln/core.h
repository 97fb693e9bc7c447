/* kiln core API: status and errors, dtypes and devices, tensors, memory pools,
 * scopes and the autograd tape. Every other kiln header builds on this one.
 * Ownership rule: a tensor belongs to the scope that was innermost when it was
 * created; ending the scope frees it. No user code frees step intermediates. */
#ifndef KILN_CORE_H
#define KILN_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(KILN_BUILDING_LIBRARY) && defined(__GNUC__)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

#define KILN_MAX_DIMS 8

/* ---- status and errors ------------------------------------------------ */

typedef enum {
    KILN_STATUS_OK = 0,
    KILN_STATUS_INVALID_ARGUMENT, /* a bad value: negative size, axis out of range, NULL */
    KILN_STATUS_SHAPE,            /* shapes that do not fit the op */
    KILN_STATUS_DTYPE,            /* a dtype the op does not take */
    KILN_STATUS_DEVICE,           /* mixed devices, or an op with no kernel on a device */
    KILN_STATUS_OOM,              /* the pool could not get memory, even after freeing its cache */
    KILN_STATUS_IO,               /* a file could not be opened, read or written */
    KILN_STATUS_FORMAT,           /* a file or buffer is corrupt or not what it claims */
    KILN_STATUS_NO_DEVICE,        /* CUDA asked for, no device or driver present */
    KILN_STATUS_BACKEND,          /* a CUDA, cuBLAS or cuDNN call failed */
    KILN_STATUS_STATE,            /* an API call at the wrong time (e.g. backward twice through freed nodes) */
    KILN_STATUS_ANOMALY,          /* anomaly mode found NaN or Inf */
    KILN_STATUS_NOT_IMPLEMENTED,
} kiln_status;

/* Status of the first error since the last kiln_clear_error() on this thread. */
KILN_API kiln_status kiln_last_status(void);
/* Its message: names the op, the shapes and the fix. "" when there is none. */
KILN_API const char *kiln_last_error(void);
KILN_API void kiln_clear_error(void);
/* Records an error from code outside the library (example support, user programs)
 * with the same keep-the-first rule; returns s. A status of OK records nothing. */
KILN_API kiln_status kiln_set_error(kiln_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
KILN_API const char *kiln_status_name(kiln_status s);

/* ---- dtypes and devices ------------------------------------------------- */

typedef enum {
    KILN_F32 = 0, /* computed on every device */
    KILN_F64,     /* computed on the CPU: the gradient checker's precision */
    KILN_F16,     /* storage only, for now */
    KILN_BF16,    /* storage only, for now */
    KILN_I32,
    KILN_I64,     /* class-index labels */
    KILN_U8,      /* masks and images */
    KILN_DTYPE_COUNT
} kiln_dtype;

KILN_API size_t kiln_dtype_size(kiln_dtype dt);
KILN_API const char *kiln_dtype_name(kiln_dtype dt);

typedef enum { KILN_DEVICE_CPU = 0, KILN_DEVICE_CUDA = 1 } kiln_device_type;

typedef struct {
    kiln_device_type type;
    int index;
} kiln_device;

#define KILN_CPU ((kiln_device){KILN_DEVICE_CPU, 0})
#define KILN_CUDA(i) ((kiln_device){KILN_DEVICE_CUDA, (i)})

KILN_API bool kiln_device_equal(kiln_device a, kiln_device b);
/* "cpu", "cuda:0" */
KILN_API const char *kiln_device_name(kiln_device d, char *buf, size_t n);
/* Parses "cpu", "cuda", "cuda:N". Returns KILN_STATUS_OK or INVALID_ARGUMENT. */
KILN_API kiln_status kiln_device_parse(const char *s, kiln_device *out);
/* True when this build has CUDA and a device with that index is present. */
KILN_API bool kiln_device_available(kiln_device d);
KILN_API int kiln_cuda_device_count(void);
/* The default device: $KILN_DEVICE if set, else cuda:0 when available, else cpu. A
 * $KILN_DEVICE that does not parse records KILN_STATUS_INVALID_ARGUMENT naming it and
 * returns that fallback: check kiln_last_status() after the call and stop, since a
 * pending error is kept and would hide every later one. */
KILN_API kiln_device kiln_default_device(void);

/* ---- the CPU backend: threads, oneDNN ----------------------------------------- */
/* The number of threads kiln's CPU kernels use (OpenMP; OpenBLAS and oneDNN share that
 * pool). By default: $KILN_NUM_THREADS, else $OMP_NUM_THREADS, else the CPUs this process
 * may run on (its sched_getaffinity mask, so `taskset -c 0` means one thread), set when
 * the library loads; a KILN_NUM_THREADS that is not 1..1024 is reported on stderr and
 * ignored. kiln_set_num_threads(n), 1 <= n <= 1024, sets it for the calling thread's later
 * parallel regions (INVALID_ARGUMENT otherwise); kiln_get_num_threads() reports it.
 * See docs/benchmarks.md, "Threads". */
KILN_API kiln_status kiln_set_num_threads(int n);
KILN_API int kiln_get_num_threads(void);
/* Idle OpenMP threads spin for a while (libgomp's default), which on cores shared with
 * other work slows every parallel region several times over (docs/benchmarks.md: a
 * car_mask step 6.7x slower with a busy process on one of two cores). libgomp reads
 * OMP_WAIT_POLICY only at its own start-up, before main, so kiln cannot change it at run
 * time. Called first thing in main, kiln_prefer_passive_wait(argv) starts the program over
 * once (exec of itself, same argv) with OMP_WAIT_POLICY=passive, when neither it nor
 * GOMP_SPINCOUNT is set and more than one thread runs; otherwise, under valgrind, in a
 * set-uid program, or if the exec fails, it returns and the program runs on. kiln's
 * example programs call it; a program whose start-up must not run twice, or Python, sets
 * OMP_WAIT_POLICY=passive in its environment instead. */
KILN_API void kiln_prefer_passive_wait(char **argv);

/* On the CPU, f32 convolutions (conv2d forward and both backward passes,
 * conv_transpose2d, conv2d_bias_relu) run as cached oneDNN primitives when kiln was
 * built with oneDNN (CMake KILN_ONEDNN, Debian's libdnnl-dev); f64 and geometries
 * oneDNN declines take im2col + BLAS. false: every CPU convolution takes im2col + BLAS
 * (on by default; off when the environment has KILN_ONEDNN=0). */
KILN_API void kiln_cpu_set_onednn(bool on);
KILN_API bool kiln_cpu_onednn_enabled(void);
/* True when this kiln was built with oneDNN and its CPU engine could be created. */
KILN_API bool kiln_cpu_onednn_available(void);

/* Blocks until all work queued on the device has finished. */
KILN_API kiln_status kiln_synchronize(kiln_device d);

/* ---- memory pools -------------------------------------------------------- */

typedef struct {
    size_t in_use;          /* bytes handed out to live tensors (rounded to blocks) */
    size_t peak_in_use;     /* highest in_use since the last reset */
    size_t reserved;        /* bytes held from the backing allocator */
    size_t cached;          /* reserved - in_use: free blocks kept for reuse */
    uint64_t n_allocs;      /* block allocations served */
    uint64_t n_backing_allocs; /* segments obtained from malloc / cudaMalloc */
    uint64_t n_backing_frees;
    uint64_t n_oom_retries; /* times the cache was freed to satisfy a request */
    size_t limit;           /* 0 = no limit */
} kiln_pool_stats;

KILN_API kiln_pool_stats kiln_memory_stats(kiln_device d);
/* Returns every cached, wholly free segment to the backing allocator. */
KILN_API void kiln_memory_release_cache(kiln_device d);
/* Caps the bytes the device pool may reserve (0 removes the cap). */
KILN_API void kiln_memory_set_limit(kiln_device d, size_t bytes);
KILN_API void kiln_memory_reset_peak(kiln_device d);

/* ---- tensors ------------------------------------------------------------- */

typedef struct kiln_tensor kiln_tensor;

KILN_API kiln_tensor *kiln_tensor_empty(int ndim, const int64_t *shape, kiln_dtype dt, kiln_device dev);
KILN_API kiln_tensor *kiln_tensor_zeros(int ndim, const int64_t *shape, kiln_dtype dt, kiln_device dev);
KILN_API kiln_tensor *kiln_tensor_full(int ndim, const int64_t *shape, double value, kiln_dtype dt, kiln_device dev);
/* A 0-d tensor holding one value. */
KILN_API kiln_tensor *kiln_tensor_scalar(double value, kiln_dtype dt, kiln_device dev);
/* Copies ndim/shape-sized, C-ordered host data of the given dtype into a new tensor. */
KILN_API kiln_tensor *kiln_tensor_from_host(const void *data, int ndim, const int64_t *shape, kiln_dtype dt,
                                            kiln_device dev);
/* Copies the tensor (any strides, any device) to C-ordered host memory; nbytes must be numel*dtype size. */
KILN_API kiln_status kiln_tensor_to_host(const kiln_tensor *t, void *dst, size_t nbytes);
/* 1-d tensor start, start+step, ... < end (as torch.arange). */
KILN_API kiln_tensor *kiln_tensor_arange(double start, double end, double step, kiln_dtype dt, kiln_device dev);
KILN_API kiln_status kiln_tensor_fill(kiln_tensor *t, double value);
/* Values from the global counter-based generator (Philox 4x32-10): the same seed and
 * sequence of calls give the same numbers on every device. */
KILN_API kiln_tensor *kiln_tensor_rand(int ndim, const int64_t *shape, double lo, double hi, kiln_dtype dt,
                                       kiln_device dev);
KILN_API kiln_tensor *kiln_tensor_randn(int ndim, const int64_t *shape, double mean, double std, kiln_dtype dt,
                                        kiln_device dev);
KILN_API void kiln_manual_seed(uint64_t seed);
/* Generator position, for checkpoints: seed and the counter offset reached. */
KILN_API void kiln_rng_get_state(uint64_t *seed, uint64_t *offset);
KILN_API void kiln_rng_set_state(uint64_t seed, uint64_t offset);

/* Copy to another device (or a contiguous copy on the same device). */
KILN_API kiln_tensor *kiln_tensor_to(kiln_tensor *t, kiln_device dev);
/* A contiguous tensor with the same values: t itself when already contiguous. */
KILN_API kiln_tensor *kiln_tensor_contiguous(kiln_tensor *t);
/* A new tensor that shares nothing and records nothing on the tape. */
KILN_API kiln_tensor *kiln_tensor_clone(kiln_tensor *t);
/* Same storage, cut from the tape (as torch.detach). */
KILN_API kiln_tensor *kiln_tensor_detach(kiln_tensor *t);
/* Converts dtype (a copy, not differentiable). */
KILN_API kiln_tensor *kiln_tensor_cast(kiln_tensor *t, kiln_dtype dt);
/* Copies src into dst (same shape, or broadcastable to it); not recorded. */
KILN_API kiln_status kiln_tensor_copy_(kiln_tensor *dst, kiln_tensor *src);

KILN_API int kiln_tensor_ndim(const kiln_tensor *t);
/* Size of dimension i; negative i counts from the end. */
KILN_API int64_t kiln_tensor_size(const kiln_tensor *t, int i);
KILN_API const int64_t *kiln_tensor_shape(const kiln_tensor *t);
/* Stride of dimension i in elements, as torch.stride(). */
KILN_API int64_t kiln_tensor_stride(const kiln_tensor *t, int i);
KILN_API int64_t kiln_tensor_numel(const kiln_tensor *t);
KILN_API kiln_dtype kiln_tensor_dtype(const kiln_tensor *t);
KILN_API kiln_device kiln_tensor_device(const kiln_tensor *t);
KILN_API bool kiln_tensor_is_contiguous(const kiln_tensor *t);
/* Pointer to the first element (device memory for CUDA tensors). */
KILN_API void *kiln_tensor_data(const kiln_tensor *t);
/* The single value of a one-element tensor, as a double (NaN and an error otherwise). */
KILN_API double kiln_tensor_item(const kiln_tensor *t);
/* Writes a readable dump (shape, dtype, device, values; long tensors elided). */
KILN_API void kiln_tensor_print(const kiln_tensor *t, FILE *f);
/* "f32[2, 3] cpu" into buf. */
KILN_API const char *kiln_tensor_describe(const kiln_tensor *t, char *buf, size_t n);
/* Frees a tensor now instead of at its scope's end (for long-lived tensors). */
KILN_API void kiln_tensor_free(kiln_tensor *t);
/* Wraps memory kiln does not own (zero-copy import, e.g. DLPack): a tensor in the
 * current scope viewing data with the given shape and strides (in elements, >= 0;
 * NULL means C order). deleter(ctx), if given, runs when the last view of that
 * memory dies. On failure it returns NULL and does not call deleter. */
KILN_API kiln_tensor *kiln_tensor_from_external(void *data, int ndim, const int64_t *shape,
                                                const int64_t *strides_in_elements, kiln_dtype dt,
                                                kiln_device dev, void (*deleter)(void *ctx), void *ctx);

/* ---- scopes ----------------------------------------------------------------
 * A scope owns every tensor and tape node created while it is innermost. Ending
 * it frees them all at once: a training step is begin ... end. Tensors created
 * with no scope open belong to the root scope and live until kiln_tensor_free
 * or kiln_shutdown. */

typedef struct kiln_scope kiln_scope;

KILN_API kiln_scope *kiln_scope_begin(void);
/* Ends the scope and every scope opened inside it that is still open. */
KILN_API void kiln_scope_end(kiln_scope *s);
/* Moves t to the enclosing scope so it outlives s; it is detached from the tape. */
KILN_API kiln_tensor *kiln_scope_keep(kiln_tensor *t);
/* For bindings whose objects outlive the scope stack (Python): closes s, which
 * must be the innermost open scope, without freeing what it owns. s then belongs
 * to the caller, who frees it (and every tensor and tape node it owns), in any
 * order relative to other scopes, with kiln_scope_free. */
KILN_API kiln_status kiln_scope_detach(kiln_scope *s);
KILN_API void kiln_scope_free(kiln_scope *s);
/* Frees every tensor, scope and cached block; for program exit and test teardown. */
KILN_API void kiln_shutdown(void);

/* ---- autograd ------------------------------------------------------------ */

KILN_API kiln_status kiln_tensor_set_requires_grad(kiln_tensor *t, bool on);
KILN_API bool kiln_tensor_requires_grad(const kiln_tensor *t);
/* The accumulated gradient of a leaf, or NULL before any backward reached it. */
KILN_API kiln_tensor *kiln_tensor_grad(const kiln_tensor *t);
/* Zeroes (and keeps) the accumulated gradient. */
KILN_API void kiln_tensor_zero_grad(kiln_tensor *t);
/* Back-propagates from root: grad_output NULL means root is a scalar with gradient 1.
 * Gradients accumulate into the leaves' .grad across calls (each on a graph of its own:
 * see kiln_backward_ex for walking one graph twice). */
KILN_API kiln_status kiln_backward(kiln_tensor *root, kiln_tensor *grad_output);
/* kiln_backward with PyTorch's retain_graph: a graph walked without it is spent, and a
 * second backward through any of its nodes is a KILN_STATUS_STATE error (instead of
 * adding every gradient twice); with retain_graph = true the graph can be walked again
 * and each walk accumulates once more into the leaves. kiln_backward(r, g) is
 * kiln_backward_ex(r, g, false). */
KILN_API kiln_status kiln_backward_ex(kiln_tensor *root, kiln_tensor *grad_output, bool retain_graph);
/* While a no-grad region is open, ops record nothing (nests). */
KILN_API void kiln_no_grad_begin(void);
KILN_API void kiln_no_grad_end(void);
KILN_API bool kiln_grad_enabled(void);
/* Anomaly mode: every op checks its output for NaN/Inf and fails naming itself. */
KILN_API void kiln_set_anomaly_mode(bool on);
KILN_API bool kiln_anomaly_mode(void);

#ifdef __cplusplus
}
#endif
#endif

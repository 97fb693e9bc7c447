/* Host launchers of the CUDA kernels: plain pointers plus shapes and strides, no
 * kiln_tensor. This header has the descriptor and the core ops' launchers (element-wise,
 * copies, fills, random, sums); the op families' launchers are in launch_<family>.h.
 * kiln_cuda_<op> (kernels/cuda/glue*.c) calls them with device memory; the emulation
 * tests call the same launchers, compiled with the emulator, with host memory. The
 * emulation library's build renames every kiln_ symbol it defines to kiln_emu_… after
 * compiling (kernels/emu/emu_names.cmake), so it links next to a real CUDA libkiln. */
#ifndef KILN_CUDA_LAUNCH_H
#define KILN_CUDA_LAUNCH_H

#include <kiln/core.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A strided tensor: element 0, its dtype, shape and strides in elements (0 on
 * expanded axes). Inputs are broadcast to the output's shape by the launchers. */
typedef struct {
    void *data;
    kiln_dtype dtype;
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    int64_t strides[KILN_MAX_DIMS];
} kiln_cuda_tensor;

/* out = f(x) for kiln_unary_kind kind with parameters a, b (f32 or f64, one dtype). */
kiln_status kiln_cuda_launch_unary(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, int kind, double a,
                                   double b, void *stream);
/* out = dL/dx from g, x, y = f(x). */
kiln_status kiln_cuda_launch_unary_backward(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                            const kiln_cuda_tensor *x, const kiln_cuda_tensor *y, int kind,
                                            double a, double b, void *stream);
kiln_status kiln_cuda_launch_binary(const kiln_cuda_tensor *out, const kiln_cuda_tensor *a,
                                    const kiln_cuda_tensor *b, int kind, void *stream);
/* The gradient of side (0: a, 1: b) at the broadcast shape, before any sum-to. */
kiln_status kiln_cuda_launch_binary_backward(const kiln_cuda_tensor *out, const kiln_cuda_tensor *g,
                                             const kiln_cuda_tensor *a, const kiln_cuda_tensor *b, int kind,
                                             int side, void *stream);
/* out = cond != 0 ? a : b; cond of any dtype. */
kiln_status kiln_cuda_launch_where(const kiln_cuda_tensor *out, const kiln_cuda_tensor *cond,
                                   const kiln_cuda_tensor *a, const kiln_cuda_tensor *b, void *stream);
/* out = x converted to out's dtype (any dtypes, as the CPU's copy converts). */
kiln_status kiln_cuda_launch_copy(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, void *stream);
kiln_status kiln_cuda_launch_fill(const kiln_cuda_tensor *out, double value, void *stream);
/* Element i of the (contiguous) out draws Philox counter offset + i, as on the CPU. */
kiln_status kiln_cuda_launch_rand(const kiln_cuda_tensor *out, uint64_t seed, uint64_t offset, int normal,
                                  double a, double b, void *stream);
/* Bytes of device scratch cuda_launch_sum needs for these shapes (0 for none). */
size_t kiln_cuda_sum_scratch_bytes(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, uint32_t mask);
/* out (keepdim shape) = sum of x over the axes set in mask; scratch as asked for above. */
kiln_status kiln_cuda_launch_sum(const kiln_cuda_tensor *out, const kiln_cuda_tensor *x, uint32_t mask,
                                 void *scratch, void *stream);

/* Checks the launch just made (and, in sync-debug mode, its completion); the
 * error names the kernel, file and line. */
kiln_status kiln_cuda_launch_check(const char *kernel, void *stream, const char *file, int line);

/* From the core (core/error.c, core/cuda_device.c). */
kiln_status kiln__error(kiln_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
bool kiln__cuda_sync_debug(void);

#ifdef __cplusplus
}
#endif
#endif

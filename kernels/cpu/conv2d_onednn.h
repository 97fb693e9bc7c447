/* The CPU convolutions' oneDNN path (conv2d_onednn.c): f32 forward, backward_input and
 * backward_weight (oneDNN's backward-data and backward-weights) through cached oneDNN
 * primitives, tried by conv2d.c before its own im2col + BLAS path, which runs whenever
 * this one declines. */
#ifndef KILN_CPU_CONV_ONEDNN_H
#define KILN_CPU_CONV_ONEDNN_H

#include "cpu.h"
#include "../conv2d_geometry.h"

/* Runs one pass of call (conv2d.c's operand order: forward x, w[, b] -> y;
 * backward_input gy, w[, b] -> dx, b added per output channel (conv_transpose2d);
 * backward_weight gy, x -> dw) on oneDNN, then ReLU in place when relu.
 * Returns false, touching nothing, when oneDNN is not built in, switched off, the
 * dtype is not f32 or oneDNN cannot run the geometry: the caller runs its own path.
 * Returns true with *st set once it ran (or failed: out of memory, a oneDNN error). */
bool kiln_cpu_conv2d_onednn(const kiln_op_call *call, kiln_conv_pass pass, const kiln_conv_geometry *g,
                            bool relu, kiln_status *st);

/* What the oneDNN path did since the process started, for the tests: passes it ran,
 * calls it declined on a cached "not supported" answer, primitives it built. */
typedef struct {
    int64_t runs, declined, primitives_created;
} kiln_onednn_counters;
kiln_onednn_counters kiln__onednn_counters(void);

#endif

/* The CPU convolutions' oneDNN path (conv2d_onednn.c): f32 forward, backward-data and
 * backward-weights through cached oneDNN primitives, tried by conv2d.c before its own
 * im2col + BLAS path, which runs whenever this one declines. */
#ifndef KILN_CPU_CONV_ONEDNN_H
#define KILN_CPU_CONV_ONEDNN_H

#include "cpu.h"

/* One conv2d seen from its forward side: input (n, cin, h, w), weight
 * (cout, cin/groups, kh, kw), output (n, cout, ho, wo); ph/pw the top/left padding. */
typedef struct {
    int64_t n, cin, h, w, cout, ho, wo, kh, kw;
    int64_t sh, sw, ph, pw, dh, dw, groups;
} kiln_conv_geom;

typedef enum { KILN_CONV_FORWARD, KILN_CONV_BACKWARD_DATA, KILN_CONV_BACKWARD_WEIGHTS } kiln_conv_pass;

/* Runs one pass of call (conv2d.c's operand order: forward x, w[, b] -> y;
 * backward-data gy, w[, b] -> dx, b added per output channel (conv_transpose2d);
 * backward-weights gy, x -> dw) on oneDNN, then ReLU in place when relu.
 * Returns false, touching nothing, when oneDNN is not built in, switched off, the
 * dtype is not f32 or oneDNN cannot run the geometry: the caller runs its own path.
 * Returns true with *st set once it ran (or failed: out of memory, a oneDNN error). */
bool kiln_cpu_conv_onednn(const kiln_op_call *call, kiln_conv_pass pass, const kiln_conv_geom *g, bool relu,
                          kiln_status *st);

/* What the oneDNN path did since the process started, for the tests: passes it ran,
 * calls it declined on a cached "not supported" answer, primitives it built. */
typedef struct {
    int64_t runs, declined, primitives_created;
} kiln_onednn_counters;
kiln_onednn_counters kiln__onednn_counters(void);

#endif

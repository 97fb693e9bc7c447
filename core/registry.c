/* The op registry: every kiln_op_def, as the linker gathered them. Each definition is
 * marked KILN_REGISTER in its front-end (core/internal.h), which puts it in the
 * "kiln_ops" section; the linker concatenates that section from every object of the
 * program (or of libkiln.so) and defines __start_kiln_ops and __stop_kiln_ops around it.
 * So the list of ops is the set of definitions itself: tests walk it (a backward rule
 * or the explicit not-differentiable mark on every op, a CUDA kernel for every op in
 * CUDA builds) and no op can be missing from it. A program linked against libkiln.a
 * holds the ops of the objects it pulled in; the tests link the whole archive. */
#include "internal.h"

#include <pthread.h>

extern const kiln_op_def __start_kiln_ops[];
extern const kiln_op_def __stop_kiln_ops[];

/* The definitions lie at the stride of sizeof(kiln_op_def) (the type's alignment is a
 * multiple of its size); padding a compiler or linker might leave between files is
 * zeros, a definition without a name, and is skipped. */
enum { MAX_OPS = 512 };
static const kiln_op_def *g_ops[MAX_OPS];
static int g_count;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void gather(void) {
    for (const kiln_op_def *op = __start_kiln_ops; op < __stop_kiln_ops && g_count < MAX_OPS; op++)
        if (op->name) g_ops[g_count++] = op;
}

const kiln_op_def *const *kiln__op_registry(int *count) {
    pthread_once(&g_once, gather);
    *count = g_count;
    return g_ops;
}

kiln_kernel_fn kiln__kernel(const kiln_op_def *op, kiln_device_type type) {
    return type == KILN_DEVICE_CUDA ? op->cuda : op->cpu;
}

/* Private structures of the core: tensors, storage, tape nodes, scopes and the op
 * registry. Only library sources and white-box tests include this header. */
#ifndef KILN_INTERNAL_H
#define KILN_INTERNAL_H

#include "kiln.h"
#include "memory_pool.h"

#include <stdarg.h>
#include <string.h>

typedef struct kiln_node kiln_node;
typedef struct kiln_op_def kiln_op_def;

/* Reference-counted bytes on one device; views share it. */
typedef struct kiln_storage {
    kiln_pool_block *block; /* NULL for storage that kiln does not own */
    void *data;
    size_t nbytes;
    kiln_device device;
    int refcount;
    /* storage wrapping memory kiln does not own (kiln_tensor_from_external): called
     * with deleter_ctx when the last view dies */
    void (*deleter)(void *ctx);
    void *deleter_ctx;
} kiln_storage;

struct kiln_tensor {
    kiln_storage *storage;
    int64_t offset; /* bytes from storage->data to element 0 */
    int ndim;
    int64_t shape[KILN_MAX_DIMS];
    int64_t strides[KILN_MAX_DIMS]; /* bytes; 0 on expanded axes */
    kiln_dtype dtype;
    kiln_device device;
    bool requires_grad;
    kiln_tensor *grad;  /* leaf gradient, owned by this tensor */
    bool is_grad;       /* this tensor is some leaf's .grad (kiln__set_grad) */
    kiln_node *grad_fn; /* node that produced this tensor, NULL for leaves */
    bool kept;          /* cut from the tape by kiln_scope_keep (named in backward's error) */
    kiln_scope *scope;  /* owner; NULL when owned by another tensor (a .grad) */
    kiln_tensor *scope_prev, *scope_next;
};

#define KILN_NODE_MAX_SAVED 4

struct kiln_node {
    const kiln_op_def *op;
    int nin;
    kiln_tensor **inputs;
    bool *needs_grad; /* per input: it (or something before it) requires grad */
    kiln_tensor *output;
    void *attrs; /* copy of the op's attribute struct */
    kiln_tensor *saved[KILN_NODE_MAX_SAVED]; /* extra tensors kept for backward */
    kiln_tensor *grad_accum;                 /* gradient gathered for output during backward */
    /* A backward without retain_graph walked this node: walking it again would add
     * its gradients a second time (PyTorch refuses that too). */
    bool released;
    uint64_t visit_mark;
    kiln_scope *scope;
    kiln_node *scope_next;
};

struct kiln_scope {
    kiln_scope *parent;
    kiln_tensor *tensors; /* intrusive list of owned tensors */
    kiln_node *nodes;
    bool is_root;
};

/* ---- the op registry ------------------------------------------------------- */

typedef struct {
    const kiln_op_def *op;
    int nin;
    kiln_tensor *const *in;
    kiln_tensor *out;
    const void *attrs;
} kiln_op_call;

typedef kiln_status (*kiln_kernel_fn)(const kiln_op_call *call);
/* Fills gin[i] (a tensor shaped like input i) for every i with node->needs_grad[i]. */
typedef void (*kiln_backward_fn)(kiln_node *node, kiln_tensor *gout, kiln_tensor **gin);

/* One op: written once, in its front-end, with designated initializers that name both
 * kernels, e.g.
 *     KILN_REGISTER const kiln_op_def kiln_op_concat = {
 *         .name = "concat", .cpu = kiln_cpu_concat, .cuda = KILN_CUDA_KERNEL(kiln_cuda_concat),
 *         .backward = concat_bw, .attrs_size = sizeof(kiln_axis_attrs)};
 * KILN_REGISTER places the definition in the "kiln_ops" linker section, which is the
 * op list: the registry walks it (kiln__op_registry), so an op cannot be left out of it.
 * The type is aligned to 64 bytes, a multiple of its size, so the definitions of every
 * file lie in the section at one stride whatever alignment the compiler gives a
 * large object (x86-64 GCC raises those to 32 or 64 bytes). */
struct kiln_op_def {
    const char *name;
    kiln_kernel_fn cpu;  /* the CPU kernel (kernels/cpu/); kiln__kernel_noop for views */
    kiln_kernel_fn cuda; /* the CUDA kernel (kernels/cuda/); NULL in a CPU-only build, or
                            for an op with no CUDA kernel ("no kernel for cuda") */
    kiln_backward_fn backward;
    bool not_differentiable; /* an explicit mark; backward must then be NULL */
    size_t attrs_size;
    /* Optional: the user-facing name for these attrs when one def serves several
     * ops (unary: "log", "sqrt"), so messages name the op the user called. */
    const char *(*label)(const void *attrs);
} __attribute__((aligned(64)));

#define KILN_REGISTER __attribute__((used, section("kiln_ops")))
/* The one #if of the op list: a CUDA kernel is named in every build and linked only
 * in CUDA builds, so a CPU-only libkiln has no CUDA symbols. */
#ifdef KILN_HAVE_CUDA
#define KILN_CUDA_KERNEL(fn) (fn)
#else
#define KILN_CUDA_KERNEL(fn) NULL
#endif

/* Every registered op (the "kiln_ops" section of the program or library). */
const kiln_op_def *const *kiln__op_registry(int *count);
/* The kernel of op for a device type (op->cpu or op->cuda); NULL when it has none. */
kiln_kernel_fn kiln__kernel(const kiln_op_def *op, kiln_device_type type);

/* Runs op's kernel for out's device with the given inputs, then records a tape
 * node when grad is on and a differentiable input requires grad. On failure out
 * is freed and NULL returned. out may be a view created by kiln__view. */
kiln_tensor *kiln__run(const kiln_op_def *op, int nin, kiln_tensor *const *in, kiln_tensor *out,
                       const void *attrs);
/* Saves t on the node of out (for backward); no-op when out recorded nothing. */
void kiln__save(kiln_tensor *out, int slot, kiln_tensor *t);
/* A kernel that does nothing, for ops whose forward is pure view arithmetic. */
kiln_status kiln__kernel_noop(const kiln_op_call *call);

/* ---- errors ------------------------------------------------------------------ */

/* Records status and a formatted message unless an earlier error is pending. */
kiln_status kiln__error(kiln_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* True when every input is non-NULL, on one device and of a float dtype the device
 * computes; otherwise records an error naming op and returns false. */
bool kiln__check_float_inputs(const char *op, int n, kiln_tensor *const *ts);
/* Non-NULL and on one device only. */
bool kiln__check_inputs(const char *op, int n, kiln_tensor *const *ts);
/* "[2, 3, 4]" */
const char *kiln__shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
/* Normalises a possibly negative axis; records an error naming op when out of range. */
bool kiln__axis(const char *op, int axis, int ndim, int *out);

/* ---- tensor construction (internal) ------------------------------------------- */

/* A contiguous tensor in the current scope. */
kiln_tensor *kiln__new(int ndim, const int64_t *shape, kiln_dtype dt, kiln_device dev);
/* A contiguous tensor shaped like t, same dtype and device. */
kiln_tensor *kiln__new_like(const kiln_tensor *t);
/* A view of base's storage with the given geometry, in the current scope. */
kiln_tensor *kiln__view(kiln_tensor *base, int ndim, const int64_t *shape, const int64_t *strides,
                        int64_t offset);
/* Takes t out of its scope: the caller (a module) owns it and frees it with kiln_tensor_free. */
void kiln__tensor_disown(kiln_tensor *t);
/* Points t (keeping its shape and dtype, made contiguous) at base's storage from byte
 * offset, releasing its old storage: how parameters move into an arena in place. */
void kiln__tensor_rebind(kiln_tensor *t, kiln_tensor *base, int64_t offset);
/* Contiguous byte strides for shape. */
void kiln__contiguous_strides(int ndim, const int64_t *shape, size_t elsize, int64_t *strides);
int64_t kiln__numel(int ndim, const int64_t *shape);

/* ---- checked size arithmetic --------------------------------------------------------
 * Every tensor kiln makes or views satisfies one bound: the product of its sizes (an
 * empty axis counted as 1) times its element size fits in int64. So numel, numel *
 * elsize, every contiguous stride and every offset inside the tensor are representable,
 * and kernels may multiply sizes without checks of their own. Size arithmetic on
 * numbers that do not come from such a tensor (user shapes, file headers, conv
 * geometry) goes through kiln__mul_i64 / kiln__add_i64. */
static inline bool kiln__mul_i64(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool kiln__add_i64(int64_t a, int64_t b, int64_t *out) { return !__builtin_add_overflow(a, b, out); }
/* True when shape (sizes >= 0) times elsize bytes satisfies the bound above; else
 * records KILN_STATUS_INVALID_ARGUMENT naming op and the shape. */
bool kiln__check_extent(const char *op, int ndim, const int64_t *shape, size_t elsize);
/* kiln__numel with overflow checking: false (and no error recorded) when the product
 * of the sizes does not fit in int64. */
bool kiln__numel_checked(int ndim, const int64_t *shape, int64_t *numel);
static inline char *kiln__ptr(const kiln_tensor *t) { return (char *)t->storage->data + t->offset; }
static inline bool kiln__is_float(kiln_dtype dt) { return dt == KILN_F32 || dt == KILN_F64; }

/* Broadcast shape of a and b (NumPy rules); records an error naming op on mismatch. */
bool kiln__broadcast_shape(const char *op, int an, const int64_t *ashape, int bn, const int64_t *bshape,
                           int *outn, int64_t *out);
/* Sums g down to shape (ndim, shape) over broadcast axes: the gradient of a broadcast. */
kiln_tensor *kiln__sum_to(kiln_tensor *g, int ndim, const int64_t *shape);

/* ---- scopes (internal) ---------------------------------------------------------- */
/* The innermost open scope of this thread (the root scope when none is open). */
kiln_scope *kiln__scope_current(void);
/* Closes s, which must be the innermost open scope, and hands everything it owns
 * (tensors and tape nodes) to its parent, as if s had never been opened: what a lean
 * module forward does when the tape recorded inside it (layers/module.c). */
void kiln__scope_merge(kiln_scope *s);

/* ---- autograd internals ----------------------------------------------------------- */
bool kiln__grad_mode(void);
/* Makes g (taken out of its scope) the gradient owned by leaf, freeing an old one. */
void kiln__set_grad(kiln_tensor *leaf, kiln_tensor *g);
/* Adds g into leaf->grad (allocating it on first use). */
kiln_status kiln__accumulate_grad(kiln_tensor *leaf, kiln_tensor *g);

/* ---- the device layer --------------------------------------------------------------- */
kiln_pool *kiln__device_pool(kiln_device d);
/* Raw copies between devices; sizes in bytes, both sides contiguous. */
kiln_status kiln__memcpy(void *dst, kiln_device ddev, const void *src, kiln_device sdev, size_t n);

#endif

/* Helpers of the emulated kernel tests: inputs in several memory layouts, and a
 * runner that calls an op's CPU kernel and its emulated CUDA kernel (the real
 * kiln_cuda_<op> glue and launcher, built with kernels/emu) on the same inputs and
 * compares the whole storage of their outputs, so stray writes outside a strided
 * output are caught too. */
#ifndef KILN_TEST_EMU_COMPARE_H
#define KILN_TEST_EMU_COMPARE_H

#include "../support/kiln_test.h"
#include "../../core/internal.h"
#include "../../core/op_attrs.h"
#include "../../kernels/cpu/cpu.h"
#include "../../kernels/cuda/launch.h"
#include "../../kernels/elementwise_math.h"

#include <stdlib.h>

/* The registry entries of the core ops (core/elementwise.c, core/reduce.c). */
extern const kiln_op_def kiln_op_name;
extern const kiln_op_def kiln_op_unary;
extern const kiln_op_def kiln_op_unary_backward;
extern const kiln_op_def kiln_op_binary;
extern const kiln_op_def kiln_op_binary_backward;
extern const kiln_op_def kiln_op_where;
extern const kiln_op_def kiln_op_copy;
extern const kiln_op_def kiln_op_fill;
extern const kiln_op_def kiln_op_rand;
extern const kiln_op_def kiln_op_sum;
extern const kiln_op_def kiln_op_reshape;
extern const kiln_op_def kiln_op_permute;
extern const kiln_op_def kiln_op_slice;
extern const kiln_op_def kiln_op_expand;

/* The emulated kiln_cuda_<op> of kernels/cuda/glue.c. */
#define EC_EMU_KERNEL(name) kiln_status kiln_emu_cuda_##name(const kiln_op_call *call)
EC_EMU_KERNEL(unary);
EC_EMU_KERNEL(unary_backward);
EC_EMU_KERNEL(binary);
EC_EMU_KERNEL(binary_backward);
EC_EMU_KERNEL(where);
EC_EMU_KERNEL(copy);
EC_EMU_KERNEL(fill);
EC_EMU_KERNEL(rand);
EC_EMU_KERNEL(sum);

typedef enum {
    EC_CONTIG,     /* contiguous, 64-byte aligned: the vector-load path */
    EC_OFFSET,     /* contiguous but one element in: unaligned, so not the vector path */
    EC_TRANSPOSED, /* the last two axes swapped in memory */
    EC_SLICED,     /* every other element of a twice-as-long last axis */
    EC_LAYOUTS
} ec_layout;

static const char *const ec_layout_names[EC_LAYOUTS] = {"contiguous", "offset", "transposed", "sliced"};

static inline double ec_uniform(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(*s >> 11) * 0x1p-53;
}

/* Fills a contiguous CPU tensor with values in [lo, hi) on a grid of step quant
 * (quant > 0 makes ties, e.g. for maximum/minimum), from seed. */
static inline void ec_fill_random(kiln_tensor *t, double lo, double hi, double quant, uint64_t seed) {
    int64_t n = kiln_tensor_numel(t);
    double *v = malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) {
        double x = lo + (hi - lo) * ec_uniform(&seed);
        v[i] = quant > 0 ? lo + quant * floor((x - lo) / quant) : x;
    }
    kiln_tensor *src = kiln_tensor_from_host(v, t->ndim, t->shape, KILN_F64, KILN_CPU);
    cr_assert(src && kiln_tensor_copy_(t, src) == KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor_free(src);
    free(v);
}

/* A base tensor and a view of it with the logical shape (ndim, shape) in layout l. */
static inline kiln_tensor *ec_view(kiln_dtype dt, int ndim, const int64_t *shape, ec_layout l, kiln_tensor **base_out) {
    int64_t s[KILN_MAX_DIMS];
    for (int i = 0; i < ndim; i++) s[i] = shape[i];
    kiln_tensor *base = NULL, *v = NULL;
    int64_t n = kiln__numel(ndim, shape);
    switch (l) {
    case EC_CONTIG: base = v = kiln_tensor_zeros(ndim, s, dt, KILN_CPU); break;
    case EC_OFFSET: {
        int64_t m = n + 1;
        base = kiln_tensor_zeros(1, &m, dt, KILN_CPU);
        v = kiln_reshape(kiln_slice(base, 0, 1, m, 1), ndim, s);
        break;
    }
    case EC_TRANSPOSED:
        cr_assert(ndim >= 2);
        s[ndim - 1] = shape[ndim - 2];
        s[ndim - 2] = shape[ndim - 1];
        base = kiln_tensor_zeros(ndim, s, dt, KILN_CPU);
        v = kiln_transpose(base, ndim - 2, ndim - 1);
        break;
    default:
        s[ndim - 1] = 2 * shape[ndim - 1];
        base = kiln_tensor_zeros(ndim, s, dt, KILN_CPU);
        v = kiln_slice(base, ndim - 1, 1, s[ndim - 1], 2);
        break;
    }
    cr_assert(v, "%s", kiln_last_error());
    if (base_out) *base_out = base;
    return v;
}

/* A random input of logical shape (ndim, shape) laid out as l. */
static inline kiln_tensor *ec_input(kiln_dtype dt, int ndim, const int64_t *shape, ec_layout l, double lo, double hi,
                                    double quant, uint64_t seed) {
    kiln_tensor *base;
    kiln_tensor *v = ec_view(dt, ndim, shape, l, &base);
    ec_fill_random(base, lo, hi, quant, seed);
    return v;
}

/* Compares two contiguous host copies element by element: bit-exact when exact,
 * else within atol + rtol*|cpu| (NaN matching NaN). */
static inline void ec_compare(const kiln_tensor *cpu, const kiln_tensor *emu, bool exact, double atol, double rtol,
                              const char *what) {
    kiln_dtype dt = cpu->dtype;
    size_t es = kiln_dtype_size(dt);
    int64_t n = kiln_tensor_numel(cpu);
    char *a = malloc(es * (size_t)(n ? n : 1)), *b = malloc(es * (size_t)(n ? n : 1));
    cr_assert_eq(kiln_tensor_to_host(cpu, a, es * (size_t)n), KILN_STATUS_OK);
    cr_assert_eq(kiln_tensor_to_host(emu, b, es * (size_t)n), KILN_STATUS_OK);
    for (int64_t i = 0; i < n; i++) {
        const char *pa = a + i * (int64_t)es, *pb = b + i * (int64_t)es;
        bool ok;
        double x = 0, y = 0;
        if (dt == KILN_F32) x = *(const float *)pa, y = *(const float *)pb;
        else if (dt == KILN_F64) x = *(const double *)pa, y = *(const double *)pb;
        if (exact || !kiln__is_float(dt)) ok = memcmp(pa, pb, es) == 0;
        else ok = (x != x && y != y) || fabs(x - y) <= atol + rtol * fabs(x);
        if (!ok) {
            uint64_t ua = 0, ub = 0;
            memcpy(&ua, pa, es);
            memcpy(&ub, pb, es);
            free(a);
            free(b);
            cr_assert_fail("%s: storage element %lld differs: cpu %.17g (0x%llx), emulated cuda %.17g (0x%llx)", what,
                           (long long)i, x, (unsigned long long)ua, y, (unsigned long long)ub);
        }
    }
    free(a);
    free(b);
}

/* Runs op on both kernels into outputs of logical shape (ndim, shape), dtype odt,
 * laid out as l; their whole base storages (pre-filled alike with a sentinel) must
 * agree. exact: bit for bit; else within atol + rtol*|cpu|. */
static inline void ec_run(const kiln_op_def *op, kiln_kernel_fn cpu, kiln_kernel_fn emu, int nin,
                          kiln_tensor *const *in, const void *attrs, kiln_dtype odt, int ndim, const int64_t *shape,
                          ec_layout l, bool exact, double atol, double rtol, const char *what) {
    kiln_tensor *base_c, *base_e;
    kiln_tensor *out_c = ec_view(odt, ndim, shape, l, &base_c);
    kiln_tensor *out_e = ec_view(odt, ndim, shape, l, &base_e);
    cr_assert_eq(kiln_tensor_fill(base_c, 77.0), KILN_STATUS_OK);
    cr_assert_eq(kiln_tensor_fill(base_e, 77.0), KILN_STATUS_OK);
    kiln_op_call cc = {op, nin, in, out_c, attrs}, ce = {op, nin, in, out_e, attrs};
    cr_assert_eq(cpu(&cc), KILN_STATUS_OK, "%s: cpu kernel: %s", what, kiln_last_error());
    cr_assert_eq(emu(&ce), KILN_STATUS_OK, "%s: emulated cuda kernel: %s", what, kiln_last_error());
    ec_compare(base_c, base_e, exact, atol, rtol, what);
}

#endif

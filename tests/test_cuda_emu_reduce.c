/* The CUDA sum (kernels/cuda/reduce.cu) through the emulator against the CPU sum:
 * each of its three paths (a thread per output; a block per output; several blocks
 * per output plus a second pass), f32 and f64, reduced axes leading, trailing,
 * interleaved and all, with transposed and broadcast inputs. Both accumulate in
 * double but in different orders: f64 agrees to 1e-12 relative, f32 to 1e-6 (the
 * final rounding to float may differ by an ulp). */
#include "emu/emu_compare.h"

TestSuite(cuda_emu_reduce, .init = kiln_test_setup, .fini = kiln_test_teardown);

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
    uint32_t mask;
    ec_layout layout;
} sum_case;

static const sum_case cases[] = {
    {"short columns: a thread per output", 2, {37, 5}, 1u, EC_CONTIG},
    {"bias gradient: [200, 1030] over rows, a thread per output", 2, {200, 1030}, 1u, EC_CONTIG},
    {"rows of 1000: a block per output", 2, {40, 1000}, 2u, EC_CONTIG},
    {"everything: split over 5 blocks, second pass", 1, {20003}, 1u, EC_CONTIG},
    {"3 long rows: split over 3 blocks each", 2, {3, 9001}, 2u, EC_CONTIG},
    {"interleaved axes 0 and 2", 4, {5, 7, 9, 11}, 5u, EC_CONTIG},
    {"axes 1 and 3 of a transposed input", 4, {5, 7, 9, 11}, 10u, EC_TRANSPOSED},
    {"all axes of a sliced input", 3, {6, 7, 130}, 7u, EC_SLICED},
    {"leading axis, unaligned input", 3, {65, 3, 33}, 1u, EC_OFFSET},
    {"size-1 reduced axis", 3, {4, 1, 70}, 2u, EC_CONTIG},
    {"empty reduced axis gives zeros", 2, {6, 0}, 2u, EC_CONTIG},
};

static void run_case(const sum_case *c, kiln_dtype dt, kiln_tensor *x) {
    int64_t oshape[4];
    for (int i = 0; i < c->ndim; i++) oshape[i] = (c->mask & (1u << i)) ? 1 : c->shape[i];
    kiln_reduce_attrs at = {c->mask};
    char what[160];
    snprintf(what, sizeof what, "sum %s, %s", c->name, kiln_dtype_name(dt));
    double rtol = dt == KILN_F64 ? 1e-12 : 1e-6;
    ec_run(&kiln_op_sum, kiln_cpu_sum, kiln_emu_cuda_sum, 1, &x, &at, dt, c->ndim, oshape, EC_CONTIG, false, 1e-12,
           rtol, what);
}

KT_TEST(cuda_emu_reduce, sum_every_path_and_layout) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            kiln_scope *s = kiln_scope_begin();
            run_case(&cases[k], dt, ec_input(dt, cases[k].ndim, cases[k].shape, cases[k].layout, -1, 1, 0, 40 + k));
            kiln_scope_end(s);
        }
    }
}

KT_TEST(cuda_emu_reduce, sum_of_broadcast_input) {
    /* a [1, 9, 1] tensor expanded to [70, 9, 40]: the reduction reads stride-0 axes */
    const int64_t small[3] = {1, 9, 1};
    sum_case c = {"expanded input over axes 0 and 2", 3, {70, 9, 40}, 5u, EC_CONTIG};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *x = kiln_expand(ec_input(dt, 3, small, EC_CONTIG, -1, 1, 0, 3), 3, c.shape);
        run_case(&c, dt, x);
    }
}

KT_TEST(cuda_emu_reduce, sum_is_deterministic) {
    /* no atomics: two runs of the split path agree bit for bit */
    const int64_t shape[1] = {20003};
    int64_t one = 1;
    kiln_tensor *x = ec_input(KILN_F32, 1, shape, EC_CONTIG, -1, 1, 0, 8);
    kiln_tensor *o1 = kiln_tensor_zeros(1, &one, KILN_F32, KILN_CPU), *o2 = kiln_tensor_zeros(1, &one, KILN_F32, KILN_CPU);
    kiln_reduce_attrs at = {1u};
    kiln_op_call c1 = {&kiln_op_sum, 1, &x, o1, &at}, c2 = {&kiln_op_sum, 1, &x, o2, &at};
    cr_assert_eq(kiln_emu_cuda_sum(&c1), KILN_STATUS_OK);
    cr_assert_eq(kiln_emu_cuda_sum(&c2), KILN_STATUS_OK);
    ec_compare(o1, o2, true, 0, 0, "two runs");
}

/* The cases above reach the split path: the launcher asks for scratch exactly there. */
KT_TEST(cuda_emu_reduce, split_path_is_taken) {
    float dummy;
    kiln_cuda_tensor x1 = {&dummy, KILN_F32, 1, {20003}, {1}}, o1 = {&dummy, KILN_F32, 1, {1}, {1}};
    cr_expect_eq(kiln_emu_cuda_sum_scratch_bytes(&o1, &x1, 1u), 5 * sizeof(double));
    kiln_cuda_tensor x2 = {&dummy, KILN_F32, 2, {3, 9001}, {9001, 1}}, o2 = {&dummy, KILN_F32, 2, {3, 1}, {1, 1}};
    cr_expect_eq(kiln_emu_cuda_sum_scratch_bytes(&o2, &x2, 2u), 3 * 3 * sizeof(double));
    kiln_cuda_tensor x3 = {&dummy, KILN_F32, 2, {40, 1000}, {1000, 1}}, o3 = {&dummy, KILN_F32, 2, {40, 1}, {1, 1}};
    cr_expect_eq(kiln_emu_cuda_sum_scratch_bytes(&o3, &x3, 2u), 0);
}

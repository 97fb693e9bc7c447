/* The custom CUDA kernels of linear, batch norm and dropout through the emulator against the CPU kernels:
 * linear's bias gradient (kernels/cuda/linear.cu: one and several row slices),
 * batch norm statistics, forward and backward (batch_norm.cu), and dropout
 * (dropout.cu), f32 and f64, at sizes that are not multiples of the 256-thread block,
 * with transposed, sliced, expanded and unfoldable inputs. Exact where both sides do
 * the same IEEE operations (batch-norm forward, eval-mode dx, dropout); sums agree to
 * 1e-12 (f64) and 1e-6 (f32) relative since their order differs. The cuBLAS products
 * of linear are checked on a GPU only (tests/test_cuda_blas.c). */
#include "emu/emu_compare.h"
#include "../kernels/cpu/layers.h"

TestSuite(cuda_emu_linear_batch_norm_dropout, .init = kiln_test_setup, .fini = kiln_test_teardown);

extern const kiln_op_def kiln_op_batch_norm;
extern const kiln_op_def kiln_op_batch_norm_backward;
extern const kiln_op_def kiln_op_batch_norm_stats;
extern const kiln_op_def kiln_op_dropout;
extern const kiln_op_def kiln_op_linear_backward;

kiln_status kiln_emu_cuda_linear_backward(const kiln_op_call *call);
kiln_status kiln_emu_cuda_batch_norm_stats(const kiln_op_call *call);
kiln_status kiln_emu_cuda_batch_norm(const kiln_op_call *call);
kiln_status kiln_emu_cuda_batch_norm_backward(const kiln_op_call *call);
kiln_status kiln_emu_cuda_dropout(const kiln_op_call *call);
size_t kiln_emu_cuda_bias_grad_scratch_bytes(int64_t rows, int64_t cols);

static double sum_rtol(kiln_dtype dt) { return dt == KILN_F64 ? 1e-12 : 1e-6; }

/* ---- linear: the bias gradient ------------------------------------------------------ */

static void bias_case(kiln_tensor *g, kiln_dtype dt, ec_layout out_layout, const char *name) {
    int64_t n = kiln_tensor_shape(g)[kiln_tensor_ndim(g) - 1];
    kiln_linear_bw_attrs at = {2};
    char what[160];
    snprintf(what, sizeof what, "bias gradient %s, %s, out %s", name, kiln_dtype_name(dt), ec_layout_names[out_layout]);
    ec_run(&kiln_op_linear_backward, kiln_cpu_linear_backward, kiln_emu_cuda_linear_backward, 1, &g, &at, dt, 1, &n,
           out_layout, false, 1e-12, sum_rtol(dt), what);
}

KT_TEST(cuda_emu_linear_batch_norm_dropout, linear_bias_gradient_every_layout) {
    static const struct {
        const char *name;
        int ndim;
        int64_t shape[3];
        ec_layout layout;
    } cases[] = {
        {"[37, 45]", 2, {37, 45}, EC_CONTIG},
        {"[3, 5, 70] leading axes folded", 3, {3, 5, 70}, EC_CONTIG},
        {"[1000, 33] split over row slices", 2, {1000, 33}, EC_CONTIG},
        {"[700, 3] split, few columns", 2, {700, 3}, EC_CONTIG},
        {"[45, 37] transposed", 2, {45, 37}, EC_TRANSPOSED},
        {"[29, 41] sliced", 2, {29, 41}, EC_SLICED},
        {"[4, 9, 13] offset", 3, {4, 9, 13}, EC_OFFSET},
        {"[1, 300] one row", 2, {1, 300}, EC_CONTIG},
        {"[77] a 1-d gradient", 1, {77}, EC_CONTIG},
        {"[0, 5] no rows: zeros", 2, {0, 5}, EC_CONTIG},
    };
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            kiln_scope *s = kiln_scope_begin();
            kiln_tensor *g = ec_input(dt, cases[k].ndim, cases[k].shape, cases[k].layout, -1, 1, 0, 10 + k);
            bias_case(g, dt, EC_CONTIG, cases[k].name);
            bias_case(g, dt, EC_SLICED, cases[k].name); /* a strided 1-d output */
            kiln_scope_end(s);
        }
    }
}

KT_TEST(cuda_emu_linear_batch_norm_dropout, linear_bias_gradient_of_expanded_and_unfoldable_gradients) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        /* the gradient of a sum: one row expanded to [600, 40] (row stride 0) */
        const int64_t one[2] = {1, 40}, big[2] = {600, 40};
        bias_case(kiln_expand(ec_input(dt, 2, one, EC_CONTIG, -1, 1, 0, 1), 2, big), dt, EC_CONTIG, "expanded rows");
        /* leading axes whose strides do not chain: copied, then summed */
        const int64_t s3[3] = {5, 3, 70};
        kiln_tensor *p = kiln_transpose(ec_input(dt, 3, s3, EC_CONTIG, -1, 1, 0, 2), 0, 1);
        bias_case(p, dt, EC_CONTIG, "[3, 5, 70] permuted leading axes");
    }
}

KT_TEST(cuda_emu_linear_batch_norm_dropout, linear_bias_gradient_paths_are_taken) {
    cr_expect_eq(kiln_emu_cuda_bias_grad_scratch_bytes(37, 45), 0);
    cr_expect_eq(kiln_emu_cuda_bias_grad_scratch_bytes(1000, 33), 3 * 33 * sizeof(double));
    cr_expect_gt(kiln_emu_cuda_bias_grad_scratch_bytes(700, 3), 0);
}

/* ---- batch norm ------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    int64_t shape[4];
    ec_layout layout;
} bn_case;

static const bn_case bn_cases[] = {
    {"[3, 5, 7, 11]", {3, 5, 7, 11}, EC_CONTIG},
    {"[2, 3, 20, 15] (600 per channel)", {2, 3, 20, 15}, EC_CONTIG},
    {"[3, 4, 9, 6] transposed H/W", {3, 4, 9, 6}, EC_TRANSPOSED},
    {"[2, 6, 5, 13] sliced W", {2, 6, 5, 13}, EC_SLICED},
    {"[4, 3, 1, 1] one pixel", {4, 3, 1, 1}, EC_OFFSET},
};

KT_TEST(cuda_emu_linear_batch_norm_dropout, batch_norm_statistics) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (size_t k = 0; k < sizeof bn_cases / sizeof bn_cases[0]; k++) {
            kiln_scope *s = kiln_scope_begin();
            /* an offset of 100 keeps the two-pass variance honest */
            kiln_tensor *x = ec_input(dt, 4, bn_cases[k].shape, bn_cases[k].layout, 99, 101, 0, 20 + k);
            int64_t os[2] = {2, bn_cases[k].shape[1]};
            char what[160];
            snprintf(what, sizeof what, "batch_norm_stats %s, %s", bn_cases[k].name, kiln_dtype_name(dt));
            ec_run(&kiln_op_batch_norm_stats, kiln_cpu_batch_norm_stats, kiln_emu_cuda_batch_norm_stats, 1, &x, NULL,
                   dt, 2, os, EC_CONTIG, false, 1e-12, sum_rtol(dt), what);
            kiln_scope_end(s);
        }
    }
}

/* Per-channel tensors: strided (every other element) for odd seeds. */
static kiln_tensor *chan(kiln_dtype dt, int64_t c, double lo, double hi, uint64_t seed) {
    return ec_input(dt, 1, &c, seed & 1 ? EC_SLICED : EC_CONTIG, lo, hi, 0, seed);
}

KT_TEST(cuda_emu_linear_batch_norm_dropout, batch_norm_forward_is_exact) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (size_t k = 0; k < sizeof bn_cases / sizeof bn_cases[0]; k++) {
            for (int affine = 0; affine < 2; affine++) {
                kiln_scope *s = kiln_scope_begin();
                const bn_case *bc = &bn_cases[k];
                int64_t c = bc->shape[1];
                kiln_tensor *in[5] = {ec_input(dt, 4, bc->shape, bc->layout, -2, 2, 0, 30 + k),
                                      affine ? chan(dt, c, 0.5, 1.5, 1) : NULL, affine ? chan(dt, c, -1, 1, 2) : NULL,
                                      chan(dt, c, -0.5, 0.5, 3), chan(dt, c, 0.1, 2, 4)};
                kiln_batch_norm_attrs at = {1e-5, 1, 0};
                char what[160];
                snprintf(what, sizeof what, "batch_norm %s, %s, %s", bc->name, affine ? "affine" : "no affine",
                         kiln_dtype_name(dt));
                ec_run(&kiln_op_batch_norm, kiln_cpu_batch_norm, kiln_emu_cuda_batch_norm, 5, in, &at, dt, 4,
                       bc->shape, bc->layout, true, 0, 0, what);
                kiln_scope_end(s);
            }
        }
    }
}

KT_TEST(cuda_emu_linear_batch_norm_dropout, batch_norm_backward_every_piece) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (size_t k = 0; k < sizeof bn_cases / sizeof bn_cases[0]; k++) {
            for (int training = 0; training < 2; training++) {
                for (int which = 0; which < 5; which++) { /* 4: dx from given sums */
                    kiln_scope *s = kiln_scope_begin();
                    const bn_case *bc = &bn_cases[k];
                    int64_t c = bc->shape[1];
                    kiln_tensor *in[5] = {ec_input(dt, 4, bc->shape, EC_CONTIG, -1, 1, 0, 50 + k),
                                          ec_input(dt, 4, bc->shape, bc->layout, -2, 2, 0, 60 + k),
                                          which == 0 && (k & 1) ? NULL : chan(dt, c, 0.5, 1.5, 5),
                                          chan(dt, c, -0.5, 0.5, 6), chan(dt, c, 0.1, 2, 7)};
                    kiln_batch_norm_attrs at = {1e-5, training, which == 4 ? 0 : which};
                    char what[160];
                    snprintf(what, sizeof what, "batch_norm_backward %s, which %d, %s, %s", bc->name, which,
                             training ? "training" : "eval", kiln_dtype_name(dt));
                    bool exact = which == 0 && !training; /* g·w·invstd: no sums */
                    int64_t two[2] = {2, c};
                    if (which == 4) {
                        /* the sums a which-3 call would give, in a strided (2, C) view: both
                         * sides read the same values, so dx agrees to the last bit */
                        kiln_tensor *in6[6] = {in[0], in[1], in[2], in[3], in[4],
                                               kiln_transpose(ec_input(dt, 2, (int64_t[]){c, 2}, EC_CONTIG, -3, 3, 0, 70 + k), 0, 1)};
                        ec_run(&kiln_op_batch_norm_backward, kiln_cpu_batch_norm_backward,
                               kiln_emu_cuda_batch_norm_backward, 6, in6, &at, dt, 4, bc->shape, bc->layout, true, 0, 0,
                               what);
                    } else if (which == 3)
                        ec_run(&kiln_op_batch_norm_backward, kiln_cpu_batch_norm_backward,
                               kiln_emu_cuda_batch_norm_backward, 5, in, &at, dt, 2, two, EC_CONTIG, false, 1e-12,
                               sum_rtol(dt), what);
                    else if (which == 0)
                        ec_run(&kiln_op_batch_norm_backward, kiln_cpu_batch_norm_backward,
                               kiln_emu_cuda_batch_norm_backward, 5, in, &at, dt, 4, bc->shape, bc->layout, exact, 1e-12,
                               sum_rtol(dt), what);
                    else
                        ec_run(&kiln_op_batch_norm_backward, kiln_cpu_batch_norm_backward,
                               kiln_emu_cuda_batch_norm_backward, 5, in, &at, dt, 1, &c, EC_SLICED, false, 1e-12,
                               sum_rtol(dt), what);
                    kiln_scope_end(s);
                }
            }
        }
    }
}

/* ---- dropout ------------------------------------------------------------------------------ */

KT_TEST(cuda_emu_linear_batch_norm_dropout, dropout_mask_matches_the_cpu_bit_for_bit) {
    static const struct {
        int ndim;
        int64_t shape[3];
        ec_layout layout;
    } cases[] = {{1, {1029}, EC_CONTIG}, {2, {37, 29}, EC_TRANSPOSED}, {3, {3, 7, 13}, EC_SLICED}, {2, {5, 61}, EC_OFFSET}};
    const double ps[] = {0.3, 0.5, 0.999, 1.0};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            for (size_t q = 0; q < sizeof ps / sizeof ps[0]; q++) {
                kiln_scope *s = kiln_scope_begin();
                kiln_tensor *x = ec_input(dt, cases[k].ndim, cases[k].shape, cases[k].layout, -3, 3, 0, 70 + k);
                kiln_dropout_attrs at = {ps[q], 0x123456789abcull + k, ((uint64_t)1 << 33) + 17 * q};
                char what[160];
                snprintf(what, sizeof what, "dropout p=%g case %zu (%s), %s", ps[q], k,
                         ec_layout_names[cases[k].layout], kiln_dtype_name(dt));
                /* the output in the input's layout too, so out and x strides differ or match */
                ec_run(&kiln_op_dropout, kiln_cpu_dropout, kiln_emu_cuda_dropout, 1, &x, &at, dt, cases[k].ndim,
                       cases[k].shape, k & 1 ? EC_CONTIG : cases[k].layout, true, 0, 0, what);
                kiln_scope_end(s);
            }
        }
    }
}

KT_TEST(cuda_emu_linear_batch_norm_dropout, dropout_keeps_about_one_minus_p) {
    /* a sanity check of the mask itself: 20003 draws at p = 0.3 keep 70% +- 1% */
    const int64_t n = 20003;
    kiln_tensor *x = kiln_tensor_full(1, &n, 1.0, KILN_F32, KILN_CPU), *y = kiln_tensor_zeros(1, &n, KILN_F32, KILN_CPU);
    kiln_dropout_attrs at = {0.3, 42, 7};
    kiln_op_call c = {&kiln_op_dropout, 1, &x, y, &at};
    cr_assert_eq(kiln_emu_cuda_dropout(&c), KILN_STATUS_OK, "%s", kiln_last_error());
    double *v = kt_values(y);
    int64_t kept = 0;
    for (int64_t i = 0; i < n; i++) {
        cr_assert(v[i] == 0 || fabs(v[i] - 1 / 0.7) < 1e-6, "element %lld is %g", (long long)i, v[i]);
        kept += v[i] != 0;
    }
    free(v);
    cr_expect(fabs((double)kept / (double)n - 0.7) < 0.01, "kept %lld of %lld", (long long)kept, (long long)n);
}

/* The dense float32 batch norm loops are compiled for SSE2, AVX2 and AVX-512 (isa.h; the
 * widest the CPU has runs, KILN_CPU_ISA caps it). Every clone must give the bits of the
 * SSE2 one, and dx from given sums must equal the emulated CUDA kernel's bit for bit. */
static kiln_tensor *bn_cpu(const kiln_tensor *like, int nin, kiln_tensor *const *in, const kiln_op_def *op,
                           kiln_kernel_fn k, const void *at, int ndim, const int64_t *shape) {
    kiln_tensor *out = ec_input(like->dtype, ndim, shape, EC_CONTIG, 0, 0, 0, 1);
    kiln_op_call call = {op, nin, in, out, at};
    cr_assert_eq(k(&call), KILN_STATUS_OK, "%s: %s", op->name, kiln_last_error());
    return out;
}

static void expect_same_bits(const kiln_tensor *a, const kiln_tensor *b, const char *what) {
    size_t n = (size_t)kiln_tensor_numel(a) * kiln_dtype_size(a->dtype);
    cr_expect(memcmp(kiln__ptr(a), kiln__ptr(b), n) == 0, "%s: this clone's bits differ from the SSE2 clone's", what);
}

KT_TEST(cuda_emu_linear_batch_norm_dropout, batch_norm_every_cpu_clone) {
    static const char *const isas[3] = {"sse2", "avx2", "avx512"};
    const char *old = getenv("KILN_CPU_ISA");
    char *saved = old ? strdup(old) : NULL;
    const int64_t shape[4] = {3, 4, 7, 13}; /* 91 per plane: vector body and a tail */
    int64_t c = shape[1], two[2] = {2, c};
    kiln_tensor *g = ec_input(KILN_F32, 4, shape, EC_CONTIG, -1, 1, 0, 90);
    kiln_tensor *x = ec_input(KILN_F32, 4, shape, EC_CONTIG, 97, 103, 0, 91);
    kiln_tensor *w = chan(KILN_F32, c, 0.5, 1.5, 92), *b = chan(KILN_F32, c, -0.5, 0.5, 94);
    kiln_tensor *ref[5] = {NULL};
    for (int k = 0; k < 3; k++) {
        setenv("KILN_CPU_ISA", isas[k], 1);
        char what[120];
        kiln_tensor *stats = bn_cpu(x, 1, &x, &kiln_op_batch_norm_stats, kiln_cpu_batch_norm_stats, NULL, 2, two);
        int64_t es = 4;
        kiln_tensor *mean = kiln__view(stats, 1, &c, &es, stats->offset);
        kiln_tensor *var = kiln__view(stats, 1, &c, &es, stats->offset + c * es);
        kiln_batch_norm_attrs fat = {1e-5, 1, 0}, sat = {1e-5, 1, 3}, dat = {1e-5, 1, 0};
        kiln_tensor *fin[5] = {x, w, b, mean, var};
        kiln_tensor *y = bn_cpu(x, 5, fin, &kiln_op_batch_norm, kiln_cpu_batch_norm, &fat, 4, shape);
        kiln_tensor *bin[5] = {g, x, w, mean, var};
        kiln_tensor *sums = bn_cpu(x, 5, bin, &kiln_op_batch_norm_backward, kiln_cpu_batch_norm_backward, &sat, 2, two);
        kiln_tensor *din[6] = {g, x, w, mean, var, sums};
        kiln_tensor *dx = bn_cpu(x, 6, din, &kiln_op_batch_norm_backward, kiln_cpu_batch_norm_backward, &dat, 4, shape);
        snprintf(what, sizeof what, "batch_norm dx from sums, %s clone", isas[k]);
        ec_run(&kiln_op_batch_norm_backward, kiln_cpu_batch_norm_backward, kiln_emu_cuda_batch_norm_backward, 6, din,
               &dat, KILN_F32, 4, shape, EC_CONTIG, true, 0, 0, what);
        kiln_tensor *got[5] = {stats, y, sums, dx, NULL};
        static const char *const names[4] = {"batch_norm_stats", "batch_norm", "batch_norm_backward sums",
                                             "batch_norm_backward dx"};
        for (int j = 0; j < 4; j++) {
            if (k == 0) {
                ref[j] = got[j];
                continue;
            }
            snprintf(what, sizeof what, "%s, %s clone", names[j], isas[k]);
            expect_same_bits(ref[j], got[j], what);
        }
    }
    if (saved) setenv("KILN_CPU_ISA", saved, 1);
    else unsetenv("KILN_CPU_ISA");
    free(saved);
}

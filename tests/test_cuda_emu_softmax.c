/* The CUDA softmax family (kernels/cuda/softmax.cu) through the emulator against the
 * CPU kernels: softmax, log_softmax and both backward ops over the channel axis of
 * NCHW (contiguous and as a permuted NHWC view, C = 7 and C = 40), the last axis
 * (7 and 257 units) and the first axis of transposed and sliced inputs, with an
 * expanded gradient, a strided output, huge logits, NaN and -inf rows; log_softmax at
 * |x| = 1e4 and 1e17 also against torch (tests/fixtures/gen_numerics.py).
 * Tolerances: the thread-per-position path (axis not contiguous in memory, or
 * shorter than 16) performs the CPU's operations in the CPU's order, so results must
 * agree bit for bit. The warp path adds its double sums in another order: f64 within
 * 1e-13 relative + 1e-14 absolute, f32 within 2 ulp (2.4e-7 relative + 1e-30). */
#include "emu/emu_compare.h"
#include "kernels/cpu/tensor_ops.h"
#include "fixtures/numerics_ref.h"

TestSuite(cuda_emu_softmax, .init = kiln_test_setup, .fini = kiln_test_teardown);

extern const kiln_op_def kiln_op_log_softmax;
extern const kiln_op_def kiln_op_log_softmax_backward;
extern const kiln_op_def kiln_op_softmax;
extern const kiln_op_def kiln_op_softmax_backward;

kiln_status kiln_emu_cuda_softmax(const kiln_op_call *call);
kiln_status kiln_emu_cuda_log_softmax(const kiln_op_call *call);
kiln_status kiln_emu_cuda_softmax_backward(const kiln_op_call *call);
kiln_status kiln_emu_cuda_log_softmax_backward(const kiln_op_call *call);

typedef enum { L_CONTIG, L_NHWC, L_TRANSPOSED, L_SLICED } layout;
static const char *const layout_names[] = {"contiguous", "permuted NHWC", "transposed", "sliced"};

/* A random input of logical shape (ndim, shape): contiguous, an NCHW view of NHWC
 * memory (4-d only), or ec_view's transposed / sliced layouts. */
static kiln_tensor *input(kiln_dtype dt, int ndim, const int64_t *shape, layout l, double lo, double hi,
                          uint64_t seed) {
    if (l == L_NHWC) {
        int64_t nhwc[4] = {shape[0], shape[2], shape[3], shape[1]};
        kiln_tensor *base = kiln_tensor_zeros(4, nhwc, dt, KILN_CPU);
        ec_fill_random(base, lo, hi, 0, seed);
        kiln_tensor *v = kiln_permute(base, (const int[]){0, 3, 1, 2});
        cr_assert(v, "%s", kiln_last_error());
        return v;
    }
    ec_layout el = l == L_CONTIG ? EC_CONTIG : l == L_TRANSPOSED ? EC_TRANSPOSED : EC_SLICED;
    return ec_input(dt, ndim, shape, el, lo, hi, 0, seed);
}

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
    int axis;
    layout l;
    bool warp; /* the launcher takes the warp-per-position path */
} sm_case;

static const sm_case cases[] = {
    {"NCHW channels, C=7, 3x43 pixels", 4, {2, 7, 3, 43}, 1, L_CONTIG, false},
    {"NCHW channels of an NHWC view, C=7", 4, {2, 7, 3, 43}, 1, L_NHWC, false},
    {"NCHW channels of an NHWC view, C=40", 4, {1, 40, 3, 11}, 1, L_NHWC, true},
    {"NCHW channels, C=40, 257x1 pixels", 4, {1, 40, 257, 1}, 1, L_CONTIG, false},
    {"last axis of 257", 2, {37, 257}, 1, L_CONTIG, true},
    {"last axis of 7", 2, {257, 7}, 1, L_CONTIG, false},
    {"first axis of a transposed input", 2, {37, 29}, 0, L_TRANSPOSED, true},
    {"last axis of a transposed input", 2, {37, 29}, 1, L_TRANSPOSED, false},
    {"last axis of a sliced input", 2, {29, 100}, 1, L_SLICED, false},
    {"middle axis", 3, {5, 9, 33}, 1, L_CONTIG, false},
};

static void tolerances(kiln_dtype dt, bool warp, bool *exact, double *atol, double *rtol) {
    *exact = !warp;
    *atol = dt == KILN_F64 ? 1e-14 : 1e-30;
    *rtol = dt == KILN_F64 ? 1e-13 : 2.4e-7;
}

static void check_forward(const sm_case *c, kiln_dtype dt, kiln_tensor *x, ec_layout out_layout, const char *extra) {
    kiln_axis_attrs at = {c->axis};
    bool exact;
    double atol, rtol;
    tolerances(dt, c->warp, &exact, &atol, &rtol);
    char what[200];
    for (int lg = 0; lg < 2; lg++) {
        snprintf(what, sizeof what, "%s %s (%s), %s%s", lg ? "log_softmax" : "softmax", c->name,
                 layout_names[c->l], kiln_dtype_name(dt), extra);
        ec_run(lg ? &kiln_op_log_softmax : &kiln_op_softmax, lg ? kiln_cpu_log_softmax : kiln_cpu_softmax,
               lg ? kiln_emu_cuda_log_softmax : kiln_emu_cuda_softmax, 1, &x, &at, dt, c->ndim, c->shape, out_layout,
               exact, atol, rtol, what);
    }
}

KT_TEST(cuda_emu_softmax, forward_every_axis_and_layout) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            kiln_scope *s = kiln_scope_begin();
            const sm_case *c = &cases[k];
            kiln_tensor *x = input(dt, c->ndim, c->shape, c->l, -4, 4, 10 + k);
            check_forward(c, dt, x, EC_CONTIG, "");
            kiln_scope_end(s);
        }
    }
}

KT_TEST(cuda_emu_softmax, forward_into_a_strided_output) {
    /* both paths write through the output's own strides */
    const sm_case c1 = {"last axis of 257", 2, {37, 257}, 1, L_CONTIG, true};
    const sm_case c2 = {"first axis", 2, {37, 29}, 0, L_CONTIG, false};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        check_forward(&c1, dt, input(dt, 2, c1.shape, L_CONTIG, -3, 3, 4), EC_TRANSPOSED, ", transposed output");
        check_forward(&c2, dt, input(dt, 2, c2.shape, L_CONTIG, -3, 3, 5), EC_SLICED, ", sliced output");
    }
}

/* Overwrites element (row, col) of a 2-d contiguous tensor's storage. */
static void poke(kiln_tensor *t, int64_t row, int64_t col, double v) {
    kiln_tensor *e = kiln_slice(kiln_slice(t, 0, row, row + 1, 1), 1, col, col + 1, 1);
    cr_assert_eq(kiln_tensor_fill(e, v), KILN_STATUS_OK);
}

KT_TEST(cuda_emu_softmax, stable_for_huge_logits_nan_and_minus_inf) {
    /* ±1000 would overflow exp without the max; a NaN poisons its row only; a row
     * of -inf has no maximum to subtract (NaN, as the CPU and torch) */
    const int64_t shape[2] = {6, 40};
    const sm_case ct = {"columns of 6 (thread)", 2, {6, 40}, 0, L_CONTIG, false};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *x = input(dt, 2, shape, L_CONTIG, -1000, 1000, 77);
        poke(x, 2, 5, NAN);
        for (int64_t j = 0; j < 40; j++) poke(x, 4, j, -INFINITY);
        poke(x, 1, 7, INFINITY);
        /* NaN and inf outputs compare as "both NaN"; everything else as stated */
        kiln_axis_attrs at = {1};
        ec_run(&kiln_op_softmax, kiln_cpu_softmax, kiln_emu_cuda_softmax, 1, &x, &at, dt, 2, shape, EC_CONTIG, false,
               d ? 1e-14 : 1e-30, d ? 1e-13 : 2.4e-7, "softmax of huge logits, NaN, inf, -inf rows (warp)");
        ec_run(&kiln_op_log_softmax, kiln_cpu_log_softmax, kiln_emu_cuda_log_softmax, 1, &x, &at, dt, 2, shape,
               EC_CONTIG, false, d ? 1e-14 : 1e-30, d ? 1e-13 : 2.4e-7, "log_softmax of huge logits (warp)");
        check_forward(&ct, dt, x, EC_CONTIG, ", huge logits, NaN, inf, -inf");
    }
}

KT_TEST(cuda_emu_softmax, softmax_over_a_large_range_has_no_overflow) {
    /* a hand check beside the CPU comparison: softmax([1000, 0]) = [1, e^-1000 = 0] */
    kiln_tensor *x = KT_F32(2, KT_SHAPE(1, 2), {1000, 0});
    kiln_tensor *y = kiln_tensor_zeros(2, (const int64_t[]){1, 2}, KILN_F32, KILN_CPU);
    kiln_axis_attrs at = {1};
    kiln_op_call c = {&kiln_op_softmax, 1, &x, y, &at};
    cr_assert_eq(kiln_emu_cuda_softmax(&c), KILN_STATUS_OK);
    KT_EXPECT(y, 0, 0, {1, 0});
}

static void check_backward(const sm_case *c, kiln_dtype dt, kiln_tensor *g, kiln_tensor *x, const char *extra) {
    kiln_axis_attrs at = {c->axis};
    bool exact;
    double atol, rtol;
    tolerances(dt, c->warp, &exact, &atol, &rtol);
    char what[200];
    for (int lg = 0; lg < 2; lg++) {
        /* y from the CPU forward, as autograd would save it, laid out as the case
         * (y's layout picks the kernel's path) */
        kiln_tensor *y = input(dt, c->ndim, c->shape, c->l, 0, 1, 1);
        kiln_op_call fc = {lg ? &kiln_op_log_softmax : &kiln_op_softmax, 1, &x, y, &at};
        cr_assert_eq((lg ? kiln_cpu_log_softmax : kiln_cpu_softmax)(&fc), KILN_STATUS_OK);
        kiln_tensor *in[2] = {g, y};
        snprintf(what, sizeof what, "%s %s (%s), %s%s", lg ? "log_softmax_backward" : "softmax_backward",
                 c->name, layout_names[c->l], kiln_dtype_name(dt), extra);
        ec_run(lg ? &kiln_op_log_softmax_backward : &kiln_op_softmax_backward,
               lg ? kiln_cpu_log_softmax_backward : kiln_cpu_softmax_backward,
               lg ? kiln_emu_cuda_log_softmax_backward : kiln_emu_cuda_softmax_backward, 2, in, &at, dt, c->ndim,
               c->shape, EC_CONTIG, exact, atol, rtol, what);
    }
}

KT_TEST(cuda_emu_softmax, backward_every_axis_and_layout) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            kiln_scope *s = kiln_scope_begin();
            const sm_case *c = &cases[k];
            kiln_tensor *x = input(dt, c->ndim, c->shape, L_CONTIG, -4, 4, 30 + k);
            kiln_tensor *g = input(dt, c->ndim, c->shape, c->l, -1, 1, 60 + k);
            check_backward(c, dt, g, x, "");
            kiln_scope_end(s);
        }
    }
}

KT_TEST(cuda_emu_softmax, backward_of_an_expanded_gradient) {
    /* the gradient of sum(softmax(x) * w) for w of shape (1, C, 1, 1): stride 0 on
     * three axes, as autograd hands it over */
    const sm_case c = {"NCHW channels, C=7, expanded g", 4, {2, 7, 3, 43}, 1, L_CONTIG, false};
    const int64_t small[4] = {1, 7, 1, 1};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *x = input(dt, 4, c.shape, L_NHWC, -4, 4, 91);
        kiln_tensor *g = kiln_expand(ec_input(dt, 4, small, EC_CONTIG, -1, 1, 0, 92), 4, c.shape);
        check_backward(&c, dt, g, x, "");
        const sm_case cw = {"last axis of 257, expanded g", 2, {37, 257}, 1, L_CONTIG, true};
        kiln_tensor *x2 = input(dt, 2, cw.shape, L_CONTIG, -4, 4, 93);
        kiln_tensor *g2 = kiln_expand(ec_input(dt, 1, (const int64_t[]){257}, EC_CONTIG, -1, 1, 0, 94), 2, cw.shape);
        check_backward(&cw, dt, g2, x2, "");
    }
}

/* log_softmax of large logits ((x - max) - log(sum), the CPU's and torch's form): the
 * thread path on rows of 4 and on the columns of their transpose, the warp path on rows of
 * 20; the CPU's bits (thread) or its tolerances (warp), and torch's values within
 * test_softmax.c's tolerances. Backward (thread path) too. */
KT_TEST(cuda_emu_softmax, log_softmax_of_large_logits_as_torch) {
    const int64_t rc[2] = {4, 4}, wide[2] = {4, 20};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        double tol = d ? 1e-15 : 3e-7;
        kiln_tensor *x = kt_tensor(dt, 2, rc, ls_x), *xw = kt_tensor(dt, 2, wide, ls_wide_x);
        kiln_tensor *xt = kiln_tensor_contiguous(kiln_transpose(x, 0, 1)); /* the rows as columns */
        kiln_axis_attrs a1 = {1}, a0 = {0};
        ec_run(&kiln_op_log_softmax, kiln_cpu_log_softmax, kiln_emu_cuda_log_softmax, 1, &x, &a1, dt, 2, rc, EC_CONTIG,
               true, 0, 0, "log_softmax of large logits, rows of 4 (thread)");
        ec_run(&kiln_op_log_softmax, kiln_cpu_log_softmax, kiln_emu_cuda_log_softmax, 1, &xt, &a0, dt, 2, rc,
               EC_CONTIG, true, 0, 0, "log_softmax of large logits, columns (thread)");
        ec_run(&kiln_op_log_softmax, kiln_cpu_log_softmax, kiln_emu_cuda_log_softmax, 1, &xw, &a1, dt, 2, wide,
               EC_CONTIG, false, d ? 1e-14 : 1e-30, d ? 1e-13 : 2.4e-7, "log_softmax of large logits, rows of 20 (warp)");
        kiln_tensor *y = kiln_tensor_zeros(2, rc, dt, KILN_CPU), *yt = kiln_tensor_zeros(2, rc, dt, KILN_CPU);
        kiln_tensor *yw = kiln_tensor_zeros(2, wide, dt, KILN_CPU), *dx = kiln_tensor_zeros(2, rc, dt, KILN_CPU);
        kiln_op_call c1 = {&kiln_op_log_softmax, 1, &x, y, &a1}, c0 = {&kiln_op_log_softmax, 1, &xt, yt, &a0};
        kiln_op_call cw = {&kiln_op_log_softmax, 1, &xw, yw, &a1};
        cr_assert_eq(kiln_emu_cuda_log_softmax(&c1), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_assert_eq(kiln_emu_cuda_log_softmax(&c0), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_assert_eq(kiln_emu_cuda_log_softmax(&cw), KILN_STATUS_OK, "%s", kiln_last_error());
        kt_expect_values(y, d ? ls_y_f64 : ls_y_f32, 16, tol, tol);
        kt_expect_values(kiln_tensor_contiguous(kiln_transpose(yt, 0, 1)), d ? ls_y_f64 : ls_y_f32, 16, tol, tol);
        kt_expect_values(yw, d ? ls_wide_y_f64 : ls_wide_y_f32, 80, tol, tol);
        kiln_tensor *in[2] = {kt_tensor(dt, 2, rc, ls_g), y};
        ec_run(&kiln_op_log_softmax_backward, kiln_cpu_log_softmax_backward, kiln_emu_cuda_log_softmax_backward, 2, in,
               &a1, dt, 2, rc, EC_CONTIG, true, 0, 0, "log_softmax_backward of large logits (thread)");
        kiln_op_call bc = {&kiln_op_log_softmax_backward, 2, in, dx, &a1};
        cr_assert_eq(kiln_emu_cuda_log_softmax_backward(&bc), KILN_STATUS_OK, "%s", kiln_last_error());
        kt_expect_values(dx, d ? ls_dx_f64 : ls_dx_f32, 16, tol, tol);
    }
}

/* The element-wise CUDA kernels (kernels/cuda/elementwise.cu), run through the
 * emulator against the CPU kernels: every unary and binary kind, f32 and f64, sizes
 * that are not multiples of the 256-thread block (nor of the 16-byte vector), and
 * contiguous, unaligned, transposed, sliced and broadcast operands. The emulator
 * calls the same host libm as the CPU kernels, so results must agree bit for bit
 * (on a GPU, where expf and FMA contraction differ, tests/test_cuda_ops.c uses
 * tolerances instead). NaN, infinities and signed zeros go through every kind too, and
 * the kinds torch defines at them (relu, clamp, maximum/minimum's gradient, pow at -0)
 * are checked against torch's values (tests/fixtures/gen_numerics.py). */
#include "emu/emu_compare.h"
#include "fixtures/numerics_ref.h"

TestSuite(cuda_emu_elementwise, .init = kiln_test_setup, .fini = kiln_test_teardown);

static const kiln_dtype float_types[2] = {KILN_F32, KILN_F64};

/* inputs inside each function's domain */
static void unary_domain(int kind, double *lo, double *hi) {
    *lo = -3, *hi = 3;
    if (kind == KILN_UNARY_LOG || kind == KILN_UNARY_SQRT || kind == KILN_UNARY_POW) *lo = 0.05;
}

KT_TEST(cuda_emu_elementwise, unary_every_kind_and_layout) {
    const int64_t flat[1] = {1003}, grid2[2] = {37, 29};
    char what[160];
    for (int d = 0; d < 2; d++)
        for (int kind = 0; kind < KILN_UNARY_COUNT; kind++) {
            double lo, hi;
            unary_domain(kind, &lo, &hi);
            kiln_unary_attrs at = {kind, kind == KILN_UNARY_POW ? 2.5 : (kind == KILN_UNARY_CLAMP ? -0.5 : 0.1), 0.75};
            for (int l = 0; l < EC_LAYOUTS; l++) {
                const int64_t *shape = l == EC_TRANSPOSED ? grid2 : flat;
                int nd = l == EC_TRANSPOSED ? 2 : 1;
                kiln_tensor *x = ec_input(float_types[d], nd, shape, (ec_layout)l, lo, hi, 0, 11 + kind);
                for (int ol = 0; ol < 2; ol++) { /* output contiguous, then laid out like the input */
                    snprintf(what, sizeof what, "unary kind %d %s, input %s, output %s", kind,
                             kiln_dtype_name(float_types[d]), ec_layout_names[l], ol ? ec_layout_names[l] : "contiguous");
                    ec_run(&kiln_op_unary, kiln_cpu_unary, kiln_emu_cuda_unary, 1, &x, &at, float_types[d], nd, shape,
                           ol ? (ec_layout)l : EC_CONTIG, true, 0, 0, what);
                }
            }
        }
}

KT_TEST(cuda_emu_elementwise, unary_broadcast_input) {
    /* a [1, 29] input expanded over 37 rows (stride 0) */
    const int64_t row[2] = {1, 29}, full[2] = {37, 29};
    for (int d = 0; d < 2; d++) {
        kiln_tensor *x = kiln_expand(ec_input(float_types[d], 2, row, EC_CONTIG, -2, 2, 0, 5), 2, full);
        kiln_unary_attrs at = {KILN_UNARY_TANH, 0, 0};
        ec_run(&kiln_op_unary, kiln_cpu_unary, kiln_emu_cuda_unary, 1, &x, &at, float_types[d], 2, full, EC_CONTIG,
               true, 0, 0, "tanh of an expanded row");
    }
}

KT_TEST(cuda_emu_elementwise, unary_backward_every_kind) {
    const int64_t shape[3] = {3, 5, 67}; /* 1005 elements */
    char what[160];
    for (int d = 0; d < 2; d++)
        for (int kind = 0; kind < KILN_UNARY_COUNT; kind++) {
            double lo, hi;
            unary_domain(kind, &lo, &hi);
            kiln_unary_attrs at = {kind, kind == KILN_UNARY_POW ? 2.5 : (kind == KILN_UNARY_CLAMP ? -0.5 : 0.1), 0.75};
            for (int l = 0; l < EC_LAYOUTS; l++) {
                kiln_tensor *in[3];
                in[0] = ec_input(float_types[d], 3, shape, (ec_layout)l, -1, 1, 0, 100 + kind);
                in[1] = ec_input(float_types[d], 3, shape, EC_CONTIG, lo, hi, 0, 200 + kind);
                /* y = f(x), computed by the CPU, laid out as l */
                in[2] = ec_view(float_types[d], 3, shape, (ec_layout)l, NULL);
                kiln_op_call yc = {&kiln_op_unary, 1, &in[1], in[2], &at};
                cr_assert_eq(kiln_cpu_unary(&yc), KILN_STATUS_OK);
                snprintf(what, sizeof what, "unary_backward kind %d %s, %s", kind, kiln_dtype_name(float_types[d]),
                         ec_layout_names[l]);
                ec_run(&kiln_op_unary_backward, kiln_cpu_unary_backward, kiln_emu_cuda_unary_backward, 3, in, &at,
                       float_types[d], 3, shape, EC_CONTIG, true, 0, 0, what);
            }
        }
}

/* Broadcast cases: (a shape, b shape) -> out shape. */
typedef struct {
    int an, bn;
    int64_t a[3], b[3];
    int on;
    int64_t o[3];
} bcast_case;

static const bcast_case bcast_cases[] = {
    {1, 1, {1003}, {1003}, 1, {1003}},                   /* same shape, flat */
    {3, 2, {5, 1, 67}, {3, 1}, 3, {5, 3, 67}},          /* both broadcast */
    {2, 1, {37, 29}, {29}, 2, {37, 29}},                /* bias-like row */
    {2, 0, {37, 29}, {0}, 2, {37, 29}},                 /* 0-d scalar */
    {3, 3, {2, 1, 300}, {1, 3, 1}, 3, {2, 3, 300}},      /* outer product */
};

KT_TEST(cuda_emu_elementwise, binary_every_kind_broadcast_and_layout) {
    char what[200];
    int nc = (int)(sizeof bcast_cases / sizeof bcast_cases[0]);
    for (int d = 0; d < 2; d++)
        for (int kind = 0; kind < KILN_BINARY_COUNT; kind++)
            for (int c = 0; c < nc; c++)
                for (int l = 0; l < EC_LAYOUTS; l++) {
                    const bcast_case *bc = &bcast_cases[c];
                    ec_layout la = (bc->an >= 2 || l != EC_TRANSPOSED) ? (ec_layout)l : EC_CONTIG;
                    /* quantised values make ties for maximum/minimum; b avoids 0 for div */
                    kiln_tensor *in[2] = {ec_input(float_types[d], bc->an, bc->a, la, -2, 2, 0.5, 7 + c),
                                          ec_input(float_types[d], bc->bn, bc->b, EC_CONTIG, 0.25, 2.25, 0.5, 9 + c)};
                    kiln_binary_attrs at = {kind, 0};
                    snprintf(what, sizeof what, "binary kind %d %s case %d, a %s", kind,
                             kiln_dtype_name(float_types[d]), c, ec_layout_names[la]);
                    ec_run(&kiln_op_binary, kiln_cpu_binary, kiln_emu_cuda_binary, 2, in, &at, float_types[d], bc->on,
                           bc->o, EC_CONTIG, true, 0, 0, what);
                }
}

KT_TEST(cuda_emu_elementwise, binary_backward_every_kind_and_side) {
    char what[200];
    int nc = (int)(sizeof bcast_cases / sizeof bcast_cases[0]);
    for (int d = 0; d < 2; d++)
        for (int kind = 0; kind < KILN_BINARY_COUNT; kind++)
            for (int side = 0; side < 2; side++)
                for (int c = 0; c < nc; c++) {
                    const bcast_case *bc = &bcast_cases[c];
                    ec_layout lg = bc->on >= 2 ? EC_TRANSPOSED : EC_SLICED;
                    kiln_tensor *in[3] = {ec_input(float_types[d], bc->on, bc->o, lg, -1, 1, 0, 3 + c),
                                          ec_input(float_types[d], bc->an, bc->a, EC_OFFSET, -2, 2, 0.5, 4 + c),
                                          ec_input(float_types[d], bc->bn, bc->b, EC_CONTIG, 0.25, 2.25, 0.5, 5 + c)};
                    kiln_binary_attrs at = {kind, side};
                    snprintf(what, sizeof what, "binary_backward kind %d side %d %s case %d", kind, side,
                             kiln_dtype_name(float_types[d]), c);
                    ec_run(&kiln_op_binary_backward, kiln_cpu_binary_backward, kiln_emu_cuda_binary_backward, 3, in,
                           &at, float_types[d], bc->on, bc->o, EC_CONTIG, true, 0, 0, what);
                }
}

KT_TEST(cuda_emu_elementwise, where_with_any_condition_dtype) {
    const kiln_dtype conds[5] = {KILN_U8, KILN_F32, KILN_I64, KILN_F16, KILN_F64};
    const int64_t cshape[2] = {37, 1}, ashape[2] = {37, 29}, bshape[1] = {29};
    char what[120];
    for (int d = 0; d < 2; d++)
        for (int k = 0; k < 5; k++) {
            kiln_tensor *in[3] = {ec_input(conds[k], 2, cshape, EC_CONTIG, -1, 2, 1, 21 + k), /* -1, 0, 1 */
                                  ec_input(float_types[d], 2, ashape, EC_TRANSPOSED, -5, 5, 0, 22),
                                  ec_input(float_types[d], 1, bshape, EC_SLICED, -5, 5, 0, 23)};
            snprintf(what, sizeof what, "where, cond %s, %s", kiln_dtype_name(conds[k]), kiln_dtype_name(float_types[d]));
            ec_run(&kiln_op_where, kiln_cpu_where, kiln_emu_cuda_where, 3, in, NULL, float_types[d], 2, ashape,
                   EC_SLICED, true, 0, 0, what);
        }
}

/* The launcher alone, on plain host arrays and a hand-written descriptor: what the
 * glue does for a kiln tensor, a test can do for any memory. */
KT_TEST(cuda_emu_elementwise, launcher_on_plain_host_memory) {
    float a[3 * 5], b[5], out[3 * 5];
    for (int i = 0; i < 15; i++) a[i] = (float)i;
    for (int j = 0; j < 5; j++) b[j] = 10.0f * (float)j;
    kiln_cuda_tensor o = {out, KILN_F32, 2, {3, 5}, {5, 1}};
    /* a read transposed: a [5, 3] buffer seen as [3, 5] */
    kiln_cuda_tensor ta = {a, KILN_F32, 2, {3, 5}, {1, 3}};
    kiln_cuda_tensor tb = {b, KILN_F32, 1, {5}, {1}};
    cr_assert_eq(kiln_emu_cuda_launch_binary(&o, &ta, &tb, KILN_BINARY_SUB, NULL), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 5; j++)
            cr_expect_eq(out[i * 5 + j], a[j * 3 + i] - b[j], "out[%d][%d] = %g", i, j, out[i * 5 + j]);
}

KT_TEST(cuda_emu_elementwise, launcher_rejects_integer_dtypes) {
    int32_t x[4] = {0}, y[4];
    kiln_cuda_tensor o = {y, KILN_I32, 1, {4}, {1}}, i = {x, KILN_I32, 1, {4}, {1}};
    cr_expect_eq(kiln_emu_cuda_launch_unary(&o, &i, KILN_UNARY_NEG, 0, 0, NULL), KILN_STATUS_DTYPE);
    kt_expect_error(KILN_STATUS_DTYPE, "unary: the CUDA kernel computes f32 and f64, not i32");
}

/* The emulated kernel's output against torch's: NaN for NaN, zeros of the same sign,
 * otherwise equal. */
static void expect_torch_exact(kiln_tensor *t, const double *want, int64_t n, const char *what) {
    double *v = kt_values(t);
    for (int64_t i = 0; i < n; i++) {
        double w = want[i];
        bool ok = isnan(w) ? isnan(v[i]) : (v[i] == w && signbit(v[i]) == signbit(w));
        cr_expect(ok, "%s element %lld: emulated cuda %.17g, torch %.17g", what, (long long)i, v[i], w);
    }
    free(v);
}

/* One unary kind forward and backward (dy = 1) on x: the emulated kernels bit for bit as
 * the CPU's, and, where given, as torch's y and dx. */
static void special_unary(kiln_dtype dt, kiln_tensor *x, kiln_unary_attrs at, const double *ty, const double *tg,
                          const char *name) {
    char what[160];
    int64_t n = kiln_tensor_numel(x);
    const int64_t *shape = kiln_tensor_shape(x);
    snprintf(what, sizeof what, "%s %s forward", name, kiln_dtype_name(dt));
    ec_run(&kiln_op_unary, kiln_cpu_unary, kiln_emu_cuda_unary, 1, &x, &at, dt, 1, shape, EC_CONTIG, true, 0, 0, what);
    kiln_tensor *y = kiln_tensor_zeros(1, shape, dt, KILN_CPU);
    kiln_op_call fc = {&kiln_op_unary, 1, &x, y, &at};
    cr_assert_eq(kiln_emu_cuda_unary(&fc), KILN_STATUS_OK, "%s", kiln_last_error());
    if (ty) expect_torch_exact(y, ty, n, what);
    kiln_tensor *in[3] = {kiln_tensor_full(1, shape, 1.0, dt, KILN_CPU), x, y};
    snprintf(what, sizeof what, "%s %s backward", name, kiln_dtype_name(dt));
    ec_run(&kiln_op_unary_backward, kiln_cpu_unary_backward, kiln_emu_cuda_unary_backward, 3, in, &at, dt, 1, shape,
           EC_CONTIG, true, 0, 0, what);
    kiln_tensor *g = kiln_tensor_zeros(1, shape, dt, KILN_CPU);
    kiln_op_call bc = {&kiln_op_unary_backward, 3, in, g, &at};
    cr_assert_eq(kiln_emu_cuda_unary_backward(&bc), KILN_STATUS_OK, "%s", kiln_last_error());
    if (tg) expect_torch_exact(g, tg, n, what);
}

KT_TEST(cuda_emu_elementwise, nan_inf_and_signed_zero_every_kind) {
    char name[64];
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = float_types[d];
        kiln_tensor *x = kt_tensor(dt, 1, (int64_t[]){EW_N}, ew_x);
        for (int kind = 0; kind < KILN_UNARY_COUNT; kind++) {
            if (kind == KILN_UNARY_POW || kind == KILN_UNARY_CLAMP) continue; /* below, with their parameters */
            kiln_unary_attrs at = {kind, 0.1, 0};
            const double *ty = NULL, *tg = NULL;
            if (kind == KILN_UNARY_RELU) ty = d ? ew_relu_y_f64 : ew_relu_y_f32, tg = d ? ew_relu_g_f64 : ew_relu_g_f32;
            if (kind == KILN_UNARY_LEAKY_RELU)
                ty = d ? ew_leaky_relu_y_f64 : ew_leaky_relu_y_f32, tg = d ? ew_leaky_relu_g_f64 : ew_leaky_relu_g_f32;
            if (kind == KILN_UNARY_ABS) ty = d ? ew_abs_y_f64 : ew_abs_y_f32, tg = d ? ew_abs_g_f64 : ew_abs_g_f32;
            snprintf(name, sizeof name, "unary kind %d", kind);
            special_unary(dt, x, at, ty, tg, name);
        }
        special_unary(dt, x, (kiln_unary_attrs){KILN_UNARY_CLAMP, -0.5, 1}, d ? ew_clamp_y_f64 : ew_clamp_y_f32,
                      d ? ew_clamp_g_f64 : ew_clamp_g_f32, "clamp");
        special_unary(dt, x, (kiln_unary_attrs){KILN_UNARY_CLAMP, 1, -0.5},
                      d ? ew_clamp_inverted_y_f64 : ew_clamp_inverted_y_f32,
                      d ? ew_clamp_inverted_g_f64 : ew_clamp_inverted_g_f32, "clamp lo > hi");
        kiln_tensor *px = kt_tensor(dt, 1, (int64_t[]){EW_POW_NX}, ew_pow_x);
        for (int e = 0; e < EW_POW_NE; e++) {
            /* the exponents torch computes as products, roots and reciprocals are exact here */
            double ex = ew_pow_e[e];
            bool exact = ex == 0 || ex == 1 || ex == 0.5 || ex == -0.5 || ex == -1 || ex == 2 || ex == 3 || ex == -2;
            snprintf(name, sizeof name, "pow %g", ex);
            special_unary(dt, px, (kiln_unary_attrs){KILN_UNARY_POW, ex, 0},
                          exact ? (d ? ew_pow_y_f64 : ew_pow_y_f32) + e * EW_POW_NX : NULL,
                          exact ? (d ? ew_pow_g_f64 : ew_pow_g_f32) + e * EW_POW_NX : NULL, name);
        }
        kiln_tensor *ab[2] = {kt_tensor(dt, 1, (int64_t[]){EW_MM_N}, ew_mm_a),
                              kt_tensor(dt, 1, (int64_t[]){EW_MM_N}, ew_mm_b)};
        const int64_t mn[1] = {EW_MM_N};
        for (int kind = 0; kind < KILN_BINARY_COUNT; kind++) {
            kiln_binary_attrs at = {kind, 0};
            snprintf(name, sizeof name, "binary kind %d %s", kind, kiln_dtype_name(dt));
            ec_run(&kiln_op_binary, kiln_cpu_binary, kiln_emu_cuda_binary, 2, ab, &at, dt, 1, mn, EC_CONTIG, true, 0,
                   0, name);
            kiln_tensor *in[3] = {kiln_tensor_full(1, mn, 1.0, dt, KILN_CPU), ab[0], ab[1]};
            for (int side = 0; side < 2; side++) {
                kiln_binary_attrs bat = {kind, side};
                snprintf(name, sizeof name, "binary_backward kind %d side %d %s", kind, side, kiln_dtype_name(dt));
                ec_run(&kiln_op_binary_backward, kiln_cpu_binary_backward, kiln_emu_cuda_binary_backward, 3, in, &bat,
                       dt, 1, mn, EC_CONTIG, true, 0, 0, name);
                if (kind != KILN_BINARY_MAX && kind != KILN_BINARY_MIN) continue;
                kiln_tensor *g = kiln_tensor_zeros(1, mn, dt, KILN_CPU);
                kiln_op_call c = {&kiln_op_binary_backward, 3, in, g, &bat};
                cr_assert_eq(kiln_emu_cuda_binary_backward(&c), KILN_STATUS_OK, "%s", kiln_last_error());
                const double *want = kind == KILN_BINARY_MAX ? (side ? (d ? ew_maximum_gb_f64 : ew_maximum_gb_f32)
                                                                     : (d ? ew_maximum_ga_f64 : ew_maximum_ga_f32))
                                                             : (side ? (d ? ew_minimum_gb_f64 : ew_minimum_gb_f32)
                                                                     : (d ? ew_minimum_ga_f64 : ew_minimum_ga_f32));
                expect_torch_exact(g, want, EW_MM_N, name);
            }
        }
    }
}

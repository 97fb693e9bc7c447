/* The CUDA kernels that write tensors (kernels/cuda/copy.cu), run through the
 * emulator against the CPU kernels, bit for bit: copies between every pair of
 * dtypes (f16/bf16 rounding included) over strided and broadcast views, fills,
 * and the Philox random fill, which must give exactly the CPU's numbers. */
#include "emu/emu_compare.h"
#include "../kernels/philox.h"

TestSuite(cuda_emu_copy, .init = kiln_test_setup, .fini = kiln_test_teardown);

static const kiln_dtype all_types[KILN_DTYPE_COUNT] = {KILN_F32, KILN_F64, KILN_F16, KILN_BF16,
                                                       KILN_I32, KILN_I64, KILN_U8};

KT_TEST(cuda_emu_copy, same_dtype_every_layout) {
    const int64_t flat[1] = {1029}, grid2[2] = {33, 31};
    char what[120];
    for (int t = 0; t < KILN_DTYPE_COUNT; t++)
        for (int l = 0; l < EC_LAYOUTS; l++)
            for (int ol = 0; ol < EC_LAYOUTS; ol++) {
                bool two = l == EC_TRANSPOSED || ol == EC_TRANSPOSED;
                kiln_tensor *x = ec_input(all_types[t], two ? 2 : 1, two ? grid2 : flat, (ec_layout)l, -100, 100, 0, 31);
                snprintf(what, sizeof what, "copy %s, %s to %s", kiln_dtype_name(all_types[t]), ec_layout_names[l],
                         ec_layout_names[ol]);
                ec_run(&kiln_op_copy, kiln_cpu_copy, kiln_emu_cuda_copy, 1, &x, NULL, all_types[t], two ? 2 : 1,
                       two ? grid2 : flat, (ec_layout)ol, true, 0, 0, what);
            }
}

KT_TEST(cuda_emu_copy, broadcast_source) {
    const int64_t col[3] = {4, 1, 1}, full[3] = {4, 7, 45};
    for (int t = 0; t < KILN_DTYPE_COUNT; t++) {
        kiln_tensor *x = kiln_expand(ec_input(all_types[t], 3, col, EC_CONTIG, 0, 50, 1, 3), 3, full);
        ec_run(&kiln_op_copy, kiln_cpu_copy, kiln_emu_cuda_copy, 1, &x, NULL, all_types[t], 3, full, EC_CONTIG, true,
               0, 0, kiln_dtype_name(all_types[t]));
    }
}

/* Values that probe the conversions: fractions and halves (rounding), negatives
 * (truncation, u8 wrap), f16 subnormals, overflow and the f16/bf16 rounding edges. */
static kiln_tensor *probe_values(kiln_dtype dt, bool floats_only) {
    static const double v[] = {0.0,     -0.0,    0.5,      1.5,      2.5,     -2.5,     0.1,        -7.9,
                               255.0,   256.0,   -1.0,     -129.0,   1000.5,  65504.0,  65519.0,    65520.0,
                               1e5,     3e-5,    6e-8,     2.98e-8,  1e-10,   3.14159,  1.00048828125, 1.0009765625,
                               1.0029296875, 1.00390625, 1.005859375, 3.0e38, -70000.0, 123456.789, 0.333333333};
    int n = (int)(sizeof v / sizeof v[0]);
    double buf[40];
    int m = 0;
    for (int i = 0; i < n; i++) buf[m++] = v[i];
    if (floats_only) {
        buf[m++] = INFINITY;
        buf[m++] = -INFINITY;
        buf[m++] = NAN;
    }
    if (!floats_only) /* integers of out-of-range floats are undefined in C; 60000 fits f16 too */
        for (int i = 0; i < m; i++) buf[i] = buf[i] > 60000 ? 60000 : (buf[i] < -60000 ? -60000 : buf[i]);
    int64_t shape[1] = {m};
    kiln_tensor *f = kiln_tensor_from_host(buf, 1, shape, KILN_F64, KILN_CPU);
    kiln_tensor *t = kiln_tensor_empty(1, shape, dt, KILN_CPU);
    cr_assert_eq(kiln_tensor_copy_(t, f), KILN_STATUS_OK, "%s", kiln_last_error());
    return t;
}

KT_TEST(cuda_emu_copy, conversions_between_every_pair) {
    char what[120];
    for (int s = 0; s < KILN_DTYPE_COUNT; s++)
        for (int d = 0; d < KILN_DTYPE_COUNT; d++) {
            kiln_dtype src = all_types[s], dst = all_types[d];
            bool float_dst = dst == KILN_F32 || dst == KILN_F64 || dst == KILN_F16 || dst == KILN_BF16;
            bool float_src = src == KILN_F32 || src == KILN_F64 || src == KILN_F16 || src == KILN_BF16;
            /* inf, nan and huge values only where no integer type is involved */
            kiln_tensor *x = probe_values(src, float_dst && float_src);
            int64_t n = kiln_tensor_numel(x);
            snprintf(what, sizeof what, "copy %s -> %s", kiln_dtype_name(src), kiln_dtype_name(dst));
            ec_run(&kiln_op_copy, kiln_cpu_copy, kiln_emu_cuda_copy, 1, &x, NULL, dst, 1, &n, EC_SLICED, true, 0, 0,
                   what);
        }
}

KT_TEST(cuda_emu_copy, fill_every_dtype) {
    const double values[] = {0.0, 1.5, -2.0, 65504.0, 3e-6, 255.0};
    const int64_t shape[2] = {13, 77};
    char what[120];
    for (int t = 0; t < KILN_DTYPE_COUNT; t++)
        for (int k = 0; k < 6; k++)
            for (int l = 0; l < EC_LAYOUTS; l++) {
                kiln_fill_attrs at = {values[k]};
                snprintf(what, sizeof what, "fill %s with %g, %s", kiln_dtype_name(all_types[t]), values[k],
                         ec_layout_names[l]);
                ec_run(&kiln_op_fill, kiln_cpu_fill, kiln_emu_cuda_fill, 0, NULL, &at, all_types[t], 2, shape,
                       (ec_layout)l, true, 0, 0, what);
            }
}

KT_TEST(cuda_emu_copy, rand_gives_the_cpu_numbers) {
    const int64_t shape[2] = {7, 149}; /* 1043: four blocks, the last partial */
    char what[120];
    for (int d = 0; d < 2; d++)
        for (int normal = 0; normal < 2; normal++) {
            kiln_dtype dt = d ? KILN_F64 : KILN_F32;
            kiln_rand_attrs at = {normal, normal ? 0.5 : -1.0, normal ? 2.0 : 3.0, 0x5eedull, 1000003ull};
            snprintf(what, sizeof what, "%s %s", normal ? "randn" : "rand", kiln_dtype_name(dt));
            ec_run(&kiln_op_rand, kiln_cpu_rand, kiln_emu_cuda_rand, 0, NULL, &at, dt, 2, shape, EC_CONTIG, true, 0, 0,
                   what);
        }
    /* and the numbers are Philox's: element 5 of a f64 uniform draw in [0, 1) */
    float o32[1];
    double o64[8];
    kiln_cuda_tensor t64 = {o64, KILN_F64, 1, {8}, {1}};
    cr_assert_eq(kiln_emu_cuda_launch_rand(&t64, 42, 7, 0, 0.0, 1.0, NULL), KILN_STATUS_OK);
    cr_expect_eq(o64[5], kiln_philox_sample(42, 12, 0, 0.0, 1.0));
    /* float rounding never reaches the open upper bound */
    kiln_cuda_tensor t32 = {o32, KILN_F32, 1, {1}, {1}};
    cr_assert_eq(kiln_emu_cuda_launch_rand(&t32, 42, 7, 0, 0.0, 1e-30, NULL), KILN_STATUS_OK);
    cr_expect(o32[0] < 1e-30f);
}

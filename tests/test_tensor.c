/* Tensors: creation, host transfers, dtype conversions (f16/bf16 bit patterns with
 * round-to-nearest-even, infinities, NaN and subnormals), item, describe/print,
 * strides and contiguity, copy_ with broadcasting, clone/detach and kiln_tensor_to. */
#include "support/kiln_test.h"

#include <stdlib.h>
#include <string.h>

TestSuite(tensor, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

/* ---- creation ------------------------------------------------------------------- */

KT_TEST(tensor, empty_has_the_asked_geometry) {
    kiln_tensor *t = kiln_tensor_empty(3, SHAPE(2, 3, 4), KILN_F64, KILN_CPU);
    KT_EXPECT_SHAPE(t, 3, 2, 3, 4);
    cr_expect_eq(kiln_tensor_numel(t), 24);
    cr_expect_eq(kiln_tensor_dtype(t), KILN_F64);
    cr_expect(kiln_device_equal(kiln_tensor_device(t), KILN_CPU));
    cr_expect(kiln_tensor_is_contiguous(t));
    cr_expect_eq(kiln_tensor_size(t, -1), 4);
    cr_expect_eq(kiln_tensor_size(t, 0), 2);
    kiln_tensor *e = kiln_tensor_empty(2, SHAPE(3, 0), KILN_F32, KILN_CPU);
    cr_expect_eq(kiln_tensor_numel(e), 0);
}

KT_TEST(tensor, bad_shapes_and_dtypes_are_errors) {
    cr_expect_null(kiln_tensor_empty(2, SHAPE(2, -3), KILN_F32, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "negative size at axis 1");
    cr_expect_null(kiln_tensor_empty(9, SHAPE(1, 1, 1, 1, 1, 1, 1, 1, 1), KILN_F32, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "9 dimensions");
    cr_expect_null(kiln_tensor_empty(1, SHAPE(2), (kiln_dtype)42, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "not a kiln_dtype");
    cr_expect_null(kiln_tensor_from_host(NULL, 1, SHAPE(2), KILN_F32, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "data is NULL");
    kiln_tensor *s = kiln_tensor_scalar(1, KILN_F32, KILN_CPU);
    cr_expect_eq(kiln_tensor_size(s, 0), -1);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "0-d");
    cr_expect_eq(kiln_tensor_size(kiln_tensor_zeros(1, SHAPE(2), KILN_F32, KILN_CPU), 1), -1);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "axis 1 is out of range");
}

KT_TEST(tensor, zeros_full_scalar) {
    KT_EXPECT(kiln_tensor_zeros(2, SHAPE(2, 2), KILN_F32, KILN_CPU), 0, 0, {0, 0, 0, 0});
    KT_EXPECT(kiln_tensor_full(1, SHAPE(3), -2.5, KILN_F64, KILN_CPU), 0, 0, {-2.5, -2.5, -2.5});
    KT_EXPECT(kiln_tensor_full(1, SHAPE(2), 7.9, KILN_I32, KILN_CPU), 0, 0, {7, 7});
    KT_EXPECT(kiln_tensor_full(1, SHAPE(2), 200, KILN_U8, KILN_CPU), 0, 0, {200, 200});
    KT_EXPECT(kiln_tensor_full(1, SHAPE(2), 0.1, KILN_F16, KILN_CPU), 0, 0, {0.0999755859375, 0.0999755859375});
    kiln_tensor *s = kiln_tensor_scalar(3.25, KILN_F32, KILN_CPU);
    cr_expect_eq(kiln_tensor_ndim(s), 0);
    cr_expect_eq(kiln_tensor_numel(s), 1);
    cr_expect_eq(kiln_tensor_item(s), 3.25);
    kiln_tensor *t = kiln_tensor_zeros(1, SHAPE(3), KILN_F32, KILN_CPU);
    cr_expect_eq(kiln_tensor_fill(t, 4), KILN_STATUS_OK);
    KT_EXPECT(t, 0, 0, {4, 4, 4});
    cr_expect_eq(kiln_tensor_fill(NULL, 1), KILN_STATUS_INVALID_ARGUMENT);
    kiln_clear_error();
}

KT_TEST(tensor, from_host_and_to_host) {
    const float v[6] = {1, 2, 3, 4, 5, 6};
    kiln_tensor *t = kiln_tensor_from_host(v, 2, SHAPE(2, 3), KILN_F32, KILN_CPU);
    float back[6] = {0};
    cr_assert_eq(kiln_tensor_to_host(t, back, sizeof back), KILN_STATUS_OK);
    cr_expect(memcmp(v, back, sizeof v) == 0);
    /* a transposed view comes back C-ordered in its own shape */
    float tb[6];
    cr_assert_eq(kiln_tensor_to_host(kiln_transpose(t, 0, 1), tb, sizeof tb), KILN_STATUS_OK);
    const float want[6] = {1, 4, 2, 5, 3, 6};
    cr_expect(memcmp(tb, want, sizeof tb) == 0);
    cr_expect_eq(kiln_tensor_to_host(t, back, 5 * sizeof(float)), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "buffer of 20 bytes for a f32 [2, 3] tensor, which needs 24");
    cr_expect_eq(kiln_tensor_to_host(t, NULL, 24), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "dst is NULL");
}

KT_TEST(tensor, arange_follows_torch) {
    KT_EXPECT(kiln_tensor_arange(0, 5, 1, KILN_F32, KILN_CPU), 0, 0, {0, 1, 2, 3, 4});
    KT_EXPECT(kiln_tensor_arange(1, 2, 0.25, KILN_F64, KILN_CPU), 0, 0, {1, 1.25, 1.5, 1.75});
    KT_EXPECT(kiln_tensor_arange(5, 0, -2, KILN_F32, KILN_CPU), 0, 0, {5, 3, 1});
    kiln_tensor *i = kiln_tensor_arange(0, 3, 1, KILN_I64, KILN_CPU);
    cr_expect_eq(kiln_tensor_dtype(i), KILN_I64);
    KT_EXPECT(i, 0, 0, {0, 1, 2});
    cr_expect_eq(kiln_tensor_numel(kiln_tensor_arange(0, 1, 0.1, KILN_F64, KILN_CPU)), 10);
    cr_expect_eq(kiln_tensor_numel(kiln_tensor_arange(2, 2, 1, KILN_F32, KILN_CPU)), 0);
    cr_expect_null(kiln_tensor_arange(0, 5, -1, KILN_F32, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_arange");
    cr_expect_null(kiln_tensor_arange(0, 5, 0, KILN_F32, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "step must be nonzero");
}

KT_TEST(tensor, rand_and_randn_shapes) {
    kiln_tensor *u = kiln_tensor_rand(2, SHAPE(3, 5), 0, 1, KILN_F32, KILN_CPU);
    kiln_tensor *n = kiln_tensor_randn(3, SHAPE(2, 1, 4), 0, 1, KILN_F64, KILN_CPU);
    KT_EXPECT_SHAPE(u, 2, 3, 5);
    KT_EXPECT_SHAPE(n, 3, 2, 1, 4);
    cr_expect_eq(kiln_tensor_dtype(n), KILN_F64);
}

/* ---- dtypes ------------------------------------------------------------------------ */

KT_TEST(tensor, every_dtype_round_trips_through_the_host) {
    unsigned char bytes[64];
    for (int i = 0; i < 64; i++) bytes[i] = (unsigned char)(i * 37 + 11);
    for (int d = 0; d < KILN_DTYPE_COUNT; d++) {
        kiln_dtype dt = (kiln_dtype)d;
        int64_t n = (int64_t)(64 / kiln_dtype_size(dt));
        kiln_tensor *t = kiln_tensor_from_host(bytes, 1, &n, dt, KILN_CPU);
        cr_assert(t != NULL, "%s: %s", kiln_dtype_name(dt), kiln_last_error());
        unsigned char back[64];
        cr_assert_eq(kiln_tensor_to_host(t, back, 64), KILN_STATUS_OK);
        cr_expect(memcmp(bytes, back, 64) == 0, "%s bytes changed", kiln_dtype_name(dt));
        /* and a same-dtype copy of a strided view moves whole elements */
        kiln_tensor *c = kiln_tensor_contiguous(kiln_slice(t, 0, 1, n, 2));
        unsigned char half[32];
        cr_assert_eq(kiln_tensor_to_host(c, half, 32), KILN_STATUS_OK);
        size_t es = kiln_dtype_size(dt);
        for (int64_t i = 0; i < n / 2; i++)
            cr_expect(memcmp(half + i * es, bytes + (2 * i + 1) * es, es) == 0, "%s element %lld",
                      kiln_dtype_name(dt), (long long)i);
    }
}

KT_TEST(tensor, casts_between_dtypes) {
    kiln_tensor *f = KT_F32(1, KT_SHAPE(6), {-2.7, -0.5, 0, 0.5, 2.7, 100.25});
    KT_EXPECT(kiln_tensor_cast(f, KILN_I32), 0, 0, {-2, 0, 0, 0, 2, 100}); /* toward zero, as torch */
    KT_EXPECT(kiln_tensor_cast(f, KILN_I64), 0, 0, {-2, 0, 0, 0, 2, 100});
    KT_EXPECT(kiln_tensor_cast(f, KILN_F64), 0, 0, {-2.7f, -0.5, 0, 0.5, 2.7f, 100.25});
    kiln_tensor *u = KT_F32(1, KT_SHAPE(3), {0, 200.9, 255});
    KT_EXPECT(kiln_tensor_cast(u, KILN_U8), 0, 0, {0, 200, 255});
    /* int64 beyond float precision survives a trip through f64 */
    int64_t big[2] = {(int64_t)1 << 40, -((int64_t)1 << 52) + 1};
    kiln_tensor *bi = kiln_tensor_from_host(big, 1, SHAPE(2), KILN_I64, KILN_CPU);
    kiln_tensor *back = kiln_tensor_cast(kiln_tensor_cast(bi, KILN_F64), KILN_I64);
    int64_t got[2];
    cr_assert_eq(kiln_tensor_to_host(back, got, sizeof got), KILN_STATUS_OK);
    cr_expect(got[0] == big[0] && got[1] == big[1]);
    cr_expect_null(kiln_tensor_cast(f, (kiln_dtype)-1));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "not a kiln_dtype");
}

/* Casts double values to dt (via kiln_tensor_cast from f64) and returns the 16-bit patterns. */
static void to_bits16(kiln_dtype dt, const double *v, int n, uint16_t *bits) {
    kiln_tensor *d = kiln_tensor_from_host(v, 1, (int64_t[]){n}, KILN_F64, KILN_CPU);
    kiln_tensor *h = kiln_tensor_cast(d, dt);
    cr_assert(h != NULL, "%s", kiln_last_error());
    cr_assert_eq(kiln_tensor_to_host(h, bits, (size_t)n * 2), KILN_STATUS_OK);
}

/* Reinterprets 16-bit patterns as dt and casts them to f64. */
static double *from_bits16(kiln_dtype dt, const uint16_t *bits, int n) {
    kiln_tensor *h = kiln_tensor_from_host(bits, 1, (int64_t[]){n}, dt, KILN_CPU);
    cr_assert(h != NULL);
    return kt_values(h);
}

KT_TEST(tensor, f16_conversion_rounds_to_nearest_even) {
    const double v[] = {
        1.0, -2.0, 0.0, -0.0, 65504.0, /* largest finite */
        65519.99, 65520.0,             /* just below the halfway point to 2^16, and on it: ties go to inf */
        1.0 + 0x1p-11,                 /* halfway between 1 and 1+2^-10: to even (1) */
        1.0 + 3 * 0x1p-11,             /* halfway between 1+2^-10 and 1+2^-9: to even (1+2^-9) */
        1.0 + 0x1p-11 + 0x1p-20,       /* just above halfway: up */
        0x1p-14,                       /* smallest normal */
        0x1p-24,                       /* smallest subnormal */
        0x1p-25,                       /* halfway between 0 and 2^-24: to even (0) */
        3 * 0x1p-25,                   /* halfway between 2^-24 and 2^-23: to even (2^-23) */
        0x1p-14 - 0x1p-25,             /* halfway between the largest subnormal and 2^-14: up */
        1e-9,                          /* underflows to 0 */
        INFINITY, -INFINITY, 1e6,
    };
    const uint16_t want[] = {0x3c00, 0xc000, 0x0000, 0x8000, 0x7bff, 0x7bff, 0x7c00, 0x3c00, 0x3c02, 0x3c01,
                             0x0400, 0x0001, 0x0000, 0x0002, 0x0400, 0x0000, 0x7c00, 0xfc00, 0x7c00};
    enum { N = sizeof want / sizeof want[0] };
    uint16_t bits[N];
    to_bits16(KILN_F16, v, N, bits);
    for (int i = 0; i < N; i++) cr_expect_eq(bits[i], want[i], "%.17g -> %04x, expected %04x", v[i], bits[i], want[i]);
    uint16_t nb;
    to_bits16(KILN_F16, (const double[]){NAN}, 1, &nb);
    cr_expect(((nb >> 10) & 31) == 31 && (nb & 1023) != 0, "NaN -> %04x is not a NaN", nb);
}

KT_TEST(tensor, f16_bits_decode_exactly) {
    const uint16_t bits[] = {0x3c00, 0x0001, 0x03ff, 0x0400, 0x7bff, 0xfc00, 0x7c00, 0x8000, 0x3555, 0xc100};
    const double want[] = {1.0, 0x1p-24, 1023 * 0x1p-24, 0x1p-14, 65504.0, -INFINITY, INFINITY, -0.0,
                           0x1.554p-2, -2.5};
    enum { N = sizeof bits / sizeof bits[0] };
    double *v = from_bits16(KILN_F16, bits, N);
    for (int i = 0; i < N; i++) cr_expect(v[i] == want[i], "%04x -> %.17g, expected %.17g", bits[i], v[i], want[i]);
    cr_expect(signbit(v[7]), "0x8000 is -0");
    free(v);
    v = from_bits16(KILN_F16, (const uint16_t[]){0x7e00, 0xfe01}, 2);
    cr_expect(isnan(v[0]) && isnan(v[1]));
    free(v);
}

KT_TEST(tensor, bf16_conversion_rounds_to_nearest_even) {
    const double v[] = {
        1.0, -2.0, 0.0,
        1.0 + 0x1p-8,            /* halfway between 1 and 1+2^-7: to even (1) */
        1.0 + 3 * 0x1p-8,        /* halfway between 1+2^-7 and 1+2^-6: to even */
        1.0 + 0x1p-8 + 0x1p-20,  /* above halfway: up */
        3.4028234663852886e38,   /* FLT_MAX rounds to inf in bf16 */
        0x1p-130,                /* an f32 subnormal stays subnormal */
        INFINITY, -INFINITY,
    };
    const uint16_t want[] = {0x3f80, 0xc000, 0x0000, 0x3f80, 0x3f82, 0x3f81, 0x7f80, 0x0008, 0x7f80, 0xff80};
    enum { N = sizeof want / sizeof want[0] };
    uint16_t bits[N];
    to_bits16(KILN_BF16, v, N, bits);
    for (int i = 0; i < N; i++) cr_expect_eq(bits[i], want[i], "%.17g -> %04x, expected %04x", v[i], bits[i], want[i]);
    uint16_t nb;
    to_bits16(KILN_BF16, (const double[]){NAN}, 1, &nb);
    cr_expect(((nb >> 7) & 255) == 255 && (nb & 127) != 0, "NaN -> %04x is not a NaN", nb);
    double *back = from_bits16(KILN_BF16, (const uint16_t[]){0x3f80, 0x4049, 0x0020, 0xff80, 0x7fc0}, 5);
    cr_expect(back[0] == 1.0 && back[1] == 3.140625 && back[2] == 0x1p-128 && back[3] == -INFINITY && isnan(back[4]));
    free(back);
}

/* ---- item, describe, print ------------------------------------------------------------ */

KT_TEST(tensor, item) {
    cr_expect_eq(kiln_tensor_item(kiln_tensor_scalar(-1.5, KILN_F64, KILN_CPU)), -1.5);
    cr_expect_eq(kiln_tensor_item(kiln_tensor_full(2, SHAPE(1, 1), 9, KILN_I64, KILN_CPU)), 9);
    /* one element of a view, at an offset */
    kiln_tensor *a = kiln_tensor_arange(0, 6, 1, KILN_F32, KILN_CPU);
    cr_expect_eq(kiln_tensor_item(kiln_slice(a, 0, 4, 5, 1)), 4);
    cr_expect(isnan(kiln_tensor_item(a)));
    kt_expect_error(KILN_STATUS_SHAPE, "has 6 elements");
    cr_expect(isnan(kiln_tensor_item(NULL)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "NULL");
}

KT_TEST(tensor, describe) {
    char buf[64];
    cr_expect_str_eq(kiln_tensor_describe(kiln_tensor_empty(2, SHAPE(2, 3), KILN_F32, KILN_CPU), buf, sizeof buf),
                     "f32[2, 3] cpu");
    cr_expect_str_eq(kiln_tensor_describe(kiln_tensor_scalar(0, KILN_BF16, KILN_CPU), buf, sizeof buf), "bf16[] cpu");
    cr_expect_str_eq(kiln_tensor_describe(NULL, buf, sizeof buf), "NULL");
    /* a short buffer truncates, never overflows */
    char small[6];
    kiln_tensor_describe(kiln_tensor_empty(2, SHAPE(2, 3), KILN_F32, KILN_CPU), small, sizeof small);
    cr_expect_str_eq(small, "f32[2");
}

static char *print_to_string(const kiln_tensor *t) {
    FILE *f = tmpfile();
    cr_assert(f != NULL);
    kiln_tensor_print(t, f);
    long n = ftell(f);
    rewind(f);
    char *s = calloc((size_t)n + 1, 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return s;
}

KT_TEST(tensor, print) {
    kiln_tensor *t = KT_F32(2, KT_SHAPE(2, 3), {1, 2.5, -3, 4, 5, 6});
    char *s = print_to_string(t);
    cr_expect_str_eq(s, "tensor f32[2, 3] cpu\n  [ 1 2.5 -3\n    4 5 6 ]\n");
    free(s);
    kiln_tensor_set_requires_grad(t, true);
    s = print_to_string(kiln_transpose(t, 0, 1));
    cr_expect_str_eq(s, "tensor f32[3, 2] cpu requires_grad\n  [ 1 4\n    2.5 5\n    -3 6 ]\n");
    free(s);
    s = print_to_string(kiln_tensor_arange(0, 100, 1, KILN_I64, KILN_CPU));
    cr_expect_str_eq(s, "tensor i64[100] cpu\n  [ 0 1 2 ... 97 98 99 ]\n");
    free(s);
    s = print_to_string(kiln_tensor_scalar(0.125, KILN_F64, KILN_CPU));
    cr_expect_str_eq(s, "tensor f64[] cpu\n  [ 0.125 ]\n");
    free(s);
    s = print_to_string(NULL);
    cr_expect_str_eq(s, "tensor NULL\n");
    free(s);
}

/* ---- strides, contiguity, views ---------------------------------------------------------- */

KT_TEST(tensor, strides_are_in_elements) {
    kiln_tensor *t = kiln_tensor_zeros(3, SHAPE(2, 3, 4), KILN_F64, KILN_CPU);
    cr_expect(kiln_tensor_stride(t, 0) == 12 && kiln_tensor_stride(t, 1) == 4 && kiln_tensor_stride(t, 2) == 1);
    cr_expect_eq(kiln_tensor_stride(t, -3), 12);
    kiln_tensor *p = kiln_permute(t, (int[]){2, 0, 1});
    cr_expect(kiln_tensor_stride(p, 0) == 1 && kiln_tensor_stride(p, 1) == 12 && kiln_tensor_stride(p, 2) == 4);
    kiln_tensor *s = kiln_slice(t, 2, 0, 4, 2);
    cr_expect_eq(kiln_tensor_stride(s, 2), 2);
    kiln_tensor *e = kiln_expand(kiln_tensor_zeros(2, SHAPE(1, 4), KILN_U8, KILN_CPU), 2, SHAPE(5, 4));
    cr_expect(kiln_tensor_stride(e, 0) == 0 && kiln_tensor_stride(e, 1) == 1);
}

KT_TEST(tensor, contiguity) {
    kiln_tensor *t = kiln_tensor_zeros(2, SHAPE(4, 3), KILN_F32, KILN_CPU);
    cr_expect(kiln_tensor_is_contiguous(t));
    cr_expect_not(kiln_tensor_is_contiguous(kiln_transpose(t, 0, 1)));
    cr_expect(kiln_tensor_is_contiguous(kiln_slice(t, 0, 1, 3, 1)), "a block of whole rows is contiguous");
    cr_expect_not(kiln_tensor_is_contiguous(kiln_slice(t, 0, 0, 4, 2)));
    cr_expect_not(kiln_tensor_is_contiguous(kiln_slice(t, 1, 0, 2, 1)));
    cr_expect_not(kiln_tensor_is_contiguous(kiln_expand(kiln_unsqueeze(t, 0), 3, SHAPE(2, 4, 3))));
    /* size-1 axes do not count, whatever their stride */
    cr_expect(kiln_tensor_is_contiguous(kiln_transpose(kiln_tensor_zeros(2, SHAPE(1, 5), KILN_F32, KILN_CPU), 0, 1)));
    kiln_tensor *tt = kiln_transpose(t, 0, 1);
    kiln_tensor *c = kiln_tensor_contiguous(tt);
    cr_expect(kiln_tensor_is_contiguous(c));
    cr_expect_eq(kiln_tensor_contiguous(t), t, "contiguous() of a contiguous tensor is the tensor itself");
}

KT_TEST(tensor, copy_broadcasts_into_the_destination) {
    kiln_tensor *dst = kiln_tensor_zeros(2, SHAPE(2, 3), KILN_F32, KILN_CPU);
    cr_assert_eq(kiln_tensor_copy_(dst, KT_F32(1, KT_SHAPE(3), {1, 2, 3})), KILN_STATUS_OK);
    KT_EXPECT(dst, 0, 0, {1, 2, 3, 1, 2, 3});
    cr_assert_eq(kiln_tensor_copy_(dst, KT_F64(2, KT_SHAPE(2, 1), {7, 8})), KILN_STATUS_OK); /* converts dtype */
    KT_EXPECT(dst, 0, 0, {7, 7, 7, 8, 8, 8});
    cr_assert_eq(kiln_tensor_copy_(dst, kiln_tensor_scalar(-1, KILN_F32, KILN_CPU)), KILN_STATUS_OK);
    KT_EXPECT(dst, 0, 0, {-1, -1, -1, -1, -1, -1});
    /* into a strided view: writes land in the base */
    kiln_tensor *col = kiln_slice(kiln_transpose(dst, 0, 1), 0, 1, 2, 1); /* dst[:, 1] as [1, 2] */
    cr_assert_eq(kiln_tensor_copy_(col, KT_F32(1, KT_SHAPE(2), {10, 20})), KILN_STATUS_OK);
    KT_EXPECT(dst, 0, 0, {-1, 10, -1, -1, 20, -1});
    /* the source must broadcast to the destination, not the other way */
    cr_expect_eq(kiln_tensor_copy_(kiln_tensor_zeros(1, SHAPE(3), KILN_F32, KILN_CPU), dst), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "does not broadcast to destination [3]");
    cr_expect_eq(kiln_tensor_copy_(dst, KT_F32(1, KT_SHAPE(2), {1, 2})), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "do not broadcast");
    cr_expect_eq(kiln_tensor_copy_(dst, NULL), KILN_STATUS_INVALID_ARGUMENT);
    kiln_clear_error();
}

KT_TEST(tensor, detach_shares_storage_and_clone_does_not) {
    kiln_tensor *a = KT_F32(1, KT_SHAPE(3), {1, 2, 3});
    kiln_tensor_set_requires_grad(a, true);
    kiln_tensor *d = kiln_tensor_detach(a);
    kiln_tensor *c = kiln_tensor_clone(a);
    cr_expect_not(kiln_tensor_requires_grad(d));
    cr_expect_not(kiln_tensor_requires_grad(c), "clone records nothing");
    cr_expect_eq(kiln_tensor_data(d), kiln_tensor_data(a));
    cr_expect_neq(kiln_tensor_data(c), kiln_tensor_data(a));
    kiln_tensor_fill(d, 5);
    KT_EXPECT(a, 0, 0, {5, 5, 5});
    KT_EXPECT(c, 0, 0, {1, 2, 3});
    kiln_tensor_fill(c, 9);
    KT_EXPECT(a, 0, 0, {5, 5, 5});
    /* detach of a view keeps its geometry */
    kiln_tensor *v = kiln_tensor_detach(kiln_slice(a, 0, 1, 3, 1));
    KT_EXPECT_SHAPE(v, 1, 2);
    cr_expect_eq((char *)kiln_tensor_data(v), (char *)kiln_tensor_data(a) + sizeof(float));
    /* clone of a non-contiguous tensor is contiguous with the same values */
    kiln_tensor *m = kiln_transpose(KT_F64(2, KT_SHAPE(2, 2), {1, 2, 3, 4}), 0, 1);
    kiln_tensor *mc = kiln_tensor_clone(m);
    cr_expect(kiln_tensor_is_contiguous(mc));
    KT_EXPECT(mc, 0, 0, {1, 3, 2, 4});
}

KT_TEST(tensor, to_cpu_is_a_contiguous_copy) {
    kiln_tensor *a = KT_F32(2, KT_SHAPE(2, 3), {1, 2, 3, 4, 5, 6});
    kiln_tensor *t = kiln_transpose(a, 0, 1);
    kiln_tensor *c = kiln_tensor_to(t, KILN_CPU);
    cr_assert(c != NULL);
    KT_EXPECT_SHAPE(c, 2, 3, 2);
    cr_expect(kiln_tensor_is_contiguous(c));
    KT_EXPECT(c, 0, 0, {1, 4, 2, 5, 3, 6});
    kiln_tensor_fill(c, 0);
    KT_EXPECT(a, 0, 0, {1, 2, 3, 4, 5, 6});
    kiln_tensor *same = kiln_tensor_to(a, KILN_CPU);
    cr_expect_neq(kiln_tensor_data(same), kiln_tensor_data(a));
    cr_expect_eq(kiln_tensor_dtype(same), KILN_F32);
}

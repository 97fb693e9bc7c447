/* Misuse through the public API: shapes whose arithmetic overflows, zero-size tensors
 * with huge other axes, allocations larger than the device, geometry parameters past
 * any real image, walking a graph twice, and messages that must point the right way.
 * Each case ends as a clear error or the right number, at once (no hang, no crash). */
#include "support/kiln_test.h"

#include <stdint.h>
#include <string.h>

TestSuite(limits, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define P62 ((int64_t)1 << 62)

KT_TEST(limits, reshape_whose_product_wraps_to_numel_is_refused) {
    kiln_tensor *a = KT_F32(1, KT_SHAPE(4), {1, 2, 3, 4});
    /* (2^62+1) * 4 wraps to 4 in 64-bit arithmetic: it used to be accepted */
    cr_expect_null(kiln_reshape(a, 2, SHAPE(P62 + 1, 4)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "reshape: shape [4611686018427387905, 4] has more elements");
    cr_expect_null(kiln_reshape(a, 3, SHAPE(-1, P62, 4)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "more elements than 64-bit sizes hold");
}

KT_TEST(limits, empty_whose_bytes_overflow_is_refused_before_any_write) {
    /* (2^61-1) * 8 bytes and (2^62-2^18) * 4 bytes wrap below 2^64: 0-byte storage before */
    cr_expect_null(kiln_tensor_empty(1, SHAPE(((int64_t)1 << 61) - 1), KILN_F64, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "shape [2305843009213693951] of 8-byte elements is too large");
    cr_expect_null(kiln_tensor_full(1, SHAPE(P62 - ((int64_t)1 << 18)), 1.0, KILN_F32, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "too large");
    cr_expect_null(kiln_tensor_zeros(2, SHAPE(P62, 4), KILN_F32, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "[4611686018427387904, 4]");
    cr_expect_null(kiln_tensor_empty(3, SHAPE(INT64_MAX, 2, 0), KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "overflows 64-bit arithmetic");
}

KT_TEST(limits, a_tensor_larger_than_the_device_is_oom_before_a_kernel) {
    /* 2^44 bytes (16 TiB): representable, but more than any CPU here has */
    cr_expect_null(kiln_tensor_zeros(2, SHAPE((int64_t)1 << 20, (int64_t)1 << 22), KILN_F32, KILN_CPU));
    kt_expect_error(KILN_STATUS_OOM, "more than the device's");
    kiln_pool_stats st = kiln_memory_stats(KILN_CPU);
    cr_expect_eq(st.in_use, 0);
}

KT_TEST(limits, expand_past_64_bits_is_refused_and_sum_all_never_returns_a_wrong_zero) {
    kiln_tensor *a = KT_F32(2, KT_SHAPE(1, 3), {1, 2, 3});
    cr_expect_null(kiln_sum_all(kiln_expand(a, 2, SHAPE(P62, 3))));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "expand");
    /* a large expand that fits: the sum is the right number */
    kiln_tensor *e = kiln_expand(a, 2, SHAPE(1000, 3));
    KT_EXPECT(kiln_sum_all(e), 0, 0, {6000});
}

KT_TEST(limits, zero_size_tensors_with_huge_axes_return_at_once) {
    /* [2^32, 0] took 44 s to cast (2^32 empty rows walked); [2^59, 0] would never end */
    kiln_tensor *z = kiln_tensor_empty(2, SHAPE((int64_t)1 << 59, 0), KILN_U8, KILN_CPU);
    cr_assert_not_null(z, "%s", kiln_last_error());
    kiln_tensor *f = kiln_tensor_cast(z, KILN_F32);
    cr_assert_not_null(f, "%s", kiln_last_error());
    KT_EXPECT_SHAPE(f, 2, (int64_t)1 << 59, 0);
    kiln_tensor *s0 = kiln_sum(f, 1, (const int[]){0}, false);
    cr_assert_not_null(s0, "%s", kiln_last_error());
    KT_EXPECT_SHAPE(s0, 1, 0);
    KT_EXPECT(kiln_sum_all(f), 0, 0, {0});
    kiln_tensor *m = kiln_mean_all(f);
    cr_assert_not_null(m);
    cr_expect(isnan(kiln_tensor_item(m)), "mean of nothing is NaN, as torch");
    KT_EXPECT_SHAPE(kiln_add(f, f), 2, (int64_t)1 << 59, 0);
    KT_EXPECT_SHAPE(kiln_exp(kiln_tensor_contiguous(kiln_transpose(f, 0, 1))), 2, 0, (int64_t)1 << 59);
    cr_expect_eq(kiln_tensor_fill(f, 3.0), KILN_STATUS_OK);
    /* summing away the empty axis would make 2^59 floats: more than the machine */
    cr_expect_null(kiln_sum(f, 1, (const int[]){1}, false));
    kt_expect_error(KILN_STATUS_OOM, "more than the device's");
    /* [2^62, 0] u8 is a tensor; as f32 its sizes times 4 bytes pass 2^63: refused at once */
    kiln_tensor *big = kiln_tensor_empty(2, SHAPE(P62, 0), KILN_U8, KILN_CPU);
    cr_assert_not_null(big, "%s", kiln_last_error());
    cr_expect_null(kiln_tensor_cast(big, KILN_F32));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "[4611686018427387904, 0] of 4-byte elements is too large");
}

KT_TEST(limits, the_83_byte_safetensors_shape_is_refused_and_its_kin_reduce_safely) {
    /* U8 [0, 2^62, 2]: its contiguous stride along axis 0 would be 2^63; read, cast and
     * summed it used to end in a heap-buffer-overflow write */
    cr_expect_null(kiln_tensor_empty(3, SHAPE(0, P62, 2), KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "[0, 4611686018427387904, 2] of 1-byte elements is too large");
    /* [0, 2^59, 2]: cast, then a sum over axis 0 is a [2^59, 2] f32 result (4 EiB) */
    kiln_tensor *z = kiln_tensor_empty(3, SHAPE(0, (int64_t)1 << 59, 2), KILN_U8, KILN_CPU);
    cr_assert_not_null(z, "%s", kiln_last_error());
    kiln_tensor *f = kiln_tensor_cast(z, KILN_F32);
    cr_assert_not_null(f);
    cr_expect_null(kiln_sum(kiln_sum(f, 1, (const int[]){0}, false), 1, (const int[]){-1}, false));
    kt_expect_error(KILN_STATUS_OOM, "more than the device's");
    KT_EXPECT_SHAPE(kiln_sum(f, 1, (const int[]){-1}, false), 2, 0, (int64_t)1 << 59);
}

KT_TEST(limits, slice_with_a_huge_step_takes_one_element) {
    kiln_tensor *a = KT_F32(1, KT_SHAPE(5), {1, 2, 3, 4, 5});
    kiln_tensor *s = kiln_slice(a, 0, 1, 5, INT64_MAX);
    KT_EXPECT_SHAPE(s, 1, 1);
    KT_EXPECT(kiln_tensor_contiguous(s), 0, 0, {2});
    kiln_tensor_set_requires_grad(a, true);
    kiln_tensor *l = kiln_sum_all(kiln_slice(a, 0, 3, INT64_MAX, INT64_MAX));
    cr_assert_eq(kiln_backward(l, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(a), 0, 0, {0, 0, 0, 1, 0});
}

static float g_ext[4];
KT_TEST(limits, external_strides_that_span_past_64_bits_are_refused) {
    cr_expect_null(kiln_tensor_from_external(g_ext, 2, SHAPE(4, 2), (const int64_t[]){INT64_MAX / 2, 1}, KILN_F32,
                                             KILN_CPU, NULL, NULL));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "spans more than 2^63 bytes");
    cr_expect_null(kiln_tensor_from_external(g_ext, 2, SHAPE(3, 2), (const int64_t[]){INT64_MAX / 3, 1}, KILN_F32,
                                             KILN_CPU, NULL, NULL));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "spans more than 2^63 bytes");
}

KT_TEST(limits, arange_past_2_53_values_names_arange) {
    cr_expect_null(kiln_tensor_arange(0, 1e30, 1, KILN_F32, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_arange: start 0, end 1e+30, step 1 give 1e+30 values");
    /* representable but larger than the machine: out of memory, not a wild size */
    cr_expect_null(kiln_tensor_arange(0, 1e15, 1, KILN_F64, KILN_CPU));
    kt_expect_error(KILN_STATUS_OOM, "more than the device's");
    KT_EXPECT(kiln_tensor_arange(0, 1, 0.25, KILN_F64, KILN_CPU), 0, 0, {0, 0.25, 0.5, 0.75});
}

KT_TEST(limits, conv2d_padding_past_any_image_is_an_error_not_a_wild_write) {
    kiln_tensor *x = kiln_tensor_zeros(4, SHAPE(1, 1, 3, 3), KILN_F32, KILN_CPU);
    kiln_tensor *w = kiln_tensor_zeros(4, SHAPE(1, 1, 3, 3), KILN_F32, KILN_CPU);
    kiln_conv2d_params p = kiln_conv2d_params_default();
    p.padding[0] = p.padding[1] = INT32_MAX;
    cr_expect_null(kiln_conv2d(x, w, NULL, &p));
    cr_expect_neq(kiln_last_status(), KILN_STATUS_OK);
    kt_expect_error(kiln_last_status(), "conv2d");
    p = kiln_conv2d_params_default();
    p.padding[0] = INT64_MAX;
    cr_expect_null(kiln_conv2d(x, w, NULL, &p));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "conv2d: padding");
    p = kiln_conv2d_params_default();
    p.dilation[1] = INT64_MAX;
    cr_expect_null(kiln_conv2d(x, w, NULL, &p));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "conv2d: dilation");
    p = kiln_conv2d_params_default();
    p.stride[0] = INT64_MAX; /* legal: one output row */
    KT_EXPECT_SHAPE(kiln_conv2d(x, w, NULL, &p), 4, 1, 1, 1, 1);
}

KT_TEST(limits, conv_transpose2d_output_past_64_bits_is_refused) {
    kiln_tensor *x = kiln_tensor_zeros(4, SHAPE(1, 1, 3, 3), KILN_F32, KILN_CPU);
    kiln_tensor *w = kiln_tensor_zeros(4, SHAPE(1, 1, 2, 2), KILN_F32, KILN_CPU);
    kiln_conv_transpose2d_params p = kiln_conv_transpose2d_params_default();
    p.stride[0] = P62;
    cr_expect_null(kiln_conv_transpose2d(x, w, NULL, &p));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "conv_transpose2d");
}

KT_TEST(limits, pooling_windows_past_any_image_are_errors) {
    kiln_tensor *x = kiln_tensor_zeros(4, SHAPE(1, 1, 4, 4), KILN_F32, KILN_CPU);
    kiln_pool2d_params p = kiln_pool2d_params_default(2, 2);
    p.dilation[0] = P62;
    cr_expect_null(kiln_max_pool2d(x, &p));
    kt_expect_error(KILN_STATUS_SHAPE, "max_pool2d: input [1, 1, 4, 4] is too small");
    p = kiln_pool2d_params_default(2, 2);
    p.dilation[0] = INT64_MAX;
    cr_expect_null(kiln_max_pool2d(x, &p));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "max_pool2d: kernel 2, dilation");
    p = kiln_pool2d_params_default(INT64_MAX, 2);
    p.stride[0] = 1;
    p.padding[0] = INT64_MAX / 2;
    cr_expect_null(kiln_max_pool2d(x, &p));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "max_pool2d");
}

KT_TEST(limits, upsampling_to_a_size_past_64_bits_is_refused) {
    kiln_tensor *x = kiln_tensor_zeros(4, SHAPE(1, 1, 2, 2), KILN_F32, KILN_CPU);
    cr_expect_null(kiln_upsample_nearest2d_scale(x, 1e300, 1));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "upsample");
}

KT_TEST(limits, an_unknown_device_type_is_named_as_such) {
    kiln_device bad = {(kiln_device_type)7, 0};
    char b[32];
    cr_expect_str_eq(kiln_device_name(bad, b, sizeof b), "device type 7");
    cr_expect_null(kiln_tensor_zeros(1, SHAPE(2), KILN_F32, bad));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "device type 7 is not a kiln_device_type");
}

KT_TEST(limits, backward_twice_through_one_graph_is_refused_unless_retained) {
    kiln_tensor *w = KT_F64(1, KT_SHAPE(2), {1.5, -2});
    kiln_tensor_set_requires_grad(w, true);
    kiln_tensor *l = kiln_sum_all(kiln_mul(w, w));
    cr_assert_eq(kiln_backward(l, NULL), KILN_STATUS_OK);
    KT_EXPECT(kiln_tensor_grad(w), 0, 0, {3, -4});
    cr_expect_eq(kiln_backward(l, NULL), KILN_STATUS_STATE);
    kt_expect_error(KILN_STATUS_STATE, "pass retain_graph = true to the first call");
    KT_EXPECT(kiln_tensor_grad(w), 0, 0, {3, -4}); /* not doubled */

    kiln_tensor_zero_grad(w);
    kiln_tensor *l2 = kiln_sum_all(kiln_mul(w, w));
    cr_assert_eq(kiln_backward_ex(l2, NULL, true), KILN_STATUS_OK);
    cr_assert_eq(kiln_backward_ex(l2, NULL, true), KILN_STATUS_OK);
    KT_EXPECT(kiln_tensor_grad(w), 0, 0, {6, -8}); /* two walks, accumulated, as torch */
    cr_assert_eq(kiln_backward(l2, NULL), KILN_STATUS_OK); /* the last walk may release it */
    cr_expect_eq(kiln_backward(l2, NULL), KILN_STATUS_STATE);
    kiln_clear_error();
    /* a new graph on the same leaves is fine */
    cr_expect_eq(kiln_backward(kiln_sum_all(w), NULL), KILN_STATUS_OK);
    KT_EXPECT(kiln_tensor_grad(w), 0, 0, {10, -11});
}

KT_TEST(limits, a_shared_trunk_walked_twice_is_refused_as_in_torch) {
    kiln_tensor *w = KT_F64(1, KT_SHAPE(2), {1, 2});
    kiln_tensor_set_requires_grad(w, true);
    kiln_tensor *h = kiln_exp(w);
    cr_assert_eq(kiln_backward(kiln_sum_all(h), NULL), KILN_STATUS_OK);
    cr_expect_eq(kiln_backward(kiln_mean_all(h), NULL), KILN_STATUS_STATE);
    kt_expect_error(KILN_STATUS_STATE, "already walked");
}

KT_TEST(limits, backward_of_a_failed_chain_returns_the_first_status) {
    kiln_tensor *a = KT_F32(1, KT_SHAPE(2), {1, 2});
    kiln_tensor_set_requires_grad(a, true);
    kiln_tensor *big = kiln_expand(kiln_reshape(a, 2, SHAPE(2, 1)), 2, SHAPE(2, (int64_t)1 << 42));
    kiln_tensor *l = kiln_sum_all(kiln_exp(big)); /* exp needs 2^45 bytes: OOM */
    cr_expect_null(l);
    cr_expect_eq(kiln_backward(l, NULL), KILN_STATUS_OOM);
    kt_expect_error(KILN_STATUS_OOM, "out of memory on cpu");
}

KT_TEST(limits, backward_after_scope_keep_names_scope_keep) {
    kiln_tensor *w = KT_F32(1, KT_SHAPE(2), {1, 2});
    kiln_tensor_set_requires_grad(w, true);
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *l = kiln_scope_keep(kiln_sum_all(kiln_mul(w, w)));
    kiln_scope_end(s);
    cr_expect_eq(kiln_backward(l, NULL), KILN_STATUS_STATE);
    kt_expect_error(KILN_STATUS_STATE, "kiln_scope_keep, which cuts it from the tape");
}

KT_TEST(limits, a_negative_class_index_is_called_negative) {
    kiln_tensor *x = KT_F32(2, KT_SHAPE(2, 3), {0, 1, 2, 3, 4, 5});
    int64_t t[2] = {1, -5};
    kiln_tensor *y = kiln_tensor_from_host(t, 1, SHAPE(2), KILN_I64, KILN_CPU);
    cr_expect_null(kiln_cross_entropy(x, y, NULL));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "holds class index -5; class indices run 0..2 and are never "
                                                  "negative");
    t[1] = 7;
    y = kiln_tensor_from_host(t, 1, SHAPE(2), KILN_I64, KILN_CPU);
    cr_expect_null(kiln_cross_entropy(x, y, NULL));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "give the input C = 8+ channels");
}

KT_TEST(limits, thread_counts_below_one_are_refused) {
    int before = kiln_get_num_threads();
    cr_expect_geq(before, 1);
    cr_expect_eq(kiln_set_num_threads(0), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_set_num_threads: 0 threads");
    cr_expect_eq(kiln_set_num_threads(1), KILN_STATUS_OK);
    cr_expect_eq(kiln_get_num_threads(), 1);
    kiln_set_num_threads(before);
}

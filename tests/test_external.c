/* The binding hooks of the core: tensors over external memory (zero-copy import,
 * the deleter runs once when the last view dies) and detached scopes (owners that
 * outlive the scope stack and are freed in any order). */
#include "support/kiln_test.h"

TestSuite(external, .init = kiln_test_setup, .fini = kiln_test_teardown);

static int g_deleted;
static void count_delete(void *ctx) { g_deleted += *(int *)ctx; }

KT_TEST(external, strided_view_and_deleter_after_last_view) {
    /* a 2x3 block inside a 2x4 row-major buffer: strides (4, 1) elements */
    double buf[8] = {1, 2, 3, -1, 4, 5, 6, -1};
    int one = 1;
    g_deleted = 0;
    kiln_tensor *t = kiln_tensor_from_external(buf, 2, (int64_t[]){2, 3}, (int64_t[]){4, 1}, KILN_F64, KILN_CPU,
                                               count_delete, &one);
    cr_assert_not_null(t, "%s", kiln_last_error());
    cr_expect_eq(kiln_tensor_stride(t, 0), 4);
    cr_expect(!kiln_tensor_is_contiguous(t));
    KT_EXPECT(t, 0, 0, {1, 2, 3, 4, 5, 6});
    kiln_tensor *tt = kiln_transpose(t, 0, 1);
    KT_EXPECT(kiln_sum(tt, 1, (int[]){1}, false), 0, 0, {5, 7, 9});
    /* writes through kiln land in the caller's buffer */
    cr_assert_eq(kiln_tensor_copy_(kiln_slice(t, 1, 0, 1, 1), kiln_tensor_scalar(7, KILN_F64, KILN_CPU)),
                 KILN_STATUS_OK);
    cr_expect_eq(buf[0], 7);
    cr_expect_eq(buf[4], 7);
    kiln_tensor_free(t);
    cr_expect_eq(g_deleted, 0, "views still share the memory");
    kiln_tensor_free(tt);
    cr_expect_eq(g_deleted, 0, "the slice view still shares it");
}

KT_TEST(external, deleter_runs_once_when_scope_ends) {
    float buf[4] = {1, 2, 3, 4};
    int one = 1;
    g_deleted = 0;
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *t = kiln_tensor_from_external(buf, 1, (int64_t[]){4}, NULL, KILN_F32, KILN_CPU, count_delete, &one);
    kiln_tensor *r = kiln_reshape(t, 2, (int64_t[]){2, 2});
    KT_EXPECT(kiln_mul_scalar(r, 2), 0, 0, {2, 4, 6, 8});
    kiln_scope_end(s);
    cr_expect_eq(g_deleted, 1);
}

KT_TEST(external, bad_input_is_an_error_and_keeps_ownership) {
    float buf[4] = {0};
    int one = 1;
    g_deleted = 0;
    cr_expect_null(kiln_tensor_from_external(buf, 1, (int64_t[]){4}, (int64_t[]){-1}, KILN_F32, KILN_CPU,
                                             count_delete, &one));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "negative");
    cr_expect_null(kiln_tensor_from_external(NULL, 1, (int64_t[]){4}, NULL, KILN_F32, KILN_CPU, count_delete, &one));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "NULL");
    if (!kiln_device_available(KILN_CUDA(0))) {
        cr_expect_null(kiln_tensor_from_external(buf, 1, (int64_t[]){4}, NULL, KILN_F32, KILN_CUDA(0), NULL, NULL));
        kt_expect_error(KILN_STATUS_NO_DEVICE, "cuda:0");
    }
    cr_expect_eq(g_deleted, 0);
}

KT_TEST(external, detached_scope_outlives_the_stack_and_frees_its_graph) {
    size_t before = kiln_memory_stats(KILN_CPU).in_use;
    kiln_tensor *x = kiln_tensor_full(1, (int64_t[]){3}, 2.0, KILN_F64, KILN_CPU);
    kiln_tensor_set_requires_grad(x, true);
    kiln_scope *outer = kiln_scope_begin();
    kiln_scope *a = kiln_scope_begin();
    kiln_tensor *y = kiln_mul(x, x);
    cr_expect_eq(kiln_scope_detach(outer), KILN_STATUS_STATE, "only the innermost scope detaches");
    kiln_clear_error();
    cr_assert_eq(kiln_scope_detach(a), KILN_STATUS_OK);
    kiln_scope *b = kiln_scope_begin(); /* opens inside outer again */
    kiln_tensor *z = kiln_sum_all(y);
    cr_assert_eq(kiln_scope_detach(b), KILN_STATUS_OK);
    kiln_scope_end(outer); /* frees nothing of a or b */
    kiln_scope *bw = kiln_scope_begin(); /* backward's temporaries */
    cr_assert_eq(kiln_backward(z, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_scope_end(bw);
    KT_EXPECT(kiln_tensor_grad(x), 0, 0, {4, 4, 4});
    kiln_scope_free(a); /* out of creation order: b's node still names y, but nothing walks it */
    kiln_scope_free(b);
    kiln_tensor_free(x);
    cr_expect_eq(kiln_memory_stats(KILN_CPU).in_use, before);
}

KT_TEST(external, freeing_an_open_scope_is_refused) {
    kiln_scope *s = kiln_scope_begin();
    kiln_scope_free(s);
    kt_expect_error(KILN_STATUS_STATE, "still open");
    kiln_scope_end(s);
}

/* Scopes own every tensor and tape node made while they are innermost: ending one
 * frees them all (the pool's in_use returns to where it was), nested scopes end with
 * their parent, kiln_scope_keep moves a result out, and storage is reference-counted
 * so views outlive the tensor they were cut from. */
#include "support/kiln_test.h"

TestSuite(scope, .init = kiln_test_setup, .fini = kiln_test_teardown);

static size_t in_use(void) { return kiln_memory_stats(KILN_CPU).in_use; }

KT_TEST(scope, end_frees_tensors_views_grads_and_nodes) {
    size_t before = in_use();
    kiln_scope *s = kiln_scope_begin();
    cr_assert(s != NULL);
    kiln_tensor *w = kiln_tensor_randn(2, (int64_t[]){16, 8}, 0, 1, KILN_F32, KILN_CPU);
    kiln_tensor_set_requires_grad(w, true);
    kiln_tensor *y = kiln_sigmoid(kiln_mul(kiln_transpose(w, 0, 1), kiln_tensor_scalar(2, KILN_F32, KILN_CPU)));
    kiln_tensor *v = kiln_slice(y, 0, 1, 7, 2);
    cr_assert_eq(kiln_backward(kiln_sum_all(v), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_not_null(kiln_tensor_grad(w));
    cr_expect_gt(in_use(), before);
    kiln_scope_end(s);
    cr_expect_eq(in_use(), before, "ending the scope left %zd bytes live", (ssize_t)(in_use() - before));
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK, "%s", kiln_last_error());
}

KT_TEST(scope, ending_an_outer_scope_ends_the_inner_ones) {
    size_t before = in_use();
    kiln_scope *outer = kiln_scope_begin();
    kiln_tensor_zeros(1, (int64_t[]){100}, KILN_F32, KILN_CPU);
    kiln_scope *inner = kiln_scope_begin();
    kiln_tensor_zeros(1, (int64_t[]){200}, KILN_F32, KILN_CPU);
    kiln_scope *innermost = kiln_scope_begin();
    kiln_tensor_zeros(1, (int64_t[]){300}, KILN_F32, KILN_CPU);
    cr_assert(outer && inner && innermost);
    kiln_scope_end(outer);
    cr_expect_eq(in_use(), before);
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK);
    /* the inner scopes are gone: ending them now is an error, not a crash */
    kiln_scope_end(inner);
    kt_expect_error(KILN_STATUS_STATE, "not open");
    kiln_scope_end(innermost);
    kt_expect_error(KILN_STATUS_STATE, "not open");
    /* new tensors land in the scope that was current before outer began (the test's) */
    kiln_tensor *t = kiln_tensor_zeros(1, (int64_t[]){10}, KILN_F32, KILN_CPU);
    cr_expect_not_null(t);
}

KT_TEST(scope, ending_a_scope_twice_is_an_error) {
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor_zeros(1, (int64_t[]){4}, KILN_F32, KILN_CPU);
    kiln_scope_end(s);
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK);
    kiln_scope_end(s);
    kt_expect_error(KILN_STATUS_STATE, "ended twice");
    kiln_scope_end(NULL); /* a failed kiln_scope_begin's NULL: nothing to do */
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK);
}

KT_TEST(scope, inner_scope_ends_alone) {
    size_t before = in_use();
    kiln_scope *outer = kiln_scope_begin();
    kiln_tensor *a = kiln_tensor_full(1, (int64_t[]){3}, 5, KILN_F32, KILN_CPU);
    size_t with_a = in_use();
    kiln_scope *inner = kiln_scope_begin();
    kiln_tensor *b = kiln_add(a, a);
    KT_EXPECT(b, 0, 0, {10, 10, 10});
    kiln_scope_end(inner);
    cr_expect_eq(in_use(), with_a);
    KT_EXPECT(a, 0, 0, {5, 5, 5}); /* the outer tensor is untouched */
    kiln_scope_end(outer);
    cr_expect_eq(in_use(), before);
}

KT_TEST(scope, keep_moves_a_result_out_and_detaches_it) {
    kiln_tensor *w = KT_F32(1, KT_SHAPE(3), {1, 2, 3});
    kiln_tensor_set_requires_grad(w, true);
    size_t before = in_use();
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *y = kiln_mul(w, w);
    kiln_tensor *tmp = kiln_exp(y);
    cr_assert(tmp != NULL);
    cr_assert(kiln_tensor_requires_grad(y));
    cr_expect_eq(kiln_scope_keep(y), y);
    kiln_scope_end(s);
    /* y survives with its values; only its block is still live */
    KT_EXPECT(y, 0, 0, {1, 4, 9});
    cr_expect_eq(in_use(), before + 512);
    /* it is cut from the tape: no longer requiring grad, no path back to w */
    cr_expect_not(kiln_tensor_requires_grad(y));
    cr_expect_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_STATE);
    kiln_clear_error();
    /* used with a parameter it behaves as a constant: no gradient lands in y */
    kiln_tensor *z = kiln_sum_all(kiln_mul(y, w));
    cr_assert_eq(kiln_backward(z, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(w), 0, 0, {1, 4, 9});
    cr_expect_null(kiln_tensor_grad(y));
    kiln_tensor_free(y);
    kiln_tensor_free(z);
}

KT_TEST(scope, keep_of_a_leaf_keeps_requires_grad) {
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *p = kiln_tensor_zeros(1, (int64_t[]){2}, KILN_F32, KILN_CPU);
    kiln_tensor_set_requires_grad(p, true);
    kiln_scope_keep(p);
    kiln_scope_end(s);
    cr_expect(kiln_tensor_requires_grad(p), "a parameter made in a scope and kept is still a parameter");
    kiln_tensor *loss = kiln_sum_all(kiln_mul_scalar(p, 3));
    cr_assert_eq(kiln_backward(loss, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(p), 0, 0, {3, 3});
}

KT_TEST(scope, keep_goes_one_level_up) {
    size_t before = in_use();
    kiln_scope *outer = kiln_scope_begin();
    kiln_scope *inner = kiln_scope_begin();
    kiln_tensor *t = kiln_tensor_full(1, (int64_t[]){2}, 7, KILN_F64, KILN_CPU);
    kiln_scope_keep(t);
    kiln_scope_end(inner);
    KT_EXPECT(t, 0, 0, {7, 7});
    kiln_scope_end(outer); /* t belonged to outer: gone now */
    cr_expect_eq(in_use(), before);
    cr_expect_null(kiln_scope_keep(NULL));
}

KT_TEST(scope, tensor_free_of_a_scope_tensor) {
    size_t before = in_use();
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *a = kiln_tensor_zeros(1, (int64_t[]){1000}, KILN_F32, KILN_CPU);
    kiln_tensor *b = kiln_tensor_zeros(1, (int64_t[]){10}, KILN_F32, KILN_CPU);
    kiln_tensor *c = kiln_tensor_zeros(1, (int64_t[]){10}, KILN_F32, KILN_CPU);
    size_t all = in_use();
    kiln_tensor_free(b); /* from the middle of the scope's list */
    cr_expect_eq(in_use(), all - 512);
    kiln_tensor_free(a);
    cr_expect_eq(in_use(), all - 512 - 4096);
    kiln_tensor_free(NULL);
    kiln_scope_end(s); /* frees c only; a and b are not freed twice */
    cr_expect_eq(in_use(), before);
    (void)c;
}

KT_TEST(scope, views_keep_storage_alive_after_the_base_is_freed) {
    size_t before = in_use();
    kiln_tensor *base = kiln_tensor_arange(0, 12, 1, KILN_F32, KILN_CPU);
    kiln_tensor *m = kiln_reshape(base, 2, (int64_t[]){3, 4});
    kiln_tensor *col = kiln_slice(m, 1, 1, 4, 2);   /* columns 1 and 3 */
    kiln_tensor *d = kiln_tensor_detach(base);
    cr_assert(m && col && d);
    size_t live = in_use();
    cr_expect_eq(live, before + 512, "views share the base's single block");
    kiln_tensor_free(base);
    cr_expect_eq(in_use(), live, "the storage lives while views use it");
    KT_EXPECT(col, 0, 0, {1, 3, 5, 7, 9, 11});
    kiln_tensor_free(m);
    kiln_tensor_free(d);
    KT_EXPECT(col, 0, 0, {1, 3, 5, 7, 9, 11});
    kiln_tensor_free(col); /* the last reference */
    cr_expect_eq(in_use(), before);
}

KT_TEST(scope, a_step_loop_returns_to_the_same_memory) {
    kiln_tensor *w = kiln_tensor_randn(1, (int64_t[]){50}, 0, 1, KILN_F64, KILN_CPU);
    kiln_tensor_set_requires_grad(w, true);
    size_t base = 0;
    for (int step = 0; step < 3; step++) {
        kiln_scope *s = kiln_scope_begin();
        kiln_tensor *loss = kiln_mean_all(kiln_pow_scalar(kiln_sub(w, kiln_tensor_scalar(1, KILN_F64, KILN_CPU)), 2));
        cr_assert_eq(kiln_backward(loss, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        kiln_scope_end(s);
        if (step == 0) base = in_use();
        cr_expect_eq(in_use(), base, "step %d", step);
    }
}

KT_TEST(scope, freeing_a_gradient_is_refused) {
    kiln_tensor *x = kiln_tensor_full(1, (int64_t[]){2}, 1, KILN_F32, KILN_CPU);
    kiln_tensor_set_requires_grad(x, true);
    cr_assert_eq(kiln_backward(kiln_sum_all(x), NULL), KILN_STATUS_OK);
    kiln_tensor_free(kiln_tensor_grad(x));
    kt_expect_error(KILN_STATUS_STATE, "kiln_tensor_zero_grad");
    KT_EXPECT(kiln_tensor_grad(x), 0, 0, {1, 1}); /* still there, still valid */
}

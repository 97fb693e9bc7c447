/* Lean module forwards: with no tape recording, a lean module's forward leaves only
 * its result in the caller's scope and a Sequential frees each child's output once
 * the next child has read it; results are the same bits as with grad; the caller's
 * tensors, parameters, a child that returns its input, and the tensors of non-lean
 * (custom, Python) modules are never freed; with grad on nothing changes. */
#include "support/kiln_test.h"

#include <stdlib.h>
#include <string.h>

TestSuite(module_lean, .init = kiln_test_setup, .fini = kiln_test_teardown);

static size_t in_use(void) { return kiln_memory_stats(KILN_CPU).in_use; }

static float *values_f32(kiln_tensor *t) {
    int64_t n = kiln_tensor_numel(t);
    float *v = malloc((size_t)n * sizeof *v);
    cr_assert_eq(kiln_tensor_to_host(t, v, (size_t)n * sizeof *v), KILN_STATUS_OK, "%s", kiln_last_error());
    return v;
}

/* Linear(6, 64) ReLU Dropout(eval: returns its input) Linear(64, 64) Flatten Tanh, on (16, 6). */
static kiln_module *make_mlp(void) {
    kiln_module *s = kiln_sequential_create();
    cr_assert_eq(kiln_sequential_append(s, kiln_linear_create(6, 64, true, KILN_F32)), KILN_STATUS_OK);
    cr_assert_eq(kiln_sequential_append(s, kiln_relu_create()), KILN_STATUS_OK);
    cr_assert_eq(kiln_sequential_append(s, kiln_dropout_create(0.5)), KILN_STATUS_OK);
    cr_assert_eq(kiln_sequential_append(s, kiln_linear_create(64, 64, true, KILN_F32)), KILN_STATUS_OK);
    cr_assert_eq(kiln_sequential_append(s, kiln_flatten_create(1, -1)), KILN_STATUS_OK);
    cr_assert_eq(kiln_sequential_append(s, kiln_tanh_create()), KILN_STATUS_OK);
    kiln_module_train(s, false);
    cr_assert_eq(kiln_module_finalize(s), KILN_STATUS_OK);
    return s;
}

KT_TEST(module_lean, sequential_no_grad_keeps_only_its_result_with_the_same_bits) {
    kiln_module *m = make_mlp();
    cr_expect(kiln_module_is_lean(m));
    kiln_tensor *x = kiln_tensor_rand(2, (int64_t[]){16, 6}, -1, 1, KILN_F32, KILN_CPU);
    float *xv = values_f32(x);
    const size_t out_bytes = 16 * 64 * sizeof(float); /* a multiple of the pool's 512 B */

    kiln_scope *s = kiln_scope_begin();
    size_t before = in_use();
    kiln_tensor *ref = kiln_module_forward(m, x);
    cr_assert(ref && kiln_tensor_requires_grad(ref), "%s", kiln_last_error());
    cr_expect_gt(in_use() - before, 3 * out_bytes, "with grad the tape keeps the intermediates");
    float *rv = values_f32(ref);
    kiln_scope_end(s);

    s = kiln_scope_begin();
    before = in_use();
    kiln_memory_reset_peak(KILN_CPU);
    kiln_no_grad_begin();
    kiln_tensor *y = kiln_module_forward(m, x);
    kiln_no_grad_end();
    cr_assert(y, "%s", kiln_last_error());
    cr_expect(!kiln_tensor_requires_grad(y));
    cr_expect_eq(in_use() - before, out_bytes, "the lean pass left %zu bytes; its result is %zu", in_use() - before,
                 out_bytes);
    /* at most two activations (a child's input and output) are alive at once */
    cr_expect_leq(kiln_memory_stats(KILN_CPU).peak_in_use - before, 2 * out_bytes);
    float *yv = values_f32(y);
    cr_expect(!memcmp(yv, rv, out_bytes), "no-grad result differs from the result with grad");
    kiln_scope_end(s);

    float *xv2 = values_f32(x); /* the caller's input is untouched and alive */
    cr_expect(!memcmp(xv, xv2, 16 * 6 * sizeof(float)));
    free(xv);
    free(xv2);
    free(rv);
    free(yv);
    kiln_module_free(m);
}

/* A custom (non-lean) module that keeps a tensor it made, as a user's feature hook
 * might: its ancestors must not run lean, so the kept tensor stays valid. */
typedef struct {
    kiln_tensor *stash;
} stash_ctx;

static kiln_tensor *stash_forward(kiln_module *self, kiln_tensor *x) {
    stash_ctx *c = kiln_module_ctx(self);
    c->stash = kiln_mul_scalar(x, 2.0);
    return kiln_relu(c->stash);
}

KT_TEST(module_lean, a_custom_child_that_keeps_tensors_makes_its_ancestors_keep_everything) {
    stash_ctx c = {0};
    kiln_module *custom = kiln_module_create("Stash", stash_forward, &c, NULL);
    cr_expect(!kiln_module_is_lean(custom), "a custom module is not lean unless it says so");
    kiln_module *s = kiln_sequential_create();
    cr_assert_eq(kiln_sequential_append(s, kiln_linear_create(3, 4, true, KILN_F32)), KILN_STATUS_OK);
    cr_assert_eq(kiln_sequential_append(s, custom), KILN_STATUS_OK);
    cr_assert_eq(kiln_sequential_append(s, kiln_tanh_create()), KILN_STATUS_OK);
    cr_expect(!kiln_module_is_lean(s));
    cr_expect(kiln_module_is_lean(kiln_module_child_at(s, 0, NULL)), "its lean children still run lean");

    kiln_tensor *x = kiln_tensor_rand(2, (int64_t[]){5, 3}, -1, 1, KILN_F32, KILN_CPU);
    kiln_scope *sc = kiln_scope_begin();
    kiln_no_grad_begin();
    kiln_tensor *y = kiln_module_forward(s, x);
    kiln_no_grad_end();
    cr_assert(y && c.stash, "%s", kiln_last_error());
    /* the stash lives until the caller's scope ends (ASan would flag a freed one) */
    kiln_tensor *h = kiln_module_forward(kiln_module_child_at(s, 0, NULL), x);
    double *hv = kt_values(h), *sv = kt_values(c.stash);
    for (int i = 0; i < 20; i++) cr_expect_eq(sv[i], 2 * (double)(float)hv[i]);
    free(hv);
    free(sv);
    kiln_scope_end(sc);

    /* declaring it lean is the author's promise: now the Sequential runs lean */
    cr_assert_eq(kiln_module_set_lean(custom, true), KILN_STATUS_OK);
    cr_expect(kiln_module_is_lean(s));
    cr_expect_eq(kiln_module_set_lean(NULL, true), KILN_STATUS_INVALID_ARGUMENT);
    kiln_clear_error();
    kiln_module_free(s);
}

/* A lean custom module returning one of its parameters, then ReLU: the Sequential must
 * not free the parameter it passed on, and discard refuses everything not the call's. */
typedef struct {
    kiln_tensor *w;
    int freed_input, freed_param, freed_tmp, freed_output_of_child;
} param_ctx;

static kiln_tensor *param_forward(kiln_module *self, kiln_tensor *x) {
    param_ctx *c = kiln_module_ctx(self);
    kiln_tensor *tmp = kiln_add_scalar(x, 1.0);
    c->freed_input += kiln_module_discard(self, x);
    c->freed_param += kiln_module_discard(self, c->w);
    c->freed_tmp += kiln_module_discard(self, tmp);
    return c->w;
}

KT_TEST(module_lean, discard_frees_only_the_calls_own_tensors_and_only_without_tape) {
    param_ctx c = {0};
    kiln_module *p = kiln_module_create("Param", param_forward, &c, NULL);
    c.w = kiln_module_register_parameter(p, "w", KT_F32(1, KT_SHAPE(4), {-1, 2, -3, 4}));
    cr_assert(c.w);
    kiln_module_set_lean(p, true);
    kiln_module *s = kiln_sequential_create();
    cr_assert_eq(kiln_sequential_append(s, p), KILN_STATUS_OK);
    cr_assert_eq(kiln_sequential_append(s, kiln_relu_create()), KILN_STATUS_OK);
    kiln_tensor *x = KT_F32(1, KT_SHAPE(4), {1, 1, 1, 1});

    kiln_no_grad_begin();
    KT_EXPECT(kiln_module_forward(s, x), 0, 0, {0, 2, 0, 4});
    KT_EXPECT(kiln_module_forward(s, x), 0, 0, {0, 2, 0, 4}); /* the parameter survived the first pass */
    kiln_no_grad_end();
    cr_expect_eq(c.freed_input, 0);
    cr_expect_eq(c.freed_param, 0);
    cr_expect_eq(c.freed_tmp, 2);

    /* grad on: the tape may need tmp, so discard refuses */
    c.freed_tmp = 0;
    kiln_tensor *xg = KT_F32(1, KT_SHAPE(4), {1, 1, 1, 1});
    kiln_tensor_set_requires_grad(xg, true);
    cr_assert(kiln_module_forward(s, xg));
    cr_expect_eq(c.freed_tmp, 0);
    /* outside any forward it refuses too */
    kiln_tensor *t = kiln_add_scalar(x, 1.0);
    cr_expect(!kiln_module_discard(s, t));
    cr_expect(!kiln_module_discard(NULL, t));
    cr_expect(!kiln_module_discard(s, NULL));
    KT_EXPECT(t, 0, 0, {2, 2, 2, 2});
    kiln_module_free(s);
}

/* Partly frozen with grad on (a frozen feature extractor, a trained head): the frozen
 * part records nothing and runs lean, the head records, and backward is unchanged. */
KT_TEST(module_lean, frozen_front_runs_lean_and_the_trained_head_gets_its_gradients) {
    kiln_module *m = make_mlp();
    kiln_module *first = kiln_module_child_at(m, 0, NULL), *last = kiln_module_child_at(m, 3, NULL);
    kiln_tensor *x = kiln_tensor_rand(2, (int64_t[]){16, 6}, -1, 1, KILN_F32, KILN_CPU);
    float *g[2];
    size_t kept[2];
    for (int k = 0; k < 2; k++) {
        kiln_tensor_set_requires_grad(kiln_module_get(first, "weight"), k == 0);
        kiln_tensor_set_requires_grad(kiln_module_get(first, "bias"), k == 0);
        cr_assert_eq(kiln_module_zero_grad(m), KILN_STATUS_OK);
        kiln_scope *s = kiln_scope_begin();
        size_t before = in_use();
        kiln_tensor *y = kiln_module_forward(m, x);
        kept[k] = in_use() - before;
        cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        g[k] = values_f32(kiln_tensor_grad(kiln_module_get(last, "weight")));
        kiln_scope_end(s);
    }
    cr_expect(!memcmp(g[0], g[1], 64 * 64 * sizeof(float)), "the head's gradient changed with a frozen front");
    cr_expect_lt(kept[1], kept[0], "the frozen front's intermediates were not released (%zu vs %zu bytes)", kept[1],
                 kept[0]);
    free(g[0]);
    free(g[1]);
    kiln_module_free(m);
}

/* A failing child inside a lean pass: NULL with the child's error, nothing leaks. */
KT_TEST(module_lean, failure_inside_a_lean_pass_frees_everything) {
    kiln_module *s = kiln_sequential_create();
    cr_assert_eq(kiln_sequential_append(s, kiln_linear_create(3, 4, true, KILN_F32)), KILN_STATUS_OK);
    cr_assert_eq(kiln_sequential_append(s, kiln_linear_create(5, 2, true, KILN_F32)), KILN_STATUS_OK);
    kiln_tensor *x = kiln_tensor_rand(2, (int64_t[]){2, 3}, -1, 1, KILN_F32, KILN_CPU);
    cr_assert_eq(kiln_module_finalize(s), KILN_STATUS_OK);
    size_t before = in_use();
    kiln_no_grad_begin();
    cr_expect_null(kiln_module_forward(s, x));
    kiln_no_grad_end();
    kt_expect_error(KILN_STATUS_SHAPE, "module '1' (Linear)");
    cr_expect_eq(in_use(), before);
    kiln_module_free(s);
}

/* Lean inference: with no tape recording, U-Net-16's forward frees each intermediate
 * after its last use, so its pool peak is a fraction of the training forward's (which
 * keeps every activation for backward), and its result has the same bits. Measured
 * with the CPU pool's statistics (peak_in_use after kiln_memory_reset_peak). */
#include "support/kiln_test.h"
#include "models/unet.h"

#include <stdlib.h>
#include <string.h>

TestSuite(inference_memory, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define MIB (1024.0 * 1024.0)

typedef enum { WITH_GRAD, NO_GRAD, FROZEN } pass_kind;

typedef struct {
    size_t peak;     /* pool peak_in_use during the forward (everything live, parameters included) */
    size_t retained; /* in_use added by the pass while its scope is still open */
    float *out;      /* the result's values (caller frees) */
    int64_t n;
} pass;

/* One forward of m on x in a scope of its own. FROZEN: grad stays on but no parameter
 * (and not x) requires grad, so the tape records nothing either. */
static pass run_pass(kiln_module *m, kiln_tensor *x, pass_kind kind) {
    int np = kiln_module_num_parameters(m);
    if (kind == FROZEN)
        for (int i = 0; i < np; i++) kiln_tensor_set_requires_grad(kiln_module_parameter(m, i, NULL), false);
    kiln_scope *s = kiln_scope_begin();
    size_t before = kiln_memory_stats(KILN_CPU).in_use;
    kiln_memory_reset_peak(KILN_CPU);
    if (kind == NO_GRAD) kiln_no_grad_begin();
    kiln_tensor *y = kiln_module_forward(m, x);
    if (kind == NO_GRAD) kiln_no_grad_end();
    cr_assert(y, "forward failed: %s", kiln_last_error());
    pass p = {.peak = kiln_memory_stats(KILN_CPU).peak_in_use,
              .retained = kiln_memory_stats(KILN_CPU).in_use - before,
              .n = kiln_tensor_numel(y)};
    cr_expect_eq(kiln_tensor_requires_grad(y), kind == WITH_GRAD);
    p.out = malloc((size_t)p.n * sizeof *p.out);
    cr_assert_eq(kiln_tensor_to_host(y, p.out, (size_t)p.n * sizeof *p.out), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_scope_end(s);
    if (kind == FROZEN)
        for (int i = 0; i < np; i++) kiln_tensor_set_requires_grad(kiln_module_parameter(m, i, NULL), true);
    return p;
}

static void expect_same_bits(const pass *a, const pass *b, const char *what) {
    cr_assert_eq(a->n, b->n);
    cr_expect(!memcmp(a->out, b->out, (size_t)a->n * sizeof *a->out), "%s: the lean forward's result differs from the "
              "forward with grad", what);
}

/* The measurement: U-Net-16 on 8x3x64x64, training forward (grad on, train
 * mode) against no-grad forwards in train and eval mode. */
KT_TEST(inference_memory, unet16_no_grad_forward_peaks_below_40_percent_of_training) {
    kiln_module *m = unet_create(3, 1, 16, KILN_F32);
    cr_assert(m, "%s", kiln_last_error());
    cr_assert(kiln_module_is_lean(m));
    cr_assert_eq(kiln_module_finalize(m), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *x = kiln_tensor_rand(4, (int64_t[]){8, 3, 64, 64}, -1, 1, KILN_F32, KILN_CPU);
    cr_assert(x);
    const size_t out_bytes = 8 * 1 * 64 * 64 * sizeof(float);

    kiln_module_train(m, true);
    pass train = run_pass(m, x, WITH_GRAD), lean_train = run_pass(m, x, NO_GRAD);
    kiln_module_train(m, false);
    pass eval = run_pass(m, x, WITH_GRAD), lean_eval = run_pass(m, x, NO_GRAD), frozen = run_pass(m, x, FROZEN);

    /* batch statistics (train) and running statistics (eval): the same bits either way */
    expect_same_bits(&train, &lean_train, "train mode");
    expect_same_bits(&eval, &lean_eval, "eval mode");
    expect_same_bits(&eval, &frozen, "eval mode, frozen parameters");

    cr_log_info("U-Net-16 8x3x64x64 pool peak: training forward %.2f MiB, no-grad %.2f MiB (train mode) / %.2f MiB "
                "(eval), frozen parameters %.2f MiB", train.peak / MIB, lean_train.peak / MIB, lean_eval.peak / MIB,
                frozen.peak / MIB);
    cr_expect_leq(lean_train.peak, train.peak * 2 / 5, "no-grad peak %.2f MiB is above 40%% of the training forward's "
                  "%.2f MiB", lean_train.peak / MIB, train.peak / MIB);
    cr_expect_leq(lean_eval.peak, train.peak * 2 / 5, "no-grad eval peak %.2f MiB, training %.2f MiB",
                  lean_eval.peak / MIB, train.peak / MIB);
    cr_expect_leq(frozen.peak, train.peak * 2 / 5, "frozen-parameter peak %.2f MiB, training %.2f MiB",
                  frozen.peak / MIB, train.peak / MIB);
    /* only the result survives a lean pass; the training pass keeps every activation */
    cr_expect_eq(lean_train.retained, out_bytes, "no-grad pass left %zu bytes in its scope; its result is %zu",
                 lean_train.retained, out_bytes);
    cr_expect_eq(lean_eval.retained, out_bytes);
    cr_expect_eq(frozen.retained, out_bytes);
    cr_expect_gt(train.retained, 10 * out_bytes);
    free(train.out);
    free(lean_train.out);
    free(eval.out);
    free(lean_eval.out);
    free(frozen.out);
    kiln_module_free(m);
}

/* With grad on nothing changes: the tape keeps the intermediates and backward runs
 * through the skips (a training step after a lean pass still gets its gradients). */
KT_TEST(inference_memory, unet_backward_after_lean_forward_is_unchanged) {
    kiln_module *m = unet_create(2, 1, 4, KILN_F32);
    cr_assert(m && kiln_module_finalize(m) == KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *x = kiln_tensor_rand(4, (int64_t[]){2, 2, 16, 16}, -1, 1, KILN_F32, KILN_CPU);
    kiln_tensor *flat = kiln_module_flat_gradients(m);
    int64_t n = kiln_tensor_numel(flat);
    float *g[2];
    for (int k = 0; k < 2; k++) {
        kiln_scope *s = kiln_scope_begin();
        if (k == 1) { /* a lean pass first: it must leave nothing behind that the step needs */
            kiln_no_grad_begin();
            cr_assert(kiln_module_forward(m, x));
            kiln_no_grad_end();
        }
        cr_assert_eq(kiln_module_zero_grad(m), KILN_STATUS_OK);
        kiln_tensor *loss = kiln_sum_all(kiln_module_forward(m, x));
        cr_assert_eq(kiln_backward(loss, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        g[k] = malloc((size_t)n * sizeof(float));
        cr_assert_eq(kiln_tensor_to_host(flat, g[k], (size_t)n * sizeof(float)), KILN_STATUS_OK);
        kiln_scope_end(s);
    }
    /* train-mode batch norm: the lean pass moved the running statistics, not the step's gradients */
    cr_expect(!memcmp(g[0], g[1], (size_t)n * sizeof(float)), "gradients differ after a lean forward");
    double norm = 0;
    for (int64_t i = 0; i < n; i++) norm += (double)g[0][i] * g[0][i];
    cr_expect_gt(norm, 0.0);
    free(g[0]);
    free(g[1]);
    kiln_module_free(m);
}

/* A training run that is checkpointed and resumed gives the same losses, bit for bit,
 * as the run that was never interrupted (module + Adam + dropout's RNG position). */
#include "support/kiln_test.h"

#include <stdlib.h>
#include <unistd.h>

TestSuite(train_checkpoint, .init = kiln_test_setup, .fini = kiln_test_teardown);

typedef struct {
    kiln_module *net;
    kiln_optimizer *opt;
    kiln_tensor *x, *y;
} run;

static run make_run(void) {
    run r;
    kiln_manual_seed(7);
    r.net = kiln_sequential_create();
    kiln_sequential_append(r.net, kiln_linear_create(5, 16, true, KILN_F32));
    kiln_sequential_append(r.net, kiln_relu_create());
    kiln_sequential_append(r.net, kiln_dropout_create(0.25));
    kiln_sequential_append(r.net, kiln_linear_create(16, 1, true, KILN_F32));
    cr_assert_eq(kiln_module_finalize(r.net), KILN_STATUS_OK, "%s", kiln_last_error());
    int n = kiln_module_num_parameters(r.net);
    kiln_tensor *params[8];
    for (int i = 0; i < n; i++) params[i] = kiln_module_parameter(r.net, i, NULL);
    r.opt = kiln_optim_adam(params, n, kiln_adam_defaults());
    cr_assert(r.opt, "%s", kiln_last_error());
    /* data outside the step scopes: it must not be freed by them */
    r.x = kiln_scope_keep(kiln_tensor_randn(2, (int64_t[]){8, 5}, 0, 1, KILN_F32, KILN_CPU));
    r.y = kiln_scope_keep(kiln_tensor_rand(2, (int64_t[]){8, 1}, 0, 1, KILN_F32, KILN_CPU));
    return r;
}

static void free_run(run *r) {
    kiln_optimizer_free(r->opt);
    kiln_module_free(r->net);
    kiln_tensor_free(r->x);
    kiln_tensor_free(r->y);
}

static double step(run *r) {
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *logits = kiln_module_forward(r->net, r->x);
    kiln_tensor *loss = kiln_bce_with_logits(logits, r->y, NULL, NULL, KILN_REDUCTION_MEAN);
    kiln_optimizer_zero_grad(r->opt);
    cr_assert_eq(kiln_backward(loss, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_optimizer_step(r->opt), KILN_STATUS_OK, "%s", kiln_last_error());
    double v = kiln_tensor_item(loss);
    kiln_scope_end(s);
    return v;
}

KT_TEST(train_checkpoint, resume_continues_exactly) {
    char path[] = "/tmp/kiln_ckpt_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    double straight[6], resumed[6];
    run a = make_run();
    for (int i = 0; i < 6; i++) {
        straight[i] = step(&a);
        if (i == 2) cr_assert_eq(kiln_checkpoint_save(path, a.net, a.opt, NULL, 0), KILN_STATUS_OK, "%s", kiln_last_error());
    }
    free_run(&a);

    run b = make_run(); /* fresh weights, different from the checkpoint's */
    cr_assert_eq(kiln_checkpoint_load(path, b.net, b.opt, true), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(kiln_optimizer_step_count(b.opt), 3);
    for (int i = 3; i < 6; i++) resumed[i] = step(&b);
    for (int i = 3; i < 6; i++) cr_expect_eq(resumed[i], straight[i], "step %d: resumed %.17g vs straight %.17g", i, resumed[i], straight[i]);
    free_run(&b);

    /* the model part alone loads into a model without an optimizer (strict) */
    run c = make_run();
    cr_expect_eq(kiln_checkpoint_load(path, c.net, NULL, true), KILN_STATUS_OK, "%s", kiln_last_error());
    free_run(&c);
    unlink(path);
}

KT_TEST(train_checkpoint, wrong_model_is_refused_and_untouched) {
    char path[] = "/tmp/kiln_ckpt_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    run a = make_run();
    cr_assert_eq(kiln_checkpoint_save(path, a.net, NULL, NULL, 0), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_module *other = kiln_sequential_create();
    kiln_sequential_append(other, kiln_linear_create(5, 3, true, KILN_F32));
    kiln_module_finalize(other);
    kiln_tensor *w = kiln_module_get(other, "0.weight");
    double before = kiln_tensor_item(kiln_slice(kiln_flatten(w, 0, -1), 0, 0, 1, 1));
    cr_expect_neq(kiln_checkpoint_load(path, other, NULL, true), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_SHAPE, "0.weight");
    cr_expect_eq(kiln_tensor_item(kiln_slice(kiln_flatten(w, 0, -1), 0, 0, 1, 1)), before);
    kiln_module_free(other);
    free_run(&a);
    unlink(path);
}

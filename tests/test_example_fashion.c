/* The fashion_mnist example in tiny configurations (a few hundred images, one or two
 * epochs): its JSON result, that the MLP learns, and the CNN with SGD + momentum.
 * Skipped, visibly, when Fashion-MNIST is not installed. */
#include "support/kiln_test.h"
#include "support/kt_program.h"

#include <stdio.h>
#include <stdlib.h>

TestSuite(example_fashion, .init = kiln_test_setup, .fini = kiln_test_teardown);

static void run(const char *args, int epochs, int64_t images, int batch, kt_program_result *r) {
    char *dir = kt_temp_dir(), cmd[1024];
    snprintf(cmd, sizeof cmd, "--device cpu --json --out '%s' %s", dir, args);
    kt_program_run("fashion_mnist", cmd, r);
    cr_assert_eq(r->status, 0, "fashion_mnist %s exited %d:\n%s", cmd, r->status, r->out);
    cr_assert(r->json != NULL, "no JSON line in:\n%s", r->out);
    cr_assert_eq(kt_json_number(r->json, "train_images"), images);
    cr_assert_eq(kt_json_number(r->json, "test_images"), images);
    cr_assert_eq(kt_json_number(r->json, "steps"), epochs * ((images + batch - 1) / batch));
    double acc = kt_json_number(r->json, "test_argmax_accuracy"), per_epoch[8];
    kt_json_array(r->json, "test_argmax_accuracy_per_epoch", epochs, per_epoch, 8);
    cr_expect_eq(acc, per_epoch[epochs - 1]);
    cr_expect(acc >= 0 && acc <= 1);
    /* sum-reduced cross-entropy over 10 classes, divided by the count: a loss */
    kt_json_array(r->json, "train_loss_per_epoch", epochs, NULL, 0);
    kt_json_array(r->json, "test_loss_per_epoch", epochs, NULL, 0);
    cr_expect(kt_json_number(r->json, "final_train_loss") > 0);
    cr_expect(kt_json_number(r->json, "parameters") > 0);
    kt_json_number(r->json, "train_steps_per_s");
    kt_json_number(r->json, "wall_s");
    kt_json_png(r->json, "plot");
    kt_temp_dir_remove(dir);
}

KT_TEST(example_fashion, mlp_learns) {
    if (!kt_fashion_mnist_available("example_fashion.mlp_learns")) cr_skip_test("Fashion-MNIST is not installed");
    kt_program_result r;
    run("--model mlp --limit 512 --epochs 2 --batch 32", 2, 512, 32, &r);
    cr_expect_eq(kt_json_number(r.json, "parameters"), 235146); /* 784*256+256 + 256*128+128 + 128*10+10 */
    double loss[2], acc[2];
    kt_json_array(r.json, "train_loss_per_epoch", 2, loss, 2);
    kt_json_array(r.json, "test_argmax_accuracy_per_epoch", 2, acc, 2);
    cr_expect(loss[1] < loss[0], "the training loss should fall: %g then %g", loss[0], loss[1]);
    cr_expect(acc[1] > 0.5, "after 32 steps the MLP should beat chance (0.1) by far: %g", acc[1]);
    kt_program_result_free(&r);
}

KT_TEST(example_fashion, cnn_sgd_momentum) {
    if (!kt_fashion_mnist_available("example_fashion.cnn_sgd_momentum")) cr_skip_test("Fashion-MNIST is not installed");
    kt_program_result r;
    run("--model cnn --width 4 --optim sgd --limit 96 --epochs 1 --batch 32", 1, 96, 32, &r);
    cr_expect_str_eq(json_string_value(json_object_get(r.json, "optim")), "sgd");
    /* conv 1->4 (36), bn 4 (8), conv 4->8 (288), bn 8 (16), linear 392->128 (50304), 128->10 (1290) */
    cr_expect_eq(kt_json_number(r.json, "parameters"), 36 + 8 + 288 + 16 + 50304 + 1290);
    kt_program_result_free(&r);
}

KT_TEST(example_fashion, bad_model_exits_2) {
    kt_program_result r;
    kt_program_run("fashion_mnist", "--model resnet 2>/dev/null", &r);
    cr_expect_eq(r.status, 2);
    kt_program_result_free(&r);
}

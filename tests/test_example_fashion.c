/* The fashion_mnist example in tiny configurations (a few hundred images, one or two
 * epochs): its JSON result, that the MLP learns, and the CNN with SGD + momentum
 * (skipped, visibly, when Fashion-MNIST is not installed); and, on a fake 64-image data
 * set written here, clear errors for hostile options, a diverging run and a bad --out. */
#include "support/kiln_test.h"
#include "support/kt_program.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* --help shows the defaults the program uses, --size as an option it refuses. */
KT_TEST(example_fashion, help_shows_the_real_defaults) {
    kt_program_result r;
    kt_program_run("fashion_mnist", "--batch 7 --help", &r);
    cr_expect_eq(r.status, 0);
    const char *says[] = {"(default: 64)", "(default: out/fashion_mnist)", "(default: cnn)", "(default: cosine)",
                          "(default: 1e-3 for adam, 0.05 for sgd)", "(default: 16)", "OUT/model.safetensors",
                          "--size N                     not used"};
    for (size_t i = 0; i < sizeof says / sizeof *says; i++)
        cr_expect(strstr(r.out, says[i]), "--help does not say '%s':\n%s", says[i], r.out);
    kt_program_result_free(&r);
}

/* ---- hostile options, on a fake data set ---------------------------------------------- */

static int count(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++) n++;
    return n;
}

KT_TEST(example_fashion, hostile_options_are_clear_errors) {
    char *data = kt_fashion_mnist_fake();
    const kt_case cases[] = {
        {"--batch 2147483647", "--batch: 2147483647 is outside the allowed range 1..4096"},
        {"--epochs 2147483647", "--epochs: 2147483647 is outside the allowed range 1..1000"},
        {"--width 100000", "--width: 100000 is outside the allowed range 1..256"},
        {"--lr inf", "--lr: 'inf' is not a finite number"},
        {"--lr nan", "--lr: 'nan' is not a finite number"},
        {"--lr 0", "--lr: 0 is not > 0"},
        {"--batch ' 8'", "--batch: ' 8' is not an int-sized integer"},
        {"--momentum 2", "--momentum: 2 is outside the allowed range 0..1"},
        {"--limit -1", "--limit: -1 is outside the allowed range 0..1000000000"},
        /* options the run would ignore: exit 2, naming the option and why */
        {"--size 32", "--size does not apply to fashion_mnist (its images are 28x28)"},
        {"--model mlp --width 8", "--width does not apply to --model mlp"},
        {"--momentum 0.5", "--momentum does not apply to --optim adam"},
    };
    kt_program_expect_errors("fashion_mnist", data, sizeof cases / sizeof *cases, cases);
    kt_run_dir_remove(data);
}

/* --lr 1e30 is finite but throws the weights to 1e30 in one Adam step: the loss of the
 * next step is NaN, and the run stops there with an error instead of exiting 0. */
KT_TEST(example_fashion, a_diverging_run_stops_with_an_error) {
    char *data = kt_fashion_mnist_fake();
    kt_program_result r;
    kt_program_run_data("fashion_mnist", data, NULL, "--model mlp --epochs 2 --batch 16 --lr 1e30", &r);
    cr_expect_eq(r.status, 1, "exit %d:\n%s", r.status, r.out);
    cr_expect(strstr(r.out, "fashion_mnist: training failed: the training loss became NaN at epoch 1, step 2 of 4: "
                            "training diverged (lower --lr, now 1e+30)"), "%s", r.out);
    cr_expect(!strstr(r.out, "Sanitizer"), "%s", r.out);
    kt_program_result_free(&r);
    /* the same data trains normally */
    kt_program_run_data("fashion_mnist", data, NULL, "--model mlp --epochs 1 --batch 16 --json", &r);
    cr_expect_eq(r.status, 0, "exit %d:\n%s", r.status, r.out);
    cr_assert(r.json, "no JSON line:\n%s", r.out);
    cr_expect_eq(kt_json_number(r.json, "steps"), 4);
    kt_json_weights(r.json, data, 6); /* three Linear layers: weight and bias each */
    kt_program_result_free(&r);
    kt_run_dir_remove(data);
}

KT_TEST(example_fashion, out_file_and_bad_KILN_DEVICE) {
    char *data = kt_fashion_mnist_fake(), cmd[1024], file[600];
    snprintf(file, sizeof file, "%s/t10k-labels-idx1-ubyte.gz", data);
    kt_program_result r;
    kt_program_run_data("fashion_mnist", data, file, "--epochs 1", &r);
    cr_expect_eq(r.status, 1, "exit %d:\n%s", r.status, r.out);
    cr_expect(strstr(r.out, "fashion_mnist: preparing --out failed: --out '") &&
              strstr(r.out, "' is a file, not a directory"), "%s", r.out);
    cr_expect(!strstr(r.out, "Sanitizer"), "%s", r.out);
    kt_program_result_free(&r);
    /* the variable's error, said once, and not when --device is given */
    setenv("KILN_DEVICE", "tpu", 1);
    snprintf(cmd, sizeof cmd, "--data '%s' --out '%s/o' --model mlp --epochs 1 --batch 32 2>&1", data, data);
    kt_program_run("fashion_mnist", cmd, &r);
    cr_expect_eq(r.status, 2, "exit %d:\n%s", r.status, r.out);
    cr_expect_eq(count(r.out, "KILN_DEVICE='tpu' is not a device"), 1, "%s", r.out);
    kt_program_result_free(&r);
    snprintf(cmd, sizeof cmd, "--data '%s' --out '%s/o' --batch 0 2>&1", data, data);
    kt_program_run("fashion_mnist", cmd, &r);
    cr_expect(r.status == 2 && strstr(r.out, "--batch: 0 is outside") && !strstr(r.out, "KILN_DEVICE"), "%s", r.out);
    kt_program_result_free(&r);
    snprintf(file, sizeof file, "%s/o", data);
    kt_program_run_data("fashion_mnist", data, file, "--model mlp --epochs 1 --batch 32", &r);
    cr_expect(r.status == 0 && !strstr(r.out, "KILN_DEVICE"), "exit %d:\n%s", r.status, r.out);
    kt_program_result_free(&r);
    setenv("KILN_DEVICE", "cpu", 1);
    kt_run_dir_remove(data);
}

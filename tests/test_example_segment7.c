/* The segment7 example run as a user runs it, in a tiny configuration (16x16 scenes, a
 * few steps): its JSON result line (class weights, per-class IoU, mIoU) and files, and
 * clear errors (with nothing leaked) for bad arguments, an --out that is a file and a
 * diverging run. */
#include "support/kiln_test.h"
#include "kx.h"
#include "support/kt_run.h"
#include "models/unet.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(example_segment7, .init = kiln_test_setup, .fini = kiln_test_teardown);

#ifdef KILN_EXAMPLE_BIN
static const char *const bin = KILN_EXAMPLE_BIN;
#else
static const char *const bin = NULL;
#endif

/* Tiny: 4 training scenes in batches of 2 (2 steps an epoch), 2 held-out scenes. */
#define TINY "--device cpu --size 16 --batch 2 --train-scenes 4 --heldout-scenes 2"

KT_TEST(example_segment7, trains_and_reports_json_and_files) {
    char *d = kt_run_dir("segment7");
    run_result *r = kt_run_ok(bin, d, TINY " --epochs 2 --json --out res");
    cr_assert(r->json, "the last line of stdout is not JSON:\n%s", r->out);
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "program")), "segment7");
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "class_weighting")), "sqrt_inverse");
    kt_expect_series(r->json, "train_loss", 2, 0, 20);
    kt_expect_series(r->json, "heldout_loss", 2, 0, 20);
    kt_expect_series(r->json, "heldout_miou", 2, 0, 1);
    kt_expect_series(r->json, "heldout_argmax_accuracy", 2, 0, 1);
    double miou = kt_number(r->json, "miou");
    cr_expect(miou >= 0 && miou <= 1);
    /* class weights: finite, 0 for classes absent from the training labels, mean 1 over the others */
    json_t *w = json_object_get(r->json, "class_weights"), *iou = json_object_get(r->json, "class_iou");
    cr_assert(json_array_size(w) == 7 && json_array_size(iou) == 7, "class_weights and class_iou need 7 values each");
    double sum = 0;
    int present = 0;
    for (size_t c = 0; c < 7; c++) {
        json_t *v = json_array_get(w, c);
        cr_expect(json_is_number(v) && json_number_value(v) >= 0, "class_weights[%zu] is not a finite weight", c);
        if (json_number_value(v) > 0) sum += json_number_value(v), present++;
        /* a class in neither the truth nor the prediction has IoU 0/0: null, and mIoU skips it */
        json_t *u = json_array_get(iou, c);
        cr_expect(json_is_null(u) || (json_is_number(u) && json_number_value(u) >= 0 && json_number_value(u) <= 1),
                  "class_iou[%zu] is neither null nor in [0, 1]", c);
    }
    cr_expect(present >= 2 && fabs(sum / present - 1) < 1e-9, "the weights of the %d present classes average %g, not 1",
              present, sum / present);
    char path[1024];
    snprintf(path, sizeof path, "%s/res/segment7_grid.png", d);
    kt_expect_png(path, 3, 0, 0);
    snprintf(path, sizeof path, "%s/res/segment7_plot.png", d);
    kt_expect_png(path, 3, 0, 0);
    snprintf(path, sizeof path, "%s/res/segment7.safetensors", d);
    struct stat sb;
    cr_expect(stat(path, &sb) == 0 && sb.st_size > 0, "no checkpoint at %s", path);
    /* beside it, the weights alone: a fresh 7-class U-Net loads them strictly */
    snprintf(path, sizeof path, "%s/res/model.safetensors", d);
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "weights")), "res/model.safetensors");
    kiln_module *net = unet_create(3, 7, 16, KILN_F32);
    cr_expect_eq(kiln_checkpoint_load(path, net, NULL, true), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_safetensors *f = kiln_safetensors_open(path);
    cr_assert(f, "%s", kiln_last_error());
    for (int i = 0; i < kiln_safetensors_count(f); i++)
        cr_expect(strncmp(kiln_safetensors_entry_at(f, i)->name, "optimizer", 9), "%s", kiln_safetensors_entry_at(f, i)->name);
    kiln_safetensors_close(f);
    kiln_module_free(net);
    kt_run_free(r);
    kt_run_dir_remove(d);
}

KT_TEST(example_segment7, unweighted_run_prints_classes_and_progress) {
    char *d = kt_run_dir("segment7");
    run_result *r = kt_run_ok(bin, d, TINY " --epochs 1 --class-weights none --out res");
    cr_expect(strstr(r->out, "epoch 1/1  train loss") && strstr(r->out, "mIoU"), "no epoch line in:\n%s", r->out);
    cr_expect(strstr(r->out, "held-out IoU per class:") && strstr(r->out, "car "), "no per-class IoU in:\n%s", r->out);
    cr_expect(strstr(r->out, "pictures in res/segment7_grid.png"), "the output does not say where the pictures are:\n%s", r->out);
    cr_expect(strstr(r->err, "images/s") && strstr(r->err, "ETA"), "no progress line on stderr:\n%s", r->err);
    cr_assert(r->json);
    json_t *w = json_object_get(r->json, "class_weights");
    for (size_t c = 0; c < json_array_size(w); c++) {
        double v = json_number_value(json_array_get(w, c));
        cr_expect(v == 0 || v == 1, "--class-weights none gave weight %g to class %zu", v, c);
    }
    kt_run_free(r);
    kt_run_dir_remove(d);
}

KT_TEST(example_segment7, bad_arguments_give_clear_errors) {
    char *d = kt_run_dir("segment7");
    const kt_case cases[] = {
        {"--class-weights median", "--class-weights: 'median' is not one of none|inverse|sqrt_inverse"},
        {"--size 12", "multiple of 8"},
        {"--epochs 0", "--epochs: 0 is outside the allowed range 1..1000"},
        {"--epochs 2147483647", "--epochs: 2147483647 is outside the allowed range 1..1000"},
        {"--batch 0", "--batch: 0 is outside the allowed range 1..1024"},
        {"--batch 2147483647", "--batch: 2147483647 is outside the allowed range 1..1024"},
        {"--batch ' 8'", "--batch: ' 8' is not an int-sized integer"},
        {"--heldout-scenes 0", "--heldout-scenes: 0 is outside the allowed range 1..100000"},
        {"--lr inf", "--lr: 'inf' is not a finite number"},
        {"--lr-decay nan", "--lr-decay: 'nan' is not a finite number"},
        {"--train-scenes 100000", "need 7.6 GiB of scene data, above the 4 GiB allowed"},
        {"--epochs", "--epochs: needs a value"},
        {"stray", "unexpected argument 'stray'"},
        {"--data dir", "--data does not apply to segment7 (its scenes are synthetic)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run_result *r = kt_run_refused(bin, d, cases[i].args, "segment7: ", cases[i].says);
        cr_expect_eq(r->status, 2, "'%s' exited %d", cases[i].args, r->status);
        cr_expect(!strstr(r->err, "Sanitizer"), "'%s':\n%s", cases[i].args, r->err);
        kt_run_free(r);
    }
    run_result *h = kt_run(bin, d, "--help");
    cr_expect(h->status == 0 && strstr(h->out, "--class-weights"), "--help:\n%s", h->out);
    cr_expect(strstr(h->out, "(default: out/segment7)") && strstr(h->out, "(default: sqrt_inverse)") &&
              strstr(h->out, "(default: 0.8)") && strstr(h->out, "(default: 8)"), "--help lacks a default:\n%s", h->out);
    kt_run_free(h);
    kt_run_dir_remove(d);
}

/* An --out that is a regular file used to leak the model and Adam on its way out (ASan's
 * leak check, in the sanitized build, prints "LeakSanitizer" on stderr). */
KT_TEST(example_segment7, out_file_and_divergence_are_clean_errors) {
    char *d = kt_run_dir("segment7");
    kt_run_touch(d, "res");
    run_result *r = kt_run(bin, d, TINY " --epochs 1 --out res");
    cr_expect_eq(r->status, 1);
    cr_expect(strstr(r->err, "segment7: preparing --out: --out 'res' is a file, not a directory"), "stderr:\n%s", r->err);
    cr_expect(!strstr(r->err, "Sanitizer"), "%s", r->err);
    kt_run_free(r);
    r = kt_run(bin, d, TINY " --epochs 2 --lr 1e38 --out out");
    cr_expect_eq(r->status, 1);
    cr_expect(strstr(r->err, "segment7: training: the training loss became NaN at epoch 1, step 2 of 2: training "
                             "diverged (lower --lr, now 1e+38)"), "stderr:\n%s", r->err);
    cr_expect(!strstr(r->err, "Sanitizer"), "%s", r->err);
    kt_run_free(r);
    kt_run_dir_remove(d);
}

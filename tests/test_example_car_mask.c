/* The car_mask example run as a user runs it, in a tiny configuration (16x16 scenes, a
 * few steps): its JSON result line and files, exact resume from a checkpoint, --predict
 * on a PNG, the benchmark mode, and clear errors for bad arguments. */
#include "support/kiln_test.h"
#include "kiln_examples.h"
#include "support/kt_run.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(example_car_mask, .init = kiln_test_setup, .fini = kiln_test_teardown);

#ifdef KILN_EXAMPLE_BIN
static const char *const bin = KILN_EXAMPLE_BIN;
#else
static const char *const bin = NULL;
#endif

/* Tiny: 4 training scenes in batches of 2 (2 steps an epoch), 2 held-out scenes. */
#define TINY "--device cpu --size 16 --batch 2 --train-scenes 4 --heldout-scenes 2"

KT_TEST(example_car_mask, trains_and_reports_json_and_files) {
    char *d = kt_run_dir("car_mask");
    run_result *r = kt_run(bin, d, TINY " --epochs 2 --json --out res");
    cr_assert_eq(r->status, 0, "exit %d; stderr:\n%s", r->status, r->err);
    cr_assert(r->json, "the last line of stdout is not JSON:\n%s", r->out);
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "program")), "car_mask");
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "loss")), "bce_with_logits");
    cr_expect_eq(kt_number(r->json, "parameters"), 483441); /* U-Net-16 with one output channel */
    kt_expect_series(r->json, "train_loss", 2, 0, 2);
    kt_expect_series(r->json, "heldout_loss", 2, 0, 2);
    kt_expect_series(r->json, "heldout_binary_pixel_accuracy", 2, 0, 1);
    kt_expect_series(r->json, "heldout_iou", 2, 0, 1);
    kt_expect_series(r->json, "heldout_dice", 2, 0, 1);
    double iou = kt_number(r->json, "iou"), dice = kt_number(r->json, "dice");
    cr_expect(dice >= iou && fabs(dice - 2 * iou / (1 + iou)) < 1e-12, "Dice %g does not equal 2 IoU / (1 + IoU) for IoU %g", dice, iou);
    cr_expect(kt_number(r->json, "wall_s") > 0);
    cr_expect(!strchr(r->out, '\n'), "--json printed more than the JSON line:\n%s", r->out);
    char path[1024];
    snprintf(path, sizeof path, "%s/res/car_mask_grid.png", d);
    kt_expect_png(path, 3, 0, 0);
    snprintf(path, sizeof path, "%s/res/car_mask_plot.png", d);
    kt_expect_png(path, 3, 0, 0);
    snprintf(path, sizeof path, "%s/res/car_mask.safetensors", d);
    struct stat sb;
    cr_expect(stat(path, &sb) == 0 && sb.st_size > 483441 * 4, "no checkpoint at %s", path);
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "checkpoint")), "res/car_mask.safetensors");
    kt_run_free(r);
    kt_run_dir_remove(d);
}

/* Without --json: the epoch lines for a person, progress lines on stderr (not a terminal). */
KT_TEST(example_car_mask, prints_epochs_and_progress_lines) {
    char *d = kt_run_dir("car_mask");
    run_result *r = kt_run(bin, d, TINY " --epochs 1 --loss bce --out res");
    cr_assert_eq(r->status, 0, "exit %d; stderr:\n%s", r->status, r->err);
    cr_expect(strstr(r->out, "epoch 1/1  train loss"), "no epoch line in:\n%s", r->out);
    cr_expect(strstr(r->out, "pictures in res/car_mask_grid.png"), "the output does not say where the pictures are:\n%s", r->out);
    cr_expect(strstr(r->err, "steps/s"), "no progress line on stderr:\n%s", r->err);
    cr_expect(!strchr(r->err, '\r'), "a bar was drawn though stderr is not a terminal");
    cr_assert(r->json);
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "loss")), "bce");
    kt_run_free(r);
    kt_run_dir_remove(d);
}

/* Interrupted after epoch 1 and resumed, the run continues exactly: the same losses and
 * metrics, bit for bit, as a run of 3 epochs that was never stopped. */
KT_TEST(example_car_mask, resume_gives_the_uninterrupted_losses) {
    char *d = kt_run_dir("car_mask");
    run_result *straight = kt_run(bin, d, TINY " --epochs 3 --json --out straight");
    run_result *first = kt_run(bin, d, TINY " --epochs 1 --json --out part");
    run_result *resumed = kt_run(bin, d, TINY " --epochs 3 --json --out part --resume part/car_mask.safetensors");
    run_result *rs[3] = {straight, first, resumed};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(rs[i]->status, 0, "run %d: exit %d; stderr:\n%s", i, rs[i]->status, rs[i]->err);
        cr_assert(rs[i]->json, "run %d printed no JSON", i);
    }
    cr_expect_eq(kt_number(resumed->json, "resumed_from_epoch"), 1);
    const char *keys[] = {"train_loss", "heldout_loss", "heldout_binary_pixel_accuracy", "heldout_iou", "heldout_dice"};
    for (int k = 0; k < 5; k++) {
        json_t *a = json_object_get(straight->json, keys[k]), *b = json_object_get(resumed->json, keys[k]);
        cr_assert(json_array_size(a) == 3 && json_array_size(b) == 3, "%s: %zu and %zu epochs", keys[k],
                  json_array_size(a), json_array_size(b));
        for (size_t e = 0; e < 3; e++) {
            double x = json_number_value(json_array_get(a, e)), y = json_number_value(json_array_get(b, e));
            cr_expect_eq(x, y, "%s epoch %zu: uninterrupted %.17g, resumed %.17g", keys[k], e + 1, x, y);
        }
    }
    /* and the first epoch of the interrupted run is the same epoch too */
    cr_expect_eq(json_number_value(json_array_get(json_object_get(first->json, "train_loss"), 0)),
                 json_number_value(json_array_get(json_object_get(straight->json, "train_loss"), 0)));
    /* resuming with other data is refused, naming the option */
    run_result *other = kt_run(bin, d, TINY " --epochs 3 --seed 5 --out part --resume part/car_mask.safetensors");
    cr_expect_neq(other->status, 0);
    cr_expect(strstr(other->err, "--seed"), "stderr does not name --seed:\n%s", other->err);
    for (int i = 0; i < 3; i++) kt_run_free(rs[i]);
    kt_run_free(other);
    kt_run_dir_remove(d);
}

KT_TEST(example_car_mask, predict_writes_a_mask_of_the_image_size) {
    char *d = kt_run_dir("car_mask");
    run_result *t = kt_run(bin, d, TINY " --epochs 1 --json --out res");
    cr_assert_eq(t->status, 0, "exit %d; stderr:\n%s", t->status, t->err);
    /* a scene of 36x20: not a multiple of 8, so the program must pad and crop */
    enum { W = 36, H = 20 };
    float rgb[3 * H * W];
    cr_assert_eq(kiln_scene_generate(123, H, W, rgb, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    char in[1024];
    snprintf(in, sizeof in, "%s/scene.png", d);
    cr_assert_eq(kiln_png_write_f32(in, rgb, 3, H, W), KILN_STATUS_OK, "%s", kiln_last_error());
    run_result *p = kt_run(bin, d, "--device cpu --predict scene.png --out mask.png --checkpoint res/car_mask.safetensors --json");
    cr_assert_eq(p->status, 0, "exit %d; stderr:\n%s", p->status, p->err);
    cr_assert(p->json, "no JSON line:\n%s", p->out);
    cr_expect_eq(kt_number(p->json, "width"), W);
    cr_expect_eq(kt_number(p->json, "height"), H);
    char mask[1024];
    snprintf(mask, sizeof mask, "%s/mask.png", d);
    kt_expect_png(mask, 1, W, H);
    uint8_t *px;
    int c, h, w;
    cr_assert_eq(kiln_png_read_u8(mask, 1, &px, &c, &h, &w), KILN_STATUS_OK);
    for (int i = 0; i < W * H; i++) cr_expect(px[i] == 0 || px[i] == 255, "mask pixel %d is %d, not 0 or 255", i, px[i]);
    free(px);
    kt_run_free(t);
    kt_run_free(p);
    kt_run_dir_remove(d);
}

KT_TEST(example_car_mask, bench_prints_the_median_step_time) {
    char *d = kt_run_dir("car_mask");
    run_result *r = kt_run(bin, d, "--device cpu --bench-steps 3 --batch 2 --size 16 --json");
    cr_assert_eq(r->status, 0, "exit %d; stderr:\n%s", r->status, r->err);
    cr_assert(r->json, "no JSON line:\n%s", r->out);
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "mode")), "bench");
    cr_expect_eq(kt_number(r->json, "steps"), 3);
    double med = kt_number(r->json, "median_step_s"), lo = kt_number(r->json, "min_step_s"), hi = kt_number(r->json, "max_step_s");
    cr_expect(med > 0 && lo <= med && med <= hi, "median %g outside [min %g, max %g]", med, lo, hi);
    cr_expect(isfinite(kt_number(r->json, "last_loss")));
    kt_run_free(r);
    kt_run_dir_remove(d);
}

KT_TEST(example_car_mask, bad_arguments_give_clear_errors) {
    char *d = kt_run_dir("car_mask");
    struct {
        const char *args, *says;
    } cases[] = {
        {"--loss mse", "--loss: 'mse' is not one of bce|bce_with_logits"},
        {"--size 30", "multiple of 8"},
        {"--epochs -1", "--epochs in 0.."},
        {"--batch 8 --train-scenes 4", "--train-scenes >= --batch"},
        {"--lr abc", "--lr: 'abc' is not a number"},
        {"--lr-decay 0", "--lr-decay in (0, 1]"},
        {"--frobnicate 1", "unknown option '--frobnicate'"},
        {"--device tpu", "'tpu' is not a device"},
        {"--predict scene.png --out m.png", "--predict needs --checkpoint"},
        {"--predict missing.png --out m.png --checkpoint missing.safetensors", "missing.safetensors"},
        {TINY " --epochs 1 --resume missing.safetensors", "missing.safetensors"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run_result *r = kt_run(bin, d, cases[i].args);
        cr_expect(r->status != 0, "'%s' exited 0", cases[i].args);
        cr_expect(strstr(r->err, "car_mask: ") && strstr(r->err, cases[i].says),
                  "'%s': stderr does not say '%s':\n%s", cases[i].args, cases[i].says, r->err);
        cr_expect(!strstr(r->err, "AddressSanitizer") && !strstr(r->err, "LeakSanitizer"), "'%s':\n%s", cases[i].args, r->err);
        kt_run_free(r);
    }
    if (!kiln_device_available(KILN_CUDA(0))) {
        run_result *r = kt_run(bin, d, TINY " --device cuda");
        cr_expect(r->status != 0 && strstr(r->err, "--device cuda:0 is not available"), "stderr:\n%s", r->err);
        kt_run_free(r);
    }
    kt_run_dir_remove(d);
}

/* The car_mask example run as a user runs it, in a tiny configuration (16x16 scenes, a
 * few steps): its JSON result line and files, exact resume from a checkpoint, --predict
 * on a PNG, the benchmark mode, and clear errors for bad arguments, hostile options,
 * damaged checkpoints, huge or wrong inputs, a diverging run and a bad KILN_DEVICE. */
#include "support/kiln_test.h"
#include "kx.h"
#include "support/kt_run.h"
#include "models/unet.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
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
    run_result *r = kt_run_ok(bin, d, TINY " --epochs 2 --json --out res");
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
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "weights")), "res/model.safetensors");
    kt_run_free(r);
    kt_run_dir_remove(d);
}

/* model.safetensors is the state_dict alone, what torch's strict load_state_dict takes:
 * a fresh U-Net loads it strictly, every entry is one of the module's tensors (no
 * optimizer state), and it equals the model part of the training checkpoint.
 * --export-weights writes it elsewhere instead. */
KT_TEST(example_car_mask, writes_model_only_weights_torch_loads) {
    char *d = kt_run_dir("car_mask"), path[1024], ckpt[1024];
    run_result *r = kt_run_ok(bin, d, TINY " --epochs 1 --json --out res");
    snprintf(path, sizeof path, "%s/res/model.safetensors", d);
    snprintf(ckpt, sizeof ckpt, "%s/res/car_mask.safetensors", d);
    kiln_module *net = unet_create(3, 1, 16, KILN_F32), *ref = unet_create(3, 1, 16, KILN_F32);
    cr_assert(net && ref);
    kiln_safetensors *f = kiln_safetensors_open(path);
    cr_assert(f, "%s", kiln_last_error());
    int n = kiln_safetensors_count(f);
    for (int i = 0; i < n; i++) {
        const char *name = kiln_safetensors_entry_at(f, i)->name;
        cr_expect(strncmp(name, "optimizer", 9) != 0 && kiln_module_get(net, name), "'%s' is not a module tensor", name);
    }
    kiln_safetensors_close(f);
    cr_expect_eq(n, 106, "%d entries, not the U-Net's 106 parameters and buffers", n);
    cr_assert_eq(kiln_checkpoint_load(path, net, NULL, true), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_checkpoint_load(ckpt, ref, NULL, true), KILN_STATUS_OK, "%s", kiln_last_error());
    const char *names[] = {"enc1.0.weight", "head.bias", "dec1.4.running_var", "dec1.4.num_batches_tracked"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        kiln_tensor *a = kiln_module_get(net, names[i]), *b = kiln_module_get(ref, names[i]);
        cr_assert(a && b, "no %s", names[i]);
        size_t nb = (size_t)kiln_tensor_numel(a) * kiln_dtype_size(kiln_tensor_dtype(a));
        char *ha = malloc(nb), *hb = malloc(nb);
        cr_assert(kiln_tensor_to_host(a, ha, nb) == KILN_STATUS_OK && kiln_tensor_to_host(b, hb, nb) == KILN_STATUS_OK);
        int diff = memcmp(ha, hb, nb);
        free(ha);
        free(hb);
        cr_expect_eq(diff, 0, "%s differs from the checkpoint's", names[i]);
    }
    kt_run_free(r);
    r = kt_run_ok(bin, d, TINY " --epochs 1 --out res2 --export-weights w.safetensors");
    snprintf(path, sizeof path, "%s/w.safetensors", d);
    struct stat sb;
    cr_expect(stat(path, &sb) == 0, "no %s", path);
    snprintf(path, sizeof path, "%s/res2/model.safetensors", d);
    cr_expect(stat(path, &sb) != 0, "%s was written as well", path);
    cr_expect(strstr(r->out, "weights w.safetensors"), "stdout does not name the weights:\n%s", r->out);
    kt_run_free(r);
    kiln_module_free(net);
    kiln_module_free(ref);
    kt_run_dir_remove(d);
}

/* --help shows the defaults the program really uses, and says which option it never takes. */
KT_TEST(example_car_mask, help_shows_the_real_defaults) {
    char *d = kt_run_dir("car_mask");
    run_result *r = kt_run_ok(bin, d, "--epochs 5 --help"); /* an earlier option does not change them */
    const char *says[] = {"--epochs N", "(default: 16)", "(default: 8)", "(default: 64)", "(default: out/car_mask)",
                          "(default: bce_with_logits)", "(default: 0.01)", "(default: 0.85)", "(default: 192)",
                          "OUT/model.safetensors", "OUT/mask.png", "--val-fraction X", "(default: 0.2)", "--tile N",
                          "(default: 256)"};
    for (size_t i = 0; i < sizeof says / sizeof *says; i++)
        cr_expect(strstr(r->out, says[i]), "--help does not say '%s':\n%s", says[i], r->out);
    cr_expect(!strstr(r->out, "(default: 5)"), "--help shows the value given, not the default:\n%s", r->out);
    kt_run_free(r);
    kt_run_dir_remove(d);
}

/* Without --json: the epoch lines for a person, progress lines on stderr (not a terminal). */
KT_TEST(example_car_mask, prints_epochs_and_progress_lines) {
    char *d = kt_run_dir("car_mask");
    run_result *r = kt_run_ok(bin, d, TINY " --epochs 1 --loss bce --out res");
    cr_expect(strstr(r->out, "epoch 1/1  train loss"), "no epoch line in:\n%s", r->out);
    cr_expect(strstr(r->out, "pictures in res/car_mask_grid.png"), "the output does not say where the pictures are:\n%s", r->out);
    cr_expect(strstr(r->err, "loss ") && strstr(r->err, "images/s") && strstr(r->err, "ETA"),
              "no progress line (loss, images/s, ETA) on stderr:\n%s", r->err);
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
    run_result *t = kt_run_ok(bin, d, TINY " --epochs 1 --json --out res");
    /* a scene of 36x20: not a multiple of 8, so the program must pad and crop */
    enum { W = 36, H = 20 };
    float rgb[3 * H * W];
    cr_assert_eq(kx_scene_generate(123, H, W, rgb, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    char in[1024];
    snprintf(in, sizeof in, "%s/scene.png", d);
    cr_assert_eq(kx_png_write_f32(in, rgb, 3, H, W), KILN_STATUS_OK, "%s", kiln_last_error());
    /* --out is a directory here too: the mask is OUT/mask.png, out/car_mask/ by default */
    run_result *p = kt_run(bin, d, "--device cpu --predict scene.png --checkpoint res/model.safetensors --json");
    cr_assert_eq(p->status, 0, "exit %d; stderr:\n%s", p->status, p->err);
    cr_assert(p->json, "no JSON line:\n%s", p->out);
    cr_expect_eq(kt_number(p->json, "width"), W);
    cr_expect_eq(kt_number(p->json, "height"), H);
    cr_expect_str_eq(json_string_value(json_object_get(p->json, "mask")), "out/car_mask/mask.png");
    run_result *q = kt_run_ok(bin, d, "--device cpu --predict scene.png --out pred --checkpoint res/car_mask.safetensors");
    char mask[1024];
    snprintf(mask, sizeof mask, "%s/pred/mask.png", d);
    kt_expect_png(mask, 1, W, H);
    kt_run_free(q);
    snprintf(mask, sizeof mask, "%s/out/car_mask/mask.png", d);
    kt_expect_png(mask, 1, W, H);
    uint8_t *px;
    int c, h, w;
    cr_assert_eq(kx_png_read_u8(mask, 1, &px, &c, &h, &w), KILN_STATUS_OK);
    for (int i = 0; i < W * H; i++) cr_expect(px[i] == 0 || px[i] == 255, "mask pixel %d is %d, not 0 or 255", i, px[i]);
    free(px);
    kt_run_free(t);
    kt_run_free(p);
    kt_run_dir_remove(d);
}

KT_TEST(example_car_mask, bench_prints_the_median_step_time) {
    char *d = kt_run_dir("car_mask");
    run_result *r = kt_run_ok(bin, d, "--device cpu --bench-steps 3 --batch 2 --size 16 --json");
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
    const kt_case cases[] = {
        {"--loss mse", "--loss: 'mse' is not one of bce|bce_with_logits"},
        {"--size 30", "multiple of 8"},
        {"--epochs -1", "--epochs: -1 is outside the allowed range 0..1000"},
        {"--epochs 2147483647", "--epochs: 2147483647 is outside the allowed range 0..1000"},
        {"--batch 2147483647", "--batch: 2147483647 is outside the allowed range 1..1024"},
        {"--batch ' 8'", "--batch: ' 8' is not an int-sized integer"},
        {"--batch 8 --train-scenes 4", "--train-scenes 4 is below --batch 8: need --train-scenes >= --batch"},
        {"--train-scenes 100000", "need 6.1 GiB of scene data, above the 4 GiB allowed"},
        {"--size 4096", "--size: 4096 is outside the allowed range 8..1024"},
        {"--lr abc", "--lr: 'abc' is not a number"},
        {"--lr inf", "--lr: 'inf' is not a finite number"},
        {"--lr nan", "--lr: 'nan' is not a finite number"},
        {"--lr 0", "--lr: 0 is not > 0"},
        {"--lr-decay 0", "--lr-decay: 0 is outside (0, 1]"},
        {"--max-pixels 1", "--max-pixels: 1 is outside the allowed range 64..268435456"},
        {"--frobnicate 1", "unknown option '--frobnicate'"},
        {"--threads 0", "--threads: 0 is outside the allowed range 1..256"},
        {"--threads 257", "--threads: 257 is outside the allowed range 1..256"},
        {"--threads two", "--threads: 'two' is not an int-sized integer"},
        {"--predict s.png --checkpoint c --log-dir tb", "--log-dir does not apply with --predict"},
        {"--bench-steps 2 --log-dir tb", "--log-dir does not apply with --bench-steps"},
        {"--device tpu", "'tpu' is not a device"},
        {"--predict scene.png", "--predict needs --checkpoint"},
        /* an option the chosen mode would ignore is refused, naming it and why */
        {"--data x --train-scenes 8", "--train-scenes does not apply with --data"},
        {"--data x --resume c", "--resume does not apply with --data"},
        {"--val-fraction 0.3", "--val-fraction does not apply without --data"},
        {"--crops 3", "--crops does not apply without --data"},
        {"--tile 64", "--tile does not apply without --predict"},
        {"--predict s.png --checkpoint c --tile 100", "--tile 100 is not a multiple of 8"},
        {"--predict s.png --checkpoint c --data d", "--data does not apply with --predict"},
        {"--predict s.png --checkpoint c --epochs 3", "--epochs does not apply with --predict (it trains nothing"},
        {"--predict s.png --checkpoint c --size 32", "--size does not apply with --predict"},
        {"--predict s.png --checkpoint c --export-weights w", "--export-weights does not apply with --predict"},
        {"--checkpoint c", "--checkpoint does not apply without --predict"},
        {"--max-pixels 100", "--max-pixels does not apply without --predict"},
        {"--bench-steps 2 --out r", "--out does not apply with --bench-steps (it times steps on one batch and writes "
                                    "nothing)"},
        {"--bench-steps 2 --epochs 2", "--epochs does not apply with --bench-steps"},
        /* after the checks of usage (exit 2), what only running can find (exit 1) */
        {"--predict missing.png --checkpoint missing.safetensors", "cannot open 'missing.png'"},
        {TINY " --epochs 1 --resume missing.safetensors", "missing.safetensors"},
    };
    size_t nusage = sizeof cases / sizeof *cases - 2;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run_result *r = kt_run_refused(bin, d, cases[i].args, "car_mask: ", cases[i].says);
        cr_expect_eq(r->status, i < nusage ? 2 : 1, "'%s' exited %d", cases[i].args, r->status);
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

/* ---- hostile inputs ------------------------------------------------------------------- */

/* Copies src to dst, replacing the first `value` that follows `key` (same length). */
static void patch_file(const char *src, const char *dst, const char *key, const char *value, const char *by) {
    FILE *f = fopen(src, "rb");
    cr_assert_not_null(f, "%s", src);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *b = malloc((size_t)n + 1);
    cr_assert_eq(fread(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    b[n] = '\0'; /* the header is text; the search stops at the first NUL of the data */
    char *k = strstr(b + 8, key), *v = k ? strstr(k, value) : NULL;
    cr_assert(v && strlen(value) == strlen(by), "no %s %s in %s", key, value, src);
    memcpy(v, by, strlen(by));
    f = fopen(dst, "wb");
    cr_assert_eq(fwrite(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    free(b);
}

/* A metadata field of the checkpoint that is not what save_checkpoint writes is a
 * damaged checkpoint: "x" used to read as epoch 0 and restart the run silently. */
KT_TEST(example_car_mask, resume_refuses_damaged_metadata) {
    char *d = kt_run_dir("car_mask");
    run_result *t = kt_run_ok(bin, d, TINY " --epochs 1 --json --out part");
    kt_run_free(t);
    char src[1024], dst[1024];
    snprintf(src, sizeof src, "%s/part/car_mask.safetensors", d);
    snprintf(dst, sizeof dst, "%s/bad.safetensors", d);
    struct {
        const char *key, *value, *by, *says;
    } cases[] = {
        {"\"car_mask.epoch\"", "\"1\"", "\"x\"", "its car_mask.epoch is 'x', not an epoch count in 0..1000"},
        {"\"car_mask.epoch\"", "\"1\"", "\" \"", "its car_mask.epoch is ' ', not an epoch count"},
        {"\"car_mask.epoch\"", "\"1\"", "\"-\"", "its car_mask.epoch is '-', not an epoch count"},
        {"\"car_mask.epoch\"", "\"1\"", "\"2\"", "history 'car_mask.train_loss' is not 2 comma-separated numbers"},
        {"\"car_mask.train_loss\"", ":\"0.", ":\"z.", "history 'car_mask.train_loss' is not 1 comma-separated numbers"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        patch_file(src, dst, cases[i].key, cases[i].value, cases[i].by);
        run_result *r = kt_run(bin, d, TINY " --epochs 3 --out part --resume bad.safetensors");
        cr_expect_neq(r->status, 0, "case %zu exited 0", i);
        cr_expect(strstr(r->err, "car_mask: training: --resume bad.safetensors: ") && strstr(r->err, cases[i].says),
                  "case %zu: stderr does not say '%s':\n%s", i, cases[i].says, r->err);
        cr_expect(!strstr(r->err, "Sanitizer"), "%s", r->err);
        kt_run_free(r);
    }
    kt_run_dir_remove(d);
}

/* --predict checks its input before building the model: a directory says so, a valid
 * 16384x16384 PNG (261 KB; it used to pass 4 GB resident) is refused from its header,
 * as is an image above --max-pixels, and an --out that is a file is named. */
KT_TEST(example_car_mask, predict_refuses_directories_huge_images_and_a_file_out) {
    char *d = kt_run_dir("car_mask"), path[1024];
    snprintf(path, sizeof path, "%s/huge.png", d);
    kt_write_zero_png(path, 16384, 16384);
    snprintf(path, sizeof path, "%s/adir", d);
    cr_assert_eq(mkdir(path, 0755), 0);
    kt_run_touch(d, "afile");
    enum { W = 36, H = 20 };
    float rgb[3 * H * W];
    cr_assert_eq(kx_scene_generate(7, H, W, rgb, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    snprintf(path, sizeof path, "%s/scene.png", d);
    cr_assert_eq(kx_png_write_f32(path, rgb, 3, H, W), KILN_STATUS_OK, "%s", kiln_last_error());
    const kt_case cases[] = {
        {"--predict adir --checkpoint none.safetensors", "car_mask: --predict: --predict 'adir' is a directory "
                                                         "without a .png or .jpg image"},
        {"--predict huge.png --checkpoint none.safetensors",
         "'huge.png' is 16384x16384 = 268435456 pixels, above --max-pixels 67108864; raise --max-pixels"},
        {"--predict scene.png --checkpoint none.safetensors --max-pixels 700",
         "'scene.png' is 36x20 = 720 pixels, above --max-pixels 700"},
        {"--predict scene.png --out afile --checkpoint none.safetensors",
         "--out 'afile' is a file, not a directory: --out names the directory"},
        {"--predict scene.png --out adir --checkpoint none.safetensors", "none.safetensors"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run_result *r = kt_run(bin, d, cases[i].args);
        cr_expect_eq(r->status, 1, "'%s' exited %d", cases[i].args, r->status);
        cr_expect(strstr(r->err, cases[i].says), "'%s': stderr does not say '%s':\n%s", cases[i].args, cases[i].says,
                  r->err);
        cr_expect(!strstr(r->err, "Sanitizer"), "%s", r->err);
        kt_run_free(r);
    }
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    cr_expect_lt(ru.ru_maxrss, 1L << 20, "a refused input cost %ld MB", ru.ru_maxrss >> 10);
    kt_run_dir_remove(d);
}

/* --lr 1e38 is finite, but one Adam step makes the weights overflow: the next loss is
 * NaN and the run stops there, naming the step, instead of exiting 0. */
KT_TEST(example_car_mask, a_diverging_run_stops_with_an_error) {
    char *d = kt_run_dir("car_mask");
    run_result *r = kt_run(bin, d, TINY " --epochs 3 --lr 1e38 --out res");
    cr_expect_eq(r->status, 1, "exit %d; stderr:\n%s", r->status, r->err);
    cr_expect(strstr(r->err, "car_mask: training: the training loss became NaN at epoch 1, step 2 of 2: training "
                             "diverged (lower --lr, now 1e+38)"), "stderr:\n%s", r->err);
    cr_expect(!strstr(r->err, "Sanitizer"), "%s", r->err);
    kt_run_free(r);
    r = kt_run(bin, d, "--device cpu --size 16 --batch 2 --train-scenes 4 --lr 1e38 --bench-steps 3");
    cr_expect(r->status == 1 && strstr(r->err, "car_mask: --bench-steps: the training loss became NaN at epoch 1, "
                                               "step 2 of 5"), "exit %d; stderr:\n%s", r->status, r->err);
    kt_run_free(r);
    kt_run_dir_remove(d);
}

/* A bad KILN_DEVICE used to record an error that replaced every later one. Now it is
 * reported as itself, once; an option's own error is itself; --device makes it moot. */
KT_TEST(example_car_mask, a_bad_KILN_DEVICE_is_said_once_and_masks_nothing) {
    char *d = kt_run_dir("car_mask");
    setenv("KILN_DEVICE", "cuda:x", 1);
    run_result *r = kt_run(bin, d, "--size 16 --batch 2 --train-scenes 4 --heldout-scenes 2 --epochs 1 --out res");
    cr_expect_eq(r->status, 2);
    const char *says = "KILN_DEVICE='cuda:x' is not a device: set it to cpu, cuda or cuda:N, unset it, or pass --device";
    const char *first = strstr(r->err, says);
    cr_expect(first && !strstr(first + 1, "KILN_DEVICE"), "stderr does not say it once:\n%s", r->err);
    kt_run_free(r);
    /* the parser reports the variable before the checks that follow it, as itself */
    r = kt_run(bin, d, "--size 12");
    cr_expect(r->status == 2 && strstr(r->err, says) && !strstr(r->err, "multiple of 8"), "stderr:\n%s", r->err);
    kt_run_free(r);
    r = kt_run(bin, d, "--batch 0");
    cr_expect(r->status == 2 && strstr(r->err, "--batch: 0 is outside the allowed range") && !strstr(r->err, "KILN_DEVICE"),
              "stderr:\n%s", r->err);
    kt_run_free(r);
    r = kt_run(bin, d, "--device cpu --size 12");
    cr_expect(r->status == 2 && strstr(r->err, "multiple of 8") && !strstr(r->err, "KILN_DEVICE"), "stderr:\n%s", r->err);
    kt_run_free(r);
    setenv("KILN_DEVICE", "cpu", 1);
    kt_run_dir_remove(d);
}

KT_TEST(example_car_mask, out_must_be_a_directory_when_training) {
    char *d = kt_run_dir("car_mask");
    kt_run_touch(d, "res");
    run_result *r = kt_run(bin, d, TINY " --epochs 1 --out res");
    cr_expect_eq(r->status, 1);
    cr_expect(strstr(r->err, "car_mask: training: --out 'res' is a file, not a directory: --out names the directory"),
              "stderr:\n%s", r->err);
    cr_expect(!strstr(r->err, "Sanitizer"), "%s", r->err);
    kt_run_free(r);
    kt_run_dir_remove(d);
}

/* Lines of a text file (a static buffer, for the CSV logs). */
static int file_lines(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    cr_assert(f, "no file %s", path);
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = '\0';
    fclose(f);
    int lines = 0;
    for (char *p = buf; *p; p++) lines += *p == '\n';
    return lines;
}

/* --threads sets the CPU kernels' threads and the result line says how many ran; --help
 * lists it with the library's own count as its default; a run without it leaves that count. */
KT_TEST(example_car_mask, threads_option_is_applied_and_reported) {
    char *d = kt_run_dir("car_mask");
    run_result *r = kt_run_ok(bin, d, TINY " --epochs 1 --threads 3 --json --out res");
    cr_assert(r->json);
    cr_expect_eq(kt_number(r->json, "threads"), 3);
    kt_run_free(r);
    r = kt_run_ok(bin, d, TINY " --epochs 1 --threads=1 --json --out res");
    cr_expect_eq(kt_number(r->json, "threads"), 1);
    kt_run_free(r);
    /* unset: OMP_NUM_THREADS (the library's default) decides */
    setenv("OMP_NUM_THREADS", "2", 1);
    r = kt_run_ok(bin, d, TINY " --epochs 1 --json --out res");
    cr_expect_eq(kt_number(r->json, "threads"), 2);
    kt_run_free(r);
    r = kt_run_ok(bin, d, "--help");
    cr_expect(strstr(r->out, "--threads N") && strstr(r->out, "(1..256) (default: 2)"), "%s", r->out);
    kt_run_free(r);
    unsetenv("OMP_NUM_THREADS");
    kt_run_dir_remove(d);
}

/* OUT/steps.csv has a row a step and OUT/epochs.csv a row an epoch, matching the JSON
 * history; --log-dir writes a TensorBoard event file and names it; a resumed run keeps
 * the rows of the epochs it continues. */
KT_TEST(example_car_mask, writes_csv_logs_and_tensorboard_events) {
    char *d = kt_run_dir("car_mask"), path[1024], buf[1 << 14];
    run_result *r = kt_run_ok(bin, d, TINY " --epochs 2 --json --out res --log-dir tb/run");
    cr_assert(r->json);
    snprintf(path, sizeof path, "%s/res/steps.csv", d);
    cr_expect_eq(file_lines(path, buf, sizeof buf), 1 + 4, "a header and 2 steps x 2 epochs:\n%s", buf);
    cr_expect(strncmp(buf, "epoch,step,loss,lr,images_per_s\n1,1,", 36) == 0, "%s", buf);
    cr_expect(strstr(buf, "\n2,4,"), "steps count over the run:\n%s", buf);
    snprintf(path, sizeof path, "%s/res/epochs.csv", d);
    cr_expect_eq(file_lines(path, buf, sizeof buf), 1 + 2, "%s", buf);
    cr_expect(strncmp(buf, "epoch,train_loss,heldout_loss,heldout_binary_pixel_accuracy,heldout_iou,heldout_dice\n", 85) == 0,
              "%s", buf);
    /* the second row's train loss is the JSON's, to the 9 digits written */
    double e2 = strtod(strstr(buf, "\n2,") + 3, NULL);
    double j2 = json_number_value(json_array_get(json_object_get(r->json, "train_loss"), 1));
    cr_expect(fabs(e2 - j2) <= 1e-8 * fabs(j2), "epochs.csv %.9g, JSON %.17g", e2, j2);
    const char *ev = json_string_value(json_object_get(r->json, "events"));
    cr_assert(ev && strncmp(ev, "tb/run/events.out.tfevents.", 27) == 0, "events: %s", ev ? ev : "null");
    snprintf(path, sizeof path, "%s/%s", d, ev);
    struct stat sb;
    cr_expect(stat(path, &sb) == 0 && sb.st_size > 100, "no event file %s", path);
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "steps_csv")), "res/steps.csv");
    kt_run_free(r);

    r = kt_run_ok(bin, d, TINY " --epochs 1 --json --out part");
    cr_expect(json_is_null(json_object_get(r->json, "events")), "no --log-dir, no events");
    kt_run_free(r);
    r = kt_run_ok(bin, d, TINY " --epochs 2 --json --out part --resume part/car_mask.safetensors");
    kt_run_free(r);
    snprintf(path, sizeof path, "%s/part/epochs.csv", d);
    cr_expect_eq(file_lines(path, buf, sizeof buf), 1 + 2, "epoch 1 kept, epoch 2 added:\n%s", buf);
    snprintf(path, sizeof path, "%s/part/steps.csv", d);
    cr_expect_eq(file_lines(path, buf, sizeof buf), 1 + 4, "%s", buf);
    cr_expect(strstr(buf, "\n2,3,") && strstr(buf, "\n2,4,"), "the resumed epoch's steps continue the count:\n%s", buf);
    kt_run_dir_remove(d);
}

/* ---- your own data -------------------------------------------------------------------- */

/* n scenes of H x W as a --data folder under d: images/sceneNNN.png (every third a .jpg,
 * quality 92) and masks/sceneNNN.png (255 on cars, 0 elsewhere). */
static void make_folder(const char *d, int n, int H, int W) {
    char p[1024];
    snprintf(p, sizeof p, "%s/data/images", d);
    cr_assert_eq(kx_make_dirs(p), KILN_STATUS_OK);
    snprintf(p, sizeof p, "%s/data/masks", d);
    cr_assert_eq(kx_make_dirs(p), KILN_STATUS_OK);
    float *rgb = malloc(sizeof(float) * 3 * H * W);
    uint8_t *lab = malloc((size_t)H * W);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(kx_scene_generate(1000 + (uint64_t)i, H, W, rgb, lab), KILN_STATUS_OK);
        for (int k = 0; k < H * W; k++) lab[k] = lab[k] == KX_SCENE_CAR ? 255 : 0;
        kiln_scope *s = kiln_scope_begin();
        snprintf(p, sizeof p, "%s/data/images/scene%03d.%s", d, i, i % 3 ? "png" : "jpg");
        cr_assert_eq(kiln_image_write(p, kiln_tensor_from_host(rgb, 3, (int64_t[]){3, H, W}, KILN_F32, KILN_CPU), 92),
                     KILN_STATUS_OK, "%s", kiln_last_error());
        snprintf(p, sizeof p, "%s/data/masks/scene%03d.png", d, i);
        cr_assert_eq(kiln_image_write(p, kiln_tensor_from_host(lab, 3, (int64_t[]){1, H, W}, KILN_U8, KILN_CPU), 0),
                     KILN_STATUS_OK, "%s", kiln_last_error());
        kiln_scope_end(s);
    }
    free(rgb);
    free(lab);
}

/* 24 scenes of 96x96 (8 of them JPEG), 19 trained on and 5 held out, crops of 32 (9 an
 * image an epoch), 12 epochs: measured held-out IoU 0.63 over the whole held-out images
 * (tiled, as --predict), 27 s on 2 cores; required: 0.35. Then --predict on the folder
 * writes one mask per image, any size. */
KT_TEST(example_car_mask, trains_on_a_folder_to_a_stated_iou_and_predicts_a_folder) {
    char *d = kt_run_dir("car_mask"), path[1024];
    make_folder(d, 24, 96, 96);
    run_result *r = kt_run_ok(bin, d, "--device cpu --data data --size 32 --batch 8 --epochs 12 --lr 0.005 --json --out res");
    cr_assert(r->json, "no JSON:\n%s", r->out);
    cr_expect_eq(kt_number(r->json, "train_images"), 19);
    cr_expect_eq(kt_number(r->json, "heldout_images"), 5);
    cr_expect_eq(kt_number(r->json, "crops_per_image"), 9);
    double iou = kt_number(r->json, "iou");
    cr_expect(iou >= 0.35, "held-out IoU %g after 12 epochs on the folder (measured 0.63)", iou);
    kt_expect_series(r->json, "heldout_iou", 12, 0, 1);
    kt_run_free(r);
    /* a folder of images of other sizes, one larger than a tile */
    snprintf(path, sizeof path, "%s/in", d);
    cr_assert_eq(kx_make_dirs(path), KILN_STATUS_OK);
    int sizes[2][2] = {{37, 50}, {300, 180}};
    for (int k = 0; k < 2; k++) {
        int H = sizes[k][0], W = sizes[k][1];
        float *rgb = malloc(sizeof(float) * 3 * H * W);
        cr_assert_eq(kx_scene_generate(77 + (uint64_t)k, H, W, rgb, NULL), KILN_STATUS_OK);
        kiln_scope *s = kiln_scope_begin();
        snprintf(path, sizeof path, "%s/in/p%d.%s", d, k, k ? "jpg" : "png");
        cr_assert_eq(kiln_image_write(path, kiln_tensor_from_host(rgb, 3, (int64_t[]){3, H, W}, KILN_F32, KILN_CPU), 90),
                     KILN_STATUS_OK);
        kiln_scope_end(s);
        free(rgb);
    }
    r = kt_run_ok(bin, d, "--device cpu --predict in --tile 64 --checkpoint res/model.safetensors --out pred --json");
    cr_expect_eq(kt_number(r->json, "images"), 2);
    kt_run_free(r);
    snprintf(path, sizeof path, "%s/pred/p0.png", d);
    kt_expect_png(path, 1, 50, 37);
    snprintf(path, sizeof path, "%s/pred/p1.png", d);
    kt_expect_png(path, 1, 180, 300);
    /* the folder's errors reach the user with the file named */
    snprintf(path, sizeof path, "%s/data/masks/scene005.png", d);
    remove(path);
    r = kt_run(bin, d, "--device cpu --data data --size 32 --epochs 1 --out res");
    cr_expect(r->status == 1 && strstr(r->err, "car_mask: --data: 'data/images/scene005.png' has no mask"),
              "exit %d:\n%s", r->status, r->err);
    kt_run_free(r);
    kt_run_dir_remove(d);
}

/* The segment7 example run as a user runs it, in a tiny configuration (16x16 scenes, a
 * few steps): its JSON result line (class weights, per-class IoU, mIoU) and files, and
 * clear errors (with nothing leaked) for bad arguments, an --out that is a file and a
 * diverging run; then on a folder of your own images (class-index and palette masks) to
 * a stated held-out mIoU, the folder's errors, and --predict on a folder of any sizes. */
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
        {"--data dir --train-scenes 8", "--train-scenes does not apply with --data (the folder's images are the data)"},
        {"--palette p.json", "--palette does not apply without --data"},
        {"--crops 2", "--crops does not apply without --data"},
        {"--data dir --val-fraction 0.95", "--val-fraction: 0.95 is outside the allowed range"},
        {"--tile 64", "--tile does not apply without --predict"},
        {"--predict in.png", "--predict needs --checkpoint FILE"},
        {"--predict in.png --checkpoint m.safetensors --epochs 2", "--epochs does not apply with --predict"},
        {"--predict in.png --checkpoint m.safetensors --palette p.json", "--palette does not apply with --predict"},
        {"--predict in.png --checkpoint m.safetensors --tile 60", "--tile 60 is not a multiple of 8"},
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

/* ---- your own data -------------------------------------------------------------------- */

/* n scenes of H x W as a --data folder under d/name: images/sceneNNN.png (every third a
 * .jpg, quality 92) and masks/sceneNNN.png, gray class indices 0..6 or, with `rgb`, each
 * class in the scene palette (the palette file pal.json beside it says so). */
static void make_folder(const char *d, const char *name, int n, int H, int W, bool rgb) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s/images", d, name);
    cr_assert_eq(kx_make_dirs(p), KILN_STATUS_OK);
    snprintf(p, sizeof p, "%s/%s/masks", d, name);
    cr_assert_eq(kx_make_dirs(p), KILN_STATUS_OK);
    float *img = malloc(sizeof(float) * 3 * H * W);
    uint8_t *lab = malloc((size_t)H * W), *col = malloc((size_t)3 * H * W);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(kx_scene_generate(2000 + (uint64_t)i, H, W, img, lab), KILN_STATUS_OK);
        for (int k = 0; k < H * W; k++)
            for (int c = 0; c < 3; c++) col[c * H * W + k] = kx_scene_palette[lab[k]][c];
        kiln_scope *s = kiln_scope_begin();
        snprintf(p, sizeof p, "%s/%s/images/scene%03d.%s", d, name, i, i % 3 ? "png" : "jpg");
        cr_assert_eq(kiln_image_write(p, kiln_tensor_from_host(img, 3, (int64_t[]){3, H, W}, KILN_F32, KILN_CPU), 92),
                     KILN_STATUS_OK, "%s", kiln_last_error());
        snprintf(p, sizeof p, "%s/%s/masks/scene%03d.png", d, name, i);
        kiln_tensor *m = rgb ? kiln_tensor_from_host(col, 3, (int64_t[]){3, H, W}, KILN_U8, KILN_CPU)
                             : kiln_tensor_from_host(lab, 3, (int64_t[]){1, H, W}, KILN_U8, KILN_CPU);
        cr_assert_eq(kiln_image_write(p, m, 0), KILN_STATUS_OK, "%s", kiln_last_error());
        kiln_scope_end(s);
    }
    if (rgb) { /* the scene palette, half the entries named, half bare */
        snprintf(p, sizeof p, "%s/pal.json", d);
        FILE *f = fopen(p, "w");
        cr_assert(f);
        fprintf(f, "[");
        for (int c = 0; c < KX_SCENE_NUM_CLASSES; c++) {
            const uint8_t *q = kx_scene_palette[c];
            if (c % 2) fprintf(f, "%s[%d, %d, %d]", c ? ", " : "", q[0], q[1], q[2]);
            else fprintf(f, "%s{\"name\": \"%s\", \"color\": [%d, %d, %d]}", c ? ", " : "", kx_scene_class_name(c), q[0], q[1], q[2]);
        }
        fprintf(f, "]\n");
        fclose(f);
    }
    free(img);
    free(lab);
    free(col);
}

/* One mask pixel of d/name/masks/sceneNNN.png set to v (gray) or to [v, v, v] (colour). */
static void poke_mask(const char *d, const char *name, int i, int x, int y, uint8_t v) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s/masks/scene%03d.png", d, name, i);
    uint8_t *px = NULL;
    int c = 0, H = 0, W = 0;
    cr_assert_eq(kx_png_read_u8(p, 0, &px, &c, &H, &W), KILN_STATUS_OK, "%s", kiln_last_error());
    for (int k = 0; k < c; k++) px[((size_t)y * W + x) * c + k] = v;
    cr_assert_eq(kx_png_write_u8(p, px, c, H, W), KILN_STATUS_OK);
    free(px);
}

static void write_text(const char *d, const char *name, const char *text) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", d, name);
    FILE *f = fopen(p, "w");
    cr_assert(f);
    fputs(text, f);
    fclose(f);
}

/* 24 scenes of 64x64 (8 of them JPEG) with class-index masks, 19 trained on and 5 held
 * out, crops of 32 (4 an image an epoch, 9 steps of 8), 10 epochs: measured held-out mIoU
 * 0.68 and argmax accuracy 0.88 over the whole held-out images (tiled, as --predict), 6 s
 * on 2 cores; required: 0.4 and 0.7. Then --predict on a folder of
 * other sizes writes one colour PNG per image. */
KT_TEST(example_segment7, trains_on_a_folder_to_a_stated_miou_and_predicts_a_folder) {
    char *d = kt_run_dir("segment7"), path[1024];
    make_folder(d, "data", 24, 64, 64, false);
    run_result *r = kt_run_ok(bin, d, "--device cpu --data data --size 32 --batch 8 --epochs 10 --json --out res");
    cr_assert(r->json, "no JSON:\n%s", r->out);
    cr_expect_eq(kt_number(r->json, "train_images"), 19);
    cr_expect_eq(kt_number(r->json, "heldout_images"), 5);
    cr_expect_eq(kt_number(r->json, "crops_per_image"), 4);
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "masks")), "class_index");
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "classes")),
                     "class 0,class 1,class 2,class 3,class 4,class 5,class 6");
    double miou = kt_number(r->json, "miou"), acc = kt_number(r->json, "argmax_accuracy");
    cr_expect(miou >= 0.4 && acc >= 0.7, "held-out mIoU %g, argmax accuracy %g after 10 epochs on the folder "
              "(measured 0.68 and 0.88)", miou, acc);
    kt_expect_series(r->json, "heldout_miou", 10, 0, 1);
    kt_expect_series(r->json, "heldout_loss", 10, 0, 20);
    snprintf(path, sizeof path, "%s/res/segment7_grid.png", d);
    kt_expect_png(path, 3, 0, 0);
    kt_run_free(r);
    /* a folder of images of other sizes, one larger than a tile */
    snprintf(path, sizeof path, "%s/in", d);
    cr_assert_eq(kx_make_dirs(path), KILN_STATUS_OK);
    int sizes[2][2] = {{37, 50}, {150, 90}};
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
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "labels_dir")), "pred");
    kt_run_free(r);
    snprintf(path, sizeof path, "%s/pred/p0.png", d);
    kt_expect_png(path, 3, 50, 37);
    snprintf(path, sizeof path, "%s/pred/p1.png", d);
    kt_expect_png(path, 3, 90, 150);
    /* every pixel is one of the scene palette's colours (the grid's key) */
    uint8_t *px = NULL;
    int c = 0, H = 0, W = 0;
    cr_assert_eq(kx_png_read_u8(path, 0, &px, &c, &H, &W), KILN_STATUS_OK);
    int off = 0, used = 0;
    for (int i = 0; i < H * W; i++) {
        int k = 0;
        while (k < KX_SCENE_NUM_CLASSES && memcmp(px + 3 * i, kx_scene_palette[k], 3)) k++;
        if (k == KX_SCENE_NUM_CLASSES) off++;
        else used |= 1 << k;
    }
    free(px);
    cr_expect_eq(off, 0, "%d pixels of %s are no class's colour", off, path);
    cr_expect(__builtin_popcount(used) >= 2, "the prediction of a scene uses one class alone");
    /* one image: OUT/labels.png */
    r = kt_run_ok(bin, d, "--device cpu --predict in/p0.png --checkpoint res/segment7.safetensors --out one");
    cr_expect(strstr(r->out, "segment7: wrote one/labels.png (50x37) from in/p0.png"), "%s", r->out);
    kt_run_free(r);
    snprintf(path, sizeof path, "%s/one/labels.png", d);
    kt_expect_png(path, 3, 50, 37);
    kt_run_dir_remove(d);
}

/* Palette masks: the JSON parsed (named and bare entries), one epoch trained, the names in
 * the result; then a colour the palette lacks, and a bad palette file. */
KT_TEST(example_segment7, trains_on_palette_masks_and_names_bad_colours) {
    char *d = kt_run_dir("segment7");
    make_folder(d, "data", 6, 32, 32, true);
    run_result *r = kt_run_ok(bin, d, "--device cpu --data data --palette pal.json --size 32 --batch 2 --epochs 1 "
                                      "--val-fraction 0.3 --json --out res");
    cr_assert(r->json, "no JSON:\n%s", r->out);
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "masks")), "palette");
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "classes")),
                     "ground,class 1,building,class 3,water,class 5,shadow");
    cr_expect_eq(kt_number(r->json, "train_images"), 4);
    cr_expect_eq(kt_number(r->json, "heldout_images"), 2);
    kt_expect_series(r->json, "heldout_miou", 1, 0, 1);
    kt_run_free(r);
    /* the same masks read as class indices: colour, not gray */
    r = kt_run(bin, d, "--device cpu --data data --size 32 --batch 2 --epochs 1 --out res");
    cr_expect(r->status == 1 && strstr(r->err, "segment7: reading the masks: mask 'data/masks/scene00") &&
              strstr(r->err, ".png' is in colour (pixel x=0 y=0 is ["), "exit %d:\n%s", r->status, r->err);
    kt_run_free(r);
    poke_mask(d, "data", 4, 5, 3, 7); /* [7, 7, 7]: no class */
    r = kt_run(bin, d, "--device cpu --data data --palette pal.json --size 32 --batch 2 --epochs 1 --out res");
    cr_expect(r->status == 1 && strstr(r->err, "segment7: reading the masks: mask 'data/masks/scene004.png': pixel "
                                               "x=5 y=3 is [7, 7, 7], a colour the palette does not have"),
              "exit %d:\n%s", r->status, r->err);
    kt_run_free(r);
    const kt_case bad[] = {
        {"[[1, 2, 3], ", "--palette 'bad.json': not valid JSON"},
        {"{\"ground\": [1, 2, 3]}", "--palette 'bad.json': expected a JSON array of 1..7 colours"},
        {"[[1, 2, 3], [1, 2, 300]]", "--palette 'bad.json': entry 1 (class 1) is not [r, g, b]"},
        {"[[1, 2, 3], [1, 2, 3]]", "entries 0 and 1 have the same colour [1, 2, 3]"},
        {"[[0,0,0],[0,0,1],[0,0,2],[0,0,3],[0,0,4],[0,0,5],[0,0,6],[0,0,7]]", "expected a JSON array of 1..7 colours (entry "
                                                                             "i is class i), found an array of 8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        write_text(d, "bad.json", bad[i].args);
        r = kt_run(bin, d, "--device cpu --data data --palette bad.json --size 32 --batch 2 --epochs 1 --out res");
        cr_expect(r->status == 1 && strstr(r->err, "segment7: reading --palette: ") && strstr(r->err, bad[i].says),
                  "palette %s: exit %d:\n%s", bad[i].args, r->status, r->err);
        kt_run_free(r);
    }
    r = kt_run(bin, d, "--device cpu --data data --palette missing.json --size 32 --epochs 1 --out res");
    cr_expect(r->status == 1 && strstr(r->err, "--palette 'missing.json'"), "exit %d:\n%s", r->status, r->err);
    kt_run_free(r);
    kt_run_dir_remove(d);
}

/* A class index past the 7 classes names the file, the pixel and the value, before any
 * training step. */
KT_TEST(example_segment7, a_class_index_out_of_range_names_the_file) {
    char *d = kt_run_dir("segment7");
    make_folder(d, "data", 5, 32, 32, false);
    poke_mask(d, "data", 3, 9, 2, 7);
    run_result *r = kt_run(bin, d, "--device cpu --data data --size 32 --batch 2 --epochs 1 --out res");
    cr_expect(r->status == 1 && strstr(r->err, "segment7: reading the masks: mask 'data/masks/scene003.png': pixel "
                                               "x=9 y=2 holds 7, not a class index 0..6"), "exit %d:\n%s", r->status, r->err);
    cr_expect(!strstr(r->out, "epoch 1/1"), "it trained before reading the masks:\n%s", r->out);
    kt_run_free(r);
    kt_run_dir_remove(d);
}

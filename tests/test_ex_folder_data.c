/* Your own data (examples/support/folder_data.c): a folder of images and masks scanned,
 * paired and split deterministically; masks decoded (binary, class indices, a palette);
 * augmentation that is a function of the seed and moves an image and its mask alike; the
 * loader thread's batches (the same sequence whatever the timing, an error handed over);
 * and the errors a user meets: no masks/, an unpaired file, a size mismatch, a bad palette. */
#include "support/kiln_test.h"
#include "support/kt_run.h"

#include <kx.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

TestSuite(ex_folder_data, .init = kiln_test_setup, .fini = kiln_test_teardown);

/* n synthetic scenes of H x W under dir: images/sceneNNN.png (every third a .jpg) and
 * masks/sceneNNN.png (255 on cars). */
static void make_folder(const char *dir, int n, int H, int W) {
    char p[1024];
    snprintf(p, sizeof p, "%s/images", dir);
    cr_assert_eq(kx_make_dirs(p), KILN_STATUS_OK);
    snprintf(p, sizeof p, "%s/masks", dir);
    cr_assert_eq(kx_make_dirs(p), KILN_STATUS_OK);
    float *rgb = malloc(sizeof(float) * 3 * H * W);
    uint8_t *lab = malloc((size_t)H * W);
    for (int i = 0; i < n; i++) {
        cr_assert_eq(kx_scene_generate(500 + (uint64_t)i, H, W, rgb, lab), KILN_STATUS_OK);
        for (int k = 0; k < H * W; k++) lab[k] = lab[k] == KX_SCENE_CAR ? 255 : 0;
        kiln_scope *s = kiln_scope_begin();
        snprintf(p, sizeof p, "%s/images/scene%03d.%s", dir, i, i % 3 ? "png" : "jpg");
        cr_assert_eq(kiln_image_write(p, kiln_tensor_from_host(rgb, 3, (int64_t[]){3, H, W}, KILN_F32, KILN_CPU), 92),
                     KILN_STATUS_OK, "%s", kiln_last_error());
        snprintf(p, sizeof p, "%s/masks/scene%03d.png", dir, i);
        cr_assert_eq(kiln_image_write(p, kiln_tensor_from_host(lab, 3, (int64_t[]){1, H, W}, KILN_U8, KILN_CPU), 0),
                     KILN_STATUS_OK, "%s", kiln_last_error());
        kiln_scope_end(s);
    }
    free(rgb);
    free(lab);
}

KT_TEST(ex_folder_data, pairs_and_splits_deterministically) {
    char *d = kt_run_dir("folder");
    make_folder(d, 10, 24, 20);
    kx_folder *a, *b, *c;
    cr_assert_eq(kx_folder_open(d, 0.2, 7, 16, &a), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kx_folder_open(d, 0.2, 7, 16, &b), KILN_STATUS_OK);
    cr_assert_eq(kx_folder_open(d, 0.2, 8, 16, &c), KILN_STATUS_OK);
    cr_expect_eq(a->n, 10);
    cr_expect_eq(a->nheldout, 2, "round(10 * 0.2) held out");
    cr_expect_eq(a->ntrain, 8);
    cr_expect_str_eq(a->items[0].name, "scene000");
    cr_expect(strstr(a->items[0].image, "images/scene000.jpg") && strstr(a->items[0].mask, "masks/scene000.png"));
    cr_expect_eq(a->items[3].w, 20);
    cr_expect_eq(a->items[3].h, 24);
    bool same_as_b = true, same_as_c = true;
    for (int64_t i = 0; i < a->nheldout; i++) same_as_b &= a->heldout[i] == b->heldout[i], same_as_c &= a->heldout[i] == c->heldout[i];
    cr_expect(same_as_b, "one seed, one split");
    cr_expect(!same_as_c, "another seed, another split (seeds 7 and 8 hold out %lld,%lld and %lld,%lld)",
              (long long)a->heldout[0], (long long)a->heldout[1], (long long)c->heldout[0], (long long)c->heldout[1]);
    bool seen[10] = {0};
    for (int64_t i = 0; i < a->ntrain; i++) seen[a->train[i]] = true;
    for (int64_t i = 0; i < a->nheldout; i++) {
        cr_expect(!seen[a->heldout[i]], "item %lld in both parts", (long long)a->heldout[i]);
        seen[a->heldout[i]] = true;
    }
    for (int i = 0; i < 10; i++) cr_expect(seen[i], "item %d in neither part", i);
    /* a mask reads as 0/1, the image as its bytes */
    kx_mask_format fmt = {.kind = KX_MASK_BINARY, .nclasses = 2};
    uint8_t *rgb, *lab;
    cr_assert_eq(kx_folder_read(a, 1, &fmt, &rgb, &lab), KILN_STATUS_OK, "%s", kiln_last_error());
    for (int i = 0; i < 24 * 20; i++) cr_assert(lab[i] <= 1);
    free(rgb);
    free(lab);
    kx_folder_free(a), kx_folder_free(b), kx_folder_free(c);
    kt_run_dir_remove(d);
}

/* numpy's conventions, by hand on a 3x3 crop of a 4x5 image:
 * np.rot90(crop) = [[c,f,i],[b,e,h],[a,d,g]] for crop [[a,b,c],[d,e,f],[g,h,i]]. */
KT_TEST(ex_folder_data, augmentation_matches_numpy_and_moves_image_and_mask_alike) {
    uint8_t src[2 * 4 * 5], dst[2 * 9];
    for (int i = 0; i < 40; i++) src[i] = (uint8_t)i;
    kx_augment a = {.y0 = 1, .x0 = 2}; /* crop rows 1..3, cols 2..4: 7 8 9 / 12 13 14 / 17 18 19 */
    kx_augment_apply(&a, src, 1, 4, 5, 3, dst);
    const uint8_t crop[9] = {7, 8, 9, 12, 13, 14, 17, 18, 19};
    cr_expect_arr_eq(dst, crop, 9);
    a.rot90 = 1;
    kx_augment_apply(&a, src, 1, 4, 5, 3, dst);
    cr_expect_arr_eq(dst, ((uint8_t[]){9, 14, 19, 8, 13, 18, 7, 12, 17}), 9);
    a.rot90 = 0, a.flip_h = true; /* np.fliplr */
    kx_augment_apply(&a, src, 1, 4, 5, 3, dst);
    cr_expect_arr_eq(dst, ((uint8_t[]){9, 8, 7, 14, 13, 12, 19, 18, 17}), 9);
    a.flip_h = false, a.flip_v = true; /* np.flipud */
    kx_augment_apply(&a, src, 1, 4, 5, 3, dst);
    cr_expect_arr_eq(dst, ((uint8_t[]){17, 18, 19, 12, 13, 14, 7, 8, 9}), 9);
    a.rot90 = 2, a.flip_v = false; /* two quarter turns = both flips */
    kx_augment_apply(&a, src, 2, 4, 5, 3, dst);
    cr_expect_arr_eq(dst, ((uint8_t[]){19, 18, 17, 14, 13, 12, 9, 8, 7}), 9);
    cr_expect_arr_eq(dst + 9, ((uint8_t[]){39, 38, 37, 34, 33, 32, 29, 28, 27}), 9, "channel 2 moves with channel 1");
    /* draws: a function of (seed, epoch, item); all 8 symmetries and every crop offset occur */
    int sym[8] = {0}, ys[3] = {0};
    for (int item = 0; item < 400; item++) {
        kx_augment g = kx_augment_draw(3, 1, item, 6, 9, 4), h = kx_augment_draw(3, 1, item, 6, 9, 4);
        cr_assert(!memcmp(&g, &h, sizeof g));
        cr_assert(g.y0 >= 0 && g.y0 <= 2 && g.x0 >= 0 && g.x0 <= 5 && g.rot90 >= 0 && g.rot90 < 4);
        sym[g.rot90 * 2 + g.flip_h] += 1 + 0 * g.flip_v, ys[g.y0]++;
    }
    for (int k = 0; k < 8; k++) cr_expect(sym[k] > 20, "symmetry %d drawn %d times of 400", k, sym[k]);
    for (int k = 0; k < 3; k++) cr_expect(ys[k] > 60, "offset %d drawn %d times", k, ys[k]);
    kx_augment e0 = kx_augment_draw(3, 0, 5, 64, 64, 8), e1 = kx_augment_draw(3, 1, 5, 64, 64, 8);
    cr_expect(e0.y0 != e1.y0 || e0.x0 != e1.x0, "another epoch, another crop");
}

/* The batches: the same sequence for a seed (image and mask transformed alike: each
 * augmented mask is the augmented crop of the mask file), an error of the thread
 * handed to the caller with its message, and a clean stop mid-run. */
KT_TEST(ex_folder_data, loader_batches_are_deterministic_and_errors_come_back) {
    char *d = kt_run_dir("folder"), p[1024];
    make_folder(d, 8, 20, 20);
    kx_folder *f;
    kx_mask_format fmt = {.kind = KX_MASK_BINARY, .nclasses = 2};
    cr_assert_eq(kx_folder_open(d, 0.25, 1, 16, &f), KILN_STATUS_OK, "%s", kiln_last_error());
    kx_loader *a = kx_loader_start(f, &fmt, 2, 16, 2, 9, 0, 2), *b = kx_loader_start(f, &fmt, 2, 16, 2, 9, 0, 2);
    cr_assert(a && b, "%s", kiln_last_error());
    int order[12];
    kx_epoch_shuffle(order, 12, 9, 1);
    for (int k = 0; k < 12; k++) { /* 6 training images x 2 crops / batch 2 = 6 an epoch */
        const kx_batch *x, *y;
        cr_assert_eq(kx_loader_next(a, &x), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_assert_eq(kx_loader_next(b, &y), KILN_STATUS_OK);
        cr_assert(x->epoch == k / 6 && x->step == k % 6 && x->n == 2 && x->size == 16);
        cr_assert(!memcmp(x->images, y->images, 2 * 3 * 256 * sizeof(float)) && !memcmp(x->labels, y->labels, 512));
        if (k == 6) { /* the first of epoch 2, by hand */
            int64_t e = order[0], item = f->train[e % 6];
            uint8_t *rgb, *lab, crop[3 * 256];
            cr_assert_eq(kx_folder_read(f, item, &fmt, &rgb, &lab), KILN_STATUS_OK);
            kx_augment g = kx_augment_draw(9, 1, item * 2 + e / 6, 20, 20, 16);
            kx_augment_apply(&g, lab, 1, 20, 20, 16, crop);
            cr_expect(!memcmp(crop, x->labels, 256), "the mask is the augmented crop of its file");
            kx_augment_apply(&g, rgb, 3, 20, 20, 16, crop);
            for (int i = 0; i < 3 * 256; i++) cr_assert_eq(x->images[i], crop[i] / 255.0f, "pixel %d", i);
            free(rgb), free(lab);
        }
    }
    const kx_batch *x;
    cr_expect_neq(kx_loader_next(a, &x), KILN_STATUS_OK, "all 12 handed out");
    kiln_clear_error();
    kx_loader_free(a), kx_loader_free(b);
    /* a stop mid-run, before anything is taken */
    kx_loader_free(kx_loader_start(f, &fmt, 2, 16, 1, 9, 0, 50));
    /* a mask that breaks after the scan: the thread's error, with its file, comes back */
    snprintf(p, sizeof p, "%s", f->items[f->train[0]].mask);
    FILE *w = fopen(p, "wb");
    fputs("not a png", w);
    fclose(w);
    kx_loader *c = kx_loader_start(f, &fmt, 6, 16, 1, 9, 0, 1);
    cr_assert(c);
    cr_expect_neq(kx_loader_next(c, &x), KILN_STATUS_OK);
    cr_expect(strstr(kiln_last_error(), p), "the error names the file: %s", kiln_last_error());
    kiln_clear_error();
    kx_loader_free(c);
    kx_folder_free(f);
    kt_run_dir_remove(d);
}

KT_TEST(ex_folder_data, masks_decode_binary_index_and_palette) {
    kx_mask_format bin = {.kind = KX_MASK_BINARY, .nclasses = 2}, idx = {.kind = KX_MASK_INDEX, .nclasses = 7};
    uint8_t lab[4];
    const uint8_t gray[4] = {0, 3, 6, 255}, rgb[12] = {0, 9, 0, 0, /*G*/ 0, 0, 0, 0, /*B*/ 0, 0, 0, 1};
    cr_assert_eq(kx_mask_decode(&bin, rgb, 3, 2, 2, lab, "m.png"), KILN_STATUS_OK);
    cr_expect_arr_eq(lab, ((uint8_t[]){0, 1, 0, 1}), 4, "any nonzero channel is a car");
    cr_expect_neq(kx_mask_decode(&idx, gray, 1, 2, 2, lab, "m.png"), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_FORMAT, "mask 'm.png': pixel x=1 y=1 holds 255, not a class index 0..6");
    cr_assert_eq(kx_mask_decode(&idx, gray, 1, 1, 3, lab, "m.png"), KILN_STATUS_OK);
    cr_expect_arr_eq(lab, ((uint8_t[]){0, 3, 6}), 3);
    cr_expect_neq(kx_mask_decode(&idx, rgb, 3, 2, 2, lab, "c.png"), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_FORMAT, "is in colour (pixel x=1 y=0 is [9, 0, 0])");

    char *d = kt_run_dir("palette"), p[1024];
    snprintf(p, sizeof p, "%s/pal.json", d);
    const struct { const char *json, *says; } bad[] = {
        {"[1, 2", "not valid JSON"},
        {"{\"a\": 1}", "expected a JSON array of 1..7 colours"},
        {"[[0,0,0],[1,2]]", "entry 1 (class 1) is not [r, g, b]"},
        {"[[0,0,256]]", "entry 0 (class 0) is not [r, g, b]"},
        {"[[0,0,0],{\"name\":\"x\",\"color\":[0,0,0]}]", "entries 0 and 1 have the same colour [0, 0, 0]"},
        {"[[0,0,0],[1,1,1],[2,2,2],[3,3,3],[4,4,4],[5,5,5],[6,6,6],[7,7,7]]", "1..7 colours"},
        {"[{\"name\": 3, \"color\": [1,2,3]}]", "\"name\" is not a string"},
    };
    kx_mask_format pal;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        FILE *f = fopen(p, "w");
        fputs(bad[i].json, f);
        fclose(f);
        cr_expect_neq(kx_palette_read(p, 7, &pal), KILN_STATUS_OK, "%s", bad[i].json);
        cr_expect(strstr(kiln_last_error(), bad[i].says) && strstr(kiln_last_error(), "pal.json"),
                  "%s: '%s' does not say '%s'", bad[i].json, kiln_last_error(), bad[i].says);
        kiln_clear_error();
    }
    FILE *f = fopen(p, "w");
    fputs("[{\"name\": \"ground\", \"color\": [150, 130, 90]}, [0, 9, 1], {\"colour\": [0, 0, 0]}]", f);
    fclose(f);
    cr_assert_eq(kx_palette_read(p, 7, &pal), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(pal.ncolours, 3);
    cr_expect_str_eq(pal.name[0], "ground");
    cr_expect_str_eq(pal.name[1], "class 1");
    const uint8_t px[9] = {150, 0, 0, /*G*/ 130, 9, 0, /*B*/ 90, 1, 0};
    cr_assert_eq(kx_mask_decode(&pal, px, 3, 1, 3, lab, "c.png"), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_arr_eq(lab, ((uint8_t[]){0, 1, 2}), 3);
    cr_expect_neq(kx_mask_decode(&pal, rgb, 3, 2, 2, lab, "c.png"), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_FORMAT, "mask 'c.png': pixel x=1 y=0 is [9, 0, 0], a colour the palette does not have");
    kt_run_dir_remove(d);
}

/* What a user meets: each error names the file and the fix. */
KT_TEST(ex_folder_data, folder_errors_name_the_file) {
    char *d = kt_run_dir("folder"), p[1024], q[1024];
    kx_folder *f = NULL;
    make_folder(d, 4, 20, 20);
    snprintf(p, sizeof p, "%s/masks", d);
    snprintf(q, sizeof q, "%s/masks.away", d);
    cr_assert_eq(rename(p, q), 0);
    cr_expect_neq(kx_folder_open(d, 0.2, 0, 16, &f), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_IO, "has no masks/ directory: it should hold images/NAME.png|jpg and masks/NAME.png");
    cr_assert_eq(rename(q, p), 0);
    /* an image without its mask */
    snprintf(p, sizeof p, "%s/masks/scene002.png", d);
    snprintf(q, sizeof q, "%s/scene002.png", d);
    cr_assert_eq(rename(p, q), 0);
    cr_expect_neq(kx_folder_open(d, 0.2, 0, 16, &f), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_FORMAT, "images/scene002.png' has no mask (expected ");
    /* a mask without its image */
    cr_assert_eq(rename(q, p), 0);
    snprintf(p, sizeof p, "%s/images/scene001.png", d);
    snprintf(q, sizeof q, "%s/scene001.png", d);
    cr_assert_eq(rename(p, q), 0);
    cr_expect_neq(kx_folder_open(d, 0.2, 0, 16, &f), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_FORMAT, "masks/scene001.png' has no image");
    cr_assert_eq(rename(q, p), 0);
    /* a mask of another size */
    kiln_scope *s = kiln_scope_begin();
    snprintf(p, sizeof p, "%s/masks/scene003.png", d);
    cr_assert_eq(kiln_image_write(p, kiln_tensor_zeros(3, (int64_t[]){1, 20, 21}, KILN_U8, KILN_CPU), 0), KILN_STATUS_OK);
    cr_expect_neq(kx_folder_open(d, 0.2, 0, 16, &f), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_FORMAT, "masks/scene003.png' is 21x20 but its image");
    cr_assert_eq(kiln_image_write(p, kiln_tensor_zeros(3, (int64_t[]){1, 20, 20}, KILN_U8, KILN_CPU), 0), KILN_STATUS_OK);
    kiln_scope_end(s);
    /* too small for the crop, a JPEG mask, a stray file, too few to split */
    cr_expect_neq(kx_folder_open(d, 0.2, 0, 24, &f), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "is 20x20, smaller than the training crop --size 24");
    cr_expect_neq(kx_folder_open(d, 0.9, 0, 16, &f), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "has 4 image(s): holding out 4 (--val-fraction 0.9) leaves none");
    snprintf(p, sizeof p, "%s/masks/scene000.jpg", d);
    kt_run_touch(d, "masks/scene000.jpg");
    cr_expect_neq(kx_folder_open(d, 0.2, 0, 16, &f), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_FORMAT, "masks/scene000.jpg' is not a .png: masks must be PNG files");
    remove(p);
    kt_run_touch(d, "images/notes.txt");
    cr_expect_neq(kx_folder_open(d, 0.2, 0, 16, &f), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_FORMAT, "images/notes.txt' is not .png, .jpg or .jpeg");
    snprintf(p, sizeof p, "%s/images/notes.txt", d);
    remove(p);
    kt_run_touch(d, "images/.DS_Store"); /* hidden files are skipped */
    cr_assert_eq(kx_folder_open(d, 0.2, 0, 16, &f), KILN_STATUS_OK, "%s", kiln_last_error());
    kx_folder_free(f);
    cr_expect_neq(kx_folder_open("/nonexistent-kiln", 0.2, 0, 16, &f), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_IO, "--data '/nonexistent-kiln' is not a directory");
    kt_run_dir_remove(d);
}

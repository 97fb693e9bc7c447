/* car_mask: the problem kiln was born from. A U-Net-16 with one output channel learns
 * a per-pixel car mask from synthetic aerial scenes (sigmoid + binary cross-entropy,
 * Adam) and reports binary pixel accuracy, IoU and Dice on held-out scenes each epoch.
 *
 *   car_mask [--epochs 16 --size 64 --batch 8 --out out/car_mask]    train (the demo's run);
 *                                  writes a grid, a plot, a checkpoint and model.safetensors
 *                                  (the weights alone, for torch) into --out
 *   car_mask --epochs 30 --resume out/car_mask/car_mask.safetensors  continue that run exactly
 *   car_mask --data DIR [--val-fraction 0.2]    train on your own images/ and masks/ (see the README)
 *   car_mask --predict in.png --checkpoint out/car_mask/model.safetensors   writes out/car_mask/mask.png
 *   car_mask --predict DIR --checkpoint ...     one OUT/NAME.png per image of DIR, any size (tiled)
 *   car_mask --bench-steps 20 --batch 8 --size 128 --json            median training-step time
 */
#include <kiln.h>
#include "kx.h"
#include "models/unet.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef struct {
    kx_common_args c;
    const char *loss;  /* "bce_with_logits" (stable: the sigmoid is fused into the loss) or "bce" */
    double lr, lr_decay;
    int train_scenes, heldout_scenes;
    const char *resume, *predict, *checkpoint;
    int bench_steps;
    int64_t max_pixels; /* --predict: the largest image it segments */
    int tile;           /* --predict: the tile side */
    double val_fraction; /* --data: the share held out */
    int crops;           /* --data: random crops of each image an epoch (0: enough to cover it) */
    kx_folder *folder;  /* --data: the images and masks, split */
} options;

/* Per-epoch results; a checkpoint carries them so a resumed run reports its whole history. */
enum { MAX_EPOCHS = 1000, NHIST = 5 };
static const char *const hist_keys[NHIST] = {"train_loss", "heldout_loss", "heldout_binary_pixel_accuracy",
                                             "heldout_iou", "heldout_dice"};
typedef struct {
    int n;
    double v[NHIST][MAX_EPOCHS];
} history;

static int fail(const char *what) {
    fprintf(stderr, "car_mask: %s%s%s\n", what, *kiln_last_error() ? ": " : "", kiln_last_error());
    kiln_shutdown();
    return 1;
}

/* ---- the loss ----------------------------------------------------------------------------
 * Both choices compute the same quantity. bce_with_logits takes the raw network output and
 * folds the sigmoid into the loss (max(x,0) - x*y + log1p(e^-|x|)), which never takes the log
 * of a rounded-to-0 probability; bce applies the sigmoid first, then kiln_bce, whose logs
 * are clamped at -100 as in PyTorch. */
static kiln_tensor *mask_loss(const options *o, kiln_tensor *logits, kiln_tensor *masks) {
    if (strcmp(o->loss, "bce") == 0) return kiln_bce(kiln_sigmoid(logits), masks, NULL, KILN_REDUCTION_MEAN);
    return kiln_bce_with_logits(logits, masks, NULL, NULL, KILN_REDUCTION_MEAN);
}

/* Scenes i0..i0+n-1 of a CPU dataset (N,C,H,W) as one batch on dev; `order` (may be NULL)
 * picks which scene goes where, so an epoch can visit them shuffled. */
static kiln_tensor *gather(kiln_tensor *all, const int *order, int i0, int n, kiln_device dev) {
    int64_t shape[4] = {n, kiln_tensor_size(all, 1), kiln_tensor_size(all, 2), kiln_tensor_size(all, 3)};
    size_t per = (size_t)(shape[1] * shape[2] * shape[3]);
    float *src = kiln_tensor_data(all), *buf = malloc((size_t)n * per * sizeof *buf);
    if (!buf) return kiln_set_error(KILN_STATUS_OOM, "out of memory for a batch of %d", n), NULL;
    for (int k = 0; k < n; k++) memcpy(buf + k * per, src + (size_t)(order ? order[i0 + k] : i0 + k) * per, per * sizeof *buf);
    kiln_tensor *t = kiln_tensor_from_host(buf, 4, shape, KILN_F32, dev);
    free(buf);
    return t;
}

/* Held-out loss and binary metrics, in eval mode (batch norm uses its running statistics)
 * and with no tape: nothing here is differentiated. */
static kiln_status evaluate(const options *o, kiln_module *net, kiln_tensor *images, kiln_tensor *masks, double *loss,
                            kiln_binary_metrics *bm) {
    int n = (int)kiln_tensor_size(images, 0);
    kiln_binary_metrics_reset(bm);
    kiln_module_train(net, false);
    kiln_no_grad_begin();
    kiln_status st = KILN_STATUS_OK;
    double sum = 0;
    for (int i = 0; i < n && !st; i += o->c.batch) {
        int b = n - i < o->c.batch ? n - i : o->c.batch;
        kiln_scope *s = kiln_scope_begin();
        kiln_tensor *y = gather(masks, NULL, i, b, o->c.device);
        kiln_tensor *logits = kiln_module_forward(net, gather(images, NULL, i, b, o->c.device));
        kiln_tensor *l = mask_loss(o, logits, y);
        /* the metrics take the raw logits: a pixel is a car when sigmoid(logit) > 0.5 */
        st = l ? kiln_binary_metrics_update(bm, logits, y) : kiln_last_status();
        sum += kiln_tensor_item(l) * b;
        kiln_scope_end(s);
    }
    kiln_no_grad_end();
    kiln_module_train(net, true);
    *loss = sum / n;
    return st;
}

/* ---- your own data: held-out metrics over whole images, tile by tile ---------------------
 * The held-out images are segmented exactly as --predict does (tiles of the training
 * size, overlapping by a quarter, blended), and the loss and metrics are taken over
 * every pixel of them, band by band as the tiles finish. */

typedef struct {
    const options *o;
    kiln_module *net;
    const uint8_t *labels; /* the image's H x W mask */
    kiln_binary_metrics *bm;
    double loss_sum;       /* the loss summed over pixels */
    uint8_t *mask;         /* --predict: the H x W output, 255 on cars */
} tiles_ctx;

static kiln_tensor *tile_forward(void *ctx, kiln_tensor *x) { return kiln_module_forward(((tiles_ctx *)ctx)->net, x); }

static kiln_status heldout_rows(void *ctx, int y0, int nrows, int W, const float *scores, size_t plane) {
    (void)plane; /* one channel */
    tiles_ctx *t = ctx;
    size_t n = (size_t)nrows * W;
    float *y = malloc(n * sizeof *y);
    if (!y) return kiln_set_error(KILN_STATUS_OOM, "out of memory");
    for (size_t i = 0; i < n; i++) y[i] = t->labels[(size_t)y0 * W + i] ? 1.0f : 0.0f;
    kiln_scope *s = kiln_scope_begin();
    int64_t shape[4] = {1, 1, nrows, W};
    kiln_tensor *logits = kiln_tensor_from_host(scores, 4, shape, KILN_F32, t->o->c.device);
    kiln_tensor *target = kiln_tensor_from_host(y, 4, shape, KILN_F32, t->o->c.device);
    kiln_tensor *l = mask_loss(t->o, logits, target);
    kiln_status st = l ? kiln_binary_metrics_update(t->bm, logits, target) : kiln_last_status();
    if (!st) t->loss_sum += kiln_tensor_item(l) * (double)n;
    kiln_scope_end(s);
    free(y);
    return st;
}

static kiln_status evaluate_folder(const options *o, kiln_module *net, const kx_mask_format *fmt, double *loss,
                                   kiln_binary_metrics *bm) {
    const kx_folder *f = o->folder;
    tiles_ctx t = {.o = o, .net = net, .bm = bm};
    double pixels = 0;
    kiln_binary_metrics_reset(bm);
    kiln_module_train(net, false);
    kiln_no_grad_begin();
    kiln_status st = KILN_STATUS_OK;
    for (int64_t k = 0; k < f->nheldout && !st; k++) {
        const kx_folder_item *it = &f->items[f->heldout[k]];
        uint8_t *rgb = NULL, *lab = NULL;
        st = kx_folder_read(f, f->heldout[k], fmt, &rgb, &lab);
        t.labels = lab;
        if (!st) st = kx_tiles_run(rgb, it->h, it->w, o->c.size, o->c.size / 4, 8, 1, o->c.device, tile_forward, &t,
                                   heldout_rows, &t);
        pixels += (double)it->h * it->w;
        free(rgb);
        free(lab);
    }
    kiln_no_grad_end();
    kiln_module_train(net, true);
    *loss = t.loss_sum / pixels;
    return st;
}

/* The first n held-out images' centre crops of the training size, for the picture grid. */
static kiln_status heldout_crops(const options *o, const kx_mask_format *fmt, int n, kiln_tensor **images,
                                 kiln_tensor **masks) {
    const kx_folder *f = o->folder;
    int S = o->c.size;
    size_t SS = (size_t)S * S;
    n = f->nheldout < n ? (int)f->nheldout : n;
    kx_batch b = {.n = n, .size = S, .images = malloc((size_t)n * 3 * SS * sizeof(float)), .labels = malloc((size_t)n * SS)};
    uint8_t *crop = malloc(3 * SS);
    kiln_status st = b.images && b.labels && crop ? KILN_STATUS_OK : kiln_set_error(KILN_STATUS_OOM, "out of memory");
    for (int k = 0; k < n && !st; k++) {
        const kx_folder_item *it = &f->items[f->heldout[k]];
        uint8_t *rgb = NULL, *lab = NULL;
        st = kx_folder_read(f, f->heldout[k], fmt, &rgb, &lab);
        kx_augment a = {.y0 = (it->h - S) / 2, .x0 = (it->w - S) / 2};
        if (!st) {
            kx_augment_apply(&a, rgb, 3, it->h, it->w, S, crop);
            kx_augment_apply(&a, lab, 1, it->h, it->w, S, b.labels + k * SS);
            for (size_t i = 0; i < 3 * SS; i++) b.images[k * 3 * SS + i] = crop[i] / 255.0f;
        }
        free(rgb);
        free(lab);
    }
    if (!st && !(*images = kx_batch_images(&b, KILN_CPU))) st = kiln_last_status();
    if (!st && !(*masks = kx_batch_masks(&b, KILN_CPU))) st = kiln_last_status();
    free(b.images), free(b.labels), free(crop);
    return st;
}

/* ---- checkpoints: the model, Adam's state and the history, in one safetensors file ---- */

/* The options a resumed run must share with the run it continues, as metadata strings. */
enum { NRUN = 7 };
static void run_options(const options *o, char v[NRUN][40]) {
    snprintf(v[0], 40, "%s", o->loss);
    snprintf(v[1], 40, "%d", o->c.size);
    snprintf(v[2], 40, "%d", o->c.batch);
    snprintf(v[3], 40, "%lld", (long long)o->c.seed);
    snprintf(v[4], 40, "%d", o->train_scenes);
    snprintf(v[5], 40, "%.17g", o->lr);
    snprintf(v[6], 40, "%.17g", o->lr_decay);
}
static const char *const run_keys[NRUN] = {"loss", "size", "batch", "seed", "train-scenes", "lr", "lr-decay"};

static kiln_status save_checkpoint(const char *path, const options *o, kiln_module *net, kiln_optimizer *opt,
                                   const history *h) {
    static char keys[NRUN + NHIST][64];
    char epoch[32], run[NRUN][40], *vals[NHIST] = {0};
    kiln_metadata_entry meta[1 + NRUN + NHIST];
    int nmeta = 0;
    kiln_status st = KILN_STATUS_OK;
    snprintf(epoch, sizeof epoch, "%d", h->n);
    meta[nmeta++] = (kiln_metadata_entry){"car_mask.epoch", epoch};
    run_options(o, run);
    for (int k = 0; k < NRUN; k++) {
        snprintf(keys[k], sizeof keys[k], "car_mask.%s", run_keys[k]);
        meta[nmeta++] = (kiln_metadata_entry){keys[k], run[k]};
    }
    for (int k = 0; k < NHIST && !st; k++) { /* "%.17g" reads back as the same double */
        if (!(vals[k] = calloc((size_t)h->n + 1, 26))) st = kiln_set_error(KILN_STATUS_OOM, "out of memory");
        for (int e = 0; e < h->n && !st; e++) sprintf(vals[k] + strlen(vals[k]), "%s%.17g", e ? "," : "", h->v[k][e]);
        snprintf(keys[NRUN + k], sizeof keys[NRUN + k], "car_mask.%s", hist_keys[k]);
        meta[nmeta++] = (kiln_metadata_entry){keys[NRUN + k], vals[k]};
    }
    if (!st) st = kiln_checkpoint_save(path, net, opt, meta, nmeta);
    for (int k = 0; k < NHIST; k++) free(vals[k]);
    return st;
}

/* Restores a run saved by save_checkpoint: refuses one made with other data or loss, since
 * continuing it would not be the same run. */
static kiln_status load_checkpoint(const char *path, const options *o, kiln_module *net, kiln_optimizer *opt,
                                   history *h) {
    kiln_safetensors *f = kiln_safetensors_open(path);
    if (!f) return kiln_last_status();
    kiln_status st = KILN_STATUS_OK;
    const char *ep = kiln_safetensors_metadata_get(f, "car_mask.epoch");
    char want[NRUN][40];
    run_options(o, want);
    if (!ep)
        st = kiln_set_error(KILN_STATUS_FORMAT, "--resume %s: not a car_mask checkpoint (no car_mask.epoch)", path);
    for (int k = 0; k < NRUN && !st; k++) {
        char key[64];
        snprintf(key, sizeof key, "car_mask.%s", run_keys[k]);
        const char *got = kiln_safetensors_metadata_get(f, key);
        if (!got || strcmp(got, want[k]) != 0)
            st = kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--resume %s: the run used --%s %s, this one --%s %s; "
                                "give the same options to continue it", path, run_keys[k], got ? got : "?",
                                run_keys[k], want[k]);
    }
    /* The epoch count: digits only (atoi would read "x" as 0 and restart the run). */
    h->n = 0;
    if (!st) {
        char *end;
        errno = 0;
        long n = ep[0] >= '0' && ep[0] <= '9' ? strtol(ep, &end, 10) : -1;
        if (n < 0 || *end || errno == ERANGE || n > MAX_EPOCHS)
            st = kiln_set_error(KILN_STATUS_FORMAT, "--resume %s: its car_mask.epoch is '%s', not an epoch count in "
                                "0..%d (a damaged checkpoint?)", path, ep, MAX_EPOCHS);
        else
            h->n = (int)n;
    }
    /* Each history is exactly h->n numbers separated by commas. */
    for (int k = 0; k < NHIST && !st; k++) {
        char key[64];
        snprintf(key, sizeof key, "car_mask.%s", hist_keys[k]);
        const char *p = kiln_safetensors_metadata_get(f, key);
        for (int e = 0; e < h->n && !st; e++) {
            char *end = NULL;
            h->v[k][e] = p && *p != ' ' ? strtod(p, &end) : NAN;
            if (!p || !end || end == p || *end != (e + 1 < h->n ? ',' : '\0'))
                st = kiln_set_error(KILN_STATUS_FORMAT, "--resume %s: history '%s' is not %d comma-separated numbers "
                                    "(a damaged checkpoint?)", path, key, h->n);
            else
                p = end + 1;
        }
        if (!st && h->n == 0 && p && *p)
            st = kiln_set_error(KILN_STATUS_FORMAT, "--resume %s: history '%s' holds values for 0 epochs", path, key);
    }
    kiln_safetensors_close(f);
    if (!st) st = kiln_checkpoint_load(path, net, opt, true); /* weights, Adam state, RNG position */
    return st;
}

/* ---- pictures ------------------------------------------------------------------------------- */

static kiln_status write_pictures(const options *o, kiln_module *net, kiln_tensor *images, kiln_tensor *masks,
                                  const history *h, const char *grid_path, const char *plot_path) {
    int rows = (int)kiln_tensor_size(images, 0) < 4 ? (int)kiln_tensor_size(images, 0) : 4;
    kiln_scope *s = kiln_scope_begin();
    kiln_no_grad_begin();
    kiln_module_train(net, false);
    kiln_tensor *x = gather(images, NULL, 0, rows, o->c.device);
    kiln_tensor *cols[3] = {x, gather(masks, NULL, 0, rows, o->c.device), kiln_sigmoid(kiln_module_forward(net, x))};
    const char *titles[3] = {"input", "truth", "prediction"};
    int scale = o->c.size >= 128 ? 2 : o->c.size >= 64 ? 3 : 4;
    kiln_status st = kx_grid_save_png(grid_path, 3, cols, titles, rows, scale);
    kiln_module_train(net, true);
    kiln_no_grad_end();
    kiln_scope_end(s);
    /* the losses span decades (log axis); the metrics live in 0..1 (linear axis) */
    kx_series series[NHIST];
    for (int k = 0; k < NHIST; k++) series[k] = (kx_series){hist_keys[k], h->v[k], h->n};
    if (!st) st = kx_plot_training_png(plot_path, "car_mask: losses and held-out metrics", "epoch", 2, series,
                                       NHIST - 2, series + 2, 640, 480);
    return st;
}

/* ---- inference: an image or a folder of them, any size, tile by tile ----------------------- */

static kiln_status mask_rows(void *ctx, int y0, int nrows, int W, const float *scores, size_t plane) {
    (void)plane;
    uint8_t *m = ((tiles_ctx *)ctx)->mask + (size_t)y0 * W;
    /* a car where sigmoid(logit) > 0.5, i.e. logit > 0: white on black */
    for (size_t i = 0; i < (size_t)nrows * W; i++) m[i] = scores[i] > 0 ? 255 : 0;
    return KILN_STATUS_OK;
}

/* Segments one image into a mask PNG at out_path; its size in *H, *W. The image is held
 * as bytes (3 a pixel) and the mask (1 a pixel); the network sees one tile at a time. */
static kiln_status check_size(const options *o, const char *in, int64_t *hp, int64_t *wp) {
    int64_t h = 0, w = 0;
    kiln_status st = kiln_image_read_size(in, NULL, &h, &w);
    if (!st && h * w > o->max_pixels)
        st = kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "'%s' is %lldx%lld = %lld pixels, above --max-pixels %lld; "
                            "raise --max-pixels (--predict holds the image and its mask, 4 bytes a pixel, and runs "
                            "the U-Net one --tile at a time)", in, (long long)w, (long long)h, (long long)(h * w),
                            (long long)o->max_pixels);
    if (hp) *hp = h, *wp = w;
    return st;
}

static kiln_status predict_one(const options *o, kiln_module *net, const char *in, const char *out_path, int *H, int *W) {
    int64_t h = 0, w = 0;
    kiln_status st = check_size(o, in, &h, &w);
    if (st) return st;
    *H = (int)h, *W = (int)w;
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *img = kiln_image_read(in, 3, KILN_U8, KILN_CPU);
    tiles_ctx t = {.o = o, .net = net, .mask = malloc((size_t)h * w)};
    if (!img) st = kiln_last_status();
    else if (!t.mask) st = kiln_set_error(KILN_STATUS_OOM, "out of memory for the mask of '%s'", in);
    if (!st) st = kx_tiles_run(kiln_tensor_data(img), *H, *W, o->tile, o->tile / 4, 8, 1, o->c.device, tile_forward, &t,
                               mask_rows, &t);
    kiln_scope_end(s);
    if (!st) st = kx_png_write_u8(out_path, t.mask, 1, *H, *W);
    free(t.mask);
    return st;
}

/* --predict through kx_predict_run: the size check, the net, one image. */
static kiln_status predict_check(void *ctx, const char *path) { return check_size(ctx, path, NULL, NULL); }

static kiln_status predict_load(void *ctx, kiln_module **net) {
    const options *o = ctx;
    *net = unet_create(3, 1, 16, KILN_F32);
    kiln_status st = *net ? kiln_module_to(*net, o->c.device) : kiln_last_status();
    if (!st) st = kiln_checkpoint_load(o->checkpoint, *net, NULL, true);
    if (!st) kiln_module_train(*net, false); /* batch norm with its running statistics */
    return st;
}

static kiln_status predict_image(void *ctx, kiln_module *net, const char *in, const char *out, int *H, int *W) {
    return predict_one(ctx, net, in, out, H, W);
}

/* Writes OUT/mask.png for an image, or OUT/NAME.png for each image of a directory (a
 * fixed name: --out is a directory in every mode). */
static kiln_status predict(const options *o) {
    kx_predict_job job = {.program = "car_mask", .input = o->predict, .out_dir = o->c.out, .one_name = "mask.png",
                          .one_key = "mask", .dir_key = "masks_dir", .tile = o->tile, .json = o->c.json,
                          .ctx = (void *)o, .check = predict_check, .load = predict_load, .one = predict_image};
    return kx_predict_run(&job);
}

/* ---- timing training steps (the benchmarks run this) ---------------------------------------- */

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One training step; its loss in *loss_value. A NaN or Inf loss poisons every weight it
 * reaches, so it is an error naming where it happened (epoch, step of steps). */
static kiln_status train_step(const options *o, kiln_module *net, kiln_optimizer *opt, kiln_tensor *x, kiln_tensor *y,
                              double *loss_value, int epoch, int64_t step, int64_t steps, double lr) {
    kiln_tensor *loss = mask_loss(o, kiln_module_forward(net, x), y);
    if (kx_train_step(opt, loss, loss_value) != KILN_STATUS_OK)
        return kx_error_prefix("epoch %d, step %lld of %lld", epoch, (long long)step, (long long)steps);
    return kx_check_loss(*loss_value, epoch, step, steps, lr);
}

static kiln_status bench(const options *o, kiln_module *net, kiln_optimizer *opt) {
    double last = NAN, t0 = kx_now_seconds(), *t = malloc((size_t)(o->bench_steps + 2) * sizeof *t);
    if (!t) return kiln_set_error(KILN_STATUS_OOM, "out of memory");
    kiln_tensor *images, *masks;
    kiln_status st = kx_scene_batch(KX_SCENE_TRAIN, (uint64_t)o->c.seed, 0, o->c.batch, o->c.size, o->c.size,
                                    o->c.device, &images, &masks, NULL);
    for (int i = 0; i < o->bench_steps + 2 && !st; i++) { /* two warm-up steps fill the caches and pools */
        double start = kx_now_seconds();
        kiln_scope *s = kiln_scope_begin();
        st = train_step(o, net, opt, images, masks, &last, 1, i + 1, o->bench_steps + 2, o->lr);
        kiln_scope_end(s);
        if (!st) st = kiln_synchronize(o->c.device);
        t[i] = kx_now_seconds() - start;
    }
    if (!st) {
        double wall = kx_now_seconds() - t0;
        int k = o->bench_steps;
        qsort(t + 2, (size_t)k, sizeof *t, compare_double);
        double median = k % 2 ? t[2 + k / 2] : 0.5 * (t[2 + k / 2 - 1] + t[2 + k / 2]);
        char dev[32];
        kx_json j;
        kx_json_begin(&j);
        kx_json_string(&j, "program", "car_mask");
        kx_json_string(&j, "mode", "bench");
        kx_json_string(&j, "device", kiln_device_name(o->c.device, dev, sizeof dev));
        kx_json_int(&j, "threads", kiln_get_num_threads());
        kx_json_string(&j, "loss", o->loss);
        kx_json_int(&j, "batch", o->c.batch);
        kx_json_int(&j, "size", o->c.size);
        kx_json_int(&j, "steps", k);
        kx_json_number(&j, "median_step_s", median);
        kx_json_number(&j, "min_step_s", t[2]);
        kx_json_number(&j, "max_step_s", t[2 + k - 1]);
        kx_json_number(&j, "images_per_s", o->c.batch / median);
        kx_json_number(&j, "last_loss", last);
        kx_json_number(&j, "wall_s", wall);
        kx_json_print(&j, stdout);
    }
    free(t);
    return st;
}

/* ---- training --------------------------------------------------------------------------------- */

static kiln_status train(options *o, kiln_module *net, kiln_optimizer *opt) {
    kiln_device dev = o->c.device;
    double t_start = kx_now_seconds();
    char devname[32], ckpt[4096], grid[4096], plot[4096], weights[4096];
    kiln_device_name(dev, devname, sizeof devname);
    kiln_tensor *train_x, *train_y, *test_x, *test_y;
    const kx_folder *f = o->folder;
    const kx_mask_format fmt = {.kind = KX_MASK_BINARY, .nclasses = 2};
    kx_loader *loader = NULL;
    /* per epoch; a last partial batch is dropped */
    int crops = f ? (o->crops > 0 ? o->crops : kx_folder_crops(f, o->c.size)) : 1;
    int steps = (int)((f ? f->ntrain * crops : o->train_scenes) / o->c.batch);
    int *order = malloc((size_t)o->train_scenes * sizeof *order);
    train_x = train_y = test_x = test_y = NULL;
    kiln_binary_metrics *bm = kiln_binary_metrics_create(0.5, KILN_SCORES_LOGITS);
    static history h;
    kx_train_log *tlog = NULL;
    kiln_status st = order && bm ? KILN_STATUS_OK : kiln_set_error(KILN_STATUS_OOM, "out of memory");
    if (!st) st = kx_out_dir(o->c.out);
    if (!st) st = kx_path_join(ckpt, sizeof ckpt, o->c.out, "car_mask.safetensors");
    if (!st) st = kx_path_join(grid, sizeof grid, o->c.out, "car_mask_grid.png");
    if (!st) st = kx_path_join(plot, sizeof plot, o->c.out, "car_mask_plot.png");
    /* Data: scenes rendered once on the CPU; train and held-out come from disjoint seeds.
     * Or the user's folder: decoded batch by batch on the loader thread. */
    if (!st && !f) st = kx_scene_batch(KX_SCENE_TRAIN, (uint64_t)o->c.seed, 0, o->train_scenes, o->c.size, o->c.size,
                                 KILN_CPU, &train_x, &train_y, NULL);
    if (!st && !f) st = kx_scene_batch(KX_SCENE_HELDOUT, (uint64_t)o->c.seed, 0, o->heldout_scenes, o->c.size, o->c.size,
                                 KILN_CPU, &test_x, &test_y, NULL);
    if (!st && !o->resume) {
        /* Cars cover a few percent of the pixels. Starting the output bias at the prior's
         * logit, log(p / (1 - p)), skips the first hundred steps a network otherwise
         * spends learning "mostly not a car" (as in the focal-loss paper). */
        double p = 0;
        if (!f) p = kiln_tensor_item(kiln_mean_all(train_y));
        for (int64_t k = 0, n = f && f->ntrain < 16 ? f->ntrain : 16; f && k < n && !st; k++) {
            uint8_t *lab = NULL; /* the prior from (up to) 16 training masks */
            const kx_folder_item *it = &f->items[f->train[k]];
            st = kx_folder_read(f, f->train[k], &fmt, NULL, &lab);
            size_t cars = 0, npx = (size_t)it->h * it->w;
            for (size_t i = 0; !st && i < npx; i++) cars += lab[i];
            if (!st) p += (double)cars / (double)npx / (double)n;
            free(lab);
        }
        p = p > 1e-4 ? p : 1e-4;
        if (!st) st = kiln_init_constant(kiln_module_get(net, "head.bias"), log(p / (1 - p)));
    }
    if (!st && o->resume) st = load_checkpoint(o->resume, o, net, opt, &h);
    /* OUT/steps.csv and OUT/epochs.csv (a resumed run keeps the rows of its epochs) and,
     * with --log-dir, TensorBoard's events */
    if (!st && !(tlog = kx_train_log_open(o->c.out, o->c.log_dir, NHIST - 2, hist_keys + 2, h.n)))
        st = kiln_last_status();
    if (!st && f && !(loader = kx_loader_start(f, &fmt, o->c.batch, o->c.size, crops, (uint64_t)o->c.seed, h.n, o->c.epochs)))
        st = kiln_last_status();
    if (!st && f) st = heldout_crops(o, &fmt, 4, &test_x, &test_y);
    if (st) goto done;
    if (!o->c.json && f)
        printf("car_mask: U-Net-16 (%lld parameters) on %s, %s: %lld training + %lld held-out images, crops of %dx%d, "
               "batch %d, %s, Adam lr %g decayed by %g an epoch%s\n", (long long)kiln_module_parameter_count(net),
               devname, f->dir, (long long)f->ntrain, (long long)f->nheldout, o->c.size, o->c.size, o->c.batch, o->loss,
               o->lr, o->lr_decay, o->resume ? " (resumed)" : "");
    if (!o->c.json && !f)
        printf("car_mask: U-Net-16 (%lld parameters) on %s, %d+%d scenes of %dx%d, batch %d, %s, Adam lr %g decayed by %g an epoch%s\n",
               (long long)kiln_module_parameter_count(net), devname, o->train_scenes, o->heldout_scenes, o->c.size,
               o->c.size, o->c.batch, o->loss, o->lr, o->lr_decay, o->resume ? " (resumed)" : "");
    int first_epoch = h.n;
    kx_progress p;
    kx_progress_init(&p, stderr, o->c.json ? KX_PROGRESS_QUIET : KX_PROGRESS_AUTO, "train",
                     (int64_t)(o->c.epochs > first_epoch ? o->c.epochs - first_epoch : 0) * steps);
    kx_progress_set_images(&p, o->c.batch);
    for (int epoch = first_epoch; epoch < o->c.epochs && !st; epoch++) {
        kx_epoch_shuffle(order, o->train_scenes, (uint64_t)o->c.seed, epoch);
        /* The rate shrinks each epoch (PyTorch's ExponentialLR stepped per epoch): large
         * steps early, small ones to settle. A function of the epoch alone, so a resumed
         * run uses the same rates. */
        kiln_schedule sched = kiln_schedule_exponential(o->lr, o->lr_decay);
        st = kiln_optimizer_set_lr(opt, kiln_schedule_lr(&sched, epoch));
        double sum = 0, l = NAN;
        for (int i = 0; i < steps && !st; i++) {
            /* One step: every tensor made inside the scope (the batch, activations, the tape)
             * is freed at its end. */
            double t_step = kx_now_seconds();
            kiln_scope *s = kiln_scope_begin();
            kiln_tensor *x, *y;
            const kx_batch *b = NULL;
            if (f) { /* made on the loader thread while the last step trained */
                st = kx_loader_next(loader, &b);
                x = b ? kx_batch_images(b, dev) : NULL, y = b ? kx_batch_masks(b, dev) : NULL;
            } else {
                x = gather(train_x, order, i * o->c.batch, o->c.batch, dev);
                y = gather(train_y, order, i * o->c.batch, o->c.batch, dev);
            }
            if (!st) st = train_step(o, net, opt, x, y, &l, epoch + 1, i + 1, steps, kiln_schedule_lr(&sched, epoch));
            kiln_scope_end(s);
            sum += l;
            /* reading the loss waited for the device, so this is the step's whole time */
            double dt = kx_now_seconds() - t_step;
            if (!st) st = kx_train_log_step(tlog, epoch + 1, (int64_t)epoch * steps + i + 1, l,
                                            kiln_schedule_lr(&sched, epoch), dt > 0 ? o->c.batch / dt : NAN);
            kx_progress_update(&p, (int64_t)(epoch - first_epoch) * steps + i + 1, l);
        }
        double test_loss = NAN;
        if (!st) st = f ? evaluate_folder(o, net, &fmt, &test_loss, bm) : evaluate(o, net, test_x, test_y, &test_loss, bm);
        if (st) break;
        double row[NHIST] = {sum / steps, test_loss, kiln_binary_metrics_pixel_accuracy(bm), kiln_binary_metrics_iou(bm),
                             kiln_binary_metrics_dice(bm)};
        for (int k = 0; k < NHIST; k++) h.v[k][h.n] = row[k];
        h.n++;
        st = kx_train_log_epoch(tlog, epoch + 1, row[0], row[1], row + 2);
        if (st) break;
        if (p.mode == KX_PROGRESS_BAR) fprintf(stderr, "\r\033[K"); /* the epoch line replaces the bar */
        if (!o->c.json)
            printf("epoch %d/%d  train loss %.4f  held-out loss %.4f  binary pixel accuracy %.4f  IoU %.4f  Dice %.4f\n",
                   epoch + 1, o->c.epochs, row[0], row[1], row[2], row[3], row[4]);
        fflush(stdout);
        /* a checkpoint each epoch: an interrupted run continues with --resume */
        st = save_checkpoint(ckpt, o, net, opt, &h);
    }
    if (st) goto done;
    kx_progress_finish(&p);
    if (h.n == 0) { /* --epochs 0: the untrained model's metrics alone */
        history none = {0};
        st = f ? evaluate_folder(o, net, &fmt, &h.v[1][0], bm) : evaluate(o, net, test_x, test_y, &h.v[1][0], bm);
        h.v[0][0] = NAN, h.v[2][0] = kiln_binary_metrics_pixel_accuracy(bm);
        h.v[3][0] = kiln_binary_metrics_iou(bm), h.v[4][0] = kiln_binary_metrics_dice(bm);
        if (!st) st = save_checkpoint(ckpt, o, net, opt, &none);
        h.n = 1;
    }
    if (!st) st = write_pictures(o, net, test_x, test_y, &h, grid, plot);
    if (!st) st = kx_export_weights(&o->c, net, weights, sizeof weights);
    if (st) goto done;
    if (!o->c.json) printf("car_mask: pictures in %s and %s, checkpoint %s, weights %s\n", grid, plot, ckpt, weights);
    if (!o->c.json) printf("car_mask: logs in %s and %s%s%s\n", kx_train_log_steps_path(tlog),
                           kx_train_log_epochs_path(tlog),
                           kx_train_log_events_path(tlog) ? ", TensorBoard events " : "",
                           kx_train_log_events_path(tlog) ? kx_train_log_events_path(tlog) : "");

    int last = h.n - 1;
    kx_json j;
    kx_json_begin(&j);
    kx_json_string(&j, "program", "car_mask");
    kx_json_string(&j, "device", devname);
    kx_json_int(&j, "threads", kiln_get_num_threads());
    kx_json_string(&j, "loss", o->loss);
    kx_json_int(&j, "epochs", o->c.epochs);
    kx_json_int(&j, "resumed_from_epoch", first_epoch);
    kx_json_int(&j, "size", o->c.size);
    kx_json_int(&j, "batch", o->c.batch);
    if (f) {
        kx_json_string(&j, "data", f->dir);
        kx_json_int(&j, "train_images", f->ntrain);
        kx_json_int(&j, "heldout_images", f->nheldout);
        kx_json_number(&j, "val_fraction", o->val_fraction);
        kx_json_int(&j, "crops_per_image", crops);
    } else {
        kx_json_int(&j, "train_scenes", o->train_scenes);
        kx_json_int(&j, "heldout_scenes", o->heldout_scenes);
    }
    kx_json_number(&j, "lr", o->lr);
    kx_json_number(&j, "lr_decay", o->lr_decay);
    kx_json_int(&j, "parameters", kiln_module_parameter_count(net));
    for (int k = 0; k < NHIST; k++) kx_json_numbers(&j, hist_keys[k], h.v[k], h.n);
    kx_json_number(&j, "binary_pixel_accuracy", h.v[2][last]);
    kx_json_number(&j, "iou", h.v[3][last]);
    kx_json_number(&j, "dice", h.v[4][last]);
    kx_json_string(&j, "grid", grid);
    kx_json_string(&j, "plot", plot);
    kx_json_string(&j, "checkpoint", ckpt);
    kx_json_string(&j, "weights", weights);
    kx_train_log_json(tlog, &j);
    kx_json_number(&j, "wall_s", kx_now_seconds() - t_start);
    kx_json_print(&j, stdout);
done:;
    kx_loader_free(loader);
    kiln_status lst = kx_train_log_close(tlog);
    if (!st) st = lst;
    free(order);
    kiln_binary_metrics_free(bm);
    return st;
}

int main(int argc, char **argv) {
    kiln_prefer_passive_wait(argv); /* idle threads sleep on shared cores (include/kiln/core.h) */
    options o = {.loss = "bce_with_logits", .lr = 1e-2, .lr_decay = 0.85, .train_scenes = 192, .heldout_scenes = 16,
                 .max_pixels = 64 << 20, .tile = 256, .val_fraction = 0.2};
    kx_common_defaults(&o.c);
    o.c.size = 64, o.c.batch = 8, o.c.epochs = 16; /* the demo: see the README's results */
    o.c.out = "out/car_mask";
    kx_arg table[] = {
        KX_COMMON_ARG_TABLE(o.c),
        {"loss", KX_ARG_CHOICE, &o.loss, "bce_with_logits or bce (sigmoid, then BCE)", "bce|bce_with_logits"},
        {"lr", KX_ARG_DOUBLE, &o.lr, "Adam learning rate of the first epoch, > 0", NULL},
        {"lr-decay", KX_ARG_DOUBLE, &o.lr_decay, "learning-rate factor per epoch, in (0, 1]", NULL},
        {"train-scenes", KX_ARG_INT, &o.train_scenes, "training scenes, at least --batch", NULL, 1, 100000},
        {"heldout-scenes", KX_ARG_INT, &o.heldout_scenes, "held-out scenes for the metrics", NULL, 1,
         100000},
        {"resume", KX_ARG_STRING, &o.resume, "continue the run saved in this checkpoint (same options)", NULL},
        {"val-fraction", KX_ARG_DOUBLE, &o.val_fraction, "--data: the share of the images held out for the metrics "
         "(a split seeded by --seed)", NULL, 0.01, 0.9},
        {"crops", KX_ARG_INT, &o.crops, "--data: random crops of each training image an epoch (default 0: the "
         "image area / --size^2, so an epoch covers about every pixel)", NULL, 0, 1024},
        {"predict", KX_ARG_STRING, &o.predict, "segment this image (PNG or JPEG, any size) with --checkpoint's model, "
         "writing OUT/mask.png, or each image of this directory, writing OUT/NAME.png", NULL},
        {"checkpoint", KX_ARG_STRING, &o.checkpoint, "--predict: the weights (model.safetensors or a training checkpoint)", NULL},
        {"max-pixels", KX_ARG_I64, &o.max_pixels, "--predict: the largest image, in pixels", NULL, 64,
         (double)KILN_IMAGE_DEFAULT_MAX_PIXELS},
        {"tile", KX_ARG_INT, &o.tile, "--predict: the side of the tiles the U-Net runs on (a multiple of 8; they "
         "overlap by a quarter)", NULL, 16, 4096},
        {"bench-steps", KX_ARG_INT, &o.bench_steps, "time this many training steps, print the median", NULL, 0, 100000},
    };
    int nargs = (int)(sizeof table / sizeof *table);
    kx_args_set_range(nargs, table, "epochs", 0, MAX_EPOCHS);
    kx_args_set_range(nargs, table, "batch", 1, 1024);
    kx_args_set_range(nargs, table, "size", 8, 1024);
    for (int i = 0; i < nargs; i++)
        if (!strcmp(table[i].name, "data"))
            table[i].help = "train on DIR/images/NAME.png|jpg and DIR/masks/NAME.png (nonzero = car) instead of the "
                            "synthetic scenes";
    const char *about = "Trains U-Net-16 to find the cars in synthetic aerial scenes (sigmoid + BCE, Adam).";
    kx_args_result r = kx_args_parse(argc, argv, about, nargs, table);
    if (r == KX_ARGS_HELP) return 0;
    if (r == KX_ARGS_ERROR) return kx_args_exit("car_mask");
    /* Each mode refuses the options it would ignore. */
    kiln_status bad = KILN_STATUS_OK;
    if (o.predict)
        bad = kx_args_not_for(argc, argv, nargs, table,
                              "epochs|batch|size|seed|loss|lr|lr-decay|train-scenes|heldout-scenes|resume|bench-steps|"
                              "export-weights|log-dir|data|val-fraction|crops", "with --predict (it trains nothing; the image "
                              "sets the size)");
    if (!bad && o.predict && !o.checkpoint)
        bad = kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--predict needs --checkpoint FILE (model.safetensors or a "
                             "training checkpoint)");
    if (!bad && !o.predict)
        bad = kx_args_not_for(argc, argv, nargs, table, "checkpoint|max-pixels|tile", "without --predict");
    if (!bad && o.c.data)
        bad = kx_args_not_for(argc, argv, nargs, table, "train-scenes|heldout-scenes|bench-steps",
                              "with --data (the folder's images are the data)");
    if (!bad && o.c.data)
        bad = kx_args_not_for(argc, argv, nargs, table, "resume", "with --data (not yet: resume trains on scenes only)");
    if (!bad && !o.c.data) bad = kx_args_not_for(argc, argv, nargs, table, "val-fraction|crops", "without --data");
    if (!bad && o.predict && o.tile % 8)
        bad = kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--tile %d is not a multiple of 8 (the U-Net halves it three "
                             "times)", o.tile);
    if (!bad && o.bench_steps > 0)
        bad = kx_args_not_for(argc, argv, nargs, table, "epochs|resume|heldout-scenes|out|export-weights|log-dir",
                              "with --bench-steps (it times steps on one batch and writes nothing)");
    if (!bad) bad = kx_check_device(o.c.device);
    if (!bad) bad = kx_args_apply_threads(o.c.threads);
    /* what the table's ranges cannot say; the scenes are (3 + 1) floats a pixel */
    if (!bad && !o.predict) bad = kx_scene_args_check(&o.c, o.lr, o.lr_decay, o.train_scenes, o.heldout_scenes, 16);
    if (bad) return kx_args_exit("car_mask");
    if (o.predict) return predict(&o) ? fail("--predict") : (kiln_shutdown(), 0);
    /* --data: the folder scanned, paired, checked and split before anything is built */
    if (o.c.data && kx_folder_open(o.c.data, o.val_fraction, (uint64_t)o.c.seed, o.c.size, &o.folder))
        return fail("--data");
    if (o.folder && o.folder->ntrain * (o.crops ? o.crops : kx_folder_crops(o.folder, o.c.size)) < o.c.batch) {
        kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--data '%s': %lld training images, fewer than --batch %d: lower "
                       "--batch or add images", o.c.data, (long long)o.folder->ntrain, o.c.batch);
        kx_folder_free(o.folder);
        return fail("--data");
    }

    /* The model, and Adam over its parameters (kept in one contiguous arena). */
    kiln_manual_seed((uint64_t)o.c.seed);
    kiln_module *net = unet_create(3, 1, 16, KILN_F32);
    /* parameters and buffers to the device, before the optimizer sees them */
    kiln_status st = net ? kiln_module_to(net, o.c.device) : kiln_last_status();
    kiln_optimizer *opt = st ? NULL : kx_module_adam(net, o.lr);
    if (!st && !opt) st = kiln_last_status();
    if (!st) st = o.bench_steps > 0 ? bench(&o, net, opt) : train(&o, net, opt);
    if (opt) kiln_optimizer_free(opt);
    if (net) kiln_module_free(net);
    kx_folder_free(o.folder);
    if (st) return fail(o.bench_steps > 0 ? "--bench-steps" : "training");
    kiln_shutdown();
    return 0;
}

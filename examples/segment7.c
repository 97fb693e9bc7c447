/* segment7: 7-class semantic segmentation of synthetic aerial scenes (ground, road,
 * building, tree, water, car, shadow), or of your own folder of images and label masks.
 * The same U-Net-16 as car_mask with 7 output channels; the loss is a softmax over the
 * channel axis of every pixel fused with cross-entropy, weighted per class because cars
 * and water are rare next to ground. Reports per-class IoU and mIoU on held-out images
 * each epoch, and draws the labels in the scene palette: input | truth | prediction.
 *
 *   segment7 [--epochs 8 --size 64 --batch 8 --class-weights sqrt_inverse --out out/segment7]
 *   segment7 --data DIR [--palette classes.json] [--val-fraction 0.2]   your own images (see the README)
 *   segment7 --predict in.png|DIR --checkpoint out/segment7/model.safetensors   OUT/labels.png or
 *                                  OUT/NAME.png per image: the classes in the scene palette, any size (tiled)
 */
#include <kiln.h>
#include "kx.h"
#include "models/unet.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { C = KX_SCENE_NUM_CLASSES, MAX_EPOCHS = 1000 };

typedef struct {
    kx_common_args c;
    double lr, lr_decay;
    int train_scenes, heldout_scenes;
    const char *weights;  /* none | inverse | sqrt_inverse */
    const char *palette;  /* --data: colour masks' palette (NULL: gray masks of class indices) */
    double val_fraction;  /* --data: the share held out */
    int crops;            /* --data: random crops of each image an epoch (0: enough to cover it) */
    const char *predict, *checkpoint;
    int64_t max_pixels;   /* --predict: the largest image it segments */
    int tile;             /* --predict: the tile side */
    kx_folder *folder;    /* --data: the images and masks, split */
    kx_mask_format fmt;   /* --data: how the masks hold their classes */
    char names[C][32];    /* the classes' names, for the output and the grid's key */
} options;

static int fail(const char *what) {
    fprintf(stderr, "segment7: %s%s%s\n", what, *kiln_last_error() ? ": " : "", kiln_last_error());
    kiln_shutdown();
    return 1;
}

/* Scenes i0..i0+n-1 of a CPU tensor (N,...) as one batch on dev, in the order `order`
 * gives (NULL: as stored). Works for the f32 images and the i64 label maps alike. */
static kiln_tensor *gather(kiln_tensor *all, const int *order, int i0, int n, kiln_device dev) {
    int nd = kiln_tensor_ndim(all);
    int64_t shape[4];
    size_t per = kiln_dtype_size(kiln_tensor_dtype(all));
    for (int d = 1; d < nd; d++) shape[d] = kiln_tensor_size(all, d), per *= (size_t)shape[d];
    shape[0] = n;
    char *src = kiln_tensor_data(all), *buf = malloc((size_t)n * per);
    if (!buf) return kiln_set_error(KILN_STATUS_OOM, "out of memory for a batch of %d", n), NULL;
    for (int k = 0; k < n; k++) memcpy(buf + k * per, src + (size_t)(order ? order[i0 + k] : i0 + k) * per, per);
    kiln_tensor *t = kiln_tensor_from_host(buf, nd, shape, kiln_tensor_dtype(all), dev);
    free(buf);
    return t;
}

/* Class weights from the training labels' pixel counts. Plain cross-entropy lets the
 * frequent classes (ground, road) dominate the gradient; weighting class c by 1/freq_c
 * (or its square root, a milder correction) makes a rare car pixel count as much as the
 * ground it sits on. Normalised to average 1 over the classes present, so the loss keeps
 * its scale. */
static void class_weights(const int64_t *count, const char *kind, double *w, double *freq) {
    int64_t n = 0;
    for (int c = 0; c < C; c++) n += count[c];
    double sum = 0;
    int present = 0;
    for (int c = 0; c < C; c++) {
        freq[c] = n ? (double)count[c] / (double)n : 0.0;
        w[c] = 1.0;
        if (count[c] && strcmp(kind, "inverse") == 0) w[c] = 1.0 / freq[c];
        if (count[c] && strcmp(kind, "sqrt_inverse") == 0) w[c] = 1.0 / sqrt(freq[c]);
        if (count[c]) sum += w[c], present++;
    }
    for (int c = 0; c < C; c++) w[c] = count[c] ? w[c] * present / sum : 0.0; /* absent classes weigh nothing */
}

/* Every mask of the folder decoded once before training: the training masks' pixel
 * counts give the class weights, and a bad mask (a value that is no class, a colour the
 * palette lacks) fails here, naming the file and the pixel, not in the middle of a run. */
static kiln_status folder_counts(const options *o, int64_t *count) {
    const kx_folder *f = o->folder;
    kiln_status st = KILN_STATUS_OK;
    for (int64_t k = 0; k < f->ntrain + f->nheldout && !st; k++) {
        bool train = k < f->ntrain; /* the held-out masks are checked, not counted */
        int64_t item = train ? f->train[k] : f->heldout[k - f->ntrain];
        uint8_t *lab = NULL;
        st = kx_folder_read(f, item, &o->fmt, NULL, &lab);
        for (size_t i = 0, n = (size_t)f->items[item].h * f->items[item].w; !st && train && i < n; i++) count[lab[i]]++;
        free(lab);
    }
    return st;
}

/* Held-out loss and the confusion matrix, in eval mode and with no tape. */
static kiln_status evaluate(const options *o, kiln_module *net, kiln_tensor *images, kiln_tensor *labels,
                            const kiln_cross_entropy_options *ce, double *loss, kiln_confusion_matrix *cm) {
    int n = (int)kiln_tensor_size(images, 0);
    kiln_confusion_matrix_reset(cm);
    kiln_module_train(net, false);
    kiln_no_grad_begin();
    kiln_status st = KILN_STATUS_OK;
    double sum = 0;
    for (int i = 0; i < n && !st; i += o->c.batch) {
        int b = n - i < o->c.batch ? n - i : o->c.batch;
        kiln_scope *s = kiln_scope_begin();
        kiln_tensor *y = gather(labels, NULL, i, b, o->c.device);
        kiln_tensor *logits = kiln_module_forward(net, gather(images, NULL, i, b, o->c.device));
        kiln_tensor *l = kiln_cross_entropy(logits, y, ce);
        /* scores (N,7,H,W): the matrix takes the argmax over the class axis itself */
        st = l ? kiln_confusion_matrix_update(cm, logits, y) : kiln_last_status();
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
 * size, overlapping by a quarter, blended), and the loss and the confusion matrix are
 * taken over every pixel of them, band by band as the tiles finish. The loss is the
 * weighted mean over all held-out pixels: summed per band, divided by the summed weights
 * of the pixels' classes at the end, as one cross-entropy over all of them would be. */

typedef struct {
    const options *o;
    kiln_module *net;
    const kiln_cross_entropy_options *ce;
    const double *w;       /* the class weights */
    const uint8_t *labels; /* the image's H x W classes */
    kiln_confusion_matrix *cm;
    double loss_sum, weight_sum;
    uint8_t *rgb;          /* --predict: the H x W x 3 output, classes in the scene palette */
} tiles_ctx;

static kiln_tensor *tile_forward(void *ctx, kiln_tensor *x) { return kiln_module_forward(((tiles_ctx *)ctx)->net, x); }

static kiln_status heldout_rows(void *ctx, int y0, int nrows, int W, const float *scores, size_t plane) {
    tiles_ctx *t = ctx;
    size_t n = (size_t)nrows * W;
    float *x = malloc((size_t)C * n * sizeof *x);
    int64_t *y = malloc(n * sizeof *y);
    kiln_status st = x && y ? KILN_STATUS_OK : kiln_set_error(KILN_STATUS_OOM, "out of memory");
    if (!st) {
        for (int c = 0; c < C; c++) memcpy(x + c * n, scores + c * plane, n * sizeof *x); /* the band, contiguous */
        for (size_t i = 0; i < n; i++) y[i] = t->labels[(size_t)y0 * W + i], t->weight_sum += t->w[y[i]];
        kiln_scope *s = kiln_scope_begin();
        kiln_tensor *logits = kiln_tensor_from_host(x, 4, (int64_t[]){1, C, nrows, W}, KILN_F32, t->o->c.device);
        kiln_tensor *target = kiln_tensor_from_host(y, 3, (int64_t[]){1, nrows, W}, KILN_I64, t->o->c.device);
        kiln_cross_entropy_options ce = *t->ce;
        ce.reduction = KILN_REDUCTION_SUM;
        kiln_tensor *l = kiln_cross_entropy(logits, target, &ce);
        st = l ? kiln_confusion_matrix_update(t->cm, logits, target) : kiln_last_status();
        if (!st) t->loss_sum += kiln_tensor_item(l);
        kiln_scope_end(s);
    }
    free(x);
    free(y);
    return st;
}

static kiln_status evaluate_folder(const options *o, kiln_module *net, const kiln_cross_entropy_options *ce,
                                   const double *w, double *loss, kiln_confusion_matrix *cm) {
    const kx_folder *f = o->folder;
    tiles_ctx t = {.o = o, .net = net, .ce = ce, .w = w, .cm = cm};
    kiln_confusion_matrix_reset(cm);
    kiln_module_train(net, false);
    kiln_no_grad_begin();
    kiln_status st = KILN_STATUS_OK;
    for (int64_t k = 0; k < f->nheldout && !st; k++) {
        const kx_folder_item *it = &f->items[f->heldout[k]];
        uint8_t *rgb = NULL, *lab = NULL;
        st = kx_folder_read(f, f->heldout[k], &o->fmt, &rgb, &lab);
        t.labels = lab;
        if (!st) st = kx_tiles_run(rgb, it->h, it->w, o->c.size, o->c.size / 4, 8, C, o->c.device, tile_forward, &t,
                                   heldout_rows, &t);
        free(rgb);
        free(lab);
    }
    kiln_no_grad_end();
    kiln_module_train(net, true);
    *loss = t.weight_sum > 0 ? t.loss_sum / t.weight_sum : NAN;
    return st;
}

/* The first n held-out images' centre crops of the training size, for the picture grid:
 * images (n,3,S,S) f32 and labels (n,S,S) i64 on the CPU. */
static kiln_status heldout_crops(const options *o, int n, kiln_tensor **images, kiln_tensor **labels) {
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
        st = kx_folder_read(f, f->heldout[k], &o->fmt, &rgb, &lab);
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
    if (!st && !(*labels = kx_batch_labels(&b, KILN_CPU))) st = kiln_last_status();
    free(b.images), free(b.labels), free(crop);
    return st;
}

/* ---- inference: an image or a folder of them, any size, tile by tile ----------------------- */

static kiln_status label_rows(void *ctx, int y0, int nrows, int W, const float *scores, size_t plane) {
    uint8_t *out = ((tiles_ctx *)ctx)->rgb + (size_t)y0 * W * 3;
    /* the class of the largest blended logit (softmax keeps the order), in the scene palette */
    for (size_t i = 0; i < (size_t)nrows * W; i++) {
        int best = 0;
        for (int c = 1; c < C; c++)
            if (scores[c * plane + i] > scores[best * plane + i]) best = c;
        memcpy(out + 3 * i, kx_scene_palette[best], 3);
    }
    return KILN_STATUS_OK;
}

static kiln_status check_size(const options *o, const char *in, int64_t *hp, int64_t *wp) {
    int64_t h = 0, w = 0;
    kiln_status st = kiln_image_read_size(in, NULL, &h, &w);
    if (!st && h * w > o->max_pixels)
        st = kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "'%s' is %lldx%lld = %lld pixels, above --max-pixels %lld; "
                            "raise --max-pixels (--predict holds the image and its label picture, 6 bytes a pixel, "
                            "and runs the U-Net one --tile at a time)", in, (long long)w, (long long)h,
                            (long long)(h * w), (long long)o->max_pixels);
    if (hp) *hp = h, *wp = w;
    return st;
}

/* Segments one image into an RGB PNG of its classes at out_path; its size in *H, *W. The
 * image is held as bytes (3 a pixel) and the output (3 a pixel); the net sees one tile. */
static kiln_status predict_one(const options *o, kiln_module *net, const char *in, const char *out_path, int *H, int *W) {
    int64_t h = 0, w = 0;
    kiln_status st = check_size(o, in, &h, &w);
    if (st) return st;
    *H = (int)h, *W = (int)w;
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *img = kiln_image_read(in, 3, KILN_U8, KILN_CPU);
    tiles_ctx t = {.o = o, .net = net, .rgb = malloc((size_t)h * w * 3)};
    if (!img) st = kiln_last_status();
    else if (!t.rgb) st = kiln_set_error(KILN_STATUS_OOM, "out of memory for the labels of '%s'", in);
    if (!st) st = kx_tiles_run(kiln_tensor_data(img), *H, *W, o->tile, o->tile / 4, 8, C, o->c.device, tile_forward, &t,
                               label_rows, &t);
    kiln_scope_end(s);
    if (!st) st = kx_png_write_u8(out_path, t.rgb, 3, *H, *W);
    free(t.rgb);
    return st;
}

/* --predict through kx_predict_run: the size check, the net, one image. */
static kiln_status predict_check(void *ctx, const char *path) { return check_size(ctx, path, NULL, NULL); }

static kiln_status predict_load(void *ctx, kiln_module **net) {
    const options *o = ctx;
    *net = unet_create(3, C, 16, KILN_F32);
    kiln_status st = *net ? kiln_module_to(*net, o->c.device) : kiln_last_status();
    if (!st) st = kiln_checkpoint_load(o->checkpoint, *net, NULL, true);
    if (!st) kiln_module_train(*net, false); /* batch norm with its running statistics */
    return st;
}

static kiln_status predict_image(void *ctx, kiln_module *net, const char *in, const char *out, int *H, int *W) {
    return predict_one(ctx, net, in, out, H, W);
}

/* Writes OUT/labels.png for an image, or OUT/NAME.png for each image of a directory. */
static kiln_status predict(const options *o) {
    kx_predict_job job = {.program = "segment7", .input = o->predict, .out_dir = o->c.out, .one_name = "labels.png",
                          .one_key = "labels", .dir_key = "labels_dir", .tile = o->tile, .json = o->c.json,
                          .ctx = (void *)o, .check = predict_check, .load = predict_load, .one = predict_image};
    return kx_predict_run(&job);
}

/* ---- training --------------------------------------------------------------------------------- */

static kiln_status train(options *o, const char **what) {
    double t_start = kx_now_seconds();
    kiln_device dev = o->c.device;
    char devname[32];
    kiln_device_name(dev, devname, sizeof devname);
    const kx_folder *f = o->folder;

    /* Everything a failure must release, so every error path goes through `done`. */
    kiln_module *net = NULL;
    kiln_optimizer *opt = NULL;
    int *order = NULL;
    kiln_confusion_matrix *cm = NULL;
    kx_train_log *tlog = NULL;
    kx_loader *loader = NULL;
    kiln_cross_entropy_options ce = kiln_cross_entropy_options_default();
    char ckpt[4096], grid[4096], plot[4096], weights[4096];
    *what = "preparing --out";
    kiln_status st = kx_out_dir(o->c.out);
    if (!st) st = kx_path_join(ckpt, sizeof ckpt, o->c.out, "segment7.safetensors");
    if (!st) st = kx_path_join(grid, sizeof grid, o->c.out, "segment7_grid.png");
    if (!st) st = kx_path_join(plot, sizeof plot, o->c.out, "segment7_plot.png");
    if (st) goto done;

    /* Data: label maps (N,H,W) of class indices, rendered once on the CPU; or the user's
     * folder, its masks checked and counted here and its batches decoded on the loader
     * thread (an epoch: `crops` random crops of each training image; a last partial
     * batch is dropped). */
    kiln_tensor *train_x = NULL, *train_y = NULL, *test_x = NULL, *test_y = NULL;
    int64_t count[C] = {0};
    int crops = f ? (o->crops > 0 ? o->crops : kx_folder_crops(f, o->c.size)) : 1;
    int steps = (int)((f ? f->ntrain * crops : o->train_scenes) / o->c.batch);
    if (f) {
        *what = "reading the masks";
        st = folder_counts(o, count);
    } else {
        *what = "rendering the scenes";
        st = kx_scene_batch(KX_SCENE_TRAIN, (uint64_t)o->c.seed, 0, o->train_scenes, o->c.size, o->c.size, KILN_CPU,
                            &train_x, NULL, &train_y);
        if (!st) st = kx_scene_batch(KX_SCENE_HELDOUT, (uint64_t)o->c.seed, 0, o->heldout_scenes, o->c.size,
                                     o->c.size, KILN_CPU, &test_x, NULL, &test_y);
        const int64_t *l = st ? NULL : kiln_tensor_data(train_y);
        for (int64_t i = 0, n = st ? 0 : kiln_tensor_numel(train_y); i < n; i++) count[l[i]]++;
    }
    if (st) goto done;
    double w[C], freq[C];
    class_weights(count, o->weights, w, freq);
    ce.weight = kiln_tensor_from_host((float[]){(float)w[0], (float)w[1], (float)w[2], (float)w[3], (float)w[4],
                                                (float)w[5], (float)w[6]}, 1, (int64_t[]){C}, KILN_F32, dev);

    /* U-Net-16 with one output channel per class, and Adam. */
    *what = "building the U-Net";
    kiln_manual_seed((uint64_t)o->c.seed);
    net = unet_create(3, C, 16, KILN_F32);
    /* parameters and buffers to the device, before the optimizer sees them */
    st = !net || !ce.weight ? kiln_last_status() : kiln_module_to(net, dev);
    if (!st) {
        *what = "creating Adam";
        if (!(opt = kx_module_adam(net, o->lr))) st = kiln_last_status();
    }
    if (st) goto done;

    if (!o->c.json && f)
        printf("segment7: U-Net-16 (%lld parameters) on %s, %s (%s masks): %lld training + %lld held-out images, "
               "crops of %dx%d, batch %d, Adam lr %g decayed by %g an epoch\n",
               (long long)kiln_module_parameter_count(net), devname, f->dir,
               o->palette ? "palette" : "class-index", (long long)f->ntrain, (long long)f->nheldout, o->c.size,
               o->c.size, o->c.batch, o->lr, o->lr_decay);
    if (!o->c.json && !f)
        printf("segment7: U-Net-16 (%lld parameters) on %s, %d+%d scenes of %dx%d, batch %d, Adam lr %g decayed by %g an epoch\n",
               (long long)kiln_module_parameter_count(net), devname, o->train_scenes, o->heldout_scenes, o->c.size,
               o->c.size, o->c.batch, o->lr, o->lr_decay);
    if (!o->c.json) {
        printf("class     pixels   weight (%s)\n", o->weights);
        for (int c = 0; c < C; c++) printf("%-9s %5.1f%%   %.3f\n", o->names[c], 100 * freq[c], w[c]);
    }

    enum { NH = 4 };
    static double hist[NH][MAX_EPOCHS];
    static const char *const hist_keys[NH] = {"train_loss", "heldout_loss", "heldout_miou", "heldout_argmax_accuracy"};
    double iou[C];
    *what = "allocating";
    order = malloc((size_t)o->train_scenes * sizeof *order);
    cm = kiln_confusion_matrix_create(C, KILN_IGNORE_INDEX_DEFAULT);
    if (!order || !cm) {
        st = cm ? kiln_set_error(KILN_STATUS_OOM, "out of memory for %d scenes", o->train_scenes) : kiln_last_status();
        goto done;
    }
    *what = "opening the logs";
    if (!(tlog = kx_train_log_open(o->c.out, o->c.log_dir, NH - 2, hist_keys + 2, 0))) {
        st = kiln_last_status();
        goto done;
    }
    if (f) {
        *what = "starting the loader";
        if (!(loader = kx_loader_start(f, &o->fmt, o->c.batch, o->c.size, crops, (uint64_t)o->c.seed, 0, o->c.epochs)))
            st = kiln_last_status();
        if (!st) *what = "reading the held-out images", st = heldout_crops(o, 4, &test_x, &test_y);
        if (st) goto done;
    }
    kx_progress p;
    kx_progress_init(&p, stderr, o->c.json ? KX_PROGRESS_QUIET : KX_PROGRESS_AUTO, "train",
                     (int64_t)o->c.epochs * steps);
    kx_progress_set_images(&p, o->c.batch);
    *what = "training";
    for (int epoch = 0; epoch < o->c.epochs && !st; epoch++) {
        if (!f) kx_epoch_shuffle(order, o->train_scenes, (uint64_t)o->c.seed, epoch);
        /* large steps early, smaller ones to settle (ExponentialLR stepped per epoch) */
        kiln_schedule sched = kiln_schedule_exponential(o->lr, o->lr_decay);
        double lr = kiln_schedule_lr(&sched, epoch);
        st = kiln_optimizer_set_lr(opt, lr);
        double sum = 0;
        for (int i = 0; i < steps && !st; i++) {
            double t_step = kx_now_seconds();
            kiln_scope *s = kiln_scope_begin(); /* the step's tensors and tape die at its end */
            kiln_tensor *x = NULL, *y = NULL;
            const kx_batch *b = NULL;
            if (f) { /* made on the loader thread while the last step trained */
                st = kx_loader_next(loader, &b);
                x = b ? kx_batch_images(b, dev) : NULL, y = b ? kx_batch_labels(b, dev) : NULL;
            } else {
                x = gather(train_x, order, i * o->c.batch, o->c.batch, dev);
                y = gather(train_y, order, i * o->c.batch, o->c.batch, dev);
            }
            /* logits (N,7,H,W), targets (N,H,W): log-softmax over axis 1 at every pixel, then
             * the weighted negative log-likelihood, averaged by the summed weights (as PyTorch) */
            double l = NAN;
            if (!st) {
                kiln_tensor *loss = kiln_cross_entropy(kiln_module_forward(net, x), y, &ce);
                if (kx_train_step(opt, loss, &l) != KILN_STATUS_OK)
                    st = kx_error_prefix("epoch %d, step %d of %d", epoch + 1, i + 1, steps);
                else
                    st = kx_check_loss(l, epoch + 1, i + 1, steps, lr);
            }
            sum += l;
            kiln_scope_end(s);
            double dt = kx_now_seconds() - t_step; /* the loss was read: the step is done */
            if (!st) st = kx_train_log_step(tlog, epoch + 1, (int64_t)epoch * steps + i + 1, l, lr,
                                            dt > 0 ? o->c.batch / dt : NAN);
            kx_progress_update(&p, (int64_t)epoch * steps + i + 1, l);
        }
        double test_loss = NAN;
        if (!st) st = f ? evaluate_folder(o, net, &ce, w, &test_loss, cm) : evaluate(o, net, test_x, test_y, &ce, &test_loss, cm);
        if (st) break;
        hist[0][epoch] = sum / steps, hist[1][epoch] = test_loss;
        hist[2][epoch] = kiln_confusion_matrix_mean_iou(cm);
        hist[3][epoch] = kiln_confusion_matrix_argmax_accuracy(cm);
        st = kx_train_log_epoch(tlog, epoch + 1, hist[0][epoch], test_loss, (double[]){hist[2][epoch], hist[3][epoch]});
        if (st) break;
        if (p.mode == KX_PROGRESS_BAR) fprintf(stderr, "\r\033[K");
        if (!o->c.json)
            printf("epoch %d/%d  train loss %.4f  held-out loss %.4f  mIoU %.4f  argmax accuracy %.4f\n", epoch + 1,
                   o->c.epochs, hist[0][epoch], test_loss, hist[2][epoch], hist[3][epoch]);
        fflush(stdout);
    }
    if (st) {
        if (p.mode != KX_PROGRESS_QUIET) fprintf(stderr, "\n");
        goto done;
    }
    kx_progress_finish(&p);
    kiln_confusion_matrix_class_iou(cm, iou);
    if (!o->c.json) {
        printf("held-out IoU per class:");
        for (int c = 0; c < C; c++) printf("  %s %.3f", o->names[c], iou[c]);
        printf("\n");
    }

    /* Pictures: label maps in the scene palette, and the curves per epoch. */
    *what = "writing the results";
    st = kiln_checkpoint_save(ckpt, net, opt, NULL, 0);
    if (!st) {
        int rows = (int)kiln_tensor_size(test_x, 0) < 4 ? (int)kiln_tensor_size(test_x, 0) : 4;
        kiln_scope *s = kiln_scope_begin();
        kiln_no_grad_begin();
        kiln_module_train(net, false);
        kiln_tensor *x = gather(test_x, NULL, 0, rows, dev);
        kiln_tensor *cols[3] = {x, gather(test_y, NULL, 0, rows, dev), kiln_argmax(kiln_module_forward(net, x), 1, false)};
        const char *titles[3] = {"input", "truth", "prediction"};
        /* a key of the scene palette under the label maps: which colour is which class
         * (a palette's classes only: the others never occur in its masks) */
        int nkey = o->palette ? o->fmt.ncolours : C;
        const char *names[C];
        uint32_t colours[C];
        for (int c = 0; c < C; c++) names[c] = o->names[c], colours[c] = kx_scene_colour(c);
        st = kx_grid_save_png_key(grid, 3, cols, titles, rows, o->c.size >= 128 ? 2 : o->c.size >= 64 ? 3 : 4, nkey,
                                  names, colours);
        kiln_module_train(net, true);
        kiln_no_grad_end();
        kiln_scope_end(s);
    }
    kx_series series[NH];
    for (int k = 0; k < NH; k++) series[k] = (kx_series){hist_keys[k], hist[k], o->c.epochs};
    if (!st) st = kx_plot_training_png(plot, "segment7: losses and held-out metrics", "epoch", 2, series, NH - 2,
                                       series + 2, 640, 480);
    if (!st) st = kx_export_weights(&o->c, net, weights, sizeof weights);
    if (st) goto done;
    if (!o->c.json) printf("segment7: pictures in %s and %s, checkpoint %s, weights %s\n", grid, plot, ckpt, weights);

    char classes[C * 33] = "";
    for (int c = 0; c < C; c++) snprintf(classes + strlen(classes), sizeof classes - strlen(classes), "%s%s",
                                         c ? "," : "", o->names[c]);
    kx_json j;
    kx_json_begin(&j);
    kx_json_string(&j, "program", "segment7");
    kx_json_string(&j, "device", devname);
    kx_json_int(&j, "threads", kiln_get_num_threads());
    kx_json_int(&j, "epochs", o->c.epochs);
    kx_json_int(&j, "size", o->c.size);
    kx_json_int(&j, "batch", o->c.batch);
    if (f) {
        kx_json_string(&j, "data", f->dir);
        kx_json_string(&j, "masks", o->palette ? "palette" : "class_index");
        if (o->palette) kx_json_string(&j, "palette", o->palette);
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
    kx_json_string(&j, "class_weighting", o->weights);
    kx_json_string(&j, "classes", classes);
    kx_json_numbers(&j, "class_weights", w, C);
    for (int k = 0; k < NH; k++) kx_json_numbers(&j, hist_keys[k], hist[k], o->c.epochs);
    kx_json_numbers(&j, "class_iou", iou, C);
    kx_json_number(&j, "miou", hist[2][o->c.epochs - 1]);
    kx_json_number(&j, "argmax_accuracy", hist[3][o->c.epochs - 1]);
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
    if (!st && lst) *what = "closing the logs", st = lst;
    free(order);
    kiln_confusion_matrix_free(cm);
    kiln_optimizer_free(opt);
    kiln_module_free(net);
    return st;
}

int main(int argc, char **argv) {
    kiln_prefer_passive_wait(argv); /* idle threads sleep on shared cores (include/kiln/core.h) */
    options o = {.lr = 1e-2, .lr_decay = 0.8, .train_scenes = 192, .heldout_scenes = 16, .weights = "sqrt_inverse",
                 .val_fraction = 0.2, .max_pixels = 64 << 20, .tile = 256};
    kx_common_defaults(&o.c);
    o.c.out = "out/segment7";
    o.c.size = 64, o.c.batch = 8, o.c.epochs = 8; /* the README's results */
    kx_arg table[] = {
        KX_COMMON_ARG_TABLE(o.c),
        {"lr", KX_ARG_DOUBLE, &o.lr, "Adam learning rate of the first epoch, > 0", NULL},
        {"lr-decay", KX_ARG_DOUBLE, &o.lr_decay, "learning-rate factor per epoch, in (0, 1]", NULL},
        {"train-scenes", KX_ARG_INT, &o.train_scenes, "training scenes, at least --batch", NULL, 1, 100000},
        {"heldout-scenes", KX_ARG_INT, &o.heldout_scenes, "held-out scenes for the metrics", NULL, 1,
         100000},
        {"class-weights", KX_ARG_CHOICE, &o.weights, "cross-entropy class weights from the training labels: "
                                                       "none, inverse or sqrt_inverse frequency",
         "none|inverse|sqrt_inverse"},
        {"palette", KX_ARG_STRING, &o.palette, "--data: the masks are RGB, each colour a class, as this JSON file "
         "says: an array whose entry i is class i, [r, g, b] or {\"name\": \"road\", \"color\": [r, g, b]}, at most 7 "
         "(without it the masks are gray, value = class index 0..6)", NULL},
        {"val-fraction", KX_ARG_DOUBLE, &o.val_fraction, "--data: the share of the images held out for the metrics "
         "(a split seeded by --seed)", NULL, 0.01, 0.9},
        {"crops", KX_ARG_INT, &o.crops, "--data: random crops of each training image an epoch (default 0: the "
         "image area / --size^2, so an epoch covers about every pixel)", NULL, 0, 1024},
        {"predict", KX_ARG_STRING, &o.predict, "label this image (PNG or JPEG, any size) with --checkpoint's model, "
         "writing OUT/labels.png (the classes in the scene palette), or each image of this directory, writing "
         "OUT/NAME.png", NULL},
        {"checkpoint", KX_ARG_STRING, &o.checkpoint, "--predict: the weights (model.safetensors or a training checkpoint)", NULL},
        {"max-pixels", KX_ARG_I64, &o.max_pixels, "--predict: the largest image, in pixels", NULL, 64,
         (double)KILN_IMAGE_DEFAULT_MAX_PIXELS},
        {"tile", KX_ARG_INT, &o.tile, "--predict: the side of the tiles the U-Net runs on (a multiple of 8; they "
         "overlap by a quarter)", NULL, 16, 4096},
    };
    int nargs = (int)(sizeof table / sizeof *table);
    kx_args_set_range(nargs, table, "epochs", 1, MAX_EPOCHS);
    kx_args_set_range(nargs, table, "batch", 1, 1024);
    kx_args_set_range(nargs, table, "size", 8, 1024);
    for (int i = 0; i < nargs; i++)
        if (!strcmp(table[i].name, "data"))
            table[i].help = "train on DIR/images/NAME.png|jpg and DIR/masks/NAME.png (class indices, or --palette "
                            "colours) instead of the synthetic scenes";
    const char *about = "Trains U-Net-16 to label every pixel of synthetic aerial scenes (or your own images) with "
                        "one of 7 classes.";
    kx_args_result r = kx_args_parse(argc, argv, about, nargs, table);
    if (r == KX_ARGS_HELP) return 0;
    if (r == KX_ARGS_ERROR) return kx_args_exit("segment7");
    /* Each mode refuses the options it would ignore. */
    kiln_status bad = KILN_STATUS_OK;
    if (o.predict)
        bad = kx_args_not_for(argc, argv, nargs, table,
                              "epochs|batch|size|seed|lr|lr-decay|train-scenes|heldout-scenes|class-weights|"
                              "export-weights|log-dir|data|palette|val-fraction|crops", "with --predict (it trains "
                              "nothing; the image sets the size, the output is in the scene palette)");
    if (!bad && o.predict && !o.checkpoint)
        bad = kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--predict needs --checkpoint FILE (model.safetensors or a "
                             "training checkpoint)");
    if (!bad && !o.predict)
        bad = kx_args_not_for(argc, argv, nargs, table, "checkpoint|max-pixels|tile", "without --predict");
    if (!bad && o.c.data)
        bad = kx_args_not_for(argc, argv, nargs, table, "train-scenes|heldout-scenes",
                              "with --data (the folder's images are the data)");
    if (!bad && !o.c.data) bad = kx_args_not_for(argc, argv, nargs, table, "palette|val-fraction|crops", "without --data");
    if (!bad && o.predict && o.tile % 8)
        bad = kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--tile %d is not a multiple of 8 (the U-Net halves it three "
                             "times)", o.tile);
    if (!bad) bad = kx_check_device(o.c.device);
    if (!bad) bad = kx_args_apply_threads(o.c.threads);
    /* what the table's ranges cannot say; the scenes are 3 floats and a class index a pixel */
    if (!bad && !o.predict) bad = kx_scene_args_check(&o.c, o.lr, o.lr_decay, o.train_scenes, o.heldout_scenes, 20);
    if (bad) return kx_args_exit("segment7");
    if (o.predict) return predict(&o) ? fail("--predict") : (kiln_shutdown(), 0);

    /* The classes: the scenes' names; with --data, the palette's names, or "class N". */
    o.fmt = (kx_mask_format){.kind = KX_MASK_INDEX, .nclasses = C};
    if (o.palette && kx_palette_read(o.palette, C, &o.fmt)) return fail("reading --palette");
    for (int c = 0; c < C; c++) {
        if (!o.c.data) snprintf(o.names[c], sizeof o.names[c], "%s", kx_scene_class_name(c));
        else if (o.palette && c < o.fmt.ncolours) snprintf(o.names[c], sizeof o.names[c], "%s", o.fmt.name[c]);
        else snprintf(o.names[c], sizeof o.names[c], "class %d", c);
    }
    /* --data: the folder scanned, paired, checked and split before anything is built */
    if (o.c.data && kx_folder_open(o.c.data, o.val_fraction, (uint64_t)o.c.seed, o.c.size, &o.folder))
        return fail("--data");
    if (o.folder && o.folder->ntrain * (o.crops ? o.crops : kx_folder_crops(o.folder, o.c.size)) < o.c.batch) {
        kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--data '%s': %lld training images, fewer than --batch %d: lower "
                       "--batch or add images", o.c.data, (long long)o.folder->ntrain, o.c.batch);
        kx_folder_free(o.folder);
        return fail("--data");
    }
    const char *what = "training";
    kiln_status st = train(&o, &what);
    kx_folder_free(o.folder);
    if (st) return fail(what);
    kiln_shutdown();
    return 0;
}

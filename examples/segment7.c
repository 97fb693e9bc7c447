/* segment7: 7-class semantic segmentation of synthetic aerial scenes (ground, road,
 * building, tree, water, car, shadow). The same U-Net-16 as car_mask with 7 output
 * channels; the loss is a softmax over the channel axis of every pixel fused with
 * cross-entropy, weighted per class because cars and water are rare next to ground.
 * Reports per-class IoU and mIoU on held-out scenes each epoch, and draws the labels
 * in the scene palette: input | truth | prediction.
 *
 *   segment7 [--epochs 8 --size 64 --batch 8 --class-weights sqrt_inverse --out out/segment7]
 */
#include <kiln.h>
#include "kx.h"
#include "models/unet.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { C = KX_SCENE_NUM_CLASSES, MAX_EPOCHS = 1000 };

typedef struct {
    kx_common_args c;
    double lr, lr_decay;
    int train_scenes, heldout_scenes;
    const char *weights; /* none | inverse | sqrt_inverse */
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

/* Class weights from the training labels. Plain cross-entropy lets the frequent classes
 * (ground, road) dominate the gradient; weighting class c by 1/freq_c (or its square
 * root, a milder correction) makes a rare car pixel count as much as the ground it
 * sits on. Normalised to average 1 over the classes present, so the loss keeps its scale. */
static void class_weights(kiln_tensor *labels, const char *kind, double *w, double *freq) {
    int64_t count[C] = {0}, n = kiln_tensor_numel(labels);
    const int64_t *l = kiln_tensor_data(labels);
    for (int64_t i = 0; i < n; i++) count[l[i]]++;
    double sum = 0;
    int present = 0;
    for (int c = 0; c < C; c++) {
        freq[c] = (double)count[c] / (double)n;
        w[c] = 1.0;
        if (count[c] && strcmp(kind, "inverse") == 0) w[c] = 1.0 / freq[c];
        if (count[c] && strcmp(kind, "sqrt_inverse") == 0) w[c] = 1.0 / sqrt(freq[c]);
        if (count[c]) sum += w[c], present++;
    }
    for (int c = 0; c < C; c++) w[c] = count[c] ? w[c] * present / sum : 0.0; /* absent classes weigh nothing */
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

int main(int argc, char **argv) {
    kiln_prefer_passive_wait(argv); /* idle threads sleep on shared cores (include/kiln/core.h) */
    double t_start = kx_now_seconds();
    options o = {.lr = 1e-2, .lr_decay = 0.8, .train_scenes = 192, .heldout_scenes = 16, .weights = "sqrt_inverse"};
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
    };
    int nargs = (int)(sizeof table / sizeof *table);
    kx_args_set_range(nargs, table, "epochs", 1, MAX_EPOCHS);
    kx_args_set_range(nargs, table, "batch", 1, 1024);
    kx_args_set_range(nargs, table, "size", 8, 1024);
    kx_args_refuse(nargs, table, "data", "to segment7 (its scenes are synthetic)");
    const char *about = "Trains U-Net-16 to label every pixel of synthetic aerial scenes with one of 7 classes.";
    kx_args_result r = kx_args_parse(argc, argv, about, nargs, table);
    if (r == KX_ARGS_HELP) return 0;
    if (r == KX_ARGS_ERROR || kx_check_device(o.c.device) != KILN_STATUS_OK ||
        kx_args_apply_threads(o.c.threads) != KILN_STATUS_OK)
        return kx_args_exit("segment7");
    kiln_device dev = o.c.device;
    char devname[32];
    kiln_device_name(dev, devname, sizeof devname);
    /* what the table's ranges cannot say; the scenes are 3 floats and a class index a pixel */
    if (kx_scene_args_check(&o.c, o.lr, o.lr_decay, o.train_scenes, o.heldout_scenes, 20))
        return kx_args_exit("segment7");

    /* Everything a failure must release, so every error path goes through `done`. */
    kiln_module *net = NULL;
    kiln_optimizer *opt = NULL;
    int *order = NULL;
    kiln_confusion_matrix *cm = NULL;
    kx_train_log *tlog = NULL;
    kiln_cross_entropy_options ce = kiln_cross_entropy_options_default();
    const char *what = "preparing --out";
    char ckpt[4096], grid[4096], plot[4096], weights[4096];
    kiln_status st = kx_out_dir(o.c.out);
    if (!st) st = kx_path_join(ckpt, sizeof ckpt, o.c.out, "segment7.safetensors");
    if (!st) st = kx_path_join(grid, sizeof grid, o.c.out, "segment7_grid.png");
    if (!st) st = kx_path_join(plot, sizeof plot, o.c.out, "segment7_plot.png");
    if (st) goto done;

    /* Data: label maps (N,H,W) of class indices, rendered once on the CPU. */
    what = "rendering the scenes";
    kiln_tensor *train_x, *train_y, *test_x, *test_y;
    st = kx_scene_batch(KX_SCENE_TRAIN, (uint64_t)o.c.seed, 0, o.train_scenes, o.c.size, o.c.size, KILN_CPU,
                        &train_x, NULL, &train_y);
    if (!st) st = kx_scene_batch(KX_SCENE_HELDOUT, (uint64_t)o.c.seed, 0, o.heldout_scenes, o.c.size, o.c.size,
                                 KILN_CPU, &test_x, NULL, &test_y);
    if (st) goto done;
    double w[C], freq[C];
    class_weights(train_y, o.weights, w, freq);
    ce.weight = kiln_tensor_from_host((float[]){(float)w[0], (float)w[1], (float)w[2], (float)w[3], (float)w[4],
                                                (float)w[5], (float)w[6]}, 1, (int64_t[]){C}, KILN_F32, dev);

    /* U-Net-16 with one output channel per class, and Adam. */
    what = "building the U-Net";
    kiln_manual_seed((uint64_t)o.c.seed);
    net = unet_create(3, C, 16, KILN_F32);
    /* parameters and buffers to the device, before the optimizer sees them */
    st = !net || !ce.weight ? kiln_last_status() : kiln_module_to(net, dev);
    if (!st) {
        what = "creating Adam";
        if (!(opt = kx_module_adam(net, o.lr))) st = kiln_last_status();
    }
    if (st) goto done;

    if (!o.c.json) {
        printf("segment7: U-Net-16 (%lld parameters) on %s, %d+%d scenes of %dx%d, batch %d, Adam lr %g decayed by %g an epoch\n",
               (long long)kiln_module_parameter_count(net), devname, o.train_scenes, o.heldout_scenes, o.c.size,
               o.c.size, o.c.batch, o.lr, o.lr_decay);
        printf("class     pixels   weight (%s)\n", o.weights);
        for (int c = 0; c < C; c++) printf("%-9s %5.1f%%   %.3f\n", kx_scene_class_name(c), 100 * freq[c], w[c]);
    }

    enum { NH = 4 };
    static double hist[NH][MAX_EPOCHS];
    static const char *const hist_keys[NH] = {"train_loss", "heldout_loss", "heldout_miou", "heldout_argmax_accuracy"};
    double iou[C];
    int steps = o.train_scenes / o.c.batch;
    what = "allocating";
    order = malloc((size_t)o.train_scenes * sizeof *order);
    cm = kiln_confusion_matrix_create(C, KILN_IGNORE_INDEX_DEFAULT);
    if (!order || !cm) {
        st = cm ? kiln_set_error(KILN_STATUS_OOM, "out of memory for %d scenes", o.train_scenes) : kiln_last_status();
        goto done;
    }
    what = "opening the logs";
    if (!(tlog = kx_train_log_open(o.c.out, o.c.log_dir, NH - 2, hist_keys + 2, 0))) {
        st = kiln_last_status();
        goto done;
    }
    kx_progress p;
    kx_progress_init(&p, stderr, o.c.json ? KX_PROGRESS_QUIET : KX_PROGRESS_AUTO, "train",
                     (int64_t)o.c.epochs * steps);
    kx_progress_set_images(&p, o.c.batch);
    what = "training";
    for (int epoch = 0; epoch < o.c.epochs && !st; epoch++) {
        kx_epoch_shuffle(order, o.train_scenes, (uint64_t)o.c.seed, epoch);
        /* large steps early, smaller ones to settle (ExponentialLR stepped per epoch) */
        kiln_schedule sched = kiln_schedule_exponential(o.lr, o.lr_decay);
        double lr = kiln_schedule_lr(&sched, epoch);
        st = kiln_optimizer_set_lr(opt, lr);
        double sum = 0;
        for (int i = 0; i < steps && !st; i++) {
            double t_step = kx_now_seconds();
            kiln_scope *s = kiln_scope_begin(); /* the step's tensors and tape die at its end */
            kiln_tensor *x = gather(train_x, order, i * o.c.batch, o.c.batch, dev);
            kiln_tensor *y = gather(train_y, order, i * o.c.batch, o.c.batch, dev);
            /* logits (N,7,H,W), targets (N,H,W): log-softmax over axis 1 at every pixel, then
             * the weighted negative log-likelihood, averaged by the summed weights (as PyTorch) */
            kiln_tensor *loss = kiln_cross_entropy(kiln_module_forward(net, x), y, &ce);
            double l = NAN;
            if (kx_train_step(opt, loss, &l) != KILN_STATUS_OK)
                st = kx_error_prefix("epoch %d, step %d of %d", epoch + 1, i + 1, steps);
            else
                st = kx_check_loss(l, epoch + 1, i + 1, steps, lr);
            sum += l;
            kiln_scope_end(s);
            double dt = kx_now_seconds() - t_step; /* the loss was read: the step is done */
            if (!st) st = kx_train_log_step(tlog, epoch + 1, (int64_t)epoch * steps + i + 1, l, lr,
                                            dt > 0 ? o.c.batch / dt : NAN);
            kx_progress_update(&p, (int64_t)epoch * steps + i + 1, l);
        }
        double test_loss = NAN;
        if (!st) st = evaluate(&o, net, test_x, test_y, &ce, &test_loss, cm);
        if (st) break;
        hist[0][epoch] = sum / steps, hist[1][epoch] = test_loss;
        hist[2][epoch] = kiln_confusion_matrix_mean_iou(cm);
        hist[3][epoch] = kiln_confusion_matrix_argmax_accuracy(cm);
        st = kx_train_log_epoch(tlog, epoch + 1, hist[0][epoch], test_loss, (double[]){hist[2][epoch], hist[3][epoch]});
        if (st) break;
        if (p.mode == KX_PROGRESS_BAR) fprintf(stderr, "\r\033[K");
        if (!o.c.json)
            printf("epoch %d/%d  train loss %.4f  held-out loss %.4f  mIoU %.4f  argmax accuracy %.4f\n", epoch + 1,
                   o.c.epochs, hist[0][epoch], test_loss, hist[2][epoch], hist[3][epoch]);
        fflush(stdout);
    }
    if (st) {
        if (p.mode != KX_PROGRESS_QUIET) fprintf(stderr, "\n");
        goto done;
    }
    kx_progress_finish(&p);
    kiln_confusion_matrix_class_iou(cm, iou);
    if (!o.c.json) {
        printf("held-out IoU per class:");
        for (int c = 0; c < C; c++) printf("  %s %.3f", kx_scene_class_name(c), iou[c]);
        printf("\n");
    }

    /* Pictures: label maps in the scene palette, and the curves per epoch. */
    what = "writing the results";
    st = kiln_checkpoint_save(ckpt, net, opt, NULL, 0);
    if (!st) {
        int rows = o.heldout_scenes < 4 ? o.heldout_scenes : 4;
        kiln_scope *s = kiln_scope_begin();
        kiln_no_grad_begin();
        kiln_module_train(net, false);
        kiln_tensor *x = gather(test_x, NULL, 0, rows, dev);
        kiln_tensor *cols[3] = {x, gather(test_y, NULL, 0, rows, dev), kiln_argmax(kiln_module_forward(net, x), 1, false)};
        const char *titles[3] = {"input", "truth", "prediction"};
        /* a key of the scene palette under the label maps: which colour is which class */
        const char *names[C];
        uint32_t colours[C];
        for (int c = 0; c < C; c++) names[c] = kx_scene_class_name(c), colours[c] = kx_scene_colour(c);
        st = kx_grid_save_png_key(grid, 3, cols, titles, rows, o.c.size >= 128 ? 2 : o.c.size >= 64 ? 3 : 4, C, names,
                                  colours);
        kiln_no_grad_end();
        kiln_scope_end(s);
    }
    kx_series series[NH];
    for (int k = 0; k < NH; k++) series[k] = (kx_series){hist_keys[k], hist[k], o.c.epochs};
    if (!st) st = kx_plot_training_png(plot, "segment7: losses and held-out metrics", "epoch", 2, series, NH - 2,
                                       series + 2, 640, 480);
    if (!st) st = kx_export_weights(&o.c, net, weights, sizeof weights);
    if (st) goto done;
    if (!o.c.json) printf("segment7: pictures in %s and %s, checkpoint %s, weights %s\n", grid, plot, ckpt, weights);

    kx_json j;
    kx_json_begin(&j);
    kx_json_string(&j, "program", "segment7");
    kx_json_string(&j, "device", devname);
    kx_json_int(&j, "threads", kiln_get_num_threads());
    kx_json_int(&j, "epochs", o.c.epochs);
    kx_json_int(&j, "size", o.c.size);
    kx_json_int(&j, "batch", o.c.batch);
    kx_json_int(&j, "train_scenes", o.train_scenes);
    kx_json_int(&j, "heldout_scenes", o.heldout_scenes);
    kx_json_number(&j, "lr", o.lr);
    kx_json_number(&j, "lr_decay", o.lr_decay);
    kx_json_string(&j, "class_weighting", o.weights);
    kx_json_string(&j, "classes", "ground,road,building,tree,water,car,shadow");
    kx_json_numbers(&j, "class_weights", w, C);
    for (int k = 0; k < NH; k++) kx_json_numbers(&j, hist_keys[k], hist[k], o.c.epochs);
    kx_json_numbers(&j, "class_iou", iou, C);
    kx_json_number(&j, "miou", hist[2][o.c.epochs - 1]);
    kx_json_number(&j, "argmax_accuracy", hist[3][o.c.epochs - 1]);
    kx_json_string(&j, "grid", grid);
    kx_json_string(&j, "plot", plot);
    kx_json_string(&j, "checkpoint", ckpt);
    kx_json_string(&j, "weights", weights);
    kx_train_log_json(tlog, &j);
    kx_json_number(&j, "wall_s", kx_now_seconds() - t_start);
    kx_json_print(&j, stdout);
done:;
    kiln_status lst = kx_train_log_close(tlog);
    if (!st && lst) what = "closing the logs", st = lst;
    free(order);
    kiln_confusion_matrix_free(cm);
    kiln_optimizer_free(opt);
    kiln_module_free(net);
    if (st) return fail(what);
    kiln_shutdown();
    return 0;
}

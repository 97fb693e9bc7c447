/* Fashion-MNIST classification: an MLP (784-256-128-10, each dense layer one matrix
 * product over the whole batch) or a small CNN (two conv + batch-norm + ReLU + max-pool
 * stages, then two linear layers), cross-entropy, Adam or SGD with momentum, and the
 * test set's argmax accuracy after every epoch.
 *   fashion_mnist --model cnn --epochs 3          (data: Debian's dataset-fashion-mnist or --data DIR)
 * Writes OUT/fashion_mnist_curves.png and OUT/model.safetensors (the weights, for torch)
 * into --out (default out/fashion_mnist). */
#include <kiln.h>
#include <kx.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define IMG 784 /* 28 x 28 */

/* The usual per-pixel statistics of the Fashion-MNIST training set: inputs are
 * standardized with them so the first layer sees values around 0 with unit spread. */
static const float PIXEL_MEAN = 0.2860f, PIXEL_STD = 0.3530f;

/* ---- models ------------------------------------------------------------------------- */

/* Flatten, then Linear 784->256, ReLU, 256->128, ReLU, 128->10. kiln_linear computes
 * x·Wᵀ + b for all rows of the batch in one BLAS product. */
static kiln_module *make_mlp(void) {
    kiln_module *l[] = {kiln_flatten_create(1, -1),           kiln_linear_create(IMG, 256, true, KILN_F32),
                        kiln_relu_create(),                   kiln_linear_create(256, 128, true, KILN_F32),
                        kiln_relu_create(),                   kiln_linear_create(128, 10, true, KILN_F32)};
    return kx_sequential_of(6, l);
}

/* w = --width (16): conv3x3(1->w) BN ReLU pool2 -> 14x14, conv3x3(w->2w) BN ReLU
 * pool2 -> 7x7, then Linear(2w*49 -> 128), ReLU, Linear(128 -> 10). The convs have no
 * bias: batch norm's shift would cancel it. */
static kiln_module *make_cnn(int w) {
    kiln_module *l[] = {kiln_conv2d_create(1, w, 3, 1, 1, false, KILN_F32),
                        kiln_batch_norm2d_create(w, KILN_F32),
                        kiln_relu_create(),
                        kiln_max_pool2d_create(2, 0, 0),
                        kiln_conv2d_create(w, 2 * w, 3, 1, 1, false, KILN_F32),
                        kiln_batch_norm2d_create(2 * w, KILN_F32),
                        kiln_relu_create(),
                        kiln_max_pool2d_create(2, 0, 0),
                        kiln_flatten_create(1, -1),
                        kiln_linear_create(2 * w * 49, 128, true, KILN_F32),
                        kiln_relu_create(),
                        kiln_linear_create(128, 10, true, KILN_F32)};
    return kx_sequential_of(12, l);
}

/* ---- data --------------------------------------------------------------------------- */

/* Gathers samples idx[0..b-1] (or first..first+b-1 when idx is NULL) into new tensors
 * on dev: x (b,1,28,28) standardized, y (b) class indices. */
static void make_batch(const kx_fashion_mnist_split *d, const int64_t *idx, int64_t first, int64_t b,
                       kiln_device dev, float *xbuf, int64_t *ybuf, kiln_tensor **x, kiln_tensor **y) {
    for (int64_t i = 0; i < b; i++) {
        int64_t k = idx ? idx[first + i] : first + i;
        const float *src = d->images + k * IMG;
        for (int p = 0; p < IMG; p++) xbuf[i * IMG + p] = (src[p] - PIXEL_MEAN) / PIXEL_STD;
        ybuf[i] = d->labels[k];
    }
    *x = kiln_tensor_from_host(xbuf, 4, (int64_t[]){b, 1, 28, 28}, KILN_F32, dev);
    *y = kiln_tensor_from_host(ybuf, 1, (int64_t[]){b}, KILN_I64, dev);
}

/* Loads a split onto the CPU (the tensors live until kiln_shutdown) and keeps its
 * first `limit` samples when limit > 0. */
/* Argmax accuracy and mean cross-entropy over a split, in eval mode (batch norm uses
 * its running statistics) and without recording a tape. */
static kiln_status evaluate(kiln_module *model, const kx_fashion_mnist_split *d, kiln_device dev, float *xbuf,
                            int64_t *ybuf, int64_t chunk, double *accuracy, double *loss) {
    kiln_confusion_matrix *cm = kiln_confusion_matrix_create(10, KILN_IGNORE_INDEX_DEFAULT);
    if (!cm) return kiln_last_status();
    kiln_cross_entropy_options sum = kiln_cross_entropy_options_default();
    sum.reduction = KILN_REDUCTION_SUM;
    double total = 0;
    kiln_status st = KILN_STATUS_OK;
    kiln_module_train(model, false);
    kiln_no_grad_begin();
    for (int64_t first = 0; first < d->n && st == KILN_STATUS_OK; first += chunk) {
        int64_t b = d->n - first < chunk ? d->n - first : chunk;
        kiln_scope *s = kiln_scope_begin();
        kiln_tensor *x, *y;
        make_batch(d, NULL, first, b, dev, xbuf, ybuf, &x, &y);
        kiln_tensor *logits = kiln_module_forward(model, x);
        kiln_tensor *l = kiln_cross_entropy(logits, y, &sum);
        st = l ? kiln_confusion_matrix_update(cm, logits, y) : kiln_last_status();
        if (st == KILN_STATUS_OK) total += kiln_tensor_item(l);
        kiln_scope_end(s);
    }
    kiln_no_grad_end();
    kiln_module_train(model, true);
    *accuracy = kiln_confusion_matrix_argmax_accuracy(cm);
    *loss = total / (double)d->n;
    kiln_confusion_matrix_free(cm);
    return st;
}

/* ---- main --------------------------------------------------------------------------- */

enum { MAX_EPOCHS = 1000, MAX_BATCH = 4096, MAX_WIDTH = 256 };

int main(int argc, char **argv) {
    kiln_prefer_passive_wait(argv); /* idle threads sleep on shared cores (include/kiln/core.h) */
    kx_common_args a;
    kx_common_defaults(&a);
    a.batch = 64;
    a.out = "out/fashion_mnist";
    const char *model_name = "cnn", *optim_name = "adam", *schedule_name = "cosine";
    double lr = NAN, momentum = 0.9; /* NaN: not given (the parser never stores one) */
    int64_t limit = 0;
    int width = 16;
    kx_arg table[] = {
        KX_COMMON_ARG_TABLE(a),
        {"model", KX_ARG_CHOICE, &model_name, "mlp (784-256-128-10) or cnn (two conv stages)", "mlp|cnn"},
        {"optim", KX_ARG_CHOICE, &optim_name, "adam, or sgd with momentum", "adam|sgd"},
        {"lr", KX_ARG_DOUBLE, &lr, "learning rate > 0 (default: 1e-3 for adam, 0.05 for sgd)", NULL},
        {"schedule", KX_ARG_CHOICE, &schedule_name, "learning rate: cosine (decays to 0 by the last step) or constant",
         "cosine|constant"},
        {"momentum", KX_ARG_DOUBLE, &momentum, "sgd: momentum", NULL, 0, 1},
        {"width", KX_ARG_INT, &width, "cnn: channels of the first conv (the second has twice as many)", NULL, 1,
         MAX_WIDTH},
        {"limit", KX_ARG_I64, &limit, "use only the first N training and N test images (0: all)", NULL, 0, 1e9},
    };
    int nargs = (int)(sizeof table / sizeof table[0]);
    kx_args_set_range(nargs, table, "epochs", 1, MAX_EPOCHS);
    kx_args_set_range(nargs, table, "batch", 1, MAX_BATCH);
    kx_args_refuse(nargs, table, "size", "to fashion_mnist (its images are 28x28)");
    kx_args_result ar = kx_args_parse(argc, argv, "Fashion-MNIST classifier (MLP or CNN).", nargs, table);
    if (ar == KX_ARGS_HELP) return 0;
    if (ar == KX_ARGS_OK && !isnan(lr) && !(lr > 0))
        ar = (kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--lr: %g is not > 0", lr), KX_ARGS_ERROR);
    bool sgd = strcmp(optim_name, "sgd") == 0;
    /* options the chosen model or optimizer would ignore are refused, not dropped */
    if (ar == KX_ARGS_OK &&
        ((strcmp(model_name, "mlp") == 0 &&
          kx_args_not_for(argc, argv, nargs, table, "width", "to --model mlp (it sets the cnn's channels)")) ||
         (!sgd && kx_args_not_for(argc, argv, nargs, table, "momentum", "to --optim adam (it is sgd's)"))))
        ar = KX_ARGS_ERROR;
    if (ar == KX_ARGS_ERROR || kx_check_device(a.device) != KILN_STATUS_OK ||
        kx_args_apply_threads(a.threads) != KILN_STATUS_OK)
        return kx_args_exit("fashion_mnist");
    if (isnan(lr)) lr = sgd ? 0.05 : 1e-3;
    double t0 = kx_now_seconds();
    FILE *info = a.json ? stderr : stdout; /* --json keeps stdout for the result line */
    kiln_manual_seed((uint64_t)a.seed);    /* the weights' initialisation */
    kiln_device dev = a.device;
    char dname[32];
    kiln_device_name(dev, dname, sizeof dname);

    /* Everything a failure must release, so every error path goes through `done`. */
    kiln_module *model = NULL;
    kiln_optimizer *opt = NULL;
    kx_train_log *tlog = NULL;
    float *xbuf = NULL;
    int64_t *ybuf = NULL, *order = NULL;
    double *acc = NULL, *train_loss = NULL, *test_loss = NULL;
    int rc = 1;
    const char *what;
    kx_fashion_mnist_split train, test;
    kiln_status st = kx_fashion_mnist_prepare(a.out, a.data, limit, &train, &test, &what);
    if (!st) {
        what = "building the model";
        model = strcmp(model_name, "mlp") == 0 ? make_mlp() : make_cnn(width);
        /* one arena for the parameters, moved to the device before the optimizer sees it */
        st = model ? kiln_module_to(model, dev) : kiln_last_status();
    }
    int64_t chunk = 1000, steps_per_epoch = 0, bufn = a.batch > chunk ? a.batch : chunk;
    if (!st) {
        what = "allocating";
        steps_per_epoch = (train.n + a.batch - 1) / a.batch;
        xbuf = malloc(sizeof(float) * IMG * (size_t)bufn);
        ybuf = malloc(sizeof(int64_t) * (size_t)bufn);
        order = malloc(sizeof(int64_t) * (size_t)train.n);
        acc = calloc((size_t)a.epochs, sizeof(double));
        train_loss = calloc((size_t)a.epochs, sizeof(double));
        test_loss = calloc((size_t)a.epochs, sizeof(double));
        if (!xbuf || !ybuf || !order || !acc || !train_loss || !test_loss)
            st = kiln_set_error(KILN_STATUS_OOM, "out of memory for batches of %d and %lld images", a.batch,
                                (long long)train.n);
    }
    if (!st) {
        what = "creating the optimizer";
        opt = sgd ? kx_module_sgd(model, lr, momentum) : kx_module_adam(model, lr);
        if (!opt) st = kiln_last_status();
    }
    if (!st) {
        what = "opening the logs"; /* OUT/steps.csv, OUT/epochs.csv and --log-dir's events */
        if (!(tlog = kx_train_log_open(a.out, a.log_dir, 1, (const char *const[]){"test_argmax_accuracy"}, 0)))
            st = kiln_last_status();
    }
    if (st) goto done;

    uint64_t rng = (uint64_t)a.seed * 0x100000001ull + 1;
    fprintf(info, "fashion_mnist: %s (%lld parameters), %s lr %g (%s), %lld train / %lld test images, batch %d, %s\n",
            model_name, (long long)kiln_module_parameter_count(model), optim_name, lr, schedule_name, (long long)train.n,
            (long long)test.n, a.batch, dname);
    fflush(info);

    /* The learning rate at each step: cosine annealing from lr to 0 over the whole run
     * (torch's CosineAnnealingLR stepped every batch) lets the last epoch settle. */
    kiln_schedule sched = strcmp(schedule_name, "cosine") == 0 ? kiln_schedule_cosine(lr, steps_per_epoch * a.epochs, 0)
                                                               : kiln_schedule_constant(lr);
    what = "training";
    double train_seconds = 0, last_loss = NAN;
    int64_t steps = 0;
    for (int ep = 0; ep < a.epochs && st == KILN_STATUS_OK; ep++) {
        char label[32];
        snprintf(label, sizeof label, "epoch %d/%d", ep + 1, a.epochs);
        kx_progress bar;
        kx_progress_init(&bar, stderr, KX_PROGRESS_AUTO, label, steps_per_epoch);
        kx_progress_set_images(&bar, a.batch);
        kx_shuffle(order, train.n, &rng);
        double t_ep = kx_now_seconds(), loss_sum = 0;
        for (int64_t s = 0; s < steps_per_epoch && st == KILN_STATUS_OK; s++) {
            int64_t first = s * a.batch, b = train.n - first < a.batch ? train.n - first : a.batch;
            double t_step = kx_now_seconds();
            kiln_scope *scope = kiln_scope_begin(); /* the step's tensors and tape die at its end */
            kiln_tensor *x, *y;
            make_batch(&train, order, first, b, dev, xbuf, ybuf, &x, &y);
            kiln_tensor *loss = kiln_cross_entropy(kiln_module_forward(model, x), y, NULL);
            double step_lr = kiln_schedule_lr(&sched, steps);
            kiln_optimizer_set_lr(opt, step_lr);
            st = kx_train_step(opt, loss, &last_loss); /* also reports any error of the forward pass */
            kiln_scope_end(scope);
            /* a NaN or Inf loss poisons every weight it reaches: stop and say where */
            if (st == KILN_STATUS_OK) st = kx_check_loss(last_loss, ep + 1, s + 1, steps_per_epoch, lr);
            loss_sum += last_loss;
            steps++;
            double dt = kx_now_seconds() - t_step; /* the loss was read: the step is done */
            if (st == KILN_STATUS_OK)
                st = kx_train_log_step(tlog, ep + 1, steps, last_loss, step_lr, dt > 0 ? (double)b / dt : NAN);
            kx_progress_update(&bar, s + 1, last_loss);
        }
        if (st != KILN_STATUS_OK) break;
        kx_progress_finish(&bar);
        train_seconds += kx_now_seconds() - t_ep;
        train_loss[ep] = loss_sum / (double)steps_per_epoch;
        st = evaluate(model, &test, dev, xbuf, ybuf, chunk, &acc[ep], &test_loss[ep]);
        if (st == KILN_STATUS_OK) st = kx_train_log_epoch(tlog, ep + 1, train_loss[ep], test_loss[ep], &acc[ep]);
        fprintf(info, "epoch %d: train loss %.4f, test loss %.4f, test argmax accuracy %.4f\n", ep + 1,
                train_loss[ep], test_loss[ep], acc[ep]);
        fflush(info);
    }
    if (st) {
        fprintf(stderr, "\n");
        goto done;
    }

    /* Loss and accuracy per epoch as a picture next to the numbers. */
    what = "writing the weights";
    char path[4096] = "", weights[4096] = "";
    st = kx_export_weights(&a, model, weights, sizeof weights);
    if (st) goto done;
    what = "writing the plot";
    kx_series series[] = {{"train loss", train_loss, a.epochs},
                            {"test loss", test_loss, a.epochs},
                            {"test argmax accuracy", acc, a.epochs}};
    st = kx_path_join(path, sizeof path, a.out, "fashion_mnist_curves.png");
    if (!st) st = kx_plot_training_png(path, "Fashion-MNIST", "epoch", 2, series, 1, series + 2, 640, 480);
    if (st) goto done;
    fprintf(info, "wrote %s and %s\n", path, weights);
    fflush(info);
    kx_json j;
    kx_json_begin(&j);
    kx_json_string(&j, "program", "fashion_mnist");
    kx_json_string(&j, "model", model_name);
    kx_json_string(&j, "optim", optim_name);
    kx_json_string(&j, "device", dname);
    kx_json_int(&j, "threads", kiln_get_num_threads());
    kx_json_number(&j, "lr", lr);
    kx_json_string(&j, "schedule", schedule_name);
    kx_json_int(&j, "batch", a.batch);
    kx_json_int(&j, "epochs", a.epochs);
    kx_json_int(&j, "parameters", kiln_module_parameter_count(model));
    kx_json_int(&j, "train_images", train.n);
    kx_json_int(&j, "test_images", test.n);
    kx_json_int(&j, "steps", steps);
    kx_json_number(&j, "final_train_loss", last_loss);
    kx_json_number(&j, "test_argmax_accuracy", acc[a.epochs - 1]);
    kx_json_numbers(&j, "test_argmax_accuracy_per_epoch", acc, a.epochs);
    kx_json_numbers(&j, "train_loss_per_epoch", train_loss, a.epochs);
    kx_json_numbers(&j, "test_loss_per_epoch", test_loss, a.epochs);
    kx_json_number(&j, "train_steps_per_s", (double)steps / train_seconds);
    kx_json_string(&j, "plot", path);
    kx_json_string(&j, "weights", weights);
    kx_train_log_json(tlog, &j);
    kx_json_number(&j, "wall_s", kx_now_seconds() - t0);
    what = "closing the logs";
    st = kx_train_log_close(tlog);
    tlog = NULL;
    if (!st) kx_json_print(&j, stdout);
    else kx_json_free(&j);
    rc = st ? 1 : 0;
done:
    kx_train_log_close(tlog);
    if (st) fprintf(stderr, "fashion_mnist: %s failed: %s\n", what, kiln_last_error());
    free(xbuf);
    free(ybuf);
    free(order);
    free(acc);
    free(train_loss);
    free(test_loss);
    kiln_optimizer_free(opt);
    kiln_module_free(model);
    kiln_shutdown();
    return rc;
}

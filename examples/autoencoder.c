/* A Fashion-MNIST autoencoder (784-256-L-256-784, L = --latent, 32 by default) and an
 * analysis of its latent codes on the test set: per-unit mean and standard deviation,
 * the covariance matrix (kiln_cov) and its eigen-decomposition (kiln_eigh), how many
 * directions hold 90% and 99% of the variance, and which latent units weigh most.
 * Writes the eigen-spectrum and a grid of reconstructions as PNGs, and the weights alone
 * (model.safetensors, for torch), into --out (default out/autoencoder).
 *   autoencoder --latent 32 --epochs 5 --out results */
#include <kiln.h>
#include <kx.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define IMG 784 /* 28 x 28 */

/* ---- the model ------------------------------------------------------------------------
 * A root module with two children, so encoder and decoder share one parameter arena
 * (one optimizer, one checkpoint) and can still be run on their own. */

/* (N,1,28,28) -> codes (N,L) -> pixels in (0,1), shaped as the input. */
static kiln_tensor *autoencoder_forward(kiln_module *self, kiln_tensor *x) {
    kiln_tensor *z = kiln_module_forward(kiln_module_child(self, "encoder"), x);
    kiln_tensor *y = kiln_module_forward(kiln_module_child(self, "decoder"), z);
    return kiln_reshape(y, 4, (int64_t[]){-1, 1, 28, 28});
}

static kiln_module *make_autoencoder(int64_t latent) {
    kiln_module *enc[] = {kiln_flatten_create(1, -1), kiln_linear_create(IMG, 256, true, KILN_F32), kiln_relu_create(),
                          kiln_linear_create(256, latent, true, KILN_F32)}; /* linear codes: no ReLU at the end */
    kiln_module *dec[] = {kiln_linear_create(latent, 256, true, KILN_F32), kiln_relu_create(),
                          kiln_linear_create(256, IMG, true, KILN_F32), kiln_sigmoid_create()};
    kiln_module *e = kx_sequential_of(4, enc), *d = kx_sequential_of(4, dec);
    kiln_module *ae = kiln_module_create("Autoencoder", autoencoder_forward, NULL, NULL);
    /* kiln_module_add owns the child even when it fails; a part missing is no model */
    bool ok = kiln_module_add(ae, "encoder", e) == KILN_STATUS_OK;
    ok = kiln_module_add(ae, "decoder", d) == KILN_STATUS_OK && ok;
    if (ok) return ae;
    kiln_module_free(ae);
    return NULL;
}

/* Samples idx[first..first+b-1] (first..first+b-1 when idx is NULL) as (b,1,28,28) on dev. */
static kiln_tensor *make_batch(const kx_fashion_mnist_split *d, const int64_t *idx, int64_t first, int64_t b,
                               kiln_device dev, float *buf) {
    for (int64_t i = 0; i < b; i++)
        memcpy(buf + i * IMG, d->images + (idx ? idx[first + i] : first + i) * IMG, sizeof(float) * IMG);
    return kiln_tensor_from_host(buf, 4, (int64_t[]){b, 1, 28, 28}, KILN_F32, dev);
}

/* ---- the analysis of the codes ------------------------------------------------------------ */

typedef struct {
    int L;
    double *mean, *std;   /* per unit (std: unbiased, as torch.std) */
    double *eig;          /* covariance eigenvalues, largest first (clamped at 0) */
    double *vec;          /* L x L: column k is the eigenvector of eig[k] */
    double *ratio;        /* eig[k] / sum(eig): the explained-variance ratio */
    int k90, k99;         /* directions needed for 90% and 99% of the variance */
    int top[5];           /* the units that weigh most in the 90% subspace */
    double top_w[5];
} code_stats;

/* Z: (N, L) codes. Covariance through kiln_cov (observations in rows: rowvar false) and
 * its eigen-decomposition through kiln_eigh, in float64 on the CPU. */
/* The mean squared error per pixel of the test images' reconstructions, in eval mode
 * without a tape: the held-out loss of an epoch (for OUT/epochs.csv and TensorBoard). */
static kiln_status heldout_mse(kiln_module *ae, const kx_fashion_mnist_split *test, kiln_device dev, float *buf,
                               int64_t chunk, double *mse) {
    kiln_status st = KILN_STATUS_OK;
    double sum = 0;
    kiln_module_train(ae, false);
    kiln_no_grad_begin();
    for (int64_t first = 0; first < test->n && st == KILN_STATUS_OK; first += chunk) {
        int64_t b = test->n - first < chunk ? test->n - first : chunk;
        kiln_scope *s = kiln_scope_begin();
        kiln_tensor *x = make_batch(test, NULL, first, b, dev, buf);
        kiln_tensor *err = kiln_mse_loss(kiln_reshape(kiln_module_forward(ae, x), 4, (int64_t[]){-1, 1, 28, 28}), x,
                                         KILN_REDUCTION_SUM);
        if (err) sum += kiln_tensor_item(err);
        else st = kiln_last_status();
        kiln_scope_end(s);
    }
    kiln_no_grad_end();
    kiln_module_train(ae, true);
    *mse = sum / ((double)test->n * IMG);
    return st;
}

static kiln_status analyse_codes(kiln_tensor *Z, code_stats *s) {
    int L = (int)kiln_tensor_size(Z, 1);
    s->L = L;
    kiln_scope *scope = kiln_scope_begin();
    kiln_tensor *Z64 = kiln_tensor_cast(kiln_tensor_to(Z, KILN_CPU), KILN_F64);
    kiln_tensor *mean = kiln_mean(Z64, 1, (int[]){0}, false);
    kiln_tensor *cov = kiln_cov(Z64, false, 1), *values = NULL, *vectors = NULL;
    kiln_status st = cov ? KILN_STATUS_OK : kiln_last_status();
    double *c = malloc(sizeof(double) * (size_t)L * (size_t)L), *v = malloc(sizeof(double) * (size_t)L * (size_t)L);
    double *w = malloc(sizeof(double) * (size_t)L);
    s->mean = malloc(sizeof(double) * (size_t)L);
    s->std = malloc(sizeof(double) * (size_t)L);
    s->eig = malloc(sizeof(double) * (size_t)L);
    s->ratio = malloc(sizeof(double) * (size_t)L);
    s->vec = malloc(sizeof(double) * (size_t)L * (size_t)L);
    size_t mat = sizeof(double) * (size_t)L * (size_t)L;
    if (st == KILN_STATUS_OK && (!c || !v || !w || !s->mean || !s->std || !s->eig || !s->ratio || !s->vec))
        st = kiln_set_error(KILN_STATUS_OOM, "out of memory for the statistics of %d latent units", L);
    if (st == KILN_STATUS_OK) st = kiln_tensor_to_host(mean, s->mean, sizeof(double) * (size_t)L);
    if (st == KILN_STATUS_OK) st = kiln_tensor_to_host(cov, c, mat);
    /* Codes of a diverged model hold NaN or Inf, which no eigen-solver takes: say so. */
    for (size_t i = 0; st == KILN_STATUS_OK && i < (size_t)L * (size_t)L; i++)
        if (!isfinite(c[i]))
            st = kiln_set_error(KILN_STATUS_ANOMALY, "the covariance of the test set's latent codes holds %s: the "
                                "model diverged (lower --lr)", isnan(c[i]) ? "NaN" : "Inf");
    if (st == KILN_STATUS_OK) st = kiln_eigh(cov, &values, &vectors);
    if (st == KILN_STATUS_OK) st = kiln_tensor_to_host(values, w, sizeof(double) * (size_t)L);
    if (st == KILN_STATUS_OK) st = kiln_tensor_to_host(vectors, v, mat);
    if (st == KILN_STATUS_OK) {
        double total = 0;
        for (int i = 0; i < L; i++) s->std[i] = sqrt(c[i * L + i]);
        /* eigh gives ascending order: reverse it, so component 0 holds the most variance.
         * Round-off can leave a tiny negative eigenvalue on a singular covariance. */
        for (int k = 0; k < L; k++) {
            s->eig[k] = w[L - 1 - k] > 0 ? w[L - 1 - k] : 0;
            for (int i = 0; i < L; i++) s->vec[i * L + k] = v[i * L + (L - 1 - k)];
            total += s->eig[k];
        }
        double cum = 0;
        s->k90 = s->k99 = L;
        for (int k = 0; k < L; k++) {
            s->ratio[k] = total > 0 ? s->eig[k] / total : 0;
            cum += s->ratio[k];
            if (cum >= 0.90 && s->k90 == L) s->k90 = k + 1;
            if (cum >= 0.99 && s->k99 == L) s->k99 = k + 1;
        }
        /* A unit's weight: its share of the variance kept by the first k90 directions,
         * sum_k eig_k * v_ik^2 / sum_k eig_k (the weights of all units add up to 1). */
        double kept = 0;
        for (int k = 0; k < s->k90; k++) kept += s->eig[k];
        for (int i = 0; i < L; i++) {
            w[i] = 0;
            for (int k = 0; k < s->k90; k++) w[i] += s->eig[k] * s->vec[i * L + k] * s->vec[i * L + k];
            w[i] = kept > 0 ? w[i] / kept : 0;
        }
        for (int t = 0; t < 5; t++) {
            int best = -1;
            for (int i = 0; i < L; i++) {
                bool taken = false;
                for (int u = 0; u < t; u++) taken |= s->top[u] == i;
                if (!taken && (best < 0 || w[i] > w[best])) best = i;
            }
            s->top[t] = best;
            s->top_w[t] = best >= 0 ? w[best] : NAN;
        }
    }
    free(c);
    free(v);
    free(w);
    kiln_scope_end(scope);
    return st;
}

static void print_code_stats(FILE *f, const code_stats *s) {
    int L = s->L, show = L < 10 ? L : 10;
    fprintf(f, "\nlatent codes of the test set, mean ± standard deviation of each of the %d units:\n", L);
    for (int i = 0; i < L; i++)
        fprintf(f, "  unit %2d: %+6.2f ± %5.2f%s", i, s->mean[i], s->std[i], i % 4 == 3 || i == L - 1 ? "\n" : " ");
    fprintf(f, "covariance eigenvalues (largest first) and explained-variance ratios:\n");
    double cum = 0;
    for (int k = 0; k < show; k++) {
        cum += s->ratio[k];
        fprintf(f, "  %2d: eigenvalue %9.4f  ratio %6.2f%%  cumulative %6.2f%%\n", k + 1, s->eig[k], 100 * s->ratio[k],
                100 * cum);
    }
    if (show < L) fprintf(f, "  ... (%d more)\n", L - show);
    fprintf(f, "%d of %d directions hold 90%% of the variance, %d hold 99%%\n", s->k90, L, s->k99);
    /* The units with the largest loadings (eigenvector entries) on the top components. */
    for (int k = 0; k < 3 && k < L; k++) {
        int best[3] = {-1, -1, -1};
        for (int t = 0; t < 3 && t < L; t++)
            for (int i = 0; i < L; i++) {
                bool taken = false;
                for (int u = 0; u < t; u++) taken |= best[u] == i;
                if (!taken && (best[t] < 0 || fabs(s->vec[i * L + k]) > fabs(s->vec[best[t] * L + k]))) best[t] = i;
            }
        fprintf(f, "component %d: largest loadings", k + 1);
        for (int t = 0; t < 3 && t < L; t++) fprintf(f, " unit %d (%+.2f)", best[t], s->vec[best[t] * L + k]);
        fprintf(f, "\n");
    }
    fprintf(f, "units that weigh most (share of the variance in the top %d directions):", s->k90);
    for (int t = 0; t < 5 && t < L; t++) fprintf(f, " %d (%.1f%%)", s->top[t], 100 * s->top_w[t]);
    fprintf(f, "\n");
}

static void free_code_stats(code_stats *s) {
    free(s->mean);
    free(s->std);
    free(s->eig);
    free(s->vec);
    free(s->ratio);
}

/* ---- main ------------------------------------------------------------------------------- */

enum { MAX_EPOCHS = 1000, MAX_BATCH = 4096, MAX_LATENT = 784 };

int main(int argc, char **argv) {
    kiln_prefer_passive_wait(argv); /* idle threads sleep on shared cores (include/kiln/core.h) */
    kx_common_args a;
    kx_common_defaults(&a);
    a.batch = 128;
    a.epochs = 5;
    a.out = "out/autoencoder";
    int latent = 32;
    double lr = 1e-3;
    int64_t limit = 0;
    kx_arg table[] = {
        KX_COMMON_ARG_TABLE(a),
        {"latent", KX_ARG_INT, &latent, "latent units (code size)", NULL, 2, MAX_LATENT},
        {"lr", KX_ARG_DOUBLE, &lr, "Adam learning rate (> 0)", NULL},
        {"limit", KX_ARG_I64, &limit, "use only the first N training and N test images (0: all)", NULL, 0, 1e9},
    };
    int nargs = (int)(sizeof table / sizeof table[0]);
    kx_args_set_range(nargs, table, "epochs", 1, MAX_EPOCHS);
    kx_args_set_range(nargs, table, "batch", 1, MAX_BATCH);
    kx_args_refuse(nargs, table, "size", "to autoencoder (its images are 28x28)");
    kx_args_result ar = kx_args_parse(argc, argv, "Fashion-MNIST autoencoder and an analysis of its latent codes.",
                                      nargs, table);
    if (ar == KX_ARGS_HELP) return 0;
    if (ar == KX_ARGS_OK && !(lr > 0))
        ar = (kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--lr: %g is not > 0", lr), KX_ARGS_ERROR);
    if (ar == KX_ARGS_ERROR || kx_check_device(a.device) != KILN_STATUS_OK ||
        kx_args_apply_threads(a.threads) != KILN_STATUS_OK)
        return kx_args_exit("autoencoder");
    double t0 = kx_now_seconds();
    FILE *info = a.json ? stderr : stdout;
    kiln_manual_seed((uint64_t)a.seed);
    kiln_device dev = a.device;
    char dname[32];
    kiln_device_name(dev, dname, sizeof dname);

    /* Everything a failure must release, so every error path goes through `done`. */
    kiln_module *ae = NULL;
    kiln_optimizer *opt = NULL;
    kx_train_log *tlog = NULL;
    float *buf = NULL;
    int64_t *order = NULL;
    double *train_mse = NULL;
    code_stats cs = {0};
    int rc = 1;
    const char *what;
    kx_fashion_mnist_split train, test;
    kiln_status st = kx_fashion_mnist_prepare(a.out, a.data, limit, &train, &test, &what);
    if (!st && test.n < 2) st = kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "a covariance needs at least 2 test images");
    if (!st) {
        what = "building the model";
        ae = make_autoencoder(latent);
        /* one arena for the parameters, moved to the device before the optimizer sees it */
        st = ae ? kiln_module_to(ae, dev) : kiln_last_status();
    }
    int64_t chunk = 1000, bufn = a.batch > chunk ? a.batch : chunk, steps_per_epoch = 0;
    if (!st) {
        what = "allocating";
        steps_per_epoch = (train.n + a.batch - 1) / a.batch;
        buf = malloc(sizeof(float) * IMG * (size_t)bufn);
        order = malloc(sizeof(int64_t) * (size_t)train.n);
        train_mse = calloc((size_t)a.epochs, sizeof(double));
        if (!buf || !order || !train_mse)
            st = kiln_set_error(KILN_STATUS_OOM, "out of memory for batches of %d and %lld images", a.batch,
                                (long long)train.n);
    }
    if (!st) {
        what = "creating Adam";
        if (!(opt = kx_module_adam(ae, lr))) st = kiln_last_status();
    }
    if (!st) {
        what = "opening the logs"; /* OUT/steps.csv, OUT/epochs.csv and --log-dir's events */
        if (!(tlog = kx_train_log_open(a.out, a.log_dir, 0, NULL, 0))) st = kiln_last_status();
    }
    if (st) goto done;

    uint64_t rng = (uint64_t)a.seed * 0x100000001ull + 1;
    fprintf(info, "autoencoder: 784-256-%d-256-784 (%lld parameters), Adam lr %g, %lld train / %lld test images, "
                  "batch %d, %s\n",
            latent, (long long)kiln_module_parameter_count(ae), lr, (long long)train.n, (long long)test.n, a.batch,
            dname);
    fflush(info);

    what = "training";
    double last_loss = NAN;
    int64_t steps = 0;
    for (int ep = 0; ep < a.epochs && st == KILN_STATUS_OK; ep++) {
        char label[32];
        snprintf(label, sizeof label, "epoch %d/%d", ep + 1, a.epochs);
        kx_progress bar;
        kx_progress_init(&bar, stderr, KX_PROGRESS_AUTO, label, steps_per_epoch);
        kx_progress_set_images(&bar, a.batch);
        kx_shuffle(order, train.n, &rng);
        double sum = 0;
        for (int64_t s = 0; s < steps_per_epoch && st == KILN_STATUS_OK; s++) {
            int64_t first = s * a.batch, b = train.n - first < a.batch ? train.n - first : a.batch;
            double t_step = kx_now_seconds();
            kiln_scope *scope = kiln_scope_begin();
            kiln_tensor *x = make_batch(&train, order, first, b, dev, buf);
            /* The target is the input itself: mean squared error per pixel. */
            kiln_tensor *loss = kiln_mse_loss(kiln_module_forward(ae, x), x, KILN_REDUCTION_MEAN);
            st = kx_train_step(opt, loss, &last_loss);
            kiln_scope_end(scope);
            if (st == KILN_STATUS_OK) st = kx_check_loss(last_loss, ep + 1, s + 1, steps_per_epoch, lr);
            sum += last_loss;
            steps++;
            double dt = kx_now_seconds() - t_step; /* the loss was read: the step is done */
            if (st == KILN_STATUS_OK)
                st = kx_train_log_step(tlog, ep + 1, steps, last_loss, lr, dt > 0 ? (double)b / dt : NAN);
            kx_progress_update(&bar, s + 1, last_loss);
        }
        if (st != KILN_STATUS_OK) break;
        kx_progress_finish(&bar);
        train_mse[ep] = sum / (double)steps_per_epoch;
        double heldout = NAN;
        st = heldout_mse(ae, &test, dev, buf, chunk, &heldout);
        if (st == KILN_STATUS_OK) st = kx_train_log_epoch(tlog, ep + 1, train_mse[ep], heldout, NULL);
        fprintf(info, "epoch %d: train MSE %.5f, test MSE %.5f\n", ep + 1, train_mse[ep], heldout);
        fflush(info);
    }
    if (st) {
        fprintf(stderr, "\n");
        goto done;
    }

    /* Encode the test set (eval mode, no tape) into Z (N, L), and measure its
     * reconstruction error on the way. */
    what = "analysing the codes";
    double test_mse = 0;
    char spectrum_png[4096] = "", recon_png[4096] = "", weights[4096] = "";
    kiln_scope *keep = kiln_scope_begin();
    kiln_module *encoder = kiln_module_child(ae, "encoder"), *decoder = kiln_module_child(ae, "decoder");
    kiln_module_train(ae, false);
    kiln_no_grad_begin();
    kiln_tensor *Z = kiln_tensor_empty(2, (int64_t[]){test.n, latent}, KILN_F32, dev);
    if (!Z) st = kiln_last_status();
    for (int64_t first = 0; first < test.n && st == KILN_STATUS_OK; first += chunk) {
        int64_t b = test.n - first < chunk ? test.n - first : chunk;
        kiln_scope *s = kiln_scope_begin();
        kiln_tensor *x = make_batch(&test, NULL, first, b, dev, buf);
        kiln_tensor *z = kiln_module_forward(encoder, x);
        kiln_tensor *y = kiln_reshape(kiln_module_forward(decoder, z), 4, (int64_t[]){-1, 1, 28, 28});
        kiln_tensor *err = kiln_mse_loss(y, x, KILN_REDUCTION_SUM);
        st = err ? kiln_tensor_copy_(kiln_slice(Z, 0, first, first + b, 1), z) : kiln_last_status();
        if (st == KILN_STATUS_OK) test_mse += kiln_tensor_item(err);
        kiln_scope_end(s);
    }
    test_mse /= (double)test.n * IMG;
    if (st == KILN_STATUS_OK) st = analyse_codes(Z, &cs);

    /* Pictures: the spectrum, and the first test images beside their reconstructions. */
    if (st == KILN_STATUS_OK) what = "writing the pictures";
    if (st == KILN_STATUS_OK) st = kx_export_weights(&a, ae, weights, sizeof weights);
    if (st == KILN_STATUS_OK) st = kx_path_join(spectrum_png, sizeof spectrum_png, a.out, "autoencoder_spectrum.png");
    if (st == KILN_STATUS_OK) st = kx_path_join(recon_png, sizeof recon_png, a.out, "autoencoder_reconstructions.png");
    if (st == KILN_STATUS_OK)
        st = kx_plot_spectrum_png(spectrum_png, "latent covariance eigenvalues", cs.eig, latent, 640, 400);
    if (st == KILN_STATUS_OK) {
        int64_t n = test.n < 8 ? test.n : 8;
        kiln_tensor *x = make_batch(&test, NULL, 0, n, dev, buf);
        kiln_tensor *cols[2] = {x, kiln_module_forward(ae, x)};
        const char *titles[2] = {"input", "output"};
        st = cols[1] ? kx_grid_save_png(recon_png, 2, cols, titles, 8, 3) : kiln_last_status();
    }
    kiln_no_grad_end();
    kiln_scope_end(keep);
    if (st) goto done;

    fprintf(info, "test MSE %.5f\n", test_mse);
    print_code_stats(info, &cs);
    fprintf(info, "wrote %s, %s and %s\n", spectrum_png, recon_png, weights);
    fflush(info);
    kx_json j;
    kx_json_begin(&j);
    kx_json_string(&j, "program", "autoencoder");
    kx_json_string(&j, "device", dname);
    kx_json_int(&j, "threads", kiln_get_num_threads());
    kx_json_int(&j, "latent", latent);
    kx_json_int(&j, "epochs", a.epochs);
    kx_json_int(&j, "batch", a.batch);
    kx_json_int(&j, "parameters", kiln_module_parameter_count(ae));
    kx_json_int(&j, "train_images", train.n);
    kx_json_int(&j, "test_images", test.n);
    kx_json_int(&j, "steps", steps);
    kx_json_number(&j, "final_train_loss", last_loss);
    kx_json_numbers(&j, "train_mse_per_epoch", train_mse, a.epochs);
    kx_json_number(&j, "test_mse", test_mse);
    kx_json_numbers(&j, "code_mean", cs.mean, latent);
    kx_json_numbers(&j, "code_std", cs.std, latent);
    kx_json_numbers(&j, "eigenvalues", cs.eig, latent);
    kx_json_numbers(&j, "explained_variance_ratio", cs.ratio, latent);
    kx_json_int(&j, "components_90", cs.k90);
    kx_json_int(&j, "components_99", cs.k99);
    double top[5];
    for (int t = 0; t < 5; t++) top[t] = cs.top[t];
    kx_json_numbers(&j, "top_units", top, latent < 5 ? latent : 5);
    kx_json_numbers(&j, "top_unit_weights", cs.top_w, latent < 5 ? latent : 5);
    kx_json_string(&j, "spectrum_png", spectrum_png);
    kx_json_string(&j, "reconstructions_png", recon_png);
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
    if (st) fprintf(stderr, "autoencoder: %s failed: %s\n", what, kiln_last_error());
    free_code_stats(&cs);
    free(buf);
    free(order);
    free(train_mse);
    kiln_optimizer_free(opt);
    kiln_module_free(ae);
    kiln_shutdown();
    return rc;
}

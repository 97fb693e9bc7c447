/* A dense layer over a batch, with numbers: Y = X·W + b for all samples as ONE matrix
 * product gives each sample's own output; its backprop dX = dY·Wᵀ, dW = Xᵀ·dY,
 * db = Σ_rows dY equals the sum of the per-sample gradients; and one mini-batch SGD
 * step is not the same as one small step per sample. Exits 1 if an identity fails.
 *   dense_batch [--batch 16 --in-features 64 --out-features 10 --dtype f64 --device cpu] [--json]
 * It trains no model and writes no files, so it has no --out (giving one is an error). */
#include <kiln.h>
#include <kx.h>
#include <math.h>
#include <string.h>

/* max |a - b| over all elements, on whatever device a and b live. */
static double max_abs_diff(kiln_tensor *a, kiln_tensor *b) {
    kiln_no_grad_begin();
    kiln_tensor *d = kiln_flatten(kiln_abs(kiln_sub(a, b)), 0, -1);
    double v = kiln_tensor_item(kiln_max(d, 0, false));
    kiln_no_grad_end();
    return v;
}

/* A new leaf holding t's values, with requires_grad: a parameter to differentiate. */
static kiln_tensor *leaf(kiln_tensor *t) {
    kiln_tensor *c = kiln_tensor_clone(t);
    kiln_tensor_set_requires_grad(c, true);
    return c;
}

/* The dense layer as the formulas write it: W is (in, out), y = x·W + b. (kiln_linear
 * stores W as torch does, (out, in), and computes x·Wᵀ + b; part 1 checks they agree.) */
static kiln_tensor *dense(kiln_tensor *x, kiln_tensor *W, kiln_tensor *b) { return kiln_add(kiln_matmul(x, W), b); }

/* Sum over the rows of ½‖y − t‖²: its gradient with respect to Y is Y − T. */
static kiln_tensor *half_sq_error(kiln_tensor *y, kiln_tensor *t) {
    return kiln_mul_scalar(kiln_sum_all(kiln_pow_scalar(kiln_sub(y, t), 2.0)), 0.5);
}

/* The weights after one SGD step on the batch's mean loss (per_sample false), or after
 * B steps of lr/B, one per sample in order (per_sample true), from the same W0, b0. */
static void sgd_from(kiln_tensor *X, kiln_tensor *T, kiln_tensor *W0, kiln_tensor *b0, double lr, bool per_sample,
                     kiln_tensor **W_out, kiln_tensor **b_out) {
    int64_t B = kiln_tensor_size(X, 0);
    kiln_tensor *W = leaf(W0), *b = leaf(b0);
    for (int64_t i = 0; i < (per_sample ? B : 1); i++) {
        kiln_tensor *x = per_sample ? kiln_slice(X, 0, i, i + 1, 1) : X;
        kiln_tensor *t = per_sample ? kiln_slice(T, 0, i, i + 1, 1) : T;
        /* The usual training loss is the batch MEAN, so each of the B per-sample steps
         * takes lr/B: both variants move the weights by the same total step size. */
        kiln_tensor *loss = kiln_mul_scalar(half_sq_error(dense(x, W, b), t), 1.0 / (double)B);
        kiln_tensor_zero_grad(W);
        kiln_tensor_zero_grad(b);
        kiln_backward(loss, NULL);
        kiln_no_grad_begin();
        kiln_tensor_copy_(W, kiln_sub(W, kiln_mul_scalar(kiln_tensor_grad(W), lr)));
        kiln_tensor_copy_(b, kiln_sub(b, kiln_mul_scalar(kiln_tensor_grad(b), lr)));
        kiln_no_grad_end();
    }
    *W_out = W;
    *b_out = b;
}

/* max |t|: the scale a difference is judged against. */
static double max_abs(kiln_tensor *t) {
    kiln_no_grad_begin();
    double v = kiln_tensor_item(kiln_max(kiln_flatten(kiln_abs(t), 0, -1), 0, false));
    kiln_no_grad_end();
    return v;
}

/* Prints one identity check; it holds when the difference is rounding only: at most
 * rel times the size of the values compared. */
static bool check(FILE *f, const char *what, double diff, kiln_tensor *ref, double rel) {
    double scale = max_abs(ref);
    bool ok = diff <= rel * (scale > 1 ? scale : 1);
    fprintf(f, "  max |diff| %.3e (values up to %.3g)  %-6s  %s\n", diff, scale, ok ? "ok" : "FAILED", what);
    return ok;
}

int main(int argc, char **argv) {
    kiln_prefer_passive_wait(argv); /* idle threads sleep on shared cores (include/kiln/core.h) */
    kiln_device device = kx_args_default_device();
    int B = 16, in = 64, out = 10;
    int64_t seed = 0;
    const char *dtype_name = "auto", *out_dir = NULL;
    bool json = false;
    int threads = kiln_get_num_threads(); /* the library's default, as --help shows it */
    kx_arg table[] = {
        {"device", KX_ARG_DEVICE, &device, "cpu, cuda or cuda:N (cuda when present)", NULL},
        {"batch", KX_ARG_INT, &B, "samples in the batch", NULL, 2, 1024},
        {"in-features", KX_ARG_INT, &in, "input features", NULL, 1, 1024},
        {"out-features", KX_ARG_INT, &out, "output features", NULL, 1, 1024},
        {"dtype", KX_ARG_CHOICE, &dtype_name, "f64 (CPU only), f32, or auto: f64 on the CPU, f32 elsewhere",
         "auto|f32|f64"},
        {"seed", KX_ARG_I64, &seed, "random seed", NULL},
        KX_THREADS_ARG(threads),
        {"json", KX_ARG_FLAG, &json, "print only the final JSON line on stdout", NULL},
        {"out", KX_ARG_STRING, &out_dir, NULL, NULL, .refused = "to dense_batch: it writes no files (the number of "
         "output features is --out-features)"},
    };
    int nargs = (int)(sizeof table / sizeof table[0]);
    kx_args_result ar = kx_args_parse(argc, argv, "Dense layer over a batch: one matrix product, its backprop, "
                                      "and mini-batch vs per-sample steps.",
                                      nargs, table);
    if (ar == KX_ARGS_HELP) return 0;
    if (ar == KX_ARGS_ERROR || kx_args_apply_threads(threads) != KILN_STATUS_OK)
        return kx_args_exit("dense_batch");
    kiln_dtype dt = strcmp(dtype_name, "f64") == 0   ? KILN_F64
                    : strcmp(dtype_name, "f32") == 0 ? KILN_F32
                    : device.type == KILN_DEVICE_CPU ? KILN_F64
                                                     : KILN_F32;
    /* What "equal" means: rounding only. The same sums taken in another order differ by
     * a few ulps of the values, times up to the length of the sums (batch, features). */
    double tol = dt == KILN_F64 ? 1e-12 : 1e-4;
    double t0 = kx_now_seconds();
    FILE *f = json ? stderr : stdout;
    char dname[32];
    kiln_device_name(device, dname, sizeof dname);
    kiln_manual_seed((uint64_t)seed);

    kiln_scope *scope = kiln_scope_begin();
    kiln_tensor *X = kiln_tensor_randn(2, (int64_t[]){B, in}, 0, 1, dt, device);
    kiln_tensor *T = kiln_tensor_randn(2, (int64_t[]){B, out}, 0, 1, dt, device);
    kiln_tensor *W0 = kiln_tensor_randn(2, (int64_t[]){in, out}, 0, 0.5, dt, device);
    kiln_tensor *b0 = kiln_tensor_randn(1, (int64_t[]){out}, 0, 0.1, dt, device);
    if (!X || !T || !W0 || !b0) {
        fprintf(stderr, "dense_batch: %s\n", kiln_last_error());
        kiln_shutdown();
        return 1;
    }
    fprintf(f, "dense layer y = x·W + b: batch %d, %d -> %d features, %s on %s\n\n", B, in, out, kiln_dtype_name(dt),
            dname);

    /* ---- 1. forward: one product for the batch = one product per sample ---- */
    kiln_tensor *W = leaf(W0), *b = leaf(b0), *Xl = leaf(X);
    kiln_tensor *Y = dense(Xl, W, b); /* (B, in)·(in, out): one GEMM */
    double fwd = 0;
    bool ok = true;
    for (int i = 0; i < B; i++) {
        kiln_tensor *xi = kiln_slice(X, 0, i, i + 1, 1); /* (1, in) */
        double d = max_abs_diff(kiln_slice(Y, 0, i, i + 1, 1), dense(xi, W0, b0));
        fwd = d > fwd ? d : fwd;
    }
    /* kiln's dense layer stores the weight transposed, (out, in), as torch.nn.Linear. */
    double lin = max_abs_diff(Y, kiln_linear(X, kiln_tensor_contiguous(kiln_transpose(W0, 0, 1)), b0));
    fprintf(f, "1. forward\n");
    ok &= check(f, "rows of X·W + b vs x_i·W + b, sample by sample", fwd, Y, tol);
    ok &= check(f, "X·W + b vs kiln_linear(X, Wᵀ, b)", lin, Y, tol);

    /* ---- 2. backward: the batch gradient is the sum of per-sample gradients ---- */
    kiln_tensor *loss = half_sq_error(Y, T); /* L = Σ_i ½‖y_i − t_i‖², so dY = Y − T */
    kiln_status st = kiln_backward(loss, NULL);
    kiln_tensor *dX = kiln_tensor_clone(kiln_tensor_grad(Xl)), *dW = kiln_tensor_clone(kiln_tensor_grad(W));
    kiln_tensor *db = kiln_tensor_clone(kiln_tensor_grad(b));
    kiln_no_grad_begin();
    kiln_tensor *dY = kiln_sub(Y, T);
    double fx = max_abs_diff(dX, kiln_matmul(dY, kiln_transpose(W0, 0, 1)));     /* dX = dY·Wᵀ */
    double fw = max_abs_diff(dW, kiln_matmul(kiln_transpose(X, 0, 1), dY));      /* dW = Xᵀ·dY */
    double fb = max_abs_diff(db, kiln_sum(dY, 1, (int[]){0}, false));            /* db = Σ_rows dY */
    kiln_no_grad_end();
    /* Per sample: B separate backward passes. Gradients accumulate in .grad across
     * backward calls, so after zeroing once, W.grad ends as Σ_i dW_i. */
    kiln_tensor_zero_grad(W);
    kiln_tensor_zero_grad(b);
    double px = 0;
    for (int i = 0; i < B && st == KILN_STATUS_OK; i++) {
        kiln_tensor *xi = leaf(kiln_slice(X, 0, i, i + 1, 1));
        st = kiln_backward(half_sq_error(dense(xi, W, b), kiln_slice(T, 0, i, i + 1, 1)), NULL);
        double d = max_abs_diff(kiln_tensor_grad(xi), kiln_slice(dX, 0, i, i + 1, 1)); /* dx_i is row i of dX */
        px = d > px ? d : px;
    }
    double pw = max_abs_diff(kiln_tensor_grad(W), dW), pb = max_abs_diff(kiln_tensor_grad(b), db);
    fprintf(f, "\n2. backward (autograd of L = Σ_i ½‖y_i − t_i‖², dY = Y − T)\n");
    ok &= check(f, "autograd dX vs dY·Wᵀ", fx, dX, tol);
    ok &= check(f, "autograd dW vs Xᵀ·dY", fw, dW, tol);
    ok &= check(f, "autograd db vs Σ_rows dY", fb, db, tol);
    ok &= check(f, "row i of dX vs dx_i of sample i alone", px, dX, tol);
    ok &= check(f, "dW vs Σ_i dW_i (B backward passes)", pw, dW, tol);
    ok &= check(f, "db vs Σ_i db_i", pb, db, tol);

    /* ---- 3. one mini-batch step vs B per-sample steps ---- */
    fprintf(f, "\n3. SGD on the mean loss from the same W0: one batch step of lr vs B steps of lr/B\n");
    enum { NLR = 3 };
    const double lrs[NLR] = {0.1, 0.01, 0.001};
    double seq[NLR];
    for (int k = 0; k < NLR && st == KILN_STATUS_OK; k++) {
        kiln_tensor *Wb, *bb, *Ws, *bs;
        sgd_from(X, T, W0, b0, lrs[k], false, &Wb, &bb);
        sgd_from(X, T, W0, b0, lrs[k], true, &Ws, &bs);
        double dw = max_abs_diff(Wb, Ws), dbias = max_abs_diff(bb, bs);
        seq[k] = dw > dbias ? dw : dbias;
        fprintf(f, "  lr %-6g max |W_batch − W_per_sample| = %.3e\n", lrs[k], seq[k]);
    }
    /* The batch step with the per-sample gradients of part 2, all taken at W0: the same
     * as the mini-batch step (this is gradient accumulation). */
    kiln_tensor *Wb, *bb;
    sgd_from(X, T, W0, b0, lrs[0], false, &Wb, &bb);
    kiln_no_grad_begin();
    kiln_tensor *Wacc = kiln_sub(W0, kiln_mul_scalar(kiln_tensor_grad(W), lrs[0] / B));
    kiln_no_grad_end();
    double acc = max_abs_diff(Wb, Wacc);
    double ratio = seq[0] / seq[1];
    ok &= check(f, "per-sample gradients all taken at W0, summed, one step of lr", acc, Wb, tol);
    fprintf(f, "\n  Each per-sample step moves W before the next sample's gradient is taken, so sample i\n"
               "  sees W0 − (lr/B)·Σ_{j<i} g_j instead of W0. The gap is second order in lr: lr 10x smaller\n"
               "  gives a gap %.0fx smaller. A mini-batch step is the per-sample gradients accumulated at one\n"
               "  point, which is why it can run as one matrix product.\n",
            ratio);

    /* The per-sample run must really differ (10⁴ ulps and more) and shrink as lr². */
    double ulp = dt == KILN_F64 ? 2.2e-16 : 1.2e-7;
    ok = ok && st == KILN_STATUS_OK && seq[0] > 1e4 * ulp * max_abs(W0) && ratio > 30 && ratio < 300;
    if (st != KILN_STATUS_OK) fprintf(stderr, "dense_batch: %s\n", kiln_last_error());

    kx_json j;
    kx_json_begin(&j);
    kx_json_string(&j, "program", "dense_batch");
    kx_json_string(&j, "device", dname);
    kx_json_int(&j, "threads", kiln_get_num_threads());
    kx_json_string(&j, "dtype", kiln_dtype_name(dt));
    kx_json_int(&j, "batch", B);
    kx_json_int(&j, "in_features", in);
    kx_json_int(&j, "out_features", out);
    kx_json_number(&j, "relative_tolerance", tol);
    kx_json_number(&j, "forward_per_sample_max_abs_diff", fwd);
    kx_json_number(&j, "forward_kiln_linear_max_abs_diff", lin);
    kx_json_number(&j, "dX_formula_max_abs_diff", fx);
    kx_json_number(&j, "dW_formula_max_abs_diff", fw);
    kx_json_number(&j, "db_formula_max_abs_diff", fb);
    kx_json_number(&j, "dX_per_sample_max_abs_diff", px);
    kx_json_number(&j, "dW_sum_per_sample_max_abs_diff", pw);
    kx_json_number(&j, "db_sum_per_sample_max_abs_diff", pb);
    kx_json_number(&j, "accumulated_step_max_abs_diff", acc);
    kx_json_numbers(&j, "step_lr", lrs, NLR);
    kx_json_numbers(&j, "batch_vs_per_sample_steps_max_abs_diff", seq, NLR);
    kx_json_number(&j, "gap_ratio_lr_10x", ratio);
    kx_json_bool(&j, "identities_hold", ok);
    kx_json_number(&j, "wall_s", kx_now_seconds() - t0);
    if (!json) fprintf(f, "\n");
    kx_json_print(&j, stdout);
    kiln_scope_end(scope);
    kiln_shutdown();
    return ok ? 0 : 1;
}

/* kiln_bench: times kiln on the cases of issue 8 (the same cases as
 * benchmarks/torch/bench_torch.py) and writes one JSON document. Each case is set
 * up outside the clock, warmed up, then timed rep by rep (host clock on the CPU,
 * CUDA events on kiln's stream on CUDA); the pool's backing allocations made during
 * the timed reps are counted (steady state must make none).
 *   kiln_bench [--device cpu|cuda] [--case a,b] [--reps N] [--json out.json] [--list] */
#include "bench.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kx.h"
#include "models/unet.h"

#define MAX_T 8

typedef struct {
    kiln_device dev;
    bool cuda;
    kiln_tensor *t[MAX_T];
    kiln_module *m;
    kiln_optimizer *opt;
    float *host[3];
    int64_t it, n_batches, steps;
    const char *data_dir;
} bctx;

enum { ON_CPU = 1, ON_CUDA = 2 };

typedef struct {
    const char *name, *what;
    int where;             /* devices it runs on by default; a named --case runs anywhere */
    int warmup, reps_cpu, reps_cuda;
    int calls_per_rep;     /* the reported time is per call (tiny op) */
    bool host_clock;       /* host time even on CUDA (launch overhead) */
    double flops, bytes;   /* per call: useful work, and the minimal memory traffic */
    kiln_status (*setup)(bctx *);
    kiln_status (*step)(bctx *);
    void (*teardown)(bctx *);
    /* CPU only: a reference timed in alternation with step, rep by rep, so both see
     * the same machine load (the BLAS called directly, for the GEMM target) */
    kiln_status (*ref)(bctx *);
} bcase;

/* The status of a step: the first error since the case began, or a NULL result. */
static kiln_status done(const void *result) {
    kiln_status s = kiln_last_status();
    if (s == KILN_STATUS_OK && !result) s = kiln_set_error(KILN_STATUS_STATE, "bench: a step returned NULL");
    return s;
}

static kiln_status rg(kiln_tensor *t) { return t ? kiln_tensor_set_requires_grad(t, true) : kiln_last_status(); }

#define SHAPE(...) (int64_t[]){__VA_ARGS__}
#define NDIM(...) ((int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
#define FX(c, i, k, off, ...) ((c)->t[i] = bench_fx_tensor((c)->dev, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), k, off))

/* ---- GEMM ------------------------------------------------------------------------------ */

static kiln_status gemm_setup_n(bctx *c, int64_t n) {
    FX(c, 0, 0, 0, n, n);
    FX(c, 1, 1, 0, n, n);
    return done(c->t[1]);
}
static kiln_status cblas_setup(bctx *c);
static kiln_status gemm1024_setup(bctx *c) { return c->cuda ? gemm_setup_n(c, 1024) : cblas_setup(c); }
static kiln_status gemm4096_setup(bctx *c) { return gemm_setup_n(c, 4096); }

static kiln_status gemm_step(bctx *c) {
    kiln_scope *s = kiln_scope_begin();
    kiln_status st = done(kiln_matmul(c->t[0], c->t[1]));
    kiln_scope_end(s);
    return st;
}

/* The reference for the "within 5% of the BLAS" target: the same product through
 * cblas_sgemm on buffers allocated once, so nothing but the GEMM is timed. */
static kiln_status cblas_setup(bctx *c) {
    kiln_status st = gemm_setup_n(c, 1024);
    c->host[0] = malloc(1024 * 1024 * sizeof(float));
    if (st == KILN_STATUS_OK && !c->host[0]) st = kiln_set_error(KILN_STATUS_OOM, "bench: no host memory");
    return st;
}

static kiln_status cblas_step(bctx *c) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1024, 1024, 1024, 1.0f, kiln_tensor_data(c->t[0]), 1024,
                kiln_tensor_data(c->t[1]), 1024, 0.0f, c->host[0], 1024);
    return KILN_STATUS_OK;
}

/* ---- layers and losses: forward + backward ----------------------------------------------- */

static kiln_status linear_setup(bctx *c) {
    FX(c, 0, 0, 0, 256, 784);
    FX(c, 1, 1, 0, 512, 784);
    FX(c, 2, 2, 0, 512);
    FX(c, 3, 3, 0, 256, 512);
    for (int i = 0; i < 3; i++) rg(c->t[i]);
    return done(c->t[3]);
}

static kiln_status linear_step(bctx *c) {
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *y = kiln_linear(c->t[0], c->t[1], c->t[2]);
    kiln_status st = y ? kiln_backward(y, c->t[3]) : done(y);
    kiln_scope_end(s);
    return st;
}

static kiln_status conv_setup(bctx *c) {
    FX(c, 0, 0, 0, 16, 64, 64, 64);
    FX(c, 1, 1, 0, 64, 64, 3, 3);
    FX(c, 2, 2, 0, 64);
    FX(c, 3, 3, 0, 16, 64, 64, 64);
    for (int i = 0; i < 3; i++) rg(c->t[i]);
    return done(c->t[3]);
}

static kiln_status conv_step(bctx *c) {
    kiln_scope *s = kiln_scope_begin();
    kiln_conv2d_params p = kiln_conv2d_params_default();
    p.padding[0] = p.padding[1] = 1;
    kiln_tensor *y = kiln_conv2d(c->t[0], c->t[1], c->t[2], &p);
    kiln_status st = y ? kiln_backward(y, c->t[3]) : done(y);
    kiln_scope_end(s);
    return st;
}

static kiln_status ce_setup(bctx *c) {
    FX(c, 0, 0, 0, 8, 7, 256, 256);
    c->t[1] = bench_fx_labels(c->dev, 3, SHAPE(8, 256, 256), 1, 7);
    rg(c->t[0]);
    return done(c->t[1]);
}

static kiln_status ce_step(bctx *c) {
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *loss = kiln_cross_entropy(c->t[0], c->t[1], NULL);
    kiln_status st = loss ? kiln_backward(loss, NULL) : done(loss);
    kiln_scope_end(s);
    return st;
}

static kiln_status bce_setup(bctx *c) {
    FX(c, 0, 0, 0, 8, 7, 256, 256);
    c->t[1] = bench_fx_binary(c->dev, 4, SHAPE(8, 7, 256, 256), 1);
    rg(c->t[0]);
    return done(c->t[1]);
}

static kiln_status bce_step(bctx *c) {
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *loss = kiln_bce_with_logits(c->t[0], c->t[1], NULL, NULL, KILN_REDUCTION_MEAN);
    kiln_status st = loss ? kiln_backward(loss, NULL) : done(loss);
    kiln_scope_end(s);
    return st;
}

/* ---- training steps ----------------------------------------------------------------------- */

/* Parameter k gets the formula's tensor k; batch-norm scales (1-d "weight") get 1 + fx,
 * as tests/test_unet.c and bench_torch.py do. */
static kiln_status fill_params(kiln_module *m) {
    int np = kiln_module_num_parameters(m);
    for (int k = 0; k < np; k++) {
        const char *name;
        kiln_tensor *p = kiln_module_parameter(m, k, &name);
        size_t len = strlen(name);
        bool bn_scale = kiln_tensor_ndim(p) == 1 && len >= 6 && !strcmp(name + len - 6, "weight");
        kiln_scope *s = kiln_scope_begin();
        kiln_tensor *v = bench_fx_tensor(kiln_tensor_device(p), kiln_tensor_ndim(p), kiln_tensor_shape(p), k,
                                         bn_scale ? 1.0 : 0.0);
        kiln_status st = v ? kiln_tensor_copy_(p, v) : kiln_last_status();
        kiln_scope_end(s);
        if (st != KILN_STATUS_OK) return st;
    }
    return KILN_STATUS_OK;
}

static kiln_status make_adam(bctx *c) {
    int np = kiln_module_num_parameters(c->m);
    kiln_tensor **ps = malloc((size_t)np * sizeof *ps);
    if (!ps) return kiln_set_error(KILN_STATUS_OOM, "bench: no host memory");
    for (int k = 0; k < np; k++) ps[k] = kiln_module_parameter(c->m, k, NULL);
    c->opt = kiln_optim_adam(ps, np, kiln_adam_defaults());
    free(ps);
    return done(c->opt);
}

/* kiln's modules are created on the CPU and have no device transfer yet. */
static kiln_status modules_on_device(bctx *c) {
    if (!c->cuda) return KILN_STATUS_OK;
    return kiln_set_error(KILN_STATUS_NOT_IMPLEMENTED,
                          "modules are created on the CPU and kiln has no module-to-device transfer yet");
}

static kiln_status unet_setup(bctx *c) {
    kiln_status st = modules_on_device(c);
    if (st != KILN_STATUS_OK) return st;
    int64_t n = c->cuda ? 32 : 4, hw = c->cuda ? 256 : 128;
    c->m = unet_create(3, 1, 16, KILN_F32);
    if (!c->m) return done(c->m);
    kiln_module_train(c->m, true);
    if ((st = kiln_module_finalize(c->m)) || (st = fill_params(c->m)) || (st = make_adam(c))) return st;
    int np = kiln_module_num_parameters(c->m);
    c->t[0] = bench_fx_tensor(c->dev, 4, SHAPE(n, 3, hw, hw), np, 0);
    c->t[1] = bench_fx_binary(c->dev, 4, SHAPE(n, 1, hw, hw), np + 1);
    return done(c->t[1]);
}

static kiln_status unet_step(bctx *c) {
    kiln_scope *s = kiln_scope_begin();
    kiln_optimizer_zero_grad(c->opt);
    kiln_tensor *logits = kiln_module_forward(c->m, c->t[0]);
    kiln_tensor *loss = kiln_bce_with_logits(logits, c->t[1], NULL, NULL, KILN_REDUCTION_MEAN);
    kiln_status st = loss ? kiln_backward(loss, NULL) : done(loss);
    if (st == KILN_STATUS_OK) st = kiln_optimizer_step(c->opt);
    kiln_scope_end(s);
    return st;
}

/* The Fashion-MNIST CNN: conv(1,16,3,p1) relu pool2, conv(16,32,3,p1) relu pool2,
 * flatten, linear(1568,10); batch 64, Adam, cross-entropy; batches in file order. */
#define FM_BATCH 64

static kiln_status fmnist_setup(bctx *c) {
    kiln_status st = modules_on_device(c);
    if (st != KILN_STATUS_OK) return st;
    kiln_tensor *images = NULL, *labels = NULL;
    if ((st = kx_fashion_mnist_load(c->data_dir, true, c->dev, &images, &labels))) return st;
    c->t[0] = images;
    c->t[1] = labels;
    c->n_batches = kiln_tensor_size(images, 0) / FM_BATCH; /* drop_last */
    kiln_module *m = c->m = kiln_sequential_create();
    bool ok = m && !kiln_sequential_append(m, kiln_conv2d_create(1, 16, 3, 1, 1, true, KILN_F32)) &&
              !kiln_sequential_append(m, kiln_relu_create()) &&
              !kiln_sequential_append(m, kiln_max_pool2d_create(2, 2, 0)) &&
              !kiln_sequential_append(m, kiln_conv2d_create(16, 32, 3, 1, 1, true, KILN_F32)) &&
              !kiln_sequential_append(m, kiln_relu_create()) &&
              !kiln_sequential_append(m, kiln_max_pool2d_create(2, 2, 0)) &&
              !kiln_sequential_append(m, kiln_flatten_create(1, -1)) &&
              !kiln_sequential_append(m, kiln_linear_create(32 * 7 * 7, 10, true, KILN_F32));
    if (!ok) return done(NULL);
    if ((st = kiln_module_finalize(m)) || (st = fill_params(m)) || (st = make_adam(c))) return st;
    return KILN_STATUS_OK;
}

static kiln_status fmnist_one(bctx *c) {
    int64_t b = c->it++ % c->n_batches;
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *x = kiln_slice(c->t[0], 0, b * FM_BATCH, (b + 1) * FM_BATCH, 1);
    kiln_tensor *y = kiln_slice(c->t[1], 0, b * FM_BATCH, (b + 1) * FM_BATCH, 1);
    kiln_optimizer_zero_grad(c->opt);
    kiln_tensor *loss = kiln_cross_entropy(kiln_module_forward(c->m, x), y, NULL);
    kiln_status st = loss ? kiln_backward(loss, NULL) : done(loss);
    if (st == KILN_STATUS_OK) st = kiln_optimizer_step(c->opt);
    kiln_scope_end(s);
    return st;
}

static kiln_status fmnist_step(bctx *c) {
    for (int64_t i = 0; i < c->steps; i++) {
        kiln_status st = fmnist_one(c);
        if (st != KILN_STATUS_OK) return st;
    }
    return KILN_STATUS_OK;
}

/* ---- per-op overhead -------------------------------------------------------------------------- */

#define TINY_CALLS 1000

static kiln_status tiny_setup(bctx *c) {
    FX(c, 0, 0, 0, 1);
    FX(c, 1, 1, 0, 1);
    return done(c->t[1]);
}

static kiln_status tiny_step(bctx *c) {
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *r = NULL;
    for (int i = 0; i < TINY_CALLS; i++) r = kiln_add(c->t[0], c->t[1]);
    kiln_status st = done(r);
    kiln_scope_end(s);
    return st;
}

static void teardown(bctx *c) {
    kiln_optimizer_free(c->opt);
    if (c->m) kiln_module_free(c->m);
    for (int i = 0; i < 3; i++) free(c->host[i]);
    /* the case's tensors belong to the case scope, ended by the caller */
}

/* ---- the cases ----------------------------------------------------------------------------------- */

#define MIB (1024.0 * 1024.0)
static const bcase CASES[] = {
    {"gemm_1024", "matmul 1024x1024 @ 1024x1024 (f32)", ON_CPU | ON_CUDA, 3, 20, 50, 1, false,
     2.0 * 1024 * 1024 * 1024, 3 * 4 * MIB, gemm1024_setup, gemm_step, NULL, cblas_step},
    {"gemm_1024_cblas", "cblas_sgemm 1024^3 called directly (the BLAS reference)", ON_CPU, 3, 20, 0, 1, false,
     2.0 * 1024 * 1024 * 1024, 3 * 4 * MIB, cblas_setup, cblas_step, NULL},
    {"gemm_4096", "matmul 4096x4096 @ 4096x4096 (f32; GPU only by default)", ON_CUDA, 2, 3, 20, 1, false,
     2.0 * 4096 * 4096 * 4096, 3 * 64 * MIB, gemm4096_setup, gemm_step, NULL},
    {"linear", "linear 784->512 over B=256, forward + backward (dX, dW, db)", ON_CPU | ON_CUDA, 3, 30, 50, 1, false,
     3 * 2.0 * 256 * 784 * 512, 0, linear_setup, linear_step, NULL},
    {"conv3x3", "conv2d 3x3 pad 1, N=16 64->64 64x64, forward + backward (dx, dW, db)", ON_CPU | ON_CUDA, 1, 5, 30, 1,
     false, 3 * 2.0 * 16 * 64 * 64 * 64 * 64 * 9, 0, conv_setup, conv_step, NULL},
    /* minimal traffic: forward reads logits and targets, backward reads them again and
     * writes the logits' gradient, accumulation into .grad reads and writes it once more */
    {"softmax_ce", "per-pixel softmax + cross-entropy (8,7,256,256), class targets, forward + backward",
     ON_CPU | ON_CUDA, 3, 20, 50, 1, false, 0, 3.0 * 8 * 7 * 65536 * 4 + 2.0 * 8 * 65536 * 8, ce_setup, ce_step, NULL},
    {"bce_logits", "bce_with_logits (8,7,256,256), forward + backward", ON_CPU | ON_CUDA, 3, 20, 50, 1, false, 0,
     5.0 * 8 * 7 * 65536 * 4, bce_setup, bce_step, NULL},
    {"unet16_step", "U-Net-16 training step (bce_with_logits, Adam); CPU N=4 3x128x128, GPU N=32 3x256x256",
     ON_CPU | ON_CUDA, 2, 5, 20, 1, false, 0, 0, unet_setup, unet_step, teardown},
    {"fmnist_cnn", "Fashion-MNIST CNN training epoch, batch 64 (937 steps; --fmnist-steps N for fewer)",
     ON_CPU | ON_CUDA, 1, 3, 3, 1, false, 0, 0, fmnist_setup, fmnist_step, teardown},
    {"tiny_op", "host time per kiln_add of two 1-element tensors (1000 calls in one scope)", ON_CPU | ON_CUDA, 3, 30,
     30, TINY_CALLS, true, 0, 0, tiny_setup, tiny_step, NULL},
};
#define N_CASES ((int)(sizeof CASES / sizeof CASES[0]))

/* ---- running one case -------------------------------------------------------------------------------- */

typedef struct {
    kiln_device dev;
    int reps; /* 0: the case's default */
    const char *data_dir;
    int fm_steps;
} bench_opts;

static bool selected(const char *list, const char *name) {
    if (!list) return false;
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == 0 || p[n] == ',')) return true;
    return false;
}

/* Returns false when the case failed (an error, not a missing kernel or dataset). */
static bool run_case(const bcase *bc, const bench_opts *o, kx_json *j) {
    bctx c = {.dev = o->dev, .cuda = o->dev.type == KILN_DEVICE_CUDA, .data_dir = o->data_dir};
    c.steps = bc->step == fmnist_step ? (o->fm_steps > 0 ? o->fm_steps : 937) : 1;
    int reps = o->reps > 0 ? o->reps : c.cuda ? bc->reps_cuda : bc->reps_cpu;
    char devname[32];
    kx_json_begin(j);
    kx_json_string(j, "case", bc->name);
    kx_json_string(j, "what", bc->what);
    kx_json_string(j, "device", kiln_device_name(o->dev, devname, sizeof devname));
    kx_json_string(j, "side", "kiln");
    kx_json_int(j, "threads", omp_get_max_threads());

    kiln_clear_error();
    kiln_scope *scope = kiln_scope_begin();
    double t_setup = kx_now_seconds();
    kiln_status st = bc->setup(&c);
    t_setup = kx_now_seconds() - t_setup;
    double *v = calloc((size_t)reps, sizeof *v);
    bench_cuda_timer *timer = NULL;
    if (st == KILN_STATUS_OK && !v) st = kiln_set_error(KILN_STATUS_OOM, "bench: no host memory");
    if (st == KILN_STATUS_OK && c.cuda && !bc->host_clock && !(timer = bench_cuda_timer_create(o->dev)))
        st = kiln_last_status();
    for (int w = 0; w < bc->warmup && st == KILN_STATUS_OK; w++) st = bc->step(&c);
    if (st == KILN_STATUS_OK) st = kiln_synchronize(o->dev);
    kiln_memory_reset_peak(o->dev);
    kiln_pool_stats before = kiln_memory_stats(o->dev);
    int done_reps = 0;
    kiln_status (*ref)(bctx *) = c.cuda ? NULL : bc->ref;
    double *rv = ref ? calloc((size_t)reps, sizeof *rv) : NULL;
    if (ref && !rv) ref = NULL;
    for (int r = 0; r < reps && st == KILN_STATUS_OK; r++) {
        if (ref) {
            double t0 = kx_now_seconds();
            ref(&c);
            rv[r] = kx_now_seconds() - t0;
        }
        double t0 = kx_now_seconds();
        if (timer) bench_cuda_timer_start(timer);
        st = bc->step(&c);
        if (timer) {
            v[r] = bench_cuda_timer_stop(timer);
        } else {
            if (st == KILN_STATUS_OK) st = kiln_synchronize(o->dev);
            v[r] = kx_now_seconds() - t0;
        }
        v[r] /= bc->calls_per_rep;
        done_reps++;
    }
    kiln_pool_stats after = kiln_memory_stats(o->dev);
    bool failed = false;

    if (st == KILN_STATUS_OK) {
        bench_stats s = bench_stats_of(v, done_reps);
        kx_json_string(j, "status", "ok");
        kx_json_number(j, "median_s", s.median);
        kx_json_number(j, "q1_s", s.q1);
        kx_json_number(j, "q3_s", s.q3);
        kx_json_number(j, "min_s", s.min);
        kx_json_number(j, "max_s", s.max);
        kx_json_int(j, "reps", s.n);
        kx_json_int(j, "warmup", bc->warmup);
        kx_json_number(j, "setup_s", t_setup);
        kx_json_int(j, "backing_allocs", (int64_t)(after.n_backing_allocs - before.n_backing_allocs));
        kx_json_int(j, "peak_in_use_bytes", (int64_t)after.peak_in_use);
        kx_json_string(j, "clock", timer ? "cuda events" : "host");
        if (bc->flops > 0) kx_json_number(j, "tflops", bc->flops / s.median * 1e-12);
        if (bc->bytes > 0) kx_json_number(j, "gbps", bc->bytes / s.median * 1e-9);
        if (bc->step == fmnist_step) kx_json_int(j, "steps", c.steps);
        if (ref) {
            bench_stats rs = bench_stats_of(rv, done_reps);
            kx_json_number(j, "ref_median_s", rs.median);
            kx_json_number(j, "ref_min_s", rs.min);
            kx_json_number(j, "ref_max_s", rs.max);
            kx_json_string(j, "ref", "cblas_sgemm called directly, timed in alternation with the case");
        }
        fprintf(stderr, "kiln_bench: %-16s median %10.4g s  [%.4g, %.4g]  reps %d  backing allocs %llu\n", bc->name,
                s.median, s.min, s.max, s.n, (unsigned long long)(after.n_backing_allocs - before.n_backing_allocs));
    } else {
        bool missing = st == KILN_STATUS_DEVICE || st == KILN_STATUS_NOT_IMPLEMENTED || st == KILN_STATUS_NO_DEVICE ||
                       st == KILN_STATUS_IO;
        failed = !missing;
        kx_json_string(j, "status", missing ? "unavailable" : "error");
        kx_json_string(j, "error", kiln_last_error());
        fprintf(stderr, "kiln_bench: %-16s %s: %s\n", bc->name, missing ? "unavailable" : "ERROR", kiln_last_error());
    }
    bench_cuda_timer_free(timer);
    free(v);
    free(rv);
    if (bc->teardown) bc->teardown(&c);
    else teardown(&c);
    kiln_scope_end(scope);
    kiln_clear_error();
    return failed == false;
}

int main(int argc, char **argv) {
    const char *device = "cpu", *cases = NULL, *json_path = NULL, *data_dir = NULL;
    int reps = 0, fm_steps = 0;
    bool list = false;
    kx_arg table[] = {
        {"device", KX_ARG_STRING, &device, "cpu or cuda[:N]", NULL},
        {"case", KX_ARG_STRING, &cases, "comma-separated case names (default: the device's cases)", NULL},
        {"reps", KX_ARG_INT, &reps, "timed repetitions (default: per case and device)", NULL},
        {"fmnist-steps", KX_ARG_INT, &fm_steps, "steps of the Fashion-MNIST case (default 937 = one epoch)",
         NULL},
        {"data", KX_ARG_STRING, &data_dir, "Fashion-MNIST directory", NULL},
        {"json", KX_ARG_STRING, &json_path, "write the results here (default: stdout)", NULL},
        {"list", KX_ARG_FLAG, &list, "list the cases and exit", NULL},
    };
    kx_args_result ar = kx_args_parse(argc, argv, "Times kiln on the benchmark cases of issue 8.",
                                      (int)(sizeof table / sizeof table[0]), table);
    if (ar == KX_ARGS_HELP) return 0;
    if (ar == KX_ARGS_ERROR) {
        fprintf(stderr, "kiln_bench: %s\n", kiln_last_error());
        return 2;
    }
    if (list) {
        for (int i = 0; i < N_CASES; i++)
            printf("%-16s %s%s\n", CASES[i].name, CASES[i].what, CASES[i].where & ON_CPU ? "" : " [not on CPU by default]");
        return 0;
    }
    bench_opts o = {.reps = reps, .data_dir = data_dir, .fm_steps = fm_steps};
    if (kiln_device_parse(device, &o.dev) != KILN_STATUS_OK) {
        fprintf(stderr, "kiln_bench: %s\n", kiln_last_error());
        return 2;
    }
    bool cuda = o.dev.type == KILN_DEVICE_CUDA;
    if (cuda && !kiln_device_available(o.dev)) {
        fprintf(stderr, "kiln_bench: %s is not available (no CUDA in this build, or no device)\n", device);
        return 3;
    }
    if (cases) { /* every name must be known */
        char *dup = strdup(cases);
        for (char *tok = strtok(dup, ","); tok; tok = strtok(NULL, ",")) {
            int k = 0;
            while (k < N_CASES && strcmp(CASES[k].name, tok)) k++;
            if (k == N_CASES) {
                fprintf(stderr, "kiln_bench: unknown case '%s' (--list shows them)\n", tok);
                free(dup);
                return 2;
            }
        }
        free(dup);
    }

    char date[32], devname[128] = "";
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    if (cuda) bench_cuda_device_name(o.dev, devname, sizeof devname);
    double copy_bw = cuda ? bench_cuda_copy_bandwidth(o.dev, (size_t)1 << 30, 20) : -1;

    /* the document: {"meta": {...}, "cases": [{...}, ...]} */
    size_t cap = 1 << 16, len = 0;
    char *doc = malloc(cap);
    if (!doc) return 1;
    kx_json j;
    kx_json_begin(&j);
    kx_json_string(&j, "tool", "kiln_bench");
    kx_json_string(&j, "date", date);
    kx_json_string(&j, "device", device);
    if (cuda) kx_json_string(&j, "device_name", devname);
    kx_json_int(&j, "threads", omp_get_max_threads());
    kx_json_bool(&j, "tf32", kiln_tf32());
    /* which OpenBLAS build the loader picked (CMakeLists.txt links the OpenMP one) */
    int par = openblas_get_parallel();
    kx_json_string(&j, "openblas_threading", par == 2 ? "openmp" : par == 1 ? "pthread" : "sequential");
#ifdef KILN_BENCH_BUILD_TYPE
    kx_json_string(&j, "build_type", KILN_BENCH_BUILD_TYPE);
#endif
    if (copy_bw > 0) kx_json_number(&j, "copy_gbps", copy_bw * 1e-9);
    len += (size_t)snprintf(doc, cap, "{\"meta\": %s,\n \"cases\": [\n", kx_json_end(&j));
    kx_json_free(&j);
    int n_run = 0, n_err = 0;
    for (int i = 0; i < N_CASES; i++) {
        const bcase *bc = &CASES[i];
        if (cases ? !selected(cases, bc->name) : !(bc->where & (cuda ? ON_CUDA : ON_CPU))) continue;
        if (!run_case(bc, &o, &j)) n_err++;
        const char *obj = kx_json_end(&j);
        if (!obj) return 1;
        size_t need = len + strlen(obj) + 8;
        if (need > cap) {
            cap = need * 2;
            char *nd = realloc(doc, cap);
            if (!nd) return 1;
            doc = nd;
        }
        len += (size_t)snprintf(doc + len, cap - len, "%s  %s", n_run++ ? ",\n" : "", obj);
        kx_json_free(&j);
    }
    FILE *f = json_path ? fopen(json_path, "w") : stdout;
    if (!f) {
        fprintf(stderr, "kiln_bench: cannot write %s\n", json_path);
        return 1;
    }
    fprintf(f, "%s\n]}\n", doc);
    if (f != stdout) fclose(f);
    free(doc);
    kiln_shutdown();
    return n_err ? 1 : 0;
}

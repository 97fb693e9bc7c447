/* Convolutions on a real GPU against the CPU: a table of conv2d and conv_transpose2d
 * configurations (odd sizes, stride 2, padding 0/1/"same" with odd and even kernels,
 * dilation 2, groups 1/2/depthwise, 1x1, output_padding, a strided input), forward
 * and both backward passes, through cuDNN and through the im2col + cuBLAS fallback;
 * the plan cache building nothing on a repeat; the fused conv+bias+ReLU. Skips with
 * a message where no CUDA device is present (the emulated tests cover the kernels).
 * Strict float32 (TF32 off, kiln's default): outputs and gradients are sums of at
 * most 150 products of values in [-1, 1] (plus bias), added in another order (or by
 * Winograd/FFT engines), so each value agrees within 1e-4 + 1e-4*|cpu|. */
#include "support/kiln_test.h"
#include "models/unet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

TestSuite(cuda_conv, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define NEED_GPU()                                                                                          \
    do {                                                                                                    \
        if (kiln_cuda_device_count() == 0)                                                                  \
            cr_skip_test("no CUDA device here: not run on a GPU (the emulated kernel tests ran instead)"); \
    } while (0)

#define ATOL 1e-4
#define RTOL 1e-4

static void same(kiln_tensor *cpu, kiln_tensor *cuda, const char *what, const char *part) {
    cr_assert(cpu && cuda, "%s %s: %s", what, part, kiln_last_error());
    cr_assert_eq(kiln_tensor_numel(cpu), kiln_tensor_numel(cuda), "%s %s", what, part);
    double *a = kt_values(cpu), *b = kt_values(cuda);
    for (int64_t i = 0; i < kiln_tensor_numel(cpu); i++)
        if (!(fabs(a[i] - b[i]) <= ATOL + RTOL * fabs(a[i]))) {
            double x = a[i], y = b[i];
            free(a);
            free(b);
            cr_assert_fail("%s %s: element %lld: cpu %.9g, cuda %.9g", what, part, (long long)i, x, y);
        }
    free(a);
    free(b);
}

typedef struct {
    const char *name;
    bool transpose;
    int64_t n, cin, h, w, cout, kh, kw, stride, pad, dilation, groups, out_pad;
    bool same, strided_input;
} conv_case;

static const conv_case cases[] = {
    {"3x3 pad 1, odd sizes", false, 2, 3, 11, 9, 5, 3, 3, 1, 1, 1, 1, 0, false, false},
    {"3x3 stride 2 pad 1", false, 2, 4, 13, 10, 6, 3, 3, 2, 1, 1, 1, 0, false, false},
    {"3x3 pad 0", false, 1, 3, 9, 7, 4, 3, 3, 1, 0, 1, 1, 0, false, false},
    {"3x3 same", false, 2, 3, 10, 7, 4, 3, 3, 1, 0, 1, 1, 0, true, false},
    {"4x4 same (extra bottom/right)", false, 1, 2, 9, 8, 3, 4, 4, 1, 0, 1, 1, 0, true, false},
    {"3x3 dilation 2 pad 2", false, 2, 3, 12, 11, 4, 3, 3, 1, 2, 2, 1, 0, false, false},
    {"groups 2", false, 2, 4, 9, 9, 6, 3, 3, 1, 1, 1, 2, 0, false, false},
    {"depthwise", false, 2, 6, 11, 8, 6, 3, 3, 1, 1, 1, 6, 0, false, false},
    {"1x1", false, 2, 5, 7, 9, 7, 1, 1, 1, 0, 1, 1, 0, false, false},
    {"2x2 stride 2", false, 2, 3, 12, 9, 5, 2, 2, 2, 0, 1, 1, 0, false, false},
    {"3x3 on a strided input", false, 2, 3, 11, 9, 4, 3, 3, 1, 1, 1, 1, 0, false, true},
    {"transpose 2x2 stride 2", true, 2, 6, 5, 7, 3, 2, 2, 2, 0, 1, 1, 0, false, false},
    {"transpose 3x3 stride 2 pad 1 output_padding 1", true, 2, 4, 6, 5, 3, 3, 3, 2, 1, 1, 1, 1, false, false},
    {"transpose 3x3 dilation 2 groups 2", true, 1, 4, 7, 6, 6, 3, 3, 1, 1, 2, 2, 0, false, false},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* y = conv(x, w, b) on x's device; requires_grad set on the leaves by the caller. */
static kiln_tensor *run_case(const conv_case *c, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b) {
    if (c->transpose) {
        kiln_conv_transpose2d_params p = kiln_conv_transpose2d_params_default();
        p.stride[0] = p.stride[1] = c->stride;
        p.padding[0] = p.padding[1] = c->pad;
        p.dilation[0] = p.dilation[1] = c->dilation;
        p.output_padding[0] = p.output_padding[1] = c->out_pad;
        p.groups = c->groups;
        return kiln_conv_transpose2d(x, w, b, &p);
    }
    kiln_conv2d_params p = kiln_conv2d_params_default();
    p.stride[0] = p.stride[1] = c->stride;
    p.padding[0] = p.padding[1] = c->pad;
    p.dilation[0] = p.dilation[1] = c->dilation;
    p.groups = c->groups;
    p.padding_same = c->same;
    return kiln_conv2d(x, w, b, &p);
}

/* One case, forward and both backward passes (input, weight, bias), CPU vs CUDA. */
static void check_case(const conv_case *c, const char *path) {
    char what[200];
    snprintf(what, sizeof what, "%s (%s)", c->name, path);
    int64_t xs[4] = {c->n, c->cin, c->h, c->strided_input ? 2 * c->w : c->w};
    int64_t ws[4] = {c->transpose ? c->cin : c->cout, c->transpose ? c->cout / c->groups : c->cin / c->groups, c->kh,
                     c->kw};
    int64_t bs[1] = {c->cout};
    kiln_tensor *xb = kiln_tensor_rand(4, xs, -1, 1, KILN_F32, KILN_CPU);
    kiln_tensor *w = kiln_tensor_rand(4, ws, -1, 1, KILN_F32, KILN_CPU);
    kiln_tensor *b = kiln_tensor_rand(1, bs, -1, 1, KILN_F32, KILN_CPU);
    kiln_tensor *xg_base = kt_to_gpu(xb), *wg = kt_to_gpu(w), *bg = kt_to_gpu(b);
    kiln_tensor *x = xb, *xg = xg_base;
    if (c->strided_input) { /* every other column: neither contiguous nor packed */
        x = kiln_slice(xb, 3, 0, 2 * c->w, 2);
        xg = kiln_slice(xg_base, 3, 0, 2 * c->w, 2);
    }
    kiln_tensor *leaves[6] = {xb, w, b, xg_base, wg, bg};
    for (int i = 0; i < 6; i++) cr_assert_eq(kiln_tensor_set_requires_grad(leaves[i], true), KILN_STATUS_OK);
    kiln_tensor *y = run_case(c, x, w, b), *yg = run_case(c, xg, wg, bg);
    same(y, yg, what, "forward");
    cr_assert(y, "%s: %s", what, kiln_last_error());
    kiln_tensor *coef = kiln_tensor_rand(kiln_tensor_ndim(y), kiln_tensor_shape(y), -1, 1, KILN_F32, KILN_CPU);
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(y, coef)), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kiln_backward(kiln_sum_all(kiln_mul(yg, kt_to_gpu(coef))), NULL), KILN_STATUS_OK, "%s: %s", what,
                 kiln_last_error());
    same(kiln_tensor_grad(xb), kiln_tensor_grad(xg_base), what, "input gradient");
    same(kiln_tensor_grad(w), kiln_tensor_grad(wg), what, "weight gradient");
    same(kiln_tensor_grad(b), kiln_tensor_grad(bg), what, "bias gradient");
}

KT_TEST(cuda_conv, table_through_cudnn_and_the_fallback) {
    NEED_GPU();
    kiln_set_tf32(false); /* strict float32 */
    bool dnn = kiln_cuda_cudnn_available();
    if (!dnn) fprintf(stderr, "[----] cuda_conv: cuDNN could not be loaded: only the im2col + cuBLAS path runs\n");
    kiln_cuda_conv_stats_reset();
    for (int i = 0; i < NCASES; i++) check_case(&cases[i], dnn ? "cuDNN" : "no cuDNN: im2col + cuBLAS");
    kiln_cuda_set_cudnn(false);
    for (int i = 0; i < NCASES; i++) check_case(&cases[i], "im2col + cuBLAS");
    kiln_cuda_set_cudnn(true);
    kiln_cuda_conv_stats s = kiln_cuda_conv_stats_get();
    cr_expect(s.fallback_runs >= 3 * NCASES, "every pass of the second round takes the fallback: %lld runs",
              (long long)s.fallback_runs);
    if (dnn) cr_expect(s.cudnn_runs > 0, "cuDNN ran none of the table's convolutions");
    fprintf(stderr, "[----] cuda_conv: %lld cuDNN runs, %lld fallback runs, %lld plans built, %lld engines skipped\n",
            (long long)s.cudnn_runs, (long long)s.fallback_runs, (long long)s.misses, (long long)s.skipped_engines);
}

KT_TEST(cuda_conv, deterministic_mode_matches_too) {
    NEED_GPU();
    kiln_set_tf32(false);
    kiln_set_deterministic(true);
    for (int i = 0; i < NCASES; i += 3) check_case(&cases[i], "deterministic");
    kiln_set_deterministic(false);
}

KT_TEST(cuda_conv, plan_cache_builds_nothing_on_a_repeat) {
    NEED_GPU();
    if (!kiln_cuda_cudnn_available()) cr_skip_test("cuDNN could not be loaded on this machine: no plan cache");
    kiln_set_tf32(false);
    for (int i = 0; i < NCASES; i++) check_case(&cases[i], "first round");
    kiln_cuda_conv_stats first = kiln_cuda_conv_stats_get();
    for (int i = 0; i < NCASES; i++) check_case(&cases[i], "repeat");
    kiln_cuda_conv_stats again = kiln_cuda_conv_stats_get();
    cr_expect_eq(again.misses, first.misses, "the repeat built %lld plans", (long long)(again.misses - first.misses));
    cr_expect_eq(again.entries, first.entries);
    cr_expect(again.hits >= first.hits + 3 * NCASES, "hits %lld -> %lld", (long long)first.hits,
              (long long)again.hits);
    fprintf(stderr, "[----] cuda_conv: plan cache after the repeat: %lld entries, %lld hits, %lld misses, "
                    "workspace %lld bytes\n", (long long)again.entries, (long long)again.hits,
            (long long)again.misses, (long long)again.workspace_bytes);
    /* clearing drops the plans; the next round builds them again */
    kiln_cuda_conv_cache_clear();
    cr_expect_eq(kiln_cuda_conv_stats_get().entries, 0);
    cr_expect_eq(kiln_cuda_conv_stats_get().workspace_bytes, 0);
}

KT_TEST(cuda_conv, autotune_picks_a_plan_that_matches) {
    NEED_GPU();
    kiln_set_tf32(false);
    kiln_cuda_set_conv_autotune(true);
    for (int i = 0; i < NCASES; i += 2) check_case(&cases[i], "autotuned");
    kiln_cuda_set_conv_autotune(false);
}

KT_TEST(cuda_conv, fused_bias_relu_inference) {
    NEED_GPU();
    kiln_set_tf32(false);
    const int64_t xs[4] = {2, 3, 13, 11}, ws[4] = {5, 3, 3, 3}, bs[1] = {5};
    kiln_tensor *x = kiln_tensor_rand(4, xs, -1, 1, KILN_F32, KILN_CPU);
    kiln_tensor *w = kiln_tensor_rand(4, ws, -1, 1, KILN_F32, KILN_CPU);
    kiln_tensor *b = kiln_tensor_rand(1, bs, -1, 1, KILN_F32, KILN_CPU);
    kiln_conv2d_params p = kiln_conv2d_params_default();
    p.padding[0] = p.padding[1] = 1;
    kiln_tensor *ref = kiln_relu(kiln_conv2d(x, w, b, &p));
    kiln_no_grad_begin();
    kiln_tensor *yg = kiln_conv2d_bias_relu(kt_to_gpu(x), kt_to_gpu(w), kt_to_gpu(b), &p);
    kiln_tensor *yc = kiln_conv2d_bias_relu(x, w, b, &p);
    kiln_no_grad_end();
    same(ref, yg, "conv2d_bias_relu", "cuda");
    same(ref, yc, "conv2d_bias_relu", "cpu");
    kiln_cuda_conv_stats s = kiln_cuda_conv_stats_get();
    fprintf(stderr, "[----] cuda_conv: fused conv+bias+relu plans run: %lld (0 means cuDNN did not fuse float32 "
                    "NCHW here and the epilogue kernel ran)\n", (long long)s.fused_runs);
}

/* ---- a U-Net-16 training step ------------------------------------------------------------ */

/* U-Net-16's forward (examples/models/unet.h) written with the functional ops, so the
 * same graph runs on CPU parameters and on their CUDA copies; the test checks it
 * against the module's own forward on the CPU first. */
typedef struct {
    kiln_module *m;
    int n;
    const char *names[64];
    kiln_tensor *p[64];
} unet_params;

static kiln_tensor *param(const unet_params *u, const char *prefix, const char *leaf) {
    char name[96];
    snprintf(name, sizeof name, "%s.%s", prefix, leaf);
    for (int i = 0; i < u->n; i++)
        if (strcmp(u->names[i], name) == 0) return u->p[i];
    cr_assert_fail("U-Net parameter %s not found", name);
    return NULL;
}

static kiln_tensor *unet_block(const unet_params *u, const char *b, kiln_tensor *x) {
    char c0[64], c1[64];
    kiln_conv2d_params p = kiln_conv2d_params_default();
    p.padding[0] = p.padding[1] = 1;
    for (int k = 0; k < 2; k++) {
        snprintf(c0, sizeof c0, "%s.%d", b, 3 * k);
        snprintf(c1, sizeof c1, "%s.%d", b, 3 * k + 1);
        x = kiln_conv2d(x, param(u, c0, "weight"), param(u, c0, "bias"), &p);
        x = kiln_relu(kiln_batch_norm2d(x, param(u, c1, "weight"), param(u, c1, "bias"), NULL, NULL, true, 0.1, 1e-5));
    }
    return x;
}

static kiln_tensor *unet_up(const unet_params *u, const char *up, const char *dec, kiln_tensor *x, kiln_tensor *skip) {
    kiln_conv_transpose2d_params p = kiln_conv_transpose2d_params_default();
    p.stride[0] = p.stride[1] = 2;
    kiln_tensor *cat[2] = {kiln_conv_transpose2d(x, param(u, up, "weight"), param(u, up, "bias"), &p), skip};
    return unet_block(u, dec, kiln_concat(2, cat, 1));
}

static kiln_tensor *unet_forward(const unet_params *u, kiln_tensor *x) {
    kiln_pool2d_params pp = kiln_pool2d_params_default(2, 2);
    kiln_tensor *e1 = unet_block(u, "enc1", x);
    kiln_tensor *e2 = unet_block(u, "enc2", kiln_max_pool2d(e1, &pp));
    kiln_tensor *e3 = unet_block(u, "enc3", kiln_max_pool2d(e2, &pp));
    kiln_tensor *bt = unet_block(u, "bottleneck", kiln_max_pool2d(e3, &pp));
    kiln_tensor *d = unet_up(u, "up3", "dec3", bt, e3);
    d = unet_up(u, "up2", "dec2", d, e2);
    d = unet_up(u, "up1", "dec1", d, e1);
    return kiln_conv2d(d, param(u, "head", "weight"), param(u, "head", "bias"), NULL);
}

/* loss = mean(logits * coef): the step's scalar, on the logits' device */
static kiln_tensor *unet_loss(const unet_params *u, kiln_tensor *x, kiln_tensor *coef) {
    kiln_tensor *y = unet_forward(u, x);
    return kiln_mul_scalar(kiln_sum_all(kiln_mul(y, coef)), 1.0 / (double)kiln_tensor_numel(coef));
}

KT_TEST(cuda_conv, unet16_training_step_matches_the_cpu) {
    NEED_GPU();
    kiln_set_tf32(false);
    kiln_manual_seed(7);
    unet_params cpu = {unet_create(3, 1, 16, KILN_F32), 0, {0}, {0}}, dev = cpu;
    cr_assert(cpu.m, "%s", kiln_last_error());
    kiln_module_train(cpu.m, true);
    cpu.n = kiln_module_num_parameters(cpu.m);
    cr_assert(cpu.n <= 64);
    for (int i = 0; i < cpu.n; i++) cpu.p[i] = kiln_module_parameter(cpu.m, i, &cpu.names[i]);
    kiln_no_grad_begin();
    for (int i = 0; i < cpu.n; i++) { /* leaves on the GPU with the CPU's values */
        dev.names[i] = cpu.names[i];
        dev.p[i] = kt_to_gpu(cpu.p[i]);
    }
    kiln_no_grad_end();
    for (int i = 0; i < cpu.n; i++) kiln_tensor_set_requires_grad(dev.p[i], true);
    const int64_t xs[4] = {2, 3, 32, 32}, ys[4] = {2, 1, 32, 32};
    kiln_tensor *x = kiln_tensor_rand(4, xs, -1, 1, KILN_F32, KILN_CPU), *coef = kiln_tensor_rand(4, ys, -1, 1, KILN_F32, KILN_CPU);
    kiln_tensor *xg = kt_to_gpu(x), *cg = kt_to_gpu(coef);

    /* the functional forward is the module's */
    kiln_tensor *ym = kiln_module_forward(cpu.m, x), *yf = unet_forward(&cpu, x);
    same(ym, yf, "U-Net-16 functional forward", "vs the module (cpu)");

    kiln_cuda_conv_stats_reset();
    int64_t misses_after_first = 0;
    for (int step = 0; step < 3; step++) {
        kiln_tensor *lg = unet_loss(&dev, xg, cg);
        if (!lg && kiln_last_status() == KILN_STATUS_DEVICE && strstr(kiln_last_error(), "no kernel")) {
            char msg[300];
            snprintf(msg, sizeof msg, "the U-Net step needs CUDA kernels this tree lacks: %s", kiln_last_error());
            kiln_clear_error();
            kiln_module_free(cpu.m);
            cr_skip_test("%s", msg);
        }
        cr_assert(lg, "step %d: %s", step, kiln_last_error());
        cr_assert_eq(kiln_backward(lg, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        if (step == 0) {
            kiln_module_zero_grad(cpu.m);
            kiln_tensor *lc = unet_loss(&cpu, x, coef);
            cr_assert_eq(kiln_backward(lc, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
            double a = kiln_tensor_item(lc), b = kiln_tensor_item(lg);
            cr_expect(fabs(a - b) <= 1e-5 * fabs(a) + 1e-6, "loss: cpu %.9g, cuda %.9g", a, b);
            /* each gradient within 1e-3 of its tensor's largest CPU value (BN rescales) */
            for (int i = 0; i < cpu.n; i++) {
                double *gc = kt_values(kiln_tensor_grad(cpu.p[i])), *gd = kt_values(kiln_tensor_grad(dev.p[i]));
                int64_t n = kiln_tensor_numel(cpu.p[i]);
                double mx = 0;
                for (int64_t j = 0; j < n; j++) mx = fmax(mx, fabs(gc[j]));
                for (int64_t j = 0; j < n; j++)
                    if (!(fabs(gc[j] - gd[j]) <= 1e-3 * mx + 1e-7)) {
                        double u = gc[j], v = gd[j];
                        free(gc);
                        free(gd);
                        cr_assert_fail("gradient of %s[%lld]: cpu %.9g, cuda %.9g (largest %.3g)", cpu.names[i],
                                       (long long)j, u, v, mx);
                    }
                free(gc);
                free(gd);
            }
            misses_after_first = kiln_cuda_conv_stats_get().misses;
        }
        for (int i = 0; i < cpu.n; i++) kiln_tensor_zero_grad(dev.p[i]);
    }
    kiln_cuda_conv_stats s = kiln_cuda_conv_stats_get();
    fprintf(stderr, "[----] unet16 plan cache: %lld plans built in step 1, %lld after 3 steps (%s), %lld hits, "
                    "%lld cuDNN runs, %lld fallback runs\n", (long long)misses_after_first, (long long)s.misses,
            s.misses == misses_after_first ? "no rebuilds" : "REBUILT", (long long)s.hits, (long long)s.cudnn_runs,
            (long long)s.fallback_runs);
    cr_expect_eq(s.misses, misses_after_first, "steps 2 and 3 built %lld plans",
                 (long long)(s.misses - misses_after_first));
    kiln_module_free(cpu.m);
}

/* ---- every build, no GPU needed ----------------------------------------------------- */

KT_TEST(cuda_conv, cpu_fused_bias_relu_is_the_composition) {
    const int64_t xs[4] = {2, 4, 9, 7}, ws[4] = {6, 2, 3, 3}, bs[1] = {6};
    kiln_tensor *x = kiln_tensor_rand(4, xs, -1, 1, KILN_F32, KILN_CPU);
    kiln_tensor *w = kiln_tensor_rand(4, ws, -1, 1, KILN_F32, KILN_CPU);
    kiln_tensor *b = kiln_tensor_rand(1, bs, -1, 1, KILN_F32, KILN_CPU);
    kiln_conv2d_params p = kiln_conv2d_params_default();
    p.groups = 2;
    p.padding_same = true;
    kiln_tensor *ref = kiln_relu(kiln_conv2d(x, w, b, &p));
    kiln_no_grad_begin();
    kiln_tensor *fused = kiln_conv2d_bias_relu(x, w, b, &p); /* the one-op path: same kernel, then ReLU */
    kiln_no_grad_end();
    cr_assert(fused, "%s", kiln_last_error());
    double *a = kt_values(ref), *f = kt_values(fused);
    for (int64_t i = 0; i < kiln_tensor_numel(ref); i++) cr_expect_eq(a[i], f[i], "element %lld", (long long)i);
    free(a);
    free(f);
    /* recording: the composition, with gradients for every input */
    kiln_tensor_set_requires_grad(w, true);
    kiln_tensor *y = kiln_conv2d_bias_relu(x, w, b, &p);
    cr_assert(y && kiln_tensor_requires_grad(y));
    cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect(kiln_tensor_grad(w) != NULL);
    /* errors name the op */
    const int64_t bad[4] = {6, 3, 3, 3};
    kiln_no_grad_begin();
    cr_expect_null(kiln_conv2d_bias_relu(x, kiln_tensor_zeros(4, bad, KILN_F32, KILN_CPU), b, &p));
    kiln_no_grad_end();
    kt_expect_error(KILN_STATUS_SHAPE, "conv2d_bias_relu");
}

KT_TEST(cuda_conv, unet16_functional_forward_is_the_modules) {
    /* what the GPU step test relies on, checked on the CPU */
    kiln_manual_seed(3);
    unet_params u = {unet_create(3, 1, 16, KILN_F32), 0, {0}, {0}};
    cr_assert(u.m, "%s", kiln_last_error());
    kiln_module_train(u.m, true);
    u.n = kiln_module_num_parameters(u.m);
    cr_assert(u.n <= 64);
    for (int i = 0; i < u.n; i++) u.p[i] = kiln_module_parameter(u.m, i, &u.names[i]);
    const int64_t xs[4] = {1, 3, 16, 16};
    kiln_tensor *x = kiln_tensor_rand(4, xs, -1, 1, KILN_F32, KILN_CPU);
    kiln_no_grad_begin();
    kiln_tensor *ym = kiln_module_forward(u.m, x), *yf = unet_forward(&u, x);
    kiln_no_grad_end();
    cr_assert(ym && yf, "%s", kiln_last_error());
    double *a = kt_values(ym), *b = kt_values(yf);
    for (int64_t i = 0; i < kiln_tensor_numel(ym); i++) cr_expect_eq(a[i], b[i], "element %lld", (long long)i);
    free(a);
    free(b);
    kiln_module_free(u.m);
}

KT_TEST(cuda_conv, plan_controls_exist_in_every_build) {
    kiln_cuda_set_conv_autotune(true);
    cr_expect(kiln_cuda_conv_autotune());
    kiln_cuda_set_conv_autotune(false);
    cr_expect(!kiln_cuda_conv_autotune());
    size_t limit = kiln_cuda_conv_workspace_limit();
    kiln_cuda_set_conv_workspace_limit(64u << 20);
    cr_expect_eq(kiln_cuda_conv_workspace_limit(), 64u << 20);
    kiln_cuda_set_conv_workspace_limit(limit);
    kiln_cuda_set_cudnn(false);
    cr_expect(!kiln_cuda_cudnn_enabled());
    kiln_cuda_set_cudnn(true);
    kiln_cuda_conv_stats_reset();
    kiln_cuda_conv_stats s = kiln_cuda_conv_stats_get();
    cr_expect(s.hits == 0 && s.misses == 0 && s.cudnn_runs == 0 && s.fallback_runs == 0);
#ifndef KILN_HAVE_CUDA
    cr_expect(!kiln_cuda_cudnn_available());
    kiln_cuda_conv_cache_clear();
    cr_expect_eq(kiln_cuda_conv_stats_get().entries, 0);
#endif
}

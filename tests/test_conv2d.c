/* conv2d and conv_transpose2d: forward against PyTorch fixtures (f32 and f64,
 * contiguous and strided inputs), against a direct loop on an image large enough
 * for the threaded paths, backward through the float64 gradient checker, and every
 * error the front-ends report. */
#include "support/kiln_test.h"
#include "core/internal.h" /* the registry, for layer_ops_are_registered */
#include "fixtures/layers_conv.h"
#include "fixtures/layers_convt.h"

#include <stdlib.h>
#include <string.h>

TestSuite(conv, .init = kiln_test_setup, .fini = kiln_test_teardown);

/* Tolerances: fixtures hold 10 significant digits; f32 sums of <= 36 products of
 * values in [-1, 1]. */
#define F64_TOL 1e-9
#define F32_ATOL 2e-5
#define F32_RTOL 1e-5

static kiln_tensor *fixture(int ndim, const int64_t *shape, int64_t seed, kiln_dtype dt) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    double *v = malloc((size_t)n * sizeof *v);
    for (int64_t i = 0; i < n; i++) v[i] = kt_fixture_value(i, seed);
    kiln_tensor *t = kt_tensor(dt, ndim, shape, v);
    free(v);
    cr_assert(t, "%s", kiln_last_error());
    return t;
}

/* The same values as a non-contiguous view (H and W swapped in memory). */
static kiln_tensor *strided(kiln_tensor *t) {
    kiln_tensor *s = kiln_transpose(kiln_tensor_contiguous(kiln_transpose(t, 2, 3)), 2, 3);
    cr_assert(s, "%s", kiln_last_error());
    cr_assert(!kiln_tensor_is_contiguous(s) || kiln_tensor_size(t, 2) == 1 || kiln_tensor_size(t, 3) == 1);
    return s;
}

static void run_conv_case(const layers_conv_case *c, kiln_dtype dt, bool view) {
    int64_t ws[4] = {c->cout, c->x[1] / c->groups, c->kernel[0], c->kernel[1]};
    kiln_tensor *x = fixture(4, c->x, 1, dt), *w = fixture(4, ws, 2, dt);
    kiln_tensor *b = c->has_bias ? fixture(1, &c->cout, 3, dt) : NULL;
    if (view) x = strided(x), w = strided(w);
    kiln_conv2d_params p = {{c->stride[0], c->stride[1]}, {c->padding[0], c->padding[1]},
                            {c->dilation[0], c->dilation[1]}, c->groups, c->same};
    kiln_tensor *y = kiln_conv2d(x, w, b, &p);
    cr_assert(y, "case %s: %s", c->name, kiln_last_error());
    KT_EXPECT_SHAPE(y, 4, c->y[0], c->y[1], c->y[2], c->y[3]);
    double atol = dt == KILN_F64 ? F64_TOL : F32_ATOL, rtol = dt == KILN_F64 ? F64_TOL : F32_RTOL;
    kt_expect_values(y, layers_conv_expected + c->offset, kiln_tensor_numel(y), atol, rtol);
}

static void run_convt_case(const layers_convt_case *c, kiln_dtype dt, bool view) {
    int64_t ws[4] = {c->x[1], c->cout / c->groups, c->kernel[0], c->kernel[1]};
    kiln_tensor *x = fixture(4, c->x, 1, dt), *w = fixture(4, ws, 2, dt);
    kiln_tensor *b = c->has_bias ? fixture(1, &c->cout, 3, dt) : NULL;
    if (view) x = strided(x), w = strided(w);
    kiln_conv_transpose2d_params p = {{c->stride[0], c->stride[1]}, {c->padding[0], c->padding[1]},
                                      {c->output_padding[0], c->output_padding[1]},
                                      {c->dilation[0], c->dilation[1]}, c->groups};
    kiln_tensor *y = kiln_conv_transpose2d(x, w, b, &p);
    cr_assert(y, "case %s: %s", c->name, kiln_last_error());
    KT_EXPECT_SHAPE(y, 4, c->y[0], c->y[1], c->y[2], c->y[3]);
    double atol = dt == KILN_F64 ? F64_TOL : F32_ATOL, rtol = dt == KILN_F64 ? F64_TOL : F32_RTOL;
    kt_expect_values(y, layers_convt_expected + c->offset, kiln_tensor_numel(y), atol, rtol);
}

#define NCASES(a) (sizeof(a) / sizeof((a)[0]))

KT_TEST(conv, conv2d_matches_torch_f32) {
    for (size_t i = 0; i < NCASES(layers_conv_cases); i++) run_conv_case(&layers_conv_cases[i], KILN_F32, false);
}
KT_TEST(conv, conv2d_matches_torch_f64) {
    for (size_t i = 0; i < NCASES(layers_conv_cases); i++) run_conv_case(&layers_conv_cases[i], KILN_F64, false);
}
KT_TEST(conv, conv2d_matches_torch_strided_inputs) {
    for (size_t i = 0; i < NCASES(layers_conv_cases); i++) run_conv_case(&layers_conv_cases[i], KILN_F64, true);
}
KT_TEST(conv, conv_transpose2d_matches_torch_f32) {
    for (size_t i = 0; i < NCASES(layers_convt_cases); i++) run_convt_case(&layers_convt_cases[i], KILN_F32, false);
}
KT_TEST(conv, conv_transpose2d_matches_torch_f64) {
    for (size_t i = 0; i < NCASES(layers_convt_cases); i++) run_convt_case(&layers_convt_cases[i], KILN_F64, false);
}
KT_TEST(conv, conv_transpose2d_matches_torch_strided_inputs) {
    for (size_t i = 0; i < NCASES(layers_convt_cases); i++) run_convt_case(&layers_convt_cases[i], KILN_F64, true);
}

KT_TEST(conv, defaults_when_params_null) {
    /* 1x1 input channel, 2x2 kernel of ones: each output is a 2x2 window sum */
    kiln_tensor *x = KT_F32(4, KT_SHAPE(1, 1, 2, 3), {1, 2, 3, 4, 5, 6});
    kiln_tensor *w = KT_F32(4, KT_SHAPE(1, 1, 2, 2), {1, 1, 1, 1});
    kiln_tensor *y = kiln_conv2d(x, w, NULL, NULL);
    KT_EXPECT_SHAPE(y, 4, 1, 1, 1, 2);
    KT_EXPECT(y, 0, 0, {12, 16});
    /* its transpose spreads each value over the kernel's footprint */
    kiln_tensor *t = kiln_conv_transpose2d(y, w, NULL, NULL);
    KT_EXPECT_SHAPE(t, 4, 1, 1, 2, 3);
    KT_EXPECT(t, 0, 0, {12, 28, 16, 12, 28, 16});
}

/* relu(NaN) is NaN (torch.relu): conv2d_bias_relu's own ReLU (the im2col path; f64 always
 * takes it) and the composition it records under autograd. oneDNN's fused ReLU post-op is
 * max(x, 0) and gives 0 there (docs/ARCHITECTURE.md, "Layers"), so it is switched off. */
KT_TEST(conv, conv2d_bias_relu_keeps_nan) {
    const double xv[9] = {1, NAN, 1, 1, -0.0, 1, 1, 1, 1};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *x = kt_tensor(dt, 4, (int64_t[]){1, 1, 3, 3}, xv);
        kiln_tensor *w = kt_tensor(dt, 4, (int64_t[]){2, 1, 1, 1}, (const double[]){1, -1});
        kiln_tensor *b = kt_tensor(dt, 1, (int64_t[]){2}, (const double[]){0, 0.5});
        kiln_cpu_set_onednn(false);
        for (int rec = 0; rec < 2; rec++) {
            kiln_tensor_set_requires_grad(w, rec == 1);
            double *y = kt_values(kiln_conv2d_bias_relu(x, w, b, NULL));
            const double want[18] = {1, NAN, 1, 1, 0, 1, 1, 1, 1, 0, NAN, 0, 0, 0.5, 0, 0, 0, 0};
            for (int i = 0; i < 18; i++)
                cr_expect(isnan(want[i]) ? isnan(y[i]) : y[i] == want[i], "%s %s element %d: %g, torch gives %g",
                          kiln_dtype_name(dt), rec ? "recorded" : "fused", i, y[i], want[i]);
            free(y);
        }
        kiln_cpu_set_onednn(true);
    }
}

/* A direct 7-loop convolution in double: an independent reference. */
static void direct_conv(const double *x, const double *w, double *y, const int64_t *xs, const int64_t *ws,
                        const int64_t *ys, int64_t s, int64_t p, int64_t d, int64_t groups) {
    int64_t cin_g = ws[1], cout_g = ws[0] / groups;
    for (int64_t n = 0; n < ys[0]; n++)
        for (int64_t o = 0; o < ys[1]; o++)
            for (int64_t oh = 0; oh < ys[2]; oh++)
                for (int64_t ow = 0; ow < ys[3]; ow++) {
                    double acc = 0;
                    int64_t g = o / cout_g;
                    for (int64_t c = 0; c < cin_g; c++)
                        for (int64_t i = 0; i < ws[2]; i++)
                            for (int64_t j = 0; j < ws[3]; j++) {
                                int64_t ih = oh * s - p + i * d, iw = ow * s - p + j * d;
                                if (ih < 0 || ih >= xs[2] || iw < 0 || iw >= xs[3]) continue;
                                acc += x[((n * xs[1] + g * cin_g + c) * xs[2] + ih) * xs[3] + iw] *
                                       w[((o * cin_g + c) * ws[2] + i) * ws[3] + j];
                            }
                    y[((n * ys[1] + o) * ys[2] + oh) * ys[3] + ow] = acc;
                }
}

KT_TEST(conv, conv2d_large_matches_direct_loop) {
    /* big enough that im2col/col2im and the bias add run threaded */
    const int64_t xs[4] = {2, 8, 37, 41}, ws[4] = {12, 4, 3, 3};
    kiln_tensor *x = kiln_tensor_rand(4, xs, -1, 1, KILN_F32, KILN_CPU);
    kiln_tensor *w = kiln_tensor_rand(4, ws, -1, 1, KILN_F32, KILN_CPU);
    kiln_conv2d_params p = kiln_conv2d_params_default();
    p.stride[0] = p.stride[1] = 2;
    p.padding[0] = p.padding[1] = 2;
    p.dilation[0] = p.dilation[1] = 2;
    p.groups = 2;
    kiln_tensor *y = kiln_conv2d(x, w, NULL, &p);
    KT_EXPECT_SHAPE(y, 4, 2, 12, 19, 21);
    double *xv = kt_values(x), *wv = kt_values(w);
    const int64_t ys[4] = {2, 12, 19, 21};
    double *ref = malloc(2 * 12 * 19 * 21 * sizeof *ref);
    direct_conv(xv, wv, ref, xs, ws, ys, 2, 2, 2, 2);
    kt_expect_values(y, ref, 2 * 12 * 19 * 21, 1e-4, 1e-5);
    free(xv);
    free(wv);
    free(ref);
}

/* ---- gradients ------------------------------------------------------------------- */

typedef struct {
    kiln_conv2d_params p;
    kiln_conv_transpose2d_params t;
    bool transpose;
} conv_ctx;

static kiln_tensor *f_conv(kiln_tensor *const *in, void *ctx) {
    conv_ctx *c = ctx;
    if (c->transpose) return kiln_conv_transpose2d(in[0], in[1], in[2], &c->t);
    return kiln_conv2d(in[0], in[1], in[2], &c->p);
}

static void check_conv_grad(const int64_t *xs, const int64_t *ws, int64_t nb, conv_ctx *ctx) {
    kiln_tensor *in[3] = {kt_rand_input(4, xs, -1, 1), kt_rand_input(4, ws, -1, 1),
                          nb ? kt_rand_input(1, &nb, -1, 1) : NULL};
    cr_expect(kt_gradcheck(f_conv, ctx, nb ? 3 : 2, in, 1e-6, 1e-7, 1e-6));
}

static kiln_conv2d_params conv_params(int64_t s, int64_t p, int64_t d, int64_t g, bool same) {
    kiln_conv2d_params r = {{s, s}, {p, p}, {d, d}, g, same};
    return r;
}

KT_TEST(conv, grad_basic_with_bias) {
    conv_ctx c = {.p = conv_params(1, 0, 1, 1, false)};
    check_conv_grad((int64_t[]){2, 2, 5, 4}, (int64_t[]){3, 2, 3, 2}, 3, &c);
}
KT_TEST(conv, grad_stride2_pad1_dilation2) {
    conv_ctx c = {.p = conv_params(2, 1, 2, 1, false)};
    check_conv_grad((int64_t[]){1, 2, 7, 6}, (int64_t[]){2, 2, 3, 3}, 2, &c);
}
KT_TEST(conv, grad_same_even_kernel) {
    conv_ctx c = {.p = conv_params(1, 0, 1, 1, true)};
    check_conv_grad((int64_t[]){1, 2, 5, 4}, (int64_t[]){2, 2, 2, 4}, 0, &c);
}
KT_TEST(conv, grad_groups2) {
    conv_ctx c = {.p = conv_params(1, 1, 1, 2, false)};
    check_conv_grad((int64_t[]){2, 4, 4, 3}, (int64_t[]){4, 2, 3, 3}, 4, &c);
}
KT_TEST(conv, grad_depthwise) {
    conv_ctx c = {.p = conv_params(2, 1, 1, 3, false)};
    check_conv_grad((int64_t[]){1, 3, 5, 5}, (int64_t[]){6, 1, 3, 3}, 6, &c);
}
KT_TEST(conv, grad_pointwise) {
    conv_ctx c = {.p = conv_params(1, 0, 1, 1, false)};
    check_conv_grad((int64_t[]){2, 3, 3, 2}, (int64_t[]){2, 3, 1, 1}, 2, &c);
}
KT_TEST(conv, grad_transpose_s2_op1) {
    conv_ctx c = {.transpose = true, .t = {{2, 2}, {1, 1}, {1, 1}, {1, 1}, 1}};
    check_conv_grad((int64_t[]){2, 2, 3, 3}, (int64_t[]){2, 3, 3, 3}, 3, &c);
}
KT_TEST(conv, grad_transpose_groups_dilation) {
    conv_ctx c = {.transpose = true, .t = {{1, 2}, {1, 0}, {1, 1}, {2, 2}, 2}};
    check_conv_grad((int64_t[]){1, 4, 3, 3}, (int64_t[]){4, 1, 3, 2}, 2, &c);
}

KT_TEST(conv, backward_through_expanded_gradient) {
    /* sum() hands conv2d a stride-0 gradient; it must equal an explicit ones gradient */
    kiln_tensor *x = kt_rand_input(4, (int64_t[]){2, 2, 5, 5}, -1, 1);
    kiln_tensor *w = kt_rand_input(4, (int64_t[]){3, 2, 3, 3}, -1, 1);
    kiln_conv2d_params p = conv_params(2, 1, 1, 1, false);
    kiln_tensor *y = kiln_conv2d(x, w, NULL, &p);
    cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    double *gx = kt_values(kiln_tensor_grad(x)), *gw = kt_values(kiln_tensor_grad(w));
    kiln_tensor_zero_grad(x);
    kiln_tensor_zero_grad(w);
    kiln_tensor *y2 = kiln_conv2d(x, w, NULL, &p);
    kiln_tensor *ones = kiln_tensor_full(4, kiln_tensor_shape(y2), 1.0, KILN_F64, KILN_CPU);
    cr_assert_eq(kiln_backward(y2, ones), KILN_STATUS_OK, "%s", kiln_last_error());
    kt_expect_values(kiln_tensor_grad(x), gx, 100, 1e-12, 0);
    kt_expect_values(kiln_tensor_grad(w), gw, 54, 1e-12, 0);
    free(gx);
    free(gw);
}

/* ---- errors ------------------------------------------------------------------------ */

/* ---- unbatched (C, H, W): torch's conv2d/conv_transpose2d take one image without the
 * batch axis (torch 1.13: F.conv2d(randn(3,5,5), randn(2,3,3,3)) is (2,3,3)); kiln's result
 * must be the batched op on unsqueeze(0), squeezed, bit for bit. */
static void expect_same_bits(kiln_tensor *a, kiln_tensor *b) {
    cr_assert(a && b, "%s", kiln_last_error());
    cr_assert_eq(kiln_tensor_ndim(a), kiln_tensor_ndim(b) - 1);
    for (int i = 0; i < kiln_tensor_ndim(a); i++) cr_expect_eq(kiln_tensor_shape(a)[i], kiln_tensor_shape(b)[i + 1]);
    double *va = kt_values(a), *vb = kt_values(b);
    cr_expect(memcmp(va, vb, (size_t)kiln_tensor_numel(a) * sizeof *va) == 0);
    free(va);
    free(vb);
}

KT_TEST(conv, unbatched_matches_batched) {
    for (int k = 0; k < 2; k++) {
        kiln_dtype dt = k ? KILN_F32 : KILN_F64;
        kiln_tensor *x = fixture(3, (int64_t[]){4, 7, 6}, 11, dt), *w = fixture(4, (int64_t[]){6, 2, 3, 3}, 12, dt);
        kiln_tensor *b = fixture(1, (int64_t[]){6}, 13, dt), *x4 = kiln_unsqueeze(x, 0);
        kiln_conv2d_params p = conv_params(2, 1, 1, 2, false);
        expect_same_bits(kiln_conv2d(x, w, b, &p), kiln_conv2d(x4, w, b, &p));
        kiln_tensor *w1 = fixture(4, (int64_t[]){5, 4, 2, 2}, 17, dt);
        expect_same_bits(kiln_conv2d(x, w1, NULL, NULL), kiln_conv2d(x4, w1, NULL, NULL));
        expect_same_bits(kiln_conv2d_bias_relu(x, w, b, &p), kiln_conv2d_bias_relu(x4, w, b, &p));
        KT_EXPECT_SHAPE(kiln_conv2d(x, w, b, &p), 3, 6, 4, 3);
        kiln_tensor *wt = fixture(4, (int64_t[]){4, 3, 3, 3}, 14, dt), *bt = fixture(1, (int64_t[]){3}, 15, dt);
        kiln_conv_transpose2d_params tp = kiln_conv_transpose2d_params_default();
        tp.stride[0] = tp.stride[1] = 2;
        tp.output_padding[1] = 1;
        expect_same_bits(kiln_conv_transpose2d(x, wt, bt, &tp), kiln_conv_transpose2d(x4, wt, bt, &tp));
        KT_EXPECT_SHAPE(kiln_conv_transpose2d(x, wt, bt, &tp), 3, 3, 15, 14);
    }
}

static kiln_tensor *f_conv_unbatched(kiln_tensor *const *in, void *ctx) {
    kiln_conv2d_params p = conv_params(1, 1, 1, 1, false);
    kiln_conv_transpose2d_params tp = kiln_conv_transpose2d_params_default();
    return ctx ? kiln_conv_transpose2d(in[0], in[1], in[2], &tp) : kiln_conv2d(in[0], in[1], in[2], &p);
}

KT_TEST(conv, unbatched_gradcheck_f64) {
    kiln_tensor *in[3] = {kt_rand_input(3, (int64_t[]){2, 4, 5}, -1, 1), kt_rand_input(4, (int64_t[]){3, 2, 3, 3}, -1, 1),
                          kt_rand_input(1, (int64_t[]){3}, -1, 1)};
    cr_expect(kt_gradcheck(f_conv_unbatched, NULL, 3, in, 1e-6, 1e-8, 1e-6));
    kiln_tensor *tin[3] = {in[0], kt_rand_input(4, (int64_t[]){2, 3, 2, 2}, -1, 1), in[2]};
    cr_expect(kt_gradcheck(f_conv_unbatched, tin, 3, tin, 1e-6, 1e-8, 1e-6));
}

KT_TEST(conv, unbatched_module) {
    kiln_module *m = kiln_conv2d_create(2, 3, 3, 1, 1, true, KILN_F32);
    cr_assert(m, "%s", kiln_last_error());
    kiln_tensor *x = fixture(3, (int64_t[]){2, 5, 4}, 16, KILN_F32);
    expect_same_bits(kiln_module_forward(m, x), kiln_module_forward(m, kiln_unsqueeze(x, 0)));
    cr_expect_null(kiln_module_forward(m, kiln_tensor_zeros(3, (int64_t[]){3, 5, 4}, KILN_F32, KILN_CPU)));
    kt_expect_error(KILN_STATUS_SHAPE, "input [3, 5, 4] has 3 channels; expected in_channels = 2");
    cr_expect_null(kiln_module_forward(m, kiln_tensor_zeros(2, (int64_t[]){5, 4}, KILN_F32, KILN_CPU)));
    kt_expect_error(KILN_STATUS_SHAPE, "must be 3-d (C, H, W) or 4-d (N, C, H, W)");
    kiln_module_free(m);
}

KT_TEST(conv, error_ranks) {
    kiln_tensor *x3 = kiln_tensor_zeros(2, (int64_t[]){5, 5}, KILN_F32, KILN_CPU);
    kiln_tensor *w = kiln_tensor_zeros(4, (int64_t[]){3, 2, 3, 3}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_conv2d(x3, w, NULL, NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "conv2d: input has shape [5, 5] (2-d); it takes 3-d (C, H, W) or 4-d");
    cr_expect_null(kiln_conv2d_bias_relu(kiln_tensor_zeros(5, (int64_t[]){1, 1, 2, 5, 5}, KILN_F32, KILN_CPU), w,
                                         NULL, NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "conv2d_bias_relu: input has shape [1, 1, 2, 5, 5] (5-d)");
    kiln_tensor *x = kiln_tensor_zeros(4, (int64_t[]){1, 2, 5, 5}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_conv2d(x, x3, NULL, NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "weight");
    cr_expect_null(kiln_conv2d(x, w, w, NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "bias");
    cr_expect_null(kiln_conv_transpose2d(x3, w, NULL, NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "3-d (C, H, W) or 4-d (N, C, H, W)");
}

KT_TEST(conv, error_channels_and_groups) {
    kiln_tensor *x = kiln_tensor_zeros(4, (int64_t[]){1, 4, 5, 5}, KILN_F32, KILN_CPU);
    kiln_tensor *w = kiln_tensor_zeros(4, (int64_t[]){6, 3, 3, 3}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_conv2d(x, w, NULL, NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "4 channels");
    kiln_conv2d_params p = conv_params(1, 0, 1, 2, false);
    kiln_tensor *w2 = kiln_tensor_zeros(4, (int64_t[]){3, 2, 3, 3}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_conv2d(x, w2, NULL, &p)); /* 3 outputs over 2 groups */
    kt_expect_error(KILN_STATUS_SHAPE, "groups=2");
    kiln_tensor *b = kiln_tensor_zeros(1, (int64_t[]){5}, KILN_F32, KILN_CPU);
    kiln_tensor *w3 = kiln_tensor_zeros(4, (int64_t[]){6, 2, 3, 3}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_conv2d(x, w3, b, &p));
    kt_expect_error(KILN_STATUS_SHAPE, "bias has 5 values");
    kiln_conv_transpose2d_params t = kiln_conv_transpose2d_params_default();
    t.groups = 3;
    kiln_tensor *wt = kiln_tensor_zeros(4, (int64_t[]){4, 1, 3, 3}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_conv_transpose2d(x, wt, NULL, &t));
    kt_expect_error(KILN_STATUS_SHAPE, "not divisible by groups=3");
    cr_expect_null(kiln_conv_transpose2d(x, w, NULL, NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "expects 6");
}

KT_TEST(conv, error_kernel_larger_than_padded_input) {
    kiln_tensor *x = kiln_tensor_zeros(4, (int64_t[]){1, 1, 4, 4}, KILN_F32, KILN_CPU);
    kiln_tensor *w = kiln_tensor_zeros(4, (int64_t[]){1, 1, 5, 3}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_conv2d(x, w, NULL, NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "padded input is only 4");
    kiln_conv2d_params p = conv_params(1, 0, 2, 1, false); /* 3x3 dilated by 2 spans 5 */
    kiln_tensor *w3 = kiln_tensor_zeros(4, (int64_t[]){1, 1, 3, 3}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_conv2d(x, w3, NULL, &p));
    kt_expect_error(KILN_STATUS_SHAPE, "spans 5");
    p.padding[0] = p.padding[1] = 1;
    cr_expect_not_null(kiln_conv2d(x, w3, NULL, &p), "%s", kiln_last_error());
}

KT_TEST(conv, error_bad_params) {
    kiln_tensor *x = kiln_tensor_zeros(4, (int64_t[]){1, 1, 4, 4}, KILN_F32, KILN_CPU);
    kiln_tensor *w = kiln_tensor_zeros(4, (int64_t[]){1, 1, 3, 3}, KILN_F32, KILN_CPU);
    kiln_conv2d_params p = conv_params(0, 0, 1, 1, false);
    cr_expect_null(kiln_conv2d(x, w, NULL, &p));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "stride 0");
    p = conv_params(1, -1, 1, 1, false);
    cr_expect_null(kiln_conv2d(x, w, NULL, &p));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "padding -1");
    p = conv_params(1, 0, 0, 1, false);
    cr_expect_null(kiln_conv2d(x, w, NULL, &p));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "dilation 0");
    p = conv_params(1, 0, 1, 0, false);
    cr_expect_null(kiln_conv2d(x, w, NULL, &p));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "groups 0");
    p = conv_params(2, 0, 1, 1, true);
    cr_expect_null(kiln_conv2d(x, w, NULL, &p));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "\"same\" needs stride 1");
    kiln_conv_transpose2d_params t = {{2, 2}, {0, 0}, {2, 0}, {1, 1}, 1};
    cr_expect_null(kiln_conv_transpose2d(x, w, NULL, &t));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "output_padding 2");
    t = (kiln_conv_transpose2d_params){{1, 1}, {3, 3}, {0, 0}, {1, 1}, 1}; /* 4 + 2 - 6 = 0 */
    cr_expect_null(kiln_conv_transpose2d(x, w, NULL, &t));
    kt_expect_error(KILN_STATUS_SHAPE, "must be positive");
    t.stride[1] = -1;
    cr_expect_null(kiln_conv_transpose2d(x, w, NULL, &t));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "stride -1");
}

KT_TEST(conv, error_null_and_dtype) {
    kiln_tensor *w = kiln_tensor_zeros(4, (int64_t[]){1, 1, 3, 3}, KILN_F32, KILN_CPU);
    kiln_tensor *x64 = kiln_tensor_zeros(4, (int64_t[]){1, 1, 4, 4}, KILN_F64, KILN_CPU);
    cr_expect_null(kiln_conv2d(x64, w, NULL, NULL));
    kt_expect_error(KILN_STATUS_DTYPE, "different dtypes");
    /* a failed op's NULL result passed on keeps the first error */
    kiln_tensor *y = kiln_conv2d(w, kiln_reshape(w, 2, (int64_t[]){9, 2}), NULL, NULL);
    cr_expect_null(kiln_conv2d(y, w, NULL, NULL));
    cr_expect_null(kiln_conv_transpose2d(y, w, NULL, NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "reshape");
}

KT_TEST(conv, empty_batch) {
    /* torch accepts N = 0: an empty output, and a zero weight gradient */
    kiln_tensor *x = kt_rand_input(4, (int64_t[]){1, 2, 5, 5}, -1, 1);
    kiln_tensor *x0 = kiln_slice(x, 0, 0, 0, 1);
    kiln_tensor *w = kt_rand_input(4, (int64_t[]){3, 2, 3, 3}, -1, 1);
    kiln_tensor *b = kt_rand_input(1, (int64_t[]){3}, -1, 1);
    kiln_tensor *y = kiln_conv2d(x0, w, b, NULL);
    KT_EXPECT_SHAPE(y, 4, 0, 3, 3, 3);
    cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT(kiln_tensor_grad(b), 0, 0, {0, 0, 0});
    double zeros[54] = {0};
    kt_expect_values(kiln_tensor_grad(w), zeros, 54, 0, 0);
    kiln_tensor *t = kiln_conv_transpose2d(kiln_conv2d(x0, w, NULL, NULL), w, NULL, NULL);
    KT_EXPECT_SHAPE(t, 4, 0, 2, 5, 5);
}

KT_TEST(conv, layer_ops_are_registered) {
    /* every layer op: a CPU kernel, and a backward or the explicit mark */
    static const char *names[] = {"conv2d", "conv2d_backward_input", "conv2d_backward_weight", "conv_transpose2d",
                                  "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
                                  "upsample_nearest2d", "upsample_nearest2d_backward", "upsample_bilinear2d",
                                  "upsample_bilinear2d_backward"};
    int count;
    const kiln_op_def *const *ops = kiln__op_registry(&count);
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const kiln_op_def *op = NULL;
        for (int j = 0; j < count; j++)
            if (strcmp(ops[j]->name, names[i]) == 0) op = ops[j];
        cr_expect(op != NULL, "%s is not in the registry", names[i]);
        if (!op) continue;
        cr_expect(op->cpu != NULL, "%s has no CPU kernel", names[i]);
        bool is_backward = strstr(names[i], "_backward") != NULL;
        cr_expect(is_backward ? op->not_differentiable && !op->backward : op->backward && !op->not_differentiable,
                  "%s: backward rule / not-differentiable mark", names[i]);
    }
}

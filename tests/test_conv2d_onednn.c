/* The oneDNN CPU convolutions against kiln's im2col path and a float64 reference:
 * conv2d forward, input, weight and bias gradients, conv_transpose2d forward and
 * backward and conv2d_bias_relu, over a grid of geometries, with oneDNN on and off.
 * The counters of kernels/cpu/conv2d_onednn.c show which path ran and that repeated
 * steps build no new primitive. */
#include "support/kiln_test.h"
#include "kernels/cpu/conv2d_onednn.h"

#include <math.h>
#include <stdlib.h>

TestSuite(conv_onednn, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define SKIP_WITHOUT_ONEDNN()                                                                                  \
    do {                                                                                                       \
        if (!kiln_cpu_onednn_available())                                                                      \
            cr_skip_test("kiln was built without oneDNN (configure with -DKILN_ONEDNN=ON after installing the " \
                         "Debian package libdnnl-dev): the im2col path is the only one");                      \
    } while (0)

/* Tolerance. Inputs are f32 values, so their float64 copies are exact and the float64
 * result is the exact one up to 1e-16. An f32 sum of K products, in any order or
 * blocking (oneDNN's, OpenBLAS's, chunked and then added), is within
 * gamma_K * sum|terms| of it, gamma_K = K u / (1 - K u), u = 2^-24 (Higham, Accuracy
 * and Stability, 3.1). sum|terms| per element is the same operation run in float64 on
 * |x|, |w|, |b| and |gy|, so each element gets its own bound; K is the reduction
 * length of the pass: cin/groups*kh*kw (+1 with a bias) forward, cout/groups*kh*kw
 * for the input gradient, N*Ho*Wo for the weight and bias gradients. */
static double gamma_k(int64_t k) {
    const double u = ldexp(1.0, -24);
    return (double)k * u / (1.0 - (double)k * u);
}

static void expect_close(kiln_tensor *got, kiln_tensor *ref, kiln_tensor *bound, int64_t k, const char *what,
                         const char *mode) {
    cr_assert(got && ref && bound, "%s (%s): %s", what, mode, kiln_last_error());
    int64_t n = kiln_tensor_numel(ref);
    cr_assert_eq(kiln_tensor_numel(got), n, "%s (%s): %lld values, expected %lld", what, mode,
                 (long long)kiln_tensor_numel(got), (long long)n);
    double *g = kt_values(got), *r = kt_values(ref), *b = kt_values(bound);
    double gk = gamma_k(k), worst = 0;
    int64_t bad = -1;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs(g[i] - r[i]), tol = gk * b[i] + 1e-12 * b[i];
        if (err > tol && (bad < 0 || err - tol > worst)) bad = i, worst = err - tol;
    }
    if (bad >= 0)
        cr_expect(false, "%s (%s): element %lld is %.9g, the float64 result %.9g, bound %.3g (K=%lld)", what, mode,
                  (long long)bad, g[bad], r[bad], gk * b[bad], (long long)k);
    free(g);
    free(r);
    free(b);
}

/* The same values as a non-contiguous view (H and W swapped in memory). */
static kiln_tensor *strided(kiln_tensor *t) {
    kiln_tensor *s = kiln_transpose(kiln_tensor_contiguous(kiln_transpose(t, 2, 3)), 2, 3);
    cr_assert(s, "%s", kiln_last_error());
    return s;
}

static kiln_tensor *leaf(kiln_tensor *t, kiln_dtype dt, bool absolute, bool view) {
    if (!t) return NULL;
    kiln_tensor *c = kiln_tensor_cast(t, dt);
    if (absolute) c = kiln_abs(c);
    c = kiln_tensor_contiguous(c);
    if (view) c = strided(c);
    c = kiln_tensor_detach(c);
    cr_assert(c, "%s", kiln_last_error());
    kiln_tensor_set_requires_grad(c, true);
    return c;
}

typedef struct {
    const char *name;
    int64_t n, cin, h, w, cout, kh, kw;
    int64_t stride[2], pad[2], dil[2], groups, out_pad[2];
    bool same, bias, view;
} conv_case;

/* One forward + backward: y, dx, dw, db of the case (transposed or not). */
typedef struct {
    kiln_tensor *y, *dx, *dw, *db;
} pass_out;

static kiln_tensor *forward_only(const conv_case *c, bool transposed, kiln_tensor *x, kiln_tensor *w,
                                 kiln_tensor *b) {
    kiln_tensor *y;
    if (transposed) {
        kiln_conv_transpose2d_params p = {{c->stride[0], c->stride[1]}, {c->pad[0], c->pad[1]},
                                          {c->out_pad[0], c->out_pad[1]}, {c->dil[0], c->dil[1]}, c->groups};
        y = kiln_conv_transpose2d(x, w, b, &p);
    } else {
        kiln_conv2d_params p = {{c->stride[0], c->stride[1]}, {c->pad[0], c->pad[1]}, {c->dil[0], c->dil[1]},
                                c->groups, c->same};
        y = kiln_conv2d(x, w, b, &p);
    }
    cr_assert(y, "%s: %s", c->name, kiln_last_error());
    return y;
}

static pass_out run_case(const conv_case *c, bool transposed, kiln_tensor *x32, kiln_tensor *w32, kiln_tensor *b32,
                         kiln_tensor *gy32, kiln_dtype dt, bool absolute) {
    kiln_tensor *x = leaf(x32, dt, absolute, c->view), *w = leaf(w32, dt, absolute, false);
    kiln_tensor *b = leaf(b32, dt, absolute, false), *gy = kiln_tensor_cast(gy32, dt);
    if (absolute) gy = kiln_abs(gy);
    kiln_tensor *y = forward_only(c, transposed, x, w, b);
    cr_assert_eq(kiln_backward(y, gy), KILN_STATUS_OK, "%s: %s", c->name, kiln_last_error());
    pass_out o = {y, kiln_tensor_grad(x), kiln_tensor_grad(w), b ? kiln_tensor_grad(b) : NULL};
    return o;
}


static void check_case(const conv_case *c, bool transposed) {
    kiln_manual_seed(1234);
    int64_t wshape[4] = {c->cout, c->cin / c->groups, c->kh, c->kw};
    if (transposed) wshape[0] = c->cin, wshape[1] = c->cout / c->groups;
    kiln_tensor *x32 = kiln_tensor_rand(4, (int64_t[]){c->n, c->cin, c->h, c->w}, -1, 1, KILN_F32, KILN_CPU);
    kiln_tensor *w32 = kiln_tensor_rand(4, wshape, -1, 1, KILN_F32, KILN_CPU);
    kiln_tensor *b32 = c->bias ? kiln_tensor_rand(1, &c->cout, -1, 1, KILN_F32, KILN_CPU) : NULL;
    cr_assert(x32 && w32 && (b32 || !c->bias), "%s", kiln_last_error());
    kiln_no_grad_begin();
    kiln_tensor *y_probe = forward_only(c, transposed, x32, w32, b32);
    kiln_no_grad_end();
    const int64_t *ys = kiln_tensor_shape(y_probe);
    kiln_tensor *gy32 = kiln_tensor_rand(4, ys, -1, 1, KILN_F32, KILN_CPU);
    cr_assert(gy32, "%s", kiln_last_error());

    /* float64 (the im2col path: oneDNN runs f32 only) and the per-element bounds */
    kiln_onednn_counters before = kiln__onednn_counters();
    pass_out ref = run_case(c, transposed, x32, w32, b32, gy32, KILN_F64, false);
    pass_out bnd = run_case(c, transposed, x32, w32, b32, gy32, KILN_F64, true);
    cr_expect_eq(kiln__onednn_counters().runs, before.runs, "%s: a float64 convolution ran on oneDNN", c->name);

    /* reduction lengths: the conv2d whose forward, data and weight passes these are */
    int64_t cin_c = transposed ? c->cout : c->cin, cout_c = transposed ? c->cin : c->cout;
    int64_t k_fwd = cin_c / c->groups * c->kh * c->kw, k_data = cout_c / c->groups * c->kh * c->kw;
    if (transposed) { int64_t t = k_fwd; k_fwd = k_data; k_data = t; }
    int64_t k_y = k_fwd + (c->bias ? 1 : 0);
    int64_t spatial_y = ys[0] * ys[2] * ys[3], spatial_x = c->n * c->h * c->w;
    int64_t k_w = transposed ? spatial_x : spatial_y;

    for (int on = 1; on >= 0; on--) {
        kiln_cpu_set_onednn(on);
        const char *mode = on ? "oneDNN" : "im2col";
        for (int rep = 0; rep < (on ? 2 : 1); rep++) {
            kiln_scope *s = kiln_scope_begin();
            kiln_onednn_counters c0 = kiln__onednn_counters();
            pass_out o = run_case(c, transposed, x32, w32, b32, gy32, KILN_F32, false);
            kiln_onednn_counters c1 = kiln__onednn_counters();
            /* forward, input gradient, weight gradient: three oneDNN passes */
            if (on) cr_expect_geq(c1.runs - c0.runs, 3, "%s: %lld oneDNN passes, expected 3", c->name,
                                  (long long)(c1.runs - c0.runs));
            else cr_expect_eq(c1.runs, c0.runs, "%s: oneDNN ran while switched off", c->name);
            if (on && rep == 1)
                cr_expect_eq(c1.primitives_created, c0.primitives_created,
                             "%s: the second step built %lld primitives; the cache should hold them", c->name,
                             (long long)(c1.primitives_created - c0.primitives_created));
            char what[160];
            snprintf(what, sizeof what, "%s %s output", c->name, transposed ? "conv_transpose2d" : "conv2d");
            expect_close(o.y, ref.y, bnd.y, k_y, what, mode);
            snprintf(what, sizeof what, "%s input gradient", c->name);
            expect_close(o.dx, ref.dx, bnd.dx, k_data, what, mode);
            snprintf(what, sizeof what, "%s weight gradient", c->name);
            expect_close(o.dw, ref.dw, bnd.dw, k_w, what, mode);
            if (c->bias) {
                snprintf(what, sizeof what, "%s bias gradient", c->name);
                expect_close(o.db, ref.db, bnd.db, spatial_y, what, mode);
            }
            kiln_scope_end(s);
        }
    }
    kiln_cpu_set_onednn(true);
}

/* stride, padding, dilation, groups, output_padding as {h, w} pairs */
#define S(a, b) {a, b}
static const conv_case CONV_CASES[] = {
    /* name                      n  cin  h   w  cout kh kw  stride   pad     dil   groups out_pad same  bias  view */
    {"one_channel_3x3",          1,  1,  5,  7,  3,  3, 3, S(1, 1), S(0, 0), S(1, 1), 1, S(0, 0), false, true, false},
    {"rgb_stride2_pad1_odd",     3,  3,  9, 11, 16,  3, 3, S(2, 2), S(1, 1), S(1, 1), 1, S(0, 0), false, true, false},
    {"same_16",                  3, 16, 13, 13, 16,  3, 3, S(1, 1), S(0, 0), S(1, 1), 1, S(0, 0), true,  true, false},
    {"same_even_kernel",         3, 16,  9, 10, 16,  2, 4, S(1, 1), S(0, 0), S(1, 1), 1, S(0, 0), true,  false, false},
    {"pointwise_32",             1, 32,  8,  8, 32,  1, 1, S(1, 1), S(0, 0), S(1, 1), 1, S(0, 0), false, true, false},
    {"pointwise_stride2",        3, 16,  9,  9, 32,  1, 1, S(2, 2), S(0, 0), S(1, 1), 1, S(0, 0), false, false, false},
    {"dilation2_pad2",           3, 16, 10,  9, 32,  3, 3, S(1, 1), S(2, 2), S(2, 2), 1, S(0, 0), false, true, false},
    {"dilation2_same",           1, 16, 11, 12, 16,  3, 3, S(1, 1), S(0, 0), S(2, 2), 1, S(0, 0), true,  true, false},
    {"groups2",                  3, 16, 12, 12, 16,  3, 3, S(1, 1), S(1, 1), S(1, 1), 2, S(0, 0), false, true, false},
    {"depthwise_16",             3, 16, 11, 11, 16,  3, 3, S(1, 1), S(1, 1), S(1, 1), 16, S(0, 0), false, true, false},
    {"depthwise_multiplier",     3,  3,  8,  9,  6,  3, 3, S(2, 2), S(1, 1), S(1, 1), 3, S(0, 0), false, true, false},
    {"stride2_32",               3, 32, 16, 16, 32,  3, 3, S(2, 2), S(1, 1), S(1, 1), 1, S(0, 0), false, true, false},
    {"rect_kernel_stride_1x2",   3, 16,  9, 13, 16,  3, 1, S(1, 2), S(1, 0), S(1, 1), 1, S(0, 0), false, true, false},
    {"noncontiguous_input",      3, 16, 10, 11, 32,  3, 3, S(1, 1), S(1, 1), S(1, 1), 1, S(0, 0), false, true, true},
    {"noncontiguous_stride2",    3,  3, 13, 12, 16,  3, 3, S(2, 2), S(1, 1), S(1, 1), 1, S(0, 0), false, true, true},
    /* one sample's blocked output is 1.5 MiB: the batch runs as two chunks of two
     * samples (4 MiB limit) and the weight gradient adds the chunks' parts */
    {"chunked_batch",            4, 16, 128, 96, 32, 3, 3, S(1, 1), S(1, 1), S(1, 1), 1, S(0, 0), false, true, false},
};

static const conv_case CONVT_CASES[] = {
    {"up_2x2_stride2",           3, 16,  8,  9, 16,  2, 2, S(2, 2), S(0, 0), S(1, 1), 1, S(0, 0), false, true, false},
    {"up_3x3_pad1_outpad1",      3, 32,  7,  6,  3,  3, 3, S(2, 2), S(1, 1), S(1, 1), 1, S(1, 1), false, true, false},
    {"groups2_dilation2",        1, 16,  6,  7, 32,  3, 3, S(1, 1), S(1, 1), S(2, 2), 2, S(0, 0), false, true, false},
    {"pointwise_1",              1, 16,  5,  5,  1,  1, 1, S(1, 1), S(0, 0), S(1, 1), 1, S(0, 0), false, false, false},
    {"depthwise_stride2",        3, 16,  5,  5, 16,  3, 3, S(2, 2), S(1, 1), S(1, 1), 16, S(0, 1), false, true, false},
    {"noncontiguous",            3, 16,  6,  7, 16,  2, 2, S(2, 2), S(0, 0), S(1, 1), 1, S(0, 0), false, true, true},
};
#undef S

KT_TEST(conv_onednn, conv2d_grid) {
    SKIP_WITHOUT_ONEDNN();
    for (size_t i = 0; i < sizeof CONV_CASES / sizeof CONV_CASES[0]; i++) check_case(&CONV_CASES[i], false);
}

KT_TEST(conv_onednn, conv_transpose2d_grid) {
    SKIP_WITHOUT_ONEDNN();
    for (size_t i = 0; i < sizeof CONVT_CASES / sizeof CONVT_CASES[0]; i++) check_case(&CONVT_CASES[i], true);
}

/* conv2d_bias_relu with nothing recording: the fused inference op (oneDNN's ReLU
 * post-op) against relu of the float64 convolution, with the forward bound. */
KT_TEST(conv_onednn, conv2d_bias_relu) {
    SKIP_WITHOUT_ONEDNN();
    static const struct { int64_t n, cin, h, w, cout, k, stride, pad, groups; } cases[] = {
        {3, 16, 13, 11, 32, 3, 1, 1, 1}, {1, 3, 9, 9, 16, 3, 2, 1, 1}, {3, 16, 8, 8, 16, 3, 1, 1, 16},
        {1, 32, 7, 7, 16, 1, 1, 0, 1}};
    kiln_manual_seed(99);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int64_t xs[4] = {cases[i].n, cases[i].cin, cases[i].h, cases[i].w};
        int64_t ws[4] = {cases[i].cout, cases[i].cin / cases[i].groups, cases[i].k, cases[i].k};
        kiln_tensor *x = kiln_tensor_rand(4, xs, -1, 1, KILN_F32, KILN_CPU);
        kiln_tensor *w = kiln_tensor_rand(4, ws, -1, 1, KILN_F32, KILN_CPU);
        kiln_tensor *b = kiln_tensor_rand(1, &cases[i].cout, -1, 1, KILN_F32, KILN_CPU);
        kiln_conv2d_params p = kiln_conv2d_params_default();
        p.stride[0] = p.stride[1] = cases[i].stride;
        p.padding[0] = p.padding[1] = cases[i].pad;
        p.groups = cases[i].groups;
        kiln_tensor *ref = kiln_relu(kiln_conv2d(kiln_tensor_cast(x, KILN_F64), kiln_tensor_cast(w, KILN_F64),
                                                 kiln_tensor_cast(b, KILN_F64), &p));
        kiln_tensor *bnd = kiln_conv2d(kiln_abs(kiln_tensor_cast(x, KILN_F64)), kiln_abs(kiln_tensor_cast(w, KILN_F64)),
                                       kiln_abs(kiln_tensor_cast(b, KILN_F64)), &p);
        int64_t k = cases[i].cin / cases[i].groups * cases[i].k * cases[i].k + 1;
        for (int on = 1; on >= 0; on--) {
            kiln_cpu_set_onednn(on);
            kiln_onednn_counters c0 = kiln__onednn_counters();
            kiln_tensor *y = kiln_conv2d_bias_relu(x, w, b, &p);
            kiln_onednn_counters c1 = kiln__onednn_counters();
            cr_expect_eq(c1.runs - c0.runs, on ? 1 : 0, "case %zu: %lld oneDNN passes with oneDNN %s", i,
                         (long long)(c1.runs - c0.runs), on ? "on" : "off");
            char what[64];
            snprintf(what, sizeof what, "conv2d_bias_relu case %zu", i);
            expect_close(y, ref, bnd, k, what, on ? "oneDNN" : "im2col");
        }
    }
    kiln_cpu_set_onednn(true);
}

/* The primitive cache is bounded (256 keys): 300 geometries in turn, then the first
 * again, which must be rebuilt (evicted) and still match the im2col result exactly
 * enough (K = 2 products, so gamma_3 of |x|*|w|). */
KT_TEST(conv_onednn, cache_evicts) {
    SKIP_WITHOUT_ONEDNN();
    kiln_manual_seed(5);
    kiln_tensor *w = kiln_tensor_rand(4, (int64_t[]){4, 2, 1, 1}, -1, 1, KILN_F32, KILN_CPU);
    kiln_no_grad_begin();
    for (int64_t width = 1; width <= 300; width++) {
        kiln_scope *s = kiln_scope_begin();
        kiln_tensor *x = kiln_tensor_rand(4, (int64_t[]){1, 2, 1, width}, -1, 1, KILN_F32, KILN_CPU);
        cr_assert(kiln_conv2d(x, w, NULL, NULL), "%s", kiln_last_error());
        kiln_scope_end(s);
    }
    kiln_tensor *x = kiln_tensor_rand(4, (int64_t[]){1, 2, 1, 1}, -1, 1, KILN_F32, KILN_CPU);
    kiln_onednn_counters c0 = kiln__onednn_counters();
    kiln_tensor *y = kiln_conv2d(x, w, NULL, NULL);
    kiln_onednn_counters c1 = kiln__onednn_counters();
    cr_expect_eq(c1.primitives_created - c0.primitives_created, 1,
                 "the first geometry, 300 keys ago, was not rebuilt: the cache is not bounded");
    cr_expect_eq(c1.runs - c0.runs, 1);
    kiln_tensor *ref = kiln_conv2d(kiln_tensor_cast(x, KILN_F64), kiln_tensor_cast(w, KILN_F64), NULL, NULL);
    kiln_tensor *bnd = kiln_conv2d(kiln_abs(kiln_tensor_cast(x, KILN_F64)), kiln_abs(kiln_tensor_cast(w, KILN_F64)),
                                   NULL, NULL);
    kiln_no_grad_end();
    expect_close(y, ref, bnd, 2, "rebuilt 1x1 conv", "oneDNN");
}

/* The switch: set and read back; with it off no pass reaches oneDNN (checked in the
 * grids), and a build without oneDNN reports it unavailable. */
KT_TEST(conv_onednn, switch) {
    bool was = kiln_cpu_onednn_enabled();
    kiln_cpu_set_onednn(false);
    cr_expect(!kiln_cpu_onednn_enabled());
    kiln_cpu_set_onednn(true);
    cr_expect(kiln_cpu_onednn_enabled());
    kiln_cpu_set_onednn(was);
#ifndef KILN_HAVE_ONEDNN
    cr_expect(!kiln_cpu_onednn_available(), "a build without oneDNN reports it available");
#else
    cr_expect(kiln_cpu_onednn_available(), "built with oneDNN, but its CPU engine could not be created");
#endif
}

/* The convolution-family modules and U-Net-16: module parameters, torch's
 * initialisation and errors, float64 gradient checks through the modules, the
 * U-Net's state_dict against PyTorch's (names, shapes, 483,441 parameters), one
 * training-mode forward/backward against a PyTorch fixture, and issue 3's
 * acceptance test: a small U-Net learns a synthetic mask task on the CPU. */
#include "support/kiln_test.h"
#include "fixtures/unet.h"
#include "models/unet.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

TestSuite(unet, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- module construction and initialisation ------------------------------------------ */

/* Every value of t lies in [-bound, bound]; with check_span, the extremes come near
 * it too (a uniform draw of a few hundred values fills 90% of its range on both sides
 * with probability 1 - 2*0.95^n), which tells a wrong fan from the right one. */
static void expect_uniform_in(kiln_tensor *t, double bound, bool check_span, const char *what) {
    cr_assert(t, "%s is NULL: %s", what, kiln_last_error());
    double *v = kt_values(t), lo = 0, hi = 0;
    int64_t n = kiln_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        cr_expect(fabs(v[i]) <= bound * (1 + 1e-6), "%s[%lld] = %g is outside +-%g", what, (long long)i, v[i], bound);
        lo = fmin(lo, v[i]);
        hi = fmax(hi, v[i]);
    }
    cr_expect(!check_span || (lo < -0.9 * bound && hi > 0.9 * bound), "%s spans [%g, %g], not about +-%g", what, lo, hi, bound);
    free(v);
}

KT_TEST(unet, conv2d_module_parameters_and_init_as_torch) {
    kiln_conv2d_params p = kiln_conv2d_params_default();
    p.groups = 2;
    kiln_module *c = kiln_conv2d_create_ex(6, 8, 3, 5, &p, true, KILN_F32);
    cr_assert(c, "%s", kiln_last_error());
    cr_expect_str_eq(kiln_module_type(c), "Conv2d");
    const char *n0, *n1;
    kiln_tensor *w = kiln_module_parameter(c, 0, &n0), *b = kiln_module_parameter(c, 1, &n1);
    cr_expect_str_eq(n0, "weight");
    cr_expect_str_eq(n1, "bias");
    KT_EXPECT_SHAPE(w, 4, 8, 3, 3, 5); /* (out, in/groups, kH, kW) */
    KT_EXPECT_SHAPE(b, 1, 8);
    cr_expect(kiln_tensor_requires_grad(w) && kiln_tensor_requires_grad(b));
    /* torch: kaiming_uniform(a = sqrt 5) and bias U(+-1/sqrt(fan_in)), fan_in = 3*3*5 = 45:
     * both bounds are 1/sqrt(45) */
    expect_uniform_in(w, 1 / sqrt(45.0), true, "Conv2d weight");
    expect_uniform_in(b, 1 / sqrt(45.0), false, "Conv2d bias");
    cr_expect_eq(kiln_module_parameter_count(c), 8 * 3 * 3 * 5 + 8);
    kiln_module_free(c);

    kiln_module *nb = kiln_conv2d_create(3, 4, 1, 1, 0, false, KILN_F64);
    cr_assert(nb);
    cr_expect_eq(kiln_module_num_parameters(nb), 1);
    cr_expect_eq(kiln_tensor_dtype(kiln_module_get(nb, "weight")), KILN_F64);
    kiln_module_free(nb);
}

KT_TEST(unet, conv_transpose2d_init_takes_fan_in_from_dim_1) {
    /* weight (in, out/groups, kH, kW) = (4, 12/2, 3, 3): torch's fan_in is size(1)*k*k = 54,
     * not in*k*k = 36 */
    kiln_conv_transpose2d_params p = kiln_conv_transpose2d_params_default();
    p.groups = 2;
    kiln_module *t = kiln_conv_transpose2d_create_ex(4, 12, 3, 3, &p, true, KILN_F32);
    cr_assert(t, "%s", kiln_last_error());
    cr_expect_str_eq(kiln_module_type(t), "ConvTranspose2d");
    KT_EXPECT_SHAPE(kiln_module_get(t, "weight"), 4, 4, 6, 3, 3);
    KT_EXPECT_SHAPE(kiln_module_get(t, "bias"), 1, 12);
    expect_uniform_in(kiln_module_get(t, "weight"), 1 / sqrt(54.0), true, "ConvTranspose2d weight");
    expect_uniform_in(kiln_module_get(t, "bias"), 1 / sqrt(54.0), false, "ConvTranspose2d bias");
    kiln_module_free(t);
}

/* ---- forward equals the functional op; float64 gradient checks through modules ---- */

static kiln_tensor *f_module(kiln_tensor *const *in, void *ctx) { return kiln_module_forward(ctx, in[0]); }

/* Checks the module's forward against ref (the functional op on the same tensors),
 * then gradchecks x and every parameter through kiln_module_forward: the module's
 * own parameter tensors are the checker's inputs, so the gradients that land in
 * the arena are the ones compared with central differences. */
static void check_module(kiln_module *m, const int64_t *xs, kiln_tensor *ref_of_x(kiln_module *, kiln_tensor *)) {
    cr_assert(m, "%s", kiln_last_error());
    cr_assert_eq(kiln_module_finalize(m), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *in[3] = {kt_rand_input(4, xs, -1, 1), NULL, NULL};
    int n = 1;
    for (int i = 0; i < kiln_module_num_parameters(m); i++) in[n++] = kiln_module_parameter(m, i, NULL);
    kiln_tensor *y = kiln_module_forward(m, in[0]), *r = ref_of_x(m, in[0]);
    cr_assert(y && r, "%s", kiln_last_error());
    double *rv = kt_values(r);
    kt_expect_values(y, rv, kiln_tensor_numel(r), 0, 0);
    free(rv);
    cr_expect(kt_gradcheck(f_module, m, n, in, 1e-6, 1e-7, 1e-6));
    kiln_module_free(m);
}

static kiln_tensor *ref_conv(kiln_module *m, kiln_tensor *x) {
    kiln_conv2d_params p = kiln_conv2d_params_default();
    p.stride[0] = 2;
    p.padding[1] = 1;
    p.dilation[0] = 2;
    p.groups = 2;
    return kiln_conv2d(x, kiln_module_get(m, "weight"), kiln_module_get(m, "bias"), &p);
}

KT_TEST(unet, conv2d_module_gradcheck_strided_dilated_grouped) {
    kiln_conv2d_params p = kiln_conv2d_params_default();
    p.stride[0] = 2;
    p.padding[1] = 1;
    p.dilation[0] = 2;
    p.groups = 2;
    check_module(kiln_conv2d_create_ex(4, 6, 2, 3, &p, true, KILN_F64), (int64_t[]){2, 4, 7, 5}, ref_conv);
}

static kiln_tensor *ref_same(kiln_module *m, kiln_tensor *x) {
    kiln_conv2d_params p = kiln_conv2d_params_default();
    p.padding_same = true;
    return kiln_conv2d(x, kiln_module_get(m, "weight"), NULL, &p);
}

KT_TEST(unet, conv2d_module_same_padding_even_kernel_keeps_size) {
    kiln_conv2d_params p = kiln_conv2d_params_default();
    p.padding_same = true;
    kiln_module *m = kiln_conv2d_create_ex(2, 3, 4, 2, &p, false, KILN_F64);
    kiln_scope *s = kiln_scope_begin();
    KT_EXPECT_SHAPE(kiln_module_forward(m, kiln_tensor_zeros(4, (int64_t[]){1, 2, 5, 6}, KILN_F64, KILN_CPU)), 4, 1, 3,
                    5, 6);
    kiln_scope_end(s);
    check_module(m, (int64_t[]){1, 2, 5, 4}, ref_same);
}

static kiln_tensor *ref_convt(kiln_module *m, kiln_tensor *x) {
    kiln_conv_transpose2d_params p = kiln_conv_transpose2d_params_default();
    p.stride[0] = p.stride[1] = 2;
    p.padding[0] = 1;
    p.output_padding[0] = 1;
    p.dilation[1] = 2;
    p.groups = 2;
    return kiln_conv_transpose2d(x, kiln_module_get(m, "weight"), kiln_module_get(m, "bias"), &p);
}

KT_TEST(unet, conv_transpose2d_module_gradcheck_output_padding) {
    kiln_conv_transpose2d_params p = kiln_conv_transpose2d_params_default();
    p.stride[0] = p.stride[1] = 2;
    p.padding[0] = 1;
    p.output_padding[0] = 1;
    p.dilation[1] = 2;
    p.groups = 2;
    kiln_module *m = kiln_conv_transpose2d_create_ex(4, 2, 3, 2, &p, true, KILN_F64);
    kiln_scope *s = kiln_scope_begin();
    /* H: (3-1)*2 - 2 + 1*(3-1) + 1 + 1 = 6; W: (4-1)*2 + 2*(2-1) + 1 = 9 */
    KT_EXPECT_SHAPE(kiln_module_forward(m, kiln_tensor_zeros(4, (int64_t[]){1, 4, 3, 4}, KILN_F64, KILN_CPU)), 4, 1, 2,
                    6, 9);
    kiln_scope_end(s);
    check_module(m, (int64_t[]){2, 4, 3, 4}, ref_convt);
}

KT_TEST(unet, conv_transpose2d_simple_form_is_the_unet_upsampler) {
    kiln_module *m = kiln_conv_transpose2d_create(8, 4, 2, 2, 0, true, KILN_F64);
    cr_assert(m);
    KT_EXPECT_SHAPE(kiln_module_forward(m, kiln_tensor_zeros(4, (int64_t[]){2, 8, 3, 5}, KILN_F64, KILN_CPU)), 4, 2, 4,
                    6, 10);
    kiln_module_free(m);
}

static kiln_tensor *ref_maxpool(kiln_module *m, kiln_tensor *x) {
    kiln_pool2d_params p = kiln_pool2d_params_default(3, 3);
    p.stride[0] = p.stride[1] = 2;
    p.padding[0] = p.padding[1] = 1;
    return kiln_max_pool2d(x, &p);
}
static kiln_tensor *ref_avgpool(kiln_module *m, kiln_tensor *x) {
    kiln_pool2d_params p = kiln_pool2d_params_default(2, 2);
    p.ceil_mode = true;
    p.count_include_pad = false;
    p.padding[0] = p.padding[1] = 1;
    return kiln_avg_pool2d(x, &p);
}
static kiln_tensor *ref_bilinear(kiln_module *m, kiln_tensor *x) { return kiln_upsample_bilinear2d(x, 7, 5, true); }
static kiln_tensor *ref_bilinear_scale(kiln_module *m, kiln_tensor *x) {
    return kiln_upsample_bilinear2d_scale(x, 2.5, 1.5, false);
}
static kiln_tensor *ref_nearest(kiln_module *m, kiln_tensor *x) { return kiln_upsample_nearest2d_scale(x, 2, 3); }
static kiln_tensor *ref_nearest_size(kiln_module *m, kiln_tensor *x) { return kiln_upsample_nearest2d(x, 5, 4); }

KT_TEST(unet, pooling_and_upsample_modules_match_the_ops_and_gradcheck) {
    check_module(kiln_max_pool2d_create(3, 2, 1), (int64_t[]){2, 2, 5, 6}, ref_maxpool);
    kiln_pool2d_params p = kiln_pool2d_params_default(2, 2);
    p.ceil_mode = true;
    p.count_include_pad = false;
    p.padding[0] = p.padding[1] = 1;
    check_module(kiln_avg_pool2d_create_ex(&p), (int64_t[]){1, 3, 5, 4}, ref_avgpool);
    check_module(kiln_upsample_create(7, 5, KILN_UPSAMPLE_BILINEAR, true), (int64_t[]){1, 2, 3, 4}, ref_bilinear);
    check_module(kiln_upsample_scale_create(2.5, 1.5, KILN_UPSAMPLE_BILINEAR, false), (int64_t[]){1, 2, 3, 4},
                 ref_bilinear_scale);
    check_module(kiln_upsample_scale_create(2, 3, KILN_UPSAMPLE_NEAREST, false), (int64_t[]){2, 1, 3, 2}, ref_nearest);
    check_module(kiln_upsample_create(5, 4, KILN_UPSAMPLE_NEAREST, false), (int64_t[]){1, 2, 3, 3}, ref_nearest_size);
    /* stride 0 is torch's stride=None: the kernel size */
    kiln_module *m = kiln_avg_pool2d_create(2, 0, 0);
    KT_EXPECT_SHAPE(kiln_module_forward(m, kiln_tensor_zeros(4, (int64_t[]){1, 1, 6, 4}, KILN_F32, KILN_CPU)), 4, 1, 1,
                    3, 2);
    kiln_module_free(m);
}

/* ---- errors ------------------------------------------------------------------------ */

KT_TEST(unet, constructor_errors_follow_torch) {
    kiln_conv2d_params p = kiln_conv2d_params_default();
    p.groups = 4;
    cr_expect_null(kiln_conv2d_create_ex(6, 8, 3, 3, &p, true, KILN_F32));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "divisible by groups = 4");
    p = kiln_conv2d_params_default();
    p.padding_same = true;
    p.stride[1] = 2;
    cr_expect_null(kiln_conv2d_create_ex(2, 2, 3, 3, &p, true, KILN_F32));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "not supported for strided");
    cr_expect_null(kiln_conv2d_create(2, 2, 0, 1, 0, true, KILN_F32));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "must all be positive");
    cr_expect_null(kiln_conv2d_create(2, 2, 3, 0, 0, true, KILN_F32));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "stride 0");
    cr_expect_null(kiln_conv2d_create(2, 2, 3, 1, 1, true, KILN_I64));
    kt_expect_error(KILN_STATUS_DTYPE, "f32 or f64");
    kiln_conv_transpose2d_params t = kiln_conv_transpose2d_params_default();
    t.stride[0] = 2;
    t.output_padding[0] = 2;
    cr_expect_null(kiln_conv_transpose2d_create_ex(2, 2, 2, 2, &t, true, KILN_F32));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "output_padding 2 along height");
    cr_expect_null(kiln_max_pool2d_create(3, 1, 2));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "half the kernel size");
    kiln_pool2d_params pp = kiln_pool2d_params_default(2, 2);
    pp.dilation[0] = 2;
    cr_expect_null(kiln_avg_pool2d_create_ex(&pp));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "average pooling has none");
    cr_expect_null(kiln_max_pool2d_create_ex(NULL));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "params is NULL");
    cr_expect_null(kiln_upsample_create(4, 4, KILN_UPSAMPLE_NEAREST, true));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "align_corners");
    cr_expect_null(kiln_upsample_scale_create(2, 0, KILN_UPSAMPLE_BILINEAR, false));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "positive and finite");
    cr_expect_null(kiln_upsample_create(0, 4, KILN_UPSAMPLE_BILINEAR, false));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "at least 1");
}

KT_TEST(unet, forward_errors_name_the_module_path_and_shapes) {
    kiln_module *net = kiln_module_create("Net", NULL, NULL, NULL);
    kiln_module *seq = kiln_sequential_create();
    kiln_sequential_append(seq, kiln_conv2d_create(3, 4, 3, 1, 1, true, KILN_F32));
    kiln_sequential_append(seq, kiln_conv2d_create(5, 4, 3, 1, 1, true, KILN_F32)); /* wrong in_channels */
    kiln_sequential_append(seq, kiln_max_pool2d_create(2, 2, 0));
    cr_assert_eq(kiln_module_add(net, "enc1", seq), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *x = kiln_tensor_zeros(4, (int64_t[]){2, 3, 8, 8}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_module_forward(seq, x));
    kt_expect_error(KILN_STATUS_SHAPE, "module 'enc1.1' (Conv2d): input [2, 4, 8, 8] has 4 channels; expected "
                                       "in_channels = 5");
    /* an error raised inside the functional op gets the module path in front */
    kiln_module *big = kiln_conv2d_create(3, 4, 5, 1, 0, true, KILN_F32);
    cr_assert_eq(kiln_module_add(net, "big", big), KILN_STATUS_OK);
    cr_expect_null(kiln_module_forward(big, kiln_tensor_zeros(4, (int64_t[]){1, 3, 4, 4}, KILN_F32, KILN_CPU)));
    kt_expect_error(KILN_STATUS_SHAPE, "module 'big' (Conv2d): conv2d: the height kernel spans 5 pixels");
    cr_expect_null(kiln_module_forward(big, kiln_tensor_zeros(4, (int64_t[]){1, 3, 8, 8}, KILN_F64, KILN_CPU)));
    cr_expect(strstr(kiln_last_error(), "module 'big' (Conv2d): conv2d: ") == kiln_last_error(), "%s",
              kiln_last_error());
    kiln_clear_error();
    /* an earlier error is kept as the first cause, unprefixed */
    kiln_module *pool = kiln_module_child(net, "enc1.2");
    cr_expect_null(kiln_tensor_zeros(1, (int64_t[]){-1}, KILN_F32, KILN_CPU));
    char first[1024];
    snprintf(first, sizeof first, "%s", kiln_last_error());
    cr_expect_null(kiln_module_forward(pool, kiln_tensor_zeros(4, (int64_t[]){1, 1, 1, 1}, KILN_F32, KILN_CPU)));
    cr_expect_str_eq(kiln_last_error(), first);
    kiln_clear_error();
    /* (C, H, W) is one unbatched image, as torch's MaxPool2d; 2-d is refused */
    cr_expect_null(kiln_module_forward(pool, kiln_tensor_zeros(2, (int64_t[]){4, 4}, KILN_F32, KILN_CPU)));
    kt_expect_error(KILN_STATUS_SHAPE, "module 'enc1.2' (MaxPool2d): input [4, 4] must be 3-d (C, H, W) or 4-d");
    kiln_module *up = kiln_upsample_create(2, 2, KILN_UPSAMPLE_BILINEAR, false);
    cr_assert_eq(kiln_module_add(net, "up", up), KILN_STATUS_OK);
    cr_expect_null(kiln_module_forward(up, kiln_tensor_zeros(2, (int64_t[]){4, 4}, KILN_F32, KILN_CPU)));
    kt_expect_error(KILN_STATUS_SHAPE, "module 'up' (Upsample)");
    kiln_module_free(net);
}

/* ---- U-Net-16: the PyTorch state_dict --------------------------------------------------- */

KT_TEST(unet, unet16_state_dict_matches_torch) {
    kiln_module *m = unet_create(3, 1, 16, KILN_F32);
    cr_assert(m, "%s", kiln_last_error());
    cr_assert_eq(kiln_module_num_state(m), N_OF(FX_UNET16_STATE));
    for (int i = 0; i < N_OF(FX_UNET16_STATE); i++) {
        const char *name;
        bool is_buffer;
        kiln_tensor *t = kiln_module_state(m, i, &name, &is_buffer);
        cr_assert(t);
        cr_expect_str_eq(name, FX_UNET16_STATE[i].name, "state entry %d", i);
        cr_expect_eq(is_buffer, FX_UNET16_STATE[i].is_buffer != 0, "%s", name);
        cr_expect_eq(kiln_tensor_ndim(t), FX_UNET16_STATE[i].ndim, "%s", name);
        for (int a = 0; a < FX_UNET16_STATE[i].ndim; a++)
            cr_expect_eq(kiln_tensor_shape(t)[a], FX_UNET16_STATE[i].shape[a], "%s axis %d", name, a);
    }
    cr_expect_eq(kiln_module_num_parameters(m), FX_UNET16_NUM_PARAMS);
    cr_expect_eq(kiln_module_parameter_count(m), 483441);
    cr_expect_eq(kiln_module_parameter_count(m), FX_UNET16_PARAM_COUNT);
    kiln_module_free(m);
    /* the widths and channel counts are parameters */
    m = unet_create(1, 7, 8, KILN_F32);
    cr_assert(m);
    cr_expect_eq(kiln_module_parameter_count(m), FX_UNET_1_7_8_PARAM_COUNT);
    KT_EXPECT_SHAPE(kiln_module_get(m, "head.weight"), 4, 7, 8, 1, 1);
    KT_EXPECT_SHAPE(kiln_module_get(m, "enc1.0.weight"), 4, 8, 1, 3, 3);
    kiln_module_free(m);
}

KT_TEST(unet, unet16_forward_shape) {
    kiln_module *m = unet_create(3, 1, 16, KILN_F32);
    cr_assert(m, "%s", kiln_last_error());
    kiln_tensor *x = kiln_tensor_randn(4, (int64_t[]){2, 3, 32, 32}, 0, 1, KILN_F32, KILN_CPU);
    kiln_tensor *y = kiln_module_forward(m, x);
    KT_EXPECT_SHAPE(y, 4, 2, 1, 32, 32);
    /* eval mode (running statistics) keeps the shape too */
    kiln_module_train(m, false);
    KT_EXPECT_SHAPE(kiln_module_forward(m, x), 4, 2, 1, 32, 32);
    /* a size that three 2x2 poolings cannot halve fails at the first skip, naming the shapes */
    cr_expect_null(kiln_module_forward(m, kiln_tensor_zeros(4, (int64_t[]){1, 3, 20, 20}, KILN_F32, KILN_CPU)));
    kt_expect_error(KILN_STATUS_SHAPE, "[1, 64, 4, 4]");
    kiln_module_free(m);
}

/* ---- one training-mode step against PyTorch ------------------------------------------- */

/* fx_value of gen_unet.py: a hash of (j, k) to a multiple of 1/512 in [-0.248, 0.248]. */
static double fx_value(int64_t j, int k) {
    uint64_t h = ((uint64_t)j * 2654435761u + (uint64_t)(k + 1) * 40503u) & 0xffffffffu;
    return (double)((int64_t)((h >> 7) % 255) - 127) / 512.0;
}

/* fx_value(j, k) + offset for every element j, or its sign as 0/1 when binary. */
static kiln_tensor *fx_tensor(kiln_dtype dt, int ndim, const int64_t *shape, int k, double offset, bool binary) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    double *v = malloc((size_t)n * sizeof *v);
    for (int64_t j = 0; j < n; j++) v[j] = binary ? fx_value(j, k) > 0 : fx_value(j, k) + offset;
    kiln_tensor *t = kt_tensor(dt, ndim, shape, v);
    free(v);
    return t;
}

/* Builds UNet(3, 1, 4) with the fixture's weights, runs the step and compares.
 * Tolerances (|got - torch| <= atol + rtol*|torch|): float64 agrees with torch's
 * float64 to 1e-12 relative (summation order only); 1e-11 leaves room for other BLAS
 * thread counts. float32 is compared with the same float64 reference: its worst
 * measured gaps are 5e-9 absolute on gradients of order 1e-5..1e-2 and 5e-7 relative
 * on the logits (rounding amplified by batch norms over 8 values per channel at the
 * bottleneck), so 5e-8 absolute plus 1e-5 relative, ten times those. */
static void check_step(kiln_dtype dt, double atol, double rtol) {
    kiln_module *m = unet_create(3, 1, 4, dt);
    cr_assert(m, "%s", kiln_last_error());
    int np = kiln_module_num_parameters(m);
    cr_assert_eq(np, FX_STEP_NUM_PARAMS);
    cr_assert_eq(kiln_module_finalize(m), KILN_STATUS_OK);
    for (int k = 0; k < np; k++) {
        const char *name;
        kiln_tensor *p = kiln_module_parameter(m, k, &name);
        size_t len = strlen(name);
        bool bn_scale = kiln_tensor_ndim(p) == 1 && len >= 6 && !strcmp(name + len - 6, "weight");
        kiln_tensor *v = fx_tensor(dt, kiln_tensor_ndim(p), kiln_tensor_shape(p), k, bn_scale ? 1.0 : 0.0, false);
        cr_assert_eq(kiln_tensor_copy_(p, v), KILN_STATUS_OK, "%s", kiln_last_error());
    }
    kiln_tensor *x = fx_tensor(dt, 4, (int64_t[]){2, 3, 16, 16}, np, 0, false);
    kiln_tensor_set_requires_grad(x, true);
    kiln_tensor *y = fx_tensor(dt, 4, (int64_t[]){2, 1, 16, 16}, np + 1, 0, true);
    kiln_tensor *logits = kiln_module_forward(m, x);
    kiln_tensor *loss = kiln_bce_with_logits(logits, y, NULL, NULL, KILN_REDUCTION_MEAN);
    cr_assert(loss, "%s", kiln_last_error());
    cr_assert_eq(kiln_backward(loss, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT_SHAPE(logits, 4, 2, 1, 16, 16);
    double lv = kiln_tensor_item(loss);
    cr_expect(fabs(lv - FX_STEP_LOSS) <= rtol * FX_STEP_LOSS, "loss %.12g vs torch %.12g", lv, FX_STEP_LOSS);
    double *lg = kt_values(logits);
    for (int i = 0; i < N_OF(FX_STEP_LOGITS); i++)
        cr_expect(fabs(lg[i] - FX_STEP_LOGITS[i]) <= atol + rtol * fabs(FX_STEP_LOGITS[i]),
                  "logit %d: %.12g vs torch %.12g", i, lg[i], FX_STEP_LOGITS[i]);
    free(lg);
    for (int i = 0; i < N_OF(FX_STEP_GRADS); i++) {
        const fx_unet_sample *s = &FX_STEP_GRADS[i];
        kiln_tensor *t = strcmp(s->name, "x") ? kiln_module_get(m, s->name) : x;
        cr_assert(t && kiln_tensor_grad(t), "%s has no gradient", s->name);
        double *g = kt_values(kiln_tensor_grad(t));
        cr_expect(fabs(g[s->index] - s->value) <= atol + rtol * fabs(s->value), "grad of %s[%lld]: %.12g vs torch %.12g",
                  s->name, s->index, g[s->index], s->value);
        free(g);
    }
    for (int i = 0; i < N_OF(FX_STEP_BUFFERS); i++) {
        const fx_unet_sample *s = &FX_STEP_BUFFERS[i];
        double *b = kt_values(kiln_module_get(m, s->name));
        cr_expect(fabs(b[s->index] - s->value) <= atol + rtol * fabs(s->value), "%s[%lld]: %.12g vs torch %.12g",
                  s->name, s->index, b[s->index], s->value);
        free(b);
    }
    kiln_module_free(m);
}

KT_TEST(unet, training_step_matches_torch_f64) { check_step(KILN_F64, 1e-14, 1e-11); }
KT_TEST(unet, training_step_matches_torch_f32) { check_step(KILN_F32, 5e-8, 1e-5); }

/* ---- issue 3's acceptance test: a small U-Net learns masks of bright squares ---------- */

/* A deterministic generator independent of kiln's RNG: 32-bit LCG, top bits. */
static double lcg_uniform(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (double)(*s >> 8) / 16777216.0;
}

/* n single-channel 16x16 images: noise in [0, 0.7) with one square of side 4..8 in
 * [0.4, 1.0); the mask is the square. The value ranges overlap, so a pixel's own value
 * does not decide its class: the network must use the neighbourhood. */
static void make_squares(int n, uint32_t seed, float *img, float *mask) {
    uint32_t s = seed;
    for (int i = 0; i < n; i++) {
        int side = 4 + (int)(lcg_uniform(&s) * 5), r0 = (int)(lcg_uniform(&s) * (17 - side)),
            c0 = (int)(lcg_uniform(&s) * (17 - side));
        for (int r = 0; r < 16; r++)
            for (int c = 0; c < 16; c++) {
                bool in = r >= r0 && r < r0 + side && c >= c0 && c < c0 + side;
                img[(i * 16 + r) * 16 + c] = (float)(in ? 0.4 + 0.6 * lcg_uniform(&s) : 0.7 * lcg_uniform(&s));
                mask[(i * 16 + r) * 16 + c] = in ? 1.0f : 0.0f;
            }
    }
}

KT_TEST(unet, small_unet_learns_square_masks) {
    enum { N_TRAIN = 64, BATCH = 16, STEPS = 80, N_TEST = 32 };
    /* The bound: an untrained net starts near log 2 = 0.69; this one, after 80 steps of
     * momentum SGD, measures about 0.05 on its last steps and 0.06 on held-out images
     * (pixel accuracy 0.977, square IoU 0.83). The best a per-pixel threshold can do
     * here is accuracy 0.93 and IoU 0.5 (threshold 0.7), so the bounds on those two
     * need the spatial context the U-Net provides. */
    const double bound = 0.15;
    static float img[N_TRAIN * 256], mask[N_TRAIN * 256], timg[N_TEST * 256], tmask[N_TEST * 256];
    make_squares(N_TRAIN, 1, img, mask);
    make_squares(N_TEST, 2, timg, tmask);
    kiln_module *m = unet_create(1, 1, 4, KILN_F32);
    cr_assert(m, "%s", kiln_last_error());
    kiln_tensor *flat = kiln_module_flat_parameters(m), *gflat = kiln_module_flat_gradients(m);
    cr_assert(flat && gflat, "%s", kiln_last_error());
    int64_t np = kiln_tensor_numel(flat);
    float *v = calloc((size_t)np, sizeof *v); /* momentum buffer */
    const double lr = 0.05, mu = 0.9;
    double first = 0, last = 0;
    clock_t t0 = clock();
    for (int step = 0; step < STEPS; step++) {
        kiln_scope *s = kiln_scope_begin();
        int off = (step * BATCH) % N_TRAIN;
        kiln_tensor *x = kiln_tensor_from_host(img + off * 256, 4, (int64_t[]){BATCH, 1, 16, 16}, KILN_F32, KILN_CPU);
        kiln_tensor *y = kiln_tensor_from_host(mask + off * 256, 4, (int64_t[]){BATCH, 1, 16, 16}, KILN_F32, KILN_CPU);
        cr_assert_eq(kiln_module_zero_grad(m), KILN_STATUS_OK);
        kiln_tensor *loss = kiln_bce_with_logits(kiln_module_forward(m, x), y, NULL, NULL, KILN_REDUCTION_MEAN);
        cr_assert(loss && kiln_backward(loss, NULL) == KILN_STATUS_OK, "step %d: %s", step, kiln_last_error());
        double l = kiln_tensor_item(loss);
        if (step == 0) first = l;
        if (step >= STEPS - 8) last += l / 8;
        /* heavy-ball momentum on the whole arena: v = mu v + g; p -= lr v */
        float *p = kiln_tensor_data(flat), *g = kiln_tensor_data(gflat);
        for (int64_t i = 0; i < np; i++) {
            v[i] = (float)(mu * v[i] + g[i]);
            p[i] -= (float)(lr * v[i]);
        }
        kiln_scope_end(s);
    }
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    free(v);
    /* held-out images, eval mode (running statistics) */
    kiln_module_train(m, false);
    kiln_tensor *tx = kiln_tensor_from_host(timg, 4, (int64_t[]){N_TEST, 1, 16, 16}, KILN_F32, KILN_CPU);
    kiln_tensor *ty = kiln_tensor_from_host(tmask, 4, (int64_t[]){N_TEST, 1, 16, 16}, KILN_F32, KILN_CPU);
    kiln_tensor *tl = kiln_module_forward(m, tx);
    double test_loss = kiln_tensor_item(kiln_bce_with_logits(tl, ty, NULL, NULL, KILN_REDUCTION_MEAN));
    double *lv = kt_values(tl);
    int64_t right = 0, inter = 0, uni = 0;
    for (int64_t i = 0; i < N_TEST * 256; i++) {
        bool pred = lv[i] > 0, truth = tmask[i] > 0.5f;
        right += pred == truth;
        inter += pred && truth;
        uni += pred || truth;
    }
    free(lv);
    double acc = (double)right / (N_TEST * 256), iou = (double)inter / (double)uni;
    cr_log_info("small U-Net: loss %.4f -> %.4f (last 8 steps), held-out loss %.4f, pixel accuracy %.4f, "
                "IoU %.4f, %.2f s CPU", first, last, test_loss, acc, iou, secs);
    cr_expect(first > 0.4, "the first loss %.4f is already low: the task is too easy to mean anything", first);
    cr_expect(last < bound, "training loss %.4f did not fall below %.2f", last, bound);
    cr_expect(test_loss < bound, "held-out loss %.4f is not below %.2f", test_loss, bound);
    cr_expect(acc > 0.95, "held-out binary pixel accuracy %.4f is not above 0.95", acc);
    cr_expect(iou > 0.7, "held-out IoU of the squares %.4f is not above 0.7", iou);
    kiln_module_free(m);
}

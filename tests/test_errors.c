/* Errors as values: NULL inputs give NULL and keep the first error, mixed devices,
 * dtypes, axes and reshapes are refused with a status and a message naming the op
 * and the fix, CUDA without a device says so, device names parse, and anomaly mode
 * names the op that made a NaN. Nothing here may abort. */
#include "support/kiln_test.h"
#include "core/internal.h"

#include <stdlib.h>

TestSuite(errors, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})

KT_TEST(errors, a_null_chain_keeps_the_first_error) {
    kiln_tensor *a = KT_F32(1, KT_SHAPE(2), {1, 2});
    kiln_tensor *b = KT_F32(1, KT_SHAPE(3), {1, 2, 3});
    kiln_tensor_set_requires_grad(a, true);
    kiln_tensor *c = kiln_add(a, b); /* the real cause */
    cr_expect_null(c);
    kiln_tensor *d = kiln_exp(kiln_mul(c, a));
    kiln_tensor *e = kiln_reshape(kiln_transpose(kiln_unsqueeze(d, 0), 0, 1), 1, SHAPE(-1));
    kiln_tensor *loss = kiln_mean_all(kiln_sum(e, 1, (int[]){0}, true));
    cr_expect_null(loss);
    cr_expect_eq(kiln_backward(loss, NULL), KILN_STATUS_SHAPE); /* the first error, as kiln_last_status() */
    cr_expect_eq(kiln_last_status(), KILN_STATUS_SHAPE);
    const char *msg = kiln_last_error();
    cr_expect(strstr(msg, "add: shapes [2] and [3] do not broadcast") != NULL, "message: %s", msg);
    kiln_clear_error();
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK);
    cr_expect_str_eq(kiln_last_error(), "");
}

typedef kiln_tensor *(*null_fn)(kiln_tensor *x);
static kiln_tensor *n_neg(kiln_tensor *x) { return kiln_neg(x); }
static kiln_tensor *n_exp(kiln_tensor *x) { return kiln_exp(x); }
static kiln_tensor *n_log(kiln_tensor *x) { return kiln_log(x); }
static kiln_tensor *n_sqrt(kiln_tensor *x) { return kiln_sqrt(x); }
static kiln_tensor *n_abs(kiln_tensor *x) { return kiln_abs(x); }
static kiln_tensor *n_pow(kiln_tensor *x) { return kiln_pow_scalar(x, 2); }
static kiln_tensor *n_clamp(kiln_tensor *x) { return kiln_clamp(x, 0, 1); }
static kiln_tensor *n_relu(kiln_tensor *x) { return kiln_relu(x); }
static kiln_tensor *n_leaky(kiln_tensor *x) { return kiln_leaky_relu(x, 0.1); }
static kiln_tensor *n_sigmoid(kiln_tensor *x) { return kiln_sigmoid(x); }
static kiln_tensor *n_tanh(kiln_tensor *x) { return kiln_tanh(x); }
static kiln_tensor *n_adds(kiln_tensor *x) { return kiln_add_scalar(x, 1); }
static kiln_tensor *n_muls(kiln_tensor *x) { return kiln_mul_scalar(x, 2); }
static kiln_tensor *n_add_l(kiln_tensor *x) { return kiln_add(x, kiln_tensor_scalar(1, KILN_F32, KILN_CPU)); }
static kiln_tensor *n_sub_r(kiln_tensor *x) { return kiln_sub(kiln_tensor_scalar(1, KILN_F32, KILN_CPU), x); }
static kiln_tensor *n_mul(kiln_tensor *x) { return kiln_mul(x, x); }
static kiln_tensor *n_div(kiln_tensor *x) { return kiln_div(x, x); }
static kiln_tensor *n_max(kiln_tensor *x) { return kiln_maximum(x, x); }
static kiln_tensor *n_min(kiln_tensor *x) { return kiln_minimum(x, x); }
static kiln_tensor *n_where0(kiln_tensor *x) {
    kiln_tensor *o = kiln_tensor_scalar(1, KILN_F32, KILN_CPU);
    return kiln_where(x, o, o);
}
static kiln_tensor *n_where1(kiln_tensor *x) {
    kiln_tensor *o = kiln_tensor_scalar(1, KILN_F32, KILN_CPU);
    return kiln_where(o, x, o);
}
static kiln_tensor *n_sum(kiln_tensor *x) { return kiln_sum(x, 0, NULL, false); }
static kiln_tensor *n_mean(kiln_tensor *x) { return kiln_mean(x, 1, (int[]){0}, true); }
static kiln_tensor *n_sum_all(kiln_tensor *x) { return kiln_sum_all(x); }
static kiln_tensor *n_mean_all(kiln_tensor *x) { return kiln_mean_all(x); }
static kiln_tensor *n_reshape(kiln_tensor *x) { return kiln_reshape(x, 1, SHAPE(-1)); }
static kiln_tensor *n_permute(kiln_tensor *x) { return kiln_permute(x, (int[]){0}); }
static kiln_tensor *n_transpose(kiln_tensor *x) { return kiln_transpose(x, 0, 0); }
static kiln_tensor *n_slice(kiln_tensor *x) { return kiln_slice(x, 0, 0, 1, 1); }
static kiln_tensor *n_expand(kiln_tensor *x) { return kiln_expand(x, 1, SHAPE(2)); }
static kiln_tensor *n_squeeze(kiln_tensor *x) { return kiln_squeeze(x, KILN_ALL_AXES); }
static kiln_tensor *n_unsqueeze(kiln_tensor *x) { return kiln_unsqueeze(x, 0); }
static kiln_tensor *n_flatten(kiln_tensor *x) { return kiln_flatten(x, 0, -1); }
static kiln_tensor *n_contig(kiln_tensor *x) { return kiln_tensor_contiguous(x); }
static kiln_tensor *n_clone(kiln_tensor *x) { return kiln_tensor_clone(x); }
static kiln_tensor *n_detach(kiln_tensor *x) { return kiln_tensor_detach(x); }
static kiln_tensor *n_cast(kiln_tensor *x) { return kiln_tensor_cast(x, KILN_F64); }
static kiln_tensor *n_to(kiln_tensor *x) { return kiln_tensor_to(x, KILN_CPU); }

KT_TEST(errors, every_op_given_null_returns_null_with_an_error) {
    static const struct { const char *name; null_fn f; } ops[] = {
        {"neg", n_neg}, {"exp", n_exp}, {"log", n_log}, {"sqrt", n_sqrt}, {"abs", n_abs}, {"pow", n_pow},
        {"clamp", n_clamp}, {"relu", n_relu}, {"leaky_relu", n_leaky}, {"sigmoid", n_sigmoid}, {"tanh", n_tanh},
        {"add_scalar", n_adds}, {"mul_scalar", n_muls}, {"add", n_add_l}, {"sub", n_sub_r}, {"mul", n_mul},
        {"div", n_div}, {"maximum", n_max}, {"minimum", n_min}, {"where", n_where0}, {"where", n_where1},
        {"sum", n_sum}, {"mean", n_mean}, {"sum", n_sum_all}, {"mean", n_mean_all}, {"reshape", n_reshape},
        {"permute", n_permute}, {"transpose", n_transpose}, {"slice", n_slice}, {"expand", n_expand},
        {"squeeze", n_squeeze}, {"unsqueeze", n_unsqueeze}, {"flatten", n_flatten},
        {"kiln_tensor_contiguous", n_contig}, {"kiln_tensor_clone", n_clone}, {"kiln_tensor_detach", n_detach},
        {"kiln_tensor_cast", n_cast}, {"kiln_tensor_to", n_to},
    };
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        cr_expect_null(ops[i].f(NULL), "%s(NULL) is not NULL", ops[i].name);
        cr_expect_eq(kiln_last_status(), KILN_STATUS_INVALID_ARGUMENT, "%s: status %s", ops[i].name,
                     kiln_status_name(kiln_last_status()));
        cr_expect(strstr(kiln_last_error(), ops[i].name) && strstr(kiln_last_error(), "NULL"),
                  "%s: message '%s' does not name the op and the NULL", ops[i].name, kiln_last_error());
        kiln_clear_error();
    }
    cr_expect_eq(kiln_tensor_set_requires_grad(NULL, true), KILN_STATUS_INVALID_ARGUMENT);
    kiln_clear_error();
    cr_expect_eq(kiln_tensor_copy_(NULL, NULL), KILN_STATUS_INVALID_ARGUMENT);
    kiln_clear_error();
    cr_expect_null(kiln_tensor_grad(NULL));
    kiln_tensor_zero_grad(NULL);
    kiln_tensor_free(NULL);
    cr_expect_eq(kiln_tensor_numel(NULL), 0);
    cr_expect_eq(kiln_tensor_ndim(NULL), -1);
}

/* A CUDA-device tensor made white-box: a copy of a CPU tensor's header with the
 * device changed. Only front-end checks may see it; no kernel ever runs on it. */
static kiln_tensor fake_cuda(const kiln_tensor *cpu) {
    kiln_tensor f = *cpu;
    f.device = KILN_CUDA(0);
    f.scope = NULL;
    f.scope_prev = f.scope_next = NULL;
    f.grad = NULL;
    f.grad_fn = NULL;
    return f;
}

KT_TEST(errors, mixed_devices_are_refused) {
    kiln_tensor *a = KT_F32(2, KT_SHAPE(2, 2), {1, 2, 3, 4});
    kiln_tensor g = fake_cuda(a), *gpu = &g;
    cr_expect_null(kiln_add(a, gpu));
    kt_expect_error(KILN_STATUS_DEVICE, "add: input 0 is on cpu but input 1 is on cuda:0; move them to one device "
                                        "with kiln_tensor_to()");
    cr_expect_null(kiln_mul(gpu, a));
    kt_expect_error(KILN_STATUS_DEVICE, "mul: input 0 is on cuda:0 but input 1 is on cpu");
    cr_expect_null(kiln_maximum(a, gpu));
    kt_expect_error(KILN_STATUS_DEVICE, "maximum");
    cr_expect_null(kiln_where(gpu, a, a));
    kt_expect_error(KILN_STATUS_DEVICE, "where: input 0 is on cuda:0");
    cr_expect_null(kiln_where(a, a, gpu));
    kt_expect_error(KILN_STATUS_DEVICE, "where");
    cr_expect_eq(kiln_tensor_copy_(a, gpu), KILN_STATUS_DEVICE);
    kt_expect_error(KILN_STATUS_DEVICE, "kiln_tensor_copy_");
    kiln_tensor_set_requires_grad(a, true);
    kiln_tensor *y = kiln_mul_scalar(a, 2);
    cr_expect_eq(kiln_backward(y, gpu), KILN_STATUS_DEVICE);
    kt_expect_error(KILN_STATUS_DEVICE, "grad_output f32[2, 2] cuda:0 does not match root f32[2, 2] cpu");
}

KT_TEST(errors, dtypes_an_op_does_not_compute_are_refused) {
    kiln_tensor *f = KT_F32(1, KT_SHAPE(2), {1, 2});
    kiln_tensor *i = kiln_tensor_cast(f, KILN_I64);
    cr_expect_null(kiln_add(i, f));
    kt_expect_error(KILN_STATUS_DTYPE, "add: input 0 has dtype i64");
    cr_expect_null(kiln_add(f, i));
    kt_expect_error(KILN_STATUS_DTYPE, "kiln_tensor_cast(t, KILN_F32)");
    cr_expect_null(kiln_mul(f, kiln_tensor_cast(f, KILN_F64)));
    kt_expect_error(KILN_STATUS_DTYPE, "different dtypes (f32 and f64)");
    cr_expect_null(kiln_exp(kiln_tensor_cast(f, KILN_F16)));
    kt_expect_error(KILN_STATUS_DTYPE, "exp: input 0 has dtype f16");
    cr_expect_null(kiln_sum_all(kiln_tensor_cast(f, KILN_I32)));
    kt_expect_error(KILN_STATUS_DTYPE, "sum");
    cr_expect_null(kiln_where(f, i, f));
    kt_expect_error(KILN_STATUS_DTYPE, "where");
    /* where's condition may be any dtype */
    KT_EXPECT(kiln_where(kiln_tensor_cast(KT_F32(1, KT_SHAPE(2), {0, 3}), KILN_U8), f, kiln_neg(f)), 0, 0, {-1, 2});
}

KT_TEST(errors, axes_out_of_range) {
    kiln_tensor *a = kiln_tensor_zeros(2, SHAPE(2, 3), KILN_F32, KILN_CPU);
    cr_expect_null(kiln_sum(a, 1, (int[]){2}, false));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "sum: axis 2 is out of range for a 2-d tensor (use -2..1)");
    cr_expect_null(kiln_mean(a, 1, (int[]){-3}, false));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "mean: axis -3");
    cr_expect_null(kiln_sum(a, 2, (int[]){1, -1}, false));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "appears twice");
    cr_expect_null(kiln_transpose(a, 0, 2));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "transpose: axis 2");
    cr_expect_null(kiln_slice(a, -3, 0, 1, 1));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "slice: axis -3");
    cr_expect_null(kiln_unsqueeze(a, 3));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "unsqueeze: axis 3");
    cr_expect_null(kiln_squeeze(a, 2));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "squeeze: axis 2 is out of range for a 2-d tensor");
    cr_expect_null(kiln_flatten(a, 1, 0));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "flatten");
    cr_expect_null(kiln_permute(a, (int[]){0, 0}));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "permute: axis 0 appears twice");
}

KT_TEST(errors, bad_reshapes_and_expands) {
    kiln_tensor *a = kiln_tensor_zeros(2, SHAPE(2, 3), KILN_F32, KILN_CPU);
    cr_expect_null(kiln_reshape(a, 1, SHAPE(4)));
    kt_expect_error(KILN_STATUS_SHAPE, "reshape: cannot reshape [2, 3] (6 elements) to [4] (4 elements)");
    cr_expect_null(kiln_reshape(a, 2, SHAPE(-1, 4)));
    kt_expect_error(KILN_STATUS_SHAPE, "cannot reshape [2, 3] (6 elements) to [-1, 4]");
    cr_expect_null(kiln_reshape(a, 2, SHAPE(-1, -1)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "more than one -1");
    cr_expect_null(kiln_reshape(a, 2, SHAPE(-2, -3)));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "negative size");
    cr_expect_null(kiln_expand(a, 2, SHAPE(4, 3)));
    kt_expect_error(KILN_STATUS_SHAPE, "expand: cannot expand [2, 3] to [4, 3]");
    cr_expect_null(kiln_expand(a, 1, SHAPE(3)));
    kt_expect_error(KILN_STATUS_SHAPE, "expand");
    cr_expect_null(kiln_slice(a, 0, 0, 2, 0));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "step 0 must be positive");
    /* clamp with lo > hi is not an error: torch and ONNX give hi everywhere (test_elementwise) */
}

KT_TEST(errors, cuda_without_a_device_is_no_device) {
    int n = kiln_cuda_device_count();
    kiln_device missing = KILN_CUDA(n); /* one past the last device, in every build */
    cr_expect_not(kiln_device_available(missing));
    cr_expect_null(kiln_tensor_zeros(1, SHAPE(2), KILN_F32, missing));
    char want[32];
    snprintf(want, sizeof want, "cuda:%d requested", n);
    kt_expect_error(KILN_STATUS_NO_DEVICE, want);
    cr_expect_null(kiln_tensor_to(KT_F32(1, KT_SHAPE(1), {1}), missing));
    kt_expect_error(KILN_STATUS_NO_DEVICE, want);
    cr_expect_eq(kiln_synchronize(missing), KILN_STATUS_NO_DEVICE);
    kiln_clear_error();
    kiln_pool_stats st = kiln_memory_stats(missing);
    cr_expect(st.in_use == 0 && st.reserved == 0);
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK, "asking for stats of an absent device is not an error");
#ifndef KILN_HAVE_CUDA
    cr_expect_eq(n, 0);
    cr_expect_null(kiln_tensor_empty(1, SHAPE(2), KILN_F32, KILN_CUDA(0)));
    kt_expect_error(KILN_STATUS_NO_DEVICE, "built without CUDA; rebuild with -DKILN_CUDA=ON or use the cpu device");
#endif
}

KT_TEST(errors, device_names_parse) {
    kiln_device d = KILN_CPU;
    cr_expect_eq(kiln_device_parse("cuda", &d), KILN_STATUS_OK);
    cr_expect(d.type == KILN_DEVICE_CUDA && d.index == 0);
    cr_expect_eq(kiln_device_parse("cuda:3", &d), KILN_STATUS_OK);
    cr_expect(d.type == KILN_DEVICE_CUDA && d.index == 3);
    cr_expect_eq(kiln_device_parse("cpu", &d), KILN_STATUS_OK);
    cr_expect(kiln_device_equal(d, KILN_CPU));
    const char *bad[] = {"gpu", "CPU", "cuda:", "cuda:-1", "cuda:+1", "cuda: 1", "cuda:1x", "cuda:1024", "cuda0", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        d = KILN_CUDA(7);
        cr_expect_eq(kiln_device_parse(bad[i], &d), KILN_STATUS_INVALID_ARGUMENT, "'%s' parsed", bad[i]);
        cr_expect(d.type == KILN_DEVICE_CUDA && d.index == 7, "'%s': out changed on failure", bad[i]);
        char want[64];
        snprintf(want, sizeof want, "unknown device '%s': use cpu, cuda or cuda:N", bad[i]);
        kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, want);
    }
    cr_expect_eq(kiln_device_parse(NULL, &d), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "NULL");
    char buf[16];
    cr_expect_str_eq(kiln_device_name(KILN_CUDA(2), buf, sizeof buf), "cuda:2");
    cr_expect_str_eq(kiln_device_name(KILN_CPU, buf, sizeof buf), "cpu");
    cr_expect(kiln_device_equal(KILN_CPU, (kiln_device){KILN_DEVICE_CPU, 5}), "the cpu has one device");
    cr_expect_not(kiln_device_equal(KILN_CUDA(0), KILN_CUDA(1)));
}

KT_TEST(errors, default_device_follows_KILN_DEVICE) {
    setenv("KILN_DEVICE", "cpu", 1);
    cr_expect(kiln_device_equal(kiln_default_device(), KILN_CPU));
    setenv("KILN_DEVICE", "cuda:1", 1);
    kiln_device d = kiln_default_device();
    cr_expect(d.type == KILN_DEVICE_CUDA && d.index == 1, "an explicit choice is taken even if absent");
    kiln_device autodev = kiln_cuda_device_count() > 0 ? KILN_CUDA(0) : KILN_CPU;
    unsetenv("KILN_DEVICE");
    cr_expect(kiln_device_equal(kiln_default_device(), autodev));
    setenv("KILN_DEVICE", "", 1);
    cr_expect(kiln_device_equal(kiln_default_device(), autodev));
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK);
    setenv("KILN_DEVICE", "tpu", 1);
    cr_expect(kiln_device_equal(kiln_default_device(), autodev));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "KILN_DEVICE='tpu' is not a device");
    setenv("KILN_DEVICE", "cpu", 1);
}

KT_TEST(errors, anomaly_mode_names_the_op) {
    kiln_tensor *x = KT_F32(1, KT_SHAPE(2), {-1, 2});
    cr_expect_not(kiln_anomaly_mode());
    /* off: NaN flows through, as in torch */
    kiln_tensor *y = kiln_log(x);
    cr_assert_not_null(y);
    double *v = kt_values(y);
    cr_expect(isnan(v[0]));
    free(v);
    kiln_set_anomaly_mode(true);
    cr_expect(kiln_anomaly_mode());
    cr_expect_null(kiln_log(x));
    kt_expect_error(KILN_STATUS_ANOMALY, "anomaly mode: log");
    cr_expect_null(kiln_div(x, kiln_tensor_scalar(0, KILN_F32, KILN_CPU)));
    kt_expect_error(KILN_STATUS_ANOMALY, "anomaly mode: div");
    /* in backward too: d sqrt(x)/dx is infinite at 0 */
    kiln_tensor *z = KT_F64(1, KT_SHAPE(2), {0, 4});
    kiln_tensor_set_requires_grad(z, true);
    kiln_tensor *s = kiln_sum_all(kiln_sqrt(z));
    cr_assert_not_null(s, "%s", kiln_last_error());
    cr_expect_eq(kiln_backward(s, NULL), KILN_STATUS_ANOMALY);
    kt_expect_error(KILN_STATUS_ANOMALY, "sqrt (registry op unary_backward)");
    /* finite results pass */
    KT_EXPECT(kiln_log(kiln_abs(x)), 1e-7, 0, {0, 0.69314718});
    kiln_set_anomaly_mode(false);
}

KT_TEST(errors, status_names) {
    for (int s = KILN_STATUS_OK; s <= KILN_STATUS_NOT_IMPLEMENTED; s++) {
        const char *n = kiln_status_name((kiln_status)s);
        cr_expect(n && *n && strcmp(n, "unknown status") != 0, "status %d has no name", s);
        for (int t = 0; t < s; t++) cr_expect_str_neq(n, kiln_status_name((kiln_status)t));
    }
    cr_expect_str_eq(kiln_status_name((kiln_status)999), "unknown status");
}

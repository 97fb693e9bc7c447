/* Element-wise ops: every unary and binary op, where and clamp, forward against
 * hand-computed values in f32 and f64 and backward through the float64 gradient
 * checker; PyTorch's choices at the edges (clamp at its bounds, ties of
 * maximum/minimum, abs and relu at 0, sigmoid far from 0); broadcasting in every
 * form; non-contiguous inputs (transposed, strided slices, expanded); NaN, infinities
 * and signed zeros against torch 1.13's own outputs and gradients
 * (tests/fixtures/gen_numerics.py): exact, sign of zero included, but for sigmoid and
 * tanh (within F32_RTOL / F64_RTOL of torch's: their exp/tanh are other libms).
 * Tolerances: f64 forward 1e-16 + 5e-16*|y| (libm's ~1 ulp); f32 forward 1e-7 +
 * 3e-7*|y| (a few f32 ulps); gradcheck eps 1e-6, 1e-7 + 1e-6*|numeric| (central
 * differences in f64 are good to ~1e-9 at these sizes). */
#include "support/kiln_test.h"
#include "fixtures/numerics_ref.h"

#include <stdlib.h>

TestSuite(elementwise, .init = kiln_test_setup, .fini = kiln_test_teardown);

#define F64_ATOL 1e-16
#define F64_RTOL 5e-16
#define F32_ATOL 1e-7
#define F32_RTOL 3e-7
#define GC_EPS 1e-6
#define GC_ATOL 1e-7
#define GC_RTOL 1e-6

typedef kiln_tensor *(*unary_fn)(kiln_tensor *);

static kiln_tensor *u_neg(kiln_tensor *x) { return kiln_neg(x); }
static kiln_tensor *u_exp(kiln_tensor *x) { return kiln_exp(x); }
static kiln_tensor *u_log(kiln_tensor *x) { return kiln_log(x); }
static kiln_tensor *u_sqrt(kiln_tensor *x) { return kiln_sqrt(x); }
static kiln_tensor *u_abs(kiln_tensor *x) { return kiln_abs(x); }
static kiln_tensor *u_pow2(kiln_tensor *x) { return kiln_pow_scalar(x, 2); }
static kiln_tensor *u_pow3(kiln_tensor *x) { return kiln_pow_scalar(x, 3); }
static kiln_tensor *u_pow15(kiln_tensor *x) { return kiln_pow_scalar(x, 1.5); }
static kiln_tensor *u_powm1(kiln_tensor *x) { return kiln_pow_scalar(x, -1); }
static kiln_tensor *u_pow0(kiln_tensor *x) { return kiln_pow_scalar(x, 0); }
static kiln_tensor *u_clamp(kiln_tensor *x) { return kiln_clamp(x, -1, 1); }
static kiln_tensor *u_clamp_lo(kiln_tensor *x) { return kiln_clamp(x, 0.25, INFINITY); }
static kiln_tensor *u_clamp_inverted(kiln_tensor *x) { return kiln_clamp(x, 1, -1); }
static kiln_tensor *u_relu(kiln_tensor *x) { return kiln_relu(x); }
static kiln_tensor *u_leaky(kiln_tensor *x) { return kiln_leaky_relu(x, 0.1); }
static kiln_tensor *u_sigmoid(kiln_tensor *x) { return kiln_sigmoid(x); }
static kiln_tensor *u_tanh(kiln_tensor *x) { return kiln_tanh(x); }
static kiln_tensor *u_adds(kiln_tensor *x) { return kiln_add_scalar(x, 1.5); }
static kiln_tensor *u_muls(kiln_tensor *x) { return kiln_mul_scalar(x, -2); }

/* Runs f on x in f32 and f64 and compares with want. */
static void check_unary(const char *name, unary_fn f, int n, const double *x, const double *want) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *y = f(kt_tensor(dt, 1, (int64_t[]){n}, x));
        cr_assert(y != NULL, "%s %s: %s", name, kiln_dtype_name(dt), kiln_last_error());
        cr_expect_eq(kiln_tensor_dtype(y), dt, "%s keeps the dtype", name);
        kt_expect_values(y, want, n, d ? F64_ATOL : F32_ATOL, d ? F64_RTOL : F32_RTOL);
    }
}

#define X5 ((const double[]){-2, -0.5, 0, 0.5, 3})
#define P4 ((const double[]){0.25, 1, 4, 2})
#define CHECK5(name, f, ...) check_unary(name, f, 5, X5, (const double[])__VA_ARGS__)
#define CHECKP(name, f, ...) check_unary(name, f, 4, P4, (const double[])__VA_ARGS__)

KT_TEST(elementwise, unary_forward_values) {
    CHECK5("neg", u_neg, {2, 0.5, 0, -0.5, -3});
    CHECK5("exp", u_exp, {0.1353352832366127, 0.6065306597126334, 1.0, 1.6487212707001282, 20.085536923187668});
    CHECKP("log", u_log, {-1.3862943611198906, 0.0, 1.3862943611198906, 0.6931471805599453});
    CHECKP("sqrt", u_sqrt, {0.5, 1.0, 2.0, 1.4142135623730951});
    CHECK5("abs", u_abs, {2, 0.5, 0, 0.5, 3});
    CHECK5("pow 2", u_pow2, {4, 0.25, 0, 0.25, 9});
    CHECK5("pow 3", u_pow3, {-8, -0.125, 0, 0.125, 27});
    CHECKP("pow 1.5", u_pow15, {0.125, 1.0, 8.0, 2.8284271247461903});
    CHECKP("pow -1", u_powm1, {4, 1, 0.25, 0.5});
    CHECK5("pow 0", u_pow0, {1, 1, 1, 1, 1}); /* 0^0 = 1, as torch */
    CHECK5("clamp", u_clamp, {-1, -0.5, 0, 0.5, 1});
    CHECK5("clamp lo only", u_clamp_lo, {0.25, 0.25, 0.25, 0.5, 3});
    CHECK5("relu", u_relu, {0, 0, 0, 0.5, 3});
    CHECK5("clamp lo > hi gives hi", u_clamp_inverted, {-1, -1, -1, -1, -1});
    CHECK5("leaky_relu", u_leaky, {-0.2, -0.05, 0, 0.5, 3});
    CHECK5("sigmoid", u_sigmoid,
           {0.11920292202211755, 0.3775406687981454, 0.5, 0.6224593312018546, 0.9525741268224334});
    CHECK5("tanh", u_tanh, {-0.9640275800758169, -0.46211715726000974, 0.0, 0.46211715726000974, 0.9950547536867305});
    CHECK5("add_scalar", u_adds, {-0.5, 1, 1.5, 2, 4.5});
    CHECK5("mul_scalar", u_muls, {4, 1, 0, -1, -6});
}

KT_TEST(elementwise, special_values) {
    /* log(0) = -inf, log(-1) = nan, sqrt(-1) = nan, exp overflows to inf, 1/0 = inf */
    kiln_tensor *z = KT_F64(1, KT_SHAPE(4), {0, -1, 1000, -1000});
    KT_EXPECT(kiln_log(z), 0, 0, {-INFINITY, NAN, 6.907755278982137, NAN});
    KT_EXPECT(kiln_sqrt(z), 0, 0, {0, NAN, 31.622776601683793, NAN});
    KT_EXPECT(kiln_exp(z), 0, 0, {1, 0.36787944117144233, INFINITY, 0});
    KT_EXPECT(kiln_div(KT_F32(1, KT_SHAPE(2), {1, -1}), kiln_tensor_scalar(0, KILN_F32, KILN_CPU)), 0, 0,
              {INFINITY, -INFINITY});
    /* NaN propagates through maximum/minimum and clamp */
    kiln_tensor *n = KT_F64(1, KT_SHAPE(2), {NAN, 1});
    kiln_tensor *o = KT_F64(1, KT_SHAPE(2), {1, NAN});
    KT_EXPECT(kiln_maximum(n, o), 0, 0, {NAN, NAN});
    KT_EXPECT(kiln_minimum(n, o), 0, 0, {NAN, NAN});
}

/* ---- binary ------------------------------------------------------------------ */

typedef kiln_tensor *(*binary_fn)(kiln_tensor *, kiln_tensor *);

static void check_binary(const char *name, binary_fn f, const double *want) {
    const double a[] = {1, -2, 3, 0.5, -0.25}, b[] = {2, 4, -1, 0.5, 8};
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *y = f(kt_tensor(dt, 1, (int64_t[]){5}, a), kt_tensor(dt, 1, (int64_t[]){5}, b));
        cr_assert(y != NULL, "%s %s: %s", name, kiln_dtype_name(dt), kiln_last_error());
        kt_expect_values(y, want, 5, d ? F64_ATOL : F32_ATOL, d ? F64_RTOL : F32_RTOL);
    }
}

KT_TEST(elementwise, binary_forward_values) {
    check_binary("add", kiln_add, (const double[]){3, 2, 2, 1, 7.75});
    check_binary("sub", kiln_sub, (const double[]){-1, -6, 4, 0, -8.25});
    check_binary("mul", kiln_mul, (const double[]){2, -8, -3, 0.25, -2});
    check_binary("div", kiln_div, (const double[]){0.5, -0.5, -3, 1, -0.03125});
    check_binary("maximum", kiln_maximum, (const double[]){2, 4, 3, 0.5, 8});
    check_binary("minimum", kiln_minimum, (const double[]){1, -2, -1, 0.5, -0.25});
}

KT_TEST(elementwise, where_forward) {
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *c = kt_tensor(KILN_U8, 1, (int64_t[]){4}, (const double[]){1, 0, 7, 0});
        kiln_tensor *a = kt_tensor(dt, 1, (int64_t[]){4}, (const double[]){1, 2, 3, 4});
        kiln_tensor *b = kt_tensor(dt, 1, (int64_t[]){4}, (const double[]){-1, -2, -3, -4});
        KT_EXPECT(kiln_where(c, a, b), 0, 0, {1, -2, 3, -4});
        /* float and integer conditions; -0.0 counts as false, NaN as true */
        kiln_tensor *cf = KT_F32(1, KT_SHAPE(4), {-0.0, NAN, 0.5, 0});
        KT_EXPECT(kiln_where(cf, a, b), 0, 0, {-1, 2, 3, -4});
        kiln_tensor *ci = kt_tensor(KILN_I64, 1, (int64_t[]){4}, (const double[]){0, -1, 0, 2});
        KT_EXPECT(kiln_where(ci, a, b), 0, 0, {-1, 2, -3, 4});
        /* all three broadcast: cond [2,1], a [4], b scalar */
        kiln_tensor *c2 = kt_tensor(KILN_I32, 2, (int64_t[]){2, 1}, (const double[]){1, 0});
        kiln_tensor *y = kiln_where(c2, a, kiln_tensor_scalar(9, dt, KILN_CPU));
        KT_EXPECT_SHAPE(y, 2, 2, 4);
        KT_EXPECT(y, 0, 0, {1, 2, 3, 4, 9, 9, 9, 9});
    }
    kiln_tensor *h = kiln_tensor_cast(KT_F32(1, KT_SHAPE(3), {-0.0, 0.0, 2}), KILN_F16);
    KT_EXPECT(kiln_where(h, kiln_tensor_scalar(1, KILN_F32, KILN_CPU), kiln_tensor_scalar(0, KILN_F32, KILN_CPU)), 0,
              0, {0, 0, 1});
}

/* ---- backward through the gradient checker ---------------------------------------- */

static kiln_tensor *gc_unary(kiln_tensor *const *x, void *ctx) { return ((unary_fn)ctx)(x[0]); }
static kiln_tensor *gc_binary(kiln_tensor *const *x, void *ctx) { return ((binary_fn)ctx)(x[0], x[1]); }
static kiln_tensor *gc_where(kiln_tensor *const *x, void *ctx) {
    kiln_tensor *cond = kiln_tensor_cast(kiln_tensor_detach(x[2]), KILN_U8); /* 0/1 from a fixed pattern */
    return kiln_where(cond, x[0], x[1]);
}

static void gradcheck_unary(const char *name, unary_fn f, double lo, double hi) {
    kiln_tensor *x = kt_rand_input(2, (int64_t[]){3, 4}, lo, hi);
    cr_expect(kt_gradcheck(gc_unary, (void *)f, 1, &x, GC_EPS, GC_ATOL, GC_RTOL), "%s", name);
}

KT_TEST(elementwise, unary_backward_gradcheck) {
    gradcheck_unary("neg", u_neg, -2, 2);
    gradcheck_unary("exp", u_exp, -2, 2);
    gradcheck_unary("log", u_log, 0.2, 3);
    gradcheck_unary("sqrt", u_sqrt, 0.2, 3);
    gradcheck_unary("abs", u_abs, -2, 2);
    gradcheck_unary("pow 2", u_pow2, -2, 2);
    gradcheck_unary("pow 3", u_pow3, -2, 2);
    gradcheck_unary("pow 1.5", u_pow15, 0.2, 3);
    gradcheck_unary("pow -1", u_powm1, 0.5, 3);
    gradcheck_unary("pow 0", u_pow0, -2, 2);
    gradcheck_unary("clamp", u_clamp, -2, 2);
    gradcheck_unary("clamp lo", u_clamp_lo, -1, 1);
    gradcheck_unary("relu", u_relu, -2, 2);
    gradcheck_unary("leaky_relu", u_leaky, -2, 2);
    gradcheck_unary("sigmoid", u_sigmoid, -4, 4);
    gradcheck_unary("tanh", u_tanh, -3, 3);
    gradcheck_unary("add_scalar", u_adds, -2, 2);
    gradcheck_unary("mul_scalar", u_muls, -2, 2);
}

KT_TEST(elementwise, binary_backward_gradcheck) {
    const struct { const char *name; binary_fn f; double lo, hi; } ops[] = {
        {"add", kiln_add, -2, 2}, {"sub", kiln_sub, -2, 2}, {"mul", kiln_mul, -2, 2},
        {"div", kiln_div, 0.5, 2}, {"maximum", kiln_maximum, -2, 2}, {"minimum", kiln_minimum, -2, 2},
    };
    for (int i = 0; i < 6; i++) {
        kiln_tensor *x[2] = {kt_rand_input(2, (int64_t[]){3, 4}, ops[i].lo, ops[i].hi),
                             kt_rand_input(2, (int64_t[]){3, 4}, ops[i].lo, ops[i].hi)};
        cr_expect(kt_gradcheck(gc_binary, (void *)ops[i].f, 2, x, GC_EPS, GC_ATOL, GC_RTOL), "%s", ops[i].name);
    }
}

KT_TEST(elementwise, where_backward_gradcheck) {
    kiln_tensor *x[3] = {kt_rand_input(2, (int64_t[]){3, 4}, -1, 1), kt_rand_input(1, (int64_t[]){4}, -1, 1),
                         KT_F64(2, KT_SHAPE(3, 4), {1, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 1})};
    cr_expect(kt_gradcheck(gc_where, NULL, 3, x, GC_EPS, GC_ATOL, GC_RTOL));
}

/* ---- torch's choices at the edges ------------------------------------------------------ */

/* Gradient of sum(f(x)) at x, for values at kinks where finite differences mislead. */
static double *grad_at(unary_fn f, int n, const double *x) {
    kiln_tensor *t = kt_tensor(KILN_F64, 1, (int64_t[]){n}, x);
    kiln_tensor_set_requires_grad(t, true);
    cr_assert_eq(kiln_backward(kiln_sum_all(f(t)), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    return kt_values(kiln_tensor_grad(t));
}

static void expect_grad(const char *name, unary_fn f, int n, const double *x, const double *want) {
    double *g = grad_at(f, n, x);
    for (int i = 0; i < n; i++) cr_expect_eq(g[i], want[i], "%s'(%g) = %g, torch gives %g", name, x[i], g[i], want[i]);
    free(g);
}

KT_TEST(elementwise, clamp_passes_the_gradient_at_its_bounds) {
    expect_grad("clamp", u_clamp, 5, (const double[]){-1, 1, 0, 2, -3}, (const double[]){1, 1, 1, 0, 0});
    expect_grad("clamp lo", u_clamp_lo, 3, (const double[]){0.25, 0, 1e300}, (const double[]){1, 0, 1});
}

KT_TEST(elementwise, abs_relu_leaky_at_zero) {
    expect_grad("abs", u_abs, 3, (const double[]){0, -0.0, -2}, (const double[]){0, 0, -1});
    expect_grad("relu", u_relu, 3, (const double[]){0, -1, 1}, (const double[]){0, 0, 1});
    expect_grad("leaky_relu", u_leaky, 3, (const double[]){0, -1, 1}, (const double[]){0.1, 0.1, 1});
    expect_grad("pow 0", u_pow0, 2, (const double[]){0, 3}, (const double[]){0, 0});
    expect_grad("pow 2", u_pow2, 2, (const double[]){0, -3}, (const double[]){0, -6});
}

KT_TEST(elementwise, maximum_minimum_ties_split_the_gradient) {
    for (int m = 0; m < 2; m++) {
        kiln_tensor *a = KT_F64(1, KT_SHAPE(3), {1, 2, 3});
        kiln_tensor *b = KT_F64(1, KT_SHAPE(3), {1, 0, 5});
        kiln_tensor_set_requires_grad(a, true);
        kiln_tensor_set_requires_grad(b, true);
        kiln_tensor *y = m ? kiln_minimum(a, b) : kiln_maximum(a, b);
        cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK);
        if (m) {
            KT_EXPECT(kiln_tensor_grad(a), 0, 0, {0.5, 0, 1});
            KT_EXPECT(kiln_tensor_grad(b), 0, 0, {0.5, 1, 0});
        } else {
            KT_EXPECT(kiln_tensor_grad(a), 0, 0, {0.5, 1, 0});
            KT_EXPECT(kiln_tensor_grad(b), 0, 0, {0.5, 0, 1});
        }
    }
}

KT_TEST(elementwise, sigmoid_far_from_zero_does_not_overflow) {
    kiln_set_anomaly_mode(true); /* any NaN or Inf, forward or backward, fails the op */
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        kiln_tensor *x = kt_tensor(dt, 1, (int64_t[]){5}, (const double[]){-1000, -100, -30, 100, 1000});
        kiln_tensor_set_requires_grad(x, true);
        kiln_tensor *y = kiln_sigmoid(x);
        cr_assert(y != NULL, "%s", kiln_last_error());
        /* sigmoid(-100) = e^-100/(1+e^-100); in f32 it is a subnormal */
        double s100 = 3.7200759760208356e-44, s30 = 9.357622968839299e-14;
        kt_expect_values(y, (const double[]){0, s100, s30, 1, 1}, 5, d ? 1e-300 : 1.5e-45, d ? 1e-15 : 3e-7);
        cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
        /* y(1-y): tiny at both ends, never NaN */
        double *g = kt_values(kiln_tensor_grad(x));
        for (int i = 0; i < 5; i++) cr_expect(isfinite(g[i]) && g[i] >= 0 && g[i] < 1e-13, "grad %d = %g", i, g[i]);
        free(g);
    }
    kiln_set_anomaly_mode(false);
}

/* ---- broadcasting ------------------------------------------------------------------- */

KT_TEST(elementwise, broadcasting_forward) {
    /* scalar */
    KT_EXPECT(kiln_sub(KT_F32(2, KT_SHAPE(2, 2), {1, 2, 3, 4}), kiln_tensor_scalar(1, KILN_F32, KILN_CPU)), 0, 0,
              {0, 1, 2, 3});
    KT_EXPECT(kiln_div(kiln_tensor_scalar(12, KILN_F64, KILN_CPU), KT_F64(1, KT_SHAPE(3), {1, 2, 3})), 0, 0,
              {12, 6, 4});
    /* leading dims: [3] with [2, 3] */
    kiln_tensor *y = kiln_mul(KT_F32(2, KT_SHAPE(2, 3), {1, 2, 3, 4, 5, 6}), KT_F32(1, KT_SHAPE(3), {10, 100, 1000}));
    KT_EXPECT_SHAPE(y, 2, 2, 3);
    KT_EXPECT(y, 0, 0, {10, 200, 3000, 40, 500, 6000});
    /* a middle size-1 dim: [2, 1, 2] with [2, 3, 2] */
    y = kiln_add(KT_F64(3, KT_SHAPE(2, 1, 2), {1, 2, 3, 4}), kiln_tensor_zeros(3, (int64_t[]){2, 3, 2}, KILN_F64,
                                                                             KILN_CPU));
    KT_EXPECT(y, 0, 0, {1, 2, 1, 2, 1, 2, 3, 4, 3, 4, 3, 4});
    /* both sides grow: [2, 1] with [1, 3] */
    y = kiln_maximum(KT_F32(2, KT_SHAPE(2, 1), {1, 20}), KT_F32(2, KT_SHAPE(1, 3), {0, 10, 30}));
    KT_EXPECT_SHAPE(y, 2, 2, 3);
    KT_EXPECT(y, 0, 0, {1, 10, 30, 20, 20, 30});
    /* both sides and different ranks: [4, 1, 1] with [3, 1] -> [4, 3, 1] */
    y = kiln_sub(kiln_tensor_zeros(3, (int64_t[]){4, 1, 1}, KILN_F32, KILN_CPU), KT_F32(2, KT_SHAPE(3, 1), {1, 2, 3}));
    KT_EXPECT_SHAPE(y, 3, 4, 3, 1);
    /* empty axes broadcast too */
    y = kiln_add(kiln_tensor_zeros(2, (int64_t[]){0, 3}, KILN_F32, KILN_CPU), KT_F32(1, KT_SHAPE(3), {1, 2, 3}));
    KT_EXPECT_SHAPE(y, 2, 0, 3);
    /* mismatches are named */
    cr_expect_null(kiln_add(KT_F32(1, KT_SHAPE(2), {1, 2}), KT_F32(2, KT_SHAPE(3, 3), {0, 0, 0, 0, 0, 0, 0, 0, 0})));
    kt_expect_error(KILN_STATUS_SHAPE, "add: shapes [2] and [3, 3] do not broadcast (axis 1 from the end: 2 vs 3)");
}

typedef struct { int na, nb; int64_t sa[4], sb[4]; } bshape;

KT_TEST(elementwise, broadcasting_backward_gradcheck) {
    const bshape cases[] = {
        {2, 0, {2, 3}, {0}},             /* scalar */
        {3, 1, {2, 3, 4}, {4}},          /* leading dims */
        {3, 3, {2, 1, 4}, {2, 3, 4}},    /* middle size-1 dim */
        {2, 2, {3, 1}, {1, 4}},          /* both sides */
        {3, 2, {2, 1, 1}, {3, 1}},       /* both sides, different ranks */
    };
    binary_fn fs[] = {kiln_add, kiln_sub, kiln_mul, kiln_div, kiln_maximum};
    for (int c = 0; c < 5; c++)
        for (int k = 0; k < 5; k++) {
            for (int swap = 0; swap < 2; swap++) {
                const bshape *s = &cases[c];
                kiln_tensor *x[2] = {kt_rand_input(s->na, s->sa, 0.5, 2), kt_rand_input(s->nb, s->sb, 0.5, 2)};
                if (swap) {
                    kiln_tensor *t = x[0];
                    x[0] = x[1];
                    x[1] = t;
                }
                cr_expect(kt_gradcheck(gc_binary, (void *)fs[k], 2, x, GC_EPS, GC_ATOL, GC_RTOL),
                          "case %d op %d swap %d", c, k, swap);
            }
        }
}

/* ---- non-contiguous inputs -------------------------------------------------------------- */

KT_TEST(elementwise, strided_inputs_give_the_same_values) {
    kiln_tensor *m = KT_F32(2, KT_SHAPE(3, 4), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12});
    kiln_tensor *t = kiln_transpose(m, 0, 1);              /* [4, 3] */
    kiln_tensor *s = kiln_slice(m, 1, 0, 4, 2);            /* [3, 2]: columns 0 and 2 */
    kiln_tensor *e = kiln_expand(KT_F32(2, KT_SHAPE(3, 1), {1, 2, 3}), 2, (int64_t[]){3, 2});
    cr_assert(!kiln_tensor_is_contiguous(t) && !kiln_tensor_is_contiguous(s) && !kiln_tensor_is_contiguous(e));
    KT_EXPECT(kiln_neg(t), 0, 0, {-1, -5, -9, -2, -6, -10, -3, -7, -11, -4, -8, -12});
    KT_EXPECT(kiln_mul(s, e), 0, 0, {1, 3, 10, 14, 27, 33});
    KT_EXPECT(kiln_sub(e, s), 0, 0, {0, -2, -3, -5, -6, -8});
    /* transposed plus sliced plus broadcast row */
    kiln_tensor *ts = kiln_slice(t, 0, 1, 4, 2);           /* rows 1 and 3 of the transpose: [2, 3] */
    KT_EXPECT(kiln_add(ts, KT_F32(1, KT_SHAPE(3), {100, 200, 300})), 0, 0, {102, 206, 310, 104, 208, 312});
    KT_EXPECT(kiln_where(kiln_transpose(KT_F32(2, KT_SHAPE(2, 2), {1, 0, 0, 1}), 0, 1),
                         kiln_slice(KT_F32(2, KT_SHAPE(2, 4), {1, 2, 3, 4, 5, 6, 7, 8}), 1, 1, 4, 2),
                         kiln_tensor_scalar(0, KILN_F32, KILN_CPU)),
              0, 0, {2, 0, 0, 8});
    /* every unary op on a strided view equals the op on its contiguous copy */
    unary_fn fs[] = {u_neg, u_exp, u_abs, u_pow2, u_clamp, u_relu, u_leaky, u_sigmoid, u_tanh, u_adds, u_muls};
    for (int i = 0; i < 11; i++) {
        double *a = kt_values(fs[i](ts));
        double *b = kt_values(fs[i](kiln_tensor_contiguous(ts)));
        for (int j = 0; j < 6; j++) cr_expect_eq(a[j], b[j], "op %d element %d", i, j);
        free(a);
        free(b);
    }
}

static kiln_tensor *f_strided(kiln_tensor *const *x, void *ctx) {
    (void)ctx;
    kiln_tensor *t = kiln_transpose(x[0], 0, 1);                        /* [5, 4] */
    kiln_tensor *s = kiln_slice(t, 0, 0, 5, 2);                         /* [3, 4]: rows 0, 2, 4 */
    kiln_tensor *e = kiln_expand(x[1], 2, (int64_t[]){3, 4});           /* [3, 1] -> [3, 4] */
    kiln_tensor *u = kiln_mul(kiln_tanh(s), kiln_sigmoid(e));
    kiln_tensor *v = kiln_slice(x[0], 0, 1, 4, 1);                      /* [3, 5] */
    kiln_tensor *w = kiln_slice(v, 1, 0, 5, 2);                         /* [3, 3]: columns 0, 2, 4 */
    return kiln_add(kiln_maximum(u, kiln_slice(s, 1, 0, 4, 1)), kiln_sum(w, 1, (int[]){1}, true));
}

KT_TEST(elementwise, strided_inputs_backward_gradcheck) {
    kiln_tensor *x[2] = {kt_rand_input(2, (int64_t[]){4, 5}, -1, 1), kt_rand_input(2, (int64_t[]){3, 1}, -1, 1)};
    cr_expect(kt_gradcheck(f_strided, NULL, 2, x, GC_EPS, GC_ATOL, GC_RTOL));
}

/* ---- NaN, infinities and signed zeros, as torch ------------------------------------------- */

/* got against torch's want: NaN for NaN, the same infinity, zeros of the same sign, else
 * within atol + rtol * |want| (both 0: exactly). */
static void expect_torch_tol(const char *what, kiln_tensor *t, const double *want, int64_t n, double atol,
                             double rtol) {
    cr_assert(t, "%s: %s", what, kiln_last_error());
    cr_assert_eq(kiln_tensor_numel(t), n, "%s", what);
    double *v = kt_values(t);
    for (int64_t i = 0; i < n; i++) {
        double w = want[i];
        bool ok = isnan(w) ? isnan(v[i])
                  : w == 0 ? v[i] == 0 && signbit(v[i]) == signbit(w)
                           : (isinf(w) ? v[i] == w : fabs(v[i] - w) <= atol + rtol * fabs(w));
        cr_expect(ok, "%s element %lld: got %.17g, torch gives %.17g", what, (long long)i, v[i], w);
    }
    free(v);
}

static void expect_torch(const char *what, kiln_tensor *t, const double *want, int64_t n, double rtol) {
    expect_torch_tol(what, t, want, n, 0, rtol);
}

typedef struct {
    const char *name;
    unary_fn f;
    const double *y[2], *g[2]; /* f32, f64 */
    bool libm;                 /* sigmoid, tanh: compared within a few ulps */
} torch_unary_case;

static kiln_tensor *u_clamp_torch(kiln_tensor *x) { return kiln_clamp(x, -0.5, 1); }
static kiln_tensor *u_clamp_torch_inv(kiln_tensor *x) { return kiln_clamp(x, 1, -0.5); }

KT_TEST(elementwise, nan_inf_and_signed_zero_as_torch) {
    const torch_unary_case cases[] = {
        {"relu", u_relu, {ew_relu_y_f32, ew_relu_y_f64}, {ew_relu_g_f32, ew_relu_g_f64}, false},
        {"leaky_relu", u_leaky, {ew_leaky_relu_y_f32, ew_leaky_relu_y_f64}, {ew_leaky_relu_g_f32, ew_leaky_relu_g_f64}, false},
        {"clamp", u_clamp_torch, {ew_clamp_y_f32, ew_clamp_y_f64}, {ew_clamp_g_f32, ew_clamp_g_f64}, false},
        {"clamp lo > hi", u_clamp_torch_inv, {ew_clamp_inverted_y_f32, ew_clamp_inverted_y_f64},
         {ew_clamp_inverted_g_f32, ew_clamp_inverted_g_f64}, false},
        {"clamp lo only", u_clamp_lo, {ew_clamp_lo_y_f32, ew_clamp_lo_y_f64}, {ew_clamp_lo_g_f32, ew_clamp_lo_g_f64}, false},
        {"sigmoid", u_sigmoid, {ew_sigmoid_y_f32, ew_sigmoid_y_f64}, {ew_sigmoid_g_f32, ew_sigmoid_g_f64}, true},
        {"tanh", u_tanh, {ew_tanh_y_f32, ew_tanh_y_f64}, {ew_tanh_g_f32, ew_tanh_g_f64}, true},
        {"abs", u_abs, {ew_abs_y_f32, ew_abs_y_f64}, {ew_abs_g_f32, ew_abs_g_f64}, false},
    };
    char what[96];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int d = 0; d < 2; d++) {
            kiln_dtype dt = d ? KILN_F64 : KILN_F32;
            kiln_tensor *x = kt_tensor(dt, 1, (int64_t[]){EW_N}, ew_x);
            kiln_tensor_set_requires_grad(x, true);
            kiln_tensor *y = cases[c].f(x);
            /* sigmoid and tanh: another libm, and 1 - y^2 near |y| = 1 turns its ulp into an
             * absolute error of about one ulp of 1 */
            double rtol = cases[c].libm ? (d ? F64_RTOL : F32_RTOL) : 0;
            double atol = cases[c].libm ? (d ? F64_ATOL : F32_ATOL) : 0;
            snprintf(what, sizeof what, "%s %s forward", cases[c].name, kiln_dtype_name(dt));
            expect_torch_tol(what, y, cases[c].y[d], EW_N, atol, rtol);
            cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
            snprintf(what, sizeof what, "%s %s gradient", cases[c].name, kiln_dtype_name(dt));
            expect_torch_tol(what, kiln_tensor_grad(x), cases[c].g[d], EW_N, atol, rtol);
        }
}

/* maximum/minimum with a NaN operand: NaN out, and the whole gradient to both sides
 * (torch: neither side lost); ties split it. */
KT_TEST(elementwise, maximum_minimum_nan_gradient_goes_to_both_sides) {
    const double *want[2][2][3] = {{{ew_maximum_y_f32, ew_maximum_ga_f32, ew_maximum_gb_f32},
                                    {ew_minimum_y_f32, ew_minimum_ga_f32, ew_minimum_gb_f32}},
                                   {{ew_maximum_y_f64, ew_maximum_ga_f64, ew_maximum_gb_f64},
                                    {ew_minimum_y_f64, ew_minimum_ga_f64, ew_minimum_gb_f64}}};
    char what[96];
    for (int d = 0; d < 2; d++)
        for (int m = 0; m < 2; m++) {
            kiln_dtype dt = d ? KILN_F64 : KILN_F32;
            kiln_tensor *a = kt_tensor(dt, 1, (int64_t[]){EW_MM_N}, ew_mm_a);
            kiln_tensor *b = kt_tensor(dt, 1, (int64_t[]){EW_MM_N}, ew_mm_b);
            kiln_tensor_set_requires_grad(a, true);
            kiln_tensor_set_requires_grad(b, true);
            kiln_tensor *y = m ? kiln_minimum(a, b) : kiln_maximum(a, b);
            const char *op = m ? "minimum" : "maximum";
            snprintf(what, sizeof what, "%s %s", op, kiln_dtype_name(dt));
            expect_torch(what, y, want[d][m][0], EW_MM_N, 0);
            cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
            snprintf(what, sizeof what, "%s %s, gradient of a", op, kiln_dtype_name(dt));
            expect_torch(what, kiln_tensor_grad(a), want[d][m][1], EW_MM_N, 0);
            snprintf(what, sizeof what, "%s %s, gradient of b", op, kiln_dtype_name(dt));
            expect_torch(what, kiln_tensor_grad(b), want[d][m][2], EW_MM_N, 0);
        }
}

/* x^e at -0, +0, 2 and NaN for torch's special exponents (sqrt, 1/sqrt, reciprocal,
 * products) and others: the sign of every zero and infinity, forward and backward. */
KT_TEST(elementwise, pow_at_signed_zero_as_torch) {
    char what[96];
    for (int d = 0; d < 2; d++)
        for (int e = 0; e < EW_POW_NE; e++) {
            kiln_dtype dt = d ? KILN_F64 : KILN_F32;
            kiln_tensor *x = kt_tensor(dt, 1, (int64_t[]){EW_POW_NX}, ew_pow_x);
            kiln_tensor_set_requires_grad(x, true);
            kiln_tensor *y = kiln_pow_scalar(x, ew_pow_e[e]);
            double rtol = d ? F64_RTOL : F32_RTOL; /* pow(2, 2.5) and friends: libm */
            snprintf(what, sizeof what, "pow %g %s", ew_pow_e[e], kiln_dtype_name(dt));
            expect_torch(what, y, (d ? ew_pow_y_f64 : ew_pow_y_f32) + e * EW_POW_NX, EW_POW_NX, rtol);
            cr_assert_eq(kiln_backward(kiln_sum_all(y), NULL), KILN_STATUS_OK, "%s", kiln_last_error());
            snprintf(what, sizeof what, "pow %g %s gradient", ew_pow_e[e], kiln_dtype_name(dt));
            expect_torch(what, kiln_tensor_grad(x), (d ? ew_pow_g_f64 : ew_pow_g_f32) + e * EW_POW_NX, EW_POW_NX, rtol);
        }
}

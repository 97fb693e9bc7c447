/* kernels/fast_math.h against double-precision libm: the error in ulps of the float
 * result over an even sample of each function's whole range (every 4093rd bit pattern),
 * finer samples of the ranges the losses use most (exp on [-20, 0] and its subnormal
 * results, log on [1, 8], log1p on [0, 1] and around 1 + x = sqrt 2), and the special
 * values. The bounds asserted are the exhaustive maxima (every float of each range:
 * exp 0.99, log 0.86, log1p 1.44 ulp; docs/ARCHITECTURE.md) rounded up. */
#include "support/kiln_test.h"
#include "kernels/fast_math.h"

#include <math.h>
#include <string.h>

TestSuite(fast_math, .init = kiln_test_setup, .fini = kiln_test_teardown);

static float from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The float ulp at the magnitude of ref (subnormal spacing below FLT_MIN). */
static double ulp_at(double ref) {
    double a = fabs(ref);
    if (a < 0x1p-126) return 0x1p-149;
    int e;
    frexp(a, &e);
    return ldexp(1.0, e - 24);
}

/* Error of got in ulps of ref; an infinite ref must be met exactly. */
static double ulps(float got, double ref) {
    if (isinf(ref) || isinf((float)ref)) return got == (float)ref ? 0 : INFINITY;
    if (isnan(got)) return INFINITY;
    return fabs((double)got - ref) / ulp_at(ref);
}

typedef struct {
    double worst;
    float at;
    long n;
} scan_result;

/* The error at x of exp (which 0), log (1) or log1p (2), kept if it is the worst yet. */
static void scan_point(scan_result *r, int which, float x) {
    double e = which == 0 ? ulps(kiln_fast_expf(x), exp((double)x))
               : which == 1 ? ulps(kiln_fast_logf(x), log((double)x))
                            : ulps(kiln_fast_log1pf(x), log1p((double)x));
    r->n++;
    if (e > r->worst) {
        r->worst = e;
        r->at = x;
    }
}

static void scan_bits(scan_result *r, int which, float lo, float hi, uint32_t step) {
    for (uint64_t b = 0; b < 0x100000000ull; b += step) {
        float x = from_bits((uint32_t)b);
        if (x >= lo && x <= hi) scan_point(r, which, x);
    }
}

/* Every step-th float between a and b (same sign), by bit pattern. */
static void scan_range(scan_result *r, int which, float a, float b, uint32_t step) {
    uint32_t ua, ub;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    if (ua > ub) {
        uint32_t t = ua;
        ua = ub;
        ub = t;
    }
    for (uint64_t u = ua; u <= ub; u += step) {
        scan_point(r, which, from_bits((uint32_t)u));
    }
}

KT_TEST(fast_math, exp_within_1_ulp) {
    scan_result r = {0, 0, 0};
    scan_bits(&r, 0, -104.5f, 89.0f, 4093);   /* subnormal and zero results, overflow to inf */
    scan_range(&r, 0, -0.0f, -20.0f, 1021);     /* x - max of the softmax */
    scan_range(&r, 0, -87.0f, -104.0f, 61); /* subnormal results */
    cr_expect(r.n > 500000);
    cr_expect(r.worst <= 1.0, "exp: %.3f ulp at %a (%d checked)", r.worst, r.at, (int)r.n);
}

KT_TEST(fast_math, exp_special_values) {
    cr_expect_eq(kiln_fast_expf(0.0f), 1.0f);
    cr_expect_eq(kiln_fast_expf(-0.0f), 1.0f);
    cr_expect_eq(kiln_fast_expf(-INFINITY), 0.0f);
    cr_expect_eq(kiln_fast_expf(-104.0f), 0.0f);
    cr_expect_eq(kiln_fast_expf(-1000.0f), 0.0f);
    cr_expect_eq(kiln_fast_expf(-3e38f), 0.0f);
    cr_expect(ulps(kiln_fast_expf(-103.0f), exp(-103.0)) <= 1.0, "e^-103, a subnormal");
    cr_expect(isinf(kiln_fast_expf(88.73f)) && isinf(kiln_fast_expf(1000.0f)) && isinf(kiln_fast_expf(INFINITY)));
    cr_expect(isfinite(kiln_fast_expf(88.72f)));
    cr_expect(isnan(kiln_fast_expf(NAN)) && isnan(kiln_fast_expf(-NAN)));
}

KT_TEST(fast_math, log_within_1_ulp) {
    scan_result r = {0, 0, 0};
    scan_bits(&r, 1, 0x1p-126f, 3.4028235e38f, 4093);
    scan_range(&r, 1, 1.0f, 8.0f, 31); /* the log-sum-exp of a few classes */
    cr_expect(r.n > 500000);
    cr_expect(r.worst <= 1.0, "log: %.3f ulp at %a (%d checked)", r.worst, r.at, (int)r.n);
}

KT_TEST(fast_math, log_special_values) {
    cr_expect_eq(kiln_fast_logf(1.0f), 0.0f);
    cr_expect_eq(kiln_fast_logf(0.0f), -INFINITY);
    cr_expect_eq(kiln_fast_logf(-0.0f), -INFINITY);
    cr_expect_eq(kiln_fast_logf(0x1p-140f), -INFINITY, "subnormals are flushed to zero");
    cr_expect_eq(kiln_fast_logf(INFINITY), INFINITY);
    cr_expect(isnan(kiln_fast_logf(-1.0f)) && isnan(kiln_fast_logf(-INFINITY)) && isnan(kiln_fast_logf(NAN)));
}

KT_TEST(fast_math, log1p_within_1_5_ulp) {
    scan_result r = {0, 0, 0};
    scan_bits(&r, 2, -0.99999994f, 3.4028235e38f, 4093);
    scan_range(&r, 2, 0.0f, 1.0f, 1021); /* log1p(e^-|x|) of bce_with_logits */
    scan_range(&r, 2, 0.40f, 0.43f, 7); /* around 1 + x = sqrt 2, the worst spot */
    cr_expect(r.n > 500000);
    cr_expect(r.worst <= 1.5, "log1p: %.3f ulp at %a (%d checked)", r.worst, r.at, (int)r.n);
}

KT_TEST(fast_math, log1p_special_values) {
    cr_expect_eq(kiln_fast_log1pf(0.0f), 0.0f);
    cr_expect_eq(kiln_fast_log1pf(0x1p-30f), 0x1p-30f, "log1p(x) = x below half an ulp of 1");
    cr_expect_eq(kiln_fast_log1pf(0x1p-140f), 0x1p-140f);
    cr_expect_eq(kiln_fast_log1pf(-1.0f), -INFINITY);
    cr_expect_eq(kiln_fast_log1pf(INFINITY), INFINITY);
    cr_expect(isnan(kiln_fast_log1pf(-2.0f)) && isnan(kiln_fast_log1pf(-INFINITY)) && isnan(kiln_fast_log1pf(NAN)));
}

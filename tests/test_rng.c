/* The counter-based generator: Philox 4x32-10 against the Random123 known answers,
 * reproducibility (seed, state save/restore), and the distributions' bounds and
 * moments checked with 5-sigma limits for the sample size (a fixed seed makes each
 * check deterministic; 5 sigma keeps a chance false failure below 1e-6 per seed). */
#include "support/kiln_test.h"
#include "kernels/philox.h"

#include <stdlib.h>
#include <string.h>

TestSuite(rng, .init = kiln_test_setup, .fini = kiln_test_teardown);

/* Philox 4x32-10 with the full 128-bit counter, written from the paper, to check
 * kernels/philox.h (which fixes counter words 2 and 3 at zero) at many points. */
static void ref_philox(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c[4] = {ctr[0], ctr[1], ctr[2], ctr[3]}, k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0], p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
        c[1] = (uint32_t)p1;
        c[3] = (uint32_t)p0;
        c[0] = n0;
        c[2] = n2;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    memcpy(out, c, sizeof c);
}

KT_TEST(rng, philox_known_answer) {
    uint32_t o[4];
    kiln_philox4x32(0, 0, o);
    const uint32_t want[4] = {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u};
    for (int i = 0; i < 4; i++) cr_expect_eq(o[i], want[i], "word %d: %08x, expected %08x", i, o[i], want[i]);
}

KT_TEST(rng, reference_matches_random123_vectors) {
    /* the reference itself, on Random123's other two kat_vectors for philox4x32-10 */
    struct { uint32_t ctr[4], key[2], out[4]; } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
        {{~0u, ~0u, ~0u, ~0u}, {~0u, ~0u}, {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
        {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}, {0xa4093822u, 0x299f31d0u},
         {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
    };
    for (int t = 0; t < 3; t++) {
        uint32_t o[4];
        ref_philox(kat[t].ctr, kat[t].key, o);
        for (int i = 0; i < 4; i++) cr_expect_eq(o[i], kat[t].out[i], "vector %d word %d", t, i);
    }
}

KT_TEST(rng, philox_maps_counter_and_seed_to_the_right_words) {
    const uint64_t counters[] = {1, 2, 0xffffffffu, 0x100000000ull, 0x0123456789abcdefull, ~0ull};
    const uint64_t seeds[] = {0, 1234, 0xdeadbeefcafef00dull, 0xffffffff00000000ull};
    for (int i = 0; i < 6; i++)
        for (int j = 0; j < 4; j++) {
            uint32_t got[4], want[4];
            kiln_philox4x32(counters[i], seeds[j], got);
            uint32_t ctr[4] = {(uint32_t)counters[i], (uint32_t)(counters[i] >> 32), 0, 0};
            uint32_t key[2] = {(uint32_t)seeds[j], (uint32_t)(seeds[j] >> 32)};
            ref_philox(ctr, key, want);
            cr_expect(memcmp(got, want, sizeof got) == 0, "counter %llx seed %llx", (unsigned long long)counters[i],
                      (unsigned long long)seeds[j]);
        }
}

static double *draw(int64_t n, bool normal, double a, double b, kiln_dtype dt) {
    kiln_tensor *t = normal ? kiln_tensor_randn(1, &n, a, b, dt, KILN_CPU) : kiln_tensor_rand(1, &n, a, b, dt, KILN_CPU);
    cr_assert(t != NULL, "%s", kiln_last_error());
    return kt_values(t);
}

KT_TEST(rng, tensor_element_i_is_philox_counter_offset_plus_i) {
    kiln_manual_seed(99);
    double *v = draw(10, false, -2, 3, KILN_F64);
    double *w = draw(10, true, 1, 0.5, KILN_F64);
    for (int i = 0; i < 10; i++) {
        cr_expect_eq(v[i], kiln_philox_sample(99, (uint64_t)i, 0, -2, 3), "uniform element %d", i);
        cr_expect_eq(w[i], kiln_philox_sample(99, (uint64_t)(10 + i), 1, 1, 0.5), "normal element %d", i);
    }
    free(v);
    free(w);
}

KT_TEST(rng, same_seed_same_numbers) {
    kiln_manual_seed(7);
    double *a = draw(257, false, 0, 1, KILN_F32);
    double *an = draw(33, true, 0, 1, KILN_F64);
    kiln_manual_seed(7);
    double *b = draw(257, false, 0, 1, KILN_F32);
    double *bn = draw(33, true, 0, 1, KILN_F64);
    kiln_manual_seed(8);
    double *c = draw(257, false, 0, 1, KILN_F32);
    cr_expect(memcmp(a, b, 257 * sizeof *a) == 0);
    cr_expect(memcmp(an, bn, 33 * sizeof *an) == 0);
    int same = 0;
    for (int i = 0; i < 257; i++) same += a[i] == c[i];
    cr_expect_lt(same, 3, "another seed gives other numbers (%d of 257 equal)", same);
    free(a), free(an), free(b), free(bn), free(c);
}

KT_TEST(rng, state_save_and_restore_resumes_the_sequence) {
    kiln_manual_seed(42);
    double *first = draw(100, false, 0, 1, KILN_F64);
    uint64_t seed, offset;
    kiln_rng_get_state(&seed, &offset);
    cr_expect_eq(seed, 42);
    cr_expect_eq(offset, 100, "the offset advances by the number of elements drawn");
    double *next = draw(50, true, 0, 1, KILN_F64);
    kiln_manual_seed(1); /* wander off */
    free(draw(10, false, 0, 1, KILN_F64));
    kiln_rng_set_state(seed, offset);
    double *again = draw(50, true, 0, 1, KILN_F64);
    cr_expect(memcmp(next, again, 50 * sizeof *next) == 0, "set_state resumes where get_state was taken");
    /* one draw of 150 is the same stream as 100 then 50 */
    kiln_manual_seed(42);
    double *all = draw(150, false, 0, 1, KILN_F64);
    cr_expect(memcmp(all, first, 100 * sizeof *all) == 0);
    free(first), free(next), free(again), free(all);
}

static void moments(const double *v, int64_t n, double *mean, double *var) {
    double s = 0, ss = 0;
    for (int64_t i = 0; i < n; i++) s += v[i];
    *mean = s / (double)n;
    for (int64_t i = 0; i < n; i++) ss += (v[i] - *mean) * (v[i] - *mean);
    *var = ss / (double)(n - 1);
}

KT_TEST(rng, uniform_bounds_and_moments) {
    const int64_t n = 100000;
    const double lo = -1.5, hi = 2.5, w = hi - lo;
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        double *v = draw(n, false, lo, hi, dt);
        double mn = v[0], mx = v[0];
        for (int64_t i = 0; i < n; i++) {
            mn = fmin(mn, v[i]);
            mx = fmax(mx, v[i]);
        }
        cr_expect(mn >= lo && mx < hi, "%s: values in [%g, %g], outside [lo, hi)", kiln_dtype_name(dt), mn, mx);
        /* with 1e5 draws the extremes come within 1e-3 of the ends (chance of not: e^-25) */
        cr_expect(mn < lo + 1e-3 * w && mx > hi - 1e-3 * w);
        double mean, var;
        moments(v, n, &mean, &var);
        /* sd of the mean: w/sqrt(12n); sd of the sample variance: w^2 sqrt((1/80 - 1/144)/n) */
        double sd_mean = w / sqrt(12.0 * n), sd_var = w * w * sqrt((1.0 / 80 - 1.0 / 144) / n);
        cr_expect_leq(fabs(mean - (lo + hi) / 2), 5 * sd_mean, "%s mean %g", kiln_dtype_name(dt), mean);
        cr_expect_leq(fabs(var - w * w / 12), 5 * sd_var, "%s variance %g", kiln_dtype_name(dt), var);
        free(v);
    }
}

KT_TEST(rng, f32_uniform_never_reaches_the_open_upper_bound) {
    /* [1, 1 + 2^-23): half of the doubles drawn round to hi in f32; all must come back as 1 */
    const int64_t n = 1000;
    double hi = 1.0 + 0x1p-23;
    double *v = draw(n, false, 1.0, hi, KILN_F32);
    for (int64_t i = 0; i < n; i++) cr_expect(v[i] >= 1.0 && v[i] < hi, "element %lld is %.9g", (long long)i, v[i]);
    free(v);
}

KT_TEST(rng, normal_mean_std_and_shape) {
    const int64_t n = 100000;
    const double mu = 3.0, sigma = 2.0;
    for (int d = 0; d < 2; d++) {
        kiln_dtype dt = d ? KILN_F64 : KILN_F32;
        double *v = draw(n, true, mu, sigma, dt);
        double mean, var;
        moments(v, n, &mean, &var);
        /* sd of the mean: sigma/sqrt(n); sd of the sample variance: sigma^2 sqrt(2/(n-1)) */
        cr_expect_leq(fabs(mean - mu), 5 * sigma / sqrt((double)n), "%s mean %g", kiln_dtype_name(dt), mean);
        cr_expect_leq(fabs(var - sigma * sigma), 5 * sigma * sigma * sqrt(2.0 / (n - 1)), "%s variance %g",
                      kiln_dtype_name(dt), var);
        /* P(|z| < 1) = 0.682689; binomial sd sqrt(p(1-p)/n) */
        int64_t inside = 0;
        for (int64_t i = 0; i < n; i++) inside += fabs(v[i] - mu) < sigma;
        double p = 0.682689492137086, frac = (double)inside / (double)n;
        cr_expect_leq(fabs(frac - p), 5 * sqrt(p * (1 - p) / n), "fraction within 1 sd: %g", frac);
        for (int64_t i = 0; i < n; i++) cr_assert(isfinite(v[i]));
        free(v);
    }
}

KT_TEST(rng, bad_arguments_are_errors) {
    int64_t n = 4;
    kiln_manual_seed(5);
    cr_expect_null(kiln_tensor_rand(1, &n, 1, 1, KILN_F32, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "lo (1) must be below hi (1)");
    cr_expect_null(kiln_tensor_randn(1, &n, 0, -1, KILN_F32, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "std");
    cr_expect_null(kiln_tensor_rand(1, &n, 0, 1, KILN_I32, KILN_CPU));
    kt_expect_error(KILN_STATUS_DTYPE, "i32");
    uint64_t seed, off;
    kiln_rng_get_state(&seed, &off);
    cr_expect_eq(off, 0, "failed draws do not advance the generator");
}

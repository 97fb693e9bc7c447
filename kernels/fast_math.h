/* Float32 exp, log and log1p for the float loss paths (kernels/cpu/bce.c, cross_entropy_f32.c
 * and their CUDA twins): range reduction + polynomial, only float +,-,* , compares/selects and
 * integer bit manipulation for 2^n. No libm, no branches, so gcc vectorises loops over
 * pixels with baseline SSE2 and a CUDA thread runs the very same operations in order.
 *
 * Accuracy against double exp/log (tests/test_fast_math.c checks it; measured
 * exhaustively over every float of each range, see docs/ARCHITECTURE.md "Float32 loss math"):
 *   kiln_fast_expf   x in [-104, 89] (0 and subnormal results included): < 1 ulp
 *                    (max 0.99); below -104 gives +0, above 88.73 +inf, NaN stays NaN.
 *   kiln_fast_logf   every positive normal float: < 1 ulp (max 0.86); 0 and subnormals
 *                    -> -inf (flushed to zero), < 0 -> NaN, +inf -> +inf, NaN -> NaN.
 *   kiln_fast_log1pf x in (-1, +inf): < 1.5 ulp (max 1.44, near x = 0.4146
 *                    where u = 1 + x crosses sqrt 2); -1 -> -inf, < -1 -> NaN.
 * The coefficients are minimax fits (Lawson iteration) of this file's own making.
 * nvcc contracts a*b+c into FMAs, so on a real GPU results may differ from the CPU's in
 * the last bit; the emulation build (gcc, no FMA in the baseline ISA) is bit-exact. */
#ifndef KILN_FAST_MATH_H
#define KILN_FAST_MATH_H

#include <stdint.h>
#ifndef __CUDA_ARCH__
#include <string.h>
#endif

/* always inlined so that a caller compiled for another ISA (target attributes: the
 * AVX2 clones of the CPU loss kernels) vectorises them with its own vectors */
#ifdef __CUDACC__
#define KILN_FM_INLINE static __host__ __device__ inline
#elif defined(__GNUC__)
#define KILN_FM_INLINE static inline __attribute__((always_inline))
#else
#define KILN_FM_INLINE static inline
#endif

KILN_FM_INLINE uint32_t kiln_fm_bits(float f) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
#endif
}

KILN_FM_INLINE float kiln_fm_float(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

/* ln 2 split so that n * LN2_HI is exact for |n| < 256 (16 significant bits). */
#define KILN_FM_LN2_HI 0.693145751953125f
#define KILN_FM_LN2_LO 1.428606765e-06f
/* 1.5 * 2^23: adding it rounds a float of magnitude < 2^22 to an integer, which then
 * sits in the low mantissa bits. */
#define KILN_FM_ROUND 12582912.0f

/* Clamping and selecting are done on the bits (integer min/max, selects between
 * constants) rather than as float selects around arithmetic: gcc, which must assume FP
 * operations can trap, turns the latter into branches and then no longer vectorises. */

/* e^x. n = round(x / ln 2), r = x - n ln 2 in [-0.35, 0.35] (Cody-Waite, exact first
 * step), e^r = 1 + r + r^2 Q(r), then times 2^n as two powers of two so that results
 * down to the subnormals (n >= -150) are rounded once. */
KILN_FM_INLINE float kiln_fast_expf(float x) {
    /* x into [-104, 89] (e^-104 rounds to 0, e^89 overflows through the scaling), NaN kept:
     * on keys offset by 2^23 - 1, -inf and the negatives below -104 are the unsigned keys
     * above -104's, +inf and the positives above 89 the signed keys above 89's, and NaNs of
     * either sign are neither */
    uint32_t key = kiln_fm_bits(x) + 0x007fffffu;
    key = key > 0xc34fffffu ? 0xc34fffffu : key; /* -104 */
    int32_t skey = (int32_t)key;
    skey = skey > 0x4331ffff ? 0x4331ffff : skey; /* 89 */
    x = kiln_fm_float((uint32_t)skey - 0x007fffffu);
    float k = x * 1.44269502f + KILN_FM_ROUND;
    float n = k - KILN_FM_ROUND;
    int32_t ni = (int32_t)(kiln_fm_bits(k) - 0x4b400000u);
    float r = (x - n * KILN_FM_LN2_HI) - n * KILN_FM_LN2_LO;
    float q = 1.381461276e-03f;
    q = q * r + 8.368710056e-03f;
    q = q * r + 4.166838899e-02f;
    q = q * r + 1.666652113e-01f;
    q = q * r + 4.999999404e-01f;
    float p = (r * r) * q + r;
    p = p + 1.0f;
    int32_t n1 = ni / 2, n2 = ni - n1;
    float s1 = kiln_fm_float((uint32_t)(n1 + 127) << 23), s2 = kiln_fm_float((uint32_t)(n2 + 127) << 23);
    return (p * s1) * s2;
}

/* log(u) + c / u for u > 0 with a small correction c (log1p's rounding error of 1 + x;
 * with_c = 0 for a plain log, a compile-time constant once inlined). u = 2^k m with m in
 * [sqrt(1/2), sqrt(2)), f = m - 1 (exact) + c 2^-k, log(1 + f) = f - f^2/2 + f^3 P(f). */
KILN_FM_INLINE float kiln__fast_log_core(float u, float c, int with_c) {
    /* the exponent relative to sqrt(1/2), offset by 2^30 so the shift sees a positive number */
    uint32_t ib = kiln_fm_bits(u) + (0x40000000u - 0x3f3504f3u);
    int32_t k = (int32_t)(ib >> 23) - 128;
    float f = kiln_fm_float((ib & 0x007fffffu) + 0x3f3504f3u) - 1.0f;
    if (with_c) {
        int32_t kc = k < -126 ? -126 : k;
        kc = kc > 126 ? 126 : kc;
        f = f + c * kiln_fm_float((uint32_t)(127 - kc) << 23);
    }
    float kf = (float)k;
    float pp = -7.634497434e-02f;
    pp = pp * f + 1.276158243e-01f;
    pp = pp * f - 1.316018403e-01f;
    pp = pp * f + 1.420175731e-01f;
    pp = pp * f - 1.662335694e-01f;
    pp = pp * f + 2.000122666e-01f;
    pp = pp * f - 2.500081956e-01f;
    pp = pp * f + 3.333333135e-01f;
    float f2 = f * f;
    float y = (f2 * f) * pp + kf * KILN_FM_LN2_LO;
    float r = f - (0.5f * f2 - y);
    r = kf * KILN_FM_LN2_HI + r;
    /* the special values by adding one: 0 for a normal u, else what log(u) must be (r is
     * finite there, NaN for a NaN u). Subnormals are flushed to zero: scaling them would
     * be a float select around arithmetic (see above), and no caller passes them. */
    const float inf = kiln_fm_float(0x7f800000u), nan = kiln_fm_float(0x7fc00000u);
    float special = u >= 0x1p-126f ? 0.0f : u >= 0.0f ? -inf : nan; /* NaN fails both compares */
    special = u == inf ? inf : special;
    return r + special;
}

KILN_FM_INLINE float kiln_fast_logf(float x) { return kiln__fast_log_core(x, 0.0f, 0); }

/* log(1 + x): u = 1 + x rounded, c its exact rounding error (TwoSum), folded into f.
 * c comes from x clamped to 2^30 so that x = +inf leaves it finite; above 2^24 the
 * error is 1 for every x anyway. */
KILN_FM_INLINE float kiln_fast_log1pf(float x) {
    float u = 1.0f + x;
    int32_t xb = (int32_t)kiln_fm_bits(x);
    float xc = kiln_fm_float((uint32_t)(xb > 0x4e800000 ? 0x4e800000 : xb));
    float uc = 1.0f + xc, bb = uc - 1.0f;
    float c = (1.0f - (uc - bb)) + (xc - bb);
    return kiln__fast_log_core(u, c, 1);
}

#endif

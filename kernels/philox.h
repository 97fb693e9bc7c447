/* Philox 4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3"):
 * a counter-based generator, so element i of a draw depends only on (seed, counter)
 * and every device computes the same value. Shared by CPU and CUDA kernels. */
#ifndef KILN_PHILOX_H
#define KILN_PHILOX_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define KILN_PHILOX_HD static __host__ __device__ __forceinline__
#else
#define KILN_PHILOX_HD static inline
#endif

KILN_PHILOX_HD void kiln_philox4x32(uint64_t counter, uint64_t seed, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* One sample for counter: uniform in [a, b) or, when normal, a + b*N(0,1) by
 * Box-Muller. Computed in double so float results agree across devices. */
KILN_PHILOX_HD double kiln_philox_sample(uint64_t seed, uint64_t counter, int normal, double a, double b) {
    uint32_t w[4];
    kiln_philox4x32(counter, seed, w);
    /* 53-bit uniforms from two words each */
    double u1 = ((double)(((uint64_t)w[0] << 21) ^ (w[1] >> 11)) ) * 0x1p-53;
    if (!normal) return a + (b - a) * u1;
    double u2 = ((double)(((uint64_t)w[2] << 21) ^ (w[3] >> 11))) * 0x1p-53;
    double r = sqrt(-2.0 * log(1.0 - u1)); /* 1-u1 is in (0, 1] */
    return a + b * r * cos(6.283185307179586 * u2);
}

#endif

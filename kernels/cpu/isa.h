/* Hot CPU loops compiled three times, for the baseline (SSE2: the build has no -march),
 * AVX2 and AVX-512, the widest the CPU has picked at each call (isa.c). No clone contracts
 * a*b+c into an FMA (gcc's avx2 target has no FMA; the AVX-512 clone turns contraction off),
 * and the loops keep each partial sum in its own lane, so every clone computes the same bits
 * as the others and as the emulated CUDA kernels. Not target_clones: its ifunc picks once,
 * at load time, where KILN_CPU_ISA is read at each call so one test runs every clone, and
 * its clones cannot take options of their own (prefer-vector-width=512, fp-contract=off;
 * gcc's avx512f target brings FMA). */
#ifndef KILN_CPU_ISA_H
#define KILN_CPU_ISA_H

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__)) && !defined(__clang__)
#define KILN_ALWAYS_INLINE inline __attribute__((always_inline))
/* Defines BASE, AVX2 and AVX512, void functions of the parameter list params whose body
 * is call: the always-inline loop applied to those parameters. */
#define KILN_ISA_DEFINE(BASE, AVX2, AVX512, params, call)                                      \
    static void BASE params { call; }                                                          \
    __attribute__((target("avx2"))) static void AVX2 params { call; }                          \
    __attribute__((target("avx512f,prefer-vector-width=512"), optimize("fp-contract=off")))    \
    static void AVX512 params { call; }
/* The clone to run now, as kiln__cpu_isa says. */
#define KILN_ISA_SELECT(BASE, AVX2, AVX512)                                                    \
    __extension__({                                                                            \
        int isa_ = kiln__cpu_isa();                                                            \
        isa_ == 2 ? AVX512 : isa_ == 1 ? AVX2 : BASE;                                          \
    })
#else /* other compilers and CPUs: the baseline alone */
#define KILN_ALWAYS_INLINE inline
#define KILN_ISA_DEFINE(BASE, AVX2, AVX512, params, call) static void BASE params { call; }
#define KILN_ISA_SELECT(BASE, AVX2, AVX512) BASE
#endif

#include <stdint.h>
#include <string.h>

/* Double sums of floats in eight lanes: element k of a run goes to lane k % 8 and a run's
 * tail to lane 0, so the additions vectorise and every clone adds the same numbers in the
 * same order. kiln_lanes_total folds the lanes in a fixed tree. */
typedef float kiln_v8f __attribute__((vector_size(32)));
typedef double kiln_v8d __attribute__((vector_size(64)));

/* eight floats widened to double (through a pointer: a returned 64-byte vector would
 * change the ABI between clones) */
static KILN_ALWAYS_INLINE void kiln_load8(kiln_v8d *out, const float *p) {
    kiln_v8f f;
    memcpy(&f, p, sizeof f);
    *out = __builtin_convertvector(f, kiln_v8d);
}

static KILN_ALWAYS_INLINE void kiln_lanes_add(double *lanes, const float *p, int64_t n) {
    kiln_v8d a;
    memcpy(&a, lanes, sizeof a);
    int64_t n8 = n & ~(int64_t)7;
    for (int64_t k = 0; k < n8; k += 8) {
        kiln_v8d v;
        kiln_load8(&v, p + k);
        a += v;
    }
    memcpy(lanes, &a, sizeof a);
    for (int64_t k = n8; k < n; k++) lanes[0] += p[k];
}

static inline double kiln_lanes_total(const double *a) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* 2: AVX-512, 1: AVX2, 0: the baseline; the widest the CPU has, capped by the environment
 * variable KILN_CPU_ISA (sse2, avx2, avx512), read at each call so tests can run every clone. */
int kiln__cpu_isa(void);

#endif

/* Per-element math shared by the CPU kernels and the CUDA kernels (DESIGN.md
 * principle 5): one definition of each function and of its derivative, so both
 * backends compute the same formula. Plain C, also valid CUDA C++. */
#ifndef KILN_ELEMENTWISE_MATH_H
#define KILN_ELEMENTWISE_MATH_H

#include <math.h>

#ifdef __CUDACC__
#define KILN_HD static __host__ __device__ __forceinline__
#else
#define KILN_HD static inline
#endif

typedef enum {
    KILN_UNARY_NEG,
    KILN_UNARY_EXP,
    KILN_UNARY_LOG,
    KILN_UNARY_SQRT,
    KILN_UNARY_ABS,
    KILN_UNARY_POW,        /* x^a */
    KILN_UNARY_CLAMP,      /* min(max(x, a), b) */
    KILN_UNARY_RELU,
    KILN_UNARY_LEAKY_RELU, /* x > 0 ? x : a*x */
    KILN_UNARY_SIGMOID,
    KILN_UNARY_TANH,
    KILN_UNARY_ADD_SCALAR, /* x + a */
    KILN_UNARY_MUL_SCALAR, /* x * a */
    KILN_UNARY_COUNT
} kiln_unary_kind;

typedef enum {
    KILN_BINARY_ADD,
    KILN_BINARY_SUB,
    KILN_BINARY_MUL,
    KILN_BINARY_DIV,
    KILN_BINARY_MAX,
    KILN_BINARY_MIN,
    KILN_BINARY_COUNT
} kiln_binary_kind;

/* f(x) for unary kinds; y = f(x) is passed to the derivative where it is cheaper. */
#define KILN_DEFINE_ELEMENTWISE(T, SFX, EXP, LOG, SQRT, FABS, POW, TANH)                           \
    /* x^a as torch computes it: its pow kernels take 0, 1, 0.5, -0.5, -1, 2, 3 and -2 as   \
     * fill, copy, sqrt, 1/sqrt, reciprocal and products, which is what decides the sign  \
     * at -0.0 (sqrt(-0) = -0 and 1/sqrt(-0) = -inf, where pow gives +0 and +inf). */     \
    KILN_HD T kiln_pow_##SFX(T x, T a) {                                                           \
        if (a == (T)0) return (T)1;                                                                \
        if (a == (T)1) return x;                                                                   \
        if (a == (T)0.5) return SQRT(x);                                                           \
        if (a == (T)-0.5) return (T)1 / SQRT(x);                                                   \
        if (a == (T)-1) return (T)1 / x;                                                           \
        if (a == (T)2) return x * x;                                                               \
        if (a == (T)3) return x * x * x;                                                           \
        if (a == (T)-2) return (T)1 / (x * x);                                                     \
        return POW(x, a);                                                                          \
    }                                                                                              \
    KILN_HD T kiln_unary_##SFX(int kind, T x, T a, T b) {                                          \
        switch (kind) {                                                                            \
        case KILN_UNARY_NEG: return -x;                                                            \
        case KILN_UNARY_EXP: return EXP(x);                                                        \
        case KILN_UNARY_LOG: return LOG(x);                                                        \
        case KILN_UNARY_SQRT: return SQRT(x);                                                      \
        case KILN_UNARY_ABS: return FABS(x);                                                       \
        case KILN_UNARY_POW: return kiln_pow_##SFX(x, a);                                          \
        /* torch: min(max(x, lo), hi) with NaN (in x or a bound) kept, so lo > hi gives hi */      \
        case KILN_UNARY_CLAMP: {                                                                   \
            T t = (x < a || a != a) ? a : x;                                                       \
            return (t > b || b != b) ? b : t;                                                      \
        }                                                                                          \
        /* NaN stays NaN and -0 stays -0, as torch.relu (not x > 0 ? x : 0) */                    \
        case KILN_UNARY_RELU: return x < 0 ? (T)0 : x;                                             \
        case KILN_UNARY_LEAKY_RELU: return x > 0 ? x : a * x;                                      \
        /* 1/(1+e^-x) overflows e^-x for very negative x; split by sign. */                        \
        case KILN_UNARY_SIGMOID: {                                                                 \
            if (x >= 0) return (T)1 / ((T)1 + EXP(-x));                                            \
            T e = EXP(x);                                                                          \
            return e / ((T)1 + e);                                                                 \
        }                                                                                          \
        case KILN_UNARY_TANH: return TANH(x);                                                      \
        case KILN_UNARY_ADD_SCALAR: return x + a;                                                  \
        case KILN_UNARY_MUL_SCALAR: return x * a;                                                  \
        default: return (T)NAN;                                                                    \
        }                                                                                          \
    }                                                                                              \
    /* dL/dx given g = dL/dy, the input x and the output y. */                                    \
    KILN_HD T kiln_unary_grad_##SFX(int kind, T g, T x, T y, T a, T b) {                           \
        switch (kind) {                                                                            \
        case KILN_UNARY_NEG: return -g;                                                            \
        case KILN_UNARY_EXP: return g * y;                                                         \
        case KILN_UNARY_LOG: return g / x;                                                         \
        case KILN_UNARY_SQRT: return g / ((T)2 * y);                                               \
        /* torch: d|x|/dx = sign(x), 0 at 0 */                                                     \
        case KILN_UNARY_ABS: return x > 0 ? g : (x < 0 ? -g : (T)0);                               \
        /* torch: 0 for a = 0, else grad * (a * x^(a-1)) with its pow (above) */                 \
        case KILN_UNARY_POW: return a == 0 ? (T)0 : g * (a * kiln_pow_##SFX(x, a - 1));            \
        /* torch passes the gradient where lo <= x <= hi */                                        \
        case KILN_UNARY_CLAMP: return (x >= a && x <= b) ? g : (T)0;                               \
        /* torch's threshold_backward on the output: 0 where y <= 0, so NaN passes g */           \
        case KILN_UNARY_RELU: return y <= 0 ? (T)0 : g;                                            \
        case KILN_UNARY_LEAKY_RELU: return x > 0 ? g : g * a;                                      \
        case KILN_UNARY_SIGMOID: return g * y * ((T)1 - y);                                        \
        case KILN_UNARY_TANH: return g * ((T)1 - y * y);                                           \
        case KILN_UNARY_ADD_SCALAR: return g;                                                      \
        case KILN_UNARY_MUL_SCALAR: return g * a;                                                  \
        default: return (T)NAN;                                                                    \
        }                                                                                          \
    }                                                                                              \
    KILN_HD T kiln_binary_##SFX(int kind, T x, T y) {                                              \
        switch (kind) {                                                                            \
        case KILN_BINARY_ADD: return x + y;                                                        \
        case KILN_BINARY_SUB: return x - y;                                                        \
        case KILN_BINARY_MUL: return x * y;                                                        \
        case KILN_BINARY_DIV: return x / y;                                                        \
        /* NaN propagates, as torch.maximum/minimum */                                             \
        case KILN_BINARY_MAX: return (x != x || y != y) ? (T)NAN : (x > y ? x : y);                \
        case KILN_BINARY_MIN: return (x != x || y != y) ? (T)NAN : (x < y ? x : y);                \
        default: return (T)NAN;                                                                    \
        }                                                                                          \
    }                                                                                              \
    /* dL/dx (side 0) or dL/dy (side 1) before reduction over broadcast axes. */                  \
    KILN_HD T kiln_binary_grad_##SFX(int kind, int side, T g, T x, T y) {                          \
        switch (kind) {                                                                            \
        case KILN_BINARY_ADD: return g;                                                            \
        case KILN_BINARY_SUB: return side ? -g : g;                                                \
        case KILN_BINARY_MUL: return side ? g * x : g * y;                                         \
        case KILN_BINARY_DIV: return side ? -g * x / (y * y) : g / y;                              \
        /* torch: ties split the gradient in half; the side that lost gets 0; with a NaN      \
         * neither lost, so both sides get the whole gradient */                                  \
        case KILN_BINARY_MAX:                                                                      \
            if (x == y) return g / (T)2;                                                           \
            return (side == 0 ? x < y : x > y) ? (T)0 : g;                                         \
        case KILN_BINARY_MIN:                                                                      \
            if (x == y) return g / (T)2;                                                           \
            return (side == 0 ? x > y : x < y) ? (T)0 : g;                                         \
        default: return (T)NAN;                                                                    \
        }                                                                                          \
    }

KILN_DEFINE_ELEMENTWISE(float, f32, expf, logf, sqrtf, fabsf, powf, tanhf)
KILN_DEFINE_ELEMENTWISE(double, f64, exp, log, sqrt, fabs, pow, tanh)

#endif

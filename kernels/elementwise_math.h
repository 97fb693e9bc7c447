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
    KILN_UNARY_HARDSWISH,  /* x * min(max(x + 3, 0), 6) / 6 */
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

/* Each function is written out for float and double below; its body, shared by the two,
 * is a macro that reads the parameters by name and takes the type and the math functions
 * of that type as arguments. f(x) for unary kinds; y = f(x) is passed to the derivative
 * where it is cheaper. */

/* x^a as torch computes it: its pow kernels take 0, 1, 0.5, -0.5, -1, 2, 3 and -2 as
 * fill, copy, sqrt, 1/sqrt, reciprocal and products, which is what decides the sign
 * at -0.0 (sqrt(-0) = -0 and 1/sqrt(-0) = -inf, where pow gives +0 and +inf). */
#define KILN_POW_BODY(T, SQRT, POW)                                                                \
    if (a == (T)0) return (T)1;                                                                    \
    if (a == (T)1) return x;                                                                       \
    if (a == (T)0.5) return SQRT(x);                                                               \
    if (a == (T)-0.5) return (T)1 / SQRT(x);                                                       \
    if (a == (T)-1) return (T)1 / x;                                                               \
    if (a == (T)2) return x * x;                                                                   \
    if (a == (T)3) return x * x * x;                                                               \
    if (a == (T)-2) return (T)1 / (x * x);                                                         \
    return POW(x, a)

KILN_HD float kiln_pow_f32(float x, float a) { KILN_POW_BODY(float, sqrtf, powf); }
KILN_HD double kiln_pow_f64(double x, double a) { KILN_POW_BODY(double, sqrt, pow); }

/* KPOW: kiln_pow_f32 or kiln_pow_f64 */
#define KILN_UNARY_BODY(T, EXP, LOG, SQRT, FABS, TANH, KPOW)                                       \
    switch (kind) {                                                                                \
    case KILN_UNARY_NEG: return -x;                                                                \
    case KILN_UNARY_EXP: return EXP(x);                                                            \
    case KILN_UNARY_LOG: return LOG(x);                                                            \
    case KILN_UNARY_SQRT: return SQRT(x);                                                          \
    case KILN_UNARY_ABS: return FABS(x);                                                           \
    case KILN_UNARY_POW: return KPOW(x, a);                                                        \
    /* torch: min(max(x, lo), hi) with NaN (in x or a bound) kept, so lo > hi gives hi */          \
    case KILN_UNARY_CLAMP: {                                                                       \
        T t = (x < a || a != a) ? a : x;                                                           \
        return (t > b || b != b) ? b : t;                                                          \
    }                                                                                              \
    /* NaN stays NaN and -0 stays -0, as torch.relu (not x > 0 ? x : 0) */                         \
    case KILN_UNARY_RELU: return x < 0 ? (T)0 : x;                                                 \
    case KILN_UNARY_LEAKY_RELU: return x > 0 ? x : a * x;                                          \
    /* 1/(1+e^-x) overflows e^-x for very negative x; split by sign. */                            \
    case KILN_UNARY_SIGMOID: {                                                                     \
        if (x >= 0) return (T)1 / ((T)1 + EXP(-x));                                                \
        T e = EXP(x);                                                                              \
        return e / ((T)1 + e);                                                                     \
    }                                                                                              \
    case KILN_UNARY_TANH: return TANH(x);                                                          \
    case KILN_UNARY_ADD_SCALAR: return x + a;                                                      \
    case KILN_UNARY_MUL_SCALAR: return x * a;                                                      \
    /* torch: x * min(max(x + 3, 0), 6) / 6 in that order (so x < -3 gives -0), NaN kept */        \
    case KILN_UNARY_HARDSWISH: {                                                                   \
        T t = x + (T)3;                                                                            \
        t = t < 0 ? (T)0 : t;                                                                      \
        t = t > (T)6 ? (T)6 : t;                                                                   \
        return x * t / (T)6;                                                                       \
    }                                                                                              \
    default: return (T)NAN;                                                                        \
    }

KILN_HD float kiln_unary_f32(int kind, float x, float a, float b) {
    KILN_UNARY_BODY(float, expf, logf, sqrtf, fabsf, tanhf, kiln_pow_f32)
}
KILN_HD double kiln_unary_f64(int kind, double x, double a, double b) {
    KILN_UNARY_BODY(double, exp, log, sqrt, fabs, tanh, kiln_pow_f64)
}

/* dL/dx given g = dL/dy, the input x and the output y. */
#define KILN_UNARY_GRAD_BODY(T, KPOW)                                                              \
    switch (kind) {                                                                                \
    case KILN_UNARY_NEG: return -g;                                                                \
    case KILN_UNARY_EXP: return g * y;                                                             \
    case KILN_UNARY_LOG: return g / x;                                                             \
    case KILN_UNARY_SQRT: return g / ((T)2 * y);                                                   \
    /* torch: d|x|/dx = sign(x), 0 at 0 */                                                         \
    case KILN_UNARY_ABS: return x > 0 ? g : (x < 0 ? -g : (T)0);                                   \
    /* torch: 0 for a = 0, else grad * (a * x^(a-1)) with its pow (above) */                       \
    case KILN_UNARY_POW: return a == 0 ? (T)0 : g * (a * KPOW(x, a - 1));                          \
    /* torch passes the gradient where lo <= x <= hi */                                            \
    case KILN_UNARY_CLAMP: return (x >= a && x <= b) ? g : (T)0;                                   \
    /* torch's threshold_backward on the output: 0 where y <= 0, so NaN passes g */                \
    case KILN_UNARY_RELU: return y <= 0 ? (T)0 : g;                                                \
    case KILN_UNARY_LEAKY_RELU: return x > 0 ? g : g * a;                                          \
    case KILN_UNARY_SIGMOID: return g * y * ((T)1 - y);                                            \
    case KILN_UNARY_TANH: return g * ((T)1 - y * y);                                               \
    case KILN_UNARY_ADD_SCALAR: return g;                                                          \
    case KILN_UNARY_MUL_SCALAR: return g * a;                                                      \
    /* torch's hardswish_backward (its CUDA kernel and CPU scalar loop): 0 below -3,               \
     * g (x/3 + 1/2) on [-3, 3] (1.5 g at 3), g above; NaN fails both tests and passes g */        \
    case KILN_UNARY_HARDSWISH:                                                                     \
        return x < (T)-3 ? (T)0 : (x <= (T)3 ? g * (x / (T)3 + (T)0.5) : g);                       \
    default: return (T)NAN;                                                                        \
    }

KILN_HD float kiln_unary_grad_f32(int kind, float g, float x, float y, float a, float b) {
    KILN_UNARY_GRAD_BODY(float, kiln_pow_f32)
}
KILN_HD double kiln_unary_grad_f64(int kind, double g, double x, double y, double a, double b) {
    KILN_UNARY_GRAD_BODY(double, kiln_pow_f64)
}

#define KILN_BINARY_BODY(T)                                                                        \
    switch (kind) {                                                                                \
    case KILN_BINARY_ADD: return x + y;                                                            \
    case KILN_BINARY_SUB: return x - y;                                                            \
    case KILN_BINARY_MUL: return x * y;                                                            \
    case KILN_BINARY_DIV: return x / y;                                                            \
    /* NaN propagates, as torch.maximum/minimum */                                                 \
    case KILN_BINARY_MAX: return (x != x || y != y) ? (T)NAN : (x > y ? x : y);                    \
    case KILN_BINARY_MIN: return (x != x || y != y) ? (T)NAN : (x < y ? x : y);                    \
    default: return (T)NAN;                                                                        \
    }

KILN_HD float kiln_binary_f32(int kind, float x, float y) { KILN_BINARY_BODY(float) }
KILN_HD double kiln_binary_f64(int kind, double x, double y) { KILN_BINARY_BODY(double) }

/* dL/dx (side 0) or dL/dy (side 1) before reduction over broadcast axes. */
#define KILN_BINARY_GRAD_BODY(T)                                                                   \
    switch (kind) {                                                                                \
    case KILN_BINARY_ADD: return g;                                                                \
    case KILN_BINARY_SUB: return side ? -g : g;                                                    \
    case KILN_BINARY_MUL: return side ? g * x : g * y;                                             \
    case KILN_BINARY_DIV: return side ? -g * x / (y * y) : g / y;                                  \
    /* torch: ties split the gradient in half; the side that lost gets 0; with a NaN               \
     * neither lost, so both sides get the whole gradient */                                       \
    case KILN_BINARY_MAX:                                                                          \
        if (x == y) return g / (T)2;                                                               \
        return (side == 0 ? x < y : x > y) ? (T)0 : g;                                             \
    case KILN_BINARY_MIN:                                                                          \
        if (x == y) return g / (T)2;                                                               \
        return (side == 0 ? x > y : x < y) ? (T)0 : g;                                             \
    default: return (T)NAN;                                                                        \
    }

KILN_HD float kiln_binary_grad_f32(int kind, int side, float g, float x, float y) { KILN_BINARY_GRAD_BODY(float) }
KILN_HD double kiln_binary_grad_f64(int kind, int side, double g, double x, double y) { KILN_BINARY_GRAD_BODY(double) }

#endif

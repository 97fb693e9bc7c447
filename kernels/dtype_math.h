/* Conversions between kiln's dtypes, shared by the CPU copy kernel, tensor printing
 * and the CUDA copy kernel (DESIGN.md principle 5), so a cast rounds the same way on
 * every device. Plain C, also valid CUDA C++. */
#ifndef KILN_DTYPE_MATH_H
#define KILN_DTYPE_MATH_H

#include "kiln/core.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __CUDACC__
#define KILN_DT_HD static __host__ __device__ __forceinline__
#else
#define KILN_DT_HD static inline
#endif

/* Through double, which holds every value of every kiln dtype but the largest
 * int64s; floats to integers truncate toward zero. */
KILN_DT_HD double kiln_load_as_double(const char *p, int dt) {
    switch (dt) {
    case KILN_F32: return *(const float *)p;
    case KILN_F64: return *(const double *)p;
    case KILN_I32: return *(const int32_t *)p;
    case KILN_I64: return (double)*(const int64_t *)p;
    case KILN_U8: return *(const uint8_t *)p;
    case KILN_BF16: {
        uint32_t u = (uint32_t)(*(const uint16_t *)p) << 16;
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    case KILN_F16: {
        uint16_t h = *(const uint16_t *)p;
        int e = (h >> 10) & 31, m = h & 1023;
        double v = e == 0 ? ldexp((double)m, -24) : e == 31 ? (m ? (double)NAN : (double)INFINITY)
                                                            : ldexp((double)(m + 1024), e - 25);
        return (h & 0x8000) ? -v : v;
    }
    default: return 0;
    }
}

KILN_DT_HD void kiln_store_from_double(char *p, int dt, double v) {
    switch (dt) {
    case KILN_F32: *(float *)p = (float)v; break;
    case KILN_F64: *(double *)p = v; break;
    case KILN_I32: *(int32_t *)p = (int32_t)v; break;
    case KILN_I64: *(int64_t *)p = (int64_t)v; break;
    case KILN_U8: *(uint8_t *)p = (uint8_t)(int64_t)v; break;
    case KILN_BF16: { /* round to nearest even */
        float f = (float)v;
        uint32_t u;
        memcpy(&u, &f, 4);
        if ((u & 0x7fffffffu) > 0x7f800000u) *(uint16_t *)p = 0x7fc0;
        else *(uint16_t *)p = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
        break;
    }
    case KILN_F16: {
        float f = (float)v;
        uint32_t u;
        memcpy(&u, &f, 4);
        uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
        float a = fabsf(f);
        uint16_t h;
        if (a != a) h = 0x7e00;
        else if (a >= 65520.0f) h = 0x7c00;
        else if (a < 6.103515625e-05f) h = (uint16_t)lrintf(a * 16777216.0f); /* subnormal: units of 2^-24 */
        else {
            int e;
            float m = frexpf(a, &e); /* a = m * 2^e, m in [0.5, 1) */
            long mant = lrintf((m * 2.0f - 1.0f) * 1024.0f);
            int he = e - 1 + 15;
            if (mant == 1024) {
                mant = 0;
                he++;
            }
            h = he >= 31 ? 0x7c00 : (uint16_t)((he << 10) | mant);
        }
        *(uint16_t *)p = (uint16_t)(sign | h);
        break;
    }
    default: break;
    }
}

#endif

/* CPU optimizer and clipping kernels: one OpenMP loop over a contiguous span, the
 * per-element math coming from kernels/optim_math.h (shared with CUDA). */
#include "optim.h"

#include <math.h>

/* Below this many elements threads cost more than they save. */
#define KILN_OPTIM_PAR_MIN 32768

void kiln_cpu_sgd_update(kiln_dtype dt, void *p, const void *g, void *buf, int64_t n, const kiln_sgd_hparams *h) {
    if (dt == KILN_F32) {
        float *pp = p, *bb = buf;
        const float *gg = g;
#pragma omp parallel for schedule(static) if (n >= KILN_OPTIM_PAR_MIN)
        for (int64_t i = 0; i < n; i++) kiln_sgd_update_f32(pp + i, gg[i], bb ? bb + i : NULL, h);
    } else {
        double *pp = p, *bb = buf;
        const double *gg = g;
#pragma omp parallel for schedule(static) if (n >= KILN_OPTIM_PAR_MIN)
        for (int64_t i = 0; i < n; i++) kiln_sgd_update_f64(pp + i, gg[i], bb ? bb + i : NULL, h);
    }
}

void kiln_cpu_adam_update(kiln_dtype dt, void *p, const void *g, void *m, void *v, void *vmax, int64_t n,
                          const kiln_adam_hparams *h) {
    if (dt == KILN_F32) {
        float *pp = p, *mm = m, *vv = v, *xx = vmax;
        const float *gg = g;
#pragma omp parallel for schedule(static) if (n >= KILN_OPTIM_PAR_MIN)
        for (int64_t i = 0; i < n; i++) kiln_adam_update_f32(pp + i, gg[i], mm + i, vv + i, xx ? xx + i : NULL, h);
    } else {
        double *pp = p, *mm = m, *vv = v, *xx = vmax;
        const double *gg = g;
#pragma omp parallel for schedule(static) if (n >= KILN_OPTIM_PAR_MIN)
        for (int64_t i = 0; i < n; i++) kiln_adam_update_f64(pp + i, gg[i], mm + i, vv + i, xx ? xx + i : NULL, h);
    }
}

#define KILN_NORM_LOOP(T, ABS)                                                                     \
    do {                                                                                           \
        const T *gg = g;                                                                           \
        if (isinf(norm_type)) {                                                                    \
            double mx = 0;                                                                         \
            bool nan = false;                                                                      \
            _Pragma("omp parallel for schedule(static) reduction(max : mx) reduction(|| : nan) if (n >= KILN_OPTIM_PAR_MIN)") \
            for (int64_t i = 0; i < n; i++) {                                                      \
                double a = ABS(gg[i]);                                                             \
                if (a != a) nan = true;                                                            \
                else if (a > mx) mx = a;                                                           \
            }                                                                                      \
            return nan ? NAN : mx;                                                                 \
        }                                                                                          \
        double s = 0;                                                                              \
        if (norm_type == 2) {                                                                      \
            _Pragma("omp parallel for schedule(static) reduction(+ : s) if (n >= KILN_OPTIM_PAR_MIN)") \
            for (int64_t i = 0; i < n; i++) s += (double)gg[i] * (double)gg[i];                    \
        } else {                                                                                   \
            _Pragma("omp parallel for schedule(static) reduction(+ : s) if (n >= KILN_OPTIM_PAR_MIN)") \
            for (int64_t i = 0; i < n; i++) s += pow(ABS((double)gg[i]), norm_type);               \
        }                                                                                          \
        return s;                                                                                  \
    } while (0)

double kiln_cpu_norm_accumulate(kiln_dtype dt, const void *g, int64_t n, double norm_type) {
    if (dt == KILN_F32) KILN_NORM_LOOP(float, fabs);
    KILN_NORM_LOOP(double, fabs);
}

void kiln_cpu_scale(kiln_dtype dt, void *g, int64_t n, double scale) {
    if (dt == KILN_F32) {
        float *gg = g, s = (float)scale;
#pragma omp parallel for schedule(static) if (n >= KILN_OPTIM_PAR_MIN)
        for (int64_t i = 0; i < n; i++) gg[i] *= s;
    } else {
        double *gg = g;
#pragma omp parallel for schedule(static) if (n >= KILN_OPTIM_PAR_MIN)
        for (int64_t i = 0; i < n; i++) gg[i] *= scale;
    }
}

void kiln_cpu_clamp(kiln_dtype dt, void *g, int64_t n, double lo, double hi) {
    if (dt == KILN_F32) {
        float *gg = g, l = (float)lo, u = (float)hi;
#pragma omp parallel for schedule(static) if (n >= KILN_OPTIM_PAR_MIN)
        for (int64_t i = 0; i < n; i++) gg[i] = gg[i] < l ? l : (gg[i] > u ? u : gg[i]);
    } else {
        double *gg = g;
#pragma omp parallel for schedule(static) if (n >= KILN_OPTIM_PAR_MIN)
        for (int64_t i = 0; i < n; i++) gg[i] = gg[i] < lo ? lo : (gg[i] > hi ? hi : gg[i]);
    }
}

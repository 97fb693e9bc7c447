/* Per-element optimizer updates shared by the CPU kernels and (later) the CUDA
 * kernels, in the order torch's single-tensor sgd/adam/adamw apply their in-place
 * ops, with each python-float coefficient rounded to the tensor's dtype as torch
 * does, so float32 results agree with torch to the last bit or two. Plain C, also
 * valid CUDA C++. */
#ifndef KILN_OPTIM_MATH_H
#define KILN_OPTIM_MATH_H

#include <math.h>

#ifdef __CUDACC__
#define KILN_OPTIM_HD static __host__ __device__ __forceinline__
#else
#define KILN_OPTIM_HD static inline
#endif

/* One sgd step's coefficients. first: the momentum buffer does not exist yet and is
 * initialised to the (decayed) gradient, as torch.clone(d_p). */
typedef struct {
    double lr, momentum, dampening, weight_decay;
    int nesterov, maximize, first;
} kiln_sgd_hparams;

/* One adam/adamw step's coefficients; step_size = lr / (1 - beta1^t) and
 * bc2_sqrt = sqrt(1 - beta2^t) are computed once per step on the host. */
typedef struct {
    double lr, beta1, beta2, eps, weight_decay;
    int decoupled, amsgrad, maximize;
    double step_size, bc2_sqrt;
} kiln_adam_hparams;

/* Each update is written out for float and double; the body they share is a macro that
 * reads the parameters by name and takes the type (and its sqrt). */
#define KILN_SGD_UPDATE_BODY(T)                                                                    \
    T pv = *p;                                                                                     \
    if (h->maximize) g = -g;                                                                       \
    if (h->weight_decay != 0) g = g + (T)h->weight_decay * pv;                                     \
    if (h->momentum != 0) {                                                                        \
        T b = h->first ? g : *buf * (T)h->momentum + (T)(1 - h->dampening) * g;                    \
        *buf = b;                                                                                  \
        g = h->nesterov ? g + (T)h->momentum * b : b;                                              \
    }                                                                                              \
    *p = pv + (T)(-h->lr) * g

KILN_OPTIM_HD void kiln_sgd_update_f32(float *p, float g, float *buf, const kiln_sgd_hparams *h) {
    KILN_SGD_UPDATE_BODY(float);
}
KILN_OPTIM_HD void kiln_sgd_update_f64(double *p, double g, double *buf, const kiln_sgd_hparams *h) {
    KILN_SGD_UPDATE_BODY(double);
}

/* vmax is read and written only with amsgrad. */
#define KILN_ADAM_UPDATE_BODY(T, SQRT)                                                             \
    T pv = *p;                                                                                     \
    if (h->maximize) g = -g;                                                                       \
    if (h->decoupled) pv = pv * (T)(1 - h->lr * h->weight_decay);                                  \
    else if (h->weight_decay != 0) g = g + (T)h->weight_decay * pv;                                \
    T mv = *m * (T)h->beta1 + (T)(1 - h->beta1) * g;                                               \
    T vv = *v * (T)h->beta2 + (T)(1 - h->beta2) * g * g;                                           \
    *m = mv;                                                                                       \
    *v = vv;                                                                                       \
    if (h->amsgrad) {                                                                              \
        T old = *vmax; /* torch.maximum: NaN wins */                                               \
        vv = (old != old || vv != vv) ? (T)NAN : (old > vv ? old : vv);                            \
        *vmax = vv;                                                                                \
    }                                                                                              \
    T denom = SQRT(vv) / (T)h->bc2_sqrt + (T)h->eps;                                               \
    *p = pv + (T)(-h->step_size) * mv / denom

KILN_OPTIM_HD void kiln_adam_update_f32(float *p, float g, float *m, float *v, float *vmax,
                                        const kiln_adam_hparams *h) {
    KILN_ADAM_UPDATE_BODY(float, sqrtf);
}
KILN_OPTIM_HD void kiln_adam_update_f64(double *p, double g, double *m, double *v, double *vmax,
                                        const kiln_adam_hparams *h) {
    KILN_ADAM_UPDATE_BODY(double, sqrt);
}

#endif

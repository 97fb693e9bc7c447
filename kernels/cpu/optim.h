/* CPU kernels of the optimizers and of gradient clipping (optimizer.c; used by
 * optim/optimizer.c and optim/clip.c): plain loops over one contiguous span (a whole
 * parameter arena when the parameters are adjacent, else one parameter), parallelized
 * with OpenMP over elements. f32 and f64. */
#ifndef KILN_CPU_OPTIM_H
#define KILN_CPU_OPTIM_H

#include "../../core/internal.h"
#include "../optim_math.h"

/* p -= update, buf is the momentum span (unused without momentum). */
void kiln_cpu_sgd_update(kiln_dtype dt, void *p, const void *g, void *buf, int64_t n, const kiln_sgd_hparams *h);
/* vmax is the max_exp_avg_sq span, used only with amsgrad. */
void kiln_cpu_adam_update(kiln_dtype dt, void *p, const void *g, void *m, void *v, void *vmax, int64_t n,
                          const kiln_adam_hparams *h);
/* sum |g|^norm_type over the span, or max |g| when norm_type is infinite (in double). */
double kiln_cpu_norm_accumulate(kiln_dtype dt, const void *g, int64_t n, double norm_type);
/* g *= (dtype)scale */
void kiln_cpu_scale(kiln_dtype dt, void *g, int64_t n, double scale);
/* g = clamp(g, lo, hi); NaN stays NaN as torch.clamp */
void kiln_cpu_clamp(kiln_dtype dt, void *g, int64_t n, double lo, double hi);

#endif

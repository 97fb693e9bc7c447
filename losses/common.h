/* Checks and helpers shared by the loss front-ends (the files under losses/): target shape and
 * dtype rules with messages that name both shapes and the fix, reductions, and
 * expanding optional weights to the input's shape. */
#ifndef KILN_LOSSES_COMMON_H
#define KILN_LOSSES_COMMON_H

#include "../core/internal.h"
#include "../kernels/losses_math.h"

bool kiln__loss_check_reduction(const char *op, kiln_reduction r);
/* input float (f32, f64 on the CPU); target of the same shape and dtype. */
bool kiln__loss_check_pair(const char *op, kiln_tensor *input, kiln_tensor *target);
/* t (NULL allowed: returns NULL, *ok stays true) broadcast to like's shape as a
 * stride-0 view; an error naming op, what and both shapes when it does not fit. */
kiln_tensor *kiln__loss_expand(const char *op, const char *what, kiln_tensor *t, kiln_tensor *like,
                               const char *hint, bool *ok);
/* none -> t, mean -> mean of every element, sum -> sum. */
kiln_tensor *kiln__loss_reduce(kiln_tensor *t, kiln_reduction r);
/* Copies t's values (any device, strides, numeric dtype) to a malloc'd double array. */
double *kiln__loss_host_values(const char *op, kiln_tensor *t);
/* The output of a loss op: the input's shape for 'none', 0-d otherwise. */
kiln_tensor *kiln__loss_new_out(kiln_tensor *input, int ndim, const int64_t *shape, kiln_reduction r);
/* Class indices (any device) in [0,C), or equal to ignore_index when allowed; the
 * error names the bad value and C. Defined in cross_entropy.c. */
bool kiln__loss_check_class_indices(const char *op, kiln_tensor *target, int64_t C, bool allow_ignore,
                                    int64_t ignore_index);
/* Records an error unless t does not require grad (for inputs kiln does not differentiate). */
bool kiln__loss_no_grad_input(const char *op, const char *what, kiln_tensor *t);

#endif

/* Private to layers/: the conv ops shared by conv2d.c and conv_transpose2d.c, and
 * the checks both front-ends make. */
#ifndef KILN_LAYERS_CONV_INTERNAL_H
#define KILN_LAYERS_CONV_INTERNAL_H

#include "../core/internal.h"
#include "layers_attrs.h"

extern const kiln_op_def kiln_op_conv2d;
extern const kiln_op_def kiln_op_conv2d_backward_input;
extern const kiln_op_def kiln_op_conv2d_backward_weight;

/* x, weight (and bias when not NULL) are float tensors on one device, x and weight
 * 4-d, bias 1-d of size bias_size. Records an error naming op otherwise. */
bool kiln__conv_check_tensors(const char *op, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b);
/* Bias size against the output channels. */
bool kiln__conv_check_bias(const char *op, kiln_tensor *b, int64_t channels);
/* stride, dilation and groups >= 1, padding >= 0 (pairs of height and width). */
bool kiln__conv_check_params(const char *op, const int64_t *stride, const int64_t *padding,
                             const int64_t *dilation, int64_t groups);
/* conv2d's checks, torch's output size and "same" padding: fills attrs and the
 * output shape (4 values), or records an error naming op and returns false. */
bool kiln__conv2d_prepare(const char *op, kiln_tensor *x, kiln_tensor *w, kiln_tensor *b,
                          const kiln_conv2d_params *p, kiln_conv2d_attrs *attrs, int64_t *shape);
/* The bias gradient: g summed over N, H and W. */
kiln_tensor *kiln__conv_bias_grad(kiln_tensor *g);

#endif

/* kiln layers API: the functional layer ops (linear, batch norm, dropout, and the
 * convolution family on NCHW tensors: conv2d, conv_transpose2d, max/avg pooling,
 * nearest/bilinear upsampling), forward and backward, with PyTorch's semantics, weight
 * layouts and defaults. Module objects (include/kiln/module.h) are built on them. */
#ifndef KILN_LAYERS_H
#define KILN_LAYERS_H

#include "core.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- linear, batch norm, dropout ---------------------------------------------------
 * linear: y = x·Wᵀ + b over any leading batch axes, weight (out_features,
 * in_features) as torch, bias (out_features) or NULL. One BLAS product for the whole
 * batch; backward dX = dY·W, dW = dYᵀ·X, db = column sums of dY. A 1-d weight
 * (in_features) gives x @ weight as torch's F.linear: the last axis reduced, output
 * x.shape[:-1] (0-d for 1-d x), with a 0-d or one-value bias or NULL. */
KILN_API kiln_tensor *kiln_linear(kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias);

/* batch_norm2d over x (N, C, H, W), as torch.nn.functional.batch_norm. training:
 * normalizes with the batch mean and biased variance and, when running_mean and
 * running_var are given, updates them in place: running = (1-momentum)·running +
 * momentum·batch, with the unbiased variance (torch's default momentum is 0.1).
 * Eval: normalizes with the running statistics (required). weight/bias: per-channel
 * affine, either may be NULL. torch's default eps is 1e-5. */
KILN_API kiln_tensor *kiln_batch_norm2d(kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias,
                                        kiln_tensor *running_mean, kiln_tensor *running_var, bool training,
                                        double momentum, double eps);

/* batch_norm: kiln_batch_norm2d's semantics on x (N, C), (N, C, L) (torch's BatchNorm1d
 * input) or (N, C, H, W), as torch.nn.functional.batch_norm: statistics per channel over
 * N and every axis after C (unbiased over those N·L... values in the running variance). */
KILN_API kiln_tensor *kiln_batch_norm(kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias,
                                      kiln_tensor *running_mean, kiln_tensor *running_var, bool training,
                                      double momentum, double eps);

/* dropout: in training, zeroes each element with probability p (in [0, 1]; p = 1
 * gives zeros) and scales the others by 1/(1-p); the mask comes from the global
 * Philox generator (kiln_manual_seed), so it is the same on every device. In eval,
 * or with p = 0, returns x itself. */
KILN_API kiln_tensor *kiln_dropout(kiln_tensor *x, double p, bool training);

/* ---- convolution ------------------------------------------------------------------
 * Index 0 of each pair is the height axis, 1 the width axis. */
typedef struct {
    int64_t stride[2];   /* >= 1 */
    int64_t padding[2];  /* zeros added on both sides; ignored when padding_same */
    int64_t dilation[2]; /* >= 1 */
    int64_t groups;      /* >= 1; in and out channels must both divide by it */
    /* torch's padding="same": the output keeps the input's size (stride must be 1);
     * an odd total padding puts the extra row/column at the bottom/right, as torch. */
    bool padding_same;
} kiln_conv2d_params;

typedef struct {
    int64_t stride[2];
    int64_t padding[2];        /* dilation*(k-1) - padding zeros on each side of the dilated input */
    int64_t output_padding[2]; /* extra rows/columns on the bottom/right; < stride or < dilation */
    int64_t dilation[2];
    int64_t groups;
} kiln_conv_transpose2d_params;

/* torch's defaults: stride 1, padding 0, dilation 1, groups 1 (output_padding 0). */
KILN_API kiln_conv2d_params kiln_conv2d_params_default(void);
KILN_API kiln_conv_transpose2d_params kiln_conv_transpose2d_params_default(void);

/* y = conv2d(x, weight) + bias, as torch.nn.functional.conv2d.
 * x (N, C_in, H, W); weight (C_out, C_in/groups, kH, kW); bias (C_out) or NULL;
 * y (N, C_out, H_out, W_out), H_out = (H + 2p - d(kH-1) - 1)/s + 1.
 * p NULL means the defaults. Differentiable in x, weight and bias. */
KILN_API kiln_tensor *kiln_conv2d(kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias,
                                  const kiln_conv2d_params *p);

/* The transposed convolution (the gradient of conv2d with respect to its input), as
 * torch.nn.functional.conv_transpose2d. x (N, C_in, H, W); weight
 * (C_in, C_out/groups, kH, kW); bias (C_out) or NULL; y (N, C_out, H_out, W_out),
 * H_out = (H-1)s - 2p + d(kH-1) + output_padding + 1. */
KILN_API kiln_tensor *kiln_conv_transpose2d(kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias,
                                            const kiln_conv_transpose2d_params *p);

/* ---- pooling ------------------------------------------------------------------------ */
typedef struct {
    int64_t kernel[2];   /* >= 1 */
    int64_t stride[2];   /* 0 means "same as kernel" (torch's stride=None) */
    int64_t padding[2];  /* at most half the (dilated) kernel, as torch requires */
    int64_t dilation[2]; /* max pooling only; 0 or 1 for avg pooling */
    bool ceil_mode;      /* round the output size up (torch's default: false) */
    /* avg pooling only: padded zeros count in the divisor (torch's default: true) */
    bool count_include_pad;
} kiln_pool2d_params;

/* torch's defaults for a kernel of kh x kw: stride = kernel, padding 0, dilation 1,
 * ceil_mode false, count_include_pad true. */
KILN_API kiln_pool2d_params kiln_pool2d_params_default(int64_t kh, int64_t kw);

/* Max over each window, padding counting as -inf (NaN propagates). The gradient goes
 * to the window's maximal element, the first one in row-major order on ties. */
KILN_API kiln_tensor *kiln_max_pool2d(kiln_tensor *x, const kiln_pool2d_params *p);
/* Mean over each window (divisor as torch: the window clipped to the padded input
 * when count_include_pad, to the real input otherwise). */
KILN_API kiln_tensor *kiln_avg_pool2d(kiln_tensor *x, const kiln_pool2d_params *p);

/* ---- upsampling -------------------------------------------------------------------
 * The _size forms give the output size; the _scale forms give a scale factor, the
 * output being floor(in * scale) and the source index computed from 1/scale, as
 * torch 1.13's interpolate(scale_factor=...) does with recompute_scale_factor left at
 * its default (None): also where floor(in * scale) is in or 2 in (1.2 or 2.2 on 3
 * pixels). recompute_scale_factor=True is the _size form with that output size. */

/* torch's mode='nearest' on NCHW input: source index floor(dst * in/out) (or dst / scale),
 * the product in the dtype taken through float as torch does; never the equal/doubled
 * size shortcut of torch's CPU backward and channels-last forward (kiln's backward is the
 * adjoint of this forward; docs/ARCHITECTURE.md). */
KILN_API kiln_tensor *kiln_upsample_nearest2d(kiln_tensor *x, int64_t out_h, int64_t out_w);
KILN_API kiln_tensor *kiln_upsample_nearest2d_scale(kiln_tensor *x, double scale_h, double scale_w);
/* mode='bilinear'. align_corners true maps the corner pixels' centres onto each other
 * (src = dst*(in-1)/(out-1)); false maps pixel areas (src = (dst+0.5)*in/out - 0.5, or
 * 1/scale for in/out, clamped at 0). An axis whose size does not change is copied as it
 * is, whatever the scale factor, as torch. */
KILN_API kiln_tensor *kiln_upsample_bilinear2d(kiln_tensor *x, int64_t out_h, int64_t out_w, bool align_corners);
KILN_API kiln_tensor *kiln_upsample_bilinear2d_scale(kiln_tensor *x, double scale_h, double scale_w,
                                                     bool align_corners);

/* ---- fused inference -------------------------------------------------------------
 * relu(conv2d(x, weight, bias)). When nothing records for autograd (no-grad mode, or
 * no input requires grad) it runs as one op: on CUDA one cuDNN plan (convolution,
 * bias and ReLU fused) where cuDNN fuses them, else the convolution with a fused
 * bias+ReLU epilogue; when recording, it is the composition kiln_relu(kiln_conv2d(...)).
 * kiln's ReLU keeps NaN (torch.relu); oneDNN's fused ReLU post-op (CPU f32) is
 * max(x, 0) and turns a NaN into 0, and cuDNN's fused graph may too. */
KILN_API kiln_tensor *kiln_conv2d_bias_relu(kiln_tensor *x, kiln_tensor *weight, kiln_tensor *bias,
                                            const kiln_conv2d_params *p);

#ifdef __cplusplus
}
#endif
#endif

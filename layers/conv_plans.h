/* Private: the switches and counters behind the public convolution-plan controls of
 * include/kiln/cuda.h (layers/conv_plans.c, every build), updated by the cuDNN code
 * (kernels/cuda/conv2d_cudnn.c, CUDA builds), and the fused conv+bias(+ReLU) op. */
#ifndef KILN_LAYERS_CONV_PLANS_H
#define KILN_LAYERS_CONV_PLANS_H

#include "layers_attrs.h"
#include <stdbool.h>
#include <stddef.h>

/* conv2d_bias_act: y = act(conv2d(x, w) + b), inference only (not differentiable). */
typedef struct {
    kiln_conv2d_attrs conv;
    int32_t relu;
} kiln_conv2d_bias_act_attrs;

typedef enum {
    KILN_CONV_STAT_HIT,
    KILN_CONV_STAT_MISS,
    KILN_CONV_STAT_ENTRIES,
    KILN_CONV_STAT_CUDNN_RUN,
    KILN_CONV_STAT_FALLBACK_RUN,
    KILN_CONV_STAT_FUSED_RUN,
    KILN_CONV_STAT_AUTOTUNED,
    KILN_CONV_STAT_SKIPPED,
    KILN_CONV_STAT_WORKSPACE,
    KILN_CONV_STAT_COUNT
} kiln_conv_stat;

void kiln__conv_stat_add(kiln_conv_stat which, int64_t delta);
/* The switches, each read once from the environment and then settable. */
bool kiln__conv_autotune(void);
size_t kiln__conv_workspace_limit(void);
bool kiln__conv_cudnn_enabled(void);

#endif

/* The geometry of one 2-d convolution, planned once per call by every backend: the CPU
 * kernels (kernels/cpu/conv2d.c, conv2d_onednn.c), the CUDA ones (kernels/cuda/conv2d.cu,
 * conv2d_cudnn.c) and the front-end's output size (layers/conv2d.c), so they agree on it by
 * construction. Plain C, also valid C++; shapes in elements, no kiln_tensor. */
#ifndef KILN_CONV2D_GEOMETRY_H
#define KILN_CONV2D_GEOMETRY_H

#include <stdint.h>

#include "../layers/layers_attrs.h"

/* The three passes of a convolution, by the names of the ops (conv2d,
 * conv2d_backward_input, conv2d_backward_weight). oneDNN calls the backward ones
 * backward-data and backward-weights, cuDNN backward-data and backward-filter. */
typedef enum { KILN_CONV_FORWARD, KILN_CONV_BACKWARD_INPUT, KILN_CONV_BACKWARD_WEIGHT } kiln_conv_pass;

static inline const char *kiln_conv_pass_name(kiln_conv_pass pass) {
    return pass == KILN_CONV_FORWARD ? "forward" : pass == KILN_CONV_BACKWARD_INPUT ? "backward_input"
                                                                                    : "backward_weight";
}

/* One conv2d seen from its forward side, whichever pass writes which tensor: input
 * (n, cin, h, w), weight (cout, cin/groups, kh, kw), output (n, cout, ho, wo); ph/pw the
 * top/left padding. The first thirteen fields are one sample's (all CUDA's im2col and
 * col2im read). All int64, so oneDNN's cache key, which holds one, has no padding bytes
 * and compares with memcmp. */
typedef struct {
    int64_t cin, h, w, ho, wo, kh, kw;
    int64_t sh, sw, ph, pw, dh, dw;
    int64_t n, cout, groups;
    /* derived by kiln_conv_geometry_plan */
    int64_t cin_g, cout_g; /* channels per group */
    int64_t K, L;          /* one group's GEMM: K = cin_g*kh*kw column rows, L = ho*wo columns */
    int64_t col;           /* values of one sample's column matrix: cin*kh*kw*L */
    int64_t ph_end, pw_end; /* the least bottom/right padding that gives ho/wo (may be < 0) */
    int64_t pointwise; /* 1x1, stride 1, unpadded, same size: the sample is its own column matrix */
} kiln_conv_geometry;

/* Kernel extent at a dilation: dil*(k-1) + 1 pixels. */
static inline int64_t kiln_conv_span(int64_t k, int64_t dil) { return dil * (k - 1) + 1; }

/* torch's output size along an axis from the padded input and the kernel's span. */
static inline int64_t kiln_conv_output_size(int64_t padded, int64_t span, int64_t stride) {
    return (padded - span) / stride + 1;
}

/* The geometry of at between x (n, cin, h, w), weight w (cout, cin/groups, kh, kw) and y
 * (n, cout, ho, wo), shapes in the forward roles whatever the pass writes. */
static inline kiln_conv_geometry kiln_conv_geometry_plan(const int64_t *x, const int64_t *w, const int64_t *y,
                                                         const kiln_conv2d_attrs *at) {
    kiln_conv_geometry g;
    g.n = x[0], g.cin = x[1], g.h = x[2], g.w = x[3];
    g.cout = y[1], g.ho = y[2], g.wo = y[3];
    g.kh = w[2], g.kw = w[3];
    g.sh = at->stride[0], g.sw = at->stride[1], g.ph = at->pad[0], g.pw = at->pad[1];
    g.dh = at->dilation[0], g.dw = at->dilation[1], g.groups = at->groups;
    g.cin_g = g.cin / g.groups, g.cout_g = g.cout / g.groups;
    g.K = g.cin_g * g.kh * g.kw, g.L = g.ho * g.wo;
    g.col = g.cin * g.kh * g.kw * g.L;
    g.ph_end = (g.ho - 1) * g.sh + kiln_conv_span(g.kh, g.dh) - g.h - g.ph;
    g.pw_end = (g.wo - 1) * g.sw + kiln_conv_span(g.kw, g.dw) - g.w - g.pw;
    g.pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0 && g.ho == g.h &&
                  g.wo == g.w;
    return g;
}

#endif

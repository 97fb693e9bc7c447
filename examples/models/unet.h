/* U-Net-16 (issue 6's definition), built from kiln's modules for the examples,
 * benchmarks and tests. Parameter names are those of the PyTorch class in
 * tests/fixtures/gen_unet.py, so checkpoints cross over by name. */
#ifndef KILN_MODELS_UNET_H
#define KILN_MODELS_UNET_H

#include <kiln.h>

/* block(i, o) = Sequential(Conv2d(i, o, 3, padding 1), BatchNorm2d(o), ReLU,
 *                          Conv2d(o, o, 3, padding 1), BatchNorm2d(o), ReLU). */
kiln_module *unet_block_create(int64_t in_channels, int64_t out_channels, kiln_dtype dt);

/* With b = base_width (16 for U-Net-16), the children in registration order:
 *   enc1 block(in, b), enc2 block(b, 2b), enc3 block(2b, 4b), pool MaxPool2d(2),
 *   bottleneck block(4b, 8b),
 *   up3 ConvTranspose2d(8b, 4b, 2, stride 2), dec3 block(8b, 4b),
 *   up2 ConvTranspose2d(4b, 2b, 2, stride 2), dec2 block(4b, 2b),
 *   up1 ConvTranspose2d(2b, b, 2, stride 2),  dec1 block(2b, b),
 *   head Conv2d(b, out, 1).
 * Each decoder stage concatenates [up-sampled, encoder output] on the channel axis.
 * Forward maps (N, in, H, W) to logits (N, out, H, W); H and W must be multiples of 8
 * (three 2x2 poolings), otherwise the first concat fails with both shapes named.
 * U-Net-16 with 3 inputs and 1 output has 483,441 parameters, as in PyTorch. */
kiln_module *unet_create(int64_t in_channels, int64_t out_channels, int64_t base_width, kiln_dtype dt);

#endif

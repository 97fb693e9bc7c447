/* kiln image API: PNG (libpng) and JPEG (libjpeg-turbo) files read into and written
 * from (C, H, W) tensors, the layout kiln's convolutions take. Both directions are
 * 8 bits per channel; kiln images have 1 (gray), 3 (RGB) or 4 (RGBA) channels. */
#ifndef KILN_IMAGE_H
#define KILN_IMAGE_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The default pixel limit (height * width) of kiln_image_read and
 * kiln_image_read_size: 2^28 = 268,435,456 pixels (16384 x 16384), 1 GiB as an RGBA u8
 * tensor. The environment variable KILN_IMAGE_MAX_PIXELS (a decimal integer >= 1)
 * replaces it; a value that does not parse is an error of the read that looks at it. */
#define KILN_IMAGE_DEFAULT_MAX_PIXELS ((int64_t)1 << 28)

/* Reads a PNG or JPEG file into a new contiguous tensor of shape (C, H, W) on device,
 * in the current scope. The format comes from the file's first bytes, never its name.
 * dtype: KILN_U8 (the stored values, 0..255) or KILN_F32 (value / 255, in [0, 1]).
 * channels:
 *   0        as stored: 1 for gray, 3 for RGB (and palette PNGs without transparency),
 *            4 for RGBA, and 4 for gray + alpha (the gray value copied to R, G and B),
 *            so every image read can be written back;
 *   1, 3, 4  converted: RGB to gray is the ITU-R BT.601 luma Pillow's convert("L")
 *            computes, (19595 R + 38470 G + 7471 B + 2^15) >> 16; gray to RGB copies
 *            the value; alpha is dropped without compositing over any background;
 *            an opaque alpha (255) is added to images without one.
 * PNG: palette images are expanded (a tRNS chunk becomes an alpha channel), gray
 * images of 1, 2 or 4 bits are scaled to 0..255, 16-bit images are reduced to 8 bits
 * by rounding (v * 255 + 32767) / 65535, a tRNS colour key becomes an alpha channel,
 * gamma and colour profiles (gAMA, cHRM, iCCP, sRGB) are ignored: the stored values
 * are returned. Interlaced (Adam7) images are read.
 * JPEG: gray and YCbCr/RGB images (baseline, extended, progressive, arithmetic);
 * CMYK/YCCK is KILN_STATUS_FORMAT. The EXIF orientation tag is not applied: pixels
 * come in stored order. Any libjpeg warning (corrupt or missing data, which libjpeg
 * would otherwise paint gray) is an error, as is a file of more than 1000 scans.
 * NULL and an error naming the file and the reason when it cannot be opened or read
 * (KILN_STATUS_IO), is neither PNG nor JPEG, is truncated or corrupt
 * (KILN_STATUS_FORMAT), has more than the pixel limit above (KILN_STATUS_FORMAT,
 * checked from the header before any pixel memory is allocated, and saying how to
 * raise it), or for a bad argument (KILN_STATUS_INVALID_ARGUMENT, KILN_STATUS_DTYPE);
 * the device's pool failing is KILN_STATUS_OOM. */
KILN_API kiln_tensor *kiln_image_read(const char *path, int channels, kiln_dtype dtype, kiln_device device);

/* The size kiln_image_read(path, 0, ...) would return, from the header alone (no
 * pixel is decoded): *channels 1, 3 or 4 (by the rules above), *height, *width. Any of
 * the pointers may be NULL. The same errors as kiln_image_read for a file that is not
 * an image, a corrupt header or a size above the pixel limit; corruption after the
 * header is found only by a read. */
KILN_API kiln_status kiln_image_read_size(const char *path, int64_t *channels, int64_t *height, int64_t *width);

/* Writes t as an 8-bit PNG or JPEG, chosen by the path's extension, case-insensitive:
 * ".png", or ".jpg" / ".jpeg" (anything else is KILN_STATUS_INVALID_ARGUMENT).
 * t: shape (C, H, W) with C in {1, 3, 4}, or (H, W) for gray; H, W >= 1; any strides,
 * any device; dtype KILN_U8 (written as is) or KILN_F32 (clamped to [0, 1], times 255,
 * rounded to nearest; NaN is written as 0).
 * JPEG: quality 1..100 (0 means the default, 95), 4:2:0 chroma subsampling below
 * quality 90 and none (4:4:4) from 90 up, baseline, optimized Huffman tables; an
 * RGBA tensor is an error (JPEG has no alpha: drop it first with
 * kiln_slice(t, 0, 0, 3, 1)).
 * PNG: quality is ignored (it must still be 0..100); zlib level 6, adaptive filters.
 * Sizes above 65500 (JPEG) or 2^31 - 1 (PNG) are KILN_STATUS_INVALID_ARGUMENT.
 * Atomic: the image goes to a temporary file "<path>.tmp.XXXXXX" beside path, which is
 * fsync'd and renamed over path, so path holds the old file or the whole new one; on
 * any failure (e.g. KILN_STATUS_IO for a missing directory) the temporary file is
 * removed and path is untouched. A new file gets mode 0644, a replaced one keeps its
 * mode; a symbolic link at path is written through (as kiln_safetensors_save). */
KILN_API kiln_status kiln_image_write(const char *path, const kiln_tensor *t, int quality);

#ifdef __cplusplus
}
#endif
#endif

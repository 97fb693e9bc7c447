/* The PNG and JPEG codecs behind include/kiln/image.h (core/image_png.c,
 * core/image_jpeg.c) and what core/image.c hands them. A decoder returns the pixels in
 * their stored layout, interleaved (H, W, C) bytes; core/image.c converts channels and
 * lays them out as (C, H, W). */
#ifndef KILN_IMAGE_CODEC_H
#define KILN_IMAGE_CODEC_H

#include "atomic_file.h"

#include <stdint.h>
#include <stdio.h>

typedef struct {
    int channels;       /* decoded: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA */
    int64_t height, width;
    uint8_t *pixels;    /* malloc'd (H, W, channels), or NULL for a header-only read */
} kiln__image;

/* f is open at offset 0 of a file whose first bytes are the format's signature;
 * file_size its size in bytes. Decodes it (header_only: only the size), checking
 * height * width against max_pixels before any pixel memory is allocated. Errors are
 * recorded naming op and path; on failure img->pixels is NULL and nothing leaks. */
kiln_status kiln__png_decode(const char *op, const char *path, FILE *f, int64_t file_size, int64_t max_pixels,
                             bool header_only, kiln__image *img);
kiln_status kiln__jpeg_decode(const char *op, const char *path, FILE *f, int64_t file_size, int64_t max_pixels,
                              bool header_only, kiln__image *img);

/* Encode img (channels 1, 3 or 4; 1 or 3 for JPEG) into out->f. On failure an error is
 * recorded naming op and out->target; the caller aborts out. */
kiln_status kiln__png_encode(const char *op, kiln__atomic_file *out, const kiln__image *img);
kiln_status kiln__jpeg_encode(const char *op, kiln__atomic_file *out, const kiln__image *img, int quality);

/* A pixel count above which the read is refused (as kiln_image_read documents). */
#define KILN__PIXEL_LIMIT_HINT "set KILN_IMAGE_MAX_PIXELS to a larger pixel count to read it"

#endif

/* PNG in and out through libpng: 8-bit gray or RGB, from bytes, floats or tensors.
 * libpng reports errors by longjmp; each call keeps everything it allocated where the
 * jump target can free it, so a corrupt or truncated file is an error value, not a crash. */
#include "kiln_examples.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#ifdef KILN_EXAMPLES_HAVE_PNG
#include <png.h>
#include <setjmp.h>

#define MAX_SIDE 16384 /* a corrupt header must not make us allocate gigabytes */

typedef struct {
    char msg[200];
} png_err;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_err *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    png_longjmp(png, 1);
}
static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png, (void)msg; /* warnings (e.g. a bad ancillary chunk) do not stop a read */
}
#endif

static kiln_status check_dims(const char *fn, const char *path, const void *data, int channels, int H, int W) {
    if (!path || !data)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: %s is NULL", fn, path ? "data" : "path");
    if (channels != 1 && channels != 3)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: %d channels for '%s'; PNGs here are 1 (gray) or 3 (RGB)",
                              fn, channels, path);
    if (H <= 0 || W <= 0 || H > 65535 || W > 65535)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: image size %dx%d for '%s' is outside 1..65535", fn, H, W,
                              path);
    return KILN_STATUS_OK;
}

kiln_status kiln_png_write_u8(const char *path, const uint8_t *data, int channels, int H, int W) {
    kiln_status st = check_dims("kiln_png_write_u8", path, data, channels, H, W);
    if (st) return st;
#ifndef KILN_EXAMPLES_HAVE_PNG
    return kiln_set_error(KILN_STATUS_NOT_IMPLEMENTED,
                          "kiln_png_write_u8: built without libpng; install libpng-dev and rebuild to write '%s'", path);
#else
    FILE *f = fopen(path, "wb");
    if (!f)
        return kiln_set_error(KILN_STATUS_IO, "kiln_png_write_u8: cannot create '%s': %s", path, strerror(errno));
    png_err err = {""};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        fclose(f);
        return kiln_set_error(KILN_STATUS_OOM, "kiln_png_write_u8: out of memory starting libpng for '%s'", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return kiln_set_error(KILN_STATUS_IO, "kiln_png_write_u8: writing '%s' failed: %s", path, err.msg);
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, 8, channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < H; y++) png_write_row(png, data + (size_t)y * W * channels);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    /* fclose flushes: a full disk shows up here, not in libpng. */
    if (fclose(f) != 0)
        return kiln_set_error(KILN_STATUS_IO, "kiln_png_write_u8: finishing '%s' failed: %s", path, strerror(errno));
    return KILN_STATUS_OK;
#endif
}

kiln_status kiln_png_write_f32(const char *path, const float *data, int channels, int H, int W) {
    kiln_status st = check_dims("kiln_png_write_f32", path, data, channels, H, W);
    if (st) return st;
    size_t HW = (size_t)H * W;
    uint8_t *bytes = malloc(HW * channels);
    if (!bytes) return kiln_set_error(KILN_STATUS_OOM, "kiln_png_write_f32: out of memory for %dx%d '%s'", H, W, path);
    for (int c = 0; c < channels; c++)
        for (size_t p = 0; p < HW; p++) {
            float v = data[c * HW + p];
            v = v > 0 ? (v < 1 ? v : 1) : 0; /* NaN lands on 0 too */
            bytes[p * channels + c] = (uint8_t)(v * 255.0f + 0.5f);
        }
    st = kiln_png_write_u8(path, bytes, channels, H, W);
    free(bytes);
    return st;
}

kiln_status kiln_png_read_u8(const char *path, int want_channels, uint8_t **data, int *channels, int *H, int *W) {
    if (!data || !path)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_png_read_u8: %s is NULL", path ? "data" : "path");
    *data = NULL;
    if (want_channels != 0 && want_channels != 1 && want_channels != 3)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT,
                              "kiln_png_read_u8: want_channels is %d; use 0 (as stored), 1 (gray) or 3 (RGB)",
                              want_channels);
#ifndef KILN_EXAMPLES_HAVE_PNG
    (void)channels, (void)H, (void)W;
    return kiln_set_error(KILN_STATUS_NOT_IMPLEMENTED,
                          "kiln_png_read_u8: built without libpng; install libpng-dev and rebuild to read '%s'", path);
#else
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_set_error(KILN_STATUS_IO, "kiln_png_read_u8: cannot open '%s': %s", path, strerror(errno));
    unsigned char sig[8];
    size_t got = fread(sig, 1, sizeof sig, f);
    if (got < sizeof sig || png_sig_cmp(sig, 0, sizeof sig)) {
        fclose(f);
        return kiln_set_error(KILN_STATUS_FORMAT, "kiln_png_read_u8: '%s' is not a PNG file (%s)", path,
                              got < sizeof sig ? "shorter than the 8-byte signature" : "wrong signature");
    }
    png_err err = {""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        fclose(f);
        return kiln_set_error(KILN_STATUS_OOM, "kiln_png_read_u8: out of memory starting libpng for '%s'", path);
    }
    /* Written after setjmp and needed by the error path: volatile, so longjmp keeps them. */
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        return kiln_set_error(KILN_STATUS_FORMAT, "kiln_png_read_u8: '%s' is corrupt or truncated: %s", path,
                              strcmp(err.msg, "Read Error") == 0 ? "the file ends early" : err.msg);
    }
    png_init_io(png, f);
    png_set_sig_bytes(png, (int)sizeof sig);
    png_set_user_limits(png, MAX_SIDE, MAX_SIDE);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), ctype = png_get_color_type(png, info);
    /* Everything becomes 8-bit gray or RGB without alpha. */
    if (depth == 16) png_set_scale_16(png);
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (ctype & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    int stored = (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA) ? 1 : 3;
    int out = want_channels ? want_channels : stored;
    if (out == 3 && stored == 1) png_set_gray_to_rgb(png);
    if (out == 1 && stored == 3) png_set_rgb_to_gray_fixed(png, 1, -1, -1); /* libpng's default weights */
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (rowbytes != (size_t)w * out) png_error(png, "unexpected row size after conversion");
    pixels = malloc((size_t)h * rowbytes);
    rows = malloc((size_t)h * sizeof(png_bytep));
    if (!pixels || !rows) png_error(png, "out of memory for the pixels");
    for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL); /* checks the rest of the file up to IEND: truncation shows here */
    free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    *data = pixels;
    if (channels) *channels = out;
    if (H) *H = (int)h;
    if (W) *W = (int)w;
    return KILN_STATUS_OK;
#endif
}

kiln_status kiln_png_read_f32(const char *path, int want_channels, float **data, int *channels, int *H, int *W) {
    if (!data) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_png_read_f32: data is NULL");
    *data = NULL;
    uint8_t *bytes;
    int c = 0, h = 0, w = 0;
    kiln_status st = kiln_png_read_u8(path, want_channels, &bytes, &c, &h, &w);
    if (st) return st;
    size_t HW = (size_t)h * w;
    float *f = malloc(HW * c * sizeof(float));
    if (!f) {
        free(bytes);
        return kiln_set_error(KILN_STATUS_OOM, "kiln_png_read_f32: out of memory for %dx%d '%s'", h, w, path);
    }
    for (int k = 0; k < c; k++)
        for (size_t p = 0; p < HW; p++) f[k * HW + p] = bytes[p * c + k] * (1.0f / 255.0f);
    free(bytes);
    *data = f;
    if (channels) *channels = c;
    if (H) *H = h;
    if (W) *W = w;
    return KILN_STATUS_OK;
}

kiln_tensor *kiln_png_read_tensor(const char *path, int want_channels, kiln_device dev) {
    float *px;
    int c = 0, h = 0, w = 0;
    if (kiln_png_read_f32(path, want_channels, &px, &c, &h, &w)) return NULL;
    kiln_tensor *t = kiln_tensor_from_host(px, 3, (int64_t[]){c, h, w}, KILN_F32, dev);
    free(px);
    return t;
}

kiln_status kiln_png_write_tensor(const char *path, kiln_tensor *t) {
    if (!t) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_png_write_tensor: tensor is NULL (an earlier op failed?)");
    int nd = kiln_tensor_ndim(t);
    int64_t c = nd == 3 ? kiln_tensor_size(t, 0) : 1;
    if ((nd != 2 && nd != 3) || (c != 1 && c != 3)) {
        char b[96];
        return kiln_set_error(KILN_STATUS_SHAPE,
                              "kiln_png_write_tensor: got %s for '%s'; give (C,H,W) with C = 1 or 3, or (H,W)",
                              kiln_tensor_describe(t, b, sizeof b), path ? path : "(null)");
    }
    int64_t h = kiln_tensor_size(t, -2), w = kiln_tensor_size(t, -1);
    kiln_no_grad_begin(); /* a picture of a prediction is no part of its graph */
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *f = kiln_tensor_dtype(t) == KILN_F32 ? t : kiln_tensor_cast(t, KILN_F32);
    float *px = malloc((size_t)(c * h * w) * sizeof(float));
    kiln_status st = !f ? kiln_last_status()
                     : !px ? kiln_set_error(KILN_STATUS_OOM, "kiln_png_write_tensor: out of memory")
                           : kiln_tensor_to_host(f, px, (size_t)(c * h * w) * sizeof(float));
    if (!st) st = kiln_png_write_f32(path, px, (int)c, (int)h, (int)w);
    free(px);
    kiln_scope_end(s);
    kiln_no_grad_end();
    return st;
}

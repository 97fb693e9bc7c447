/* PNG through libpng (core/image_codec.h). libpng reports errors by longjmp to the
 * setjmp in each call; everything a call allocates lives in volatile locals the jump
 * target frees, so a corrupt or truncated file is an error value, never a leak. */
#include "image_codec.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/* The largest deflate expansion: a 258-byte match coded in 2 bits. A file with less
 * compressed data than its pixels / this is truncated however it was made, so a
 * hostile 100-byte header declaring a gigapixel costs no gigabyte. */
#define DEFLATE_MAX_RATIO 1032

typedef struct {
    char msg[200];
    FILE *f;    /* the encoder's file */
    int errnum; /* errno of a failed write or flush */
} png_ctx;

static void on_error(png_structp png, png_const_charp msg) {
    png_ctx *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    png_longjmp(png, 1);
}
/* Warnings (a bad ancillary chunk kiln skips anyway) do not stop a read. */
static void on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

/* The channels kiln decodes a file to: palette and colour-key transparency (tRNS)
 * become RGB(A) / gray + alpha. */
static int decoded_channels(int ctype, bool trns) {
    switch (ctype) {
    case PNG_COLOR_TYPE_GRAY: return trns ? 2 : 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_PALETTE:
    case PNG_COLOR_TYPE_RGB: return trns ? 4 : 3;
    default: return 4;
    }
}

kiln_status kiln__png_decode(const char *op, const char *path, FILE *f, int64_t file_size, int64_t max_pixels,
                             bool header_only, kiln__image *img) {
    png_ctx ctx = {"", NULL, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        return kiln__error(KILN_STATUS_OOM, "%s: out of host memory starting libpng for '%s'", op, path);
    }
    /* Written after setjmp and read by the error path: volatile, so longjmp keeps them. */
    uint8_t *volatile pixels = NULL;
    volatile kiln_status own = KILN_STATUS_OK; /* an error recorded here, not by libpng */
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        png_destroy_read_struct(&png, &info, NULL);
        if (own != KILN_STATUS_OK) return own;
        return kiln__error(KILN_STATUS_FORMAT, "%s: '%s' is a corrupt or truncated PNG: %s", op, path,
                           strcmp(ctx.msg, "Read Error") == 0 ? "the file ends early" : ctx.msg);
    }
    png_init_io(png, f);
    /* Only the chunks that make the picture are read (IHDR, PLTE, tRNS, IDAT): text,
     * ICC profiles, gamma and the rest are skipped unread, so a chunk that claims
     * gigabytes costs nothing and the stored values come back unchanged. */
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    png_set_chunk_cache_max(png, 64);
    png_set_user_limits(png, 0x7fffffffu, 0x7fffffffu); /* the pixel limit is checked below */
    png_set_benign_errors(png, 0); /* e.g. "Extra compressed data": corrupt data is an error */
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int depth = png_get_bit_depth(png, info), ctype = png_get_color_type(png, info);
    bool trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    int stored_channels = png_get_channels(png, info); /* in the file: 1 for palette */
    int64_t pixels_n = (int64_t)w * (int64_t)h, bits = 0;
    if (pixels_n > max_pixels) {
        own = kiln__error(KILN_STATUS_FORMAT, "%s: '%s' is a %ux%u PNG, %lld pixels, above the limit of %lld pixels; "
                          KILN__PIXEL_LIMIT_HINT, op, path, (unsigned)w, (unsigned)h, (long long)pixels_n,
                          (long long)max_pixels);
        png_longjmp(png, 1);
    }
    if (!kiln__mul_i64(pixels_n, (int64_t)depth * stored_channels, &bits) ||
        bits / 8 / DEFLATE_MAX_RATIO > file_size) {
        own = kiln__error(KILN_STATUS_FORMAT, "%s: '%s' is a truncated PNG: a %ux%u image of %d bits per pixel needs "
                          "at least %lld bytes of compressed data, and the file has %lld bytes", op, path,
                          (unsigned)w, (unsigned)h, depth * stored_channels,
                          (long long)(bits / 8 / DEFLATE_MAX_RATIO), (long long)file_size);
        png_longjmp(png, 1);
    }
    int ch = decoded_channels(ctype, trns);
    img->channels = ch, img->height = h, img->width = w;
    if (header_only) {
        png_destroy_read_struct(&png, &info, NULL);
        return KILN_STATUS_OK;
    }
    if (depth == 16) png_set_scale_16(png); /* (v * 255 + 32767) / 65535 */
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (trns) png_set_tRNS_to_alpha(png);
    int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_channels(png, info) != ch || png_get_bit_depth(png, info) != 8 || rowbytes != (size_t)w * ch)
        png_error(png, "unexpected pixel layout after libpng's conversions");
    pixels = malloc((size_t)h * rowbytes);
    if (!pixels) {
        own = kiln__error(KILN_STATUS_OOM, "%s: out of host memory for the %ux%u pixels of '%s'", op, (unsigned)w,
                          (unsigned)h, path);
        png_longjmp(png, 1);
    }
    /* Row by row into place (no row-pointer array: a 1 x 2^28 image would need 2 GiB
     * of pointers); Adam7 passes are combined by libpng into the same rows. */
    for (int p = 0; p < passes; p++)
        for (png_uint_32 y = 0; y < h; y++) png_read_row(png, pixels + (size_t)y * rowbytes, NULL);
    png_read_end(png, NULL); /* the rest of the file up to IEND: truncation shows here */
    png_destroy_read_struct(&png, &info, NULL);
    img->pixels = pixels;
    return KILN_STATUS_OK;
}

/* Our own write and flush, so a failed write keeps its errno for the message. */
static void on_write(png_structp png, png_bytep d, size_t n) {
    png_ctx *e = png_get_io_ptr(png);
    errno = 0;
    if (fwrite(d, 1, n, e->f) != n) {
        e->errnum = errno ? errno : EIO;
        png_error(png, "Write Error");
    }
}
static void on_flush(png_structp png) {
    png_ctx *e = png_get_io_ptr(png);
    errno = 0;
    if (fflush(e->f) != 0) {
        e->errnum = errno ? errno : EIO;
        png_error(png, "Write Error");
    }
}

kiln_status kiln__png_encode(const char *op, kiln__atomic_file *out, const kiln__image *img) {
    png_ctx ctx = {"", out->f, 0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return kiln__error(KILN_STATUS_OOM, "%s: out of host memory starting libpng for '%s'", op, out->target);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        if (ctx.errnum)
            return kiln__error(KILN_STATUS_IO, "%s: cannot write '%s': %s; the previous file, if any, is untouched",
                               op, out->target, strerror(ctx.errnum));
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: libpng refused to write '%s': %s", op, out->target,
                           ctx.msg);
    }
    png_set_write_fn(png, &ctx, on_write, on_flush);
    int ctype = img->channels == 1 ? PNG_COLOR_TYPE_GRAY : img->channels == 3 ? PNG_COLOR_TYPE_RGB
                                                                               : PNG_COLOR_TYPE_RGB_ALPHA;
    png_set_IHDR(png, info, (png_uint_32)img->width, (png_uint_32)img->height, 8, ctype, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 6);
    png_write_info(png, info);
    size_t rowbytes = (size_t)img->width * (size_t)img->channels;
    for (int64_t y = 0; y < img->height; y++) png_write_row(png, img->pixels + (size_t)y * rowbytes);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return KILN_STATUS_OK;
}

/* PNG in and out through libpng: 8-bit gray or RGB, from bytes, floats or tensors.
 * libpng reports errors by longjmp; each call keeps everything it allocated where the
 * jump target can free it, so a corrupt or truncated file is an error value, not a crash. */
#include "kx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef KILN_EXAMPLES_HAVE_PNG
#include <png.h>
#include <setjmp.h>

/* Per side: the writer's limit too, and it keeps the row-pointer array small. */
#define MAX_SIDE 65535u

typedef struct {
    char msg[200];
    FILE *f;    /* the writer's file */
    int errnum; /* errno of a failed write or flush */
} png_err;

static void on_png_error(png_structp png, png_const_charp msg) {
    png_err *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    png_longjmp(png, 1);
}
static void on_png_warning(png_structp png, png_const_charp msg) {
    (void)png, (void)msg; /* warnings (e.g. a bad ancillary chunk) do not stop a read */
}
/* Our own write and flush, so a failed write keeps its errno for the message. */
static void on_png_write(png_structp png, png_bytep d, size_t n) {
    png_err *e = png_get_io_ptr(png);
    errno = 0;
    if (fwrite(d, 1, n, e->f) != n) {
        e->errnum = errno ? errno : EIO;
        png_error(png, "Write Error");
    }
}
static void on_png_flush(png_structp png) {
    png_err *e = png_get_io_ptr(png);
    errno = 0;
    if (fflush(e->f) != 0) {
        e->errnum = errno ? errno : EIO;
        png_error(png, "Write Error");
    }
}
#endif

int64_t kx_png_max_pixels(void) {
    const char *env = getenv("KILN_PNG_MAX_PIXELS");
    if (!env || !*env) return KX_PNG_DEFAULT_MAX_PIXELS;
    if (*env < '0' || *env > '9') return -1; /* no sign, no blanks */
    char *end;
    errno = 0;
    long long v = strtoll(env, &end, 10);
    if (*end || errno == ERANGE || v < 1) return -1;
    return v;
}

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

#ifdef KILN_EXAMPLES_HAVE_PNG
/* Makes a rename into path durable: fsyncs its directory (best effort: the new file is
 * already in place, and some file systems refuse to fsync a directory). */
static void sync_parent_dir(const char *path) {
    char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
    if (!dir) return;
    const char *d = slash ? (slash == dir ? "/" : (*slash = '\0', dir)) : ".";
    int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
}
#endif

/* Written to a temporary file beside path, fsynced and renamed over path: the path
 * holds the old file or the whole new one, never a part (a full disk, a crash). */
kiln_status kx_png_write_u8(const char *path, const uint8_t *data, int channels, int H, int W) {
    const char *fn = "kx_png_write_u8";
    kiln_status st = check_dims(fn, path, data, channels, H, W);
    if (st) return st;
#ifndef KILN_EXAMPLES_HAVE_PNG
    return kiln_set_error(KILN_STATUS_NOT_IMPLEMENTED,
                          "%s: built without libpng; install libpng-dev and rebuild to write '%s'", fn, path);
#else
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) return kiln_set_error(KILN_STATUS_OOM, "%s: out of memory for '%s'", fn, path);
    snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        int e = errno;
        kiln_set_error(KILN_STATUS_IO, "%s: cannot create '%s' (its temporary file %s): %s", fn, path, tmp,
                       strerror(e));
        free(tmp);
        return KILN_STATUS_IO;
    }
    fchmod(fd, 0644); /* mkstemp makes 0600; a picture is for everyone to look at */
    png_err err = {"", NULL, 0};
    if (!(err.f = fdopen(fd, "wb"))) {
        int e = errno;
        close(fd);
        unlink(tmp);
        free(tmp);
        return kiln_set_error(KILN_STATUS_IO, "%s: cannot write '%s': %s", fn, path, strerror(e));
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        fclose(err.f);
        unlink(tmp);
        free(tmp);
        return kiln_set_error(KILN_STATUS_OOM, "%s: out of memory starting libpng for '%s'", fn, path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(err.f);
        unlink(tmp);
        free(tmp);
        return kiln_set_error(KILN_STATUS_IO, "%s: writing '%s' failed: %s; the previous file, if any, is untouched", fn,
                              path, err.errnum ? strerror(err.errnum) : err.msg);
    }
    png_set_write_fn(png, &err, on_png_write, on_png_flush);
    png_set_IHDR(png, info, (png_uint_32)W, (png_uint_32)H, 8, channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < H; y++) png_write_row(png, data + (size_t)y * W * channels);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    /* A full disk shows up in the flush, the fsync or the close, not always in libpng. */
    const char *stage = "write";
    errno = 0;
    int bad = fflush(err.f) != 0;
    if (!bad) stage = "fsync", bad = fsync(fileno(err.f)) != 0;
    int e = errno;
    if (fclose(err.f) != 0 && !bad) stage = "close", bad = 1, e = errno;
    if (!bad && rename(tmp, path) != 0) stage = "rename the temporary file over", bad = 1, e = errno;
    if (bad) {
        unlink(tmp);
        free(tmp);
        return kiln_set_error(KILN_STATUS_IO, "%s: cannot %s '%s': %s; the previous file, if any, is untouched", fn,
                              stage, path, strerror(e ? e : EIO));
    }
    sync_parent_dir(path);
    free(tmp);
    return KILN_STATUS_OK;
#endif
}

kiln_status kx_png_write_f32(const char *path, const float *data, int channels, int H, int W) {
    kiln_status st = check_dims("kx_png_write_f32", path, data, channels, H, W);
    if (st) return st;
    size_t HW = (size_t)H * W;
    uint8_t *bytes = malloc(HW * channels);
    if (!bytes) return kiln_set_error(KILN_STATUS_OOM, "kx_png_write_f32: out of memory for %dx%d '%s'", H, W, path);
    for (int c = 0; c < channels; c++)
        for (size_t p = 0; p < HW; p++) {
            float v = data[c * HW + p];
            v = v > 0 ? (v < 1 ? v : 1) : 0; /* NaN lands on 0 too */
            bytes[p * channels + c] = (uint8_t)(v * 255.0f + 0.5f);
        }
    st = kx_png_write_u8(path, bytes, channels, H, W);
    free(bytes);
    return st;
}

#ifdef KILN_EXAMPLES_HAVE_PNG
/* Opens path for reading if it is a regular file: a directory or a FIFO is an error
 * naming what it is (O_NONBLOCK: opening a FIFO would wait for a writer). */
static FILE *open_regular(const char *fn, const char *path) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        kiln_set_error(KILN_STATUS_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        kiln_set_error(KILN_STATUS_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        kiln_set_error(KILN_STATUS_IO, "%s: '%s' is %s, not a PNG file", fn, path,
                       S_ISDIR(sb.st_mode) ? "a directory" : "not a regular file (a device, FIFO or socket)");
        return NULL;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        kiln_set_error(KILN_STATUS_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
        close(fd);
    }
    return f;
}
#endif

/* The reader behind kx_png_read_u8 and kx_png_read_size: header_only stops after
 * the checks of the header (size, pixel limit), before any pixel is decoded. */
static kiln_status read_png(const char *fn, const char *path, int want_channels, bool header_only, uint8_t **data,
                            int *channels, int *H, int *W) {
    if (!path) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: path is NULL", fn);
    if (want_channels != 0 && want_channels != 1 && want_channels != 3)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: want_channels is %d; use 0 (as stored), 1 (gray) or 3 (RGB)",
                              fn, want_channels);
#ifndef KILN_EXAMPLES_HAVE_PNG
    (void)header_only, (void)data, (void)channels, (void)H, (void)W;
    return kiln_set_error(KILN_STATUS_NOT_IMPLEMENTED,
                          "%s: built without libpng; install libpng-dev and rebuild to read '%s'", fn, path);
#else
    int64_t max_pixels = kx_png_max_pixels();
    if (max_pixels < 0)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT,
                              "%s: KILN_PNG_MAX_PIXELS='%s' is not a pixel count; set a positive integer, or unset it "
                              "for the default %lld", fn, getenv("KILN_PNG_MAX_PIXELS"),
                              (long long)KX_PNG_DEFAULT_MAX_PIXELS);
    FILE *f = open_regular(fn, path);
    if (!f) return kiln_last_status();
    unsigned char sig[8];
    size_t got = fread(sig, 1, sizeof sig, f);
    if (got < sizeof sig || png_sig_cmp(sig, 0, sizeof sig)) {
        int e = ferror(f) ? errno : 0;
        fclose(f);
        if (e) return kiln_set_error(KILN_STATUS_IO, "%s: cannot read '%s': %s", fn, path, strerror(e));
        return kiln_set_error(KILN_STATUS_FORMAT, "%s: '%s' is not a PNG file (%s)", fn, path,
                              got < sizeof sig ? "shorter than the 8-byte signature" : "wrong signature");
    }
    png_err err = {"", NULL, 0};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, on_png_error, on_png_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        fclose(f);
        return kiln_set_error(KILN_STATUS_OOM, "%s: out of memory starting libpng for '%s'", fn, path);
    }
    /* Written after setjmp and needed by the error path: volatile, so longjmp keeps them. */
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    volatile kiln_status own_st = KILN_STATUS_OK; /* an error recorded here, not by libpng */
    if (setjmp(png_jmpbuf(png))) {
        free(pixels);
        free(rows);
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        if (own_st) return own_st;
        return kiln_set_error(KILN_STATUS_FORMAT, "%s: '%s' is corrupt or truncated: %s", fn, path,
                              strcmp(err.msg, "Read Error") == 0 ? "the file ends early" : err.msg);
    }
    png_init_io(png, f);
    png_set_sig_bytes(png, (int)sizeof sig);
    /* Only the chunks that make the picture are read (PLTE and tRNS stay): text, ICC
     * profiles and the like are skipped unread, so a chunk that claims gigabytes costs
     * nothing; the sizes are checked here, against the pixel limit, not by libpng. */
    png_set_keep_unknown_chunks(png, PNG_HANDLE_CHUNK_NEVER, NULL, -1); /* tEXt, zTXt, iTXt, iCCP, ... */
    png_set_chunk_cache_max(png, 64);
    png_set_user_limits(png, 0x7fffffffu, 0x7fffffffu);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    if (w > MAX_SIDE || h > MAX_SIDE)
        own_st = kiln_set_error(KILN_STATUS_FORMAT, "%s: '%s' is %ux%u pixels; this reader takes sides up to %u", fn,
                                  path, (unsigned)w, (unsigned)h, MAX_SIDE);
    else if ((int64_t)w * h > max_pixels)
        own_st = kiln_set_error(KILN_STATUS_FORMAT,
                                  "%s: '%s' is %ux%u = %lld pixels, above the limit of %lld pixels; set "
                                  "KILN_PNG_MAX_PIXELS to read larger images",
                                  fn, path, (unsigned)w, (unsigned)h, (long long)w * h, (long long)max_pixels);
    if (own_st) png_longjmp(png, 1);
    int depth = png_get_bit_depth(png, info), ctype = png_get_color_type(png, info);
    /* Everything becomes 8-bit gray or RGB without alpha. A palette or gray image with
     * a tRNS chunk gains alpha when expanded: that is dropped too. */
    if (depth == 16) png_set_scale_16(png);
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if ((ctype & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS)) png_set_strip_alpha(png);
    int stored = (ctype == PNG_COLOR_TYPE_GRAY || ctype == PNG_COLOR_TYPE_GRAY_ALPHA) ? 1 : 3;
    int out = want_channels ? want_channels : stored;
    if (!header_only) {
        if (out == 3 && stored == 1) png_set_gray_to_rgb(png);
        if (out == 1 && stored == 3) png_set_rgb_to_gray_fixed(png, 1, -1, -1); /* libpng's default weights */
        png_set_interlace_handling(png);
        png_read_update_info(png, info);
        size_t rowbytes = png_get_rowbytes(png, info);
        if (rowbytes != (size_t)w * out) png_error(png, "unexpected row size after conversion");
        pixels = malloc((size_t)h * rowbytes);
        rows = malloc((size_t)h * sizeof(png_bytep));
        if (!pixels || !rows) {
            own_st = kiln_set_error(KILN_STATUS_OOM, "%s: out of memory for the %ux%u pixels of '%s'", fn, (unsigned)w,
                                    (unsigned)h, path);
            png_longjmp(png, 1);
        }
        for (png_uint_32 y = 0; y < h; y++) rows[y] = pixels + (size_t)y * rowbytes;
        png_read_image(png, rows);
        png_read_end(png, NULL); /* checks the rest of the file up to IEND: truncation shows here */
        free(rows);
        *data = pixels;
    }
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    if (channels) *channels = out;
    if (H) *H = (int)h;
    if (W) *W = (int)w;
    return KILN_STATUS_OK;
#endif
}

kiln_status kx_png_read_u8(const char *path, int want_channels, uint8_t **data, int *channels, int *H, int *W) {
    if (!data) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_png_read_u8: data is NULL");
    *data = NULL;
    return read_png("kx_png_read_u8", path, want_channels, false, data, channels, H, W);
}

kiln_status kx_png_read_size(const char *path, int *channels, int *H, int *W) {
    return read_png("kx_png_read_size", path, 0, true, NULL, channels, H, W);
}

kiln_status kx_png_read_f32(const char *path, int want_channels, float **data, int *channels, int *H, int *W) {
    if (!data) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_png_read_f32: data is NULL");
    *data = NULL;
    uint8_t *bytes;
    int c = 0, h = 0, w = 0;
    kiln_status st = kx_png_read_u8(path, want_channels, &bytes, &c, &h, &w);
    if (st) return st;
    size_t HW = (size_t)h * w;
    float *f = malloc(HW * c * sizeof(float));
    if (!f) {
        free(bytes);
        return kiln_set_error(KILN_STATUS_OOM, "kx_png_read_f32: out of memory for %dx%d '%s'", h, w, path);
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

kiln_tensor *kx_png_read_tensor(const char *path, int want_channels, kiln_device dev) {
    float *px;
    int c = 0, h = 0, w = 0;
    if (kx_png_read_f32(path, want_channels, &px, &c, &h, &w)) return NULL;
    kiln_tensor *t = kiln_tensor_from_host(px, 3, (int64_t[]){c, h, w}, KILN_F32, dev);
    free(px);
    return t;
}

kiln_status kx_png_write_tensor(const char *path, kiln_tensor *t) {
    if (!t) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_png_write_tensor: tensor is NULL (an earlier op failed?)");
    int nd = kiln_tensor_ndim(t);
    int64_t c = nd == 3 ? kiln_tensor_size(t, 0) : 1;
    if ((nd != 2 && nd != 3) || (c != 1 && c != 3)) {
        char b[96];
        return kiln_set_error(KILN_STATUS_SHAPE,
                              "kx_png_write_tensor: got %s for '%s'; give (C,H,W) with C = 1 or 3, or (H,W)",
                              kiln_tensor_describe(t, b, sizeof b), path ? path : "(null)");
    }
    int64_t h = kiln_tensor_size(t, -2), w = kiln_tensor_size(t, -1);
    kiln_no_grad_begin(); /* a picture of a prediction is no part of its graph */
    kiln_scope *s = kiln_scope_begin();
    kiln_tensor *f = kiln_tensor_dtype(t) == KILN_F32 ? t : kiln_tensor_cast(t, KILN_F32);
    float *px = malloc((size_t)(c * h * w) * sizeof(float));
    kiln_status st = !f ? kiln_last_status()
                     : !px ? kiln_set_error(KILN_STATUS_OOM, "kx_png_write_tensor: out of memory")
                           : kiln_tensor_to_host(f, px, (size_t)(c * h * w) * sizeof(float));
    if (!st) st = kx_png_write_f32(path, px, (int)c, (int)h, (int)w);
    free(px);
    kiln_scope_end(s);
    kiln_no_grad_end();
    return st;
}

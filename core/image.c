/* Image files in and out (include/kiln/image.h): the format sniffed from the first
 * bytes, the pixel limit, channel conversion and the (H, W, C) <-> (C, H, W) layout.
 * The codecs themselves are core/image_png.c (libpng) and core/image_jpeg.c
 * (libjpeg-turbo); writes go through core/atomic_file.c. */
#include "image_codec.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
static const uint8_t jpeg_sig[3] = {0xff, 0xd8, 0xff}; /* SOI, then any marker */

/* The pixel limit: KILN_IMAGE_MAX_PIXELS, else the default; -1 when the variable is
 * set but not a positive decimal integer (no sign, no blanks). */
static int64_t max_pixels(void) {
    const char *env = getenv("KILN_IMAGE_MAX_PIXELS");
    if (!env || !*env) return KILN_IMAGE_DEFAULT_MAX_PIXELS;
    if (*env < '0' || *env > '9') return -1;
    char *end;
    errno = 0;
    long long v = strtoll(env, &end, 10);
    if (*end || errno == ERANGE || v < 1) return -1;
    return (int64_t)v;
}

/* Opens path for reading if it is a regular file; a directory or a FIFO is an error
 * naming what it is (O_NONBLOCK: opening a FIFO would otherwise wait for a writer). */
static FILE *open_regular(const char *op, const char *path, int64_t *size) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        kiln__error(KILN_STATUS_IO, "%s: cannot open '%s': %s", op, path, strerror(errno));
        return NULL;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        kiln__error(KILN_STATUS_IO, "%s: cannot open '%s': %s", op, path, strerror(errno));
        close(fd);
        return NULL;
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        kiln__error(KILN_STATUS_IO, "%s: '%s' is %s, not an image file", op, path,
                    S_ISDIR(sb.st_mode) ? "a directory" : "not a regular file (a device, FIFO or socket)");
        return NULL;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        kiln__error(KILN_STATUS_IO, "%s: cannot open '%s': %s", op, path, strerror(errno));
        close(fd);
        return NULL;
    }
    *size = (int64_t)sb.st_size;
    return f;
}

/* Opens, sniffs and decodes (or only sizes) path. */
static kiln_status decode_file(const char *op, const char *path, bool header_only, kiln__image *img) {
    *img = (kiln__image){0, 0, 0, NULL};
    if (!path || !path[0]) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: path is NULL or empty", op);
    int64_t limit = max_pixels();
    if (limit < 0)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT,
                           "%s: KILN_IMAGE_MAX_PIXELS='%.64s' is not a pixel count; set a positive integer, or unset "
                           "it for the default %lld", op, getenv("KILN_IMAGE_MAX_PIXELS"),
                           (long long)KILN_IMAGE_DEFAULT_MAX_PIXELS);
    int64_t size = 0;
    FILE *f = open_regular(op, path, &size);
    if (!f) return kiln_last_status();
    uint8_t sig[8] = {0};
    size_t got = fread(sig, 1, sizeof sig, f);
    if (got < sizeof sig && ferror(f)) {
        int e = errno;
        fclose(f);
        return kiln__error(KILN_STATUS_IO, "%s: cannot read '%s': %s", op, path, strerror(e));
    }
    rewind(f);
    kiln_status st;
    if (got >= sizeof png_sig && !memcmp(sig, png_sig, sizeof png_sig))
        st = kiln__png_decode(op, path, f, size, limit, header_only, img);
    else if (got >= sizeof jpeg_sig && !memcmp(sig, jpeg_sig, sizeof jpeg_sig))
        st = kiln__jpeg_decode(op, path, f, size, limit, header_only, img);
    else
        st = kiln__error(KILN_STATUS_FORMAT, "%s: '%s' is neither a PNG nor a JPEG file (%s); kiln reads PNG and "
                         "JPEG, whatever the file's name says", op, path,
                         got == 0 ? "it is empty" : "its first bytes are neither signature");
    fclose(f);
    return st;
}

/* The channel count a read with channels == 0 gives: gray + alpha becomes RGBA, so
 * every image read has 1, 3 or 4 channels and can be written back. */
static int as_stored(int decoded) { return decoded == 2 ? 4 : decoded; }

/* ITU-R BT.601 luma, rounded, exactly as Pillow's convert("L"). */
static inline uint8_t luma(const uint8_t *p) {
    return (uint8_t)(((uint32_t)p[0] * 19595u + (uint32_t)p[1] * 38470u + (uint32_t)p[2] * 7471u + 0x8000u) >> 16);
}

/* Pixel i of img in out channels; v receives out values. */
static inline void convert_pixel(const uint8_t *p, int cin, int cout, uint8_t *v) {
    if (cout == 1) {
        v[0] = cin <= 2 ? p[0] : luma(p);
        return;
    }
    if (cin <= 2) v[0] = v[1] = v[2] = p[0];
    else v[0] = p[0], v[1] = p[1], v[2] = p[2];
    if (cout == 4) v[3] = cin == 2 ? p[1] : cin == 4 ? p[3] : 255;
}

kiln_tensor *kiln_image_read(const char *path, int channels, kiln_dtype dtype, kiln_device device) {
    const char *op = "kiln_image_read";
    if (channels != 0 && channels != 1 && channels != 3 && channels != 4) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: channels is %d; use 0 (as stored), 1 (gray), 3 (RGB) or 4 "
                    "(RGBA)", op, channels);
        return NULL;
    }
    if (dtype != KILN_U8 && dtype != KILN_F32) {
        kiln__error(KILN_STATUS_DTYPE, "%s: dtype %s; images are read as KILN_U8 (0..255) or KILN_F32 (0..1)", op,
                    kiln_dtype_name(dtype));
        return NULL;
    }
    kiln__image img;
    if (decode_file(op, path, false, &img) != KILN_STATUS_OK) return NULL;
    int cout = channels ? channels : as_stored(img.channels);
    int64_t shape[3] = {cout, img.height, img.width};
    /* height * width <= the pixel limit was checked by the decoder; the extent check
     * covers a limit raised near 2^63. */
    kiln_tensor *t = kiln__check_extent(op, 3, shape, kiln_dtype_size(dtype)) ? kiln__new(3, shape, dtype, KILN_CPU)
                                                                              : NULL;
    if (!t) {
        free(img.pixels);
        return NULL;
    }
    const size_t plane = (size_t)img.height * (size_t)img.width;
    const uint8_t *p = img.pixels;
    uint8_t v[4];
    if (dtype == KILN_U8) {
        uint8_t *o = (uint8_t *)kiln__ptr(t);
        for (size_t i = 0; i < plane; i++, p += img.channels) {
            convert_pixel(p, img.channels, cout, v);
            for (int c = 0; c < cout; c++) o[(size_t)c * plane + i] = v[c];
        }
    } else {
        float lut[256];
        for (int k = 0; k < 256; k++) lut[k] = (float)k / 255.0f;
        float *o = (float *)kiln__ptr(t);
        for (size_t i = 0; i < plane; i++, p += img.channels) {
            convert_pixel(p, img.channels, cout, v);
            for (int c = 0; c < cout; c++) o[(size_t)c * plane + i] = lut[v[c]];
        }
    }
    free(img.pixels);
    if (device.type == KILN_DEVICE_CPU && device.index == 0) return t;
    kiln_tensor *d = kiln_tensor_to(t, device);
    kiln_tensor_free(t);
    return d;
}

kiln_status kiln_image_read_size(const char *path, int64_t *channels, int64_t *height, int64_t *width) {
    kiln__image img;
    kiln_status st = decode_file("kiln_image_read_size", path, true, &img);
    if (st != KILN_STATUS_OK) return st;
    if (channels) *channels = as_stored(img.channels);
    if (height) *height = img.height;
    if (width) *width = img.width;
    return KILN_STATUS_OK;
}

/* ---- writing ----------------------------------------------------------------------- */

typedef enum { FMT_NONE, FMT_PNG, FMT_JPEG } image_format;

static image_format format_of(const char *path) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base) return FMT_NONE;
    if (!strcasecmp(dot, ".png")) return FMT_PNG;
    if (!strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg")) return FMT_JPEG;
    return FMT_NONE;
}

/* [0, 1] -> 0..255, rounded half up; NaN and below 0 are 0, above 1 is 255. */
static inline uint8_t to_byte(float x) {
    if (!(x > 0.0f)) return 0;
    if (x >= 1.0f) return 255;
    return (uint8_t)(x * 255.0f + 0.5f);
}

kiln_status kiln_image_write(const char *path, const kiln_tensor *t, int quality) {
    const char *op = "kiln_image_write";
    if (!path || !path[0]) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: path is NULL or empty", op);
    if (!t) return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: the tensor for '%s' is NULL (an earlier call "
                               "failed?)", op, path);
    image_format fmt = format_of(path);
    if (fmt == FMT_NONE)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: '%s' has no image extension; name the file .png, .jpg "
                           "or .jpeg (the extension picks the format)", op, path);
    if (quality < 0 || quality > 100)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: quality %d for '%s'; use 1..100 (JPEG), or 0 for the "
                           "default 95", op, quality, path);
    kiln_dtype dt = kiln_tensor_dtype(t);
    if (dt != KILN_U8 && dt != KILN_F32)
        return kiln__error(KILN_STATUS_DTYPE, "%s: '%s': the tensor is %s; write KILN_U8 (0..255) or KILN_F32 (0..1, "
                           "clamped), e.g. after kiln_tensor_cast", op, path, kiln_dtype_name(dt));
    int nd = kiln_tensor_ndim(t);
    const int64_t *sh = kiln_tensor_shape(t);
    char sb[96];
    int64_t C = nd == 3 ? sh[0] : 1, H = nd >= 2 ? sh[nd - 2] : 0, W = nd >= 2 ? sh[nd - 1] : 0;
    if ((nd != 2 && nd != 3) || (C != 1 && C != 3 && C != 4) || H < 1 || W < 1)
        return kiln__error(KILN_STATUS_SHAPE, "%s: '%s': a tensor of shape %s is not an image; write (C, H, W) with "
                           "C 1 (gray), 3 (RGB) or 4 (RGBA), or (H, W), with H, W >= 1", op, path,
                           kiln__shape_str(nd, sh, sb, sizeof sb));
    if (fmt == FMT_JPEG && C == 4)
        return kiln__error(KILN_STATUS_SHAPE, "%s: '%s': JPEG has no alpha channel, and the tensor %s is RGBA; "
                           "write its first three channels (kiln_slice(t, 0, 0, 3, 1)) or write a .png", op, path,
                           kiln__shape_str(nd, sh, sb, sizeof sb));
    int64_t max_side = fmt == FMT_JPEG ? 65500 : 0x7fffffff;
    if (H > max_side || W > max_side)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: '%s': %lldx%lld pixels; %s images are at most %lld "
                           "pixels a side", op, path, (long long)H, (long long)W, fmt == FMT_JPEG ? "JPEG" : "PNG",
                           (long long)max_side);

    /* C * H * W is the numel of an existing tensor: its bytes fit in int64. */
    size_t plane = (size_t)H * (size_t)W, n = plane * (size_t)C, es = kiln_dtype_size(dt);
    void *host = malloc(n * es);
    uint8_t *hwc = malloc(n);
    if (!host || !hwc) {
        free(host);
        free(hwc);
        return kiln__error(KILN_STATUS_OOM, "%s: out of host memory for the %lldx%lldx%lld image '%s'", op,
                           (long long)C, (long long)H, (long long)W, path);
    }
    kiln_status st = kiln_tensor_to_host(t, host, n * es);
    if (st == KILN_STATUS_OK) {
        for (size_t c = 0; c < (size_t)C; c++) {
            if (dt == KILN_U8) {
                const uint8_t *s = (const uint8_t *)host + c * plane;
                for (size_t i = 0; i < plane; i++) hwc[i * (size_t)C + c] = s[i];
            } else {
                const float *s = (const float *)host + c * plane;
                for (size_t i = 0; i < plane; i++) hwc[i * (size_t)C + c] = to_byte(s[i]);
            }
        }
    }
    free(host);
    if (st != KILN_STATUS_OK) {
        free(hwc);
        return st;
    }
    kiln__image img = {(int)C, H, W, hwc};
    kiln__atomic_file out;
    st = kiln__atomic_begin(&out, op, path);
    if (st == KILN_STATUS_OK) {
        st = fmt == FMT_PNG ? kiln__png_encode(op, &out, &img) : kiln__jpeg_encode(op, &out, &img, quality ? quality : 95);
        if (st == KILN_STATUS_OK) st = kiln__atomic_commit(&out, op);
        else kiln__atomic_abort(&out);
    }
    free(hwc);
    return st;
}

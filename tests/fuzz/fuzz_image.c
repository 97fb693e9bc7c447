/* Fuzz harness: PNG and JPEG files through kiln's image API (core/image*.c: libpng and
 * libjpeg-turbo underneath). Each input is sized (kiln_image_read_size) and read as
 * stored (u8), as gray f32, as RGB and as RGBA; the sizes must agree, f32 values lie in
 * [0, 1] and the conversions must be consistent (an RGBA read's first channels are the
 * RGB read). A small image must survive kiln_image_write as PNG byte for byte, and as
 * JPEG with its size. PNG chunk CRCs are recomputed first (as fuzz_png.c does) so that
 * mutations reach past libpng's CRC check. The pixel limit is lowered to 2^22 so that a
 * declared size cannot reach the fuzzer's 2 GiB malloc limit through libjpeg's own
 * buffers (a progressive file keeps all its coefficients). */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static uint32_t be32(const uint8_t *b) { return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]; }

/* Rewrites each whole chunk's CRC in place (idempotent). */
static void fix_crcs(uint8_t *b, size_t n) {
    if (n < 8 || memcmp(b, png_sig, 8)) return;
    size_t at = 8;
    while (at + 12 <= n) {
        uint32_t len = be32(b + at);
        if (len > n - at - 12) break;
        uint32_t crc = (uint32_t)crc32(0, b + at + 4, 4 + len);
        uint8_t *c = b + at + 8 + len;
        c[0] = (uint8_t)(crc >> 24), c[1] = (uint8_t)(crc >> 16), c[2] = (uint8_t)(crc >> 8), c[3] = (uint8_t)crc;
        at += 12 + (size_t)len;
    }
}

/* A read that failed did so with an error a file can cause. */
static void check_failure(const char *how) {
    kiln_status st = kiln_last_status();
    KF_CHECK(st == KILN_STATUS_FORMAT || st == KILN_STATUS_OOM, "%s failed with %s: %s", how, kiln_status_name(st),
             kiln_last_error());
}

static kiln_tensor *read_as(const char *path, int channels, kiln_dtype dt, int64_t h, int64_t w, const char *how) {
    kiln_clear_error();
    kiln_tensor *t = kiln_image_read(path, channels, dt, KILN_CPU);
    kf_note("%s: %s", how, t ? "ok" : kiln_last_error());
    if (!t) {
        check_failure(how);
        return NULL;
    }
    KF_CHECK(kiln_tensor_ndim(t) == 3 && kiln_tensor_dtype(t) == dt, "%s: not a (C, H, W) %s tensor", how,
             kiln_dtype_name(dt));
    int64_t c = kiln_tensor_size(t, 0);
    KF_CHECK(channels ? c == channels : (c == 1 || c == 3 || c == 4), "%s: %lld channels", how, (long long)c);
    KF_CHECK(h < 0 || (kiln_tensor_size(t, 1) == h && kiln_tensor_size(t, 2) == w), "%s: %lldx%lld, the first read "
             "was %lldx%lld", how, (long long)kiln_tensor_size(t, 1), (long long)kiln_tensor_size(t, 2),
             (long long)h, (long long)w);
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool limited;
    if (!limited) setenv("KILN_IMAGE_MAX_PIXELS", "4194304", 1), limited = true;
    uint8_t *copy = malloc(size ? size : 1);
    KF_CHECK(copy != NULL, "out of host memory");
    memcpy(copy, data, size);
    fix_crcs(copy, size);
    const char *path = kf_input_path(copy, size);
    free(copy);
    kiln_scope *scope = kf_begin();

    int64_t sc = 0, sh = 0, sw = 0;
    kiln_clear_error();
    kiln_status sst = kiln_image_read_size(path, &sc, &sh, &sw);
    kf_note("read_size: %s", sst ? kiln_last_error() : "ok");
    if (sst) check_failure("read_size");
    else KF_CHECK((sc == 1 || sc == 3 || sc == 4) && sh >= 1 && sw >= 1 && sh * sw <= 4194304,
                  "read_size: %lld x %lld x %lld", (long long)sc, (long long)sh, (long long)sw);

    kiln_tensor *t = read_as(path, 0, KILN_U8, -1, -1, "read as stored");
    KF_CHECK(!t || sst == KILN_STATUS_OK, "read_size failed (%s) on a file that reads", kiln_status_name(sst));
    int64_t c0 = t ? kiln_tensor_size(t, 0) : 0, h0 = t ? kiln_tensor_size(t, 1) : -1,
            w0 = t ? kiln_tensor_size(t, 2) : -1;
    if (t) {
        KF_CHECK(c0 == sc && h0 == sh && w0 == sw, "read_size %lldx%lldx%lld, read %lldx%lldx%lld", (long long)sc,
                 (long long)sh, (long long)sw, (long long)c0, (long long)h0, (long long)w0);
        kf_use_tensor(t, "the image");
    }
    /* a file either reads every way or none (decoding does not depend on the conversion) */
    kiln_tensor *g = read_as(path, 1, KILN_F32, h0, w0, "read gray f32");
    KF_CHECK(!t == !g, "as stored %s, gray %s", t ? "read" : "failed", g ? "read" : "failed");
    if (g) {
        size_t n;
        float *v = kf_tensor_bytes(g, &n);
        for (size_t i = 0; i < n / sizeof(float); i++) KF_CHECK(v[i] >= 0.0f && v[i] <= 1.0f, "gray value %g", v[i]);
        free(v);
    }
    kiln_tensor *rgb = read_as(path, 3, KILN_U8, h0, w0, "read RGB");
    kiln_tensor *rgba = read_as(path, 4, KILN_U8, h0, w0, "read RGBA");
    KF_CHECK(!t == !rgb && !t == !rgba, "reads disagree on whether the file is valid");
    if (rgb && rgba) {
        size_t n3, n4;
        uint8_t *a = kf_tensor_bytes(rgb, &n3), *b = kf_tensor_bytes(rgba, &n4);
        KF_CHECK(n4 / 4 * 3 == n3 && memcmp(a, b, n3) == 0, "RGBA's first three channels are not the RGB read");
        free(a), free(b);
    }

    if (t && h0 * w0 <= 65536) {
        const char *p2 = kf_scratch_path("roundtrip.png");
        kiln_clear_error();
        KF_CHECK(kiln_image_write(p2, t, 0) == KILN_STATUS_OK, "writing the PNG back: %s", kiln_last_error());
        kiln_tensor *back = kiln_image_read(p2, 0, KILN_U8, KILN_CPU);
        KF_CHECK(back != NULL, "reading back what kiln wrote: %s", kiln_last_error());
        size_t n1, n2;
        uint8_t *a = kf_tensor_bytes(t, &n1), *b = kf_tensor_bytes(back, &n2);
        KF_CHECK(n1 == n2 && memcmp(a, b, n1) == 0, "the image changed through a PNG write and read");
        free(a), free(b);
        unlink(p2);
        const char *p3 = kf_scratch_path("roundtrip.jpg");
        KF_CHECK(kiln_image_write(p3, rgb, 75) == KILN_STATUS_OK, "writing a JPEG: %s", kiln_last_error());
        kiln_tensor *j = kiln_image_read(p3, 0, KILN_U8, KILN_CPU);
        KF_CHECK(j && kiln_tensor_size(j, 0) == 3 && kiln_tensor_size(j, 1) == h0 && kiln_tensor_size(j, 2) == w0,
                 "reading back kiln's JPEG: %s", j ? "wrong size" : kiln_last_error());
        unlink(p3);
    }
    kf_end(scope);
    return 0;
}

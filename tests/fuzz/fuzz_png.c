/* Fuzz harness: PNG files (examples/support/png_io.c, libpng underneath) read as a (C,H,W)
 * tensor, as gray bytes and as RGB floats; what is read is used as a user would (cast,
 * reductions) and a small image must survive kx_png_write_tensor and a second read
 * byte for byte. Chunk CRCs are recomputed before the file is written (a mutated chunk
 * with a stale CRC only reaches libpng's CRC check; a hostile file has correct CRCs):
 * the fix is idempotent, so a regression input saved with its CRCs fixed replays the same. */
#include "fuzz_common.h"

#include <kx.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};

static uint32_t be32(const uint8_t *b) { return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]; }

/* Rewrites each whole chunk's CRC in place. */
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

static void check_dims(const char *how, int c, int want, int h, int w) {
    KF_CHECK(want ? c == want : (c == 1 || c == 3), "%s: %d channels (asked for %d)", how, c, want);
    KF_CHECK(h >= 1 && w >= 1 && h <= 65535 && w <= 65535, "%s: a %dx%d image", how, h, w);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *copy = malloc(size ? size : 1);
    KF_CHECK(copy != NULL, "out of host memory");
    memcpy(copy, data, size);
    fix_crcs(copy, size);
    const char *path = kf_input_path(copy, size);
    free(copy);
    kiln_scope *scope = kf_begin();

    /* as stored, as a tensor */
    kiln_clear_error();
    kiln_tensor *t = kx_png_read_tensor(path, 0, KILN_CPU);
    int c0 = 0, h0 = 0, w0 = 0;
    kf_note("read_tensor: %s", t ? "ok" : kiln_last_error());
    if (t) {
        KF_CHECK(kiln_tensor_ndim(t) == 3 && kiln_tensor_dtype(t) == KILN_F32, "the tensor is not (C,H,W) f32");
        c0 = (int)kiln_tensor_size(t, 0), h0 = (int)kiln_tensor_size(t, 1), w0 = (int)kiln_tensor_size(t, 2);
        check_dims("read_tensor", c0, 0, h0, w0);
        kf_use_tensor(t, "the image");
    } else {
        kiln_status st = kiln_last_status();
        KF_CHECK(st == KILN_STATUS_FORMAT || st == KILN_STATUS_OOM, "read_tensor failed with %s: %s",
                 kiln_status_name(st), kiln_last_error());
    }

#ifdef KX_PNG_DEFAULT_MAX_PIXELS /* the header-only reader, where the examples support has it */
    {
        int cs = 0, hs = 0, ws = 0;
        kiln_clear_error();
        kiln_status st = kx_png_read_size(path, &cs, &hs, &ws);
        kf_note("read_size: %s", st ? kiln_last_error() : "ok");
        if (st == KILN_STATUS_OK) check_dims("read_size", cs, 0, hs, ws);
        KF_CHECK(!t || (st == KILN_STATUS_OK && cs == c0 && hs == h0 && ws == w0),
                 "read_size (%s, %dx%dx%d) disagrees with read_tensor (%dx%dx%d)", kiln_status_name(st), cs, hs, ws,
                 c0, h0, w0);
    }
#endif

    /* gray bytes */
    uint8_t *px = NULL;
    int c = 0, h = 0, w = 0;
    kiln_clear_error();
    if (kx_png_read_u8(path, 1, &px, &c, &h, &w) == KILN_STATUS_OK) {
        check_dims("read_u8 gray", c, 1, h, w);
        KF_CHECK(!t || (h == h0 && w == w0), "gray read %dx%d, tensor read %dx%d", h, w, h0, w0);
        unsigned long sum = 0;
        for (size_t i = 0; i < (size_t)h * w; i++) sum += px[i]; /* every byte is there (ASan) */
        (void)sum;
    } else {
        KF_CHECK(px == NULL && kiln_last_status() != KILN_STATUS_OK, "a failed read_u8 left data or no error");
    }
    free(px);

    /* RGB floats */
    float *fx = NULL;
    kiln_clear_error();
    if (kx_png_read_f32(path, 3, &fx, &c, &h, &w) == KILN_STATUS_OK) {
        check_dims("read_f32 rgb", c, 3, h, w);
        KF_CHECK(!t || (h == h0 && w == w0), "rgb read %dx%d, tensor read %dx%d", h, w, h0, w0);
        for (size_t i = 0; i < (size_t)3 * h * w; i++)
            KF_CHECK(fx[i] >= 0 && fx[i] <= 1, "pixel value %g outside [0,1]", fx[i]);
    } else {
        KF_CHECK(fx == NULL && kiln_last_status() != KILN_STATUS_OK, "a failed read_f32 left data or no error");
    }
    free(fx);

    /* a small image: written and read back, byte for byte */
    if (t && (size_t)h0 * w0 <= 65536) {
        uint8_t *orig = NULL, *back = NULL;
        int c1, h1, w1, c2, h2, w2;
        kiln_clear_error();
        kiln_status st = kx_png_read_u8(path, 0, &orig, &c1, &h1, &w1);
        KF_CHECK(st == KILN_STATUS_OK && c1 == c0 && h1 == h0 && w1 == w0, "read_u8 as stored disagrees with "
                 "read_tensor (%s)", kiln_status_name(st));
        const char *p2 = kf_scratch_path("roundtrip.png");
        st = kx_png_write_tensor(p2, t);
        KF_CHECK(st == KILN_STATUS_OK, "writing the image back failed: %s", kiln_last_error());
        st = kx_png_read_u8(p2, 0, &back, &c2, &h2, &w2);
        KF_CHECK(st == KILN_STATUS_OK && c2 == c1 && h2 == h1 && w2 == w1, "reading back what kiln wrote: %s",
                 kiln_status_name(st));
        KF_CHECK(memcmp(orig, back, (size_t)c1 * h1 * w1) == 0, "the image changed through write and read");
        free(orig);
        free(back);
        unlink(p2);
    }
    kf_end(scope);
    return 0;
}

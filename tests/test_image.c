/* kiln_image_read / kiln_image_write (include/kiln/image.h): round trips (PNG exact,
 * JPEG within stated bounds), fixtures written by Pillow (tests/fixtures/gen_images.py)
 * read to the values Pillow read, channel conversions, and errors naming the file for
 * missing, foreign, truncated, corrupt and over-limit files and failed writes. */
#include "support/kiln_test.h"

#include "fixtures/images_ref.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void setup(void) {
    kiln_test_setup();
    unsetenv("KILN_IMAGE_MAX_PIXELS");
}
static void teardown(void) {
    unsetenv("KILN_IMAGE_MAX_PIXELS");
    kt_scratch_remove();
    kiln_test_teardown();
}
TestSuite(image, .init = setup, .fini = teardown);

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k;
    return kt_scratch_path(buf[k++ % 4], sizeof buf[0], name);
}
static const char *fixture(const char *name) {
    static char buf[4][256];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 256, "tests/fixtures/images/%s", name);
    return b;
}

/* A (C, H, W) u8 tensor of a smooth pattern plus some texture (JPEG-friendly but not flat). */
static kiln_tensor *pattern_u8(int C, int H, int W) {
    size_t n = (size_t)C * H * W;
    uint8_t *px = malloc(n);
    for (int c = 0; c < C; c++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                px[((size_t)c * H + y) * W + x] = (uint8_t)((x * 255 / (W - 1) + y * 3 + c * 50 + ((x ^ y) & 3)) % 256);
    kiln_tensor *t = kiln_tensor_from_host(px, 3, (const int64_t[]){C, H, W}, KILN_U8, KILN_CPU);
    free(px);
    cr_assert_not_null(t, "%s", kiln_last_error());
    return t;
}

static uint8_t *bytes_of(const kiln_tensor *t) {
    cr_assert_not_null(t, "%s", kiln_last_error());
    cr_assert_eq(kiln_tensor_dtype(t), KILN_U8);
    size_t n = (size_t)kiln_tensor_numel(t);
    uint8_t *b = malloc(n ? n : 1);
    cr_assert_eq(kiln_tensor_to_host(t, b, n), KILN_STATUS_OK, "%s", kiln_last_error());
    return b;
}

/* max |a - b| and the mean of |a - b| */
static void diff_stats(const uint8_t *a, const uint8_t *b, size_t n, int *max, double *mean) {
    int m = 0;
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        if (d > m) m = d;
        s += d;
    }
    *max = m, *mean = s / (double)n;
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

static uint8_t *slurp(const char *path, long *n) {
    *n = file_size(path);
    cr_assert_gt(*n, 0, "%s is missing", path);
    FILE *f = fopen(path, "rb");
    uint8_t *b = malloc((size_t)*n);
    cr_assert_eq(fread(b, 1, (size_t)*n, f), (size_t)*n);
    fclose(f);
    return b;
}
static void spit(const char *path, const uint8_t *b, long n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, (size_t)n, f), (size_t)n);
    fclose(f);
}

/* ---- round trips ---------------------------------------------------------------------- */

KT_TEST(image, png_u8_round_trip_is_exact) {
    const int channels[] = {1, 3, 4};
    for (int k = 0; k < 3; k++) {
        int C = channels[k];
        kiln_tensor *t = pattern_u8(C, 13, 21);
        cr_assert_eq(kiln_image_write(tmp("rt.png"), t, 0), KILN_STATUS_OK, "%s", kiln_last_error());
        kiln_tensor *back = kiln_image_read(tmp("rt.png"), 0, KILN_U8, KILN_CPU);
        KT_EXPECT_SHAPE(back, 3, C, 13, 21);
        uint8_t *a = bytes_of(t), *b = bytes_of(back);
        cr_expect(memcmp(a, b, (size_t)C * 13 * 21) == 0, "C=%d: the PNG round trip changed pixels", C);
        free(a), free(b);
    }
    /* (H, W) is a gray image */
    kiln_tensor *t = pattern_u8(1, 6, 9);
    kiln_tensor *t2 = kiln_reshape(t, 2, (const int64_t[]){6, 9});
    cr_assert_eq(kiln_image_write(tmp("hw.PNG"), t2, 0), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *back = kiln_image_read(tmp("hw.PNG"), 0, KILN_U8, KILN_CPU);
    KT_EXPECT_SHAPE(back, 3, 1, 6, 9);
    uint8_t *a = bytes_of(t), *b = bytes_of(back);
    cr_expect(memcmp(a, b, 54) == 0);
    free(a), free(b);
}

KT_TEST(image, f32_round_trip_and_rounding) {
    /* k/255 survives exactly; other values are clamped and rounded to nearest */
    const int H = 4, W = 8;
    float v[4 * 8];
    for (int i = 0; i < H * W; i++) v[i] = (float)((i * 8) % 256) / 255.0f;
    kiln_tensor *t = kiln_tensor_from_host(v, 3, (const int64_t[]){1, H, W}, KILN_F32, KILN_CPU);
    cr_assert_eq(kiln_image_write(tmp("f.png"), t, 0), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *back = kiln_image_read(tmp("f.png"), 0, KILN_F32, KILN_CPU);
    KT_EXPECT_SHAPE(back, 3, 1, H, W);
    float got[4 * 8];
    cr_assert_eq(kiln_tensor_to_host(back, got, sizeof got), KILN_STATUS_OK);
    for (int i = 0; i < H * W; i++) cr_expect_eq(got[i], v[i], "element %d: %.9g, wrote %.9g", i, got[i], v[i]);

    const float odd[8] = {-0.5f, 0.0f, 0.5f / 255.0f + 1e-6f, 0.5f, 1.0f, 7.0f, NAN, 100.4f / 255.0f};
    const uint8_t want[8] = {0, 0, 1, 128, 255, 255, 0, 100};
    kiln_tensor *o = kiln_tensor_from_host(odd, 3, (const int64_t[]){1, 1, 8}, KILN_F32, KILN_CPU);
    cr_assert_eq(kiln_image_write(tmp("odd.png"), o, 0), KILN_STATUS_OK, "%s", kiln_last_error());
    uint8_t *b = bytes_of(kiln_image_read(tmp("odd.png"), 0, KILN_U8, KILN_CPU));
    for (int i = 0; i < 8; i++) cr_expect_eq(b[i], want[i], "value %g wrote %d, expected %d", odd[i], b[i], want[i]);
    free(b);
}

KT_TEST(image, f32_read_is_value_over_255) {
    kiln_tensor *u = kiln_image_read(fixture("rgb.png"), 0, KILN_U8, KILN_CPU);
    kiln_tensor *f = kiln_image_read(fixture("rgb.png"), 0, KILN_F32, KILN_CPU);
    KT_EXPECT_SHAPE(f, 3, 3, IMG_REF_H, IMG_REF_W);
    uint8_t *b = bytes_of(u);
    float got[3 * IMG_REF_H * IMG_REF_W];
    cr_assert_eq(kiln_tensor_to_host(f, got, sizeof got), KILN_STATUS_OK);
    for (int i = 0; i < 3 * IMG_REF_H * IMG_REF_W; i++) cr_expect_eq(got[i], (float)b[i] / 255.0f);
    free(b);
}

/* Measured with libjpeg-turbo 2.1.5 on the 48x40 pattern (a ramp with a 2-bit xor
 * texture, the hardest part for JPEG): quality 100 max 1 (gray) / 3 (RGB), mean 0.05 /
 * 0.43; quality 95 max 6 / 17, mean 0.9 / 2.2. The bounds leave room for other builds. */
KT_TEST(image, jpeg_round_trip_within_tolerance) {
    const struct {
        int quality, max_err;
        double mean_err;
    } q[] = {{100, 4, 0.75}, {95, 24, 3.0}, {0, 24, 3.0}};
    for (int C = 1; C <= 3; C += 2)
        for (int k = 0; k < 3; k++) {
            kiln_tensor *t = pattern_u8(C, 40, 48);
            cr_assert_eq(kiln_image_write(tmp("rt.jpg"), t, q[k].quality), KILN_STATUS_OK, "%s", kiln_last_error());
            kiln_tensor *back = kiln_image_read(tmp("rt.jpg"), 0, KILN_U8, KILN_CPU);
            KT_EXPECT_SHAPE(back, 3, C, 40, 48);
            uint8_t *a = bytes_of(t), *b = bytes_of(back);
            int mx;
            double mean;
            diff_stats(a, b, (size_t)C * 40 * 48, &mx, &mean);
            cr_log_info("jpeg C=%d quality %d: max error %d, mean %.3f", C, q[k].quality, mx, mean);
            cr_expect_leq(mx, q[k].max_err, "C=%d quality %d: max error %d", C, q[k].quality, mx);
            cr_expect_leq(mean, q[k].mean_err, "C=%d quality %d: mean error %.3f", C, q[k].quality, mean);
            free(a), free(b);
        }
    /* f32 into JPEG, and .jpeg spelled any case */
    kiln_tensor *f = kiln_tensor_cast(pattern_u8(3, 8, 8), KILN_F32);
    kiln_tensor *f01 = kiln_mul_scalar(f, 1.0 / 255.0);
    cr_assert_eq(kiln_image_write(tmp("f.JPEG"), f01, 100), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT_SHAPE(kiln_image_read(tmp("f.JPEG"), 0, KILN_F32, KILN_CPU), 3, 3, 8, 8);
}

KT_TEST(image, writes_strided_views) {
    /* a transposed (C, W, H) view written as (C, H', W') = its own shape */
    kiln_tensor *t = pattern_u8(3, 5, 9);
    kiln_tensor *v = kiln_transpose(t, 1, 2);
    cr_assert_not_null(v, "%s", kiln_last_error());
    cr_assert_eq(kiln_image_write(tmp("v.png"), v, 0), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *back = kiln_image_read(tmp("v.png"), 0, KILN_U8, KILN_CPU);
    KT_EXPECT_SHAPE(back, 3, 3, 9, 5);
    uint8_t *a = bytes_of(kiln_tensor_contiguous(v)), *b = bytes_of(back);
    cr_expect(memcmp(a, b, 3 * 45) == 0);
    free(a), free(b);
}

/* ---- files written by another library (Pillow; tests/fixtures/gen_images.py) ---------- */

static void expect_fixture(const char *file, int channels, const unsigned char *ref, int ref_c, int tol) {
    kiln_tensor *t = kiln_image_read(fixture(file), channels, KILN_U8, KILN_CPU);
    cr_assert_not_null(t, "%s: %s", file, kiln_last_error());
    KT_EXPECT_SHAPE(t, 3, ref_c, IMG_REF_H, IMG_REF_W);
    uint8_t *b = bytes_of(t);
    int mx;
    double mean;
    diff_stats(b, ref, (size_t)ref_c * IMG_REF_H * IMG_REF_W, &mx, &mean);
    cr_expect_leq(mx, tol, "%s (channels %d): max difference %d from Pillow's values", file, channels, mx);
    free(b);
    int64_t c = 0, h = 0, w = 0;
    cr_assert_eq(kiln_image_read_size(fixture(file), &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect(h == IMG_REF_H && w == IMG_REF_W, "%s: read_size %lldx%lld", file, (long long)h, (long long)w);
    if (channels == 0) cr_expect_eq(c, ref_c, "%s: read_size says %lld channels", file, (long long)c);
}

KT_TEST(image, reads_pillow_pngs_exactly) {
    expect_fixture("rgb.png", 0, img_ref_rgb_png, img_ref_rgb_png_c, 0);
    expect_fixture("gray.png", 0, img_ref_gray_png, img_ref_gray_png_c, 0);
    expect_fixture("rgba.png", 0, img_ref_rgba_png, img_ref_rgba_png_c, 0);
    expect_fixture("palette.png", 0, img_ref_palette_png, img_ref_palette_png_c, 0);
    expect_fixture("palette_trns.png", 0, img_ref_palette_trns_png, img_ref_palette_trns_png_c, 0);
    expect_fixture("gray16.png", 0, img_ref_gray16_png, img_ref_gray16_png_c, 0);
    expect_fixture("rgb16.png", 0, img_ref_rgb16_png, img_ref_rgb16_png_c, 0);
}

/* Pillow's libjpeg-turbo (3.x in its wheels) and the system's (2.1 on Debian 12) both
 * decode with the exact integer IDCT; they may still differ by one level. */
KT_TEST(image, reads_pillow_jpegs) {
    expect_fixture("baseline.jpg", 0, img_ref_baseline_jpg, img_ref_baseline_jpg_c, 1);
    expect_fixture("progressive.jpg", 0, img_ref_progressive_jpg, img_ref_progressive_jpg_c, 1);
    expect_fixture("gray.jpg", 0, img_ref_gray_jpg, img_ref_gray_jpg_c, 1);
}

KT_TEST(image, channel_conversions) {
    /* RGB -> gray is Pillow's convert("L") exactly */
    expect_fixture("rgb.png", 1, img_ref_rgb_to_gray, 1, 0);
    enum { N = IMG_REF_H * IMG_REF_W };
    /* gray -> RGB copies, -> RGBA adds 255 */
    uint8_t *g3 = bytes_of(kiln_image_read(fixture("gray.png"), 3, KILN_U8, KILN_CPU));
    uint8_t *g4 = bytes_of(kiln_image_read(fixture("gray.png"), 4, KILN_U8, KILN_CPU));
    for (int i = 0; i < N; i++) {
        for (int c = 0; c < 3; c++) {
            cr_expect_eq(g3[c * N + i], img_ref_gray_png[i]);
            cr_expect_eq(g4[c * N + i], img_ref_gray_png[i]);
        }
        cr_expect_eq(g4[3 * N + i], 255);
    }
    free(g3), free(g4);
    /* RGBA -> RGB drops alpha; -> gray is the luma of RGB */
    uint8_t *a3 = bytes_of(kiln_image_read(fixture("rgba.png"), 3, KILN_U8, KILN_CPU));
    cr_expect(memcmp(a3, img_ref_rgba_png, 3 * N) == 0);
    free(a3);
    /* gray + alpha as stored is RGBA with the gray copied; to gray drops alpha */
    uint8_t *la = bytes_of(kiln_image_read(fixture("gray_alpha.png"), 0, KILN_U8, KILN_CPU));
    uint8_t *l1 = bytes_of(kiln_image_read(fixture("gray_alpha.png"), 1, KILN_U8, KILN_CPU));
    for (int i = 0; i < N; i++) {
        for (int c = 0; c < 3; c++) cr_expect_eq(la[c * N + i], img_ref_gray_alpha_png[i]);
        cr_expect_eq(la[3 * N + i], img_ref_gray_alpha_png[N + i]);
        cr_expect_eq(l1[i], img_ref_gray_alpha_png[i]);
    }
    free(la), free(l1);
    int64_t c;
    cr_assert_eq(kiln_image_read_size(fixture("gray_alpha.png"), &c, NULL, NULL), KILN_STATUS_OK);
    cr_expect_eq(c, 4);
    /* a gray JPEG as RGB, a colour JPEG as gray */
    KT_EXPECT_SHAPE(kiln_image_read(fixture("gray.jpg"), 3, KILN_U8, KILN_CPU), 3, 3, IMG_REF_H, IMG_REF_W);
    KT_EXPECT_SHAPE(kiln_image_read(fixture("baseline.jpg"), 1, KILN_F32, KILN_CPU), 3, 1, IMG_REF_H, IMG_REF_W);
}

/* ---- errors ----------------------------------------------------------------------------- */

KT_TEST(image, missing_foreign_and_bad_arguments) {
    cr_expect_null(kiln_image_read(tmp("nope.png"), 0, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_IO, "nope.png");
    cr_expect_eq(kiln_image_read_size(tmp("nope.png"), NULL, NULL, NULL), KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "No such file");
    cr_expect_null(kiln_image_read(kt_scratch_dir(), 0, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_IO, "a directory");
    spit(tmp("text.png"), (const uint8_t *)"hello, not an image", 19);
    cr_expect_null(kiln_image_read(tmp("text.png"), 0, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "text.png' is neither a PNG nor a JPEG");
    spit(tmp("empty.jpg"), (const uint8_t *)"", 0);
    cr_expect_null(kiln_image_read(tmp("empty.jpg"), 0, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "empty");
    cr_expect_null(kiln_image_read(fixture("rgb.png"), 2, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "channels is 2");
    cr_expect_null(kiln_image_read(fixture("rgb.png"), 0, KILN_I64, KILN_CPU));
    kt_expect_error(KILN_STATUS_DTYPE, "KILN_U8");
    cr_expect_null(kiln_image_read(NULL, 0, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "path");
    /* the format comes from the bytes: a PNG named .jpg reads */
    long n;
    uint8_t *b = slurp(fixture("rgb.png"), &n);
    spit(tmp("really_png.jpg"), b, n);
    free(b);
    KT_EXPECT_SHAPE(kiln_image_read(tmp("really_png.jpg"), 0, KILN_U8, KILN_CPU), 3, 3, IMG_REF_H, IMG_REF_W);
}

/* Every prefix of a file (past the signature) is an error naming the file, never a crash. */
static void expect_truncations_fail(const char *file, const char *name) {
    long n;
    uint8_t *b = slurp(fixture(file), &n);
    for (long cut = 0; cut < n; cut++) {
        spit(tmp(name), b, cut);
        kiln_tensor *t = kiln_image_read(tmp(name), 0, KILN_U8, KILN_CPU);
        cr_expect_null(t, "%s cut to %ld of %ld bytes read without error", file, cut, n);
        if (t) continue;
        cr_expect_eq(kiln_last_status(), KILN_STATUS_FORMAT, "%s cut to %ld: %s", file, cut, kiln_last_error());
        cr_expect(strstr(kiln_last_error(), name) != NULL, "the error does not name the file: %s", kiln_last_error());
        kiln_clear_error();
    }
    free(b);
}

KT_TEST(image, truncated_files_are_errors) {
    expect_truncations_fail("rgb.png", "cut.png");
    expect_truncations_fail("palette_trns.png", "cut.png");
    expect_truncations_fail("baseline.jpg", "cut.jpg");
    expect_truncations_fail("progressive.jpg", "cut.jpg");
    spit(tmp("cut.png"), (const uint8_t *)"\x89PNG\r\n\x1a\n", 8);
    cr_expect_null(kiln_image_read(tmp("cut.png"), 0, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "corrupt or truncated PNG");
}

KT_TEST(image, corrupt_files_are_errors) {
    long n;
    /* a flipped byte inside the PNG's IDAT: its CRC no longer matches */
    uint8_t *b = slurp(fixture("rgb.png"), &n);
    b[n - 20] ^= 0x55;
    spit(tmp("bad.png"), b, n);
    cr_expect_null(kiln_image_read(tmp("bad.png"), 0, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "bad.png' is a corrupt or truncated PNG");
    free(b);
    /* JPEG: garbage in the entropy-coded data (libjpeg's "corrupt data" warning) */
    b = slurp(fixture("baseline.jpg"), &n);
    long sos = 2;
    while (sos + 4 < n && !(b[sos] == 0xff && b[sos + 1] == 0xda)) sos++;
    long data = sos + 2 + (b[sos + 2] << 8 | b[sos + 3]); /* the entropy-coded data */
    cr_assert_lt(data + 12, n);
    b[data + 10] = 0xff, b[data + 11] = 0xd9; /* an EOI marker inside the scan */
    spit(tmp("bad.jpg"), b, n);
    cr_expect_null(kiln_image_read(tmp("bad.jpg"), 0, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "bad.jpg' is a corrupt or truncated JPEG");
    free(b);
    /* a JPEG whose SOF says 0 pixels wide */
    b = slurp(fixture("baseline.jpg"), &n);
    for (long i = 2; i + 9 < n; i++)
        if (b[i] == 0xff && (b[i + 1] == 0xc0 || b[i + 1] == 0xc1)) {
            b[i + 7] = 0, b[i + 8] = 0;
            break;
        }
    spit(tmp("bad.jpg"), b, n);
    cr_expect_null(kiln_image_read(tmp("bad.jpg"), 0, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "bad.jpg");
    free(b);
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uint32_t crc = 0xffffffffu; /* bit by bit: a few bytes only */
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = crc & 1 ? (crc >> 1) ^ 0xedb88320u : crc >> 1;
    }
    return crc ^ 0xffffffffu;
}
static void put_be32(uint8_t *d, uint32_t v) {
    for (int k = 0; k < 4; k++) d[k] = (uint8_t)(v >> (24 - 8 * k));
}

/* A PNG declaring w x h 8-bit RGBA, with correct CRCs and an empty IDAT. */
static void write_png_header(const char *path, uint32_t w, uint32_t h) {
    uint8_t f[8 + 25 + 12 + 12] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    put_be32(f + 16, w), put_be32(f + 20, h);
    f[24] = 8, f[25] = 6;
    put_be32(f + 29, crc32_of(f + 12, 17));
    memcpy(f + 33, "\0\0\0\0IDAT", 8);
    put_be32(f + 41, crc32_of(f + 37, 4));
    memcpy(f + 45, "\0\0\0\0IEND", 8);
    put_be32(f + 53, crc32_of(f + 49, 4));
    spit(path, f, sizeof f);
}

KT_TEST(image, pixel_limit) {
    setenv("KILN_IMAGE_MAX_PIXELS", "34", 1); /* the fixtures are 7 x 5 = 35 */
    cr_expect_null(kiln_image_read(fixture("rgb.png"), 0, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "above the limit of 34 pixels; set KILN_IMAGE_MAX_PIXELS");
    cr_expect_null(kiln_image_read(fixture("progressive.jpg"), 0, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "progressive.jpg' is a 7x5 JPEG, 35 pixels, above the limit");
    cr_expect_eq(kiln_image_read_size(fixture("gray.png"), NULL, NULL, NULL), KILN_STATUS_FORMAT);
    kt_expect_error(KILN_STATUS_FORMAT, "gray.png");
    setenv("KILN_IMAGE_MAX_PIXELS", "35", 1);
    cr_expect_not_null(kiln_image_read(fixture("rgb.png"), 0, KILN_U8, KILN_CPU), "%s", kiln_last_error());
    setenv("KILN_IMAGE_MAX_PIXELS", "lots", 1);
    cr_expect_null(kiln_image_read(fixture("rgb.png"), 0, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "KILN_IMAGE_MAX_PIXELS='lots' is not a pixel count");
    unsetenv("KILN_IMAGE_MAX_PIXELS");
    /* above the default limit, refused from the header */
    write_png_header(tmp("huge.png"), 20000, 20000);
    cr_expect_null(kiln_image_read(tmp("huge.png"), 0, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "400000000 pixels, above the limit of 268435456");
    /* below it, but far more pixels than the file could hold: refused before allocating */
    write_png_header(tmp("big.png"), 16000, 16000);
    cr_expect_null(kiln_image_read(tmp("big.png"), 0, KILN_U8, KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "big.png' is a truncated PNG: a 16000x16000 image");
    /* read_size trusts the header within the limit */
    int64_t c, h, w;
    cr_expect_eq(kiln_image_read_size(tmp("big.png"), &c, &h, &w), KILN_STATUS_FORMAT);
    kiln_clear_error();
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

KT_TEST(image, write_errors_leave_nothing_behind) {
    kiln_tensor *rgb = pattern_u8(3, 4, 4), *rgba = pattern_u8(4, 4, 4);
    cr_expect_eq(kiln_image_write(tmp("no/such/dir/x.png"), rgb, 0), KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "no/such/dir/x.png");
    cr_expect_eq(count_entries(kt_scratch_dir()), 0);
    cr_expect_eq(kiln_image_write(tmp("x.bmp"), rgb, 0), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "name the file .png, .jpg or .jpeg");
    cr_expect_eq(kiln_image_write(tmp("png"), rgb, 0), KILN_STATUS_INVALID_ARGUMENT);
    kiln_clear_error();
    cr_expect_eq(kiln_image_write(tmp("x.png"), rgb, 101), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "quality 101");
    cr_expect_eq(kiln_image_write(tmp("x.png"), NULL, 0), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "NULL");
    cr_expect_eq(kiln_image_write(tmp("x.png"), pattern_u8(2, 3, 3), 0), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "C 1 (gray), 3 (RGB) or 4 (RGBA)");
    cr_expect_eq(kiln_image_write(tmp("x.png"), kiln_tensor_zeros(3, (const int64_t[]){1, 2, 2}, KILN_I32, KILN_CPU),
                                  0), KILN_STATUS_DTYPE);
    kt_expect_error(KILN_STATUS_DTYPE, "i32");
    cr_expect_eq(count_entries(kt_scratch_dir()), 0);
    /* RGBA to an existing JPEG: refused, the old file untouched */
    cr_assert_eq(kiln_image_write(tmp("keep.jpg"), rgb, 90), KILN_STATUS_OK, "%s", kiln_last_error());
    long before = file_size(tmp("keep.jpg"));
    cr_expect_eq(kiln_image_write(tmp("keep.jpg"), rgba, 90), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "JPEG has no alpha");
    cr_expect_eq(file_size(tmp("keep.jpg")), before);
    cr_expect_eq(count_entries(kt_scratch_dir()), 1);
    /* a replace keeps the file's mode, and leaves no temporary */
    chmod(tmp("keep.jpg"), 0600);
    cr_assert_eq(kiln_image_write(tmp("keep.jpg"), rgb, 50), KILN_STATUS_OK, "%s", kiln_last_error());
    struct stat sb;
    cr_assert_eq(stat(tmp("keep.jpg"), &sb), 0);
    cr_expect_eq(sb.st_mode & 0777, 0600);
    cr_expect_eq(count_entries(kt_scratch_dir()), 1);
    /* a directory that cannot be written */
    if (geteuid() != 0) {
        mkdir(tmp("ro"), 0500);
        cr_expect_eq(kiln_image_write(tmp("ro/x.png"), rgb, 0), KILN_STATUS_IO);
        kt_expect_error(KILN_STATUS_IO, "ro/x.png");
        cr_expect_eq(count_entries(tmp("ro")), 0);
        chmod(tmp("ro"), 0700);
    }
}

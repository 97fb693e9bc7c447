/* The example support library, part 2: PNG in and out (exact round trips, the colour
 * types libpng can hand us, and clean errors on missing, foreign, truncated and corrupt
 * files), sample grids, tiles and plots. Files go to a fresh temporary directory. */
#define _GNU_SOURCE /* nftw, to clean the temporary directory */
#include "support/kiln_test.h"
#include "support/kt_run.h"

#include <kx.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <png.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <zlib.h>

static char g_dir[64];

static void setup(void) {
    kiln_test_setup();
    strcpy(g_dir, "/tmp/kiln_ex_png_XXXXXX");
    cr_assert_not_null(mkdtemp(g_dir));
}
static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}
static void teardown(void) {
    nftw(g_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    kiln_test_teardown();
}
TestSuite(ex_png, .init = setup, .fini = teardown);

static const char *tmp(const char *name) {
    static char buf[4][256];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 256, "%s/%s", g_dir, name);
    return b;
}

static long file_size(const char *path) {
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s is missing", path);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

/* Copies the first n bytes of a file to another, optionally flipping the byte at `flip`. */
static void copy_damaged(const char *from, const char *to, long n, long flip) {
    FILE *f = fopen(from, "rb");
    cr_assert_not_null(f);
    unsigned char *buf = malloc((size_t)n);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    if (flip >= 0) buf[flip] ^= 0x5A;
    f = fopen(to, "wb");
    fwrite(buf, 1, (size_t)n, f);
    fclose(f);
    free(buf);
}

/* ---- PNG ------------------------------------------------------------------------------ */

KT_TEST(ex_png, u8_round_trip_is_exact) {
    const int H = 17, W = 23;
    for (int ch = 1; ch <= 3; ch += 2) {
        uint8_t *px = malloc((size_t)H * W * ch);
        for (int i = 0; i < H * W * ch; i++) px[i] = (uint8_t)(i * 37 + 11);
        cr_assert_eq(kx_png_write_u8(tmp("rt.png"), px, ch, H, W), KILN_STATUS_OK, "%s", kiln_last_error());
        uint8_t *back;
        int c, h, w;
        cr_assert_eq(kx_png_read_u8(tmp("rt.png"), 0, &back, &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
        cr_expect_eq(c, ch);
        cr_expect_eq(h, H);
        cr_expect_eq(w, W);
        cr_expect(memcmp(px, back, (size_t)H * W * ch) == 0, "%d-channel round trip changed bytes", ch);
        free(back);
        free(px);
    }
}

KT_TEST(ex_png, f32_round_trip_quantizes_to_8_bits) {
    const int H = 5, W = 7;
    float px[3 * 5 * 7];
    for (int i = 0; i < 3 * H * W; i++) px[i] = (float)i / (3 * H * W - 1);
    px[0] = -0.5f, px[1] = 1.5f, px[2] = NAN; /* clamped: 0, 1, 0 */
    cr_assert_eq(kx_png_write_f32(tmp("f.png"), px, 3, H, W), KILN_STATUS_OK, "%s", kiln_last_error());
    float *back;
    int c, h, w;
    cr_assert_eq(kx_png_read_f32(tmp("f.png"), 3, &back, &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, 3);
    for (int i = 3; i < 3 * H * W; i++)
        cr_expect_float_eq(back[i], floorf(px[i] * 255.0f + 0.5f) / 255.0f, 1e-7, "value %d", i);
    cr_expect_eq(back[0], 0.0f);
    cr_expect_eq(back[1], 1.0f);
    cr_expect_eq(back[2], 0.0f);
    free(back);
}

KT_TEST(ex_png, channel_conversion_on_read) {
    const uint8_t gray[6] = {0, 50, 100, 150, 200, 255};
    cr_assert_eq(kx_png_write_u8(tmp("g.png"), gray, 1, 2, 3), KILN_STATUS_OK);
    uint8_t *rgb;
    int c;
    cr_assert_eq(kx_png_read_u8(tmp("g.png"), 3, &rgb, &c, NULL, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, 3);
    for (int p = 0; p < 6; p++)
        for (int k = 0; k < 3; k++) cr_expect_eq(rgb[3 * p + k], gray[p]);
    free(rgb);
    /* Gray from pure colours uses libpng's default weights, so pure white stays 255. */
    const uint8_t col[6] = {255, 255, 255, 0, 0, 0};
    cr_assert_eq(kx_png_write_u8(tmp("c.png"), col, 3, 1, 2), KILN_STATUS_OK);
    uint8_t *g;
    cr_assert_eq(kx_png_read_u8(tmp("c.png"), 1, &g, &c, NULL, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, 1);
    cr_expect_eq(g[0], 255);
    cr_expect_eq(g[1], 0);
    free(g);
}

/* Writes a PNG of another colour type straight through libpng (palette, RGBA, 16-bit gray,
 * ...); with trns, a tRNS chunk too: alpha for a palette, else a transparent colour. */
static void write_raw(const char *path, int w, int h, int ctype, int depth, const uint8_t *data, int rowbytes,
                      bool trns) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    cr_assert(!setjmp(png_jmpbuf(png)), "libpng failed writing the test file");
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    static const png_color pal3[3] = {{255, 0, 0}, {0, 255, 0}, {10, 20, 30}};
    static const png_color pal4[4] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {200, 100, 50}};
    if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_PLTE(png, info, trns ? pal4 : pal3, trns ? 4 : 3);
    if (trns && ctype == PNG_COLOR_TYPE_PALETTE) {
        png_byte alpha[3] = {0, 128, 255}; /* entry 3 has none: opaque */
        png_set_tRNS(png, info, alpha, 3, NULL);
    } else if (trns) {
        png_color_16 key = {0, 7, 8, 9, 5}; /* the colour (7,8,9) or the gray 5 is transparent */
        png_set_tRNS(png, info, NULL, 0, &key);
    }
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, data + (size_t)y * rowbytes);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

KT_TEST(ex_png, reads_palette_rgba_and_16_bit_files) {
    const uint8_t idx[4] = {0, 1, 2, 1};
    write_raw(tmp("pal.png"), 4, 1, PNG_COLOR_TYPE_PALETTE, 8, idx, 4, false);
    uint8_t *px;
    int c, h, w;
    cr_assert_eq(kx_png_read_u8(tmp("pal.png"), 0, &px, &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, 3);
    const uint8_t want[12] = {255, 0, 0, 0, 255, 0, 10, 20, 30, 0, 255, 0};
    cr_expect(memcmp(px, want, 12) == 0, "palette not expanded");
    free(px);

    const uint8_t rgba[8] = {1, 2, 3, 4, 250, 251, 252, 0};
    write_raw(tmp("rgba.png"), 2, 1, PNG_COLOR_TYPE_RGBA, 8, rgba, 8, false);
    cr_assert_eq(kx_png_read_u8(tmp("rgba.png"), 0, &px, &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, 3);
    const uint8_t rgb[6] = {1, 2, 3, 250, 251, 252};
    cr_expect(memcmp(px, rgb, 6) == 0, "alpha not dropped");
    free(px);

    const uint8_t g16[4] = {0xFF, 0xFF, 0x80, 0x80}; /* big-endian 65535 and 32896 */
    write_raw(tmp("g16.png"), 2, 1, PNG_COLOR_TYPE_GRAY, 16, g16, 4, false);
    cr_assert_eq(kx_png_read_u8(tmp("g16.png"), 0, &px, &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, 1);
    cr_expect_eq(px[0], 255);
    cr_expect_eq(px[1], 128);
    free(px);
}

KT_TEST(ex_png, missing_foreign_truncated_and_corrupt_files_are_errors) {
    uint8_t *px = (uint8_t *)1;
    cr_expect_eq(kx_png_read_u8(tmp("nope.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "cannot open");
    cr_expect_null(px);

    FILE *f = fopen(tmp("text.png"), "w");
    fputs("this is not a picture\n", f);
    fclose(f);
    cr_expect_eq(kx_png_read_u8(tmp("text.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_FORMAT);
    kt_expect_error(KILN_STATUS_FORMAT, "is not a PNG file (wrong signature)");
    f = fopen(tmp("empty.png"), "w");
    fclose(f);
    cr_expect_eq(kx_png_read_u8(tmp("empty.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_FORMAT);
    kt_expect_error(KILN_STATUS_FORMAT, "shorter than the 8-byte signature");

    /* A real image, then pieces and damaged copies of it. */
    const int H = 40, W = 40;
    float *img = malloc(sizeof(float) * 3 * H * W);
    cr_assert_eq(kx_scene_generate(3, H, W, img, NULL), KILN_STATUS_OK);
    cr_assert_eq(kx_png_write_f32(tmp("ok.png"), img, 3, H, W), KILN_STATUS_OK);
    free(img);
    long n = file_size(tmp("ok.png"));
    const long cuts[] = {12, 30, n / 2, n - 13};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        copy_damaged(tmp("ok.png"), tmp("cut.png"), cuts[i], -1);
        cr_expect_eq(kx_png_read_u8(tmp("cut.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_FORMAT, "cut at %ld", cuts[i]);
        kt_expect_error(KILN_STATUS_FORMAT, "is corrupt or truncated");
        cr_expect_null(px);
    }
    /* Flipped bytes in the header and in the image data: libpng's CRC and zlib checks catch them. */
    const long flips[] = {17, n / 2};
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        copy_damaged(tmp("ok.png"), tmp("bad.png"), n, flips[i]);
        cr_expect_eq(kx_png_read_u8(tmp("bad.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_FORMAT, "flip at %ld",
                     flips[i]);
        kt_expect_error(KILN_STATUS_FORMAT, "is corrupt or truncated");
    }
    float *fp;
    cr_expect_eq(kx_png_read_f32(tmp("cut.png"), 3, &fp, NULL, NULL, NULL), KILN_STATUS_FORMAT);
    cr_expect_null(fp);
    kt_expect_error(KILN_STATUS_FORMAT, "cut.png");
    cr_expect_null(kx_png_read_tensor(tmp("bad.png"), 3, KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "bad.png");
}

KT_TEST(ex_png, write_errors) {
    const uint8_t px[3] = {1, 2, 3};
    cr_expect_eq(kx_png_write_u8("/nonexistent-dir/x.png", px, 3, 1, 1), KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "cannot create '/nonexistent-dir/x.png'");
    cr_expect_eq(kx_png_write_u8(tmp("x.png"), px, 2, 1, 1), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "1 (gray) or 3 (RGB)");
    cr_expect_eq(kx_png_write_u8(tmp("x.png"), px, 3, 0, 1), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "outside 1..65535");
    cr_expect_eq(kx_png_write_tensor(tmp("x.png"), KT_F32(1, KT_SHAPE(3), {0, 0, 0})), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "give (C,H,W)");
}

KT_TEST(ex_png, tensor_round_trip) {
    kiln_tensor *t = KT_F32(3, KT_SHAPE(1, 2, 3), {0, 0.2, 0.4, 0.6, 0.8, 1.0});
    cr_assert_eq(kx_png_write_tensor(tmp("t.png"), t), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *back = kx_png_read_tensor(tmp("t.png"), 0, KILN_CPU);
    KT_EXPECT_SHAPE(back, 3, 1, 2, 3);
    KT_EXPECT(back, 0.5 / 255, 0, {0, 51 / 255.0, 102 / 255.0, 153 / 255.0, 204 / 255.0, 1});
    /* A strided view (a transpose) is written by value. */
    kiln_tensor *tr = kiln_transpose(kiln_reshape(t, 2, (int64_t[]){2, 3}), 0, 1);
    cr_assert_eq(kx_png_write_tensor(tmp("tt.png"), tr), KILN_STATUS_OK, "%s", kiln_last_error());
    back = kx_png_read_tensor(tmp("tt.png"), 1, KILN_CPU);
    KT_EXPECT_SHAPE(back, 3, 1, 3, 2);
    KT_EXPECT(back, 0.5 / 255, 0, {0, 153 / 255.0, 51 / 255.0, 204 / 255.0, 102 / 255.0, 1});
}

/* ---- hostile and huge files ------------------------------------------------------------ */

/* Appends one chunk: big-endian length (`declared`, or the data's), type, data, CRC. */
static size_t put_chunk(uint8_t *out, const char *type, const uint8_t *data, uint32_t n, uint32_t declared) {
    for (int k = 0; k < 4; k++) out[k] = (uint8_t)(declared >> (24 - 8 * k));
    memcpy(out + 4, type, 4);
    if (n) memcpy(out + 8, data, n);
    uLong crc = crc32(crc32(0L, Z_NULL, 0), out + 4, 4 + n);
    for (int k = 0; k < 4; k++) out[8 + n + k] = (uint8_t)(crc >> (24 - 8 * k));
    return 12 + n;
}
static const uint8_t PNG_SIG[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
static size_t put_ihdr(uint8_t *out, uint32_t w, uint32_t h, uint8_t depth, uint8_t ctype) {
    uint8_t d[13] = {0};
    for (int k = 0; k < 4; k++) d[k] = (uint8_t)(w >> (24 - 8 * k)), d[4 + k] = (uint8_t)(h >> (24 - 8 * k));
    d[8] = depth, d[9] = ctype;
    return put_chunk(out, "IHDR", d, 13, 13);
}
static void write_bytes(const char *path, const uint8_t *b, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    fclose(f);
}

/* 44 bytes: a 1x1 gray image whose tEXt chunk claims 2 GB and holds 3 bytes. libpng
 * used to allocate the whole claim (2.1 GB resident per read); the chunk is skipped now. */
KT_TEST(ex_png, text_chunk_claiming_2_gb_costs_no_memory) {
    uint8_t b[64], *p = b;
    memcpy(p, PNG_SIG, 8), p += 8;
    p += put_ihdr(p, 1, 1, 8, PNG_COLOR_TYPE_GRAY);
    for (int k = 0; k < 4; k++) p[k] = (uint8_t)(0x7fffff00u >> (24 - 8 * k));
    memcpy(p + 4, "tEXta\0b", 7), p += 11;
    cr_assert_eq(p - b, 44);
    write_bytes(tmp("text.png"), b, 44);
    long rss = kt_peak_rss();
    double t = kx_now_seconds();
    uint8_t *px = (uint8_t *)1;
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(kx_png_read_u8(tmp("text.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_FORMAT);
        kt_expect_error(KILN_STATUS_FORMAT, "text.png' is corrupt or truncated");
        cr_expect_null(px);
    }
    cr_expect_lt(kt_peak_rss() - rss, 64L << 20, "three reads of a 44-byte file raised the peak by %ld MB",
                 (kt_peak_rss() - rss) >> 20);
    cr_expect_lt(kx_now_seconds() - t, 1.0);

    /* Whole text chunks of any size are skipped too: 20 MB of tEXt and a zTXt that
     * inflates to 50 MB before a 4x2 image that reads exactly. */
    size_t big = 20u << 20, bomb_in = 50u << 20;
    uint8_t *text = calloc(big, 1), *raw = calloc(bomb_in, 1), *file = malloc(big + (1u << 20));
    uLongf zlen = compressBound(bomb_in);
    uint8_t *ztxt = malloc(zlen + 3);
    cr_assert(text && raw && file && ztxt);
    memcpy(text, "k", 2);
    memset(text + 2, 'x', big - 2);
    memcpy(ztxt, "k\0\0", 3);
    cr_assert_eq(compress2(ztxt + 3, &zlen, raw, bomb_in, 9), Z_OK);
    const uint8_t rows[2][5] = {{0, 0, 10, 20, 30}, {0, 40, 50, 60, 70}};
    uLongf ilen = 64;
    uint8_t idat[64];
    cr_assert_eq(compress2(idat, &ilen, &rows[0][0], 10, 9), Z_OK);
    p = file;
    memcpy(p, PNG_SIG, 8), p += 8;
    p += put_ihdr(p, 4, 2, 8, PNG_COLOR_TYPE_GRAY);
    p += put_chunk(p, "tEXt", text, (uint32_t)big, (uint32_t)big);
    p += put_chunk(p, "zTXt", ztxt, (uint32_t)zlen + 3, (uint32_t)zlen + 3);
    p += put_chunk(p, "IDAT", idat, (uint32_t)ilen, (uint32_t)ilen);
    p += put_chunk(p, "IEND", NULL, 0, 0);
    write_bytes(tmp("bigtext.png"), file, (size_t)(p - file));
    free(text), free(raw), free(file), free(ztxt);
    int c, h, w;
    rss = kt_peak_rss();
    cr_assert_eq(kx_png_read_u8(tmp("bigtext.png"), 0, &px, &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect(c == 1 && h == 2 && w == 4);
    cr_expect(memcmp(px, (const uint8_t[]){0, 10, 20, 30, 40, 50, 60, 70}, 8) == 0);
    free(px);
    cr_expect_lt(kt_peak_rss() - rss, 16L << 20, "skipped text chunks cost %ld MB", (kt_peak_rss() - rss) >> 20);
}

/* A valid 16384x16384 PNG is 261 KB on disk and 268 Mpixel decoded: refused from its
 * header, above the default limit of 64 Mpixel, before anything is allocated. */
KT_TEST(ex_png, pixel_limit_from_the_header) {
    unsetenv("KILN_PNG_MAX_PIXELS");
    cr_expect_eq(kx_png_max_pixels(), 64 << 20);
    kt_write_zero_png(tmp("huge.png"), 16384, 16384);
    cr_expect_lt(file_size(tmp("huge.png")), 300000);
    long rss = kt_peak_rss();
    double t = kx_now_seconds();
    uint8_t *px = (uint8_t *)1;
    cr_expect_eq(kx_png_read_u8(tmp("huge.png"), 3, &px, NULL, NULL, NULL), KILN_STATUS_FORMAT);
    kt_expect_error(KILN_STATUS_FORMAT, "huge.png' is 16384x16384 = 268435456 pixels, above the limit of 67108864 "
                                        "pixels; set KILN_PNG_MAX_PIXELS");
    cr_expect_null(px);
    float *fp = (float *)1;
    cr_expect_eq(kx_png_read_f32(tmp("huge.png"), 3, &fp, NULL, NULL, NULL), KILN_STATUS_FORMAT);
    cr_expect_null(fp);
    kt_expect_error(KILN_STATUS_FORMAT, "above the limit");
    cr_expect_null(kx_png_read_tensor(tmp("huge.png"), 3, KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "above the limit");
    int c = 0, h = 0, w = 0;
    cr_expect_eq(kx_png_read_size(tmp("huge.png"), &c, &h, &w), KILN_STATUS_FORMAT);
    kt_expect_error(KILN_STATUS_FORMAT, "kx_png_read_size: '");
    cr_expect_lt(kt_peak_rss() - rss, 16L << 20);
    cr_expect_lt(kx_now_seconds() - t, 1.0);

    /* The variable moves the limit: the header alone is read, so this is cheap too. */
    setenv("KILN_PNG_MAX_PIXELS", "268435456", 1);
    cr_expect_eq(kx_png_read_size(tmp("huge.png"), &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect(c == 1 && h == 16384 && w == 16384);
    const uint8_t g[12] = {0};
    cr_assert_eq(kx_png_write_u8(tmp("small.png"), g, 1, 3, 4), KILN_STATUS_OK);
    setenv("KILN_PNG_MAX_PIXELS", "12", 1);
    cr_expect_eq(kx_png_read_u8(tmp("small.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    free(px);
    setenv("KILN_PNG_MAX_PIXELS", "11", 1);
    cr_expect_eq(kx_png_read_u8(tmp("small.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_FORMAT);
    kt_expect_error(KILN_STATUS_FORMAT, "is 4x3 = 12 pixels, above the limit of 11 pixels");
    const char *bad[] = {"lots", "-5", "0", " 12", "12x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv("KILN_PNG_MAX_PIXELS", bad[i], 1);
        cr_expect_eq(kx_png_max_pixels(), -1, "'%s'", bad[i]);
        cr_expect_eq(kx_png_read_u8(tmp("small.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_INVALID_ARGUMENT);
        kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "KILN_PNG_MAX_PIXELS='");
    }
    unsetenv("KILN_PNG_MAX_PIXELS");
    /* A side above 65535 is refused from the header whatever the limit. */
    uint8_t b[64], *q = b;
    memcpy(q, PNG_SIG, 8), q += 8;
    q += put_ihdr(q, 70000, 1, 8, PNG_COLOR_TYPE_GRAY);
    q += put_chunk(q, "IDAT", (const uint8_t *)"\x78\x9c", 2, 2); /* never inflated: the header stops it */
    q += put_chunk(q, "IEND", NULL, 0, 0);
    write_bytes(tmp("wide.png"), b, (size_t)(q - b));
    cr_expect_eq(kx_png_read_u8(tmp("wide.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_FORMAT);
    kt_expect_error(KILN_STATUS_FORMAT, "is 70000x1 pixels; this reader takes sides up to 65535");
}

/* A tRNS chunk gives an expanded palette an alpha channel; the reader drops it as it
 * drops RGBA's (a 4-bit palette image with tRNS was refused as corrupt). */
KT_TEST(ex_png, palette_and_gray_with_trns_read_without_alpha) {
    const uint8_t idx4[2][2] = {{0x01, 0x23}, {0x32, 0x10}}; /* 4-bit: pixels 0 1 2 3 / 3 2 1 0 */
    write_raw(tmp("p4.png"), 4, 2, PNG_COLOR_TYPE_PALETTE, 4, &idx4[0][0], 2, true);
    uint8_t *px;
    int c, h, w;
    cr_assert_eq(kx_png_read_u8(tmp("p4.png"), 0, &px, &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect(c == 3 && h == 2 && w == 4);
    const uint8_t want[24] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 200, 100, 50,
                              200, 100, 50, 0, 0, 255, 0, 255, 0, 255, 0, 0};
    cr_expect(memcmp(px, want, 24) == 0, "4-bit palette with tRNS read wrong");
    free(px);
    cr_assert_eq(kx_png_read_u8(tmp("p4.png"), 1, &px, &c, NULL, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, 1);
    cr_expect(px[0] == 54 && px[1] == 182 && px[2] == 18, "gray of red, green, blue: %d %d %d", px[0], px[1], px[2]);
    free(px);
    float *f;
    cr_assert_eq(kx_png_read_f32(tmp("p4.png"), 3, &f, &c, NULL, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_float_eq(f[3], 200 / 255.0f, 1e-7); /* R plane, pixel 3 */
    free(f);

    const uint8_t g4[2] = {0x05, 0xF7}; /* 4-bit gray with a transparent key: 0 5 15 7 */
    write_raw(tmp("g4.png"), 4, 1, PNG_COLOR_TYPE_GRAY, 4, g4, 2, true);
    cr_assert_eq(kx_png_read_u8(tmp("g4.png"), 0, &px, &c, NULL, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect(c == 1 && px[0] == 0 && px[1] == 5 * 17 && px[2] == 255 && px[3] == 7 * 17);
    free(px);
    const uint8_t rgb[6] = {7, 8, 9, 1, 2, 3};
    write_raw(tmp("rgb.png"), 2, 1, PNG_COLOR_TYPE_RGB, 8, rgb, 6, true);
    cr_assert_eq(kx_png_read_u8(tmp("rgb.png"), 0, &px, &c, NULL, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect(c == 3 && memcmp(px, rgb, 6) == 0);
    free(px);
}

KT_TEST(ex_png, directories_and_fifos_are_not_pngs) {
    uint8_t *px = (uint8_t *)1;
    cr_expect_eq(kx_png_read_u8(g_dir, 3, &px, NULL, NULL, NULL), KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "' is a directory, not a PNG file");
    cr_expect_null(px);
    cr_assert_eq(mkfifo(tmp("fifo"), 0600), 0, "%s", strerror(errno));
    double t = kx_now_seconds();
    cr_expect_eq(kx_png_read_u8(tmp("fifo"), 3, &px, NULL, NULL, NULL), KILN_STATUS_IO); /* no writer: no wait */
    kt_expect_error(KILN_STATUS_IO, "fifo' is not a regular file");
    cr_expect_lt(kx_now_seconds() - t, 1.0);
    cr_expect_eq(kx_png_read_size(g_dir, NULL, NULL, NULL), KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "is a directory");
}

/* Names in g_dir that hold ".tmp." (a writer's temporary file left behind). */
static int temp_files_left(void) {
    int n = 0;
    DIR *d = opendir(g_dir);
    for (struct dirent *e; d && (e = readdir(d));) n += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

/* The writer goes through a temporary file and a rename: a write that fails half-way
 * (here: the file-size limit, EFBIG) leaves the old file whole, removes the temporary
 * file and names the system's reason. */
KT_TEST(ex_png, write_is_atomic_and_names_errno) {
    const uint8_t old_px[4] = {1, 2, 3, 4};
    cr_assert_eq(kx_png_write_u8(tmp("keep.png"), old_px, 1, 2, 2), KILN_STATUS_OK, "%s", kiln_last_error());
    struct stat sb;
    cr_assert_eq(stat(tmp("keep.png"), &sb), 0);
    cr_expect_eq(sb.st_mode & 0777, 0644, "a picture is readable by all: mode %o", sb.st_mode & 0777);
    enum { H = 200, W = 200 };
    uint8_t *noise = malloc(3 * H * W);
    uint32_t x = 12345;
    for (int i = 0; i < 3 * H * W; i++) x = x * 1664525u + 1013904223u, noise[i] = (uint8_t)(x >> 24);
    signal(SIGXFSZ, SIG_IGN); /* the limit makes write() fail with EFBIG instead of killing us */
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 8192;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
    kiln_status st = kx_png_write_u8(tmp("keep.png"), noise, 3, H, W);
    setrlimit(RLIMIT_FSIZE, &old);
    cr_expect_eq(st, KILN_STATUS_IO);
    char want[128];
    snprintf(want, sizeof want, "keep.png' failed: %s; the previous file, if any, is untouched", strerror(EFBIG));
    kt_expect_error(KILN_STATUS_IO, want);
    cr_expect_eq(temp_files_left(), 0, "the temporary file was left behind");
    uint8_t *back;
    int c, h, w;
    cr_assert_eq(kx_png_read_u8(tmp("keep.png"), 0, &back, &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect(c == 1 && h == 2 && w == 2 && memcmp(back, old_px, 4) == 0, "the old file was damaged");
    free(back);
    /* without the limit the same write replaces it */
    cr_assert_eq(kx_png_write_u8(tmp("keep.png"), noise, 3, H, W), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(kx_png_read_u8(tmp("keep.png"), 0, &back, &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect(c == 3 && h == H && w == W && memcmp(back, noise, 3 * H * W) == 0);
    free(back);
    free(noise);

    /* A directory in the way: the rename fails with its reason, nothing is left behind. */
    cr_assert_eq(mkdir(tmp("adir"), 0755), 0);
    cr_expect_eq(kx_png_write_u8(tmp("adir"), old_px, 1, 2, 2), KILN_STATUS_IO);
    snprintf(want, sizeof want, "cannot rename the temporary file over '%s': %s", tmp("adir"), strerror(EISDIR));
    kt_expect_error(KILN_STATUS_IO, want);
    cr_expect_eq(temp_files_left(), 0);
    /* No directory: the temporary file cannot be made. */
    cr_expect_eq(kx_png_write_u8("/nonexistent-dir/x.png", old_px, 1, 2, 2), KILN_STATUS_IO);
    snprintf(want, sizeof want, "cannot create '/nonexistent-dir/x.png' (its temporary file /nonexistent-dir/x.png.tmp.");
    kt_expect_error(KILN_STATUS_IO, want);
}

/* ---- grids, tiles and plots ------------------------------------------------------------ */

static uint8_t *read_png(const char *path, int *h, int *w) {
    uint8_t *px;
    int c;
    cr_assert_eq(kx_png_read_u8(path, 0, &px, &c, h, w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_assert_eq(c, 3);
    return px;
}

static bool has_colour(const uint8_t *px, int h, int w, uint32_t rgb) {
    for (int p = 0; p < h * w; p++)
        if (px[3 * p] == (rgb >> 16 & 255) && px[3 * p + 1] == (rgb >> 8 & 255) && px[3 * p + 2] == (rgb & 255))
            return true;
    return false;
}

KT_TEST(ex_png, grid_layout_and_palette) {
    const int H = 16, W = 12, scale = 2;
    kiln_tensor *img, *msk, *cls;
    cr_assert_eq(kx_scene_batch(KX_SCENE_HELDOUT, 0, 0, 3, H, W, KILN_CPU, &img, &msk, &cls), KILN_STATUS_OK);
    kiln_tensor *cols[3] = {img, cls, msk};
    const char *titles[3] = {"INPUT", "TRUTH", "PREDICTION"};
    cr_assert_eq(kx_grid_save_png(tmp("grid.png"), 3, cols, titles, 2, scale), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    int h, w;
    uint8_t *px = read_png(tmp("grid.png"), &h, &w);
    /* margins 6, gaps 4, a 13-pixel title row, two of the three samples */
    cr_expect_eq(w, 2 * 6 + 3 * W * scale + 2 * 4);
    cr_expect_eq(h, 2 * 6 + 13 + 2 * H * scale + 4);
    /* Every label pixel of sample 1 is drawn in its palette colour. */
    const int64_t *l = kiln_tensor_data(cls);
    const float *m = kiln_tensor_data(msk);
    int x0 = 6 + W * scale + 4, y0 = 6 + 13 + H * scale + 4;
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            const uint8_t *want = kx_scene_palette[l[H * W + i * W + j]];
            const uint8_t *got = px + 3 * ((size_t)(y0 + i * scale + 1) * w + x0 + j * scale + 1);
            cr_assert(memcmp(want, got, 3) == 0, "label pixel (%d,%d)", i, j);
            const uint8_t *mg = px + 3 * ((size_t)(y0 + i * scale) * w + x0 + W * scale + 4 + j * scale);
            cr_assert_eq(mg[0], m[H * W + i * W + j] > 0.5f ? 255 : 0, "mask pixel (%d,%d)", i, j);
        }
    cr_expect(has_colour(px, h, w, 0xF0F0F0), "titles are drawn");
    free(px);
}

KT_TEST(ex_png, grid_rejects_mismatched_columns) {
    kiln_tensor *a = kiln_tensor_zeros(4, (int64_t[]){2, 3, 8, 8}, KILN_F32, KILN_CPU);
    kiln_tensor *b = kiln_tensor_zeros(3, (int64_t[]){2, 8, 9}, KILN_I64, KILN_CPU);
    kiln_tensor *c = kiln_tensor_zeros(4, (int64_t[]){2, 2, 8, 8}, KILN_F32, KILN_CPU);
    kiln_tensor *cols[2] = {a, b};
    cr_expect_eq(kx_grid_save_png(tmp("g.png"), 2, cols, NULL, 2, 1), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "column 1 is i64[2, 8, 9]");
    cols[1] = c;
    cr_expect_eq(kx_grid_save_png(tmp("g.png"), 2, cols, NULL, 2, 1), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "images are (N,3,H,W) or (N,1,H,W)");
    cols[1] = NULL;
    cr_expect_eq(kx_grid_save_png(tmp("g.png"), 2, cols, NULL, 2, 1), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "column 1 is NULL");
}

KT_TEST(ex_png, tile_layout) {
    kiln_tensor *imgs = kiln_tensor_rand(4, (int64_t[]){5, 1, 8, 6}, 0, 1, KILN_F32, KILN_CPU);
    cr_assert_eq(kx_tile_save_png(tmp("tile.png"), imgs, 3, 2), KILN_STATUS_OK, "%s", kiln_last_error());
    int h, w;
    free(read_png(tmp("tile.png"), &h, &w));
    cr_expect_eq(w, 2 * 4 + 3 * 6 * 2 + 2 * 2);
    cr_expect_eq(h, 2 * 4 + 2 * 8 * 2 + 1 * 2);
}

KT_TEST(ex_png, line_plot_and_spectrum) {
    const double loss[4] = {0.9, 0.5, NAN, 0.3}, iou[6] = {0.1, 0.4, 0.6, 0.7, 0.75, 0.8};
    const kx_series s[2] = {{"loss", loss, 4}, {"iou", iou, 6}};
    cr_assert_eq(kx_plot_lines_png(tmp("plot.png"), "training", "epoch", 2, s, 320, 200), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    int h, w;
    uint8_t *px = read_png(tmp("plot.png"), &h, &w);
    cr_expect_eq(w, 320);
    cr_expect_eq(h, 200);
    cr_expect(has_colour(px, h, w, 0x1F77B4) && has_colour(px, h, w, 0xD62728), "both series are drawn");
    free(px);

    double ev[40];
    for (int i = 0; i < 40; i++) ev[i] = 1.0 / (1 + i);
    ev[39] = -1e-9; /* rounding noise below zero is tolerated */
    cr_assert_eq(kx_plot_spectrum_png(tmp("spec.png"), "spectrum", ev, 40, 400, 240), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    px = read_png(tmp("spec.png"), &h, &w);
    cr_expect_eq(w, 400);
    cr_expect_eq(h, 240);
    cr_expect(has_colour(px, h, w, 0x1F77B4) && has_colour(px, h, w, 0xD62728), "bars and the cumulative line");
    free(px);

    const double zeros[3] = {0, 0, 0};
    cr_expect_eq(kx_plot_spectrum_png(tmp("z.png"), NULL, zeros, 3, 400, 240), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "no positive finite sum");
    cr_expect_eq(kx_plot_lines_png(tmp("z.png"), NULL, NULL, 1, s, 100, 50), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "outside 160x120");
    /* A flat or empty series still gives a valid frame. */
    const double flat[2] = {2, 2};
    const kx_series f1 = {"flat", flat, 2}, f0 = {"none", NULL, 0};
    cr_expect_eq(kx_plot_lines_png(tmp("flat.png"), NULL, NULL, 1, &f1, 200, 150), KILN_STATUS_OK);
    cr_expect_eq(kx_plot_lines_png(tmp("none.png"), NULL, NULL, 1, &f0, 200, 150), KILN_STATUS_OK);
}

KT_TEST(ex_png, canvas_text_uses_the_font) {
    kx_canvas *c = kx_canvas_new(9, 40, 0, 0, 0);
    cr_assert_not_null(c);
    cr_expect_eq(kx_canvas_text(c, 1, 1, "Ab1", 0xFFFFFF, 1), 17);
    /* 'A' row 0 is .###. : columns 1..3 lit, 0 and 4 dark */
    const uint8_t *row = c->px + 3 * (1 * 40 + 1);
    cr_expect_eq(row[0], 0);
    cr_expect_eq(row[3], 255);
    cr_expect_eq(row[9], 255);
    cr_expect_eq(row[12], 0);
    cr_expect_eq(kx_canvas_text_width("abc", 2), 34);
    kx_canvas_free(c);
}

/* The training plot: losses on a log axis above, metrics on a 0..1 axis below, markers at
 * every epoch; a one-epoch run still shows its points, inside the frame. */
KT_TEST(ex_png, training_plot_two_panels_log_losses_and_markers) {
    const double train[3] = {1.0, 0.1, 0.01}, held[3] = {2.0, 0.2, NAN}, iou[3] = {0.1, 0.5, 0.9};
    const kx_series losses[2] = {{"train_loss", train, 3}, {"heldout_loss", held, 3}};
    const kx_series metrics[1] = {{"heldout_iou", iou, 3}};
    cr_assert_eq(kx_plot_training_png(tmp("t.png"), "car_mask", "epoch", 2, losses, 1, metrics, 640, 480),
                 KILN_STATUS_OK, "%s", kiln_last_error());
    int h, w;
    uint8_t *px = read_png(tmp("t.png"), &h, &w);
    cr_expect_eq(w, 640);
    cr_expect_eq(h, 480);
    /* three colours: the two losses and the metric (its own, not a loss's) */
    cr_expect(has_colour(px, h, w, 0x1F77B4) && has_colour(px, h, w, 0xD62728) && has_colour(px, h, w, 0x2CA02C));
    /* On a log axis 1, 0.1, 0.01 are evenly spaced: the train markers' rows (the centres
     * of 0x1F77B4 runs in the plot's left part) step by the same number of pixels. */
    int rows[3], nr = 0;
    for (int x = 0; x < 530 && nr < 3; x++) { /* left of the legend (x >= 536), left to right */
        int top = -1, bot = -1;
        for (int y = 0; y < h / 2; y++) {
            const uint8_t *q = px + 3 * ((size_t)y * w + x);
            if (q[0] == 0x1F && q[1] == 0x77 && q[2] == 0xB4) {
                if (top < 0) top = y;
                bot = y;
            }
        }
        if (top >= 0 && bot - top == 4) { /* a 5-pixel marker column, no line through it */
            int mid = (top + bot) / 2;
            if (nr == 0 || abs(mid - rows[nr - 1]) > 10) rows[nr++] = mid;
            x += 8;
        }
    }
    cr_assert_eq(nr, 3, "found %d of the 3 train-loss markers", nr);
    cr_expect(abs((rows[1] - rows[0]) - (rows[2] - rows[1])) <= 2, "log spacing: rows %d %d %d", rows[0], rows[1],
              rows[2]);
    free(px);

    /* one epoch: no line to draw, but every series has its marker */
    const kx_series l1[2] = {{"train_loss", train, 1}, {"heldout_loss", held, 1}}, m1[1] = {{"iou", iou, 1}};
    cr_assert_eq(kx_plot_training_png(tmp("one.png"), NULL, "epoch", 2, l1, 1, m1, 320, 260), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    px = read_png(tmp("one.png"), &h, &w);
    int count[3] = {0};
    const uint32_t col[3] = {0x1F77B4, 0xD62728, 0x2CA02C};
    for (int p = 0; p < h * w; p++)
        for (int k = 0; k < 3; k++)
            count[k] += px[3 * p] == (col[k] >> 16) && px[3 * p + 1] == (col[k] >> 8 & 255) && px[3 * p + 2] == (col[k] & 255);
    /* each: a 5x5 marker in the plot (25) beside the legend's swatch and marker (46 together) */
    for (int k = 0; k < 3; k++) cr_expect(count[k] >= 60, "series %d has %d pixels: no visible marker", k, count[k]);
    free(px);

    cr_expect_eq(kx_plot_training_png(tmp("z.png"), NULL, NULL, 0, losses, 1, metrics, 640, 480),
                 KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "loss series");
    cr_expect_eq(kx_plot_training_png(tmp("z.png"), NULL, NULL, 2, losses, 1, metrics, 640, 200),
                 KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "two panels");
}

/* A grid of label maps with a colour key: every class's swatch is drawn in its palette
 * colour below the grid, which grows by the key's height only. */
KT_TEST(ex_png, grid_colour_key) {
    const int H = 16, W = 16, scale = 2;
    kiln_tensor *img, *cls;
    cr_assert_eq(kx_scene_batch(KX_SCENE_HELDOUT, 0, 0, 2, H, W, KILN_CPU, &img, NULL, &cls), KILN_STATUS_OK);
    kiln_tensor *cols[2] = {img, cls};
    const char *names[KX_SCENE_NUM_CLASSES];
    uint32_t colours[KX_SCENE_NUM_CLASSES];
    for (int c = 0; c < KX_SCENE_NUM_CLASSES; c++) names[c] = kx_scene_class_name(c), colours[c] = kx_scene_colour(c);
    cr_assert_eq(kx_grid_save_png_key(tmp("key.png"), 2, cols, NULL, 2, scale, KX_SCENE_NUM_CLASSES, names, colours),
                 KILN_STATUS_OK, "%s", kiln_last_error());
    int h, w;
    uint8_t *px = read_png(tmp("key.png"), &h, &w);
    int grid_h = 2 * 6 + 2 * H * scale + 4;
    cr_expect_eq(w, 2 * 6 + 2 * W * scale + 4);
    cr_expect(h > grid_h + 12, "no room for the key: %d rows, the grid alone %d", h, grid_h);
    /* each swatch's inner 6x6 pixels below the grid are its class's colour */
    for (int c = 0; c < KX_SCENE_NUM_CLASSES; c++) {
        int found = 0;
        for (int y = grid_h - 6; y < h && !found; y++)
            for (int x = 0; x + 5 < w && !found; x++) {
                bool all = true;
                for (int dy = 0; dy < 6 && all; dy++)
                    for (int dx = 0; dx < 6 && all; dx++)
                        all = y + dy < h &&
                              memcmp(px + 3 * ((size_t)(y + dy) * w + x + dx), kx_scene_palette[c], 3) == 0;
                found = all;
            }
        cr_expect(found, "no swatch for %s", names[c]);
    }
    free(px);
    cr_expect_eq(kx_scene_colour(KX_SCENE_CAR), 0xFFDC00u);
    cr_expect_eq(kx_grid_save_png_key(tmp("k.png"), 2, cols, NULL, 2, scale, 3, NULL, colours),
                 KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "colour key");
}

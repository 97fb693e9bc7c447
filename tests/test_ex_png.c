/* The example support library, part 2: PNG in and out (exact round trips, the colour
 * types libpng can hand us, and clean errors on missing, foreign, truncated and corrupt
 * files), sample grids, tiles and plots. Files go to a fresh temporary directory. */
#define _GNU_SOURCE /* nftw, to clean the temporary directory */
#include "support/kiln_test.h"

#include <kiln_examples.h>
#include <ftw.h>
#include <png.h>
#include <stdlib.h>
#include <string.h>

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
        cr_assert_eq(kiln_png_write_u8(tmp("rt.png"), px, ch, H, W), KILN_STATUS_OK, "%s", kiln_last_error());
        uint8_t *back;
        int c, h, w;
        cr_assert_eq(kiln_png_read_u8(tmp("rt.png"), 0, &back, &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
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
    cr_assert_eq(kiln_png_write_f32(tmp("f.png"), px, 3, H, W), KILN_STATUS_OK, "%s", kiln_last_error());
    float *back;
    int c, h, w;
    cr_assert_eq(kiln_png_read_f32(tmp("f.png"), 3, &back, &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
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
    cr_assert_eq(kiln_png_write_u8(tmp("g.png"), gray, 1, 2, 3), KILN_STATUS_OK);
    uint8_t *rgb;
    int c;
    cr_assert_eq(kiln_png_read_u8(tmp("g.png"), 3, &rgb, &c, NULL, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, 3);
    for (int p = 0; p < 6; p++)
        for (int k = 0; k < 3; k++) cr_expect_eq(rgb[3 * p + k], gray[p]);
    free(rgb);
    /* Gray from pure colours uses libpng's default weights, so pure white stays 255. */
    const uint8_t col[6] = {255, 255, 255, 0, 0, 0};
    cr_assert_eq(kiln_png_write_u8(tmp("c.png"), col, 3, 1, 2), KILN_STATUS_OK);
    uint8_t *g;
    cr_assert_eq(kiln_png_read_u8(tmp("c.png"), 1, &g, &c, NULL, NULL), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, 1);
    cr_expect_eq(g[0], 255);
    cr_expect_eq(g[1], 0);
    free(g);
}

/* Writes a PNG of another colour type straight through libpng (palette, RGBA, 16-bit gray). */
static void write_raw(const char *path, int w, int h, int ctype, int depth, const uint8_t *data, int rowbytes) {
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    cr_assert(!setjmp(png_jmpbuf(png)), "libpng failed writing the test file");
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    if (ctype == PNG_COLOR_TYPE_PALETTE) {
        png_color pal[3] = {{255, 0, 0}, {0, 255, 0}, {10, 20, 30}};
        png_set_PLTE(png, info, pal, 3);
    }
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, data + (size_t)y * rowbytes);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

KT_TEST(ex_png, reads_palette_rgba_and_16_bit_files) {
    const uint8_t idx[4] = {0, 1, 2, 1};
    write_raw(tmp("pal.png"), 4, 1, PNG_COLOR_TYPE_PALETTE, 8, idx, 4);
    uint8_t *px;
    int c, h, w;
    cr_assert_eq(kiln_png_read_u8(tmp("pal.png"), 0, &px, &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, 3);
    const uint8_t want[12] = {255, 0, 0, 0, 255, 0, 10, 20, 30, 0, 255, 0};
    cr_expect(memcmp(px, want, 12) == 0, "palette not expanded");
    free(px);

    const uint8_t rgba[8] = {1, 2, 3, 4, 250, 251, 252, 0};
    write_raw(tmp("rgba.png"), 2, 1, PNG_COLOR_TYPE_RGBA, 8, rgba, 8);
    cr_assert_eq(kiln_png_read_u8(tmp("rgba.png"), 0, &px, &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, 3);
    const uint8_t rgb[6] = {1, 2, 3, 250, 251, 252};
    cr_expect(memcmp(px, rgb, 6) == 0, "alpha not dropped");
    free(px);

    const uint8_t g16[4] = {0xFF, 0xFF, 0x80, 0x80}; /* big-endian 65535 and 32896 */
    write_raw(tmp("g16.png"), 2, 1, PNG_COLOR_TYPE_GRAY, 16, g16, 4);
    cr_assert_eq(kiln_png_read_u8(tmp("g16.png"), 0, &px, &c, &h, &w), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, 1);
    cr_expect_eq(px[0], 255);
    cr_expect_eq(px[1], 128);
    free(px);
}

KT_TEST(ex_png, missing_foreign_truncated_and_corrupt_files_are_errors) {
    uint8_t *px = (uint8_t *)1;
    cr_expect_eq(kiln_png_read_u8(tmp("nope.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "cannot open");
    cr_expect_null(px);

    FILE *f = fopen(tmp("text.png"), "w");
    fputs("this is not a picture\n", f);
    fclose(f);
    cr_expect_eq(kiln_png_read_u8(tmp("text.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_FORMAT);
    kt_expect_error(KILN_STATUS_FORMAT, "is not a PNG file (wrong signature)");
    f = fopen(tmp("empty.png"), "w");
    fclose(f);
    cr_expect_eq(kiln_png_read_u8(tmp("empty.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_FORMAT);
    kt_expect_error(KILN_STATUS_FORMAT, "shorter than the 8-byte signature");

    /* A real image, then pieces and damaged copies of it. */
    const int H = 40, W = 40;
    float *img = malloc(sizeof(float) * 3 * H * W);
    cr_assert_eq(kiln_scene_generate(3, H, W, img, NULL), KILN_STATUS_OK);
    cr_assert_eq(kiln_png_write_f32(tmp("ok.png"), img, 3, H, W), KILN_STATUS_OK);
    free(img);
    long n = file_size(tmp("ok.png"));
    const long cuts[] = {12, 30, n / 2, n - 13};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        copy_damaged(tmp("ok.png"), tmp("cut.png"), cuts[i], -1);
        cr_expect_eq(kiln_png_read_u8(tmp("cut.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_FORMAT, "cut at %ld", cuts[i]);
        kt_expect_error(KILN_STATUS_FORMAT, "is corrupt or truncated");
        cr_expect_null(px);
    }
    /* Flipped bytes in the header and in the image data: libpng's CRC and zlib checks catch them. */
    const long flips[] = {17, n / 2};
    for (size_t i = 0; i < sizeof flips / sizeof flips[0]; i++) {
        copy_damaged(tmp("ok.png"), tmp("bad.png"), n, flips[i]);
        cr_expect_eq(kiln_png_read_u8(tmp("bad.png"), 0, &px, NULL, NULL, NULL), KILN_STATUS_FORMAT, "flip at %ld",
                     flips[i]);
        kt_expect_error(KILN_STATUS_FORMAT, "is corrupt or truncated");
    }
    float *fp;
    cr_expect_eq(kiln_png_read_f32(tmp("cut.png"), 3, &fp, NULL, NULL, NULL), KILN_STATUS_FORMAT);
    cr_expect_null(fp);
    kt_expect_error(KILN_STATUS_FORMAT, "cut.png");
    cr_expect_null(kiln_png_read_tensor(tmp("bad.png"), 3, KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "bad.png");
}

KT_TEST(ex_png, write_errors) {
    const uint8_t px[3] = {1, 2, 3};
    cr_expect_eq(kiln_png_write_u8("/nonexistent-dir/x.png", px, 3, 1, 1), KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "cannot create '/nonexistent-dir/x.png'");
    cr_expect_eq(kiln_png_write_u8(tmp("x.png"), px, 2, 1, 1), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "1 (gray) or 3 (RGB)");
    cr_expect_eq(kiln_png_write_u8(tmp("x.png"), px, 3, 0, 1), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "outside 1..65535");
    cr_expect_eq(kiln_png_write_tensor(tmp("x.png"), KT_F32(1, KT_SHAPE(3), {0, 0, 0})), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "give (C,H,W)");
}

KT_TEST(ex_png, tensor_round_trip) {
    kiln_tensor *t = KT_F32(3, KT_SHAPE(1, 2, 3), {0, 0.2, 0.4, 0.6, 0.8, 1.0});
    cr_assert_eq(kiln_png_write_tensor(tmp("t.png"), t), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_tensor *back = kiln_png_read_tensor(tmp("t.png"), 0, KILN_CPU);
    KT_EXPECT_SHAPE(back, 3, 1, 2, 3);
    KT_EXPECT(back, 0.5 / 255, 0, {0, 51 / 255.0, 102 / 255.0, 153 / 255.0, 204 / 255.0, 1});
    /* A strided view (a transpose) is written by value. */
    kiln_tensor *tr = kiln_transpose(kiln_reshape(t, 2, (int64_t[]){2, 3}), 0, 1);
    cr_assert_eq(kiln_png_write_tensor(tmp("tt.png"), tr), KILN_STATUS_OK, "%s", kiln_last_error());
    back = kiln_png_read_tensor(tmp("tt.png"), 1, KILN_CPU);
    KT_EXPECT_SHAPE(back, 3, 1, 3, 2);
    KT_EXPECT(back, 0.5 / 255, 0, {0, 153 / 255.0, 51 / 255.0, 204 / 255.0, 102 / 255.0, 1});
}

/* ---- grids, tiles and plots ------------------------------------------------------------ */

static uint8_t *read_png(const char *path, int *h, int *w) {
    uint8_t *px;
    int c;
    cr_assert_eq(kiln_png_read_u8(path, 0, &px, &c, h, w), KILN_STATUS_OK, "%s", kiln_last_error());
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
    cr_assert_eq(kiln_scene_batch(KILN_SCENE_HELDOUT, 0, 0, 3, H, W, KILN_CPU, &img, &msk, &cls), KILN_STATUS_OK);
    kiln_tensor *cols[3] = {img, cls, msk};
    const char *titles[3] = {"INPUT", "TRUTH", "PREDICTION"};
    cr_assert_eq(kiln_grid_save_png(tmp("grid.png"), 3, cols, titles, 2, scale), KILN_STATUS_OK, "%s",
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
            const uint8_t *want = kiln_scene_palette[l[H * W + i * W + j]];
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
    cr_expect_eq(kiln_grid_save_png(tmp("g.png"), 2, cols, NULL, 2, 1), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "column 1 is i64[2, 8, 9]");
    cols[1] = c;
    cr_expect_eq(kiln_grid_save_png(tmp("g.png"), 2, cols, NULL, 2, 1), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "images are (N,3,H,W) or (N,1,H,W)");
    cols[1] = NULL;
    cr_expect_eq(kiln_grid_save_png(tmp("g.png"), 2, cols, NULL, 2, 1), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "column 1 is NULL");
}

KT_TEST(ex_png, tile_layout) {
    kiln_tensor *imgs = kiln_tensor_rand(4, (int64_t[]){5, 1, 8, 6}, 0, 1, KILN_F32, KILN_CPU);
    cr_assert_eq(kiln_tile_save_png(tmp("tile.png"), imgs, 3, 2), KILN_STATUS_OK, "%s", kiln_last_error());
    int h, w;
    free(read_png(tmp("tile.png"), &h, &w));
    cr_expect_eq(w, 2 * 4 + 3 * 6 * 2 + 2 * 2);
    cr_expect_eq(h, 2 * 4 + 2 * 8 * 2 + 1 * 2);
}

KT_TEST(ex_png, line_plot_and_spectrum) {
    const double loss[4] = {0.9, 0.5, NAN, 0.3}, iou[6] = {0.1, 0.4, 0.6, 0.7, 0.75, 0.8};
    const kiln_series s[2] = {{"loss", loss, 4}, {"iou", iou, 6}};
    cr_assert_eq(kiln_plot_lines_png(tmp("plot.png"), "training", "epoch", 2, s, 320, 200), KILN_STATUS_OK, "%s",
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
    cr_assert_eq(kiln_plot_spectrum_png(tmp("spec.png"), "spectrum", ev, 40, 400, 240), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    px = read_png(tmp("spec.png"), &h, &w);
    cr_expect_eq(w, 400);
    cr_expect_eq(h, 240);
    cr_expect(has_colour(px, h, w, 0x1F77B4) && has_colour(px, h, w, 0xD62728), "bars and the cumulative line");
    free(px);

    const double zeros[3] = {0, 0, 0};
    cr_expect_eq(kiln_plot_spectrum_png(tmp("z.png"), NULL, zeros, 3, 400, 240), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "no positive finite sum");
    cr_expect_eq(kiln_plot_lines_png(tmp("z.png"), NULL, NULL, 1, s, 100, 50), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "outside 160x120");
    /* A flat or empty series still gives a valid frame. */
    const double flat[2] = {2, 2};
    const kiln_series f1 = {"flat", flat, 2}, f0 = {"none", NULL, 0};
    cr_expect_eq(kiln_plot_lines_png(tmp("flat.png"), NULL, NULL, 1, &f1, 200, 150), KILN_STATUS_OK);
    cr_expect_eq(kiln_plot_lines_png(tmp("none.png"), NULL, NULL, 1, &f0, 200, 150), KILN_STATUS_OK);
}

KT_TEST(ex_png, canvas_text_uses_the_font) {
    kiln_canvas *c = kiln_canvas_new(9, 40, 0, 0, 0);
    cr_assert_not_null(c);
    cr_expect_eq(kiln_canvas_text(c, 1, 1, "Ab1", 0xFFFFFF, 1), 17);
    /* 'A' row 0 is .###. : columns 1..3 lit, 0 and 4 dark */
    const uint8_t *row = c->px + 3 * (1 * 40 + 1);
    cr_expect_eq(row[0], 0);
    cr_expect_eq(row[3], 255);
    cr_expect_eq(row[9], 255);
    cr_expect_eq(row[12], 0);
    cr_expect_eq(kiln_canvas_text_width("abc", 2), 34);
    kiln_canvas_free(c);
}

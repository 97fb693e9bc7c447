/* Tiled prediction (examples/support/tiles.c): the tile plan, a window whose weights are
 * normalised (a per-pixel net comes back exactly, a constant net gives the constant), no
 * seam (tiles that disagree blend continuously), an image that fits a tile equal to a
 * direct forward, and a U-Net run in tiles close to its full-image forward. */
#include "support/kiln_test.h"
#include "models/unet.h"

#include <kx.h>
#include <stdlib.h>
#include <string.h>

TestSuite(ex_tiles, .init = kiln_test_setup, .fini = kiln_test_teardown);

KT_TEST(ex_tiles, plan_covers_the_axis) {
    int p[16];
    cr_expect_eq(kx_tiles_positions(30, 32, 8, p, 16), 1);
    cr_expect_eq(p[0], 0);
    cr_expect_eq(kx_tiles_positions(100, 32, 8, p, 16), 4); /* 0 24 48 then 68 = 100 - 32 */
    cr_expect_arr_eq(p, ((int[]){0, 24, 48, 68}), 4 * sizeof(int));
    cr_expect_eq(kx_tiles_positions(56, 32, 8, p, 16), 2);
    cr_expect_arr_eq(p, ((int[]){0, 24}), 2 * sizeof(int));
    cr_expect_float_eq(kx_tiles_weight(0, 32, 8, true, false), 1.0f, 0);
    cr_expect_float_eq(kx_tiles_weight(0, 32, 8, false, false), 0.5f / 8, 1e-7);
    cr_expect_float_eq(kx_tiles_weight(31, 32, 8, false, false), 0.5f / 8, 1e-7);
    cr_expect_float_eq(kx_tiles_weight(31, 32, 8, false, true), 1.0f, 0);
    cr_expect_float_eq(kx_tiles_weight(5, 32, 8, true, true), 1.0f, 0);
}

typedef struct {
    int H, W, C;
    float *out; /* C x H x W */
    int tiles;
} sink;

static kiln_status collect(void *ctx, int y0, int nrows, int W, const float *scores, size_t plane) {
    sink *s = ctx;
    for (int c = 0; c < s->C; c++)
        memcpy(s->out + ((size_t)c * s->H + y0) * W, scores + c * plane, (size_t)nrows * W * sizeof(float));
    return KILN_STATUS_OK;
}
/* per pixel: channel 0 = R + 2G, channel 1 = B (a 1x1 "net") */
static kiln_tensor *pixelwise(void *ctx, kiln_tensor *x) {
    (void)ctx;
    kiln_tensor *r = kiln_slice(x, 1, 0, 1, 1), *g = kiln_slice(x, 1, 1, 2, 1), *b = kiln_slice(x, 1, 2, 3, 1);
    kiln_tensor *parts[2] = {kiln_add(r, kiln_mul_scalar(g, 2)), b};
    return kiln_concat(2, parts, 1);
}
/* a constant per tile, the tile's count: tiles that disagree as much as possible */
static kiln_tensor *tile_id(void *ctx, kiln_tensor *x) {
    sink *s = ctx;
    return kiln_tensor_full(4, (int64_t[]){1, 1, kiln_tensor_size(x, 2), kiln_tensor_size(x, 3)}, (double)s->tiles++,
                            KILN_F32, KILN_CPU);
}

static uint8_t *random_image(int H, int W, unsigned seed) {
    uint8_t *rgb = malloc((size_t)3 * H * W);
    for (int i = 0; i < 3 * H * W; i++) seed = seed * 1103515245u + 12345u, rgb[i] = (uint8_t)(seed >> 16);
    return rgb;
}

KT_TEST(ex_tiles, weights_are_normalised_and_blends_have_no_seam) {
    enum { H = 70, W = 101 };
    uint8_t *rgb = random_image(H, W, 1);
    sink s = {H, W, 2, malloc(sizeof(float) * 2 * H * W), 0};
    cr_assert_eq(kx_tiles_run(rgb, H, W, 32, 8, 8, 2, KILN_CPU, pixelwise, NULL, collect, &s), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    double worst = 0;
    for (int i = 0; i < H * W; i++) {
        double a = fabs(s.out[i] - (rgb[i] + 2.0 * rgb[H * W + i]) / 255.0), b = fabs(s.out[H * W + i] - rgb[2 * H * W + i] / 255.0);
        worst = fmax(worst, fmax(a, b));
    }
    cr_expect(worst < 2e-6, "a per-pixel net through the tiles is off by %g", worst);
    /* 3 x 4 tiles numbered 0..11: the blend moves between neighbours at most
     * (max - min) * 1.5 / overlap per pixel (the ramp's slope is 1 / overlap), no jump */
    s.C = 1;
    cr_assert_eq(kx_tiles_run(rgb, H, W, 32, 8, 8, 1, KILN_CPU, tile_id, &s, collect, &s), KILN_STATUS_OK);
    cr_expect_eq(s.tiles, 12);
    double step = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            if (x + 1 < W) step = fmax(step, fabs(s.out[y * W + x + 1] - s.out[y * W + x]));
            if (y + 1 < H) step = fmax(step, fabs(s.out[(y + 1) * W + x] - s.out[y * W + x]));
        }
    cr_expect(step <= 11.0 * 1.5 / 8, "a jump of %g between neighbouring pixels (tiles 0..11, overlap 8)", step);
    cr_expect(step > 0.1, "the tiles blended, %g", step);
    free(s.out);
    free(rgb);
}

static kiln_tensor *unet_forward(void *ctx, kiln_tensor *x) { return kiln_module_forward(ctx, x); }

KT_TEST(ex_tiles, a_unet_in_tiles_matches_its_full_forward) {
    kiln_manual_seed(3);
    kiln_module *net = unet_create(3, 1, 16, KILN_F32);
    cr_assert(net);
    kiln_module_train(net, false);
    kiln_no_grad_begin();
    /* 20 x 36 fits a 64 tile: one tile, padded to 24 x 40, is exactly a direct forward */
    enum { h = 20, w = 36 };
    uint8_t *small = random_image(h, w, 2);
    float pad[3 * 24 * 40];
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < 24; y++)
            for (int x = 0; x < 40; x++) pad[(c * 24 + y) * 40 + x] = small[(c * h + (y < h ? y : h - 1)) * w + (x < w ? x : w - 1)] / 255.0f;
    sink s = {h, w, 1, malloc(sizeof(float) * h * w), 0};
    cr_assert_eq(kx_tiles_run(small, h, w, 64, 16, 8, 1, KILN_CPU, unet_forward, net, collect, &s), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    kiln_scope *sc = kiln_scope_begin();
    kiln_tensor *full = kiln_module_forward(net, kiln_tensor_from_host(pad, 4, (int64_t[]){1, 3, 24, 40}, KILN_F32, KILN_CPU));
    cr_assert(full);
    const float *f = kiln_tensor_data(kiln_tensor_contiguous(full));
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) cr_assert_eq(s.out[y * w + x], f[y * 40 + x], "pixel %d,%d", x, y);
    kiln_scope_end(sc);
    free(s.out);
    free(small);
    /* 96 x 128 in tiles of 64 overlapping by 16 against one forward of the whole image:
     * the tiles see less context near their edges, which the window weighs down. This
     * random U-Net's logits span 0.087..0.108; measured: max |diff| 8.6e-4 (4% of the
     * range), mean 2.7e-5 (0.1%). The bounds: 10% and 2% of the range. */
    enum { H = 96, W = 128 };
    uint8_t *rgb = random_image(H, W, 4);
    float *x = malloc(sizeof(float) * 3 * H * W);
    for (int i = 0; i < 3 * H * W; i++) x[i] = rgb[i] / 255.0f;
    sink t = {H, W, 1, malloc(sizeof(float) * H * W), 0};
    cr_assert_eq(kx_tiles_run(rgb, H, W, 64, 16, 8, 1, KILN_CPU, unet_forward, net, collect, &t), KILN_STATUS_OK);
    sc = kiln_scope_begin();
    full = kiln_module_forward(net, kiln_tensor_from_host(x, 4, (int64_t[]){1, 3, H, W}, KILN_F32, KILN_CPU));
    f = kiln_tensor_data(kiln_tensor_contiguous(full));
    double worst = 0, mean = 0, lo = 1e9, hi = -1e9;
    for (int i = 0; i < H * W; i++) {
        worst = fmax(worst, fabs(t.out[i] - f[i])), mean += fabs(t.out[i] - f[i]) / (H * W);
        lo = fmin(lo, f[i]), hi = fmax(hi, f[i]);
    }
    cr_log_info("tiled vs full U-Net: max |diff| %g, mean %g, logits in [%g, %g]", worst, mean, lo, hi);
    fprintf(stderr, "tiled vs full U-Net: max |diff| %g, mean %g, logits in [%g, %g]\n", worst, mean, lo, hi);
    cr_expect(worst < 0.1 * (hi - lo) && mean < 0.02 * (hi - lo), "tiled vs full: max %g, mean %g of a range %g", worst, mean, hi - lo);
    kiln_scope_end(sc);
    kiln_no_grad_end();
    free(t.out), free(x), free(rgb);
    kiln_module_free(net);
}

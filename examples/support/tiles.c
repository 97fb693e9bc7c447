/* Prediction on images of any size: a fully convolutional net run over overlapping
 * tiles, blended by a linear-ramp window normalised by the summed weights, with the
 * scores kept for one band of tile rows only, so memory follows the tile, not the image. */
#include "kx.h"

#include <stdlib.h>
#include <string.h>

int kx_tiles_positions(int L, int tile, int overlap, int *pos, int cap) {
    if (L <= tile) {
        if (cap > 0) pos[0] = 0;
        return 1;
    }
    int stride = tile - overlap, n = 0;
    for (int p = 0;; p += stride) {
        int q = p + tile >= L ? L - tile : p; /* the last tile ends at the edge */
        if (n < cap) pos[n] = q;
        n++;
        if (q == L - tile) break;
    }
    return n;
}

float kx_tiles_weight(int i, int t, int overlap, bool first, bool last) {
    if (first && last) return 1.0f;
    float w = 1.0f;
    /* the ramp never reaches 0 (the +0.5 centres it on the pixel), so every pixel has
     * some weight; a side at the image's edge keeps 1, so the border is not down-weighted */
    if (!first && i < overlap) w = (i + 0.5f) / (float)overlap;
    if (!last && i >= t - overlap) {
        float r = (t - i - 0.5f) / (float)overlap;
        if (r < w) w = r;
    }
    return w;
}

kiln_status kx_tiles_run(const uint8_t *rgb, int H, int W, int tile, int overlap, int align, int C, kiln_device dev,
                         kx_tile_forward forward, void *fctx, kx_tile_rows rows, void *rctx) {
    if (tile < align || tile % align || overlap < 0 || overlap >= tile / 2 + 1 || H < 1 || W < 1 || C < 1)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_tiles_run: tile %d (a multiple of %d), overlap %d "
                              "(0..tile/2), a %dx%d image, %d channels", tile, align, overlap, W, H, C);
    /* an axis that fits one tile is one tile, padded up to the alignment */
    int th = H <= tile ? (H + align - 1) / align * align : tile, tw = W <= tile ? (W + align - 1) / align * align : tile;
    int ny = kx_tiles_positions(H, th, overlap, NULL, 0), nx = kx_tiles_positions(W, tw, overlap, NULL, 0);
    int *py = malloc((size_t)ny * sizeof *py), *px = malloc((size_t)nx * sizeof *px);
    float *wy = malloc((size_t)th * 2 * sizeof *wy), *wx = malloc((size_t)tw * 4 * sizeof *wx);
    size_t plane = (size_t)th * W;
    float *acc = calloc((size_t)C * plane, sizeof *acc), *wsum = calloc(plane, sizeof *wsum);
    float *x = malloc((size_t)3 * th * tw * sizeof *x), *y = malloc((size_t)C * th * tw * sizeof *y);
    kiln_status st = py && px && wy && wx && acc && wsum && x && y
                         ? KILN_STATUS_OK
                         : kiln_set_error(KILN_STATUS_OOM, "out of memory for the tiles of a %dx%d image", W, H);
    if (!st) kx_tiles_positions(H, th, overlap, py, ny), kx_tiles_positions(W, tw, overlap, px, nx);
    int band = 0; /* acc and wsum hold rows band .. band + th - 1 */
    for (int ty = 0; ty < ny && !st; ty++) {
        /* rows above this tile row are final: hand them over, then move the band down */
        int done = py[ty] - band;
        if (done > 0) {
            for (size_t i = 0; i < (size_t)done * W; i++)
                for (int c = 0; c < C; c++) acc[c * plane + i] /= wsum[i];
            st = rows(rctx, band, done, W, acc, plane);
            size_t keep = (size_t)(th - done) * W, off = (size_t)done * W;
            for (int c = 0; c < C; c++) {
                memmove(acc + c * plane, acc + c * plane + off, keep * sizeof *acc);
                memset(acc + c * plane + keep, 0, off * sizeof *acc);
            }
            memmove(wsum, wsum + off, keep * sizeof *wsum);
            memset(wsum + keep, 0, off * sizeof *wsum);
            band = py[ty];
        }
        for (int i = 0; i < th; i++) wy[i] = kx_tiles_weight(i, th, overlap, ty == 0, ty == ny - 1);
        for (int tx = 0; tx < nx && !st; tx++) {
            for (int j = 0; j < tw; j++) wx[j] = kx_tiles_weight(j, tw, overlap, tx == 0, tx == nx - 1);
            /* the tile, edge pixels repeated where it extends past a short axis */
            for (int c = 0; c < 3; c++)
                for (int i = 0; i < th; i++) {
                    int yy = py[ty] + i < H ? py[ty] + i : H - 1;
                    const uint8_t *src = rgb + ((size_t)c * H + yy) * W;
                    float *dst = x + ((size_t)c * th + i) * tw;
                    for (int j = 0; j < tw; j++) dst[j] = src[px[tx] + j < W ? px[tx] + j : W - 1] / 255.0f;
                }
            kiln_scope *s = kiln_scope_begin();
            kiln_tensor *in = kiln_tensor_from_host(x, 4, (int64_t[]){1, 3, th, tw}, KILN_F32, dev);
            kiln_tensor *out = in ? forward(fctx, in) : NULL;
            if (!out) st = kiln_last_status() ? kiln_last_status()
                                              : kiln_set_error(KILN_STATUS_STATE, "kx_tiles_run: the forward gave NULL");
            else if (kiln_tensor_ndim(out) != 4 || kiln_tensor_size(out, 1) != C || kiln_tensor_size(out, 2) != th ||
                     kiln_tensor_size(out, 3) != tw)
                st = kiln_set_error(KILN_STATUS_SHAPE, "kx_tiles_run: the forward of a (1,3,%d,%d) tile must give "
                                    "(1,%d,%d,%d)", th, tw, C, th, tw);
            else
                st = kiln_tensor_to_host(out, y, (size_t)C * th * tw * sizeof *y);
            kiln_scope_end(s);
            for (int i = 0; i < th && !st; i++) {
                int yy = py[ty] + i - band;
                if (py[ty] + i >= H) break;
                for (int j = 0; j < tw && px[tx] + j < W; j++) {
                    float w = wy[i] * wx[j];
                    size_t o = (size_t)yy * W + (size_t)(px[tx] + j);
                    wsum[o] += w;
                    for (int c = 0; c < C; c++) acc[c * plane + o] += w * y[((size_t)c * th + i) * tw + j];
                }
            }
        }
    }
    if (!st) { /* the last band */
        int done = H - band;
        for (size_t i = 0; i < (size_t)done * W; i++)
            for (int c = 0; c < C; c++) acc[c * plane + i] /= wsum[i];
        st = rows(rctx, band, done, W, acc, plane);
    }
    free(py), free(px), free(wy), free(wx), free(acc), free(wsum), free(x), free(y);
    return st;
}

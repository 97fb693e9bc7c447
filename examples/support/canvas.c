/* An RGB canvas to compose pictures on: rectangles, lines, a built-in 5x7 font, float
 * images and label maps; and the sample grids the examples write (input | truth |
 * prediction, one row per sample). */
#include "kx.h"

#include <stdlib.h>
#include <string.h>

/* ---- the font: 5 columns x 7 rows, bit 4 is the leftmost column -------------------- */

static const char glyph_chars[] = " 0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.,-+:/%()=_|!?<>'*#";
static const uint8_t glyphs[][7] = {
    {0, 0, 0, 0, 0, 0, 0},                            /* space */
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E},       /* 0 */
    {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E},       /* 1 */
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F},       /* 2 */
    {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E},       /* 3 */
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02},       /* 4 */
    {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E},       /* 5 */
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E},       /* 6 */
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},       /* 7 */
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E},       /* 8 */
    {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C},       /* 9 */
    {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11},       /* A */
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E},       /* B */
    {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E},       /* C */
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C},       /* D */
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F},       /* E */
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10},       /* F */
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F},       /* G */
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11},       /* H */
    {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E},       /* I */
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C},       /* J */
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11},       /* K */
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F},       /* L */
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11},       /* M */
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11},       /* N */
    {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},       /* O */
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10},       /* P */
    {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D},       /* Q */
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11},       /* R */
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E},       /* S */
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},       /* T */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},       /* U */
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04},       /* V */
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A},       /* W */
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11},       /* X */
    {0x11, 0x11, 0x0A, 0x04, 0x04, 0x04, 0x04},       /* Y */
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F},       /* Z */
    {0, 0, 0, 0, 0, 0x0C, 0x0C},                      /* . */
    {0, 0, 0, 0, 0x0C, 0x04, 0x08},                   /* , */
    {0, 0, 0, 0x1F, 0, 0, 0},                         /* - */
    {0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0},             /* + */
    {0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0},                /* : */
    {0, 0x01, 0x02, 0x04, 0x08, 0x10, 0},             /* / */
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03},       /* % */
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02},       /* ( */
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08},       /* ) */
    {0, 0, 0x1F, 0, 0x1F, 0, 0},                      /* = */
    {0, 0, 0, 0, 0, 0, 0x1F},                         /* _ */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},       /* | */
    {0x04, 0x04, 0x04, 0x04, 0x04, 0, 0x04},          /* ! */
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04},          /* ? */
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02},       /* < */
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08},       /* > */
    {0x04, 0x04, 0x08, 0, 0, 0, 0},                   /* ' */
    {0, 0x04, 0x15, 0x0E, 0x15, 0x04, 0},             /* * */
    {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A},       /* # */
};

static const uint8_t *glyph(char ch) {
    if (ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
    const char *at = ch ? strchr(glyph_chars, ch) : NULL;
    return glyphs[at ? at - glyph_chars : (int)(strchr(glyph_chars, '?') - glyph_chars)];
}

/* ---- the canvas ---------------------------------------------------------------------- */

kx_canvas *kx_canvas_new(int h, int w, uint8_t r, uint8_t g, uint8_t b) {
    if (h <= 0 || w <= 0 || h > 32768 || w > 32768) {
        kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_canvas_new: size %dx%d is outside 1..32768", h, w);
        return NULL;
    }
    kx_canvas *c = malloc(sizeof *c);
    uint8_t *px = malloc((size_t)h * w * 3);
    if (!c || !px) {
        free(c);
        free(px);
        kiln_set_error(KILN_STATUS_OOM, "kx_canvas_new: out of memory for %dx%d", h, w);
        return NULL;
    }
    for (size_t p = 0; p < (size_t)h * w; p++) px[3 * p] = r, px[3 * p + 1] = g, px[3 * p + 2] = b;
    c->h = h, c->w = w, c->px = px;
    return c;
}

void kx_canvas_free(kx_canvas *c) {
    if (!c) return;
    free(c->px);
    free(c);
}

kiln_status kx_canvas_save_png(const kx_canvas *c, const char *path) {
    if (!c) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_canvas_save_png: canvas is NULL");
    return kx_png_write_u8(path, c->px, 3, c->h, c->w);
}

static inline void plot(kx_canvas *c, int x, int y, uint32_t rgb) {
    if (x < 0 || y < 0 || x >= c->w || y >= c->h) return;
    uint8_t *p = c->px + ((size_t)y * c->w + x) * 3;
    p[0] = (uint8_t)(rgb >> 16), p[1] = (uint8_t)(rgb >> 8), p[2] = (uint8_t)rgb;
}

void kx_canvas_fill_rect(kx_canvas *c, int x, int y, int w, int h, uint32_t rgb) {
    int x0 = x < 0 ? 0 : x, y0 = y < 0 ? 0 : y;
    int x1 = x + w > c->w ? c->w : x + w, y1 = y + h > c->h ? c->h : y + h;
    for (int yy = y0; yy < y1; yy++)
        for (int xx = x0; xx < x1; xx++) plot(c, xx, yy, rgb);
}

void kx_canvas_line(kx_canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
    for (int guard = 0; guard < 1 << 20; guard++) { /* Bresenham; the guard only bounds absurd inputs */
        plot(c, x0, y0, rgb);
        if (x0 == x1 && y0 == y1) break;
        int e2 = 2 * err;
        if (e2 >= dy) err += dy, x0 += sx;
        if (e2 <= dx) err += dx, y0 += sy;
    }
}

int kx_canvas_text_width(const char *s, int scale) {
    int n = s ? (int)strlen(s) : 0;
    return n ? (6 * n - 1) * scale : 0;
}

int kx_canvas_text(kx_canvas *c, int x, int y, const char *s, uint32_t rgb, int scale) {
    if (!s) return 0;
    if (scale < 1) scale = 1;
    for (const char *ch = s; *ch; ch++) {
        const uint8_t *g = glyph(*ch);
        int gx = x + (int)(ch - s) * 6 * scale;
        for (int row = 0; row < 7; row++)
            for (int col = 0; col < 5; col++)
                if (g[row] >> (4 - col) & 1) kx_canvas_fill_rect(c, gx + col * scale, y + row * scale, scale, scale, rgb);
    }
    return kx_canvas_text_width(s, scale);
}

static inline uint8_t to_byte(float v) {
    v = v > 0 ? (v < 1 ? v : 1) : 0;
    return (uint8_t)(v * 255.0f + 0.5f);
}

void kx_canvas_image_f32(kx_canvas *c, int x, int y, const float *chw, int channels, int h, int w, int scale) {
    size_t HW = (size_t)h * w;
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            size_t p = (size_t)i * w + j;
            uint8_t r = to_byte(chw[p]);
            uint8_t g = channels == 3 ? to_byte(chw[HW + p]) : r, b = channels == 3 ? to_byte(chw[2 * HW + p]) : r;
            kx_canvas_fill_rect(c, x + j * scale, y + i * scale, scale, scale, (uint32_t)r << 16 | (uint32_t)g << 8 | b);
        }
}

void kx_canvas_labels(kx_canvas *c, int x, int y, const int64_t *labels, int h, int w, int scale) {
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            int64_t l = labels[(size_t)i * w + j];
            uint32_t rgb = 0;
            if (l >= 0 && l < KX_SCENE_NUM_CLASSES) {
                const uint8_t *p = kx_scene_palette[l];
                rgb = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
            }
            kx_canvas_fill_rect(c, x + j * scale, y + i * scale, scale, scale, rgb);
        }
}

/* ---- grids --------------------------------------------------------------------------- */

typedef struct {
    bool labels; /* class indices rather than an image */
    int channels;
    void *host;  /* the first rows samples: f32 CHW images or i64 labels */
} column;

/* Checks one grid column and copies its first `rows` samples to the host. */
static kiln_status load_column(const char *fn, kiln_tensor *t, int k, int64_t rows, int64_t H, int64_t W, column *col) {
    kiln_dtype dt = kiln_tensor_dtype(t);
    bool is_float = dt == KILN_F32 || dt == KILN_F64;
    int nd = kiln_tensor_ndim(t);
    int64_t C = nd == 4 ? kiln_tensor_size(t, 1) : 1;
    char b[96];
    if (kiln_tensor_size(t, -2) != H || kiln_tensor_size(t, -1) != W || kiln_tensor_size(t, 0) < rows)
        return kiln_set_error(KILN_STATUS_SHAPE, "%s: column %d is %s but column 0 has %lld samples of %lldx%lld", fn, k,
                              kiln_tensor_describe(t, b, sizeof b), (long long)rows, (long long)H, (long long)W);
    if (is_float ? (nd != 4 || (C != 1 && C != 3)) : (nd != 3 && !(nd == 4 && C == 1)))
        return kiln_set_error(KILN_STATUS_SHAPE,
                              "%s: column %d is %s; images are (N,3,H,W) or (N,1,H,W) floats, labels (N,H,W) or "
                              "(N,1,H,W) integers",
                              fn, k, kiln_tensor_describe(t, b, sizeof b));
    col->labels = !is_float;
    col->channels = (int)C;
    kiln_tensor *first = kiln_slice(t, 0, 0, rows, 1);
    kiln_tensor *conv = first ? kiln_tensor_cast(first, is_float ? KILN_F32 : KILN_I64) : NULL;
    if (!conv) return kiln_last_status();
    size_t bytes = (size_t)kiln_tensor_numel(conv) * (is_float ? sizeof(float) : sizeof(int64_t));
    col->host = malloc(bytes);
    if (!col->host) return kiln_set_error(KILN_STATUS_OOM, "%s: out of memory copying column %d", fn, k);
    return kiln_tensor_to_host(conv, col->host, bytes);
}

kiln_status kx_grid_save_png(const char *path, int ncols, kiln_tensor *const *cols, const char *const *titles,
                             int max_rows, int scale) {
    return kx_grid_save_png_key(path, ncols, cols, titles, max_rows, scale, 0, NULL, NULL);
}

enum { KEY_SWATCH = 8, KEY_ROW = 12, KEY_GAP = 10 };

/* Lays out (draw: and draws) the colour key from (x0, y0) within width w, one entry a
 * swatch and a name, wrapping to new rows; returns the height it takes. */
static int colour_key(kx_canvas *c, int x0, int y0, int w, int n, const char *const *names, const uint32_t *colours) {
    int x = x0, y = y0;
    for (int i = 0; i < n; i++) {
        const char *name = names && names[i] ? names[i] : "?";
        int ew = KEY_SWATCH + 4 + kx_canvas_text_width(name, 1);
        if (x > x0 && x + ew > x0 + w) x = x0, y += KEY_ROW;
        if (c) {
            kx_canvas_fill_rect(c, x, y, KEY_SWATCH, KEY_SWATCH, 0xF0F0F0); /* a light rim: dark colours show */
            kx_canvas_fill_rect(c, x + 1, y + 1, KEY_SWATCH - 2, KEY_SWATCH - 2, colours ? colours[i] : 0);
            kx_canvas_text(c, x + KEY_SWATCH + 4, y + 1, name, 0xF0F0F0, 1);
        }
        x += ew + KEY_GAP;
    }
    return n ? y - y0 + KEY_ROW : 0;
}

kiln_status kx_grid_save_png_key(const char *path, int ncols, kiln_tensor *const *cols, const char *const *titles,
                                 int max_rows, int scale, int nclasses, const char *const *names,
                                 const uint32_t *colours) {
    const char *fn = "kx_grid_save_png";
    if (ncols < 1 || !cols) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: no columns given", fn);
    if (nclasses < 0 || nclasses > 256 || (nclasses && (!names || !colours)))
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: a colour key of %d classes needs 0..256 names and "
                              "colours", fn, nclasses);
    for (int k = 0; k < ncols; k++)
        if (!cols[k])
            return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: column %d is NULL (an earlier op failed?)", fn, k);
    if (max_rows < 1 || scale < 1 || scale > 16)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: max_rows %d must be >= 1 and scale %d in 1..16", fn,
                              max_rows, scale);
    int64_t N = kiln_tensor_size(cols[0], 0), H = kiln_tensor_size(cols[0], -2), W = kiln_tensor_size(cols[0], -1);
    int64_t rows = N < max_rows ? N : max_rows;
    if (kiln_tensor_ndim(cols[0]) < 3 || rows < 1)
        return kiln_set_error(KILN_STATUS_SHAPE, "%s: column 0 must be (N,C,H,W) or (N,H,W) with N >= 1", fn);
    column *cs = calloc((size_t)ncols, sizeof *cs);
    if (!cs) return kiln_set_error(KILN_STATUS_OOM, "%s: out of memory", fn);
    kiln_no_grad_begin();
    kiln_scope *s = kiln_scope_begin();
    kiln_status st = KILN_STATUS_OK;
    for (int k = 0; k < ncols && !st; k++) st = load_column(fn, cols[k], k, rows, H, W, &cs[k]);
    kiln_scope_end(s);
    kiln_no_grad_end();

    const int margin = 6, gap = 4, pw = (int)W * scale, ph = (int)H * scale;
    int title_h = titles ? 7 + 6 : 0, grid_w = ncols * pw + (ncols - 1) * gap;
    int grid_h = (int)rows * ph + ((int)rows - 1) * gap;
    int key_h = nclasses ? gap + colour_key(NULL, 0, 0, grid_w, nclasses, names, colours) : 0;
    kx_canvas *c = NULL;
    if (!st) {
        c = kx_canvas_new(2 * margin + title_h + grid_h + key_h, 2 * margin + grid_w, 32, 32, 36);
        if (!c) st = kiln_last_status();
    }
    if (!st && nclasses) colour_key(c, margin, margin + title_h + grid_h + gap + 2, grid_w, nclasses, names, colours);
    for (int k = 0; k < ncols && !st; k++) {
        int x = margin + k * (pw + gap);
        if (titles && titles[k]) kx_canvas_text(c, x, margin, titles[k], 0xF0F0F0, 1);
        for (int64_t i = 0; i < rows; i++) {
            int y = margin + title_h + (int)i * (ph + gap);
            size_t per = (size_t)cs[k].channels * H * W;
            if (cs[k].labels)
                kx_canvas_labels(c, x, y, (const int64_t *)cs[k].host + i * H * W, (int)H, (int)W, scale);
            else
                kx_canvas_image_f32(c, x, y, (const float *)cs[k].host + i * per, cs[k].channels, (int)H, (int)W,
                                    scale);
        }
    }
    if (!st) st = kx_canvas_save_png(c, path);
    kx_canvas_free(c);
    for (int k = 0; k < ncols; k++) free(cs[k].host);
    free(cs);
    return st;
}

kiln_status kx_tile_save_png(const char *path, kiln_tensor *images, int per_row, int scale) {
    const char *fn = "kx_tile_save_png";
    if (!images) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: images is NULL (an earlier op failed?)", fn);
    if (per_row < 1 || scale < 1 || scale > 16)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: per_row %d must be >= 1 and scale %d in 1..16", fn,
                              per_row, scale);
    int64_t N = kiln_tensor_size(images, 0), H = kiln_tensor_size(images, -2), W = kiln_tensor_size(images, -1);
    if (kiln_tensor_ndim(images) != 4 || N < 1)
        return kiln_set_error(KILN_STATUS_SHAPE, "%s: images must be (N,C,H,W) with N >= 1", fn);
    column col = {0};
    kiln_no_grad_begin();
    kiln_scope *s = kiln_scope_begin();
    kiln_status st = load_column(fn, images, 0, N, H, W, &col);
    kiln_scope_end(s);
    kiln_no_grad_end();
    if (!st && col.labels)
        st = kiln_set_error(KILN_STATUS_DTYPE, "%s: images must be floats, not %s", fn,
                            kiln_dtype_name(kiln_tensor_dtype(images)));
    int cols = N < per_row ? (int)N : per_row, rows = (int)((N + per_row - 1) / per_row);
    const int margin = 4, gap = 2, pw = (int)W * scale, ph = (int)H * scale;
    kx_canvas *c = NULL;
    if (!st) {
        c = kx_canvas_new(2 * margin + rows * ph + (rows - 1) * gap, 2 * margin + cols * pw + (cols - 1) * gap, 32, 32,
                          36);
        if (!c) st = kiln_last_status();
    }
    for (int64_t i = 0; i < N && !st; i++) {
        size_t per = (size_t)col.channels * H * W;
        kx_canvas_image_f32(c, margin + (int)(i % per_row) * (pw + gap), margin + (int)(i / per_row) * (ph + gap),
                            (const float *)col.host + i * per, col.channels, (int)H, (int)W, scale);
    }
    if (!st) st = kx_canvas_save_png(c, path);
    kx_canvas_free(c);
    free(col.host);
    return st;
}

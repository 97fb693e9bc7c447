/* Support code shared by the example programs: synthetic aerial scenes, PNG in and
 * out, image grids and plots, the Fashion-MNIST IDX reader, progress output, JSON
 * result lines and command-line parsing. Plain C on the CPU plus libpng and zlib.
 * Fallible calls return a kiln_status (or NULL) and set kiln's error message. */
#ifndef KX_H
#define KX_H

#include <kiln.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- synthetic aerial scenes ----------------------------------------------------
 * A scene is a top-down view at a fixed ground resolution (a car is about 9x4 px),
 * so a larger image shows more ground and more objects, not bigger ones. */

typedef enum {
    KX_SCENE_GROUND = 0, /* grass and bare soil                  palette (150,130, 90) */
    KX_SCENE_ROAD,       /* roads and parking lots, lane marks   palette ( 85, 85, 85) */
    KX_SCENE_BUILDING,   /* roofs                                 palette (220, 60, 50) */
    KX_SCENE_TREE,       /* tree crowns (they may hide cars)      palette ( 40,150, 40) */
    KX_SCENE_WATER,      /* ponds and rivers                      palette ( 40,100,220) */
    KX_SCENE_CAR,        /* cars, also in shadow                  palette (255,220,  0) */
    KX_SCENE_SHADOW,     /* cast shadows on ground or road        palette (120, 40,160) */
    KX_SCENE_NUM_CLASSES
} kx_scene_class;

/* RGB colour of each class, for colour-coded label maps. */
extern const uint8_t kx_scene_palette[KX_SCENE_NUM_CLASSES][3];
/* "ground", "road", ... ; "?" out of range. */
const char *kx_scene_class_name(int cls);

/* Renders one scene for a seed: rgb is 3*H*W floats (CHW, in [0,1]); labels (may be
 * NULL) is H*W class indices. The same seed and size give the same bytes, always.
 * H and W must be in 8..4096. */
kiln_status kx_scene_generate(uint64_t seed, int H, int W, float *rgb, uint8_t *labels);

typedef enum { KX_SCENE_TRAIN = 0, KX_SCENE_HELDOUT = 1 } kx_scene_split;

/* The seed of scene `index` of a split: base * 2^32 + index, plus 2^31 for held-out
 * scenes. Indices below 2^31 keep the two splits' seeds disjoint for any base. */
uint64_t kx_scene_seed(kx_scene_split split, uint64_t base, int64_t index);

/* Renders scenes first .. first+n-1 of a split into new tensors on dev (owned by the
 * current scope): images (n,3,H,W) f32, masks (n,1,H,W) f32 holding 1 on cars, labels
 * (n,H,W) i64 class indices. Pass NULL for any output you do not need. */
kiln_status kx_scene_batch(kx_scene_split split, uint64_t base, int64_t first, int64_t n, int H, int W,
                           kiln_device dev, kiln_tensor **images, kiln_tensor **masks, kiln_tensor **labels);

/* ---- PNG --------------------------------------------------------------------------
 * 8-bit PNGs through libpng. channels: 1 (gray) or 3 (RGB). Read errors are
 * KILN_STATUS_IO (missing, unreadable, a directory) or KILN_STATUS_FORMAT (not a PNG,
 * corrupt, truncated, too large), with the file name and the reason in the message.
 * Reading decodes only what makes the picture (IHDR, PLTE, tRNS, IDAT): text chunks
 * (tEXt, zTXt, iTXt), ICC profiles and unknown chunks are skipped unread, whatever size
 * they claim. Images are limited to 65535 pixels a side and to kx_png_max_pixels()
 * pixels, checked from the header before anything is allocated.
 * Writing is atomic: a temporary file beside the target is written, fsynced and renamed
 * over it, so the path holds the old file or the whole new one; a failure removes the
 * temporary file and names the cause (strerror). */

/* The default pixel limit of the readers: 64 Mpixel (8192 x 8192). */
#define KX_PNG_DEFAULT_MAX_PIXELS (INT64_C(64) << 20)
/* The readers' pixel limit: $KILN_PNG_MAX_PIXELS when set (a positive integer), else
 * KX_PNG_DEFAULT_MAX_PIXELS; -1 when the variable holds something else (the readers
 * then fail with a message naming it). */
int64_t kx_png_max_pixels(void);

/* data: CHW floats, clamped to [0,1] and rounded to 8 bits. */
kiln_status kx_png_write_f32(const char *path, const float *data, int channels, int H, int W);
/* data: interleaved HWC bytes. */
kiln_status kx_png_write_u8(const char *path, const uint8_t *data, int channels, int H, int W);
/* Reads gray, gray+alpha, RGB, RGBA or palette PNGs of any bit depth (16-bit ones are
 * reduced to 8, 1/2/4-bit ones expanded; alpha, also a tRNS chunk's, is dropped).
 * want_channels: 1 or 3 converts to that; 0 keeps the file's (1 for gray, 3 for
 * colour). *data is malloc'd HWC bytes; free() it. */
kiln_status kx_png_read_u8(const char *path, int want_channels, uint8_t **data, int *channels, int *H, int *W);
/* Reads only the header: the size and the channels kx_png_read_u8(path, 0, ...) would
 * give, after the same checks (signature, IHDR, the pixel limit), decoding no pixel.
 * Lets a program refuse an image that is too large for what it does with it. */
kiln_status kx_png_read_size(const char *path, int *channels, int *H, int *W);
/* As kx_png_read_u8 but *data is malloc'd CHW floats in [0,1]. */
kiln_status kx_png_read_f32(const char *path, int want_channels, float **data, int *channels, int *H, int *W);
/* A (C,H,W) f32 tensor in [0,1] from a PNG, on dev (C as want_channels above). */
kiln_tensor *kx_png_read_tensor(const char *path, int want_channels, kiln_device dev);
/* Writes a (C,H,W) or (H,W) f32 tensor (C = 1 or 3, values in [0,1]) on any device. */
kiln_status kx_png_write_tensor(const char *path, kiln_tensor *t);

/* ---- your own data: a folder of images and masks (folder_data.c) --------------------
 * DIR/images/NAME.png|.jpg|.jpeg and DIR/masks/NAME.png, paired by NAME. Strict, so a
 * dataset is never silently half used: an image without a mask (or a mask without an
 * image), two images of one NAME, a mask that is not a PNG (JPEG's lossy compression
 * changes label values), a file of another extension, or a mask whose size is not its
 * image's is an error naming the file and the fix. Names starting with '.' and
 * subdirectories are skipped. Images are read with kiln_image_read (PNG or JPEG by
 * content). */

enum { KX_MAX_CLASSES = 16 };

typedef enum {
    KX_MASK_BINARY = 0, /* any nonzero colour channel is 1 (a car), zero is 0 */
    KX_MASK_INDEX,      /* gray values are class indices 0..nclasses-1 */
    KX_MASK_PALETTE,    /* RGB colours, each one class (kx_palette_read) */
} kx_mask_kind;

typedef struct {
    kx_mask_kind kind;
    int nclasses;                        /* INDEX, PALETTE: the model's classes (BINARY: 2) */
    int ncolours;                        /* PALETTE: entries of colour[] and name[] (class = entry) */
    uint8_t colour[KX_MAX_CLASSES][3];
    char name[KX_MAX_CLASSES][32];
} kx_mask_format;

/* A palette file: a JSON array whose entry i is class i, either [r, g, b] or
 * {"name": "road", "color": [r, g, b]} ("colour" also read), at most nclasses entries,
 * each colour distinct, components integers 0..255. KILN_STATUS_FORMAT naming the file
 * and the entry for anything else. */
kiln_status kx_palette_read(const char *path, int nclasses, kx_mask_format *fmt);
/* One mask of `n` pixels, HWC u8 as kiln_image_read gives it with `channels` (1, 3 or 4;
 * a 4th channel, alpha, is ignored), into class labels; an error naming `what` (the
 * file), the first bad pixel (x, y of a W wide image) and its value otherwise. */
kiln_status kx_mask_decode(const kx_mask_format *fmt, const uint8_t *chw, int channels, int H, int W,
                           uint8_t *labels, const char *what);

typedef struct {
    char *name;       /* NAME, without the extension */
    char *image;      /* DIR/images/NAME.ext */
    char *mask;       /* DIR/masks/NAME.png */
    int h, w;         /* from the image's header; the mask's matches */
} kx_folder_item;

typedef struct {
    char *dir;
    int64_t n;
    kx_folder_item *items;       /* sorted by name */
    int64_t ntrain, nheldout;
    int64_t *train, *heldout;    /* indices into items, each list sorted */
} kx_folder;

/* Scans and checks DIR (the rules above; every image at least min_side on each side, so
 * a crop of the training size fits) and splits it: round(n * heldout_fraction) images,
 * at least 1, are held out, picked by a shuffle seeded by `seed` over the sorted names,
 * so the split depends on the seed and the names alone, never on the directory's order.
 * Both parts must be non-empty. */
kiln_status kx_folder_open(const char *dir, double heldout_fraction, uint64_t seed, int min_side, kx_folder **out);
void kx_folder_free(kx_folder *f);
/* Decodes item i: *rgb (malloc'd, 3 x H x W u8, CHW) and *labels (malloc'd H x W, per
 * fmt). Either pointer may be NULL. Uses kiln's scopes of the calling thread. */
kiln_status kx_folder_read(const kx_folder *f, int64_t i, const kx_mask_format *fmt, uint8_t **rgb,
                           uint8_t **labels);

/* A training sample's augmentation: a size x size crop at (y0, x0), then a rotation by
 * rot90 quarter turns counter-clockwise (numpy's rot90), then a left-right flip
 * (flip_h) and an up-down flip (flip_v): the 8 symmetries of the square, each as likely. */
typedef struct {
    int y0, x0, rot90;
    bool flip_h, flip_v;
} kx_augment;

/* The augmentation of item `item` in epoch `epoch`: a function of (seed, epoch, item)
 * alone, so it does not depend on which thread or in which order batches are made. */
kx_augment kx_augment_draw(uint64_t seed, int epoch, int64_t item, int H, int W, int size);
/* dst (C x size x size) = the augmented crop of src (C x H x W), u8, CHW; the same a on
 * an image and its mask transforms both alike. */
void kx_augment_apply(const kx_augment *a, const uint8_t *src, int C, int H, int W, int size, uint8_t *dst);

/* A training batch on the host, as the loader thread fills it. */
typedef struct {
    int n, size;
    float *images;    /* n x 3 x size x size, value / 255 */
    uint8_t *labels;  /* n x size x size class labels (0/1 for binary masks) */
    int epoch;        /* 0-based */
    int64_t step;     /* 0-based, within the epoch */
} kx_batch;

/* Crops an image gives an epoch so that an epoch covers about every training pixel once:
 * the mean training image area / size^2, rounded, at least 1. */
int kx_folder_crops(const kx_folder *f, int size);
/* A thread that decodes and augments the training batches of epochs first_epoch ..
 * epochs-1 while the caller trains, one batch ahead. An epoch is `crops` random crops of
 * each training image (ntrain * crops / batch batches, a last partial one dropped), in
 * kx_epoch_shuffle's order for (seed, epoch).
 * The sequence is the same for a seed whatever the timing. NULL on failure (recorded). */
typedef struct kx_loader kx_loader;
kx_loader *kx_loader_start(const kx_folder *f, const kx_mask_format *fmt, int batch, int size, int crops,
                           uint64_t seed, int first_epoch, int epochs);
/* The next batch (valid until the next call or kx_loader_free); waits for it. An error
 * of the thread (a file that fails to decode) is returned here, with its message, and
 * every later call returns it too. */
kiln_status kx_loader_next(kx_loader *l, const kx_batch **b);
/* Stops the thread (it finishes the image in hand), joins it and frees. NULL is fine. */
void kx_loader_free(kx_loader *l);
/* A batch as tensors on dev, in the current scope: images (n,3,S,S) f32, masks (n,1,S,S)
 * f32 0/1 (for BCE), labels (n,S,S) i64 (for cross-entropy). */
kiln_tensor *kx_batch_images(const kx_batch *b, kiln_device dev);
kiln_tensor *kx_batch_masks(const kx_batch *b, kiln_device dev);
kiln_tensor *kx_batch_labels(const kx_batch *b, kiln_device dev);
/* The image files (.png, .jpg, .jpeg; not starting with '.') of a directory, sorted:
 * *paths is malloc'd, each entry too (kx_paths_free). */
kiln_status kx_list_images(const char *dir, char ***paths, int64_t *n);
void kx_paths_free(char **paths, int64_t n);

/* ---- tiled prediction (tiles.c) ------------------------------------------------------
 * A fully convolutional net run on an image of any size, tile by tile: overlapping
 * tiles of `tile` pixels (a multiple of `align`; the last tile of a row or column is
 * moved back to end at the image's edge), each weighted by a window that is 1 inside
 * and ramps linearly to ~0 over `overlap` pixels at each side that meets another tile,
 * and the scores normalised by the summed weights (so they form a convex combination:
 * no seam, and a constant net gives the constant). An axis no longer than the tile is
 * one tile padded to a multiple of align by repeating the edge pixels, with weight 1,
 * so an image that fits a tile gives exactly a direct forward of the padded image.
 * Memory: one tile's forward at a time, and a band of tile rows of scores. */

/* Start positions of the tiles along an axis of length L (tile > overlap >= 0): count
 * returned, at most cap written. */
int kx_tiles_positions(int L, int tile, int overlap, int *pos, int cap);
/* The window's weight at offset i of a tile of length t; first/last: the tile begins or
 * ends the axis (no ramp on that side); single: the only tile of its axis (1). */
float kx_tiles_weight(int i, int t, int overlap, bool first, bool last);

/* (1,3,h,w) f32 -> (1,C,h,w) scores, in the current scope (kx_tiles_run opens one a tile). */
typedef kiln_tensor *(*kx_tile_forward)(void *ctx, kiln_tensor *x);
/* Rows y0 .. y0+nrows-1 are final: scores of class c, row r at
 * scores[c * plane + r * W + x]. */
typedef kiln_status (*kx_tile_rows)(void *ctx, int y0, int nrows, int W, const float *scores, size_t plane);

/* rgb: 3 x H x W u8 (CHW), fed to the net as value / 255 on dev; C: the net's channels. */
kiln_status kx_tiles_run(const uint8_t *rgb, int H, int W, int tile, int overlap, int align, int C, kiln_device dev,
                         kx_tile_forward forward, void *fctx, kx_tile_rows rows, void *rctx);

/* ---- --predict IMAGE|DIR (predict.c) ---------------------------------------------------
 * One image to OUT/one_name, or each image of a folder to OUT/NAME.png (two inputs of one
 * NAME are an error); every input is checked (check) before the net is built (load: the
 * net, loaded and in eval mode, in *net; freed by the driver); one(...) turns an image into
 * its output PNG and gives its size. Prints a line per output, or with json the result
 * line: program, mode, threads, input, tile, then one_key, width, height (one image) or
 * images and dir_key (a folder), and wall_s. */
typedef struct {
    const char *program, *input, *out_dir;
    const char *one_name;         /* "mask.png" */
    const char *one_key, *dir_key; /* JSON keys: "mask", "masks_dir" */
    int tile;
    bool json;
    void *ctx;
    kiln_status (*check)(void *ctx, const char *path);
    kiln_status (*load)(void *ctx, kiln_module **net);
    kiln_status (*one)(void *ctx, kiln_module *net, const char *in, const char *out, int *H, int *W);
} kx_predict_job;
kiln_status kx_predict_run(const kx_predict_job *job);

/* ---- canvases, grids and plots ------------------------------------------------------ */

/* An RGB image in memory (HWC bytes) to draw on. */
typedef struct {
    int h, w;
    uint8_t *px;
} kx_canvas;

kx_canvas *kx_canvas_new(int h, int w, uint8_t r, uint8_t g, uint8_t b);
void kx_canvas_free(kx_canvas *c);
kiln_status kx_canvas_save_png(const kx_canvas *c, const char *path);
/* Clipped drawing; colours as 0xRRGGBB. */
void kx_canvas_fill_rect(kx_canvas *c, int x, int y, int w, int h, uint32_t rgb);
void kx_canvas_line(kx_canvas *c, int x0, int y0, int x1, int y1, uint32_t rgb);
/* Text in the built-in 5x7 font (digits, letters shown upper-case, . , - + : / % ( ) = _ ),
 * scaled by an integer factor; returns the width drawn. */
int kx_canvas_text(kx_canvas *c, int x, int y, const char *s, uint32_t rgb, int scale);
int kx_canvas_text_width(const char *s, int scale);
/* Draws a CHW float image (channels 1 or 3, clamped to [0,1]) with its top-left corner
 * at (x,y), each pixel as a scale x scale block. */
void kx_canvas_image_f32(kx_canvas *c, int x, int y, const float *chw, int channels, int h, int w, int scale);
/* Draws class indices in the scene palette (indices outside it are drawn black). */
void kx_canvas_labels(kx_canvas *c, int x, int y, const int64_t *labels, int h, int w, int scale);

/* One row per sample, one column per tensor, with an optional title above each column.
 * Each column is (N,3,H,W) f32 (RGB), (N,1,H,W) f32 (gray: masks, probabilities), or
 * (N,H,W) / (N,1,H,W) i64 class indices (drawn in the scene palette); all share N,H,W.
 * Draws the first min(N, max_rows) samples, each pixel as scale x scale. */
kiln_status kx_grid_save_png(const char *path, int ncols, kiln_tensor *const *cols, const char *const *titles,
                             int max_rows, int scale);
/* kx_grid_save_png with a colour key below the grid: a swatch and the name of each of
 * nclasses classes, in colours[c] (0xRRGGBB), wrapped to the grid's width, so label maps
 * drawn in a palette say what each colour means. nclasses 0 draws no key. */
kiln_status kx_grid_save_png_key(const char *path, int ncols, kiln_tensor *const *cols, const char *const *titles,
                                 int max_rows, int scale, int nclasses, const char *const *names,
                                 const uint32_t *colours);
/* The scene palette as 0xRRGGBB and the class names, for kx_grid_save_png_key. */
uint32_t kx_scene_colour(int cls);
/* Tiles the images of one (N,C,H,W) f32 tensor (C = 1 or 3), per_row to a row. */
kiln_status kx_tile_save_png(const char *path, kiln_tensor *images, int per_row, int scale);

typedef struct {
    const char *name;  /* legend text */
    const double *y;   /* n values; NaN leaves a gap */
    int n;             /* x runs 1..n (epochs) */
} kx_series;

/* Line plot of several series on shared axes, with ticks, a legend and a title. */
kiln_status kx_plot_lines_png(const char *path, const char *title, const char *xlabel, int nseries,
                              const kx_series *series, int width, int height);
/* Training curves in two panels over the same epochs: the losses on a logarithmic axis
 * above (values <= 0 leave a gap), the metrics on a linear one below (0..1 when they all
 * lie there), each line with a marker at every epoch (a one-epoch run shows its points)
 * and a legend beside its panel. nlosses and nmetrics: 1..16 each. */
kiln_status kx_plot_training_png(const char *path, const char *title, const char *xlabel, int nlosses,
                                 const kx_series *losses, int nmetrics, const kx_series *metrics, int width,
                                 int height);
/* Eigenvalue spectrum: bars of each value's share of the total (values clamped at 0,
 * drawn in the given order) and a line of the cumulative share, on a 0..1 axis. */
kiln_status kx_plot_spectrum_png(const char *path, const char *title, const double *eigenvalues, int n,
                                 int width, int height);

/* ---- Fashion-MNIST (IDX files, gzip or plain) ---------------------------------------- */

/* An IDX ubyte image file as a (N,1,rows,cols) f32 tensor in [0,1] on dev. */
kiln_tensor *kx_idx_read_images(const char *path, kiln_device dev);
/* An IDX ubyte label file as a (N) i64 tensor on dev. */
kiln_tensor *kx_idx_read_labels(const char *path, kiln_device dev);
/* The directory holding the Fashion-MNIST files: data_dir when given (it must hold
 * them), else where Debian's dataset-fashion-mnist package installs them. */
kiln_status kx_fashion_mnist_find(const char *data_dir, char *dir, size_t n);
/* Loads the training (60000) or test (10000) split from a directory found as above:
 * images (N,1,28,28) f32, labels (N) i64 in 0..9. */
kiln_status kx_fashion_mnist_load(const char *data_dir, bool train, kiln_device dev, kiln_tensor **images,
                                  kiln_tensor **labels);
extern const char *const kx_fashion_mnist_classes[10];
/* A split on the host for batching by index: n images of 784 floats in [0,1] and their
 * labels. The tensors behind it live until kiln_shutdown. */
typedef struct {
    const float *images;
    const int64_t *labels;
    int64_t n;
} kx_fashion_mnist_split;
/* kx_fashion_mnist_load on the CPU, keeping the first limit images when 0 < limit < N. */
kiln_status kx_fashion_mnist_load_split(const char *data_dir, bool train, int64_t limit,
                                        kx_fashion_mnist_split *s);
/* The start of a run on Fashion-MNIST: --out made a directory first (a run must not
 * train and then find it cannot write its results), then the training and test splits
 * as kx_fashion_mnist_load_split. *what names the stage, for the message of a failure:
 * "preparing --out", then "loading Fashion-MNIST". */
kiln_status kx_fashion_mnist_prepare(const char *out, const char *data_dir, int64_t limit,
                                     kx_fashion_mnist_split *train, kx_fashion_mnist_split *test,
                                     const char **what);

/* ---- models ------------------------------------------------------------------------- */

/* A Sequential of layers[0..n-1], which it owns from here on. NULL when a layer is NULL
 * (its creation failed) or an append fails: every layer is then freed and the first
 * error stays recorded. */
kiln_module *kx_sequential_of(int n, kiln_module **layers);
/* Adam (its defaults but lr) or SGD (its defaults but lr and momentum) over every
 * parameter of m; move m to its device first, so the optimizer's state lands there too.
 * NULL when it fails, with the error recorded. */
kiln_optimizer *kx_module_adam(kiln_module *m, double lr);
kiln_optimizer *kx_module_sgd(kiln_module *m, double lr, double momentum);
/* One training step on a loss: zero the gradients, backpropagate, step the optimizer, and
 * read the loss into *value (left alone on failure; the read waits for the device). A
 * loss that is NULL because an op of the forward pass failed gives that op's error. */
kiln_status kx_train_step(kiln_optimizer *opt, kiln_tensor *loss, double *value);

/* ---- progress, timing and the JSON result line ------------------------------------ */

typedef enum { KX_PROGRESS_AUTO = 0, KX_PROGRESS_BAR, KX_PROGRESS_LINES, KX_PROGRESS_QUIET } kx_progress_mode;

typedef struct {
    FILE *out;
    kx_progress_mode mode;   /* AUTO resolves to BAR on a terminal, LINES otherwise */
    char label[32];
    int64_t total, done;
    double t_start, t_last_draw;
    int last_decile;         /* LINES: the last tenth of the work reported */
    double loss;
    int64_t images_per_step; /* > 0: the bar shows images/s rather than steps/s */
} kx_progress;

/* An error (KILN_STATUS_ANOMALY) naming the epoch and step (1-based, of `steps` in the
 * epoch) when a training loss is NaN or infinite: its gradients would poison every
 * weight, so a training loop stops there instead of finishing with garbage. */
kiln_status kx_check_loss(double loss, int epoch, int64_t step, int64_t steps, double lr);

/* Puts "<prefix>: " (printf-style) before the recorded error's message, keeping its
 * status, so a failure deep in a step says where it happened; returns that status. */
kiln_status kx_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Seconds on a monotonic clock. */
double kx_now_seconds(void);
void kx_progress_init(kx_progress *p, FILE *out, kx_progress_mode mode, const char *label, int64_t total);
/* Images in each step (the batch), so the bar shows images/s; 0 shows steps/s. */
void kx_progress_set_images(kx_progress *p, int64_t images_per_step);
/* Records that `done` of `total` steps are finished with this loss (NaN: none yet).
 * A bar is redrawn in place at most 10 times a second; lines come each tenth of the work. */
void kx_progress_update(kx_progress *p, int64_t done, double loss);
/* Finishes the bar (or prints the last line) with the total time. */
void kx_progress_finish(kx_progress *p);

/* Builds one JSON object, written on one line: {"key": value, ...}. */
typedef struct {
    char *buf;
    size_t len, cap;
    bool need_comma, failed, closed;
} kx_json;

void kx_json_begin(kx_json *j);
void kx_json_string(kx_json *j, const char *key, const char *value);
/* Finite numbers in the shortest form that reads back exactly; NaN and Inf as null. */
void kx_json_number(kx_json *j, const char *key, double value);
void kx_json_int(kx_json *j, const char *key, int64_t value);
void kx_json_bool(kx_json *j, const char *key, bool value);
void kx_json_numbers(kx_json *j, const char *key, const double *values, int n);
/* Closes the object and returns its text (owned by j; NULL if memory ran out). */
const char *kx_json_end(kx_json *j);
/* Prints the closed object and a newline, then frees it. */
void kx_json_print(kx_json *j, FILE *f);
void kx_json_free(kx_json *j);
/* Writes s as a quoted JSON string into out (NUL-terminated, truncated to n). Control
 * characters are escaped, valid UTF-8 is kept, invalid bytes become U+FFFD. Returns the
 * length the whole string needs, without the NUL. */
size_t kx_json_escape(const char *s, char *out, size_t n);

/* ---- command line ------------------------------------------------------------------- */

typedef enum {
    KX_ARG_INT,    /* int *            --epochs 3 */
    KX_ARG_I64,    /* int64_t *        --seed 42 */
    KX_ARG_DOUBLE, /* double *         --lr 1e-3 */
    KX_ARG_STRING, /* const char **    --out results */
    KX_ARG_FLAG,   /* bool *           --json (no value) */
    KX_ARG_DEVICE, /* kiln_device *    --device cuda:0 */
    KX_ARG_CHOICE, /* const char **    --loss bce|bce_with_logits (choices in .choices) */
} kx_arg_type;

typedef struct {
    const char *name; /* without the dashes */
    kx_arg_type type;
    void *dest;
    const char *help;
    const char *choices; /* KX_ARG_CHOICE: "a|b|c" */
    double min, max;     /* INT, I64, DOUBLE: the allowed values, inclusive, when min < max */
    const char *refused; /* non-NULL: this program never uses the option; giving it is an error saying why */
} kx_arg;

typedef enum { KX_ARGS_OK = 0, KX_ARGS_HELP, KX_ARGS_ERROR } kx_args_result;

/* Parses --name value and --name=value against the table, writing into each dest (its
 * default stays when the option is absent). Numbers must be the whole value (no blanks,
 * no trailing junk), doubles finite, and within [min, max] when the entry has a range.
 * When the table has a device option and the command line does not give it, a
 * KILN_DEVICE that is not a device is an error too. --help anywhere prints usage to
 * stdout, with each option's default as its dest holds it, and returns KX_ARGS_HELP;
 * a bad option sets kiln's error (INVALID_ARGUMENT) naming the option, the value and
 * what is allowed, and returns KX_ARGS_ERROR. */
kx_args_result kx_args_parse(int argc, char **argv, const char *about, int n, const kx_arg *table);
/* Usage with each option's default read from its dest ("(default: 16)"); an option whose
 * help text mentions "default" says its own (one computed later, e.g. per optimizer). */
void kx_args_usage(FILE *f, const char *prog, const char *about, int n, const kx_arg *table);
/* Sets the allowed range of the option `name` in a table (e.g. one from KX_COMMON_ARG_TABLE). */
kiln_status kx_args_set_range(int n, kx_arg *table, const char *name, double min, double max);
/* Marks the option `name` (e.g. a shared one from KX_COMMON_ARG_TABLE) as one this
 * program never uses: --help says so instead of showing a default, and giving it is
 * an error, "--<name> does not apply <why>". */
kiln_status kx_args_refuse(int n, kx_arg *table, const char *name, const char *why);
/* True when the command line gives the option `name` (as the parser reads it: the value
 * of another option is not an option). */
bool kx_args_given(int argc, char **argv, int n, const kx_arg *table, const char *name);
/* An option that does not apply to the chosen mode is an error, never silently ignored:
 * for the first of the '|'-separated names given, INVALID_ARGUMENT "--<name> does not
 * apply <why>" (why: e.g. "with --predict (it trains nothing)"); OK when none is given. */
kiln_status kx_args_not_for(int argc, char **argv, int n, const kx_arg *table, const char *names,
                            const char *why);
/* kiln_default_device() without the error it records for a bad KILN_DEVICE (that error
 * would stay the thread's first and hide later ones): the fallback device instead, and
 * kx_args_parse reports the bad value. */
kiln_device kx_args_default_device(void);
/* For options that were refused: prints "<prog>: <the recorded error> (see --help)" on
 * stderr, shuts kiln down and returns 2, the exit status of bad usage. */
int kx_args_exit(const char *prog);

/* The options every training example shares; kx_common_defaults fills the defaults
 * (device: kx_args_default_device(); epochs 3, batch 16, size 128, seed 0, out
 * "out/example", which each program replaces with out/<its name>). --out is always a
 * directory; --export-weights names the model-only weights file (default
 * OUT/model.safetensors, see kx_export_weights). */
typedef struct {
    kiln_device device;
    int epochs, batch, size;
    int64_t seed;
    const char *data, *out, *export_weights;
    const char *log_dir; /* --log-dir: TensorBoard event files go here (NULL: none) */
    int threads;         /* --threads: CPU threads; the default is the library's own */
    bool json;
} kx_common_args;

void kx_common_defaults(kx_common_args *a);
#define KX_COMMON_ARG_TABLE(a)                                                                    \
    {"device", KX_ARG_DEVICE, &(a).device, "cpu, cuda or cuda:N (cuda when present)", NULL},      \
    {"epochs", KX_ARG_INT, &(a).epochs, "training epochs", NULL},                                 \
    {"batch", KX_ARG_INT, &(a).batch, "mini-batch size", NULL},                                   \
    {"size", KX_ARG_INT, &(a).size, "image side in pixels", NULL},                                \
    {"seed", KX_ARG_I64, &(a).seed, "random seed (data and weights)", NULL},                      \
    {"data", KX_ARG_STRING, &(a).data, "dataset directory", NULL},                                \
    {"out", KX_ARG_STRING, &(a).out, "directory for pictures, checkpoints, weights (created)", NULL}, \
    {"export-weights", KX_ARG_STRING, &(a).export_weights,                                        \
     "write the model-only weights (torch state_dict) here instead of OUT/model.safetensors", NULL}, \
    {"log-dir", KX_ARG_STRING, &(a).log_dir,                                                      \
     "write TensorBoard event files (tfevents) of the losses and metrics here", NULL},          \
    KX_THREADS_ARG((a).threads),                                                                  \
    {"json", KX_ARG_FLAG, &(a).json, "print only the final JSON line on stdout", NULL}

/* --threads N (1..256): the CPU kernels' threads (OpenMP's pool, which OpenBLAS and oneDNN
 * share). Its default, the library's own (OMP_NUM_THREADS or the cores), is what
 * kiln_get_num_threads() says before any option is applied; kx_args_apply_threads sets it. */
#define KX_THREADS_ARG(var) \
    {"threads", KX_ARG_INT, &(var), "CPU threads for the kernels (unless given, the library's own count)", NULL, 1, 256}
/* kiln_set_num_threads(n) when n differs from the library's current count, so a run
 * without --threads leaves the library's default alone. */
kiln_status kx_args_apply_threads(int n);

/* ---- training logs: CSV files and TensorBoard events ---------------------------------
 * OUT/steps.csv (epoch,step,loss,lr,images_per_s: one row a step, step counted over the
 * run) and OUT/epochs.csv (epoch,train_loss,heldout_loss, then the program's metrics: one
 * row an epoch), each row flushed as written so an interrupted run leaves whole rows; and,
 * with a log directory, a TensorBoard event file of the same numbers (train/loss, train/lr,
 * train/images_per_s at each step; epoch/<column> at each epoch). */

/* A TensorBoard event file, written by kiln itself in the tfevents record format. */
typedef struct kx_tfevents kx_tfevents;
/* Creates dir (mkdir -p) and dir/events.out.tfevents.<seconds>.<hostname> (".N" added when
 * that name is taken), whose first event holds file_version "brain.Event:2". NULL on
 * failure, with the error recorded. */
kx_tfevents *kx_tfevents_open(const char *dir);
/* One Event{wall_time, step, summary{value{tag, simple_value}}}; the value is stored as a
 * float, as TensorBoard's simple_value is. */
kiln_status kx_tfevents_scalar(kx_tfevents *w, const char *tag, int64_t step, double value);
/* Writes what is buffered to the file (TensorBoard reads it as it grows). */
kiln_status kx_tfevents_flush(kx_tfevents *w);
/* The file's path (owned by w). */
const char *kx_tfevents_path(const kx_tfevents *w);
/* Flushes, closes and frees; the status of the last write. NULL is fine. */
kiln_status kx_tfevents_close(kx_tfevents *w);
/* CRC-32C (Castagnoli), and the masked form tfevents records store:
 * ((crc >> 15) | (crc << 17)) + 0xa282ead8. */
uint32_t kx_crc32c(const void *data, size_t n);
uint32_t kx_tfevents_masked_crc(uint32_t crc);
/* Encodes one record (uint64 length, masked CRC of the length, the bytes, masked CRC of
 * the bytes) around payload into out[0..cap-1]; returns its size (12 + n + 4), or 0
 * when it does not fit. */
size_t kx_tfevents_record(const uint8_t *payload, size_t n, uint8_t *out, size_t cap);

typedef struct kx_train_log kx_train_log;
/* Opens OUT/steps.csv and OUT/epochs.csv (metric names: nmetrics columns after the
 * losses) and, when log_dir is not NULL, a kx_tfevents there. resume_epoch > 0 keeps
 * the rows of epochs 1..resume_epoch that the files hold (a resumed run continues them);
 * 0 starts them afresh. NULL on failure, with the error recorded. */
kx_train_log *kx_train_log_open(const char *out, const char *log_dir, int nmetrics,
                                const char *const *metric_names, int resume_epoch);
/* One step (epoch 1-based, step counted over the whole run, 1-based). */
kiln_status kx_train_log_step(kx_train_log *l, int epoch, int64_t step, double loss, double lr,
                              double images_per_s);
/* One epoch: its mean training loss, the held-out loss and nmetrics metrics (NaN: none). */
kiln_status kx_train_log_epoch(kx_train_log *l, int epoch, double train_loss, double heldout_loss,
                               const double *metrics);
/* The event file's path, or NULL without a log directory. */
const char *kx_train_log_events_path(const kx_train_log *l);
/* The two CSV files' paths (inside the --out directory). */
const char *kx_train_log_steps_path(const kx_train_log *l);
const char *kx_train_log_epochs_path(const kx_train_log *l);
/* Adds "steps_csv", "epochs_csv" and "events" (null without --log-dir) to a result line. */
void kx_train_log_json(const kx_train_log *l, kx_json *j);
/* Closes the files and frees; the first write error, if any. NULL is fine. */
kiln_status kx_train_log_close(kx_train_log *l);

/* The trained model's weights alone, as PyTorch's strict load_state_dict takes them:
 * kiln_checkpoint_save without an optimizer (parameters and buffers under torch's names;
 * the generator's position only as header metadata), to --export-weights or
 * OUT/model.safetensors. The path written goes into path[0..n-1]. */
kiln_status kx_export_weights(const kx_common_args *c, kiln_module *m, char *path, size_t n);

/* What the tables' ranges cannot say about a U-Net run on scenes (car_mask, segment7):
 * --size a multiple of 8 (the U-Net halves it three times), --lr > 0, --lr-decay in
 * (0, 1], --train-scenes >= --batch, and the training and held-out scenes, rendered at
 * once at bytes_per_pixel, within 4 GiB. An error (INVALID_ARGUMENT) for the first that fails. */
kiln_status kx_scene_args_check(const kx_common_args *c, double lr, double lr_decay, int train_scenes,
                                int heldout_scenes, double bytes_per_pixel);

/* Epoch orders for mini-batches (Fisher-Yates). kx_epoch_shuffle is a fixed order
 * per (seed, epoch) from xorshift64, so epoch e visits the same order whether or not
 * a run was resumed; kx_shuffle draws from a splitmix64 state the caller keeps. */
void kx_epoch_shuffle(int *order, int n, uint64_t seed, int epoch);
void kx_shuffle(int64_t *order, int64_t n, uint64_t *state);

/* An error naming the device when this build or machine does not have it (a CUDA
 * device asked for on a CPU-only build or a machine without a GPU). */
kiln_status kx_check_device(kiln_device dev);

/* mkdir -p; OK when it exists already. */
kiln_status kx_make_dirs(const char *path);
/* --out as a directory: kx_make_dirs, with an error saying so when dir is a file. */
kiln_status kx_out_dir(const char *dir);
/* dir + "/" + name into buf; an error if it does not fit. */
kiln_status kx_path_join(char *buf, size_t n, const char *dir, const char *name);

#ifdef __cplusplus
}
#endif
#endif

/* Training on your own images: a folder of images and masks scanned, paired and split,
 * masks decoded (binary, class indices or a palette), crops with the 8 symmetries of the
 * square as augmentation, and a loader thread that prepares the next batches while the
 * training thread steps. kiln's scopes and error state are per thread, so the loader
 * decodes inside its own scope into plain host buffers and hands over bytes and a
 * message; the training thread makes the tensors. */
#include "kx.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ---- palettes and masks ------------------------------------------------------------ */

kiln_status kx_palette_read(const char *path, int nclasses, kx_mask_format *fmt) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root)
        return kiln_set_error(KILN_STATUS_FORMAT, "--palette '%s': not valid JSON (line %d: %s); expected an array "
                              "like [{\"name\": \"ground\", \"color\": [150, 130, 90]}, [85, 85, 85], ...], entry i "
                              "being class i", path, jerr.line, jerr.text);
    kiln_status st = KILN_STATUS_OK;
    memset(fmt, 0, sizeof *fmt);
    fmt->kind = KX_MASK_PALETTE;
    fmt->nclasses = nclasses;
    size_t n = json_is_array(root) ? json_array_size(root) : 0;
    if (!json_is_array(root) || n == 0 || n > (size_t)nclasses || n > KX_MAX_CLASSES)
        st = kiln_set_error(KILN_STATUS_FORMAT, "--palette '%s': expected a JSON array of 1..%d colours (entry i is "
                            "class i), found %s%zu", path, nclasses, json_is_array(root) ? "an array of " : "no array",
                            json_is_array(root) ? n : (size_t)0);
    for (size_t i = 0; i < n && !st; i++) {
        json_t *e = json_array_get(root, i), *rgb = e;
        const char *name = NULL;
        if (json_is_object(e)) {
            rgb = json_object_get(e, "color");
            if (!rgb) rgb = json_object_get(e, "colour");
            json_t *nm = json_object_get(e, "name");
            if (nm && !json_is_string(nm)) {
                st = kiln_set_error(KILN_STATUS_FORMAT, "--palette '%s': entry %zu: \"name\" is not a string", path, i);
                break;
            }
            name = nm ? json_string_value(nm) : NULL;
        }
        bool ok = json_is_array(rgb) && json_array_size(rgb) == 3;
        for (size_t k = 0; ok && k < 3; k++) {
            json_t *v = json_array_get(rgb, k);
            ok = json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 255;
            if (ok) fmt->colour[i][k] = (uint8_t)json_integer_value(v);
        }
        if (!ok) {
            st = kiln_set_error(KILN_STATUS_FORMAT, "--palette '%s': entry %zu (class %zu) is not [r, g, b] or "
                                "{\"name\": ..., \"color\": [r, g, b]} with integers 0..255", path, i, i);
            break;
        }
        if (name) snprintf(fmt->name[i], sizeof fmt->name[i], "%s", name);
        else snprintf(fmt->name[i], sizeof fmt->name[i], "class %zu", i);
        for (size_t j = 0; j < i && !st; j++)
            if (!memcmp(fmt->colour[i], fmt->colour[j], 3))
                st = kiln_set_error(KILN_STATUS_FORMAT, "--palette '%s': entries %zu and %zu have the same colour "
                                    "[%d, %d, %d]: a colour must name one class", path, j, i, fmt->colour[i][0],
                                    fmt->colour[i][1], fmt->colour[i][2]);
    }
    fmt->ncolours = (int)n;
    json_decref(root);
    return st;
}

kiln_status kx_mask_decode(const kx_mask_format *fmt, const uint8_t *chw, int channels, int H, int W,
                           uint8_t *labels, const char *what) {
    size_t n = (size_t)H * W;
    int cc = channels >= 3 ? 3 : 1; /* colour channels; a 4th (alpha) is ignored */
    for (size_t i = 0; i < n; i++) {
        uint8_t r = chw[i], g = chw[(cc - 1 ? 1 : 0) * n + i], b = chw[(cc - 1 ? 2 : 0) * n + i];
        int x = (int)(i % (size_t)W), y = (int)(i / (size_t)W);
        switch (fmt->kind) {
        case KX_MASK_BINARY: labels[i] = (r | g | b) != 0; break;
        case KX_MASK_INDEX:
            if (r != g || r != b)
                return kiln_set_error(KILN_STATUS_FORMAT, "mask '%s' is in colour (pixel x=%d y=%d is [%d, %d, %d]): "
                                      "class-index masks are gray, value = class; for colour masks give --palette "
                                      "FILE.json", what, x, y, r, g, b);
            if (r >= fmt->nclasses)
                return kiln_set_error(KILN_STATUS_FORMAT, "mask '%s': pixel x=%d y=%d holds %d, not a class index "
                                      "0..%d (for colour masks give --palette FILE.json)", what, x, y, r,
                                      fmt->nclasses - 1);
            labels[i] = r;
            break;
        case KX_MASK_PALETTE: {
            int c = 0;
            while (c < fmt->ncolours && (fmt->colour[c][0] != r || fmt->colour[c][1] != g || fmt->colour[c][2] != b)) c++;
            if (c == fmt->ncolours)
                return kiln_set_error(KILN_STATUS_FORMAT, "mask '%s': pixel x=%d y=%d is [%d, %d, %d], a colour the "
                                      "palette does not have (a mask must use its colours exactly: PNG, no "
                                      "antialiasing)", what, x, y, r, g, b);
            labels[i] = (uint8_t)c;
            break;
        }
        }
    }
    return KILN_STATUS_OK;
}

/* ---- scanning a folder ----------------------------------------------------------------- */

static bool has_ext(const char *name, const char *ext) {
    size_t n = strlen(name), e = strlen(ext);
    return n > e && strcasecmp(name + n - e, ext) == 0;
}
static bool image_ext(const char *name) {
    return has_ext(name, ".png") || has_ext(name, ".jpg") || has_ext(name, ".jpeg");
}
static char *strip_ext(const char *name) {
    const char *dot = strrchr(name, '.');
    size_t n = dot ? (size_t)(dot - name) : strlen(name);
    char *s = malloc(n + 1);
    if (s) memcpy(s, name, n), s[n] = '\0';
    return s;
}
static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", dir, name);
    return s;
}
static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void kx_paths_free(char **paths, int64_t n) {
    for (int64_t i = 0; paths && i < n; i++) free(paths[i]);
    free(paths);
}

/* The regular files of dir not starting with '.', sorted; `images`: only the image
 * extensions (others are left out) rather than all. */
static kiln_status list_dir(const char *dir, bool images, char ***out, int64_t *count) {
    *out = NULL, *count = 0;
    DIR *d = opendir(dir);
    if (!d) return kiln_set_error(KILN_STATUS_IO, "cannot open the directory '%s': %s", dir, strerror(errno));
    char **v = NULL;
    int64_t n = 0, cap = 0;
    kiln_status st = KILN_STATUS_OK;
    for (struct dirent *e; !st && (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char *p = join(dir, e->d_name);
        struct stat sb;
        if (!p) st = kiln_set_error(KILN_STATUS_OOM, "out of memory listing '%s'", dir);
        if (!st && stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && (!images || image_ext(e->d_name))) {
            if (n == cap) {
                char **nv = realloc(v, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *v);
                if (!nv) st = kiln_set_error(KILN_STATUS_OOM, "out of memory listing '%s'", dir);
                else v = nv;
            }
            if (!st) v[n++] = p, p = NULL;
        }
        free(p);
    }
    closedir(d);
    if (st) return kx_paths_free(v, n), st;
    if (n) qsort(v, (size_t)n, sizeof *v, cmp_str);
    *out = v, *count = n;
    return KILN_STATUS_OK;
}

kiln_status kx_list_images(const char *dir, char ***paths, int64_t *n) { return list_dir(dir, true, paths, n); }

static const char *base(const char *p) {
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

void kx_folder_free(kx_folder *f) {
    if (!f) return;
    for (int64_t i = 0; i < f->n; i++) free(f->items[i].name), free(f->items[i].image), free(f->items[i].mask);
    free(f->items);
    free(f->train);
    free(f->heldout);
    free(f->dir);
    free(f);
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

kiln_status kx_folder_open(const char *dir, double heldout_fraction, uint64_t seed, int min_side, kx_folder **out) {
    *out = NULL;
    char *idir = join(dir, "images"), *mdir = join(dir, "masks");
    char **imgs = NULL, **msks = NULL;
    int64_t ni = 0, nm = 0;
    kx_folder *f = calloc(1, sizeof *f);
    kiln_status st = idir && mdir && f ? KILN_STATUS_OK : kiln_set_error(KILN_STATUS_OOM, "out of memory");
    struct stat sb;
    if (!st && (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)))
        st = kiln_set_error(KILN_STATUS_IO, "--data '%s' is not a directory (it should hold images/ and masks/)", dir);
    for (int k = 0; k < 2 && !st; k++)
        if (stat(k ? mdir : idir, &sb) != 0 || !S_ISDIR(sb.st_mode))
            st = kiln_set_error(KILN_STATUS_IO, "--data '%s' has no %s/ directory: it should hold images/NAME.png|jpg "
                                "and masks/NAME.png", dir, k ? "masks" : "images");
    if (!st) st = list_dir(idir, false, &imgs, &ni);
    if (!st) st = list_dir(mdir, false, &msks, &nm);
    for (int64_t i = 0; i < ni && !st; i++)
        if (!image_ext(base(imgs[i])))
            st = kiln_set_error(KILN_STATUS_FORMAT, "'%s' is not .png, .jpg or .jpeg: images/ holds only the images "
                                "(move other files out)", imgs[i]);
    for (int64_t i = 0; i < nm && !st; i++)
        if (!has_ext(base(msks[i]), ".png"))
            st = kiln_set_error(KILN_STATUS_FORMAT, "'%s' is not a .png: masks must be PNG files (JPEG's lossy "
                                "compression changes the label values)", msks[i]);
    if (!st && ni == 0) st = kiln_set_error(KILN_STATUS_FORMAT, "'%s' holds no .png or .jpg image", idir);
    if (!st && !(f->items = calloc((size_t)ni, sizeof *f->items)))
        st = kiln_set_error(KILN_STATUS_OOM, "out of memory for %lld images", (long long)ni);
    if (!st) f->dir = strdup(dir), f->n = ni;
    /* images and masks are sorted by full name; pair them by NAME through a merge */
    for (int64_t i = 0; i < ni && !st; i++) {
        f->items[i].image = imgs[i], imgs[i] = NULL;
        if (!(f->items[i].name = strip_ext(base(f->items[i].image))))
            st = kiln_set_error(KILN_STATUS_OOM, "out of memory");
    }
    if (!st) {
        /* names sort differently from full file names ("a.png" < "a_b.png" but "a" < "a_b" too;
         * "a.jpg"/"a.png" both give "a"): sort the items by name, then look for twins */
        for (int64_t i = 1; i < ni; i++) { /* insertion sort keeps it stable; n is small */
            kx_folder_item t = f->items[i];
            int64_t j = i - 1;
            while (j >= 0 && strcmp(f->items[j].name, t.name) > 0) f->items[j + 1] = f->items[j], j--;
            f->items[j + 1] = t;
        }
        for (int64_t i = 1; i < ni && !st; i++)
            if (!strcmp(f->items[i].name, f->items[i - 1].name))
                st = kiln_set_error(KILN_STATUS_FORMAT, "'%s' and '%s' have the same name: one image per NAME (its "
                                    "mask is masks/%s.png)", f->items[i - 1].image, f->items[i].image, f->items[i].name);
    }
    if (!st) { /* every mask must be some image's, every image must have its mask: a merge by NAME */
        kx_folder_item *m = calloc((size_t)(nm ? nm : 1), sizeof *m); /* masks as (name, path) */
        if (!m) st = kiln_set_error(KILN_STATUS_OOM, "out of memory");
        for (int64_t i = 0; i < nm && !st; i++) {
            m[i].mask = msks[i], msks[i] = NULL;
            if (!(m[i].name = strip_ext(base(m[i].mask)))) st = kiln_set_error(KILN_STATUS_OOM, "out of memory");
        }
        if (!st) qsort(m, (size_t)nm, sizeof *m, cmp_str); /* name is the first member */
        for (int64_t i = 1; i < nm && !st; i++)
            if (!strcmp(m[i].name, m[i - 1].name))
                st = kiln_set_error(KILN_STATUS_FORMAT, "'%s' and '%s' are masks of one NAME: keep one", m[i - 1].mask,
                                    m[i].mask);
        int64_t a = 0, b = 0, missing = 0, orphans = 0, first_missing = -1, first_orphan = -1;
        while (!st && (a < ni || b < nm)) {
            int c = a == ni ? 1 : b == nm ? -1 : strcmp(f->items[a].name, m[b].name);
            if (c < 0) {
                if (!missing++) first_missing = a;
                a++;
            } else if (c > 0) {
                if (!orphans++) first_orphan = b;
                b++;
            } else {
                f->items[a++].mask = m[b].mask, m[b++].mask = NULL;
            }
        }
        if (!st && missing)
            st = kiln_set_error(KILN_STATUS_FORMAT, "'%s' has no mask (expected %s/%s.png); %lld image(s) in all lack "
                                "one: every image needs its mask", f->items[first_missing].image, mdir,
                                f->items[first_missing].name, (long long)missing);
        if (!st && orphans)
            st = kiln_set_error(KILN_STATUS_FORMAT, "'%s' has no image (expected %s/%s.png or .jpg); %lld mask(s) in "
                                "all lack one: remove them or add their images", m[first_orphan].mask, idir,
                                m[first_orphan].name, (long long)orphans);
        for (int64_t i = 0; i < nm && m; i++) free(m[i].name), free(m[i].mask);
        free(m);
    }
    /* sizes from the headers: each mask must be its image's size, and fit a crop */
    for (int64_t i = 0; i < ni && !st; i++) {
        int64_t ih, iw, mh, mw;
        kx_folder_item *it = &f->items[i];
        st = kiln_image_read_size(it->image, NULL, &ih, &iw);
        if (!st) st = kiln_image_read_size(it->mask, NULL, &mh, &mw);
        if (!st && (ih != mh || iw != mw))
            st = kiln_set_error(KILN_STATUS_FORMAT, "'%s' is %lldx%lld but its image '%s' is %lldx%lld: a mask must "
                                "be its image's size (width x height)", it->mask, (long long)mw, (long long)mh,
                                it->image, (long long)iw, (long long)ih);
        if (!st && (ih < min_side || iw < min_side))
            st = kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "'%s' is %lldx%lld, smaller than the training crop "
                                "--size %d: give a smaller --size or leave the image out", it->image, (long long)iw,
                                (long long)ih, min_side);
        if (!st && (ih > INT32_MAX / 4 || iw > INT32_MAX / 4))
            st = kiln_set_error(KILN_STATUS_FORMAT, "'%s' is too large", it->image);
        it->h = (int)ih, it->w = (int)iw;
    }
    /* the split: a seeded shuffle of the sorted items, the first k held out */
    if (!st) {
        int64_t k = (int64_t)(heldout_fraction * (double)ni + 0.5);
        if (k < 1) k = 1;
        if (ni < 2 || k >= ni)
            st = kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--data '%s' has %lld image(s): holding out %lld "
                                "(--val-fraction %g) leaves none to train on; add images or lower --val-fraction",
                                dir, (long long)ni, (long long)k, heldout_fraction);
        int64_t *order = st ? NULL : malloc((size_t)ni * sizeof *order);
        f->train = st ? NULL : malloc((size_t)ni * sizeof *f->train);
        f->heldout = st ? NULL : malloc((size_t)k * sizeof *f->heldout);
        if (!st && (!order || !f->train || !f->heldout)) st = kiln_set_error(KILN_STATUS_OOM, "out of memory");
        if (!st) {
            uint64_t state = seed ^ 0x5851F42D4C957F2Dull; /* its own stream: not the epochs' orders */
            kx_shuffle(order, ni, &state);
            for (int64_t i = 0; i < ni; i++) {
                if (i < k) f->heldout[f->nheldout++] = order[i];
                else f->train[f->ntrain++] = order[i];
            }
            qsort(f->heldout, (size_t)f->nheldout, sizeof(int64_t), cmp_i64);
            qsort(f->train, (size_t)f->ntrain, sizeof(int64_t), cmp_i64);
        }
        free(order);
    }
    kx_paths_free(imgs, ni);
    kx_paths_free(msks, nm);
    free(idir);
    free(mdir);
    if (st) return kx_folder_free(f), st;
    *out = f;
    return KILN_STATUS_OK;
}

kiln_status kx_folder_read(const kx_folder *f, int64_t i, const kx_mask_format *fmt, uint8_t **rgb,
                           uint8_t **labels) {
    const kx_folder_item *it = &f->items[i];
    size_t n = (size_t)it->h * it->w;
    kiln_status st = KILN_STATUS_OK;
    kiln_scope *s = kiln_scope_begin();
    if (rgb) {
        *rgb = NULL;
        kiln_tensor *t = kiln_image_read(it->image, 3, KILN_U8, KILN_CPU);
        if (!t) st = kiln_last_status();
        else if (kiln_tensor_size(t, 1) != it->h || kiln_tensor_size(t, 2) != it->w)
            st = kiln_set_error(KILN_STATUS_FORMAT, "'%s' changed size since the folder was scanned", it->image);
        else if (!(*rgb = malloc(3 * n))) st = kiln_set_error(KILN_STATUS_OOM, "out of memory for '%s'", it->image);
        else st = kiln_tensor_to_host(t, *rgb, 3 * n);
    }
    if (labels && !st) {
        *labels = NULL;
        kiln_tensor *t = kiln_image_read(it->mask, 0, KILN_U8, KILN_CPU);
        int c = t ? (int)kiln_tensor_size(t, 0) : 0;
        if (!t) st = kiln_last_status();
        else if (kiln_tensor_size(t, 1) != it->h || kiln_tensor_size(t, 2) != it->w)
            st = kiln_set_error(KILN_STATUS_FORMAT, "'%s' changed size since the folder was scanned", it->mask);
        else if (!(*labels = malloc(n))) st = kiln_set_error(KILN_STATUS_OOM, "out of memory for '%s'", it->mask);
        else st = kx_mask_decode(fmt, kiln_tensor_data(t), c, it->h, it->w, *labels, it->mask);
    }
    kiln_scope_end(s);
    if (st) {
        if (rgb) free(*rgb), *rgb = NULL;
        if (labels) free(*labels), *labels = NULL;
    }
    return st;
}

/* ---- augmentation ------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

kx_augment kx_augment_draw(uint64_t seed, int epoch, int64_t item, int H, int W, int size) {
    uint64_t s = mix64(seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull);
    s = mix64(s ^ ((uint64_t)(uint32_t)epoch << 32 ^ (uint64_t)item));
    uint64_t a = mix64(s + 1), b = mix64(s + 2);
    kx_augment g = {.y0 = (int)(a % (uint64_t)(H - size + 1)), .x0 = (int)(b % (uint64_t)(W - size + 1)),
                    .rot90 = (int)(s & 3), .flip_h = (s >> 2) & 1, .flip_v = (s >> 3) & 1};
    return g;
}

void kx_augment_apply(const kx_augment *a, const uint8_t *src, int C, int H, int W, int size, uint8_t *dst) {
    int S = size;
    for (int i = 0; i < S; i++)
        for (int j = 0; j < S; j++) {
            /* undo the flips, then the quarter turns: numpy's rot90 has out[i][j] = in[j][S-1-i] */
            int u = a->flip_v ? S - 1 - i : i, v = a->flip_h ? S - 1 - j : j;
            for (int k = 0; k < a->rot90; k++) {
                int t = u;
                u = v, v = S - 1 - t;
            }
            size_t from = (size_t)(a->y0 + u) * W + (size_t)(a->x0 + v), to = (size_t)i * S + j;
            for (int c = 0; c < C; c++) dst[(size_t)c * S * S + to] = src[(size_t)c * H * W + from];
        }
}

/* ---- the loader thread --------------------------------------------------------------------- */

enum { SLOTS = 2 };

struct kx_loader {
    const kx_folder *f;
    kx_mask_format fmt;
    int batch, size, first_epoch, epochs, crops;
    uint64_t seed;
    int64_t steps, total, produced, consumed; /* batches: per epoch, in all, made, handed out */
    kx_batch slot[SLOTS];
    uint8_t *crop; /* the loader's scratch: 3 x size x size */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t thread;
    bool started, stop, failed;
    kiln_status status;
    char message[1024];
};

static kiln_status fill(kx_loader *l, kx_batch *b, int epoch, int64_t step, const int *order) {
    const kx_folder *f = l->f;
    size_t SS = (size_t)l->size * l->size;
    b->epoch = epoch, b->step = step, b->n = l->batch, b->size = l->size;
    for (int k = 0; k < l->batch; k++) {
        int64_t e = order[step * l->batch + k], item = f->train[e % f->ntrain], crop = e / f->ntrain;
        uint8_t *rgb = NULL, *lab = NULL;
        kiln_status st = kx_folder_read(f, item, &l->fmt, &rgb, &lab);
        if (st) return st;
        const kx_folder_item *it = &f->items[item];
        kx_augment a = kx_augment_draw(l->seed, epoch, item * l->crops + crop, it->h, it->w, l->size);
        kx_augment_apply(&a, rgb, 3, it->h, it->w, l->size, l->crop);
        kx_augment_apply(&a, lab, 1, it->h, it->w, l->size, b->labels + (size_t)k * SS);
        for (size_t i = 0; i < 3 * SS; i++) b->images[(size_t)k * 3 * SS + i] = l->crop[i] / 255.0f;
        free(rgb);
        free(lab);
        pthread_mutex_lock(&l->mu);
        bool stop = l->stop;
        pthread_mutex_unlock(&l->mu);
        if (stop) return KILN_STATUS_OK;
    }
    return KILN_STATUS_OK;
}

static void *loader_main(void *arg) {
    kx_loader *l = arg;
    int n = (int)(l->f->ntrain * l->crops), *order = malloc((size_t)n * sizeof *order);
    kiln_status st = order ? KILN_STATUS_OK : kiln_set_error(KILN_STATUS_OOM, "out of memory");
    int epoch = -1;
    for (int64_t k = 0; k < l->total && !st; k++) {
        pthread_mutex_lock(&l->mu);
        /* batch k overwrites the slot of batch k - SLOTS, which the consumer holds until it
         * asks for batch k - 1: so at most one batch ahead of the one being trained on */
        while (!l->stop && l->produced - l->consumed >= (l->consumed > 0 ? SLOTS - 1 : SLOTS))
            pthread_cond_wait(&l->cv, &l->mu);
        bool stop = l->stop;
        pthread_mutex_unlock(&l->mu);
        if (stop) break;
        int e = l->first_epoch + (int)(k / l->steps);
        if (e != epoch) kx_epoch_shuffle(order, n, l->seed, epoch = e);
        st = fill(l, &l->slot[k % SLOTS], e, k % l->steps, order);
        pthread_mutex_lock(&l->mu);
        if (!st) l->produced++;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
    if (st) { /* hand the thread's error, which lives in its own thread-local state, over */
        pthread_mutex_lock(&l->mu);
        l->failed = true;
        l->status = st;
        snprintf(l->message, sizeof l->message, "%s", kiln_last_error());
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
    }
    free(order);
    return NULL;
}

void kx_loader_free(kx_loader *l) {
    if (!l) return;
    if (l->started) {
        pthread_mutex_lock(&l->mu);
        l->stop = true;
        pthread_cond_broadcast(&l->cv);
        pthread_mutex_unlock(&l->mu);
        pthread_join(l->thread, NULL);
    }
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    for (int i = 0; i < SLOTS; i++) free(l->slot[i].images), free(l->slot[i].labels);
    free(l->crop);
    free(l);
}

int kx_folder_crops(const kx_folder *f, int size) {
    double area = 0;
    for (int64_t k = 0; k < f->ntrain; k++) area += (double)f->items[f->train[k]].h * f->items[f->train[k]].w;
    int c = (int)(area / (double)f->ntrain / ((double)size * size) + 0.5);
    return c < 1 ? 1 : c > 1024 ? 1024 : c;
}

kx_loader *kx_loader_start(const kx_folder *f, const kx_mask_format *fmt, int batch, int size, int crops,
                           uint64_t seed, int first_epoch, int epochs) {
    if (batch < 1 || crops < 1 || f->ntrain * crops < batch)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "--data '%s': %lld training images x %d crops, fewer "
                              "than --batch %d: lower --batch or add images", f->dir, (long long)f->ntrain, crops, batch), NULL;
    kx_loader *l = calloc(1, sizeof *l);
    if (!l) return kiln_set_error(KILN_STATUS_OOM, "out of memory"), NULL;
    l->f = f, l->fmt = *fmt, l->batch = batch, l->size = size, l->seed = seed;
    l->first_epoch = first_epoch, l->epochs = epochs;
    l->crops = crops;
    l->steps = f->ntrain * crops / batch;
    l->total = epochs > first_epoch ? (int64_t)(epochs - first_epoch) * l->steps : 0;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    size_t SS = (size_t)size * size;
    bool ok = (l->crop = malloc(3 * SS)) != NULL;
    for (int i = 0; i < SLOTS && ok; i++)
        ok = (l->slot[i].images = malloc((size_t)batch * 3 * SS * sizeof(float))) &&
             (l->slot[i].labels = malloc((size_t)batch * SS));
    if (!ok) return kx_loader_free(l), kiln_set_error(KILN_STATUS_OOM, "out of memory for the loader's batches"), NULL;
    if (pthread_create(&l->thread, NULL, loader_main, l) != 0)
        return kx_loader_free(l), kiln_set_error(KILN_STATUS_IO, "cannot start the loader thread"), NULL;
    l->started = true;
    return l;
}

kiln_status kx_loader_next(kx_loader *l, const kx_batch **b) {
    *b = NULL;
    pthread_mutex_lock(&l->mu);
    while (!l->failed && l->produced <= l->consumed && l->consumed < l->total) pthread_cond_wait(&l->cv, &l->mu);
    kiln_status st = KILN_STATUS_OK;
    if (l->produced > l->consumed) {
        *b = &l->slot[l->consumed % SLOTS];
        l->consumed++;
        pthread_cond_broadcast(&l->cv); /* the slot before this one may now be refilled */
    } else if (l->failed) {
        st = kiln_set_error(l->status, "%s", l->message);
    } else {
        st = kiln_set_error(KILN_STATUS_STATE, "kx_loader_next: all %lld batches were handed out", (long long)l->total);
    }
    pthread_mutex_unlock(&l->mu);
    return st;
}

/* ---- batches as tensors ---------------------------------------------------------------------- */

kiln_tensor *kx_batch_images(const kx_batch *b, kiln_device dev) {
    return kiln_tensor_from_host(b->images, 4, (int64_t[]){b->n, 3, b->size, b->size}, KILN_F32, dev);
}

kiln_tensor *kx_batch_masks(const kx_batch *b, kiln_device dev) {
    size_t n = (size_t)b->n * b->size * b->size;
    float *m = malloc(n * sizeof *m);
    if (!m) return kiln_set_error(KILN_STATUS_OOM, "out of memory for a batch of masks"), NULL;
    for (size_t i = 0; i < n; i++) m[i] = b->labels[i] ? 1.0f : 0.0f;
    kiln_tensor *t = kiln_tensor_from_host(m, 4, (int64_t[]){b->n, 1, b->size, b->size}, KILN_F32, dev);
    free(m);
    return t;
}

kiln_tensor *kx_batch_labels(const kx_batch *b, kiln_device dev) {
    size_t n = (size_t)b->n * b->size * b->size;
    int64_t *m = malloc(n * sizeof *m);
    if (!m) return kiln_set_error(KILN_STATUS_OOM, "out of memory for a batch of labels"), NULL;
    for (size_t i = 0; i < n; i++) m[i] = b->labels[i];
    kiln_tensor *t = kiln_tensor_from_host(m, 3, (int64_t[]){b->n, b->size, b->size}, KILN_I64, dev);
    free(m);
    return t;
}

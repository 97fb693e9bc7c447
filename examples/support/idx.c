/* The IDX format of (Fashion-)MNIST, read through zlib so .gz and plain files both work:
 * the magic, the dimensions and the exact data length are checked, so a truncated,
 * corrupt or mismatched file is an error naming the file and what is wrong. */
#include "kiln_examples.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef KILN_EXAMPLES_HAVE_ZLIB
#include <zlib.h>
#endif

#ifndef KILN_FASHION_MNIST_DIR
#define KILN_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#endif

const char *const kiln_fashion_mnist_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* A host tensor moved to dev (the host copy freed at once); NULL keeps the first error. */
static kiln_tensor *to_device(kiln_tensor *t, kiln_device dev) {
    if (!t || dev.type == KILN_DEVICE_CPU) return t;
    kiln_tensor *d = kiln_tensor_to(t, dev);
    kiln_tensor_free(t);
    return d;
}

#ifdef KILN_EXAMPLES_HAVE_ZLIB
/* Reads exactly n bytes; a short read is a truncated file, a zlib error a corrupt one. */
static kiln_status read_exact(gzFile g, void *buf, size_t n, const char *fn, const char *path, const char *what) {
    size_t done = 0;
    while (done < n) {
        unsigned chunk = n - done > (1u << 30) ? (1u << 30) : (unsigned)(n - done);
        int got = gzread(g, (char *)buf + done, chunk);
        if (got < 0) {
            int errnum;
            const char *msg = gzerror(g, &errnum);
            return kiln_set_error(errnum == Z_ERRNO ? KILN_STATUS_IO : KILN_STATUS_FORMAT,
                                  "%s: '%s' is corrupt: reading its %s failed (%s)", fn, path, what,
                                  errnum == Z_ERRNO ? strerror(errno) : msg);
        }
        if (got == 0) break;
        done += (size_t)got;
    }
    if (done < n)
        return kiln_set_error(KILN_STATUS_FORMAT,
                              "%s: '%s' is truncated: its %s needs %zu bytes but the file ends after %zu of them", fn,
                              path, what, n, done);
    return KILN_STATUS_OK;
}

/* Opens an IDX file of unsigned bytes with `ndim` dimensions and reads its header. */
static kiln_status open_idx(const char *fn, const char *path, int ndim, gzFile *out, uint32_t *dims) {
    *out = NULL;
    if (!path) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: path is NULL", fn);
    gzFile g = gzopen(path, "rb");
    if (!g)
        return kiln_set_error(KILN_STATUS_IO, "%s: cannot open '%s': %s", fn, path,
                              errno ? strerror(errno) : "out of memory");
    unsigned char hdr[4 + 4 * 3];
    kiln_status st = read_exact(g, hdr, 4 + 4 * (size_t)ndim, fn, path, "header");
    if (!st && (hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 || hdr[3] != ndim))
        st = kiln_set_error(KILN_STATUS_FORMAT,
                            "%s: '%s' is not an IDX file of %d-d unsigned bytes: its magic is %02x %02x %02x %02x, "
                            "expected 00 00 08 %02x (is it the %s file?)",
                            fn, path, ndim, hdr[0], hdr[1], hdr[2], hdr[3], ndim, ndim == 3 ? "images" : "labels");
    for (int i = 0; i < ndim && !st; i++) {
        const unsigned char *b = hdr + 4 + 4 * i;
        dims[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        uint32_t cap = i == 0 ? 100000000u : 4096u; /* beyond these the header is garbage */
        if (dims[i] == 0 || dims[i] > cap)
            st = kiln_set_error(KILN_STATUS_FORMAT, "%s: '%s' has dimension %d of size %u, outside 1..%u (corrupt header?)",
                                fn, path, i, dims[i], cap);
    }
    if (st) {
        gzclose(g);
        return st;
    }
    *out = g;
    return KILN_STATUS_OK;
}

/* Reads the payload and insists the file ends right after it. */
static kiln_status read_payload(gzFile g, uint8_t *buf, size_t n, const char *fn, const char *path, const char *what) {
    kiln_status st = read_exact(g, buf, n, fn, path, what);
    if (st) return st;
    unsigned char extra;
    int got = gzread(g, &extra, 1);
    if (got < 0) return read_exact(g, &extra, 1, fn, path, "end"); /* reports the zlib error */
    if (got > 0)
        return kiln_set_error(KILN_STATUS_FORMAT,
                              "%s: '%s' holds more data than its header says (%zu bytes of %s): a wrong count?", fn,
                              path, n, what);
    return KILN_STATUS_OK;
}
#endif

kiln_tensor *kiln_idx_read_images(const char *path, kiln_device dev) {
    const char *fn = "kiln_idx_read_images";
#ifndef KILN_EXAMPLES_HAVE_ZLIB
    (void)dev;
    kiln_set_error(KILN_STATUS_NOT_IMPLEMENTED, "%s: built without zlib; install zlib1g-dev and rebuild to read '%s'", fn,
                   path ? path : "");
    return NULL;
#else
    gzFile g;
    uint32_t d[3];
    if (open_idx(fn, path, 3, &g, d)) return NULL;
    size_t n = (size_t)d[0] * d[1] * d[2];
    uint8_t *bytes = malloc(n);
    kiln_tensor *t = bytes ? kiln_tensor_empty(4, (int64_t[]){d[0], 1, d[1], d[2]}, KILN_F32, KILN_CPU) : NULL;
    kiln_status st = !bytes ? kiln_set_error(KILN_STATUS_OOM, "%s: out of memory for '%s' (%zu bytes)", fn, path, n)
                     : !t   ? kiln_last_status()
                            : read_payload(g, bytes, n, fn, path, "pixels");
    gzclose(g);
    if (!st) {
        float *px = kiln_tensor_data(t);
        for (size_t i = 0; i < n; i++) px[i] = bytes[i] * (1.0f / 255.0f);
    }
    free(bytes);
    if (st) {
        kiln_tensor_free(t);
        return NULL;
    }
    return to_device(t, dev);
#endif
}

kiln_tensor *kiln_idx_read_labels(const char *path, kiln_device dev) {
    const char *fn = "kiln_idx_read_labels";
#ifndef KILN_EXAMPLES_HAVE_ZLIB
    (void)dev;
    kiln_set_error(KILN_STATUS_NOT_IMPLEMENTED, "%s: built without zlib; install zlib1g-dev and rebuild to read '%s'", fn,
                   path ? path : "");
    return NULL;
#else
    gzFile g;
    uint32_t d[1];
    if (open_idx(fn, path, 1, &g, d)) return NULL;
    uint8_t *bytes = malloc(d[0]);
    kiln_tensor *t = bytes ? kiln_tensor_empty(1, (int64_t[]){d[0]}, KILN_I64, KILN_CPU) : NULL;
    kiln_status st = !bytes ? kiln_set_error(KILN_STATUS_OOM, "%s: out of memory for '%s'", fn, path)
                     : !t   ? kiln_last_status()
                            : read_payload(g, bytes, d[0], fn, path, "labels");
    gzclose(g);
    if (!st) {
        int64_t *l = kiln_tensor_data(t);
        for (size_t i = 0; i < d[0]; i++) l[i] = bytes[i];
    }
    free(bytes);
    if (st) {
        kiln_tensor_free(t);
        return NULL;
    }
    return to_device(t, dev);
#endif
}

/* ---- Fashion-MNIST ---------------------------------------------------------------------- */

static const char *const fm_files[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                        "t10k-labels-idx1-ubyte"};

static bool is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* dir/base.gz, or dir/base when only the uncompressed file is there. */
static bool find_file(const char *dir, const char *base, char *out, size_t n) {
    int k = snprintf(out, n, "%s/%s.gz", dir, base);
    if (k > 0 && (size_t)k < n && is_file(out)) return true;
    k = snprintf(out, n, "%s/%s", dir, base);
    return k > 0 && (size_t)k < n && is_file(out);
}

kiln_status kiln_fashion_mnist_find(const char *data_dir, char *dir, size_t n) {
    const char *fn = "kiln_fashion_mnist_find";
    if (!dir || n == 0) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: no output buffer", fn);
    const char *cand = data_dir && *data_dir ? data_dir : KILN_FASHION_MNIST_DIR;
    char path[4096];
    for (int i = 0; i < 4; i++)
        if (!find_file(cand, fm_files[i], path, sizeof path)) {
            if (data_dir && *data_dir)
                return kiln_set_error(KILN_STATUS_IO,
                                      "%s: --data '%s' does not hold Fashion-MNIST: %s(.gz) is missing (the "
                                      "directory needs the four IDX files train-/t10k-images/labels)",
                                      fn, data_dir, fm_files[i]);
            return kiln_set_error(KILN_STATUS_IO,
                                  "%s: Fashion-MNIST is not installed (%s/%s.gz is missing): install it with "
                                  "'sudo apt-get install dataset-fashion-mnist' (scripts/setup.sh does this), or pass "
                                  "--data DIR",
                                  fn, KILN_FASHION_MNIST_DIR, fm_files[i]);
        }
    if (strlen(cand) >= n)
        return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: the directory name '%s' does not fit in %zu bytes", fn,
                              cand, n);
    memcpy(dir, cand, strlen(cand) + 1);
    return KILN_STATUS_OK;
}

kiln_status kiln_fashion_mnist_load(const char *data_dir, bool train, kiln_device dev, kiln_tensor **images,
                                    kiln_tensor **labels) {
    const char *fn = "kiln_fashion_mnist_load";
    if (!images || !labels) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: images or labels is NULL", fn);
    *images = *labels = NULL;
    char dir[4096], ipath[4200], lpath[4200];
    kiln_status st = kiln_fashion_mnist_find(data_dir, dir, sizeof dir);
    if (st) return st;
    find_file(dir, fm_files[train ? 0 : 2], ipath, sizeof ipath);
    find_file(dir, fm_files[train ? 1 : 3], lpath, sizeof lpath);
    kiln_tensor *x = kiln_idx_read_images(ipath, KILN_CPU);
    kiln_tensor *y = x ? kiln_idx_read_labels(lpath, KILN_CPU) : NULL;
    if (!x || !y) st = kiln_last_status();
    if (!st && (kiln_tensor_size(x, 2) != 28 || kiln_tensor_size(x, 3) != 28))
        st = kiln_set_error(KILN_STATUS_FORMAT, "%s: '%s' holds %lldx%lld images; Fashion-MNIST's are 28x28", fn, ipath,
                            (long long)kiln_tensor_size(x, 2), (long long)kiln_tensor_size(x, 3));
    if (!st && kiln_tensor_size(x, 0) != kiln_tensor_size(y, 0))
        st = kiln_set_error(KILN_STATUS_FORMAT, "%s: '%s' holds %lld images but '%s' holds %lld labels", fn, ipath,
                            (long long)kiln_tensor_size(x, 0), lpath, (long long)kiln_tensor_size(y, 0));
    if (!st) {
        const int64_t *l = kiln_tensor_data(y);
        for (int64_t i = 0; i < kiln_tensor_size(y, 0); i++)
            if (l[i] < 0 || l[i] > 9) {
                st = kiln_set_error(KILN_STATUS_FORMAT, "%s: label %lld in '%s' is %lld; classes are 0..9", fn,
                                    (long long)i, lpath, (long long)l[i]);
                break;
            }
    }
    if (!st) {
        x = to_device(x, dev);
        y = to_device(y, dev);
        if (!x || !y) st = kiln_last_status();
    }
    if (st) {
        if (x) kiln_tensor_free(x);
        if (y) kiln_tensor_free(y);
        return st;
    }
    *images = x;
    *labels = y;
    return KILN_STATUS_OK;
}

kiln_status kiln_fashion_mnist_load_split(const char *data_dir, bool train, int64_t limit,
                                          kiln_fashion_mnist_split *s) {
    kiln_tensor *x, *y;
    kiln_status st = kiln_fashion_mnist_load(data_dir, train, KILN_CPU, &x, &y);
    if (st != KILN_STATUS_OK) return st;
    s->images = kiln_tensor_data(x);
    s->labels = kiln_tensor_data(y);
    s->n = kiln_tensor_size(x, 0);
    if (limit > 0 && limit < s->n) s->n = limit;
    return KILN_STATUS_OK;
}

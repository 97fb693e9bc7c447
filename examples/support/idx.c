/* The IDX format of (Fashion-)MNIST, read through zlib so .gz and plain files both work:
 * the magic, the dimensions and the exact data length are checked, so a truncated,
 * corrupt or mismatched file is an error naming the file and what is wrong. A header is
 * never trusted with memory: an uncompressed file's size is checked against it before
 * anything is allocated, and a gzip file's payload buffer grows only with the data that
 * really arrives. */
#include "kx.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef KILN_EXAMPLES_HAVE_ZLIB
#include <zlib.h>
#endif

#ifndef KILN_FASHION_MNIST_DIR
#define KILN_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#endif

const char *const kx_fashion_mnist_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

/* A host tensor moved to dev (the host copy freed at once); NULL keeps the first error. */
static kiln_tensor *to_device(kiln_tensor *t, kiln_device dev) {
    if (!t || dev.type == KILN_DEVICE_CPU) return t;
    kiln_tensor *d = kiln_tensor_to(t, dev);
    kiln_tensor_free(t);
    return d;
}

#ifdef KILN_EXAMPLES_HAVE_ZLIB
/* Reads up to n bytes; *done is how many arrived. A short read is a truncated file (the
 * caller words it), a zlib error a corrupt one. */
static kiln_status read_some(gzFile g, void *buf, size_t n, size_t *done, const char *fn, const char *path,
                             const char *what) {
    *done = 0;
    while (*done < n) {
        unsigned chunk = n - *done > (1u << 30) ? (1u << 30) : (unsigned)(n - *done);
        int got = gzread(g, (char *)buf + *done, chunk);
        if (got < 0) {
            int errnum;
            const char *msg = gzerror(g, &errnum);
            return kiln_set_error(errnum == Z_ERRNO ? KILN_STATUS_IO : KILN_STATUS_FORMAT,
                                  "%s: '%s' is corrupt: reading its %s failed (%s)", fn, path, what,
                                  errnum == Z_ERRNO ? strerror(errno) : msg);
        }
        if (got == 0) break;
        *done += (size_t)got;
    }
    return KILN_STATUS_OK;
}

static kiln_status truncated(const char *fn, const char *path, const char *what, size_t n, size_t done) {
    return kiln_set_error(KILN_STATUS_FORMAT,
                          "%s: '%s' is truncated: its %s needs %zu bytes but the file ends after %zu of them", fn, path,
                          what, n, done);
}

static kiln_status too_long(const char *fn, const char *path, const char *what, size_t n) {
    return kiln_set_error(KILN_STATUS_FORMAT,
                          "%s: '%s' holds more data than its header says (%zu bytes of %s): a wrong count?", fn, path,
                          n, what);
}

/* An open IDX file: its dimensions, and its size when it is not compressed. */
typedef struct {
    gzFile g;
    uint32_t dims[3];
    size_t count;      /* the product of the dimensions, overflow-checked */
    int64_t plain_end; /* bytes after the header of an uncompressed file; -1 for gzip */
} idx_file;

/* Opens an IDX file of unsigned bytes with `ndim` dimensions and checks its header: the
 * magic, each dimension against a sane bound, and for an uncompressed file the file's
 * size against what the dimensions need, so a lying header costs no allocation. */
static kiln_status open_idx(const char *fn, const char *path, int ndim, const char *what, idx_file *x) {
    x->g = NULL;
    if (!path) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: path is NULL", fn);
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return kiln_set_error(KILN_STATUS_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return kiln_set_error(KILN_STATUS_IO, "%s: cannot open '%s': %s", fn, path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return kiln_set_error(KILN_STATUS_IO, "%s: '%s' is %s, not an IDX file", fn, path,
                              S_ISDIR(sb.st_mode) ? "a directory" : "not a regular file (a device, FIFO or socket)");
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    gzFile g = gzdopen(fd, "rb");
    if (!g) {
        close(fd);
        return kiln_set_error(KILN_STATUS_OOM, "%s: out of memory opening '%s'", fn, path);
    }
    unsigned char hdr[4 + 4 * 3];
    size_t hlen = 4 + 4 * (size_t)ndim, got = 0;
    kiln_status st = read_some(g, hdr, hlen, &got, fn, path, "header");
    if (!st && got < hlen) st = truncated(fn, path, "header", hlen, got);
    if (!st && (hdr[0] != 0 || hdr[1] != 0 || hdr[2] != 0x08 || hdr[3] != ndim))
        st = kiln_set_error(KILN_STATUS_FORMAT,
                            "%s: '%s' is not an IDX file of %d-d unsigned bytes: its magic is %02x %02x %02x %02x, "
                            "expected 00 00 08 %02x (is it the %s file?)",
                            fn, path, ndim, hdr[0], hdr[1], hdr[2], hdr[3], ndim, ndim == 3 ? "images" : "labels");
    x->count = 1;
    for (int i = 0; i < ndim && !st; i++) {
        const unsigned char *b = hdr + 4 + 4 * i;
        x->dims[i] = (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
        uint32_t cap = i == 0 ? 100000000u : 4096u; /* beyond these the header is garbage */
        if (x->dims[i] == 0 || x->dims[i] > cap)
            st = kiln_set_error(KILN_STATUS_FORMAT, "%s: '%s' has dimension %d of size %u, outside 1..%u (corrupt header?)",
                                fn, path, i, x->dims[i], cap);
        else if (__builtin_mul_overflow(x->count, (size_t)x->dims[i], &x->count))
            st = kiln_set_error(KILN_STATUS_FORMAT, "%s: '%s' has dimensions whose product overflows (corrupt header?)",
                                fn, path);
    }
    /* gzdirect: zlib found no gzip header and reads the file as it is */
    x->plain_end = gzdirect(g) ? (int64_t)sb.st_size - (int64_t)hlen : -1;
    if (!st && x->plain_end >= 0 && (uint64_t)x->plain_end < x->count)
        st = truncated(fn, path, what, x->count, (size_t)x->plain_end);
    if (!st && x->plain_end >= 0 && (uint64_t)x->plain_end > x->count) st = too_long(fn, path, what, x->count);
    if (st) {
        gzclose(g);
        return st;
    }
    x->g = g;
    return KILN_STATUS_OK;
}

/* Reads the payload into a malloc'd buffer and insists the file ends right after it.
 * The buffer grows with the data that arrives (doubling from 1 MiB up to the header's
 * count), so a gzip file whose header claims terabytes costs what it really holds. */
static kiln_status read_payload(idx_file *x, uint8_t **out, const char *fn, const char *path, const char *what) {
    *out = NULL;
    size_t n = x->count, cap = n < ((size_t)1 << 20) ? n : ((size_t)1 << 20), done = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) return kiln_set_error(KILN_STATUS_OOM, "%s: out of memory for '%s' (%zu bytes)", fn, path, cap);
    kiln_status st = KILN_STATUS_OK;
    for (;;) {
        size_t got;
        st = read_some(x->g, buf + done, cap - done, &got, fn, path, what);
        done += got;
        if (st || done < cap) break;
        if (cap == n) break;
        size_t next = cap > n / 2 ? n : cap * 2;
        uint8_t *grown = realloc(buf, next);
        if (!grown) {
            st = kiln_set_error(KILN_STATUS_OOM, "%s: out of memory for '%s' (%zu bytes)", fn, path, next);
            break;
        }
        buf = grown, cap = next;
    }
    if (!st && done < n) st = truncated(fn, path, what, n, done);
    if (!st) {
        unsigned char extra;
        size_t more;
        st = read_some(x->g, &extra, 1, &more, fn, path, "end");
        if (!st && more) st = too_long(fn, path, what, n);
    }
    if (st) {
        free(buf);
        return st;
    }
    *out = buf;
    return KILN_STATUS_OK;
}
#endif

kiln_tensor *kx_idx_read_images(const char *path, kiln_device dev) {
    const char *fn = "kx_idx_read_images";
#ifndef KILN_EXAMPLES_HAVE_ZLIB
    (void)dev;
    kiln_set_error(KILN_STATUS_NOT_IMPLEMENTED, "%s: built without zlib; install zlib1g-dev and rebuild to read '%s'", fn,
                   path ? path : "");
    return NULL;
#else
    idx_file x;
    if (open_idx(fn, path, 3, "pixels", &x)) return NULL;
    uint8_t *bytes;
    size_t floats;
    kiln_status st = read_payload(&x, &bytes, fn, path, "pixels");
    gzclose(x.g);
    if (st) return NULL;
    kiln_tensor *t = NULL;
    if (__builtin_mul_overflow(x.count, sizeof(float), &floats))
        kiln_set_error(KILN_STATUS_OOM, "%s: '%s' holds %zu pixels, too many for memory", fn, path, x.count);
    else
        t = kiln_tensor_empty(4, (int64_t[]){x.dims[0], 1, x.dims[1], x.dims[2]}, KILN_F32, KILN_CPU);
    if (t) {
        float *px = kiln_tensor_data(t);
        for (size_t i = 0; i < x.count; i++) px[i] = bytes[i] * (1.0f / 255.0f);
    }
    free(bytes);
    return to_device(t, dev);
#endif
}

kiln_tensor *kx_idx_read_labels(const char *path, kiln_device dev) {
    const char *fn = "kx_idx_read_labels";
#ifndef KILN_EXAMPLES_HAVE_ZLIB
    (void)dev;
    kiln_set_error(KILN_STATUS_NOT_IMPLEMENTED, "%s: built without zlib; install zlib1g-dev and rebuild to read '%s'", fn,
                   path ? path : "");
    return NULL;
#else
    idx_file x;
    if (open_idx(fn, path, 1, "labels", &x)) return NULL;
    uint8_t *bytes;
    kiln_status st = read_payload(&x, &bytes, fn, path, "labels");
    gzclose(x.g);
    if (st) return NULL;
    kiln_tensor *t = kiln_tensor_empty(1, (int64_t[]){x.dims[0]}, KILN_I64, KILN_CPU);
    if (t) {
        int64_t *l = kiln_tensor_data(t);
        for (size_t i = 0; i < x.count; i++) l[i] = bytes[i];
    }
    free(bytes);
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

kiln_status kx_fashion_mnist_find(const char *data_dir, char *dir, size_t n) {
    const char *fn = "kx_fashion_mnist_find";
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

kiln_status kx_fashion_mnist_load(const char *data_dir, bool train, kiln_device dev, kiln_tensor **images,
                                  kiln_tensor **labels) {
    const char *fn = "kx_fashion_mnist_load";
    if (!images || !labels) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "%s: images or labels is NULL", fn);
    *images = *labels = NULL;
    char dir[4096], ipath[4200], lpath[4200];
    kiln_status st = kx_fashion_mnist_find(data_dir, dir, sizeof dir);
    if (st) return st;
    find_file(dir, fm_files[train ? 0 : 2], ipath, sizeof ipath);
    find_file(dir, fm_files[train ? 1 : 3], lpath, sizeof lpath);
    kiln_tensor *x = kx_idx_read_images(ipath, KILN_CPU);
    kiln_tensor *y = x ? kx_idx_read_labels(lpath, KILN_CPU) : NULL;
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

kiln_status kx_fashion_mnist_load_split(const char *data_dir, bool train, int64_t limit,
                                        kx_fashion_mnist_split *s) {
    if (!s) return kiln_set_error(KILN_STATUS_INVALID_ARGUMENT, "kx_fashion_mnist_load_split: split is NULL");
    kiln_tensor *x, *y;
    kiln_status st = kx_fashion_mnist_load(data_dir, train, KILN_CPU, &x, &y);
    if (st != KILN_STATUS_OK) return st;
    s->images = kiln_tensor_data(x);
    s->labels = kiln_tensor_data(y);
    s->n = kiln_tensor_size(x, 0);
    if (limit > 0 && limit < s->n) s->n = limit;
    return KILN_STATUS_OK;
}

kiln_status kx_fashion_mnist_prepare(const char *out, const char *data_dir, int64_t limit,
                                     kx_fashion_mnist_split *train, kx_fashion_mnist_split *test,
                                     const char **what) {
    *what = "preparing --out";
    kiln_status st = kx_out_dir(out);
    if (st) return st;
    *what = "loading Fashion-MNIST";
    st = kx_fashion_mnist_load_split(data_dir, true, limit, train);
    if (!st) st = kx_fashion_mnist_load_split(data_dir, false, limit, test);
    return st;
}

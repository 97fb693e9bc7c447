/* Fuzz harness: IDX files (examples/support/idx.c, gzip or plain through zlib) read as
 * images and as labels; what is read is checked against the header's promises and used
 * as a user would (cast, reductions). An input that reads as images (or labels) is also
 * loaded as Fashion-MNIST's training split beside labels (or images) made to match it,
 * so the loader's own checks (28x28, equal counts, classes 0..9) run on it too. */
#include "fuzz_common.h"

#include <kx.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const files[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                                     "t10k-labels-idx1-ubyte"};

static void put(const char *name, const uint8_t *b, size_t n) {
    FILE *f = fopen(kf_scratch_path(name), "wb");
    KF_CHECK(f && fwrite(b, 1, n, f) == n && fclose(f) == 0, "writing %s", name);
}

static void be32(uint8_t *b, uint32_t v) { b[0] = (uint8_t)(v >> 24), b[1] = (uint8_t)(v >> 16), b[2] = (uint8_t)(v >> 8), b[3] = (uint8_t)v; }

/* Fashion-MNIST's training split from the input as one file and a made-up partner of
 * n entries (images 28x28 when the input is the labels) as the other. */
static void load_as_fashion_mnist(const uint8_t *data, size_t size, bool input_is_images, int64_t n) {
    size_t pn = input_is_images ? 8 + (size_t)n : 16 + (size_t)n * 784;
    uint8_t *p = calloc(pn, 1);
    KF_CHECK(p != NULL, "out of host memory");
    p[2] = 8, p[3] = input_is_images ? 1 : 3;
    be32(p + 4, (uint32_t)n);
    if (input_is_images) {
        for (int64_t i = 0; i < n; i++) p[8 + i] = (uint8_t)(i % 10);
    } else {
        be32(p + 8, 28), be32(p + 12, 28);
    }
    put(files[input_is_images ? 0 : 1], data, size);
    put(files[input_is_images ? 1 : 0], p, pn);
    static const uint8_t img1[16 + 784] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28};
    static const uint8_t lab1[9] = {0, 0, 8, 1, 0, 0, 0, 1, 4};
    put(files[2], img1, sizeof img1);
    put(files[3], lab1, sizeof lab1);
    free(p);
    char dir[512];
    snprintf(dir, sizeof dir, "%s", kf_scratch_path(""));
    dir[strlen(dir) - 1] = '\0'; /* no trailing slash */
    kiln_tensor *x = NULL, *y = NULL;
    kiln_clear_error();
    kiln_status st = kx_fashion_mnist_load(dir, true, KILN_CPU, &x, &y);
    kf_note("fashion_mnist_load (input as %s, %lld entries): %s", input_is_images ? "images" : "labels", (long long)n,
            st ? kiln_last_error() : "ok");
    if (st == KILN_STATUS_OK) {
        KF_CHECK(x && y && kiln_tensor_ndim(x) == 4 && kiln_tensor_size(x, 0) == n && kiln_tensor_size(x, 2) == 28 &&
                     kiln_tensor_size(x, 3) == 28 && kiln_tensor_size(y, 0) == n,
                 "the loaded split is not (n,1,28,28) images and n labels");
        size_t nb;
        int64_t *l = kf_tensor_bytes(y, &nb);
        for (size_t i = 0; i < nb / 8; i++) KF_CHECK(l[i] >= 0 && l[i] <= 9, "class %lld loaded", (long long)l[i]);
        free(l);
        kiln_tensor_free(x);
        kiln_tensor_free(y);
    } else {
        KF_CHECK(!x && !y && kiln_last_status() != KILN_STATUS_OK, "a failed load left tensors or no error");
    }
    kiln_clear_error();
    for (int i = 0; i < 4; i++) unlink(kf_scratch_path(files[i]));
}

static void check_failed(const char *how) {
    kiln_status st = kiln_last_status();
    KF_CHECK(st == KILN_STATUS_FORMAT || st == KILN_STATUS_OOM, "%s failed with %s: %s", how, kiln_status_name(st),
             kiln_last_error());
    kiln_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = kf_input_path(data, size);
    kiln_scope *scope = kf_begin();

    kiln_clear_error();
    kiln_tensor *x = kx_idx_read_images(path, KILN_CPU);
    kf_note("read_images: %s", x ? "ok" : kiln_last_error());
    if (x) {
        KF_CHECK(kiln_tensor_ndim(x) == 4 && kiln_tensor_dtype(x) == KILN_F32 && kiln_tensor_size(x, 1) == 1,
                 "images are not (N,1,H,W) f32");
        KF_CHECK(kiln_tensor_size(x, 0) >= 1 && kiln_tensor_size(x, 2) >= 1 && kiln_tensor_size(x, 3) >= 1,
                 "an empty image set was returned");
        size_t n;
        float *v = kf_tensor_bytes(x, &n);
        KF_CHECK(n == (size_t)kiln_tensor_numel(x) * 4 && n <= (size > 16 ? (size - 16) * 4 : 0) * 1100,
                 "%zu bytes of images from a %zu-byte file", n, size);
        for (size_t i = 0; i < n / 4; i++) KF_CHECK(v[i] >= 0 && v[i] <= 1, "pixel %g outside [0,1]", v[i]);
        free(v);
        kf_use_tensor(x, "the images");
        load_as_fashion_mnist(data, size, true, kiln_tensor_size(x, 0));
    } else {
        check_failed("read_images");
    }

    kiln_clear_error();
    kiln_tensor *y = kx_idx_read_labels(path, KILN_CPU);
    kf_note("read_labels: %s", y ? "ok" : kiln_last_error());
    if (y) {
        KF_CHECK(kiln_tensor_ndim(y) == 1 && kiln_tensor_dtype(y) == KILN_I64 && kiln_tensor_size(y, 0) >= 1,
                 "labels are not (N) i64");
        size_t n;
        int64_t *l = kf_tensor_bytes(y, &n);
        for (size_t i = 0; i < n / 8; i++) KF_CHECK(l[i] >= 0 && l[i] <= 255, "label %lld", (long long)l[i]);
        free(l);
        kf_use_tensor(y, "the labels");
        if (kiln_tensor_size(y, 0) <= 1000) load_as_fashion_mnist(data, size, false, kiln_tensor_size(y, 0));
    } else {
        check_failed("read_labels");
    }
    kf_end(scope);
    return 0;
}

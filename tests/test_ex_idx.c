/* The example support library, part 3: the IDX reader on small gzip files written here
 * (valid, plain, bad magic, truncated, too long, corrupt, mismatched counts), finding
 * Fashion-MNIST, and the real files when Debian's dataset-fashion-mnist is installed. */
#define _GNU_SOURCE /* nftw, to clean the temporary directory */
#include "support/kiln_test.h"
#include "support/kt_run.h"

#include <kx.h>
#include <errno.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

static char g_dir[64];

static void setup(void) {
    kiln_test_setup();
    strcpy(g_dir, "/tmp/kiln_ex_idx_XXXXXX");
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
TestSuite(ex_idx, .init = setup, .fini = teardown);

static const char *tmp(const char *name) {
    static char buf[4][256];
    static int k;
    char *b = buf[k++ % 4];
    snprintf(b, 256, "%s/%s", g_dir, name);
    return b;
}

/* An IDX ubyte file: magic 00 00 08 ndim, big-endian dims, then `payload` bytes of i*7+1. */
static void write_idx(const char *path, bool gz, const uint8_t magic[4], int ndim, const uint32_t *dims, size_t payload) {
    size_t n = 4 + 4 * (size_t)ndim + payload;
    uint8_t *buf = malloc(n);
    memcpy(buf, magic, 4);
    for (int i = 0; i < ndim; i++)
        for (int k = 0; k < 4; k++) buf[4 + 4 * i + k] = (uint8_t)(dims[i] >> (24 - 8 * k));
    for (size_t i = 0; i < payload; i++) buf[4 + 4 * ndim + i] = (uint8_t)(i * 7 + 1);
    if (gz) {
        gzFile g = gzopen(path, "wb");
        cr_assert_not_null(g);
        cr_assert_eq(gzwrite(g, buf, (unsigned)n), (int)n);
        gzclose(g);
    } else {
        FILE *f = fopen(path, "wb");
        fwrite(buf, 1, n, f);
        fclose(f);
    }
    free(buf);
}

static const uint8_t IMAGES[4] = {0, 0, 8, 3}, LABELS[4] = {0, 0, 8, 1};

KT_TEST(ex_idx, reads_images_and_labels) {
    write_idx(tmp("img.gz"), true, IMAGES, 3, (uint32_t[]){3, 4, 5}, 60);
    kiln_tensor *x = kx_idx_read_images(tmp("img.gz"), KILN_CPU);
    cr_assert_not_null(x, "%s", kiln_last_error());
    KT_EXPECT_SHAPE(x, 4, 3, 1, 4, 5);
    cr_expect_eq(kiln_tensor_dtype(x), KILN_F32);
    const float *px = kiln_tensor_data(x);
    for (int i = 0; i < 60; i++) cr_expect_float_eq(px[i], (float)(uint8_t)(i * 7 + 1) / 255.0f, 1e-7, "pixel %d", i);

    uint32_t n = 10;
    write_idx(tmp("lab.gz"), true, LABELS, 1, &n, 10);
    kiln_tensor *y = kx_idx_read_labels(tmp("lab.gz"), KILN_CPU);
    cr_assert_not_null(y, "%s", kiln_last_error());
    cr_expect_eq(kiln_tensor_dtype(y), KILN_I64);
    KT_EXPECT(y, 0, 0, {1, 8, 15, 22, 29, 36, 43, 50, 57, 64});

    /* Uncompressed IDX files read the same way. */
    write_idx(tmp("img.raw"), false, IMAGES, 3, (uint32_t[]){3, 4, 5}, 60);
    kiln_tensor *raw = kx_idx_read_images(tmp("img.raw"), KILN_CPU);
    cr_assert_not_null(raw, "%s", kiln_last_error());
    cr_expect(memcmp(kiln_tensor_data(raw), px, 60 * sizeof(float)) == 0);
}

KT_TEST(ex_idx, rejects_bad_files) {
    cr_expect_null(kx_idx_read_images(tmp("missing.gz"), KILN_CPU));
    kt_expect_error(KILN_STATUS_IO, "cannot open");

    /* A labels file given as images: too short for a 3-d header, or the wrong magic. */
    uint32_t n = 2;
    write_idx(tmp("lab.gz"), true, LABELS, 1, &n, 2);
    cr_expect_null(kx_idx_read_images(tmp("lab.gz"), KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "is truncated: its header needs 16 bytes but the file ends after 10");
    n = 20;
    write_idx(tmp("big_lab.gz"), true, LABELS, 1, &n, 20);
    cr_expect_null(kx_idx_read_images(tmp("big_lab.gz"), KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "magic is 00 00 08 01, expected 00 00 08 03");
    write_idx(tmp("f32.gz"), true, (const uint8_t[]){0, 0, 0x0D, 3}, 3, (uint32_t[]){1, 2, 2}, 16);
    cr_expect_null(kx_idx_read_images(tmp("f32.gz"), KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "not an IDX file of 3-d unsigned bytes");

    /* Header promises 3 images, data holds 2. */
    write_idx(tmp("short.gz"), true, IMAGES, 3, (uint32_t[]){3, 4, 5}, 40);
    cr_expect_null(kx_idx_read_images(tmp("short.gz"), KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "is truncated: its pixels needs 60 bytes but the file ends after 40");

    /* Header says 2, data holds 3: a wrong count. */
    write_idx(tmp("long.gz"), true, IMAGES, 3, (uint32_t[]){2, 4, 5}, 60);
    cr_expect_null(kx_idx_read_images(tmp("long.gz"), KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "holds more data than its header says");

    /* Zero-sized and absurd dimensions. */
    write_idx(tmp("zero.gz"), true, IMAGES, 3, (uint32_t[]){0, 4, 5}, 0);
    cr_expect_null(kx_idx_read_images(tmp("zero.gz"), KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "dimension 0 of size 0");
    write_idx(tmp("huge.gz"), true, IMAGES, 3, (uint32_t[]){1, 70000, 5}, 0);
    cr_expect_null(kx_idx_read_images(tmp("huge.gz"), KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "dimension 1 of size 70000");
}

KT_TEST(ex_idx, rejects_a_truncated_or_corrupt_gzip_stream) {
    write_idx(tmp("img.gz"), true, IMAGES, 3, (uint32_t[]){20, 28, 28}, 20 * 28 * 28);
    FILE *f = fopen(tmp("img.gz"), "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    uint8_t *buf = malloc((size_t)n);
    cr_assert_eq(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);

    f = fopen(tmp("cut.gz"), "wb"); /* the compressed stream stops half-way */
    fwrite(buf, 1, (size_t)n / 2, f);
    fclose(f);
    cr_expect_null(kx_idx_read_images(tmp("cut.gz"), KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "cut.gz' is");

    for (long i = n / 3; i < n / 3 + 8; i++) buf[i] ^= 0xA5; /* damage inside the deflate data */
    f = fopen(tmp("bad.gz"), "wb");
    fwrite(buf, 1, (size_t)n, f);
    fclose(f);
    free(buf);
    cr_expect_null(kx_idx_read_images(tmp("bad.gz"), KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "bad.gz' is");
}

/* A 16-byte header claiming 1e8 images of 4096x4096 (1.6e15 bytes) used to be trusted
 * with malloc ("out of memory"). The file's size, or for gzip the data that really
 * arrives, is what counts: it is a truncated file, found at once and cheaply. */
KT_TEST(ex_idx, a_lying_header_is_truncated_not_out_of_memory) {
    const uint32_t dims[3] = {100000000, 4096, 4096};
    char want[160];
    snprintf(want, sizeof want, "is truncated: its pixels needs %llu bytes but the file ends after 0 of them",
             100000000ull * 4096 * 4096);
    long rss = kt_peak_rss();
    double t = kx_now_seconds();
    for (int gz = 0; gz <= 1; gz++) {
        const char *path = tmp(gz ? "liar.gz" : "liar.raw");
        write_idx(path, gz, IMAGES, 3, dims, 0);
        cr_expect_null(kx_idx_read_images(path, KILN_CPU));
        kt_expect_error(KILN_STATUS_FORMAT, want);
    }
    uint32_t n = 100000000;
    write_idx(tmp("liar_lab.raw"), false, LABELS, 1, &n, 5);
    cr_expect_null(kx_idx_read_labels(tmp("liar_lab.raw"), KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "its labels needs 100000000 bytes but the file ends after 5 of them");
    write_idx(tmp("liar_lab.gz"), true, LABELS, 1, &n, 5);
    cr_expect_null(kx_idx_read_labels(tmp("liar_lab.gz"), KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "its labels needs 100000000 bytes but the file ends after 5 of them");
    cr_expect_lt(kt_peak_rss() - rss, 16L << 20, "lying headers raised the peak by %ld MB", (kt_peak_rss() - rss) >> 20);
    cr_expect_lt(kx_now_seconds() - t, 1.0);

    /* A gzip file that holds part of what its header claims: the buffer grows with the
     * data (2000 images arrive of 100000 claimed), never to the claim. */
    const uint32_t some[3] = {100000, 28, 28};
    write_idx(tmp("part.gz"), true, IMAGES, 3, some, 2000 * 784);
    rss = kt_peak_rss();
    cr_expect_null(kx_idx_read_images(tmp("part.gz"), KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "its pixels needs 78400000 bytes but the file ends after 1568000 of them");
    cr_expect_lt(kt_peak_rss() - rss, 16L << 20, "a partial file cost %ld MB", (kt_peak_rss() - rss) >> 20);

    /* An uncompressed file's size is checked both ways before anything is read. */
    write_idx(tmp("long.raw"), false, IMAGES, 3, (uint32_t[]){2, 4, 5}, 41);
    cr_expect_null(kx_idx_read_images(tmp("long.raw"), KILN_CPU));
    kt_expect_error(KILN_STATUS_FORMAT, "holds more data than its header says (40 bytes of pixels)");
    write_idx(tmp("exact.raw"), false, IMAGES, 3, (uint32_t[]){2, 4, 5}, 40);
    kiln_tensor *x = kx_idx_read_images(tmp("exact.raw"), KILN_CPU);
    cr_assert_not_null(x, "%s", kiln_last_error());
    KT_EXPECT_SHAPE(x, 4, 2, 1, 4, 5);
    cr_expect_float_eq(((const float *)kiln_tensor_data(x))[39], (uint8_t)(39 * 7 + 1) / 255.0f, 1e-7);
    kiln_tensor_free(x);
}

KT_TEST(ex_idx, directories_and_fifos_are_not_idx_files) {
    cr_expect_null(kx_idx_read_images(g_dir, KILN_CPU));
    kt_expect_error(KILN_STATUS_IO, "' is a directory, not an IDX file");
    cr_expect_null(kx_idx_read_labels(g_dir, KILN_CPU));
    kt_expect_error(KILN_STATUS_IO, "' is a directory, not an IDX file");
    cr_assert_eq(mkfifo(tmp("fifo"), 0600), 0, "%s", strerror(errno));
    double t = kx_now_seconds();
    cr_expect_null(kx_idx_read_images(tmp("fifo"), KILN_CPU)); /* no writer: no wait */
    kt_expect_error(KILN_STATUS_IO, "fifo' is not a regular file");
    cr_expect_lt(kx_now_seconds() - t, 1.0);
}

static void write_fashion(const char *dir, uint32_t n_img, uint32_t n_lab, uint8_t magic_last) {
    char p[300];
    const char *names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                            "t10k-labels-idx1-ubyte.gz"};
    for (int k = 0; k < 4; k++) {
        snprintf(p, sizeof p, "%s/%s", dir, names[k]);
        if (k % 2 == 0)
            write_idx(p, true, IMAGES, 3, (uint32_t[]){n_img, 28, 28}, (size_t)n_img * 784);
        else
            write_idx(p, true, (const uint8_t[]){0, 0, 8, magic_last}, 1, &n_lab, n_lab);
    }
}

KT_TEST(ex_idx, fashion_mnist_from_a_data_dir) {
    char dir[300];
    snprintf(dir, sizeof dir, "%s/fm", g_dir);
    cr_assert_eq(kx_make_dirs(dir), KILN_STATUS_OK, "%s", kiln_last_error());
    char found[300];
    cr_expect_eq(kx_fashion_mnist_find(dir, found, sizeof found), KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "does not hold Fashion-MNIST: train-images-idx3-ubyte(.gz) is missing");

    /* Labels are i*7+1: the 2nd is 8, the 3rd 15 (not a class), so keep 2 samples for a valid set. */
    write_fashion(dir, 2, 2, 1);
    cr_assert_eq(kx_fashion_mnist_find(dir, found, sizeof found), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_str_eq(found, dir);
    kiln_tensor *x, *y;
    cr_assert_eq(kx_fashion_mnist_load(dir, false, KILN_CPU, &x, &y), KILN_STATUS_OK, "%s", kiln_last_error());
    KT_EXPECT_SHAPE(x, 4, 2, 1, 28, 28);
    KT_EXPECT(y, 0, 0, {1, 8});

    write_fashion(dir, 3, 2, 1); /* 3 images, 2 labels */
    cr_expect_eq(kx_fashion_mnist_load(dir, true, KILN_CPU, &x, &y), KILN_STATUS_FORMAT);
    cr_expect_null(x);
    cr_expect_null(y);
    kt_expect_error(KILN_STATUS_FORMAT, "holds 3 images but");
    write_fashion(dir, 3, 3, 1); /* the third label is 15 */
    cr_expect_eq(kx_fashion_mnist_load(dir, true, KILN_CPU, &x, &y), KILN_STATUS_FORMAT);
    kt_expect_error(KILN_STATUS_FORMAT, "label 2 in");
    cr_expect_null(x);
}

KT_TEST(ex_idx, real_fashion_mnist_when_installed) {
    char dir[4096];
    if (kx_fashion_mnist_find(NULL, dir, sizeof dir) != KILN_STATUS_OK) {
        cr_expect(strstr(kiln_last_error(), "apt-get install dataset-fashion-mnist") != NULL, "%s", kiln_last_error());
        kiln_clear_error();
        cr_skip_test("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): real-data check skipped");
    }
    for (int train = 1; train >= 0; train--) {
        kiln_scope *s = kiln_scope_begin();
        kiln_tensor *x, *y;
        cr_assert_eq(kx_fashion_mnist_load(NULL, train, KILN_CPU, &x, &y), KILN_STATUS_OK, "%s", kiln_last_error());
        int64_t n = train ? 60000 : 10000;
        KT_EXPECT_SHAPE(x, 4, n, 1, 28, 28);
        KT_EXPECT_SHAPE(y, 1, n);
        /* Each class has exactly n/10 samples in both splits. */
        int count[10] = {0};
        const int64_t *l = kiln_tensor_data(y);
        for (int64_t i = 0; i < n; i++) count[l[i]]++;
        for (int c = 0; c < 10; c++) cr_expect_eq(count[c], n / 10, "class %d has %d samples", c, count[c]);
        const float *px = kiln_tensor_data(x);
        float lo = 1, hi = 0;
        for (int64_t i = 0; i < n * 784; i += 97) lo = px[i] < lo ? px[i] : lo, hi = px[i] > hi ? px[i] : hi;
        cr_expect(lo == 0.0f && hi == 1.0f, "pixels span [%g, %g]", lo, hi);
        kiln_scope_end(s);
    }
}

KT_TEST(ex_idx, make_dirs_and_path_join) {
    char p[300], q[8];
    snprintf(p, sizeof p, "%s/a/b/c/", g_dir);
    cr_expect_eq(kx_make_dirs(p), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(kx_make_dirs(p), KILN_STATUS_OK, "existing directories are fine");
    struct stat sb;
    cr_expect(stat(p, &sb) == 0 && S_ISDIR(sb.st_mode));
    snprintf(p, sizeof p, "%s/file", g_dir);
    FILE *f = fopen(p, "w");
    fclose(f);
    snprintf(p, sizeof p, "%s/file/sub", g_dir);
    cr_expect_eq(kx_make_dirs(p), KILN_STATUS_IO);
    kt_expect_error(KILN_STATUS_IO, "cannot create directory");
    cr_expect_eq(kx_path_join(p, sizeof p, "out", "grid.png"), KILN_STATUS_OK);
    cr_expect_str_eq(p, "out/grid.png");
    cr_expect_eq(kx_path_join(p, sizeof p, "out/", "x"), KILN_STATUS_OK);
    cr_expect_str_eq(p, "out/x");
    cr_expect_eq(kx_path_join(q, sizeof q, "results", "x.png"), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "does not fit");
}

/* The segment7 example run as a user runs it, in a tiny configuration (16x16 scenes, a
 * few steps): its JSON result line (class weights, per-class IoU, mIoU) and files, and
 * clear errors for bad arguments. */
#include "support/kiln_test.h"
#include "kiln_examples.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(example_segment7, .init = kiln_test_setup, .fini = kiln_test_teardown);

#ifdef KILN_EXAMPLE_BIN
static const char *const bin = KILN_EXAMPLE_BIN;
#else
static const char *const bin = NULL;
#endif

/* Tiny: 4 training scenes in batches of 2 (2 steps an epoch), 2 held-out scenes. */
#define TINY "--device cpu --size 16 --batch 2 --train-scenes 4 --heldout-scenes 2"

typedef struct {
    int status;          /* exit status, -1 if it did not exit normally */
    char out[1 << 15];   /* stdout */
    char err[1 << 13];   /* stderr */
    json_t *json;        /* the last stdout line, parsed (NULL if it is not JSON) */
} run_result;

static void read_file(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "rb");
    size_t k = f ? fread(buf, 1, n - 1, f) : 0;
    buf[k] = '\0';
    if (f) fclose(f);
}

/* Runs the program with args in dir (a fresh directory), capturing both streams. */
static run_result *run(const char *dir, const char *args) {
    if (!bin) cr_skip_test("the examples are not built (KILN_BUILD_EXAMPLES=OFF)");
    run_result *r = calloc(1, sizeof *r);
    cr_assert(r);
    char cmd[4096], o[1024], e[1024];
    snprintf(o, sizeof o, "%s/stdout.txt", dir);
    snprintf(e, sizeof e, "%s/stderr.txt", dir);
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s >'%s' 2>'%s'", dir, bin, args, o, e);
    int ws = system(cmd);
    r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    read_file(o, r->out, sizeof r->out);
    read_file(e, r->err, sizeof r->err);
    size_t n = strlen(r->out);
    while (n && r->out[n - 1] == '\n') r->out[--n] = '\0';
    const char *last = strrchr(r->out, '\n');
    r->json = json_loads(last ? last + 1 : r->out, 0, NULL);
    return r;
}

static void free_result(run_result *r) {
    json_decref(r->json);
    free(r);
}

static char *make_dir(void) {
    char *d = strdup("/tmp/kiln_segment7_XXXXXX");
    cr_assert(d && mkdtemp(d), "mkdtemp failed");
    return d;
}

static void remove_dir(char *d) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    cr_expect_eq(system(cmd), 0);
    free(d);
}

/* A per-epoch array of n finite numbers (within [lo, hi]). */
static void expect_series(json_t *j, const char *key, size_t n, double lo, double hi) {
    json_t *a = json_object_get(j, key);
    cr_assert(json_is_array(a), "'%s' is missing or not an array", key);
    cr_expect_eq(json_array_size(a), n, "'%s' has %zu values, not %zu", key, json_array_size(a), n);
    for (size_t i = 0; i < json_array_size(a); i++) {
        json_t *v = json_array_get(a, i);
        cr_expect(json_is_number(v), "%s[%zu] is not a finite number (null means NaN or Inf)", key, i);
        double x = json_number_value(v);
        cr_expect(x >= lo && x <= hi, "%s[%zu] = %g is outside [%g, %g]", key, i, x, lo, hi);
    }
}

static double number(json_t *j, const char *key) {
    json_t *v = json_object_get(j, key);
    cr_assert(json_is_number(v), "'%s' is missing or not a finite number", key);
    return json_number_value(v);
}

/* The file is a readable PNG with that many channels (and that size, when w > 0). */
static void expect_png(const char *path, int channels, int w, int h) {
    uint8_t *px = NULL;
    int c, H, W;
    cr_assert_eq(kiln_png_read_u8(path, 0, &px, &c, &H, &W), KILN_STATUS_OK, "%s", kiln_last_error());
    cr_expect_eq(c, channels, "%s has %d channels, not %d", path, c, channels);
    if (w > 0) cr_expect(W == w && H == h, "%s is %dx%d, not %dx%d", path, W, H, w, h);
    free(px);
}


KT_TEST(example_segment7, trains_and_reports_json_and_files) {
    char *d = make_dir();
    run_result *r = run(d, TINY " --epochs 2 --json --out res");
    cr_assert_eq(r->status, 0, "exit %d; stderr:\n%s", r->status, r->err);
    cr_assert(r->json, "the last line of stdout is not JSON:\n%s", r->out);
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "program")), "segment7");
    cr_expect_str_eq(json_string_value(json_object_get(r->json, "class_weighting")), "sqrt_inverse");
    expect_series(r->json, "train_loss", 2, 0, 20);
    expect_series(r->json, "heldout_loss", 2, 0, 20);
    expect_series(r->json, "heldout_miou", 2, 0, 1);
    expect_series(r->json, "heldout_argmax_accuracy", 2, 0, 1);
    double miou = number(r->json, "miou");
    cr_expect(miou >= 0 && miou <= 1);
    /* class weights: finite, 0 for classes absent from the training labels, mean 1 over the others */
    json_t *w = json_object_get(r->json, "class_weights"), *iou = json_object_get(r->json, "class_iou");
    cr_assert(json_array_size(w) == 7 && json_array_size(iou) == 7, "class_weights and class_iou need 7 values each");
    double sum = 0;
    int present = 0;
    for (size_t c = 0; c < 7; c++) {
        json_t *v = json_array_get(w, c);
        cr_expect(json_is_number(v) && json_number_value(v) >= 0, "class_weights[%zu] is not a finite weight", c);
        if (json_number_value(v) > 0) sum += json_number_value(v), present++;
        /* a class in neither the truth nor the prediction has IoU 0/0: null, and mIoU skips it */
        json_t *u = json_array_get(iou, c);
        cr_expect(json_is_null(u) || (json_is_number(u) && json_number_value(u) >= 0 && json_number_value(u) <= 1),
                  "class_iou[%zu] is neither null nor in [0, 1]", c);
    }
    cr_expect(present >= 2 && fabs(sum / present - 1) < 1e-9, "the weights of the %d present classes average %g, not 1",
              present, sum / present);
    char path[1024];
    snprintf(path, sizeof path, "%s/res/segment7_grid.png", d);
    expect_png(path, 3, 0, 0);
    snprintf(path, sizeof path, "%s/res/segment7_plot.png", d);
    expect_png(path, 3, 0, 0);
    snprintf(path, sizeof path, "%s/res/segment7.safetensors", d);
    struct stat sb;
    cr_expect(stat(path, &sb) == 0 && sb.st_size > 0, "no checkpoint at %s", path);
    free_result(r);
    remove_dir(d);
}

KT_TEST(example_segment7, unweighted_run_prints_classes_and_progress) {
    char *d = make_dir();
    run_result *r = run(d, TINY " --epochs 1 --class-weights none --out res");
    cr_assert_eq(r->status, 0, "exit %d; stderr:\n%s", r->status, r->err);
    cr_expect(strstr(r->out, "epoch 1/1  train loss") && strstr(r->out, "mIoU"), "no epoch line in:\n%s", r->out);
    cr_expect(strstr(r->out, "held-out IoU per class:") && strstr(r->out, "car "), "no per-class IoU in:\n%s", r->out);
    cr_expect(strstr(r->out, "pictures in res/segment7_grid.png"), "the output does not say where the pictures are:\n%s", r->out);
    cr_expect(strstr(r->err, "steps/s"), "no progress line on stderr:\n%s", r->err);
    cr_assert(r->json);
    json_t *w = json_object_get(r->json, "class_weights");
    for (size_t c = 0; c < json_array_size(w); c++) {
        double v = json_number_value(json_array_get(w, c));
        cr_expect(v == 0 || v == 1, "--class-weights none gave weight %g to class %zu", v, c);
    }
    free_result(r);
    remove_dir(d);
}

KT_TEST(example_segment7, bad_arguments_give_clear_errors) {
    char *d = make_dir();
    struct {
        const char *args, *says;
    } cases[] = {
        {"--class-weights median", "--class-weights: 'median' is not one of none|inverse|sqrt_inverse"},
        {"--size 12", "multiple of 8"},
        {"--epochs 0", "--epochs in 1.."},
        {"--batch 0", "--batch >= 1"},
        {"--heldout-scenes 0", "--heldout-scenes >= 1"},
        {"--epochs", "--epochs: needs a value"},
        {"stray", "unexpected argument 'stray'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        run_result *r = run(d, cases[i].args);
        cr_expect(r->status != 0, "'%s' exited 0", cases[i].args);
        cr_expect(strstr(r->err, "segment7: ") && strstr(r->err, cases[i].says),
                  "'%s': stderr does not say '%s':\n%s", cases[i].args, cases[i].says, r->err);
        free_result(r);
    }
    run_result *h = run(d, "--help");
    cr_expect(h->status == 0 && strstr(h->out, "--class-weights"), "--help:\n%s", h->out);
    free_result(h);
    remove_dir(d);
}

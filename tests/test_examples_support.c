/* The example support library, part 1: the synthetic aerial scenes (deterministic,
 * varied, plausible class proportions, masks that match labels, disjoint splits), the
 * JSON result line, the option parser and the progress output. */
#include "support/kiln_test.h"

#include <kiln_examples.h>
#include <stdlib.h>
#include <string.h>

TestSuite(examples_support, .init = kiln_test_setup, .fini = kiln_test_teardown);

/* ---- scenes -------------------------------------------------------------------------- */

typedef struct {
    float *rgb;
    uint8_t *lab;
} scene_buf;

static scene_buf render(uint64_t seed, int H, int W) {
    scene_buf b = {malloc(sizeof(float) * 3 * H * W), malloc((size_t)H * W)};
    cr_assert(b.rgb && b.lab);
    cr_assert_eq(kiln_scene_generate(seed, H, W, b.rgb, b.lab), KILN_STATUS_OK, "%s", kiln_last_error());
    return b;
}
static void release(scene_buf b) {
    free(b.rgb);
    free(b.lab);
}

KT_TEST(examples_support, scene_is_deterministic_for_a_seed) {
    const int H = 96, W = 80;
    scene_buf a = render(42, H, W), b = render(42, H, W);
    cr_expect(memcmp(a.rgb, b.rgb, sizeof(float) * 3 * H * W) == 0, "same seed, different pixels");
    cr_expect(memcmp(a.lab, b.lab, (size_t)H * W) == 0, "same seed, different labels");
    /* Labels are optional and do not change the picture. */
    float *c = malloc(sizeof(float) * 3 * H * W);
    cr_assert_eq(kiln_scene_generate(42, H, W, c, NULL), KILN_STATUS_OK);
    cr_expect(memcmp(a.rgb, c, sizeof(float) * 3 * H * W) == 0);
    free(c);
    release(a);
    release(b);
}

KT_TEST(examples_support, scenes_differ_across_seeds) {
    const int H = 64, W = 64;
    scene_buf a = render(1, H, W);
    for (uint64_t seed = 2; seed < 6; seed++) {
        scene_buf b = render(seed, H, W);
        size_t same = 0;
        for (int p = 0; p < H * W; p++) same += a.lab[p] == b.lab[p];
        cr_expect(memcmp(a.rgb, b.rgb, sizeof(float) * 3 * H * W) != 0, "seeds 1 and %d give the same scene", (int)seed);
        cr_expect(same < (size_t)(H * W) * 95 / 100, "seeds 1 and %d share %zu of %d labels", (int)seed, same, H * W);
        release(b);
    }
    release(a);
}

KT_TEST(examples_support, scene_values_labels_and_class_proportions) {
    const int H = 128, W = 128, n = 12;
    double share[KILN_SCENE_NUM_CLASSES] = {0};
    int present[KILN_SCENE_NUM_CLASSES] = {0}, with_cars = 0;
    for (int s = 0; s < n; s++) {
        scene_buf b = render(1000 + (uint64_t)s, H, W);
        int count[KILN_SCENE_NUM_CLASSES] = {0};
        for (int i = 0; i < 3 * H * W; i++) cr_assert(b.rgb[i] >= 0.0f && b.rgb[i] <= 1.0f, "pixel %d = %g", i, b.rgb[i]);
        for (int p = 0; p < H * W; p++) {
            cr_assert_lt(b.lab[p], KILN_SCENE_NUM_CLASSES);
            count[b.lab[p]]++;
        }
        for (int c = 0; c < KILN_SCENE_NUM_CLASSES; c++) {
            share[c] += (double)count[c] / (H * W) / n;
            present[c] += count[c] > 0;
        }
        with_cars += count[KILN_SCENE_CAR] >= 40; /* at least a few cars */
        release(b);
    }
    /* Ground dominates, the rest are minorities, cars a small but real share. */
    const double lo[] = {0.35, 0.06, 0.03, 0.03, 0.0, 0.008, 0.02};
    const double hi[] = {0.80, 0.30, 0.20, 0.20, 0.15, 0.06, 0.15};
    for (int c = 0; c < KILN_SCENE_NUM_CLASSES; c++) {
        cr_expect(share[c] >= lo[c] && share[c] <= hi[c], "class %s covers %.3f of the pixels, expected %.3f..%.3f",
                  kiln_scene_class_name(c), share[c], lo[c], hi[c]);
        cr_expect(present[c] > 0, "class %s never appears in %d scenes", kiln_scene_class_name(c), n);
    }
    cr_expect_eq(with_cars, n, "only %d of %d scenes have cars", with_cars, n);
    cr_expect_str_eq(kiln_scene_class_name(KILN_SCENE_CAR), "car");
    cr_expect_str_eq(kiln_scene_class_name(7), "?");
}

KT_TEST(examples_support, scene_batch_matches_generator_and_masks_match_labels) {
    const int H = 48, W = 40;
    const int64_t n = 3, first = 5;
    kiln_tensor *img, *msk, *cls;
    cr_assert_eq(kiln_scene_batch(KILN_SCENE_TRAIN, 9, first, n, H, W, KILN_CPU, &img, &msk, &cls), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    KT_EXPECT_SHAPE(img, 4, n, 3, H, W);
    KT_EXPECT_SHAPE(msk, 4, n, 1, H, W);
    KT_EXPECT_SHAPE(cls, 3, n, H, W);
    cr_expect_eq(kiln_tensor_dtype(img), KILN_F32);
    cr_expect_eq(kiln_tensor_dtype(msk), KILN_F32);
    cr_expect_eq(kiln_tensor_dtype(cls), KILN_I64);
    const float *px = kiln_tensor_data(img), *m = kiln_tensor_data(msk);
    const int64_t *l = kiln_tensor_data(cls);
    for (int64_t i = 0; i < n; i++) {
        scene_buf b = render(kiln_scene_seed(KILN_SCENE_TRAIN, 9, first + i), H, W);
        cr_expect(memcmp(px + i * 3 * H * W, b.rgb, sizeof(float) * 3 * H * W) == 0, "scene %lld differs", (long long)i);
        for (int p = 0; p < H * W; p++) {
            cr_assert_eq(l[i * H * W + p], b.lab[p]);
            cr_assert_eq(m[i * H * W + p], b.lab[p] == KILN_SCENE_CAR ? 1.0f : 0.0f);
        }
        release(b);
    }
    /* Outputs are optional. */
    kiln_tensor *only;
    cr_assert_eq(kiln_scene_batch(KILN_SCENE_TRAIN, 9, first, 1, H, W, KILN_CPU, NULL, &only, NULL), KILN_STATUS_OK);
    cr_expect(memcmp(kiln_tensor_data(only), m, sizeof(float) * H * W) == 0);
}

KT_TEST(examples_support, train_and_heldout_seeds_are_disjoint) {
    for (uint64_t base = 0; base < 3; base++)
        for (int64_t i = 0; i < 200; i++)
            for (int64_t j = 0; j < 200; j += 7)
                cr_assert_neq(kiln_scene_seed(KILN_SCENE_TRAIN, base, i), kiln_scene_seed(KILN_SCENE_HELDOUT, base, j));
    cr_expect_eq(kiln_scene_seed(KILN_SCENE_TRAIN, 1, 3), (1ull << 32) + 3);
    cr_expect_eq(kiln_scene_seed(KILN_SCENE_HELDOUT, 1, 3), (1ull << 32) + (1ull << 31) + 3);
    kiln_tensor *tr, *ho;
    cr_assert_eq(kiln_scene_batch(KILN_SCENE_TRAIN, 0, 0, 1, 32, 32, KILN_CPU, &tr, NULL, NULL), KILN_STATUS_OK);
    cr_assert_eq(kiln_scene_batch(KILN_SCENE_HELDOUT, 0, 0, 1, 32, 32, KILN_CPU, &ho, NULL, NULL), KILN_STATUS_OK);
    cr_expect(memcmp(kiln_tensor_data(tr), kiln_tensor_data(ho), sizeof(float) * 3 * 32 * 32) != 0);
}

KT_TEST(examples_support, scene_rejects_bad_arguments) {
    float rgb[3 * 8 * 8];
    cr_expect_eq(kiln_scene_generate(1, 4, 8, rgb, NULL), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "outside 8..4096");
    cr_expect_eq(kiln_scene_generate(1, 8, 8, NULL, NULL), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "rgb is NULL");
    kiln_tensor *img = (kiln_tensor *)1;
    cr_expect_eq(kiln_scene_batch(KILN_SCENE_TRAIN, 0, 0, 0, 32, 32, KILN_CPU, &img, NULL, NULL),
                 KILN_STATUS_INVALID_ARGUMENT);
    cr_expect_null(img);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "n must be positive");
}

/* ---- JSON -------------------------------------------------------------------------------- */

KT_TEST(examples_support, json_escaping) {
    char out[128];
    size_t n = kiln_json_escape("a\"b\\c\nd\te\x01\x1f/", out, sizeof out);
    cr_expect_str_eq(out, "\"a\\\"b\\\\c\\nd\\te\\u0001\\u001f/\"");
    cr_expect_eq(n, strlen(out));
    kiln_json_escape("\b\f\r", out, sizeof out);
    cr_expect_str_eq(out, "\"\\b\\f\\r\"");
    /* Valid UTF-8 passes through; bytes that are not UTF-8 become U+FFFD. */
    kiln_json_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x97", out, sizeof out);
    cr_expect_str_eq(out, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x97\"");
    kiln_json_escape("x\xffy\xc3(\xc0\xaf\xed\xa0\x80", out, sizeof out);
    cr_expect_str_eq(out, "\"x\\ufffdy\\ufffd(\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"");
    /* A short buffer is cut and terminated; the return value is the full length. */
    char tiny[5];
    cr_expect_eq(kiln_json_escape("abcdef", tiny, sizeof tiny), 8);
    cr_expect_str_eq(tiny, "\"abc");
    cr_expect_eq(kiln_json_escape(NULL, out, sizeof out), 2);
    cr_expect_str_eq(out, "\"\"");
}

KT_TEST(examples_support, json_result_line) {
    kiln_json j;
    kiln_json_begin(&j);
    kiln_json_string(&j, "example", "car_mask");
    kiln_json_string(&j, "note", "say \"hi\"\n");
    kiln_json_number(&j, "iou", 0.1);
    kiln_json_number(&j, "big", 1e300);
    kiln_json_number(&j, "third", 1.0 / 3.0);
    kiln_json_number(&j, "nan", NAN);
    kiln_json_number(&j, "inf", -INFINITY);
    kiln_json_int(&j, "steps", -1234567890123LL);
    kiln_json_bool(&j, "cuda", false);
    kiln_json_numbers(&j, "loss", (const double[]){0.5, 0.25, 2}, 3);
    kiln_json_numbers(&j, "empty", NULL, 0);
    kiln_json_string(&j, "null", NULL);
    const char *s = kiln_json_end(&j);
    cr_assert_not_null(s);
    cr_expect_str_eq(s, "{\"example\": \"car_mask\", \"note\": \"say \\\"hi\\\"\\n\", \"iou\": 0.1, \"big\": 1e+300, "
                        "\"third\": 0.3333333333333333, \"nan\": null, \"inf\": null, \"steps\": -1234567890123, "
                        "\"cuda\": false, \"loss\": [0.5, 0.25, 2], \"empty\": [], \"null\": null}");
    cr_expect_eq(kiln_json_end(&j), s, "ending twice changes nothing");
    FILE *f = tmpfile();
    kiln_json_print(&j, f);
    cr_expect_null(j.buf);
    rewind(f);
    char line[512];
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_expect_eq(line[strlen(line) - 1], '\n');
    fclose(f);
}

/* ---- options ----------------------------------------------------------------------------- */

typedef struct {
    kiln_common_args c;
    double lr;
    const char *loss;
    bool resume;
} opts;

static kiln_args_result parse(opts *o, int argc, const char **argv) {
    kiln_common_defaults(&o->c);
    o->lr = 1e-3, o->loss = "bce_with_logits", o->resume = false;
    const kiln_arg table[] = {
        KILN_COMMON_ARG_TABLE(o->c),
        {"lr", KILN_ARG_DOUBLE, &o->lr, "learning rate", NULL},
        {"loss", KILN_ARG_CHOICE, &o->loss, "loss", "bce|bce_with_logits"},
        {"resume", KILN_ARG_FLAG, &o->resume, "continue", NULL},
    };
    return kiln_args_parse(argc, (char **)argv, "test", (int)(sizeof table / sizeof table[0]), table);
}

KT_TEST(examples_support, args_parse_values_and_defaults) {
    opts o;
    const char *argv[] = {"prog", "--epochs", "5", "--lr=0.01", "--json", "--device", "cpu",
                          "--loss", "bce", "--seed", "-7", "--out=res", "--data", "/d"};
    cr_assert_eq(parse(&o, 14, argv), KILN_ARGS_OK, "%s", kiln_last_error());
    cr_expect_eq(o.c.epochs, 5);
    cr_expect_float_eq(o.lr, 0.01, 1e-15);
    cr_expect(o.c.json);
    cr_expect(kiln_device_equal(o.c.device, KILN_CPU));
    cr_expect_str_eq(o.loss, "bce");
    cr_expect_eq(o.c.seed, -7);
    cr_expect_str_eq(o.c.out, "res");
    cr_expect_str_eq(o.c.data, "/d");
    cr_expect_eq(o.c.batch, 16, "untouched options keep their defaults");
    cr_expect_eq(o.c.size, 128);
    cr_expect(!o.resume);
}

KT_TEST(examples_support, args_reject_bad_input) {
    opts o;
    const char *unknown[] = {"prog", "--epoch", "3"};
    cr_expect_eq(parse(&o, 3, unknown), KILN_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "unknown option '--epoch'");
    const char *bad_int[] = {"prog", "--epochs", "3x"};
    cr_expect_eq(parse(&o, 3, bad_int), KILN_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "--epochs: '3x' is not");
    const char *big_int[] = {"prog", "--batch", "99999999999"};
    cr_expect_eq(parse(&o, 3, big_int), KILN_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "int-sized");
    const char *bad_choice[] = {"prog", "--loss", "mse"};
    cr_expect_eq(parse(&o, 3, bad_choice), KILN_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "not one of bce|bce_with_logits");
    const char *missing[] = {"prog", "--lr"};
    cr_expect_eq(parse(&o, 2, missing), KILN_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "--lr: needs a value");
    const char *bad_dev[] = {"prog", "--device", "tpu"};
    cr_expect_eq(parse(&o, 3, bad_dev), KILN_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "not a device");
    const char *flag_value[] = {"prog", "--json=1"};
    cr_expect_eq(parse(&o, 2, flag_value), KILN_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "takes no value");
    const char *stray[] = {"prog", "epochs"};
    cr_expect_eq(parse(&o, 2, stray), KILN_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "unexpected argument");
}

KT_TEST(examples_support, args_usage_lists_every_option) {
    opts o;
    kiln_common_defaults(&o.c);
    const kiln_arg table[] = {KILN_COMMON_ARG_TABLE(o.c), {"loss", KILN_ARG_CHOICE, &o.loss, "loss", "bce|ce"}};
    FILE *f = tmpfile();
    kiln_args_usage(f, "car_mask", "Trains a U-Net.", 9, table);
    rewind(f);
    char text[4096] = "";
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    const char *want[] = {"usage: car_mask", "--device DEV", "--epochs N", "--batch N", "--size N", "--seed N",
                          "--data S",        "--out S",      "--json ",    "--loss bce|ce", "--help"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect(strstr(text, want[i]) != NULL, "usage lacks '%s':\n%s", want[i], text);
}

/* ---- progress ------------------------------------------------------------------------------ */

static char *read_all(FILE *f) {
    long n = ftell(f);
    rewind(f);
    char *s = calloc((size_t)n + 1, 1);
    cr_assert_eq(fread(s, 1, (size_t)n, f), (size_t)n);
    return s;
}

static int count_char(const char *s, char c) {
    int n = 0;
    for (; *s; s++) n += *s == c;
    return n;
}

KT_TEST(examples_support, progress_lines_when_not_a_terminal) {
    FILE *f = tmpfile();
    kiln_progress p;
    kiln_progress_init(&p, f, KILN_PROGRESS_AUTO, "train", 20); /* a file is not a terminal */
    cr_expect_eq(p.mode, KILN_PROGRESS_LINES);
    for (int i = 1; i <= 20; i++) kiln_progress_update(&p, i, 1.0 / i);
    kiln_progress_finish(&p);
    char *s = read_all(f);
    cr_expect_eq(count_char(s, '\n'), 10, "one line per tenth (10%%..90%%) and a final one:\n%s", s);
    cr_expect_eq(count_char(s, '\r'), 0);
    cr_expect(strstr(s, "train  10% 2/20 loss 0.5000") != NULL, "%s", s);
    cr_expect(strstr(s, "train  90% 18/20") != NULL, "%s", s);
    cr_expect(strstr(s, "train done 20/20 loss 0.0500") != NULL, "%s", s);
    cr_expect(strstr(s, "steps/s") && strstr(s, "ETA"), "%s", s);
    free(s);
    fclose(f);
}

KT_TEST(examples_support, progress_bar_redraws_in_place) {
    FILE *f = tmpfile();
    kiln_progress p;
    kiln_progress_init(&p, f, KILN_PROGRESS_BAR, "epoch 1", 4);
    kiln_progress_update(&p, 1, NAN);
    kiln_progress_update(&p, 4, 0.25);
    kiln_progress_finish(&p);
    char *s = read_all(f);
    cr_expect(strstr(s, "\repoch 1 [######..................] 1/4 |") != NULL, "%s", s);
    cr_expect(strstr(s, "[########################] 4/4 loss 0.2500") != NULL, "%s", s);
    cr_expect_eq(count_char(s, '\n'), 1, "the bar stays on one line:\n%s", s);
    free(s);
    fclose(f);

    f = tmpfile();
    kiln_progress_init(&p, f, KILN_PROGRESS_QUIET, "x", 4);
    kiln_progress_update(&p, 2, 1);
    kiln_progress_finish(&p);
    cr_expect_eq(ftell(f), 0, "quiet prints nothing");
    fclose(f);
}

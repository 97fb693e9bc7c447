/* The example support library, part 1: the synthetic aerial scenes (deterministic,
 * varied, plausible class proportions, masks that match labels, disjoint splits), the
 * JSON result line, the option parser and the progress output. */
#include "support/kiln_test.h"

#include <kx.h>
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
    cr_assert_eq(kx_scene_generate(seed, H, W, b.rgb, b.lab), KILN_STATUS_OK, "%s", kiln_last_error());
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
    cr_assert_eq(kx_scene_generate(42, H, W, c, NULL), KILN_STATUS_OK);
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
    double share[KX_SCENE_NUM_CLASSES] = {0};
    int present[KX_SCENE_NUM_CLASSES] = {0}, with_cars = 0;
    for (int s = 0; s < n; s++) {
        scene_buf b = render(1000 + (uint64_t)s, H, W);
        int count[KX_SCENE_NUM_CLASSES] = {0};
        for (int i = 0; i < 3 * H * W; i++) cr_assert(b.rgb[i] >= 0.0f && b.rgb[i] <= 1.0f, "pixel %d = %g", i, b.rgb[i]);
        for (int p = 0; p < H * W; p++) {
            cr_assert_lt(b.lab[p], KX_SCENE_NUM_CLASSES);
            count[b.lab[p]]++;
        }
        for (int c = 0; c < KX_SCENE_NUM_CLASSES; c++) {
            share[c] += (double)count[c] / (H * W) / n;
            present[c] += count[c] > 0;
        }
        with_cars += count[KX_SCENE_CAR] >= 40; /* at least a few cars */
        release(b);
    }
    /* Ground dominates, the rest are minorities, cars a small but real share. */
    const double lo[] = {0.35, 0.06, 0.03, 0.03, 0.0, 0.008, 0.02};
    const double hi[] = {0.80, 0.30, 0.20, 0.20, 0.15, 0.06, 0.15};
    for (int c = 0; c < KX_SCENE_NUM_CLASSES; c++) {
        cr_expect(share[c] >= lo[c] && share[c] <= hi[c], "class %s covers %.3f of the pixels, expected %.3f..%.3f",
                  kx_scene_class_name(c), share[c], lo[c], hi[c]);
        cr_expect(present[c] > 0, "class %s never appears in %d scenes", kx_scene_class_name(c), n);
    }
    cr_expect_eq(with_cars, n, "only %d of %d scenes have cars", with_cars, n);
    cr_expect_str_eq(kx_scene_class_name(KX_SCENE_CAR), "car");
    cr_expect_str_eq(kx_scene_class_name(7), "?");
}

KT_TEST(examples_support, scene_batch_matches_generator_and_masks_match_labels) {
    const int H = 48, W = 40;
    const int64_t n = 3, first = 5;
    kiln_tensor *img, *msk, *cls;
    cr_assert_eq(kx_scene_batch(KX_SCENE_TRAIN, 9, first, n, H, W, KILN_CPU, &img, &msk, &cls), KILN_STATUS_OK, "%s",
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
        scene_buf b = render(kx_scene_seed(KX_SCENE_TRAIN, 9, first + i), H, W);
        cr_expect(memcmp(px + i * 3 * H * W, b.rgb, sizeof(float) * 3 * H * W) == 0, "scene %lld differs", (long long)i);
        for (int p = 0; p < H * W; p++) {
            cr_assert_eq(l[i * H * W + p], b.lab[p]);
            cr_assert_eq(m[i * H * W + p], b.lab[p] == KX_SCENE_CAR ? 1.0f : 0.0f);
        }
        release(b);
    }
    /* Outputs are optional. */
    kiln_tensor *only;
    cr_assert_eq(kx_scene_batch(KX_SCENE_TRAIN, 9, first, 1, H, W, KILN_CPU, NULL, &only, NULL), KILN_STATUS_OK);
    cr_expect(memcmp(kiln_tensor_data(only), m, sizeof(float) * H * W) == 0);
}

KT_TEST(examples_support, train_and_heldout_seeds_are_disjoint) {
    for (uint64_t base = 0; base < 3; base++)
        for (int64_t i = 0; i < 200; i++)
            for (int64_t j = 0; j < 200; j += 7)
                cr_assert_neq(kx_scene_seed(KX_SCENE_TRAIN, base, i), kx_scene_seed(KX_SCENE_HELDOUT, base, j));
    cr_expect_eq(kx_scene_seed(KX_SCENE_TRAIN, 1, 3), (1ull << 32) + 3);
    cr_expect_eq(kx_scene_seed(KX_SCENE_HELDOUT, 1, 3), (1ull << 32) + (1ull << 31) + 3);
    kiln_tensor *tr, *ho;
    cr_assert_eq(kx_scene_batch(KX_SCENE_TRAIN, 0, 0, 1, 32, 32, KILN_CPU, &tr, NULL, NULL), KILN_STATUS_OK);
    cr_assert_eq(kx_scene_batch(KX_SCENE_HELDOUT, 0, 0, 1, 32, 32, KILN_CPU, &ho, NULL, NULL), KILN_STATUS_OK);
    cr_expect(memcmp(kiln_tensor_data(tr), kiln_tensor_data(ho), sizeof(float) * 3 * 32 * 32) != 0);
}

KT_TEST(examples_support, scene_rejects_bad_arguments) {
    float rgb[3 * 8 * 8];
    cr_expect_eq(kx_scene_generate(1, 4, 8, rgb, NULL), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "outside 8..4096");
    cr_expect_eq(kx_scene_generate(1, 8, 8, NULL, NULL), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "rgb is NULL");
    kiln_tensor *img = (kiln_tensor *)1;
    cr_expect_eq(kx_scene_batch(KX_SCENE_TRAIN, 0, 0, 0, 32, 32, KILN_CPU, &img, NULL, NULL),
                 KILN_STATUS_INVALID_ARGUMENT);
    cr_expect_null(img);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "n must be positive");
}

/* ---- JSON -------------------------------------------------------------------------------- */

KT_TEST(examples_support, json_escaping) {
    char out[128];
    size_t n = kx_json_escape("a\"b\\c\nd\te\x01\x1f/", out, sizeof out);
    cr_expect_str_eq(out, "\"a\\\"b\\\\c\\nd\\te\\u0001\\u001f/\"");
    cr_expect_eq(n, strlen(out));
    kx_json_escape("\b\f\r", out, sizeof out);
    cr_expect_str_eq(out, "\"\\b\\f\\r\"");
    /* Valid UTF-8 passes through; bytes that are not UTF-8 become U+FFFD. */
    kx_json_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x97", out, sizeof out);
    cr_expect_str_eq(out, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x9a\x97\"");
    kx_json_escape("x\xffy\xc3(\xc0\xaf\xed\xa0\x80", out, sizeof out);
    cr_expect_str_eq(out, "\"x\\ufffdy\\ufffd(\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\"");
    /* A short buffer is cut and terminated; the return value is the full length. */
    char tiny[5];
    cr_expect_eq(kx_json_escape("abcdef", tiny, sizeof tiny), 8);
    cr_expect_str_eq(tiny, "\"abc");
    cr_expect_eq(kx_json_escape(NULL, out, sizeof out), 2);
    cr_expect_str_eq(out, "\"\"");
}

KT_TEST(examples_support, json_result_line) {
    kx_json j;
    kx_json_begin(&j);
    kx_json_string(&j, "example", "car_mask");
    kx_json_string(&j, "note", "say \"hi\"\n");
    kx_json_number(&j, "iou", 0.1);
    kx_json_number(&j, "big", 1e300);
    kx_json_number(&j, "third", 1.0 / 3.0);
    kx_json_number(&j, "nan", NAN);
    kx_json_number(&j, "inf", -INFINITY);
    kx_json_int(&j, "steps", -1234567890123LL);
    kx_json_bool(&j, "cuda", false);
    kx_json_numbers(&j, "loss", (const double[]){0.5, 0.25, 2}, 3);
    kx_json_numbers(&j, "empty", NULL, 0);
    kx_json_string(&j, "null", NULL);
    const char *s = kx_json_end(&j);
    cr_assert_not_null(s);
    cr_expect_str_eq(s, "{\"example\": \"car_mask\", \"note\": \"say \\\"hi\\\"\\n\", \"iou\": 0.1, \"big\": 1e+300, "
                        "\"third\": 0.3333333333333333, \"nan\": null, \"inf\": null, \"steps\": -1234567890123, "
                        "\"cuda\": false, \"loss\": [0.5, 0.25, 2], \"empty\": [], \"null\": null}");
    cr_expect_eq(kx_json_end(&j), s, "ending twice changes nothing");
    FILE *f = tmpfile();
    kx_json_print(&j, f);
    cr_expect_null(j.buf);
    rewind(f);
    char line[512];
    cr_assert_not_null(fgets(line, sizeof line, f));
    cr_expect_eq(line[strlen(line) - 1], '\n');
    fclose(f);
}

/* ---- options ----------------------------------------------------------------------------- */

typedef struct {
    kx_common_args c;
    double lr;
    const char *loss;
    bool resume;
} opts;

static kx_args_result parse(opts *o, int argc, const char **argv) {
    kx_common_defaults(&o->c);
    o->lr = 1e-3, o->loss = "bce_with_logits", o->resume = false;
    kx_arg table[] = {
        KX_COMMON_ARG_TABLE(o->c),
        {"lr", KX_ARG_DOUBLE, &o->lr, "learning rate", NULL},
        {"loss", KX_ARG_CHOICE, &o->loss, "loss", "bce|bce_with_logits"},
        {"resume", KX_ARG_FLAG, &o->resume, "continue", NULL},
    };
    int n = (int)(sizeof table / sizeof table[0]);
    cr_assert_eq(kx_args_set_range(n, table, "batch", 1, 4096), KILN_STATUS_OK);
    return kx_args_parse(argc, (char **)argv, "test", n, table);
}

KT_TEST(examples_support, args_parse_values_and_defaults) {
    opts o;
    const char *argv[] = {"prog", "--epochs", "5", "--lr=0.01", "--json", "--device", "cpu",
                          "--loss", "bce", "--seed", "-7", "--out=res", "--data", "/d"};
    cr_assert_eq(parse(&o, 14, argv), KX_ARGS_OK, "%s", kiln_last_error());
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
    cr_expect_eq(parse(&o, 3, unknown), KX_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "unknown option '--epoch'");
    const char *bad_int[] = {"prog", "--epochs", "3x"};
    cr_expect_eq(parse(&o, 3, bad_int), KX_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "--epochs: '3x' is not");
    const char *big_int[] = {"prog", "--batch", "99999999999"};
    cr_expect_eq(parse(&o, 3, big_int), KX_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "int-sized");
    const char *bad_choice[] = {"prog", "--loss", "mse"};
    cr_expect_eq(parse(&o, 3, bad_choice), KX_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "not one of bce|bce_with_logits");
    const char *missing[] = {"prog", "--lr"};
    cr_expect_eq(parse(&o, 2, missing), KX_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "--lr: needs a value");
    const char *bad_dev[] = {"prog", "--device", "tpu"};
    cr_expect_eq(parse(&o, 3, bad_dev), KX_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "not a device");
    const char *flag_value[] = {"prog", "--json=1"};
    cr_expect_eq(parse(&o, 2, flag_value), KX_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "takes no value");
    const char *stray[] = {"prog", "epochs"};
    cr_expect_eq(parse(&o, 2, stray), KX_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "unexpected argument");
}

/* Numbers are the whole value: strtoll and strtod skip leading blanks and strtod takes
 * "nan" and "inf", which trained to NaN and exited 0 (--lr inf), or silently fell back
 * to a default (--lr nan). */
KT_TEST(examples_support, args_numbers_are_strict_finite_and_in_range) {
    opts o;
    struct {
        const char *opt, *value, *says;
    } bad[] = {
        {"--batch", " 8", "--batch: ' 8' is not an int-sized integer"},
        {"--batch", "8 ", "--batch: '8 ' is not an int-sized integer"},
        {"--batch", "\t8", "is not an int-sized integer"},
        {"--batch", "", "--batch: '' is not an int-sized integer"},
        {"--batch", "0x10", "is not an int-sized integer"},
        {"--seed", "12abc", "--seed: '12abc' is not a 64-bit integer"},
        {"--lr", " 0.1", "--lr: ' 0.1' is not a number"},
        {"--lr", "0.1x", "--lr: '0.1x' is not a number"},
        {"--lr", "inf", "--lr: 'inf' is not a finite number"},
        {"--lr", "-Infinity", "--lr: '-Infinity' is not a finite number"},
        {"--lr", "nan", "--lr: 'nan' is not a finite number"},
        {"--lr", "1e999", "--lr: '1e999' is not a number"},
        {"--batch", "0", "--batch: 0 is outside the allowed range 1..4096"},
        {"--batch", "2147483647", "--batch: 2147483647 is outside the allowed range 1..4096"},
        {"--batch", "-3", "--batch: -3 is outside the allowed range 1..4096"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *argv[] = {"prog", bad[i].opt, bad[i].value};
        cr_expect_eq(parse(&o, 3, argv), KX_ARGS_ERROR, "%s '%s' was accepted", bad[i].opt, bad[i].value);
        kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, bad[i].says);
    }
    const char *ok[] = {"prog", "--batch", "4096", "--lr=-2.5e-3", "--seed", "+7"};
    cr_assert_eq(parse(&o, 6, ok), KX_ARGS_OK, "%s", kiln_last_error());
    cr_expect_eq(o.c.batch, 4096);
    cr_expect_eq(o.lr, -2.5e-3);
    cr_expect_eq(o.c.seed, 7);
    kx_arg t[] = {{"x", KX_ARG_INT, &o.c.size, "x", NULL}};
    cr_expect_eq(kx_args_set_range(1, t, "y", 0, 1), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "no option --y in the table");
    /* the range shows in the usage */
    FILE *f = tmpfile();
    t[0].min = 8, t[0].max = 1024;
    kx_args_usage(f, "p", NULL, 1, t);
    rewind(f);
    char text[512] = "";
    text[fread(text, 1, sizeof text - 1, f)] = '\0';
    fclose(f);
    cr_expect(strstr(text, "--x N") && strstr(text, "x (8..1024)"), "usage:\n%s", text);
}

/* A bad KILN_DEVICE used to record an error in kx_common_defaults that stayed the
 * thread's first and replaced every later error. Now the default falls back quietly and
 * the parser reports the variable, once, unless --device makes it irrelevant. */
KT_TEST(examples_support, a_bad_KILN_DEVICE_is_reported_by_the_parser_alone) {
    opts o;
    setenv("KILN_DEVICE", "tpu", 1);
    kiln_device fallback = kiln_cuda_device_count() > 0 ? KILN_CUDA(0) : KILN_CPU;
    cr_expect(kiln_device_equal(kx_args_default_device(), fallback));
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK, "it recorded: %s", kiln_last_error());
    kx_common_args c;
    kx_common_defaults(&c);
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK, "kx_common_defaults recorded: %s", kiln_last_error());
    const char *plain[] = {"prog", "--epochs", "2"};
    cr_expect_eq(parse(&o, 3, plain), KX_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT,
                    "KILN_DEVICE='tpu' is not a device: set it to cpu, cuda or cuda:N, unset it, or pass --device");
    /* an option's own error comes first and is itself */
    const char *bad_batch[] = {"prog", "--batch", "0"};
    cr_expect_eq(parse(&o, 3, bad_batch), KX_ARGS_ERROR);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "--batch: 0 is outside");
    /* --device overrides the variable: nothing to report */
    const char *given[] = {"prog", "--device", "cpu", "--epochs", "2"};
    cr_expect_eq(parse(&o, 5, given), KX_ARGS_OK, "%s", kiln_last_error());
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK);
    cr_expect(kiln_device_equal(o.c.device, KILN_CPU));
    /* a later error is reported as itself */
    kiln_set_error(KILN_STATUS_IO, "the real error");
    cr_expect_str_eq(kiln_last_error(), "the real error");
    kiln_clear_error();
    /* an earlier error is kept, not cleared by the check */
    kiln_set_error(KILN_STATUS_IO, "earlier");
    kx_args_default_device();
    kt_expect_error(KILN_STATUS_IO, "earlier");
    setenv("KILN_DEVICE", "cpu", 1);
    cr_expect(kiln_device_equal(kx_args_default_device(), KILN_CPU));
    cr_expect_eq(parse(&o, 3, plain), KX_ARGS_OK, "%s", kiln_last_error());
}

KT_TEST(examples_support, out_dir_loss_check_and_error_prefix) {
    char dir[] = "/tmp/kiln_ex_out_XXXXXX", path[256];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/new/sub", dir);
    cr_expect_eq(kx_out_dir(path), KILN_STATUS_OK, "%s", kiln_last_error());
    snprintf(path, sizeof path, "%s/file", dir);
    FILE *f = fopen(path, "w");
    fclose(f);
    cr_expect_eq(kx_out_dir(path), KILN_STATUS_INVALID_ARGUMENT);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "file' is a file, not a directory: --out names the directory");
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_expect_eq(system(cmd), 0);

    cr_expect_eq(kx_check_loss(0.25, 1, 1, 10, 1e-3), KILN_STATUS_OK);
    cr_expect_eq(kx_check_loss(NAN, 3, 7, 10, 0.5), KILN_STATUS_ANOMALY);
    kt_expect_error(KILN_STATUS_ANOMALY, "the training loss became NaN at epoch 3, step 7 of 10: training diverged "
                                         "(lower --lr, now 0.5)");
    cr_expect_eq(kx_check_loss(-INFINITY, 1, 2, 2, 1), KILN_STATUS_ANOMALY);
    kt_expect_error(KILN_STATUS_ANOMALY, "became -Inf at epoch 1, step 2 of 2");

    cr_expect_eq(kx_error_prefix("nothing %d", 1), KILN_STATUS_OK);
    cr_expect_eq(kiln_last_status(), KILN_STATUS_OK);
    kiln_set_error(KILN_STATUS_SHAPE, "bce: shapes differ");
    cr_expect_eq(kx_error_prefix("epoch %d, step %d of %d", 2, 3, 4), KILN_STATUS_SHAPE);
    kt_expect_error(KILN_STATUS_SHAPE, "epoch 2, step 3 of 4: bce: shapes differ");
}

/* A layer that failed to build: the Sequential is NULL, the other layers are freed
 * (ASan's leak check sees them), and the layer's error is the one reported. */
KT_TEST(examples_support, sequential_of_a_missing_layer_is_null_and_frees_the_rest) {
    kiln_module *l[3] = {kiln_linear_create(4, 3, true, KILN_F32), NULL, kiln_relu_create()};
    kiln_set_error(KILN_STATUS_OOM, "the layer's own error");
    cr_expect_null(kx_sequential_of(3, l));
    kt_expect_error(KILN_STATUS_OOM, "the layer's own error");
    kiln_module *ok[2] = {kiln_linear_create(4, 3, true, KILN_F32), kiln_relu_create()};
    kiln_module *s = kx_sequential_of(2, ok);
    cr_assert_not_null(s, "%s", kiln_last_error());
    cr_expect_eq(kiln_module_num_children(s), 2);
    kiln_module_free(s);
}

KT_TEST(examples_support, args_usage_lists_every_option) {
    opts o;
    kx_common_defaults(&o.c);
    o.loss = "ce";
    const kx_arg table[] = {KX_COMMON_ARG_TABLE(o.c), {"loss", KX_ARG_CHOICE, &o.loss, "loss", "bce|ce"}};
    FILE *f = tmpfile();
    kx_args_usage(f, "car_mask", "Trains a U-Net.", (int)(sizeof table / sizeof *table), table);
    rewind(f);
    char text[4096] = "";
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    const char *want[] = {"usage: car_mask", "--device DEV", "--epochs N", "--batch N", "--size N", "--seed N",
                          "--data S",        "--out S",      "--json ",    "--loss bce|ce", "--help",
                          "--export-weights S", "(default: 3)", "(default: out/example)", "(default: ce)",
                          "(default here: cpu)"};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        cr_expect(strstr(text, want[i]) != NULL, "usage lacks '%s':\n%s", want[i], text);
    cr_expect(!strstr(text, "--data S                     dataset directory (default"), "an unset string shows a "
              "default:\n%s", text);
}

/* --help prints the defaults even after options that change them; an option the program
 * never uses (kx_args_refuse) or the mode ignores (kx_args_not_for) is an error
 * naming it and why; kx_args_given reads argv as the parser does. */
KT_TEST(examples_support, args_defaults_in_help_refused_and_not_for) {
    kx_common_args c;
    kx_common_defaults(&c);
    c.epochs = 7;
    kx_arg table[] = {KX_COMMON_ARG_TABLE(c)};
    int n = (int)(sizeof table / sizeof *table);
    cr_assert_eq(kx_args_refuse(n, table, "size", "to this program (28x28 images)"), KILN_STATUS_OK);
    cr_expect_eq(kx_args_refuse(n, table, "nope", "x"), KILN_STATUS_INVALID_ARGUMENT);
    kiln_clear_error();
    fflush(stdout);
    FILE *saved = stdout, *f = tmpfile();
    stdout = f;
    const char *help[] = {"prog", "--epochs", "99", "--help"};
    kx_args_result r = kx_args_parse(4, (char **)help, NULL, n, table);
    stdout = saved;
    long len = ftell(f);
    rewind(f);
    char text[4096] = "";
    size_t got = fread(text, 1, sizeof text - 1, f);
    text[got] = '\0';
    fclose(f);
    cr_expect_eq(r, KX_ARGS_HELP);
    cr_expect(len > 0 && strstr(text, "(default: 7)") && !strstr(text, "(default: 99)"), "%s", text);
    cr_expect(strstr(text, "--size N                     not used: giving it is an error (it does not apply to this "
                           "program (28x28 images))"), "%s", text);
    cr_expect_eq(c.epochs, 7, "--help came before --epochs 99 was stored");

    const char *sized[] = {"prog", "--size=32"};
    cr_expect_eq(kx_args_parse(2, (char **)sized, NULL, n, table), KX_ARGS_ERROR);
    cr_expect_str_eq(kiln_last_error(), "--size does not apply to this program (28x28 images)");
    kiln_clear_error();

    const char *argv[] = {"prog", "--out", "--seed", "--epochs=2", "--json"};
    cr_assert_eq(kx_args_parse(5, (char **)argv, NULL, n, table), KX_ARGS_OK, "%s", kiln_last_error());
    cr_expect_str_eq(c.out, "--seed");
    cr_expect(kx_args_given(5, (char **)argv, n, table, "out"));
    cr_expect(kx_args_given(5, (char **)argv, n, table, "epochs"));
    cr_expect(kx_args_given(5, (char **)argv, n, table, "json"));
    cr_expect(!kx_args_given(5, (char **)argv, n, table, "seed"), "the value of --out is not an option");
    cr_expect_eq(kx_args_not_for(5, (char **)argv, n, table, "batch|seed", "here"), KILN_STATUS_OK);
    cr_expect_eq(kx_args_not_for(5, (char **)argv, n, table, "batch|epochs", "with --predict (it trains nothing)"),
                 KILN_STATUS_INVALID_ARGUMENT);
    cr_expect_str_eq(kiln_last_error(), "--epochs does not apply with --predict (it trains nothing)");
    kiln_clear_error();
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
    kx_progress p;
    kx_progress_init(&p, f, KX_PROGRESS_AUTO, "train", 20); /* a file is not a terminal */
    cr_expect_eq(p.mode, KX_PROGRESS_LINES);
    for (int i = 1; i <= 20; i++) kx_progress_update(&p, i, 1.0 / i);
    kx_progress_finish(&p);
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
    kx_progress p;
    kx_progress_init(&p, f, KX_PROGRESS_BAR, "epoch 1", 4);
    kx_progress_update(&p, 1, NAN);
    kx_progress_update(&p, 4, 0.25);
    kx_progress_finish(&p);
    char *s = read_all(f);
    cr_expect(strstr(s, "\repoch 1 [######..................] 1/4 |") != NULL, "%s", s);
    cr_expect(strstr(s, "[########################] 4/4 loss 0.2500") != NULL, "%s", s);
    cr_expect_eq(count_char(s, '\n'), 1, "the bar stays on one line:\n%s", s);
    free(s);
    fclose(f);

    f = tmpfile();
    kx_progress_init(&p, f, KX_PROGRESS_QUIET, "x", 4);
    kx_progress_update(&p, 2, 1);
    kx_progress_finish(&p);
    cr_expect_eq(ftell(f), 0, "quiet prints nothing");
    fclose(f);
}

/* With the batch known, the bar speaks in images/s (what a person compares across batch
 * sizes and machines), keeps the loss and the ETA. */
KT_TEST(examples_support, progress_shows_images_per_second_and_eta) {
    FILE *f = tmpfile();
    kx_progress p;
    kx_progress_init(&p, f, KX_PROGRESS_LINES, "train", 10);
    kx_progress_set_images(&p, 32);
    for (int i = 1; i <= 10; i++) kx_progress_update(&p, i, 0.5);
    kx_progress_finish(&p);
    char *s = read_all(f);
    cr_expect(strstr(s, "train  10% 1/10 loss 0.5000 | ") && strstr(s, " images/s | ETA "), "%s", s);
    cr_expect(!strstr(s, "steps/s"), "images/s replaces steps/s once the batch is known:\n%s", s);
    /* the rate printed is 32 images a step over the time taken: a positive number */
    const char *r = strstr(s, "| ");
    cr_assert(r);
    cr_expect(strtod(r + 2, NULL) > 0, "%s", s);
    free(s);
    fclose(f);
}

/* Metrics on small hand-computed cases: binary counts at a threshold (from
 * probabilities and from logits), the confusion matrix from scores (argmax over
 * the class axis of a pixel grid, ignore_index skipped) and from labels, per-class
 * IoU / Dice / precision / recall, mIoU excluding absent classes, accumulation
 * over batches and reset. */
#include "support/kiln_test.h"

TestSuite(metrics, .init = kiln_test_setup, .fini = kiln_test_teardown);

static kiln_tensor *labels(int ndim, const int64_t *shape, const int64_t *v) {
    kiln_tensor *t = kiln_tensor_from_host(v, ndim, shape, KILN_I64, KILN_CPU);
    cr_assert(t, "%s", kiln_last_error());
    return t;
}

#define EXPECT_NEAR(a, b) cr_expect(fabs((a) - (b)) < 1e-12, "%s = %.15g, expected %.15g", #a, (double)(a), (double)(b))

KT_TEST(metrics, binary_from_probabilities) {
    kiln_binary_metrics *m = kiln_binary_metrics_create(0.5, KILN_SCORES_PROBABILITIES);
    cr_assert(m);
    /* preds > 0.5: 1 0 1 1 0 0 (0.5 itself is not above the threshold) */
    kiln_tensor *p = KT_F32(2, KT_SHAPE(2, 3), {0.9, 0.5, 0.7, 0.6, 0.1, 0.2});
    kiln_tensor *t = KT_F32(2, KT_SHAPE(2, 3), {1, 1, 0, 1, 0, 1});
    cr_assert_eq(kiln_binary_metrics_update(m, p, t), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_binary_counts c = kiln_binary_metrics_counts(m);
    cr_expect(c.tp == 2 && c.fp == 1 && c.fn == 2 && c.tn == 1, "tp %lld fp %lld fn %lld tn %lld", (long long)c.tp,
              (long long)c.fp, (long long)c.fn, (long long)c.tn);
    EXPECT_NEAR(kiln_binary_metrics_pixel_accuracy(m), 3.0 / 6);
    EXPECT_NEAR(kiln_binary_metrics_precision(m), 2.0 / 3);
    EXPECT_NEAR(kiln_binary_metrics_recall(m), 2.0 / 4);
    EXPECT_NEAR(kiln_binary_metrics_dice(m), 4.0 / 7);
    EXPECT_NEAR(kiln_binary_metrics_iou(m), 2.0 / 5);

    /* a second batch accumulates counts (not the mean of batch ratios) */
    kiln_tensor *p2 = KT_F32(1, KT_SHAPE(2), {0.8, 0.3});
    kiln_tensor *t2 = kiln_tensor_cast(KT_F32(1, KT_SHAPE(2), {1, 0}), KILN_U8);
    cr_assert_eq(kiln_binary_metrics_update(m, p2, t2), KILN_STATUS_OK, "%s", kiln_last_error());
    EXPECT_NEAR(kiln_binary_metrics_pixel_accuracy(m), 5.0 / 8);
    EXPECT_NEAR(kiln_binary_metrics_iou(m), 3.0 / 6);

    kiln_binary_metrics_reset(m);
    cr_expect(isnan(kiln_binary_metrics_pixel_accuracy(m)), "empty accumulator reads NaN");
    cr_assert_eq(kiln_binary_metrics_update(m, p2, t2), KILN_STATUS_OK);
    EXPECT_NEAR(kiln_binary_metrics_pixel_accuracy(m), 1.0);
    EXPECT_NEAR(kiln_binary_metrics_precision(m), 1.0);
    kiln_binary_metrics_free(m);
}

KT_TEST(metrics, binary_from_logits) {
    /* threshold 0.75 on sigmoid: logit(0.75) = log 3 = 1.0986 */
    kiln_binary_metrics *m = kiln_binary_metrics_create(0.75, KILN_SCORES_LOGITS);
    kiln_tensor *x = KT_F64(1, KT_SHAPE(5), {-3, 0, 1.0, 1.2, 8});
    kiln_tensor *t = KT_F64(1, KT_SHAPE(5), {0, 1, 1, 1, 0});
    cr_assert_eq(kiln_binary_metrics_update(m, x, t), KILN_STATUS_OK, "%s", kiln_last_error());
    kiln_binary_counts c = kiln_binary_metrics_counts(m);
    cr_expect(c.tp == 1 && c.fp == 1 && c.fn == 2 && c.tn == 1);
    EXPECT_NEAR(kiln_binary_metrics_pixel_accuracy(m), 2.0 / 5);
    kiln_binary_metrics_free(m);
}

/* (N=1, C=3, H=2, W=3) scores; argmax per pixel over the channel axis. */
static kiln_tensor *grid_scores(void) {
    return KT_F32(4, KT_SHAPE(1, 3, 2, 3), {/* c0 */ 5, 0, 0, 0, 1, 0,
                                            /* c1 */ 1, 4, 0, 2, 1, 0,
                                            /* c2 */ 0, 1, 3, 1, 0, 9});
    /* argmax: [0 1 2 / 1 0(tie c0,c1 -> first) 2] */
}

KT_TEST(metrics, confusion_matrix_from_pixel_scores) {
    kiln_confusion_matrix *cm = kiln_confusion_matrix_create(3, 255);
    cr_assert(cm);
    int64_t ts[3] = {1, 2, 3};
    kiln_tensor *t = labels(3, ts, (const int64_t[]){0, 1, 1, 1, 255, 0});
    cr_assert_eq(kiln_confusion_matrix_update(cm, grid_scores(), t), KILN_STATUS_OK, "%s", kiln_last_error());
    /* pairs (t,p): (0,0) (1,1) (1,2) (1,1) [ignored] (0,2) */
    const int64_t expect[9] = {1, 0, 1, 0, 2, 1, 0, 0, 0};
    const int64_t *got = kiln_confusion_matrix_counts(cm);
    for (int i = 0; i < 9; i++) cr_expect_eq(got[i], expect[i], "counts[%d] = %lld", i, (long long)got[i]);
    EXPECT_NEAR(kiln_confusion_matrix_argmax_accuracy(cm), 3.0 / 5);
    double v[3];
    kiln_confusion_matrix_class_iou(cm, v);
    EXPECT_NEAR(v[0], 1.0 / 2); /* tp 1, fp 0, fn 1 */
    EXPECT_NEAR(v[1], 2.0 / 3); /* tp 2, fp 0, fn 1 */
    EXPECT_NEAR(v[2], 0.0);     /* tp 0, fp 2, fn 0 */
    EXPECT_NEAR(kiln_confusion_matrix_mean_iou(cm), (0.5 + 2.0 / 3 + 0) / 3);
    kiln_confusion_matrix_class_dice(cm, v);
    EXPECT_NEAR(v[0], 2.0 / 3);
    EXPECT_NEAR(v[1], 4.0 / 5);
    EXPECT_NEAR(v[2], 0.0);
    kiln_confusion_matrix_class_precision(cm, v);
    EXPECT_NEAR(v[0], 1.0);
    EXPECT_NEAR(v[1], 1.0);
    EXPECT_NEAR(v[2], 0.0);
    kiln_confusion_matrix_class_recall(cm, v);
    EXPECT_NEAR(v[0], 1.0 / 2);
    EXPECT_NEAR(v[1], 2.0 / 3);
    cr_expect(isnan(v[2]), "recall of a class never in the target is 0/0 = NaN");
    kiln_confusion_matrix_free(cm);
}

/* mIoU skips classes absent from both prediction and target. */
KT_TEST(metrics, mean_iou_excludes_absent_classes_and_accumulates) {
    kiln_confusion_matrix *cm = kiln_confusion_matrix_create(4, -100);
    int64_t s = 4;
    kiln_tensor *p = labels(1, &s, (const int64_t[]){0, 0, 1, 1});
    kiln_tensor *t = labels(1, &s, (const int64_t[]){0, 1, 1, 1});
    cr_assert_eq(kiln_confusion_matrix_update(cm, p, t), KILN_STATUS_OK, "%s", kiln_last_error());
    double v[4];
    kiln_confusion_matrix_class_iou(cm, v);
    EXPECT_NEAR(v[0], 1.0 / 2);
    EXPECT_NEAR(v[1], 2.0 / 3);
    cr_expect(isnan(v[2]) && isnan(v[3]));
    EXPECT_NEAR(kiln_confusion_matrix_mean_iou(cm), (0.5 + 2.0 / 3) / 2);
    EXPECT_NEAR(kiln_confusion_matrix_mean_dice(cm), (2.0 / 3 + 4.0 / 5) / 2);
    /* a second batch where class 3 appears (and is missed) */
    kiln_tensor *p2 = labels(1, &s, (const int64_t[]){3, 0, 1, 1});
    kiln_tensor *t2 = labels(1, &s, (const int64_t[]){3, 3, -100, 1});
    cr_assert_eq(kiln_confusion_matrix_update(cm, p2, t2), KILN_STATUS_OK, "%s", kiln_last_error());
    /* totals: (0,0)1 (1,0)1 (1,1)3 (3,3)1 (3,0)1 */
    kiln_confusion_matrix_class_iou(cm, v);
    EXPECT_NEAR(v[0], 1.0 / 3);
    EXPECT_NEAR(v[1], 3.0 / 4);
    EXPECT_NEAR(v[3], 1.0 / 2);
    EXPECT_NEAR(kiln_confusion_matrix_mean_iou(cm), (1.0 / 3 + 3.0 / 4 + 1.0 / 2) / 3);
    EXPECT_NEAR(kiln_confusion_matrix_argmax_accuracy(cm), 5.0 / 7);
    kiln_confusion_matrix_reset(cm);
    cr_expect(isnan(kiln_confusion_matrix_mean_iou(cm)) && isnan(kiln_confusion_matrix_argmax_accuracy(cm)));
    for (int i = 0; i < 16; i++) cr_expect_eq(kiln_confusion_matrix_counts(cm)[i], 0);
    kiln_confusion_matrix_free(cm);
}

/* Scores (N,C) with N = 2: argmax accuracy over samples; a strided scores view. */
KT_TEST(metrics, argmax_accuracy_on_strided_scores) {
    kiln_confusion_matrix *cm = kiln_confusion_matrix_create(3, -100);
    kiln_tensor *sc = kiln_transpose(KT_F64(2, KT_SHAPE(3, 2), {0.1, 0.7, 0.8, 0.2, 0.1, 0.1}), 0, 1); /* (2,3) */
    int64_t n = 2;
    cr_assert_eq(kiln_confusion_matrix_update(cm, sc, labels(1, &n, (const int64_t[]){1, 1})), KILN_STATUS_OK, "%s",
                 kiln_last_error());
    EXPECT_NEAR(kiln_confusion_matrix_argmax_accuracy(cm), 0.5); /* argmax rows: 1, 0 */
    kiln_confusion_matrix_free(cm);
}

/* A failed update counts nothing from its batch. */
KT_TEST(metrics, failed_update_leaves_counts) {
    kiln_confusion_matrix *cm = kiln_confusion_matrix_create(2, -100);
    int64_t n = 3;
    cr_expect_neq(kiln_confusion_matrix_update(cm, labels(1, &n, (const int64_t[]){0, 1, 1}),
                                               labels(1, &n, (const int64_t[]){0, 1, 2})),
                  KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "class index 2");
    for (int i = 0; i < 4; i++) cr_expect_eq(kiln_confusion_matrix_counts(cm)[i], 0);
    kiln_confusion_matrix_free(cm);
}

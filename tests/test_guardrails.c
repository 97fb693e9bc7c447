/* The guardrails of the losses and metrics (DESIGN.md principle 9): every error
 * is a value with a status and a message that says why and names the fix. */
#include "support/kiln_test.h"

TestSuite(guardrails, .init = kiln_test_setup, .fini = kiln_test_teardown);

static kiln_tensor *i64(int ndim, const int64_t *shape, const int64_t *v) {
    return kiln_tensor_from_host(v, ndim, shape, KILN_I64, KILN_CPU);
}

/* ---- a softmax over one unit ------------------------------------------------------- */

KT_TEST(guardrails, cross_entropy_over_one_class) {
    kiln_tensor *x = kiln_tensor_zeros(4, (int64_t[]){2, 1, 3, 3}, KILN_F32, KILN_CPU);
    kiln_tensor *t = kiln_tensor_zeros(3, (int64_t[]){2, 3, 3}, KILN_I64, KILN_CPU);
    cr_expect_null(kiln_cross_entropy(x, t, NULL));
    cr_expect(strstr(kiln_last_error(), "softmax over one unit is always 1"), "%s", kiln_last_error());
    kt_expect_error(KILN_STATUS_SHAPE, "kiln_bce_with_logits");
    cr_expect_null(kiln_cross_entropy(kiln_tensor_zeros(2, (int64_t[]){5, 1}, KILN_F32, KILN_CPU),
                                      kiln_tensor_zeros(1, (int64_t[]){5}, KILN_I64, KILN_CPU), NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "sigmoid");
    cr_expect_null(kiln_nll_loss(x, t, NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "kiln_bce_with_logits");
    cr_expect_null(kiln_dice_loss_multiclass(x, t, 1.0, KILN_REDUCTION_MEAN));
    kt_expect_error(KILN_STATUS_SHAPE, "kiln_dice_loss on sigmoid");
}

/* ---- probabilities vs logits -------------------------------------------------------- */

KT_TEST(guardrails, bce_given_logits) {
    kiln_tensor *x = KT_F32(1, KT_SHAPE(3), {0.2, 1.7, -0.3});
    kiln_tensor *y = KT_F32(1, KT_SHAPE(3), {0, 1, 0});
    cr_expect_null(kiln_bce(x, y, NULL, KILN_REDUCTION_MEAN));
    cr_expect(strstr(kiln_last_error(), "1.7"), "names the bad value: %s", kiln_last_error());
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "use kiln_bce_with_logits");
    cr_expect_null(kiln_bce(KT_F32(1, KT_SHAPE(3), {0.2, NAN, 0.3}), y, NULL, KILN_REDUCTION_MEAN));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_bce_with_logits");
}

/* ---- target shapes: never a silent broadcast ------------------------------------------ */

KT_TEST(guardrails, target_shape_differs_from_input) {
    /* (4,1) against (4): the broadcast would compare 16 pairs */
    kiln_tensor *x = kiln_tensor_zeros(2, (int64_t[]){4, 1}, KILN_F32, KILN_CPU);
    kiln_tensor *p = kiln_tensor_full(2, (int64_t[]){4, 1}, 0.5, KILN_F32, KILN_CPU);
    kiln_tensor *y = kiln_tensor_zeros(1, (int64_t[]){4}, KILN_F32, KILN_CPU);
    const char *names[] = {"bce", "bce_with_logits", "mse_loss", "l1_loss", "dice_loss", "sigmoid_focal_loss"};
    for (int i = 0; i < 6; i++) {
        kiln_tensor *r = NULL;
        switch (i) {
        case 0: r = kiln_bce(p, y, NULL, KILN_REDUCTION_MEAN); break;
        case 1: r = kiln_bce_with_logits(x, y, NULL, NULL, KILN_REDUCTION_MEAN); break;
        case 2: r = kiln_mse_loss(x, y, KILN_REDUCTION_MEAN); break;
        case 3: r = kiln_l1_loss(x, y, KILN_REDUCTION_MEAN); break;
        case 4: r = kiln_dice_loss(p, y, 1.0, KILN_REDUCTION_MEAN); break;
        default: r = kiln_sigmoid_focal_loss(x, y, 0.25, 2, KILN_REDUCTION_MEAN); break;
        }
        cr_expect_null(r, "%s", names[i]);
        cr_expect(strstr(kiln_last_error(), names[i]) && strstr(kiln_last_error(), "[4, 1]") &&
                      strstr(kiln_last_error(), "[4]"),
                  "%s: names the op and both shapes: %s", names[i], kiln_last_error());
        kt_expect_error(KILN_STATUS_SHAPE, "reshape the target");
    }
}

KT_TEST(guardrails, cross_entropy_target_shapes) {
    kiln_tensor *x = kiln_tensor_zeros(4, (int64_t[]){2, 3, 4, 4}, KILN_F32, KILN_CPU);
    /* (N,1,H,W) class indices: the channel axis must be dropped */
    cr_expect_null(kiln_cross_entropy(x, kiln_tensor_zeros(4, (int64_t[]){2, 1, 4, 4}, KILN_I64, KILN_CPU), NULL));
    cr_expect(strstr(kiln_last_error(), "[2, 1, 4, 4]") && strstr(kiln_last_error(), "[2, 4, 4]"), "%s",
              kiln_last_error());
    kt_expect_error(KILN_STATUS_SHAPE, "reshape");
    /* probabilities of the wrong shape */
    cr_expect_null(kiln_cross_entropy(x, kiln_tensor_zeros(4, (int64_t[]){2, 3, 4, 2}, KILN_F32, KILN_CPU), NULL));
    kt_expect_error(KILN_STATUS_SHAPE, "[2, 3, 4, 2]");
    /* class weights not (C) */
    kiln_cross_entropy_options o = kiln_cross_entropy_options_default();
    o.weight = kiln_tensor_full(1, (int64_t[]){4}, 1.0, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_cross_entropy(x, kiln_tensor_zeros(3, (int64_t[]){2, 4, 4}, KILN_I64, KILN_CPU), &o));
    kt_expect_error(KILN_STATUS_SHAPE, "one weight per class, shape [3]");
    /* pos_weight (C) on an NCHW input: PyTorch broadcasts from the last axis */
    kiln_tensor *pw = kiln_tensor_full(1, (int64_t[]){3}, 2.0, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_bce_with_logits(x, kiln_tensor_zeros(4, (int64_t[]){2, 3, 4, 4}, KILN_F32, KILN_CPU), NULL,
                                        pw, KILN_REDUCTION_MEAN));
    kt_expect_error(KILN_STATUS_SHAPE, "(C,1,1) for an (N,C,H,W) input");
}

/* ---- class indices ------------------------------------------------------------------------ */

KT_TEST(guardrails, class_index_out_of_range) {
    kiln_tensor *x = kiln_tensor_zeros(2, (int64_t[]){3, 3}, KILN_F32, KILN_CPU);
    kiln_tensor *t = i64(1, (int64_t[]){3}, (const int64_t[]){0, 5, 1});
    cr_expect_null(kiln_cross_entropy(x, t, NULL));
    cr_expect(strstr(kiln_last_error(), "class index 5") && strstr(kiln_last_error(), "C = 3"), "%s",
              kiln_last_error());
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "ignore_index");
    /* -1 is not the default ignore_index (-100) */
    cr_expect_null(kiln_nll_loss(x, i64(1, (int64_t[]){3}, (const int64_t[]){0, -1, 1}), NULL));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "class index -1");
    /* ... but it is fine once declared the ignore_index */
    kiln_cross_entropy_options o = kiln_cross_entropy_options_default();
    o.ignore_index = -1;
    cr_expect_not_null(kiln_cross_entropy(x, i64(1, (int64_t[]){3}, (const int64_t[]){0, -1, 1}), &o), "%s",
                       kiln_last_error());
    kiln_tensor *p = kiln_tensor_full(4, (int64_t[]){1, 2, 2, 2}, 0.5, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_dice_loss_multiclass(p, i64(3, (int64_t[]){1, 2, 2}, (const int64_t[]){0, 1, 2, 1}), 1.0,
                                             KILN_REDUCTION_MEAN));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "class index 2");
}

/* ---- dtypes ------------------------------------------------------------------------------- */

KT_TEST(guardrails, wrong_target_dtype) {
    kiln_tensor *x = kiln_tensor_zeros(2, (int64_t[]){2, 3}, KILN_F32, KILN_CPU);
    kiln_tensor *t32 = kiln_tensor_zeros(1, (int64_t[]){2}, KILN_I32, KILN_CPU);
    cr_expect_null(kiln_cross_entropy(x, t32, NULL));
    kt_expect_error(KILN_STATUS_DTYPE, "kiln_tensor_cast(target, KILN_I64)");
    kiln_tensor *tf = kiln_tensor_zeros(1, (int64_t[]){2}, KILN_F32, KILN_CPU);
    cr_expect_null(kiln_cross_entropy(x, tf, NULL));
    kt_expect_error(KILN_STATUS_DTYPE, "KILN_I64");
    cr_expect_null(kiln_nll_loss(x, kiln_tensor_zeros(2, (int64_t[]){2, 3}, KILN_F32, KILN_CPU), NULL));
    kt_expect_error(KILN_STATUS_DTYPE, "use kiln_cross_entropy");
    kiln_tensor *mask = kiln_tensor_zeros(2, (int64_t[]){2, 3}, KILN_U8, KILN_CPU);
    cr_expect_null(kiln_bce_with_logits(x, mask, NULL, NULL, KILN_REDUCTION_MEAN));
    kt_expect_error(KILN_STATUS_DTYPE, "kiln_tensor_cast(target, KILN_F32)");
    cr_expect_null(kiln_mse_loss(x, kiln_tensor_zeros(2, (int64_t[]){2, 3}, KILN_F64, KILN_CPU), KILN_REDUCTION_MEAN));
    kt_expect_error(KILN_STATUS_DTYPE, "kiln_tensor_cast");
}

/* ---- arguments --------------------------------------------------------------------------------- */

KT_TEST(guardrails, bad_arguments) {
    kiln_tensor *x = kiln_tensor_zeros(2, (int64_t[]){2, 3}, KILN_F64, KILN_CPU);
    kiln_tensor *t = kiln_tensor_zeros(1, (int64_t[]){2}, KILN_I64, KILN_CPU);
    kiln_cross_entropy_options o = kiln_cross_entropy_options_default();
    o.label_smoothing = 1.5;
    cr_expect_null(kiln_cross_entropy(x, t, &o));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "[0, 1]");
    o.label_smoothing = 0.1;
    cr_expect_null(kiln_nll_loss(x, t, &o));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "use kiln_cross_entropy on logits");
    o = kiln_cross_entropy_options_default();
    o.reduction = (kiln_reduction)7;
    cr_expect_null(kiln_cross_entropy(x, t, &o));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "KILN_REDUCTION_NONE");
    o = kiln_cross_entropy_options_default();
    o.weight = kt_rand_input(1, (int64_t[]){3}, 0.5, 1);
    cr_expect_null(kiln_cross_entropy(x, t, &o));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_tensor_detach");
    cr_expect_null(kiln_dice_loss(x, x, -1, KILN_REDUCTION_MEAN));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "smooth");
}

/* An op handed NULL returns NULL and keeps the first error. */
KT_TEST(guardrails, null_inputs_keep_the_first_error) {
    kiln_tensor *x = kiln_tensor_zeros(2, (int64_t[]){2, 1}, KILN_F32, KILN_CPU);
    kiln_tensor *t = kiln_tensor_zeros(1, (int64_t[]){2}, KILN_I64, KILN_CPU);
    kiln_tensor *bad = kiln_cross_entropy(x, t, NULL); /* first error: one class */
    cr_expect_null(kiln_mse_loss(bad, x, KILN_REDUCTION_MEAN));
    cr_expect_null(kiln_bce_with_logits(x, bad, NULL, NULL, KILN_REDUCTION_SUM));
    kt_expect_error(KILN_STATUS_SHAPE, "softmax over one unit");
}

/* ---- metrics ----------------------------------------------------------------------------------- */

KT_TEST(guardrails, metrics_errors) {
    kiln_binary_metrics *m = kiln_binary_metrics_create(0.5, KILN_SCORES_PROBABILITIES);
    kiln_tensor *logits = KT_F32(1, KT_SHAPE(3), {-2, 0.3, 4});
    kiln_tensor *y = KT_F32(1, KT_SHAPE(3), {0, 1, 1});
    cr_expect_neq(kiln_binary_metrics_update(m, logits, y), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "KILN_SCORES_LOGITS");
    cr_expect_neq(kiln_binary_metrics_update(m, KT_F32(1, KT_SHAPE(3), {0.1, 0.3, 0.4}),
                                             KT_F32(1, KT_SHAPE(3), {0, 0.5, 1})),
                  KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "masks of 0 and 1");
    cr_expect_neq(kiln_binary_metrics_update(m, KT_F32(2, KT_SHAPE(3, 1), {0.1, 0.3, 0.4}), y), KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_SHAPE, "never broadcast");
    cr_expect_eq(kiln_binary_metrics_counts(m).tp + kiln_binary_metrics_counts(m).tn, 0);
    kiln_binary_metrics_free(m);
    cr_expect_null(kiln_binary_metrics_create(1.5, KILN_SCORES_LOGITS));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "[0,1]");

    cr_expect_null(kiln_confusion_matrix_create(1, -100));
    kt_expect_error(KILN_STATUS_INVALID_ARGUMENT, "kiln_binary_metrics_create");
    kiln_confusion_matrix *cm = kiln_confusion_matrix_create(3, -100);
    kiln_tensor *scores = kiln_tensor_zeros(4, (int64_t[]){1, 3, 2, 2}, KILN_F32, KILN_CPU);
    cr_expect_neq(kiln_confusion_matrix_update(cm, scores, kiln_tensor_zeros(3, (int64_t[]){1, 2, 2}, KILN_I32,
                                                                             KILN_CPU)),
                  KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_DTYPE, "KILN_I64");
    cr_expect_neq(kiln_confusion_matrix_update(cm, scores, kiln_tensor_zeros(4, (int64_t[]){1, 1, 2, 2}, KILN_I64,
                                                                             KILN_CPU)),
                  KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_SHAPE, "without their class axis");
    cr_expect_neq(kiln_confusion_matrix_update(cm, kiln_tensor_zeros(4, (int64_t[]){1, 4, 2, 2}, KILN_F32, KILN_CPU),
                                               kiln_tensor_zeros(3, (int64_t[]){1, 2, 2}, KILN_I64, KILN_CPU)),
                  KILN_STATUS_OK);
    kt_expect_error(KILN_STATUS_SHAPE, "C = 3");
    kiln_confusion_matrix_free(cm);
}

/* kiln metrics: accumulators that gather counts over batches (create, update with
 * a batch, read, reset, free). Names say exactly what they measure: there is no
 * bare "accuracy", whose meaning would change with the loss. Counts live on the
 * host; update copies the batch there (any device, any strides). A value that is
 * undefined (0/0, e.g. the precision of a class never predicted) reads as NaN. */
#ifndef KILN_METRICS_H
#define KILN_METRICS_H

#include "core.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- binary (one-channel masks) -------------------------------------------------
 * A pixel is predicted positive when its probability is strictly above the
 * threshold; with KILN_SCORES_LOGITS the probability is sigmoid(score), so a
 * network's raw output can be passed as it is. Targets hold 0 or 1 (any dtype). */
typedef enum {
    KILN_SCORES_PROBABILITIES = 0, /* values in [0,1], e.g. after a sigmoid */
    KILN_SCORES_LOGITS = 1,        /* raw outputs: sigmoid applied before the threshold */
} kiln_score_kind;

typedef struct kiln_binary_metrics kiln_binary_metrics;

typedef struct {
    int64_t tp, fp, fn, tn;
} kiln_binary_counts;

/* threshold in [0,1] (0.5 usual). NULL and an error on a bad argument. */
KILN_API kiln_binary_metrics *kiln_binary_metrics_create(double threshold, kiln_score_kind kind);
/* scores: float tensor; target: the same shape, values 0 or 1. Errors: shapes that
 * differ, targets not 0/1, probabilities outside [0,1] (use KILN_SCORES_LOGITS). */
KILN_API kiln_status kiln_binary_metrics_update(kiln_binary_metrics *m, kiln_tensor *scores, kiln_tensor *target);
KILN_API void kiln_binary_metrics_reset(kiln_binary_metrics *m);
KILN_API void kiln_binary_metrics_free(kiln_binary_metrics *m);
KILN_API kiln_binary_counts kiln_binary_metrics_counts(const kiln_binary_metrics *m);
/* (tp + tn) / all pixels: binary pixel accuracy at the threshold. */
KILN_API double kiln_binary_metrics_pixel_accuracy(const kiln_binary_metrics *m);
/* tp / (tp + fp) */
KILN_API double kiln_binary_metrics_precision(const kiln_binary_metrics *m);
/* tp / (tp + fn) */
KILN_API double kiln_binary_metrics_recall(const kiln_binary_metrics *m);
/* Dice = F1 = 2tp / (2tp + fp + fn) */
KILN_API double kiln_binary_metrics_dice(const kiln_binary_metrics *m);
/* IoU (Jaccard) = tp / (tp + fp + fn) */
KILN_API double kiln_binary_metrics_iou(const kiln_binary_metrics *m);

/* ---- multi-class: the confusion matrix -------------------------------------------
 * Counts[target][pred] over C classes. Predictions are either scores (N,C,d1..dk),
 * reduced by argmax over the class axis 1 (the first maximum on ties, as PyTorch),
 * or class indices (KILN_I64) of the target's shape. Targets are KILN_I64
 * (N,d1..dk); positions whose target equals ignore_index are skipped entirely. */
typedef struct kiln_confusion_matrix kiln_confusion_matrix;

/* num_classes >= 2 (for one channel use kiln_binary_metrics). */
KILN_API kiln_confusion_matrix *kiln_confusion_matrix_create(int64_t num_classes, int64_t ignore_index);
KILN_API kiln_status kiln_confusion_matrix_update(kiln_confusion_matrix *cm, kiln_tensor *pred, kiln_tensor *target);
KILN_API void kiln_confusion_matrix_reset(kiln_confusion_matrix *cm);
KILN_API void kiln_confusion_matrix_free(kiln_confusion_matrix *cm);
KILN_API int64_t kiln_confusion_matrix_num_classes(const kiln_confusion_matrix *cm);
/* C*C counts, row-major: element [t*C + p] counts positions of target t predicted p. */
KILN_API const int64_t *kiln_confusion_matrix_counts(const kiln_confusion_matrix *cm);
/* Argmax accuracy: correctly classified / counted positions (ignored ones excluded). */
KILN_API double kiln_confusion_matrix_argmax_accuracy(const kiln_confusion_matrix *cm);
/* Per class, into out[C]: IoU = tp/(tp+fp+fn), Dice/F1 = 2tp/(2tp+fp+fn),
 * precision = tp/(tp+fp), recall = tp/(tp+fn); NaN where the denominator is 0. */
KILN_API kiln_status kiln_confusion_matrix_class_iou(const kiln_confusion_matrix *cm, double *out);
KILN_API kiln_status kiln_confusion_matrix_class_dice(const kiln_confusion_matrix *cm, double *out);
KILN_API kiln_status kiln_confusion_matrix_class_precision(const kiln_confusion_matrix *cm, double *out);
KILN_API kiln_status kiln_confusion_matrix_class_recall(const kiln_confusion_matrix *cm, double *out);
/* mIoU: the mean of the per-class IoU over the classes present in the target or
 * the prediction; classes absent from both (IoU 0/0) are excluded from the mean,
 * so they neither reward nor punish. NaN when nothing was counted. */
KILN_API double kiln_confusion_matrix_mean_iou(const kiln_confusion_matrix *cm);
/* The mean per-class Dice over the same classes as mean_iou. */
KILN_API double kiln_confusion_matrix_mean_dice(const kiln_confusion_matrix *cm);

#ifdef __cplusplus
}
#endif
#endif

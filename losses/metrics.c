/* Metric accumulators: a binary counter (tp/fp/fn/tn at a threshold) and a C x C
 * confusion matrix, both on the host. Every metric is read from the counts, so
 * accumulating over batches is exact (no averaging of per-batch ratios). */
#include "common.h"

#include <math.h>
#include <stdlib.h>

struct kiln_binary_metrics {
    double threshold;
    kiln_score_kind kind;
    kiln_binary_counts c;
};

struct kiln_confusion_matrix {
    int64_t C, ignore_index;
    int64_t *counts; /* C*C, [target][pred] */
};

static double ratio(double num, double den) { return den == 0 ? NAN : num / den; }

static bool same_shape(const kiln_tensor *a, const kiln_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

static kiln_status shape_error(const char *op, const kiln_tensor *pred, const char *what, const kiln_tensor *target) {
    char b1[128], b2[128];
    return kiln__error(KILN_STATUS_SHAPE, "%s: target shape %s differs from %s shape %s; metrics compare element by "
                       "element and never broadcast: reshape the target", op,
                       kiln__shape_str(target->ndim, target->shape, b1, sizeof b1), what,
                       kiln__shape_str(pred->ndim, pred->shape, b2, sizeof b2));
}

/* The first error wins: a NULL input after a failed op keeps that op's message. */
static kiln_status null_input(const char *op, const char *what) {
    if (kiln_last_status() != KILN_STATUS_OK) return kiln_last_status();
    return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: %s is NULL", op, what);
}

/* ---- binary ------------------------------------------------------------------------ */

kiln_binary_metrics *kiln_binary_metrics_create(double threshold, kiln_score_kind kind) {
    if (!(threshold >= 0 && threshold <= 1) || (kind != KILN_SCORES_PROBABILITIES && kind != KILN_SCORES_LOGITS)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_binary_metrics_create: threshold %g must be a probability in "
                    "[0,1] (it applies after the sigmoid for KILN_SCORES_LOGITS) and kind a kiln_score_kind",
                    threshold);
        return NULL;
    }
    kiln_binary_metrics *m = calloc(1, sizeof *m);
    if (!m) {
        kiln__error(KILN_STATUS_OOM, "kiln_binary_metrics_create: out of host memory");
        return NULL;
    }
    m->threshold = threshold;
    m->kind = kind;
    return m;
}

kiln_status kiln_binary_metrics_update(kiln_binary_metrics *m, kiln_tensor *scores, kiln_tensor *target) {
    const char *op = "kiln_binary_metrics_update";
    if (!m) return null_input(op, "the metrics object");
    if (!scores || !target) return null_input(op, scores ? "target" : "scores");
    if (!kiln__is_float(scores->dtype))
        return kiln__error(KILN_STATUS_DTYPE, "%s: scores have dtype %s; pass the float network output "
                           "(probabilities or logits)", op, kiln_dtype_name(scores->dtype));
    if (!same_shape(scores, target)) return shape_error(op, scores, "scores", target);
    double *s = kiln__loss_host_values(op, scores);
    double *t = s ? kiln__loss_host_values(op, target) : NULL;
    if (!t) {
        free(s);
        return kiln_last_status();
    }
    int64_t n = kiln_tensor_numel(scores);
    kiln_binary_counts c = {0, 0, 0, 0};
    kiln_status st = KILN_STATUS_OK;
    for (int64_t i = 0; i < n; i++) {
        if (t[i] != 0 && t[i] != 1) {
            st = kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: target element %lld is %g; binary targets are masks "
                             "of 0 and 1 (threshold soft labels before counting)", op, (long long)i, t[i]);
            break;
        }
        double p = s[i];
        if (m->kind == KILN_SCORES_LOGITS) {
            p = 1 / (1 + exp(-p));
        } else if (!(p >= 0 && p <= 1)) {
            st = kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: score element %lld is %g, outside [0,1], but the "
                             "metrics were created for probabilities; for raw network outputs create them with "
                             "KILN_SCORES_LOGITS (the sigmoid is then applied before the threshold)",
                             op, (long long)i, p);
            break;
        }
        bool pos = p > m->threshold, truth = t[i] == 1;
        if (pos && truth) c.tp++;
        else if (pos) c.fp++;
        else if (truth) c.fn++;
        else c.tn++;
    }
    free(s);
    free(t);
    if (st == KILN_STATUS_OK) { /* a batch counts wholly or not at all */
        m->c.tp += c.tp;
        m->c.fp += c.fp;
        m->c.fn += c.fn;
        m->c.tn += c.tn;
    }
    return st;
}

void kiln_binary_metrics_reset(kiln_binary_metrics *m) {
    if (m) m->c = (kiln_binary_counts){0, 0, 0, 0};
}
void kiln_binary_metrics_free(kiln_binary_metrics *m) { free(m); }

kiln_binary_counts kiln_binary_metrics_counts(const kiln_binary_metrics *m) {
    return m ? m->c : (kiln_binary_counts){0, 0, 0, 0};
}

double kiln_binary_metrics_pixel_accuracy(const kiln_binary_metrics *m) {
    if (!m) return NAN;
    return ratio((double)(m->c.tp + m->c.tn), (double)(m->c.tp + m->c.tn + m->c.fp + m->c.fn));
}
double kiln_binary_metrics_precision(const kiln_binary_metrics *m) {
    return m ? ratio((double)m->c.tp, (double)(m->c.tp + m->c.fp)) : NAN;
}
double kiln_binary_metrics_recall(const kiln_binary_metrics *m) {
    return m ? ratio((double)m->c.tp, (double)(m->c.tp + m->c.fn)) : NAN;
}
double kiln_binary_metrics_dice(const kiln_binary_metrics *m) {
    return m ? ratio(2.0 * (double)m->c.tp, (double)(2 * m->c.tp + m->c.fp + m->c.fn)) : NAN;
}
double kiln_binary_metrics_iou(const kiln_binary_metrics *m) {
    return m ? ratio((double)m->c.tp, (double)(m->c.tp + m->c.fp + m->c.fn)) : NAN;
}

/* ---- confusion matrix ---------------------------------------------------------------- */

kiln_confusion_matrix *kiln_confusion_matrix_create(int64_t num_classes, int64_t ignore_index) {
    if (num_classes < 2 || num_classes > (1 << 20)) {
        kiln__error(KILN_STATUS_INVALID_ARGUMENT,
                    "kiln_confusion_matrix_create: num_classes %lld; a confusion matrix needs 2 or more classes (an "
                    "argmax over one class is always 0): for one-channel masks use kiln_binary_metrics_create",
                    (long long)num_classes);
        return NULL;
    }
    kiln_confusion_matrix *cm = calloc(1, sizeof *cm);
    int64_t *counts = calloc((size_t)(num_classes * num_classes), sizeof *counts);
    if (!cm || !counts) {
        free(cm);
        free(counts);
        kiln__error(KILN_STATUS_OOM, "kiln_confusion_matrix_create: out of host memory");
        return NULL;
    }
    cm->C = num_classes;
    cm->ignore_index = ignore_index;
    cm->counts = counts;
    return cm;
}

kiln_status kiln_confusion_matrix_update(kiln_confusion_matrix *cm, kiln_tensor *pred, kiln_tensor *target) {
    const char *op = "kiln_confusion_matrix_update";
    if (!cm) return null_input(op, "the confusion matrix");
    if (!pred || !target) return null_input(op, pred ? "target" : "pred");
    char b1[128], b2[128];
    if (target->dtype != KILN_I64)
        return kiln__error(KILN_STATUS_DTYPE, "%s: target has dtype %s; class-index targets must be KILN_I64: cast "
                           "it with kiln_tensor_cast(target, KILN_I64)", op, kiln_dtype_name(target->dtype));
    const int64_t C = cm->C;
    bool scores = kiln__is_float(pred->dtype);
    if (scores) {
        /* scores (N,C,d..): the target drops axis 1 */
        if (pred->ndim < 2 || pred->shape[1] != C)
            return kiln__error(KILN_STATUS_SHAPE, "%s: scores of shape %s need the class axis 1 of size C = %lld, "
                               "as (N, C, d1, ...)", op, kiln__shape_str(pred->ndim, pred->shape, b1, sizeof b1),
                               (long long)C);
        bool ok = target->ndim == pred->ndim - 1;
        for (int d = 0; ok && d < target->ndim; d++) ok = target->shape[d] == pred->shape[d ? d + 1 : 0];
        if (!ok)
            return kiln__error(KILN_STATUS_SHAPE, "%s: target shape %s does not match scores %s without their class "
                               "axis 1; metrics never broadcast: reshape the target", op,
                               kiln__shape_str(target->ndim, target->shape, b1, sizeof b1),
                               kiln__shape_str(pred->ndim, pred->shape, b2, sizeof b2));
    } else if (pred->dtype == KILN_I64) {
        if (!same_shape(pred, target)) return shape_error(op, pred, "predicted labels'", target);
    } else {
        return kiln__error(KILN_STATUS_DTYPE, "%s: pred has dtype %s; pass float scores (N,C,...) or KILN_I64 "
                           "labels", op, kiln_dtype_name(pred->dtype));
    }
    double *p = kiln__loss_host_values(op, pred);
    double *t = p ? kiln__loss_host_values(op, target) : NULL;
    int64_t *add = t ? calloc((size_t)(C * C), sizeof *add) : NULL;
    if (!add) {
        free(p);
        free(t);
        return t ? kiln__error(KILN_STATUS_OOM, "%s: out of host memory", op) : kiln_last_status();
    }
    int64_t npos = kiln_tensor_numel(target), S = 1; /* positions per sample (scores) */
    if (scores)
        for (int d = 2; d < pred->ndim; d++) S *= pred->shape[d];
    kiln_status st = KILN_STATUS_OK;
    for (int64_t q = 0; q < npos && st == KILN_STATUS_OK; q++) {
        int64_t tc = (int64_t)t[q];
        if (tc == cm->ignore_index) continue;
        if (tc < 0 || tc >= C) {
            st = kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: target element %lld holds class index %lld, outside "
                             "[0, C) with C = %lld and not ignore_index (%lld); fix the labels or the class count",
                             op, (long long)q, (long long)tc, (long long)C, (long long)cm->ignore_index);
            break;
        }
        int64_t pc;
        if (scores) {
            const double *row = p + (q / S) * C * S + q % S;
            pc = 0;
            for (int64_t c = 1; c < C; c++)
                if (row[c * S] > row[pc * S]) pc = c;
        } else {
            pc = (int64_t)p[q];
            if (pc < 0 || pc >= C) {
                st = kiln__error(KILN_STATUS_INVALID_ARGUMENT, "%s: predicted label element %lld is %lld, outside "
                                 "[0, C) with C = %lld", op, (long long)q, (long long)pc, (long long)C);
                break;
            }
        }
        add[tc * C + pc]++;
    }
    if (st == KILN_STATUS_OK)
        for (int64_t i = 0; i < C * C; i++) cm->counts[i] += add[i];
    free(p);
    free(t);
    free(add);
    return st;
}

void kiln_confusion_matrix_reset(kiln_confusion_matrix *cm) {
    if (cm)
        for (int64_t i = 0; i < cm->C * cm->C; i++) cm->counts[i] = 0;
}

void kiln_confusion_matrix_free(kiln_confusion_matrix *cm) {
    if (!cm) return;
    free(cm->counts);
    free(cm);
}

int64_t kiln_confusion_matrix_num_classes(const kiln_confusion_matrix *cm) { return cm ? cm->C : 0; }
const int64_t *kiln_confusion_matrix_counts(const kiln_confusion_matrix *cm) { return cm ? cm->counts : NULL; }

double kiln_confusion_matrix_argmax_accuracy(const kiln_confusion_matrix *cm) {
    if (!cm) return NAN;
    int64_t right = 0, all = 0;
    for (int64_t i = 0; i < cm->C; i++)
        for (int64_t j = 0; j < cm->C; j++) {
            all += cm->counts[i * cm->C + j];
            if (i == j) right += cm->counts[i * cm->C + j];
        }
    return ratio((double)right, (double)all);
}

/* tp, fp (predicted c, target other) and fn (target c, predicted other) of class c. */
static void class_counts(const kiln_confusion_matrix *cm, int64_t c, double *tp, double *fp, double *fn) {
    *tp = (double)cm->counts[c * cm->C + c];
    *fp = *fn = 0;
    for (int64_t k = 0; k < cm->C; k++) {
        if (k == c) continue;
        *fp += (double)cm->counts[k * cm->C + c];
        *fn += (double)cm->counts[c * cm->C + k];
    }
}

enum { CLASS_IOU, CLASS_DICE, CLASS_PRECISION, CLASS_RECALL };

static kiln_status per_class(const kiln_confusion_matrix *cm, double *out, int which) {
    if (!cm || !out)
        return kiln__error(KILN_STATUS_INVALID_ARGUMENT, "kiln_confusion_matrix: %s is NULL",
                           cm ? "the output array" : "the confusion matrix");
    for (int64_t c = 0; c < cm->C; c++) {
        double tp, fp, fn;
        class_counts(cm, c, &tp, &fp, &fn);
        switch (which) {
        case CLASS_IOU: out[c] = ratio(tp, tp + fp + fn); break;
        case CLASS_DICE: out[c] = ratio(2 * tp, 2 * tp + fp + fn); break;
        case CLASS_PRECISION: out[c] = ratio(tp, tp + fp); break;
        default: out[c] = ratio(tp, tp + fn); break;
        }
    }
    return KILN_STATUS_OK;
}

kiln_status kiln_confusion_matrix_class_iou(const kiln_confusion_matrix *cm, double *out) {
    return per_class(cm, out, CLASS_IOU);
}
kiln_status kiln_confusion_matrix_class_dice(const kiln_confusion_matrix *cm, double *out) {
    return per_class(cm, out, CLASS_DICE);
}
kiln_status kiln_confusion_matrix_class_precision(const kiln_confusion_matrix *cm, double *out) {
    return per_class(cm, out, CLASS_PRECISION);
}
kiln_status kiln_confusion_matrix_class_recall(const kiln_confusion_matrix *cm, double *out) {
    return per_class(cm, out, CLASS_RECALL);
}

/* Classes absent from target and prediction have 0/0 = NaN and are skipped. */
static double mean_present(const kiln_confusion_matrix *cm, int which) {
    if (!cm) return NAN;
    double sum = 0;
    int64_t n = 0;
    for (int64_t c = 0; c < cm->C; c++) {
        double tp, fp, fn;
        class_counts(cm, c, &tp, &fp, &fn);
        if (tp + fp + fn == 0) continue;
        sum += which == CLASS_IOU ? tp / (tp + fp + fn) : 2 * tp / (2 * tp + fp + fn);
        n++;
    }
    return n ? sum / (double)n : NAN;
}

double kiln_confusion_matrix_mean_iou(const kiln_confusion_matrix *cm) { return mean_present(cm, CLASS_IOU); }
double kiln_confusion_matrix_mean_dice(const kiln_confusion_matrix *cm) { return mean_present(cm, CLASS_DICE); }
